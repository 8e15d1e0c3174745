//! The reference QEMUs: finding them, translating a vcpulab run into QEMU's
//! command line, and running a guest on them with a time limit.
//!
//! One runner for the differential tests (`tests/common/qemu.rs`), the
//! benches (`benches/common/mod.rs`) and the experiment runner.
//!
//! | QEMU | binary from | default | skip with | `--compat` |
//! |---|---|---|---|---|
//! | 10.0.x | `VCPULAB_QEMU_10_0` | `qemu-system-riscv64-10.0` | `VCPULAB_SKIP_QEMU_10_0=1` | `qemu-10.0` |
//! | 7.2.x | `VCPULAB_QEMU_7_2` | `qemu-system-riscv64` | `VCPULAB_SKIP_QEMU_7_2=1` | `qemu-7.2` |
//!
//! [`QemuVersion::resolve`] finds the binary (a bare name is looked up in
//! `PATH`) and asks it for `--version`, which must really be 10.0.x (7.2.x).
//!
//! [`QemuGuestRun`] describes a run in vcpulab's own option spellings
//! (`--smp`, `-m`, `--param`, `--icount`, `--accel`, `--cpu`) and
//! [`QemuGuestRun::args`] turns it into QEMU's arguments, refusing what QEMU
//! has no equivalent for:
//!
//! | vcpulab | QEMU |
//! |---|---|
//! | (always) | `-machine virt -bios none -nographic -monitor none -serial stdio` |
//! | `--cpu rv64,c=off` | `-cpu rv64,c=false,zba=true,zbb=true,zbs=true` (every extension named) |
//! | `--kernel F` | `-kernel F` |
//! | `--smp S`, `-m M` | `-smp S`, `-m M` (the same syntax) |
//! | `--icount shift=N\|auto,sleep=…,align=…` | `-icount` with the same keys |
//! | `--icount …,smp=rr` | dropped: QEMU's only mode |
//! | `--icount …,smp=global\|local`, `quantum=` | refused: no QEMU equivalent |
//! | `--accel tcg,thread=single\|multi` | `-accel tcg,thread=…` |
//! | `--accel …,rr-turn=split\|whole` | dropped when it is the version's own (10.0 split, 7.2 whole), refused otherwise |
//! | `--param SLOT=V` | `-device loader,addr=0x80100000+8·SLOT,data=V,data-len=8` |
//!
//! The vcpulab options that mean nothing to QEMU are in [`NOT_FOR_QEMU`].

use crate::config::{
    AccelConfig, Compat, CpuConfig, IcountConfig, IcountSmp, RrTurn, parse_size, parse_smp,
};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Guest address of parameter slot 0 (`guests/link.ld`); slot `i` is at `+ 8·i`.
pub const PARAM_BLOCK: u64 = 0x8010_0000;

/// Captured stdout and stderr of a [`Qemu::run`] are each cut at this many
/// bytes (the rest is read and discarded), so that a runaway guest can fill
/// neither memory nor the pipe.
pub const CAPTURE_LIMIT: usize = 16 << 20;

/// How long `--version` may take before the binary counts as unusable.
const VERSION_LIMIT: Duration = Duration::from_secs(30);

/// The arguments every run starts with: the `virt` board without firmware,
/// no display, no monitor, the UART on stdio.
pub const MACHINE_ARGS: [&str; 9] = [
    "-machine",
    "virt",
    "-bios",
    "none",
    "-nographic",
    "-monitor",
    "none",
    "-serial",
    "stdio",
];

/// The options of `vcpulab run` (without the dashes) that have no meaning
/// for QEMU: a comparison shows them as "n/a" on the QEMU side.
pub const NOT_FOR_QEMU: &[&str] = &[
    "bql",
    "bql-lock",
    "bql-hold-sample",
    "kick",
    "icount-timers",
    "iothread-timer",
    "timer-slack",
    "compat",
    "trace",
    "trace-events",
    "monitor",
    "stats",
    "hist-log",
];

/// One of the QEMU versions vcpulab is checked against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QemuVersion {
    /// QEMU 10.0 (Debian 13, bookworm-backports; the default reference).
    V10_0,
    /// QEMU 7.2 (Debian 12).
    V7_2,
}

