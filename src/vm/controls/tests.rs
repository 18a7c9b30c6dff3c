use super::*;
use crate::sysreg::CacheTrap;
use crate::sysreg::id::tests::{qemu_a57, qemu_max};

fn bit(v: u64, n: u32) -> bool {
    v & (1 << n) != 0
}

fn max() -> HostFeatures {
    HostFeatures::from_cpu(&qemu_max())
}

fn a57() -> HostFeatures {
    HostFeatures::from_cpu(&qemu_a57())
}

const MODEL: SysRegTraps = SysRegTraps::CpuModel {
    cache: CacheTrap::Tid4,
};

#[test]
fn features_of_qemu_max_and_cortex_a57() {
    let f = max();
    assert!(f.evt && f.fgt && f.hcx && f.sve && f.sme && f.pan && f.uao && f.ssbs && f.bti);
    assert!(!f.fgt2 && !f.mpam && !f.mte && !f.amu && !f.spe && !f.trbe && !f.trace);
    // RASv1p1, LORegions, pointer authentication (API), CSV2_3, NMI, PMUv3p5.
    assert!(f.ras && f.vsesr && f.lor && f.pauth && f.scxtnum && f.nmi);
    assert_eq!((f.pmu_version, f.pmu_counters, f.parange), (6, 6, 6));

    let f = a57();
    assert!(!f.evt && !f.fgt && !f.hcx && !f.sve && !f.ras && !f.lor && !f.pauth);
    assert!(!f.scxtnum && !f.nmi && !f.pan);
    assert_eq!((f.pmu_version, f.pmu_counters, f.parange), (1, 6, 4));
}

#[test]
fn scxtnum_follows_csv2_and_csv2_frac() {
    let mut cpu = qemu_a57();
    let pfr0 = cpu.id.get(PFR0).unwrap();
    // CSV2 = 1 alone: no SCXTNUM; with CSV2_frac = 2 (FEAT_CSV2_1p2): SCXTNUM.
    cpu.id.set(PFR0, pfr0 | 1 << 56);
    assert!(!HostFeatures::from_cpu(&cpu).scxtnum);
    cpu.id.set(PFR1, 2 << 32);
    assert!(HostFeatures::from_cpu(&cpu).scxtnum);
    cpu.id.set(PFR0, pfr0 | 2 << 56);
    cpu.id.set(PFR1, 0);
    assert!(HostFeatures::from_cpu(&cpu).scxtnum, "CSV2_2");
}

#[test]
fn hcr_for_a_guest() {
    let h = el2_controls(&max(), SysRegTraps::Minimal).hcr_el2;
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
        (2, "PTW"),
        (8, "VSE"),
        (14, "TWE"),
        (17, "TID2"),
        (18, "TID3"),
        (22, "TSW"),
        (26, "TVM"),
        (27, "TGE"),
        (29, "HCD"),
        (34, "E2H"),
        (37, "TEA"),
        (40, "APK"),
        (41, "API"),
        (42, "NV"),
        (46, "FWB"),
        (49, "TID4"),
        (53, "EnSCXT"),
        (56, "ATA"),
    ] {
        assert!(!bit(h, n), "{name} (bit {n}) must be clear in {h:#x}");
    }
    // The whole value, so a bit appearing unannounced fails here.
    assert_eq!(h, 0x18_8038_263b);
    // TLOR and TERR are RES0 without FEAT_LOR/FEAT_RAS: not set on a cortex-a57.
    let h57 = el2_controls(&a57(), SysRegTraps::Minimal).hcr_el2;
    assert!(!bit(h57, 35) && !bit(h57, 36), "{h57:#x}");
    assert_eq!(h57 & !(1 << 35 | 1 << 36), h & !(1 << 35 | 1 << 36));
    // TID5 traps GMID_EL1 where MTE2 exists.
    let mut f = max();
    f.mte = true;
    assert!(bit(el2_controls(&f, SysRegTraps::Minimal).hcr_el2, 58));
}

