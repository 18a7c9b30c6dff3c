#!/usr/bin/env bash
# Boots the Linux guest directly on QEMU, without Ferrovisor: the check that the
# kernel and initramfs from tests/linux/fetch.sh work at all, and the baseline
# the benchmark compares Ferrovisor against.
#
#   bash tests/linux/qemu-direct.sh OUTDIR [CPU [SMP]]     (CPU max, SMP 2)
#
# Runs the self-test (ferrovisor.test=1), checks that QEMU exits 0 after
# LINUX-CHECK result=pass and LINUX-CHECK-DONE, and prints one line
#   linux-direct: cpu=max smp=2 userspace_s=5.81 done_s=9.95 exit_s=10.02 rc=0 pass
# (wall-clock seconds from starting QEMU to the marker line, to
# LINUX-CHECK-DONE and to QEMU's exit). The serial log is OUTDIR/direct-CPU.log.
# LINUX_TIMEOUT (seconds, default 300) bounds the run; QEMU_EXTRA adds QEMU
# arguments (e.g. "-icount shift=0,sleep=off" for repeatable guest time).
set -euo pipefail

if [ $# -lt 1 ] || [ $# -gt 3 ]; then
  echo "usage: $0 OUTDIR [CPU [SMP]]" >&2
  exit 2
fi
out=$1
cpu=${2:-max}
smp=${3:-2}
timeout_s=${LINUX_TIMEOUT:-300}
log="$out/direct-$cpu.log"
for f in "$out/Image" "$out/initramfs.cpio.gz"; do
  [ -s "$f" ] || { echo "linux-direct: $f missing: run tests/linux/fetch.sh $out first" >&2; exit 1; }
done

start=$EPOCHREALTIME
since() { awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }

userspace_s=- done_s=- rc=- pass=0
: >"$log"
while IFS= read -r line; do
  line=${line%$'\r'}
  case $line in
    QEMU-EXIT\ *) rc=${line#QEMU-EXIT }; continue ;;
    *FERROVISOR-LINUX-USERSPACE-UP*) userspace_s=$(since) ;;
    "LINUX-CHECK result=pass") pass=1 ;;
    LINUX-CHECK-DONE) done_s=$(since) ;;
  esac
  printf '%s\n' "$line" >>"$log"
done < <(
  timeout "$timeout_s" qemu-system-aarch64 -M virt,gic-version=3 -cpu "$cpu" -smp "$smp" -m 1G \
    -nographic -no-reboot -kernel "$out/Image" -initrd "$out/initramfs.cpio.gz" \
    -append "console=ttyAMA0 ferrovisor.test=1" ${QEMU_EXTRA:-} </dev/null 2>&1
  echo "QEMU-EXIT $?"
)
exit_s=$(since)

verdict=fail
[ "$rc" = 0 ] && [ $pass = 1 ] && [ "$done_s" != - ] && verdict=pass
echo "linux-direct: cpu=$cpu smp=$smp userspace_s=$userspace_s done_s=$done_s exit_s=$exit_s rc=$rc $verdict"
if [ $verdict != pass ]; then
  echo "linux-direct: see $log" >&2
  grep -E 'LINUX-CHECK .*FAIL|Kernel panic' "$log" >&2 || true
  exit 1
fi
