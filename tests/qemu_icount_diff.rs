//! Random differential test of *time* under icount: random programs that read
//! time, arm the CLINT timer, take timer/software interrupts and `ecall`s and
//! sleep in `wfi` (`tests/common/randtime.rs`) run on QEMU 7.2 with
//! `-icount shift=N,sleep=off` and on vcpulab with `--icount shift=N,sleep=off`
//! must print byte-identical UART output and exit the same way.
//!
//! Every program gets a shift in 0..=10: `(index + base seed) % 11`, so any 11
//! consecutive programs of one base seed cover every shift.
//!
//! Before comparing, every program is run twice on QEMU. QEMU 7.2 is *not*
//! always deterministic under `sleep=off` (rarely — about 1 program in 1500
//! here — two runs differ by a tick or so after a `wfi`, more often when the
//! host is loaded); such a program is reported with a loud warning and its
//! files are kept, but it does not fail the test (it is QEMU's difference,
//! not vcpulab's).
//!
//! Knobs (environment):
//! - `VCPULAB_ICOUNT_DIFF_COUNT`: number of programs (default 150);
//! - `VCPULAB_ICOUNT_DIFF_SEED`: base seed (decimal or 0x-hex). Without it, the
//!   first half of the programs come from a fixed seed and the second half from
//!   a seed that varies per run; both are printed;
//! - `VCPULAB_ICOUNT_DIFF_START`: index of the first program (to rerun one
//!   failure: `..._SEED=<base> ..._START=<index> ..._COUNT=1`);
//! - `VCPULAB_ICOUNT_DIFF_SHIFT`: force this shift for every program;
//! - `VCPULAB_ICOUNT_DIFF_SKIP`: debugging aid, a comma-separated list of
//!   program classes not to generate, to look past a known difference; the
//!   test prints a loud note when it is set;
//! - `VCPULAB_ICOUNT_DIFF_WITH=mcountinhibit`: also generate writes to
//!   `mcountinhibit`, off by default: QEMU 7.2's reads of an inhibited
//!   mcycle/minstret are a known difference (docs/machine.md);
//! - `VCPULAB_ICOUNT_DIFF_SHRINK=0`: do not shrink mismatches;
//! - `VCPULAB_ICOUNT_DIFF_DUMP=<dir>`: also write every program's ELF and
//!   listing there (to inspect what the generator makes).
//!
//! On a mismatch the ELF, its listing and both outputs go to
//! `target/icount-diff-failures/`; the program is then shrunk (shortest
//! failing prefix of body units, then greedy removal of units) and the
//! minimal program is saved and printed with both outputs.

mod common;

use common::RunOut;
use common::randprog::program_seed;
use common::randtime::{GenOptions, Program};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const DEFAULT_SEED: u64 = 0x7469_6d65_6c61_6231; // "timelab1"
const DEFAULT_COUNT: usize = 150;
const WORKERS: usize = 2;
const MAX_FAILURES: usize = 6;
/// Shrink only the first few mismatches: each costs up to `SHRINK_BUDGET` pairs of runs.
const MAX_SHRINKS: usize = 3;
const SHRINK_BUDGET: usize = 160;
const RUN_LIMIT: Duration = Duration::from_secs(20);

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    let v = v.trim();
    let parsed = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(&hex.replace('_', ""), 16),
        None => v.replace('_', "").parse(),
    };
    Some(parsed.unwrap_or_else(|e| panic!("{name}={v}: {e}")))
}

/// Generator switches from `VCPULAB_ICOUNT_DIFF_SKIP` and `_WITH`.
fn gen_options() -> GenOptions {
    let mut o = GenOptions::default();
    if let Ok(with) = std::env::var("VCPULAB_ICOUNT_DIFF_WITH") {
        for class in with.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            match class {
                "mcountinhibit" => o.mcountinhibit = true,
                other => panic!(
                    "VCPULAB_ICOUNT_DIFF_WITH: unknown class {other:?} (known: mcountinhibit)"
                ),
            }
        }
    }
    if let Ok(skip) = std::env::var("VCPULAB_ICOUNT_DIFF_SKIP") {
        for class in skip.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            match class {
                "mcountinhibit" => o.mcountinhibit = false,
                other => panic!(
                    "VCPULAB_ICOUNT_DIFF_SKIP: unknown class {other:?} (known: mcountinhibit)"
                ),
            }
        }
    }
    o
}

