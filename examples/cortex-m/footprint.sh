#!/usr/bin/env bash
# Flash and RAM footprint, per optimisation level (profiles release = "s", release-z, release-3):
#
# 1. sizes of the firmware and of the two footprint programs (section sizes from `size -A`;
#    flash = vector table + .text + .rodata + .data, static RAM = .data + .bss);
# 2. what the server adds: footprint-server minus footprint-baseline;
# 3. each program's symbols summed by crate (`nm -C -S`): a symbol counts for the crate its
#    demangled path starts with (for `<T as Trait>::f`, T's crate; the trait's for primitive
#    and reference types). Code inlined into a caller counts for the caller, so the firmware's
#    handlers and main loop hold most of the server's code once LTO has inlined it, and
#    core's generic code counts for core even when the server instantiates it (its slice
#    sort, used by the poller's batch of requests, has a line of its own).
#
# Usage: ./footprint.sh [TARGET]   (default thumbv7em-none-eabihf)
# Needs arm-none-eabi-size and arm-none-eabi-nm (Debian: binutils-arm-none-eabi), or
# llvm-size and llvm-nm.
set -euo pipefail
cd "$(dirname "$0")"
target=${1:-thumbv7em-none-eabihf}

if command -v arm-none-eabi-size >/dev/null; then
    size=arm-none-eabi-size nm=arm-none-eabi-nm
elif command -v llvm-size >/dev/null && command -v llvm-nm >/dev/null; then
    size=llvm-size nm=llvm-nm
else
    echo "footprint.sh: needs arm-none-eabi-size/-nm or llvm-size/llvm-nm" >&2
    exit 1
fi

bins=(queueserver-cortex-m footprint-baseline footprint-server)

# "flash ram" of an ELF.
sections() {
    "$size" -A "$1" | awk '
        $1 == ".vector_table" || $1 == ".text" || $1 == ".rodata" { flash += $2 }
        $1 == ".data" { flash += $2; ram += $2 }
        $1 == ".bss" || $1 == ".uninit" { ram += $2 }
        END { print flash + 0, ram + 0 }'
}

# Symbol sizes of an ELF summed by crate: "crate flash ram" lines, largest flash first.
by_crate() {
    "$nm" -C -S --size-sort --radix=d "$1" | awk '
        function crate(n,    s) {
            if (n ~ /^\.Lanon/) return "(constants: strings, panic locations)"
            if (n ~ /^__aeabi_/) return "compiler_builtins"
            if (n ~ /^__rustc::rust_begin_unwind$/) return "panic_semihosting"
            if (n ~ /^__rustc::__r/) return "alloc"
            if (n ~ /^core::slice::sort::/) return "core::slice::sort"
            if (n ~ /^</) {
                s = n
                sub(/^<+/, "", s)
                if (index(s, " as ") > 0) sub(/ as .*/, "", s)
                else sub(/>::.*/, "", s)
                if (s ~ /^[&*\[(]/ || s ~ /^(u|i)(8|16|32|64|128|size)$/ || s ~ /^(f32|f64|bool|char|str)$/) {
                    if (index(n, " as ") == 0) return "core"
                    s = n
                    sub(/^.* as /, "", s)
                }
                n = s
            }
            if (index(n, "::") == 0) {
                if (n ~ /^(SysTick|PendSV|main)$/) return "(firmware)"
                return "cortex_m_rt"
            }
            sub(/::.*/, "", n)
            if (n ~ /^(queueserver_cortex_m|footprint_server|footprint_baseline)$/) return "(firmware)"
            return n
        }
        NF >= 4 {
            size = $2 + 0
            type = $3
            name = $4
            for (i = 5; i <= NF; i++) name = name " " $i
            c = crate(name)
            if (type ~ /^[tTrRwWvV]$/) flash[c] += size
            else if (type ~ /^[bBdD]$/) ram[c] += size
            seen[c] = 1
        }
        END { for (c in seen) printf "%d %d %s\n", flash[c], ram[c], c }' |
        sort -k1,1nr | awk '{ c = $3; for (i = 4; i <= NF; i++) c = c " " $i; printf "    %-40s %7d %7d\n", c, $1, $2 }'
}

for profile in release release-z release-3; do
    cargo build --quiet --profile "$profile" --target "$target" --bins
    dir=target/$target/$profile
    level=$(case $profile in release) echo s ;; release-z) echo z ;; release-3) echo 3 ;; esac)
    echo "=== $target, profile $profile (opt-level $level)"
    printf '  %-40s %7s %7s\n' program flash ram
    declare -A flash ram
    for bin in "${bins[@]}"; do
        read -r f r < <(sections "$dir/$bin")
        flash[$bin]=$f ram[$bin]=$r
        printf '  %-40s %7d %7d\n' "$bin" "$f" "$r"
    done
    printf '  %-40s %7d %7d\n' "the server (server - baseline)" \
        $((flash[footprint-server] - flash[footprint-baseline])) \
        $((ram[footprint-server] - ram[footprint-baseline]))
    for bin in footprint-server queueserver-cortex-m; do
        echo "  $bin by crate (nm):"
        printf '    %-40s %7s %7s\n' crate flash ram
        by_crate "$dir/$bin"
    done
    echo
done
