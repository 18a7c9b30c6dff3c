//! List registers: how a virtual interrupt is written into ICH_LR<n>_EL2 before
//! entry, and how the state the guest left in them is folded back into the
//! software state after an exit.
//!
//! The model is "the LRs are a cache, written whole at entry and read back whole
//! at exit": `sync` runs first on every exit (so software state is the only
//! truth while the hypervisor runs), [`choose`] and `load` decide what goes into the LRs just
//! before entry. Between the two the LRs are cleared, which also removes every
//! maintenance-interrupt condition they could raise while the hypervisor runs.
//!
//! GICv3/v4 (IHI 0069) rules this follows:
//! - 11.2.x (ICH_LR<n>_EL2): State 0b00 invalid, 0b01 pending, 0b10 active, 0b11
//!   pending and active; HW = 1 links the virtual interrupt to physical INTID
//!   `pINTID`, whose deactivation the guest's deactivation performs; with HW = 0,
//!   bit 41 (EOI) asks for a maintenance interrupt when the guest deactivates it.
//! - ICH_LR<n>_EL2: with HW = 1 the pending+active state must not be used (the
//!   pending state of a hardware interrupt is held by the physical GIC), so a
//!   hardware-linked LR is written either pending or active.
//! - An INTID must not be in more than one LR of a CPU interface (UNPREDICTABLE
//!   otherwise), and an active interrupt must stay in an LR until deactivated,
//!   else the guest's EOI finds no LR (ICH_HCR_EL2.EOIcount counts it, the state is
//!   lost). So active interrupts are placed first and never evicted.
//! - ICH_HCR_EL2.UIE: a maintenance interrupt while at most one LR is valid: set
//!   when pending interrupts did not fit, so the guest exits to have them loaded
//!   once it has drained the LRs. NPIE (no pending LR) is not used: when the
//!   LRs hold only active interrupts and more wait, NPIE would fire at once and
//!   again after every entry (active interrupts are never evicted), a livelock;
//!   UIE waits until the guest has deactivated all but one.

use aarch64_cpu::registers::{ICH_HCR_EL2, ICH_LR0_EL2};
use alloc::vec::Vec;
use tock_registers::LocalRegisterCopy;

use super::irq::{Irq, Trigger};

/// One list register's value, with the fields aarch64-cpu names for ICH_LR0_EL2
/// (every ICH_LR<n>_EL2 has that layout).
pub type IchLr = LocalRegisterCopy<u64, ICH_LR0_EL2::Register>;

/// What an LR says about its interrupt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LrState {
    pub vintid: u32,
    pub pending: bool,
    pub active: bool,
    /// Hardware-linked, with this physical INTID.
    pub hw: Option<u32>,
    /// HW = 0 and EOI = 1: deactivation raises a maintenance interrupt.
    pub eoi_maintenance: bool,
    pub priority: u8,
}

impl LrState {
    pub fn is_valid(&self) -> bool {
        self.pending || self.active
    }
}

/// Decodes an ICH_LR<n>_EL2 value.
pub fn decode(value: u64) -> LrState {
    let lr = IchLr::new(value);
    let state = lr.read(ICH_LR0_EL2::State);
    let hw = lr.is_set(ICH_LR0_EL2::HW);
    LrState {
        vintid: lr.read(ICH_LR0_EL2::vINTID) as u32,
        pending: state & 0b01 != 0,
        active: state & 0b10 != 0,
        hw: hw.then(|| lr.read(ICH_LR0_EL2::pINTID) as u32),
        // Bit 41 is EOI only when HW = 0; with HW = 1 it is part of pINTID.
        eoi_maintenance: !hw && lr.is_set(ICH_LR0_EL2::EOI),
        priority: lr.read(ICH_LR0_EL2::Priority) as u8,
    }
}

/// Encodes an LR for a Group 1 virtual interrupt.
pub fn encode(s: &LrState) -> u64 {
    let mut lr = IchLr::new(0);
    let state = match (s.pending, s.active) {
        (false, false) => ICH_LR0_EL2::State::Invalid,
        (true, false) => ICH_LR0_EL2::State::Pending,
        (false, true) => ICH_LR0_EL2::State::Active,
        (true, true) => ICH_LR0_EL2::State::PendingAndActive,
    };
    lr.modify(
        state
            + ICH_LR0_EL2::Group::SET
            + ICH_LR0_EL2::Priority.val(s.priority as u64)
            + ICH_LR0_EL2::vINTID.val(s.vintid as u64),
    );
    match s.hw {
        Some(p) => lr.modify(ICH_LR0_EL2::HW::SET + ICH_LR0_EL2::pINTID.val(p as u64)),
        None if s.eoi_maintenance => lr.modify(ICH_LR0_EL2::EOI::SET),
        None => {}
    }
    lr.get()
}

/// What the hypervisor wrote into one LR at the last entry, to interpret what the
/// guest left there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LrShadow {
    pub vintid: u32,
    /// The software pending latch was moved into this LR (cleared in software),
    /// so an LR still pending at exit gives it back.
    pub latch_moved: bool,
}

