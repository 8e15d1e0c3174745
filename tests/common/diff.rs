//! The random differential driver both random tests use (`qemu_diff.rs`
//! with `randprog.rs`, `qemu_icount_diff.rs` with `randtime.rs`): which
//! programs to run (seed knobs), two workers, running each program on QEMU
//! and on vcpulab, and on a mismatch keeping the evidence, explaining the
//! first differing line and shrinking the program.
//!
//! Knobs, with `P` the test's prefix (`VCPULAB_DIFF`, `VCPULAB_ICOUNT_DIFF`):
//! - `P_COUNT`: number of programs per test (each ISA variant, each QEMU);
//! - `P_SEED`: base seed (decimal or 0x-hex). Without it, the first half of
//!   the programs come from the test's fixed seed and the second half from a
//!   seed that varies per run (both printed); `CI` set (or
//!   `VCPULAB_DIFF_FIXED=1`) makes them all come from the fixed seed, so that a
//!   CI run is reproducible and its length fixed;
//! - `P_START`: index of the first program (rerun one failure with
//!   `P_SEED=<base> P_START=<index> P_COUNT=1`);
//! - `P_SHRINK=0`: do not shrink mismatches.

use super::asm::Isa;
use super::qemu::Qemu;
use super::{RunOut, env_u64, repo_root, tail};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Two workers: the host has two cores.
const WORKERS: usize = 2;
/// Shrink only the first few mismatches: each costs up to `SHRINK_BUDGET` pairs of runs.
const MAX_SHRINKS: usize = 2;
const SHRINK_BUDGET: usize = 160;
/// Wall-clock limit of one run (vcpulab also gets `--timeout 10`).
pub const RUN_LIMIT: Duration = Duration::from_secs(20);

/// One kind of random program.
pub trait Family: Sync {
    /// A generated program.
    type Prog;
    /// The test's name in messages (`qemu_diff`).
    fn name(&self) -> &'static str;
    /// The knobs' prefix (`VCPULAB_DIFF`).
    fn prefix(&self) -> &'static str;
    /// The fixed base seed.
    fn default_seed(&self) -> u64;
    /// Programs per test when `P_COUNT` is unset.
    fn default_count(&self) -> usize;
    /// Stop starting programs after this many mismatches.
    fn max_failures(&self) -> usize {
        4
    }
    /// The extensions of the programs (and of both machines' `-cpu`/`--cpu`).
    fn isa(&self) -> Isa;
    /// The program for `seed`; with `kept`, only those body units.
    fn generate(&self, seed: u64, kept: Option<&[usize]>) -> Self::Prog;
    /// Whether any subset of the units is a valid program (otherwise only prefixes).
    fn subsets(&self) -> bool;
    /// Number of body units.
    fn units(&self, p: &Self::Prog) -> usize;
    /// The ELF.
    fn elf(&self, p: &Self::Prog) -> Vec<u8>;
    /// Its listing.
    fn listing(&self, p: &Self::Prog) -> String;
    /// Explain the first differing line (reference first).
    fn explain(&self, p: &Self::Prog, qemu: &str, vcpulab: &str) -> String;
    /// The kept body units, one instruction per line.
    fn body_text(&self, p: &Self::Prog) -> String;
    /// Extra QEMU arguments for program `index` of base seed `base`.
    fn qemu_args(&self, _base: u64, _index: u64) -> Vec<String> {
        Vec::new()
    }
    /// Extra vcpulab arguments for program `index` of base seed `base`.
    fn vcpulab_args(&self, _base: u64, _index: u64) -> Vec<String> {
        Vec::new()
    }
    /// A few words on program `index` for reports (e.g. `shift 3`).
    fn job_text(&self, _base: u64, _index: u64) -> String {
        String::new()
    }
    /// Whether QEMU finished the program as it should.
    fn qemu_ok(&self, q: &RunOut) -> bool;
    /// Run every program twice on QEMU and set aside those it does not
    /// repeat (QEMU's own nondeterminism, reported loudly, not a failure).
    fn qemu_twice(&self) -> bool {
        false
    }
    /// Checks on the whole job list (e.g. coverage of every shift).
    fn check_jobs(&self, _jobs: &[(u64, u64)]) {}
}

struct Failure {
    base: u64,
    index: u64,
    report: String,
    qemu_nondeterministic: bool,
}

fn same(q: &RunOut, v: &RunOut) -> bool {
    v.stdout == q.stdout && v.code == q.code && !v.timed_out
}

