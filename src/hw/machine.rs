//! The `virt` board: RAM, the devices at their QEMU addresses, the harts'
//! shared state, the clocks and timer lists.
//!
//! QEMU analogue: `hw/riscv/virt.c` (`virt_machine_init`, `virt_memmap`).
//!
//! | device | base | size |
//! |---|---|---|
//! | reset ROM | 0x0000_1000 | 0xf000 |
//! | test finisher | 0x0010_0000 | 0x1000 |
//! | CLINT | 0x0200_0000 | 0x10000 |
//! | PLIC | 0x0c00_0000 | 0x600000 |
//! | UART0 | 0x1000_0000 | 0x100 |
//! | RAM | 0x8000_0000 | `--memory` |

use std::sync::Arc;

use crate::accel::cpu::CpuShared;
use crate::config::{Compat, IcountShift, IcountSmp, MachineConfig, ThreadMode};
use crate::hw::devices::BusError;
use crate::hw::devices::clint::{CLINT_BASE, CLINT_SIZE, Clint};
use crate::hw::devices::finisher::{FINISHER_BASE, FINISHER_SIZE, Finisher};
use crate::hw::devices::plic::{PLIC_BASE, PLIC_SIZE, Plic};
use crate::hw::devices::rom::{ROM_BASE, ROM_SIZE, Rom};
use crate::hw::devices::uart::{Sink, UART_BASE, UART_IRQ, UART_SIZE, Uart};
use crate::hw::devices::{BqlDevice, MmioDevice};
use crate::hw::loader::{self, LoadError, LoadedKernel};
use crate::hw::memory::{Bus, RAM_BASE, Ram};
use crate::runstate::RunState;
use crate::sync::bql::{Bql, BqlGuard, BqlPolicy};
use crate::sync::kick::Waiter;
use crate::time::clock::ClockType;
use crate::time::clock::{Clocks, IcountClock};
use crate::time::timer::TimerListGroup;

/// Where QEMU places the device tree for a given RAM size
/// (`riscv_load_fdt`, 10.0: `riscv_compute_fdt_addr`): 2 MiB-aligned, just
/// below the end of RAM; QEMU 7.2 keeps it below 3 GiB (so 1G and more of
/// RAM all give 0xbfe0_0000), QEMU 10.0 does not (3G: 0x1_3fe0_0000).
/// Checked on both with `guests/build/boot_regs.elf` at 128M, 1G, 2G, 3G, 4G,
/// 8G and 16G. vcpulab passes the same address in a1 but writes no device
/// tree there.
pub fn fdt_addr(memory: u64, compat: Compat) -> u64 {
    const FDT_SIZE_GUESS: u64 = 0x2000;
    let dram_end = RAM_BASE + memory;
    let top = match compat {
        Compat::Qemu7_2 => 3 << 30,
        Compat::Qemu10_0 => u64::MAX,
    };
    let temp = dram_end.clamp(RAM_BASE + FDT_SIZE_GUESS, top);
    (temp - FDT_SIZE_GUESS) & !((2 << 20) - 1)
}

/// The device regions of the address map (name, base, size).
pub const DEVICES: [loader::DeviceRange; 5] = [
    ("riscv_virt_board.mrom", ROM_BASE, ROM_SIZE),
    ("riscv.sifive.test", FINISHER_BASE, FINISHER_SIZE),
    ("riscv.aclint", CLINT_BASE, CLINT_SIZE),
    ("riscv.sifive.plic", PLIC_BASE, PLIC_SIZE),
    ("serial", UART_BASE, UART_SIZE),
];

/// The machine: everything vCPU threads and the iothread share.
pub struct Machine {
    /// Configuration it was built from.
    pub config: MachineConfig,
    /// Guest RAM.
    pub ram: Ram,
    /// Devices.
    pub bus: Bus,
    /// Per-hart cross-thread state.
    pub cpus: Vec<Arc<CpuShared>>,
    /// Run state (exit, reset).
    pub run: Arc<RunState>,
    /// The clocks.
    pub clocks: Arc<Clocks>,
    /// The icount clock, under `--icount`.
    pub icount: Option<Arc<IcountClock>>,
    /// The time values the guest read (icount: the inversions figure).
    pub time_reads: crate::time::icount::TimeReads,
    /// Timer lists.
    pub timers: Arc<TimerListGroup>,
    /// The CLINT (for `rdtime`).
    pub clint: Arc<Clint>,
    /// The PLIC.
    pub plic: Arc<BqlDevice<Plic>>,
    /// UART0.
    pub uart: Arc<Uart>,
    /// The global lock.
    pub bql: Arc<Bql>,
    /// What the loader loaded.
    pub kernel: LoadedKernel,
    /// The kernel image, reloaded on reset as QEMU reloads its ROM blobs.
    kernel_image: (std::path::PathBuf, Vec<u8>),
}

