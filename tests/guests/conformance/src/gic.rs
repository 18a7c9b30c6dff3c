//! Just enough GICv3 (Arm IHI 0069) for one SPI routed to this vCPU, taken with IRQs
//! masked in PSTATE (no vector needed): the conformance guest's passthrough interrupt
//! check, and the echo guest's console input (`#[path]`-included there). The vGIC's own
//! conformance is the vgic guest's business.
//!
//! On a GICv2 (a VM on a GICv2 host, or bare QEMU `gic-version=2`), found by
//! ID_AA64PFR0_EL1.GIC = 0 (no system-register CPU interface), the same through
//! the GICv2 registers (IHI 0048B.b): GICD_ITARGETSR instead of GICD_IROUTER, the
//! memory-mapped CPU interface at QEMU virt's GICC address, no redistributor.

use core::arch::asm;

/// QEMU virt's GIC distributor and first redistributor (the hypervisor's vGIC sits at
/// the same addresses).
const GICD: usize = 0x0800_0000;
const GICR: usize = 0x080a_0000;
/// RD_base and SGI_base frames, 64 KiB each, per redistributor.
const GICR_STRIDE: usize = 0x2_0000;
const GICR_TYPER: usize = 0x0008;
const GICR_WAKER: usize = 0x0014;
const GICR_WAKER_PROCESSOR_SLEEP: u32 = 1 << 1;
const GICR_WAKER_CHILDREN_ASLEEP: u32 = 1 << 2;
const GICD_CTLR: usize = 0x0000;
const GICD_CTLR_RWP: u32 = 1 << 31;
const GICD_CTLR_ARE: u32 = 1 << 4;
const GICD_CTLR_ENABLE_GRP1: u32 = 1 << 1;
const GICD_IGROUPR: usize = 0x0080;
const GICD_ISENABLER: usize = 0x0100;
const GICD_IPRIORITYR: usize = 0x0400;
const GICD_IROUTER: usize = 0x6000;
const INTID_SPURIOUS: u32 = 1023;
/// GICv2 (IHI 0048B.b tables 4-1 and 4-2).
const GICD_ITARGETSR: usize = 0x0800;
const GICC: usize = 0x0801_0000;
const GICC_CTLR: usize = 0x0000;
const GICC_PMR: usize = 0x0004;
const GICC_IAR: usize = 0x000C;
const GICC_EOIR: usize = 0x0010;

/// Whether the GIC is a GICv2: ID_AA64PFR0_EL1.GIC [27:24] = 0, no
/// system-register CPU interface (Arm ARM ID_AA64PFR0_EL1).
fn v2() -> bool {
    let pfr0: u64;
    // SAFETY: reading an ID register has no side effects.
    unsafe { asm!("mrs {}, id_aa64pfr0_el1", out(reg) pfr0, options(nomem, nostack)) };
    (pfr0 >> 24) & 0xf == 0
}

/// Acknowledges the highest-priority pending interrupt: its INTID.
fn acknowledge() -> u32 {
    if v2() {
        return read32(GICC + GICC_IAR) & 0x3ff;
    }
    let iar: u64;
    // SAFETY: acknowledging the pending interrupt is the intent.
    unsafe { asm!("mrs {}, icc_iar1_el1", out(reg) iar, options(nomem, nostack)) };
    (iar & 0xff_ffff) as u32
}

fn read32(addr: usize) -> u32 {
    // SAFETY: a GIC register in the runtime's Device mapping; reading it has no
    // effect beyond the register's own.
    unsafe { (addr as *const u32).read_volatile() }
}

fn write32(addr: usize, value: u32) {
    // SAFETY: a GIC register in the Device mapping; the write configures the
    // interrupt this check uses.
    unsafe { (addr as *mut u32).write_volatile(value) }
}

fn write64(addr: usize, value: u64) {
    // SAFETY: as `write32` (GICD_IROUTER<n> is a 64-bit register).
    unsafe { (addr as *mut u64).write_volatile(value) }
}

fn mpidr() -> u64 {
    let v: u64;
    // SAFETY: reading MPIDR_EL1 has no side effects.
    unsafe { asm!("mrs {}, mpidr_el1", out(reg) v, options(nomem, nostack)) };
    v
}

