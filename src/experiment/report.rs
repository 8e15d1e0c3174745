//! The report of an experiment: everything computed from a set of
//! [`RunRecord`]s — `summary.md` (tables a person reads), `runs.csv` (one flat
//! row per run, for other tools) and `plots/*.svg` (see [`super::plot`]).
//!
//! # What summary.md holds
//! The experiment's title, description and the command that reruns it; the
//! commits and the time span of the runs; the facts of every host, with a line
//! for each host whose runs kept more threads busy than it has cores (the
//! runner's `threads` metric); the run counts by status and the reasons of the
//! runs that did not finish, grouped; one table per host (hosts are never
//! mixed in a row) with a row per configuration (`config_id`); the plots with
//! their captions; and, when the runs carry the BQL's per-site table, the
//! sites of the most contended configuration as QEMU's `info sync-profile`
//! shows them.
//!
//! # Figures
//! A table cell is computed over the *done* runs of a configuration on one
//! host: the median (the mean of the two middle values for an even count) and
//! the spread — min–max when there are fewer than [`IQR_MIN_RUNS`] runs,
//! otherwise p25–p75 (linear interpolation between the closest ranks, as
//! numpy's default). `outputs` counts the distinct output hashes of those
//! runs: 1 means the guest's output was the same every time.
//!
//! Numbers are written by [`format_metric`]: three significant digits; values
//! of 1000 and more with an SI prefix (`1.23 k`, `4.56 M`, `7.89 G`, `T`, `P`);
//! metrics whose name ends in `_ns` or has a `_ns.` path segment (other than a
//! `.count` leaf) are durations in ns and are written in ns, µs, ms or s
//! (`456 µs`); `_s` likewise in seconds; `_bytes` in B, KiB, MiB, GiB.
//!
//! # Writing
//! Every file is written by [`atomic_write`]: a temporary file in the same
//! directory, renamed over the target, so a failure (an unwritable directory,
//! a full disk) leaves the files of an earlier report whole. The plots are
//! written first, then `runs.csv`, then `summary.md`. The output is a function
//! of the records alone: the same records give the same bytes, whatever their
//! order.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::plot;
use super::record::{RunHost, RunRecord, Status};

/// From this many done runs on, a configuration's spread is p25–p75 instead
/// of min–max.
pub const IQR_MIN_RUNS: usize = 5;

/// The number of call sites shown in the BQL per-site table.
const BQL_TOP_SITES: usize = 10;

/// What a report shows: the experiment's description and its figures.
#[derive(Clone, Debug)]
pub struct ReportSpec {
    /// Experiment name, e.g. `bql-policies`.
    pub name: String,
    /// One line.
    pub title: String,
    /// Markdown: the question the experiment answers.
    pub description: String,
    /// The command that reruns it, e.g. `vcpulab experiment experiments/quick.toml`.
    pub command: String,
    /// The swept axes in file order (keys of [`RunRecord::config`]).
    pub axes: Vec<String>,
    /// The figures of the tables.
    pub metrics: Vec<MetricSpec>,
    /// The plots.
    pub plots: Vec<PlotSpec>,
    /// The axes of this experiment that do not apply to QEMU rows.
    pub not_for_qemu: Vec<String>,
}

/// A figure of the tables.
#[derive(Clone, Debug)]
pub struct MetricSpec {
    /// Key of [`RunRecord::metrics`], e.g. `throughput`, `bql.wait_ns.p99`.
    pub name: String,
    /// What a table header or a plot axis calls it (default: the name).
    pub label: Option<String>,
}

/// How a plot draws its series.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlotKind {
    /// Points joined by lines, one line per series.
    Line,
    /// Grouped bars, one group per x category, one bar per series.
    Bar,
}

/// One plot: a metric against an axis, one series per combination of other
/// axes.
#[derive(Clone, Debug)]
pub struct PlotSpec {
    /// y: key of [`RunRecord::metrics`].
    pub metric: String,
    /// x: an axis (key of [`RunRecord::config`]).
    pub x: String,
    /// Axes whose value combination makes one series (empty: one series).
    pub series: Vec<String>,
    /// Title (default: "LABEL vs X").
    pub title: Option<String>,
    /// Logarithmic x axis (numeric axes only).
    pub log_x: bool,
    /// Logarithmic y axis.
    pub log_y: bool,
    /// Lines or bars.
    pub kind: PlotKind,
    /// File stem of the SVG, e.g. `throughput-vs-smp`.
    pub file: String,
    /// Only the runs whose axes have these labels (`where` in the file):
    /// how a plot holds the axes it does not show at one value.
    pub only: Vec<(String, String)>,
}

/// Why a report could not be written.
#[derive(thiserror::Error, Debug)]
pub enum ReportError {
    /// A file or directory could not be created or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The CSV writer failed.
    #[error("{}: {source}", path.display())]
    Csv {
        /// The CSV file.
        path: PathBuf,
        /// The error.
        #[source]
        source: csv::Error,
    },
    /// A plot could not be drawn.
    #[error("{}: {message}", path.display())]
    Plot {
        /// The SVG file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// A plot's file stem is not a plain file name.
    #[error("plot file {file:?}: expected a non-empty file name without '/' or '..'")]
    PlotFile {
        /// The file stem as given.
        file: String,
    },
    /// Two plots would write the same file.
    #[error("plot file {file:?}: given to more than one plot; expected one file per plot")]
    DuplicatePlotFile {
        /// The file stem as given.
        file: String,
    },
}

/// The files [`write_report`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportFiles {
    /// `OUT/summary.md`.
    pub summary: PathBuf,
    /// `OUT/runs.csv`.
    pub csv: PathBuf,
    /// `OUT/plots/FILE.svg`, in the order of the spec (skipped plots left out).
    pub plots: Vec<PathBuf>,
}

