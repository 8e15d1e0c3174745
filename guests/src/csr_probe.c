/* csr_probe: what QEMU versions report at the CSR and AMO level.
 * Prints the machine-information CSRs, mhartid, mie/mip after reset,
 * mcountinhibit (and mcounteren if it exists) after reset and after writes,
 * cycle/instret/time readings, then the traps of AMO/LR/SC to addresses that
 * are not RAM (unmapped, the reset ROM, a device) and of misaligned AMOs.
 *
 * Parameters:
 *   slot 0 = 1: print absolute counter readings (only deterministic under
 *               -icount shift=N,sleep=off); otherwise only whether they move.
 *   slot 1 = 1: also print misa and mstatus (which vcpulab, an M-mode-only
 *               RV64IMA hart, reports differently from QEMU's rv64).
 * Every read goes through a probe that catches an illegal-instruction trap, so
 * a CSR that does not exist prints "trap mcause=...". */
#include "guest.h"

static volatile u64 t_count, t_cause, t_tval, t_epc;

void trap_handler(u64 *frame) {
    (void)frame;
    t_count++;
    t_cause = csr_read(mcause);
    t_tval = csr_read(mtval);
    t_epc = csr_read(mepc);
    csr_write(mepc, t_epc + 4);
}

/* A CSR read that survives a missing CSR; rd starts at 0xbad. */
#define CSR_PROBE(name, csr)                                                   \
    static u64 rd_##name(void) {                                               \
        u64 v = 0xbad;                                                         \
        __asm__ volatile("csrr %0, " #csr : "+r"(v) :: "memory");              \
        return v;                                                              \
    }

CSR_PROBE(misa, misa)
CSR_PROBE(mvendorid, mvendorid)
CSR_PROBE(marchid, marchid)
CSR_PROBE(mimpid, mimpid)
CSR_PROBE(mhartid, mhartid)
CSR_PROBE(mconfigptr, 0xf15)
CSR_PROBE(mstatus, mstatus)
CSR_PROBE(mie, mie)
CSR_PROBE(mip, mip)
CSR_PROBE(mcounteren, 0x306)
CSR_PROBE(mcountinhibit, 0x320)
CSR_PROBE(mscratch, mscratch)
CSR_PROBE(mepc, mepc)
CSR_PROBE(mcause, mcause)
CSR_PROBE(mtval, mtval)
CSR_PROBE(mhpmcounter3, 0xb03)
CSR_PROBE(mhpmevent3, 0x323)
CSR_PROBE(mhpmcounter18, 0xb12)
CSR_PROBE(mhpmcounter19, 0xb13)
CSR_PROBE(mhpmcounter31, 0xb1f)
CSR_PROBE(hpmcounter19, 0xc13)
CSR_PROBE(mhpmevent19, 0x333)
CSR_PROBE(mhpmevent31, 0x33f)

static void show(const char *name, u64 (*f)(void)) {
    t_count = 0;
    u64 v = f();
    puts(name);
    if (t_count) {
        puts(": trap mcause=");
        put_hex(t_cause);
        puts(" mtval=");
        put_hex(t_tval);
    } else {
        puts(" = ");
        put_hex(v);
    }
    putc('\n');
}

static void csr_w(const char *what, void (*f)(void)) {
    t_count = 0;
    f();
    if (t_count) {
        puts(what);
        puts(": trap mcause=");
        put_hex(t_cause);
        puts(" mtval=");
        put_hex(t_tval);
        putc('\n');
    }
}
static void w_inhibit_ones(void) { __asm__ volatile("li t0, -1\n csrw 0x320, t0" ::: "t0", "memory"); }
static void w_inhibit_zero(void) { __asm__ volatile("csrw 0x320, zero" ::: "memory"); }
static void w_counteren_ones(void) { __asm__ volatile("li t0, -1\n csrw 0x306, t0" ::: "t0", "memory"); }
static void w_inhibit_cy_ir(void) { __asm__ volatile("csrwi 0x320, 5" ::: "memory"); }
static void w_mie_ones(void) { __asm__ volatile("li t0, -1\n csrw mie, t0" ::: "t0", "memory"); }
static void w_mie_zero(void) { __asm__ volatile("csrw mie, zero" ::: "memory"); }
static void w_mcycle(void) { __asm__ volatile("li t0, 1000\n csrw mcycle, t0" ::: "t0", "memory"); }
static void w_minstret(void) { __asm__ volatile("li t0, 1000\n csrw minstret, t0" ::: "t0", "memory"); }

