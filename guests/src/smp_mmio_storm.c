/* smp_mmio_storm: each hart runs `iters` iterations of (`rate` ALU
 * instructions + 1 MMIO access) at the same time, all on one target device.
 * The loop is one asm block per target; one iteration is exactly
 *     jalr zero, 0(entry)        -- into the addi sled, rate before its end
 *     rate x addi acc, acc, 1
 *     <the MMIO instruction>
 *     addi cnt, cnt, -1
 *     bnez cnt, loop
 * = rate + 4 instructions.  Targets (slot 4):
 *     0  sb cnt, 0(0x10000007)          UART scratch register write
 *     1  ld v, 0(0x0200bff8)            CLINT mtime read
 *     2  sw zero, 0(0x02000000 + 4*h)   CLINT msip of the hart itself := 0
 *     3  lw v, 0(0x0c000004 + 4*h)      PLIC priority of source h+1 (reads 0)
 * Parameters: slot 0 = iters per hart (default 100 000), slot 1 = rate
 * (default 8, 1..1000), slot 3 = harts (0 = all), slot 4 = target (default 0).
 * Each hart checks acc == iters*rate (and v == 0 for target 3); hart 0 prints
 * one line per hart; exit 1 if a check failed, 2 for a bad parameter. */
#include "smp.h"

#define MAX_RATE 1000 /* keeps bnez within its +-4 KiB reach */

static u64 res_acc[SMP_MAX_HARTS], res_bad[SMP_MAX_HARTS];

#define STORM(MMIO)                                                       \
    __asm__ volatile("lla  %[e], 2f\n"                                    \
                     "sub  %[e], %[e], %[r4]\n"                           \
                     "1:   jalr zero, 0(%[e])\n"                          \
                     ".rept 1000\n"                                       \
                     "addi %[acc], %[acc], 1\n"                           \
                     ".endr\n"                                            \
                     "2:   " MMIO "\n"                                    \
                     "addi %[cnt], %[cnt], -1\n"                          \
                     "bnez %[cnt], 1b\n"                                  \
                     : [acc] "+r"(acc), [cnt] "+r"(cnt), [v] "+r"(v),     \
                       [e] "=&r"(e)                                       \
                     : [r4] "r"(rate * 4), [a] "r"(addr)                  \
                     : "memory")

static const char *const target_name[4] = {
    "sb to UART scratch 0x10000007",
    "ld of CLINT mtime 0x0200bff8",
    "sw 0 to own CLINT msip 0x02000000+4*hart",
    "lw of PLIC priority 0x0c000004+4*hart",
};
static const char *const target_insn[4] = {"sb", "ld", "sw", "lw"};

int smp_main(u64 hart, u64 n) {
    u64 iters = param(0, 100000);
    u64 rate = param(1, 8);
    u64 target = param(4, 0);
    if (hart == 0) {
        if (rate > MAX_RATE) {
            puts("smp_mmio_storm: bad parameter: rate=");
            put_dec(rate);
            puts(" (expected 1..1000)\n");
            return 2;
        }
        if (target > 3) {
            puts("smp_mmio_storm: bad parameter: target=");
            put_dec(target);
            puts(" (expected 0..3)\n");
            return 2;
        }
        puts("smp_mmio_storm harts=");
        put_dec(n);
        puts(" iters=");
        put_dec(iters);
        puts(" rate=");
        put_dec(rate);
        puts(" target=");
        put_dec(target);
        puts(" (");
        puts(target_name[target]);
        puts(") insns/iter=");
        put_dec(rate + 4);
        puts(" (jalr + ");
        put_dec(rate);
        puts(" addi + ");
        puts(target_insn[target]);
        puts(" + addi + bnez)\n");
    }
    smp_barrier();
    u64 acc = 0, cnt = iters, v = 0, e, addr;
    switch (target) {
    case 0:
        addr = UART0 + UART_SCR;
        STORM("sb %[cnt], 0(%[a])");
        break;
    case 1:
        addr = CLINT_MTIME;
        STORM("ld %[v], 0(%[a])");
        v = 0;
        break;
    case 2:
        addr = CLINT_MSIP + 4 * hart;
        STORM("sw zero, 0(%[a])");
        break;
    default:
        addr = 0x0c000004UL + 4 * hart;
        STORM("lw %[v], 0(%[a])");
        break;
    }
    res_acc[hart] = acc;
    res_bad[hart] = (acc != iters * rate) + (v != 0) + (cnt != 0);
    smp_barrier();
    if (hart != 0)
        return 0;
    u64 bad = 0;
    for (u64 h = 0; h < n; h++) {
        puts("hart ");
        put_dec(h);
        puts(" iterations=");
        put_dec(iters);
        puts(" alu=");
        put_dec(res_acc[h]);
        puts(res_bad[h] ? " BAD\n" : " ok\n");
        bad += res_bad[h];
    }
    return bad ? 1 : 0;
}
