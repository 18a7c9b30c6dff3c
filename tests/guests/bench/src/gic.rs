//! The GICv3 as this guest drives it (IHI 0069): just enough bring-up for the
//! interrupt rows: Group 1 on at the distributor, the running CPU's redistributor
//! awake with the SGIs and the virtual timer's PPI enabled, and the CPU interface
//! system registers. The addresses are QEMU `virt`'s, which is also the layout
//! Ferrovisor's virtual GIC gives a VM.
//!
//! Every MMIO access is one plain `ldr`/`str` without writeback, so a hypervisor
//! can emulate it from the data-abort syndrome (ESR_EL2.ISV = 1).

use core::arch::asm;

/// QEMU `virt`: the distributor (GICD), one 64 KiB frame.
pub const GICD_BASE: u64 = 0x0800_0000;
/// QEMU `virt`: the first redistributor; each is an RD_base frame followed by an
/// SGI_base frame (IHI 0069, "The GIC Redistributor register map").
const GICR_BASE: u64 = 0x080A_0000;
const GICR_STRIDE: u64 = 0x2_0000;
const GICR_SGI_BASE: u64 = 0x1_0000;
/// Redistributor frames searched for the running CPU's (GICR_TYPER.Last ends it).
const MAX_FRAMES: u64 = 8;

/// GICD_CTLR (one Security state, or as Non-secure software sees it): RWP [31],
/// ARE [4], EnableGrp1 [1].
const GICD_CTLR: u64 = 0x0000;
const GICD_CTLR_RWP: u32 = 1 << 31;
const GICD_CTLR_ARE: u32 = 1 << 4;
const GICD_CTLR_ENABLE_GRP1: u32 = 1 << 1;
/// GICD_IIDR: implementer and revision, read-only, no side effect: the register
/// KVM's `mmio_read_vgic` micro-benchmark reads.
pub const GICD_IIDR: u64 = 0x0008;

/// GICR RD_base: GICR_TYPER (Affinity_Value [63:32], Last [4]) and GICR_WAKER
/// (ProcessorSleep [1], ChildrenAsleep [2]).
const GICR_TYPER: u64 = 0x0008;
const GICR_TYPER_LAST: u64 = 1 << 4;
const GICR_WAKER: u64 = 0x0014;
const GICR_WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const GICR_WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
/// GICR SGI_base: the SGI/PPI halves of the GICD register families.
const GICR_IGROUPR0: u64 = 0x0080;
const GICR_ISENABLER0: u64 = 0x0100;
const GICR_IPRIORITYR: u64 = 0x0400;

/// The SGI vCPU 0 sends vCPU 1 in the `ipi` row.
pub const IPI_SGI: u32 = 1;
/// The SGI vCPU 0 sends itself in the `eoi` row.
pub const EOI_SGI: u32 = 2;
/// The EL1 virtual timer's PPI (Arm BSA; QEMU `virt`).
pub const VTIMER_PPI: u32 = 27;
/// INTIDs 1020..1023 are special; 1023 is "nothing pending" (IHI 0069).
pub const INTID_SPURIOUS: u32 = 1023;
/// Priority of every interrupt this guest enables: mid-range, so it is above
/// ICC_PMR_EL1 = 0xff with any number of implemented priority bits.
const PRIORITY: u8 = 0x80;

/// ICC_SRE_EL1.SRE [0]: use the system-register interface.
const ICC_SRE_SRE: u64 = 1;

