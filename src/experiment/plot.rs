//! The plots of an experiment's report: one SVG per [`PlotSpec`], drawn
//! with plotters' SVG backend.
//!
//! A plot is computed in two steps, so that the numbers can be tested
//! without parsing SVG: [`plot_data`] groups the done runs that have the
//! metric by series (the values of the spec's series axes, and the host when
//! the runs come from several hosts) and by x value, and takes the median,
//! min and max of each group; [`render_svg`] draws that as lines (points at
//! the medians, min–max error bars) or grouped bars.
//!
//! The x axis is numeric when every x value is a number (and the plot is a
//! line plot): then runs whose x is `n/a` are left out, and a log scale is
//! possible. Otherwise x values are categories, ordered by
//! [`cmp_values`] (numbers by value, then words,
//! `n/a` last). A log scale asked for values that are not all positive falls
//! back to a linear one; every such decision becomes a note of the caption.
//!
//! The axes are one small coordinate type (`Axis`) on which both linear and
//! log scales are linear: log values are plotted as their log10, with tick
//! labels that give the value back.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint, Ranged};
use plotters::prelude::*;

use super::record::{RunHost, RunRecord, Status};
use super::report::{
    PlotKind, PlotSpec, Stats, cmp_values, format_metric, format_si, metric_value,
};

/// Size of the SVGs, pixels.
pub const PLOT_SIZE: (u32, u32) = (800, 500);

/// The x axis of a plot.
#[derive(Clone, Debug, PartialEq)]
pub enum XScale {
    /// Every x value is a number; `log`: the axis is logarithmic.
    Numeric {
        /// A log10 axis.
        log: bool,
    },
    /// The x values as categories, in plotting order.
    Categorical(Vec<String>),
}

/// One point of a series: the figures of the done runs at one x value.
#[derive(Clone, Debug, PartialEq)]
pub struct Point {
    /// The x value as written in the records.
    pub x: String,
    /// Where it is on the x axis: the number (before any log), or the
    /// category's index.
    pub pos: f64,
    /// Median, min, max, … of the metric over the runs.
    pub stats: Stats,
}

/// One series of a plot.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// The legend's text: `bql=mmio, backend=vcpulab`, with `host=NAME`
    /// when the runs come from several hosts; the metric's name for a
    /// plot with one series.
    pub label: String,
    /// The points in x order.
    pub points: Vec<Point>,
}

/// What a plot shows, before drawing.
#[derive(Clone, Debug, PartialEq)]
pub struct PlotData {
    /// The x axis.
    pub x: XScale,
    /// Whether the y axis is logarithmic (as asked, and possible).
    pub log_y: bool,
    /// The series, in legend order.
    pub series: Vec<Series>,
    /// Whether the series are split by host.
    pub several_hosts: bool,
    /// Sentences for the caption: runs left out, scales not used.
    pub notes: Vec<String>,
}

