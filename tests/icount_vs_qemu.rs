//! icount fidelity: the timing guests print mtime deltas, timer landing
//! points and wfi sleep lengths.  Under QEMU `-icount shift=N,sleep=off` they
//! are deterministic (checked: identical bytes run after run), and vcpulab with
//! `--icount shift=N,sleep=off` (and the `--compat` of that QEMU) must print
//! exactly the same bytes, against each QEMU (`tests/common/qemu.rs`), the
//! hart named on both sides (`-cpu rv64,c=on,zba=on,zbb=on,zbs=on`). Each test
//! is named `NAME::qemu_10_0` / `NAME::qemu_7_2`.
//!
//! To add a guest: one line in `CHECKS` and its function below.

mod common;

use common::asm::Isa;
use common::guest;
use common::qemu::{self, Qemu};
use std::time::Duration;

const SHIFTS: [u32; 11] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
const QEMU_LIMIT: Duration = Duration::from_secs(30);
const VCPULAB_LIMIT: Duration = Duration::from_secs(60);
const ISA: Isa = Isa::FULL;

/// The checks, one per line.
const CHECKS: &[qemu::Check] = &[
    ("rdtime_delta", rdtime_delta),
    ("timer_landing", timer_landing),
    ("mtime_mmio", mtime_mmio),
    ("wfi_sleep", wfi_sleep),
    (
        "timers_handed_to_the_iothread_are_exact",
        timers_handed_to_the_iothread_are_exact,
    ),
    (
        "functional_guests_under_icount",
        functional_guests_under_icount,
    ),
    ("smp_round_robin", smp_round_robin),
];

/// Run `name` for every shift and every parameter set; collect all mismatches
/// and fail once with all of them, so a single run shows the whole picture.
fn check(q: &Qemu, name: &str, param_sets: &[&[(usize, u64)]]) {
    check_with(q, name, param_sets, &SHIFTS, &[]);
}

/// As [`check`], for the given shifts and with extra vcpulab arguments.
fn check_with(
    q: &Qemu,
    name: &str,
    param_sets: &[&[(usize, u64)]],
    shifts: &[u32],
    extra: &[&str],
) {
    check_both(q, name, param_sets, shifts, &[], extra);
}

