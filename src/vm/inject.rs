//! Injecting a synchronous exception into a guest's EL1, as the Arm ARM
//! pseudocode `AArch64.TakeException()` takes one: save PSTATE to SPSR_EL1 and the
//! preferred return address to ELR_EL1, pick the vector by where the exception
//! came from, and enter EL1h with D, A, I, F masked.
//!
//! Pure logic: the caller reads the guest's VBAR_EL1/SCTLR_EL1 and writes back
//! ESR_EL1, FAR_EL1, ELR_EL1, SPSR_EL1 and the new PC/PSTATE.

/// What to inject.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncException {
    /// An instruction the guest may not execute: EC 0x00, "Unknown reason",
    /// which is what an UNDEFINED instruction reports (Arm ARM D24.2.40).
    Undefined,
    /// A synchronous external abort on a data access at `far` (a guest VA).
    DataAbort { far: u64, write: bool },
    /// A synchronous external abort on an instruction fetch at `far`.
    InstructionAbort { far: u64 },
}

/// The guest state the injection depends on.
#[derive(Clone, Copy, Debug)]
pub struct GuestEl1 {
    /// Address of the instruction that caused the exception (ELR_EL2 for a trap
    /// whose preferred return is the instruction itself).
    pub pc: u64,
    /// PSTATE at the exception (SPSR_EL2).
    pub pstate: u64,
    pub vbar_el1: u64,
    pub sctlr_el1: u64,
}

/// Which optional PSTATE fields the PE has (they decide what entry sets).
#[derive(Clone, Copy, Debug, Default)]
pub struct PStateFeatures {
    pub pan: bool,
    pub uao: bool,
    pub ssbs: bool,
    pub bti: bool,
    pub mte: bool,
}

/// The register values that deliver the exception.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Injection {
    pub esr_el1: u64,
    pub far_el1: Option<u64>,
    pub elr_el1: u64,
    pub spsr_el1: u64,
    pub pc: u64,
    pub pstate: u64,
}

// PSTATE/SPSR bits (Arm ARM C5.2.18 SPSR_EL1).
const M_MASK: u64 = 0b1111;
const M_NRW: u64 = 1 << 4;
const M_EL1H: u64 = 0b0101;
const DAIF: u64 = 0b1111 << 6;
const BTYPE: u64 = 0b11 << 10;
const SSBS: u64 = 1 << 12;
const IL: u64 = 1 << 20;
const SS: u64 = 1 << 21;
const PAN: u64 = 1 << 22;
const UAO: u64 = 1 << 23;
const TCO: u64 = 1 << 25;
const NZCV: u64 = 0b1111 << 28;

// SCTLR_EL1 bits.
const SCTLR_SPAN: u64 = 1 << 23;
const SCTLR_DSSBS: u64 = 1 << 44;

// ESR_ELx (Arm ARM D24.2.40).
const ESR_IL: u64 = 1 << 25;
const EC_SHIFT: u64 = 26;
const EC_UNKNOWN: u64 = 0x00;
const EC_IABT_LOWER: u64 = 0x20;
const EC_IABT_CUR: u64 = 0x21;
const EC_DABT_LOWER: u64 = 0x24;
const EC_DABT_CUR: u64 = 0x25;
/// Fault status "synchronous External abort, not on translation table walk".
const FSC_SEA: u64 = 0x10;
const ISS_WNR: u64 = 1 << 6;

