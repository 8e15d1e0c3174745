//! The parallel SMP icount modes (`--icount ...,smp=global|local[,quantum=Q]`,
//! `--accel tcg,thread=multi`), which QEMU does not have: what each
//! guarantees (docs/time.md, "SMP icount"), checked on the guests.
//!
//! - `local,quantum=Q` is deterministic for guests whose harts interact
//!   through devices and interrupts: the same UART bytes, exit status and
//!   trace hash run after run, over harts, shifts and quanta, with the host
//!   loaded by spinning threads meanwhile (`VCPULAB_ICOUNT_SMP_RUNS`: runs
//!   per configuration, 3).
//! - `smp_hart_timers` tells the semantics apart: under `rr` and `global` the
//!   harts share one clock, so one window's iterations are split between
//!   them; under `local` each hart's window is its own.
//! - `global` crosses a deadline by at most one TB per vCPU.
//! - The report's `icount_smp` section says what ran.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{RunOut, guest, run_vcpulab};

const LIMIT: Duration = Duration::from_secs(60);
const MULTI: [&str; 2] = ["--accel", "tcg,thread=multi"];

/// A run with `--stats`: the output and the report.
fn run_with_report(
    name: &str,
    args: &[&str],
    params: &[(usize, u64)],
) -> (RunOut, serde_json::Value) {
    let dir = std::env::temp_dir().join(format!(
        "vcpulab-icount-smp-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let stats = dir.join("r.json");
    let mut a: Vec<&str> = args.to_vec();
    let s = stats.to_str().unwrap().to_string();
    a.extend(["--stats", &s]);
    let out = run_vcpulab(&guest(name), &a, params, LIMIT);
    assert!(
        !out.timed_out,
        "{name} {args:?} {params:?}: timed out\n{}",
        common::describe("vcpulab", &out)
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&stats).expect("report written")).unwrap();
    (out, report)
}

/// Busy threads that load the host while they live.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(n: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 1u64;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..10_000 {
                            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                        }
                        std::hint::black_box(x);
                    }
                })
            })
            .collect();
        Load { stop, threads }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// The guests whose harts interact through devices and interrupts only
/// (no hart spins on memory another writes), with parameters that keep
/// them short.
const DEVICE_GUESTS: &[(&str, &[(usize, u64)])] = &[
    ("smp_ipi_ring", &[(0, 6)]),
    ("smp_hart_timers", &[(1, 2), (2, 2000), (4, 1000)]),
    ("timer_landing", &[]),
    ("mtime_mmio", &[(0, 10_000)]),
    ("wfi_wake", &[]),
    ("wfi_sleep", &[]),
    ("mmio", &[(0, 20_000)]),
];

