#!/usr/bin/env bash
# Builds every test guest and writes OUTDIR/<guest>.bin, a raw arm64 Image per guest.
#
#   tests/guests/build.sh OUTDIR          (the top-level Makefile uses build/guests)
#
# The ELF files stay in the guests' target directory
# (<target>/aarch64-unknown-none/release/<guest>); the .bin files are what a loader
# (the hypervisor's boot bundle, QEMU -kernel, U-Boot booti) takes.
# Honours CARGO_TARGET_DIR like cargo does.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
out=$(cd "$1" && pwd)

cd "$here"
cargo build --release

# Every workspace member with a src/main.rs is a guest; its package name is its
# directory name.
guests=()
for main in "$here"/*/src/main.rs; do
  dir=${main%/src/main.rs}
  guests+=("${dir##*/}")
done

target_dir=$(cargo metadata --no-deps --format-version 1 |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
host=$(rustc -vV | sed -n 's/^host: //p')
objcopy="$(rustc --print sysroot)/lib/rustlib/$host/bin/llvm-objcopy"
if [ ! -x "$objcopy" ]; then
  echo "error: $objcopy not found: run 'rustup component add llvm-tools'" >&2
  exit 1
fi

for guest in "${guests[@]}"; do
  elf="$target_dir/aarch64-unknown-none/release/$guest"
  "$objcopy" -O binary "$elf" "$out/$guest.bin"
  echo "guest: $out/$guest.bin"
done
