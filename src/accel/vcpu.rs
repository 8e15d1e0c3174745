//! One vCPU as a state machine, [`Vcpu::step`], and what its drivers share:
//! the BQL held across execution under `--bql always` ([`ExecLock`]), the
//! icount budget, the VIRTUAL timers at a deadline and their hand-off to
//! the iothread, and the idle wait.
//!
//! QEMU analogue: `accel/tcg/tcg-accel-ops.c` (`tcg_cpu_exec`),
//! `tcg-accel-ops-icount.c` (`icount_prepare_for_run`,
//! `icount_process_data`, `icount_handle_deadline`) and `system/cpus.c`
//! (`qemu_wait_io_event`).
//!
//! A step:
//!
//! 1. Leave if the machine is shutting down or pausing; reset the hart if a
//!    reset was requested; consume the exit request (timing the kick).
//! 2. A halted vCPU with no enabled interrupt pending is idle: the step
//!    ends there, and the driver waits.
//! 3. Take a pending, enabled interrupt.
//! 4. Execute until an exit, with the driver's limit (under icount, the
//!    budget to the next deadline, cut to the round-robin turn).
//! 5. On `wfi` with nothing pending: halt.
//!
//! The drivers do the rest: [`crate::accel::mttcg`] runs one vCPU per host
//! thread and parks it when idle; [`crate::accel::rr`] runs every vCPU on
//! one thread in turn, runs the VIRTUAL timers between turns under icount,
//! and waits only when every vCPU is idle. Under icount, while every vCPU is
//! idle, [`idle_wait`] moves VIRTUAL on: with `sleep=off` it jumps straight
//! to the next deadline; with `sleep=on` the thread sleeps in real time until
//! that deadline and the idle time is added to VIRTUAL (QEMU's warp).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::accel::Sched;
use crate::accel::cpu::CpuShared;
use crate::config::IcountTimers;
use crate::hw::machine::Machine;
use crate::sync::bql::{BqlGuard, BqlPolicy};
use crate::sync::kick::Waiter;
use crate::target::riscv::hart::{Exit, Hart};
use crate::time::clock::ClockType;
use crate::time::icount;
use crate::time::timer::Timer;

/// What one vCPU did, returned when its driver ends.
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
    /// Whether the hart was halted in `wfi` when the run ended.
    pub halted: bool,
    /// `mie` when the run ended (a halted hart with nothing enabled can
    /// only be woken by a reset).
    pub mie: u64,
    /// The hash of the hart's guest-visible events
    /// ([`crate::target::riscv::hart::TRACE_BASIS`]).
    pub trace_hash: u64,
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
    /// `smp=global|local`: the vCPU's virtual time when the run ended, ns
    /// (its own clock under `local`, the machine's otherwise).
    #[serde(skip)]
    pub vtime_ns: i64,
    /// `smp=global|local`: how late in virtual ns each VIRTUAL timer this
    /// thread ran was (VIRTUAL when it ran, less its deadline).
    #[serde(skip)]
    pub lateness_vns: Option<Histogram<u64>>,
    /// `smp=local,quantum`: real ns this vCPU waited at quantum barriers.
    #[serde(skip)]
    pub barrier_wait_ns: Option<Histogram<u64>>,
    /// `smp=local,quantum`: real ns this vCPU waited for its turn to access
    /// a device.
    #[serde(skip)]
    pub access_wait_ns: Option<Histogram<u64>>,
}

