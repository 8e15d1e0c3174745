//! The protocol of `smp=local,quantum=Q` ([`crate::accel::icount_smp`]): the
//! barrier at each quantum's end and the order of device accesses, over one
//! lock, with what it needs of the machine behind [`Host`] and of the vCPU
//! thread's waiter behind [`Wait`], so that the loom models below check the
//! code that runs.
//!
//! Every vCPU has a [`Slot`]. A wait is a park on the vCPU's own waiter, with
//! no timeout: whoever changes what it waits for does so under the lock and
//! then wakes it; a pause or shutdown kicks every vCPU after setting its
//! flag, and each wait re-checks both before parking (the waiter keeps a
//! token, so a wake between the check and the park ends the park at once).

use crate::sync::{AtomicUsize, Mutex, MutexGuard, Ordering};

/// What the protocol needs of the machine.
pub trait Host {
    /// Wake vCPU `j`'s thread (it looks again at what it waits for).
    fn wake(&self, j: usize);
    /// Ask running vCPU `j` to leave guest code at its next TB boundary.
    fn request_exit(&self, j: usize);
    /// The machine is shutting down.
    fn stopping(&self) -> bool;
    /// A pause is requested.
    fn pausing(&self) -> bool;
    /// A barrier at virtual time `t`, every vCPU stopped: move the
    /// machine's clock there and run the timers due, reporting each one's
    /// lateness (virtual ns). Returns the timers run.
    fn barrier(&self, t: i64, late: &mut dyn FnMut(u64)) -> u64;
    /// Make vCPU `j` see the lines its devices drive; returns its `mip`.
    fn apply_lines(&self, j: usize) -> u64;
    /// The end of the quantum that starts at `t`.
    fn next_boundary(&self, t: i64) -> i64;
    /// The machine's VIRTUAL now.
    fn machine_now(&self) -> i64;
    /// ns from `t` to the next VIRTUAL deadline (0: due; -1: none).
    fn deadline(&self, t: i64) -> i64;
    /// `sleep=on`: idle time follows real time.
    fn sleep(&self) -> bool;
    /// Host time while the machine runs (VIRTUAL_RT), ns.
    fn real_now(&self) -> i64;
}

/// How the calling vCPU thread waits.
pub trait Wait {
    /// Park until woken (or spuriously).
    fn park(&self);
    /// Park for at most `ns` of real time.
    fn park_ns(&self, ns: i64);
    /// Park while the machine is paused.
    fn park_paused(&self);
}

/// Where a vCPU is, for the barrier and the order of device accesses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
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

/// The barrier and the access order of `n` vCPUs (see the module doc).
pub struct Quantum {
    st: Mutex<QState>,
    /// vCPUs waiting for their turn to access a device.
    waiting: AtomicUsize,
}

impl Quantum {
    /// `n` vCPUs, all running at virtual time 0; the first quantum ends at
    /// `boundary`.
    pub fn new(n: usize, boundary: i64) -> Quantum {
        Quantum {
            st: Mutex::new(QState {
                boundary,
                generation: 0,
                slots: vec![Slot::Run(0); n],
                arrived: 0,
                running: n,
                waiters: vec![false; n],
                warping: false,
            }),
            waiting: AtomicUsize::new(0),
        }
    }

    /// The current quantum's end.
    pub fn boundary(&self) -> i64 {
        self.st.lock().boundary
    }

    /// Wake every vCPU waiting for its turn: what it waits for may have
    /// changed.
    fn wake_waiters(&self, st: &QState, h: &dyn Host) {
        for (j, &w) in st.waiters.iter().enumerate() {
            if w {
                h.wake(j);
            }
        }
    }

    /// Everyone running is at the barrier (or none runs): the host's
    /// barrier work at its time, then halted vCPUs with an interrupt join
    /// (their clocks jump to it) and the next quantum starts. Returns the
    /// timers run.
    fn complete(&self, st: &mut QState, h: &dyn Host, late: &mut dyn FnMut(u64)) -> u64 {
        let t = st.boundary;
        let ran = h.barrier(t, late);
        for j in 0..st.slots.len() {
            let mip = h.apply_lines(j);
            if let Slot::Halted(mie) = st.slots[j] {
                if mip & mie != 0 {
                    st.slots[j] = Slot::Run(t);
                    st.running += 1;
                    h.wake(j);
                }
            }
        }
        st.generation += 1;
        st.arrived = 0;
        if st.running == 0 {
            // Every vCPU is idle: the idle path moves time on.
            return ran;
        }
        st.boundary = h.next_boundary(t);
        for (j, s) in st.slots.iter_mut().enumerate() {
            if *s == Slot::Barrier {
                *s = Slot::Run(t);
                h.wake(j);
            }
        }
        ran
    }