/// With `var` set to a directory, write a program's ELF and listing there
/// as `{tag}-{seed:016x}.elf` / `.lst` (the `…_DUMP` knob of the random
/// tests); returns the ELF.
pub fn dump_program(
    var: &str,
    tag: &str,
    seed: u64,
    elf: Vec<u8>,
    listing: impl FnOnce() -> String,
) -> Vec<u8> {
    if let Some(d) = std::env::var_os(var) {
        let d = std::path::PathBuf::from(d);
        let _ = std::fs::create_dir_all(&d);
        let _ = std::fs::write(d.join(format!("{tag}-{seed:016x}.elf")), &elf);
        let _ = std::fs::write(d.join(format!("{tag}-{seed:016x}.lst")), listing());
    }
    elf
}

/// The first `n` differing lines of two outputs, side by side.
pub fn diff_lines(q: &str, v: &str, n: usize) -> String {
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

struct Ctx<'a, F: Family> {
    fam: &'a F,
    qemu: &'a Qemu,
    tmp: &'a Path,
    dir: PathBuf,
    test: String,
}

impl<F: Family> Ctx<'_, F> {
    fn run_qemu(&self, path: &Path, base: u64, index: u64) -> RunOut {
        let args = self.fam.qemu_args(base, index);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.qemu.run(path, self.fam.isa(), &args, &[], RUN_LIMIT)
    }

    fn run_vcpulab(&self, path: &Path, base: u64, index: u64) -> RunOut {
        let mut args = self.fam.vcpulab_args(base, index);
        args.extend(["--timeout".to_string(), "10".to_string()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.qemu
            .vcpulab(path, self.fam.isa(), &args, &[], RUN_LIMIT)
    }

    /// Run on QEMU and, if QEMU finished it cleanly, on vcpulab:
    /// `Some((differs, q, v))`.
    fn pair(
        &self,
        p: &F::Prog,
        base: u64,
        index: u64,
        name: &str,
    ) -> Option<(bool, RunOut, RunOut)> {
        let path = self.tmp.join(format!("{name}.elf"));
        std::fs::write(&path, self.fam.elf(p)).expect("write ELF");
        let q = self.run_qemu(&path, base, index);
        let r = if self.fam.qemu_ok(&q) {
            let v = self.run_vcpulab(&path, base, index);
            Some((!same(&q, &v), q, v))
        } else {
            None
        };
        let _ = std::fs::remove_file(&path);
        r
    }

    /// Shrink a mismatch: the shortest failing prefix of its units (bisection),
    /// then, when any subset is a program, greedy removal of chunks of units.
    fn shrink(
        &self,
        seed: u64,
        base: u64,
        index: u64,
        units: usize,
        name: &str,
    ) -> Option<(F::Prog, RunOut, RunOut, usize)> {
        let runs = std::cell::Cell::new(0usize);
        let test = |kept: &[usize]| -> Option<(F::Prog, RunOut, RunOut)> {
            runs.set(runs.get() + 1);
            let p = self.fam.generate(seed, Some(kept));
            match self.pair(&p, base, index, &format!("{name}-shrink")) {
                Some((true, q, v)) => Some((p, q, v)),
                _ => None,
            }
        };
        let all: Vec<usize> = (0..units).collect();
        let mut best = test(&all)?;
        if let Some(b) = test(&[]) {
            return Some((b.0, b.1, b.2, runs.get())); // prologue, handler or epilogue
        }
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
        if self.fam.subsets() {
            let mut kept: Vec<usize> = all[..hi].to_vec();
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
        }
        Some((best.0, best.1, best.2, runs.get()))
    }

    fn check_one(&self, base: u64, index: u64, shrink_it: bool) -> Result<(), Failure> {
        let fam = self.fam;
        let seed = super::asm::program_seed(base, index);
        let prog = fam.generate(seed, None);
        let elf = fam.elf(&prog);
        let name = format!("p-{base:016x}-{index}");
        let path = self.tmp.join(format!("{name}.elf"));
        std::fs::write(&path, &elf).expect("write ELF");
        let q = self.run_qemu(&path, base, index);
        let q2 = (fam.qemu_twice() && fam.qemu_ok(&q)).then(|| self.run_qemu(&path, base, index));
        let repeatable = q2.as_ref().is_none_or(|q2| q2.stdout == q.stdout);
        let v = (fam.qemu_ok(&q) && repeatable).then(|| self.run_vcpulab(&path, base, index));
        let _ = std::fs::remove_file(&path);
        if v.as_ref().is_some_and(|v| same(&q, v)) {
            return Ok(());
        }

        let dir = &self.dir;
        let _ = std::fs::create_dir_all(dir);
        let job = fam.job_text(base, index);
        let stem = format!(
            "seed{base:016x}-{index}{}",
            if job.is_empty() {
                String::new()
            } else {
                format!("-{}", job.replace(' ', ""))
            }
        );
        let file = |ext: &str| dir.join(format!("{stem}.{ext}"));
        let _ = std::fs::write(file("elf"), &elf);
        let _ = std::fs::write(file("lst"), fam.listing(&prog));
        let _ = std::fs::write(file("qemu.txt"), &q.stdout);
        let qa = fam.qemu_args(base, index).join(" ");
        let va = fam.vcpulab_args(base, index).join(" ");
        let p = fam.prefix();
        let mut report = format!(
            "program: base seed {base:#018x}, index {index}{} (program seed {seed:#018x}, {} units), -cpu {}, QEMU {}\n\
             reproduce: {p}_SEED={base:#x} {p}_START={index} {p}_COUNT=1 \
             cargo test --profile test-fast --test {} -- --exact {}\n\
             by hand: {}\n",
            if job.is_empty() {
                String::new()
            } else {
                format!(", {job}")
            },
            fam.units(&prog),
            fam.isa().cpu(),
            self.qemu.version.label(),
            fam.name(),
            self.test,
            self.qemu.by_hand(&file("elf"), fam.isa(), &qa, &va),
        );
        let Some(v) = v else {
            let mut nondet = false;
            if !fam.qemu_ok(&q) {
                report += &format!(
                    "QEMU itself did not finish cleanly (generator bug?): exit {:?}, timed out {}, {} bytes of output\n\
                     stderr: {}\nlast output: {}\n",
                    q.code,
                    q.timed_out,
                    q.stdout.len(),
                    tail(&String::from_utf8_lossy(&q.stderr), 2000),
                    tail(&q.text(), 600),
                );
            } else if let Some(q2) = q2 {
                let _ = std::fs::write(file("qemu2.txt"), &q2.stdout);
                nondet = true;
                report += &format!(
                    "QEMU is NOT deterministic on this program (its two runs differ):\n{}{}",
                    diff_lines(&q.text(), &q2.text(), 8),
                    fam.explain(&prog, &q.text(), &q2.text())
                );
            }
            let _ = std::fs::write(file("report.txt"), &report);
            return Err(Failure {
                base,
                index,
                report,
                qemu_nondeterministic: nondet,
            });
        };
        let _ = std::fs::write(file("vcpulab.txt"), &v.stdout);
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
            report += &fam.explain(&prog, &q.text(), &v.text());
            report += &diff_lines(&q.text(), &v.text(), 6);
        }
        let shrink_on = std::env::var(format!("{p}_SHRINK")).map_or(true, |s| s != "0");
        if shrink_it && shrink_on {
            match self.shrink(seed, base, index, fam.units(&prog), &name) {
                Some((m, mq, mv, runs)) => {
                    let mfile = |ext: &str| dir.join(format!("{stem}-min.{ext}"));
                    let _ = std::fs::write(mfile("elf"), fam.elf(&m));
                    let _ = std::fs::write(mfile("lst"), fam.listing(&m));
                    let _ = std::fs::write(mfile("qemu.txt"), &mq.stdout);
                    let _ = std::fs::write(mfile("vcpulab.txt"), &mv.stdout);
                    report += &format!(
                        "shrunk ({runs} run pairs) to {} of {} units; the last kept unit is where it first diverges.\n\
                         minimal body:\n{}minimal program files: {stem}-min.{{elf,lst,qemu.txt,vcpulab.txt}}\n{}{}",
                        fam.units(&m).min(fam.units(&prog)),
                        fam.units(&prog),
                        fam.body_text(&m),
                        fam.explain(&m, &mq.text(), &mv.text()),
                        if mq.stdout != mv.stdout {
                            diff_lines(&mq.text(), &mv.text(), 6)
                        } else {
                            format!("exit status qemu {:?}, vcpulab {:?}\n", mq.code, mv.code)
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
        let _ = std::fs::write(file("report.txt"), &report);
        Err(Failure {
            base,
            index,
            report,
            qemu_nondeterministic: false,
        })
    }
}

fn varying_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    super::asm::program_seed(nanos, std::process::id() as u64)
}

/// Run the random differential test `test` (its full name, for the
/// reproduce line) of family `fam` against `qemu`; panics with every
/// mismatch's report.
pub fn run<F: Family>(fam: &F, qemu: &Qemu, test: &str) {
    let p = fam.prefix();
    let name = fam.name();
    let count = env_u64(&format!("{p}_COUNT")).map_or(fam.default_count(), |c| c as usize);
    let start = env_u64(&format!("{p}_START")).unwrap_or(0);
    let fixed_only =
        std::env::var_os("CI").is_some() || std::env::var_os("VCPULAB_DIFF_FIXED").is_some();
    let jobs: Vec<(u64, u64)> = match env_u64(&format!("{p}_SEED")) {
        Some(base) => {
            println!("{name}: {count} programs from {p}_SEED={base:#x}, first index {start}");
            (0..count as u64).map(|i| (base, start + i)).collect()
        }
        None if fixed_only => {
            let seed = fam.default_seed();
            println!(
                "{name}: {count} programs from the fixed seed {seed:#x} (CI: no varying half)"
            );
            (0..count as u64).map(|i| (seed, start + i)).collect()
        }
        None => {
            let varying = varying_seed();
            let fixed = count.div_ceil(2);
            let seed = fam.default_seed();
            println!(
                "{name}: {fixed} programs from the fixed seed {seed:#x} and {} from this run's seed {varying:#x} \
                 (rerun with {p}_SEED=<seed> [{p}_START=<index>] [{p}_COUNT=<n>])",
                count - fixed
            );
            (0..fixed as u64)
                .map(|i| (seed, start + i))
                .chain((0..(count - fixed) as u64).map(|i| (varying, start + i)))
                .collect()
        }
    };
    fam.check_jobs(&jobs);
    let tmp = tempfile::tempdir().expect("tempdir");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let ctx = Ctx {
        fam,
        qemu,
        tmp: tmp.path(),
        dir: target.join(format!("{name}-failures")).join(format!(
            "{}-{}",
            super::qemu::tag(qemu.version),
            fam.isa().tag()
        )),
        test: test.to_string(),
    };
    let next = AtomicUsize::new(0);
    let failures: Mutex<Vec<Failure>> = Mutex::new(Vec::new());
    let nondet: Mutex<Vec<Failure>> = Mutex::new(Vec::new());
    let shrinks = AtomicUsize::new(0);
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| {
                loop {
                    if failures.lock().unwrap().len() >= fam.max_failures() {
                        break;
                    }
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(base, index)) = jobs.get(i) else {
                        break;
                    };
                    let shrink_it = shrinks.load(Ordering::Relaxed) < MAX_SHRINKS;
                    match ctx.check_one(base, index, shrink_it) {
                        Ok(()) => {}
                        Err(f) if f.qemu_nondeterministic => {
                            eprintln!("{name}: WARNING: QEMU NONDETERMINISTIC\n{}", f.report);
                            nondet.lock().unwrap().push(f);
                        }
                        Err(f) => {
                            if shrink_it {
                                shrinks.fetch_add(1, Ordering::Relaxed);
                            }
                            eprintln!("{name}: MISMATCH\n{}", f.report);
                            failures.lock().unwrap().push(f);
                        }
                    }
                }
            });
        }
    });
    let done = next.load(Ordering::Relaxed).min(jobs.len());
    let failures = failures.into_inner().unwrap();
    let nondet = nondet.into_inner().unwrap();
    if !nondet.is_empty() {
        println!(
            "{name}: WARNING: QEMU gave two different outputs for {} program(s) (not counted as mismatches; see {}): {}",
            nondet.len(),
            ctx.dir.display(),
            nondet
                .iter()
                .map(|f| format!("seed {:#x} index {}", f.base, f.index))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    println!(
        "{name}: {test}: ran {done} of {} programs (-cpu {}, {}) in {:.1} s, {} mismatching",
        jobs.len(),
        fam.isa().cpu(),
        qemu.version_string,
        t0.elapsed().as_secs_f64(),
        failures.len()
    );
    if !failures.is_empty() {
        let mut msg = format!(
            "{} random program(s) differ between QEMU {} and vcpulab --compat {} (-cpu {}):\n",
            failures.len(),
            qemu.version.label(),
            qemu.version.name(),
            fam.isa().cpu()
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
