#!/usr/bin/env bash
# Gathers what a Raspberry Pi 4's boot partition holds besides Ferrovisor's files:
#
#   prepare.sh OUTDIR FIRMWARE_DIR
#
# - start4.elf, fixup4.dat, bcm2711-rpi-4-b.dtb: the Raspberry Pi firmware (its boot/
#   directory), from FIRMWARE_DIR. The GPU runs it first; it loads the device tree,
#   fills in /memory, and loads config.txt's armstub and kernel.
# - bl31.bin: TF-A for the Pi 4 (Debian's arm-trusted-firmware, rpi4), the armstub.
#   It gives PSCI over SMC (CPU_ON for the other cores, SYSTEM_OFF) and adds /psci to
#   the device tree it passes on; it enters the kernel (U-Boot) at EL2.
# - u-boot.bin: Debian's U-Boot for 64-bit Raspberry Pis (u-boot-rpi, rpi_arm64). Its
#   distro boot finds boot.scr on this partition.
# - config.txt: written here.
#
# Debian's packages are fetched with apt-get download (arm64 architecture enabled,
# as tests/linux/fetch.sh does) and kept in OUTDIR/debs.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 OUTDIR FIRMWARE_DIR" >&2
  exit 2
fi
out=$1
fw=$2
die() { echo "raspi4b: error: $*" >&2; exit 1; }

[ -n "$fw" ] || die "RPI_FIRMWARE is not set: make uboot-image BOARD=raspi4b RPI_FIRMWARE=DIR, where DIR holds start4.elf, fixup4.dat and bcm2711-rpi-4-b.dtb (the boot/ directory of the Raspberry Pi firmware)"
mkdir -p "$out/debs"
for f in start4.elf fixup4.dat bcm2711-rpi-4-b.dtb; do
  [ -f "$fw/$f" ] || die "$fw/$f: no such file (RPI_FIRMWARE must hold the Raspberry Pi firmware's boot/ files)"
  cp "$fw/$f" "$out/$f"
done

# fetch PACKAGE PATH: PATH (inside the package) copied to OUTDIR.
fetch() {
  local deb
  deb=$(ls "$out"/debs/"$1"_*_arm64.deb 2>/dev/null | head -1 || true)
  if [ -z "$deb" ]; then
    (cd "$out/debs" && apt-get download -q -o APT::Sandbox::User=root "$1:arm64") ||
      die "apt-get download $1:arm64 failed (Debian's arm64 packages: dpkg --add-architecture arm64; apt-get update)"
    deb=$(ls "$out"/debs/"$1"_*_arm64.deb | head -1)
  fi
  dpkg-deb --fsys-tarfile "$deb" | tar -x -O "./$2" >"$out/$(basename "$2")" ||
    die "$deb has no $2"
}
fetch u-boot-rpi usr/lib/u-boot/rpi_arm64/u-boot.bin
fetch arm-trusted-firmware usr/lib/arm-trusted-firmware/rpi4/bl31.bin

cat >"$out/config.txt" <<'TXT'
# Raspberry Pi 4 boot configuration for Ferrovisor (written by
# boards/raspi4b/uboot/prepare.sh).
[pi4]
# 64-bit, the GIC-400 on (the hypervisor drives the interrupt controller).
arm_64bit=1
enable_gic=1
# TF-A as the armstub: PSCI for the other cores, entry to U-Boot at EL2.
armstub=bl31.bin
# U-Boot as the "kernel"; its boot.scr starts Ferrovisor.
kernel=u-boot.bin
# The mini UART on GPIO 14/15 at 115200 baud, its clock fixed (the console:
# stdout-path serial1).
enable_uart=1
TXT
echo "raspi4b: boot files in $out: $(cd "$out" && ls -p | grep -v / | tr '\n' ' ')"
