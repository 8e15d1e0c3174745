//! The bounded child-process runner shared by the tests (`tests/common`) and
//! the benches (`benches/common`, which include this file with `#[path]`).
//!
//! A child (vcpulab or QEMU) runs with stdin from `/dev/null`; its stdout and
//! stderr are captured up to a byte limit each (the rest is read and
//! discarded, so a runaway guest can fill neither memory nor the pipe); a
//! watchdog samples its thread count from `/proc/PID/status` and kills it at
//! the wall-clock limit; it is timed from spawn to exit with a monotonic clock
//! and reaped with `wait4` for its maximum RSS.
#![allow(dead_code)] // each includer uses a different subset

use std::io::{self, Read};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What one child process did.
#[derive(Clone, Debug)]
pub struct Finished {
    /// Captured stdout (at most the capture limit).
    pub stdout: Vec<u8>,
    /// Captured stderr (at most the capture limit).
    pub stderr: Vec<u8>,
    /// Exit status code (`None` when a signal ended it).
    pub code: Option<i32>,
    /// Exit description: `exit N` or `signal N`.
    pub status: String,
    /// Whether the watchdog killed it at the time limit.
    pub timed_out: bool,
    /// Spawn to exit, ns.
    pub wall_ns: u64,
    /// Maximum RSS from wait4 (bytes).
    pub max_rss_bytes: u64,
    /// Largest thread count seen in /proc/PID/status while it ran.
    pub max_threads: u64,
}

fn sample_threads(pid: i32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

fn read_bounded(r: &mut impl Read, limit: usize) -> Vec<u8> {
    let mut buf = Vec::new();
    let _ = r.take(limit as u64).read_to_end(&mut buf);
    let _ = io::copy(r, &mut io::sink());
    buf
}

/// Run `cmd` (its stdio is set here) with a wall-clock `limit`, capturing at
/// most `capture` bytes of stdout and of stderr.
pub fn run_bounded(mut cmd: Command, limit: Duration, capture: usize) -> io::Result<Finished> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let start = Instant::now();
    let mut child = cmd.spawn()?;
    let pid = child.id() as i32;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");

    // Watchdog: samples the thread count and kills the child at the limit.
    // `done` is set (under the lock) once the child has exited but before it
    // is reaped, so the kill can only ever hit our own child or its zombie,
    // never a recycled pid.
    let done = Arc::new(Mutex::new(false));
    let max_threads = Arc::new(Mutex::new(0u64));
    let timed_out = Arc::new(Mutex::new(false));
    let (tx, rx) = crossbeam_channel::bounded::<()>(1);
    let wd = {
        let (done, max_threads, timed_out) = (done.clone(), max_threads.clone(), timed_out.clone());
        std::thread::spawn(move || {
            let deadline = Instant::now() + limit;
            let mut wait = Duration::from_millis(5);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match rx.recv_timeout(wait.min(left)) {
                    Ok(()) | Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                }
                wait = Duration::from_millis(100);
                let d = done.lock().unwrap();
                if *d {
                    return;
                }
                if let Some(n) = sample_threads(pid) {
                    let mut m = max_threads.lock().unwrap();
                    *m = (*m).max(n);
                }
                if Instant::now() >= deadline {
                    // SAFETY: plain syscall; `pid` is our unreaped child (see `done`).
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    *timed_out.lock().unwrap() = true;
                    return;
                }
            }
        })
    };
    let err_reader = std::thread::spawn(move || read_bounded(&mut stderr, capture));
    let out = read_bounded(&mut stdout, capture);

    // Wait for exit without reaping, take the end time, then reap with wait4
    // for the rusage.
    // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: valid pointer to a local siginfo_t.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    let wall_ns = start.elapsed().as_nanos() as u64;
    *done.lock().unwrap() = true;
    let _ = tx.send(());
    let mut status = 0i32;
    // SAFETY: a zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid pointers to locals; pid is our exited, unreaped child.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    wd.join().ok();
    let err = err_reader.join().unwrap_or_default();
    std::mem::forget(child); // already reaped
    let (code, status_s) = if libc::WIFEXITED(status) {
        let c = libc::WEXITSTATUS(status);
        (Some(c), format!("exit {c}"))
    } else if libc::WIFSIGNALED(status) {
        (None, format!("signal {}", libc::WTERMSIG(status)))
    } else {
        (None, format!("status {status:#x}"))
    };
    let timed_out = *timed_out.lock().unwrap();
    let max_threads = *max_threads.lock().unwrap();
    Ok(Finished {
        stdout: out,
        stderr: err,
        code,
        status: status_s,
        timed_out,
        wall_ns,
        max_rss_bytes: ru.ru_maxrss as u64 * 1024,
        max_threads,
    })
}
