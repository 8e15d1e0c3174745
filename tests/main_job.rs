//! The main job (`vcpulab run` with no kernel): the built-in compute guest
//! prints its checksum on stdout, and vcpulab says on stderr what the checksum
//! should be, how fast the run was, and the QEMU command that prints the same.

mod common;

use std::process::Command;

fn run(args: &[&str]) -> (String, String, Option<i32>) {
    let out = Command::new(common::vcpulab_bin())
        .arg("run")
        .args(args)
        .output()
        .expect("vcpulab runs");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.code(),
    )
}

fn field<'a>(text: &'a str, key: &str) -> &'a str {
    let i = text
        .find(key)
        .unwrap_or_else(|| panic!("no {key} in {text:?}"))
        + key.len();
    text[i..].split_whitespace().next().unwrap()
}

#[test]
fn checksum_matches_the_expected_value() {
    for iters in [None, Some(1u64), Some(1000), Some(100_000)] {
        let p = iters.map(|n| format!("iters={n}"));
        let args: Vec<&str> = match &p {
            Some(p) => vec!["--param", p],
            None => vec![],
        };
        let (stdout, stderr, code) = run(&args);
        assert_eq!(code, Some(0), "{stdout}{stderr}");
        let got = field(&stdout, "checksum=");
        let expected = field(&stderr, "expected checksum=");
        assert_eq!(got, expected, "stdout {stdout:?} stderr {stderr:?}");
        let model = vcpulab::hw::loader::builtin_checksum(iters.unwrap_or(0));
        assert_eq!(got, format!("{model:#x}"));
        assert!(stderr.contains(" MIPS"), "{stderr}");
        let qemu = stderr
            .lines()
            .find_map(|l| l.strip_prefix("vcpulab: the same on QEMU: "))
            .expect("the QEMU command");
        assert!(qemu.starts_with("qemu-system-riscv64-10.0 -machine virt -bios none"));
        match iters {
            Some(n) => assert!(qemu.ends_with(&format!("data={n},data-len=8")), "{qemu}"),
            None => assert!(!qemu.contains("-device loader"), "{qemu}"),
        }
    }
}

#[test]
fn a_given_kernel_gets_no_summary() {
    let elf = common::guest("hello");
    let (_, stderr, code) = run(&["--kernel", elf.to_str().unwrap()]);
    assert_eq!(code, Some(0));
    assert!(!stderr.contains("expected checksum"), "{stderr}");
}
