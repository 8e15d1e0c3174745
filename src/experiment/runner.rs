//! `vcpulab experiment`: runs a plan, one child process per run, each with
//! its own time limit, so that a failure or a hang is recorded and the
//! sweep goes on. A terminating signal ends the sweep: the run it
//! interrupted counts as missing (it runs again on resume), everything
//! before it is stored.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, select};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::backend::Backend;
use super::plan::{Configuration, Plan, PlannedRun, fnv_hex, fnv1a};
use super::record::{RunHost, RunRecord, Status};
use super::report::{ReportSpec, write_report};
use super::spec::Experiment;
use super::store::{ResultDir, StoreError, is_final};
use crate::host::{HostFacts, TermSignal};
use crate::qemu::Qemu;

/// How `vcpulab experiment` was asked to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// The result directory.
    pub out: PathBuf,
    /// `--reps`: overrides the file's `reps`.
    pub reps: Option<u32>,
    /// `--filter`.
    pub filter: Vec<(String, String)>,
    /// `--shard K/N`.
    pub shard: Option<(u32, u32)>,
    /// The command line, for the report.
    pub command: String,
    /// `--dry-run`: check the plan and list it, run nothing.
    pub dry_run: bool,
}

/// How a sweep ended.
#[derive(Debug)]
pub enum SweepEnd {
    /// Every planned run is stored (some may have failed: see the counts).
    Complete {
        /// Runs done, failed, timed out, skipped, in this invocation.
        counts: BTreeMap<&'static str, usize>,
        /// The summary written.
        summary: PathBuf,
    },
    /// A terminating signal ended it; the stored runs stay.
    Interrupted(TermSignal),
}

/// Why a sweep could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// Bad input (exit status 2).
    #[error("{0}")]
    Input(String),
    /// The result directory or report (exit status 1).
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The report.
    #[error("{0}")]
    Report(String),
    /// A host resource.
    #[error("{0}")]
    Host(String),
}

/// Host spinner threads (the `load` axis): each spins until dropped.
struct Spinners {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Spinners {
    fn start(n: u32) -> Spinners {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|i| {
                let stop = stop.clone();
                std::thread::Builder::new()
                    .name(format!("load-{i}"))
                    .spawn(move || {
                        let mut x = 1u64;
                        // Relaxed: the flag only has to be seen eventually;
                        // it orders nothing else. It is read, never written,
                        // while the spinners run, so it adds no contention.
                        while !stop.load(Ordering::Relaxed) {
                            for _ in 0..4096 {
                                x = std::hint::black_box(
                                    x.wrapping_mul(6364136223846793005).wrapping_add(1),
                                );
                            }
                        }
                    })
                    .expect("spawn a load thread")
            })
            .collect();
        Spinners { stop, threads }
    }
}

impl Drop for Spinners {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// What a child did.
struct ChildEnd {
    status: std::process::ExitStatus,
    wall: Duration,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    timed_out: bool,
}

/// Runs `cmd` with a wall-time limit, watching `signals`. `Err(sig)` when a
/// terminating signal came first (the child is then ended).
fn run_child(
    mut cmd: Command,
    limit: Duration,
    signals: &Receiver<TermSignal>,
) -> std::io::Result<Result<ChildEnd, TermSignal>> {
    use std::os::unix::process::CommandExt;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: between fork and exec only async-signal-safe calls are
    // allowed; pthread_sigmask is one, and the closure allocates nothing.
    // The runner blocks the terminating signals (it reads them from a
    // signalfd); the child must get them as a normal process does.
    unsafe {
        cmd.pre_exec(|| {
            let mut mask = nix::sys::signal::SigSet::empty();
            for s in crate::host::TERM_SIGNALS {
                mask.add(s);
            }
            mask.thread_unblock().map_err(std::io::Error::from)
        });
    }
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = r.read_to_end(&mut v);
            v
        })
    };
    let out = reader(Box::new(child.stdout.take().expect("piped")));
    let err = reader(Box::new(child.stderr.take().expect("piped")));
    let (tx, rx) = crossbeam_channel::bounded(1);
    let waiter = std::thread::spawn(move || {
        let st = child.wait();
        let _ = tx.send((st, Instant::now()));
    });
    let deadline = crossbeam_channel::at(start + limit);
    let kill = |sig| {
        let _ = nix::sys::signal::kill(pid, sig);
    };
    let mut timed_out = false;
    let mut interrupted = None;
    let (status, end) = loop {
        select! {
            recv(rx) -> r => {
                let (st, at) = r.expect("the waiter sends once");
                break (st?, at);
            }
            recv(signals) -> s => {
                if let Ok(s) = s {
                    if interrupted.is_none() {
                        kill(nix::sys::signal::Signal::SIGTERM);
                        interrupted = Some(s);
                    }
                }
            }
            recv(deadline) -> _ => {
                timed_out = true;
                kill(nix::sys::signal::Signal::SIGKILL);
            }
        }
    };
    let _ = waiter.join();
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    if let Some(s) = interrupted {
        return Ok(Err(s));
    }
    Ok(Ok(ChildEnd {
        status,
        wall: end - start,
        stdout,
        stderr,
        timed_out,
    }))
}

