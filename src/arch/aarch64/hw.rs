//! The run loop's hardware ([`Hw`]) on this CPU: system registers, the
//! physical GIC, and the world-switch pieces that move a vCPU's state in and
//! out (EL1 registers, FP/SIMD, debug registers, timers, virtual CPU
//! interface).

use core::arch::{asm, global_asm};
use core::sync::atomic::{AtomicU8, Ordering};

use super::{firmware, gic, hostgic, percpu, regs};
use crate::sysreg::SysReg;
use crate::sysreg::pmu::{PmuAccess, PmuHw};
use crate::vgic::ListRegisters;
use crate::vgic::host::{self, Completion, PHYSICAL_TIMER_INTID, VIRTUAL_TIMER_INTID};
use crate::vm::exit::GuestHw;
use crate::vm::hw::{El2State, Hw};
use crate::vm::vcpu::{DebugRegs, El1Regs, FP_REGS_FPSR, FpRegs, GicCpuRegs, SveRegs, TimerRegs};

/// How the firmware is reached (PSCI), for powering the machine off.
static CONDUIT: AtomicU8 = AtomicU8::new(0);

/// Breakpoint and watchpoint register pairs of this CPU (one more than
/// ID_AA64DFR0_EL1.BRPs and .WRPs): all of them are switched, not only the
/// ones the CPU model shows, since a guest can reach every register the
/// hardware has.
fn debug_pairs() -> (usize, usize) {
    let dfr0 = regs::read_id_aa64dfr0_el1();
    (
        ((dfr0 >> 12) & 0xf) as usize + 1,
        ((dfr0 >> 20) & 0xf) as usize + 1,
    )
}

/// Records how the firmware is reached.
pub fn init(conduit: firmware::Conduit) {
    CONDUIT.store(
        match conduit {
            firmware::Conduit::Smc => 0,
            firmware::Conduit::Hvc => 1,
        },
        Ordering::Relaxed,
    );
}

fn conduit() -> firmware::Conduit {
    match CONDUIT.load(Ordering::Relaxed) {
        1 => firmware::Conduit::Hvc,
        _ => firmware::Conduit::Smc,
    }
}

