/* Start-up rendezvous, barrier and print lock for the SMP guests. */
#include "smp.h"

/* Shared start-up and barrier state.  It is used before hart 0 has zeroed
 * .bss (or read by harts that wait for that), so it lives in .data, which the
 * loader fills; and on a 4 KiB page of its own, so that its stores do not hit
 * a page that holds translated code (QEMU then takes its slow write path and
 * invalidates that page's TBs). */
struct smp_shared smp_shared __attribute__((section(".data.smp"), aligned(4096)));
#define st smp_shared

/* Harts present: msip[k] of a hart that exists reads back what was written. */
static u64 probe_harts(void) {
    u64 n = 0;
    while (n < SMP_MAX_HARTS) {
        u64 a = CLINT_MSIP + 4 * n;
        mmio_w32(a, 1);
        u32 v = mmio_r32(a);
        mmio_w32(a, 0);
        if (!(v & 1))
            break;
        n++;
    }
    return n;
}

/* Called by smp_start.S on every hart; returns nharts on the harts that take
 * part, once all of them have arrived. */
u64 smp_boot(u64 hart) {
    if (hart == 0) {
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
        __atomic_store_n(&st.nharts, want, __ATOMIC_RELAXED);
        __atomic_store_n(&st.boot_ready, 1, __ATOMIC_RELEASE);
    } else {
        while (!__atomic_load_n(&st.boot_ready, __ATOMIC_ACQUIRE))
            ;
    }
    u64 n = __atomic_load_n(&st.nharts, __ATOMIC_RELAXED);
    if (hart >= n)
        smp_park();
    __atomic_fetch_add(&st.boot_arrived, 1, __ATOMIC_ACQ_REL);
    while (__atomic_load_n(&st.boot_arrived, __ATOMIC_ACQUIRE) != n)
        ;
    return n;
}

void smp_barrier(void) {
    u64 gen = __atomic_load_n(&st.bar_gen, __ATOMIC_ACQUIRE);
    if (__atomic_add_fetch(&st.bar_count, 1, __ATOMIC_ACQ_REL) == st.nharts) {
        __atomic_store_n(&st.bar_count, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&st.bar_gen, gen + 1, __ATOMIC_RELEASE);
    } else {
        while (__atomic_load_n(&st.bar_gen, __ATOMIC_ACQUIRE) == gen)
            ;
    }
}

__attribute__((weak)) void smp_trap_handler(u64 *frame) {
    smp_lock(&smp_print_lock);
    puts("hart ");
    put_dec(hartid());
    puts(": ");
    unexpected_trap(frame);
}