    /// vCPU `i` reached the barrier: wait until every running vCPU has
    /// (the last one completes it). Returns (the next quantum's end, whether
    /// this vCPU waited, the timers it ran), or `None` if the machine is
    /// shutting down.
    pub fn arrive(
        &self,
        h: &dyn Host,
        i: usize,
        w: &dyn Wait,
        late: &mut dyn FnMut(u64),
    ) -> Option<(i64, bool, u64)> {
        let mut st = self.st.lock();
        st.slots[i] = Slot::Barrier;
        st.arrived += 1;
        self.wake_waiters(&st, h);
        if st.arrived == st.running {
            let ran = self.complete(&mut st, h, late);
            return Some((st.boundary, false, ran));
        }
        let seen = st.generation;
        loop {
            drop(st);
            if h.stopping() {
                return None;
            }
            if h.pausing() {
                w.park_paused();
            } else {
                w.park();
            }
            st = self.st.lock();
            if st.generation != seen {
                return Some((st.boundary, true, 0));
            }
        }
    }

    /// vCPU `i` halted (with `mie`): it no longer holds anyone back.
    /// Returns the timers run (if it completed the barrier).
    pub fn halt(&self, h: &dyn Host, i: usize, mie: u64, late: &mut dyn FnMut(u64)) -> u64 {
        let mut st = self.st.lock();
        self.halt_locked(&mut st, h, i, mie, late)
    }

    fn halt_locked(
        &self,
        st: &mut QState,
        h: &dyn Host,
        i: usize,
        mie: u64,
        late: &mut dyn FnMut(u64),
    ) -> u64 {
        if matches!(st.slots[i], Slot::Halted(_)) {
            return 0;
        }
        st.slots[i] = Slot::Halted(mie);
        st.running -= 1;
        self.wake_waiters(st, h);
        if st.running > 0 && st.arrived == st.running {
            return self.complete(st, h, late);
        }
        0
    }

    /// Halted vCPU `i` has nothing to do: wait until a barrier
    /// lets it join (returns the quantum's end), or the machine pauses or
    /// shuts down (returns `None`; the caller steps again). While every vCPU
    /// is idle, this thread moves VIRTUAL on as QEMU's warp does: with
    /// `sleep=off` straight to the next deadline, with `sleep=on` as real
    /// time passes. `ran` counts the timers it runs.
    pub fn idle(
        &self,
        h: &dyn Host,
        i: usize,
        w: &dyn Wait,
        late: &mut dyn FnMut(u64),
        ran: &mut u64,
    ) -> Option<i64> {
        let mut st = self.st.lock();
        // A barrier may have let it in since the caller found nothing to
        // do (its lines change only there): then it has work now, and the
        // loop below returns at once.
        loop {
            if let Slot::Run(_) = st.slots[i] {
                return Some(st.boundary);
            }
            if h.stopping() || h.pausing() {
                return None;
            }
            if st.running == 0 && !st.warping {
                st = self.idle_machine(st, h, w, late, ran);
            } else {
                drop(st);
                w.park();
                st = self.st.lock();
            }
        }
    }

