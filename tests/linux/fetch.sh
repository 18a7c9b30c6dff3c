#!/usr/bin/env bash
# Fetches Debian's arm64 Linux kernel and builds a busybox initramfs for the
# Linux guest. Nothing it downloads or builds is committed.
#
#   bash tests/linux/fetch.sh OUTDIR [SUITE] (the top-level Makefile: build/linux,
#                                            and build/linux-6.12 with
#                                            SUITE = bookworm-backports)
#
# SUITE picks the kernel from that Debian suite (apt's `linux-image-arm64/SUITE`,
# e.g. bookworm-backports for Linux 6.12) instead of apt's candidate; busybox is
# always the candidate.
#
# Produces
#   OUTDIR/Image              the raw arm64 kernel Image (arm64 boot header)
#   OUTDIR/initramfs.cpio.gz  newc cpio, gzip: busybox-static + tests/linux/init
#   OUTDIR/dtbs/BOARD.dtb     the kernel package's device trees of the boards under
#                             boards/ (raspi4b, zcu102, imx8mp-evk): QEMU's models
#                             of them need one (-dtb), and host tests parse them
#   OUTDIR/packages.txt       the Debian packages and versions used
#   OUTDIR/debs/              the downloaded .deb files (kept to skip re-downloads)
#   OUTDIR/scratch/           unpacked packages and the initramfs tree
#
# Idempotent: a step is skipped when its output exists and is newer than its
# inputs (this script, tests/linux/init, the .deb); when all outputs are, apt is
# not asked at all (remove OUTDIR to pick up a newer Debian kernel). Needs a
# Debian host (the kernel and busybox are Debian's, fetched through apt):
# with root it enables the arm64 architecture for apt when needed, without root
# it prints the commands to run first. Downloads go through apt only.
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 2 ]; then
  echo "usage: $0 OUTDIR [SUITE]" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
self="$here/fetch.sh"
init_src="$here/init"
suite=${2:-}
kernel_spec="linux-image-arm64:arm64${suite:+/$suite}"
mkdir -p "$1"
out=$(cd "$1" && pwd)
scratch="$out/scratch"
debs="$out/debs"

log() { echo "linux: $*"; }
die() {
  echo "linux: error: $*" >&2
  exit 1
}

# fresh OUTPUT INPUT...: OUTPUT exists and is newer than this script and every
# INPUT.
fresh() {
  local f=$1 dep
  shift
  [ -s "$f" ] || return 1
  for dep in "$self" "$@"; do
    [ "$f" -nt "$dep" ] || return 1
  done
}

# The boards' device trees: boards/<name> = the kernel package's file (Linux
# arch/arm64/boot/dts/...). They are GPL-2.0 (Broadcom), GPL-2.0+ (Xilinx) and
# GPL-2.0+ OR MIT (NXP) in the kernel tree: fetched here like the kernel rather
# than copied into this repository.
board_dtbs=(
  raspi4b=broadcom/bcm2711-rpi-4-b.dtb
  zcu102=xilinx/zynqmp-zcu102-rev1.0.dtb
  imx8mp-evk=freescale/imx8mp-evk.dtb
)
dtbs_fresh() {
  local b
  for b in "${board_dtbs[@]}"; do
    fresh "$out/dtbs/${b%%=*}.dtb" "$@" || return 1
  done
}

if fresh "$out/Image" && fresh "$out/initramfs.cpio.gz" "$init_src" && fresh "$out/packages.txt" && dtbs_fresh; then
  log "up to date: $out/Image, $out/initramfs.cpio.gz ($(tr '\n' ' ' <"$out/packages.txt"))"
  exit 0
fi

# ---- apt with the arm64 architecture -----------------------------------------

for tool in apt-get apt-cache dpkg dpkg-deb cpio gzip; do
  command -v "$tool" >/dev/null 2>&1 ||
    die "'$tool' not found: this script needs a Debian host with apt and cpio (Debian's arm64 kernel and busybox-static are fetched with apt-get download)"
done

sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo "

# What apt would install of the two packages asked for (their candidate
# versions, one apt-cache call: each one costs seconds when apt keeps no cache).
apt_info=""
query() {
  apt_info=$(apt-cache show --no-all-versions "$kernel_spec" busybox-static:arm64 2>/dev/null || true)
}
# field PACKAGE FIELD: that field of PACKAGE's record in $apt_info.
field() {
  echo "$apt_info" | awk -v pkg="$1" -v want="$2:" '
    /^Package: / { cur = $2 }
    cur == pkg && $1 == want { sub(/^[^:]*: */, ""); print; exit }'
}

