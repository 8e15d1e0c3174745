//! Random *time* programs for the icount differential test
//! (`tests/qemu_icount_diff.rs`): RV64IM code that reads time (`rdtime`,
//! `csrr time`, MMIO loads of `mtime` and its 4-byte halves), arms and disarms
//! the CLINT timer (8-byte and 4-byte-half writes of `mtimecmp`), takes timer
//! and software interrupts and `ecall`s, sleeps in `wfi`, polls `mip`, and
//! touches the UART scratch register. Under `-icount shift=N,sleep=off` QEMU
//! 7.2 runs such a program deterministically, so vcpulab must print the same
//! bytes.
//!
//! Every program is a pure function of its seed. The machine code is emitted
//! directly with the encoders of `randprog.rs` and wrapped in the same minimal
//! ELF (`randprog::elf64_exec`). Each body *unit* is generated from its own
//! PRNG (seeded from the program seed and the unit index) and is safe on its
//! own (it cannot hang whatever state the earlier units left), so any subset of
//! the units is again a valid program: the test shrinks a mismatch by dropping
//! units (`Program::generate(seed, Some(&kept))`).
//!
//! Layout:
//!
//! | address       | what                                                        |
//! |---------------|-------------------------------------------------------------|
//! | `0x8000_0000` | code: prologue, body, epilogue, print routines, handler     |
//! | `0x8000_8000` | rodata: timer action table, initial registers, names        |
//! | `0x8000_9000` | handler save area / counters (`mscratch` points here)       |
//! | `0x8000_A000` | trap log: 256 entries of (cause, mepc - base, x27, time)    |
//! | `0x8000_C000` | body log: one doubleword per entry, `x26` is the pointer    |
//! | `0x8000_E000` | epilogue register save area                                 |
//!
//! Registers of the body: `x1`..`x19` random ALU registers; `x20` = CLINT base
//! (0x200_0000); `x21` = UART base; `x22` time value; `x23`, `x24` scratch;
//! `x25` loop counter; `x26` body log pointer; `x27` step counter (incremented
//! at every unit start and every loop iteration; the trap handler logs it).
//! `x28`..`x31` belong to the trap handler (it swaps `x31` with `mscratch` and
//! saves `x28`..`x30`).
//!
//! The trap handler (direct `mtvec`, or vectored with one stub per slot that
//! records the slot number) logs every trap as (mcause | slot << 16,
//! mepc - 0x8000_0000, x27, time) and then: `ecall` → mepc += 4; machine
//! software interrupt → msip = 0; machine timer interrupt → action `k` of the
//! program's action table (`k` = timer interrupts so far): re-arm `mtimecmp` =
//! time + delta (delta may be 0 or negative: an immediate re-trigger, bounded
//! by the table's length) or disarm (-1); after the table, always disarm.
//! Anything else fails the run (finisher 0x3333 | 3 << 16).
//!
//! The epilogue reads the final time, mtimecmp and MMIO mtime, disables
//! interrupts and prints `x1`..`x27`, those three values, the body log, the
//! trap log and the timer interrupt count, then `end`, and writes 0x5555 to
//! the finisher.
#![allow(dead_code)]

use super::asm::*;
use std::fmt::Write as _;

pub const CODE_LIMIT: u64 = 0x8000_8000;
pub const RODATA: u64 = 0x8000_8000;
const RO_ACTIONS: u64 = RODATA; // up to 64 * 8
const RO_INIT: u64 = RODATA + 0x200; // 32 * 8
const RO_NAMES: u64 = RODATA + 0x300; // 32 * 16
const RO_STR: u64 = RODATA + 0x600; // strings, 32 bytes each
pub const HSAVE: u64 = 0x8000_9000;
pub const HLOG: u64 = 0x8000_A000;
pub const HLOG_MAX: u64 = 256;
pub const BLOG: u64 = 0x8000_C000;
pub const BLOG_MAX: usize = 1024;
pub const SAVE: u64 = 0x8000_E000;
/// 4 KiB scratch region the memory loops walk (random initial bytes).
pub const SCRATCH: u64 = 0x8000_F000;
pub const END: u64 = 0x8001_0000;

// handler save area offsets
const HS_X28: i64 = 0;
const HS_X29: i64 = 8;
const HS_X30: i64 = 16;
const HS_LOGN: i64 = 24;
const HS_TIMERN: i64 = 32;
const HS_SLOT: i64 = 40;

/// Marker in the action table: disarm (write -1) instead of re-arming.
const DISARM: u64 = 0x8000_0000_0000_0000;
/// Maximum length of the action table.
pub const MAX_ACTIONS: usize = 48;

/// Number of value lines the epilogue prints first: x1..x27, time, mtimecmp, mtime.
pub const VALUE_LINES: usize = 30;

// registers
const RA: u8 = 1;
const CL: u8 = 20; // CLINT base
const UA: u8 = 21; // UART base
const TV: u8 = 22; // time value
const TA: u8 = 23; // scratch
const TB: u8 = 24; // scratch
const LC: u8 = 25; // loop counter
const LP: u8 = 26; // body log pointer
const STEP: u8 = 27; // step counter
const X28: u8 = 28;
const X29: u8 = 29;
const X30: u8 = 30;
const X31: u8 = 31;

/// Disassembly (the shared disassembler knows wfi and the CSR names).
pub fn disasm_t(w: u32, pc: u64) -> String {
    disasm(w, pc)
}

// ---------------------------------------------------------------------------
// Program-level choices

/// How a time value is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimeRead {
    /// `csrrs rd, time, x0` (rdtime).
    Rdtime,
    /// `csrrc rd, time, x0`.
    Csrrc,
    /// `csrrsi rd, time, 0`.
    Csrrsi,
    /// `ld` of mtime (8-byte MMIO).
    Mmio64,
    /// `lwu` of the low half of mtime.
    MmioLo,
    /// `lw` of the high half of mtime.
    MmioHi,
}

/// How mtimecmp is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpWrite {
    /// One `sd`.
    Full,
    /// `sw` low half, then `sw` high half.
    LoHi,
    /// `sw` high half, then `sw` low half.
    HiLo,
}

/// The program-wide choices (drawn from the program seed before any unit).
#[derive(Clone, Debug)]
pub struct Shape {
    pub units: usize,
    pub vectored: bool,
    /// Handler: how it reads the time it logs (`true`: MMIO ld of mtime).
    pub handler_log_mmio: bool,
    /// Handler: how it reads the time it re-arms relative to.
    pub handler_rearm_mmio: bool,
    /// Handler: how it writes mtimecmp when re-arming.
    pub handler_write: String,
    /// Timer actions: delta (as i64) or `DISARM`.
    pub actions: Vec<u64>,
    /// Prologue: disarm the timer (otherwise mtimecmp = 0 from reset: MTIP pending).
    pub prologue_disarm: bool,
    /// Initial mie (subset of MTIE | MSIE) and mstatus.MIE.
    pub init_mie: u64,
    pub init_mstatus_mie: bool,
}

