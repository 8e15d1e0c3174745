//! The run report (`--stats FILE`): one JSON document per run with the
//! configuration, the host facts and every figure — the one output path for
//! measurements. The fields, with their units, are listed in
//! `docs/report.md`.
//!
//! Schema 2 (schema 1 had `timeout` as `{"secs","nanos"}`, `pc` as a number,
//! `shift_changes` as pairs, and no `started_at`/`argv`):
//! ```json
//! { "schema": 2, "started_at": "2026-12-01T13:45:07.123Z", "argv": ["vcpulab", "run", …],
//!   "exit": {"reason": "finisher_pass", "code": 0, "signal": null, "message": null},
//!   "wall_ns": 123, "vm_clock_ns": 456,
//!   "instructions": {"total": 789, "per_vcpu": [789]},
//!   "mips": 6.4, "peak_rss_bytes": 1234,
//!   "icount": {"shift": 3, "shift_changes": [{"wall_ns": 0, "shift": 3}], …} | null,
//!   "timers": {"fired": 5, "lateness_ns": {"p50":…, "p99":…, "p999":…, "max":…, "count":…}},
//!   "bql": {"policy": "mmio", "lock": "parking_lot", "acquisitions": …, "contended": …,
//!           "wait_ns_over": "contended acquisitions", "wait_ns": {…}, "hold_ns": {…},
//!           "hold_sample": 64, "wanted_requests": 0,
//!           "sites": [{"site", "acquisitions", "contended", "wait_ns_total", "hold_ns_total", "wait_ns_max"}]},
//!   "vcpus": [{"hart": 0, "instructions": …, "pc": "0x80000010", "last_trap": {"cause": 2, "pc": "0x80000010"} | null, …}],
//!   "host": {…}, "config": {"timeout_ns": …, "machine": {"memory_bytes": …, …}, …} }
//! ```
//!
//! # Writing
//! [`StatsFile::prepare`] runs before the guest starts: it checks that the
//! file can be created (a temporary file in the same directory) and removes a
//! report left by an earlier run, so a stale file never passes for this run.
//! [`StatsFile::write`] writes the whole document to a temporary file in the
//! same directory and renames it over the path, so a reader (or a crash)
//! never sees half a report.

use std::path::{Path, PathBuf};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::accel::vcpu::VcpuStats;
use crate::host::HostFacts;
use crate::runstate::ExitReason;

/// The current schema version.
pub const SCHEMA: u32 = 2;

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

/// Kick latency: from `CpuShared::kick` to the vCPU consuming the exit
/// request, for the first unobserved kick each time (later ones before it
/// looks are observed together with it).
#[derive(Clone, Debug, Serialize)]
pub struct KickReport {
    /// `--kick`.
    pub mechanism: crate::sync::kick::KickKind,
    /// Kicks that found the vCPU running (it leaves guest code at its next
    /// TB boundary), ns.
    pub running_ns: Percentiles,
    /// Kicks that found it halted in `wfi` (it is woken), ns.
    pub halted_ns: Percentiles,
}

/// The BQL: its policy and lock, and its profile over the whole run.
#[derive(Clone, Debug, Serialize)]
pub struct BqlReport {
    /// `--bql`.
    pub policy: crate::sync::bql::BqlPolicy,
    /// `--bql-lock`.
    pub lock: crate::sync::bql::LockKind,
    /// Every acquisition, contended or not.
    pub acquisitions: u64,
    /// Acquisitions whose first try failed.
    pub contended: u64,
    /// What `wait_ns` is over: always `"contended acquisitions"` (an
    /// uncontended acquisition waits 0 and is not timed).
    pub wait_ns_over: &'static str,
    /// Wait of the contended acquisitions, ns.
    pub wait_ns: Percentiles,
    /// Hold times of the sampled acquisitions, ns.
    pub hold_ns: Percentiles,
    /// One acquisition in this many (per call site) had its hold timed.
    pub hold_sample: u32,
    /// Times a thread asked a vCPU holding the BQL while executing
    /// (`always`) to let go.
    pub wanted_requests: u64,
    /// Per call site, merged over threads, largest total wait first.
    pub sites: Vec<BqlSiteReport>,
}

