//! Guest-visible clocks: QEMU's `QEMUClockType` and `TimersState`.
//!
//! Mirrors `util/qemu-timer.c` (`qemu_clock_get_ns`) and `system/cpu-timers.c`
//! (`cpu_get_clock`, `cpu_get_ticks`, `cpu_enable_ticks`, `cpu_disable_ticks`), plus the
//! icount arithmetic of `accel/tcg/icount-common.c` (`icount_get_raw`, `icount_to_ns`,
//! `icount_round`, the continuity rule of `icount_adjust`).
//!
//! # Design
//!
//! Like tokio's time module, the clock is a small, cheap, shareable source of "now" that the
//! timer wheel (here: [`crate::time::timer`]) is driven by, and it is kept separate from the timer
//! data structures so that tests and alternative drivers can substitute it.
//!
//! There are four clocks ([`ClockType`]):
//!
//! * `REALTIME` is `CLOCK_MONOTONIC` in nanoseconds, with the kernel's own origin (boot), so
//!   that an absolute `CLOCK_MONOTONIC` timerfd expiry can be computed from it directly.
//!   It runs while the machine is stopped.
//! * `HOST` is `CLOCK_REALTIME` (wall clock) in nanoseconds since the Unix epoch.
//! * `VIRTUAL` without icount is `cpu_clock_offset + monotonic_now` while the machine runs
//!   and `cpu_clock_offset` alone while it is stopped: [`Clocks::stop`] stores the current
//!   value into the offset (VIRTUAL freezes) and [`Clocks::start`] subtracts `monotonic_now`
//!   from it (VIRTUAL resumes from the frozen value, without a jump). With icount
//!   ([`Clocks::with_icount`]) VIRTUAL is `bias + (executed << shift)` read from an
//!   [`IcountClock`]; it freezes by itself while stopped because no instruction retires.
//! * `VIRTUAL_RT` is always the non-icount VIRTUAL formula (QEMU's `cpu_get_clock`): under
//!   icount it is host time that only runs while the machine runs, which is what idle time is
//!   warped by.
//!
//! `cpu_clock_offset` and the running flag change together, so a reader must never see one
//! without the other. As in QEMU (`vm_clock_seqlock` + `vm_clock_lock`), they are published
//! through a *seqlock*: writers are serialised by a mutex and bump an odd/even sequence
//! number around their stores; readers never block, they retry when they saw an odd
//! sequence or when the sequence changed while they read. The host clock is read *inside*
//! the read section (as QEMU's `cpu_get_clock_locked` does) and, in [`Clocks::stop`], after
//! the writer has made the sequence odd; that is what makes VIRTUAL monotonic across a
//! concurrent stop: any reader whose section validated read its host time before the
//! writer read the host time that it froze.
//!
//! The same seqlock pattern protects the `(shift, bias)` pair of an [`IcountClock`] against
//! [`IcountClock::set_shift`]; the instruction counter itself is a plain atomic that
//! vCPU threads add to without taking any lock (see the type's documentation for why its
//! accesses are `SeqCst`).
//!
//! The seqlock follows Boehm, "Can seqlocks get along with programming language memory
//! models?" (MSPC 2012): data fields are atomics read with `Relaxed`, the reader ends with an
//! `Acquire` fence before re-reading the sequence, and the writer issues a `Release` fence
//! after making the sequence odd.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering, fence};

use nix::time::{ClockId, clock_gettime};
use parking_lot::Mutex;

/// The clocks of QEMU's `QEMUClockType`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ClockType {
    /// `QEMU_CLOCK_REALTIME`: host monotonic time; runs while the machine is stopped.
    Realtime,
    /// `QEMU_CLOCK_VIRTUAL`: guest time; runs only while the machine runs (icount-driven
    /// under icount).
    Virtual,
    /// `QEMU_CLOCK_HOST`: host wall-clock time (`CLOCK_REALTIME`).
    Host,
    /// `QEMU_CLOCK_VIRTUAL_RT`: host time that runs only while the machine runs.
    VirtualRt,
}

