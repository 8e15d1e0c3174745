//! The iothread: QEMU's main loop, which sleeps until the next timer deadline or I/O event.
//!
//! Mirrors `util/main-loop.c` (`main_loop_wait`, `os_host_main_loop_wait`) and the
//! `qemu_poll_ns` / `timerlistgroup_deadline_ns` / `qemu_clock_run_all_timers` sequence of
//! `util/qemu-timer.c`, including `prctl(PR_SET_TIMERSLACK, 1)` from `init_clocks`.
//!
//! # Design
//!
//! As in tokio's runtime, the *driver* is an event loop over an OS poller (mio, i.e. epoll)
//! that also owns the timers: each iteration it asks the timer lists ([`TimerListGroup`])
//! for the nearest deadline, sleeps until that deadline or an I/O event, and then fires what
//! is due. Three kinds of event sources are registered:
//!
//! * a [`mio::Waker`] (an eventfd, token [`WAKER`]). Its [`IoThreadHandle::notifier`] is
//!   installed as the notify callback of the timer lists the loop serves, so arming a timer
//!   that becomes a list's new head wakes the loop to recompute its timeout (QEMU's
//!   `qemu_notify_event`). Notifications made by the loop's own thread (callbacks re-arming
//!   timers) are skipped: the loop always recomputes the deadline before sleeping again;
//! * in [`IoTimerMode::Timerfd`] mode, a `timerfd` on `CLOCK_MONOTONIC` (token [`TIMER`]),
//!   armed with an *absolute* expiry so sub-millisecond deadlines are honoured to the
//!   nanosecond (modulo scheduling; the thread's timer slack is 1 ns). In
//!   [`IoTimerMode::Poll`] mode the deadline is passed as mio's poll timeout instead, which
//!   epoll rounds *up* to whole milliseconds: the baseline that shows why QEMU moved to
//!   `ppoll` with nanosecond timeouts;
//! * [`IoHandler`]s given in the configuration (device backends, the monitor), with tokens
//!   from [`FIRST_HANDLER_TOKEN`] on.
//!
//! One iteration: deadline = `timers.deadline_ns(clocks, exclude_virtual)`; arm (timerfd) or
//! compute the timeout (poll); poll (EINTR is retried on the next iteration; a deadline of 0,
//! i.e. a timer armed in the past, polls without sleeping); dispatch events; run the expired
//! timers of every list it serves (VIRTUAL excluded under icount, where the vCPU threads run
//! them at exact instruction counts). For each fired timer the *lateness* — the clock's time
//! when its callback starts minus its expiry — goes into an HdrHistogram kept by the
//! iothread and returned by [`IoThreadHandle::stop`]. Spurious wake-ups are harmless: they
//! only cause a recomputation.

use std::cell::Cell;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use hdrhistogram::Histogram;
use mio::event::Event;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use nix::sys::time::TimeSpec;
use nix::sys::timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags};

use crate::time::clock::{ClockType, Clocks, monotonic_ns};
use crate::time::timer::{NotifyFn, TimerListGroup};

/// Token of the loop's [`mio::Waker`].
pub const WAKER: Token = Token(0);
/// Token of the loop's timerfd (timerfd mode).
pub const TIMER: Token = Token(1);
/// Token given to the first [`IoHandler`] of [`IoThreadConfig::handlers`]; handler `i` gets
/// `Token(FIRST_HANDLER_TOKEN + i)`.
pub const FIRST_HANDLER_TOKEN: usize = 2;

/// How the iothread sleeps until the next timer deadline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum IoTimerMode {
    /// A `CLOCK_MONOTONIC` timerfd armed at the absolute deadline (nanosecond resolution).
    #[default]
    Timerfd,
    /// The deadline as mio's poll timeout (rounded up to whole milliseconds).
    Poll,
}

