/* alu_loop: a pure ALU loop of exactly 4 instructions per iteration, for the
 * MIPS benchmark (benches/mips.rs).  No loads, stores, M-extension ops or MMIO
 * inside the loop: one translation block that chains to itself.
 *
 * Parameter: slot 0 (u64 at 0x80100000) = iterations; 0 = default 100_000_000.
 * Ends by writing 0x5555 to the sifive_test finisher at 0x100000 (exit 0).
 * Harts other than 0 (a0 = mhartid from the reset ROM) park in wfi.
 *
 * Build (the ELF is committed next to this file):
 *   riscv64-unknown-elf-gcc -march=rv64ima_zicsr_zifencei -mabi=lp64 -nostdlib \
 *     -static -Wl,--no-relax -Wl,-Ttext=0x80000000 -Wl,--build-id=none \
 *     -Wl,-N -Wl,--no-warn-rwx-segments -o alu_loop.elf alu_loop.S
 */
    .section .text
    .globl _start
_start:
    bnez    a0, park
    li      t0, 0x80100000
    ld      a1, 0(t0)          /* iterations */
    bnez    a1, 1f
    li      a1, 100000000
1:  li      a2, 0
    li      a3, 0
loop:                          /* 4 instructions per iteration */
    addi    a2, a2, 3
    xor     a3, a3, a2
    addi    a1, a1, -1
    bnez    a1, loop
    li      t0, 0x100000
    li      t1, 0x5555
    sw      t1, 0(t0)
park:
    wfi
    j       park
