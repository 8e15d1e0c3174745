//! Random RV64IMA + Zicsr + Zifencei program generator for the QEMU
//! differential test (`tests/qemu_diff.rs`).
//!
//! Every program is a pure function of its seed. It is emitted as raw machine
//! code (no cross toolchain) into a minimal ELF64 executable: one PT_LOAD RWX
//! segment at 0x8000_0000, entry 0x8000_0000, as QEMU `virt -bios none
//! -kernel` and `vcpulab run --kernel` expect.
//!
//! Layout of the image:
//!
//! | address       | what                                                    |
//! |---------------|---------------------------------------------------------|
//! | `0x8000_0000` | code: prologue, body, epilogue, print routines, handler |
//! | `0x8000_6000` | rodata: initial register values, constant pool, names   |
//! | `0x8000_8000` | 4 KiB data region (random bytes), `x31` = data + 0x800  |
//! | `0x8000_9000` | trap log: count, handler save slots, entries            |
//! | `0x8000_A000` | register save area of the epilogue                      |
//!
//! Register conventions of the body: `x31` is the data base pointer and is never
//! written; `x30` is a scratch address register that is always set right
//! before it is used (AMO/LR/SC address, AUIPC for JALR, constant-pool base),
//! and the trap handler clobbers it too (deterministically). Everything else is
//! random.
//!
//! The trap handler appends (mcause, mtval, mepc) to the trap log, sets
//! mepc += 4 and returns with `mret`; after `LOG_MAX` entries it writes
//! "fail, code 2" to the test finisher.
//!
//! The epilogue prints, over the UART (THR at 0x1000_0000, polling LSR.THRE):
//! `x1`..`x30` and `mscratch` (one per line, 16 hex digits), the data region
//! (128 lines: 3-hex-digit offset and four little-endian doublewords), the
//! trap log (`traps NNNN`, then one `mcause mtval mepc` line each) and `end`,
//! then writes 0x5555 to the finisher at 0x0010_0000.
#![allow(dead_code)]

use std::fmt::Write as _;

/// End of the code area.
pub const CODE_LIMIT: u64 = 0x8000_6000;
/// Read-only data: initial registers, constant pool, register names, strings.
pub const RODATA: u64 = 0x8000_6000;
/// The 4 KiB data region the random loads/stores/AMOs touch.
pub const DATA: u64 = 0x8000_8000;
/// Size of the data region.
pub const DATA_SIZE: u64 = 0x1000;
/// Trap log page.
pub const LOG: u64 = 0x8000_9000;
/// Epilogue register save area.
pub const SAVE: u64 = 0x8000_A000;
/// End of the image (the PT_LOAD segment is `BASE..END`, all file-backed).
pub const END: u64 = 0x8000_B000;
/// Maximum number of trap log entries before the handler fails the run.
pub const LOG_MAX: u64 = 128;
/// Offset of the first log entry in the log page.
const LOG_ENTRIES: u64 = 32;

/// Data base register (never a destination in the body).
pub const BASE_REG: u8 = 31;
/// Scratch address register (never a destination of random ALU ops).
pub const TMP_REG: u8 = 30;
/// Value of `x31` during the body.
pub const BASE_REG_VALUE: u64 = DATA + 0x800;

const RO_INIT: u64 = RODATA; // 32 * 8: x0..x31 initial values (x0, x30, x31 unused), [30] = mscratch
const RO_NAMES: u64 = RODATA + 0x100; // 31 * 16 bytes
const RO_STR_TRAPS: u64 = RODATA + 0x300;
const RO_STR_END: u64 = RODATA + 0x310;
const RO_POOL: u64 = RODATA + 0x800; // 256 * 8
const POOL_LEN: usize = 256;

/// Number of lines the epilogue prints before the data dump (x1..x30, mscratch).
pub const REG_LINES: usize = 31;
/// Number of data dump lines.
pub const DATA_LINES: usize = (DATA_SIZE / 32) as usize;

use super::asm::reg::*;
use super::asm::*;

// ---------------------------------------------------------------------------
// Program

/// One generated program.
#[derive(Clone, Debug)]
pub struct Program {
    pub seed: u64,
    /// Bytes of `BASE..END`.
    pub image: Vec<u8>,
    /// One entry per code word.
    pub insns: Vec<Insn>,
    /// Number of body units.
    pub units: usize,
    /// The extensions it was generated for (`-cpu` / `--cpu` of both machines).
    pub isa: Isa,
}

struct Gen {
    rng: SplitMix64,
    hot_regs: Vec<u8>,
    hot_offs: Vec<i64>,
    pool: Vec<u64>,
    /// Next free slot of the pool's dynamic half.
    pool_next: usize,
    opts: GenOptions,
    /// Registers a loop unit keeps (counter, pointer): no destination.
    reserved: Vec<u8>,
    /// Loop units that trap so far (bounded: the trap log holds `LOG_MAX`).
    trap_loops: usize,
}

/// Generator switches: everything on by default (what the test runs). They
/// let one turn off a class of programs whose difference is already known,
/// to look for the next one.
#[derive(Clone, Copy, Debug)]
pub struct GenOptions {
    /// LR/SC pairs with a trap (ecall) in between, lone LRs that a later SC may
    /// pair with across traps, and SC of the other width than the LR (QEMU
    /// clears the reservation on every trap and `mret`, and its SC compares
    /// the LR's loaded value with a cmpxchg of the SC's width).
    pub reservation_quirks: bool,
    /// Self-modifying code (store into a later instruction, `fence.i`).
    pub self_modifying_code: bool,
    /// Loops: counted loops (TBs that branch to their own start) over ALU
    /// ops, loads and stores walking the data region, faults walking off the
    /// end of RAM, misaligned and illegal instructions, MMIO.
    pub loops: bool,
    /// The extensions the program uses (C: compressed encodings; Zb*: their
    /// instructions among the ALU ops).
    pub isa: Isa,
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            reservation_quirks: true,
            self_modifying_code: true,
            loops: true,
            isa: Isa::BASE,
        }
    }
}