impl Machine {
    /// Build the machine and load `config.kernel` into it, writing the UART
    /// to `out`. Returns the machine and the kick waiters of the vCPU
    /// threads: one per hart under `thread=multi`, one for all under
    /// `thread=single`.
    pub fn new(config: MachineConfig, out: Sink) -> Result<(Arc<Machine>, Vec<Waiter>), LoadError> {
        let (data, path) = match &config.kernel {
            Some(p) => (loader::read_kernel(p)?, p.clone()),
            None => (
                loader::BUILTIN_KERNEL.to_vec(),
                std::path::PathBuf::from(loader::BUILTIN_NAME),
            ),
        };
        let ram = Ram::try_new(config.memory).map_err(|err| LoadError::Ram {
            size: config.memory,
            err,
        })?;
        let kernel = loader::load_elf(&path, &data, &ram, &DEVICES)?;
        loader::write_params(&ram, &config.params)?;

        let single = config.accel.thread == ThreadMode::Single;
        let threads = if single { 1 } else { config.smp };
        let parkers: Vec<Waiter> = (0..threads)
            .map(|_| Waiter::new(config.kick))
            .collect::<std::io::Result<_>>()
            .map_err(|err| LoadError::Kick {
                kind: config.kick.name(),
                err,
            })?;
        let kickers = (0..config.smp)
            .map(|i| parkers[if single { 0 } else { i }].kicker())
            .collect();
        let smp_mode = config.icount.map(|c| c.smp);
        let quantum = matches!(
            smp_mode,
            Some(IcountSmp::Local {
                quantum_ns: Some(_)
            })
        );
        let cpus = CpuShared::group(kickers, single, quantum);
        let run = Arc::new(RunState::new());
        let icount = config.icount.map(|c| {
            let shift = match c.shift {
                IcountShift::Fixed(n) => n,
                IcountShift::Auto => 3,
            };
            Arc::new(IcountClock::new(shift))
        });
        let clocks = Arc::new(match &icount {
            Some(ic) if matches!(smp_mode, Some(IcountSmp::Local { .. })) => {
                Clocks::with_local_icount(ic.clone())
            }
            Some(ic) => Clocks::with_icount(ic.clone()),
            None => Clocks::new(),
        });
        let timers = Arc::new(TimerListGroup::new());

        let clint = Arc::new(Clint::new(
            cpus.clone(),
            clocks.clone(),
            timers.get(ClockType::Virtual),
        ));
        let bql = Arc::new(Bql::with(config.bql.lock, true, config.bql.hold_sample));
        let kick_holder = cpus.clone();
        bql.set_kick(Box::new(move |n| kick_holder[n].kick()));
        let plic = Arc::new(BqlDevice::new(bql.clone(), Plic::new(cpus.clone())));
        let plic_for_uart = plic.clone();
        let uart = Arc::new(Uart::new(
            out,
            // The UART raises its line with the BQL held (only its scratch
            // register is lockless), as the PLIC requires.
            Box::new(move |level| plic_for_uart.with(|p| p.set_irq(UART_IRQ, level))),
            run.clone(),
        ));
        let kick_cpus = cpus.clone();
        let finisher = Arc::new(Finisher::new(
            run.clone(),
            Box::new(move || kick_cpus.iter().for_each(|c| c.kick())),
        ));
        let rom = Arc::new(Rom::new(
            RAM_BASE,
            kernel.low,
            fdt_addr(config.memory, config.compat),
        ));

        let mut bus = Bus::new();
        bus.map("riscv_virt_board.mrom", ROM_BASE, ROM_SIZE, rom);
        bus.map("riscv.sifive.test", FINISHER_BASE, FINISHER_SIZE, finisher);
        bus.map("riscv.aclint", CLINT_BASE, CLINT_SIZE, clint.clone());
        bus.map("riscv.sifive.plic", PLIC_BASE, PLIC_SIZE, plic.clone());
        bus.map("serial", UART_BASE, UART_SIZE, uart.clone());

        let m = Machine {
            config,
            ram,
            bus,
            cpus,
            run,
            clocks,
            icount,
            time_reads: Default::default(),
            timers,
            clint,
            plic,
            uart,
            bql,
            kernel,
            kernel_image: (path, data),
        };
        Ok((Arc::new(m), parkers))
    }

