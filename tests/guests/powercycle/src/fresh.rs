//! Issue 13, item 4: a reset VM, and a vCPU started by CPU_ON, start exactly like
//! a fresh one. [`dirty_cpu`] fills what a vCPU can write and read back — the
//! FP/SIMD registers and FPCR, EL1 system registers, a breakpoint's registers
//! and MDSCR_EL1, the EL1 physical timer — with values no reset leaves;
//! [`dirty_gic`] does the same to the vGIC. [`fingerprint`] reads it all back:
//! the first boot prints it fresh, the boot after the reset must print the same
//! (tests/powercycle.rs compares them), and neither may hold a value written
//! before (a check here).

use core::arch::asm;

use crate::gic;

/// In each half of every V register, and in the EL1 registers below.
pub const PATTERN: u64 = 0xa5c3_5a3c_f00d_d00d;
/// FPCR.RMode = 0b11 (round towards zero) and FZ: a rounding mode no reset leaves.
const FPCR_DIRTY: u64 = 0b11 << 22 | 1 << 24;
/// MDSCR_EL1.TDCC (12): EL0 DCC access traps; harmless to this guest.
const MDSCR_DIRTY: u64 = 1 << 12;
/// DBGBVR0_EL1: an address; DBGBCR0_EL1: BAS = 0xf, PMC = 0b11, E = 0 (the
/// breakpoint stays disabled, MDSCR_EL1.MDE is 0 anyway).
const BVR_DIRTY: u64 = 0x4008_0000;
const BCR_DIRTY: u64 = 0xf << 5 | 0b11 << 1;
/// The SPI, SGI and PPI the vGIC dirtying touches.
const SPI: usize = 32;
const SGI: u32 = 5;
const PPI_PTIMER: u32 = 30;

macro_rules! sysreg {
    ($read:ident, $write:ident, $name:literal) => {
        fn $read() -> u64 {
            let v: u64;
            // SAFETY: reading this EL1/EL0 register has no side effects.
            unsafe { asm!(concat!("mrs {}, ", $name), out(reg) v, options(nomem, nostack)) };
            v
        }
        #[allow(dead_code)]
        fn $write(v: u64) {
            // SAFETY: the value written is harmless to this guest (see the
            // constants above); the test's point is that it does not survive.
            unsafe { asm!(concat!("msr ", $name, ", {}"), "isb", in(reg) v, options(nomem, nostack)) };
        }
    };
}

sysreg!(tpidr_el1, set_tpidr_el1, "tpidr_el1");
sysreg!(tpidr_el0, set_tpidr_el0, "tpidr_el0");
sysreg!(tpidrro_el0, set_tpidrro_el0, "tpidrro_el0");
sysreg!(contextidr_el1, set_contextidr_el1, "contextidr_el1");
sysreg!(far_el1, set_far_el1, "far_el1");
sysreg!(fpcr, set_fpcr, "fpcr");
sysreg!(mdscr_el1, set_mdscr_el1, "mdscr_el1");
sysreg!(dbgbvr0_el1, set_dbgbvr0_el1, "dbgbvr0_el1");
sysreg!(dbgbcr0_el1, set_dbgbcr0_el1, "dbgbcr0_el1");
sysreg!(cntp_ctl, set_cntp_ctl, "cntp_ctl_el0");
sysreg!(cntp_cval, set_cntp_cval, "cntp_cval_el0");
sysreg!(cntv_cval, set_cntv_cval_raw, "cntv_cval_el0");
sysreg!(cntkctl_el1, set_cntkctl_el1, "cntkctl_el1");

