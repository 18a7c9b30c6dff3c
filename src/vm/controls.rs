//! The EL2 controls a VM runs under — HCR_EL2, HCRX_EL2, CPTR_EL2, MDCR_EL2,
//! CNTHCTL_EL2, HSTR_EL2, the fine-grained trap registers (HFGRTR_EL2,
//! HFGWTR_EL2, HFGITR_EL2, HDFGRTR_EL2, HDFGWTR_EL2, HAFGRTR_EL2 and the FEAT_FGT2
//! ones) and MPAM2_EL2/MPAMHCR_EL2 — derived from what the hardware has. Pure
//! values; the arch layer writes every one of them whole (never merged with what
//! the firmware left) at boot and when a vCPU is loaded.
//!
//! # The rule
//! A guest reaches exactly what its CPU model (`crate::sysreg::id`) shows it.
//! Every feature the model hides but the hardware has must trap to EL2, where the
//! system-register table does not know it and the guest gets an UNDEFINED
//! exception — whatever an earlier boot stage configured: firmware may have
//! enabled FEAT_HCX or FEAT_FGT controls, left MDCR_EL2 routing debug to EL2, or
//! left a profiling or trace buffer running. So each register below is computed
//! bit by bit, each bit's value is stated with its reason, and the bits that
//! name a feature the hardware lacks stay 0 (they are RES0 there).
//!
//! Registers of features the hardware lacks are not written at all (their
//! encodings are UNDEFINED at EL2). Linux's `Documentation/arch/arm64/booting.rst`
//! asks the firmware to let EL2 use them when they exist (SCR_EL3.HXEn for
//! FEAT_HCX, SCR_EL3.FGTEn/FGTEn2 for FEAT_FGT/FGT2, MPAM3_EL3.TRAPLOWER = 0 for
//! FEAT_MPAM); Ferrovisor is booted the same way and relies on the same.
//!
//! # One system, several cores
//! The values are computed once for the whole system from [`HostFeatures::system`],
//! which combines every core: a register is written when every core has it, and a
//! hidden feature is trapped when any core has it (on a core without it the bit
//! is RES0 and ignored). At boot each core also writes the values of its own
//! features ([`boot_controls`]), so a register only some cores have is never left
//! as the firmware set it.

use aarch64_cpu::registers::{
    HAFGRTR_EL2, HCR_EL2, HDFGRTR_EL2, HDFGWTR_EL2, HFGITR_EL2, HFGRTR_EL2, HFGWTR_EL2, MDCR_EL2,
};
use tock_registers::LocalRegisterCopy;
use tock_registers::fields::FieldValue;
use tock_registers::register_bitfields;

use crate::sysreg::{HostCpu, IdRegs, SysReg};

register_bitfields! [u64,
    /// CPTR_EL2 with HCR_EL2.E2H = 0 (Arm ARM, CPTR_EL2); aarch64-cpu names only TAM.
    pub CPTR_EL2 [
        TCPAC OFFSET(31) NUMBITS(1) [],
        TAM OFFSET(30) NUMBITS(1) [],
        TTA OFFSET(20) NUMBITS(1) [],
        TSM OFFSET(12) NUMBITS(1) [],
        TFP OFFSET(10) NUMBITS(1) [],
        TZ OFFSET(8) NUMBITS(1) [],
    ],
    /// CNTHCTL_EL2 with HCR_EL2.E2H = 0 (Arm ARM, CNTHCTL_EL2).
    pub CNTHCTL_EL2 [
        CNTPMASK OFFSET(19) NUMBITS(1) [],
        CNTVMASK OFFSET(18) NUMBITS(1) [],
        EVNTIS OFFSET(17) NUMBITS(1) [],
        EL1NVVCT OFFSET(16) NUMBITS(1) [],
        EL1NVPCT OFFSET(15) NUMBITS(1) [],
        EL1TVCT OFFSET(14) NUMBITS(1) [],
        EL1TVT OFFSET(13) NUMBITS(1) [],
        ECV OFFSET(12) NUMBITS(1) [],
        EVNTI OFFSET(4) NUMBITS(4) [],
        EVNTDIR OFFSET(3) NUMBITS(1) [],
        EVNTEN OFFSET(2) NUMBITS(1) [],
        EL1PCEN OFFSET(1) NUMBITS(1) [],
        EL1PCTEN OFFSET(0) NUMBITS(1) [],
    ],
    /// HCRX_EL2 (FEAT_HCX; Arm ARM, HCRX_EL2); not in aarch64-cpu.
    pub HCRX_EL2 [
        GCSEn OFFSET(22) NUMBITS(1) [],
        EnFPM OFFSET(23) NUMBITS(1) [],
        SCTLR2En OFFSET(15) NUMBITS(1) [],
        TCR2En OFFSET(14) NUMBITS(1) [],
        MSCEn OFFSET(11) NUMBITS(1) [],
        TALLINT OFFSET(6) NUMBITS(1) [],
        EnALS OFFSET(1) NUMBITS(1) [],
    ],
    /// HFGRTR2_EL2 and HFGWTR2_EL2 (FEAT_FGT2): the positive trap bits used here.
    pub HFGxTR2_EL2 [
        GCR_EL1 OFFSET(35) NUMBITS(1) [],
        RGSR_EL1 OFFSET(34) NUMBITS(1) [],
        TFSR_EL1 OFFSET(33) NUMBITS(1) [],
    ],
    /// MPAM2_EL2 (FEAT_MPAM; Arm ARM, MPAM2_EL2): the trap controls.
    pub MPAM2_EL2 [
        TIDR OFFSET(58) NUMBITS(1) [],
        EnMPAMSM OFFSET(50) NUMBITS(1) [],
        TRAPMPAM0EL1 OFFSET(49) NUMBITS(1) [],
        TRAPMPAM1EL1 OFFSET(48) NUMBITS(1) [],
    ],
    /// MPAMHCR_EL2 (FEAT_MPAM with MPAMIDR_EL1.HAS_HCR).
    pub MPAMHCR_EL2 [
        TRAP_MPAMIDR_EL1 OFFSET(31) NUMBITS(1) [],
        GSTAPP_PLK OFFSET(8) NUMBITS(1) [],
        EL1_VPMEN OFFSET(1) NUMBITS(1) [],
        EL0_VPMEN OFFSET(0) NUMBITS(1) [],
    ],
];

