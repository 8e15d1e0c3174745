//! The report of an experiment (`src/experiment/report.rs`, `plot.rs`) on a
//! synthetic set of runs: two hosts, a QEMU backend with an axis that does
//! not apply to it, runs that failed, timed out or were skipped.

use std::collections::BTreeMap;
use std::path::Path;

use vcpulab::experiment::record::{RunHost, RunRecord, Status};
use vcpulab::experiment::report::{
    MetricSpec, PlotKind, PlotSpec, ReportError, ReportSpec, write_csv, write_report,
};

fn host(name: &str, cores: usize) -> RunHost {
    RunHost {
        hostname: name.into(),
        cores,
        cpu_model: format!("Test CPU {cores}"),
        kernel: "6.1.0-test".into(),
    }
}

/// A done run of configuration (smp, bql, backend) on `h`.
fn run(h: &RunHost, smp: u32, bql: &str, backend: &str, rep: u32, throughput: f64) -> RunRecord {
    let mut config = BTreeMap::new();
    config.insert("smp".to_string(), smp.to_string());
    config.insert("bql".to_string(), bql.to_string());
    config.insert("backend".to_string(), backend.to_string());
    let config_id = format!("c-{smp}-{bql}-{backend}");
    let mut metrics = BTreeMap::new();
    metrics.insert("throughput".to_string(), throughput);
    metrics.insert("threads".to_string(), f64::from(smp) + 1.0);
    metrics.insert("wall_s".to_string(), 0.5 + f64::from(rep) * 0.1);
    let qemu = backend.starts_with("qemu");
    let mut report = None;
    if !qemu {
        metrics.insert("instructions.total".to_string(), 1e8);
        metrics.insert(
            "bql.wait_ns.p99".to_string(),
            1000.0 * f64::from(smp) + f64::from(rep),
        );
        let contended = if bql == "always" { 500 } else { 20 } * u64::from(smp);
        report = Some(serde_json::json!({
            "bql": {"sites": [
                {"site": "src/hw/uart.rs:88", "acquisitions": 1000, "contended": contended,
                 "wait_ns_total": contended * 300, "hold_ns_total": 50_000, "wait_ns_max": 9_000},
                {"site": "src/accel/cpu.rs:412", "acquisitions": 10, "contended": 1,
                 "wait_ns_total": 100, "hold_ns_total": 2_000, "wait_ns_max": 100},
            ]}
        }));
    }
    RunRecord {
        experiment: "bql-policies".into(),
        key: format!("{config_id}-{}-{rep}", h.hostname),
        config_id,
        config,
        backend: backend.into(),
        rep,
        status: Status::Done,
        reason: None,
        exit_code: Some(0),
        wall_ns: 500_000_000 + u64::from(rep),
        work: Some(throughput as u64),
        throughput: Some(throughput),
        output_hash: format!("h{smp}"),
        output_head: String::new(),
        load: 0,
        commit: "abc1234".into(),
        qemu_version: qemu.then(|| "QEMU emulator version 10.0.0".to_string()),
        host: h.clone(),
        started_at: format!("2026-12-01T10:{:02}:00Z", rep + smp * 5),
        command: vec!["vcpulab".into(), "run".into()],
        hist_log: None,
        metrics,
        report,
    }
}

fn not_done(mut r: RunRecord, status: Status, reason: &str) -> RunRecord {
    r.status = status;
    r.reason = Some(reason.into());
    r.metrics.clear();
    r.throughput = None;
    r.work = None;
    r.report = None;
    r.key.push_str(status.as_str());
    r
}

