/* Device-synchronised start-up, doorbells and barrier (see smp_dev.h). */
#include "smp_dev.h"

/* Written by hart 0 before it rings hart 1; read by the others after their
 * start doorbell.  .data (not .bss): hart 0 zeroes .bss while the others
 * already run (they touch nothing of .bss or .data before their doorbell,
 * but keep it out of the zeroing anyway). */
u64 smp_dev_nharts __attribute__((section(".data"))) = 1;

#define MSIP(h)     (CLINT_MSIP + 4 * (h))
#define MTIMECMP(h) (CLINT_MTIMECMP + 8 * (h))

/* Harts present: mtimecmp[k] of a hart that exists reads back what was
 * written, one that does not reads 0 (QEMU and vcpulab alike).  ~0 is the
 * disarmed value, so it is left there. */
static u64 probe_harts(void) {
    u64 n = 0;
    while (n < SMP_MAX_HARTS) {
        mmio_w64(MTIMECMP(n), ~0UL);
        if (mmio_r64(MTIMECMP(n)) != ~0UL)
            break;
        n++;
    }
    return n;
}

void smp_dev_wait(void) {
    u64 h = hartid();
    u64 saved = csr_read(mie);
    csr_write(mie, MIP_MSIP);
    while (!(csr_read(mip) & MIP_MSIP))
        __asm__ volatile("wfi" ::: "memory");
    mmio_w32(MSIP(h), 0);
    csr_write(mie, saved);
    __asm__ volatile("fence rw, rw" ::: "memory");
}

void smp_dev_ring(u64 hart) {
    __asm__ volatile("fence rw, rw" ::: "memory");
    mmio_w32(MSIP(hart), 1);
}

void smp_dev_lap(void) {
    u64 n = smp_dev_nharts, h = hartid();
    if (n < 2)
        return;
    if (h == 0) {
        smp_dev_ring(1);
        smp_dev_wait();
    } else {
        smp_dev_wait();
        smp_dev_ring(h + 1 < n ? h + 1 : 0);
    }
}

void smp_dev_barrier(void) {
    smp_dev_lap();
    smp_dev_lap();
}

u64 smp_dev_sleep_until(u64 deadline) {
    u64 h = hartid();
    u64 saved = csr_read(mie);
    csr_write(mie, MIP_MTIP);
    mmio_w64(MTIMECMP(h), deadline);
    while (!(csr_read(mip) & MIP_MTIP))
        __asm__ volatile("wfi" ::: "memory");
    u64 now = mtime();
    mmio_w64(MTIMECMP(h), ~0UL);
    csr_write(mie, saved);
    return now;
}

u64 smp_dev_sleep(u64 ticks) { return smp_dev_sleep_until(mtime() + ticks); }

/* Called by smp_start.S on every hart (hart 0 after zeroing .bss); returns
 * the number of harts taking part, on those harts only. */
u64 smp_boot(u64 hart) {
    if (hart != 0) {
        smp_dev_wait();
        u64 n = smp_dev_nharts;
        if (hart >= n)
            smp_park();
        smp_dev_ring(hart + 1 < n ? hart + 1 : 0);
        return n;
    }
    u64 found = probe_harts();
    u64 want = param(SMP_SLOT_HARTS, found);
    if (want > found) {
        puts("smp: harts=");
        put_dec(want);
        puts(" requested, ");
        put_dec(found);
        puts(" present\n");
        exit_code(2);
    }
    smp_dev_nharts = want;
    if (want > 1) {
        smp_dev_ring(1);
        smp_dev_wait();
    }
    return want;
}

__attribute__((weak)) void smp_trap_handler(u64 *frame) {
    puts("hart ");
    put_dec(hartid());
    puts(": ");
    unexpected_trap(frame);
}