/// Values that tend to find bugs.
const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    3,
    u64::MAX,              // -1
    u64::MAX - 1,          // -2
    0x8000_0000_0000_0000, // i64::MIN
    0x7fff_ffff_ffff_ffff, // i64::MAX
    0xffff_ffff_8000_0000, // i32::MIN sign-extended
    0x0000_0000_8000_0000, // i32::MIN zero-extended
    0x0000_0000_7fff_ffff, // i32::MAX
    0x0000_0000_ffff_ffff, // u32::MAX
    0xffff_ffff_7fff_ffff,
    0x0000_0001_0000_0000,
    0x8000_0000_0000_0001,
    31,
    32,
    63,
    64,
    0x7ff,
    0x800,
    0xfff,
    0xffff_ffff_ffff_f800, // -2048
    0x5555_5555_5555_5555,
    0xaaaa_aaaa_aaaa_aaaa,
    0x0000_0000_0000_00ff,
    0xffff_ffff_ffff_ff80,
    0x0000_0000_0000_8000,
    0xffff_ffff_ffff_8000,
];

impl Gen {
    fn interesting(&mut self) -> u64 {
        match self.rng.below(10) {
            0..=4 => self.rng.pick(INTERESTING),
            5 => self.rng.range(-16, 16) as u64,
            6 => sext(self.rng.next_u64(), 32) as u64,
            7 => self.rng.next_u64() & 0xffff_ffff,
            8 => {
                // a power of two, maybe minus one or negated
                let p = 1u64 << self.rng.below(64);
                match self.rng.below(3) {
                    0 => p,
                    1 => p.wrapping_sub(1),
                    _ => p.wrapping_neg(),
                }
            }
            _ => self.rng.next_u64(),
        }
    }

    /// A destination register: never x30/x31; sometimes x0.
    fn rd(&mut self) -> u8 {
        loop {
            let r = match self.rng.below(20) {
                0 => 0,
                1..=9 => self.rng.pick(&self.hot_regs.clone()),
                _ => self.rng.range(1, 29) as u8,
            };
            if !self.reserved.contains(&r) {
                return r;
            }
        }
    }
    /// A source register: anything (x30 and x31 hold deterministic addresses).
    fn rs(&mut self) -> u8 {
        match self.rng.below(20) {
            0 => 0,
            1 => self.rng.range(30, 31) as u8,
            2..=10 => self.rng.pick(&self.hot_regs.clone()),
            _ => self.rng.range(1, 29) as u8,
        }
    }
    fn imm12(&mut self) -> i64 {
        match self.rng.below(8) {
            0 => self
                .rng
                .pick(&[0, 1, -1, 2047, -2048, 0x7ff, -0x800 + 1, 0x400]),
            1..=3 => self.rng.range(-16, 16),
            _ => self.rng.range(-2048, 2047),
        }
    }
    /// A data-region offset relative to x31, aligned to `align` unless `misaligned`,
    /// such that `size` bytes fit in the region.
    fn data_off(&mut self, size: i64, align: i64, misaligned: bool) -> i64 {
        let base = if self.rng.chance(50) {
            self.rng.pick(&self.hot_offs.clone())
        } else {
            self.rng.range(-2048, 2048 - 8) & !7
        };
        let mut off = base + self.rng.range(0, 7) / align * align;
        if misaligned && align > 1 {
            off = base + self.rng.range(0, 7);
            if off % align == 0 {
                off += 1;
            }
        }
        off.clamp(-2048, 2048 - size)
    }

    /// `auipc x30; ld rd, pool[i](x30)`
    fn load_const(&mut self, a: &mut Asm, rd: u8, value: Option<u64>) {
        let i = match value {
            // Append-only (never overwrite a slot an earlier unit may load), so
            // that a prefix of a program behaves like the same prefix of the
            // whole program: see `generate_prefix`.
            Some(v) => match self.pool.iter().position(|&p| p == v) {
                Some(i) => i,
                None if self.pool_next < POOL_LEN => {
                    self.pool[self.pool_next] = v;
                    self.pool_next += 1;
                    self.pool_next - 1
                }
                None => self.rng.below(POOL_LEN as u64) as usize,
            },
            None => self.rng.below(self.pool_next as u64) as usize,
        };
        a.ld_abs(rd, TMP_REG, RO_POOL + 8 * i as u64);
        a.insns.last_mut().unwrap().note = "constant".into();
    }

    /// A random RV64I register/register ALU instruction (or, with Zb* on,
    /// sometimes one of those).
    fn alu_rr_word(&mut self) -> u32 {
        if self.rng.chance(30) {
            let (rd, rs1, rs2) = (self.rd(), self.rs(), self.rs());
            if let Some(w) = self.opts.isa.zb_insn(&mut self.rng, rd, rs1, rs2) {
                return w;
            }
        }
        let (f7, f3, op) = self.rng.pick(&[
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
            (0, 1, OP_OP32),
            (0, 5, OP_OP32),
            (0x20, 5, OP_OP32),
        ]);
        let (rd, rs1, rs2) = (self.rd(), self.rs(), self.rs());
        r_type(f7, rs2, rs1, f3, rd, op)
    }

    /// A random RV64I register/immediate ALU instruction (incl. shifts by every amount).
    fn alu_imm_word(&mut self) -> u32 {
        let (rd, rs1) = (self.rd(), self.rs());
        match self.rng.below(13) {
            k @ 0..=5 => {
                let f3 = [0, 2, 3, 4, 6, 7][k as usize];
                let imm = self.imm12();
                i_type(imm, rs1, f3, rd, OP_IMM)
            }
            6 => {
                let sh = self.rng.below(64) as i64;
                i_type(sh, rs1, 1, rd, OP_IMM)
            }
            7 => {
                let sh = self.rng.below(64) as i64;
                i_type(sh, rs1, 5, rd, OP_IMM)
            }
            8 => {
                let sh = self.rng.below(64) as i64;
                i_type(0x400 | sh, rs1, 5, rd, OP_IMM)
            }
            9 => {
                let imm = self.imm12();
                i_type(imm, rs1, 0, rd, OP_IMM32)
            }
            10 => {
                let sh = self.rng.below(32) as i64;
                i_type(sh, rs1, 1, rd, OP_IMM32)
            }
            11 => {
                let sh = self.rng.below(32) as i64;
                i_type(sh, rs1, 5, rd, OP_IMM32)
            }
            _ => {
                let sh = self.rng.below(32) as i64;
                i_type(0x400 | sh, rs1, 5, rd, OP_IMM32)
            }
        }
    }