/// One generated program.
#[derive(Clone, Debug)]
pub struct Program {
    pub seed: u64,
    pub shape: Shape,
    /// Generation indices of the units present (all `0..shape.units`, or a subset).
    pub kept: Vec<usize>,
    pub image: Vec<u8>,
    pub words: Vec<Insn>,
    /// The extensions it was generated for (`-cpu` / `--cpu` of both machines).
    pub isa: Isa,
}

/// Generator switches. Everything is on by default except writes to
/// `mcountinhibit`: how QEMU 7.2 reads an inhibited mcycle/minstret is a
/// known difference vcpulab does not reproduce in every case (see
/// docs/machine.md); `VCPULAB_ICOUNT_DIFF_WITH=mcountinhibit` turns it on.
#[derive(Clone, Copy, Debug, Default)]
pub struct GenOptions {
    /// Writes to `mcountinhibit` (QEMU 7.2's inhibit semantics are quirky).
    pub mcountinhibit: bool,
    /// No loops with faults off the end of RAM (`loop_fault_unit`); they
    /// are generated by default (`false` here).
    pub no_fault_loops: bool,
    /// No loops over the scratch region and MMIO (`loop_mem_unit`).
    pub no_mem_loops: bool,
    /// The extensions the program uses (C: compressed encodings; Zb*: their
    /// instructions among the ALU ops).
    pub isa: Isa,
}

struct Gen {
    opts: GenOptions,
    rng: SplitMix64,
    /// Body log entries emitted so far (bounded by BLOG_MAX).
    log_entries: usize,
}

/// A random register of the ALU set (x1..x19).
pub fn rand_reg(rng: &mut SplitMix64) -> u8 {
    rng.range(1, 19) as u8
}

impl Gen {
    fn time_read_kind(&mut self) -> TimeRead {
        match self.rng.below(12) {
            0..=3 => TimeRead::Rdtime,
            4 => TimeRead::Csrrc,
            5 => TimeRead::Csrrsi,
            6..=8 => TimeRead::Mmio64,
            9 | 10 => TimeRead::MmioLo,
            _ => TimeRead::MmioHi,
        }
    }
    fn cmp_write_kind(&mut self) -> CmpWrite {
        match self.rng.below(6) {
            0..=3 => CmpWrite::Full,
            4 => CmpWrite::LoHi,
            _ => CmpWrite::HiLo,
        }
    }
    fn delta(&mut self) -> i64 {
        match self.rng.below(20) {
            0 => 0,
            1 => -(self.rng.range(1, 5)),
            2 => -(self.rng.range(1, 1000)),
            3..=6 => self.rng.range(1, 20),
            7 => self.rng.range(2001, 100_000),
            _ => self.rng.range(1, 2000),
        }
    }
}

/// `rd = time` read the given way (uses x23 for the MMIO address).
pub fn emit_time_read(a: &mut Asm, k: TimeRead, rd: u8, addr_reg: u8) {
    match k {
        TimeRead::Rdtime => a.csr(2, rd, CSR_TIME, 0),
        TimeRead::Csrrc => a.csr(3, rd, CSR_TIME, 0),
        TimeRead::Csrrsi => a.csr(6, rd, CSR_TIME, 0),
        TimeRead::Mmio64 | TimeRead::MmioLo | TimeRead::MmioHi => {
            a.lui(addr_reg, ((MTIME + 8) >> 12) as u32); // 0x200c000
            match k {
                TimeRead::Mmio64 => a.ld(rd, -8, addr_reg),
                TimeRead::MmioLo => a.load(6, rd, -8, addr_reg), // lwu
                _ => a.load(2, rd, -4, addr_reg),                // lw (sign-extends)
            }
        }
    }
}

/// Write `val` to mtimecmp the given way (clobbers `addr_reg` and, for HiLo,
/// `tmp`; for LoHi, `val` is shifted right by 32 afterwards).
fn emit_cmp_write(a: &mut Asm, k: CmpWrite, val: u8, addr_reg: u8, tmp: u8) {
    a.lui(addr_reg, (MTIMECMP >> 12) as u32);
    match k {
        CmpWrite::Full => a.sd(val, 0, addr_reg),
        CmpWrite::LoHi => {
            a.sw(val, 0, addr_reg);
            a.srli(val, val, 32);
            a.sw(val, 4, addr_reg);
        }
        CmpWrite::HiLo => {
            a.srli(tmp, val, 32);
            a.sw(tmp, 4, addr_reg);
            a.sw(val, 0, addr_reg);
        }
    }
}

/// `rd += imm` for any 32-bit imm (uses `tmp` when it does not fit 12 bits).
pub fn emit_add_imm(a: &mut Asm, rd: u8, imm: i64, tmp: u8) {
    if (-2048..=2047).contains(&imm) {
        a.addi(rd, rd, imm);
    } else {
        a.li32(tmp, imm as i32);
        a.add(rd, rd, tmp);
    }
}

/// A random ALU instruction on x1..x19 (reads may also use x22 = time).
pub fn alu_word(rng: &mut SplitMix64, isa: Isa) -> u32 {
    let rd = rand_reg(rng);
    let rs1 = if rng.chance(10) { TV } else { rand_reg(rng) };
    let rs2 = rand_reg(rng);
    if rng.chance(25) {
        if let Some(w) = isa.zb_insn(rng, rd, rs1, rs2) {
            return w;
        }
    }
    match rng.below(10) {
        0..=4 => {
            let (f7, f3, op) = rng.pick(&[
                (0, 0, OP_OP),
                (0x20, 0, OP_OP),
                (0, 1, OP_OP),
                (0, 2, OP_OP),
                (0, 3, OP_OP),
                (0, 4, OP_OP),
                (0, 5, OP_OP),
                (0x20, 5, OP_OP),
                (0, 6, OP_OP),
                (0, 7, OP_OP),
                (0, 0, OP_OP32),
                (0x20, 0, OP_OP32),
                (1, 0, OP_OP),
                (1, 1, OP_OP),
                (1, 4, OP_OP),
                (1, 5, OP_OP),
                (1, 6, OP_OP),
                (1, 7, OP_OP),
                (1, 0, OP_OP32),
            ]);
            r_type(f7, rs2, rs1, f3, rd, op)
        }
        5..=7 => {
            let f3 = rng.pick(&[0, 2, 3, 4, 6, 7]);
            i_type(rng.range(-2048, 2047), rs1, f3, rd, OP_IMM)
        }
        _ => {
            let (f3, hi) = rng.pick(&[(1u32, 0i64), (5, 0), (5, 0x400)]);
            i_type(hi | rng.below(64) as i64, rs1, f3, rd, OP_IMM)
        }
    }
}

