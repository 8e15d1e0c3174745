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

/// Why translation could not produce even one instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetchFault;

/// How many instructions after a `wfi` at `pc` QEMU 7.2 translates into the
/// same TB: its `trans_wfi` calls the halting helper without ending the TB,
/// so the TB goes on to the next instruction that does end one (a branch, a
/// jump, a CSR access, `fence.i`, `mret`, a trapping encoding) or to the end
/// of the page. Under icount QEMU charges the whole TB up front and the helper
/// leaves without giving the rest back, so those instructions are counted
/// once for the `wfi` and again when they really execute. vcpulab reproduces
/// the count (see `Hart::execute`).
pub fn qemu_wfi_tail(pc: u64, cpu: &CpuConfig, fetch: &mut dyn FnMut(u64) -> Option<u32>) -> u32 {
    let mut n = 0;
    let mut a = pc + 4;
    while a & 0xfff != 0 {
        let Some(w) = fetch(a) else { break };
        let d = decode(w, cpu);
        n += 1;
        if d.ends_tb() && d.op != super::insn::Op::Wfi {
            break;
        }
        a += 4;
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
    /// The extensions the decoder accepts.
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
        ((pc >> 2) ^ (pc >> (2 + MAP_BITS))) as usize & ((1 << MAP_BITS) - 1)
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
    /// instruction word at a pc, or `None` when the pc cannot be fetched; it is
    /// also told where each page starts so it can mark it as code).
    #[inline]
    pub fn lookup(
        &mut self,
        pc: u64,
        fetch: &mut dyn FnMut(u64) -> Option<u32>,
    ) -> Result<u32, FetchFault> {
        let s = Self::slot(pc);
        let (p, idx) = self.map[s];
        if p == pc {
            return Ok(idx);
        }
        self.translate(pc, s, fetch)
    }

    #[cold]
    fn translate(
        &mut self,
        pc: u64,
        slot: usize,
        fetch: &mut dyn FnMut(u64) -> Option<u32>,
    ) -> Result<u32, FetchFault> {
        if self.tbs.len() >= 1 << 20 || self.insns.len() >= 1 << 24 {
            self.flush();
        }
        let start = self.insns.len();
        let mut a = pc;
        while let Some(w) = fetch(a) {
            let mut insn = decode(w, &self.cpu);
            if insn.op == super::insn::Op::Wfi {
                insn.imm = qemu_wfi_tail(a, &self.cpu, fetch) as i64;
            }
            self.insns.push(insn);
            a += 4;
            if insn.ends_tb() || self.insns.len() - start >= MAX_TB_INSNS || a & 0xfff == 0 {
                break;
            }
        }
        let len = self.insns.len() - start;
        if len == 0 {
            return Err(FetchFault);
        }
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