    fn unit(&mut self, a: &mut Asm, i: usize, labels: &[Label]) {
        // forward target: skip 0..=3 units (clamped to the end of the body)
        let n = labels.len() - 1;
        let target = |g: &mut Gen| labels[(i + 1 + g.rng.below(4) as usize).min(n)];
        let w = [
            18,                                  // 0 ALU reg/reg
            12,                                  // 1 M extension
            16,                                  // 2 ALU reg/imm
            4,                                   // 3 LUI/AUIPC
            5,                                   // 4 constant pool load
            10,                                  // 5 load
            8,                                   // 6 store
            6,                                   // 7 AMO
            5,                                   // 8 LR/SC
            6,                                   // 9 branch
            2,                                   // 10 JAL
            2,                                   // 11 JALR
            4,                                   // 12 CSR
            2,                                   // 13 fence / fence.i
            2,                                   // 14 trap (ecall, ebreak, illegal)
            2,                                   // 15 self-modifying code + fence.i
            if self.opts.loops { 8 } else { 0 }, // 16 loop
        ];
        match self.rng.weighted(&w) {
            0 => {
                let w = self.alu_rr_word();
                a.emit(w);
            }
            1 => {
                let (f3, op) = self.rng.pick(&[
                    (0, OP_OP),
                    (1, OP_OP),
                    (2, OP_OP),
                    (3, OP_OP),
                    (4, OP_OP),
                    (5, OP_OP),
                    (6, OP_OP),
                    (7, OP_OP),
                    (0, OP_OP32),
                    (4, OP_OP32),
                    (5, OP_OP32),
                    (6, OP_OP32),
                    (7, OP_OP32),
                ]);
                let rd = self.rd();
                let (mut rs1, mut rs2) = (self.rs(), self.rs());
                if self.rng.chance(45) {
                    // load edge-case operands first: division by zero, overflow
                    rs1 = self.rng.range(1, 29) as u8;
                    rs2 = self.rng.range(1, 29) as u8;
                    let dividend = self.rng.pick(&[
                        0x8000_0000_0000_0000,
                        0xffff_ffff_8000_0000,
                        0x0000_0000_8000_0000,
                        u64::MAX,
                        0,
                        1,
                        7,
                        u64::MAX - 6,
                    ]);
                    let dividend = if self.rng.chance(25) {
                        self.interesting()
                    } else {
                        dividend
                    };
                    let divisor = self.rng.pick(&[
                        0,
                        u64::MAX,
                        0xffff_ffff,
                        0x1_0000_0000,
                        1,
                        2,
                        u64::MAX - 1,
                    ]);
                    let divisor = if self.rng.chance(25) {
                        self.interesting()
                    } else {
                        divisor
                    };
                    self.load_const(a, rs1, Some(dividend));
                    self.load_const(a, rs2, Some(divisor));
                }
                a.emit(r_type(1, rs2, rs1, f3, rd, op));
            }
            2 => {
                let w = self.alu_imm_word();
                a.emit(w);
            }
            3 => {
                let rd = self.rd();
                let hi = match self.rng.below(4) {
                    0 => self.rng.pick(&[0, 0x80000, 0x7ffff, 0xfffff, 1]),
                    _ => self.rng.below(1 << 20) as u32,
                };
                if self.rng.chance(70) {
                    a.lui(rd, hi);
                } else {
                    a.auipc(rd, hi);
                }
            }
            4 => {
                let rd = self.rd();
                self.load_const(a, rd, None);
            }
            5 => {
                let (size, f3) =
                    self.rng
                        .pick(&[(1, 0), (2, 1), (4, 2), (8, 3), (1, 4), (2, 5), (4, 6)]);
                let mis = self.rng.chance(12);
                let off = self.data_off(size, size, mis);
                let rd = self.rd();
                a.emit(i_type(off, BASE_REG, f3, rd, OP_LOAD));
            }
            6 => {
                let (size, f3) = self.rng.pick(&[(1, 0), (2, 1), (4, 2), (8, 3)]);
                let mis = self.rng.chance(12);
                let off = self.data_off(size, size, mis);
                let rs2 = self.rs();
                a.emit(s_type(off, rs2, BASE_REG, f3, OP_STORE)).mem_write =
                    Some((BASE_REG_VALUE.wrapping_add(off as u64), size as u64));
            }
            7 => {
                let (size, f3) = self.rng.pick(&[(4, 2), (8, 3)]);
                let mis = self.rng.chance(8);
                let off = self.data_off(size, size, mis);
                let f5 = self
                    .rng
                    .pick(&[0x01, 0x00, 0x04, 0x0c, 0x08, 0x10, 0x14, 0x18, 0x1c]);
                let aqrl = self.rng.below(4) as u32;
                let (rd, rs2) = (self.rd(), self.rs());
                a.addi(TMP_REG, BASE_REG, off);
                let info = a.emit(f5 << 27 | aqrl << 25 | r_type(0, rs2, TMP_REG, f3, rd, OP_AMO));
                info.mem_write = Some((BASE_REG_VALUE.wrapping_add(off as u64), size as u64));
                if mis {
                    info.note = "misaligned AMO: traps".into();
                }
            }
            8 => self.lr_sc(a),
            16 => self.loop_unit(a),
            9 => {
                let f3 = self.rng.pick(&[0, 1, 4, 5, 6, 7]);
                let (rs1, rs2) = (self.rs(), self.rs());
                let t = target(self);
                a.branch(f3, rs1, rs2, t);
            }
            10 => {
                let rd = self.rd();
                let t = target(self);
                a.jal(rd, t);
            }
            11 => {
                // auipc x30, 0 ; jalr rd, off(x30) -> a later unit boundary (bit 0 set
                // sometimes: JALR clears it)
                // (or `auipc rd, 0; jalr rd, off(rd)`: the link overwrites the base)
                let rd = self.rd();
                let skip = self.rng.below(4) as usize;
                let odd = self.rng.chance(30);
                let base = if rd != 0 && self.rng.chance(30) {
                    rd
                } else {
                    TMP_REG
                };
                let idx = a.next_index();
                a.emit32((base as u32) << 7 | OP_AUIPC);
                a.emit32(i_type(0, base, 0, rd, OP_JALR));
                a.fixups
                    .push((idx, Fix::AuipcAddi, labels[(i + 1 + skip).min(n)]));
                if odd {
                    a.insns[idx + 1].word |= 1 << 20; // +1 on top of the fixed-up offset
                }
            }
            12 => {
                let rd = if self.rng.chance(25) { 0 } else { self.rd() };
                let f3 = self.rng.pick(&[1, 2, 3, 5, 6, 7]);
                let src = if f3 < 4 {
                    if self.rng.chance(25) { 0 } else { self.rs() }
                } else if self.rng.chance(25) {
                    0
                } else {
                    self.rng.below(32) as u8
                };
                let csr = if self.rng.chance(8) && f3 != 1 && f3 != 5 && src == 0 {
                    CSR_MHARTID // read-only: only read forms with x0/0 source
                } else {
                    CSR_MSCRATCH
                };
                let info = a
                    .emit(csr << 20 | (src as u32) << 15 | f3 << 12 | (rd as u32) << 7 | OP_SYSTEM);
                info.csr_write = csr == CSR_MSCRATCH && (f3 == 1 || f3 == 5 || src != 0);
            }
            15 if !self.opts.self_modifying_code => {
                a.emit(0x0000_0013); // nop
            }
            15 => {
                // self-modifying code made visible by fence.i:
                //   auipc x30, %hi(pool); ld rX, %lo(x30)   rX = new instruction word
                //   auipc x30, 0; sw rX, 12(x30)              patch the slot below
                //   fence.i
                //   <slot>                                    (another random ALU op)
                let rx = self.rng.range(1, 29) as u8;
                let new_word = if self.rng.chance(50) {
                    self.alu_rr_word()
                } else {
                    self.alu_imm_word()
                };
                let old_word = if self.rng.chance(50) {
                    self.alu_rr_word()
                } else {
                    self.alu_imm_word()
                };
                self.load_const(a, rx, Some(new_word as u64));
                a.align(4); // the patched slot must be 4-byte aligned
                let auipc_at = a.pc();
                a.auipc(TMP_REG, 0);
                a.sw(rx, 12, TMP_REG);
                a.insns.last_mut().unwrap().mem_write = Some((auipc_at + 12, 4));
                a.emit(FENCE_I);
                assert_eq!(a.pc(), auipc_at + 12);
                let rd = (new_word >> 7) & 31;
                let info = a.emit32(old_word);
                info.rd = if rd != 0 { Some(rd as u8) } else { None };
                info.note = format!(
                    "patched at run time to: {:08x} {}",
                    new_word,
                    disasm(new_word, 0)
                );
            }
            13 => {
                if self.rng.chance(30) {
                    a.emit(0x0000_100f); // fence.i
                } else if self.rng.chance(10) {
                    a.emit(0x8330_000f); // fence.tso
                } else {
                    let pred = self.rng.below(16) as u32;
                    let succ = self.rng.below(16) as u32;
                    a.emit(pred << 24 | succ << 20 | OP_MISC_MEM);
                }
            }
            14 => {
                let w = match self.rng.below(9) {
                    0 | 1 => 0x0000_0073, // ecall
                    2 | 3 => 0x0010_0073, // ebreak
                    4 => 0x0000_0000,     // all zeros (illegal as 32-bit and as RVC)
                    5 => 0xffff_ffff,     // all ones
                    6 => 0xc000_1073,     // unimp = csrrw x0, cycle, x0 (write to read-only)
                    7 => 0xf115_1073,     // csrw mvendorid, x2 (read-only CSR)
                    _ => 0x3ff0_2573,     // csrr a0, 0x3ff (no such CSR)
                };
                a.emit(w).note = "traps".into();
            }
            _ => unreachable!(),
        }
    }

