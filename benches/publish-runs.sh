#!/usr/bin/env bash
# Publishing figures over several builds and runs: `put_update` against a raw
# `triple_buffer` write+publish and an uncontended `Mutex<T>` `clone_from`, as the ratio of
# medians measured in the same run, reported as min – median – max over the runs.
#
#   benches/publish-runs.sh                  # 3 builds: codegen-units 16 (the default), 1, 4
#   CODEGEN_UNITS="16 1 4 8" benches/publish-runs.sh
#
# Each build has its own target directory (target/runs/cgu-N, so the first build of each
# takes a few minutes) and so its own code layout; each runs
#
#   taskset -c 0   cargo bench --bench publish -- uncontended
#   taskset -c 0,1 cargo bench --bench publish -- /contended/
#
# (the contended group pins its reader to the second core itself). Prints Markdown to paste
# into BENCHMARKS.md: the machine, the commands, the ratio table, and every run's medians.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
units=${CODEGEN_UNITS:-16 1 4}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

run=0
for cgu in $units; do
    run=$((run + 1))
    target=target/runs/cgu-$cgu
    echo "build $run: codegen-units $cgu ($target)" >&2
    CARGO_PROFILE_BENCH_CODEGEN_UNITS=$cgu CARGO_TARGET_DIR=$target \
        cargo bench --quiet --bench publish --no-run >&2
    rm -rf "$target/criterion/publish_"*
    echo "run $run: uncontended, then contended" >&2
    CARGO_PROFILE_BENCH_CODEGEN_UNITS=$cgu CARGO_TARGET_DIR=$target \
        taskset -c 0 cargo bench --quiet --bench publish -- uncontended >/dev/null 2>&1
    CARGO_PROFILE_BENCH_CODEGEN_UNITS=$cgu CARGO_TARGET_DIR=$target \
        taskset -c 0,1 cargo bench --quiet --bench publish -- /contended/ >/dev/null 2>&1
    mkdir -p "$out/$run"
    cp -r "$target/criterion/." "$out/$run/"
    echo "$cgu" >"$out/$run/codegen-units"
done

cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
family=$(awk -F': ' '/^cpu family/ { print $2; exit }' /proc/cpuinfo)
model=$(awk -F': ' '/^model\t/ { print $2; exit }' /proc/cpuinfo)
cores=$(nproc)
python3 - "$out" "$cpu" "$family" "$model" "$cores" "$(rustc --version)" "$units" <<'EOF'
import json, pathlib, statistics, sys, datetime

root, cpu, family, model, cores, rustc, units = sys.argv[1:]
runs = sorted((p for p in pathlib.Path(root).iterdir() if p.is_dir()), key=lambda p: int(p.name))

def medians(run):
    found = {}
    for bench in run.glob("**/new/benchmark.json"):
        meta = json.loads(bench.read_text())
        if not meta["group_id"].startswith("publish/"):
            continue
        est = json.loads((bench.parent / "estimates.json").read_text())["median"]["point_estimate"]
        found[(meta["group_id"], meta["function_id"])] = est
    return found

data = [medians(r) for r in runs]
groups = [f"publish/{size}/{mode}" for mode in ("uncontended", "contended") for size in ("16B", "256B", "4096B")]
QS, TB, MX = "queueserver put_update", "triple_buffer write+publish", "Mutex clone_from"

def spread(values, unit=""):
    if not values:
        return "n/a"
    lo, mid, hi = min(values), statistics.median(values), max(values)
    return f"{lo:.2f}{unit} – {mid:.2f}{unit} – {hi:.2f}{unit}"

def ns(values):
    if not values:
        return "n/a"
    lo, mid, hi = min(values), statistics.median(values), max(values)
    return f"{lo:.1f} – {mid:.1f} – {hi:.1f} ns"

print(f"Measured {datetime.date.today()} on {cpu} (family {family}, model {model}), {cores} CPUs, {rustc}.")
print(f"{len(runs)} builds and runs (codegen-units {', '.join(units.split())}), each: "
      "`taskset -c 0 cargo bench --bench publish -- uncontended` and "
      "`taskset -c 0,1 cargo bench --bench publish -- /contended/`; "
      "command: `benches/publish-runs.sh`.\n")
print("| snapshot | mode | `put_update` ÷ `triple_buffer` | `put_update` ÷ `Mutex` | `put_update` | `triple_buffer` | `Mutex` |")
print("|---|---|---:|---:|---:|---:|---:|")
for g in groups:
    _, size, mode = g.split("/")
    get = lambda name: [d[(g, name)] for d in data if (g, name) in d]
    ratio = lambda other: [d[(g, QS)] / d[(g, other)] for d in data if (g, QS) in d and (g, other) in d]
    print(f"| {size[:-1]} B | {mode} | {spread(ratio(TB), '×')} | {spread(ratio(MX), '×')} "
          f"| {ns(get(QS))} | {ns(get(TB))} | {ns(get(MX))} |")
print("\nRatios and times as min – median – max over the runs; each ratio divides two medians "
      "measured in the same run.\n")
print("Every run's medians (ns):\n")
names = sorted({n for d in data for (_, n) in d}, key=lambda n: (n != QS, n != TB, n != MX, n))
print("| run | codegen-units | snapshot | mode | " + " | ".join(names) + " |")
print("|---|---:|---|---|" + "---:|" * len(names))
for i, (run, d) in enumerate(zip(runs, data), 1):
    cgu = (run / "codegen-units").read_text().strip()
    for g in groups:
        _, size, mode = g.split("/")
        cells = [f"{d[(g, n)]:.1f}" if (g, n) in d else "" for n in names]
        print(f"| {i} | {cgu} | {size[:-1]} B | {mode} | " + " | ".join(cells) + " |")
EOF