fn records() -> Vec<RunRecord> {
    let a = host("hostA", 2);
    let b = host("hostB", 8);
    let mut v = Vec::new();
    for smp in [1, 2, 4] {
        for bql in ["mmio", "always"] {
            for rep in 0..3 {
                // smp=1, mmio: throughputs 1 M, 2 M, 10 M (median 2 M).
                let t = if smp == 1 && bql == "mmio" {
                    [1e6, 2e6, 10e6][rep as usize]
                } else {
                    f64::from(smp) * 1e6 + f64::from(rep) * 1e3
                };
                let mut r = run(&a, smp, bql, "vcpulab", rep, t);
                if smp == 2 && bql == "always" && rep == 2 {
                    r.output_hash = "other".into();
                }
                v.push(r);
            }
        }
        for rep in 0..2 {
            v.push(run(&a, smp, "n/a", "qemu-10.0", rep, 5e5 * f64::from(smp)));
        }
    }
    for smp in [1, 2] {
        for rep in 0..5 {
            v.push(run(
                &b,
                smp,
                "mmio",
                "vcpulab",
                rep,
                f64::from(rep + 1) * 1e6,
            ));
        }
    }
    v.push(not_done(
        run(&a, 4, "always", "vcpulab", 3, 0.0),
        Status::Failed,
        "guest FAIL: 0x3333",
    ));
    v.push(not_done(
        run(&a, 4, "always", "vcpulab", 4, 0.0),
        Status::Timeout,
        "time limit 10 s",
    ));
    for smp in [1, 2] {
        v.push(not_done(
            run(&a, smp, "n/a", "qemu-7.2", 0, 0.0),
            Status::Skipped,
            "qemu-system-riscv64 (7.2) not installed",
        ));
    }
    v
}

