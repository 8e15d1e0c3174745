//! Run state: how the machine ends (finisher, timeout, error) and reset
//! requests.
//!
//! QEMU analogue: `system/runstate.c` (`qemu_system_shutdown_request`,
//! `qemu_system_reset_request`, `vm_stop`/`vm_start`).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Condvar, Mutex};
use serde::Serialize;

/// Why the machine stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitReason {
    /// The guest wrote PASS (0x5555) to the test finisher.
    FinisherPass,
    /// The guest wrote FAIL (0x3333 | code << 16) to the test finisher.
    FinisherFail,
    /// `--timeout` was reached.
    Timeout,
    /// The monitor's `quit` (or, with code 1, a vCPU thread that ended
    /// without a shutdown request: a host bug).
    Quit,
    /// SIGINT reached the process.
    Sigint,
    /// SIGTERM reached the process.
    Sigterm,
    /// SIGHUP reached the process.
    Sighup,
    /// A host resource failed (the report's `exit.message` names it).
    HostError,
}

impl ExitReason {
    /// The reason for a terminating signal (SIGINT, SIGTERM, SIGHUP).
    pub fn for_signal(signo: i32) -> Option<ExitReason> {
        match signo {
            libc::SIGINT => Some(ExitReason::Sigint),
            libc::SIGTERM => Some(ExitReason::Sigterm),
            libc::SIGHUP => Some(ExitReason::Sighup),
            _ => None,
        }
    }
}

/// How the run ended: the reason and the process exit status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ExitStatus {
    /// Why.
    pub reason: ExitReason,
    /// Process exit status.
    pub code: i32,
}

/// Machine-wide run state shared by every thread.
#[derive(Default)]
pub struct RunState {
    shutdown: AtomicBool,
    exit: Mutex<Option<ExitStatus>>,
    reset_gen: AtomicU64,
    pause_requested: AtomicBool,
    /// Number of vCPUs currently parked because of a pause.
    parked: Mutex<usize>,
    parked_cv: Condvar,
}

impl RunState {
    /// A running machine.
    pub fn new() -> RunState {
        RunState::default()
    }

    /// Request shutdown with `status`; the first request wins.
    pub fn request_shutdown(&self, status: ExitStatus) {
        let mut e = self.exit.lock();
        if e.is_none() {
            *e = Some(status);
        }
        // Release: the exit status is written before the flag is seen.
        self.shutdown.store(true, Ordering::Release);
        drop(e);
        // A thread in `wait_parked` re-checks the flag: take the lock it
        // checks under, so the notification cannot fall between its check
        // and its wait.
        let _p = self.parked.lock();
        self.parked_cv.notify_all();
    }

    /// Whether shutdown was requested.
    #[inline]
    pub fn shutdown_requested(&self) -> bool {
        // Acquire: pairs with `request_shutdown`.
        self.shutdown.load(Ordering::Acquire)
    }

    /// The exit status, once shutdown was requested.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        self.exit.lock().clone()
    }

    /// Ask the vCPUs to pause (the caller kicks them and waits with
    /// [`RunState::wait_parked`]).
    pub fn request_pause(&self, pause: bool) {
        // Release/Acquire: a vCPU that sees the request also sees what the
        // requester did before (e.g. the monitor's state).
        self.pause_requested.store(pause, Ordering::Release);
    }

    /// Whether a pause is requested.
    #[inline]
    pub fn pause_requested(&self) -> bool {
        self.pause_requested.load(Ordering::Acquire)
    }

    /// Called by a vCPU thread when it parks for (`true`) or leaves (`false`)
    /// a pause, for the `vcpus` vCPUs it runs (1, or all of them under
    /// `thread=single`).
    pub fn set_parked(&self, vcpus: usize, parked: bool) {
        let mut n = self.parked.lock();
        if parked {
            *n += vcpus;
        } else {
            *n -= vcpus;
        }
        self.parked_cv.notify_all();
    }

    /// Wait until `n` vCPUs are parked (or shutdown was requested). No
    /// timeout: both ends notify under the lock this checks under.
    pub fn wait_parked(&self, n: usize) {
        let mut p = self.parked.lock();
        while *p < n && !self.shutdown_requested() {
            self.parked_cv.wait(&mut p);
        }
    }

    /// Request a machine reset (finisher 0x7777): bumps the reset generation.
    pub fn request_reset(&self) {
        self.reset_gen.fetch_add(1, Ordering::AcqRel);
    }

    /// The reset generation; a vCPU that sees it change resets itself.
    #[inline]
    pub fn reset_gen(&self) -> u64 {
        self.reset_gen.load(Ordering::Acquire)
    }
}
