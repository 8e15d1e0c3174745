//! A result directory: one file per run (`runs/KEY.json`, written
//! atomically, so that a crash or a full disk never leaves half a record and
//! an interrupted sweep resumes from what is there), `runs.jsonl` (every
//! record, one per line), the HdrHistogram logs (`hlog/KEY.hlog`), the
//! experiment file it came from (`experiment.toml`) and the report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::record::{RunRecord, Status};

/// A result directory that cannot be used: the path and why.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {what}")]
pub struct StoreError {
    /// The file or directory.
    pub path: PathBuf,
    /// What went wrong.
    pub what: String,
}

fn err(path: &Path, what: impl std::fmt::Display) -> StoreError {
    StoreError {
        path: path.to_path_buf(),
        what: what.to_string(),
    }
}

/// Writes `bytes` to `path` atomically ([`super::report::atomic_write`]:
/// a temporary file in the same directory, then a rename), so that an
/// error leaves the old `path` untouched.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    super::report::atomic_write(path, bytes).map_err(|e| match e {
        super::report::ReportError::Io { source, .. } => {
            err(path, format!("cannot write: {source}"))
        }
        other => err(path, other),
    })
}

/// A result directory.
#[derive(Clone, Debug)]
pub struct ResultDir {
    /// Its path.
    pub path: PathBuf,
}

impl ResultDir {
    /// Opens (creating it if need be) a result directory for writing, and
    /// checks that files can be created in it.
    pub fn create(path: &Path) -> Result<ResultDir, StoreError> {
        for d in [path.to_path_buf(), path.join("runs"), path.join("hlog")] {
            std::fs::create_dir_all(&d).map_err(|e| err(&d, format!("cannot create: {e}")))?;
        }
        let dir = ResultDir {
            path: path.to_path_buf(),
        };
        // Fail now, not after the first run, when nothing can be written.
        atomic_write(&path.join(".writable"), b"")?;
        let _ = std::fs::remove_file(path.join(".writable"));
        Ok(dir)
    }

    /// Opens an existing result directory for reading.
    pub fn open(path: &Path) -> Result<ResultDir, StoreError> {
        if !path.join("runs").is_dir() && !path.join("runs.jsonl").is_file() {
            return Err(err(
                path,
                "not a result directory (no runs/ or runs.jsonl; `vcpulab experiment` writes one)",
            ));
        }
        Ok(ResultDir {
            path: path.to_path_buf(),
        })
    }

    /// The record file of a run.
    fn record_path(&self, key: &str) -> PathBuf {
        self.path.join("runs").join(format!("{key}.json"))
    }

    /// The HdrHistogram log of a run, relative to the directory.
    pub fn hist_log_rel(key: &str) -> String {
        format!("hlog/{key}.hlog")
    }

    /// Stores a record.
    pub fn save(&self, r: &RunRecord) -> Result<(), StoreError> {
        let mut bytes = serde_json::to_vec_pretty(r).map_err(|e| err(&self.path, e))?;
        bytes.push(b'\n');
        atomic_write(&self.record_path(&r.key), &bytes)
    }

    /// Every record of the directory, by key: the files of `runs/`, and the
    /// lines of `runs.jsonl` for keys that have no file (a directory copied
    /// without `runs/`). Unreadable files are an error naming them.
    pub fn load(&self) -> Result<BTreeMap<String, RunRecord>, StoreError> {
        let mut out = BTreeMap::new();
        let runs = self.path.join("runs");
        if runs.is_dir() {
            let rd = std::fs::read_dir(&runs).map_err(|e| err(&runs, e))?;
            for entry in rd {
                let p = entry.map_err(|e| err(&runs, e))?.path();
                if p.extension().is_some_and(|x| x == "json") {
                    let text = std::fs::read(&p).map_err(|e| err(&p, e))?;
                    let r: RunRecord = serde_json::from_slice(&text)
                        .map_err(|e| err(&p, format!("not a run record: {e}")))?;
                    out.insert(r.key.clone(), r);
                }
            }
        }
        let jsonl = self.path.join("runs.jsonl");
        if jsonl.is_file() {
            let text = std::fs::read_to_string(&jsonl).map_err(|e| err(&jsonl, e))?;
            for (i, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let r: RunRecord = serde_json::from_str(line)
                    .map_err(|e| err(&jsonl, format!("line {}: not a run record: {e}", i + 1)))?;
                out.entry(r.key.clone()).or_insert(r);
            }
        }
        Ok(out)
    }

    /// Rewrites `runs.jsonl` from `records` (in the order given).
    pub fn write_jsonl<'a>(
        &self,
        records: impl IntoIterator<Item = &'a RunRecord>,
    ) -> Result<(), StoreError> {
        let mut bytes = Vec::new();
        for r in records {
            serde_json::to_writer(&mut bytes, r).map_err(|e| err(&self.path, e))?;
            bytes.push(b'\n');
        }
        atomic_write(&self.path.join("runs.jsonl"), &bytes)
    }

    /// Stores the experiment file the results come from.
    pub fn write_experiment(&self, text: &str) -> Result<(), StoreError> {
        atomic_write(&self.path.join("experiment.toml"), text.as_bytes())
    }

    /// The stored experiment file.
    pub fn experiment_file(&self) -> PathBuf {
        self.path.join("experiment.toml")
    }
}

/// Whether a stored record means its run need not run again: everything
/// but a skipped run (a QEMU installed since may run it now).
pub fn is_final(r: &RunRecord) -> bool {
    r.status != Status::Skipped
}
