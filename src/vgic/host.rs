//! The physical GICv3 as the hypervisor drives it: the register values and
//! decisions of `crate::arch::aarch64::gic`, kept here as plain functions so they
//! are tested on the host. The arch layer only reads and writes them.

use aarch64_cpu::registers::{ICC_SRE_EL2, ICH_VTR_EL2};
use tock_registers::{LocalRegisterCopy, register_bitfields};

use super::ICH_VMCR_EL2;
use super::dist::GICD_TYPER;
use super::redist::{GICR_STRIDE, GICR_TYPER};

/// The maintenance interrupt of the virtual CPU interface (PPI 9, the SBSA and
/// QEMU `virt` choice; the host device tree names it).
pub const MAINTENANCE_INTID: u32 = 25;
/// The EL2 physical timer (CNTHP, PPI 10).
pub const HYP_TIMER_INTID: u32 = 26;
/// The EL1 virtual timer (CNTV, PPI 11): the guest's timer, hardware-linked.
pub const VIRTUAL_TIMER_INTID: u32 = 27;
/// The EL1 physical timer (CNTP, PPI 14): the guest's too, hardware-linked.
pub const PHYSICAL_TIMER_INTID: u32 = 30;
/// The PMU overflow interrupt (PPI 7): the guest's PMU's, hardware-linked.
pub const PMU_INTID: u32 = crate::sysreg::pmu::PMU_INTID;
/// The SGI the hypervisor sends to make another CPU exit its guest (or leave
/// WFI). SGIs 0-7 are the Non-secure world's; 8-15 may belong to Secure firmware
/// (Arm's convention, which Linux also follows).
pub const KICK_SGI: u32 = 1;
/// INTIDs 1020-1023 are special; 1023 is "no pending interrupt" (IHI 0069, "Special INTIDs").
pub const SPURIOUS_INTID: u32 = 1023;

register_bitfields! [u64,
    /// ICC_CTLR_EL1 (IHI 0069); aarch64-cpu names only ExtRange.
    pub ICC_CTLR_EL1 [
        RSS OFFSET(18) NUMBITS(1) [],
        PRIbits OFFSET(8) NUMBITS(3) [],
        PMHE OFFSET(6) NUMBITS(1) [],
        EOImode OFFSET(1) NUMBITS(1) [],
        CBPR OFFSET(0) NUMBITS(1) [],
    ],
    /// ICC_SRE_EL1 (IHI 0069).
    pub ICC_SRE_EL1 [
        DIB OFFSET(2) NUMBITS(1) [],
        DFB OFFSET(1) NUMBITS(1) [],
        SRE OFFSET(0) NUMBITS(1) [],
    ],
    /// ICH_MISR_EL2 (IHI 0069): why the maintenance interrupt is asserted.
    pub ICH_MISR_EL2 [
        VGrp1D OFFSET(7) NUMBITS(1) [],
        VGrp1E OFFSET(6) NUMBITS(1) [],
        VGrp0D OFFSET(5) NUMBITS(1) [],
        VGrp0E OFFSET(4) NUMBITS(1) [],
        NP OFFSET(3) NUMBITS(1) [],
        LRENP OFFSET(2) NUMBITS(1) [],
        U OFFSET(1) NUMBITS(1) [],
        EOI OFFSET(0) NUMBITS(1) [],
    ],
];

register_bitfields! [u32,
    /// The physical GICD_CTLR bits the hypervisor sets. The Non-secure view with
    /// DS = 0 has EnableGrp1 [0], EnableGrp1A [1], ARE_NS [4]; the DS = 1 view has
    /// EnableGrp0 [0], EnableGrp1 [1], ARE [4] (IHI 0069). Setting bits 0, 1
    /// and 4 enables affinity routing and Non-secure Group 1 in either view.
    pub GICD_CTLR_HOST [
        RWP OFFSET(31) NUMBITS(1) [],
        ARE OFFSET(4) NUMBITS(1) [],
        Bit1 OFFSET(1) NUMBITS(1) [],
        Bit0 OFFSET(0) NUMBITS(1) [],
    ],
    /// GICR_CTLR (IHI 0069).
    pub GICR_CTLR_HOST [
        UWP OFFSET(31) NUMBITS(1) [],
        RWP OFFSET(3) NUMBITS(1) [],
        EnableLPIs OFFSET(0) NUMBITS(1) [],
    ],
];

/// ICC_SRE_EL2: system-register interface at EL2 (SRE), EL1 may use its own
/// ICC_SRE_EL1 without trapping (Enable), IRQ/FIQ bypass disabled (DIB, DFB).
pub fn icc_sre_el2() -> u64 {
    let mut r = LocalRegisterCopy::<u64, ICC_SRE_EL2::Register>::new(0);
    r.modify(
        ICC_SRE_EL2::SRE::SET
            + ICC_SRE_EL2::ENABLE::SET
            + ICC_SRE_EL2::DIB::SET
            + ICC_SRE_EL2::DFB::SET,
    );
    r.get()
}

