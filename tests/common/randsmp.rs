//! Random *SMP* time programs for the round-robin icount differential test
//! (`tests/qemu_smp_icount_diff.rs`): 2..=4 harts (drawn per program), each
//! running its own random body of RV64IMA code: ALU ops and counted loops,
//! loads/stores to its own area and to an area all harts share (plain
//! accesses, AMOs, LR/SC, bounded polls of a shared word), time reads
//! (`rdtime`, MMIO `mtime`), arming and disarming its own `mtimecmp` and
//! taking its timer interrupts, IPIs to any hart through the CLINT `msip`
//! words and taking software interrupts, `wfi`, `ecall`s and other
//! exceptions, the UART scratch register (which all harts share). Under
//! `-icount shift=N,sleep=off` QEMU runs all vCPUs on one round-robin thread,
//! deterministically, so the output is a function of the program and vcpulab
//! must print the same bytes.
//!
//! Every program is a pure function of its seed; the machine code is emitted
//! with the assembler of `asm.rs` (and the ALU/time helpers of `randtime.rs`).
//! The units of all harts are numbered in one sequence (hart 0's first); each
//! is generated from its own PRNG and is safe on its own whatever the earlier
//! units of any hart did, so any subset is a valid program
//! (`Program::generate(seed, Some(&kept))`) and the shrinker can drop units
//! of any hart.
//!
//! Layout:
//!
//! | address | what |
//! |---|---|
//! | `0x8000_0000` | code: hart dispatch, per-hart prologue/body/barrier, hart 0's printing, the trap handler |
//! | `0x8002_0000` | rodata: initial registers and timer actions of each hart, names, strings |
//! | `0x8003_0000 + h·0x4000` | hart `h`: `+0` handler save area (`mscratch`), `+0x100` trap log, `+0x1000` body log, `+0x1800` register save area, `+0x2000` its own 4 KiB area (random initial bytes) |
//! | `0x8004_0000` | the shared 4 KiB area (random initial bytes) |
//! | `0x8004_1000` | the barrier's arrival counter |
//!
//! Registers of a body (as in `randtime.rs`): `x1`..`x19` random; `x20` =
//! CLINT base; `x21` = UART base; `x22` value to log; `x23`, `x24` scratch;
//! `x25` loop counter; `x26` body log pointer; `x27` step counter
//! (incremented at every unit start and loop pass; the handler logs it);
//! `x28`..`x31` the handler's.
//!
//! The trap handler is one piece of code for all harts: every per-hart
//! address it needs (its trap log, its timer action table and length, its
//! `mtimecmp` and `msip`) is in the hart's save area, which `mscratch`
//! points at. It logs (mcause | slot << 16, mepc - 0x8000_0000, x27, time)
//! and then: exception (ecall, ebreak, illegal, misaligned, access fault) →
//! skip the instruction; software interrupt → own msip = 0; timer interrupt →
//! action `k` of the hart's table (re-arm at time + delta, or disarm), after
//! the table always disarm. Anything else ends the run (finisher 0x3333 | 3 << 16).
//!
//! Waiting is always bounded or woken: every `wfi` in a body runs with
//! `mstatus.MIE` off and the hart's own timer armed (only the hart itself
//! touches its `mtimecmp`, and with MIE off its handler cannot disarm it),
//! and `mie.MTIE` set, so a pending MTIP (now or at a reachable deadline)
//! ends it; polls have iteration limits. At the end of its body each hart
//! disables interrupts, saves its registers, the time, its `mtimecmp` and
//! `mip`, and takes an arrival number (`amoadd.d` on the counter). Harts
//! other than 0 then set hart 0's `msip` and park in `wfi` with `mie` = 0.
//! Hart 0 waits with `mie` = MSIE (MIE off): clear its `msip`, read the
//! counter, `wfi` until every hart has arrived (at most 1000 passes; each
//! arrival sets its `msip` after the counter, so no wake-up is lost). Then
//! it prints, per hart, `x1`..`x27`, time, mtimecmp, mip, the arrival
//! number, the body log, the trap log and the timer interrupt count; then
//! the barrier passes left, the UART scratch byte, `mtime` and a hash of the
//! shared area; then `end`, and writes 0x5555 to the finisher.
#![allow(dead_code)]

use super::asm::*;
use super::randtime::{CmpWrite, TimeRead, alu_word, emit_add_imm, emit_time_read, rand_reg};
use std::fmt::Write as _;

/// End of the code.
pub const CODE_LIMIT: u64 = 0x8002_0000;
/// Read-only data.
pub const RODATA: u64 = 0x8002_0000;
const RO_INIT: u64 = RODATA; // 4 harts · 32 · 8
const RO_ACT: u64 = RODATA + 0x400; // 4 harts · MAX_ACTIONS · 8
const RO_NAMES: u64 = RODATA + 0xa00; // 32 · 16
const RO_STR: u64 = RODATA + 0xc00; // strings, 32 bytes each
/// Hart 0's data; hart `h`'s at `HART_BASE + h * HART_STRIDE`.
pub const HART_BASE: u64 = 0x8003_0000;
/// Size of one hart's data.
pub const HART_STRIDE: u64 = 0x4000;
const H_SAVE: u64 = 0; // handler save area
const H_HLOG: u64 = 0x100; // trap log
const H_BLOG: u64 = 0x1000; // body log
const H_REGS: u64 = 0x1800; // register save area
const H_PRIV: u64 = 0x2000; // the hart's own 4 KiB
/// Trap log entries per hart (32 bytes each).
pub const HLOG_MAX: u64 = 96;
/// Body log entries per hart.
pub const BLOG_MAX: usize = 256;
/// The shared area.
pub const SHARED: u64 = 0x8004_0000;
/// The barrier's arrival counter.
pub const SYNC: u64 = 0x8004_1000;
/// End of the image.
pub const END: u64 = 0x8004_2000;
/// Most harts a program has.
pub const MAX_HARTS: usize = 4;
/// Most timer actions of one hart.
pub const MAX_ACTIONS: usize = 40;
/// Passes of hart 0's barrier loop before it gives up waiting.
pub const BARRIER_PASSES: i64 = 1000;

// handler save area offsets
const HS_X28: i64 = 0;
const HS_X29: i64 = 8;
const HS_X30: i64 = 16;
const HS_LOGN: i64 = 24;
const HS_TIMERN: i64 = 32;
const HS_SLOT: i64 = 40;
const HS_HLOG: i64 = 48;
const HS_ACT: i64 = 56;
const HS_NACT: i64 = 64;
const HS_CMP: i64 = 72;
const HS_MSIP: i64 = 80;

/// Marker in an action table: disarm (write -1) instead of re-arming.
const DISARM: u64 = 0x8000_0000_0000_0000;