fn fill_v_registers() {
    // SAFETY: only the V registers change, and they are declared clobbered.
    unsafe {
        asm!(
            "dup v0.2d, {p}",
            "dup v1.2d, {p}",
            "dup v2.2d, {p}",
            "dup v3.2d, {p}",
            "dup v4.2d, {p}",
            "dup v5.2d, {p}",
            "dup v6.2d, {p}",
            "dup v7.2d, {p}",
            "dup v8.2d, {p}",
            "dup v9.2d, {p}",
            "dup v10.2d, {p}",
            "dup v11.2d, {p}",
            "dup v12.2d, {p}",
            "dup v13.2d, {p}",
            "dup v14.2d, {p}",
            "dup v15.2d, {p}",
            "dup v16.2d, {p}",
            "dup v17.2d, {p}",
            "dup v18.2d, {p}",
            "dup v19.2d, {p}",
            "dup v20.2d, {p}",
            "dup v21.2d, {p}",
            "dup v22.2d, {p}",
            "dup v23.2d, {p}",
            "dup v24.2d, {p}",
            "dup v25.2d, {p}",
            "dup v26.2d, {p}",
            "dup v27.2d, {p}",
            "dup v28.2d, {p}",
            "dup v29.2d, {p}",
            "dup v30.2d, {p}",
            "dup v31.2d, {p}",
            p = in(reg) PATTERN,
            out("v0") _,
            out("v1") _,
            out("v2") _,
            out("v3") _,
            out("v4") _,
            out("v5") _,
            out("v6") _,
            out("v7") _,
            out("v8") _,
            out("v9") _,
            out("v10") _,
            out("v11") _,
            out("v12") _,
            out("v13") _,
            out("v14") _,
            out("v15") _,
            out("v16") _,
            out("v17") _,
            out("v18") _,
            out("v19") _,
            out("v20") _,
            out("v21") _,
            out("v22") _,
            out("v23") _,
            out("v24") _,
            out("v25") _,
            out("v26") _,
            out("v27") _,
            out("v28") _,
            out("v29") _,
            out("v30") _,
            out("v31") _,
            options(nomem, nostack),
        )
    };
}

/// How many 64-bit halves of the V registers hold [`PATTERN`].
fn v_pattern_halves() -> u32 {
    let mut v = [0u64; 64];
    // SAFETY: stores q0-q31 into `v`, 512 bytes, which it is.
    unsafe {
        asm!(
            "stp q0, q1, [{b}, #0]",
            "stp q2, q3, [{b}, #32]",
            "stp q4, q5, [{b}, #64]",
            "stp q6, q7, [{b}, #96]",
            "stp q8, q9, [{b}, #128]",
            "stp q10, q11, [{b}, #160]",
            "stp q12, q13, [{b}, #192]",
            "stp q14, q15, [{b}, #224]",
            "stp q16, q17, [{b}, #256]",
            "stp q18, q19, [{b}, #288]",
            "stp q20, q21, [{b}, #320]",
            "stp q22, q23, [{b}, #352]",
            "stp q24, q25, [{b}, #384]",
            "stp q26, q27, [{b}, #416]",
            "stp q28, q29, [{b}, #448]",
            "stp q30, q31, [{b}, #480]",
            b = in(reg) v.as_mut_ptr(),
            options(nostack),
        )
    };
    v.iter().filter(|&&h| h == PATTERN).count() as u32
}

/// Fills this vCPU's own registers with values no reset leaves.
pub fn dirty_cpu() {
    fill_v_registers();
    set_fpcr(FPCR_DIRTY);
    for set in [set_tpidr_el1, set_tpidr_el0, set_tpidrro_el0, set_far_el1] {
        set(PATTERN);
    }
    set_contextidr_el1(PATTERN & 0xffff_ffff);
    set_cntkctl_el1(0b11);
    set_mdscr_el1(MDSCR_DIRTY);
    set_dbgbvr0_el1(BVR_DIRTY);
    set_dbgbcr0_el1(BCR_DIRTY);
    // The EL1 physical timer armed, unmasked, a second ahead.
    set_cntp_cval(gic::cntvct() + gic::cntfrq());
    set_cntp_ctl(1);
}

/// Whether this vCPU's own registers hold nothing [`dirty_cpu`] wrote; what does.
/// Counts the V registers' pattern first, before this function's own code can
/// have used a V register (the compiler may keep [`PATTERN`] in one to compare).
pub fn cpu_is_clean() -> Result<(), &'static str> {
    cpu_clean_with(v_pattern_halves())
}

fn cpu_clean_with(halves: u32) -> Result<(), &'static str> {
    if halves != 0 {
        return Err("V registers hold the pattern");
    }
    if fpcr() == FPCR_DIRTY {
        return Err("FPCR");
    }
    if [tpidr_el1(), tpidr_el0(), tpidrro_el0(), far_el1()].contains(&PATTERN)
        || contextidr_el1() == PATTERN & 0xffff_ffff
    {
        return Err("EL1/EL0 thread or fault registers");
    }
    if mdscr_el1() & MDSCR_DIRTY != 0 || dbgbvr0_el1() == BVR_DIRTY || dbgbcr0_el1() == BCR_DIRTY {
        return Err("debug registers");
    }
    if cntp_ctl() & 1 != 0 || cntkctl_el1() & 0b11 == 0b11 {
        return Err("timer controls");
    }
    Ok(())
}

