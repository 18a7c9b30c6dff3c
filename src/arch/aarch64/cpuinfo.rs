//! Reading what a physical CPU is: its ID registers and cache description,
//! for the CPU model (`sysreg::SystemCpuInfo`). Runs on each CPU at boot.

use core::arch::asm;

use crate::sysreg::{HostCpu, IdRegs, SysReg};

use super::regs;

/// Reads one register of the ID space (op0 = 3, op1 = 0, CRn = 0,
/// CRm = 1..7): the Arm ARM reserves its unallocated encodings as RAZ, so every
/// encoding can be read.
fn read_id_space(crm: u8, op2: u8) -> u64 {
    macro_rules! rd {
        ($name:literal) => {{
            let v: u64;
            // SAFETY: an MRS of the ID space has no side effects and is
            // permitted at EL2 (unallocated encodings read as zero).
            unsafe { asm!(concat!("mrs {}, ", $name), out(reg) v, options(nomem, nostack, preserves_flags)) };
            v
        }};
    }
    match (crm, op2) {
        (1, 0) => rd!("S3_0_C0_C1_0"),
        (1, 1) => rd!("S3_0_C0_C1_1"),
        (1, 2) => rd!("S3_0_C0_C1_2"),
        (1, 3) => rd!("S3_0_C0_C1_3"),
        (1, 4) => rd!("S3_0_C0_C1_4"),
        (1, 5) => rd!("S3_0_C0_C1_5"),
        (1, 6) => rd!("S3_0_C0_C1_6"),
        (1, 7) => rd!("S3_0_C0_C1_7"),
        (2, 0) => rd!("S3_0_C0_C2_0"),
        (2, 1) => rd!("S3_0_C0_C2_1"),
        (2, 2) => rd!("S3_0_C0_C2_2"),
        (2, 3) => rd!("S3_0_C0_C2_3"),
        (2, 4) => rd!("S3_0_C0_C2_4"),
        (2, 5) => rd!("S3_0_C0_C2_5"),
        (2, 6) => rd!("S3_0_C0_C2_6"),
        (2, 7) => rd!("S3_0_C0_C2_7"),
        (3, 0) => rd!("S3_0_C0_C3_0"),
        (3, 1) => rd!("S3_0_C0_C3_1"),
        (3, 2) => rd!("S3_0_C0_C3_2"),
        (3, 3) => rd!("S3_0_C0_C3_3"),
        (3, 4) => rd!("S3_0_C0_C3_4"),
        (3, 5) => rd!("S3_0_C0_C3_5"),
        (3, 6) => rd!("S3_0_C0_C3_6"),
        (3, 7) => rd!("S3_0_C0_C3_7"),
        (4, 0) => rd!("S3_0_C0_C4_0"),
        (4, 1) => rd!("S3_0_C0_C4_1"),
        (4, 2) => rd!("S3_0_C0_C4_2"),
        (4, 3) => rd!("S3_0_C0_C4_3"),
        (4, 4) => rd!("S3_0_C0_C4_4"),
        (4, 5) => rd!("S3_0_C0_C4_5"),
        (4, 6) => rd!("S3_0_C0_C4_6"),
        (4, 7) => rd!("S3_0_C0_C4_7"),
        (5, 0) => rd!("S3_0_C0_C5_0"),
        (5, 1) => rd!("S3_0_C0_C5_1"),
        (5, 2) => rd!("S3_0_C0_C5_2"),
        (5, 3) => rd!("S3_0_C0_C5_3"),
        (5, 4) => rd!("S3_0_C0_C5_4"),
        (5, 5) => rd!("S3_0_C0_C5_5"),
        (5, 6) => rd!("S3_0_C0_C5_6"),
        (5, 7) => rd!("S3_0_C0_C5_7"),
        (6, 0) => rd!("S3_0_C0_C6_0"),
        (6, 1) => rd!("S3_0_C0_C6_1"),
        (6, 2) => rd!("S3_0_C0_C6_2"),
        (6, 3) => rd!("S3_0_C0_C6_3"),
        (6, 4) => rd!("S3_0_C0_C6_4"),
        (6, 5) => rd!("S3_0_C0_C6_5"),
        (6, 6) => rd!("S3_0_C0_C6_6"),
        (6, 7) => rd!("S3_0_C0_C6_7"),
        (7, 0) => rd!("S3_0_C0_C7_0"),
        (7, 1) => rd!("S3_0_C0_C7_1"),
        (7, 2) => rd!("S3_0_C0_C7_2"),
        (7, 3) => rd!("S3_0_C0_C7_3"),
        (7, 4) => rd!("S3_0_C0_C7_4"),
        (7, 5) => rd!("S3_0_C0_C7_5"),
        (7, 6) => rd!("S3_0_C0_C7_6"),
        (7, 7) => rd!("S3_0_C0_C7_7"),
        _ => 0,
    }
}

