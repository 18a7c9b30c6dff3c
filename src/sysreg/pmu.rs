//! The guest's PMUv3: every PMU register access traps (MDCR_EL2.TPM, TPMCR)
//! and is carried out on the real counters, filtered here.
//!
//! # Why trap everything
//! The guest's counters are the hardware's own counters 0..n-1 (n =
//! MDCR_EL2.HPMN, the guest's PMCR_EL0.N) and the cycle counter. A guest must
//! never count the hypervisor: an event counter or the cycle counter counts at
//! EL2 exactly when its filter's NSH bit is 1 (Arm ARM D13.5, "Filtering by
//! Exception level": PMEVTYPER<n>_EL0.NSH, PMCCFILTR_EL0.NSH). MDCR_EL2.HPMD
//! (PMUv3p1) prohibits EL2 counting for counters below HPMN and HCCD
//! (PMUv3p5) for the cycle counter, and both are set where they exist — but a
//! PMUv3 (Cortex-A57) has neither, and before PMUv3p5 the cycle counter at EL2
//! is only prohibited when the guest's own PMCR_EL0.DP says so. So the filter
//! registers must be trapped to mask NSH, and without FEAT_FGT the only trap is
//! MDCR_EL2.TPM, which traps every PMU register: all of them are emulated here
//! against the hardware ([`PmuOp`]), one path on every PMU version. The cost is
//! one exit per access (`make bench`'s `pmu_trapped` row).
//!
//! # What the guest gets
//! - PMCR_EL0 with N = n; E, P, C, D, DP, LC, LP writable (X, export of
//!   events, stays 0). From EL2 the write's E enables counters below HPMN only
//!   (MDCR_EL2.HPME enables the rest, and is 0), as a guest's write would.
//! - Counters, enables, overflow and interrupt-enable bits 0..n-1 and 31
//!   (cycle counter); the hypervisor's counters (n..N-1) read as 0 and ignore
//!   writes in every bitmask register (Arm ARM: "RAZ/WI from EL0 and EL1
//!   when n >= HPMN"). PMEVCNTR<m>/PMEVTYPER<m> with m >= n are UNDEFINED, as
//!   in hardware at EL1 for m >= HPMN.
//! - PMSELR_EL0 is kept here (shadow); PMXEVTYPER/PMXEVCNTR go to the counter
//!   it selects (31: PMCCFILTR_EL0). A selection of a counter the guest does
//!   not have is CONSTRAINED UNPREDICTABLE; the choice made is UNDEFINED.
//! - Filters: the event number and P, U, NSK, NSU; NSH, M, MT, SH and the
//!   later threshold fields read as 0 and are never written.
//! - PMUSERENR_EL0 (EN, SW, CR, ER) is kept in the hardware, because the EL0
//!   checks it drives are made by the hardware before the EL2 trap (they trap
//!   to the guest's EL1 first). PMCEID0/1_EL0 and PMMIR_EL1 read the
//!   hardware's.
//!
//! # Status: the rules only
//! Nothing calls [`access`] yet: the CPU model still hides the PMU (PMUVer =
//! 0) and MDCR_EL2.TPM/TPMCR make every PMU access UNDEFINED through the
//! system-register table. Offering it needs, together (none of them is safe
//! alone — a PMU shown without the switch would leak one vCPU's counts to the
//! next):
//! - the run loop's `Env::sysreg` calling [`decode`]/[`access`] and a `Hw`
//!   method pair reading/writing a [`PmuHw`] (PMEVCNTR/PMEVTYPER<n> through
//!   the hardware PMSELR, free at EL2 since the guest's is shadowed here);
//! - `vm::vcpu` PMU registers saved on unload (PMCR, PMCNTENSET, PMINTENSET,
//!   PMOVSSET, PMUSERENR, PMCCNTR, PMCCFILTR, PMEVCNTR/PMEVTYPER 0..n-1) and
//!   the counters then disabled (PMCNTENCLR, PMINTENCLR, PMOVSCLR of
//!   [`PmuModel::mask`], PMCR.E = 0), restored on load, and a reset value;
//! - the overflow PPI (INTID 23, the SBSA number; the host's `arm,armv8-pmuv3`
//!   node names it) hardware-linked per vCPU like the timers' PPIs, its
//!   physical active state switched with the vCPU;
//! - ID_AA64DFR0_EL1.PMUVer from the system value (capped at PMUv3p5, whose
//!   PMCR.LP is the newest control allowed above), MDCR_EL2.HPMN = n per VM,
//!   `[vm.cpu] pmu`, and the guest device tree's `arm,armv8-pmuv3` node.

