//! FP/SIMD guest: two VMs run it on one physical CPU (boards/qemu-virt/fpsimd.toml),
//! so the hypervisor switches the FP/SIMD register file between them lazily
//! (CPTR_EL2.TFP, `Pcpu::take_fp`). Its role (`role=a` or `role=b` in bootargs)
//! picks the tag of its patterns.
//!
//! Checks (the research note's FP/SVE/SME cases in brackets):
//! 1. At entry, before writing any FP/SIMD register, none of V0-V31 holds the
//!    other VM's tag: the registers it finds are never another VM's [3, 25].
//! 2. [`ROUNDS`] rounds: fill V0-V31 (both halves), FPSR's cumulative flags and
//!    FPCR's rounding mode and FZ with a pattern of its own, spin reading the
//!    virtual counter until the other VM has had the CPU (a gap in the counter),
//!    then compare everything, all in one assembly routine that no compiled code
//!    interrupts [3, 4]. Every round must match, and the VM must have lost the CPU
//!    at least [`MIN_SWITCHES`] times in all (else nothing was tested).
//! 3. SVE and SME are hidden (ID_AA64PFR0_EL1.SVE = 0, ID_AA64PFR1_EL1.SME = 0)
//!    and RDVL, RDSVL and ZCR_EL1 are UNDEFINED [5, 12, 22].
#![no_std]
#![no_main]
#![deny(clippy::undocumented_unsafe_blocks)]

#[allow(dead_code)]
#[path = "../../victim/src/fdt.rs"]
mod fdt;

use core::arch::{asm, global_asm};

use guest_rt::exception::expect_exception;
use guest_rt::{check, finish, println};

guest_rt::entry!(main);

/// Checks per run (tests/fpsimd.rs expects exactly these).
pub const CHECKS: u32 = 8;
/// Pattern rounds.
const ROUNDS: u64 = 40;
/// Counter reads per round.
const ITERATIONS: u64 = 400_000;
/// The CPU must have gone to the other VM at least this often.
const MIN_SWITCHES: u64 = 4;

