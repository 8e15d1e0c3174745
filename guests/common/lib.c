#include "guest.h"

void putc(char c) {
    while (!(mmio_r8(UART0 + UART_LSR) & LSR_THRE))
        ;
    mmio_w8(UART0 + UART_THR, (u8)c);
}

void puts(const char *s) {
    while (*s)
        putc(*s++);
}

void put_dec(u64 v) {
    char buf[24];
    int n = 0;
    do {
        buf[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        putc(buf[--n]);
}

void put_sdec(i64 v) {
    if (v < 0) {
        putc('-');
        put_dec((u64)0 - (u64)v);
    } else {
        put_dec((u64)v);
    }
}

void put_hex(u64 v) {
    static const char digits[] = "0123456789abcdef";
    char buf[16];
    int n = 0;
    do {
        buf[n++] = digits[v & 15];
        v >>= 4;
    } while (v);
    putc('0');
    putc('x');
    while (n)
        putc(buf[--n]);
}

void put_kv_dec(const char *k, u64 v) {
    puts(k);
    put_dec(v);
    putc('\n');
}

void put_kv_hex(const char *k, u64 v) {
    puts(k);
    put_hex(v);
    putc('\n');
}

void exit_code(u64 code) {
    u32 v = code ? (u32)(0x3333 | (code << 16)) : 0x5555;
    for (;;)
        mmio_w32(FINISHER, v);
}

void unexpected_trap(u64 *frame) {
    (void)frame;
    puts("unexpected trap: mcause=");
    put_hex(csr_read(mcause));
    puts(" mepc=");
    put_hex(csr_read(mepc));
    puts(" mtval=");
    put_hex(csr_read(mtval));
    putc('\n');
    exit_code(99);
}
