//! The GICv3 as a bare-metal driver sees it (IHI 0069): the distributor and
//! redistributor registers at QEMU `virt`'s addresses, the CPU interface system
//! registers, and the virtual timer.
//!
//! Every MMIO access is one plain `ldr`/`str` (no writeback addressing), so a
//! hypervisor that emulates the GIC from the data-abort syndrome (ESR_EL2.ISV = 1)
//! can decode it.

use core::arch::asm;

/// QEMU `virt`: the distributor (GICD), one 64 KiB frame.
pub const GICD_BASE: usize = 0x0800_0000;
/// QEMU `virt`: the first redistributor (GICR); each is an RD_base frame and an
/// SGI_base frame, [`GICR_STRIDE`] apart.
pub const GICR_BASE: usize = 0x080A_0000;
/// IHI 0069, "The GIC Redistributor register map": RD_base, then SGI_base 64 KiB on.
pub const GICR_STRIDE: usize = 0x2_0000;
pub const GICR_SGI_BASE: usize = 0x1_0000;

// GICD registers (IHI 0069, "The GIC Distributor register map").
pub const GICD_CTLR: usize = 0x0000;
pub const GICD_TYPER: usize = 0x0004;
pub const GICD_IGROUPR: usize = 0x0080;
pub const GICD_ISENABLER: usize = 0x0100;
pub const GICD_ICENABLER: usize = 0x0180;
pub const GICD_ISPENDR: usize = 0x0200;
pub const GICD_ICPENDR: usize = 0x0280;
pub const GICD_ISACTIVER: usize = 0x0300;
pub const GICD_IPRIORITYR: usize = 0x0400;
pub const GICD_IROUTER: usize = 0x6000;
/// Peripheral ID2 (GICD and GICR RD_base): ArchRev [7:4].
pub const GIC_PIDR2: usize = 0xFFE8;

/// GICD_CTLR with one Security state (DS = 1) or as Non-secure software sees it:
/// RWP [31], DS [6], ARE(_NS) [4], EnableGrp1(NS/A) [1], EnableGrp0 [0].
pub const GICD_CTLR_RWP: u32 = 1 << 31;
pub const GICD_CTLR_DS: u32 = 1 << 6;
pub const GICD_CTLR_ARE: u32 = 1 << 4;
pub const GICD_CTLR_ENABLE_GRP1: u32 = 1 << 1;

/// GICD_TYPER: ITLinesNumber [4:0] ((N + 1) * 32 INTIDs), LPIS [17], IDbits [23:19].
pub fn gicd_typer_it_lines(typer: u32) -> u32 {
    typer & 0x1f
}
pub const GICD_TYPER_LPIS: u32 = 1 << 17;
pub fn gicd_typer_id_bits(typer: u32) -> u32 {
    ((typer >> 19) & 0x1f) + 1
}

// GICR RD_base registers.
pub const GICR_TYPER: usize = 0x0008;
pub const GICR_WAKER: usize = 0x0014;
/// GICR_WAKER: ProcessorSleep [1], ChildrenAsleep [2].
pub const GICR_WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
pub const GICR_WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
/// GICR_TYPER: Affinity_Value [63:32] (Aff3.Aff2.Aff1.Aff0), Last [4], PLPIS [0].
pub const GICR_TYPER_LAST: u64 = 1 << 4;
pub fn gicr_typer_affinity(typer: u64) -> u32 {
    (typer >> 32) as u32
}

// GICR SGI_base registers: the SGI/PPI halves of the GICD families.
pub const GICR_IGROUPR0: usize = 0x0080;
pub const GICR_ISENABLER0: usize = 0x0100;
pub const GICR_ICENABLER0: usize = 0x0180;
pub const GICR_ISPENDR0: usize = 0x0200;
pub const GICR_ICPENDR0: usize = 0x0280;
pub const GICR_ISACTIVER0: usize = 0x0300;
pub const GICR_ICACTIVER0: usize = 0x0380;
pub const GICR_IPRIORITYR: usize = 0x0400;

/// The spurious INTID (IHI 0069, "Special INTIDs"): nothing to acknowledge.
pub const INTID_SPURIOUS: u32 = 1023;
/// The EL1 virtual timer's PPI (Arm BSA / QEMU virt: INTID 27).
pub const INTID_VTIMER: u32 = 27;

