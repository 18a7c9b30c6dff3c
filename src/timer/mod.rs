//! The guest's generic timers: the EL1 virtual timer (CNTV_*, PPI 27) and the
//! EL1 physical timer (CNTP_*, PPI 30), both the guest's own registers.
//!
//! # Direct access, hardware-linked interrupts
//!
//! The guest programs CNTV_CTL_EL0/CNTV_CVAL_EL0 and CNTP_CTL_EL0/
//! CNTP_CVAL_EL0/CNTP_TVAL_EL0 directly (CNTHCTL_EL2.EL1PCEN = EL1PCTEN = 1,
//! vm::controls): nothing traps. The virtual timer compares against CNTVCT =
//! CNTPCT - CNTVOFF_EL2 (per VM), the physical timer against CNTPCT, the
//! system counter itself (which is what an EL1 without FEAT_ECV's CNTPOFF sees
//! on any machine, and what KVM gives its guests' "direct" physical timer).
//! The hypervisor's own timer is the EL2 physical timer (CNTHP, PPI 26), a
//! separate register set, so the guest's timers are never shared with it.
//!
//! While a vCPU runs, its timers are the CPU's, and their outputs are the
//! CPU's physical PPIs 27 and 30. The interrupt must not keep firing at EL2
//! while the guest handles it. Of the two ways KVM has used, this one is
//! chosen: **a hardware-linked list register**. When a physical timer PPI is
//! taken at EL2, the hypervisor acknowledges it and only drops its priority
//! (ICC_EOIR1_EL1 with ICC_CTLR_EL1.EOImode = 1), leaving it active at the
//! physical GIC, so it cannot be signalled again; the virtual PPI is made
//! pending with ICH_LR<n>_EL2.HW = 1 and pINTID = the physical PPI
//! ([`on_timer_irq`]). When the guest deactivates the virtual interrupt (its
//! EOI), the GIC deactivates the physical one in the same step (IHI 0069,
//! ICH_LR<n>_EL2.HW); if the guest has re-armed or masked the timer by then,
//! nothing more happens, and if the condition still holds, the physical PPI
//! fires again. No exit on the guest's EOI, and the guest's CTL registers are
//! never touched.
//!
//! When a vCPU leaves its CPU (another vCPU's turn, CPU_OFF, its VM
//! stopping), its timer registers are saved and the CPU's timers disabled, and
//! the physical PPIs' active state is saved and cleared, so nothing of the
//! vCPU fires or stays active for the next one (KVM's
//! `kvm_timer_vcpu_put`/`load` do the same); [`deadline`] tells the scheduler
//! when an absent, waiting vCPU's timer would fire, and the EL2 timer wakes the
//! CPU then. [`asserted`] reads the timer condition from a CTL value (ENABLE =
//! 1, IMASK = 0, ISTATUS = 1: Arm ARM, "the timer interrupt is asserted").

use aarch64_cpu::registers::CNTV_CTL_EL0;
use tock_registers::LocalRegisterCopy;

use crate::vgic::{Vgic, VgicError};

/// The virtual timer's PPI (INTID 27).
pub const VIRTUAL_TIMER_INTID: u32 = crate::vgic::host::VIRTUAL_TIMER_INTID;
/// The EL1 physical timer's PPI (Non-secure, INTID 30).
pub const PHYSICAL_TIMER_INTID: u32 = crate::vgic::host::PHYSICAL_TIMER_INTID;

/// CNTV_CTL_EL0 (and CNTP_CTL_EL0, same layout) as a register copy.
type TimerCtl = LocalRegisterCopy<u64, CNTV_CTL_EL0::Register>;

/// Whether a timer control value says its interrupt is asserted: enabled,
/// condition met, not masked (Arm ARM, CNTV_CTL_EL0.ISTATUS/IMASK).
pub fn asserted(ctl: u64) -> bool {
    let c = TimerCtl::new(ctl);
    c.is_set(CNTV_CTL_EL0::ENABLE)
        && c.is_set(CNTV_CTL_EL0::ISTATUS)
        && !c.is_set(CNTV_CTL_EL0::IMASK)
}

/// Whether the interrupt of a timer whose registers are saved (not in the
/// hardware) would be asserted at physical count `now`: enabled, unmasked,
/// and `now - offset >= cval` (the timer condition, Arm ARM: "the counter
/// value is greater than or equal to the compare value", counts unsigned).
/// `offset` is CNTVOFF_EL2 for the virtual timer, 0 for the physical one.
pub fn fires_by(ctl: u64, cval: u64, offset: u64, now: u64) -> bool {
    deadline(ctl, cval, offset).is_some_and(|d| now >= d)
}

/// The physical count at which a saved timer's interrupt asserts, if it is
/// enabled and unmasked (ISTATUS of a saved CTL is not trusted: it is
/// recomputed from CVAL).
pub fn deadline(ctl: u64, cval: u64, offset: u64) -> Option<u64> {
    let c = TimerCtl::new(ctl);
    (c.is_set(CNTV_CTL_EL0::ENABLE) && !c.is_set(CNTV_CTL_EL0::IMASK))
        .then(|| cval.saturating_add(offset))
}

/// A physical timer PPI (27 or 30) was taken on vCPU `vcpu`'s CPU and left
/// active there: make the virtual one pending, hardware-linked.
pub fn on_timer_irq(vgic: &mut Vgic, vcpu: usize, intid: u32) -> Result<(), VgicError> {
    vgic.inject_hw(Some(vcpu), intid)
}

/// With the LRs read back, the guest's CNTV_CTL_EL0 and CNTP_CTL_EL0 as they
/// are now: a timer interrupt that is pending but no longer asserted (the
/// guest masked, disabled or re-armed the timer before taking it) is
/// withdrawn, and its physical PPI handed back for deactivation, as KVM
/// resamples its mapped timer lines. This spares the guest an interrupt its
/// timer no longer signals.
pub fn resample(vgic: &mut Vgic, vcpu: usize, cntv_ctl: u64, cntp_ctl: u64) {
    let _ = vgic.resample_hw(vcpu, VIRTUAL_TIMER_INTID, asserted(cntv_ctl));
    let _ = vgic.resample_hw(vcpu, PHYSICAL_TIMER_INTID, asserted(cntp_ctl));
}

/// Links every vCPU's virtual PPIs 27 and 30 to the same physical PPIs.
pub fn link_timers(vgic: &mut Vgic) -> Result<(), VgicError> {
    for v in 0..vgic.nr_vcpus() {
        vgic.link_hw(Some(v), VIRTUAL_TIMER_INTID, VIRTUAL_TIMER_INTID)?;
        vgic.link_hw(Some(v), PHYSICAL_TIMER_INTID, PHYSICAL_TIMER_INTID)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
