//! Data cache maintenance by set/way (DC ISW, DC CSW, DC CISW), trapped by
//! HCR_EL2.TSW and never executed.
//!
//! Why not execute them: a set/way operation acts on the caches of the PE
//! that runs it only (it is not broadcast), lines can migrate or be
//! speculatively refilled behind it, and system caches beyond the PE ignore
//! set/way altogether (Arm ARM D7.5.9.x "Cache maintenance by set/way": such
//! operations are meant for powering caches up and down, not for coherency).
//! A guest cannot know the set/way-to-address mapping, so the only thing it
//! can mean is "clean/invalidate everything", which we do by VA over all of
//! the VM's memory.
//!
//! The policy is KVM/arm64's (arch/arm64/kvm/mmu.c `kvm_set_way_flush` and
//! `kvm_toggle_cache`, sys_regs.c `access_dcsw` and `access_vm_reg`):
//! - on a set/way operation while HCR_EL2.TVM is clear: clean+invalidate all
//!   VM memory by VA and set TVM, to see the guest switch its caches;
//!   further set/way operations while TVM is set do nothing (the flush at
//!   the next toggle covers them);
//! - every trapped write to a VM control register still goes to the real
//!   register; if it turns the caches on or off (SCTLR_EL1.M and .C both
//!   set = on), clean+invalidate all VM memory again: turning off needs the
//!   dirty lines cleaned, turning on needs stale lines invalidated, and
//!   clean+invalidate does both;
//! - once caches are on, clear TVM until the next set/way operation.
//!
//! With FEAT_S2FWB used for stage 2 the guest cannot make its memory
//! non-cacheable, so there is nothing to keep coherent: set/way operations
//! are ignored, as KVM does.

use super::SysReg;

/// A hardware action the arch layer performs, in order, for one access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HwAction {
    /// Write the real register (a VM control register trapped by TVM).
    WriteHw { reg: SysReg, value: u64 },
    /// Clean and invalidate by VA to the PoC every page mapped at stage 2 for this VM.
    CleanInvalidateVmMemory,
    /// Set (true) or clear (false) HCR_EL2.TVM for this vCPU.
    SetTrapVm(bool),
}

/// Up to three actions, performed in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Actions {
    items: [Option<HwAction>; 3],
}

impl Actions {
    pub const NONE: Actions = Actions { items: [None; 3] };

    pub(crate) fn push(&mut self, a: HwAction) {
        let slot = self
            .items
            .iter_mut()
            .find(|s| s.is_none())
            .expect("at most three hardware actions per access");
        *slot = Some(a);
    }

    pub fn iter(&self) -> impl Iterator<Item = HwAction> + '_ {
        self.items.iter().map_while(|a| *a)
    }

    pub fn is_empty(&self) -> bool {
        self.items[0].is_none()
    }
}

/// SCTLR_EL1.M (bit 0) and SCTLR_EL1.C (bit 2): Arm ARM D23.2 SCTLR_EL1.
const SCTLR_M: u64 = 1 << 0;
const SCTLR_C: u64 = 1 << 2;

/// KVM's `vcpu_has_cache_enabled`: the stage-1 MMU and data caches both on.
pub fn caches_enabled(sctlr_el1: u64) -> bool {
    sctlr_el1 & (SCTLR_M | SCTLR_C) == SCTLR_M | SCTLR_C
}

/// One vCPU's set/way state: whether HCR_EL2.TVM is set on its behalf.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetWay {
    trap_vm: bool,
    stage2_fwb: bool,
}

impl SetWay {
    /// `stage2_fwb`: the VM's stage 2 uses FEAT_S2FWB to force write-back.
    pub const fn new(stage2_fwb: bool) -> Self {
        SetWay {
            trap_vm: false,
            stage2_fwb,
        }
    }

    /// vCPU reset: the caches are off again and nothing is being tracked.
    pub fn reset(&mut self) {
        self.trap_vm = false;
    }

    /// Whether HCR_EL2.TVM should be set for this vCPU.
    pub const fn trap_vm(&self) -> bool {
        self.trap_vm
    }

    /// A trapped DC ISW/CSW/CISW.
    pub fn on_set_way(&mut self) -> Actions {
        let mut a = Actions::NONE;
        if !self.stage2_fwb && !self.trap_vm {
            a.push(HwAction::CleanInvalidateVmMemory);
            a.push(HwAction::SetTrapVm(true));
            self.trap_vm = true;
        }
        a
    }

