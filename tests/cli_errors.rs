//! Bad input gives one clear line on stderr and exit status 2 — never a
//! panic or a backtrace; a guest that spins ends at `--timeout` with 124.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{RunOut, guest, run_with_limit, vcpulab_bin};

/// Runs vcpulab with `args`, killing it after 30 s (the shared bounded
/// runner).
fn run(args: &[&str]) -> RunOut {
    let mut cmd = Command::new(vcpulab_bin());
    cmd.args(args);
    let r = run_with_limit(cmd, Duration::from_secs(30));
    assert!(!r.timed_out, "vcpulab {args:?} did not finish within 30 s");
    r
}

/// Exit status 2, a single `vcpulab: ...` line containing every `needle`.
fn assert_bad_input(args: &[&str], needles: &[&str]) {
    let r = run(args);
    let err = String::from_utf8_lossy(&r.stderr).into_owned();
    assert_eq!(
        r.code,
        Some(2),
        "{args:?}: expected exit 2, got {:?}; stderr: {err}",
        r.code
    );
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{args:?}: panic: {err}"
    );
    let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
    for n in needles {
        assert!(err.contains(n), "{args:?}: stderr lacks {n:?}: {err}");
    }
    assert!(r.stdout.is_empty(), "{args:?}: unexpected stdout");
    // clap's usage errors add a usage line and a hint; ours are one line.
    if err.starts_with("vcpulab:") {
        assert_eq!(lines.len(), 1, "{args:?}: expected one line: {err}");
    }
}