    /// Every vCPU is idle: let in those an interrupt (from the iothread)
    /// woke, or else move VIRTUAL to the next deadline and complete a
    /// barrier there (`sleep=on`: after sleeping until then, or less if
    /// woken). Parks without the lock when there is nothing to wait for.
    fn idle_machine<'s>(
        &'s self,
        mut st: MutexGuard<'s, QState>,
        h: &dyn Host,
        w: &dyn Wait,
        late: &mut dyn FnMut(u64),
        ran: &mut u64,
    ) -> MutexGuard<'s, QState> {
        let g = h.machine_now();
        // A barrier now: the lines, and who they wake.
        st.boundary = g;
        *ran += self.complete(&mut st, h, late);
        if st.running > 0 {
            return st;
        }
        let d = h.deadline(g);
        if d < 0 {
            drop(st);
            w.park();
            return self.st.lock();
        }
        if !h.sleep() {
            st.boundary = g + d;
            *ran += self.complete(&mut st, h, late);
            return st;
        }
        st.warping = true;
        let start = h.real_now();
        drop(st);
        w.park_ns(d);
        let mut st = self.st.lock();
        st.warping = false;
        let slept = (h.real_now() - start).clamp(0, d);
        if st.running == 0 {
            st.boundary = (g + slept).max(h.machine_now());
            *ran += self.complete(&mut st, h, late);
        }
        st
    }

    /// vCPU `i` exited at virtual time `now`: if some vCPU waits for its
    /// turn, say how far this one has come. Cheap otherwise (one load).
    pub fn publish(&self, h: &dyn Host, i: usize, now: i64) {
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
        self.wake_waiters(&st, h);
    }

    /// The earliest access another vCPU than `i` waits to make, if any:
    /// `i` runs no further than just past it.
    pub fn earliest_waiter(&self, i: usize) -> Option<i64> {
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

    /// vCPU `i` is about to access a device at virtual time `t`: return once
    /// no other running vCPU can still make an earlier access (every other
    /// one is at the barrier, halted, or past (`t`, `i`) in (virtual time,
    /// hart id) order), or the machine is shutting down. Returns whether it
    /// waited.
    pub fn before_access(&self, h: &dyn Host, i: usize, t: i64, w: &dyn Wait) -> bool {
        let mut st = self.st.lock();
        st.slots[i] = Slot::Access(t);
        // Its slot moved on (from a bound no later than `t`): a vCPU that
        // waits for this one may go now.
        self.wake_waiters(&st, h);
        let mut waited = false;
        // What each blocker's slot was when it was last asked to exit: ask
        // again only once it has moved (it knows of this wait after its
        // next exit, and runs no further than just past it).
        let mut asked: Vec<Option<Slot>> = vec![None; st.slots.len()];
        loop {
            if !st.waiters[i] {
                st.waiters[i] = true;
                // SeqCst: see `publish`.
                self.waiting.fetch_add(1, Ordering::SeqCst);
            }
            let mut blocked = false;
            for (j, s) in st.slots.iter().enumerate() {
                if j == i {
                    continue;
                }
                match *s {
                    Slot::Run(tj) if (tj, j) < (t, i) => {
                        blocked = true;
                        if asked[j] != Some(*s) {
                            asked[j] = Some(*s);
                            h.request_exit(j);
                        }
                    }
                    Slot::Access(tj) if (tj, j) < (t, i) => blocked = true,
                    _ => {}
                }
            }
            if !blocked || h.stopping() {
                st.waiters[i] = false;
                self.waiting.fetch_sub(1, Ordering::SeqCst);
                st.slots[i] = Slot::Run(t);
                return waited;
            }
            waited = true;
            drop(st);
            if h.pausing() {
                w.park_paused();
            } else {
                w.park();
            }
            st = self.st.lock();
        }
    }
}

/// Loom models of the protocol, on the code above: every interleaving of
/// vCPU threads that arrive at the barrier, halt, make device accesses and
/// publish how far they are. A lost wake-up leaves a thread parked for ever,
/// which loom reports as a deadlock: without the wake in `before_access`
/// when a slot becomes `Access` (a bug the stress runs hit as a rare hang),
/// the first model reports one. Run with
/// `RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release --lib loom`.
#[cfg(all(test, loom))]
mod loom_tests {
    use loom::thread;

    use super::*;
    use crate::sync::kick::{KickKind, Kicker, Waiter};
    use crate::sync::{Arc, AtomicBool, AtomicU64};

    /// A machine for the model: vCPU `j` is woken through `kickers[j]`; an
    /// exit request is a flag; vCPU 1's line becomes pending at the first
    /// barrier (an IPI sent in the first quantum); quanta are 10 ns long;
    /// device accesses are logged in the order they are made.
    struct ModelHost {
        kickers: Vec<Kicker>,
        exit: Vec<AtomicBool>,
        barriers: AtomicUsize,
        log: Mutex<Vec<(i64, usize)>>,
        ipi_to_1: bool,
        /// What vCPU 1 sees of its lines (set at a barrier).
        mip1: AtomicU64,
    }

    impl Host for ModelHost {
        fn wake(&self, j: usize) {
            self.kickers[j].unpark();
        }
        fn request_exit(&self, j: usize) {
            self.exit[j].store(true, Ordering::Release);
            self.kickers[j].unpark();
        }
        fn stopping(&self) -> bool {
            false
        }
        fn pausing(&self) -> bool {
            false
        }
        fn barrier(&self, _t: i64, _late: &mut dyn FnMut(u64)) -> u64 {
            self.barriers.fetch_add(1, Ordering::Relaxed);
            0
        }
        fn apply_lines(&self, j: usize) -> u64 {
            if j == 1 && self.ipi_to_1 {
                self.mip1.store(8, Ordering::Release);
                8
            } else {
                0
            }
        }
        fn next_boundary(&self, t: i64) -> i64 {
            t + 10
        }
        fn machine_now(&self) -> i64 {
            0
        }
        fn deadline(&self, _t: i64) -> i64 {
            -1
        }
        fn sleep(&self) -> bool {
            false
        }
        fn real_now(&self) -> i64 {
            0
        }
    }