/* Counter readings: three reads of each with a fixed loop between them. */
static u64 rd_cycle(void) { u64 v; __asm__ volatile("rdcycle %0" : "=r"(v)); return v; }
static u64 rd_instret(void) { u64 v; __asm__ volatile("rdinstret %0" : "=r"(v)); return v; }
static u64 rd_time(void) { u64 v; __asm__ volatile("rdtime %0" : "=r"(v)); return v; }
static u64 rd_mcycle(void) { u64 v; __asm__ volatile("csrr %0, mcycle" : "=r"(v)); return v; }
static u64 rd_minstret(void) { u64 v; __asm__ volatile("csrr %0, minstret" : "=r"(v)); return v; }

static void spin(u64 n) {
    for (u64 i = 0; i < n; i++)
        __asm__ volatile("");
}

static void counters(const char *name, u64 (*f)(void), int absolute) {
    u64 v[3];
    v[0] = f();
    spin(100);
    v[1] = f();
    spin(1000);
    v[2] = f();
    puts(name);
    if (absolute) {
        for (int i = 0; i < 3; i++) {
            putc(' ');
            put_hex(v[i]);
        }
    } else {
        puts(v[1] > v[0] && v[2] > v[1] ? " increasing" : " NOT increasing");
    }
    putc('\n');
}

/* Atomics: rd starts at 0xbad; a0 = address, a1 = operand. */
__asm__(
    "    .text\n"
    "    .balign 4\n"
    "a_amoadd_w:  amoadd.w a0, a1, (a0)\n ret\n"
    "a_amoadd_d:  amoadd.d a0, a1, (a0)\n ret\n"
    "a_amoswap_w: amoswap.w a0, a1, (a0)\n ret\n"
    "a_amoor_d:   amoor.d a0, a1, (a0)\n ret\n"
    "a_lr_w:      lr.w a0, (a0)\n ret\n"
    "a_lr_d:      lr.d a0, (a0)\n ret\n"
    "a_sc_d:      sc.d a0, a1, (a0)\n ret\n"
    "a_lr_sc_d:   mv t1, a0\n lr.d t0, (a0)\n sc.d a0, a1, (t1)\n ret\n"
    "a_lr_sc_w:   mv t1, a0\n lr.w t0, (a0)\n sc.w a0, a1, (t1)\n ret\n"
);
u64 a_amoadd_w(u64, u64), a_amoadd_d(u64, u64), a_amoswap_w(u64, u64), a_amoor_d(u64, u64),
    a_lr_w(u64, u64), a_lr_d(u64, u64), a_sc_d(u64, u64), a_lr_sc_d(u64, u64),
    a_lr_sc_w(u64, u64);

static u64 cell[4] __attribute__((aligned(16)));

static void atomic(const char *name, u64 (*f)(u64, u64), u64 addr, u64 arg, u64 base) {
    t_count = 0;
    u64 r = f(addr, arg);
    puts(name);
    if (t_count) {
        puts(": mcause=");
        put_hex(t_cause);
        puts(" mtval=");
        if (base && t_tval >= base && t_tval - base < 64) {
            puts("cell+");
            put_dec(t_tval - base);
        } else {
            put_hex(t_tval);
        }
        puts(" mepc=probe+");
        put_dec(t_epc - (u64)f);
    } else {
        puts(": no trap, rd=");
        put_hex(r);
    }
    putc('\n');
}