impl Gen {
    /// Append x22 to the body log (if there is room).
    fn log_tv(&mut self, a: &mut Asm) {
        if self.log_entries < BLOG_MAX {
            self.log_entries += 1;
            a.sd(TV, 0, LP);
            a.note("log");
            a.addi(LP, LP, 8);
        }
        if self.rng.chance(30) {
            let r = rand_reg(&mut self.rng);
            a.emit(r_type(0, TV, r, 4, r, OP_OP)); // xor r, r, x22
        }
    }

    fn unit(&mut self, a: &mut Asm) {
        a.addi(STEP, STEP, 1);
        let w = [
            14,                                           // 0 ALU
            14,                                           // 1 time read
            10,                                           // 2 arm mtimecmp
            3,                                            // 3 disarm
            8,                                            // 4 mstatus.MIE
            6,                                            // 5 mie
            10,                                           // 6 loop
            8,                                            // 7 wfi
            4,                                            // 8 poll mip
            5,                                            // 9 UART scratch
            5,                                            // 10 msip
            4,                                            // 11 ecall
            3,                                            // 12 mtimecmp read
            6, // 13 exception (decode-time or restore-path)
            3, // 14 mtime write
            5, // 15 cycle/instret counters
            4, // 16 long straight-line block (maybe a wfi inside)
            3, // 17 stale QEMU timer + wfi
            3, // 18 wfi in a loop
            if self.opts.no_fault_loops { 0 } else { 5 }, // 19 loop with faults off the end of RAM
            if self.opts.no_mem_loops { 0 } else { 5 }, // 20 loop over memory and MMIO
        ];
        match self.rng.weighted(&w) {
            0 => {
                for _ in 0..self.rng.range(1, 4) {
                    let w = alu_word(&mut self.rng, self.opts.isa);
                    a.emit(w);
                }
            }
            1 => {
                let k = self.time_read_kind();
                emit_time_read(a, k, TV, TA);
                self.log_tv(a);
            }
            2 => {
                // mtimecmp = (time read just now) + delta
                let k = self.time_read_kind();
                let k = if matches!(k, TimeRead::MmioHi) {
                    TimeRead::Mmio64
                } else {
                    k
                };
                let d = self.delta();
                emit_time_read(a, k, TV, TA);
                emit_add_imm(a, TV, d, TB);
                let wk = self.cmp_write_kind();
                if self.rng.chance(50) {
                    self.log_tv(a);
                }
                emit_cmp_write(a, wk, TV, TA, TB);
                a.note(&format!("arm: delta {d}, {wk:?}"));
            }
            3 => {
                a.addi(TB, 0, -1);
                let wk = self.cmp_write_kind();
                emit_cmp_write(a, wk, TB, TA, TV);
                a.note("disarm");
            }
            4 => {
                // mstatus.MIE on/off
                let f3 = if self.rng.chance(55) { 6 } else { 7 };
                if self.rng.chance(70) {
                    a.csr(f3, 0, CSR_MSTATUS, 8);
                } else {
                    a.addi(TA, 0, 8);
                    a.csr(f3 - 4, 0, CSR_MSTATUS, TA);
                }
            }
            5 => {
                let mask = self.rng.pick(&[0x80i64, 0x80, 0x8, 0x88]);
                let f3 = if self.rng.chance(60) { 2 } else { 3 };
                a.addi(TA, 0, mask);
                if self.rng.chance(30) {
                    a.csr(f3, TV, CSR_MIE, TA);
                    self.log_tv(a);
                } else {
                    a.csr(f3, 0, CSR_MIE, TA);
                }
            }
            6 => self.loop_unit(a),
            7 => self.wfi_unit(a),
            8 => {
                // poll mip.MTIP with a bounded loop; log the remaining count
                let n = self.rng.range(1, 3000);
                a.li32(LC, n as i32);
                let top = a.here();
                let done = a.label();
                a.csrr(TV, CSR_MIP);
                a.andi(TV, TV, 0x80);
                a.bne(TV, 0, done);
                a.addi(LC, LC, -1);
                a.bne(LC, 0, top);
                a.bind(done);
                a.addi(TV, LC, 0);
                self.log_tv(a);
            }
            9 => {
                let r = rand_reg(&mut self.rng);
                a.sb(r, 7, UA);
                a.note("UART scratch write");
                if self.rng.chance(60) {
                    for _ in 0..self.rng.below(3) {
                        let w = alu_word(&mut self.rng, self.opts.isa);
                        a.emit(w);
                    }
                    a.lbu(TV, 7, UA);
                    self.log_tv(a);
                }
            }
            10 => {
                if self.rng.chance(60) {
                    a.addi(TA, 0, 8);
                    a.csr(2, 0, CSR_MIE, TA);
                }
                a.addi(TB, 0, 1);
                a.sw(TB, 0, CL);
                a.note("msip = 1");
                if self.rng.chance(30) {
                    a.load(2, TV, 0, CL);
                    self.log_tv(a);
                }
            }
            11 => {
                a.emit(ECALL);
            }
            12 => {
                a.lui(TA, (MTIMECMP >> 12) as u32);
                match self.rng.below(3) {
                    0 => a.ld(TV, 0, TA),
                    1 => a.load(6, TV, 0, TA),
                    _ => a.load(6, TV, 4, TA),
                }
                a.note("mtimecmp read");
                self.log_tv(a);
            }
            13 => {
                // an exception between ALU ops (same TB): QEMU counts the
                // instructions of a TB up front and gives back the ones after
                // (and including) a faulting load/store/CSR access
                // (cpu_loop_exit_restore), but not for ecall/ebreak/illegal
                // encodings (plain cpu_loop_exit at the end of the TB)
                for _ in 0..self.rng.below(4) {
                    let w = alu_word(&mut self.rng, self.opts.isa);
                    a.emit(w);
                }
                let (w, what) = match self.rng.below(9) {
                    0 => (0x0010_0073, "ebreak"),
                    1 => (0x0000_0000, "illegal (all zeros)"),
                    2 => (
                        CSR_TIME << 20 | 5 << 15 | 2 << 12 | (TV as u32) << 7 | OP_SYSTEM,
                        "csrrs x22, time, x5: write to read-only CSR",
                    ),
                    3 => (
                        0x3ff << 20 | 2 << 12 | (TV as u32) << 7 | OP_SYSTEM,
                        "csrr of a missing CSR",
                    ),
                    4 => (
                        i_type(1 + 2 * self.rng.below(3) as i64, LP, 3, TV, OP_LOAD),
                        "misaligned ld",
                    ),
                    5 => (s_type(3, TV, LP, 3, OP_STORE), "misaligned sd"),
                    6 => (i_type(0, 0, 3, TV, OP_LOAD), "ld from address 0 (unmapped)"),
                    7 => (
                        s_type(0x10, TV, 0, 2, OP_STORE),
                        "sw to address 0x10 (unmapped)",
                    ),
                    _ => (
                        i_type(-8, CL, 2, TV, OP_LOAD),
                        "lw below the CLINT (unmapped?)",
                    ),
                };
                a.emit(w);
                a.note(&format!("traps: {what}"));
                for _ in 0..self.rng.below(4) {
                    let w = alu_word(&mut self.rng, self.opts.isa);
                    a.emit(w);
                }
            }
            14 => {
                // write mtime (QEMU: time_delta); keep it far from wrapping
                emit_time_read(a, TimeRead::Mmio64, TV, TA);
                match self.rng.below(5) {
                    0 => a.srli(TV, TV, self.rng.range(1, 3) as u32),
                    1 => {
                        let d = self.rng.range(1, 1_000_000);
                        emit_add_imm(a, TV, d, TB);
                    }
                    _ => {
                        let d = self.rng.range(0, 2000);
                        emit_add_imm(a, TV, d, TB);
                    }
                }
                a.lui(TA, ((MTIME + 8) >> 12) as u32);
                match self.rng.below(4) {
                    0 => {
                        a.sw(TV, -8, TA);
                        a.note("mtime low half write");
                    }
                    1 => {
                        let hi = self.rng.range(0, 1);
                        a.addi(TB, 0, hi);
                        a.sw(TB, -4, TA);
                        a.note(&format!("mtime high half = {hi}"));
                    }
                    _ => {
                        a.sd(TV, -8, TA);
                        a.note("mtime write");
                    }
                }
                if self.rng.chance(50) {
                    let k = self.time_read_kind();
                    emit_time_read(a, k, TV, TA);
                    self.log_tv(a);
                }
            }
            15 => {
                // cycle / instret counters (QEMU under icount: the instruction count)
                const MCYCLE: u32 = 0xb00;
                const MINSTRET: u32 = 0xb02;
                const MCOUNTINHIBIT: u32 = 0x320;
                match self.rng.below(10) {
                    0..=5 => {
                        let c = self.rng.pick(&[0xc00u32, 0xc02, MCYCLE, MINSTRET]);
                        a.csrr(TV, c);
                        self.log_tv(a);
                    }
                    6 | 7 => {
                        let c = self.rng.pick(&[MCYCLE, MINSTRET]);
                        let r = if self.rng.chance(50) {
                            0
                        } else {
                            rand_reg(&mut self.rng)
                        };
                        a.csrw(c, r);
                        a.note("counter write");
                        a.csrr(TV, c);
                        self.log_tv(a);
                    }
                    _ if !self.opts.mcountinhibit => a.addi(0, 0, 0),
                    _ => {
                        let v = self.rng.pick(&[0i64, 1, 4, 5]);
                        a.addi(TA, 0, v);
                        a.csrw(MCOUNTINHIBIT, TA);
                        a.note("mcountinhibit");
                    }
                }
            }
            16 => {
                // long straight-line code: interrupts land inside big TBs; a wfi
                // in the middle has a long same-TB tail (QEMU 7.2 counts it)
                let n = self.rng.range(20, 400);
                let wfi_at = if self.rng.chance(50) {
                    Some(self.rng.range(0, n) as usize)
                } else {
                    None
                };
                if wfi_at.is_some() {
                    // arm (MIE off), as in the wfi unit
                    a.csr(7, TB, CSR_MSTATUS, 8);
                    a.csr(2, TV, CSR_TIME, 0);
                    let d = self.rng.range(0, 3000);
                    emit_add_imm(a, TV, d, TA);
                    a.lui(TA, (MTIMECMP >> 12) as u32);
                    a.sd(TV, 0, TA);
                    a.note(&format!("arm: delta {d}"));
                    a.addi(TA, 0, 0x80);
                    a.csr(2, 0, CSR_MIE, TA);
                }
                for i in 0..n as usize {
                    if wfi_at == Some(i) {
                        a.emit(WFI);
                    }
                    let w = alu_word(&mut self.rng, self.opts.isa);
                    a.emit(w);
                }
                if wfi_at.is_some() {
                    a.csr(2, TV, CSR_TIME, 0);
                    self.log_tv(a);
                    a.andi(TB, TB, 8);
                    a.csr(2, 0, CSR_MSTATUS, TB);
                }
            }
            17 => {
                // QEMU's mtimecmp write in the past raises MTIP and returns
                // without deleting the armed QEMU timer: its stale deadline
                // still cuts the icount budget (and so TBs, and so the
                // same-TB tail of a wfi)
                a.csr(7, TB, CSR_MSTATUS, 8);
                a.csr(2, TV, CSR_TIME, 0);
                let d = self.rng.range(1, 60);
                a.addi(TV, TV, d);
                a.lui(TA, (MTIMECMP >> 12) as u32);
                a.sd(TV, 0, TA);
                a.note(&format!("arm: delta {d}"));
                a.sd(0, 0, TA);
                a.note("mtimecmp = 0 (past): MTIP, the QEMU timer stays armed");
                a.addi(TA, 0, 0x80);
                a.csr(2, 0, CSR_MIE, TA);
                for _ in 0..self.rng.below(60) {
                    let w = alu_word(&mut self.rng, self.opts.isa);
                    a.emit(w);
                }
                a.emit(WFI);
                for _ in 0..self.rng.below(60) {
                    let w = alu_word(&mut self.rng, self.opts.isa);
                    a.emit(w);
                }
                a.csr(2, TV, CSR_TIME, 0);
                self.log_tv(a);
                a.andi(TB, TB, 8);
                a.csr(2, 0, CSR_MSTATUS, TB);
            }
            18 => {
                // wfi in a loop: each iteration arms a small delay (MIE off)
                let n = self.rng.range(1, 40);
                let d = self.rng.range(0, 300);
                a.csr(7, TB, CSR_MSTATUS, 8);
                a.addi(TA, 0, 0x80);
                a.csr(2, 0, CSR_MIE, TA);
                a.addi(LC, 0, n);
                let top = a.here();
                a.addi(STEP, STEP, 1);
                a.csr(2, TV, CSR_TIME, 0);
                a.addi(TV, TV, d);
                a.lui(TA, (MTIMECMP >> 12) as u32);
                a.sd(TV, 0, TA);
                for _ in 0..self.rng.below(4) {
                    let w = alu_word(&mut self.rng, self.opts.isa);
                    a.emit(w);
                }
                a.emit(WFI);
                for _ in 0..self.rng.below(4) {
                    let w = alu_word(&mut self.rng, self.opts.isa);
                    a.emit(w);
                }
                a.addi(LC, LC, -1);
                a.bne(LC, 0, top);
                a.note(&format!("wfi loop x{n}, delta {d}"));
                a.csr(2, TV, CSR_TIME, 0);
                self.log_tv(a);
                a.andi(TB, TB, 8);
                a.csr(2, 0, CSR_MSTATUS, TB);
            }
            19 => self.loop_fault_unit(a),
            20 => self.loop_mem_unit(a),
            _ => unreachable!(),
        }
    }

