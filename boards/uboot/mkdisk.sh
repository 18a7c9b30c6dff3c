#!/usr/bin/env bash
# Builds a disk image U-Boot boots Ferrovisor from: an MBR partition table with one
# bootable FAT partition (starting at 1 MiB) holding the given files in its root
# directory. No root needed: the file system is written with mtools (Debian package
# `mtools`) straight into the image file, and the MBR with printf. Write it to an SD
# card with `dd if=DISK.img of=/dev/sdX bs=4M conv=fsync`.
#
#   mkdisk.sh DISK.img FILE...
#   e.g. mkdisk.sh build/uboot/demo.img build/ferrovisor.bin build/demo.cpio build/uboot/boot.scr
#
# Environment, for boards whose boot ROM reads the boot loader from the raw card:
#   PART_START=SECTORS   where the partition starts, in 512-byte sectors (default
#                        2048 = 1 MiB)
#   RAW="FILE@OFFSET ..." files written at byte offsets before the partition (an
#                        i.MX 8M's flash.bin at 32 KiB)
#
# U-Boot's distro boot scans partition 1 of each disk for /boot.scr (and
# /boot/boot.scr) and runs it; `load virtio 0:1 ...` reads the files from it.
set -euo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 DISK.img FILE..." >&2
  exit 2
fi
disk=$1
shift
for tool in mformat mcopy; do
  command -v "$tool" >/dev/null 2>&1 || {
    echo "error: $tool not found: install the Debian package mtools (make setup does)" >&2
    exit 1
  }
done

# The partition: the files plus a quarter and 4 MiB for the FAT and directories,
# at least 16 MiB, in whole MiB. It starts at sector 2048 (1 MiB), the usual
# alignment of partitioning tools.
sector=512
start=${PART_START:-2048}
case "$start" in '' | *[!0-9]*) echo "error: PART_START=$start is not a number of sectors" >&2; exit 2 ;; esac
bytes=0
for f in "$@"; do
  [ -f "$f" ] || { echo "error: $f: no such file" >&2; exit 1; }
  bytes=$((bytes + $(stat -c %s "$f")))
done
mib=$(( (bytes + bytes / 4 + (4 << 20) + (1 << 20) - 1) >> 20 ))
[ "$mib" -ge 16 ] || mib=16
sectors=$(( mib << 11 ))

rm -f "$disk"
truncate -s $(( (start + sectors) * sector )) "$disk"

# Raw blobs before the partition (they must end before it, and after the MBR).
for item in ${RAW:-}; do
  file=${item%@*}
  offset=${item##*@}
  [ -f "$file" ] || { echo "error: $file: no such file (RAW)" >&2; exit 1; }
  case "$offset" in '' | *[!0-9]*) echo "error: RAW $item: the offset must be a number of bytes" >&2; exit 2 ;; esac
  end=$(( offset + $(stat -c %s "$file") ))
  if [ "$offset" -lt 512 ] || [ "$end" -gt $(( start * sector )) ]; then
    echo "error: RAW $item: bytes $offset..$end do not fit between the MBR and the partition at $(( start * sector )) (raise PART_START)" >&2
    exit 1
  fi
  dd if="$file" of="$disk" bs=64K seek="$offset" oflag=seek_bytes conv=notrunc status=none
done

# FAT: mformat picks FAT12/16/32 by size; -H records the partition's first
# sector (the BPB's hidden sectors), as a partitioning tool would.
# A fixed serial number (-N) so that the same files make the same image.
mformat -i "$disk@@$((start * sector))" -T "$sectors" -h 64 -s 32 -H "$start" \
  -N 46564256 -v FERROVISOR ::
mcopy -i "$disk@@$((start * sector))" "$@" ::/

# The MBR partition entry (at byte 446): bootable (0x80), CHS fields
# unused (0xfe 0xff 0xff = "use LBA"), the FAT type U-Boot and Linux expect,
# first sector and sector count as 32-bit little-endian.
le32() {
  printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24 & 255))
}
# The file system type string of the boot sector: at 0x36 for FAT12/16, 0x52 for FAT32.
fs=$(dd if="$disk" bs=1 skip=$((start * sector + 0x36)) count=5 status=none | tr -d '\0')
fs32=$(dd if="$disk" bs=1 skip=$((start * sector + 0x52)) count=5 status=none | tr -d '\0')
case "$fs32:$fs" in
  FAT32:*) kind=FAT32 type='\x0c' ;;   # FAT32 with LBA
  *:FAT16) kind=FAT16 type='\x0e' ;;   # FAT16 with LBA
  *) kind=FAT12 type='\x01' ;;

esac
entry="\\x80\\xfe\\xff\\xff${type}\\xfe\\xff\\xff$(le32 $start)$(le32 $sectors)"
# shellcheck disable=SC2059 # the format string is the data
printf "$entry" | dd of="$disk" bs=1 seek=446 conv=notrunc status=none
printf '\x55\xaa' | dd of="$disk" bs=1 seek=510 conv=notrunc status=none
names=$(for f in "$@"; do basename "$f"; done | tr '\n' ' ')
echo "$disk: $(( (start + sectors) >> 11 )) MiB, partition 1 ($kind): ${names% }"
