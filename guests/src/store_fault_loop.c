/* store_fault_loop: a store access fault inside a loop that the translator
 * runs as one TB branching to its own start.  `sd` walks 8 bytes at a time
 * from 0x88000000 - 8 * passes towards the end of RAM and faults (cause 7)
 * at 0x88000000 after `passes` good stores; the handler reads minstret a few
 * instructions later.  Prints the cause, mtval, the passes made and the
 * minstret delta from just before the loop, which counts every instruction
 * of every pass.  Parameter: slot 0 = passes (100).
 * Deterministic on QEMU with -icount shift=0,sleep=off (minstret = VIRTUAL
 * ns = instructions on QEMU 7.2 and 10.0 alike). */
#include "guest.h"

static volatile u64 t_cause, t_tval, t_minstret, t_count;

void trap_handler(u64 *frame) {
    t_minstret = csr_read(minstret);
    t_count++;
    t_cause = csr_read(mcause);
    t_tval = csr_read(mtval);
    csr_write(mepc, frame[1]); /* back to store_loop's caller */
}

/* store_loop(a0 = start, a1 = limit): returns only through the trap. */
u64 store_loop(u64, u64);
__asm__(
    "    .text\n"
    "    .balign 4\n"
    "store_loop:\n"
    "1:  sd    zero, 0(a0)\n"
    "    addi  a0, a0, 8\n"
    "    bltu  a0, a1, 1b\n"
    "    ret\n");

int main(void) {
    u64 passes = param(0, 100);
    u64 start = 0x88000000UL - 8 * passes;
    u64 m0 = csr_read(minstret);
    store_loop(start, 0x90000000UL);
    u64 delta = t_minstret - m0;
    puts("store_fault_loop\n");
    put_kv_dec("passes = ", passes);
    put_kv_hex("mcause = ", t_cause);
    put_kv_hex("mtval = ", t_tval);
    put_kv_dec("traps = ", t_count);
    put_kv_dec("minstret delta = ", delta);
    return 0;
}
