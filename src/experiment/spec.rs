//! The experiment file: TOML, read with serde and toml's spans so that every
//! error names the file, the line and what was expected.
//!
//! ```toml
//! title = "BQL policies under an MMIO storm"
//! description = "How much does taking the BQL per access cost?"
//! guest = "guests/build/smp_mmio_storm.elf"
//! work = "iterations="          # the guest's work: the numbers after this token, summed
//! reps = 3                       # repetitions of each configuration
//! warmup = 1                     # unrecorded runs before the sweep
//! time-limit = 60                # seconds per run
//! metrics = ["throughput", "bql.wait_ns.p99"]
//!
//! [run]                          # options of `vcpulab run` fixed for every run
//! accel = "tcg,thread=multi"
//! param.iters = 100000
//!
//! [axes]                         # the sweep: the cross product of these lists
//! smp = [1, 2, 4]
//! bql = ["mmio", "device"]
//! backend = ["vcpulab", "qemu-10.0"]
//! mode = [                       # a named axis whose values set several options
//!   { label = "rr", accel = "tcg,thread=single", icount = "shift=0,sleep=off" },
//! ]
//!
//! [[exclude]]                    # combinations not to run (every key matches)
//! backend = "qemu-10.0"
//! smp = 4
//!
//! [[plot]]
//! metric = "throughput"
//! x = "smp"
//! series = ["bql", "backend"]
//! where = { rate = "1" }         # hold the axes the plot does not show
//!
//! [trace]                        # one traced run of this configuration after the sweep
//! events = 5000                  # events kept per thread (the first ones)
//! smp = 2
//! bql = "mmio"
//! ```

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_spanned::Spanned;

use super::report::{MetricSpec, PlotKind, PlotSpec};

/// The backends a configuration can run on.
pub const BACKENDS: [&str; 3] = ["vcpulab", "qemu-10.0", "qemu-7.2"];

/// Options of `vcpulab run` that an experiment file may not set: the runner
/// sets them itself (`guest`, `time-limit`, its own report paths).
pub const RUNNER_OPTIONS: [&str; 6] =
    ["kernel", "stats", "hist-log", "timeout", "monitor", "trace"];

/// Events per thread a `[trace]` run keeps unless `events` says otherwise:
/// enough for a few milliseconds of a busy vCPU, a file of a few MB.
pub const DEFAULT_TRACE_EVENTS: u32 = 5000;

/// The most host spinner threads a `load` value may ask for.
pub const MAX_LOAD: u32 = 256;

/// A bad experiment file: where, and what was expected.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct SpecError {
    /// The file.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Where a value stands in the file (a byte range), to point errors at it.
pub type Span = Range<usize>;

/// One value of an axis: a label (what tables and plots show) and the run
/// options it sets.
#[derive(Clone, Debug, PartialEq)]
pub struct AxisValue {
    /// The label: the value as written, or a named axis's `label`.
    pub label: String,
    /// Option long name (or `param.NAME`, `backend`, `load`) → value; an
    /// empty string leaves the option at its default.
    pub options: BTreeMap<String, String>,
    /// Where the value is written.
    pub span: Span,
}

/// An axis of the sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    /// Its name: an option's long name, `param.NAME`, `backend`, `load`, or
    /// a free name for an axis of tables.
    pub name: String,
    /// Its values, in file order.
    pub values: Vec<AxisValue>,
    /// Where its key is written.
    pub span: Span,
}

/// A combination not to run: every (axis, label) pair must match.
#[derive(Clone, Debug, PartialEq)]
pub struct Exclude {
    /// Axis name → label.
    pub matches: BTreeMap<String, String>,
}

