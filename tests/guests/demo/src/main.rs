//! Ferrovisor's first guest (issue 2): a banner, `CurrentEL == 1`, PSCI_VERSION over
//! HVC, then PSCI SYSTEM_OFF. It is what `make run` boots by default, and it runs
//! unchanged on bare QEMU at EL1 (`qemu-system-aarch64 -M virt -cpu max -nographic
//! -kernel demo.bin`), where QEMU itself answers PSCI over HVC.
#![no_std]
#![no_main]
#![deny(clippy::undocumented_unsafe_blocks)]

use guest_rt::{check, current_el, finish, println, psci_version};

guest_rt::entry!(main);

fn main(dtb: u64) -> ! {
    println!("Ferrovisor demo guest: hello from EL1");
    println!("device tree at {dtb:#x}");

    let el = current_el();
    check!("CurrentEL is EL1", el == 1, "CurrentEL.EL = {el}");

    // PSCI 1.x: bit 31 clear (not an error code), major version 1. Ferrovisor answers
    // 1.1 (0x0001_0001; the conformance guest checks that exactly); QEMU's own PSCI
    // also reports 1.x, so the demo accepts any 1.x.
    let version = psci_version();
    let (major, minor) = (version >> 16, version & 0xffff);
    println!("PSCI_VERSION = {version:#x} ({major}.{minor})");
    check!(
        "PSCI_VERSION over HVC is 1.x",
        version & (1 << 31) == 0 && major == 1,
        "PSCI_VERSION returned {version:#x}"
    );

    finish()
}
