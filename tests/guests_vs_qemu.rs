//! Whole-machine cross-check: each guest in `guests/` (built ELFs in
//! `guests/build/`) must produce byte-identical UART output and the same exit
//! status on vcpulab as on QEMU 7.2 (`-machine virt -bios none`).
//!
//! These guests are deterministic on plain QEMU (no `-icount`): they print no
//! times, cycle counts or misa/mstatus values.  Skipped (loudly) when QEMU is
//! not installed; see `common::qemu`.

mod common;

use common::{RunOut, guest, qemu, run_qemu, run_vcpulab};
use std::time::Duration;

const QEMU_LIMIT: Duration = Duration::from_secs(30);
const VCPULAB_LIMIT: Duration = Duration::from_secs(60);

fn describe(who: &str, out: &RunOut) -> String {
    format!(
        "{who}: code={:?} timed_out={} stdout:\n{}\n{who} stderr:\n{}",
        out.code,
        out.timed_out,
        out.text(),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Run `name` with `params` on both and compare. Returns QEMU's stdout (for
/// sanity checks on what the guest printed), or `None` when QEMU is absent.
fn compare(name: &str, params: &[(usize, u64)]) -> Option<String> {
    compare_with(name, params, &[], &[])
}

/// As [`compare`], with extra QEMU and vcpulab arguments.
fn compare_with(
    name: &str,
    params: &[(usize, u64)],
    qemu_extra: &[&str],
    extra: &[&str],
) -> Option<String> {
    let qemu = qemu()?;
    let elf = guest(name);
    assert!(
        elf.is_file(),
        "missing guest ELF {} (run `make -C guests`)",
        elf.display()
    );
    let q = run_qemu(&qemu, &elf, qemu_extra, params, QEMU_LIMIT);
    assert!(
        !q.timed_out,
        "QEMU timed out on {name} {params:?}\n{}",
        describe("qemu", &q)
    );
    assert!(
        !q.stdout.is_empty(),
        "QEMU printed nothing for {name} {params:?}\n{}",
        describe("qemu", &q)
    );
    let v = run_vcpulab(&elf, extra, params, VCPULAB_LIMIT);
    assert!(
        !v.timed_out,
        "vcpulab timed out on {name} {params:?}\n{}\n{}",
        describe("vcpulab", &v),
        describe("qemu", &q)
    );
    assert!(
        q.stdout == v.stdout,
        "UART output differs for {name} {params:?}\n--- qemu ---\n{}\n--- vcpulab ---\n{}\nvcpulab stderr:\n{}",
        q.text(),
        v.text(),
        String::from_utf8_lossy(&v.stderr)
    );
    assert_eq!(
        q.code,
        v.code,
        "exit status differs for {name} {params:?}\n{}\n{}",
        describe("qemu", &q),
        describe("vcpulab", &v)
    );
    Some(q.text())
}

#[test]
fn hello() {
    if let Some(out) = compare("hello", &[]) {
        assert_eq!(out, "Hello from vcpulab guest\n");
    }
}

#[test]
fn trap_tour() {
    if let Some(out) = compare("trap_tour", &[]) {
        assert!(out.contains("ecall: mcause=0xb"), "{out}");
        assert!(out.ends_with("trap_tour done\n"), "{out}");
    }
}

#[test]
fn compute() {
    for iters in [1u64, 1000, 100_000] {
        if let Some(out) = compare("compute", &[(0, iters)]) {
            assert!(
                out.starts_with(&format!("compute iters={iters} checksum=0x")),
                "{out}"
            );
        }
    }
}

#[test]
fn mmio() {
    for iters in [1u64, 777, 20_000] {
        if let Some(out) = compare("mmio", &[(0, iters)]) {
            assert!(out.ends_with("mismatches=0\n"), "{out}");
        }
    }
}

#[test]
fn timer_irq() {
    // (iters, delay in mtime ticks); 0 = the guest's default
    for (iters, delay) in [(0u64, 0u64), (1, 5000), (20, 1000), (3, 200_000)] {
        let params = [(0, iters), (2, delay)];
        let params: Vec<(usize, u64)> = params.into_iter().filter(|&(_, v)| v != 0).collect();
        if let Some(out) = compare("timer_irq", &params) {
            let n = if iters == 0 { 5 } else { iters };
            assert!(
                out.starts_with(&format!("timer interrupts: {n}\n")),
                "{out}"
            );
        }
    }
}

#[test]
fn wfi_wake() {
    for delay in [0u64, 50_000] {
        let params: Vec<(usize, u64)> = if delay == 0 { vec![] } else { vec![(2, delay)] };
        if let Some(out) = compare("wfi_wake", &params) {
            assert!(out.starts_with("woke after wfi\n"), "{out}");
            assert!(out.contains("msip interrupts: 1\n"), "{out}");
        }
    }
}

#[test]
fn smc() {
    if let Some(out) = compare("smc", &[]) {
        assert!(
            out.contains("after sw + fence.i smc_fn(10) = 12\n"),
            "{out}"
        );
    }
}

#[test]
fn exit_code() {
    if compare("exit_code", &[]).is_some() {
        // compare() checked that both agree; also pin the value itself.
        let v = run_vcpulab(&guest("exit_code"), &[], &[], VCPULAB_LIMIT);
        assert_eq!(v.code, Some(3), "{}", describe("vcpulab", &v));
    }
}

/// `spin` never stops by itself: vcpulab's `--timeout 1` must end it with 124.
/// (Needs no QEMU.)
#[test]
fn spin_times_out_with_124() {
    let v = run_vcpulab(
        &guest("spin"),
        &["--timeout", "1"],
        &[],
        Duration::from_secs(30),
    );
    assert!(
        !v.timed_out,
        "vcpulab ignored --timeout 1\n{}",
        describe("vcpulab", &v)
    );
    assert_eq!(v.code, Some(124), "{}", describe("vcpulab", &v));
    assert_eq!(v.text(), "spinning\n");
}

/// With two and three harts (the guests park harts 1.. in `wfi`): the same
/// bytes as QEMU `-smp N`, which runs its vCPUs in parallel (MTTCG) — and so
/// reports a misaligned AMO as a store fault, cause 6, not 4 (trap_tour).
#[test]
fn guests_with_several_harts() {
    for n in ["2", "3"] {
        for name in [
            "hello",
            "trap_tour",
            "smc",
            "timer_irq",
            "wfi_wake",
            "mmio",
            "exit_code",
        ] {
            compare_with(name, &[], &["-smp", n], &["--smp", n]);
        }
    }
}
