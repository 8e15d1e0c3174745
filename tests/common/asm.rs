//! The assembler the random-program generators share (`randprog.rs`,
//! `randtime.rs`): a seedable PRNG, RV64 encoders (I, M, A, Zicsr, Zifencei,
//! Zba, Zbb, Zbs), an RVC compressor (the 16-bit encoding of an instruction
//! that has one), a small disassembler for listings and reports, an assembler
//! with labels and fix-ups, the print routines and the finisher epilogue of
//! the generated programs, and a minimal ELF64 writer.
//!
//! With compression on ([`Asm::rvc`]), every instruction whose operands and
//! target are known when it is emitted is emitted in its RVC form when it has
//! one (as `riscv64-unknown-elf-as -march=rv64imac` does); instructions whose
//! target is a forward label (branches, `jal`, `auipc`+`addi`/`jalr` pairs)
//! are 32-bit, since their size must be known before the target is. Backward
//! branches and jumps (loops) are compressed where they can be.
#![allow(dead_code)]

use std::fmt::Write as _;

/// Load address and entry point of every generated program.
pub const BASE: u64 = 0x8000_0000;
/// The UART (THR at +0, LSR at +5, scratch at +7).
pub const UART: u64 = 0x1000_0000;
/// The test finisher (0x5555 pass, 0x3333 | code << 16 fail).
pub const FINISHER: u64 = 0x0010_0000;
/// The CLINT: msip at +0, mtimecmp at +0x4000, mtime at +0xbff8.
pub const CLINT: u64 = 0x0200_0000;
/// mtimecmp of hart 0.
pub const MTIMECMP: u64 = 0x0200_4000;
/// mtime.
pub const MTIME: u64 = 0x0200_BFF8;
/// End of the default 128 MiB of RAM (both QEMU and vcpulab: `-m 128M`).
pub const RAM_END: u64 = 0x8800_0000;

// ---------------------------------------------------------------------------
// PRNG

/// SplitMix64: tiny, seedable, good enough for test generation.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo + 1) as u64) as i64
    }
    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    pub fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
    /// Weighted choice: returns the index.
    pub fn weighted(&mut self, w: &[u32]) -> usize {
        let total: u64 = w.iter().map(|&x| x as u64).sum();
        let mut r = self.below(total);
        for (i, &x) in w.iter().enumerate() {
            if r < x as u64 {
                return i;
            }
            r -= x as u64;
        }
        unreachable!()
    }
}

/// Seed of program `index` in a run with base seed `base`.
pub fn program_seed(base: u64, index: u64) -> u64 {
    let mut s = SplitMix64::new(base ^ index.wrapping_mul(0xd1b5_4a32_d192_ed03));
    s.next_u64()
}

// ---------------------------------------------------------------------------
// Encoding

pub const OP_LOAD: u32 = 0x03;
pub const OP_MISC_MEM: u32 = 0x0f;
pub const OP_IMM: u32 = 0x13;
pub const OP_AUIPC: u32 = 0x17;
pub const OP_IMM32: u32 = 0x1b;
pub const OP_STORE: u32 = 0x23;
pub const OP_AMO: u32 = 0x2f;
pub const OP_OP: u32 = 0x33;
pub const OP_LUI: u32 = 0x37;
pub const OP_OP32: u32 = 0x3b;
pub const OP_BRANCH: u32 = 0x63;
pub const OP_JALR: u32 = 0x67;
pub const OP_JAL: u32 = 0x6f;
pub const OP_SYSTEM: u32 = 0x73;

pub const CSR_MSTATUS: u32 = 0x300;
pub const CSR_MTVEC: u32 = 0x305;
pub const CSR_MSCRATCH: u32 = 0x340;
pub const CSR_MEPC: u32 = 0x341;
pub const CSR_MCAUSE: u32 = 0x342;
pub const CSR_MTVAL: u32 = 0x343;
pub const CSR_MHARTID: u32 = 0xf14;
pub const CSR_MIE: u32 = 0x304;
pub const CSR_MIP: u32 = 0x344;
pub const CSR_MCOUNTINHIBIT: u32 = 0x320;
pub const CSR_MCYCLE: u32 = 0xb00;
pub const CSR_MINSTRET: u32 = 0xb02;
pub const CSR_CYCLE: u32 = 0xc00;
pub const CSR_TIME: u32 = 0xc01;
pub const CSR_INSTRET: u32 = 0xc02;

/// `wfi`, `mret`, `ecall`, `ebreak`, `fence.i`, `nop`.
pub const WFI: u32 = 0x1050_0073;
pub const MRET: u32 = 0x3020_0073;
pub const ECALL: u32 = 0x0000_0073;
pub const EBREAK: u32 = 0x0010_0073;
pub const FENCE_I: u32 = 0x0000_100f;
pub const NOP: u32 = 0x0000_0013;

pub fn r_type(f7: u32, rs2: u8, rs1: u8, f3: u32, rd: u8, op: u32) -> u32 {
    f7 << 25 | (rs2 as u32) << 20 | (rs1 as u32) << 15 | f3 << 12 | (rd as u32) << 7 | op
}
pub fn i_type(imm: i64, rs1: u8, f3: u32, rd: u8, op: u32) -> u32 {
    assert!((-2048..=2047).contains(&imm), "I imm {imm}");
    ((imm as u32) & 0xfff) << 20 | (rs1 as u32) << 15 | f3 << 12 | (rd as u32) << 7 | op
}
pub fn s_type(imm: i64, rs2: u8, rs1: u8, f3: u32, op: u32) -> u32 {
    assert!((-2048..=2047).contains(&imm), "S imm {imm}");
    let imm = imm as u32 & 0xfff;
    (imm >> 5) << 25 | (rs2 as u32) << 20 | (rs1 as u32) << 15 | f3 << 12 | (imm & 0x1f) << 7 | op
}
pub fn b_imm(off: i64) -> u32 {
    assert!(off % 2 == 0 && (-4096..4096).contains(&off), "B off {off}");
    let o = off as u32;
    ((o >> 12) & 1) << 31 | ((o >> 5) & 0x3f) << 25 | ((o >> 1) & 0xf) << 8 | ((o >> 11) & 1) << 7
}
pub fn j_imm(off: i64) -> u32 {
    assert!(
        off % 2 == 0 && (-(1 << 20)..(1 << 20)).contains(&off),
        "J off {off}"
    );
    let o = off as u32;
    ((o >> 20) & 1) << 31
        | ((o >> 1) & 0x3ff) << 21
        | ((o >> 11) & 1) << 20
        | ((o >> 12) & 0xff) << 12
}
/// Split a 32-bit signed PC-relative offset into (hi20 for AUIPC/LUI, lo12).
pub fn hi_lo(off: i64) -> (u32, i64) {
    assert!((-(1i64 << 31)..(1i64 << 31) - 0x800).contains(&off));
    let lo = ((off & 0xfff) ^ 0x800) - 0x800;
    let hi = ((off - lo) >> 12) as u32 & 0xf_ffff;
    (hi, lo)
}

pub fn sext(v: u64, bits: u32) -> i64 {
    ((v << (64 - bits)) as i64) >> (64 - bits)
}

