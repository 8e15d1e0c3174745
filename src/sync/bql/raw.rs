//! The lock kinds the BQL can be built on, each behind lock_api's
//! [`RawMutex`] trait, and [`AnyRawMutex`], which picks one at run time.
//!
//! QEMU analogue: `QemuMutex` (`util/qemu-thread-posix.c`), a glibc
//! `pthread_mutex_t` with default attributes. The other kinds are the
//! alternatives an experiment compares it with:
//!
//! | kind | what it is | unlock |
//! |---|---|---|
//! | `parking_lot` | `parking_lot::RawMutex` (0.13: no automatic eventual fairness) | barging: a running thread may take the lock before a woken waiter |
//! | `parking_lot-fair` | the same lock | `unlock_fair` every time: handed to the next waiter |
//! | `std` | `std::sync::Mutex<()>` (a futex lock on Linux) | barging |
//! | `pthread` | glibc `pthread_mutex_t`, default (normal) type, as `QemuMutex` | barging |
//! | `ticket` | a FIFO ticket lock: spins briefly, then yields the CPU | strict FIFO |

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicU32, Ordering};

use crossbeam_utils::Backoff;
use lock_api::{GuardSend, RawMutex};
use serde::Serialize;

use crate::config::ConfigError;

/// Which raw mutex the BQL uses (`--bql-lock`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum LockKind {
    /// `parking_lot::RawMutex`, unfair unlock.
    #[default]
    #[serde(rename = "parking_lot")]
    ParkingLot,
    /// `parking_lot::RawMutex`, fair unlock every time.
    #[serde(rename = "parking_lot-fair")]
    ParkingLotFair,
    /// `std::sync::Mutex<()>`.
    #[serde(rename = "std")]
    Std,
    /// glibc's `pthread_mutex_t` (QEMU's `QemuMutex`).
    #[serde(rename = "pthread")]
    Pthread,
    /// A FIFO ticket lock.
    #[serde(rename = "ticket")]
    Ticket,
}

impl LockKind {
    /// Every kind, in the order of `--bql-lock`'s help.
    pub const ALL: [LockKind; 5] = [
        LockKind::ParkingLot,
        LockKind::ParkingLotFair,
        LockKind::Std,
        LockKind::Pthread,
        LockKind::Ticket,
    ];

