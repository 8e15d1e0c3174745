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
//!
//! Locking: the CLINT locks itself, so the `device` BQL policy reaches it
//! without the BQL. What its own lock protects: `mtimecmp[]` and every
//! change of `time_delta` and of MTIP that depends on them (a `mtimecmp` or
//! `mtime` write, and the timer callback, which re-checks `mtime >=
//! mtimecmp` under the lock before it raises MTIP, so a callback that was
//! already running when a write moved `mtimecmp` cannot leave a stale
//! MTIP). `mtime` reads take no lock (`time_delta` is an atomic that only
//! lock holders write); `msip` is the hart's `mip` bit itself (atomic).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::{BusError, MmioDevice, check_size};
use crate::accel::cpu::{CpuShared, MIP_MSIP, MIP_MTIP};
use crate::time::clock::{ClockType, Clocks};
use crate::time::timer::{Timer, TimerList};

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
}

/// What the CLINT and its timer callbacks share.
struct Inner {
    clocks: Arc<Clocks>,
    state: Mutex<State>,
    /// `mtime - rtc`: written only with `state` locked; read by anyone.
    time_delta: AtomicU64,
}

impl Inner {
    fn rtc_raw(&self) -> u64 {
        muldiv64(
            self.clocks.get_ns(ClockType::Virtual).max(0) as u64,
            TIMEBASE_HZ,
            NS_PER_SEC,
        )
    }

    fn mtime(&self) -> u64 {
        // Relaxed: a read racing a `mtime` write may see either value, as a
        // guest read racing a write on another hart may.
        self.rtc_raw()
            .wrapping_add(self.time_delta.load(Ordering::Relaxed))
    }
}

/// The CLINT device.
pub struct Clint {
    cpus: Vec<Arc<CpuShared>>,
    inner: Arc<Inner>,
    timers: Vec<Timer>,
}

/// `muldiv64(a, b, c)`: `a * b / c` with a 128-bit intermediate.
fn muldiv64(a: u64, b: u64, c: u64) -> u64 {
    ((a as u128 * b as u128) / c as u128) as u64
}

impl Clint {
    /// A CLINT for `cpus`, reading VIRTUAL from `clocks` and arming timers on
    /// the VIRTUAL timer list `vlist`.
    pub fn new(cpus: Vec<Arc<CpuShared>>, clocks: Arc<Clocks>, vlist: &Arc<TimerList>) -> Clint {
        let n = cpus.len();
        let inner = Arc::new(Inner {
            clocks,
            state: Mutex::new(State {
                timecmp: vec![0; n],
            }),
            time_delta: AtomicU64::new(0),
        });
        let timers = cpus
            .iter()
            .enumerate()
            .map(|(hart, cpu)| {
                let (cpu, inner) = (cpu.clone(), inner.clone());
                vlist.new_timer(Box::new(move || {
                    // QEMU's callback raises MTIP unconditionally, which is
                    // right when the BQL orders it with every mtimecmp
                    // write; reached without the BQL, a write may have moved
                    // mtimecmp since this timer expired, so re-check.
                    let st = inner.state.lock();
                    if inner.mtime() >= st.timecmp[hart] {
                        cpu.set_irq(MIP_MTIP, true);
                    }
                }))
            })
            .collect();
        let clint = Clint {
            cpus,
            inner,
            timers,
        };
        clint.reset();
        clint
    }

    fn rtc_raw(&self) -> u64 {
        self.inner.rtc_raw()
    }

    /// The current `mtime` (what `rdtime` returns); takes no lock.
    pub fn mtime(&self) -> u64 {
        self.inner.mtime()
    }

    /// `riscv_aclint_mtimer_write_timecmp` (with `st`, the CLINT's lock).
    fn write_timecmp(&self, st: &mut State, hart: usize, value: u64) {
        let rtc = self.mtime();
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
            let now = self.inner.clocks.get_ns(ClockType::Virtual);
            now.checked_add(ns_diff as i64).unwrap_or(i64::MAX)
        };
        self.timers[hart].modify(next);
    }

    /// The `mtimecmp` of `hart`.
    pub fn timecmp(&self, hart: usize) -> u64 {
        self.inner.state.lock().timecmp[hart]
    }
}

impl MmioDevice for Clint {
    /// Every register: the CLINT locks itself (see the module doc).
    fn lockless_at(&self, _offset: u64) -> bool {
        true
    }

    fn read(&self, offset: u64, size: u64) -> Result<u64, BusError> {
        let n = self.cpus.len() as u64;
        if offset < MTIMECMP_BASE {
            check_size(size, 4, 4)?;
            let hart = offset >> 2;
            if hart < n && offset & 3 == 0 {
                return Ok(((self.cpus[hart as usize].lines() & MIP_MSIP) != 0) as u64);
            }
            return Ok(0);
        }
        check_size(size, 4, 8)?;
        if offset >= MTIMECMP_BASE && offset < MTIMECMP_BASE + 8 * n {
            let hart = ((offset - MTIMECMP_BASE) >> 3) as usize;
            let cmp = self.inner.state.lock().timecmp[hart];
            return Ok(match offset & 7 {
                0 if size == 4 => cmp & 0xffff_ffff,
                0 => cmp,
                4 => cmp >> 32,
                _ => 0,
            });
        }
        let rtc = self.mtime();
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
        let mut st = self.inner.state.lock();
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
            let rtc = rtc_r.wrapping_add(self.inner.time_delta.load(Ordering::Relaxed));
            let delta = match (offset == MTIME_OFFSET, size) {
                (true, 4) => ((rtc & !0xffff_ffff) | (value & 0xffff_ffff)).wrapping_sub(rtc_r),
                (true, _) => value.wrapping_sub(rtc_r),
                (false, 4) => ((value << 32) | (rtc & 0xffff_ffff)).wrapping_sub(rtc_r),
                (false, _) => return Ok(()),
            };
            // Written under the CLINT lock (held: `st`).
            self.inner.time_delta.store(delta, Ordering::Relaxed);
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
