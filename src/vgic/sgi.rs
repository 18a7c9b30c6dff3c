//! Software-generated interrupts: decoding a guest's trapped write to
//! ICC_SGI1R_EL1 / ICC_ASGI1R_EL1 / ICC_SGI0R_EL1, and the value the hypervisor
//! writes to its own ICC_SGI1R_EL1 to interrupt another physical CPU.
//!
//! The three registers share one layout (IHI 0069, ICC_SGI1R_EL1):
//! TargetList [15:0], Aff1 [23:16], INTID [27:24], Aff2 [39:32], IRM [40],
//! RS [47:44], Aff3 [55:48]. With IRM = 0 the SGI goes to every PE whose MPIDR has
//! Aff3.Aff2.Aff1 as given and Aff0 = RS * 16 + n for each bit n of TargetList;
//! with IRM = 1 to every PE except the sender.

use alloc::vec::Vec;
use tock_registers::{LocalRegisterCopy, register_bitfields};

use crate::sysreg::SysReg;

register_bitfields! [u64,
    /// ICC_SGI1R_EL1, ICC_ASGI1R_EL1 and ICC_SGI0R_EL1 (IHI 0069).
    pub ICC_SGIR [
        Aff3 OFFSET(48) NUMBITS(8) [],
        RS OFFSET(44) NUMBITS(4) [],
        IRM OFFSET(40) NUMBITS(1) [],
        Aff2 OFFSET(32) NUMBITS(8) [],
        INTID OFFSET(24) NUMBITS(4) [],
        Aff1 OFFSET(16) NUMBITS(8) [],
        TargetList OFFSET(0) NUMBITS(16) [],
    ],
];

/// ICC_SGI1R_EL1: S3_0_C12_C11_5.
pub const ICC_SGI1R_EL1: SysReg = SysReg::new(3, 0, 12, 11, 5);
/// ICC_ASGI1R_EL1: S3_0_C12_C11_6.
pub const ICC_ASGI1R_EL1: SysReg = SysReg::new(3, 0, 12, 11, 6);
/// ICC_SGI0R_EL1: S3_0_C12_C11_7.
pub const ICC_SGI0R_EL1: SysReg = SysReg::new(3, 0, 12, 11, 7);

/// Which SGI generation register the guest wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SgiRegister {
    /// ICC_SGI1R_EL1: a Group 1 SGI for the current Security state.
    Sgi1r,
    /// ICC_ASGI1R_EL1: a Group 1 SGI for the other Security state.
    Asgi1r,
    /// ICC_SGI0R_EL1: a Group 0 SGI.
    Sgi0r,
}

impl SgiRegister {
    pub fn from_sysreg(reg: SysReg) -> Option<SgiRegister> {
        match reg {
            ICC_SGI1R_EL1 => Some(SgiRegister::Sgi1r),
            ICC_ASGI1R_EL1 => Some(SgiRegister::Asgi1r),
            ICC_SGI0R_EL1 => Some(SgiRegister::Sgi0r),
            _ => None,
        }
    }

    /// Whether an SGI written this way reaches a target whose SGI is configured
    /// Group 1 (every SGI of this vGIC: its IGROUPR are RAO/WI), in the
    /// single-Security-state view the guest has (GICD_CTLR.DS = 1).
    ///
    /// IHI 0069 (ICC_SGI0R_EL1, ICC_ASGI1R_EL1) and the table "Forwarding
    /// an SGI to a target PE": ICC_SGI0R_EL1 generates Group 0 SGIs only, so a
    /// Group 1 target does not get it. With DS = 1 there is no other Security state,
    /// so ICC_ASGI1R_EL1 has no "alternate" Group 1 to generate and does not reach
    /// a Group 1 (Non-secure) target either (KVM reasons the same way). Only
    /// ICC_SGI1R_EL1 reaches Group 1 SGIs.
    pub fn reaches_group1(self) -> bool {
        self == SgiRegister::Sgi1r
    }
}

fn mpidr_of(aff3: u64, aff2: u64, aff1: u64, aff0: u64) -> u64 {
    (aff3 << 32) | (aff2 << 16) | (aff1 << 8) | aff0
}

/// The SGI number (INTID 0-15) a write asks for.
pub fn sgi_intid(value: u64) -> u32 {
    LocalRegisterCopy::<u64, ICC_SGIR::Register>::new(value).read(ICC_SGIR::INTID) as u32
}

/// The vCPUs (indices into `vcpu_mpidrs`) an SGI register write targets.
/// `self_index` is the writer (excluded only by IRM = 1: an explicit target list
/// may name the writer itself).
pub fn sgi_targets(value: u64, self_index: usize, vcpu_mpidrs: &[u64]) -> Vec<usize> {
    let mask = sgi_target_mask(value, self_index, vcpu_mpidrs);
    (0..vcpu_mpidrs.len().min(64))
        .filter(|&i| mask & (1 << i) != 0)
        .collect()
}