    /// Read an instruction or time counter into x22 and log it (after a
    /// loop: how many instructions it retired, how much time it took).
    fn log_counter(&mut self, a: &mut Asm) {
        let c = self.rng.pick(&[
            CSR_MINSTRET,
            CSR_MINSTRET,
            CSR_INSTRET,
            CSR_MCYCLE,
            CSR_CYCLE,
            CSR_TIME,
        ]);
        a.csrr(TV, c);
        a.note("counter after a loop");
        self.log_tv(a);
    }

    /// A counted loop whose block branches to its own start, with a load,
    /// store or AMO through a pointer that walks off the end of RAM: the last
    /// passes take access faults (the handler skips the instruction). Then
    /// 0..=10 ALU ops and a read of minstret/instret/mcycle/cycle/time: every
    /// pass before a fault must have been counted.
    fn loop_fault_unit(&mut self, a: &mut Asm) {
        if self.rng.chance(50) {
            a.csrw(CSR_MINSTRET, 0);
            a.note("minstret = 0");
        }
        let m = self.rng.range(0, 6);
        let f = self.rng.range(1, 3);
        a.la(TA, RAM_END - 8 * m as u64);
        a.li32(LC, (m + f) as i32);
        a.note(&format!(
            "loop x{}: x23 walks off the end of RAM after {m} passes",
            m + f
        ));
        let top = a.here();
        a.addi(STEP, STEP, 1);
        for _ in 0..self.rng.below(3) {
            let w = alu_word(&mut self.rng, self.opts.isa);
            a.emit(w);
        }
        let r = rand_reg(&mut self.rng);
        match self.rng.below(6) {
            0 | 1 => a.sd(r, 0, TA),
            2 => a.sw(r, 0, TA),
            3 => a.ld(r, 0, TA),
            4 => a.load(4, r, 0, TA),
            _ => {
                let rs2 = rand_reg(&mut self.rng);
                a.emit(r_type(0, rs2, TA, 3, r, OP_AMO)); // amoadd.d
            }
        }
        a.note("faults past the end of RAM");
        for _ in 0..self.rng.below(3) {
            let w = alu_word(&mut self.rng, self.opts.isa);
            a.emit(w);
        }
        a.addi(TA, TA, 8);
        a.addi(LC, LC, -1);
        a.bne(LC, 0, top);
        for _ in 0..self.rng.range(0, 10) {
            let w = alu_word(&mut self.rng, self.opts.isa);
            a.emit(w);
        }
        self.log_counter(a);
    }

