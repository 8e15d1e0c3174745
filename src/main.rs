//! `vcpulab` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use vcpulab::config::{
    AccelConfig, BqlConfig, Compat, CpuConfig, IcountConfig, IcountTimers, MachineConfig,
    parse_hold_sample, parse_param, parse_size, parse_smp, parse_timeout,
};
use vcpulab::iothread::IoTimerMode;
use vcpulab::monitor::MonitorSpec;
use vcpulab::report::RunReport;
use vcpulab::run::{RunConfig, RunError, run};
use vcpulab::runstate::ExitReason;
use vcpulab::sync::bql::{BqlPolicy, LockKind};

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
    Run {
        /// Guest ELF (RV64, loaded at its physical addresses). Default: the
        /// built-in compute-loop guest.
        #[arg(long, value_name = "FILE")]
        kernel: Option<PathBuf>,
        /// RAM size (QEMU's -m syntax: 128M, 1G; a bare number is MiB).
        #[arg(
            long,
            short = 'm',
            value_name = "SIZE",
            default_value = "128M",
            allow_hyphen_values = true
        )]
        memory: String,
        /// Harts (one vCPU thread each), QEMU's spelling: N[,sockets=S][,cores=C][,threads=T][,maxcpus=M]; at most 512 (virt).
        #[arg(
            long,
            value_name = "N",
            default_value = "1",
            allow_hyphen_values = true
        )]
        smp: String,
        /// Stop after this many seconds of wall time (exit status 124).
        #[arg(long, value_name = "SECONDS", allow_hyphen_values = true)]
        timeout: Option<String>,
        /// Write a JSON run report to FILE.
        #[arg(long, value_name = "FILE")]
        stats: Option<PathBuf>,
        /// Write the run's latency histograms (BQL wait and hold, kick
        /// latency, iothread timer lateness, icount hand-offs) to FILE in the
        /// HdrHistogram log format. See docs/report.md.
        #[arg(long, value_name = "FILE")]
        hist_log: Option<PathBuf>,
        /// Fill a parameter-block slot: NAME=VALUE, NAME a slot number 0..63 or
        /// iters (0), inner (1), delay (2). Repeatable.
        #[arg(long = "param", value_name = "NAME=VALUE")]
        params: Vec<String>,
        /// Instruction counting: shift=N|auto[,sleep=on|off][,align=on|off][,smp=MODE[,quantum=Q]].
        /// smp: what guest time means with several vCPUs: rr (QEMU's
        /// round-robin, the default), global (one counter, one thread per
        /// vCPU), local (a clock per vCPU; quantum=Q in virtual ns, or with
        /// us/ms: none more than Q ahead). global and local need
        /// --accel tcg,thread=multi. See docs/time.md.
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
        /// When the BQL is taken: `always` (held while a vCPU executes),
        /// `mmio` (around each device access), `device` (devices that lock
        /// themselves are reached without it). See docs/sync.md.
        #[arg(long, value_name = "POLICY", default_value = "mmio")]
        bql: String,
        /// The lock under the BQL: parking_lot, parking_lot-fair, std,
        /// pthread (QEMU's QemuMutex) or ticket.
        #[arg(long, value_name = "KIND", default_value = "parking_lot")]
        bql_lock: String,
        /// Measure the hold time of one BQL acquisition in N per call site (a
        /// power of two; 1 = every hold).
        #[arg(long, value_name = "N", default_value = "64")]
        bql_hold_sample: String,
        /// How a vCPU thread is woken: futex (exit request + futex
        /// park/unpark), signal (pthread_kill with SIGUSR1, QEMU's SIG_IPI),
        /// eventfd (an eventfd the halted vCPU polls). See docs/sync.md.
        #[arg(long, value_name = "KIND", default_value = "futex")]
        kick: String,
        /// The accelerator, QEMU's spelling: `tcg[,thread=single|multi][,rr-turn=split|whole]`.
        /// thread=multi: one host thread per vCPU (the default without
        /// icount, and with --icount ...,smp=global|local); thread=single: one
        /// thread runs them all round-robin (the default with icount). rr-turn: a turn's icount
        /// budget, QEMU 10.0's share of the limit (split) or 7.2's whole limit;
        /// the default follows --compat. See docs/architecture.md.
        #[arg(long, value_name = "OPTS")]
        accel: Option<String>,
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
            hist_log,
            params,
            icount,
            icount_timers,
            iothread_timer,
            monitor,
            cpu,
            compat,
            bql,
            bql_lock,
            bql_hold_sample,
            kick,
            accel,
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
            let timeout = match timeout.as_deref().map(parse_timeout).transpose() {
                Ok(t) => t,
                Err(e) => return fail(e),
            };
            let topology = match parse_smp(&smp) {
                Ok(t) => t,
                Err(e) => return fail(e),
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
            let accel = match AccelConfig::parse(accel.as_deref(), icount.map(|c| c.smp), compat) {
                Ok(a) => a,
                Err(e) => return fail(e),
            };
            let bql = BqlConfig {
                policy: match BqlPolicy::parse(&bql) {
                    Ok(p) => p,
                    Err(e) => return fail(e),
                },
                lock: match LockKind::parse(&bql_lock) {
                    Ok(k) => k,
                    Err(e) => return fail(e),
                },
                hold_sample: match parse_hold_sample(&bql_hold_sample) {
                    Ok(n) => n,
                    Err(e) => return fail(e),
                },
            };
            let machine = MachineConfig {
                kernel,
                memory,
                smp: topology.cpus,
                topology,
                params: ps,
                icount,
                icount_timers,
                cpu,
                compat,
                bql,
                kick: match vcpulab::sync::kick::KickKind::parse(&kick) {
                    Ok(k) => k,
                    Err(e) => return fail(e),
                },
                accel,
            };
            if let Err(e) = machine.validate() {
                return fail(e);
            }
            let cfg = RunConfig {
                machine,
                timeout,
                stats,
                hist_log,
                iothread_timer: match iothread_timer {
                    TimerMode::Timerfd => IoTimerMode::Timerfd,
                    TimerMode::Poll => IoTimerMode::Poll,
                },
                monitor,
                argv: std::env::args_os()
                    .map(|a| a.to_string_lossy().into_owned())
                    .collect(),
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