/// Folds the LR value read at exit back into the interrupt's software state.
/// `vcpu` is the vCPU whose LR it was.
pub(crate) fn sync(irq: &mut Irq, shadow: &LrShadow, value: u64, vcpu: usize) {
    let s = decode(value);
    irq.lr_vcpu = None;
    if s.hw.is_some() {
        // The physical GIC holds the pending state of a hardware interrupt: while
        // the LR is still pending the interrupt is still waiting; once the guest
        // acknowledged it, only the active state remains (and is the physical
        // interrupt's too); once deactivated, both are gone, and a still-asserted
        // physical line will be signalled to EL2 again.
        irq.hw_pending = s.pending || irq.hw_refired;
        irq.hw_refired = false;
        irq.active_hw = s.active;
        irq.active = s.active;
    } else {
        // A pending latch moved into the LR comes back if the guest has not
        // acknowledged it; acknowledging consumes it (an edge, an SGI, or an
        // ISPENDR-set level interrupt: IHI 0069, GICD_ISPENDR<n>/GICD_ICPENDR<n>).
        if s.pending && shadow.latch_moved {
            irq.pending_latch = true;
        }
        irq.active = s.active;
        irq.active_hw = false;
    }
    irq.active_vcpu = irq.active.then_some(vcpu);
}

/// An interrupt that wants an LR at this entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub intid: u32,
    pub active: bool,
    pub priority: u8,
}

impl Candidate {
    /// Active first (they must keep an LR), then by priority (lower value is
    /// higher priority, IHI 0069, "Interrupt prioritization"), then by INTID for a stable order.
    fn key(&self) -> (bool, u8, u32) {
        (!self.active, self.priority, self.intid)
    }
}

/// Chooses which candidates get the `nr_lrs` list registers. Returns the chosen
/// INTIDs in LR order and whether some had to wait.
pub fn choose(candidates: &mut [Candidate], nr_lrs: usize) -> (Vec<u32>, bool) {
    let (n, overflow) = choose_in_place(candidates, nr_lrs);
    (candidates[..n].iter().map(|c| c.intid).collect(), overflow)
}

/// As [`choose`], without allocating: sorts `candidates` so the chosen ones come
/// first and returns how many are chosen and whether some are left over.
pub fn choose_in_place(candidates: &mut [Candidate], nr_lrs: usize) -> (usize, bool) {
    candidates.sort_unstable_by_key(Candidate::key);
    (candidates.len().min(nr_lrs), candidates.len() > nr_lrs)
}

/// Whether an interrupt wants an LR: active (it must stay deactivatable), or
/// pending and able to be forwarded (enabled, its group enabled).
pub(crate) fn wants_lr(irq: &Irq, forwarding: bool) -> bool {
    irq.active || (irq.pending() && irq.enabled && forwarding)
}

/// Builds the LR for `irq` and updates its software state for the move into the
/// LR. `forwarding` is whether its group is enabled at the distributor.
pub(crate) fn load(irq: &mut Irq, intid: u32, forwarding: bool, vcpu: usize) -> (u64, LrShadow) {
    let may_pend = irq.enabled && forwarding;
    irq.lr_vcpu = Some(vcpu);
    let hw_linked = irq
        .hw_intid
        .filter(|_| irq.active_hw || (irq.hw_pending && may_pend && !irq.active));
    if let Some(p) = hw_linked {
        // Pending or active, never both (see the module doc); a software latch
        // waits until the hardware-linked instance is deactivated.
        let s = LrState {
            vintid: intid,
            pending: !irq.active_hw,
            active: irq.active_hw,
            hw: Some(p),
            eoi_maintenance: false,
            priority: irq.priority,
        };
        return (
            encode(&s),
            LrShadow {
                vintid: intid,
                latch_moved: false,
            },
        );
    }
    let pending =
        may_pend && (irq.pending_latch || (irq.trigger == Trigger::Level && irq.line_level));
    let latch_moved = pending && irq.pending_latch;
    if latch_moved {
        irq.pending_latch = false;
    }
    let s = LrState {
        vintid: intid,
        pending,
        active: irq.active,
        hw: None,
        // A level-sensitive interrupt whose line may still be asserted after the
        // guest deactivates it must be sampled again then: ask for a maintenance
        // interrupt on deactivation (ICH_LR<n>_EL2.EOI).
        eoi_maintenance: irq.trigger == Trigger::Level,
        priority: irq.priority,
    };
    (
        encode(&s),
        LrShadow {
            vintid: intid,
            latch_moved,
        },
    )
}

/// ICH_HCR_EL2 for entry: the virtual CPU interface enabled, and the underflow
/// maintenance interrupt when interrupts wait for an LR.
pub fn hcr_for_entry(overflow: bool) -> u64 {
    let mut hcr = LocalRegisterCopy::<u64, ICH_HCR_EL2::Register>::new(0);
    hcr.modify(ICH_HCR_EL2::En::SET);
    if overflow {
        hcr.modify(ICH_HCR_EL2::UIE::SET);
    }
    hcr.get()
}

/// ICH_HCR_EL2 while the hypervisor runs: enabled, with no maintenance condition,
/// so a level maintenance interrupt cannot stay asserted at EL2.
pub fn hcr_at_exit() -> u64 {
    hcr_for_entry(false)
}