    /// A counted loop over the scratch region (loads, stores, a pointer
    /// walking it) and MMIO (UART scratch, mtime folded into a register,
    /// mtimecmp armed far ahead), then a counter read.
    fn loop_mem_unit(&mut self, a: &mut Asm) {
        let n = self.rng.range(1, 300);
        a.la(TB, SCRATCH);
        a.li32(LC, n as i32);
        a.note(&format!("loop x{n} over memory and MMIO"));
        let top = a.here();
        a.addi(STEP, STEP, 1);
        for _ in 0..self.rng.range(1, 5) {
            let r = rand_reg(&mut self.rng);
            match self.rng.below(8) {
                0 => a.ld(r, 0, TB),
                1 => a.sd(r, 8, TB),
                2 => a.load(2, r, 4, TB),
                3 => a.sb(r, 7, UA),
                4 => a.lbu(r, 7, UA),
                5 => {
                    emit_time_read(a, TimeRead::Mmio64, TV, TA);
                    a.add(r, r, TV);
                }
                6 if self.rng.chance(30) => {
                    // far ahead: cannot fire during the loop
                    emit_time_read(a, TimeRead::Rdtime, TV, TA);
                    emit_add_imm(a, TV, 1_000_000, TA);
                    a.lui(TA, (MTIMECMP >> 12) as u32);
                    a.sd(TV, 0, TA);
                    a.note("mtimecmp far ahead");
                }
                _ => {
                    let w = alu_word(&mut self.rng, self.opts.isa);
                    a.emit(w);
                }
            }
        }
        a.addi(TB, TB, 8);
        a.addi(LC, LC, -1);
        a.bne(LC, 0, top);
        self.log_counter(a);
    }

    fn loop_unit(&mut self, a: &mut Asm) {
        let n = if self.rng.chance(2) {
            self.rng.range(10_000, 30_000)
        } else if self.rng.chance(8) {
            self.rng.range(200, 3000)
        } else {
            self.rng.range(1, 200)
        };
        a.li32(LC, n as i32);
        let top = a.here();
        a.addi(STEP, STEP, 1);
        for _ in 0..self.rng.range(0, 6) {
            match self.rng.below(12) {
                0 => {
                    // time read folded into a register
                    let k = self.time_read_kind();
                    emit_time_read(a, k, TV, TA);
                    let r = rand_reg(&mut self.rng);
                    a.add(r, r, TV);
                }
                1 if n <= 100 => {
                    let r = rand_reg(&mut self.rng);
                    a.sb(r, 7, UA);
                }
                2 if n <= 20 => {
                    a.emit(ECALL);
                }
                _ => {
                    let w = alu_word(&mut self.rng, self.opts.isa);
                    a.emit(w);
                }
            }
        }
        a.addi(LC, LC, -1);
        a.bne(LC, 0, top);
        a.note(&format!("loop x{n}"));
        if self.rng.chance(40) {
            self.log_counter(a);
        }
    }

