//! The guest's generic timers.
//!
//! # Virtual timer (CNTV_*, PPI 27): the guest's own, hardware-linked
//!
//! The guest programs CNTV_CTL_EL0 / CNTV_CVAL_EL0 directly (they do not trap),
//! against CNTVCT = CNTPCT - CNTVOFF_EL2 (per VM). Each vCPU owns its physical CPU,
//! so the physical virtual timer *is* the guest's, and its output is the physical
//! PPI 27 of that CPU.
//!
//! The interrupt must not keep firing at EL2 while the guest handles it. Of the
//! two ways KVM has used, this one is chosen: **a hardware-linked list register**.
//! When physical PPI 27 is taken at EL2, the hypervisor acknowledges it and only
//! drops its priority (ICC_EOIR1_EL1 with ICC_CTLR_EL1.EOImode = 1), leaving it
//! active at the physical GIC, so it cannot be signalled again. Virtual PPI 27 is
//! made pending with ICH_LR<n>_EL2.HW = 1, pINTID = 27 ([`on_virtual_timer_irq`]).
//! When the guest deactivates the virtual interrupt (its EOI), the GIC deactivates
//! the physical one in the same step (IHI 0069 ICH_LR<n>_EL2.HW); if the guest
//! has re-armed or masked the timer by then, nothing more happens, and if the
//! timer condition still holds, physical PPI 27 fires again at EL2. No exit is
//! needed on the guest's EOI, and the guest's CNTV_CTL_EL0 is never touched.
//!
//! The other way, setting CNTV_CTL_EL0.IMASK on exit and injecting a software
//! LR, writes a register the guest reads back (IMASK) and needs an exit on the
//! guest's EOI to unmask; KVM needs that only when it cannot link (no physical
//! GIC interface for the vCPU), which does not apply with one vCPU per CPU.
//!
//! [`virtual_timer_asserted`] reads the same condition from CNTV_CTL_EL0 (ENABLE =
//! 1, IMASK = 0, ISTATUS = 1: Arm ARM, "the timer interrupt is asserted"). It
//! is for decisions, not delivery: an idle vCPU (trapped WFI) whose timer is
//! asserted must not sleep, since its physical PPI 27 is pending at EL2 and the
//! run loop wants to take it.
//!
//! # EL1 physical timer (CNTP_*, PPI 30): trapped and emulated
//!
//! CNTHCTL_EL2.EL1PCEN = 0 (vm::controls), so every guest access to CNTP_CTL_EL0,
//! CNTP_CVAL_EL0 and CNTP_TVAL_EL0 traps (EC 0x18). They are emulated rather than
//! left UNDEFINED: Linux uses the virtual timer at EL1, but firmware, test
//! suites and other kernels touch the physical one, and a Linux on a GIC with the
//! virtual timer PPI missing falls back to it. [`EmulatedPhysTimer`] keeps the
//! guest's CTL and CVAL, computes ISTATUS and TVAL from the physical count (the
//! guest's CNTPCT: EL1PCTEN = 1, no CNTPOFF), and drives virtual PPI 30 as a
//! level-sensitive software interrupt. When the timer is enabled, unmasked and
//! not yet expired, [`EmulatedPhysTimer::host_deadline`] gives the count at which
//! the hypervisor must look again; the integration programs the EL2 physical timer
//! (CNTHP_CVAL_EL2, CNTHP_CTL_EL2 = ENABLE, PPI 26) with it before entry, and on
//! PPI 26 (or any exit) calls [`EmulatedPhysTimer::sync`]. This is the shape of
//! KVM's emulated physical timer (a software timer backed by a host timer).

use aarch64_cpu::registers::{CNTHP_CTL_EL2, CNTV_CTL_EL0};
use tock_registers::LocalRegisterCopy;

use crate::sysreg::SysReg;
use crate::vgic::{Vgic, VgicError};
use crate::vm::exit::SysRegResult;

