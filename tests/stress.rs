//! Stress tests of the kick protocol, each under a watchdog: a hang is a lost
//! kick, and the watchdog turns it into a failure that names the
//! configuration instead of a stuck test run.
//!
//! * Whole machine: the real `vcpulab` binary runs timer-interrupt guests with
//!   several harts, with and without icount, many interrupts per run.
//! * Library: device threads raise and kick a `CpuShared` while a halter
//!   thread halts and clears, thousands of times.
//!
//! The exhaustive check of the same protocol is the loom models in
//! `src/accel/cpu.rs` (`RUSTFLAGS="--cfg loom" cargo test --lib loom`).

mod common;

use common::{guest, run_with_limit, vcpulab_bin};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use vcpulab::accel::cpu::{CpuShared, MIP_MEIP, MIP_MSIP, MIP_MTIP};
use vcpulab::sync::kick::{KickKind, Waiter};

/// A whole-machine run that takes longer than this has hung.
const RUN_WATCHDOG: Duration = Duration::from_secs(30);

/// The library test fails when the halter makes no progress for this long.
const STALL_WATCHDOG: Duration = Duration::from_secs(10);

/// Timing modes: name and extra command-line arguments.
const PLAIN: (&str, &[&str]) = ("no icount", &[]);
const ICOUNT: (&str, &[&str]) = (
    "--icount shift=3,sleep=off",
    &["--icount", "shift=3,sleep=off"],
);
const ICOUNT_IOTHREAD: (&str, &[&str]) = (
    "--icount shift=3,sleep=off --icount-timers iothread",
    &[
        "--icount",
        "shift=3,sleep=off",
        "--icount-timers",
        "iothread",
    ],
);

/// One guest workload: ELF name, parameters, how many runs, and a line its
/// UART output must contain.
struct Workload {
    elf: &'static str,
    params: Vec<String>,
    runs: usize,
    expect: String,
}

/// Run `vcpulab run` under the watchdog; panics naming the configuration on a
/// hang, a failure or wrong output. Returns the wall time.
fn run_watched(w: &Workload, smp: usize, mode: (&str, &[&str]), run: usize) -> Duration {
    let label = format!(
        "{}.elf --smp {smp} [{}] {} (run {}/{})",
        w.elf,
        mode.0,
        w.params.join(" "),
        run + 1,
        w.runs
    );
    let mut cmd = Command::new(vcpulab_bin());
    cmd.arg("run")
        .arg("--kernel")
        .arg(guest(w.elf))
        .args(["--smp", &smp.to_string()]);
    for p in &w.params {
        cmd.args(["--param", p.as_str()]);
    }
    cmd.args(mode.1);
    let start = Instant::now();
    let r = run_with_limit(cmd, RUN_WATCHDOG);
    let wall = start.elapsed();
    let (out, err) = (r.text(), String::from_utf8_lossy(&r.stderr).into_owned());
    assert!(
        !r.timed_out,
        "HANG (a lost kick?): {label} did not finish in {RUN_WATCHDOG:?}; killed.\n\
         stdout so far: {out}\nstderr so far: {err}"
    );
    assert!(
        r.code == Some(0) && out.contains(w.expect.as_str()),
        "{label}: exit {:?}, expected {:?} in the output.\nstdout: {out}\nstderr: {err}",
        r.code,
        w.expect
    );
    wall
}

/// Every workload at `--smp 2` and `--smp 4` in one timing mode.
fn stress_mode(mode: (&str, &[&str]), timer_iters: u32, sleep_inner: u32) {
    let workloads = [
        // A spinning hart 0 taking timer interrupts back to back.
        Workload {
            elf: "timer_irq",
            params: vec![format!("iters={timer_iters}"), "delay=200".into()],
            runs: 1,
            expect: format!("timer interrupts: {timer_iters}\n"),
        },
        // wfi with the timer and with MSIP: few wake-ups per run, so many runs.
        Workload {
            elf: "wfi_wake",
            params: vec!["delay=200".into()],
            runs: 20,
            expect: "msip interrupts: 1\n".into(),
        },
        // wfi until MTIP with MIE clear: the halt loop proper, 4 delays x inner
        // (inner <= 8: the guest keeps 32 results).
        Workload {
            elf: "wfi_sleep",
            params: vec!["delay=200".into(), format!("inner={sleep_inner}")],
            runs: 3,
            expect: "delay 200000: slept".into(),
        },
    ];
    let start = Instant::now();
    for w in &workloads {
        for smp in [2, 4] {
            let mut worst = Duration::ZERO;
            for run in 0..w.runs {
                worst = worst.max(run_watched(w, smp, mode, run));
            }
            eprintln!(
                "stress: {}.elf --smp {smp} [{}] x{}: slowest run {worst:.2?}",
                w.elf, mode.0, w.runs
            );
        }
    }
    eprintln!("stress: [{}] total {:.2?}", mode.0, start.elapsed());
}

