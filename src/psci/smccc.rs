//! The SMC Calling Convention's Function Identifier, decoded.
//!
//! Source: Arm DEN0028 (SMC Calling Convention) §2.5 "Function Identifiers" and its
//! Table 2-1 (bit layout) and the owning-entity table that follows it; §7 "Arm
//! Architecture Calls" for SMCCC_VERSION and SMCCC_ARCH_FEATURES.

use tock_registers::{LocalRegisterCopy, register_bitfields};

register_bitfields! {u32,
    /// The Function Identifier the caller passes in W0.
    pub(crate) FUNCTION_ID [
        /// 1: Fast Call (atomic); 0: Yielding Call (may be pre-empted).
        CALL_TYPE OFFSET(31) NUMBITS(1) [
            Yielding = 0,
            Fast = 1
        ],
        /// 0: SMC32/HVC32 (W registers); 1: SMC64/HVC64 (X registers).
        CALL_CONVENTION OFFSET(30) NUMBITS(1) [
            Smc32 = 0,
            Smc64 = 1
        ],
        /// Owning Entity Number: which service the call belongs to.
        OEN OFFSET(24) NUMBITS(6) [],
        /// Must be zero for a Fast Call.
        MBZ OFFSET(17) NUMBITS(7) [],
        /// SMCCC v1.3: the caller holds no live SVE state beyond the FP/SIMD view.
        SVE_HINT OFFSET(16) NUMBITS(1) [],
        /// The function within the service.
        FUNCTION_NUMBER OFFSET(0) NUMBITS(16) []
    ]
}

/// SMCCC_VERSION: Fast, SMC32, Arm Architecture service, function 0 (DEN0028 §7, "SMCCC_VERSION").
pub const SMCCC_VERSION: u32 = 0x8000_0000;
/// SMCCC_ARCH_FEATURES: Fast, SMC32, Arm Architecture service, function 1 (DEN0028 §7, "SMCCC_ARCH_FEATURES").
pub const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;

/// The SMCCC version this hypervisor reports: 1.1, the first with SMCCC_VERSION and
/// SMCCC_ARCH_FEATURES. Results come back in x0..x3 only (v1.2 widened that).
pub const SMCCC_VERSION_1_1: u32 = 0x0001_0001;

/// Whether the call may be pre-empted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallType {
    Fast,
    Yielding,
}

/// Which registers carry arguments and results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Convention {
    /// SMC32/HVC32: W0..W7; the upper halves of X registers are ignored.
    Smc32,
    /// SMC64/HVC64: X0..X7, for AArch64 callers only.
    Smc64,
}

/// The owning entity of a call (DEN0028 §2.5, the OEN table).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// 0: Arm Architecture Calls (SMCCC_VERSION, SMCCC_ARCH_FEATURES, workarounds).
    Arch,
    /// 1: CPU Service Calls.
    Cpu,
    /// 2: SiP Service Calls.
    Sip,
    /// 3: OEM Service Calls.
    Oem,
    /// 4: Standard Secure Service Calls: PSCI lives here (functions 0x00-0x1F).
    StandardSecure,
    /// 5: Standard Hypervisor Service Calls.
    StandardHypervisor,
    /// 6: Vendor Specific Hypervisor Service Calls.
    VendorHypervisor,
    /// 7: Vendor Specific EL3 Monitor Calls.
    VendorEl3Monitor,
    /// 48-49: Trusted Application Calls.
    TrustedApplication,
    /// 50-63: Trusted OS Calls.
    TrustedOs,
    /// 8-47: reserved for future use.
    Reserved(u8),
}

impl Owner {
    fn from_oen(oen: u8) -> Self {
        match oen {
            0 => Self::Arch,
            1 => Self::Cpu,
            2 => Self::Sip,
            3 => Self::Oem,
            4 => Self::StandardSecure,
            5 => Self::StandardHypervisor,
            6 => Self::VendorHypervisor,
            7 => Self::VendorEl3Monitor,
            48..=49 => Self::TrustedApplication,
            50..=63 => Self::TrustedOs,
            other => Self::Reserved(other),
        }
    }
}

/// A Function Identifier taken apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FunctionId {
    pub call_type: CallType,
    pub convention: Convention,
    pub owner: Owner,
    pub number: u16,
    /// SMCCC v1.3 SVE hint (bit 16); not part of the function's identity.
    pub sve_hint: bool,
    /// Bits [23:17] were not zero in a Fast Call: not a valid identifier.
    pub mbz_violated: bool,
}

