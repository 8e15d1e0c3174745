//! `vcpulab` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use vcpulab::config::{
    Compat, CpuConfig, IcountConfig, IcountTimers, MachineConfig, parse_param, parse_size,
};
use vcpulab::iothread::IoTimerMode;
use vcpulab::monitor::MonitorSpec;
use vcpulab::run::{RunConfig, RunError, run};

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

#[derive(Clone, Copy, ValueEnum)]
enum TimerMode {
    /// A CLOCK_MONOTONIC timerfd with nanosecond deadlines.
    Timerfd,
    /// mio's poll timeout (whole milliseconds): the baseline.
    Poll,
}

#[derive(Clone, Copy, ValueEnum)]
enum TimersBy {
    /// The vCPU thread runs them (QEMU).
    Vcpu,
    /// Hand-off to the iothread.
    Iothread,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a guest ELF on the `virt` machine.
    Run {
        /// Guest ELF (RV64, loaded at its physical addresses). Default: the
        /// built-in compute-loop guest.
        #[arg(long, value_name = "FILE")]
        kernel: Option<PathBuf>,
        /// RAM size (QEMU's -m syntax: 128M, 1G; a bare number is MiB).
        #[arg(long, short = 'm', value_name = "SIZE", default_value = "128M")]
        memory: String,
        /// Number of harts (vCPU threads).
        #[arg(long, value_name = "N", default_value_t = 1)]
        smp: usize,
        /// Stop after this many seconds of wall time (exit status 124).
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<f64>,
        /// Write a JSON run report to FILE.
        #[arg(long, value_name = "FILE")]
        stats: Option<PathBuf>,
        /// Fill a parameter-block slot: NAME=VALUE, NAME a slot number 0..63 or
        /// iters (0), inner (1), delay (2). Repeatable.
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Instruction counting: shift=N|auto[,sleep=on|off][,align=on|off].
        #[arg(long, value_name = "OPTS")]
        icount: Option<String>,
        /// Under icount, who runs VIRTUAL timers at a deadline: the vCPU
        /// thread (QEMU's way) or the iothread (a hand-off; the vCPU waits).
        #[arg(long, value_enum, default_value = "vcpu")]
        icount_timers: TimersBy,
        /// How the iothread waits for timer deadlines.
        #[arg(long, value_enum, default_value = "timerfd")]
        iothread_timer: TimerMode,
        /// Start a monitor: `stdio` (commands on stdin, replies on stderr) or
        /// `unix:PATH` (a listening Unix socket). See docs/monitor.md.
        #[arg(long, value_name = "DEV")]
        monitor: Option<String>,
        /// The hart: `rv64[,EXT=on|off]...` with EXT one of c, zba, zbb, zbs
        /// (QEMU's `-cpu rv64,c=false`); every extension is on by default.
        #[arg(long, value_name = "MODEL[,EXT=on|off]", default_value = "rv64")]
        cpu: String,
        /// Reproduce this QEMU version where versions differ: qemu-10.0 or
        /// qemu-7.2 (see docs/machine.md).
        #[arg(long, value_name = "VERSION", default_value = "qemu-10.0")]
        compat: String,
    },
}

fn fail(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("vcpulab: {msg}");
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Run {
            kernel,
            memory,
            smp,
            timeout,
            stats,
            params,
            icount,
            icount_timers,
            iothread_timer,
            monitor,
            cpu,
            compat,
        } => {
            let memory = match parse_size(&memory) {
                Ok(m) => m,
                Err(e) => return fail(format!("--memory: {e}")),
            };
            let mut ps = Vec::new();
            for p in &params {
                match parse_param(p) {
                    Ok(v) => ps.push(v),
                    Err(e) => return fail(e),
                }
            }
            let icount = match icount.as_deref().map(IcountConfig::parse).transpose() {
                Ok(i) => i,
                Err(e) => return fail(e),
            };
            let timeout = match timeout {
                Some(t) if t.is_finite() && t > 0.0 => Some(Duration::from_secs_f64(t)),
                Some(t) => {
                    return fail(format!(
                        "invalid --timeout {t}: expected a positive number of seconds"
                    ));
                }
                None => None,
            };
            let icount_timers = match icount_timers {
                TimersBy::Vcpu => IcountTimers::Vcpu,
                TimersBy::Iothread => IcountTimers::Iothread,
            };
            let monitor = match monitor.as_deref().map(MonitorSpec::from_cli).transpose() {
                Ok(m) => m,
                Err(e) => return fail(e),
            };
            let cpu = match CpuConfig::parse(&cpu) {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            let compat = match Compat::parse(&compat) {
                Ok(c) => c,
                Err(e) => return fail(e),
            };
            let machine = MachineConfig {
                kernel,
                memory,
                smp,
                params: ps,
                icount,
                icount_timers,
                cpu,
                compat,
            };
            if let Err(e) = machine.validate() {
                return fail(e);
            }
            let cfg = RunConfig {
                machine,
                timeout,
                stats,
                iothread_timer: match iothread_timer {
                    TimerMode::Timerfd => IoTimerMode::Timerfd,
                    TimerMode::Poll => IoTimerMode::Poll,
                },
                monitor,
            };
            let out: vcpulab::devices::uart::Sink = Box::new(std::io::stdout());
            match run(&cfg, out) {
                Ok(report) => {
                    if report.exit.reason == vcpulab::runstate::ExitReason::Timeout {
                        let pcs: Vec<String> = report
                            .vcpus
                            .iter()
                            .map(|v| format!("hart {} at pc {:#x}", v.hart, v.pc))
                            .collect();
                        eprintln!(
                            "vcpulab: timeout after {:.3} s: the guest executed {} instructions ({})",
                            report.wall_ns as f64 / 1e9,
                            report.instructions.total,
                            pcs.join(", ")
                        );
                    }
                    ExitCode::from(report.exit.code.clamp(0, 255) as u8)
                }
                Err(RunError::Load(e)) => fail(e),
                Err(e) => {
                    eprintln!("vcpulab: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