/// The sum of the decimal numbers that follow each `token` in `out`.
pub fn work_of(out: &str, token: &str) -> Option<u64> {
    let mut sum = None;
    let mut rest = out;
    while let Some(i) = rest.find(token) {
        rest = &rest[i + token.len()..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(n) = digits.parse::<u64>() {
            sum = Some(sum.unwrap_or(0u64).saturating_add(n));
        }
    }
    sum
}

/// Every numeric leaf of a JSON value by its dotted path (`config`, `host`,
/// `argv` and `bql.sites` left out).
pub fn flatten_metrics(v: &serde_json::Value, prefix: &str, out: &mut BTreeMap<String, f64>) {
    match v {
        serde_json::Value::Number(n) => {
            if let Some(f) = n.as_f64() {
                out.insert(prefix.to_string(), f);
            }
        }
        serde_json::Value::Bool(b) => {
            out.insert(prefix.to_string(), if *b { 1.0 } else { 0.0 });
        }
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                // The configuration, the host and the per-site BQL table
                // (kept whole in the record's `report`) are not figures.
                if (prefix.is_empty()
                    && matches!(k.as_str(), "config" | "host" | "argv" | "schema"))
                    || (prefix == "bql" && k == "sites")
                {
                    continue;
                }
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_metrics(x, &p, out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                flatten_metrics(x, &format!("{prefix}.{i}"), out);
            }
        }
        _ => {}
    }
}

/// The spread of per-vCPU progress: (max − min) / mean of the instructions
/// of each vCPU (none for one vCPU).
fn vcpu_spread(report: &serde_json::Value) -> Option<f64> {
    let v: Vec<f64> = report["vcpus"]
        .as_array()?
        .iter()
        .filter_map(|c| c["instructions"].as_f64())
        .collect();
    if v.len() < 2 {
        return None;
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let max = v.iter().cloned().fold(f64::MIN, f64::max);
    let min = v.iter().cloned().fold(f64::MAX, f64::min);
    (mean > 0.0).then(|| (max - min) / mean)
}

/// The report spec of an experiment.
pub fn report_spec(exp: &Experiment, command: &str) -> ReportSpec {
    ReportSpec {
        name: exp.name.clone(),
        title: exp.title.clone(),
        description: exp.description.clone(),
        command: command.to_string(),
        axes: exp.axes.iter().map(|a| a.name.clone()).collect(),
        metrics: exp.metrics.clone(),
        plots: exp.plots.clone(),
        not_for_qemu: exp.axes_not_for_qemu(),
    }
}

/// The runner's view of the host.
fn run_host(h: &HostFacts) -> RunHost {
    RunHost {
        hostname: h.hostname.clone(),
        cores: h.cores,
        cpu_model: h.cpu_model.clone(),
        kernel: h.kernel.clone(),
    }
}

/// One sweep in progress.
struct Sweep<'a> {
    exp: &'a Experiment,
    dir: ResultDir,
    host: HostFacts,
    limit: Duration,
    qemus: BTreeMap<&'static str, Result<Qemu, String>>,
    exe: PathBuf,
}