/// Writes `bytes` to `path` atomically: a temporary file in the same
/// directory, flushed to disk and renamed over `path` (mode 0644). On an
/// error `path` is left as it was; the error names `path`.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), ReportError> {
    let io_err = |source| ReportError::Io {
        path: path.to_path_buf(),
        source,
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .tempfile_in(dir)
        .map_err(io_err)?;
    tmp.write_all(bytes).map_err(io_err)?;
    {
        use std::os::unix::fs::PermissionsExt;
        tmp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(io_err)?;
    }
    tmp.as_file().sync_all().map_err(io_err)?;
    tmp.persist(path).map_err(|e| io_err(e.error))?;
    Ok(())
}

/// Writes `OUT/summary.md`, `OUT/runs.csv` and `OUT/plots/*.svg`; every file
/// atomically (a temporary file in the same directory, then a rename), so an
/// error (unwritable directory, full disk) leaves the earlier files intact.
pub fn write_report(
    out: &Path,
    spec: &ReportSpec,
    records: &[RunRecord],
) -> Result<ReportFiles, ReportError> {
    check_plot_files(spec)?;
    let sorted = sorted_records(records);
    let plots_dir = out.join("plots");
    std::fs::create_dir_all(&plots_dir).map_err(|source| ReportError::Io {
        path: plots_dir.clone(),
        source,
    })?;

    let mut plot_paths = Vec::new();
    let mut plot_sections = Vec::new();
    for p in &spec.plots {
        let path = plots_dir.join(format!("{}.svg", p.file));
        let label = metric_label(spec, &p.metric);
        match plot::plot_data(p, records) {
            None => plot_sections.push(PlotSection::Skipped(p.clone())),
            Some(data) => {
                let title = plot_title(p, &label);
                let svg = plot::render_svg(p, &data, &label, &title).map_err(|message| {
                    ReportError::Plot {
                        path: path.clone(),
                        message,
                    }
                })?;
                atomic_write(&path, svg.as_bytes())?;
                plot_paths.push(path);
                plot_sections.push(PlotSection::Drawn {
                    spec: p.clone(),
                    title,
                    label,
                    notes: data.notes.clone(),
                    several_hosts: data.several_hosts,
                });
            }
        }
    }

    let csv_path = out.join("runs.csv");
    write_sorted_csv(&csv_path, spec, &sorted)?;

    let summary_path = out.join("summary.md");
    let md = summary_markdown(spec, &sorted, &plot_sections);
    atomic_write(&summary_path, md.as_bytes())?;

    Ok(ReportFiles {
        summary: summary_path,
        csv: csv_path,
        plots: plot_paths,
    })
}

/// Checks, before anything is written, that every plot's file stem is a
/// plain file name and no two plots share one.
fn check_plot_files(spec: &ReportSpec) -> Result<(), ReportError> {
    let mut seen = BTreeSet::new();
    for p in &spec.plots {
        if p.file.is_empty() || p.file.contains('/') || p.file.contains("..") {
            return Err(ReportError::PlotFile {
                file: p.file.clone(),
            });
        }
        if !seen.insert(p.file.as_str()) {
            return Err(ReportError::DuplicatePlotFile {
                file: p.file.clone(),
            });
        }
    }
    Ok(())
}

/// The fixed columns of `runs.csv` after the axes.
const CSV_FIXED: [&str; 16] = [
    "backend",
    "rep",
    "status",
    "reason",
    "exit_code",
    "wall_ns",
    "work",
    "throughput",
    "output_hash",
    "load",
    "commit",
    "qemu_version",
    "hostname",
    "cores",
    "cpu_model",
    "started_at",
];

/// Flat CSV (the csv crate): one row per record; columns: experiment, key,
/// config_id, each axis (spec.axes order, then any other config keys),
/// backend, rep, status, reason, exit_code, wall_ns, work, throughput,
/// output_hash, load, commit, qemu_version, hostname, cores, cpu_model,
/// started_at, then the union of all metrics keys (sorted); empty cells
/// where a record lacks one.
///
/// A column name appears once: a fixed column named like an axis (`backend`,
/// `load`) and a metric named like an earlier column (`throughput`, `work`)
/// are left out, as they hold the same value as the column of that name.
/// Rows are in a fixed order (host, configuration, repetition, key).
pub fn write_csv(path: &Path, spec: &ReportSpec, records: &[RunRecord]) -> Result<(), ReportError> {
    write_sorted_csv(path, spec, &sorted_records(records))
}

/// [`write_csv`] of records in their final order.
fn write_sorted_csv(
    path: &Path,
    spec: &ReportSpec,
    records: &[&RunRecord],
) -> Result<(), ReportError> {
    let csv_err = |source| ReportError::Csv {
        path: path.to_path_buf(),
        source,
    };
    let axes = all_axes(spec, records);
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut header: Vec<&str> = Vec::new();
    for name in ["experiment", "key", "config_id"]
        .into_iter()
        .chain(axes.iter().map(String::as_str))
    {
        if seen.insert(name) {
            header.push(name);
        }
    }
    let fixed: Vec<&str> = CSV_FIXED
        .iter()
        .copied()
        .filter(|c| seen.insert(c))
        .collect();
    let metric_keys: BTreeSet<&str> = records
        .iter()
        .flat_map(|r| r.metrics.keys().map(String::as_str))
        .collect();
    let metric_cols: Vec<&str> = metric_keys.into_iter().filter(|m| seen.insert(m)).collect();
    let axis_cols = header.len() - 3;

    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(header.iter().chain(&fixed).chain(&metric_cols))
        .map_err(csv_err)?;
    for r in records {
        let mut row: Vec<String> = vec![r.experiment.clone(), r.key.clone(), r.config_id.clone()];
        for a in &header[3..3 + axis_cols] {
            row.push(r.config.get(*a).cloned().unwrap_or_default());
        }
        for c in &fixed {
            row.push(csv_fixed_cell(r, c));
        }
        for m in &metric_cols {
            row.push(r.metrics.get(*m).map(|v| v.to_string()).unwrap_or_default());
        }
        w.write_record(&row).map_err(csv_err)?;
    }
    let bytes = w.into_inner().map_err(|e| ReportError::Io {
        path: path.to_path_buf(),
        source: e.into_error(),
    })?;
    atomic_write(path, &bytes)
}

