//! vGICv2 guest: checks the GICv2 a VM on a GICv2 (GIC-400) host sees against
//! the architecture (IHI 0048B.b), driving it as a bare-metal GICv2 driver
//! would: the distributor at 0x0800_0000 (emulated by the hypervisor), the CPU
//! interface at 0x0801_0000 (the hardware's virtual CPU interface, GICV).
//!
//! - Identification: ICPIDR2.ArchRev, GICD_TYPER (CPU interfaces, no Security
//!   Extensions), the banked GICD_ITARGETSR0 of each vCPU.
//! - Spurious INTID 1023 with nothing pending.
//! - An SGI to self by GICD_SGIR, acknowledged and completed.
//! - The virtual timer (PPI 27), twice: the second time only if the guest's EOI
//!   deactivated the hardware-linked physical interrupt.
//! - An SPI made pending through GICD_ISPENDR, targeted by GICD_ITARGETSR.
//! - Two vCPUs: an SGI to vCPU 1 by CPU target list (it waits in WFI), its
//!   answer to "all but self", an SPI targeted at vCPU 1.
//!
//! Expects two vCPUs (MPIDR Aff0 0 and 1) and QEMU `virt`'s GICv2 layout; the
//! number of checks is fixed: [`CHECKS`] (tests/gicv2.rs expects exactly these).
//! It runs on bare QEMU too (`-M virt,gic-version=2 -smp 2`).
#![no_std]
#![no_main]
#![deny(clippy::undocumented_unsafe_blocks)]

use core::arch::asm;
use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use guest_rt::smp::{Secondary, Vectors};
use guest_rt::{check, finish, println};

guest_rt::entry!(main);

/// Every check this guest makes (tests/gicv2.rs expects exactly this many passes).
pub const CHECKS: u32 = 15;

const GICD: usize = 0x0800_0000;
const GICC: usize = 0x0801_0000;

// IHI 0048B.b table 4-1.
const GICD_CTLR: usize = 0x000;
const GICD_TYPER: usize = 0x004;
const GICD_ISENABLER: usize = 0x100;
const GICD_ISPENDR: usize = 0x200;
const GICD_ICPENDR: usize = 0x280;
const GICD_ITARGETSR: usize = 0x800;
const GICD_SGIR: usize = 0xF00;
const GICD_ICPIDR2: usize = 0xFE8;
// Table 4-2.
const GICC_CTLR: usize = 0x000;
const GICC_PMR: usize = 0x004;
const GICC_IAR: usize = 0x00C;
const GICC_EOIR: usize = 0x010;

const SPURIOUS: u32 = 1023;
const VTIMER: u32 = 27;
const TEST_SPI: u32 = 90;
/// The SGI vCPU 0 sends vCPU 1, and the one vCPU 1 answers with.
const PING_SGI: u32 = 3;
const PONG_SGI: u32 = 4;

const DELIVERY_MS: u64 = 2_000;
const TIMER_DELAY_MS: u64 = 10;
const SECONDARY_TIMEOUT_MS: u64 = 20_000;