/// Disassemble one of the words this generator emits (enough for listings
/// and failure reports; not a general disassembler).
pub fn disasm(w: u32, pc: u64) -> String {
    let op = w & 0x7f;
    let rd = (w >> 7) & 31;
    let f3 = (w >> 12) & 7;
    let rs1 = (w >> 15) & 31;
    let rs2 = (w >> 20) & 31;
    let f7 = w >> 25;
    let imm_i = sext((w >> 20) as u64, 12);
    let imm_s = sext(((w >> 25) << 5 | (w >> 7) & 31) as u64, 12);
    let unknown = || format!(".word {w:#010x}");
    if let Some(z) = disasm_zb(w) {
        return z;
    }
    match op {
        OP_LUI => format!("lui x{rd}, {:#x}", w >> 12),
        OP_AUIPC => format!("auipc x{rd}, {:#x}", w >> 12),
        OP_JAL => {
            let imm = ((w >> 31) & 1) << 20
                | ((w >> 21) & 0x3ff) << 1
                | ((w >> 20) & 1) << 11
                | ((w >> 12) & 0xff) << 12;
            format!(
                "jal x{rd}, {:#x}",
                pc.wrapping_add(sext(imm as u64, 21) as u64)
            )
        }
        OP_JALR if f3 == 0 && imm_i == 0 && rd == 0 => format!("jr x{rs1}"),
        OP_JALR if f3 == 0 && imm_i == 0 && rd == 1 => format!("jalr x{rs1}"),
        OP_JALR if f3 == 0 => format!("jalr x{rd}, {imm_i}(x{rs1})"),
        OP_BRANCH => {
            let imm = ((w >> 31) & 1) << 12
                | ((w >> 25) & 0x3f) << 5
                | ((w >> 8) & 0xf) << 1
                | ((w >> 7) & 1) << 11;
            let mn = match f3 {
                0 => "beq",
                1 => "bne",
                4 => "blt",
                5 => "bge",
                6 => "bltu",
                7 => "bgeu",
                _ => return unknown(),
            };
            format!(
                "{mn} x{rs1}, x{rs2}, {:#x}",
                pc.wrapping_add(sext(imm as u64, 13) as u64)
            )
        }
        OP_LOAD => {
            let mn = ["lb", "lh", "lw", "ld", "lbu", "lhu", "lwu", "?"][f3 as usize];
            format!("{mn} x{rd}, {imm_i}(x{rs1})")
        }
        OP_STORE => {
            let mn = ["sb", "sh", "sw", "sd", "?", "?", "?", "?"][f3 as usize];
            format!("{mn} x{rs2}, {imm_s}(x{rs1})")
        }
        OP_IMM | OP_IMM32 => {
            let w32 = op == OP_IMM32;
            let sfx = if w32 { "w" } else { "" };
            match f3 {
                1 => format!("slli{sfx} x{rd}, x{rs1}, {}", (w >> 20) & 0x3f),
                5 => {
                    let mn = if w >> 30 & 1 == 1 { "srai" } else { "srli" };
                    format!("{mn}{sfx} x{rd}, x{rs1}, {}", (w >> 20) & 0x3f)
                }
                _ => {
                    let mn = ["addi", "", "slti", "sltiu", "xori", "", "ori", "andi"][f3 as usize];
                    format!("{mn}{sfx} x{rd}, x{rs1}, {imm_i}")
                }
            }
        }
        OP_OP | OP_OP32 => {
            let sfx = if op == OP_OP32 { "w" } else { "" };
            let mn = match (f7, f3) {
                (0, 0) => "add",
                (0x20, 0) => "sub",
                (0, 1) => "sll",
                (0, 2) => "slt",
                (0, 3) => "sltu",
                (0, 4) => "xor",
                (0, 5) => "srl",
                (0x20, 5) => "sra",
                (0, 6) => "or",
                (0, 7) => "and",
                (1, f) => [
                    "mul", "mulh", "mulhsu", "mulhu", "div", "divu", "rem", "remu",
                ][f as usize],
                _ => return unknown(),
            };
            format!("{mn}{sfx} x{rd}, x{rs1}, x{rs2}")
        }
        OP_AMO => {
            let sz = match f3 {
                2 => "w",
                3 => "d",
                _ => return unknown(),
            };
            let f5 = w >> 27;
            let ord = match (w >> 26 & 1, w >> 25 & 1) {
                (0, 0) => "",
                (1, 0) => ".aq",
                (0, 1) => ".rl",
                _ => ".aqrl",
            };
            let mn = match f5 {
                0x02 => return format!("lr.{sz}{ord} x{rd}, (x{rs1})"),
                0x03 => "sc",
                0x01 => "amoswap",
                0x00 => "amoadd",
                0x04 => "amoxor",
                0x0c => "amoand",
                0x08 => "amoor",
                0x10 => "amomin",
                0x14 => "amomax",
                0x18 => "amominu",
                0x1c => "amomaxu",
                _ => return unknown(),
            };
            format!("{mn}.{sz}{ord} x{rd}, x{rs2}, (x{rs1})")
        }
        OP_MISC_MEM => match f3 {
            0 => format!(
                "fence {:#x}, {:#x} (fm {:#x})",
                (w >> 24) & 15,
                (w >> 20) & 15,
                w >> 28
            ),
            1 => "fence.i".to_string(),
            _ => unknown(),
        },
        OP_SYSTEM => {
            let csr = w >> 20;
            let csr_name = match csr {
                CSR_MSCRATCH => "mscratch".to_string(),
                CSR_MTVEC => "mtvec".to_string(),
                CSR_MEPC => "mepc".to_string(),
                CSR_MCAUSE => "mcause".to_string(),
                CSR_MTVAL => "mtval".to_string(),
                CSR_MHARTID => "mhartid".to_string(),
                CSR_MSTATUS => "mstatus".to_string(),
                CSR_MIE => "mie".to_string(),
                CSR_MIP => "mip".to_string(),
                CSR_MCOUNTINHIBIT => "mcountinhibit".to_string(),
                CSR_MCYCLE => "mcycle".to_string(),
                CSR_MINSTRET => "minstret".to_string(),
                CSR_CYCLE => "cycle".to_string(),
                CSR_TIME => "time".to_string(),
                CSR_INSTRET => "instret".to_string(),
                c => format!("{c:#x}"),
            };
            match f3 {
                0 => match w {
                    0x0000_0073 => "ecall".into(),
                    0x0010_0073 => "ebreak".into(),
                    0x3020_0073 => "mret".into(),
                    WFI => "wfi".into(),
                    _ => unknown(),
                },
                1..=3 => format!(
                    "{} x{rd}, {csr_name}, x{rs1}",
                    ["", "csrrw", "csrrs", "csrrc"][f3 as usize]
                ),
                5..=7 => format!(
                    "{} x{rd}, {csr_name}, {rs1}",
                    ["", "", "", "", "", "csrrwi", "csrrsi", "csrrci"][f3 as usize]
                ),
                _ => unknown(),
            }
        }
        _ => unknown(),
    }
}

// ---------------------------------------------------------------------------
// Zba / Zbb / Zbs

/// One Zba/Zbb/Zbs instruction form: mnemonic, how it is encoded.
#[derive(Clone, Copy, Debug)]
pub enum ZbForm {
    /// `op rd, rs1, rs2`: (funct7, funct3, opcode).
    R(u32, u32, u32),
    /// `op rd, rs1, shamt`: (imm[11:6] high bits as a 12-bit value, funct3, opcode, shamt bits).
    Shift(u32, u32, u32, u32),
    /// `op rd, rs1`: the whole imm[11:0], funct3, opcode.
    Unary(u32, u32, u32),
}

