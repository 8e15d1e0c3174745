//! The part of a vCPU that other threads touch: its interrupt-pending bits,
//! its exit request and its wake-up.
//!
//! QEMU analogue: the cross-thread fields of `CPUState` (`interrupt_request`,
//! `exit_request`, `halted`, `halt_cond`) and `qemu_cpu_kick()` in
//! `system/cpus.c`; `riscv_cpu_update_mip()` in `target/riscv/cpu_helper.c`.
//!
//! # The kick protocol (no lost wake-ups)
//! A device that changes a vCPU's interrupt lines first updates `mip`, then
//! sets `exit_request`, then unparks the vCPU thread. The vCPU checks
//! `exit_request` at every TB boundary, and a halted vCPU re-checks its wake-up
//! condition (`mip & mie != 0`, or a stop) before every park. The parker keeps a
//! token, so an unpark that lands between the check and the park makes that
//! park return at once: no kick is lost.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crossbeam_utils::sync::Unparker;

/// Machine software interrupt pending bit of `mip`.
pub const MIP_MSIP: u64 = 1 << 3;
/// Machine timer interrupt pending bit of `mip`.
pub const MIP_MTIP: u64 = 1 << 7;
/// Machine external interrupt pending bit of `mip`.
pub const MIP_MEIP: u64 = 1 << 11;

/// Cross-thread state of one vCPU.
pub struct CpuShared {
    /// Hart id (`mhartid`), also the index in the machine's vCPU list.
    pub index: usize,
    mip: AtomicU64,
    exit_request: AtomicBool,
    unparker: Unparker,
    /// Instructions retired, published by the vCPU thread at its exits.
    pub instret: AtomicU64,
    /// Number of kicks delivered (for the run report).
    pub kicks: AtomicU64,
}

impl CpuShared {
    /// New state for hart `index`, woken through `unparker`.
    pub fn new(index: usize, unparker: Unparker) -> CpuShared {
        CpuShared {
            index,
            mip: AtomicU64::new(0),
            exit_request: AtomicBool::new(false),
            unparker,
            instret: AtomicU64::new(0),
            kicks: AtomicU64::new(0),
        }
    }

    /// The interrupt-pending bits.
    #[inline]
    pub fn mip(&self) -> u64 {
        // Acquire: pairs with the Release in `set_irq`, so a vCPU that sees a
        // pending bit also sees the device state written before it was raised.
        self.mip.load(Ordering::Acquire)
    }

    /// Raise or lower interrupt line `bit` (one of the `MIP_*` constants) and
    /// kick the vCPU when the bits changed.
    pub fn set_irq(&self, bit: u64, level: bool) {
        // Release: publishes device state to the vCPU that acquires `mip`.
        let old = if level {
            self.mip.fetch_or(bit, Ordering::AcqRel)
        } else {
            self.mip.fetch_and(!bit, Ordering::AcqRel)
        };
        if (old & bit != 0) != level {
            self.kick();
        }
    }

    /// Ask the vCPU to leave its execution loop at the next TB boundary, and
    /// wake it if halted.
    pub fn kick(&self) {
        self.kicks.fetch_add(1, Ordering::Relaxed);
        // Release: everything the kicker wrote before the kick (mip, stop
        // requests) is visible to the vCPU once it acquires `exit_request`.
        self.exit_request.store(true, Ordering::Release);
        self.unparker.unpark();
    }

    /// Wake the vCPU thread if it is parked, without an exit request (used to
    /// end a wait the vCPU itself started, such as a timer hand-off).
    pub fn wake(&self) {
        self.unparker.unpark();
    }

    /// Cheap test for the TB-boundary check.
    #[inline(always)]
    pub fn exit_requested(&self) -> bool {
        // Relaxed: only a hint; `take_exit_request` does the acquiring swap.
        self.exit_request.load(Ordering::Relaxed)
    }

    /// Consume the exit request (the vCPU thread only).
    #[inline]
    pub fn take_exit_request(&self) -> bool {
        // Acquire: pairs with the Release store in `kick`.
        self.exit_request.swap(false, Ordering::Acquire)
    }
}