/// One call site of the BQL.
#[derive(Clone, Debug, Serialize)]
pub struct BqlSiteReport {
    /// `file:line`.
    pub site: String,
    /// All acquisitions there.
    pub acquisitions: u64,
    /// Contended ones.
    pub contended: u64,
    /// Total wait, ns.
    pub wait_ns_total: u64,
    /// Estimated total hold, ns (sampled mean × acquisitions).
    pub hold_ns_total: u64,
    /// Longest wait, ns.
    pub wait_ns_max: u64,
}

impl BqlReport {
    /// The report of `bql` under `policy`.
    pub fn of(bql: &crate::sync::bql::Bql, policy: crate::sync::bql::BqlPolicy) -> BqlReport {
        let snap = bql.profile().snapshot();
        BqlReport {
            policy,
            lock: bql.kind(),
            acquisitions: snap.acquisitions(),
            contended: snap.contended(),
            wait_ns_over: "contended acquisitions",
            wait_ns: Percentiles::of(&snap.wait),
            hold_ns: Percentiles::of(&snap.hold),
            hold_sample: snap.hold_sample,
            wanted_requests: bql.wanted_requests(),
            sites: snap
                .by_site(true, crate::sync::bql::SortBy::TotalWait)
                .into_iter()
                .map(|s| BqlSiteReport {
                    hold_ns_total: s.hold_ns_total(),
                    site: s.site,
                    acquisitions: s.acquisitions,
                    contended: s.contended,
                    wait_ns_total: s.wait_ns_total,
                    wait_ns_max: s.wait_ns_max,
                })
                .collect(),
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

/// One change of the icount shift (`shift=auto`).
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct ShiftChange {
    /// Wall time since the start of the run, in ns.
    pub wall_ns: u64,
    /// The new shift.
    pub shift: u32,
}

/// icount figures.
#[derive(Clone, Debug, Serialize)]
pub struct IcountReport {
    /// Shift at the end of the run.
    pub shift: u32,
    /// Every shift in force, starting with the initial shift at 0 ns.
    pub shift_changes: Vec<ShiftChange>,
    /// Final bias in ns.
    pub bias_ns: i64,
    /// Real-time cost of handing VIRTUAL timers to the iothread
    /// (`--icount-timers iothread`), if any happened.
    pub handoff_ns: Option<Percentiles>,
}

/// The SMP icount figures (`docs/time.md`, "SMP icount"), in every icount
/// mode, so that a sweep can put the modes side by side.
#[derive(Clone, Debug, Serialize)]
pub struct IcountSmpReport {
    /// `rr`, `global` or `local`.
    pub mode: &'static str,
    /// `local,quantum=Q`: Q in ns; `null` otherwise.
    pub quantum_ns: Option<u64>,
    /// Per vCPU, in hart order: instructions retired, and the vCPU's virtual
    /// time at the end (its own clock under `local`, the machine's VIRTUAL
    /// otherwise).
    pub vcpus: Vec<VcpuClock>,
    /// How late the VIRTUAL timers run at the vCPUs' deadlines were, in
    /// virtual ns (VIRTUAL when the callback ran, less its deadline): 0
    /// under `rr` (a budget stops exactly there); up to a TB per vCPU under
    /// `global`; up to a quantum under `local,quantum` for a deadline armed
    /// within one.
    pub lateness_vns: Percentiles,
    /// `local,quantum`: real ns each vCPU waited at a quantum barrier.
    pub barrier_wait_ns: Percentiles,
    /// `local,quantum`: real ns a device access waited for its turn in
    /// virtual-time order (accesses that did not wait are not counted).
    pub access_wait_ns: Percentiles,
    /// Time values (rdtime, mtime through the CLINT) a hart read that were
    /// less than one some hart had read earlier in host order.
    pub inversions: Inversions,
    /// VIRTUAL less VIRTUAL_RT (host time while running) at the end, ns:
    /// how far guest time ran ahead of (positive) or behind real time.
    pub drift_ns: i64,
}

/// One vCPU's clock at the end of a run.
#[derive(Clone, Debug, Serialize)]
pub struct VcpuClock {
    /// Instructions retired.
    pub instructions: u64,
    /// Virtual time, ns.
    pub vtime_ns: i64,
}

/// Cross-vCPU time inversions the guest saw.
#[derive(Clone, Debug, Serialize)]
pub struct Inversions {
    /// How many reads went back.
    pub count: u64,
    /// The largest step back, ns (mtime ticks are 100 ns).
    pub max_ns: u64,
}

/// Timer figures.
#[derive(Clone, Debug, Serialize)]
pub struct TimersReport {
    /// Callbacks run (iothread and vCPU threads).
    pub fired: u64,
    /// Real-time lateness of the iothread's timers in ns.
    pub lateness_ns: Percentiles,
}

/// How the run ended.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct ExitReport {
    /// Why: authoritative (a finisher's code may equal one of vcpulab's own
    /// statuses, e.g. 124).
    pub reason: ExitReason,
    /// The process exit status.
    pub code: i32,
    /// The signal number, for `sigint`, `sigterm`, `sighup`.
    pub signal: Option<i32>,
    /// The line printed on stderr about it (a signal's sender, a host
    /// error), if any.
    pub message: Option<String>,
}

/// A guest address as stderr prints it (`0x80000010`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hex(pub u64);

impl Serialize for Hex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{:#x}", self.0))
    }
}

/// The last trap a hart took.
#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct LastTrap {
    /// `mcause` (bit 63 set for an interrupt).
    pub cause: u64,
    /// What the cause means.
    pub cause_name: &'static str,
    /// The pc it was taken at (`mepc`).
    pub pc: Hex,
}

