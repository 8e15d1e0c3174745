//! The PLIC at 0x0C00_0000.
//!
//! QEMU analogue: `hw/intc/sifive_plic.c` as `virt` configures it: 96 sources
//! (source 0 reserved), 3 priority bits, two contexts per hart ("MS": context
//! `2*hart` is M-mode, `2*hart + 1` S-mode; this M-mode-only hart only has its
//! M-mode context wired to `mip.MEIP`). Registers are 32-bit: priorities at
//! `+4*src`, pending bits at `+0x1000`, enables at `+0x2000 + 0x80*ctx`,
//! threshold and claim/complete at `+0x20_0000 + 0x1000*ctx` (+0, +4).
//! Sources are level-triggered: the pending bit follows the line. Claim
//! returns the highest-priority pending, enabled, unclaimed source whose
//! priority exceeds the context's threshold.
//!
//! Locking: none of its own. The PLIC is a [`BusDevice`]: its state is
//! reached only with the BQL held (the machine maps it inside a
//! [`super::BqlDevice`]), as QEMU's PLIC is, whatever the BQL policy.

use std::sync::Arc;

use super::{BusDevice, BusError, check_size};
use crate::accel::cpu::{CpuShared, MIP_MEIP};

/// Guest address of the PLIC.
pub const PLIC_BASE: u64 = 0x0c00_0000;
/// Size of the PLIC region.
pub const PLIC_SIZE: u64 = 0x0060_0000;
/// Number of interrupt sources (including the reserved source 0).
pub const NUM_SOURCES: usize = 96;
const WORDS: usize = NUM_SOURCES.div_ceil(32);
const PRIO_MASK: u32 = 7;

const PENDING_BASE: u64 = 0x1000;
const ENABLE_BASE: u64 = 0x2000;
const ENABLE_STRIDE: u64 = 0x80;
const CONTEXT_BASE: u64 = 0x20_0000;
const CONTEXT_STRIDE: u64 = 0x1000;

struct State {
    priority: [u32; NUM_SOURCES],
    pending: [u32; WORDS],
    claimed: [u32; WORDS],
    enable: Vec<[u32; WORDS]>,
    threshold: Vec<u32>,
}

/// The PLIC device.
pub struct Plic {
    cpus: Vec<Arc<CpuShared>>,
    state: State,
}

impl Plic {
    /// A PLIC with two contexts for each of `cpus`.
    pub fn new(cpus: Vec<Arc<CpuShared>>) -> Plic {
        let ctxs = cpus.len() * 2;
        Plic {
            cpus,
            state: State {
                priority: [0; NUM_SOURCES],
                pending: [0; WORDS],
                claimed: [0; WORDS],
                enable: vec![[0; WORDS]; ctxs],
                threshold: vec![0; ctxs],
            },
        }
    }

    /// Drive interrupt source `irq` (1..96) to `level`.
    pub fn set_irq(&mut self, irq: usize, level: bool) {
        let st = &mut self.state;
        if level {
            st.pending[irq / 32] |= 1 << (irq % 32);
        } else {
            st.pending[irq / 32] &= !(1 << (irq % 32));
        }
        Self::update(&self.cpus, st);
    }

    fn best(st: &State, ctx: usize) -> u32 {
        let mut max_irq = 0;
        let mut max_prio = st.threshold[ctx];
        for w in 0..WORDS {
            let cand = st.pending[w] & !st.claimed[w] & st.enable[ctx][w];
            if cand == 0 {
                continue;
            }
            for b in 0..32 {
                let irq = w * 32 + b;
                if cand & (1 << b) != 0 && st.priority[irq] > max_prio {
                    max_irq = irq as u32;
                    max_prio = st.priority[irq];
                }
            }
        }
        max_irq
    }

    fn update(cpus: &[Arc<CpuShared>], st: &State) {
        for (hart, cpu) in cpus.iter().enumerate() {
            let level = Self::best(st, 2 * hart) != 0;
            cpu.set_irq(MIP_MEIP, level);
        }
    }
}

