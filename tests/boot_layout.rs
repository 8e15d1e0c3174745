//! ELFs linked the usual way (gcc's default linker script, `-Ttext=0x80000000`,
//! no linker script of ours) run on vcpulab as on QEMU 7.2 and 10.0: their first
//! LOAD segment starts below RAM with the ELF and program headers, and
//! `entry_startup`'s e_entry is not the start of RAM, where the reset ROM jumps.
//! Also the device-tree address in a1 for several RAM sizes, per `--compat`.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{guest, vcpulab_bin};

/// Exit status, stdout and stderr of a process run with a time limit.
struct Out {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

fn run_limited(mut cmd: Command, limit: Duration) -> Out {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn");
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let t_out = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let t_err = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Out {
        code: status.code(),
        stdout: t_out.join().unwrap(),
        stderr: String::from_utf8_lossy(&t_err.join().unwrap()).into_owned(),
    }
}

/// The QEMU binaries that are installed (7.2 as `qemu-system-riscv64`, 10.0
/// as `qemu-system-riscv64-10.0`), with the `--compat` each corresponds to.
/// A missing one is a loud skip locally and a failure under CI.
fn qemus() -> Vec<(PathBuf, &'static str)> {
    let mut found = Vec::new();
    for (name, compat) in [
        ("qemu-system-riscv64", "qemu-7.2"),
        ("qemu-system-riscv64-10.0", "qemu-10.0"),
    ] {
        let p = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|d| d.join(name))
                .find(|p| p.is_file())
        });
        match p {
            Some(p) => found.push((p, compat)),
            None if std::env::var_os("CI").is_some() => {
                panic!("{name} not found, but CI is set: .ci/run must install it")
            }
            None => eprintln!("!!! SKIPPED: {name} is not installed; no comparison with it !!!"),
        }
    }
    found
}

fn qemu_run(qemu: &Path, kernel: &Path, memory: &str) -> Out {
    let mut cmd = Command::new(qemu);
    cmd.args([
        "-machine",
        "virt",
        "-bios",
        "none",
        "-nographic",
        "-m",
        memory,
    ])
    .arg("-kernel")
    .arg(kernel);
    run_limited(cmd, Duration::from_secs(30))
}

fn vcpulab_run(kernel: &Path, memory: &str, compat: &str) -> Out {
    let mut cmd = Command::new(vcpulab_bin());
    cmd.args([
        "run",
        "--memory",
        memory,
        "--compat",
        compat,
        "--timeout",
        "20",
    ])
    .arg("--kernel")
    .arg(kernel);
    run_limited(cmd, Duration::from_secs(30))
}

/// (e_entry, lowest PT_LOAD p_paddr) of an ELF64.
fn entry_and_low(path: &Path) -> (u64, u64) {
    let d = std::fs::read(path).unwrap();
    let u64_at = |o: usize| u64::from_le_bytes(d[o..o + 8].try_into().unwrap());
    let u16_at = |o: usize| u16::from_le_bytes(d[o..o + 2].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(32) as usize, u16_at(54), u16_at(56));
    let low = (0..phnum)
        .map(|i| phoff + i * phentsize)
        .filter(|&ph| u32::from_le_bytes(d[ph..ph + 4].try_into().unwrap()) == 1)
        .map(|ph| u64_at(ph + 24))
        .min()
        .unwrap();
    (u64_at(24), low)
}

#[test]
fn guests_are_linked_the_usual_way() {
    let (entry, low) = entry_and_low(&guest("boot_regs"));
    assert_eq!(entry, 0x8000_0000);
    assert!(low < 0x8000_0000, "first segment below RAM: {low:#x}");
    let (entry, low) = entry_and_low(&guest("entry_startup"));
    assert_ne!(
        entry, 0x8000_0000,
        "e_entry elsewhere than the start of RAM"
    );
    assert!(low < 0x8000_0000, "first segment below RAM: {low:#x}");
}

#[test]
fn default_layout_guests_match_both_qemus() {
    for name in ["boot_regs", "entry_startup"] {
        let k = guest(name);
        for (qemu, compat) in qemus() {
            let q = qemu_run(&qemu, &k, "128M");
            let v = vcpulab_run(&k, "128M", compat);
            assert_eq!(q.code, Some(0), "{name} on {qemu:?}: {}", q.stderr);
            assert_eq!(v.code, Some(0), "{name} on vcpulab: {}", v.stderr);
            assert!(!q.stdout.is_empty());
            assert_eq!(
                String::from_utf8_lossy(&v.stdout),
                String::from_utf8_lossy(&q.stdout),
                "{name}: vcpulab --compat {compat} vs {qemu:?}"
            );
            // Only the ELF and program headers were dropped: nothing to say.
            assert_eq!(v.stderr, "", "{name}: vcpulab stderr");
        }
    }
    // QEMU starts at the start of RAM, not at e_entry.
    let v = vcpulab_run(&guest("entry_startup"), "128M", "qemu-10.0");
    assert_eq!(
        String::from_utf8_lossy(&v.stdout),
        "entered at the start of RAM (main)\n"
    );
}

#[test]
fn device_tree_address_per_ram_size_matches_each_qemu() {
    let k = guest("boot_regs");
    let a1 = |out: &Out| -> String {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find(|l| l.starts_with("a1 "))
            .unwrap_or_else(|| panic!("no a1 line in {:?}", out.stdout))
            .to_string()
    };
    for (qemu, compat) in qemus() {
        for mem in ["128M", "1G", "2G", "3G", "4G", "8G"] {
            let q = qemu_run(&qemu, &k, mem);
            let v = vcpulab_run(&k, mem, compat);
            assert_eq!(q.code, Some(0), "{qemu:?} -m {mem}: {}", q.stderr);
            assert_eq!(v.code, Some(0), "vcpulab -m {mem}: {}", v.stderr);
            assert_eq!(
                a1(&v),
                a1(&q),
                "-m {mem}: vcpulab --compat {compat} vs {qemu:?}"
            );
            assert_eq!(v.stdout, q.stdout, "-m {mem}: whole output");
        }
    }
    // The two versions differ from 2G on; the default follows 10.0.
    let d = vcpulab_run(&k, "3G", "qemu-10.0");
    assert_eq!(a1(&d), "a1 0x000000013fe00000");
    let d = vcpulab_run(&k, "3G", "qemu-7.2");
    assert_eq!(a1(&d), "a1 0x00000000bfe00000");
    let mut cmd = Command::new(vcpulab_bin());
    cmd.args(["run", "--memory", "3G", "--kernel"]).arg(&k);
    assert_eq!(
        a1(&run_limited(cmd, Duration::from_secs(30))),
        "a1 0x000000013fe00000"
    );
}
