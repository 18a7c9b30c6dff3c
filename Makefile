# Ferrovisor: `make run` boots the default demo guest under QEMU, `make test`
# runs everything (host unit tests and QEMU integration tests). Both install
# what is missing first (.ci/setup.sh).

BOARD   ?= qemu-virt
CONFIG  ?= boards/$(BOARD)/demo.toml
CPU     ?= max
SMP     ?= 4
BUILD   ?= build
# The hypervisor's build: release (build/ferrovisor.bin), debug (unoptimized,
# debug assertions and overflow checks: build/ferrovisor-debug.bin), or
# overflow-test (debug, recursing at boot to test the stack guard pages).
PROFILE ?= release
GDB_PORT ?= 1234

# The board: QEMU_ARGS (how QEMU models it), and optionally BOARD_DEPS (targets it
# needs first, e.g. `linux` for its device tree), FVCONFIG_HOST (what configs are
# checked against: fvconfig's --dtb/--cpus/--ram) and the UBOOT_* settings of
# `make uboot-image` (boards/uboot/build.sh).
include boards/$(BOARD)/board.mk
UBOOT_OUT ?= $(BUILD)/uboot$(if $(filter-out qemu-virt,$(BOARD)),/$(BOARD))

HYP_TARGET   := aarch64-unknown-none-softfloat
# cargo calls the debug profile "dev"; each profile builds into target/$(HYP_TARGET)/$(PROFILE).
CARGO_PROFILE = $(if $(filter debug,$(PROFILE)),dev,$(PROFILE))
HYP_FEATURES  = $(if $(filter overflow-test,$(PROFILE)),--features stack-overflow-test)
HYP_NAME      = ferrovisor$(if $(filter release,$(PROFILE)),,-$(PROFILE))
HYP_ELF       = target/$(HYP_TARGET)/$(PROFILE)/ferrovisor
HYP_BIN       = $(BUILD)/$(HYP_NAME).bin
SYSROOT       = $(shell rustc --print sysroot)
OBJCOPY       = $(SYSROOT)/lib/rustlib/x86_64-unknown-linux-gnu/bin/llvm-objcopy
FVCONFIG     := target/release/fvconfig
BUNDLE        = $(BUILD)/$(basename $(notdir $(CONFIG))).cpio

.PHONY: all setup hypervisor hypervisor-test-images guests fvconfig bundle run gdb test bench soak linux fmt lint clippy clean uboot-image

all: hypervisor

setup:
	@bash .ci/setup.sh

# The image, and beside it its ELF with symbols and debug info (for gdb and
# addr2line: README "Debugging").
hypervisor: setup
	cargo build --profile $(CARGO_PROFILE) $(HYP_FEATURES) --target $(HYP_TARGET) --bin ferrovisor
	@mkdir -p $(BUILD)
	$(OBJCOPY) -O binary $(HYP_ELF) $(HYP_BIN)
	cp $(HYP_ELF) $(BUILD)/$(HYP_NAME).elf
	@echo "built $(HYP_BIN) ($$(stat -c %s $(HYP_BIN)) bytes; symbols: $(BUILD)/$(HYP_NAME).elf)"

# The other images make test boots: the debug build, and the stack-overflow test build.
hypervisor-test-images: setup
	$(MAKE) --no-print-directory hypervisor PROFILE=debug
	$(MAKE) --no-print-directory hypervisor PROFILE=overflow-test

guests: setup
	bash tests/guests/build.sh $(BUILD)/guests

fvconfig:
	cargo build --release --features tools --bin fvconfig

# The boot bundle: the config and every file it names, checked and packed.
bundle: fvconfig guests $(BOARD_DEPS)
	@case "$(CONFIG)" in *linux*|*two-vm*) $(MAKE) --no-print-directory linux ;; esac
	$(FVCONFIG) pack $(CONFIG) -o $(BUNDLE) -L $(BUILD) $(FVCONFIG_HOST)

run: hypervisor bundle
	$(QEMU) $(QEMU_ARGS) -kernel $(HYP_BIN) -initrd $(BUNDLE)

# QEMU halted at its first instruction with its gdbstub on GDB_PORT, and
# gdb-multiarch attached with the hypervisor's symbols; the console goes to
# $(BUILD)/gdb-console.log. GDB_ARGS are passed to gdb (README "Debugging").
gdb: hypervisor bundle
	@bash .ci/setup.sh gdb
	bash tests/gdb.sh $(HYP_ELF) $(HYP_LOAD) $(GDB_PORT) $(BUILD)/gdb-console.log $(GDB_ARGS) -- \
	  $(QEMU) $(QEMU_ARGS) -kernel $(HYP_BIN) -initrd $(BUNDLE)

# Debian's arm64 kernel and a busybox initramfs for the Linux guest (downloaded
# with apt-get download, never committed); Linux 6.12 from bookworm-backports
# too, for the tests that must hold on a newer kernel.
linux: setup
	bash tests/linux/fetch.sh $(BUILD)/linux
	bash tests/linux/fetch.sh $(BUILD)/linux-6.12 bookworm-backports

# A disk U-Boot boots CONFIG from: $(UBOOT_OUT)/<config>.img, boot.scr beside it
# (boards/qemu-virt/uboot/README.md); for a real board (BOARD=...) the SD-card image,
# with what boards/$(BOARD)/README.md says it needs.
uboot-image: hypervisor bundle $(UBOOT_DEPS)
	$(UBOOT_PREPARE)
	FVCONFIG=$(FVCONFIG) FVCONFIG_HOST="$(FVCONFIG_HOST)" UBOOT_DEVICE="$(UBOOT_DEVICE)" \
	  UBOOT_FILES="$(UBOOT_FILES)" PART_START="$(UBOOT_PART_START)" RAW="$(UBOOT_RAW)" \
	  bash boards/uboot/build.sh $(CONFIG) $(BUILD) $(UBOOT_OUT)

test: hypervisor hypervisor-test-images guests fvconfig linux lint
	bash tests/bundles.sh $(BUILD)
	FERROVISOR_BUILD=$(CURDIR)/$(BUILD) cargo test --features tools

# Linux and a hostile guest side by side for SOAK_MINUTES (tests/soak.rs).
SOAK_MINUTES ?= 2
soak: hypervisor guests fvconfig linux
	$(FVCONFIG) pack boards/qemu-virt/soak.toml -o $(BUILD)/soak.cpio -L $(BUILD)
	FERROVISOR_BUILD=$(CURDIR)/$(BUILD) SOAK_MINUTES=$(SOAK_MINUTES) \
	  cargo test --features tools --test soak -- --ignored --nocapture

bench: hypervisor guests fvconfig
	bash tests/bench.sh $(BUILD)

fmt:
	cargo fmt --all

# Formatting and clippy, on the host and the bare-metal target, and the guests.
lint: clippy
	cargo fmt --all -- --check
	cd tests/guests && cargo fmt --all -- --check

clippy:
	cargo clippy --all-targets --features tools -- -D warnings
	cargo clippy --target $(HYP_TARGET) --bin ferrovisor -- -D warnings
	cargo clippy --target $(HYP_TARGET) --bin ferrovisor --features stack-overflow-test -- -D warnings
	cd tests/guests && cargo clippy --release -- -D warnings

clean:
	cargo clean
	rm -rf $(BUILD)
