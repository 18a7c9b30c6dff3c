#!/usr/bin/env bash
# `make bench`: what a trap, an interrupt, a boot and the hypervisor itself cost,
# measured.
#
#   tests/bench.sh BUILD_DIR        (the Makefile's `bench` target: BUILD_DIR = build)
#
# Builds nothing: `make bench` builds the hypervisor (BUILD_DIR/ferrovisor.bin) and
# the guests (BUILD_DIR/guests/bench.bin) first. This script
#   1. packs the bench VM's boot bundle (boards/qemu-virt/bench.toml: 2 vCPUs) with
#      `fvconfig pack` if it is built, else with tests/bench/pack.py;
#   2. runs the bench guest twice under Ferrovisor and twice on bare QEMU at EL1
#      for each CPU model (-cpu max: FEAT_EVT, so the cache-ID registers trap with
#      HCR_EL2.TID4 and CTR_EL0 is not trapped; -cpu cortex-a57: no FEAT_EVT, so
#      TID2, which traps CTR_EL0 too and exercises its fast path), two runs at a
#      time, all with `-smp 2` and `-icount shift=0,sleep=off` (guest time
#      advances 1 ns per executed instruction and never with host time, so figures
#      repeat exactly and host load does not matter; sleep=off keeps idle host time
#      out of the guest's clock; dtb-randomness=off keeps random seeds out of the
#      device tree). -smp 2 and not more: a physical CPU with no vCPU parks in a
#      WFE loop, which QEMU's TCG runs as a YIELD that never sleeps;
#   3. runs the same VM with both vCPUs on one physical CPU (`cpus = [0, 0]`,
#      -smp 1, `bench=shared`: the guest runs only the shared-CPU rows
#      vcpu_switch, wake_ipi and timer_10ms_shared), twice, on the first CPU model;
#   4. runs Ferrovisor with one CPU and a one-vCPU VM of 64 MiB, 128 MiB and 1 GiB,
#      each stopped at the guest's first line, twice: the hypervisor's boot count
#      (the 1 GiB one is the hyp_boot_1gib row), how much of it grows with the
#      VM's RAM, and the boot log of a 1 GiB guest;
#   5. if the Linux guest is there (BUILD_DIR/linux/Image and initramfs.cpio.gz,
#      from `make linux`), boots it under Ferrovisor and directly, A/B, once for
#      each of three `-seed` values (the guest's random numbers: each seed's boot
#      repeats exactly, the seeds show how much they move it), the first seed
#      again to check it repeats, then once more under Ferrovisor counting its
#      exits (tests/bench/linux_boot.py), one boot at a time (wall clock is
#      measured);
#   6. prints the table, writes BUILD_DIR/bench.json and rewrites the README's
#      section between `<!-- bench:begin -->` and `<!-- bench:end -->`
#      (tests/bench/report.py; not when a benchmark run failed).
# Logs of every run are in BUILD_DIR/bench/.
#
# It takes about 1.5 minutes on an idle 2-core machine with the Linux guest
# (under a minute without it), 3-4 minutes when the machine is busy; most of
# it is the nine Linux boots and the set/way sweeps.
#
# Exit status: non-zero if a run did not finish (or the inputs are missing).
# Environment: FERROVISOR_QEMU (QEMU binary), FERROVISOR_BENCH_TIMEOUT (seconds per
# bench run, default 300), FERROVISOR_LINUX_TIMEOUT (seconds per Linux boot,
# default 150), FERROVISOR_BENCH_CPUS (CPU models, first = main table, default
# "max cortex-a57"), FERROVISOR_BENCH_README (default README.md in the repository;
# empty: leave the README alone), FVCONFIG (default $CARGO_TARGET_DIR or target,
# then /release/fvconfig).
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
read -r -a cpus <<<"${FERROVISOR_BENCH_CPUS:-max cortex-a57}"
readme=${FERROVISOR_BENCH_README-$root/README.md}
smp=2
hyp=$build/ferrovisor.bin
guest=$build/guests/bench.bin
logs=$build/bench
# -seed: QEMU's random numbers for the guest (RNDR) repeat too.
icount=(-icount shift=0,sleep=off -seed 1)

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
# run NAME ARGS...: one bench run in the background, serial output to $logs/NAME.log.
run() {
  local name=$1
  shift
  rm -f "$logs/$name.log"
  timeout --kill-after=10 "$bench_timeout" "$qemu" "$@" </dev/null >"$logs/$name.log" 2>&1 &
}
# finished NAME...: whether each run printed BENCH-DONE; says which did not.
finished() {
  local name ok=0
  for name in "$@"; do
    if ! grep -q "BENCH-DONE" "$logs/$name.log" 2>/dev/null; then
      echo "bench: run '$name' did not finish (log: $logs/$name.log)" >&2
      ok=1
    fi
  done
  return $ok
}

# hyp_args CPU SMP BUNDLE [MEMORY] / bare_args CPU: QEMU's arguments, in $args.
hyp_args() {
  args=(-M virt,virtualization=on,gic-version=3,dtb-randomness=off -cpu "$1" -smp "$2" -m "${4:-1G}"
    -nographic -no-reboot "${icount[@]}" -kernel "$hyp" -initrd "$3")
}
bare_args() {
  args=(-M virt,gic-version=3,dtb-randomness=off -cpu "$1" -smp "$smp" -m 1G -nographic
    -no-reboot "${icount[@]}" -kernel "$guest")
}