#[test]
fn local_quantum_is_deterministic_run_after_run() {
    // Runs per configuration (VCPULAB_ICOUNT_SMP_RUNS, 3).
    let repeats = common::env_u64("VCPULAB_ICOUNT_SMP_RUNS")
        .unwrap_or(3)
        .max(2);
    let _load = Load::start(2);
    let shifts = [0u32, 3, 7, 10];
    let quanta = ["1us", "37us", "1ms"];
    let mut runs = 0;
    for (gi, &(name, params)) in DEVICE_GUESTS.iter().enumerate() {
        for smp in [2usize, 3, 4] {
            // Every guest sees every shift and quantum over the harts.
            let shift = shifts[(gi + smp) % shifts.len()];
            let quantum = quanta[(gi * 2 + smp) % quanta.len()];
            let icount = format!("shift={shift},sleep=off,smp=local,quantum={quantum}");
            let smp_s = smp.to_string();
            let args = [&MULTI[..], &["--smp", &smp_s, "--icount", &icount]].concat();
            let (first, r0) = run_with_report(name, &args, params);
            assert_eq!(
                first.code,
                Some(0),
                "{name} {args:?}: {}",
                common::describe("vcpulab", &first)
            );
            for _ in 1..repeats {
                let (again, r) = run_with_report(name, &args, params);
                runs += 1;
                assert_eq!(
                    (again.code, &again.stdout),
                    (first.code, &first.stdout),
                    "{name} {args:?}: the output differs from run to run\nfirst:\n{}\nagain:\n{}",
                    first.text(),
                    again.text()
                );
                assert_eq!(
                    r["trace_hash"], r0["trace_hash"],
                    "{name} {args:?}: the trace hash differs from run to run"
                );
                for (a, b) in r["vcpus"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .zip(r0["vcpus"].as_array().unwrap())
                {
                    assert_eq!(
                        (&a["trace_hash"], &a["instructions"]),
                        (&b["trace_hash"], &b["instructions"]),
                        "{name} {args:?}: hart {} differs",
                        a["hart"]
                    );
                }
                assert_eq!(r["vm_clock_ns"], r0["vm_clock_ns"], "{name} {args:?}");
            }
            runs += 1;
        }
    }
    println!("local_quantum_is_deterministic: {runs} runs, all alike per configuration");
}

/// The device-synchronised ring prints the same bytes as QEMU's
/// round-robin (whose output every icount test already compares): the
/// token's order is fixed by the devices, whatever the clocks.
#[test]
fn local_quantum_prints_the_ring_as_round_robin_does() {
    for smp in ["2", "4"] {
        let rr = run_with_report(
            "smp_ipi_ring",
            &["--smp", smp, "--icount", "shift=2,sleep=off"],
            &[(0, 5)],
        )
        .0;
        let local = run_with_report(
            "smp_ipi_ring",
            &[
                &MULTI[..],
                &[
                    "--smp",
                    smp,
                    "--icount",
                    "shift=2,sleep=off,smp=local,quantum=20us",
                ],
            ]
            .concat(),
            &[(0, 5)],
        )
        .0;
        assert_eq!(rr.code, Some(0), "{}", rr.text());
        assert_eq!(local.stdout, rr.stdout, "smp {smp}");
    }
}

/// The counts of `smp_hart_timers`: (iterations per window at one clock,
/// every count printed).
fn hart_timer_counts(out: &RunOut) -> (f64, Vec<u64>) {
    let text = out.text();
    let field = |key: &str| -> u64 {
        let at = text.find(key).unwrap_or_else(|| panic!("no {key}: {text}")) + key.len();
        text[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (delay, per_iter) = (field("delay="), field("insns/iter="));
    let counts = text
        .lines()
        .filter_map(|l| l.split_once("counts="))
        .flat_map(|(_, c)| c.split_whitespace().map(|n| n.parse::<u64>().unwrap()))
        .collect();
    // mtime ticks are 100 ns; shift 0: one instruction per ns.
    (delay as f64 * 100.0 / per_iter as f64, counts)
}

#[test]
fn hart_timers_tell_the_semantics_apart() {
    let reps = 3u64;
    let params = [(1usize, reps)];
    for smp in [2usize, 3] {
        let smp_s = smp.to_string();
        let base = ["--smp", smp_s.as_str(), "--icount"];
        let mode = |icount: &str, multi: bool| {
            let mut a: Vec<&str> = if multi { MULTI.to_vec() } else { vec![] };
            a.extend(base);
            a.push(icount);
            let (out, r) = run_with_report("smp_hart_timers", &a, &params);
            assert_eq!(out.code, Some(0), "{a:?}: {}", out.text());
            assert_eq!(r["icount_smp"]["vcpus"].as_array().unwrap().len(), smp);
            (hart_timer_counts(&out), r)
        };
        let ((window, rr), r) = mode("shift=0,sleep=off", false);
        assert_eq!(r["icount_smp"]["mode"], "rr");
        assert_eq!(r["icount_smp"]["lateness_vns"]["max"], 0);
        assert_eq!(r["icount_smp"]["inversions"]["count"], 0);
        let ((_, global), r) = mode("shift=0,sleep=off,smp=global", true);
        assert_eq!(r["icount_smp"]["mode"], "global");
        let ((_, local), r) = mode("shift=0,sleep=off,smp=local,quantum=10us", true);
        assert_eq!(r["icount_smp"]["mode"], "local");
        assert_eq!(r["icount_smp"]["quantum_ns"], 10_000);
        assert!(
            r["icount_smp"]["barrier_wait_ns"]["count"]
                .as_u64()
                .unwrap()
                > 0
        );
        let total = |c: &[u64]| c.iter().sum::<u64>() as f64;
        let one_clock = reps as f64 * window;
        let own_clocks = smp as f64 * one_clock;
        // One clock: the harts split each window.
        for (what, c) in [("rr", &rr), ("global", &global)] {
            assert!(
                (total(c) - one_clock).abs() < 0.02 * one_clock,
                "{what} smp {smp}: {c:?} should add up to {one_clock} (one window each)"
            );
        }
        // A clock each: every hart counts a whole window.
        assert!(
            (total(&local) - own_clocks).abs() < 0.02 * own_clocks,
            "local smp {smp}: {local:?} should add up to {own_clocks}"
        );
        for &c in &local {
            assert!(
                (c as f64 - window).abs() < 0.02 * window,
                "local smp {smp}: each hart counts a window of {window}: {local:?}"
            );
        }
    }
}

/// `global` crosses each deadline by at most one TB per vCPU (a TB is at
/// most 512 instructions; at shift S one lasts 2^S ns).
#[test]
fn global_crosses_a_deadline_by_at_most_a_tb_per_vcpu() {
    for (name, params, shift) in [
        ("smp_hart_timers", &[(1usize, 2u64)][..], 0u32),
        ("smp_ipi_pingpong", &[(0, 30)][..], 3),
        ("timer_landing", &[][..], 5),
        ("smp_ipi_ring", &[(0, 4)][..], 2),
        ("wfi_sleep", &[][..], 10),
    ] {
        for smp in [2usize, 4] {
            let icount = format!("shift={shift},sleep=off,smp=global");
            let smp_s = smp.to_string();
            let args = [&MULTI[..], &["--smp", &smp_s, "--icount", &icount]].concat();
            let (out, r) = run_with_report(name, &args, params);
            assert_eq!(out.code, Some(0), "{name} {args:?}: {}", out.text());
            let late = &r["icount_smp"]["lateness_vns"];
            let bound = (smp as u64 * 512) << shift;
            assert!(
                late["max"].as_u64().unwrap() <= bound,
                "{name} {args:?}: a timer ran {late} late, more than {bound} ns"
            );
            if name != "smp_ipi_pingpong" {
                assert!(late["count"].as_u64().unwrap() > 0, "{name}: no timer ran");
            }
        }
    }
}

/// Free-running clocks (`local` without a quantum) finish the device
/// guests, and report every vCPU's own clock.
#[test]
fn local_free_running_finishes_and_reports_each_clock() {
    for &(name, params) in DEVICE_GUESTS {
        let args = [
            &MULTI[..],
            &["--smp", "3", "--icount", "shift=4,sleep=off,smp=local"],
        ]
        .concat();
        let (out, r) = run_with_report(name, &args, params);
        assert_eq!(out.code, Some(0), "{name}: {}", out.text());
        let s = &r["icount_smp"];
        assert_eq!(
            (&s["mode"], &s["quantum_ns"]),
            (&"local".into(), &serde_json::Value::Null)
        );
        // Each clock counts at least its own instructions (at 2^4 ns each).
        for v in s["vcpus"].as_array().unwrap() {
            let own = (v["instructions"].as_i64().unwrap()) << 4;
            assert!(v["vtime_ns"].as_i64().unwrap() >= own, "{name}: {s}");
        }
    }
}