fn spec() -> ReportSpec {
    ReportSpec {
        name: "bql-policies".into(),
        title: "BQL policies against vCPUs".into(),
        description: "Does taking the BQL only for MMIO scale with the vCPUs?".into(),
        command: "vcpulab experiment experiments/bql.toml".into(),
        axes: vec!["smp".into(), "bql".into(), "backend".into()],
        metrics: vec![
            MetricSpec {
                name: "throughput".into(),
                label: Some("work/s".into()),
            },
            MetricSpec {
                name: "bql.wait_ns.p99".into(),
                label: None,
            },
        ],
        plots: vec![
            PlotSpec {
                metric: "throughput".into(),
                x: "smp".into(),
                series: vec!["bql".into(), "backend".into()],
                title: None,
                log_x: true,
                log_y: false,
                kind: PlotKind::Line,
                file: "throughput-vs-smp".into(),
                only: Vec::new(),
            },
            PlotSpec {
                metric: "bql.wait_ns.p99".into(),
                x: "bql".into(),
                series: vec!["smp".into()],
                title: Some("BQL wait by policy".into()),
                log_x: false,
                log_y: true,
                kind: PlotKind::Bar,
                file: "wait-by-policy".into(),
                only: Vec::new(),
            },
            PlotSpec {
                metric: "no.such.metric".into(),
                x: "smp".into(),
                series: vec![],
                title: None,
                log_x: false,
                log_y: false,
                kind: PlotKind::Line,
                file: "missing".into(),
                only: Vec::new(),
            },
        ],
        not_for_qemu: vec!["bql".into()],
    }
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The table rows of summary.md under the heading that starts with `heading`.
fn section<'a>(md: &'a str, heading: &str) -> &'a str {
    let start = md
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?} in\n{md}"));
    let rest = &md[start + heading.len()..];
    let end = rest.find("\n#").unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn summary_has_the_facts_and_one_table_per_host() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_report(dir.path(), &spec(), &records()).unwrap();
    let md = read(&files.summary);

    assert!(md.starts_with("# BQL policies against vCPUs\n"), "{md}");
    assert!(md.contains("Does taking the BQL only for MMIO scale"));
    assert!(md.contains("vcpulab experiment experiments/bql.toml"));
    assert!(md.contains("`abc1234` (38 runs)"), "{md}");
    assert!(
        md.contains("started between 2026-12-01T10:05:00Z and 2026-12-01T10:24:00Z (19 min 0 s)"),
        "{md}"
    );
    assert!(
        md.contains("| hostA | 2 | Test CPU 2 | 6.1.0-test | 28 |"),
        "{md}"
    );
    assert!(
        md.contains("| hostB | 8 | Test CPU 8 | 6.1.0-test | 10 |"),
        "{md}"
    );

    // hostA: smp=1 → 2 threads (not over), smp=2 → 3, smp=4 → 5; the
    // configurations with threads: 3 smp × (2 vcpulab + 1 qemu-10.0), plus
    // the two skipped qemu-7.2 ones have no threads metric.
    assert!(
        md.contains(
            "on `hostA` (2 cores), 6 of 9 configurations kept more threads busy than there are \
             cores (by 1 to 3 threads; at most 5 busy threads)"
        ),
        "{md}"
    );
    assert!(!md.contains("on `hostB` (8 cores)"), "{md}");

    assert!(md.contains("| done | 34 |"), "{md}");
    assert!(md.contains("| failed | 1 |"), "{md}");
    assert!(md.contains("| timeout | 1 |"), "{md}");
    assert!(md.contains("| skipped | 2 |"), "{md}");
    assert!(md.contains("- failed ×1: guest FAIL: 0x3333"), "{md}");
    assert!(md.contains("- timeout ×1: time limit 10 s"), "{md}");
    assert!(
        md.contains("- skipped ×2: qemu-system-riscv64 (7.2) not installed"),
        "{md}"
    );

    let a = section(&md, "### `hostA`");
    let b = section(&md, "### `hostB`");
    // Header: min–max for hostA (3 runs a configuration), p25–p75 for hostB (5).
    assert!(
        a.contains("| `smp` | `bql` | `backend` | n | work/s median | work/s min–max |"),
        "{a}"
    );
    assert!(b.contains("work/s p25–p75"), "{b}");
    // Median of 1 M, 2 M, 10 M is 2 M; the p99 wait of reps 0..2 is 1000..1002 ns.
    assert!(
        a.contains(
            "| 1 | mmio | vcpulab | 3 | 2.00 M | 1.00 M–10.0 M | 1.00 µs | 1.00 µs–1.00 µs | 1 |"
        ),
        "{a}"
    );
    // Two distinct outputs in smp=2, always.
    assert!(a.contains("| 2 | always | vcpulab | 3 |"), "{a}");
    let row = a.lines().find(|l| l.starts_with("| 2 | always |")).unwrap();
    assert!(row.ends_with("| 2 |"), "{row}");
    // smp=4, always: 3 done runs of 5 (one failed, one timed out).
    assert!(a.contains("| 4 | always | vcpulab | 3 |"), "{a}");
    // QEMU rows: bql n/a, no wait figures.
    assert!(
        a.contains("| 2 | n/a | qemu-10.0 | 2 | 1.00 M | 1.00 M–1.00 M | – | – | 1 |"),
        "{a}"
    );
    // Skipped qemu-7.2 configuration: no done run.
    assert!(
        a.contains("| 1 | n/a | qemu-7.2 | 0 | – | – | – | – | 0 |"),
        "{a}"
    );
    // Rows by axis values: smp 1 before 2 before 4, within hostA only.
    let pos = |s: &str| a.find(s).unwrap_or_else(|| panic!("{s} in {a}"));
    assert!(pos("| 1 | always |") < pos("| 2 | always |"));
    assert!(pos("| 2 | always |") < pos("| 4 | always |"));
    assert!(!a.contains("| vcpulab | 5 |"), "{a}");
    // hostB: 1..5 M → median 3 M, p25–p75 2 M–4 M.
    assert!(
        b.contains("| 1 | mmio | vcpulab | 5 | 3.00 M | 2.00 M–4.00 M |"),
        "{b}"
    );
    assert_eq!(
        b.lines()
            .filter(|l| l.starts_with("| ") && !l.starts_with("| `"))
            .count(),
        2
    );

    assert!(
        md.contains("The axis `bql` does not apply to QEMU: QEMU rows show n/a there."),
        "{md}"
    );
    assert!(md.contains("QEMU rows have no instruction counts"), "{md}");
    assert!(
        md.contains("their throughput is the guest's reported work per wall second"),
        "{md}"
    );

    assert!(
        md.contains("![work/s vs smp](plots/throughput-vs-smp.svg)"),
        "{md}"
    );
    assert!(
        md.contains("![BQL wait by policy](plots/wait-by-policy.svg)"),
        "{md}"
    );
    assert!(
        md.contains("one series per `bql` × `backend` and per host; points are medians"),
        "{md}"
    );
    assert!(md.contains("bars span min–max"), "{md}");
    assert!(
        md.contains("Plot `missing` skipped: no done run has the metric `no.such.metric`."),
        "{md}"
    );
    assert!(!dir.path().join("plots/missing.svg").exists());

    // BQL sites: on hostA, smp=4 always has the most contended acquisitions
    // (2001 per run), summed over its 3 done runs.
    assert!(md.contains("## BQL call sites"), "{md}");
    assert!(
        md.contains("`smp=4, bql=always, backend=vcpulab`; its sites summed over 3 done runs"),
        "{md}"
    );
    assert!(
        md.contains("| src/hw/uart.rs:88 | 3000 | 6000 | 0.00180 | 0.60 | 9.00 µs | 0.00015 |"),
        "{md}"
    );
}

