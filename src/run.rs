//! Running a machine: start the iothread and one thread per vCPU, wait for
//! the guest to finish (or `--timeout`), stop everything, and report.
//!
//! QEMU analogue: `system/vl.c` (`qemu_init`, `qemu_main_loop`) and
//! `system/cpus.c` (`qemu_init_vcpu`, `vm_start`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use serde::Serialize;

use crate::clock::ClockType;
use crate::config::{IcountShift, MachineConfig};
use crate::devices::uart::Sink;
use crate::host::{HostFacts, peak_rss_bytes};
use crate::icount::Adjuster;
use crate::iothread::{IoThread, IoThreadConfig, IoTimerMode};
use crate::loader::LoadError;
use crate::machine::Machine;
use crate::monitor::MonitorSpec;
use crate::report::{IcountReport, Instructions, Percentiles, RunReport, TimersReport};
use crate::runstate::{ExitReason, ExitStatus};
use crate::vcpu::{VcpuStats, vcpu_thread_fn};

/// Everything `vcpulab run` needs.
#[derive(Clone, Debug, Serialize)]
pub struct RunConfig {
    /// The machine.
    pub machine: MachineConfig,
    /// Wall-clock limit.
    pub timeout: Option<Duration>,
    /// Where to write the JSON report.
    pub stats: Option<PathBuf>,
    /// How the iothread sleeps until deadlines.
    #[serde(serialize_with = "ser_mode")]
    pub iothread_timer: IoTimerMode,
    /// The monitor (`--monitor`), served by the iothread.
    pub monitor: Option<MonitorSpec>,
}

fn ser_mode<S: serde::Serializer>(m: &IoTimerMode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match m {
        IoTimerMode::Timerfd => "timerfd",
        IoTimerMode::Poll => "poll",
    })
}

/// A run that could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The kernel could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// A host resource (thread, timerfd, poll) failed.
    #[error("host error: {0}")]
    Io(#[from] std::io::Error),
}

/// Run the machine to completion; the report is also written to
/// `cfg.stats` if set.
pub fn run(cfg: &RunConfig, out: Sink) -> Result<RunReport, RunError> {
    let (m, parkers) = Machine::new(cfg.machine.clone(), out)?;
    let icount = m.config.icount.is_some();

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
        handlers.push(crate::monitor::handler(spec, m.clone())?);
    }
    let bql_m = m.clone();
    let io = IoThread::spawn(
        m.clocks.clone(),
        m.timers.clone(),
        IoThreadConfig {
            mode: cfg.iothread_timer,
            exclude_virtual: icount,
            handlers,
            wrap_timers: Some(Box::new(move |f: &mut dyn FnMut()| {
                let _g = bql_m.bql.lock();
                f()
            })),
        },
    )?;

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
    for (i, parker) in parkers.into_iter().enumerate() {
        let m2 = m.clone();
        let tx = done_tx.clone();
        let j = std::thread::Builder::new()
            .name(format!("vcpu-{i}"))
            .spawn(move || {
                let s = vcpu_thread_fn(m2.clone(), i, parker);
                // A vCPU that ends makes the whole machine end (shutdown was
                // requested, or the thread panicked: then it is a host bug).
                let _ = tx.send(s);
            })?;
        joins.push(j);
    }
    drop(done_tx);

    let mut stats: Vec<Option<VcpuStats>> = vec![None; m.cpus.len()];
    let mut remaining = m.cpus.len();
    while remaining > 0 {
        let wait = match cfg.timeout {
            Some(t) => t.saturating_sub(start.elapsed()),
            None => Duration::from_secs(3600),
        };
        match done_rx.recv_timeout(wait) {
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
            Err(RecvTimeoutError::Timeout) => {
                if cfg.timeout.is_some_and(|t| start.elapsed() >= t) && !m.run.shutdown_requested()
                {
                    m.run.request_shutdown(ExitStatus {
                        reason: ExitReason::Timeout,
                        code: 124,
                    });
                    m.kick_all();
                }
            }
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
    let wall = start.elapsed();
    for j in joins {
        let _ = j.join();
    }
    let io_stats = io.stop();
    m.uart.flush();

    let mut handoff: Option<hdrhistogram::Histogram<u64>> = None;
    for s in stats.iter().flatten() {
        if let Some(h) = &s.handoff_ns {
            match &mut handoff {
                Some(all) => {
                    let _ = all.add(h);
                }
                None => handoff = Some(h.clone()),
            }
        }
    }
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
        schema: 1,
        exit,
        wall_ns: wall.as_nanos() as u64,
        vm_clock_ns: m.clocks.get_ns(ClockType::Virtual),
        instructions: Instructions { total, per_vcpu },
        mips: total as f64 / wall.as_secs_f64().max(1e-9) / 1e6,
        peak_rss_bytes: peak_rss_bytes(),
        icount: m.icount.as_ref().map(|ic| IcountReport {
            shift: ic.shift(),
            shift_changes: adjuster
                .as_ref()
                .map(|a| a.changes())
                .unwrap_or_else(|| vec![(0, ic.shift())]),
            handoff_ns: handoff.as_ref().map(Percentiles::of),
            bias_ns: ic.bias(),
        }),
        timers: TimersReport {
            // Guest-visible callbacks: the iothread's, less its hand-off
            // timers, plus those run at the vCPUs' deadlines.
            fired: io_stats.timers_fired - vcpus.iter().map(|v| v.handoffs).sum::<u64>()
                + vcpus.iter().map(|v| v.timers_run).sum::<u64>(),
            lateness_ns: Percentiles::of(&io_stats.lateness),
        },
        vcpus,
        host: HostFacts::collect(),
        config: serde_json::to_value(cfg).unwrap_or(serde_json::Value::Null),
    };
    if let Some(p) = &cfg.stats {
        report.write(p)?;
    }
    Ok(report)
}