/// CPTR_EL2 bits that are RES1 when E2H = 0: 13, 9, 7:0 — and 12 (TSM) and 8 (TZ)
/// read as RES1 where SME/SVE are absent, so they are always set here.
const CPTR_EL2_RES1: u64 = (1 << 13) | (1 << 9) | 0xff;

/// HCR_EL2 while no VM is loaded (what the boot code writes first): RW = 1 and
/// nothing else — no stage 2, no routing, no traps, E2H = TGE = 0.
pub const HCR_EL2_BOOT: u64 = 1 << 31;

/// What the hardware offers that decides the controls (from the ID registers).
///
/// Two kinds of flag: those that say a register or control *exists* (evt, fgt,
/// fgt2, hcx, mpam, ...: combined across cores with AND, since a register is only
/// written where every core has it) and those that say a *hidden* feature is
/// present and must be trapped (ras, lor, pauth, ...: combined with OR).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostFeatures {
    /// FEAT_EVT: HCR_EL2.TID4 exists, so cache ID registers can be trapped
    /// without trapping CTR_EL0.
    pub evt: bool,
    /// FEAT_FGT: HFGRTR_EL2, HFGWTR_EL2, HFGITR_EL2, HDFGRTR_EL2, HDFGWTR_EL2.
    pub fgt: bool,
    /// FEAT_FGT2: HFGRTR2_EL2, HFGWTR2_EL2, HFGITR2_EL2, HDFGRTR2_EL2, HDFGWTR2_EL2.
    pub fgt2: bool,
    /// FEAT_HCX: HCRX_EL2.
    pub hcx: bool,
    /// FEAT_MPAM: MPAM2_EL2.
    pub mpam: bool,
    /// MPAMIDR_EL1.HAS_HCR: MPAMHCR_EL2 exists.
    pub mpam_hcr: bool,
    pub sve: bool,
    pub sme: bool,
    pub pan: bool,
    pub uao: bool,
    pub ssbs: bool,
    pub bti: bool,
    /// FEAT_MTE2 (allocation tags in memory; GCR_EL1, RGSR_EL1, TFSR*_EL1, GMID_EL1).
    pub mte: bool,
    /// FEAT_VMID16.
    pub vmid16: bool,
    /// FEAT_S2FWB.
    pub s2fwb: bool,
    /// ID_AA64MMFR0_EL1.PARange.
    pub parange: u8,
    /// ID_AA64DFR0_EL1.PMUVer when it names a PMUv3 (1..=0xE), else 0.
    pub pmu_version: u8,
    /// PMCR_EL0.N: the event counters of the PMUv3 (0 without one).
    pub pmu_counters: u8,
    /// FEAT_RAS: the error record registers (ERR*, ERX*).
    pub ras: bool,
    /// FEAT_RAS on every core: VSESR_EL2 exists (a virtual SError's syndrome).
    pub vsesr: bool,
    /// FEAT_LOR: LORSA/LOREA/LORN/LORC/LORID_EL1.
    pub lor: bool,
    /// FEAT_PAuth: the key registers AP*Key*_EL1.
    pub pauth: bool,
    /// SCXTNUM_EL0/EL1: FEAT_CSV2_2, or FEAT_CSV2_1p2.
    pub scxtnum: bool,
    /// FEAT_AMUv1: the activity monitors.
    pub amu: bool,
    /// FEAT_SPE: the profiling sample and buffer registers.
    pub spe: bool,
    /// FEAT_TRBE: the trace buffer registers.
    pub trbe: bool,
    /// A trace unit with System register access (FEAT_ETE / ETMv4: TraceVer).
    pub trace: bool,
    /// FEAT_TRF: TRFCR_EL1.
    pub trf: bool,
    /// FEAT_BRBE: the branch record buffer.
    pub brbe: bool,
    /// FEAT_NMI: ALLINT.
    pub nmi: bool,
}

/// One 4-bit ID register field.
fn id_field(id: &IdRegs, reg: SysReg, shift: u32) -> u8 {
    ((id.get(reg).unwrap_or(0) >> shift) & 0xf) as u8
}

// ID registers read here (Arm ARM, the ID_AA64* register descriptions).
const PFR0: SysReg = SysReg::new(3, 0, 0, 4, 0);
const PFR1: SysReg = SysReg::new(3, 0, 0, 4, 1);
const DFR0: SysReg = SysReg::new(3, 0, 0, 5, 0);
const ISAR1: SysReg = SysReg::new(3, 0, 0, 6, 1);
const ISAR2: SysReg = SysReg::new(3, 0, 0, 6, 2);
const MMFR0: SysReg = SysReg::new(3, 0, 0, 7, 0);
const MMFR1: SysReg = SysReg::new(3, 0, 0, 7, 1);
const MMFR2: SysReg = SysReg::new(3, 0, 0, 7, 2);

/// MPAMIDR_EL1.HAS_HCR.
const MPAMIDR_HAS_HCR: u64 = 1 << 17;

impl HostFeatures {
    /// Reads the features of one core out of what it reported at boot (its ID
    /// registers, PMCR_EL0.N and MPAMIDR_EL1).
    pub fn from_cpu(cpu: &HostCpu) -> Self {
        let id = &cpu.id;
        let f = |reg, shift| id_field(id, reg, shift);
        let pmu = f(DFR0, 8);
        let pmu_version = if (1..0xf).contains(&pmu) { pmu } else { 0 };
        let mpam = f(PFR0, 40) >= 1 || f(PFR1, 16) >= 1;
        let csv2 = f(PFR0, 56);
        HostFeatures {
            evt: f(MMFR2, 56) >= 1,
            fgt: f(MMFR0, 56) >= 1,
            fgt2: f(MMFR0, 56) >= 2,
            hcx: f(MMFR1, 40) >= 1,
            mpam,
            mpam_hcr: mpam && cpu.mpamidr_el1 & MPAMIDR_HAS_HCR != 0,
            sve: f(PFR0, 32) >= 1,
            sme: f(PFR1, 24) >= 1,
            pan: f(MMFR1, 20) >= 1,
            uao: f(MMFR2, 4) >= 1,
            ssbs: f(PFR1, 4) >= 1,
            bti: f(PFR1, 0) >= 1,
            mte: f(PFR1, 8) >= 2,
            vmid16: f(MMFR1, 4) == 2,
            s2fwb: f(MMFR2, 40) >= 1,
            parange: f(MMFR0, 0),
            pmu_version,
            pmu_counters: if pmu_version != 0 {
                cpu.pmu_counters
            } else {
                0
            },
            ras: f(PFR0, 28) >= 1,
            vsesr: f(PFR0, 28) >= 1,
            lor: f(MMFR1, 16) >= 1,
            pauth: [(ISAR1, 4), (ISAR1, 8), (ISAR1, 24), (ISAR1, 28)]
                .iter()
                .any(|&(r, s)| f(r, s) != 0)
                || f(ISAR2, 8) != 0
                || f(ISAR2, 12) != 0,
            scxtnum: csv2 >= 2 || (csv2 == 1 && f(PFR1, 32) >= 2),
            amu: f(PFR0, 44) >= 1,
            spe: f(DFR0, 32) >= 1,
            trbe: f(DFR0, 44) >= 1,
            trace: f(DFR0, 4) >= 1,
            trf: f(DFR0, 40) >= 1,
            brbe: f(DFR0, 52) >= 1,
            nmi: f(PFR1, 36) >= 1,
        }
    }

