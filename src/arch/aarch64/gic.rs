//! The physical GICv3 at EL2: distributor and redistributor bring-up, the CPU
//! interface (ICC_*), and the virtual CPU interface control registers (ICH_*)
//! that load a vCPU's list registers.
//!
//! Thin on purpose: every register value and decision comes from
//! `crate::vgic::host` (tested on the host); this file only reads and writes.
//! Register names and offsets are IHI 0069 (GICv3/v4), cited by register name.

use core::arch::asm;

use aarch64_cpu::registers::{
    ICC_SRE_EL2, ICH_AP0R0_EL2, ICH_AP0R1_EL2, ICH_AP0R2_EL2, ICH_AP0R3_EL2, ICH_AP1R0_EL2,
    ICH_AP1R1_EL2, ICH_AP1R2_EL2, ICH_AP1R3_EL2, ICH_HCR_EL2, ICH_LR0_EL2, ICH_LR1_EL2,
    ICH_LR2_EL2, ICH_LR3_EL2, ICH_LR4_EL2, ICH_LR5_EL2, ICH_LR6_EL2, ICH_LR7_EL2, ICH_LR8_EL2,
    ICH_LR9_EL2, ICH_LR10_EL2, ICH_LR11_EL2, ICH_LR12_EL2, ICH_LR13_EL2, ICH_LR14_EL2,
    ICH_LR15_EL2, ICH_MISR_EL2, ICH_VMCR_EL2, ICH_VTR_EL2,
};
use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

use super::gicv2;
use super::regs::{dsb_sy, isb};
use crate::vgic::ListRegisters;
use crate::vgic::host::{self, Completion};

/// `read_x()` / `write_x(v)` for a GIC system register aarch64-cpu lacks, by its
/// encoding (LLVM accepts `S<op0>_<op1>_C<n>_C<m>_<op2>` without target features).
macro_rules! gic_sysreg {
    (read $read:ident, $enc:literal) => {
        #[inline(always)]
        fn $read() -> u64 {
            let v: u64;
            // SAFETY: a GIC system register read at EL2 with ICC_SRE_EL2.SRE = 1;
            // reads of ICC_IAR1_EL1 change GIC state, so no `nomem` (ordering with
            // memory accesses is kept).
            unsafe { asm!(concat!("mrs {}, ", $enc), out(reg) v, options(nostack, preserves_flags)) };
            v
        }
    };
    (write $write:ident, $enc:literal) => {
        #[inline(always)]
        fn $write(v: u64) {
            // SAFETY: a GIC system register write at EL2 with ICC_SRE_EL2.SRE = 1,
            // of a value `vgic::host` computed from the register's definition.
            unsafe { asm!(concat!("msr ", $enc, ", {}"), in(reg) v, options(nostack, preserves_flags)) };
        }
    };
}

gic_sysreg!(read read_icc_iar1_el1, "S3_0_C12_C12_0");
gic_sysreg!(write write_icc_eoir1_el1, "S3_0_C12_C12_1");
gic_sysreg!(write write_icc_dir_el1, "S3_0_C12_C11_1");
gic_sysreg!(write write_icc_sgi1r_el1, "S3_0_C12_C11_5");
gic_sysreg!(write write_icc_pmr_el1, "S3_0_C4_C6_0");
gic_sysreg!(write write_icc_bpr1_el1, "S3_0_C12_C12_3");
gic_sysreg!(read read_icc_ctlr_el1, "S3_0_C12_C12_4");
gic_sysreg!(write write_icc_ctlr_el1, "S3_0_C12_C12_4");
gic_sysreg!(write write_icc_sre_el1, "S3_0_C12_C12_5");
gic_sysreg!(write write_icc_igrpen1_el1, "S3_0_C12_C12_7");
gic_sysreg!(read read_ich_eisr_el2, "S3_4_C12_C11_3");
gic_sysreg!(read read_ich_elrsr_el2, "S3_4_C12_C11_5");

