//! Facts about the host a result came from, recorded with every result.

use serde::{Deserialize, Serialize};

/// Host facts for the run report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostFacts {
    /// Logical CPUs available to this process.
    pub cores: usize,
    /// CPU model name from /proc/cpuinfo.
    pub cpu_model: String,
    /// Kernel release.
    pub kernel: String,
    /// Host name.
    pub hostname: String,
    /// Resolved versions of the crates the measurements depend on.
    pub crate_versions: std::collections::BTreeMap<String, String>,
    /// vcpulab version.
    pub vcpulab_version: String,
    /// Git commit vcpulab was built from.
    pub git_commit: String,
    /// Whether this is an optimised build.
    pub release_build: bool,
}

impl HostFacts {
    /// Collect the facts of this host.
    pub fn collect() -> HostFacts {
        let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_else(|| "unknown".into());
        let uts = nix::sys::utsname::uname().ok();
        let kernel = uts
            .as_ref()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        let hostname = uts
            .as_ref()
            .map(|u| u.nodename().to_string_lossy().into_owned())
            .unwrap_or_default();
        let crate_versions = env!("VCPULAB_CRATE_VERSIONS")
            .split(',')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        HostFacts {
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            cpu_model,
            kernel,
            hostname,
            crate_versions,
            vcpulab_version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit: env!("VCPULAB_GIT_COMMIT").to_string(),
            release_build: !cfg!(debug_assertions),
        }
    }
}

/// Peak resident set size of this process in bytes (getrusage).
pub fn peak_rss_bytes() -> u64 {
    nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .map(|u| u.max_rss() as u64 * 1024)
        .unwrap_or(0)
}

/// A terminating signal (SIGINT, SIGTERM or SIGHUP) that reached the process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TermSignal {
    /// Signal number.
    pub signo: i32,
    /// Sender's pid (0 when the kernel sent it, e.g. a terminal's Ctrl-C).
    pub pid: u32,
    /// Sender's name (the first word of its command line), when known.
    pub sender: Option<String>,
}

impl TermSignal {
    /// The line printed for it, worded as QEMU's (`terminating on signal 15
    /// from pid 1234 (bash)`; without the sender when the kernel sent it).
    pub fn message(&self) -> String {
        match (self.pid, &self.sender) {
            (0, _) => format!("terminating on signal {}", self.signo),
            (pid, Some(name)) => {
                format!(
                    "terminating on signal {} from pid {pid} ({name})",
                    self.signo
                )
            }
            (pid, None) => format!(
                "terminating on signal {} from pid {pid} (<unknown process>)",
                self.signo
            ),
        }
    }

    /// The process exit status for it: 128 + the signal number.
    pub fn exit_code(&self) -> i32 {
        128 + self.signo
    }
}

/// The signals that end a run cleanly.
pub const TERM_SIGNALS: [nix::sys::signal::Signal; 3] = [
    nix::sys::signal::Signal::SIGINT,
    nix::sys::signal::Signal::SIGTERM,
    nix::sys::signal::Signal::SIGHUP,
];

/// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread — and so in every
/// thread it creates afterwards, which inherit its mask: call it before any
/// thread exists — and returns a channel fed by a thread that reads them
/// from a signalfd (nix's `SignalFd`), so no signal handler runs at all.
/// QEMU analogue: `os_setup_signal_handling` and `qemu_system_killed`.
pub fn terminating_signals() -> std::io::Result<crossbeam_channel::Receiver<TermSignal>> {
    use nix::sys::signal::SigSet;
    use nix::sys::signalfd::SignalFd;
    let mut mask = SigSet::empty();
    for s in TERM_SIGNALS {
        mask.add(s);
    }
    mask.thread_block().map_err(std::io::Error::from)?;
    let fd = SignalFd::new(&mask).map_err(std::io::Error::from)?;
    let (tx, rx) = crossbeam_channel::unbounded();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            loop {
                match fd.read_signal() {
                    Ok(Some(info)) => {
                        let pid = info.ssi_pid;
                        let sig = TermSignal {
                            signo: info.ssi_signo as i32,
                            pid,
                            sender: (pid != 0).then(|| process_name(pid)).flatten(),
                        };
                        if tx.send(sig).is_err() {
                            return;
                        }
                    }
                    Ok(None) | Err(nix::errno::Errno::EINTR) => {}
                    Err(_) => return,
                }
            }
        })?;
    Ok(rx)
}

/// The first word of `pid`'s command line (or its `comm`), as QEMU's
/// `qemu_get_pid_name` shows it.
fn process_name(pid: u32) -> Option<String> {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok();
    let first = cmdline
        .as_deref()
        .and_then(|c| c.split(|&b| b == 0).next())
        .filter(|w| !w.is_empty())
        .map(|w| String::from_utf8_lossy(w).into_owned());
    first.or_else(|| {
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()
            .map(|s| s.trim_end().to_string())
    })
}

/// `t` as an RFC 3339 timestamp in UTC with millisecond precision, e.g.
/// `2026-12-01T13:45:07.123Z` (times before 1970 are shown as 1970).
pub fn rfc3339_utc(t: std::time::SystemTime) -> String {
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rfc3339_dates() {
        let at = |s: u64, ms: u64| rfc3339_utc(UNIX_EPOCH + Duration::from_millis(s * 1000 + ms));
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        // Checked with `date -u -d @N`.
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_795_612_369, 999), "2026-11-25T13:12:49.999Z");
        assert_eq!(at(4_107_542_399, 0), "2100-02-28T23:59:59.000Z");
        assert_eq!(at(4_107_542_400, 0), "2100-03-01T00:00:00.000Z");
    }

    #[test]
    fn signal_messages_as_qemu_words_them() {
        let s = TermSignal {
            signo: 15,
            pid: 42,
            sender: Some("bash".into()),
        };
        assert_eq!(s.message(), "terminating on signal 15 from pid 42 (bash)");
        assert_eq!(s.exit_code(), 143);
        let s = TermSignal {
            signo: 2,
            pid: 0,
            sender: None,
        };
        assert_eq!(s.message(), "terminating on signal 2");
    }
}
