/* smp_compute: every hart runs the same ALU loop (xorshift64 + multiply-add),
 * seeded by its hart id, at the same time; hart 0 prints each hart's
 * checksum after a barrier.  A hart's checksum depends only on its id and
 * iters, not on the number of harts.
 * Parameters: slot 0 = iters (default 1 000 000), slot 3 = harts (0 = all). */
#include "smp.h"

static u64 result[SMP_MAX_HARTS];

int smp_main(u64 hart, u64 n) {
    u64 iters = param(0, 1000000);
    if (hart == 0) {
        puts("smp_compute harts=");
        put_dec(n);
        puts(" iters=");
        put_dec(iters);
        putc('\n');
    }
    smp_barrier();
    u64 x = 0x9e3779b97f4a7c15UL * (hart + 1), s = hart;
    for (u64 i = 0; i < iters; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s = s * 0x100000001b3UL + (x ^ i);
        s ^= s >> 29;
    }
    result[hart] = s ^ x;
    smp_barrier();
    if (hart == 0) {
        u64 all = 0;
        for (u64 h = 0; h < n; h++) {
            puts("hart ");
            put_dec(h);
            puts(" checksum=");
            put_hex(result[h]);
            putc('\n');
            all ^= result[h];
        }
        puts("xor of checksums=");
        put_hex(all);
        putc('\n');
    }
    return 0;
}
