//! The second vCPU: started by vCPU 0 with PSCI CPU_ON, it reads its own view of the
//! CPU model into shared memory and turns itself off with PSCI CPU_OFF.
//!
//! PSCI (DEN0022 6.4, "CPU_ON"): the new vCPU enters at `entry_point_address` in
//! AArch64 EL1 with the MMU and caches off and `x0 = context_id`. Its stack, vector
//! table and translation regime are its own to set up, so [`cpumodel_secondary_entry`]
//! does what the runtime's `_start` does for vCPU 0, with the register values vCPU 0
//! passes in a [`BootBlock`] (`context_id` is its address):
//! 1. `CPACR_EL1`, a vector table of its own (any exception is recorded in the block
//!    and the vCPU stops: the runtime's vectors and exception stack belong to vCPU 0);
//! 2. `MAIR_EL1`, `TCR_EL1`, `TTBR0_EL1`, then `SCTLR_EL1`: the same identity map
//!    with caches on, so from then on the two vCPUs share memory coherently (both
//!    map it Normal write-back inner shareable);
//! 3. a stack, then [`secondary_main`].
//!
//! Before the MMU is on, the vCPU's loads are Device accesses that bypass the caches,
//! so vCPU 0 cleans the boot parameters to the PoC before CPU_ON (Arm ARM D7.5.10:
//! data written through a cacheable alias is visible to non-cacheable accesses only
//! after a clean to the PoC).

use core::arch::asm;
use core::cell::UnsafeCell;
use core::mem::offset_of;
use core::sync::atomic::{AtomicU64, Ordering};

use crate::regs::View;

/// PSCI CPU_ON and CPU_OFF, SMC64 / SMC32 calling conventions (DEN0022 table 5.1).
pub const PSCI_CPU_ON_64: u32 = 0xc400_0003;
pub const PSCI_CPU_OFF: u32 = 0x8400_0002;

/// `BootBlock::state` values.
pub const STATE_WAITING: u64 = 0;
pub const STATE_DONE: u64 = 1;
pub const STATE_EXCEPTION: u64 = 2;

const STACK_SIZE: usize = 16 * 1024;

/// What vCPU 0 hands to vCPU 1 (boot parameters) and gets back (its view).
#[repr(C, align(64))]
pub struct BootBlock {
    pub cpacr_el1: u64,
    pub mair_el1: u64,
    pub tcr_el1: u64,
    pub ttbr0_el1: u64,
    pub sctlr_el1: u64,
    pub stack_top: u64,
    /// The CSSELR_EL1 value vCPU 1 leaves behind (to show CSSELR is per vCPU).
    pub final_csselr: u64,
    /// [`STATE_WAITING`] until vCPU 1 is done or took an exception.
    pub state: AtomicU64,
    /// `ESR_EL1` and `ELR_EL1` of an exception vCPU 1 took.
    pub fault_esr: u64,
    pub fault_elr: u64,
    pub view: View,
}

/// The one boot block, in BSS (cleared by vCPU 0's `_start`).
pub struct Shared(UnsafeCell<BootBlock>);
// SAFETY: vCPU 0 writes the block before CPU_ON and reads it only after seeing
// `state` != WAITING with Acquire; vCPU 1 writes it before storing `state` with
// Release. The two never touch the non-atomic fields at the same time.
unsafe impl Sync for Shared {}

#[unsafe(no_mangle)]
pub static CPUMODEL_BOOT_BLOCK: Shared = Shared(UnsafeCell::new(BootBlock {
    cpacr_el1: 0,
    mair_el1: 0,
    tcr_el1: 0,
    ttbr0_el1: 0,
    sctlr_el1: 0,
    stack_top: 0,
    final_csselr: 0,
    state: AtomicU64::new(STATE_WAITING),
    fault_esr: 0,
    fault_elr: 0,
    view: View::ZERO,
}));

#[repr(C, align(16))]
struct Stack(UnsafeCell<[u8; STACK_SIZE]>);
// SAFETY: only vCPU 1 uses it, as its stack.
unsafe impl Sync for Stack {}
static SECONDARY_STACK: Stack = Stack(UnsafeCell::new([0; STACK_SIZE]));

