#!/usr/bin/env bash
# Runs the link firmware (src/bin/link.rs) under QEMU on the emulated Cortex-M4F
# (mps2-an386), its UART0 on a TCP socket on 127.0.0.1:PORT (default 4444), until Ctrl-C.
# The host side attaches there: `qs device tcp:127.0.0.1:PORT --prefix lab/mcu`.
#
# Usage: ./run-link.sh [PORT]
# Needs qemu-system-arm (Debian: qemu-system-arm) and the thumbv7em-none-eabihf target
# (`rustup target add thumbv7em-none-eabihf`); says so if either is missing.
set -euo pipefail
cd "$(dirname "$0")"
port=${1:-4444}
if ! command -v qemu-system-arm >/dev/null; then
    echo "run-link.sh: qemu-system-arm is missing; on Debian or Ubuntu: sudo apt-get install qemu-system-arm" >&2
    exit 1
fi
if ! rustup target list --installed 2>/dev/null | grep -qx thumbv7em-none-eabihf; then
    echo "run-link.sh: adding the Rust target thumbv7em-none-eabihf (about 30 MB, once)" >&2
    rustup target add thumbv7em-none-eabihf
fi
cargo build --release --bin link
echo "run-link.sh: the firmware runs; its UART0 is tcp:127.0.0.1:$port (Ctrl-C stops QEMU)" >&2
# -icount shift=0 keeps the firmware's instruction counts exact; without sleep=off its
# clock follows real time while it idles. nodelay=on: no Nagle delay on the UART's bytes.
exec qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -display none -monitor none \
    -semihosting-config enable=on,target=native -icount shift=0 \
    -chardev "socket,id=link,host=127.0.0.1,port=$port,server=on,wait=off,nodelay=on" \
    -serial chardev:link -kernel target/thumbv7em-none-eabihf/release/link
