//! The reset ROM at 0x1000 (QEMU `virt`'s "riscv_virt_board.mrom").
//!
//! QEMU analogue: `riscv_setup_rom_reset_vec()` in `hw/riscv/boot.c`. The ROM
//! holds the same ten words QEMU writes — `auipc t0; addi a2, t0, 40;
//! csrr a0, mhartid; ld a1, 32(t0); ld t0, 24(t0); jr t0` followed by the
//! start address and the device-tree address — and the `fw_dynamic_info`
//! block after them (whose `next_addr` is the kernel's load address). With
//! `-bios none` QEMU's start address is the start of RAM, whatever the ELF's
//! `e_entry` says (`virt_machine_done`: `start_addr = memmap[VIRT_DRAM].base`;
//! checked on QEMU 7.2 and 10.0 with `guests/build/entry_startup.elf`), so that a guest starts with the same registers and the
//! same instruction count as on QEMU. Writes are ignored, as QEMU ignores
//! writes to a ROM region.

use super::{BusError, MmioDevice, check_size};

/// Guest address of the reset ROM.
pub const ROM_BASE: u64 = 0x1000;
/// Size of the ROM region (QEMU `virt`: 0xf000).
pub const ROM_SIZE: u64 = 0xf000;

/// `fw_dynamic_info` magic ("OSBI").
const FW_DYNAMIC_INFO_MAGIC: u64 = 0x4942_534f;
/// `fw_dynamic_info` version.
const FW_DYNAMIC_INFO_VERSION: u64 = 2;
/// `next_mode` for S-mode (what QEMU passes for a `-kernel`).
const FW_DYNAMIC_INFO_NEXT_MODE_S: u64 = 1;

/// The reset ROM's contents.
pub struct Rom {
    bytes: Vec<u8>,
}

impl Rom {
    /// The reset vector jumping to `start` with `a1 = fdt_addr`, and
    /// `fw_dynamic_info.next_addr = next_addr`.
    pub fn new(start: u64, next_addr: u64, fdt_addr: u64) -> Rom {
        let words: [u32; 10] = [
            0x0000_0297, // 1: auipc t0, %pcrel_hi(fw_dyn)
            0x0282_8613, //    addi a2, t0, %pcrel_lo(1b)
            0xf140_2573, //    csrr a0, mhartid
            0x0202_b583, //    ld a1, 32(t0)
            0x0182_b283, //    ld t0, 24(t0)
            0x0002_8067, //    jr t0
            start as u32,
            (start >> 32) as u32,
            fdt_addr as u32,
            (fdt_addr >> 32) as u32,
        ];
        let mut bytes = Vec::with_capacity(ROM_SIZE as usize);
        for w in words {
            bytes.extend_from_slice(&w.to_le_bytes());
        }
        for v in [
            FW_DYNAMIC_INFO_MAGIC,
            FW_DYNAMIC_INFO_VERSION,
            next_addr,
            FW_DYNAMIC_INFO_NEXT_MODE_S,
            0,
            0,
        ] {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        bytes.resize(ROM_SIZE as usize, 0);
        Rom { bytes }
    }
}

impl MmioDevice for Rom {
    fn read(&self, offset: u64, size: u64) -> Result<u64, BusError> {
        check_size(size, 1, 8)?;
        let mut v = 0u64;
        for i in 0..size {
            let b = *self
                .bytes
                .get((offset + i) as usize)
                .ok_or(BusError::Invalid)?;
            v |= (b as u64) << (8 * i);
        }
        Ok(v)
    }

    fn write(&self, _offset: u64, size: u64, _value: u64) -> Result<(), BusError> {
        check_size(size, 1, 8)
    }

    fn fetch(&self, offset: u64) -> Option<u32> {
        self.read(offset, 4).ok().map(|v| v as u32)
    }

    /// Read-only: nothing to lock.
    fn lockless_at(&self, _offset: u64) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_vector_words() {
        let rom = Rom::new(0x8000_0000, 0x7fff_f000, 0x87e0_0000);
        assert_eq!(rom.fetch(0), Some(0x0000_0297));
        assert_eq!(rom.read(24, 8), Ok(0x8000_0000));
        assert_eq!(rom.read(32, 8), Ok(0x87e0_0000));
        assert_eq!(rom.read(0x28, 4), Ok(0x4942_534f));
        assert_eq!(rom.read(0x28 + 16, 8), Ok(0x7fff_f000));
        assert!(rom.write(0, 4, 1).is_ok());
        assert_eq!(rom.fetch(0), Some(0x0000_0297));
    }
}
