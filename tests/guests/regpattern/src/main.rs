//! Register-pattern guest: vCPUs of two VMs, and two vCPUs of one VM, share one
//! physical CPU (boards/qemu-virt/regpattern.toml, 100 µs turns), so the
//! hypervisor switches everything a guest can observe between them thousands of
//! times (issue 10, "the complete context switch"). Its role (`role=a` or `b` in
//! bootargs) tags its patterns; `vcpus=2` makes vCPU 0 start vCPU 1 with PSCI
//! CPU_ON after a few rounds, so that vCPU 1 starts on a CPU whose registers
//! have held other vCPUs' patterns.
//!
//! Each vCPU:
//! 1. At entry, before writing anything: every EL1/EL0 register it can read
//!    holds its reset value (zero in Ferrovisor: `El1Regs::reset`), and no V
//!    register holds another vCPU's pattern: a fresh vCPU finds nothing of
//!    whoever ran before.
//! 2. [`ROUNDS`] rounds, each one assembly routine (`reg_round`) that no
//!    compiled code interrupts: writes a pattern of its own, different every
//!    round, to every EL1/EL0 system register it can write without breaking
//!    itself (below), reads them back (what the hardware kept of the write:
//!    RES0 bits, RAZ/WI registers), fills x9-x28, V0-V31 (both halves), FPSR and
//!    FPCR, spins reading the virtual counter until the CPU has been away (a gap:
//!    another vCPU had its turn), then reads everything again. Every value must
//!    be what it was before the switch.
//!
//! The registers: SCTLR_EL1 (only EL0 controls that change nothing here: UMA,
//! DZE, UCT, nTWI, nTWE, UCI), TTBR0_EL1 (its ASID; the map is global),
//! TTBR1_EL1 (whole: TCR_EL1.EPD1 keeps it from being walked), TCR_EL1 (the
//! TTBR1 half, A1, TBI1), MAIR_EL1 (Attr2-Attr7, which no descriptor uses),
//! AMAIR_EL1, VBAR_EL1 (no exception is taken meanwhile), CONTEXTIDR_EL1,
//! TPIDR_EL0/EL1, TPIDRRO_EL0, ESR_EL1, FAR_EL1, AFSR0/1_EL1, PAR_EL1, SP_EL0,
//! ELR_EL1, SPSR_EL1, CNTKCTL_EL1, CSSELR_EL1 (the caches that exist),
//! MDSCR_EL1 (TDCC, KDE: no debug event is enabled), CPACR_EL1 (TTA; FPEN stays
//! on), CNTV_CVAL/CTL and CNTP_CVAL/CTL (enabled, deadline days ahead, IMASK
//! varied), and DISR_EL1 where it is not UNDEFINED (FEAT_RAS: VDISR_EL2 behind
//! it). SCTLR, TTBR0, TCR, MAIR and VBAR get the runtime's values back at the
//! end of each round.
#![no_std]
#![no_main]
#![deny(clippy::undocumented_unsafe_blocks)]

#[allow(dead_code)]
#[path = "../../victim/src/fdt.rs"]
mod fdt;

use core::arch::{asm, global_asm};
use core::mem::offset_of;
use core::sync::atomic::{AtomicU64, Ordering};

use guest_rt::smp::{Secondary, Vectors};
use guest_rt::{catch_exception, check, finish, println};

guest_rt::entry!(main);

/// Pattern rounds per vCPU.
const ROUNDS: u64 = 2000;
/// Counter reads a round spins at most waiting for a switch.
const SPIN: u64 = 400_000;
/// Rounds vCPU 0 runs before it starts vCPU 1.
const ROUNDS_BEFORE_VCPU1: u64 = 10;
/// System registers in the pattern (DISR_EL1 last).
const N: usize = 28;
const DISR: usize = 27;

/// Names, in [`Round`] order.
const NAMES: [&str; N] = [
    "SCTLR_EL1",
    "TTBR0_EL1",
    "TTBR1_EL1",
    "TCR_EL1",
    "MAIR_EL1",
    "AMAIR_EL1",
    "VBAR_EL1",
    "CONTEXTIDR_EL1",
    "TPIDR_EL0",
    "TPIDR_EL1",
    "TPIDRRO_EL0",
    "ESR_EL1",
    "FAR_EL1",
    "AFSR0_EL1",
    "AFSR1_EL1",
    "PAR_EL1",
    "SP_EL0",
    "ELR_EL1",
    "SPSR_EL1",
    "CNTKCTL_EL1",
    "CSSELR_EL1",
    "MDSCR_EL1",
    "CPACR_EL1",
    "CNTV_CVAL_EL0",
    "CNTV_CTL_EL0",
    "CNTP_CVAL_EL0",
    "CNTP_CTL_EL0",
    "DISR_EL1",
];