/// What the loop should do with a handler after an event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandlerAction {
    /// Keep the handler registered.
    Continue,
    /// Deregister and drop the handler.
    Remove,
}

/// An event source served by the iothread (a device backend, the monitor).
pub trait IoHandler: Send {
    /// Registers the handler's sources with `registry` under `token`; called once, on the
    /// iothread, before the loop starts.
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()>;

    /// Handles an event for the handler's token.
    fn ready(&mut self, event: &Event) -> HandlerAction;

    /// Deregisters the handler's sources; called before a handler that returned
    /// [`HandlerAction::Remove`] is dropped. The default does nothing (closing a source's
    /// fd on drop removes it from epoll).
    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        let _ = registry;
        Ok(())
    }
}

/// Wraps the phase in which the iothread runs expired timers, e.g. to hold the BQL around
/// it: it must call the given closure exactly once.
pub type TimerPhaseWrapper = Box<dyn FnMut(&mut dyn FnMut()) + Send>;

/// Configuration of an [`IoThread`].
pub struct IoThreadConfig {
    /// How to sleep until the next deadline.
    pub mode: IoTimerMode,
    /// The thread's timer slack in ns (`prctl(PR_SET_TIMERSLACK)`): how far
    /// the kernel may defer its timed wake-ups to batch them. QEMU sets 1
    /// (the default here, [`DEFAULT_TIMER_SLACK_NS`]); 0 restores the
    /// thread's default (inherited at its creation, usually 50 µs).
    pub timer_slack_ns: u64,
    /// Leave the VIRTUAL list alone (icount: vCPU threads run VIRTUAL timers and receive its
    /// notifications).
    pub exclude_virtual: bool,
    /// Extra event sources, registered with tokens from [`FIRST_HANDLER_TOKEN`] on.
    pub handlers: Vec<Box<dyn IoHandler>>,
    /// Optional wrapper around the timer-running phase (e.g. take the BQL).
    pub wrap_timers: Option<TimerPhaseWrapper>,
}

/// The iothread's timer slack unless told otherwise (QEMU's `init_clocks`).
pub const DEFAULT_TIMER_SLACK_NS: u64 = 1;

impl Default for IoThreadConfig {
    fn default() -> Self {
        IoThreadConfig {
            mode: IoTimerMode::default(),
            timer_slack_ns: DEFAULT_TIMER_SLACK_NS,
            exclude_virtual: false,
            handlers: Vec::new(),
            wrap_timers: None,
        }
    }
}

impl std::fmt::Debug for IoThreadConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoThreadConfig")
            .field("mode", &self.mode)
            .field("timer_slack_ns", &self.timer_slack_ns)
            .field("exclude_virtual", &self.exclude_virtual)
            .field("handlers", &self.handlers.len())
            .field("wrap_timers", &self.wrap_timers.is_some())
            .finish()
    }
}

/// What the iothread measured, returned when it is joined.
#[derive(Clone, Debug)]
pub struct IoThreadStats {
    /// Timer callbacks run.
    pub timers_fired: u64,
    /// Lateness of each fired timer in ns: the clock's time when the callback started minus
    /// the timer's expiry (3 significant figures, auto-resizing).
    pub lateness: Histogram<u64>,
    /// Loop iterations (polls).
    pub iterations: u64,
    /// Waker events seen (notifications from other threads, and the stop request).
    pub wakeups: u64,
    /// Timerfd expirations seen.
    pub timerfd_events: u64,
    /// The thread's timer slack as the kernel reports it after the loop set
    /// it (`PR_GET_TIMERSLACK`), ns; `None` if it could not be read.
    pub timer_slack_ns: Option<u64>,
}

impl IoThreadStats {
    fn new() -> Self {
        IoThreadStats {
            timers_fired: 0,
            lateness: Histogram::new(3).expect("3 significant figures is valid"),
            iterations: 0,
            wakeups: 0,
            timerfd_events: 0,
            timer_slack_ns: None,
        }
    }
}