fn read32(addr: usize) -> u32 {
    let v: u32;
    // SAFETY: `addr` is a GIC register in the runtime's Device mapping of
    // 0..1 GiB; a load has no effect beyond the register's read side effects.
    unsafe { asm!("ldr {v:w}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack)) };
    v
}

fn write32(addr: usize, value: u32) {
    // SAFETY: as `read32`; what the write does to the interrupt state is the
    // test's intent.
    unsafe { asm!("str {v:w}, [{a}]", a = in(reg) addr, v = in(reg) value, options(nostack)) };
}

fn write8(addr: usize, value: u8) {
    // SAFETY: as `write32`; GICD_ITARGETSR is byte-accessible.
    unsafe {
        asm!("strb {v:w}, [{a}]", a = in(reg) addr, v = in(reg) u32::from(value), options(nostack))
    };
}

fn read8(addr: usize) -> u8 {
    let v: u32;
    // SAFETY: as `read32`.
    unsafe { asm!("ldrb {v:w}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack)) };
    v as u8
}

fn cntvct() -> u64 {
    let v: u64;
    // SAFETY: reading the virtual counter after a barrier has no side effects.
    unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack)) };
    v
}

fn cntfrq() -> u64 {
    let v: u64;
    // SAFETY: reading CNTFRQ_EL0 has no side effects.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) v, options(nomem, nostack)) };
    v
}

fn set_cntv(cval: u64, ctl: u64) {
    // SAFETY: the EL1 virtual timer is the guest's own.
    unsafe {
        asm!("msr cntv_cval_el0, {}", "msr cntv_ctl_el0, {}", "isb", in(reg) cval, in(reg) ctl, options(nostack))
    };
}

fn wfi() {
    // SAFETY: WFI only waits (IRQs stay masked: a pending one ends it).
    unsafe { asm!("dsb sy", "wfi", options(nostack)) };
}

fn ms_to_ticks(ms: u64) -> u64 {
    cntfrq() / 1000 * ms
}

/// Acknowledges (GICC_IAR): INTID [9:0] and the SGI source CPUID [12:10].
fn ack() -> u32 {
    read32(GICC + GICC_IAR)
}

/// Completes what `ack` returned (EOImode 0: drop and deactivate).
fn eoi(iar: u32) {
    write32(GICC + GICC_EOIR, iar);
}

/// Polls GICC_IAR for `ms` until something other than spurious comes.
fn wait_ack(ms: u64) -> u32 {
    let end = cntvct() + ms_to_ticks(ms);
    loop {
        let iar = ack();
        if iar & 0x3ff != SPURIOUS || cntvct() > end {
            return iar;
        }
    }
}

/// This vCPU's CPU interface on: every priority above 0xf0, signalling on.
fn cpu_interface_up() {
    write32(GICC + GICC_PMR, 0xf0);
    write32(GICC + GICC_CTLR, 1);
    // Every SGI enabled (banked).
    write32(GICD + GICD_ISENABLER, 0xffff);
}

// ---- vCPU 1 ----

static VCPU1: Secondary = Secondary::new();
static VCPU1_READY: AtomicU64 = AtomicU64::new(0);
static VCPU1_TARGETS: AtomicU32 = AtomicU32::new(0);
/// Each INTID vCPU 1 acknowledged, as a bit (SGIs, and the test SPI as bit 31).
static VCPU1_SEEN: AtomicU32 = AtomicU32::new(0);

fn vcpu1_main(_: usize) -> ! {
    cpu_interface_up();
    VCPU1_TARGETS.store(read32(GICD + GICD_ITARGETSR), Ordering::SeqCst);
    VCPU1_READY.store(1, Ordering::SeqCst);
    loop {
        wfi();
        loop {
            let iar = ack();
            let intid = iar & 0x3ff;
            if intid == SPURIOUS {
                break;
            }
            eoi(iar);
            let bit = if intid == TEST_SPI { 31 } else { intid & 31 };
            VCPU1_SEEN.fetch_or(1 << bit, Ordering::SeqCst);
            if intid == PING_SGI {
                // TargetListFilter 0b01: every CPU interface but this one.
                write32(GICD + GICD_SGIR, (0b01 << 24) | PONG_SGI);
            }
        }
    }
}

fn wait_seen(bit: u32) -> bool {
    let end = cntvct() + ms_to_ticks(DELIVERY_MS);
    while cntvct() < end {
        if VCPU1_SEEN.load(Ordering::SeqCst) & (1 << bit) != 0 {
            return true;
        }
    }
    false
}

fn main(_dtb: u64) -> ! {
    println!("Ferrovisor vGICv2 guest");

    // Identification.
    let pidr2 = read32(GICD + GICD_ICPIDR2);
    check!(
        "ICPIDR2.ArchRev is 2 (GICv2)",
        (pidr2 >> 4) & 0xf == 2,
        "ICPIDR2 = {pidr2:#x}"
    );
    let typer = read32(GICD + GICD_TYPER);
    check!(
        "GICD_TYPER: 2 CPU interfaces, no Security Extensions, SPIs up to INTID 95 at least",
        (typer >> 5) & 7 == 1 && typer & (1 << 10) == 0 && (typer & 0x1f) >= 2,
        "GICD_TYPER = {typer:#x}"
    );
    let t0 = read32(GICD + GICD_ITARGETSR);
    check!(
        "GICD_ITARGETSR0 reads vCPU 0's own CPU interface",
        t0 == 0x0101_0101,
        "GICD_ITARGETSR0 = {t0:#x}"
    );

    write32(GICD + GICD_CTLR, 1);
    cpu_interface_up();
    let iar = ack();
    check!(
        "GICC_IAR is 1023 with nothing pending",
        iar & 0x3ff == SPURIOUS,
        "GICC_IAR = {iar:#x}"
    );

    // SGI to self: TargetListFilter 0b10.
    write32(GICD + GICD_SGIR, (0b10 << 24) | 5);
    let iar = wait_ack(DELIVERY_MS);
    eoi(iar);
    let after = ack();
    check!(
        "SGI 5 to self by GICD_SGIR acknowledged, then nothing pending",
        iar & 0x3ff == 5 && after & 0x3ff == SPURIOUS,
        "GICC_IAR = {iar:#x}, then {after:#x}"
    );

    // The virtual timer, hardware-linked: the second interrupt comes only if
    // the EOI of the first deactivated the physical one.
    write32(GICD + GICD_ISENABLER, 1 << VTIMER);
    for round in 1..=2 {
        let start = cntvct();
        set_cntv(start + ms_to_ticks(TIMER_DELAY_MS), 1);
        let iar = wait_ack(DELIVERY_MS);
        let at = cntvct();
        // IMASK: the line drops before the EOI.
        set_cntv(0, 0b11);
        eoi(iar);
        check!(
            if round == 1 {
                "virtual timer PPI 27 taken through the GICV CPU interface"
            } else {
                "virtual timer PPI 27 taken again after the guest's EOI"
            },
            iar & 0x3ff == VTIMER && at >= start + ms_to_ticks(TIMER_DELAY_MS),
            "GICC_IAR = {iar:#x} after {} ticks",
            at - start
        );
    }

    // An SPI by GICD_ISPENDR, targeted at vCPU 0.
    let (word, bit) = ((TEST_SPI / 32) as usize * 4, 1 << (TEST_SPI % 32));
    write32(GICD + GICD_ISENABLER + word, bit);
    write8(GICD + GICD_ITARGETSR + TEST_SPI as usize, 1);
    write32(GICD + GICD_ISPENDR + word, bit);
    let iar = wait_ack(DELIVERY_MS);
    eoi(iar);
    check!(
        "SPI 90 made pending by GICD_ISPENDR, targeted at vCPU 0, acknowledged",
        iar & 0x3ff == TEST_SPI,
        "GICC_IAR = {iar:#x}"
    );

    // Two vCPUs.
    let started = VCPU1.start(1, Vectors::Runtime, vcpu1_main, 0);
    let end = cntvct() + ms_to_ticks(SECONDARY_TIMEOUT_MS);
    while VCPU1_READY.load(Ordering::SeqCst) == 0 && cntvct() < end {}
    let t1 = VCPU1_TARGETS.load(Ordering::SeqCst);
    check!(
        "vCPU 1 up, its GICD_ITARGETSR0 reads its own CPU interface",
        started.is_ok() && VCPU1_READY.load(Ordering::SeqCst) == 1 && t1 == 0x0202_0202,
        "CPU_ON {started:?}, GICD_ITARGETSR0 = {t1:#x}"
    );

    // Ping: CPU target list = CPU interface 1.
    write32(GICD + GICD_SGIR, (1 << 17) | PING_SGI);
    check!(
        "SGI 3 to vCPU 1 by CPU target list, taken in its WFI loop",
        wait_seen(PING_SGI),
        "seen {:#x}",
        VCPU1_SEEN.load(Ordering::SeqCst)
    );
    let iar = wait_ack(DELIVERY_MS);
    eoi(iar);
    check!(
        "vCPU 1's answer (SGI 4, all but self) reaches vCPU 0",
        iar & 0x3ff == PONG_SGI,
        "GICC_IAR = {iar:#x}"
    );
    let iar = ack();
    check!(
        "an SGI to all but self does not reach the sender",
        iar & 0x3ff == SPURIOUS && VCPU1_SEEN.load(Ordering::SeqCst) & (1 << PONG_SGI) == 0,
        "GICC_IAR = {iar:#x}, vCPU 1 saw {:#x}",
        VCPU1_SEEN.load(Ordering::SeqCst)
    );

    // The SPI targeted at vCPU 1.
    write8(GICD + GICD_ITARGETSR + TEST_SPI as usize, 2);
    let back = read8(GICD + GICD_ITARGETSR + TEST_SPI as usize);
    check!(
        "GICD_ITARGETSR of SPI 90 reads back vCPU 1",
        back == 2,
        "{back:#x}"
    );
    write32(GICD + GICD_ISPENDR + word, bit);
    check!(
        "SPI 90 targeted at vCPU 1 taken there",
        wait_seen(31),
        "seen {:#x}",
        VCPU1_SEEN.load(Ordering::SeqCst)
    );
    let iar = ack();
    check!(
        "SPI 90 targeted at vCPU 1 does not reach vCPU 0",
        iar & 0x3ff == SPURIOUS,
        "GICC_IAR = {iar:#x}"
    );
    write32(GICD + GICD_ICPENDR + word, bit);
    finish()
}
