//! Turning the data cache and MMU off and on again the way a bare-metal kernel that
//! knows nothing of hypervisors does it: clean+invalidate every data/unified cache
//! level up to the LoC by set/way (DC CISW), walking the geometry CLIDR_EL1 and
//! CCSIDR_EL1 describe, around the SCTLR_EL1.{M,C} write; and before turning caches
//! back on, invalidate by set/way (DC ISW) so no stale line hides what was written
//! with caches off.
//!
//! Under Ferrovisor every DC ISW/CISW traps (HCR_EL2.TSW) and none is executed: the
//! first becomes a clean+invalidate by VA of all VM memory and sets HCR_EL2.TVM, so
//! the SCTLR_EL1 writes trap too; each still reaches the real register and flushes
//! again when it switches caches on or off (src/sysreg/setway.rs, KVM's policy). The
//! data checks below pass only if that flush really happens at the right times.
//!
//! QEMU (TCG) does not model caches: memory is always coherent, so on bare QEMU the
//! data checks pass trivially. Their value under QEMU is to drive the TSW/TVM trap
//! paths (the hypervisor logs them at debug level) through a real guest sequence
//! without crashing, and to show that SCTLR_EL1 writes still take effect while TVM
//! traps them. On hardware they also check coherency.
//!
//! Everything between the first clean and the re-enable runs in one assembly routine
//! that touches no stack: with the MMU off every data access is Device memory and
//! bypasses the caches, so compiled code (stack spills, atomics) must not run there.

use core::mem::offset_of;

/// Pattern word `i` written with caches on: `PATTERN_ON | i`.
pub const PATTERN_ON: u64 = 0x0a0a_5a5a_0000_0000;
/// Pattern word `i` written with caches off: `PATTERN_OFF | i`.
pub const PATTERN_OFF: u64 = 0x0b0b_c3c3_0000_0000;

/// Words in the test buffer: 64 KiB, more than a 1-set virtual cache holds and
/// spanning many lines of any real one.
pub const WORDS: usize = 8192;

#[repr(C, align(4096))]
pub struct Buffer(pub core::cell::UnsafeCell<[u64; WORDS]>);
// SAFETY: only vCPU 0 uses it.
unsafe impl Sync for Buffer {}
pub static BUFFER: Buffer = Buffer(core::cell::UnsafeCell::new([0; WORDS]));

/// What the routine observed. Written partly with caches off, read with caches on.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Observed {
    /// PAR_EL1 after `AT S1E1R` of the buffer, caches on (before).
    pub par_on: u64,
    /// SCTLR_EL1 read back after the write clearing M and C.
    pub sctlr_off: u64,
    /// PAR_EL1 after `AT S1E1R` of the buffer with the MMU off.
    pub par_off: u64,
    /// Words of the buffer that did not read `PATTERN_ON | i` with caches off.
    pub mismatches_off: u64,
    /// Index of the first such word (u64::MAX if none).
    pub first_mismatch: u64,
    /// SCTLR_EL1 read back after the write setting M and C again.
    pub sctlr_on: u64,
}

/// SCTLR_EL1.M (bit 0) and .C (bit 2) (Arm ARM D23.2 SCTLR_EL1).
pub const SCTLR_M: u64 = 1 << 0;
pub const SCTLR_C: u64 = 1 << 2;

/// Writes `PATTERN_ON` with caches on, runs the off/on sequence, and returns what the
/// routine saw. The caller checks `PATTERN_OFF` with caches on afterwards.
pub fn caches_off_and_on() -> Observed {
    let buf = BUFFER.0.get();
    for i in 0..WORDS {
        // SAFETY: i < WORDS; only this vCPU touches BUFFER.
        unsafe {
            (buf as *mut u64)
                .add(i)
                .write_volatile(PATTERN_ON | i as u64)
        };
    }
    let mut obs = Observed {
        first_mismatch: u64::MAX,
        ..Observed::default()
    };
    // SAFETY: cpumodel_caches_off_on reads and writes WORDS words at x0 and the
    // Observed at x2, uses no stack and clobbers x0-x17 and the flags (declared);
    // it leaves the MMU and caches on as it found them, with the same translation
    // tables, so the Rust code around it is unaffected. Memory is declared touched.
    unsafe {
        core::arch::asm!(
            "bl cpumodel_caches_off_on",
            inout("x0") buf as u64 => _,
            inout("x1") WORDS as u64 => _,
            inout("x2") &raw mut obs as u64 => _,
            out("x3") _, out("x4") _, out("x5") _, out("x6") _, out("x7") _,
            out("x8") _, out("x9") _, out("x10") _, out("x11") _, out("x12") _,
            out("x13") _, out("x14") _, out("x15") _, out("x16") _, out("x17") _,
            out("x30") _,
            options(nostack),
        )
    };
    obs
}

/// Words of the buffer that do not read `PATTERN_OFF | i` (caches on), and the first.
pub fn check_pattern_off() -> (usize, Option<(usize, u64)>) {
    let buf = BUFFER.0.get() as *const u64;
    let mut bad = 0;
    let mut first = None;
    for i in 0..WORDS {
        // SAFETY: i < WORDS.
        let v = unsafe { buf.add(i).read_volatile() };
        if v != PATTERN_OFF | i as u64 {
            bad += 1;
            first.get_or_insert((i, v));
        }
    }
    (bad, first)
}

