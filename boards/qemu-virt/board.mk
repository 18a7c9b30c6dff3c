# QEMU's `virt` board with EL2 (virtualization=on) and no EL3 (secure=off, the
# default): QEMU's own PSCI answers the hypervisor's SMC calls.
# -kernel puts the hypervisor at 0x4020_0000 (DRAM base + text_offset 2 MiB); it
# relocates itself, so any 2 MiB-aligned base + 2 MiB works as well.
QEMU          ?= qemu-system-aarch64
QEMU_MACHINE  ?= virt,virtualization=on,gic-version=3
QEMU_MEM      ?= 2G
# -nographic puts the serial port on the terminal; -echr 0x1d moves QEMU's own
# escape key to Ctrl-] so Ctrl-a reaches Ferrovisor's console switch.
QEMU_ARGS     = -M $(QEMU_MACHINE) -cpu $(CPU) -smp $(SMP) -m $(QEMU_MEM) \
                -nographic -echr 0x1d -no-reboot
# Where QEMU's -kernel puts the image (RAM base + 2 MiB): make gdb loads its symbols there.
HYP_LOAD      ?= 0x40200000