/// Registers whose every bit takes the pattern (the rest keep what the
/// hardware keeps of a write, which must then survive as well).
const EXACT: [usize; 9] = [7, 8, 9, 10, 12, 16, 17, 23, 25];

/// What `reg_round` reads and writes. Offsets are used by the assembly.
#[repr(C)]
struct Round {
    want: [u64; N],
    written: [u64; N],
    after: [u64; N],
    seed: u64,
    spin: u64,
    gap: u64,
    /// Nonzero: DISR_EL1 is accessible (written and compared).
    disr: u64,
    /// VBAR, SCTLR, TTBR0, TCR, MAIR_EL1 as the runtime set them.
    restore: [u64; 5],
    /// Out: 1 if the CPU went elsewhere during the spin.
    switched: u64,
    /// Out: bit n = Vn differed, 32 = FPSR, 33 = FPCR, 34 = x9-x28.
    mask: u64,
}

global_asm!(
    r#"
.arch_extension fp
.arch_extension simd
.macro WR reg, idx, base
    ldr     x1, [x0, #(\base + \idx * 8)]
    msr     \reg, x1
.endm
.macro RD reg, idx, base
    mrs     x1, \reg
    str     x1, [x0, #(\base + \idx * 8)]
.endm
// Every register of the pattern but DISR_EL1, in the order they are written
// (each timer's CVAL before its CTL).
.macro ALLREGS op, base
    \op sctlr_el1, 0, \base
    \op ttbr0_el1, 1, \base
    \op ttbr1_el1, 2, \base
    \op tcr_el1, 3, \base
    \op mair_el1, 4, \base
    \op amair_el1, 5, \base
    \op vbar_el1, 6, \base
    \op contextidr_el1, 7, \base
    \op tpidr_el0, 8, \base
    \op tpidr_el1, 9, \base
    \op tpidrro_el0, 10, \base
    \op esr_el1, 11, \base
    \op far_el1, 12, \base
    \op afsr0_el1, 13, \base
    \op afsr1_el1, 14, \base
    \op par_el1, 15, \base
    \op sp_el0, 16, \base
    \op elr_el1, 17, \base
    \op spsr_el1, 18, \base
    \op cntkctl_el1, 19, \base
    \op csselr_el1, 20, \base
    \op mdscr_el1, 21, \base
    \op cpacr_el1, 22, \base
    \op cntv_cval_el0, 23, \base
    \op cntv_ctl_el0, 24, \base
    \op cntp_cval_el0, 25, \base
    \op cntp_ctl_el0, 26, \base
.endm
.macro DISR op, base
    ldr     x1, [x0, #{disr}]
    cbz     x1, 9f
    \op     S3_0_C12_C1_1, 27, \base
9:
.endm

.section .text
// x0 = &mut Round.
.global reg_round
reg_round:
    stp     x29, x30, [sp, #-176]!
    stp     x19, x20, [sp, #16]
    stp     x21, x22, [sp, #32]
    stp     x23, x24, [sp, #48]
    stp     x25, x26, [sp, #64]
    stp     x27, x28, [sp, #80]
    stp     d8, d9, [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
    mrs     x1, fpcr
    str     x1, [sp, #160]
    // The pattern, then what the hardware kept of it.
    ALLREGS WR, 0
    DISR    WR, 0
    isb
    ALLREGS RD, {written}
    DISR    RD, {written}
    // V0-V31, FPCR (RMode, FZ), FPSR (cumulative flags) from the seed.
    ldr     x2, [x0, #{seed}]
    .irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    add     x9, x2, #\n
    mvn     x10, x9
    fmov    d\n, x9
    mov     v\n\().d[1], x10
    .endr
    and     x9, x2, #7
    lsl     x9, x9, #22
    msr     fpcr, x9
    and     x10, x2, #0x1f
    orr     x10, x10, #0x80
    msr     fpsr, x10
    // x9-x28: ~seed, ~seed + 1, ...
    mvn     x9, x2
    add     x10, x9, #1
    add     x11, x10, #1
    add     x12, x11, #1
    add     x13, x12, #1
    add     x14, x13, #1
    add     x15, x14, #1
    add     x16, x15, #1
    add     x17, x16, #1
    add     x18, x17, #1
    add     x19, x18, #1
    add     x20, x19, #1
    add     x21, x20, #1
    add     x22, x21, #1
    add     x23, x22, #1
    add     x24, x23, #1
    add     x25, x24, #1
    add     x26, x25, #1
    add     x27, x26, #1
    add     x28, x27, #1
    // Spin until a gap in the virtual counter: the CPU ran something else.
    ldr     x2, [x0, #{spin}]
    ldr     x3, [x0, #{gap}]
    mov     x4, #0
    mrs     x5, cntvct_el0
1:  mrs     x6, cntvct_el0
    sub     x7, x6, x5
    mov     x5, x6
    cmp     x7, x3
    b.hi    2f
    subs    x2, x2, #1
    b.ne    1b
    b       3f
2:  mov     x4, #1
3:  str     x4, [x0, #{switched}]
    // x9-x28 intact?
    ldr     x2, [x0, #{seed}]
    mvn     x4, x2
    mov     x5, #0
    eor     x6, x9, x4
    orr     x5, x5, x6
    add     x4, x4, #1
    eor     x6, x10, x4
    orr     x5, x5, x6
    add     x4, x4, #1
    eor     x6, x11, x4
    orr     x5, x5, x6
    add     x4, x4, #1
    eor     x6, x12, x4
    orr     x5, x5, x6
    add     x4, x4, #1
    eor     x6, x13, x4
    orr     x5, x5, x6
    add     x4, x4, #1
    eor     x6, x14, x4
    orr     x5, x5, x6
    add     x4, x4, #1
    eor     x6, x15, x4
    orr     x5, x5, x6
    add     x4, x4, #1
    eor     x6, x16, x4
    orr     x5, x5, x6
    add     x4, x4, #1
    eor     x6, x17, x4
    orr     x5, x5, x6
    add     x4, x4, #1
    eor     x6, x18, x4
    orr     x5, x5, x6
    add     x4, x4, #1
    eor     x6, x19, x4
    orr     x5, x5, x6
    add     x4, x4, #1
    eor     x6, x20, x4
    orr     x5, x5, x6
    add     x4, x4, #1
    eor     x6, x21, x4
    orr     x5, x5, x6
    add     x4, x4, #1
    eor     x6, x22, x4
    orr     x5, x5, x6
    add     x4, x4, #1
    eor     x6, x23, x4
    orr     x5, x5, x6
    add     x4, x4, #1
    eor     x6, x24, x4
    orr     x5, x5, x6
    add     x4, x4, #1
    eor     x6, x25, x4
    orr     x5, x5, x6
    add     x4, x4, #1
    eor     x6, x26, x4
    orr     x5, x5, x6
    add     x4, x4, #1
    eor     x6, x27, x4
    orr     x5, x5, x6
    add     x4, x4, #1
    eor     x6, x28, x4
    orr     x5, x5, x6
    add     x4, x4, #1
    mov     x8, #0
    cbz     x5, 4f
    orr     x8, x8, #(1 << 34)
4:
    ALLREGS RD, {after}
    DISR    RD, {after}
    .irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    add     x9, x2, #\n
    mvn     x10, x9
    fmov    x11, d\n
    mov     x12, v\n\().d[1]
    cmp     x11, x9
    ccmp    x12, x10, #0, eq
    b.eq    5f
    orr     x8, x8, #(1 << \n)
5:
    .endr
    mrs     x9, fpsr
    mov     x10, #0x9f
    and     x9, x9, x10
    and     x10, x2, #0x1f
    orr     x10, x10, #0x80
    cmp     x9, x10
    b.eq    6f
    orr     x8, x8, #(1 << 32)
6:  mrs     x9, fpcr
    and     x9, x9, #(7 << 22)
    and     x10, x2, #7
    lsl     x10, x10, #22
    cmp     x9, x10
    b.eq    7f
    orr     x8, x8, #(1 << 33)
7:  str     x8, [x0, #{mask}]
    // The runtime's own translation and vectors back.
    ldr     x1, [x0, #{restore}]
    msr     vbar_el1, x1
    ldr     x1, [x0, #({restore} + 8)]
    msr     sctlr_el1, x1
    ldr     x1, [x0, #({restore} + 16)]
    msr     ttbr0_el1, x1
    ldr     x1, [x0, #({restore} + 24)]
    msr     tcr_el1, x1
    ldr     x1, [x0, #({restore} + 32)]
    msr     mair_el1, x1
    isb
    ldr     x1, [sp, #160]
    msr     fpcr, x1
    msr     fpsr, xzr
    ldp     d14, d15, [sp, #144]
    ldp     d12, d13, [sp, #128]
    ldp     d10, d11, [sp, #112]
    ldp     d8, d9, [sp, #96]
    ldp     x27, x28, [sp, #80]
    ldp     x25, x26, [sp, #64]
    ldp     x23, x24, [sp, #48]
    ldp     x21, x22, [sp, #32]
    ldp     x19, x20, [sp, #16]
    ldp     x29, x30, [sp], #176
    ret

// x0 = &mut [u64; 64]: V0-V31 (low, high) as found.
.global fp_peek
fp_peek:
    .irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    str     q\n, [x0], #16
    .endr
    ret
"#,
    written = const offset_of!(Round, written),
    after = const offset_of!(Round, after),
    seed = const offset_of!(Round, seed),
    spin = const offset_of!(Round, spin),
    gap = const offset_of!(Round, gap),
    disr = const offset_of!(Round, disr),
    restore = const offset_of!(Round, restore),
    switched = const offset_of!(Round, switched),
    mask = const offset_of!(Round, mask),
);

unsafe extern "C" {
    fn reg_round(r: *mut Round);
    fn fp_peek(out: *mut [u64; 64]);
}

/// Reads an EL1/EL0 system register by name.
macro_rules! rd {
    ($reg:literal) => {{
        let v: u64;
        // SAFETY: reading this register at EL1 has no side effect.
        unsafe { asm!(concat!("mrs {}, ", $reg), out(reg) v, options(nomem, nostack, preserves_flags)) };
        v
    }};
}

/// The tag of a vCPU: the top byte of its patterns.
fn tag(role: &str, vcpu: u64) -> u64 {
    (if role == "a" { 0xa0 } else { 0xb0 }) | vcpu
}

/// Every vCPU's tag in this test (VM a: vCPUs 0 and 1; VM b: vCPU 0).
const TAGS: [u64; 3] = [0xa0, 0xa1, 0xb0];

/// The registers a fresh vCPU must find at reset (zero), with their names:
/// everything but what the runtime's entry code sets (SCTLR, TTBR0, TCR,
/// MAIR, VBAR, CPACR).
fn fresh_values() -> [(&'static str, u64); 21] {
    [
        ("TTBR1_EL1", rd!("ttbr1_el1")),
        ("AMAIR_EL1", rd!("amair_el1")),
        ("CONTEXTIDR_EL1", rd!("contextidr_el1")),
        ("TPIDR_EL0", rd!("tpidr_el0")),
        ("TPIDR_EL1", rd!("tpidr_el1")),
        ("TPIDRRO_EL0", rd!("tpidrro_el0")),
        ("ESR_EL1", rd!("esr_el1")),
        ("FAR_EL1", rd!("far_el1")),
        ("AFSR0_EL1", rd!("afsr0_el1")),
        ("AFSR1_EL1", rd!("afsr1_el1")),
        ("PAR_EL1", rd!("par_el1")),
        ("SP_EL0", rd!("sp_el0")),
        ("ELR_EL1", rd!("elr_el1")),
        ("SPSR_EL1", rd!("spsr_el1")),
        ("CNTKCTL_EL1", rd!("cntkctl_el1")),
        ("CSSELR_EL1", rd!("csselr_el1")),
        ("MDSCR_EL1", rd!("mdscr_el1")),
        ("CNTV_CVAL_EL0", rd!("cntv_cval_el0")),
        ("CNTV_CTL_EL0", rd!("cntv_ctl_el0")),
        ("CNTP_CVAL_EL0", rd!("cntp_cval_el0")),
        ("CNTP_CTL_EL0", rd!("cntp_ctl_el0")),
    ]
}

/// Valid MAIR_EL1 attribute bytes (Arm ARM, MAIR_EL1): Device-nGnRnE,
/// -nGnRE, -nGRE, -GRE, Normal non-cacheable, write-back, write-through,
/// write-back transient.
const MAIR_ATTRS: [u64; 8] = [0x00, 0x04, 0x08, 0x0c, 0x44, 0xff, 0xbb, 0x77];

/// The runtime's values of the registers a round changes only in part.
#[derive(Clone, Copy)]
struct Base {
    sctlr: u64,
    ttbr0: u64,
    tcr: u64,
    mair: u64,
    vbar: u64,
    cpacr: u64,
}

impl Base {
    fn now() -> Self {
        Base {
            sctlr: rd!("sctlr_el1"),
            ttbr0: rd!("ttbr0_el1"),
            tcr: rd!("tcr_el1"),
            mair: rd!("mair_el1"),
            vbar: rd!("vbar_el1"),
            cpacr: rd!("cpacr_el1"),
        }
    }
}

/// Round `r`'s pattern for the vCPU tagged `t`.
fn pattern(t: u64, r: u64, b: &Base) -> [u64; N] {
    let v = t.wrapping_add(r);
    // A full-width word: tag, register index, round.
    let word = |i: u64| (t << 56) | (i << 48) | ((r & 0xff_ffff) << 24) | (v & 0xff_ffff);
    let mut w = [0u64; N];
    // SCTLR_EL1: UMA (9), DZE (14), UCT (15), nTWI (16), nTWE (18), UCI (26).
    let el0_bits = [9, 14, 15, 16, 18, 26];
    let mut sctlr = b.sctlr & !el0_bits.iter().fold(0, |m, &n| m | (1 << n));
    for (k, &n) in el0_bits.iter().enumerate() {
        if (v >> k) & 1 != 0 {
            sctlr |= 1 << n;
        }
    }
    w[0] = sctlr;
    w[1] = (b.ttbr0 & !(0xffff << 48)) | ((v & 0xff) << 48);
    w[2] = word(2) & !1;
    // TCR_EL1, TTBR1 half (EPD1 stays set): T1SZ 16..39, IRGN1, ORGN1, SH1
    // (0b00, 0b10, 0b11), TG1 = 4 KiB, A1, TBI1.
    let sh1 = [0b00, 0b10, 0b11][(v % 3) as usize];
    let tcr_ttbr1 = (0x3f << 16) | (1 << 22) | (0xff << 24) | (1 << 38);
    w[3] = (b.tcr & !tcr_ttbr1)
        | ((16 + v % 24) << 16)
        | (((v >> 1) & 1) << 22)
        | ((r & 3) << 24)
        | (((r >> 2) & 3) << 26)
        | (sh1 << 28)
        | (0b10 << 30)
        | (((v >> 2) & 1) << 38)
        | (1 << 23);
    let mut mair = b.mair & 0xffff;
    for n in 2..8 {
        mair |= MAIR_ATTRS[((v + n) % 8) as usize] << (8 * n);
    }
    w[4] = mair;
    w[5] = word(5);
    w[6] = word(6) & !0x7ff;
    w[7] = word(7) & 0xffff_ffff;
    for (i, x) in w.iter_mut().enumerate().take(18).skip(8) {
        *x = word(i as u64);
    }
    w[18] = word(18) & 0xffff_ffff;
    w[19] = v & 0x3ff;
    w[20] = v % 3;
    w[21] = (v & 3) << 12;
    w[22] = b.cpacr | ((v & 1) << 28);
    // The timers: enabled, days ahead (no interrupt), IMASK varied.
    w[23] = (1 << 56) | (t << 40) | (r << 8) | 0x11;
    w[24] = 1 | ((v & 1) << 1);
    w[25] = (1 << 56) | (t << 40) | (r << 8) | 0x22;
    w[26] = 1 | (((v >> 1) & 1) << 1);
    // DISR_EL1: A (31), and a syndrome.
    w[27] = (1 << 31) | ((v & 1) << 24) | (v & 0x3f);
    w
}

/// What one vCPU found.
#[derive(Clone, Copy, Default)]
struct Outcome {
    /// Bit n: the n-th register of `fresh_values` was not at reset; bit 63:
    /// a V register held another vCPU's pattern at entry.
    fresh_bad: u64,
    /// Rounds in which an `EXACT` register did not take its pattern.
    took_bad: u64,
    /// Rounds in which something changed across the switch.
    broken: u64,
    /// The first such round, the registers that differed (bit = index), and
    /// the FP/general mask.
    first: (u64, u64, u64),
    /// Rounds in which the CPU went elsewhere.
    switches: u64,
}

/// vCPU 1's outcome, for vCPU 0 to report (one vCPU prints, so lines never
/// mix): fields of [`Outcome`] in order, then 1 in `DONE`.
static VCPU1_OUT: [AtomicU64; 7] = [const { AtomicU64::new(0) }; 7];
static VCPU1_DONE: AtomicU64 = AtomicU64::new(0);
static DISR_OK: AtomicU64 = AtomicU64::new(0);
static ROLE_A: AtomicU64 = AtomicU64::new(1);
static VCPU1: Secondary = Secondary::new();

/// The fresh-state check and the rounds, for vCPU `id`; `between` runs after
/// each round.
fn run(id: u64, mut between: impl FnMut(u64)) -> Outcome {
    let mut found = [0u64; 64];
    // SAFETY: `found` is 64 writable words; the routine writes only them.
    unsafe { fp_peek(&mut found) };
    let role = if ROLE_A.load(Ordering::SeqCst) != 0 {
        "a"
    } else {
        "b"
    };
    let me = tag(role, id);
    let mut out = Outcome::default();
    for (n, (_, v)) in fresh_values().iter().enumerate() {
        if *v != 0 {
            out.fresh_bad |= 1 << n;
        }
    }
    if found
        .iter()
        .any(|&w| TAGS.iter().any(|&t| t != me && w >> 56 == t))
    {
        out.fresh_bad |= 1 << 63;
    }
    // DISR_EL1 exists with FEAT_RAS (the guest's accesses reach VDISR_EL2,
    // HCR_EL2.AMO) and is UNDEFINED without it: vCPU 0 probes (after the
    // reads above: an exception writes ESR, ELR, SPSR, FAR); what it reads
    // must be the reset value too.
    if id == 0 {
        let probe = catch_exception(|| rd!("S3_0_C12_C1_1"));
        DISR_OK.store(probe.is_ok() as u64, Ordering::SeqCst);
    }
    if DISR_OK.load(Ordering::SeqCst) != 0 && rd!("S3_0_C12_C1_1") != 0 {
        out.fresh_bad |= 1 << 62;
    }
    let freq = rd!("cntfrq_el0");
    let base = Base::now();
    let mut round = Round {
        want: [0; N],
        written: [0; N],
        after: [0; N],
        seed: 0,
        spin: SPIN,
        // 50 µs between two reads a few instructions apart: a turn of
        // another vCPU (100 µs at least).
        gap: freq / 20_000,
        disr: DISR_OK.load(Ordering::SeqCst),
        restore: [base.vbar, base.sctlr, base.ttbr0, base.tcr, base.mair],
        switched: 0,
        mask: 0,
    };
    let compared = if round.disr != 0 { N } else { DISR };
    for r in 0..ROUNDS {
        round.want = pattern(me, r, &base);
        round.seed = (me << 56) | (r << 8) | (r * 5 % 8);
        // SAFETY: `round` is a valid Round; the routine writes only it, the
        // registers it names (restoring the runtime's translation, vectors,
        // callee-saved and FP control registers) and its own stack frame.
        unsafe { reg_round(&mut round) };
        out.switches += round.switched;
        if EXACT.iter().any(|&i| round.written[i] != round.want[i]) {
            out.took_bad += 1;
        }
        let regs = (0..compared)
            .filter(|&i| round.after[i] != round.written[i])
            .fold(0u64, |m, i| m | (1 << i));
        if regs != 0 || round.mask != 0 {
            if out.broken == 0 {
                out.first = (r, regs, round.mask);
            }
            out.broken += 1;
        }
        between(r);
    }
    out
}

fn secondary(_: usize) -> ! {
    let o = run(1, |_| {});
    let fields = [
        o.fresh_bad,
        o.took_bad,
        o.broken,
        o.first.0,
        o.first.1,
        o.first.2,
        o.switches,
    ];
    for (a, v) in VCPU1_OUT.iter().zip(fields) {
        a.store(v, Ordering::SeqCst);
    }
    VCPU1_DONE.store(1, Ordering::SeqCst);
    guest_rt::smp::cpu_off()
}

fn report(id: u64, o: &Outcome) {
    let bad: [&str; 21] = core::array::from_fn(|n| {
        if o.fresh_bad & (1 << n) != 0 {
            fresh_names()[n]
        } else {
            ""
        }
    });
    check!(
        &format_name(
            id,
            "a fresh vCPU finds reset values, nothing of another vCPU"
        ),
        o.fresh_bad == 0,
        "fresh_bad {:#x}: {:?}",
        o.fresh_bad,
        bad
    );
    check!(
        &format_name(id, "every register took its pattern"),
        o.took_bad == 0,
        "{} rounds",
        o.took_bad
    );
    let (r, regs, mask) = o.first;
    let first_reg = (0..N).find(|&i| regs & (1 << i) != 0).map(|i| NAMES[i]);
    check!(
        &format_name(
            id,
            "EL1 registers, x9-x28, V0-V31, FPSR, FPCR intact across every switch"
        ),
        o.broken == 0,
        "{} of {ROUNDS} rounds differ; first: round {r}, registers {regs:#x} ({first_reg:?}), FP/GPR mask {mask:#x}",
        o.broken
    );
    check!(
        &format_name(id, "the CPU went to another vCPU in most rounds"),
        o.switches >= ROUNDS / 2,
        "{} of {ROUNDS}",
        o.switches
    );
    println!(
        "regpattern: vCPU {id}: {} switches over {ROUNDS} rounds",
        o.switches
    );
}

fn fresh_names() -> [&'static str; 21] {
    let v = fresh_values();
    core::array::from_fn(|n| v[n].0)
}

/// A check's name with the vCPU index: a fixed buffer (no allocator).
fn format_name(id: u64, what: &str) -> Name {
    let mut n = Name {
        buf: [0; 128],
        len: 0,
    };
    use core::fmt::Write;
    let _ = write!(n, "regpattern: vCPU {id}: {what}");
    n
}

struct Name {
    buf: [u8; 128],
    len: usize,
}

impl core::fmt::Write for Name {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let room = self.buf.len() - self.len;
        let n = s.len().min(room);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

impl core::ops::Deref for Name {
    type Target = str;
    fn deref(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("regpattern")
    }
}

fn main(dtb: u64) -> ! {
    // SAFETY: the boot protocol puts the device tree in guest RAM at x0.
    let tree = unsafe { fdt::Fdt::at(dtb) };
    let args = tree.and_then(|t| t.bootargs()).unwrap_or("");
    let role = fdt::bootarg(args, "role").unwrap_or("a");
    let vcpus: u64 = fdt::bootarg(args, "vcpus")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    ROLE_A.store((role == "a") as u64, Ordering::SeqCst);
    let mut started = false;
    let o = run(0, |r| {
        if vcpus > 1 && !started && r + 1 >= ROUNDS_BEFORE_VCPU1 {
            started = true;
            if let Err(e) = VCPU1.start(1, Vectors::Runtime, secondary, 0) {
                println!("regpattern: CPU_ON of vCPU 1 failed: {e}");
                VCPU1_DONE.store(2, Ordering::SeqCst);
            }
        }
    });
    println!("Ferrovisor register-pattern guest: role={role}, {vcpus} vCPU(s)");
    println!(
        "regpattern: DISR_EL1 {}",
        if DISR_OK.load(Ordering::SeqCst) != 0 {
            "switched (FEAT_RAS)"
        } else {
            "UNDEFINED (no FEAT_RAS)"
        }
    );
    report(0, &o);
    if vcpus > 1 {
        while VCPU1_DONE.load(Ordering::SeqCst) == 0 {
            core::hint::spin_loop();
        }
        let f: [u64; 7] = core::array::from_fn(|i| VCPU1_OUT[i].load(Ordering::SeqCst));
        let o1 = Outcome {
            fresh_bad: f[0],
            took_bad: f[1],
            broken: f[2],
            first: (f[3], f[4], f[5]),
            switches: f[6],
        };
        check!(
            "regpattern: vCPU 1 started",
            VCPU1_DONE.load(Ordering::SeqCst) == 1
        );
        report(1, &o1);
    }
    finish()
}