#[test]
fn csv_has_a_row_per_record_and_the_columns_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("runs.csv");
    let recs = records();
    write_csv(&path, &spec(), &recs).unwrap();
    let mut rd = csv::Reader::from_path(&path).unwrap();
    let header: Vec<String> = rd.headers().unwrap().iter().map(String::from).collect();
    let expect_start = [
        "experiment",
        "key",
        "config_id",
        "smp",
        "bql",
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
    assert_eq!(&header[..expect_start.len()], &expect_start);
    // The metrics, sorted, without the ones already a column.
    assert_eq!(
        &header[expect_start.len()..],
        &["bql.wait_ns.p99", "instructions.total", "threads", "wall_s"]
    );
    let rows: Vec<csv::StringRecord> = rd.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), recs.len());
    let col = |n: &str| header.iter().position(|h| h == n).unwrap();
    let failed = rows.iter().find(|r| &r[col("status")] == "failed").unwrap();
    assert_eq!(&failed[col("reason")], "guest FAIL: 0x3333");
    assert_eq!(&failed[col("threads")], "");
    let qemu = rows
        .iter()
        .find(|r| &r[col("backend")] == "qemu-10.0" && &r[col("smp")] == "4")
        .unwrap();
    assert_eq!(&qemu[col("bql")], "n/a");
    assert_eq!(&qemu[col("throughput")], "2000000");
    assert_eq!(&qemu[col("qemu_version")], "QEMU emulator version 10.0.0");
    assert_eq!(&qemu[col("instructions.total")], "");
    assert_eq!(&qemu[col("hostname")], "hostA");
}

/// Whether `svg` has a text element whose text is `s` (plotters writes the
/// text on a line of its own).
fn has_text(svg: &str, s: &str) -> bool {
    let s = s
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    svg.lines().any(|l| l.trim() == s)
}

#[test]
fn plots_are_svg_with_the_legend() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_report(dir.path(), &spec(), &records()).unwrap();
    assert_eq!(
        files.plots,
        vec![
            dir.path().join("plots/throughput-vs-smp.svg"),
            dir.path().join("plots/wait-by-policy.svg"),
        ]
    );
    let line = read(&files.plots[0]);
    assert!(line.trim_start().starts_with("<svg"), "{}", &line[..200]);
    assert!(line.trim_end().ends_with("</svg>"));
    assert!(line.contains("width=\"800\"") && line.contains("height=\"500\""));
    for label in [
        "bql=mmio, backend=vcpulab, host=hostA",
        "bql=always, backend=vcpulab, host=hostA",
        "bql=n/a, backend=qemu-10.0, host=hostA",
        "bql=mmio, backend=vcpulab, host=hostB",
        "work/s vs smp",
        "smp (log)",
    ] {
        assert!(has_text(&line, label), "{label} not in the line plot");
    }
    // Tick labels in the metric's unit.
    assert!(line.lines().any(|l| l.trim() == "2.00 M"), "no 2.00 M tick");
    let bar = read(&files.plots[1]);
    for label in [
        "smp=1, host=hostA",
        "smp=1, host=hostB",
        "smp=4, host=hostA",
        "BQL wait by policy",
        "always",
        "mmio",
        "bql.wait_ns.p99 (log)",
        "1.00 µs",
    ] {
        assert!(has_text(&bar, label), "{label} not in the bar plot");
    }
    assert!(bar.contains("<rect"));
}

#[test]
fn same_runs_same_bytes_whatever_their_order() {
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    let recs = records();
    let mut reversed = recs.clone();
    reversed.reverse();
    write_report(one.path(), &spec(), &recs).unwrap();
    write_report(two.path(), &spec(), &reversed).unwrap();
    for f in [
        "summary.md",
        "runs.csv",
        "plots/throughput-vs-smp.svg",
        "plots/wait-by-policy.svg",
    ] {
        let a = std::fs::read(one.path().join(f)).unwrap();
        let b = std::fs::read(two.path().join(f)).unwrap();
        assert!(a == b, "{f} differs");
    }
    // And again into the same directory: the files are replaced, not appended to.
    let before = std::fs::read(one.path().join("summary.md")).unwrap();
    write_report(one.path(), &spec(), &recs).unwrap();
    assert_eq!(
        before,
        std::fs::read(one.path().join("summary.md")).unwrap()
    );
}