/// The figures of plot `spec` over `records`, or `None` when no done run
/// has its metric.
pub fn plot_data(spec: &PlotSpec, records: &[RunRecord]) -> Option<PlotData> {
    let runs: Vec<(&RunRecord, f64)> = records
        .iter()
        .filter(|r| r.status == Status::Done)
        .filter(|r| spec.only.iter().all(|(k, v)| r.config.get(k) == Some(v)))
        .filter_map(|r| metric_value(r, &spec.metric).map(|v| (r, v)))
        .filter(|(_, v)| !v.is_nan())
        .collect();
    if runs.is_empty() {
        return None;
    }
    let mut notes = Vec::new();
    if !spec.only.is_empty() {
        let held: Vec<String> = spec
            .only
            .iter()
            .map(|(k, v)| format!("`{k}` = {v}"))
            .collect();
        notes.push(format!("Only the runs with {}.", held.join(", ")));
    }
    // Axes neither on x, nor in a series, nor held by `only` that still vary:
    // each point is then a median over several configurations; say so.
    let mut pooled: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (r, _) in &runs {
        for (k, v) in &r.config {
            if k != &spec.x && !spec.series.contains(k) && !spec.only.iter().any(|(o, _)| o == k) {
                pooled.entry(k).or_default().insert(v);
            }
        }
    }
    for (k, vals) in pooled.iter().filter(|(_, v)| v.len() > 1) {
        notes.push(format!(
            "Each point pools the {} values of `{k}` (add it to `series` or `where`).",
            vals.len()
        ));
    }
    let x_of = |r: &RunRecord| -> String {
        r.config
            .get(&spec.x)
            .cloned()
            .unwrap_or_else(|| "n/a".into())
    };
    let numeric = spec.kind == PlotKind::Line
        && runs
            .iter()
            .map(|(r, _)| x_of(r))
            .filter(|x| x != "n/a")
            .all(|x| x.parse::<f64>().is_ok_and(f64::is_finite))
        && runs.iter().any(|(r, _)| x_of(r) != "n/a");
    let hosts: BTreeSet<&RunHost> = runs.iter().map(|(r, _)| &r.host).collect();
    let several_hosts = hosts.len() > 1;

    // (series values, host) → x value → metric values.
    type Key<'a> = (Vec<String>, Option<&'a RunHost>);
    let mut groups: BTreeMap<Key, BTreeMap<String, Vec<f64>>> = BTreeMap::new();
    let mut left_out = 0;
    for (r, v) in &runs {
        let x = x_of(r);
        if numeric && x == "n/a" {
            left_out += 1;
            continue;
        }
        let values: Vec<String> = spec
            .series
            .iter()
            .map(|a| r.config.get(a).cloned().unwrap_or_else(|| "n/a".into()))
            .collect();
        let host = several_hosts.then_some(&r.host);
        groups
            .entry((values, host))
            .or_default()
            .entry(x)
            .or_default()
            .push(*v);
    }
    if left_out > 0 {
        notes.push(format!(
            "{left_out} run{} with `{}` n/a left out.",
            if left_out == 1 { "" } else { "s" },
            spec.x
        ));
    }

    let x = if numeric {
        let mut log = spec.log_x;
        let positive = groups
            .values()
            .flat_map(|m| m.keys())
            .all(|x| x.parse::<f64>().is_ok_and(|v| v > 0.0));
        if log && !positive {
            log = false;
            notes.push(format!("`{}` has values ≤ 0: linear x axis.", spec.x));
        }
        XScale::Numeric { log }
    } else {
        if spec.log_x {
            notes.push(format!("`{}` is not numeric: categorical x axis.", spec.x));
        }
        let mut cats: Vec<String> = groups
            .values()
            .flat_map(|m| m.keys().cloned())
            .collect::<BTreeSet<String>>()
            .into_iter()
            .collect();
        cats.sort_by(|a, b| cmp_values(a, b));
        XScale::Categorical(cats)
    };

    let mut keys: Vec<&Key> = groups.keys().collect();
    keys.sort_by(|(va, ha), (vb, hb)| {
        va.iter()
            .zip(vb)
            .map(|(a, b)| cmp_values(a, b))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
            .then_with(|| ha.cmp(hb))
    });
    let mut series = Vec::new();
    for key in keys {
        let (values, host) = key;
        let mut parts: Vec<String> = spec
            .series
            .iter()
            .zip(values)
            .map(|(a, v)| format!("{a}={v}"))
            .collect();
        if let Some(h) = host {
            parts.push(format!("host={}", h.hostname));
        }
        let label = if parts.is_empty() {
            spec.metric.clone()
        } else {
            parts.join(", ")
        };
        let mut points: Vec<Point> = groups[key]
            .iter()
            .filter_map(|(xv, vals)| {
                let pos = match &x {
                    XScale::Numeric { .. } => xv.parse::<f64>().ok()?,
                    XScale::Categorical(cats) => cats.iter().position(|c| c == xv)? as f64,
                };
                Some(Point {
                    x: xv.clone(),
                    pos,
                    stats: Stats::of(vals)?,
                })
            })
            .collect();
        points.sort_by(|a, b| a.pos.total_cmp(&b.pos));
        series.push(Series { label, points });
    }

    let mut log_y = spec.log_y;
    if log_y
        && series
            .iter()
            .flat_map(|s| &s.points)
            .any(|p| p.stats.min <= 0.0)
    {
        log_y = false;
        notes.push(format!("`{}` has values ≤ 0: linear y axis.", spec.metric));
    }
    Some(PlotData {
        x,
        log_y,
        series,
        several_hosts,
        notes,
    })
}