/// The iothread (QEMU's main loop thread).
#[derive(Debug)]
pub struct IoThread;

thread_local! {
    /// Identity of the loop running on this thread (address of its Waker), 0 if none: lets
    /// the notifier skip self-notifications.
    static CURRENT_LOOP: Cell<usize> = const { Cell::new(0) };
}

/// Handle to a running iothread.
pub struct IoThreadHandle {
    waker: Arc<Waker>,
    notifier: NotifyFn,
    stop: Arc<AtomicBool>,
    timers: Arc<TimerListGroup>,
    installed: Vec<ClockType>,
    join: Option<JoinHandle<IoThreadStats>>,
}

impl IoThread {
    /// Starts the iothread (named "iothread") serving `timers` against `clocks`.
    ///
    /// The returned handle's notifier is installed as the notify callback of the REALTIME,
    /// HOST and VIRTUAL_RT lists, and of VIRTUAL unless `cfg.exclude_virtual`. Handlers are
    /// registered before this returns; their registration errors are returned.
    pub fn spawn(
        clocks: Arc<Clocks>,
        timers: Arc<TimerListGroup>,
        cfg: IoThreadConfig,
    ) -> io::Result<IoThreadHandle> {
        let IoThreadConfig {
            mode,
            timer_slack_ns,
            exclude_virtual,
            handlers,
            wrap_timers,
        } = cfg;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let timerfd = match mode {
            IoTimerMode::Timerfd => {
                let tfd = TimerFd::new(
                    ClockId::CLOCK_MONOTONIC,
                    TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
                )?;
                use std::os::fd::{AsFd, AsRawFd};
                let raw = tfd.as_fd().as_raw_fd();
                poll.registry()
                    .register(&mut SourceFd(&raw), TIMER, Interest::READABLE)?;
                Some(tfd)
            }
            IoTimerMode::Poll => None,
        };
        let mut slots = Vec::with_capacity(handlers.len());
        for (i, mut h) in handlers.into_iter().enumerate() {
            h.register(poll.registry(), Token(FIRST_HANDLER_TOKEN + i))?;
            slots.push(Some(h));
        }

        let loop_id = Arc::as_ptr(&waker) as usize;
        let notifier: NotifyFn = {
            let waker = waker.clone();
            Arc::new(move || {
                if CURRENT_LOOP.with(|c| c.get()) != loop_id {
                    // A failed wake (eventfd error) cannot be reported from a notify
                    // callback; the loop would still wake at its next deadline.
                    let _ = waker.wake();
                }
            })
        };
        let stop = Arc::new(AtomicBool::new(false));

        let mut lp = Loop {
            poll,
            timerfd,
            armed_abs: None,
            clocks,
            timers: timers.clone(),
            exclude_virtual,
            handlers: slots,
            wrap_timers,
            stop: stop.clone(),
            loop_id,
            timer_slack_ns,
            stats: IoThreadStats::new(),
        };
        let join = std::thread::Builder::new()
            .name("iothread".into())
            .spawn(move || {
                lp.run();
                lp.stats
            })?;

        let installed: Vec<ClockType> = ClockType::ALL
            .into_iter()
            .filter(|&c| TimerListGroup::uses(c, exclude_virtual))
            .collect();
        for &c in &installed {
            timers.get(c).set_notify(Some(notifier.clone()));
        }
        // Timers armed before the notifier was installed: make the loop look again.
        let _ = waker.wake();
        Ok(IoThreadHandle {
            waker,
            notifier,
            stop,
            timers,
            installed,
            join: Some(join),
        })
    }
}

impl std::fmt::Debug for IoThreadHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoThreadHandle")
            .field("installed", &self.installed)
            .field("running", &self.join.is_some())
            .finish()
    }
}

