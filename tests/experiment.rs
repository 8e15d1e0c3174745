//! `vcpulab experiment` and `vcpulab report` on the real binary: bad
//! experiment files refused before anything runs (file, line, message,
//! exit 2), a hanging guest cut by its time limit while the sweep goes on,
//! resume after SIGINT and after SIGKILL, shards that merge into the runs
//! of one sweep, a missing QEMU that skips its runs, an unusable output
//! directory.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{guest, vcpulab_bin};
use serde_json::Value;

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vcpulab-exp-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// Runs `vcpulab ARGS` to its end (at most 5 minutes).
fn vcpulab(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(vcpulab_bin());
    cmd.args(args).stdin(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let f = common::proc::run_bounded(cmd, Duration::from_secs(300), 1 << 20).unwrap();
    assert!(!f.timed_out, "vcpulab {args:?} hung");
    (
        f.code,
        String::from_utf8_lossy(&f.stdout).into_owned(),
        String::from_utf8_lossy(&f.stderr).into_owned(),
    )
}

/// `vcpulab experiment FILE --out OUT EXTRA...`.
fn sweep(file: &Path, out: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let mut a = vec![
        "experiment",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    a.extend_from_slice(extra);
    vcpulab(&a, &[])
}

fn records(dir: &Path) -> Vec<Value> {
    std::fs::read_to_string(dir.join("runs.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn keys(dir: &Path) -> BTreeSet<String> {
    records(dir)
        .iter()
        .map(|r| r["key"].as_str().unwrap().to_string())
        .collect()
}

/// A small sweep of the MMIO storm: 2 smp × 2 bql × reps.
fn storm(reps: u32, iters: u64, extra: &str) -> String {
    format!(
        r#"title = "storm"
guest = "{}"
work = "iterations="
reps = {reps}
time-limit = 30
metrics = ["throughput"]
[run]
param.0 = {iters}
param.4 = 1
[axes]
smp = [1, 2]
bql = ["mmio", "device"]
{extra}
[[plot]]
metric = "throughput"
x = "smp"
series = ["bql"]
"#,
        guest("smp_mmio_storm").display()
    )
}

#[test]
fn bad_experiment_files_are_refused_with_file_and_line() {
    let dir = scratch("bad");
    let g = guest("hello").display().to_string();
    let cases: &[(&str, String, usize, &str)] = &[
        (
            "unknown-key",
            format!("guest = \"{g}\"\nrepz = 3\n"),
            2,
            "unknown field `repz`",
        ),
        (
            "unknown-option",
            format!("guest = \"{g}\"\n[axes]\nbqll = [\"mmio\"]\n"),
            3,
            "unknown option 'bqll'",
        ),
        (
            "runner-option",
            format!("guest = \"{g}\"\n[run]\nstats = \"x\"\n"),
            3,
            "set by the experiment runner",
        ),
        (
            "bad-value",
            format!("guest = \"{g}\"\n[axes]\nsmp = [1]\nbql = [\"mmio\", \"sometimes\"]\n"),
            4,
            "sometimes",
        ),
        (
            "impossible",
            format!(
                "guest = \"{g}\"\n[run]\naccel = \"tcg,thread=single\"\n[axes]\nicount = [\"shift=0,sleep=off,smp=local,quantum=1ms\"]\n"
            ),
            5,
            "thread=multi",
        ),
        (
            "bad-backend",
            format!("guest = \"{g}\"\n[axes]\nbackend = [\"qemu-9\"]\n"),
            3,
            "invalid backend 'qemu-9'",
        ),
        (
            "qemu-impossible",
            format!(
                "guest = \"{g}\"\n[run]\naccel = \"tcg,thread=multi\"\n[axes]\nbackend = [\"vcpulab\", \"qemu-10.0\"]\nicount = [\"shift=0,sleep=off,smp=global\"]\n"
            ),
            6,
            "cannot run on qemu-10.0",
        ),
        (
            "bad-reps",
            format!("guest = \"{g}\"\nreps = 0\n"),
            2,
            "invalid reps 0",
        ),
        (
            "bad-limit",
            format!("guest = \"{g}\"\ntime-limit = \"soon\"\n"),
            2,
            "invalid time-limit",
        ),
        (
            "bad-load",
            format!("guest = \"{g}\"\n[axes]\nload = [0, -1]\n"),
            3,
            "invalid load",
        ),
        (
            "plot-axis",
            format!(
                "guest = \"{g}\"\n[axes]\nsmp = [1]\n[[plot]]\nmetric = \"wall_s\"\nx = \"vcpus\"\n"
            ),
            6,
            "'vcpus' is not an axis",
        ),
        (
            "exclude-value",
            format!("guest = \"{g}\"\n[axes]\nsmp = [1, 2]\n[[exclude]]\nsmp = 3\n"),
            4,
            "'3' is not a value of axis 'smp'",
        ),
        (
            "not-a-list",
            format!("guest = \"{g}\"\n[axes]\nsmp = 2\n"),
            3,
            "expected a list",
        ),
        ("syntax", format!("guest = \"{g}\"\n[axes\n"), 2, ""),
    ];
    for (name, text, line, msg) in cases {
        let f = write(&dir, &format!("{name}.toml"), text);
        let out = dir.join(format!("out-{name}"));
        let (code, _, err) = sweep(&f, &out, &[]);
        assert_eq!(code, Some(2), "{name}: {err}");
        let want = format!("{}:{line}:", f.display());
        assert!(err.contains(&want), "{name}: expected '{want}' in: {err}");
        assert!(err.contains(msg), "{name}: expected '{msg}' in: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{name}: one line: {err}");
        assert!(!out.exists(), "{name}: nothing may run or be written");
    }
    // Bad command-line values.
    let ok = write(&dir, "ok.toml", &storm(1, 1000, ""));
    for (args, msg) in [
        (vec!["--reps", "0"], "invalid --reps"),
        (vec!["--shard", "3/2"], "invalid --shard"),
        (vec!["--shard", "0/2"], "invalid --shard"),
        (vec!["--filter", "bql"], "invalid --filter"),
        (vec!["--filter", "kick=futex"], "'kick' is not an axis"),
        (
            vec!["--filter", "bql=always"],
            "'always' is not a value of 'bql'",
        ),
    ] {
        let mut a = vec!["experiment", ok.to_str().unwrap(), "--out"];
        let out = dir.join("out-cli");
        a.push(out.to_str().unwrap());
        a.extend(args.iter());
        let (code, _, err) = vcpulab(&a, &[]);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(msg), "{args:?}: expected '{msg}' in: {err}");
        assert!(!out.exists(), "{args:?}: nothing may run");
    }
    let (code, _, err) = vcpulab(&["experiment", "/nonexistent/x.toml"], &[]);
    assert_eq!(code, Some(2));
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn a_hanging_guest_is_cut_and_the_sweep_goes_on() {
    let dir = scratch("hang");
    // spin.elf never ends.
    let spin = format!(
        "guest = \"{}\"\nreps = 2\ntime-limit = 1\n[axes]\nsmp = [1, 2]\n",
        guest("spin").display()
    );
    let f = write(&dir, "spin.toml", &spin);
    let out = dir.join("out");
    let t = Instant::now();
    let (code, _, err) = sweep(&f, &out, &[]);
    assert_eq!(code, Some(0), "{err}");
    let rs = records(&out);
    assert_eq!(rs.len(), 4, "{err}");
    for r in &rs {
        assert_eq!(r["status"], "timeout", "{r}");
        assert!(r["wall_ns"].as_u64().unwrap() >= 1_000_000_000);
        assert!(r["reason"].as_str().unwrap().contains("time limit"));
    }
    assert!(
        t.elapsed() < Duration::from_secs(60),
        "each run is cut at its limit"
    );
    assert!(out.join("summary.md").is_file());
}

#[test]
fn an_interrupted_sweep_resumes_and_skips_the_runs_it_has() {
    let dir = scratch("resume");
    // Each run takes a good fraction of a second, so signals land mid-run.
    let f = write(&dir, "s.toml", &storm(2, 400_000, ""));
    let out = dir.join("out");
    let args = [
        "experiment",
        f.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ];
    for sig in [
        nix::sys::signal::Signal::SIGINT,
        nix::sys::signal::Signal::SIGKILL,
    ] {
        let mut child = Command::new(vcpulab_bin())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Wait for at least one stored run, then signal.
        let t = Instant::now();
        while count_runs(&out) < 1 + usize::from(sig == nix::sys::signal::Signal::SIGKILL) * 2 {
            assert!(t.elapsed() < Duration::from_secs(120), "no run stored");
            std::thread::sleep(Duration::from_millis(20));
        }
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), sig).unwrap();
        let st = child.wait().unwrap();
        if sig == nix::sys::signal::Signal::SIGINT {
            assert_eq!(st.code(), Some(130));
        }
        // No half-written record, no leftover temporary files counted as runs.
        for e in std::fs::read_dir(out.join("runs")).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "json")
                && !p.file_name().unwrap().to_string_lossy().starts_with('.')
            {
                let v: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
                assert_eq!(v["status"], "done", "{}", p.display());
            }
        }
    }
    let before = count_runs(&out);
    assert!(
        before < 8,
        "the sweep was interrupted before its end ({before} runs)"
    );
    let (code, _, err) = vcpulab(&args, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(&format!("resuming: {before} of 8 runs")),
        "{err}"
    );
    let rs = records(&out);
    assert_eq!(rs.len(), 8);
    assert_eq!(keys(&out).len(), 8, "one record per run");
    let ran: usize = err.lines().filter(|l| l.contains(": done")).count();
    assert_eq!(ran, 8 - before, "only the missing runs ran again: {err}");
}