/// Every Zba, Zbb and Zbs instruction of RV64, with its extension.
pub const ZB: &[(&str, &str, ZbForm)] = &[
    ("zba", "sh1add", ZbForm::R(0x10, 2, OP_OP)),
    ("zba", "sh2add", ZbForm::R(0x10, 4, OP_OP)),
    ("zba", "sh3add", ZbForm::R(0x10, 6, OP_OP)),
    ("zba", "add.uw", ZbForm::R(0x04, 0, OP_OP32)),
    ("zba", "sh1add.uw", ZbForm::R(0x10, 2, OP_OP32)),
    ("zba", "sh2add.uw", ZbForm::R(0x10, 4, OP_OP32)),
    ("zba", "sh3add.uw", ZbForm::R(0x10, 6, OP_OP32)),
    ("zba", "slli.uw", ZbForm::Shift(0x080, 1, OP_IMM32, 6)),
    ("zbb", "andn", ZbForm::R(0x20, 7, OP_OP)),
    ("zbb", "orn", ZbForm::R(0x20, 6, OP_OP)),
    ("zbb", "xnor", ZbForm::R(0x20, 4, OP_OP)),
    ("zbb", "max", ZbForm::R(0x05, 6, OP_OP)),
    ("zbb", "maxu", ZbForm::R(0x05, 7, OP_OP)),
    ("zbb", "min", ZbForm::R(0x05, 4, OP_OP)),
    ("zbb", "minu", ZbForm::R(0x05, 5, OP_OP)),
    ("zbb", "rol", ZbForm::R(0x30, 1, OP_OP)),
    ("zbb", "ror", ZbForm::R(0x30, 5, OP_OP)),
    ("zbb", "rolw", ZbForm::R(0x30, 1, OP_OP32)),
    ("zbb", "rorw", ZbForm::R(0x30, 5, OP_OP32)),
    ("zbb", "rori", ZbForm::Shift(0x600, 5, OP_IMM, 6)),
    ("zbb", "roriw", ZbForm::Shift(0x600, 5, OP_IMM32, 5)),
    ("zbb", "clz", ZbForm::Unary(0x600, 1, OP_IMM)),
    ("zbb", "ctz", ZbForm::Unary(0x601, 1, OP_IMM)),
    ("zbb", "cpop", ZbForm::Unary(0x602, 1, OP_IMM)),
    ("zbb", "sext.b", ZbForm::Unary(0x604, 1, OP_IMM)),
    ("zbb", "sext.h", ZbForm::Unary(0x605, 1, OP_IMM)),
    ("zbb", "clzw", ZbForm::Unary(0x600, 1, OP_IMM32)),
    ("zbb", "ctzw", ZbForm::Unary(0x601, 1, OP_IMM32)),
    ("zbb", "cpopw", ZbForm::Unary(0x602, 1, OP_IMM32)),
    ("zbb", "zext.h", ZbForm::Unary(0x080, 4, OP_OP32)),
    ("zbb", "orc.b", ZbForm::Unary(0x287, 5, OP_IMM)),
    ("zbb", "rev8", ZbForm::Unary(0x6b8, 5, OP_IMM)),
    ("zbs", "bclr", ZbForm::R(0x24, 1, OP_OP)),
    ("zbs", "bext", ZbForm::R(0x24, 5, OP_OP)),
    ("zbs", "binv", ZbForm::R(0x34, 1, OP_OP)),
    ("zbs", "bset", ZbForm::R(0x14, 1, OP_OP)),
    ("zbs", "bclri", ZbForm::Shift(0x480, 1, OP_IMM, 6)),
    ("zbs", "bexti", ZbForm::Shift(0x480, 5, OP_IMM, 6)),
    ("zbs", "binvi", ZbForm::Shift(0x680, 1, OP_IMM, 6)),
    ("zbs", "bseti", ZbForm::Shift(0x280, 1, OP_IMM, 6)),
];

/// Encode a Zb* instruction (`shamt` is masked to the form's width; `rs2`
/// is ignored by the shift and unary forms).
pub fn zb_word(form: ZbForm, rd: u8, rs1: u8, rs2: u8, shamt: u32) -> u32 {
    match form {
        ZbForm::R(f7, f3, op) => r_type(f7, rs2, rs1, f3, rd, op),
        ZbForm::Shift(hi, f3, op, bits) => {
            let imm = hi | (shamt & ((1 << bits) - 1));
            imm << 20 | (rs1 as u32) << 15 | f3 << 12 | (rd as u32) << 7 | op
        }
        ZbForm::Unary(imm, f3, op) => {
            imm << 20 | (rs1 as u32) << 15 | f3 << 12 | (rd as u32) << 7 | op
        }
    }
}

/// Disassemble a Zb* word, if it is one.
pub fn disasm_zb(w: u32) -> Option<String> {
    let (op, rd, f3, rs1, rs2) = (
        w & 0x7f,
        (w >> 7) & 31,
        (w >> 12) & 7,
        (w >> 15) & 31,
        (w >> 20) & 31,
    );
    for &(_, name, form) in ZB {
        match form {
            ZbForm::R(f7, ff3, fop) if op == fop && f3 == ff3 && w >> 25 == f7 => {
                return Some(format!("{name} x{rd}, x{rs1}, x{rs2}"));
            }
            ZbForm::Shift(hi, ff3, fop, bits)
                if op == fop && f3 == ff3 && (w >> 20) & !((1 << bits) - 1) & 0xfff == hi =>
            {
                return Some(format!(
                    "{name} x{rd}, x{rs1}, {}",
                    (w >> 20) & ((1 << bits) - 1)
                ));
            }
            ZbForm::Unary(imm, ff3, fop) if op == fop && f3 == ff3 && w >> 20 == imm => {
                return Some(format!("{name} x{rd}, x{rs1}"));
            }
            _ => {}
        }
    }
    None
}

// ---------------------------------------------------------------------------
// RVC

fn creg(r: u32) -> Option<u32> {
    (8..16).contains(&r).then(|| r - 8)
}

fn bits(v: u32, hi: u32, lo: u32) -> u32 {
    (v >> lo) & ((1 << (hi - lo + 1)) - 1)
}

