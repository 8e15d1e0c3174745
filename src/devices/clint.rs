//! The CLINT (ACLINT MSWI + MTIMER) at 0x0200_0000.
//!
//! QEMU analogue: `hw/intc/riscv_aclint.c`. `mtime` is derived from
//! QEMU_CLOCK_VIRTUAL at 10 MHz (`ns * 10_000_000 / 1e9`) plus a `time_delta`
//! that a write to `mtime` sets; `mtimecmp[hart]` arms a VIRTUAL timer for the
//! instant `mtime` reaches it (or raises MTIP at once when it is already
//! reached) and the timer's callback raises MTIP. As in QEMU, the reset writes
//! 0 to `mtime`, which also re-evaluates every `mtimecmp` (0 at reset), so MTIP
//! is pending from reset until the guest programs `mtimecmp`.
//!
//! Layout: `msip[hart]` at `+4*hart` (4-byte accesses only), `mtimecmp[hart]`
//! at `+0x4000 + 8*hart`, `mtime` at `+0xBFF8` (4- or 8-byte accesses).

use std::sync::Arc;

use parking_lot::Mutex;

use super::{BusError, MmioDevice, check_size};
use crate::clock::{ClockType, Clocks};
use crate::cpu::{CpuShared, MIP_MSIP, MIP_MTIP};
use crate::timer::{Timer, TimerList};

/// Guest address of the CLINT.
pub const CLINT_BASE: u64 = 0x0200_0000;
/// Size of the CLINT region.
pub const CLINT_SIZE: u64 = 0x10000;
/// The timebase: mtime ticks per second.
pub const TIMEBASE_HZ: u64 = 10_000_000;

const MTIMECMP_BASE: u64 = 0x4000;
const MTIME_OFFSET: u64 = 0xbff8;
const NS_PER_SEC: u64 = 1_000_000_000;

struct State {
    timecmp: Vec<u64>,
    time_delta: u64,
}

/// The CLINT device.
pub struct Clint {
    cpus: Vec<Arc<CpuShared>>,
    clocks: Arc<Clocks>,
    timers: Vec<Timer>,
    state: Mutex<State>,
}

/// `muldiv64(a, b, c)`: `a * b / c` with a 128-bit intermediate.
fn muldiv64(a: u64, b: u64, c: u64) -> u64 {
    ((a as u128 * b as u128) / c as u128) as u64
}

impl Clint {
    /// A CLINT for `cpus`, reading VIRTUAL from `clocks` and arming timers on
    /// the VIRTUAL timer list `vlist`.
    pub fn new(cpus: Vec<Arc<CpuShared>>, clocks: Arc<Clocks>, vlist: &Arc<TimerList>) -> Clint {
        let timers = cpus
            .iter()
            .map(|cpu| {
                let cpu = cpu.clone();
                vlist.new_timer(Box::new(move || cpu.set_irq(MIP_MTIP, true)))
            })
            .collect();
        let n = cpus.len();
        let clint = Clint {
            cpus,
            clocks,
            timers,
            state: Mutex::new(State {
                timecmp: vec![0; n],
                time_delta: 0,
            }),
        };
        clint.reset();
        clint
    }

    fn rtc_raw(&self) -> u64 {
        muldiv64(
            self.clocks.get_ns(ClockType::Virtual).max(0) as u64,
            TIMEBASE_HZ,
            NS_PER_SEC,
        )
    }

    /// The current `mtime` (what `rdtime` returns).
    pub fn mtime(&self) -> u64 {
        let delta = self.state.lock().time_delta;
        self.rtc_raw().wrapping_add(delta)
    }

