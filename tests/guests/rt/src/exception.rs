//! The EL1 vector table and expected exceptions.
//!
//! A test that must see an exception (an UNDEF, a data abort) runs the instruction
//! inside [`expect_exception`]. While armed, the synchronous-exception vector for the
//! current EL records `ESR_EL1`, `FAR_EL1` and `ELR_EL1` and returns to the instruction
//! after the faulting one. The fast path is a few lines of assembly that touch only
//! `x0`/`x1` (saved and restored on the stack): no Rust runs, so no FP/SIMD register
//! of the interrupted code is disturbed.
//!
//! An IRQ taken at the current EL (SP_ELx) goes to the handler a guest installed with
//! [`set_irq_handler`] (an interrupt-controller test acknowledges and completes the
//! interrupt there). The vector saves every register the procedure-call standard lets
//! a callee change (x0-x18, x29, x30, q0-q31, FPSR, FPCR) plus ELR_EL1/SPSR_EL1, so
//! the interrupted code resumes unchanged. With no handler installed an IRQ is
//! unexpected, as before.
//!
//! Any other exception (not armed, FIQ, SError, from a lower EL) is unexpected:
//! it is reported as a `FAIL:` line with the syndrome and the guest finishes
//! ([`crate::finish`]), so a wrong exception is a test failure rather than a hang.

use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering, compiler_fence};

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

/// The installed IRQ handler (a `fn()` as an address), 0 for none.
static IRQ_HANDLER: AtomicUsize = AtomicUsize::new(0);

/// Installs `handler` for IRQs taken at EL1 (the vector "IRQ, current EL with
/// SP_ELx"), or removes it with `None` (an IRQ is then an unexpected exception).
///
/// The handler runs with IRQs masked (PSTATE.I set by the exception entry, Arm ARM
/// D1.3.4) on the interrupted code's stack; it must acknowledge the interrupt (or
/// make its source go away) or it is taken again at once when it returns. One
/// handler serves every CPU of the guest.
pub fn set_irq_handler(handler: Option<fn()>) {
    IRQ_HANDLER.store(handler.map_or(0, |h| h as usize), Ordering::SeqCst);
}

/// Called from the IRQ vector with the interrupted context saved.
#[unsafe(no_mangle)]
extern "C" fn __guest_rt_irq() {
    let handler = IRQ_HANDLER.load(Ordering::SeqCst);
    if handler == 0 {
        let (esr, far, elr): (u64, u64, u64);
        // SAFETY: reading the EL1 exception syndrome registers has no side effects.
        unsafe {
            core::arch::asm!(
                "mrs {}, esr_el1", "mrs {}, far_el1", "mrs {}, elr_el1",
                out(reg) esr, out(reg) far, out(reg) elr,
                options(nomem, nostack, preserves_flags),
            )
        };
        __guest_rt_unexpected_exception(5, esr, far, elr);
    }
    // SAFETY: a non-zero value was stored by `set_irq_handler` from a `fn()`.
    let handler: fn() = unsafe { core::mem::transmute::<usize, fn()>(handler) };
    handler();
}

// The vector table: 16 entries of 0x80 bytes, 2 KiB aligned (Arm ARM D1.3.1, VBAR_EL1).
// Entry 4 (synchronous, current EL with SP_ELx) has the expected-exception fast path;
// entry 5 (IRQ, current EL with SP_ELx) saves the caller-saved state and calls
// __guest_rt_irq; every other entry reports through __guest_rt_unexpected_exception.
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
    .balign 0x80
    b       __guest_rt_vector_irq_current
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

__guest_rt_vector_irq_current:
    // Frame (0x2d0 bytes, 16-byte aligned): x0-x17 at 0x00, x18/x29 at 0x90,
    // x30/ELR at 0xa0, SPSR/FPSR at 0xb0, FPCR at 0xc0, q0-q31 at 0xd0.
    sub     sp, sp, #0x2d0
    stp     x0, x1, [sp, #0x00]
    stp     x2, x3, [sp, #0x10]
    stp     x4, x5, [sp, #0x20]
    stp     x6, x7, [sp, #0x30]
    stp     x8, x9, [sp, #0x40]
    stp     x10, x11, [sp, #0x50]
    stp     x12, x13, [sp, #0x60]
    stp     x14, x15, [sp, #0x70]
    stp     x16, x17, [sp, #0x80]
    stp     x18, x29, [sp, #0x90]
    mrs     x0, elr_el1
    stp     x30, x0, [sp, #0xa0]
    mrs     x0, spsr_el1
    mrs     x1, fpsr
    stp     x0, x1, [sp, #0xb0]
    mrs     x0, fpcr
    str     x0, [sp, #0xc0]
    add     x0, sp, #0xd0
    stp     q0, q1, [x0, #0x000]
    stp     q2, q3, [x0, #0x020]
    stp     q4, q5, [x0, #0x040]
    stp     q6, q7, [x0, #0x060]
    stp     q8, q9, [x0, #0x080]
    stp     q10, q11, [x0, #0x0a0]
    stp     q12, q13, [x0, #0x0c0]
    stp     q14, q15, [x0, #0x0e0]
    stp     q16, q17, [x0, #0x100]
    stp     q18, q19, [x0, #0x120]
    stp     q20, q21, [x0, #0x140]
    stp     q22, q23, [x0, #0x160]
    stp     q24, q25, [x0, #0x180]
    stp     q26, q27, [x0, #0x1a0]
    stp     q28, q29, [x0, #0x1c0]
    stp     q30, q31, [x0, #0x1e0]
    bl      __guest_rt_irq
    add     x0, sp, #0xd0
    ldp     q0, q1, [x0, #0x000]
    ldp     q2, q3, [x0, #0x020]
    ldp     q4, q5, [x0, #0x040]
    ldp     q6, q7, [x0, #0x060]
    ldp     q8, q9, [x0, #0x080]
    ldp     q10, q11, [x0, #0x0a0]
    ldp     q12, q13, [x0, #0x0c0]
    ldp     q14, q15, [x0, #0x0e0]
    ldp     q16, q17, [x0, #0x100]
    ldp     q18, q19, [x0, #0x120]
    ldp     q20, q21, [x0, #0x140]
    ldp     q22, q23, [x0, #0x160]
    ldp     q24, q25, [x0, #0x180]
    ldp     q26, q27, [x0, #0x1a0]
    ldp     q28, q29, [x0, #0x1c0]
    ldp     q30, q31, [x0, #0x1e0]
    ldr     x0, [sp, #0xc0]
    msr     fpcr, x0
    ldp     x0, x1, [sp, #0xb0]
    msr     spsr_el1, x0
    msr     fpsr, x1
    ldp     x30, x0, [sp, #0xa0]
    msr     elr_el1, x0
    ldp     x18, x29, [sp, #0x90]
    ldp     x16, x17, [sp, #0x80]
    ldp     x14, x15, [sp, #0x70]
    ldp     x12, x13, [sp, #0x60]
    ldp     x10, x11, [sp, #0x50]
    ldp     x8, x9, [sp, #0x40]
    ldp     x6, x7, [sp, #0x30]
    ldp     x4, x5, [sp, #0x20]
    ldp     x2, x3, [sp, #0x10]
    ldp     x0, x1, [sp, #0x00]
    add     sp, sp, #0x2d0
    eret
    .popsection
"#
);