/// As [`check_with`], with extra arguments on both sides.
fn check_both(
    q: &Qemu,
    name: &str,
    param_sets: &[&[(usize, u64)]],
    shifts: &[u32],
    qemu_extra: &[&str],
    extra: &[&str],
) {
    let elf = guest(name);
    assert!(
        elf.is_file(),
        "missing guest ELF {} (run `make -C guests`)",
        elf.display()
    );
    let mut failures = Vec::new();
    for &params in param_sets {
        for &shift in shifts {
            let icount = format!("shift={shift},sleep=off");
            let mut q_args = vec!["-icount", icount.as_str()];
            q_args.extend_from_slice(qemu_extra);
            let r = q.run(&elf, ISA, &q_args, params, QEMU_LIMIT);
            assert!(
                !r.timed_out && r.code == Some(0) && !r.stdout.is_empty(),
                "QEMU {} run of {name} {params:?} -icount {icount} {qemu_extra:?} failed: code={:?} timed_out={}\n{}\n{}",
                q.version.label(),
                r.code,
                r.timed_out,
                r.text(),
                String::from_utf8_lossy(&r.stderr)
            );
            let mut args = vec!["--icount", icount.as_str()];
            args.extend_from_slice(extra);
            let v = q.vcpulab(&elf, ISA, &args, params, VCPULAB_LIMIT);
            if v.stdout != r.stdout || v.code != r.code {
                failures.push(format!(
                    "=== {name} params={params:?} icount {icount} {extra:?}: qemu code={:?}, vcpulab code={:?} timed_out={}\n\
                     --- qemu ---\n{}--- vcpulab ---\n{}--- vcpulab stderr ---\n{}",
                    r.code,
                    v.code,
                    v.timed_out,
                    r.text(),
                    v.text(),
                    String::from_utf8_lossy(&v.stderr)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} icount runs differ from QEMU {} (vcpulab --compat {}):\n{}",
        failures.len(),
        param_sets.len() * shifts.len(),
        q.version.label(),
        q.version.name(),
        failures.join("\n")
    );
}

/// rdtime deltas across busy loops (slot 0 = longest loop, slot 1 = repeats).
fn rdtime_delta(q: &Qemu) {
    check(q, "rdtime_delta", &[&[], &[(0, 1000), (1, 2)]]);
}

/// Loop counter and mepc at which the timer interrupt lands (slot 2 = base distance).
fn timer_landing(q: &Qemu) {
    check(q, "timer_landing", &[&[], &[(2, 3), (1, 1)], &[(2, 100)]]);
}

/// mtime read through MMIO: first absolute value and deltas.
fn mtime_mmio(q: &Qemu) {
    check(q, "mtime_mmio", &[&[], &[(0, 100), (1, 5)]]);
}

/// Length of wfi sleeps in mtime ticks (slot 2 = base delay).
fn wfi_sleep(q: &Qemu) {
    check(
        q,
        "wfi_sleep",
        &[&[], &[(2, 7), (1, 3)], &[(2, 1000), (1, 1)]],
    );
}

/// The same timing guests with VIRTUAL timers handed off to the iothread
/// (`--icount-timers iothread`): just as exact.
fn timers_handed_to_the_iothread_are_exact(q: &Qemu) {
    for name in ["timer_landing", "wfi_sleep", "rdtime_delta"] {
        check_with(
            q,
            name,
            &[&[]],
            &[0, 3, 10],
            &["--icount-timers", "iothread"],
        );
    }
}

/// The functional guests print the same bytes under icount too (their
/// interrupts land at the same instructions).
fn functional_guests_under_icount(q: &Qemu) {
    for name in ["hello", "trap_tour", "timer_irq", "wfi_wake", "smc", "mmio"] {
        check_with(q, name, &[&[]], &[0, 4, 10], &[]);
    }
}

/// Several harts under icount: QEMU runs them on one round-robin thread
/// (`tcg-accel-ops-rr.c`; 10.0 splits each round's budget between the
/// vCPUs, 7.2 gives each turn the whole limit), and so does vcpulab
/// (`--accel tcg,thread=single`, the default with icount; the turn follows
/// `--compat`). The harts interact through IPIs and the CLINT, or wait in
/// `wfi` while hart 0 works; every byte must be QEMU's.
fn smp_round_robin(q: &Qemu) {
    let guests: &[(&str, &[(usize, u64)])] = &[
        ("timer_landing", &[]),
        ("mtime_mmio", &[]),
        ("wfi_sleep", &[]),
        ("rdtime_delta", &[]),
        ("timer_irq", &[]),
        ("wfi_wake", &[]),
        ("mmio", &[]),
        ("smp_ipi_pingpong", &[(0, 50)]),
        ("smp_compute", &[(0, 3000)]),
        ("smp_spinlock", &[(0, 300), (4, 1)]),
        ("smp_hart_timers", &[(1, 2), (2, 5000), (4, 2000)]),
        ("smp_time_skew", &[(0, 200)]),
        ("smp_ipi_ring", &[(0, 5)]),
    ];
    for smp in ["2", "3", "4"] {
        for &(name, params) in guests {
            check_both(
                q,
                name,
                &[params],
                &[0, 3, 10],
                &["-smp", smp],
                &["--smp", smp],
            );
        }
    }
    smp_starvation(q);
}

/// A hart that spins, interrupts off, until the other has taken its IPI
/// (`smp_ipi_spin`): QEMU 10.0's split turn lets the other run, and the
/// bytes must match; QEMU 7.2 gives the spinning hart the whole budget to
/// each deadline and the other none, and never finishes (the starvation
/// QEMU 8.1 fixed). vcpulab `--compat qemu-7.2` shows the same starvation in
/// its report: over a run cut by `--timeout`, hart 1 gets a sliver of the
/// instructions hart 0 spins, and the guest does not finish.
fn smp_starvation(q: &Qemu) {
    let elf = guest("smp_ipi_spin");
    if q.version.name() == "qemu-10.0" {
        for smp in ["2", "4"] {
            check_both(
                q,
                "smp_ipi_spin",
                &[&[(0, 20)]],
                &[0, 3, 10],
                &["-smp", smp],
                &["--smp", smp],
            );
        }
        return;
    }
    let icount = ["-icount", "shift=3,sleep=off", "-smp", "2"];
    let r = q.run(&elf, ISA, &icount, &[(0, 5)], Duration::from_secs(3));
    assert!(
        r.timed_out && !r.text().contains("ok"),
        "QEMU {} was expected to starve hart 1 and not finish: {}",
        q.version.label(),
        r.text()
    );
    let dir = std::env::temp_dir().join(format!("vcpulab-starve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let stats = dir.join("r.json");
    let v = q.vcpulab(
        &elf,
        ISA,
        &[
            "--icount",
            "shift=3,sleep=off",
            "--smp",
            "2",
            "--timeout",
            "2",
            "--stats",
            stats.to_str().unwrap(),
        ],
        &[(0, 5)],
        VCPULAB_LIMIT,
    );
    assert_eq!(v.code, Some(124), "{}", v.text());
    assert!(!v.text().contains("ok"), "{}", v.text());
    let rep: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    let per: Vec<u64> = rep["instructions"]["per_vcpu"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap())
        .collect();
    assert!(
        per[1] * 10 < per[0],
        "hart 1 should get a sliver of hart 0's instructions under the whole turn: {per:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let mut trials = Vec::new();
    for &(name, f) in CHECKS {
        trials.extend(qemu::trials(name, f));
    }
    qemu::main(trials, 2)
}
