//! The run report (`--stats FILE`): one JSON document per run with the
//! configuration, the host facts and every figure — the one output path for
//! measurements.
//!
//! Schema 1 (fields are only ever added):
//! ```json
//! { "schema": 1,
//!   "exit": {"reason": "finisher_pass", "code": 0},
//!   "wall_ns": 123, "vm_clock_ns": 456,
//!   "instructions": {"total": 789, "per_vcpu": [789]},
//!   "mips": 6.4, "peak_rss_bytes": 1234,
//!   "icount": {"shift": 3, "shift_changes": [[0, 3]]} | null,
//!   "timers": {"fired": 5, "lateness_ns": {"p50":…, "p99":…, "p999":…, "max":…, "count":…}},
//!   "vcpus": [{"hart": 0, "instructions": …, "mmio": …, …}],
//!   "host": {…}, "config": {…} }
//! ```

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::host::HostFacts;
use crate::runstate::ExitStatus;
use crate::vcpu::VcpuStats;

/// Summary of a latency histogram.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Percentiles {
    /// Median.
    pub p50: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Maximum.
    pub max: u64,
    /// Number of samples.
    pub count: u64,
}

impl Percentiles {
    /// Summarise `h`.
    pub fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            p50: h.value_at_quantile(0.5),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            count: h.len(),
        }
    }
}

/// Instruction counts.
#[derive(Clone, Debug, Serialize)]
pub struct Instructions {
    /// Sum over vCPUs.
    pub total: u64,
    /// One entry per hart.
    pub per_vcpu: Vec<u64>,
}

/// icount figures.
#[derive(Clone, Debug, Serialize)]
pub struct IcountReport {
    /// Shift at the end of the run.
    pub shift: u32,
    /// (wall ns since start, new shift), starting with the initial shift.
    pub shift_changes: Vec<(u64, u32)>,
    /// Final bias in ns.
    pub bias_ns: i64,
    /// Real-time cost of handing VIRTUAL timers to the iothread
    /// (`--icount-timers iothread`), if any happened.
    pub handoff_ns: Option<Percentiles>,
}

/// Timer figures.
#[derive(Clone, Debug, Serialize)]
pub struct TimersReport {
    /// Callbacks run (iothread and vCPU threads).
    pub fired: u64,
    /// Real-time lateness of the iothread's timers in ns.
    pub lateness_ns: Percentiles,
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// Schema version.
    pub schema: u32,
    /// How the run ended.
    pub exit: ExitStatus,
    /// Wall time from just before the vCPU threads start to shutdown.
    pub wall_ns: u64,
    /// VIRTUAL at the end.
    pub vm_clock_ns: i64,
    /// Instructions retired.
    pub instructions: Instructions,
    /// Guest instructions per wall-clock microsecond.
    pub mips: f64,
    /// Peak RSS of the process.
    pub peak_rss_bytes: u64,
    /// icount, when enabled.
    pub icount: Option<IcountReport>,
    /// Timers.
    pub timers: TimersReport,
    /// Per-vCPU figures.
    pub vcpus: Vec<VcpuStats>,
    /// Host facts.
    pub host: HostFacts,
    /// The configuration.
    pub config: serde_json::Value,
}

impl RunReport {
    /// Write as pretty JSON to `path`.
    pub fn write(&self, path: &std::path::Path) -> std::io::Result<()> {
        let s = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, s + "\n")
    }
}
