//! The EL2 controls a VM runs under: HCR_EL2, CPTR_EL2, MDCR_EL2, CNTHCTL_EL2 and
//! the identity registers, derived from what the hardware has. Pure values; the
//! arch layer writes them when a vCPU is loaded.

use aarch64_cpu::registers::HCR_EL2;
use tock_registers::LocalRegisterCopy;
use tock_registers::fields::FieldValue;
use tock_registers::register_bitfields;

register_bitfields! [u64,
    /// CPTR_EL2 with HCR_EL2.E2H = 0 (Arm ARM D24.2.30); aarch64-cpu names only TAM.
    pub CPTR_EL2 [
        TCPAC OFFSET(31) NUMBITS(1) [],
        TAM OFFSET(30) NUMBITS(1) [],
        TTA OFFSET(20) NUMBITS(1) [],
        TSM OFFSET(12) NUMBITS(1) [],
        TFP OFFSET(10) NUMBITS(1) [],
        TZ OFFSET(8) NUMBITS(1) [],
    ],
    /// The MDCR_EL2 fields used here (Arm ARM D24.2.88).
    pub MDCR_EL2 [
        TTRF OFFSET(19) NUMBITS(1) [],
        HPMD OFFSET(17) NUMBITS(1) [],
        TPMS OFFSET(14) NUMBITS(1) [],
        E2PB OFFSET(12) NUMBITS(2) [],
        TDRA OFFSET(11) NUMBITS(1) [],
        TDOSA OFFSET(10) NUMBITS(1) [],
        TDA OFFSET(9) NUMBITS(1) [],
        TDE OFFSET(8) NUMBITS(1) [],
        HPME OFFSET(7) NUMBITS(1) [],
        TPM OFFSET(6) NUMBITS(1) [],
        TPMCR OFFSET(5) NUMBITS(1) [],
        HPMN OFFSET(0) NUMBITS(5) [],
    ],
    /// CNTHCTL_EL2 with HCR_EL2.E2H = 0 (Arm ARM D24.2.27).
    pub CNTHCTL_EL2 [
        EL1PCEN OFFSET(1) NUMBITS(1) [],
        EL1PCTEN OFFSET(0) NUMBITS(1) [],
    ],
];

/// CPTR_EL2 bits that are RES1 when E2H = 0: 13, 9, 7:0 — and 12 (TSM) and 8 (TZ)
/// read as RES1 where SME/SVE are absent, so they are always set here.
const CPTR_EL2_RES1: u64 = (1 << 13) | (1 << 9) | 0xff;

/// What the hardware offers that decides the controls (from the ID registers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostFeatures {
    /// FEAT_EVT: HCR_EL2.TID4 exists, so cache ID registers can be trapped
    /// without trapping CTR_EL0.
    pub evt: bool,
    /// FEAT_FGT: fine-grained traps.
    pub fgt: bool,
    pub sve: bool,
    pub sme: bool,
    pub pan: bool,
    pub uao: bool,
    pub ssbs: bool,
    pub bti: bool,
    pub mte: bool,
    /// FEAT_VMID16.
    pub vmid16: bool,
    /// FEAT_S2FWB.
    pub s2fwb: bool,
    /// ID_AA64MMFR0_EL1.PARange.
    pub parange: u8,
}

impl HostFeatures {
    /// Reads the features out of raw ID register values (Arm ARM D24.2, the
    /// ID_AA64* field tables).
    pub fn from_id_regs(id: &IdRegs) -> Self {
        let f = |v: u64, shift: u32| ((v >> shift) & 0xf) as u8;
        HostFeatures {
            evt: f(id.mmfr2, 56) >= 1,
            fgt: f(id.mmfr0, 56) >= 1,
            sve: f(id.pfr0, 32) >= 1,
            sme: f(id.pfr1, 24) >= 1,
            pan: f(id.mmfr1, 20) >= 1,
            uao: f(id.mmfr2, 4) >= 1,
            ssbs: f(id.pfr1, 4) >= 1,
            bti: f(id.pfr1, 0) >= 1,
            mte: f(id.pfr1, 8) >= 2,
            vmid16: f(id.mmfr1, 4) == 2,
            s2fwb: f(id.mmfr2, 40) >= 1,
            parange: f(id.mmfr0, 0),
        }
    }

    /// The fields exception entry depends on.
    pub fn pstate(&self) -> super::inject::PStateFeatures {
        super::inject::PStateFeatures {
            pan: self.pan,
            uao: self.uao,
            ssbs: self.ssbs,
            bti: self.bti,
            mte: self.mte,
        }
    }
}

/// The raw ID register values features are read from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IdRegs {
    pub pfr0: u64,
    pub pfr1: u64,
    pub mmfr0: u64,
    pub mmfr1: u64,
    pub mmfr2: u64,
}

/// Which system-register accesses trap for the CPU model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysRegTraps {
    /// Only what Ferrovisor must see: no ID-register emulation.
    Minimal,
    /// The full CPU model: ID registers (TID3, and TID1 for REVIDR/AIDR), cache
    /// identification (`cache`: TID4 where FEAT_EVT lets CTR_EL0 stay
    /// untrapped, else TID2), set/way maintenance (TSW).
    CpuModel { cache: crate::sysreg::CacheTrap },
}

