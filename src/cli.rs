//! The options of `vcpulab run`, as a library type: the binary parses them,
//! and the experiment runner ([`crate::experiment`]) checks each run of a
//! sweep with the very same parser and checks before it starts any.

use std::path::PathBuf;

use clap::{Args, Parser, ValueEnum};

use crate::config::{
    AccelConfig, BqlConfig, Compat, CpuConfig, IcountConfig, IcountTimers, MachineConfig,
    parse_hold_sample, parse_param, parse_size, parse_smp, parse_timeout,
};
use crate::iothread::IoTimerMode;
use crate::monitor::MonitorSpec;
use crate::run::RunConfig;
use crate::sync::bql::{BqlPolicy, LockKind};
use crate::sync::kick::KickKind;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
/// `--iothread-timer`: how the iothread sleeps until a deadline.
pub enum TimerMode {
    /// A CLOCK_MONOTONIC timerfd with nanosecond deadlines.
    Timerfd,
    /// mio's poll timeout (whole milliseconds): the baseline.
    Poll,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
/// `--icount-timers`: who runs VIRTUAL timers at a deadline.
pub enum TimersBy {
    /// The vCPU thread runs them (QEMU).
    Vcpu,
    /// Hand-off to the iothread.
    Iothread,
}

/// `vcpulab run`'s options as a command of their own, to parse an argument
/// list the way `vcpulab run` does (`RunCli::try_parse_from`).
#[derive(Parser, Clone, Debug)]
#[command(name = "vcpulab run")]
pub struct RunCli {
    /// The options.
    #[command(flatten)]
    pub args: RunArgs,
}

/// The options of `vcpulab run` (QEMU's names, with two dashes).
#[derive(Args, Clone, Debug)]
pub struct RunArgs {
    /// Guest ELF (RV64, loaded at its physical addresses). Default: the
    /// built-in compute-loop guest.
    #[arg(long, value_name = "FILE")]
    pub kernel: Option<PathBuf>,
    /// RAM size (QEMU's -m syntax: 128M, 1G; a bare number is MiB).
    #[arg(
        long,
        short = 'm',
        value_name = "SIZE",
        default_value = "128M",
        allow_hyphen_values = true
    )]
    pub memory: String,
    /// Harts (one vCPU thread each), QEMU's spelling: N[,sockets=S][,cores=C][,threads=T][,maxcpus=M]; at most 512 (virt).
    #[arg(
        long,
        value_name = "N",
        default_value = "1",
        allow_hyphen_values = true
    )]
    pub smp: String,
    /// Stop after this many seconds of wall time (exit status 124).
    #[arg(long, value_name = "SECONDS", allow_hyphen_values = true)]
    pub timeout: Option<String>,
    /// Write a JSON run report to FILE.
    #[arg(long, value_name = "FILE")]
    pub stats: Option<PathBuf>,
    /// Write the run's latency histograms (BQL wait and hold, kick
    /// latency, iothread timer lateness, icount hand-offs) to FILE in the
    /// HdrHistogram log format. See docs/report.md.
    #[arg(long, value_name = "FILE")]
    pub hist_log: Option<PathBuf>,
    /// Write a timeline of the run to FILE, as Chrome trace-event JSON
    /// (Perfetto, chrome://tracing): a track per thread with its BQL waits
    /// and holds, halts, kicks, quantum waits, timer callbacks and icount
    /// hand-offs. See docs/trace.md.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// With --trace: the events kept per thread (its first N; later ones
    /// are counted in the file), 1 to 16777216.
    #[arg(
        long,
        value_name = "N",
        default_value = "200000",
        allow_hyphen_values = true
    )]
    pub trace_events: String,
    /// The iothread's timer slack in ns (prctl PR_SET_TIMERSLACK), 1 to
    /// 1000000000, or 0 for the thread's default (inherited, usually
    /// 50 us). QEMU sets 1. See docs/time.md.
    #[arg(
        long,
        value_name = "NS",
        default_value = "1",
        allow_hyphen_values = true
    )]
    pub timer_slack: String,
    /// Fill a parameter-block slot: NAME=VALUE, NAME a slot number 0..63 or
    /// iters (0), inner (1), delay (2). Repeatable.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// Instruction counting: shift=N|auto[,sleep=on|off][,align=on|off][,smp=MODE[,quantum=Q]].
    /// smp: what guest time means with several vCPUs: rr (QEMU's
    /// round-robin, the default), global (one counter, one thread per
    /// vCPU), local (a clock per vCPU; quantum=Q in virtual ns, or with
    /// us/ms: none more than Q ahead). global and local need
    /// --accel tcg,thread=multi. See docs/time.md.
    #[arg(long, value_name = "OPTS")]
    pub icount: Option<String>,
    /// Under icount, who runs VIRTUAL timers at a deadline: the vCPU
    /// thread (QEMU's way) or the iothread (a hand-off; the vCPU waits).
    #[arg(long, value_enum, default_value = "vcpu")]
    pub icount_timers: TimersBy,
    /// How the iothread waits for timer deadlines.
    #[arg(long, value_enum, default_value = "timerfd")]
    pub iothread_timer: TimerMode,
    /// Start a monitor: `stdio` (commands on stdin, replies on stderr) or
    /// `unix:PATH` (a listening Unix socket). See docs/monitor.md.
    #[arg(long, value_name = "DEV")]
    pub monitor: Option<String>,
    /// The hart: `rv64[,EXT=on|off]...` with EXT one of c, zba, zbb, zbs
    /// (QEMU's `-cpu rv64,c=false`); every extension is on by default.
    #[arg(long, value_name = "MODEL[,EXT=on|off]", default_value = "rv64")]
    pub cpu: String,
    /// Reproduce this QEMU version where versions differ: qemu-10.0 or
    /// qemu-7.2 (see docs/machine.md).
    #[arg(long, value_name = "VERSION", default_value = "qemu-10.0")]
    pub compat: String,
    /// When the BQL is taken: `always` (held while a vCPU executes),
    /// `mmio` (around each device access), `device` (devices that lock
    /// themselves are reached without it). See docs/sync.md.
    #[arg(long, value_name = "POLICY", default_value = "mmio")]
    pub bql: String,
    /// The lock under the BQL: parking_lot, parking_lot-fair, std,
    /// pthread (QEMU's QemuMutex) or ticket.
    #[arg(long, value_name = "KIND", default_value = "parking_lot")]
    pub bql_lock: String,
    /// Measure the hold time of one BQL acquisition in N per call site (a
    /// power of two; 1 = every hold).
    #[arg(long, value_name = "N", default_value = "64")]
    pub bql_hold_sample: String,
    /// How a vCPU thread is woken: futex (exit request + futex
    /// park/unpark), signal (pthread_kill with SIGUSR1, QEMU's SIG_IPI),
    /// eventfd (an eventfd the halted vCPU polls). See docs/sync.md.
    #[arg(long, value_name = "KIND", default_value = "futex")]
    pub kick: String,
    /// The accelerator, QEMU's spelling: `tcg[,thread=single|multi][,rr-turn=split|whole]`.
    /// thread=multi: one host thread per vCPU (the default without
    /// icount, and with --icount ...,smp=global|local); thread=single: one
    /// thread runs them all round-robin (the default with icount). rr-turn: a turn's icount
    /// budget, QEMU 10.0's share of the limit (split) or 7.2's whole limit;
    /// the default follows --compat. See docs/architecture.md.
    #[arg(long, value_name = "OPTS")]
    pub accel: Option<String>,
}