/// The RVC (16-bit) encoding of a 32-bit RV64 instruction word, if it has
/// one (the choice `riscv64-unknown-elf-as -march=rv64imac` makes).
pub fn compress(w: u32) -> Option<u16> {
    let op = w & 0x7f;
    let rd = (w >> 7) & 31;
    let f3 = (w >> 12) & 7;
    let rs1 = (w >> 15) & 31;
    let rs2 = (w >> 20) & 31;
    let f7 = w >> 25;
    let imm_i = sext((w >> 20) as u64, 12);
    let imm_s = sext(((w >> 25) << 5 | (w >> 7) & 31) as u64, 12);
    let fits6 = |v: i64| (-32..32).contains(&v);
    let ci = |f3: u32, r: u32, imm: i64, opq: u32| -> u16 {
        let u = imm as u32;
        (f3 << 13 | bits(u, 5, 5) << 12 | r << 7 | bits(u, 4, 0) << 2 | opq) as u16
    };
    match op {
        OP_IMM if f3 == 0 => {
            // addi
            if rd == 0 && rs1 == 0 && imm_i == 0 {
                Some(0x0001)
            } else if rd != 0 && rs1 == 0 && fits6(imm_i) {
                Some(ci(2, rd, imm_i, 1)) // c.li
            } else if rd != 0 && rd == rs1 && imm_i != 0 && fits6(imm_i) {
                Some(ci(0, rd, imm_i, 1)) // c.addi
            } else if rd != 0
                && rd == rs1
                && imm_i != 0
                && rd == 2
                && imm_i % 16 == 0
                && (-512..512).contains(&imm_i)
            {
                let u = imm_i as u32;
                Some(
                    (3 << 13
                        | bits(u, 9, 9) << 12
                        | 2 << 7
                        | bits(u, 4, 4) << 6
                        | bits(u, 6, 6) << 5
                        | bits(u, 8, 7) << 3
                        | bits(u, 5, 5) << 2
                        | 1) as u16,
                ) // c.addi16sp
            } else if rd != 0 && rs1 != 0 && imm_i == 0 {
                Some((0x8 << 12 | rd << 7 | rs1 << 2 | 2) as u16) // c.mv
            } else if let (Some(r), 2) = (creg(rd), rs1) {
                let u = imm_i as u32;
                (imm_i > 0 && imm_i % 4 == 0 && imm_i < 1024).then(|| {
                    (bits(u, 5, 4) << 11
                        | bits(u, 9, 6) << 7
                        | bits(u, 2, 2) << 6
                        | bits(u, 3, 3) << 5
                        | r << 2) as u16
                }) // c.addi4spn
            } else {
                None
            }
        }
        OP_IMM32 if f3 == 0 && rd != 0 && rd == rs1 && fits6(imm_i) => Some(ci(1, rd, imm_i, 1)), // c.addiw
        OP_LUI if rd != 0 && rd != 2 => {
            let v = sext((w >> 12) as u64, 20);
            (v != 0 && fits6(v)).then(|| ci(3, rd, v, 1))
        }
        OP_IMM if f3 == 1 && w >> 26 == 0 && rd != 0 && rd == rs1 => {
            let sh = (w >> 20) & 63;
            (sh != 0).then(|| ci(0, rd, sh as i64, 2)) // c.slli
        }
        OP_IMM if f3 == 5 && rd == rs1 && (w >> 26 == 0 || w >> 26 == 0x10) => {
            let sh = (w >> 20) & 63;
            let k = if w >> 26 == 0 { 0 } else { 1 };
            creg(rd).filter(|_| sh != 0).map(|r| {
                (4 << 13 | bits(sh, 5, 5) << 12 | k << 10 | r << 7 | bits(sh, 4, 0) << 2 | 1) as u16
            })
        }
        OP_IMM if f3 == 7 && rd == rs1 && fits6(imm_i) => creg(rd).map(|r| {
            let u = imm_i as u32;
            (4 << 13 | bits(u, 5, 5) << 12 | 2 << 10 | r << 7 | bits(u, 4, 0) << 2 | 1) as u16
        }),
        OP_OP | OP_OP32 if f7 == 0 || f7 == 0x20 => {
            let w32 = op == OP_OP32;
            // add/addw/xor/or/and commute: `op rd, rs1, rd` is `op rd, rd, rs1`
            let commutes = f7 == 0 && (f3 == 0 || (!w32 && (f3 == 4 || f3 == 6 || f3 == 7)));
            let (rs1, rs2) = if commutes && rd == rs2 && rd != rs1 && rs1 != 0 {
                (rs2, rs1)
            } else {
                (rs1, rs2)
            };
            if !w32 && f7 == 0 && f3 == 0 && rd != 0 && rs2 != 0 && rs1 == 0 {
                Some((0x8 << 12 | rd << 7 | rs2 << 2 | 2) as u16) // c.mv
            } else if !w32 && f7 == 0 && f3 == 0 && rd != 0 && rs2 != 0 && rd == rs1 {
                Some((0x9 << 12 | rd << 7 | rs2 << 2 | 2) as u16) // c.add
            } else if rd == rs1 {
                let f2 = match (w32, f7, f3) {
                    (false, 0x20, 0) => Some(0),
                    (false, 0, 4) => Some(1),
                    (false, 0, 6) => Some(2),
                    (false, 0, 7) => Some(3),
                    (true, 0x20, 0) => Some(4),
                    (true, 0, 0) => Some(5),
                    _ => None,
                };
                match (f2, creg(rd), creg(rs2)) {
                    (Some(f2), Some(r1), Some(r2)) => Some(
                        (4 << 13
                            | (f2 >> 2) << 12
                            | 3 << 10
                            | r1 << 7
                            | (f2 & 3) << 5
                            | r2 << 2
                            | 1) as u16,
                    ),
                    _ => None,
                }
            } else {
                None
            }
        }
        OP_LOAD if f3 == 2 || f3 == 3 => {
            let (size, fq) = if f3 == 2 { (4, 2) } else { (8, 3) };
            let u = imm_i as u32;
            if imm_i < 0 || imm_i % size != 0 {
                None
            } else if rs1 == 2 && rd != 0 && imm_i < 64 * size {
                Some(if size == 4 {
                    (fq << 13
                        | bits(u, 5, 5) << 12
                        | rd << 7
                        | bits(u, 4, 2) << 4
                        | bits(u, 7, 6) << 2
                        | 2) as u16
                } else {
                    (fq << 13
                        | bits(u, 5, 5) << 12
                        | rd << 7
                        | bits(u, 4, 3) << 5
                        | bits(u, 8, 6) << 2
                        | 2) as u16
                })
            } else if let (Some(d), Some(b)) = (creg(rd), creg(rs1)) {
                (imm_i < 32 * size).then(|| {
                    let lo = if size == 4 {
                        bits(u, 2, 2) << 6 | bits(u, 6, 6) << 5
                    } else {
                        bits(u, 7, 6) << 5
                    };
                    (fq << 13 | bits(u, 5, 3) << 10 | b << 7 | lo | d << 2) as u16
                })
            } else {
                None
            }
        }
        OP_STORE if f3 == 2 || f3 == 3 => {
            let (size, fq) = if f3 == 2 { (4, 6) } else { (8, 7) };
            let u = imm_s as u32;
            if imm_s < 0 || imm_s % size != 0 {
                None
            } else if rs1 == 2 && imm_s < 64 * size {
                Some(if size == 4 {
                    (fq << 13 | bits(u, 5, 2) << 9 | bits(u, 7, 6) << 7 | rs2 << 2 | 2) as u16
                } else {
                    (fq << 13 | bits(u, 5, 3) << 10 | bits(u, 8, 6) << 7 | rs2 << 2 | 2) as u16
                })
            } else if let (Some(s), Some(b)) = (creg(rs2), creg(rs1)) {
                (imm_s < 32 * size).then(|| {
                    let lo = if size == 4 {
                        bits(u, 2, 2) << 6 | bits(u, 6, 6) << 5
                    } else {
                        bits(u, 7, 6) << 5
                    };
                    (((fq - 4) | 4) << 13 | bits(u, 5, 3) << 10 | b << 7 | lo | s << 2) as u16
                })
            } else {
                None
            }
        }
        OP_JALR if f3 == 0 && imm_i == 0 && rs1 != 0 && (rd == 0 || rd == 1) => {
            Some(((0x8 | rd) << 12 | rs1 << 7 | 2) as u16) // c.jr / c.jalr
        }
        OP_JAL if rd == 0 => {
            let off = sext(
                (((w >> 31) & 1) << 20
                    | ((w >> 21) & 0x3ff) << 1
                    | ((w >> 20) & 1) << 11
                    | ((w >> 12) & 0xff) << 12) as u64,
                21,
            );
            (-2048..2048).contains(&off).then(|| {
                let u = off as u32;
                (5 << 13
                    | bits(u, 11, 11) << 12
                    | bits(u, 4, 4) << 11
                    | bits(u, 9, 8) << 9
                    | bits(u, 10, 10) << 8
                    | bits(u, 6, 6) << 7
                    | bits(u, 7, 7) << 6
                    | bits(u, 3, 1) << 3
                    | bits(u, 5, 5) << 2
                    | 1) as u16
            })
        }
        OP_BRANCH if (f3 == 0 || f3 == 1) && rs2 == 0 => {
            let off = sext(
                (((w >> 31) & 1) << 12
                    | ((w >> 25) & 0x3f) << 5
                    | ((w >> 8) & 0xf) << 1
                    | ((w >> 7) & 1) << 11) as u64,
                13,
            );
            creg(rs1).filter(|_| (-256..256).contains(&off)).map(|r| {
                let u = off as u32;
                ((6 + f3) << 13
                    | bits(u, 8, 8) << 12
                    | bits(u, 4, 3) << 10
                    | r << 7
                    | bits(u, 7, 6) << 5
                    | bits(u, 2, 1) << 3
                    | bits(u, 5, 5) << 2
                    | 1) as u16
            })
        }
        OP_SYSTEM if w == EBREAK => Some(0x9002),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Assembler with labels

/// What one emitted instruction is, for listings and failure reports.
#[derive(Clone, Debug)]
pub struct Insn {
    /// Its address.
    pub addr: u64,
    /// The 32-bit instruction (for a compressed one: the instruction it was
    /// compressed from, whose meaning it has).
    pub word: u32,
    /// The 16-bit encoding actually emitted, for a compressed instruction.
    pub rvc: Option<u16>,
    /// Body unit (generation index) it belongs to; `None` outside the body.
    pub unit: Option<usize>,
    /// Destination register written (if any, and not x0).
    pub rd: Option<u8>,
    /// Memory bytes possibly written: (address, length).
    pub mem_write: Option<(u64, u64)>,
    /// Writes mscratch.
    pub csr_write: bool,
    /// Free-form note (e.g. "traps").
    pub note: String,
}

impl Insn {
    /// Size in bytes (2 or 4).
    pub fn len(&self) -> u64 {
        if self.rvc.is_some() { 2 } else { 4 }
    }
    /// Address, encoding and disassembly, e.g. `0x80000010: 4505 c.addi x10, x0, 1`.
    pub fn text(&self) -> String {
        match self.rvc {
            Some(h) => format!(
                "{:#x}: {h:04x}     c.{}",
                self.addr,
                disasm(self.word, self.addr)
            ),
            None => format!(
                "{:#x}: {:08x} {}",
                self.addr,
                self.word,
                disasm(self.word, self.addr)
            ),
        }
    }
}

/// A code label.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Label(usize);

/// What a fix-up patches once its label is bound.
#[derive(Clone, Copy, Debug)]
pub enum Fix {
    /// A conditional branch.
    Branch,
    /// `jal`.
    Jal,
    /// AUIPC at idx, ADDI (or JALR, or a load) at idx+1.
    AuipcAddi,
}

fn writes_rd(w: u32) -> bool {
    let op = w & 0x7f;
    matches!(
        op,
        OP_LUI
            | OP_AUIPC
            | OP_JAL
            | OP_JALR
            | OP_LOAD
            | OP_IMM
            | OP_IMM32
            | OP_OP
            | OP_OP32
            | OP_AMO
    ) || (op == OP_SYSTEM && (w >> 12) & 7 != 0)
}

/// The assembler: instructions from `BASE` on, labels, fix-ups.
pub struct Asm {
    /// Everything emitted, in address order.
    pub insns: Vec<Insn>,
    labels: Vec<Option<u64>>,
    /// Pending fix-ups: (instruction index, kind, target).
    pub fixups: Vec<(usize, Fix, Label)>,
    /// Body unit of what is emitted now (`None` outside the body).
    pub unit: Option<usize>,
    /// Emit RVC encodings where an instruction has one.
    pub rvc: bool,
    pc: u64,
}

impl Asm {
    /// An empty program at `BASE`; `rvc`: compress where possible.
    pub fn new(rvc: bool) -> Self {
        Asm {
            insns: Vec::new(),
            labels: Vec::new(),
            fixups: Vec::new(),
            unit: None,
            rvc,
            pc: BASE,
        }
    }
    /// Address of the next instruction.
    pub fn pc(&self) -> u64 {
        self.pc
    }
    /// A new, unbound label.
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }
    /// Bind `l` to the current address.
    pub fn bind(&mut self, l: Label) {
        assert!(self.labels[l.0].is_none());
        self.labels[l.0] = Some(self.pc);
    }
    /// A label bound here.
    pub fn here(&mut self) -> Label {
        let l = self.label();
        self.bind(l);
        l
    }
    /// The address of a bound label.
    pub fn addr_of(&self, l: Label) -> Option<u64> {
        self.labels[l.0]
    }
    fn push(&mut self, w: u32, rvc: Option<u16>) -> &mut Insn {
        let rd = (w >> 7) & 31;
        let addr = self.pc;
        let insn = Insn {
            addr,
            word: w,
            rvc,
            unit: self.unit,
            rd: (writes_rd(w) && rd != 0).then_some(rd as u8),
            mem_write: None,
            csr_write: false,
            note: String::new(),
        };
        self.pc += insn.len();
        self.insns.push(insn);
        self.insns.last_mut().unwrap()
    }
    /// Emit `w`, compressed when compression is on and it has an RVC form.
    pub fn emit(&mut self, w: u32) -> &mut Insn {
        let c = if self.rvc { compress(w) } else { None };
        self.push(w, c)
    }
    /// Emit `w` as a 32-bit instruction whatever the compression setting.
    pub fn emit32(&mut self, w: u32) -> &mut Insn {
        self.push(w, None)
    }
    /// Set the note of the last instruction.
    pub fn note(&mut self, n: &str) {
        self.insns.last_mut().unwrap().note = n.to_string();
    }
    /// Index of the next instruction.
    pub fn next_index(&self) -> usize {
        self.insns.len()
    }

    pub fn addi(&mut self, rd: u8, rs1: u8, imm: i64) {
        self.emit(i_type(imm, rs1, 0, rd, OP_IMM));
    }
    pub fn andi(&mut self, rd: u8, rs1: u8, imm: i64) {
        self.emit(i_type(imm, rs1, 7, rd, OP_IMM));
    }
    pub fn slli(&mut self, rd: u8, rs1: u8, sh: u32) {
        self.emit(i_type(sh as i64, rs1, 1, rd, OP_IMM));
    }
    pub fn srli(&mut self, rd: u8, rs1: u8, sh: u32) {
        self.emit(i_type(sh as i64, rs1, 5, rd, OP_IMM));
    }
    pub fn add(&mut self, rd: u8, rs1: u8, rs2: u8) {
        self.emit(r_type(0, rs2, rs1, 0, rd, OP_OP));
    }
    pub fn sub(&mut self, rd: u8, rs1: u8, rs2: u8) {
        self.emit(r_type(0x20, rs2, rs1, 0, rd, OP_OP));
    }
    pub fn or(&mut self, rd: u8, rs1: u8, rs2: u8) {
        self.emit(r_type(0, rs2, rs1, 6, rd, OP_OP));
    }
    pub fn srl(&mut self, rd: u8, rs1: u8, rs2: u8) {
        self.emit(r_type(0, rs2, rs1, 5, rd, OP_OP));
    }
    pub fn lui(&mut self, rd: u8, hi20: u32) {
        self.emit((hi20 & 0xf_ffff) << 12 | (rd as u32) << 7 | OP_LUI);
    }
    pub fn auipc(&mut self, rd: u8, hi20: u32) {
        self.emit((hi20 & 0xf_ffff) << 12 | (rd as u32) << 7 | OP_AUIPC);
    }
    /// Load a 32-bit signed constant.
    pub fn li32(&mut self, rd: u8, v: i32) {
        let (hi, lo) = hi_lo(v as i64);
        if hi != 0 {
            self.lui(rd, hi);
            if lo != 0 {
                self.emit(i_type(lo, rd, 0, rd, OP_IMM32)); // addiw
            }
        } else {
            self.addi(rd, 0, lo);
        }
    }
    /// rd = absolute address `addr` (PC-relative, so it works above 2 GiB).
    pub fn la(&mut self, rd: u8, addr: u64) {
        let (hi, lo) = hi_lo(addr.wrapping_sub(self.pc()) as i64);
        self.auipc(rd, hi);
        self.addi(rd, rd, lo);
    }
    /// rd = address of a code label.
    pub fn la_label(&mut self, rd: u8, l: Label) {
        let idx = self.insns.len();
        self.emit32((rd as u32) << 7 | OP_AUIPC);
        self.emit32(i_type(0, rd, 0, rd, OP_IMM));
        self.fixups.push((idx, Fix::AuipcAddi, l));
    }
    /// `auipc tmp, hi; ld rd, lo(tmp)`: load a doubleword from an absolute address.
    pub fn ld_abs(&mut self, rd: u8, tmp: u8, addr: u64) {
        let (hi, lo) = hi_lo(addr.wrapping_sub(self.pc()) as i64);
        self.auipc(tmp, hi);
        self.emit(i_type(lo, tmp, 3, rd, OP_LOAD));
    }
    pub fn load(&mut self, f3: u32, rd: u8, off: i64, rs1: u8) {
        self.emit(i_type(off, rs1, f3, rd, OP_LOAD));
    }
    pub fn ld(&mut self, rd: u8, off: i64, rs1: u8) {
        self.load(3, rd, off, rs1);
    }
    pub fn lbu(&mut self, rd: u8, off: i64, rs1: u8) {
        self.load(4, rd, off, rs1);
    }
    pub fn lhu(&mut self, rd: u8, off: i64, rs1: u8) {
        self.load(5, rd, off, rs1);
    }
    pub fn store(&mut self, f3: u32, rs2: u8, off: i64, rs1: u8) {
        self.emit(s_type(off, rs2, rs1, f3, OP_STORE));
    }
    pub fn sd(&mut self, rs2: u8, off: i64, rs1: u8) {
        self.store(3, rs2, off, rs1);
    }
    pub fn sw(&mut self, rs2: u8, off: i64, rs1: u8) {
        self.store(2, rs2, off, rs1);
    }
    pub fn sb(&mut self, rs2: u8, off: i64, rs1: u8) {
        self.store(0, rs2, off, rs1);
    }
    /// csrrw/csrrs/csrrc (f3 1..3) or the immediate forms (f3 5..7).
    pub fn csr(&mut self, f3: u32, rd: u8, csr: u32, rs1_or_uimm: u8) {
        self.emit(csr << 20 | (rs1_or_uimm as u32) << 15 | f3 << 12 | (rd as u32) << 7 | OP_SYSTEM);
    }
    pub fn csrrw(&mut self, rd: u8, csr: u32, rs1: u8) {
        self.csr(1, rd, csr, rs1);
    }
    pub fn csrr(&mut self, rd: u8, csr: u32) {
        self.csr(2, rd, csr, 0);
    }
    pub fn csrw(&mut self, csr: u32, rs1: u8) {
        self.csr(1, 0, csr, rs1);
    }
    /// A conditional branch: to a bound label it is emitted now (and may be
    /// compressed), to an unbound one as a 32-bit fix-up.
    pub fn branch(&mut self, f3: u32, rs1: u8, rs2: u8, l: Label) {
        let w = r_type(0, rs2, rs1, f3, 0, OP_BRANCH);
        match self.labels[l.0] {
            Some(t) => {
                let off = t.wrapping_sub(self.pc) as i64;
                self.emit(w | b_imm(off));
            }
            None => {
                let idx = self.insns.len();
                self.emit32(w);
                self.fixups.push((idx, Fix::Branch, l));
            }
        }
    }
    pub fn beq(&mut self, rs1: u8, rs2: u8, l: Label) {
        self.branch(0, rs1, rs2, l)
    }
    pub fn bne(&mut self, rs1: u8, rs2: u8, l: Label) {
        self.branch(1, rs1, rs2, l)
    }
    pub fn blt(&mut self, rs1: u8, rs2: u8, l: Label) {
        self.branch(4, rs1, rs2, l)
    }
    pub fn bltu(&mut self, rs1: u8, rs2: u8, l: Label) {
        self.branch(6, rs1, rs2, l)
    }
    pub fn bgeu(&mut self, rs1: u8, rs2: u8, l: Label) {
        self.branch(7, rs1, rs2, l)
    }
    /// `jal rd, l` (as [`Asm::branch`]: compressed only backward).
    pub fn jal(&mut self, rd: u8, l: Label) {
        let w = (rd as u32) << 7 | OP_JAL;
        match self.labels[l.0] {
            Some(t) => {
                let off = t.wrapping_sub(self.pc) as i64;
                self.emit(w | j_imm(off));
            }
            None => {
                let idx = self.insns.len();
                self.emit32(w);
                self.fixups.push((idx, Fix::Jal, l));
            }
        }
    }
    pub fn j(&mut self, l: Label) {
        self.jal(0, l)
    }
    pub fn ret(&mut self) {
        self.emit(i_type(0, 1, 0, 0, OP_JALR));
    }
    /// Pad with `nop`s (32-bit) to a multiple of `bytes` (with compression,
    /// one `c.nop` first if the address is only 2-byte aligned).
    pub fn align(&mut self, bytes: u64) {
        if self.pc % 4 == 2 {
            self.push(NOP, Some(0x0001));
        }
        while self.pc() % bytes != 0 {
            self.emit32(NOP);
        }
    }

    /// Resolve the fix-ups.
    pub fn finish(&mut self) {
        for &(idx, fix, l) in &self.fixups {
            let target = self.labels[l.0].expect("unbound label");
            let off = target.wrapping_sub(self.insns[idx].addr) as i64;
            match fix {
                Fix::Branch => self.insns[idx].word |= b_imm(off),
                Fix::Jal => self.insns[idx].word |= j_imm(off),
                Fix::AuipcAddi => {
                    let (hi, lo) = hi_lo(off);
                    self.insns[idx].word |= hi << 12;
                    self.insns[idx + 1].word |= ((lo as u32) & 0xfff) << 20;
                }
            }
        }
        self.fixups.clear();
    }

    /// Write the code into `image` (which starts at `BASE`).
    pub fn write_code(&self, image: &mut [u8]) {
        for i in &self.insns {
            let o = (i.addr - BASE) as usize;
            match i.rvc {
                Some(h) => image[o..o + 2].copy_from_slice(&h.to_le_bytes()),
                None => image[o..o + 4].copy_from_slice(&i.word.to_le_bytes()),
            }
        }
    }

    /// The instruction at `pc`, if one starts there.
    pub fn insn_at(insns: &[Insn], pc: u64) -> Option<&Insn> {
        insns
            .binary_search_by_key(&pc, |i| i.addr)
            .ok()
            .map(|k| &insns[k])
    }
}

// ---------------------------------------------------------------------------
// Print routines and the finisher

/// Register numbers the fixed code of the programs uses.
pub mod reg {
    pub const RA: u8 = 1;
    pub const T0: u8 = 5;
    pub const T1: u8 = 6;
    pub const T2: u8 = 7;
    pub const S0: u8 = 8;
    pub const S1: u8 = 9;
    pub const A0: u8 = 10;
    pub const A1: u8 = 11;
    pub const A2: u8 = 12;
    pub const A3: u8 = 13;
    pub const A4: u8 = 14;
    pub const S2: u8 = 18;
    pub const S3: u8 = 19;
    pub const S4: u8 = 20;
    pub const S5: u8 = 21;
    pub const S6: u8 = 22;
}

/// The labels of the print routines.
#[derive(Clone, Copy, Debug)]
pub struct Print {
    /// putc(a0): poll LSR.THRE, write THR. Clobbers t0, t1.
    pub putc: Label,
    /// puts(a0): NUL-terminated string. Clobbers a0, a3, t0, t1.
    pub puts: Label,
    /// puthex(a0 value, a1 digits). Clobbers a2, a3, a4, t0, t1.
    pub puthex: Label,
}

impl Print {
    /// Fresh labels (bind them with [`Print::emit`]).
    pub fn new(a: &mut Asm) -> Print {
        Print {
            putc: a.label(),
            puts: a.label(),
            puthex: a.label(),
        }
    }

    /// The end of a run: write "pass" (0x5555) to the finisher, then loop
    /// forever. QEMU 10.0 stops the vCPU asynchronously after the finisher
    /// store, so what follows it runs for a while: the loop keeps that
    /// deterministic (nothing after the store has an effect).
    pub fn finish_pass(a: &mut Asm) {
        use reg::*;
        a.li32(T0, FINISHER as i32);
        a.li32(T1, 0x5555);
        a.sw(T1, 0, T0);
        let hang = a.here();
        a.j(hang);
        assert_eq!(
            a.insns.last().map(|i| i.word),
            Some(OP_JAL),
            "the finisher store must be followed by a jump to itself"
        );
    }

    /// "fail, exit code `code`" to the finisher (using `r1`, `r2`), then loop.
    pub fn finish_fail(a: &mut Asm, code: u32, r1: u8, r2: u8) {
        a.lui(r1, (FINISHER >> 12) as u32);
        a.li32(r2, (0x3333 | (code << 16)) as i32);
        a.sw(r2, 0, r1);
        let hang = a.here();
        a.j(hang);
    }

    /// Emit the three routines.
    pub fn emit(&self, a: &mut Asm) {
        use reg::*;
        a.bind(self.putc);
        a.li32(T0, UART as i32);
        let poll = a.here();
        a.lbu(T1, 5, T0);
        a.andi(T1, T1, 0x20);
        a.beq(T1, 0, poll);
        a.sb(A0, 0, T0);
        a.ret();

        a.bind(self.puts);
        a.li32(T0, UART as i32);
        let sloop = a.here();
        let sdone = a.label();
        a.lbu(A3, 0, A0);
        a.beq(A3, 0, sdone);
        let poll = a.here();
        a.lbu(T1, 5, T0);
        a.andi(T1, T1, 0x20);
        a.beq(T1, 0, poll);
        a.sb(A3, 0, T0);
        a.addi(A0, A0, 1);
        a.j(sloop);
        a.bind(sdone);
        a.ret();

        a.bind(self.puthex);
        a.li32(T0, UART as i32);
        a.slli(A2, A1, 2);
        let hloop = a.here();
        a.addi(A2, A2, -4);
        a.srl(A3, A0, A2);
        a.andi(A3, A3, 15);
        a.addi(A4, A3, -10);
        let digit = a.label();
        let out = a.label();
        a.blt(A4, 0, digit);
        a.addi(A3, A3, 'a' as i64 - 10);
        a.j(out);
        a.bind(digit);
        a.addi(A3, A3, '0' as i64);
        a.bind(out);
        let poll = a.here();
        a.lbu(T1, 5, T0);
        a.andi(T1, T1, 0x20);
        a.beq(T1, 0, poll);
        a.sb(A3, 0, T0);
        a.bne(A2, 0, hloop);
        a.ret();
    }
}

/// Handler code: advance mepc past the trapping instruction (`x` scratch,
/// `y` scratch): by 4, or with compression by its length (2 when the low two
/// bits of its first halfword are not 0b11).
pub fn emit_skip_mepc(a: &mut Asm, x: u8, y: u8) {
    a.csrr(x, CSR_MEPC);
    if a.rvc {
        a.lhu(y, 0, x);
        a.andi(y, y, 3);
        a.addi(y, y, -3);
        let four = a.label();
        a.beq(y, 0, four);
        a.addi(x, x, -2);
        a.bind(four);
        a.addi(x, x, 4);
    } else {
        a.addi(x, x, 4);
    }
    a.csrw(CSR_MEPC, x);
}
/// A minimal ELF64 little-endian RISC-V ET_EXEC with one PT_LOAD RWX segment.
pub fn elf64_exec(entry: u64, vaddr: u64, seg: &[u8]) -> Vec<u8> {
    const SEG_OFF: u64 = 0x1000;
    let mut f = Vec::with_capacity(SEG_OFF as usize + seg.len());
    // e_ident
    f.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    f.extend_from_slice(&[0; 8]);
    f.extend_from_slice(&2u16.to_le_bytes()); // e_type = ET_EXEC
    f.extend_from_slice(&243u16.to_le_bytes()); // e_machine = EM_RISCV
    f.extend_from_slice(&1u32.to_le_bytes()); // e_version
    f.extend_from_slice(&entry.to_le_bytes()); // e_entry
    f.extend_from_slice(&64u64.to_le_bytes()); // e_phoff
    f.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    f.extend_from_slice(&0u32.to_le_bytes()); // e_flags (soft-float ABI, no RVC)
    f.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
    f.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
    f.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    f.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    f.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    f.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
    // program header
    f.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    f.extend_from_slice(&7u32.to_le_bytes()); // PF_R | PF_W | PF_X
    f.extend_from_slice(&SEG_OFF.to_le_bytes()); // p_offset
    f.extend_from_slice(&vaddr.to_le_bytes()); // p_vaddr
    f.extend_from_slice(&vaddr.to_le_bytes()); // p_paddr
    f.extend_from_slice(&(seg.len() as u64).to_le_bytes()); // p_filesz
    f.extend_from_slice(&(seg.len() as u64).to_le_bytes()); // p_memsz
    f.extend_from_slice(&0x1000u64.to_le_bytes()); // p_align
    f.resize(SEG_OFF as usize, 0);
    f.extend_from_slice(seg);
    f
}

/// The ISA extensions a program is generated for, beyond RV64IMA + Zicsr +
/// Zifencei: recorded with each program and passed to both machines
/// (`-cpu rv64,c=…,zba=…,zbb=…,zbs=…` and `--cpu` with the same text).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Isa {
    /// C: the assembler emits RVC encodings where an instruction has one.
    pub c: bool,
    /// Zba: address generation (sh*add, add.uw, slli.uw).
    pub zba: bool,
    /// Zbb: basic bit manipulation.
    pub zbb: bool,
    /// Zbs: single-bit instructions.
    pub zbs: bool,
}

