//! The two reference QEMUs every differential test runs against.
//!
//! | QEMU | binary from | default | skip with | vcpulab gets |
//! |---|---|---|---|---|
//! | 10.0.x | `VCPULAB_QEMU_10_0` | `qemu-system-riscv64-10.0` | `VCPULAB_SKIP_QEMU_10_0=1` | `--compat qemu-10.0` |
//! | 7.2.x | `VCPULAB_QEMU_7_2` | `qemu-system-riscv64` | `VCPULAB_SKIP_QEMU_7_2=1` | `--compat qemu-7.2` |
//!
//! Before first use each binary is asked for `--version`, which must really
//! be 10.0.x (7.2.x); a wrong one fails naming the variable. A missing QEMU
//! fails its cross-checks with a message that says how to install it
//! (`scripts/install-qemu`), unless its skip variable is set: then they are
//! reported as *ignored* by the test harness (libtest-mimic), never as `ok`.
//!
//! Every run names the hart on both sides: `--cpu rv64,c=…,zba=…,zbb=…,zbs=…`
//! for vcpulab and the same hart as QEMU's `-cpu rv64,c=true|false,…`.
//!
//! The version table, the binary's resolution and check, the QEMU command
//! line and the run with a time limit are the library's (`src/qemu.rs`,
//! `vcpulab::qemu`); this file adds the test names, the once-per-process
//! check and the libtest-mimic trials.

use super::asm::Isa;
use super::{RunOut, run_vcpulab};
use libtest_mimic::{Completion, Failed, Trial};
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;
pub use vcpulab::qemu::QemuVersion;
use vcpulab::qemu::{QemuGuestRun, Unavailable};

/// A named check to run against each QEMU (the entries of a test's list).
pub type Check = (&'static str, fn(&Qemu));

/// Suffix of the test names (`hello::qemu_10_0`).
pub fn tag(v: QemuVersion) -> &'static str {
    match v {
        QemuVersion::V10_0 => "qemu_10_0",
        QemuVersion::V7_2 => "qemu_7_2",
    }
}

/// A checked QEMU binary (the library's, see `src/qemu.rs`), with the
/// helpers the tests use.
#[derive(Clone, Debug)]
pub struct Qemu(pub vcpulab::qemu::Qemu);

impl std::ops::Deref for Qemu {
    type Target = vcpulab::qemu::Qemu;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// The checked binary of `v` (checked once per test process).
pub fn resolve(v: QemuVersion) -> Result<Qemu, Unavailable> {
    static CACHE: [OnceLock<Result<Qemu, Unavailable>>; 2] = [OnceLock::new(), OnceLock::new()];
    let slot = QemuVersion::ALL.iter().position(|&x| x == v).unwrap();
    CACHE[slot].get_or_init(|| v.resolve().map(Qemu)).clone()
}

impl Qemu {
    /// The QEMU arguments of a run of `elf` on hart `isa` (`-cpu`) with
    /// extra QEMU arguments (e.g. `-icount shift=3,sleep=off`) and
    /// parameter-block slots.
    pub fn args(
        &self,
        elf: &Path,
        isa: Isa,
        extra: &[&str],
        params: &[(usize, u64)],
    ) -> Vec<String> {
        let run = QemuGuestRun::new(elf)
            .cpu(isa.cpu())
            .params(params)
            .extra(extra);
        self.guest_args(&run)
            .unwrap_or_else(|e| panic!("QEMU arguments of {}: {e}", elf.display()))
    }

    /// Run `elf` on this QEMU (`-machine virt -bios none -nographic -cpu
    /// ISA`), with extra arguments (e.g. `-icount shift=3,sleep=off`) and
    /// parameter-block slots.
    pub fn run(
        &self,
        elf: &Path,
        isa: Isa,
        extra: &[&str],
        params: &[(usize, u64)],
        limit: Duration,
    ) -> RunOut {
        let o = self
            .0
            .run(&self.args(elf, isa, extra, params), limit)
            .expect("spawn");
        RunOut {
            code: o.code(),
            stdout: o.stdout,
            stderr: o.stderr,
            timed_out: o.timed_out,
        }
    }

    /// Run `elf` on vcpulab as this QEMU's counterpart: `--compat` and
    /// `--cpu ISA` first, then `extra`.
    pub fn vcpulab(
        &self,
        elf: &Path,
        isa: Isa,
        extra: &[&str],
        params: &[(usize, u64)],
        limit: Duration,
    ) -> RunOut {
        let cpu = isa.cpu();
        let mut args = vec!["--compat", self.version.name(), "--cpu", cpu.as_str()];
        args.extend_from_slice(extra);
        run_vcpulab(elf, &args, params, limit)
    }

    /// The two command lines, for "reproduce by hand" in reports.
    pub fn by_hand(&self, elf: &Path, isa: Isa, qemu_extra: &str, vcpulab_extra: &str) -> String {
        format!(
            "{} {qemu_extra}\n  vcpulab run --compat {} --cpu {} {vcpulab_extra} --kernel {elf}",
            self.command_line(&self.args(elf, isa, &[], &[])),
            self.version.name(),
            isa.cpu(),
            elf = elf.display()
        )
    }
}

/// A test named `NAME::qemu_10_0` (or `…::qemu_7_2`) that runs `f` against
/// that QEMU: ignored at run time when the QEMU is skipped, failed when it is
/// missing or the wrong version, failed when `f` panics.
pub fn trial<F>(name: &str, v: QemuVersion, f: F) -> Trial
where
    F: FnOnce(&Qemu) + Send + 'static,
{
    Trial::ignorable_test(format!("{name}::{}", tag(v)), move || match resolve(v) {
        Ok(q) => {
            f(&q);
            Ok(Completion::Completed)
        }
        Err(e) if e.is_skipped() => Ok(Completion::ignored_with(e.to_string())),
        Err(e) => Err(Failed::from(e.to_string())),
    })
}

/// [`trial`] against each QEMU.
pub fn trials<F>(name: &str, f: F) -> Vec<Trial>
where
    F: Fn(&Qemu) + Send + Sync + Clone + 'static,
{
    QemuVersion::ALL
        .into_iter()
        .map(|v| {
            let f = f.clone();
            trial(name, v, move |q| f(q))
        })
        .collect()
}

/// Run the trials with the command-line arguments of the test binary
/// (filters, `--list`, `--ignored`, `--test-threads`, …) and exit; without
/// `--test-threads`, `threads` trials at a time (the random tests run two
/// workers each: one trial at a time keeps the two cores busy).
pub fn main(trials: Vec<Trial>, threads: usize) -> ! {
    let mut args = libtest_mimic::Arguments::from_args();
    if args.test_threads.is_none() {
        args.test_threads = Some(threads);
    }
    libtest_mimic::run(&args, trials).exit()
}
