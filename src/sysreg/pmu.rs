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
//! # Wiring
//! `vm::pcpu`'s `Env::sysreg` sends every PMU encoding here ([`decode`],
//! [`access`]) and carries the [`PmuOp`] out on the hardware through
//! [`PmuAccess`]; a write to PMSWINC_EL0 is emulated ([`software_increment`])
//! because a write made at EL2 counts for no guest (the SW_INCR event is
//! counted only where the counter's filter counts, and NSH is 0). When
//! vCPUs share a CPU, [`save`] takes a vCPU's PMU out of the hardware and
//! stops its counters, [`restore`] puts it back (a VM without a PMU has none
//! to move: every access of its guest is UNDEFINED). The overflow interrupt
//! is the PMU's PPI (INTID 23), hardware-linked per vCPU like the timers'
//! (`vm::pcpu`), its physical active state moved with the vCPU.

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
    /// A write to PMSWINC_EL0 of these counter bits (already masked to the
    /// guest's event counters): see [`software_increment`].
    SoftwareIncrement(u64),
    Undef,
}

/// The PMU overflow interrupt, PPI 7 (INTID 23): the number SBSA and QEMU's
/// `virt` board give it, and the one the guest's device tree names.
pub const PMU_INTID: u32 = 23;

/// The newest PMU version shown to a guest (ID_AA64DFR0_EL1.PMUVer): PMUv3p5
/// (6), whose controls (PMCR_EL0.LP, 64-bit event counters, MDCR_EL2.HCCD)
/// are the newest handled here. PMUv3p7's MDCR_EL2.HPMFZO and PMUv3p8's
/// threshold fields are not.
pub const MAX_VERSION: u8 = 6;

/// PMCR_EL0.N (15:11).
pub const PMCR_N_SHIFT: u32 = 11;
const PMCR_N: u64 = 0x1f << PMCR_N_SHIFT;
/// PMCR_EL0 E (0), P (1), C (2), D (3), DP (5), LC (6), LP (7): what a guest
/// may write; X (4) and everything above 7 stay 0.
pub const PMCR_WRITABLE: u64 = 0b1110_1111;
/// PMCR_EL0.E.
pub const PMCR_E: u64 = 1;
/// PMCR_EL0.P (1) and C (2): write-1 resets, read as 0.
const PMCR_P_C: u64 = 0b110;
/// PMCR_EL0.LP (7): event counters overflow at 64 bits (PMUv3p5).
const PMCR_LP: u64 = 1 << 7;
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
            Some(x) => PmuOp::SoftwareIncrement(x & m.mask() & !CYCLE),
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

/// The hardware's PMU registers, as EL2 reads and writes them (the arch
/// layer with `mrs`/`msr`, host tests with a fake).
pub trait PmuAccess {
    fn pmu_read(&mut self, reg: PmuHw) -> u64;
    fn pmu_write(&mut self, reg: PmuHw, value: u64);
}

/// Carries out one [`PmuOp`] on the hardware; the guest's result. `el0`: the
/// access came from the guest's EL0 (for PMSWINC's filtering).
pub fn perform(hw: &mut impl PmuAccess, m: Option<&PmuModel>, op: PmuOp, el0: bool) -> Performed {
    match op {
        PmuOp::Read { reg, mask, or } => Performed::Read((hw.pmu_read(reg) & mask) | or),
        PmuOp::Write { reg, value } => {
            hw.pmu_write(reg, value);
            Performed::Done
        }
        PmuOp::Value(v) => Performed::Read(v),
        PmuOp::Done => Performed::Done,
        PmuOp::SoftwareIncrement(bits) => {
            if let Some(m) = m {
                software_increment(hw, m, bits, el0);
            }
            Performed::Done
        }
        PmuOp::Undef => Performed::Undef,
    }
}

/// What the guest gets for one PMU access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Performed {
    Read(u64),
    Done,
    Undef,
}

