//! The BQL: the one global lock that devices are reached under, built on a
//! chosen lock kind and profiled per call site.
//!
//! QEMU analogue: `bql_lock()` / `qemu_mutex_lock_iothread()` in
//! `system/cpus.c`, with QSP's profile (`util/qsp.c`). vCPU threads run guest
//! code outside it and take it for each device access; the iothread takes it
//! to run timer callbacks. Devices that declare their own locking
//! ([`crate::hw::devices::MmioDevice::lockless`]) are reached without it.
//!
//! The lock is a lock_api [`RawMutex`](lock_api::RawMutex) of one of the
//! [`LockKind`]s ([`raw`]), under one instrumented wrapper ([`Bql`]) that
//! records each acquisition in a [`profile::Profile`]: the lock is tried
//! first, and only a failed try reads the clock, so the uncontended path
//! costs a thread-local lookup and two plain stores more than the bare lock.

pub mod profile;
pub mod raw;

use std::cell::Cell;
use std::panic::Location;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use lock_api::RawMutex;
use serde::Serialize;

pub use profile::{Profile, Snapshot, SortBy};
pub use raw::{AnyRawMutex, LockKind};

use crate::config::ConfigError;

/// When the BQL is taken (`--bql`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BqlPolicy {
    /// A vCPU holds the BQL while it executes guest code and drops it only
    /// at exits that wait, or when another thread wants it (single-threaded
    /// TCG before MTTCG).
    Always,
    /// vCPUs run outside the BQL and take it around each device access (KVM,
    /// MTTCG).
    #[default]
    Mmio,
    /// As `mmio`, but devices that do their own locking are reached without
    /// the BQL (QEMU's `lockless_io` regions).
    Device,
}

impl BqlPolicy {
    /// Every policy.
    pub const ALL: [BqlPolicy; 3] = [BqlPolicy::Always, BqlPolicy::Mmio, BqlPolicy::Device];

    /// The name as `--bql` spells it.
    pub fn name(self) -> &'static str {
        match self {
            BqlPolicy::Always => "always",
            BqlPolicy::Mmio => "mmio",
            BqlPolicy::Device => "device",
        }
    }

    /// Parse a `--bql` value.
    pub fn parse(s: &str) -> Result<BqlPolicy, ConfigError> {
        BqlPolicy::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| {
                ConfigError(format!(
                    "invalid --bql '{s}': expected one of always, mmio, device"
                ))
            })
    }
}

thread_local! {
    /// The id of the BQL this thread holds, 0 for none (QEMU's
    /// `bql_locked()` is the same per-thread flag).
    static HELD: Cell<u64> = const { Cell::new(0) };
    /// Set while this thread takes the BQL in [`Bql::lock_for_execution`]:
    /// a vCPU that waits for it is counted apart from other threads.
    static FOR_EXECUTION: Cell<bool> = const { Cell::new(false) };
}

/// Under `always`, how long a vCPU may hold the BQL for execution while
/// only other vCPUs want it (threads that are not vCPUs get it at the
/// holder's next exit). Without it the vCPUs would hand the lock over at
/// every TB boundary, a few hundred ns of guest work per hand-over; this is
/// the time slice QEMU's single-threaded TCG gave each vCPU (its kick timer,
/// 100 ms there), scaled to what a lab run lasts.
pub const VCPU_SLICE: std::time::Duration = std::time::Duration::from_millis(1);

/// While other vCPUs wait for its slice to end, the holder executes at most
/// this many instructions before it looks at the clock again.
pub const VCPU_SLICE_CHECK_INSNS: u64 = 1 << 16;

/// One waiter in the low half of [`Bql`]'s `wanted` word.
const WANTED_ONE: u64 = 1;
/// One vCPU waiter in its high half.
const WANTED_VCPU: u64 = 1 << 32;
const WANTED_LOW: u64 = WANTED_VCPU - 1;

/// No vCPU holds the BQL for execution.
const NO_HOLDER: usize = usize::MAX;

