//! One hart's private state and its interpreter.
//!
//! QEMU analogue: `CPURISCVState` (`target/riscv/cpu.h`), the TB execution
//! loop of `accel/tcg/cpu-exec.c` (`cpu_exec`, `cpu_tb_exec`,
//! `cpu_handle_interrupt`), trap entry (`riscv_cpu_do_interrupt`) and the
//! helpers of `op_helper.c` and `csr.c`.
//!
//! The hot path is [`Hart::execute`]: look up the TB for `pc` (through the
//! last TB's chain slots, else the direct-mapped cache), run its pre-decoded
//! instructions in a `match` loop over registers held in a plain array, repeat.
//! It allocates nothing, takes no lock and makes no dynamic call unless the
//! guest touches a device. It returns to the vCPU loop only for a reason the
//! loop must handle: an exit request (kick), the instruction budget used up, a
//! halt (`wfi`), or an I/O instruction after which interrupts must be checked.
//!
//! Instruction counting follows QEMU's icount rules exactly: a TB's
//! instructions count when they complete; an instruction that faults on a
//! memory access or CSR check does not count; `ecall`, `ebreak` and illegal
//! encodings (which QEMU raises at translation time) do count. A compressed
//! instruction counts as one, like any other.
//!
//! Every pc comes from the pre-decoded instruction: its own pc is `tb.pc +
//! off`, the next one (and a link register's value) `pc + len`, so a TB may
//! mix 2- and 4-byte instructions (C extension, IALIGN = 16). Without C
//! (`--cpu rv64,c=off`) fetches must be 4-aligned, compressed halfwords are
//! illegal, and jumps to targets with bit 1 set trap.

use super::bitmanip;
use super::cause;
use super::csr::*;
use super::insn::{AmoOp, CsrOp, Insn, Op};
use super::tb::TbCache;
use crate::accel::cpu::{CpuShared, MIP_MEIP, MIP_MSIP, MIP_MTIP};
use crate::config::Compat;
use crate::hw::machine::Machine;
use crate::hw::memory::RAM_BASE;

/// Why [`Hart::execute`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// `exit_request` was set (a kick): the loop must look at what changed.
    Kicked,
    /// The instruction budget was used up exactly.
    Budget,
    /// The hart executed `wfi` and has no pending enabled interrupt.
    Halt,
    /// The hart executed `wfi` with an enabled interrupt pending, so it goes
    /// on at once. QEMU halts it anyway and wakes it when its vCPU next
    /// runs, which ends a round-robin turn.
    WfiAwake,
    /// An I/O access or a CSR write happened: deadlines and interrupts may
    /// have changed, so the loop re-checks them before going on.
    Io,
}

/// Private architectural state of one hart.
pub struct CpuState {
    /// Integer registers; index 32 is the sink for writes to x0. The array
    /// has 256 entries so that indexing with a `u8` register number needs no
    /// bounds check on the hot path (only 0..=32 are ever used).
    pub x: [u64; 256],
    /// Program counter.
    pub pc: u64,
    /// `mstatus` (only MIE and MPIE are stored; MPP reads as 3).
    pub mstatus: u64,
    /// `mie`.
    pub mie: u64,
    /// `mtvec`.
    pub mtvec: u64,
    /// `mscratch`.
    pub mscratch: u64,
    /// `mepc`.
    pub mepc: u64,
    /// `mcause`.
    pub mcause: u64,
    /// `mtval`.
    pub mtval: u64,
    /// `mcountinhibit`.
    pub mcountinhibit: u64,
    /// `mcounteren` (stored; with no lower privilege mode it has no effect).
    pub mcounteren: u64,
    /// The PMU counters as QEMU 7.2 keeps them (`PMUCTRState`), indexed by
    /// counter number (0 = mcycle, 2 = minstret, 3..=31 = mhpmcounterN).
    pub pmu: [PmuCounter; 32],
    /// `mhpmevent3..31` (stored, no effect).
    pub mhpmevent: [u64; 32],
    /// `pmpcfg0..15` storage (not enforced: M-mode with no locked entries).
    pub pmpcfg: [u64; 16],
    /// `pmpaddr0..63` storage.
    pub pmpaddr: [u64; 64],
    /// LR reservation address (`u64::MAX` = none).
    pub load_res: u64,
    /// Value loaded by the LR (sign-extended for `.w`).
    pub load_val: u64,
}

impl CpuState {
    fn power_on() -> CpuState {
        CpuState {
            x: [0; 256],
            pc: crate::hw::devices::rom::ROM_BASE,
            mstatus: 0,
            mie: 0,
            mtvec: 0,
            mscratch: 0,
            mepc: 0,
            mcause: 0,
            mtval: 0,
            mcountinhibit: 0,
            mcounteren: 0,
            pmu: [PmuCounter::default(); 32],
            mhpmevent: [0; 32],
            pmpcfg: [0; 16],
            pmpaddr: [0; 64],
            load_res: u64::MAX,
            load_val: 0,
        }
    }
}

/// One PMU counter (QEMU's `PMUCTRState`). mcycle and minstret read
/// `ticks - prev + val`; the hpm counters read `val`.
///
/// QEMU 7.2 (`riscv_pmu_read_ctr`): with the counter's `mcountinhibit` bit
/// set, a counter that is not started reads `val`; a started one reads the
/// running value once and is marked stopped, so later reads give `val`;
/// writing `mcountinhibit` starts every counter whose bit is clear.
///
/// QEMU 10.0: setting the bit freezes the counter (`val` takes the running
/// value) and reads give `val`; clearing it restarts counting from there
/// (`prev` = now). `started` is unused.
#[derive(Clone, Copy, Debug, Default)]
pub struct PmuCounter {
    /// The value last written.
    pub val: u64,
    /// The ticks when it was written.
    pub prev: u64,
    /// Whether a write of `mcountinhibit` has started it.
    pub started: bool,
}

/// A hart: its state, its TB cache, and the machine it runs in.
pub struct Hart<'a> {
    /// Architectural state.
    pub st: CpuState,
    /// Translation blocks.
    pub tbc: TbCache,
    /// The cross-thread part (interrupt lines, kicks).
    pub shared: &'a CpuShared,
    /// The machine (RAM, bus, clocks).
    pub m: &'a Machine,
    /// Instructions retired by this hart (QEMU icount rules).
    pub retired: u64,
    /// Instructions QEMU 7.2 counts without executing them (the tail of a
    /// TB that holds a `wfi`; see `tb::qemu_wfi_tail`): part of icount, not
    /// of `retired`.
    pub icount_bonus: u64,
    /// Part of `retired + icount_bonus` already added to the icount clock.
    published: u64,
    /// MMIO accesses made (for the run report).
    pub mmio_accesses: u64,
    /// Exceptions and interrupts taken.
    pub traps: u64,
    /// Low pc bits that must be clear in a jump target: 3 without C (IALIGN =
    /// 32); none with C, as in QEMU, which with C checks no target at all
    /// (even an odd one, reachable through `mret`, is fetched from as is).
    ialign_mask: u64,
    /// Whether to reproduce QEMU 7.2 where it differs from 10.0
    /// (`--compat qemu-7.2`): `ebreak` mtval 0 (10.0: the pc), misaligned
    /// `jal`/branch mtval = the jump's pc (10.0: the target).
    qemu72: bool,
    /// QEMU's `env->badaddr`: the mtval of the last address-carrying
    /// exception (causes 0, 1, 4, 5, 6, 7). Both QEMUs report it, stale, as
    /// the mtval of an `mret` to a misaligned mepc (without C).
    pub badaddr: u64,
    /// (mcause, pc) of the last trap taken (for diagnostics).
    pub last_trap: (u64, u64),
    /// The hash of this hart's guest-visible events (see [`TRACE_BASIS`]).
    pub trace: u64,
    /// `smp=local`: the hart's own clock; `None` in every other mode.
    pub local: Option<LocalClock<'a>>,
    /// `smp=global`: the hart adds its instructions to the one counter
    /// after every TB, and an execution stops once the counter has grown by
    /// its limit (the instructions to the next deadline when it began), so
    /// that the vCPUs together cross a deadline by at most one TB each.
    pub global_counter: bool,
}

