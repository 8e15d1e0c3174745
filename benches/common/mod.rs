//! Shared helpers for the vcpulab bench binaries (`benches/*.rs`, `harness = false`).
//!
//! - Child processes (vcpulab, `qemu-system-riscv64`) run through the runner the tests use
//!   too (`tests/common/proc.rs`): timed from spawn to exit with a monotonic clock, reaped
//!   with `wait4` for their maximum RSS, killed after a time limit, stdout captured but
//!   bounded, thread count sampled from `/proc/PID/status` (so that each result can say
//!   whether threads outnumber host cores).
//! - QEMU command lines come from the library's QEMU runner (`vcpulab::qemu`, shared with the
//!   tests); the benches run them through the bounded runner above for RSS and thread counts.
//! - Results go to `results/NAME-YYYY-MM-DD.json` with the host facts they came from.
#![allow(dead_code)] // each bench uses a different subset

#[path = "../../tests/common/proc.rs"]
mod proc;

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use vcpulab::host::HostFacts;
use vcpulab::qemu::{QemuGuestRun, QemuVersion};

/// The QEMU binary the benches compare against (Debian's 7.2).
pub const QEMU: &str = QemuVersion::V7_2.default_bin();
/// QEMU 10.0 (bookworm-backports), installed beside 7.2 under this name.
pub const QEMU_10_0: &str = QemuVersion::V10_0.default_bin();
/// Guest address of parameter slot 0 (`guests/link.ld`); slot i is at + 8·i.
pub const PARAM_BLOCK: u64 = vcpulab::qemu::PARAM_BLOCK;
/// Captured stdout per child is cut at this many bytes.
const STDOUT_LIMIT: usize = 64 * 1024;

/// Repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The vcpulab binary built by `cargo bench` (same profile as the bench: release).
pub fn vcpulab_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_vcpulab"))
}

/// A guest ELF and the parameter slot that holds its iteration count.
#[derive(Clone, Debug)]
pub struct Guest {
    /// Short name for tables and JSON.
    pub name: &'static str,
    /// Path relative to the repository root.
    pub rel_path: &'static str,
    /// Instructions per loop iteration (approximate; the exact count comes from vcpulab).
    pub insns_per_iter: f64,
    /// Iterations used for the calibration run.
    pub calib_iters: u64,
}

impl Guest {
    /// Absolute path of the ELF.
    pub fn path(&self) -> PathBuf {
        repo_root().join(self.rel_path)
    }
}

/// The guests the benches use.
pub fn compute_guest() -> Guest {
    Guest {
        name: "compute",
        rel_path: "guests/build/compute.elf",
        insns_per_iter: 34.0,
        calib_iters: 10_000_000,
    }
}

/// The pure 4-instruction ALU loop (benches/guests/alu_loop.S).
pub fn alu_guest() -> Guest {
    Guest {
        name: "alu_loop",
        rel_path: "benches/guests/alu_loop.elf",
        insns_per_iter: 4.0,
        calib_iters: 100_000_000,
    }
}

/// What one child process did.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// Spawn to exit, ns.
    pub wall_ns: u64,
    /// Maximum RSS from wait4 (bytes).
    pub max_rss_bytes: u64,
    /// Exited with status 0.
    pub success: bool,
    /// Exit description (status or signal).
    pub status: String,
    /// First bytes of stdout.
    pub stdout: String,
    /// Largest thread count seen in /proc/PID/status while it ran.
    pub max_threads: u64,
    /// Whether the time limit killed it.
    pub timed_out: bool,
    /// CPU time (user + system) the child used, ns: the growth of
    /// `getrusage(RUSAGE_CHILDREN)` across the run (children run one at a time).
    pub cpu_ns: u64,
    /// How busy the whole host was while the child ran, in cores (0..=cores), from
    /// `/proc/stat`; minus `cpu_ns / wall_ns` it is what other processes took.
    pub host_busy_cores: f64,
}

/// CPU time (user + system) of all reaped children of this process so far, ns.
pub fn children_cpu_ns() -> u64 {
    // SAFETY: `getrusage` only writes the struct it is given, which is a valid,
    // zero-initialised `rusage`.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru
    };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// `/proc/stat`'s aggregate line: (busy, total) jiffies, busy = total − idle − iowait.
