#!/usr/bin/env bash
# The serial link's figures for BENCHMARKS.md: runs queueserver-link/tests/qemu.rs
# RUNS times (default 3) against the link firmware (updates every 10 ms, and unthrottled)
# and prints each run's figures; then what the link adds in flash and RAM, per opt-level
# (footprint-link minus footprint-server). Take figures on a quiet machine: QEMU's
# `-icount` clock falls behind real time when the host is busy.
#
# Usage: ./link-figures.sh [RUNS]
# Needs qemu-system-arm and arm-none-eabi-size (Debian: qemu-system-arm,
# binutils-arm-none-eabi).
set -euo pipefail
cd "$(dirname "$0")"
runs=${1:-3}
grep -m1 'model name' /proc/cpuinfo
qemu-system-arm --version | head -n 1
LINK_UPDATE_MS=0 LINK_TICK_US=100 cargo build --quiet --release --bin link
cp target/thumbv7em-none-eabihf/release/link target/link-fast.elf
cargo build --quiet --release --bin link
cp target/thumbv7em-none-eabihf/release/link target/link.elf
for run in $(seq "$runs"); do
    echo "=== run $run: $(uptime)"
    (cd ../.. && CARGO_TARGET_DIR=${LINK_TEST_TARGET_DIR:-target} LINK_FIRMWARE="$PWD/examples/cortex-m/target/link.elf" \
        LINK_FIRMWARE_FAST="$PWD/examples/cortex-m/target/link-fast.elf" \
        timeout --kill-after=10 300 cargo test --quiet -p queueserver-link --features qemu \
        --test qemu -- --test-threads=1 --nocapture) 2>&1 | grep -E '^figure|sizes|test result'
done

# "flash ram" of an ELF (as footprint.sh counts them).
sections() {
    arm-none-eabi-size -A "$1" | awk '
        $1 == ".vector_table" || $1 == ".text" || $1 == ".rodata" { flash += $2 }
        $1 == ".data" { flash += $2; ram += $2 }
        $1 == ".bss" || $1 == ".uninit" { ram += $2 }
        END { print flash + 0, ram + 0 }'
}
echo "=== what the link adds (footprint-link - footprint-server), flash / static RAM"
for profile in release release-z release-3; do
    cargo build --quiet --profile "$profile" --bin footprint-server --bin footprint-link
    dir=target/thumbv7em-none-eabihf/$profile
    read -r sf sr < <(sections "$dir/footprint-server")
    read -r lf lr < <(sections "$dir/footprint-link")
    echo "  $profile: server $sf / $sr, server + link $lf / $lr, the link $((lf - sf)) / $((lr - sr))"
done
