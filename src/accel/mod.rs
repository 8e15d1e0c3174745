//! The accelerator: how vCPUs run, as QEMU's `accel/tcg/` runs them.
//!
//! - [`cpu`]: the part of a vCPU other threads touch (interrupt lines, exit
//!   request, kick): QEMU's cross-thread `CPUState` fields.
//! - [`vcpu`]: one vCPU as a state machine, [`vcpu::Vcpu::step`], which runs
//!   guest code until an exit and says what the vCPU waits for next; and the
//!   two drivers that call it, as QEMU's `tcg-accel-ops-mttcg.c` and
//!   `tcg-accel-ops-rr.c`: [`mttcg`] (one host thread per vCPU,
//!   `--accel tcg,thread=multi`) and [`rr`] (one host thread for all,
//!   round-robin, `--accel tcg,thread=single`).
//!
//! The board ([`crate::hw`]) knows nothing of threads; the scheduling state
//! shared by the vCPUs (how many are halted, the icount idle warp) lives in
//! [`Sched`].

pub mod cpu;
#[cfg(not(loom))]
pub mod icount_smp;
#[cfg(not(loom))]
pub mod mttcg;
pub mod quantum;
#[cfg(not(loom))]
pub mod rr;
#[cfg(not(loom))]
pub mod vcpu;

#[cfg(not(loom))]
pub use sched::{NO_VCPU, Sched};

#[cfg(not(loom))]
mod sched {
    use std::sync::atomic::AtomicUsize;

    /// [`Sched::rr_current`] when no vCPU is running.
    pub const NO_VCPU: usize = usize::MAX;

    /// Scheduling state shared by every vCPU of a run (QEMU keeps it in
    /// `accel/tcg` and `system/cpus.c` globals).
    pub struct Sched {
        /// vCPUs halted in `wfi` (icount moves VIRTUAL by itself only when
        /// all are: QEMU's `all_cpu_threads_idle`). Under `thread=single`
        /// the round-robin thread counts its halted vCPUs here too.
        pub halted: AtomicUsize,
        /// Serialises the icount idle warp: of several idle vCPU threads
        /// only the first jumps VIRTUAL to the deadline. Under `smp=local`
        /// without a quantum it also moves the machine's VIRTUAL to the
        /// slowest running clock, and holds the vCPUs that wait there for it
        /// (at a deadline they reached first on their own clocks: see
        /// [`crate::accel::icount_smp`]).
        pub warp: parking_lot::Mutex<Vec<usize>>,
        /// `thread=single`: the vCPU whose turn it is, [`NO_VCPU`] between
        /// turns (QEMU's `rr_current_cpu`), for the kick timer.
        pub rr_current: AtomicUsize,
    }

    impl Sched {
        /// No vCPU halted, none running.
        pub fn new() -> Sched {
            Sched {
                halted: AtomicUsize::new(0),
                warp: parking_lot::Mutex::new(Vec::new()),
                rr_current: AtomicUsize::new(NO_VCPU),
            }
        }
    }

    impl Default for Sched {
        fn default() -> Sched {
            Sched::new()
        }
    }
}