impl FunctionId {
    /// Decodes the identifier from the caller's x0. SMCCC passes it in W0, so bits
    /// [63:32] are ignored (DEN0028 §2.5; KVM and TF-A read it the same way).
    pub fn decode(x0: u64) -> Self {
        let id = LocalRegisterCopy::<u32, FUNCTION_ID::Register>::new(x0 as u32);
        let fast = id.matches_all(FUNCTION_ID::CALL_TYPE::Fast);
        FunctionId {
            call_type: if fast {
                CallType::Fast
            } else {
                CallType::Yielding
            },
            convention: if id.matches_all(FUNCTION_ID::CALL_CONVENTION::Smc64) {
                Convention::Smc64
            } else {
                Convention::Smc32
            },
            owner: Owner::from_oen(id.read(FUNCTION_ID::OEN) as u8),
            number: id.read(FUNCTION_ID::FUNCTION_NUMBER) as u16,
            sve_hint: id.is_set(FUNCTION_ID::SVE_HINT),
            mbz_violated: fast && id.read(FUNCTION_ID::MBZ) != 0,
        }
    }

    /// The identifier without the SVE hint bit: the value function tables match on.
    pub fn without_hint(x0: u64) -> u32 {
        let mut id = LocalRegisterCopy::<u32, FUNCTION_ID::Register>::new(x0 as u32);
        id.modify(FUNCTION_ID::SVE_HINT::CLEAR);
        id.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psci_cpu_on_64() {
        // PSCI CPU_ON, SMC64: 0xC400_0003 (DEN0022 Table 6).
        let id = FunctionId::decode(0xc400_0003);
        assert_eq!(id.call_type, CallType::Fast);
        assert_eq!(id.convention, Convention::Smc64);
        assert_eq!(id.owner, Owner::StandardSecure);
        assert_eq!(id.number, 3);
        assert!(!id.sve_hint);
        assert!(!id.mbz_violated);
    }

    #[test]
    fn smccc_version_and_upper_bits_ignored() {
        let id = FunctionId::decode(0xdead_beef_0000_0000 | SMCCC_VERSION as u64);
        assert_eq!(id.owner, Owner::Arch);
        assert_eq!(id.convention, Convention::Smc32);
        assert_eq!(id.number, 0);
        assert_eq!(
            FunctionId::without_hint(0xffff_ffff_8000_0001),
            SMCCC_ARCH_FEATURES
        );
    }

    #[test]
    fn owners() {
        let owner = |oen: u32| FunctionId::decode(((0x80 | oen) << 24) as u64).owner;
        assert_eq!(owner(1), Owner::Cpu);
        assert_eq!(owner(2), Owner::Sip);
        assert_eq!(owner(3), Owner::Oem);
        assert_eq!(owner(5), Owner::StandardHypervisor);
        assert_eq!(owner(6), Owner::VendorHypervisor);
        assert_eq!(owner(7), Owner::VendorEl3Monitor);
        assert_eq!(owner(8), Owner::Reserved(8));
        assert_eq!(owner(47), Owner::Reserved(47));
        assert_eq!(owner(48), Owner::TrustedApplication);
        assert_eq!(owner(49), Owner::TrustedApplication);
        assert_eq!(owner(50), Owner::TrustedOs);
        assert_eq!(owner(63), Owner::TrustedOs);
    }

    #[test]
    fn hint_and_mbz() {
        // Linux (SMCCC >= 1.3) sets bit 16 when it has no live SVE state.
        let id = FunctionId::decode(0x8401_0000);
        assert!(id.sve_hint);
        assert!(!id.mbz_violated);
        assert_eq!(FunctionId::without_hint(0x8401_0000), 0x8400_0000);
        // Bits [23:17] must be zero in a Fast Call ...
        assert!(FunctionId::decode(0x8402_0000).mbz_violated);
        assert!(FunctionId::decode(0x8480_0000).mbz_violated);
        // ... but are not checked for a Yielding Call.
        let yielding = FunctionId::decode(0x3280_0001);
        assert_eq!(yielding.call_type, CallType::Yielding);
        assert!(!yielding.mbz_violated);
        assert_eq!(yielding.owner, Owner::TrustedOs);
    }
}
