//! The vCPU thread: one host thread per hart, running guest code outside the
//! BQL.
//!
//! QEMU analogue: `accel/tcg/tcg-accel-ops-mttcg.c` (`mttcg_cpu_thread_fn`),
//! `tcg-accel-ops-icount.c` (`icount_prepare_for_run`, `icount_process_data`,
//! `icount_handle_deadline`) and `system/cpus.c` (`qemu_wait_io_event`).
//!
//! The loop is a small state machine around [`Hart::execute`]:
//!
//! 1. Leave if the machine is shutting down; reset the hart if a reset was
//!    requested.
//! 2. Under icount, run the VIRTUAL timers whose deadline has been reached
//!    (on this thread, as QEMU does, or handed off to the iothread with
//!    `--icount-timers iothread`), so the guest sees their effect at this exact
//!    instruction.
//! 3. Take a pending, enabled interrupt.
//! 4. Execute until an exit, with the icount budget (instructions to the next
//!    deadline, rounded as QEMU rounds) as the limit.
//! 5. On `wfi` with nothing pending: halt. Under icount with `sleep=off` the
//!    virtual clock jumps straight to the next deadline; with `sleep=on` the
//!    thread sleeps in real time until that deadline and the idle time is
//!    added to VIRTUAL (QEMU's warp); without icount it parks until kicked.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::bql::{BqlGuard, BqlPolicy};
use crate::clock::ClockType;
use crate::config::IcountTimers;
use crate::icount;
use crate::kick::Waiter;
use crate::machine::Machine;
use crate::riscv::hart::{Exit, Hart};
use crate::timer::Timer;

/// What one vCPU thread did, returned when it ends.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct VcpuStats {
    /// Hart id.
    pub hart: usize,
    /// Instructions retired.
    pub instructions: u64,
    /// Device accesses.
    pub mmio: u64,
    /// Exceptions and interrupts taken.
    pub traps: u64,
    /// Times the hart halted in `wfi`.
    pub halts: u64,
    /// Kicks received (exit requests).
    pub kicks: u64,
    /// TB cache flushes.
    pub tb_flushes: u64,
    /// VIRTUAL timer callbacks run at this vCPU's deadlines (icount), by
    /// the vCPU thread or, after a hand-off, by the iothread.
    pub timers_run: u64,
    /// Hand-offs of VIRTUAL timers to the iothread.
    pub handoffs: u64,
    /// pc when the thread ended.
    pub pc: u64,
    /// (mcause, pc) of the last trap taken, if any.
    pub last_trap: Option<(u64, u64)>,
    /// Kick latency (issued to observed by this vCPU), ns, for kicks that
    /// found it running guest code.
    #[serde(skip)]
    pub kick_running_ns: Option<Histogram<u64>>,
    /// The same for kicks that found it halted (waiting in `wfi`).
    #[serde(skip)]
    pub kick_halted_ns: Option<Histogram<u64>>,
    /// Real-time cost of each VIRTUAL-timer hand-off to the iothread, in ns
    /// (`--icount-timers iothread`): from the request to the vCPU resuming.
    #[serde(skip)]
    pub handoff_ns: Option<Histogram<u64>>,
}

/// Sleep when the guest is more than this far ahead of real time (QEMU's
/// `VCPU_CLOCK_MAX_AHEAD`, `align=on`).
pub const VCPU_CLOCK_MAX_AHEAD_NS: i64 = 3_000_000;
/// With `align=on`, the vCPU compares clocks at least this often (virtual ns).
const ALIGN_CHECK_NS: i64 = 1_000_000;

/// `align=on` (QEMU's `align_clocks`): if VIRTUAL is more than 3 ms ahead of
/// VIRTUAL_RT (host time while running), sleep for the difference.
fn align_clocks(m: &Machine) {
    let diff = m.clocks.get_ns(ClockType::Virtual) - m.clocks.get_ns(ClockType::VirtualRt);
    if diff > VCPU_CLOCK_MAX_AHEAD_NS {
        std::thread::sleep(Duration::from_nanos(diff as u64));
    }
}

/// The hand-off of VIRTUAL timers to the iothread: a REALTIME timer that is
/// already due when armed, so the iothread wakes (through the timer list's
/// notifier) and runs it at once; its callback runs the expired VIRTUAL timers
/// under the BQL and wakes the vCPU, which waits, stopped at the deadline.
struct Handoff {
    timer: Option<Timer>,
    done: Arc<AtomicBool>,
    /// VIRTUAL callbacks the iothread ran for this vCPU's hand-offs.
    ran: Arc<AtomicU64>,
}