/// Orders the device accesses of harts with clocks of their own by virtual
/// time (`smp=local,quantum=Q`): implemented by the accelerator.
pub trait DeviceOrder {
    /// Called by hart `hart` before a device access at its virtual time
    /// `now`; returns once every access that comes before it in
    /// (virtual time, hart id) order has been made.
    fn before_access(&self, hart: usize, now: i64);
}

/// A hart's own instruction clock (`smp=local`): VIRTUAL for this hart is
/// `base + ((retired + icount_bonus) << shift)`; `base` moves only when the
/// hart leaves a halt (its clock jumps to the machine's, as QEMU's warp
/// moves the one clock).
pub struct LocalClock<'a> {
    /// ns added to the instruction-derived time.
    pub base: i64,
    /// One instruction lasts `2^shift` ns.
    pub shift: u32,
    /// With a quantum: the order device accesses are made in.
    pub order: Option<&'a dyn DeviceOrder>,
}

/// The trace hash of a hart: 64-bit FNV-1a (offset basis
/// 0xcbf2_9ce4_8422_2325, prime 0x100_0000_01b3) over the little-endian
/// bytes of three words per event, in the order the hart sees them:
/// an interrupt taken `(1, instructions retired, mcause)`, a device read
/// `(2, address, value)`, a `time` CSR read (`rdtime`) `(3, 0, value)`.
/// Two runs whose harts saw the same interrupts at the same instructions and
/// read the same device and time values have the same hashes.
pub const TRACE_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const TRACE_PRIME: u64 = 0x100_0000_01b3;

/// Fold `words` into the FNV-1a hash `h`.
#[inline]
pub fn trace_fold(mut h: u64, words: &[u64]) -> u64 {
    for &w in words {
        for b in w.to_le_bytes() {
            h = (h ^ b as u64).wrapping_mul(TRACE_PRIME);
        }
    }
    h
}

/// Outcome of one instruction that left the straight-line path.
enum Step {
    /// Continue with the next instruction of the TB.
    Next,
    /// Leave the TB; `pc` is set; the instruction completed. The chain slot
    /// to remember the successor in: 1 for a taken branch, else 0.
    Jump(usize),
    /// Leave the TB and return `Exit::Io` (or flush for code changes).
    Io,
    /// Leave the TB because translated code may be stale.
    Flush,
    /// `wfi`.
    Halt,
    /// Exception: (cause, tval, counts as executed).
    Trap(u64, u64, bool),
}

