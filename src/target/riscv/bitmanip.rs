//! The bit-manipulation extensions Zba, Zbb and Zbs (RV64 encodings):
//! decoding and execution.
//!
//! QEMU analogue: the Zba/Zbb/Zbs patterns of `target/riscv/insn32.decode`
//! and `target/riscv/insn_trans/trans_rvb.c.inc`. The decoder is exactly as
//! strict as QEMU's decodetree for RV64:
//!
//! - `zext.h` is `0000100 00000 rs1 100 rd 0111011` (OP-32); the RV32
//!   encoding on OP (`pack` with rs2 = 0) is illegal.
//! - `rev8` is `011010 111000 rs1 101 rd 0010011` (immediate 0x6b8); the RV32
//!   immediate 0x698 is illegal.
//! - `rori`, `slli.uw`, `bclri`, `bexti`, `binvi`, `bseti` take a 6-bit
//!   shift amount (QEMU decodes 7 bits and rejects 64 and up, so bit 26 must
//!   be 0); `roriw` takes 5 bits with funct7 fixed.
//! - The unary instructions (`clz`, `ctz`, `cpop`, their `w` forms, `sext.b`,
//!   `sext.h`, `orc.b`, `rev8`) fix the whole 12-bit immediate field.
//!
//! With an extension switched off (`--cpu rv64,zba=off`, QEMU's
//! `-cpu rv64,zba=false`) its encodings are illegal, as on QEMU.
//!
//! The decoder's OP, OP-IMM, OP-32 and OP-IMM-32 branches call [`decode`]
//! for the encodings they do not know; the interpreter executes every
//! operation here through one call to [`exec`].

use super::insn::{Insn, Op, SINK};
use crate::config::{Compat, CpuConfig};

/// Decode a Zba/Zbb/Zbs instruction word (opcode OP, OP-IMM, OP-32 or
/// OP-IMM-32), or `None` when it is not one of an enabled extension.
pub fn decode(w: u32, cpu: &CpuConfig) -> Option<Insn> {
    let (op, imm) = match w & 0x7f {
        0x33 => (op_reg(w, cpu)?, 0),
        0x3b => (op_reg32(w, cpu)?, 0),
        0x13 => op_imm(w, cpu)?,
        0x1b => op_imm32(w, cpu)?,
        _ => return None,
    };
    let rd = ((w >> 7) & 31) as u8;
    let reg_form = matches!(w & 0x7f, 0x33 | 0x3b) && !matches!(op, Op::ZextH);
    Some(Insn {
        op,
        rd: if rd == 0 { SINK } else { rd },
        rs1: ((w >> 15) & 31) as u8,
        rs2: if reg_form { ((w >> 20) & 31) as u8 } else { 0 },
        off: 0,
        len: 4,
        imm,
    })
}

/// `Some(op)` when `on`, else `None`.
#[inline]
fn when(on: bool, op: Op) -> Option<Op> {
    on.then_some(op)
}

/// OP (0x33): register-register forms.
fn op_reg(w: u32, cpu: &CpuConfig) -> Option<Op> {
    let (f7, f3) = (w >> 25, (w >> 12) & 7);
    match (f7, f3) {
        (0x10, 2) => when(cpu.zba, Op::Sh1add),
        (0x10, 4) => when(cpu.zba, Op::Sh2add),
        (0x10, 6) => when(cpu.zba, Op::Sh3add),
        (0x20, 7) => when(cpu.zbb, Op::Andn),
        (0x20, 6) => when(cpu.zbb, Op::Orn),
        (0x20, 4) => when(cpu.zbb, Op::Xnor),
        (0x05, 4) => when(cpu.zbb, Op::Min),
        (0x05, 5) => when(cpu.zbb, Op::Minu),
        (0x05, 6) => when(cpu.zbb, Op::Max),
        (0x05, 7) => when(cpu.zbb, Op::Maxu),
        (0x30, 1) => when(cpu.zbb, Op::Rol),
        (0x30, 5) => when(cpu.zbb, Op::Ror),
        (0x24, 1) => when(cpu.zbs, Op::Bclr),
        (0x24, 5) => when(cpu.zbs, Op::Bext),
        (0x34, 1) => when(cpu.zbs, Op::Binv),
        (0x14, 1) => when(cpu.zbs, Op::Bset),
        _ => None,
    }
}