/// A name that is not one of [`QemuVersion::ALL`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid QEMU version '{0}': expected qemu-10.0 or qemu-7.2")]
pub struct UnknownVersion(pub String);

impl QemuVersion {
    /// Both, the default reference first.
    pub const ALL: [QemuVersion; 2] = [QemuVersion::V10_0, QemuVersion::V7_2];

    /// The name, as `--compat` spells it: `qemu-10.0`, `qemu-7.2`.
    pub const fn name(self) -> &'static str {
        match self {
            QemuVersion::V10_0 => "qemu-10.0",
            QemuVersion::V7_2 => "qemu-7.2",
        }
    }

    /// The bare version: `10.0`, `7.2`.
    pub const fn label(self) -> &'static str {
        match self {
            QemuVersion::V10_0 => "10.0",
            QemuVersion::V7_2 => "7.2",
        }
    }

    /// Parse a [`name`](Self::name) (`qemu-10.0`, `qemu-7.2`).
    pub fn parse(s: &str) -> Result<QemuVersion, UnknownVersion> {
        QemuVersion::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| UnknownVersion(s.to_string()))
    }

    /// The environment variable naming the binary: `VCPULAB_QEMU_10_0`.
    pub const fn bin_var(self) -> &'static str {
        match self {
            QemuVersion::V10_0 => "VCPULAB_QEMU_10_0",
            QemuVersion::V7_2 => "VCPULAB_QEMU_7_2",
        }
    }

    /// The environment variable that skips this QEMU: `VCPULAB_SKIP_QEMU_10_0`.
    pub const fn skip_var(self) -> &'static str {
        match self {
            QemuVersion::V10_0 => "VCPULAB_SKIP_QEMU_10_0",
            QemuVersion::V7_2 => "VCPULAB_SKIP_QEMU_7_2",
        }
    }

    /// The binary used when [`bin_var`](Self::bin_var) is unset, looked up
    /// in `PATH` (the names `scripts/install-qemu` installs).
    pub const fn default_bin(self) -> &'static str {
        match self {
            QemuVersion::V10_0 => "qemu-system-riscv64-10.0",
            QemuVersion::V7_2 => "qemu-system-riscv64",
        }
    }

    /// What the version number in the first line of `--version` must start
    /// with: `10.0.` (so 10.0.x).
    pub const fn version_prefix(self) -> &'static str {
        match self {
            QemuVersion::V10_0 => "10.0.",
            QemuVersion::V7_2 => "7.2.",
        }
    }

    /// vcpulab's `--compat` for this QEMU.
    pub const fn compat(self) -> Compat {
        match self {
            QemuVersion::V10_0 => Compat::Qemu10_0,
            QemuVersion::V7_2 => Compat::Qemu7_2,
        }
    }

    /// The round-robin turn this QEMU gives a vCPU under icount (QEMU has
    /// no option for it: 8.1 and later split the budget, 7.2 does not).
    pub const fn rr_turn(self) -> RrTurn {
        match self {
            QemuVersion::V10_0 => RrTurn::Split,
            QemuVersion::V7_2 => RrTurn::Whole,
        }
    }

    /// How to get this QEMU, or to skip it (the end of every
    /// [`Unavailable`] message but the skip).
    pub fn install_hint(self) -> String {
        format!(
            "install it with `sudo scripts/install-qemu` (QEMU 7.2 from Debian's qemu-system-misc, \
             QEMU 10.0 from bookworm-backports as qemu-system-riscv64-10.0), point {var} at a \
             QEMU {label} binary, or set {skip}=1 to skip the QEMU {label} cross-checks",
            var = self.bin_var(),
            label = self.label(),
            skip = self.skip_var()
        )
    }

    /// Find and check this QEMU: skipped when [`skip_var`](Self::skip_var)
    /// is set (to anything but empty or `0`); otherwise the binary named by
    /// [`bin_var`](Self::bin_var), or [`default_bin`](Self::default_bin),
    /// must exist (a name without `/` is looked up in `PATH`) and say it is
    /// this version in `--version`. Runs the binary each time it is called.
    pub fn resolve(self) -> Result<Qemu, Unavailable> {
        let skip = self.skip_var();
        if std::env::var(skip).is_ok_and(|v| !v.is_empty() && v != "0") {
            return Err(Unavailable::Skipped {
                version: self,
                var: skip,
            });
        }
        let (name, from) = match std::env::var(self.bin_var()) {
            Ok(v) if !v.is_empty() => (v.clone(), format!("{}={}", self.bin_var(), v)),
            _ => (
                self.default_bin().to_string(),
                format!("{} (default of {})", self.default_bin(), self.bin_var()),
            ),
        };
        let Some(bin) = find_executable(&name) else {
            return Err(Unavailable::NotFound {
                version: self,
                from,
            });
        };
        let wrong = |said: String, code: Option<i32>| Unavailable::WrongVersion {
            version: self,
            from: from.clone(),
            bin: bin.clone(),
            said,
            code,
        };
        let mut cmd = Command::new(&bin);
        cmd.arg("--version").stdin(Stdio::null());
        let out = run_limited(cmd, VERSION_LIMIT).map_err(|e| wrong(format!("({e})"), None))?;
        let line = String::from_utf8_lossy(&out.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        let number = line
            .split_whitespace()
            .skip_while(|w| *w != "version")
            .nth(1)
            .unwrap_or("");
        if out.code() != Some(0) || !number.starts_with(self.version_prefix()) {
            return Err(wrong(line, out.code()));
        }
        Ok(Qemu {
            version: self,
            bin,
            version_string: line,
        })
    }
}