/// Record `v` in the histogram `h`, created on first use.
pub fn record(h: &mut Option<Histogram<u64>>, v: u64) {
    let _ = h
        .get_or_insert_with(|| Histogram::new(3).expect("valid sigfig"))
        .record(v);
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
pub struct Handoff {
    timer: Option<Timer>,
    done: Arc<AtomicBool>,
    /// VIRTUAL callbacks the iothread ran for this vCPU's hand-offs.
    ran: Arc<AtomicU64>,
    /// How late (virtual ns) each of them ran: filled by the iothread's
    /// callback, drained by the vCPU once it sees `done`, so the lock is
    /// never contended (taken once per hand-off, not on the hot path).
    late: Arc<parking_lot::Mutex<Vec<u64>>>,
}

impl Handoff {
    /// The hand-off of the thread that runs vCPU `hart` (under
    /// `thread=single`, any vCPU: they share one waiter). Inert unless
    /// `--icount-timers iothread`.
    pub fn new(m: &Arc<Machine>, hart: usize) -> Handoff {
        if m.config.icount.is_none() || m.config.icount_timers != IcountTimers::Iothread {
            return Handoff {
                timer: None,
                done: Arc::new(AtomicBool::new(true)),
                ran: Arc::default(),
                late: Arc::default(),
            };
        }
        let done = Arc::new(AtomicBool::new(true));
        let ran = Arc::new(AtomicU64::new(0));
        let late: Arc<parking_lot::Mutex<Vec<u64>>> = Arc::default();
        let (m2, d2, r2, l2) = (m.clone(), done.clone(), ran.clone(), late.clone());
        let timer = m.timers.get(ClockType::Realtime).new_timer(move || {
            // The iothread runs its timers under the BQL already.
            let vlist = m2.timers.get(ClockType::Virtual);
            let now = m2.clocks.get_ns(ClockType::Virtual);
            let n = {
                let mut l = l2.lock();
                vlist.run_expired(now, &mut |exp| l.push((now - exp).max(0) as u64))
            };
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
            late,
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
        let dur = t0.elapsed().as_nanos() as u64;
        record(&mut stats.handoff_ns, dur);
        for l in self.late.lock().drain(..) {
            record(&mut stats.lateness_vns, l);
        }
        if crate::trace::enabled() {
            crate::trace::record(crate::trace::Event::Handoff {
                vcpu: stats.hart as u32,
                start: crate::trace::ns_of(t0),
                dur,
            });
        }
        stats.handoffs += 1;
        self.ran.swap(0, Ordering::Relaxed) as usize
    }

    /// Wait until the iothread has run the handed-off timers. Returns false
    /// if the wait was abandoned because the machine is shutting down or
    /// pausing (the iothread may be the one waiting for this vCPU to park).
    /// No timeout: the callback publishes `done` and then wakes this thread,
    /// and a pause or a shutdown kicks it, each after publishing its flag;
    /// the waiter keeps a token, so a wake between the checks and the park
    /// ends the park at once.
    fn wait(&self, m: &Machine, waiter: &Waiter) -> bool {
        // Acquire: pairs with the Release store in the timer callback.
        while !self.done.load(Ordering::Acquire) {
            if m.run.shutdown_requested() || m.run.pause_requested() {
                return false;
            }
            waiter.park();
        }
        true
    }
}

/// What one [`Vcpu::step`] ended with: what the vCPU waits for next. The
/// driver (a thread per vCPU, or the round-robin thread) decides how to wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Guest code ran until this exit.
    Ran(Exit),
    /// Nothing ran: under `--bql always` another thread wanted the BQL as
    /// this vCPU was taking it, and has had it. Step again.
    Yielded,
    /// Halted in `wfi` with nothing pending: wait for a kick (under icount,
    /// or for VIRTUAL to reach the next deadline).
    Idle,
    /// A pause is requested: park until it ends (the retired count is
    /// published).
    Paused,
    /// The machine is shutting down.
    Finished,
}

/// The BQL a thread holds across guest execution under `--bql always`
/// (single-threaded TCG before MTTCG), owned by the thread that runs vCPUs:
/// taken before a vCPU executes, given up at every exit that waits, and
/// whenever another thread wants it (see [`crate::sync::bql::Bql::wanted`]).
/// Under the other policies it is never held.
pub struct ExecLock<'a> {
    m: &'a Machine,
    always: bool,
    held: Option<BqlGuard<'a>>,
    /// When it was taken (the vCPU slice runs from here).
    since: Instant,
    /// Instructions the holder may still execute before it looks at the
    /// clock again while vCPUs wait (one clock read per that many, not one
    /// per exit: an MMIO storm exits every few instructions).
    check_left: u64,
}

impl<'a> ExecLock<'a> {
    /// The lock of a thread that runs vCPUs of `m`.
    pub fn new(m: &'a Machine) -> ExecLock<'a> {
        ExecLock {
            m,
            always: m.config.bql.policy == BqlPolicy::Always,
            held: None,
            since: Instant::now(),
            check_left: crate::sync::bql::VCPU_SLICE_CHECK_INSNS,
        }
    }

    /// Give the BQL up, if held, and let the threads that wanted it take it
    /// before this thread may ask for it again.
    pub fn release(&mut self) {
        if self.held.take().is_some() {
            self.m.bql.wait_until_not_wanted();
        }
    }

    /// `thread=single`: after a step of vCPU `hart` that left because it
    /// was asked to exit, hand the BQL over if a thread that is not a vCPU
    /// wants it, and take it back once that thread has had it. True if it
    /// was handed over and no exit was asked for meanwhile: the exit was the
    /// hand-over's, and the turn goes on. False otherwise (not held, not
    /// wanted, a pause or a stop, or a request made while the other thread
    /// held it, such as the kick timer's): the caller ends the turn.
    ///
    /// Without it, each request for the BQL would end a turn, and a VIRTUAL
    /// timer the iothread runs (the kick timer) would end two: the one its
    /// request for the BQL interrupted and, with its own kick, the next one,
    /// which has then executed a TB or none. Every other vCPU would get
    /// almost nothing, and a guest whose harts wait for each other would
    /// not finish.
    pub fn hand_over(&mut self, v: &mut Vcpu<'a>, hart: usize) -> bool {
        let idle = |m: &Machine| m.run.pause_requested() || m.run.shutdown_requested();
        if self.held.is_none() || self.m.bql.wanted().0 == 0 || idle(self.m) {
            return false;
        }
        // The request is (as far as can be told) the one the waiting
        // thread made before it waited: consumed before the BQL goes, so
        // that one made while the other thread holds it stays.
        v.observe_kick();
        loop {
            self.release();
            if idle(self.m) {
                return false;
            }
            if self.acquire(hart) {
                break;
            }
        }
        !self.m.cpus[hart].exit_requested()
    }

    /// Give it up if a thread that is not a vCPU wants it, or a pause is
    /// requested, or other vCPUs want it and this holder's slice
    /// ([`crate::sync::bql::VCPU_SLICE`]) is over.
    fn release_if_wanted(&mut self) {
        if self.held.is_none() {
            return;
        }
        let (all, vcpus) = self.m.bql.wanted();
        if self.m.run.pause_requested() || all > vcpus {
            self.release();
        } else if vcpus > 0 && self.check_left == 0 {
            if self.since.elapsed() >= crate::sync::bql::VCPU_SLICE {
                self.release();
            } else {
                self.check_left = crate::sync::bql::VCPU_SLICE_CHECK_INSNS;
            }
        }
    }

    /// The most instructions the holder may execute now: no more than are
    /// left before it looks at its slice again, while other vCPUs wait.
    fn execution_cap(&self) -> u64 {
        if self.held.is_some() && self.m.bql.wanted().1 > 0 {
            self.check_left.max(1)
        } else {
            u64::MAX
        }
    }

    /// Count `n` instructions executed while holding the BQL.
    fn spent(&mut self, n: u64) {
        if self.held.is_some() {
            self.check_left = self.check_left.saturating_sub(n);
        }
    }

    /// Under `always`, hold the BQL to execute as vCPU `hart`. False if
    /// another thread asked for it meanwhile (it has had it when this
    /// returns; the caller should look at everything again).
    fn acquire(&mut self, hart: usize) -> bool {
        if !self.always || self.held.is_some() {
            return true;
        }
        self.held = self.m.bql.lock_for_execution(hart);
        if self.held.is_none() {
            self.m.bql.wait_until_not_wanted();
            return false;
        }
        self.since = Instant::now();
        self.check_left = crate::sync::bql::VCPU_SLICE_CHECK_INSNS;
        true
    }
}

/// One vCPU as a state machine (firecracker's `vstate/vcpu.rs` is the
/// model): its hart, whether it is halted, the reset generation it has
/// seen, and its statistics. [`Vcpu::step`] runs it once; the drivers in
/// [`crate::accel::mttcg`] and [`crate::accel::rr`] call it in their loops
/// and do the waiting.
pub struct Vcpu<'a> {
    /// The hart (registers, TB cache, counters).
    pub hart: Hart<'a>,
    m: &'a Machine,
    sched: &'a Sched,
    shared: &'a CpuShared,
    halted: bool,
    reset_gen: u64,
    stats: VcpuStats,
    /// Run by the round-robin thread: a halted vCPU with nothing to do
    /// leaves its step before it looks at its exit request, as QEMU's
    /// `cpu_exec` returns from `cpu_handle_halt` before
    /// `cpu_handle_interrupt` consumes it (the request then ends the round
    /// when the vCPU's turn comes).
    round_robin: bool,
    /// When the current halt began on the trace clock, if it is traced
    /// (0: not halted, or no trace).
    halt_since: u64,
}

impl<'a> Vcpu<'a> {
    /// vCPU `hart` of `m` at power-on, run by its own thread
    /// (`round_robin` false) or by the round-robin thread.
    pub fn new(m: &'a Machine, sched: &'a Sched, hart: usize, round_robin: bool) -> Vcpu<'a> {
        let shared = &*m.cpus[hart];
        Vcpu {
            hart: Hart::new(shared, m),
            m,
            sched,
            shared,
            halted: false,
            reset_gen: m.run.reset_gen(),
            stats: VcpuStats {
                hart,
                ..Default::default()
            },
            round_robin,
            halt_since: 0,
        }
    }

    /// Whether the vCPU is halted in `wfi`.
    pub fn halted(&self) -> bool {
        self.halted
    }

    /// Whether a halted vCPU has something to do (an enabled interrupt).
    pub fn has_work(&self) -> bool {
        self.hart.has_work()
    }

    /// Its statistics so far (the hand-off figures are kept here too).
    pub fn stats_mut(&mut self) -> &mut VcpuStats {
        &mut self.stats
    }

    /// Consume this vCPU's exit request, and record the latency of the kick
    /// that made it, split by whether the vCPU was halted.
    pub fn observe_kick(&mut self) {
        if self.shared.take_exit_request() {
            if let Some((sent, now)) = self.shared.take_kick_stamp() {
                let ns = now.saturating_sub(sent);
                if crate::trace::enabled() {
                    crate::trace::record(crate::trace::Event::KickReceived {
                        vcpu: self.stats.hart as u32,
                        at: now,
                        flow: crate::trace::kick_flow(self.stats.hart, sent + 1),
                        halted: self.halted,
                    });
                }
                let h = if self.halted {
                    &mut self.stats.kick_halted_ns
                } else {
                    &mut self.stats.kick_running_ns
                };
                record(h, ns.max(1));
            }
        }
    }

    /// Publish the retired count (icount clock and `instret`). A halted
    /// vCPU with a clock of its own keeps it unpublished (`i64::MAX`): the
    /// machine's clock follows the running ones.
    pub fn publish(&mut self) {
        if !(self.halted && self.hart.local.is_some()) {
            self.hart.sync_icount(0);
        }
        self.shared
            .instret
            .store(self.hart.retired, Ordering::Relaxed);
    }

    /// Run the vCPU once: leave at once if the machine is stopping or
    /// pausing; reset the hart if a reset was requested; consume the exit
    /// request; leave a halt if an interrupt is pending, or say it is idle;
    /// take a pending, enabled interrupt; then execute at most `limit`
    /// instructions (the icount budget, or `u64::MAX`) under the lock the
    /// BQL policy wants held, and publish the retired count.
    pub fn step(&mut self, limit: u64, lock: &mut ExecLock<'a>) -> Step {
        self.step_capped(limit, lock, &|| u64::MAX)
    }

    /// [`Vcpu::step`], executing no more than `cap()` instructions either,
    /// `cap` asked after the exit request is consumed (so that it sees what
    /// a kicker published before its request: `smp=local,quantum`'s waiting
    /// accesses).
    pub fn step_capped(
        &mut self,
        limit: u64,
        lock: &mut ExecLock<'a>,
        cap: &dyn Fn() -> u64,
    ) -> Step {
        self.step_inner(limit, lock, cap, &|| u64::MAX)
    }

    /// [`Vcpu::step`], leaving at the first TB boundary after `soft()`
    /// instructions too ([`Hart::execute_soft`]: a limit that depends on
    /// the host, which must not split TBs), `soft` asked after the exit
    /// request is consumed.
    pub fn step_soft(
        &mut self,
        limit: u64,
        lock: &mut ExecLock<'a>,
        soft: &dyn Fn() -> u64,
    ) -> Step {
        self.step_inner(limit, lock, &|| u64::MAX, soft)
    }

    fn step_inner(
        &mut self,
        limit: u64,
        lock: &mut ExecLock<'a>,
        cap: &dyn Fn() -> u64,
        soft: &dyn Fn() -> u64,
    ) -> Step {
        lock.release_if_wanted();
        if self.m.run.shutdown_requested() {
            return Step::Finished;
        }
        if self.m.run.pause_requested() {
            self.publish();
            lock.release();
            return Step::Paused;
        }
        let g = self.m.run.reset_gen();
        if g != self.reset_gen {
            self.reset_gen = g;
            if self.stats.hart == 0 {
                self.m.reset_devices();
            }
            self.hart.reset();
        }
        if self.round_robin && self.halted && !self.hart.has_work() {
            return Step::Idle;
        }
        self.observe_kick();
        if self.halted {
            if !self.hart.has_work() {
                return Step::Idle;
            }
            self.halted = false;
            self.trace_halt_end();
            if self.hart.local.is_some() {
                // Under the warp lock, with which the machine's VIRTUAL moves
                // to the slowest clock: that must count this one from now.
                let _w = self.sched.warp.lock();
                self.hart.local_wake();
            }
            // AcqRel: the count is read by an idle thread deciding whether
            // VIRTUAL may jump (every vCPU idle).
            self.sched.halted.fetch_sub(1, Ordering::AcqRel);
        }
        self.hart.check_interrupts();
        // Again here, after `observe_kick` above: it may have consumed the
        // kick of a thread that wants the BQL (which raised `wanted` before
        // kicking, so this load sees it).
        lock.release_if_wanted();
        if !lock.acquire(self.stats.hart) {
            return Step::Yielded;
        }
        let before = self.hart.retired;
        let exit = self
            .hart
            .execute_soft(limit.min(lock.execution_cap()).min(cap()), soft());
        lock.spent(self.hart.retired - before);
        self.publish();
        if self.m.config.icount.is_some_and(|c| c.align) {
            align_clocks(self.m);
        }
        if exit == Exit::Halt {
            self.stats.halts += 1;
            self.halted = true;
            if crate::trace::enabled() {
                self.halt_since = crate::trace::now_ns();
            }
            if self.hart.local.is_some() {
                // Relaxed: as the other stores of the clock (see `Hart`).
                self.shared.vclock.store(i64::MAX, Ordering::Relaxed);
            }
            // Relaxed: published by the AcqRel increment below.
            self.shared
                .halted_mie
                .store(self.hart.st.mie, Ordering::Relaxed);
            self.sched.halted.fetch_add(1, Ordering::AcqRel);
            lock.release();
        }
        Step::Ran(exit)
    }

    /// Record the halt that ends now, if it was traced.
    fn trace_halt_end(&mut self) {
        if self.halt_since != 0 {
            let start = std::mem::take(&mut self.halt_since);
            crate::trace::record(crate::trace::Event::Halt {
                vcpu: self.stats.hart as u32,
                start,
                dur: crate::trace::now_ns().saturating_sub(start),
            });
        }
    }

    /// The vCPU's statistics, once it has finished.
    pub fn finish(mut self) -> VcpuStats {
        self.publish();
        self.trace_halt_end();
        let h = &self.hart;
        let mut stats = self.stats;
        stats.instructions = h.retired;
        stats.mmio = h.mmio_accesses;
        stats.traps = h.traps;
        stats.last_trap = (h.traps > 0).then_some(h.last_trap);
        stats.kicks = self.shared.kicks.load(Ordering::Relaxed);
        stats.tb_flushes = h.tbc.flushes;
        stats.pc = h.st.pc;
        stats.halted = self.halted;
        stats.mie = h.st.mie;
        stats.trace_hash = h.trace;
        stats.vtime_ns = h
            .local_now(0)
            .unwrap_or_else(|| self.m.clocks.get_ns(ClockType::Virtual));
        stats
    }
}