    fn wfi_unit(&mut self, a: &mut Asm) {
        if self.rng.chance(35) {
            // MIE on: the interrupt is taken at the wfi. delta >= 100 ticks,
            // so the timer cannot fire (even at shift 10, ~10 ticks per
            // instruction) before the wfi, and the handler cannot disarm it.
            a.csr(6, 0, CSR_MSTATUS, 8); // csrsi mstatus, MIE
            let k = self.rng.pick(&[TimeRead::Rdtime, TimeRead::Mmio64]);
            let d = self.rng.range(100, 2000);
            a.lui(TB, (MTIMECMP >> 12) as u32);
            emit_time_read(a, k, TV, TA);
            a.addi(TV, TV, d);
            a.sd(TV, 0, TB);
            a.note(&format!("arm for wfi (MIE on): delta {d}"));
            a.addi(TA, 0, 0x80);
            a.csr(2, 0, CSR_MIE, TA);
            a.emit(WFI);
            for _ in 0..self.rng.below(6) {
                let w = alu_word(&mut self.rng, self.opts.isa);
                a.emit(w);
            }
            let k = self.time_read_kind();
            emit_time_read(a, k, TV, TA);
            self.log_tv(a);
        } else {
            // MIE off while arming: nothing can disarm the timer before the
            // wfi; mip.MTIP (pending now or later) wakes it.
            a.csr(7, TB, CSR_MSTATUS, 8); // csrrci x24, mstatus, MIE
            let k = self.time_read_kind();
            let k = if matches!(k, TimeRead::MmioHi | TimeRead::MmioLo) {
                TimeRead::Mmio64
            } else {
                k
            };
            // In the past (time >> k, never time - d: early in a run that
            // wraps around to a far-future mtimecmp, and a wfi with no
            // reachable deadline livelocks QEMU 7.2 under sleep=off), now
            // (delta 0) or in the future.
            let d = match self.rng.below(10) {
                0 => 0,
                1 => -(self.rng.range(1, 4)),
                2 => self.rng.range(2001, 20_000),
                _ => self.rng.range(1, 2000),
            };
            emit_time_read(a, k, TV, TA);
            if d < 0 {
                a.srli(TV, TV, (-d) as u32);
            } else {
                emit_add_imm(a, TV, d, TA);
            }
            let wk = self.cmp_write_kind();
            emit_cmp_write(a, wk, TV, TA, LC);
            a.note(&format!(
                "arm for wfi (MIE off): {}, {wk:?}",
                if d < 0 {
                    format!("time >> {}", -d)
                } else {
                    format!("delta {d}")
                }
            ));
            a.addi(TA, 0, 0x80);
            a.csr(2, 0, CSR_MIE, TA);
            a.emit(WFI);
            for _ in 0..self.rng.below(6) {
                let w = alu_word(&mut self.rng, self.opts.isa);
                a.emit(w);
            }
            if self.rng.chance(70) {
                let k = self.time_read_kind();
                emit_time_read(a, k, TV, TA);
                self.log_tv(a);
            }
            a.andi(TB, TB, 8);
            a.csr(2, 0, CSR_MSTATUS, TB); // restore MIE
        }
    }
}

/// Seed of unit `i`'s own PRNG.
fn unit_seed(seed: u64, i: usize) -> u64 {
    program_seed(seed ^ 0x7469_6d65_756e_6974, i as u64) // "timeunit"
}

impl Program {
    /// The program for `seed`; with `kept`, only those body units (generation
    /// indices, ascending), each identical to its version in the full program.
    pub fn generate(seed: u64, kept: Option<&[usize]>) -> Program {
        Self::generate_with(seed, kept, GenOptions::default())
    }

