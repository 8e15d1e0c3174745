//! The monitor (`--monitor stdio|unix:PATH`) driving the real binary: stop/cont freeze and
//! resume VIRTUAL, `quit` ends the run with status 0, bad options exit with status 2.
//!
//! Every wait is bounded; a child left behind by a failing test is killed.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_vcpulab");
const PROMPT: &str = "(vcpulab) ";
const BANNER: &str = "vcpulab monitor - type 'help' for more information";
/// Bound on any single wait (start-up, a reply, the exit).
const WAIT: Duration = Duration::from_secs(15);
const MS: i64 = 1_000_000;

fn spin_elf() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("guests/build/spin.elf")
}

/// Kills the child if the test fails before it exits.
struct Guard(Option<Child>);

impl Guard {
    fn child(&mut self) -> &mut Child {
        self.0.as_mut().expect("child")
    }

    /// Waits (bounded) for the exit; returns the status and what the child wrote on stderr.
    fn wait(mut self, limit: Duration) -> (ExitStatus, String) {
        let mut child = self.0.take().expect("child");
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().expect("try_wait") {
                break s;
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                panic!("vcpulab did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        (status, err)
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Removes a socket file left behind when a test fails and its child is killed.
struct RmOnDrop(PathBuf);

impl Drop for RmOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn unique_socket() -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    // Relaxed: a counter for uniqueness only.
    let n = N.fetch_add(1, Ordering::Relaxed);
    PathBuf::from(format!(
        "/tmp/vcpulab-mon-{}-{nanos}-{n}.sock",
        std::process::id()
    ))
}

/// A monitor connection that reads replies up to the next prompt.
struct Monitor {
    w: UnixStream,
    r: BufReader<UnixStream>,
}

impl Monitor {
    fn connect(path: &Path, child: &mut Child) -> Monitor {
        let start = Instant::now();
        let s = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) => {
                    if let Some(st) = child.try_wait().unwrap() {
                        panic!("vcpulab exited ({st}) before the monitor was up");
                    }
                    assert!(start.elapsed() < WAIT, "cannot connect to {path:?}: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        };
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.set_write_timeout(Some(WAIT)).unwrap();
        let mut m = Monitor {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        };
        assert_eq!(m.until_prompt(), format!("{BANNER}\n"));
        m
    }

    /// Reads until the text ends with the prompt; returns the text before it.
    fn until_prompt(&mut self) -> String {
        let mut got = Vec::new();
        let start = Instant::now();
        while !got.ends_with(PROMPT.as_bytes()) {
            assert!(start.elapsed() < WAIT, "no prompt after {got:?}");
            let buf = self.r.fill_buf().expect("read from the monitor");
            assert!(!buf.is_empty(), "monitor closed after {got:?}");
            let n = buf.len();
            got.extend_from_slice(buf);
            self.r.consume(n);
        }
        got.truncate(got.len() - PROMPT.len());
        String::from_utf8(got).unwrap()
    }

    fn cmd(&mut self, line: &str) -> String {
        self.w.write_all(format!("{line}\n").as_bytes()).unwrap();
        self.until_prompt()
    }

    /// `info clocks` → (realtime, virtual, icount raw instructions or -1) in ns.
    fn clocks(&mut self) -> (i64, i64, i64) {
        let text = self.cmd("info clocks");
        let get = |name: &str| -> i64 {
            let line = text
                .lines()
                .find(|l| l.split_whitespace().next() == Some(name))
                .unwrap_or_else(|| panic!("no {name} in {text:?}"));
            let mut w = line.split_whitespace();
            w.next();
            let v = w.next().unwrap().parse().unwrap();
            assert_eq!(w.next(), Some("ns"), "{line}");
            v
        };
        for name in ["host", "virtual_rt"] {
            get(name);
        }
        let icount = text
            .lines()
            .find(|l| l.starts_with("icount"))
            .unwrap_or_else(|| panic!("no icount line: {text}"));
        let raw = match icount.split_once(" raw ") {
            None => {
                assert_eq!(icount.split_whitespace().nth(1), Some("off"), "{icount}");
                -1
            }
            Some((_, r)) => r.split_whitespace().next().unwrap().parse().unwrap(),
        };
        (get("realtime"), get("virtual"), raw)
    }

    /// Polls `info clocks` until VIRTUAL differs from `v` (bounded); returns the new reading.
    fn until_virtual_moves(&mut self, v: i64) -> (i64, i64, i64) {
        let start = Instant::now();
        loop {
            let c = self.clocks();
            if c.1 != v {
                return c;
            }
            assert!(start.elapsed() < WAIT, "VIRTUAL stuck at {v} while running");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// Runs spin.elf with a Unix-socket monitor (plus `extra` options) and drives
/// stop/cont/quit. `icount`: VIRTUAL follows instructions, not REALTIME.
fn stop_cont_quit(extra: &[&str], icount: bool) {
    let sock = unique_socket();
    // Declared before the child's guard, so dropped after it (the child is dead by then).
    let _rm = RmOnDrop(sock.clone());
    let mut args = vec![
        "run".to_string(),
        "--kernel".into(),
        spin_elf().display().to_string(),
        "--monitor".into(),
        format!("unix:{}", sock.display()),
        "--timeout".into(),
        "20".into(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let mut g = Guard(Some(
        Command::new(BIN)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vcpulab"),
    ));
    let mut m = Monitor::connect(&sock, g.child());

    assert_eq!(m.cmd("info status"), "VM status: running\n");
    let (_, v0, _) = m.clocks();
    std::thread::sleep(Duration::from_millis(100));
    let (_, v1, _) = m.until_virtual_moves(v0);
    assert!(v1 > v0, "VIRTUAL advances while running: {v0} -> {v1}");
    if !icount {
        assert!(
            v1 - v0 >= 100 * MS,
            "VIRTUAL follows real time: {v0} -> {v1}"
        );
    }

    assert_eq!(m.cmd("stop"), "");
    assert_eq!(m.cmd("info status"), "VM status: paused\n");
    let (r2, v2, i2) = m.clocks();
    std::thread::sleep(Duration::from_millis(200));
    let (r3, v3, i3) = m.clocks();
    assert_eq!(v3, v2, "VIRTUAL frozen while stopped");
    assert_eq!(i3, i2, "no instruction counted while stopped");
    assert!(
        r3 - r2 >= 200 * MS,
        "REALTIME runs while stopped: {r2} -> {r3}"
    );

    assert_eq!(m.cmd("cont"), "");
    assert_eq!(m.cmd("info status"), "VM status: running\n");
    std::thread::sleep(Duration::from_millis(50));
    let (r4, v4, _) = m.until_virtual_moves(v3);
    assert!(v4 > v3, "VIRTUAL advances again: {v3} -> {v4}");
    if !icount {
        // Across the pause, VIRTUAL moved only by the running time around it, not by the
        // 200 ms spent stopped.
        let (dv, dr) = (v4 - v2, r4 - r2);
        assert!(
            dv < dr / 2 && dr - dv >= 150 * MS,
            "VIRTUAL jumped over the pause: virtual +{dv} ns, realtime +{dr} ns"
        );
    }

    m.w.write_all(b"quit\n").unwrap();
    let t0 = Instant::now();
    let (status, err) = g.wait(WAIT);
    assert_eq!(status.code(), Some(0), "quit exits 0; stderr: {err}");
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "quit took {:?}",
        t0.elapsed()
    );
    // The connection closes with the process, without a prompt after quit.
    let mut rest = String::new();
    let _ = m.r.read_to_string(&mut rest);
    assert_eq!(rest, "");
    assert!(!sock.exists(), "socket file {sock:?} removed at exit");
}

#[test]
fn unix_monitor_stop_cont_quit() {
    stop_cont_quit(&[], false);
}

#[test]
fn unix_monitor_stop_cont_quit_icount() {
    // Under icount VIRTUAL is instruction-driven: frozen while the vCPUs are parked. Seen
    // from the iothread it moves only when a vCPU publishes its count (at budget ends,
    // MMIO, exits); without timers the budget is INT32_MAX ns of VIRTUAL, so shift=10
    // keeps that to ~2 M instructions, i.e. a few ms of host time.
    stop_cont_quit(&["--icount", "shift=10,sleep=off"], true);
}

#[test]
fn stdio_monitor_quit() {
    let mut g = Guard(Some(
        Command::new(BIN)
            .args(["run", "--kernel"])
            .arg(spin_elf())
            .args(["--monitor", "stdio", "--timeout", "20"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vcpulab"),
    ));
    {
        let mut stdin = g.child().stdin.take().unwrap();
        stdin.write_all(b"info status\nquit\n").unwrap();
        // Dropping stdin closes it: end of input only removes the monitor.
    }
    let mut out = g.child().stdout.take().unwrap();
    let (status, err) = g.wait(WAIT);
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    assert_eq!(
        err,
        format!("{BANNER}\n{PROMPT}VM status: running\n{PROMPT}"),
        "replies go to stderr"
    );
    // The guest may or may not have printed before `quit`; nothing else goes to stdout.
    let mut guest = String::new();
    out.read_to_string(&mut guest).unwrap();
    assert!(
        guest.is_empty() || guest == "spinning\n",
        "stdout carries only the UART: {guest:?}"
    );
}

#[test]
fn stdio_eof_does_not_quit() {
    // End of input removes the monitor; the run goes on until --timeout (status 124).
    let g = Guard(Some(
        Command::new(BIN)
            .args(["run", "--kernel"])
            .arg(spin_elf())
            .args(["--monitor", "stdio", "--timeout", "0.5"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vcpulab"),
    ));
    let (status, err) = g.wait(WAIT);
    assert_eq!(status.code(), Some(124), "stderr: {err}");
}

fn bad_option(arg: &str, want: &str) {
    let g = Guard(Some(
        Command::new(BIN)
            .args(["run", "--kernel"])
            .arg(spin_elf())
            .args(["--monitor", arg, "--timeout", "5"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vcpulab"),
    ));
    let (status, err) = g.wait(WAIT);
    assert_eq!(status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one-line error: {err:?}");
    assert!(err.starts_with("vcpulab: ") && err.contains(want), "{err}");
}

#[test]
fn bogus_monitor_is_refused() {
    bad_option("bogus", "expected stdio or unix:PATH");
}

#[test]
fn non_socket_path_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-socket");
    std::fs::write(&file, b"data").unwrap();
    bad_option(&format!("unix:{}", file.display()), "not a socket");
    assert_eq!(std::fs::read(&file).unwrap(), b"data");
}

/// A few-MB line, then a command, then quit.
fn overlong_input() -> Vec<u8> {
    let mut data = b"info status\n".to_vec();
    // Bytes that would read as commands if the line were cut into pieces.
    data.extend(b"x".repeat(5000));
    data.extend(b"stop");
    data.extend(b" quit ".repeat(600_000));
    data.extend(b"\ninfo status\n");
    data
}

const OVERLONG_ERR: &str = "Error: line longer than 4096 bytes\n";

#[test]
fn stdio_monitor_discards_an_overlong_line_whole() {
    let mut g = Guard(Some(
        Command::new(BIN)
            .args(["run", "--kernel"])
            .arg(spin_elf())
            .args(["--monitor", "stdio", "--timeout", "20"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vcpulab"),
    ));
    let mut stdin = g.child().stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        let mut data = overlong_input();
        data.extend(b"quit\n");
        stdin.write_all(&data).unwrap();
    });
    let (status, err) = g.wait(WAIT);
    writer.join().unwrap();
    assert_eq!(status.code(), Some(0), "stderr: {err}");
    let status_line = format!("VM status: running\n{PROMPT}");
    assert_eq!(
        err,
        format!("{BANNER}\n{PROMPT}{status_line}{OVERLONG_ERR}{PROMPT}{status_line}"),
        "one error for the whole line, nothing of it run"
    );
}

#[test]
fn unix_monitor_discards_an_overlong_line_whole() {
    let sock = unique_socket();
    let _rm = RmOnDrop(sock.clone());
    let mut g = Guard(Some(
        Command::new(BIN)
            .args(["run", "--kernel"])
            .arg(spin_elf())
            .arg("--monitor")
            .arg(format!("unix:{}", sock.display()))
            .args(["--timeout", "20"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn vcpulab"),
    ));
    let mut m = Monitor::connect(&sock, g.child());
    let mut w = m.w.try_clone().unwrap();
    let writer = std::thread::spawn(move || w.write_all(&overlong_input()).unwrap());
    // The three replies may arrive in one read: collect up to the third prompt.
    let mut got = String::new();
    while got.matches(PROMPT).count() < 3 {
        let mut buf = [0u8; 256];
        let n = m.r.read(&mut buf).expect("read from the monitor");
        assert!(n > 0, "monitor closed after {got:?}");
        got.push_str(std::str::from_utf8(&buf[..n]).unwrap());
    }
    let status = format!("VM status: running\n{PROMPT}");
    assert_eq!(got, format!("{status}{OVERLONG_ERR}{PROMPT}{status}"));
    writer.join().unwrap();
    assert_eq!(m.cmd("info status"), "VM status: running\n");
    m.w.write_all(b"quit\n").unwrap();
    let (status, err) = g.wait(WAIT);
    assert_eq!(status.code(), Some(0), "stderr: {err}");
}