/// Value lines of each hart: x1..x27, time, mtimecmp, mip, arrival.
pub const VALUE_LINES: usize = 31;

const CL: u8 = 20; // CLINT base
const UA: u8 = 21; // UART base
const TV: u8 = 22; // value to log
const TA: u8 = 23; // scratch
const TB: u8 = 24; // scratch
const LC: u8 = 25; // loop counter
const LP: u8 = 26; // body log pointer
const STEP: u8 = 27; // step counter
const X28: u8 = 28;
const X29: u8 = 29;
const X30: u8 = 30;
const X31: u8 = 31;

/// Data of hart `h`.
pub fn hart_base(h: usize) -> u64 {
    HART_BASE + h as u64 * HART_STRIDE
}

fn amo(f5: u32, rd: u8, rs1: u8, rs2: u8, f3: u32) -> u32 {
    f5 << 27 | r_type(0, rs2, rs1, f3, rd, OP_AMO)
}

/// The program-wide choices and each hart's.
#[derive(Clone, Debug)]
pub struct Shape {
    /// Number of harts (the `-smp` value).
    pub harts: usize,
    /// Units of each hart (hart `h`'s are numbered after those of harts `< h`).
    pub units: Vec<usize>,
    /// Vectored `mtvec` (one stub per slot that records the slot).
    pub vectored: bool,
    /// Handler: MMIO `mtime` (not `rdtime`) for the time it logs.
    pub handler_log_mmio: bool,
    /// Handler: MMIO `mtime` for the time it re-arms relative to.
    pub handler_rearm_mmio: bool,
    /// Handler: how it writes mtimecmp when re-arming.
    pub handler_write: String,
    /// Per hart: timer actions (delta as i64, or `DISARM`).
    pub actions: Vec<Vec<u64>>,
    /// Per hart: the prologue disarms its timer (otherwise mtimecmp = 0 from reset).
    pub prologue_disarm: Vec<bool>,
    /// Per hart: initial mie (subset of MTIE | MSIE) and mstatus.MIE.
    pub init_mie: Vec<u64>,
    /// Per hart: initial mstatus.MIE.
    pub init_mstatus_mie: Vec<bool>,
}

impl Shape {
    /// Total number of units.
    pub fn total_units(&self) -> usize {
        self.units.iter().sum()
    }
    /// The hart unit `u` (generation index) belongs to.
    pub fn hart_of(&self, u: usize) -> usize {
        let mut first = 0;
        for (h, &n) in self.units.iter().enumerate() {
            if u < first + n {
                return h;
            }
            first += n;
        }
        self.harts - 1
    }
}

/// One generated program.
#[derive(Clone, Debug)]
pub struct Program {
    /// Its seed.
    pub seed: u64,
    /// The choices it was made from.
    pub shape: Shape,
    /// Generation indices of the units present (all, or a subset).
    pub kept: Vec<usize>,
    /// The memory image from `BASE` to `END`.
    pub image: Vec<u8>,
    /// Every instruction, for listings and reports.
    pub words: Vec<Insn>,
}

/// Generator switches.
#[derive(Clone, Copy, Debug, Default)]
pub struct GenOptions {
    /// Force this many harts (2..=4) instead of drawing it.
    pub harts: Option<usize>,
}

/// The number of harts of the program with `seed` (the first draw of its PRNG).
pub fn harts_of(seed: u64, opts: GenOptions) -> usize {
    let mut rng = SplitMix64::new(seed);
    let drawn = rng.range(2, MAX_HARTS as i64) as usize;
    opts.harts.unwrap_or(drawn)
}

struct Gen {
    rng: SplitMix64,
    /// This hart and the number of harts.
    hart: usize,
    harts: usize,
    /// Body log entries of this hart so far.
    log_entries: usize,
}

/// `mtimecmp` of hart `h` := `val` the given way; `addr_reg` gets the
/// mtimecmp page; `tmp` is clobbered for HiLo; for LoHi `val` is shifted.
fn emit_cmp_write_h(a: &mut Asm, k: CmpWrite, val: u8, addr_reg: u8, tmp: u8, h: usize) {
    a.lui(addr_reg, (MTIMECMP >> 12) as u32);
    emit_cmp_write_at(a, k, val, addr_reg, 8 * h as i64, tmp);
}

