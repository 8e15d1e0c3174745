//! Translation blocks and the per-vCPU TB cache.
//!
//! QEMU analogue: `accel/tcg/translate-all.c` (`tb_gen_code`), `tb-maint.c`
//! and `cpu-exec.c` (`tb_lookup`, `tb_jmp_cache`, direct block chaining).
//!
//! A TB is a run of pre-decoded instructions starting at a guest pc and ending
//! at the first control-flow / system instruction, at a page boundary, or at
//! [`MAX_TB_INSNS`]. Each vCPU owns its cache (no locks on the hot path): a
//! direct-mapped table from pc to TB index, plus two "chain" slots per TB that
//! remember the TBs that followed it last time, so a hot loop goes from TB to
//! TB without a hash lookup. The whole cache is flushed when the RAM's code
//! generation changes (a store hit translated code; see `memory`).

use std::cell::Cell;

use super::decode::decode;
use super::insn::Insn;
use super::rvc;
use crate::config::CpuConfig;

/// At most this many instructions per TB (QEMU: `TCG_MAX_INSNS` = 512).
pub const MAX_TB_INSNS: usize = 512;
const MAP_BITS: u32 = 14;

/// One translation block.
pub struct Tb {
    /// Guest pc of the first instruction.
    pub pc: u64,
    /// Index of the first instruction in the cache's arena.
    pub start: u32,
    /// Number of instructions.
    pub len: u32,
    /// Last successors: (guest pc, TB index + 1; 0 = empty).
    pub chain: [Cell<(u64, u32)>; 2],
}

/// Why translation could not produce even one instruction: the fetch at
/// `addr` failed (unmapped, not executable, or — `addr` = the pc — not 4-aligned
/// without C). For a 32-bit instruction whose second half cannot be fetched,
/// `addr` is the address of that half (QEMU's `badaddr` from the second
/// `translator_lduw`), while the instruction's own pc becomes mepc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchFault {
    /// The address whose fetch failed (mtval).
    pub addr: u64,
}

/// Halfword fetch used by the translator: the 16 bits at a 2-aligned guest
/// address, or `None` when they cannot be fetched. It marks what it reads as
/// code.
pub type Fetch16<'a> = dyn FnMut(u64) -> Option<u16> + 'a;

/// Outcome of decoding the instruction at one address.
enum Fetched {
    /// The instruction (with its length set).
    Insn(Insn),
    /// A 32-bit instruction that would cross the end of the page, seen from
    /// its first halfword only (it starts a TB of its own).
    CrossesPage,
}

/// Fetch and decode the instruction at `a`. With C (`c`), a halfword with
/// low bits other than `11` is a whole compressed instruction, and `a` may be
/// anything, even odd (QEMU with C fetches from an odd pc reached through
/// `mret` as it is); without C, `a` must be 4-aligned and every
/// instruction is 32 bits (a compressed encoding is illegal, with the
/// halfword as mtval, as QEMU reports it). `first` says whether this is the
/// TB's first instruction: only that one may cross a page boundary.
fn fetch_insn(
    a: u64,
    cpu: &CpuConfig,
    first: bool,
    fetch: &mut Fetch16,
) -> Result<Fetched, FetchFault> {
    let c = cpu.c;
    if !c && a & 3 != 0 {
        return Err(FetchFault { addr: a });
    }
    let lo = fetch(a).ok_or(FetchFault { addr: a })?;
    if !rvc::is_32bit(lo) {
        if c {
            return Ok(Fetched::Insn(rvc::decode16(lo)));
        }
        // QEMU without C: illegal, mtval = the 16-bit opcode; it is raised
        // before the second halfword would be fetched.
        return Ok(Fetched::Insn(Insn {
            imm: lo as i64,
            ..super::decode::ILLEGAL
        }));
    }
    if !first && a & 0xfff == 0xffe {
        return Ok(Fetched::CrossesPage);
    }
    let hi = fetch(a + 2).ok_or(FetchFault { addr: a + 2 })?;
    Ok(Fetched::Insn(decode(lo as u32 | (hi as u32) << 16, cpu)))
}

/// How many instructions after a `wfi` at `pc` QEMU 7.2 translates into the
/// same TB: its `trans_wfi` calls the halting helper without ending the TB,
/// so the TB goes on to the next instruction that does end one (a branch, a
/// jump, a CSR access, `fence.i`, `mret`, a trapping encoding) or to the end
/// of the page (an instruction that would cross it is not included), and at
/// most `max` of them: the TB's size limit ([`MAX_TB_INSNS`]) counts the
/// instructions before and including the `wfi`. Under
/// icount QEMU charges the whole TB up front and the helper leaves without
/// giving the rest back, so those instructions are counted once for the `wfi`
/// and again when they really execute. vcpulab reproduces the count (see
/// `Hart::execute`). The walk steps by each instruction's length (2 or 4).
pub fn qemu_wfi_tail(pc: u64, cpu: &CpuConfig, max: u32, fetch: &mut Fetch16) -> u32 {
    let mut n = 0;
    let mut a = pc + 4;
    while n < max && a & !0xfff == pc & !0xfff {
        let Ok(Fetched::Insn(d)) = fetch_insn(a, cpu, false, fetch) else {
            break;
        };
        n += 1;
        if d.ends_tb() && d.op != super::insn::Op::Wfi {
            break;
        }
        a += d.len as u64;
    }
    n
}

