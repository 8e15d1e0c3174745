//! Decoder: 32-bit RISC-V words → [`Insn`].
//!
//! QEMU analogue: `target/riscv/insn32.decode` (decodetree). The decoder is
//! strict in the same places QEMU's is (funct7/funct6 of shifts and ALU ops,
//! the exact SYSTEM encodings), so an encoding that QEMU rejects as illegal is
//! illegal here too. Zba, Zbb and Zbs are decoded in [`bitmanip`] (called
//! from the OP, OP-IMM, OP-32 and OP-IMM-32 branches), each only when the
//! hart's [`CpuConfig`] enables it. Extensions QEMU's `rv64` CPU has but this
//! M-mode-only hart does not (C, F, D, Zbc, S-mode instructions, ...) decode
//! as [`Op::Illegal`].

use super::bitmanip;
use super::insn::{AmoOp, CsrOp, Insn, Op, SINK};
use crate::config::CpuConfig;

#[inline]
fn rd_of(w: u32) -> u8 {
    let rd = ((w >> 7) & 31) as u8;
    if rd == 0 { SINK } else { rd }
}

#[inline]
fn rs1_of(w: u32) -> u8 {
    ((w >> 15) & 31) as u8
}

#[inline]
fn rs2_of(w: u32) -> u8 {
    ((w >> 20) & 31) as u8
}

#[inline]
fn imm_i(w: u32) -> i64 {
    (w as i32 >> 20) as i64
}

#[inline]
fn imm_s(w: u32) -> i64 {
    (((w as i32) >> 25) << 5 | ((w >> 7) & 31) as i32) as i64
}

#[inline]
fn imm_b(w: u32) -> i64 {
    let imm = ((w >> 31) & 1) << 12
        | ((w >> 7) & 1) << 11
        | ((w >> 25) & 0x3f) << 5
        | ((w >> 8) & 0xf) << 1;
    ((imm << 19) as i32 >> 19) as i64
}

#[inline]
fn imm_u(w: u32) -> i64 {
    (w & 0xffff_f000) as i32 as i64
}

#[inline]
fn imm_j(w: u32) -> i64 {
    let imm = ((w >> 31) & 1) << 20
        | ((w >> 12) & 0xff) << 12
        | ((w >> 20) & 1) << 11
        | ((w >> 21) & 0x3ff) << 1;
    ((imm << 11) as i32 >> 11) as i64
}

/// The illegal instruction (raises cause 2 when executed; `imm` holds the raw
/// word, which becomes mtval).
pub const ILLEGAL: Insn = Insn {
    op: Op::Illegal,
    rd: SINK,
    rs1: 0,
    rs2: 0,
    off: 0,
    len: 4,
    imm: 0,
};

fn r(op: Op, w: u32) -> Insn {
    Insn {
        op,
        rd: rd_of(w),
        rs1: rs1_of(w),
        rs2: rs2_of(w),
        off: 0,
        len: 4,
        imm: 0,
    }
}

fn i(op: Op, w: u32, imm: i64) -> Insn {
    Insn {
        op,
        rd: rd_of(w),
        rs1: rs1_of(w),
        rs2: 0,
        off: 0,
        len: 4,
        imm,
    }
}

/// Decode one instruction word for a hart with the extensions `cpu` enables
/// (Zba, Zbb and Zbs are decoded in [`bitmanip`]).
pub fn decode(w: u32, cpu: &CpuConfig) -> Insn {
    let insn = decode_inner(w, cpu);
    if insn.op == Op::Illegal {
        // The raw word travels with it: QEMU reports it in mtval.
        return Insn {
            imm: w as i64,
            ..ILLEGAL
        };
    }
    insn
}