impl BusDevice for Plic {
    fn read(&mut self, offset: u64, size: u64) -> Result<u64, BusError> {
        check_size(size, 4, 4)?;
        let st = &mut self.state;
        let ctxs = st.threshold.len() as u64;
        let v = if offset < PENDING_BASE {
            st.priority
                .get((offset >> 2) as usize)
                .copied()
                .unwrap_or(0)
        } else if offset < ENABLE_BASE {
            st.pending
                .get(((offset - PENDING_BASE) >> 2) as usize)
                .copied()
                .unwrap_or(0)
        } else if offset < CONTEXT_BASE {
            let ctx = (offset - ENABLE_BASE) / ENABLE_STRIDE;
            let word = ((offset - ENABLE_BASE) % ENABLE_STRIDE) >> 2;
            if ctx < ctxs && (word as usize) < WORDS {
                st.enable[ctx as usize][word as usize]
            } else {
                0
            }
        } else {
            let ctx = (offset - CONTEXT_BASE) / CONTEXT_STRIDE;
            let reg = (offset - CONTEXT_BASE) % CONTEXT_STRIDE;
            if ctx >= ctxs {
                0
            } else if reg == 0 {
                st.threshold[ctx as usize]
            } else if reg == 4 {
                let irq = Self::best(st, ctx as usize);
                if irq != 0 {
                    let i = irq as usize;
                    st.pending[i / 32] &= !(1 << (i % 32));
                    st.claimed[i / 32] |= 1 << (i % 32);
                    Self::update(&self.cpus, st);
                }
                irq
            } else {
                0
            }
        };
        Ok(v as u64)
    }

    fn write(&mut self, offset: u64, size: u64, value: u64) -> Result<(), BusError> {
        check_size(size, 4, 4)?;
        let value = value as u32;
        let st = &mut self.state;
        let ctxs = st.threshold.len() as u64;
        if offset < PENDING_BASE {
            let src = (offset >> 2) as usize;
            if src > 0 && src < NUM_SOURCES {
                st.priority[src] = value & PRIO_MASK;
            }
        } else if offset < ENABLE_BASE {
            // Pending bits are read-only.
        } else if offset < CONTEXT_BASE {
            let ctx = (offset - ENABLE_BASE) / ENABLE_STRIDE;
            let word = (((offset - ENABLE_BASE) % ENABLE_STRIDE) >> 2) as usize;
            if ctx < ctxs && word < WORDS {
                st.enable[ctx as usize][word] = if word == 0 { value & !1 } else { value };
            }
        } else {
            let ctx = (offset - CONTEXT_BASE) / CONTEXT_STRIDE;
            let reg = (offset - CONTEXT_BASE) % CONTEXT_STRIDE;
            if ctx < ctxs && reg == 0 {
                st.threshold[ctx as usize] = value & PRIO_MASK;
            } else if ctx < ctxs && reg == 4 {
                let i = value as usize;
                if i < NUM_SOURCES && st.enable[ctx as usize][i / 32] & (1 << (i % 32)) != 0 {
                    st.claimed[i / 32] &= !(1 << (i % 32));
                }
            }
        }
        Self::update(&self.cpus, st);
        Ok(())
    }

    fn reset(&mut self) {
        let st = &mut self.state;
        st.priority = [0; NUM_SOURCES];
        st.pending = [0; WORDS];
        st.claimed = [0; WORDS];
        st.enable.iter_mut().for_each(|e| *e = [0; WORDS]);
        st.threshold.iter_mut().for_each(|t| *t = 0);
        Self::update(&self.cpus, st);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_complete_cycle_drives_meip() {
        let waiter = crate::sync::kick::Waiter::new(crate::sync::kick::KickKind::Futex).unwrap();
        let cpu = Arc::new(CpuShared::new(0, waiter.kicker()));
        let mut plic = Plic::new(vec![cpu.clone()]);
        plic.write(4 * 10, 4, 3).unwrap(); // priority of source 10
        plic.write(ENABLE_BASE, 4, 1 << 10).unwrap();
        plic.set_irq(10, true);
        assert_ne!(cpu.mip() & MIP_MEIP, 0);
        assert_eq!(plic.read(CONTEXT_BASE + 4, 4).unwrap(), 10);
        assert_eq!(cpu.mip() & MIP_MEIP, 0, "claimed: no longer pending");
        plic.write(CONTEXT_BASE + 4, 4, 10).unwrap();
        // The line is still high: after completion the source is pending again.
        plic.set_irq(10, true);
        assert_ne!(cpu.mip() & MIP_MEIP, 0);
        // Threshold at the source's priority masks it.
        plic.write(CONTEXT_BASE, 4, 3).unwrap();
        assert_eq!(cpu.mip() & MIP_MEIP, 0);
        assert_eq!(plic.read(CONTEXT_BASE + 4, 4).unwrap(), 0);
        assert!(plic.read(0, 1).is_err());
    }
}
