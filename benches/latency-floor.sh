#!/usr/bin/env bash
# The latency tool (examples/latency.rs) beside the machine's own floor: installs
# cyclictest (Debian's rt-tests) if it is missing, names the machine, then runs the tool
# RUNS times with the publisher at SCHED_FIFO 80, recording the load average before and
# after each run. The tool runs cyclictest on the publishing core, at the publisher's
# priority, for the same time just before and after each measurement, and prints its max
# beside every tail.
#
#   benches/latency-floor.sh                          # 3 runs, 5 s per measurement
#   RUNS=1 benches/latency-floor.sh --seconds 0.5 --updates 1000   # briefly, as .ci/run does
#
# Arguments go to the tool (`--seconds S`, `--updates M`, `--spin`); `--fifo` is always
# passed. Without root (or CAP_SYS_NICE, CAP_IPC_LOCK) the tool says what it could not do
# and measures anyway. It reports; no figure makes this script fail.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
runs=${RUNS:-3}

if ! command -v cyclictest >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq rt-tests >/dev/null
fi

cargo build --quiet --release -p queueserver --example latency
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $(nproc) CPUs, Linux $(uname -r)"
echo "cyclictest: $(cyclictest --help 2>&1 | head -n 1)"
echo "real-time throttling: sched_rt_runtime_us $(cat /proc/sys/kernel/sched_rt_runtime_us 2>/dev/null || echo unknown) of sched_rt_period_us $(cat /proc/sys/kernel/sched_rt_period_us 2>/dev/null || echo unknown)"
echo "$(rustc --version), $(date -u '+%Y-%m-%d %H:%M UTC')"
for run in $(seq 1 "$runs"); do
    printf '\n# run %s of %s\n\nuptime before: %s\n' "$run" "$runs" "$(uptime)"
    cargo run --quiet --release -p queueserver --example latency -- --fifo "$@"
    printf '\nuptime after: %s\n' "$(uptime)"
done
