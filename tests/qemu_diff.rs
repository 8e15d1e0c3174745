//! Random differential test: random RV64IMA + Zicsr + Zifencei programs
//! (`tests/common/randprog.rs`) run on QEMU 7.2 and on vcpulab must print
//! byte-identical UART output (registers, data region, trap log).
//!
//! Knobs (environment):
//! - `VCPULAB_DIFF_COUNT`: number of programs (default 300);
//! - `VCPULAB_DIFF_SEED`: base seed (decimal or 0x-hex). Without it, the first
//!   half of the programs come from a fixed default seed (stable coverage) and
//!   the second half from a seed that varies per run; both are printed;
//! - `VCPULAB_DIFF_START`: index of the first program (to rerun one failure:
//!   `VCPULAB_DIFF_SEED=<base> VCPULAB_DIFF_START=<index> VCPULAB_DIFF_COUNT=1`);
//! - `VCPULAB_DIFF_SKIP`: debugging aid, a comma-separated list of program
//!   classes not to generate (`reservation`: the LR/SC reservation quirks;
//!   `smc`: self-modifying code), to look past a known difference. The
//!   test prints a loud note when it is set; CI never sets it.
//!
//! On a mismatch, the ELF, its listing and both outputs are written to
//! `target/difftest-failures/` and the report names the first differing line
//! and the body instructions that likely caused it.

mod common;

use common::RunOut;
use common::randprog::{GenOptions, Program, program_seed};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const DEFAULT_SEED: u64 = 0x7635_7075_6c61_6231; // "v5pulab1"
const DEFAULT_COUNT: usize = 300;
const WORKERS: usize = 2;
/// Stop starting new programs after this many failures.
const MAX_FAILURES: usize = 4;
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

/// Generator switches from `VCPULAB_DIFF_SKIP`.
fn gen_options() -> GenOptions {
    let mut o = GenOptions::default();
    if let Ok(skip) = std::env::var("VCPULAB_DIFF_SKIP") {
        for class in skip.split(',').map(str::trim).filter(|c| !c.is_empty()) {
            match class {
                "reservation" => o.reservation_quirks = false,
                "smc" => o.self_modifying_code = false,
                other => {
                    panic!("VCPULAB_DIFF_SKIP: unknown class {other:?} (known: reservation, smc)")
                }
            }
        }
    }
    o
}

fn failure_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::repo_root().join("target"));
    target.join("difftest-failures")
}

struct Failure {
    base: u64,
    index: u64,
    report: String,
}

/// Run one program on QEMU and, if QEMU finished it cleanly, on vcpulab.
fn run_pair(qemu: &Path, tmp: &Path, prog: &Program, name: &str) -> (RunOut, Option<RunOut>) {
    let path = tmp.join(format!("{name}.elf"));
    std::fs::write(&path, prog.elf()).expect("write ELF");
    let q = common::run_qemu(qemu, &path, &[], &[], RUN_LIMIT);
    let q_ok = q.code == Some(0) && !q.timed_out && q.stdout.ends_with(b"end\n");
    let v = if q_ok {
        Some(common::run_vcpulab(
            &path,
            // The reference is QEMU 7.2.
            &["--compat", "qemu-7.2", "--timeout", "10"],
            &[],
            RUN_LIMIT,
        ))
    } else {
        None
    };
    let _ = std::fs::remove_file(&path);
    (q, v)
}

fn same(q: &RunOut, v: &Option<RunOut>) -> bool {
    v.as_ref()
        .is_some_and(|v| v.stdout == q.stdout && v.code == q.code && !v.timed_out)
}

/// Bisect a mismatching program over its body prefixes: returns the smallest
/// prefix length `k` that still differs while `k - 1` units agree (so unit
/// `k - 1` is where the two machines diverge), with that prefix's outputs.
fn bisect(
    qemu: &Path,
    tmp: &Path,
    seed: u64,
    units: usize,
    name: &str,
) -> Option<(usize, Program, RunOut, RunOut)> {
    let run = |k: usize| {
        let p = Program::generate_with(seed, k, gen_options());
        let (q, v) = run_pair(qemu, tmp, &p, &format!("{name}-prefix{k}"));
        let differs = !same(&q, &v);
        v.map(|v| (differs, p, q, v))
    };
    let (differs0, ..) = run(0)?;
    if differs0 {
        return None; // even the empty body differs: prologue or epilogue
    }
    let (mut lo, mut hi) = (0, units);
    let mut best = None;
    while hi - lo > 1 {
        let mid = (lo + hi) / 2;
        let (differs, p, q, v) = run(mid)?;
        if differs {
            hi = mid;
            best = Some((p, q, v));
        } else {
            lo = mid;
        }
    }
    let (p, q, v) = match best {
        Some(b) => b,
        None => {
            let (_, p, q, v) = run(hi)?;
            (p, q, v)
        }
    };
    Some((hi, p, q, v))
}

