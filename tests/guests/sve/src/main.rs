//! SVE guest: two VMs with different vector-length caps (`sve_vl`) run it on one
//! physical CPU (boards/qemu-virt/sve.toml), so the hypervisor switches their SVE
//! state lazily (CPTR_EL2.TZ, `Pcpu::take_fp`), each in its native format at its
//! own cap. Bootargs: `role=a|b` (the tag of its patterns) and `vl=BITS` (its cap).
//!
//! Checks (the research note's FP/SVE/SME cases in brackets):
//! 1. ID_AA64PFR0_EL1.SVE = 1 and ID_AA64ZFR0_EL1 describes SVE (SVE shown).
//! 2. CPACR_EL1.ZEN reads back as written (the emulated CPACR_EL1 keeps it).
//! 3. ZCR_EL1 reads back what the guest wrote (LEN = 15), whatever the cap [9].
//! 4. RDVL = the VM's cap with ZCR_EL1.LEN = 15 [9, 10].
//! 5. At its first SVE use, before writing any SVE register: Z bits above the
//!    low 128 (its V registers), P0-P15 and FFR are zero, and no Z word holds
//!    the other VM's tag: a fresh vCPU reads zeros, never another's values [3, 25].
//! 6. RDVL = min(ZCR_EL1.LEN + 1, cap) for LEN = 0 and 1.
//! 7. [`ROUNDS`] rounds: load Z0-Z31, P0-P15 and FFR with a pattern of its own at
//!    its full length, spin reading the virtual counter until the other VM has had
//!    the CPU (a gap in the counter), then store them all and compare, in one
//!    assembly routine no compiled code interrupts [4, 11]. Every round matches.
//! 8. The VM lost the CPU at least [`MIN_SWITCHES`] times while its patterns were
//!    live (else nothing was tested).
//! 9. After all the switches ZCR_EL1 still reads 15 and RDVL is still the cap.
#![no_std]
#![no_main]
#![deny(clippy::undocumented_unsafe_blocks)]

#[allow(dead_code)]
#[path = "../../victim/src/fdt.rs"]
mod fdt;

use core::arch::{asm, global_asm};

use guest_rt::{check, finish, println};

guest_rt::entry!(main);

/// Checks per run (tests/sve.rs expects exactly these).
pub const CHECKS: u32 = 9;
/// Pattern rounds.
const ROUNDS: u64 = 24;
/// Counter reads per round.
const ITERATIONS: u64 = 400_000;
/// The CPU must have gone to the other VM at least this often.
const MIN_SWITCHES: u64 = 4;
/// The largest SVE state: Z0-Z31, P0-P15, FFR at 2048 bits.
const MAX_STATE: usize = 32 * 256 + 17 * 32;

