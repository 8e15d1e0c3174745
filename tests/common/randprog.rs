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

/// Load address and entry point.
pub const BASE: u64 = 0x8000_0000;
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

const UART: u64 = 0x1000_0000;
const FINISHER: u64 = 0x0010_0000;

/// Number of lines the epilogue prints before the data dump (x1..x30, mscratch).
pub const REG_LINES: usize = 31;
/// Number of data dump lines.
pub const DATA_LINES: usize = (DATA_SIZE / 32) as usize;

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

const OP_LOAD: u32 = 0x03;
const OP_MISC_MEM: u32 = 0x0f;
const OP_IMM: u32 = 0x13;
const OP_AUIPC: u32 = 0x17;
const OP_IMM32: u32 = 0x1b;
const OP_STORE: u32 = 0x23;
const OP_AMO: u32 = 0x2f;
const OP_OP: u32 = 0x33;
const OP_LUI: u32 = 0x37;
const OP_OP32: u32 = 0x3b;
const OP_BRANCH: u32 = 0x63;
const OP_JALR: u32 = 0x67;
const OP_JAL: u32 = 0x6f;
const OP_SYSTEM: u32 = 0x73;

const CSR_MSTATUS: u32 = 0x300;
const CSR_MTVEC: u32 = 0x305;
const CSR_MSCRATCH: u32 = 0x340;
const CSR_MEPC: u32 = 0x341;
const CSR_MCAUSE: u32 = 0x342;
const CSR_MTVAL: u32 = 0x343;
const CSR_MHARTID: u32 = 0xf14;

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

