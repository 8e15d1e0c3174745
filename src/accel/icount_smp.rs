//! The parallel SMP icount modes, one host thread per vCPU
//! (`--accel tcg,thread=multi --icount shift=N,...,smp=global|local`): what
//! QEMU does not build. QEMU runs every vCPU on one thread under icount
//! ([`crate::accel::rr`], `smp=rr`) and refuses MTTCG with icount.
//!
//! - **`global`**: every vCPU adds to the one instruction counter, as QEMU
//!   would if it let MTTCG run with icount. Each adds its instructions after
//!   every TB and stops once the counter reaches the next deadline
//!   ([`crate::target::riscv::hart::Hart::global_counter`]), so together they
//!   cross it by at most one TB each; whichever vCPU then finds the deadline
//!   reached runs the timers. How late they ran is measured (`lateness_vns` in the report).
//!   Not deterministic: who reaches the deadline, and where the others are,
//!   depends on the host.
//! - **`local`**: each vCPU has a clock of its own
//!   ([`crate::target::riscv::hart::LocalClock`]), advanced by its own
//!   instructions. A device sees the clock of the hart that accesses it; the
//!   timer lists, the iothread and the monitor see the machine's VIRTUAL,
//!   which follows the slowest running vCPU.
//!   - **Without a quantum** the clocks run free (QEMU's `contrib/plugins/ips.c`
//!     idea): the machine's VIRTUAL is the minimum over the running vCPUs,
//!     moved on at each vCPU's exits; a vCPU runs to the next deadline on its
//!     own clock, then on in chunks of 100 µs of virtual time; whoever finds the
//!     minimum past a deadline runs the timers. The baseline for skew.
//!   - **With a quantum Q** ([`Quantum`]): a barrier at every multiple of Q
//!     and at every deadline known when the quantum starts. Every running
//!     vCPU stops at the barrier's time on its own clock; the last to arrive
//!     moves the machine's VIRTUAL there, runs the timers due, makes every
//!     hart see the interrupt lines the devices drive, lets halted vCPUs with
//!     an interrupt join (their clocks jump to the barrier), and computes the
//!     next barrier. Within a quantum, device accesses are made in (virtual
//!     time, hart id) order: an access waits until no running vCPU can still
//!     make an earlier one. A line one hart drives for another (an IPI, a
//!     PLIC claim) reaches it at the next barrier; a deadline armed within a
//!     quantum fires at the next barrier (late by less than Q, measured).
//!     The result: a guest whose harts interact through devices and
//!     interrupts runs the same instructions, sees the same values and
//!     prints the same bytes run after run. Harts that race through shared
//!     memory are not ordered (RAM is not a device).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use hdrhistogram::Histogram;
use parking_lot::{Mutex, MutexGuard};

use crate::accel::Sched;
use crate::accel::cpu::mark_vcpu_thread;
use crate::accel::mttcg::park_while_paused;
use crate::accel::vcpu::{
    ExecLock, Handoff, Step, Vcpu, VcpuStats, icount_limit, idle_wait, record, timers_now,
};
use crate::config::IcountSmp;
use crate::hw::machine::Machine;
use crate::sync::kick::Waiter;
use crate::target::riscv::hart::{DeviceOrder, Exit};
use crate::time::clock::ClockType;

/// `smp=local` without a quantum: how far (virtual ns) a vCPU that is past
/// the next deadline on its own clock runs before it looks again.
pub const FREE_CHUNK_NS: i64 = 100_000;

/// Instructions that cover `ns` virtual ns at `shift`, rounded up (at
/// least 1).
fn insns_for(ns: i64, shift: u32) -> u64 {
    (((ns.max(1) + (1i64 << shift) - 1) >> shift) as u64).max(1)
}

/// Where a vCPU is, for the barrier and the order of device accesses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    /// Running; will make no device access before this virtual time.
    Run(i64),
    /// Waiting to make a device access at this virtual time.
    Access(i64),
    /// Stopped at the barrier.
    Barrier,
    /// Halted in `wfi`, with this `mie` (it cannot change while halted:
    /// the barrier decides with it whether an interrupt wakes the vCPU).
    Halted(u64),
}