/// Distributor on with affinity routing, this vCPU's redistributor awake, the CPU
/// interface on with every priority unmasked, and `intid` (an SPI) Group 1, enabled
/// and routed to this vCPU. IRQs stay masked in PSTATE: the check polls.
pub fn init_for_spi(intid: u32) {
    init_cpu_interface();
    let (word, bit) = (intid as usize / 32, 1u32 << (intid % 32));
    if v2() {
        // SAFETY: byte writes to GICD_IPRIORITYR<n> and GICD_ITARGETSR<n>, both
        // byte-accessible; GICD_ITARGETSR0's own byte names this CPU interface.
        unsafe {
            ((GICD + GICD_IPRIORITYR + intid as usize) as *mut u8).write_volatile(0xa0);
            let own = ((GICD + GICD_ITARGETSR) as *const u8).read_volatile();
            ((GICD + GICD_ITARGETSR + intid as usize) as *mut u8).write_volatile(own);
        }
        write32(GICD + GICD_ISENABLER + 4 * word, bit);
        return;
    }
    write32(
        GICD + GICD_IGROUPR + 4 * word,
        read32(GICD + GICD_IGROUPR + 4 * word) | bit,
    );
    // SAFETY: a byte write to GICD_IPRIORITYR<n>, which is byte-accessible.
    unsafe { ((GICD + GICD_IPRIORITYR + intid as usize) as *mut u8).write_volatile(0xa0) };
    // GICD_IROUTER<n>: Aff3 in [39:32], Aff2..Aff0 in [23:0], IRM = 0.
    write64(
        GICD + GICD_IROUTER + 8 * intid as usize,
        mpidr() & 0xff_00ff_ffff,
    );
    write32(GICD + GICD_ISENABLER + 4 * word, bit);
}

/// As [`init_for_spi`] for `intid` a PPI (16..32) of this vCPU: its Group 1,
/// priority and enable bits are in the redistributor's SGI_base frame
/// (GICR_IGROUPR0, GICR_IPRIORITYR<n>, GICR_ISENABLER0 at the GICD offsets).
#[allow(dead_code)]
pub fn init_for_ppi(intid: u32) {
    let sgi_base = init_cpu_interface() + 0x1_0000;
    let bit = 1u32 << intid;
    if v2() {
        // SAFETY: a byte write to the banked GICD_IPRIORITYR<n>.
        unsafe { ((GICD + GICD_IPRIORITYR + intid as usize) as *mut u8).write_volatile(0xa0) };
        write32(GICD + GICD_ISENABLER, bit);
        return;
    }
    write32(
        sgi_base + GICD_IGROUPR,
        read32(sgi_base + GICD_IGROUPR) | bit,
    );
    // SAFETY: a byte write to GICR_IPRIORITYR<n>, which is byte-accessible.
    unsafe { ((sgi_base + GICD_IPRIORITYR + intid as usize) as *mut u8).write_volatile(0xa0) };
    write32(sgi_base + GICD_ISENABLER, bit);
}

/// Whether an IRQ becomes pending at this vCPU within `ticks` of the virtual
/// counter; acknowledges it if so (its INTID, or `None`).
#[allow(dead_code)]
pub fn irq_within(ticks: u64) -> Option<u32> {
    let start = counter().0;
    loop {
        let isr: u64;
        // SAFETY: reading ISR_EL1 has no side effects.
        unsafe { asm!("mrs {}, isr_el1", out(reg) isr, options(nomem, nostack)) };
        if isr & (1 << 7) != 0 {
            return Some(acknowledge());
        }
        if counter().0.wrapping_sub(start) > ticks {
            return None;
        }
        core::hint::spin_loop();
    }
}

