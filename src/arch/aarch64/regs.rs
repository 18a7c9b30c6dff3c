//! System-register and maintenance-instruction accessors that aarch64-cpu lacks,
//! and small wrappers for the ones it has, so the rest of the arch layer reads as
//! plain calls.

use core::arch::asm;

/// Defines `read_<name>()` / `write_<name>(v)` for a system register. The encoded
/// form (`S3_4_C1_C2_0`) is used where LLVM wants a target feature for the name
/// (see TOOLCHAIN.md "Assembler").
macro_rules! sysreg {
    ($read:ident, $write:ident, $name:literal) => {
        #[allow(dead_code)]
        #[inline(always)]
        pub fn $read() -> u64 {
            let v: u64;
            // SAFETY: reading a system register has no memory effects; the register
            // is accessible at EL2 on every CPU this build runs on.
            unsafe { asm!(concat!("mrs {}, ", $name), out(reg) v, options(nomem, nostack, preserves_flags)) };
            v
        }
        #[allow(dead_code)]
        #[inline(always)]
        pub fn $write(v: u64) {
            // SAFETY: the callers write values the Arm ARM defines for the register;
            // an `isb` (where needed) is the caller's business.
            unsafe { asm!(concat!("msr ", $name, ", {}"), in(reg) v, options(nostack, preserves_flags)) };
        }
    };
    ($read:ident, $name:literal) => {
        #[allow(dead_code)]
        #[inline(always)]
        pub fn $read() -> u64 {
            let v: u64;
            // SAFETY: reading a system register has no memory effects; the register
            // is accessible at EL2 on every CPU this build runs on.
            unsafe { asm!(concat!("mrs {}, ", $name), out(reg) v, options(nomem, nostack, preserves_flags)) };
            v
        }
    };
}

sysreg!(read_hcr_el2, write_hcr_el2, "hcr_el2");
sysreg!(read_vtcr_el2, write_vtcr_el2, "vtcr_el2");
sysreg!(read_vttbr_el2, write_vttbr_el2, "vttbr_el2");
sysreg!(read_vpidr_el2, write_vpidr_el2, "vpidr_el2");
sysreg!(read_vmpidr_el2, write_vmpidr_el2, "vmpidr_el2");
sysreg!(read_cptr_el2, write_cptr_el2, "cptr_el2");
// ZCR_EL2 (S3_4_C1_C2_0), encoded: LLVM wants the SVE feature for the name.
sysreg!(read_zcr_el2, write_zcr_el2, "S3_4_C1_C2_0");

/// EL2's current SVE vector length in bytes (RDVL #1). Only with
/// CPTR_EL2.TZ and TFP clear on a CPU with SVE.
#[inline(always)]
pub fn sve_vl_bytes() -> u64 {
    let v: u64;
    // SAFETY: RDVL reads the vector length into a register; callers run it
    // only where SVE exists and is untrapped at EL2.
    unsafe {
        asm!(".arch_extension sve", "rdvl {}, #1", out(reg) v, options(nomem, nostack, preserves_flags))
    };
    v
}

/// The SVE vector lengths this CPU implements, as a mask (bit vq - 1 set when
/// 128 * vq bits is one). Each ZCR_EL2.LEN from 0 to 15 is tried: the
/// effective length is the largest implemented one not above LEN + 1
/// quadwords (Arm ARM, ZCR_EL2.LEN), so LEN = vq - 1 giving vq quadwords
/// means vq is implemented. Only on a CPU with SVE; CPTR_EL2 and ZCR_EL2 are
/// put back as found.
pub fn probe_sve_vqs() -> u16 {
    const TZ_TFP: u64 = (1 << 8) | (1 << 10);
    let cptr = read_cptr_el2();
    // ZCR_EL2 itself is behind CPTR_EL2.TZ: untrapped first.
    write_cptr_el2(cptr & !TZ_TFP);
    isb();
    let zcr = read_zcr_el2();
    let mut mask = 0u16;
    for vq in 1..=16u64 {
        write_zcr_el2(vq - 1);
        isb();
        if sve_vl_bytes() == 16 * vq {
            mask |= 1 << (vq - 1);
        }
    }
    write_zcr_el2(zcr);
    write_cptr_el2(cptr);
    isb();
    mask
}
sysreg!(read_mdcr_el2, write_mdcr_el2, "mdcr_el2");
sysreg!(read_hstr_el2, write_hstr_el2, "hstr_el2");
sysreg!(read_cnthctl_el2, write_cnthctl_el2, "cnthctl_el2");
sysreg!(read_cntvoff_el2, write_cntvoff_el2, "cntvoff_el2");
sysreg!(read_ttbr0_el2, write_ttbr0_el2, "ttbr0_el2");
sysreg!(read_tcr_el2, write_tcr_el2, "tcr_el2");
sysreg!(read_mair_el2, write_mair_el2, "mair_el2");
sysreg!(read_tpidr_el2, write_tpidr_el2, "tpidr_el2");
sysreg!(read_esr_el2, "esr_el2");
sysreg!(read_far_el2, "far_el2");
sysreg!(read_hpfar_el2, "hpfar_el2");
sysreg!(read_current_el, "CurrentEL");
sysreg!(read_mpidr_el1, "mpidr_el1");
sysreg!(read_midr_el1, "midr_el1");
sysreg!(read_cntpct_el0, "cntpct_el0");
sysreg!(read_cntfrq_el0, "cntfrq_el0");