register_structs! {
    /// The distributor (IHI 0069), the parts the hypervisor uses.
    pub GicdRegs {
        (0x0000 => ctlr: ReadWrite<u32>),
        (0x0004 => typer: ReadOnly<u32>),
        (0x0008 => _reserved0),
        (0x0080 => igroupr: [ReadWrite<u32>; 32]),
        (0x0100 => isenabler: [ReadWrite<u32>; 32]),
        (0x0180 => icenabler: [ReadWrite<u32>; 32]),
        (0x0200 => ispendr: [ReadWrite<u32>; 32]),
        (0x0280 => icpendr: [ReadWrite<u32>; 32]),
        (0x0300 => isactiver: [ReadWrite<u32>; 32]),
        (0x0380 => icactiver: [ReadWrite<u32>; 32]),
        (0x0400 => ipriorityr: [ReadWrite<u8>; 1024]),
        (0x0800 => _reserved1),
        (0x0C00 => icfgr: [ReadWrite<u32>; 64]),
        (0x0D00 => _reserved2),
        (0x6000 => irouter: [ReadWrite<u64>; 1020]),
        (0x7FE0 => _reserved3),
        (0x10000 => @END),
    }
}

register_structs! {
    /// A redistributor's RD_base frame (IHI 0069).
    pub GicrRdRegs {
        (0x0000 => ctlr: ReadWrite<u32>),
        (0x0004 => iidr: ReadOnly<u32>),
        (0x0008 => typer: ReadOnly<u64>),
        (0x0010 => statusr: ReadWrite<u32>),
        (0x0014 => waker: ReadWrite<u32>),
        (0x0018 => _reserved0),
        (0x10000 => @END),
    }
}

register_structs! {
    /// A redistributor's SGI_base frame (IHI 0069).
    pub GicrSgiRegs {
        (0x0000 => _reserved0),
        (0x0080 => igroupr0: ReadWrite<u32>),
        (0x0084 => _reserved1),
        (0x0100 => isenabler0: ReadWrite<u32>),
        (0x0104 => _reserved2),
        (0x0180 => icenabler0: ReadWrite<u32>),
        (0x0184 => _reserved3),
        (0x0200 => ispendr0: ReadWrite<u32>),
        (0x0204 => _reserved4),
        (0x0280 => icpendr0: ReadWrite<u32>),
        (0x0284 => _reserved5),
        (0x0300 => isactiver0: ReadWrite<u32>),
        (0x0304 => _reserved6),
        (0x0380 => icactiver0: ReadWrite<u32>),
        (0x0384 => _reserved7),
        (0x0400 => ipriorityr: [ReadWrite<u8>; 32]),
        (0x0420 => _reserved8),
        (0x0C00 => icfgr: [ReadWrite<u32>; 2]),
        (0x0C08 => _reserved9),
        (0x10000 => @END),
    }
}

/// The priority the hypervisor gives every interrupt it enables (all equal: EL2
/// never runs with interrupts unmasked, so preemption does not arise).
const HOST_PRIORITY: u8 = 0xA0;

/// GICR_WAKER.ProcessorSleep / ChildrenAsleep (IHI 0069).
const WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;

/// The physical distributor.
pub struct Distributor {
    base: usize,
}

impl Distributor {
    /// # Safety
    /// `base` is the GICD frame, identity-mapped as Device memory, and the
    /// hypervisor owns it (no other software programs the Non-secure distributor).
    pub const unsafe fn new(base: usize) -> Self {
        Distributor { base }
    }

    fn regs(&self) -> &GicdRegs {
        // SAFETY: `new`'s contract: `base` is a mapped GICD register frame.
        unsafe { &*(self.base as *const GicdRegs) }
    }

    fn wait_rwp(&self) {
        while host::rwp(self.regs().ctlr.get()) {}
    }

    /// INTIDs implemented (SGIs and PPIs included).
    pub fn lines(&self) -> u32 {
        host::gicd_interrupt_lines(self.regs().typer.get())
    }

    /// Brings the distributor up: every SPI Group 1, disabled, inactive, not
    /// pending, level, routed to `boot_mpidr`; then affinity routing and Group 1
    /// on (IHI 0069, "Distributor initialization").
    pub fn init(&self, boot_mpidr: u64) {
        let r = self.regs();
        r.ctlr.set(0);
        self.wait_rwp();
        let lines = self.lines();
        for w in 1..(lines / 32) as usize {
            r.igroupr[w].set(u32::MAX);
            r.icenabler[w].set(u32::MAX);
            r.icpendr[w].set(u32::MAX);
            r.icactiver[w].set(u32::MAX);
        }
        for i in 32..lines as usize {
            r.ipriorityr[i].set(HOST_PRIORITY);
            r.irouter[i].set(host::irouter_for(boot_mpidr));
        }
        for w in 2..(lines / 16) as usize {
            r.icfgr[w].set(0);
        }
        self.wait_rwp();
        r.ctlr.set(host::gicd_ctlr_enable());
        self.wait_rwp();
    }

