/* mtime_mmio: reads mtime through MMIO (ld from 0x200bff8) around busy loops
 * of 0, 1, 10, 100, ... iterations and prints the deltas, plus the absolute
 * value of the very first read (taken as early as possible after reset).
 * Parameters: slot 0 = iters, the longest loop (default 100_000); slot 1 =
 * inner, repeats per length (default 3).
 * Deterministic only with QEMU -icount shift=N,sleep=off. */
#include "guest.h"

/* u64 measure_mmio(u64 n): ld mtime; n iterations of a 2-instruction loop; ld mtime. */
__asm__(
    "    .text\n"
    "    .balign 4\n"
    "measure_mmio:\n"
    "    li     t2, 0x200bff8\n"
    "    ld     t0, 0(t2)\n"
    "    beqz   a0, 2f\n"
    "1:  addi   a0, a0, -1\n"
    "    bnez   a0, 1b\n"
    "2:  ld     t1, 0(t2)\n"
    "    sub    a0, t1, t0\n"
    "    ret\n");
u64 measure_mmio(u64 n);

#define MAXN 64
static u64 lens[MAXN], deltas[MAXN];

int main(void) {
    u64 first = mtime();
    u64 maxlen = param(0, 100000), reps = param(1, 3), k = 0;
    for (u64 len = 0; len <= maxlen && k < MAXN; len = len ? len * 10 : 1)
        for (u64 r = 0; r < reps && k < MAXN; r++) {
            lens[k] = len;
            deltas[k++] = measure_mmio(len);
        }
    /* rdtime and the MMIO register are the same counter */
    u64 a = mtime(), b = rdtime(), c = mtime();
    puts("mtime_mmio\n");
    put_kv_dec("first read: ", first);
    for (u64 i = 0; i < k; i++) {
        puts("loop ");
        put_dec(lens[i]);
        puts(": ");
        put_dec(deltas[i]);
        puts(" ticks\n");
    }
    puts("rdtime between two mmio reads: ");
    puts(a <= b && b <= c ? "ordered\n" : "NOT ordered\n");
    return 0;
}