/// The cell of fixed column `col` for `r`.
fn csv_fixed_cell(r: &RunRecord, col: &str) -> String {
    fn opt<T: ToString>(v: &Option<T>) -> String {
        v.as_ref().map(T::to_string).unwrap_or_default()
    }
    match col {
        "backend" => r.backend.clone(),
        "rep" => r.rep.to_string(),
        "status" => r.status.as_str().to_string(),
        "reason" => opt(&r.reason),
        "exit_code" => opt(&r.exit_code),
        "wall_ns" => r.wall_ns.to_string(),
        "work" => opt(&r.work),
        "throughput" => opt(&r.throughput),
        "output_hash" => r.output_hash.clone(),
        "load" => r.load.to_string(),
        "commit" => r.commit.clone(),
        "qemu_version" => opt(&r.qemu_version),
        "hostname" => r.host.hostname.clone(),
        "cores" => r.host.cores.to_string(),
        "cpu_model" => r.host.cpu_model.clone(),
        "started_at" => r.started_at.clone(),
        _ => String::new(),
    }
}

// ---------------------------------------------------------------------------
// Statistics

/// The figures of a set of values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stats {
    /// How many values.
    pub n: usize,
    /// The median (the mean of the two middle values for an even count).
    pub median: f64,
    /// The smallest value.
    pub min: f64,
    /// The largest value.
    pub max: f64,
    /// The 25th percentile (linear interpolation).
    pub p25: f64,
    /// The 75th percentile (linear interpolation).
    pub p75: f64,
}

impl Stats {
    /// The figures of `values` (NaNs left out), or `None` when there are none.
    pub fn of(values: &[f64]) -> Option<Stats> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| !x.is_nan()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(Stats {
            n: v.len(),
            median: percentile_sorted(&v, 0.5),
            min: v[0],
            max: v[v.len() - 1],
            p25: percentile_sorted(&v, 0.25),
            p75: percentile_sorted(&v, 0.75),
        })
    }

    /// The spread shown in tables: (low, high, true when it is p25–p75).
    pub fn spread(&self) -> (f64, f64, bool) {
        if self.n >= IQR_MIN_RUNS {
            (self.p25, self.p75, true)
        } else {
            (self.min, self.max, false)
        }
    }
}

/// The median of `values` (`None` when empty).
pub fn median(values: &[f64]) -> Option<f64> {
    Stats::of(values).map(|s| s.median)
}

/// Percentile `q` (0..=1) of sorted, non-empty `v`, interpolating linearly
/// between the closest ranks.
fn percentile_sorted(v: &[f64], q: f64) -> f64 {
    let pos = q * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let frac = pos - lo as f64;
    if lo == hi {
        v[lo]
    } else {
        v[lo] + (v[hi] - v[lo]) * frac
    }
}

/// The value of metric `name` for `r`: its entry in [`RunRecord::metrics`],
/// else the record's own field of that name (`throughput`, `work`,
/// `wall_ns`).
pub fn metric_value(r: &RunRecord, name: &str) -> Option<f64> {
    if let Some(v) = r.metrics.get(name) {
        return Some(*v);
    }
    match name {
        "throughput" => r.throughput,
        "work" => r.work.map(|w| w as f64),
        "wall_ns" => Some(r.wall_ns as f64),
        _ => None,
    }
}

/// Orders two axis values: numbers by value before other words, words
/// alphabetically, `n/a` last.
pub fn cmp_values(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    match (a == "n/a", b == "n/a") {
        (true, true) => return Ordering::Equal,
        (true, false) => return Ordering::Greater,
        (false, true) => return Ordering::Less,
        _ => {}
    }
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.total_cmp(&y).then_with(|| a.cmp(b)),
        (Ok(_), Err(_)) => Ordering::Less,
        (Err(_), Ok(_)) => Ordering::Greater,
        _ => a.cmp(b),
    }
}

/// Whether `backend` is one of the QEMUs.
pub fn is_qemu(backend: &str) -> bool {
    backend.starts_with("qemu")
}

// ---------------------------------------------------------------------------
// Number formatting

/// How a metric's values are written, from its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    Plain,
    Nanoseconds,
    Seconds,
    Bytes,
}

fn unit_of(name: &str) -> Unit {
    let leaf = name.rsplit('.').next().unwrap_or(name);
    if leaf == "count" {
        return Unit::Plain;
    }
    let has = |suffix: &str| name.ends_with(suffix) || name.contains(&format!("{suffix}."));
    if has("_ns") {
        Unit::Nanoseconds
    } else if has("_bytes") {
        Unit::Bytes
    } else if has("_s") {
        Unit::Seconds
    } else {
        Unit::Plain
    }
}

/// Writes `v`, a value of metric `name`, readably (the rule is in the
/// module's doc): `format_metric("throughput", 1234567.0)` is `1.23 M`,
/// `format_metric("bql.wait_ns.p99", 456000.0)` is `456 µs`.
pub fn format_metric(name: &str, v: f64) -> String {
    match unit_of(name) {
        Unit::Plain => format_si(v),
        Unit::Nanoseconds => format_duration_ns(v),
        Unit::Seconds => format_duration_ns(v * 1e9),
        Unit::Bytes => format_bytes(v),
    }
}

