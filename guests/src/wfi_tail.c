/* wfi_tail: how many instructions after a `wfi` the icount clock charges.
 * QEMU 7.2 translates the instructions after a wfi into the same TB (up to
 * the next TB-ending instruction or the page end) and, under icount, counts
 * them once for the wfi and again when they run.  Here a wfi (MIE = 0,
 * MTIE = 1) is followed by `tail` addi in the same page and then rdtime;
 * the guest prints the rdtime delta from arming the timer (D ticks ahead)
 * to after the tail, once with D ahead (the wfi sleeps; the idle warp to
 * the deadline hides any over-count) and once with the timer already
 * pending (D = 0: the wfi does not sleep, so an over-count shows as about
 * twice the tail's time).  Parameters: slot 2 = D (1000), slot 1 = repeats (2).
 * Deterministic on QEMU with -icount shift=N,sleep=off. */
#include "guest.h"

/* u64 wfi_tail(u64 d): rdtime delta around wfi + 1000 addi. */
u64 wfi_tail(u64);
__asm__(
    "    .text\n"
    "    .option push\n"
    "    .option norvc\n"
    "    .balign 4096\n"
    "wfi_tail:\n"
    "    li     t3, 0x2004000\n"        /* mtimecmp */
    "    rdtime t0\n"
    "    add    t2, t0, a0\n"
    "    sd     t2, 0(t3)\n"
    "    wfi\n"
    "    .rept 1000\n"
    "    addi   a1, a1, 1\n"
    "    .endr\n"
    "    rdtime t2\n"
    "    sub    a0, t2, t0\n"
    "    ret\n"
    "    .option pop\n");

int main(void) {
    u64 d = param(2, 1000), reps = param(1, 2);
    u64 out[8], now[8];
    if (reps > 8)
        reps = 8;
    csr_clear(mstatus, MSTATUS_MIE);
    csr_write(mie, MIP_MTIP);
    for (u64 i = 0; i < reps; i++) {
        out[i] = wfi_tail(d);
        now[i] = wfi_tail(0);
    }
    csr_write(mie, 0);
    puts("wfi_tail\n");
    for (u64 i = 0; i < reps; i++) {
        put_kv_dec("sleeping wfi: rdtime delta = ", out[i]);
        put_kv_dec("pending wfi: rdtime delta = ", now[i]);
    }
    return 0;
}
