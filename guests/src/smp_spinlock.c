/* smp_spinlock: every hart adds 1 to a shared u64 counter `iters` times.
 * Modes (slot 4), each one asm block per increment:
 *   0  test-and-set lock: 1: amoswap.w.aq t, one, (lock); bnez t, 1b;
 *      ld/addi/sd of the counter; amoswap.w.rl zero, zero, (lock)
 *   1  LR/SC lock: 1: lr.w.aq t, (lock); bnez t, 1b; sc.w t, one, (lock);
 *      bnez t, 1b; ld/addi/sd; 2: lr.w t, (lock); sc.w.rl t, zero, (lock);
 *      bnez t, 2b
 *   2  no lock: amoadd.d zero, one, (counter)
 * Lock and counter are on separate 64-byte lines.  Hart 0 prints the final
 * counter and harts*iters; exit 1 if they differ.
 * Parameters: slot 0 = iters (default 20 000), slot 3 = harts (0 = all),
 * slot 4 = mode (default 0). */
#include "smp.h"

static struct {
    u32 lock;
    u8 pad0[60];
    u64 counter;
    u8 pad1[56];
} sh __attribute__((aligned(4096))); /* a page without code */

static const char *const mode_name[3] = {
    "amoswap.w.aq/amoswap.w.rl lock",
    "lr.w.aq/sc.w lock, lr.w/sc.w.rl unlock",
    "amoadd.d, no lock",
};

int smp_main(u64 hart, u64 n) {
    u64 iters = param(0, 20000);
    u64 mode = param(4, 0);
    if (hart == 0) {
        if (mode > 2) {
            puts("smp_spinlock: bad parameter: mode=");
            put_dec(mode);
            puts(" (expected 0..2)\n");
            return 2;
        }
        puts("smp_spinlock harts=");
        put_dec(n);
        puts(" iters=");
        put_dec(iters);
        puts(" mode=");
        put_dec(mode);
        puts(" (");
        puts(mode_name[mode]);
        puts(")\n");
    }
    smp_barrier();
    u64 one = 1, t, c;
    u32 *lock = &sh.lock;
    u64 *ctr = &sh.counter;
    switch (mode) {
    case 0:
        for (u64 i = 0; i < iters; i++)
            __asm__ volatile("1: amoswap.w.aq %[t], %[one], (%[l])\n"
                             "bnez %[t], 1b\n"
                             "ld   %[c], 0(%[p])\n"
                             "addi %[c], %[c], 1\n"
                             "sd   %[c], 0(%[p])\n"
                             "amoswap.w.rl zero, zero, (%[l])\n"
                             : [t] "=&r"(t), [c] "=&r"(c)
                             : [one] "r"(one), [l] "r"(lock), [p] "r"(ctr)
                             : "memory");
        break;
    case 1:
        for (u64 i = 0; i < iters; i++)
            __asm__ volatile("1: lr.w.aq %[t], (%[l])\n"
                             "bnez %[t], 1b\n"
                             "sc.w %[t], %[one], (%[l])\n"
                             "bnez %[t], 1b\n"
                             "ld   %[c], 0(%[p])\n"
                             "addi %[c], %[c], 1\n"
                             "sd   %[c], 0(%[p])\n"
                             "2: lr.w %[t], (%[l])\n"
                             "sc.w.rl %[t], zero, (%[l])\n"
                             "bnez %[t], 2b\n"
                             : [t] "=&r"(t), [c] "=&r"(c)
                             : [one] "r"(one), [l] "r"(lock), [p] "r"(ctr)
                             : "memory");
        break;
    default:
        for (u64 i = 0; i < iters; i++)
            __asm__ volatile("amoadd.d zero, %[one], (%[p])\n"
                             :
                             : [one] "r"(one), [p] "r"(ctr)
                             : "memory");
        break;
    }
    smp_barrier();
    if (hart != 0)
        return 0;
    u64 got = __atomic_load_n(&sh.counter, __ATOMIC_ACQUIRE), want = n * iters;
    puts("counter=");
    put_dec(got);
    puts(" expected=");
    put_dec(want);
    puts(got == want ? " ok\n" : " MISMATCH\n");
    return got == want ? 0 : 1;
}