    /// The name as `--bql-lock` spells it.
    pub fn name(self) -> &'static str {
        match self {
            LockKind::ParkingLot => "parking_lot",
            LockKind::ParkingLotFair => "parking_lot-fair",
            LockKind::Std => "std",
            LockKind::Pthread => "pthread",
            LockKind::Ticket => "ticket",
        }
    }

    /// Parse a `--bql-lock` value.
    pub fn parse(s: &str) -> Result<LockKind, ConfigError> {
        LockKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = LockKind::ALL.iter().map(|k| k.name()).collect();
                ConfigError(format!(
                    "invalid --bql-lock '{s}': expected one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// `parking_lot::RawMutex` with a fair unlock every time.
pub struct FairRawMutex(parking_lot::RawMutex);

// SAFETY: delegates to parking_lot's RawMutex, which upholds the contract;
// `unlock_fair` is a valid way to release it.
unsafe impl RawMutex for FairRawMutex {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = FairRawMutex(<parking_lot::RawMutex as RawMutex>::INIT);
    type Guard = <parking_lot::RawMutex as RawMutex>::Guard;

    #[inline]
    fn lock(&self) -> Self::Guard {
        self.0.lock()
    }

    #[inline]
    fn try_lock(&self) -> Option<Self::Guard> {
        self.0.try_lock()
    }

    #[inline]
    unsafe fn unlock(&self, guard: Self::Guard) {
        // SAFETY: the caller holds the lock (this trait method's contract).
        unsafe { lock_api::RawMutexFair::unlock_fair(&self.0, guard) }
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.0.is_locked()
    }
}

/// `std::sync::Mutex<()>` as a raw mutex. Poisoning is ignored: the mutex
/// protects no data of its own.
pub struct StdRawMutex(std::sync::Mutex<()>);

// SAFETY: mutual exclusion is std's; the guard keeps the std lock held until
// `unlock` drops it.
unsafe impl RawMutex for StdRawMutex {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = StdRawMutex(std::sync::Mutex::new(()));
    // Holding a std guard is what holding the lock means; it is `!Send`, as
    // std requires the unlocking thread to be the locking one.
    type Guard = std::sync::MutexGuard<'static, ()>;

    #[inline]
    fn lock(&self) -> Self::Guard {
        let g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the guard borrows `self.0`; lock_api's contract has the
        // guard handed back to `unlock` on this same mutex, which happens
        // while the mutex is alive (a held lock cannot be dropped or moved,
        // since the caller holds a borrow of it), so the extended lifetime is
        // never observed.
        unsafe {
            std::mem::transmute::<std::sync::MutexGuard<'_, ()>, std::sync::MutexGuard<'static, ()>>(
                g,
            )
        }
    }

    #[inline]
    fn try_lock(&self) -> Option<Self::Guard> {
        let g = match self.0.try_lock() {
            Ok(g) => g,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        // SAFETY: as in `lock`.
        Some(unsafe {
            std::mem::transmute::<std::sync::MutexGuard<'_, ()>, std::sync::MutexGuard<'static, ()>>(
                g,
            )
        })
    }

    #[inline]
    unsafe fn unlock(&self, guard: Self::Guard) {
        drop(guard);
    }

    #[inline]
    fn is_locked(&self) -> bool {
        matches!(self.0.try_lock(), Err(std::sync::TryLockError::WouldBlock))
    }
}

/// glibc's `pthread_mutex_t` with default attributes, as QEMU's `QemuMutex`
/// (`qemu_mutex_init` passes no attributes).
pub struct PthreadRawMutex(UnsafeCell<libc::pthread_mutex_t>);

// SAFETY: a pthread mutex is made to be shared between threads; every access
// goes through the pthread functions.
unsafe impl Sync for PthreadRawMutex {}
// SAFETY: an unlocked, statically initialised glibc mutex holds no
// thread-specific state and may move between threads.
unsafe impl Send for PthreadRawMutex {}

// SAFETY: pthread_mutex_lock/trylock/unlock give mutual exclusion; the guard
// is `!Send` because a default pthread mutex must be unlocked by its owner.
unsafe impl RawMutex for PthreadRawMutex {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = PthreadRawMutex(UnsafeCell::new(libc::PTHREAD_MUTEX_INITIALIZER));
    type Guard = lock_api::GuardNoSend;

    #[inline]
    fn lock(&self) -> Self::Guard {
        // SAFETY: the mutex is initialised (static initialiser) and is not
        // moved while locked (it is borrowed for as long as it is held).
        let r = unsafe { libc::pthread_mutex_lock(self.0.get()) };
        assert_eq!(r, 0, "pthread_mutex_lock failed: {r}");
        lock_api::GuardNoSend::new()
    }

    #[inline]
    fn try_lock(&self) -> Option<Self::Guard> {
        // SAFETY: as in `lock`.
        let r = unsafe { libc::pthread_mutex_trylock(self.0.get()) };
        (r == 0).then(lock_api::GuardNoSend::new)
    }

    #[inline]
    unsafe fn unlock(&self, _guard: Self::Guard) {
        // SAFETY: the caller holds the lock, taken on this thread.
        let r = unsafe { libc::pthread_mutex_unlock(self.0.get()) };
        debug_assert_eq!(r, 0, "pthread_mutex_unlock failed: {r}");
    }

    #[inline]
    fn is_locked(&self) -> bool {
        match self.try_lock() {
            Some(g) => {
                // SAFETY: just taken by this thread.
                unsafe { self.unlock(g) };
                false
            }
            None => true,
        }
    }
}

impl Drop for PthreadRawMutex {
    fn drop(&mut self) {
        // SAFETY: `&mut self`: nobody holds or waits for the mutex.
        unsafe { libc::pthread_mutex_destroy(self.0.get()) };
    }
}

/// A FIFO ticket lock: each locker takes the next ticket and waits until it
/// is served, spinning a little and then yielding the CPU (a pure spin lock
/// would burn a whole time slice whenever threads outnumber cores, which
/// they do on purpose in the experiments).
pub struct TicketRawMutex {
    next: AtomicU32,
    serving: AtomicU32,
}

// SAFETY: a thread holds the lock exactly while `serving` equals its ticket;
// tickets are unique (fetch_add), and only the holder advances `serving`.
unsafe impl RawMutex for TicketRawMutex {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = TicketRawMutex {
        next: AtomicU32::new(0),
        serving: AtomicU32::new(0),
    };
    type Guard = GuardSend;

    #[inline]
    fn lock(&self) -> Self::Guard {
        // Relaxed: the ticket only orders lockers among themselves; the
        // Acquire load of `serving` below is what synchronises with the
        // previous holder's Release store.
        let t = self.next.fetch_add(1, Ordering::Relaxed);
        let backoff = Backoff::new();
        while self.serving.load(Ordering::Acquire) != t {
            backoff.snooze();
        }
        GuardSend::new()
    }

    #[inline]
    fn try_lock(&self) -> Option<Self::Guard> {
        // Acquire: pairs with the Release in `unlock` (the previous holder's
        // writes are visible once `serving` reads as our ticket).
        let s = self.serving.load(Ordering::Acquire);
        self.next
            .compare_exchange(s, s.wrapping_add(1), Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| GuardSend::new())
    }

    #[inline]
    unsafe fn unlock(&self, _guard: Self::Guard) {
        // Only the holder writes `serving`, so load + store is enough;
        // Release publishes the critical section to the next ticket holder.
        let s = self.serving.load(Ordering::Relaxed);
        self.serving.store(s.wrapping_add(1), Ordering::Release);
    }

    #[inline]
    fn is_locked(&self) -> bool {
        self.next.load(Ordering::Relaxed) != self.serving.load(Ordering::Relaxed)
    }
}

impl TicketRawMutex {
    /// Whether at least `n` tickets have been taken (holder included).
    pub fn queued(&self, n: usize) -> bool {
        let next = self.next.load(Ordering::Relaxed);
        let serving = self.serving.load(Ordering::Relaxed);
        next.wrapping_sub(serving) as usize >= n
    }
}

/// One of the kinds, chosen at run time; itself a lock_api [`RawMutex`].
/// Dispatch is a `match` on a value that never changes, which the branch
/// predictor learns at once.
pub enum AnyRawMutex {
    /// See [`LockKind::ParkingLot`].
    ParkingLot(parking_lot::RawMutex),
    /// See [`LockKind::ParkingLotFair`].
    ParkingLotFair(FairRawMutex),
    /// See [`LockKind::Std`].
    Std(StdRawMutex),
    /// See [`LockKind::Pthread`].
    Pthread(PthreadRawMutex),
    /// See [`LockKind::Ticket`].
    Ticket(TicketRawMutex),
}

/// The guard state of an [`AnyRawMutex`] acquisition.
pub enum AnyGuard {
    /// parking_lot (fair or not) or the ticket lock: no state.
    Plain,
    /// A std guard (holding it is holding the lock).
    Std(std::sync::MutexGuard<'static, ()>),
    /// A pthread acquisition (its marker keeps the guard `!Send`).
    Pthread(lock_api::GuardNoSend),
}

impl AnyRawMutex {
    /// An unlocked mutex of `kind`.
    pub fn new(kind: LockKind) -> AnyRawMutex {
        match kind {
            LockKind::ParkingLot => {
                AnyRawMutex::ParkingLot(<parking_lot::RawMutex as RawMutex>::INIT)
            }
            LockKind::ParkingLotFair => AnyRawMutex::ParkingLotFair(FairRawMutex::INIT),
            LockKind::Std => AnyRawMutex::Std(StdRawMutex::INIT),
            LockKind::Pthread => AnyRawMutex::Pthread(PthreadRawMutex::INIT),
            LockKind::Ticket => AnyRawMutex::Ticket(TicketRawMutex::INIT),
        }
    }

    /// Its kind.
    pub fn kind(&self) -> LockKind {
        match self {
            AnyRawMutex::ParkingLot(_) => LockKind::ParkingLot,
            AnyRawMutex::ParkingLotFair(_) => LockKind::ParkingLotFair,
            AnyRawMutex::Std(_) => LockKind::Std,
            AnyRawMutex::Pthread(_) => LockKind::Pthread,
            AnyRawMutex::Ticket(_) => LockKind::Ticket,
        }
    }
}

// SAFETY: every arm delegates to a RawMutex implementation and hands back
// the guard state that arm produced (the variant never changes).
unsafe impl RawMutex for AnyRawMutex {
    #[allow(clippy::declare_interior_mutable_const)]
    const INIT: Self = AnyRawMutex::ParkingLot(<parking_lot::RawMutex as RawMutex>::INIT);
    // `!Send`: std and pthread guards must be released by the thread that
    // took them.
    type Guard = AnyGuard;

    #[inline]
    fn lock(&self) -> AnyGuard {
        match self {
            AnyRawMutex::ParkingLot(m) => {
                m.lock();
                AnyGuard::Plain
            }
            AnyRawMutex::ParkingLotFair(m) => {
                m.lock();
                AnyGuard::Plain
            }
            AnyRawMutex::Std(m) => AnyGuard::Std(m.lock()),
            AnyRawMutex::Pthread(m) => AnyGuard::Pthread(m.lock()),
            AnyRawMutex::Ticket(m) => {
                m.lock();
                AnyGuard::Plain
            }
        }
    }

    #[inline]
    fn try_lock(&self) -> Option<AnyGuard> {
        match self {
            AnyRawMutex::ParkingLot(m) => m.try_lock().map(|_| AnyGuard::Plain),
            AnyRawMutex::ParkingLotFair(m) => m.try_lock().map(|_| AnyGuard::Plain),
            AnyRawMutex::Std(m) => m.try_lock().map(AnyGuard::Std),
            AnyRawMutex::Pthread(m) => m.try_lock().map(AnyGuard::Pthread),
            AnyRawMutex::Ticket(m) => m.try_lock().map(|_| AnyGuard::Plain),
        }
    }

    #[inline]
    unsafe fn unlock(&self, guard: AnyGuard) {
        // SAFETY: (every arm) the caller holds the lock and passes the guard
        // state this mutex's own `lock`/`try_lock` returned.
        unsafe {
            match (self, guard) {
                (AnyRawMutex::ParkingLot(m), _) => m.unlock(parking_lot_guard()),
                (AnyRawMutex::ParkingLotFair(m), _) => m.unlock(parking_lot_guard()),
                (AnyRawMutex::Std(m), AnyGuard::Std(g)) => m.unlock(g),
                (AnyRawMutex::Pthread(m), AnyGuard::Pthread(g)) => m.unlock(g),
                (AnyRawMutex::Ticket(m), _) => m.unlock(GuardSend::new()),
                _ => unreachable!("guard of another lock kind"),
            }
        }
    }

    #[inline]
    fn is_locked(&self) -> bool {
        match self {
            AnyRawMutex::ParkingLot(m) => m.is_locked(),
            AnyRawMutex::ParkingLotFair(m) => m.is_locked(),
            AnyRawMutex::Std(m) => m.is_locked(),
            AnyRawMutex::Pthread(m) => m.is_locked(),
            AnyRawMutex::Ticket(m) => m.is_locked(),
        }
    }
}

/// parking_lot's guard state is a zero-sized marker; a fresh one stands for
/// the one its `lock` returned.
#[inline(always)]
fn parking_lot_guard() -> <parking_lot::RawMutex as RawMutex>::Guard {
    Default::default()
}