/// A guest's write of `bits` to PMSWINC_EL0, from its EL0 (`el0`) or EL1.
/// Written by EL2 the hardware would count nothing: the SW_INCR event
/// increments a counter only when that counter counts at the Exception level
/// of the write (Arm ARM, PMSWINC_EL0 and the pseudocode of
/// `PMUCountValue`/`CountPMUEvents`: enabled, and not filtered out), and the
/// guest's filters never count EL2. So the increment is done here, as the
/// hardware would have done it at the guest's level: for each counter n in
/// `bits` that is enabled (PMCR_EL0.E and bit n of PMCNTENSET_EL0), counts event
/// 0x00 (SW_INCR) and whose filter counts at that level — Non-secure EL1 when
/// PMEVTYPER<n>.P equals NSK, EL0 when U equals NSU (NSK/NSU read as 0
/// without EL3, leaving P and U alone: Arm ARM D13.5, "Filtering by
/// Exception level") — the counter goes up by one, and when it wraps its
/// overflow flag is set (at 32 bits, or at 64 with PMUv3p5's PMCR_EL0.LP).
pub fn software_increment(hw: &mut impl PmuAccess, m: &PmuModel, bits: u64, el0: bool) {
    let pmcr = hw.pmu_read(PmuHw::Pmcr);
    if pmcr & PMCR_E == 0 {
        return;
    }
    let mut live = bits & hw.pmu_read(PmuHw::Cntenset) & ((1u64 << m.counters) - 1);
    while live != 0 {
        let n = live.trailing_zeros() as u8;
        live &= live - 1;
        let t = hw.pmu_read(PmuHw::Evtyper(n));
        if t & EVTCOUNT != 0 {
            continue;
        }
        let bit = |b: u32| (t >> b) & 1;
        let counts = if el0 {
            bit(30) == bit(28)
        } else {
            bit(31) == bit(29)
        };
        if !counts {
            continue;
        }
        let long = m.version >= 6;
        let old = hw.pmu_read(PmuHw::Evcntr(n));
        let new = if long {
            old.wrapping_add(1)
        } else {
            old.wrapping_add(1) & 0xffff_ffff
        };
        hw.pmu_write(PmuHw::Evcntr(n), new);
        let wrapped = if long && pmcr & PMCR_LP != 0 {
            new == 0
        } else {
            new & 0xffff_ffff == 0
        };
        if wrapped {
            hw.pmu_write(PmuHw::Ovsset, 1 << n);
        }
    }
}

/// One vCPU's PMU registers while it is off its CPU (only the guest's:
/// counters 0..n-1 and the cycle counter). The default is the state at reset:
/// everything disabled and zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmuRegs {
    /// PMCR_EL0's writable bits (E, D, DP, LC, LP).
    pub pmcr: u64,
    pub cnten: u64,
    pub inten: u64,
    pub ovs: u64,
    pub userenr: u64,
    pub ccntr: u64,
    pub ccfiltr: u64,
    pub evcntr: [u64; 31],
    pub evtyper: [u64; 31],
    /// The overflow PPI was active at the physical GIC (the guest was handling
    /// its hardware-linked virtual interrupt) when the vCPU left.
    pub irq_active: bool,
}

/// Takes a vCPU's PMU out of the hardware: its counters stopped first (so the
/// values saved are the ones it ends with), then saved, then everything of it
/// disabled — counting, interrupt enables, overflow flags (so the overflow
/// line drops), EL0 access — so nothing of it counts or fires for the next
/// vCPU. The counter values stay until the next vCPU's [`restore`] writes its
/// own, and no guest can read a counter it has not restored (every access
/// traps, and counters at or above its HPMN read as 0).
pub fn save(hw: &mut impl PmuAccess, m: &PmuModel, r: &mut PmuRegs) {
    let pmcr = hw.pmu_read(PmuHw::Pmcr) & PMCR_WRITABLE & !PMCR_P_C;
    hw.pmu_write(PmuHw::Pmcr, pmcr & !PMCR_E);
    let mask = m.mask();
    r.pmcr = pmcr;
    r.cnten = hw.pmu_read(PmuHw::Cntenset) & mask;
    r.inten = hw.pmu_read(PmuHw::Intenset) & mask;
    r.ovs = hw.pmu_read(PmuHw::Ovsset) & mask;
    r.userenr = hw.pmu_read(PmuHw::Userenr) & PMUSERENR_WRITABLE;
    r.ccntr = hw.pmu_read(PmuHw::Ccntr);
    r.ccfiltr = hw.pmu_read(PmuHw::Ccfiltr) & FILTER_GUEST;
    for n in 0..m.counters.min(31) {
        let i = n as usize;
        r.evcntr[i] = hw.pmu_read(PmuHw::Evcntr(n));
        r.evtyper[i] = hw.pmu_read(PmuHw::Evtyper(n)) & (FILTER_GUEST | EVTCOUNT);
    }
    hw.pmu_write(PmuHw::Cntenclr, mask);
    hw.pmu_write(PmuHw::Intenclr, mask);
    hw.pmu_write(PmuHw::Ovsclr, mask);
    hw.pmu_write(PmuHw::Userenr, 0);
}

