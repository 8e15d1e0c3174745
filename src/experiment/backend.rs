//! What a configuration runs: `vcpulab run` as a child of the runner, or a
//! QEMU given the same guest, parameters, vCPUs and icount options.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::Parser;

use crate::cli::RunCli;
use crate::config::{AccelConfig, IcountConfig, ThreadMode, parse_smp};
use crate::qemu::{NOT_FOR_QEMU, QemuGuestRun, QemuVersion};

/// Whether a run option means nothing to QEMU (the BQL, kicks, …).
pub fn not_for_qemu(option: &str) -> bool {
    NOT_FOR_QEMU.contains(&option)
}

/// A backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// vcpulab itself.
    Vcpulab,
    /// A QEMU.
    Qemu(QemuVersion),
}

impl Backend {
    /// From its name in an experiment file (`vcpulab`, `qemu-10.0`, `qemu-7.2`).
    pub fn parse(s: &str) -> Option<Backend> {
        match s {
            "vcpulab" => Some(Backend::Vcpulab),
            _ => QemuVersion::parse(s).ok().map(Backend::Qemu),
        }
    }

    /// Its name.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Vcpulab => "vcpulab",
            Backend::Qemu(v) => v.name(),
        }
    }
}

/// The `vcpulab run` arguments (after `run`) of a configuration, without the
/// runner's own (`--stats`, `--hist-log`, `--timeout`).
pub fn vcpulab_args(guest: &Path, options: &BTreeMap<String, String>) -> Vec<String> {
    let mut args = vec!["--kernel".to_string(), guest.display().to_string()];
    for (k, v) in options {
        if k == "backend" || k == "load" || v.is_empty() {
            continue;
        }
        if let Some(p) = k.strip_prefix("param.") {
            args.push("--param".into());
            args.push(format!("{p}={v}"));
        } else {
            args.push(format!("--{k}"));
            args.push(v.clone());
        }
    }
    args
}

/// Checks `vcpulab run ARGS` with `vcpulab run`'s own parser and checks,
/// and returns the host threads it keeps busy (its vCPU threads).
pub fn check_vcpulab(args: &[String]) -> Result<u32, String> {
    let cli = RunCli::try_parse_from(
        std::iter::once("vcpulab run".to_string()).chain(args.iter().cloned()),
    )
    .map_err(|e| {
        // clap's message without its usage block: the first line.
        let text = e.to_string();
        text.lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("error: ")
            .to_string()
    })?;
    let cfg = cli.args.config(Vec::new())?;
    Ok(match cfg.machine.accel.thread {
        ThreadMode::Single => 1,
        ThreadMode::Multi => cfg.machine.smp as u32,
    })
}

/// The QEMU arguments of a configuration on `version` and the host threads
/// the run keeps busy, or why it cannot run there.
pub fn qemu_args(
    guest: &Path,
    options: &BTreeMap<String, String>,
    version: QemuVersion,
) -> Result<(Vec<String>, u32), String> {
    let mut run = QemuGuestRun::new(PathBuf::from(guest));
    for (k, v) in options {
        if k == "backend" || k == "load" || v.is_empty() || not_for_qemu(k) {
            continue;
        }
        if let Some(p) = k.strip_prefix("param.") {
            let (slot, value) =
                crate::config::parse_param(&format!("{p}={v}")).map_err(|e| e.to_string())?;
            run.params.push((slot, value));
            continue;
        }
        match k.as_str() {
            "smp" => run.smp = Some(v.clone()),
            "memory" => run.memory = Some(v.clone()),
            "icount" => run.icount = Some(v.clone()),
            "accel" => run.accel = Some(v.clone()),
            "cpu" => run.cpu = Some(v.clone()),
            other => return Err(format!("--{other} has no QEMU equivalent")),
        }
    }
    let args = run.args(version).map_err(|e| e.to_string())?;
    Ok((args, qemu_threads(&run, version)?))
}

/// Host threads a QEMU run keeps busy, with vcpulab's parsers of the same
/// options (QEMU's defaults: one thread per vCPU without icount, one for
/// all with it).
fn qemu_threads(run: &QemuGuestRun, version: QemuVersion) -> Result<u32, String> {
    let e = |e: crate::config::ConfigError| e.to_string();
    let smp = run.smp.as_deref().map(parse_smp).transpose().map_err(e)?;
    let icount = run
        .icount
        .as_deref()
        .map(IcountConfig::parse)
        .transpose()
        .map_err(e)?;
    let accel = AccelConfig::parse(
        run.accel.as_deref(),
        icount.map(|c| c.smp),
        version.compat(),
    )
    .map_err(e)?;
    Ok(match accel.thread {
        ThreadMode::Single => 1,
        ThreadMode::Multi => smp.map_or(1, |t| t.cpus as u32),
    })
}