/// `v` rounded to three significant digits.
fn round_sig3(v: f64) -> f64 {
    if v == 0.0 || !v.is_finite() {
        return v;
    }
    let mag = v.abs().log10().floor() as i32;
    let scale = 10f64.powi(2 - mag);
    (v * scale).round() / scale
}

/// Three significant digits; an integer below 1000 without decimals.
fn format_sig3(v: f64) -> String {
    format_sig3_with(v, false)
}

/// Three significant digits; `keep_zeros`: trailing zeros kept (`1.00`, for
/// a value scaled by a prefix or a unit), else an integer below 1000 has no
/// decimals (`2`).
fn format_sig3_with(v: f64, keep_zeros: bool) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let r = round_sig3(v);
    if r == 0.0 {
        return "0".into();
    }
    if !keep_zeros && r.fract() == 0.0 && r.abs() < 1000.0 {
        return format!("{r:.0}");
    }
    let mag = r.abs().log10().floor() as i32;
    let decimals = (2 - mag).clamp(0, 20) as usize;
    format!("{r:.decimals$}")
}

/// A plain number with an SI prefix from 1000 on: `1.23 M`.
pub fn format_si(v: f64) -> String {
    let r = round_sig3(v);
    if !r.is_finite() {
        return r.to_string();
    }
    if r != 0.0 && r.abs() < 1e-3 {
        return format!("{v:.2e}");
    }
    const PREFIXES: [&str; 5] = ["k", "M", "G", "T", "P"];
    let mut scaled = r;
    let mut prefix = None;
    for p in PREFIXES {
        if scaled.abs() < 1000.0 {
            break;
        }
        scaled /= 1000.0;
        prefix = Some(p);
    }
    match prefix {
        None => format_sig3(r),
        Some(p) => format!("{} {p}", format_sig3_with(scaled, true)),
    }
}

/// A duration in ns as ns, µs, ms or s: `456 µs`.
pub fn format_duration_ns(ns: f64) -> String {
    let r = round_sig3(ns);
    if !r.is_finite() {
        return r.to_string();
    }
    let a = r.abs();
    if a < 1e3 {
        format!("{} ns", format_sig3(r))
    } else if a < 1e6 {
        format!("{} µs", format_sig3_with(r / 1e3, true))
    } else if a < 1e9 {
        format!("{} ms", format_sig3_with(r / 1e6, true))
    } else {
        format!("{} s", format_sig3_with(r / 1e9, true))
    }
}

/// A size in bytes as B, KiB, MiB or GiB.
fn format_bytes(b: f64) -> String {
    let a = b.abs();
    if a < 1024.0 {
        format!("{} B", format_sig3(b))
    } else if a < 1024.0 * 1024.0 {
        format!("{} KiB", format_sig3_with(b / 1024.0, true))
    } else if a < 1024.0 * 1024.0 * 1024.0 {
        format!("{} MiB", format_sig3_with(b / (1024.0 * 1024.0), true))
    } else {
        format!(
            "{} GiB",
            format_sig3_with(b / (1024.0 * 1024.0 * 1024.0), true)
        )
    }
}

// ---------------------------------------------------------------------------
// Grouping

/// The records in a fixed order, whatever the input's: host, configuration,
/// repetition, key.
fn sorted_records(records: &[RunRecord]) -> Vec<&RunRecord> {
    let mut v: Vec<&RunRecord> = records.iter().collect();
    v.sort_by(|a, b| {
        a.host
            .cmp(&b.host)
            .then_with(|| a.config_id.cmp(&b.config_id))
            .then_with(|| a.rep.cmp(&b.rep))
            .then_with(|| a.key.cmp(&b.key))
            .then_with(|| a.started_at.cmp(&b.started_at))
    });
    v
}

/// The axes of the tables: `spec.axes`, then the other config keys of the
/// records, sorted.
fn all_axes(spec: &ReportSpec, records: &[&RunRecord]) -> Vec<String> {
    let mut axes = spec.axes.clone();
    let extra: BTreeSet<&String> = records
        .iter()
        .flat_map(|r| r.config.keys())
        .filter(|k| !spec.axes.contains(k))
        .collect();
    axes.extend(extra.into_iter().cloned());
    axes
}

/// The label of metric `name`: its [`MetricSpec::label`], else the name.
fn metric_label(spec: &ReportSpec, name: &str) -> String {
    spec.metrics
        .iter()
        .find(|m| m.name == name)
        .and_then(|m| m.label.clone())
        .unwrap_or_else(|| name.to_string())
}

fn plot_title(p: &PlotSpec, label: &str) -> String {
    p.title
        .clone()
        .unwrap_or_else(|| format!("{label} vs {}", p.x))
}

/// The runs of one configuration on one host.
struct ConfigGroup<'a> {
    config: &'a BTreeMap<String, String>,
    runs: Vec<&'a RunRecord>,
}

impl ConfigGroup<'_> {
    fn done(&self) -> impl Iterator<Item = &&RunRecord> {
        self.runs.iter().filter(|r| r.status == Status::Done)
    }

    fn axis(&self, axis: &str) -> &str {
        self.config.get(axis).map(String::as_str).unwrap_or("n/a")
    }
}

