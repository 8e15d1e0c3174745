//! Experiments as files: a TOML file names a guest, the axes to sweep (any
//! option of `vcpulab run`, guest parameters, the backend — vcpulab or a
//! QEMU — and host load), repetitions and figures; `vcpulab experiment`
//! runs the sweep as child processes and `vcpulab report` turns the stored
//! runs into tables and plots. See `docs/experiments.md`.

pub mod backend;
pub mod command;
pub mod plan;
pub mod plot;
pub mod record;
pub mod report;
pub mod runner;
pub mod spec;
pub mod store;