/// The name of a machine-mode trap cause (`mcause`).
pub fn cause_name(mcause: u64) -> &'static str {
    if mcause >> 63 == 1 {
        return match mcause & !(1 << 63) {
            1 => "supervisor software interrupt",
            3 => "machine software interrupt",
            5 => "supervisor timer interrupt",
            7 => "machine timer interrupt",
            9 => "supervisor external interrupt",
            11 => "machine external interrupt",
            _ => "interrupt",
        };
    }
    match mcause {
        0 => "instruction address misaligned",
        1 => "instruction access fault",
        2 => "illegal instruction",
        3 => "breakpoint",
        4 => "load address misaligned",
        5 => "load access fault",
        6 => "store/AMO address misaligned",
        7 => "store/AMO access fault",
        8 => "environment call from U-mode",
        9 => "environment call from S-mode",
        11 => "environment call from M-mode",
        12 => "instruction page fault",
        13 => "load page fault",
        15 => "store/AMO page fault",
        _ => "exception",
    }
}

/// Per-vCPU figures.
#[derive(Clone, Debug, Serialize)]
pub struct VcpuReport {
    /// Hart id.
    pub hart: usize,
    /// Instructions retired.
    pub instructions: u64,
    /// Device accesses.
    pub mmio: u64,
    /// Exceptions and interrupts taken.
    pub traps: u64,
    /// The last of them, if any.
    pub last_trap: Option<LastTrap>,
    /// Times the hart halted in `wfi`.
    pub halts: u64,
    /// Kicks received.
    pub kicks: u64,
    /// TB cache flushes.
    pub tb_flushes: u64,
    /// VIRTUAL timer callbacks run at this vCPU's deadlines (icount).
    pub timers_run: u64,
    /// Hand-offs of VIRTUAL timers to the iothread.
    pub handoffs: u64,
    /// pc when the thread ended.
    pub pc: Hex,
    /// `running` or `halted` (in `wfi`) when the run ended.
    pub state: &'static str,
    /// `mie` when the run ended.
    pub mie: Hex,
    /// The hash of the hart's guest-visible events.
    pub trace_hash: Hex,
}

