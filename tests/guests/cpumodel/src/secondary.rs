//! The second vCPU: started by vCPU 0 with PSCI CPU_ON (through
//! [`guest_rt::smp`], which gives it CPACR_EL1, the same identity map with caches
//! on, and a stack), it reads its own view of the CPU model into shared memory and
//! turns itself off with PSCI CPU_OFF.
//!
//! It runs on a vector table of its own: any exception is recorded in the
//! [`Report`] and the vCPU stops (the runtime's vectors report through vCPU 0's
//! exception stack and power the guest off; vCPU 0 reports this one instead).

use core::arch::asm;
use core::cell::UnsafeCell;
use core::mem::offset_of;
use core::sync::atomic::{AtomicU64, Ordering};

use guest_rt::smp::{Secondary, Vectors};

use crate::regs::View;

/// `Report::state` values.
pub const STATE_WAITING: u64 = 0;
pub const STATE_DONE: u64 = 1;
pub const STATE_EXCEPTION: u64 = 2;

/// What vCPU 1 hands back to vCPU 0.
#[repr(C, align(64))]
pub struct Report {
    /// [`STATE_WAITING`] until vCPU 1 is done or took an exception.
    pub state: AtomicU64,
    /// `ESR_EL1` and `ELR_EL1` of an exception vCPU 1 took.
    pub fault_esr: u64,
    pub fault_elr: u64,
    pub view: View,
}

/// The one report, in BSS (cleared by vCPU 0's `_start`).
pub struct Shared(UnsafeCell<Report>);
// SAFETY: vCPU 0 reads the report only after seeing `state` != WAITING with
// Acquire; vCPU 1 writes it before storing `state` with Release. The two never
// touch the non-atomic fields at the same time.
unsafe impl Sync for Shared {}

#[unsafe(no_mangle)]
pub static CPUMODEL_SECONDARY_REPORT: Shared = Shared(UnsafeCell::new(Report {
    state: AtomicU64::new(STATE_WAITING),
    fault_esr: 0,
    fault_elr: 0,
    view: View::ZERO,
}));

/// vCPU 1's boot parameters and stack.
static VCPU1: Secondary = Secondary::new();

/// What came back from vCPU 1.
// Returned once per run and there is no allocator to box the view: size is fine.
#[allow(clippy::large_enum_variant)]
pub enum Outcome {
    /// CPU_ON returned this error (x0).
    CpuOnFailed(i64),
    /// vCPU 1 did not report within the time allowed.
    TimedOut,
    /// vCPU 1 took an exception: ESR_EL1, ELR_EL1.
    Exception { esr: u64, elr: u64 },
    /// vCPU 1's view.
    Done(View),
}

/// Starts the vCPU with MPIDR affinity `target` and waits (at most `timeout_s`
/// seconds of the virtual counter) for its view. It leaves CSSELR_EL1 = `final_csselr`.
pub fn run(target: u64, final_csselr: u64, timeout_s: u64) -> Outcome {
    let report = CPUMODEL_SECONDARY_REPORT.0.get();
    let vectors = Vectors::Own(cpumodel_secondary_vectors);
    if let Err(e) = VCPU1.start(target, vectors, secondary_main, final_csselr as usize) {
        return Outcome::CpuOnFailed(e);
    }

    let freq = crate::regs::cntfrq_el0().max(1);
    let start = crate::regs::cntvct_el0();
    // SAFETY: `state` is atomic; shared by design.
    let state = unsafe { &(*report).state };
    loop {
        match state.load(Ordering::Acquire) {
            STATE_WAITING => {}
            STATE_DONE => {
                // SAFETY: vCPU 1 stored DONE with Release after its last write to
                // the report and writes nothing more.
                return Outcome::Done(unsafe { (*report).view });
            }
            _ => {
                // SAFETY: as above; its vector stores ESR/ELR before the state.
                let (esr, elr) = unsafe { ((*report).fault_esr, (*report).fault_elr) };
                return Outcome::Exception { esr, elr };
            }
        }
        if crate::regs::cntvct_el0().wrapping_sub(start) > timeout_s * freq {
            return Outcome::TimedOut;
        }
        core::hint::spin_loop();
    }
}

/// vCPU 1's Rust entry, on its own stack with the MMU on.
fn secondary_main(final_csselr: usize) -> ! {
    let view = View::read(final_csselr as u64);
    let report = CPUMODEL_SECONDARY_REPORT.0.get();
    // SAFETY: vCPU 0 reads `view` only after the Release store below.
    unsafe {
        (*report).view = view;
        (*report).state.store(STATE_DONE, Ordering::Release);
    }
    // SAFETY: DSB then SEV: the state is visible before any waiter is woken.
    unsafe { asm!("dsb sy", "sev", options(nostack, preserves_flags)) };
    guest_rt::smp::cpu_off()
}

unsafe extern "C" {
    /// vCPU 1's vector table (assembly below).
    fn cpumodel_secondary_vectors();
}

core::arch::global_asm!(
    r#"
    // vCPU 1's vectors: every entry records ESR_EL1/ELR_EL1 in the report, marks
    // it EXCEPTION (vCPU 0 reports it) and stops this vCPU.
    .macro cpumodel_secondary_vector
    .balign 0x80
    b       cpumodel_secondary_fault
    .endm

    .pushsection .text.cpumodel_secondary_vectors, "ax"
    .balign 0x800
    .global cpumodel_secondary_vectors
cpumodel_secondary_vectors:
    .rept 16
    cpumodel_secondary_vector
    .endr
cpumodel_secondary_fault:
    adrp    x0, CPUMODEL_SECONDARY_REPORT
    add     x0, x0, :lo12:CPUMODEL_SECONDARY_REPORT
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
    state = const offset_of!(Report, state),
    esr = const offset_of!(Report, fault_esr),
    elr = const offset_of!(Report, fault_elr),
    exception = const STATE_EXCEPTION,
);
