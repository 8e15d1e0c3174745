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
//!     own clock and waits there, parked, until the minimum gets there too
//!     (with no deadline ahead, it runs on in chunks of 100 µs of virtual
//!     time); whoever finds the minimum at a deadline runs the timers. The
//!     baseline for skew.
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
use std::sync::atomic::Ordering;
use std::time::Instant;

use hdrhistogram::Histogram;

use crate::accel::Sched;
use crate::accel::cpu::mark_vcpu_thread;
use crate::accel::mttcg::park_while_paused;
use crate::accel::quantum::{Host, Wait};
use crate::accel::vcpu::{
    ExecLock, Handoff, Step, Vcpu, VcpuStats, icount_limit, idle_wait, record, run_expired_at,
    timers_now,
};
use crate::config::IcountSmp;
use crate::hw::machine::Machine;
use crate::sync::kick::Waiter;
use crate::target::riscv::hart::{DeviceOrder, Exit};
use crate::time::clock::ClockType;

/// `smp=local` without a quantum: how far (virtual ns) a vCPU that is past
/// the next deadline on its own clock runs before it looks again.
pub const FREE_CHUNK_NS: i64 = 100_000;

/// Instructions that cover `ns` virtual ns, rounded up as QEMU rounds
/// (`icount_round`), at least 1.
fn insns_for(m: &Machine, ns: i64) -> u64 {
    let ic = m.icount.as_ref().expect("icount");
    ic.round(ns.max(1)).max(1) as u64
}

/// `smp=local,quantum=Q`: the protocol ([`crate::accel::quantum::Quantum`],
/// model-checked there) and what it needs of the machine.
pub struct Quantum {
    q: i64,
    sleep: bool,
    proto: crate::accel::quantum::Quantum,
}

impl Quantum {
    /// The barrier for `m`'s vCPUs with quantum `q` ns, all running at
    /// virtual time 0.
    pub fn new(m: &Machine, q: u64) -> Arc<Quantum> {
        let q = q as i64;
        Arc::new(Quantum {
            q,
            sleep: m.config.icount.is_some_and(|c| c.sleep),
            proto: crate::accel::quantum::Quantum::new(m.cpus.len(), quantum_end(m, q, 0)),
        })
    }

    /// The quantum length in ns.
    pub fn quantum_ns(&self) -> i64 {
        self.q
    }
}

/// The end of the quantum of `q` ns that starts at `t`: the next multiple
/// of `q`, or the next VIRTUAL deadline if that comes first.
fn quantum_end(m: &Machine, q: i64, t: i64) -> i64 {
    let nq = (t / q + 1) * q;
    let d = m.timers.get(ClockType::Virtual).deadline_ns(t);
    if d > 0 {
        nq.min(t.saturating_add(d))
    } else {
        nq
    }
}

/// The machine as the protocol sees it.
struct MachineHost<'a> {
    m: &'a Machine,
    q: &'a Quantum,
}

impl Host for MachineHost<'_> {
    fn wake(&self, j: usize) {
        self.m.cpus[j].wake();
    }

    fn request_exit(&self, j: usize) {
        self.m.cpus[j].request_exit();
    }

    fn stopping(&self) -> bool {
        self.m.run.shutdown_requested()
    }

    fn pausing(&self) -> bool {
        self.m.run.pause_requested()
    }

    fn barrier(&self, t: i64, late: &mut dyn FnMut(u64)) -> u64 {
        let ic = self.m.icount.as_ref().expect("icount");
        let g = ic.get_ns();
        if t > g {
            ic.add_bias(t - g);
        }
        if self.deadline(t) != 0 {
            return 0;
        }
        run_expired_at(self.m, t, late) as u64
    }

    fn apply_lines(&self, j: usize) -> u64 {
        self.m.cpus[j].apply_lines()
    }

    fn next_boundary(&self, t: i64) -> i64 {
        quantum_end(self.m, self.q.q, t)
    }

    fn machine_now(&self) -> i64 {
        self.m.icount.as_ref().map_or(0, |ic| ic.get_ns())
    }

    fn deadline(&self, t: i64) -> i64 {
        self.m.timers.get(ClockType::Virtual).deadline_ns(t)
    }

    fn sleep(&self) -> bool {
        self.q.sleep
    }

    fn real_now(&self) -> i64 {
        self.m.clocks.get_ns(ClockType::VirtualRt)
    }
}

/// A vCPU thread's waits: its own waiter; a pause parks it as paused.
struct ThreadWait<'a> {
    m: &'a Machine,
    waiter: &'a Waiter,
}

impl Wait for ThreadWait<'_> {
    fn park(&self) {
        self.waiter.park();
    }

    fn park_ns(&self, ns: i64) {
        self.waiter
            .park_timeout(std::time::Duration::from_nanos(ns.max(0) as u64));
    }

    fn park_paused(&self) {
        park_while_paused(self.m, self.waiter, 1);
    }
}

