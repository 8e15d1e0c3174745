//! Running a machine: start the iothread and one thread per vCPU, wait for
//! the guest to finish (or `--timeout`), stop everything, and report.
//!
//! QEMU analogue: `system/vl.c` (`qemu_init`, `qemu_main_loop`) and
//! `system/cpus.c` (`qemu_init_vcpu`, `vm_start`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::Receiver;
use serde::Serialize;

use crate::accel::Sched;
use crate::accel::icount_smp::{Quantum, icount_vcpu_thread_fn};
use crate::accel::mttcg::vcpu_thread_fn;
use crate::accel::rr::rr_thread_fn;
use crate::accel::vcpu::VcpuStats;
use crate::config::{IcountShift, IcountSmp, MachineConfig, ThreadMode};
use crate::host::{HostFacts, TermSignal, peak_rss_bytes, rfc3339_utc};
use crate::hw::devices::uart::Sink;
use crate::hw::loader::LoadError;
use crate::hw::machine::Machine;
use crate::iothread::{IoThread, IoThreadConfig, IoTimerMode};
use crate::monitor::MonitorSpec;
use crate::report::{
    ExitReport, IcountReport, Instructions, Percentiles, RunReport, SCHEMA, ShiftChange,
    StatsError, StatsFile, TimersReport, VcpuReport,
};
use crate::runstate::{ExitReason, ExitStatus};
use crate::time::clock::ClockType;
use crate::time::icount::Adjuster;

/// Everything `vcpulab run` needs.
#[derive(Clone, Debug, Serialize)]
pub struct RunConfig {
    /// The machine.
    pub machine: MachineConfig,
    /// Wall-clock limit.
    #[serde(rename = "timeout_ns", serialize_with = "ser_nanos")]
    pub timeout: Option<Duration>,
    /// Where to write the JSON report.
    pub stats: Option<PathBuf>,
    /// Where to write the latency histograms in the HdrHistogram log format
    /// (see [`crate::report::hist_log`]).
    pub hist_log: Option<PathBuf>,
    /// Where to write the run's timeline (Chrome trace-event JSON, see
    /// [`crate::trace`]).
    pub trace: Option<PathBuf>,
    /// With `trace`: the events kept per thread.
    pub trace_events: usize,
    /// The iothread's timer slack, ns (0: the thread's default).
    pub timer_slack_ns: u64,
    /// How the iothread sleeps until deadlines.
    #[serde(serialize_with = "ser_mode")]
    pub iothread_timer: IoTimerMode,
    /// The monitor (`--monitor`), served by the iothread.
    pub monitor: Option<MonitorSpec>,
    /// The command line, for the report.
    #[serde(skip)]
    pub argv: Vec<String>,
}

fn ser_nanos<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        // Saturates at u64::MAX ns (584 years).
        Some(d) => s.serialize_u64(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
        None => s.serialize_none(),
    }
}

fn ser_mode<S: serde::Serializer>(m: &IoTimerMode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match m {
        IoTimerMode::Timerfd => "timerfd",
        IoTimerMode::Poll => "poll",
    })
}

/// A run that could not start, or whose report could not be written.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The kernel could not be loaded, or RAM not mapped (bad input, exit 2).
    #[error(transparent)]
    Load(#[from] LoadError),
    /// An output file (`--stats`, `--hist-log`, `--trace`) cannot be
    /// written (checked before the guest starts: bad input, exit 2).
    #[error(transparent)]
    Stats(StatsError),
    /// The run ended (`report` says how) but its report could not be
    /// written (a host error, exit 1).
    #[error("{err}")]
    ReportWrite {
        /// The report that was not written.
        report: Box<RunReport>,
        /// Why.
        err: StatsError,
    },
}

fn host_error(msg: String) -> (ExitStatus, Option<String>) {
    (
        ExitStatus {
            reason: ExitReason::HostError,
            code: 1,
        },
        Some(format!("host error: {msg}")),
    )
}

