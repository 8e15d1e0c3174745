/* timer_irq: arms mtimecmp = mtime + delay, enables MTIE + MIE and spins; the
 * handler counts machine-timer interrupts and re-arms until iters have been
 * taken, then main prints the count and exits 0.
 * Parameters: slot 0 = iters (default 5), slot 2 = delay in mtime ticks
 * (default 10_000 = 1 ms).  Output is deterministic on plain QEMU (no times printed). */
#include "guest.h"

static volatile u64 count, target, delay, last_cause, bad;

void trap_handler(u64 *frame) {
    u64 cause = csr_read(mcause);
    if (cause != (CAUSE_INT | 7))
        unexpected_trap(frame);
    last_cause = cause;
    count++;
    if (count < target)
        mmio_w64(CLINT_MTIMECMP, mtime() + delay);
    else {
        mmio_w64(CLINT_MTIMECMP, ~0UL); /* disarm: MTIP must drop at once */
        if (csr_read(mip) & MIP_MTIP)
            bad++;
    }
}

int main(void) {
    target = param(0, 5);
    delay = param(2, 10000);
    mmio_w64(CLINT_MTIMECMP, mtime() + delay);
    csr_set(mie, MIP_MTIP);
    csr_set(mstatus, MSTATUS_MIE);
    while (count < target)
        ;
    csr_clear(mstatus, MSTATUS_MIE);
    csr_clear(mie, MIP_MTIP);
    puts("timer interrupts: ");
    put_dec(count);
    putc('\n');
    put_kv_hex("mcause: ", last_cause);
    put_kv_dec("mtip pending after disarm: ", bad);
    return 0;
}