struct QState {
    /// The current quantum's end (virtual ns).
    boundary: i64,
    /// Barriers completed (a waiter leaves when it changes).
    generation: u64,
    slots: Vec<Slot>,
    /// Running vCPUs stopped at the barrier.
    arrived: usize,
    /// vCPUs not halted.
    running: usize,
    /// vCPUs parked until an access of theirs may be made.
    waiters: Vec<bool>,
    /// An idle vCPU sleeps to the next deadline (`sleep=on`).
    warping: bool,
}

/// `smp=local,quantum=Q`: the barrier and the order of device accesses.
///
/// One lock over every vCPU's [`Slot`], taken at barriers, halts, device
/// accesses, and at a running vCPU's exits only while some vCPU waits for
/// its turn (the count of those is an atomic the exits read). A wait is a
/// park on the vCPU's own waiter, with no timeout: whoever changes what it
/// waits for does so under the lock and then wakes it; a pause or shutdown
/// kicks every vCPU after setting its flag, and each wait re-checks both
/// before parking (the waiter keeps a token, so a wake between the check
/// and the park ends the park at once).
pub struct Quantum {
    q: i64,
    sleep: bool,
    st: Mutex<QState>,
    /// vCPUs waiting for their turn to access a device.
    waiting: AtomicUsize,
}

impl Quantum {
    /// The barrier for `m`'s vCPUs with quantum `q` ns, all running at
    /// virtual time 0.
    pub fn new(m: &Machine, q: u64) -> Arc<Quantum> {
        let n = m.cpus.len();
        let sleep = m.config.icount.is_some_and(|c| c.sleep);
        let quantum = Quantum {
            q: q as i64,
            sleep,
            st: Mutex::new(QState {
                boundary: 0,
                generation: 0,
                slots: vec![Slot::Run(0); n],
                arrived: 0,
                running: n,
                waiters: vec![false; n],
                warping: false,
            }),
            waiting: AtomicUsize::new(0),
        };
        quantum.st.lock().boundary = quantum.next_boundary(m, 0);
        Arc::new(quantum)
    }

    /// The quantum length in ns.
    pub fn quantum_ns(&self) -> i64 {
        self.q
    }

    /// The end of the quantum that starts at `t`: the next multiple of Q,
    /// or the next VIRTUAL deadline if that comes first.
    fn next_boundary(&self, m: &Machine, t: i64) -> i64 {
        let nq = (t / self.q + 1) * self.q;
        let d = m.timers.get(ClockType::Virtual).deadline_ns(t);
        if d > 0 {
            nq.min(t.saturating_add(d))
        } else {
            nq
        }
    }

    /// The current quantum's end.
    fn boundary(&self) -> i64 {
        self.st.lock().boundary
    }

    /// Wake every vCPU waiting for its turn: what it waits for may have
    /// changed.
    fn wake_waiters(&self, st: &QState, m: &Machine) {
        for (j, &w) in st.waiters.iter().enumerate() {
            if w {
                m.cpus[j].wake();
            }
        }
    }

    /// Everyone running is at the barrier (or none runs): move the
    /// machine's VIRTUAL to the barrier, run the timers due, make every
    /// hart see its lines, let halted vCPUs with an interrupt join, and
    /// start the next quantum. `me` is the vCPU doing it; `lateness` its
    /// histogram. Returns the timers run.
    fn complete(&self, st: &mut QState, m: &Machine, lateness: &mut Option<Histogram<u64>>) -> u64 {
        let t = st.boundary;
        let ic = m.icount.as_ref().expect("icount");
        let g = ic.get_ns();
        if t > g {
            ic.add_bias(t - g);
        }
        let vlist = m.timers.get(ClockType::Virtual);
        let mut ran = 0;
        if vlist.deadline_ns(t) == 0 {
            let _bql = m.bql.lock_unless_held();
            ran = vlist.run_expired(t, &mut |exp| record(lateness, (t - exp).max(0) as u64)) as u64;
        }
        for (j, c) in m.cpus.iter().enumerate() {
            let mip = c.apply_lines();
            if let Slot::Halted(mie) = st.slots[j] {
                if mip & mie != 0 {
                    st.slots[j] = Slot::Run(t);
                    st.running += 1;
                    c.wake();
                }
            }
        }
        st.generation += 1;
        st.arrived = 0;
        if st.running == 0 {
            // Every vCPU is idle: the idle path moves time on.
            return ran;
        }
        st.boundary = self.next_boundary(m, t);
        for (j, s) in st.slots.iter_mut().enumerate() {
            if *s == Slot::Barrier {
                *s = Slot::Run(t);
                m.cpus[j].wake();
            }
        }
        ran
    }