/// The virtual timer's PPI (INTID 27).
pub const VIRTUAL_TIMER_INTID: u32 = crate::vgic::host::VIRTUAL_TIMER_INTID;
/// The EL1 physical timer's PPI (Non-secure, INTID 30).
pub const PHYSICAL_TIMER_INTID: u32 = 30;

/// CNTP_TVAL_EL0: S3_3_C14_C2_0.
pub const CNTP_TVAL_EL0: SysReg = SysReg::new(3, 3, 14, 2, 0);
/// CNTP_CTL_EL0: S3_3_C14_C2_1.
pub const CNTP_CTL_EL0: SysReg = SysReg::new(3, 3, 14, 2, 1);
/// CNTP_CVAL_EL0: S3_3_C14_C2_2.
pub const CNTP_CVAL_EL0: SysReg = SysReg::new(3, 3, 14, 2, 2);

/// CNTV_CTL_EL0 (and CNTP_CTL_EL0, same layout) as a register copy.
type TimerCtl = LocalRegisterCopy<u64, CNTV_CTL_EL0::Register>;

/// Whether a timer control value says its interrupt is asserted: enabled,
/// condition met, not masked (Arm ARM, CNTV_CTL_EL0.ISTATUS/IMASK).
pub fn virtual_timer_asserted(cntv_ctl: u64) -> bool {
    let c = TimerCtl::new(cntv_ctl);
    c.is_set(CNTV_CTL_EL0::ENABLE)
        && c.is_set(CNTV_CTL_EL0::ISTATUS)
        && !c.is_set(CNTV_CTL_EL0::IMASK)
}

/// Physical PPI 27 was taken on vCPU `vcpu`'s CPU (and left active there): make
/// the virtual timer interrupt pending, hardware-linked. The vGIC must have
/// `link_hw(Some(vcpu), 27, 27)`.
pub fn on_virtual_timer_irq(vgic: &mut Vgic, vcpu: usize) -> Result<(), VgicError> {
    vgic.inject_hw(Some(vcpu), VIRTUAL_TIMER_INTID)
}

/// On exit (after `Vgic::save`), with the guest's CNTV_CTL_EL0 read on its CPU:
/// a virtual timer interrupt that is pending but no longer asserted (the guest
/// masked, disabled or re-armed the timer before taking it) is withdrawn, and
/// physical PPI 27 is handed back for deactivation, as KVM resamples its timer
/// line on exit. This spares the guest a spurious timer interrupt.
pub fn resample_virtual_timer(
    vgic: &mut Vgic,
    vcpu: usize,
    cntv_ctl: u64,
) -> Result<(), VgicError> {
    vgic.resample_hw(vcpu, VIRTUAL_TIMER_INTID, virtual_timer_asserted(cntv_ctl))
}

/// Links every vCPU's virtual PPI 27 to physical PPI 27.
pub fn link_virtual_timer(vgic: &mut Vgic) -> Result<(), VgicError> {
    for v in 0..vgic.nr_vcpus() {
        vgic.link_hw(Some(v), VIRTUAL_TIMER_INTID, VIRTUAL_TIMER_INTID)?;
    }
    Ok(())
}

/// One vCPU's emulated EL1 physical timer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EmulatedPhysTimer {
    /// CNTP_CTL_EL0.ENABLE and IMASK as the guest wrote them (ISTATUS is computed).
    ctl: u64,
    cval: u64,
}

impl EmulatedPhysTimer {
    pub fn new() -> Self {
        Self::default()
    }

    fn ctl(&self) -> TimerCtl {
        TimerCtl::new(self.ctl)
    }

    /// The timer condition: CNTPCT - CVAL >= 0 as unsigned counts (Arm ARM
    /// "the timer condition is met when the counter value is greater than or
    /// equal to the compare value").
    fn condition_met(&self, now: u64) -> bool {
        self.ctl().is_set(CNTV_CTL_EL0::ENABLE) && now >= self.cval
    }