    /// `generate` with generator switches.
    pub fn generate_with(seed: u64, kept: Option<&[usize]>, opts: GenOptions) -> Program {
        let mut rng = SplitMix64::new(seed);
        let units = rng.range(20, 120) as usize;
        let vectored = rng.chance(50);
        let handler_log_mmio = rng.chance(30);
        let handler_rearm_mmio = rng.chance(30);
        let hw = match rng.below(6) {
            0..=3 => CmpWrite::Full,
            4 => CmpWrite::LoHi,
            _ => CmpWrite::HiLo,
        };
        let nact = rng.below(MAX_ACTIONS as u64 + 1) as usize;
        let actions: Vec<u64> = (0..nact)
            .map(|_| match rng.below(20) {
                0..=2 => DISARM,
                3 | 4 => 0,
                5 => (-rng.range(1, 300)) as u64,
                6..=8 => rng.range(1, 20) as u64,
                _ => rng.range(1, 2000) as u64,
            })
            .collect();
        let prologue_disarm = rng.chance(85);
        let init_mie = rng.pick(&[0u64, 0, 0x80, 0x8, 0x88]);
        let init_mstatus_mie = rng.chance(40);
        let gap_words = rng.below(1024) as usize;
        let init: Vec<u64> = (0..32)
            .map(|_| match rng.below(4) {
                0 => rng.below(100),
                1 => rng.next_u64() & 0xffff_ffff,
                _ => rng.next_u64(),
            })
            .collect();
        let shape = Shape {
            units,
            vectored,
            handler_log_mmio,
            handler_rearm_mmio,
            handler_write: format!("{hw:?}"),
            actions: actions.clone(),
            prologue_disarm,
            init_mie,
            init_mstatus_mie,
        };
        let kept: Vec<usize> = match kept {
            Some(k) => k.iter().copied().filter(|&i| i < units).collect(),
            None => (0..units).collect(),
        };

        let mut a = Asm::new(opts.isa.c);
        let handler = a.label();
        let vtable = a.label();

        // --- prologue -------------------------------------------------------
        if vectored {
            a.la_label(X30, vtable);
            a.addi(X30, X30, 1);
        } else {
            a.la_label(X30, handler);
        }
        a.csrw(CSR_MTVEC, X30);
        a.la(X31, HSAVE);
        a.csrw(CSR_MSCRATCH, X31);
        a.lui(CL, (CLINT >> 12) as u32);
        a.lui(UA, (UART >> 12) as u32);
        a.la(LP, BLOG);
        a.addi(STEP, 0, 0);
        a.la(X30, RO_INIT);
        for r in 1..=19u8 {
            a.ld(r, 8 * r as i64, X30);
        }
        a.addi(TV, 0, 0);
        if prologue_disarm {
            a.addi(TB, 0, -1);
            a.lui(TA, (MTIMECMP >> 12) as u32);
            a.sd(TB, 0, TA);
            a.note("prologue: disarm");
        }
        if init_mie != 0 {
            a.addi(TA, 0, init_mie as i64);
            a.csrw(CSR_MIE, TA);
        }
        if init_mstatus_mie {
            a.csr(6, 0, CSR_MSTATUS, 8);
        }

        // a gap of random size moves the 4 KiB page boundaries (where QEMU
        // ends TBs) relative to the body
        let gap = a.label();
        a.j(gap);
        for _ in 0..gap_words {
            a.emit(0x0000_0013);
        }
        a.bind(gap);

        // --- body -----------------------------------------------------------
        let mut g = Gen {
            opts,
            rng: SplitMix64::new(0),
            log_entries: 0,
        };
        for &i in &kept {
            g.rng = SplitMix64::new(unit_seed(seed, i));
            a.unit = Some(i);
            let start = a.next_index();
            g.unit(&mut a);
            a.insns[start].note = if a.insns[start].note.is_empty() {
                format!("--- unit {i}")
            } else {
                format!("--- unit {i}; {}", a.insns[start].note)
            };
        }
        a.unit = None;

        // --- epilogue -------------------------------------------------------
        let pr = Print::new(&mut a);
        let (putc, puts, puthex) = (pr.putc, pr.puts, pr.puthex);
        // save x1..x27 (x31 is the handler's; use x30 as the base)
        a.la(X30, SAVE);
        for r in 1..=27u8 {
            a.sd(r, 8 * (r as i64 - 1), X30);
        }
        a.csr(2, X28, CSR_TIME, 0);
        a.sd(X28, 8 * 27, X30);
        a.lui(X29, (MTIMECMP >> 12) as u32);
        a.ld(X28, 0, X29);
        a.sd(X28, 8 * 28, X30);
        a.lui(X29, ((MTIME + 8) >> 12) as u32);
        a.ld(X28, -8, X29);
        a.sd(X28, 8 * 29, X30);
        a.csr(7, 0, CSR_MSTATUS, 8);
        a.csrw(CSR_MIE, 0);
        // values
        const S1: u8 = 9;
        const S2: u8 = 18;
        const S3: u8 = 19;
        const S4: u8 = 20;
        const S5: u8 = 21;
        const A0: u8 = 10;
        const A1: u8 = 11;
        const A2: u8 = 12;
        const A3: u8 = 13;
        const A4: u8 = 14;
        const T0: u8 = 5;
        const T1: u8 = 6;
        a.la(S1, SAVE);
        a.la(S2, RO_NAMES);
        a.addi(S3, 0, VALUE_LINES as i64);
        let vloop = a.here();
        a.addi(A0, S2, 0);
        a.jal(RA, puts);
        a.ld(A0, 0, S1);
        a.addi(A1, 0, 16);
        a.jal(RA, puthex);
        a.addi(A0, 0, '\n' as i64);
        a.jal(RA, putc);
        a.addi(S1, S1, 8);
        a.addi(S2, S2, 16);
        a.addi(S3, S3, -1);
        a.bne(S3, 0, vloop);
        // body log: count = (saved x26 - BLOG) / 8
        a.la(A0, RO_STR);
        a.jal(RA, puts);
        a.la(S1, SAVE);
        a.ld(S4, 8 * (LP as i64 - 1), S1);
        a.la(S1, BLOG);
        a.sub(S4, S4, S1);
        a.srli(S4, S4, 3);
        a.addi(A0, S4, 0);
        a.addi(A1, 0, 4);
        a.jal(RA, puthex);
        a.addi(A0, 0, '\n' as i64);
        a.jal(RA, putc);
        let bloop = a.here();
        let bdone = a.label();
        a.beq(S4, 0, bdone);
        a.ld(A0, 0, S1);
        a.addi(A1, 0, 16);
        a.jal(RA, puthex);
        a.addi(A0, 0, '\n' as i64);
        a.jal(RA, putc);
        a.addi(S1, S1, 8);
        a.addi(S4, S4, -1);
        a.j(bloop);
        a.bind(bdone);
        // trap log
        a.la(A0, RO_STR + 32);
        a.jal(RA, puts);
        a.la(S1, HSAVE);
        a.ld(S4, HS_LOGN, S1);
        a.ld(S5, HS_TIMERN, S1);
        a.addi(A0, S4, 0);
        a.addi(A1, 0, 4);
        a.jal(RA, puthex);
        a.addi(A0, 0, '\n' as i64);
        a.jal(RA, putc);
        a.la(S1, HLOG);
        let tloop = a.here();
        let tdone = a.label();
        a.beq(S4, 0, tdone);
        for k in 0..4 {
            a.ld(A0, 8 * k, S1);
            a.addi(A1, 0, 16);
            a.jal(RA, puthex);
            a.addi(A0, 0, if k < 3 { ' ' } else { '\n' } as i64);
            a.jal(RA, putc);
        }
        a.addi(S1, S1, 32);
        a.addi(S4, S4, -1);
        a.j(tloop);
        a.bind(tdone);
        a.la(A0, RO_STR + 64);
        a.jal(RA, puts);
        a.addi(A0, S5, 0);
        a.addi(A1, 0, 4);
        a.jal(RA, puthex);
        a.la(A0, RO_STR + 96);
        a.jal(RA, puts);
        Print::finish_pass(&mut a);
        pr.emit(&mut a);

        // --- trap handler ---------------------------------------------------
        let common = a.label();
        let nolog = a.label();
        let intr = a.label();
        let msi = a.label();
        let disarm = a.label();
        let out = a.label();
        let fail = a.label();
        a.align(64);
        if vectored {
            a.bind(vtable);
            let stubs: Vec<Label> = (0..16).map(|_| a.label()).collect();
            for s in &stubs {
                a.j(*s);
            }
            for (k, s) in stubs.iter().enumerate() {
                a.bind(*s);
                a.csr(1, X31, CSR_MSCRATCH, X31);
                a.sd(X28, HS_X28, X31);
                a.addi(X28, 0, k as i64);
                a.j(common);
            }
        } else {
            a.bind(vtable);
        }
        a.bind(handler);
        a.csr(1, X31, CSR_MSCRATCH, X31); // swap x31 <-> mscratch
        a.sd(X28, HS_X28, X31);
        a.addi(X28, 0, 0xff);
        a.bind(common);
        a.sd(X29, HS_X29, X31);
        a.sd(X30, HS_X30, X31);
        a.sd(X28, HS_SLOT, X31);
        // log (cause | slot << 16, mepc - BASE, x27, time)
        a.ld(X29, HS_LOGN, X31);
        a.addi(X28, 0, HLOG_MAX as i64);
        a.bgeu(X29, X28, nolog);
        a.addi(X28, X29, 1);
        a.sd(X28, HS_LOGN, X31);
        a.slli(X29, X29, 5);
        a.la(X28, HLOG);
        a.add(X29, X29, X28);
        a.ld(X28, HS_SLOT, X31);
        a.slli(X28, X28, 16);
        a.csrr(X30, CSR_MCAUSE);
        a.or(X28, X28, X30);
        a.sd(X28, 0, X29);
        a.csrr(X28, CSR_MEPC);
        a.addi(X30, 0, 1);
        a.slli(X30, X30, 31);
        a.sub(X28, X28, X30);
        a.sd(X28, 8, X29);
        a.sd(STEP, 16, X29);
        emit_time_read(
            &mut a,
            if handler_log_mmio {
                TimeRead::Mmio64
            } else {
                TimeRead::Rdtime
            },
            X28,
            X30,
        );
        a.sd(X28, 24, X29);
        a.bind(nolog);
        a.csrr(X30, CSR_MCAUSE);
        a.blt(X30, 0, intr);
        // exceptions the body raises: 2 illegal, 3 breakpoint, 4/6 misaligned,
        // 5/7 access fault, 11 ecall
        a.addi(X28, 0, 11);
        let skip = a.label();
        a.beq(X30, X28, skip);
        a.addi(X28, 0, 2);
        a.blt(X30, X28, fail);
        a.addi(X28, 0, 8);
        a.bgeu(X30, X28, fail);
        a.bind(skip);
        emit_skip_mepc(&mut a, X28, X30);
        a.j(out);
        a.bind(intr);
        a.andi(X30, X30, 0xff);
        a.addi(X28, 0, 3);
        a.beq(X30, X28, msi);
        a.addi(X28, 0, 7);
        a.bne(X30, X28, fail);
        a.ld(X29, HS_TIMERN, X31);
        a.addi(X28, X29, 1);
        a.sd(X28, HS_TIMERN, X31);
        a.addi(X28, 0, actions.len() as i64);
        a.bgeu(X29, X28, disarm);
        a.slli(X29, X29, 3);
        a.la(X28, RO_ACTIONS);
        a.add(X29, X29, X28);
        a.ld(X29, 0, X29);
        a.addi(X28, 0, -1);
        a.slli(X28, X28, 63);
        a.beq(X29, X28, disarm);
        emit_time_read(
            &mut a,
            if handler_rearm_mmio {
                TimeRead::Mmio64
            } else {
                TimeRead::Rdtime
            },
            X28,
            X30,
        );
        a.add(X29, X29, X28);
        emit_cmp_write(&mut a, hw, X29, X28, X30);
        a.note("handler: re-arm");
        a.j(out);
        a.bind(disarm);
        a.addi(X29, 0, -1);
        a.lui(X28, (MTIMECMP >> 12) as u32);
        a.sd(X29, 0, X28);
        a.note("handler: disarm");
        a.j(out);
        a.bind(msi);
        a.lui(X28, (CLINT >> 12) as u32);
        a.sw(0, 0, X28);
        a.note("handler: msip = 0");
        a.bind(out);
        a.ld(X28, HS_X28, X31);
        a.ld(X29, HS_X29, X31);
        a.ld(X30, HS_X30, X31);
        a.csr(1, X31, CSR_MSCRATCH, X31);
        a.emit(MRET);
        a.bind(fail);
        Print::finish_fail(&mut a, 3, X28, X29);

        a.finish();
        assert!(a.pc() <= CODE_LIMIT, "code too large");
        assert!(g.log_entries <= BLOG_MAX);

        // --- image ------------------------------------------------------------
        let mut image = vec![0u8; (END - BASE) as usize];
        a.write_code(&mut image);
        let put = |image: &mut Vec<u8>, addr: u64, bytes: &[u8]| {
            let o = (addr - BASE) as usize;
            image[o..o + bytes.len()].copy_from_slice(bytes);
        };
        for (i, v) in actions.iter().enumerate() {
            put(&mut image, RO_ACTIONS + 8 * i as u64, &v.to_le_bytes());
        }
        for (i, v) in init.iter().enumerate() {
            put(&mut image, RO_INIT + 8 * i as u64, &v.to_le_bytes());
        }
        for i in 0..VALUE_LINES {
            let name = match i {
                0..=26 => format!("x{} ", i + 1),
                27 => "time ".into(),
                28 => "mtimecmp ".into(),
                _ => "mtime ".into(),
            };
            put(&mut image, RO_NAMES + 16 * i as u64, name.as_bytes());
        }
        put(&mut image, RO_STR, b"body \0");
        put(&mut image, RO_STR + 32, b"traps \0");
        put(&mut image, RO_STR + 64, b"timer irqs \0");
        put(&mut image, RO_STR + 96, b"\nend\n\0");
        let mut fill = SplitMix64::new(seed ^ 0x7363_7261_7463_6821);
        for k in (0..0x1000).step_by(8) {
            put(&mut image, SCRATCH + k, &fill.next_u64().to_le_bytes());
        }

        Program {
            seed,
            shape,
            kept,
            image,
            words: a.insns,
            isa: opts.isa,
        }
    }

