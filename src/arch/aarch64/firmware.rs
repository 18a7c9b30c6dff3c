//! Calls into the firmware's PSCI (DEN0022) through SMC or HVC, as the host
//! device tree's /psci `method` says.

use core::arch::asm;
use core::sync::atomic::{AtomicBool, Ordering};

pub use crate::platform::Conduit;

const PSCI_VERSION: u64 = 0x8400_0000;
const PSCI_CPU_OFF: u64 = 0x8400_0002;
const PSCI_CPU_ON_64: u64 = 0xC400_0003;
const PSCI_SYSTEM_OFF: u64 = 0x8400_0008;
const PSCI_SYSTEM_RESET: u64 = 0x8400_0009;

/// PSCI's NOT_SUPPORTED status (DEN0022, "Return error codes").
const NOT_SUPPORTED: u64 = -1i64 as u64;

/// Set when the device tree describes no PSCI firmware (a Raspberry Pi 4 with its
/// stock boot stub, which has no EL3): no call is made then, since SMC without
/// EL3 is UNDEFINED (Arm ARM, SMC instruction) and HVC would trap to ourselves.
static ABSENT: AtomicBool = AtomicBool::new(false);

/// Records that there is no PSCI firmware to call: every call answers
/// NOT_SUPPORTED from then on.
pub fn set_absent() {
    ABSENT.store(true, Ordering::Relaxed);
}

/// One SMCCC call with up to three arguments; returns x0.
pub fn call(conduit: Conduit, fid: u64, a1: u64, a2: u64, a3: u64) -> u64 {
    if ABSENT.load(Ordering::Relaxed) {
        return NOT_SUPPORTED;
    }
    let mut x0 = fid;
    match conduit {
        // SAFETY: an SMCCC call to the firmware; per SMCCC v1.1+ x0-x17 may be
        // clobbered (declared), memory is not touched except as PSCI defines.
        Conduit::Smc => unsafe {
            asm!("smc #0", inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _,
                 out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _,
                 out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _,
                 out("x15") _, out("x16") _, out("x17") _, options(nostack))
        },
        // SAFETY: as above, through HVC to an EL2 firmware (not used when we own EL2,
        // but a device tree may say so).
        Conduit::Hvc => unsafe {
            asm!("hvc #0", inout("x0") x0, inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _,
                 out("x4") _, out("x5") _, out("x6") _, out("x7") _, out("x8") _, out("x9") _,
                 out("x10") _, out("x11") _, out("x12") _, out("x13") _, out("x14") _,
                 out("x15") _, out("x16") _, out("x17") _, options(nostack))
        },
    }
    x0
}

/// PSCI_VERSION of the firmware (major << 16 | minor).
pub fn psci_version(conduit: Conduit) -> u32 {
    call(conduit, PSCI_VERSION, 0, 0, 0) as u32
}

/// Powers the machine off. Returns only if the firmware refuses (or there is none).
pub fn system_off(conduit: Conduit) {
    call(conduit, PSCI_SYSTEM_OFF, 0, 0, 0);
    log::warn!(
        "the firmware did not power the machine off (no PSCI SYSTEM_OFF); it stays on, idle"
    );
}

/// Resets the machine. Returns only if the firmware refuses.
pub fn system_reset(conduit: Conduit) {
    call(conduit, PSCI_SYSTEM_RESET, 0, 0, 0);
}

/// Turns the calling CPU off (PSCI CPU_OFF). Returns only on failure, with the
/// PSCI status.
pub fn cpu_off(conduit: Conduit) -> i64 {
    call(conduit, PSCI_CPU_OFF, 0, 0, 0) as i64
}

/// Starts physical CPU `mpidr` at the hypervisor's secondary entry with
/// `context` in x0. Returns the PSCI status (0 = success).
pub fn cpu_on(conduit: Conduit, mpidr: u64, context: u64) -> i64 {
    unsafe extern "C" {
        fn fv_secondary_entry();
    }
    let entry = fv_secondary_entry as *const () as u64;
    call(conduit, PSCI_CPU_ON_64, mpidr, entry, context) as i64
}