/// A 32-bit register read.
pub fn read32(addr: usize) -> u32 {
    let v: u32;
    // SAFETY: `addr` is a GIC register in the Device mapping of the identity map; a
    // 32-bit load has no effect beyond the register's read side effects.
    unsafe {
        asm!("ldr {v:w}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack, preserves_flags))
    };
    v
}

/// A 64-bit register read (GICR_TYPER, GICD_IROUTER).
pub fn read64(addr: usize) -> u64 {
    let v: u64;
    // SAFETY: as `read32`.
    unsafe {
        asm!("ldr {v}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack, preserves_flags))
    };
    v
}

/// A 32-bit register write.
pub fn write32(addr: usize, value: u32) {
    // SAFETY: `addr` is a GIC register in the Device mapping; what the write does
    // to the interrupt state is the test's intent.
    unsafe {
        asm!("str {v:w}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack, preserves_flags))
    };
}

/// A 64-bit register write.
pub fn write64(addr: usize, value: u64) {
    // SAFETY: as `write32`.
    unsafe {
        asm!("str {v}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack, preserves_flags))
    };
}

/// A byte write (IPRIORITYR is byte-accessible, IHI 0069).
pub fn write8(addr: usize, value: u8) {
    // SAFETY: as `write32`.
    unsafe {
        asm!("strb {v:w}, [{a}]", a = in(reg) addr, v = in(reg) u32::from(value), options(nostack, preserves_flags))
    };
}

/// A byte read.
pub fn read8(addr: usize) -> u8 {
    let v: u32;
    // SAFETY: as `read32`.
    unsafe {
        asm!("ldrb {v:w}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack, preserves_flags))
    };
    v as u8
}

/// The RD_base frame of redistributor `n` (in region order).
pub fn rd_base(n: usize) -> usize {
    GICR_BASE + n * GICR_STRIDE
}

/// The SGI_base frame of redistributor `n`.
pub fn sgi_base(n: usize) -> usize {
    rd_base(n) + GICR_SGI_BASE
}

/// Waits until GICD_CTLR.RWP reads 0 (a write to GICD_CTLR or ICENABLER has taken
/// effect, IHI 0069 GICD_CTLR.RWP); false if it never does within `spins` reads.
pub fn gicd_wait_rwp(spins: u32) -> bool {
    (0..spins).any(|_| read32(GICD_BASE + GICD_CTLR) & GICD_CTLR_RWP == 0)
}

/// MPIDR_EL1 affinity as GICR_TYPER.Affinity_Value packs it: Aff3 [31:24],
/// Aff2 [23:16], Aff1 [15:8], Aff0 [7:0].
pub fn mpidr_to_typer_affinity(mpidr: u64) -> u32 {
    ((((mpidr >> 32) & 0xff) << 24) | (mpidr & 0xff_ffff)) as u32
}

/// MPIDR_EL1 affinity fields Aff3 [39:32], Aff2 [23:16], Aff1 [15:8], Aff0 [7:0]:
/// what GICD_IROUTER<n> holds (IRM = 0).
pub fn mpidr_affinity(mpidr: u64) -> u64 {
    mpidr & 0xff_00ff_ffff
}

/// ICC_SGI1R_EL1 (IHI 0069): Aff3 [55:48], RS [47:44], IRM [40], Aff2 [39:32],
/// INTID [27:24], Aff1 [23:16], TargetList [15:0]. The value that sends SGI
/// `intid` to the one PE with affinity `mpidr`.
pub fn sgi1r_to(intid: u32, mpidr: u64) -> u64 {
    let aff0 = mpidr & 0xff;
    (((mpidr >> 32) & 0xff) << 48)
        | ((aff0 / 16) << 44)
        | (((mpidr >> 16) & 0xff) << 32)
        | (u64::from(intid & 0xf) << 24)
        | (((mpidr >> 8) & 0xff) << 16)
        | (1 << (aff0 % 16))
}

/// ICC_SGI1R_EL1 with IRM = 1: SGI `intid` to every PE but the sender.
pub fn sgi1r_all_but_self(intid: u32) -> u64 {
    (1 << 40) | (u64::from(intid & 0xf) << 24)
}

/// ICC_CTLR_EL1: EOImode [1], PRIbits [10:8] (priority bits - 1).
pub const ICC_CTLR_EOIMODE: u64 = 1 << 1;
pub fn icc_ctlr_pri_bits(ctlr: u64) -> u32 {
    ((ctlr >> 8) & 0x7) as u32 + 1
}
/// ICC_SRE_EL1.SRE [0]: the system-register interface is in use.
pub const ICC_SRE_SRE: u64 = 1;

/// CNTV_CTL_EL0 (Arm ARM D23.9): ENABLE [0], IMASK [1], ISTATUS [2].
pub const CNTV_CTL_ENABLE: u64 = 1 << 0;
pub const CNTV_CTL_IMASK: u64 = 1 << 1;
pub const CNTV_CTL_ISTATUS: u64 = 1 << 2;

/// Reads a system register by name.
macro_rules! mrs {
    ($reg:literal) => {{
        let v: u64;
        // SAFETY: reading a CPU-interface, timer or identification register has no
        // effect on memory; IAR's acknowledge side effect is what the caller asks for.
        unsafe { core::arch::asm!(concat!("mrs {}, ", $reg), out(reg) v, options(nostack, preserves_flags)) };
        v
    }};
}

/// Writes a system register by name, then ISB so the write takes effect before
/// the next instruction (IHI 0069: CPU interface writes are self-synchronising only
/// after a context synchronization event).
macro_rules! msr {
    ($reg:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: the write changes interrupt-controller or timer state the test
        // means to change; no memory is touched.
        unsafe { core::arch::asm!(concat!("msr ", $reg, ", {}"), "isb", in(reg) v, options(nostack, preserves_flags)) };
    }};
}

pub fn icc_iar1() -> u32 {
    (mrs!("icc_iar1_el1") & 0xff_ffff) as u32
}
pub fn icc_hppir1() -> u32 {
    (mrs!("icc_hppir1_el1") & 0xff_ffff) as u32
}
pub fn icc_eoir1(intid: u32) {
    msr!("icc_eoir1_el1", u64::from(intid));
}
pub fn icc_dir(intid: u32) {
    msr!("icc_dir_el1", u64::from(intid));
}
pub fn icc_rpr() -> u64 {
    mrs!("icc_rpr_el1") & 0xff
}
pub fn icc_pmr() -> u64 {
    mrs!("icc_pmr_el1")
}
pub fn set_icc_pmr(v: u64) {
    msr!("icc_pmr_el1", v);
}
pub fn icc_ctlr() -> u64 {
    mrs!("icc_ctlr_el1")
}
pub fn set_icc_ctlr(v: u64) {
    msr!("icc_ctlr_el1", v);
}
pub fn icc_sre() -> u64 {
    mrs!("icc_sre_el1")
}
pub fn set_icc_sre(v: u64) {
    msr!("icc_sre_el1", v);
}
pub fn icc_igrpen1() -> u64 {
    mrs!("icc_igrpen1_el1")
}
pub fn set_icc_igrpen1(v: u64) {
    msr!("icc_igrpen1_el1", v);
}
pub fn set_icc_bpr1(v: u64) {
    msr!("icc_bpr1_el1", v);
}
/// Writes ICC_SGI1R_EL1 (a hypervisor traps it and generates the SGI itself).
pub fn icc_sgi1r(v: u64) {
    msr!("icc_sgi1r_el1", v);
}

pub fn mpidr() -> u64 {
    mrs!("mpidr_el1")
}
/// ISR_EL1.I [7]: an IRQ (virtual, under a hypervisor with HCR_EL2.IMO) is pending
/// at the PE, whatever PSTATE.I says (Arm ARM D23.2, ISR_EL1).
pub fn isr_irq_pending() -> bool {
    mrs!("isr_el1") & (1 << 7) != 0
}

pub fn cntfrq() -> u64 {
    mrs!("cntfrq_el0")
}
/// CNTVCT_EL0, after an ISB so it is not read early.
pub fn cntvct() -> u64 {
    // SAFETY: a barrier.
    unsafe { asm!("isb", options(nomem, nostack, preserves_flags)) };
    mrs!("cntvct_el0")
}
pub fn cntv_ctl() -> u64 {
    mrs!("cntv_ctl_el0")
}
pub fn set_cntv_ctl(v: u64) {
    msr!("cntv_ctl_el0", v);
}
pub fn set_cntv_cval(v: u64) {
    msr!("cntv_cval_el0", v);
}

/// PSTATE.I = 0: IRQs may be taken.
pub fn unmask_irqs() {
    // SAFETY: the IRQ vector is installed (the runtime's), with a handler.
    unsafe { asm!("msr daifclr, #2", "isb", options(nostack, preserves_flags)) };
}

/// PSTATE.I = 1.
pub fn mask_irqs() {
    // SAFETY: masking interrupts has no memory effect.
    unsafe { asm!("msr daifset, #2", "isb", options(nostack, preserves_flags)) };
}

/// WFI (wakes on a pending interrupt even with PSTATE.I = 1, Arm ARM D1.6.2).
pub fn wfi() {
    // SAFETY: WFI only waits.
    unsafe { asm!("dsb sy", "wfi", options(nostack, preserves_flags)) };
}

/// Counter ticks in `ms` milliseconds.
pub fn ms_to_ticks(ms: u64) -> u64 {
    cntfrq() * ms / 1000
}

/// Ticks to microseconds, for messages.
pub fn ticks_to_us(ticks: u64) -> u64 {
    ticks * 1_000_000 / cntfrq().max(1)
}

/// Polls `done` until it holds or `ms` milliseconds of the virtual counter pass;
/// returns whether it held.
pub fn wait_until(ms: u64, mut done: impl FnMut() -> bool) -> bool {
    let start = cntvct();
    let limit = ms_to_ticks(ms);
    loop {
        if done() {
            return true;
        }
        if cntvct().wrapping_sub(start) > limit {
            return done();
        }
        core::hint::spin_loop();
    }
}
