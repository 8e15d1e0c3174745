//! Whole-machine cross-check: each guest in `guests/` (built ELFs in
//! `guests/build/`) must produce byte-identical UART output and the same exit
//! status on vcpulab (`--compat` of that QEMU) as on each QEMU
//! (`tests/common/qemu.rs`: 10.0 and 7.2, `-machine virt -bios none`), with
//! the hart named on both sides (`--cpu rv64,c=on,zba=on,zbb=on,zbs=on`, the
//! default `rv64`, and QEMU's `-cpu rv64,c=true,…` for the same hart).
//!
//! `qemu_runner_*` check the library's QEMU runner itself (`src/qemu.rs`):
//! a guest run to its end, and a hanging guest cut by the time limit.
//!
//! These guests are deterministic on plain QEMU (no `-icount`): they print no
//! times, cycle counts or misa/mstatus values. Each test is named
//! `GUEST::qemu_10_0` / `GUEST::qemu_7_2`.
//!
//! To add a guest: one line in `GUESTS` (and in `SMP_GUESTS` if it also runs
//! with several harts) and its check function below.

mod common;

use common::asm::Isa;
use common::qemu::{self, Qemu};
use common::{describe, guest, run_vcpulab};
use libtest_mimic::Trial;
use std::time::Duration;
use vcpulab::qemu::QemuGuestRun;

const QEMU_LIMIT: Duration = Duration::from_secs(30);
const VCPULAB_LIMIT: Duration = Duration::from_secs(60);
/// The hart both sides run: QEMU's default `rv64`, named.
const ISA: Isa = Isa::FULL;

/// The guests, one per line: test name and check.
const GUESTS: &[qemu::Check] = &[
    ("hello", hello),
    ("trap_tour", trap_tour),
    ("compute", compute),
    ("mmio", mmio),
    ("timer_irq", timer_irq),
    ("wfi_wake", wfi_wake),
    ("smc", smc),
    ("exit_code", exit_code),
    ("guests_with_several_harts", guests_with_several_harts),
    ("c_built_guests", c_built_guests),
    ("rvc_tour", rvc_tour),
    ("ialign_with_and_without_c", ialign_with_and_without_c),
    (
        "store_fault_in_a_self_looping_tb",
        store_fault_in_a_self_looping_tb,
    ),
    ("wfi_tail_under_icount", wfi_tail_under_icount),
    ("zb_all_extensions", zb_all_extensions),
    ("zb_extensions_off", zb_extensions_off),
    ("zb_decode_random_words", zb_decode_random_words),
    ("csr_probe", csr_probe),
    ("csr_probe_two_harts", csr_probe_two_harts),
    ("smp_guests", smp_guests),
    ("boot_layout", boot_layout),
    ("kick_mechanisms", kick_mechanisms),
    ("thread_modes", thread_modes),
    ("device_tree_address", device_tree_address),
    ("qemu_runner_hello", qemu_runner_hello),
    (
        "qemu_runner_cuts_spin_at_the_limit",
        qemu_runner_cuts_spin_at_the_limit,
    ),
];

/// The guests also compared at `-smp 2` and `-smp 3`, one per line.
const SMP_GUESTS: &[&str] = &[
    "hello",
    "trap_tour",
    "smc",
    "timer_irq",
    "wfi_wake",
    "mmio",
    "exit_code",
];

/// Run `name` with `params` on both and compare. Returns QEMU's stdout (for
/// sanity checks on what the guest printed).
fn compare(q: &Qemu, name: &str, params: &[(usize, u64)]) -> String {
    compare_with(q, name, params, &[], &[])
}

/// As [`compare`], with extra QEMU and vcpulab arguments.
fn compare_with(
    q: &Qemu,
    name: &str,
    params: &[(usize, u64)],
    qemu_extra: &[&str],
    extra: &[&str],
) -> String {
    compare_isa(q, name, ISA, params, qemu_extra, extra)
}

