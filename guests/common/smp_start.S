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
    addi    sp, sp, -256
    sd      x1, 8(sp)
    sd      x3, 24(sp)
    sd      x4, 32(sp)
    sd      x5, 40(sp)
    sd      x6, 48(sp)
    sd      x7, 56(sp)
    sd      x8, 64(sp)
    sd      x9, 72(sp)
    sd      x10, 80(sp)
    sd      x11, 88(sp)
    sd      x12, 96(sp)
    sd      x13, 104(sp)
    sd      x14, 112(sp)
    sd      x15, 120(sp)
    sd      x16, 128(sp)
    sd      x17, 136(sp)
    sd      x18, 144(sp)
    sd      x19, 152(sp)
    sd      x20, 160(sp)
    sd      x21, 168(sp)
    sd      x22, 176(sp)
    sd      x23, 184(sp)
    sd      x24, 192(sp)
    sd      x25, 200(sp)
    sd      x26, 208(sp)
    sd      x27, 216(sp)
    sd      x28, 224(sp)
    sd      x29, 232(sp)
    sd      x30, 240(sp)
    sd      x31, 248(sp)
    addi    t0, sp, 256
    sd      t0, 16(sp)          /* frame[2] = interrupted sp */
    mv      a0, sp
    call    smp_trap_handler
    ld      x1, 8(sp)
    ld      x3, 24(sp)
    ld      x4, 32(sp)
    ld      x5, 40(sp)
    ld      x6, 48(sp)
    ld      x7, 56(sp)
    ld      x8, 64(sp)
    ld      x9, 72(sp)
    ld      x10, 80(sp)
    ld      x11, 88(sp)
    ld      x12, 96(sp)
    ld      x13, 104(sp)
    ld      x14, 112(sp)
    ld      x15, 120(sp)
    ld      x16, 128(sp)
    ld      x17, 136(sp)
    ld      x18, 144(sp)
    ld      x19, 152(sp)
    ld      x20, 160(sp)
    ld      x21, 168(sp)
    ld      x22, 176(sp)
    ld      x23, 184(sp)
    ld      x24, 192(sp)
    ld      x25, 200(sp)
    ld      x26, 208(sp)
    ld      x27, 216(sp)
    ld      x28, 224(sp)
    ld      x29, 232(sp)
    ld      x30, 240(sp)
    ld      x31, 248(sp)
    addi    sp, sp, 256
    mret
