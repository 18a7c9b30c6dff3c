//! The EL1 vector table and expected exceptions.
//!
//! A test that must see an exception (an UNDEF, a data abort) runs the instruction
//! inside [`expect_exception`]. While armed, the synchronous-exception vector for the
//! current EL records `ESR_EL1`, `FAR_EL1` and `ELR_EL1` and returns to the instruction
//! after the faulting one. The fast path is a few lines of assembly that touch only
//! `x0`/`x1` (saved and restored on the stack): no Rust runs, so no FP/SIMD register
//! of the interrupted code is disturbed.
//!
//! Any other exception (not armed, IRQ, FIQ, SError, from a lower EL) is unexpected:
//! it is reported as a `FAIL:` line with the syndrome and the guest finishes
//! ([`crate::finish`]), so a wrong exception is a test failure rather than a hang.

use core::sync::atomic::{AtomicU64, Ordering, compiler_fence};

/// `ESR_ELx.EC` (Arm ARM D23.2.42): an Unknown reason, which is how UNDEFINED
/// instructions and untrapped inaccessible system registers are reported.
pub const EC_UNKNOWN: u8 = 0x00;
/// `ESR_ELx.EC`: SVC from AArch64.
pub const EC_SVC64: u8 = 0x15;
/// `ESR_ELx.EC`: trapped MSR/MRS/system instruction (AArch64).
pub const EC_SYSREG: u8 = 0x18;
/// `ESR_ELx.EC`: Instruction Abort taken without a change of exception level.
pub const EC_INSTRUCTION_ABORT_SAME_EL: u8 = 0x21;
/// `ESR_ELx.EC`: Data Abort taken without a change of exception level.
pub const EC_DATA_ABORT_SAME_EL: u8 = 0x25;
/// `ISS.DFSC` of a data abort (Arm ARM D23.2.42.11): synchronous External abort,
/// not on a translation table walk.
pub const DFSC_SYNC_EXTERNAL_ABORT: u8 = 0x10;

/// What the vector recorded about one synchronous exception.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExceptionInfo {
    /// `ESR_EL1`: the syndrome.
    pub esr: u64,
    /// `FAR_EL1`: the faulting virtual address (meaningful for aborts only).
    pub far: u64,
    /// `ELR_EL1`: the preferred return address, for an UNDEF or an abort the address
    /// of the instruction that took the exception.
    pub elr: u64,
}

impl ExceptionInfo {
    /// `ESR_EL1.EC`, bits [31:26].
    pub fn ec(&self) -> u8 {
        ((self.esr >> 26) & 0x3f) as u8
    }
    /// `ESR_EL1.IL`, bit 25: the trapped instruction was 32 bits wide.
    pub fn il(&self) -> bool {
        self.esr & (1 << 25) != 0
    }
    /// `ESR_EL1.ISS`, bits [24:0].
    pub fn iss(&self) -> u32 {
        (self.esr & 0x1ff_ffff) as u32
    }
    /// Data abort `ISS.DFSC`, bits [5:0].
    pub fn dfsc(&self) -> u8 {
        (self.esr & 0x3f) as u8
    }
    /// Data abort `ISS.WnR`, bit 6: the access was a write.
    pub fn wnr(&self) -> bool {
        self.esr & (1 << 6) != 0
    }
    /// Data abort `ISS.FnV`, bit 10: `FAR_EL1` is not valid.
    pub fn fnv(&self) -> bool {
        self.esr & (1 << 10) != 0
    }
}

impl core::fmt::Display for ExceptionInfo {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "ESR_EL1={:#x} (EC {:#x}, ISS {:#x}) FAR_EL1={:#x} ELR_EL1={:#x}",
            self.esr,
            self.ec(),
            self.iss(),
            self.far,
            self.elr
        )
    }
}

/// Shared with the vector's assembly; the field offsets are used there.
#[repr(C)]
struct ExceptionState {
    /// Offset 0: non-zero while [`expect_exception`] runs its closure.
    armed: AtomicU64,
    /// Offset 8, 16, 24: the last recorded exception.
    esr: AtomicU64,
    far: AtomicU64,
    elr: AtomicU64,
    /// Offset 32: how many synchronous exceptions were recorded while armed.
    count: AtomicU64,
}

#[unsafe(no_mangle)]
static __guest_rt_exception_state: ExceptionState = ExceptionState {
    armed: AtomicU64::new(0),
    esr: AtomicU64::new(0),
    far: AtomicU64::new(0),
    elr: AtomicU64::new(0),
    count: AtomicU64::new(0),
};

/// Runs `f`, expecting it to take a synchronous exception at EL1 (an UNDEF, an abort).
///
/// Returns what was recorded about the first exception, or `None` if `f` completed
/// without one. After an exception, execution continues at the instruction after
/// the faulting one (after the SVC itself for an SVC), so whatever that instruction
/// would have written keeps its previous value. Put the faulting instruction in an
/// `asm!` block whose outputs tolerate that. If `f` takes more than one exception
/// the guest reports a failure: each expected exception needs its own call.
pub fn expect_exception(f: impl FnOnce()) -> Option<ExceptionInfo> {
    let state = &__guest_rt_exception_state;
    assert!(
        state.armed.load(Ordering::SeqCst) == 0,
        "expect_exception does not nest"
    );
    state.count.store(0, Ordering::SeqCst);
    state.armed.store(1, Ordering::SeqCst);
    compiler_fence(Ordering::SeqCst);
    f();
    compiler_fence(Ordering::SeqCst);
    state.armed.store(0, Ordering::SeqCst);
    match state.count.load(Ordering::SeqCst) {
        0 => None,
        1 => Some(ExceptionInfo {
            esr: state.esr.load(Ordering::SeqCst),
            far: state.far.load(Ordering::SeqCst),
            elr: state.elr.load(Ordering::SeqCst),
        }),
        n => crate::check::fail_and_finish(format_args!(
            "expect_exception: the closure took {n} exceptions, the last {}",
            ExceptionInfo {
                esr: state.esr.load(Ordering::SeqCst),
                far: state.far.load(Ordering::SeqCst),
                elr: state.elr.load(Ordering::SeqCst),
            }
        )),
    }
}

