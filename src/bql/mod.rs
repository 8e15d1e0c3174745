//! The BQL: the one global lock that devices are reached under, built on a
//! chosen lock kind and profiled per call site.
//!
//! QEMU analogue: `bql_lock()` / `qemu_mutex_lock_iothread()` in
//! `system/cpus.c`, with QSP's profile (`util/qsp.c`). vCPU threads run guest
//! code outside it and take it for each device access; the iothread takes it
//! to run timer callbacks. Devices that declare their own locking
//! ([`crate::devices::MmioDevice::lockless`]) are reached without it.
//!
//! The lock is a lock_api [`RawMutex`](lock_api::RawMutex) of one of the
//! [`LockKind`]s ([`raw`]), under one instrumented wrapper ([`Bql`]) that
//! records each acquisition in a [`profile::Profile`]: the lock is tried
//! first, and only a failed try reads the clock, so the uncontended path
//! costs a thread-local lookup and two plain stores more than the bare lock.

pub mod profile;
pub mod raw;

use std::panic::Location;

use lock_api::RawMutex;

pub use profile::{Profile, Snapshot, SortBy};
pub use raw::{AnyRawMutex, LockKind};

/// The global lock.
pub struct Bql {
    raw: AnyRawMutex,
    profile: Profile,
}

impl Default for Bql {
    fn default() -> Self {
        Bql::new()
    }
}

/// Proof that the BQL is held; releases it when dropped. Not `Send`: the
/// thread that took the lock releases it.
pub struct BqlGuard<'a> {
    bql: &'a Bql,
    state: std::mem::ManuallyDrop<raw::AnyGuard>,
    held: Option<profile::Held>,
}

impl Bql {
    /// A new, unlocked BQL on parking_lot, profiled, sampling one hold in
    /// [`profile::DEFAULT_HOLD_SAMPLE`].
    pub fn new() -> Bql {
        Bql::with(LockKind::ParkingLot, true, profile::DEFAULT_HOLD_SAMPLE)
    }

    /// A new, unlocked BQL of `kind`; `profiled` switches the profile on at
    /// start (it can be switched later, as QEMU's `sync-profile on|off`),
    /// timing one hold in `hold_sample`.
    pub fn with(kind: LockKind, profiled: bool, hold_sample: u32) -> Bql {
        Bql {
            raw: AnyRawMutex::new(kind),
            profile: Profile::new(profiled, hold_sample),
        }
    }

    /// The lock kind.
    pub fn kind(&self) -> LockKind {
        self.raw.kind()
    }

    /// The profile.
    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    /// Whether some thread holds the BQL (a momentary snapshot).
    pub fn is_locked(&self) -> bool {
        self.raw.is_locked()
    }

    /// Take the BQL, recording the acquisition at the caller's location.
    #[inline]
    #[track_caller]
    pub fn lock(&self) -> BqlGuard<'_> {
        if !self.profile.enabled() {
            return BqlGuard {
                bql: self,
                state: std::mem::ManuallyDrop::new(self.raw.lock()),
                held: None,
            };
        }
        let site = Location::caller();
        let (g, held) = self
            .profile
            .acquire(site, || self.raw.try_lock(), || self.raw.lock());
        BqlGuard {
            bql: self,
            state: std::mem::ManuallyDrop::new(g),
            held: Some(held),
        }
    }
}

impl Drop for BqlGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        if let Some(h) = &self.held {
            self.bql.profile.released(h);
        }
        // SAFETY: `state` is this guard's own acquisition of `self.bql.raw`;
        // it is taken out once, here, and never touched again.
        unsafe {
            let g = std::mem::ManuallyDrop::take(&mut self.state);
            self.bql.raw.unlock(g);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Every kind excludes: threads increment a counter with a non-atomic
    /// read-modify-write under the lock; no increment is lost.
    #[test]
    fn every_kind_is_a_mutex() {
        for kind in LockKind::ALL {
            let bql = Arc::new(Bql::with(kind, true, 8));
            let counter = Arc::new(AtomicU64::new(0));
            let threads = 4;
            let iters = 20_000;
            std::thread::scope(|s| {
                for _ in 0..threads {
                    let (bql, counter) = (&bql, &counter);
                    s.spawn(move || {
                        for _ in 0..iters {
                            let _g = bql.lock();
                            let v = counter.load(Ordering::Relaxed);
                            std::hint::spin_loop();
                            counter.store(v + 1, Ordering::Relaxed);
                        }
                    });
                }
            });
            assert_eq!(counter.load(Ordering::Relaxed), threads * iters, "{kind:?}");
            assert!(!bql.is_locked(), "{kind:?}");
            let snap = bql.profile().snapshot();
            assert_eq!(snap.acquisitions(), threads * iters, "{kind:?}");
            assert_eq!(snap.wait.len(), snap.contended(), "{kind:?}");
        }
    }

    #[test]
    fn call_sites_are_the_callers() {
        let bql = Bql::with(LockKind::Pthread, true, 1);
        for _ in 0..2 {
            drop(bql.lock());
        }
        drop(bql.lock());
        let sites = bql.profile().snapshot().by_site(true, SortBy::TotalWait);
        assert_eq!(sites.len(), 2, "{sites:?}");
        assert!(
            sites.iter().all(|s| s.site.starts_with("src/bql/mod.rs:")),
            "{sites:?}"
        );
        let mut counts: Vec<u64> = sites.iter().map(|s| s.acquisitions).collect();
        counts.sort();
        assert_eq!(counts, vec![1, 2]);
    }

    #[test]
    fn profile_off_records_nothing() {
        let bql = Bql::with(LockKind::Std, false, 1);
        drop(bql.lock());
        assert_eq!(bql.profile().snapshot().acquisitions(), 0);
        bql.profile().set_enabled(true);
        drop(bql.lock());
        assert_eq!(bql.profile().snapshot().acquisitions(), 1);
    }

    #[test]
    fn ticket_lock_is_fifo() {
        // Holder keeps the lock while two waiters queue in a known order;
        // they must get it in that order.
        let bql = Arc::new(Bql::with(LockKind::Ticket, false, 1));
        let order = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let g = bql.lock();
        std::thread::scope(|s| {
            for i in 0..2u32 {
                let (bql, order) = (&bql, &order);
                s.spawn(move || {
                    let _g = bql.lock();
                    order.lock().push(i);
                });
                // Let thread i take its ticket before the next one starts.
                while match &bql.raw {
                    AnyRawMutex::Ticket(t) => !t.queued(i as usize + 2),
                    _ => unreachable!(),
                } {
                    std::thread::yield_now();
                }
            }
            drop(g);
        });
        assert_eq!(*order.lock(), vec![0, 1]);
    }

    #[test]
    fn kind_names_round_trip() {
        for k in LockKind::ALL {
            assert_eq!(LockKind::parse(k.name()), Ok(k));
        }
        let e = LockKind::parse("spin").unwrap_err().0;
        assert!(
            e.contains("'spin'") && e.contains("parking_lot-fair"),
            "{e}"
        );
    }
}