impl RunArgs {
    /// The run these options describe, after every check `vcpulab run`
    /// makes; the error is the one line `vcpulab run` prints (exit status 2).
    pub fn config(&self, argv: Vec<String>) -> Result<RunConfig, String> {
        let e = |e: crate::config::ConfigError| e.to_string();
        let memory = parse_size(&self.memory).map_err(|e| format!("--memory: {e}"))?;
        let params = self
            .params
            .iter()
            .map(|p| parse_param(p))
            .collect::<Result<Vec<_>, _>>()
            .map_err(e)?;
        let icount = self
            .icount
            .as_deref()
            .map(IcountConfig::parse)
            .transpose()
            .map_err(e)?;
        let timeout = self
            .timeout
            .as_deref()
            .map(parse_timeout)
            .transpose()
            .map_err(e)?;
        let topology = parse_smp(&self.smp).map_err(e)?;
        let monitor = self
            .monitor
            .as_deref()
            .map(MonitorSpec::from_cli)
            .transpose()
            .map_err(|e| e.to_string())?;
        let cpu = CpuConfig::parse(&self.cpu).map_err(e)?;
        let compat = Compat::parse(&self.compat).map_err(e)?;
        let accel =
            AccelConfig::parse(self.accel.as_deref(), icount.map(|c| c.smp), compat).map_err(e)?;
        let bql = BqlConfig {
            policy: BqlPolicy::parse(&self.bql).map_err(|e| e.to_string())?,
            lock: LockKind::parse(&self.bql_lock).map_err(|e| e.to_string())?,
            hold_sample: parse_hold_sample(&self.bql_hold_sample).map_err(e)?,
        };
        let machine = MachineConfig {
            kernel: self.kernel.clone(),
            memory,
            smp: topology.cpus,
            topology,
            params,
            icount,
            icount_timers: match self.icount_timers {
                TimersBy::Vcpu => IcountTimers::Vcpu,
                TimersBy::Iothread => IcountTimers::Iothread,
            },
            cpu,
            compat,
            bql,
            kick: KickKind::parse(&self.kick).map_err(|e| e.to_string())?,
            accel,
        };
        machine.validate().map_err(|e| e.to_string())?;
        let trace_events = parse_trace_events(&self.trace_events)?;
        let timer_slack_ns = parse_timer_slack(&self.timer_slack)?;
        Ok(RunConfig {
            machine,
            timeout,
            stats: self.stats.clone(),
            hist_log: self.hist_log.clone(),
            trace: self.trace.clone(),
            trace_events,
            timer_slack_ns,
            iothread_timer: match self.iothread_timer {
                TimerMode::Timerfd => IoTimerMode::Timerfd,
                TimerMode::Poll => IoTimerMode::Poll,
            },
            monitor,
            argv,
        })
    }
}