    /// vCPU `i` reached the barrier: wait until every running vCPU has
    /// (the last one completes it). Returns the next quantum's end, or
    /// `None` if the machine is shutting down.
    fn arrive(&self, m: &Machine, i: usize, waiter: &Waiter, stats: &mut VcpuStats) -> Option<i64> {
        let t0 = Instant::now();
        let mut st = self.st.lock();
        st.slots[i] = Slot::Barrier;
        st.arrived += 1;
        self.wake_waiters(&st, m);
        if st.arrived == st.running {
            stats.timers_run += self.complete(&mut st, m, &mut stats.lateness_vns);
            record(&mut stats.barrier_wait_ns, 0);
            return Some(st.boundary);
        }
        let seen = st.generation;
        loop {
            drop(st);
            if m.run.shutdown_requested() {
                return None;
            }
            if m.run.pause_requested() {
                park_while_paused(m, waiter, 1);
            } else {
                waiter.park();
            }
            st = self.st.lock();
            if st.generation != seen {
                record(&mut stats.barrier_wait_ns, t0.elapsed().as_nanos() as u64);
                return Some(st.boundary);
            }
        }
    }

    /// vCPU `i` halted (with `mie`): it no longer holds anyone back.
    fn halt(&self, m: &Machine, i: usize, mie: u64, stats: &mut VcpuStats) {
        let mut st = self.st.lock();
        self.halt_locked(&mut st, m, i, mie, stats);
    }

    fn halt_locked(&self, st: &mut QState, m: &Machine, i: usize, mie: u64, stats: &mut VcpuStats) {
        if matches!(st.slots[i], Slot::Halted(_)) {
            return;
        }
        st.slots[i] = Slot::Halted(mie);
        st.running -= 1;
        self.wake_waiters(st, m);
        if st.running > 0 && st.arrived == st.running {
            stats.timers_run += self.complete(st, m, &mut stats.lateness_vns);
        }
    }

    /// Halted vCPU `i` (with `mie`) has nothing to do: wait until a barrier
    /// lets it join (returns the quantum's end), or the machine pauses or
    /// shuts down (returns `None`; the caller steps again). While every vCPU
    /// is idle, this thread moves VIRTUAL on as QEMU's warp does: with
    /// `sleep=off` straight to the next deadline, with `sleep=on` as real
    /// time passes.
    fn idle(
        &self,
        m: &Machine,
        i: usize,
        mie: u64,
        waiter: &Waiter,
        stats: &mut VcpuStats,
    ) -> Option<i64> {
        let mut st = self.st.lock();
        if let Slot::Run(_) = st.slots[i] {
            // Let in by a barrier, but it found nothing to do after all.
            self.halt_locked(&mut st, m, i, mie, stats);
        }
        loop {
            if let Slot::Run(_) = st.slots[i] {
                return Some(st.boundary);
            }
            if m.run.shutdown_requested() || m.run.pause_requested() {
                return None;
            }
            if st.running == 0 && !st.warping {
                self.idle_machine(&mut st, m, waiter, stats);
            } else {
                MutexGuard::unlocked(&mut st, || waiter.park());
            }
        }
    }

