//! `--trace FILE`: the run's timeline in Chrome trace-event JSON, written
//! however the run ends, one track per thread with the events each thread
//! recorded, bounded per thread by `--trace-events`.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{RunOut, guest, run_with_limit, vcpulab_bin};
use serde_json::Value;

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vcpulab-trace-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Runs vcpulab with `args`, bounded to 60 s.
fn run(args: &[&str]) -> RunOut {
    let mut cmd = Command::new(vcpulab_bin());
    cmd.args(args);
    let r = run_with_limit(cmd, Duration::from_secs(60));
    assert!(!r.timed_out, "vcpulab {args:?} did not finish");
    r
}

/// A parsed trace: its events, and the track (tid) of each name.
struct Trace {
    json: Value,
    tracks: BTreeMap<String, u64>,
}

impl Trace {
    fn load(p: &std::path::Path) -> Trace {
        let json: Value =
            serde_json::from_str(&std::fs::read_to_string(p).expect("the trace file")).unwrap();
        assert_eq!(json["displayTimeUnit"], "ns");
        let mut tracks = BTreeMap::new();
        for e in json["traceEvents"].as_array().expect("traceEvents") {
            if e["ph"] == "M" && e["name"] == "thread_name" {
                let name = e["args"]["name"].as_str().unwrap().to_string();
                let tid = e["tid"].as_u64().unwrap();
                assert!(tracks.insert(name, tid).is_none(), "one track per name");
            }
        }
        let t = Trace { json, tracks };
        t.check_well_formed();
        t
    }

    fn events(&self) -> &Vec<Value> {
        self.json["traceEvents"].as_array().unwrap()
    }

    fn tid(&self, track: &str) -> u64 {
        *self
            .tracks
            .get(track)
            .unwrap_or_else(|| panic!("no track {track:?}: {:?}", self.tracks))
    }

    /// The events named `name` on `track`.
    fn on(&self, track: &str, name: &str) -> Vec<&Value> {
        let tid = self.tid(track);
        self.events()
            .iter()
            .filter(|e| e["tid"] == tid && e["name"] == name)
            .collect()
    }

    /// Events recorded on `track` (not metadata, not flow arrows).
    fn recorded(&self, track: &str) -> usize {
        let tid = self.tid(track);
        self.events()
            .iter()
            .filter(|e| e["tid"] == tid && (e["ph"] == "X" || e["ph"] == "i"))
            .count()
    }

    /// Every event has the fields its phase needs; times are non-negative;
    /// the starts of each track's complete events never go back.
    fn check_well_formed(&self) {
        let mut last: BTreeMap<u64, f64> = BTreeMap::new();
        for e in self.events() {
            let ph = e["ph"].as_str().expect("ph");
            assert!(e["pid"].is_u64() && e["tid"].is_u64(), "{e}");
            assert!(e["name"].is_string(), "{e}");
            if ph == "M" {
                continue;
            }
            assert!(e["cat"].is_string(), "{e}");
            let ts = e["ts"].as_f64().expect("ts");
            assert!(ts >= 0.0, "{e}");
            match ph {
                "X" => {
                    let dur = e["dur"].as_f64().expect("dur");
                    assert!(dur >= 0.0, "{e}");
                    let tid = e["tid"].as_u64().unwrap();
                    let l = last.entry(tid).or_insert(0.0);
                    assert!(ts >= *l, "track {tid} goes back at {e}");
                    *l = ts;
                }
                "i" => assert_eq!(e["s"], "t", "{e}"),
                "s" | "f" => assert!(e["id"].is_u64(), "{e}"),
                _ => panic!("unexpected phase {e}"),
            }
        }
    }
}

fn traced(tag: &str, args: &[&str]) -> (RunOut, Trace) {
    let dir = scratch(tag);
    let t = dir.join("t.json");
    let mut a: Vec<&str> = args.to_vec();
    a.extend(["--timeout", "30", "--trace", t.to_str().unwrap()]);
    let r = run(&a);
    assert_eq!(
        r.code,
        Some(0),
        "{a:?}: {}",
        String::from_utf8_lossy(&r.stderr)
    );
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec!["t.json".to_string()], "no temporary file left");
    (r, Trace::load(&t))
}