impl IoThreadHandle {
    /// A callback that wakes the loop so it recomputes its deadline (installed as the notify
    /// callback of the lists it serves; give it to anything else that must wake it).
    pub fn notifier(&self) -> NotifyFn {
        self.notifier.clone()
    }

    /// Stops the loop (wakes it and joins the thread) and returns its statistics. Pending
    /// timers stay armed; the handle's notifier is removed from the lists it was installed
    /// on (unless replaced since).
    pub fn stop(mut self) -> IoThreadStats {
        self.shutdown().expect("iothread joined only once")
    }

    fn shutdown(&mut self) -> Option<IoThreadStats> {
        let join = self.join.take()?;
        for &c in &self.installed {
            let list = self.timers.get(c);
            if list
                .notify_fn()
                .is_some_and(|n| Arc::ptr_eq(&n, &self.notifier))
            {
                list.set_notify(None);
            }
        }
        // Release: pairs with the loop's Acquire load; nothing else is published through
        // the flag (the eventfd write below is what wakes the loop).
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        match join.join() {
            Ok(stats) => Some(stats),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for IoThreadHandle {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.shutdown();
        } else if let Some(join) = self.join.take() {
            // Release: as in `shutdown`.
            self.stop.store(true, Ordering::Release);
            let _ = self.waker.wake();
            let _ = join.join();
        }
    }
}

/// The loop's state, owned by the iothread.
struct Loop {
    poll: Poll,
    timerfd: Option<TimerFd>,
    /// Absolute CLOCK_MONOTONIC ns the timerfd is armed for.
    armed_abs: Option<i64>,
    clocks: Arc<Clocks>,
    timers: Arc<TimerListGroup>,
    exclude_virtual: bool,
    handlers: Vec<Option<Box<dyn IoHandler>>>,
    wrap_timers: Option<TimerPhaseWrapper>,
    stop: Arc<AtomicBool>,
    loop_id: usize,
    timer_slack_ns: u64,
    stats: IoThreadStats,
}

impl Loop {
    fn stopping(&self) -> bool {
        // Acquire: pairs with the Release store in `IoThreadHandle::shutdown`.
        self.stop.load(Ordering::Acquire)
    }