    /// The features of the whole system: a register or control exists when every
    /// core has it (AND), a hidden feature must be trapped when any core has it
    /// (OR). PMU: HPMN must fit the core with the fewest counters; the counting
    /// prohibitions follow the newest PMU. `None` without cores.
    pub fn system(cpus: &[HostCpu]) -> Option<Self> {
        let mut all = cpus.iter().map(Self::from_cpu);
        let first = all.next()?;
        Some(all.fold(first, |a, b| HostFeatures {
            evt: a.evt && b.evt,
            fgt: a.fgt && b.fgt,
            fgt2: a.fgt2 && b.fgt2,
            hcx: a.hcx && b.hcx,
            mpam: a.mpam && b.mpam,
            mpam_hcr: a.mpam_hcr && b.mpam_hcr,
            sve: a.sve || b.sve,
            sme: a.sme || b.sme,
            pan: a.pan && b.pan,
            uao: a.uao && b.uao,
            ssbs: a.ssbs && b.ssbs,
            bti: a.bti && b.bti,
            mte: a.mte || b.mte,
            vmid16: a.vmid16 && b.vmid16,
            s2fwb: a.s2fwb && b.s2fwb,
            parange: a.parange.min(b.parange),
            pmu_version: a.pmu_version.max(b.pmu_version),
            pmu_counters: match (a.pmu_version, b.pmu_version) {
                (0, _) => b.pmu_counters,
                (_, 0) => a.pmu_counters,
                _ => a.pmu_counters.min(b.pmu_counters),
            },
            ras: a.ras || b.ras,
            vsesr: a.vsesr && b.vsesr,
            lor: a.lor || b.lor,
            pauth: a.pauth || b.pauth,
            scxtnum: a.scxtnum || b.scxtnum,
            amu: a.amu || b.amu,
            spe: a.spe || b.spe,
            trbe: a.trbe || b.trbe,
            trace: a.trace || b.trace,
            trf: a.trf || b.trf,
            brbe: a.brbe || b.brbe,
            nmi: a.nmi || b.nmi,
        }))
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

    /// PMUv3 (any version).
    fn pmu(&self) -> bool {
        self.pmu_version != 0
    }
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

/// The fine-grained trap registers of FEAT_FGT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FineGrainedTraps {
    pub hfgrtr_el2: u64,
    pub hfgwtr_el2: u64,
    pub hfgitr_el2: u64,
    pub hdfgrtr_el2: u64,
    pub hdfgwtr_el2: u64,
    /// HAFGRTR_EL2: exists with FEAT_FGT and FEAT_AMUv1 on every core.
    pub hafgrtr_el2: Option<u64>,
}

/// The fine-grained trap registers of FEAT_FGT2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FineGrainedTraps2 {
    pub hfgrtr2_el2: u64,
    pub hfgwtr2_el2: u64,
    pub hfgitr2_el2: u64,
    pub hdfgrtr2_el2: u64,
    pub hdfgwtr2_el2: u64,
}

/// The MPAM trap controls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MpamTraps {
    pub mpam2_el2: u64,
    /// MPAMHCR_EL2, where MPAMIDR_EL1.HAS_HCR says it exists.
    pub mpamhcr_el2: Option<u64>,
}

/// Every EL2 control register a guest's view depends on, whole. `None`: the
/// register does not exist on this system and is not written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct El2Controls {
    pub hcr_el2: u64,
    pub hcrx_el2: Option<u64>,
    pub cptr_el2: u64,
    pub mdcr_el2: u64,
    pub cnthctl_el2: u64,
    pub hstr_el2: u64,
    pub fgt: Option<FineGrainedTraps>,
    pub fgt2: Option<FineGrainedTraps2>,
    pub mpam: Option<MpamTraps>,
    /// At boot only: the profiling and trace units to stop first, in case an
    /// earlier boot stage left one writing to memory.
    pub stop_buffers: Option<TraceBuffers>,
}

/// The profiling and trace units a core has, stopped at boot: with FEAT_SPE
/// PMSCR_EL2 = 0 (no EL2 sampling) and PMBLIMITR_EL1 = 0 (buffer disabled); with
/// FEAT_TRF TRFCR_EL2 = 0 (no EL2 trace); with FEAT_TRBE TRBLIMITR_EL1 = 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TraceBuffers {
    pub spe: bool,
    pub trf: bool,
    pub trbe: bool,
}

/// Derives a VM's controls.
pub fn el2_controls(features: &HostFeatures, traps: SysRegTraps) -> El2Controls {
    El2Controls {
        hcr_el2: hcr_el2(features, traps),
        hcrx_el2: features.hcx.then(|| hcrx_el2(features)),
        cptr_el2: cptr_el2(features),
        mdcr_el2: mdcr_el2(features),
        cnthctl_el2: cnthctl_el2(),
        // HSTR_EL2.T<n> trap AArch32 CP15 accesses; EL1 is AArch64 (RW = 1)
        // and the CPU model shows EL0 AArch64-only: nothing to trap there.
        hstr_el2: 0,
        fgt: features.fgt.then(|| FineGrainedTraps {
            hfgrtr_el2: hfgrtr_el2(features),
            hfgwtr_el2: hfgwtr_el2(features),
            hfgitr_el2: hfgitr_el2(features),
            hdfgrtr_el2: hdfgrtr_el2(features),
            hdfgwtr_el2: hdfgwtr_el2(features),
            hafgrtr_el2: features.amu.then(hafgrtr_el2),
        }),
        fgt2: features.fgt2.then(|| fgt2(features)),
        mpam: features.mpam.then(|| mpam(features)),
        stop_buffers: None,
    }
}