#[test]
fn stress_machine_no_icount() {
    // Real-time timers: each interrupt waits for a host timer wake-up (about
    // 1-5 ms each with --smp >= 2 on a busy 2-core host), so fewer of them.
    stress_mode(PLAIN, 1000, 4);
}

#[test]
fn stress_machine_icount() {
    stress_mode(ICOUNT, 20_000, 8);
}

#[test]
fn stress_machine_icount_timers_iothread() {
    stress_mode(ICOUNT_IOTHREAD, 20_000, 8);
}

/// Device threads raise their own `mip` bit and wait for the halter to clear
/// it; a kicker kicks without changing `mip`; the halter runs the vCPU's halt
/// loop (re-check, then park) and clears what it finds. Every round needs a
/// wake-up that could be lost, and a watchdog fails the test when the halter
/// stalls.
#[test]
fn stress_cpushared_halt_clear() {
    for kind in KickKind::ALL {
        stress_halt_clear(kind);
    }
}

/// [`stress_cpushared_halt_clear`] with one kick mechanism.
fn stress_halt_clear(kind: KickKind) {
    const ROUNDS: u64 = 100_000;
    const BITS: [u64; 3] = [MIP_MTIP, MIP_MSIP, MIP_MEIP];
    const ALL: u64 = MIP_MTIP | MIP_MSIP | MIP_MEIP;

    let parker = Waiter::new(kind).unwrap();
    let cpu = Arc::new(CpuShared::new(0, parker.kicker()));
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let parks = Arc::new(AtomicU64::new(0));

    let mut threads = Vec::new();
    for bit in BITS {
        let (cpu, stop) = (cpu.clone(), stop.clone());
        threads.push(thread::spawn(move || {
            let mut raised = 0u64;
            while !stop.load(Ordering::Acquire) {
                cpu.set_irq(bit, true);
                raised += 1;
                // Wait for the halter to take it (bounded spin, then yield).
                let mut spins = 0u32;
                while cpu.mip() & bit != 0 && !stop.load(Ordering::Acquire) {
                    if spins < 100 {
                        std::hint::spin_loop();
                        spins += 1;
                    } else {
                        thread::yield_now();
                    }
                }
            }
            raised
        }));
    }
    {
        // Kicks without a mip change: spurious wake-ups for the halter.
        let (cpu, stop) = (cpu.clone(), stop.clone());
        threads.push(thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Acquire) {
                cpu.kick();
                n += 1;
                thread::sleep(Duration::from_micros(50));
            }
            n
        }));
    }
    let halter = {
        let (cpu, stop, rounds, parks) = (cpu.clone(), stop.clone(), rounds.clone(), parks.clone());
        thread::spawn(move || {
            for _ in 0..ROUNDS {
                // The halt loop of `vcpu.rs`: the exit request is consumed
                // and ignored; only a pending bit (or a stop) ends the halt.
                let pending = loop {
                    if stop.load(Ordering::Acquire) {
                        return;
                    }
                    cpu.take_exit_request();
                    let p = cpu.mip() & ALL;
                    if p != 0 {
                        break p;
                    }
                    parks.fetch_add(1, Ordering::Relaxed);
                    parker.park();
                };
                for bit in BITS {
                    if pending & bit != 0 {
                        cpu.set_irq(bit, false);
                    }
                }
                rounds.fetch_add(1, Ordering::Release);
            }
        })
    };

    // The watchdog.
    let start = Instant::now();
    let (mut last, mut last_change) = (0, Instant::now());
    while !halter.is_finished() {
        thread::sleep(Duration::from_millis(20));
        let r = rounds.load(Ordering::Acquire);
        if r != last {
            (last, last_change) = (r, Instant::now());
        } else if last_change.elapsed() > STALL_WATCHDOG {
            let (mip, exit) = (cpu.mip(), cpu.exit_requested());
            stop.store(true, Ordering::Release);
            cpu.wake();
            panic!(
                "LOST WAKE-UP ({kind:?}): the halter made no progress for {STALL_WATCHDOG:?} \
                 at round {r}/{ROUNDS} (mip = {mip:#x}, exit request = {exit}, \
                 parks so far = {})",
                parks.load(Ordering::Relaxed)
            );
        }
    }
    let elapsed = start.elapsed();
    halter.join().unwrap();
    stop.store(true, Ordering::Release);
    let counts: Vec<u64> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(rounds.load(Ordering::Relaxed), ROUNDS);
    eprintln!(
        "stress ({kind:?}): CpuShared {ROUNDS} halt/clear rounds in {elapsed:.2?}, {} parks, \
         raises per device {:?}, bare kicks {}, kicks {}",
        parks.load(Ordering::Relaxed),
        &counts[..3],
        counts[3],
        cpu.kicks.load(Ordering::Relaxed)
    );
}