/// A vCPU thread's side of the access order, for its hart.
struct Order<'a> {
    host: MachineHost<'a>,
    wait: ThreadWait<'a>,
    wait_ns: std::cell::RefCell<Option<Histogram<u64>>>,
}

impl DeviceOrder for Order<'_> {
    fn before_access(&self, i: usize, t: i64) {
        let t0 = Instant::now();
        if self
            .host
            .q
            .proto
            .before_access(&self.host, i, t, &self.wait)
        {
            let dur = t0.elapsed().as_nanos() as u64;
            record(&mut self.wait_ns.borrow_mut(), dur);
            if crate::trace::enabled() {
                crate::trace::record(crate::trace::Event::AccessWait {
                    vcpu: i as u32,
                    start: crate::trace::ns_of(t0),
                    dur,
                });
            }
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
        host: MachineHost { m: &m, q },
        wait: ThreadWait {
            m: &m,
            waiter: &waiter,
        },
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
        (Some(_), _) => {
            let o = order.as_ref().expect("an order with a quantum");
            run_quantum(&m, o, &mut v, &mut lock, hart, shift)
        }
        (None, IcountSmp::Local { .. }) => {
            run_free(&m, &sched, &mut v, &mut lock, &waiter, &handoff)
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
///
/// A vCPU runs on its own clock to the next VIRTUAL deadline. If the
/// machine's clock (the slowest running vCPU) is not there yet, the vCPU
/// waits, parked, until it is ([`wait_for_slowest`]); the timers then run
/// and the vCPU goes on. Without the wait it would run on past the
/// deadline, and a timer a vCPU arms for itself relative to its own clock
/// (the CLINT's `mtimecmp = mtime + delta`) would fire only once the
/// slowest vCPU had caught up with it: late by its whole lead, during which
/// it runs further ahead. Each such interrupt then costs the slower vCPUs
/// more catching up than the last (the lead grows by the speed ratio every
/// time), and a guest that waits for a few of them on a hart that runs
/// faster than the others (`smp_timer_storm` at 4 harts, whose other harts
/// store to the UART in their loop) does not finish.
fn run_free<'a>(
    m: &'a Machine,
    sched: &Sched,
    v: &mut Vcpu<'a>,
    lock: &mut ExecLock<'a>,
    waiter: &Waiter,
    handoff: &Handoff,
) {
    let vlist = m.timers.get(ClockType::Virtual);
    let hart = v.stats_mut().hart;
    loop {
        let now = v.hart.local_now(0).expect("local clock");
        let g = m.clocks.get_ns(ClockType::Virtual);
        let d = vlist.deadline_ns(g);
        let ahead = now - g;
        if d > 0
            && ahead >= d
            && !v.halted()
            && !m.run.shutdown_requested()
            && !m.run.pause_requested()
        {
            // At the deadline on its own clock, before the machine: wait for
            // the others (a stop or a pause ends the wait, and the step
            // below then returns at once).
            wait_for_slowest(m, sched, waiter, hart);
            run_timers(m, sched, handoff, waiter, lock, v);
            continue;
        }
        let limit = if d > 0 && ahead < d {
            insns_for(m, d - ahead)
        } else {
            insns_for(m, FREE_CHUNK_NS)
        };
        let step = v.step(limit, lock);
        // A vCPU that halts leaves the minimum: it must move the machine's
        // clock itself while another vCPU runs (which may be waiting for
        // that). When every vCPU is halted, none waits, and the lock may be
        // held by an idle `sleep=on` warp for as long as it sleeps.
        let halted =
            step == Step::Ran(Exit::Halt) && sched.halted.load(Ordering::Acquire) < m.cpus.len();
        if !wait_after(step, m, sched, waiter, v) {
            break;
        }
        if halted {
            advance_locked(m, &sched.warp.lock());
        } else {
            advance_to_slowest(m, sched);
        }
        run_timers(m, sched, handoff, waiter, lock, v);
    }
}

/// `smp=local` without a quantum: run the VIRTUAL timers due at the
/// machine's clock; if any ran, wake the vCPUs waiting at a deadline (the
/// one they wait for may be gone).
fn run_timers<'a>(
    m: &'a Machine,
    sched: &Sched,
    handoff: &Handoff,
    waiter: &Waiter,
    lock: &mut ExecLock<'a>,
    v: &mut Vcpu<'a>,
) {
    let before = v.stats_mut().timers_run;
    timers_now(m, handoff, waiter, lock, v);
    if v.stats_mut().timers_run != before {
        for &j in sched.warp.lock().iter() {
            m.cpus[j].wake();
        }
    }
}

/// `smp=local` without a quantum: wait, parked, until the machine's clock
/// has caught up with this vCPU's (published at its last exit), which is at
/// or past the next deadline; or until a kick (an interrupt, a stop, a
/// pause, a new VIRTUAL head). The caller looks at everything again.
///
/// No timeout, and no lost wake-up: the vCPU enters the waiting list and
/// moves the machine's clock under the warp lock; whoever moves it later
/// does so under the lock too, and wakes every waiting vCPU whose clock it
/// has reached ([`advance_locked`]). If every running vCPU waits, the last
/// to enter saw every clock, moved the machine's to the slowest of them,
/// and that one does not park.
fn wait_for_slowest(m: &Machine, sched: &Sched, waiter: &Waiter, hart: usize) {
    let vlist = m.timers.get(ClockType::Virtual);
    // Relaxed: this thread's own store, at its last exit.
    let mine = m.cpus[hart].vclock.load(Ordering::Relaxed);
    let park = {
        let mut w = sched.warp.lock();
        w.push(hart);
        advance_locked(m, &w);
        let g = m.clocks.get_ns(ClockType::Virtual);
        let d = vlist.deadline_ns(g);
        d > 0 && mine - g >= d
    };
    if park {
        waiter.park();
    }
    sched.warp.lock().retain(|&j| j != hart);
}

/// `smp=local` without a quantum: move the machine's VIRTUAL to the
/// slowest running vCPU's clock, if that is ahead of it.
fn advance_to_slowest(m: &Machine, sched: &Sched) {
    // Whoever holds the lock is moving it already, jumping it idle, or
    // waking a vCPU (whose clock jumps to it and must then count). This
    // vCPU runs on and moves it at its next exit; a vCPU that stops
    // instead (it halts, or waits at a deadline) takes the lock.
    let Some(w) = sched.warp.try_lock() else {
        return;
    };
    advance_locked(m, &w);
}

/// [`advance_to_slowest`] under the warp lock, `waiting` the vCPUs that
/// wait for the machine's clock: wake those whose clock it reaches.
fn advance_locked(m: &Machine, waiting: &[usize]) {
    // Relaxed: each clock is a lower bound its vCPU only raises (a woken
    // vCPU publishes its jump under the lock held here, and a vCPU that
    // stops publishes before it takes the lock); a stale one moves VIRTUAL
    // less far, never back.
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
        for &j in waiting.iter() {
            if m.cpus[j].vclock.load(Ordering::Relaxed) <= min {
                m.cpus[j].wake();
            }
        }
    }
}