/// As [`compare_with`], on the hart `isa` (both sides).
fn compare_isa(
    q: &Qemu,
    name: &str,
    isa: Isa,
    params: &[(usize, u64)],
    qemu_extra: &[&str],
    extra: &[&str],
) -> String {
    let elf = guest(name);
    assert!(
        elf.is_file(),
        "missing guest ELF {} (run `make -C guests`)",
        elf.display()
    );
    let label = format!(
        "{name} {params:?} {qemu_extra:?} on QEMU {} (-cpu {})",
        q.version.label(),
        isa.cpu()
    );
    let r = q.run(&elf, isa, qemu_extra, params, QEMU_LIMIT);
    assert!(
        !r.timed_out,
        "QEMU timed out on {label}\n{}",
        describe("qemu", &r)
    );
    assert!(
        !r.stdout.is_empty(),
        "QEMU printed nothing for {label}\n{}",
        describe("qemu", &r)
    );
    let v = q.vcpulab(&elf, isa, extra, params, VCPULAB_LIMIT);
    assert!(
        !v.timed_out,
        "vcpulab timed out on {label}\n{}\n{}",
        describe("vcpulab", &v),
        describe("qemu", &r)
    );
    assert!(
        r.stdout == v.stdout,
        "UART output differs for {label}\n--- qemu ---\n{}\n--- vcpulab ---\n{}\nvcpulab stderr:\n{}",
        r.text(),
        v.text(),
        String::from_utf8_lossy(&v.stderr)
    );
    assert_eq!(
        r.code,
        v.code,
        "exit status differs for {label}\n{}\n{}",
        describe("qemu", &r),
        describe("vcpulab", &v)
    );
    r.text()
}

fn hello(q: &Qemu) {
    assert_eq!(compare(q, "hello", &[]), "Hello from vcpulab guest\n");
}

fn trap_tour(q: &Qemu) {
    let out = compare(q, "trap_tour", &[]);
    assert!(out.contains("ecall: mcause=0xb"), "{out}");
    assert!(out.ends_with("trap_tour done\n"), "{out}");
}

fn compute(q: &Qemu) {
    for iters in [1u64, 1000, 100_000] {
        let out = compare(q, "compute", &[(0, iters)]);
        assert!(
            out.starts_with(&format!("compute iters={iters} checksum=0x")),
            "{out}"
        );
    }
}

fn mmio(q: &Qemu) {
    for iters in [1u64, 777, 20_000] {
        let out = compare(q, "mmio", &[(0, iters)]);
        assert!(out.ends_with("mismatches=0\n"), "{out}");
    }
}

fn timer_irq(q: &Qemu) {
    // (iters, delay in mtime ticks); 0 = the guest's default
    for (iters, delay) in [(0u64, 0u64), (1, 5000), (20, 1000), (3, 200_000)] {
        let params = [(0, iters), (2, delay)];
        let params: Vec<(usize, u64)> = params.into_iter().filter(|&(_, v)| v != 0).collect();
        let out = compare(q, "timer_irq", &params);
        let n = if iters == 0 { 5 } else { iters };
        assert!(
            out.starts_with(&format!("timer interrupts: {n}\n")),
            "{out}"
        );
    }
}

fn wfi_wake(q: &Qemu) {
    for delay in [0u64, 50_000] {
        let params: Vec<(usize, u64)> = if delay == 0 { vec![] } else { vec![(2, delay)] };
        let out = compare(q, "wfi_wake", &params);
        assert!(out.starts_with("woke after wfi\n"), "{out}");
        assert!(out.contains("msip interrupts: 1\n"), "{out}");
    }
}

fn smc(q: &Qemu) {
    let out = compare(q, "smc", &[]);
    assert!(
        out.contains("after sw + fence.i smc_fn(10) = 12\n"),
        "{out}"
    );
}

