//! The test-support module of the whole-machine tests.
//!
//! - `mod.rs` (here): paths, running vcpulab and any child process with a
//!   limit (through `proc.rs`, the runner the benches share);
//! - `qemu.rs`: the two reference QEMUs (10.0 and 7.2) through the library's
//!   runner (`vcpulab::qemu`): skipping, and the libtest-mimic trials that
//!   run a check against each;
//! - `asm.rs`: the assembler, RVC compressor, print routines and ELF writer of
//!   the random programs;
//! - `randprog.rs`, `randtime.rs`, `randsmp.rs`: the random-program generators;
//! - `diff.rs`: the random differential driver (seeds, workers, mismatch
//!   reports, shrinking) both random tests use.
#![allow(dead_code)]

pub mod asm;
pub mod diff;
pub mod proc;
pub mod qemu;
pub mod randprog;
pub mod randsmp;
pub mod randtime;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Guest RAM address of the workload parameter block (slot `i` at `+8*i`).
pub const PARAM_BLOCK: u64 = vcpulab::qemu::PARAM_BLOCK;

/// Path of the vcpulab binary built by cargo for integration tests.
pub fn vcpulab_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vcpulab"))
}

/// Root of the repository (for `guests/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Path of a committed guest ELF, e.g. `guest("hello")` → `guests/build/hello.elf`.
pub fn guest(name: &str) -> PathBuf {
    repo_root()
        .join("guests")
        .join("build")
        .join(format!("{name}.elf"))
}

/// Result of one run: what the guest wrote to the UART, and how it ended.
#[derive(Debug)]
pub struct RunOut {
    /// Bytes written to stdout (the UART).
    pub stdout: Vec<u8>,
    /// Bytes written to stderr (diagnostics).
    pub stderr: Vec<u8>,
    /// Exit status code (`None` if killed by a signal or by our timeout).
    pub code: Option<i32>,
    /// Whether the harness had to kill the process.
    pub timed_out: bool,
}

impl RunOut {
    /// stdout as lossy UTF-8, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Run a command with a wall-clock limit, capturing stdout/stderr (bounded to
/// 16 MiB each so that a runaway guest cannot fill the disk or memory).
pub fn run_with_limit(cmd: Command, limit: Duration) -> RunOut {
    let f = proc::run_bounded(cmd, limit, 16 << 20).expect("spawn");
    RunOut {
        stdout: f.stdout,
        stderr: f.stderr,
        code: f.code,
        timed_out: f.timed_out,
    }
}

/// Run `elf` on vcpulab (`vcpulab run --kernel ELF ...`), with extra arguments
/// and parameter-block slots (`--param SLOT=VALUE`).
pub fn run_vcpulab(elf: &Path, extra: &[&str], params: &[(usize, u64)], limit: Duration) -> RunOut {
    let mut cmd = Command::new(vcpulab_bin());
    cmd.arg("run").arg("--kernel").arg(elf).args(extra);
    for &(slot, value) in params {
        cmd.arg("--param").arg(format!("{slot}={value}"));
    }
    run_with_limit(cmd, limit)
}

/// A numeric knob from the environment (decimal or 0x-hex, `_` allowed);
/// a malformed value panics naming the variable.
pub fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
        None => v.replace('_', "").parse(),
    };
    Some(
        parsed.unwrap_or_else(|e| panic!("{name}={v}: expected a number (decimal or 0x-hex): {e}")),
    )
}

/// The last `n` characters of `s`.
pub fn tail(s: &str, n: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    chars[chars.len().saturating_sub(n)..].iter().collect()
}

/// A run's exit status, timeout and outputs, for failure messages.
pub fn describe(who: &str, out: &RunOut) -> String {
    format!(
        "{who}: code={:?} timed_out={} stdout:\n{}\n{who} stderr:\n{}",
        out.code,
        out.timed_out,
        out.text(),
        String::from_utf8_lossy(&out.stderr)
    )
}
