#!/usr/bin/env bash
# Runs QEMU halted at its first instruction with its gdbstub, and gdb-multiarch
# attached with the hypervisor's symbols (`make gdb`, README "Debugging").
#
#   tests/gdb.sh ELF BASE PORT CONSOLE_LOG [GDB ARGUMENTS...] -- QEMU COMMAND...
#
# The image is linked at 0 and relocates itself to wherever it is loaded: BASE is
# that address (QEMU virt's -kernel puts it at DRAM base + 2 MiB, 0x40200000), and
# the symbols are loaded with that offset.
#
# The guests' and the hypervisor's console goes to CONSOLE_LOG (`tail -f` it in
# another terminal), so it does not mix with gdb's prompt. QEMU stops when gdb
# exits. gdb runs through the toolchain's rust-gdb, which loads Rust's pretty
# printers (Vec, String, Option, ...).
set -euo pipefail

if [ $# -lt 6 ]; then
  echo "usage: $0 ELF BASE PORT CONSOLE_LOG [GDB ARGS...] -- QEMU COMMAND..." >&2
  exit 2
fi
elf=$1 base=$2 port=$3 console=$4
shift 4
gdb_args=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do
  gdb_args+=("$1")
  shift
done
[ "${1:-}" = "--" ] || { echo "$0: no -- before the QEMU command" >&2; exit 2; }
shift

: > "$console"
# Its own session, so a Ctrl-C meant for gdb (interrupting the target) does
# not reach QEMU.
setsid "$@" -serial "file:$console" -monitor none -S -gdb "tcp:localhost:$port" \
  </dev/null >"$console.qemu" 2>&1 &
qemu=$!
trap 'kill "$qemu" 2>/dev/null || true' EXIT

echo "QEMU (pid $qemu) waits halted with its gdbstub on localhost:$port; console: $console"
sysroot=$(rustc --print sysroot)
# gdb retries the connection while QEMU starts (tcp auto-retry, the default).
RUST_GDB=gdb-multiarch "$sysroot/bin/rust-gdb" -q \
  -ex "symbol-file -o $base $elf" \
  -ex "target remote localhost:$port" \
  "${gdb_args[@]}" || status=$?
# QEMU's own complaints (a port already in use, say) would otherwise go unseen.
if [ -s "$console.qemu" ]; then cat "$console.qemu" >&2; fi
exit "${status:-0}"