/// What came back from vCPU 1.
// Returned once per run and there is no allocator to box the view: size is fine.
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    /// CPU_ON returned this error (x0).
    CpuOnFailed(u64),
    /// vCPU 1 did not report within the time allowed.
    TimedOut,
    /// vCPU 1 took an exception: ESR_EL1, ELR_EL1.
    Exception { esr: u64, elr: u64 },
    /// vCPU 1's view.
    Done(View),
}

/// Reads a system register by name.
macro_rules! read {
    ($reg:literal) => {{
        let v: u64;
        // SAFETY: reading an EL1 system register has no side effects.
        unsafe { asm!(concat!("mrs {}, ", $reg), out(reg) v, options(nomem, nostack, preserves_flags)) };
        v
    }};
}

/// Starts the vCPU with MPIDR affinity `target` and waits (at most `timeout_s`
/// seconds of the virtual counter) for its view. It leaves CSSELR_EL1 = `final_csselr`.
pub fn run(target: u64, final_csselr: u64, timeout_s: u64) -> Outcome {
    let block = CPUMODEL_BOOT_BLOCK.0.get();
    let (cpacr, mair, tcr, ttbr0, sctlr) = (
        read!("cpacr_el1"),
        read!("mair_el1"),
        read!("tcr_el1"),
        read!("ttbr0_el1"),
        read!("sctlr_el1"),
    );
    // SAFETY: vCPU 1 is not running yet (only this function starts it), so vCPU 0
    // is the only one to touch the block.
    unsafe {
        (*block).cpacr_el1 = cpacr;
        (*block).mair_el1 = mair;
        (*block).tcr_el1 = tcr;
        (*block).ttbr0_el1 = ttbr0;
        (*block).sctlr_el1 = sctlr;
        (*block).stack_top = SECONDARY_STACK.0.get() as u64 + STACK_SIZE as u64;
        (*block).final_csselr = final_csselr;
        (*block).state.store(STATE_WAITING, Ordering::SeqCst);
    }
    clean_to_poc(block as u64, size_of::<BootBlock>() as u64);

    let entry = cpumodel_secondary_entry as *const () as u64;
    let ret = guest_rt::hvc_call(PSCI_CPU_ON_64, target, entry, block as u64);
    if ret != 0 {
        return Outcome::CpuOnFailed(ret);
    }

    let freq = crate::regs::cntfrq_el0().max(1);
    let start = crate::regs::cntvct_el0();
    // SAFETY: `state` is atomic; shared by design.
    let state = unsafe { &(*block).state };
    loop {
        match state.load(Ordering::Acquire) {
            STATE_WAITING => {}
            STATE_DONE => {
                // SAFETY: vCPU 1 stored DONE with Release after its last write to
                // the block and writes nothing more.
                return Outcome::Done(unsafe { (*block).view });
            }
            _ => {
                // SAFETY: as above; its vector stores ESR/ELR before the state.
                let (esr, elr) = unsafe { ((*block).fault_esr, (*block).fault_elr) };
                return Outcome::Exception { esr, elr };
            }
        }
        if crate::regs::cntvct_el0().wrapping_sub(start) > timeout_s * freq {
            return Outcome::TimedOut;
        }
        core::hint::spin_loop();
    }
}

