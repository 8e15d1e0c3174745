/* smp_ipi_ring: a token goes round the harts by IPI, `laps` times
 * (0 -> 1 -> ... -> n-1 -> 0; with one hart, hart 0 rings itself).  The
 * hart holding it: takes the token's value, runs `work` xorshift64 rounds
 * mixed with its hart id and the lap, reads mtime through MMIO (it must not
 * be below what the previous holder read), sleeps `sleep` ticks on its own
 * timer in wfi (it must wake at or after the deadline), prints
 * `lap L hart H token=0x...`, stores the new value and rings the next hart.
 * After the last lap hart 0 prints the checksum of every value and ends the
 * run; the others park as soon as they have passed the token on for the
 * last time.
 *
 * Device-synchronised (common/smp_dev.c): no hart spins on RAM another
 * writes, at start-up, during the laps or at the end; signals are msip
 * doorbells only, and the token's state in RAM is read only after its
 * doorbell has been seen.  The output depends only on the parameters and
 * the number of harts: the same on QEMU with and without icount (every
 * shift) and on vcpulab, whatever the host's timing.
 * Parameters: slot 0 = laps (20), slot 1 = work (100 rounds per hop),
 * slot 2 = sleep (100 ticks), slot 3 = harts (0 = all).
 * Exit 1 if mtime went backwards along the ring or a sleep woke early. */
#include "smp_dev.h"

/* The token: written by its holder only, on a page without code. */
static struct {
    u64 value, checksum, last_mtime, backwards, early;
} token __attribute__((aligned(4096)));

static u64 xorshift64(u64 x) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x;
}

static void hop(u64 hart, u64 lap, u64 work, u64 sleep) {
    u64 x = token.value ^ ((hart + 1) * 0x9e3779b97f4a7c15UL) ^ lap;
    for (u64 i = 0; i < work; i++)
        x = xorshift64(x);
    u64 t0 = mtime();
    if (t0 < token.last_mtime)
        token.backwards++;
    u64 t1 = smp_dev_sleep(sleep);
    if (t1 < t0 + sleep)
        token.early++;
    token.last_mtime = t1;
    token.value = x;
    token.checksum = (token.checksum ^ x) * 0x100000001b3UL;
    puts("lap ");
    put_dec(lap);
    puts(" hart ");
    put_dec(hart);
    puts(" token=");
    put_hex(x);
    putc('\n');
}

int smp_main(u64 hart, u64 n) {
    u64 laps = param(0, 20), work = param(1, 100), sleep = param(2, 100);
    u64 next = hart + 1 < n ? hart + 1 : 0;
    if (hart == 0) {
        puts("smp_ipi_ring harts=");
        put_dec(n);
        puts(" laps=");
        put_dec(laps);
        puts(" work=");
        put_dec(work);
        puts(" sleep=");
        put_dec(sleep);
        putc('\n');
        token.value = 1;
        token.checksum = 0xcbf29ce484222325UL;
    }
    for (u64 lap = 0; lap < laps; lap++) {
        if (hart != 0)
            smp_dev_wait();
        hop(hart, lap, work, sleep);
        smp_dev_ring(next);
        if (hart == 0)
            smp_dev_wait();
    }
    if (hart != 0)
        return 0;
    puts("checksum=");
    put_hex(token.checksum);
    putc('\n');
    puts("mtime backwards=");
    put_dec(token.backwards);
    puts(" early wake-ups=");
    put_dec(token.early);
    putc('\n');
    u64 bad = token.backwards + token.early;
    puts(bad ? "FAIL\n" : "ok\n");
    return bad ? 1 : 0;
}
