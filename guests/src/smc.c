/* smc: self-modifying code.  Runs a tiny function, rewrites its
 * `addi a0, a0, 1` in RAM (whole-word sw, then a single-byte sb), executes
 * fence.i, and runs it again each time.  No parameters.  Exits 0.
 * Deterministic on plain QEMU.  smc_fn stays uncompressed in the C build. */
#include "guest.h"

__asm__(
    "    .text\n"
    "    .option push\n"
    "    .option norvc\n"
    "    .balign 4\n"
    "smc_fn:\n"
    "    addi a0, a0, 1\n"
    "    ret\n"
    "    .option pop\n");
u64 smc_fn(u64);

#define ADDI_A0_A0(imm) (((u32)(imm) << 20) | (10u << 15) | (10u << 7) | 0x13u)

static u64 run_fn(u64 x) { return smc_fn(x); }

int main(void) {
    volatile u32 *insn = (volatile u32 *)(u64)smc_fn;
    u64 r1 = run_fn(10);
    put_kv_dec("smc: before patch smc_fn(10) = ", r1);
    put_kv_hex("  insn ", *insn);

    *insn = ADDI_A0_A0(2);
    __asm__ volatile("fence.i" ::: "memory");
    u64 r2 = run_fn(10);
    put_kv_dec("smc: after sw + fence.i smc_fn(10) = ", r2);
    put_kv_hex("  insn ", *insn);

    /* the immediate's low nibble lives in bits 20..23: byte 2 holds imm[3:0]<<4 | rs1 bits */
    volatile u8 *b = (volatile u8 *)(u64)smc_fn;
    b[2] = (u8)((b[2] & 0x0f) | (7u << 4));
    __asm__ volatile("fence.i" ::: "memory");
    u64 r3 = run_fn(10);
    put_kv_dec("smc: after sb + fence.i smc_fn(10) = ", r3);
    put_kv_hex("  insn ", *insn);

    u64 sum = 0;
    for (u32 k = 0; k < 100; k++) {
        *insn = ADDI_A0_A0(k);
        __asm__ volatile("fence.i" ::: "memory");
        sum += run_fn(k);
    }
    put_kv_dec("smc: 100 patches, sum = ", sum);
    return 0;
}