/// The records by host, then by configuration; configurations in the order
/// of their axis values.
fn by_host<'a>(
    axes: &[String],
    records: &[&'a RunRecord],
) -> BTreeMap<&'a RunHost, Vec<ConfigGroup<'a>>> {
    let mut hosts: BTreeMap<&RunHost, BTreeMap<&str, ConfigGroup>> = BTreeMap::new();
    for &r in records {
        hosts
            .entry(&r.host)
            .or_default()
            .entry(&r.config_id)
            .or_insert_with(|| ConfigGroup {
                config: &r.config,
                runs: Vec::new(),
            })
            .runs
            .push(r);
    }
    hosts
        .into_iter()
        .map(|(h, groups)| {
            let mut v: Vec<(&str, ConfigGroup)> = groups.into_iter().collect();
            v.sort_by(|(ida, a), (idb, b)| {
                axes.iter()
                    .map(|ax| cmp_values(a.axis(ax), b.axis(ax)))
                    .find(|o| o.is_ne())
                    .unwrap_or(std::cmp::Ordering::Equal)
                    .then_with(|| ida.cmp(idb))
            });
            (h, v.into_iter().map(|(_, g)| g).collect())
        })
        .collect()
}

/// A host as headings name it.
fn host_name(h: &RunHost) -> String {
    format!(
        "`{}`",
        if h.hostname.is_empty() {
            "?"
        } else {
            &h.hostname
        }
    )
}

/// Text safe in a markdown table cell (one line, no `|`).
fn cell(s: &str) -> String {
    s.replace('\n', " ").replace('|', "\\|")
}

// ---------------------------------------------------------------------------
// summary.md

/// What the summary says about one plot.
enum PlotSection {
    Skipped(PlotSpec),
    Drawn {
        spec: PlotSpec,
        title: String,
        label: String,
        notes: Vec<String>,
        several_hosts: bool,
    },
}

/// The whole `summary.md` for sorted `records`.
fn summary_markdown(spec: &ReportSpec, records: &[&RunRecord], plots: &[PlotSection]) -> String {
    let mut md = String::new();
    let axes = all_axes(spec, records);
    let hosts = by_host(&axes, records);

    let _ = writeln!(md, "# {}\n", spec.title.trim());
    let _ = writeln!(md, "Experiment `{}`.\n", spec.name);
    if !spec.description.trim().is_empty() {
        let _ = writeln!(md, "{}\n", spec.description.trim());
    }
    let _ = writeln!(md, "Rerun with:\n\n```sh\n{}\n```\n", spec.command.trim());

    write_provenance(&mut md, records);
    write_hosts(&mut md, &hosts);
    write_status(&mut md, records);
    write_tables(&mut md, spec, &axes, &hosts, records);
    write_plots(&mut md, plots);
    write_bql_sites(&mut md, spec, &hosts);
    md
}

/// Commits, QEMU versions, time span.
fn write_provenance(md: &mut String, records: &[&RunRecord]) {
    let _ = writeln!(md, "## Runs\n");
    if records.is_empty() {
        let _ = writeln!(md, "No runs recorded.\n");
        return;
    }
    let mut commits: BTreeMap<&str, usize> = BTreeMap::new();
    for r in records {
        *commits.entry(&r.commit).or_default() += 1;
    }
    let list: Vec<String> = commits
        .iter()
        .map(|(c, n)| format!("`{c}` ({n} runs)"))
        .collect();
    let _ = writeln!(
        md,
        "- {} runs; commit{}: {}",
        records.len(),
        if commits.len() == 1 { "" } else { "s" },
        list.join(", ")
    );
    let qemus: BTreeSet<&str> = records
        .iter()
        .filter_map(|r| r.qemu_version.as_deref())
        .collect();
    if !qemus.is_empty() {
        let list: Vec<String> = qemus.iter().map(|q| format!("`{}`", cell(q))).collect();
        let _ = writeln!(md, "- QEMU: {}", list.join(", "));
    }
    let starts: BTreeSet<&str> = records
        .iter()
        .map(|r| r.started_at.as_str())
        .filter(|s| !s.is_empty())
        .collect();
    if let (Some(first), Some(last)) = (starts.first(), starts.last()) {
        let span = match (utc_seconds(first), utc_seconds(last)) {
            (Some(a), Some(b)) => format!(" ({})", format_span(b - a)),
            _ => String::new(),
        };
        let _ = writeln!(md, "- started between {first} and {last}{span}");
    }
    md.push('\n');
}

/// Seconds since 1970 of an RFC 3339 time in UTC (`2026-12-01T13:45:07.123Z`
/// or with `+00:00`); `None` for another form.
fn utc_seconds(t: &str) -> Option<f64> {
    let t = t.strip_suffix('Z').or_else(|| t.strip_suffix("+00:00"))?;
    let (date, time) = t.split_once('T')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut hms = time.splitn(3, ':');
    let h: i64 = hms.next()?.parse().ok()?;
    let min: i64 = hms.next()?.parse().ok()?;
    let sec: f64 = hms.next()?.parse().ok()?;
    if !(1..=12).contains(&m) || !(1..=31).contains(&day) {
        return None;
    }
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + min * 60) as f64 + sec)
}

/// A time span for a person: `42 s`, `12 min 3 s`, `2 h 5 min`, `3 d 4 h`.
fn format_span(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0 => "under a second".into(),
        1..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        3600..86_400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3600),
    }
}

/// The host facts and the oversubscription lines.
fn write_hosts(md: &mut String, hosts: &BTreeMap<&RunHost, Vec<ConfigGroup>>) {
    if hosts.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Hosts\n");
    let _ = writeln!(md, "| host | cores | CPU model | kernel | runs |");
    let _ = writeln!(md, "|---|---:|---|---|---:|");
    for (h, groups) in hosts {
        let runs: usize = groups.iter().map(|g| g.runs.len()).sum();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {runs} |",
            cell(&h.hostname),
            h.cores,
            cell(&h.cpu_model),
            cell(&h.kernel)
        );
    }
    md.push('\n');
    for (h, groups) in hosts {
        if let Some(line) = oversubscription_line(h, groups) {
            let _ = writeln!(md, "{line}\n");
        }
    }
}

