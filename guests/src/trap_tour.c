/* trap_tour: takes a series of synchronous exceptions and reports each one's
 * mcause, mtval and mepc (as an offset from the probe's first instruction),
 * returning with mret.  Also checks a few accesses that QEMU 7.2 does NOT trap.
 * No parameters.  Deterministic on plain QEMU (no -icount needed). */
#include "guest.h"

/* Each probe is a leaf function whose first instruction is the one under test
 * (4-byte encodings also in the C build: the handler steps mepc by 4). */
__asm__(
    "    .text\n"
    "    .option push\n"
    "    .option norvc\n"
    "    .balign 4\n"
    "probe_ecall:    ecall\n                  ret\n"
    "probe_ebreak:   ebreak\n                 ret\n"
    "probe_ill_ones: .word 0xffffffff\n       ret\n"
    "probe_ill_zero: .word 0x00000000\n       ret\n"
    "probe_ld:       ld   a0, 0(a0)\n         ret\n"
    "probe_sd:       sd   a1, 0(a0)\n         ret\n"
    "probe_sw:       sw   a1, 0(a0)\n         ret\n"
    "probe_amoadd_d: amoadd.d a0, a1, (a0)\n  ret\n"
    "probe_amoswap_w: amoswap.w a0, a1, (a0)\n ret\n"
    "probe_lr_d:     lr.d a0, (a0)\n          ret\n"
    "probe_sc_d:     sc.d a0, a1, (a0)\n      ret\n"
    "probe_csr:      csrr a0, 0x3ff\n         ret\n"
    "probe_csrw_ro:  csrw mvendorid, a0\n     ret\n"
    "probe_jump:     jr   a0\n"
    "    .option pop\n"
);

typedef u64 (*probe_fn)(u64, u64);
u64 probe_ecall(u64, u64), probe_ebreak(u64, u64), probe_ill_ones(u64, u64),
    probe_ill_zero(u64, u64), probe_ld(u64, u64), probe_sd(u64, u64), probe_sw(u64, u64),
    probe_amoadd_d(u64, u64), probe_amoswap_w(u64, u64), probe_lr_d(u64, u64),
    probe_sc_d(u64, u64), probe_csr(u64, u64), probe_csrw_ro(u64, u64), probe_jump(u64, u64);

static volatile u64 t_count, t_cause, t_tval, t_epc;
static volatile int fetch_probe;

void trap_handler(u64 *frame) {
    t_count++;
    t_cause = csr_read(mcause);
    t_tval = csr_read(mtval);
    t_epc = csr_read(mepc);
    if (fetch_probe)
        csr_write(mepc, frame[1]); /* instruction fetch fault: back to the caller (ra) */
    else
        csr_write(mepc, t_epc + 4);
}

static u64 cell[4] __attribute__((aligned(16)));

/* Run one probe and print "name: mcause=.. mtval=.. mepc=probe+N" or "name: no trap".
 * mtval is printed relative to tval_base (0 = absolute). Returns the probe's a0. */
static u64 run(const char *name, probe_fn probe, u64 a0, u64 a1, u64 tval_base) {
    t_count = t_cause = t_tval = t_epc = 0;
    u64 r = probe(a0, a1);
    puts(name);
    if (t_count == 0) {
        puts(": no trap");
    } else {
        puts(": mcause=");
        put_hex(t_cause);
        puts(" mtval=");
        if (tval_base) {
            puts("cell+");
            put_dec(t_tval - tval_base);
        } else {
            put_hex(t_tval);
        }
        puts(" mepc=");
        if (t_epc - (u64)probe < 64) {
            puts("probe+");
            put_dec(t_epc - (u64)probe);
        } else {
            put_hex(t_epc);
        }
        if (t_count != 1) {
            puts(" traps=");
            put_dec(t_count);
        }
    }
    putc('\n');
    return r;
}

int main(void) {
    u64 c = (u64)cell, r;
    puts("trap_tour\n");
    run("ecall", probe_ecall, 0, 0, 0);
    run("ebreak", probe_ebreak, 0, 0, 0);
    run("illegal .word 0xffffffff", probe_ill_ones, 0, 0, 0);
    run("illegal .word 0x00000000", probe_ill_zero, 0, 0, 0);
    run("csrr a0, 0x3ff (no such csr)", probe_csr, 0, 0, 0);
    run("csrw mvendorid (read-only)", probe_csrw_ro, 1, 0, 0);
    /* unmapped physical addresses on virt */
    run("ld 0x0", probe_ld, 0x0, 0, 0);
    run("ld 0x6000000", probe_ld, 0x6000000, 0, 0);
    run("ld 0x88000000 (end of RAM)", probe_ld, 0x88000000UL, 0, 0);
    run("ld 0x100000000", probe_ld, 0x100000000UL, 0, 0);
    run("sw 0x10000200 (past uart0)", probe_sw, 0x10000200UL, 0, 0);
    run("sd 0x90000000", probe_sd, 0x90000000UL, 0, 0);
    run("amoadd.d 0x90000000", probe_amoadd_d, 0x90000000UL, 1, 0);
    /* the reset ROM ignores stores */
    u32 before = mmio_r32(0x1000);
    run("sd 0x1000 (rom)", probe_sd, 0x1000, 0x1234, 0);
    puts("rom word 0x1000 ");
    puts(mmio_r32(0x1000) == before ? "unchanged: " : "CHANGED: ");
    put_hex(mmio_r32(0x1000));
    putc('\n');
    /* misaligned atomics trap (QEMU 7.2: cause 4 even for AMOs); plain accesses do not */
    run("amoadd.d misaligned", probe_amoadd_d, c + 4, 1, c);
    run("amoswap.w misaligned", probe_amoswap_w, c + 2, 1, c);
    run("lr.d misaligned", probe_lr_d, c + 4, 0, c);
    r = run("sc.d misaligned, no reservation", probe_sc_d, c + 4, 5, c);
    put_kv_dec("  sc.d result ", r);
    cell[0] = 0x0706050403020100UL;
    cell[1] = 0x0f0e0d0c0b0a0908UL;
    r = run("ld misaligned", probe_ld, c + 3, 0, c);
    put_kv_hex("  value ", r);
    run("sd misaligned", probe_sd, c + 5, 0x1122334455667788UL, c);
    put_kv_hex("  cell[0] ", cell[0]);
    put_kv_hex("  cell[1] ", cell[1]);
    /* instruction fetch from unmapped memory */
    fetch_probe = 1;
    run("jump to 0x90000000", probe_jump, 0x90000000UL, 0, 0);
    fetch_probe = 0;
    puts("trap_tour done\n");
    return 0;
}