impl From<&VcpuStats> for VcpuReport {
    fn from(s: &VcpuStats) -> VcpuReport {
        VcpuReport {
            hart: s.hart,
            instructions: s.instructions,
            mmio: s.mmio,
            traps: s.traps,
            last_trap: s.last_trap.map(|(cause, pc)| LastTrap {
                cause,
                cause_name: cause_name(cause),
                pc: Hex(pc),
            }),
            halts: s.halts,
            kicks: s.kicks,
            tb_flushes: s.tb_flushes,
            timers_run: s.timers_run,
            handoffs: s.handoffs,
            pc: Hex(s.pc),
            state: if s.halted { "halted" } else { "running" },
            mie: Hex(s.mie),
            trace_hash: Hex(s.trace_hash),
        }
    }
}

/// The whole report.
#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    /// Schema version ([`SCHEMA`]).
    pub schema: u32,
    /// When the run started (RFC 3339, UTC).
    pub started_at: String,
    /// The command line.
    pub argv: Vec<String>,
    /// How the run ended.
    pub exit: ExitReport,
    /// Wall time from just before the vCPU threads start to shutdown.
    pub wall_ns: u64,
    /// VIRTUAL at the end.
    pub vm_clock_ns: i64,
    /// Instructions retired.
    pub instructions: Instructions,
    /// FNV-1a over the harts' trace hashes (their little-endian bytes, in
    /// hart order): one value that says whether two runs' harts saw the same
    /// events.
    pub trace_hash: Hex,
    /// Guest instructions per wall-clock microsecond.
    pub mips: f64,
    /// Peak RSS of the process.
    pub peak_rss_bytes: u64,
    /// icount, when enabled.
    pub icount: Option<IcountReport>,
    /// What guest time meant with several vCPUs (icount only).
    pub icount_smp: Option<IcountSmpReport>,
    /// Timers.
    pub timers: TimersReport,
    /// The BQL and its profile.
    pub bql: BqlReport,
    /// Kick latencies.
    pub kicks: KickReport,
    /// Per-vCPU figures.
    pub vcpus: Vec<VcpuReport>,
    /// Host facts.
    pub host: HostFacts,
    /// The configuration.
    pub config: serde_json::Value,
}

/// A report file that could not be prepared or written: one line naming it.
#[derive(Debug, thiserror::Error)]
#[error("{option} '{path}': {what}")]
pub struct StatsError {
    /// The option that named the file (`--stats`, `--hist-log`, `--trace`).
    pub option: &'static str,
    /// The file.
    pub path: String,
    /// What went wrong.
    pub what: String,
}

/// The `--stats` file of a run.
#[derive(Clone, Debug)]
pub struct StatsFile {
    option: &'static str,
    path: PathBuf,
    dir: PathBuf,
}

impl StatsFile {
    /// Checks before the guest starts that `path` can be written (its
    /// directory exists and accepts a new file, and `path` is not a
    /// directory), and removes the report of an earlier run there.
    pub fn prepare(path: &Path) -> Result<StatsFile, StatsError> {
        StatsFile::prepare_for(path, "--stats")
    }

    /// As [`StatsFile::prepare`], for the file of `option` (which its
    /// errors name).
    pub fn prepare_for(path: &Path, option: &'static str) -> Result<StatsFile, StatsError> {
        let e = |what: String| StatsError {
            option,
            path: path.display().to_string(),
            what,
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if path.file_name().is_none() {
            return Err(e("expected a file path, not a directory".into()));
        }
        match std::fs::symlink_metadata(path) {
            Ok(md) if md.is_dir() => {
                return Err(e("is a directory; expected a file path".into()));
            }
            Ok(_) => std::fs::remove_file(path)
                .map_err(|err| e(format!("cannot replace the existing file: {err}")))?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(e(format!("cannot check the path: {err}"))),
        }
        match std::fs::metadata(&dir) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => return Err(e(format!("'{}' is not a directory", dir.display()))),
            Err(err) => {
                return Err(e(format!(
                    "directory '{}' is not usable: {err}",
                    dir.display()
                )));
            }
        }
        tempfile::Builder::new()
            .prefix(".vcpulab-report-")
            .tempfile_in(&dir)
            .map_err(|err| {
                e(format!(
                    "cannot create a file in '{}': {err}",
                    dir.display()
                ))
            })?;
        Ok(StatsFile {
            option,
            path: path.to_path_buf(),
            dir,
        })
    }