/// The icount budget of the next execution: instructions to the nearest
/// deadline, rounded as QEMU rounds them; with `align=on`, no more than the
/// clock-comparison period. `u64::MAX` without icount.
pub fn icount_limit(m: &Machine) -> u64 {
    match (&m.icount, m.config.icount) {
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
    }
}

/// Under icount, run the VIRTUAL timers whose deadline VIRTUAL has reached,
/// the way `--icount-timers` says: here (QEMU's way), or handed off to the
/// iothread. Returns the callbacks run.
pub fn run_due_timers(
    m: &Machine,
    handoff: &Handoff,
    waiter: &Waiter,
    stats: &mut VcpuStats,
) -> usize {
    match m.config.icount_timers {
        IcountTimers::Vcpu => run_virtual_timers_if_due(m, &mut stats.lateness_vns),
        IcountTimers::Iothread => handoff.run_if_due(m, waiter, stats),
    }
}

/// Under icount, run the VIRTUAL timers that are due now and count them
/// (and their lateness) on `v`. With `--icount-timers iothread` the iothread
/// runs them, under the BQL: this thread gives it up first (under `--bql
/// always` it may hold it).
pub fn timers_now<'a>(
    m: &Machine,
    handoff: &Handoff,
    waiter: &Waiter,
    lock: &mut ExecLock<'a>,
    v: &mut Vcpu<'a>,
) {
    if m.config.icount_timers == IcountTimers::Iothread {
        lock.release();
    }
    let stats = v.stats_mut();
    stats.timers_run += run_due_timers(m, handoff, waiter, stats) as u64;
}

