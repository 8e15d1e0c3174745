//! Decoder for the compressed (C) extension: 16-bit halfwords → [`Insn`].
//!
//! QEMU analogue: `target/riscv/insn16.decode` and the `trans_*` functions it
//! shares with the 32-bit decoder. As in QEMU, each compressed instruction is
//! expanded into the operation of its 32-bit equivalent (`c.mv` is `addi rd,
//! rs2, 0`, `c.j` is `jal x0`, `c.jalr` is `jalr ra`, ...), so the interpreter
//! needs no new operations; only [`Insn::len`] (2) tells them apart, for the
//! next pc, the link register and the counting of the wfi tail.
//!
//! Reserved and illegal encodings follow QEMU's decode tree for `rv64` (the
//! same in QEMU 7.2 and 10.0 for what this hart implements):
//! - the all-zero halfword and every `c.addi4spn` with `nzuimm = 0` (whatever
//!   `rd'`);
//! - `c.addiw`, `c.lwsp` and `c.ldsp` with `rd = 0`; `c.jr` with `rs1 = 0`;
//! - `c.lui`/`c.addi16sp` with a zero immediate (whatever `rd`);
//! - quadrant 0, funct3 100 (Zcb, not in QEMU's default `rv64`), and
//!   `100 1 11 ... 1x ...` of quadrant 1 (Zcb's `c.mul` and friends);
//! - the compressed FP loads and stores (`c.fld`, `c.fsd`, `c.fldsp`,
//!   `c.fsdsp`): QEMU's hart has D, but `mstatus.FS` is Off at reset and this
//!   hart has no FPU, so they raise illegal instruction on both.
//!
//! Hints execute as their plain meaning (`c.nop` with an immediate, `c.li`,
//! `c.lui`, `c.mv`, `c.add`, `c.slli` with `rd = 0`, shifts by 0): that writes
//! x0, i.e. nothing.
//!
//! An illegal halfword decodes as [`Op::Illegal`] with the halfword in `imm`
//! (QEMU's `mtval` for it: `env->bins` holds the 16-bit opcode).

use super::decode::ILLEGAL;
use super::insn::{Insn, Op, SINK};

/// Whether the halfword `h` starts a 32-bit instruction (low bits `11`);
/// otherwise it is a whole compressed instruction.
#[inline]
pub fn is_32bit(h: u16) -> bool {
    h & 3 == 3
}

#[inline]
fn bits(h: u32, hi: u32, lo: u32) -> u32 {
    (h >> lo) & ((1 << (hi - lo + 1)) - 1)
}

#[inline]
fn sext(v: u32, width: u32) -> i64 {
    ((v << (32 - width)) as i32 >> (32 - width)) as i64
}

/// A compressed instruction's expansion. `rd` 0 goes to the sink register, as
/// in the 32-bit decoder.
#[inline]
fn mk(op: Op, rd: u32, rs1: u32, rs2: u32, imm: i64) -> Insn {
    Insn {
        op,
        rd: if rd == 0 { SINK } else { rd as u8 },
        rs1: rs1 as u8,
        rs2: rs2 as u8,
        off: 0,
        len: 2,
        imm,
    }
}

/// Decode one compressed halfword (`h & 3 != 3`). Never panics: every one of
/// the 65536 values gives an instruction of length 2 (possibly
/// [`Op::Illegal`], with `h` in `imm`). A halfword with low bits `11` is not
/// a compressed instruction and decodes as illegal too.
pub fn decode16(h: u16) -> Insn {
    let insn = decode16_inner(h as u32);
    if insn.op == Op::Illegal {
        return Insn {
            imm: h as i64,
            len: 2,
            ..ILLEGAL
        };
    }
    insn
}