/// Runs `f`, which may take a synchronous exception: `Ok(value)` if it did not,
/// `Err(info)` if it did (for calls such as an HVC that an environment may UNDEF).
/// `f` returns a plain integer because after an exception its result register may
/// hold anything.
pub fn catch_exception(f: impl FnOnce() -> u64) -> Result<u64, ExceptionInfo> {
    let mut value = 0;
    match expect_exception(|| value = f()) {
        None => Ok(value),
        Some(info) => Err(info),
    }
}

/// Which vector an unexpected exception came through, in table order.
const VECTOR_NAMES: [&str; 16] = [
    "synchronous, current EL with SP_EL0",
    "IRQ, current EL with SP_EL0",
    "FIQ, current EL with SP_EL0",
    "SError, current EL with SP_EL0",
    "synchronous, current EL with SP_EL1",
    "IRQ, current EL with SP_EL1",
    "FIQ, current EL with SP_EL1",
    "SError, current EL with SP_EL1",
    "synchronous, lower EL (AArch64)",
    "IRQ, lower EL (AArch64)",
    "FIQ, lower EL (AArch64)",
    "SError, lower EL (AArch64)",
    "synchronous, lower EL (AArch32)",
    "IRQ, lower EL (AArch32)",
    "FIQ, lower EL (AArch32)",
    "SError, lower EL (AArch32)",
];

static UNEXPECTED_ENTERED: AtomicU64 = AtomicU64::new(0);

/// Called from the vectors (on the exception stack) for anything not expected.
#[unsafe(no_mangle)]
extern "C" fn __guest_rt_unexpected_exception(vector: u64, esr: u64, far: u64, elr: u64) -> ! {
    if UNEXPECTED_ENTERED.swap(1, Ordering::SeqCst) != 0 {
        // Reporting itself faulted: stop here; the test harness times out.
        loop {
            // SAFETY: WFI only waits; it has no memory effects.
            unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
        }
    }
    let name = VECTOR_NAMES.get(vector as usize).copied().unwrap_or("?");
    crate::check::fail_and_finish(format_args!(
        "unexpected exception ({name}): {}",
        ExceptionInfo { esr, far, elr }
    ))
}

// The vector table: 16 entries of 0x80 bytes, 2 KiB aligned (Arm ARM D1.3.1, VBAR_EL1).
// Entry 4 (synchronous, current EL with SP_ELx) has the expected-exception fast path;
// every other entry reports through __guest_rt_unexpected_exception.
core::arch::global_asm!(
    r#"
    .macro unexpected_vector index
    .balign 0x80
    mov     x0, #\index
    b       __guest_rt_vector_unexpected
    .endm

    .pushsection .text.__guest_rt_vectors, "ax"
    .balign 0x800
    .global __guest_rt_vectors
__guest_rt_vectors:
    unexpected_vector 0
    unexpected_vector 1
    unexpected_vector 2
    unexpected_vector 3
    .balign 0x80
    b       __guest_rt_vector_sync_current
    unexpected_vector 5
    unexpected_vector 6
    unexpected_vector 7
    unexpected_vector 8
    unexpected_vector 9
    unexpected_vector 10
    unexpected_vector 11
    unexpected_vector 12
    unexpected_vector 13
    unexpected_vector 14
    unexpected_vector 15

__guest_rt_vector_sync_current:
    stp     x0, x1, [sp, #-16]!
    adrp    x0, __guest_rt_exception_state
    add     x0, x0, :lo12:__guest_rt_exception_state
    ldr     x1, [x0]                    // armed?
    cbz     x1, 2f
    mrs     x1, esr_el1
    str     x1, [x0, #8]
    mrs     x1, far_el1
    str     x1, [x0, #16]
    mrs     x1, elr_el1
    str     x1, [x0, #24]
    ldr     x1, [x0, #32]
    add     x1, x1, #1
    str     x1, [x0, #32]
    // Resume after the faulting instruction. An SVC's preferred return address is
    // already the next instruction (Arm ARM D1.3.1.1); everything else that can be
    // expected here (UNDEF, aborts) returns to the instruction itself.
    mrs     x1, esr_el1
    lsr     x1, x1, #26
    cmp     x1, #0x15
    mrs     x1, elr_el1
    b.eq    1f
    add     x1, x1, #4
    msr     elr_el1, x1
1:  ldp     x0, x1, [sp], #16
    eret
2:  ldp     x0, x1, [sp], #16
    mov     x0, #4

__guest_rt_vector_unexpected:
    // x0 = vector index. The stack may be what went wrong: use the exception stack.
    adrp    x1, __guest_exception_stack_top
    add     x1, x1, :lo12:__guest_exception_stack_top
    mov     sp, x1
    mrs     x1, esr_el1
    mrs     x2, far_el1
    mrs     x3, elr_el1
    bl      __guest_rt_unexpected_exception
3:  wfi
    b       3b
    .popsection
"#
);