fn failure_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::repo_root().join("target"));
    target.join("icount-diff-failures")
}

fn shift_for(base: u64, index: u64) -> u32 {
    match env_u64("VCPULAB_ICOUNT_DIFF_SHIFT") {
        Some(s) => {
            assert!(s <= 10, "VCPULAB_ICOUNT_DIFF_SHIFT must be 0..=10");
            s as u32
        }
        None => ((index % 11 + base % 11) % 11) as u32,
    }
}

struct Failure {
    base: u64,
    index: u64,
    shift: u32,
    report: String,
    /// QEMU's own two runs differed: not a vcpulab mismatch (reported loudly,
    /// does not fail the test).
    qemu_nondeterministic: bool,
}

fn qemu_ok(q: &RunOut) -> bool {
    q.code == Some(0) && !q.timed_out && q.stdout.ends_with(b"\nend\n")
}

fn run_qemu(qemu: &Path, elf: &Path, shift: u32) -> RunOut {
    let icount = format!("shift={shift},sleep=off");
    common::run_qemu(qemu, elf, &["-icount", &icount], &[], RUN_LIMIT)
}

fn run_vcpulab(elf: &Path, shift: u32) -> RunOut {
    let icount = format!("shift={shift},sleep=off");
    common::run_vcpulab(
        elf,
        // The reference is QEMU 7.2.
        &[
            "--compat",
            "qemu-7.2",
            "--icount",
            &icount,
            "--timeout",
            "10",
        ],
        &[],
        RUN_LIMIT,
    )
}

fn same(q: &RunOut, v: &RunOut) -> bool {
    v.stdout == q.stdout && v.code == q.code && !v.timed_out
}

/// Run `prog` on QEMU and vcpulab; `Some((differs, q, v))` if QEMU ran it cleanly.
fn run_pair(
    qemu: &Path,
    tmp: &Path,
    prog: &Program,
    shift: u32,
    name: &str,
) -> Option<(bool, RunOut, RunOut)> {
    let path = tmp.join(format!("{name}.elf"));
    std::fs::write(&path, prog.elf()).expect("write ELF");
    let q = run_qemu(qemu, &path, shift);
    let r = if qemu_ok(&q) {
        let v = run_vcpulab(&path, shift);
        Some((!same(&q, &v), q, v))
    } else {
        None
    };
    let _ = std::fs::remove_file(&path);
    r
}

/// Shrink a mismatching program: the shortest failing prefix of its units,
/// then greedy removal of chunks of units (halving the chunk size) while it
/// still differs. Returns the minimal program and its outputs.
fn shrink(
    qemu: &Path,
    tmp: &Path,
    seed: u64,
    shift: u32,
    units: usize,
    name: &str,
) -> Option<(Program, RunOut, RunOut, usize)> {
    let runs = std::cell::Cell::new(0usize);
    let test = |kept: &[usize]| -> Option<(Program, RunOut, RunOut)> {
        runs.set(runs.get() + 1);
        let p = Program::generate_with(seed, Some(kept), gen_options());
        match run_pair(qemu, tmp, &p, shift, &format!("{name}-shrink")) {
            Some((true, q, v)) => Some((p, q, v)),
            _ => None,
        }
    };
    let all: Vec<usize> = (0..units).collect();
    let mut best = test(&all)?;
    if let Some(b) = test(&[]) {
        // even the empty body differs: prologue, handler or epilogue
        return Some((b.0, b.1, b.2, runs.get()));
    }
    // shortest failing prefix (bisection: prefix `lo` agrees, `hi` differs)
    let (mut lo, mut hi) = (0usize, units);
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        match test(&all[..mid]) {
            Some(b) => {
                hi = mid;
                best = b;
            }
            None => lo = mid,
        }
    }
    let mut kept: Vec<usize> = all[..hi].to_vec();
    // greedy chunk removal; the last unit (where the prefix starts to differ)
    // is tried too, but usually it is needed
    let mut chunk = (kept.len() / 2).max(1);
    loop {
        let mut i = 0;
        while i < kept.len() && runs.get() < SHRINK_BUDGET {
            let end = (i + chunk).min(kept.len());
            let cand: Vec<usize> = kept[..i].iter().chain(&kept[end..]).copied().collect();
            match test(&cand) {
                Some(b) => {
                    kept = cand;
                    best = b;
                }
                None => i = end,
            }
        }
        if chunk == 1 || runs.get() >= SHRINK_BUDGET {
            break;
        }
        chunk = (chunk / 2).max(1);
    }
    Some((best.0, best.1, best.2, runs.get()))
}