/// ICC_SRE_EL1 for a guest: the system-register interface (a GICv3 guest never
/// uses the memory-mapped GICC).
pub fn icc_sre_el1() -> u64 {
    let mut r = LocalRegisterCopy::<u64, ICC_SRE_EL1::Register>::new(0);
    r.modify(ICC_SRE_EL1::SRE::SET + ICC_SRE_EL1::DIB::SET + ICC_SRE_EL1::DFB::SET);
    r.get()
}

/// ICC_CTLR_EL1 at EL2 (the hypervisor's own CPU interface, accessed at EL2 as
/// ICC_CTLR_EL1): EOImode = 1, so ICC_EOIR1_EL1 only drops priority and
/// ICC_DIR_EL1 deactivates. `current` keeps the read-only and other fields.
pub fn icc_ctlr_el1(current: u64) -> u64 {
    let mut r = LocalRegisterCopy::<u64, ICC_CTLR_EL1::Register>::new(current);
    r.modify(ICC_CTLR_EL1::EOImode::SET + ICC_CTLR_EL1::CBPR::CLEAR);
    r.get()
}

/// GICD_CTLR to write: ARE and Non-secure Group 1 (see [`GICD_CTLR_HOST`]).
pub fn gicd_ctlr_enable() -> u32 {
    let mut r = LocalRegisterCopy::<u32, GICD_CTLR_HOST::Register>::new(0);
    r.modify(GICD_CTLR_HOST::ARE::SET + GICD_CTLR_HOST::Bit1::SET + GICD_CTLR_HOST::Bit0::SET);
    r.get()
}

/// Whether a GICD_CTLR read says a register write is still in progress
/// (GICD_CTLR.RWP, bit 31).
pub fn rwp(ctlr: u32) -> bool {
    LocalRegisterCopy::<u32, GICD_CTLR_HOST::Register>::new(ctlr).is_set(GICD_CTLR_HOST::RWP)
}

/// Whether a GICR_CTLR read says a write (to GICR_ICENABLER0 or the LPI
/// controls) is still in progress (GICR_CTLR.RWP, bit 3; bit 31 is UWP).
pub fn gicr_rwp(ctlr: u32) -> bool {
    LocalRegisterCopy::<u32, GICR_CTLR_HOST::Register>::new(ctlr).is_set(GICR_CTLR_HOST::RWP)
}

/// GICD_IROUTER<n> that routes an SPI to the one PE `mpidr` (IRM = 0, Aff3 at
/// [39:32], Aff2..Aff0 at [23:0], as in MPIDR_EL1).
pub fn irouter_for(mpidr: u64) -> u64 {
    crate::sysreg::Mpidr::new(mpidr).affinity()
}

/// Whether a physical GICR_TYPER belongs to the PE with `mpidr`.
pub fn redistributor_is(typer: u64, mpidr: u64) -> bool {
    let t = LocalRegisterCopy::<u64, GICR_TYPER::Register>::new(typer);
    let aff = t.read(GICR_TYPER::Affinity_Value);
    let want = ((mpidr >> 32) & 0xff) << 24 | (mpidr & 0xff_ffff);
    aff == want
}

/// Whether a GICR_TYPER is the last redistributor of its region.
pub fn redistributor_is_last(typer: u64) -> bool {
    LocalRegisterCopy::<u64, GICR_TYPER::Register>::new(typer).is_set(GICR_TYPER::Last)
}

/// The distance to the next redistributor: two 64 KiB frames, four when the
/// redistributor has the GICv4 VLPI frames (GICR_TYPER.VLPIS, IHI 0069).
pub fn redistributor_stride(typer: u64) -> u64 {
    if LocalRegisterCopy::<u64, GICR_TYPER::Register>::new(typer).is_set(GICR_TYPER::VLPIS) {
        2 * GICR_STRIDE
    } else {
        GICR_STRIDE
    }
}

/// List registers the virtual CPU interface has (ICH_VTR_EL2.ListRegs + 1).
pub fn nr_list_registers(vtr: u64) -> usize {
    LocalRegisterCopy::<u64, ICH_VTR_EL2::Register>::new(vtr).read(ICH_VTR_EL2::ListRegs) as usize
        + 1
}

/// Virtual priority bits (ICH_VTR_EL2.PRIbits + 1).
pub fn virtual_priority_bits(vtr: u64) -> u8 {
    LocalRegisterCopy::<u64, ICH_VTR_EL2::Register>::new(vtr).read(ICH_VTR_EL2::PRIbits) as u8 + 1
}

/// ICH_AP0R<n>_EL2 / ICH_AP1R<n>_EL2 registers implemented: 1, 2 or 4 for 5, 6
/// or 7 preemption bits (IHI 0069: the others are UNDEFINED to access).
pub fn nr_active_priority_registers(vtr: u64) -> usize {
    let pre_bits =
        LocalRegisterCopy::<u64, ICH_VTR_EL2::Register>::new(vtr).read(ICH_VTR_EL2::PREbits) + 1;
    1 << pre_bits.clamp(5, 7).saturating_sub(5)
}