/// Parse `--trace-events`: 1 to [`crate::trace::MAX_EVENTS_PER_THREAD`].
pub fn parse_trace_events(s: &str) -> Result<usize, String> {
    match s.trim().parse::<usize>() {
        Ok(n) if (1..=crate::trace::MAX_EVENTS_PER_THREAD).contains(&n) => Ok(n),
        _ => Err(format!(
            "invalid --trace-events '{s}': expected a number of events per thread from 1 to {}",
            crate::trace::MAX_EVENTS_PER_THREAD
        )),
    }
}

/// The largest `--timer-slack`, ns (one second).
pub const MAX_TIMER_SLACK_NS: u64 = 1_000_000_000;

/// Parse `--timer-slack`: ns from 1 to [`MAX_TIMER_SLACK_NS`], or 0 for the
/// thread's default slack (what `PR_SET_TIMERSLACK` with 0 restores).
pub fn parse_timer_slack(s: &str) -> Result<u64, String> {
    match s.trim().parse::<u64>() {
        Ok(n) if n <= MAX_TIMER_SLACK_NS => Ok(n),
        _ => Err(format!(
            "invalid --timer-slack '{s}': expected ns from 1 to {MAX_TIMER_SLACK_NS}, or 0 for the thread's default"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_events_and_timer_slack_ranges() {
        assert_eq!(parse_trace_events("200000"), Ok(200_000));
        assert_eq!(parse_trace_events("1"), Ok(1));
        for bad in ["0", "-1", "x", "16777217", ""] {
            let e = parse_trace_events(bad).unwrap_err();
            assert!(e.contains(&format!("'{bad}'")), "{e}");
        }
        assert_eq!(parse_timer_slack("0"), Ok(0));
        assert_eq!(parse_timer_slack("1"), Ok(1));
        assert_eq!(parse_timer_slack("1000000000"), Ok(1_000_000_000));
        for bad in ["1000000001", "-1", "50us", "", "1e3"] {
            let e = parse_timer_slack(bad).unwrap_err();
            assert!(
                e.contains(&format!("'{bad}'")) && e.contains("--timer-slack"),
                "{e}"
            );
        }
    }
}
