//! A tiny runtime for Ferrovisor's EL1 test guests.
//!
//! A guest is a `#![no_std] #![no_main]` binary that depends on this crate and names
//! its entry point with [`entry!`]:
//!
//! ```ignore
//! guest_rt::entry!(main);
//! fn main(dtb: u64) -> ! {
//!     guest_rt::check!("CurrentEL is EL1", guest_rt::current_el() == 1);
//!     guest_rt::finish()
//! }
//! ```
//!
//! What the runtime provides:
//! - the arm64 Linux `Image` header and `_start` ([`boot`]): FP/SIMD enabled, an
//!   identity-mapped MMU with caches on, a stack, BSS cleared, `x0` (the device tree's
//!   address) handed to `main`;
//! - an EL1 vector table ([`exception`]) with [`expect_exception`], so a test can run
//!   an instruction that must UNDEF or abort, look at the recorded `ESR_EL1`/`FAR_EL1`/
//!   `ELR_EL1`, and carry on after it; and an IRQ hook, [`set_irq_handler`];
//! - a PL011 console at guest PA `0x0900_0000` with [`print!`]/[`println!`] ([`console`]);
//! - SMCCC and PSCI calls over HVC or SMC ([`smccc`]);
//! - secondary CPUs started with PSCI CPU_ON, each on its own stack with the same
//!   identity map ([`smp`]);
//! - the check reporter [`check!`] and [`finish`] ([`check`]): `PASS: name` /
//!   `FAIL: name (detail)` lines and a final `N passed, M failed`, then PSCI SYSTEM_OFF.
#![no_std]
#![deny(clippy::undocumented_unsafe_blocks)]

pub mod boot;
pub mod check;
pub mod console;
pub mod exception;
pub mod smccc;
pub mod smp;

pub use check::finish;
pub use exception::{ExceptionInfo, catch_exception, expect_exception, set_irq_handler};
pub use smccc::{hvc_call, psci_version, smc_call, system_off, system_reset};

/// The exception level this code runs at (`CurrentEL.EL`, Arm ARM C5.2.1).
pub fn current_el() -> u64 {
    let el: u64;
    // SAFETY: reading CurrentEL has no side effects and is allowed at EL1.
    unsafe {
        core::arch::asm!("mrs {}, CurrentEL", out(reg) el, options(nomem, nostack, preserves_flags))
    };
    (el >> 2) & 0b11
}

/// Names the guest's entry point: `fn main(dtb: u64) -> !`, called by `_start` with the
/// device tree's address from `x0`. The function must end with [`finish`] (or another
/// call that powers off), so a test result is always reported.
#[macro_export]
macro_rules! entry {
    ($main:path) => {
        #[unsafe(no_mangle)]
        extern "C" fn __guest_rt_main(dtb: u64) -> ! {
            let main: fn(u64) -> ! = $main;
            main(dtb)
        }
    };
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    check::fail_and_finish(format_args!("panic: {info}"))
}