impl Isa {
    /// No extension beyond RV64IMA.
    pub const BASE: Isa = Isa {
        c: false,
        zba: false,
        zbb: false,
        zbs: false,
    };
    /// Everything (QEMU's `rv64` default, vcpulab's `--cpu rv64` default).
    pub const FULL: Isa = Isa {
        c: true,
        zba: true,
        zbb: true,
        zbs: true,
    };
    /// Compressed code only.
    pub const C: Isa = Isa {
        c: true,
        zba: false,
        zbb: false,
        zbs: false,
    };
    /// Zba, Zbb and Zbs, no C.
    pub const ZB: Isa = Isa {
        c: false,
        zba: true,
        zbb: true,
        zbs: true,
    };

    /// The `-cpu` / `--cpu` value: `rv64,c=on,zba=off,...` (both accept it).
    pub fn cpu(&self) -> String {
        let o = |b: bool| if b { "on" } else { "off" };
        format!(
            "rv64,c={},zba={},zbb={},zbs={}",
            o(self.c),
            o(self.zba),
            o(self.zbb),
            o(self.zbs)
        )
    }

    /// A short name for file names: `rv64ima`, or the extensions on (`c`, `zba_zbb_zbs`).
    pub fn tag(&self) -> String {
        let on: Vec<&str> = [
            ("c", self.c),
            ("zba", self.zba),
            ("zbb", self.zbb),
            ("zbs", self.zbs),
        ]
        .iter()
        .filter(|e| e.1)
        .map(|e| e.0)
        .collect();
        if on.is_empty() {
            "rv64ima".into()
        } else {
            on.join("_")
        }
    }

