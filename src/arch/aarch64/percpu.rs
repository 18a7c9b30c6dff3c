//! Per-physical-CPU data, found through TPIDR_EL2.

use super::regs;

/// What each physical CPU keeps for itself.
#[repr(C)]
pub struct PerCpu {
    /// Logical index (0 = the boot CPU).
    pub index: usize,
    /// MPIDR_EL1 of this CPU.
    pub mpidr: u64,
}

static mut PERCPU_AREA: [PerCpu; super::boot::MAX_CPUS] =
    [const { PerCpu { index: 0, mpidr: 0 } }; super::boot::MAX_CPUS];

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
