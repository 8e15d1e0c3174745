/* smp_racy_counter: every hart adds 1 to a shared u64 counter `iters` times
 * with a plain load/add/store and no atomics:
 *     1: ld t, 0(p); addi t, t, 1; sd t, 0(p); addi cnt, cnt, -1; bnez cnt, 1b
 * Updates are lost when harts interleave, so the final value is not
 * deterministic; it is printed on a line starting with "racy:" and is never
 * more than harts*iters.  With one hart it must equal iters.
 * Parameters: slot 0 = iters (default 1 000 000), slot 3 = harts (0 = all).
 * Exit 1 if the value exceeds harts*iters (or differs from iters with one
 * hart). */
#include "smp.h"

static u64 counter __attribute__((aligned(4096))); /* a page without code */

int smp_main(u64 hart, u64 n) {
    u64 iters = param(0, 1000000);
    if (hart == 0) {
        puts("smp_racy_counter harts=");
        put_dec(n);
        puts(" iters=");
        put_dec(iters);
        putc('\n');
    }
    smp_barrier();
    u64 cnt = iters, t;
    __asm__ volatile("1: ld   %[t], 0(%[p])\n"
                     "addi %[t], %[t], 1\n"
                     "sd   %[t], 0(%[p])\n"
                     "addi %[cnt], %[cnt], -1\n"
                     "bnez %[cnt], 1b\n"
                     : [t] "=&r"(t), [cnt] "+r"(cnt)
                     : [p] "r"(&counter)
                     : "memory");
    smp_barrier();
    if (hart != 0)
        return 0;
    u64 got = __atomic_load_n(&counter, __ATOMIC_ACQUIRE), max = n * iters;
    int ok = n == 1 ? got == iters : got <= max;
    puts("racy: counter=");
    put_dec(got);
    putc('\n');
    puts("counter <= harts*iters=");
    put_dec(max);
    puts(ok ? ": yes\n" : ": NO\n");
    return ok ? 0 : 1;
}
