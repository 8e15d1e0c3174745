#!/bin/bash
# Run one guest on QEMU 7.2: guests/run-qemu.sh NAME [SLOT=VALUE ...] [-- extra qemu args]
# e.g. guests/run-qemu.sh compute 0=1000 -- -icount shift=3,sleep=off
# Output is bounded and the run is time-limited; never add -d/-D here.
set -e -o pipefail
dir=$(dirname "$0")
name=$1; shift
args=""
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
    slot=${1%%=*}; val=${1#*=}
    args="$args -device loader,addr=$(printf '0x%x' $((0x80100000 + 8 * slot))),data=$val,data-len=8"
    shift
done
[ "$1" = "--" ] && shift
timeout ${TIMEOUT:-10} qemu-system-riscv64 -machine virt -bios none -nographic -monitor none \
    -serial stdio -kernel "$dir/build/$name.elf" $args "$@" | head -c 20000
