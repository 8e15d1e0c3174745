/* smp_hart_timers: how many instructions each hart runs in D ticks of its
 * own timer, all harts at once.  Hart 0 picks a start time S = mtime + G
 * and passes it round with a lap of the token.  Repetition r has the
 * window [T, T + D), T = S + r * (D + G): every hart sleeps in wfi until
 * its own timer reaches T, then arms its own mtimecmp = T + D, enables
 * MTIE and mstatus.MIE and counts passes of a fixed 6-instruction loop (4
 * ALU instructions, a load of its own flag, a branch) until its timer
 * interrupt; the handler writes mtimecmp = ~0 and sets the flag.  After
 * the last repetition a lap of the token brings every hart's counts to
 * hart 0, which prints them.  (A hart that reaches a window late, e.g. one
 * still counting, starts at once; one that reaches it after its end counts
 * 1.)
 *
 * Under round-robin icount the harts share one virtual clock and run in
 * turn, so each hart gets about 1/N of the instructions of D ticks (QEMU
 * 7.2, whose turn runs to the next deadline, gives them unevenly); with a
 * clock per hart, each would get all of them.
 *
 * Device-synchronised (common/smp_dev.c): no hart waits on RAM another
 * writes; the only RAM another hart reads (S, the counts) is read after
 * the lap that follows it.
 * Parameters: slot 1 = repetitions (3, at most 16), slot 2 = D in mtime
 * ticks (10 000), slot 4 = G in mtime ticks (10 000), slot 3 = harts
 * (0 = all). */
#include "smp_dev.h"

#define MAX_REPS 16

static u64 start_time __attribute__((aligned(4096)));

/* Per hart: its flag on a 64-byte line of its own and its counts; on pages
 * without code. */
static struct {
    volatile u64 fired;
    u64 count[MAX_REPS];
} __attribute__((aligned(64))) per_hart[SMP_MAX_HARTS] __attribute__((aligned(4096)));

void smp_trap_handler(u64 *frame) {
    u64 hart = hartid();
    if (csr_read(mcause) == (CAUSE_INT | 7)) {
        mmio_w64(CLINT_MTIMECMP + 8 * hart, ~0UL);
        per_hart[hart].fired = 1;
        return;
    }
    puts("hart ");
    put_dec(hart);
    puts(": ");
    unexpected_trap(frame);
}

/* Passes of the loop until *flag != 0 (at least one). */
static u64 count_until(volatile u64 *flag) {
    u64 c = 0, x = 1, y = 2, t;
    __asm__ volatile(
        "1: addi %[c], %[c], 1\n"
        "   add  %[x], %[x], %[c]\n"
        "   xor  %[y], %[y], %[x]\n"
        "   srli %[x], %[y], 1\n"
        "   ld   %[t], 0(%[f])\n"
        "   beqz %[t], 1b\n"
        : [c] "+r"(c), [x] "+r"(x), [y] "+r"(y), [t] "=&r"(t)
        : [f] "r"(flag)
        : "memory");
    return c;
}

int smp_main(u64 hart, u64 n) {
    u64 reps = param(1, 3), d = param(2, 10000), gap = param(4, 10000);
    if (reps > MAX_REPS) {
        if (hart == 0) {
            puts("smp_hart_timers: repetitions=");
            put_dec(reps);
            puts(" (slot 1): expected 1..16\n");
        }
        return 2;
    }
    if (hart == 0) {
        puts("smp_hart_timers harts=");
        put_dec(n);
        puts(" reps=");
        put_dec(reps);
        puts(" delay=");
        put_dec(d);
        puts(" gap=");
        put_dec(gap);
        puts(" insns/iter=6\n");
        start_time = mtime() + gap;
    }
    smp_dev_lap();
    u64 start = start_time;
    for (u64 r = 0; r < reps; r++) {
        u64 t = start + r * (d + gap);
        smp_dev_sleep_until(t);
        per_hart[hart].fired = 0;
        mmio_w64(CLINT_MTIMECMP + 8 * hart, t + d);
        csr_write(mie, MIP_MTIP);
        csr_set(mstatus, MSTATUS_MIE);
        u64 c = count_until(&per_hart[hart].fired);
        csr_clear(mstatus, MSTATUS_MIE);
        csr_write(mie, 0);
        per_hart[hart].count[r] = c;
    }
    smp_dev_lap();
    if (hart != 0)
        return 0;
    u64 sum = 0;
    for (u64 h = 0; h < n; h++) {
        puts("hart ");
        put_dec(h);
        puts(" counts=");
        for (u64 r = 0; r < reps; r++) {
            if (r)
                putc(' ');
            put_dec(per_hart[h].count[r]);
            sum += per_hart[h].count[r];
        }
        putc('\n');
    }
    puts("total=");
    put_dec(sum);
    puts(" insns~=");
    put_dec(6 * sum);
    putc('\n');
    return 0;
}