/// OP-32 (0x3b).
fn op_reg32(w: u32, cpu: &CpuConfig) -> Option<Op> {
    let (f7, f3, rs2) = (w >> 25, (w >> 12) & 7, (w >> 20) & 31);
    match (f7, f3) {
        (0x04, 0) => when(cpu.zba, Op::AddUw),
        (0x10, 2) => when(cpu.zba, Op::Sh1addUw),
        (0x10, 4) => when(cpu.zba, Op::Sh2addUw),
        (0x10, 6) => when(cpu.zba, Op::Sh3addUw),
        // `packw` (Zbkb) with rs2 = 0; other rs2 values are `packw` proper.
        (0x04, 4) if rs2 == 0 => when(cpu.zbb, Op::ZextH),
        (0x30, 1) => when(cpu.zbb, Op::Rolw),
        (0x30, 5) => when(cpu.zbb, Op::Rorw),
        _ => None,
    }
}

/// OP-IMM (0x13): unary forms (the whole imm[11:0] is the selector) and
/// 6-bit shift-amount forms. Returns the operation and its `imm`.
fn op_imm(w: u32, cpu: &CpuConfig) -> Option<(Op, i64)> {
    let f3 = (w >> 12) & 7;
    let imm12 = w >> 20;
    let f6 = w >> 26;
    let shamt = ((w >> 20) & 0x3f) as i64;
    let op = match (f3, imm12) {
        (1, 0x600) => when(cpu.zbb, Op::Clz),
        (1, 0x601) => when(cpu.zbb, Op::Ctz),
        (1, 0x602) => when(cpu.zbb, Op::Cpop),
        (1, 0x604) => when(cpu.zbb, Op::SextB),
        (1, 0x605) => when(cpu.zbb, Op::SextH),
        (5, 0x287) => when(cpu.zbb, Op::OrcB),
        (5, 0x6b8) => when(cpu.zbb, Op::Rev8),
        _ => None,
    };
    if let Some(op) = op {
        return Some((op, 0));
    }
    let op = match (f3, f6) {
        (5, 0x18) => when(cpu.zbb, Op::Rori),
        (1, 0x12) => when(cpu.zbs, Op::Bclri),
        (5, 0x12) => when(cpu.zbs, Op::Bexti),
        (1, 0x1a) => when(cpu.zbs, Op::Binvi),
        (1, 0x0a) => when(cpu.zbs, Op::Bseti),
        _ => None,
    }?;
    Some((op, shamt))
}

/// OP-IMM-32 (0x1b).
fn op_imm32(w: u32, cpu: &CpuConfig) -> Option<(Op, i64)> {
    let f3 = (w >> 12) & 7;
    let imm12 = w >> 20;
    match (f3, imm12) {
        (1, 0x600) => return when(cpu.zbb, Op::Clzw).map(|o| (o, 0)),
        (1, 0x601) => return when(cpu.zbb, Op::Ctzw).map(|o| (o, 0)),
        (1, 0x602) => return when(cpu.zbb, Op::Cpopw).map(|o| (o, 0)),
        _ => {}
    }
    match (f3, w >> 26, w >> 25) {
        (1, 0x02, _) => when(cpu.zba, Op::SlliUw).map(|o| (o, ((w >> 20) & 0x3f) as i64)),
        (5, _, 0x30) => when(cpu.zbb, Op::Roriw).map(|o| (o, ((w >> 20) & 0x1f) as i64)),
        _ => None,
    }
}

/// Sign-extend the low 32 bits.
#[inline(always)]
fn sext32(v: u32) -> u64 {
    v as i32 as i64 as u64
}

