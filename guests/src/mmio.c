/* mmio: a loop of a few ALU ops plus a write and read-back of the 16550
 * scratch register (UART0 + 7); prints a checksum.
 * Parameters: slot 0 = iters (default 100_000).  Deterministic on plain QEMU. */
#include "guest.h"

int main(void) {
    u64 iters = param(0, 100000);
    u64 x = 0x2545f4914f6cdd1dUL, sum = 0, bad = 0;
    for (u64 i = 0; i < iters; i++) {
        x ^= x << 7;
        x ^= x >> 9;
        u8 w = (u8)(x + i);
        mmio_w8(UART0 + UART_SCR, w);
        u8 r = mmio_r8(UART0 + UART_SCR);
        bad += (r != w);
        sum = sum * 31 + r;
    }
    puts("mmio iters=");
    put_dec(iters);
    puts(" checksum=");
    put_hex(sum ^ x);
    puts(" mismatches=");
    put_dec(bad);
    putc('\n');
    return 0;
}