// The set/way walk, after the Arm ARM's example of cleaning a data cache by set/way
// (level by level up to CLIDR_EL1.LoC; CSSELR_EL1 selects the level's data/unified
// cache, CCSIDR_EL1 gives its geometry; the DC operand is Way << (32 - A) |
// Set << L | Level << 1 with A = ceil(log2(ways)), L = log2(line bytes)). Both
// CCSIDR formats are handled (FEAT_CCIDX per ID_AA64MMFR2_EL1.CCIDX).
// Uses x3-x17; x0-x2 are preserved.
core::arch::global_asm!(
    r#"
    .macro cpumodel_dcache_by_setway op
    mrs     x3, clidr_el1
    ubfx    x4, x3, #24, #3                 // LoC
    mov     x5, #0                          // level - 1
    cbz     x4, 90f
10: add     x6, x5, x5, lsl #1              // 3 * (level - 1)
    lsr     x7, x3, x6
    and     x7, x7, #7                      // Ctype
    cmp     x7, #2
    b.lt    80f                             // no cache, or instruction only
    lsl     x8, x5, #1                      // CSSELR: Level, InD = 0
    msr     csselr_el1, x8
    isb
    mrs     x9, ccsidr_el1
    and     x10, x9, #7
    add     x10, x10, #4                    // L = log2(line bytes)
    mrs     x6, id_aa64mmfr2_el1
    ubfx    x6, x6, #20, #4                 // CCIDX
    cbnz    x6, 20f
    ubfx    x11, x9, #3, #10                // ways - 1
    ubfx    x12, x9, #13, #15               // sets - 1
    b       30f
20: ubfx    x11, x9, #3, #21
    ubfx    x12, x9, #32, #24
30: clz     w14, w11                        // 32 - A (32 when one way: way 0 only)
    mov     x13, x11                        // way
40: mov     x15, x12                        // set
50: lsl     x16, x13, x14
    lsl     x17, x15, x10
    orr     x16, x16, x17
    orr     x16, x16, x8                    // | Level << 1
    dc      \op, x16
    subs    x15, x15, #1
    b.ge    50b
    subs    x13, x13, #1
    b.ge    40b
80: add     x5, x5, #1
    cmp     x5, x4
    b.lt    10b
90: mov     x8, #0
    msr     csselr_el1, x8
    dsb     sy
    isb
    .endm

    .pushsection .text.cpumodel_caches_off_on, "ax"
    .global cpumodel_caches_off_on
    // x0 = buffer, x1 = words, x2 = Observed.
cpumodel_caches_off_on:
    at      s1e1r, x0
    isb
    mrs     x3, par_el1
    str     x3, [x2, #{par_on}]
    dsb     sy

    // Caches off: clean+invalidate, clear SCTLR_EL1.M and .C, clean+invalidate again
    // (lines allocated or dirtied between the first walk and the switch).
    cpumodel_dcache_by_setway cisw
    mrs     x3, sctlr_el1
    mov     x4, #{m_c}
    bic     x3, x3, x4
    msr     sctlr_el1, x3
    isb
    cpumodel_dcache_by_setway cisw
    mrs     x3, sctlr_el1
    str     x3, [x2, #{sctlr_off}]
    at      s1e1r, x0
    isb
    mrs     x3, par_el1
    str     x3, [x2, #{par_off}]

    // The data written with caches on, read with caches off.
    mov     x4, #0                          // index
    mov     x5, #0                          // mismatches
    mov     x9, #-1                         // first mismatch
    ldr     x6, ={pattern_on}
1:  cmp     x4, x1
    b.hs    2f
    ldr     x7, [x0, x4, lsl #3]
    orr     x8, x6, x4
    cmp     x7, x8
    b.eq    3f
    add     x5, x5, #1
    cmn     x9, #1
    csel    x9, x4, x9, eq
3:  add     x4, x4, #1
    b       1b
2:  str     x5, [x2, #{mismatches}]
    str     x9, [x2, #{first}]

    // New data with caches off.
    mov     x4, #0
    ldr     x6, ={pattern_off}
4:  cmp     x4, x1
    b.hs    5f
    orr     x8, x6, x4
    str     x8, [x0, x4, lsl #3]
    add     x4, x4, #1
    b       4b
5:  dsb     sy

    // Caches on: invalidate (no stale line may hide the new data), set M and C.
    cpumodel_dcache_by_setway isw
    mrs     x3, sctlr_el1
    mov     x4, #{m_c}
    orr     x3, x3, x4
    msr     sctlr_el1, x3
    isb
    mrs     x3, sctlr_el1
    str     x3, [x2, #{sctlr_on}]
    ret
    .ltorg
    .popsection
"#,
    par_on = const offset_of!(Observed, par_on),
    sctlr_off = const offset_of!(Observed, sctlr_off),
    par_off = const offset_of!(Observed, par_off),
    mismatches = const offset_of!(Observed, mismatches_off),
    first = const offset_of!(Observed, first_mismatch),
    sctlr_on = const offset_of!(Observed, sctlr_on),
    m_c = const SCTLR_M | SCTLR_C,
    pattern_on = const PATTERN_ON,
    pattern_off = const PATTERN_OFF,
);