impl Handoff {
    fn new(m: &Arc<Machine>, hart: usize) -> Handoff {
        if m.config.icount.is_none() || m.config.icount_timers != IcountTimers::Iothread {
            return Handoff {
                timer: None,
                done: Arc::new(AtomicBool::new(true)),
                ran: Arc::default(),
            };
        }
        let done = Arc::new(AtomicBool::new(true));
        let ran = Arc::new(AtomicU64::new(0));
        let (m2, d2, r2) = (m.clone(), done.clone(), ran.clone());
        let timer = m.timers.get(ClockType::Realtime).new_timer(move || {
            // The iothread runs its timers under the BQL already.
            let vlist = m2.timers.get(ClockType::Virtual);
            let now = m2.clocks.get_ns(ClockType::Virtual);
            let n = vlist.run_expired(now, &mut |_| {});
            r2.fetch_add(n as u64, Ordering::Relaxed);
            // Release: the timers' effects (mip bits, device state) are
            // visible to the vCPU once it sees `done`.
            d2.store(true, Ordering::Release);
            m2.cpus[hart].wake();
        });
        Handoff {
            timer: Some(timer),
            done,
            ran,
        }
    }

    /// If the VIRTUAL deadline is reached, hand the timers to the iothread
    /// and wait until it has run them. Returns the VIRTUAL callbacks run.
    fn run_if_due(&self, m: &Machine, waiter: &Waiter, stats: &mut VcpuStats) -> usize {
        let Some(timer) = &self.timer else { return 0 };
        // A hand-off still in flight (the vCPU left its wait for a pause):
        // wait for it before looking at the deadline again.
        if !self.wait(m, waiter) {
            return 0;
        }
        let vlist = m.timers.get(ClockType::Virtual);
        if vlist.deadline_ns(m.clocks.get_ns(ClockType::Virtual)) != 0 {
            return 0;
        }
        let t0 = Instant::now();
        self.done.store(false, Ordering::Relaxed);
        // Due now: the iothread's lateness histogram then shows the
        // hand-off's wake-up latency.
        timer.modify(m.clocks.get_ns(ClockType::Realtime));
        if !self.wait(m, waiter) {
            return 0;
        }
        let h = stats
            .handoff_ns
            .get_or_insert_with(|| Histogram::new(3).expect("valid sigfig"));
        let _ = h.record(t0.elapsed().as_nanos() as u64);
        stats.handoffs += 1;
        self.ran.swap(0, Ordering::Relaxed) as usize
    }

    /// Wait until the iothread has run the handed-off timers. Returns false
    /// if the wait was abandoned because the machine is shutting down or
    /// pausing (the iothread may be the one waiting for this vCPU to park).
    fn wait(&self, m: &Machine, waiter: &Waiter) -> bool {
        // Acquire: pairs with the Release store in the timer callback.
        while !self.done.load(Ordering::Acquire) {
            if m.run.shutdown_requested() || m.run.pause_requested() {
                return false;
            }
            waiter.park_timeout(Duration::from_millis(100));
        }
        true
    }
}

/// Run hart `hart` until the machine shuts down.
pub fn vcpu_thread_fn(m: Arc<Machine>, hart: usize, waiter: Waiter) -> VcpuStats {
    let shared = m.cpus[hart].clone();
    let mut h = Hart::new(&shared, &m);
    let mut reset_gen = m.run.reset_gen();
    let mut stats = VcpuStats {
        hart,
        ..Default::default()
    };
    let icount_cfg = m.config.icount;
    let mut halted = false;
    let handoff = Handoff::new(&m, hart);
    // `--bql always`: the BQL, held across guest execution and device
    // accesses, given up at every exit that waits or when another thread
    // wants it (see `release_bql`).
    let always = m.config.bql.policy == BqlPolicy::Always;
    let handoff_timers = icount_cfg.is_some() && m.config.icount_timers == IcountTimers::Iothread;
    let mut held: Option<BqlGuard<'_>> = None;
    loop {
        if held.is_some() && (handoff_timers || m.run.pause_requested() || m.bql.wanted() > 0) {
            release_bql(&m, &mut held);
        }
        if m.run.shutdown_requested() {
            break;
        }
        if m.run.pause_requested() {
            h.sync_icount(0);
            shared.instret.store(h.retired, Ordering::Relaxed);
            m.run.set_parked(true);
            while m.run.pause_requested() && !m.run.shutdown_requested() {
                waiter.park_timeout(Duration::from_millis(50));
            }
            m.run.set_parked(false);
            continue;
        }
        let g = m.run.reset_gen();
        if g != reset_gen {
            reset_gen = g;
            if hart == 0 {
                m.reset_devices();
            }
            h.reset();
        }
        if shared.take_exit_request() {
            if let Some(ns) = shared.take_kick_latency() {
                let h = if halted {
                    &mut stats.kick_halted_ns
                } else {
                    &mut stats.kick_running_ns
                };
                let _ = h
                    .get_or_insert_with(|| Histogram::new(3).expect("valid sigfig"))
                    .record(ns.max(1));
            }
        }
        if icount_cfg.is_some() {
            stats.timers_run += match m.config.icount_timers {
                IcountTimers::Vcpu => run_virtual_timers_if_due(&m) as u64,
                IcountTimers::Iothread => handoff.run_if_due(&m, &waiter, &mut stats) as u64,
            };
        }
        if halted {
            if h.has_work() {
                halted = false;
                m.halted.fetch_sub(1, Ordering::AcqRel);
            } else {
                idle_wait(&m, &waiter);
                continue;
            }
        }
        h.check_interrupts();
        let limit = match (&m.icount, icount_cfg) {
            (Some(ic), Some(cfg)) => {
                let b = icount::budget(ic, &m.clocks, &m.timers);
                // align=on: come back often enough to compare with real time.
                if cfg.align {
                    b.min(ic.round(ALIGN_CHECK_NS).max(1) as u64)
                } else {
                    b
                }
            }
            _ => u64::MAX,
        };
        // Again here, after `take_exit_request` above: it may have consumed
        // the kick of a thread that wants the BQL (which raised `wanted`
        // before kicking, so this load sees it).
        if held.is_some() && m.bql.wanted() > 0 {
            release_bql(&m, &mut held);
            continue;
        }
        if always && held.is_none() {
            held = m.bql.lock_for_execution(hart);
            if held.is_none() {
                // Someone asked for it while we took it: let them have it.
                m.bql.wait_until_not_wanted();
                continue;
            }
        }
        let exit = h.execute(limit);
        h.sync_icount(0);
        shared.instret.store(h.retired, Ordering::Relaxed);
        if icount_cfg.is_some_and(|c| c.align) {
            align_clocks(&m);
        }
        match exit {
            Exit::Kicked | Exit::Budget | Exit::Io => {}
            Exit::Halt => {
                stats.halts += 1;
                halted = true;
                m.halted.fetch_add(1, Ordering::AcqRel);
                release_bql(&m, &mut held);
            }
        }
    }
    drop(held);
    h.sync_icount(0);
    shared.instret.store(h.retired, Ordering::Relaxed);
    stats.instructions = h.retired;
    stats.mmio = h.mmio_accesses;
    stats.traps = h.traps;
    stats.last_trap = (h.traps > 0).then_some(h.last_trap);
    stats.kicks = shared.kicks.load(Ordering::Relaxed);
    stats.tb_flushes = h.tbc.flushes;
    stats.pc = h.st.pc;
    stats
}