/// Computes how `exception` is delivered to the guest's EL1.
pub fn inject(exception: SyncException, g: &GuestEl1, f: &PStateFeatures) -> Injection {
    let from_aarch32 = g.pstate & M_NRW != 0;
    let from_el = if from_aarch32 {
        0 // a 32-bit guest state here can only be EL0 (HCR_EL2.RW = 1)
    } else {
        (g.pstate >> 2) & 0b11
    };
    let from_el1 = from_el == 1;

    // AArch64.TakeException: the vector offset for a synchronous exception.
    let vector = if !from_el1 {
        if from_aarch32 { 0x600 } else { 0x400 }
    } else if g.pstate & 1 != 0 {
        0x200 // current EL with SP_ELx
    } else {
        0x000 // current EL with SP_EL0
    };

    // ESR_EL1. IL is RES1 for EC 0x00 and for aborts with ISV = 0 (D24.2.40).
    let (esr, far) = match exception {
        SyncException::Undefined => ((EC_UNKNOWN << EC_SHIFT) | ESR_IL, None),
        SyncException::DataAbort { far, write } => {
            let ec = if from_el1 { EC_DABT_CUR } else { EC_DABT_LOWER };
            let wnr = if write { ISS_WNR } else { 0 };
            ((ec << EC_SHIFT) | ESR_IL | wnr | FSC_SEA, Some(far))
        }
        SyncException::InstructionAbort { far } => {
            let ec = if from_el1 { EC_IABT_CUR } else { EC_IABT_LOWER };
            ((ec << EC_SHIFT) | ESR_IL | FSC_SEA, Some(far))
        }
    };

    // The new PSTATE: EL1h, DAIF masked, IL and SS clear, then the optional
    // fields as TakeException sets them.
    // From AArch32 only NZCV carries over: the other AArch32 PSTATE fields (IT,
    // T, E, GE, Q) have no AArch64 counterpart and the AArch64-only ones start
    // from their entry values.
    let kept = if from_aarch32 {
        g.pstate & NZCV
    } else {
        g.pstate & !(M_MASK | M_NRW | IL | SS)
    };
    let mut p = kept | M_EL1H | DAIF;
    if f.pan && g.sctlr_el1 & SCTLR_SPAN == 0 {
        p |= PAN;
    }
    if f.uao {
        p &= !UAO;
    }
    if f.bti {
        p &= !BTYPE;
    }
    if f.ssbs {
        p = (p & !SSBS)
            | if g.sctlr_el1 & SCTLR_DSSBS != 0 {
                SSBS
            } else {
                0
            };
    }
    if f.mte {
        p |= TCO;
    }

    Injection {
        esr_el1: esr,
        far_el1: far,
        elr_el1: g.pc,
        spsr_el1: g.pstate,
        pc: g.vbar_el1 + vector,
        pstate: p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: PStateFeatures = PStateFeatures {
        pan: true,
        uao: true,
        ssbs: true,
        bti: true,
        mte: false,
    };

    fn el1h(extra: u64) -> GuestEl1 {
        GuestEl1 {
            pc: 0x4008_1000,
            pstate: 0b0101 | extra,
            vbar_el1: 0x4009_0000,
            sctlr_el1: 0,
        }
    }

    #[test]
    fn undef_from_el1h_uses_current_spx_vector() {
        let g = el1h(0x2000_0000); // C flag set, interrupts unmasked
        let i = inject(SyncException::Undefined, &g, &PStateFeatures::default());
        assert_eq!(i.esr_el1, 0x0200_0000, "EC 0, IL 1");
        assert_eq!(i.far_el1, None);
        assert_eq!(i.elr_el1, 0x4008_1000);
        assert_eq!(i.spsr_el1, g.pstate);
        assert_eq!(i.pc, 0x4009_0200);
        assert_eq!(i.pstate, 0x2000_0000 | 0x3c5, "flags kept, EL1h, DAIF set");
    }

    #[test]
    fn vector_depends_on_origin() {
        let f = PStateFeatures::default();
        let mut g = el1h(0);
        g.pstate = 0b0100; // EL1t
        assert_eq!(inject(SyncException::Undefined, &g, &f).pc, 0x4009_0000);
        g.pstate = 0b0000; // EL0t, AArch64
        assert_eq!(inject(SyncException::Undefined, &g, &f).pc, 0x4009_0400);
        g.pstate = 0b1_0000 | (1 << 5) | (0x3f << 10) | NZCV; // AArch32 User, Thumb, IT
        let i = inject(SyncException::Undefined, &g, &f);
        assert_eq!(i.pc, 0x4009_0600);
        assert_eq!(i.pstate, NZCV | 0x3c5, "only NZCV survives from AArch32");
    }

    #[test]
    fn data_abort_ec_and_iss() {
        let g = el1h(0);
        let i = inject(
            SyncException::DataAbort {
                far: 0x3000_0000,
                write: true,
            },
            &g,
            &PStateFeatures::default(),
        );
        // EC 0x25, IL, WnR, DFSC 0x10: ESR 0x9600_0050.
        assert_eq!(i.esr_el1, 0x9600_0050);
        assert_eq!(i.far_el1, Some(0x3000_0000));
        let mut g0 = g;
        g0.pstate = 0;
        let i = inject(
            SyncException::DataAbort {
                far: 8,
                write: false,
            },
            &g0,
            &PStateFeatures::default(),
        );
        assert_eq!(i.esr_el1 >> 26, 0x24, "from EL0: lower-EL EC");
        assert_eq!(i.esr_el1 & 0x3f, 0x10);
        let i = inject(
            SyncException::InstructionAbort { far: 0x10 },
            &g,
            &PStateFeatures::default(),
        );
        assert_eq!(i.esr_el1, 0x8600_0010);
    }

    #[test]
    fn pan_set_unless_span_and_ssbs_follows_dssbs() {
        let mut g = el1h(SSBS | UAO | (0b10 << 10));
        let i = inject(SyncException::Undefined, &g, &ALL);
        assert_ne!(i.pstate & PAN, 0, "SPAN = 0 sets PAN");
        assert_eq!(i.pstate & UAO, 0);
        assert_eq!(i.pstate & BTYPE, 0);
        assert_eq!(i.pstate & SSBS, 0, "DSSBS = 0");
        g.sctlr_el1 = SCTLR_SPAN | SCTLR_DSSBS;
        let i = inject(SyncException::Undefined, &g, &ALL);
        assert_eq!(i.pstate & PAN, 0, "SPAN = 1 leaves PAN");
        assert_ne!(i.pstate & SSBS, 0);
        // Without FEAT_PAN nothing is set.
        g.sctlr_el1 = 0;
        let i = inject(SyncException::Undefined, &g, &PStateFeatures::default());
        assert_eq!(i.pstate & PAN, 0);
    }
}