fn exit_code(q: &Qemu) {
    compare(q, "exit_code", &[]);
    // compare() checked that both agree; also pin the value itself.
    let v = q.vcpulab(&guest("exit_code"), ISA, &[], &[], VCPULAB_LIMIT);
    assert_eq!(v.code, Some(3), "{}", describe("vcpulab", &v));
}

/// With two and three harts (the guests park harts 1.. in `wfi`): the same
/// bytes as QEMU `-smp N`, which runs its vCPUs in parallel (MTTCG) — and so
/// reports a misaligned AMO as a store fault, cause 6, not 4 (trap_tour).
fn guests_with_several_harts(q: &Qemu) {
    for n in ["2", "3"] {
        for name in SMP_GUESTS {
            compare_with(q, name, &[], &["-smp", n], &["--smp", n]);
        }
    }
}

/// `--accel tcg,thread=single|multi` against QEMU's `-accel` with the same
/// spelling: the misaligned-AMO cause follows the thread mode and the
/// possible vCPUs (6 with MTTCG and `maxcpus` > 1, even with one hart
/// present; 4 round-robin), and the SMP guests give the same bytes whether
/// one thread runs their harts in turn or one thread each.
fn thread_modes(q: &Qemu) {
    for smp in ["1", "1,maxcpus=2", "2"] {
        for t in ["single", "multi"] {
            let accel = format!("tcg,thread={t}");
            let q_args = ["-smp", smp, "-accel", &accel];
            let v_args = ["--smp", smp, "--accel", &accel];
            let out = compare_with(q, "trap_tour", &[], &q_args, &v_args);
            let parallel = t == "multi" && smp != "1";
            let want = if parallel { "mcause=0x6" } else { "mcause=0x4" };
            let line = out
                .lines()
                .find(|l| l.starts_with("amoswap.w misaligned"))
                .unwrap_or_else(|| panic!("no misaligned amoswap line in {out}"));
            assert!(line.contains(want), "{smp} {t}: {line}");
            compare_with(q, "csr_probe", &[], &q_args, &v_args);
        }
    }
    let single = ["-smp", "2", "-accel", "tcg,thread=single"];
    let v_single = ["--smp", "2", "--accel", "tcg,thread=single"];
    compare_with(q, "smp_compute", &[(0, 20_000)], &single, &v_single);
    compare_with(q, "smp_ipi_pingpong", &[(0, 200)], &single, &v_single);
    for mode in 0..3 {
        compare_with(
            q,
            "smp_spinlock",
            &[(0, 3_000), (4, mode)],
            &single,
            &v_single,
        );
    }
    for name in SMP_GUESTS {
        compare_with(q, name, &[], &single, &v_single);
    }
}

/// Whether `q` is QEMU 7.2 (where the versions differ, the tests say so).
fn is_7_2(q: &Qemu) -> bool {
    q.version == qemu::QemuVersion::V7_2
}

/// The guests built with the C extension (`guests/build/c/`, `-march=rv64imac`):
/// compressed code throughout, the same output as QEMU's.
fn c_built_guests(q: &Qemu) {
    for name in [
        "c/hello",
        "c/trap_tour",
        "c/mmio",
        "c/timer_irq",
        "c/wfi_wake",
        "c/smc",
        "c/exit_code",
        "c/ialign",
        "c/zb",
        "c/csr_probe",
    ] {
        compare(q, name, &[]);
    }
    // The same checksum as the uncompressed build.
    let out = compare(q, "c/compute", &[(0, 100_000)]);
    assert_eq!(out, compare(q, "compute", &[(0, 100_000)]));
    for n in ["2", "3"] {
        for name in ["c/hello", "c/trap_tour", "c/smc", "c/wfi_wake"] {
            compare_with(q, name, &[], &["-smp", n], &["--smp", n]);
        }
    }
}