fn decode16_inner(h: u32) -> Insn {
    let f3 = bits(h, 15, 13);
    // Register fields: full 5-bit rd/rs1 (11:7) and rs2 (6:2); the 3-bit
    // x8..x15 forms rd'/rs2' (4:2) and rs1' (9:7).
    let rd = bits(h, 11, 7);
    let rs2 = bits(h, 6, 2);
    let rdp = 8 + bits(h, 4, 2);
    let rs1p = 8 + bits(h, 9, 7);
    // CI-format immediate: imm[5] = bit 12, imm[4:0] = bits 6:2.
    let ci = sext(bits(h, 12, 12) << 5 | bits(h, 6, 2), 6);
    let shamt = (bits(h, 12, 12) << 5 | bits(h, 6, 2)) as i64;
    // CL/CS word and doubleword offsets.
    let uimm_w = (bits(h, 12, 10) << 3 | bits(h, 6, 6) << 2 | bits(h, 5, 5) << 6) as i64;
    let uimm_d = (bits(h, 12, 10) << 3 | bits(h, 6, 5) << 6) as i64;
    match (h & 3, f3) {
        // Quadrant 0.
        (0, 0) => {
            // c.addi4spn; nzuimm = 0 (bits 12:5, including the all-zero
            // halfword) is illegal.
            let nzuimm = bits(h, 12, 11) << 4
                | bits(h, 10, 7) << 6
                | bits(h, 6, 6) << 2
                | bits(h, 5, 5) << 3;
            if nzuimm == 0 {
                return ILLEGAL;
            }
            mk(Op::Addi, rdp, 2, 0, nzuimm as i64)
        }
        (0, 2) => mk(Op::Lw, rdp, rs1p, 0, uimm_w),
        (0, 3) => mk(Op::Ld, rdp, rs1p, 0, uimm_d),
        (0, 6) => mk(Op::Sw, 0, rs1p, rdp, uimm_w),
        (0, 7) => mk(Op::Sd, 0, rs1p, rdp, uimm_d),
        // c.fld, c.fsd (FS Off / no FPU), funct3 100 (reserved without Zcb).
        (0, _) => ILLEGAL,
        // Quadrant 1.
        (1, 0) => mk(Op::Addi, rd, rd, 0, ci), // c.addi, c.nop
        (1, 1) => {
            if rd == 0 {
                return ILLEGAL;
            }
            mk(Op::Addiw, rd, rd, 0, ci)
        }
        (1, 2) => mk(Op::Addi, rd, 0, 0, ci), // c.li
        (1, 3) => {
            if bits(h, 12, 12) == 0 && bits(h, 6, 2) == 0 {
                return ILLEGAL;
            }
            if rd == 2 {
                // c.addi16sp
                let imm = bits(h, 12, 12) << 9
                    | bits(h, 4, 3) << 7
                    | bits(h, 5, 5) << 6
                    | bits(h, 2, 2) << 5
                    | bits(h, 6, 6) << 4;
                mk(Op::Addi, 2, 2, 0, sext(imm, 10))
            } else {
                // c.lui
                let imm = bits(h, 12, 12) << 17 | bits(h, 6, 2) << 12;
                mk(Op::Lui, rd, 0, 0, sext(imm, 18))
            }
        }
        (1, 4) => match bits(h, 11, 10) {
            0 => mk(Op::Srli, rs1p, rs1p, 0, shamt),
            1 => mk(Op::Srai, rs1p, rs1p, 0, shamt),
            2 => mk(Op::Andi, rs1p, rs1p, 0, ci),
            _ => {
                let op = match (bits(h, 12, 12), bits(h, 6, 5)) {
                    (0, 0) => Op::Sub,
                    (0, 1) => Op::Xor,
                    (0, 2) => Op::Or,
                    (0, 3) => Op::And,
                    (1, 0) => Op::Subw,
                    (1, 1) => Op::Addw,
                    _ => return ILLEGAL,
                };
                mk(op, rs1p, rs1p, rdp, 0)
            }
        },
        (1, 5) => {
            // c.j
            let imm = bits(h, 12, 12) << 11
                | bits(h, 11, 11) << 4
                | bits(h, 10, 9) << 8
                | bits(h, 8, 8) << 10
                | bits(h, 7, 7) << 6
                | bits(h, 6, 6) << 7
                | bits(h, 5, 3) << 1
                | bits(h, 2, 2) << 5;
            mk(Op::Jal, 0, 0, 0, sext(imm, 12))
        }
        (1, _) => {
            // c.beqz (110), c.bnez (111)
            let imm = bits(h, 12, 12) << 8
                | bits(h, 11, 10) << 3
                | bits(h, 6, 5) << 6
                | bits(h, 4, 3) << 1
                | bits(h, 2, 2) << 5;
            let op = if f3 == 6 { Op::Beq } else { Op::Bne };
            mk(op, 0, rs1p, 0, sext(imm, 9))
        }
        // Quadrant 2.
        (2, 0) => mk(Op::Slli, rd, rd, 0, shamt),
        (2, 2) | (2, 3) => {
            if rd == 0 {
                return ILLEGAL;
            }
            if f3 == 2 {
                let imm = bits(h, 12, 12) << 5 | bits(h, 6, 4) << 2 | bits(h, 3, 2) << 6;
                mk(Op::Lw, rd, 2, 0, imm as i64)
            } else {
                let imm = bits(h, 12, 12) << 5 | bits(h, 6, 5) << 3 | bits(h, 4, 2) << 6;
                mk(Op::Ld, rd, 2, 0, imm as i64)
            }
        }
        (2, 4) => match (bits(h, 12, 12), rd, rs2) {
            (0, 0, 0) => ILLEGAL,                     // c.jr x0 (reserved)
            (0, _, 0) => mk(Op::Jalr, 0, rd, 0, 0),   // c.jr
            (0, _, _) => mk(Op::Addi, rd, rs2, 0, 0), // c.mv
            (_, 0, 0) => Insn {
                op: Op::Ebreak,
                len: 2,
                ..ILLEGAL
            },
            (_, _, 0) => mk(Op::Jalr, 1, rd, 0, 0), // c.jalr
            _ => mk(Op::Add, rd, rd, rs2, 0),       // c.add
        },
        (2, 6) => {
            let imm = bits(h, 12, 9) << 2 | bits(h, 8, 7) << 6;
            mk(Op::Sw, 0, 2, rs2, imm as i64)
        }
        (2, 7) => {
            let imm = bits(h, 12, 10) << 3 | bits(h, 9, 7) << 6;
            mk(Op::Sd, 0, 2, rs2, imm as i64)
        }
        // c.fldsp, c.fsdsp (FS Off / no FPU); quadrant 3 is not compressed.
        _ => ILLEGAL,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::riscv::decode::decode;

    /// The fields that make up an instruction's meaning (not its length).
    fn meaning(d: Insn) -> (Op, u8, u8, u8, i64) {
        // Operations that do not read rs2 may hold anything there.
        let reads_rs2 = matches!(
            d.op,
            Op::Add
                | Op::Sub
                | Op::Xor
                | Op::Or
                | Op::And
                | Op::Addw
                | Op::Subw
                | Op::Sw
                | Op::Sd
                | Op::Beq
                | Op::Bne
        );
        (d.op, d.rd, d.rs1, if reads_rs2 { d.rs2 } else { 0 }, d.imm)
    }

    /// (halfword, its 32-bit expansion, name). Assembled with
    /// `riscv64-unknown-elf-as -march=rv64imac` (the compressed form) and
    /// `-march=rv64ima` (the expansion).
    const SAMPLES: &[(u16, u32, &str)] = &[
        (0x0040, 0x0041_0413, "c.addi4spn s0, sp, 4"),
        (0x1fe0, 0x3fc1_0413, "c.addi4spn s0, sp, 1020"),
        (0x41c8, 0x0045_a503, "c.lw a0, 4(a1)"),
        (0x5ffc, 0x07c7_a783, "c.lw a5, 124(a5)"),
        (0x6588, 0x0085_b503, "c.ld a0, 8(a1)"),
        (0x7ffc, 0x0f87_b783, "c.ld a5, 248(a5)"),
        (0xc1c8, 0x00a5_a223, "c.sw a0, 4(a1)"),
        (0xfffc, 0x0ef7_bc23, "c.sd a5, 248(a5)"),
        (0x0001, 0x0000_0013, "c.nop"),
        (0x157d, 0xfff5_0513, "c.addi a0, -1"),
        (0x0505, 0x0015_0513, "c.addi a0, 1"),
        (0x357d, 0xfff5_051b, "c.addiw a0, -1"),
        (0x2501, 0x0005_051b, "c.addiw a0, 0 (sext.w)"),
        (0x557d, 0xfff0_0513, "c.li a0, -1"),
        (0x4541, 0x0100_0513, "c.li a0, 16"),
        (0x7179, 0xfd01_0113, "c.addi16sp sp, -48"),
        (0x6141, 0x0101_0113, "c.addi16sp sp, 16"),
        (0x6105, 0x0201_0113, "c.addi16sp sp, 32"),
        (0x7101, 0xe001_0113, "c.addi16sp sp, -512"),
        (0x6505, 0x0000_1537, "c.lui a0, 1"),
        (0x757d, 0xffff_f537, "c.lui a0, 0xfffff"),
        (0x7501, 0xfffe_0537, "c.lui a0, 0xfffe0"),
        (0x8105, 0x0015_5513, "c.srli a0, 1"),
        (0x9101, 0x0205_5513, "c.srli a0, 32"),
        (0x917d, 0x03f5_5513, "c.srli a0, 63"),
        (0x8505, 0x4015_5513, "c.srai a0, 1"),
        (0x957d, 0x43f5_5513, "c.srai a0, 63"),
        (0x893d, 0x00f5_7513, "c.andi a0, 15"),
        (0x9941, 0xff05_7513, "c.andi a0, -16"),
        (0x8d0d, 0x40b5_0533, "c.sub a0, a1"),
        (0x8d2d, 0x00b5_4533, "c.xor a0, a1"),
        (0x8d4d, 0x00b5_6533, "c.or a0, a1"),
        (0x8d6d, 0x00b5_7533, "c.and a0, a1"),
        (0x9d0d, 0x40b5_053b, "c.subw a0, a1"),
        (0x9d2d, 0x00b5_053b, "c.addw a0, a1"),
        (0xa001, 0x0000_006f, "c.j 0"),
        (0xa009, 0x0020_006f, "c.j 2"),
        (0xbffd, 0xffff_f06f, "c.j -2"),
        (0xaffd, 0x7fe0_006f, "c.j 2046"),
        (0xb001, 0x801f_f06f, "c.j -2048"),
        (0xc111, 0x0005_0263, "c.beqz a0, 4"),
        (0xdd7d, 0xfe05_0fe3, "c.beqz a0, -2"),
        (0xedfd, 0x0e05_9f63, "c.bnez a1, 254"),
        (0xf181, 0xf005_90e3, "c.bnez a1, -256"),
        (0x050a, 0x0025_1513, "c.slli a0, 2"),
        (0x157e, 0x03f5_1513, "c.slli a0, 63"),
        (0x4512, 0x0041_2503, "c.lwsp a0, 4(sp)"),
        (0x50fe, 0x0fc1_2083, "c.lwsp ra, 252(sp)"),
        (0x6522, 0x0081_3503, "c.ldsp a0, 8(sp)"),
        (0x70fe, 0x1f81_3083, "c.ldsp ra, 504(sp)"),
        (0x8082, 0x0000_8067, "c.jr ra (ret)"),
        (0x8502, 0x0005_0067, "c.jr a0"),
        (0x852e, 0x0005_8513, "c.mv a0, a1"),
        (0x9002, 0x0010_0073, "c.ebreak"),
        (0x9502, 0x0005_00e7, "c.jalr a0"),
        (0x952e, 0x00b5_0533, "c.add a0, a1"),
        (0xc22a, 0x00a1_2223, "c.swsp a0, 4(sp)"),
        (0xdffe, 0x0ff1_2e23, "c.swsp t6, 252(sp)"),
        (0xe42a, 0x00a1_3423, "c.sdsp a0, 8(sp)"),
        (0xfffe, 0x1ff1_3c23, "c.sdsp t6, 504(sp)"),
    ];

    #[test]
    fn every_compressed_instruction_expands_to_its_32bit_form() {
        for &(h, w, name) in SAMPLES {
            let c = decode16(h);
            let d = decode(w, &crate::config::CpuConfig::default());
            assert_ne!(d.op, Op::Illegal, "{name}: expansion {w:#010x} illegal");
            assert_eq!(c.len, 2, "{name}");
            assert_eq!(d.len, 4, "{name}");
            assert_eq!(meaning(c), meaning(d), "{name}: {h:#06x} vs {w:#010x}");
        }
    }

    #[test]
    fn reserved_encodings_are_illegal_with_the_halfword() {
        for (h, what) in [
            (0x0000u16, "all-zero halfword"),
            (0x0004, "c.addi4spn a1, sp, 0"),
            (0x001c, "c.addi4spn a5, sp, 0"),
            (0x2000, "c.fld"),
            (0xa000, "c.fsd"),
            (0x8000, "quadrant 0 funct3 100 (Zcb)"),
            (0x2001, "c.addiw x0"),
            (0x6101, "c.addi16sp sp, 0"),
            (0x6501, "c.lui a0, 0"),
            (0x6001, "c.lui x0, 0"),
            (0x9d4d, "100 1 11 .. 10 (Zcb c.mul)"),
            (0x9d6d, "100 1 11 .. 11 (Zcb)"),
            (0x2002, "c.fldsp"),
            (0xa002, "c.fsdsp"),
            (0x4002, "c.lwsp x0"),
            (0x6002, "c.ldsp x0"),
            (0x8002, "c.jr x0"),
        ] {
            let d = decode16(h);
            assert_eq!(d.op, Op::Illegal, "{what} ({h:#06x})");
            assert_eq!(d.imm, h as i64, "{what}: mtval");
            assert_eq!(d.len, 2, "{what}");
        }
    }

    #[test]
    fn hints_write_only_the_sink() {
        // c.li x0, 1; c.lui x0, 1; c.mv x0, a0; c.add x0, a0; c.slli x0, 1;
        // c.addi a0, 0 (a hint too, but it writes a0 with itself).
        for h in [0x4005u16, 0x6005, 0x802a, 0x902a, 0x0006] {
            let d = decode16(h);
            assert_ne!(d.op, Op::Illegal, "{h:#06x}");
            assert_eq!(d.rd, SINK, "{h:#06x}");
        }
        let d = decode16(0x0501);
        assert_eq!((d.op, d.rd, d.rs1, d.imm), (Op::Addi, 10, 10, 0));
    }

    #[test]
    fn all_halfwords_decode_without_panic() {
        let mut legal = 0;
        for h in 0..=u16::MAX {
            let d = decode16(h);
            assert_eq!(d.len, 2);
            if is_32bit(h) {
                assert_eq!(d.op, Op::Illegal, "{h:#06x}");
                continue;
            }
            if d.op == Op::Illegal {
                assert_eq!(d.imm, h as i64);
            } else {
                legal += 1;
                assert!(d.rd >= 1 && d.rd <= SINK, "{h:#06x}");
                assert!(d.rs1 < 32 && d.rs2 < 32, "{h:#06x}");
            }
        }
        assert_eq!(legal, expected_legal_count());
    }

    /// The number of legal compressed halfwords, counted from the encoding
    /// map independently of the decoder's match.
    fn expected_legal_count() -> u32 {
        let group = 1u32 << 11; // halfwords per (quadrant, funct3)
        // Q0: addi4spn (all but nzuimm = 0: 8 rd' values), lw, ld, sw, sd.
        let q0 = (group - 8) + 4 * group;
        // Q1: addi, addiw (rd != 0), li, addi16sp/lui (imm != 0: 32 rd ×
        // 1 zero immediate), misc-alu (all but 100 1 11 ... 1x ...: 2 × 8
        // × 8 = 128), j, beqz, bnez.
        let q1 = group + (group - 64) + group + (group - 32) + (group - 128) + 3 * group;
        // Q2: slli, lwsp/ldsp (rd != 0), the 100 group (all but c.jr x0),
        // swsp, sdsp.
        let q2 = group + 2 * (group - 64) + (group - 1) + 2 * group;
        q0 + q1 + q2
    }
}
