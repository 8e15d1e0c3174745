/* boot_regs: linked the usual way (gcc's default linker script, -Ttext=0x80000000,
 * no linker script of ours), so its first LOAD segment starts below RAM with the
 * ELF and program headers. _start is the first code at 0x80000000 (= e_entry).
 * Prints the registers the reset ROM hands over: a0 (mhartid), a1 (the
 * device-tree address, which depends on the RAM size) and a2 (fw_dynamic_info),
 * and fw_dynamic_info's next_addr (the ELF's e_entry), then passes. */
__asm__(".text\n"
        ".globl _start\n"
        "_start:\n"
        "    li sp, 0x80200000\n"
        "    j boot_main\n");

#define UART ((volatile unsigned char *)0x10000000UL)
#define FINISHER ((volatile unsigned int *)0x100000UL)

static void put(const char *s) {
    while (*s)
        *UART = (unsigned char)*s++;
}

static void hex(const char *name, unsigned long v) {
    char buf[19];
    put(name);
    buf[0] = '0';
    buf[1] = 'x';
    for (int i = 0; i < 16; i++)
        buf[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 15];
    buf[18] = 0;
    put(buf);
    put("\n");
}

void boot_main(unsigned long a0, unsigned long a1, unsigned long a2) {
    put("boot_regs\n");
    hex("a0 ", a0);
    hex("a1 ", a1);
    hex("a2 ", a2);
    hex("next_addr ", ((volatile unsigned long *)a2)[2]);
    *FINISHER = 0x5555;
    for (;;)
        ;
}