use super::SysReg;

/// A PMU register, as the hardware layer accesses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmuHw {
    Pmcr,
    Cntenset,
    Cntenclr,
    Ovsset,
    Ovsclr,
    Intenset,
    Intenclr,
    Swinc,
    Ceid0,
    Ceid1,
    Ccntr,
    Ccfiltr,
    Userenr,
    Mmir,
    /// PMEVCNTR<n>_EL0, n < 31.
    Evcntr(u8),
    /// PMEVTYPER<n>_EL0, n < 31.
    Evtyper(u8),
}

/// What one trapped PMU access becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PmuOp {
    /// Read `reg`; the guest gets `(value & mask) | or`.
    Read {
        reg: PmuHw,
        mask: u64,
        or: u64,
    },
    /// Write `value` to `reg`.
    Write {
        reg: PmuHw,
        value: u64,
    },
    /// A value from the emulated state (PMSELR_EL0).
    Value(u64),
    /// A write absorbed by the emulated state.
    Done,
    Undef,
}

/// PMCR_EL0.N (15:11).
pub const PMCR_N_SHIFT: u32 = 11;
const PMCR_N: u64 = 0x1f << PMCR_N_SHIFT;
/// PMCR_EL0 E (0), P (1), C (2), D (3), DP (5), LC (6), LP (7): what a guest
/// may write; X (4) and everything above 7 stay 0.
pub const PMCR_WRITABLE: u64 = 0b1110_1111;
/// PMCR_EL0.E.
pub const PMCR_E: u64 = 1;
/// PMEVTYPER<n>_EL0.NSH (27): count at EL2. Never set for a guest.
pub const FILTER_NSH: u64 = 1 << 27;
/// P (31), U (30), NSK (29), NSU (28): the filter bits a guest may set.
pub const FILTER_GUEST: u64 = 0xf << 28;
/// evtCount (15:0; 9:0 before PMUv3p1, the rest RES0 there).
const EVTCOUNT: u64 = 0xffff;
/// PMUSERENR_EL0 EN (0), SW (1), CR (2), ER (3).
pub const PMUSERENR_WRITABLE: u64 = 0xf;
/// The cycle counter's bit in the bitmask registers, and its PMSELR number.
const CYCLE: u64 = 1 << 31;
const CYCLE_SEL: u64 = 31;

/// The guest's PMU: how many event counters it has, and its PMU version
/// (ID_AA64DFR0_EL1.PMUVer, for PMMIR_EL1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmuModel {
    pub counters: u8,
    pub version: u8,
}

impl PmuModel {
    /// The bits of the guest's counters in PMCNTEN*, PMINTEN*, PMOVS*.
    pub fn mask(&self) -> u64 {
        ((1u64 << self.counters) - 1) | CYCLE
    }
}

/// One vCPU's emulated PMU state (the rest lives in the hardware while the
/// vCPU runs and in `vm::vcpu::PmuRegs` while it does not).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuPmu {
    /// PMSELR_EL0.SEL (resets to an UNKNOWN value; 0 here).
    pub pmselr: u64,
}