/// Puts a vCPU's PMU into the hardware: counting stays off until every value
/// is in place, then PMCR_EL0.E as the vCPU left it. Every register the guest
/// can reach is written, so nothing of the previous vCPU shows.
pub fn restore(hw: &mut impl PmuAccess, m: &PmuModel, r: &PmuRegs) {
    let mask = m.mask();
    hw.pmu_write(PmuHw::Pmcr, r.pmcr & !PMCR_E & !PMCR_P_C);
    hw.pmu_write(PmuHw::Cntenclr, mask);
    hw.pmu_write(PmuHw::Intenclr, mask);
    hw.pmu_write(PmuHw::Ovsclr, mask);
    for n in 0..m.counters.min(31) {
        let i = n as usize;
        hw.pmu_write(PmuHw::Evtyper(n), r.evtyper[i] & (FILTER_GUEST | EVTCOUNT));
        hw.pmu_write(PmuHw::Evcntr(n), r.evcntr[i]);
    }
    hw.pmu_write(PmuHw::Ccfiltr, r.ccfiltr & FILTER_GUEST);
    hw.pmu_write(PmuHw::Ccntr, r.ccntr);
    hw.pmu_write(PmuHw::Userenr, r.userenr & PMUSERENR_WRITABLE);
    hw.pmu_write(PmuHw::Ovsset, r.ovs & mask);
    hw.pmu_write(PmuHw::Intenset, r.inten & mask);
    hw.pmu_write(PmuHw::Cntenset, r.cnten & mask);
    hw.pmu_write(PmuHw::Pmcr, r.pmcr & PMCR_WRITABLE & !PMCR_P_C);
}

/// A PMU register file for host tests: the set/clear pairs share one value,
/// PMCR_EL0.N reads as `n`, PMSWINC_EL0 writes are recorded (hardware at EL2
/// would count nothing for them).
#[cfg(test)]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FakePmu {
    pub n: u8,
    pub pmcr: u64,
    pub cnten: u64,
    pub inten: u64,
    pub ovs: u64,
    pub userenr: u64,
    pub ccntr: u64,
    pub ccfiltr: u64,
    pub ev: [u64; 31],
    pub ty: [u64; 31],
    pub swinc_writes: u32,
}

