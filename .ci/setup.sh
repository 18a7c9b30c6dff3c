#!/usr/bin/env bash
# Installs what building and testing Ferrovisor needs on a Debian/Ubuntu machine,
# or prints the exact command to run when it cannot (not root, no apt).
# Idempotent: does nothing when everything is already there.
set -euo pipefail

need_qemu_major=8
need_qemu_minor=2

have_qemu() {
  command -v qemu-system-aarch64 >/dev/null 2>&1 || return 1
  local v
  v=$(qemu-system-aarch64 --version | sed -n 's/.*version \([0-9]*\)\.\([0-9]*\).*/\1 \2/p' | head -1)
  set -- $v
  [ "${1:-0}" -gt "$need_qemu_major" ] || { [ "${1:-0}" -eq "$need_qemu_major" ] && [ "${2:-0}" -ge "$need_qemu_minor" ]; }
}

missing_pkgs=()
have_qemu || missing_pkgs+=(qemu-system-arm)
[ -f /usr/lib/u-boot/qemu_arm64/u-boot.bin ] || missing_pkgs+=(u-boot-qemu)
command -v mkimage >/dev/null 2>&1 || missing_pkgs+=(u-boot-tools)
command -v mformat >/dev/null 2>&1 || missing_pkgs+=(mtools)  # the U-Boot test's FAT disk
command -v dtc >/dev/null 2>&1 || missing_pkgs+=(device-tree-compiler)
command -v cpio >/dev/null 2>&1 || missing_pkgs+=(cpio)

if [ ${#missing_pkgs[@]} -gt 0 ]; then
  codename=$( (. /etc/os-release 2>/dev/null; echo "${VERSION_CODENAME:-}") )
  backports=""
  if [ "$codename" = "bookworm" ]; then backports="bookworm-backports"; fi
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "error: missing: ${missing_pkgs[*]} (QEMU >= ${need_qemu_major}.${need_qemu_minor} is needed)." >&2
    if [ -n "$backports" ]; then
      echo "run: echo 'deb http://deb.debian.org/debian bookworm-backports main' | sudo tee /etc/apt/sources.list.d/backports.list && sudo apt-get update && sudo apt-get install -y -t bookworm-backports ${missing_pkgs[*]}" >&2
    else
      echo "run: sudo apt-get update && sudo apt-get install -y ${missing_pkgs[*]}" >&2
    fi
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  if [ -n "$backports" ] && ! grep -rqs "bookworm-backports" /etc/apt/sources.list /etc/apt/sources.list.d/; then
    echo "setup: adding bookworm-backports (QEMU >= 8.2 lives there on Debian 12)"
    echo "deb http://deb.debian.org/debian bookworm-backports main" > /etc/apt/sources.list.d/ferrovisor-backports.list
  fi
  echo "setup: installing ${missing_pkgs[*]}"
  apt-get update -qq
  if [ -n "$backports" ]; then
    apt-get install -y -qq -t "$backports" "${missing_pkgs[@]}" >/dev/null
  else
    apt-get install -y -qq "${missing_pkgs[@]}" >/dev/null
  fi
  have_qemu || { echo "error: qemu-system-aarch64 is still older than ${need_qemu_major}.${need_qemu_minor} after install" >&2; exit 1; }
fi

# The toolchain, its bare-metal targets and llvm-tools come from rust-toolchain.toml
# through rustup. rustup adds a toolchain file's `targets` and `components` only when
# it installs the toolchain, so on a machine that already has the pinned version
# without them the build would fail with "can't find crate for `core`":
# `rustup toolchain install` with no arguments (inside the repository) installs
# whatever the file lists and is missing, and does nothing otherwise.
if command -v rustup >/dev/null 2>&1; then
  missing_targets=()
  installed=$(rustup target list --installed 2>/dev/null || true)
  for t in $(sed -n 's/^targets *= *\[\(.*\)\]/\1/p' rust-toolchain.toml | tr -d '",'); do
    grep -qx "$t" <<<"$installed" || missing_targets+=("$t")
  done
  if [ ${#missing_targets[@]} -gt 0 ] || ! rustup component list --installed 2>/dev/null | grep -q '^llvm-tools'; then
    echo "setup: rustup toolchain install (rust-toolchain.toml: ${missing_targets[*]:-components})"
    rustup toolchain install
  fi
else
  echo "error: rustup not found; install Rust with rustup (https://rustup.rs) first" >&2
  exit 1
fi

# `make gdb` only (`setup.sh gdb`): gdb-multiarch, as Debian's plain gdb debugs
# only the host's own architecture.
if [ "${1:-}" = gdb ] && ! command -v gdb-multiarch >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "error: make gdb needs gdb-multiarch; run: sudo apt-get install -y gdb-multiarch" >&2
    exit 1
  fi
  echo "setup: installing gdb-multiarch"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq gdb-multiarch >/dev/null || { apt-get update -qq && apt-get install -y -qq gdb-multiarch >/dev/null; }
fi
