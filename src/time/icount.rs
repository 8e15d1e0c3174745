//! icount: guest time as a function of instructions executed.
//!
//! QEMU analogue: `accel/tcg/icount-common.c` (`icount_adjust`,
//! `icount_adjust_rt`, `icount_adjust_vm`, `icount_warp_rt`) and
//! `accel/tcg/tcg-accel-ops-icount.c` (`icount_get_limit`). The clock itself
//! (`VIRTUAL = bias + (icount << shift)`) is [`crate::time::clock::IcountClock`];
//! this module holds the policy around it:
//!
//! - [`budget`]: the number of instructions a vCPU may run before the
//!   nearest VIRTUAL or REALTIME deadline (`icount_get_limit`): none, negative
//!   or beyond `INT32_MAX` ns means `INT32_MAX` ns, then `icount_round`.
//! - [`Adjuster`]: `shift=auto`. Every 1000 ms of VIRTUAL_RT (a timer run by
//!   the iothread) and every 100 ms of VIRTUAL (a timer run by the vCPU
//!   thread) it compares VIRTUAL with VIRTUAL_RT (host time while running):
//!   `delta = VIRTUAL - VIRTUAL_RT`; if the guest is ahead (`delta > 0`) and
//!   `last_delta + WOBBLE < 2 * delta`, the shift goes down by one; if it is
//!   behind and `last_delta - WOBBLE > 2 * delta`, up by one (0..=10); the
//!   bias is recomputed so that VIRTUAL stays continuous. WOBBLE = 100 ms.
//!   Every change is logged with its wall time for the run report.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;

use crate::time::clock::{ClockType, Clocks, IcountClock, MAX_ICOUNT_SHIFT};
use crate::time::timer::{Timer, TimerListGroup};

/// The time values (mtime ticks) the guest read, for the cross-vCPU
/// inversions figure: a read that returns less than a value some hart read
/// earlier (in host order) is an inversion, by that difference. One hart's
/// own reads never go back, so each inversion is between two harts. Under
/// `rr` and `global` there are none; with clocks of their own there are.
#[derive(Debug, Default)]
pub struct TimeReads {
    inner: crossbeam_utils::CachePadded<TimeReadsInner>,
}

#[derive(Debug, Default)]
struct TimeReadsInner {
    last: AtomicU64,
    count: AtomicU64,
    max: AtomicU64,
}

impl TimeReads {
    /// Count a read of `ticks`.
    #[inline]
    pub fn record(&self, ticks: u64) {
        let r = &*self.inner;
        // Relaxed: a measurement; the largest value read so far is kept by
        // `fetch_max`, whatever the interleaving.
        let prev = r.last.load(Ordering::Relaxed);
        if ticks > prev {
            r.last.fetch_max(ticks, Ordering::Relaxed);
        } else if ticks < prev {
            r.count.fetch_add(1, Ordering::Relaxed);
            r.max.fetch_max(prev - ticks, Ordering::Relaxed);
        }
    }

    /// (inversions, the largest in ticks).
    pub fn inversions(&self) -> (u64, u64) {
        let r = &*self.inner;
        (
            r.count.load(Ordering::Relaxed),
            r.max.load(Ordering::Relaxed),
        )
    }
}

/// QEMU's `ICOUNT_WOBBLE`: 100 ms.
pub const ICOUNT_WOBBLE_NS: i64 = 100_000_000;

/// The instruction budget to the nearest deadline (`icount_get_limit`).
pub fn budget(ic: &IcountClock, clocks: &Clocks, timers: &TimerListGroup) -> u64 {
    let vd = timers
        .get(ClockType::Virtual)
        .deadline_ns(clocks.get_ns(ClockType::Virtual));
    let rd = timers
        .get(ClockType::Realtime)
        .deadline_ns(clocks.get_ns(ClockType::Realtime));
    let d = crate::time::timer::soonest_timeout(vd, rd);
    let d = if !(0..=i32::MAX as i64).contains(&d) {
        i32::MAX as i64
    } else {
        d
    };
    ic.round(d) as u64
}

struct AdjustState {
    last_delta: i64,
    changes: Vec<(u64, u32)>,
}

/// `shift=auto`: QEMU's adaptive shift.
pub struct Adjuster {
    ic: Arc<IcountClock>,
    clocks: Arc<Clocks>,
    start: Instant,
    state: Mutex<AdjustState>,
}