    fn run(&mut self) {
        // Timer slack is per thread; QEMU sets 1 ns at start-up (`--timer-slack` here; 0
        // restores the thread's default). Failure (e.g. seccomp) only costs precision.
        let _ = nix::sys::prctl::set_timerslack(self.timer_slack_ns);
        self.stats.timer_slack_ns = nix::sys::prctl::get_timerslack()
            .ok()
            .and_then(|n| u64::try_from(n).ok());
        CURRENT_LOOP.with(|c| c.set(self.loop_id));
        let mut events = Events::with_capacity(64);
        while !self.stopping() {
            let deadline = self.timers.deadline_ns(&self.clocks, self.exclude_virtual);
            let timeout = match self.arm(deadline) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("iothread: timerfd_settime failed: {e}; falling back to poll");
                    self.timerfd = None;
                    self.armed_abs = None;
                    continue;
                }
            };
            self.stats.iterations += 1;
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    events.clear();
                }
                Err(e) => {
                    eprintln!("iothread: poll failed: {e}");
                    break;
                }
            }
            for event in events.iter() {
                self.dispatch(event);
            }
            if self.stopping() {
                break;
            }
            self.run_timers();
        }
        CURRENT_LOOP.with(|c| c.set(0));
    }

    /// Arms the timerfd for `deadline` ns from now (or disarms it) and returns the poll
    /// timeout.
    fn arm(&mut self, deadline: i64) -> nix::Result<Option<Duration>> {
        if deadline == 0 {
            // Already expired: poll without sleeping, then run it.
            return Ok(Some(Duration::ZERO));
        }
        let Some(tfd) = &self.timerfd else {
            return Ok((deadline > 0).then(|| Duration::from_nanos(deadline as u64)));
        };
        if deadline < 0 {
            if self.armed_abs.take().is_some() {
                tfd.unset()?;
            }
            return Ok(None);
        }
        // A zero it_value would disarm the timerfd: never arm below 1 ns.
        let abs = monotonic_ns().saturating_add(deadline).max(1);
        if self.armed_abs != Some(abs) {
            let ts = TimeSpec::new(abs / 1_000_000_000, abs % 1_000_000_000);
            tfd.set(
                Expiration::OneShot(ts),
                TimerSetTimeFlags::TFD_TIMER_ABSTIME,
            )?;
            self.armed_abs = Some(abs);
        }
        Ok(None)
    }

    fn dispatch(&mut self, event: &Event) {
        match event.token() {
            WAKER => self.stats.wakeups += 1,
            TIMER => {
                self.stats.timerfd_events += 1;
                if let Some(tfd) = &self.timerfd {
                    // Consume the expiration count (non-blocking; EAGAIN if a re-arm beat
                    // us to it). Edge-triggered epoll reports the next expiry regardless.
                    let _ = nix::unistd::read(tfd, &mut [0u8; 8]);
                }
                self.armed_abs = None;
            }
            Token(t) => {
                let Some(slot) = t
                    .checked_sub(FIRST_HANDLER_TOKEN)
                    .and_then(|i| self.handlers.get_mut(i))
                else {
                    return;
                };
                let remove = match slot {
                    Some(h) => h.ready(event) == HandlerAction::Remove,
                    None => false,
                };
                if remove {
                    if let Some(mut h) = slot.take() {
                        let _ = h.deregister(self.poll.registry());
                    }
                }
            }
        }
    }

    fn run_timers(&mut self) {
        let clocks = &self.clocks;
        let timers = &self.timers;
        let exclude_virtual = self.exclude_virtual;
        let stats = &mut self.stats;
        let mut run = || {
            timers.run_all(clocks, exclude_virtual, &mut |clock, expire| {
                record_ns(
                    &mut stats.lateness,
                    clocks.get_ns(clock).saturating_sub(expire),
                );
                stats.timers_fired += 1;
            });
        };
        match &mut self.wrap_timers {
            Some(wrap) => wrap(&mut run),
            None => run(),
        }
    }
}

/// Records `ns` (negative values as 0) into an auto-resizing histogram.
fn record_ns(hist: &mut Histogram<u64>, ns: i64) {
    let v = ns.max(0) as u64;
    // `record` auto-resizes; `saturating_record` would silently clamp to the current highest
    // trackable value (2 for a fresh `Histogram::new`) instead.
    if hist.record(v).is_err() {
        hist.saturating_record(v);
    }
}

/// Measures timer lateness: starts an iothread in `mode` on fresh clocks, arms one
/// REALTIME timer `period_ns` ahead that re-arms itself `period_ns` after each callback
/// starts, until it has fired `n_timers` times (one after another), then stops the
/// iothread and returns its statistics (lateness has `n_timers` samples).
///
/// Re-arming relative to "now" rather than to the previous expiry keeps samples
/// independent: a late firing does not make the next one late too.
pub fn measure_lateness(
    mode: IoTimerMode,
    n_timers: u64,
    period_ns: i64,
) -> io::Result<IoThreadStats> {
    let clocks = Arc::new(Clocks::new());
    let timers = Arc::new(TimerListGroup::new());
    let handle = IoThread::spawn(
        clocks.clone(),
        timers.clone(),
        IoThreadConfig {
            mode,
            ..IoThreadConfig::default()
        },
    )?;
    if n_timers == 0 {
        return Ok(handle.stop());
    }
    let (tx, rx) = crossbeam_channel::bounded::<()>(1);
    let mut fired = 0u64;
    let c = clocks.clone();
    let timer = timers
        .get(ClockType::Realtime)
        .new_timer_with_ref(move |me| {
            fired += 1;
            if fired < n_timers {
                me.modify(c.get_ns(ClockType::Realtime) + period_ns);
            } else {
                let _ = tx.try_send(());
            }
        });
    timer.modify(clocks.get_ns(ClockType::Realtime) + period_ns);
    // Generous bound so a stuck loop cannot hang a benchmark forever.
    let per = Duration::from_nanos(period_ns.max(0) as u64) + Duration::from_millis(50);
    let limit = per
        .saturating_mul(u32::try_from(n_timers).unwrap_or(u32::MAX))
        .saturating_add(Duration::from_secs(10));
    let _ = rx.recv_timeout(limit);
    drop(timer);
    Ok(handle.stop())
}

