//! `smp_timer_storm`, a guest the stress test assembles itself: hart 0 takes
//! machine-timer interrupts back to back (the handler re-arms `mtimecmp` =
//! `mtime` + delay until it has counted iters of them, then disarms) while
//! every other hart spins at the same time, so that under `--bql always` the
//! iothread, which runs the timers under the BQL, competes with vCPUs that
//! all want to execute. The guests of `guests/` give the iothread either
//! timers or busy harts, never both.
//!
//! Parameters (the usual block, `--param SLOT=VALUE`): slot 0 = iters
//! (default 20), slot 2 = delay in mtime ticks (default 1 000), slot 1 = 1:
//! the other harts also store to the UART scratch register on every pass of
//! their loop (a device access; the BQL under `--bql mmio`).
//!
//! Output: `timer interrupts: 0x` and the count in 8 hex digits, then the
//! finisher's PASS once hart 0 has counted iters interrupts and told the
//! other harts to stop (they park in `wfi`). Any other trap, on any hart,
//! ends the run with finisher FAIL code 3. The same ELF runs on QEMU
//! (`-device loader,addr=0x80100000,data=N,data-len=8` for iters).
//!
//! `stress.rs` includes this file with `#[path]`, beside `common`.

use crate::common::asm::{
    Asm, CSR_MCAUSE, CSR_MHARTID, CSR_MIE, CSR_MSTATUS, CSR_MTVEC, MRET, MTIME, MTIMECMP, Print,
    UART, WFI, elf64_exec, reg::*,
};
use crate::common::{PARAM_BLOCK, repo_root};
use std::path::PathBuf;

/// The guest's name.
pub const NAME: &str = "smp_timer_storm";

/// Where the harts' stop flag lives: RAM the image does not cover, on a
/// page of its own.
const STOP_FLAG: u64 = 0x8004_0000;

const T3: u8 = 28;
const T4: u8 = 29;
const T5: u8 = 30;
const T6: u8 = 31;

/// The line the guest prints for `iters` interrupts.
pub fn expected_output(iters: u64) -> String {
    format!("timer interrupts: 0x{iters:08x}\n")
}

/// The ELF image.
pub fn elf() -> Vec<u8> {
    let mut a = Asm::new(false);
    let p = Print::new(&mut a);
    let trap = a.label();
    let worker = a.label();
    let text = a.label();

    a.la_label(T0, trap);
    a.csrw(CSR_MTVEC, T0);
    a.csrr(A0, CSR_MHARTID);
    a.bne(A0, 0, worker);

    // Hart 0: s1 = iters, s2 = delay, s3 = interrupts taken (the handler's).
    let have_iters = a.label();
    a.ld_abs(S1, T0, PARAM_BLOCK);
    a.bne(S1, 0, have_iters);
    a.li32(S1, 20);
    a.bind(have_iters);
    let have_delay = a.label();
    a.ld_abs(S2, T0, PARAM_BLOCK + 16);
    a.bne(S2, 0, have_delay);
    a.li32(S2, 1000);
    a.bind(have_delay);
    a.li32(S3, 0);
    a.li32(T1, MTIME as i32);
    a.ld(T2, 0, T1);
    a.add(T2, T2, S2);
    a.li32(T1, MTIMECMP as i32);
    a.sd(T2, 0, T1);
    a.li32(T0, 0x80); // MTIE
    a.csrw(CSR_MIE, T0);
    a.csr(6, 0, CSR_MSTATUS, 8); // csrsi mstatus, MIE
    let spin = a.here();
    a.blt(S3, S1, spin);
    a.csr(7, 0, CSR_MSTATUS, 8); // csrci mstatus, MIE
    a.csrw(CSR_MIE, 0);
    a.la(T0, STOP_FLAG);
    a.li32(T1, 1);
    a.sd(T1, 0, T0);
    a.la_label(A0, text);
    a.jal(RA, p.puts);
    a.addi(A0, S3, 0);
    a.li32(A1, 8);
    a.jal(RA, p.puthex);
    a.li32(A0, '\n' as i32);
    a.jal(RA, p.putc);
    Print::finish_pass(&mut a);

    // The other harts: s4 = passes, until the stop flag; then park.
    a.bind(worker);
    let storm = a.label();
    let wloop = a.label();
    a.la(T2, STOP_FLAG);
    a.li32(T3, UART as i32);
    a.ld_abs(S5, T0, PARAM_BLOCK + 8);
    a.bne(S5, 0, storm);
    a.bind(wloop);
    a.addi(S4, S4, 1);
    a.ld(T1, 0, T2);
    a.beq(T1, 0, wloop);
    let park = a.here();
    a.emit32(WFI);
    a.j(park);
    a.bind(storm);
    a.addi(S4, S4, 1);
    a.sb(S4, 7, T3);
    a.ld(T1, 0, T2);
    a.beq(T1, 0, storm);
    a.j(park);

    // The handler: hart 0's timer interrupt, anything else fails.
    a.bind(trap);
    let bad = a.label();
    let rearm = a.label();
    a.csrr(T3, CSR_MCAUSE);
    a.li32(T4, 1);
    a.slli(T4, T4, 63);
    a.addi(T4, T4, 7);
    a.bne(T3, T4, bad);
    a.addi(S3, S3, 1);
    a.li32(T5, MTIMECMP as i32);
    a.blt(S3, S1, rearm);
    a.li32(T6, -1); // the last one: disarm
    a.sd(T6, 0, T5);
    a.emit32(MRET);
    a.bind(rearm);
    a.li32(T4, MTIME as i32);
    a.ld(T6, 0, T4);
    a.add(T6, T6, S2);
    a.sd(T6, 0, T5);
    a.emit32(MRET);
    a.bind(bad);
    Print::finish_fail(&mut a, 3, T5, T6);

    p.emit(&mut a);
    a.align(8);
    a.bind(text);
    let text_addr = a.pc();
    a.finish();
    let msg = b"timer interrupts: 0x\0";
    let len = (text_addr - crate::common::asm::BASE) as usize + msg.len();
    let mut image = vec![0u8; len.next_multiple_of(8)];
    a.write_code(&mut image);
    let o = (text_addr - crate::common::asm::BASE) as usize;
    image[o..o + msg.len()].copy_from_slice(msg);
    elf64_exec(crate::common::asm::BASE, crate::common::asm::BASE, &image)
}

/// Write the ELF where a reproduction command can find it after the test
/// (`target/stress-guests/smp_timer_storm.elf`) and return its path.
pub fn write_elf() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let dir = target.join("stress-guests");
    std::fs::create_dir_all(&dir).expect("create target/stress-guests");
    let path = dir.join(format!("{NAME}.elf"));
    // Write to a temporary name and rename: a concurrent test run never
    // executes a half-written file.
    let tmp = dir.join(format!("{NAME}.elf.{}", std::process::id()));
    std::fs::write(&tmp, elf()).expect("write the guest ELF");
    std::fs::rename(&tmp, &path).expect("rename the guest ELF");
    path
}