    /// The option that named the file.
    pub fn option(&self) -> &'static str {
        self.option
    }

    /// The path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `report` atomically: a temporary file in the same directory,
    /// renamed over the path.
    pub fn write(&self, report: &RunReport) -> Result<(), StatsError> {
        let mut s = serde_json::to_string_pretty(report).map_err(|err| StatsError {
            option: self.option,
            path: self.path.display().to_string(),
            what: format!("cannot encode the report: {err}"),
        })?;
        s.push('\n');
        self.write_bytes(s.as_bytes())
    }

    /// Writes `data` atomically, as [`StatsFile::write`] does.
    pub fn write_bytes(&self, data: &[u8]) -> Result<(), StatsError> {
        use std::io::Write as _;
        let e = |what: String| StatsError {
            option: self.option,
            path: self.path.display().to_string(),
            what,
        };
        let mut tmp = tempfile::Builder::new()
            .prefix(".vcpulab-report-")
            .tempfile_in(&self.dir)
            .map_err(|err| {
                e(format!(
                    "cannot create a file in '{}': {err}",
                    self.dir.display()
                ))
            })?;
        tmp.write_all(data)
            .and_then(|_| tmp.as_file().sync_data())
            .map_err(|err| e(format!("cannot write: {err}")))?;
        tmp.persist(&self.path).map_err(|err| {
            e(format!(
                "cannot rename the report into place: {}",
                err.error
            ))
        })?;
        Ok(())
    }
}

/// The run's latency histograms in the HdrHistogram interval-log format
/// (`--hist-log`): one interval per histogram, spanning the run, tagged with
/// its name (the report's field names: `bql_wait_ns`, `bql_hold_ns`,
/// `kick_running_ns`, `kick_halted_ns`, `iothread_lateness_ns`,
/// `icount_handoff_ns`). Empty histograms are left out. Values are ns.
/// Read with HdrHistogram's `HistogramLogReader` or `hdr-plot`.
pub fn hist_log(
    started: std::time::SystemTime,
    wall: std::time::Duration,
    hists: &[(&str, Option<&hdrhistogram::Histogram<u64>>)],
) -> Result<Vec<u8>, String> {
    use hdrhistogram::serialization::V2DeflateSerializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
    let mut buf = Vec::new();
    let mut ser = V2DeflateSerializer::new();
    {
        let mut log = IntervalLogWriterBuilder::new()
            .add_comment("vcpulab run: latency histograms in ns, one interval per histogram over the whole run")
            .with_start_time(started)
            .with_base_time(started)
            .begin_log_with(&mut buf, &mut ser)
            .map_err(|e| format!("cannot begin the histogram log: {e}"))?;
        for (name, h) in hists {
            let Some(h) = h.filter(|h| !h.is_empty()) else {
                continue;
            };
            log.write_histogram(h, std::time::Duration::ZERO, wall, Tag::new(name))
                .map_err(|e| format!("cannot write histogram {name}: {e:?}"))?;
        }
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_checks_and_removes_a_stale_report() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        std::fs::write(&p, "old").unwrap();
        let f = StatsFile::prepare(&p).unwrap();
        assert!(!p.exists(), "stale report removed");
        assert!(StatsFile::prepare(dir.path()).is_err());
        let e = StatsFile::prepare(&dir.path().join("no/such/x.json")).unwrap_err();
        assert!(e.to_string().contains("no/such/x.json"), "{e}");
        assert!(e.to_string().starts_with("--stats '"), "{e}");
        let e = StatsFile::prepare_for(dir.path(), "--trace").unwrap_err();
        assert!(e.to_string().starts_with("--trace '"), "{e}");
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let _ = f;
    }

    #[test]
    fn hex_and_causes() {
        assert_eq!(
            serde_json::to_string(&Hex(0x8000_0010)).unwrap(),
            "\"0x80000010\""
        );
        assert_eq!(cause_name(2), "illegal instruction");
        assert_eq!(cause_name((1 << 63) | 7), "machine timer interrupt");
    }
}
