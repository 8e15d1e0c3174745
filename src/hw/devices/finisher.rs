//! The SiFive test finisher at 0x0010_0000.
//!
//! QEMU analogue: `hw/misc/sifive_test.c`. A write of `0x5555` ends the run
//! with status 0; `0x3333 | code << 16` ends it with `code` (QEMU calls
//! `exit(code)`, so `code` 0 is success too); `0x7777` resets the machine.
//! Other values are ignored. Reads return 0. Accepted sizes: 2 and 4 bytes.

use std::sync::Arc;

use super::{BusError, MmioDevice, check_size};
use crate::runstate::{ExitReason, ExitStatus, RunState};

/// Guest address of the finisher.
pub const FINISHER_BASE: u64 = 0x0010_0000;
/// Size of its region.
pub const FINISHER_SIZE: u64 = 0x1000;

/// The finisher device.
pub struct Finisher {
    run: Arc<RunState>,
    on_event: Box<dyn Fn() + Send + Sync>,
}

impl Finisher {
    /// A finisher that records the exit in `run` and then calls `on_event`
    /// (which kicks every vCPU).
    pub fn new(run: Arc<RunState>, on_event: Box<dyn Fn() + Send + Sync>) -> Finisher {
        Finisher { run, on_event }
    }
}

impl MmioDevice for Finisher {
    /// A write only records a request in the run state (atomics) and kicks
    /// the vCPUs: nothing for the BQL to protect.
    fn lockless_at(&self, _offset: u64) -> bool {
        true
    }

    fn read(&self, _offset: u64, size: u64) -> Result<u64, BusError> {
        check_size(size, 2, 4)?;
        Ok(0)
    }

    fn write(&self, offset: u64, size: u64, value: u64) -> Result<(), BusError> {
        check_size(size, 2, 4)?;
        if offset != 0 {
            return Ok(());
        }
        let status = value & 0xffff;
        let code = ((value >> 16) & 0xffff) as i32;
        match status {
            0x3333 => self.run.request_shutdown(ExitStatus {
                reason: ExitReason::FinisherFail,
                code: code & 0xff,
            }),
            0x5555 => self.run.request_shutdown(ExitStatus {
                reason: ExitReason::FinisherPass,
                code: 0,
            }),
            0x7777 => self.run.request_reset(),
            _ => return Ok(()),
        }
        (self.on_event)();
        Ok(())
    }
}