/// A parsed experiment file.
#[derive(Clone, Debug)]
pub struct Experiment {
    /// The file it came from.
    pub file: PathBuf,
    /// Its text (the copy stored with the results).
    pub text: String,
    /// The name (the file's stem unless `name` is set).
    pub name: String,
    /// One line.
    pub title: String,
    /// The question, in markdown.
    pub description: String,
    /// The guest ELF, as written (relative to the directory the command
    /// runs in); an axis may set `guest` instead.
    pub guest: Option<PathBuf>,
    /// The token whose following numbers are the guest's work.
    pub work: Option<String>,
    /// Repetitions per configuration.
    pub reps: u32,
    /// Unrecorded runs before the sweep (of the first configuration of each backend).
    pub warmup: u32,
    /// Wall-time limit per run, seconds.
    pub time_limit: f64,
    /// Options fixed for every run.
    pub run: BTreeMap<String, String>,
    /// The axes.
    pub axes: Vec<Axis>,
    /// Excluded combinations.
    pub exclude: Vec<Exclude>,
    /// The figures of the summary tables.
    pub metrics: Vec<MetricSpec>,
    /// The plots.
    pub plots: Vec<PlotSpec>,
    /// The configuration to trace once after the sweep (axis → label).
    pub trace: Option<BTreeMap<String, String>>,
    /// Events per thread the traced run keeps (`--trace-events`).
    pub trace_events: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct Raw {
    name: Option<Spanned<String>>,
    title: Option<String>,
    description: Option<String>,
    guest: Option<Spanned<String>>,
    work: Option<Spanned<String>>,
    reps: Option<Spanned<i64>>,
    warmup: Option<Spanned<i64>>,
    time_limit: Option<Spanned<toml::Value>>,
    #[serde(default)]
    metrics: Vec<Spanned<RawMetric>>,
    #[serde(default)]
    run: BTreeMap<Spanned<String>, Spanned<toml::Value>>,
    axes: Option<Spanned<toml::Table>>,
    #[serde(default)]
    exclude: Vec<Spanned<toml::Table>>,
    #[serde(default)]
    plot: Vec<Spanned<RawPlot>>,
    trace: Option<Spanned<toml::Table>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawMetric {
    Name(String),
    Labelled { name: String, label: Option<String> },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawPlot {
    metric: String,
    x: Spanned<String>,
    #[serde(default)]
    series: Vec<Spanned<String>>,
    title: Option<String>,
    #[serde(default)]
    log_x: bool,
    #[serde(default)]
    log_y: bool,
    kind: Option<Spanned<String>>,
    file: Option<String>,
    #[serde(rename = "where")]
    only: Option<Spanned<toml::Table>>,
}

/// Turns byte offsets into line and column numbers.
pub struct Locator<'a> {
    file: String,
    text: &'a str,
}

impl<'a> Locator<'a> {
    /// A locator for `text`, read from `file`.
    pub fn new(file: &Path, text: &'a str) -> Locator<'a> {
        Locator {
            file: file.display().to_string(),
            text,
        }
    }

    /// An error at `span`.
    pub fn error(&self, span: &Span, message: impl Into<String>) -> SpecError {
        let at = span.start.min(self.text.len());
        let before = &self.text[..at];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        SpecError {
            file: self.file.clone(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// A TOML scalar as the string a command line would carry.
fn scalar(v: &toml::Value) -> Option<String> {
    match v {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(if *b { "on" } else { "off" }.to_string()),
        _ => None,
    }
}

/// The long names of `vcpulab run`'s options.
pub fn run_option_names() -> Vec<String> {
    use clap::CommandFactory;
    crate::cli::RunCli::command()
        .get_arguments()
        .filter_map(|a| a.get_long().map(str::to_string))
        .filter(|n| n != "help" && n != "param")
        .collect()
}

/// Checks an option name as an experiment file may use it.
fn check_option(name: &str, options: &[String]) -> Result<(), String> {
    if RUNNER_OPTIONS.contains(&name) {
        return Err(format!(
            "'{name}' is set by the experiment runner (use `guest` and `time-limit`)"
        ));
    }
    if matches!(name, "backend" | "load" | "guest" | "work") {
        return Ok(());
    }
    if let Some(p) = name.strip_prefix("param.") {
        return crate::config::parse_param(&format!("{p}=0"))
            .map(|_| ())
            .map_err(|e| e.to_string());
    }
    if options.iter().any(|o| o == name) {
        return Ok(());
    }
    let allowed: Vec<&str> = options
        .iter()
        .map(String::as_str)
        .filter(|o| !RUNNER_OPTIONS.contains(o))
        .collect();
    Err(format!(
        "unknown option '{name}': expected one of {}, param.NAME, backend, load, guest, work",
        allowed.join(", ")
    ))
}

/// Checks one option value that can be checked alone.
fn check_value(name: &str, value: &str) -> Result<(), String> {
    match name {
        "backend" if !BACKENDS.contains(&value) => Err(format!(
            "invalid backend '{value}': expected one of {}",
            BACKENDS.join(", ")
        )),
        "load" => match value.parse::<u32>() {
            Ok(n) if n <= MAX_LOAD => Ok(()),
            _ => Err(format!(
                "invalid load '{value}': expected a number of host spinner threads, 0..={MAX_LOAD}"
            )),
        },
        _ => Ok(()),
    }
}

/// Flattens a table of options (`param` may be a sub-table: `param.iters`).
fn flatten_options(
    table: &toml::Table,
    prefix: &str,
    out: &mut BTreeMap<String, String>,
) -> Result<(), String> {
    for (k, v) in table {
        let name = format!("{prefix}{k}");
        match v {
            toml::Value::Table(t) if prefix.is_empty() && k == "param" => {
                flatten_options(t, "param.", out)?
            }
            _ => match scalar(v) {
                Some(s) => {
                    out.insert(name, s);
                }
                None => return Err(format!("'{name}' must be a string or a number")),
            },
        }
    }
    Ok(())
}

impl Experiment {
    /// Reads and checks an experiment file. The combinations are checked
    /// later, by [`super::plan::Plan::new`], with every run's options.
    pub fn load(file: &Path) -> Result<Experiment, SpecError> {
        let text = std::fs::read_to_string(file).map_err(|e| SpecError {
            file: file.display().to_string(),
            line: 0,
            column: 0,
            message: format!("cannot read: {e}"),
        })?;
        Experiment::parse(file, &text)
    }

    /// Parses `text` as the experiment file `file`.
    pub fn parse(file: &Path, text: &str) -> Result<Experiment, SpecError> {
        let loc = Locator::new(file, text);
        let raw: Raw = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            loc.error(&span, e.message().trim_end().to_string())
        })?;
        let options = run_option_names();
        let stem = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let name = match &raw.name {
            Some(n) => {
                let ok = !n.get_ref().is_empty()
                    && n.get_ref()
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if !ok {
                    return Err(loc.error(
                        &n.span(),
                        format!(
                            "invalid name '{}': expected letters, digits, '-' and '_'",
                            n.get_ref()
                        ),
                    ));
                }
                n.get_ref().clone()
            }
            None => stem,
        };
        let count = |v: &Option<Spanned<i64>>, what: &str, min: i64, default: u32| match v {
            None => Ok(default),
            Some(s) if (min..=100_000).contains(s.get_ref()) => Ok(*s.get_ref() as u32),
            Some(s) => Err(loc.error(
                &s.span(),
                format!("invalid {what} {}: expected {min}..=100000", s.get_ref()),
            )),
        };
        let reps = count(&raw.reps, "reps", 1, 3)?;
        let warmup = count(&raw.warmup, "warmup", 0, 0)?;
        let time_limit = match &raw.time_limit {
            None => 60.0,
            Some(v) => parse_seconds(v.get_ref())
                .map_err(|m| loc.error(&v.span(), format!("invalid time-limit: {m}")))?,
        };
        if let Some(g) = &raw.guest
            && g.get_ref().is_empty()
        {
            return Err(loc.error(&g.span(), "guest: expected the path of a guest ELF"));
        }
        if let Some(w) = &raw.work
            && w.get_ref().is_empty()
        {
            return Err(loc.error(&w.span(), "work: expected a non-empty token"));
        }

        let mut run = BTreeMap::new();
        for (k, v) in &raw.run {
            let mut flat = BTreeMap::new();
            let mut t = toml::Table::new();
            t.insert(k.get_ref().clone(), v.get_ref().clone());
            flatten_options(&t, "", &mut flat).map_err(|m| loc.error(&v.span(), m))?;
            for (name, value) in flat {
                check_option(&name, &options).map_err(|m| loc.error(&k.span(), m))?;
                check_value(&name, &value).map_err(|m| loc.error(&v.span(), m))?;
                run.insert(name, value);
            }
        }

        let axes = match &raw.axes {
            Some(a) => parse_axes(&loc, a, &options)?,
            None => Vec::new(),
        };
        for a in &axes {
            for o in a.values.iter().flat_map(|v| v.options.keys()) {
                if run.contains_key(o) {
                    return Err(loc.error(
                        &a.span,
                        format!(
                            "'{o}' is both fixed in [run] and swept by axis '{}'",
                            a.name
                        ),
                    ));
                }
            }
        }
        let axis_labels = |t: &toml::Table, span: &Span, what: &str| {
            let mut m = BTreeMap::new();
            for (k, v) in t {
                let Some(axis) = axes.iter().find(|a| &a.name == k) else {
                    return Err(loc.error(
                        span,
                        format!(
                            "{what}: '{k}' is not an axis (axes: {})",
                            axes.iter()
                                .map(|a| a.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                };
                let Some(label) = scalar(v) else {
                    return Err(
                        loc.error(span, format!("{what}: '{k}' must be a string or number"))
                    );
                };
                if !axis.values.iter().any(|x| x.label == label) {
                    return Err(loc.error(
                        span,
                        format!(
                            "{what}: '{label}' is not a value of axis '{k}' (values: {})",
                            axis.values
                                .iter()
                                .map(|x| x.label.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
                m.insert(k.clone(), label);
            }
            Ok(m)
        };
        let mut exclude = Vec::new();
        for e in &raw.exclude {
            let m = axis_labels(e.get_ref(), &e.span(), "exclude")?;
            if m.is_empty() {
                return Err(loc.error(&e.span(), "exclude: an empty table would exclude every run"));
            }
            exclude.push(Exclude { matches: m });
        }
        let mut trace_events = DEFAULT_TRACE_EVENTS;
        let trace = match &raw.trace {
            None => None,
            Some(t) => {
                let mut t2 = t.get_ref().clone();
                if let Some(e) = t2.remove("events") {
                    trace_events = match e.as_integer() {
                        Some(n) if (1..=16_777_216).contains(&n) => n as u32,
                        _ => {
                            return Err(loc.error(
                                &t.span(),
                                format!("trace: invalid events {e}: expected 1..=16777216 events per thread"),
                            ));
                        }
                    };
                }
                Some(axis_labels(&t2, &t.span(), "trace")?)
            }
        };

        let metrics = raw
            .metrics
            .iter()
            .map(|m| match m.get_ref() {
                RawMetric::Name(n) => MetricSpec {
                    name: n.clone(),
                    label: None,
                },
                RawMetric::Labelled { name, label } => MetricSpec {
                    name: name.clone(),
                    label: label.clone(),
                },
            })
            .collect::<Vec<_>>();
        let is_axis = |n: &str| axes.iter().any(|a| a.name == n);
        let mut plots = Vec::new();
        for (i, p) in raw.plot.iter().enumerate() {
            let r = p.get_ref();
            for a in std::iter::once(&r.x).chain(&r.series) {
                if !is_axis(a.get_ref()) {
                    return Err(loc.error(
                        &a.span(),
                        format!(
                            "plot: '{}' is not an axis (axes: {})",
                            a.get_ref(),
                            axes.iter()
                                .map(|a| a.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
            let kind = match r.kind.as_ref().map(|k| k.get_ref().as_str()) {
                None | Some("line") => PlotKind::Line,
                Some("bar") => PlotKind::Bar,
                Some(k) => {
                    return Err(loc.error(
                        &r.kind.as_ref().map(|k| k.span()).unwrap_or_default(),
                        format!("plot: invalid kind '{k}': expected line or bar"),
                    ));
                }
            };
            let file = r
                .file
                .clone()
                .unwrap_or_else(|| format!("{}-vs-{}", r.metric.replace('.', "_"), r.x.get_ref()));
            if plots.iter().any(|q: &PlotSpec| q.file == file) {
                return Err(loc.error(
                    &p.span(),
                    format!("plot {}: a second plot named '{file}' (set `file`)", i + 1),
                ));
            }
            let only = match &r.only {
                None => Vec::new(),
                Some(t) => axis_labels(t.get_ref(), &t.span(), "plot where")?
                    .into_iter()
                    .collect(),
            };
            plots.push(PlotSpec {
                only,
                metric: r.metric.clone(),
                x: r.x.get_ref().clone(),
                series: r.series.iter().map(|s| s.get_ref().clone()).collect(),
                title: r.title.clone(),
                log_x: r.log_x,
                log_y: r.log_y,
                kind,
                file,
            });
        }
        Ok(Experiment {
            file: file.to_path_buf(),
            text: text.to_string(),
            title: raw.title.clone().unwrap_or_else(|| name.clone()),
            name,
            description: raw.description.clone().unwrap_or_default(),
            guest: raw.guest.as_ref().map(|g| PathBuf::from(g.get_ref())),
            work: raw.work.as_ref().map(|w| w.get_ref().clone()),
            reps,
            warmup,
            time_limit,
            run,
            axes,
            exclude,
            metrics,
            plots,
            trace,
            trace_events,
        })
    }

    /// The axes among `names` that mean nothing on QEMU and that this
    /// experiment sweeps.
    pub fn axes_not_for_qemu(&self) -> Vec<String> {
        self.axes
            .iter()
            .filter(|a| {
                a.values
                    .iter()
                    .all(|v| v.options.keys().all(|o| super::backend::not_for_qemu(o)))
            })
            .map(|a| a.name.clone())
            .collect()
    }
}

/// A time limit: a number of seconds, or a string with s/ms/min.
fn parse_seconds(v: &toml::Value) -> Result<f64, String> {
    let secs = match v {
        toml::Value::Integer(i) => *i as f64,
        toml::Value::Float(f) => *f,
        toml::Value::String(s) => {
            let s = s.trim();
            let (num, mul) = if let Some(n) = s.strip_suffix("ms") {
                (n, 1e-3)
            } else if let Some(n) = s.strip_suffix("min") {
                (n, 60.0)
            } else if let Some(n) = s.strip_suffix('s') {
                (n, 1.0)
            } else {
                (s, 1.0)
            };
            num.trim()
                .parse::<f64>()
                .map_err(|_| format!("'{s}' is not a duration (e.g. 30, \"30s\", \"2min\")"))?
                * mul
        }
        _ => return Err("expected seconds (e.g. 30) or a string such as \"2min\"".into()),
    };
    if secs.is_finite() && secs > 0.0 && secs <= 86_400.0 {
        Ok(secs)
    } else {
        Err(format!("{secs} s: expected more than 0 and at most a day"))
    }
}

fn parse_axes(
    loc: &Locator<'_>,
    axes: &Spanned<toml::Table>,
    options: &[String],
) -> Result<Vec<Axis>, SpecError> {
    // toml's Table does not keep spans of its entries: find each key's line
    // after the [axes] header (`KEY =`, `param.NAME =`, or `NAME =` in an
    // `[axes.param]` table).
    let whole = axes.span();
    let find = |key: &str| -> Span {
        let short = key.strip_prefix("param.");
        let mut at = whole.start;
        for line in loc.text[whole.start..].split_inclusive('\n') {
            let t = line.trim_start();
            let indent = line.len() - t.len();
            let hit = |k: &str| {
                t.strip_prefix(k)
                    .is_some_and(|r| r.trim_start().starts_with('='))
            };
            if hit(key) || short.is_some_and(hit) {
                return at + indent..at + indent + key.len();
            }
            at += line.len();
        }
        whole.clone()
    };
    let mut out = Vec::new();
    let mut entries: Vec<(String, &toml::Value)> = Vec::new();
    for (k, v) in axes.get_ref() {
        match v {
            toml::Value::Table(t) if k == "param" => {
                for (p, pv) in t {
                    entries.push((format!("param.{p}"), pv));
                }
            }
            _ => entries.push((k.clone(), v)),
        }
    }
    // In file order, so that tables and plots follow the file.
    entries.sort_by_key(|(k, _)| find(k).start);
    for (name, v) in entries {
        let span = find(&name);
        let toml::Value::Array(list) = v else {
            return Err(loc.error(&span, format!("axis '{name}': expected a list of values")));
        };
        if list.is_empty() {
            return Err(loc.error(&span, format!("axis '{name}': an empty list runs nothing")));
        }
        let named = list.iter().any(|x| x.is_table());
        if !named {
            check_option(&name, options).map_err(|m| loc.error(&span, format!("axis: {m}")))?;
        }
        let mut values: Vec<AxisValue> = Vec::new();
        for x in list {
            let value = if let toml::Value::Table(t) = x {
                let mut t = t.clone();
                let Some(label) = t.remove("label").and_then(|l| scalar(&l)) else {
                    return Err(loc.error(
                        &span,
                        format!("axis '{name}': a table value needs a `label`"),
                    ));
                };
                let mut opts = BTreeMap::new();
                flatten_options(&t, "", &mut opts)
                    .map_err(|m| loc.error(&span, format!("axis '{name}': {m}")))?;
                for (o, ov) in &opts {
                    check_option(o, options).map_err(|m| {
                        loc.error(&span, format!("axis '{name}', value '{label}': {m}"))
                    })?;
                    check_value(o, ov).map_err(|m| {
                        loc.error(&span, format!("axis '{name}', value '{label}': {m}"))
                    })?;
                }
                AxisValue {
                    label,
                    options: opts,
                    span: span.clone(),
                }
            } else {
                if named {
                    return Err(loc.error(
                        &span,
                        format!("axis '{name}': mixes tables and plain values"),
                    ));
                }
                let Some(s) = scalar(x) else {
                    return Err(loc.error(
                        &span,
                        format!("axis '{name}': values must be strings or numbers"),
                    ));
                };
                check_value(&name, &s).map_err(|m| loc.error(&span, format!("axis: {m}")))?;
                AxisValue {
                    label: if s.is_empty() {
                        "default".into()
                    } else {
                        s.clone()
                    },
                    options: BTreeMap::from([(name.clone(), s)]),
                    span: span.clone(),
                }
            };
            if values.iter().any(|w| w.label == value.label) {
                return Err(loc.error(
                    &span,
                    format!("axis '{name}': the value '{}' twice", value.label),
                ));
            }
            values.push(value);
        }
        out.push(Axis { name, values, span });
    }
    // A named axis's options may not also be an axis of their own.
    for a in &out {
        for o in a.values.iter().flat_map(|v| v.options.keys()) {
            if o != &a.name && out.iter().any(|b| &b.name == o) {
                return Err(loc.error(
                    &a.span,
                    format!("axis '{}' sets '{o}', which is also an axis", a.name),
                ));
            }
        }
    }
    Ok(out)
}
