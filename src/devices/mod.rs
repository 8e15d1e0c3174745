//! Devices of the `virt` board, behind one bus trait.
//!
//! QEMU analogue: `MemoryRegionOps` (`include/exec/memory.h`) — a device is a
//! pair of read/write callbacks on an offset inside its region, with the
//! access sizes it accepts. An access of a size the device does not accept is
//! a bus error, which the guest sees as an access fault (QEMU's
//! `MEMTX_DECODE_ERROR`).
//!
//! Every device takes `&self` and does its own locking (cloud-hypervisor's
//! `BusDeviceSync`); whether the caller also holds the BQL is the BQL policy's
//! choice, and [`MmioDevice::lockless`] says which devices may be reached
//! without it (QEMU's `lockless_io` regions).

pub mod clint;
pub mod finisher;
pub mod plic;
pub mod rom;
pub mod uart;

/// A failed bus access (the guest takes an access fault).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The device does not accept this access size or offset.
    #[error("invalid access")]
    Invalid,
}

/// A device mapped on the bus.
pub trait MmioDevice: Send + Sync {
    /// Read `size` (1, 2, 4 or 8) bytes at `offset`, little-endian.
    fn read(&self, offset: u64, size: u64) -> Result<u64, BusError>;
    /// Write the low `size` bytes of `value` at `offset`, little-endian.
    fn write(&self, offset: u64, size: u64, value: u64) -> Result<(), BusError>;
    /// An instruction fetch from `offset` (only ROM-like devices allow it).
    fn fetch(&self, _offset: u64) -> Option<u32> {
        None
    }
    /// Whether the device does its own locking and may be reached without the
    /// BQL under the `device` policy.
    fn lockless(&self) -> bool {
        false
    }
    /// Return to the power-on state (machine reset).
    fn reset(&self) {}
}

/// Check an access size against `[min, max]` (QEMU's `.valid` sizes).
#[inline]
pub fn check_size(size: u64, min: u64, max: u64) -> Result<(), BusError> {
    if size >= min && size <= max {
        Ok(())
    } else {
        Err(BusError::Invalid)
    }
}