// The guest's EL1 registers, live in hardware while its vCPU owns this CPU.
sysreg!(read_sctlr_el1, write_sctlr_el1, "sctlr_el1");
sysreg!(read_esr_el1, write_esr_el1, "esr_el1");
sysreg!(read_far_el1, write_far_el1, "far_el1");
sysreg!(read_elr_el1, write_elr_el1, "elr_el1");
sysreg!(read_spsr_el1, write_spsr_el1, "spsr_el1");
sysreg!(read_vbar_el1, write_vbar_el1, "vbar_el1");
sysreg!(read_ttbr0_el1, write_ttbr0_el1, "ttbr0_el1");
sysreg!(read_ttbr1_el1, write_ttbr1_el1, "ttbr1_el1");
sysreg!(read_tcr_el1, write_tcr_el1, "tcr_el1");
sysreg!(read_mair_el1, write_mair_el1, "mair_el1");
sysreg!(read_amair_el1, write_amair_el1, "amair_el1");
sysreg!(read_contextidr_el1, write_contextidr_el1, "contextidr_el1");
sysreg!(read_afsr0_el1, write_afsr0_el1, "afsr0_el1");
sysreg!(read_afsr1_el1, write_afsr1_el1, "afsr1_el1");
sysreg!(read_cpacr_el1, write_cpacr_el1, "cpacr_el1");
sysreg!(read_csselr_el1, write_csselr_el1, "csselr_el1");

// ID and cache-description registers, read at boot for the CPU model.
sysreg!(read_id_aa64pfr0_el1, "id_aa64pfr0_el1");
sysreg!(read_id_aa64pfr1_el1, "id_aa64pfr1_el1");
sysreg!(read_id_aa64dfr0_el1, "id_aa64dfr0_el1");
sysreg!(read_id_aa64dfr1_el1, "id_aa64dfr1_el1");
sysreg!(read_id_aa64isar0_el1, "id_aa64isar0_el1");
sysreg!(read_id_aa64isar1_el1, "id_aa64isar1_el1");
sysreg!(read_id_aa64isar2_el1, "S3_0_C0_C6_2");
sysreg!(read_id_aa64mmfr0_el1, "id_aa64mmfr0_el1");
sysreg!(read_id_aa64mmfr1_el1, "id_aa64mmfr1_el1");
sysreg!(read_id_aa64mmfr2_el1, "id_aa64mmfr2_el1");
sysreg!(read_id_aa64mmfr3_el1, "S3_0_C0_C7_3");
sysreg!(read_id_aa64zfr0_el1, "S3_0_C0_C4_4");
sysreg!(read_id_aa64smfr0_el1, "S3_0_C0_C4_5");
sysreg!(read_id_aa64afr0_el1, "id_aa64afr0_el1");
sysreg!(read_id_aa64afr1_el1, "id_aa64afr1_el1");
sysreg!(read_clidr_el1, "clidr_el1");
sysreg!(read_ccsidr_el1, "ccsidr_el1");
sysreg!(read_ctr_el0, "ctr_el0");

/// `isb`.
#[inline(always)]
pub fn isb() {
    // SAFETY: a barrier has no effect other than ordering.
    unsafe { asm!("isb", options(nostack, preserves_flags)) };
}