/// The distributor, this vCPU's redistributor and CPU interface on; the
/// redistributor's RD_base.
fn init_cpu_interface() -> usize {
    if v2() {
        // Forwarding on (GICD_CTLR.Enable), every priority unmasked, the CPU
        // interface's Group 0 on (no Security Extensions in the guest's view;
        // on bare QEMU the interrupts reset to Group 0 too).
        write32(GICD + GICD_CTLR, 1);
        write32(GICC + GICC_PMR, 0xff);
        write32(GICC + GICC_CTLR, 1);
        // No redistributor (the private interrupts' registers are the
        // distributor's, banked).
        return 0;
    }
    // SAFETY: ICC_SRE_EL1.SRE = 1 selects the system-register CPU interface; the
    // other CPU-interface writes set what the comments say; no memory is touched.
    unsafe {
        asm!(
            "mrs {t}, icc_sre_el1",
            "orr {t}, {t}, #1",
            "msr icc_sre_el1, {t}",
            "isb",
            t = out(reg) _,
            options(nomem, nostack),
        )
    };
    write32(GICD + GICD_CTLR, GICD_CTLR_ARE | GICD_CTLR_ENABLE_GRP1);
    for _ in 0..100_000 {
        if read32(GICD + GICD_CTLR) & GICD_CTLR_RWP == 0 {
            break;
        }
    }
    // This vCPU's redistributor: GICR_TYPER.Affinity_Value [63:32] holds Aff3..Aff0.
    let mpidr = mpidr();
    let own = ((mpidr >> 8) & 0xff_0000) | (mpidr & 0xff_ffff);
    // Frames follow each other until one says GICR_TYPER.Last [4].
    let mut rd = GICR;
    loop {
        // SAFETY: as `read32`, a 64-bit register of a frame before the last one.
        let typer = unsafe { ((rd + GICR_TYPER) as *const u64).read_volatile() };
        if typer >> 32 == own || typer & (1 << 4) != 0 {
            break;
        }
        rd += GICR_STRIDE;
    }
    write32(
        rd + GICR_WAKER,
        read32(rd + GICR_WAKER) & !GICR_WAKER_PROCESSOR_SLEEP,
    );
    for _ in 0..100_000 {
        if read32(rd + GICR_WAKER) & GICR_WAKER_CHILDREN_ASLEEP == 0 {
            break;
        }
    }
    // SAFETY: priority mask open, Group 1 enabled at the CPU interface.
    unsafe {
        asm!(
            "msr icc_pmr_el1, {pmr}",
            "msr icc_igrpen1_el1, {on}",
            "isb",
            pmr = in(reg) 0xffu64,
            on = in(reg) 1u64,
            options(nomem, nostack),
        )
    };
    rd
}

/// The virtual counter and its frequency.
pub fn counter() -> (u64, u64) {
    let (now, freq): (u64, u64);
    // SAFETY: reading the virtual counter and its frequency has no side effects.
    unsafe {
        asm!(
            "isb",
            "mrs {n}, cntvct_el0",
            "mrs {f}, cntfrq_el0",
            n = out(reg) now,
            f = out(reg) freq,
            options(nomem, nostack),
        )
    };
    (now, freq)
}

/// Waits up to `seconds` for an IRQ to be pending at this vCPU (ISR_EL1.I, which reads
/// the pending IRQ whatever PSTATE.I says, Arm ARM ISR_EL1) and acknowledges it
/// (ICC_IAR1_EL1). `None` when none came or only a spurious INTID was read.
pub fn wait_for_irq(seconds: u64) -> Option<u32> {
    let (start, freq) = counter();
    loop {
        let isr: u64;
        // SAFETY: reading ISR_EL1 has no side effects.
        unsafe { asm!("mrs {}, isr_el1", out(reg) isr, options(nomem, nostack)) };
        if isr & (1 << 7) != 0 {
            let intid = acknowledge();
            return (intid != INTID_SPURIOUS).then_some(intid);
        }
        if counter().0.wrapping_sub(start) > seconds.saturating_mul(freq) {
            return None;
        }
        core::hint::spin_loop();
    }
}

/// Waits, in WFI, until an IRQ is pending at this vCPU, and acknowledges it. WFI wakes
/// on a pending interrupt even while PSTATE.I masks it (Arm ARM, "Wait For Interrupt").
/// `None` for a spurious INTID.
#[allow(dead_code)]
pub fn sleep_until_irq() -> Option<u32> {
    loop {
        let isr: u64;
        // SAFETY: reading ISR_EL1 has no side effects; WFI only waits.
        unsafe {
            asm!("mrs {}, isr_el1", out(reg) isr, options(nomem, nostack));
            if isr & (1 << 7) == 0 {
                asm!("wfi", options(nomem, nostack));
                continue;
            }
        }
        let intid = acknowledge();
        return (intid != INTID_SPURIOUS).then_some(intid);
    }
}

/// End of interrupt: priority drop and deactivation (ICC_CTLR_EL1.EOImode = 0, the
/// reset value).
pub fn eoi(intid: u32) {
    if v2() {
        write32(GICC + GICC_EOIR, intid);
        return;
    }
    // SAFETY: completing the acknowledged interrupt is the intent.
    unsafe {
        asm!("msr icc_eoir1_el1, {}", "isb", in(reg) u64::from(intid), options(nomem, nostack))
    };
}
