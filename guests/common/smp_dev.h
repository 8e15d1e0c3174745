/* Device-synchronised SMP start-up and signalling (link with
 * common/smp_start.S, common/smp_dev.c and common/lib.c instead of
 * common/smp.c): no hart ever spins on RAM that another hart writes, at
 * start-up, in between or at the end.  Harts signal each other only through
 * CLINT msip doorbells, and data passed through RAM is read only after the
 * doorbell that follows it has been seen.  So the harts interact through
 * devices and interrupts alone, and a run whose devices are ordered by
 * virtual time is the same whatever the host's timing.
 *
 * Start-up (smp_boot() in smp_dev.c, called by smp_start.S):
 *   hart 0 counts the harts by writing ~0 to each CLINT mtimecmp[k],
 *   k = 0, 1, ... and reading it back (a hart that does not exist reads 0);
 *   mtimecmp[k] stays ~0 (disarmed).  msip is not used for this: a probe
 *   pulse on msip[k] could wake hart k, which could not tell it from its
 *   start doorbell.  The count taking part is param(SMP_SLOT_HARTS) if
 *   given, else all of them.  Hart 0 stores it in RAM and rings hart 1.
 *   Every other hart waits for its doorbell (smp_dev_wait), reads the count
 *   and rings the next one; the last rings hart 0 (the start lap).  Harts
 *   beyond the count are never rung and stay in wfi.
 *
 * The token: at any moment at most one doorbell is in flight, so a doorbell
 * is never rung twice before its hart has taken it.  A lap passes it
 * 0 -> 1 -> ... -> n-1 -> 0; after the start lap hart 0 holds it.  A hart
 * other than 0 rings only after it has been rung.  With one hart a lap is
 * empty. */
#ifndef SMP_DEV_H
#define SMP_DEV_H

#include "guest.h"

#define SMP_MAX_HARTS   64
#define SMP_SLOT_HARTS  3   /* parameter slot: harts taking part (0 = all) */

/* What each guest defines.  Hart 0's return value is the exit code; other
 * harts park (mie = 0, wfi) when they return. */
int smp_main(u64 hart, u64 nharts);

/* Harts taking part (in RAM; read by harts other than 0 after their start
 * doorbell). */
extern u64 smp_dev_nharts;

static inline u64 hartid(void) { return csr_read(mhartid); }

/* Waits, with mstatus.MIE = 0 (the caller's job), until this hart's msip is
 * pending: mie = MSIE, wfi until mip.MSIP, then writes 0 to its own msip
 * (which clears mip.MSIP at once) and restores mie. */
void smp_dev_wait(void);

/* fence rw,rw (RAM stores before the doorbell), then msip[hart] = 1. */
void smp_dev_ring(u64 hart);

/* One lap of the token (hart 0 starts it and gets it back); empty with one
 * hart. */
void smp_dev_lap(void);

/* Every hart has arrived before any leaves: two laps (the second starts
 * only when hart 0 has the first back).  Hart 0 leaves holding the token. */
void smp_dev_barrier(void);

/* wfi, mstatus.MIE = 0 (the caller's job) and mie = MTIE, until this hart's
 * mtimecmp = deadline has been reached (at once if it has already); then
 * mtimecmp = ~0 and mie restored.  Returns mtime (MMIO) read after the
 * wake-up. */
u64 smp_dev_sleep_until(u64 deadline);

/* smp_dev_sleep_until(mtime (MMIO) + ticks). */
u64 smp_dev_sleep(u64 ticks);

/* The trap handler smp_trap_entry calls (frame[i] = x_i).  The weak default
 * prints "hart H: unexpected trap: ..." and exits 99. */
void smp_trap_handler(u64 *frame);

/* Parks the calling hart for good: mie = 0, wfi loop (smp_start.S). */
__attribute__((noreturn)) void smp_park(void);

#endif
