/* rvc_tour: the compressed (C) extension.  Built with -march=rv64imac only.
 * 1. Runs every RV64C instruction on known values and prints the results.
 * 2. Executes reserved/illegal compressed encodings (and c.ebreak, c.jr x0)
 *    and prints mcause, mtval and mepc (relative to the probe) for each.
 * 3. 2-aligned jump targets (c.j, jal, jalr, branches), 32-bit instructions
 *    at pc % 4 == 2, across a 64-byte line and across a page boundary.
 * 4. mepc with bit 1 set (a trap at pc % 4 == 2, an mret to it), an mret to
 *    an odd mepc (QEMU fetches from the odd address as it is), mepc and
 *    misa writes, and a 32-bit instruction whose second half lies past the
 *    end of RAM (skipped with parameter slot 3 = 1: QEMU 7.2 aborts on it,
 *    "translator_access: Assertion `phys_page != -1' failed").
 * 5. Self-modifying compressed code patched with 2-byte stores.
 * Parameter: slot 3 (see 4).  Deterministic on plain QEMU.  Exits 0. */
#include "guest.h"

typedef unsigned short u16;

static volatile u64 t_count, t_cause, t_tval, t_epc;
static volatile int fetch_probe;

/* Returns to the next instruction (its length from its first halfword), or
 * to the caller (ra) for an instruction fetch fault. */
void trap_handler(u64 *frame) {
    t_count++;
    t_cause = csr_read(mcause);
    t_tval = csr_read(mtval);
    t_epc = csr_read(mepc);
    if (fetch_probe) {
        csr_write(mepc, frame[1]);
    } else {
        u16 h = *(volatile u16 *)t_epc;
        csr_write(mepc, t_epc + ((h & 3) == 3 ? 4 : 2));
    }
}

typedef u64 (*probe_fn)(u64, u64);