impl<'a> Hart<'a> {
    /// A hart at power-on, starting at the reset ROM.
    pub fn new(shared: &'a CpuShared, m: &'a Machine) -> Hart<'a> {
        let c = m.config.cpu.c;
        let ialign_mask = if c { 0 } else { 3 };
        let qemu72 = m.config.compat == Compat::Qemu7_2;
        Hart {
            st: CpuState::power_on(),
            tbc: TbCache::for_cpu(m.config.cpu),
            shared,
            m,
            retired: 0,
            icount_bonus: 0,
            published: 0,
            mmio_accesses: 0,
            traps: 0,
            ialign_mask,
            qemu72,
            badaddr: 0,
            last_trap: (0, 0),
            trace: TRACE_BASIS,
            local: None,
            global_counter: false,
        }
    }

    /// Return to the power-on state (machine reset): registers, CSRs and the
    /// TB cache; the instruction count keeps running.
    pub fn reset(&mut self) {
        self.st = CpuState::power_on();
        self.tbc.flush();
    }

    /// Hart id.
    #[inline]
    pub fn id(&self) -> u64 {
        self.shared.index as u64
    }

    /// Publish retired instructions not yet added to the icount clock, plus
    /// `extra` in flight, so that VIRTUAL read now is exact at this
    /// instruction. A no-op without icount.
    #[inline]
    pub fn sync_icount(&mut self, extra: u64) {
        if let Some(now) = self.local_now(extra) {
            // Relaxed: a figure for the others (the minimum the timer lists
            // follow, the monitor); the quantum's ordering goes through its
            // own lock.
            self.shared
                .vclock
                .store(now, std::sync::atomic::Ordering::Relaxed);
            return;
        }
        if let Some(ic) = &self.m.icount {
            let now = self.retired + self.icount_bonus + extra;
            if now > self.published {
                ic.add_executed((now - self.published) as i64);
                self.published = now;
            }
        }
    }

    /// Under `smp=local`, this hart's virtual time with `extra` instructions
    /// in flight.
    #[inline]
    pub fn local_now(&self, extra: u64) -> Option<i64> {
        self.local.as_ref().map(|lc| {
            lc.base
                .wrapping_add(((self.retired + self.icount_bonus + extra) as i64) << lc.shift)
        })
    }

    /// Give the hart a clock of its own (`smp=local`), at the machine's
    /// VIRTUAL now; `order` orders its device accesses (with a quantum).
    pub fn set_local_clock(&mut self, shift: u32, order: Option<&'a dyn DeviceOrder>) {
        let now = self.m.icount.as_ref().map_or(0, |ic| ic.get_ns());
        let counted = ((self.retired + self.icount_bonus) as i64) << shift;
        self.local = Some(LocalClock {
            base: now - counted,
            shift,
            order,
        });
        self.sync_icount(0);
    }

    /// Leaving a halt under `smp=local`: the hart's clock jumps to the
    /// machine's VIRTUAL if that is ahead (the time the hart slept), as
    /// QEMU's idle warp moves its one clock; and is published.
    pub fn local_wake(&mut self) {
        let Some(now) = self.local_now(0) else { return };
        let machine = self.m.icount.as_ref().map_or(now, |ic| ic.get_ns());
        if machine > now {
            if let Some(lc) = self.local.as_mut() {
                lc.base += machine - now;
            }
        }
        self.sync_icount(0);
    }

    /// Run a device access (or a read of the time) `f` at this hart's
    /// virtual time: under `smp=local` the devices see the hart's own
    /// clock, and with a quantum the access waits for its turn in virtual
    /// time order first.
    #[inline]
    fn at_local_time<R>(&self, extra: u64, f: impl FnOnce() -> R) -> R {
        match &self.local {
            None => f(),
            Some(lc) => {
                let now = self.local_now(extra).expect("local clock");
                if let Some(o) = lc.order {
                    o.before_access(self.shared.index, now);
                }
                crate::time::clock::with_local_now(now, f)
            }
        }
    }

    /// Count a time value (mtime ticks) the guest read, for the
    /// cross-vCPU inversions figure (under icount only: it writes a line
    /// every hart shares).
    #[inline]
    fn time_read(&self, ticks: u64) {
        if self.m.icount.is_some() {
            self.m.time_reads.record(ticks);
        }
    }

    /// The highest-priority pending and enabled interrupt, if interrupts are
    /// enabled (MEI > MSI > MTI, as `riscv_cpu_local_irq_pending`).
    #[inline]
    pub fn pending_interrupt(&self) -> Option<u64> {
        if self.st.mstatus & MSTATUS_MIE == 0 {
            return None;
        }
        let p = self.shared.mip() & self.st.mie;
        if p == 0 {
            None
        } else if p & MIP_MEIP != 0 {
            Some(cause::IRQ_M_EXT)
        } else if p & MIP_MSIP != 0 {
            Some(cause::IRQ_M_SOFT)
        } else if p & MIP_MTIP != 0 {
            Some(cause::IRQ_M_TIMER)
        } else {
            None
        }
    }

    /// Whether `wfi` should wake: an interrupt is pending and enabled in `mie`,
    /// whatever `mstatus.MIE` says (QEMU's `cpu_has_work`).
    #[inline]
    pub fn has_work(&self) -> bool {
        self.shared.mip() & self.st.mie != 0
    }

    /// Take interrupt `irq` if one is pending and enabled; returns whether it
    /// did.
    pub fn check_interrupts(&mut self) -> bool {
        if let Some(irq) = self.pending_interrupt() {
            let pc = self.st.pc;
            self.trace = trace_fold(self.trace, &[1, self.retired, cause::INTERRUPT | irq]);
            self.trap(cause::INTERRUPT | irq, 0, pc);
            true
        } else {
            false
        }
    }

    /// mtval of a `jal` or taken branch to a misaligned target `t` (only
    /// without C): QEMU 10.0 reports the target, QEMU 7.2 the jump's own pc
    /// (its `gen_exception_inst_addr_mis` stores `cpu_pc`, not yet updated).
    #[cold]
    fn jump_tval(&self, pc: u64, t: u64) -> u64 {
        if self.qemu72 { pc } else { t }
    }

    /// Trap entry (`riscv_cpu_do_interrupt` for M-mode).
    pub fn trap(&mut self, mcause: u64, tval: u64, epc: u64) {
        self.traps += 1;
        if matches!(mcause, 0 | 1 | 4 | 5 | 6 | 7) {
            self.badaddr = tval;
        }
        self.last_trap = (mcause, epc);
        let st = &mut self.st;
        // QEMU clears the LR reservation on every trap entry.
        st.load_res = u64::MAX;
        st.mepc = epc;
        st.mcause = mcause;
        st.mtval = tval;
        let mie = st.mstatus & MSTATUS_MIE != 0;
        st.mstatus = if mie { MSTATUS_MPIE } else { 0 };
        let base = st.mtvec & !3;
        st.pc = if st.mtvec & 3 == 1 && mcause & cause::INTERRUPT != 0 {
            base.wrapping_add(4 * (mcause & !cause::INTERRUPT))
        } else {
            base
        };
    }

    /// Fetch the halfword at `a` (RAM or ROM), marking the RAM
    /// code line it lies in as holding code. The translator calls it once per
    /// halfword, so a 32-bit instruction that straddles two 64-byte lines (or
    /// two pages) marks both, and one whose second half is outside RAM faults
    /// at that half's address.
    fn fetch16(m: &Machine, a: u64) -> Option<u16> {
        if let Some(off) = m.ram.offset(a, 2) {
            m.ram.mark_code(off);
            return Some(m.ram.load(off, 2) as u16);
        }
        let (r, off) = m.bus.find(a)?;
        // Devices fetch aligned 32-bit words (an odd pc there faults).
        if off & 1 != 0 {
            return None;
        }
        let w = r.dev.fetch(off & !3)?;
        Some((w >> (8 * (off & 2))) as u16)
    }

    /// Run guest code until an [`Exit`], executing at most `limit`
    /// instructions. `retired` grows by the instructions executed.
    pub fn execute(&mut self, limit: u64) -> Exit {
        self.execute_soft(limit, u64::MAX)
    }

    /// [`Hart::execute`], also leaving with [`Exit::Budget`] at the first TB
    /// boundary after `soft` instructions: a limit that never splits a TB
    /// (where TBs begin decides what a `wfi`'s TB counts, so a limit that
    /// depends on the host must not move them).
    pub fn execute_soft(&mut self, limit: u64, soft: u64) -> Exit {
        let soft_stop = self.retired.saturating_add(soft);
        let mut left = limit;
        // `smp=global`: where the one counter stops this execution.
        let target = if self.global_counter {
            self.sync_icount(0);
            let raw = self.m.icount.as_ref().map_or(0, |ic| ic.get_raw());
            Some(raw.saturating_add(limit.min(i64::MAX as u64) as i64))
        } else {
            None
        };
        let mut prev: Option<(u32, usize)> = None;
        // Local handles: one pointer chase per TB fewer on the hot path.
        let exit_flag = self.shared.exit_flag();
        let machine = self.m;
        let ram = &machine.ram;
        loop {
            // Relaxed: a hint, as `CpuShared::exit_requested`.
            if exit_flag.load(std::sync::atomic::Ordering::Relaxed) {
                return Exit::Kicked;
            }
            if left == 0 || self.retired >= soft_stop {
                return Exit::Budget;
            }
            let cg = ram.code_gen();
            if cg != self.tbc.code_gen {
                self.tbc.flush();
                self.tbc.code_gen = cg;
                prev = None;
            }
            let pc = self.st.pc;
            // Chained successor of the previous TB, else a cache lookup.
            let mut found = None;
            if let Some((p, slot)) = prev {
                let (cpc, cidx) = self.tbc.tb(p).chain[slot].get();
                if cpc == pc && cidx != 0 {
                    found = Some(cidx - 1);
                }
            }
            let idx = match found {
                Some(i) => i,
                None => {
                    let m = self.m;
                    let r = self.tbc.lookup(pc, &mut |a| Hart::fetch16(m, a));
                    match r {
                        Ok(i) => {
                            if let Some((p, slot)) = prev {
                                self.tbc.tb(p).chain[slot].set((pc, i + 1));
                            }
                            i
                        }
                        Err(f) => {
                            let c = if pc & self.ialign_mask != 0 {
                                cause::INSN_MISALIGNED
                            } else {
                                cause::INSN_ACCESS
                            };
                            self.trap(c, f.addr, pc);
                            prev = None;
                            continue;
                        }
                    }
                }
            };
            // `smp=global`: one pass of a TB that loops on itself, so that
            // the counter grows TB by TB.
            let pass = match target {
                Some(_) => left.min(self.tbc.tb(idx).len as u64),
                None => left,
            };
            let (done, step) = self.run_tb(idx, pass);
            self.retired += done;
            left -= done;
            if let Some(target) = target {
                self.sync_icount(0);
                let raw = self.m.icount.as_ref().map_or(0, |ic| ic.get_raw());
                left = left.min(target.saturating_sub(raw).max(0) as u64);
            }
            match step {
                Step::Next => prev = Some((idx, 0)),
                // Chain slot 1 for a taken branch, 0 for everything else.
                Step::Jump(slot) => prev = Some((idx, slot)),
                Step::Io => return Exit::Io,
                Step::Flush => {
                    let cg = self.m.ram.code_gen();
                    self.tbc.flush();
                    self.tbc.code_gen = cg;
                    return Exit::Io;
                }
                Step::Halt => {
                    if self.has_work() {
                        return Exit::WfiAwake;
                    }
                    return Exit::Halt;
                }
                Step::Trap(c, tval, counts) => {
                    if counts {
                        self.retired += 1;
                    }
                    let epc = self.st.pc;
                    self.trap(c, tval, epc);
                    return Exit::Io;
                }
            }
        }
    }

    /// Execute up to `limit` instructions of TB `idx`. Returns how many
    /// completed and how the TB was left. On return `st.pc` is the next pc (or
    /// the faulting instruction's pc for `Step::Trap`).
    #[inline(always)]
    fn run_tb(&mut self, idx: u32, limit: u64) -> (u64, Step) {
        let tb = self.tbc.tb(idx);
        let base = tb.pc;
        let n = (tb.len as u64).min(limit) as usize;
        let insns: &[Insn] = self.tbc.tb_insns(tb);
        // SAFETY-free split borrow: the instruction slice lives in `tbc`, the
        // state we mutate in `st`.
        let insns = &insns[..n];
        let st = &mut self.st;
        let m = self.m;
        let tb_len = tb.len as usize;
        let code_gen = self.tbc.code_gen;
        // Jump targets must be 4-aligned without C (IALIGN = 32); with C QEMU
        // checks nothing.
        let tmask = self.ialign_mask;
        // Instructions done by earlier passes of a TB that loops on itself.
        let mut base_done: u64 = 0;
        'tb: loop {
            for (i, d) in insns.iter().enumerate() {
                let x = &mut st.x;
                let rs1 = x[d.rs1 as usize];
                let rs2 = x[d.rs2 as usize];
                let rd = d.rd as usize;
                match d.op {
                    Op::Addi => x[rd] = rs1.wrapping_add(d.imm as u64),
                    Op::Add => x[rd] = rs1.wrapping_add(rs2),
                    Op::Sub => x[rd] = rs1.wrapping_sub(rs2),
                    Op::Lui => x[rd] = d.imm as u64,
                    Op::Auipc => x[rd] = (base + d.off as u64).wrapping_add(d.imm as u64),
                    Op::Slti => x[rd] = ((rs1 as i64) < d.imm) as u64,
                    Op::Sltiu => x[rd] = (rs1 < d.imm as u64) as u64,
                    Op::Xori => x[rd] = rs1 ^ d.imm as u64,
                    Op::Ori => x[rd] = rs1 | d.imm as u64,
                    Op::Andi => x[rd] = rs1 & d.imm as u64,
                    Op::Slli => x[rd] = rs1 << d.imm,
                    Op::Srli => x[rd] = rs1 >> d.imm,
                    Op::Srai => x[rd] = ((rs1 as i64) >> d.imm) as u64,
                    Op::Sll => x[rd] = rs1 << (rs2 & 63),
                    Op::Slt => x[rd] = ((rs1 as i64) < (rs2 as i64)) as u64,
                    Op::Sltu => x[rd] = (rs1 < rs2) as u64,
                    Op::Xor => x[rd] = rs1 ^ rs2,
                    Op::Srl => x[rd] = rs1 >> (rs2 & 63),
                    Op::Sra => x[rd] = ((rs1 as i64) >> (rs2 & 63)) as u64,
                    Op::Or => x[rd] = rs1 | rs2,
                    Op::And => x[rd] = rs1 & rs2,
                    Op::Addiw => x[rd] = (rs1 as i32).wrapping_add(d.imm as i32) as i64 as u64,
                    Op::Slliw => x[rd] = ((rs1 as u32) << d.imm) as i32 as i64 as u64,
                    Op::Srliw => x[rd] = ((rs1 as u32) >> d.imm) as i32 as i64 as u64,
                    Op::Sraiw => x[rd] = ((rs1 as i32) >> d.imm) as i64 as u64,
                    Op::Addw => x[rd] = (rs1 as i32).wrapping_add(rs2 as i32) as i64 as u64,
                    Op::Subw => x[rd] = (rs1 as i32).wrapping_sub(rs2 as i32) as i64 as u64,
                    Op::Sllw => x[rd] = ((rs1 as u32) << (rs2 & 31)) as i32 as i64 as u64,
                    Op::Srlw => x[rd] = ((rs1 as u32) >> (rs2 & 31)) as i32 as i64 as u64,
                    Op::Sraw => x[rd] = ((rs1 as i32) >> (rs2 & 31)) as i64 as u64,
                    Op::Mul => x[rd] = rs1.wrapping_mul(rs2),
                    Op::Mulh => x[rd] = ((rs1 as i64 as i128 * rs2 as i64 as i128) >> 64) as u64,
                    Op::Mulhsu => {
                        x[rd] =
                            ((rs1 as i64 as i128).wrapping_mul(rs2 as u128 as i128) >> 64) as u64
                    }
                    Op::Mulhu => x[rd] = ((rs1 as u128 * rs2 as u128) >> 64) as u64,
                    Op::Div => {
                        x[rd] = if rs2 == 0 {
                            u64::MAX
                        } else {
                            (rs1 as i64).wrapping_div(rs2 as i64) as u64
                        }
                    }
                    Op::Divu => x[rd] = rs1.checked_div(rs2).unwrap_or(u64::MAX),
                    Op::Rem => {
                        x[rd] = if rs2 == 0 {
                            rs1
                        } else {
                            (rs1 as i64).wrapping_rem(rs2 as i64) as u64
                        }
                    }
                    Op::Remu => x[rd] = if rs2 == 0 { rs1 } else { rs1 % rs2 },
                    Op::Mulw => x[rd] = (rs1 as i32).wrapping_mul(rs2 as i32) as i64 as u64,
                    Op::Divw => {
                        let (a, b) = (rs1 as i32, rs2 as i32);
                        x[rd] = if b == 0 {
                            u64::MAX
                        } else {
                            a.wrapping_div(b) as i64 as u64
                        }
                    }
                    Op::Divuw => {
                        let (a, b) = (rs1 as u32, rs2 as u32);
                        x[rd] = a
                            .checked_div(b)
                            .map_or(u64::MAX, |q| q as i32 as i64 as u64)
                    }
                    Op::Remw => {
                        let (a, b) = (rs1 as i32, rs2 as i32);
                        x[rd] = if b == 0 {
                            a as i64 as u64
                        } else {
                            a.wrapping_rem(b) as i64 as u64
                        }
                    }
                    Op::Remuw => {
                        let (a, b) = (rs1 as u32, rs2 as u32);
                        x[rd] = if b == 0 {
                            a as i32 as i64 as u64
                        } else {
                            (a % b) as i32 as i64 as u64
                        }
                    }
                    Op::Beq | Op::Bne | Op::Blt | Op::Bge | Op::Bltu | Op::Bgeu => {
                        let taken = match d.op {
                            Op::Beq => rs1 == rs2,
                            Op::Bne => rs1 != rs2,
                            Op::Blt => (rs1 as i64) < (rs2 as i64),
                            Op::Bge => (rs1 as i64) >= (rs2 as i64),
                            Op::Bltu => rs1 < rs2,
                            _ => rs1 >= rs2,
                        };
                        let pc = base + d.off as u64;
                        if taken {
                            let t = pc.wrapping_add(d.imm as u64);
                            if t & tmask != 0 {
                                st.pc = pc;
                                return (
                                    base_done + i as u64,
                                    Step::Trap(
                                        cause::INSN_MISALIGNED,
                                        self.jump_tval(pc, t),
                                        false,
                                    ),
                                );
                            }
                            // A TB that branches back to its own start: run it
                            // again right here while the budget allows a whole
                            // pass, nobody asked this vCPU to exit and no code
                            // was modified — the TB-boundary checks of
                            // `execute`, without its lookup and chaining.
                            if t == base
                                && n == tb_len
                                && limit - base_done - n as u64 >= n as u64
                                && !self.shared.exit_requested()
                                && m.ram.code_gen() == code_gen
                            {
                                base_done += n as u64;
                                continue 'tb;
                            }
                            st.pc = t;
                            return (base_done + i as u64 + 1, Step::Jump(1));
                        }
                        st.pc = pc + d.len as u64;
                        return (base_done + i as u64 + 1, Step::Jump(0));
                    }
                    Op::Jal => {
                        let pc = base + d.off as u64;
                        let t = pc.wrapping_add(d.imm as u64);
                        if t & tmask != 0 {
                            st.pc = pc;
                            return (
                                base_done + i as u64,
                                Step::Trap(cause::INSN_MISALIGNED, self.jump_tval(pc, t), false),
                            );
                        }
                        x[rd] = pc + d.len as u64;
                        st.pc = t;
                        return (base_done + i as u64 + 1, Step::Jump(0));
                    }
                    Op::Jalr => {
                        let pc = base + d.off as u64;
                        let t = rs1.wrapping_add(d.imm as u64) & !1;
                        if t & tmask != 0 {
                            st.pc = pc;
                            return (
                                base_done + i as u64,
                                Step::Trap(cause::INSN_MISALIGNED, t, false),
                            );
                        }
                        x[rd] = pc + d.len as u64;
                        st.pc = t;
                        return (base_done + i as u64 + 1, Step::Jump(0));
                    }
                    Op::Lb | Op::Lh | Op::Lw | Op::Ld | Op::Lbu | Op::Lhu | Op::Lwu => {
                        let addr = rs1.wrapping_add(d.imm as u64);
                        let len = match d.op {
                            Op::Lb | Op::Lbu => 1,
                            Op::Lh | Op::Lhu => 2,
                            Op::Lw | Op::Lwu => 4,
                            _ => 8,
                        };
                        let raw = match m.ram.offset(addr, len) {
                            Some(off) => m.ram.load(off, len),
                            None => {
                                let d = *d; // a copy: `self` is borrowed mutably below
                                let pc = base + d.off as u64;
                                st.pc = pc;
                                self.retired += base_done + i as u64;
                                self.mmio_accesses += 1;
                                let extra = 1;
                                let r = self.mmio_load(addr, len, extra);
                                self.retired -= base_done + i as u64;
                                let st = &mut self.st;
                                match r {
                                    Ok(v) => {
                                        st.x[rd] = extend(d.op, v);
                                        st.pc = pc + d.len as u64;
                                        return (base_done + i as u64 + 1, Step::Io);
                                    }
                                    Err(()) => {
                                        return (
                                            base_done + i as u64,
                                            Step::Trap(cause::LOAD_ACCESS, addr, false),
                                        );
                                    }
                                }
                            }
                        };
                        x[rd] = extend(d.op, raw);
                    }
                    Op::Sb | Op::Sh | Op::Sw | Op::Sd => {
                        let addr = rs1.wrapping_add(d.imm as u64);
                        let len = match d.op {
                            Op::Sb => 1,
                            Op::Sh => 2,
                            Op::Sw => 4,
                            _ => 8,
                        };
                        match m.ram.offset(addr, len) {
                            Some(off) => {
                                if m.ram.store(off, len, rs2) {
                                    st.pc = base + d.off as u64 + d.len as u64;
                                    return (base_done + i as u64 + 1, Step::Flush);
                                }
                            }
                            None => {
                                let d = *d; // a copy: `self` is borrowed mutably below
                                let pc = base + d.off as u64;
                                st.pc = pc;
                                self.retired += base_done + i as u64;
                                self.mmio_accesses += 1;
                                let r = self.mmio_store(addr, len, rs2, 1);
                                self.retired -= base_done + i as u64;
                                match r {
                                    Ok(()) => {
                                        self.st.pc = pc + d.len as u64;
                                        return (base_done + i as u64 + 1, Step::Io);
                                    }
                                    Err(()) => {
                                        return (
                                            base_done + i as u64,
                                            Step::Trap(cause::STORE_ACCESS, addr, false),
                                        );
                                    }
                                }
                            }
                        }
                    }
                    Op::AddUw
                    | Op::Sh1add
                    | Op::Sh2add
                    | Op::Sh3add
                    | Op::Sh1addUw
                    | Op::Sh2addUw
                    | Op::Sh3addUw
                    | Op::SlliUw
                    | Op::Andn
                    | Op::Orn
                    | Op::Xnor
                    | Op::Clz
                    | Op::Clzw
                    | Op::Ctz
                    | Op::Ctzw
                    | Op::Cpop
                    | Op::Cpopw
                    | Op::Max
                    | Op::Maxu
                    | Op::Min
                    | Op::Minu
                    | Op::SextB
                    | Op::SextH
                    | Op::ZextH
                    | Op::Rol
                    | Op::Rolw
                    | Op::Ror
                    | Op::Rori
                    | Op::Roriw
                    | Op::Rorw
                    | Op::OrcB
                    | Op::Rev8
                    | Op::Bclr
                    | Op::Bclri
                    | Op::Bext
                    | Op::Bexti
                    | Op::Binv
                    | Op::Binvi
                    | Op::Bset
                    | Op::Bseti => x[rd] = bitmanip::exec(d.op, rs1, rs2, d.imm, m.config.compat),
                    Op::Fence => {}
                    Op::FenceI => {
                        st.pc = base + d.off as u64 + d.len as u64;
                        return (base_done + i as u64 + 1, Step::Flush);
                    }
                    Op::Ecall | Op::Ebreak | Op::Illegal => {
                        st.pc = base + d.off as u64;
                        let c = match d.op {
                            Op::Ecall => cause::ECALL_M,
                            Op::Ebreak => cause::BREAKPOINT,
                            _ => cause::ILLEGAL_INSN,
                        };
                        // mtval: the instruction (the 32-bit word, or the halfword
                        // of a compressed one) for an illegal instruction, 0 for
                        // ecall; for ebreak (and c.ebreak) QEMU 10.0 reports the
                        // pc of the ebreak, QEMU 7.2 leaves 0.
                        let tval = match d.op {
                            Op::Illegal => d.imm as u32 as u64,
                            Op::Ebreak if !self.qemu72 => st.pc,
                            _ => 0,
                        };
                        return (base_done + i as u64, Step::Trap(c, tval, true));
                    }
                    Op::Mret => {
                        let st = &mut self.st;
                        let mpie = st.mstatus & MSTATUS_MPIE != 0;
                        st.mstatus = MSTATUS_MPIE | if mpie { MSTATUS_MIE } else { 0 };
                        // QEMU clears the LR reservation on mret too.
                        st.load_res = u64::MAX;
                        st.pc = st.mepc;
                        // QEMU's `helper_mret`: without C, a target with bit 1
                        // set traps (cause 0, mepc = the mret); with C any mepc
                        // is a target, even an odd one.
                        if st.pc & tmask != 0 {
                            // mtval: whatever QEMU's `badaddr` last held (7.2
                            // and 10.0 alike: `helper_mret` does not set it).
                            let tval = self.badaddr;
                            st.pc = base + d.off as u64;
                            return (
                                base_done + i as u64,
                                Step::Trap(cause::INSN_MISALIGNED, tval, false),
                            );
                        }
                        return (base_done + i as u64 + 1, Step::Io);
                    }
                    Op::Wfi => {
                        st.pc = base + d.off as u64 + d.len as u64;
                        // QEMU's TB around a wfi runs on past it (see
                        // `qemu_wfi_tail`), capped by the budget like any TB.
                        let tail = (d.imm as u64).min(limit - base_done - i as u64 - 1);
                        self.icount_bonus += tail;
                        return (base_done + i as u64 + 1, Step::Halt);
                    }
                    Op::Csr => {
                        let d = *d; // a copy: `self` is borrowed mutably below
                        let pc = base + d.off as u64;
                        st.pc = pc;
                        self.retired += base_done + i as u64;
                        let r = self.csr_op(d, rs1);
                        self.retired -= base_done + i as u64;
                        return match r {
                            Ok(()) => {
                                self.st.pc = pc + d.len as u64;
                                (base_done + i as u64 + 1, Step::Io)
                            }
                            Err(()) => (
                                base_done + i as u64,
                                Step::Trap(cause::ILLEGAL_INSN, csr_word(d), false),
                            ),
                        };
                    }
                    Op::Lr | Op::Sc | Op::Amo => {
                        let d = *d; // a copy: `self` is borrowed mutably below
                        let pc = base + d.off as u64;
                        st.pc = pc;
                        self.retired += base_done + i as u64;
                        let r = self.atomic(d, rs1, rs2);
                        self.retired -= base_done + i as u64;
                        return match r {
                            Ok(io) => {
                                self.st.pc = pc + d.len as u64;
                                // Keep going in a new TB; the TB is ended so that a
                                // store over code or an I/O access is handled.
                                (
                                    base_done + i as u64 + 1,
                                    if io { Step::Io } else { Step::Jump(0) },
                                )
                            }
                            // (The AMO access-fault cause per QEMU version
                            // is chosen in `atomic`.)
                            Err((c, tval)) => (base_done + i as u64, Step::Trap(c, tval, false)),
                        };
                    }
                }
            }
            let last = insns[n - 1];
            st.pc = base + last.off as u64 + last.len as u64;
            return (base_done + n as u64, Step::Next);
        }
    }

    /// Load through the bus (not RAM). `extra` instructions are in flight
    /// (for an exact VIRTUAL read under icount).
    fn mmio_load(&mut self, addr: u64, len: u64, extra: u64) -> Result<u64, ()> {
        let v = self.mmio_load_untraced(addr, len, extra)?;
        self.trace = trace_fold(self.trace, &[2, addr, v]);
        Ok(v)
    }

    fn mmio_load_untraced(&mut self, addr: u64, len: u64, extra: u64) -> Result<u64, ()> {
        self.sync_icount(extra);
        let v = self.at_local_time(extra, || self.mmio_read_now(addr, len))?;
        if addr == crate::hw::devices::clint::CLINT_BASE + 0xbff8 && len == 8 {
            self.time_read(v);
        }
        Ok(v)
    }

    fn mmio_read_now(&self, addr: u64, len: u64) -> Result<u64, ()> {
        let m = self.m;
        if addr & (len - 1) == 0 {
            return m.mmio_read(addr, len).map_err(|_| ());
        }
        // Misaligned I/O: two aligned accesses of the same size, combined
        // (QEMU's softmmu `load_helper` does the same).
        let a0 = addr & !(len - 1);
        let lo = m.mmio_read(a0, len).map_err(|_| ())?;
        let hi = m.mmio_read(a0 + len, len).map_err(|_| ())?;
        let sh = (addr - a0) * 8;
        let v = ((hi as u128) << (len * 8) | lo as u128) >> sh;
        Ok((v as u64)
            & if len == 8 {
                u64::MAX
            } else {
                (1 << (len * 8)) - 1
            })
    }

    /// Store through the bus (not RAM).
    fn mmio_store(&mut self, addr: u64, len: u64, val: u64, extra: u64) -> Result<(), ()> {
        self.sync_icount(extra);
        self.at_local_time(extra, || self.mmio_write_now(addr, len, val))
    }

    fn mmio_write_now(&self, addr: u64, len: u64, val: u64) -> Result<(), ()> {
        let m = self.m;
        if addr & (len - 1) == 0 {
            return m.mmio_write(addr, len, val).map_err(|_| ());
        }
        // Misaligned I/O: byte by byte (QEMU's `store_helper_unaligned`).
        for b in 0..len {
            m.mmio_write(addr + b, 1, val >> (8 * b)).map_err(|_| ())?;
        }
        Ok(())
    }

    /// LR, SC and AMOs. `Ok(true)` when the access went to a device.
    fn atomic(&mut self, d: Insn, rs1: u64, rs2: u64) -> Result<bool, (u64, u64)> {
        let width = (d.imm & 0xff) as u64;
        let addr = rs1;
        let sext = |v: u64| {
            if width == 4 {
                v as i32 as i64 as u64
            } else {
                v
            }
        };
        let misaligned = addr & (width - 1) != 0;
        let m = self.m;
        match d.op {
            Op::Lr => {
                if misaligned {
                    return Err((cause::LOAD_MISALIGNED, addr));
                }
                let v = match m.ram.offset(addr, width) {
                    Some(off) => m.ram.load(off, width),
                    None => self
                        .mmio_load(addr, width, 1)
                        .map_err(|_| (cause::LOAD_ACCESS, addr))?,
                };
                let v = sext(v);
                self.st.load_res = addr;
                self.st.load_val = v;
                self.st.x[d.rd as usize] = v;
                Ok(m.ram.offset(addr, width).is_none())
            }
            Op::Sc => {
                if addr != self.st.load_res {
                    self.st.x[d.rd as usize] = 1;
                    self.st.load_res = u64::MAX;
                    return Ok(false);
                }
                if misaligned {
                    return Err((self.amo_misaligned_cause(), addr));
                }
                // QEMU: a compare-and-swap at the SC's width against the
                // value the LR loaded (its low `width` bytes); rd = 0 only if
                // the old value, sign-extended at that width, equals it.
                let expected = self.st.load_val;
                let ok = match m.ram.offset(addr, width) {
                    Some(off) => m.ram.cas(off, width, expected, rs2).0,
                    None => {
                        let cur = self
                            .mmio_load(addr, width, 1)
                            .map_err(|_| (cause::LOAD_ACCESS, addr))?;
                        let mask = if width == 8 { u64::MAX } else { 0xffff_ffff };
                        if cur & mask == expected & mask {
                            self.mmio_store(addr, width, rs2, 1)
                                .map_err(|_| (cause::LOAD_ACCESS, addr))?;
                            true
                        } else {
                            false
                        }
                    }
                };
                let ok = ok && sext(expected) == expected;
                self.st.x[d.rd as usize] = (!ok) as u64;
                self.st.load_res = u64::MAX;
                Ok(true)
            }
            _ => {
                if misaligned {
                    return Err((self.amo_misaligned_cause(), addr));
                }
                let op = AmoOp::from_u8((d.imm >> 8) as u8);
                // An AMO that cannot reach memory: a load access fault on QEMU
                // 7.2, a store/AMO access fault on QEMU 10.0.
                let fault = match m.config.compat {
                    Compat::Qemu7_2 => cause::LOAD_ACCESS,
                    Compat::Qemu10_0 => cause::STORE_ACCESS,
                };
                let old = match m.ram.offset(addr, width) {
                    Some(off) => {
                        let (old, _) = m.ram.rmw(off, width, |o| op.apply(o, rs2, width));
                        old
                    }
                    None => {
                        let old = self.mmio_load(addr, width, 1).map_err(|_| (fault, addr))?;
                        self.mmio_store(addr, width, op.apply(old, rs2, width), 1)
                            .map_err(|_| (fault, addr))?;
                        old
                    }
                };
                self.st.x[d.rd as usize] = sext(old);
                Ok(true)
            }
        }
    }

    /// The cause of a misaligned AMO or SC, as QEMU reports it: when TCG
    /// translates for parallel vCPUs (`CF_PARALLEL`: `thread=multi` and more
    /// than one possible vCPU, `maxcpus` > 1, as `mttcg_start_vcpu_thread`
    /// sets it) its real atomic access probes for a store (cause 6);
    /// otherwise it emulates the AMO as a load then a store, and the load
    /// faults first (cause 4).
    fn amo_misaligned_cause(&self) -> u64 {
        let cfg = &self.m.config;
        if cfg.accel.thread == crate::config::ThreadMode::Multi && cfg.topology.maxcpus > 1 {
            cause::STORE_MISALIGNED
        } else {
            cause::LOAD_MISALIGNED
        }
    }

    /// Ticks for PMU counter `idx` (0 = mcycle, 2 = minstret): QEMU 10.0's
    /// minstret under icount counts instructions (`icount_get_raw()`); every
    /// other case is [`Hart::ticks`] (QEMU 7.2 reads the same clock for both).
    fn counter_ticks(&mut self, idx: usize) -> u64 {
        // `m` outlives `self`'s borrow: no `Arc` clone (and no write to its
        // shared count) per counter read.
        let m = self.m;
        if idx == 2 && m.config.compat == Compat::Qemu10_0 {
            if self.local.is_some() {
                // The hart's own count: its clock counts only its own.
                return self.retired + self.icount_bonus + 1;
            }
            if let Some(ic) = &m.icount {
                self.sync_icount(1);
                return ic.get_raw() as u64;
            }
        }
        self.ticks() as u64
    }

    /// Ticks for `mcycle`/`minstret`: VIRTUAL ns under icount (QEMU's
    /// `icount_get()`), else the host tick counter.
    fn ticks(&mut self) -> i64 {
        if let Some(now) = self.local_now(1) {
            return now;
        }
        if self.m.icount.is_some() {
            self.sync_icount(1);
            self.m.clocks.get_ns(crate::time::clock::ClockType::Virtual)
        } else {
            self.m.clocks.cpu_get_ticks()
        }
    }

    /// Read a CSR; `Err` when it does not exist.
    fn csr_read(&mut self, csr: u16) -> Result<u64, ()> {
        let st = &self.st;
        Ok(match csr {
            MSTATUS => st.mstatus | MSTATUS_MPP,
            MISA => misa_value(self.tbc.cpu.c),
            MIE => st.mie,
            MIP => self.shared.mip(),
            MTVEC => st.mtvec,
            MSCRATCH => st.mscratch,
            MEPC => st.mepc,
            MCAUSE => st.mcause,
            MTVAL => st.mtval,
            MCOUNTINHIBIT => st.mcountinhibit,
            MCOUNTEREN => st.mcounteren,
            MVENDORID | MCONFIGPTR => 0,
            // QEMU 7.2 reports its version (7.2.22 here), QEMU 10.0 zero.
            MARCHID | MIMPID => match self.m.config.compat {
                Compat::Qemu7_2 => QEMU_7_2_ARCHID,
                Compat::Qemu10_0 => 0,
            },
            MHARTID => self.id(),
            // QEMU's rv64 has 16 programmable counters (3..=18); 19..=31 do
            // not exist (their mhpmevent CSRs do).
            MCYCLE | CYCLE | MINSTRET | INSTRET | 0xb03..=0xb12 | 0xc03..=0xc12 => {
                let idx = (csr & 0x1f) as usize;
                let c = st.pmu[idx];
                let inhibited = st.mcountinhibit & (1 << idx) != 0;
                if !(idx == 0 || idx == 2) {
                    c.val
                } else if inhibited {
                    match self.m.config.compat {
                        Compat::Qemu7_2 if c.started => {
                            self.st.pmu[idx].started = false;
                            self.counter_ticks(idx)
                                .wrapping_sub(c.prev)
                                .wrapping_add(c.val)
                        }
                        _ => c.val,
                    }
                } else {
                    self.counter_ticks(idx)
                        .wrapping_sub(c.prev)
                        .wrapping_add(c.val)
                }
            }
            TIME => {
                self.sync_icount(1);
                let clint = &self.m.clint;
                let t = match self.local_now(1) {
                    // Not a device access: no turn to wait for.
                    Some(now) => crate::time::clock::with_local_now(now, || clint.mtime()),
                    None => clint.mtime(),
                };
                self.time_read(t);
                self.trace = trace_fold(self.trace, &[3, 0, t]);
                t
            }
            0x323..=0x33f => st.mhpmevent[(csr & 0x1f) as usize],
            0x3a0..=0x3af if csr & 1 == 0 => st.pmpcfg[(csr - 0x3a0) as usize],
            0x3b0..=0x3ef => st.pmpaddr[(csr - 0x3b0) as usize],
            _ => return Err(()),
        })
    }

    /// Write a CSR (already known to exist and be writable).
    fn csr_write(&mut self, csr: u16, v: u64) {
        match csr {
            MSTATUS => self.st.mstatus = v & (MSTATUS_MIE | MSTATUS_MPIE),
            MIE => {
                self.st.mie = v & match self.m.config.compat {
                    Compat::Qemu7_2 => MIE_WRITABLE_QEMU_7_2,
                    Compat::Qemu10_0 => MIE_WRITABLE_QEMU_10_0,
                }
            }
            MCOUNTEREN => {
                self.st.mcounteren = match self.m.config.compat {
                    Compat::Qemu7_2 => v,
                    Compat::Qemu10_0 => v & PMU_COUNTERS_QEMU_10_0,
                }
            }
            MTVEC if v & 3 < 2 => self.st.mtvec = v,
            MSCRATCH => self.st.mscratch = v,
            MEPC => self.st.mepc = v,
            MCAUSE => self.st.mcause = v,
            MTVAL => self.st.mtval = v,
            MCOUNTINHIBIT if self.m.config.compat == Compat::Qemu7_2 => {
                // QEMU 7.2 stores the value as written and starts every
                // counter whose bit is clear.
                self.st.mcountinhibit = v;
                for (i, c) in self.st.pmu.iter_mut().enumerate() {
                    if v & (1 << i) == 0 {
                        c.started = true;
                    }
                }
            }
            MCOUNTINHIBIT => {
                // QEMU 10.0: only existing counters (not TM), and mcycle and
                // minstret stop and restart for real.
                let new = v & PMU_COUNTERS_QEMU_10_0 & !(1 << 1);
                let old = self.st.mcountinhibit;
                for idx in [0, 2] {
                    let bit = 1 << idx;
                    if old & bit == new & bit {
                        continue;
                    }
                    let now = self.counter_ticks(idx);
                    let c = &mut self.st.pmu[idx];
                    if new & bit != 0 {
                        c.val = now.wrapping_sub(c.prev).wrapping_add(c.val);
                    } else {
                        c.prev = now;
                    }
                }
                self.st.mcountinhibit = new;
            }
            MCYCLE | MINSTRET | 0xb03..=0xb12 => {
                let idx = (csr & 0x1f) as usize;
                let prev = if idx == 0 || idx == 2 {
                    self.counter_ticks(idx)
                } else {
                    v
                };
                let c = &mut self.st.pmu[idx];
                c.val = v;
                c.prev = prev;
            }
            0x323..=0x33f => self.st.mhpmevent[(csr & 0x1f) as usize] = v,
            0x3a0..=0x3af => self.st.pmpcfg[(csr - 0x3a0) as usize] = v,
            0x3b0..=0x3ef => self.st.pmpaddr[(csr - 0x3b0) as usize] = v,
            // misa, mip, mhpm*: WARL with nothing writable here.
            _ => {}
        }
    }

    /// Execute a CSR instruction; `Err` raises an illegal-instruction trap.
    fn csr_op(&mut self, d: Insn, rs1v: u64) -> Result<(), ()> {
        let csr = d.imm as u16;
        let kind = match d.rs2 {
            1 => CsrOp::Rw,
            2 => CsrOp::Rs,
            3 => CsrOp::Rc,
            5 => CsrOp::Rwi,
            6 => CsrOp::Rsi,
            _ => CsrOp::Rci,
        };
        let src = match kind {
            CsrOp::Rwi | CsrOp::Rsi | CsrOp::Rci => d.rs1 as u64,
            _ => rs1v,
        };
        // QEMU's write mask: all ones for csrrw/csrrwi, else the source
        // value; nothing is written when the mask is 0.
        let writes = match kind {
            CsrOp::Rw | CsrOp::Rwi => true,
            _ => d.rs1 != 0 && src != 0,
        };
        // Whether the instruction counts as a write for the read-only check:
        // QEMU 7.2 asks the mask (`csrrs x1, time, x5` with x5 = 0 reads);
        // QEMU 10.0 asks the encoding, as the spec does (rs1 or uimm not
        // zero: the same instruction is an illegal instruction).
        let checks_write = match self.m.config.compat {
            Compat::Qemu7_2 => writes,
            Compat::Qemu10_0 => matches!(kind, CsrOp::Rw | CsrOp::Rwi) || d.rs1 != 0,
        };
        if checks_write && is_read_only(csr) {
            return Err(());
        }
        let old = self.csr_read(csr)?;
        if writes {
            let new = match kind {
                CsrOp::Rw | CsrOp::Rwi => src,
                CsrOp::Rs | CsrOp::Rsi => old | src,
                CsrOp::Rc | CsrOp::Rci => old & !src,
            };
            self.csr_write(csr, new);
        }
        self.st.x[d.rd as usize] = old;
        Ok(())
    }

    /// Read x`i` (0..=31).
    pub fn reg(&self, i: usize) -> u64 {
        self.st.x[i]
    }
}