impl Sweep<'_> {
    fn key(&self, c: &Configuration, rep: u32) -> String {
        fnv_hex(&[
            &c.id,
            &rep.to_string(),
            &self.host.git_commit,
            &self.host.hostname,
        ])
    }

    /// The command of a run (`hist` and `stats`: vcpulab's report paths).
    fn command(
        &self,
        c: &Configuration,
        stats: Option<&Path>,
        hist: Option<&Path>,
    ) -> Result<Command, String> {
        match c.backend {
            Backend::Vcpulab => {
                use std::os::unix::process::CommandExt;
                let mut cmd = Command::new(&self.exe);
                // The child's argv[0] (in its run report) and the recorded
                // command say `vcpulab`, not where this build happens to be.
                cmd.arg0("vcpulab").arg("run").args(&c.args);
                // vcpulab ends itself at the limit, with its report; the
                // runner's own limit is a few seconds later.
                cmd.arg("--timeout")
                    .arg(format!("{}", self.limit.as_secs_f64()));
                if let Some(s) = stats {
                    cmd.arg("--stats").arg(s);
                }
                if let Some(h) = hist {
                    cmd.arg("--hist-log").arg(h);
                }
                Ok(cmd)
            }
            Backend::Qemu(v) => match &self.qemus[v.name()] {
                Ok(q) => {
                    let mut cmd = Command::new(&q.bin);
                    cmd.args(&c.args);
                    Ok(cmd)
                }
                Err(why) => Err(why.clone()),
            },
        }
    }

    /// Runs one planned run; `Err` when a signal interrupted it.
    fn run_one(
        &self,
        c: &Configuration,
        rep: u32,
        signals: &Receiver<TermSignal>,
    ) -> Result<Result<RunRecord, TermSignal>, SweepError> {
        let key = self.key(c, rep);
        let tmp_stats = self
            .dir
            .path
            .join("runs")
            .join(format!(".{key}.stats.json"));
        let hist_rel = ResultDir::hist_log_rel(&key);
        let hist = self.dir.path.join(&hist_rel);
        let vcpulab = c.backend == Backend::Vcpulab;
        let started = crate::host::rfc3339_utc(SystemTime::now());
        let mut record = RunRecord {
            experiment: self.exp.name.clone(),
            key: key.clone(),
            config_id: c.id.clone(),
            config: c.labels.clone(),
            backend: c.backend.name().to_string(),
            rep,
            status: Status::Skipped,
            reason: None,
            exit_code: None,
            wall_ns: 0,
            work: None,
            throughput: None,
            output_hash: String::new(),
            output_head: String::new(),
            load: c.load,
            commit: self.host.git_commit.clone(),
            qemu_version: match c.backend {
                Backend::Qemu(v) => self.qemus[v.name()]
                    .as_ref()
                    .ok()
                    .map(|q| q.version_string.clone()),
                Backend::Vcpulab => None,
            },
            host: run_host(&self.host),
            started_at: started,
            command: Vec::new(),
            hist_log: None,
            metrics: BTreeMap::new(),
            report: None,
        };
        let cmd = match self.command(
            c,
            vcpulab.then_some(tmp_stats.as_path()),
            vcpulab.then_some(hist.as_path()),
        ) {
            Ok(cmd) => cmd,
            Err(why) => {
                record.reason = Some(why);
                return Ok(Ok(record));
            }
        };
        let program = match c.backend {
            Backend::Vcpulab => "vcpulab".into(),
            Backend::Qemu(_) => cmd.get_program().to_string_lossy().into_owned(),
        };
        record.command = std::iter::once(program)
            .chain(cmd.get_args().map(|a| a.to_string_lossy().into_owned()))
            .collect();
        let limit = if vcpulab {
            self.limit + Duration::from_secs(10)
        } else {
            self.limit
        };
        let spinners = Spinners::start(c.load);
        let end = run_child(cmd, limit, signals)
            .map_err(|e| SweepError::Host(format!("cannot start {}: {e}", record.command[0])))?;
        drop(spinners);
        let end = match end {
            Ok(e) => e,
            Err(sig) => {
                let _ = std::fs::remove_file(&tmp_stats);
                let _ = std::fs::remove_file(&hist);
                return Ok(Err(sig));
            }
        };
        let out = String::from_utf8_lossy(&end.stdout).into_owned();
        record.wall_ns = end.wall.as_nanos() as u64;
        record.output_hash = format!("{:016x}", fnv1a(end.stdout.iter().copied()));
        record.output_head = out.chars().take(2048).collect();
        let code = end.status.code();
        record.exit_code = code;
        let last_err = String::from_utf8_lossy(&end.stderr)
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("")
            .to_string();
        record.status = if end.timed_out || (vcpulab && code == Some(124)) {
            record.reason = Some(format!("time limit of {} s", self.limit.as_secs_f64()));
            Status::Timeout
        } else if code == Some(0) {
            Status::Done
        } else {
            record.reason = Some(match code {
                Some(n) => format!("exit status {n}: {last_err}"),
                None => {
                    use std::os::unix::process::ExitStatusExt;
                    let sig = end.status.signal().unwrap_or(0);
                    format!("killed by signal {sig}: {last_err}")
                }
            });
            Status::Failed
        };
        if vcpulab {
            if let Ok(bytes) = std::fs::read(&tmp_stats) {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                    flatten_metrics(&v, "", &mut record.metrics);
                    if let Some(s) = vcpu_spread(&v) {
                        record.metrics.insert("vcpu_spread".into(), s);
                    }
                    if let Some(c) = v["icount"]["shift_changes"].as_array() {
                        record
                            .metrics
                            .insert("shift_changes".into(), c.len().saturating_sub(1) as f64);
                    }
                    record.report = Some(v);
                }
            }
            let _ = std::fs::remove_file(&tmp_stats);
            if hist.is_file() {
                record.hist_log = Some(hist_rel);
            }
        }
        let wall_s = end.wall.as_secs_f64();
        record.metrics.insert("wall_s".into(), wall_s);
        record
            .metrics
            .insert("threads".into(), f64::from(c.threads));
        if let Some(token) = &c.work {
            record.work = work_of(&out, token);
        }
        if let Some(w) = record.work {
            let t = w as f64 / wall_s.max(1e-9);
            record.throughput = Some(t);
            record.metrics.insert("work".into(), w as f64);
            record.metrics.insert("throughput".into(), t);
        }
        Ok(Ok(record))
    }
}

