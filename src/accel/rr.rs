//! `--accel tcg,thread=single`: one host thread runs every vCPU in turn
//! (the default under icount: QEMU's round-robin, `smp=rr`).
//!
//! QEMU analogue: `accel/tcg/tcg-accel-ops-rr.c` (`rr_cpu_thread_fn`,
//! `rr_kick_next_cpu`, `rr_wait_io_event`) and `icount_percpu_budget` in
//! `tcg-accel-ops-icount.c`.
//!
//! The loop, as QEMU's:
//!
//! - **A round** starts at the vCPU where the last one stopped (the first
//!   vCPU after a round that ran to the end). Under icount, the VIRTUAL
//!   timers whose deadline has come run first, on this thread, and the
//!   round's timeslice is computed (the timers are run as QEMU's
//!   `icount_handle_deadline` runs them: the timer list is notified first,
//!   and that kicks, so the round ends at its first vCPU and the next one
//!   starts with the timers' effects): with `rr-turn=split` (QEMU 8.1 and
//!   later, the default of `--compat qemu-10.0`) the budget limit divided
//!   by the number of vCPUs, or the whole limit when that rounds to 0; with
//!   `rr-turn=whole` (QEMU 7.2) no timeslice.
//! - **The vCPUs take turns** in hart order. Before each turn the round
//!   ends if that vCPU has an exit request (it is consumed, and the next
//!   round starts with it). A turn runs the vCPU until it executes `wfi`
//!   (whether it halts or an interrupt wakes it at once), is kicked,
//!   or (icount) exhausts its budget: the limit when the turn starts, and
//!   never more than the timeslice, spent across device accesses. A turn
//!   whose budget is 0 runs the timers due (`icount_prepare_for_run`),
//!   which kicks, and ends. A halted vCPU with nothing to do leaves its turn
//!   before it looks at its exit request (`cpu_handle_halt` comes before
//!   `cpu_handle_interrupt`), so the request ends the round at its next
//!   turn. A turn that ends by its budget or a kick takes a pending enabled
//!   interrupt first (`cpu_handle_interrupt` looks at interrupts before the
//!   exit request and the budget), so the next turn of that vCPU starts in
//!   the handler; a `wfi` leaves without. Device accesses do not end a turn, but a kick
//!   during one does. A halted vCPU with nothing pending is skipped.
//! - **Kicks.** A kick from another thread (the iothread's timers, the
//!   monitor, a signal) asks every vCPU to exit (QEMU's
//!   `rr_kick_vcpu_thread`), so the running one leaves at its next TB
//!   boundary and the round ends at the next vCPU. A vCPU interrupting
//!   another from this thread (an IPI, a timer run between turns) is no
//!   kick: the target takes the interrupt when its turn comes.
//! - **The kick timer**: with more than one vCPU, a VIRTUAL timer every
//!   100 ms (`TCG_KICK_PERIOD`) asks the running vCPU to exit, so that one
//!   spinning vCPU cannot keep the others from running. Under icount its
//!   deadline ends a turn like any other. It is stopped while every vCPU is
//!   idle.
//! - **Idle**: when every vCPU is halted with nothing pending, the thread
//!   waits for a kick; under icount, VIRTUAL moves on by itself
//!   ([`idle_wait`]: the warp).
//!
//! Under `--bql always` the thread holds the BQL across turns, as
//! single-threaded TCG did before MTTCG, and gives it up at the same exits
//! as a vCPU thread does ([`crate::accel::vcpu::ExecLock`]). An exit that
//! only hands the BQL over does not end the turn
//! ([`crate::accel::vcpu::ExecLock::hand_over`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::accel::cpu::{CpuShared, mark_rr_thread};
use crate::accel::mttcg::park_while_paused;
use crate::accel::vcpu::{
    ExecLock, Handoff, Step, Vcpu, VcpuStats, icount_limit, idle_wait, timers_now,
};
use crate::accel::{NO_VCPU, Sched};
use crate::config::RrTurn;
use crate::hw::machine::Machine;
use crate::sync::kick::Waiter;
use crate::target::riscv::hart::Exit;
use crate::time::clock::ClockType;
use crate::time::timer::Timer;

