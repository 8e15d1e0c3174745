/* Shared start-up and trap entry for the vcpulab guests (M-mode only).
 * _start: harts other than 0 (a0 = mhartid from the reset ROM) park in wfi;
 * hart 0: stack at 0x80200000, mtvec = trap_entry (direct mode), bss zeroed,
 * then main(hartid); if main returns r, exit with finisher code r. */
    .file "start.S"
#include "trap_entry.inc"
    .section .text.init, "ax"
    .globl _start
_start:
    bnez    a0, park
    li      sp, 0x80200000
    la      t0, trap_entry
    csrw    mtvec, t0
    la      t0, __bss_start
    la      t1, __bss_end
1:  bgeu    t0, t1, 2f
    sd      zero, 0(t0)
    addi    t0, t0, 8
    j       1b
2:  call    main
    call    exit_code
3:  j       3b
park:
    wfi
    j       park

/* Trap entry: save x1..x31 in a 256-byte frame (frame[i] = x_i), call
 * trap_handler(frame); it may change mepc (csrw) and frame[] entries. */
    .text
    .balign 4
    .globl trap_entry
trap_entry:
    TRAP_ENTRY trap_handler

/* Default trap handler (weak): report an unexpected trap and exit with code 99. */
    .weak trap_handler
trap_handler:
    call    unexpected_trap
4:  j       4b