/// `smp=local,quantum=Q`.
fn run_quantum<'a>(
    m: &'a Machine,
    o: &Order<'_>,
    v: &mut Vcpu<'a>,
    lock: &mut ExecLock<'a>,
    hart: usize,
    shift: u32,
) {
    let (q, h, w) = (&o.host.q.proto, &o.host, &o.wait);
    let mut boundary = q.boundary();
    loop {
        let now = v.hart.local_now(0).expect("local clock");
        if !v.halted() && now >= boundary {
            let t0 = Instant::now();
            let s = v.stats_mut();
            match q.arrive(h, hart, w, &mut |l| record(&mut s.lateness_vns, l)) {
                Some((b, waited, ran)) => {
                    boundary = b;
                    s.timers_run += ran;
                    let ns = if waited {
                        t0.elapsed().as_nanos() as u64
                    } else {
                        0
                    };
                    record(&mut s.barrier_wait_ns, ns);
                    if waited && crate::trace::enabled() {
                        crate::trace::record(crate::trace::Event::BarrierWait {
                            vcpu: hart as u32,
                            start: crate::trace::ns_of(t0),
                            dur: ns,
                        });
                    }
                }
                None => break,
            }
            continue;
        }
        let limit = insns_for(m, boundary - now);
        if q.earliest_waiter(hart).is_some_and(|t| t < now) {
            // A vCPU waits for one this one has already passed.
            q.publish(h, hart, now);
        }
        // Out at the first TB boundary past the earliest access another
        // vCPU waits to make, so that it may go: asked after the exit
        // request is consumed (the waiter counts itself, then asks this
        // vCPU to exit). A TB boundary, not an instruction: where this
        // lands depends on the host, and must not move where TBs begin.
        let soft = || match q.earliest_waiter(hart) {
            Some(t) if t >= now => ((t - now) >> shift) as u64 + 1,
            _ => u64::MAX,
        };
        match v.step_soft(limit, lock, &soft) {
            Step::Ran(Exit::Halt) => {
                let mie = v.hart.st.mie;
                let s = v.stats_mut();
                s.timers_run += q.halt(h, hart, mie, &mut |l| record(&mut s.lateness_vns, l));
            }
            Step::Ran(_) | Step::Yielded => {
                q.publish(h, hart, v.hart.local_now(0).expect("local clock"));
            }
            Step::Idle => {
                let s = v.stats_mut();
                let mut ran = 0;
                let late = &mut s.lateness_vns;
                if let Some(b) = q.idle(h, hart, w, &mut |l| record(late, l), &mut ran) {
                    boundary = b;
                }
                s.timers_run += ran;
            }
            Step::Paused => park_while_paused(m, o.wait.waiter, 1),
            Step::Finished => break,
        }
    }
}