/// The PMU registers by encoding (Arm ARM, D23 "Performance Monitors
/// registers"); `None` for anything else.
pub fn decode(reg: SysReg) -> Option<Reg> {
    let (op0, op1, crn, crm, op2) = (reg.op0(), reg.op1(), reg.crn(), reg.crm(), reg.op2());
    if op0 != 3 {
        return None;
    }
    Some(match (op1, crn, crm, op2) {
        (3, 9, 12, 0) => Reg::Hw(PmuHw::Pmcr),
        (3, 9, 12, 1) => Reg::Hw(PmuHw::Cntenset),
        (3, 9, 12, 2) => Reg::Hw(PmuHw::Cntenclr),
        (3, 9, 12, 3) => Reg::Hw(PmuHw::Ovsclr),
        (3, 9, 12, 4) => Reg::Hw(PmuHw::Swinc),
        (3, 9, 12, 5) => Reg::Selr,
        (3, 9, 12, 6) => Reg::Hw(PmuHw::Ceid0),
        (3, 9, 12, 7) => Reg::Hw(PmuHw::Ceid1),
        (3, 9, 13, 0) => Reg::Hw(PmuHw::Ccntr),
        (3, 9, 13, 1) => Reg::Xevtyper,
        (3, 9, 13, 2) => Reg::Xevcntr,
        (3, 9, 14, 0) => Reg::Hw(PmuHw::Userenr),
        (3, 9, 14, 3) => Reg::Hw(PmuHw::Ovsset),
        (0, 9, 14, 1) => Reg::Hw(PmuHw::Intenset),
        (0, 9, 14, 2) => Reg::Hw(PmuHw::Intenclr),
        (0, 9, 14, 6) => Reg::Hw(PmuHw::Mmir),
        (3, 14, 8..=11, _) => Reg::Hw(PmuHw::Evcntr((crm - 8) << 3 | op2)),
        (3, 14, 15, 7) => Reg::Hw(PmuHw::Ccfiltr),
        (3, 14, 12..=15, _) => Reg::Hw(PmuHw::Evtyper((crm - 12) << 3 | op2)),
        _ => return None,
    })
}

/// A decoded PMU register: a hardware one, or one resolved through PMSELR.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reg {
    Hw(PmuHw),
    Selr,
    Xevtyper,
    Xevcntr,
}

/// One trapped access to PMU register `reg` (`write`: the value written).
/// `pmu` is `None` for a VM without a PMU: every access is UNDEFINED.
pub fn access(pmu: Option<&PmuModel>, v: &mut VcpuPmu, reg: Reg, write: Option<u64>) -> PmuOp {
    let Some(m) = pmu else {
        return PmuOp::Undef;
    };
    let hw = match reg {
        Reg::Hw(hw) => hw,
        Reg::Selr => {
            return match write {
                None => PmuOp::Value(v.pmselr),
                Some(x) => {
                    v.pmselr = x & 0x1f;
                    PmuOp::Done
                }
            };
        }
        Reg::Xevtyper | Reg::Xevcntr => {
            let sel = v.pmselr;
            let hw = match (reg, sel) {
                (Reg::Xevtyper, CYCLE_SEL) => PmuHw::Ccfiltr,
                // PMXEVCNTR with SEL = 31 is CONSTRAINED UNPREDICTABLE: UNDEFINED.
                (_, s) if s >= m.counters as u64 => return PmuOp::Undef,
                (Reg::Xevtyper, s) => PmuHw::Evtyper(s as u8),
                (_, s) => PmuHw::Evcntr(s as u8),
            };
            return hw_access(m, hw, write);
        }
    };
    hw_access(m, hw, write)
}