/// The first `n` differing lines of two outputs, side by side.
fn diff_lines(q: &str, v: &str, n: usize) -> String {
    let ql: Vec<&str> = q.lines().collect();
    let vl: Vec<&str> = v.lines().collect();
    let mut s = String::new();
    let mut shown = 0;
    for i in 0..ql.len().max(vl.len()) {
        let (a, b) = (ql.get(i), vl.get(i));
        if a != b {
            s += &format!(
                "  line {:>4}: qemu {:<40} vcpulab {}\n",
                i + 1,
                a.copied().unwrap_or("<missing>"),
                b.copied().unwrap_or("<missing>")
            );
            shown += 1;
            if shown >= n {
                break;
            }
        }
    }
    s
}

fn check_one(
    qemu: &Path,
    tmp: &Path,
    base: u64,
    index: u64,
    shrink_it: bool,
) -> Result<(), Failure> {
    let seed = program_seed(base, index);
    let shift = shift_for(base, index);
    let prog = Program::generate_with(seed, None, gen_options());
    let elf = prog.elf();
    let name = format!("t-{base:016x}-{index}");
    if let Some(d) = std::env::var_os("VCPULAB_ICOUNT_DIFF_DUMP") {
        let d = PathBuf::from(d);
        let _ = std::fs::create_dir_all(&d);
        let _ = std::fs::write(d.join(format!("{name}-shift{shift}.elf")), &elf);
        let _ = std::fs::write(d.join(format!("{name}-shift{shift}.lst")), prog.listing());
    }
    let path = tmp.join(format!("{name}.elf"));
    std::fs::write(&path, &elf).expect("write ELF");
    let q = run_qemu(qemu, &path, shift);
    let q2 = run_qemu(qemu, &path, shift);
    let v = if qemu_ok(&q) && q.stdout == q2.stdout {
        Some(run_vcpulab(&path, shift))
    } else {
        None
    };
    let _ = std::fs::remove_file(&path);
    if v.as_ref().is_some_and(|v| same(&q, v)) {
        return Ok(());
    }

    let dir = failure_dir();
    let _ = std::fs::create_dir_all(&dir);
    let stem = format!("seed{base:016x}-{index}-shift{shift}");
    let _ = std::fs::write(dir.join(format!("{stem}.elf")), &elf);
    let _ = std::fs::write(dir.join(format!("{stem}.lst")), prog.listing());
    let _ = std::fs::write(dir.join(format!("{stem}.qemu.txt")), &q.stdout);
    let mut report = format!(
        "program: base seed {base:#018x}, index {index}, shift {shift} (program seed {seed:#018x}, {} units)\n\
         reproduce: VCPULAB_ICOUNT_DIFF_SEED={base:#x} VCPULAB_ICOUNT_DIFF_START={index} VCPULAB_ICOUNT_DIFF_COUNT=1 \
         cargo test --release --test qemu_icount_diff -- --nocapture\n\
         by hand: qemu-system-riscv64 -machine virt -bios none -nographic -monitor none -serial stdio \
         -icount shift={shift},sleep=off -kernel {d}/{stem}.elf ; \
         vcpulab run --icount shift={shift},sleep=off --kernel {d}/{stem}.elf\n",
        prog.shape.units,
        d = dir.display()
    );
    let Some(v) = v else {
        let mut nondet = false;
        if !qemu_ok(&q) {
            report += &format!(
                "QEMU itself did not finish cleanly (generator bug?): exit {:?}, timed out {}, {} bytes of output\n\
                 stderr: {}\nlast output: {}\n",
                q.code,
                q.timed_out,
                q.stdout.len(),
                tail(&String::from_utf8_lossy(&q.stderr), 2000),
                tail(&q.text(), 600),
            );
        } else {
            let _ = std::fs::write(dir.join(format!("{stem}.qemu2.txt")), &q2.stdout);
            nondet = true;
            report += &format!(
                "QEMU is NOT deterministic on this program (its two runs differ):\n{}{}",
                diff_lines(&q.text(), &q2.text(), 8),
                prog.explain(&q.text(), &q2.text())
            );
        }
        let _ = std::fs::write(dir.join(format!("{stem}.report.txt")), &report);
        return Err(Failure {
            base,
            index,
            shift,
            report,
            qemu_nondeterministic: nondet,
        });
    };
    let _ = std::fs::write(dir.join(format!("{stem}.vcpulab.txt")), &v.stdout);
    if v.code != q.code || v.timed_out {
        report += &format!(
            "exit status: qemu {:?}, vcpulab {:?}{}\n",
            q.code,
            v.code,
            if v.timed_out {
                " (killed after the time limit)"
            } else {
                ""
            }
        );
    }
    if v.stdout != q.stdout {
        report += &prog.explain(&q.text(), &v.text());
        report += &diff_lines(&q.text(), &v.text(), 6);
    }
    let shrink_on = std::env::var("VCPULAB_ICOUNT_DIFF_SHRINK").map_or(true, |s| s != "0");
    if shrink_it && shrink_on {
        match shrink(qemu, tmp, seed, shift, prog.shape.units, &name) {
            Some((p, pq, pv, runs)) => {
                let m = format!("{stem}-min");
                let _ = std::fs::write(dir.join(format!("{m}.elf")), p.elf());
                let _ = std::fs::write(dir.join(format!("{m}.lst")), p.listing());
                let _ = std::fs::write(dir.join(format!("{m}.qemu.txt")), &pq.stdout);
                let _ = std::fs::write(dir.join(format!("{m}.vcpulab.txt")), &pv.stdout);
                report += &format!(
                    "shrunk ({runs} run pairs) to units {:?} of {}; last kept unit is where it first diverges.\n\
                     minimal body (shift {shift}):\n{}\
                     handler: vectored {}, log time via {}, re-arm via {} {}, actions {:?}; prologue disarm {}, mie {:#x}, MIE {}\n\
                     minimal program files: {m}.{{elf,lst,qemu.txt,vcpulab.txt}}\n{}{}",
                    p.kept,
                    prog.shape.units,
                    p.body_text(),
                    p.shape.vectored,
                    if p.shape.handler_log_mmio {
                        "mmio"
                    } else {
                        "rdtime"
                    },
                    if p.shape.handler_rearm_mmio {
                        "mmio"
                    } else {
                        "rdtime"
                    },
                    p.shape.handler_write,
                    p.shape.actions,
                    p.shape.prologue_disarm,
                    p.shape.init_mie,
                    p.shape.init_mstatus_mie,
                    p.explain(&pq.text(), &pv.text()),
                    if pq.stdout != pv.stdout {
                        diff_lines(&pq.text(), &pv.text(), 6)
                    } else {
                        format!("exit status qemu {:?}, vcpulab {:?}\n", pq.code, pv.code)
                    }
                );
            }
            None => report += "shrinking: inconclusive (the full program did not reproduce)\n",
        }
    }
    if !v.stderr.is_empty() {
        report += &format!(
            "vcpulab stderr: {}\n",
            tail(&String::from_utf8_lossy(&v.stderr), 2000)
        );
    }
    let _ = std::fs::write(dir.join(format!("{stem}.report.txt")), &report);
    Err(Failure {
        base,
        index,
        shift,
        report,
        qemu_nondeterministic: false,
    })
}