    /// The one place that decides whether a device access takes the BQL:
    /// not if this thread holds it already (a vCPU under `always`), not for
    /// an offset the device locks itself at under `device`, else yes.
    #[inline]
    #[track_caller]
    fn access_lock(&self, dev: &dyn MmioDevice, off: u64) -> Option<BqlGuard<'_>> {
        if self.config.bql.policy == BqlPolicy::Device && dev.lockless_at(off) {
            return None;
        }
        self.bql.lock_unless_held()
    }

    /// A device read at `addr`, under the lock the BQL policy picks. `Err`
    /// for unmapped addresses and invalid sizes.
    #[track_caller]
    pub fn mmio_read(&self, addr: u64, size: u64) -> Result<u64, BusError> {
        let (r, off) = self.bus.find(addr).ok_or(BusError::Invalid)?;
        let _g = self.access_lock(&*r.dev, off);
        r.dev.read(off, size)
    }

    /// A device write (see [`Machine::mmio_read`]).
    #[track_caller]
    pub fn mmio_write(&self, addr: u64, size: u64, value: u64) -> Result<(), BusError> {
        let (r, off) = self.bus.find(addr).ok_or(BusError::Invalid)?;
        let _g = self.access_lock(&*r.dev, off);
        r.dev.write(off, size, value)
    }

    /// Reset every device (finisher 0x7777).
    pub fn reset_devices(&self) {
        let _g = self.bql.lock_unless_held();
        for r in self.bus.regions() {
            r.dev.reset();
        }
        // QEMU's rom_reset writes the ELF segments (and zero-fills their
        // .bss) and the `-device loader` data again.
        let (path, data) = &self.kernel_image;
        let _ = loader::load_elf(path, data, &self.ram, &DEVICES);
        let _ = loader::write_params(&self.ram, &self.config.params);
    }

    /// Stop the machine (QEMU's `vm_stop`): every vCPU leaves guest code at
    /// its next TB boundary and parks, then VIRTUAL freezes. Returns once all
    /// vCPUs are parked.
    pub fn pause(&self) {
        if self.run.pause_requested() {
            return;
        }
        self.run.request_pause(true);
        self.kick_all();
        self.run.wait_parked(self.cpus.len());
        self.clocks.stop();
        // As `pause_all_vcpus` does: no VIRTUAL deadline while stopped, so
        // the iothread does not keep waking for a frozen clock.
        self.timers.get(ClockType::Virtual).set_enabled(false);
    }

    /// Resume after [`Machine::pause`] (QEMU's `vm_start`): VIRTUAL resumes
    /// from where it froze, then the vCPUs are woken.
    pub fn resume(&self) {
        if !self.run.pause_requested() {
            return;
        }
        self.clocks.start();
        self.timers.get(ClockType::Virtual).set_enabled(true);
        self.run.request_pause(false);
        self.kick_all();
    }

    /// Whether the machine is paused.
    pub fn is_paused(&self) -> bool {
        self.run.pause_requested()
    }

    /// Kick every vCPU.
    pub fn kick_all(&self) {
        for c in &self.cpus {
            c.kick();
        }
    }

    /// Total instructions retired so far (as published by the vCPUs).
    pub fn instructions(&self) -> u64 {
        self.cpus
            .iter()
            .map(|c| c.instret.load(std::sync::atomic::Ordering::Relaxed))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fdt_address_matches_qemu_for_128m() {
        for compat in [Compat::Qemu7_2, Compat::Qemu10_0] {
            assert_eq!(fdt_addr(128 << 20, compat), 0x87e0_0000);
            assert_eq!(fdt_addr(1 << 30, compat), 0xbfe0_0000);
        }
        assert_eq!(fdt_addr(3 << 30, Compat::Qemu7_2), 0xbfe0_0000);
        assert_eq!(fdt_addr(3 << 30, Compat::Qemu10_0), 0x1_3fe0_0000);
        assert_eq!(fdt_addr(8 << 30, Compat::Qemu10_0), 0x2_7fe0_0000);
    }
}