    /// One straight-line instruction for a loop body: ALU, M, a load or a
    /// store in the data region (no control flow, no traps).
    fn loop_body_insn(&mut self, a: &mut Asm) {
        match self.rng.below(10) {
            0..=3 => {
                let w = self.alu_rr_word();
                a.emit(w);
            }
            4..=6 => {
                let w = self.alu_imm_word();
                a.emit(w);
            }
            7 => {
                let f3 = self.rng.pick(&[0u32, 1, 4, 5]);
                let (rd, rs1, rs2) = (self.rd(), self.rs(), self.rs());
                a.emit(r_type(1, rs2, rs1, f3, rd, OP_OP));
            }
            8 => {
                let (size, f3) = self.rng.pick(&[(1, 0), (2, 1), (4, 2), (8, 3), (4, 6)]);
                let off = self.data_off(size, size, false);
                let rd = self.rd();
                a.emit(i_type(off, BASE_REG, f3, rd, OP_LOAD));
            }
            _ => {
                let (size, f3) = self.rng.pick(&[(1, 0), (2, 1), (4, 2), (8, 3)]);
                let off = self.data_off(size, size, false);
                let rs2 = self.rs();
                a.emit(s_type(off, rs2, BASE_REG, f3, OP_STORE)).mem_write =
                    Some((BASE_REG_VALUE.wrapping_add(off as u64), size as u64));
            }
        }
    }