fn count_runs(out: &Path) -> usize {
    std::fs::read_dir(out.join("runs"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.ends_with(".json") && !n.starts_with('.')
                })
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn shards_merge_into_the_runs_of_one_sweep() {
    let dir = scratch("shard");
    let f = write(&dir, "s.toml", &storm(3, 2000, ""));
    let full = dir.join("full");
    let (code, _, err) = sweep(&f, &full, &[]);
    assert_eq!(code, Some(0), "{err}");
    let mut parts = Vec::new();
    for k in 1..=3 {
        let d = dir.join(format!("shard{k}"));
        let (code, _, err) = sweep(&f, &d, &["--shard", &format!("{k}/3")]);
        assert_eq!(code, Some(0), "{err}");
        parts.push(d);
    }
    let sets: Vec<BTreeSet<String>> = parts.iter().map(|d| keys(d)).collect();
    for (i, a) in sets.iter().enumerate() {
        assert_eq!(a.len(), 4, "12 runs in 3 shards");
        for b in &sets[i + 1..] {
            assert!(a.is_disjoint(b), "shards overlap");
        }
    }
    let merged = dir.join("merged");
    let mut a = vec!["report".to_string()];
    a.extend(parts.iter().map(|p| p.display().to_string()));
    a.push("--out".into());
    a.push(merged.display().to_string());
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    let (code, _, err) = vcpulab(&a, &[]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(keys(&merged), keys(&full), "the shards are the whole sweep");
    assert!(merged.join("summary.md").is_file());
    assert!(merged.join("runs.csv").is_file());
    // Without --out, merging is refused.
    let (code, _, err) = vcpulab(&a[..a.len() - 2], &[]);
    assert_eq!(code, Some(2), "{err}");
    // A filter runs a subset.
    let sub = dir.join("sub");
    let (code, _, err) = sweep(&f, &sub, &["--filter", "bql=device,smp=2", "--reps", "2"]);
    assert_eq!(code, Some(0), "{err}");
    let rs = records(&sub);
    assert_eq!(rs.len(), 2);
    for r in rs {
        assert_eq!(r["config"]["bql"], "device");
        assert_eq!(r["config"]["smp"], "2");
        assert_eq!(r["work"].as_u64(), Some(4000), "two harts' iterations");
        assert!(r["metrics"]["bql.acquisitions"].as_f64().is_some());
        // The recorded command and the child's own argv name the program,
        // not the path of this build.
        assert_eq!(r["command"][0], "vcpulab", "{r}");
        assert_eq!(r["report"]["argv"][0], "vcpulab", "{r}");
        assert!(
            r["hist_log"]
                .as_str()
                .is_some_and(|h| sub.join(h).is_file())
        );
    }
}

#[test]
fn a_missing_qemu_skips_its_runs_with_the_reason() {
    let dir = scratch("noqemu");
    let f = write(
        &dir,
        "q.toml",
        &storm(1, 1000, "backend = [\"vcpulab\", \"qemu-7.2\"]"),
    );
    let out = dir.join("out");
    let (code, _, err) = vcpulab(
        &[
            "experiment",
            f.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
        &[("VCPULAB_QEMU_7_2", "/nonexistent/qemu-system-riscv64")],
    );
    assert_eq!(code, Some(0), "{err}");
    let rs = records(&out);
    // QEMU's configurations collapse over bql (n/a): 2 smp.
    let q: Vec<&Value> = rs.iter().filter(|r| r["backend"] == "qemu-7.2").collect();
    assert_eq!(q.len(), 2, "{rs:?}");
    for r in q {
        assert_eq!(r["status"], "skipped");
        assert_eq!(r["config"]["bql"], "n/a");
        assert!(r["reason"].as_str().unwrap().contains("qemu-7.2"), "{r}");
    }
    assert_eq!(rs.iter().filter(|r| r["status"] == "done").count(), 4);
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(summary.contains("skipped"), "{summary}");
}

#[test]
fn an_unusable_output_directory_is_a_clear_error() {
    let dir = scratch("unwritable");
    let f = write(&dir, "s.toml", &storm(1, 1000, ""));
    let file = write(&dir, "a-file", "x");
    let out = file.join("out");
    let (code, _, err) = sweep(&f, &out, &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&out.display().to_string()) && err.contains("cannot create"),
        "{err}"
    );
    let (code, _, err) = vcpulab(&["report", dir.to_str().unwrap()], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not a result directory"), "{err}");
}

/// Every committed experiment file is valid (checked with `--dry-run`, which
/// parses every configuration with `vcpulab run`'s checks).
#[test]
fn the_committed_experiments_are_valid() {
    let dir = common::repo_root().join("experiments");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|x| x != "toml") {
            continue;
        }
        n += 1;
        let mut cmd = Command::new(vcpulab_bin());
        cmd.current_dir(common::repo_root())
            .args(["experiment", p.to_str().unwrap(), "--dry-run"]);
        let f = common::proc::run_bounded(cmd, Duration::from_secs(60), 1 << 20).unwrap();
        let err = String::from_utf8_lossy(&f.stderr);
        let out = String::from_utf8_lossy(&f.stdout);
        assert_eq!(f.code, Some(0), "{}: {err}", p.display());
        assert!(out.contains(" configurations, "), "{}: {out}", p.display());
    }
    assert!(n >= 9, "the nine experiments: found {n}");
}

/// The README's main job: `vcpulab experiment` with no FILE runs
/// experiments/quick.toml. Here one repetition of its one-vCPU
/// configurations, which leaves the report with its plots.
#[test]
fn the_main_job_runs_quick_and_leaves_a_report() {
    let out = scratch("quick");
    let mut cmd = Command::new(vcpulab_bin());
    cmd.current_dir(common::repo_root()).args([
        "experiment",
        "--reps",
        "1",
        "--filter",
        "smp=1",
        "--out",
        out.to_str().unwrap(),
    ]);
    let f = common::proc::run_bounded(cmd, Duration::from_secs(300), 1 << 20).unwrap();
    let err = String::from_utf8_lossy(&f.stderr);
    assert_eq!(f.code, Some(0), "{err}");
    let rs = records(&out);
    assert!(rs.iter().all(|r| r["experiment"] == "quick"));
    let vcpulab_done = rs
        .iter()
        .filter(|r| r["backend"] == "vcpulab" && r["status"] == "done")
        .count();
    assert_eq!(vcpulab_done, 6, "3 policies x 2 modes: {err}");
    for r in &rs {
        // QEMU rows are done, or skipped with the reason when a QEMU is
        // missing; never failed.
        assert!(r["status"] == "done" || r["status"] == "skipped", "{r}");
        if r["status"] == "done" {
            assert_eq!(r["work"].as_u64(), Some(600_000), "{r}");
        }
    }
    let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(summary.contains("plots/throughput-vs-smp.svg"), "{summary}");
    assert!(out.join("plots/throughput-vs-smp.svg").is_file());
    // The traced configuration (smp=2) is not in the filtered sweep.
    assert!(!out.join("trace.json").exists());
}

/// The committed reference results rebuild into a report: `vcpulab report
/// results/NAME` reads what is committed (runs.jsonl, the experiment file).
#[test]
fn the_committed_results_rebuild() {
    let results = common::repo_root().join("results");
    let mut n = 0;
    for e in std::fs::read_dir(&results).unwrap() {
        let p = e.unwrap().path();
        if !p.join("runs.jsonl").is_file() {
            continue;
        }
        n += 1;
        let out = scratch(&format!(
            "rebuild-{}",
            p.file_name().unwrap().to_string_lossy()
        ));
        let (code, _, err) = vcpulab(
            &[
                "report",
                p.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
            &[],
        );
        assert_eq!(code, Some(0), "{}: {err}", p.display());
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            records(&out)
                .iter()
                .all(|r| r["experiment"] == name.as_str())
        );
        let summary = std::fs::read_to_string(out.join("summary.md")).unwrap();
        assert!(
            summary.contains(&format!("experiments/{name}.toml")),
            "{summary}"
        );
    }
    assert!(n >= 9, "nine committed result sets: found {n}");
}
