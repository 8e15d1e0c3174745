//! The run report (`--stats FILE`, schema 2): written however the run ends
//! (finisher, timeout, monitor quit, host error), with its units in the field
//! names, `pc` as stderr prints it, and no temporary file left behind.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{guest, vcpulab_bin};

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vcpulab-report-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs vcpulab with `args` (stdin from `input`), bounded; returns the exit
/// status and stderr.
fn run(args: &[&str], input: &[u8]) -> (Option<i32>, String) {
    let mut child = Command::new(vcpulab_bin())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn vcpulab");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("vcpulab {args:?} did not finish");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.code(), err)
}

fn read_report(dir: &Path) -> serde_json::Value {
    let names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["r.json".to_string()], "only the report is left");
    serde_json::from_str(&std::fs::read_to_string(dir.join("r.json")).unwrap()).unwrap()
}

/// Checks an RFC 3339 UTC timestamp `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn assert_rfc3339(s: &str) {
    let b = s.as_bytes();
    assert_eq!(b.len(), 24, "{s}");
    for (i, c) in b.iter().enumerate() {
        match i {
            4 | 7 => assert_eq!(*c, b'-', "{s}"),
            10 => assert_eq!(*c, b'T', "{s}"),
            13 | 16 => assert_eq!(*c, b':', "{s}"),
            19 => assert_eq!(*c, b'.', "{s}"),
            23 => assert_eq!(*c, b'Z', "{s}"),
            _ => assert!(c.is_ascii_digit(), "{s}"),
        }
    }
    let year: u32 = s[..4].parse().unwrap();
    assert!((2024..2200).contains(&year), "{s}");
}