/// Every compressed instruction, the reserved encodings, 2-aligned targets,
/// line- and page-crossing instructions, mepc with bit 1. QEMU 7.2 aborts on
/// a 32-bit instruction that crosses the end of RAM (slot 3 = 1 skips that
/// probe); QEMU 10.0 raises an instruction access fault at its second half.
fn rvc_tour(q: &Qemu) {
    let params: &[(usize, u64)] = if is_7_2(q) { &[(3, 1)] } else { &[] };
    let out = compare(q, "rvc_tour", params);
    assert!(
        out.contains("c.jr x0: mcause=0x2 mtval=0x8002 mepc=probe+0\n"),
        "{out}"
    );
    assert!(
        out.contains("all-zero halfword: mcause=0x2 mtval=0x0"),
        "{out}"
    );
    assert!(out.contains("mret to pc%4==2: 7\n"), "{out}");
    assert!(out.contains("mret to an odd mepc: 9\n"), "{out}");
    assert!(out.ends_with("rvc_tour done\n"), "{out}");
    if is_7_2(q) {
        assert!(
            out.contains("c.ebreak: mcause=0x3 mtval=0x0 mepc=probe+0\n"),
            "{out}"
        );
    } else {
        assert!(
            out.contains("c.ebreak: mcause=0x3 mtval=probe+0 mepc=probe+0\n"),
            "{out}"
        );
        assert!(
            out.contains(
                "32-bit insn across the end of RAM: mcause=0x1 mtval=probe+2 mepc=probe+0\n"
            ),
            "{out}"
        );
    }
    for shift in ["0", "4"] {
        let ic = format!("shift={shift},sleep=off");
        compare_with(q, "rvc_tour", params, &["-icount", &ic], &["--icount", &ic]);
    }
}

/// IALIGN: with C (the default hart) 2-aligned targets run; with C off they
/// trap with cause 0 and compressed halfwords are illegal (mtval = the
/// halfword). mtval of a misaligned jal/branch differs between QEMU 7.2 (the
/// jump's pc) and 10.0 (the target).
fn ialign_with_and_without_c(q: &Qemu) {
    for name in ["ialign", "c/ialign"] {
        let out = compare(q, name, &[]);
        assert!(out.contains("misa.C = 1\n"), "{out}");
        assert!(out.contains("jal to pc%4==2: a0=11 no trap\n"), "{out}");
    }
    let no_c = Isa { c: false, ..ISA };
    let out = compare_isa(q, "ialign", no_c, &[], &[], &[]);
    assert!(out.contains("misa.C = 0\n"), "{out}");
    if is_7_2(q) {
        assert!(
            out.contains("jal to pc%4==2: a0=10 mcause=0x0 mtval=probe+0 mepc=probe+0\n"),
            "{out}"
        );
        assert!(
            out.contains("compressed halfwords: a0=10 mcause=0x2 mtval=0x505"),
            "{out}"
        );
    } else {
        assert!(
            out.contains("jal to pc%4==2: a0=10 mcause=0x0 mtval=probe+126"),
            "{out}"
        );
    }
    // The other guests, built without C, behave the same with C off.
    for name in [
        "hello",
        "trap_tour",
        "smc",
        "timer_irq",
        "mmio",
        "exit_code",
    ] {
        compare_isa(q, name, no_c, &[], &[], &[]);
    }
}

/// A store access fault in a TB that loops on itself: minstret (under
/// `-icount shift=0`, instructions) counts every earlier pass.
fn store_fault_in_a_self_looping_tb(q: &Qemu) {
    let ic = ["-icount", "shift=0,sleep=off"];
    let vic = ["--icount", "shift=0,sleep=off"];
    for passes in [1u64, 100, 1000] {
        for name in ["store_fault_loop", "c/store_fault_loop"] {
            let out = compare_with(q, name, &[(0, passes)], &ic, &vic);
            assert!(
                out.contains("mcause = 0x7\nmtval = 0x88000000\ntraps = 1\n"),
                "{out}"
            );
        }
    }
    let out = compare_with(q, "store_fault_loop", &[], &ic, &vic);
    assert!(out.ends_with("minstret delta = 344\n"), "{out}");
}