/// Draws `data` (from [`plot_data`] for `spec`) as an SVG document of
/// [`PLOT_SIZE`], with `y_label` on the y axis and `title` above.
pub fn render_svg(
    spec: &PlotSpec,
    data: &PlotData,
    y_label: &str,
    title: &str,
) -> Result<String, String> {
    let log_x = matches!(data.x, XScale::Numeric { log: true });
    let tx = move |v: f64| if log_x { v.log10() } else { v };
    let log_y = data.log_y;
    let ty = move |v: f64| if log_y { v.log10() } else { v };
    let points = || data.series.iter().flat_map(|s| &s.points);

    let x_axis = match &data.x {
        XScale::Categorical(cats) => Axis {
            lo: -0.5,
            hi: cats.len().max(1) as f64 - 0.5,
            ticks: (0..cats.len()).map(|i| i as f64).collect(),
        },
        XScale::Numeric { log } => {
            let pos: BTreeSet<u64> = points().map(|p| tx(p.pos).to_bits()).collect();
            let pos: Vec<f64> = pos.into_iter().map(f64::from_bits).collect();
            let (lo, hi) = padded(&pos, false);
            let mut ticks = if pos.len() <= 12 {
                pos.clone()
            } else if *log {
                log_ticks(lo, hi)
            } else {
                nice_ticks(lo, hi)
            };
            ticks.sort_by(f64::total_cmp);
            Axis { lo, hi, ticks }
        }
    };
    let bars = spec.kind == PlotKind::Bar;
    let mut ys: Vec<f64> = points()
        .flat_map(|p| [ty(p.stats.min), ty(p.stats.max)])
        .collect();
    if bars && !log_y {
        ys.push(0.0);
    }
    let (ylo, yhi) = padded(&ys, bars && !log_y);
    // Room above the data for the legend (upper left, about 20 px a series
    // of a plot area about 380 px high), so that it covers no point.
    let legend = ((data.series.len() as f64 * 20.0 + 12.0) / 380.0).min(0.6);
    let yhi = yhi + (yhi - ylo) * legend / (1.0 - legend);
    let y_axis = Axis {
        lo: ylo,
        hi: yhi,
        ticks: if log_y {
            log_ticks(ylo, yhi)
        } else {
            nice_ticks(ylo, yhi)
        },
    };

    let cats = match &data.x {
        XScale::Categorical(c) => c.clone(),
        XScale::Numeric { .. } => Vec::new(),
    };
    let fx = |v: &f64| -> String {
        if cats.is_empty() {
            format_si(if log_x { 10f64.powf(*v) } else { *v })
        } else {
            let i = v.round();
            if (v - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < cats.len() {
                cats[i as usize].clone()
            } else {
                String::new()
            }
        }
    };
    let metric = spec.metric.clone();
    let fy = move |v: &f64| format_metric(&metric, if log_y { 10f64.powf(*v) } else { *v });

    let err = |e: &dyn std::fmt::Display| e.to_string();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, PLOT_SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(50)
            .y_label_area_size(85)
            .build_cartesian_2d(x_axis.clone(), y_axis.clone())
            .map_err(|e| err(&e))?;
        let x_desc = if log_x {
            format!("{} (log)", spec.x)
        } else {
            spec.x.clone()
        };
        let y_desc = if log_y {
            format!("{y_label} (log)")
        } else {
            y_label.to_string()
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(x_axis.ticks.len())
            .y_labels(y_axis.ticks.len())
            .x_label_formatter(&fx)
            .y_label_formatter(&fy)
            .x_desc(x_desc)
            .y_desc(y_desc)
            .label_style(("sans-serif", 14))
            .axis_desc_style(("sans-serif", 16))
            .draw()
            .map_err(|e| err(&e))?;

        let k = data.series.len().max(1) as f64;
        let bar_w = 0.8 / k;
        for (i, s) in data.series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            let x_at = |p: &Point| {
                if bars {
                    p.pos - 0.4 + bar_w * (i as f64 + 0.5)
                } else {
                    tx(p.pos)
                }
            };
            if bars {
                let base = if log_y { ylo } else { 0f64.clamp(ylo, yhi) };
                chart
                    .draw_series(s.points.iter().map(|p| {
                        let x = x_at(p);
                        Rectangle::new(
                            [
                                (x - bar_w * 0.45, base),
                                (x + bar_w * 0.45, ty(p.stats.median)),
                            ],
                            color.filled(),
                        )
                    }))
                    .map_err(|e| err(&e))?
                    .label(s.label.clone())
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled())
                    });
            } else {
                chart
                    .draw_series(LineSeries::new(
                        s.points.iter().map(|p| (x_at(p), ty(p.stats.median))),
                        color.stroke_width(2),
                    ))
                    .map_err(|e| err(&e))?
                    .label(s.label.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(
                        s.points
                            .iter()
                            .map(|p| Circle::new((x_at(p), ty(p.stats.median)), 4, color.filled())),
                    )
                    .map_err(|e| err(&e))?;
            }
            // Min–max bars: a vertical line with a cap at each end.
            let dark = if bars { BLACK.to_rgba() } else { color };
            for p in &s.points {
                let x = x_at(p);
                let (lo, hi) = (ty(p.stats.min), ty(p.stats.max));
                if lo == hi {
                    continue;
                }
                chart
                    .draw_series([PathElement::new(
                        vec![(x, lo), (x, hi)],
                        dark.stroke_width(1),
                    )])
                    .map_err(|e| err(&e))?;
                for y in [lo, hi] {
                    chart
                        .draw_series([EmptyElement::at((x, y))
                            + PathElement::new(vec![(-4, 0), (4, 0)], dark.stroke_width(1))])
                        .map_err(|e| err(&e))?;
                }
            }
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(svg)
}