    pub fn enable_spi(&self, intid: u32) {
        self.regs().isenabler[(intid / 32) as usize].set(1 << (intid % 32));
    }

    pub fn disable_spi(&self, intid: u32) {
        self.regs().icenabler[(intid / 32) as usize].set(1 << (intid % 32));
        self.wait_rwp();
    }

    /// Routes SPI `intid` to the PE with `mpidr`.
    pub fn route_spi(&self, intid: u32, mpidr: u64) {
        self.regs().irouter[intid as usize].set(host::irouter_for(mpidr));
    }

    /// Clears an SPI's active state (a hardware-linked interrupt given back).
    pub fn deactivate_spi(&self, intid: u32) {
        self.regs().icactiver[(intid / 32) as usize].set(1 << (intid % 32));
    }
}

/// One PE's physical redistributor.
pub struct Redistributor {
    rd_base: usize,
}

impl Redistributor {
    /// Finds the redistributor of the PE with `mpidr` in the GICR regions
    /// `(base, size)` by GICR_TYPER.Affinity_Value (IHI 0069).
    ///
    /// # Safety
    /// The regions are the device tree's GICR regions, identity-mapped as Device
    /// memory.
    pub unsafe fn find(regions: &[(usize, usize)], mpidr: u64) -> Option<Redistributor> {
        for &(base, size) in regions {
            let mut at = base;
            while at + 0x2_0000 <= base + size {
                // SAFETY: `at` is inside a mapped GICR region, at a frame boundary
                // the previous GICR_TYPER's stride led to.
                let typer = unsafe { (*(at as *const GicrRdRegs)).typer.get() };
                if host::redistributor_is(typer, mpidr) {
                    return Some(Redistributor { rd_base: at });
                }
                if host::redistributor_is_last(typer) {
                    break;
                }
                at += host::redistributor_stride(typer) as usize;
            }
        }
        None
    }

    fn rd(&self) -> &GicrRdRegs {
        // SAFETY: `find` returned a mapped RD_base frame.
        unsafe { &*(self.rd_base as *const GicrRdRegs) }
    }

    fn sgi(&self) -> &GicrSgiRegs {
        // SAFETY: the SGI_base frame follows RD_base (IHI 0069).
        unsafe { &*((self.rd_base + 0x1_0000) as *const GicrSgiRegs) }
    }

    /// Wakes the redistributor (GICR_WAKER.ProcessorSleep = 0, then wait for
    /// ChildrenAsleep = 0) and puts its SGIs and PPIs in a known state: Group 1,
    /// disabled, inactive, not pending, one priority.
    pub fn init(&self) {
        let w = self.rd();
        w.waker.set(w.waker.get() & !WAKER_PROCESSOR_SLEEP);
        while w.waker.get() & WAKER_CHILDREN_ASLEEP != 0 {}
        let s = self.sgi();
        s.igroupr0.set(u32::MAX);
        s.icenabler0.set(u32::MAX);
        s.icpendr0.set(u32::MAX);
        s.icactiver0.set(u32::MAX);
        for p in s.ipriorityr.iter() {
            p.set(HOST_PRIORITY);
        }
        while host::gicr_rwp(w.ctlr.get()) {}
    }

    /// Enables SGI or PPI `intid` on this PE.
    pub fn enable_private(&self, intid: u32) {
        self.sgi().isenabler0.set(1 << intid);
    }

    pub fn disable_private(&self, intid: u32) {
        self.sgi().icenabler0.set(1 << intid);
        while host::gicr_rwp(self.rd().ctlr.get()) {}
    }

    /// Clears a PPI's active state from any CPU (a hardware-linked interrupt given
    /// back, e.g. the virtual timer's PPI 27 at VM reset).
    pub fn deactivate_private(&self, intid: u32) {
        self.sgi().icactiver0.set(1 << intid);
    }

    /// The active state of this PE's SGIs and PPIs (GICR_ISACTIVER0).
    pub fn active_private(&self) -> u32 {
        self.sgi().isactiver0.get()
    }

    /// Sets a PPI active (GICR_ISACTIVER0): a vCPU's hardware-linked timer
    /// interrupt that was active when it left, as it comes back.
    pub fn activate_private(&self, intid: u32) {
        self.sgi().isactiver0.set(1 << intid);
    }
}

