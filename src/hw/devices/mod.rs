//! Devices of the `virt` board, behind one bus trait.
//!
//! QEMU analogue: `MemoryRegionOps` (`include/exec/memory.h`) — a device is a
//! pair of read/write callbacks on an offset inside its region, with the
//! access sizes it accepts. An access of a size the device does not accept is
//! a bus error, which the guest sees as an access fault (QEMU's
//! `MEMTX_DECODE_ERROR`).
//!
//! Two kinds of device, as cloud-hypervisor's `vm-device` bus has them:
//! - [`MmioDevice`] (its `BusDeviceSync`): takes `&self` and does its own
//!   locking, so it is safe to reach from any thread at any time;
//!   [`MmioDevice::lockless_at`] says which of its offsets may be reached
//!   without the BQL under the `device` policy (QEMU's `lockless_io`
//!   regions). The CLINT, the finisher, the ROM and the UART's scratch
//!   register.
//! - [`BusDevice`]: takes `&mut self` and has no lock of its own; the
//!   machine maps it inside a [`BqlDevice`], whose lock *is* the BQL: every
//!   access checks that the calling thread holds it. The PLIC.
//!
//! cloud-hypervisor's blanket impl wraps a `BusDevice` in a mutex of its
//! own; here the wrapper's lock is the BQL, so a device that needs a lock
//! around it is not locked twice (BQL and device mutex) on every access.
//! Which lock is taken for an access is decided in one place,
//! `Machine::mmio_read`/`mmio_write`, by the BQL policy.

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
    /// Whether an access at `offset` may be made without the BQL under the
    /// `device` policy (the device locks itself there).
    fn lockless_at(&self, _offset: u64) -> bool {
        false
    }
    /// Return to the power-on state (machine reset).
    fn reset(&self) {}
}

/// A device without a lock of its own: reached only under the BQL, through
/// a [`BqlDevice`].
pub trait BusDevice: Send {
    /// Read `size` (1, 2, 4 or 8) bytes at `offset`, little-endian.
    fn read(&mut self, offset: u64, size: u64) -> Result<u64, BusError>;
    /// Write the low `size` bytes of `value` at `offset`, little-endian.
    fn write(&mut self, offset: u64, size: u64, value: u64) -> Result<(), BusError>;
    /// Return to the power-on state (machine reset).
    fn reset(&mut self) {}
}

/// A [`BusDevice`] whose lock is the BQL: [`BqlDevice::with`] gives `&mut`
/// access to the device to a thread that holds the BQL, and panics for one
/// that does not (a locking bug, never a guest error).
pub struct BqlDevice<T> {
    bql: std::sync::Arc<crate::sync::bql::Bql>,
    /// Set while a `with` call runs (a re-entrant call would alias).
    busy: std::cell::Cell<bool>,
    dev: std::cell::UnsafeCell<T>,
}

// SAFETY: `dev` and `busy` are touched only inside `with`, which first
// checks that the calling thread holds `bql`, a mutex: so at most one thread
// touches them at a time, and `busy` rules out a second `&mut` on that
// thread. `T: Send` because the device moves between the threads that take
// the BQL.
unsafe impl<T: Send> Sync for BqlDevice<T> {}

impl<T: BusDevice> BqlDevice<T> {
    /// `dev`, protected by `bql`.
    pub fn new(bql: std::sync::Arc<crate::sync::bql::Bql>, dev: T) -> BqlDevice<T> {
        BqlDevice {
            bql,
            busy: std::cell::Cell::new(false),
            dev: std::cell::UnsafeCell::new(dev),
        }
    }

    /// Run `f` on the device. The calling thread must hold the BQL.
    #[track_caller]
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        assert!(
            self.bql.held_here(),
            "a BusDevice reached without the BQL (a locking bug)"
        );
        assert!(!self.busy.replace(true), "a BusDevice re-entered");
        // SAFETY: see the `Sync` impl: this thread holds the BQL, and no
        // other `&mut` to `dev` exists (`busy` was false).
        let r = f(unsafe { &mut *self.dev.get() });
        self.busy.set(false);
        r
    }
}

impl<T: BusDevice> MmioDevice for BqlDevice<T> {
    fn read(&self, offset: u64, size: u64) -> Result<u64, BusError> {
        self.with(|d| d.read(offset, size))
    }
    fn write(&self, offset: u64, size: u64, value: u64) -> Result<(), BusError> {
        self.with(|d| d.write(offset, size, value))
    }
    fn reset(&self) {
        self.with(|d| d.reset())
    }
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
