#!/usr/bin/env python3
"""Prints the latest `cargo bench` results as Markdown tables for BENCHMARKS.md.

Usage: python3 benches/report.py [target/criterion]

One table per benchmark group: the median time of each contender with its 95 %
confidence interval, and its ratio to the crate's own row (`queueserver ...`), so that
every ratio compares figures measured in the same run. Groups that only measure the crate
(consolidation, fan-out) show throughput instead.
"""

import json
import pathlib
import sys


def fmt_ns(ns):
    if ns >= 1e6:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1e3:
        return f"{ns / 1e3:.2f} µs"
    return f"{ns:.1f} ns"


def load(root):
    groups = {}
    for bench in sorted(root.glob("**/new/benchmark.json")):
        meta = json.loads(bench.read_text())
        est = json.loads((bench.parent / "estimates.json").read_text())["median"]
        row = {
            "name": meta["function_id"] + (f" {meta['value_str']}" if meta["value_str"] else ""),
            "median": est["point_estimate"],
            "low": est["confidence_interval"]["lower_bound"],
            "high": est["confidence_interval"]["upper_bound"],
            "elements": (meta.get("throughput") or {}).get("Elements"),
        }
        groups.setdefault(meta["group_id"], []).append(row)
    return groups


def group_key(name):
    # publish/16B/... before publish/256B/... before publish/4096B/...
    parts = name.split("/")
    return [int(p[:-1]) if p[:-1].isdigit() and p.endswith("B") else p for p in parts]


def main():
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
    groups = load(root)
    if not groups:
        sys.exit(f"no criterion results under {root}: run `cargo bench` first")
    for name in sorted(groups, key=group_key):
        rows = sorted(groups[name], key=lambda r: ("queueserver" not in r["name"], r["median"]))
        ours = [r for r in rows if "queueserver" in r["name"]]
        compare = len(ours) == 1 and len(rows) > 1
        print(f"\n#### {name}\n")
        if compare:
            print("| contender | median | 95 % CI | ratio to queueserver |")
            print("|---|---:|---:|---:|")
        else:
            print("| benchmark | median | 95 % CI | throughput |")
            print("|---|---:|---:|---:|")
        for r in rows:
            ci = f"{fmt_ns(r['low'])} – {fmt_ns(r['high'])}"
            if compare:
                last = f"{r['median'] / ours[0]['median']:.2f}×"
            elif r["elements"]:
                last = f"{r['elements'] / r['median'] * 1e3:.1f} M/s"
            else:
                last = ""
            print(f"| {r['name']} | {fmt_ns(r['median'])} | {ci} | {last} |")


if __name__ == "__main__":
    main()