#[test]
fn finisher_fail_report_fields() {
    let dir = scratch("fail");
    let r = dir.join("r.json");
    let k = guest("exit_code");
    let args = [
        "run",
        "--kernel",
        k.to_str().unwrap(),
        "--timeout",
        "20",
        "--stats",
        r.to_str().unwrap(),
    ];
    let (code, err) = run(&args, b"");
    assert_eq!(code, Some(3), "{err}");
    let v = read_report(&dir);
    assert_eq!(v["schema"], 2);
    assert_rfc3339(v["started_at"].as_str().unwrap());
    let argv: Vec<&str> = v["argv"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(&argv[1..], &args[..]);
    assert_eq!(v["exit"]["reason"], "finisher_fail");
    assert_eq!(v["exit"]["code"], 3);
    assert!(v["exit"]["signal"].is_null());
    assert_eq!(v["config"]["timeout_ns"], 20_000_000_000u64);
    assert!(v["config"].get("timeout").is_none());
    let pc = v["vcpus"][0]["pc"].as_str().unwrap();
    assert!(
        pc.starts_with("0x8") && u64::from_str_radix(&pc[2..], 16).is_ok(),
        "{pc}"
    );
    assert_eq!(v["vcpus"][0]["traps"], 0);
    assert!(v["vcpus"][0]["last_trap"].is_null());
}

#[test]
fn timeout_report_names_the_last_trap() {
    let dir = scratch("timeout");
    let r = dir.join("r.json");
    let k = guest("timer_irq");
    let (code, err) = run(
        &[
            "run",
            "--kernel",
            k.to_str().unwrap(),
            "--param",
            "iters=1000000000",
            "--param",
            "delay=1000",
            "--timeout",
            "0.5",
            "--stats",
            r.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(code, Some(124), "{err}");
    let v = read_report(&dir);
    assert_eq!(v["exit"]["reason"], "timeout");
    let t = &v["vcpus"][0]["last_trap"];
    assert_eq!(t["cause"], (1u64 << 63) | 7, "{t}");
    assert_eq!(t["cause_name"], "machine timer interrupt");
    assert!(t["pc"].as_str().unwrap().starts_with("0x8"), "{t}");
    assert!(v["vcpus"][0]["traps"].as_u64().unwrap() > 0);
    assert!(
        err.contains("the last: cause 0x8000000000000007 (machine timer interrupt) at pc 0x8"),
        "{err}"
    );
}

#[test]
fn monitor_quit_and_shift_changes() {
    let dir = scratch("quit");
    let r = dir.join("r.json");
    let k = guest("spin");
    let (code, err) = run(
        &[
            "run",
            "--kernel",
            k.to_str().unwrap(),
            "--icount",
            "shift=auto",
            "--monitor",
            "stdio",
            "--timeout",
            "20",
            "--stats",
            r.to_str().unwrap(),
        ],
        b"quit\n",
    );
    assert_eq!(code, Some(0), "{err}");
    let v = read_report(&dir);
    assert_eq!(v["exit"]["reason"], "quit");
    let c = &v["icount"]["shift_changes"][0];
    assert_eq!(c["wall_ns"], 0);
    assert_eq!(c["shift"], 3);
    assert!(v["config"]["timeout_ns"].is_u64());
}

#[test]
fn host_error_still_writes_the_report() {
    let dir = scratch("host");
    let r = dir.join("r.json");
    let k = guest("spin");
    let sock = dir.join("no/such/dir/m.sock");
    let (code, err) = run(
        &[
            "run",
            "--kernel",
            k.to_str().unwrap(),
            "--monitor",
            &format!("unix:{}", sock.display()),
            "--stats",
            r.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("host error") && err.contains("m.sock"),
        "{err}"
    );
    let v = read_report(&dir);
    assert_eq!(v["exit"]["reason"], "host_error");
    assert_eq!(v["exit"]["code"], 1);
    assert!(v["exit"]["message"].as_str().unwrap().contains("m.sock"));
}

/// `--hist-log` writes the report's latency histograms in the HdrHistogram
/// log format: each one readable back, with the counts the report gives.
#[test]
fn hist_log_holds_the_report_histograms() {
    use base64::Engine as _;
    use hdrhistogram::serialization::Deserializer;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};

    let dir = scratch("hlog");
    let hdir = scratch("hlog-h");
    let r = dir.join("r.json");
    let h = hdir.join("h.hlog");
    let k = guest("smp_ipi_pingpong");
    let (code, err) = run(
        &[
            "run",
            "--kernel",
            k.to_str().unwrap(),
            "--smp",
            "2",
            "--param",
            "0=300",
            "--bql-hold-sample",
            "1",
            "--timeout",
            "20",
            "--stats",
            r.to_str().unwrap(),
            "--hist-log",
            h.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(code, Some(0), "{err}");
    let v = read_report(&dir);
    let bytes = std::fs::read(&h).unwrap();
    let mut found = std::collections::BTreeMap::new();
    for e in IntervalLogIterator::new(&bytes) {
        if let LogEntry::Interval(i) = e.expect("a valid log line") {
            let tag = i
                .tag()
                .expect("every interval is tagged")
                .as_str()
                .to_string();
            let raw = base64::engine::general_purpose::STANDARD
                .decode(i.encoded_histogram())
                .expect("base64");
            let hist: hdrhistogram::Histogram<u64> = Deserializer::new()
                .deserialize(&mut raw.as_slice())
                .expect("a V2 histogram");
            found.insert(tag, hist.len());
        }
    }
    let count = |p: &serde_json::Value| p["count"].as_u64().unwrap();
    // 300 round trips wake a halted hart about 600 times.
    assert!(count(&v["kicks"]["halted_ns"]) >= 300, "{}", v["kicks"]);
    assert_eq!(
        found.get("kick_halted_ns"),
        Some(&count(&v["kicks"]["halted_ns"]))
    );
    assert!(count(&v["bql"]["hold_ns"]) > 0);
    assert_eq!(found.get("bql_hold_ns"), Some(&count(&v["bql"]["hold_ns"])));
    for tag in found.keys() {
        assert!(
            [
                "bql_wait_ns",
                "bql_hold_ns",
                "kick_running_ns",
                "kick_halted_ns",
                "iothread_lateness_ns",
                "icount_handoff_ns"
            ]
            .contains(&tag.as_str()),
            "{tag}"
        );
    }
}

/// `--timer-slack` is in the report's config (1 ns, QEMU's, by default; 0
/// for the thread's default), and so are the trace options.
#[test]
fn timer_slack_is_recorded_in_the_config() {
    let k = guest("hello");
    for (slack, expect) in [(None, 1u64), (Some("250000"), 250_000), (Some("0"), 0)] {
        let dir = scratch(&format!("slack-{expect}"));
        let r = dir.join("r.json");
        let mut args = vec![
            "run",
            "--kernel",
            k.to_str().unwrap(),
            "--timeout",
            "20",
            "--stats",
            r.to_str().unwrap(),
        ];
        if let Some(s) = slack {
            args.extend(["--timer-slack", s]);
        }
        let (code, err) = run(&args, b"");
        assert_eq!(code, Some(0), "{err}");
        let v = read_report(&dir);
        assert_eq!(v["config"]["timer_slack_ns"], expect, "{slack:?}");
        assert!(v["config"]["trace"].is_null());
        assert_eq!(v["config"]["trace_events"], 200_000);
    }
}

/// The trace hash: identical run after run for an SMP guest under
/// round-robin icount (`sleep=off` makes the run a function of the ELF),
/// different when the guest sees other times, and combined over the harts.
#[test]
fn trace_hash_is_a_function_of_what_the_harts_saw() {
    let k = guest("timer_landing");
    let hash = |shift: &str, tag: &str| {
        let dir = scratch(tag);
        let r = dir.join("r.json");
        let icount = format!("shift={shift},sleep=off");
        let (code, err) = run(
            &[
                "run",
                "--kernel",
                k.to_str().unwrap(),
                "--smp",
                "3",
                "--icount",
                &icount,
                "--timeout",
                "20",
                "--stats",
                r.to_str().unwrap(),
            ],
            b"",
        );
        assert_eq!(code, Some(0), "{err}");
        let v = read_report(&dir);
        let per: Vec<String> = v["vcpus"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["trace_hash"].as_str().unwrap().to_string())
            .collect();
        (v["trace_hash"].as_str().unwrap().to_string(), per)
    };
    let a = hash("3", "th-a");
    let b = hash("3", "th-b");
    assert_eq!(a, b, "two runs of the same deterministic configuration");
    let c = hash("5", "th-c");
    assert_ne!(
        a.0, c.0,
        "another shift: other time values and landing points"
    );
    assert_ne!(
        a.1[0], c.1[0],
        "hart 0 reads time and takes timer interrupts"
    );
    assert!(a.0.starts_with("0x") && a.0.len() == 18, "{}", a.0);
}

/// Deadline lateness (virtual ns) is measured whoever runs the VIRTUAL
/// timers: with `--icount-timers iothread` the iothread's callback reports
/// it back to the vCPU, and it is the same as when the vCPU runs them (the
/// hand-off is just as exact), one sample per timer.
#[test]
fn deadline_lateness_is_reported_with_either_timer_owner() {
    let k = guest("timer_irq");
    let mut seen = Vec::new();
    for owner in ["vcpu", "iothread"] {
        let dir = scratch(&format!("late-{owner}"));
        let r = dir.join("r.json");
        let args = [
            "run",
            "--kernel",
            k.to_str().unwrap(),
            "--param",
            "0=300",
            "--param",
            "2=100",
            "--icount",
            "shift=4,sleep=off",
            "--icount-timers",
            owner,
            "--stats",
            r.to_str().unwrap(),
        ];
        let (code, err) = run(&args, b"");
        assert_eq!(code, Some(0), "{owner}: {err}");
        let v = read_report(&dir);
        let late = v["icount_smp"]["lateness_vns"].clone();
        assert_eq!(
            late["count"], 300,
            "{owner}: one per timer interrupt: {late}"
        );
        seen.push(late);
    }
    assert_eq!(
        seen[0], seen[1],
        "the same lateness on the vCPU and the iothread"
    );
}
