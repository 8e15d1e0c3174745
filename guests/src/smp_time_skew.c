/* smp_time_skew: how far apart the harts' clocks are, seen through memory.
 * Every hart, for `rounds` rounds: reads rdtime and stores it in its own
 * slot (a 64-byte line of its own, on a page without code), then for every
 * other hart j loads j's slot and reads rdtime after that load; a check
 * counts as an inversion when j's published time is greater than that
 * later rdtime (j's clock was ahead).  Each hart keeps its number of
 * checks, of inversions and the largest inversion in ticks; a lap of the
 * token brings them to hart 0, which prints them.
 *
 * Racy by design: which values a hart sees depends on how the harts
 * interleave.  With one virtual clock for all harts (round-robin icount, or
 * a host clock) there is no inversion; with a clock per hart there can be.
 * The `racy:` lines vary on parallel runs; under QEMU's round-robin icount
 * the whole output is deterministic.
 *
 * Start-up and the end are device-synchronised (common/smp_dev.c); the
 * rounds themselves read the other harts' slots on purpose.
 * Parameters: slot 0 = rounds (1 000), slot 3 = harts (0 = all). */
#include "smp_dev.h"

static struct {
    volatile u64 t;
} __attribute__((aligned(64))) slot[SMP_MAX_HARTS] __attribute__((aligned(4096)));

static struct {
    u64 checks, inversions, largest;
} __attribute__((aligned(64))) result[SMP_MAX_HARTS] __attribute__((aligned(4096)));

int smp_main(u64 hart, u64 n) {
    u64 rounds = param(0, 1000);
    if (hart == 0) {
        puts("smp_time_skew harts=");
        put_dec(n);
        puts(" rounds=");
        put_dec(rounds);
        putc('\n');
    }
    u64 checks = 0, inversions = 0, largest = 0;
    for (u64 r = 0; r < rounds; r++) {
        slot[hart].t = rdtime();
        for (u64 j = 0; j < n; j++) {
            if (j == hart)
                continue;
            u64 seen = slot[j].t;
            __asm__ volatile("fence r, r" ::: "memory");
            u64 now = rdtime();
            checks++;
            if (seen > now) {
                inversions++;
                if (seen - now > largest)
                    largest = seen - now;
            }
        }
    }
    result[hart].checks = checks;
    result[hart].inversions = inversions;
    result[hart].largest = largest;
    smp_dev_lap();
    if (hart != 0)
        return 0;
    u64 bad = 0;
    for (u64 h = 0; h < n; h++) {
        puts("hart ");
        put_dec(h);
        puts(" checks=");
        put_dec(result[h].checks);
        putc('\n');
        bad += result[h].checks != rounds * (n - 1);
    }
    for (u64 h = 0; h < n; h++) {
        puts("racy: hart ");
        put_dec(h);
        puts(" inversions=");
        put_dec(result[h].inversions);
        puts(" largest=");
        put_dec(result[h].largest);
        puts(" ticks\n");
    }
    puts(bad ? "FAIL\n" : "ok\n");
    return bad ? 1 : 0;
}