static void report(const char *name, u64 base) {
    puts(name);
    if (t_count == 0) {
        puts(": no trap\n");
        return;
    }
    puts(": mcause=");
    put_hex(t_cause);
    puts(" mtval=");
    if (t_tval >= base && t_tval - base < 0x2000) {
        puts("probe+");
        put_dec(t_tval - base);
    } else {
        put_hex(t_tval);
    }
    puts(" mepc=");
    if (t_epc >= base && t_epc - base < 0x2000) {
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

static u64 run(const char *name, probe_fn probe, u64 a0, u64 a1) {
    t_count = t_cause = t_tval = t_epc = 0;
    u64 r = probe(a0, a1);
    report(name, (u64)probe);
    return r;
}

/* ---- 1. every compressed instruction ------------------------------------ */
static u64 mem[8] __attribute__((aligned(16)));

/* c_alu(a0 = x, a1 = y): a chain of compressed ALU instructions on a0..a5
 * (x10..x15, reachable by the 3-bit register fields), returns a0. */
u64 c_alu(u64, u64);
__asm__(
    "    .text\n"
    "    .option push\n"
    "    .option rvc\n"
    "    .balign 2\n"
    "c_alu:\n"
    "    c.mv    a2, a0\n"
    "    c.addi  a2, -7\n"
    "    c.li    a3, 31\n"
    "    c.lui   a4, 0xfffe1\n"
    "    c.add   a4, a2\n"
    "    c.addw  a3, a4\n"
    "    c.addiw a3, 13\n"
    "    c.subw  a2, a3\n"
    "    c.sub   a4, a1\n"
    "    c.xor   a2, a4\n"
    "    c.or    a3, a2\n"
    "    c.and   a4, a3\n"
    "    c.andi  a4, -22\n"
    "    c.slli  a2, 37\n"
    "    c.srli  a3, 3\n"
    "    c.srai  a4, 63\n"
    "    c.srai  a2, 11\n"
    "    c.nop\n"
    "    c.add   a0, a2\n"
    "    c.xor   a0, a3\n"
    "    c.slli  a0, 1\n"
    "    c.add   a0, a4\n"
    "    c.addi16sp sp, -64\n"
    "    c.addi4spn a5, sp, 24\n"
    "    c.mv    a1, sp\n"
    "    c.sub   a5, a1\n"
    "    c.add   a0, a5\n"
    "    c.addi16sp sp, 64\n"
    "    c.jr    ra\n"
    "    .option pop\n");

/* c_mem(a0 = &mem, a1 = x): compressed loads and stores, sp- and
 * register-relative; returns a checksum. */
u64 c_mem(u64, u64);
__asm__(
    "    .text\n"
    "    .option push\n"
    "    .option rvc\n"
    "    .balign 2\n"
    "c_mem:\n"
    "    c.addi16sp sp, -32\n"
    "    c.sd    a1, 0(a0)\n"
    "    c.sw    a1, 8(a0)\n"
    "    c.ld    a2, 0(a0)\n"
    "    c.lw    a3, 8(a0)\n"
    "    c.lw    a4, 12(a0)\n"
    "    c.sdsp  a1, 8(sp)\n"
    "    c.swsp  a2, 16(sp)\n"
    "    c.swsp  a3, 20(sp)\n"
    "    c.ldsp  a5, 8(sp)\n"
    "    c.lwsp  t0, 16(sp)\n"
    "    c.ldsp  t1, 16(sp)\n"
    "    c.add   a5, t0\n"
    "    c.xor   a5, a3\n"
    "    c.add   a5, t1\n"
    "    c.add   a5, a4\n"
    "    c.mv    a0, a5\n"
    "    c.addi16sp sp, 32\n"
    "    c.jr    ra\n"
    "    .option pop\n");

/* c_flow(a0 = n): compressed control flow; c.jalr/c.j/c.beqz/c.bnez with
 * targets at pc % 4 == 2; returns a count. */
u64 c_flow(u64, u64);
__asm__(
    "    .text\n"
    "    .option push\n"
    "    .option rvc\n"
    "    .balign 4\n"
    "c_flow:\n"
    "    c.mv    a5, ra\n"
    "    c.li    a1, 0\n"
    "    c.nop\n"                       /* the loop head is at pc % 4 == 2 */
    "1:  c.beqz  a0, 3f\n"
    "    c.addi  a1, 3\n"
    "    la      a2, c_flow_leaf\n"
    "    c.jalr  a2\n"
    "    c.addi  a0, -1\n"
    "    c.bnez  a0, 1b\n"
    "    c.j     3f\n"
    "    c.addi  a1, 7\n"               /* skipped */
    "3:  c.mv    a0, a1\n"
    "    c.mv    ra, a5\n"
    "    c.jr    ra\n"
    "c_flow_leaf:\n"                    /* pc % 4 == 2 */
    "    c.slli  a1, 1\n"
    "    c.jr    ra\n"
    "    .option pop\n");

/* ---- 2. illegal and reserved encodings ---------------------------------- */
#define PROBE16(name, h) \
    "    .balign 4\n" #name ":  .2byte " #h "\n    c.jr ra\n"
__asm__(
    "    .text\n"
    "    .option push\n"
    "    .option rvc\n"
    PROBE16(p_zero, 0x0000)
    PROBE16(p_addi4spn0, 0x0004)
    PROBE16(p_addi4spn0_a5, 0x001c)
    PROBE16(p_fld, 0x2000)
    PROBE16(p_q0_100, 0x8000)
    PROBE16(p_q0_100b, 0x9c40)
    PROBE16(p_fsd, 0xa000)
    PROBE16(p_addiw_x0, 0x2001)
    PROBE16(p_addi16sp0, 0x6101)
    PROBE16(p_lui0, 0x6501)
    PROBE16(p_lui0_x0, 0x6001)
    PROBE16(p_zcb_mul, 0x9d4d)
    PROBE16(p_zcb_11, 0x9d6d)
    PROBE16(p_zcb_not, 0x9c75)
    PROBE16(p_fldsp, 0x2002)
    PROBE16(p_lwsp_x0, 0x4002)
    PROBE16(p_ldsp_x0, 0x6002)
    PROBE16(p_fsdsp, 0xa002)
    PROBE16(p_cebreak, 0x9002)
    PROBE16(p_hint_nop, 0x0005)
    PROBE16(p_hint_li, 0x4005)
    PROBE16(p_hint_lui, 0x6005)
    PROBE16(p_hint_mv, 0x802a)
    PROBE16(p_hint_add, 0x902a)
    PROBE16(p_hint_slli, 0x0006)
    PROBE16(p_hint_srli0, 0x8001)
    "    .balign 4\n"
    "p_cebreak2: c.nop\n  c.ebreak\n  c.jr ra\n"   /* at pc % 4 == 2 */
    "    .balign 4\n"
    "p_ill2:     c.nop\n  .2byte 0x0000\n  c.jr ra\n"
    "    .balign 4\n"
    "p_ill32_2:  c.nop\n  .4byte 0xffffffff\n  c.jr ra\n"
    "    .balign 4\n"
    "p_ecall2:   c.nop\n  ecall\n  c.jr ra\n"
    "    .balign 4\n"
    "p_jr_x0:    .2byte 0x8002\n  c.jr ra\n"
    "    .option pop\n");
u64 p_zero(u64, u64), p_addi4spn0(u64, u64), p_addi4spn0_a5(u64, u64), p_fld(u64, u64),
    p_q0_100(u64, u64), p_q0_100b(u64, u64), p_fsd(u64, u64), p_addiw_x0(u64, u64),
    p_addi16sp0(u64, u64), p_lui0(u64, u64), p_lui0_x0(u64, u64), p_zcb_mul(u64, u64),
    p_zcb_11(u64, u64), p_zcb_not(u64, u64), p_fldsp(u64, u64), p_lwsp_x0(u64, u64),
    p_ldsp_x0(u64, u64), p_fsdsp(u64, u64), p_cebreak(u64, u64), p_hint_nop(u64, u64),
    p_hint_li(u64, u64), p_hint_lui(u64, u64), p_hint_mv(u64, u64), p_hint_add(u64, u64),
    p_hint_slli(u64, u64), p_hint_srli0(u64, u64), p_cebreak2(u64, u64), p_ill2(u64, u64),
    p_ill32_2(u64, u64), p_ecall2(u64, u64), p_jr_x0(u64, u64);

/* ---- 3. alignment ------------------------------------------------------- */
/* 32-bit instructions at pc % 4 == 2, one across a 64-byte line, one across
 * a page boundary (the page-end one is reached by a jump). */
u64 odd32(u64, u64);
__asm__(
    "    .text\n"
    "    .option push\n"
    "    .option rvc\n"
    "    .balign 64\n"
    "odd32:\n"
    "    c.nop\n"
    "    addi    a0, a0, 1000\n"        /* pc % 4 == 2 */
    "    lui     a2, 0x12345\n"
    "    .fill 26, 2, 0x0001\n"         /* c.nop up to offset 62 */
    "    addi    a0, a0, 3\n"           /* bytes 62..65: across a line */
    "    mul     a0, a0, a1\n"
    "    la      a3, odd32_page_end\n"
    "    jr      a3\n"
    "    .balign 4096\n"
    "    .fill 2046, 2, 0x0001\n"
    "odd32_page_end:\n"                 /* page offset 4092 */
    "    c.addi  a0, 5\n"
    "    addi    a0, a0, 100\n"         /* bytes 4094..4097: across a page */
    "    c.addi  a0, 1\n"
    "    jalr    zero, 2(ra)\n"         /* returns to ra + 2: see call_odd32 */
    "    .option pop\n");

/* call_odd32: calls odd32 and lands 2 bytes after the normal return point. */
u64 call_odd32(u64, u64);
__asm__(
    "    .text\n"
    "    .option push\n"
    "    .option rvc\n"
    "    .balign 4\n"
    "call_odd32:\n"
    "    c.mv    a5, ra\n"
    "    jal     ra, odd32\n"
    "    c.addi  a0, 9\n"               /* skipped by jalr 2(ra) */
    "    c.mv    ra, a5\n"
    "    c.jr    ra\n"
    "    .option pop\n");

/* An mret to an address with bit 1 set, from a 4-aligned ecall. */
u64 mret_probe(u64, u64);
__asm__(
    "    .text\n"
    "    .option push\n"
    "    .option rvc\n"
    "    .balign 4\n"
    "mret_probe:\n"
    "    c.mv    a5, ra\n"
    "    la      a2, mret_land\n"
    "    csrw    mepc, a2\n"
    "    la      a3, mret_tvec\n"
    "    csrr    a4, mtvec\n"
    "    csrw    mtvec, a3\n"
    "    ecall\n"
    "    c.li    a0, 1\n"               /* not reached */
    "    c.mv    ra, a5\n"
    "    c.jr    ra\n"
    "    .balign 4\n"
    "mret_tvec:\n"
    "    csrw    mepc, a2\n"
    "    mret\n"
    "    .balign 4\n"
    "    c.li    a0, 2\n"               /* not reached */
    "mret_land:\n"                      /* pc % 4 == 2 */
    "    csrw    mtvec, a4\n"
    "    csrr    a0, mepc\n"
    "    c.sub   a0, a2\n"
    "    c.addi  a0, 7\n"
    "    c.mv    ra, a5\n"
    "    c.jr    ra\n"
    "    .option pop\n");

/* An mret to an odd mepc (bit 0 set): with C, QEMU fetches from the odd
 * address as it is.  The bytes from mret_odd_land + 1 on are instructions. */
u64 mret_odd_probe(u64, u64);
__asm__(
    "    .text\n"
    "    .option push\n"
    "    .option rvc\n"
    "    .balign 4\n"
    "mret_odd_probe:\n"
    "    c.mv    a5, ra\n"
    "    la      a2, mret_odd_land + 1\n"
    "    la      a3, mret_tvec\n"
    "    csrr    a4, mtvec\n"
    "    csrw    mtvec, a3\n"
    "    ecall\n"
    "    c.li    a0, 1\n"               /* not reached */
    "    c.mv    ra, a5\n"
    "    c.jr    ra\n"
    "    .balign 4\n"
    "mret_odd_land:\n"
    "    .byte   0x00\n"
    "    .byte   0x73, 0x10, 0x57, 0x30\n" /* csrw mtvec, a4 */
    "    .byte   0x25, 0x45\n"         /* c.li a0, 9 */
    "    .byte   0xbe, 0x80\n"         /* c.mv ra, a5 */
    "    .byte   0x82, 0x80\n"         /* c.jr ra */
    "    .byte   0x00\n"
    "    .option pop\n");

/* ---- 5. self-modifying compressed code ---------------------------------- */
u64 smc16(u64, u64);
__asm__(
    "    .text\n"
    "    .option push\n"
    "    .option rvc\n"
    "    .balign 4\n"
    "smc16:\n"
    "    c.addi  a0, 1\n"
    "    c.addi  a0, 2\n"
    "    c.jr    ra\n"
    "    .option pop\n");
#define C_ADDI_A0(imm) ((u16)(0x0501 | (((imm) & 31) << 2) | ((((imm) >> 5) & 1) << 12)))

int main(void) {
    puts("rvc_tour\n");

    /* 1. */
    put_kv_hex("c_alu(0x123456789, 0x42) = ", c_alu(0x123456789UL, 0x42));
    put_kv_hex("c_alu(-5, 0x7fffffff) = ", c_alu((u64)-5, 0x7fffffff));
    put_kv_hex("c_mem = ", c_mem((u64)mem, 0x8877665544332211UL));
    put_kv_hex("  mem[0] = ", mem[0]);
    put_kv_hex("  mem[1] = ", mem[1]);
    put_kv_dec("c_flow(5) = ", c_flow(5, 0));
    put_kv_dec("c_flow(0) = ", c_flow(0, 0));

    /* 2. */
    run("all-zero halfword", p_zero, 0, 0);
    run("c.addi4spn a1, nzuimm=0", p_addi4spn0, 0, 0);
    run("c.addi4spn a5, nzuimm=0", p_addi4spn0_a5, 0, 0);
    run("c.fld (FS off)", p_fld, 0, 0);
    run("quadrant 0 funct3 100 (c.lbu)", p_q0_100, 0, 0);
    run("quadrant 0 funct3 100 (c.sb)", p_q0_100b, 0, 0);
    run("c.fsd", p_fsd, 0, 0);
    run("c.addiw x0", p_addiw_x0, 0, 0);
    run("c.addi16sp 0", p_addi16sp0, 0, 0);
    run("c.lui a0, 0", p_lui0, 0, 0);
    run("c.lui x0, 0", p_lui0_x0, 0, 0);
    run("100 1 11 .. 10 (c.mul)", p_zcb_mul, 0, 0);
    run("100 1 11 .. 11 (c.sext.h)", p_zcb_11, 0, 0);
    run("100 1 11 .. 11 (c.not)", p_zcb_not, 0, 0);
    run("c.fldsp", p_fldsp, 0, 0);
    run("c.lwsp x0", p_lwsp_x0, 0, 0);
    run("c.ldsp x0", p_ldsp_x0, 0, 0);
    run("c.fsdsp", p_fsdsp, 0, 0);
    run("c.ebreak", p_cebreak, 0, 0);
    run("c.ebreak at pc%4==2", p_cebreak2, 0, 0);
    run("illegal halfword at pc%4==2", p_ill2, 0, 0);
    run("illegal word at pc%4==2", p_ill32_2, 0, 0);
    run("ecall at pc%4==2", p_ecall2, 0, 0);
    put_kv_dec("  mepc & 3 = ", t_epc & 3);
    run("hint c.addi x0, 1", p_hint_nop, 0, 0);
    run("hint c.li x0, 1", p_hint_li, 0, 0);
    run("hint c.lui x0, 1", p_hint_lui, 0, 0);
    run("hint c.mv x0, a0", p_hint_mv, 0, 0);
    run("hint c.add x0, a0", p_hint_add, 0, 0);
    run("hint c.slli x0, 1", p_hint_slli, 0, 0);
    run("c.srli s0, 0", p_hint_srli0, 0, 0);
    fetch_probe = 1;
    run("c.jr x0", p_jr_x0, 0, 0);
    fetch_probe = 0;

    /* 3. */
    put_kv_dec("odd32(1, 3) = ", call_odd32(1, 3));

    /* 4. */
    put_kv_dec("mret to pc%4==2: ", mret_probe(0, 0));
    put_kv_dec("mret to an odd mepc: ", mret_odd_probe(0, 0));
    u64 base = (u64)mem;
    static const u64 lows[] = {0, 1, 2, 3};
    for (int i = 0; i < 4; i++) {
        csr_write(mepc, base + lows[i]);
        puts("csrw mepc, base+");
        put_dec(lows[i]);
        put_kv_dec(" -> base+", csr_read(mepc) - base);
    }
    u64 misa = csr_read(misa);
    put_kv_dec("misa.C = ", (misa >> 2) & 1);
    csr_clear(misa, 1UL << 2);
    put_kv_dec("after csrc misa, C: misa.C = ", (csr_read(misa) >> 2) & 1);
    /* c.addi a0, 1 still executes */
    put_kv_dec("smc16(0) = ", smc16(0, 0));
    /* a 32-bit instruction whose second half is past the end of RAM, and a
     * compressed one that ends exactly there */
    volatile u16 *end = (volatile u16 *)0x87fffffeUL;
    if (param(3, 0) != 1) {
        *end = 0x0513; /* low half of addi a0, x0, ... */
        __asm__ volatile("fence.i" ::: "memory");
        fetch_probe = 1;
        run("32-bit insn across the end of RAM", (probe_fn)0x87fffffeUL, 0, 0);
        fetch_probe = 0;
    }
    *end = 0x8082; /* c.jr ra */
    __asm__ volatile("fence.i" ::: "memory");
    run("c.jr ra in the last halfword of RAM", (probe_fn)0x87fffffeUL, 0, 0);

    /* 5. */
    volatile u16 *p = (volatile u16 *)(u64)smc16;
    u64 sum = 0;
    for (int k = -32; k < 32; k++) {
        p[1] = C_ADDI_A0(k);
        __asm__ volatile("fence.i" ::: "memory");
        sum += smc16(100, 0);
    }
    put_kv_dec("smc16: 64 patches, sum = ", sum);
    p[0] = 0x4501 | (7 << 2); /* c.li a0, 7 */
    __asm__ volatile("fence.i" ::: "memory");
    put_kv_dec("smc16 after c.li patch = ", smc16(100, 0));
    puts("rvc_tour done\n");
    return 0;
}