/// The line saying how many configurations of host `h` kept more threads
/// busy than it has cores (`metrics["threads"]`, the most over its runs).
fn oversubscription_line(h: &RunHost, groups: &[ConfigGroup]) -> Option<String> {
    let mut measured = 0;
    let mut over = Vec::new();
    for g in groups {
        let threads = g
            .runs
            .iter()
            .filter_map(|r| r.metrics.get("threads").copied())
            .fold(None, |m: Option<f64>, t| Some(m.map_or(t, |m| m.max(t))));
        if let Some(t) = threads {
            measured += 1;
            if t > h.cores as f64 {
                over.push(t);
            }
        }
    }
    if over.is_empty() {
        return None;
    }
    over.sort_by(f64::total_cmp);
    let lo = over[0] - h.cores as f64;
    let hi = over[over.len() - 1] - h.cores as f64;
    let by = if lo == hi {
        format!("by {}", format_sig3(hi))
    } else {
        format!("by {} to {}", format_sig3(lo), format_sig3(hi))
    };
    Some(format!(
        "**Oversubscribed:** on {} ({} cores), {} of {} configurations kept more threads busy \
         than there are cores ({by} threads; at most {} busy threads). \
         Their timings include the host scheduler's time slicing.",
        host_name(h),
        h.cores,
        over.len(),
        measured,
        format_sig3(over[over.len() - 1]),
    ))
}

/// Run counts by status and the grouped reasons of the runs that did not
/// finish.
fn write_status(md: &mut String, records: &[&RunRecord]) {
    if records.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Status\n");
    let _ = writeln!(md, "| status | runs |\n|---|---:|");
    let all = [
        Status::Done,
        Status::Failed,
        Status::Timeout,
        Status::Skipped,
    ];
    for s in all {
        let n = records.iter().filter(|r| r.status == s).count();
        if n > 0 {
            let _ = writeln!(md, "| {} | {n} |", s.as_str());
        }
    }
    md.push('\n');
    let mut reasons: BTreeMap<(usize, String), usize> = BTreeMap::new();
    for r in records.iter().filter(|r| r.status != Status::Done) {
        let order = all.iter().position(|s| *s == r.status).unwrap_or(0);
        let reason = r
            .reason
            .as_deref()
            .map(|s| s.replace('\n', " ").trim().to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "(no reason given)".into());
        *reasons.entry((order, reason)).or_default() += 1;
    }
    if reasons.is_empty() {
        return;
    }
    let mut list: Vec<((usize, String), usize)> = reasons.into_iter().collect();
    list.sort_by(|((sa, ra), na), ((sb, rb), nb)| {
        sa.cmp(sb).then(nb.cmp(na)).then_with(|| ra.cmp(rb))
    });
    let _ = writeln!(md, "Runs that did not complete, by reason:\n");
    for ((s, reason), n) in list {
        let _ = writeln!(md, "- {} ×{n}: {}", all[s].as_str(), reason);
    }
    md.push('\n');
}

/// One table per host, one row per configuration.
fn write_tables(
    md: &mut String,
    spec: &ReportSpec,
    axes: &[String],
    hosts: &BTreeMap<&RunHost, Vec<ConfigGroup>>,
    records: &[&RunRecord],
) {
    if hosts.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Results\n");
    let _ = writeln!(
        md,
        "Over the done runs of each configuration: `n` runs, the median and the spread of each \
         figure (min–max below {IQR_MIN_RUNS} runs, p25–p75 from {IQR_MIN_RUNS} on: the header \
         says which, \"IQR\" marks p25–p75 cells where a table has both), and `outputs`, the \
         number of distinct guest outputs (1: deterministic). Numbers have three significant \
         digits and SI prefixes (k, M, G); figures named `*_ns` or `*_s` are durations (ns, µs, \
         ms, s), `*_bytes` sizes (KiB, MiB).\n"
    );
    for (h, groups) in hosts {
        let _ = writeln!(
            md,
            "### {} — {} cores, {}, kernel {}\n",
            host_name(h),
            h.cores,
            h.cpu_model,
            h.kernel
        );
        write_host_table(md, spec, axes, groups);
    }
    if records.iter().any(|r| is_qemu(&r.backend)) {
        let axes_list = match spec.not_for_qemu.as_slice() {
            [] => "No axis of this experiment is specific to vcpulab.".to_string(),
            [one] => format!("The axis `{one}` does not apply to QEMU: QEMU rows show n/a there."),
            many => {
                let names: Vec<String> = many.iter().map(|a| format!("`{a}`")).collect();
                format!(
                    "The axes {} do not apply to QEMU: QEMU rows show n/a there.",
                    names.join(", ")
                )
            }
        };
        let _ = writeln!(
            md,
            "{axes_list} QEMU rows have no instruction counts, and their throughput is the \
             guest's reported work per wall second (process start-up included).\n"
        );
    }
}