/// This CPU's interface: system registers at EL2, EL1 allowed its own
/// ICC_SRE_EL1, EOImode = 1 (priority drop and deactivation split), every
/// priority unmasked, Group 1 on.
pub fn init_cpu_interface() {
    ICC_SRE_EL2.set(host::icc_sre_el2());
    isb();
    write_icc_pmr_el1(0xff);
    write_icc_bpr1_el1(0);
    write_icc_ctlr_el1(host::icc_ctlr_el1(read_icc_ctlr_el1()));
    write_icc_igrpen1_el1(1);
    isb();
}

/// Acknowledges the highest-priority pending Group 1 interrupt: its INTID, 1023
/// when there is none.
pub fn acknowledge() -> u32 {
    if gicv2::active() {
        return gicv2::acknowledge();
    }
    let v = read_icc_iar1_el1() as u32 & 0xff_ffff;
    // The acknowledge must complete before the handler's effects (IHI 0069
    // ICC_IAR1_EL1: a context synchronization event orders it).
    dsb_sy();
    v
}

/// Priority drop (ICC_EOIR1_EL1; with EOImode = 1 it does not deactivate).
pub fn priority_drop(intid: u32) {
    write_icc_eoir1_el1(intid as u64);
    isb();
}

/// Deactivation (ICC_DIR_EL1) of an interrupt this CPU acknowledged.
pub fn deactivate(intid: u32) {
    write_icc_dir_el1(intid as u64);
    isb();
}

/// Completes an acknowledged interrupt as `vgic::host::classify` decided.
pub fn complete(intid: u32, how: Completion) {
    if gicv2::active() {
        return gicv2::complete(intid, how);
    }
    match how {
        Completion::None => {}
        Completion::PriorityDropOnly => priority_drop(intid),
        Completion::DropAndDeactivate => {
            priority_drop(intid);
            deactivate(intid);
        }
    }
}

/// Sends a physical SGI (`host::sgi1r_for` computes the value). Memory writes
/// before it are made visible first, so the target sees them when it takes it.
pub fn send_sgi(sgi1r: u64) {
    // SAFETY: a barrier has no effect other than ordering.
    unsafe { asm!("dsb ishst", options(nostack, preserves_flags)) };
    write_icc_sgi1r_el1(sgi1r);
    isb();
}

// ---- the virtual CPU interface ----

pub fn read_ich_vtr() -> u64 {
    if gicv2::active() {
        return gicv2::read_vtr();
    }
    ICH_VTR_EL2.get()
}

pub fn nr_list_registers() -> usize {
    host::nr_list_registers(read_ich_vtr())
}

pub fn virtual_priority_bits() -> u8 {
    host::virtual_priority_bits(read_ich_vtr())
}

pub fn read_ich_misr() -> u64 {
    if gicv2::active() {
        return gicv2::read_misr();
    }
    ICH_MISR_EL2.get()
}

pub fn read_ich_eisr() -> u64 {
    if gicv2::active() {
        return gicv2::read_eisr();
    }
    read_ich_eisr_el2()
}

pub fn read_ich_elrsr() -> u64 {
    if gicv2::active() {
        return gicv2::read_elrsr();
    }
    read_ich_elrsr_el2()
}

pub fn read_ich_vmcr() -> u64 {
    if gicv2::active() {
        return gicv2::read_vmcr();
    }
    ICH_VMCR_EL2.get()
}

pub fn write_ich_vmcr(v: u64) {
    if gicv2::active() {
        return gicv2::write_vmcr(v);
    }
    ICH_VMCR_EL2.set(v);
}

pub fn write_ich_hcr(v: u64) {
    if gicv2::active() {
        return gicv2::write_hcr(v);
    }
    ICH_HCR_EL2.set(v);
    isb();
}

pub fn read_ich_hcr() -> u64 {
    if gicv2::active() {
        return gicv2::read_hcr();
    }
    ICH_HCR_EL2.get()
}

macro_rules! by_index {
    ($n:expr, $($i:literal => $reg:ident),* ; |$r:ident| $body:expr) => {
        match $n {
            $($i => { let $r = &$reg; $body })*
            n => panic!("no register {n} of this kind"),
        }
    };
}

