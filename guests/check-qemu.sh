#!/bin/bash
# Check that every guest prints the same bytes on QEMU run after run:
# the plain guests on plain QEMU, the icount guests (and csr_probe with slot 0 = 1)
# under -icount shift=N,sleep=off.
# Usage: guests/check-qemu.sh   (prints one line per case, exit 1 on any difference)
dir=$(dirname "$0")
fail=0
check() { # label, then run-qemu.sh arguments
    local label=$1; shift
    local a b c
    a=$("$dir/run-qemu.sh" "$@" | md5sum); b=$("$dir/run-qemu.sh" "$@" | md5sum)
    c=$("$dir/run-qemu.sh" "$@" | md5sum)
    if [ "$a" = "$b" ] && [ "$b" = "$c" ]; then echo "stable    $label"; else echo "UNSTABLE  $label"; fail=1; fi
}
for g in hello trap_tour compute mmio timer_irq wfi_wake smc exit_code zb csr_probe; do
    check "$g" "$g"
done
for s in 0 3 10; do
    check "csr_probe 0=1 shift=$s" csr_probe 0=1 -- -icount shift=$s,sleep=off
done
for g in rdtime_delta timer_landing mtime_mmio wfi_sleep; do
    for s in 0 1 3 7 10; do
        check "$g shift=$s" "$g" -- -icount shift=$s,sleep=off
    done
done
exit $fail
