//! The BQL axis end to end: each policy takes the BQL where it says it
//! does (read back from the run report's profile), every lock kind runs the
//! SMP guests to the right result, and bad values are refused.

mod common;

use std::process::Command;

fn run_report(args: &[&str]) -> serde_json::Value {
    let dir = tempfile::tempdir().unwrap();
    let stats = dir.path().join("r.json");
    let out = Command::new(common::vcpulab_bin())
        .arg("run")
        .args(args)
        .arg("--stats")
        .arg(&stats)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&std::fs::read(&stats).unwrap()).unwrap()
}

fn storm(target: u64, smp: &str, policy: &str, lock: &str) -> serde_json::Value {
    let elf = common::guest("smp_mmio_storm");
    let t = format!("4={target}");
    run_report(&[
        "--kernel",
        elf.to_str().unwrap(),
        "--smp",
        smp,
        "--param",
        "0=20000",
        "--param",
        &t,
        "--bql",
        policy,
        "--bql-lock",
        lock,
    ])
}

/// Acquisitions made from the hart's device-access path.
fn hart_acquisitions(r: &serde_json::Value) -> u64 {
    r["bql"]["sites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["site"].as_str().unwrap().starts_with("src/target/riscv/"))
        .map(|s| s["acquisitions"].as_u64().unwrap())
        .sum()
}

#[test]
fn each_policy_takes_the_bql_where_it_says() {
    // CLINT mtime reads (target 1): the CLINT locks itself.
    let mmio = storm(1, "2", "mmio", "parking_lot");
    assert_eq!(mmio["bql"]["policy"], "mmio");
    assert!(hart_acquisitions(&mmio) >= 2 * 20_000, "{}", mmio["bql"]);
    let device = storm(1, "2", "device", "parking_lot");
    assert!(
        hart_acquisitions(&device) < 1000,
        "the CLINT is reached without the BQL under device: {}",
        device["bql"]
    );
    // The PLIC (target 3) needs the BQL under every policy but always,
    // where the vCPU holds it already.
    let plic = storm(3, "2", "device", "parking_lot");
    assert!(hart_acquisitions(&plic) >= 2 * 20_000, "{}", plic["bql"]);
    let always = storm(3, "2", "always", "parking_lot");
    assert_eq!(hart_acquisitions(&always), 0, "{}", always["bql"]);
    let exec: u64 = always["bql"]["sites"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["site"].as_str().unwrap().starts_with("src/accel/vcpu.rs"))
        .map(|s| s["acquisitions"].as_u64().unwrap())
        .sum();
    assert!(exec >= 1, "the vCPUs take it to execute: {}", always["bql"]);
    // Two executing vCPUs hand it to each other.
    assert!(always["bql"]["wanted_requests"].as_u64().unwrap() > 0);
    for r in [&mmio, &device, &plic, &always] {
        let b = &r["bql"];
        assert_eq!(b["wait_ns_over"], "contended acquisitions");
        assert_eq!(b["wait_ns"]["count"], b["contended"], "{b}");
        assert!(b["acquisitions"].as_u64() >= b["contended"].as_u64());
    }
}

#[test]
fn every_lock_kind_under_every_policy_gets_the_right_counts() {
    let elf = common::guest("smp_spinlock");
    for policy in ["always", "mmio", "device"] {
        for lock in [
            "parking_lot",
            "parking_lot-fair",
            "std",
            "pthread",
            "ticket",
        ] {
            for mode in ["0", "1", "2"] {
                let m = format!("4={mode}");
                let out = Command::new(common::vcpulab_bin())
                    .args(["run", "--kernel", elf.to_str().unwrap(), "--smp", "2"])
                    .args(["--param", "0=2000", "--param", &m])
                    .args(["--bql", policy, "--bql-lock", lock, "--timeout", "60"])
                    .output()
                    .unwrap();
                let text = String::from_utf8_lossy(&out.stdout);
                assert_eq!(out.status.code(), Some(0), "{policy} {lock} {mode}: {text}");
                assert!(
                    text.contains("counter=4000 expected=4000 ok"),
                    "{policy} {lock} {mode}: {text}"
                );
            }
        }
    }
}

#[test]
fn bad_values_are_refused() {
    for (flag, value, needle) in [
        ("--bql", "sometimes", "invalid --bql 'sometimes'"),
        ("--bql-lock", "spin", "invalid --bql-lock 'spin'"),
        ("--bql-hold-sample", "3", "invalid --bql-hold-sample '3'"),
        ("--bql-hold-sample", "0", "invalid --bql-hold-sample '0'"),
        ("--kick", "ipi", "invalid --kick 'ipi'"),
    ] {
        let out = Command::new(common::vcpulab_bin())
            .args(["run", flag, value])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(err.contains(needle), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn kick_latency_is_reported_per_mechanism() {
    let elf = common::guest("smp_ipi_pingpong");
    for kick in ["futex", "signal", "eventfd"] {
        let r = run_report(&[
            "--kernel",
            elf.to_str().unwrap(),
            "--smp",
            "2",
            "--param",
            "0=200",
            "--kick",
            kick,
        ]);
        let k = &r["kicks"];
        assert_eq!(k["mechanism"], kick);
        // Each round trip wakes a halted hart with an IPI.
        let halted = k["halted_ns"]["count"].as_u64().unwrap();
        assert!(halted >= 200, "{kick}: {k}");
        let (p50, max) = (
            k["halted_ns"]["p50"].as_u64().unwrap(),
            k["halted_ns"]["max"].as_u64().unwrap(),
        );
        assert!(p50 > 0 && p50 <= max, "{k}");
    }
}
