//! `vcpulab` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use vcpulab::cli::RunArgs;
use vcpulab::config::MachineConfig;
use vcpulab::experiment::command as experiment;
use vcpulab::report::RunReport;
use vcpulab::run::{RunError, run};
use vcpulab::runstate::ExitReason;

#[derive(Parser)]
#[command(
    name = "vcpulab",
    version,
    about = "A laboratory for emulator architecture: RISC-V vCPU threads, the BQL, the iothread and icount, measured against QEMU"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

/// `vcpulab run --help`'s closing text: the exit statuses (also in
/// docs/report.md).
const EXIT_STATUSES: &str = "\
Exit status:
  0        the guest wrote PASS to the test finisher (or the monitor's quit)
  N        the guest wrote FAIL with code N to the test finisher
  1        host error (the file or resource is named on stderr)
  2        bad input: an option, the kernel file, the --stats path (one line on stderr)
  124      --timeout reached (stderr says how far the guest got)
  128+N    ended by signal N (SIGHUP 129, SIGINT 130, SIGTERM 143)
A finisher code can equal one of vcpulab's own statuses; the run report's
exit.reason says which it was.";

#[derive(Subcommand)]
enum Cmd {
    /// Run a guest ELF on the `virt` machine.
    #[command(after_long_help = EXIT_STATUSES)]
    Run(Box<RunArgs>),
    /// Run an experiment file's sweep: every configuration and repetition
    /// as a child process with its own time limit; results, plots and
    /// summary.md in the output directory. Interrupted sweeps resume.
    /// See docs/experiments.md.
    Experiment {
        /// The experiment file (TOML). Default: experiments/quick.toml, a
        /// tour of the main axes that takes under two minutes.
        #[arg(value_name = "FILE", default_value = "experiments/quick.toml")]
        file: PathBuf,
        /// Result directory (default target/experiments/NAME; resumed if it
        /// holds runs of the same commit and host).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// Repetitions per configuration (overrides the file's `reps`).
        #[arg(long, value_name = "N")]
        reps: Option<String>,
        /// Run only the configurations whose axes have these values:
        /// KEY=VALUE[,KEY=VALUE...] (KEY an axis name as in the file).
        #[arg(long, value_name = "KEY=VALUE,...")]
        filter: Option<String>,
        /// Run shard K of N (K from 1): a deterministic 1/N of the runs, for
        /// a cluster's job array; merge the shards with `vcpulab report`.
        #[arg(long, value_name = "K/N")]
        shard: Option<String>,
        /// Check the file and list the configurations and runs; run nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Rebuild summary.md, runs.csv and the plots from stored results;
    /// several directories (the shards of a sweep, the same sweep on
    /// several hosts) are merged, hosts kept apart.
    Report {
        /// Result directories written by `vcpulab experiment`.
        #[arg(value_name = "DIR", required = true)]
        dirs: Vec<PathBuf>,
        /// Where to write the report (default: the directory, when there is
        /// one; required when merging several).
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("vcpulab: {msg}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Experiment {
            file,
            out,
            reps,
            filter,
            shard,
            dry_run,
        } => experiment::experiment(file, out, reps, filter, shard, dry_run),
        Cmd::Report { dirs, out } => experiment::report(dirs, out),
        Cmd::Run(args) => {
            let argv = std::env::args_os()
                .map(|a| a.to_string_lossy().into_owned())
                .collect();
            let cfg = match args.config(argv) {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            // Before any thread exists, so that every thread inherits the
            // blocked mask and only the signalfd sees these signals.
            let signals = match vcpulab::host::terminating_signals() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("vcpulab: host error: cannot set up signal handling: {e}");
                    return ExitCode::from(1);
                }
            };
            let out: vcpulab::hw::devices::uart::Sink = Box::new(std::io::stdout());
            let builtin = cfg.machine.kernel.is_none();
            match run(&cfg, out, Some(&signals)) {
                Ok(report) => {
                    if builtin {
                        builtin_summary(&cfg.machine, &report);
                    }
                    finish(&report)
                }
                Err(RunError::ReportWrite { report, err }) => {
                    let _ = finish(&report);
                    eprintln!("vcpulab: host error: {err}");
                    ExitCode::from(1)
                }
                Err(e @ (RunError::Load(_) | RunError::Stats(_))) => fail(e),
            }
        }
    }
}

/// After a run of the built-in guest (the main job): what it should have
/// printed, how fast it ran, and the QEMU command that prints the same.
fn builtin_summary(m: &MachineConfig, report: &RunReport) {
    use vcpulab::hw::loader::{BUILTIN_DEFAULT_ITERS, builtin_checksum};
    if report.exit.reason != ExitReason::FinisherPass {
        return;
    }
    let iters = m
        .params
        .iter()
        .rev()
        .find(|(slot, _)| *slot == 0)
        .map_or(0, |&(_, v)| v);
    let shown = if iters == 0 {
        BUILTIN_DEFAULT_ITERS
    } else {
        iters
    };
    let harts = if m.smp > 1 {
        format!(" on {} vCPUs (the others wait in wfi)", m.smp)
    } else {
        String::new()
    };
    eprintln!(
        "vcpulab: built-in guest guests/build/compute.elf, iters={shown}: expected checksum={:#x}",
        builtin_checksum(iters)
    );
    eprintln!(
        "vcpulab: {} instructions in {:.3} s = {:.0} MIPS{harts}",
        report.instructions.total,
        report.wall_ns as f64 / 1e9,
        report.mips
    );
    let loader = if iters == 0 {
        String::new()
    } else {
        format!(" -device loader,addr=0x80100000,data={iters},data-len=8")
    };
    eprintln!(
        "vcpulab: the same on QEMU: qemu-system-riscv64-10.0 -machine virt -bios none -nographic -kernel guests/build/compute.elf{loader}"
    );
}

/// Says on stderr how the run ended, where that needs saying, and returns
/// its exit status.
fn finish(report: &RunReport) -> ExitCode {
    match report.exit.reason {
        ExitReason::Timeout => {
            let harts: Vec<String> = report
                .vcpus
                .iter()
                .map(|v| {
                    let traps = match &v.last_trap {
                        None => "no traps".to_string(),
                        Some(t) => format!(
                            "{} traps, the last: cause {:#x} ({}) at pc {:#x}",
                            v.traps, t.cause, t.cause_name, t.pc.0
                        ),
                    };
                    let state = match v.state {
                        "halted" if v.mie.0 == 0 => {
                            "halted in wfi with mie=0 (nothing can wake it)".to_string()
                        }
                        "halted" => format!("halted in wfi, mie={:#x}", v.mie.0),
                        s => s.to_string(),
                    };
                    format!("hart {} {state} at pc {:#x}, {traps}", v.hart, v.pc.0)
                })
                .collect();
            eprintln!(
                "vcpulab: timeout after {:.3} s: the guest executed {} instructions ({})",
                report.wall_ns as f64 / 1e9,
                report.instructions.total,
                harts.join("; ")
            );
        }
        ExitReason::Sigint | ExitReason::Sigterm | ExitReason::Sighup | ExitReason::HostError => {
            if let Some(m) = &report.exit.message {
                eprintln!("vcpulab: {m}");
            }
        }
        _ => {}
    }
    ExitCode::from(report.exit.code.clamp(0, 255) as u8)
}
