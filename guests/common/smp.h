/* Helpers for the SMP guests (link with common/smp_start.S, common/smp.c
 * and common/lib.c instead of common/start.S).
 *
 * Start-up (smp_start.S + smp_boot() in smp.c): hart 0 counts the harts by
 * writing 1 to each CLINT msip[k], k = 0, 1, ... and reading it back (a hart
 * that does not exist reads 0 on QEMU and vcpulab), clearing it again; the
 * count taking part is param(SMP_SLOT_HARTS) if given, else all of them.
 * Every taking-part hart then increments an arrival counter and waits until
 * it reaches that count, so a hart that its host thread starts late is
 * still waited for; harts beyond the count park in wfi with mie = 0.
 * Then smp_main(hartid, nharts) runs on each.
 *
 * Data that harts store to often belongs on a 4 KiB page without code
 * (aligned(4096)): QEMU sends a store to a page holding translated code
 * through its slow path and invalidates that page's TBs. */
#ifndef SMP_H
#define SMP_H

#include "guest.h"

#define SMP_MAX_HARTS   64
#define SMP_SLOT_HARTS  3   /* parameter slot: harts taking part (0 = all) */

/* What each SMP guest defines.  Hart 0's return value is the exit code;
 * other harts park when they return. */
int smp_main(u64 hart, u64 nharts);

/* Test-and-set spinlock (amoswap.w.aq / amoswap.w.rl). */
typedef struct { u32 v; } smp_lock_t;
static inline void smp_lock(smp_lock_t *l) {
    while (__atomic_exchange_n(&l->v, 1, __ATOMIC_ACQUIRE))
        ;
}
static inline void smp_unlock(smp_lock_t *l) { __atomic_store_n(&l->v, 0, __ATOMIC_RELEASE); }

/* Start-up, barrier and print-lock state, on a 4 KiB page of its own in
 * .data (see smp.c). */
struct smp_shared {
    u64 boot_ready, boot_arrived, nharts, bar_count, bar_gen;
    smp_lock_t print_lock;
};
extern struct smp_shared smp_shared;

/* Harts taking part (set before smp_main runs). */
#define smp_nharts (smp_shared.nharts)
/* Lock around printing by harts other than 0 (e.g. trap reports). */
#define smp_print_lock (smp_shared.print_lock)

/* All smp_nharts harts wait here until every one has arrived (reusable). */
void smp_barrier(void);


static inline u64 hartid(void) { return csr_read(mhartid); }

/* The trap handler smp_trap_entry calls (frame[i] = x_i).  The weak default
 * prints "hart H: unexpected trap: ..." under smp_print_lock and exits 99. */
void smp_trap_handler(u64 *frame);

/* Parks the calling hart for good: mie = 0, wfi loop. */
__attribute__((noreturn)) void smp_park(void);

#endif
