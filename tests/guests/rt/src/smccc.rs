//! SMCCC calls (Arm DEN0028) and the PSCI functions the tests use (Arm DEN0022).
//!
//! Both conduits are offered: HVC (what Ferrovisor's guests are told to use, and what
//! QEMU's built-in PSCI answers when there is no EL2) and SMC (which the hypervisor
//! traps with `HCR_EL2.TSC`). Registers x0-x17 are treated as clobbered, which covers
//! SMCCC v1.0 callees as well as v1.1+.

/// SMCCC `NOT_SUPPORTED` (-1, sign-extended to 64 bits): an unknown function ID.
pub const SMCCC_NOT_SUPPORTED: u64 = u64::MAX;

/// PSCI function IDs (DEN0022, table 5.1): 32-bit calling convention.
pub const PSCI_VERSION: u32 = 0x8400_0000;
pub const PSCI_SYSTEM_OFF: u32 = 0x8400_0008;
pub const PSCI_SYSTEM_RESET: u32 = 0x8400_0009;
pub const PSCI_FEATURES: u32 = 0x8400_000a;
pub const PSCI_CPU_OFF: u32 = 0x8400_0002;
/// PSCI CPU_ON, 64-bit calling convention.
pub const PSCI_CPU_ON_64: u32 = 0xc400_0003;
/// PSCI return code `NOT_SUPPORTED` (-1) as the 32-bit value in `w0`.
pub const PSCI_RET_NOT_SUPPORTED: u32 = 0xffff_ffff;
/// PSCI return code `ALREADY_ON` (DEN0022 table 5.2): CPU_ON's target is on.
pub const PSCI_RET_ALREADY_ON: i64 = -4;

/// Makes an SMCCC call with `HVC #0` and returns `x0`.
pub fn hvc_call(fid: u32, a1: u64, a2: u64, a3: u64) -> u64 {
    let ret: u64;
    // SAFETY: HVC hands control to the hypervisor (or QEMU's PSCI), which returns
    // here with results in x0-x3 and, for SMCCC v1.0 callees, possibly x4-x17
    // changed: all declared clobbered. No memory of this program is touched.
    unsafe {
        core::arch::asm!(
            "hvc #0",
            inout("x0") u64::from(fid) => ret,
            inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _,
            out("x4") _, out("x5") _, out("x6") _, out("x7") _,
            out("x8") _, out("x9") _, out("x10") _, out("x11") _,
            out("x12") _, out("x13") _, out("x14") _, out("x15") _,
            out("x16") _, out("x17") _,
            options(nostack),
        );
    }
    ret
}

/// Makes an SMCCC call with `SMC #0` and returns `x0`.
pub fn smc_call(fid: u32, a1: u64, a2: u64, a3: u64) -> u64 {
    let ret: u64;
    // SAFETY: as for `hvc_call`; SMC from EL1 is either trapped by the hypervisor
    // (HCR_EL2.TSC) or handled by firmware, and returns here.
    unsafe {
        core::arch::asm!(
            "smc #0",
            inout("x0") u64::from(fid) => ret,
            inout("x1") a1 => _, inout("x2") a2 => _, inout("x3") a3 => _,
            out("x4") _, out("x5") _, out("x6") _, out("x7") _,
            out("x8") _, out("x9") _, out("x10") _, out("x11") _,
            out("x12") _, out("x13") _, out("x14") _, out("x15") _,
            out("x16") _, out("x17") _,
            options(nostack),
        );
    }
    ret
}

/// PSCI_VERSION over HVC: `major << 16 | minor` (1.1 is `0x0001_0001`).
pub fn psci_version() -> u32 {
    hvc_call(PSCI_VERSION, 0, 0, 0) as u32
}

/// PSCI_FEATURES over HVC: 0 (or feature flags) if `fid` is implemented, else
/// `NOT_SUPPORTED` (-1).
pub fn psci_features(fid: u32) -> u32 {
    hvc_call(PSCI_FEATURES, u64::from(fid), 0, 0) as u32
}

/// PSCI SYSTEM_OFF over HVC. Does not return; if the call does, says so and waits.
pub fn system_off() -> ! {
    let ret = hvc_call(PSCI_SYSTEM_OFF, 0, 0, 0);
    crate::println!("guest: PSCI SYSTEM_OFF returned {ret:#x}");
    halt()
}

/// PSCI SYSTEM_RESET over HVC. Does not return; if the call does, says so and waits.
pub fn system_reset() -> ! {
    let ret = hvc_call(PSCI_SYSTEM_RESET, 0, 0, 0);
    crate::println!("guest: PSCI SYSTEM_RESET returned {ret:#x}");
    halt()
}

fn halt() -> ! {
    loop {
        // SAFETY: WFI only waits; it has no memory effects.
        unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
    }
}
