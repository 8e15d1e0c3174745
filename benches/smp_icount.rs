//! The SMP icount modes side by side: 2 vCPUs of a compute guest under `rr` (QEMU's
//! round-robin, one thread), `global` (one counter, a thread per vCPU), `local` with
//! quanta from 1 µs to 10 ms and `local` free-running, beside QEMU 10.0's `rr` and
//! vcpulab without icount (MTTCG), same ELF, same parameters.
//!
//! `cargo bench --bench smp_icount`
//!
//! Figures per variant (medians over the rounds): net wall (wall − the median wall of an
//! iters = 1 run of the same variant), speedup = net(rr) / net(variant), and from the report:
//! the barrier wait p50/p99, the skew between the vCPUs' clocks at the end (max − min
//! `vtime_ns`), time inversions and drift. Method (docs/benchmarks.md): start-up runs first;
//! then `REPS` rounds, each running every variant once, the order rotating from round to
//! round, so host drift does not line up with a variant. Every run's output is checked
//! (the checksum line). The host has 2 cores: 2 vCPU threads plus the iothread outnumber
//! them, which the output says.
//!
//! Knobs (environment): VCPULAB_BENCH_REPS (5), VCPULAB_BENCH_ITERS (2 000 000: the
//! guest's iterations, split between the harts), VCPULAB_BENCH_SHIFT (0),
//! VCPULAB_BENCH_TIME_LIMIT_S (120 per run). Writes results/smp_icount-YYYY-MM-DD.json.

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use vcpulab::qemu::{Qemu, QemuGuestRun, QemuVersion};

struct Variant {
    label: String,
    /// QEMU 10.0's row: this run's `--icount` (vcpulab's spelling, translated by the
    /// library's QEMU runner); vcpulab's rows: `None`.
    qemu: Option<String>,
    args: Vec<String>,
}

fn variants(shift: u64) -> Vec<Variant> {
    let ic = |extra: &str| format!("shift={shift},sleep=off{extra}");
    let multi = |icount: String| -> Vec<String> {
        vec![
            "--accel".into(),
            "tcg,thread=multi".into(),
            "--icount".into(),
            icount,
        ]
    };
    let mut v = vec![
        Variant {
            label: "rr".into(),
            qemu: None,
            args: vec!["--icount".into(), ic("")],
        },
        Variant {
            label: "global".into(),
            qemu: None,
            args: multi(ic(",smp=global")),
        },
        Variant {
            label: "local".into(),
            qemu: None,
            args: multi(ic(",smp=local")),
        },
    ];
    for q in ["1us", "10us", "100us", "1ms", "10ms"] {
        v.push(Variant {
            label: format!("local,quantum={q}"),
            qemu: None,
            args: multi(ic(&format!(",smp=local,quantum={q}"))),
        });
    }
    v.push(Variant {
        label: "no icount (MTTCG)".into(),
        qemu: None,
        args: vec![],
    });
    v.push(Variant {
        label: "QEMU 10.0 rr".into(),
        qemu: Some(ic("")),
        // In vcpulab's spelling, as the other rows (the run translates it).
        args: vec!["--icount".into(), ic("")],
    });
    v
}