/// The EL2 control values for one VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct El2Controls {
    pub hcr_el2: u64,
    pub cptr_el2: u64,
    /// Bits to set in MDCR_EL2 (HPMN is kept as the firmware left it).
    pub mdcr_el2_set: u64,
    pub cnthctl_el2: u64,
}

/// Derives a VM's controls.
///
/// HCR_EL2, and why each bit:
/// - VM: stage-2 translation on. RW: EL1 is AArch64.
/// - IMO/FMO/AMO: physical IRQ/FIQ/SError go to EL2, virtual ones to the guest.
/// - SWIO: set/way invalidate behaves as clean+invalidate (RES1 on most parts);
///   an invalidate must never drop data the guest does not own.
/// - FB + BSU=Inner Shareable: a guest's local TLB/I-cache maintenance and
///   barriers reach every CPU its vCPUs may run on (as KVM/arm64 sets them).
/// - TSC: SMC traps, so PSCI via SMC is emulated and no guest reaches firmware.
/// - TWI: WFI traps, so an idle vCPU gives up its CPU. WFE is left alone:
///   spin-lock waits would pay an exit each.
/// - TIDCP: IMPLEMENTATION DEFINED registers trap (and are UNDEFINED to guests):
///   they may reach CPU-wide state no guest may touch.
/// - TACR: ACTLR_EL1 traps for the same reason.
/// - TLOR: LORegion registers trap; FEAT_LOR is not offered.
/// - TERR: RAS error records trap; RAS is not offered.
/// - API/APK clear: pointer authentication traps; the CPU model hides it (its
///   keys would have to be switched with the VM), so its use is UNDEFINED.
pub fn el2_controls(features: &HostFeatures, traps: SysRegTraps) -> El2Controls {
    let mut hcr: FieldValue<u64, HCR_EL2::Register> = HCR_EL2::VM::Enable
        + HCR_EL2::RW::EL1IsAarch64
        + HCR_EL2::IMO::EnableVirtualIRQ
        + HCR_EL2::FMO::EnableVirtualFIQ
        + HCR_EL2::AMO::SET
        + HCR_EL2::SWIO::SET
        + HCR_EL2::FB::SET
        + HCR_EL2::BSU::InnerShareable
        + HCR_EL2::TSC::EnableTrapEl1SmcToEl2
        + HCR_EL2::TWI::SET
        + HCR_EL2::TIDCP::SET
        + HCR_EL2::TACR::SET
        + HCR_EL2::TLOR::SET
        + HCR_EL2::TERR::SET;
    if let SysRegTraps::CpuModel { cache } = traps {
        hcr += HCR_EL2::TID3::SET + HCR_EL2::TID1::SET + HCR_EL2::TSW::SET;
        hcr += match cache {
            crate::sysreg::CacheTrap::Tid4 if features.evt => HCR_EL2::TID4::SET,
            _ => HCR_EL2::TID2::SET,
        };
    }
    let mut hcr_reg = LocalRegisterCopy::<u64, HCR_EL2::Register>::new(0);
    hcr_reg.modify(hcr);

    // FP/SIMD is the guest's (the hypervisor is built soft-float and never uses
    // it); SVE and SME trap until they are virtualized; trace and activity
    // monitors trap (UNDEFINED to guests).
    let mut cptr = LocalRegisterCopy::<u64, CPTR_EL2::Register>::new(CPTR_EL2_RES1);
    cptr.modify(CPTR_EL2::TZ::SET + CPTR_EL2::TSM::SET + CPTR_EL2::TTA::SET + CPTR_EL2::TAM::SET);

    // The PMU, SPE and trace filter controls trap: none is offered to guests
    // yet. Debug registers are the guest's own (one vCPU per physical CPU).
    let mut mdcr = LocalRegisterCopy::<u64, MDCR_EL2::Register>::new(0);
    mdcr.modify(
        MDCR_EL2::TPM::SET + MDCR_EL2::TPMCR::SET + MDCR_EL2::TPMS::SET + MDCR_EL2::TTRF::SET,
    );

    // The guest reads the physical counter; the EL1 physical timer traps
    // (the guest's timer is the virtual one).
    let mut cnthctl = LocalRegisterCopy::<u64, CNTHCTL_EL2::Register>::new(0);
    cnthctl.modify(CNTHCTL_EL2::EL1PCTEN::SET);

    El2Controls {
        hcr_el2: hcr_reg.get(),
        cptr_el2: cptr.get(),
        mdcr_el2_set: mdcr.get(),
        cnthctl_el2: cnthctl.get(),
    }
}

/// VMPIDR_EL2 for vCPU `index`: Aff0 = index within a cluster of 16 (GICv3's
/// SGI target lists address 16 CPUs per Aff1 group), Aff1 = index / 16, and
/// RES1 bit 31 (Arm ARM, MPIDR_EL1 register description).
pub fn vmpidr(index: usize) -> u64 {
    crate::sysreg::Mpidr::of_vcpu(index).mpidr_el1()
}

