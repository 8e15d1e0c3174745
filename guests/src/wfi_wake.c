/* wfi_wake: (1) arms the timer and runs wfi in a loop until the handler flags
 * the interrupt; (2) wfi with mstatus.MIE=0 still wakes on a pending+enabled
 * interrupt, which is then taken as soon as MIE is set; (3) a software
 * interrupt to itself through CLINT msip.  Exits 0.
 * Parameters: slot 2 = delay in mtime ticks (default 10_000).
 * Deterministic on plain QEMU (the number of wfi executions is not printed). */
#include "guest.h"

static volatile u64 timer_hits, soft_hits, last_cause, epc_off;
void wfi_insn(void);

void trap_handler(u64 *frame) {
    u64 cause = csr_read(mcause);
    last_cause = cause;
    epc_off = csr_read(mepc) - (u64)wfi_insn;
    if (cause == (CAUSE_INT | 7)) {
        timer_hits++;
        mmio_w64(CLINT_MTIMECMP, ~0UL);
    } else if (cause == (CAUSE_INT | 3)) {
        soft_hits++;
        mmio_w32(CLINT_MSIP, 0);
    } else {
        unexpected_trap(frame);
    }
}

__asm__(".text\n.balign 4\nwfi_insn: wfi\n ret\n");
void wfi_insn(void);
static inline void do_wfi(void) { wfi_insn(); }

/* An interrupt need not be taken on the very next instruction (QEMU checks at
 * translation-block boundaries), so wait a bounded while for it. */
static void wait_for(volatile u64 *counter, u64 value) {
    for (int i = 0; i < 100000 && *counter < value; i++)
        ;
}

int main(void) {
    u64 delay = param(2, 10000);

    /* 1: wfi loop with interrupts enabled */
    mmio_w64(CLINT_MTIMECMP, mtime() + delay);
    csr_set(mie, MIP_MTIP);
    csr_set(mstatus, MSTATUS_MIE);
    while (timer_hits == 0)
        do_wfi();
    puts("woke after wfi\n");
    put_kv_hex("  mcause ", last_cause);
    put_kv_dec("  mepc = wfi + ", epc_off);

    /* 2: wfi with mstatus.MIE clear: wakes, but the interrupt waits for MIE */
    csr_clear(mstatus, MSTATUS_MIE);
    mmio_w64(CLINT_MTIMECMP, mtime() + delay);
    while (!(csr_read(mip) & MIP_MTIP))
        do_wfi();
    put_kv_dec("wfi with MIE=0 woke; mip.MTIP=", (csr_read(mip) >> 7) & 1);
    put_kv_dec("  timer interrupts so far ", timer_hits);
    csr_set(mstatus, MSTATUS_MIE);
    wait_for(&timer_hits, 2);
    put_kv_dec("  after setting MIE, timer interrupts ", timer_hits);
    csr_clear(mie, MIP_MTIP);

    /* 3: software interrupt to self */
    csr_set(mie, MIP_MSIP);
    mmio_w32(CLINT_MSIP, 1);
    wait_for(&soft_hits, 1);
    put_kv_dec("msip interrupts: ", soft_hits);
    put_kv_hex("  mcause ", last_cause);
    put_kv_dec("  msip register ", mmio_r32(CLINT_MSIP));
    put_kv_dec("  mip.MSIP ", (csr_read(mip) >> 3) & 1);
    csr_clear(mstatus, MSTATUS_MIE);
    csr_clear(mie, MIP_MSIP);
    return 0;
}
