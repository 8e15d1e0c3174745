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

// Under `--cfg loom` (the model checks of the kick protocol, see [`sync`]) the
// crate is reduced to the modules the models use: the rest of it builds on
// crossbeam's and std's types, not loom's.
#[cfg(not(loom))]
pub mod bql;
#[cfg(not(loom))]
pub mod clock;
#[cfg(not(loom))]
pub mod config;
pub mod cpu;
#[cfg(not(loom))]
pub mod devices;
#[cfg(not(loom))]
pub mod host;
#[cfg(not(loom))]
pub mod icount;
#[cfg(not(loom))]
pub mod iothread;
pub mod kick;
#[cfg(not(loom))]
pub mod loader;
#[cfg(not(loom))]
pub mod machine;
#[cfg(not(loom))]
pub mod memory;
#[cfg(not(loom))]
pub mod monitor;
#[cfg(not(loom))]
pub mod report;
#[cfg(not(loom))]
pub mod riscv;
#[cfg(not(loom))]
pub mod run;
#[cfg(not(loom))]
pub mod runstate;
pub mod sync;
#[cfg(not(loom))]
pub mod timer;
#[cfg(not(loom))]
pub mod vcpu;
