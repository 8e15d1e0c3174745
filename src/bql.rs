//! The BQL: the one global lock that devices are reached under.
//!
//! QEMU analogue: `qemu_mutex_lock_iothread()` / `bql_lock()` in
//! `system/cpus.c`. vCPU threads run guest code outside it and take it for each
//! device access; the iothread takes it to run timer callbacks. Devices that
//! declare their own locking ([`crate::devices::MmioDevice::lockless`]) are
//! reached without it.

use parking_lot::{Mutex, MutexGuard};

/// The global lock.
#[derive(Default)]
pub struct Bql {
    lock: Mutex<()>,
}

/// Proof that the BQL is held.
pub type BqlGuard<'a> = MutexGuard<'a, ()>;

impl Bql {
    /// A new, unlocked BQL.
    pub fn new() -> Bql {
        Bql::default()
    }

    /// Take the BQL.
    #[inline]
    pub fn lock(&self) -> BqlGuard<'_> {
        self.lock.lock()
    }
}