/// `dsb ish`.
#[inline(always)]
pub fn dsb_ish() {
    // SAFETY: a barrier has no effect other than ordering.
    unsafe { asm!("dsb ish", options(nostack, preserves_flags)) };
}

/// `dsb ishst`: earlier stores (a translation table entry) complete before
/// later accesses, inner shareable.
#[inline(always)]
pub fn dsb_ishst() {
    // SAFETY: a barrier has no effect other than ordering.
    unsafe { asm!("dsb ishst", options(nostack, preserves_flags)) };
}

/// `dsb sy`.
#[inline(always)]
pub fn dsb_sy() {
    // SAFETY: a barrier has no effect other than ordering.
    unsafe { asm!("dsb sy", options(nostack, preserves_flags)) };
}

/// Invalidates the stage-2 translations of one IPA page for the current VMID, then
/// the combined stage-1+2 entries that may hold it (Arm ARM D8.13.6: after
/// changing a stage-2 entry, `TLBI IPAS2E1IS` then `DSB`, then `TLBI VMALLE1IS`).
pub fn tlbi_ipa(ipa: u64) {
    // SAFETY: TLB maintenance only drops cached translations for the current VMID.
    unsafe {
        asm!(
            "dsb ishst",
            "tlbi ipas2e1is, {0}",
            "dsb ish",
            "tlbi vmalle1is",
            "dsb ish",
            "isb",
            in(reg) ipa >> 12,
            options(nostack, preserves_flags)
        )
    };
}

/// Invalidates every stage-1 and stage-2 translation of the current VMID.
pub fn tlbi_vmid_all() {
    // SAFETY: TLB maintenance only drops cached translations for the current VMID.
    unsafe {
        asm!(
            "dsb ishst",
            "tlbi vmalls12e1is",
            "dsb ish",
            "isb",
            options(nostack, preserves_flags)
        )
    };
}

/// Invalidates all EL2 translations (after switching the EL2 table).
pub fn tlbi_el2_all() {
    // SAFETY: TLB maintenance only drops cached translations.
    unsafe {
        asm!(
            "dsb ishst",
            "tlbi alle2is",
            "dsb ish",
            "isb",
            options(nostack, preserves_flags)
        )
    };
}

/// The smallest data-cache line of this CPU, from CTR_EL0.DminLine (log2 words).
pub fn dcache_line() -> usize {
    4 << ((read_ctr_el0() >> 16) & 0xf)
}

/// Cleans and invalidates `[start, start + len)` to the point of coherency by VA
/// (`DC CIVAC`). The range must be mapped in the EL2 identity map.
pub fn dcache_clean_invalidate(start: u64, len: u64) {
    let line = dcache_line() as u64;
    let mut addr = start & !(line - 1);
    let end = start + len;
    while addr < end {
        // SAFETY: DC CIVAC on a mapped address writes back and drops cache lines;
        // memory contents as seen by the program do not change.
        unsafe { asm!("dc civac, {}", in(reg) addr, options(nostack, preserves_flags)) };
        addr += line;
    }
    dsb_sy();
}

/// Invalidates the whole instruction cache to the point of unification,
/// Inner Shareable (after writing guest code).
pub fn icache_invalidate_all() {
    // SAFETY: I-cache invalidation has no architectural effect on data.
    unsafe {
        asm!(
            "ic ialluis",
            "dsb ish",
            "isb",
            options(nostack, preserves_flags)
        )
    };
}

/// Wait for an event or interrupt.
#[inline(always)]
pub fn wfe() {
    // SAFETY: WFE only suspends execution until an event.
    unsafe { asm!("wfe", options(nomem, nostack, preserves_flags)) };
}

/// Wait for an interrupt.
#[inline(always)]
pub fn wfi() {
    // SAFETY: WFI only suspends execution until an interrupt is pending.
    unsafe { asm!("wfi", options(nomem, nostack, preserves_flags)) };
}

/// `YIELD`: a hint that this PE is spinning (see [`crate::sync`]).
#[inline(always)]
pub fn yield_hint() {
    // SAFETY: YIELD is a hint with no architectural effect.
    unsafe { asm!("yield", options(nomem, nostack, preserves_flags)) };
}

/// `SEV`.
#[inline(always)]
pub fn sev() {
    // SAFETY: SEV only signals an event to all PEs.
    unsafe { asm!("sev", options(nomem, nostack, preserves_flags)) };
}

