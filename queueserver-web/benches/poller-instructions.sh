#!/usr/bin/env bash
# Instructions the poller executes per update with the web view attached (no view; a view
# with 0, 1 and 16 pages), counted by callgrind inside `poll_once` of
# `examples/poller_instructions.rs` (`put_update` then `process_updates`), on the poller's
# thread only. Counts do not depend on the machine's load. Prints a Markdown table.
#
#   queueserver-web/benches/poller-instructions.sh
#   UPDATES=50000 queueserver-web/benches/poller-instructions.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TERM_COLOR=never
n=${UPDATES:-20000}

if ! command -v valgrind >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq valgrind >/dev/null
fi
cargo build --quiet --release -p queueserver-web --example poller_instructions
bin=target/release/examples/poller_instructions

count() { # ARGS...
    local out
    out=$(mktemp)
    valgrind --tool=callgrind --callgrind-out-file="$out" --toggle-collect='*poll_once*' \
        "$bin" --updates "$n" "$@" >/dev/null 2>&1
    awk -v n="$n" '/^summary:/ { printf "%.0f", $2 / n }' "$out"
    rm -f "$out"
}

printf 'Instructions per update on the poller (%s; callgrind over %d updates)\n\n' "$(rustc --version)" "$n"
echo "| web view | instructions per update |"
echo "|---|---:|"
echo "| none | $(count --no-view) |"
for pages in 0 1 16; do
    echo "| $pages page(s) | $(count --pages "$pages") |"
done