global_asm!(
    r#"
.arch_extension fp
.arch_extension simd
.section .text
// x0 = &mut [u64; 66]: V0-V31 (low, high), FPSR, FPCR, as found.
.global fp_peek
fp_peek:
    .irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    str     q\n, [x0], #16
    .endr
    mrs     x1, fpsr
    mrs     x2, fpcr
    stp     x1, x2, [x0]
    ret

// u64 fp_round(seed x0, iterations x1, gap x2, &mut switches x3):
// fills V0-V31, FPSR, FPCR from the seed, spins reading CNTVCT_EL0 (counting
// gaps longer than x2 ticks: the CPU was elsewhere), then compares. Returns a
// mask of what differed: bit n = Vn, bit 32 = FPSR, bit 33 = FPCR. d8-d15
// (callee-saved) and FPCR are restored, FPSR cleared.
.global fp_round
fp_round:
    stp     d8, d9, [sp, #-64]!
    stp     d10, d11, [sp, #16]
    stp     d12, d13, [sp, #32]
    stp     d14, d15, [sp, #48]
    mrs     x15, fpcr
    .irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    add     x9, x0, #\n
    mvn     x10, x9
    fmov    d\n, x9
    mov     v\n\().d[1], x10
    .endr
    // FPCR: RMode (23:22) and FZ (24) from seed bits 2:0.
    and     x9, x0, #7
    lsl     x9, x9, #22
    msr     fpcr, x9
    // FPSR: cumulative flags IOC..IXC (4:0) from the seed, and IDC (7).
    and     x10, x0, #0x1f
    orr     x10, x10, #0x80
    msr     fpsr, x10
    mov     x11, #0
    mrs     x12, cntvct_el0
1:  mrs     x13, cntvct_el0
    sub     x14, x13, x12
    mov     x12, x13
    cmp     x14, x2
    cinc    x11, x11, hi
    subs    x1, x1, #1
    b.ne    1b
    str     x11, [x3]
    mov     x4, #0
    .irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    add     x9, x0, #\n
    mvn     x10, x9
    fmov    x11, d\n
    mov     x12, v\n\().d[1]
    cmp     x11, x9
    ccmp    x12, x10, #0, eq
    b.eq    2f
    orr     x4, x4, #(1 << \n)
2:
    .endr
    mrs     x9, fpsr
    mov     x10, #0x9f
    and     x9, x9, x10
    and     x10, x0, #0x1f
    orr     x10, x10, #0x80
    cmp     x9, x10
    b.eq    3f
    orr     x4, x4, #(1 << 32)
3:  mrs     x9, fpcr
    and     x9, x9, #(7 << 22)
    and     x10, x0, #7
    lsl     x10, x10, #22
    cmp     x9, x10
    b.eq    4f
    orr     x4, x4, #(1 << 33)
4:  msr     fpcr, x15
    msr     fpsr, xzr
    ldp     d10, d11, [sp, #16]
    ldp     d12, d13, [sp, #32]
    ldp     d14, d15, [sp, #48]
    ldp     d8, d9, [sp], #64
    mov     x0, x4
    ret
"#
);

unsafe extern "C" {
    fn fp_peek(out: *mut [u64; 66]);
    fn fp_round(seed: u64, iterations: u64, gap: u64, switches: *mut u64) -> u64;
}

/// The top 16 bits of every pattern word of a role.
fn tag(role: &str) -> u64 {
    if role == "a" { 0xa0a0 } else { 0xb0b0 }
}

fn main(dtb: u64) -> ! {
    // Before anything else writes FP/SIMD registers: what the VM finds there.
    let mut found = [0u64; 66];
    // SAFETY: `found` is 66 writable words; the routine writes only them.
    unsafe { fp_peek(&mut found) };
    // SAFETY: the boot protocol puts the device tree in guest RAM at x0.
    let tree = unsafe { fdt::Fdt::at(dtb) };
    let args = tree.and_then(|t| t.bootargs()).unwrap_or("");
    let role = fdt::bootarg(args, "role").unwrap_or("a");
    let other = if role == "a" { "b" } else { "a" };
    println!("Ferrovisor FP/SIMD guest: role={role}");

    let leaked = found[..64].iter().position(|&w| w >> 48 == tag(other));
    check!(
        "fpsimd: no register holds the other VM's values at entry",
        leaked.is_none(),
        "word {} = {:#x}",
        leaked.unwrap_or(0),
        leaked.map(|i| found[i]).unwrap_or(0)
    );

    let freq: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effect.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) freq, options(nomem, nostack)) };
    // A gap of 0.5 ms between two counter reads a few instructions apart: the
    // CPU ran something else (a turn is 4 ms).
    let gap = freq / 2000;
    let mut switches = 0;
    let mut bad = 0;
    let mut first_bad = (0, 0);
    for round in 0..ROUNDS {
        let seed = (tag(role) << 48) | (round << 8) | (round * 5 % 8);
        let mut s = 0;
        // SAFETY: `s` is a writable word; the routine restores the callee-saved
        // FP registers and FPCR and writes only `s`.
        let mask = unsafe { fp_round(seed, ITERATIONS, gap, &mut s) };
        switches += s;
        if mask != 0 {
            if bad == 0 {
                first_bad = (round, mask);
            }
            bad += 1;
        }
    }
    println!("fpsimd: {switches} switches seen over {ROUNDS} rounds");
    check!(
        "fpsimd: V0-V31, FPSR and FPCR survive every switch",
        bad == 0,
        "{bad} rounds differ; first: round {}, mask {:#x}",
        first_bad.0,
        first_bad.1
    );
    check!(
        "fpsimd: the CPU went to the other VM while the patterns were live",
        switches >= MIN_SWITCHES,
        "{switches} switches"
    );

    sve_sme_hidden();
    finish()
}

/// SVE and SME are hidden and UNDEFINED (EC 0x00 at the guest's EL1).
fn sve_sme_hidden() {
    let (pfr0, pfr1): (u64, u64);
    // SAFETY: reading ID registers has no side effect.
    unsafe {
        asm!("mrs {}, id_aa64pfr0_el1", out(reg) pfr0, options(nomem, nostack));
        asm!("mrs {}, id_aa64pfr1_el1", out(reg) pfr1, options(nomem, nostack));
    }
    check!(
        "fpsimd: ID_AA64PFR0_EL1.SVE = 0",
        (pfr0 >> 32) & 0xf == 0,
        "{pfr0:#x}"
    );
    check!(
        "fpsimd: ID_AA64PFR1_EL1.SME = 0",
        (pfr1 >> 24) & 0xf == 0,
        "{pfr1:#x}"
    );
    let undef = |e: Option<guest_rt::exception::ExceptionInfo>| e.is_some_and(|e| e.ec() == 0);
    let rdvl = expect_exception(|| {
        // SAFETY: RDVL only reads the vector length; UNDEFINED here, caught.
        unsafe { asm!(".arch_extension sve", "rdvl {}, #1", out(reg) _, options(nomem, nostack)) };
    });
    check!("fpsimd: RDVL is UNDEFINED", undef(rdvl), "{rdvl:?}");
    let rdsvl = expect_exception(|| {
        // SAFETY: as RDVL.
        unsafe { asm!(".arch_extension sme", "rdsvl {}, #1", out(reg) _, options(nomem, nostack)) };
    });
    check!("fpsimd: RDSVL is UNDEFINED", undef(rdsvl), "{rdsvl:?}");
    let zcr = expect_exception(|| {
        // SAFETY: ZCR_EL1 (S3_0_C1_C2_0) read; UNDEFINED here, caught.
        unsafe { asm!("mrs {}, S3_0_C1_C2_0", out(reg) _, options(nomem, nostack)) };
    });
    check!("fpsimd: ZCR_EL1 is UNDEFINED", undef(zcr), "{zcr:?}");
}