/// QEMU's `icount_handle_deadline`: run the VIRTUAL timers when the nearest
/// VIRTUAL deadline has been reached. As QEMU's `icount_notify_aio_contexts`
/// it notifies the list first, which under icount kicks every vCPU (`run`
/// installs that notifier; QEMU's `qemu_timer_notify_cb` kicks the current
/// vCPU, and under `thread=single` a kick asks every vCPU to exit). Returns
/// the callbacks run, and records how late each was (virtual ns) in
/// `lateness`.
fn run_virtual_timers_if_due(m: &Machine, lateness: &mut Option<Histogram<u64>>) -> usize {
    let list = m.timers.get(ClockType::Virtual);
    let now = m.clocks.get_ns(ClockType::Virtual);
    if list.deadline_ns(now) != 0 {
        return 0;
    }
    list.notify();
    run_expired_at(m, now, &mut |l| record(lateness, l))
}

/// Run the VIRTUAL timers expired at `now` under the BQL (unless this
/// thread holds it), reporting how late each was (virtual ns) to `late`.
/// Returns the callbacks run.
pub fn run_expired_at(m: &Machine, now: i64, late: &mut dyn FnMut(u64)) -> usize {
    let _bql = m.bql.lock_unless_held();
    m.timers
        .get(ClockType::Virtual)
        .run_expired(now, &mut |exp| late((now - exp).max(0) as u64))
}

