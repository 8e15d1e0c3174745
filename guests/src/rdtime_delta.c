/* rdtime_delta: reads the time CSR (rdtime) around busy loops of 0, 1, 10,
 * 100, ... iterations and prints the deltas (mtime ticks).  All measurements
 * are taken first and printed afterwards.
 * Parameters: slot 0 = iters, the longest loop (default 100_000; lengths are
 * 0 and the powers of ten up to it); slot 1 = inner, repeats per length
 * (default 3).  Deterministic only with QEMU -icount shift=N,sleep=off. */
#include "guest.h"

/* u64 measure(u64 n): rdtime; n iterations of a 2-instruction loop; rdtime. */
__asm__(
    "    .text\n"
    "    .balign 4\n"
    "measure:\n"
    "    rdtime t0\n"
    "    beqz   a0, 2f\n"
    "1:  addi   a0, a0, -1\n"
    "    bnez   a0, 1b\n"
    "2:  rdtime t1\n"
    "    sub    a0, t1, t0\n"
    "    ret\n");
u64 measure(u64 n);

#define MAXN 64
static u64 lens[MAXN], deltas[MAXN];

int main(void) {
    u64 maxlen = param(0, 100000), reps = param(1, 3), k = 0;
    for (u64 len = 0; len <= maxlen && k < MAXN; len = len ? len * 10 : 1)
        for (u64 r = 0; r < reps && k < MAXN; r++) {
            lens[k] = len;
            deltas[k++] = measure(len);
        }
    puts("rdtime_delta\n");
    for (u64 i = 0; i < k; i++) {
        puts("loop ");
        put_dec(lens[i]);
        puts(": ");
        put_dec(deltas[i]);
        puts(" ticks\n");
    }
    return 0;
}