/// [`sgi_targets`] as a mask (bit n: vCPU n; a VM has at most 64 vCPUs), with
/// no allocation: the trapped ICC_SGI1R_EL1 write's path.
pub fn sgi_target_mask(value: u64, self_index: usize, vcpu_mpidrs: &[u64]) -> u64 {
    let r = LocalRegisterCopy::<u64, ICC_SGIR::Register>::new(value);
    let n = vcpu_mpidrs.len().min(64);
    if r.is_set(ICC_SGIR::IRM) {
        let all = if n == 64 { u64::MAX } else { (1 << n) - 1 };
        return all & !(1u64.checked_shl(self_index as u32).unwrap_or(0));
    }
    let targets = r.read(ICC_SGIR::TargetList);
    let rs = r.read(ICC_SGIR::RS);
    let base = mpidr_of(
        r.read(ICC_SGIR::Aff3),
        r.read(ICC_SGIR::Aff2),
        r.read(ICC_SGIR::Aff1),
        0,
    );
    vcpu_mpidrs
        .iter()
        .take(n)
        .enumerate()
        .filter(|(_, m)| {
            let m = crate::sysreg::Mpidr::new(**m).affinity();
            let aff0 = m & 0xff;
            // Aff0 = RS * 16 + n for TargetList bit n.
            m & !0xff == base && aff0 / 16 == rs && targets & (1 << (aff0 % 16)) != 0
        })
        .fold(0, |mask, (i, _)| mask | 1 << i)
}

/// The ICC_SGI1R_EL1 value that sends SGI `intid` to the one PE with affinity
/// `target_mpidr` (for the hypervisor's own cross-CPU kicks). `None` when the
/// INTID is not an SGI.
pub fn sgi1r_for(intid: u32, target_mpidr: u64) -> Option<u64> {
    if intid > 15 {
        return None;
    }
    let aff0 = target_mpidr & 0xff;
    let mut r = LocalRegisterCopy::<u64, ICC_SGIR::Register>::new(0);
    r.modify(
        ICC_SGIR::Aff3.val((target_mpidr >> 32) & 0xff)
            + ICC_SGIR::Aff2.val((target_mpidr >> 16) & 0xff)
            + ICC_SGIR::Aff1.val((target_mpidr >> 8) & 0xff)
            + ICC_SGIR::RS.val(aff0 / 16)
            + ICC_SGIR::TargetList.val(1 << (aff0 % 16))
            + ICC_SGIR::INTID.val(intid as u64),
    );
    Some(r.get())
}

/// A guest's write to a virtual GICv2's GICD_SGIR (IHI 0048B.b 4.3.15):
/// SGIINTID [3:0], NSATT [15] (ignored: the guest sees one Security state),
/// CPUTargetList [23:16] (bit n is CPU interface n, here vCPU n),
/// TargetListFilter [25:24]: 0b00 the listed CPUs, 0b01 every CPU but the
/// writer, 0b10 the writer only, 0b11 reserved (no SGI is sent, as for a
/// reserved value nothing is architecturally required).
/// Returns the SGI number and the target vCPU indices below `nr_vcpus`;
/// list bits naming CPU interfaces that do not exist are ignored.
pub fn gicd_sgir_targets(value: u32, self_index: usize, nr_vcpus: usize) -> (u32, Vec<usize>) {
    let intid = value & 0xf;
    let list = (value >> 16) & 0xff;
    let targets = match (value >> 24) & 0b11 {
        0b00 => (0..nr_vcpus.min(8))
            .filter(|&i| list & (1 << i) != 0)
            .collect(),
        0b01 => (0..nr_vcpus).filter(|&i| i != self_index).collect(),
        0b10 => alloc::vec![self_index],
        _ => Vec::new(),
    };
    (intid, targets)
}

#[cfg(test)]
mod gicd_sgir_tests {
    use super::gicd_sgir_targets;

    #[test]
    fn target_list_filter() {
        // SGI 5 to CPUs 0 and 2 of 4.
        assert_eq!(gicd_sgir_targets(0x0005_0005, 1, 4), (5, alloc::vec![0, 2]));
        // List bits beyond the vCPUs are ignored.
        assert_eq!(gicd_sgir_targets(0x00f0_0001, 0, 4), (1, alloc::vec![]));
        // All but self.
        assert_eq!(gicd_sgir_targets(0x0100_0003, 1, 3), (3, alloc::vec![0, 2]));
        // Self only, whatever the list says.
        assert_eq!(gicd_sgir_targets(0x02ff_000f, 2, 4), (15, alloc::vec![2]));
        // Reserved filter: nothing.
        assert_eq!(gicd_sgir_targets(0x03ff_0001, 0, 4), (1, alloc::vec![]));
        // NSATT and reserved bits do not change the SGI number.
        assert_eq!(gicd_sgir_targets(0x0001_8007, 0, 1).0, 7);
    }
}
