//! The RISC-V hart: RV64IMAC + Zicsr + Zifencei + Zba + Zbb + Zbs, machine
//! mode only (each extension can be turned off: `--cpu rv64,c=off,zba=off`).
//!
//! QEMU analogue: `target/riscv/` — `cpu.h` (CPURISCVState), `csr.c`,
//! `cpu_helper.c` (trap entry, `riscv_cpu_do_interrupt`), `op_helper.c`
//! (`mret`, `wfi`), and the translator in `translate.c` — plus the TB cache of
//! `accel/tcg/` (`tb_lookup`, `tb_gen_code`). See [`hart::Hart`].

pub mod bitmanip;
pub mod csr;
pub mod decode;
pub mod hart;
pub mod insn;
pub mod rvc;
pub mod tb;

/// Exception causes (mcause values without the interrupt bit).
pub mod cause {
    /// Instruction address misaligned.
    pub const INSN_MISALIGNED: u64 = 0;
    /// Instruction access fault.
    pub const INSN_ACCESS: u64 = 1;
    /// Illegal instruction.
    pub const ILLEGAL_INSN: u64 = 2;
    /// Breakpoint.
    pub const BREAKPOINT: u64 = 3;
    /// Load address misaligned.
    pub const LOAD_MISALIGNED: u64 = 4;
    /// Load access fault.
    pub const LOAD_ACCESS: u64 = 5;
    /// Store/AMO address misaligned.
    pub const STORE_MISALIGNED: u64 = 6;
    /// Store/AMO access fault.
    pub const STORE_ACCESS: u64 = 7;
    /// Environment call from M-mode.
    pub const ECALL_M: u64 = 11;
    /// Interrupt bit of mcause.
    pub const INTERRUPT: u64 = 1 << 63;
    /// Machine software interrupt.
    pub const IRQ_M_SOFT: u64 = 3;
    /// Machine timer interrupt.
    pub const IRQ_M_TIMER: u64 = 7;
    /// Machine external interrupt.
    pub const IRQ_M_EXT: u64 = 11;
}