/// Write `val` to the mtimecmp at `off(base)`.
fn emit_cmp_write_at(a: &mut Asm, k: CmpWrite, val: u8, base: u8, off: i64, tmp: u8) {
    match k {
        CmpWrite::Full => a.sd(val, off, base),
        CmpWrite::LoHi => {
            a.sw(val, off, base);
            a.srli(val, val, 32);
            a.sw(val, off + 4, base);
        }
        CmpWrite::HiLo => {
            a.srli(tmp, val, 32);
            a.sw(tmp, off + 4, base);
            a.sw(val, off, base);
        }
    }
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
    fn alu(&mut self, a: &mut Asm, n: u64) {
        for _ in 0..n {
            let w = alu_word(&mut self.rng, Isa::BASE);
            a.emit(w);
        }
    }
    /// Append x22 to the hart's body log (if there is room).
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
    fn other_hart(&mut self) -> usize {
        if self.rng.chance(10) {
            self.hart
        } else {
            let k = self.rng.below(self.harts as u64 - 1) as usize;
            if k >= self.hart { k + 1 } else { k }
        }
    }
    /// `TB` = a random doubleword address in this hart's area or the shared one.
    fn mem_addr(&mut self, a: &mut Asm, shared: bool) -> u64 {
        let base = if shared {
            SHARED
        } else {
            hart_base(self.hart) + H_PRIV
        };
        // the shared words the harts fight over: a few hot ones, then any
        let off = if shared && self.rng.chance(60) {
            8 * self.rng.below(8)
        } else {
            8 * self.rng.below(500)
        };
        a.la(TB, base + off);
        base + off
    }

    fn unit(&mut self, a: &mut Asm) {
        a.addi(STEP, STEP, 1);
        let h = self.hart;
        let w = [
            12, // 0 ALU
            10, // 1 time read
            10, // 2 arm own mtimecmp
            3,  // 3 disarm own
            8,  // 4 mstatus.MIE
            6,  // 5 mie
            7,  // 6 ALU loop
            8,  // 7 wfi (MIE off, own timer armed)
            3,  // 8 poll mip
            5,  // 9 UART scratch
            9,  // 10 IPI
            3,  // 11 ecall
            3,  // 12 mtimecmp read (any hart's)
            4,  // 13 exception
            2,  // 14 mtime write (forward)
            4,  // 15 counters
            3,  // 16 long straight-line block
            2,  // 17 stale QEMU timer + wfi
            3,  // 18 wfi loop
            6,  // 19 own memory
            8,  // 20 shared memory, AMOs
            3,  // 21 LR/SC on a shared word
            4,  // 22 loop over memory and MMIO
            4,  // 23 bounded poll of a shared word
            2,  // 24 loop faulting off the end of RAM
            2,  // 25 msip read (any hart's)
        ];
        match self.rng.weighted(&w) {
            0 => {
                let n = self.rng.range(1, 4) as u64;
                self.alu(a, n);
            }
            1 => {
                let k = self.time_read_kind();
                emit_time_read(a, k, TV, TA);
                self.log_tv(a);
            }
            2 => {
                let k = match self.time_read_kind() {
                    TimeRead::MmioHi => TimeRead::Mmio64,
                    k => k,
                };
                let d = self.delta();
                emit_time_read(a, k, TV, TA);
                emit_add_imm(a, TV, d, TB);
                let wk = self.cmp_write_kind();
                if self.rng.chance(50) {
                    self.log_tv(a);
                }
                emit_cmp_write_h(a, wk, TV, TA, TB, h);
                a.note(&format!("arm own timer: delta {d}, {wk:?}"));
            }
            3 => {
                a.addi(TB, 0, -1);
                let wk = self.cmp_write_kind();
                emit_cmp_write_h(a, wk, TB, TA, TV, h);
                a.note("disarm own timer");
            }
            4 => {
                let f3 = if self.rng.chance(55) { 6 } else { 7 };
                a.csr(f3, 0, CSR_MSTATUS, 8);
            }
            5 => {
                let mask = self.rng.pick(&[0x80i64, 0x8, 0x88]);
                let f3 = if self.rng.chance(60) { 2 } else { 3 };
                a.addi(TA, 0, mask);
                a.csr(f3, 0, CSR_MIE, TA);
            }
            6 => {
                let n = if self.rng.chance(3) {
                    self.rng.range(3000, 20_000)
                } else {
                    self.rng.range(1, 400)
                };
                a.li32(LC, n as i32);
                let top = a.here();
                a.addi(STEP, STEP, 1);
                for _ in 0..self.rng.range(0, 5) {
                    match self.rng.below(10) {
                        0 => {
                            let k = self.time_read_kind();
                            emit_time_read(a, k, TV, TA);
                            let r = rand_reg(&mut self.rng);
                            a.add(r, r, TV);
                        }
                        1 if n <= 100 => {
                            let r = rand_reg(&mut self.rng);
                            a.sb(r, 7, UA);
                        }
                        _ => self.alu(a, 1),
                    }
                }
                a.addi(LC, LC, -1);
                a.bne(LC, 0, top);
                a.note(&format!("loop x{n}"));
                if self.rng.chance(40) {
                    self.log_counter(a);
                }
            }
            7 => self.wfi_unit(a),
            8 => {
                let bit = self.rng.pick(&[0x80i64, 0x8]);
                let n = self.rng.range(1, 3000);
                a.li32(LC, n as i32);
                let top = a.here();
                let done = a.label();
                a.csrr(TV, CSR_MIP);
                a.andi(TV, TV, bit);
                a.bne(TV, 0, done);
                a.addi(LC, LC, -1);
                a.bne(LC, 0, top);
                a.bind(done);
                a.note(&format!("poll mip & {bit:#x}"));
                a.addi(TV, LC, 0);
                self.log_tv(a);
            }
            9 => {
                if self.rng.chance(40) {
                    a.lbu(TV, 7, UA);
                    self.log_tv(a);
                }
                let r = rand_reg(&mut self.rng);
                a.sb(r, 7, UA);
                a.note("UART scratch write");
                if self.rng.chance(50) {
                    let n = self.rng.below(3);
                    self.alu(a, n);
                    a.lbu(TV, 7, UA);
                    self.log_tv(a);
                }
            }
            10 => {
                if self.rng.chance(40) {
                    a.addi(TA, 0, 8);
                    a.csr(2, 0, CSR_MIE, TA);
                }
                let t = self.other_hart();
                a.addi(TB, 0, 1);
                a.sw(TB, 4 * t as i64, CL);
                a.note(&format!("msip[{t}] = 1"));
                if self.rng.chance(25) {
                    let n = self.rng.below(4);
                    self.alu(a, n);
                    a.load(2, TV, 4 * t as i64, CL);
                    self.log_tv(a);
                }
            }
            11 => {
                a.emit(ECALL);
            }
            12 => {
                let t = if self.rng.chance(50) {
                    h
                } else {
                    self.other_hart()
                };
                a.lui(TA, (MTIMECMP >> 12) as u32);
                let off = 8 * t as i64;
                match self.rng.below(3) {
                    0 => a.ld(TV, off, TA),
                    1 => a.load(6, TV, off, TA),
                    _ => a.load(6, TV, off + 4, TA),
                }
                a.note(&format!("mtimecmp[{t}] read"));
                self.log_tv(a);
            }
            13 => {
                let n = self.rng.below(4);
                self.alu(a, n);
                let (w, what) = match self.rng.below(8) {
                    0 => (EBREAK, "ebreak"),
                    1 => (0x0000_0000, "illegal (all zeros)"),
                    2 => (
                        CSR_TIME << 20 | 5 << 15 | 2 << 12 | (TV as u32) << 7 | OP_SYSTEM,
                        "csrrs x22, time, x5: write to read-only CSR",
                    ),
                    3 => (
                        i_type(1 + 2 * self.rng.below(3) as i64, LP, 3, TV, OP_LOAD),
                        "misaligned ld",
                    ),
                    4 => (s_type(3, TV, LP, 3, OP_STORE), "misaligned sd"),
                    5 => (i_type(0, 0, 3, TV, OP_LOAD), "ld from address 0 (unmapped)"),
                    6 => (
                        s_type(0x10, TV, 0, 2, OP_STORE),
                        "sw to address 0x10 (unmapped)",
                    ),
                    _ => (ECALL, "ecall"),
                };
                a.emit(w);
                a.note(&format!("traps: {what}"));
                let n = self.rng.below(4);
                self.alu(a, n);
            }
            14 => {
                // move mtime forward (for every hart)
                emit_time_read(a, TimeRead::Mmio64, TV, TA);
                let d = if self.rng.chance(20) {
                    self.rng.range(1, 1_000_000)
                } else {
                    self.rng.range(0, 2000)
                };
                emit_add_imm(a, TV, d, TB);
                a.lui(TA, ((MTIME + 8) >> 12) as u32);
                if self.rng.chance(25) {
                    a.sw(TV, -8, TA);
                    a.note(&format!("mtime low half += {d}"));
                } else {
                    a.sd(TV, -8, TA);
                    a.note(&format!("mtime += {d}"));
                }
                if self.rng.chance(50) {
                    let k = self.time_read_kind();
                    emit_time_read(a, k, TV, TA);
                    self.log_tv(a);
                }
            }
            15 => {
                match self.rng.below(4) {
                    0..=2 => {
                        let c = self
                            .rng
                            .pick(&[CSR_CYCLE, CSR_INSTRET, CSR_MCYCLE, CSR_MINSTRET]);
                        a.csrr(TV, c);
                    }
                    _ => {
                        let c = self.rng.pick(&[CSR_MCYCLE, CSR_MINSTRET]);
                        let r = if self.rng.chance(50) {
                            0
                        } else {
                            rand_reg(&mut self.rng)
                        };
                        a.csrw(c, r);
                        a.note("counter write");
                        a.csrr(TV, c);
                    }
                }
                self.log_tv(a);
            }
            16 => {
                let n = self.rng.range(20, 300) as usize;
                let wfi_at = self
                    .rng
                    .chance(40)
                    .then(|| self.rng.range(0, n as i64) as usize);
                if wfi_at.is_some() {
                    a.csr(7, TB, CSR_MSTATUS, 8);
                    a.csr(2, TV, CSR_TIME, 0);
                    let d = self.rng.range(0, 3000);
                    emit_add_imm(a, TV, d, TA);
                    emit_cmp_write_h(a, CmpWrite::Full, TV, TA, TB, h);
                    a.note(&format!("arm own timer: delta {d}"));
                    a.addi(TA, 0, 0x80);
                    a.csr(2, 0, CSR_MIE, TA);
                }
                for i in 0..n {
                    if wfi_at == Some(i) {
                        a.emit(WFI);
                    }
                    self.alu(a, 1);
                }
                if wfi_at.is_some() {
                    a.csr(2, TV, CSR_TIME, 0);
                    self.log_tv(a);
                    a.andi(TB, TB, 8);
                    a.csr(2, 0, CSR_MSTATUS, TB);
                }
            }
            17 => {
                // a write in the past raises MTIP and leaves QEMU's timer armed
                a.csr(7, TB, CSR_MSTATUS, 8);
                a.csr(2, TV, CSR_TIME, 0);
                let d = self.rng.range(1, 60);
                a.addi(TV, TV, d);
                a.lui(TA, (MTIMECMP >> 12) as u32);
                a.sd(TV, 8 * h as i64, TA);
                a.note(&format!("arm own timer: delta {d}"));
                a.sd(0, 8 * h as i64, TA);
                a.note("own mtimecmp = 0 (past)");
                a.addi(TA, 0, 0x80);
                a.csr(2, 0, CSR_MIE, TA);
                let n = self.rng.below(40);
                self.alu(a, n);
                a.emit(WFI);
                let n = self.rng.below(40);
                self.alu(a, n);
                a.csr(2, TV, CSR_TIME, 0);
                self.log_tv(a);
                a.andi(TB, TB, 8);
                a.csr(2, 0, CSR_MSTATUS, TB);
            }
            18 => {
                let n = self.rng.range(1, 30);
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
                a.sd(TV, 8 * h as i64, TA);
                let k = self.rng.below(4);
                self.alu(a, k);
                a.emit(WFI);
                let k = self.rng.below(4);
                self.alu(a, k);
                a.addi(LC, LC, -1);
                a.bne(LC, 0, top);
                a.note(&format!("wfi loop x{n}, delta {d}"));
                a.csr(2, TV, CSR_TIME, 0);
                self.log_tv(a);
                a.andi(TB, TB, 8);
                a.csr(2, 0, CSR_MSTATUS, TB);
            }
            k @ (19 | 20) => {
                let shared = k == 20;
                let at = self.mem_addr(a, shared);
                let r = rand_reg(&mut self.rng);
                let r2 = rand_reg(&mut self.rng);
                match self.rng.below(if shared { 9 } else { 5 }) {
                    0 => a.ld(TV, 0, TB),
                    1 => a.load(2, TV, 4, TB),
                    2 => a.lbu(TV, 3, TB),
                    3 => {
                        a.sd(r, 0, TB);
                        a.ld(TV, 0, TB);
                    }
                    4 => {
                        a.sw(r, 4, TB);
                        a.ld(TV, 0, TB);
                    }
                    k => {
                        let (f5, name) = match k {
                            5 => (0u32, "amoadd"),
                            6 => (1, "amoswap"),
                            7 => (8, "amoor"),
                            _ => (self.rng.pick(&[4u32, 0xc, 0x10, 0x1c]), "amo"),
                        };
                        let f3 = if self.rng.chance(70) { 3 } else { 2 };
                        let rs2 = if self.rng.chance(40) { r } else { 0 };
                        let rs2 = if name == "amoadd" && rs2 == 0 {
                            r2
                        } else {
                            rs2
                        };
                        a.emit(amo(f5, TV, TB, rs2, f3));
                        a.note(&format!(
                            "{name}.{} at {at:#x}",
                            if f3 == 3 { 'd' } else { 'w' }
                        ));
                    }
                }
                self.log_tv(a);
            }
            21 => {
                let at = self.mem_addr(a, true);
                let r = rand_reg(&mut self.rng);
                a.emit(amo(2, TV, TB, 0, 3));
                a.note(&format!("lr.d at {at:#x}"));
                self.log_tv(a);
                let n = self.rng.below(4);
                self.alu(a, n);
                if self.rng.chance(30) {
                    // a long enough gap for the round-robin turn to end
                    let n = self.rng.range(1, 500);
                    a.li32(LC, n as i32);
                    let top = a.here();
                    a.addi(LC, LC, -1);
                    a.bne(LC, 0, top);
                }
                a.emit(amo(3, TV, TB, r, 3));
                a.note("sc.d");
                self.log_tv(a);
            }
            22 => {
                let n = self.rng.range(1, 200);
                let shared = self.rng.chance(50);
                let base = if shared {
                    SHARED
                } else {
                    hart_base(h) + H_PRIV
                };
                a.la(TB, base + 8 * self.rng.below(8));
                a.li32(LC, n as i32);
                a.note(&format!(
                    "loop x{n} over {} memory and MMIO",
                    if shared { "shared" } else { "own" }
                ));
                let top = a.here();
                a.addi(STEP, STEP, 1);
                for _ in 0..self.rng.range(1, 5) {
                    let r = rand_reg(&mut self.rng);
                    match self.rng.below(8) {
                        0 => a.ld(r, 0, TB),
                        1 => a.sd(r, 8, TB),
                        2 => {
                            a.emit(amo(0, r, TB, r, 3));
                        }
                        3 => a.sb(r, 7, UA),
                        4 => a.lbu(r, 7, UA),
                        5 => {
                            emit_time_read(a, TimeRead::Mmio64, TV, TA);
                            a.add(r, r, TV);
                        }
                        _ => self.alu(a, 1),
                    }
                }
                a.addi(TB, TB, 8);
                a.addi(LC, LC, -1);
                a.bne(LC, 0, top);
                self.log_counter(a);
            }
            23 => {
                // wait (bounded) until a shared word changes; log what is left
                let at = self.mem_addr(a, true);
                let n = self.rng.range(1, 2000);
                a.ld(TA, 0, TB);
                a.li32(LC, n as i32);
                let top = a.here();
                let done = a.label();
                a.ld(TV, 0, TB);
                a.bne(TV, TA, done);
                a.addi(LC, LC, -1);
                a.bne(LC, 0, top);
                a.bind(done);
                a.note(&format!("poll {at:#x} for a change, at most {n} passes"));
                a.addi(TV, LC, 0);
                self.log_tv(a);
            }
            24 => {
                let m = self.rng.range(0, 4);
                let f = self.rng.range(1, 2);
                a.la(TA, RAM_END - 8 * m as u64);
                a.li32(LC, (m + f) as i32);
                a.note(&format!(
                    "loop x{}: x23 walks off the end of RAM after {m} passes",
                    m + f
                ));
                let top = a.here();
                a.addi(STEP, STEP, 1);
                let r = rand_reg(&mut self.rng);
                match self.rng.below(3) {
                    0 => a.sd(r, 0, TA),
                    1 => a.ld(r, 0, TA),
                    _ => a.load(4, r, 0, TA),
                }
                a.note("faults past the end of RAM");
                let n = self.rng.below(3);
                self.alu(a, n);
                a.addi(TA, TA, 8);
                a.addi(LC, LC, -1);
                a.bne(LC, 0, top);
                self.log_counter(a);
            }
            25 => {
                let t = self.other_hart();
                a.load(2, TV, 4 * t as i64, CL);
                a.note(&format!("msip[{t}] read"));
                self.log_tv(a);
            }
            _ => unreachable!(),
        }
    }

    fn log_counter(&mut self, a: &mut Asm) {
        let c = self
            .rng
            .pick(&[CSR_MINSTRET, CSR_INSTRET, CSR_MCYCLE, CSR_TIME]);
        a.csrr(TV, c);
        a.note("counter after a loop");
        self.log_tv(a);
    }

    /// `wfi` with MIE off and the hart's own timer armed (in the past, now
    /// or ahead): a pending MTIP wakes it, taken once MIE is restored.
    fn wfi_unit(&mut self, a: &mut Asm) {
        let h = self.hart;
        a.csr(7, TB, CSR_MSTATUS, 8); // csrrci x24, mstatus, MIE
        let k = match self.time_read_kind() {
            TimeRead::MmioHi | TimeRead::MmioLo => TimeRead::Mmio64,
            k => k,
        };
        // in the past as time >> k (never time - d, which wraps early in a run)
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
        emit_cmp_write_h(a, wk, TV, TA, LC, h);
        a.note(&format!(
            "arm own timer for wfi (MIE off): {}, {wk:?}",
            if d < 0 {
                format!("time >> {}", -d)
            } else {
                format!("delta {d}")
            }
        ));
        a.addi(TA, 0, 0x80);
        a.csr(2, 0, CSR_MIE, TA);
        a.emit(WFI);
        let n = self.rng.below(6);
        self.alu(a, n);
        if self.rng.chance(70) {
            let k = self.time_read_kind();
            emit_time_read(a, k, TV, TA);
            self.log_tv(a);
        }
        a.andi(TB, TB, 8);
        a.csr(2, 0, CSR_MSTATUS, TB); // restore MIE
    }
}