fn hw_access(m: &PmuModel, hw: PmuHw, write: Option<u64>) -> PmuOp {
    let read = |mask: u64| PmuOp::Read {
        reg: hw,
        mask,
        or: 0,
    };
    let write_masked = |x: u64, mask: u64| PmuOp::Write {
        reg: hw,
        value: x & mask,
    };
    match hw {
        PmuHw::Evcntr(n) | PmuHw::Evtyper(n) if n >= m.counters => PmuOp::Undef,
        PmuHw::Pmcr => match write {
            None => PmuOp::Read {
                reg: hw,
                mask: !PMCR_N & 0xffff_ffff,
                or: (m.counters as u64) << PMCR_N_SHIFT,
            },
            Some(x) => write_masked(x, PMCR_WRITABLE),
        },
        PmuHw::Cntenset
        | PmuHw::Cntenclr
        | PmuHw::Ovsset
        | PmuHw::Ovsclr
        | PmuHw::Intenset
        | PmuHw::Intenclr => match write {
            None => read(m.mask()),
            Some(x) => write_masked(x, m.mask()),
        },
        PmuHw::Swinc => match write {
            None => PmuOp::Undef,
            Some(x) => write_masked(x, m.mask() & !CYCLE),
        },
        PmuHw::Ceid0 | PmuHw::Ceid1 => match write {
            None => read(!0),
            Some(_) => PmuOp::Undef,
        },
        // PMMIR_EL1 exists from PMUv3p4 (PMUVer 5).
        PmuHw::Mmir if m.version < 5 => PmuOp::Undef,
        PmuHw::Mmir => match write {
            None => read(!0),
            Some(_) => PmuOp::Undef,
        },
        PmuHw::Ccntr | PmuHw::Evcntr(_) => match write {
            None => read(!0),
            Some(x) => write_masked(x, !0),
        },
        PmuHw::Evtyper(_) => match write {
            None => read(FILTER_GUEST | EVTCOUNT),
            Some(x) => write_masked(x, FILTER_GUEST | EVTCOUNT),
        },
        PmuHw::Ccfiltr => match write {
            None => read(FILTER_GUEST),
            Some(x) => write_masked(x, FILTER_GUEST),
        },
        PmuHw::Userenr => match write {
            None => read(PMUSERENR_WRITABLE),
            Some(x) => write_masked(x, PMUSERENR_WRITABLE),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: PmuModel = PmuModel {
        counters: 4,
        version: 1,
    };

    fn enc(op1: u8, crn: u8, crm: u8, op2: u8) -> Reg {
        decode(SysReg::new(3, op1, crn, crm, op2)).unwrap()
    }

    #[test]
    fn decodes_every_pmu_register() {
        assert_eq!(enc(3, 9, 12, 0), Reg::Hw(PmuHw::Pmcr));
        assert_eq!(enc(3, 9, 12, 5), Reg::Selr);
        assert_eq!(enc(0, 9, 14, 1), Reg::Hw(PmuHw::Intenset));
        assert_eq!(enc(3, 14, 8, 0), Reg::Hw(PmuHw::Evcntr(0)));
        assert_eq!(enc(3, 14, 11, 6), Reg::Hw(PmuHw::Evcntr(30)));
        assert_eq!(enc(3, 14, 12, 3), Reg::Hw(PmuHw::Evtyper(3)));
        assert_eq!(enc(3, 14, 15, 6), Reg::Hw(PmuHw::Evtyper(30)));
        assert_eq!(enc(3, 14, 15, 7), Reg::Hw(PmuHw::Ccfiltr));
        assert_eq!(decode(SysReg::new(3, 3, 9, 15, 0)), None);
        assert_eq!(decode(SysReg::new(3, 0, 1, 0, 0)), None);
    }

    #[test]
    fn no_pmu_means_undefined() {
        let mut v = VcpuPmu::default();
        assert_eq!(
            access(None, &mut v, Reg::Hw(PmuHw::Pmcr), None),
            PmuOp::Undef
        );
    }

    #[test]
    fn pmcr_shows_n_and_keeps_x_clear() {
        let mut v = VcpuPmu::default();
        let PmuOp::Read { mask, or, .. } = access(Some(&M), &mut v, Reg::Hw(PmuHw::Pmcr), None)
        else {
            panic!()
        };
        // Hardware with N = 6, E set.
        let hw = 6 << PMCR_N_SHIFT | 0x4100_0001;
        assert_eq!((hw & mask) | or, 4 << PMCR_N_SHIFT | 0x4100_0001);
        assert_eq!(
            access(Some(&M), &mut v, Reg::Hw(PmuHw::Pmcr), Some(!0)),
            PmuOp::Write {
                reg: PmuHw::Pmcr,
                value: PMCR_WRITABLE
            }
        );
    }

    #[test]
    fn filters_never_count_el2() {
        let mut v = VcpuPmu::default();
        let all = !0u64;
        for reg in [PmuHw::Evtyper(0), PmuHw::Ccfiltr] {
            match access(Some(&M), &mut v, Reg::Hw(reg), Some(all)) {
                PmuOp::Write { value, .. } => {
                    assert_eq!(value & FILTER_NSH, 0);
                    assert_eq!(value & (1 << 26), 0, "M");
                    assert_eq!(value & FILTER_GUEST, FILTER_GUEST);
                }
                o => panic!("{o:?}"),
            }
            let PmuOp::Read { mask, .. } = access(Some(&M), &mut v, Reg::Hw(reg), None) else {
                panic!()
            };
            assert_eq!(mask & FILTER_NSH, 0);
        }
    }

    #[test]
    fn counters_beyond_n_are_the_hypervisors() {
        let mut v = VcpuPmu::default();
        assert_eq!(
            access(Some(&M), &mut v, Reg::Hw(PmuHw::Evcntr(4)), None),
            PmuOp::Undef
        );
        assert_eq!(
            access(Some(&M), &mut v, Reg::Hw(PmuHw::Evtyper(4)), Some(8)),
            PmuOp::Undef
        );
        assert_eq!(
            access(Some(&M), &mut v, Reg::Hw(PmuHw::Cntenset), Some(!0)),
            PmuOp::Write {
                reg: PmuHw::Cntenset,
                value: 0x8000_000f
            }
        );
        assert_eq!(
            access(Some(&M), &mut v, Reg::Hw(PmuHw::Swinc), Some(!0)),
            PmuOp::Write {
                reg: PmuHw::Swinc,
                value: 0xf
            }
        );
        assert_eq!(
            access(Some(&M), &mut v, Reg::Hw(PmuHw::Ovsclr), None),
            PmuOp::Read {
                reg: PmuHw::Ovsclr,
                mask: 0x8000_000f,
                or: 0
            }
        );
    }

    #[test]
    fn pmselr_selects_for_the_indirect_registers() {
        let mut v = VcpuPmu::default();
        access(Some(&M), &mut v, Reg::Selr, Some(0xff));
        assert_eq!(access(Some(&M), &mut v, Reg::Selr, None), PmuOp::Value(31));
        assert!(matches!(
            access(Some(&M), &mut v, Reg::Xevtyper, Some(!0)),
            PmuOp::Write {
                reg: PmuHw::Ccfiltr,
                ..
            }
        ));
        assert_eq!(access(Some(&M), &mut v, Reg::Xevcntr, None), PmuOp::Undef);
        access(Some(&M), &mut v, Reg::Selr, Some(2));
        assert_eq!(
            access(Some(&M), &mut v, Reg::Xevcntr, Some(5)),
            PmuOp::Write {
                reg: PmuHw::Evcntr(2),
                value: 5
            }
        );
        access(Some(&M), &mut v, Reg::Selr, Some(4));
        assert_eq!(access(Some(&M), &mut v, Reg::Xevtyper, None), PmuOp::Undef);
    }

    #[test]
    fn pmmir_only_from_pmuv3p4_and_read_only_ids() {
        let mut v = VcpuPmu::default();
        assert_eq!(
            access(Some(&M), &mut v, Reg::Hw(PmuHw::Mmir), None),
            PmuOp::Undef
        );
        let p5 = PmuModel {
            counters: 6,
            version: 6,
        };
        assert!(matches!(
            access(Some(&p5), &mut v, Reg::Hw(PmuHw::Mmir), None),
            PmuOp::Read { .. }
        ));
        assert_eq!(
            access(Some(&p5), &mut v, Reg::Hw(PmuHw::Ceid0), Some(1)),
            PmuOp::Undef
        );
        assert_eq!(
            access(Some(&p5), &mut v, Reg::Hw(PmuHw::Swinc), None),
            PmuOp::Undef
        );
    }
}
