/* Shared helpers for the vcpulab guests: UART printing, finisher, CSRs,
 * the parameter block.  M-mode only, QEMU `virt` addresses. */
#ifndef GUEST_H
#define GUEST_H

typedef unsigned long u64;
typedef long i64;
typedef unsigned int u32;
typedef unsigned char u8;

#define UART0        0x10000000UL
#define UART_THR     0
#define UART_LSR     5
#define UART_SCR     7
#define LSR_THRE     0x20
#define FINISHER     0x00100000UL
#define CLINT        0x02000000UL
#define CLINT_MSIP   (CLINT + 0x0)
#define CLINT_MTIMECMP (CLINT + 0x4000)
#define CLINT_MTIME  (CLINT + 0xBFF8)
#define PARAM_BLOCK  0x80100000UL

#define MIP_MSIP  (1UL << 3)
#define MIP_MTIP  (1UL << 7)
#define MSTATUS_MIE (1UL << 3)
#define CAUSE_INT (1UL << 63)

#define csr_read(csr) ({ u64 __v; __asm__ volatile("csrr %0, " #csr : "=r"(__v) :: "memory"); __v; })
#define csr_write(csr, val) __asm__ volatile("csrw " #csr ", %0" :: "rK"((u64)(val)) : "memory")
#define csr_set(csr, val) __asm__ volatile("csrs " #csr ", %0" :: "rK"((u64)(val)) : "memory")
#define csr_clear(csr, val) __asm__ volatile("csrc " #csr ", %0" :: "rK"((u64)(val)) : "memory")

static inline void mmio_w8(u64 a, u8 v) { *(volatile u8 *)a = v; }
static inline u8 mmio_r8(u64 a) { return *(volatile u8 *)a; }
static inline void mmio_w32(u64 a, u32 v) { *(volatile u32 *)a = v; }
static inline u32 mmio_r32(u64 a) { return *(volatile u32 *)a; }
static inline void mmio_w64(u64 a, u64 v) { *(volatile u64 *)a = v; }
static inline u64 mmio_r64(u64 a) { return *(volatile u64 *)a; }

/* Parameter slot i, or def when the loader left it 0. */
static inline u64 param(int i, u64 def) {
    u64 v = *(volatile u64 *)(PARAM_BLOCK + 8 * (u64)i);
    return v ? v : def;
}

static inline u64 rdtime(void) { u64 t; __asm__ volatile("rdtime %0" : "=r"(t)); return t; }
static inline u64 mtime(void) { return mmio_r64(CLINT_MTIME); }

void putc(char c);
void puts(const char *s);            /* no newline added */
void put_dec(u64 v);
void put_sdec(i64 v);
void put_hex(u64 v);                 /* 0x + minimal hex digits */
void put_kv_dec(const char *k, u64 v); /* "k" v "\n" */
void put_kv_hex(const char *k, u64 v);
__attribute__((noreturn)) void exit_code(u64 code); /* finisher; 0 -> 0x5555 */
__attribute__((noreturn)) void unexpected_trap(u64 *frame);

#endif