/// Reads CCSIDR_EL1 for the cache that `csselr` selects. Runs with interrupts
/// masked (always, at EL2), so CSSELR_EL1 cannot change in between; the guest's
/// CSSELR_EL1 is put back (the guest owns the register when TID2/TID4 are clear).
pub fn read_ccsidr_for(csselr: u64) -> u64 {
    let saved = read_csselr_el1();
    write_csselr_el1(csselr);
    isb();
    let v = read_ccsidr_el1();
    write_csselr_el1(saved);
    isb();
    v
}

sysreg!(read_sp_el1, write_sp_el1, "sp_el1");
sysreg!(read_sp_el0, write_sp_el0, "sp_el0");
sysreg!(read_tpidr_el1, write_tpidr_el1, "tpidr_el1");
sysreg!(read_tpidr_el0, write_tpidr_el0, "tpidr_el0");
sysreg!(read_tpidrro_el0, write_tpidrro_el0, "tpidrro_el0");
sysreg!(read_cntkctl_el1, write_cntkctl_el1, "cntkctl_el1");
sysreg!(read_cntv_ctl_el0, write_cntv_ctl_el0, "cntv_ctl_el0");
sysreg!(read_cntv_cval_el0, write_cntv_cval_el0, "cntv_cval_el0");
sysreg!(read_cntp_ctl_el0, write_cntp_ctl_el0, "cntp_ctl_el0");
sysreg!(read_cntp_cval_el0, write_cntp_cval_el0, "cntp_cval_el0");
sysreg!(read_par_el1, write_par_el1, "par_el1");
sysreg!(read_mdscr_el1, write_mdscr_el1, "mdscr_el1");

/// Puts the EL1/EL0 system registers a guest sees into their reset state, so a
/// VM (re)starting on this CPU finds nothing of what ran here before.
pub fn reset_el1_state(sctlr_el1: u64) {
    write_sctlr_el1(sctlr_el1);
    isb();
    for w in [
        write_ttbr0_el1,
        write_ttbr1_el1,
        write_tcr_el1,
        write_mair_el1,
        write_amair_el1,
        write_vbar_el1,
        write_contextidr_el1,
        write_esr_el1,
        write_far_el1,
        write_afsr0_el1,
        write_afsr1_el1,
        write_elr_el1,
        write_spsr_el1,
        write_sp_el1,
        write_sp_el0,
        write_tpidr_el1,
        write_tpidr_el0,
        write_tpidrro_el0,
        write_cpacr_el1,
        write_cntkctl_el1,
        write_cntv_ctl_el0,
        write_cntv_cval_el0,
        write_cntp_ctl_el0,
        write_cntp_cval_el0,
        write_par_el1,
        write_mdscr_el1,
        write_csselr_el1,
    ] {
        w(0);
    }
    isb();
}

/// Writes one of the guest's EL1 registers whose trapped writes the CPU model
/// passes on to the hardware: the VM control registers HCR_EL2.TVM traps (Arm ARM,
/// HCR_EL2.TVM: a trapped guest write must still take effect) and CPACR_EL1
/// (CPTR_EL2.TCPAC, the value `VmCpuModel::cpacr_el1_hw` gives). Returns false
/// for any other encoding.
pub fn write_vm_control_reg(reg: crate::sysreg::SysReg, value: u64) -> bool {
    use crate::sysreg::SysReg;
    const SCTLR: SysReg = SysReg::new(3, 0, 1, 0, 0);
    const CPACR: SysReg = SysReg::new(3, 0, 1, 0, 2);
    const TTBR0: SysReg = SysReg::new(3, 0, 2, 0, 0);
    const TTBR1: SysReg = SysReg::new(3, 0, 2, 0, 1);
    const TCR: SysReg = SysReg::new(3, 0, 2, 0, 2);
    const AFSR0: SysReg = SysReg::new(3, 0, 5, 1, 0);
    const AFSR1: SysReg = SysReg::new(3, 0, 5, 1, 1);
    const ESR: SysReg = SysReg::new(3, 0, 5, 2, 0);
    const FAR: SysReg = SysReg::new(3, 0, 6, 0, 0);
    const MAIR: SysReg = SysReg::new(3, 0, 10, 2, 0);
    const AMAIR: SysReg = SysReg::new(3, 0, 10, 3, 0);
    const CONTEXTIDR: SysReg = SysReg::new(3, 0, 13, 0, 1);
    let write: fn(u64) = match reg {
        SCTLR => write_sctlr_el1,
        CPACR => write_cpacr_el1,
        TTBR0 => write_ttbr0_el1,
        TTBR1 => write_ttbr1_el1,
        TCR => write_tcr_el1,
        AFSR0 => write_afsr0_el1,
        AFSR1 => write_afsr1_el1,
        ESR => write_esr_el1,
        FAR => write_far_el1,
        MAIR => write_mair_el1,
        AMAIR => write_amair_el1,
        CONTEXTIDR => write_contextidr_el1,
        _ => return false,
    };
    write(value);
    isb();
    true
}

