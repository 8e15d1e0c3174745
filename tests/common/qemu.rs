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
//! Every run names the hart on both sides: `-cpu rv64,c=…,zba=…,zbb=…,zbs=…`
//! for QEMU and `--cpu` with the same value for vcpulab.

use super::asm::Isa;
use super::{RunOut, qemu_param_args, run_vcpulab, run_with_limit};
use libtest_mimic::{Completion, Failed, Trial};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// One QEMU version the tests know.
#[derive(Debug)]
pub struct Version {
    /// "10.0".
    pub label: &'static str,
    /// What `--version` must report: "10.0." (so 10.0.x).
    pub prefix: &'static str,
    /// Variable naming the binary.
    pub var: &'static str,
    /// Binary used when the variable is unset (looked up in PATH).
    pub default_bin: &'static str,
    /// Variable that skips this QEMU's cross-checks.
    pub skip_var: &'static str,
    /// vcpulab's `--compat` value for it.
    pub compat: &'static str,
    /// Suffix of the test names (`hello::qemu_10_0`).
    pub tag: &'static str,
}

/// QEMU 10.0 (the default reference).
pub static QEMU_10_0: Version = Version {
    label: "10.0",
    prefix: "10.0.",
    var: "VCPULAB_QEMU_10_0",
    default_bin: "qemu-system-riscv64-10.0",
    skip_var: "VCPULAB_SKIP_QEMU_10_0",
    compat: "qemu-10.0",
    tag: "qemu_10_0",
};

/// QEMU 7.2 (Debian 12's).
pub static QEMU_7_2: Version = Version {
    label: "7.2",
    prefix: "7.2.",
    var: "VCPULAB_QEMU_7_2",
    default_bin: "qemu-system-riscv64",
    skip_var: "VCPULAB_SKIP_QEMU_7_2",
    compat: "qemu-7.2",
    tag: "qemu_7_2",
};

/// A named check to run against each QEMU (the entries of a test's list).
pub type Check = (&'static str, fn(&Qemu));

/// Both, the default first.
pub static VERSIONS: [&Version; 2] = [&QEMU_10_0, &QEMU_7_2];

/// A checked QEMU binary.
#[derive(Clone, Debug)]
pub struct Qemu {
    /// Which version it is.
    pub version: &'static Version,
    /// The binary.
    pub bin: PathBuf,
    /// The first line of its `--version`.
    pub version_line: String,
}

/// Why a QEMU cannot be used.
#[derive(Clone, Debug)]
pub enum Unavailable {
    /// The user skipped it explicitly.
    Skipped(String),
    /// Missing or wrong: the cross-checks fail with this message.
    Broken(String),
}

fn skip_set(var: &str) -> bool {
    std::env::var(var).is_ok_and(|v| !v.is_empty() && v != "0")
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    if name.contains('/') {
        let p = PathBuf::from(name);
        return p.is_file().then_some(p);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    })
}

impl Version {
    fn install_hint(&self) -> String {
        format!(
            "install it with `sudo scripts/install-qemu` (QEMU 7.2 from Debian's qemu-system-misc, \
             QEMU 10.0 from bookworm-backports as qemu-system-riscv64-10.0), point {var} at a \
             QEMU {label} binary, or set {skip}=1 to skip the QEMU {label} cross-checks",
            var = self.var,
            label = self.label,
            skip = self.skip_var
        )
    }

    fn check(&'static self) -> Result<Qemu, Unavailable> {
        if skip_set(self.skip_var) {
            return Err(Unavailable::Skipped(format!(
                "QEMU {} cross-check skipped: {} is set",
                self.label, self.skip_var
            )));
        }
        let (name, from) = match std::env::var(self.var) {
            Ok(v) if !v.is_empty() => (v.clone(), format!("{}={}", self.var, v)),
            _ => (
                self.default_bin.to_string(),
                format!("{} (default of {})", self.default_bin, self.var),
            ),
        };
        let Some(bin) = find_in_path(&name) else {
            return Err(Unavailable::Broken(format!(
                "QEMU {} not found: {from}: no such executable (a bare name is looked up in PATH); {}",
                self.label,
                self.install_hint()
            )));
        };
        let mut cmd = Command::new(&bin);
        cmd.arg("--version");
        let out = run_with_limit(cmd, Duration::from_secs(30));
        let text = out.text();
        let line = text.lines().next().unwrap_or("").to_string();
        let version = line
            .split_whitespace()
            .skip_while(|w| *w != "version")
            .nth(1)
            .unwrap_or("");
        if out.code != Some(0) || !version.starts_with(self.prefix) {
            return Err(Unavailable::Broken(format!(
                "{from} ({}) is not QEMU {}.x: `--version` said {:?} (exit {:?}); {}",
                bin.display(),
                self.label,
                line,
                out.code,
                self.install_hint()
            )));
        }
        Ok(Qemu {
            version: self,
            bin,
            version_line: line,
        })
    }

    /// The checked binary (checked once per test process).
    pub fn resolve(&'static self) -> Result<Qemu, Unavailable> {
        static CACHE: [OnceLock<Result<Qemu, Unavailable>>; 2] = [OnceLock::new(), OnceLock::new()];
        let slot = if std::ptr::eq(self, &QEMU_10_0) { 0 } else { 1 };
        CACHE[slot].get_or_init(|| self.check()).clone()
    }
}

/// QEMU's machine arguments (before `-kernel`).
const MACHINE: [&str; 10] = [
    "-machine",
    "virt",
    "-bios",
    "none",
    "-nographic",
    "-monitor",
    "none",
    "-serial",
    "stdio",
    "-cpu",
];

impl Qemu {
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
        let mut cmd = Command::new(&self.bin);
        cmd.args(MACHINE)
            .arg(isa.cpu())
            .arg("-kernel")
            .arg(elf)
            .args(extra)
            .args(qemu_param_args(params));
        run_with_limit(cmd, limit)
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
        let mut args = vec!["--compat", self.version.compat, "--cpu", cpu.as_str()];
        args.extend_from_slice(extra);
        run_vcpulab(elf, &args, params, limit)
    }

    /// The two command lines, for "reproduce by hand" in reports.
    pub fn by_hand(&self, elf: &Path, isa: Isa, qemu_extra: &str, vcpulab_extra: &str) -> String {
        format!(
            "{} {} {} -kernel {elf} {qemu_extra}\n  vcpulab run --compat {} --cpu {} {vcpulab_extra} --kernel {elf}",
            self.bin.display(),
            MACHINE.join(" "),
            isa.cpu(),
            self.version.compat,
            isa.cpu(),
            elf = elf.display()
        )
    }
}

/// A test named `NAME::qemu_10_0` (or `…::qemu_7_2`) that runs `f` against
/// that QEMU: ignored at run time when the QEMU is skipped, failed when it is
/// missing or the wrong version, failed when `f` panics.
pub fn trial<F>(name: &str, v: &'static Version, f: F) -> Trial
where
    F: FnOnce(&Qemu) + Send + 'static,
{
    Trial::ignorable_test(format!("{name}::{}", v.tag), move || match v.resolve() {
        Ok(q) => {
            f(&q);
            Ok(Completion::Completed)
        }
        Err(Unavailable::Skipped(why)) => Ok(Completion::ignored_with(why)),
        Err(Unavailable::Broken(why)) => Err(Failed::from(why)),
    })
}

/// [`trial`] against each QEMU.
pub fn trials<F>(name: &str, f: F) -> Vec<Trial>
where
    F: Fn(&Qemu) + Send + Sync + Clone + 'static,
{
    VERSIONS
        .iter()
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