    /// Whether extension `ext` ("zba", "zbb", "zbs") is on.
    pub fn has(&self, ext: &str) -> bool {
        match ext {
            "zba" => self.zba,
            "zbb" => self.zbb,
            "zbs" => self.zbs,
            "c" => self.c,
            _ => false,
        }
    }

    /// A random Zb* instruction of the enabled extensions (None if none is).
    pub fn zb_insn(&self, rng: &mut SplitMix64, rd: u8, rs1: u8, rs2: u8) -> Option<u32> {
        let forms: Vec<ZbForm> = ZB.iter().filter(|z| self.has(z.0)).map(|z| z.2).collect();
        if forms.is_empty() {
            return None;
        }
        let f = forms[rng.below(forms.len() as u64) as usize];
        let sh = rng.below(64) as u32;
        Some(zb_word(f, rd, rs1, rs2, sh))
    }
}

// ---------------------------------------------------------------------------
// Self-check of the encoders

/// The instructions the encoding check covers: the 32-bit forms the
/// generators compress (with operands inside and just outside each RVC
/// form's range) and every Zb* instruction.
pub fn encoding_samples() -> Vec<u32> {
    let mut v = Vec::new();
    let regs = [0u8, 1, 2, 8, 9, 15, 16, 31];
    for &rd in &regs {
        for &rs1 in &regs {
            for imm in [
                -33i64, -32, -1, 0, 1, 31, 32, 16, -512, 496, 4, 1020, 1024, 8,
            ] {
                v.push(i_type(imm, rs1, 0, rd, OP_IMM)); // addi
                v.push(i_type(imm, rs1, 0, rd, OP_IMM32)); // addiw
                v.push(i_type(imm, rs1, 7, rd, OP_IMM)); // andi
            }
            for sh in [0i64, 1, 31, 32, 63] {
                v.push(i_type(sh, rs1, 1, rd, OP_IMM));
                v.push(i_type(sh, rs1, 5, rd, OP_IMM));
                v.push(i_type(0x400 | sh, rs1, 5, rd, OP_IMM));
            }
            for off in [-8i64, 0, 4, 8, 12, 120, 124, 128, 248, 252, 256, 504, 512] {
                v.push(i_type(off, rs1, 2, rd, OP_LOAD));
                v.push(i_type(off, rs1, 3, rd, OP_LOAD));
                v.push(s_type(off, rd, rs1, 2, OP_STORE));
                v.push(s_type(off, rd, rs1, 3, OP_STORE));
            }
            for &rs2 in &regs {
                for (f7, f3, op) in [
                    (0, 0, OP_OP),
                    (0x20, 0, OP_OP),
                    (0, 4, OP_OP),
                    (0, 6, OP_OP),
                    (0, 7, OP_OP),
                    (0, 0, OP_OP32),
                    (0x20, 0, OP_OP32),
                ] {
                    v.push(r_type(f7, rs2, rs1, f3, rd, op));
                }
            }
            v.push(i_type(0, rs1, 0, rd, OP_JALR));
        }
        for hi in [0u32, 1, 31, 32, 0xfffe0, 0xfffdf, 0xfffff, 0x80000] {
            v.push(hi << 12 | (rd as u32) << 7 | OP_LUI);
        }
    }
    v.push(EBREAK);
    v.push(ECALL);
    for &(_, _, form) in ZB {
        for (rd, rs1, rs2, sh) in [
            (1u8, 2u8, 3u8, 0u32),
            (10, 11, 12, 5),
            (31, 30, 29, 63),
            (8, 9, 15, 31),
        ] {
            v.push(zb_word(form, rd, rs1, rs2, sh));
        }
    }
    v.sort();
    v.dedup();
    v
}

