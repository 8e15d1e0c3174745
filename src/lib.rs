//! vcpulab — a laboratory for emulator architecture.
//!
//! Real RISC-V guests (a QEMU `virt` subset) run on vCPU threads that execute
//! outside a global lock (the BQL) and take it only for device accesses, while
//! an iothread owns the timer lists and kicks vCPUs at deadlines; with icount,
//! guest time is a function of the instructions executed, exactly as in QEMU.
//!
//! The modules follow QEMU's concepts, each naming the QEMU file it mirrors:
//! [`clock`], [`timer`], [`iothread`], [`vcpu`], [`bql`], [`riscv`] (the hart
//! and its translation blocks), [`memory`], [`devices`], [`machine`],
//! [`loader`]. See `docs/architecture.md`.
#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod bql;
pub mod clock;
pub mod config;
pub mod cpu;
pub mod devices;
pub mod host;
pub mod icount;
pub mod iothread;
pub mod loader;
pub mod machine;
pub mod memory;
pub mod monitor;
pub mod report;
pub mod riscv;
pub mod run;
pub mod runstate;
pub mod timer;
pub mod vcpu;