impl std::fmt::Display for QemuVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// `name` if it contains a `/` and is a file, else the first `PATH` entry
/// holding a file of that name.
fn find_executable(name: &str) -> Option<PathBuf> {
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

/// Why a QEMU cannot be used. The messages are those the differential
/// tests print.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Unavailable {
    /// Its skip variable is set: its cross-checks are reported as ignored.
    #[error("QEMU {} cross-check skipped: {var} is set", version.label())]
    Skipped {
        /// Which QEMU.
        version: QemuVersion,
        /// The variable that is set.
        var: &'static str,
    },
    /// No such executable.
    #[error(
        "QEMU {} not found: {from}: no such executable (a bare name is looked up in PATH); {}",
        version.label(),
        version.install_hint()
    )]
    NotFound {
        /// Which QEMU.
        version: QemuVersion,
        /// Where the name came from: `VAR=VALUE`, or the default and its variable.
        from: String,
    },
    /// The executable is not that version (or does not run).
    #[error(
        "{from} ({}) is not QEMU {}.x: `--version` said {said:?} (exit {code:?}); {}",
        bin.display(),
        version.label(),
        version.install_hint()
    )]
    WrongVersion {
        /// Which QEMU was wanted.
        version: QemuVersion,
        /// Where the name came from.
        from: String,
        /// The executable found.
        bin: PathBuf,
        /// The first line of its `--version` (or why it could not run).
        said: String,
        /// Its exit code (`None`: killed, or it did not start).
        code: Option<i32>,
    },
}

impl Unavailable {
    /// Whether the user asked for this QEMU to be skipped (rather than it
    /// being missing or wrong, which fails a cross-check).
    pub fn is_skipped(&self) -> bool {
        matches!(self, Unavailable::Skipped { .. })
    }
}

/// A checked QEMU binary ([`QemuVersion::resolve`]).
#[derive(Clone, Debug)]
pub struct Qemu {
    /// Which version it is.
    pub version: QemuVersion,
    /// The binary.
    pub bin: PathBuf,
    /// The first line of its `--version`.
    pub version_string: String,
}

/// A vcpulab run option QEMU cannot reproduce, or a malformed one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QemuArgError {
    /// The value is not valid for vcpulab either (the message is
    /// `vcpulab run`'s).
    #[error("{0}")]
    Invalid(String),
    /// Valid for vcpulab, but QEMU has no equivalent.
    #[error("{0}")]
    NoEquivalent(String),
}