/// The controls one core writes at boot, before any VM exists, from its own
/// features: HCR_EL2 as the boot code set it ([`HCR_EL2_BOOT`]), every trap
/// register as a VM will have it (so nothing the firmware enabled survives, and
/// a register only this core has is still set), and the profiling and trace
/// buffers stopped.
pub fn boot_controls(features: &HostFeatures) -> El2Controls {
    El2Controls {
        hcr_el2: HCR_EL2_BOOT,
        stop_buffers: Some(TraceBuffers {
            spe: features.spe,
            trf: features.trf,
            trbe: features.trbe,
        }),
        ..el2_controls(features, SysRegTraps::Minimal)
    }
}

/// HCR_EL2 (Arm ARM, HCR_EL2), bit by bit. Set:
/// - VM (0): stage-2 translation on. RW (31): EL1 is AArch64.
/// - SWIO (1): set/way invalidate behaves as clean+invalidate (RES1 on most
///   parts); an invalidate must never drop data the guest does not own.
/// - FMO, IMO, AMO (3, 4, 5): physical FIQ/IRQ/SError go to EL2, virtual ones to
///   the guest.
/// - FB (9) + BSU = Inner Shareable (11:10): a guest's local TLB/I-cache
///   maintenance and barriers reach every CPU its vCPUs may run on (as KVM/arm64).
/// - TWI (13): WFI traps, so an idle vCPU gives up its CPU.
/// - TSC (19): SMC traps, so PSCI via SMC is emulated and no guest reaches firmware.
/// - TIDCP (20): IMPLEMENTATION DEFINED registers trap (UNDEFINED to guests):
///   they may reach CPU-wide state no guest may touch.
/// - TACR (21): ACTLR_EL1 traps for the same reason.
/// - TLOR (35, FEAT_LOR): LORegion registers trap; FEAT_LOR is hidden.
/// - TERR (36, FEAT_RAS): error record registers trap; RAS is hidden.
/// - TID5 (58, FEAT_MTE2): GMID_EL1 traps; MTE is hidden.
/// - With the CPU model: TID1 (16, REVIDR/AIDR), TID3 (18, the ID space), TSW
///   (22, set/way), and TID4 (49, FEAT_EVT) or else TID2 (17) for the cache ID
///   registers.
///
/// Clear, and why:
/// - PTW (2), DC (12), TPCP (23), TPU (24), TTLB (25), TRVM (30), CD (32), ID (33),
///   TDZ (28), TICAB (50), TOCU (52), TTLBIS (54), TTLBOS (55): the guest's own
///   memory system operations are its own business; stage 2 confines them.
/// - VF, VI, VSE (6, 7, 8): no virtual FIQ/IRQ/SError pending at load (the vGIC
///   uses list registers; VSE is set by [`virtual_serror`] when one is due).
/// - TWE (14): WFE does not trap: spin-lock waits would pay an exit each.
/// - TID0 (15): traps only AArch32 JIDR.
/// - TVM (26): set at run time while set/way tracking needs it (`sysreg::setway`).
/// - TGE (27), E2H (34), NV, NV1, NV2, AT (42..45): no host-at-EL0 regime and no
///   nested virtualization.
/// - HCD (29): HVC stays enabled; it is how the guest calls PSCI.
/// - TEA (37): a synchronous external abort from a guest access goes to the guest,
///   as on bare hardware; passthrough devices may raise them.
/// - APK, API (40, 41): clear *traps* the pointer-authentication keys and
///   instructions; the CPU model hides PAuth (its keys would have to be switched).
/// - FWB (46): stage 2 does not force write-back (the stage-2 attributes assume so).
/// - FIEN (47): clear traps the RAS fault-injection registers.
/// - GPF (48): no granule protection (RME) faults to route.
/// - AMVOFFEN (51): no virtual offsets for the AMU, which is hidden.
/// - EnSCXT (53): clear traps SCXTNUM_EL0/EL1; the CPU model shows CSV2 <= 1.
/// - ATA (56): clear traps the allocation-tag registers; MTE is hidden.
/// - DCT (57), TWEDEn (59), TWEDEL (63:60): no MTE, no WFE delay.
pub fn hcr_el2(features: &HostFeatures, traps: SysRegTraps) -> u64 {
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
        + HCR_EL2::TACR::SET;
    if features.lor {
        hcr += HCR_EL2::TLOR::SET;
    }
    if features.ras {
        hcr += HCR_EL2::TERR::SET;
    }
    if features.mte {
        hcr += HCR_EL2::TID5::SET;
    }
    if let SysRegTraps::CpuModel { cache } = traps {
        hcr += HCR_EL2::TID3::SET + HCR_EL2::TID1::SET + HCR_EL2::TSW::SET;
        hcr += match cache {
            crate::sysreg::CacheTrap::Tid4 if features.evt => HCR_EL2::TID4::SET,
            _ => HCR_EL2::TID2::SET,
        };
    }
    let mut reg = LocalRegisterCopy::<u64, HCR_EL2::Register>::new(0);
    reg.modify(hcr);
    reg.get()
}

/// HCRX_EL2 (FEAT_HCX; Arm ARM, HCRX_EL2). Every control is an *enable* of a
/// feature at EL1/EL0 except TALLINT, so:
/// - TALLINT (6, FEAT_NMI) = 1: MSR ALLINT traps; FEAT_NMI is hidden.
/// - 0 for everything else, and why each is safe: EnAS0/EnALS/EnASR (0..2):
///   LD64B/ST64B* UNDEFINED (LS64 hidden); FnXS (3), FGTnXS (4): the XS
///   attribute is honoured and FGT traps cover the nXS TLBIs; SMPME (5): no SME
///   priority mapping (SME hidden); VINMI/VFNMI (7, 8): no virtual NMI; CMOW (9):
///   Armv8.0 cache-maintenance permissions; MCE2 (10): MOPS exceptions stay at
///   EL1; MSCEn (11): CPY*/SET* UNDEFINED (MOPS hidden); TCR2En (14): TCR2_EL1
///   traps and has no effect (FEAT_TCR2 hidden); SCTLR2En (15): likewise
///   SCTLR2_EL1; PTTWI (16): no incoherent table walks; D128En (17): no 128-bit
///   tables; EnSNERR/EnSDERR (18, 20): no error-on-... extensions; TMEA (19):
///   masked external aborts stay the guest's; EnIDCP128 (21): 128-bit IMPDEF
///   registers trap; GCSEn (22): GCS disabled (FEAT_GCS hidden); EnFPM (23):
///   FPMR UNDEFINED (FP8 hidden); PACMEn (24) and the later enables (25..39):
///   their features are hidden or need nested virtualization.
pub fn hcrx_el2(features: &HostFeatures) -> u64 {
    let mut reg = LocalRegisterCopy::<u64, HCRX_EL2::Register>::new(0);
    if features.nmi {
        reg.modify(HCRX_EL2::TALLINT::SET);
    }
    reg.get()
}