fn decode_inner(w: u32, cpu: &CpuConfig) -> Insn {
    if w & 3 != 3 {
        // Compressed (16-bit) encodings: not implemented on this hart.
        return ILLEGAL;
    }
    let opcode = w & 0x7f;
    let f3 = (w >> 12) & 7;
    let f7 = w >> 25;
    match opcode {
        0x37 => Insn {
            op: Op::Lui,
            rd: rd_of(w),
            rs1: 0,
            rs2: 0,
            off: 0,
            len: 4,
            imm: imm_u(w),
        },
        0x17 => Insn {
            op: Op::Auipc,
            rd: rd_of(w),
            rs1: 0,
            rs2: 0,
            off: 0,
            len: 4,
            imm: imm_u(w),
        },
        0x6f => Insn {
            op: Op::Jal,
            rd: rd_of(w),
            rs1: 0,
            rs2: 0,
            off: 0,
            len: 4,
            imm: imm_j(w),
        },
        0x67 if f3 == 0 => i(Op::Jalr, w, imm_i(w)),
        0x63 => {
            let op = match f3 {
                0 => Op::Beq,
                1 => Op::Bne,
                4 => Op::Blt,
                5 => Op::Bge,
                6 => Op::Bltu,
                7 => Op::Bgeu,
                _ => return ILLEGAL,
            };
            Insn {
                op,
                rd: SINK,
                rs1: rs1_of(w),
                rs2: rs2_of(w),
                off: 0,
                len: 4,
                imm: imm_b(w),
            }
        }
        0x03 => {
            let op = match f3 {
                0 => Op::Lb,
                1 => Op::Lh,
                2 => Op::Lw,
                3 => Op::Ld,
                4 => Op::Lbu,
                5 => Op::Lhu,
                6 => Op::Lwu,
                _ => return ILLEGAL,
            };
            i(op, w, imm_i(w))
        }
        0x23 => {
            let op = match f3 {
                0 => Op::Sb,
                1 => Op::Sh,
                2 => Op::Sw,
                3 => Op::Sd,
                _ => return ILLEGAL,
            };
            Insn {
                op,
                rd: SINK,
                rs1: rs1_of(w),
                rs2: rs2_of(w),
                off: 0,
                len: 4,
                imm: imm_s(w),
            }
        }
        0x13 => {
            let imm = imm_i(w);
            let shamt = ((w >> 20) & 0x3f) as i64;
            let f6 = w >> 26;
            match f3 {
                0 => i(Op::Addi, w, imm),
                2 => i(Op::Slti, w, imm),
                3 => i(Op::Sltiu, w, imm),
                4 => i(Op::Xori, w, imm),
                6 => i(Op::Ori, w, imm),
                7 => i(Op::Andi, w, imm),
                1 if f6 == 0 => i(Op::Slli, w, shamt),
                5 if f6 == 0 => i(Op::Srli, w, shamt),
                5 if f6 == 0x10 => i(Op::Srai, w, shamt),
                _ => bitmanip::decode(w, cpu).unwrap_or(ILLEGAL),
            }
        }
        0x1b => {
            let shamt = ((w >> 20) & 0x1f) as i64;
            match (f3, f7) {
                (0, _) => i(Op::Addiw, w, imm_i(w)),
                (1, 0) => i(Op::Slliw, w, shamt),
                (5, 0) => i(Op::Srliw, w, shamt),
                (5, 0x20) => i(Op::Sraiw, w, shamt),
                _ => bitmanip::decode(w, cpu).unwrap_or(ILLEGAL),
            }
        }
        0x33 => {
            let op = match (f7, f3) {
                (0, 0) => Op::Add,
                (0x20, 0) => Op::Sub,
                (0, 1) => Op::Sll,
                (0, 2) => Op::Slt,
                (0, 3) => Op::Sltu,
                (0, 4) => Op::Xor,
                (0, 5) => Op::Srl,
                (0x20, 5) => Op::Sra,
                (0, 6) => Op::Or,
                (0, 7) => Op::And,
                (1, 0) => Op::Mul,
                (1, 1) => Op::Mulh,
                (1, 2) => Op::Mulhsu,
                (1, 3) => Op::Mulhu,
                (1, 4) => Op::Div,
                (1, 5) => Op::Divu,
                (1, 6) => Op::Rem,
                (1, 7) => Op::Remu,
                _ => return bitmanip::decode(w, cpu).unwrap_or(ILLEGAL),
            };
            r(op, w)
        }
        0x3b => {
            let op = match (f7, f3) {
                (0, 0) => Op::Addw,
                (0x20, 0) => Op::Subw,
                (0, 1) => Op::Sllw,
                (0, 5) => Op::Srlw,
                (0x20, 5) => Op::Sraw,
                (1, 0) => Op::Mulw,
                (1, 4) => Op::Divw,
                (1, 5) => Op::Divuw,
                (1, 6) => Op::Remw,
                (1, 7) => Op::Remuw,
                _ => return bitmanip::decode(w, cpu).unwrap_or(ILLEGAL),
            };
            r(op, w)
        }
        0x0f => match f3 {
            0 => Insn {
                op: Op::Fence,
                rd: SINK,
                rs1: 0,
                rs2: 0,
                off: 0,
                len: 4,
                imm: 0,
            },
            1 => Insn {
                op: Op::FenceI,
                rd: SINK,
                rs1: 0,
                rs2: 0,
                off: 0,
                len: 4,
                imm: 0,
            },
            _ => ILLEGAL,
        },
        0x2f => {
            let width = match f3 {
                2 => 4,
                3 => 8,
                _ => return ILLEGAL,
            };
            let f5 = w >> 27;
            match f5 {
                0x02 if rs2_of(w) == 0 => Insn {
                    op: Op::Lr,
                    rd: rd_of(w),
                    rs1: rs1_of(w),
                    rs2: 0,
                    off: 0,
                    len: 4,
                    imm: width,
                },
                0x03 => Insn {
                    op: Op::Sc,
                    rd: rd_of(w),
                    rs1: rs1_of(w),
                    rs2: rs2_of(w),
                    off: 0,
                    len: 4,
                    imm: width,
                },
                _ => match AmoOp::from_funct5(f5) {
                    Some(a) => Insn {
                        op: Op::Amo,
                        rd: rd_of(w),
                        rs1: rs1_of(w),
                        rs2: rs2_of(w),
                        off: 0,
                        len: 4,
                        imm: width | ((a as i64) << 8),
                    },
                    None => ILLEGAL,
                },
            }
        }
        0x73 => {
            if f3 == 0 {
                return match w {
                    0x0000_0073 => Insn {
                        op: Op::Ecall,
                        ..ILLEGAL
                    },
                    0x0010_0073 => Insn {
                        op: Op::Ebreak,
                        ..ILLEGAL
                    },
                    0x3020_0073 => Insn {
                        op: Op::Mret,
                        ..ILLEGAL
                    },
                    0x1050_0073 => Insn {
                        op: Op::Wfi,
                        ..ILLEGAL
                    },
                    _ => ILLEGAL,
                };
            }
            match CsrOp::from_funct3(f3) {
                Some(k) => Insn {
                    op: Op::Csr,
                    rd: rd_of(w),
                    rs1: rs1_of(w),
                    rs2: k as u8,
                    off: 0,
                    len: 4,
                    imm: (w >> 20) as i64,
                },
                None => ILLEGAL,
            }
        }
        _ => ILLEGAL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn immediates() {
        // addi a0, a0, -1
        let d = decode(0xfff5_0513, &CpuConfig::default());
        assert_eq!((d.op, d.rd, d.rs1, d.imm), (Op::Addi, 10, 10, -1));
        // sd a1, -8(sp)
        let d = decode(0xfeb1_3c23, &CpuConfig::default());
        assert_eq!((d.op, d.rs1, d.rs2, d.imm), (Op::Sd, 2, 11, -8));
        // beq x0, x0, -4 → 0xfe000ee3
        let d = decode(0xfe00_0ee3, &CpuConfig::default());
        assert_eq!((d.op, d.imm), (Op::Beq, -4));
        // jal ra, +2048 → imm[11] set
        let d = decode(0x0010_00ef, &CpuConfig::default());
        assert_eq!((d.op, d.rd, d.imm), (Op::Jal, 1, 2048));
        // jal x0, -2 ^ 20 (most negative)
        let d = decode(0x8000_006f, &CpuConfig::default());
        assert_eq!((d.op, d.rd, d.imm), (Op::Jal, SINK, -(1 << 20)));
        // lui a0, 0x80000 → sign-extended
        let d = decode(0x8000_0537, &CpuConfig::default());
        assert_eq!((d.op, d.imm), (Op::Lui, -0x8000_0000));
    }

    #[test]
    fn strict_encodings_are_illegal() {
        assert_eq!(decode(0xffff_ffff, &CpuConfig::default()).op, Op::Illegal);
        assert_eq!(decode(0, &CpuConfig::default()).op, Op::Illegal);
        // slli with funct6 = 0x01 (reserved)
        assert_eq!(decode(0x0405_1513, &CpuConfig::default()).op, Op::Illegal);
        // slliw with shamt[5] set is reserved
        assert_eq!(decode(0x0205_151b, &CpuConfig::default()).op, Op::Illegal);
        // add with funct7 = 0x40
        assert_eq!(decode(0x8000_0033, &CpuConfig::default()).op, Op::Illegal);
        // lr.w with rs2 != 0
        assert_eq!(decode(0x1015_252f, &CpuConfig::default()).op, Op::Illegal);
        // sret is not on an M-mode-only hart
        assert_eq!(decode(0x1020_0073, &CpuConfig::default()).op, Op::Illegal);
        // load funct3 7
        assert_eq!(decode(0x0000_7003, &CpuConfig::default()).op, Op::Illegal);
        // compressed
        assert_eq!(decode(0x0000_4501, &CpuConfig::default()).op, Op::Illegal);
    }

    #[test]
    fn x0_destination_goes_to_sink() {
        let d = decode(0x0010_0013, &CpuConfig::default()); // addi x0, x0, 1
        assert_eq!(d.rd, SINK);
        let d = decode(0x1050_0073, &CpuConfig::default());
        assert_eq!(d.op, Op::Wfi);
    }

    #[test]
    fn amo_and_csr_fields() {
        // amoswap.d a0, a1, (a2) : 0x08b6352f
        let d = decode(0x08b6_352f, &CpuConfig::default());
        assert_eq!(
            (
                d.op,
                d.rd,
                d.rs1,
                d.rs2,
                d.imm & 0xff,
                AmoOp::from_u8((d.imm >> 8) as u8)
            ),
            (Op::Amo, 10, 12, 11, 8, AmoOp::Swap)
        );
        // csrrw a0, mscratch, a1 : 0x34059573
        let d = decode(0x3405_9573, &CpuConfig::default());
        assert_eq!(
            (d.op, d.rd, d.rs1, d.rs2, d.imm),
            (Op::Csr, 10, 11, CsrOp::Rw as u8, 0x340)
        );
    }
}
