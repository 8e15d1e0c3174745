//! icount fidelity: the timing guests print mtime deltas, timer landing
//! points and wfi sleep lengths.  Under QEMU `-icount shift=N,sleep=off` they
//! are deterministic (checked: identical bytes run after run), and vcpulab with
//! `--icount shift=N,sleep=off` must print exactly the same bytes.
//! Skipped (loudly) when QEMU is not installed; see `common::qemu`.

mod common;

use common::{guest, qemu, run_qemu, run_vcpulab};
use std::time::Duration;

const SHIFTS: [u32; 11] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
const QEMU_LIMIT: Duration = Duration::from_secs(30);
const VCPULAB_LIMIT: Duration = Duration::from_secs(60);

/// Run `name` for every shift and every parameter set; collect all mismatches
/// and fail once with all of them, so a single run shows the whole picture.
fn check(name: &str, param_sets: &[&[(usize, u64)]]) {
    check_with(name, param_sets, &SHIFTS, &[]);
}

/// As [`check`], for the given shifts and with extra vcpulab arguments.
fn check_with(name: &str, param_sets: &[&[(usize, u64)]], shifts: &[u32], extra: &[&str]) {
    let Some(qemu) = qemu() else { return };
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
            let q = run_qemu(&qemu, &elf, &["-icount", &icount], params, QEMU_LIMIT);
            assert!(
                !q.timed_out && q.code == Some(0) && !q.stdout.is_empty(),
                "QEMU run of {name} {params:?} -icount {icount} failed: code={:?} timed_out={}\n{}\n{}",
                q.code,
                q.timed_out,
                q.text(),
                String::from_utf8_lossy(&q.stderr)
            );
            // The reference is QEMU 7.2.
            let mut args = vec!["--compat", "qemu-7.2", "--icount", icount.as_str()];
            args.extend_from_slice(extra);
            let v = run_vcpulab(&elf, &args, params, VCPULAB_LIMIT);
            if v.stdout != q.stdout || v.code != q.code {
                failures.push(format!(
                    "=== {name} params={params:?} icount {icount} {extra:?}: qemu code={:?}, vcpulab code={:?} timed_out={}\n\
                     --- qemu ---\n{}--- vcpulab ---\n{}--- vcpulab stderr ---\n{}",
                    q.code,
                    v.code,
                    v.timed_out,
                    q.text(),
                    v.text(),
                    String::from_utf8_lossy(&v.stderr)
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} icount runs differ from QEMU:\n{}",
        failures.len(),
        param_sets.len() * shifts.len(),
        failures.join("\n")
    );
}

/// rdtime deltas across busy loops (slot 0 = longest loop, slot 1 = repeats).
#[test]
fn rdtime_delta() {
    check("rdtime_delta", &[&[], &[(0, 1000), (1, 2)]]);
}

/// Loop counter and mepc at which the timer interrupt lands (slot 2 = base distance).
#[test]
fn timer_landing() {
    check("timer_landing", &[&[], &[(2, 3), (1, 1)], &[(2, 100)]]);
}

/// mtime read through MMIO: first absolute value and deltas.
#[test]
fn mtime_mmio() {
    check("mtime_mmio", &[&[], &[(0, 100), (1, 5)]]);
}

/// Length of wfi sleeps in mtime ticks (slot 2 = base delay).
#[test]
fn wfi_sleep() {
    check("wfi_sleep", &[&[], &[(2, 7), (1, 3)], &[(2, 1000), (1, 1)]]);
}

/// The same timing guests with VIRTUAL timers handed off to the iothread
/// (`--icount-timers iothread`): just as exact.
#[test]
fn timers_handed_to_the_iothread_are_exact() {
    for name in ["timer_landing", "wfi_sleep", "rdtime_delta"] {
        check_with(name, &[&[]], &[0, 3, 10], &["--icount-timers", "iothread"]);
    }
}

/// The functional guests print the same bytes under icount too (their
/// interrupts land at the same instructions). The reference is QEMU 7.2, so
/// vcpulab runs with `--compat qemu-7.2` (added by `check_with`; trap_tour's
/// ebreak mtval and AMO access-fault cause differ on 10.0).
#[test]
fn functional_guests_under_icount() {
    for name in ["hello", "trap_tour", "timer_irq", "wfi_wake", "smc", "mmio"] {
        check_with(name, &[&[]], &[0, 4, 10], &[]);
    }
}