    /// A counted loop: `li lc, n; top: BODY; addi lc, lc, -1; bne lc, x0, top`.
    /// From its second pass on, the block at `top` branches to its own start.
    /// The body is one of: straight-line ops; a pointer walking the data
    /// region with loads, stores and AMOs; a pointer walking off the end of
    /// RAM (access faults on the last passes); a misaligned access, an
    /// illegal instruction or an ebreak on every pass (few passes); MMIO (UART
    /// scratch, mtimecmp written and read back, mtime read and discarded).
    fn loop_unit(&mut self, a: &mut Asm) {
        let lc = self.rng.range(1, 29) as u8;
        let p = loop {
            let r = self.rng.range(1, 29) as u8;
            if r != lc {
                break r;
            }
        };
        self.reserved = vec![lc, p];
        let trapping_ok = self.trap_loops < 6;
        let mut kind = self.rng.below(5);
        if (2..=3).contains(&kind) && !trapping_ok {
            kind = 0;
        }
        let n: i64 = match kind {
            0 if self.rng.chance(10) => self.rng.range(200, 3000),
            0 | 4 => self.rng.range(1, 64),
            1 => self.rng.range(1, 250),
            2 => 0, // set below
            _ => self.rng.range(1, 3),
        };
        let body = |g: &mut Gen, a: &mut Asm| {
            for _ in 0..g.rng.range(0, 3) {
                g.loop_body_insn(a);
            }
        };
        let note;
        let n = match kind {
            1 => {
                // p walks the data region upwards, 8 bytes a pass
                let start = -2048 + 8 * self.rng.range(0, 4);
                let n = n.min((2040 - start) / 8);
                a.addi(p, BASE_REG, start);
                note = format!("loop x{n}: pointer x{p} walks the data region");
                n
            }
            2 => {
                // p walks off the end of RAM: `m` passes fit, `f` fault
                self.trap_loops += 1;
                let m = self.rng.range(0, 6);
                let f = self.rng.range(1, 3);
                a.la(p, RAM_END - 8 * m as u64);
                note = format!(
                    "loop x{}: pointer x{p} walks off the end of RAM after {m} passes",
                    m + f
                );
                m + f
            }
            3 => {
                self.trap_loops += 1;
                note = format!("loop x{n}: traps on every pass");
                n
            }
            4 => {
                note = format!("loop x{n}: MMIO");
                n
            }
            _ => {
                note = format!("loop x{n}");
                n
            }
        };
        a.li32(lc, n as i32);
        a.note(&note);
        let top = a.here();
        body(self, a);
        match kind {
            1 => {
                let rd = self.rd();
                let rs2 = self.rs();
                match self.rng.below(4) {
                    0 => a.ld(rd, 0, p),
                    1 => {
                        a.sd(rs2, 8, p);
                        a.insns.last_mut().unwrap().mem_write = Some((DATA, DATA_SIZE));
                    }
                    2 => {
                        let f5 = self.rng.pick(&[0x00u32, 0x01, 0x08, 0x1c]);
                        a.emit(f5 << 27 | r_type(0, rs2, p, 3, rd, OP_AMO))
                            .mem_write = Some((DATA, DATA_SIZE));
                    }
                    _ => {
                        a.load(2, rd, 4, p);
                        a.store(0, rs2, 3, p);
                        a.insns.last_mut().unwrap().mem_write = Some((DATA, DATA_SIZE));
                    }
                }
                body(self, a);
                a.addi(p, p, 8);
            }
            2 => {
                let rd = self.rd();
                let rs2 = self.rs();
                match self.rng.below(5) {
                    0 => a.ld(rd, 0, p),
                    1 => a.load(4, rd, 0, p),
                    2 => a.sd(rs2, 0, p),
                    3 => a.sw(rs2, 0, p),
                    _ => {
                        a.emit(r_type(0, rs2, p, 3, rd, OP_AMO)); // amoadd.d
                    }
                }
                a.note("faults past the end of RAM");
                body(self, a);
                a.addi(p, p, 8);
            }
            3 => {
                let (w, what) = match self.rng.below(4) {
                    0 => (
                        i_type(
                            1 + 2 * self.rng.below(3) as i64,
                            BASE_REG,
                            3,
                            self.rd(),
                            OP_LOAD,
                        ),
                        "misaligned ld",
                    ),
                    1 => (s_type(2, self.rs(), BASE_REG, 2, OP_STORE), "misaligned sw"),
                    2 => (EBREAK, "ebreak"),
                    _ => (0x0000_0000, "illegal"),
                };
                a.emit(w).note = format!("traps: {what}");
                body(self, a);
            }
            4 => {
                let (r1, r2) = (self.rd(), self.rs());
                match self.rng.below(3) {
                    0 => {
                        a.lui(p, (UART >> 12) as u32);
                        a.sb(r2, 7, p);
                        a.note("UART scratch write");
                        a.lbu(r1, 7, p);
                    }
                    1 => {
                        a.lui(p, (MTIMECMP >> 12) as u32);
                        a.sd(r2, 0, p);
                        a.note("mtimecmp write (no interrupt is enabled)");
                        a.ld(r1, 0, p);
                    }
                    _ => {
                        a.lui(p, ((MTIME + 8) >> 12) as u32);
                        a.ld(r1, -8, p);
                        a.note("mtime read, discarded");
                        a.andi(r1, r1, 0);
                    }
                }
                body(self, a);
            }
            _ => body(self, a),
        }
        a.addi(lc, lc, -1);
        a.bne(lc, 0, top);
        self.reserved.clear();
    }