/// Runs `exp` as `opts` say. Bad input (the plan, `--filter`) is refused
/// before anything runs.
pub fn run_experiment(
    exp: &Experiment,
    opts: &RunOptions,
    signals: &Receiver<TermSignal>,
) -> Result<SweepEnd, SweepError> {
    let reps = opts.reps.unwrap_or(exp.reps);
    let mut plan = Plan::new(exp, reps).map_err(|e| SweepError::Input(e.to_string()))?;
    if !opts.filter.is_empty() {
        plan.filter(exp, &opts.filter).map_err(SweepError::Input)?;
    }
    if let Some((k, n)) = opts.shard {
        plan.shard(k, n);
    }
    if opts.dry_run {
        let mut per: BTreeMap<usize, u32> = BTreeMap::new();
        for r in &plan.runs {
            *per.entry(r.config).or_default() += 1;
        }
        for (i, n) in &per {
            let c = &plan.configs[*i];
            println!(
                "{} x{n}: {} {}",
                describe(c),
                c.backend.name(),
                c.args.join(" ")
            );
        }
        println!("{} configurations, {} runs", per.len(), plan.runs.len());
        return Ok(SweepEnd::Complete {
            counts: BTreeMap::new(),
            summary: opts.out.join("summary.md"),
        });
    }
    if let Some(c) = plan.configs.iter().find(|c| !c.guest.is_file()) {
        return Err(SweepError::Input(format!(
            "{}: guest '{}' not found (paths are relative to the directory the command runs in)",
            exp.file.display(),
            c.guest.display()
        )));
    }
    let dir = ResultDir::create(&opts.out)?;
    dir.write_experiment(&exp.text)?;
    let host = HostFacts::collect();
    let mut qemus = BTreeMap::new();
    for c in &plan.configs {
        if let Backend::Qemu(v) = c.backend {
            qemus.entry(v.name()).or_insert_with(|| {
                v.resolve()
                    .map_err(|e| format!("{} not available: {e}", v.name()))
            });
        }
    }
    let sweep = Sweep {
        exp,
        dir: dir.clone(),
        host,
        limit: Duration::from_secs_f64(exp.time_limit),
        qemus,
        exe: std::env::current_exe()
            .map_err(|e| SweepError::Host(format!("cannot find vcpulab's own binary: {e}")))?,
    };
    let mut stored = dir.load()?;
    let other_commits = stored
        .values()
        .filter(|r| r.commit != sweep.host.git_commit || r.host.hostname != sweep.host.hostname)
        .count();
    if other_commits > 0 {
        eprintln!(
            "vcpulab: {} holds {other_commits} runs from another commit or host; they stay and appear in the report (use another --out to keep sweeps apart)",
            dir.path.display()
        );
    }
    let todo: Vec<PlannedRun> = plan
        .runs
        .iter()
        .filter(|r| {
            let k = sweep.key(&plan.configs[r.config], r.rep);
            !stored.get(&k).is_some_and(is_final)
        })
        .copied()
        .collect();
    let have = plan.runs.len() - todo.len();
    if have > 0 {
        eprintln!(
            "vcpulab: resuming: {have} of {} runs are stored in {}",
            plan.runs.len(),
            dir.path.display()
        );
    }
    let bar = progress_bar(todo.len() as u64);
    let spec = report_spec(exp, &opts.command);
    let finish = |stored: &BTreeMap<String, RunRecord>| -> Result<PathBuf, SweepError> {
        dir.write_jsonl(stored.values())?;
        let records: Vec<RunRecord> = stored.values().cloned().collect();
        let files = write_report(&dir.path, &spec, &records)
            .map_err(|e| SweepError::Report(e.to_string()))?;
        Ok(files.summary)
    };

    // Warm-up: unrecorded runs of each backend's first configuration to run.
    let mut warmed = Vec::new();
    for r in &todo {
        let c = &plan.configs[r.config];
        if warmed.contains(&c.backend) {
            continue;
        }
        warmed.push(c.backend);
        for _ in 0..exp.warmup {
            bar.set_message(format!("warm-up: {}", describe(c)));
            match sweep.run_one(c, u32::MAX, signals)? {
                Err(sig) => {
                    bar.abandon();
                    finish(&stored)?;
                    return Ok(SweepEnd::Interrupted(sig));
                }
                Ok(rec) => {
                    if let Some(h) = rec.hist_log {
                        let _ = std::fs::remove_file(dir.path.join(h));
                    }
                }
            }
        }
    }
    let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
    for r in &todo {
        let c = &plan.configs[r.config];
        bar.set_message(format!("{} #{}", describe(c), r.rep));
        match sweep.run_one(c, r.rep, signals)? {
            Err(sig) => {
                bar.abandon();
                eprintln!(
                    "vcpulab: {}; the interrupted run counts as missing",
                    sig.message()
                );
                finish(&stored)?;
                return Ok(SweepEnd::Interrupted(sig));
            }
            Ok(rec) => {
                dir.save(&rec)?;
                *counts.entry(rec.status.as_str()).or_default() += 1;
                let line = format!(
                    "{} #{}: {}{}",
                    describe(c),
                    r.rep,
                    rec.status.as_str(),
                    rec.reason
                        .as_deref()
                        .map(|x| format!(" ({x})"))
                        .unwrap_or_default()
                );
                if rec.status != Status::Done || bar.is_hidden() {
                    bar.println(line.clone());
                    if bar.is_hidden() {
                        eprintln!("[{}/{}] {line}", bar.position() + 1, todo.len());
                    }
                }
                stored.insert(rec.key.clone(), rec);
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();
    // One traced run per sweep: not in every shard, and only of a
    // configuration the (filtered) sweep ran.
    if let Some(t) = &exp.trace
        && opts.shard.is_none_or(|(k, _)| k == 1)
    {
        trace_run(&sweep, &plan, t, signals)?;
    }
    let summary = finish(&stored)?;
    Ok(SweepEnd::Complete { counts, summary })
}

/// The one traced run of the configuration `labels` selects (the first
/// vcpulab configuration matching them), written to DIR/trace.json.
fn trace_run(
    sweep: &Sweep<'_>,
    plan: &Plan,
    labels: &BTreeMap<String, String>,
    signals: &Receiver<TermSignal>,
) -> Result<(), SweepError> {
    let Some(c) = plan.configs.iter().enumerate().find_map(|(i, c)| {
        (c.backend == Backend::Vcpulab
            && labels.iter().all(|(k, v)| c.labels.get(k) == Some(v))
            && plan.runs.iter().any(|r| r.config == i))
        .then_some(c)
    }) else {
        eprintln!(
            "vcpulab: [trace]: no vcpulab configuration of this sweep matches; no trace written"
        );
        return Ok(());
    };
    let path = sweep.dir.path.join("trace.json");
    let mut cmd = sweep.command(c, None, None).map_err(SweepError::Host)?;
    cmd.arg("--trace")
        .arg(&path)
        .arg("--trace-events")
        .arg(sweep.exp.trace_events.to_string());
    eprintln!("vcpulab: tracing one run of {}", describe(c));
    match run_child(cmd, sweep.limit + Duration::from_secs(10), signals)
        .map_err(|e| SweepError::Host(format!("cannot start the traced run: {e}")))?
    {
        Ok(end) if end.status.success() => Ok(()),
        Ok(end) => {
            eprintln!(
                "vcpulab: the traced run failed: {}",
                String::from_utf8_lossy(&end.stderr)
                    .lines()
                    .last()
                    .unwrap_or("")
            );
            Ok(())
        }
        Err(_) => Ok(()),
    }
}

/// A configuration in a line: its axis labels.
fn describe(c: &Configuration) -> String {
    super::plan::describe(&c.labels, " ")
}

/// The progress bar, with an ETA, on stderr (hidden when stderr is not a
/// terminal; then a line per run says the same).
fn progress_bar(len: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} runs, {elapsed} elapsed, ETA {eta} {wide_msg}",
        )
        .expect("a valid template"),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_sums_the_numbers_after_the_token() {
        let out = "hart 0 iterations=100 alu=800 ok\nhart 1 iterations=250 ok\n";
        assert_eq!(work_of(out, "iterations="), Some(350));
        assert_eq!(work_of(out, "nothing="), None);
        assert_eq!(work_of("iters=x", "iters="), None);
    }

    #[test]
    fn metrics_are_the_numeric_leaves() {
        let v = serde_json::json!({"a": {"b": 1, "c": [2, {"d": 3.5}]}, "host": {"cores": 2}, "s": "x", "f": true});
        let mut m = BTreeMap::new();
        flatten_metrics(&v, "", &mut m);
        assert_eq!(m.get("a.b"), Some(&1.0));
        assert_eq!(m.get("a.c.0"), Some(&2.0));
        assert_eq!(m.get("a.c.1.d"), Some(&3.5));
        assert_eq!(m.get("f"), Some(&1.0));
        assert!(!m.contains_key("host.cores"));
        assert!(!m.contains_key("s"));
    }

    #[test]
    fn spread_of_vcpu_progress() {
        let v = serde_json::json!({"vcpus": [{"instructions": 100}, {"instructions": 300}]});
        assert_eq!(vcpu_spread(&v), Some(1.0));
        assert_eq!(
            vcpu_spread(&serde_json::json!({"vcpus": [{"instructions": 5}]})),
            None
        );
    }
}