fn tmpfile(name: &str, data: &[u8]) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("vcpulab-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// A minimal ELF64 header with the given class, data encoding, machine and
/// type, one PT_LOAD segment at `paddr` of `size` bytes.
fn elf(class: u8, data: u8, machine: u16, ty: u16, paddr: u64, size: u64) -> Vec<u8> {
    let mut v = vec![0u8; 0x78];
    v[0..4].copy_from_slice(b"\x7fELF");
    v[4] = class;
    v[5] = data;
    v[6] = 1;
    v[16..18].copy_from_slice(&ty.to_le_bytes());
    v[18..20].copy_from_slice(&machine.to_le_bytes());
    v[20..24].copy_from_slice(&1u32.to_le_bytes());
    v[24..32].copy_from_slice(&paddr.to_le_bytes()); // e_entry
    v[32..40].copy_from_slice(&0x40u64.to_le_bytes()); // e_phoff
    v[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    v[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    v[56..58].copy_from_slice(&1u16.to_le_bytes()); // e_phnum
    let ph = 0x40;
    v[ph..ph + 4].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    v[ph + 4..ph + 8].copy_from_slice(&7u32.to_le_bytes());
    v[ph + 8..ph + 16].copy_from_slice(&0u64.to_le_bytes()); // p_offset
    v[ph + 16..ph + 24].copy_from_slice(&paddr.to_le_bytes());
    v[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes());
    v[ph + 32..ph + 40].copy_from_slice(&0x78u64.to_le_bytes()); // p_filesz
    v[ph + 40..ph + 48].copy_from_slice(&size.to_le_bytes()); // p_memsz
    v
}

#[test]
fn missing_kernel() {
    assert_bad_input(
        &["run", "--kernel", "/nonexistent/k.elf"],
        &["/nonexistent/k.elf", "cannot read"],
    );
}

#[test]
fn kernel_is_a_directory() {
    let d = std::env::temp_dir();
    assert_bad_input(&["run", "--kernel", d.to_str().unwrap()], &["cannot read"]);
}

#[test]
fn not_an_elf() {
    let p = tmpfile("text.elf", b"hello, this is not an ELF file\n");
    assert_bad_input(
        &["run", "--kernel", p.to_str().unwrap()],
        &["text.elf", "not an ELF"],
    );
    let p = tmpfile("empty.elf", b"");
    assert_bad_input(
        &["run", "--kernel", p.to_str().unwrap()],
        &["empty.elf", "not an ELF"],
    );
}

#[test]
fn elf_for_another_machine_or_class() {
    let p = tmpfile("x86.elf", &elf(2, 1, 62, 2, 0x8000_0000, 0x1000));
    assert_bad_input(
        &["run", "--kernel", p.to_str().unwrap()],
        &["x86.elf", "RISC-V"],
    );
    let mut e32 = elf(2, 1, 243, 2, 0x8000_0000, 0x1000);
    e32[4] = 1;
    let p = tmpfile("rv32.elf", &e32);
    assert_bad_input(
        &["run", "--kernel", p.to_str().unwrap()],
        &["rv32.elf", "32-bit"],
    );
    let p = tmpfile("be.elf", &elf(2, 2, 243, 2, 0x8000_0000, 0x1000));
    assert_bad_input(
        &["run", "--kernel", p.to_str().unwrap()],
        &["be.elf", "big-endian"],
    );
    let p = tmpfile("rel.elf", &elf(2, 1, 243, 1, 0x8000_0000, 0x1000));
    assert_bad_input(
        &["run", "--kernel", p.to_str().unwrap()],
        &["rel.elf", "executable"],
    );
    // A truncated header.
    let p = tmpfile("trunc.elf", &elf(2, 1, 243, 2, 0x8000_0000, 0x1000)[..30]);
    assert_bad_input(&["run", "--kernel", p.to_str().unwrap()], &["trunc.elf"]);
}

#[test]
fn segments_outside_ram() {
    // Over a device (the UART): refused.
    let p = tmpfile("dev.elf", &elf(2, 1, 243, 2, 0x1000_0000, 0x1000));
    assert_bad_input(
        &["run", "--kernel", p.to_str().unwrap()],
        &["dev.elf", "overlaps device 'serial'", "0x10000000"],
    );
    // Nothing in RAM, below or above it: refused.
    let p = tmpfile("low.elf", &elf(2, 1, 243, 2, 0x4000_0000, 0x1000));
    assert_bad_input(
        &["run", "--kernel", p.to_str().unwrap()],
        &["low.elf", "no loadable byte lies in RAM", "0x40000000"],
    );
    let p = tmpfile("high.elf", &elf(2, 1, 243, 2, 0x8400_0000, 0x1000));
    assert_bad_input(
        &["run", "--kernel", p.to_str().unwrap(), "--memory", "64M"],
        &["high.elf", "no loadable byte lies in RAM", "0x84000000"],
    );
}

#[test]
fn bytes_outside_ram_are_dropped_with_one_line_and_a_trap_storm_is_named() {
    // 0x100 bytes below RAM (more than the headers) and the rest zero in
    // RAM: the bytes below are dropped with one line; the guest starts at the
    // start of RAM on zeros and traps for ever (mtvec = 0 is unmapped).
    let p = tmpfile("straddle.elf", &elf(2, 1, 243, 2, 0x7fff_ff00, 0x200));
    let r = run(&["run", "--kernel", p.to_str().unwrap(), "--timeout", "0.3"]);
    let err = String::from_utf8_lossy(&r.stderr).into_owned();
    assert_eq!(r.code, Some(124), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].contains("straddle.elf")
            && lines[0].contains("256 bytes")
            && lines[0].contains("0x7fffff00..0x80000000")
            && lines[0].contains("not loaded"),
        "{err}"
    );
    // The timeout line names the storm: many traps, the last one's cause and pc.
    let traps: u64 = lines[1]
        .split(", ")
        .find_map(|w| {
            w.strip_suffix(" traps")
                .and_then(|n| n.split(' ').next_back())
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no trap count in: {err}"));
    assert!(traps > 1000, "{err}");
    assert!(
        lines[1].contains("the last: cause 0x1 (instruction access fault) at pc 0x0"),
        "{err}"
    );
}

#[test]
fn numeric_options_out_of_range() {
    let hello = guest("hello");
    let k = hello.to_str().unwrap();
    for t in ["1e30", "-1", "NaN", "inf", "-inf", "0", "1e-300", "1s"] {
        assert_bad_input(
            &["run", "--kernel", k, "--timeout", t],
            &[&format!("--timeout '{t}'"), "positive number of seconds"],
        );
    }
    for m in ["65G", "128G", "1T", "99999999999T", "-1", "0"] {
        assert_bad_input(&["run", "--kernel", k, "--memory", m], &["--memory"]);
    }
    for n in ["99999999999999999999999", "-1", "0", "1.5", "x"] {
        assert_bad_input(
            &["run", "--kernel", k, "--smp", n],
            &["--smp", n, "positive number"],
        );
    }
    for (n, why) in [
        ("513", "at most 512 CPUs"),
        ("16,sockets=16", "at most 8 sockets"),
        ("4,sockets=3,cores=2", "!= maxcpus"),
        ("4,maxcpus=2", "must be at least cpus"),
        ("4,dies=2", "unknown key 'dies'"),
    ] {
        assert_bad_input(&["run", "--kernel", k, "--smp", n], &["--smp", why]);
    }
    for p in [
        "iters=18446744073709551616",
        "iters=0x1ffffffffffffffff",
        "iters=-1",
        "99999999999999999999=1",
        "64=1",
    ] {
        assert_bad_input(&["run", "--kernel", k, "--param", p], &["--param"]);
    }
}

#[test]
fn sixty_four_gib_of_ram_costs_nothing_up_front() {
    let hello = guest("hello");
    let t = std::time::Instant::now();
    let r = run(&[
        "run",
        "--kernel",
        hello.to_str().unwrap(),
        "--memory",
        "64G",
    ]);
    let took = t.elapsed();
    assert_eq!(r.code, Some(0), "{}", String::from_utf8_lossy(&r.stderr));
    assert_eq!(r.text(), "Hello from vcpulab guest\n");
    // Mapped lazily: no per-GiB work at start-up (measured: a few ms).
    assert!(took < Duration::from_secs(2), "64G run took {took:?}");
}

#[test]
fn unwritable_stats_path_is_refused_before_the_guest_runs() {
    let hello = guest("hello");
    let k = hello.to_str().unwrap();
    // assert_bad_input also checks that the guest printed nothing.
    assert_bad_input(
        &["run", "--kernel", k, "--stats", "/nonexistent/dir/x.json"],
        &["--stats", "/nonexistent/dir/x.json"],
    );
    let dir = std::env::temp_dir();
    assert_bad_input(
        &["run", "--kernel", k, "--stats", dir.to_str().unwrap()],
        &["--stats", "directory"],
    );
}

#[test]
fn bad_options() {
    let hello = guest("hello");
    let k = hello.to_str().unwrap();
    assert_bad_input(&["run", "--kernel", k, "--bogus"], &["--bogus"]);
    assert_bad_input(&["frobnicate"], &["frobnicate"]);
    assert_bad_input(
        &["run", "--kernel", k, "--memory", "12X"],
        &["12X", "suffix"],
    );
    assert_bad_input(&["run", "--kernel", k, "--memory", "lots"], &["lots"]);
    assert_bad_input(
        &["run", "--kernel", k, "--memory", "1K"],
        &["--memory", "at least 2M"],
    );
    assert_bad_input(&["run", "--kernel", k, "--smp", "0"], &["--smp '0'"]);
    assert_bad_input(&["run", "--kernel", k, "--smp", "x"], &["--smp"]);
    assert_bad_input(&["run", "--kernel", k, "--timeout=-1"], &["--timeout"]);
    assert_bad_input(&["run", "--kernel", k, "--timeout", "0"], &["--timeout"]);
    assert_bad_input(&["run", "--kernel", k, "--param", "nope=1"], &["nope"]);
    assert_bad_input(&["run", "--kernel", k, "--param", "iters=abc"], &["abc"]);
    assert_bad_input(
        &["run", "--kernel", k, "--iothread-timer", "sleepy"],
        &["sleepy"],
    );
}

#[test]
fn bad_icount_options() {
    let hello = guest("hello");
    let k = hello.to_str().unwrap();
    assert_bad_input(
        &["run", "--kernel", k, "--icount", "shift=11"],
        &["shift=11", "0..=10"],
    );
    assert_bad_input(&["run", "--kernel", k, "--icount", "shift=-1"], &["shift"]);
    assert_bad_input(
        &["run", "--kernel", k, "--icount", "shift=1,frob=on"],
        &["frob"],
    );
    assert_bad_input(
        &["run", "--kernel", k, "--icount", "shift=1,sleep=maybe"],
        &["maybe"],
    );
    assert_bad_input(
        &[
            "run",
            "--kernel",
            k,
            "--icount",
            "shift=1,align=on,sleep=off",
        ],
        &["align=on", "sleep=off"],
    );
    assert_bad_input(
        &["run", "--kernel", k, "--icount", "shift=auto,align=on"],
        &["shift=auto", "align=on"],
    );
    assert_bad_input(&["run", "--kernel", k, "--icount", "sleep=off"], &["shift"]);
    // The SMP modes: the parallel ones need a thread per vCPU, and say so.
    for mode in ["global", "local", "local,quantum=1ms"] {
        let ic = format!("shift=3,smp={mode}");
        assert_bad_input(
            &["run", "--kernel", k, "--icount", &ic],
            &["needs one thread per vCPU", "thread=multi"],
        );
        assert_bad_input(
            &[
                "run",
                "--kernel",
                k,
                "--icount",
                &ic,
                "--accel",
                "tcg,thread=single",
            ],
            &["needs one thread per vCPU"],
        );
    }
    // With a thread per vCPU: `--icount ICOUNT` plus `extra`.
    let bad_multi = |icount: &str, extra: &[&str], says: &[&str]| {
        let mut a = vec!["run", "--kernel", k, "--accel", "tcg,thread=multi"];
        a.extend(["--icount", icount]);
        a.extend(extra);
        assert_bad_input(&a, says);
    };
    bad_multi("shift=3,smp=rr", &[], &["no MTTCG when icount"]);
    for (icount, says) in [
        ("shift=3,quantum=1ms", &["quantum", "smp=local"][..]),
        ("shift=3,smp=global,quantum=1ms", &["quantum", "smp=local"]),
        ("shift=3,smp=local,quantum=0", &["quantum=0", "more than 0"]),
        ("shift=3,smp=local,quantum=-1us", &["quantum", "positive"]),
        ("shift=3,smp=local,quantum=2days", &["quantum", "positive"]),
        ("smp=local,quantum=1ms", &["'shift' is required"]),
        ("shift=auto,smp=local", &["shift=auto", "smp=local"]),
    ] {
        bad_multi(icount, &[], says);
    }
    let q = "shift=3,smp=local,quantum=1ms";
    bad_multi(q, &["--bql", "always"], &["--bql always", "smp=local"]);
    bad_multi(
        q,
        &["--icount-timers", "iothread"],
        &["--icount-timers iothread", "barrier"],
    );
}

#[test]
fn bad_accel_options() {
    let hello = guest("hello");
    let k = hello.to_str().unwrap();
    assert_bad_input(
        &["run", "--kernel", k, "--accel", "kvm"],
        &["--accel 'kvm'", "tcg"],
    );
    assert_bad_input(
        &["run", "--kernel", k, "--accel", "tcg,thread=both"],
        &["thread=both", "single or multi"],
    );
    assert_bad_input(
        &["run", "--kernel", k, "--accel", "tcg,rr-turn=half"],
        &["rr-turn=half", "split or whole"],
    );
    assert_bad_input(
        &["run", "--kernel", k, "--accel", "tcg,frob=1"],
        &["frob", "thread, rr-turn"],
    );
    assert_bad_input(
        &[
            "run",
            "--kernel",
            k,
            "--accel",
            "tcg,thread=multi",
            "--icount",
            "shift=3",
        ],
        &["no MTTCG when icount"],
    );
    assert_bad_input(&["run", "--kernel", k, "--bql", "never"], &["never"]);
    assert_bad_input(&["run", "--kernel", k, "--bql-lock", "spin"], &["spin"]);
    assert_bad_input(&["run", "--kernel", k, "--kick", "poke"], &["poke"]);
}

/// Harts that can never finish (hart 0 spins; the others wait in `wfi` with
/// nothing enabled): the run ends at `--timeout` in both thread modes, and
/// stderr and the report give each hart's state and pc.
#[test]
fn stuck_harts_time_out_with_each_harts_state() {
    let spin = guest("spin");
    for accel in ["tcg,thread=multi", "tcg,thread=single"] {
        let dir = std::env::temp_dir().join(format!("vcpulab-stuck-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let stats = dir.join("r.json");
        let r = run(&[
            "run",
            "--kernel",
            spin.to_str().unwrap(),
            "--smp",
            "3",
            "--accel",
            accel,
            "--timeout",
            "0.5",
            "--stats",
            stats.to_str().unwrap(),
        ]);
        let err = String::from_utf8_lossy(&r.stderr).into_owned();
        assert_eq!(r.code, Some(124), "{accel}: {err}");
        assert!(err.contains("hart 0 running at pc 0x8"), "{accel}: {err}");
        for h in [1, 2] {
            assert!(
                err.contains(&format!(
                    "hart {h} halted in wfi with mie=0 (nothing can wake it) at pc 0x8"
                )),
                "{accel}: {err}"
            );
        }
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
        let states: Vec<&str> = (0..3)
            .map(|h| v["vcpus"][h]["state"].as_str().unwrap())
            .collect();
        assert_eq!(states, ["running", "halted", "halted"], "{accel}");
        assert_eq!(v["vcpus"][1]["mie"], "0x0");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn spinning_guest_times_out_with_its_progress() {
    let spin = guest("spin");
    let r = run(&[
        "run",
        "--kernel",
        spin.to_str().unwrap(),
        "--timeout",
        "0.5",
    ]);
    let err = String::from_utf8_lossy(&r.stderr).into_owned();
    assert_eq!(r.code, Some(124), "stderr: {err}");
    assert_eq!(r.text(), "spinning\n");
    assert!(
        err.contains("timeout") && err.contains("instructions") && err.contains("pc 0x"),
        "{err}"
    );
    // The instruction count is reported and is large: the guest was running.
    let n: u64 = err
        .split_whitespace()
        .skip_while(|w| *w != "executed")
        .nth(1)
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no instruction count in: {err}"));
    assert!(n > 1000, "{err}");
}

#[test]
fn stats_report_has_the_schema_fields() {
    let dir = std::env::temp_dir().join(format!("vcpulab-stats-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.json");
    let hello = guest("hello");
    let r = run(&[
        "run",
        "--kernel",
        hello.to_str().unwrap(),
        "--stats",
        path.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(0));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(v["schema"], 2);
    assert_eq!(v["exit"]["reason"], "finisher_pass");
    assert_eq!(v["exit"]["code"], 0);
    assert!(v["wall_ns"].as_u64().unwrap() > 0);
    let total = v["instructions"]["total"].as_u64().unwrap();
    assert!(total > 100);
    assert_eq!(v["instructions"]["per_vcpu"][0].as_u64().unwrap(), total);
    assert!(v["host"]["cores"].as_u64().unwrap() >= 1);
    assert!(v["config"]["machine"]["memory_bytes"].as_u64().unwrap() == 128 << 20);
    assert!(v["timers"]["lateness_ns"]["count"].is_u64());
    assert!(v["vm_clock_ns"].is_i64());
    assert!(v["icount"].is_null());
    // Under icount: the shift and its changes.
    let r = run(&[
        "run",
        "--kernel",
        hello.to_str().unwrap(),
        "--icount",
        "shift=4,sleep=off",
        "--stats",
        path.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(0));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(v["icount"]["shift"], 4);
    assert_eq!(v["icount"]["shift_changes"][0]["shift"], 4);
    assert_eq!(v["icount"]["shift_changes"][0]["wall_ns"], 0);
    // VIRTUAL = instructions << shift (bias 0: no idle time).
    let total = v["instructions"]["total"].as_i64().unwrap();
    assert_eq!(v["vm_clock_ns"].as_i64().unwrap(), total << 4);
}

#[test]
fn ram_the_host_will_not_map_is_one_line() {
    // An address-space limit of ~2 GB makes the 64G mapping fail.
    let out = Command::new("sh")
        .args([
            "-c",
            "ulimit -v 2000000 && exec \"$0\" run --memory 64G --kernel \"$1\"",
        ])
        .arg(vcpulab_bin())
        .arg(guest("hello"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run sh");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("vcpulab: cannot allocate 68719476736 bytes of guest RAM (--memory)"),
        "{err}"
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn trace_events_and_timer_slack_out_of_range() {
    let hello = guest("hello");
    let k = hello.to_str().unwrap();
    for n in ["0", "-1", "16777217", "1e3", "x", ""] {
        assert_bad_input(
            &["run", "--kernel", k, "--trace-events", n],
            &[&format!("--trace-events '{n}'"), "from 1 to 16777216"],
        );
    }
    for ns in [
        "1000000001",
        "-1",
        "18446744073709551616",
        "50us",
        "1.5",
        "",
    ] {
        assert_bad_input(
            &["run", "--kernel", k, "--timer-slack", ns],
            &[&format!("--timer-slack '{ns}'"), "from 1 to 1000000000"],
        );
    }
}

#[test]
fn unwritable_trace_and_hist_log_paths_name_their_option() {
    let hello = guest("hello");
    let k = hello.to_str().unwrap();
    for opt in ["--trace", "--hist-log"] {
        assert_bad_input(
            &["run", "--kernel", k, opt, "/nonexistent/dir/x.json"],
            &[&format!("{opt} '/nonexistent/dir/x.json'")],
        );
    }
}