/// Seed of unit `i`'s own PRNG.
fn unit_seed(seed: u64, i: usize) -> u64 {
    program_seed(seed ^ 0x736d_7075_6e69_7421, i as u64) // "smpunit!"
}

impl Program {
    /// The program for `seed`; with `kept`, only those units (generation
    /// indices), each identical to its version in the full program.
    pub fn generate(seed: u64, kept: Option<&[usize]>) -> Program {
        Self::generate_with(seed, kept, GenOptions::default())
    }

    /// `generate` with generator switches.
    pub fn generate_with(seed: u64, kept: Option<&[usize]>, opts: GenOptions) -> Program {
        let mut rng = SplitMix64::new(seed);
        let _ = rng.range(2, MAX_HARTS as i64); // the hart count: `harts_of`
        let harts = harts_of(seed, opts);
        assert!(
            (2..=MAX_HARTS).contains(&harts),
            "harts {harts}: expected 2..={MAX_HARTS}"
        );
        let units: Vec<usize> = (0..harts).map(|_| rng.range(4, 30) as usize).collect();
        let vectored = rng.chance(50);
        let handler_log_mmio = rng.chance(30);
        let handler_rearm_mmio = rng.chance(30);
        let hw = match rng.below(6) {
            0..=3 => CmpWrite::Full,
            4 => CmpWrite::LoHi,
            _ => CmpWrite::HiLo,
        };
        let mut actions = Vec::new();
        let mut prologue_disarm = Vec::new();
        let mut init_mie = Vec::new();
        let mut init_mstatus_mie = Vec::new();
        let mut init = Vec::new();
        let mut gaps = Vec::new();
        for _ in 0..harts {
            let nact = rng.below(MAX_ACTIONS as u64 + 1) as usize;
            actions.push(
                (0..nact)
                    .map(|_| match rng.below(20) {
                        0..=2 => DISARM,
                        3 | 4 => 0,
                        5 => (-rng.range(1, 300)) as u64,
                        6..=8 => rng.range(1, 20) as u64,
                        _ => rng.range(1, 2000) as u64,
                    })
                    .collect::<Vec<u64>>(),
            );
            prologue_disarm.push(rng.chance(85));
            init_mie.push(rng.pick(&[0u64, 0, 0x80, 0x8, 0x88]));
            init_mstatus_mie.push(rng.chance(40));
            gaps.push(rng.below(256) as usize);
            init.push(
                (0..32)
                    .map(|_| match rng.below(4) {
                        0 => rng.below(100),
                        1 => rng.next_u64() & 0xffff_ffff,
                        _ => rng.next_u64(),
                    })
                    .collect::<Vec<u64>>(),
            );
        }
        let shape = Shape {
            harts,
            units: units.clone(),
            vectored,
            handler_log_mmio,
            handler_rearm_mmio,
            handler_write: format!("{hw:?}"),
            actions: actions.clone(),
            prologue_disarm: prologue_disarm.clone(),
            init_mie: init_mie.clone(),
            init_mstatus_mie: init_mstatus_mie.clone(),
        };
        let total = shape.total_units();
        let kept: Vec<usize> = match kept {
            Some(k) => {
                let mut k: Vec<usize> = k.iter().copied().filter(|&i| i < total).collect();
                k.sort_unstable();
                k.dedup();
                k
            }
            None => (0..total).collect(),
        };

        let mut a = Asm::new(false);
        let handler = a.label();
        let vtable = a.label();
        let starts: Vec<Label> = (0..harts).map(|_| a.label()).collect();

        // --- dispatch on mhartid -------------------------------------------
        a.csrr(10, CSR_MHARTID);
        for (h, &l) in starts.iter().enumerate() {
            let next = a.label();
            a.addi(11, 0, h as i64);
            a.bne(10, 11, next);
            a.j(l);
            a.bind(next);
        }
        a.csrw(CSR_MIE, 0);
        let stray = a.here();
        a.emit(WFI);
        a.j(stray);

        let pr = Print::new(&mut a);
        let mut first_unit = 0;
        for h in 0..harts {
            let hb = hart_base(h);
            a.bind(starts[h]);
            // --- prologue of hart h ---------------------------------------
            if vectored {
                a.la_label(X30, vtable);
                a.addi(X30, X30, 1);
            } else {
                a.la_label(X30, handler);
            }
            a.csrw(CSR_MTVEC, X30);
            a.la(X31, hb + H_SAVE);
            a.csrw(CSR_MSCRATCH, X31);
            a.lui(CL, (CLINT >> 12) as u32);
            a.lui(UA, (UART >> 12) as u32);
            a.la(LP, hb + H_BLOG);
            a.addi(STEP, 0, 0);
            a.la(X30, RO_INIT + 256 * h as u64);
            for r in 1..=19u8 {
                a.ld(r, 8 * r as i64, X30);
            }
            a.addi(TV, 0, 0);
            if prologue_disarm[h] {
                a.addi(TB, 0, -1);
                emit_cmp_write_h(&mut a, CmpWrite::Full, TB, TA, TV, h);
                a.note("prologue: disarm own timer");
            }
            if init_mie[h] != 0 {
                a.addi(TA, 0, init_mie[h] as i64);
                a.csrw(CSR_MIE, TA);
            }
            if init_mstatus_mie[h] {
                a.csr(6, 0, CSR_MSTATUS, 8);
            }
            let gap = a.label();
            a.j(gap);
            for _ in 0..gaps[h] {
                a.emit(NOP);
            }
            a.bind(gap);

            // --- body of hart h --------------------------------------------
            let mut g = Gen {
                rng: SplitMix64::new(0),
                hart: h,
                harts,
                log_entries: 0,
            };
            for &i in kept
                .iter()
                .filter(|&&i| i >= first_unit && i < first_unit + units[h])
            {
                g.rng = SplitMix64::new(unit_seed(seed, i));
                a.unit = Some(i);
                let start = a.next_index();
                g.unit(&mut a);
                a.insns[start].note = if a.insns[start].note.is_empty() {
                    format!("--- unit {i} (hart {h})")
                } else {
                    format!("--- unit {i} (hart {h}); {}", a.insns[start].note)
                };
            }
            a.unit = None;
            first_unit += units[h];
            assert!(g.log_entries <= BLOG_MAX);

            // --- arrival at the barrier ------------------------------------
            a.csr(7, 0, CSR_MSTATUS, 8);
            a.note(&format!("hart {h}: end of body, interrupts off"));
            a.csrw(CSR_MIE, 0);
            a.la(X30, hb + H_REGS);
            for r in 1..=27u8 {
                a.sd(r, 8 * (r as i64 - 1), X30);
            }
            a.csr(2, X28, CSR_TIME, 0);
            a.sd(X28, 8 * 27, X30);
            a.lui(X29, (MTIMECMP >> 12) as u32);
            a.ld(X28, 8 * h as i64, X29);
            a.sd(X28, 8 * 28, X30);
            a.csrr(X28, CSR_MIP);
            a.sd(X28, 8 * 29, X30);
            a.la(X29, SYNC);
            a.addi(X28, 0, 1);
            a.emit(amo(0, X28, X29, X28, 3)); // amoadd.d x28, x28, (x29)
            a.note("arrival number");
            a.sd(X28, 8 * 30, X30);
            if h != 0 {
                a.lui(X29, (CLINT >> 12) as u32);
                a.addi(X28, 0, 1);
                a.sw(X28, 0, X29);
                a.note("msip[0] = 1: wake hart 0");
                let park = a.here();
                a.emit(WFI);
                a.j(park);
                continue;
            }
            // hart 0 waits for the others: mie = MSIE, MIE off
            a.addi(X28, 0, 8);
            a.csrw(CSR_MIE, X28);
            a.li32(LC, BARRIER_PASSES as i32);
            let bar = a.here();
            let done = a.label();
            a.lui(X29, (CLINT >> 12) as u32);
            a.sw(0, 0, X29);
            a.la(X28, SYNC);
            a.ld(X28, 0, X28);
            a.addi(X30, 0, harts as i64);
            a.beq(X28, X30, done);
            a.addi(LC, LC, -1);
            a.beq(LC, 0, done);
            a.emit(WFI);
            a.j(bar);
            a.bind(done);
            a.csrw(CSR_MIE, 0);
            a.note("barrier passed");

            // --- hart 0 prints everything ----------------------------------
            use reg::*;
            for hh in 0..harts {
                let b = hart_base(hh);
                a.la(A0, RO_STR + 128);
                a.jal(RA, pr.puts);
                a.addi(A0, 0, hh as i64);
                a.addi(A1, 0, 1);
                a.jal(RA, pr.puthex);
                a.addi(A0, 0, '\n' as i64);
                a.jal(RA, pr.putc);
                a.la(S1, b + H_REGS);
                a.la(S2, RO_NAMES);
                a.addi(S3, 0, VALUE_LINES as i64);
                let vloop = a.here();
                a.addi(A0, S2, 0);
                a.jal(RA, pr.puts);
                a.ld(A0, 0, S1);
                a.addi(A1, 0, 16);
                a.jal(RA, pr.puthex);
                a.addi(A0, 0, '\n' as i64);
                a.jal(RA, pr.putc);
                a.addi(S1, S1, 8);
                a.addi(S2, S2, 16);
                a.addi(S3, S3, -1);
                a.bne(S3, 0, vloop);
                // body log: (saved x26 - BLOG) / 8 entries
                a.la(A0, RO_STR);
                a.jal(RA, pr.puts);
                a.la(S1, b + H_REGS);
                a.ld(S4, 8 * (LP as i64 - 1), S1);
                a.la(S1, b + H_BLOG);
                a.sub(S4, S4, S1);
                a.srli(S4, S4, 3);
                a.addi(A0, S4, 0);
                a.addi(A1, 0, 4);
                a.jal(RA, pr.puthex);
                a.addi(A0, 0, '\n' as i64);
                a.jal(RA, pr.putc);
                let bloop = a.here();
                let bdone = a.label();
                a.beq(S4, 0, bdone);
                a.ld(A0, 0, S1);
                a.addi(A1, 0, 16);
                a.jal(RA, pr.puthex);
                a.addi(A0, 0, '\n' as i64);
                a.jal(RA, pr.putc);
                a.addi(S1, S1, 8);
                a.addi(S4, S4, -1);
                a.j(bloop);
                a.bind(bdone);
                // trap log
                a.la(A0, RO_STR + 32);
                a.jal(RA, pr.puts);
                a.la(S1, b + H_SAVE);
                a.ld(S4, HS_LOGN, S1);
                a.ld(S5, HS_TIMERN, S1);
                a.addi(A0, S4, 0);
                a.addi(A1, 0, 4);
                a.jal(RA, pr.puthex);
                a.addi(A0, 0, '\n' as i64);
                a.jal(RA, pr.putc);
                a.la(S1, b + H_HLOG);
                let tloop = a.here();
                let tdone = a.label();
                a.beq(S4, 0, tdone);
                for k in 0..4 {
                    a.ld(A0, 8 * k, S1);
                    a.addi(A1, 0, 16);
                    a.jal(RA, pr.puthex);
                    a.addi(A0, 0, if k < 3 { ' ' } else { '\n' } as i64);
                    a.jal(RA, pr.putc);
                }
                a.addi(S1, S1, 32);
                a.addi(S4, S4, -1);
                a.j(tloop);
                a.bind(tdone);
                a.la(A0, RO_STR + 64);
                a.jal(RA, pr.puts);
                a.addi(A0, S5, 0);
                a.addi(A1, 0, 4);
                a.jal(RA, pr.puthex);
                a.addi(A0, 0, '\n' as i64);
                a.jal(RA, pr.putc);
            }
            // the machine: barrier passes left, UART scratch, mtime, shared hash
            let line = |a: &mut Asm, s: u64, digits: i64| {
                a.addi(S6, A0, 0);
                a.la(A0, RO_STR + s);
                a.jal(RA, pr.puts);
                a.addi(A0, S6, 0);
                a.addi(A1, 0, digits);
                a.jal(RA, pr.puthex);
                a.addi(A0, 0, '\n' as i64);
                a.jal(RA, pr.putc);
            };
            a.addi(A0, LC, 0);
            line(&mut a, 160, 4);
            a.li32(T0, UART as i32);
            a.lbu(A0, 7, T0);
            line(&mut a, 192, 2);
            a.lui(T0, ((MTIME + 8) >> 12) as u32);
            a.ld(A0, -8, T0);
            line(&mut a, 224, 16);
            // hash = rotl(hash, 7) ^ word over the shared area
            a.la(S1, SHARED);
            a.li32(S3, 512);
            a.addi(A0, 0, 0);
            let hl = a.here();
            a.slli(T0, A0, 7);
            a.srli(A0, A0, 57);
            a.or(A0, A0, T0);
            a.ld(T0, 0, S1);
            a.emit(r_type(0, T0, A0, 4, A0, OP_OP)); // xor
            a.addi(S1, S1, 8);
            a.addi(S3, S3, -1);
            a.bne(S3, 0, hl);
            line(&mut a, 256, 16);
            a.la(A0, RO_STR + 96);
            a.jal(RA, pr.puts);
            Print::finish_pass(&mut a);
        }
        pr.emit(&mut a);

        // --- trap handler (all harts; per-hart data through mscratch) --------
        let common = a.label();
        let nolog = a.label();
        let intr = a.label();
        let msi = a.label();
        let disarm = a.label();
        let out = a.label();
        let fail = a.label();
        a.align(64);
        a.bind(vtable);
        if vectored {
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
        }
        a.bind(handler);
        a.csr(1, X31, CSR_MSCRATCH, X31); // swap x31 <-> mscratch
        a.sd(X28, HS_X28, X31);
        a.addi(X28, 0, 0xff);
        a.bind(common);
        a.sd(X29, HS_X29, X31);
        a.sd(X30, HS_X30, X31);
        a.sd(X28, HS_SLOT, X31);
        a.ld(X29, HS_LOGN, X31);
        a.addi(X28, 0, HLOG_MAX as i64);
        a.bgeu(X29, X28, nolog);
        a.addi(X28, X29, 1);
        a.sd(X28, HS_LOGN, X31);
        a.slli(X29, X29, 5);
        a.ld(X28, HS_HLOG, X31);
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
        // exceptions: 2 illegal, 3 breakpoint, 4/6 misaligned, 5/7 access fault, 11 ecall
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
        a.ld(X28, HS_NACT, X31);
        a.bgeu(X29, X28, disarm);
        a.slli(X29, X29, 3);
        a.ld(X28, HS_ACT, X31);
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
        a.ld(X28, HS_CMP, X31);
        emit_cmp_write_at(&mut a, hw, X29, X28, 0, X30);
        a.note("handler: re-arm own timer");
        a.j(out);
        a.bind(disarm);
        a.addi(X29, 0, -1);
        a.ld(X28, HS_CMP, X31);
        a.sd(X29, 0, X28);
        a.note("handler: disarm own timer");
        a.j(out);
        a.bind(msi);
        a.ld(X28, HS_MSIP, X31);
        a.sw(0, 0, X28);
        a.note("handler: own msip = 0");
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

        // --- image ------------------------------------------------------------
        let mut image = vec![0u8; (END - BASE) as usize];
        a.write_code(&mut image);
        let put = |image: &mut Vec<u8>, addr: u64, bytes: &[u8]| {
            let o = (addr - BASE) as usize;
            image[o..o + bytes.len()].copy_from_slice(bytes);
        };
        for h in 0..harts {
            let hb = hart_base(h);
            let act = RO_ACT + (8 * MAX_ACTIONS * h) as u64;
            for (i, v) in actions[h].iter().enumerate() {
                put(&mut image, act + 8 * i as u64, &v.to_le_bytes());
            }
            for (i, v) in init[h].iter().enumerate() {
                put(
                    &mut image,
                    RO_INIT + 256 * h as u64 + 8 * i as u64,
                    &v.to_le_bytes(),
                );
            }
            for (off, v) in [
                (HS_HLOG, hb + H_HLOG),
                (HS_ACT, act),
                (HS_NACT, actions[h].len() as u64),
                (HS_CMP, MTIMECMP + 8 * h as u64),
                (HS_MSIP, CLINT + 4 * h as u64),
            ] {
                put(&mut image, hb + H_SAVE + off as u64, &v.to_le_bytes());
            }
            let mut fill = SplitMix64::new(seed ^ 0x7072_6976_0000_0000 ^ h as u64);
            for k in (0..0x1000).step_by(8) {
                put(&mut image, hb + H_PRIV + k, &fill.next_u64().to_le_bytes());
            }
        }
        for i in 0..VALUE_LINES {
            let name = match i {
                0..=26 => format!("x{} ", i + 1),
                27 => "time ".into(),
                28 => "mtimecmp ".into(),
                29 => "mip ".into(),
                _ => "arrival ".into(),
            };
            put(&mut image, RO_NAMES + 16 * i as u64, name.as_bytes());
        }
        for (off, s) in [
            (0u64, &b"body \0"[..]),
            (32, b"traps \0"),
            (64, b"timer irqs \0"),
            (96, b"\nend\n\0"),
            (128, b"hart \0"),
            (160, b"barrier passes left \0"),
            (192, b"uart scratch \0"),
            (224, b"mtime \0"),
            (256, b"shared hash \0"),
        ] {
            put(&mut image, RO_STR + off, s);
        }
        let mut fill = SplitMix64::new(seed ^ 0x7368_6172_6564_2121);
        for k in (0..0x1000).step_by(8) {
            put(&mut image, SHARED + k, &fill.next_u64().to_le_bytes());
        }

        Program {
            seed,
            shape,
            kept,
            image,
            words: a.insns,
        }
    }