/// A guest run described in vcpulab's option spellings, to be run on QEMU
/// ([`args`](Self::args) translates it; see the table in the module docs).
/// `None` leaves QEMU's default, which is vcpulab's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QemuGuestRun {
    /// The guest ELF (`--kernel`).
    pub kernel: PathBuf,
    /// `--smp`: QEMU's `-smp` syntax, passed on as it is.
    pub smp: Option<String>,
    /// `-m`/`--memory`: QEMU's `-m` syntax, passed on as it is.
    pub memory: Option<String>,
    /// `--param SLOT=VALUE`: parameter-block slots.
    pub params: Vec<(usize, u64)>,
    /// `--icount OPTS` in vcpulab's syntax.
    pub icount: Option<String>,
    /// `--accel OPTS` in vcpulab's syntax.
    pub accel: Option<String>,
    /// `--cpu MODEL[,EXT=on|off]...` (the QEMU side always names every
    /// extension).
    pub cpu: Option<String>,
    /// Further QEMU arguments, appended as they are (e.g. `-name
    /// x,debug-threads=on`; or QEMU-spelled `-icount`/`-accel` of callers that
    /// pass them raw).
    pub extra: Vec<String>,
}

impl QemuGuestRun {
    /// A run of `kernel` with every option at its default.
    pub fn new(kernel: impl Into<PathBuf>) -> QemuGuestRun {
        QemuGuestRun {
            kernel: kernel.into(),
            ..QemuGuestRun::default()
        }
    }

    /// With `--smp`.
    pub fn smp(mut self, smp: impl Into<String>) -> Self {
        self.smp = Some(smp.into());
        self
    }

    /// With `-m`.
    pub fn memory(mut self, memory: impl Into<String>) -> Self {
        self.memory = Some(memory.into());
        self
    }

    /// With these parameter-block slots.
    pub fn params(mut self, params: &[(usize, u64)]) -> Self {
        self.params = params.to_vec();
        self
    }

    /// With `--icount` (vcpulab's syntax).
    pub fn icount(mut self, icount: impl Into<String>) -> Self {
        self.icount = Some(icount.into());
        self
    }

    /// With `--accel` (vcpulab's syntax).
    pub fn accel(mut self, accel: impl Into<String>) -> Self {
        self.accel = Some(accel.into());
        self
    }

    /// With `--cpu`.
    pub fn cpu(mut self, cpu: impl Into<String>) -> Self {
        self.cpu = Some(cpu.into());
        self
    }

    /// With further raw QEMU arguments.
    pub fn extra<S: AsRef<str>>(mut self, extra: &[S]) -> Self {
        self.extra
            .extend(extra.iter().map(|s| s.as_ref().to_string()));
        self
    }

    /// QEMU's arguments (without the program) for this run on `version`:
    /// [`MACHINE_ARGS`], `-cpu`, `-kernel`, `-smp`, `-m`, `-icount`,
    /// `-accel`, the parameter loaders, then [`extra`](Self::extra).
    pub fn args(&self, version: QemuVersion) -> Result<Vec<String>, QemuArgError> {
        let invalid = |e: crate::config::ConfigError| QemuArgError::Invalid(e.to_string());
        let mut a: Vec<String> = MACHINE_ARGS.iter().map(|s| s.to_string()).collect();
        if let Some(cpu) = &self.cpu {
            a.push("-cpu".into());
            a.push(CpuConfig::parse(cpu).map_err(invalid)?.qemu_arg());
        }
        a.push("-kernel".into());
        a.push(self.kernel.display().to_string());
        if let Some(smp) = &self.smp {
            parse_smp(smp).map_err(invalid)?;
            a.push("-smp".into());
            a.push(smp.clone());
        }
        if let Some(m) = &self.memory {
            parse_size(m).map_err(|e| QemuArgError::Invalid(format!("--memory: {e}")))?;
            a.push("-m".into());
            a.push(m.clone());
        }
        let icount_smp = match &self.icount {
            Some(ic) => {
                let (opts, smp) = qemu_icount(ic)?;
                a.push("-icount".into());
                a.push(opts);
                Some(smp)
            }
            None => None,
        };
        if let Some(accel) = &self.accel {
            a.push("-accel".into());
            a.push(qemu_accel(accel, icount_smp, version)?);
        }
        a.extend(param_args(&self.params));
        a.extend(self.extra.iter().cloned());
        Ok(a)
    }
}