/// Fills vCPU 0's view of the vGIC with values no reset leaves: an SPI enabled,
/// prioritised and routed elsewhere, an SGI enabled and pending, the physical
/// timer's PPI enabled, SGI priorities, the CPU interface's mask and binary point.
pub fn dirty_gic() {
    let sgi = gic::sgi_base(0);
    gic::write32(gic::GICD_BASE + gic::GICD_IGROUPR + 4, 0xffff_ffff);
    gic::write32(gic::GICD_BASE + gic::GICD_ISENABLER + 4, 0xff);
    gic::write32(gic::GICD_BASE + gic::GICD_IPRIORITYR + SPI, 0x4040_4040);
    gic::write64(gic::GICD_BASE + gic::GICD_IROUTER + 8 * SPI, 1);
    gic::write32(sgi + gic::GICR_IPRIORITYR, 0x5050_5050);
    gic::write32(sgi + gic::GICR_ISENABLER0, 1 << SGI | 1 << PPI_PTIMER);
    gic::write32(sgi + gic::GICR_ISPENDR0, 1 << SGI);
    gic::set_icc_pmr(0x80);
    gic::set_icc_bpr1(3);
    gic::set_icc_igrpen1(1);
}

/// Everything a vCPU 0 can read of its state and the vGIC's, for comparing a
/// fresh boot with one after a reset (vCPU 1's redistributor included: it had
/// an SGI active).
pub fn fingerprint() -> [u64; 24] {
    let gicd = |off: usize| u64::from(gic::read32(gic::GICD_BASE + off));
    let gicr = |n: usize, off: usize| u64::from(gic::read32(gic::sgi_base(n) + off));
    [
        u64::from(v_pattern_halves()),
        fpcr(),
        tpidr_el1(),
        tpidr_el0() ^ tpidrro_el0() ^ far_el1() ^ contextidr_el1(),
        mdscr_el1() ^ dbgbvr0_el1() ^ dbgbcr0_el1().rotate_left(32),
        cntp_ctl() ^ cntkctl_el1() << 8,
        cntp_cval() ^ cntv_cval() ^ gic::cntv_ctl() << 60,
        gicd(gic::GICD_CTLR),
        gicd(gic::GICD_IGROUPR + 4),
        gicd(gic::GICD_ISENABLER + 4),
        gicd(gic::GICD_ISPENDR + 4) ^ gicd(gic::GICD_ISACTIVER + 4) << 32,
        gicd(gic::GICD_IPRIORITYR + SPI),
        gic::read64(gic::GICD_BASE + gic::GICD_IROUTER + 8 * SPI),
        gicr(0, gic::GICR_IGROUPR0),
        gicr(0, gic::GICR_ISENABLER0),
        gicr(0, gic::GICR_ISPENDR0),
        gicr(0, gic::GICR_ISACTIVER0),
        gicr(0, gic::GICR_IPRIORITYR),
        gicr(1, gic::GICR_ISENABLER0),
        gicr(1, gic::GICR_ISPENDR0),
        gicr(1, gic::GICR_ISACTIVER0),
        gic::icc_pmr(),
        gic::icc_igrpen1(),
        gic::icc_ctlr(),
    ]
}

/// Whether a fingerprint holds nothing [`dirty_cpu`] or [`dirty_gic`] wrote.
pub fn fingerprint_is_clean(f: &[u64; 24]) -> Result<(), &'static str> {
    cpu_clean_with(f[0] as u32)?;
    if f[9] & 0xff == 0xff || f[11] == 0x4040_4040 || f[17] == 0x5050_5050 {
        return Err("vGIC enables or priorities");
    }
    if f[15] & 1 << SGI != 0 || f[20] != 0 || f[16] != 0 {
        return Err("an SGI pending or active");
    }
    if f[21] == 0x80 {
        return Err("ICC_PMR_EL1");
    }
    Ok(())
}