/// INTIDs the physical distributor implements, SGIs and PPIs included
/// ((GICD_TYPER.ITLinesNumber + 1) * 32, at most 1020).
pub fn gicd_interrupt_lines(typer: u32) -> u32 {
    let t = LocalRegisterCopy::<u32, GICD_TYPER::Register>::new(typer);
    ((t.read(GICD_TYPER::ITLinesNumber) + 1) * 32).min(1020)
}

/// ICH_VMCR_EL2 for a vCPU at reset: priority mask 0 (everything masked), both
/// groups disabled, EOImode 0, and the binary points at their minimum values,
/// which is what ICC_BPR0/1_EL1 reset to (IHI 0069, ICC_BPR0_EL1: the
/// minimum is 7 - preemption bits; ICC_BPR1_EL1's is one more).
pub fn ich_vmcr_reset(vtr: u64) -> u64 {
    let pre_bits =
        LocalRegisterCopy::<u64, ICH_VTR_EL2::Register>::new(vtr).read(ICH_VTR_EL2::PREbits) + 1;
    let min_bpr0 = 7u64.saturating_sub(pre_bits);
    let mut r = LocalRegisterCopy::<u64, ICH_VMCR_EL2::Register>::new(0);
    r.modify(ICH_VMCR_EL2::VBPR0.val(min_bpr0) + ICH_VMCR_EL2::VBPR1.val((min_bpr0 + 1).min(7)));
    r.get()
}

/// A physical SPI given to a VM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PassthroughSpi {
    pub pintid: u32,
    pub vm: usize,
    /// The INTID the guest sees it as.
    pub vintid: u32,
}

/// What a physical interrupt acknowledged at EL2 is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhysIrq {
    /// 1020-1023: nothing to do (no EOI either; IHI 0069, "Special INTIDs").
    Spurious,
    Maintenance,
    /// One of the guest's timers on this CPU (PPI 27 or 30): inject,
    /// hardware-linked.
    GuestTimer(u32),
    /// The PMU's overflow interrupt (PPI 23) on this CPU: the loaded vCPU's
    /// PMU overflowed; inject, hardware-linked.
    GuestPmu,
    /// The EL2 physical timer: the hypervisor's own deadlines (scheduling,
    /// absent vCPUs' timers, the console).
    HypTimer,
    /// Another CPU asked this one to exit (re-read interrupt state).
    Kick,
    /// A VM's device: inject, hardware-linked, as `vintid`.
    Passthrough {
        vm: usize,
        vintid: u32,
    },
    /// The hypervisor's own (its UART, ...).
    Host(u32),
}

/// How the hypervisor completes an acknowledged interrupt (ICC_CTLR_EL1.EOImode
/// = 1, so the two steps are separate writes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// Nothing (a spurious INTID is not acknowledged).
    None,
    /// ICC_EOIR1_EL1 only: the interrupt stays active at the physical GIC until
    /// the guest deactivates its hardware-linked virtual interrupt.
    PriorityDropOnly,
    /// ICC_EOIR1_EL1 then ICC_DIR_EL1.
    DropAndDeactivate,
}

/// Identifies a physical interrupt.
pub fn classify(intid: u32, passthrough: &[PassthroughSpi]) -> PhysIrq {
    match intid {
        1020..=1023 => PhysIrq::Spurious,
        MAINTENANCE_INTID => PhysIrq::Maintenance,
        VIRTUAL_TIMER_INTID | PHYSICAL_TIMER_INTID => PhysIrq::GuestTimer(intid),
        PMU_INTID => PhysIrq::GuestPmu,
        HYP_TIMER_INTID => PhysIrq::HypTimer,
        KICK_SGI => PhysIrq::Kick,
        _ => match passthrough.iter().find(|p| p.pintid == intid) {
            Some(p) => PhysIrq::Passthrough {
                vm: p.vm,
                vintid: p.vintid,
            },
            None => PhysIrq::Host(intid),
        },
    }
}

impl PhysIrq {
    pub fn completion(self) -> Completion {
        match self {
            PhysIrq::Spurious => Completion::None,
            PhysIrq::GuestTimer(_) | PhysIrq::GuestPmu | PhysIrq::Passthrough { .. } => {
                Completion::PriorityDropOnly
            }
            _ => Completion::DropAndDeactivate,
        }
    }
}

/// Decodes ICH_MISR_EL2 for logs: (EOI, underflow, no-pending, LR-entry-not-present).
pub fn misr_reasons(misr: u64) -> (bool, bool, bool, bool) {
    let r = LocalRegisterCopy::<u64, ICH_MISR_EL2::Register>::new(misr);
    (
        r.is_set(ICH_MISR_EL2::EOI),
        r.is_set(ICH_MISR_EL2::U),
        r.is_set(ICH_MISR_EL2::NP),
        r.is_set(ICH_MISR_EL2::LRENP),
    )
}

pub use super::sgi::sgi1r_for;
