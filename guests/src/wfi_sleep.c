/* wfi_sleep: for several delays D arms mtimecmp = now + D with mie.MTIE set
 * but mstatus.MIE clear, executes wfi until mip.MTIP, and prints how long the
 * sleep lasted in mtime ticks, measured with rdtime and with MMIO reads.
 * Delays: d, 10d, 100d, 1000d.  Results are printed at the end.
 * Parameters: slot 2 = delay d (default 100); slot 1 = inner, repeats per
 * delay (default 2).  Deterministic only with QEMU -icount shift=N,sleep=off. */
#include "guest.h"

/* void sleep_once(u64 d, u64 *out): out[0] = rdtime delta, out[1] = MMIO delta,
 * out[2] = number of wfi executed (not printed). */
__asm__(
    "    .text\n"
    "    .balign 4\n"
    "sleep_once:\n"
    "    li     t3, 0x2000000\n"
    "    li     t4, 0x4000\n"
    "    add    t4, t4, t3\n"          /* mtimecmp */
    "    li     t5, 0xbff8\n"
    "    add    t5, t5, t3\n"          /* mtime */
    "    li     a2, 0\n"
    "    rdtime t0\n"
    "    ld     t1, 0(t5)\n"
    "    add    t2, t0, a0\n"
    "    sd     t2, 0(t4)\n"
    "1:  wfi\n"
    "    addi   a2, a2, 1\n"
    "    csrr   t2, mip\n"
    "    andi   t2, t2, 0x80\n"
    "    beqz   t2, 1b\n"
    "    rdtime t2\n"
    "    ld     t3, 0(t5)\n"
    "    sub    t2, t2, t0\n"
    "    sub    t3, t3, t1\n"
    "    sd     t2, 0(a1)\n"
    "    sd     t3, 8(a1)\n"
    "    sd     a2, 16(a1)\n"
    "    li     t2, -1\n"
    "    sd     t2, 0(t4)\n"           /* disarm */
    "    ret\n");
void sleep_once(u64 d, u64 *out);

#define MAXN 32
static u64 res[MAXN][3], delays[MAXN];

int main(void) {
    u64 d = param(2, 100), reps = param(1, 2), k = 0;
    mmio_w64(CLINT_MTIMECMP, ~0UL);
    csr_clear(mstatus, MSTATUS_MIE);
    csr_set(mie, MIP_MTIP);
    for (u64 m = 1; m <= 1000; m *= 10)
        for (u64 r = 0; r < reps && k < MAXN; r++) {
            delays[k] = m * d;
            sleep_once(m * d, res[k]);
            k++;
        }
    csr_clear(mie, MIP_MTIP);
    puts("wfi_sleep\n");
    for (u64 i = 0; i < k; i++) {
        puts("delay ");
        put_dec(delays[i]);
        puts(": slept ");
        put_dec(res[i][0]);
        puts(" ticks (rdtime), ");
        put_dec(res[i][1]);
        puts(" ticks (mmio)\n");
    }
    return 0;
}