/// Re-encode a CSR instruction (for mtval on an illegal CSR access).
fn csr_word(d: Insn) -> u64 {
    let rd = if d.rd == crate::target::riscv::insn::SINK {
        0
    } else {
        d.rd as u64
    };
    ((d.imm as u64 & 0xfff) << 20)
        | ((d.rs1 as u64) << 15)
        | ((d.rs2 as u64) << 12)
        | (rd << 7)
        | 0x73
}

/// Sign- or zero-extend a loaded value according to the load's width.
#[inline(always)]
fn extend(op: Op, v: u64) -> u64 {
    match op {
        Op::Lb => v as i8 as i64 as u64,
        Op::Lh => v as i16 as i64 as u64,
        Op::Lw => v as i32 as i64 as u64,
        _ => v,
    }
}

/// Guest address of the first byte of RAM (re-exported for the loader).
pub const DRAM_BASE: u64 = RAM_BASE;

#[cfg(test)]
mod tests {
    use super::*;

    /// A byte-wise FNV-1a 64, the textbook definition.
    fn fnv1a(bytes: &[u8]) -> u64 {
        bytes.iter().fold(TRACE_BASIS, |h, &b| {
            (h ^ b as u64).wrapping_mul(TRACE_PRIME)
        })
    }

    #[test]
    fn trace_hash_is_fnv1a_over_little_endian_words() {
        // The published FNV-1a 64 test vectors.
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a(b"foobar"), 0x8594_4171_f739_67e8);
        let words = [2u64, 0x0200_bff8, 0x1234_5678_9abc_def0];
        let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
        assert_eq!(trace_fold(TRACE_BASIS, &words), fnv1a(&bytes));
        assert_ne!(
            trace_fold(TRACE_BASIS, &[1, 2, 3]),
            trace_fold(TRACE_BASIS, &[1, 3, 2]),
            "order matters"
        );
    }
}
