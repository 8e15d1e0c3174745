//! Shared helpers for the whole-machine tests: run one ELF on vcpulab and on
//! QEMU 7.2 (`qemu-system-riscv64 -machine virt -bios none`) and compare.
//!
//! QEMU is the reference. When it is absent, tests that need it print a loud
//! message and skip locally; under CI (`CI` set) they fail instead, so a missing
//! install step can never turn into a silent pass.
#![allow(dead_code)]

pub mod randprog;
pub mod randtime;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Guest RAM address of the workload parameter block (slot `i` at `+8*i`).
pub const PARAM_BLOCK: u64 = 0x8010_0000;

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

/// The QEMU binary, or `None` (with a loud message) when it is not installed.
/// Panics under CI, where `.ci/run` must have installed it.
pub fn qemu() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join("qemu-system-riscv64"))
            .find(|p| p.is_file())
    });
    match found {
        Some(p) => Some(p),
        None => {
            if std::env::var_os("CI").is_some() {
                panic!(
                    "qemu-system-riscv64 not found, but CI is set: .ci/run must install qemu-system-misc"
                );
            }
            eprintln!();
            eprintln!(
                "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
            );
            eprintln!(
                "!!! SKIPPED: qemu-system-riscv64 is not installed; the QEMU cross-check did  !!!"
            );
            eprintln!(
                "!!! not run. Install it: apt-get install qemu-system-misc                    !!!"
            );
            eprintln!(
                "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!"
            );
            None
        }
    }
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
pub fn run_with_limit(mut cmd: Command, limit: Duration) -> RunOut {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = (&mut out).take(16 << 20).read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = (&mut err).take(16 << 20).read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let mut timed_out = false;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if start.elapsed() > limit {
            timed_out = true;
            let _ = child.kill();
            break child.wait().expect("wait");
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    RunOut {
        stdout: t_out.join().unwrap(),
        stderr: t_err.join().unwrap(),
        code: status.code(),
        timed_out,
    }
}

/// QEMU arguments that write the parameter block: one `-device loader` per slot.
pub fn qemu_param_args(params: &[(usize, u64)]) -> Vec<String> {
    let mut v = Vec::new();
    for &(slot, value) in params {
        v.push("-device".to_string());
        v.push(format!(
            "loader,addr={:#x},data={:#x},data-len=8",
            PARAM_BLOCK + 8 * slot as u64,
            value
        ));
    }
    v
}

/// Run `elf` on QEMU 7.2 (`-machine virt -bios none -nographic`), with extra
/// arguments (e.g. `-icount shift=3,sleep=off`) and parameter-block slots.
pub fn run_qemu(
    qemu: &Path,
    elf: &Path,
    extra: &[&str],
    params: &[(usize, u64)],
    limit: Duration,
) -> RunOut {
    let mut cmd = Command::new(qemu);
    cmd.args([
        "-machine",
        "virt",
        "-bios",
        "none",
        "-nographic",
        "-monitor",
        "none",
        "-serial",
        "stdio",
    ])
    .arg("-kernel")
    .arg(elf)
    .args(extra)
    .args(qemu_param_args(params));
    run_with_limit(cmd, limit)
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
