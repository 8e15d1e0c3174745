//! Synchronization: the BQL with its lock kinds and profile ([`bql`]), the
//! kick mechanisms ([`kick`]), and the shim below, which names the atomics,
//! `Arc` and parker of the cross-thread vCPU state ([`crate::accel::cpu`]) and
//! of the kicks behind one switch so that their protocols can be
//! model-checked.
//!
//! Why this module exists: a lost wake-up (a kick that lands between the
//! vCPU's "anything to do?" check and its park) shows up in a normal test only
//! as a rare hang. [loom](https://docs.rs/loom) explores every interleaving of a
//! small model instead (and the weak-memory outcomes of its atomics) and
//! reports a deadlock, but it only sees operations on its own types. So, as
//! tokio does, the code names its atomics, `Arc` and parker through this shim:
//!
//! * normal builds re-export `std`'s atomics and `Arc` and crossbeam's
//!   [`Parker`]/[`Unparker`]: exactly the types used before, nothing changes;
//! * `RUSTFLAGS="--cfg loom"` builds re-export loom's atomics and `Arc`, and a
//!   `Parker`/`Unparker` pair with crossbeam's token semantics (an `unpark`
//!   before `park` is not lost; tokens do not accumulate) built on loom's
//!   `Mutex` and `Condvar`. Under loom the crate is reduced to this module and
//!   [`crate::accel::cpu`], whose `loom_tests` are the models:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release --lib loom
//! ```

#[cfg(not(loom))]
pub mod bql;
pub mod kick;

#[cfg(not(loom))]
pub use std::sync::Arc;
#[cfg(not(loom))]
pub use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};

#[cfg(not(loom))]
pub use crossbeam_utils::sync::{Parker, Unparker};

#[cfg(loom)]
pub use loom::sync::Arc;
#[cfg(loom)]
pub use loom::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};

#[cfg(loom)]
pub use self::loom_parker::{Parker, Unparker};

#[cfg(not(loom))]
pub use parking_lot::{Mutex, MutexGuard};

#[cfg(loom)]
pub use self::loom_mutex::{Mutex, MutexGuard};

/// A mutex with parking_lot's interface (`lock` returns the guard) over
/// loom's, for the models.
#[cfg(loom)]
mod loom_mutex {
    /// See the module.
    #[derive(Debug)]
    pub struct Mutex<T>(loom::sync::Mutex<T>);

    /// The guard of [`Mutex`].
    pub type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

    impl<T> Mutex<T> {
        /// A mutex holding `t`.
        pub fn new(t: T) -> Mutex<T> {
            Mutex(loom::sync::Mutex::new(t))
        }

        /// Lock it (a model never poisons it).
        pub fn lock(&self) -> MutexGuard<'_, T> {
            self.0.lock().expect("not poisoned")
        }
    }
}

#[cfg(loom)]
mod loom_parker {
    use std::fmt;
    use std::time::Duration;

    use loom::sync::{Arc, Condvar, Mutex};

    struct Inner {
        /// The token: set by `unpark`, consumed by `park`.
        token: Mutex<bool>,
        cvar: Condvar,
    }

    /// A thread parker with crossbeam's token semantics, visible to loom.
    pub struct Parker {
        unparker: Unparker,
    }

    /// Wakes the thread that owns the matching [`Parker`]; cloneable, `Send`
    /// and `Sync`, as crossbeam's.
    #[derive(Clone)]
    pub struct Unparker {
        inner: Arc<Inner>,
    }

    impl Parker {
        /// A parker without a token.
        pub fn new() -> Parker {
            Parker {
                unparker: Unparker {
                    inner: Arc::new(Inner {
                        token: Mutex::new(false),
                        cvar: Condvar::new(),
                    }),
                },
            }
        }

        /// Block until the token is available, then consume it.
        pub fn park(&self) {
            let inner = &self.unparker.inner;
            let mut token = inner.token.lock().unwrap();
            while !*token {
                token = inner.cvar.wait(token).unwrap();
            }
            *token = false;
        }

        /// As [`Parker::park`] with a timeout. Loom has no clock, so the
        /// timeout is taken to expire at once: the token is consumed if it is
        /// there, and the call never blocks (a legal schedule of the real one).
        pub fn park_timeout(&self, _timeout: Duration) {
            *self.unparker.inner.token.lock().unwrap() = false;
        }

        /// The unparker of this parker.
        pub fn unparker(&self) -> &Unparker {
            &self.unparker
        }
    }

    impl Default for Parker {
        fn default() -> Parker {
            Parker::new()
        }
    }

    impl Unparker {
        /// Make the token available, waking the parked thread if any.
        pub fn unpark(&self) {
            let mut token = self.inner.token.lock().unwrap();
            *token = true;
            drop(token);
            self.inner.cvar.notify_one();
        }
    }

    impl fmt::Debug for Parker {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Parker { .. }")
        }
    }

    impl fmt::Debug for Unparker {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("Unparker { .. }")
        }
    }
}

/// Runs the `#[ignore]`d loom model `test` (a full path such as
/// `accel::cpu::loom_tests::broken_kick_before_mip`) in a child test process and
/// asserts that loom reports a deadlock there. The control models that must
/// fail run this way because loom aborts the process while cleaning up after
/// the deadlock it found.
#[cfg(all(test, loom))]
pub(crate) fn assert_loom_finds_deadlock(test: &str) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", test])
        .args(["--test-threads", "1", "--nocapture"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("deadlock"),
        "loom did not report the deadlock of {test} ({}):\n{stderr}",
        out.status
    );
}