impl ClockType {
    /// Every clock, in QEMU's enum order (also the index order of [`ClockType::index`]).
    pub const ALL: [ClockType; 4] = [
        ClockType::Realtime,
        ClockType::Virtual,
        ClockType::Host,
        ClockType::VirtualRt,
    ];

    /// The clock's name as QEMU spells it in lower case: `"realtime"`, `"virtual"`, `"host"`,
    /// `"virtual_rt"`.
    pub fn name(self) -> &'static str {
        match self {
            ClockType::Realtime => "realtime",
            ClockType::Virtual => "virtual",
            ClockType::Host => "host",
            ClockType::VirtualRt => "virtual_rt",
        }
    }

    /// Position of this clock in [`ClockType::ALL`] (QEMU's enum value).
    pub fn index(self) -> usize {
        match self {
            ClockType::Realtime => 0,
            ClockType::Virtual => 1,
            ClockType::Host => 2,
            ClockType::VirtualRt => 3,
        }
    }
}

impl std::fmt::Display for ClockType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn clock_ns(id: ClockId) -> i64 {
    // clock_gettime on CLOCK_MONOTONIC / CLOCK_REALTIME cannot fail on Linux for these ids.
    let ts = clock_gettime(id).expect("clock_gettime");
    ts.tv_sec() * 1_000_000_000 + ts.tv_nsec()
}

/// `CLOCK_MONOTONIC` in nanoseconds (QEMU's `get_clock`). This is the time base of
/// [`ClockType::Realtime`] and of absolute `CLOCK_MONOTONIC` timerfd expiries.
pub fn monotonic_ns() -> i64 {
    clock_ns(ClockId::CLOCK_MONOTONIC)
}

/// `CLOCK_REALTIME` in nanoseconds since the Unix epoch (QEMU's `get_clock_realtime`).
pub fn host_ns() -> i64 {
    clock_ns(ClockId::CLOCK_REALTIME)
}

/// A sequence lock's counter with writer serialisation (QEMU's `QemuSeqLock` paired with a
/// spin lock). Data protected by it must be atomics accessed with `Relaxed` inside the
/// sections.
#[derive(Debug, Default)]
struct SeqLock {
    /// Odd while a writer is inside its section.
    seq: AtomicU64,
    /// Serialises writers (the seqlock itself only handles reader/writer races).
    writer: Mutex<()>,
}

impl SeqLock {
    /// Runs `read` until it executes without overlapping a write section.
    #[inline]
    fn read<T>(&self, mut read: impl FnMut() -> T) -> T {
        loop {
            // Acquire: pairs with the Release store that ends a write section, so that the
            // Relaxed data loads in `read` see at least the values stored in every write
            // section that completed before this load.
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 & 1 == 1 {
                std::hint::spin_loop();
                continue;
            }
            let value = read();
            // Acquire fence: keeps the data loads above from moving below the re-check, and
            // synchronises with the writer's Release fence if any data load saw a value
            // stored by a writer that had already made the sequence odd; the Relaxed load
            // below then sees that odd (or a later) value and we retry.
            fence(Ordering::Acquire);
            // SeqCst (rather than Relaxed): IcountClock's writer reads the lock-free
            // instruction counter after making the sequence odd; a SeqCst total order over
            // this load, the writer's odd store and both counter accesses ensures that a
            // reader which validated here read a counter value no newer than the one the
            // writer rebased on (see `IcountClock`). It is a plain load on x86-64.
            let s2 = self.seq.load(Ordering::SeqCst);
            if s1 == s2 {
                return value;
            }
        }
    }

    /// Runs `write` as a write section; writers are serialised by the mutex.
    #[inline]
    fn write<T>(&self, write: impl FnOnce() -> T) -> T {
        let _guard = self.writer.lock();
        // Relaxed: only writers (serialised by `writer`) store to `seq`, so this reads our
        // own previous store or one made visible to us by the mutex.
        let s = self.seq.load(Ordering::Relaxed);
        // SeqCst: see `read`; orders this odd store before the icount writer's counter read
        // in the single total order. (Release/Acquire alone would not forbid the
        // store->load reordering that x86 performs.)
        self.seq.store(s.wrapping_add(1), Ordering::SeqCst);
        // Release fence: any reader whose Relaxed data loads observe a store made below
        // synchronises with this fence through its Acquire fence, hence sees the odd
        // sequence in its re-check and retries.
        fence(Ordering::Release);
        let r = write();
        // Release: publishes the data stores above to readers whose first (Acquire) load
        // sees this even value.
        self.seq.store(s.wrapping_add(2), Ordering::Release);
        r
    }
}