/// A per-vCPU cache of translation blocks.
pub struct TbCache {
    tbs: Vec<Tb>,
    /// All instructions of all TBs, back to back.
    pub insns: Vec<Insn>,
    map: Vec<(u64, u32)>,
    /// The RAM code generation this cache is valid for.
    pub code_gen: u64,
    /// Number of full flushes (for the report).
    pub flushes: u64,
    /// The extensions the decoder accepts (with C: IALIGN = 16, compressed
    /// encodings decode); set once from the machine's CPU configuration.
    pub cpu: CpuConfig,
}

impl Default for TbCache {
    fn default() -> Self {
        TbCache::new()
    }
}

impl TbCache {
    /// An empty cache for a hart with every extension.
    pub fn new() -> TbCache {
        TbCache::for_cpu(CpuConfig::default())
    }

    /// An empty cache whose decoder accepts the extensions of `cpu`.
    pub fn for_cpu(cpu: CpuConfig) -> TbCache {
        TbCache {
            tbs: Vec::new(),
            insns: Vec::new(),
            map: vec![(u64::MAX, 0); 1 << MAP_BITS],
            code_gen: 0,
            flushes: 0,
            cpu,
        }
    }

    #[inline(always)]
    fn slot(pc: u64) -> usize {
        ((pc >> 1) ^ (pc >> (1 + MAP_BITS))) as usize & ((1 << MAP_BITS) - 1)
    }

    /// Forget every TB.
    pub fn flush(&mut self) {
        self.tbs.clear();
        self.insns.clear();
        self.map.iter_mut().for_each(|e| *e = (u64::MAX, 0));
        self.flushes += 1;
    }

    /// The TB with index `idx`.
    #[inline(always)]
    pub fn tb(&self, idx: u32) -> &Tb {
        &self.tbs[idx as usize]
    }

    /// The instructions of TB `idx`.
    #[inline(always)]
    pub fn tb_insns(&self, tb: &Tb) -> &[Insn] {
        &self.insns[tb.start as usize..(tb.start + tb.len) as usize]
    }

    /// Look up the TB at `pc`, translating it with `fetch` (which returns the
    /// halfword at an address, or `None` when it cannot be fetched, and marks
    /// what it reads as code).
    #[inline]
    pub fn lookup(&mut self, pc: u64, fetch: &mut Fetch16) -> Result<u32, FetchFault> {
        let s = Self::slot(pc);
        let (p, idx) = self.map[s];
        if p == pc {
            return Ok(idx);
        }
        self.translate(pc, s, fetch)
    }

    #[cold]
    fn translate(&mut self, pc: u64, slot: usize, fetch: &mut Fetch16) -> Result<u32, FetchFault> {
        if self.tbs.len() >= 1 << 20 || self.insns.len() >= 1 << 24 {
            self.flush();
        }
        let start = self.insns.len();
        let mut a = pc;
        loop {
            let first = a == pc;
            let mut insn = match fetch_insn(a, &self.cpu, first, fetch) {
                Ok(Fetched::Insn(d)) => d,
                Ok(Fetched::CrossesPage) => break,
                // A fault ends the TB before the instruction; it is raised when
                // that instruction is looked up as the start of a TB.
                Err(f) if first => return Err(f),
                Err(_) => break,
            };
            if insn.op == super::insn::Op::Wfi {
                let max = (MAX_TB_INSNS - 1 - (self.insns.len() - start)) as u32;
                insn.imm = qemu_wfi_tail(a, &self.cpu, max, fetch) as i64;
            }
            insn.off = (a - pc) as u16;
            self.insns.push(insn);
            a += insn.len as u64;
            // The TB ends at control flow, at the size limit, and where the
            // next instruction would start on another page (QEMU: only the
            // first instruction of a TB may cross a page boundary).
            if insn.ends_tb()
                || self.insns.len() - start >= MAX_TB_INSNS
                || a & !0xfff != pc & !0xfff
            {
                break;
            }
        }
        let len = self.insns.len() - start;
        let idx = self.tbs.len() as u32;
        self.tbs.push(Tb {
            pc,
            start: start as u32,
            len: len as u32,
            chain: [Cell::new((u64::MAX, 0)), Cell::new((u64::MAX, 0))],
        });
        self.map[slot] = (pc, idx);
        Ok(idx)
    }

    /// Number of TBs currently cached.
    pub fn len(&self) -> usize {
        self.tbs.len()
    }