global_asm!(
    r#"
.arch_extension sve
.section .text
// x0 = destination: Z0-Z31, then P0-P15, FFR at the current vector length.
// P0 is clobbered (FFR goes through it).
.global sve_peek
sve_peek:
    .irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    str     z\n, [x0, #\n, MUL VL]
    .endr
    addvl   x0, x0, #16
    addvl   x0, x0, #16
    .irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    str     p\n, [x0, #\n, MUL VL]
    .endr
    rdffr   p0.b
    str     p0, [x0, #16, MUL VL]
    ret

// sve_round(src x0, dst x1, iterations x2, gap x3, &mut switches x4):
// loads Z0-Z31, P0-P15 and FFR from src (sve_peek's layout), spins reading
// CNTVCT_EL0 (counting gaps longer than x3 ticks: the CPU was elsewhere), then
// stores them all to dst. d8-d15 (callee-saved) are restored.
.global sve_round
sve_round:
    stp     d8, d9, [sp, #-64]!
    stp     d10, d11, [sp, #16]
    stp     d12, d13, [sp, #32]
    stp     d14, d15, [sp, #48]
    .irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    ldr     z\n, [x0, #\n, MUL VL]
    .endr
    addvl   x5, x0, #16
    addvl   x5, x5, #16
    ldr     p0, [x5, #16, MUL VL]
    wrffr   p0.b
    .irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    ldr     p\n, [x5, #\n, MUL VL]
    .endr
    mov     x11, #0
    mrs     x12, cntvct_el0
1:  mrs     x13, cntvct_el0
    sub     x14, x13, x12
    mov     x12, x13
    cmp     x14, x3
    cinc    x11, x11, hi
    subs    x2, x2, #1
    b.ne    1b
    str     x11, [x4]
    .irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    str     z\n, [x1, #\n, MUL VL]
    .endr
    addvl   x5, x1, #16
    addvl   x5, x5, #16
    .irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    str     p\n, [x5, #\n, MUL VL]
    .endr
    rdffr   p0.b
    str     p0, [x5, #16, MUL VL]
    ldp     d10, d11, [sp, #16]
    ldp     d12, d13, [sp, #32]
    ldp     d14, d15, [sp, #48]
    ldp     d8, d9, [sp], #64
    ret
"#
);

unsafe extern "C" {
    fn sve_peek(dst: *mut u8);
    fn sve_round(src: *const u8, dst: *mut u8, iterations: u64, gap: u64, switches: *mut u64);
}

/// The top 16 bits of every Z pattern word of a role.
fn tag(role: &str) -> u64 {
    if role == "a" { 0xa0a0 } else { 0xb0b0 }
}

/// RDVL #1: the current vector length in bytes.
fn rdvl() -> usize {
    let v: usize;
    // SAFETY: RDVL only reads the vector length (SVE is enabled by then).
    unsafe { asm!(".arch_extension sve", "rdvl {}, #1", out(reg) v, options(nomem, nostack)) };
    v
}

fn read_zcr() -> u64 {
    let v: u64;
    // SAFETY: reading ZCR_EL1 (S3_0_C1_C2_0) has no side effect.
    unsafe { asm!("mrs {}, S3_0_C1_C2_0", out(reg) v, options(nomem, nostack)) };
    v
}

fn write_zcr(v: u64) {
    // SAFETY: ZCR_EL1.LEN only selects this EL1's vector length.
    unsafe { asm!("msr S3_0_C1_C2_0, {}", "isb", in(reg) v, options(nostack)) };
}

/// Bytes of Z0-Z31, P0-P15 and FFR at `vl` bytes per vector.
fn state_len(vl: usize) -> usize {
    32 * vl + 17 * (vl / 8)
}

/// Fills `buf` (layout of `sve_peek` at `vl` bytes) with round `round`'s
/// pattern: each Z doubleword `tag | round | register | lane`, each P byte
/// from the role, register and round, FFR its first `k` lanes true (a
/// monotonic value, as the first-fault register holds).
fn pattern(buf: &mut [u8], vl: usize, tag: u64, round: u64) {
    for n in 0..32 {
        for lane in 0..vl / 8 {
            let w = (tag << 48) | (round << 32) | ((n as u64) << 16) | lane as u64;
            let at = n * vl + lane * 8;
            buf[at..at + 8].copy_from_slice(&w.to_le_bytes());
        }
    }
    let pl = vl / 8;
    let p0 = 32 * vl;
    for n in 0..16 {
        for b in 0..pl {
            buf[p0 + n * pl + b] = (tag as u8) ^ (n as u8 * 17) ^ (round as u8 * 29) ^ b as u8;
        }
    }
    let k = 1 + ((round as usize * 7 + tag as usize) % vl);
    let ffr = p0 + 16 * pl;
    for b in 0..pl {
        let bits = k.saturating_sub(b * 8).min(8);
        buf[ffr + b] = ((1u16 << bits) - 1) as u8;
    }
}

static mut SRC: [u8; MAX_STATE] = [0; MAX_STATE];
static mut DST: [u8; MAX_STATE] = [0; MAX_STATE];

fn main(dtb: u64) -> ! {
    // SAFETY: the boot protocol puts the device tree in guest RAM at x0.
    let tree = unsafe { fdt::Fdt::at(dtb) };
    let args = tree.and_then(|t| t.bootargs()).unwrap_or("");
    let role = fdt::bootarg(args, "role").unwrap_or("a");
    let cap_bits: usize = fdt::bootarg(args, "vl")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let cap = cap_bits / 8;
    let other = if role == "a" { "b" } else { "a" };
    println!("Ferrovisor SVE guest: role={role} vl={cap_bits}");

    let (pfr0, zfr0): (u64, u64);
    // SAFETY: reading ID registers has no side effect.
    unsafe {
        asm!("mrs {}, id_aa64pfr0_el1", out(reg) pfr0, options(nomem, nostack));
        asm!("mrs {}, S3_0_C0_C4_4", out(reg) zfr0, options(nomem, nostack));
    }
    let shown = (pfr0 >> 32) & 0xf == 1 && zfr0 != 0;
    check!(
        "sve: ID_AA64PFR0_EL1.SVE = 1 and ID_AA64ZFR0_EL1 describes it",
        shown,
        "PFR0 {pfr0:#x}, ZFR0 {zfr0:#x}"
    );
    if !shown {
        finish()
    }

    // CPACR_EL1.ZEN = 0b11: SVE no longer traps at this EL1.
    let cpacr: u64;
    // SAFETY: CPACR_EL1 only controls this EL1's FP/SIMD and SVE traps.
    unsafe {
        asm!(
            "mrs {c}, cpacr_el1",
            "orr {c}, {c}, #(3 << 16)",
            "msr cpacr_el1, {c}",
            "isb",
            "mrs {c}, cpacr_el1",
            c = out(reg) cpacr,
            options(nostack)
        )
    };
    check!(
        "sve: CPACR_EL1.ZEN reads back as written",
        (cpacr >> 16) & 3 == 3,
        "{cpacr:#x}"
    );

    write_zcr(15);
    let zcr = read_zcr();
    check!(
        "sve: ZCR_EL1 reads back what the guest wrote",
        zcr & 0xf == 15,
        "{zcr:#x}"
    );
    let vl = rdvl();
    check!(
        "sve: RDVL = the VM's cap",
        vl == cap && cap != 0,
        "RDVL {vl} bytes, cap {cap}"
    );
    let vl = vl.clamp(16, 256);
    let len = state_len(vl);

    // What the vCPU finds at its first SVE use.
    // SAFETY: DST holds MAX_STATE >= state_len(vl) bytes; only this CPU uses it.
    let found = unsafe {
        let dst = &mut *core::ptr::addr_of_mut!(DST);
        sve_peek(dst.as_mut_ptr());
        &dst[..len]
    };
    let above_v = (0..32).flat_map(|n| n * vl + 16..(n + 1) * vl);
    let stale = above_v.chain(32 * vl..len).find(|&b| found[b] != 0);
    let leaked = found
        .chunks_exact(8)
        .position(|w| u64::from_le_bytes(w.try_into().unwrap()) >> 48 == tag(other));
    check!(
        "sve: a fresh vCPU finds Z above V, P and FFR zero, nothing of the other VM",
        stale.is_none() && leaked.is_none(),
        "first non-zero byte {stale:?}, other VM's word at {leaked:?}"
    );

    let mut rdvls = [0; 2];
    for (len, r) in rdvls.iter_mut().enumerate() {
        write_zcr(len as u64);
        *r = rdvl();
    }
    write_zcr(15);
    check!(
        "sve: RDVL = min(ZCR_EL1.LEN + 1, cap)",
        rdvls == [16, 32.min(cap)],
        "{rdvls:?} for LEN 0, 1"
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
        let mut s = 0;
        // SAFETY: SRC and DST hold MAX_STATE bytes each, only this CPU uses
        // them; the routine reads state_len(vl) of SRC, writes as many of DST
        // and `s`, and restores the callee-saved FP registers.
        let (src, dst) = unsafe {
            let src = &mut *core::ptr::addr_of_mut!(SRC);
            let dst = &mut *core::ptr::addr_of_mut!(DST);
            pattern(&mut src[..len], vl, tag(role), round);
            dst.fill(0);
            sve_round(src.as_ptr(), dst.as_mut_ptr(), ITERATIONS, gap, &mut s);
            (&src[..len], &dst[..len])
        };
        switches += s;
        if let Some(at) = (0..len).find(|&i| src[i] != dst[i]) {
            if bad == 0 {
                first_bad = (round, at);
            }
            bad += 1;
        }
    }
    println!("sve: {switches} switches seen over {ROUNDS} rounds");
    check!(
        "sve: Z0-Z31, P0-P15 and FFR survive every switch",
        bad == 0,
        "{bad} rounds differ; first: round {}, byte {}",
        first_bad.0,
        first_bad.1
    );
    check!(
        "sve: the CPU went to the other VM while the patterns were live",
        switches >= MIN_SWITCHES,
        "{switches} switches"
    );
    let (zcr, vl) = (read_zcr(), rdvl());
    check!(
        "sve: ZCR_EL1 and RDVL unchanged after the switches",
        zcr & 0xf == 15 && vl == cap,
        "ZCR_EL1 {zcr:#x}, RDVL {vl}"
    );
    finish()
}