/// Wait while halted (QEMU's `qemu_wait_io_event` and, under icount, the
/// idle handling of `icount_start_warp_timer`). Returns after a kick, or once
/// VIRTUAL has reached the next deadline; the caller re-checks everything.
/// Returns the VIRTUAL timers it ran (after a `sleep=off` jump), their
/// lateness recorded in `lateness`.
///
/// Every wait here is for a kick, with no timeout, except the `sleep=on`
/// warp, whose timeout *is* the protocol: the idle guest's time passes in
/// real time until the deadline. A kicker publishes its condition (an
/// interrupt line, a stop) before it kicks, and the waiter keeps a token, so
/// the caller's checks before this call and the park cannot miss a kick.
pub fn idle_wait(
    m: &Machine,
    sched: &Sched,
    waiter: &Waiter,
    lateness: &mut Option<Histogram<u64>>,
) -> usize {
    let Some(ic) = m.config.icount else {
        waiter.park();
        return 0;
    };
    let vlist = m.timers.get(ClockType::Virtual);
    let d = vlist.deadline_ns(m.clocks.get_ns(ClockType::Virtual));
    if d < 0 {
        waiter.park();
        return 0;
    }
    let icc = m.icount.as_ref().expect("icount");
    // VIRTUAL only moves on by itself when every vCPU is idle (QEMU's
    // `all_cpu_threads_idle`); otherwise the running ones advance it, run
    // the timers at its deadlines and kick this one when its interrupt comes.
    // A vCPU counted halted may have been sent an interrupt that its thread
    // has not yet seen (with a thread per vCPU): then time must not jump.
    let all_idle = || {
        sched.halted.load(Ordering::Acquire) == m.cpus.len()
            && !m.cpus.iter().any(|c| c.halted_has_work())
    };
    if !all_idle() {
        waiter.park();
        return 0;
    }
    if !ic.sleep {
        // sleep=off: time jumps straight to the next deadline. The warp lock
        // makes the check and the jump one step: of several idle vCPUs only
        // the first jumps, the others then see a deadline of 0.
        let _w = sched.warp.lock();
        // Again under the lock: another idle thread may have jumped and run
        // the timers meanwhile, waking a vCPU (the next deadline then is
        // not this idle period's).
        if !all_idle() {
            return 0;
        }
        let d = vlist.deadline_ns(m.clocks.get_ns(ClockType::Virtual));
        if d > 0 {
            icc.add_bias(d);
        }
        // And the timers run before the lock goes: a timer taken off its
        // list whose callback has not yet raised its line looks to another
        // idle thread like no deadline and no work (it would jump to the
        // next deadline, however far). Its lateness is 0 by construction.
        if m.config.icount_timers == IcountTimers::Vcpu {
            return run_virtual_timers_if_due(m, lateness);
        }
        return 0;
    }
    // sleep=on: idle time follows real time (QEMU's warp timer on
    // VIRTUAL_RT); a kick ends the sleep early and only the time spent
    // idle is added.
    // With a thread per vCPU, one idle thread sleeps to the deadline and
    // moves VIRTUAL; the others wait for a kick (the deadline's timer, run
    // by the sleeper, wakes whom it concerns).
    let Some(_w) = sched.warp.try_lock() else {
        waiter.park();
        return 0;
    };
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
    0
}