int main(void) {
    int absolute = param(0, 0) == 1;
    int full = param(1, 0) == 1;
    puts("csr_probe\n");
    if (full) {
        show("misa", rd_misa);
        show("mstatus", rd_mstatus);
    }
    show("mvendorid", rd_mvendorid);
    show("marchid", rd_marchid);
    show("mimpid", rd_mimpid);
    show("mhartid", rd_mhartid);
    show("mconfigptr", rd_mconfigptr);
    show("mie", rd_mie);
    show("mip", rd_mip);
    show("mscratch", rd_mscratch);
    show("mepc", rd_mepc);
    show("mcause", rd_mcause);
    show("mtval", rd_mtval);
    show("mcounteren", rd_mcounteren);
    show("mcountinhibit", rd_mcountinhibit);
    show("mhpmcounter3", rd_mhpmcounter3);
    show("mhpmevent3", rd_mhpmevent3);
    show("mhpmcounter18", rd_mhpmcounter18);
    show("mhpmcounter19", rd_mhpmcounter19);
    show("mhpmcounter31", rd_mhpmcounter31);
    show("hpmcounter19", rd_hpmcounter19);
    show("mhpmevent19", rd_mhpmevent19);
    show("mhpmevent31", rd_mhpmevent31);
    csr_w("csrw mcounteren, -1", w_counteren_ones);
    show("mcounteren after -1", rd_mcounteren);
    csr_w("csrw mie, -1", w_mie_ones);
    show("mie after -1", rd_mie);
    csr_w("csrw mie, 0", w_mie_zero);
    counters("cycle", rd_cycle, absolute);
    counters("instret", rd_instret, absolute);
    counters("time", rd_time, absolute);
    counters("mcycle", rd_mcycle, absolute);
    counters("minstret", rd_minstret, absolute);
    csr_w("csrw mcycle", w_mcycle);
    csr_w("csrw minstret", w_minstret);
    counters("mcycle after write 1000", rd_mcycle, absolute);
    counters("minstret after write 1000", rd_minstret, absolute);
    csr_w("csrw mcountinhibit, -1", w_inhibit_ones);
    show("mcountinhibit after -1", rd_mcountinhibit);
    csr_w("csrw mcountinhibit, 0", w_inhibit_zero);
    show("mcountinhibit after 0", rd_mcountinhibit);
    csr_w("csrw mcountinhibit, 5", w_inhibit_cy_ir);
    show("mcountinhibit after 5", rd_mcountinhibit);
    counters("mcycle inhibited", rd_mcycle, absolute);
    counters("minstret inhibited", rd_minstret, absolute);
    csr_w("csrw mcountinhibit, 0", w_inhibit_zero);
    counters("mcycle after inhibit", rd_mcycle, absolute);
    counters("minstret after inhibit", rd_minstret, absolute);

    u64 c = (u64)cell;
    /* unmapped */
    atomic("amoadd.w 0x90000000", a_amoadd_w, 0x90000000UL, 1, 0);
    atomic("amoadd.d 0x90000000", a_amoadd_d, 0x90000000UL, 1, 0);
    atomic("amoswap.w 0x0", a_amoswap_w, 0x0, 1, 0);
    atomic("lr.w 0x90000000", a_lr_w, 0x90000000UL, 0, 0);
    atomic("lr.d 0x90000000", a_lr_d, 0x90000000UL, 0, 0);
    atomic("sc.d 0x90000000 (no reservation)", a_sc_d, 0x90000000UL, 1, 0);
    atomic("lr.d+sc.d 0x90000000", a_lr_sc_d, 0x90000000UL, 1, 0);
    /* the reset ROM (read-only memory) */
    atomic("amoadd.w 0x1000 (rom)", a_amoadd_w, 0x1000, 1, 0);
    atomic("amoor.d 0x1000 (rom)", a_amoor_d, 0x1000, 0, 0);
    atomic("lr.w 0x1000 (rom)", a_lr_w, 0x1000, 0, 0);
    atomic("lr.d+sc.d 0x1018 (rom)", a_lr_sc_d, 0x1018, 5, 0);
    puts("rom word 0x1000 = ");
    put_hex(mmio_r32(0x1000));
    putc('\n');
    /* a device: the CLINT's mtimecmp[0] (8 bytes) and msip[0] (4 bytes) */
    mmio_w64(CLINT_MTIMECMP, 0x100000000000UL);
    atomic("amoadd.d mtimecmp", a_amoadd_d, CLINT_MTIMECMP, 5, 0);
    puts("mtimecmp = ");
    put_hex(mmio_r64(CLINT_MTIMECMP));
    putc('\n');
    atomic("lr.d mtimecmp", a_lr_d, CLINT_MTIMECMP, 0, 0);
    atomic("lr.d+sc.d mtimecmp", a_lr_sc_d, CLINT_MTIMECMP, 7, 0);
    puts("mtimecmp = ");
    put_hex(mmio_r64(CLINT_MTIMECMP));
    putc('\n');
    atomic("amoswap.w msip", a_amoswap_w, CLINT_MSIP, 0, 0);
    atomic("amoadd.w mtimecmp+2 (misaligned device)", a_amoadd_w, CLINT_MTIMECMP + 2, 1, 0);
    /* misaligned in RAM */
    atomic("amoadd.w cell+2", a_amoadd_w, c + 2, 1, c);
    atomic("amoadd.d cell+4", a_amoadd_d, c + 4, 1, c);
    atomic("amoswap.w cell+1", a_amoswap_w, c + 1, 1, c);
    atomic("lr.w cell+2", a_lr_w, c + 2, 0, c);
    atomic("lr.d cell+4", a_lr_d, c + 4, 0, c);
    atomic("sc.d cell+4 (no reservation)", a_sc_d, c + 4, 1, c);
    atomic("lr.w+sc.w cell+0", a_lr_sc_w, c, 9, c);
    puts("csr_probe done\n");
    return 0;
}
