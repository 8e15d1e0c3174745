//! ELFs linked the usual way (gcc's default linker script, `-Ttext=0x80000000`,
//! no linker script of ours): their first LOAD segment starts below RAM with
//! the ELF and program headers, and `entry_startup`'s e_entry is not the start
//! of RAM, where the reset ROM jumps. The comparisons with QEMU 7.2 and 10.0
//! (output, and the device-tree address in a1 per RAM size) are in
//! `guests_vs_qemu` (`boot_layout::…`, `device_tree_address::…`); these checks
//! need no QEMU.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{RunOut, guest, run_with_limit, vcpulab_bin};

fn vcpulab_run(kernel: &Path, memory: &str, compat: Option<&str>) -> RunOut {
    let mut cmd = Command::new(vcpulab_bin());
    cmd.args(["run", "--memory", memory, "--timeout", "20"]);
    if let Some(c) = compat {
        cmd.args(["--compat", c]);
    }
    cmd.arg("--kernel").arg(kernel);
    run_with_limit(cmd, Duration::from_secs(30))
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
fn execution_starts_at_the_start_of_ram_and_only_headers_are_dropped_silently() {
    let v = vcpulab_run(&guest("entry_startup"), "128M", None);
    assert_eq!(v.code, Some(0), "{}", String::from_utf8_lossy(&v.stderr));
    assert_eq!(v.text(), "entered at the start of RAM (main)\n");
    // Only the ELF and program headers were dropped: nothing to say.
    assert!(
        v.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&v.stderr)
    );
}

#[test]
fn device_tree_address_follows_compat() {
    let k = guest("boot_regs");
    let a1 = |out: &RunOut| -> String {
        out.text()
            .lines()
            .find(|l| l.starts_with("a1 "))
            .unwrap_or_else(|| panic!("no a1 line in {:?}", out.text()))
            .to_string()
    };
    // The two versions differ from 2G on; the default follows 10.0.
    assert_eq!(a1(&vcpulab_run(&k, "3G", None)), "a1 0x000000013fe00000");
    assert_eq!(
        a1(&vcpulab_run(&k, "3G", Some("qemu-10.0"))),
        "a1 0x000000013fe00000"
    );
    assert_eq!(
        a1(&vcpulab_run(&k, "3G", Some("qemu-7.2"))),
        "a1 0x00000000bfe00000"
    );
}