/// DC CVAC over `[addr, addr + len)`, then DSB: the bytes reach the PoC.
fn clean_to_poc(addr: u64, len: u64) {
    // CTR_EL0.DminLine: log2 of the smallest data line in words.
    let line = 4u64 << ((crate::regs::ctr_el0() >> 16) & 0xf);
    let mut va = addr & !(line - 1);
    while va < addr + len {
        // SAFETY: a clean by VA of mapped RAM changes no data.
        unsafe { asm!("dc cvac, {}", in(reg) va, options(nostack, preserves_flags)) };
        va += line;
    }
    // SAFETY: a barrier.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// vCPU 1's Rust entry, on its own stack with the MMU on.
#[unsafe(no_mangle)]
extern "C" fn cpumodel_secondary_main(block: *mut BootBlock) -> ! {
    // SAFETY: vCPU 0 filled the block before CPU_ON and waits for `state`.
    let final_csselr = unsafe { (*block).final_csselr };
    let view = View::read(final_csselr);
    // SAFETY: as above; vCPU 0 reads `view` only after the Release store below.
    unsafe {
        (*block).view = view;
        (*block).state.store(STATE_DONE, Ordering::Release);
    }
    // SAFETY: DSB then SEV: the state is visible before any waiter is woken.
    unsafe { asm!("dsb sy", "sev", options(nostack, preserves_flags)) };
    guest_rt::hvc_call(PSCI_CPU_OFF, 0, 0, 0);
    // CPU_OFF does not return when it succeeds.
    loop {
        // SAFETY: WFI only waits.
        unsafe { asm!("wfi", options(nomem, nostack)) };
    }
}

unsafe extern "C" {
    /// The CPU_ON entry point (assembly below).
    fn cpumodel_secondary_entry() -> !;
}

core::arch::global_asm!(
    r#"
    .pushsection .text.cpumodel_secondary_entry, "ax"
    .global cpumodel_secondary_entry
    .balign 4
cpumodel_secondary_entry:
    // x0 = context_id = the boot block (identity map: its VA = its PA).
    mov     x19, x0
    ldr     x1, [x19, #{cpacr}]
    msr     cpacr_el1, x1
    adrp    x1, cpumodel_secondary_vectors
    add     x1, x1, :lo12:cpumodel_secondary_vectors
    msr     vbar_el1, x1
    ldr     x1, [x19, #{mair}]
    msr     mair_el1, x1
    ldr     x1, [x19, #{tcr}]
    msr     tcr_el1, x1
    ldr     x1, [x19, #{ttbr0}]
    msr     ttbr0_el1, x1
    isb
    tlbi    vmalle1
    ic      iallu
    dsb     nsh
    isb
    ldr     x1, [x19, #{sctlr}]
    msr     sctlr_el1, x1
    isb
    ldr     x1, [x19, #{stack}]
    mov     sp, x1
    mov     x0, x19
    bl      cpumodel_secondary_main
1:  wfi
    b       1b
    .popsection

    // vCPU 1's vectors: every entry records ESR_EL1/ELR_EL1 in the boot block, marks
    // it EXCEPTION (vCPU 0 reports it) and stops this vCPU.
    .macro cpumodel_secondary_vector
    .balign 0x80
    b       cpumodel_secondary_fault
    .endm

    .pushsection .text.cpumodel_secondary_vectors, "ax"
    .balign 0x800
cpumodel_secondary_vectors:
    .rept 16
    cpumodel_secondary_vector
    .endr
cpumodel_secondary_fault:
    adrp    x0, CPUMODEL_BOOT_BLOCK
    add     x0, x0, :lo12:CPUMODEL_BOOT_BLOCK
    mrs     x1, esr_el1
    str     x1, [x0, #{esr}]
    mrs     x1, elr_el1
    str     x1, [x0, #{elr}]
    mov     x1, #{exception}
    add     x2, x0, #{state}
    stlr    x1, [x2]
    dsb     sy
    sev
2:  wfi
    b       2b
    .popsection
"#,
    cpacr = const offset_of!(BootBlock, cpacr_el1),
    mair = const offset_of!(BootBlock, mair_el1),
    tcr = const offset_of!(BootBlock, tcr_el1),
    ttbr0 = const offset_of!(BootBlock, ttbr0_el1),
    sctlr = const offset_of!(BootBlock, sctlr_el1),
    stack = const offset_of!(BootBlock, stack_top),
    state = const offset_of!(BootBlock, state),
    esr = const offset_of!(BootBlock, fault_esr),
    elr = const offset_of!(BootBlock, fault_elr),
    exception = const STATE_EXCEPTION,
);
