//! Whole-machine cross-check: each guest in `guests/` (built ELFs in
//! `guests/build/`) must produce byte-identical UART output and the same exit
//! status on vcpulab (`--compat` of that QEMU) as on each QEMU
//! (`tests/common/qemu.rs`: 10.0 and 7.2, `-machine virt -bios none`), with
//! the hart named on both sides (`-cpu rv64,c=on,zba=on,zbb=on,zbs=on`, the
//! default `rv64`, and `--cpu` with the same value).
//!
//! These guests are deterministic on plain QEMU (no `-icount`): they print no
//! times, cycle counts or misa/mstatus values. Each test is named
//! `GUEST::qemu_10_0` / `GUEST::qemu_7_2`.
//!
//! To add a guest: one line in `GUESTS` (and in `SMP_GUESTS` if it also runs
//! with several harts) and its check function below.

mod common;

use common::asm::Isa;
use common::qemu::{self, Qemu};
use common::{describe, guest, run_vcpulab};
use libtest_mimic::Trial;
use std::time::Duration;

const QEMU_LIMIT: Duration = Duration::from_secs(30);
const VCPULAB_LIMIT: Duration = Duration::from_secs(60);
/// The hart both sides run: QEMU's default `rv64`, named.
const ISA: Isa = Isa::FULL;

/// The guests, one per line: test name and check.
const GUESTS: &[qemu::Check] = &[
    ("hello", hello),
    ("trap_tour", trap_tour),
    ("compute", compute),
    ("mmio", mmio),
    ("timer_irq", timer_irq),
    ("wfi_wake", wfi_wake),
    ("smc", smc),
    ("exit_code", exit_code),
    ("guests_with_several_harts", guests_with_several_harts),
];

/// The guests also compared at `-smp 2` and `-smp 3`, one per line.
const SMP_GUESTS: &[&str] = &[
    "hello",
    "trap_tour",
    "smc",
    "timer_irq",
    "wfi_wake",
    "mmio",
    "exit_code",
];

/// Run `name` with `params` on both and compare. Returns QEMU's stdout (for
/// sanity checks on what the guest printed).
fn compare(q: &Qemu, name: &str, params: &[(usize, u64)]) -> String {
    compare_with(q, name, params, &[], &[])
}

/// As [`compare`], with extra QEMU and vcpulab arguments.
fn compare_with(
    q: &Qemu,
    name: &str,
    params: &[(usize, u64)],
    qemu_extra: &[&str],
    extra: &[&str],
) -> String {
    let elf = guest(name);
    assert!(
        elf.is_file(),
        "missing guest ELF {} (run `make -C guests`)",
        elf.display()
    );
    let label = format!(
        "{name} {params:?} {qemu_extra:?} on QEMU {} (-cpu {})",
        q.version.label,
        ISA.cpu()
    );
    let r = q.run(&elf, ISA, qemu_extra, params, QEMU_LIMIT);
    assert!(
        !r.timed_out,
        "QEMU timed out on {label}\n{}",
        describe("qemu", &r)
    );
    assert!(
        !r.stdout.is_empty(),
        "QEMU printed nothing for {label}\n{}",
        describe("qemu", &r)
    );
    let v = q.vcpulab(&elf, ISA, extra, params, VCPULAB_LIMIT);
    assert!(
        !v.timed_out,
        "vcpulab timed out on {label}\n{}\n{}",
        describe("vcpulab", &v),
        describe("qemu", &r)
    );
    assert!(
        r.stdout == v.stdout,
        "UART output differs for {label}\n--- qemu ---\n{}\n--- vcpulab ---\n{}\nvcpulab stderr:\n{}",
        r.text(),
        v.text(),
        String::from_utf8_lossy(&v.stderr)
    );
    assert_eq!(
        r.code,
        v.code,
        "exit status differs for {label}\n{}\n{}",
        describe("qemu", &r),
        describe("vcpulab", &v)
    );
    r.text()
}

fn hello(q: &Qemu) {
    assert_eq!(compare(q, "hello", &[]), "Hello from vcpulab guest\n");
}

fn trap_tour(q: &Qemu) {
    let out = compare(q, "trap_tour", &[]);
    assert!(out.contains("ecall: mcause=0xb"), "{out}");
    assert!(out.ends_with("trap_tour done\n"), "{out}");
}

fn compute(q: &Qemu) {
    for iters in [1u64, 1000, 100_000] {
        let out = compare(q, "compute", &[(0, iters)]);
        assert!(
            out.starts_with(&format!("compute iters={iters} checksum=0x")),
            "{out}"
        );
    }
}

fn mmio(q: &Qemu) {
    for iters in [1u64, 777, 20_000] {
        let out = compare(q, "mmio", &[(0, iters)]);
        assert!(out.ends_with("mismatches=0\n"), "{out}");
    }
}

fn timer_irq(q: &Qemu) {
    // (iters, delay in mtime ticks); 0 = the guest's default
    for (iters, delay) in [(0u64, 0u64), (1, 5000), (20, 1000), (3, 200_000)] {
        let params = [(0, iters), (2, delay)];
        let params: Vec<(usize, u64)> = params.into_iter().filter(|&(_, v)| v != 0).collect();
        let out = compare(q, "timer_irq", &params);
        let n = if iters == 0 { 5 } else { iters };
        assert!(
            out.starts_with(&format!("timer interrupts: {n}\n")),
            "{out}"
        );
    }
}

fn wfi_wake(q: &Qemu) {
    for delay in [0u64, 50_000] {
        let params: Vec<(usize, u64)> = if delay == 0 { vec![] } else { vec![(2, delay)] };
        let out = compare(q, "wfi_wake", &params);
        assert!(out.starts_with("woke after wfi\n"), "{out}");
        assert!(out.contains("msip interrupts: 1\n"), "{out}");
    }
}

fn smc(q: &Qemu) {
    let out = compare(q, "smc", &[]);
    assert!(
        out.contains("after sw + fence.i smc_fn(10) = 12\n"),
        "{out}"
    );
}

fn exit_code(q: &Qemu) {
    compare(q, "exit_code", &[]);
    // compare() checked that both agree; also pin the value itself.
    let v = q.vcpulab(&guest("exit_code"), ISA, &[], &[], VCPULAB_LIMIT);
    assert_eq!(v.code, Some(3), "{}", describe("vcpulab", &v));
}

/// With two and three harts (the guests park harts 1.. in `wfi`): the same
/// bytes as QEMU `-smp N`, which runs its vCPUs in parallel (MTTCG) — and so
/// reports a misaligned AMO as a store fault, cause 6, not 4 (trap_tour).
fn guests_with_several_harts(q: &Qemu) {
    for n in ["2", "3"] {
        for name in SMP_GUESTS {
            compare_with(q, name, &[], &["-smp", n], &["--smp", n]);
        }
    }
}

/// `spin` never stops by itself: vcpulab's `--timeout 1` must end it with 124.
/// (Needs no QEMU.)
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

fn main() {
    let mut trials = vec![Trial::test("spin_times_out_with_124", || {
        spin_times_out_with_124();
        Ok(())
    })];
    for &(name, check) in GUESTS {
        trials.extend(qemu::trials(name, check));
    }
    qemu::main(trials, 2)
}
