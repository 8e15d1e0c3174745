/* zb_decode: executes pseudo-random words of the OP, OP-IMM, OP-32 and
 * OP-IMM-32 opcodes (rd = a0; funct7/funct6 and immediates biased towards the
 * Zba/Zbb/Zbs ones and their neighbours), each from a RAM buffer after
 * fence.i. Prints every word that raises an illegal-instruction trap and a
 * checksum of the results of the others, so a decoder that accepts or rejects
 * a word differently from QEMU shows up by its word.
 * Zbc (`clmul*`: OP, funct7 0000101, funct3 1..3), which QEMU's rv64 has and
 * this hart does not, is left out.
 * Parameters: slot 0 = number of words (default 30000). */
#include "guest.h"

static volatile u64 t_count, t_cause, t_tval;

void trap_handler(u64 *frame) {
    (void)frame;
    t_count++;
    t_cause = csr_read(mcause);
    t_tval = csr_read(mtval);
    /* Skip the word: return to the caller of the buffer (ra). */
    csr_write(mepc, frame[1]);
}

static u64 rng = 0x9e3779b97f4a7c15UL;
static u64 next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static const u32 F7[] = {0x00, 0x01, 0x04, 0x05, 0x10, 0x14, 0x20, 0x24, 0x30, 0x34,
                         0x06, 0x07, 0x08, 0x18, 0x28, 0x40, 0x60};
static const u32 IMM12[] = {0x600, 0x601, 0x602, 0x603, 0x604, 0x605, 0x606, 0x607,
                            0x608, 0x610, 0x620, 0x640, 0x287, 0x286, 0x6b8, 0x698,
                            0x6b0, 0x0b8, 0x2b8};

static u32 gen(void) {
    static const u32 OPC[] = {0x13, 0x1b, 0x33, 0x3b};
    u64 r = next();
    u32 opc = OPC[r & 3];
    u32 f3 = (r >> 2) & 7;
    u32 rs1 = (r >> 5) & 31, rs2 = (r >> 10) & 31;
    u32 w = opc | 10u << 7 | f3 << 12 | rs1 << 15;
    u32 pick = (r >> 15) & 7;
    if (opc == 0x33 || opc == 0x3b) {
        u32 f7 = pick < 6 ? F7[(r >> 18) % (sizeof F7 / sizeof F7[0])] : (u32)(r >> 18) & 0x7f;
        if (opc == 0x33 && f7 == 0x05 && f3 >= 1 && f3 <= 3)
            f7 = 0x04; /* Zbc: not on this hart */
        if ((r >> 26) % 8 == 0)
            rs2 = 0;
        w |= rs2 << 20 | f7 << 25;
    } else if (f3 == 1 || f3 == 5) {
        u32 imm;
        if (pick < 3)
            imm = IMM12[(r >> 18) % (sizeof IMM12 / sizeof IMM12[0])];
        else if (pick < 6) /* funct6 from the table, random 6-bit shamt */
            imm = (F7[(r >> 18) % (sizeof F7 / sizeof F7[0])] << 5 & 0xfc0) | ((r >> 24) & 0x7f);
        else
            imm = (r >> 18) & 0xfff;
        w |= imm << 20;
    } else {
        w |= ((r >> 18) & 0xfff) << 20;
    }
    return w;
}

static u32 buf[4] __attribute__((aligned(16)));

int main(void) {
    u64 n = param(0, 30000);
    u64 sum = 0, illegal = 0;
    u64 (*f)(u64, u64, u64) = (u64 (*)(u64, u64, u64))(void *)buf;
    for (u64 i = 0; i < n; i++) {
        u32 w = gen();
        buf[0] = w;
        buf[1] = 0x00008067; /* ret */
        __asm__ volatile("fence.i" ::: "memory");
        t_count = 0;
        u64 a = next(), b = next();
        u64 v = f(a, b, a ^ b);
        if (t_count) {
            illegal++;
            if (t_cause != 2 || t_tval != w) {
                puts("unexpected trap ");
                put_hex(t_cause);
                putc(' ');
                put_hex(t_tval);
                putc('\n');
            }
            put_hex(w);
            putc('\n');
        } else {
            sum = (sum ^ v) * 0x100000001b3UL + w;
        }
    }
    puts("words ");
    put_dec(n);
    puts(" illegal ");
    put_dec(illegal);
    puts(" checksum ");
    put_hex(sum);
    putc('\n');
    return 0;
}
