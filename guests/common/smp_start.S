/* Start-up and trap entry for the SMP guests (M-mode only); used instead of
 * start.S.  Every hart arrives here with a0 = mhartid.
 *
 * Every hart: sp = 0x80200000 - 0x2000 * hartid (8 KiB each, 64 harts at
 * most, so the lowest stack stays above the parameter block), mtvec =
 * smp_trap_entry (direct mode).
 * Hart 0: zeroes .bss, then calls smp_boot(0) (common/smp.c), which counts
 * the harts and publishes the count; harts other than 0 wait for that in
 * smp_boot() and only then touch .bss.  smp_boot() returns only on the harts
 * that take part, after all of them have arrived; then smp_main(hartid,
 * nharts) runs.  Hart 0: if smp_main returns r, exit with finisher code r.
 * Other harts: if smp_main returns, park in wfi with mie = 0.
 * A hart with hartid >= 64 parks at once. */
    .file "smp_start.S"
#include "trap_entry.inc"
    .section .text.init, "ax"
    .globl _start
_start:
    li      t0, 64
    bgeu    a0, t0, smp_park
    li      sp, 0x80200000
    slli    t0, a0, 13
    sub     sp, sp, t0
    la      t0, smp_trap_entry
    csrw    mtvec, t0
    mv      s0, a0
    bnez    a0, 2f
    la      t0, __bss_start
    la      t1, __bss_end
1:  bgeu    t0, t1, 2f
    sd      zero, 0(t0)
    addi    t0, t0, 8
    j       1b
2:  mv      a0, s0
    call    smp_boot            /* a0 = nharts; does not return on idle harts */
    mv      a1, a0
    mv      a0, s0
    call    smp_main
    bnez    s0, smp_park
    call    exit_code
3:  j       3b

    .globl smp_park
smp_park:
    csrw    mie, zero
4:  wfi
    j       4b

/* Trap entry: save x1..x31 in a 256-byte frame on the hart's stack
 * (frame[i] = x_i), call smp_trap_handler(frame); it may change mepc (csrw)
 * and frame[] entries. */
    .text
    .balign 4
    .globl smp_trap_entry
smp_trap_entry:
    TRAP_ENTRY smp_trap_handler