/// Sets or clears HCR_EL2.TVM on this CPU (trap the guest's VM control registers).
pub fn set_trap_vm(on: bool) {
    use aarch64_cpu::registers::HCR_EL2;
    use tock_registers::LocalRegisterCopy;
    let mut hcr = LocalRegisterCopy::<u64, HCR_EL2::Register>::new(read_hcr_el2());
    hcr.modify(if on {
        HCR_EL2::TVM::SET
    } else {
        HCR_EL2::TVM::CLEAR
    });
    write_hcr_el2(hcr.get());
    isb();
}

sysreg!(read_cnthp_ctl_el2, write_cnthp_ctl_el2, "cnthp_ctl_el2");
sysreg!(read_cnthp_cval_el2, write_cnthp_cval_el2, "cnthp_cval_el2");

/// Milliseconds since the counter started (CNTPCT_EL0 / CNTFRQ_EL0).
pub fn now_ms() -> u64 {
    let freq = read_cntfrq_el0().max(1);
    (read_cntpct_el0() as u128 * 1000 / freq as u128) as u64
}

/// Arms the EL2 physical timer (CNTHP, PPI 26) to fire `ms` from now: the
/// hypervisor's own wake-up while it idles.
pub fn arm_hyp_timer_ms(ms: u64) {
    let ticks = read_cntfrq_el0() / 1000 * ms;
    write_cnthp_cval_el2(read_cntpct_el0() + ticks);
    write_cnthp_ctl_el2(1); // ENABLE, not masked
    isb();
}

/// Arms the EL2 physical timer to fire when the counter reaches `deadline`.
pub fn arm_hyp_timer_at(deadline: u64) {
    write_cnthp_cval_el2(deadline);
    write_cnthp_ctl_el2(1); // ENABLE, not masked
    isb();
}

/// Turns the EL2 physical timer off (its interrupt stops).
pub fn disarm_hyp_timer() {
    write_cnthp_ctl_el2(0);
    isb();
}

// EL2 control registers aarch64-cpu lacks, in the encoded form LLVM accepts
// without a target feature (TOOLCHAIN.md, "Assembler").
sysreg!(read_hcrx_el2, write_hcrx_el2, "S3_4_C1_C2_2");
sysreg!(read_hfgrtr2_el2, write_hfgrtr2_el2, "S3_4_C3_C1_2");
sysreg!(read_hfgwtr2_el2, write_hfgwtr2_el2, "S3_4_C3_C1_3");
sysreg!(read_hfgitr2_el2, write_hfgitr2_el2, "S3_4_C3_C1_7");
sysreg!(read_hdfgrtr2_el2, write_hdfgrtr2_el2, "S3_4_C3_C1_0");
sysreg!(read_hdfgwtr2_el2, write_hdfgwtr2_el2, "S3_4_C3_C1_1");
sysreg!(read_mpam2_el2, write_mpam2_el2, "S3_4_C10_C5_0");
sysreg!(read_mpamhcr_el2, write_mpamhcr_el2, "S3_4_C10_C4_0");
sysreg!(read_mpamidr_el1, "S3_0_C10_C4_4");
sysreg!(read_vsesr_el2, write_vsesr_el2, "S3_4_C5_C2_3");
sysreg!(read_vdisr_el2, write_vdisr_el2, "S3_4_C12_C1_1");
// Profiling and trace buffers and EL2 filters, stopped at boot.
sysreg!(read_pmscr_el2, write_pmscr_el2, "S3_4_C9_C9_0");
sysreg!(read_pmblimitr_el1, write_pmblimitr_el1, "S3_0_C9_C10_0");
sysreg!(read_trblimitr_el1, write_trblimitr_el1, "S3_0_C9_C11_0");
sysreg!(read_trfcr_el2, write_trfcr_el2, "S3_4_C1_C2_1");