/// The instruction-count clock of icount mode: VIRTUAL = `bias + (executed << shift)`.
///
/// Mirrors QEMU's `timers_state.qemu_icount`, `qemu_icount_bias` and `icount_time_shift`.
///
/// `executed` is the total number of instructions retired over all vCPUs; vCPU threads add
/// to it with [`IcountClock::add_executed`] without any lock (QEMU updates it under the
/// clock seqlock; a lock-free counter is what the parallel "global" icount mode needs).
/// `(shift, bias)` change together in [`IcountClock::set_shift`] and [`IcountClock::add_bias`]
/// and are read under a seqlock.
///
/// Monotonicity across `set_shift`: the writer rebases `bias` on the counter value it reads
/// *inside* its write section. A reader that validated its section with the old pair must
/// have read a counter value no larger than the writer's, otherwise, after a shift
/// decrease, a later reader could compute an earlier time. Acquire/Release does not forbid
/// that outcome (it is the store-buffering pattern: the writer's odd sequence store can be
/// delayed past its counter load), so the odd-sequence store, the sequence re-check and
/// every access to `executed` are `SeqCst`, which puts them in one total order. On x86-64
/// this costs nothing extra on the read side (SeqCst loads are plain loads and
/// `add_executed` is a locked RMW anyway).
#[derive(Debug)]
pub struct IcountClock {
    /// `icount_time_shift`: one instruction lasts `2^shift` ns (0..=10).
    shift: AtomicU32,
    /// `qemu_icount_bias`: ns added to the instruction-derived time.
    bias: AtomicI64,
    /// Instructions retired, total over vCPUs.
    executed: AtomicI64,
    /// Protects the consistency of (`shift`, `bias`) against writers.
    seq: SeqLock,
}

/// QEMU's `MAX_ICOUNT_SHIFT`: at shift 10 one instruction is 1024 ns (about 1 MIPS).
pub const MAX_ICOUNT_SHIFT: u32 = 10;

impl IcountClock {
    /// A clock at `shift` (clamped to 0..=[`MAX_ICOUNT_SHIFT`]), bias 0, no instruction
    /// executed.
    pub fn new(shift: u32) -> Self {
        IcountClock {
            shift: AtomicU32::new(shift.min(MAX_ICOUNT_SHIFT)),
            bias: AtomicI64::new(0),
            executed: AtomicI64::new(0),
            seq: SeqLock::default(),
        }
    }

    /// Instructions retired so far, over all vCPUs (QEMU's `icount_get_raw`).
    pub fn get_raw(&self) -> i64 {
        // SeqCst: part of the single total order described on the type (monotonicity of
        // get_ns across set_shift); the counter itself only needs coherence.
        self.executed.load(Ordering::SeqCst)
    }

    /// VIRTUAL under icount: `bias + (executed << shift)` (QEMU's `icount_get`).
    pub fn get_ns(&self) -> i64 {
        self.seq.read(|| {
            // Relaxed: protected by the seqlock (consistent pair or retry).
            let shift = self.shift.load(Ordering::Relaxed);
            let bias = self.bias.load(Ordering::Relaxed);
            // SeqCst: see the type's documentation.
            let executed = self.executed.load(Ordering::SeqCst);
            bias.wrapping_add(executed << shift)
        })
    }

    /// Nanoseconds lasted by `insns` instructions at the current shift (`icount_to_ns`).
    pub fn to_ns(&self, insns: i64) -> i64 {
        // Relaxed: a lone read of the shift; callers needing it consistent with the bias use
        // `get_ns`.
        insns << self.shift.load(Ordering::Relaxed)
    }