    fn lr_sc(&mut self, a: &mut Asm) {
        let (size, f3) = self.rng.pick(&[(4i64, 2u32), (8, 3)]);
        let mut kind = self.rng.below(10);
        if !self.opts.reservation_quirks && kind == 7 {
            kind = 0;
        }
        let mis = self.rng.chance(6);
        let off = self.data_off(8, size, mis);
        let addr = BASE_REG_VALUE.wrapping_add(off as u64);
        a.addi(TMP_REG, BASE_REG, off);
        let aqrl = |g: &mut Gen| (g.rng.below(4) as u32) << 25;
        if kind <= 7 {
            // LR
            let rd = self.rd();
            let q = aqrl(self);
            a.emit(0x02 << 27 | q | r_type(0, 0, TMP_REG, f3, rd, OP_AMO));
        }
        if kind == 7 {
            return; // lone LR: a later SC to the same address may pair with it
        }
        if kind <= 6 {
            // something between LR and SC
            match self.rng.below(10) {
                0..=3 => {}
                4 | 5 => {
                    let (rd, rs1, rs2) = (self.rd(), self.rs(), self.rs());
                    a.emit(r_type(0, rs2, rs1, 0, rd, OP_OP));
                }
                6 | 7 => {
                    // store to the reserved address (same or different value)
                    let (sz, sf3) = self.rng.pick(&[(1, 0), (4, 2), (8, 3)]);
                    let rs2 = self.rs();
                    a.emit(s_type(off.min(2048 - sz), rs2, BASE_REG, sf3, OP_STORE))
                        .mem_write = Some((addr, sz as u64));
                }
                8 if self.opts.reservation_quirks => {
                    // a trap between LR and SC (the handler clobbers x30: re-derive it)
                    a.emit(0x0000_0073).note = "traps".into();
                    a.addi(TMP_REG, BASE_REG, off);
                }
                _ => {
                    // an AMO to the same address
                    let rd = self.rd();
                    let rs2 = self.rs();
                    a.emit(r_type(0, rs2, TMP_REG, f3, rd, OP_AMO)) // amoadd
                        .mem_write = Some((addr, size as u64));
                }
            }
        }
        // SC: usually same width; sometimes the other width (QEMU compares the
        // loaded value with a cmpxchg of the SC's width)
        let f3 = if self.rng.chance(10) && self.opts.reservation_quirks {
            f3 ^ 1
        } else {
            f3
        };
        let (rd, rs2) = (self.rd(), self.rs());
        let q = aqrl(self);
        a.emit(0x03 << 27 | q | r_type(0, rs2, TMP_REG, f3, rd, OP_AMO))
            .mem_write = Some((addr, if f3 == 3 { 8 } else { 4 }));
    }
}

impl Program {
    /// Generate the program for `seed` (deterministic).
    pub fn generate(seed: u64) -> Program {
        Self::generate_prefix(seed, usize::MAX)
    }

    /// The program for `seed` cut after its first `max_units` body units (the
    /// same instructions, forward jumps past the cut land on the epilogue).
    /// Used to bisect a mismatch down to the first unit that diverges.
    pub fn generate_prefix(seed: u64, max_units: usize) -> Program {
        Self::generate_with(seed, max_units, GenOptions::default())
    }