/// Every device access of the MMIO storm is a BQL hold on its vCPU's
/// track, with its call site; the two vCPUs contend, so there are waits.
#[test]
fn mmio_storm_bql_holds_and_waits_per_vcpu() {
    let k = guest("smp_mmio_storm");
    let (_, t) = traced(
        "storm",
        &["run", "--kernel", k.to_str().unwrap(), "--smp", "2"],
    );
    for track in ["vCPU 0", "vCPU 1", "iothread"] {
        t.tid(track);
    }
    let mut waits = 0;
    for v in ["vCPU 0", "vCPU 1"] {
        let holds = t.on(v, "BQL hold");
        // 100000 iterations, one UART store each.
        assert!(holds.len() >= 100_000, "{v}: {} holds", holds.len());
        assert!(
            holds.iter().all(|h| h["args"]["site"]
                .as_str()
                .is_some_and(|s| s.contains(".rs:"))),
            "{v}: a hold without its call site"
        );
        waits += t.on(v, "BQL wait").len();
    }
    assert!(waits > 0, "two vCPUs storming one lock never waited");
    assert_eq!(t.json["otherData"]["events_per_thread"], 200_000);
    assert_eq!(t.json["otherData"]["dropped"]["vCPU 0"], 0);
}

/// `--trace-events N` keeps each thread's first N events and counts the rest.
#[test]
fn the_per_thread_cap_is_honoured() {
    let k = guest("smp_mmio_storm");
    let (_, t) = traced(
        "cap",
        &[
            "run",
            "--kernel",
            k.to_str().unwrap(),
            "--smp",
            "2",
            "--trace-events",
            "1000",
        ],
    );
    assert_eq!(t.json["otherData"]["events_per_thread"], 1000);
    for track in t.tracks.keys() {
        assert!(t.recorded(track) <= 1000, "{track}: {}", t.recorded(track));
    }
    for v in ["vCPU 0", "vCPU 1"] {
        assert_eq!(t.recorded(v), 1000, "{v}");
        let dropped = t.json["otherData"]["dropped"][v].as_u64().unwrap();
        assert!(dropped >= 99_000, "{v}: {dropped} dropped");
    }
}

/// The IPI ping-pong: each vCPU halts and is kicked awake by the other;
/// every kick received is joined by a flow arrow to the kick sent.
#[test]
fn pingpong_halts_and_kicks_with_flows() {
    let k = guest("smp_ipi_pingpong");
    let (_, t) = traced(
        "pingpong",
        &["run", "--kernel", k.to_str().unwrap(), "--smp", "2"],
    );
    for v in ["vCPU 0", "vCPU 1"] {
        let halts = t.on(v, "halt");
        assert!(halts.len() >= 500, "{v}: {} halts", halts.len());
        let received = t.on(v, "kick received");
        assert!(
            received
                .iter()
                .filter(|k| k["args"]["halted"] == true)
                .count()
                >= 500,
            "{v}: {} kicks received",
            received.len()
        );
        assert!(!t.on(v, "kick sent").is_empty(), "{v} sent no kick");
    }
    let mut sent: BTreeMap<u64, f64> = BTreeMap::new();
    for e in t.events().iter().filter(|e| e["ph"] == "s") {
        sent.insert(e["id"].as_u64().unwrap(), e["ts"].as_f64().unwrap());
    }
    let ends: Vec<&Value> = t.events().iter().filter(|e| e["ph"] == "f").collect();
    assert!(ends.len() >= 1000, "{} flow ends", ends.len());
    for f in ends {
        let id = f["id"].as_u64().unwrap();
        let s = sent
            .get(&id)
            .unwrap_or_else(|| panic!("flow end without a start: {f}"));
        assert!(*s <= f["ts"].as_f64().unwrap(), "received before sent: {f}");
    }
}

/// `smp=local,quantum`: quantum barrier waits and the VIRTUAL timers the
/// vCPU threads run, on their tracks.
#[test]
fn quantum_barrier_waits_and_vcpu_timers() {
    let k = guest("smp_hart_timers");
    let (_, t) = traced(
        "quantum",
        &[
            "run",
            "--kernel",
            k.to_str().unwrap(),
            "--smp",
            "2",
            "--icount",
            "shift=0,sleep=off,smp=local,quantum=100us",
            "--accel",
            "tcg,thread=multi",
        ],
    );
    let (mut barrier, mut timers) = (0, 0);
    for v in ["vCPU 0", "vCPU 1"] {
        barrier += t.on(v, "barrier wait").len();
        for e in t.on(v, "timer") {
            assert_eq!(e["args"]["clock"], "virtual", "{e}");
            assert!(e["args"]["late_ns"].as_i64().is_some_and(|l| l >= 0), "{e}");
            timers += 1;
        }
    }
    assert!(barrier > 0, "no barrier wait");
    assert!(timers >= 2, "{timers} VIRTUAL timers on the vCPU tracks");
    assert!(
        t.on("iothread", "timer").is_empty(),
        "VIRTUAL is the vCPUs'"
    );
}

