//! Per-physical-CPU data, found through TPIDR_EL2.

use super::regs;

/// What each physical CPU keeps for itself.
#[repr(C)]
pub struct PerCpu {
    /// Logical index (0 = the boot CPU).
    pub index: usize,
    /// MPIDR_EL1 of this CPU.
    pub mpidr: u64,
    /// CTR_EL0 as the guest running here sees it: the vector's fast path
    /// answers trapped CTR_EL0 reads (HCR_EL2.TID2) from it.
    pub guest_ctr_el0: u64,
}

/// Offset of `guest_ctr_el0`, for the vector code.
pub const GUEST_CTR_EL0_OFFSET: usize = core::mem::offset_of!(PerCpu, guest_ctr_el0);

static mut PERCPU_AREA: [PerCpu; super::boot::MAX_CPUS] = [const {
    PerCpu {
        index: 0,
        mpidr: 0,
        guest_ctr_el0: 0,
    }
}; super::boot::MAX_CPUS];

/// Records this CPU's logical index in TPIDR_EL2.
pub fn init_this_cpu(index: usize) {
    assert!(index < super::boot::MAX_CPUS);
    // SAFETY: each CPU writes only its own slot, once, before anything reads it.
    let slot = unsafe { &mut *core::ptr::addr_of_mut!(PERCPU_AREA[index]) };
    slot.index = index;
    slot.mpidr = regs::read_mpidr_el1();
    regs::write_tpidr_el2(slot as *mut PerCpu as u64);
}

/// This CPU's logical index (0 before `init_this_cpu`).
pub fn current_index() -> usize {
    let p = regs::read_tpidr_el2();
    if p == 0 {
        return 0;
    }
    // SAFETY: TPIDR_EL2 is either 0 or the address of this CPU's PerCpu slot,
    // which lives for the whole run.
    unsafe { (*(p as *const PerCpu)).index }
}

/// Records the CTR_EL0 value the guest on this CPU sees (for the fast path).
pub fn set_guest_ctr_el0(value: u64) {
    let p = regs::read_tpidr_el2();
    if p == 0 {
        return;
    }
    // SAFETY: TPIDR_EL2 holds this CPU's own PerCpu slot, which only this CPU
    // writes; the vector reads it on this CPU only.
    unsafe { (*(p as *mut PerCpu)).guest_ctr_el0 = value };
}

/// MPIDR_EL1 of CPU `index` (0 if it has not started).
pub fn mpidr_of(index: usize) -> u64 {
    if index >= super::boot::MAX_CPUS {
        return 0;
    }
    // SAFETY: each slot's `mpidr` is written once by its own CPU before that CPU
    // reports itself up (a release the boot CPU's wait observes); afterwards it
    // is only read.
    unsafe { core::ptr::addr_of!(PERCPU_AREA[index].mpidr).read_volatile() }
}