/// vcpulab's `--icount` value as QEMU's `-icount` value, with the SMP mode
/// it asks for (always [`IcountSmp::Rr`] when it succeeds).
pub fn qemu_icount(s: &str) -> Result<(String, IcountSmp), QemuArgError> {
    let cfg = IcountConfig::parse(s).map_err(|e| QemuArgError::Invalid(e.to_string()))?;
    let mut out: Vec<String> = Vec::new();
    for (n, part) in s.split(',').enumerate() {
        let (k, v) = match part.split_once('=') {
            Some(kv) => kv,
            // The parse accepted it: a bare first item is the shift.
            None if n == 0 => ("shift", part),
            None => unreachable!("IcountConfig::parse refuses '{part}'"),
        };
        match (k, v) {
            ("shift" | "sleep" | "align", _) => out.push(format!("{k}={v}")),
            ("smp", "rr") => {}
            ("smp", _) => {
                return Err(QemuArgError::NoEquivalent(format!(
                    "--icount smp={v} has no QEMU equivalent: QEMU's icount runs every vCPU on one round-robin thread (smp=rr)"
                )));
            }
            ("quantum", _) => {
                return Err(QemuArgError::NoEquivalent(format!(
                    "--icount quantum={v} has no QEMU equivalent (QEMU's icount has one clock, smp=rr)"
                )));
            }
            _ => unreachable!("IcountConfig::parse refuses the key '{k}'"),
        }
    }
    Ok((out.join(","), cfg.smp))
}

/// vcpulab's `--accel` value as QEMU's `-accel` value on `version`, with
/// `icount` the SMP mode of `--icount` (`None` without icount). `thread=`
/// passes; `rr-turn=` is dropped when it is what `version` does by itself
/// ([`QemuVersion::rr_turn`]) and refused otherwise.
pub fn qemu_accel(
    s: &str,
    icount: Option<IcountSmp>,
    version: QemuVersion,
) -> Result<String, QemuArgError> {
    let cfg = AccelConfig::parse(Some(s), icount, version.compat())
        .map_err(|e| QemuArgError::Invalid(e.to_string()))?;
    if cfg.rr_turn != version.rr_turn() {
        let turn = |t: RrTurn| match t {
            RrTurn::Split => "split",
            RrTurn::Whole => "whole",
        };
        return Err(QemuArgError::NoEquivalent(format!(
            "--accel rr-turn={} has no QEMU {} equivalent: its round-robin turn is always rr-turn={} (QEMU 10.0: split, QEMU 7.2: whole)",
            turn(cfg.rr_turn),
            version.label(),
            turn(version.rr_turn())
        )));
    }
    let mut out = String::from("tcg");
    for kv in s.split(',').skip(1) {
        if kv.starts_with("thread=") {
            out.push(',');
            out.push_str(kv);
        }
    }
    Ok(out)
}

/// `-device loader,…` arguments that fill parameter-block slots (the
/// guests' `param(slot)`), one 8-byte store per slot.
pub fn param_args(params: &[(usize, u64)]) -> Vec<String> {
    params
        .iter()
        .flat_map(|&(slot, value)| {
            [
                "-device".to_string(),
                format!(
                    "loader,addr={:#x},data={value},data-len=8",
                    PARAM_BLOCK + 8 * slot as u64
                ),
            ]
        })
        .collect()
}

/// What one QEMU run did ([`Qemu::run`]).
#[derive(Clone, Debug)]
pub struct QemuOutcome {
    /// How it ended (a signal when the limit killed it).
    pub status: ExitStatus,
    /// What the guest wrote to the UART (at most [`CAPTURE_LIMIT`] bytes).
    pub stdout: Vec<u8>,
    /// QEMU's diagnostics (at most [`CAPTURE_LIMIT`] bytes).
    pub stderr: Vec<u8>,
    /// Spawn to exit.
    pub wall: Duration,
    /// Whether the limit killed it.
    pub timed_out: bool,
}

impl QemuOutcome {
    /// The exit code (`None` when a signal ended it).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

impl Qemu {
    /// The command for QEMU arguments `args` (from [`QemuGuestRun::args`]),
    /// stdin from `/dev/null`.
    pub fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args).stdin(Stdio::null());
        cmd
    }

    /// [`QemuGuestRun::args`] for this QEMU's version.
    pub fn guest_args(&self, run: &QemuGuestRun) -> Result<Vec<String>, QemuArgError> {
        run.args(self.version)
    }

    /// Run QEMU with `args` (from [`QemuGuestRun::args`]), capturing stdout
    /// and stderr, and kill it once `limit` has passed: QEMU never exits by
    /// itself when the guest hangs.
    pub fn run<S: AsRef<std::ffi::OsStr>>(
        &self,
        args: &[S],
        limit: Duration,
    ) -> io::Result<QemuOutcome> {
        run_limited(self.command(args), limit)
    }

    /// The command line for reports ("reproduce by hand").
    pub fn command_line(&self, args: &[String]) -> String {
        format!("{} {}", self.bin.display(), args.join(" "))
    }
}

