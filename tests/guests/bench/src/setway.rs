//! `setway_sweep`: clean and invalidate every data or unified cache level up to
//! CLIDR_EL1.LoC by set/way (`DC CISW`), the whole-hierarchy flush a kernel runs
//! around turning its caches off (Linux's former `__flush_dcache_all`, the Arm
//! ARM's example of maintenance by set/way): CLIDR_EL1 gives the levels and
//! LoC, CSSELR_EL1 selects each level's data/unified cache, CCSIDR_EL1 gives its
//! line size, ways and sets, and each (way, set) gets one `DC CISW` whose operand
//! is `way << (32 - A) | set << L | level << 1` (A = ceil(log2(ways)),
//! L = log2(line bytes)).
//!
//! Under a hypervisor the CLIDR_EL1/CSSELR_EL1/CCSIDR_EL1 accesses may trap
//! (HCR_EL2.TID2/TID4) and every `DC CISW` traps (HCR_EL2.TSW): all of it is part
//! of the sweep's cost, as it is of a kernel's. The cache geometry is the guest's
//! view: the bench VM uses the `host` topology, so it sweeps as many sets and
//! ways as the same guest on bare QEMU.

/// One sweep. `ccidx`: CCSIDR_EL1 has the 64-bit layout (FEAT_CCIDX, read from
/// ID_AA64MMFR2_EL1 by the caller, outside the timed window). Returns how many
/// `DC CISW` it issued.
pub fn sweep(ccidx: bool) -> u64 {
    let ops: u64;
    // SAFETY: bench_setway_sweep only reads the cache ID registers, writes
    // CSSELR_EL1 (restored to 0, level 1 data, which is also what the
    // sysreg_ccsidr row selects) and cleans+invalidates caches by set/way, which
    // writes dirty lines back and changes no data the program sees. It touches no
    // memory and clobbers x1-x15 and the flags, declared here.
    unsafe {
        core::arch::asm!(
            "bl bench_setway_sweep",
            inout("x0") u64::from(ccidx) => ops,
            out("x1") _, out("x2") _, out("x3") _, out("x4") _, out("x5") _,
            out("x6") _, out("x7") _, out("x8") _, out("x9") _, out("x10") _,
            out("x11") _, out("x12") _, out("x13") _, out("x14") _, out("x15") _,
            out("x30") _,
            options(nostack),
        )
    };
    ops
}

// x0 = CCIDX flag on entry, the count of DC CISW on return.
core::arch::global_asm!(
    r#"
    .pushsection .text.bench_setway_sweep, "ax"
    .global bench_setway_sweep
bench_setway_sweep:
    mov     x15, x0                         // CCIDX
    mov     x0, #0                          // operations issued
    mrs     x1, clidr_el1
    ubfx    x2, x1, #24, #3                 // LoC
    mov     x3, #0                          // level - 1
    cbz     x2, 9f
1:  add     x4, x3, x3, lsl #1              // 3 * (level - 1)
    lsr     x5, x1, x4
    and     x5, x5, #7                      // Ctype of this level
    cmp     x5, #2
    b.lt    8f                              // none, or instruction cache only
    lsl     x6, x3, #1                      // CSSELR: Level, InD = 0
    msr     csselr_el1, x6
    isb
    mrs     x7, ccsidr_el1
    and     x8, x7, #7
    add     x8, x8, #4                      // L = log2(line bytes)
    cbnz    x15, 2f
    ubfx    x9, x7, #3, #10                 // ways - 1
    ubfx    x10, x7, #13, #15               // sets - 1
    b       3f
2:  ubfx    x9, x7, #3, #21
    ubfx    x10, x7, #32, #24
3:  clz     w11, w9                         // 32 - A (32 with one way: way 0 only)
    mov     x12, x9                         // way
4:  lsl     x13, x12, x11
    orr     x13, x13, x6                    // | level << 1
    mov     x14, x10                        // set
5:  lsl     x4, x14, x8
    orr     x4, x4, x13
    dc      cisw, x4
    add     x0, x0, #1
    subs    x14, x14, #1
    b.ge    5b
    subs    x12, x12, #1
    b.ge    4b
8:  add     x3, x3, #1
    cmp     x3, x2
    b.lt    1b
9:  msr     csselr_el1, xzr
    dsb     sy
    isb
    ret
    .popsection
"#
);
