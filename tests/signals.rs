//! SIGINT, SIGTERM and SIGHUP end a real run cleanly: one line worded as
//! QEMU's (`terminating on signal N from pid P (NAME)`), the report written
//! with `exit.reason` naming the signal, the monitor socket removed, exit
//! status 128 + N.

mod common;

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{guest, vcpulab_bin};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Kills the child if the test fails before it exits.
struct Guard(Option<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("vcpulab-sig-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn end_with(sig: Signal, reason: &str) {
    let dir = scratch(reason);
    let stats = dir.join("run.json");
    let sock = dir.join("m.sock");
    // A stale report from an earlier run: removed at the start.
    std::fs::write(&stats, "stale").unwrap();
    let mut g = Guard(Some(
        Command::new(vcpulab_bin())
            .args(["run", "--timeout", "30", "--kernel"])
            .arg(guest("spin"))
            .arg("--stats")
            .arg(&stats)
            .arg("--monitor")
            .arg(format!("unix:{}", sock.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vcpulab"),
    ));
    let child = g.0.as_mut().unwrap();
    let mut out = child.stdout.take().unwrap();
    // The guest runs once it has printed.
    let mut got = Vec::new();
    let mut buf = [0u8; 64];
    while !got.ends_with(b"spinning\n") {
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "vcpulab ended early: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(!stats.exists(), "stale report removed before the guest ran");
    assert!(sock.exists());
    std::thread::sleep(Duration::from_millis(100));
    kill(Pid::from_raw(child.id() as i32), sig).unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no exit after {sig}"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let n = sig as i32;
    assert_eq!(status.code(), Some(128 + n), "{sig}: stderr {err}");
    let me = std::process::id();
    let line = format!("vcpulab: terminating on signal {n} from pid {me} (");
    assert!(
        err.starts_with(&line) && err.ends_with(")\n") && err.lines().count() == 1,
        "{sig}: expected one line {line}...: {err:?}"
    );
    assert!(!sock.exists(), "monitor socket removed");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert_eq!(v["schema"], 2);
    assert_eq!(v["exit"]["reason"], reason);
    assert_eq!(v["exit"]["code"], 128 + n);
    assert_eq!(v["exit"]["signal"], n);
    assert!(
        v["exit"]["message"]
            .as_str()
            .unwrap()
            .starts_with(&format!("terminating on signal {n} from pid {me}"))
    );
    assert!(v["instructions"]["total"].as_u64().unwrap() > 1000);
    // Only the report is left in the directory (no temporary file).
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("run.json")]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sigint_ends_the_run() {
    end_with(Signal::SIGINT, "sigint");
}

#[test]
fn sigterm_ends_the_run() {
    end_with(Signal::SIGTERM, "sigterm");
}

#[test]
fn sighup_ends_the_run() {
    end_with(Signal::SIGHUP, "sighup");
}