/// QEMU's `TCG_KICK_PERIOD`: the round-robin kick timer's period on
/// VIRTUAL, in ns.
pub const TCG_KICK_PERIOD_NS: i64 = 100_000_000;

/// The round-robin kick timer (QEMU's `rr_kick_vcpu_timer`).
struct KickTimer {
    timer: Timer,
    clocks: Arc<crate::time::clock::Clocks>,
}

impl KickTimer {
    fn new(m: &Machine, sched: &Arc<Sched>) -> KickTimer {
        let (cpus, sched, clocks) = (m.cpus.clone(), sched.clone(), m.clocks.clone());
        let timer = m
            .timers
            .get(ClockType::Virtual)
            .new_timer_with_ref(move |t| {
                t.modify(clocks.get_ns(ClockType::Virtual) + TCG_KICK_PERIOD_NS);
                kick_current(&cpus, &sched);
            });
        KickTimer {
            timer,
            clocks: m.clocks.clone(),
        }
    }

    /// `rr_start_kick_timer`: arm it unless it is pending.
    fn start(&self) {
        if !self.timer.is_pending() {
            self.timer
                .modify(self.clocks.get_ns(ClockType::Virtual) + TCG_KICK_PERIOD_NS);
        }
    }

    /// `rr_stop_kick_timer`.
    fn stop(&self) {
        self.timer.delete();
    }
}

/// QEMU's `rr_kick_next_cpu`: ask the vCPU whose turn it is to exit; read
/// the current vCPU again after the request, so that a turn that began in
/// between is asked too.
fn kick_current(cpus: &[Arc<CpuShared>], sched: &Sched) {
    loop {
        // SeqCst, with the SeqCst store of `rr_current` before each turn:
        // either this load sees the new turn's vCPU, or that vCPU's first
        // TB-boundary check sees the request made here to the old one... and
        // the loop then asks the new one too.
        let cur = sched.rr_current.load(Ordering::SeqCst);
        if cur != NO_VCPU {
            cpus[cur].request_exit();
        }
        std::sync::atomic::fence(Ordering::SeqCst);
        if cur == sched.rr_current.load(Ordering::SeqCst) {
            break;
        }
    }
}

/// Instructions a vCPU has added to icount so far (the budget's unit).
fn counted(v: &Vcpu<'_>) -> u64 {
    v.hart.retired + v.hart.icount_bonus
}

