#!/usr/bin/env bash
# Packs the boot bundle of every config the QEMU integration tests boot:
# BUILD/<name>.cpio from boards/qemu-virt/<name>.toml (see tests/qemu.rs).
set -euo pipefail
build=${1:-build}
fvconfig=${FVCONFIG:-target/release/fvconfig}
for name in demo conformance linux-selftest linux-6.12-selftest two-vm isolation lifecycle console-flood cpumodel-virtual cpumodel-host cpumodel-explicit cpumodel-smp cpumodel-twovm vgic powercycle vgic-shared isolation-shared isolation-solo linux-4on2-fairshare fpsimd sve regpattern pmu vgic2 vgic2-shared; do
  "$fvconfig" pack "boards/qemu-virt/$name.toml" -o "$build/$name.cpio" -L "$build"
done