arch_added=0
dpkg --print-foreign-architectures | grep -qx arm64 || [ "$(dpkg --print-architecture)" = arm64 ] || arch_added=1
[ $arch_added = 1 ] || query
if [ $arch_added = 1 ] || [ -z "$(field linux-image-arm64 Version)" ]; then
  if [ -n "$sudo" ]; then
    echo "linux: apt does not know Debian's arm64 packages yet. As root, run:" >&2
    [ $arch_added = 1 ] && echo "  ${sudo}dpkg --add-architecture arm64" >&2
    echo "  ${sudo}apt-get update" >&2
    echo "then again: bash $self $*" >&2
    exit 1
  fi
  if [ $arch_added = 1 ]; then
    log "dpkg --add-architecture arm64"
    dpkg --add-architecture arm64
  fi
  log "apt-get update"
  apt-get update -qq
  query
  [ -n "$(field linux-image-arm64 Version)" ] ||
    die "apt has no $kernel_spec after 'apt-get update': are Debian's sources (deb.debian.org${suite:+, suite $suite}) configured? 'apt-cache policy linux-image-arm64:arm64' shows what apt sees"
fi

# ---- download ------------------------------------------------------------------

# The concrete kernel package is the metapackage's dependency, with the exact
# version it pins: linux-image-arm64 6.1.192-2 depends on
# "linux-image-6.1.0-56-arm64 (= 6.1.192-2)".
meta_version=$(field linux-image-arm64 Version)
kernel_dep=$(field linux-image-arm64 Depends | tr ',' '\n' | grep -E '^ *linux-image-[0-9]' | head -1)
kernel_pkg=$(echo "$kernel_dep" | sed -n 's/^ *\(linux-image-[^ :]*\).*/\1/p')
kernel_version=$(echo "$kernel_dep" | sed -n 's/.*(= *\([^)]*\)).*/\1/p')
[ -n "$kernel_pkg" ] || die "cannot find the kernel package linux-image-arm64 ($meta_version) depends on"
if [ -z "$kernel_version" ]; then
  kernel_version=$(apt-cache policy "$kernel_pkg:arm64" | sed -n 's/^ *Candidate: *//p' | grep -v '^(none)$' || true)
  [ -n "$kernel_version" ] || die "apt has no candidate for $kernel_pkg:arm64"
fi
busybox_version=$(field busybox-static Version)
[ -n "$busybox_version" ] || die "apt has no candidate for busybox-static:arm64"

# apt-get download's file name: epochs are written as %3a.
deb_name() { echo "${1}_$(echo "$2" | sed 's/:/%3a/')_arm64.deb"; }
kernel_deb="$debs/$(deb_name "$kernel_pkg" "$kernel_version")"
busybox_deb="$debs/$(deb_name busybox-static "$busybox_version")"

# download SPEC FILE: apt-get download SPEC into $debs unless FILE is there.
download() {
  if [ -s "$2" ]; then
    log "have $(basename "$2")"
    return
  fi
  log "apt-get download $1"
  local opts=()
  # As root, apt drops to the _apt user, which cannot write here: it would
  # then download unsandboxed and warn. Skip the sandbox and the warning.
  [ -n "$sudo" ] || opts=(-o APT::Sandbox::User=root)
  (cd "$debs" && apt-get download -q "${opts[@]}" "$1")
  [ -s "$2" ] || die "apt-get download $1 did not produce $2"
}
mkdir -p "$debs"
download "$kernel_pkg:arm64=$kernel_version" "$kernel_deb"
download "busybox-static:arm64=$busybox_version" "$busybox_deb"

# ---- the kernel Image ------------------------------------------------------------

if fresh "$out/Image" "$kernel_deb"; then
  log "have $out/Image"
