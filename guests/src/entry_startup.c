/* entry_startup: linked the usual way (gcc's default linker script,
 * -Ttext=0x80000000) at -O2, which puts main in .text.startup ahead of
 * _start: e_entry (_start) is not the start of RAM. With -bios none QEMU's
 * reset ROM jumps to the start of RAM whatever e_entry says, so main runs
 * first, without a stack; it needs none. _start, if it ever ran, would say so
 * and fail. */
#define UART ((volatile unsigned char *)0x10000000UL)
#define FINISHER ((volatile unsigned int *)0x100000UL)

__asm__(".text\n"
        ".globl _start\n"
        "_start:\n"
        "    la t0, entry_msg\n"
        "1:  lbu t1, 0(t0)\n"
        "    beqz t1, 2f\n"
        "    li t2, 0x10000000\n"
        "    sb t1, 0(t2)\n"
        "    addi t0, t0, 1\n"
        "    j 1b\n"
        "2:  li t0, 0x100000\n"
        "    li t1, 0x33333\n" /* FAIL, code 3 */
        "    sw t1, 0(t0)\n"
        "3:  j 3b\n"
        ".section .rodata\n"
        "entry_msg: .asciz \"entered at e_entry (_start)\\n\"\n"
        ".text\n");

int main(void) {
    static const char msg[] = "entered at the start of RAM (main)\n";
    for (const char *s = msg; *s; s++)
        *UART = (unsigned char)*s;
    *FINISHER = 0x5555;
    for (;;)
        ;
}
