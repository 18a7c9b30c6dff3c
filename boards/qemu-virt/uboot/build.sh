#!/usr/bin/env bash
# Makes what U-Boot needs to boot a Ferrovisor system from a disk: the boot script
# (`fvconfig uboot`) and a disk image with one FAT partition holding the script, the
# hypervisor Image and the system's boot bundle (mkdisk.sh).
#
#   build.sh CONFIG [BUILD [OUT]]
#
# Reads BUILD/ferrovisor.bin and BUILD/<config stem>.cpio (made by `make hypervisor
# bundle CONFIG=...`; BUILD defaults to build). Writes OUT/boot.scr and
# OUT/<config stem>.img (OUT defaults to BUILD/uboot). FVCONFIG names the fvconfig
# binary (default: $CARGO_TARGET_DIR or target, then /release/fvconfig).
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 3 ]; then
  echo "usage: $0 CONFIG [BUILD [OUT]]" >&2
  exit 2
fi
config=$1
build=${2:-build}
out=${3:-$build/uboot}
here=$(cd "$(dirname "$0")" && pwd)
fvconfig=${FVCONFIG:-${CARGO_TARGET_DIR:-target}/release/fvconfig}
name=$(basename "$config" .toml)

for f in "$build/ferrovisor.bin" "$build/$name.cpio"; do
  [ -f "$f" ] || { echo "error: missing $f: run \`make hypervisor bundle CONFIG=$config\` first" >&2; exit 1; }
done
[ -x "$fvconfig" ] || { echo "error: no fvconfig at $fvconfig: run \`make fvconfig\` (or set FVCONFIG)" >&2; exit 1; }

mkdir -p "$out"
"$fvconfig" uboot "$config" -L "$build" --bundle "$name.cpio" -o "$out/boot.scr"
bash "$here/mkdisk.sh" "$out/$name.img" "$build/ferrovisor.bin" "$build/$name.cpio" "$out/boot.scr"
echo "boot it: qemu-system-aarch64 -M virt,virtualization=on,secure=off,gic-version=3 -cpu max -smp 4 -m 1G -nographic \\"
echo "  -bios /usr/lib/u-boot/qemu_arm64/u-boot.bin -drive if=none,file=$out/$name.img,format=raw,id=d0 -device virtio-blk-device,drive=d0"
