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
use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_utils::sync::Parker;

use crate::clock::ClockType;
use crate::machine::Machine;
use crate::riscv::hart::{Exit, Hart};

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
    /// VIRTUAL timer callbacks run by this thread (icount).
    pub timers_run: u64,
    /// pc when the thread ended.
    pub pc: u64,
}

/// Run hart `hart` until the machine shuts down.
pub fn vcpu_thread_fn(m: Arc<Machine>, hart: usize, parker: Parker) -> VcpuStats {
    let shared = m.cpus[hart].clone();
    let mut h = Hart::new(shared.clone(), m.clone());
    let mut reset_gen = m.run.reset_gen();
    let mut stats = VcpuStats {
        hart,
        ..Default::default()
    };
    let icount_cfg = m.config.icount;
    let mut halted = false;
    loop {
        if m.run.shutdown_requested() {
            break;
        }
        if m.run.pause_requested() {
            h.sync_icount(0);
            shared.instret.store(h.retired, Ordering::Relaxed);
            m.run.set_parked(true);
            while m.run.pause_requested() && !m.run.shutdown_requested() {
                parker.park_timeout(Duration::from_millis(50));
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
        shared.take_exit_request();
        if icount_cfg.is_some() {
            stats.timers_run += run_virtual_timers_if_due(&m) as u64;
        }
        if halted {
            if h.has_work() {
                halted = false;
            } else {
                idle_wait(&m, &parker);
                continue;
            }
        }
        h.check_interrupts();
        let limit = if icount_cfg.is_some() {
            icount_budget(&m)
        } else {
            u64::MAX
        };
        let exit = h.execute(limit);
        h.sync_icount(0);
        shared.instret.store(h.retired, Ordering::Relaxed);
        match exit {
            Exit::Kicked | Exit::Budget | Exit::Io => {}
            Exit::Halt => {
                stats.halts += 1;
                halted = true;
            }
        }
    }
    h.sync_icount(0);
    shared.instret.store(h.retired, Ordering::Relaxed);
    stats.instructions = h.retired;
    stats.mmio = h.mmio_accesses;
    stats.traps = h.traps;
    stats.kicks = shared.kicks.load(Ordering::Relaxed);
    stats.tb_flushes = h.tbc.flushes;
    stats.pc = h.st.pc;
    stats
}

/// QEMU's `icount_handle_deadline`: run the VIRTUAL timers when the nearest
/// VIRTUAL deadline has been reached. Returns the callbacks run.
fn run_virtual_timers_if_due(m: &Machine) -> usize {
    let list = m.timers.get(ClockType::Virtual);
    let now = m.clocks.get_ns(ClockType::Virtual);
    if list.deadline_ns(now) != 0 {
        return 0;
    }
    let _bql = m.bql.lock();
    list.run_expired(now, &mut |_| {})
}

/// The instruction budget to the nearest deadline (`icount_get_limit`): the
/// VIRTUAL and REALTIME deadlines; none, negative or above `INT32_MAX` ns
/// means `INT32_MAX`; then `icount_round`.
pub fn icount_budget(m: &Machine) -> u64 {
    let ic = m.icount.as_ref().expect("icount");
    let vd = m
        .timers
        .get(ClockType::Virtual)
        .deadline_ns(m.clocks.get_ns(ClockType::Virtual));
    let rd = m
        .timers
        .get(ClockType::Realtime)
        .deadline_ns(m.clocks.get_ns(ClockType::Realtime));
    let d = match (vd, rd) {
        (-1, r) => r,
        (v, -1) => v,
        (v, r) => v.min(r),
    };
    let d = if !(0..=i32::MAX as i64).contains(&d) {
        i32::MAX as i64
    } else {
        d
    };
    ic.round(d) as u64
}

/// Wait while halted (QEMU's `qemu_wait_io_event` and, under icount, the
/// idle handling of `icount_start_warp_timer`). Returns after a kick, or once
/// VIRTUAL has reached the next deadline; the caller re-checks everything.
fn idle_wait(m: &Machine, parker: &Parker) {
    let Some(ic) = m.config.icount else {
        parker.park();
        return;
    };
    let vlist = m.timers.get(ClockType::Virtual);
    let d = vlist.deadline_ns(m.clocks.get_ns(ClockType::Virtual));
    if d < 0 {
        parker.park();
        return;
    }
    let icc = m.icount.as_ref().expect("icount");
    if !ic.sleep {
        // sleep=off: time jumps straight to the next deadline.
        icc.add_bias(d);
        return;
    }
    // sleep=on: idle time follows real time (QEMU's warp timer on
    // VIRTUAL_RT); a kick ends the sleep early and only the time spent
    // idle is added.
    let start = m.clocks.get_ns(ClockType::VirtualRt);
    parker.park_timeout(Duration::from_nanos(d as u64));
    let warp = m.clocks.get_ns(ClockType::VirtualRt) - start;
    if warp > 0 {
        icc.add_bias(warp);
    }
}