/// CPTR_EL2 with E2H = 0 (Arm ARM, CPTR_EL2):
/// - RES1 bits 13, 9, 7:0 set; TZ (8) = 1 and TSM (12) = 1: SVE and SME trap;
///   both read as RES1 where the feature is absent, so they are always set. SME
///   is UNDEFINED to guests; so is SVE in a VM without it. In a VM with SVE, the
///   run loop drops TZ for the vCPU that owns the registers (lazy switching,
///   `Pcpu::take_fp`).
/// - TFP (10) = 0 here: FP/SIMD is the guest's (the hypervisor is built soft-float
///   and never uses it). The run loop sets it per vCPU while the FP/SIMD registers
///   in the hardware are not that vCPU's (lazy switching, `Pcpu::take_fp`).
/// - TTA (20) = 1: trace System registers trap (no trace unit is offered).
/// - TAM (30, FEAT_AMUv1) = 1: the activity monitors trap (hidden).
/// - TCPAC (31) = 1 where a core has SVE or SME: CPACR_EL1 traps and is emulated
///   (`VmCpuModel::cpacr_el1_hw`), so the hardware's ZEN/SMEN stay enabled and a
///   hidden SVE/SME access is UNDEFINED rather than an SVE/SME access trap at the
///   guest's own EL1. Without either, 0: CPACR_EL1 is the guest's own.
pub fn cptr_el2(features: &HostFeatures) -> u64 {
    let mut cptr = LocalRegisterCopy::<u64, CPTR_EL2::Register>::new(CPTR_EL2_RES1);
    cptr.modify(CPTR_EL2::TZ::SET + CPTR_EL2::TSM::SET + CPTR_EL2::TTA::SET);
    if features.amu {
        cptr.modify(CPTR_EL2::TAM::SET);
    }
    if features.sve || features.sme {
        cptr.modify(CPTR_EL2::TCPAC::SET);
    }
    cptr.get()
}

/// MDCR_EL2 with E2H = 0 (Arm ARM, MDCR_EL2), written whole — never OR-ed onto the
/// firmware's value, which might route the guest's debug exceptions to EL2 (TDE)
/// or leave counters counting at EL2.
/// - HPMN (4:0) = the guest's event counters when it has a PMU
///   ([`mdcr_el2_for`]; `[vm.cpu] pmu_counters`, at most PMCR_EL0.N), else
///   PMCR_EL0.N: counters below HPMN are the guest's, the rest stay EL2's (the
///   hypervisor counts nothing with them: HPME = 0). A value above N is
///   CONSTRAINED UNPREDICTABLE and 0 needs FEAT_HPMN0, so it is never 0.
///   0 (RES0) without a PMUv3.
/// - TPMCR (5), TPM (6) = 1 (PMUv3): every PMU register traps. Without a guest
///   PMU it is hidden (UNDEFINED); with one, every access is emulated against
///   the hardware by `sysreg::pmu`. Trapping all of them rather than giving
///   the guest direct access to counters below HPMN is what the architecture
///   makes safe on every PMU version: a guest that wrote PMEVTYPER<n>_EL0 or
///   PMCCFILTR_EL0 directly could set NSH and count EL2, the hypervisor's own
///   work (Arm ARM D13.5, "Filtering by Exception level"); HPMD (PMUv3p1) and
///   HCCD (PMUv3p5) forbid that only on newer PMUs, and FEAT_FGT's finer traps
///   (HDFGWTR_EL2.PMEVTYPERn_EL0, PMCCFILTR_EL0) are absent on a Cortex-A57.
/// - HPME (7) = 0: no EL2 counters to enable.
/// - TDE (8), TDA (9), TDOSA (10), TDRA (11) = 0: self-hosted debug is the guest's
///   (one vCPU per physical CPU); its debug exceptions are taken at its EL1.
/// - E2PB (13:12) = 0b00 (FEAT_SPE): the profiling buffer belongs to EL2 and its
///   EL1 controls trap. TPMS (14) = 1 (FEAT_SPE): the sampling controls trap.
/// - EnSPM (15) = 0: System PMU registers trap.
/// - HPMD (17) = 1 (PMUv3p1): no event counting at EL2; HCCD (23) = 1 (PMUv3p5):
///   no cycle counting at EL2 — the hypervisor never shows up in a count.
/// - TTRF (19) = 1 (FEAT_TRF): TRFCR_EL1 traps (trace hidden).
/// - E2TB (25:24) = 0b00 (FEAT_TRBE): the trace buffer belongs to EL2 and its
///   EL1 controls trap.
/// - HLP (26), MTPME (28), HPMFZO (29), PMSSE (31:30), HPMFZS (36), PMEE (41:40)
///   = 0: no PMU behaviour to change for a PMU nobody uses.
/// - TDCC (27) = 0: the debug communications channel is part of the guest's
///   self-hosted debug.
/// - EBWE (43), EnSTEPOP (50) = 0: no extended breakpoints, MDSTEPOP_EL1 traps.
pub fn mdcr_el2(features: &HostFeatures) -> u64 {
    mdcr_el2_for(features, None)
}

/// [`mdcr_el2`] for a VM whose guest has a PMU with `guest_counters` event
/// counters (`None`: no guest PMU).
pub fn mdcr_el2_for(features: &HostFeatures, guest_counters: Option<u8>) -> u64 {
    let mut mdcr = LocalRegisterCopy::<u64, MDCR_EL2::Register>::new(0);
    if features.pmu() {
        let hpmn = match guest_counters {
            Some(n) if n >= 1 => n.min(features.pmu_counters),
            _ => features.pmu_counters,
        };
        mdcr.modify(
            MDCR_EL2::HPMN.val(hpmn as u64 & 0x1f) + MDCR_EL2::TPM::SET + MDCR_EL2::TPMCR::SET,
        );
        // ID_AA64DFR0_EL1.PMUVer: 4 = PMUv3p1, 6 = PMUv3p5.
        if features.pmu_version >= 4 {
            mdcr.modify(MDCR_EL2::HPMD::SET);
        }
        if features.pmu_version >= 6 {
            mdcr.modify(MDCR_EL2::HCCD::SET);
        }
    }
    if features.spe {
        mdcr.modify(MDCR_EL2::TPMS::SET);
    }
    if features.trf {
        mdcr.modify(MDCR_EL2::TTRF::SET);
    }
    mdcr.get()
}