/// Read at most `limit` bytes of `r`, then discard the rest until EOF.
fn read_bounded(mut r: impl Read, limit: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = (&mut r).take(limit as u64).read_to_end(&mut buf);
    let _ = io::copy(&mut r, &mut io::sink());
    buf
}

/// Run `cmd` with stdout and stderr captured (bounded) and kill it once
/// `limit` has passed.
fn run_limited(mut cmd: Command, limit: Duration) -> io::Result<QemuOutcome> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    let out = child.stdout.take().expect("piped stdout");
    let err = child.stderr.take().expect("piped stderr");
    let out = std::thread::spawn(move || read_bounded(out, CAPTURE_LIMIT));
    let err = std::thread::spawn(move || read_bounded(err, CAPTURE_LIMIT));
    let mut timed_out = false;
    let mut nap = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        }
        let left = limit.saturating_sub(start.elapsed());
        if left.is_zero() {
            // Not yet reaped, so `kill` reaches our child (or its zombie).
            let _ = child.kill();
            timed_out = true;
            break child.wait()?;
        }
        std::thread::sleep(nap.min(left));
        nap = (nap * 2).min(Duration::from_millis(10));
    };
    let wall = start.elapsed();
    Ok(QemuOutcome {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
        wall,
        timed_out,
    })
}