/// Give up the BQL held for execution, and let the threads that wanted it
/// take it before this vCPU may ask for it again.
fn release_bql(m: &Machine, held: &mut Option<BqlGuard<'_>>) {
    if held.take().is_some() {
        m.bql.wait_until_not_wanted();
    }
}

/// QEMU's `icount_handle_deadline`: run the VIRTUAL timers when the nearest
/// VIRTUAL deadline has been reached. Returns the callbacks run.
fn run_virtual_timers_if_due(m: &Machine) -> usize {
    let list = m.timers.get(ClockType::Virtual);
    let now = m.clocks.get_ns(ClockType::Virtual);
    if list.deadline_ns(now) != 0 {
        return 0;
    }
    let _bql = m.bql.lock_unless_held();
    list.run_expired(now, &mut |_| {})
}

/// Wait while halted (QEMU's `qemu_wait_io_event` and, under icount, the
/// idle handling of `icount_start_warp_timer`). Returns after a kick, or once
/// VIRTUAL has reached the next deadline; the caller re-checks everything.
fn idle_wait(m: &Machine, waiter: &Waiter) {
    let Some(ic) = m.config.icount else {
        waiter.park();
        return;
    };
    let vlist = m.timers.get(ClockType::Virtual);
    let d = vlist.deadline_ns(m.clocks.get_ns(ClockType::Virtual));
    if d < 0 {
        waiter.park();
        return;
    }
    let icc = m.icount.as_ref().expect("icount");
    // VIRTUAL only moves on by itself when every vCPU is idle (QEMU's
    // `all_cpu_threads_idle`); otherwise the running ones advance it and
    // kick this one when its interrupt comes.
    if m.halted.load(Ordering::Acquire) < m.cpus.len() {
        waiter.park_timeout(Duration::from_millis(10));
        return;
    }
    if !ic.sleep {
        // sleep=off: time jumps straight to the next deadline. The warp lock
        // makes the check and the jump one step: of several idle vCPUs only
        // the first jumps, the others then see a deadline of 0.
        let _w = m.warp.lock();
        let d = vlist.deadline_ns(m.clocks.get_ns(ClockType::Virtual));
        if d > 0 {
            icc.add_bias(d);
        }
        return;
    }
    // sleep=on: idle time follows real time (QEMU's warp timer on
    // VIRTUAL_RT); a kick ends the sleep early and only the time spent
    // idle is added.
    let start = m.clocks.get_ns(ClockType::VirtualRt);
    waiter.park_timeout(Duration::from_nanos(d as u64));
    let mut warp = m.clocks.get_ns(ClockType::VirtualRt) - start;
    if ic.shift == crate::config::IcountShift::Auto {
        // In adaptive mode VIRTUAL must not run ahead of real time.
        warp = warp.min(m.clocks.get_ns(ClockType::VirtualRt) - icc.get_ns());
    }
    if warp > 0 {
        icc.add_bias(warp);
    }
}
