//! The fault status code of a Data or Instruction Abort (DFSC / IFSC), as a type.

/// What an abort's DFSC/IFSC field says went wrong.
///
/// Arm ARM (DDI 0487) D24.2 ESR_EL2, "ISS encoding for an exception from a Data Abort"
/// (DFSC) and "... from an Instruction Abort" (IFSC); both use these encodings. A
/// `level` is the translation table level of the fault; -1 appears only with
/// FEAT_LPA2 (52-bit addresses with 4 KiB granules), level 0 of Access flag and
/// Permission faults likewise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultStatus {
    /// 0b0000LL, and 0b101001 for level -1.
    AddressSize { level: i8 },
    /// 0b0001LL, and 0b101011 for level -1. The stage-2 fault behind MMIO emulation.
    Translation { level: i8 },
    /// 0b0010LL.
    AccessFlag { level: i8 },
    /// 0b0011LL.
    Permission { level: i8 },
    /// 0b010000: synchronous External abort, not on a translation table walk.
    SyncExternal,
    /// 0b010001: synchronous Tag Check Fault (FEAT_MTE2).
    TagCheck,
    /// 0b0101LL, and 0b010011 for level -1: synchronous External abort on a walk.
    SyncExternalOnWalk { level: i8 },
    /// 0b011000: synchronous parity or ECC error, not on a walk (without FEAT_RAS).
    SyncParityEcc,
    /// 0b0111LL, and 0b011011 for level -1: parity or ECC error on a walk.
    SyncParityEccOnWalk { level: i8 },
    /// 0b100001.
    Alignment,
    /// 0b1001LL, and 0b100011 for level -1: Granule Protection Fault on a walk
    /// (FEAT_RME).
    GranuleProtectionOnWalk { level: i8 },
    /// 0b101000: Granule Protection Fault, not on a walk (FEAT_RME).
    GranuleProtection,
    /// 0b110000.
    TlbConflict,
    /// 0b110001: unsupported atomic hardware update (FEAT_HAFDBS).
    UnsupportedAtomicUpdate,
    /// 0b110100 (Lockdown) and 0b110101 (unsupported Exclusive or atomic access).
    ImplementationDefined(u8),
    /// Any other value, including the FEAT_D128 level -2 codes this decoder does not
    /// name. The raw 6-bit code is kept.
    Other(u8),
}

impl FaultStatus {
    /// Decodes a 6-bit DFSC/IFSC value (higher bits are ignored).
    pub fn from_code(code: u8) -> Self {
        let code = code & 0x3f;
        // The low two bits of the 0b00xxLL and 0b01xxLL groups are the level.
        let level = (code & 0b11) as i8;
        match code {
            0x00..=0x03 => Self::AddressSize { level },
            0x04..=0x07 => Self::Translation { level },
            0x08..=0x0b => Self::AccessFlag { level },
            0x0c..=0x0f => Self::Permission { level },
            0x10 => Self::SyncExternal,
            0x11 => Self::TagCheck,
            0x13 => Self::SyncExternalOnWalk { level: -1 },
            0x14..=0x17 => Self::SyncExternalOnWalk { level },
            0x18 => Self::SyncParityEcc,
            0x1b => Self::SyncParityEccOnWalk { level: -1 },
            0x1c..=0x1f => Self::SyncParityEccOnWalk { level },
            0x21 => Self::Alignment,
            0x23 => Self::GranuleProtectionOnWalk { level: -1 },
            0x24..=0x27 => Self::GranuleProtectionOnWalk { level },
            0x28 => Self::GranuleProtection,
            0x29 => Self::AddressSize { level: -1 },
            0x2b => Self::Translation { level: -1 },
            0x30 => Self::TlbConflict,
            0x31 => Self::UnsupportedAtomicUpdate,
            0x34 | 0x35 => Self::ImplementationDefined(code),
            _ => Self::Other(code),
        }
    }

    /// Whether HPFAR_EL2 holds the faulting IPA for this fault when it was not taken on
    /// a stage-1 walk: only for stage-2 Translation, Access flag and Address size
    /// faults. Arm ARM D24.2 HPFAR_EL2: for other faults, including stage-2 Permission
    /// faults, its value is UNKNOWN (KVM resolves those through AT instead).
    pub fn hpfar_valid(self) -> bool {
        matches!(
            self,
            Self::Translation { .. } | Self::AccessFlag { .. } | Self::AddressSize { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_groups() {
        assert_eq!(
            FaultStatus::from_code(0x04),
            FaultStatus::Translation { level: 0 }
        );
        assert_eq!(
            FaultStatus::from_code(0x07),
            FaultStatus::Translation { level: 3 }
        );
        assert_eq!(
            FaultStatus::from_code(0x0b),
            FaultStatus::AccessFlag { level: 3 }
        );
        assert_eq!(
            FaultStatus::from_code(0x0d),
            FaultStatus::Permission { level: 1 }
        );
        assert_eq!(
            FaultStatus::from_code(0x02),
            FaultStatus::AddressSize { level: 2 }
        );
        assert_eq!(
            FaultStatus::from_code(0x15),
            FaultStatus::SyncExternalOnWalk { level: 1 }
        );
        assert_eq!(
            FaultStatus::from_code(0x1f),
            FaultStatus::SyncParityEccOnWalk { level: 3 }
        );
    }

    #[test]
    fn lpa2_level_minus_one() {
        assert_eq!(
            FaultStatus::from_code(0x2b),
            FaultStatus::Translation { level: -1 }
        );
        assert_eq!(
            FaultStatus::from_code(0x29),
            FaultStatus::AddressSize { level: -1 }
        );
        assert_eq!(
            FaultStatus::from_code(0x13),
            FaultStatus::SyncExternalOnWalk { level: -1 }
        );
    }

    #[test]
    fn single_codes() {
        assert_eq!(FaultStatus::from_code(0x10), FaultStatus::SyncExternal);
        assert_eq!(FaultStatus::from_code(0x11), FaultStatus::TagCheck);
        assert_eq!(FaultStatus::from_code(0x21), FaultStatus::Alignment);
        assert_eq!(FaultStatus::from_code(0x28), FaultStatus::GranuleProtection);
        assert_eq!(FaultStatus::from_code(0x30), FaultStatus::TlbConflict);
        assert_eq!(
            FaultStatus::from_code(0x31),
            FaultStatus::UnsupportedAtomicUpdate
        );
        assert_eq!(
            FaultStatus::from_code(0x35),
            FaultStatus::ImplementationDefined(0x35)
        );
        // 0x22 is the debug-exception code of breakpoint ISSs, never a DFSC here.
        assert_eq!(FaultStatus::from_code(0x22), FaultStatus::Other(0x22));
        assert_eq!(FaultStatus::from_code(0x3f), FaultStatus::Other(0x3f));
    }

    #[test]
    fn hpfar_valid_only_for_translation_access_flag_address_size() {
        assert!(FaultStatus::from_code(0x07).hpfar_valid());
        assert!(FaultStatus::from_code(0x0a).hpfar_valid());
        assert!(FaultStatus::from_code(0x01).hpfar_valid());
        assert!(!FaultStatus::from_code(0x0f).hpfar_valid());
        assert!(!FaultStatus::from_code(0x10).hpfar_valid());
    }
}
