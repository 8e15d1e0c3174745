//! Pre-decoded instructions: what a translation block holds.
//!
//! QEMU analogue: the decodetree output of `target/riscv/insn32.decode` and the
//! per-instruction `trans_*` functions in `target/riscv/insn_trans/`. vcpulab does
//! not generate host code; it decodes each guest word once into an [`Insn`] whose
//! fields are ready to use, so the interpreter's dispatch is a single `match`.

/// The operation of a decoded instruction.
///
/// Register-writing operations whose `rd` is `x0` keep their operation but have
/// `rd` redirected to the sink register 32, so the hot path never tests for x0.
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    Lui,
    Auipc,
    Jal,
    Jalr,
    Beq,
    Bne,
    Blt,
    Bge,
    Bltu,
    Bgeu,
    Lb,
    Lh,
    Lw,
    Ld,
    Lbu,
    Lhu,
    Lwu,
    Sb,
    Sh,
    Sw,
    Sd,
    Addi,
    Slti,
    Sltiu,
    Xori,
    Ori,
    Andi,
    Slli,
    Srli,
    Srai,
    Add,
    Sub,
    Sll,
    Slt,
    Sltu,
    Xor,
    Srl,
    Sra,
    Or,
    And,
    Addiw,
    Slliw,
    Srliw,
    Sraiw,
    Addw,
    Subw,
    Sllw,
    Srlw,
    Sraw,
    Mul,
    Mulh,
    Mulhsu,
    Mulhu,
    Div,
    Divu,
    Rem,
    Remu,
    Mulw,
    Divw,
    Divuw,
    Remw,
    Remuw,
    /// `fence` (a no-op for this memory model: every access is already ordered
    /// as the host's sequentially consistent-enough relaxed atomics allow; see docs).
    Fence,
    /// `fence.i`: ends the TB; code written before it is seen after it.
    FenceI,
    Ecall,
    Ebreak,
    Mret,
    Wfi,
    /// CSR access; `imm` holds the CSR number, `rs1` the source register or
    /// the 5-bit immediate, and `rs2` the [`CsrOp`] kind.
    Csr,
    /// Load-reserved; `rs2` is unused; `imm` is 4 or 8 (the width).
    Lr,
    /// Store-conditional; `imm` is 4 or 8.
    Sc,
    /// Atomic memory operation; `imm` is 4 or 8, `rs2` the source, and the kind
    /// is in the upper bits: `imm >> 8` is the [`AmoOp`].
    Amo,
    // Zba (`src/target/riscv/bitmanip.rs`); immediate forms keep the shift amount
    // in `imm`.
    AddUw,
    Sh1add,
    Sh2add,
    Sh3add,
    Sh1addUw,
    Sh2addUw,
    Sh3addUw,
    SlliUw,
    // Zbb.
    Andn,
    Orn,
    Xnor,
    Clz,
    Clzw,
    Ctz,
    Ctzw,
    Cpop,
    Cpopw,
    Max,
    Maxu,
    Min,
    Minu,
    SextB,
    SextH,
    ZextH,
    Rol,
    Rolw,
    Ror,
    Rori,
    Roriw,
    Rorw,
    OrcB,
    Rev8,
    // Zbs.
    Bclr,
    Bclri,
    Bext,
    Bexti,
    Binv,
    Binvi,
    Bset,
    Bseti,
    /// An encoding this hart does not implement: raises an illegal-instruction
    /// exception when executed, with the raw word (in `imm`; the 16-bit
    /// halfword for a compressed encoding) as mtval, as QEMU reports it.
    Illegal,
}

/// The CSR instruction variant (funct3 of SYSTEM).
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CsrOp {
    Rw = 1,
    Rs = 2,
    Rc = 3,
    Rwi = 5,
    Rsi = 6,
    Rci = 7,
}

impl CsrOp {
    /// From funct3 (1..=3, 5..=7).
    pub fn from_funct3(f: u32) -> Option<CsrOp> {
        Some(match f {
            1 => CsrOp::Rw,
            2 => CsrOp::Rs,
            3 => CsrOp::Rc,
            5 => CsrOp::Rwi,
            6 => CsrOp::Rsi,
            7 => CsrOp::Rci,
            _ => return None,
        })
    }
}

/// The AMO variant (funct5 of the AMO opcode).
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum AmoOp {
    Add = 0x00,
    Swap = 0x01,
    Xor = 0x04,
    Or = 0x08,
    And = 0x0c,
    Min = 0x10,
    Max = 0x14,
    Minu = 0x18,
    Maxu = 0x1c,
}