/// SCTLR_EL1 at reset as the Linux boot protocol wants it: MMU and caches off,
/// little-endian; the RES1 bits of Armv8.0 (29, 28, 23, 22, 20, 11) set.
pub const SCTLR_EL1_RESET: u64 = 0x30d0_0800;
/// PSTATE at guest entry: EL1h, D/A/I/F masked (booting.rst).
pub const PSTATE_EL1H_MASKED: u64 = 0x3c5;

#[cfg(test)]
mod tests {
    use super::*;

    fn bit(v: u64, n: u32) -> bool {
        v & (1 << n) != 0
    }

    #[test]
    fn hcr_for_a_guest() {
        let c = el2_controls(&HostFeatures::default(), SysRegTraps::Minimal);
        let h = c.hcr_el2;
        for (n, name) in [
            (0, "VM"),
            (1, "SWIO"),
            (3, "FMO"),
            (4, "IMO"),
            (5, "AMO"),
            (9, "FB"),
            (10, "BSU[0]"),
            (13, "TWI"),
            (19, "TSC"),
            (20, "TIDCP"),
            (21, "TACR"),
            (31, "RW"),
            (35, "TLOR"),
            (36, "TERR"),
        ] {
            assert!(bit(h, n), "{name} (bit {n}) must be set in {h:#x}");
        }
        for (n, name) in [
            (14, "TWE"),
            (17, "TID2"),
            (18, "TID3"),
            (22, "TSW"),
            (27, "TGE"),
            (34, "E2H"),
            (40, "APK"),
            (41, "API"),
            (49, "TID4"),
        ] {
            assert!(!bit(h, n), "{name} (bit {n}) must be clear in {h:#x}");
        }
    }

    #[test]
    fn cache_id_trap_follows_feat_evt() {
        use crate::sysreg::CacheTrap;
        let mut f = HostFeatures::default();
        let tid4 = SysRegTraps::CpuModel {
            cache: CacheTrap::Tid4,
        };
        let h = el2_controls(&f, tid4).hcr_el2;
        assert!(
            bit(h, 17) && !bit(h, 49),
            "no FEAT_EVT: TID2 even if TID4 asked"
        );
        assert!(bit(h, 18) && bit(h, 22) && bit(h, 16), "TID3, TSW, TID1");
        f.evt = true;
        let h = el2_controls(&f, tid4).hcr_el2;
        assert!(
            !bit(h, 17) && bit(h, 49),
            "FEAT_EVT: TID4, CTR_EL0 untrapped"
        );
        let tid2 = SysRegTraps::CpuModel {
            cache: CacheTrap::Tid2,
        };
        let h = el2_controls(&f, tid2).hcr_el2;
        assert!(
            bit(h, 17) && !bit(h, 49),
            "a CTR_EL0 that differs in hardware: TID2"
        );
    }

    #[test]
    fn cptr_mdcr_cnthctl() {
        let c = el2_controls(&HostFeatures::default(), SysRegTraps::Minimal);
        assert!(!bit(c.cptr_el2, 10), "FP/SIMD not trapped");
        assert!(
            bit(c.cptr_el2, 8) && bit(c.cptr_el2, 12),
            "SVE and SME trapped"
        );
        assert!(
            bit(c.cptr_el2, 20) && bit(c.cptr_el2, 30),
            "trace and AMU trapped"
        );
        assert!(
            bit(c.cptr_el2, 13) && bit(c.cptr_el2, 9) && c.cptr_el2 & 0xff == 0xff,
            "RES1"
        );
        assert!(
            bit(c.mdcr_el2_set, 6) && bit(c.mdcr_el2_set, 5),
            "PMU trapped"
        );
        assert!(!bit(c.mdcr_el2_set, 9), "debug registers not trapped");
        assert_eq!(c.cnthctl_el2, 1, "EL1PCTEN only");
    }

    #[test]
    fn features_from_qemu_max_like_ids() {
        // ID_AA64MMFR2_EL1.EVT = 2 at [59:56]; MMFR0.FGT = 1 at [59:56], PARange 5.
        let id = IdRegs {
            pfr0: 1 << 32,
            pfr1: (1 << 24) | (2 << 4) | 1,
            mmfr0: (1 << 56) | 5,
            mmfr1: 3 << 20,
            mmfr2: (2 << 56) | (1 << 4),
        };
        let f = HostFeatures::from_id_regs(&id);
        assert!(f.evt && f.fgt && f.sve && f.sme && f.pan && f.uao && f.ssbs && f.bti);
        assert!(!f.mte);
        assert_eq!(f.parange, 5);
        assert_eq!(
            HostFeatures::from_id_regs(&IdRegs::default()),
            HostFeatures::default()
        );
    }

    #[test]
    fn vmpidr_layout() {
        assert_eq!(vmpidr(0), 0x8000_0000);
        assert_eq!(vmpidr(3), 0x8000_0003);
        assert_eq!(vmpidr(17), 0x8000_0101);
    }
}