/// The instructions after a wfi that QEMU counts twice under icount: capped
/// by the TB size limit; the same on QEMU 7.2 and 10.0.
fn wfi_tail_under_icount(q: &Qemu) {
    for shift in ["0", "3", "7"] {
        let ic = format!("shift={shift},sleep=off");
        for name in [
            "wfi_tail",
            "c/wfi_tail",
            "c/wfi_wake",
            "c/wfi_sleep",
            "c/timer_landing",
        ] {
            compare_with(q, name, &[], &["-icount", &ic], &["--icount", &ic]);
        }
    }
}

/// Every Zba/Zbb/Zbs instruction over edge values, and the encodings next to
/// them that QEMU rejects, with all three extensions on.
fn zb_all_extensions(q: &Qemu) {
    let out = compare(q, "zb", &[]);
    assert!(out.ends_with("zb done\n"), "{out}");
    assert!(!out.contains('!'), "a Zb* instruction trapped");
    assert!(
        out.contains("rev8 a=0x123456789abcdef: 0xefcdab8967452301\n"),
        "{out}"
    );
    // The encodings QEMU rejects trap with cause 2 and the word in mtval.
    assert!(
        out.contains("illegal zext_h_rv32: mcause=0x2 mtval=0x805c533 mepc=probe+0\n"),
        "{out}"
    );
    // QEMU 7.2's ctzw counts over 64 bits (see bitmanip::exec).
    let ctzw = if is_7_2(q) {
        "ctzw a=0x8000000000000000: 0x3f\n"
    } else {
        "ctzw a=0x8000000000000000: 0x20\n"
    };
    assert!(out.contains(ctzw), "{out}");
}

/// Each extension switched off, and all three: its instructions raise an
/// illegal instruction exception with the word in mtval; the others run.
fn zb_extensions_off(q: &Qemu) {
    for (isa, off_insn) in [
        (Isa { zba: false, ..ISA }, "sh1add a=0x0:"),
        (Isa { zbb: false, ..ISA }, "andn a=0x0:"),
        (Isa { zbs: false, ..ISA }, "bset a=0x0:"),
        (
            Isa {
                zba: false,
                zbb: false,
                zbs: false,
                ..ISA
            },
            "rev8 a=0x0:",
        ),
    ] {
        let out = compare_isa(q, "zb", isa, &[], &[], &[]);
        let line = out.lines().find(|l| l.starts_with(off_insn)).unwrap();
        assert!(line.contains(" !c=0x2,tval=0x"), "{}: {line}", isa.cpu());
        assert!(out.ends_with("zb done\n"), "{out}");
    }
}

/// 30 000 pseudo-random words of the OP, OP-IMM, OP-32 and OP-IMM-32 opcodes
/// (biased towards the Zb* encodings and their neighbours): the same words
/// are illegal, and the others compute the same results, with every
/// extension on and with each one off.
fn zb_decode_random_words(q: &Qemu) {
    for isa in [
        ISA,
        Isa { zba: false, ..ISA },
        Isa { zbb: false, ..ISA },
        Isa { zbs: false, ..ISA },
    ] {
        let out = compare_isa(q, "zb_decode", isa, &[], &[], &[]);
        let last = out.lines().last().unwrap_or("");
        assert!(last.starts_with("words 30000 illegal "), "{last}");
        assert!(!out.contains("unexpected trap"), "{out}");
    }
}

