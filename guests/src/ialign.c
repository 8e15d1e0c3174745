/* ialign: instruction alignment with and without the C extension.  Built
 * without C (all instructions 4 bytes), run both on the default CPU (C on,
 * IALIGN = 16) and with C off (QEMU -cpu rv64,c=false; vcpulab --cpu
 * rv64,c=off; IALIGN = 32):
 * - jal, a taken branch and jalr to a target at pc % 4 == 2 (which holds
 *   compressed code: with C it runs, without C the jump traps with cause 0);
 * - compressed halfwords at a 4-aligned pc (illegal without C, mtval = the
 *   halfword);
 * - mret to an mepc with bit 1 set; mepc written with low bits 1, 2, 3;
 * - misa.C.
 * Each line prints mcause, mtval and mepc (relative to the probe).
 * No parameters.  Deterministic on plain QEMU.  Exits 0. */
#include "guest.h"

static volatile u64 t_count, t_cause, t_tval, t_epc;

void trap_handler(u64 *frame) {
    (void)frame;
    t_count++;
    t_cause = csr_read(mcause);
    t_tval = csr_read(mtval);
    t_epc = csr_read(mepc);
    csr_write(mepc, (t_epc & ~3UL) + 4);
}

typedef u64 (*probe_fn)(u64, u64);

/* Targets at pc % 4 == 2 hold `c.addi a0, 1` and a way back (`c.jr t1`, the
 * link register of the jal/jalr probes, or a jal). */
__asm__(
    "    .text\n"
    "    .option push\n"
    "    .option norvc\n"
    "    .balign 4\n"
    "probe_jal:     jal  t1, odd_target\n  jal zero, probe_ret\n"
    "probe_jalr:    la   t0, odd_target\n  jalr t1, 0(t0)\n  jal zero, probe_ret\n"
    "probe_jalr_b0: la   t0, odd_target\n  jalr t1, 1(t0)\n  jal zero, probe_ret\n"
    "probe_branch:  beq  zero, zero, odd_branch\n"
    "branch_back:   jal  zero, probe_ret\n"
    "probe_c_words: .2byte 0x4505\n .2byte 0x0001\n"      /* c.li a0, 1; c.nop */
    "               .2byte 0x0505\n .2byte 0x0505\n"      /* c.addi a0, 1 (x2) */
    "               ret\n"
    "probe_mret:    la   t0, mret_land\n  csrr t1, mtvec\n"
    "               la   t2, mret_tvec\n  csrw mtvec, t2\n  ecall\n"
    "mret_back:     csrw mtvec, t1\n  ret\n"
    "    .balign 4\n"
    "mret_tvec:     csrw mtvec, t1\n  csrw mepc, t0\n  mret\n"
    "               jal  zero, mret_back\n"                /* after a trapping mret */
    "    .balign 4\n"
    "    .2byte 0x0001\n"
    "mret_land:     .2byte 0x0505\n"                       /* c.addi a0, 1 */
    "               jal  zero, mret_back\n"
    "probe_ret:     ret\n"
    "    .balign 4\n"
    "    .2byte 0x0001\n"
    "odd_target:    .2byte 0x0505\n .2byte 0x8302\n"       /* c.addi a0, 1; c.jr t1 */
    "    .2byte 0x0001\n .2byte 0x0001\n"                  /* (.balign cannot pad 2 bytes here) */
    "odd_branch:    .2byte 0x0505\n"                       /* c.addi a0, 1 */
    "               jal  zero, branch_back\n"
    "    .option pop\n");
u64 probe_jal(u64, u64), probe_jalr(u64, u64), probe_jalr_b0(u64, u64), probe_branch(u64, u64),
    probe_c_words(u64, u64), probe_mret(u64, u64);

static void run(const char *name, probe_fn probe, u64 a0) {
    t_count = t_cause = t_tval = t_epc = 0;
    u64 r = probe(a0, 0);
    u64 base = (u64)probe;
    puts(name);
    puts(": a0=");
    put_dec(r);
    if (t_count == 0) {
        puts(" no trap\n");
        return;
    }
    puts(" mcause=");
    put_hex(t_cause);
    puts(" mtval=");
    if (t_tval >= base && t_tval - base < 256) {
        puts("probe+");
        put_dec(t_tval - base);
    } else {
        put_hex(t_tval);
    }
    puts(" mepc=");
    if (t_epc >= base && t_epc - base < 256) {
        puts("probe+");
        put_dec(t_epc - base);
    } else {
        put_hex(t_epc);
    }
    if (t_count != 1) {
        puts(" traps=");
        put_dec(t_count);
    }
    putc('\n');
}

static u64 cell[2];

int main(void) {
    puts("ialign\n");
    put_kv_dec("misa.C = ", (csr_read(misa) >> 2) & 1);
    run("jal to pc%4==2", probe_jal, 10);
    run("jalr to pc%4==2", probe_jalr, 10);
    run("jalr to pc%4==2 with bit 0 set", probe_jalr_b0, 10);
    run("branch to pc%4==2", probe_branch, 10);
    run("compressed halfwords", probe_c_words, 10);
    run("mret to pc%4==2", probe_mret, 10);
    u64 base = (u64)cell;
    for (u64 low = 0; low < 4; low++) {
        csr_write(mepc, base + low);
        puts("csrw mepc, base+");
        put_dec(low);
        put_kv_dec(" -> base+", csr_read(mepc) - base);
    }
    puts("ialign done\n");
    return 0;
}
