#!/usr/bin/env python3
"""Picks a small corpus that covers what a larger one covers in the crate's own code.

libFuzzer's merge keeps every input that reaches a new edge anywhere, the JSON and
postcard parsers and std included, which for `parse` means hundreds of inputs. This keeps
only what covers the code under test: the code regions of `src/` and `fuzz/src/`, per
monomorphised function, measured with the coverage build of `cargo fuzz coverage`.
A greedy set cover over those regions, smallest inputs first on ties; the committed
seeds (`seed-*`, `regression-*`) are always kept.

    cargo +nightly fuzz coverage TARGET POOL_DIR     # builds the coverage binary
    python3 minimise.py TARGET POOL_DIR OUT_DIR
"""

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
ROOTS = (str(FUZZ.parent / "src") + "/", str(FUZZ / "src") + "/")
KEEP = ("seed-", "regression-")


@functools.cache
def host_triple():
    version = subprocess.check_output(["rustc", "+nightly", "-vV"], text=True)
    return next(line.split()[1] for line in version.splitlines() if line.startswith("host:"))


@functools.cache
def llvm_bin(tool):
    """A tool of the nightly toolchain's `llvm-tools` component."""
    sysroot = subprocess.check_output(["rustc", "+nightly", "--print", "sysroot"], text=True)
    return str(Path(sysroot.strip()) / "lib" / "rustlib" / host_triple() / "bin" / tool)


def regions(binary, path, scratch):
    """The set of (function, region) of the code under test that `path` executes."""
    raw, data = scratch / "one.profraw", scratch / "one.profdata"
    subprocess.run(
        [binary, str(path)],
        env={**os.environ, "LLVM_PROFILE_FILE": str(raw)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )
    subprocess.run(
        [llvm_bin("llvm-profdata"), "merge", "-sparse", str(raw), "-o", str(data)],
        check=True,
    )
    exported = subprocess.check_output(
        [llvm_bin("llvm-cov"), "export", binary, f"-instr-profile={data}",
         "-format=text", "-skip-expansions"],
    )
    covered = set()
    for function in json.loads(exported)["data"][0]["functions"]:
        if not function["filenames"][0].startswith(ROOTS):
            continue
        for index, region in enumerate(function["regions"]):
            if region[4] > 0:
                covered.add((function["name"], index))
    return covered


def main():
    target, pool, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    binary = str(
        FUZZ / "target" / host_triple() / "coverage" / host_triple() / "release" / target
    )
    inputs = sorted(
        (p for p in pool.iterdir() if p.is_file()), key=lambda p: (p.stat().st_size, p.name)
    )
    with tempfile.TemporaryDirectory() as scratch:
        covers = {p: regions(binary, p, Path(scratch)) for p in inputs}
    chosen = [p for p in inputs if p.name.startswith(KEEP)]
    done = set().union(*(covers[p] for p in chosen)) if chosen else set()
    everything = set().union(*covers.values())
    while done != everything:
        best = max(inputs, key=lambda p: (len(covers[p] - done), -p.stat().st_size))
        chosen.append(best)
        done |= covers[best]
    out.mkdir(parents=True, exist_ok=True)
    for p in chosen:
        shutil.copy(p, out / p.name)
    print(f"{target}: {len(chosen)} of {len(inputs)} inputs cover all "
          f"{len(everything)} regions of the code under test")


if __name__ == "__main__":
    main()