fn sext(v: u64, bits: u32) -> i64 {
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
                c => format!("{c:#x}"),
            };
            match f3 {
                0 => match w {
                    0x0000_0073 => "ecall".into(),
                    0x0010_0073 => "ebreak".into(),
                    0x3020_0073 => "mret".into(),
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
// Assembler with forward labels

/// What one emitted word is, for listings and failure reports.
#[derive(Clone, Debug)]
pub struct InsnInfo {
    pub addr: u64,
    pub word: u32,
    /// Part of the random body (as opposed to prologue/epilogue/handler).
    pub body: bool,
    /// Index of the body unit this word belongs to.
    pub unit: usize,
    /// Destination register written (if any, and not x0).
    pub rd: Option<u8>,
    /// Memory bytes possibly written: (address, length).
    pub mem_write: Option<(u64, u64)>,
    /// Writes mscratch.
    pub csr_write: bool,
    /// Free-form note (e.g. "expected: misaligned, traps").
    pub note: String,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Label(usize);

#[derive(Clone, Copy, Debug)]
enum Fix {
    Branch,
    Jal,
    /// AUIPC at idx, ADDI at idx+1.
    AuipcAddi,
}

struct Asm {
    words: Vec<u32>,
    info: Vec<InsnInfo>,
    labels: Vec<Option<usize>>,
    fixups: Vec<(usize, Fix, Label)>,
    in_body: bool,
    unit: usize,
}

impl Asm {
    fn new() -> Self {
        Asm {
            words: Vec::new(),
            info: Vec::new(),
            labels: Vec::new(),
            fixups: Vec::new(),
            in_body: false,
            unit: 0,
        }
    }
    fn pc(&self) -> u64 {
        BASE + 4 * self.words.len() as u64
    }
    fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }
    fn bind(&mut self, l: Label) {
        assert!(self.labels[l.0].is_none());
        self.labels[l.0] = Some(self.words.len());
    }
    fn here(&mut self) -> Label {
        let l = self.label();
        self.bind(l);
        l
    }
    fn emit(&mut self, w: u32) -> &mut InsnInfo {
        let addr = self.pc();
        let rd = (w >> 7) & 31;
        let op = w & 0x7f;
        let writes_rd = matches!(
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
        ) || (op == OP_SYSTEM && (w >> 12) & 7 != 0);
        self.words.push(w);
        self.info.push(InsnInfo {
            addr,
            word: w,
            body: self.in_body,
            unit: self.unit,
            rd: if writes_rd && rd != 0 {
                Some(rd as u8)
            } else {
                None
            },
            mem_write: None,
            csr_write: false,
            note: String::new(),
        });
        self.info.last_mut().unwrap()
    }

    // --- instruction helpers -------------------------------------------
    fn addi(&mut self, rd: u8, rs1: u8, imm: i64) {
        self.emit(i_type(imm, rs1, 0, rd, OP_IMM));
    }
    fn slli(&mut self, rd: u8, rs1: u8, sh: u32) {
        self.emit(i_type(sh as i64, rs1, 1, rd, OP_IMM));
    }
    fn srl(&mut self, rd: u8, rs1: u8, rs2: u8) {
        self.emit(r_type(0, rs2, rs1, 5, rd, OP_OP));
    }
    fn add(&mut self, rd: u8, rs1: u8, rs2: u8) {
        self.emit(r_type(0, rs2, rs1, 0, rd, OP_OP));
    }
    fn andi(&mut self, rd: u8, rs1: u8, imm: i64) {
        self.emit(i_type(imm, rs1, 7, rd, OP_IMM));
    }
    fn lui(&mut self, rd: u8, hi20: u32) {
        self.emit((hi20 & 0xf_ffff) << 12 | (rd as u32) << 7 | OP_LUI);
    }
    fn auipc(&mut self, rd: u8, hi20: u32) {
        self.emit((hi20 & 0xf_ffff) << 12 | (rd as u32) << 7 | OP_AUIPC);
    }
    /// Load a 32-bit signed constant.
    fn li32(&mut self, rd: u8, v: i32) {
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
    fn la(&mut self, rd: u8, addr: u64) {
        let (hi, lo) = hi_lo(addr.wrapping_sub(self.pc()) as i64);
        self.auipc(rd, hi);
        self.addi(rd, rd, lo);
    }
    /// rd = address of a code label.
    fn la_label(&mut self, rd: u8, l: Label) {
        let idx = self.words.len();
        self.auipc(rd, 0);
        self.addi(rd, rd, 0);
        self.fixups.push((idx, Fix::AuipcAddi, l));
    }
    /// `auipc x30, hi; ld rd, lo(x30)`: load a doubleword from an absolute address.
    fn ld_abs(&mut self, rd: u8, tmp: u8, addr: u64) {
        let (hi, lo) = hi_lo(addr.wrapping_sub(self.pc()) as i64);
        self.auipc(tmp, hi);
        self.emit(i_type(lo, tmp, 3, rd, OP_LOAD));
    }
    fn ld(&mut self, rd: u8, off: i64, rs1: u8) {
        self.emit(i_type(off, rs1, 3, rd, OP_LOAD));
    }
    fn lbu(&mut self, rd: u8, off: i64, rs1: u8) {
        self.emit(i_type(off, rs1, 4, rd, OP_LOAD));
    }
    fn sd(&mut self, rs2: u8, off: i64, rs1: u8) {
        self.emit(s_type(off, rs2, rs1, 3, OP_STORE));
    }
    fn sb(&mut self, rs2: u8, off: i64, rs1: u8) {
        self.emit(s_type(off, rs2, rs1, 0, OP_STORE));
    }
    fn sw(&mut self, rs2: u8, off: i64, rs1: u8) {
        self.emit(s_type(off, rs2, rs1, 2, OP_STORE));
    }
    fn csrrw(&mut self, rd: u8, csr: u32, rs1: u8) {
        self.emit(csr << 20 | (rs1 as u32) << 15 | 1 << 12 | (rd as u32) << 7 | OP_SYSTEM);
    }
    fn csrr(&mut self, rd: u8, csr: u32) {
        self.emit(csr << 20 | 2 << 12 | (rd as u32) << 7 | OP_SYSTEM);
    }
    fn branch(&mut self, f3: u32, rs1: u8, rs2: u8, l: Label) {
        let idx = self.words.len();
        self.emit(r_type(0, rs2, rs1, f3, 0, OP_BRANCH));
        self.fixups.push((idx, Fix::Branch, l));
    }
    fn beq(&mut self, rs1: u8, rs2: u8, l: Label) {
        self.branch(0, rs1, rs2, l)
    }
    fn bne(&mut self, rs1: u8, rs2: u8, l: Label) {
        self.branch(1, rs1, rs2, l)
    }
    fn blt(&mut self, rs1: u8, rs2: u8, l: Label) {
        self.branch(4, rs1, rs2, l)
    }
    fn bltu(&mut self, rs1: u8, rs2: u8, l: Label) {
        self.branch(6, rs1, rs2, l)
    }
    fn jal(&mut self, rd: u8, l: Label) {
        let idx = self.words.len();
        self.emit((rd as u32) << 7 | OP_JAL);
        self.fixups.push((idx, Fix::Jal, l));
    }
    fn j(&mut self, l: Label) {
        self.jal(0, l)
    }
    fn ret(&mut self) {
        self.emit(i_type(0, 1, 0, 0, OP_JALR));
    }

    fn finish(&mut self) {
        for &(idx, fix, l) in &self.fixups {
            let target = self.labels[l.0].expect("unbound label");
            let off = (target as i64 - idx as i64) * 4;
            match fix {
                Fix::Branch => self.words[idx] |= b_imm(off),
                Fix::Jal => self.words[idx] |= j_imm(off),
                Fix::AuipcAddi => {
                    let (hi, lo) = hi_lo(off);
                    self.words[idx] |= hi << 12;
                    self.words[idx + 1] |= ((lo as u32) & 0xfff) << 20;
                }
            }
        }
        for (i, w) in self.words.iter().enumerate() {
            self.info[i].word = *w;
        }
    }
}

// register numbers used by the fixed code
const RA: u8 = 1;
const T0: u8 = 5;
const T1: u8 = 6;
const T2: u8 = 7;
const S0: u8 = 8;
const S1: u8 = 9;
const A0: u8 = 10;
const A1: u8 = 11;
const A2: u8 = 12;
const A3: u8 = 13;
const A4: u8 = 14;
const S2: u8 = 18;
const S3: u8 = 19;
const S4: u8 = 20;
const S5: u8 = 21;
const S6: u8 = 22;

// ---------------------------------------------------------------------------
// Program

/// One generated program.
#[derive(Clone, Debug)]
pub struct Program {
    pub seed: u64,
    /// Bytes of `BASE..END`.
    pub image: Vec<u8>,
    /// One entry per code word.
    pub insns: Vec<InsnInfo>,
    /// Number of body units.
    pub units: usize,
}

struct Gen {
    rng: SplitMix64,
    hot_regs: Vec<u8>,
    hot_offs: Vec<i64>,
    pool: Vec<u64>,
    /// Next free slot of the pool's dynamic half.
    pool_next: usize,
    opts: GenOptions,
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
}

impl Default for GenOptions {
    fn default() -> Self {
        GenOptions {
            reservation_quirks: true,
            self_modifying_code: true,
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
        match self.rng.below(20) {
            0 => 0,
            1..=9 => self.rng.pick(&self.hot_regs.clone()),
            _ => self.rng.range(1, 29) as u8,
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
        a.info.last_mut().unwrap().note = "constant".into();
    }

    /// A random RV64I register/register ALU instruction.
    fn alu_rr_word(&mut self) -> u32 {
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
            18, // 0 ALU reg/reg
            12, // 1 M extension
            16, // 2 ALU reg/imm
            4,  // 3 LUI/AUIPC
            5,  // 4 constant pool load
            10, // 5 load
            8,  // 6 store
            6,  // 7 AMO
            5,  // 8 LR/SC
            6,  // 9 branch
            2,  // 10 JAL
            2,  // 11 JALR
            4,  // 12 CSR
            2,  // 13 fence / fence.i
            2,  // 14 trap (ecall, ebreak, illegal)
            2,  // 15 self-modifying code + fence.i
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
                let idx = a.words.len();
                a.auipc(base, 0);
                a.emit(i_type(0, base, 0, rd, OP_JALR));
                a.fixups
                    .push((idx, Fix::AuipcAddi, labels[(i + 1 + skip).min(n)]));
                if odd {
                    a.words[idx + 1] |= 1 << 20; // +1 on top of the fixed-up offset
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
                a.auipc(TMP_REG, 0);
                let slot = a.pc() + 8;
                a.sw(rx, 12, TMP_REG);
                a.info.last_mut().unwrap().mem_write = Some((slot, 4));
                a.emit(0x0000_100f); // fence.i
                let rd = (new_word >> 7) & 31;
                let info = a.emit(old_word);
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

        let mut a = Asm::new();
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
        a.in_body = true;
        let labels: Vec<Label> = (0..=units).map(|_| a.label()).collect();
        for i in 0..units {
            a.unit = i;
            a.bind(labels[i]);
            g.unit(&mut a, i, &labels);
        }
        a.bind(labels[units]);
        a.in_body = false;

        // --- epilogue: save registers (x31 is the only free register) -----
        a.la(BASE_REG, SAVE);
        for r in 1..=30u8 {
            a.sd(r, 8 * r as i64, BASE_REG);
        }
        a.csrr(1, CSR_MSCRATCH);
        a.sd(1, 8 * 31, BASE_REG);

        let putc = a.label();
        let puts = a.label();
        let puthex = a.label();

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
        // finisher: pass
        a.li32(T0, FINISHER as i32);
        a.li32(T1, 0x5555);
        a.sw(T1, 0, T0);
        let hang = a.here();
        a.j(hang);

        // putc(a0): poll LSR.THRE, write THR. Clobbers t0, t1.
        a.bind(putc);
        a.li32(T0, UART as i32);
        let poll = a.here();
        a.lbu(T1, 5, T0);
        a.andi(T1, T1, 0x20);
        a.beq(T1, 0, poll);
        a.sb(A0, 0, T0);
        a.ret();

        // puts(a0): NUL-terminated string. Clobbers a0, a3, t0, t1.
        a.bind(puts);
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

        // puthex(a0 value, a1 digits). Clobbers a2, a3, a4, t0, t1.
        a.bind(puthex);
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

        // --- trap handler (mtvec direct; 4-byte aligned) -------------------
        // x30 = LOG + 0x800; saves x28/x29 in the log page.
        const X28: u8 = 28;
        const X29: u8 = 29;
        a.bind(handler);
        a.la(TMP_REG, LOG + 0x800);
        a.sd(X28, -0x800 + 8, TMP_REG);
        a.sd(X29, -0x800 + 16, TMP_REG);
        a.ld(X29, -0x800, TMP_REG); // count
        a.addi(X28, 0, LOG_MAX as i64);
        let ok = a.label();
        a.bltu(X29, X28, ok);
        a.li32(X28, FINISHER as i32);
        a.li32(X29, 0x3333 | (2 << 16)); // fail, exit code 2
        a.sw(X29, 0, X28);
        let hang2 = a.here();
        a.j(hang2);
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
        a.addi(X28, X28, 4);
        a.csrrw(0, CSR_MEPC, X28);
        a.ld(X28, -0x800 + 8, TMP_REG);
        a.ld(X29, -0x800 + 16, TMP_REG);
        a.emit(0x3020_0073); // mret

        a.finish();
        assert!(a.pc() <= CODE_LIMIT, "code too large");

        // --- image --------------------------------------------------------
        let mut image = vec![0u8; (END - BASE) as usize];
        for (i, w) in a.words.iter().enumerate() {
            image[4 * i..4 * i + 4].copy_from_slice(&w.to_le_bytes());
        }
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
            insns: a.info,
            units,
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
        let _ = writeln!(s, "# seed {:#018x}, {} body units", self.seed, self.units);
        for r in 1..=29 {
            let _ = writeln!(s, "# init x{r} = {:#018x}", self.init_reg(r));
        }
        let _ = writeln!(s, "# init mscratch = {:#018x}", self.init_reg(30));
        let mut last_unit = usize::MAX;
        for ins in &self.insns {
            let tag = if ins.body {
                if ins.unit != last_unit {
                    last_unit = ins.unit;
                    format!("u{}", ins.unit)
                } else {
                    String::new()
                }
            } else {
                String::new()
            };
            let _ = writeln!(
                s,
                "{:x}: {:08x}  {:<40} {:>5} {}",
                ins.addr,
                ins.word,
                disasm(ins.word, ins.addr),
                tag,
                ins.note
            );
        }
        s
    }

    /// The instructions of body unit `u`, one per line.
    pub fn unit_text(&self, u: usize) -> String {
        let mut s = String::new();
        for ins in self.insns.iter().filter(|i| i.body && i.unit == u) {
            let _ = writeln!(s, "  {}", Self::describe(ins));
        }
        s
    }

    fn body_insn_at(&self, pc: u64) -> Option<&InsnInfo> {
        if pc < BASE || pc % 4 != 0 {
            return None;
        }
        self.insns.get(((pc - BASE) / 4) as usize)
    }

    fn describe(ins: &InsnInfo) -> String {
        format!(
            "{:#x}: {:08x} {} (unit {}){}",
            ins.addr,
            ins.word,
            disasm(ins.word, ins.addr),
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
        let body: Vec<&InsnInfo> = self.insns.iter().filter(|i| i.body).collect();
        if idx < REG_LINES {
            let reg = idx + 1;
            if reg <= 30 {
                let writers: Vec<&&InsnInfo> =
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
                let ops: Vec<&&InsnInfo> = body
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
            let ws: Vec<&&InsnInfo> = body
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

#[cfg(test)]
mod randprog_tests {
    use super::*;

    #[test]
    fn generator_is_deterministic_per_seed() {
        for seed in [0u64, 1, 0xdead_beef, u64::MAX] {
            let a = Program::generate(seed);
            let b = Program::generate(seed);
            assert_eq!(a.image, b.image, "seed {seed:#x}");
            assert_eq!(a.elf(), b.elf());
            assert_eq!(a.listing(), b.listing());
        }
        assert_ne!(Program::generate(1).image, Program::generate(2).image);
    }

    #[test]
    fn encodings_round_trip_through_disasm() {
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