/// The table of one host.
fn write_host_table(md: &mut String, spec: &ReportSpec, axes: &[String], groups: &[ConfigGroup]) {
    // Per metric: the stats of every row, and whether the rows' spreads mix
    // min–max and p25–p75.
    let stats: Vec<Vec<Option<Stats>>> = spec
        .metrics
        .iter()
        .map(|m| {
            groups
                .iter()
                .map(|g| {
                    let v: Vec<f64> = g.done().filter_map(|r| metric_value(r, &m.name)).collect();
                    Stats::of(&v)
                })
                .collect()
        })
        .collect();
    let mut header: Vec<String> = axes.iter().map(|a| format!("`{a}`")).collect();
    header.push("n".into());
    let mut align: Vec<&str> = axes.iter().map(|_| "---").collect();
    align.push("---:");
    let mut mixed = Vec::new();
    for (m, col) in spec.metrics.iter().zip(&stats) {
        let label = m.label.clone().unwrap_or_else(|| m.name.clone());
        let iqr: BTreeSet<bool> = col.iter().flatten().map(|s| s.spread().2).collect();
        let spread = match (iqr.contains(&false), iqr.contains(&true)) {
            (false, true) => "p25–p75",
            (true, true) => "spread",
            _ => "min–max",
        };
        mixed.push(iqr.len() > 1);
        header.push(format!("{} median", cell(&label)));
        header.push(format!("{} {spread}", cell(&label)));
        align.push("---:");
        align.push("---:");
    }
    header.push("outputs".into());
    align.push("---:");
    let _ = writeln!(md, "| {} |", header.join(" | "));
    let _ = writeln!(md, "|{}|", align.join("|"));
    for (i, g) in groups.iter().enumerate() {
        let mut row: Vec<String> = axes.iter().map(|a| cell(g.axis(a))).collect();
        row.push(g.done().count().to_string());
        for ((m, col), mixed) in spec.metrics.iter().zip(&stats).zip(&mixed) {
            match col[i] {
                None => {
                    row.push("–".into());
                    row.push("–".into());
                }
                Some(s) => {
                    let (lo, hi, iqr) = s.spread();
                    row.push(format_metric(&m.name, s.median));
                    let mark = if *mixed && iqr { "IQR " } else { "" };
                    row.push(format!(
                        "{mark}{}–{}",
                        format_metric(&m.name, lo),
                        format_metric(&m.name, hi)
                    ));
                }
            }
        }
        let outputs: BTreeSet<&str> = g.done().map(|r| r.output_hash.as_str()).collect();
        row.push(outputs.len().to_string());
        let _ = writeln!(md, "| {} |", row.join(" | "));
    }
    md.push('\n');
}

/// The plots with their captions, and the skipped ones.
fn write_plots(md: &mut String, plots: &[PlotSection]) {
    if plots.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Plots\n");
    for p in plots {
        match p {
            PlotSection::Skipped(s) => {
                let _ = writeln!(
                    md,
                    "Plot `{}` skipped: no done run has the metric `{}`.\n",
                    s.file, s.metric
                );
            }
            PlotSection::Drawn {
                spec,
                title,
                label,
                notes,
                several_hosts,
            } => {
                let _ = writeln!(md, "![{}](plots/{}.svg)\n", title, spec.file);
                let series = if spec.series.is_empty() {
                    "one series".to_string()
                } else {
                    let names: Vec<String> = spec.series.iter().map(|s| format!("`{s}`")).collect();
                    format!("one series per {}", names.join(" × "))
                };
                let hosts = if *several_hosts { " and per host" } else { "" };
                let metric = if *label == spec.metric {
                    format!("`{}`", spec.metric)
                } else {
                    format!("{label} (`{}`)", spec.metric)
                };
                let marks = match spec.kind {
                    PlotKind::Line => "points are medians over the done runs, bars span min–max",
                    PlotKind::Bar => {
                        "bar heights are medians over the done runs, whiskers span min–max"
                    }
                };
                let mut caption =
                    format!("*{metric} against `{}`, {series}{hosts}; {marks}.", spec.x);
                for n in notes {
                    caption.push(' ');
                    caption.push_str(n);
                }
                caption.push('*');
                let _ = writeln!(md, "{caption}\n");
            }
        }
    }
}

// ---------------------------------------------------------------------------
// BQL per-site table

/// One row of a run report's `bql.sites`.
#[derive(serde::Deserialize, Default, Clone)]
struct BqlSite {
    site: String,
    #[serde(default)]
    acquisitions: u64,
    #[serde(default)]
    contended: u64,
    #[serde(default)]
    wait_ns_total: u64,
    #[serde(default)]
    hold_ns_total: u64,
    #[serde(default)]
    wait_ns_max: u64,
}

/// The per-site BQL table of `r`'s run report, if it has one.
fn bql_sites(r: &RunRecord) -> Option<Vec<BqlSite>> {
    let sites = r.report.as_ref()?.get("bql")?.get("sites")?;
    serde_json::from_value(sites.clone()).ok()
}