    impl Wait for Waiter {
        fn park(&self) {
            Waiter::park(self)
        }
        fn park_ns(&self, _ns: i64) {
            Waiter::park(self)
        }
        fn park_paused(&self) {
            Waiter::park(self)
        }
    }

    fn host(ipi_to_1: bool) -> (Arc<ModelHost>, Vec<Waiter>) {
        let waiters: Vec<Waiter> = (0..2)
            .map(|_| Waiter::new(KickKind::Futex).unwrap())
            .collect();
        let h = Arc::new(ModelHost {
            kickers: waiters.iter().map(|w| w.kicker()).collect(),
            exit: (0..2).map(|_| AtomicBool::new(false)).collect(),
            barriers: AtomicUsize::new(0),
            log: Mutex::new(Vec::new()),
            ipi_to_1,
            mip1: AtomicU64::new(0),
        });
        (h, waiters)
    }

    /// A device access by vCPU 0 at t = 5 while vCPU 1 runs from 0 and says
    /// how far it has come at 3 and 8 (its exits), then both reach the
    /// barrier at 10: the access waits for vCPU 1 to pass 5 (never lost),
    /// vCPU 1's own access at 8 comes after it, and the barrier completes
    /// once, for both.
    #[test]
    fn loom_access_waits_for_the_slower_vcpu_then_the_barrier() {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(|| {
            let (h, mut waiters) = host(false);
            let q = Arc::new(Quantum::new(2, 10));
            let w1 = waiters.pop().unwrap();
            let w0 = waiters.pop().unwrap();
            let t1 = {
                let (h, q) = (h.clone(), q.clone());
                thread::spawn(move || {
                    q.publish(&*h, 1, 3);
                    q.publish(&*h, 1, 8);
                    q.before_access(&*h, 1, 8, &w1);
                    h.log.lock().push((8, 1));
                    q.arrive(&*h, 1, &w1, &mut |_| {}).unwrap().0
                })
            };
            q.before_access(&*h, 0, 5, &w0);
            h.log.lock().push((5, 0));
            let b0 = q.arrive(&*h, 0, &w0, &mut |_| {}).unwrap().0;
            let b1 = t1.join().unwrap();
            assert_eq!(
                (b0, b1),
                (20, 20),
                "both leave the barrier for the next quantum"
            );
            assert_eq!(h.barriers.load(Ordering::Relaxed), 1);
            assert_eq!(
                *h.log.lock(),
                vec![(5, 0), (8, 1)],
                "accesses in virtual-time order"
            );
        });
    }

    /// vCPU 1 halts in the first quantum while vCPU 0 waits at the barrier:
    /// the halt completes the barrier, and vCPU 1, idle, joins at the next
    /// one, where its IPI has become visible; vCPU 0 then waits for it.
    #[test]
    fn loom_halt_completes_the_barrier_and_the_ipi_wakes_at_the_next() {
        let mut b = loom::model::Builder::new();
        b.preemption_bound = Some(3);
        b.check(|| {
            let (h, mut waiters) = host(true);
            let q = Arc::new(Quantum::new(2, 10));
            let w1 = waiters.pop().unwrap();
            let w0 = waiters.pop().unwrap();
            let t1 = {
                let (h, q) = (h.clone(), q.clone());
                thread::spawn(move || {
                    q.halt(&*h, 1, 8, &mut |_| {});
                    // As the driver: idle only while nothing is pending (a
                    // barrier that made the line visible let it in).
                    if h.mip1.load(Ordering::Acquire) == 0 {
                        let mut ran = 0;
                        let b = q.idle(&*h, 1, &w1, &mut |_| {}, &mut ran).unwrap();
                        assert_eq!(b, 20, "let in at the first barrier, for the second quantum");
                    }
                    q.arrive(&*h, 1, &w1, &mut |_| {}).unwrap().0
                })
            };
            let (b, _, _) = q.arrive(&*h, 0, &w0, &mut |_| {}).unwrap();
            assert_eq!(b, 20);
            let (b, _, _) = q.arrive(&*h, 0, &w0, &mut |_| {}).unwrap();
            assert_eq!(b, 30, "the second barrier waited for the woken vCPU");
            assert_eq!(t1.join().unwrap(), 30);
            assert_eq!(h.barriers.load(Ordering::Relaxed), 2);
        });
    }
}