fn tail(s: &str, n: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    chars[chars.len().saturating_sub(n)..].iter().collect()
}

#[test]
fn random_time_programs_match_qemu_icount() {
    let Some(qemu) = common::qemu() else {
        return;
    };
    let count = env_u64("VCPULAB_ICOUNT_DIFF_COUNT").map_or(DEFAULT_COUNT, |c| c as usize);
    let start = env_u64("VCPULAB_ICOUNT_DIFF_START").unwrap_or(0);
    let jobs: Vec<(u64, u64)> = match env_u64("VCPULAB_ICOUNT_DIFF_SEED") {
        Some(base) => {
            println!(
                "qemu_icount_diff: {count} programs from VCPULAB_ICOUNT_DIFF_SEED={base:#x}, first index {start}"
            );
            (0..count as u64).map(|i| (base, start + i)).collect()
        }
        None => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let varying = program_seed(nanos, std::process::id() as u64);
            let fixed = count.div_ceil(2);
            println!(
                "qemu_icount_diff: {fixed} programs from the fixed seed {DEFAULT_SEED:#x} and {} from this run's seed {varying:#x} \
                 (rerun with VCPULAB_ICOUNT_DIFF_SEED=<seed> [VCPULAB_ICOUNT_DIFF_START=<index>] [VCPULAB_ICOUNT_DIFF_COUNT=<n>])",
                count - fixed
            );
            (0..fixed as u64)
                .map(|i| (DEFAULT_SEED, start + i))
                .chain((0..(count - fixed) as u64).map(|i| (varying, start + i)))
                .collect()
        }
    };
    let mut shifts: Vec<u32> = jobs.iter().map(|&(b, i)| shift_for(b, i)).collect();
    shifts.sort();
    shifts.dedup();
    println!("qemu_icount_diff: shifts covered: {shifts:?}");
    if jobs.len() >= 22 && env_u64("VCPULAB_ICOUNT_DIFF_SHIFT").is_none() {
        assert_eq!(
            shifts,
            (0..=10).collect::<Vec<u32>>(),
            "every shift must be covered"
        );
    }

    if std::env::var_os("VCPULAB_ICOUNT_DIFF_SKIP").is_some() {
        println!(
            "qemu_icount_diff: NOTE: VCPULAB_ICOUNT_DIFF_SKIP={:?}: some program classes are not generated",
            std::env::var("VCPULAB_ICOUNT_DIFF_SKIP").unwrap_or_default()
        );
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let next = AtomicUsize::new(0);
    let failures: Mutex<Vec<Failure>> = Mutex::new(Vec::new());
    let qemu_nondet: Mutex<Vec<Failure>> = Mutex::new(Vec::new());
    let shrinks = AtomicUsize::new(0);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| {
                loop {
                    if failures.lock().unwrap().len() >= MAX_FAILURES {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(base, index)) = jobs.get(i) else {
                        break;
                    };
                    let shrink_it = shrinks.load(Ordering::Relaxed) < MAX_SHRINKS;
                    match check_one(&qemu, tmp.path(), base, index, shrink_it) {
                        Ok(()) => {}
                        Err(f) if f.qemu_nondeterministic => {
                            eprintln!(
                                "qemu_icount_diff: WARNING: QEMU NONDETERMINISTIC\n{}",
                                f.report
                            );
                            qemu_nondet.lock().unwrap().push(f);
                        }
                        Err(f) => {
                            if shrink_it {
                                shrinks.fetch_add(1, Ordering::Relaxed);
                            }
                            eprintln!("qemu_icount_diff: MISMATCH\n{}", f.report);
                            failures.lock().unwrap().push(f);
                        }
                    }
                }
            });
        }
    });
    let done = next.load(Ordering::Relaxed).min(jobs.len());
    let failures = failures.into_inner().unwrap();
    let qemu_nondet = qemu_nondet.into_inner().unwrap();
    if !qemu_nondet.is_empty() {
        println!(
            "qemu_icount_diff: WARNING: QEMU gave two different outputs for {} program(s) \
             (not counted as mismatches; see target/icount-diff-failures/): {}",
            qemu_nondet.len(),
            qemu_nondet
                .iter()
                .map(|f| format!("seed {:#x} index {} shift {}", f.base, f.index, f.shift))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    println!(
        "qemu_icount_diff: ran {done} of {} programs in {:.1} s, {} mismatching",
        jobs.len(),
        t0.elapsed().as_secs_f64(),
        failures.len()
    );
    if !failures.is_empty() {
        let mut msg = format!(
            "{} random time program(s) differ between QEMU -icount and vcpulab --icount:\n",
            failures.len()
        );
        for f in &failures {
            msg += &format!(
                "\n=== base seed {:#x}, index {}, shift {} ===\n{}",
                f.base, f.index, f.shift, f.report
            );
        }
        panic!("{msg}");
    }
}