/// Everything the CPU model needs from this CPU.
pub fn read_host_cpu() -> HostCpu {
    let mut id = IdRegs::ZERO;
    for crm in 1..=7u8 {
        for op2 in 0..=7u8 {
            id.set(SysReg::new(3, 0, 0, crm, op2), read_id_space(crm, op2));
        }
    }
    let mut ccsidr_el1 = [0u64; 14];
    for (csselr, slot) in ccsidr_el1.iter_mut().enumerate() {
        *slot = regs::read_ccsidr_for(csselr as u64);
    }
    // ID_AA64DFR0_EL1.PMUVer 1..=0xE: a PMUv3, whose PMCR_EL0 EL2 may read.
    let pmuver = (id.get(SysReg::new(3, 0, 0, 5, 0)).unwrap_or(0) >> 8) & 0xf;
    let pmu_counters = if (1..0xf).contains(&pmuver) {
        ((regs::read_pmcr_el0() >> PMCR_N_SHIFT) & PMCR_N_MASK) as u8
    } else {
        0
    };
    // ID_AA64PFR0_EL1.MPAM or ID_AA64PFR1_EL1.MPAM_frac: FEAT_MPAM, whose
    // MPAMIDR_EL1 EL2 may read (booting.rst: MPAM3_EL3.TRAPLOWER = 0).
    let mpam = (id.get(SysReg::new(3, 0, 0, 4, 0)).unwrap_or(0) >> 40) & 0xf != 0
        || (id.get(SysReg::new(3, 0, 0, 4, 1)).unwrap_or(0) >> 16) & 0xf != 0;
    // ID_AA64PFR0_EL1.SVE: the vector lengths this core implements.
    let sve = (id.get(SysReg::new(3, 0, 0, 4, 0)).unwrap_or(0) >> 32) & 0xf != 0;
    HostCpu {
        sve_vqs: if sve { regs::probe_sve_vqs() } else { 0 },
        midr_el1: regs::read_midr_el1(),
        id,
        ctr_el0: regs::read_ctr_el0(),
        clidr_el1: regs::read_clidr_el1(),
        ccsidr_el1,
        pmu_counters,
        mpamidr_el1: if mpam { regs::read_mpamidr_el1() } else { 0 },
    }
}

/// PMCR_EL0.N, bits [15:11] (Arm ARM, PMCR_EL0).
const PMCR_N_SHIFT: u64 = 11;
const PMCR_N_MASK: u64 = 0x1f;

/// Brings this CPU's EL2 trap controls to a known state and reports what the
/// CPU is. Runs first thing on every CPU at boot: every trap register this CPU
/// has is written whole from its own features (`controls::boot_controls`), so
/// nothing an earlier boot stage enabled — HCRX_EL2 or fine-grained trap
/// enables, MDCR_EL2 routing, a running profiling or trace buffer — survives.
pub fn init_this_cpu() -> HostCpu {
    let cpu = read_host_cpu();
    let features = crate::vm::controls::HostFeatures::from_cpu(&cpu);
    regs::write_el2_controls(&crate::vm::controls::boot_controls(&features));
    cpu
}