/// The global lock.
pub struct Bql {
    raw: AnyRawMutex,
    profile: Profile,
    /// Threads waiting to take the BQL from a vCPU that holds it while it
    /// executes (`always`; QEMU's `iothread_requesting_mutex`): all of them
    /// in the low 32 bits, those that are vCPUs ([`Bql::lock_for_execution`])
    /// also in the high 32 bits, so one load reads both consistently.
    wanted: AtomicU64,
    /// Times a thread had to ask an executing holder to let go.
    wanted_requests: AtomicU64,
    /// The vCPU that holds the BQL while executing, or [`NO_HOLDER`].
    holder: AtomicUsize,
    /// Asks vCPU `n` to leave guest code (set once by the machine).
    kick: OnceLock<Box<dyn Fn(usize) + Send + Sync>>,
    /// A vCPU that gave the BQL up for the threads that wanted it sleeps
    /// here until they have all had it (`wanted` back to 0).
    handed: parking_lot::Mutex<()>,
    handed_cv: parking_lot::Condvar,
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
            wanted: AtomicU64::new(0),
            wanted_requests: AtomicU64::new(0),
            holder: AtomicUsize::new(NO_HOLDER),
            kick: OnceLock::new(),
            handed: parking_lot::Mutex::new(()),
            handed_cv: parking_lot::Condvar::new(),
        }
    }

    /// A number that identifies this BQL among all of the process's.
    pub fn id(&self) -> u64 {
        self.profile.id()
    }

    /// Set how a thread that wants the BQL asks the vCPU holding it while
    /// executing to let go (`kick(vcpu)`); once, by the machine.
    pub fn set_kick(&self, kick: Box<dyn Fn(usize) + Send + Sync>) {
        let _ = self.kick.set(kick);
    }

    /// Whether the calling thread holds this BQL (QEMU's `bql_locked()`).
    #[inline]
    pub fn held_here(&self) -> bool {
        HELD.with(|h| h.get()) == self.id()
    }

    /// Take the BQL unless the calling thread holds it already.
    #[inline]
    #[track_caller]
    pub fn lock_unless_held(&self) -> Option<BqlGuard<'_>> {
        // Not `then(|| …)`: a closure would become the call site.
        if self.held_here() {
            None
        } else {
            Some(self.lock())
        }
    }

    /// Take the BQL to execute guest code as vCPU `vcpu` (`always`): while
    /// it is held this way, a thread that wants it kicks `vcpu`, which lets
    /// go at its next exit (after its [`VCPU_SLICE`] if only vCPUs want it).
    /// Returns `None` if a thread that is not a vCPU asked for it in the
    /// meantime (the caller should not run now: it would not notice).
    #[track_caller]
    pub fn lock_for_execution(&self, vcpu: usize) -> Option<BqlGuard<'_>> {
        FOR_EXECUTION.with(|c| c.set(true));
        let g = self.lock();
        FOR_EXECUTION.with(|c| c.set(false));
        // SeqCst, paired with the SeqCst increment of `wanted` and load of
        // `holder` in `raw_lock` (a store-load pair on each side): either
        // the waiter sees this holder and kicks it, or this load sees the
        // waiter's increment — and gives the lock up at once for a thread
        // that is not a vCPU, or starts its slice for a vCPU.
        self.holder.store(vcpu, Ordering::SeqCst);
        let (all, vcpus) = split_wanted(self.wanted.load(Ordering::SeqCst));
        if all > vcpus {
            return None;
        }
        Some(g)
    }

    /// Threads waiting for a vCPU that holds the BQL while executing to let
    /// go, and how many of them are vCPUs: the holder releases it at its next
    /// exit while the first exceeds the second, and once its slice is over
    /// while vCPUs wait.
    #[inline]
    pub fn wanted(&self) -> (usize, usize) {
        // Relaxed: a hint checked at every exit; the protocol's ordering is
        // in `lock_for_execution`.
        split_wanted(self.wanted.load(Ordering::Relaxed))
    }

    /// How many times a thread found the BQL held by an executing vCPU and
    /// asked it to let go.
    pub fn wanted_requests(&self) -> u64 {
        self.wanted_requests.load(Ordering::Relaxed)
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
    /// Panics if the calling thread holds it already (it is not recursive;
    /// see [`Bql::lock_unless_held`]).
    #[inline]
    #[track_caller]
    pub fn lock(&self) -> BqlGuard<'_> {
        assert!(!self.held_here(), "the BQL is not recursive");
        let g = if !self.profile.enabled() {
            BqlGuard {
                bql: self,
                state: std::mem::ManuallyDrop::new(self.raw_lock()),
                held: None,
            }
        } else {
            let site = Location::caller();
            let (g, held) = self
                .profile
                .acquire(site, || self.raw.try_lock(), || self.raw_lock());
            BqlGuard {
                bql: self,
                state: std::mem::ManuallyDrop::new(g),
                held: Some(held),
            }
        };
        HELD.with(|h| h.set(self.id()));
        g
    }

    /// The blocking acquisition: if a vCPU holds the BQL while executing,
    /// ask it to let go first (`wanted` + a kick), as QEMU's iothread did
    /// with `iothread_requesting_mutex`.
    #[inline]
    fn raw_lock(&self) -> raw::AnyGuard {
        if let Some(g) = self.raw.try_lock() {
            return g;
        }
        self.raw_lock_wanted()
    }

    #[cold]
    #[inline(never)]
    fn raw_lock_wanted(&self) -> raw::AnyGuard {
        let one = if FOR_EXECUTION.with(|c| c.get()) {
            WANTED_ONE | WANTED_VCPU
        } else {
            WANTED_ONE
        };
        // SeqCst: see `lock_for_execution`. An executing holder checks
        // `wanted` at every exit and lets go while it is non-zero.
        self.wanted.fetch_add(one, Ordering::SeqCst);
        let holder = self.holder.load(Ordering::SeqCst);
        if holder != NO_HOLDER {
            self.wanted_requests.fetch_add(1, Ordering::Relaxed);
            if let Some(kick) = self.kick.get() {
                kick(holder);
            }
        }
        let g = self.raw.lock();
        if self.wanted.fetch_sub(one, Ordering::SeqCst) & WANTED_LOW == 1 {
            // The last one in: wake a vCPU waiting in `wait_until_not_wanted`
            // (notified under the mutex it checks `wanted` under, so the
            // wake-up cannot fall between its check and its sleep).
            let _m = self.handed.lock();
            self.handed_cv.notify_all();
        }
        g
    }

    /// After giving the BQL up (`always`): sleep until every thread that
    /// wanted it has had it, so that a barging lock does not hand it straight
    /// back to this vCPU. The caller must not hold the BQL.
    pub fn wait_until_not_wanted(&self) {
        let mut m = self.handed.lock();
        while self.wanted.load(Ordering::SeqCst) & WANTED_LOW > 0 {
            self.handed_cv.wait(&mut m);
        }
    }
}

/// (all waiters, vCPU waiters) of a `wanted` word.
#[inline]
fn split_wanted(w: u64) -> (usize, usize) {
    ((w & WANTED_LOW) as usize, (w >> 32) as usize)
}

impl Drop for BqlGuard<'_> {
    #[inline]
    fn drop(&mut self) {
        HELD.with(|h| h.set(0));
        // Only the thread that holds the BQL writes `holder` (in
        // `lock_for_execution` and here), so load + store is enough;
        // SeqCst as its other accesses.
        if self.bql.holder.load(Ordering::Relaxed) != NO_HOLDER {
            self.bql.holder.store(NO_HOLDER, Ordering::SeqCst);
        }
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
            sites
                .iter()
                .all(|s| s.site.starts_with("src/sync/bql/mod.rs:")),
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