    /// Instructions needed to cover `ns` nanoseconds, rounded up (QEMU's `icount_round`:
    /// `(ns + 2^shift - 1) >> shift`).
    pub fn round(&self, ns: i64) -> i64 {
        // Relaxed: as in `to_ns`.
        let shift = self.shift.load(Ordering::Relaxed);
        (ns + (1i64 << shift) - 1) >> shift
    }

    /// Counts `n` more retired instructions (lock-free; called by vCPU threads).
    pub fn add_executed(&self, n: i64) {
        // SeqCst: see the type's documentation (total order with set_shift's rebase).
        self.executed.fetch_add(n, Ordering::SeqCst);
    }

    /// Moves VIRTUAL forward by `ns` (idle warp, `sleep=off` jumps to the next deadline).
    pub fn add_bias(&self, ns: i64) {
        self.seq.write(|| {
            // Relaxed: inside the write section; published by the seqlock's Release store.
            let b = self.bias.load(Ordering::Relaxed);
            self.bias.store(b.wrapping_add(ns), Ordering::Relaxed);
        });
    }

    /// Changes the shift (clamped to 0..=[`MAX_ICOUNT_SHIFT`]) keeping VIRTUAL continuous:
    /// `bias = current_ns - (executed << new)`.
    pub fn set_shift(&self, new: u32) {
        let new = new.min(MAX_ICOUNT_SHIFT);
        self.seq.write(|| {
            // Relaxed for shift/bias: inside the write section (writers are serialised).
            let old = self.shift.load(Ordering::Relaxed);
            let bias = self.bias.load(Ordering::Relaxed);
            // SeqCst: read after the odd sequence store in the total order (see type doc).
            let executed = self.executed.load(Ordering::SeqCst);
            let cur = bias.wrapping_add(executed << old);
            self.bias
                .store(cur.wrapping_sub(executed << new), Ordering::Relaxed);
            self.shift.store(new, Ordering::Relaxed);
        });
    }

    /// The current shift.
    pub fn shift(&self) -> u32 {
        // Relaxed: a lone informational read.
        self.shift.load(Ordering::Relaxed)
    }

    /// The current bias in ns.
    pub fn bias(&self) -> i64 {
        // Relaxed: a lone informational read.
        self.bias.load(Ordering::Relaxed)
    }
}

impl Default for IcountClock {
    fn default() -> Self {
        IcountClock::new(0)
    }
}

/// QEMU's `TimersState`: the clocks of one machine, with the stop/start bookkeeping that
/// freezes VIRTUAL while the machine is paused.
#[derive(Debug)]
pub struct Clocks {
    /// `cpu_clock_offset`: VIRTUAL (non-icount) = offset + monotonic while running, offset
    /// alone while stopped.
    clock_offset: AtomicI64,
    /// `cpu_ticks_offset`: the same for `cpu_get_ticks`.
    ticks_offset: AtomicI64,
    /// `cpu_ticks_enabled`: the machine is running.
    running: AtomicBool,
    /// Protects (`clock_offset`, `ticks_offset`, `running`).
    seq: SeqLock,
    /// `cpu_ticks_prev`: the largest value `cpu_get_ticks` returned.
    ticks_prev: AtomicI64,
    /// Under icount, the source of VIRTUAL.
    icount: Option<Arc<IcountClock>>,
    /// `smp=local`: a vCPU thread reading VIRTUAL inside [`with_local_now`]
    /// reads its own clock.
    local: bool,
}

thread_local! {
    /// The calling vCPU thread's own clock while it accesses a device or
    /// reads the time (`smp=local`); `i64::MIN` otherwise.
    static LOCAL_NOW: std::cell::Cell<i64> = const { std::cell::Cell::new(i64::MIN) };
}

/// Run `f` with VIRTUAL read on this thread as `now` (under `smp=local`,
/// where each vCPU has a clock of its own: a device sees the clock of the
/// hart that accesses it). Restores the previous value after.
pub fn with_local_now<R>(now: i64, f: impl FnOnce() -> R) -> R {
    let prev = LOCAL_NOW.with(|c| c.replace(now));
    let r = f();
    LOCAL_NOW.with(|c| c.set(prev));
    r
}