impl Adjuster {
    /// An adjuster for `ic`; the initial shift is logged at wall time 0.
    pub fn new(ic: Arc<IcountClock>, clocks: Arc<Clocks>) -> Arc<Adjuster> {
        let shift = ic.shift();
        Arc::new(Adjuster {
            ic,
            clocks,
            start: Instant::now(),
            state: Mutex::new(AdjustState {
                last_delta: 0,
                changes: vec![(0, shift)],
            }),
        })
    }

    /// One `icount_adjust` step. Does nothing while the machine is stopped.
    pub fn adjust(&self) {
        if !self.clocks.is_running() {
            return;
        }
        let mut st = self.state.lock();
        let cur_time = self.clocks.get_ns(ClockType::VirtualRt);
        let cur_icount = self.ic.get_ns();
        let delta = cur_icount - cur_time;
        let shift = self.ic.shift();
        let mut new = shift;
        if delta > 0 && st.last_delta + ICOUNT_WOBBLE_NS < delta.saturating_mul(2) && shift > 0 {
            new = shift - 1;
        }
        if delta < 0
            && st.last_delta - ICOUNT_WOBBLE_NS > delta.saturating_mul(2)
            && shift < MAX_ICOUNT_SHIFT
        {
            new = shift + 1;
        }
        st.last_delta = delta;
        if new != shift {
            // Keeps VIRTUAL continuous: bias = now - (icount << new).
            self.ic.set_shift(new);
            st.changes
                .push((self.start.elapsed().as_nanos() as u64, new));
        }
    }

    /// (wall ns since start, shift) for the initial shift and every change.
    pub fn changes(&self) -> Vec<(u64, u32)> {
        self.state.lock().changes.clone()
    }

    /// Arm QEMU's two periodic adjustment timers: 1000 ms of VIRTUAL_RT and
    /// 100 ms of VIRTUAL. The returned timers must be kept alive.
    pub fn arm(self: &Arc<Self>, timers: &TimerListGroup) -> (Timer, Timer) {
        let a = self.clone();
        let rt_list = timers.get(ClockType::VirtualRt).clone();
        let rt = rt_list.new_timer_with_ref(move |me| {
            me.modify(a.clocks.get_ns(ClockType::VirtualRt) + 1_000_000_000);
            a.adjust();
        });
        let b = self.clone();
        let vm_list = timers.get(ClockType::Virtual).clone();
        let vm = vm_list.new_timer_with_ref(move |me| {
            me.modify(b.clocks.get_ns(ClockType::Virtual) + 100_000_000);
            b.adjust();
        });
        rt.modify(self.clocks.get_ns(ClockType::VirtualRt) + 1_000_000_000);
        vm.modify(self.clocks.get_ns(ClockType::Virtual) + 100_000_000);
        (rt, vm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_rounds_up_and_caps() {
        let ic = Arc::new(IcountClock::new(3));
        let clocks = Clocks::with_icount(ic.clone());
        let timers = TimerListGroup::new();
        // No deadline: INT32_MAX ns, rounded up to instructions.
        assert_eq!(budget(&ic, &clocks, &timers), ((i32::MAX as u64) + 7) >> 3);
        let t = timers.get(ClockType::Virtual).new_timer(|| {});
        t.modify(ic.get_ns() + 17);
        assert_eq!(
            budget(&ic, &clocks, &timers),
            3,
            "17 ns at 8 ns/insn rounds up to 3"
        );
        t.modify(ic.get_ns());
        assert_eq!(budget(&ic, &clocks, &timers), 0);
    }

    #[test]
    fn adjust_slows_a_guest_that_runs_ahead() {
        let ic = Arc::new(IcountClock::new(3));
        let clocks = Arc::new(Clocks::with_icount(ic.clone()));
        let adj = Adjuster::new(ic.clone(), clocks.clone());
        // 1 s of virtual time almost at once: far ahead of real time.
        ic.add_executed(1_000_000_000 >> 3);
        let before = ic.get_ns();
        adj.adjust();
        assert_eq!(ic.shift(), 2);
        assert_eq!(
            ic.get_ns(),
            before,
            "VIRTUAL stays continuous across a shift change"
        );
        assert_eq!(adj.changes().len(), 2);
    }

    #[test]
    fn adjust_speeds_up_a_guest_that_falls_behind() {
        let ic = Arc::new(IcountClock::new(3));
        let clocks = Arc::new(Clocks::with_icount(ic.clone()));
        let adj = Adjuster::new(ic.clone(), clocks.clone());
        std::thread::sleep(std::time::Duration::from_millis(120));
        // No instructions ran: VIRTUAL is 0, VIRTUAL_RT is ~120 ms.
        adj.adjust();
        assert_eq!(ic.shift(), 4);
        assert_eq!(ic.get_ns(), 0);
    }
}
