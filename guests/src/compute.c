/* compute: an ALU + M-extension loop; prints a checksum.
 * Parameters: slot 0 = iters (default 10_000_000).  Deterministic on plain QEMU. */
#include "guest.h"

int main(void) {
    u64 iters = param(0, 10000000);
    u64 x = 0x9e3779b97f4a7c15UL, y = 0x0123456789abcdefUL, acc = 0, t;
    for (u64 i = 0; i < iters; i++) {
        /* xorshift step + multiply/divide mix; division by zero and
         * overflow happen now and then and are defined on RISC-V */
        __asm__ volatile(
            "slli  %[t], %[x], 13\n"
            "xor   %[x], %[x], %[t]\n"
            "srli  %[t], %[x], 7\n"
            "xor   %[x], %[x], %[t]\n"
            "slli  %[t], %[x], 17\n"
            "xor   %[x], %[x], %[t]\n"
            "mul   %[t], %[x], %[y]\n"
            "add   %[acc], %[acc], %[t]\n"
            "mulhu %[t], %[x], %[y]\n"
            "xor   %[acc], %[acc], %[t]\n"
            "mulh  %[t], %[acc], %[x]\n"
            "sub   %[y], %[y], %[t]\n"
            "andi  %[t], %[x], 0xff\n"
            "addi  %[t], %[t], -8\n"       /* sometimes 0 or negative */
            "div   %[t], %[acc], %[t]\n"
            "add   %[acc], %[acc], %[t]\n"
            "srai  %[t], %[x], 57\n"        /* -64..63, sometimes 0 */
            "remu  %[t], %[y], %[t]\n"
            "addw  %[acc], %[acc], %[t]\n"  /* sign-extending 32-bit ops */
            "mulw  %[t], %[acc], %[x]\n"
            "xor   %[acc], %[acc], %[t]\n"
            "sraiw %[t], %[y], 3\n"
            "divuw %[t], %[acc], %[t]\n"
            "or    %[y], %[y], %[t]\n"
            "sltu  %[t], %[acc], %[y]\n"
            "add   %[y], %[y], %[t]\n"
            "srli  %[t], %[y], 1\n"
            "slli  %[y], %[y], 63\n"
            "or    %[y], %[y], %[t]\n"
            : [x] "+r"(x), [y] "+r"(y), [acc] "+r"(acc), [t] "=&r"(t));
        acc += i;
    }
    puts("compute iters=");
    put_dec(iters);
    puts(" checksum=");
    put_hex(acc ^ x ^ y);
    putc('\n');
    return 0;
}