/// Writes every EL2 control register of `c`, whole: what the guest may reach
/// depends on nothing an earlier boot stage left in them. Registers `c` marks
/// absent (`None`) do not exist on this CPU and are not touched.
pub fn write_el2_controls(c: &crate::vm::controls::El2Controls) {
    use aarch64_cpu::registers::{
        HAFGRTR_EL2, HDFGRTR_EL2, HDFGWTR_EL2, HFGITR_EL2, HFGRTR_EL2, HFGWTR_EL2,
    };
    use tock_registers::interfaces::Writeable;
    if let Some(b) = c.stop_buffers {
        // Stop what could still be writing trace or samples to memory before
        // MDCR_EL2 hands the buffers to EL2: no EL2 profiling (PMSCR_EL2) or
        // tracing (TRFCR_EL2), buffers disabled (PMBLIMITR_EL1.E, TRBLIMITR_EL1.E).
        if b.spe {
            write_pmscr_el2(0);
            write_pmblimitr_el1(0);
        }
        if b.trf {
            write_trfcr_el2(0);
        }
        if b.trbe {
            write_trblimitr_el1(0);
        }
        isb();
        dsb_sy();
    }
    write_hcr_el2(c.hcr_el2);
    if let Some(v) = c.hcrx_el2 {
        write_hcrx_el2(v);
    }
    write_cptr_el2(c.cptr_el2);
    write_mdcr_el2(c.mdcr_el2);
    write_cnthctl_el2(c.cnthctl_el2);
    write_hstr_el2(c.hstr_el2);
    if let Some(f) = &c.fgt {
        HFGRTR_EL2.set(f.hfgrtr_el2);
        HFGWTR_EL2.set(f.hfgwtr_el2);
        HFGITR_EL2.set(f.hfgitr_el2);
        HDFGRTR_EL2.set(f.hdfgrtr_el2);
        HDFGWTR_EL2.set(f.hdfgwtr_el2);
        if let Some(v) = f.hafgrtr_el2 {
            HAFGRTR_EL2.set(v);
        }
    }
    if let Some(f) = &c.fgt2 {
        write_hfgrtr2_el2(f.hfgrtr2_el2);
        write_hfgwtr2_el2(f.hfgwtr2_el2);
        write_hfgitr2_el2(f.hfgitr2_el2);
        write_hdfgrtr2_el2(f.hdfgrtr2_el2);
        write_hdfgwtr2_el2(f.hdfgwtr2_el2);
    }
    if let Some(m) = &c.mpam {
        write_mpam2_el2(m.mpam2_el2);
        if let Some(v) = m.mpamhcr_el2 {
            write_mpamhcr_el2(v);
        }
    }
    isb();
}

/// Makes a virtual SError pending for the guest on this CPU (HCR_EL2.VSE), with
/// its syndrome in VSESR_EL2 where FEAT_RAS gives one. The guest takes it when
/// it unmasks SErrors (PSTATE.A); the hardware then clears VSE.
pub fn pend_virtual_serror(v: &crate::vm::controls::VirtualSError) {
    use aarch64_cpu::registers::HCR_EL2;
    use tock_registers::LocalRegisterCopy;
    if let Some(vsesr) = v.vsesr_el2 {
        write_vsesr_el2(vsesr);
    }
    let mut hcr = LocalRegisterCopy::<u64, HCR_EL2::Register>::new(read_hcr_el2());
    hcr.modify(HCR_EL2::VSE::SET);
    write_hcr_el2(hcr.get());
    isb();
}

