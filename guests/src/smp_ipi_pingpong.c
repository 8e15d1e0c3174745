/* smp_ipi_pingpong: hart 0 and hart 1 wake each other `iters` times with
 * CLINT msip software interrupts.  mie = MSIE on both; each waits with
 * mstatus.MIE = 0 by: check its interrupt count, wfi (wakes on the pending
 * MSIP), then open a window (csrs/csrc mstatus.MIE) in which the interrupt
 * is taken; the trap handler clears the hart's own msip and counts.  So no
 * wake-up is lost between the check and the wfi.
 * Round trip k: hart 0 sets msip[1] and waits for its k-th interrupt; hart 1
 * waits for its k-th interrupt and sets msip[0].  With one hart, hart 0
 * interrupts itself (msip[0]).  Harts 2.. only wait at the barriers.
 * Parameters: slot 0 = iters (default 1 000), slot 3 = harts (0 = all).
 * Exit 1 if a count differs from iters. */
#include "smp.h"

static volatile u64 msi_count[SMP_MAX_HARTS] __attribute__((aligned(4096))); /* no code there */

void smp_trap_handler(u64 *frame) {
    u64 hart = hartid();
    if (csr_read(mcause) == (CAUSE_INT | 3)) {
        mmio_w32(CLINT_MSIP + 4 * hart, 0);
        msi_count[hart]++;
        return;
    }
    smp_lock(&smp_print_lock);
    puts("hart ");
    put_dec(hart);
    puts(": ");
    unexpected_trap(frame);
}

static void wait_for(u64 hart, u64 k) {
    while (msi_count[hart] < k) {
        __asm__ volatile("wfi" ::: "memory");
        csr_set(mstatus, MSTATUS_MIE);
        csr_clear(mstatus, MSTATUS_MIE);
    }
}

int smp_main(u64 hart, u64 n) {
    u64 iters = param(0, 1000);
    u64 partner = n > 1 ? 1 : 0;
    if (hart == 0) {
        puts("smp_ipi_pingpong harts=");
        put_dec(n);
        puts(" iters=");
        put_dec(iters);
        puts(n > 1 ? " between hart 0 and hart 1\n" : " hart 0 interrupts itself\n");
    }
    if (hart <= partner)
        csr_write(mie, MIP_MSIP);
    smp_barrier();
    if (hart == 0) {
        for (u64 k = 1; k <= iters; k++) {
            mmio_w32(CLINT_MSIP + 4 * partner, 1);
            wait_for(0, k);
        }
    } else if (hart == 1) {
        for (u64 k = 1; k <= iters; k++) {
            wait_for(1, k);
            mmio_w32(CLINT_MSIP, 1);
        }
    }
    csr_write(mie, 0);
    smp_barrier();
    if (hart != 0)
        return 0;
    u64 bad = 0;
    puts("round trips=");
    put_dec(iters);
    putc('\n');
    for (u64 h = 0; h <= partner; h++) {
        puts("hart ");
        put_dec(h);
        puts(" software interrupts=");
        put_dec(msi_count[h]);
        putc('\n');
        bad += msi_count[h] != iters;
    }
    puts(bad ? "FAIL\n" : "ok\n");
    return bad ? 1 : 0;
}