    /// `generate_prefix` with generator switches.
    pub fn generate_with(seed: u64, max_units: usize, opts: GenOptions) -> Program {
        let mut rng = SplitMix64::new(seed);
        let units = (rng.range(50, 400) as usize).min(max_units);
        let mut hot_regs = Vec::new();
        for _ in 0..6 {
            hot_regs.push(rng.range(1, 29) as u8);
        }
        let hot_offs: Vec<i64> = (0..12).map(|_| rng.range(-2048, 2040) & !7).collect();
        let mut g = Gen {
            rng,
            hot_regs,
            hot_offs,
            pool: Vec::new(),
            pool_next: POOL_LEN / 2,
            opts,
            reserved: Vec::new(),
            trap_loops: 0,
        };
        g.pool = vec![0; POOL_LEN];
        g.pool[..INTERESTING.len()].copy_from_slice(INTERESTING);
        for i in INTERESTING.len()..POOL_LEN / 2 {
            g.pool[i] = g.interesting();
        }
        let init: Vec<u64> = (0..32).map(|_| g.interesting()).collect();
        let mut data = vec![0u8; DATA_SIZE as usize];
        for chunk in data.chunks_mut(8) {
            let v = match g.rng.below(8) {
                0 => g.interesting(),
                1 => 0,
                _ => g.rng.next_u64(),
            };
            chunk.copy_from_slice(&v.to_le_bytes());
        }

        let mut a = Asm::new(opts.isa.c);
        let handler = a.label();

        // --- prologue ---------------------------------------------------
        a.la_label(TMP_REG, handler);
        a.csrrw(0, CSR_MTVEC, TMP_REG);
        a.la(TMP_REG, LOG);
        a.sd(0, 0, TMP_REG); // trap count = 0
        a.la(TMP_REG, RO_INIT);
        a.ld(1, 8 * 30, TMP_REG);
        a.csrrw(0, CSR_MSCRATCH, 1);
        for r in 1..=29u8 {
            a.ld(r, 8 * r as i64, TMP_REG);
        }
        a.la(BASE_REG, BASE_REG_VALUE);

        // --- body ---------------------------------------------------------
        let labels: Vec<Label> = (0..=units).map(|_| a.label()).collect();
        for i in 0..units {
            a.unit = Some(i);
            a.bind(labels[i]);
            g.unit(&mut a, i, &labels);
        }
        a.bind(labels[units]);
        a.unit = None;

        // --- epilogue: save registers (x31 is the only free register) -----
        a.la(BASE_REG, SAVE);
        for r in 1..=30u8 {
            a.sd(r, 8 * r as i64, BASE_REG);
        }
        a.csrr(1, CSR_MSCRATCH);
        a.sd(1, 8 * 31, BASE_REG);

        let pr = Print::new(&mut a);
        let (putc, puts, puthex) = (pr.putc, pr.puts, pr.puthex);

        // registers
        a.la(S0, SAVE);
        for i in 1..=31u64 {
            a.la(A0, RO_NAMES + 16 * (i - 1));
            a.jal(RA, puts);
            a.ld(A0, 8 * i as i64, S0);
            a.addi(A1, 0, 16);
            a.jal(RA, puthex);
            a.addi(A0, 0, '\n' as i64);
            a.jal(RA, putc);
        }
        // data region
        a.la(S1, DATA);
        a.addi(S2, 0, 0);
        a.lui(S3, 1); // 4096
        let line = a.here();
        a.addi(A0, S2, 0);
        a.addi(A1, 0, 3);
        a.jal(RA, puthex);
        a.addi(S4, 0, 4);
        let word = a.here();
        a.addi(A0, 0, ' ' as i64);
        a.jal(RA, putc);
        a.add(T2, S1, S2);
        a.ld(A0, 0, T2);
        a.addi(A1, 0, 16);
        a.jal(RA, puthex);
        a.addi(S2, S2, 8);
        a.addi(S4, S4, -1);
        a.bne(S4, 0, word);
        a.addi(A0, 0, '\n' as i64);
        a.jal(RA, putc);
        a.blt(S2, S3, line);
        // trap log
        a.la(A0, RO_STR_TRAPS);
        a.jal(RA, puts);
        a.la(S1, LOG);
        a.ld(S5, 0, S1);
        a.addi(A0, S5, 0);
        a.addi(A1, 0, 4);
        a.jal(RA, puthex);
        a.addi(A0, 0, '\n' as i64);
        a.jal(RA, putc);
        a.addi(S2, S1, LOG_ENTRIES as i64);
        a.addi(S6, 0, 0);
        let tloop = a.here();
        let tdone = a.label();
        a.beq(S6, S5, tdone);
        for k in 0..3 {
            a.ld(A0, 8 * k, S2);
            a.addi(A1, 0, 16);
            a.jal(RA, puthex);
            a.addi(A0, 0, if k < 2 { ' ' } else { '\n' } as i64);
            a.jal(RA, putc);
        }
        a.addi(S2, S2, 24);
        a.addi(S6, S6, 1);
        a.j(tloop);
        a.bind(tdone);
        a.la(A0, RO_STR_END);
        a.jal(RA, puts);
        Print::finish_pass(&mut a);
        pr.emit(&mut a);

        // --- trap handler (mtvec direct; 4-byte aligned) -------------------
        // x30 = LOG + 0x800; saves x28/x29 in the log page.
        const X28: u8 = 28;
        const X29: u8 = 29;
        a.align(4); // mtvec (direct mode) needs a 4-byte aligned handler
        a.bind(handler);
        a.la(TMP_REG, LOG + 0x800);
        a.sd(X28, -0x800 + 8, TMP_REG);
        a.sd(X29, -0x800 + 16, TMP_REG);
        a.ld(X29, -0x800, TMP_REG); // count
        a.addi(X28, 0, LOG_MAX as i64);
        let ok = a.label();
        a.bltu(X29, X28, ok);
        Print::finish_fail(&mut a, 2, X28, X29);
        a.bind(ok);
        a.addi(X28, X29, 1);
        a.sd(X28, -0x800, TMP_REG);
        a.slli(X28, X29, 4);
        a.slli(X29, X29, 3);
        a.add(X29, X29, X28); // 24 * count
        a.add(X29, X29, TMP_REG);
        a.csrr(X28, CSR_MCAUSE);
        a.sd(X28, -0x800 + LOG_ENTRIES as i64, X29);
        a.csrr(X28, CSR_MTVAL);
        a.sd(X28, -0x800 + LOG_ENTRIES as i64 + 8, X29);
        a.csrr(X28, CSR_MEPC);
        a.sd(X28, -0x800 + LOG_ENTRIES as i64 + 16, X29);
        emit_skip_mepc(&mut a, X28, X29);
        a.ld(X28, -0x800 + 8, TMP_REG);
        a.ld(X29, -0x800 + 16, TMP_REG);
        a.emit(0x3020_0073); // mret

        a.finish();
        assert!(a.pc() <= CODE_LIMIT, "code too large");

        // --- image --------------------------------------------------------
        let mut image = vec![0u8; (END - BASE) as usize];
        a.write_code(&mut image);
        let put = |image: &mut Vec<u8>, addr: u64, bytes: &[u8]| {
            let o = (addr - BASE) as usize;
            image[o..o + bytes.len()].copy_from_slice(bytes);
        };
        for (i, v) in init.iter().enumerate() {
            put(&mut image, RO_INIT + 8 * i as u64, &v.to_le_bytes());
        }
        for i in 1..=31u64 {
            let name = if i == 31 {
                "mscratch ".to_string()
            } else {
                format!("x{i} ")
            };
            put(&mut image, RO_NAMES + 16 * (i - 1), name.as_bytes());
        }
        put(&mut image, RO_STR_TRAPS, b"traps \0");
        put(&mut image, RO_STR_END, b"end\n\0");
        for (i, v) in g.pool.iter().enumerate() {
            put(&mut image, RO_POOL + 8 * i as u64, &v.to_le_bytes());
        }
        put(&mut image, DATA, &data);

        Program {
            seed,
            image,
            insns: a.insns,
            units,
            isa: opts.isa,
        }
    }

    /// The program as an ELF64 RISC-V executable.
    pub fn elf(&self) -> Vec<u8> {
        elf64_exec(BASE, BASE, &self.image)
    }

    /// Initial value of `x{r}` (r in 1..=29) or mscratch (r = 30).
    pub fn init_reg(&self, r: usize) -> u64 {
        let o = (RO_INIT - BASE) as usize + 8 * r;
        u64::from_le_bytes(self.image[o..o + 8].try_into().unwrap())
    }