fn check_one(
    qemu: &Path,
    tmp: &Path,
    base: u64,
    index: u64,
    bisect_it: bool,
) -> Result<(), Failure> {
    let seed = program_seed(base, index);
    let prog = Program::generate_with(seed, usize::MAX, gen_options());
    let elf = prog.elf();
    let name = format!("p-{base:016x}-{index}");
    let (q, v) = run_pair(qemu, tmp, &prog, &name);
    if same(&q, &v) {
        return Ok(());
    }

    // --- failure: keep the evidence and explain it --------------------------
    let dir = failure_dir();
    let _ = std::fs::create_dir_all(&dir);
    let stem = format!("seed{base:016x}-{index}");
    let _ = std::fs::write(dir.join(format!("{stem}.elf")), &elf);
    let _ = std::fs::write(dir.join(format!("{stem}.lst")), prog.listing());
    let _ = std::fs::write(dir.join(format!("{stem}.qemu.txt")), &q.stdout);
    let mut report = format!(
        "program: base seed {base:#018x}, index {index} (program seed {seed:#018x}, {} body units)\n\
         reproduce: VCPULAB_DIFF_SEED={base:#x} VCPULAB_DIFF_START={index} VCPULAB_DIFF_COUNT=1 \
         cargo test --release --test qemu_diff -- --nocapture\n\
         files: {}/{stem}.{{elf,lst,qemu.txt,vcpulab.txt}}\n",
        prog.units,
        dir.display()
    );
    match v {
        None => {
            report += &format!(
                "QEMU itself did not finish cleanly (generator bug?): exit {:?}, timed out {}, {} bytes of output\n\
                 stderr: {}\nlast output: {}\n",
                q.code,
                q.timed_out,
                q.stdout.len(),
                String::from_utf8_lossy(&q.stderr)
                    .chars()
                    .take(2000)
                    .collect::<String>(),
                tail(&q.text(), 600),
            );
        }
        Some(v) => {
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
            }
            if bisect_it {
                match bisect(qemu, tmp, seed, prog.units, &name) {
                    Some((k, p, pq, pv)) => {
                        let _ = std::fs::write(dir.join(format!("{stem}-min{k}.elf")), p.elf());
                        let _ = std::fs::write(dir.join(format!("{stem}-min{k}.lst")), p.listing());
                        let _ =
                            std::fs::write(dir.join(format!("{stem}-min{k}.qemu.txt")), &pq.stdout);
                        let _ = std::fs::write(
                            dir.join(format!("{stem}-min{k}.vcpulab.txt")),
                            &pv.stdout,
                        );
                        report += &format!(
                            "bisected: the first {} body units agree, {k} differ; the diverging unit {}:\n{}\
                             minimal program: {stem}-min{k}.{{elf,lst}}; its difference:\n{}",
                            k - 1,
                            k - 1,
                            p.unit_text(k - 1),
                            if pq.stdout != pv.stdout {
                                p.explain(&pq.text(), &pv.text())
                            } else {
                                format!("exit status qemu {:?}, vcpulab {:?}\n", pq.code, pv.code)
                            }
                        );
                    }
                    None => {
                        report += "bisection: inconclusive (the empty body already differs, or a prefix did not run)\n"
                    }
                }
            }
            if !v.stderr.is_empty() {
                report += &format!(
                    "vcpulab stderr: {}\n",
                    tail(&String::from_utf8_lossy(&v.stderr), 2000)
                );
            }
        }
    }
    let _ = std::fs::write(dir.join(format!("{stem}.report.txt")), &report);
    Err(Failure {
        base,
        index,
        report,
    })
}

fn tail(s: &str, n: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    chars[chars.len().saturating_sub(n)..].iter().collect()
}

#[test]
fn random_programs_match_qemu() {
    let Some(qemu) = common::qemu() else {
        return;
    };
    let count = env_u64("VCPULAB_DIFF_COUNT").map_or(DEFAULT_COUNT, |c| c as usize);
    let start = env_u64("VCPULAB_DIFF_START").unwrap_or(0);
    let jobs: Vec<(u64, u64)> = match env_u64("VCPULAB_DIFF_SEED") {
        Some(base) => {
            println!(
                "qemu_diff: {count} programs from VCPULAB_DIFF_SEED={base:#x}, first index {start}"
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
                "qemu_diff: {fixed} programs from the fixed seed {DEFAULT_SEED:#x} and {} from this run's seed {varying:#x} \
                 (rerun with VCPULAB_DIFF_SEED=<seed> [VCPULAB_DIFF_START=<index>] [VCPULAB_DIFF_COUNT=<n>])",
                count - fixed
            );
            (0..fixed as u64)
                .map(|i| (DEFAULT_SEED, start + i))
                .chain((0..(count - fixed) as u64).map(|i| (varying, start + i)))
                .collect()
        }
    };

    if std::env::var_os("VCPULAB_DIFF_SKIP").is_some() {
        println!(
            "qemu_diff: NOTE: VCPULAB_DIFF_SKIP={:?}: some program classes are not generated",
            std::env::var("VCPULAB_DIFF_SKIP").unwrap_or_default()
        );
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let next = AtomicUsize::new(0);
    let failures: Mutex<Vec<Failure>> = Mutex::new(Vec::new());
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
                    // bisect only the first few failures: each costs ~10 runs
                    let bisect_it = failures.lock().unwrap().len() < 2;
                    if let Err(f) = check_one(&qemu, tmp.path(), base, index, bisect_it) {
                        eprintln!("qemu_diff: MISMATCH\n{}", f.report);
                        failures.lock().unwrap().push(f);
                    }
                }
            });
        }
    });
    let done = next.load(Ordering::Relaxed).min(jobs.len());
    let failures = failures.into_inner().unwrap();
    println!(
        "qemu_diff: ran {done} of {} programs in {:.1} s, {} mismatching",
        jobs.len(),
        t0.elapsed().as_secs_f64(),
        failures.len()
    );
    if !failures.is_empty() {
        let mut msg = format!(
            "{} random program(s) differ between QEMU and vcpulab:\n",
            failures.len()
        );
        for f in &failures {
            msg += &format!(
                "\n=== base seed {:#x}, index {} ===\n{}",
                f.base, f.index, f.report
            );
        }
        panic!("{msg}");
    }
}
