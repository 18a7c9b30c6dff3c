//! MPIDR_EL1 affinity: how a PE is named wherever the architecture names one
//! (PSCI target_cpu, GICD_IROUTER<n>, GICR_TYPER, ICC_SGI1R_EL1's fields, a
//! device tree's cpu `reg`).

/// The affinity fields of an MPIDR_EL1 value: Aff3 [39:32], Aff2 [23:16],
/// Aff1 [15:8], Aff0 [7:0] (Arm ARM, MPIDR_EL1). Everything else (U, MT,
/// the RES1 bit 31) is dropped, so two values compare equal exactly when they
/// name the same PE.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mpidr(u64);

impl Mpidr {
    /// The bits of MPIDR_EL1 that hold affinity.
    pub const AFFINITY_MASK: u64 = 0xff_00ff_ffff;

    /// The affinity of an MPIDR_EL1 (or PSCI target_cpu, or GICD_IROUTER)
    /// value; other bits are ignored.
    pub const fn new(value: u64) -> Self {
        Mpidr(value & Self::AFFINITY_MASK)
    }

    /// Whether `value` has bits set outside the affinity fields (a PSCI
    /// target_cpu or device-tree `reg` must not).
    pub const fn has_other_bits(value: u64) -> bool {
        value & !Self::AFFINITY_MASK != 0
    }

    /// The affinity as a number, in MPIDR_EL1's layout.
    pub const fn affinity(self) -> u64 {
        self.0
    }

    /// Aff0..Aff3 by level.
    pub const fn aff(self, level: u32) -> u8 {
        let shift = if level == 3 { 32 } else { 8 * level };
        (self.0 >> shift) as u8
    }

    /// The affinity of vCPU `index`: Aff0 = index within a cluster of 16
    /// (GICv3's SGI target lists address 16 PEs per Aff1 group, ICC_SGI1R_EL1
    /// TargetList), Aff1 = index / 16.
    pub const fn of_vcpu(index: usize) -> Self {
        Mpidr((((index / 16) as u64) << 8) | (index % 16) as u64)
    }

    /// MPIDR_EL1 as a guest reads it (VMPIDR_EL2): the affinity with the RES1
    /// bit 31 set, U = 0 (a multiprocessor system), MT = 0.
    pub const fn mpidr_el1(self) -> u64 {
        (1 << 31) | self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affinity_only() {
        assert_eq!(Mpidr::new(0x8000_0001), Mpidr::new(1));
        assert_eq!(Mpidr::new(0xff_ffff_ffff).affinity(), 0xff_00ff_ffff);
        assert!(Mpidr::has_other_bits(1 << 24));
        assert!(!Mpidr::has_other_bits(0xff_00ff_ffff));
        let m = Mpidr::new(0x12_0034_5678);
        assert_eq!(
            (m.aff(0), m.aff(1), m.aff(2), m.aff(3)),
            (0x78, 0x56, 0x34, 0x12)
        );
        assert_eq!(Mpidr::of_vcpu(17).affinity(), 0x101);
        assert_eq!(Mpidr::of_vcpu(3).mpidr_el1(), 0x8000_0003);
    }
}