/// One run: (wall s, report or Null). Panics if the guest's output is wrong.
fn run(
    v: &Variant,
    qemu: Option<&Qemu>,
    iters: u64,
    limit: Duration,
    checksum: &mut Option<String>,
) -> (f64, Value) {
    let elf = repo_root().join("guests/build/smp_compute.elf");
    let (out, stats) = if let Some(icount) = &v.qemu {
        let q = qemu.expect("QEMU rows run only with QEMU 10.0 resolved");
        let run = QemuGuestRun::new(&elf)
            .smp("2")
            .params(&[(0, iters)])
            .icount(icount);
        let a = q.guest_args(&run).expect("QEMU arguments");
        (
            run_process(&q.bin, &a, limit).expect("spawn QEMU 10.0"),
            Value::Null,
        )
    } else {
        let mut a: Vec<&str> = vec!["--smp", "2"];
        a.extend(v.args.iter().map(String::as_str));
        let r = run_vcpulab_params(&elf, &[(0, iters)], &a, limit).expect("spawn vcpulab");
        (r.outcome, r.stats)
    };
    assert!(out.success, "{}: {}", v.label, out.status);
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains("checksum"))
        .unwrap_or_else(|| panic!("{}: no checksum line in {:?}", v.label, out.stdout))
        .to_string();
    if iters > 1 {
        match checksum {
            None => *checksum = Some(line),
            Some(c) => assert_eq!(&line, c, "{}: a different checksum", v.label),
        }
    }
    (out.wall_ns as f64 / 1e9, stats)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let reps: usize = env_knob("REPS", 5);
    let iters: u64 = env_knob("ITERS", 2_000_000);
    let shift: u64 = env_knob("SHIFT", 0);
    let limit = Duration::from_secs(env_knob("TIME_LIMIT_S", 120));
    let host = Host::collect(true);
    let qemu = match QemuVersion::V10_0.resolve() {
        Ok(q) => Some(q),
        Err(e) => {
            println!("QEMU 10.0's row is skipped: {e}");
            None
        }
    };
    let vs: Vec<Variant> = variants(shift)
        .into_iter()
        .filter(|v| v.qemu.is_none() || qemu.is_some())
        .collect();
    println!(
        "2 vCPUs, smp_compute iters={iters}, shift={shift}, {reps} rounds; {}",
        oversubscription(3, 2, host.facts.cores)
    );
    let mut checksum = None;
    // Start-up: iters = 1, alternating.
    let mut startup: Vec<Vec<f64>> = vec![Vec::new(); vs.len()];
    for r in 0..reps.min(3) {
        for k in 0..vs.len() {
            let i = (k + r) % vs.len();
            startup[i].push(run(&vs[i], qemu.as_ref(), 1, limit, &mut checksum).0);
        }
    }
    let mut walls: Vec<Vec<f64>> = vec![Vec::new(); vs.len()];
    let mut reports: Vec<Vec<Value>> = vec![Vec::new(); vs.len()];
    for r in 0..reps {
        for k in 0..vs.len() {
            let i = (k + r) % vs.len();
            let (w, s) = run(&vs[i], qemu.as_ref(), iters, limit, &mut checksum);
            walls[i].push(w);
            reports[i].push(s);
        }
        eprintln!("round {}/{reps} done", r + 1);
    }
    let net: Vec<f64> = (0..vs.len())
        .map(|i| (median(&walls[i]) - median(&startup[i])).max(1e-6))
        .collect();
    let rr = net[0];
    println!(
        "\n{:<22} {:>9} {:>8} {:>13} {:>13} {:>11} {:>10} {:>12}",
        "variant",
        "net s",
        "vs rr",
        "barrier p50",
        "barrier p99",
        "skew ns",
        "inversions",
        "drift ms"
    );
    let mut rows = Vec::new();
    for (i, v) in vs.iter().enumerate() {
        let med = |f: &dyn Fn(&Value) -> f64| -> f64 {
            let xs: Vec<f64> = reports[i].iter().map(f).collect();
            median(&xs)
        };
        let s = |r: &Value| r["icount_smp"].clone();
        let barrier50 = med(&|r| s(r)["barrier_wait_ns"]["p50"].as_f64().unwrap_or(0.0));
        let barrier99 = med(&|r| s(r)["barrier_wait_ns"]["p99"].as_f64().unwrap_or(0.0));
        let skew = med(&|r| {
            let t: Vec<i64> = s(r)["vcpus"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v["vtime_ns"].as_i64()).collect())
                .unwrap_or_default();
            (t.iter().max().unwrap_or(&0) - t.iter().min().unwrap_or(&0)) as f64
        });
        let inv = med(&|r| s(r)["inversions"]["count"].as_f64().unwrap_or(0.0));
        let drift = med(&|r| s(r)["drift_ns"].as_f64().unwrap_or(0.0)) / 1e6;
        let has_report = v.qemu.is_none() && !reports[i][0]["icount_smp"].is_null();
        println!(
            "{:<22} {:>9.3} {:>7.2}× {:>13} {:>13} {:>11} {:>10} {:>12}",
            v.label,
            net[i],
            rr / net[i],
            if has_report {
                format!("{barrier50:.0}")
            } else {
                "-".into()
            },
            if has_report {
                format!("{barrier99:.0}")
            } else {
                "-".into()
            },
            if has_report {
                format!("{skew:.0}")
            } else {
                "-".into()
            },
            if has_report {
                format!("{inv:.0}")
            } else {
                "-".into()
            },
            if has_report {
                format!("{drift:.1}")
            } else {
                "-".into()
            },
        );
        rows.push(json!({
            "variant": v.label,
            "args": v.args,
            "walls_s": walls[i],
            "startup_s": startup[i],
            "net_s": net[i],
            "speedup_vs_rr": rr / net[i],
            "barrier_wait_p50_ns": barrier50,
            "barrier_wait_p99_ns": barrier99,
            "vtime_skew_ns": skew,
            "inversions": inv,
            "drift_ms": drift,
        }));
    }
    let result = json!({
        "bench": "smp_icount",
        "host": host.json(),
        "iters": iters,
        "shift": shift,
        "reps": reps,
        "loadavg_end": loadavg(),
        "rows": rows,
    });
    match write_result_file(
        "smp_icount",
        &host.date,
        "json",
        serde_json::to_string_pretty(&result).unwrap().as_bytes(),
    ) {
        Ok(p) => println!("\nwrote {}", p.display()),
        Err(e) => eprintln!("cannot write the result file: {e}"),
    }
}