// The PMUv3 registers, reached at EL2 on the guest's behalf (`sysreg::pmu`).
// Encoded names: PMMIR_EL1 needs a target feature for its name.
sysreg!(read_pmcr_el0, write_pmcr_el0, "S3_3_C9_C12_0");
sysreg!(read_pmcntenset_el0, write_pmcntenset_el0, "S3_3_C9_C12_1");
sysreg!(read_pmcntenclr_el0, write_pmcntenclr_el0, "S3_3_C9_C12_2");
sysreg!(read_pmovsclr_el0, write_pmovsclr_el0, "S3_3_C9_C12_3");
sysreg!(read_pmselr_el0, write_pmselr_el0, "S3_3_C9_C12_5");
sysreg!(read_pmceid0_el0, "S3_3_C9_C12_6");
sysreg!(read_pmceid1_el0, "S3_3_C9_C12_7");
sysreg!(read_pmccntr_el0, write_pmccntr_el0, "S3_3_C9_C13_0");
sysreg!(read_pmxevtyper_el0, write_pmxevtyper_el0, "S3_3_C9_C13_1");
sysreg!(read_pmxevcntr_el0, write_pmxevcntr_el0, "S3_3_C9_C13_2");
sysreg!(read_pmuserenr_el0, write_pmuserenr_el0, "S3_3_C9_C14_0");
sysreg!(read_pmovsset_el0, write_pmovsset_el0, "S3_3_C9_C14_3");
sysreg!(read_pmintenset_el1, write_pmintenset_el1, "S3_0_C9_C14_1");
sysreg!(read_pmintenclr_el1, write_pmintenclr_el1, "S3_0_C9_C14_2");
sysreg!(read_pmmir_el1, "S3_0_C9_C14_6");
sysreg!(read_pmccfiltr_el0, write_pmccfiltr_el0, "S3_3_C14_C15_7");

/// Selects event counter `n` for PMXEVCNTR/PMXEVTYPER (the guest's PMSELR_EL0 is
/// kept in software, so the hardware's is EL2's to use).
fn select_counter(n: u8) {
    write_pmselr_el0(n as u64 & 0x1f);
    isb();
}

/// Reads a PMU register (`sysreg::pmu::PmuHw`). PMSWINC_EL0 is write-only: 0.
pub fn read_pmu(reg: crate::sysreg::pmu::PmuHw) -> u64 {
    use crate::sysreg::pmu::PmuHw as P;
    match reg {
        P::Pmcr => read_pmcr_el0(),
        P::Cntenset => read_pmcntenset_el0(),
        P::Cntenclr => read_pmcntenclr_el0(),
        P::Ovsset => read_pmovsset_el0(),
        P::Ovsclr => read_pmovsclr_el0(),
        P::Intenset => read_pmintenset_el1(),
        P::Intenclr => read_pmintenclr_el1(),
        P::Swinc => 0,
        P::Ceid0 => read_pmceid0_el0(),
        P::Ceid1 => read_pmceid1_el0(),
        P::Ccntr => read_pmccntr_el0(),
        P::Ccfiltr => read_pmccfiltr_el0(),
        P::Userenr => read_pmuserenr_el0(),
        P::Mmir => read_pmmir_el1(),
        P::Evcntr(n) => {
            select_counter(n);
            read_pmxevcntr_el0()
        }
        P::Evtyper(n) => {
            select_counter(n);
            read_pmxevtyper_el0()
        }
    }
}

/// Writes a PMU register (`sysreg::pmu::PmuHw`); the read-only ones are ignored.
pub fn write_pmu(reg: crate::sysreg::pmu::PmuHw, v: u64) {
    use crate::sysreg::pmu::PmuHw as P;
    match reg {
        P::Pmcr => write_pmcr_el0(v),
        P::Cntenset => write_pmcntenset_el0(v),
        P::Cntenclr => write_pmcntenclr_el0(v),
        P::Ovsset => write_pmovsset_el0(v),
        P::Ovsclr => write_pmovsclr_el0(v),
        P::Intenset => write_pmintenset_el1(v),
        P::Intenclr => write_pmintenclr_el1(v),
        P::Ccntr => write_pmccntr_el0(v),
        P::Ccfiltr => write_pmccfiltr_el0(v),
        P::Userenr => write_pmuserenr_el0(v),
        P::Evcntr(n) => {
            select_counter(n);
            write_pmxevcntr_el0(v)
        }
        P::Evtyper(n) => {
            select_counter(n);
            write_pmxevtyper_el0(v)
        }
        // PMSWINC_EL0 written at EL2 counts for no guest: it is emulated
        // (`sysreg::pmu::software_increment`), never written.
        P::Swinc | P::Ceid0 | P::Ceid1 | P::Mmir => {}
    }
    // No `isb` per write: what the writes change takes effect by the `eret`
    // into the guest (a context synchronization event); reads made here in
    // between are of other registers, except through PMSELR_EL0, which
    // `select_counter` synchronizes.
}