impl Default for Clocks {
    fn default() -> Self {
        Clocks::new()
    }
}

impl Clocks {
    fn build(icount: Option<Arc<IcountClock>>, running: bool) -> Self {
        let now = monotonic_ns();
        let (clock_offset, ticks_offset) = if running { (-now, -now) } else { (0, 0) };
        Clocks {
            clock_offset: AtomicI64::new(clock_offset),
            ticks_offset: AtomicI64::new(ticks_offset),
            running: AtomicBool::new(running),
            seq: SeqLock::default(),
            ticks_prev: AtomicI64::new(0),
            icount,
            local: false,
        }
    }

    /// Clocks without icount, **running**, with VIRTUAL, VIRTUAL_RT and `cpu_get_ticks`
    /// starting at 0 now. (QEMU creates the machine stopped and starts it in `vm_start`; use
    /// [`Clocks::new_stopped`] for that; [`Clocks::start`] on running clocks is a no-op.)
    pub fn new() -> Self {
        Clocks::build(None, true)
    }

    /// Clocks without icount, **stopped** at VIRTUAL = 0, as QEMU's `TimersState` is before
    /// `vm_start`.
    pub fn new_stopped() -> Self {
        Clocks::build(None, false)
    }

    /// Clocks whose VIRTUAL reads `icount.get_ns()`; running (VIRTUAL_RT starts at 0 now).
    /// [`Clocks::stop`] and [`Clocks::start`] affect VIRTUAL_RT and `cpu_get_ticks` only:
    /// VIRTUAL freezes by itself because no instruction retires while stopped.
    pub fn with_icount(icount: Arc<IcountClock>) -> Self {
        Clocks::build(Some(icount), true)
    }

    /// Clocks for `smp=local`: VIRTUAL, read by anyone, is the clock the
    /// timer lists follow (`icount`'s, which the vCPUs move to the minimum
    /// over their own clocks, and which counts no instructions itself);
    /// read by a vCPU thread inside [`with_local_now`], it is that vCPU's
    /// own clock.
    pub fn with_local_icount(icount: Arc<IcountClock>) -> Self {
        let mut c = Clocks::build(Some(icount), true);
        c.local = true;
        c
    }

    /// Whether each vCPU has a clock of its own (`smp=local`).
    pub fn local(&self) -> bool {
        self.local
    }

    /// The icount clock, if VIRTUAL is icount-driven.
    pub fn icount(&self) -> Option<&Arc<IcountClock>> {
        self.icount.as_ref()
    }

    /// Current value of `clock` in nanoseconds (QEMU's `qemu_clock_get_ns`).
    pub fn get_ns(&self, clock: ClockType) -> i64 {
        match clock {
            ClockType::Realtime => monotonic_ns(),
            ClockType::Host => host_ns(),
            ClockType::Virtual => match &self.icount {
                Some(_) if self.local && LOCAL_NOW.with(|c| c.get()) != i64::MIN => {
                    LOCAL_NOW.with(|c| c.get())
                }
                Some(ic) => ic.get_ns(),
                None => self.cpu_get_clock(),
            },
            ClockType::VirtualRt => self.cpu_get_clock(),
        }
    }

    /// Non-icount VIRTUAL (QEMU's `cpu_get_clock`): offset + monotonic while running, frozen
    /// while stopped. This is VIRTUAL_RT in every mode.
    pub fn cpu_get_clock(&self) -> i64 {
        self.seq.read(|| {
            // Relaxed: consistency of (offset, running) is the seqlock's job.
            let offset = self.clock_offset.load(Ordering::Relaxed);
            if self.running.load(Ordering::Relaxed) {
                // Read inside the section so a validated read precedes a concurrent stop's
                // own host-time read (monotonicity across stop).
                offset + monotonic_ns()
            } else {
                offset
            }
        })
    }