    /// CNTP_CTL_EL0 as the guest reads it at count `now`.
    pub fn read_ctl(&self, now: u64) -> u64 {
        let mut c = self.ctl();
        // ISTATUS is UNKNOWN with ENABLE = 0; report 0 then.
        c.modify(if self.condition_met(now) {
            CNTV_CTL_EL0::ISTATUS::SET
        } else {
            CNTV_CTL_EL0::ISTATUS::CLEAR
        });
        c.get()
    }

    /// Whether the timer's interrupt output is asserted at `now`.
    pub fn asserted(&self, now: u64) -> bool {
        self.condition_met(now) && !self.ctl().is_set(CNTV_CTL_EL0::IMASK)
    }

    /// When the hypervisor must look again: the compare value, while the timer is
    /// enabled, unmasked and not yet expired (once expired, the virtual PPI 30 is
    /// asserted and stays so until the guest changes CTL or CVAL, which traps).
    pub fn host_deadline(&self, now: u64) -> Option<u64> {
        let c = self.ctl();
        (c.is_set(CNTV_CTL_EL0::ENABLE) && !c.is_set(CNTV_CTL_EL0::IMASK) && now < self.cval)
            .then_some(self.cval)
    }

    /// A trapped CNTP_* access at count `now`; `None` if `reg` is not one.
    pub fn trap(&mut self, reg: SysReg, write: bool, value: u64, now: u64) -> Option<SysRegResult> {
        Some(match (reg, write) {
            (CNTP_CTL_EL0, false) => SysRegResult::Read(self.read_ctl(now)),
            (CNTP_CTL_EL0, true) => {
                let w = TimerCtl::new(value);
                let mut c = TimerCtl::new(0);
                if w.is_set(CNTV_CTL_EL0::ENABLE) {
                    c.modify(CNTV_CTL_EL0::ENABLE::SET);
                }
                if w.is_set(CNTV_CTL_EL0::IMASK) {
                    c.modify(CNTV_CTL_EL0::IMASK::SET);
                }
                self.ctl = c.get();
                SysRegResult::Done
            }
            (CNTP_CVAL_EL0, false) => SysRegResult::Read(self.cval),
            (CNTP_CVAL_EL0, true) => {
                self.cval = value;
                SysRegResult::Done
            }
            // TVAL reads as the low 32 bits of CVAL - count, a signed value
            // (Arm ARM, CNTP_TVAL_EL0; bits [63:32] RES0).
            (CNTP_TVAL_EL0, false) => SysRegResult::Read(self.cval.wrapping_sub(now) & 0xffff_ffff),
            // A write sets CVAL = count + SignExtend(TVAL[31:0]).
            (CNTP_TVAL_EL0, true) => {
                self.cval = now.wrapping_add(value as u32 as i32 as i64 as u64);
                SysRegResult::Done
            }
            _ => return None,
        })
    }

    /// Drives virtual PPI 30 of `vcpu` from the timer's output at `now` (after a
    /// trapped access, on the EL2 timer's interrupt, or on any exit).
    pub fn sync(&self, vgic: &mut Vgic, vcpu: usize, now: u64) -> Result<(), VgicError> {
        vgic.set_level(Some(vcpu), PHYSICAL_TIMER_INTID, self.asserted(now))
    }

    /// CNTHP_CTL_EL2 and CNTHP_CVAL_EL2 to program before entry: the deadline if
    /// there is one, else the EL2 timer disabled.
    pub fn hyp_timer_setting(&self, now: u64) -> (u64, u64) {
        let mut c = LocalRegisterCopy::<u64, CNTHP_CTL_EL2::Register>::new(0);
        match self.host_deadline(now) {
            Some(cval) => {
                c.modify(CNTHP_CTL_EL2::ENABLE::SET);
                (c.get(), cval)
            }
            None => (c.get(), 0),
        }
    }
}

#[cfg(test)]
mod tests;