impl AmoOp {
    /// From funct5; `None` for LR/SC and reserved encodings.
    pub fn from_funct5(f: u32) -> Option<AmoOp> {
        Some(match f {
            0x00 => AmoOp::Add,
            0x01 => AmoOp::Swap,
            0x04 => AmoOp::Xor,
            0x08 => AmoOp::Or,
            0x0c => AmoOp::And,
            0x10 => AmoOp::Min,
            0x14 => AmoOp::Max,
            0x18 => AmoOp::Minu,
            0x1c => AmoOp::Maxu,
            _ => return None,
        })
    }

    /// The inverse of the `imm >> 8` packing used by [`Op::Amo`].
    pub fn from_u8(v: u8) -> AmoOp {
        AmoOp::from_funct5(v as u32).unwrap_or(AmoOp::Add)
    }

    /// Apply the operation at `width` bytes (4 or 8): the new memory value given
    /// the old one and the source register. 32-bit variants compare and compute
    /// on the low 32 bits (the result is sign-extended by the caller).
    #[inline]
    pub fn apply(self, old: u64, src: u64, width: u64) -> u64 {
        if width == 4 {
            let (o, s) = (old as u32, src as u32);
            (match self {
                AmoOp::Add => o.wrapping_add(s),
                AmoOp::Swap => s,
                AmoOp::Xor => o ^ s,
                AmoOp::Or => o | s,
                AmoOp::And => o & s,
                AmoOp::Min => (o as i32).min(s as i32) as u32,
                AmoOp::Max => (o as i32).max(s as i32) as u32,
                AmoOp::Minu => o.min(s),
                AmoOp::Maxu => o.max(s),
            }) as u64
        } else {
            match self {
                AmoOp::Add => old.wrapping_add(src),
                AmoOp::Swap => src,
                AmoOp::Xor => old ^ src,
                AmoOp::Or => old | src,
                AmoOp::And => old & src,
                AmoOp::Min => (old as i64).min(src as i64) as u64,
                AmoOp::Max => (old as i64).max(src as i64) as u64,
                AmoOp::Minu => old.min(src),
                AmoOp::Maxu => old.max(src),
            }
        }
    }
}

/// One pre-decoded instruction (16 bytes).
///
/// The decoders ([`super::decode::decode`] for 32-bit words,
/// [`super::rvc::decode16`] for compressed halfwords) fill in `op`, the
/// registers, `imm` and `len`; the translator sets `off`, so that the
/// interpreter computes each instruction's pc as `tb.pc + off` and the next pc
/// as `pc + len`, whatever mix of 2- and 4-byte instructions the TB holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    /// What to do.
    pub op: Op,
    /// Destination register (1..=31), or 32 (the sink) when the encoding says x0.
    pub rd: u8,
    /// First source register, or a 5-bit immediate for `csrr*i`.
    pub rs1: u8,
    /// Second source register (or a small sub-kind, see [`Op`]).
    pub rs2: u8,
    /// Byte offset of this instruction from the start of its TB (a TB never
    /// spans more than a page plus one instruction, so it fits).
    pub off: u16,
    /// Length of the encoding in bytes: 4, or 2 for a compressed instruction.
    pub len: u8,
    /// The immediate, sign-extended; shift amounts; CSR numbers; widths.
    pub imm: i64,
}

const _: () = assert!(std::mem::size_of::<Insn>() == 16);

/// Index of the register that absorbs writes to x0.
pub const SINK: u8 = 32;

impl Insn {
    /// Whether this instruction ends a translation block: control flow, traps,
    /// CSR accesses (which may change interrupt enables or read time), `fence.i`,
    /// `wfi`, `mret` and illegal encodings.
    pub fn ends_tb(&self) -> bool {
        matches!(
            self.op,
            Op::Jal
                | Op::Jalr
                | Op::Beq
                | Op::Bne
                | Op::Blt
                | Op::Bge
                | Op::Bltu
                | Op::Bgeu
                | Op::FenceI
                | Op::Ecall
                | Op::Ebreak
                | Op::Mret
                | Op::Wfi
                | Op::Csr
                | Op::Illegal
        )
    }

    /// Whether a trap raised by this instruction still counts it as executed
    /// (QEMU raises these at translation time without restoring the icount).
    pub fn counts_when_trapping(&self) -> bool {
        matches!(self.op, Op::Ecall | Op::Ebreak | Op::Illegal)
    }
}
