# Raspberry Pi 4 Model B: four Cortex-A72, a GIC-400 (GICv2 with the virtualization
# extensions), RAM from 0 (with a hole below 1 GiB for the GPU), the console on the
# mini UART (stdout-path serial1). QEMU's model (`raspi4b`) starts the hypervisor at
# EL2 with the board's device tree (Debian's build of Linux's, fetched with the kernel
# by `make linux`); it has no PSCI firmware (spin-table CPUs): one CPU runs. Its
# guests see a GICv2. See README.md.
QEMU          ?= qemu-system-aarch64
BOARD_DTB      = $(BUILD)/linux/dtbs/raspi4b.dtb
BOARD_DEPS     = linux
# Linux's tree leaves /memory empty for the firmware to fill in: check configs
# against the CPUs and RAM of the smallest Pi 4 instead.
FVCONFIG_HOST  = --cpus 4 --ram 1G
# The mini UART is QEMU's second serial port, the PL011 (serial0) its first.
QEMU_ARGS      = -M raspi4b -nographic -serial null -serial mon:stdio -echr 0x1d \
                 -no-reboot -dtb $(BOARD_DTB)

# make uboot-image: the SD card. The boot partition holds the Raspberry Pi firmware
# (RPI_FIRMWARE=a directory with start4.elf, fixup4.dat and bcm2711-rpi-4-b.dtb from
# the Raspberry Pi firmware's boot/ directory), config.txt, Debian's U-Boot (rpi_arm64)
# and TF-A (rpi4) — boards/raspi4b/uboot/prepare.sh gathers them.
RPI_FIRMWARE  ?=
RPI_FILES      = $(BUILD)/uboot/raspi4b/files
UBOOT_PREPARE  = bash boards/raspi4b/uboot/prepare.sh $(RPI_FILES) "$(RPI_FIRMWARE)"
UBOOT_FILES    = $(RPI_FILES)/config.txt $(RPI_FILES)/u-boot.bin $(RPI_FILES)/bl31.bin \
                 $(RPI_FILES)/start4.elf $(RPI_FILES)/fixup4.dat $(RPI_FILES)/bcm2711-rpi-4-b.dtb
UBOOT_DEVICE   = mmc 0:1
# Where QEMU's -kernel puts the image (RAM base 0 + 2 MiB): make gdb loads its symbols there.
HYP_LOAD      ?= 0x200000