/// CNTHCTL_EL2 with E2H = 0 (Arm ARM, CNTHCTL_EL2):
/// - EL1PCTEN (0) = 1: the guest reads the physical counter (CNTPCT_EL0).
/// - EL1PCEN (1) = 1: the EL1 physical timer (CNTP_CTL/CVAL/TVAL_EL0) is the
///   guest's own, saved and restored with its vCPU and its PPI 30 hardware-linked
///   (src/timer); the hypervisor's own timer is the EL2 one (CNTHP), a separate
///   register set. With 0 every CNTP access traps and, unhandled, reads as
///   UNDEFINED while the device tree lists the timer's interrupt (issue 13, item 8).
/// - EVNTEN (2), EVNTDIR (3), EVNTI (7:4) = 0: no event stream from EL2's view.
/// - ECV (12) = 0: no CNTPOFF_EL2 offset on the guest's physical counter.
/// - EL1TVT, EL1TVCT (13, 14) = 0: the virtual timer and counter do not trap.
/// - EL1NVPCT, EL1NVVCT (15, 16) = 0: no nested virtualization.
/// - EVNTIS (17) = 0, CNTVMASK, CNTPMASK (18, 19) = 0: nothing masked.
pub fn cnthctl_el2() -> u64 {
    let mut cnthctl = LocalRegisterCopy::<u64, CNTHCTL_EL2::Register>::new(0);
    cnthctl.modify(CNTHCTL_EL2::EL1PCTEN::SET + CNTHCTL_EL2::EL1PCEN::SET);
    cnthctl.get()
}

/// HFGRTR_EL2 (FEAT_FGT; Arm ARM, HFGRTR_EL2): reads of EL1/EL0 registers.
/// Positive bits trap when 1, the `n` bits (50..63) trap when 0.
/// - The registers of hidden features trap (1), each only where the feature
///   exists (else the bit is RES0): APDAKey..APIBKey (4..8, FEAT_PAuth),
///   LORC..LORSA_EL1 (19..23, FEAT_LOR), SCXTNUM_EL1/EL0 (30, 31), ERRIDR..ERXADDR
///   (40..49, FEAT_RAS).
/// - Every `n` bit is 0, so its register traps: nACCDATA_EL1 (LS64), nGCS_EL0/EL1
///   (GCS), nSMPRI_EL1 and nTPIDR2_EL0 (SME), nRCWMASK_EL1 (THE), nPIRE0/nPIR_EL1
///   (S1PIE), nPOR_EL0/EL1 (S1POE), nS2POR_EL1 (S2POE), nMAIR2/nAMAIR2_EL1 (AIE):
///   all hidden. Where a feature is absent its `n` bit is RES0, which is 0 too.
/// - Everything else (0): the guest's own EL1 state, or already trapped by a
///   coarse control (TID1..TID4, TVM, TACR).
pub fn hfgrtr_el2(f: &HostFeatures) -> u64 {
    use HFGRTR_EL2 as R;
    let mut reg = LocalRegisterCopy::<u64, R::Register>::new(0);
    if f.pauth {
        reg.modify(
            R::APDAKey::SET + R::APDBKey::SET + R::APGAKey::SET + R::APIAKey::SET + R::APIBKey::SET,
        );
    }
    if f.lor {
        reg.modify(
            R::LORC_EL1::SET
                + R::LOREA_EL1::SET
                + R::LORID_EL1::SET
                + R::LORN_EL1::SET
                + R::LORSA_EL1::SET,
        );
    }
    if f.scxtnum {
        reg.modify(R::SCXTNUM_EL0::SET + R::SCXTNUM_EL1::SET);
    }
    if f.ras {
        reg.modify(
            R::ERRIDR_EL1::SET
                + R::ERRSELR_EL1::SET
                + R::ERXFR_EL1::SET
                + R::ERXCTLR_EL1::SET
                + R::ERXSTATUS_EL1::SET
                + R::ERXMISCn_EL1::SET
                + R::ERXPFGF_EL1::SET
                + R::ERXPFGCTL_EL1::SET
                + R::ERXPFGCDN_EL1::SET
                + R::ERXADDR_EL1::SET,
        );
    }
    reg.get()
}

/// HFGWTR_EL2 (FEAT_FGT): writes, the same choices as [`hfgrtr_el2`] for the
/// registers that can be written (no AIDR, ID or status-only registers).
pub fn hfgwtr_el2(f: &HostFeatures) -> u64 {
    use HFGWTR_EL2 as W;
    let mut reg = LocalRegisterCopy::<u64, W::Register>::new(0);
    if f.pauth {
        reg.modify(
            W::APDAKey::SET + W::APDBKey::SET + W::APGAKey::SET + W::APIAKey::SET + W::APIBKey::SET,
        );
    }
    if f.lor {
        reg.modify(W::LORC_EL1::SET + W::LOREA_EL1::SET + W::LORN_EL1::SET + W::LORSA_EL1::SET);
    }
    if f.scxtnum {
        reg.modify(W::SCXTNUM_EL0::SET + W::SCXTNUM_EL1::SET);
    }
    if f.ras {
        reg.modify(
            W::ERRSELR_EL1::SET
                + W::ERXCTLR_EL1::SET
                + W::ERXSTATUS_EL1::SET
                + W::ERXMISCn_EL1::SET
                + W::ERXPFGCTL_EL1::SET
                + W::ERXPFGCDN_EL1::SET
                + W::ERXADDR_EL1::SET,
        );
    }
    reg.get()
}

/// HFGITR_EL2 (FEAT_FGT): instructions. 0 throughout:
/// - Cache, TLB and address-translation instructions (0..47), DC CVAC (54), the
///   prediction restrictions CFP/DVP/CPP/COSP RCTX (48..50, 60; FEAT_SPECRES,
///   shown to the guest), SVC (52, 53) and ERET (51): the guest's own; set/way
///   is trapped by HCR_EL2.TSW.
/// - nBRBINJ, nBRBIALL (55, 56; BRBE) and nGCSPUSHM_EL1, nGCSSTR_EL1, nGCSEPP
///   (57..59; GCS): `n` bits, 0 traps them — both features are hidden.
/// - ATS1E1A (62) and PSBCSYNC (63): 0; AT S1E1A is an address translation like
///   the others, and PSB CSYNC only synchronizes a profiler the guest cannot
///   enable (its controls trap).
pub fn hfgitr_el2(_: &HostFeatures) -> u64 {
    LocalRegisterCopy::<u64, HFGITR_EL2::Register>::new(0).get()
}