pub fn host_jiffies() -> (u64, u64) {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Busy cores between two [`host_jiffies`] snapshots, on a host of `cores` cores.
pub fn busy_cores(a: (u64, u64), b: (u64, u64), cores: usize) -> f64 {
    let total = b.1.saturating_sub(a.1);
    if total == 0 {
        return f64::NAN;
    }
    b.0.saturating_sub(a.0) as f64 / total as f64 * cores as f64
}

/// Run `prog args…` through the shared bounded runner (`tests/common/proc.rs`): stdin from
/// /dev/null, stdout and stderr captured (bounded), a time limit, and wall time / max RSS /
/// thread count measured. A failing child's stderr is printed.
pub fn run_process(prog: &Path, args: &[String], limit: Duration) -> io::Result<Outcome> {
    let mut cmd = Command::new(prog);
    cmd.args(args);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (cpu0, j0) = (children_cpu_ns(), host_jiffies());
    let f = proc::run_bounded(cmd, limit, STDOUT_LIMIT)?;
    let (cpu1, j1) = (children_cpu_ns(), host_jiffies());
    let success = f.code == Some(0);
    if !success {
        eprintln!(
            "  ! {} {} -> {}{}; stderr: {}",
            prog.display(),
            args.join(" "),
            f.status,
            if f.timed_out { " (time limit)" } else { "" },
            String::from_utf8_lossy(&f.stderr).trim()
        );
    }
    Ok(Outcome {
        wall_ns: f.wall_ns,
        max_rss_bytes: f.max_rss_bytes,
        success,
        status: f.status,
        stdout: String::from_utf8_lossy(&f.stdout).into_owned(),
        max_threads: f.max_threads,
        timed_out: f.timed_out,
        cpu_ns: cpu1.saturating_sub(cpu0),
        host_busy_cores: busy_cores(j0, j1, cores),
    })
}

/// A vcpulab run: the process outcome plus its `--stats` JSON.
#[derive(Clone, Debug)]
pub struct VcpulabRun {
    /// The process as seen from outside.
    pub outcome: Outcome,
    /// The `--stats` report.
    pub stats: Value,
}

impl VcpulabRun {
    /// `instructions.total` from the stats.
    pub fn instructions(&self) -> u64 {
        self.stats["instructions"]["total"].as_u64().unwrap_or(0)
    }
    /// `peak_rss_bytes` from the stats.
    pub fn peak_rss(&self) -> u64 {
        self.stats["peak_rss_bytes"].as_u64().unwrap_or(0)
    }
    /// vcpulab's own `mips` (its internal wall clock).
    pub fn self_mips(&self) -> f64 {
        self.stats["mips"].as_f64().unwrap_or(0.0)
    }
    /// vcpulab's own `wall_ns`.
    pub fn self_wall_ns(&self) -> u64 {
        self.stats["wall_ns"].as_u64().unwrap_or(0)
    }
}

/// Scratch directory for stats files of this bench process.
pub fn scratch_dir() -> PathBuf {
    let d = std::env::temp_dir().join(format!("vcpulab-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("create scratch dir");
    d
}

/// Run vcpulab on `guest` with iteration count `iters` and extra arguments.
pub fn run_vcpulab(
    guest: &Guest,
    iters: u64,
    extra: &[&str],
    limit: Duration,
) -> io::Result<VcpulabRun> {
    run_vcpulab_params(&guest.path(), &[(0, iters)], extra, limit)
}

/// Run vcpulab on the ELF `elf` with parameter-block slots (`--param SLOT=VALUE`) and extra
/// arguments, with `--stats` into the scratch directory.
pub fn run_vcpulab_params(
    elf: &Path,
    params: &[(usize, u64)],
    extra: &[&str],
    limit: Duration,
) -> io::Result<VcpulabRun> {
    let stats_path = scratch_dir().join("stats.json");
    let _ = std::fs::remove_file(&stats_path);
    let mut args: Vec<String> = vec!["run".into(), "--kernel".into(), elf.display().to_string()];
    for (slot, value) in params {
        args.push("--param".into());
        args.push(format!("{slot}={value}"));
    }
    args.push("--stats".into());
    args.push(stats_path.display().to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    let outcome = run_process(&vcpulab_bin(), &args, limit)?;
    let stats: Value = std::fs::read_to_string(&stats_path)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Value::Null);
    Ok(VcpulabRun { outcome, stats })
}

/// The QEMU command line for `guest` with iteration count `iters` (parameter slot 0) and extra
/// arguments (e.g. `-icount shift=0,sleep=off`).
pub fn qemu_args(guest: &Guest, iters: u64, extra: &[&str]) -> Vec<String> {
    qemu_args_params(&guest.path().display().to_string(), &[(0, iters)], extra)
}

/// The QEMU command line (without the program) for the ELF `elf` with parameter-block slots
/// and extra arguments (e.g. `-smp 2 -accel tcg,thread=multi`): `-machine virt -bios none
/// -nographic -monitor none -serial stdio -kernel ELF`, a `-device loader` per slot, `extra`.
pub fn qemu_args_params(elf: &str, params: &[(usize, u64)], extra: &[&str]) -> Vec<String> {
    // Raw QEMU arguments only (no vcpulab --accel to translate), so the version does not
    // change the result.
    QemuGuestRun::new(elf)
        .params(params)
        .extra(extra)
        .args(QemuVersion::V10_0)
        .expect("no vcpulab options to translate")
}

/// Start `prog args…` (stdio to /dev/null), read its threads' names (`/proc/PID/task/*/comm`,
/// sorted) until `done` says they are complete (or `within` has passed: threads start one
/// after another, and a count alone can be reached before the one that matters exists), then
/// kill and reap it. For checks such as "QEMU runs one thread per vCPU".
pub fn thread_names(
    prog: &Path,
    args: &[String],
    done: impl Fn(&[String]) -> bool,
    within: Duration,
) -> io::Result<Vec<String>> {
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let dir = PathBuf::from(format!("/proc/{}/task", child.id()));
    let read = || -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| std::fs::read_to_string(e.path().join("comm")).ok())
                    .map(|s| s.trim().to_string())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    let t0 = std::time::Instant::now();
    let mut names = read();
    while !done(&names) && t0.elapsed() < within {
        std::thread::sleep(Duration::from_millis(10));
        names = read();
    }
    // The child is ours and not yet reaped, so its pid cannot have been reused.
    let _ = child.kill();
    let _ = child.wait();
    Ok(names)
}

/// Run QEMU on `guest`.
pub fn run_qemu(guest: &Guest, iters: u64, extra: &[&str], limit: Duration) -> io::Result<Outcome> {
    run_process(Path::new(QEMU), &qemu_args(guest, iters, extra), limit)
}

/// The QEMU version line.
pub fn qemu_version() -> String {
    qemu_version_of(QEMU)
}

/// The version line of the QEMU binary `bin` ("unknown" when it does not run).
pub fn qemu_version_of(bin: &str) -> String {
    vcpulab::qemu::version_string_of(Path::new(bin))
        .ok()
        .filter(|l| !l.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

/// Median of a sample (mean of the two middle values for even sizes).
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// Minimum and maximum of a sample.
pub fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
            (lo.min(x), hi.max(x))
        })
}

/// `/proc/loadavg`'s first three fields.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// UTC date as YYYY-MM-DD and time as ISO 8601, from the system clock.
pub fn utc_now() -> (String, String) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let date = format!("{y:04}-{m:02}-{d:02}");
    let ts = format!(
        "{date}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    (date, ts)
}

/// Host facts plus the things a reader of a result needs to judge it.
pub struct Host {
    /// vcpulab's host facts.
    pub facts: HostFacts,
    /// QEMU version line (if the bench uses QEMU).
    pub qemu: Option<String>,
    /// Load average when the bench started.
    pub loadavg_start: String,
    /// UTC date and timestamp when the bench started.
    pub date: String,
    /// ISO timestamp.
    pub timestamp: String,
}

impl Host {
    /// Collect and print the host facts.
    pub fn collect(with_qemu: bool) -> Host {
        let facts = HostFacts::collect();
        let (date, timestamp) = utc_now();
        let h = Host {
            facts,
            qemu: with_qemu.then(qemu_version),
            loadavg_start: loadavg(),
            date,
            timestamp,
        };
        println!(
            "host: {} cores, CPU \"{}\", kernel {}, hostname {}",
            h.facts.cores, h.facts.cpu_model, h.facts.kernel, h.facts.hostname
        );
        println!(
            "vcpulab {} (git {}, {} build); {}",
            h.facts.vcpulab_version,
            h.facts.git_commit,
            if h.facts.release_build {
                "release"
            } else {
                "DEBUG"
            },
            h.qemu.as_deref().unwrap_or("QEMU not used")
        );
        println!(
            "source tree: HEAD {} ({}); binary's build-time git_commit {}",
            git_head(),
            source_tree_state(),
            h.facts.git_commit
        );
        println!(
            "date {} ; load average at start {} ; the host is shared and noisy",
            h.timestamp, h.loadavg_start
        );
        h
    }

    /// JSON for the result file.
    pub fn json(&self) -> Value {
        json!({
            "facts": self.facts,
            "qemu_version": self.qemu,
            "loadavg_start": self.loadavg_start,
            "loadavg_end": loadavg(),
            "git_head": git_head(),
            "source_tree": source_tree_state(),
            "timestamp": self.timestamp,
        })
    }
}

/// `git rev-parse --short=12 HEAD` now (HostFacts' `git_commit` is fixed at build time by
/// build.rs and can lag behind new commits).
pub fn git_head() -> String {
    Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// `git status --porcelain` of the sources the binary is built from ("clean", "dirty: …"),
/// because `git_commit` alone does not say that uncommitted changes were measured.
pub fn source_tree_state() -> String {
    let out = Command::new("git")
        .args([
            "status",
            "--porcelain",
            "--",
            "src",
            "Cargo.toml",
            "Cargo.lock",
            "build.rs",
        ])
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let s = String::from_utf8_lossy(&o.stdout);
            let files: Vec<&str> = s.lines().map(|l| l.get(3..).unwrap_or(l)).collect();
            if files.is_empty() {
                "clean".into()
            } else {
                format!("dirty: {}", files.join(" "))
            }
        }
        _ => "unknown".into(),
    }
}