#[cfg(test)]
impl PmuAccess for FakePmu {
    fn pmu_read(&mut self, reg: PmuHw) -> u64 {
        match reg {
            PmuHw::Pmcr => self.pmcr | (self.n as u64) << PMCR_N_SHIFT,
            PmuHw::Cntenset | PmuHw::Cntenclr => self.cnten,
            PmuHw::Intenset | PmuHw::Intenclr => self.inten,
            PmuHw::Ovsset | PmuHw::Ovsclr => self.ovs,
            PmuHw::Userenr => self.userenr,
            PmuHw::Ccntr => self.ccntr,
            PmuHw::Ccfiltr => self.ccfiltr,
            PmuHw::Evcntr(i) => self.ev[i as usize],
            PmuHw::Evtyper(i) => self.ty[i as usize],
            PmuHw::Ceid0 => 0x6000_003f,
            PmuHw::Ceid1 | PmuHw::Mmir | PmuHw::Swinc => 0,
        }
    }
    fn pmu_write(&mut self, reg: PmuHw, value: u64) {
        match reg {
            PmuHw::Pmcr => {
                if value & 0b10 != 0 {
                    self.ev = [0; 31];
                }
                if value & 0b100 != 0 {
                    self.ccntr = 0;
                }
                self.pmcr = value & PMCR_WRITABLE & !PMCR_P_C;
            }
            PmuHw::Cntenset => self.cnten |= value,
            PmuHw::Cntenclr => self.cnten &= !value,
            PmuHw::Intenset => self.inten |= value,
            PmuHw::Intenclr => self.inten &= !value,
            PmuHw::Ovsset => self.ovs |= value,
            PmuHw::Ovsclr => self.ovs &= !value,
            PmuHw::Userenr => self.userenr = value,
            PmuHw::Ccntr => self.ccntr = value,
            PmuHw::Ccfiltr => self.ccfiltr = value,
            PmuHw::Evcntr(i) => self.ev[i as usize] = value,
            PmuHw::Evtyper(i) => self.ty[i as usize] = value,
            PmuHw::Swinc => self.swinc_writes += 1,
            PmuHw::Ceid0 | PmuHw::Ceid1 | PmuHw::Mmir => {}
        }
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
            PmuOp::SoftwareIncrement(0xf)
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

    fn fake() -> FakePmu {
        FakePmu {
            n: 6,
            ..Default::default()
        }
    }

    #[test]
    fn software_increment_counts_as_the_guests_level_would() {
        let mut hw = fake();
        hw.pmcr = PMCR_E;
        hw.cnten = 0b111;
        // Counter 0: SW_INCR at EL1 and EL0; 1: SW_INCR with P = 1 (not at
        // EL1); 2: another event; 3: SW_INCR but not enabled.
        hw.ty[1] = 1 << 31;
        hw.ty[2] = 0x11;
        software_increment(&mut hw, &M, 0b1111, false);
        assert_eq!(&hw.ev[..4], &[1, 0, 0, 0]);
        // From EL0: U = 1 filters counter 1? It has U = 0, so it counts.
        software_increment(&mut hw, &M, 0b11, true);
        assert_eq!(&hw.ev[..2], &[2, 1]);
        // P = 1 with NSK = 1 counts at Non-secure EL1 (EL3 present).
        hw.ty[1] = 1 << 31 | 1 << 29;
        software_increment(&mut hw, &M, 0b10, false);
        assert_eq!(hw.ev[1], 2);
        // Nothing counts with PMCR_EL0.E = 0.
        hw.pmcr = 0;
        software_increment(&mut hw, &M, 0b1, false);
        assert_eq!(hw.ev[0], 2);
        assert_eq!(hw.swinc_writes, 0, "PMSWINC is never written at EL2");
    }

    #[test]
    fn software_increment_overflows_at_32_or_64_bits() {
        let mut hw = fake();
        hw.pmcr = PMCR_E;
        hw.cnten = 1;
        hw.ev[0] = 0xffff_ffff;
        software_increment(&mut hw, &M, 1, false);
        assert_eq!((hw.ev[0], hw.ovs), (0, 1));
        // PMUv3p5: 64-bit counters; LP = 0 still overflows at 32 bits.
        let p5 = PmuModel {
            counters: 4,
            version: 6,
        };
        hw.ovs = 0;
        hw.ev[0] = 0xffff_ffff;
        software_increment(&mut hw, &p5, 1, false);
        assert_eq!((hw.ev[0], hw.ovs), (1 << 32, 1));
        hw.ovs = 0;
        hw.pmcr |= PMCR_LP;
        hw.ev[0] = 0xffff_ffff;
        software_increment(&mut hw, &p5, 1, false);
        assert_eq!((hw.ev[0], hw.ovs), (1 << 32, 0));
        hw.ev[0] = u64::MAX;
        software_increment(&mut hw, &p5, 1, false);
        assert_eq!((hw.ev[0], hw.ovs), (0, 1));
        // A PMUv3 model over a 64-bit counter at its top (a lowered PMUVer):
        // wraps at 32 bits, never overflows the arithmetic.
        hw.ovs = 0;
        hw.ev[0] = u64::MAX;
        software_increment(&mut hw, &M, 1, false);
        assert_eq!((hw.ev[0], hw.ovs), (0, 1));
    }

    #[test]
    fn save_stops_and_clears_restore_gives_back() {
        let mut hw = fake();
        hw.pmcr = PMCR_E | 1 << 6;
        hw.cnten = 0x8000_0003;
        hw.inten = 0x8000_0001;
        hw.ovs = 0x2;
        hw.userenr = 0xd;
        hw.ccntr = 12345;
        hw.ccfiltr = 1 << 30;
        hw.ev[0] = 7;
        hw.ev[3] = 9;
        hw.ty[3] = 0x8 | 1 << 31;
        // A counter beyond the guest's (n = 4): not saved, not touched.
        hw.ev[5] = 55;
        let mut a = PmuRegs::default();
        save(&mut hw, &M, &mut a);
        assert_eq!(a.pmcr, PMCR_E | 1 << 6);
        assert_eq!((a.cnten, a.inten, a.ovs), (0x8000_0003, 0x8000_0001, 2));
        assert_eq!((a.userenr, a.ccntr, a.ccfiltr), (0xd, 12345, 1 << 30));
        assert_eq!(
            (a.evcntr[0], a.evcntr[3], a.evtyper[3]),
            (7, 9, 0x8 | 1 << 31)
        );
        // Nothing of it counts, fires or is open to EL0 any more.
        assert_eq!(hw.pmcr & PMCR_E, 0);
        assert_eq!((hw.cnten, hw.inten, hw.ovs, hw.userenr), (0, 0, 0, 0));
        // The next vCPU, fresh from reset, sees none of it.
        restore(&mut hw, &M, &PmuRegs::default());
        assert_eq!(
            (hw.ccntr, hw.ccfiltr, hw.ev[0], hw.ev[3], hw.ty[3]),
            (0, 0, 0, 0, 0)
        );
        assert_eq!(hw.pmcr, 0);
        assert_eq!(hw.ev[5], 55);
        // Back again: exactly as it left.
        let mut b = PmuRegs::default();
        save(&mut hw, &M, &mut b);
        assert_eq!(b, PmuRegs::default());
        restore(&mut hw, &M, &a);
        let mut again = PmuRegs::default();
        let live = hw.clone();
        save(&mut hw, &M, &mut again);
        assert_eq!(again, a);
        assert_eq!(live.pmcr, PMCR_E | 1 << 6);
        assert_eq!(
            (live.cnten, live.inten, live.ovs),
            (0x8000_0003, 0x8000_0001, 2)
        );
    }

    #[test]
    fn restore_never_sets_el2_filter_bits() {
        let mut hw = fake();
        let mut r = PmuRegs::default();
        r.evtyper[0] = !0;
        r.ccfiltr = !0;
        restore(&mut hw, &M, &r);
        assert_eq!(hw.ty[0] & FILTER_NSH, 0);
        assert_eq!(hw.ccfiltr & FILTER_NSH, 0);
    }

    #[test]
    fn perform_applies_masks_and_swinc() {
        let mut hw = fake();
        hw.pmcr = PMCR_E;
        hw.cnten = 1;
        let mut v = VcpuPmu::default();
        let op = access(Some(&M), &mut v, Reg::Hw(PmuHw::Pmcr), None);
        assert_eq!(
            perform(&mut hw, Some(&M), op, false),
            Performed::Read(4 << PMCR_N_SHIFT | PMCR_E)
        );
        let op = access(Some(&M), &mut v, Reg::Hw(PmuHw::Swinc), Some(1));
        assert_eq!(perform(&mut hw, Some(&M), op, false), Performed::Done);
        assert_eq!(hw.ev[0], 1);
    }

    #[test]
    fn every_encoding_and_model_is_answered_without_a_panic() {
        for counters in [1u8, 4, 6, 31] {
            for version in [1u8, 4, 5, 6] {
                let m = PmuModel { counters, version };
                let mut hw = FakePmu {
                    n: 31,
                    ..Default::default()
                };
                let mut v = VcpuPmu::default();
                for op1 in [0u8, 3] {
                    for crn in [9u8, 14] {
                        for crm in 0..16u8 {
                            for op2 in 0..8u8 {
                                let Some(reg) = decode(SysReg::new(3, op1, crn, crm, op2)) else {
                                    continue;
                                };
                                for w in [None, Some(0), Some(!0), Some(0x1f)] {
                                    let op = access(Some(&m), &mut v, reg, w);
                                    let _ = perform(&mut hw, Some(&m), op, w == Some(0));
                                    // The guest never gets EL2 counting.
                                    assert_eq!(hw.ccfiltr & FILTER_NSH, 0);
                                    assert!(hw.ty.iter().all(|t| t & FILTER_NSH == 0));
                                }
                            }
                        }
                    }
                }
                let mut r = PmuRegs::default();
                save(&mut hw, &m, &mut r);
                restore(&mut hw, &m, &r);
            }
        }
    }
}
