/* smp_ipi_spin: hart 0 sends hart 1 a software interrupt (CLINT msip) and
 * then spins, interrupts off, until hart 1's handler has counted it; `iters`
 * times.  Hart 1 waits in wfi between interrupts.  On QEMU's round-robin
 * icount this is the starvation QEMU 8.1 fixed: 7.2 gives the spinning hart
 * the whole budget to the next deadline and hart 1 none, every round, so 7.2
 * never finishes; 10.0 splits each round's budget and finishes.  With
 * several threads (MTTCG) both harts run at once.
 * Parameters: slot 0 = iters (default 100).  Harts 2.. wait at the barriers.
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

int smp_main(u64 hart, u64 n) {
    u64 iters = param(0, 100);
    if (hart == 0) {
        puts("smp_ipi_spin harts=");
        put_dec(n);
        puts(" iters=");
        put_dec(iters);
        putc('\n');
    }
    if (n < 2) {
        if (hart == 0)
            puts("needs 2 harts\n");
        return hart == 0 ? 1 : 0;
    }
    if (hart == 1)
        csr_write(mie, MIP_MSIP);
    smp_barrier();
    if (hart == 0) {
        for (u64 k = 1; k <= iters; k++) {
            mmio_w32(CLINT_MSIP + 4, 1);
            while (msi_count[1] < k) {
            }
        }
    } else if (hart == 1) {
        while (msi_count[1] < iters) {
            __asm__ volatile("wfi" ::: "memory");
            csr_set(mstatus, MSTATUS_MIE);
            csr_clear(mstatus, MSTATUS_MIE);
        }
    }
    csr_write(mie, 0);
    smp_barrier();
    if (hart != 0)
        return 0;
    puts("hart 1 software interrupts=");
    put_dec(msi_count[1]);
    putc('\n');
    puts(msi_count[1] == iters ? "ok\n" : "FAIL\n");
    return msi_count[1] == iters ? 0 : 1;
}
