# NXP i.MX 8M Plus EVK: four Cortex-A53, a GICv3, RAM from 0x4000_0000, the console
# on UART2 (an i.MX UART). QEMU's model (`imx8mp-evk`) starts the hypervisor at EL2
# with QEMU's own PSCI over SMC; it needs the board's device tree, Debian's build of
# Linux's (fetched with the kernel by `make linux`). The CPU is the board's: CPU=
# does not apply. See README.md beside this file.
QEMU          ?= qemu-system-aarch64
QEMU_MEM      ?= 2G
BOARD_DTB      = $(BUILD)/linux/dtbs/imx8mp-evk.dtb
BOARD_DEPS     = linux
# Configs are checked against the board's device tree (CPUs, RAM, devices).
FVCONFIG_HOST  = --dtb $(BOARD_DTB)
# UART2, the console the device tree's stdout-path names, is QEMU's second serial
# port; -echr 0x1d moves QEMU's escape key to Ctrl-] (Ctrl-a is Ferrovisor's).
QEMU_ARGS      = -M imx8mp-evk -smp $(SMP) -m $(QEMU_MEM) -nographic \
                 -serial null -serial mon:stdio -echr 0x1d -no-reboot -dtb $(BOARD_DTB)

# make uboot-image: the SD card the EVK boots from (SW4 boot switches: SD card).
# The boot ROM reads flash.bin (SPL, DDR training firmware, TF-A, U-Boot; made with
# NXP's imx-mkimage) from byte 32 KiB of the card: IMX_FLASH_BIN=path/to/flash.bin.
# The FAT partition starts at 8 MiB, after it. U-Boot sees the SD slot as mmc 1.
IMX_FLASH_BIN    ?=
UBOOT_PART_START  = 16384
UBOOT_RAW         = $(if $(IMX_FLASH_BIN),$(IMX_FLASH_BIN)@32768)
UBOOT_DEVICE      = mmc 1:1
UBOOT_PREPARE     = $(if $(IMX_FLASH_BIN),,@echo "note: IMX_FLASH_BIN not set: the image has no boot loader; write flash.bin at 32 KiB of the card yourself")
# Where QEMU's -kernel puts the image (RAM base + 2 MiB): make gdb loads its symbols there.
HYP_LOAD      ?= 0x40200000