    /// QEMU's `cpu_get_ticks`: host ticks (monotonic ns) + offset while running, frozen while
    /// stopped, and never smaller than a value returned before.
    pub fn cpu_get_ticks(&self) -> i64 {
        let ticks = self.seq.read(|| self.ticks_locked());
        // AcqRel RMW: every call is an RMW on `ticks_prev`, so RMWs read the latest value in
        // its modification order; a call that happens after another returns at least what
        // the other returned. (QEMU also bumps the offset in this case; the host monotonic
        // clock never goes backwards, so only stop/start rounding could make it matter.)
        let prev = self.ticks_prev.fetch_max(ticks, Ordering::AcqRel);
        prev.max(ticks)
    }

    fn ticks_locked(&self) -> i64 {
        // Relaxed: called inside a seqlock section (read or write).
        let offset = self.ticks_offset.load(Ordering::Relaxed);
        if self.running.load(Ordering::Relaxed) {
            offset + monotonic_ns()
        } else {
            offset
        }
    }

    /// Whether the machine's clocks are running (`cpu_ticks_enabled`).
    pub fn is_running(&self) -> bool {
        // Relaxed inside a seqlock read section: the section's Acquire load of the sequence
        // makes a caller that sees "stopped" also see the frozen offsets.
        self.seq.read(|| self.running.load(Ordering::Relaxed))
    }

    /// Stops VIRTUAL (without icount), VIRTUAL_RT and `cpu_get_ticks`: stores their current
    /// values into the offsets (QEMU's `cpu_disable_ticks`). Idempotent.
    pub fn stop(&self) {
        self.seq.write(|| {
            // Relaxed: inside the write section; writers are serialised.
            if !self.running.load(Ordering::Relaxed) {
                return;
            }
            // Host time read after the sequence became odd: see the module documentation.
            let now = monotonic_ns();
            let ticks = self.ticks_offset.load(Ordering::Relaxed) + now;
            // Never freeze below a value already handed out.
            let ticks = ticks.max(self.ticks_prev.load(Ordering::Relaxed));
            self.ticks_offset.store(ticks, Ordering::Relaxed);
            let clock = self.clock_offset.load(Ordering::Relaxed) + now;
            self.clock_offset.store(clock, Ordering::Relaxed);
            self.running.store(false, Ordering::Relaxed);
        });
    }

    /// Restarts the clocks from their frozen values, without a jump (QEMU's
    /// `cpu_enable_ticks`). Idempotent.
    pub fn start(&self) {
        self.seq.write(|| {
            // Relaxed: inside the write section; writers are serialised.
            if self.running.load(Ordering::Relaxed) {
                return;
            }
            let now = monotonic_ns();
            let t = self.ticks_offset.load(Ordering::Relaxed);
            self.ticks_offset.store(t - now, Ordering::Relaxed);
            let c = self.clock_offset.load(Ordering::Relaxed);
            self.clock_offset.store(c - now, Ordering::Relaxed);
            self.running.store(true, Ordering::Relaxed);
        });
    }
}

#[cfg(test)]
mod tests {
    //! The atomics in these tests are counters and stop flags read on the thread that bumps
    //! them or after `join()`; their orderings protect no other data.
    use super::*;
    use std::thread;
    use std::time::Duration;