/// The range over `v`, 5 % wider on each side (a unit wide around a single
/// value); `from_zero`: a range starting at 0 stays there (bars).
fn padded(v: &[f64], from_zero: bool) -> (f64, f64) {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !lo.is_finite() || !hi.is_finite() {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    if span <= 0.0 {
        let pad = if lo == 0.0 { 1.0 } else { lo.abs() * 0.1 };
        return (lo - pad, hi + pad);
    }
    let pad = span * 0.05;
    let lo = if from_zero && lo == 0.0 {
        0.0
    } else {
        lo - pad
    };
    (lo, hi + pad)
}

/// About six round ticks (1, 2 or 5 × 10^k apart) in `lo..=hi`.
fn nice_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = hi - lo;
    if span <= 0.0 || !span.is_finite() {
        return vec![lo];
    }
    let raw = span / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let step = mag
        * if norm < 1.5 {
            1.0
        } else if norm < 3.0 {
            2.0
        } else if norm < 7.0 {
            5.0
        } else {
            10.0
        };
    // A tick on an end of the range stays, whatever the rounding of the
    // division.
    let first = (lo / step - 1e-9).ceil() as i64;
    let last = (hi / step + 1e-9).floor() as i64;
    (first..=last)
        .map(|k| {
            let t = k as f64 * step;
            if t.abs() < step * 1e-9 { 0.0 } else { t }
        })
        .collect()
}

/// Ticks of a log10 axis (`lo`, `hi` are log10 values): the decades; with
/// 2× and 5× when the range spans fewer than three; every multiple 1…9 when
/// that still gives fewer than three ticks.
fn log_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let ticks = |multiples: &[f64]| {
        let mut t = Vec::new();
        for d in (lo.floor() as i64)..=(hi.ceil() as i64) {
            for m in multiples {
                t.push(d as f64 + m.log10());
            }
        }
        t.retain(|v| *v >= lo && *v <= hi);
        t
    };
    let t = if hi - lo >= 3.0 {
        ticks(&[1.0])
    } else {
        ticks(&[1.0, 2.0, 5.0])
    };
    if t.len() >= 3 {
        return t;
    }
    let t = ticks(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]);
    if t.len() >= 2 { t } else { nice_ticks(lo, hi) }
}

