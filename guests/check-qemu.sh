#!/bin/bash
# Check that every guest prints the same bytes on QEMU run after run:
# guests 1-8 on plain QEMU, the icount guests under -icount shift=N,sleep=off.
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
for g in hello trap_tour compute mmio timer_irq wfi_wake smc exit_code; do
    check "$g" "$g"
done
for g in rdtime_delta timer_landing mtime_mmio wfi_sleep; do
    for s in 0 1 3 7 10; do
        check "$g shift=$s" "$g" -- -icount shift=$s,sleep=off
    done
done
exit $fail