/// Say whether `threads` (of which `busy` compute) outnumber the host's cores.
pub fn oversubscription(threads: u64, busy: u64, cores: usize) -> String {
    let c = cores as u64;
    let verdict = if busy > c {
        "busy threads OUTNUMBER cores"
    } else if threads > c {
        "threads outnumber cores (busy ones do not)"
    } else {
        "threads do not outnumber cores"
    };
    format!("{threads} threads ({busy} busy) on {cores} cores: {verdict}")
}

/// Write `value` to `results/NAME-DATE.json` and return the path.
pub fn write_result(name: &str, date: &str, value: &Value) -> io::Result<PathBuf> {
    write_result_file(
        name,
        date,
        "json",
        (serde_json::to_string_pretty(value)? + "\n").as_bytes(),
    )
}

/// Write `data` to `results/NAME-DATE.EXT` and return the path.
pub fn write_result_file(name: &str, date: &str, ext: &str, data: &[u8]) -> io::Result<PathBuf> {
    let dir = repo_root().join("results");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}-{date}.{ext}"));
    std::fs::write(&path, data)?;
    Ok(path)
}

/// Environment override of a numeric knob: `VCPULAB_BENCH_<NAME>`.
pub fn env_knob<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(format!("VCPULAB_BENCH_{name}"))
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Round up to two significant digits (so iteration counts read well).
pub fn round_up_2sig(x: f64) -> u64 {
    if x <= 1.0 {
        return 1;
    }
    let mag = 10f64.powi(x.log10().floor() as i32 - 1);
    ((x / mag).ceil() * mag) as u64
}