    /// The program as an ELF64 RISC-V executable.
    pub fn elf(&self) -> Vec<u8> {
        elf64_exec(BASE, BASE, &self.image)
    }

    /// A listing of the code: address, word, disassembly, unit and notes.
    pub fn listing(&self) -> String {
        let mut s = format!(
            "# seed {:#018x}, {} harts, units {:?} of {}\n# {:?}\n",
            self.seed,
            self.shape.harts,
            self.kept.len(),
            self.shape.total_units(),
            self.shape
        );
        for w in &self.words {
            let _ = writeln!(s, "{:<52} {}", w.text(), w.note);
        }
        s
    }

    /// The instructions of unit `u` (generation index), one per line.
    pub fn unit_text(&self, u: usize) -> String {
        let mut s = String::new();
        for w in self.words.iter().filter(|w| w.unit == Some(u)) {
            let _ = writeln!(s, "  {:<52} {}", w.text(), w.note);
        }
        s
    }

    /// All kept units, hart by hart, one instruction per line.
    pub fn body_text(&self) -> String {
        self.kept.iter().map(|&u| self.unit_text(u)).collect()
    }

    /// The instruction at `pc`, if one starts there.
    pub fn word_at(&self, pc: u64) -> Option<&Insn> {
        Asm::insn_at(&self.words, pc)
    }