#[test]
fn cache_id_trap_follows_feat_evt() {
    let mut f = a57();
    let h = el2_controls(&f, MODEL).hcr_el2;
    assert!(
        bit(h, 17) && !bit(h, 49),
        "no FEAT_EVT: TID2 even if TID4 asked"
    );
    assert!(bit(h, 18) && bit(h, 22) && bit(h, 16), "TID3, TSW, TID1");
    f.evt = true;
    let h = el2_controls(&f, MODEL).hcr_el2;
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
fn hcrx_enables_nothing_and_traps_allint() {
    let c = el2_controls(&max(), MODEL);
    assert_eq!(c.hcrx_el2, Some(1 << 6), "TALLINT only");
    let mut f = max();
    f.nmi = false;
    assert_eq!(el2_controls(&f, MODEL).hcrx_el2, Some(0), "TALLINT is RES0");
    assert_eq!(el2_controls(&a57(), MODEL).hcrx_el2, None, "no FEAT_HCX");
}

#[test]
fn cptr_traps_sve_sme_trace_and_amu_not_fp() {
    let c = el2_controls(&max(), MODEL).cptr_el2;
    assert!(!bit(c, 10), "FP/SIMD not trapped");
    assert!(bit(c, 31), "CPACR_EL1 emulated where SVE/SME exist");
    assert!(
        !bit(el2_controls(&a57(), MODEL).cptr_el2, 31),
        "CPACR_EL1 the guest's"
    );
    assert!(bit(c, 8) && bit(c, 12), "SVE and SME trapped");
    assert!(bit(c, 20), "trace trapped");
    assert!(!bit(c, 30), "TAM is RES0 without an AMU");
    assert!(bit(c, 13) && bit(c, 9) && c & 0xff == 0xff, "RES1");
    let mut f = max();
    f.amu = true;
    assert!(bit(el2_controls(&f, MODEL).cptr_el2, 30), "AMU trapped");
}

#[test]
fn mdcr_is_whole_with_hpmn_from_pmcr_n() {
    // -cpu max: PMUv3p5 with 6 counters.
    let m = el2_controls(&max(), MODEL).mdcr_el2;
    assert_eq!(m & 0x1f, 6, "HPMN = PMCR_EL0.N");
    assert!(bit(m, 5) && bit(m, 6), "TPMCR, TPM");
    assert!(bit(m, 17) && bit(m, 23), "HPMD (PMUv3p1), HCCD (PMUv3p5)");
    // Self-hosted debug stays the guest's: no TDE/TDA/TDOSA/TDRA, whatever the
    // firmware had; no EL2 counters enabled; buffers owned by EL2 (E2PB = E2TB = 0).
    for (n, name) in [
        (7, "HPME"),
        (8, "TDE"),
        (9, "TDA"),
        (10, "TDOSA"),
        (11, "TDRA"),
        (12, "E2PB[0]"),
        (13, "E2PB[1]"),
        (24, "E2TB[0]"),
        (25, "E2TB[1]"),
        (27, "TDCC"),
    ] {
        assert!(!bit(m, n), "{name} must be clear in {m:#x}");
    }
    assert_eq!(m, 6 | 1 << 5 | 1 << 6 | 1 << 17 | 1 << 23);
    let mut many = max();
    many.pmu_counters = 31;
    assert_eq!(el2_controls(&many, MODEL).mdcr_el2 & 0x1f, 31);
    // cortex-a57: PMUv3 with 6 counters; no PMUv3p1.
    assert_eq!(el2_controls(&a57(), MODEL).mdcr_el2, 6 | 1 << 5 | 1 << 6);
    // No PMU at all: HPMN and the PMU traps are RES0.
    let mut f = a57();
    f.pmu_version = 0;
    f.pmu_counters = 0;
    assert_eq!(el2_controls(&f, MODEL).mdcr_el2, 0);
    // SPE and trace filtering trap their controls where they exist.
    f.spe = true;
    f.trf = true;
    assert_eq!(el2_controls(&f, MODEL).mdcr_el2, 1 << 14 | 1 << 19);
}

#[test]
fn cnthctl_gives_the_guest_the_counter_and_the_el1_physical_timer() {
    assert_eq!(
        el2_controls(&max(), MODEL).cnthctl_el2,
        0b11,
        "EL1PCTEN and EL1PCEN, nothing else"
    );
    assert_eq!(el2_controls(&max(), MODEL).hstr_el2, 0);
}

#[test]
fn fine_grained_traps_on_qemu_max() {
    let fgt = el2_controls(&max(), MODEL).fgt.expect("FEAT_FGT");
    let r = fgt.hfgrtr_el2;
    // PAuth keys 4..8, LOR 19..23, SCXTNUM 30..31, RAS 40..49.
    let pauth = 0b1_1111 << 4;
    let lor = 0b1_1111 << 19;
    let scxt = 0b11 << 30;
    let ras = 0b11_1111_1111 << 40;
    assert_eq!(r, pauth | lor | scxt | ras, "{r:#x}");
    // Every `n` bit (50..63) is 0: SME's TPIDR2_EL0/SMPRI_EL1, GCS, PIE, POE,
    // THE, LS64 ACCDATA, AIE trap.
    assert_eq!(r >> 50, 0);
    let w = fgt.hfgwtr_el2;
    // Writes: no LORID, ERRIDR, ERXFR, ERXPFGF (read-only registers).
    let ro = 1 << 21 | 1 << 40 | 1 << 42 | 1 << 46;
    assert_eq!(w, (pauth | lor | scxt | ras) & !ro, "{w:#x}");
    assert_eq!(fgt.hfgitr_el2, 0);
    // The PMU's registers trap (PMUv3p5: PMMIR_EL1 too); nothing of debug.
    let d = fgt.hdfgrtr_el2;
    let pmu_r = 0xff << 12 | 1 << 22 | 1 << 57 | 1 << 58;
    assert_eq!(d, pmu_r, "{d:#x}");
    assert_eq!(d & 0xfff, 0, "self-hosted debug is the guest's");
    let pmu_w = 0xff << 12 | 1 << 20 | 1 << 21 | 1 << 57;
    assert_eq!(fgt.hdfgwtr_el2, pmu_w);
    assert_eq!(fgt.hafgrtr_el2, None, "no AMU");
    // No FEAT_FGT2, no MPAM on -cpu max.
    let c = el2_controls(&max(), MODEL);
    assert_eq!((c.fgt2, c.mpam), (None, None));
    // cortex-a57 has no FEAT_FGT.
    assert_eq!(el2_controls(&a57(), MODEL).fgt, None);
}

#[test]
fn fine_grained_traps_of_spe_trace_amu_and_fgt2() {
    let mut f = max();
    f.spe = true;
    f.trace = true;
    f.trbe = true;
    f.trf = true;
    f.amu = true;
    f.fgt2 = true;
    f.mte = true;
    let c = el2_controls(&f, MODEL);
    let fgt = c.fgt.unwrap();
    let d = fgt.hdfgrtr_el2;
    assert!((23..=33).all(|n| bit(d, n)) && bit(d, 63), "SPE: {d:#x}");
    assert!(
        !bit(d, 62) && !bit(d, 59),
        "nPMSNEVFR, nBRBIDR trap by being 0"
    );
    assert!(bit(d, 33) && bit(d, 40) && bit(d, 48), "trace unit");
    assert!((50..=56).all(|n| bit(d, n)), "trace buffer");
    assert!(bit(fgt.hdfgwtr_el2, 49), "TRFCR_EL1");
    assert!(!bit(fgt.hdfgwtr_el2, 8), "OSLAR_EL1 is the guest's");
    // Every AMU read traps: AMCNTEN0, AMEVCNTR0<0..3>, AMCNTEN1 and group 1.
    assert_eq!(fgt.hafgrtr_el2, Some(0x3_ffff_fffe_001f));
    let fgt2 = c.fgt2.unwrap();
    assert_eq!(fgt2.hfgrtr2_el2, 0b111 << 33, "MTE2 tag registers");
    assert_eq!(fgt2.hfgwtr2_el2, 0b111 << 33);
    assert_eq!(
        (fgt2.hfgitr2_el2, fgt2.hdfgrtr2_el2, fgt2.hdfgwtr2_el2),
        (0, 0, 0)
    );
}

#[test]
fn mpam_traps_its_registers() {
    let mut f = max();
    f.mpam = true;
    let m = el2_controls(&f, MODEL).mpam.unwrap();
    assert_eq!(
        m.mpam2_el2,
        1 << 48 | 1 << 49 | 1 << 58,
        "TRAPMPAM1/0EL1, TIDR"
    );
    assert_eq!(m.mpamhcr_el2, None);
    f.mpam_hcr = true;
    let m = el2_controls(&f, MODEL).mpam.unwrap();
    assert_eq!(m.mpam2_el2, 1 << 48 | 1 << 49);
    assert_eq!(m.mpamhcr_el2, Some(1 << 31), "TRAP_MPAMIDR_EL1 only");
    // MPAMHCR_EL2 exists only where MPAMIDR_EL1.HAS_HCR says so.
    let mut cpu = qemu_max();
    cpu.id.set(PFR0, cpu.id.get(PFR0).unwrap() | 1 << 40);
    cpu.mpamidr_el1 = 1 << 17;
    let f = HostFeatures::from_cpu(&cpu);
    assert!(f.mpam && f.mpam_hcr);
}

#[test]
fn boot_controls_keep_the_boot_hcr_and_stop_the_buffers() {
    let mut f = max();
    f.spe = true;
    let b = boot_controls(&f);
    assert_eq!(b.hcr_el2, HCR_EL2_BOOT);
    assert_eq!(
        b.stop_buffers,
        Some(TraceBuffers {
            spe: true,
            trf: false,
            trbe: false
        })
    );
    let vm = el2_controls(&f, SysRegTraps::Minimal);
    assert_eq!(vm.stop_buffers, None);
    // Every trap register as a VM has it.
    assert_eq!(
        (b.hcrx_el2, b.cptr_el2, b.mdcr_el2, b.fgt),
        (vm.hcrx_el2, vm.cptr_el2, vm.mdcr_el2, vm.fgt)
    );
}

#[test]
fn system_features_and_every_core_or_any_core() {
    let mut big = qemu_max();
    big.pmu_counters = 20;
    let sys = HostFeatures::system(&[big, qemu_a57()]).unwrap();
    // Registers only cortex-a57 lacks are not written anywhere...
    assert!(!sys.fgt && !sys.hcx && !sys.evt && !sys.vsesr);
    // ...but a hidden feature either core has is trapped.
    assert!(sys.ras && sys.lor && sys.pauth && sys.scxtnum && sys.nmi);
    // HPMN fits the core with fewer counters; the counting prohibitions follow
    // the newer PMU.
    assert_eq!((sys.pmu_counters, sys.pmu_version), (6, 6));
    assert_eq!(sys.parange, 4);
    assert_eq!(HostFeatures::system(&[qemu_max()]), Some(max()));
    assert_eq!(HostFeatures::system(&[]), None);
    // A core without a PMU does not lower HPMN for the others.
    let mut no_pmu = qemu_a57();
    no_pmu.id.set(DFR0, 0x1030_5006);
    let sys = HostFeatures::system(&[big, no_pmu]).unwrap();
    assert_eq!(sys.pmu_counters, 20);
}

#[test]
fn virtual_serror_carries_the_syndrome_where_ras_allows() {
    // EC 0x2F (SError), IL, ISS: AET = UEO (0b010), DFSC = asynchronous SError.
    let esr = 0x2f << 26 | 1 << 25 | 0b010 << 10 | 0x11;
    assert_eq!(
        virtual_serror(esr, true),
        VirtualSError {
            vsesr_el2: Some(0b010 << 10 | 0x11),
            uncontainable: false
        }
    );
    // Uncontainable (AET = UC): delivered, and flagged.
    let uc = 0x2f << 26 | 1 << 25 | 0x11;
    assert!(virtual_serror(uc, true).uncontainable);
    // An IMPLEMENTATION DEFINED syndrome is passed on as IDS alone.
    let impdef = 0x2f << 26 | 1 << 25 | 1 << 24 | 0xab_cdef;
    assert_eq!(virtual_serror(impdef, true).vsesr_el2, Some(1 << 24));
    assert!(!virtual_serror(impdef, true).uncontainable);
    // Without FEAT_RAS there is no VSESR_EL2 and no AET to read.
    assert_eq!(
        virtual_serror(uc, false),
        VirtualSError {
            vsesr_el2: None,
            uncontainable: false
        }
    );
}

#[test]
fn vmpidr_layout() {
    assert_eq!(vmpidr(0), 0x8000_0000);
    assert_eq!(vmpidr(3), 0x8000_0003);
    assert_eq!(vmpidr(17), 0x8000_0101);
}

#[test]
fn a_guest_pmu_sets_hpmn_to_its_counters_and_keeps_the_traps() {
    // -cpu max: PMUv3p5, N = 6. A guest with 4 counters: HPMN = 4, TPM,
    // TPMCR, HPMD, HCCD.
    let m = mdcr_el2_for(&max(), Some(4));
    assert_eq!(m & 0x1f, 4);
    assert!(bit(m, 5) && bit(m, 6) && bit(m, 17) && bit(m, 23));
    assert!(!bit(m, 7), "HPME: EL2's counters stay off");
    // Never above N, never 0.
    assert_eq!(mdcr_el2_for(&max(), Some(9)) & 0x1f, 6);
    assert_eq!(mdcr_el2_for(&max(), Some(0)) & 0x1f, 6);
    assert_eq!(mdcr_el2_for(&max(), None), mdcr_el2(&max()));
    // Cortex-A57 (PMUv3): no HPMD or HCCD to set; the traps do the work.
    assert_eq!(mdcr_el2_for(&a57(), Some(2)), 2 | 1 << 5 | 1 << 6);
}