fn read32(addr: u64) -> u32 {
    let v: u32;
    // SAFETY: `addr` is a GIC register in the identity map's Device range; a load
    // has no effect beyond the register's own read side effects (none here).
    unsafe {
        asm!("ldr {v:w}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack, preserves_flags))
    };
    v
}

fn read64(addr: u64) -> u64 {
    let v: u64;
    // SAFETY: as `read32`.
    unsafe {
        asm!("ldr {v}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack, preserves_flags))
    };
    v
}

fn write32(addr: u64, v: u32) {
    // SAFETY: `addr` is a GIC register in the Device range; the write configures
    // the interrupts this guest uses.
    unsafe {
        asm!("str {v:w}, [{a}]", a = in(reg) addr, v = in(reg) v, options(nostack, preserves_flags))
    };
}

fn write8(addr: u64, v: u8) {
    // SAFETY: as `write32` (IPRIORITYR is byte-accessible, IHI 0069).
    unsafe {
        asm!("strb {v:w}, [{a}]", a = in(reg) addr, v = in(reg) u32::from(v), options(nostack, preserves_flags))
    };
}

/// MPIDR_EL1 of the running CPU.
pub fn mpidr() -> u64 {
    let v: u64;
    // SAFETY: an identification register read (VMPIDR_EL2 under a hypervisor).
    unsafe { asm!("mrs {}, mpidr_el1", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// ICC_SGI1R_EL1 (IHI 0069): Aff3 [55:48], RS [47:44], Aff2 [39:32], INTID
/// [27:24], Aff1 [23:16], TargetList [15:0]: SGI `intid` to the one PE `mpidr`.
pub fn sgi1r_to(intid: u32, mpidr: u64) -> u64 {
    let aff0 = mpidr & 0xff;
    (((mpidr >> 32) & 0xff) << 48)
        | ((aff0 / 16) << 44)
        | (((mpidr >> 16) & 0xff) << 32)
        | (u64::from(intid & 0xf) << 24)
        | (((mpidr >> 8) & 0xff) << 16)
        | (1 << (aff0 % 16))
}

/// Writes ICC_SGI1R_EL1 (Ferrovisor traps it and raises the SGI itself).
pub fn send_sgi(sgi1r: u64) {
    // SAFETY: generates an SGI the guest has a handler for; no memory effects.
    unsafe {
        asm!("msr icc_sgi1r_el1, {}", "isb", in(reg) sgi1r, options(nomem, nostack, preserves_flags))
    };
}

/// ICC_IAR1_EL1: acknowledges the highest-priority pending Group 1 interrupt.
pub fn acknowledge() -> u32 {
    let v: u64;
    // SAFETY: the acknowledge side effect is what the caller asks for.
    unsafe { asm!("mrs {}, icc_iar1_el1", out(reg) v, options(nomem, nostack, preserves_flags)) };
    (v & 0xff_ffff) as u32
}

/// Group 1 forwarding on at the distributor (once, from vCPU 0).
pub fn init_distributor() -> Result<(), &'static str> {
    let ctlr = read32(GICD_BASE + GICD_CTLR);
    write32(
        GICD_BASE + GICD_CTLR,
        (ctlr & !GICD_CTLR_RWP) | GICD_CTLR_ARE | GICD_CTLR_ENABLE_GRP1,
    );
    // IHI 0069, GICD_CTLR.RWP: the write has taken effect when RWP reads 0.
    if !(0..100_000).any(|_| read32(GICD_BASE + GICD_CTLR) & GICD_CTLR_RWP == 0) {
        return Err("GICD_CTLR.RWP never cleared");
    }
    if read32(GICD_BASE + GICD_CTLR) & GICD_CTLR_ENABLE_GRP1 == 0 {
        return Err("GICD_CTLR.EnableGrp1 does not stick");
    }
    Ok(())
}

/// The running CPU's side: its redistributor awake with the bench SGIs and the
/// virtual timer PPI enabled (Group 1, [`PRIORITY`]), and its CPU interface on
/// (IHI 0069, "Redistributor power management" and the CPU interface
/// initialisation sequence).
pub fn init_this_cpu() -> Result<(), &'static str> {
    // SAFETY: ICC_SRE_EL1 selects the system-register interface; no memory effects.
    unsafe {
        asm!("mrs {t}, icc_sre_el1", "orr {t}, {t}, {sre}", "msr icc_sre_el1, {t}", "isb",
            t = out(reg) _, sre = const ICC_SRE_SRE, options(nomem, nostack))
    };
    let mpidr = mpidr();
    // GICR_TYPER.Affinity_Value packs Aff3.Aff2.Aff1.Aff0.
    let own = (((mpidr >> 32) & 0xff) << 24) | (mpidr & 0xff_ffff);
    let mut rd = None;
    for n in 0..MAX_FRAMES {
        let base = GICR_BASE + n * GICR_STRIDE;
        let typer = read64(base + GICR_TYPER);
        if typer >> 32 == own {
            rd = Some(base);
            break;
        }
        if typer & GICR_TYPER_LAST != 0 {
            break;
        }
    }
    let rd = rd.ok_or("no redistributor with this CPU's affinity")?;
    let waker = read32(rd + GICR_WAKER);
    write32(rd + GICR_WAKER, waker & !GICR_WAKER_PROCESSOR_SLEEP);
    if !(0..100_000).any(|_| read32(rd + GICR_WAKER) & GICR_WAKER_CHILDREN_ASLEEP == 0) {
        return Err("GICR_WAKER.ChildrenAsleep never cleared");
    }
    let sgi = rd + GICR_SGI_BASE;
    let enabled = (1 << IPI_SGI) | (1 << EOI_SGI) | (1 << VTIMER_PPI);
    write32(sgi + GICR_IGROUPR0, enabled);
    for intid in [IPI_SGI, EOI_SGI, VTIMER_PPI] {
        write8(sgi + GICR_IPRIORITYR + u64::from(intid), PRIORITY);
    }
    write32(sgi + GICR_ISENABLER0, enabled);
    // ICC_PMR_EL1 = 0xff: every priority passes; ICC_BPR1_EL1 = 0: the smallest
    // binary point; ICC_CTLR_EL1.EOImode stays 0 (an EOIR write also deactivates);
    // ICC_IGRPEN1_EL1 = 1: Group 1 on.
    // SAFETY: CPU interface configuration; no memory effects.
    unsafe {
        asm!("msr icc_pmr_el1, {pmr}", "msr icc_bpr1_el1, xzr", "msr icc_igrpen1_el1, {one}", "isb",
            pmr = in(reg) 0xffu64, one = in(reg) 1u64, options(nomem, nostack))
    };
    Ok(())
}