/// Writes a report into `out` where something is in the way, and checks the
/// error names `bad` and the old summary is untouched.
fn fails_naming(out: &Path, bad: &Path) {
    std::fs::write(out.join("summary.md"), "OLD SUMMARY").unwrap();
    let err = write_report(out, &spec(), &records()).unwrap_err();
    match &err {
        ReportError::Io { path, .. } => assert_eq!(path, bad, "{err}"),
        other => panic!("expected an I/O error, got {other:?}"),
    }
    assert!(
        err.to_string().contains(&bad.display().to_string()),
        "{err}"
    );
    assert_eq!(read(&out.join("summary.md")), "OLD SUMMARY");
    let left: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "temporary files left: {left:?}");
}

#[test]
fn a_failed_write_names_the_path_and_keeps_the_old_summary() {
    // runs.csv is a directory: the rename over it fails.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("runs.csv")).unwrap();
    fails_naming(dir.path(), &dir.path().join("runs.csv"));

    // plots is a file: the plot directory cannot be made.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("plots"), "x").unwrap();
    fails_naming(dir.path(), &dir.path().join("plots"));

    // A read-only directory (not for root, who may write anyway).
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(out.join("plots")).unwrap();
    std::fs::write(out.join("summary.md"), "OLD SUMMARY").unwrap();
    use std::os::unix::fs::PermissionsExt;
    for d in [&out, &out.join("plots")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    let probe = out.join("probe");
    if std::fs::write(&probe, "").is_err() {
        let err = write_report(&out, &spec(), &records()).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(
                &out.join("plots/throughput-vs-smp.svg")
                    .display()
                    .to_string()
            ),
            "{msg}"
        );
        assert_eq!(read(&out.join("summary.md")), "OLD SUMMARY");
    } else {
        std::fs::remove_file(&probe).unwrap();
    }
    for d in [&out, &out.join("plots")] {
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

#[test]
fn an_empty_set_of_runs_still_gives_a_report() {
    let dir = tempfile::tempdir().unwrap();
    let files = write_report(dir.path(), &spec(), &[]).unwrap();
    let md = read(&files.summary);
    assert!(md.contains("No runs recorded."), "{md}");
    assert!(files.plots.is_empty());
    let csv = read(&files.csv);
    assert_eq!(csv.lines().count(), 1, "{csv}");
}

#[test]
fn a_table_with_both_spreads_marks_the_iqr_cells() {
    let h = host("solo", 4);
    let mut recs: Vec<RunRecord> = (0..3)
        .map(|rep| run(&h, 1, "mmio", "vcpulab", rep, f64::from(rep + 1)))
        .collect();
    recs.extend((0..5).map(|rep| run(&h, 2, "mmio", "vcpulab", rep, f64::from(rep + 1) * 10.0)));
    let dir = tempfile::tempdir().unwrap();
    let files = write_report(dir.path(), &spec(), &recs).unwrap();
    let md = read(&files.summary);
    assert!(md.contains("| work/s median | work/s spread |"), "{md}");
    assert!(md.contains("| 1 | mmio | vcpulab | 3 | 2 | 1–3 |"), "{md}");
    assert!(
        md.contains("| 2 | mmio | vcpulab | 5 | 30 | IQR 20–40 |"),
        "{md}"
    );
    // No QEMU rows, no QEMU sentence; one host, no oversubscription.
    assert!(!md.contains("QEMU rows"), "{md}");
    assert!(!md.contains("Oversubscribed"), "{md}");
    assert!(md.contains("bar heights are medians over the done runs, whiskers span min–max"));
}

#[test]
fn bad_plot_files_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = spec();
    s.plots[1].file = "../escape".into();
    let err = write_report(dir.path(), &s, &records()).unwrap_err();
    assert!(matches!(err, ReportError::PlotFile { ref file } if file == "../escape"));
    assert!(err.to_string().contains("\"../escape\""), "{err}");
    let mut s = spec();
    s.plots[1].file = s.plots[0].file.clone();
    let err = write_report(dir.path(), &s, &records()).unwrap_err();
    assert!(
        matches!(err, ReportError::DuplicatePlotFile { .. }),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