    /// Every vCPU is idle: let in those an interrupt (from the iothread)
    /// woke, or else move VIRTUAL to the next deadline and complete a
    /// barrier there (`sleep=on`: after sleeping until then, or less if
    /// woken). Parks without the lock when there is nothing to wait for.
    fn idle_machine(
        &self,
        st: &mut MutexGuard<'_, QState>,
        m: &Machine,
        waiter: &Waiter,
        stats: &mut VcpuStats,
    ) {
        let ic = m.icount.as_ref().expect("icount");
        let g = ic.get_ns();
        // A barrier now: the lines, and who they wake.
        st.boundary = g;
        stats.timers_run += self.complete(st, m, &mut stats.lateness_vns);
        if st.running > 0 {
            return;
        }
        let d = m.timers.get(ClockType::Virtual).deadline_ns(g);
        if d < 0 {
            MutexGuard::unlocked(st, || waiter.park());
            return;
        }
        if !self.sleep {
            st.boundary = g + d;
            stats.timers_run += self.complete(st, m, &mut stats.lateness_vns);
            return;
        }
        st.warping = true;
        let start = m.clocks.get_ns(ClockType::VirtualRt);
        MutexGuard::unlocked(st, || {
            waiter.park_timeout(std::time::Duration::from_nanos(d as u64))
        });
        st.warping = false;
        let slept = (m.clocks.get_ns(ClockType::VirtualRt) - start).clamp(0, d);
        if st.running == 0 {
            st.boundary = (g + slept).max(ic.get_ns());
            stats.timers_run += self.complete(st, m, &mut stats.lateness_vns);
        }
    }

    /// vCPU `i` exited at virtual time `now`: if some vCPU waits for its
    /// turn, say how far this one has come. Cheap otherwise (one load).
    fn publish(&self, m: &Machine, i: usize, now: i64) {
        // SeqCst: with the waiter's SeqCst increment before it looks at the
        // slots: either this load sees the waiter, or the waiter sees this
        // vCPU's slot as it was and asks it to exit again.
        if self.waiting.load(Ordering::SeqCst) == 0 {
            return;
        }
        let mut st = self.st.lock();
        if let Slot::Run(_) = st.slots[i] {
            st.slots[i] = Slot::Run(now);
        }
        self.wake_waiters(&st, m);
    }

    /// The earliest access another vCPU waits to make after vCPU `i` at
    /// `now`, if any: `i` runs no further than just past it.
    fn earliest_waiter(&self, i: usize) -> Option<i64> {
        // SeqCst: as in `publish`.
        if self.waiting.load(Ordering::SeqCst) == 0 {
            return None;
        }
        let st = self.st.lock();
        st.slots
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .filter_map(|(_, &s)| match s {
                Slot::Access(t) => Some(t),
                _ => None,
            })
            .min()
    }
}

/// A vCPU thread's side of the access order: its waiter, for the waits.
struct Order<'a> {
    q: &'a Quantum,
    m: &'a Machine,
    waiter: &'a Waiter,
    wait_ns: std::cell::RefCell<Option<Histogram<u64>>>,
}

