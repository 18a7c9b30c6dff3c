#!/usr/bin/env bash
# `make bench`: what a trap, a boot and the hypervisor itself cost, measured.
#
#   tests/bench.sh BUILD_DIR        (the Makefile's `bench` target: BUILD_DIR = build)
#
# Builds nothing: `make bench` builds the hypervisor (BUILD_DIR/ferrovisor.bin) and
# the guests (BUILD_DIR/guests/bench.bin) first. This script
#   1. packs the bench VM's boot bundle (boards/qemu-virt/bench.toml) with
#      `fvconfig pack` if it is built, else with tests/bench/pack.py;
#   2. runs the bench guest twice under Ferrovisor and twice on bare QEMU at EL1,
#      all with `-icount shift=0,sleep=off` (guest time advances 1 ns per executed
#      instruction and never with host time, so figures repeat exactly; sleep=off
#      keeps idle host time out of the guest's clock; dtb-randomness=off keeps
#      random seeds out of the device tree);
#   3. if the Linux guest is there (BUILD_DIR/linux/Image and initramfs.cpio.gz,
#      from `make linux`), boots it A/B/A/B under Ferrovisor and directly
#      (tests/bench/linux_boot.py);
#   4. prints the table and writes BUILD_DIR/bench.json (tests/bench/report.py).
# Logs of every run are in BUILD_DIR/bench/.
#
# Exit status: non-zero if a run did not finish (or the inputs are missing).
# Environment: FERROVISOR_QEMU (QEMU binary), FERROVISOR_BENCH_TIMEOUT (seconds per
# bench run, default 300), FERROVISOR_LINUX_TIMEOUT (seconds per Linux boot,
# default 150), FVCONFIG (default $CARGO_TARGET_DIR or target, then /release/fvconfig).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
build=${1:-build}
mkdir -p "$build"
build=$(cd "$build" && pwd)
cd "$root"

qemu=${FERROVISOR_QEMU:-qemu-system-aarch64}
bench_timeout=${FERROVISOR_BENCH_TIMEOUT:-300}
linux_timeout=${FERROVISOR_LINUX_TIMEOUT:-150}
fvconfig=${FVCONFIG:-${CARGO_TARGET_DIR:-$root/target}/release/fvconfig}
hyp=$build/ferrovisor.bin
guest=$build/guests/bench.bin
logs=$build/bench
icount=(-icount shift=0,sleep=off)

for f in "$hyp" "$guest"; do
  if [ ! -f "$f" ]; then
    echo "bench: missing $f: run 'make bench' (it builds the hypervisor and the guests first)" >&2
    exit 2
  fi
done
command -v "$qemu" >/dev/null || { echo "bench: $qemu not found: run 'make setup'" >&2; exit 2; }
mkdir -p "$logs"

# pack CONFIG OUT: the boot bundle of CONFIG, files looked up in $build.
pack() {
  if [ -x "$fvconfig" ]; then
    if "$fvconfig" pack "$1" -o "$2" -L "$build"; then
      return 0
    fi
    echo "bench: warning: '$fvconfig pack $1' failed; packing with tests/bench/pack.py" >&2
  fi
  python3 "$here/bench/pack.py" "$1" -o "$2" -L "$build"
}

bundle=$logs/bench.cpio
pack boards/qemu-virt/bench.toml "$bundle"

failed=0
# run NAME ARGS...: one bench run, serial output to $logs/NAME.log.
run() {
  local name=$1
  shift
  local status=0
  timeout --kill-after=10 "$bench_timeout" "$qemu" "$@" </dev/null >"$logs/$name.log" 2>&1 || status=$?
  if ! grep -q "BENCH-DONE" "$logs/$name.log"; then
    echo "bench: run '$name' did not finish (QEMU status $status; log: $logs/$name.log)" >&2
    failed=1
  fi
}

hyp_args=(-M virt,virtualization=on,gic-version=3,dtb-randomness=off -cpu max -smp 4 -m 1G -nographic -no-reboot
  "${icount[@]}" -kernel "$hyp" -initrd "$bundle")
bare_args=(-M virt,gic-version=3,dtb-randomness=off -cpu max -smp 4 -m 1G -nographic -no-reboot
  "${icount[@]}" -kernel "$guest")
for i in 1 2; do
  run "ferrovisor-$i" "${hyp_args[@]}"
  run "bare-$i" "${bare_args[@]}"
done

# The Linux boot comparison, when the Linux guest has been fetched.
linux_arg=(--linux-na "run make linux")
kernel=$build/linux/Image
initrd=$build/linux/initramfs.cpio.gz
if [ -f "$kernel" ] && [ -f "$initrd" ]; then
  linux_cfg=boards/qemu-virt/linux.toml
  read -r vm_mem vm_smp bootargs < <(python3 - "$linux_cfg" <<'EOF'
import sys, tomllib
vm = tomllib.load(open(sys.argv[1], "rb"))["vm"][0]
smp = len(vm["cpus"]) if "cpus" in vm else vm.get("vcpus", 1)
print(vm["memory"], smp, vm.get("bootargs", ""))
EOF
  )
  if pack "$linux_cfg" "$logs/linux.cpio"; then
    python3 "$here/bench/linux_boot.py" --qemu "$qemu" --hypervisor "$hyp" \
      --bundle "$logs/linux.cpio" --kernel "$kernel" --initrd "$initrd" \
      --append "$bootargs" --cpu max --smp "$vm_smp" --vm-memory "$vm_mem" \
      --host-memory 1G --rounds 2 --timeout "$linux_timeout" \
      --logdir "$logs" --out "$logs/linux.json" || true
    linux_arg=(--linux "$logs/linux.json")
  else
    linux_arg=(--linux-na "could not pack $linux_cfg")
    failed=1
  fi
fi

status=0
rm -f "$build/bench.json"
python3 "$here/bench/report.py" \
  --ferrovisor "$logs/ferrovisor-1.log" "$logs/ferrovisor-2.log" \
  --bare "$logs/bare-1.log" "$logs/bare-2.log" \
  --image "$hyp" "${linux_arg[@]}" \
  --qemu-version "$("$qemu" --version | head -1)" \
  --out "$build/bench.json" || status=$?
if [ -f "$build/bench.json" ]; then
  echo "bench: wrote $build/bench.json (logs in $logs/)"
else
  echo "bench: no $build/bench.json: the report failed (logs in $logs/)" >&2
  status=1
fi
if [ "$failed" -ne 0 ] || [ "$status" -ne 0 ]; then
  exit 1
fi
