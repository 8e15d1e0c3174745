//! The `vcpulab experiment` and `vcpulab report` commands: their options
//! checked, the sweep or the report run, and the exit status (0 done, 1 host
//! error, 2 bad input, 128+N ended by signal N).

use std::path::PathBuf;
use std::process::ExitCode;

use super::plan::{parse_filter, parse_shard};
use super::record::RunRecord;
use super::report::write_report;
use super::runner::{RunOptions, SweepEnd, SweepError, report_spec, run_experiment};
use super::spec::Experiment;
use super::store::ResultDir;

fn bad(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("vcpulab: {msg}");
    ExitCode::from(2)
}

fn host_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("vcpulab: host error: {msg}");
    ExitCode::from(1)
}

/// `vcpulab experiment FILE [--out DIR] [--reps N] [--filter ...] [--shard K/N]`.
pub fn experiment(
    file: PathBuf,
    out: Option<PathBuf>,
    reps: Option<String>,
    filter: Option<String>,
    shard: Option<String>,
    dry_run: bool,
) -> ExitCode {
    // Before any thread exists: every thread inherits the blocked mask and
    // the signals are read from a signalfd (the children get them unblocked).
    let signals = match crate::host::terminating_signals() {
        Ok(s) => s,
        Err(e) => return host_error(format!("cannot set up signal handling: {e}")),
    };
    if !file.is_file() {
        return bad(format!(
            "experiment file '{}' not found{}",
            file.display(),
            if file.is_relative() {
                " (paths are relative to the directory the command runs in: the repository's root for experiments/)"
            } else {
                ""
            }
        ));
    }
    let exp = match Experiment::load(&file) {
        Ok(e) => e,
        Err(e) => return bad(e),
    };
    let reps = match reps.as_deref().map(str::parse::<u32>) {
        None => None,
        Some(Ok(n)) if (1..=100_000).contains(&n) => Some(n),
        Some(_) => {
            return bad(format!(
                "invalid --reps '{}': expected a number of repetitions, 1..=100000",
                reps.unwrap_or_default()
            ));
        }
    };
    let filter = match filter.as_deref().map(parse_filter).transpose() {
        Ok(f) => f.unwrap_or_default(),
        Err(e) => return bad(e),
    };
    let shard = match shard.as_deref().map(parse_shard).transpose() {
        Ok(s) => s,
        Err(e) => return bad(e),
    };
    let out = out.unwrap_or_else(|| PathBuf::from("target/experiments").join(&exp.name));
    let command = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect::<Vec<_>>();
    let opts = RunOptions {
        out,
        reps,
        filter,
        shard,
        command: format!("vcpulab {}", command.join(" ")),
        dry_run,
    };
    match run_experiment(&exp, &opts, &signals) {
        Ok(SweepEnd::Complete { .. }) if dry_run => ExitCode::SUCCESS,
        Ok(SweepEnd::Complete { counts, summary }) => {
            let c: Vec<String> = counts.iter().map(|(k, v)| format!("{v} {k}")).collect();
            eprintln!(
                "vcpulab: {}: {}; report: {}",
                exp.name,
                if c.is_empty() {
                    "nothing left to run".to_string()
                } else {
                    c.join(", ")
                },
                summary.display()
            );
            ExitCode::SUCCESS
        }
        Ok(SweepEnd::Interrupted(sig)) => {
            eprintln!(
                "vcpulab: the sweep stopped; rerun the same command to resume ({} keeps the runs done)",
                opts.out.display()
            );
            ExitCode::from(sig.exit_code().clamp(0, 255) as u8)
        }
        Err(SweepError::Input(e)) => bad(e),
        Err(e) => host_error(e),
    }
}

/// `vcpulab report DIR... [--out DIR]`.
pub fn report(dirs: Vec<PathBuf>, out: Option<PathBuf>) -> ExitCode {
    let out = match (out, dirs.as_slice()) {
        (Some(o), _) => o,
        (None, [one]) => one.clone(),
        (None, _) => {
            return bad("report: several directories are merged into a new one: give --out DIR");
        }
    };
    let mut records: std::collections::BTreeMap<String, RunRecord> = Default::default();
    // Where each record's files (its histogram log) are.
    let mut from: std::collections::BTreeMap<String, PathBuf> = Default::default();
    let mut exp: Option<(Experiment, String)> = None;
    for d in &dirs {
        let dir = match ResultDir::open(d) {
            Ok(d) => d,
            Err(e) => return bad(e),
        };
        let mut e = match Experiment::load(&dir.experiment_file()) {
            Ok(e) => e,
            Err(e) => return bad(e),
        };
        let found = match dir.load() {
            Ok(r) => r,
            Err(e) => return bad(e),
        };
        // The stored copy is always experiment.toml: the name is the runs'.
        if let Some(r) = found.values().next() {
            e.name = r.experiment.clone();
        }
        if let Some(r) = found.values().find(|r| r.experiment != e.name) {
            return bad(format!(
                "report: {} mixes experiments '{}' and '{}'",
                d.display(),
                e.name,
                r.experiment
            ));
        }
        if let Some((first, first_dir)) = &exp
            && first.name != e.name
        {
            return bad(format!(
                "report: {first_dir} holds experiment '{}', {} holds '{}': only results of one experiment merge",
                first.name,
                d.display(),
                e.name
            ));
        }
        for k in found.keys() {
            from.entry(k.clone()).or_insert_with(|| d.clone());
        }
        for (k, r) in found {
            records.entry(k).or_insert(r);
        }
        if exp.is_none() {
            exp = Some((e, d.display().to_string()));
        }
    }
    let (exp, _) = exp.expect("at least one directory");
    let dir = match ResultDir::create(&out) {
        Ok(d) => d,
        Err(e) => return host_error(e),
    };
    if let Err(e) = dir.write_experiment(&exp.text) {
        return host_error(e);
    }
    // Into a directory of its own: the records and their histogram logs.
    for (k, r) in &records {
        let src = &from[k];
        if src == &out {
            continue;
        }
        if let Err(e) = dir.save(r) {
            return host_error(e);
        }
        if let Some(h) = &r.hist_log
            && let Err(e) = std::fs::copy(src.join(h), out.join(h))
        {
            return host_error(format!("{}: cannot copy: {e}", src.join(h).display()));
        }
    }
    if let Err(e) = dir.write_jsonl(records.values()) {
        return host_error(e);
    }
    let command = format!(
        "vcpulab experiment {}",
        std::path::Path::new("experiments")
            .join(format!("{}.toml", exp.name))
            .display()
    );
    let list: Vec<RunRecord> = records.into_values().collect();
    match write_report(&out, &report_spec(&exp, &command), &list) {
        Ok(files) => {
            eprintln!(
                "vcpulab: {} runs; report: {}",
                list.len(),
                files.summary.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => host_error(e),
    }
}