    /// Whether the cache is empty.
    pub fn is_empty(&self) -> bool {
        self.tbs.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::riscv::insn::Op;

    const C_ON: CpuConfig = CpuConfig {
        c: true,
        zba: true,
        zbb: true,
        zbs: true,
    };
    const C_OFF: CpuConfig = CpuConfig { c: false, ..C_ON };

    /// A fetcher over a little code image at `base` (halfwords).
    fn image(base: u64, code: &[u16]) -> impl FnMut(u64) -> Option<u16> + '_ {
        move |a| {
            let i = a.checked_sub(base)? / 2;
            code.get(i as usize).copied()
        }
    }

    #[test]
    fn without_c_every_compressed_halfword_is_illegal() {
        for h in 0..=u16::MAX {
            let code = [h, 0x0000];
            let mut f = image(0x1000, &code);
            let r = fetch_insn(0x1000, &C_OFF, true, &mut f);
            if rvc::is_32bit(h) {
                continue;
            }
            match r {
                Ok(Fetched::Insn(d)) => {
                    assert_eq!(d.op, Op::Illegal, "{h:#06x}");
                    assert_eq!(d.imm, h as i64, "{h:#06x}: mtval");
                }
                _ => panic!("{h:#06x}: not an illegal instruction"),
            }
            // With C the same halfword is a 2-byte instruction.
            let mut f = image(0x1000, &code);
            let Ok(Fetched::Insn(d)) = fetch_insn(0x1000, &C_ON, true, &mut f) else {
                panic!("{h:#06x} with C");
            };
            assert_eq!(d.len, 2);
        }
    }

    #[test]
    fn alignment_of_the_fetch_pc() {
        let code = [0x0001u16; 8];
        let mut f = image(0x1000, &code);
        assert!(fetch_insn(0x1002, &C_ON, true, &mut f).is_ok());
        assert_eq!(
            fetch_insn(0x1002, &C_OFF, true, &mut f).err(),
            Some(FetchFault { addr: 0x1002 })
        );
        assert!(fetch_insn(0x1001, &C_OFF, true, &mut f).is_err());
    }

    #[test]
    fn mixed_tb_offsets_and_lengths() {
        // c.addi a0,1; addi a0,a0,1 (at +2); c.nop; jal x0, 0 (at +8)
        let code = [0x0505u16, 0x0513, 0x0015, 0x0001, 0x006f, 0x0000];
        let mut c = TbCache::new();
        let idx = c.lookup(0x1000, &mut image(0x1000, &code)).unwrap();
        let tb = c.tb(idx);
        let v: Vec<(Op, u16, u8)> = c
            .tb_insns(tb)
            .iter()
            .map(|d| (d.op, d.off, d.len))
            .collect();
        assert_eq!(
            v,
            [
                (Op::Addi, 0, 2),
                (Op::Addi, 2, 4),
                (Op::Addi, 6, 2),
                (Op::Jal, 8, 4)
            ]
        );
    }

    #[test]
    fn second_half_fault_and_page_crossing() {
        // A 32-bit instruction in the last halfword of the image: its second
        // half cannot be fetched; the fault names that half's address.
        let code = [0x0001u16, 0x0513];
        let mut c = TbCache::new();
        let idx = c.lookup(0x1000, &mut image(0x1000, &code)).unwrap();
        assert_eq!(c.tb(idx).len, 1);
        assert_eq!(
            c.lookup(0x1002, &mut image(0x1000, &code)).err(),
            Some(FetchFault { addr: 0x1004 })
        );
        // At a page end, a 32-bit instruction starts a TB of its own, and a
        // TB that starts with it holds it alone.
        let mut code = vec![0x0001u16; 4];
        code[1] = 0x0513;
        code[2] = 0x0015;
        let mut c = TbCache::new();
        let idx = c.lookup(0x1ffc, &mut image(0x1ffc, &code)).unwrap();
        assert_eq!(c.tb(idx).len, 1);
        let idx = c.lookup(0x1ffe, &mut image(0x1ffc, &code)).unwrap();
        let tb = c.tb(idx);
        assert_eq!(tb.len, 1);
        assert_eq!(c.tb_insns(tb)[0].len, 4);
    }

    #[test]
    fn wfi_tail_steps_by_length() {
        // wfi; c.nop; addi; c.nop; c.j 0  → 4 instructions after the wfi
        let code = [0x0073u16, 0x1050, 0x0001, 0x0513, 0x0015, 0x0001, 0xa001];
        assert_eq!(
            qemu_wfi_tail(0x1000, &C_ON, 512, &mut image(0x1000, &code)),
            4
        );
        // Capped by what is left of the TB's size limit.
        assert_eq!(
            qemu_wfi_tail(0x1000, &C_ON, 2, &mut image(0x1000, &code)),
            2
        );
        // Without C the c.nop is illegal, which ends the TB.
        assert_eq!(
            qemu_wfi_tail(0x1000, &C_OFF, 512, &mut image(0x1000, &code)),
            1
        );
    }
}
