//! CSR numbers and the machine-mode CSR file.
//!
//! QEMU analogue: `target/riscv/csr.c` and `cpu_bits.h`. This hart is honest
//! about being M-mode only: `misa` reports RV64 with I, M, A (and C unless
//! it is turned off with `--cpu rv64,c=off`); `mstatus`
//! has only MIE and MPIE writable and MPP hard-wired to 3 (no lower privilege
//! to return to); `medeleg`/`mideleg`/S-mode CSRs do not exist. Where QEMU's
//! `rv64` CPU (which has S and U modes, C, F, D, H) reports differently, the
//! docs list the difference; guests compared against QEMU avoid those reads.

/// `mstatus`.
pub const MSTATUS: u16 = 0x300;
/// `misa`.
pub const MISA: u16 = 0x301;
/// `mie`.
pub const MIE: u16 = 0x304;
/// `mtvec`.
pub const MTVEC: u16 = 0x305;
/// `mcounteren`.
pub const MCOUNTEREN: u16 = 0x306;
/// `mcountinhibit`.
pub const MCOUNTINHIBIT: u16 = 0x320;
/// `mscratch`.
pub const MSCRATCH: u16 = 0x340;
/// `mepc`.
pub const MEPC: u16 = 0x341;
/// `mcause`.
pub const MCAUSE: u16 = 0x342;
/// `mtval`.
pub const MTVAL: u16 = 0x343;
/// `mip`.
pub const MIP: u16 = 0x344;
/// `mcycle`.
pub const MCYCLE: u16 = 0xb00;
/// `minstret`.
pub const MINSTRET: u16 = 0xb02;
/// `cycle` (user read-only shadow).
pub const CYCLE: u16 = 0xc00;
/// `time` (reads the CLINT's mtime).
pub const TIME: u16 = 0xc01;
/// `instret`.
pub const INSTRET: u16 = 0xc02;
/// `mvendorid`.
pub const MVENDORID: u16 = 0xf11;
/// `marchid`.
pub const MARCHID: u16 = 0xf12;
/// `mimpid`.
pub const MIMPID: u16 = 0xf13;
/// `mhartid`.
pub const MHARTID: u16 = 0xf14;
/// `mconfigptr`.
pub const MCONFIGPTR: u16 = 0xf15;

/// `mstatus.MIE`.
pub const MSTATUS_MIE: u64 = 1 << 3;
/// `mstatus.MPIE`.
pub const MSTATUS_MPIE: u64 = 1 << 7;
/// `mstatus.MPP` (hard-wired to M = 3).
pub const MSTATUS_MPP: u64 = 3 << 11;

/// `misa` of this hart without C: MXL = 64, extensions A, I, M.
pub const MISA_VALUE: u64 = (2 << 62) | (1 << 0) | (1 << 8) | (1 << 12);

/// `misa.C`.
pub const MISA_C: u64 = 1 << 2;

/// `misa` as read: [`MISA_VALUE`], plus C when the C extension is on. Writes
/// are ignored (QEMU's `misa_w` is off by default: `csrc misa, 4` leaves C
/// set on QEMU 7.2 and 10.0).
pub fn misa_value(c: bool) -> u64 {
    MISA_VALUE | if c { MISA_C } else { 0 }
}

/// Interrupt bits that exist (and are writable in `mie`): MSI, MTI, MEI.
pub const MIE_MASK: u64 = (1 << 3) | (1 << 7) | (1 << 11);

/// The `mie` bits QEMU 7.2's `rv64` keeps (M, S, VS, SGEI, LCOFI): they are
/// stored here so that a read returns what was written, and have no effect
/// beyond [`MIE_MASK`].
pub const MIE_WRITABLE_QEMU_7_2: u64 = 0x3eee;

/// The `mie` bits QEMU 10.0's `rv64` keeps: as 7.2, plus the local
/// interrupts 14..=63 (all but the U-mode bits 0, 4 and 8).
pub const MIE_WRITABLE_QEMU_10_0: u64 = !0x111;

/// The counters QEMU 10.0's `rv64` has (CY, TM, IR and hpm 3..=18): the
/// writable bits of `mcounteren` (and of `mcountinhibit`, without TM).
pub const PMU_COUNTERS_QEMU_10_0: u64 = 0x7ffff;

/// `marchid` and `mimpid` on QEMU 7.2: its version number,
/// `major << 16 | minor << 8 | micro` (7.2.22, the build measured).
pub const QEMU_7_2_ARCHID: u64 = (7 << 16) | (2 << 8) | 22;

/// Whether a CSR number is read-only by encoding (bits 11:10 = 3).
#[inline]
pub fn is_read_only(csr: u16) -> bool {
    (csr >> 10) & 3 == 3
}