    /// A trapped write of `value` to VM control register `reg`, with the
    /// guest's SCTLR_EL1 `old_sctlr` before the write (the write itself is
    /// `value` when `reg` is SCTLR_EL1).
    pub fn on_vm_reg_write(&mut self, reg: SysReg, value: u64, old_sctlr: u64) -> Actions {
        let mut a = Actions::NONE;
        a.push(HwAction::WriteHw { reg, value });
        let new_sctlr = if reg == super::table::SCTLR_EL1 {
            value
        } else {
            old_sctlr
        };
        let (was, now) = (caches_enabled(old_sctlr), caches_enabled(new_sctlr));
        if was != now {
            a.push(HwAction::CleanInvalidateVmMemory);
        }
        if now && self.trap_vm {
            a.push(HwAction::SetTrapVm(false));
            self.trap_vm = false;
        }
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysreg::table::{SCTLR_EL1, TTBR0_EL1};
    use HwAction::*;

    const OFF: u64 = 0x30d0_0800; // RES1 bits, MMU and caches off
    const ON: u64 = OFF | SCTLR_M | SCTLR_C;

    fn list(a: Actions) -> alloc::vec::Vec<HwAction> {
        a.iter().collect()
    }

    #[test]
    fn first_set_way_flushes_and_starts_trapping() {
        let mut s = SetWay::new(false);
        assert_eq!(
            list(s.on_set_way()),
            [CleanInvalidateVmMemory, SetTrapVm(true)]
        );
        assert!(s.trap_vm());
        // Further set/way ops wait for the toggle.
        assert!(s.on_set_way().is_empty());
        assert!(s.trap_vm());
    }

    #[test]
    fn turning_caches_off_flushes_and_keeps_trapping() {
        let mut s = SetWay::new(false);
        s.on_set_way();
        assert_eq!(
            list(s.on_vm_reg_write(SCTLR_EL1, OFF, ON)),
            [
                WriteHw {
                    reg: SCTLR_EL1,
                    value: OFF
                },
                CleanInvalidateVmMemory
            ]
        );
        assert!(s.trap_vm());
    }

    #[test]
    fn writes_that_keep_caches_off_only_reach_hardware() {
        let mut s = SetWay::new(false);
        s.on_set_way();
        assert_eq!(
            list(s.on_vm_reg_write(TTBR0_EL1, 0x4000_0000, OFF)),
            [WriteHw {
                reg: TTBR0_EL1,
                value: 0x4000_0000
            }]
        );
        // M on but C off is still "caches off".
        assert_eq!(
            list(s.on_vm_reg_write(SCTLR_EL1, OFF | SCTLR_M, OFF)),
            [WriteHw {
                reg: SCTLR_EL1,
                value: OFF | SCTLR_M
            }]
        );
        assert!(s.trap_vm());
    }

    #[test]
    fn turning_caches_on_flushes_and_stops_trapping() {
        let mut s = SetWay::new(false);
        s.on_set_way();
        assert_eq!(
            list(s.on_vm_reg_write(SCTLR_EL1, ON, OFF)),
            [
                WriteHw {
                    reg: SCTLR_EL1,
                    value: ON
                },
                CleanInvalidateVmMemory,
                SetTrapVm(false)
            ]
        );
        assert!(!s.trap_vm());
        // The next set/way op starts the cycle again.
        assert_eq!(
            list(s.on_set_way()),
            [CleanInvalidateVmMemory, SetTrapVm(true)]
        );
    }

    #[test]
    fn set_way_with_caches_on_stops_trapping_at_the_next_vm_write() {
        // Set/way while caches are on: flush, trap; a write that leaves them
        // on is not a toggle (no flush) but ends the trapping (KVM behaviour).
        let mut s = SetWay::new(false);
        s.on_set_way();
        assert_eq!(
            list(s.on_vm_reg_write(TTBR0_EL1, 1, ON)),
            [
                WriteHw {
                    reg: TTBR0_EL1,
                    value: 1
                },
                SetTrapVm(false)
            ]
        );
        assert!(!s.trap_vm());
    }

    #[test]
    fn full_off_on_cycle() {
        let mut s = SetWay::new(false);
        let mut flushes = 0;
        let mut run = |a: Actions| {
            flushes += a.iter().filter(|x| *x == CleanInvalidateVmMemory).count();
        };
        run(s.on_set_way()); // firmware cleans by set/way before turning caches off
        run(s.on_vm_reg_write(SCTLR_EL1, OFF, ON)); // off
        run(s.on_set_way()); // ignored while trapping
        run(s.on_vm_reg_write(SCTLR_EL1, ON, OFF)); // on
        assert_eq!(flushes, 3);
        assert!(!s.trap_vm());
    }

    #[test]
    fn stage2_fwb_ignores_set_way() {
        let mut s = SetWay::new(true);
        assert!(s.on_set_way().is_empty());
        assert!(!s.trap_vm());
    }

    #[test]
    fn actions_iterate_in_order() {
        let mut a = Actions::NONE;
        assert!(a.is_empty());
        a.push(SetTrapVm(true));
        a.push(CleanInvalidateVmMemory);
        assert_eq!(list(a), [SetTrapVm(true), CleanInvalidateVmMemory]);
        assert!(caches_enabled(ON) && !caches_enabled(OFF | SCTLR_C));
    }
}