/// `riscv64-unknown-elf-as -march=rv64imac_zba_zbb_zbs` and `-objdump` on
/// the disassembly of `words`: each one's encoding as the assembler makes it
/// (16-bit ones as `u32` below 0x10000, tagged by the length). `None` when
/// the toolchain is not installed.
pub fn gas_encodings(words: &[u32]) -> Option<Vec<(u32, u8)>> {
    use std::process::Command;
    let as_ = "riscv64-unknown-elf-as";
    let objdump = "riscv64-unknown-elf-objdump";
    if Command::new(as_).arg("--version").output().is_err() {
        return None;
    }
    let dir = tempfile::tempdir().ok()?;
    let src = dir.path().join("e.s");
    let obj = dir.path().join("e.o");
    let mut text = String::from(".option norelax\n");
    for &w in words {
        let _ = writeln!(text, "{}", disasm(w, 0));
    }
    std::fs::write(&src, text).ok()?;
    let st = Command::new(as_)
        .args(["-march=rv64imac_zba_zbb_zbs", "-o"])
        .arg(&obj)
        .arg(&src)
        .status()
        .ok()?;
    assert!(st.success(), "{as_} failed on {}", src.display());
    let out = Command::new(objdump).arg("-d").arg(&obj).output().ok()?;
    let mut v = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut parts = line.split('\t');
        let (Some(addr), Some(hex)) = (parts.next(), parts.next()) else {
            continue;
        };
        if !addr.trim_end().ends_with(':') {
            continue;
        }
        let hex = hex.trim();
        if let Ok(x) = u32::from_str_radix(hex, 16) {
            v.push((x, (hex.len() / 2) as u8));
        }
    }
    assert_eq!(
        v.len(),
        words.len(),
        "objdump listed {} of {} instructions",
        v.len(),
        words.len()
    );
    Some(v)
}