/// The CSR/AMO-level probe (machine-information CSRs, mie, mcounteren,
/// mcountinhibit, counters, AMO/LR/SC faults): without icount (counters only
/// checked to move), and under `-icount shift=N,sleep=off` with absolute
/// counter values.
fn csr_probe(q: &Qemu) {
    let out = compare(q, "csr_probe", &[]);
    assert!(out.ends_with("csr_probe done\n"), "{out}");
    let (archid, amo) = if is_7_2(q) {
        ("marchid = 0x70216\n", "mcause=0x5")
    } else {
        ("marchid = 0x0\n", "mcause=0x7")
    };
    assert!(out.contains(archid), "{out}");
    assert!(
        out.contains(&format!("amoadd.d 0x90000000: {amo} mtval=0x90000000")),
        "{out}"
    );
    for shift in ["0", "1", "3", "7", "10"] {
        let icount = format!("shift={shift},sleep=off");
        let out = compare_with(
            q,
            "csr_probe",
            &[(0, 1)],
            &["-icount", &icount],
            &["--icount", &icount],
        );
        let hex = |prefix: &str| {
            let line = out.lines().find(|l| l.starts_with(prefix)).unwrap();
            u64::from_str_radix(&line.split(' ').nth(1).unwrap()[2..], 16).unwrap()
        };
        // QEMU 10.0 counts instructions, 7.2 reads the icount clock.
        let (first, c0) = (hex("instret "), hex("cycle "));
        if is_7_2(q) {
            assert!(first > c0, "instret {first:#x} / cycle {c0:#x}");
        } else {
            assert!(
                shift == "0" || first < c0,
                "shift={shift}: instret {first:#x} / cycle {c0:#x}"
            );
        }
    }
}

/// The probe with two harts (QEMU runs them in parallel, MTTCG): misaligned
/// AMOs are store faults (cause 6) on both versions.
fn csr_probe_two_harts(q: &Qemu) {
    let out = compare_with(q, "csr_probe", &[], &["-smp", "2"], &["--smp", "2"]);
    assert!(
        out.contains("amoadd.w cell+2: mcause=0x6 mtval=cell+2"),
        "{out}"
    );
}