impl DeviceOrder for Order<'_> {
    fn before_access(&self, i: usize, t: i64) {
        let q = self.q;
        let mut st = q.st.lock();
        st.slots[i] = Slot::Access(t);
        // Its slot moved on (from a bound no later than `t`): a vCPU that
        // waits for this one may go now.
        q.wake_waiters(&st, self.m);
        let mut since: Option<Instant> = None;
        // What each blocker's slot was when it was last asked to exit: ask
        // again only once it has moved (it knows of this wait after its
        // next exit, and runs no further than just past it).
        let mut asked: Vec<Option<Slot>> = vec![None; st.slots.len()];
        loop {
            if !st.waiters[i] {
                st.waiters[i] = true;
                // SeqCst: see `Quantum::publish`.
                q.waiting.fetch_add(1, Ordering::SeqCst);
            }
            let mut blocked = false;
            for (j, s) in st.slots.iter().enumerate() {
                if j == i {
                    continue;
                }
                match *s {
                    Slot::Run(tj) if (tj, j) < (t, i) => {
                        blocked = true;
                        // Ask it to exit and say how far it has come.
                        if asked[j] != Some(*s) {
                            asked[j] = Some(*s);
                            self.m.cpus[j].request_exit();
                        }
                    }
                    Slot::Access(tj) if (tj, j) < (t, i) => blocked = true,
                    _ => {}
                }
            }
            if !blocked || self.m.run.shutdown_requested() {
                st.waiters[i] = false;
                q.waiting.fetch_sub(1, Ordering::SeqCst);
                st.slots[i] = Slot::Run(t);
                if let Some(s) = since {
                    record(
                        &mut self.wait_ns.borrow_mut(),
                        s.elapsed().as_nanos() as u64,
                    );
                }
                return;
            }
            since.get_or_insert_with(Instant::now);
            drop(st);
            if self.m.run.pause_requested() {
                park_while_paused(self.m, self.waiter, 1);
            } else {
                self.waiter.park();
            }
            st = q.st.lock();
        }
    }
}

/// Run hart `hart` on the calling thread under `smp=global` or
/// `smp=local[,quantum]` until the machine shuts down.
pub fn icount_vcpu_thread_fn(
    m: Arc<Machine>,
    sched: Arc<Sched>,
    hart: usize,
    waiter: Waiter,
    quantum: Option<Arc<Quantum>>,
) -> VcpuStats {
    mark_vcpu_thread(hart);
    let mode = m.config.icount.map(|c| c.smp).unwrap_or_default();
    let shift = m.icount.as_ref().map_or(0, |ic| ic.shift());
    let order = quantum.as_deref().map(|q| Order {
        q,
        m: &m,
        waiter: &waiter,
        wait_ns: Default::default(),
    });
    let mut v = Vcpu::new(&m, &sched, hart, false);
    if let IcountSmp::Local { .. } = mode {
        v.hart
            .set_local_clock(shift, order.as_ref().map(|o| o as &dyn DeviceOrder));
    }
    v.hart.global_counter = mode == IcountSmp::Global;
    let mut lock = ExecLock::new(&m);
    let handoff = Handoff::new(&m, hart);
    match (&quantum, mode) {
        (Some(q), _) => run_quantum(&m, q, &mut v, &mut lock, &waiter, hart, shift),
        (None, IcountSmp::Local { .. }) => {
            run_free(&m, &sched, &mut v, &mut lock, &waiter, &handoff, shift)
        }
        _ => run_global(&m, &sched, &mut v, &mut lock, &waiter, &handoff),
    }
    drop(lock);
    let mut stats = v.finish();
    if let Some(o) = order {
        stats.access_wait_ns = o.wait_ns.into_inner();
    }
    stats
}

/// After a step of a thread per vCPU: wait while idle (the warp's timers
/// counted on `v`) or paused. False once the machine is finished.
fn wait_after(step: Step, m: &Machine, sched: &Sched, waiter: &Waiter, v: &mut Vcpu<'_>) -> bool {
    match step {
        Step::Ran(_) | Step::Yielded => {}
        Step::Idle => {
            let s = v.stats_mut();
            s.timers_run += idle_wait(m, sched, waiter, &mut s.lateness_vns) as u64;
        }
        Step::Paused => park_while_paused(m, waiter, 1),
        Step::Finished => return false,
    }
    true
}

/// `smp=global`.
fn run_global<'a>(
    m: &'a Machine,
    sched: &Sched,
    v: &mut Vcpu<'a>,
    lock: &mut ExecLock<'a>,
    waiter: &Waiter,
    handoff: &Handoff,
) {
    loop {
        if icount_limit(m) == 0 {
            timers_now(m, handoff, waiter, lock, v);
        }
        // Every vCPU runs until the one counter reaches the deadline, the
        // budget asked after the exit request is consumed (a new VIRTUAL
        // head kicks every vCPU: the budget then sees it).
        let step = v.step_capped(u64::MAX, lock, &|| icount_limit(m));
        if !wait_after(step, m, sched, waiter, v) {
            break;
        }
        timers_now(m, handoff, waiter, lock, v);
    }
}

