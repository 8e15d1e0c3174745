//! Guest and host time: QEMU's clocks ([`clock`], `util/qemu-timer.c` and
//! `system/cpu-timers.c`), timer lists ([`timer`]) and instruction counting
//! ([`icount`], `system/icount.c` and the budgets of
//! `accel/tcg/tcg-accel-ops-icount.c`).

pub mod clock;
pub mod icount;
pub mod timer;
