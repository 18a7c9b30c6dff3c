# Xilinx ZynqMP ZCU102: four Cortex-A53, a GIC-400 (GICv2 with the virtualization
# extensions), RAM at 0 and at 32 GiB, the console on a Cadence UART. QEMU's model
# (`xlnx-zcu102,virtualization=on`) starts the hypervisor at EL2 with QEMU's own
# PSCI over SMC; it needs the board's device tree (Debian's build of Linux's, fetched
# with the kernel by `make linux`). Its guests see a GICv2. See README.md beside
# this file.
QEMU          ?= qemu-system-aarch64
QEMU_MEM      ?= 2G
BOARD_DTB      = $(BUILD)/linux/dtbs/zcu102.dtb
BOARD_DEPS     = linux
FVCONFIG_HOST  = --dtb $(BOARD_DTB)
# UART0 (0xff00_0000), the console, is QEMU's first serial port. No sound card.
QEMU_ARGS      = -M xlnx-zcu102,virtualization=on -m $(QEMU_MEM) -nographic -audio none \
                 -echr 0x1d -no-reboot -dtb $(BOARD_DTB)

# make uboot-image: the SD card (SW6 boot mode switches: SD). BOOT.BIN (FSBL, PMU
# firmware, TF-A, U-Boot; made with Xilinx's bootgen, PetaLinux or Yocto) goes on the
# FAT partition with the rest: ZYNQMP_BOOT_BIN=path/to/BOOT.BIN.
ZYNQMP_BOOT_BIN ?=
UBOOT_FILES      = $(ZYNQMP_BOOT_BIN)
UBOOT_DEVICE     = mmc 0:1
UBOOT_PREPARE    = $(if $(ZYNQMP_BOOT_BIN),,@echo "note: ZYNQMP_BOOT_BIN not set: the image has no BOOT.BIN; copy yours to its FAT partition")
# Where QEMU's -kernel puts the image (RAM base 0 + 2 MiB): make gdb loads its symbols there.
HYP_LOAD      ?= 0x200000