/// The result of bit-manipulation operation `op` on `a` (rs1), `b` (rs2) and
/// `imm` (the shift amount of the immediate forms), as the QEMU version
/// `compat` computes it. Any other `op` yields 0 (the decoder never produces
/// one here).
///
/// The versions differ in one place: QEMU 7.2's `ctzw` counts the trailing
/// zeros of all 64 bits of rs1 (32 when rs1 is 0), so an rs1 whose low word
/// is 0 gives 32 + the trailing zeros of the high word (63 for
/// `0x8000_0000_0000_0000`); QEMU 10.0 gives 32, as the specification says.
#[inline]
pub fn exec(op: Op, a: u64, b: u64, imm: i64, compat: Compat) -> u64 {
    let sh = imm as u32 & 63;
    match op {
        Op::AddUw => b.wrapping_add(a as u32 as u64),
        Op::Sh1add => b.wrapping_add(a << 1),
        Op::Sh2add => b.wrapping_add(a << 2),
        Op::Sh3add => b.wrapping_add(a << 3),
        Op::Sh1addUw => b.wrapping_add((a as u32 as u64) << 1),
        Op::Sh2addUw => b.wrapping_add((a as u32 as u64) << 2),
        Op::Sh3addUw => b.wrapping_add((a as u32 as u64) << 3),
        Op::SlliUw => (a as u32 as u64) << sh,
        Op::Andn => a & !b,
        Op::Orn => a | !b,
        Op::Xnor => !(a ^ b),
        Op::Clz => a.leading_zeros() as u64,
        Op::Clzw => (a as u32).leading_zeros() as u64,
        Op::Ctz => a.trailing_zeros() as u64,
        Op::Ctzw => match compat {
            Compat::Qemu7_2 if a != 0 => a.trailing_zeros() as u64,
            _ => (a as u32).trailing_zeros() as u64,
        },
        Op::Cpop => a.count_ones() as u64,
        Op::Cpopw => (a as u32).count_ones() as u64,
        Op::Max => (a as i64).max(b as i64) as u64,
        Op::Maxu => a.max(b),
        Op::Min => (a as i64).min(b as i64) as u64,
        Op::Minu => a.min(b),
        Op::SextB => a as i8 as i64 as u64,
        Op::SextH => a as i16 as i64 as u64,
        Op::ZextH => a as u16 as u64,
        Op::Rol => a.rotate_left(b as u32 & 63),
        Op::Rolw => sext32((a as u32).rotate_left(b as u32 & 31)),
        Op::Ror => a.rotate_right(b as u32 & 63),
        Op::Rori => a.rotate_right(sh),
        Op::Roriw => sext32((a as u32).rotate_right(sh & 31)),
        Op::Rorw => sext32((a as u32).rotate_right(b as u32 & 31)),
        Op::OrcB => orc_b(a),
        Op::Rev8 => a.swap_bytes(),
        Op::Bclr => a & !(1 << (b & 63)),
        Op::Bclri => a & !(1 << sh),
        Op::Bext => (a >> (b & 63)) & 1,
        Op::Bexti => (a >> sh) & 1,
        Op::Binv => a ^ (1 << (b & 63)),
        Op::Binvi => a ^ (1 << sh),
        Op::Bset => a | (1 << (b & 63)),
        Op::Bseti => a | (1 << sh),
        _ => 0,
    }
}

