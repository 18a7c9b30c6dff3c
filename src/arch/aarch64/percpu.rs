//! Per-physical-CPU data, found through TPIDR_EL2.

use core::ptr::null_mut;

use super::regs;
use crate::vm::pcpu::Pcpu;
use crate::vm::vcpu::GuestRegs;

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
    /// The loaded vCPU's general registers: where the vector saves the guest's.
    pub frame: *mut GuestRegs,
    /// This CPU's run loop.
    pcpu: *mut Pcpu,
}

/// Offset of `guest_ctr_el0`, for the vector code.
pub const GUEST_CTR_EL0_OFFSET: usize = core::mem::offset_of!(PerCpu, guest_ctr_el0);
/// Offset of `frame`, for the vector code.
pub const FRAME_OFFSET: usize = core::mem::offset_of!(PerCpu, frame);

static mut PERCPU_AREA: [PerCpu; super::boot::MAX_CPUS] = [const {
    PerCpu {
        index: 0,
        mpidr: 0,
        guest_ctr_el0: 0,
        frame: null_mut(),
        pcpu: null_mut(),
    }
}; super::boot::MAX_CPUS];

/// This CPU's slot.
fn this() -> Option<*mut PerCpu> {
    let p = regs::read_tpidr_el2();
    (p != 0).then_some(p as *mut PerCpu)
}

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
    match this() {
        // SAFETY: TPIDR_EL2 is either 0 or the address of this CPU's PerCpu slot,
        // which lives for the whole run.
        Some(p) => unsafe { (*p).index },
        None => 0,
    }
}

/// Records the CTR_EL0 value the guests on this CPU see (for the fast path).
pub fn set_guest_ctr_el0(value: u64) {
    if let Some(p) = this() {
        // SAFETY: TPIDR_EL2 holds this CPU's own PerCpu slot, which only this
        // CPU writes; the vector reads it on this CPU only.
        unsafe { (*p).guest_ctr_el0 = value };
    }
}

/// Records where the vector saves the guest's registers at the next exit.
pub fn set_frame(regs: *mut GuestRegs) {
    if let Some(p) = this() {
        // SAFETY: as for `set_guest_ctr_el0`; the vector reads `frame` on this
        // CPU only, after this write (same CPU, program order).
        unsafe { (*p).frame = regs };
    }
}

/// Where the vector saved the loaded vCPU's registers at this exit.
pub fn frame() -> *mut GuestRegs {
    match this() {
        // SAFETY: TPIDR_EL2 holds this CPU's own slot.
        Some(p) => unsafe { (*p).frame },
        None => core::ptr::null_mut(),
    }
}

/// Gives this CPU its run loop (once, before its first guest entry).
pub fn install_pcpu(pcpu: &'static mut Pcpu) {
    if let Some(p) = this() {
        // SAFETY: only this CPU writes its slot.
        unsafe { (*p).pcpu = pcpu };
    }
}

/// Runs `f` on this CPU's run loop.
pub fn with_pcpu<R>(f: impl FnOnce(&mut Pcpu) -> R) -> R {
    let p = this().expect("a CPU taking guest exits has its PerCpu slot");
    // SAFETY: `pcpu` was installed from a leaked `&'static mut Pcpu` by this
    // CPU; only this CPU uses it, and never re-entrantly (EL2 runs with
    // interrupts masked, and the run loop does not call back into here).
    let pcpu = unsafe { (*p).pcpu.as_mut() }.expect("the run loop is installed");
    f(pcpu)
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
