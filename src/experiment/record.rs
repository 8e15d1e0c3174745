//! One run of a sweep as it is stored: a line of `runs.jsonl`, the unit
//! that resume, `--shard`, `vcpulab report` and the plots work on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How a run ended, as far as the sweep is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The guest ran to its end (its exit status is in `exit_code`).
    Done,
    /// The process failed: a guest FAIL, a host error, a crash.
    Failed,
    /// Cut by the run's time limit.
    Timeout,
    /// Not run, for a reason (e.g. the QEMU it needs is not installed).
    Skipped,
}

impl Status {
    /// The word used in tables and CSV.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Done => "done",
            Status::Failed => "failed",
            Status::Timeout => "timeout",
            Status::Skipped => "skipped",
        }
    }
}

/// The host a run came from (the fields that tell hosts apart in tables).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RunHost {
    /// Host name.
    pub hostname: String,
    /// Logical CPUs.
    pub cores: usize,
    /// CPU model.
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
}

/// One run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    /// The experiment's name.
    pub experiment: String,
    /// Resume key: a hash of the configuration, the repetition, the commit
    /// and the host. A directory holds at most one record per key.
    pub key: String,
    /// A hash of the configuration alone: the repetitions of one
    /// configuration share it (on every host and commit).
    pub config_id: String,
    /// The value of every axis of the experiment for this run (the run
    /// option's long name, `param.NAME`, `backend` or `load`), as written
    /// in the experiment file; `n/a` where an axis does not apply to the
    /// backend (e.g. `bql` on QEMU).
    pub config: BTreeMap<String, String>,
    /// `vcpulab`, `qemu-10.0` or `qemu-7.2`.
    pub backend: String,
    /// Repetition, from 0.
    pub rep: u32,
    /// How the run ended.
    pub status: Status,
    /// Why it was skipped or failed, in a line.
    pub reason: Option<String>,
    /// The process's exit status, when it exited.
    pub exit_code: Option<i32>,
    /// Wall time of the process as the runner measured it (start-up
    /// included), in ns.
    pub wall_ns: u64,
    /// Work the guest reported (the sum of the numbers after the
    /// experiment's `work` token in its output).
    pub work: Option<u64>,
    /// `work` per wall second.
    pub throughput: Option<f64>,
    /// FNV-1a of the guest's whole output (hex): equal outputs, equal hash.
    pub output_hash: String,
    /// The output's first lines (at most 2 KiB).
    pub output_head: String,
    /// Host spinner threads the runner ran beside the guest.
    pub load: u32,
    /// The vcpulab commit of the runner.
    pub commit: String,
    /// The QEMU version string, for QEMU runs.
    pub qemu_version: Option<String>,
    /// The host.
    pub host: RunHost,
    /// When the run started (RFC 3339, UTC).
    pub started_at: String,
    /// The command that was run (for a person to rerun it).
    pub command: Vec<String>,
    /// The run's HdrHistogram log, relative to the result directory.
    pub hist_log: Option<String>,
    /// The figures of the run by name: `wall_s`, `work`, `throughput`,
    /// derived ones (`vcpu_spread`, the spread of per-vCPU progress:
    /// (max − min) / mean of the instructions per vCPU), and every
    /// numeric leaf of the vcpulab run report by its dotted path
    /// (`bql.wait_ns.p99`, `icount_smp.drift_ns`, `vcpus.0.instructions`).
    pub metrics: BTreeMap<String, f64>,
    /// The whole vcpulab run report (`--stats`), for vcpulab runs that
    /// wrote one (its per-site BQL table, per-vCPU figures, …).
    pub report: Option<serde_json::Value>,
}