/// HDFGRTR_EL2 (FEAT_FGT): reads of debug, PMU, profiling and trace registers.
/// - Self-hosted debug (DBG*, MDSCR, OSLSR, OSECCR, OSDLR, DBGPRCR, DBGCLAIM,
///   DBGAUTHSTATUS: 0..11) = 0: the guest's own.
/// - PMU (12..19, PMMIR_EL1 22, PMUSERENR 57, PMCEIDn 58) = 1 where there is a
///   PMUv3 (PMMIR with PMUv3p4): hidden, as MDCR_EL2.TPM already says.
/// - SPE (PMBLIMITR..PMSLATFR 23..32, PMBIDR_EL1 63) = 1 with FEAT_SPE;
///   nPMSNEVFR_EL1 (62) = 0 traps.
/// - Trace unit (TRC* 33..48) = 1 with a trace unit; trace buffer (TRB* 50..56)
///   = 1 with FEAT_TRBE.
/// - nBRBIDR, nBRBCTL, nBRBDATA (59..61) = 0: branch records trap (BRBE hidden).
pub fn hdfgrtr_el2(f: &HostFeatures) -> u64 {
    use HDFGRTR_EL2 as R;
    let mut reg = LocalRegisterCopy::<u64, R::Register>::new(0);
    if f.pmu() {
        reg.modify(
            R::PMEVCNTRn_EL0::SET
                + R::PMEVTYPERn_EL0::SET
                + R::PMCCFILTR_EL0::SET
                + R::PMCCNTR_EL0::SET
                + R::PMCNTEN::SET
                + R::PMINTEN::SET
                + R::PMOVS::SET
                + R::PMSELR_EL0::SET
                + R::PMUSERENR_EL0::SET
                + R::PMCEIDn_EL0::SET,
        );
        if f.pmu_version >= 5 {
            reg.modify(R::PMMIR_EL1::SET);
        }
    }
    if f.spe {
        reg.modify(
            R::PMBLIMITR_EL1::SET
                + R::PMBPTR_EL1::SET
                + R::PMBSR_EL1::SET
                + R::PMSCR_EL1::SET
                + R::PMSEVFR_EL1::SET
                + R::PMSFCR_EL1::SET
                + R::PMSICR_EL1::SET
                + R::PMSIDR_EL1::SET
                + R::PMSIRR_EL1::SET
                + R::PMSLATFR_EL1::SET
                + R::PMBIDR_EL1::SET,
        );
    }
    if f.trace {
        reg.modify(
            R::TRC::SET
                + R::TRCAUTHSTATUS::SET
                + R::TRCAUXCTLR::SET
                + R::TRCCLAIM::SET
                + R::TRCCNTVRn::SET
                + R::TRCID::SET
                + R::TRCIMSPECn::SET
                + R::TRCOSLSR::SET
                + R::TRCPRGCTLR::SET
                + R::TRCSEQSTR::SET
                + R::TRCSSCSRn::SET
                + R::TRCSTATR::SET
                + R::TRCVICTLR::SET,
        );
    }
    if f.trbe {
        reg.modify(
            R::TRBBASER_EL1::SET
                + R::TRBIDR_EL1::SET
                + R::TRBLIMITR_EL1::SET
                + R::TRBMAR_EL1::SET
                + R::TRBPTR_EL1::SET
                + R::TRBSR_EL1::SET
                + R::TRBTRG_EL1::SET,
        );
    }
    reg.get()
}

/// HDFGWTR_EL2 (FEAT_FGT): writes, the same choices as [`hdfgrtr_el2`], plus
/// PMSWINC_EL0 and PMCR_EL0 (20, 21; PMU) and TRFCR_EL1 (49, FEAT_TRF) = 1, and
/// OSLAR_EL1 (8) = 0 (self-hosted debug).
pub fn hdfgwtr_el2(f: &HostFeatures) -> u64 {
    use HDFGWTR_EL2 as W;
    let mut reg = LocalRegisterCopy::<u64, W::Register>::new(0);
    if f.pmu() {
        reg.modify(
            W::PMEVCNTRn_EL0::SET
                + W::PMEVTYPERn_EL0::SET
                + W::PMCCFILTR_EL0::SET
                + W::PMCCNTR_EL0::SET
                + W::PMCNTEN::SET
                + W::PMINTEN::SET
                + W::PMOVS::SET
                + W::PMSELR_EL0::SET
                + W::PMSWINC_EL0::SET
                + W::PMCR_EL0::SET
                + W::PMUSERENR_EL0::SET,
        );
    }
    if f.spe {
        reg.modify(
            W::PMBLIMITR_EL1::SET
                + W::PMBPTR_EL1::SET
                + W::PMBSR_EL1::SET
                + W::PMSCR_EL1::SET
                + W::PMSEVFR_EL1::SET
                + W::PMSFCR_EL1::SET
                + W::PMSICR_EL1::SET
                + W::PMSIRR_EL1::SET
                + W::PMSLATFR_EL1::SET,
        );
    }
    if f.trace {
        reg.modify(
            W::TRC::SET
                + W::TRCAUXCTLR::SET
                + W::TRCCLAIM::SET
                + W::TRCCNTVRn::SET
                + W::TRCIMSPECn::SET
                + W::TRCOSLAR::SET
                + W::TRCPRGCTLR::SET
                + W::TRCSEQSTR::SET
                + W::TRCSSCSRn::SET
                + W::TRCVICTLR::SET,
        );
    }
    if f.trf {
        reg.modify(W::TRFCR_EL1::SET);
    }
    if f.trbe {
        reg.modify(
            W::TRBBASER_EL1::SET
                + W::TRBLIMITR_EL1::SET
                + W::TRBMAR_EL1::SET
                + W::TRBPTR_EL1::SET
                + W::TRBSR_EL1::SET
                + W::TRBTRG_EL1::SET,
        );
    }
    reg.get()
}

