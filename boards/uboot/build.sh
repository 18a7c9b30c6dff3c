#!/usr/bin/env bash
# Makes what U-Boot needs to boot a Ferrovisor system from a disk or SD card: the boot
# script (`fvconfig uboot`) and a disk image with one FAT partition holding the
# script, the hypervisor Image, the system's boot bundle and whatever else the board
# boots from that partition (mkdisk.sh). `make uboot-image BOARD=... CONFIG=...` runs
# it with the board's settings from boards/<board>/board.mk.
#
#   build.sh CONFIG [BUILD [OUT]]
#
# Reads BUILD/ferrovisor.bin and BUILD/<config stem>.cpio (made by `make hypervisor
# bundle CONFIG=...`; BUILD defaults to build). Writes OUT/boot.scr and
# OUT/<config stem>.img (OUT defaults to BUILD/uboot). FVCONFIG names the fvconfig
# binary (default: $CARGO_TARGET_DIR or target, then /release/fvconfig).
#
# Board settings (environment; all optional, the defaults are QEMU virt's):
#   UBOOT_DEVICE="mmc 0:1"  where the script loads the files from (default: where
#                           U-Boot's distro boot found the script)
#   FVCONFIG_HOST="..."     what the config is checked against (fvconfig's HOST
#                           options: --dtb FILE, --cpus N, --ram SIZE)
#   UBOOT_FILES="F ..."     more files for the partition (the board's firmware, U-Boot)
#   PART_START, RAW         passed to mkdisk.sh (a boot loader on the raw card)
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

args=(uboot "$config" -L "$build" --bundle "$name.cpio" -o "$out/boot.scr")
[ -z "${UBOOT_DEVICE:-}" ] || args+=(--device "$UBOOT_DEVICE")
# shellcheck disable=SC2206 # options, split on purpose
args+=(${FVCONFIG_HOST:-})
extra=()
for f in ${UBOOT_FILES:-}; do
  [ -f "$f" ] || { echo "error: missing $f (UBOOT_FILES)" >&2; exit 1; }
  extra+=("$f")
done

mkdir -p "$out"
"$fvconfig" "${args[@]}"
bash "$here/mkdisk.sh" "$out/$name.img" "$build/ferrovisor.bin" "$build/$name.cpio" "$out/boot.scr" "${extra[@]}"
if [ -z "${UBOOT_DEVICE:-}" ]; then
  echo "boot it: qemu-system-aarch64 -M virt,virtualization=on,secure=off,gic-version=3 -cpu max -smp 4 -m 1G -nographic \\"
  echo "  -bios /usr/lib/u-boot/qemu_arm64/u-boot.bin -drive if=none,file=$out/$name.img,format=raw,id=d0 -device virtio-blk-device,drive=d0"
else
  echo "write it to the board's SD card: dd if=$out/$name.img of=/dev/sdX bs=4M conv=fsync"
fi