# Two QEMU processes at a time (one per host core): under icount the figures do
# not depend on host load.
report_runs=()
names=()
for cpu in "${cpus[@]}"; do
  for i in 1 2; do
    hyp_args "$cpu" "$smp" "$bundle"
    run "ferrovisor-$cpu-$i" "${args[@]}"
    bare_args "$cpu"
    run "bare-$cpu-$i" "${args[@]}"
    wait
    names+=("ferrovisor-$cpu-$i" "bare-$cpu-$i")
  done
  report_runs+=(--runs "$cpu" "$logs/ferrovisor-$cpu-1.log" "$logs/ferrovisor-$cpu-2.log"
    "$logs/bare-$cpu-1.log" "$logs/bare-$cpu-2.log")
done
finished "${names[@]}" || failed=1

# The shared-CPU rows (vcpu_switch, wake_ipi, timer_10ms_shared): the bench VM
# with both vCPUs on one physical CPU (cpus = [0, 0], -smp 1) and
# `bench=shared` in its bootargs, which runs only those rows; twice, at once.
shared_arg=()
sed 's/^vcpus = 2$/cpus = [0, 0]/; s|^kernel = "guests/bench.bin"$|&\nbootargs = "bench=shared"|' \
  boards/qemu-virt/bench.toml >"$logs/bench-shared.toml"
if pack "$logs/bench-shared.toml" "$logs/bench-shared.cpio" >/dev/null; then
  for i in 1 2; do
    hyp_args "${cpus[0]}" 1 "$logs/bench-shared.cpio"
    run "ferrovisor-shared-${cpus[0]}-$i" "${args[@]}"
  done
  wait
  finished "ferrovisor-shared-${cpus[0]}-1" "ferrovisor-shared-${cpus[0]}-2" || failed=1
  shared_arg=(--shared "${cpus[0]}" "$logs/ferrovisor-shared-${cpus[0]}-1.log"
    "$logs/ferrovisor-shared-${cpus[0]}-2.log")
else
  failed=1
fi

# The hypervisor's boot on one CPU: the same guest as a one-vCPU VM of 64 MiB,
# 128 MiB (as bench.toml) and 1 GiB (the hyp_boot_1gib row; QEMU -m 2G), three
# at a time and each twice, each QEMU stopped once the guest's first line
# (BENCH-INFO, with its boot count) is out, 120 s at most: the boot count, that
# it repeats, and how much of it grows with the VM's RAM.
boot_args=()
for mib in 64 128 1024; do
  name=ferrovisor-boot-1cpu-${mib}M
  sed "s/^vcpus = 2\$/vcpus = 1/; s/^memory = \".*\"\$/memory = \"${mib}M\"/" \
    boards/qemu-virt/bench.toml >"$logs/$name.toml"
  pack "$logs/$name.toml" "$logs/$name.cpio" >/dev/null || continue
  boot_args+=(--boot-1cpu "$mib" "$logs/$name-1.log" "$logs/$name-2.log")
done
for round in 1 2; do
  boot_pids=()
  boot_logs=()
  for mib in 64 128 1024; do
    name=ferrovisor-boot-1cpu-${mib}M
    [ -f "$logs/$name.cpio" ] || continue
    rm -f "$logs/$name-$round.log"
    mem=1G
    if [ "$mib" -ge 1024 ]; then
      mem=2G
    fi
    hyp_args "${cpus[0]}" 1 "$logs/$name.cpio" "$mem"
    "$qemu" "${args[@]}" </dev/null >"$logs/$name-$round.log" 2>&1 &
    boot_pids+=($!)
    boot_logs+=("$logs/$name-$round.log")
  done
  for _ in $(seq 600); do
    busy=0
    for i in "${!boot_pids[@]}"; do
      if kill -0 "${boot_pids[$i]}" 2>/dev/null && ! grep -q "BENCH-INFO" "${boot_logs[$i]}"; then
        busy=1
      fi
    done
    [ "$busy" -eq 0 ] && break
    sleep 0.2
  done
  for pid in "${boot_pids[@]}"; do
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
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
      --append "$bootargs" --cpu "${cpus[0]}" --smp "$vm_smp" --vm-memory "$vm_mem" \
      --host-memory 1G --seeds 1,2,3 --timeout "$linux_timeout" \
      --logdir "$logs" --out "$logs/linux.json" || true
    linux_arg=(--linux "$logs/linux.json")
  else
    linux_arg=(--linux-na "could not pack $linux_cfg")
    failed=1
  fi
fi

status=0
rm -f "$build/bench.json"
readme_arg=()
if [ -n "$readme" ]; then
  readme_arg=(--readme "$readme")
fi
python3 "$here/bench/report.py" "${report_runs[@]}" --smp "$smp" "${boot_args[@]}" "${shared_arg[@]}" \
  --image "$hyp" "${linux_arg[@]}" "${readme_arg[@]}" \
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