    /// `riscv_aclint_mtimer_write_timecmp`.
    fn write_timecmp(&self, st: &mut State, hart: usize, value: u64) {
        let rtc = self.rtc_raw().wrapping_add(st.time_delta);
        st.timecmp[hart] = value;
        let cpu = &self.cpus[hart];
        if value <= rtc {
            cpu.set_irq(MIP_MTIP, true);
            return;
        }
        cpu.set_irq(MIP_MTIP, false);
        let diff = value - rtc;
        let ns_diff = muldiv64(diff, NS_PER_SEC, TIMEBASE_HZ);
        let next = if ns_diff < diff || ns_diff > i64::MAX as u64 {
            i64::MAX
        } else {
            let now = self.clocks.get_ns(ClockType::Virtual);
            now.checked_add(ns_diff as i64).unwrap_or(i64::MAX)
        };
        self.timers[hart].modify(next);
    }

    /// The `mtimecmp` of `hart`.
    pub fn timecmp(&self, hart: usize) -> u64 {
        self.state.lock().timecmp[hart]
    }
}

impl MmioDevice for Clint {
    fn read(&self, offset: u64, size: u64) -> Result<u64, BusError> {
        let n = self.cpus.len() as u64;
        if offset < MTIMECMP_BASE {
            check_size(size, 4, 4)?;
            let hart = offset >> 2;
            if hart < n && offset & 3 == 0 {
                return Ok(((self.cpus[hart as usize].mip() & MIP_MSIP) != 0) as u64);
            }
            return Ok(0);
        }
        check_size(size, 4, 8)?;
        let st = self.state.lock();
        if offset >= MTIMECMP_BASE && offset < MTIMECMP_BASE + 8 * n {
            let hart = ((offset - MTIMECMP_BASE) >> 3) as usize;
            let cmp = st.timecmp[hart];
            return Ok(match offset & 7 {
                0 if size == 4 => cmp & 0xffff_ffff,
                0 => cmp,
                4 => cmp >> 32,
                _ => 0,
            });
        }
        let rtc = self.rtc_raw().wrapping_add(st.time_delta);
        Ok(match offset {
            MTIME_OFFSET if size == 4 => rtc & 0xffff_ffff,
            MTIME_OFFSET => rtc,
            o if o == MTIME_OFFSET + 4 => rtc >> 32,
            _ => 0,
        })
    }

    fn write(&self, offset: u64, size: u64, value: u64) -> Result<(), BusError> {
        let n = self.cpus.len() as u64;
        if offset < MTIMECMP_BASE {
            check_size(size, 4, 4)?;
            let hart = offset >> 2;
            if hart < n && offset & 3 == 0 {
                self.cpus[hart as usize].set_irq(MIP_MSIP, value & 1 != 0);
            }
            return Ok(());
        }
        check_size(size, 4, 8)?;
        let mut st = self.state.lock();
        if offset >= MTIMECMP_BASE && offset < MTIMECMP_BASE + 8 * n {
            let hart = ((offset - MTIMECMP_BASE) >> 3) as usize;
            let old = st.timecmp[hart];
            match (offset & 7, size) {
                (0, 4) => {
                    self.write_timecmp(&mut st, hart, (old & !0xffff_ffff) | (value & 0xffff_ffff))
                }
                (0, _) => self.write_timecmp(&mut st, hart, value),
                (4, 4) => self.write_timecmp(&mut st, hart, (value << 32) | (old & 0xffff_ffff)),
                _ => {}
            }
            return Ok(());
        }
        if offset == MTIME_OFFSET || offset == MTIME_OFFSET + 4 {
            let rtc_r = self.rtc_raw();
            let rtc = rtc_r.wrapping_add(st.time_delta);
            st.time_delta = match (offset == MTIME_OFFSET, size) {
                (true, 4) => ((rtc & !0xffff_ffff) | (value & 0xffff_ffff)).wrapping_sub(rtc_r),
                (true, _) => value.wrapping_sub(rtc_r),
                (false, 4) => ((value << 32) | (rtc & 0xffff_ffff)).wrapping_sub(rtc_r),
                (false, _) => return Ok(()),
            };
            for hart in 0..self.cpus.len() {
                let cmp = st.timecmp[hart];
                self.write_timecmp(&mut st, hart, cmp);
            }
        }
        Ok(())
    }

    fn reset(&self) {
        let _ = self.write(MTIME_OFFSET, 8, 0);
    }
}