/// Run every hart of `m` on the calling thread, round-robin, until the
/// machine shuts down. Returns each vCPU's statistics, in hart order; the
/// VIRTUAL timers this thread ran (and its hand-offs) are counted on vCPU 0
/// at a round's start, and on the vCPU whose turn it was otherwise.
pub fn rr_thread_fn(m: Arc<Machine>, sched: Arc<Sched>, waiter: Waiter) -> Vec<VcpuStats> {
    mark_rr_thread();
    let n = m.cpus.len();
    let mut vcpus: Vec<Vcpu<'_>> = (0..n).map(|i| Vcpu::new(&m, &sched, i, true)).collect();
    let mut lock = ExecLock::new(&m);
    let handoff = Handoff::new(&m, 0);
    let kick_timer = (n > 1).then(|| KickTimer::new(&m, &sched));
    if let Some(k) = &kick_timer {
        k.start();
    }
    let icount = m.config.icount.is_some();
    let split = m.config.accel.rr_turn == RrTurn::Split && n > 1;
    // Where the next round starts: the vCPU that ended the last round with
    // its exit request, or the first.
    let mut start = 0;
    // As QEMU's loop begins: "process any pending work" (a first round that
    // ends at once).
    m.cpus[0].request_exit();
    'run: loop {
        // One round. Under icount: the timers due now, then the timeslice.
        let mut slice = u64::MAX;
        if icount {
            timers_now(&m, &handoff, &waiter, &mut lock, &mut vcpus[0]);
            if split {
                let limit = icount_limit(&m);
                slice = match limit / n as u64 {
                    0 => limit,
                    s => s,
                };
            }
        }
        let mut i = start;
        start = 0;
        while i < n {
            if m.cpus[i].exit_requested() {
                vcpus[i].observe_kick();
                start = i;
                break;
            }
            // SeqCst: see `kick_current`.
            sched.rr_current.store(i, Ordering::SeqCst);
            let v = &mut vcpus[i];
            // `icount_prepare_for_run`: the turn's budget, fixed when the
            // turn starts and spent across device accesses, as QEMU's
            // decrementer is (a kick ends the turn early, and a new VIRTUAL
            // head kicks). With one vCPU the limit is recomputed after every
            // access instead, which ends at the same instructions: a later
            // turn would start at once with the fresh limit.
            let mut left = if icount && n > 1 {
                icount_limit(&m).min(slice)
            } else {
                slice
            };
            if icount && n > 1 && left == 0 {
                // `icount_prepare_for_run`: a turn with no budget runs the
                // timers due now, notifying first (which asks every vCPU to
                // exit: this one takes its pending interrupts and leaves).
                // Both QEMUs do it: random SMP programs match 7.2 with it
                // and 23 % of them do not without it.
                timers_now(&m, &handoff, &waiter, &mut lock, v);
            }
            let end = loop {
                let limit = match (icount, n) {
                    (false, _) => u64::MAX,
                    (true, 1) => icount_limit(&m),
                    (true, _) => left,
                };
                let before = counted(v);
                match v.step(limit, &mut lock) {
                    Step::Ran(Exit::Io) | Step::Yielded => {
                        left = left.saturating_sub(counted(v) - before);
                        if m.cpus[i].exit_requested() && !lock.hand_over(v, i) {
                            // A kick during the access (a VIRTUAL timer
                            // that became the head, a stop): `cpu_exec`
                            // checks the request after every TB and leaves.
                            v.observe_kick();
                            v.hart.check_interrupts();
                            break None;
                        }
                        if icount && left == 0 {
                            v.hart.check_interrupts();
                            break None;
                        }
                    }
                    Step::Ran(Exit::Kicked) if lock.hand_over(v, i) => {
                        // Only asked to give the BQL up (`--bql always`):
                        // the turn goes on.
                        left = left.saturating_sub(counted(v) - before);
                        if icount && left == 0 {
                            v.hart.check_interrupts();
                            break None;
                        }
                    }
                    Step::Ran(Exit::Kicked) => {
                        // Consumed here, as `cpu_exec` consumes it when it
                        // leaves: it asked this turn to end, not the round.
                        v.observe_kick();
                        // `cpu_handle_interrupt` takes a pending interrupt
                        // before it looks at the exit request or the
                        // budget: the turn ends in the handler.
                        v.hart.check_interrupts();
                        break None;
                    }
                    Step::Ran(Exit::Budget) => {
                        v.hart.check_interrupts();
                        break None;
                    }
                    // `wfi` ends the turn even when an interrupt wakes the
                    // hart at once (QEMU's `helper_wfi` halts it regardless;
                    // its EXCP_HLT leaves `cpu_exec` before interrupts are
                    // looked at).
                    Step::Ran(Exit::Halt | Exit::WfiAwake) | Step::Idle => {
                        break None;
                    }
                    Step::Paused => {
                        sched.rr_current.store(NO_VCPU, Ordering::SeqCst);
                        park_while_paused(&m, &waiter, n);
                        sched.rr_current.store(i, Ordering::SeqCst);
                    }
                    Step::Finished => break Some(()),
                }
            };
            sched.rr_current.store(NO_VCPU, Ordering::SeqCst);
            if end.is_some() {
                break 'run;
            }
            i += 1;
        }
        // `rr_wait_io_event`: wait while every vCPU is idle.
        if vcpus.iter().all(|v| v.halted() && !v.has_work())
            && !m.run.shutdown_requested()
            && !m.run.pause_requested()
        {
            if let Some(k) = &kick_timer {
                k.stop();
            }
            lock.release();
            let s0 = vcpus[0].stats_mut();
            s0.timers_run += idle_wait(&m, &sched, &waiter, &mut s0.lateness_vns) as u64;
        }
        if let Some(k) = &kick_timer {
            k.start();
        }
    }
    drop(lock);
    vcpus.into_iter().map(Vcpu::finish).collect()
}