/// A linear axis over `lo..hi` with the given ticks (log scales are drawn
/// on it as log10 values).
#[derive(Clone, Debug)]
struct Axis {
    lo: f64,
    hi: f64,
    ticks: Vec<f64>,
}

impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let f = (value - self.lo) / (self.hi - self.lo);
        limit.0 + (f * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<H: KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.ticks.clone()
        }
    }

    fn range(&self) -> Range<f64> {
        self.lo..self.hi
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn rec(host: &str, config: &[(&str, &str)], value: Option<f64>, status: Status) -> RunRecord {
        let config: BTreeMap<String, String> = config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut metrics = BTreeMap::new();
        if let Some(v) = value {
            metrics.insert("m".to_string(), v);
        }
        RunRecord {
            experiment: "e".into(),
            key: format!("{config:?}"),
            config_id: format!("{config:?}"),
            config,
            backend: "vcpulab".into(),
            rep: 0,
            status,
            reason: None,
            exit_code: Some(0),
            wall_ns: 1,
            work: None,
            throughput: None,
            output_hash: "h".into(),
            output_head: String::new(),
            load: 0,
            commit: "c".into(),
            qemu_version: None,
            host: RunHost {
                hostname: host.into(),
                cores: 4,
                cpu_model: "cpu".into(),
                kernel: "k".into(),
            },
            started_at: String::new(),
            command: Vec::new(),
            hist_log: None,
            metrics,
            report: None,
        }
    }

    fn spec(x: &str, series: &[&str], kind: PlotKind, log_x: bool) -> PlotSpec {
        PlotSpec {
            metric: "m".into(),
            x: x.into(),
            series: series.iter().map(|s| s.to_string()).collect(),
            title: None,
            log_x,
            log_y: false,
            kind,
            file: "f".into(),
            only: Vec::new(),
        }
    }

    #[test]
    fn where_holds_an_axis_and_a_varying_axis_left_out_is_said() {
        let d = Status::Done;
        let runs = vec![
            rec("h", &[("smp", "2"), ("rate", "1")], Some(1.0), d),
            rec("h", &[("smp", "2"), ("rate", "256")], Some(100.0), d),
            rec("h", &[("smp", "4"), ("rate", "1")], Some(3.0), d),
        ];
        let mut s = spec("smp", &[], PlotKind::Line, false);
        let pooled = plot_data(&s, &runs).unwrap();
        assert!(
            pooled
                .notes
                .iter()
                .any(|n| n.contains("pools the 2 values of `rate`")),
            "{:?}",
            pooled.notes
        );
        assert_eq!(pooled.series[0].points[0].stats.max, 100.0);
        s.only = vec![("rate".into(), "1".into())];
        let held = plot_data(&s, &runs).unwrap();
        assert!(
            !held.notes.iter().any(|n| n.contains("pools")),
            "{:?}",
            held.notes
        );
        assert!(held.notes.iter().any(|n| n.contains("`rate` = 1")));
        let p = &held.series[0].points;
        assert_eq!((p.len(), p[0].stats.max, p[1].stats.max), (2, 1.0, 3.0));
    }

    #[test]
    fn points_are_medians_per_series_and_x() {
        let d = Status::Done;
        let runs = vec![
            rec("h", &[("smp", "2"), ("bql", "mmio")], Some(1.0), d),
            rec("h", &[("smp", "2"), ("bql", "mmio")], Some(2.0), d),
            rec("h", &[("smp", "2"), ("bql", "mmio")], Some(10.0), d),
            rec("h", &[("smp", "10"), ("bql", "mmio")], Some(5.0), d),
            rec("h", &[("smp", "2"), ("bql", "always")], Some(7.0), d),
            rec(
                "h",
                &[("smp", "2"), ("bql", "always")],
                Some(99.0),
                Status::Failed,
            ),
            rec("h", &[("smp", "n/a"), ("bql", "n/a")], Some(3.0), d),
        ];
        let data = plot_data(&spec("smp", &["bql"], PlotKind::Line, true), &runs).unwrap();
        assert_eq!(data.x, XScale::Numeric { log: true });
        assert!(!data.several_hosts);
        assert_eq!(data.notes, ["1 run with `smp` n/a left out."]);
        let labels: Vec<&str> = data.series.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["bql=always", "bql=mmio"]);
        let always = &data.series[0].points;
        assert_eq!(always.len(), 1);
        assert_eq!(always[0].stats.max, 7.0, "the failed run is left out");
        let mmio = &data.series[1].points;
        let xs: Vec<f64> = mmio.iter().map(|p| p.pos).collect();
        assert_eq!(xs, [2.0, 10.0]);
        assert_eq!(
            (mmio[0].stats.median, mmio[0].stats.min, mmio[0].stats.max),
            (2.0, 1.0, 10.0)
        );

        // Bars: categories, n/a last; hosts become series.
        let mut two_hosts = runs.clone();
        two_hosts.push(rec("other", &[("smp", "4"), ("bql", "mmio")], Some(1.0), d));
        let data = plot_data(&spec("smp", &[], PlotKind::Bar, false), &two_hosts).unwrap();
        assert_eq!(
            data.x,
            XScale::Categorical(vec!["2".into(), "4".into(), "10".into(), "n/a".into()])
        );
        assert!(data.several_hosts);
        let labels: Vec<&str> = data.series.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["host=h", "host=other"]);
        let svg = render_svg(&spec("smp", &[], PlotKind::Bar, false), &data, "m", "t").unwrap();
        assert!(svg.contains("host=other"));
    }

    #[test]
    fn scales_fall_back_and_missing_metrics_give_no_plot() {
        let d = Status::Done;
        let runs = vec![
            rec("h", &[("load", "0")], Some(1.0), d),
            rec("h", &[("load", "2")], Some(0.0), d),
        ];
        let mut s = spec("load", &[], PlotKind::Line, true);
        s.log_y = true;
        let data = plot_data(&s, &runs).unwrap();
        assert_eq!(data.x, XScale::Numeric { log: false });
        assert!(!data.log_y);
        assert_eq!(data.notes.len(), 2, "{:?}", data.notes);
        assert_eq!(data.series[0].label, "m");
        render_svg(&s, &data, "m", "t").unwrap();

        let words = vec![rec("h", &[("lock", "std")], Some(1.0), d)];
        let data = plot_data(&spec("lock", &[], PlotKind::Line, true), &words).unwrap();
        assert_eq!(data.x, XScale::Categorical(vec!["std".into()]));

        s.metric = "absent".into();
        assert!(plot_data(&s, &runs).is_none());
        let failed = vec![rec("h", &[("load", "0")], Some(1.0), Status::Failed)];
        assert!(plot_data(&spec("load", &[], PlotKind::Line, false), &failed).is_none());
    }

    #[test]
    fn ticks() {
        assert_eq!(nice_ticks(0.0, 10.0), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        let t = nice_ticks(-0.3, 0.3);
        assert_eq!(t.len(), 7, "{t:?}");
        assert_eq!(t[3], 0.0);
        assert!(
            t.iter()
                .zip(-3..=3)
                .all(|(v, k)| (v - f64::from(k) * 0.1).abs() < 1e-12)
        );
        assert_eq!(nice_ticks(0.0, 1e6), [0.0, 2e5, 4e5, 6e5, 8e5, 1e6]);
        assert_eq!(log_ticks(0.0, 3.0), [0.0, 1.0, 2.0, 3.0]);
        let t = log_ticks(3.0, 3.5);
        assert!(t.len() >= 3 && t[0] == 3.0, "{t:?}");
        let a = Axis {
            lo: 0.0,
            hi: 10.0,
            ticks: vec![],
        };
        assert_eq!(a.map(&5.0, (0, 100)), 50);
        assert_eq!(a.map(&0.0, (400, 0)), 400);
    }
}