else
  rm -rf "$scratch/kernel"
  mkdir -p "$scratch/kernel"
  # Only /boot is needed; the modules (~350 MB unpacked) are not.
  dpkg-deb --fsys-tarfile "$kernel_deb" | tar -x -C "$scratch/kernel" --wildcards './boot/vmlinuz-*'
  vmlinuz=$(ls "$scratch"/kernel/boot/vmlinuz-* | head -1)
  # Debian's vmlinuz is gzip'd on some releases and a raw Image (a signed
  # PE/COFF EFI application) on others: gunzip when it is gzip.
  magic=$(od -An -tx1 -N2 "$vmlinuz" | tr -d ' \n')
  if [ "$magic" = 1f8b ]; then
    log "gunzip $(basename "$vmlinuz") -> Image"
    gzip -dc "$vmlinuz" >"$out/Image.tmp"
  else
    log "$(basename "$vmlinuz") is not gzip'd: copying it as the Image"
    cp "$vmlinuz" "$out/Image.tmp"
  fi
  # Linux Documentation/arch/arm64/booting.rst: the 64-byte Image header has
  # the magic "ARM\x64" (0x644d5241 little-endian) at offset 0x38.
  image_magic=$(od -An -tx1 -j 56 -N4 "$out/Image.tmp" | tr -d ' \n')
  if [ "$image_magic" != 41524d64 ]; then
    rm -f "$out/Image.tmp"
    die "$vmlinuz does not hold an arm64 Image: magic at 0x38 is '$image_magic', want 41524d64 (\"ARM\\x64\")"
  fi
  mv "$out/Image.tmp" "$out/Image"
  log "built $out/Image ($(stat -c %s "$out/Image") bytes)"
fi

# ---- the boards' device trees -------------------------------------------------------

if dtbs_fresh "$kernel_deb"; then
  log "have $out/dtbs"
else
  rm -rf "$scratch/dtbs"
  mkdir -p "$scratch/dtbs" "$out/dtbs"
  patterns=()
  for b in "${board_dtbs[@]}"; do patterns+=("./usr/lib/linux-image-*/${b#*=}"); done
  dpkg-deb --fsys-tarfile "$kernel_deb" | tar -x -C "$scratch/dtbs" --wildcards "${patterns[@]}"
  for b in "${board_dtbs[@]}"; do
    f=$(ls "$scratch"/dtbs/usr/lib/linux-image-*/"${b#*=}" 2>/dev/null | head -1)
    [ -n "$f" ] || die "$kernel_deb has no ${b#*=}"
    # A flattened device tree starts with the magic 0xd00dfeed.
    [ "$(od -An -tx1 -N4 "$f" | tr -d ' \n')" = d00dfeed ] || die "$f is not a device tree blob"
    cp "$f" "$out/dtbs/${b%%=*}.dtb"
  done
  log "extracted $out/dtbs: $(cd "$out/dtbs" && ls | tr '\n' ' ')"
fi

# ---- the initramfs ---------------------------------------------------------------

if fresh "$out/initramfs.cpio.gz" "$init_src" "$busybox_deb"; then
  log "have $out/initramfs.cpio.gz"
else
  rm -rf "$scratch/busybox" "$scratch/initramfs"
  mkdir -p "$scratch/busybox"
  dpkg-deb -x "$busybox_deb" "$scratch/busybox"
  bb="$scratch/busybox/bin/busybox"
  [ -f "$bb" ] || die "$busybox_deb has no bin/busybox"
  # ELF header: class 64-bit (byte 4 = 2), e_machine EM_AARCH64 (0xb7 at 18).
  [ "$(od -An -tx1 -N5 "$bb" | tr -d ' \n')" = 7f454c4602 ] &&
    [ "$(od -An -tx1 -j 18 -N2 "$bb" | tr -d ' \n')" = b700 ] ||
    die "$bb is not a 64-bit arm64 ELF file"

  root="$scratch/initramfs"
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,root,etc}
  install -m 0755 "$bb" "$root/bin/busybox"
  # The rest of the applets are linked by /init at boot (busybox --install -s):
  # listing them here would mean running an arm64 binary on the build host.
  ln -s busybox "$root/bin/sh"
  install -m 0755 "$init_src" "$root/init"
  chmod 1777 "$root/tmp"
  # Fixed timestamps and sorted names: the same inputs give the same archive.
  find "$root" -exec touch -h -d @0 {} +
  # --reproducible (GNU cpio >= 2.13): no host inode/device numbers.
  repro=()
  cpio --help 2>/dev/null | grep -q -- --reproducible && repro=(--reproducible)
  (cd "$root" && find . -mindepth 1 -print0 | LC_ALL=C sort -z |
    cpio --null -o -H newc -R 0:0 "${repro[@]}" --quiet) | gzip -9n >"$out/initramfs.cpio.gz.tmp"
  mv "$out/initramfs.cpio.gz.tmp" "$out/initramfs.cpio.gz"
  log "built $out/initramfs.cpio.gz ($(stat -c %s "$out/initramfs.cpio.gz") bytes)"
fi

printf '%s\n' "linux-image-arm64 $meta_version" "$kernel_pkg $kernel_version" \
  "busybox-static $busybox_version" >"$out/packages.txt"
log "done: $out/Image $out/initramfs.cpio.gz $out/dtbs ($(tr '\n' ' ' <"$out/packages.txt"))"