global_asm!(
    r#"
// FP/SIMD state: x0 = &FpRegs (V0-V31 at 0, FPSR, FPCR at {fpsr}). The
// hypervisor is built soft-float; these are the only FP instructions in it.
.arch_extension fp
.arch_extension simd
.section .text
.global __fv_save_fp
__fv_save_fp:
    stp     q0, q1, [x0, #0]
    stp     q2, q3, [x0, #32]
    stp     q4, q5, [x0, #64]
    stp     q6, q7, [x0, #96]
    stp     q8, q9, [x0, #128]
    stp     q10, q11, [x0, #160]
    stp     q12, q13, [x0, #192]
    stp     q14, q15, [x0, #224]
    stp     q16, q17, [x0, #256]
    stp     q18, q19, [x0, #288]
    stp     q20, q21, [x0, #320]
    stp     q22, q23, [x0, #352]
    stp     q24, q25, [x0, #384]
    stp     q26, q27, [x0, #416]
    stp     q28, q29, [x0, #448]
    stp     q30, q31, [x0, #480]
    mrs     x1, fpsr
    mrs     x2, fpcr
    add     x0, x0, #{fpsr}
    stp     x1, x2, [x0]
    ret

.global __fv_restore_fp
__fv_restore_fp:
    ldp     q0, q1, [x0, #0]
    ldp     q2, q3, [x0, #32]
    ldp     q4, q5, [x0, #64]
    ldp     q6, q7, [x0, #96]
    ldp     q8, q9, [x0, #128]
    ldp     q10, q11, [x0, #160]
    ldp     q12, q13, [x0, #192]
    ldp     q14, q15, [x0, #224]
    ldp     q16, q17, [x0, #256]
    ldp     q18, q19, [x0, #288]
    ldp     q20, q21, [x0, #320]
    ldp     q22, q23, [x0, #352]
    ldp     q24, q25, [x0, #384]
    ldp     q26, q27, [x0, #416]
    ldp     q28, q29, [x0, #448]
    ldp     q30, q31, [x0, #480]
    add     x0, x0, #{fpsr}
    ldp     x1, x2, [x0]
    msr     fpsr, x1
    msr     fpcr, x2
    ret
"#,
    fpsr = const FP_REGS_FPSR,
);

global_asm!(
    r#"
// SVE state: x0 = Z0-Z31, then P0-P15 and FFR (SveRegs::buf, sized for EL2's
// current vector length), x1 = &[FPSR, FPCR, ZCR_EL1]. Runs with CPTR_EL2.TZ
// and TFP clear and ZCR_EL2.LEN set to the layout's length: STR/LDR Zn and Pn
// "MUL VL" use the vector length of the executing EL (Arm ARM, ZCR_EL2). FFR
// goes through P0, so P0 is saved before and loaded after it.
.arch_extension sve
.section .text
.global __fv_save_sve
__fv_save_sve:
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
    ldr     p0, [x0]
    mrs     x2, fpsr
    mrs     x3, fpcr
    mrs     x4, S3_0_C1_C2_0
    stp     x2, x3, [x1]
    str     x4, [x1, #16]
    ret

.global __fv_restore_sve
__fv_restore_sve:
    .irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    ldr     z\n, [x0, #\n, MUL VL]
    .endr
    addvl   x0, x0, #16
    addvl   x0, x0, #16
    ldr     p0, [x0, #16, MUL VL]
    wrffr   p0.b
    .irp n,0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15
    ldr     p\n, [x0, #\n, MUL VL]
    .endr
    ldp     x2, x3, [x1]
    ldr     x4, [x1, #16]
    msr     fpsr, x2
    msr     fpcr, x3
    msr     S3_0_C1_C2_0, x4
    ret
"#
);

unsafe extern "C" {
    fn __fv_save_fp(f: *mut FpRegs);
    fn __fv_restore_fp(f: *const FpRegs);
    fn __fv_save_sve(buf: *mut u8, sys: *mut [u64; 3]);
    fn __fv_restore_sve(buf: *const u8, sys: *const [u64; 3]);
}

/// Checks [`SveRegs`] against EL2's current vector length before the assembly
/// moves `SveRegs::bytes(vq)` bytes: a buffer of another length would be
/// overrun. Never fails when the run loop keeps ZCR_EL2 at the owner's cap.
fn sve_layout_ok(s: &SveRegs) -> bool {
    s.vq != 0 && s.buf.len() == SveRegs::bytes(s.vq) && regs::sve_vl_bytes() == 16 * s.vq as u64
}

/// Reads or writes debug register `$kind<n>_EL1` for a run-time `n` (the
/// register number is part of the instruction encoding).
macro_rules! debug_reg {
    (read $kind:literal, $n:expr) => {{
        macro_rules! rd {
            ($i:literal) => {{
                let v: u64;
                // SAFETY: reading a debug register at EL2 has no side effect.
                unsafe { asm!(concat!("mrs {}, ", $kind, $i, "_el1"), out(reg) v, options(nomem, nostack, preserves_flags)) };
                v
            }};
        }
        match $n {
            0 => rd!("0"), 1 => rd!("1"), 2 => rd!("2"), 3 => rd!("3"),
            4 => rd!("4"), 5 => rd!("5"), 6 => rd!("6"), 7 => rd!("7"),
            8 => rd!("8"), 9 => rd!("9"), 10 => rd!("10"), 11 => rd!("11"),
            12 => rd!("12"), 13 => rd!("13"), 14 => rd!("14"), _ => rd!("15"),
        }
    }};
    (write $kind:literal, $n:expr, $v:expr) => {{
        let v: u64 = $v;
        macro_rules! wr {
            ($i:literal) => {
                // SAFETY: the guest's own debug register value goes back into
                // the register it was saved from, or zero (disabled).
                unsafe { asm!(concat!("msr ", $kind, $i, "_el1, {}"), in(reg) v, options(nomem, nostack, preserves_flags)) }
            };
        }
        match $n {
            0 => wr!("0"), 1 => wr!("1"), 2 => wr!("2"), 3 => wr!("3"),
            4 => wr!("4"), 5 => wr!("5"), 6 => wr!("6"), 7 => wr!("7"),
            8 => wr!("8"), 9 => wr!("9"), 10 => wr!("10"), 11 => wr!("11"),
            12 => wr!("12"), 13 => wr!("13"), 14 => wr!("14"), _ => wr!("15"),
        }
    }};
}

/// The hardware of the CPU that runs the caller.
pub struct ArchHw;

impl GuestHw for ArchHw {
    fn vbar_el1(&self) -> u64 {
        regs::read_vbar_el1()
    }
    fn sctlr_el1(&self) -> u64 {
        regs::read_sctlr_el1()
    }
    fn write_exception_regs(&mut self, esr: u64, far: Option<u64>, elr: u64, spsr: u64) {
        regs::write_esr_el1(esr);
        if let Some(far) = far {
            regs::write_far_el1(far);
        }
        regs::write_elr_el1(elr);
        regs::write_spsr_el1(spsr);
    }
}

impl PmuAccess for ArchHw {
    fn pmu_read(&mut self, reg: PmuHw) -> u64 {
        regs::read_pmu(reg)
    }
    fn pmu_write(&mut self, reg: PmuHw, value: u64) {
        regs::write_pmu(reg, value)
    }
}

impl ListRegisters for ArchHw {
    fn read_lr(&self, n: usize) -> u64 {
        gic::read_lr(n)
    }
    fn write_lr(&mut self, n: usize, value: u64) {
        gic::write_lr(n, value)
    }
    fn write_hcr(&mut self, value: u64) {
        gic::write_ich_hcr(value)
    }
}

impl Hw for ArchHw {
    fn this_cpu(&self) -> usize {
        percpu::current_index()
    }

    fn syndrome(&self) -> (u64, u64, u64) {
        (
            regs::read_esr_el2(),
            regs::read_far_el2(),
            regs::read_hpfar_el2(),
        )
    }

    fn esr(&self) -> u64 {
        regs::read_esr_el2()
    }

    fn load_el2(&mut self, s: &El2State) {
        regs::write_vtcr_el2(s.vtcr);
        regs::write_vttbr_el2(s.vttbr);
        let mut c = s.controls;
        c.hcr_el2 = s.hcr;
        c.stop_buffers = None;
        regs::write_el2_controls(&c);
        regs::write_cntvoff_el2(s.cntvoff);
        regs::write_vpidr_el2(s.vpidr);
        regs::write_vmpidr_el2(s.vmpidr);
        percpu::set_guest_ctr_el0(s.guest_ctr_el0);
        regs::isb();
    }

    fn write_hcr_el2(&mut self, hcr: u64) {
        regs::write_hcr_el2(hcr);
        regs::isb();
    }

    fn read_hcr_el2(&self) -> u64 {
        regs::read_hcr_el2()
    }

    fn write_vsesr_el2(&mut self, value: u64) {
        if self.has_ras() {
            regs::write_vsesr_el2(value);
        }
    }

    fn has_ras(&self) -> bool {
        // ID_AA64PFR0_EL1.RAS, bits [31:28]: 1 or more is FEAT_RAS.
        (regs::read_id_aa64pfr0_el1() >> 28) & 0xf >= 1
    }

    fn read_vdisr_el2(&self) -> u64 {
        // Without FEAT_RAS the encoding is UNDEFINED at EL2: never reached.
        if self.has_ras() {
            regs::read_vdisr_el2()
        } else {
            0
        }
    }

    fn write_vdisr_el2(&mut self, value: u64) {
        if self.has_ras() {
            regs::write_vdisr_el2(value);
        }
    }

    fn tlbi_vmid(&mut self) {
        regs::tlbi_vmid_all();
    }

    // What a vCPU switch saves and restores, and why the rest needs nothing
    // (issue 10, item 3). Citations are to the Arm ARM (DDI 0487).
    // - EL1/EL0 system registers (save_el1/restore_el1): SCTLR, TTBR0/1, TCR,
    //   MAIR, AMAIR, VBAR, CONTEXTIDR, TPIDR_EL0/EL1, TPIDRRO_EL0, ESR, FAR,
    //   AFSR0/1, PAR, CPACR, ELR, SPSR, SP_EL0/EL1, CNTKCTL, CSSELR, MDSCR: every
    //   EL1&0 register a guest can read back without a trap (Arm ARM, "AArch64
    //   System Register Descriptions"). Not switched, because the guest cannot
    //   reach them: ACTLR_EL1 (HCR_EL2.TACR traps it: HCR_EL2 description), TCR2_EL1,
    //   SCTLR2_EL1, PIRE0/PIR_EL1, POR_EL0/EL1, GCS registers (their HCRX_EL2
    //   enables are clear, so they are UNDEFINED at EL1), the pointer
    //   authentication keys (HCR_EL2.APK/API clear trap them:
    //   "Pointer authentication", HCR_EL2), SCXTNUM
    //   (HCR_EL2.EnSCXT clear), ERR* (HCR_EL2.TERR), PMU (MDCR_EL2.TPM/TPMCR:
    //   every access trapped; a VM with a PMU has its counters' registers
    //   moved by sysreg::pmu::save/restore through pmu_read/pmu_write),
    //   AMU, SPE, trace, MTE registers (trapped or UNDEFINED while hidden; see
    //   src/vm/controls.rs). Debug breakpoint/watchpoint registers:
    //   save_debug/restore_debug (MDSCR_EL1 above).
    // - FP/SIMD (save_fp/restore_fp): V0-V31, FPSR, FPCR, eagerly (CPACR_EL1
    //   above keeps the guest's own FPEN).
    // - Timers (save_timers/restore_timers): CNTV_CTL/CVAL, CNTP_CTL/CVAL, and
    //   the active state of their PPIs; CNTVOFF_EL2 is per VM (load_el2).
    // - GIC CPU interface (save_gic_cpu/restore_gic_cpu): ICH_VMCR_EL2 and the
    //   ICH_AP0R/AP1R<n>_EL2 the implementation has (ICH_VTR_EL2.PRIbits); the
    //   list registers are folded back into the vGIC and cleared at unload
    //   (Vgic::save), refilled at entry.
    // - Stage 2 and EL2 controls (load_el2): VTTBR_EL2 with the VM's VMID (no
    //   TLB flush between VMs: stage 1&2 TLB entries are tagged with the VMID,
    //   "VMID and the stage 2 translation regime"), VTCR,
    //   HCR, HCRX, MDCR, CPTR, CNTHCTL, the fine-grained traps, VPIDR, VMPIDR.
    // - RAS (Pcpu::load/unload, where this CPU has FEAT_RAS): VDISR_EL2,
    //   since with HCR_EL2.AMO set the guest's DISR_EL1 accesses reach it
    //   and its ESB records a deferred virtual SError there (Arm ARM,
    //   DISR_EL1 and VDISR_EL2 descriptions); VSESR_EL2, the syndrome a
    //   pending virtual SError is taken or deferred with, written at every
    //   load so no vCPU gets another's.
    fn save_el1(&mut self, r: &mut El1Regs) {
        r.sctlr = regs::read_sctlr_el1();
        r.ttbr0 = regs::read_ttbr0_el1();
        r.ttbr1 = regs::read_ttbr1_el1();
        r.tcr = regs::read_tcr_el1();
        r.mair = regs::read_mair_el1();
        r.amair = regs::read_amair_el1();
        r.vbar = regs::read_vbar_el1();
        r.contextidr = regs::read_contextidr_el1();
        r.tpidr_el0 = regs::read_tpidr_el0();
        r.tpidr_el1 = regs::read_tpidr_el1();
        r.tpidrro_el0 = regs::read_tpidrro_el0();
        r.esr = regs::read_esr_el1();
        r.far = regs::read_far_el1();
        r.afsr0 = regs::read_afsr0_el1();
        r.afsr1 = regs::read_afsr1_el1();
        r.par = regs::read_par_el1();
        r.cpacr = regs::read_cpacr_el1();
        r.elr = regs::read_elr_el1();
        r.spsr = regs::read_spsr_el1();
        r.sp_el0 = regs::read_sp_el0();
        r.sp_el1 = regs::read_sp_el1();
        r.cntkctl = regs::read_cntkctl_el1();
        r.csselr = regs::read_csselr_el1();
        r.mdscr = regs::read_mdscr_el1();
    }

    fn restore_el1(&mut self, r: &El1Regs) {
        regs::write_sctlr_el1(r.sctlr);
        regs::write_ttbr0_el1(r.ttbr0);
        regs::write_ttbr1_el1(r.ttbr1);
        regs::write_tcr_el1(r.tcr);
        regs::write_mair_el1(r.mair);
        regs::write_amair_el1(r.amair);
        regs::write_vbar_el1(r.vbar);
        regs::write_contextidr_el1(r.contextidr);
        regs::write_tpidr_el0(r.tpidr_el0);
        regs::write_tpidr_el1(r.tpidr_el1);
        regs::write_tpidrro_el0(r.tpidrro_el0);
        regs::write_esr_el1(r.esr);
        regs::write_far_el1(r.far);
        regs::write_afsr0_el1(r.afsr0);
        regs::write_afsr1_el1(r.afsr1);
        regs::write_par_el1(r.par);
        regs::write_cpacr_el1(r.cpacr);
        regs::write_elr_el1(r.elr);
        regs::write_spsr_el1(r.spsr);
        regs::write_sp_el0(r.sp_el0);
        regs::write_sp_el1(r.sp_el1);
        regs::write_cntkctl_el1(r.cntkctl);
        regs::write_csselr_el1(r.csselr);
        regs::write_mdscr_el1(r.mdscr);
        regs::isb();
    }

    fn write_vm_control(&mut self, reg: SysReg, value: u64) -> bool {
        regs::write_vm_control_reg(reg, value)
    }

    fn write_cptr_el2(&mut self, value: u64) {
        regs::write_cptr_el2(value);
        regs::isb();
    }

    fn save_fp(&mut self, f: &mut FpRegs) {
        // SAFETY: `f` is a valid, exclusive FpRegs with the layout the assembly
        // expects (V0-V31 then FPSR, FPCR; checked by a const assert); the
        // routine touches only it and x0-x2.
        unsafe { __fv_save_fp(f) }
    }

    fn restore_fp(&mut self, f: &FpRegs) {
        // SAFETY: as for `save_fp`; it reads `f` and writes the FP registers,
        // which the hypervisor (soft-float) never uses itself.
        unsafe { __fv_restore_fp(f) }
    }

    fn write_zcr_el2(&mut self, value: u64) {
        regs::write_zcr_el2(value);
        regs::isb();
    }

    fn save_sve(&mut self, s: &mut SveRegs) {
        if !sve_layout_ok(s) {
            log::error!(
                "SVE save skipped: buffer for {} quadwords, EL2 VL differs",
                s.vq
            );
            return;
        }
        // SAFETY: `buf` holds exactly Z0-Z31, P0-P15, FFR at EL2's current
        // vector length (checked above), `sys` three words; the routine writes
        // only them and x0-x4, and runs with TZ/TFP clear (the caller's rule).
        unsafe { __fv_save_sve(s.buf.as_mut_ptr(), &mut s.sys) }
    }

    fn restore_sve(&mut self, s: &SveRegs) {
        if !sve_layout_ok(s) {
            log::error!(
                "SVE restore skipped: buffer for {} quadwords, EL2 VL differs",
                s.vq
            );
            return;
        }
        // SAFETY: as for `save_sve`; it reads `s` and writes the SVE and FP
        // registers and ZCR_EL1, which the hypervisor never uses itself.
        unsafe { __fv_restore_sve(s.buf.as_ptr(), &s.sys) }
    }

    fn save_debug(&mut self, d: &mut DebugRegs) {
        let (brps, wrps) = debug_pairs();
        for n in 0..brps {
            d.bvr[n] = debug_reg!(read "dbgbvr", n);
            d.bcr[n] = debug_reg!(read "dbgbcr", n);
        }
        for n in 0..wrps {
            d.wvr[n] = debug_reg!(read "dbgwvr", n);
            d.wcr[n] = debug_reg!(read "dbgwcr", n);
        }
    }

    fn restore_debug(&mut self, d: &DebugRegs) {
        let (brps, wrps) = debug_pairs();
        for n in 0..brps {
            debug_reg!(write "dbgbvr", n, d.bvr[n]);
            debug_reg!(write "dbgbcr", n, d.bcr[n]);
        }
        for n in 0..wrps {
            debug_reg!(write "dbgwvr", n, d.wvr[n]);
            debug_reg!(write "dbgwcr", n, d.wcr[n]);
        }
        regs::isb();
    }

    fn counter(&self) -> u64 {
        regs::read_cntpct_el0()
    }

    fn counter_frequency(&self) -> u64 {
        regs::read_cntfrq_el0()
    }

    fn save_timers(&mut self, t: &mut TimerRegs) {
        t.cntv_ctl = regs::read_cntv_ctl_el0();
        t.cntv_cval = regs::read_cntv_cval_el0();
        t.cntp_ctl = regs::read_cntp_ctl_el0();
        t.cntp_cval = regs::read_cntp_cval_el0();
        regs::write_cntv_ctl_el0(0);
        regs::write_cntp_ctl_el0(0);
        regs::isb();
        let active = hostgic::private_active_here();
        t.vtimer_active = active & (1 << VIRTUAL_TIMER_INTID) != 0;
        t.ptimer_active = active & (1 << PHYSICAL_TIMER_INTID) != 0;
        if t.vtimer_active {
            hostgic::set_private_active_here(VIRTUAL_TIMER_INTID, false);
        }
        if t.ptimer_active {
            hostgic::set_private_active_here(PHYSICAL_TIMER_INTID, false);
        }
    }

    fn restore_timers(&mut self, t: &TimerRegs) {
        if t.vtimer_active {
            hostgic::set_private_active_here(VIRTUAL_TIMER_INTID, true);
        }
        if t.ptimer_active {
            hostgic::set_private_active_here(PHYSICAL_TIMER_INTID, true);
        }
        regs::write_cntv_cval_el0(t.cntv_cval);
        regs::write_cntp_cval_el0(t.cntp_cval);
        // ISTATUS is read-only; only ENABLE and IMASK are written back.
        regs::write_cntv_ctl_el0(t.cntv_ctl & 0b11);
        regs::write_cntp_ctl_el0(t.cntp_ctl & 0b11);
        regs::isb();
    }

    fn read_cntv_ctl(&self) -> u64 {
        regs::read_cntv_ctl_el0()
    }

    fn read_cntp_ctl(&self) -> u64 {
        regs::read_cntp_ctl_el0()
    }

    fn set_hyp_timer(&mut self, deadline: Option<u64>) {
        match deadline {
            Some(d) => regs::arm_hyp_timer_at(d),
            None => regs::disarm_hyp_timer(),
        }
    }

    fn save_gic_cpu(&mut self, g: &mut GicCpuRegs) {
        g.vmcr = gic::read_ich_vmcr();
        for n in 0..host::nr_active_priority_registers(gic::read_ich_vtr()) {
            g.ap0r[n] = gic::read_ap0r(n);
            g.ap1r[n] = gic::read_ap1r(n);
        }
    }

    fn restore_gic_cpu(&mut self, g: &GicCpuRegs) {
        gic::write_ich_vmcr(g.vmcr);
        for n in 0..host::nr_active_priority_registers(gic::read_ich_vtr()) {
            gic::write_ap0r(n, g.ap0r[n]);
            gic::write_ap1r(n, g.ap1r[n]);
        }
    }

    fn read_ich_vmcr(&self) -> u64 {
        gic::read_ich_vmcr()
    }

    fn acknowledge(&mut self) -> u32 {
        gic::acknowledge()
    }

    fn complete(&mut self, intid: u32, how: Completion) {
        gic::complete(intid, how)
    }

    fn kick(&mut self, cpu: usize) {
        hostgic::kick(cpu)
    }

    fn deactivate_ppi_on(&mut self, cpu: usize, intid: u32) {
        hostgic::deactivate_ppi_on(cpu, intid)
    }

    fn deactivate_spi(&mut self, intid: u32) {
        hostgic::deactivate_spi(intid)
    }

    fn route_spi(&mut self, intid: u32, cpu: usize) {
        hostgic::route_spi(intid, cpu)
    }

    fn take_ppi_active(&mut self, intid: u32) -> bool {
        let active = hostgic::private_active_here() & (1 << intid) != 0;
        if active {
            hostgic::set_private_active_here(intid, false);
        }
        active
    }

    fn set_ppi_active(&mut self, intid: u32) {
        hostgic::set_private_active_here(intid, true);
    }

    fn clean_invalidate(&mut self, pa: u64, len: u64) {
        regs::dcache_clean_invalidate(pa, len)
    }

    fn write_stage2_entry(&mut self, entry_pa: u64, desc: u64) {
        super::memory::write_table_entry(entry_pa, desc);
        regs::dsb_ishst();
    }

    fn wait_for_interrupt(&mut self) {
        regs::wfi()
    }

    fn system_off(&mut self) {
        super::memory::log_stack_use();
        crate::devices::console::drain_all();
        firmware::system_off(conduit())
    }
}
