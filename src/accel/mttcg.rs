//! `--accel tcg,thread=multi`: one host thread per vCPU, each running guest
//! code outside the BQL (the default without icount).
//!
//! QEMU analogue: `accel/tcg/tcg-accel-ops-mttcg.c` (`mttcg_cpu_thread_fn`)
//! and `qemu_wait_io_event` in `system/cpus.c`.
//!
//! The thread steps its vCPU ([`Vcpu::step`]) and waits on its own
//! [`Waiter`] when the vCPU is idle (halted with nothing pending) or the
//! machine is paused. Each wait is for a kick, with no timeout: whoever ends
//! it (a device raising an interrupt line, `cont`, a shutdown) publishes
//! its condition first and then kicks, and the waiter keeps a token, so a
//! kick between the step's checks and the park ends the park at once (the
//! loom models in `accel/cpu.rs` check this shape).

use std::sync::Arc;

use crate::accel::Sched;
use crate::accel::vcpu::{ExecLock, Step, Vcpu, VcpuStats, idle_wait};
use crate::hw::machine::Machine;
use crate::sync::kick::Waiter;

/// Run hart `hart` on the calling thread until the machine shuts down.
pub fn vcpu_thread_fn(
    m: Arc<Machine>,
    sched: Arc<Sched>,
    hart: usize,
    waiter: Waiter,
) -> VcpuStats {
    let mut v = Vcpu::new(&m, &sched, hart, false);
    let mut lock = ExecLock::new(&m);
    loop {
        match v.step(u64::MAX, &mut lock) {
            Step::Ran(_) | Step::Yielded => {}
            Step::Idle => {
                idle_wait(&m, &sched, &waiter, &mut None);
            }
            Step::Paused => park_while_paused(&m, &waiter, 1),
            Step::Finished => break,
        }
    }
    drop(lock);
    v.finish()
}

/// Park a thread that runs `vcpus` vCPUs until the pause ends (or the
/// machine shuts down), counted as parked meanwhile. `resume` and a
/// shutdown kick every vCPU after clearing or setting their flag.
pub fn park_while_paused(m: &Machine, waiter: &Waiter, vcpus: usize) {
    m.run.set_parked(vcpus, true);
    while m.run.pause_requested() && !m.run.shutdown_requested() {
        waiter.park();
    }
    m.run.set_parked(vcpus, false);
}