/// Without icount the iothread runs the timers, each inside its hold of
/// the BQL, with its lateness.
#[test]
fn iothread_timers_inside_its_bql_hold() {
    let k = guest("timer_irq");
    let (_, t) = traced("iothread", &["run", "--kernel", k.to_str().unwrap()]);
    let timers = t.on("iothread", "timer");
    assert!(!timers.is_empty(), "no timer callback on the iothread");
    let holds = t.on("iothread", "BQL hold");
    let span = |e: &Value| {
        let ts = e["ts"].as_f64().unwrap();
        (ts, ts + e["dur"].as_f64().unwrap())
    };
    for tm in &timers {
        assert!(tm["args"]["late_ns"].is_i64(), "{tm}");
        let (a, b) = span(tm);
        // ts and dur are rounded to the ns separately: allow 1 ns.
        assert!(
            holds.iter().any(|h| {
                let (ha, hb) = span(h);
                ha <= a && b <= hb + 0.001
            }),
            "timer outside a BQL hold: {tm}"
        );
    }
    assert!(!t.on("iothread", "kick sent").is_empty());
}

/// One thread runs every vCPU round-robin: its track is `vCPU rr`, and the
/// halts of its vCPUs get a track each.
#[test]
fn round_robin_track() {
    let k = guest("smp_ipi_pingpong");
    let (_, t) = traced(
        "rr",
        &[
            "run",
            "--kernel",
            k.to_str().unwrap(),
            "--smp",
            "2",
            "--icount",
            "shift=3",
        ],
    );
    assert!(!t.on("vCPU rr", "BQL hold").is_empty());
    assert!(!t.tracks.contains_key("vCPU 0"), "{:?}", t.tracks);
    for v in 0..2 {
        assert!(
            t.on(&format!("vCPU {v} (rr) halted"), "halt").len() >= 500,
            "vCPU {v}"
        );
    }
}

/// A run that ends by timeout or by a signal still writes its trace.
#[test]
fn written_on_timeout_and_on_signal() {
    let k = guest("spin");
    let dir = scratch("timeout");
    let p = dir.join("t.json");
    let r = run(&[
        "run",
        "--kernel",
        k.to_str().unwrap(),
        "--timeout",
        "0.3",
        "--trace",
        p.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(124));
    let t = Trace::load(&p);
    assert!(!t.on("vCPU 0", "BQL hold").is_empty());
    // The timeout's kick, from the main thread to the spinning vCPU.
    assert!(!t.on("main", "kick sent").is_empty());

    let dir = scratch("signal");
    let p = dir.join("t.json");
    let mut child = Command::new(vcpulab_bin())
        .args(["run", "--timeout", "30", "--kernel"])
        .arg(&k)
        .arg("--trace")
        .arg(&p)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn vcpulab");
    // The guest runs once it has printed.
    let mut out = child.stdout.take().unwrap();
    let mut b = [0u8; 1];
    std::io::Read::read_exact(&mut out, &mut b).expect("the guest printed");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            panic!("vcpulab did not end on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(128 + 15));
    Trace::load(&p).tid("vCPU 0");
}

/// An unwritable trace path is refused before the guest runs: exit 2, one
/// line naming the option and the path.
#[test]
fn unwritable_trace_path_exits_2_before_running() {
    let k = guest("hello");
    for (p, why) in [
        ("/nonexistent/dir/t.json", "/nonexistent/dir/t.json"),
        (std::env::temp_dir().to_str().unwrap(), "directory"),
    ] {
        let r = run(&["run", "--kernel", k.to_str().unwrap(), "--trace", p]);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.code, Some(2), "{err}");
        assert!(r.stdout.is_empty(), "the guest ran");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("vcpulab: --trace '"), "{err}");
        assert!(err.contains(why), "{err}");
    }
}
