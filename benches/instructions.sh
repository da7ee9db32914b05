#!/usr/bin/env bash
# Instructions per publish: queueserver `put_update` against a raw `triple_buffer` write
# and an uncontended `Mutex<T>` `clone_from`, at 16 B, 256 B and 4 KiB, with nobody reading
# and with every snapshot taken between two publishes (`examples/publishes.rs`). Counts are
# load-independent: they can be taken on a busy machine.
#
#   benches/instructions.sh            # callgrind (exact, per call), and perf where it works
#   PUBLISHES=1000000 benches/instructions.sh
#
# callgrind counts the instructions executed inside each `publish_*` function (the copy it
# calls included) over PUBLISHES calls; valgrind's CPU model makes glibc pick its baseline
# `memcpy`, so a copy may take a few instructions more or fewer than natively. perf, where
# the machine exposes the counter (`perf stat -e instructions:u true`), counts the whole
# loop natively (the call, the loop's own three instructions, the native `memcpy`), over
# 10^8 publishes (10^7 at 4 KiB), less a run of a tenth as many.
# Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
n=${PUBLISHES:-200000}

if ! command -v valgrind >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq valgrind >/dev/null
fi
cargo build --quiet --release --example publishes
bin=target/release/examples/publishes

perf_ok=false
if command -v perf >/dev/null && perf stat -x, -e instructions:u true 2>&1 | grep -q '^[0-9]'; then
    perf_ok=true
fi

callgrind() { # SIZE IMPL [--taken]
    local out
    out=$(mktemp)
    valgrind --tool=callgrind --callgrind-out-file="$out" --toggle-collect="*publish_$2*" \
        "$bin" --publishes "$n" --size "$1" --impl "$2" ${3:-} >/dev/null 2>&1
    awk -v n="$n" '/^summary:/ { printf "%.1f", $2 / n }' "$out"
    rm -f "$out"
}

perf_count() { # SIZE IMPL: native instructions per publish, loop included
    local big=100000000
    [ "$1" = 4096 ] && big=10000000
    local small=$((big / 10)) a b
    a=$(perf stat -x, -e instructions:u "$bin" --publishes "$small" --size "$1" --impl "$2" 2>&1 >/dev/null | awk -F, '/instructions/ { print $1 }')
    b=$(perf stat -x, -e instructions:u "$bin" --publishes "$big" --size "$1" --impl "$2" 2>&1 >/dev/null | awk -F, '/instructions/ { print $1 }')
    awk -v a="$a" -v b="$b" -v n=$((big - small)) 'BEGIN { printf "%.1f", (b - a) / n }'
}

printf 'Instructions per publish (%s; callgrind over %d calls' "$(rustc --version)" "$n"
$perf_ok && printf '; perf over the whole loop' || printf '; no hardware counters here, perf column empty'
printf ')\n\n'
echo "| size | contender | nobody reading | every snapshot taken | ratio to triple_buffer (nobody / taken) | perf, nobody reading |"
echo "|---|---|---:|---:|---:|---:|"
for size in 16 256 4096; do
    tb_free=$(callgrind "$size" triple_buffer)
    tb_taken=$(callgrind "$size" triple_buffer --taken)
    for impl in queueserver triple_buffer mutex; do
        if [ "$impl" = triple_buffer ]; then
            free=$tb_free taken=$tb_taken
        else
            free=$(callgrind "$size" "$impl")
            taken=$(callgrind "$size" "$impl" --taken)
        fi
        native=""
        $perf_ok && native=$(perf_count "$size" "$impl")
        ratio=$(awk -v a="$free" -v b="$tb_free" -v c="$taken" -v d="$tb_taken" \
            'BEGIN { printf "%.2f× / %.2f×", a / b, c / d }')
        echo "| $size B | $impl | $free | $taken | $ratio | $native |"
    done
done