    /// A listing of the code: address, word, disassembly, body unit.
    pub fn listing(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "# seed {:#018x}, {} body units, -cpu {}",
            self.seed,
            self.units,
            self.isa.cpu()
        );
        for r in 1..=29 {
            let _ = writeln!(s, "# init x{r} = {:#018x}", self.init_reg(r));
        }
        let _ = writeln!(s, "# init mscratch = {:#018x}", self.init_reg(30));
        let mut last_unit = None;
        for ins in &self.insns {
            let tag = match ins.unit {
                Some(u) if ins.unit != last_unit => {
                    last_unit = ins.unit;
                    format!("u{u}")
                }
                _ => String::new(),
            };
            let _ = writeln!(s, "{:<52} {:>5} {}", ins.text(), tag, ins.note);
        }
        s
    }

    /// The instructions of body unit `u`, one per line.
    pub fn unit_text(&self, u: usize) -> String {
        let mut s = String::new();
        for ins in self.insns.iter().filter(|i| i.unit == Some(u)) {
            let _ = writeln!(s, "  {}", Self::describe(ins));
        }
        s
    }

    fn body_insn_at(&self, pc: u64) -> Option<&Insn> {
        Asm::insn_at(&self.insns, pc).filter(|i| i.unit.is_some())
    }

    fn describe(ins: &Insn) -> String {
        format!(
            "{} (unit {:?}){}",
            ins.text(),
            ins.unit,
            if ins.note.is_empty() {
                String::new()
            } else {
                format!(" [{}]", ins.note)
            }
        )
    }

    /// Explain a difference between the reference output and another one:
    /// which output line differs first and which body instructions are the
    /// likely culprits.
    pub fn explain(&self, reference: &str, other: &str) -> String {
        let rl: Vec<&str> = reference.lines().collect();
        let ol: Vec<&str> = other.lines().collect();
        let Some(idx) = (0..rl.len().max(ol.len())).find(|&i| rl.get(i) != ol.get(i)) else {
            return "outputs are line-identical (difference in trailing bytes)".into();
        };
        let r = rl.get(idx).copied().unwrap_or("<missing>");
        let o = ol.get(idx).copied().unwrap_or("<missing>");
        let mut s = format!(
            "first differing line {}:\n  qemu:    {r}\n  vcpulab: {o}\n",
            idx + 1
        );
        let body: Vec<&Insn> = self.insns.iter().filter(|i| i.unit.is_some()).collect();
        if idx < REG_LINES {
            let reg = idx + 1;
            if reg <= 30 {
                let writers: Vec<&&Insn> =
                    body.iter().filter(|i| i.rd == Some(reg as u8)).collect();
                let _ = writeln!(
                    s,
                    "register x{reg}; initial {:#018x}; {} body writers, last ones:",
                    if reg < 30 { self.init_reg(reg) } else { 0 },
                    writers.len()
                );
                for w in writers.iter().rev().take(4).rev() {
                    let _ = writeln!(s, "  {}", Self::describe(w));
                }
            } else {
                let _ = writeln!(
                    s,
                    "mscratch; initial {:#018x}; CSR ops on it:",
                    self.init_reg(30)
                );
                let ops: Vec<&&Insn> = body
                    .iter()
                    .filter(|i| i.word & 0x7f == OP_SYSTEM && i.word >> 20 == CSR_MSCRATCH)
                    .collect();
                for w in ops.iter().rev().take(4).rev() {
                    let _ = writeln!(s, "  {}", Self::describe(w));
                }
            }
        } else if idx < REG_LINES + DATA_LINES {
            let line_off = ((idx - REG_LINES) * 32) as u64;
            // find the differing doubleword
            let rt: Vec<&str> = r.split_whitespace().collect();
            let ot: Vec<&str> = o.split_whitespace().collect();
            let k = (1..5).find(|&k| rt.get(k) != ot.get(k)).unwrap_or(1);
            let addr = DATA + line_off + 8 * (k as u64 - 1);
            let _ = writeln!(
                s,
                "data doubleword at {addr:#x} (offset {:#x}); body instructions writing it:",
                addr - DATA
            );
            let ws: Vec<&&Insn> = body
                .iter()
                .filter(|i| matches!(i.mem_write, Some((a, l)) if a < addr + 8 && addr < a + l))
                .collect();
            for w in ws.iter().rev().take(6).rev() {
                let _ = writeln!(s, "  {}", Self::describe(w));
            }
            if ws.is_empty() {
                let _ = writeln!(s, "  (none: a wrong store address elsewhere?)");
            }
        } else {
            let _ = writeln!(s, "trap log");
            for (who, line) in [("qemu", r), ("vcpulab", o)] {
                let t: Vec<&str> = line.split_whitespace().collect();
                if t.len() == 3 {
                    if let Ok(pc) = u64::from_str_radix(t[2], 16) {
                        if let Some(ins) = self.body_insn_at(pc) {
                            let _ = writeln!(s, "  {who} trap at {}", Self::describe(ins));
                        }
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
    pub fn generator_is_deterministic_per_seed() {
        for seed in [0u64, 1, 0xdead_beef, u64::MAX] {
            let a = Program::generate(seed);
            let b = Program::generate(seed);
            assert_eq!(a.image, b.image, "seed {seed:#x}");
            assert_eq!(a.elf(), b.elf());
            assert_eq!(a.listing(), b.listing());
        }
        assert_ne!(Program::generate(1).image, Program::generate(2).image);
    }

    /// A self-check.
    pub fn encodings_round_trip_through_disasm() {
        assert_eq!(
            disasm(r_type(0x20, 3, 2, 0, 1, OP_OP), BASE),
            "sub x1, x2, x3"
        );
        assert_eq!(disasm(i_type(-1, 5, 0, 6, OP_IMM), BASE), "addi x6, x5, -1");
        assert_eq!(
            disasm(s_type(-2048, 7, 31, 3, OP_STORE), BASE),
            "sd x7, -2048(x31)"
        );
        assert_eq!(
            disasm(i_type(0x400 | 63, 1, 5, 2, OP_IMM), BASE),
            "srai x2, x1, 63"
        );
        assert_eq!(
            disasm(r_type(0, 0, 0, 0, 0, OP_BRANCH) | b_imm(-4096), BASE + 4096),
            format!("beq x0, x0, {BASE:#x}")
        );
        assert_eq!(
            disasm(OP_JAL | j_imm(2046), BASE),
            format!("jal x0, {:#x}", BASE + 2046)
        );
        let (hi, lo) = hi_lo(0x800);
        assert_eq!(((hi as i64) << 12) + lo, 0x800);
        let (hi, lo) = hi_lo(-0x801);
        assert_eq!(sext((hi as u64) << 12, 32) + lo, -0x801);
    }
}

/// All self-checks of the generator.
pub fn self_test() {
    self_tests::generator_is_deterministic_per_seed();
    self_tests::encodings_round_trip_through_disasm();
    for isa in [Isa::C, Isa::ZB, Isa::FULL] {
        let o = GenOptions {
            isa,
            ..GenOptions::default()
        };
        for seed in [0u64, 7, 0xdead_beef] {
            let a = Program::generate_with(seed, usize::MAX, o);
            let b = Program::generate_with(seed, usize::MAX, o);
            assert_eq!(a.image, b.image, "{isa:?} seed {seed:#x}");
            if isa.c {
                assert!(
                    a.insns.iter().any(|i| i.rvc.is_some()),
                    "{isa:?}: no RVC instruction"
                );
            }
        }
    }
}