#[cfg(test)]
mod tests {
    //! The atomics in these tests are counters and stop flags read on the thread that bumps
    //! them or after `join()`; their orderings protect no other data.
    use super::*;
    use crossbeam_channel::{Receiver, Sender, unbounded};
    use std::io::{Read, Write};
    use std::time::Instant;

    const MS: i64 = 1_000_000;
    const WAIT: Duration = Duration::from_secs(10);

    fn setup(mode: IoTimerMode) -> (Arc<Clocks>, Arc<TimerListGroup>, IoThreadHandle) {
        let clocks = Arc::new(Clocks::new());
        let timers = Arc::new(TimerListGroup::new());
        let h = IoThread::spawn(
            clocks.clone(),
            timers.clone(),
            IoThreadConfig {
                mode,
                ..Default::default()
            },
        )
        .unwrap();
        (clocks, timers, h)
    }

    #[test]
    fn timer_slack_is_the_configured_one() {
        for (asked, expect) in [(None, Some(1)), (Some(5000), Some(5000))] {
            let mut cfg = IoThreadConfig::default();
            if let Some(ns) = asked {
                cfg.timer_slack_ns = ns;
            }
            let h = IoThread::spawn(
                Arc::new(Clocks::new()),
                Arc::new(TimerListGroup::new()),
                cfg,
            )
            .unwrap();
            assert_eq!(h.stop().timer_slack_ns, expect, "{asked:?}");
        }
        // 0: the thread's default, which is never 0.
        let h = IoThread::spawn(
            Arc::new(Clocks::new()),
            Arc::new(TimerListGroup::new()),
            IoThreadConfig {
                timer_slack_ns: 0,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(h.stop().timer_slack_ns.is_some_and(|n| n > 0));
    }

    fn one_shot(mode: IoTimerMode) {
        let (clocks, timers, h) = setup(mode);
        assert!(timers.get(ClockType::Realtime).notify_fn().is_some());
        let (tx, rx) = unbounded();
        let c = clocks.clone();
        let t = timers.get(ClockType::Realtime).new_timer(move || {
            tx.send(c.get_ns(ClockType::Realtime)).unwrap();
        });
        let expire = clocks.get_ns(ClockType::Realtime) + 20 * MS;
        t.modify(expire);
        let at = rx.recv_timeout(WAIT).expect("timer fired");
        assert!(at >= expire);
        assert!(!t.is_pending());
        std::thread::sleep(Duration::from_millis(20));
        assert!(rx.try_recv().is_err(), "fired twice");
        let stats = h.stop();
        assert_eq!(stats.timers_fired, 1);
        assert_eq!(stats.lateness.len(), 1);
        assert!(
            stats.lateness.max() < 50 * MS as u64,
            "{}",
            stats.lateness.max()
        );
        assert!(timers.get(ClockType::Realtime).notify_fn().is_none());
    }

    #[test]
    fn realtime_timer_fires_once_timerfd() {
        one_shot(IoTimerMode::Timerfd);
    }

    #[test]
    fn realtime_timer_fires_once_poll() {
        one_shot(IoTimerMode::Poll);
    }

    fn periodic(mode: IoTimerMode) {
        let (clocks, timers, h) = setup(mode);
        let (tx, rx) = unbounded();
        let mut n = 0;
        let t = timers
            .get(ClockType::Realtime)
            .new_timer_with_ref(move |me| {
                n += 1;
                if n < 20 {
                    me.modify(monotonic_ns() + 2 * MS);
                } else {
                    tx.send(()).unwrap();
                }
            });
        t.modify(clocks.get_ns(ClockType::Realtime) + 2 * MS);
        rx.recv_timeout(WAIT).expect("20 firings");
        assert!(!t.is_pending());
        let stats = h.stop();
        assert_eq!(stats.timers_fired, 20);
        assert_eq!(stats.lateness.len(), 20);
    }

    #[test]
    fn periodic_timer_timerfd() {
        periodic(IoTimerMode::Timerfd);
    }

    #[test]
    fn periodic_timer_poll() {
        periodic(IoTimerMode::Poll);
    }

    fn earlier_timer_wakes_loop(mode: IoTimerMode) {
        let (clocks, timers, h) = setup(mode);
        let (tx, rx) = unbounded();
        let list = timers.get(ClockType::Realtime);
        let tx2 = tx.clone();
        let late = list.new_timer(move || tx2.send("late").unwrap());
        let early = list.new_timer(move || tx.send("early").unwrap());
        late.modify(clocks.get_ns(ClockType::Realtime) + 60_000 * MS);
        // Let the loop go to sleep on the late timer.
        std::thread::sleep(Duration::from_millis(30));
        early.modify(clocks.get_ns(ClockType::Realtime) + 5 * MS);
        assert_eq!(rx.recv_timeout(WAIT).unwrap(), "early");
        assert!(late.is_pending());
        // stop() joins promptly although a timer is pending a minute away.
        let t0 = Instant::now();
        let stats = h.stop();
        assert!(t0.elapsed() < Duration::from_secs(5));
        assert_eq!(stats.timers_fired, 1);
        assert!(stats.wakeups >= 1);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn earlier_timer_from_other_thread_wakes_loop_timerfd() {
        earlier_timer_wakes_loop(IoTimerMode::Timerfd);
    }

    #[test]
    fn earlier_timer_from_other_thread_wakes_loop_poll() {
        earlier_timer_wakes_loop(IoTimerMode::Poll);
    }

    #[test]
    fn past_timer_runs_at_once_and_timers_armed_before_spawn_run() {
        let clocks = Arc::new(Clocks::new());
        let timers = Arc::new(TimerListGroup::new());
        let (tx, rx) = unbounded();
        let tx2 = tx.clone();
        let before = timers
            .get(ClockType::Host)
            .new_timer(move || tx2.send("before").unwrap());
        before.modify(0);
        let h = IoThread::spawn(clocks.clone(), timers.clone(), IoThreadConfig::default()).unwrap();
        assert_eq!(rx.recv_timeout(WAIT).unwrap(), "before");
        let past = timers
            .get(ClockType::Virtual)
            .new_timer(move || tx.send("past").unwrap());
        past.modify(clocks.get_ns(ClockType::Virtual) - 1_000 * MS);
        assert_eq!(rx.recv_timeout(WAIT).unwrap(), "past");
        assert_eq!(h.stop().timers_fired, 2);
    }

    #[test]
    fn virtual_excluded_under_icount() {
        let clocks = Arc::new(Clocks::new());
        let timers = Arc::new(TimerListGroup::new());
        let h = IoThread::spawn(
            clocks.clone(),
            timers.clone(),
            IoThreadConfig {
                exclude_virtual: true,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(timers.get(ClockType::Virtual).notify_fn().is_none());
        let (tx, rx) = unbounded();
        let tx2 = tx.clone();
        let v = timers
            .get(ClockType::Virtual)
            .new_timer(move || tx2.send("virtual").unwrap());
        v.modify(0);
        let r = timers
            .get(ClockType::Realtime)
            .new_timer(move || tx.send("realtime").unwrap());
        r.modify(clocks.get_ns(ClockType::Realtime) + 10 * MS);
        assert_eq!(rx.recv_timeout(WAIT).unwrap(), "realtime");
        assert!(v.is_pending());
        assert_eq!(h.stop().timers_fired, 1);
    }

    struct PipeHandler {
        rx: mio::unix::pipe::Receiver,
        out: Sender<Vec<u8>>,
    }

    impl IoHandler for PipeHandler {
        fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
            registry.register(&mut self.rx, token, Interest::READABLE)
        }
        fn ready(&mut self, _event: &Event) -> HandlerAction {
            let mut buf = [0u8; 64];
            let mut got = Vec::new();
            loop {
                match self.rx.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(_) => break,
                }
            }
            let done = got.contains(&b'!');
            self.out.send(got).unwrap();
            if done {
                HandlerAction::Remove
            } else {
                HandlerAction::Continue
            }
        }
        fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
            registry.deregister(&mut self.rx)
        }
    }

    #[test]
    fn io_handlers_receive_events() {
        let (mut wr, rd) = mio::unix::pipe::new().unwrap();
        let (tx, rx): (Sender<Vec<u8>>, Receiver<Vec<u8>>) = unbounded();
        let h = IoThread::spawn(
            Arc::new(Clocks::new()),
            Arc::new(TimerListGroup::new()),
            IoThreadConfig {
                handlers: vec![Box::new(PipeHandler { rx: rd, out: tx })],
                ..Default::default()
            },
        )
        .unwrap();
        wr.write_all(b"hi").unwrap();
        assert_eq!(rx.recv_timeout(WAIT).unwrap(), b"hi");
        wr.write_all(b"bye!").unwrap();
        assert_eq!(rx.recv_timeout(WAIT).unwrap(), b"bye!");
        h.stop();
    }

    #[test]
    fn wrapper_runs_around_timer_phase() {
        let clocks = Arc::new(Clocks::new());
        let timers = Arc::new(TimerListGroup::new());
        let lock = Arc::new(parking_lot::Mutex::new(()));
        let l = lock.clone();
        let h = IoThread::spawn(
            clocks.clone(),
            timers.clone(),
            IoThreadConfig {
                wrap_timers: Some(Box::new(move |run| {
                    let _g = l.lock();
                    run();
                })),
                ..Default::default()
            },
        )
        .unwrap();
        let (tx, rx) = unbounded();
        let l2 = lock.clone();
        let t = timers
            .get(ClockType::Realtime)
            .new_timer(move || tx.send(l2.is_locked()).unwrap());
        t.modify(0);
        assert!(
            rx.recv_timeout(WAIT).unwrap(),
            "callback ran under the wrapper's lock"
        );
        h.stop();
    }

    #[test]
    fn measure_lateness_helper() {
        for mode in [IoTimerMode::Timerfd, IoTimerMode::Poll] {
            let stats = measure_lateness(mode, 10, MS / 2).unwrap();
            assert_eq!(stats.timers_fired, 10);
            assert_eq!(stats.lateness.len(), 10);
        }
        assert_eq!(
            measure_lateness(IoTimerMode::Timerfd, 0, MS)
                .unwrap()
                .timers_fired,
            0
        );
    }

    #[test]
    fn lateness_histogram_resizes() {
        let mut h = IoThreadStats::new().lateness;
        record_ns(&mut h, 1_234_567_890);
        record_ns(&mut h, -5);
        assert_eq!(h.len(), 2);
        assert!(h.equivalent(h.max(), 1_234_567_890));
        assert_eq!(h.min(), 0);
    }

    #[test]
    fn drop_handle_stops_thread() {
        let (_c, timers, h) = setup(IoTimerMode::Timerfd);
        drop(h);
        assert!(timers.get(ClockType::Realtime).notify_fn().is_none());
    }
}
