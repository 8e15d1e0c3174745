//! vcpulab — a laboratory for emulator architecture.
//!
//! Real RISC-V guests (a QEMU `virt` subset) run on vCPU threads that execute
//! outside a global lock (the BQL) and take it only for device accesses, while
//! an iothread owns the timer lists and kicks vCPUs at deadlines; with icount,
//! guest time is a function of the instructions executed, exactly as in QEMU.
//!
//! The layout follows QEMU's, each module naming the QEMU file it mirrors:
//! [`accel`] (the vCPUs: state machine, thread per vCPU, round-robin),
//! [`target`] (the RISC-V hart and its translation blocks), [`hw`] (board,
//! memory, loader, devices), [`time`] (clocks, timer lists, icount),
//! [`sync`] (BQL, lock kinds, profile, kicks, the model-checking shim),
//! [`iothread`], [`monitor`], [`report`], [`run`], [`trace`] (the run's
//! timeline). See
//! `docs/architecture.md`.
#![deny(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

// Under `--cfg loom` (the model checks of the kick protocol, see [`sync`]) the
// crate is reduced to the modules the models use: the rest of it builds on
// crossbeam's and std's types, not loom's.
pub mod accel;
#[cfg(not(loom))]
pub mod cli;
#[cfg(not(loom))]
pub mod config;
#[cfg(not(loom))]
pub mod experiment;
#[cfg(not(loom))]
pub mod host;
#[cfg(not(loom))]
pub mod hw;
#[cfg(not(loom))]
pub mod iothread;
#[cfg(not(loom))]
pub mod monitor;
#[cfg(not(loom))]
pub mod qemu;
#[cfg(not(loom))]
pub mod report;
#[cfg(not(loom))]
pub mod run;
#[cfg(not(loom))]
pub mod runstate;
pub mod sync;
#[cfg(not(loom))]
pub mod target;
#[cfg(not(loom))]
pub mod time;
#[cfg(not(loom))]
pub mod trace;