    /// The program as an ELF64 RISC-V executable.
    pub fn elf(&self) -> Vec<u8> {
        elf64_exec(BASE, BASE, &self.image)
    }

    /// A listing of the code: address, word, disassembly, unit and notes.
    pub fn listing(&self) -> String {
        let mut s = format!(
            "# seed {:#018x}, -cpu {}, units {:?} of {}\n# {:?}\n",
            self.seed,
            self.isa.cpu(),
            self.kept.len(),
            self.shape.units,
            self.shape
        );
        for w in &self.words {
            let _ = writeln!(s, "{:<52} {}", w.text(), w.note);
        }
        s
    }

    /// The instructions of body unit `u` (generation index), one per line.
    pub fn unit_text(&self, u: usize) -> String {
        let mut s = String::new();
        for w in self.words.iter().filter(|w| w.unit == Some(u)) {
            let _ = writeln!(s, "  {:<52} {}", w.text(), w.note);
        }
        s
    }

    /// The whole body (all kept units), one instruction per line.
    pub fn body_text(&self) -> String {
        self.kept.iter().map(|&u| self.unit_text(u)).collect()
    }

    /// The body word at `pc`, if any.
    pub fn word_at(&self, pc: u64) -> Option<&Insn> {
        Asm::insn_at(&self.words, pc)
    }

    /// Explain the first differing output line between QEMU and vcpulab.
    pub fn explain(&self, reference: &str, other: &str) -> String {
        let rl: Vec<&str> = reference.lines().collect();
        let ol: Vec<&str> = other.lines().collect();
        let Some(idx) = (0..rl.len().max(ol.len())).find(|&i| rl.get(i) != ol.get(i)) else {
            return "outputs are line-identical (difference in trailing bytes)\n".into();
        };
        let r = rl.get(idx).copied().unwrap_or("<missing>");
        let o = ol.get(idx).copied().unwrap_or("<missing>");
        let mut s = format!(
            "first differing line {}:\n  qemu:    {r}\n  vcpulab: {o}\n",
            idx + 1
        );
        // trap log lines: name the trapping instruction
        for (who, line) in [("qemu", r), ("vcpulab", o)] {
            let t: Vec<&str> = line.split_whitespace().collect();
            if t.len() == 4 {
                if let Ok(off) = u64::from_str_radix(t[1], 16) {
                    if let Some(w) = self.word_at(BASE + off) {
                        let _ = writeln!(
                            s,
                            "  {who}: trap with mepc {:#x}: {} (unit {:?}) {}",
                            w.addr,
                            disasm_t(w.word, w.addr),
                            w.unit,
                            w.note
                        );
                    }
                }
            }
        }
        s
    }
}

/// Self-checks of the generator (run as a test by the random differential test).
pub mod self_tests {
    use super::*;

    /// A self-check.
    pub fn generator_is_deterministic_and_subsets_keep_units() {
        for seed in [0u64, 1, 0xdead_beef, u64::MAX] {
            let a = Program::generate(seed, None);
            let b = Program::generate(seed, None);
            assert_eq!(a.image, b.image);
            let kept: Vec<usize> = (0..a.shape.units).step_by(3).collect();
            let c = Program::generate(seed, Some(&kept));
            for &u in &kept {
                let ta: Vec<u32> = a
                    .words
                    .iter()
                    .filter(|w| w.unit == Some(u))
                    .map(|w| w.word)
                    .collect();
                let tc: Vec<u32> = c
                    .words
                    .iter()
                    .filter(|w| w.unit == Some(u))
                    .map(|w| w.word)
                    .collect();
                assert_eq!(ta.len(), tc.len(), "unit {u}");
            }
        }
    }
}

/// All self-checks of the generator.
pub fn self_test() {
    self_tests::generator_is_deterministic_and_subsets_keep_units();
}