/// Run `bin --version` (killed after 30 s) and return the first line of its
/// stdout, for reports that name the QEMU they used without checking it.
pub fn version_string_of(bin: &Path) -> io::Result<String> {
    let mut cmd = Command::new(bin);
    cmd.arg("--version").stdin(Stdio::null());
    let out = run_limited(cmd, VERSION_LIMIT)?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn version_names_parse_back() {
        for v in QemuVersion::ALL {
            assert_eq!(QemuVersion::parse(v.name()), Ok(v));
            assert_eq!(Compat::parse(v.name()).unwrap(), v.compat());
            assert_eq!(v.compat().name(), v.name());
        }
        assert_eq!(QemuVersion::parse("qemu-10.0"), Ok(QemuVersion::V10_0));
        assert_eq!(QemuVersion::parse("qemu-7.2"), Ok(QemuVersion::V7_2));
        let e = QemuVersion::parse("qemu-8.2").unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid QEMU version 'qemu-8.2': expected qemu-10.0 or qemu-7.2"
        );
        assert!(QemuVersion::parse("10.0").is_err());
        assert_eq!(QemuVersion::V10_0.bin_var(), "VCPULAB_QEMU_10_0");
        assert_eq!(QemuVersion::V7_2.skip_var(), "VCPULAB_SKIP_QEMU_7_2");
        assert_eq!(QemuVersion::V7_2.default_bin(), "qemu-system-riscv64");
        assert_eq!(QemuVersion::V10_0.version_prefix(), "10.0.");
    }

    #[test]
    fn plain_run_is_the_reference_command_line() {
        let a = QemuGuestRun::new("g.elf").args(QemuVersion::V10_0).unwrap();
        assert_eq!(
            a,
            s(&[
                "-machine",
                "virt",
                "-bios",
                "none",
                "-nographic",
                "-monitor",
                "none",
                "-serial",
                "stdio",
                "-kernel",
                "g.elf"
            ])
        );
    }

    #[test]
    fn params_become_loader_devices() {
        assert_eq!(
            param_args(&[(0, 10_000_000), (2, u64::MAX)]),
            s(&[
                "-device",
                "loader,addr=0x80100000,data=10000000,data-len=8",
                "-device",
                "loader,addr=0x80100010,data=18446744073709551615,data-len=8",
            ])
        );
        let a = QemuGuestRun::new("g.elf")
            .params(&[(1, 7)])
            .extra(&["-name", "x"])
            .args(QemuVersion::V7_2)
            .unwrap();
        assert_eq!(
            a[a.len() - 4..],
            s(&[
                "-device",
                "loader,addr=0x80100008,data=7,data-len=8",
                "-name",
                "x"
            ])
        );
    }

    #[test]
    fn icount_translation() {
        let ok = |v: &str| qemu_icount(v).map(|(s, _)| s);
        assert_eq!(ok("shift=3,sleep=off").unwrap(), "shift=3,sleep=off");
        assert_eq!(ok("7").unwrap(), "shift=7");
        assert_eq!(ok("shift=auto").unwrap(), "shift=auto");
        assert_eq!(
            ok("shift=2,sleep=on,align=on").unwrap(),
            "shift=2,sleep=on,align=on"
        );
        assert_eq!(ok("shift=0,sleep=off,smp=rr").unwrap(), "shift=0,sleep=off");
        for mode in ["global", "local"] {
            let e = ok(&format!("shift=0,sleep=off,smp={mode}")).unwrap_err();
            assert!(matches!(e, QemuArgError::NoEquivalent(_)), "{e}");
            assert!(e.to_string().contains(&format!("smp={mode}")), "{e}");
            assert!(e.to_string().contains("no QEMU equivalent"), "{e}");
        }
        let e = ok("shift=0,quantum=10us,smp=local").unwrap_err();
        assert!(matches!(e, QemuArgError::NoEquivalent(_)), "{e}");
        assert!(e.to_string().contains("quantum=10us"), "{e}");
        // vcpulab's own refusals come through with its message.
        let e = ok("shift=11").unwrap_err();
        assert_eq!(
            e,
            QemuArgError::Invalid(
                "invalid --icount shift=11: expected 0..=10 or 'auto'".to_string()
            )
        );
        assert!(matches!(ok("sleep=off"), Err(QemuArgError::Invalid(_))));
        let a = QemuGuestRun::new("g.elf")
            .icount("shift=1,sleep=off")
            .args(QemuVersion::V10_0)
            .unwrap();
        assert_eq!(a[a.len() - 2..], s(&["-icount", "shift=1,sleep=off"]));
        let e = QemuGuestRun::new("g.elf")
            .icount("shift=1,smp=global")
            .accel("tcg,thread=multi")
            .args(QemuVersion::V10_0)
            .unwrap_err();
        assert!(matches!(e, QemuArgError::NoEquivalent(_)), "{e}");
    }

    #[test]
    fn accel_translation() {
        let v10 = QemuVersion::V10_0;
        let v72 = QemuVersion::V7_2;
        let rr = Some(IcountSmp::Rr);
        assert_eq!(qemu_accel("tcg", None, v10).unwrap(), "tcg");
        assert_eq!(
            qemu_accel("tcg,thread=multi", None, v10).unwrap(),
            "tcg,thread=multi"
        );
        assert_eq!(
            qemu_accel("tcg,thread=single", rr, v72).unwrap(),
            "tcg,thread=single"
        );
        // rr-turn: the version's own is dropped, the other one refused.
        assert_eq!(
            qemu_accel("tcg,thread=single,rr-turn=split", rr, v10).unwrap(),
            "tcg,thread=single"
        );
        assert_eq!(qemu_accel("tcg,rr-turn=whole", rr, v72).unwrap(), "tcg");
        let e = qemu_accel("tcg,rr-turn=whole", rr, v10).unwrap_err();
        assert!(matches!(e, QemuArgError::NoEquivalent(_)), "{e}");
        assert!(e.to_string().contains("rr-turn=whole"), "{e}");
        assert!(e.to_string().contains("QEMU 10.0"), "{e}");
        assert!(qemu_accel("tcg,rr-turn=split", rr, v72).is_err());
        // MTTCG with icount: refused, as QEMU refuses it.
        assert!(matches!(
            qemu_accel("tcg,thread=multi", rr, v10),
            Err(QemuArgError::Invalid(_))
        ));
        assert!(matches!(
            qemu_accel("kvm", None, v10),
            Err(QemuArgError::Invalid(_))
        ));
        let a = QemuGuestRun::new("g.elf")
            .smp("2")
            .accel("tcg,thread=multi")
            .args(v10)
            .unwrap();
        assert_eq!(
            a[9..],
            s(&[
                "-kernel",
                "g.elf",
                "-smp",
                "2",
                "-accel",
                "tcg,thread=multi"
            ])
        );
    }

    #[test]
    fn cpu_smp_memory_translation() {
        let a = QemuGuestRun::new("g.elf")
            .cpu("rv64,c=off,zba=on,zbb=on,zbs=on")
            .smp("4,sockets=1,cores=4")
            .memory("256M")
            .args(QemuVersion::V10_0)
            .unwrap();
        assert_eq!(
            a[9..],
            s(&[
                "-cpu",
                "rv64,c=false,zba=true,zbb=true,zbs=true",
                "-kernel",
                "g.elf",
                "-smp",
                "4,sockets=1,cores=4",
                "-m",
                "256M"
            ])
        );
        let a = QemuGuestRun::new("g.elf")
            .cpu("rv64,zbb=off")
            .args(QemuVersion::V7_2)
            .unwrap();
        assert_eq!(a[10], "rv64,c=true,zba=true,zbb=false,zbs=true");
        let bad = |r: QemuGuestRun| r.args(QemuVersion::V10_0).unwrap_err();
        assert!(matches!(
            bad(QemuGuestRun::new("g").cpu("rv32")),
            QemuArgError::Invalid(_)
        ));
        assert!(matches!(
            bad(QemuGuestRun::new("g").smp("0")),
            QemuArgError::Invalid(_)
        ));
        assert!(matches!(
            bad(QemuGuestRun::new("g").memory("lots")),
            QemuArgError::Invalid(_)
        ));
    }

    #[test]
    fn not_for_qemu_names_run_options() {
        for o in [
            "bql",
            "kick",
            "compat",
            "stats",
            "hist-log",
            "icount-timers",
        ] {
            assert!(NOT_FOR_QEMU.contains(&o), "{o}");
        }
        // Those QEMU has are translated, not n/a.
        for o in ["smp", "memory", "icount", "accel", "cpu", "kernel", "param"] {
            assert!(!NOT_FOR_QEMU.contains(&o), "{o}");
        }
    }

    fn guest(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("guests/build/{name}.elf"))
    }

    /// Each installed QEMU (a missing one fails, naming how to install it;
    /// a skipped one is left out with a line on stderr).
    fn installed() -> Vec<Qemu> {
        QemuVersion::ALL
            .into_iter()
            .filter_map(|v| match v.resolve() {
                Ok(q) => Some(q),
                Err(e) if e.is_skipped() => {
                    eprintln!("{e}");
                    None
                }
                Err(e) => panic!("{e}"),
            })
            .collect()
    }

    // The two tests below need the QEMUs, so they are #[ignore]d (libtest
    // cannot skip at run time): run them with `--ignored`. The same checks
    // run, skippable per QEMU, in tests/guests_vs_qemu.rs (`qemu_runner`).
    #[test]
    #[ignore = "runs the installed QEMUs (scripts/install-qemu): cargo test --lib qemu -- --ignored"]
    fn real_qemu_runs_hello() {
        for q in installed() {
            let args = q.guest_args(&QemuGuestRun::new(guest("hello"))).unwrap();
            let o = q.run(&args, Duration::from_secs(20)).unwrap();
            assert!(!o.timed_out, "{}: timed out", q.version);
            assert_eq!(o.code(), Some(0), "{}: {:?}", q.version, o);
            assert_eq!(
                String::from_utf8_lossy(&o.stdout),
                "Hello from vcpulab guest\n"
            );
        }
    }

    #[test]
    #[ignore = "runs the installed QEMUs (scripts/install-qemu): cargo test --lib qemu -- --ignored"]
    fn real_qemu_spin_is_cut_by_the_limit() {
        for q in installed() {
            let args = q.guest_args(&QemuGuestRun::new(guest("spin"))).unwrap();
            let limit = Duration::from_millis(500);
            let o = q.run(&args, limit).unwrap();
            assert!(o.timed_out, "{}: spin ended by itself: {:?}", q.version, o);
            assert_eq!(o.code(), None, "{}: killed, so no exit code", q.version);
            assert!(o.wall >= limit, "{}: {:?}", q.version, o.wall);
            assert!(o.wall < limit + Duration::from_secs(5), "{:?}", o.wall);
        }
    }
}