/// ns → seconds.
pub fn secs(ns: f64) -> f64 {
    ns / 1e9
}

/// A short MiB string.
pub fn mib(bytes: f64) -> String {
    format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
}

/// Which emulator a variant runs, with its extra arguments.
#[derive(Clone, Debug)]
pub enum Emu {
    /// `vcpulab run … EXTRA`.
    Vcpulab(Vec<&'static str>),
    /// `qemu-system-riscv64 … EXTRA`.
    Qemu(Vec<&'static str>),
}

/// One side of an A/B comparison.
#[derive(Clone, Debug)]
pub struct Variant {
    /// Label for tables and JSON.
    pub label: &'static str,
    /// What to run.
    pub emu: Emu,
}

impl Variant {
    /// The command line (without the program name) for the docs/JSON.
    pub fn describe(&self, guest: &Guest, iters: u64) -> String {
        match &self.emu {
            Emu::Vcpulab(extra) => format!(
                "vcpulab run --kernel {} --param 0={iters} --stats FILE {}",
                guest.rel_path,
                extra.join(" ")
            )
            .trim_end()
            .to_string(),
            Emu::Qemu(extra) => {
                let a = qemu_args_params(guest.rel_path, &[(0, iters)], extra);
                format!("{QEMU} {}", a.join(" "))
            }
        }
    }
}

/// One run of a variant.
#[derive(Clone, Debug)]
pub struct Sample {
    /// The process as seen from outside.
    pub outcome: Outcome,
    /// vcpulab's stats, if this is a vcpulab run.
    pub stats: Option<VcpulabRun>,
}

/// Run a variant once.
pub fn run_variant(v: &Variant, guest: &Guest, iters: u64, limit: Duration) -> Sample {
    match &v.emu {
        Emu::Vcpulab(extra) => {
            let r = run_vcpulab(guest, iters, extra, limit).expect("spawn vcpulab");
            Sample {
                outcome: r.outcome.clone(),
                stats: Some(r),
            }
        }
        Emu::Qemu(extra) => Sample {
            outcome: run_qemu(guest, iters, extra, limit).expect("spawn qemu-system-riscv64"),
            stats: None,
        },
    }
}

/// Per-variant results of an alternating series.
#[derive(Clone, Debug)]
pub struct VariantResult {
    /// The variant.
    pub variant: Variant,
    /// Wall times of the start-up runs (iters = 1), ns.
    pub startup_walls: Vec<f64>,
    /// Wall times of the measured runs, ns.
    pub walls: Vec<f64>,
    /// Guest MIPS per measured run: instructions / (wall − median start-up).
    pub mips: Vec<f64>,
    /// Max RSS per measured run (wait4), bytes.
    pub max_rss: Vec<f64>,
    /// vcpulab's own peak_rss_bytes per run (vcpulab only).
    pub stats_peak_rss: Vec<f64>,
    /// vcpulab's own mips per run (vcpulab only; its internal wall clock, no start-up).
    pub self_mips: Vec<f64>,
    /// Largest thread count seen.
    pub max_threads: u64,
    /// All runs exited 0.
    pub all_ok: bool,
    /// Guest output of the first measured run.
    pub stdout: String,
}

impl VariantResult {
    /// Median start-up wall time, ns.
    pub fn startup(&self) -> f64 {
        median(&self.startup_walls)
    }
    /// Median wall time, ns.
    pub fn wall(&self) -> f64 {
        median(&self.walls)
    }
    /// Median wall − median start-up, ns.
    pub fn net(&self) -> f64 {
        self.wall() - self.startup()
    }
    /// Median MIPS.
    pub fn mips_median(&self) -> f64 {
        median(&self.mips)
    }
    /// JSON for the result file.
    pub fn json(&self, guest: &Guest, iters: u64) -> Value {
        let (lo, hi) = min_max(&self.mips);
        json!({
            "label": self.variant.label,
            "command": self.variant.describe(guest, iters),
            "startup_wall_ns": self.startup_walls,
            "startup_wall_ns_median": self.startup(),
            "wall_ns": self.walls,
            "wall_ns_median": self.wall(),
            "net_wall_ns_median": self.net(),
            "mips": self.mips,
            "mips_median": self.mips_median(),
            "mips_min": lo,
            "mips_max": hi,
            "max_rss_bytes_wait4": self.max_rss,
            "peak_rss_bytes_stats": self.stats_peak_rss,
            "self_reported_mips": self.self_mips,
            "max_threads": self.max_threads,
            "all_runs_exit_0": self.all_ok,
            "guest_stdout": self.stdout,
        })
    }
}

/// An alternating (A/B/A/B…) series of two or more variants on one guest.
#[derive(Clone, Debug)]
pub struct Series {
    /// The guest.
    pub guest: Guest,
    /// Iterations per measured run.
    pub iters: u64,
    /// Guest instructions per measured run (from vcpulab's stats).
    pub instructions: u64,
    /// Guest instructions of a start-up run (iters = 1).
    pub startup_instructions: u64,
    /// Per variant.
    pub variants: Vec<VariantResult>,
    /// Whether every variant printed the same guest output.
    pub outputs_agree: bool,
    /// Whether every vcpulab run reported the same instruction count.
    pub instructions_agree: bool,
    /// Index of the variant the iteration count was calibrated on.
    pub calib_variant: usize,
}

impl Series {
    /// Ratio of per-rep MIPS, variant `b` over variant `a`, one per alternation pair.
    pub fn pair_ratios(&self, a: usize, b: usize) -> Vec<f64> {
        self.variants[a]
            .mips
            .iter()
            .zip(&self.variants[b].mips)
            .map(|(x, y)| y / x)
            .collect()
    }
    /// JSON for the result file.
    pub fn json(&self) -> Value {
        json!({
            "guest": self.guest.name,
            "elf": self.guest.rel_path,
            "iters": self.iters,
            "instructions": self.instructions,
            "startup_instructions": self.startup_instructions,
            "instructions_agree": self.instructions_agree,
            "calibrated_on": self.variants[self.calib_variant].variant.label,
            "outputs_agree": self.outputs_agree,
            "variants": self.variants.iter().map(|v| v.json(&self.guest, self.iters)).collect::<Vec<_>>(),
        })
    }
}

/// Run an alternating series:
/// 1. start-up: every variant with iters = 1, `reps` rounds in alternation;
/// 2. calibration: variant `calib` once at `guest.calib_iters`, scaled so that its run takes
///    `target_s` seconds after start-up subtraction (or `iters_override` if set);
/// 3. measurement: `reps` rounds of all variants in alternation (A/B/A/B…).
pub fn alternating_series(
    guest: &Guest,
    variants: &[Variant],
    reps: usize,
    calib: usize,
    target_s: f64,
    iters_override: Option<u64>,
) -> Series {
    let limit = Duration::from_secs(env_knob("TIME_LIMIT_S", 120));
    let mut res: Vec<VariantResult> = variants
        .iter()
        .map(|v| VariantResult {
            variant: v.clone(),
            startup_walls: vec![],
            walls: vec![],
            mips: vec![],
            max_rss: vec![],
            stats_peak_rss: vec![],
            self_mips: vec![],
            max_threads: 0,
            all_ok: true,
            stdout: String::new(),
        })
        .collect();
    let mut startup_instructions = 0;
    // 1. start-up
    for _ in 0..reps {
        for (v, r) in variants.iter().zip(res.iter_mut()) {
            let s = run_variant(v, guest, 1, limit);
            r.startup_walls.push(s.outcome.wall_ns as f64);
            r.all_ok &= s.outcome.success;
            if let Some(st) = &s.stats {
                startup_instructions = st.instructions();
            }
        }
    }
    for r in &res {
        println!(
            "  start-up (iters=1) {:<36} median {:>8.1} ms",
            r.variant.label,
            r.startup() / 1e6
        );
    }
    // 2. calibration
    let iters = match iters_override {
        Some(n) => n,
        None => {
            // The faster of two runs, so that noise during calibration cannot shrink the
            // measured runs below the target.
            let w = (0..2)
                .map(|_| {
                    run_variant(&variants[calib], guest, guest.calib_iters, limit)
                        .outcome
                        .wall_ns
                })
                .min()
                .unwrap() as f64;
            let net = (w - res[calib].startup()).max(1e6);
            let n = round_up_2sig(guest.calib_iters as f64 * target_s * 1e9 / net);
            println!(
                "  calibration: {} took {:.3} s net (faster of 2) for {} iters -> {} iters for ~{target_s} s",
                variants[calib].label,
                net / 1e9,
                guest.calib_iters,
                n
            );
            n
        }
    };
    // 3. measurement
    let mut instr_seen: Vec<u64> = vec![];
    let mut samples: Vec<Vec<Sample>> = vec![vec![]; variants.len()];
    for rep in 0..reps {
        let mut line = format!("  rep {}/{}:", rep + 1, reps);
        for (i, v) in variants.iter().enumerate() {
            let s = run_variant(v, guest, iters, limit);
            line += &format!("  {} {:.3} s", v.label, s.outcome.wall_ns as f64 / 1e9);
            if let Some(st) = &s.stats {
                instr_seen.push(st.instructions());
            }
            samples[i].push(s);
        }
        println!("{line}");
    }
    let instructions = instr_seen.first().copied().unwrap_or(0);
    let instructions_agree = instr_seen.iter().all(|&n| n == instructions);
    for (r, ss) in res.iter_mut().zip(&samples) {
        let startup = r.startup();
        for s in ss {
            let w = s.outcome.wall_ns as f64;
            r.walls.push(w);
            r.mips.push(instructions as f64 / ((w - startup) / 1e3));
            r.max_rss.push(s.outcome.max_rss_bytes as f64);
            r.max_threads = r.max_threads.max(s.outcome.max_threads);
            r.all_ok &= s.outcome.success;
            if let Some(st) = &s.stats {
                r.stats_peak_rss.push(st.peak_rss() as f64);
                r.self_mips.push(st.self_mips());
            }
        }
        r.stdout = ss
            .first()
            .map(|s| s.outcome.stdout.clone())
            .unwrap_or_default();
    }
    let outputs_agree = samples
        .iter()
        .flatten()
        .all(|s| s.outcome.stdout == samples[0][0].outcome.stdout);
    Series {
        guest: guest.clone(),
        iters,
        instructions,
        startup_instructions,
        variants: res,
        outputs_agree,
        instructions_agree,
        calib_variant: calib,
    }
}

/// Print the per-variant table of a series.
pub fn print_series(s: &Series) {
    println!(
        "\nguest {} ({}), {} iters, {} guest instructions per run (from vcpulab --stats{}), start-up run {} instructions",
        s.guest.name,
        s.guest.rel_path,
        s.iters,
        s.instructions,
        if s.instructions_agree {
            ", identical in every run"
        } else {
            ", DIFFERING between runs!"
        },
        s.startup_instructions
    );
    println!(
        "{:<36} {:>10} {:>10} {:>10} {:>10} {:>17} {:>11} {:>8}",
        "variant", "startup", "wall", "net", "MIPS", "MIPS min..max", "max RSS", "threads"
    );
    for r in &s.variants {
        let (lo, hi) = min_max(&r.mips);
        println!(
            "{:<36} {:>8.1}ms {:>9.3}s {:>9.3}s {:>10.1} {:>8.1}..{:<8.1} {:>11} {:>8}",
            r.variant.label,
            r.startup() / 1e6,
            r.wall() / 1e9,
            r.net() / 1e9,
            r.mips_median(),
            lo,
            hi,
            mib(median(&r.max_rss)),
            r.max_threads
        );
    }
    println!(
        "(medians over {} alternating runs each; net = median wall − median start-up wall of an iters=1 run)",
        s.variants[0].walls.len()
    );
    if !s.outputs_agree {
        println!("WARNING: guest output differs between runs/emulators:");
        for r in &s.variants {
            println!("  {}: {:?}", r.variant.label, r.stdout.trim());
        }
    }
    {
        // The calibrated variant should take >= 1 s per run.
        let q = &s.variants[s.calib_variant];
        let (lo, _) = min_max(&q.walls);
        if lo < 1e9 {
            println!(
                "note: the fastest {} run took {:.3} s (< 1 s); raise VCPULAB_BENCH_TARGET_S",
                q.variant.label,
                lo / 1e9
            );
        }
    }
    for r in &s.variants {
        if !r.all_ok {
            println!("WARNING: some {} runs did not exit 0", r.variant.label);
        }
    }
}