/// The encoding `Asm` emits for `w` with compression on: (bits, bytes).
pub fn our_encoding(w: u32) -> (u32, u8) {
    match compress(w) {
        Some(h) => (h as u32, 2),
        None => (w, 4),
    }
}

/// A fixed table of (32-bit instruction, expected encoding, bytes), made with
/// `riscv64-unknown-elf-as` 2.40 (Debian 12): checked when the toolchain is
/// absent, so that the compressor stays right on machines without it.
pub const RVC_TABLE: &[(u32, u32, u8)] = &[
    (0x0000_0013, 0x0001, 2),      // nop -> c.nop
    (0x0010_0513, 0x4505, 2),      // addi a0, x0, 1 -> c.li
    (0xfff5_0513, 0x157d, 2),      // addi a0, a0, -1 -> c.addi
    (0x0005_8513, 0x852e, 2),      // addi a0, a1, 0 -> c.mv
    (0x0101_0113, 0x0141, 2),      // addi sp, sp, 16 -> c.addi16sp
    (0x0041_0413, 0x0040, 2),      // addi s0, sp, 4 -> c.addi4spn
    (0x0015_051b, 0x2505, 2),      // addiw a0, a0, 1 -> c.addiw
    (0x0000_1537, 0x6505, 2),      // lui a0, 1 -> c.lui
    (0x0035_1513, 0x050e, 2),      // slli a0, a0, 3 -> c.slli
    (0x0035_5513, 0x810d, 2),      // srli a0, a0, 3 -> c.srli
    (0x4035_5513, 0x850d, 2),      // srai a0, a0, 3 -> c.srai
    (0x00f5_7513, 0x893d, 2),      // andi a0, a0, 15 -> c.andi
    (0x40b5_0533, 0x8d0d, 2),      // sub a0, a0, a1 -> c.sub
    (0x00b5_4533, 0x8d2d, 2),      // xor
    (0x00b5_6533, 0x8d4d, 2),      // or
    (0x00b5_7533, 0x8d6d, 2),      // and
    (0x40b5_053b, 0x9d0d, 2),      // subw
    (0x00b5_053b, 0x9d2d, 2),      // addw
    (0x00b5_0533, 0x952e, 2),      // add a0, a0, a1 -> c.add
    (0x0045_a503, 0x41c8, 2),      // lw a0, 4(a1) -> c.lw
    (0x0085_b503, 0x6588, 2),      // ld a0, 8(a1) -> c.ld
    (0x00a5_a223, 0xc1c8, 2),      // sw a0, 4(a1) -> c.sw
    (0x00a5_b423, 0xe588, 2),      // sd a0, 8(a1) -> c.sd
    (0x0041_2503, 0x4512, 2),      // lw a0, 4(sp) -> c.lwsp
    (0x0081_3503, 0x6522, 2),      // ld a0, 8(sp) -> c.ldsp
    (0x00a1_2223, 0xc22a, 2),      // sw a0, 4(sp) -> c.swsp
    (0x00a1_3423, 0xe42a, 2),      // sd a0, 8(sp) -> c.sdsp
    (0x0005_0067, 0x8502, 2),      // jalr x0, 0(a0) -> c.jr
    (0x0005_00e7, 0x9502, 2),      // jalr ra, 0(a0) -> c.jalr
    (0x0010_0073, 0x9002, 2),      // ebreak -> c.ebreak
    (0x0205_0513, 0x0205_0513, 4), // addi a0, a0, 32: no RVC form
    (0x0015_8513, 0x0015_8513, 4), // addi a0, a1, 1: no RVC form
    (0x0805_a503, 0x0805_a503, 4), // lw a0, 128(a1): offset too large
    (0x0000_0073, 0x0000_0073, 4), // ecall
];

/// Check the RVC compressor and the Zb* encoders: against the assembler when
/// it is installed (every sample), and always against [`RVC_TABLE`].
pub fn self_test_encodings() {
    let samples = encoding_samples();
    match gas_encodings(&samples) {
        Some(gas) => {
            let mut bad = Vec::new();
            for (&w, &g) in samples.iter().zip(&gas) {
                if our_encoding(w) != g {
                    bad.push(format!(
                        "{w:#010x} {:<28} ours {:x?}, as {:x?}",
                        disasm(w, 0),
                        our_encoding(w),
                        g
                    ));
                }
            }
            assert!(
                bad.is_empty(),
                "{} of {} encodings differ from the assembler's:\n{}",
                bad.len(),
                samples.len(),
                bad.join("\n")
            );
            println!(
                "encodings: {} samples agree with riscv64-unknown-elf-as",
                samples.len()
            );
        }
        None => println!(
            "encodings: riscv64-unknown-elf-as not installed; checked the fixed table of {} only",
            RVC_TABLE.len()
        ),
    }
    let table: Vec<u32> = RVC_TABLE.iter().map(|t| t.0).collect();
    if let Some(gas) = gas_encodings(&table) {
        for (&(w, enc, len), g) in RVC_TABLE.iter().zip(gas) {
            assert_eq!(
                (enc, len),
                g,
                "RVC_TABLE entry {w:#010x} {} disagrees with the assembler",
                disasm(w, 0)
            );
        }
    }
    for &(w, enc, len) in RVC_TABLE {
        assert_eq!(our_encoding(w), (enc, len), "{w:#010x} {}", disasm(w, 0));
    }
}