    /// Explain the first differing output line (reference first): which
    /// hart's section it is in and, for a trap log line, the instruction.
    pub fn explain(&self, reference: &str, other: &str) -> String {
        let rl: Vec<&str> = reference.lines().collect();
        let ol: Vec<&str> = other.lines().collect();
        let Some(idx) = (0..rl.len().max(ol.len())).find(|&i| rl.get(i) != ol.get(i)) else {
            return "outputs are line-identical (difference in trailing bytes)\n".into();
        };
        let r = rl.get(idx).copied().unwrap_or("<missing>");
        let o = ol.get(idx).copied().unwrap_or("<missing>");
        let section = rl[..idx.min(rl.len())]
            .iter()
            .rev()
            .find(|l| l.starts_with("hart ") || l.starts_with("body ") || l.starts_with("traps "))
            .copied()
            .unwrap_or("start");
        let hart = rl[..idx.min(rl.len())]
            .iter()
            .rev()
            .find(|l| l.starts_with("hart "))
            .copied()
            .unwrap_or("-");
        let mut s = format!(
            "first differing line {} ({hart}, in section {section:?}):\n  qemu:    {r}\n  vcpulab: {o}\n",
            idx + 1
        );
        for (who, line) in [("qemu", r), ("vcpulab", o)] {
            let t: Vec<&str> = line.split_whitespace().collect();
            if t.len() == 4 {
                if let Ok(off) = u64::from_str_radix(t[1], 16) {
                    if let Some(w) = self.word_at(BASE + off) {
                        let _ = writeln!(
                            s,
                            "  {who}: trap with mepc {:#x}: {} (unit {:?}) {}",
                            w.addr,
                            disasm(w.word, w.addr),
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

/// Self-checks of the generator: deterministic, and a subset of the units
/// (of every hart) gives the same code for each kept unit.
pub fn self_test() {
    for seed in [0u64, 1, 0xdead_beef, u64::MAX, 0x1234_5678_9abc_def0] {
        let a = Program::generate(seed, None);
        let b = Program::generate(seed, None);
        assert_eq!(a.image, b.image, "seed {seed:#x}: not deterministic");
        assert!((2..=MAX_HARTS).contains(&a.shape.harts));
        assert_eq!(a.shape.harts, harts_of(seed, GenOptions::default()));
        let total = a.shape.total_units();
        assert_eq!(a.kept.len(), total);
        let words = |p: &Program, u: usize| -> Vec<u32> {
            p.words
                .iter()
                .filter(|w| w.unit == Some(u))
                .map(|w| w.word)
                .collect()
        };
        for step in [2usize, 3, 5] {
            let kept: Vec<usize> = (0..total)
                .filter(|u| u % step == seed as usize % step)
                .collect();
            let c = Program::generate(seed, Some(&kept));
            assert_eq!(c.kept, kept);
            assert_eq!(c.shape.harts, a.shape.harts);
            for u in 0..total {
                let (wa, wc) = (words(&a, u), words(&c, u));
                if kept.contains(&u) {
                    assert!(!wa.is_empty(), "seed {seed:#x} unit {u}: no code");
                    assert_eq!(wa.len(), wc.len(), "seed {seed:#x} unit {u}");
                    // the same unit, but for the offsets of PC-relative
                    // `auipc` + `addi` pairs
                    for k in 0..wa.len() {
                        let pcrel =
                            wa[k] & 0x7f == OP_AUIPC || (k > 0 && wa[k - 1] & 0x7f == OP_AUIPC);
                        if !pcrel {
                            assert_eq!(wa[k], wc[k], "seed {seed:#x} unit {u} word {k}");
                        }
                    }
                } else {
                    assert!(
                        wc.is_empty(),
                        "seed {seed:#x} unit {u}: dropped but present"
                    );
                }
            }
            // every hart still has its barrier and the program its end
            let notes =
                |p: &Program, n: &str| p.words.iter().filter(|w| w.note.contains(n)).count();
            assert_eq!(notes(&c, "arrival number"), c.shape.harts);
            assert_eq!(notes(&c, "barrier passed"), 1);
        }
        let none = Program::generate(seed, Some(&[]));
        assert!(none.kept.is_empty());
        assert!(none.words.iter().all(|w| w.unit.is_none()));
    }
    let o = GenOptions { harts: Some(4) };
    assert_eq!(Program::generate_with(7, None, o).shape.harts, 4);
}
