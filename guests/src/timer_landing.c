/* timer_landing: for several distances D (mtime ticks) arms
 * mtimecmp = rdtime + D and enters a counting loop; the timer handler records
 * the loop counter and the interrupted pc (mepc, as an offset in the loop).
 * All results are printed at the end.  Distances: 1, d, 2d, 5d, 10d, 100d.
 * Parameters: slot 2 = delay d (default 10).  slot 1 = inner, repeats per
 * distance (default 2).  Deterministic only with QEMU -icount shift=N,sleep=off. */
#include "guest.h"

/* u64 landing(volatile u64 *flag, u64 distance):
 *   counter t0 = 0; mtimecmp = time + distance; mstatus.MIE = 1;
 *   loop { t0++; if (*flag) break; }; mstatus.MIE = 0; return t0 */
__asm__(
    "    .text\n"
    "    .balign 4\n"
    "landing:\n"
    "    li     t0, 0\n"
    "    li     t2, 0x2004000\n"
    "    rdtime t1\n"
    "    add    t1, t1, a1\n"
    "    sd     t1, 0(t2)\n"
    "    csrsi  mstatus, 8\n"
    "landing_loop:\n"
    "    addi   t0, t0, 1\n"
    "    ld     t1, 0(a0)\n"
    "    beqz   t1, landing_loop\n"
    "    csrci  mstatus, 8\n"
    "    mv     a0, t0\n"
    "    ret\n");
u64 landing(volatile u64 *flag, u64 distance);
void landing_loop(void);

static volatile u64 flag, hit_count, hit_epc, hits;

void trap_handler(u64 *frame) {
    if (csr_read(mcause) != (CAUSE_INT | 7))
        unexpected_trap(frame);
    hits++;
    hit_count = frame[5]; /* t0 */
    hit_epc = csr_read(mepc);
    mmio_w64(CLINT_MTIMECMP, ~0UL);
    flag = 1;
}

#define MAXN 32
static u64 dist[MAXN], cnt[MAXN], epc[MAXN], after[MAXN];

int main(void) {
    u64 d = param(2, 10), reps = param(1, 2), k = 0;
    u64 mult[] = {0, 1, 2, 5, 10, 100};
    mmio_w64(CLINT_MTIMECMP, ~0UL);
    csr_set(mie, MIP_MTIP);
    for (u64 m = 0; m < sizeof mult / sizeof mult[0]; m++)
        for (u64 r = 0; r < reps && k < MAXN; r++) {
            u64 D = mult[m] ? mult[m] * d : 1;
            flag = 0;
            after[k] = landing(&flag, D);
            dist[k] = D;
            cnt[k] = hit_count;
            epc[k] = hit_epc;
            k++;
        }
    csr_clear(mie, MIP_MTIP);
    puts("timer_landing\n");
    for (u64 i = 0; i < k; i++) {
        puts("distance ");
        put_dec(dist[i]);
        puts(": counter ");
        put_dec(cnt[i]);
        puts(" mepc ");
        u64 off = epc[i] - (u64)landing_loop;
        if (off < 16) {
            puts("loop+");
            put_dec(off);
        } else {
            puts("landing");
            put_sdec((i64)(epc[i] - (u64)landing));
        }
        puts(" exit counter ");
        put_dec(after[i]);
        putc('\n');
    }
    put_kv_dec("interrupts ", hits);
    return 0;
}