/// Per host, the sites of the configuration with the most contended
/// acquisitions per run, summed over its done runs.
fn write_bql_sites(
    md: &mut String,
    spec: &ReportSpec,
    hosts: &BTreeMap<&RunHost, Vec<ConfigGroup>>,
) {
    let mut out = String::new();
    for (h, groups) in hosts {
        // (contended per run, group index, runs, merged sites)
        let mut best: Option<(f64, usize, usize, BTreeMap<String, BqlSite>)> = None;
        for (i, g) in groups.iter().enumerate() {
            let mut runs = 0;
            let mut merged: BTreeMap<String, BqlSite> = BTreeMap::new();
            for sites in g.done().filter_map(|r| bql_sites(r)) {
                runs += 1;
                for s in sites {
                    let m = merged.entry(s.site.clone()).or_insert_with(|| BqlSite {
                        site: s.site.clone(),
                        ..BqlSite::default()
                    });
                    m.acquisitions += s.acquisitions;
                    m.contended += s.contended;
                    m.wait_ns_total += s.wait_ns_total;
                    m.hold_ns_total += s.hold_ns_total;
                    m.wait_ns_max = m.wait_ns_max.max(s.wait_ns_max);
                }
            }
            if runs == 0 {
                continue;
            }
            let contended = merged.values().map(|s| s.contended).sum::<u64>() as f64 / runs as f64;
            if best.as_ref().is_none_or(|(c, ..)| contended > *c) {
                best = Some((contended, i, runs, merged));
            }
        }
        let Some((contended, i, runs, merged)) = best else {
            continue;
        };
        let g = &groups[i];
        let config: Vec<String> = spec
            .axes
            .iter()
            .map(|a| format!("{a}={}", g.axis(a)))
            .collect();
        let _ = writeln!(
            out,
            "On {}, the configuration with the most contended acquisitions ({} per run) is \
             `{}`; its sites summed over {runs} done run{}, largest total wait first (top {}):\n",
            host_name(h),
            format_si(contended),
            config.join(", "),
            if runs == 1 { "" } else { "s" },
            BQL_TOP_SITES
        );
        let mut sites: Vec<BqlSite> = merged.into_values().collect();
        sites.sort_by(|a, b| {
            b.wait_ns_total
                .cmp(&a.wait_ns_total)
                .then(b.contended.cmp(&a.contended))
                .then_with(|| a.site.cmp(&b.site))
        });
        let _ = writeln!(
            out,
            "| call site | count | contended | wait time (s) | average wait (µs) | max wait | hold time (s) |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
        for s in sites.iter().take(BQL_TOP_SITES) {
            let avg_us = if s.acquisitions == 0 {
                0.0
            } else {
                s.wait_ns_total as f64 / s.acquisitions as f64 / 1e3
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.5} | {:.2} | {} | {:.5} |",
                cell(&s.site),
                s.acquisitions,
                s.contended,
                s.wait_ns_total as f64 / 1e9,
                avg_us,
                format_duration_ns(s.wait_ns_max as f64),
                s.hold_ns_total as f64 / 1e9
            );
        }
        out.push('\n');
    }
    if !out.is_empty() {
        let _ = writeln!(md, "## BQL call sites\n");
        let _ = writeln!(
            md,
            "As QEMU's `info sync-profile` shows them: count is all acquisitions, the average \
             wait is the total wait over the count, the hold time is estimated from sampled \
             holds.\n"
        );
        md.push_str(&out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_percentiles() {
        assert_eq!(median(&[1.0, 2.0, 10.0]), Some(2.0));
        assert_eq!(median(&[10.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN]), None);
        let s = Stats::of(&[5.0, 1.0, 4.0, 2.0, 3.0]).unwrap();
        assert_eq!((s.n, s.min, s.max, s.median), (5, 1.0, 5.0, 3.0));
        assert_eq!((s.p25, s.p75), (2.0, 4.0));
        assert_eq!(s.spread(), (2.0, 4.0, true));
        let s = Stats::of(&[1.0, 2.0, 3.0, 7.0]).unwrap();
        assert_eq!(s.p25, 1.75);
        assert_eq!(s.spread(), (1.0, 7.0, false));
    }

    #[test]
    fn numbers_are_written_readably() {
        let cases = [
            ("throughput", 1_234_567.0, "1.23 M"),
            ("throughput", 2.0e6, "2.00 M"),
            ("throughput", 999.7, "1.00 k"),
            ("throughput", -2500.0, "-2.50 k"),
            ("throughput", 3.2e12, "3.20 T"),
            ("vcpu_spread", 2.0, "2"),
            ("vcpu_spread", 12.34, "12.3"),
            ("vcpu_spread", 0.1234, "0.123"),
            ("vcpu_spread", 0.000012, "1.20e-5"),
            ("vcpu_spread", 0.0, "0"),
            ("bql.wait_ns.p99", 456_000.0, "456 µs"),
            ("bql.wait_ns.p99", 789.0, "789 ns"),
            ("icount_smp.drift_ns", 1.5e9, "1.50 s"),
            ("wall_ns", 2.5e6, "2.50 ms"),
            ("wall_s", 1.5, "1.50 s"),
            ("timers.lateness_ns.count", 1500.0, "1.50 k"),
            ("peak_rss_bytes", 1_048_576.0, "1.00 MiB"),
            ("peak_rss_bytes", 512.0, "512 B"),
        ];
        for (name, v, want) in cases {
            assert_eq!(format_metric(name, v), want, "{name} {v}");
        }
    }

    #[test]
    fn time_spans() {
        assert_eq!(utc_seconds("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(utc_seconds("2000-03-01T00:00:00Z"), Some(951_868_800.0));
        assert_eq!(
            utc_seconds("2026-12-01T13:45:07.5+00:00"),
            Some(1_796_132_707.5)
        );
        assert_eq!(utc_seconds("2026-12-01 13:45:07"), None);
        assert_eq!(utc_seconds("2026-13-01T00:00:00Z"), None);
        assert_eq!(format_span(0.2), "under a second");
        assert_eq!(format_span(42.0), "42 s");
        assert_eq!(format_span(723.0), "12 min 3 s");
        assert_eq!(format_span(7500.0), "2 h 5 min");
        assert_eq!(format_span(3.0 * 86_400.0 + 4.0 * 3600.0), "3 d 4 h");
    }

    #[test]
    fn values_sort_numbers_first_then_words_then_na() {
        let mut v = vec!["n/a", "mmio", "10", "2", "always", "1.5"];
        v.sort_by(|a, b| cmp_values(a, b));
        assert_eq!(v, ["1.5", "2", "10", "always", "mmio", "n/a"]);
    }

    #[test]
    fn atomic_write_replaces_whole_files_and_names_the_path() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        atomic_write(&p, b"first").unwrap();
        atomic_write(&p, b"second").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"second");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);

        let missing = dir.path().join("no/such/dir/b.txt");
        let err = atomic_write(&missing, b"x").unwrap_err();
        assert!(matches!(&err, ReportError::Io { path, .. } if *path == missing));
        assert!(err.to_string().starts_with(&missing.display().to_string()));
    }
}