/// Run the machine to completion; the report is also written to
/// `cfg.stats` if set, however the run ends (and so are the histograms to
/// `cfg.hist_log` and the timeline to `cfg.trace`). `signals` delivers SIGINT,
/// SIGTERM and SIGHUP (see [`crate::host::terminating_signals`]): each ends
/// the run with exit status 128 + N. A host error after the machine was
/// built (a thread, the monitor socket) ends the run with reason
/// `host_error`, exit status 1, and the error in `exit.message`.
pub fn run(
    cfg: &RunConfig,
    out: Sink,
    signals: Option<&Receiver<TermSignal>>,
) -> Result<RunReport, RunError> {
    let started = SystemTime::now();
    let started_at = rfc3339_utc(started);
    // Every output path is checked before the guest starts.
    let prepare = |p: &Option<PathBuf>, option: &'static str| {
        p.as_deref()
            .map(|p| StatsFile::prepare_for(p, option))
            .transpose()
            .map_err(RunError::Stats)
    };
    let stats_file = prepare(&cfg.stats, "--stats")?;
    let hist_file = prepare(&cfg.hist_log, "--hist-log")?;
    let trace_file = prepare(&cfg.trace, "--trace")?;
    let (m, waiters) = Machine::new(cfg.machine.clone(), out)?;
    if let Some(msg) = m.kernel.dropped.and_then(|d| {
        d.message(
            cfg.machine
                .kernel
                .as_deref()
                .unwrap_or(std::path::Path::new(crate::hw::loader::BUILTIN_NAME)),
        )
    }) {
        eprintln!("vcpulab: {msg}");
    }
    let icount = m.config.icount.is_some();
    // A host failure before or while the vCPUs start: the run still ends
    // through the common path below, with a report.
    let mut failure: Option<(ExitStatus, Option<String>)> = None;

    // Under icount the vCPU threads run VIRTUAL timers; a new VIRTUAL head
    // armed by another thread kicks the vCPUs so they shorten their budget.
    if icount {
        let cpus = m.cpus.clone();
        m.timers
            .get(ClockType::Virtual)
            .set_notify(Some(Arc::new(move || cpus.iter().for_each(|c| c.kick()))));
    }
    let mut handlers: Vec<Box<dyn crate::iothread::IoHandler>> = Vec::new();
    if let Some(spec) = &cfg.monitor {
        match crate::monitor::handler(spec, m.clone()) {
            Ok(h) => handlers.push(h),
            Err(e) => failure = Some(host_error(e.to_string())),
        }
    }
    // Recording starts before any thread of the machine's does.
    let trace = trace_file
        .as_ref()
        .map(|_| crate::trace::Session::start(cfg.trace_events));
    let bql_m = m.clone();
    let io = if failure.is_none() {
        match IoThread::spawn(
            m.clocks.clone(),
            m.timers.clone(),
            IoThreadConfig {
                mode: cfg.iothread_timer,
                timer_slack_ns: cfg.timer_slack_ns,
                exclude_virtual: icount,
                handlers,
                wrap_timers: Some(Box::new(move |f: &mut dyn FnMut()| {
                    let _g = bql_m.bql.lock();
                    f()
                })),
            },
        ) {
            Ok(io) => Some(io),
            Err(e) => {
                failure = Some(host_error(format!("cannot start the iothread: {e}")));
                None
            }
        }
    } else {
        None
    };

    // shift=auto: QEMU's two periodic adjustment timers.
    let adjuster = match (&m.icount, m.config.icount) {
        (Some(ic), Some(c)) if c.shift == IcountShift::Auto => {
            Some(Adjuster::new(ic.clone(), m.clocks.clone()))
        }
        _ => None,
    };
    let _adjust_timers = adjuster.as_ref().map(|a| a.arm(&m.timers));

    let start = Instant::now();
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<VcpuStats>();
    let mut joins = Vec::new();
    let sched = Arc::new(Sched::new());
    let smp_mode = m.config.icount.map(|c| c.smp);
    let parallel_icount = smp_mode.is_some_and(|s| s.parallel());
    let quantum = match smp_mode {
        Some(IcountSmp::Local {
            quantum_ns: Some(q),
        }) => Some(Quantum::new(&m, q)),
        _ => None,
    };
    if failure.is_none() {
        let single = m.config.accel.thread == ThreadMode::Single;
        for (i, waiter) in waiters.into_iter().enumerate() {
            let (m2, sched2, tx) = (m.clone(), sched.clone(), done_tx.clone());
            let (name, what) = if single {
                (
                    "vcpu-rr".to_string(),
                    "the round-robin vCPU thread".to_string(),
                )
            } else {
                (format!("vcpu-{i}"), format!("vCPU thread {i}"))
            };
            let q2 = quantum.clone();
            let j = std::thread::Builder::new().name(name).spawn(move || {
                // A vCPU that ends makes the whole machine end (shutdown was
                // requested, or the thread panicked: then it is a host bug).
                if single {
                    for s in rr_thread_fn(m2, sched2, waiter) {
                        let _ = tx.send(s);
                    }
                } else if parallel_icount {
                    let _ = tx.send(icount_vcpu_thread_fn(m2, sched2, i, waiter, q2));
                } else {
                    let _ = tx.send(vcpu_thread_fn(m2, sched2, i, waiter));
                }
            });
            match j {
                Ok(j) => joins.push(j),
                Err(e) => {
                    failure = Some(host_error(format!("cannot start {what}: {e}")));
                    break;
                }
            }
        }
    }
    drop(done_tx);
    let mut message: Option<String> = None;
    let mut signal: Option<i32> = None;
    if let Some((status, msg)) = failure {
        m.run.request_shutdown(status);
        m.kick_all();
        message = msg;
    }

    let never = crossbeam_channel::never();
    let sig_rx = signals.unwrap_or(&never);
    let mut stats: Vec<Option<VcpuStats>> = vec![None; m.cpus.len()];
    // One report per vCPU, from its thread or from the round-robin thread.
    let mut remaining = if m.config.accel.thread == ThreadMode::Single {
        joins.len() * m.cpus.len()
    } else {
        joins.len()
    };
    while remaining > 0 {
        let wait = match cfg.timeout {
            // Once the shutdown is requested, only the vCPUs' ends matter.
            _ if m.run.shutdown_requested() => Duration::from_secs(3600),
            Some(t) => t.saturating_sub(start.elapsed()),
            None => Duration::from_secs(3600),
        };
        crossbeam_channel::select! {
            recv(done_rx) -> s => match s {
                Ok(s) => {
                    let h = s.hart;
                    stats[h] = Some(s);
                    remaining -= 1;
                    if !m.run.shutdown_requested() {
                        // Only a shutdown ends a vCPU normally.
                        m.run.request_shutdown(ExitStatus {
                            reason: ExitReason::Quit,
                            code: 1,
                        });
                        m.kick_all();
                    }
                }
                Err(_) => break,
            },
            recv(sig_rx) -> s => {
                if let Ok(s) = s {
                    if !m.run.shutdown_requested() {
                        if let Some(reason) = ExitReason::for_signal(s.signo) {
                            m.run.request_shutdown(ExitStatus {
                                reason: reason.clone(),
                                code: s.exit_code(),
                            });
                            // The first shutdown request wins.
                            if m.run.exit_status().is_some_and(|e| e.reason == reason) {
                                signal = Some(s.signo);
                                message = Some(s.message());
                            }
                        }
                    }
                    m.kick_all();
                }
            },
            default(wait) => {
                if cfg.timeout.is_some_and(|t| start.elapsed() >= t) && !m.run.shutdown_requested()
                {
                    m.run.request_shutdown(ExitStatus {
                        reason: ExitReason::Timeout,
                        code: 124,
                    });
                    m.kick_all();
                }
            },
        }
    }
    let wall = start.elapsed();
    for j in joins {
        let _ = j.join();
    }
    let io_stats = io.map(|io| io.stop());
    // Every thread that records has ended (the monitor's may still run: it
    // records nothing after this).
    let trace = trace.map(crate::trace::Session::finish);
    let (io_fired, io_lateness) = match &io_stats {
        Some(s) => (s.timers_fired, Percentiles::of(&s.lateness)),
        None => (0, Percentiles::default()),
    };
    m.uart.flush();

    // One histogram over every vCPU's.
    let merge = |pick: fn(&VcpuStats) -> &Option<hdrhistogram::Histogram<u64>>| {
        let mut all: Option<hdrhistogram::Histogram<u64>> = None;
        for h in stats.iter().flatten().filter_map(|s| pick(s).as_ref()) {
            match &mut all {
                Some(a) => {
                    let _ = a.add(h);
                }
                None => all = Some(h.clone()),
            }
        }
        all
    };
    let handoff = merge(|s| &s.handoff_ns);
    let lateness_vns = merge(|s| &s.lateness_vns);
    let barrier_wait = merge(|s| &s.barrier_wait_ns);
    let access_wait = merge(|s| &s.access_wait_ns);
    let kick_running = merge(|s| &s.kick_running_ns);
    let kick_halted = merge(|s| &s.kick_halted_ns);
    let kick_report = crate::report::KickReport {
        mechanism: cfg.machine.kick,
        running_ns: kick_running
            .as_ref()
            .map(Percentiles::of)
            .unwrap_or_default(),
        halted_ns: kick_halted
            .as_ref()
            .map(Percentiles::of)
            .unwrap_or_default(),
    };
    let vcpus: Vec<VcpuStats> = stats
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            s.unwrap_or(VcpuStats {
                hart: i,
                ..Default::default()
            })
        })
        .collect();
    let per_vcpu: Vec<u64> = vcpus.iter().map(|s| s.instructions).collect();
    let total: u64 = per_vcpu.iter().sum();
    let exit = m.run.exit_status().unwrap_or(ExitStatus {
        reason: ExitReason::Quit,
        code: 1,
    });
    let report = RunReport {
        schema: SCHEMA,
        started_at,
        argv: cfg.argv.clone(),
        exit: ExitReport {
            reason: exit.reason,
            code: exit.code,
            signal,
            message,
        },
        wall_ns: wall.as_nanos() as u64,
        vm_clock_ns: m.clocks.get_ns(ClockType::Virtual),
        instructions: Instructions { total, per_vcpu },
        trace_hash: crate::report::Hex(
            vcpus
                .iter()
                .fold(crate::target::riscv::hart::TRACE_BASIS, |h, v| {
                    crate::target::riscv::hart::trace_fold(h, &[v.trace_hash])
                }),
        ),
        mips: total as f64 / wall.as_secs_f64().max(1e-9) / 1e6,
        peak_rss_bytes: peak_rss_bytes(),
        icount: m.icount.as_ref().map(|ic| IcountReport {
            shift: ic.shift(),
            shift_changes: adjuster
                .as_ref()
                .map(|a| a.changes())
                .unwrap_or_else(|| vec![(0, ic.shift())])
                .into_iter()
                .map(|(wall_ns, shift)| ShiftChange { wall_ns, shift })
                .collect(),
            handoff_ns: handoff.as_ref().map(Percentiles::of),
            bias_ns: ic.bias(),
        }),
        icount_smp: m.config.icount.map(|c| {
            let pct = |h: &Option<hdrhistogram::Histogram<u64>>| {
                h.as_ref().map(Percentiles::of).unwrap_or_default()
            };
            let (count, max_ticks) = m.time_reads.inversions();
            crate::report::IcountSmpReport {
                mode: c.smp.name(),
                quantum_ns: match c.smp {
                    IcountSmp::Local { quantum_ns } => quantum_ns,
                    _ => None,
                },
                vcpus: vcpus
                    .iter()
                    .map(|v| crate::report::VcpuClock {
                        instructions: v.instructions,
                        vtime_ns: v.vtime_ns,
                    })
                    .collect(),
                lateness_vns: pct(&lateness_vns),
                barrier_wait_ns: pct(&barrier_wait),
                access_wait_ns: pct(&access_wait),
                inversions: crate::report::Inversions {
                    count,
                    max_ns: max_ticks.saturating_mul(100),
                },
                drift_ns: m.clocks.get_ns(ClockType::Virtual)
                    - m.clocks.get_ns(ClockType::VirtualRt),
            }
        }),
        bql: crate::report::BqlReport::of(&m.bql, m.config.bql.policy),
        kicks: kick_report,
        timers: TimersReport {
            // Guest-visible callbacks: the iothread's, less its hand-off
            // timers, plus those run at the vCPUs' deadlines.
            fired: io_fired.saturating_sub(vcpus.iter().map(|v| v.handoffs).sum::<u64>())
                + vcpus.iter().map(|v| v.timers_run).sum::<u64>(),
            lateness_ns: io_lateness,
        },
        vcpus: vcpus.iter().map(VcpuReport::from).collect(),
        host: HostFacts::collect(),
        config: serde_json::to_value(cfg).unwrap_or(serde_json::Value::Null),
    };
    let mut hist_err = None;
    if let Some(f) = &hist_file {
        let snap = m.bql.profile().snapshot();
        let log = crate::report::hist_log(
            started,
            wall,
            &[
                ("bql_wait_ns", Some(&snap.wait)),
                ("bql_hold_ns", Some(&snap.hold)),
                ("kick_running_ns", kick_running.as_ref()),
                ("kick_halted_ns", kick_halted.as_ref()),
                (
                    "iothread_lateness_ns",
                    io_stats.as_ref().map(|s| &s.lateness),
                ),
                ("icount_handoff_ns", handoff.as_ref()),
                ("icount_lateness_vns", lateness_vns.as_ref()),
                ("icount_barrier_wait_ns", barrier_wait.as_ref()),
                ("icount_access_wait_ns", access_wait.as_ref()),
            ],
        );
        hist_err = match log {
            Ok(bytes) => f.write_bytes(&bytes).err(),
            Err(what) => Some(StatsError {
                option: f.option(),
                path: f.path().display().to_string(),
                what,
            }),
        };
    }
    let trace_err = match (&trace_file, &trace) {
        (Some(f), Some(t)) => f.write_bytes(t.to_json().as_bytes()).err(),
        _ => None,
    };
    if let Some(f) = &stats_file {
        if let Err(err) = f.write(&report) {
            return Err(RunError::ReportWrite {
                report: Box::new(report),
                err,
            });
        }
    }
    if let Some(err) = hist_err.or(trace_err) {
        return Err(RunError::ReportWrite {
            report: Box::new(report),
            err,
        });
    }
    Ok(report)
}