/// HAFGRTR_EL2 (FEAT_FGT with FEAT_AMUv1): every AMU register read traps —
/// AMCNTEN0 (0), AMEVCNTR0<n> (1..4), AMCNTEN1 (17), AMEVCNTR1<n> and
/// AMEVTYPER1<n> (18..49). The AMU is hidden; CPTR_EL2.TAM traps it as well.
pub fn hafgrtr_el2() -> u64 {
    use HAFGRTR_EL2 as A;
    let mut reg = LocalRegisterCopy::<u64, A::Register>::new(0);
    reg.modify(
        A::AMCNTEN0::SET
            + A::AMEVCNTR00_EL0::SET
            + A::AMEVCNTR01_EL0::SET
            + A::AMEVCNTR02_EL0::SET
            + A::AMEVCNTR03_EL0::SET
            + A::AMCNTEN1::SET,
    );
    // AMEVCNTR1<n>_EL0 and AMEVTYPER1<n>_EL0, n = 0..15: bits 18..=49, one pair
    // per counter (Arm ARM, HAFGRTR_EL2).
    let group1 = ((1u64 << 32) - 1) << A::AMEVCNTR10_EL0.shift;
    reg.get() | group1
}

/// The FEAT_FGT2 registers (Arm ARM, HFGRTR2_EL2, HFGWTR2_EL2, HFGITR2_EL2,
/// HDFGRTR2_EL2, HDFGWTR2_EL2). Almost all of their controls are `n` bits for
/// features newer than anything the CPU model offers (RASv2 ERXGSR, the SCTLR/TCR
/// mask and alias registers, PMU ICNTR/SS/ECR, SPMU, MDSELR, ...): 0 traps them.
/// Positive bits: TFSR_EL1, RGSR_EL1, GCR_EL1 (33..35) = 1 with MTE2 (hidden;
/// HCR_EL2.ATA traps them too); ACTLR_EL1 (39) = 0 (HCR_EL2.TACR traps it);
/// HFGITR2_EL2.TSBCSYNC (0) = 0 (a no-op without a trace buffer the guest owns),
/// DCGBVA (14) = 0.
pub fn fgt2(f: &HostFeatures) -> FineGrainedTraps2 {
    let mut tags = LocalRegisterCopy::<u64, HFGxTR2_EL2::Register>::new(0);
    if f.mte {
        tags.modify(
            HFGxTR2_EL2::TFSR_EL1::SET + HFGxTR2_EL2::RGSR_EL1::SET + HFGxTR2_EL2::GCR_EL1::SET,
        );
    }
    FineGrainedTraps2 {
        hfgrtr2_el2: tags.get(),
        hfgwtr2_el2: tags.get(),
        hfgitr2_el2: 0,
        hdfgrtr2_el2: 0,
        hdfgwtr2_el2: 0,
    }
}

/// MPAM (Arm ARM, MPAM2_EL2, MPAMHCR_EL2). MPAM is hidden:
/// - MPAM2_EL2: TRAPMPAM1EL1 (48) = TRAPMPAM0EL1 (49) = 1, MPAM1_EL1 and
///   MPAM0_EL1 trap; EnMPAMSM (50) = 0, MPAMSM_EL1 traps; PARTID/PMG = 0: EL2
///   itself runs in the default partition.
/// - MPAMIDR_EL1 traps: with MPAMHCR_EL2 by its TRAP_MPAMIDR_EL1 (31), with
///   EL0_VPMEN, EL1_VPMEN, GSTAPP_PLK = 0 (no virtual partition mapping); without
///   it by MPAM2_EL2.TIDR (58, MPAM v0.1/v1.1 — RES0 and harmless on v1.0, which
///   then has no way to trap it).
pub fn mpam(f: &HostFeatures) -> MpamTraps {
    let mut mpam2 = LocalRegisterCopy::<u64, MPAM2_EL2::Register>::new(0);
    mpam2.modify(MPAM2_EL2::TRAPMPAM1EL1::SET + MPAM2_EL2::TRAPMPAM0EL1::SET);
    let mpamhcr = f.mpam_hcr.then(|| {
        let mut hcr = LocalRegisterCopy::<u64, MPAMHCR_EL2::Register>::new(0);
        hcr.modify(MPAMHCR_EL2::TRAP_MPAMIDR_EL1::SET);
        hcr.get()
    });
    if mpamhcr.is_none() {
        mpam2.modify(MPAM2_EL2::TIDR::SET);
    }
    MpamTraps {
        mpam2_el2: mpam2.get(),
        mpamhcr_el2: mpamhcr,
    }
}

/// A virtual SError to make pending for the guest (HCR_EL2.VSE), and the
/// syndrome it reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VirtualSError {
    /// VSESR_EL2 (FEAT_RAS): the ESR_EL1.ISS the guest sees. `None` without
    /// FEAT_RAS, where VSESR_EL2 does not exist and the guest's ESR_EL1.ISS for
    /// a virtual SError is 0.
    pub vsesr_el2: Option<u64>,
    /// The physical error was uncontainable (ESR AET = UC): it may have
    /// corrupted state outside the guest. Worth an error-level log.
    pub uncontainable: bool,
}

/// ESR_ELx.ISS for an SError interrupt (Arm ARM, ESR_EL2, "ISS encoding for an
/// SError exception"): IDS (24), AET (12:10), EA (9), DFSC (5:0).
pub(crate) const SERROR_IDS: u64 = 1 << 24;
const SERROR_ISS_MASK: u64 = (1 << 25) - 1;
const SERROR_AET_SHIFT: u32 = 10;
const SERROR_AET_UC: u64 = 0b000;
const SERROR_DFSC_MASK: u64 = 0x3f;
/// DFSC "Asynchronous SError interrupt": AET is valid.
const SERROR_DFSC_ASYNC: u64 = 0b01_0001;

/// What the guest gets for a physical SError taken to EL2 while it ran
/// (ESR_EL2 = `esr_el2`, EC 0x2F): the same SError, as a virtual one. With
/// FEAT_RAS its syndrome is passed on (VSESR_EL2 takes the ISS: IDS, AET, EA,
/// DFSC); an IMPLEMENTATION DEFINED syndrome (IDS = 1) is passed on as IDS
/// alone, with nothing of the physical core's private encoding.
pub fn virtual_serror(esr_el2: u64, ras: bool) -> VirtualSError {
    let iss = esr_el2 & SERROR_ISS_MASK;
    let architected = iss & SERROR_IDS == 0;
    let uncontainable = ras
        && architected
        && iss & SERROR_DFSC_MASK == SERROR_DFSC_ASYNC
        && (iss >> SERROR_AET_SHIFT) & 0b111 == SERROR_AET_UC;
    VirtualSError {
        vsesr_el2: ras.then_some(if architected { iss } else { SERROR_IDS }),
        uncontainable,
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
mod tests;