    #[test]
    fn names_and_indices() {
        let names: Vec<_> = ClockType::ALL.iter().map(|c| c.name()).collect();
        assert_eq!(names, ["realtime", "virtual", "host", "virtual_rt"]);
        for (i, c) in ClockType::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
            assert_eq!(c.to_string(), c.name());
        }
    }

    #[test]
    fn monotonic_clocks() {
        let c = Clocks::new();
        for ty in [
            ClockType::Realtime,
            ClockType::Virtual,
            ClockType::VirtualRt,
        ] {
            let mut last = c.get_ns(ty);
            for _ in 0..10_000 {
                let v = c.get_ns(ty);
                assert!(v >= last, "{ty} went backwards: {last} -> {v}");
                last = v;
            }
        }
        let mut last = c.cpu_get_ticks();
        for _ in 0..10_000 {
            let v = c.cpu_get_ticks();
            assert!(v >= last);
            last = v;
        }
    }

    #[test]
    fn host_is_wall_clock() {
        let c = Clocks::new();
        let h = c.get_ns(ClockType::Host);
        let sys = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos() as i64;
        assert!((h - sys).abs() < 5_000_000_000);
    }

    #[test]
    fn new_starts_at_zero_and_stopped_variant_is_frozen() {
        let c = Clocks::new();
        assert!(c.is_running());
        let v = c.get_ns(ClockType::Virtual);
        assert!((0..10_000_000_000).contains(&v));

        let s = Clocks::new_stopped();
        assert!(!s.is_running());
        assert_eq!(s.get_ns(ClockType::Virtual), 0);
        assert_eq!(s.cpu_get_ticks(), 0);
        s.start();
        thread::sleep(Duration::from_millis(2));
        assert!(s.get_ns(ClockType::Virtual) > 0);
    }

    #[test]
    fn stop_freezes_virtual_and_realtime_keeps_running() {
        let c = Clocks::new();
        c.stop();
        c.stop(); // idempotent
        assert!(!c.is_running());
        let v = c.get_ns(ClockType::Virtual);
        let vrt = c.get_ns(ClockType::VirtualRt);
        let ticks = c.cpu_get_ticks();
        let rt = c.get_ns(ClockType::Realtime);
        thread::sleep(Duration::from_millis(20));
        assert_eq!(c.get_ns(ClockType::Virtual), v);
        assert_eq!(c.get_ns(ClockType::VirtualRt), vrt);
        assert_eq!(c.cpu_get_ticks(), ticks);
        assert!(c.get_ns(ClockType::Realtime) - rt >= 20_000_000);
    }

    #[test]
    fn resume_without_jump() {
        let c = Clocks::new();
        c.stop();
        let frozen = c.get_ns(ClockType::Virtual);
        let frozen_ticks = c.cpu_get_ticks();
        thread::sleep(Duration::from_millis(50));
        let rt0 = c.get_ns(ClockType::Realtime);
        c.start();
        c.start(); // idempotent
        let v = c.get_ns(ClockType::Virtual);
        let rt1 = c.get_ns(ClockType::Realtime);
        assert!(v >= frozen);
        // The resumed clock advanced by at most the real time spent since just before
        // start(), not by the 50 ms spent stopped.
        assert!(v - frozen <= rt1 - rt0, "jump of {} ns", v - frozen);
        let t = c.cpu_get_ticks();
        assert!(t >= frozen_ticks && t - frozen_ticks <= c.get_ns(ClockType::Realtime) - rt0);
    }

    #[test]
    fn stress_stop_start_virtual_never_goes_backwards() {
        let c = Arc::new(Clocks::new());
        let done = Arc::new(AtomicBool::new(false));
        let toggler = {
            let c = c.clone();
            let done = done.clone();
            thread::spawn(move || {
                let mut n = 0u64;
                // Relaxed: a stop flag only; join() synchronises the results.
                while !done.load(Ordering::Relaxed) {
                    c.stop();
                    std::hint::spin_loop();
                    c.start();
                    n += 1;
                }
                n
            })
        };
        let readers: Vec<_> = (0..3)
            .map(|_| {
                let c = c.clone();
                thread::spawn(move || {
                    let mut last_v = i64::MIN;
                    let mut last_t = i64::MIN;
                    for _ in 0..300_000 {
                        let v = c.get_ns(ClockType::Virtual);
                        assert!(v >= last_v, "VIRTUAL went backwards: {last_v} -> {v}");
                        last_v = v;
                        let t = c.cpu_get_ticks();
                        assert!(t >= last_t, "ticks went backwards: {last_t} -> {t}");
                        last_t = t;
                    }
                })
            })
            .collect();
        for r in readers {
            r.join().unwrap();
        }
        // Relaxed: a stop flag only; join() synchronises the results.
        done.store(true, Ordering::Relaxed);
        assert!(toggler.join().unwrap() > 0);
    }

    #[test]
    fn icount_arithmetic_and_rounding() {
        for shift in 0..=MAX_ICOUNT_SHIFT {
            let ic = IcountClock::new(shift);
            assert_eq!(ic.shift(), shift);
            assert_eq!(ic.get_ns(), 0);
            ic.add_executed(1000);
            assert_eq!(ic.get_raw(), 1000);
            assert_eq!(ic.get_ns(), 1000 << shift);
            ic.add_bias(7);
            assert_eq!(ic.bias(), 7);
            assert_eq!(ic.get_ns(), 7 + (1000 << shift));
            assert_eq!(ic.to_ns(3), 3 << shift);
            let unit = 1i64 << shift;
            assert_eq!(ic.round(0), 0);
            assert_eq!(ic.round(1), 1);
            assert_eq!(ic.round(unit), 1);
            assert_eq!(ic.round(unit + 1), 2);
            assert_eq!(ic.round(5 * unit), 5);
            if shift > 0 {
                assert_eq!(ic.round(5 * unit - 1), 5);
            }
            for ns in 0..5000i64 {
                let n = ic.round(ns);
                // round() is the least instruction count that covers ns.
                assert!(ic.to_ns(n) >= ns);
                assert!(n == 0 || ic.to_ns(n - 1) < ns);
            }
        }
        assert_eq!(IcountClock::new(99).shift(), MAX_ICOUNT_SHIFT);
    }

    #[test]
    fn set_shift_is_continuous() {
        let ic = IcountClock::new(3);
        ic.add_executed(12_345);
        ic.add_bias(1_000);
        for new in [0, 10, 5, 5, 1, 7] {
            let before = ic.get_ns();
            ic.set_shift(new);
            assert_eq!(ic.shift(), new);
            assert_eq!(ic.get_ns(), before, "jump at shift {new}");
            ic.add_executed(10);
            assert_eq!(ic.get_ns(), before + (10 << new));
        }
    }

    #[test]
    fn icount_virtual_and_stop_start() {
        let ic = Arc::new(IcountClock::new(2));
        let c = Clocks::with_icount(ic.clone());
        assert!(Arc::ptr_eq(c.icount().unwrap(), &ic));
        ic.add_executed(100);
        assert_eq!(c.get_ns(ClockType::Virtual), 400);
        c.stop();
        assert_eq!(c.get_ns(ClockType::Virtual), 400);
        let rt = c.get_ns(ClockType::VirtualRt);
        thread::sleep(Duration::from_millis(5));
        assert_eq!(c.get_ns(ClockType::VirtualRt), rt);
        c.start();
        assert_eq!(c.get_ns(ClockType::Virtual), 400);
        ic.add_executed(1);
        assert_eq!(c.get_ns(ClockType::Virtual), 404);
    }

    #[test]
    fn stress_icount_monotonic_under_set_shift() {
        let ic = Arc::new(IcountClock::new(5));
        let done = Arc::new(AtomicBool::new(false));
        let mut workers = Vec::new();
        for _ in 0..2 {
            let ic = ic.clone();
            let done = done.clone();
            workers.push(thread::spawn(move || {
                // Relaxed: a stop flag only; join() synchronises the results.
                while !done.load(Ordering::Relaxed) {
                    ic.add_executed(3);
                }
            }));
        }
        {
            let ic = ic.clone();
            let done = done.clone();
            workers.push(thread::spawn(move || {
                let mut s = 0;
                // Relaxed: a stop flag only; join() synchronises the results.
                while !done.load(Ordering::Relaxed) {
                    ic.set_shift(s);
                    s = (s + 7) % (MAX_ICOUNT_SHIFT + 1);
                }
            }));
        }
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let ic = ic.clone();
                thread::spawn(move || {
                    let mut last = i64::MIN;
                    for _ in 0..300_000 {
                        let v = ic.get_ns();
                        assert!(v >= last, "icount VIRTUAL went backwards: {last} -> {v}");
                        last = v;
                    }
                })
            })
            .collect();
        for r in readers {
            r.join().unwrap();
        }
        // Relaxed: a stop flag only; join() synchronises the results.
        done.store(true, Ordering::Relaxed);
        for w in workers {
            w.join().unwrap();
        }
    }
}