/// The SMP guests (`guests/README.md`): every hart busy, the same bytes as
/// QEMU's MTTCG at -smp 1, 2 and 4, except the racy counter's `racy:` line,
/// whose value depends on the interleaving; on vcpulab under every BQL
/// policy.
fn smp_guests(q: &Qemu) {
    for n in ["1", "2", "4"] {
        for policy in ["mmio", "device", "always"] {
            let smp = ["--smp", n, "--bql", policy];
            let qsmp = ["-smp", n];
            compare_with(q, "smp_compute", &[(0, 20_000)], &qsmp, &smp);
            for target in 0..4u64 {
                compare_with(q, "smp_mmio_storm", &[(0, 5_000), (4, target)], &qsmp, &smp);
            }
            compare_with(q, "smp_ipi_pingpong", &[(0, 200)], &qsmp, &smp);
            for mode in 0..3u64 {
                let out = compare_with(q, "smp_spinlock", &[(0, 5_000), (4, mode)], &qsmp, &smp);
                assert!(out.contains(" ok\n"), "{out}");
            }
        }
    }
    // The racy counter: every line but `racy:` is the same.
    let elf = guest("smp_racy_counter");
    let strip = |t: String| -> String {
        t.lines()
            .filter(|l| !l.starts_with("racy:"))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let r = q.run(&elf, ISA, &["-smp", "2"], &[(0, 20_000)], QEMU_LIMIT);
    let v = q.vcpulab(&elf, ISA, &["--smp", "2"], &[(0, 20_000)], VCPULAB_LIMIT);
    assert_eq!(
        strip(r.text()),
        strip(v.text()),
        "{}",
        describe("vcpulab", &v)
    );
    assert_eq!(r.code, v.code);
}

/// The guests that sleep in `wfi` and are woken by timers and IPIs, with the
/// vCPUs woken by each kick mechanism (`--kick`; futex, the default, runs
/// everywhere else): the same bytes as QEMU.
fn kick_mechanisms(q: &Qemu) {
    for kick in ["signal", "eventfd"] {
        let k = ["--kick", kick];
        compare_with(q, "timer_irq", &[(0, 20), (2, 1000)], &[], &k);
        compare_with(q, "wfi_wake", &[], &[], &k);
        compare_with(
            q,
            "wfi_sleep",
            &[],
            &["-icount", "shift=3,sleep=off"],
            &["--kick", kick, "--icount", "shift=3,sleep=off"],
        );
        compare_with(
            q,
            "smp_ipi_pingpong",
            &[(0, 200)],
            &["-smp", "2"],
            &["--kick", kick, "--smp", "2"],
        );
        compare_with(
            q,
            "smp_spinlock",
            &[(0, 2000)],
            &["-smp", "2"],
            &["--kick", kick, "--smp", "2", "--bql", "always"],
        );
    }
}

/// ELFs linked the usual way (gcc's default linker script at
/// `-Ttext=0x80000000`: the first LOAD segment starts below RAM; one has its
/// e_entry elsewhere than the start of RAM): the same bytes as QEMU.
fn boot_layout(q: &Qemu) {
    for name in ["boot_regs", "entry_startup"] {
        compare(q, name, &[]);
    }
}

/// The device-tree address the reset ROM puts in a1, for several RAM sizes
/// (QEMU 7.2 caps it at 0xbfe00000 from 1G up; 10.0 does not).
fn device_tree_address(q: &Qemu) {
    for mem in ["128M", "1G", "2G", "3G", "4G", "8G"] {
        compare_with(q, "boot_regs", &[], &["-m", mem], &["--memory", mem]);
    }
}

/// `spin` never stops by itself: vcpulab's `--timeout 1` must end it with 124.
/// (Needs no QEMU.)
fn spin_times_out_with_124() {
    let v = run_vcpulab(
        &guest("spin"),
        &["--timeout", "1"],
        &[],
        Duration::from_secs(30),
    );
    assert!(
        !v.timed_out,
        "vcpulab ignored --timeout 1\n{}",
        describe("vcpulab", &v)
    );
    assert_eq!(v.code, Some(124), "{}", describe("vcpulab", &v));
    assert_eq!(v.text(), "spinning\n");
}

/// The library's runner, in vcpulab's spellings: `hello` runs to its end.
fn qemu_runner_hello(q: &Qemu) {
    let run = QemuGuestRun::new(guest("hello")).cpu("rv64").memory("128M");
    let args = q.guest_args(&run).expect("QEMU arguments");
    let o = q.0.run(&args, QEMU_LIMIT).expect("spawn QEMU");
    assert!(!o.timed_out, "QEMU {} timed out on hello", q.version);
    assert_eq!(o.code(), Some(0), "{o:?}");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "Hello from vcpulab guest\n"
    );
    assert!(o.wall < QEMU_LIMIT, "{:?}", o.wall);
}

/// The library's runner kills a guest that never stops once the limit has
/// passed, keeping what it printed.
fn qemu_runner_cuts_spin_at_the_limit(q: &Qemu) {
    let limit = Duration::from_millis(700);
    let args = q
        .guest_args(&QemuGuestRun::new(guest("spin")))
        .expect("QEMU arguments");
    let o = q.0.run(&args, limit).expect("spawn QEMU");
    assert!(
        o.timed_out,
        "QEMU {} ended spin by itself: {o:?}",
        q.version
    );
    assert_eq!(o.code(), None, "killed, so no exit code: {o:?}");
    assert!(o.wall >= limit, "{:?}", o.wall);
    assert!(o.wall < limit + Duration::from_secs(10), "{:?}", o.wall);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "spinning\n");
}

fn main() {
    let mut trials = vec![Trial::test("spin_times_out_with_124", || {
        spin_times_out_with_124();
        Ok(())
    })];
    for &(name, check) in GUESTS {
        trials.extend(qemu::trials(name, check));
    }
    qemu::main(trials, 2)
}