/// `smp=local` without a quantum: free-running clocks.
fn run_free<'a>(
    m: &'a Machine,
    sched: &Sched,
    v: &mut Vcpu<'a>,
    lock: &mut ExecLock<'a>,
    waiter: &Waiter,
    handoff: &Handoff,
    shift: u32,
) {
    let vlist = m.timers.get(ClockType::Virtual);
    loop {
        let now = v.hart.local_now(0).expect("local clock");
        let g = m.clocks.get_ns(ClockType::Virtual);
        let d = vlist.deadline_ns(g);
        let ahead = now - g;
        let limit = if d >= 0 && ahead < d {
            insns_for(d - ahead, shift)
        } else {
            insns_for(FREE_CHUNK_NS, shift)
        };
        let step = v.step(limit, lock);
        if !wait_after(step, m, sched, waiter, v) {
            break;
        }
        advance_to_slowest(m, sched);
        timers_now(m, handoff, waiter, lock, v);
    }
}

/// `smp=local` without a quantum: move the machine's VIRTUAL to the
/// slowest running vCPU's clock, if that is ahead of it.
fn advance_to_slowest(m: &Machine, sched: &Sched) {
    // Whoever holds the lock is moving it already, jumping it idle, or
    // waking a vCPU (whose clock jumps to it and must then count).
    let Some(_w) = sched.warp.try_lock() else {
        return;
    };
    // Relaxed: each clock is a lower bound its vCPU only raises (a woken
    // vCPU publishes its jump under the lock held here); a stale one moves
    // VIRTUAL less far, never back.
    let min = m
        .cpus
        .iter()
        .map(|c| c.vclock.load(Ordering::Relaxed))
        .min()
        .unwrap_or(i64::MAX);
    let ic = m.icount.as_ref().expect("icount");
    let g = ic.get_ns();
    if min != i64::MAX && min > g {
        ic.add_bias(min - g);
    }
}

/// `smp=local,quantum=Q`.
fn run_quantum<'a>(
    m: &'a Machine,
    q: &Quantum,
    v: &mut Vcpu<'a>,
    lock: &mut ExecLock<'a>,
    waiter: &Waiter,
    hart: usize,
    shift: u32,
) {
    let mut boundary = q.boundary();
    loop {
        let now = v.hart.local_now(0).expect("local clock");
        if !v.halted() && now >= boundary {
            match q.arrive(m, hart, waiter, v.stats_mut()) {
                Some(b) => boundary = b,
                None => break,
            }
            continue;
        }
        let limit = insns_for(boundary - now, shift);
        if q.earliest_waiter(hart).is_some_and(|w| w < now) {
            // A vCPU waits for one this one has already passed.
            q.publish(m, hart, now);
        }
        // Out at the first TB boundary past the earliest access another
        // vCPU waits to make, so that it may go: asked after the exit
        // request is consumed (the waiter counts itself, then asks this
        // vCPU to exit). A TB boundary, not an instruction: where this
        // lands depends on the host, and must not move where TBs begin.
        let soft = || match q.earliest_waiter(hart) {
            Some(w) if w >= now => ((w - now) >> shift) as u64 + 1,
            _ => u64::MAX,
        };
        match v.step_soft(limit, lock, &soft) {
            Step::Ran(Exit::Halt) => {
                let mie = v.hart.st.mie;
                q.halt(m, hart, mie, v.stats_mut());
            }
            Step::Ran(_) | Step::Yielded => {
                q.publish(m, hart, v.hart.local_now(0).expect("local clock"));
            }
            Step::Idle => {
                let mie = v.hart.st.mie;
                if let Some(b) = q.idle(m, hart, mie, waiter, v.stats_mut()) {
                    boundary = b;
                }
            }
            Step::Paused => park_while_paused(m, waiter, 1),
            Step::Finished => break,
        }
    }
}