pub fn read_lr(n: usize) -> u64 {
    if gicv2::active() {
        return gicv2::read_lr(n);
    }
    by_index!(n, 0 => ICH_LR0_EL2, 1 => ICH_LR1_EL2, 2 => ICH_LR2_EL2, 3 => ICH_LR3_EL2,
        4 => ICH_LR4_EL2, 5 => ICH_LR5_EL2, 6 => ICH_LR6_EL2, 7 => ICH_LR7_EL2,
        8 => ICH_LR8_EL2, 9 => ICH_LR9_EL2, 10 => ICH_LR10_EL2, 11 => ICH_LR11_EL2,
        12 => ICH_LR12_EL2, 13 => ICH_LR13_EL2, 14 => ICH_LR14_EL2, 15 => ICH_LR15_EL2;
        |r| r.get())
}

pub fn write_lr(n: usize, v: u64) {
    if gicv2::active() {
        return gicv2::write_lr(n, v);
    }
    by_index!(n, 0 => ICH_LR0_EL2, 1 => ICH_LR1_EL2, 2 => ICH_LR2_EL2, 3 => ICH_LR3_EL2,
        4 => ICH_LR4_EL2, 5 => ICH_LR5_EL2, 6 => ICH_LR6_EL2, 7 => ICH_LR7_EL2,
        8 => ICH_LR8_EL2, 9 => ICH_LR9_EL2, 10 => ICH_LR10_EL2, 11 => ICH_LR11_EL2,
        12 => ICH_LR12_EL2, 13 => ICH_LR13_EL2, 14 => ICH_LR14_EL2, 15 => ICH_LR15_EL2;
        |r| r.set(v))
}

pub fn write_ap0r(n: usize, v: u64) {
    if gicv2::active() {
        return gicv2::write_apr(n, v);
    }
    by_index!(n, 0 => ICH_AP0R0_EL2, 1 => ICH_AP0R1_EL2, 2 => ICH_AP0R2_EL2, 3 => ICH_AP0R3_EL2;
        |r| r.set(v))
}

pub fn write_ap1r(n: usize, v: u64) {
    if gicv2::active() {
        return;
    }
    by_index!(n, 0 => ICH_AP1R0_EL2, 1 => ICH_AP1R1_EL2, 2 => ICH_AP1R2_EL2, 3 => ICH_AP1R3_EL2;
        |r| r.set(v))
}

pub fn read_ap0r(n: usize) -> u64 {
    if gicv2::active() {
        return gicv2::read_apr(n);
    }
    by_index!(n, 0 => ICH_AP0R0_EL2, 1 => ICH_AP0R1_EL2, 2 => ICH_AP0R2_EL2, 3 => ICH_AP0R3_EL2;
        |r| r.get())
}

pub fn read_ap1r(n: usize) -> u64 {
    if gicv2::active() {
        return 0;
    }
    by_index!(n, 0 => ICH_AP1R0_EL2, 1 => ICH_AP1R1_EL2, 2 => ICH_AP1R2_EL2, 3 => ICH_AP1R3_EL2;
        |r| r.get())
}

/// Puts this CPU's virtual CPU interface into the state a vCPU starts in: no
/// interrupts in the LRs, no active priorities, ICH_VMCR_EL2 at its reset value
/// (`host::ich_vmcr_reset`), the guest on the system-register interface
/// (ICC_SRE_EL1.SRE = 1), and the interface enabled.
pub fn reset_virtual_cpu_interface() {
    if gicv2::active() {
        return gicv2::reset_virtual_cpu_interface();
    }
    let vtr = read_ich_vtr();
    write_ich_hcr(0);
    for n in 0..host::nr_list_registers(vtr) {
        write_lr(n, 0);
    }
    for n in 0..host::nr_active_priority_registers(vtr) {
        write_ap0r(n, 0);
        write_ap1r(n, 0);
    }
    write_ich_vmcr(host::ich_vmcr_reset(vtr));
    write_icc_sre_el1(host::icc_sre_el1());
    write_ich_hcr(crate::vgic::lr::hcr_at_exit());
}

/// This CPU's list registers, for `Vgic::save` / `Vgic::restore`.
pub struct IchRegs;

impl ListRegisters for IchRegs {
    fn read_lr(&self, n: usize) -> u64 {
        read_lr(n)
    }
    fn write_lr(&mut self, n: usize, value: u64) {
        write_lr(n, value)
    }
    fn write_hcr(&mut self, value: u64) {
        write_ich_hcr(value)
    }
}