/// `orc.b`: every non-zero byte becomes 0xff, every zero byte stays 0.
#[inline(always)]
fn orc_b(a: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    // High bit of each byte: set iff the byte is non-zero.
    let hi = ((a & LOW7).wrapping_add(LOW7) | a) & !LOW7;
    (hi >> 7).wrapping_mul(0xff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::riscv::decode::decode as decode32;
    use proptest::prelude::*;

    const ALL: CpuConfig = CpuConfig {
        c: true,
        zba: true,
        zbb: true,
        zbs: true,
    };

    /// Bit-by-bit reference implementations, written from the specification's
    /// pseudocode rather than with Rust's integer intrinsics.
    fn reference(op: Op, a: u64, b: u64, imm: i64) -> u64 {
        let bit = |v: u64, i: u32| (v >> i) & 1;
        let rot_r = |v: u64, n: u32, xlen: u32| {
            let mut r = 0u64;
            for i in 0..xlen {
                r |= bit(v, (i + n) % xlen) << i;
            }
            r
        };
        let sx32 = |v: u64| {
            if bit(v, 31) == 1 {
                v | 0xffff_ffff_0000_0000
            } else {
                v & 0xffff_ffff
            }
        };
        let clz = |v: u64, xlen: u32| {
            let mut n = 0;
            for i in (0..xlen).rev() {
                if bit(v, i) == 1 {
                    break;
                }
                n += 1;
            }
            n
        };
        let ctz = |v: u64, xlen: u32| {
            let mut n = 0;
            for i in 0..xlen {
                if bit(v, i) == 1 {
                    break;
                }
                n += 1;
            }
            n
        };
        let pop = |v: u64, xlen: u32| (0..xlen).map(|i| bit(v, i)).sum::<u64>();
        let lo32 = a & 0xffff_ffff;
        let s = imm as u32;
        let signed_lt = |x: u64, y: u64| {
            let (sx, sy) = (bit(x, 63), bit(y, 63));
            if sx != sy { sx == 1 } else { x < y }
        };
        match op {
            Op::AddUw => b.wrapping_add(lo32),
            Op::Sh1add => b.wrapping_add(a.wrapping_mul(2)),
            Op::Sh2add => b.wrapping_add(a.wrapping_mul(4)),
            Op::Sh3add => b.wrapping_add(a.wrapping_mul(8)),
            Op::Sh1addUw => b.wrapping_add(lo32 * 2),
            Op::Sh2addUw => b.wrapping_add(lo32 * 4),
            Op::Sh3addUw => b.wrapping_add(lo32 * 8),
            Op::SlliUw => (0..64u32)
                .filter(|&i| i >= s && i - s < 32)
                .map(|i| bit(a, i - s) << i)
                .sum(),
            Op::Andn => (0..64).map(|i| (bit(a, i) & (1 - bit(b, i))) << i).sum(),
            Op::Orn => (0..64).map(|i| (bit(a, i) | (1 - bit(b, i))) << i).sum(),
            Op::Xnor => (0..64).map(|i| (1 - (bit(a, i) ^ bit(b, i))) << i).sum(),
            Op::Clz => clz(a, 64),
            Op::Clzw => clz(a, 32),
            Op::Ctz => ctz(a, 64),
            Op::Ctzw => ctz(a, 32),
            Op::Cpop => pop(a, 64),
            Op::Cpopw => pop(a, 32),
            Op::Max => {
                if signed_lt(a, b) {
                    b
                } else {
                    a
                }
            }
            Op::Min => {
                if signed_lt(a, b) {
                    a
                } else {
                    b
                }
            }
            Op::Maxu => {
                if a < b {
                    b
                } else {
                    a
                }
            }
            Op::Minu => {
                if a < b {
                    a
                } else {
                    b
                }
            }
            Op::SextB => (0..64).map(|i| bit(a, i.min(7)) << i).sum(),
            Op::SextH => (0..64).map(|i| bit(a, i.min(15)) << i).sum(),
            Op::ZextH => a & 0xffff,
            Op::Rol => rot_r(a, (64 - (b & 63) as u32) % 64, 64),
            Op::Ror => rot_r(a, (b & 63) as u32, 64),
            Op::Rori => rot_r(a, s, 64),
            Op::Rolw => sx32(rot_r(lo32, (32 - (b & 31) as u32) % 32, 32)),
            Op::Rorw => sx32(rot_r(lo32, (b & 31) as u32, 32)),
            Op::Roriw => sx32(rot_r(lo32, s, 32)),
            Op::OrcB => (0..8)
                .map(|k| {
                    if (a >> (8 * k)) & 0xff != 0 {
                        0xffu64 << (8 * k)
                    } else {
                        0
                    }
                })
                .sum(),
            Op::Rev8 => (0..8)
                .map(|k| ((a >> (8 * k)) & 0xff) << (56 - 8 * k))
                .sum(),
            Op::Bclr
            | Op::Bclri
            | Op::Bext
            | Op::Bexti
            | Op::Binv
            | Op::Binvi
            | Op::Bset
            | Op::Bseti => {
                let idx = if matches!(op, Op::Bclri | Op::Bexti | Op::Binvi | Op::Bseti) {
                    s
                } else {
                    (b % 64) as u32
                };
                let m = 1u64 << idx;
                match op {
                    Op::Bclr | Op::Bclri => a & !m,
                    Op::Bext | Op::Bexti => bit(a, idx),
                    Op::Binv | Op::Binvi => a ^ m,
                    _ => a | m,
                }
            }
            _ => unreachable!("{op:?}"),
        }
    }

    /// (op, 32-bit encoding with rd = a0, rs1 = a1, rs2 = a2 / shamt = 0).
    const ENCODINGS: &[(Op, u32)] = &[
        (Op::AddUw, 0x08c5_853b),
        (Op::Sh1add, 0x20c5_a533),
        (Op::Sh2add, 0x20c5_c533),
        (Op::Sh3add, 0x20c5_e533),
        (Op::Sh1addUw, 0x20c5_a53b),
        (Op::Sh2addUw, 0x20c5_c53b),
        (Op::Sh3addUw, 0x20c5_e53b),
        (Op::SlliUw, 0x0805_951b),
        (Op::Andn, 0x40c5_f533),
        (Op::Orn, 0x40c5_e533),
        (Op::Xnor, 0x40c5_c533),
        (Op::Clz, 0x6005_9513),
        (Op::Clzw, 0x6005_951b),
        (Op::Ctz, 0x6015_9513),
        (Op::Ctzw, 0x6015_951b),
        (Op::Cpop, 0x6025_9513),
        (Op::Cpopw, 0x6025_951b),
        (Op::Max, 0x0ac5_e533),
        (Op::Maxu, 0x0ac5_f533),
        (Op::Min, 0x0ac5_c533),
        (Op::Minu, 0x0ac5_d533),
        (Op::SextB, 0x6045_9513),
        (Op::SextH, 0x6055_9513),
        (Op::ZextH, 0x0805_c53b),
        (Op::Rol, 0x60c5_9533),
        (Op::Rolw, 0x60c5_953b),
        (Op::Ror, 0x60c5_d533),
        (Op::Rori, 0x6005_d513),
        (Op::Roriw, 0x6005_d51b),
        (Op::Rorw, 0x60c5_d53b),
        (Op::OrcB, 0x2875_d513),
        (Op::Rev8, 0x6b85_d513),
        (Op::Bclr, 0x48c5_9533),
        (Op::Bclri, 0x4805_9513),
        (Op::Bext, 0x48c5_d533),
        (Op::Bexti, 0x4805_d513),
        (Op::Binv, 0x68c5_9533),
        (Op::Binvi, 0x6805_9513),
        (Op::Bset, 0x28c5_9533),
        (Op::Bseti, 0x2805_9513),
    ];

    fn is_zba(op: Op) -> bool {
        matches!(
            op,
            Op::AddUw
                | Op::Sh1add
                | Op::Sh2add
                | Op::Sh3add
                | Op::Sh1addUw
                | Op::Sh2addUw
                | Op::Sh3addUw
                | Op::SlliUw
        )
    }

    fn is_zbs(op: Op) -> bool {
        matches!(
            op,
            Op::Bclr
                | Op::Bclri
                | Op::Bext
                | Op::Bexti
                | Op::Binv
                | Op::Binvi
                | Op::Bset
                | Op::Bseti
        )
    }

    #[test]
    fn every_encoding_decodes_with_its_fields() {
        for &(op, w) in ENCODINGS {
            let d = decode32(w, &ALL);
            assert_eq!(d.op, op, "{w:#010x}");
            assert_eq!((d.rd, d.rs1, d.imm), (10, 11, 0), "{op:?}");
            let unary_or_imm = w & 0x7f == 0x13 || w & 0x7f == 0x1b || op == Op::ZextH;
            assert_eq!(d.rs2, if unary_or_imm { 0 } else { 12 }, "{op:?}");
        }
    }

    #[test]
    fn each_extension_switches_off_alone() {
        for &(op, w) in ENCODINGS {
            for (zba, zbb, zbs) in [
                (false, true, true),
                (true, false, true),
                (true, true, false),
            ] {
                let cpu = CpuConfig {
                    c: true,
                    zba,
                    zbb,
                    zbs,
                };
                let ext_on = if is_zba(op) {
                    zba
                } else if is_zbs(op) {
                    zbs
                } else {
                    zbb
                };
                let d = decode32(w, &cpu);
                if ext_on {
                    assert_eq!(d.op, op, "{op:?} {cpu:?}");
                } else {
                    assert_eq!((d.op, d.imm), (Op::Illegal, w as i64), "{op:?} {cpu:?}");
                }
            }
        }
    }

    #[test]
    fn shift_amount_ranges() {
        // rori / bclri / bexti / binvi / bseti / slli.uw: shamt 63 is fine,
        // bit 26 set (shamt >= 64) is illegal.
        for (op, w) in [
            (Op::Rori, 0x6005_d513u32),
            (Op::Bclri, 0x4805_9513),
            (Op::Bexti, 0x4805_d513),
            (Op::Binvi, 0x6805_9513),
            (Op::Bseti, 0x2805_9513),
            (Op::SlliUw, 0x0805_951b),
        ] {
            let d = decode32(w | 63 << 20, &ALL);
            assert_eq!((d.op, d.imm), (op, 63), "{op:?}");
            assert_eq!(decode32(w | 1 << 26, &ALL).op, Op::Illegal, "{op:?}");
        }
        // roriw: 5-bit shamt; bit 25 set is illegal.
        let d = decode32(0x6005_d51b | 31 << 20, &ALL);
        assert_eq!((d.op, d.imm), (Op::Roriw, 31));
        assert_eq!(decode32(0x6005_d51b | 1 << 25, &ALL).op, Op::Illegal);
    }

    #[test]
    fn rv32_only_and_neighbouring_encodings_are_illegal() {
        for w in [
            0x0805_c533u32, // zext.h's RV32 encoding (OP): pack with rs2 = 0
            0x6985_d513,    // rev8's RV32 immediate 0x698
            0x0815_c53b,    // packw (Zbkb), rs2 = 1
            0x6035_9513,    // imm 0x603: no unary op
            0x6065_9513,    // imm 0x606
            0x6045_951b,    // sext.b's immediate on OP-IMM-32
            0x2865_d513,    // orc.b with imm 0x286
            0x6b95_d513,    // rev8 with imm 0x6b9
            0x0ac5_9533,    // clmul (Zbc, not on this hart)
            0x48c5_953b,    // bclr on OP-32
            0x60c5_c533,    // funct7 0x30, funct3 4
            0x6035_951b,    // clzw family imm 0x603
        ] {
            assert_eq!(decode32(w, &ALL).op, Op::Illegal, "{w:#010x}");
        }
    }

    #[test]
    fn edge_values() {
        assert_eq!(exec(Op::Clz, 0, 0, 0, Compat::Qemu10_0), 64);
        assert_eq!(
            exec(Op::Clzw, 0xffff_ffff_0000_0000, 0, 0, Compat::Qemu10_0),
            32
        );
        assert_eq!(exec(Op::Ctz, 0, 0, 0, Compat::Qemu10_0), 64);
        assert_eq!(exec(Op::Ctzw, 0x1_0000_0000, 0, 0, Compat::Qemu10_0), 32);
        assert_eq!(exec(Op::Cpopw, u64::MAX, 0, 0, Compat::Qemu10_0), 32);
        assert_eq!(
            exec(Op::OrcB, 0x0001_0000_8000_0200, 0, 0, Compat::Qemu10_0),
            0x00ff_0000_ff00_ff00
        );
        assert_eq!(
            exec(Op::Rev8, 0x0102_0304_0506_0708, 0, 0, Compat::Qemu10_0),
            0x0807_0605_0403_0201
        );
        assert_eq!(
            exec(Op::Roriw, 1, 0, 1, Compat::Qemu10_0),
            0xffff_ffff_8000_0000
        );
        assert_eq!(exec(Op::SlliUw, u64::MAX, 0, 63, Compat::Qemu10_0), 1 << 63);
        // QEMU 7.2's ctzw (measured with guests/zb.elf).
        for (a, v10, v72) in [
            (0u64, 32, 32),
            (1 << 63, 32, 63),
            (1 << 34, 32, 34),
            (0xffff_ffff_0000_0000, 32, 32),
            (0x8000_0000, 31, 31),
            (0x8080_8080_8080_8080, 7, 7),
        ] {
            assert_eq!(exec(Op::Ctzw, a, 0, 0, Compat::Qemu10_0), v10, "{a:#x}");
            assert_eq!(exec(Op::Ctzw, a, 0, 0, Compat::Qemu7_2), v72, "{a:#x}");
        }
        assert_eq!(
            exec(Op::Min, i64::MIN as u64, 1, 0, Compat::Qemu10_0),
            i64::MIN as u64
        );
        assert_eq!(
            exec(Op::Maxu, i64::MIN as u64, 1, 0, Compat::Qemu10_0),
            i64::MIN as u64
        );
        assert_eq!(exec(Op::Bext, 1 << 63, 127, 0, Compat::Qemu10_0), 1);
    }

    fn all_ops() -> impl Strategy<Value = Op> {
        proptest::sample::select(ENCODINGS.iter().map(|&(op, _)| op).collect::<Vec<_>>())
    }

    fn interesting() -> impl Strategy<Value = u64> {
        prop_oneof![
            any::<u64>(),
            proptest::sample::select(vec![
                0u64,
                1,
                u64::MAX,
                i64::MIN as u64,
                0x8000_0000,
                0x7fff_ffff,
                0xffff_ffff,
                0x1_0000_0000,
                0x8080_8080_8080_8080,
                0x0101_0101_0101_0101,
                31,
                32,
                63,
                64,
            ]),
            (0u32..64).prop_map(|i| 1u64 << i),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        #[test]
        fn exec_matches_reference(op in all_ops(), a in interesting(), b in interesting(),
                                  sh in 0i64..64) {
            let imm = if op == Op::Roriw { sh & 31 } else { sh };
            prop_assert_eq!(exec(op, a, b, imm, Compat::Qemu10_0), reference(op, a, b, imm), "{:?}", op);
        }

        /// Decoding then executing a word with random registers and shift
        /// amount gives the reference result of the operation it names.
        #[test]
        fn decoded_fields_feed_exec(idx in 0..ENCODINGS.len(), rd in 1u32..32, rs1 in 0u32..32,
                                    rs2 in 0u32..64, a in interesting()) {
            let (op, w) = ENCODINGS[idx];
            let is_shamt_imm = matches!(op, Op::Rori | Op::Roriw | Op::SlliUw | Op::Bclri
                | Op::Bexti | Op::Binvi | Op::Bseti);
            let w = w & !(0x1f << 7 | 0x1f << 15) | rd << 7 | rs1 << 15;
            let w = if is_shamt_imm || w & 0x7f == 0x33 || (w & 0x7f == 0x3b && op != Op::ZextH) {
                let mask = if op == Op::Roriw { 0x1f } else if is_shamt_imm { 0x3f } else { 0x1f };
                w & !(mask << 20) | (rs2 & mask) << 20
            } else {
                w
            };
            let d = decode32(w, &ALL);
            prop_assert_eq!(d.op, op);
            prop_assert_eq!(d.rd as u32, rd);
            prop_assert_eq!(d.rs1 as u32, rs1);
            let b = a.rotate_left(17) ^ 0x5555;
            let expect = if is_shamt_imm {
                prop_assert_eq!(d.imm, rs2 as i64 & if op == Op::Roriw { 0x1f } else { 0x3f });
                reference(op, a, 0, d.imm)
            } else {
                reference(op, a, b, 0)
            };
            prop_assert_eq!(exec(d.op, a, b, d.imm, Compat::Qemu10_0), expect);
        }
    }
}
