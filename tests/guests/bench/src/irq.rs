//! The benchmark's own EL1 vector table and IRQ handler.
//!
//! The handler's second instruction reads CNTVCT_EL0: that is the "handler entry"
//! the `ipi` and `timer_*` rows measure to. Exception entry is a context
//! synchronization event (Arm ARM, "Context synchronization event"), so the read
//! cannot be performed before the exception is taken and needs no ISB. The handler
//! then acknowledges (ICC_IAR1_EL1), stores the entry time in [`STAMP`] by INTID,
//! for the virtual timer disables it (CNTV_CTL_EL0 = 0, so its level is gone before
//! the deactivation: under Ferrovisor the PPI is hardware-linked and the guest's
//! deactivation deactivates the physical interrupt), completes it (ICC_EOIR1_EL1,
//! EOImode 0: priority drop and deactivation) and counts it in [`COUNT`] with a
//! release store, so a reader that sees the count also sees the stamp. It saves
//! only the four registers it uses.
//!
//! Every other vector entry branches to the same entry of the guest runtime's
//! table (`__guest_rt_vectors`): the runtime's exception capture and its report of
//! unexpected exceptions keep working. The entries are position-based, so a branch
//! to the same offset in the runtime's table runs that entry unchanged.

use core::sync::atomic::{AtomicU64, Ordering};

/// INTIDs with a record (SGIs and PPIs).
const RECORDED: usize = 32;

/// CNTVCT_EL0 at the handler's entry for the last interrupt of each INTID.
#[unsafe(no_mangle)]
static BENCH_IRQ_STAMP: [AtomicU64; RECORDED] = [const { AtomicU64::new(0) }; RECORDED];
/// Interrupts taken, by INTID.
#[unsafe(no_mangle)]
static BENCH_IRQ_COUNT: [AtomicU64; RECORDED] = [const { AtomicU64::new(0) }; RECORDED];

/// How many interrupts `intid` the handler has taken (any vCPU).
pub fn count(intid: u32) -> u64 {
    BENCH_IRQ_COUNT[intid as usize].load(Ordering::Acquire)
}

/// CNTVCT_EL0 at the handler's entry for the last `intid`. Read after [`count`]
/// showed it.
pub fn stamp(intid: u32) -> u64 {
    BENCH_IRQ_STAMP[intid as usize].load(Ordering::Acquire)
}

unsafe extern "C" {
    /// The benchmark vector table (assembly below), for a CPU started with
    /// [`guest_rt::smp`].
    pub fn bench_vectors();
}

/// Installs the benchmark vector table on the running CPU.
pub fn install() {
    // SAFETY: the table below is 2 KiB aligned and every entry is valid code.
    unsafe {
        core::arch::asm!(
            "adrp {t}, bench_vectors",
            "add {t}, {t}, :lo12:bench_vectors",
            "msr vbar_el1, {t}",
            "isb",
            t = out(reg) _,
            options(nomem, nostack, preserves_flags),
        )
    };
}

/// PSTATE.I = 0 on the running CPU: IRQs may be taken.
pub fn unmask() {
    // SAFETY: the benchmark vector table with its IRQ handler is installed.
    unsafe {
        core::arch::asm!(
            "msr daifclr, #2",
            "isb",
            options(nomem, nostack, preserves_flags)
        )
    };
}

/// PSTATE.I = 1 on the running CPU.
pub fn mask() {
    // SAFETY: masking IRQs has no memory effect.
    unsafe {
        core::arch::asm!(
            "msr daifset, #2",
            "isb",
            options(nomem, nostack, preserves_flags)
        )
    };
}

// Arm ARM D1.3.1 (VBAR_EL1): 16 entries of 0x80 bytes, the table 2 KiB aligned.
// Entry 5 is "IRQ, current EL with SP_ELx".
core::arch::global_asm!(
    r#"
    .pushsection .text.bench_vectors, "ax"
    .balign 0x800
    .global bench_vectors
bench_vectors:
    .irp n, 0,1,2,3,4
    .balign 0x80
    b       __guest_rt_vectors + \n * 0x80
    .endr
    .balign 0x80
    b       bench_irq
    .irp n, 6,7,8,9,10,11,12,13,14,15
    .balign 0x80
    b       __guest_rt_vectors + \n * 0x80
    .endr

bench_irq:
    stp     x0, x1, [sp, #-32]!
    mrs     x0, cntvct_el0              // handler entry
    stp     x2, x3, [sp, #16]
    mrs     x1, icc_iar1_el1
    and     x1, x1, #0xffffff
    cmp     x1, #1020
    b.hs    3f                          // special INTID: nothing was acknowledged
    cmp     x1, #{recorded}
    b.hs    2f                          // not ours: complete it, record nothing
    adrp    x2, BENCH_IRQ_STAMP
    add     x2, x2, :lo12:BENCH_IRQ_STAMP
    str     x0, [x2, x1, lsl #3]
    cmp     x1, #{vtimer}
    b.ne    1f
    msr     cntv_ctl_el0, xzr           // timer off: its level drops before deactivation
    isb
1:  adrp    x2, BENCH_IRQ_COUNT
    add     x2, x2, :lo12:BENCH_IRQ_COUNT
    add     x2, x2, x1, lsl #3
    msr     icc_eoir1_el1, x1
    ldr     x3, [x2]
    add     x3, x3, #1
    stlr    x3, [x2]
    b       3f
2:  msr     icc_eoir1_el1, x1
3:  ldp     x2, x3, [sp, #16]
    ldp     x0, x1, [sp], #32
    eret
    .popsection
"#,
    recorded = const RECORDED,
    vtimer = const crate::gic::VTIMER_PPI,
);
