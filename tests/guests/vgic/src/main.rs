//! vGIC conformance guest (issue 3): checks the GICv3 a VM sees against the
//! architecture (IHI 0069), driving it as a bare-metal GICv3 driver would.
//!
//! - Bring-up: ICC_SRE_EL1.SRE, GICD_CTLR (ARE, EnableGrp1), GICR_WAKER, IGROUPR,
//!   IPRIORITYR, ICC_PMR_EL1, ICC_IGRPEN1_EL1, GICR_ISENABLER0.
//! - Identification: GICD_PIDR2/GICR_PIDR2.ArchRev, GICD_TYPER, GICR_TYPER of each
//!   vCPU's frame.
//! - Spurious INTID 1023 with nothing pending.
//! - SGIs to self (seen pending, acknowledged, completed; and taken as an IRQ).
//! - Priorities: ICC_PMR_EL1 masking, acknowledge order, running priority,
//!   preemption.
//! - More SGIs pending at once than a virtual CPU interface has list registers.
//! - What stops an interrupt: GICR_ICENABLER0, GICR_ICPENDR0, ICC_IGRPEN1_EL1.
//! - ICC_CTLR_EL1.EOImode: priority drop and deactivation split, and joined.
//! - The virtual timer (PPI 27) at its programmed time, again after deactivation
//!   (with EOImode 0 and 1), its level following CNTV_CTL_EL0.IMASK, and waking
//!   the vCPU from WFI.
//! - An SPI made pending through the distributor, routed by GICD_IROUTER; the
//!   level-sensitive PL011 interrupt (SPI 33) following its device's line.
//! - Two vCPUs: SGIs to the other vCPU (waiting in WFI, and running) and back,
//!   IRM = 1, two targets in one write, a target that does not exist, each vCPU's
//!   own virtual timer, a redistributor written by the other vCPU, an SPI routed to
//!   the other vCPU.
//!
//! Expects two vCPUs (MPIDR Aff0 0 and 1) and QEMU `virt`'s GIC layout; the number
//! of checks is fixed: [`CHECKS`] (tests/vgic.rs expects exactly these). It runs
//! on bare QEMU too (`-M virt,gic-version=3,its=off -smp 2`), where QEMU's own
//! GICv3 is the reference.
#![no_std]
#![no_main]
#![deny(clippy::undocumented_unsafe_blocks)]

mod gic;
mod irq;
mod secondary;

use core::sync::atomic::Ordering;

use gic::{
    GICD_BASE, GICD_CTLR, GICD_CTLR_ARE, GICD_CTLR_DS, GICD_CTLR_ENABLE_GRP1, GICD_ICENABLER,
    GICD_ICPENDR, GICD_IGROUPR, GICD_IPRIORITYR, GICD_IROUTER, GICD_ISACTIVER, GICD_ISENABLER,
    GICD_ISPENDR, GICD_TYPER, GICD_TYPER_LPIS, GICR_ICACTIVER0, GICR_ICENABLER0, GICR_ICPENDR0,
    GICR_IGROUPR0, GICR_IPRIORITYR, GICR_ISACTIVER0, GICR_ISENABLER0, GICR_ISPENDR0, GICR_TYPER,
    GICR_TYPER_LAST, GICR_WAKER, GICR_WAKER_CHILDREN_ASLEEP, GICR_WAKER_PROCESSOR_SLEEP,
    INTID_SPURIOUS, INTID_VTIMER,
};
use guest_rt::{check, finish, println};

guest_rt::entry!(main);

/// Every check this guest makes (tests/vgic.rs expects exactly this many passes).
pub const CHECKS: u32 = 55;

/// vCPUs the config gives the VM.
const NR_VCPUS: usize = 2;
/// vCPU 1's MPIDR affinity (PSCI CPU_ON target).
const VCPU1_AFFINITY: u64 = 1;

/// Priority given to SGIs and PPIs at bring-up (a mid value, as Linux's 0xa0).
const DEFAULT_PRIORITY: u8 = 0xa0;
/// The SPI used for distributor checks: INTID 90, below the 96 INTIDs a VM's
/// 64 SPIs cover, and wired to nothing on QEMU virt.
const TEST_SPI: u32 = 90;

/// How long to wait for an interrupt that should come at once (TCG, a loaded
/// machine, an exit and a kick on the way).
const DELIVERY_MS: u64 = 2_000;
/// How long an interrupt that must not come is given to come.
const QUIET_MS: u64 = 50;
/// The timer's deadline from now, and how late its interrupt may be.
const TIMER_DELAY_MS: u64 = 10;
const TIMER_SLACK_MS: u64 = 500;
/// How long vCPU 1 may take to come up (virtual-counter ms).
const SECONDARY_TIMEOUT_MS: u64 = 20_000;

fn main(_dtb: u64) -> ! {
    println!("Ferrovisor vGIC guest");
    guest_rt::set_irq_handler(Some(irq::handler));
    gic::mask_irqs();

    let frame0 = bring_up();
    identification();
    spurious();
    sgi_to_self();
    priority();
    many_pending();
    gating();
    eoimode();
    timer();
    spi_routed_to_self();
    level_spi();
    smp(frame0);
    finish()
}

/// The redistributor frame of vCPU 0 (found by affinity).
fn own_sgi_base() -> usize {
    gic::sgi_base(0)
}

fn bit(intid: u32) -> u32 {
    1 << (intid % 32)
}

/// Acknowledges and completes whatever is left pending with IRQs masked (after a
/// failed check), so the next check starts clean.
fn drain() {
    for _ in 0..64 {
        let intid = gic::icc_iar1();
        if intid == INTID_SPURIOUS {
            break;
        }
        gic::icc_eoir1(intid);
        if gic::icc_ctlr() & gic::ICC_CTLR_EOIMODE != 0 {
            gic::icc_dir(intid);
        }
    }
    let sgi = own_sgi_base();
    gic::write32(sgi + GICR_ICPENDR0, 0xffff);
    gic::write32(sgi + GICR_ICACTIVER0, 0xffff_ffff);
}

fn set_sgi_priority(sgi_base: usize, intid: u32, priority: u8) {
    gic::write8(sgi_base + GICR_IPRIORITYR + intid as usize, priority);
}

/// Bring-up as a bare-metal GICv3 driver does it. Returns vCPU 0's frame index.
fn bring_up() -> usize {
    // CPU interface: system-register access (IHI 0069, ICC_SRE_EL1.SRE).
    gic::set_icc_sre(gic::icc_sre() | gic::ICC_SRE_SRE);
    let sre = gic::icc_sre();
    check!(
        "bring-up: ICC_SRE_EL1.SRE reads 1 after setting it",
        sre & gic::ICC_SRE_SRE != 0,
        "ICC_SRE_EL1 = {sre:#x}"
    );

    // Distributor: affinity routing and Group 1 (Non-secure) enabled, then wait
    // for RWP (IHI 0069, GICD_CTLR).
    gic::write32(GICD_BASE + GICD_CTLR, GICD_CTLR_ARE | GICD_CTLR_ENABLE_GRP1);
    let rwp_clear = gic::gicd_wait_rwp(100_000);
    let ctlr = gic::read32(GICD_BASE + GICD_CTLR);
    let want = GICD_CTLR_ARE | GICD_CTLR_ENABLE_GRP1 | GICD_CTLR_DS;
    check!(
        "bring-up: GICD_CTLR reads ARE = 1, EnableGrp1 = 1, DS = 1 after enabling (RWP clears)",
        rwp_clear && ctlr & want == want,
        "GICD_CTLR = {ctlr:#x}, RWP cleared: {rwp_clear}"
    );

    // Redistributor: find this vCPU's frame by affinity, wake it (IHI 0069,
    // "Power management": clear ProcessorSleep, wait for ChildrenAsleep = 0).
    let own = gic::mpidr_to_typer_affinity(gic::mpidr());
    let frame = (0..secondary::MAX_FRAMES)
        .find(|&n| gic::gicr_typer_affinity(gic::read64(gic::rd_base(n) + GICR_TYPER)) == own)
        .unwrap_or(0);
    let rd = gic::rd_base(frame);
    let waker = gic::read32(rd + GICR_WAKER);
    gic::write32(rd + GICR_WAKER, waker & !GICR_WAKER_PROCESSOR_SLEEP);
    let awake =
        (0..100_000).any(|_| gic::read32(rd + GICR_WAKER) & GICR_WAKER_CHILDREN_ASLEEP == 0);
    let waker_after = gic::read32(rd + GICR_WAKER);
    check!(
        "bring-up: GICR_WAKER.ChildrenAsleep clears after ProcessorSleep is cleared",
        awake && waker_after & GICR_WAKER_PROCESSOR_SLEEP == 0,
        "GICR_WAKER before {waker:#x}, after {waker_after:#x} (frame {frame})"
    );

    // Every interrupt Group 1 (with one Security state, Group 1 is what
    // ICC_IGRPEN1_EL1 and ICC_SGI1R_EL1 reach).
    let sgi = gic::sgi_base(frame);
    gic::write32(sgi + GICR_IGROUPR0, !0);
    for n in 1..3 {
        gic::write32(GICD_BASE + GICD_IGROUPR + 4 * n, !0);
    }
    let (g0, g2) = (
        gic::read32(sgi + GICR_IGROUPR0),
        gic::read32(GICD_BASE + GICD_IGROUPR + 8),
    );
    check!(
        "bring-up: GICR_IGROUPR0 and GICD_IGROUPR2 read all Group 1 after writing ~0",
        g0 == !0 && g2 == !0,
        "GICR_IGROUPR0 = {g0:#x}, GICD_IGROUPR2 = {g2:#x}"
    );

    // Priorities by byte, as Linux writes them.
    for intid in 0..32 {
        set_sgi_priority(sgi, intid, DEFAULT_PRIORITY);
    }
    let prio: [u32; 8] = core::array::from_fn(|w| gic::read32(sgi + GICR_IPRIORITYR + 4 * w));
    let expected = u32::from_ne_bytes([DEFAULT_PRIORITY; 4]);
    let byte27 = gic::read8(sgi + GICR_IPRIORITYR + INTID_VTIMER as usize);
    check!(
        "bring-up: GICR_IPRIORITYR0-7 read back the byte-written priority 0xa0 (word and byte reads)",
        prio.iter().all(|&p| p == expected) && byte27 == DEFAULT_PRIORITY,
        "GICR_IPRIORITYR0-7 = {prio:#x?}, byte 27 = {byte27:#x}"
    );

    // CPU interface: priority mask, binary point, Group 1 enable.
    gic::set_icc_pmr(0xff);
    gic::set_icc_bpr1(0);
    let ctlr = gic::icc_ctlr();
    let bits = gic::icc_ctlr_pri_bits(ctlr);
    let pmr = gic::icc_pmr();
    let pmr_want = u64::from(!0xffu8.checked_shr(bits).unwrap_or(0));
    println!("info: ICC_CTLR_EL1 = {ctlr:#x} ({bits} priority bits)");
    check!(
        "bring-up: ICC_PMR_EL1 = 0xff reads back with the ICC_CTLR_EL1.PRIbits implemented bits",
        (4..=8).contains(&bits) && pmr == pmr_want,
        "ICC_PMR_EL1 = {pmr:#x}, expected {pmr_want:#x} for {bits} priority bits"
    );
    gic::set_icc_igrpen1(1);
    let igrpen1 = gic::icc_igrpen1();
    check!(
        "bring-up: ICC_IGRPEN1_EL1.Enable reads 1",
        igrpen1 & 1 == 1,
        "ICC_IGRPEN1_EL1 = {igrpen1:#x}"
    );

    gic::write32(sgi + GICR_ISENABLER0, 0xffff);
    let en = gic::read32(sgi + GICR_ISENABLER0);
    check!(
        "bring-up: GICR_ISENABLER0 shows SGIs 0-15 enabled (PPIs not yet)",
        en == 0xffff,
        "GICR_ISENABLER0 = {en:#x}"
    );
    frame
}

fn identification() {
    let d = gic::read32(GICD_BASE + gic::GIC_PIDR2);
    let r = gic::read32(gic::rd_base(0) + gic::GIC_PIDR2);
    check!(
        "id: GICD_PIDR2.ArchRev and GICR_PIDR2.ArchRev are 3 (GICv3)",
        (d >> 4) & 0xf == 3 && (r >> 4) & 0xf == 3,
        "GICD_PIDR2 = {d:#x}, GICR_PIDR2 = {r:#x}"
    );

    let typer = gic::read32(GICD_BASE + GICD_TYPER);
    let lines = gic::gicd_typer_it_lines(typer);
    let spis = (lines + 1) * 32 - 32;
    let id_bits = gic::gicd_typer_id_bits(typer);
    println!("info: GICD_TYPER = {typer:#x}: {spis} SPIs, {id_bits} INTID bits");
    check!(
        "id: GICD_TYPER: ITLinesNumber gives >= 64 SPIs, LPIS = 0, IDbits >= 10 bits",
        spis >= 64 && typer & GICD_TYPER_LPIS == 0 && id_bits >= 10,
        "GICD_TYPER = {typer:#x}"
    );

    let t0 = gic::read64(gic::rd_base(0) + GICR_TYPER);
    let own = gic::mpidr_to_typer_affinity(gic::mpidr());
    check!(
        "id: GICR_TYPER of frame 0: Affinity_Value is vCPU 0's MPIDR, Last = 0 (two vCPUs)",
        gic::gicr_typer_affinity(t0) == own && t0 & GICR_TYPER_LAST == 0,
        "GICR_TYPER = {t0:#x}, MPIDR_EL1 = {:#x}",
        gic::mpidr()
    );
}

fn spurious() {
    let hppir = gic::icc_hppir1();
    let iar = gic::icc_iar1();
    let rpr = gic::icc_rpr();
    check!(
        "spurious: nothing pending: ICC_HPPIR1_EL1 and ICC_IAR1_EL1 read 1023, ICC_RPR_EL1 idle (0xff)",
        hppir == INTID_SPURIOUS && iar == INTID_SPURIOUS && rpr == 0xff,
        "HPPIR1 = {hppir}, IAR1 = {iar}, RPR = {rpr:#x}"
    );
    if iar != INTID_SPURIOUS {
        gic::icc_eoir1(iar);
    }
}

fn sgi_to_self() {
    let sgi = own_sgi_base();
    let me = gic::mpidr();

    // IRQs masked: the SGI is seen pending and handled by polling.
    gic::icc_sgi1r(gic::sgi1r_to(3, me));
    let seen = gic::wait_until(DELIVERY_MS, || gic::icc_hppir1() == 3);
    let pend = gic::read32(sgi + GICR_ISPENDR0);
    let isr = gic::isr_irq_pending();
    let hppir = gic::icc_hppir1();
    check!(
        "sgi self: SGI 3 via ICC_SGI1R_EL1 is pending: GICR_ISPENDR0 bit 3, ICC_HPPIR1_EL1 = 3, ISR_EL1.I = 1",
        seen && pend & bit(3) != 0 && hppir == 3 && isr,
        "GICR_ISPENDR0 = {pend:#x}, HPPIR1 = {hppir}, ISR_EL1.I = {isr}"
    );

    let iar = gic::icc_iar1();
    let rpr = gic::icc_rpr();
    let act = gic::read32(sgi + GICR_ISACTIVER0);
    let pend = gic::read32(sgi + GICR_ISPENDR0);
    check!(
        "sgi self: ICC_IAR1_EL1 = 3; then SGI 3 is active, not pending, at running priority 0xa0",
        iar == 3 && u64::from(DEFAULT_PRIORITY) == rpr && act & bit(3) != 0 && pend & bit(3) == 0,
        "IAR1 = {iar}, RPR = {rpr:#x}, GICR_ISACTIVER0 = {act:#x}, GICR_ISPENDR0 = {pend:#x}"
    );

    if iar != INTID_SPURIOUS {
        gic::icc_eoir1(iar);
    }
    let act = gic::read32(sgi + GICR_ISACTIVER0);
    let rpr = gic::icc_rpr();
    let iar2 = gic::icc_iar1();
    check!(
        "sgi self: with EOImode 0, ICC_EOIR1_EL1 drops priority and deactivates (ISACTIVER0 clear, RPR idle, IAR 1023)",
        act & bit(3) == 0 && rpr == 0xff && iar2 == INTID_SPURIOUS,
        "GICR_ISACTIVER0 = {act:#x}, RPR = {rpr:#x}, IAR1 = {iar2}"
    );
    drain();

    // IRQs unmasked: the SGI is taken as an IRQ exception and handled there.
    gic::icc_sgi1r(gic::sgi1r_to(4, me));
    gic::unmask_irqs();
    gic::wait_until(DELIVERY_MS, || irq::taken(0, 4) > 0);
    gic::wait_until(QUIET_MS, || false);
    gic::mask_irqs();
    let (n, last, spur) = (irq::taken(0, 4), irq::last(0), irq::spurious(0));
    check!(
        "sgi self: SGI 4 is taken as an IRQ exception exactly once, ICC_IAR1_EL1 = 4 in the handler",
        n == 1 && last == 4 && spur == 0,
        "taken {n} times, last INTID {last}, {spur} spurious acknowledges"
    );
    drain();
}

fn priority() {
    let sgi = own_sgi_base();
    let me = gic::mpidr();

    // PMR equal to the interrupt's priority masks it: only a priority strictly
    // higher (numerically lower) than ICC_PMR_EL1 is signalled (IHI 0069,
    // "Priority masking").
    set_sgi_priority(sgi, 8, 0x80);
    gic::set_icc_pmr(0x80);
    gic::icc_sgi1r(gic::sgi1r_to(8, me));
    let seen = gic::wait_until(DELIVERY_MS, || gic::icc_hppir1() == 8);
    let isr = gic::isr_irq_pending();
    let iar = gic::icc_iar1();
    check!(
        "priority: SGI 8 at priority 0x80 with ICC_PMR_EL1 = 0x80 stays pending: HPPIR1 = 8, ISR_EL1.I = 0, IAR1 = 1023",
        seen && !isr && iar == INTID_SPURIOUS,
        "HPPIR1 showed 8: {seen}, ISR_EL1.I = {isr}, IAR1 = {iar}"
    );
    if iar != INTID_SPURIOUS {
        gic::icc_eoir1(iar);
    }

    gic::unmask_irqs();
    gic::wait_until(QUIET_MS, || false);
    let masked_taken = irq::taken(0, 8);
    check!(
        "priority: with IRQs unmasked SGI 8 is not taken while ICC_PMR_EL1 = 0x80",
        masked_taken == 0,
        "taken {masked_taken} times"
    );
    gic::set_icc_pmr(0xff);
    let delivered = gic::wait_until(DELIVERY_MS, || irq::taken(0, 8) > 0);
    gic::mask_irqs();
    check!(
        "priority: raising ICC_PMR_EL1 to 0xff delivers SGI 8 (once)",
        delivered && irq::taken(0, 8) == 1,
        "taken {} times",
        irq::taken(0, 8)
    );
    drain();

    // Acknowledge order is by priority, not by INTID or arrival; the running
    // priority blocks a lower-priority interrupt (IHI 0069, "Preemption").
    set_sgi_priority(sgi, 9, 0xa0);
    set_sgi_priority(sgi, 10, 0x40);
    gic::icc_sgi1r(gic::sgi1r_to(9, me));
    gic::icc_sgi1r(gic::sgi1r_to(10, me));
    gic::wait_until(DELIVERY_MS, || {
        gic::read32(sgi + GICR_ISPENDR0) & (bit(9) | bit(10)) == bit(9) | bit(10)
    });
    let first = gic::icc_iar1();
    let rpr_first = gic::icc_rpr();
    let blocked = gic::icc_iar1();
    check!(
        "priority: SGI 10 (0x40) is acknowledged before SGI 9 (0xa0, sent first); then RPR = 0x40 and SGI 9 is not acknowledged",
        first == 10 && rpr_first == 0x40 && blocked == INTID_SPURIOUS,
        "first IAR1 = {first}, RPR = {rpr_first:#x}, second IAR1 = {blocked}"
    );
    if first != INTID_SPURIOUS {
        gic::icc_eoir1(first);
    }
    if blocked != INTID_SPURIOUS {
        gic::icc_eoir1(blocked);
    }
    let second = gic::icc_iar1();
    if second != INTID_SPURIOUS {
        gic::icc_eoir1(second);
    }
    check!(
        "priority: after SGI 10's EOI, SGI 9 is acknowledged",
        second == 9,
        "IAR1 = {second}"
    );
    drain();

    // Preemption: with SGI 9 (0xa0) active, SGI 10 (0x40) is acknowledged; the
    // EOIs drop the running priority back step by step (ICC_AP1R<n>_EL1).
    gic::icc_sgi1r(gic::sgi1r_to(9, me));
    gic::wait_until(DELIVERY_MS, || gic::icc_hppir1() == 9);
    let outer = gic::icc_iar1();
    gic::icc_sgi1r(gic::sgi1r_to(10, me));
    gic::wait_until(DELIVERY_MS, || gic::icc_hppir1() == 10);
    let inner = gic::icc_iar1();
    let rpr_inner = gic::icc_rpr();
    if inner != INTID_SPURIOUS {
        gic::icc_eoir1(inner);
    }
    let rpr_outer = gic::icc_rpr();
    if outer != INTID_SPURIOUS {
        gic::icc_eoir1(outer);
    }
    let rpr_idle = gic::icc_rpr();
    check!(
        "priority: SGI 10 (0x40) preempts an active SGI 9 (0xa0); EOIs restore RPR 0xa0, then idle",
        outer == 9 && inner == 10 && rpr_inner == 0x40 && rpr_outer == 0xa0 && rpr_idle == 0xff,
        "IAR1 {outer} then {inner}, RPR {rpr_inner:#x} -> {rpr_outer:#x} -> {rpr_idle:#x}"
    );
    drain();
    for intid in [8, 9, 10] {
        set_sgi_priority(sgi, intid, DEFAULT_PRIORITY);
    }
}

/// Eight SGIs pending at once, more than the list registers a virtual CPU
/// interface usually has (QEMU: 4): the ones that do not fit wait in the
/// hypervisor and come later, and acknowledges still follow priority (IHI 0069,
/// "Interrupt prioritization"), whatever the order they were sent in.
fn many_pending() {
    let sgi = own_sgi_base();
    let me = gic::mpidr();
    // (INTID, priority), sent in this order; expected back by priority.
    const SET: [(u32, u8); 8] = [
        (3, 0xc0),
        (14, 0x20),
        (4, 0x90),
        (12, 0x50),
        (6, 0xb0),
        (9, 0x30),
        (11, 0x70),
        (8, 0x60),
    ];
    for (intid, prio) in SET {
        set_sgi_priority(sgi, intid, prio);
    }
    for (intid, _) in SET {
        gic::icc_sgi1r(gic::sgi1r_to(intid, me));
    }
    let mut want = SET;
    want.sort_unstable_by_key(|&(_, p)| p);
    let mut got = [INTID_SPURIOUS; 8];
    for slot in got.iter_mut() {
        // An interrupt the hypervisor keeps back may take an exit to arrive.
        gic::wait_until(DELIVERY_MS, || gic::icc_hppir1() != INTID_SPURIOUS);
        let intid = gic::icc_iar1();
        *slot = intid;
        if intid == INTID_SPURIOUS {
            break;
        }
        gic::icc_eoir1(intid);
    }
    gic::wait_until(QUIET_MS, || false);
    let extra = gic::icc_iar1();
    if extra != INTID_SPURIOUS {
        gic::icc_eoir1(extra);
    }
    let want_ids: [u32; 8] = core::array::from_fn(|i| want[i].0);
    check!(
        "lrs: 8 SGIs pending at once (more than the list registers) are each acknowledged once, in priority order",
        got == want_ids && extra == INTID_SPURIOUS,
        "acknowledged {got:?} then {extra}, expected {want_ids:?} then 1023"
    );
    drain();
    for (intid, _) in SET {
        set_sgi_priority(sgi, intid, DEFAULT_PRIORITY);
    }
}

/// What keeps a pending interrupt from being signalled, and what clears it.
fn gating() {
    let sgi = own_sgi_base();
    let me = gic::mpidr();

    // Disabled: pending is recorded but not forwarded (IHI 0069, GICR_ISENABLER0).
    gic::write32(sgi + GICR_ICENABLER0, bit(14));
    gic::icc_sgi1r(gic::sgi1r_to(14, me));
    let pend_seen = gic::wait_until(DELIVERY_MS, || {
        gic::read32(sgi + GICR_ISPENDR0) & bit(14) != 0
    });
    let en = gic::read32(sgi + GICR_ISENABLER0);
    gic::unmask_irqs();
    gic::wait_until(QUIET_MS, || false);
    let while_disabled = irq::taken(0, 14);
    gic::write32(sgi + GICR_ISENABLER0, bit(14));
    let delivered = gic::wait_until(DELIVERY_MS, || irq::taken(0, 14) > 0);
    gic::mask_irqs();
    check!(
        "gating: SGI 14 disabled with GICR_ICENABLER0 stays pending (GICR_ISPENDR0) untaken; GICR_ISENABLER0 delivers it",
        pend_seen
            && en & bit(14) == 0
            && while_disabled == 0
            && delivered
            && irq::taken(0, 14) == 1,
        "pending seen {pend_seen}, GICR_ISENABLER0 = {en:#x}, taken while disabled {while_disabled}, after enabling {}",
        irq::taken(0, 14)
    );
    drain();

    // Pending cleared by GICR_ICPENDR0 before it is acknowledged: gone for good.
    gic::set_icc_pmr(0x00);
    gic::icc_sgi1r(gic::sgi1r_to(15, me));
    let seen = gic::wait_until(DELIVERY_MS, || gic::icc_hppir1() == 15);
    gic::write32(sgi + GICR_ICPENDR0, bit(15));
    let pend = gic::read32(sgi + GICR_ISPENDR0) & bit(15);
    let hppir = gic::icc_hppir1();
    gic::set_icc_pmr(0xff);
    gic::unmask_irqs();
    gic::wait_until(QUIET_MS, || false);
    gic::mask_irqs();
    check!(
        "gating: GICR_ICPENDR0 clears a pending SGI 15 before acknowledge (HPPIR1 1023, never taken)",
        seen && pend == 0 && hppir == INTID_SPURIOUS && irq::taken(0, 15) == 0,
        "was pending {seen}, GICR_ISPENDR0 bit {pend:#x}, HPPIR1 {hppir}, taken {}",
        irq::taken(0, 15)
    );
    drain();

    // Group 1 disabled at the CPU interface: nothing is signalled or acknowledged
    // (IHI 0069, ICC_IGRPEN1_EL1), the interrupt stays pending.
    gic::set_icc_igrpen1(0);
    gic::icc_sgi1r(gic::sgi1r_to(13, me));
    gic::wait_until(DELIVERY_MS, || {
        gic::read32(sgi + GICR_ISPENDR0) & bit(13) != 0
    });
    gic::wait_until(QUIET_MS, || false);
    let isr = gic::isr_irq_pending();
    let iar = gic::icc_iar1();
    if iar != INTID_SPURIOUS {
        gic::icc_eoir1(iar);
    }
    gic::set_icc_igrpen1(1);
    let after = gic::wait_until(DELIVERY_MS, || gic::icc_hppir1() == 13);
    let iar2 = gic::icc_iar1();
    if iar2 != INTID_SPURIOUS {
        gic::icc_eoir1(iar2);
    }
    check!(
        "gating: with ICC_IGRPEN1_EL1 = 0 a pending SGI 13 is not signalled (ISR_EL1.I 0, IAR1 1023); re-enabled it is acknowledged",
        !isr && iar == INTID_SPURIOUS && after && iar2 == 13,
        "ISR_EL1.I {isr}, IAR1 {iar} while disabled; after enabling HPPIR1 showed 13: {after}, IAR1 {iar2}"
    );
    drain();
}

fn eoimode() {
    let sgi = own_sgi_base();
    let me = gic::mpidr();

    let ctlr = gic::icc_ctlr();
    gic::set_icc_ctlr(ctlr | gic::ICC_CTLR_EOIMODE);
    let split = gic::icc_ctlr();
    check!(
        "eoimode: ICC_CTLR_EL1.EOImode reads 1 after setting it",
        split & gic::ICC_CTLR_EOIMODE != 0,
        "ICC_CTLR_EL1 = {split:#x}"
    );

    // EOImode = 1: EOIR is priority drop only; DIR deactivates (IHI 0069,
    // ICC_CTLR_EL1.EOImode, ICC_DIR_EL1).
    gic::icc_sgi1r(gic::sgi1r_to(11, me));
    gic::wait_until(DELIVERY_MS, || gic::icc_hppir1() == 11);
    let iar = gic::icc_iar1();
    gic::icc_eoir1(iar);
    let rpr = gic::icc_rpr();
    let act = gic::read32(sgi + GICR_ISACTIVER0);
    check!(
        "eoimode 1: after ICC_EOIR1_EL1, SGI 11 has dropped priority (RPR idle) but stays active (GICR_ISACTIVER0)",
        iar == 11 && rpr == 0xff && act & bit(11) != 0,
        "IAR1 = {iar}, RPR = {rpr:#x}, GICR_ISACTIVER0 = {act:#x}"
    );

    // Active and pending is not acknowledged again until deactivated.
    gic::icc_sgi1r(gic::sgi1r_to(11, me));
    gic::wait_until(DELIVERY_MS, || {
        gic::read32(sgi + GICR_ISPENDR0) & bit(11) != 0
    });
    let again = gic::icc_iar1();
    if again != INTID_SPURIOUS {
        gic::icc_eoir1(again);
        gic::icc_dir(again);
    }
    gic::icc_dir(11);
    let act_after_dir = gic::read32(sgi + GICR_ISACTIVER0);
    let pend_after_dir = gic::read32(sgi + GICR_ISPENDR0);
    check!(
        "eoimode 1: SGI 11 sent again while active is not acknowledged; ICC_DIR_EL1 deactivates it, leaving it pending",
        again == INTID_SPURIOUS && act_after_dir & bit(11) == 0 && pend_after_dir & bit(11) != 0,
        "IAR1 while active = {again}, after DIR: GICR_ISACTIVER0 = {act_after_dir:#x}, GICR_ISPENDR0 = {pend_after_dir:#x}"
    );

    let iar = gic::icc_iar1();
    gic::icc_eoir1(iar);
    let act_before = gic::read32(sgi + GICR_ISACTIVER0);
    gic::icc_dir(iar);
    let act_after = gic::read32(sgi + GICR_ISACTIVER0);
    check!(
        "eoimode 1: the second SGI 11 is acknowledged, stays active after EOIR and is deactivated by ICC_DIR_EL1",
        iar == 11 && act_before & bit(11) != 0 && act_after & bit(11) == 0,
        "IAR1 = {iar}, GICR_ISACTIVER0 after EOIR {act_before:#x}, after DIR {act_after:#x}"
    );
    drain();

    // EOImode = 0: EOIR deactivates as well.
    gic::set_icc_ctlr(gic::icc_ctlr() & !gic::ICC_CTLR_EOIMODE);
    let joined = gic::icc_ctlr();
    gic::icc_sgi1r(gic::sgi1r_to(12, me));
    gic::wait_until(DELIVERY_MS, || gic::icc_hppir1() == 12);
    let iar = gic::icc_iar1();
    gic::icc_eoir1(iar);
    let act = gic::read32(sgi + GICR_ISACTIVER0);
    check!(
        "eoimode 0: ICC_CTLR_EL1.EOImode reads 0 again and ICC_EOIR1_EL1 alone deactivates SGI 12",
        joined & gic::ICC_CTLR_EOIMODE == 0 && iar == 12 && act & bit(12) == 0,
        "ICC_CTLR_EL1 = {joined:#x}, IAR1 = {iar}, GICR_ISACTIVER0 = {act:#x}"
    );
    drain();
}

/// Programs the virtual timer `TIMER_DELAY_MS` ahead; returns the deadline.
fn arm_timer() -> u64 {
    let deadline = gic::cntvct() + gic::ms_to_ticks(TIMER_DELAY_MS);
    gic::set_cntv_cval(deadline);
    gic::set_cntv_ctl(gic::CNTV_CTL_ENABLE);
    deadline
}

fn timer() {
    let sgi = own_sgi_base();
    set_sgi_priority(sgi, INTID_VTIMER, DEFAULT_PRIORITY);
    gic::write32(sgi + GICR_ISENABLER0, bit(INTID_VTIMER));

    let before = irq::total(0);
    let deadline = arm_timer();
    gic::unmask_irqs();
    gic::wait_until(TIMER_SLACK_MS + DELIVERY_MS, || {
        irq::taken(0, INTID_VTIMER) > 0
    });
    gic::mask_irqs();
    let n = irq::taken(0, INTID_VTIMER);
    let at = irq::timer_at(0);
    let others = irq::total(0) - before - n;
    check!(
        "timer: CNTV_CVAL_EL0 = now + 10 ms with CNTV_CTL_EL0.ENABLE: PPI 27 is taken once, INTID 27",
        n == 1 && irq::last(0) == INTID_VTIMER && others == 0,
        "INTID 27 taken {n} times, last INTID {}, {others} other interrupts",
        irq::last(0)
    );
    let late = at.wrapping_sub(deadline);
    if n > 0 {
        println!(
            "info: timer interrupt {} us after its deadline",
            gic::ticks_to_us(late)
        );
    }
    check!(
        "timer: taken at or after the deadline (CNTVCT_EL0 >= CNTV_CVAL_EL0 in the handler)",
        n > 0 && at >= deadline,
        "handler at {at:#x}, deadline {deadline:#x}"
    );
    check!(
        "timer: taken within 500 ms of the deadline",
        n > 0 && at >= deadline && late <= gic::ms_to_ticks(TIMER_SLACK_MS),
        "{} us late",
        gic::ticks_to_us(late)
    );

    // Masked by the handler (CNTV_CTL_EL0.IMASK) the condition still holds but no
    // interrupt is signalled any more.
    gic::unmask_irqs();
    gic::wait_until(QUIET_MS, || false);
    gic::mask_irqs();
    let ctl = gic::cntv_ctl();
    let n2 = irq::taken(0, INTID_VTIMER);
    check!(
        "timer: masked in the handler (CNTV_CTL_EL0.IMASK) it is not taken again; ISTATUS stays 1",
        n2 == 1 && ctl & gic::CNTV_CTL_ISTATUS != 0 && ctl & gic::CNTV_CTL_IMASK != 0,
        "taken {n2} times, CNTV_CTL_EL0 = {ctl:#x}"
    );

    // Re-armed, the timer interrupt fires again: its previous instance was
    // deactivated (for a hardware-linked virtual interrupt, the physical one too).
    arm_timer();
    gic::unmask_irqs();
    let again = gic::wait_until(TIMER_SLACK_MS + DELIVERY_MS, || {
        irq::taken(0, INTID_VTIMER) > n2
    });
    gic::mask_irqs();
    check!(
        "timer: re-armed after its EOI, PPI 27 fires again",
        again,
        "taken {} times in all",
        irq::taken(0, INTID_VTIMER)
    );

    // EOImode = 1 with the hardware-linked timer: EOIR only drops priority, the
    // interrupt (virtual and physical) stays active until ICC_DIR_EL1, after
    // which the timer can fire again.
    gic::set_icc_ctlr(gic::icc_ctlr() | gic::ICC_CTLR_EOIMODE);
    irq::set_defer_dir(true);
    let before = irq::taken(0, INTID_VTIMER);
    arm_timer();
    gic::unmask_irqs();
    let took = gic::wait_until(TIMER_SLACK_MS + DELIVERY_MS, || {
        irq::taken(0, INTID_VTIMER) > before
    });
    gic::mask_irqs();
    let act = gic::read32(sgi + GICR_ISACTIVER0) & bit(INTID_VTIMER);
    let rpr = gic::icc_rpr();
    gic::icc_dir(INTID_VTIMER);
    let act_after = gic::read32(sgi + GICR_ISACTIVER0) & bit(INTID_VTIMER);
    irq::set_defer_dir(false);
    gic::set_icc_ctlr(gic::icc_ctlr() & !gic::ICC_CTLR_EOIMODE);
    arm_timer();
    gic::unmask_irqs();
    let fired_again = gic::wait_until(TIMER_SLACK_MS + DELIVERY_MS, || {
        irq::taken(0, INTID_VTIMER) > before + 1
    });
    gic::mask_irqs();
    check!(
        "timer: with EOImode 1, PPI 27 stays active after EOIR (RPR idle) until ICC_DIR_EL1, then fires again when re-armed",
        took && act != 0 && rpr == 0xff && act_after == 0 && fired_again,
        "taken {took}, active after EOIR {act:#x}, RPR {rpr:#x}, active after DIR {act_after:#x}, fired again {fired_again}"
    );

    // The timer's line is level: masking it (CNTV_CTL_EL0.IMASK) before the
    // interrupt is acknowledged withdraws the pending state; unmasking it with the
    // condition still met asserts it again (Arm ARM D12.2.4, the timer's
    // interrupt output; IHI 0069, level-sensitive interrupts). The GICR_ISPENDR0
    // read also gives a hypervisor the exit it needs to notice.
    arm_timer();
    let pending_seen = gic::wait_until(TIMER_SLACK_MS + DELIVERY_MS, || {
        gic::icc_hppir1() == INTID_VTIMER
    });
    gic::set_cntv_ctl(gic::CNTV_CTL_ENABLE | gic::CNTV_CTL_IMASK);
    let pend = gic::read32(sgi + GICR_ISPENDR0) & bit(INTID_VTIMER);
    let gone = gic::wait_until(DELIVERY_MS, || gic::icc_hppir1() == INTID_SPURIOUS);
    check!(
        "timer: pending PPI 27 masked with CNTV_CTL_EL0.IMASK before acknowledge is no longer pending (GICR_ISPENDR0, HPPIR1)",
        pending_seen && pend == 0 && gone,
        "pending seen {pending_seen}, GICR_ISPENDR0 bit 27 after masking {pend:#x}, HPPIR1 back to 1023: {gone}"
    );
    gic::set_cntv_ctl(gic::CNTV_CTL_ENABLE);
    let back = gic::wait_until(DELIVERY_MS, || gic::icc_hppir1() == INTID_VTIMER);
    let iar = gic::icc_iar1();
    gic::set_cntv_ctl(gic::CNTV_CTL_ENABLE | gic::CNTV_CTL_IMASK);
    if iar != INTID_SPURIOUS {
        gic::icc_eoir1(iar);
    }
    check!(
        "timer: unmasked again with its condition still met, PPI 27 is pending again and acknowledged",
        back && iar == INTID_VTIMER,
        "HPPIR1 showed 27 again: {back}, IAR1 {iar}"
    );
    gic::set_cntv_ctl(0);
    drain();

    // And it wakes the vCPU from WFI (only tried if it fires at all: else WFI
    // would wait for ever).
    if again {
        let count = irq::taken(0, INTID_VTIMER);
        arm_timer();
        let start = gic::cntvct();
        let limit = gic::ms_to_ticks(TIMER_SLACK_MS + DELIVERY_MS);
        while irq::taken(0, INTID_VTIMER) == count && gic::cntvct() - start < limit {
            gic::wfi();
            gic::unmask_irqs();
            gic::mask_irqs();
        }
        check!(
            "timer: PPI 27 wakes the vCPU from WFI (IRQs masked) and is taken when unmasked",
            irq::taken(0, INTID_VTIMER) == count + 1,
            "taken {} times after WFI (expected {})",
            irq::taken(0, INTID_VTIMER),
            count + 1
        );
    } else {
        check!(
            "timer: PPI 27 wakes the vCPU from WFI (IRQs masked) and is taken when unmasked",
            false,
            "not tried: the timer did not fire a second time"
        );
    }
    gic::set_cntv_ctl(0);
    gic::write32(sgi + GICR_ICENABLER0, bit(INTID_VTIMER));
    drain();
}

/// The distributor registers for `intid` (an SPI): word and bit.
fn spi_reg(base: usize, intid: u32) -> usize {
    GICD_BASE + base + 4 * (intid as usize / 32)
}

fn spi_setup(target_mpidr: u64) {
    gic::write8(
        GICD_BASE + GICD_IPRIORITYR + TEST_SPI as usize,
        DEFAULT_PRIORITY,
    );
    gic::write64(
        GICD_BASE + GICD_IROUTER + 8 * TEST_SPI as usize,
        gic::mpidr_affinity(target_mpidr),
    );
    gic::write32(spi_reg(GICD_ISENABLER, TEST_SPI), bit(TEST_SPI));
}

fn spi_routed_to_self() {
    let me = gic::mpidr();
    spi_setup(me);
    let route = gic::read64(GICD_BASE + GICD_IROUTER + 8 * TEST_SPI as usize);
    let enabled = gic::read32(spi_reg(GICD_ISENABLER, TEST_SPI)) & bit(TEST_SPI) != 0;
    gic::write32(spi_reg(GICD_ISPENDR, TEST_SPI), bit(TEST_SPI));
    gic::unmask_irqs();
    gic::wait_until(DELIVERY_MS, || irq::taken(0, TEST_SPI) > 0);
    gic::wait_until(QUIET_MS, || false);
    gic::mask_irqs();
    let n = irq::taken(0, TEST_SPI);
    let pend = gic::read32(spi_reg(GICD_ISPENDR, TEST_SPI)) & bit(TEST_SPI);
    let act = gic::read32(spi_reg(GICD_ISACTIVER, TEST_SPI)) & bit(TEST_SPI);
    check!(
        "spi: SPI 90 made pending with GICD_ISPENDR2 and routed to vCPU 0 (GICD_IROUTER90) is taken there once, then inactive",
        route == gic::mpidr_affinity(me) && enabled && n == 1 && pend == 0 && act == 0,
        "GICD_IROUTER90 = {route:#x}, enabled {enabled}, taken {n} times, pending {pend:#x}, active {act:#x}"
    );
    gic::write32(spi_reg(GICD_ICPENDR, TEST_SPI), bit(TEST_SPI));
}

/// QEMU `virt`'s PL011 (the console) and its interrupt, SPI 1 = INTID 33.
const UART_BASE: usize = 0x0900_0000;
const UART_INTID: u32 = 33;
/// UARTIMSC (PL011 TRM 3.3.10) and its TXIM bit [5]: the transmit interrupt,
/// raised while the transmit FIFO is empty (level-sensitive output UARTINTR).
const UARTIMSC: usize = 0x038;
const UARTIMSC_TXIM: u32 = 1 << 5;

/// The console UART's level-sensitive SPI follows the device's line: pending
/// while asserted; still asserted at deactivation, it is pending again; no longer
/// asserted, it is not (IHI 0069, "Level-sensitive interrupts").
fn level_spi() {
    let me = gic::mpidr();
    gic::write8(
        GICD_BASE + GICD_IPRIORITYR + UART_INTID as usize,
        DEFAULT_PRIORITY,
    );
    gic::write64(
        GICD_BASE + GICD_IROUTER + 8 * UART_INTID as usize,
        gic::mpidr_affinity(me),
    );
    gic::write32(spi_reg(GICD_ISENABLER, UART_INTID), bit(UART_INTID));

    // Assert: unmask the transmit interrupt (the transmit FIFO is empty).
    gic::write32(UART_BASE + UARTIMSC, UARTIMSC_TXIM);
    let seen = gic::wait_until(DELIVERY_MS, || gic::icc_hppir1() == UART_INTID);
    let pend = gic::read32(spi_reg(GICD_ISPENDR, UART_INTID)) & bit(UART_INTID);
    let first = gic::icc_iar1();

    // Deactivate with the line still asserted: pending again.
    if first != INTID_SPURIOUS {
        gic::icc_eoir1(first);
    }
    let again = gic::wait_until(DELIVERY_MS, || gic::icc_hppir1() == UART_INTID);
    let second = gic::icc_iar1();

    // Deassert while active, then deactivate: not pending any more.
    gic::write32(UART_BASE + UARTIMSC, 0);
    if second != INTID_SPURIOUS {
        gic::icc_eoir1(second);
    }
    let pending_after = gic::wait_until(QUIET_MS, || gic::icc_hppir1() == UART_INTID);
    let pend_after = gic::read32(spi_reg(GICD_ISPENDR, UART_INTID)) & bit(UART_INTID);
    let third = gic::icc_iar1();
    if third != INTID_SPURIOUS {
        gic::icc_eoir1(third);
    }
    gic::write32(spi_reg(GICD_ICENABLER, UART_INTID), bit(UART_INTID));

    check!(
        "level: PL011 SPI 33 asserted (UARTIMSC.TXIM) is pending (GICD_ISPENDR1) and acknowledged",
        seen && pend != 0 && first == UART_INTID,
        "HPPIR1 showed 33: {seen}, GICD_ISPENDR1 bit {pend:#x}, IAR1 {first}"
    );
    check!(
        "level: SPI 33 deactivated while its line is still asserted is pending again",
        again && second == UART_INTID,
        "HPPIR1 showed 33 again: {again}, IAR1 {second}"
    );
    check!(
        "level: SPI 33 deasserted (UARTIMSC = 0) before deactivation is not pending again",
        !pending_after && pend_after == 0 && third == INTID_SPURIOUS,
        "HPPIR1 showed 33: {pending_after}, GICD_ISPENDR1 bit {pend_after:#x}, IAR1 {third}"
    );
    drain();
}

fn smp(frame0: usize) {
    // CPU_ON's return value: 0 on success, else its (negative) error code.
    let ret = secondary::start(VCPU1_AFFINITY).err().unwrap_or(0);
    let up = ret == 0
        && gic::wait_until(SECONDARY_TIMEOUT_MS, || {
            secondary::STATE.load(Ordering::SeqCst) == secondary::STATE_READY
        });
    let frame1 = secondary::FRAME.load(Ordering::SeqCst);
    let woken = secondary::WOKEN.load(Ordering::SeqCst) == 1;
    let mpidr1 = secondary::MPIDR.load(Ordering::SeqCst);
    check!(
        "smp: vCPU 1 starts (PSCI CPU_ON), finds its redistributor frame by affinity and wakes it",
        up && frame1 == 1 && frame0 == 0 && woken,
        "CPU_ON returned {ret:#x}, ready {up}, vCPU 1 frame {frame1:#x}, vCPU 0 frame {frame0}, woken {woken}"
    );

    let t1 = gic::read64(gic::rd_base(NR_VCPUS - 1) + GICR_TYPER);
    check!(
        "id: GICR_TYPER of frame 1: Affinity_Value is vCPU 1's MPIDR, Last = 1",
        up && gic::gicr_typer_affinity(t1) == gic::mpidr_to_typer_affinity(mpidr1)
            && t1 & GICR_TYPER_LAST != 0,
        "GICR_TYPER = {t1:#x}, vCPU 1's MPIDR_EL1 = {mpidr1:#x}"
    );
    if !up {
        for name in [
            "smp: SGI 5 to vCPU 1's MPIDR is taken by vCPU 1 (waiting in WFI), not by vCPU 0",
            "smp: SGI 6 with ICC_SGI1R_EL1.IRM = 1 reaches vCPU 1 and not the sender",
            "smp: one ICC_SGI1R_EL1 write with TargetList {0, 1} delivers SGI 3 to both vCPUs once",
            "smp: an SGI whose TargetList names no vCPU (Aff0 5) is taken by no vCPU",
            "smp: SGI 1 to vCPU 1 while it runs (spinning with IRQs unmasked, no WFI) is taken during the spin",
            "smp: vCPU 1's virtual timer (its PPI 27) fires on vCPU 1, at or after its deadline and within 500 ms",
            "smp: SGI 7 sent by vCPU 1 to vCPU 0's MPIDR is taken by vCPU 0",
            "smp: GICR_ISPENDR0 of vCPU 1's frame, written by vCPU 0, pends SGI 13 on vCPU 1 only",
            "smp: SPI 90 routed to vCPU 1 (GICD_IROUTER90) is taken by vCPU 1, not vCPU 0",
        ] {
            check!(name, false, "vCPU 1 did not come up");
        }
        return;
    }

    gic::unmask_irqs();

    // An SGI to the other vCPU, which is idle in WFI (under a hypervisor: a
    // trapped SGI1R write, a kick to the other physical CPU).
    let t = gic::cntvct();
    gic::icc_sgi1r(gic::sgi1r_to(5, mpidr1));
    let got = gic::wait_until(DELIVERY_MS, || irq::taken(1, 5) > 0);
    let latency = gic::cntvct() - t;
    gic::wait_until(QUIET_MS, || false);
    if got {
        println!(
            "info: SGI 5 seen taken by vCPU 1 within {} us",
            gic::ticks_to_us(latency)
        );
    }
    check!(
        "smp: SGI 5 to vCPU 1's MPIDR is taken by vCPU 1 (waiting in WFI), not by vCPU 0",
        irq::taken(1, 5) == 1 && irq::taken(0, 5) == 0,
        "vCPU 1 took it {} times, vCPU 0 {} times",
        irq::taken(1, 5),
        irq::taken(0, 5)
    );

    // IRM = 1: every PE but the sender.
    gic::icc_sgi1r(gic::sgi1r_all_but_self(6));
    gic::wait_until(DELIVERY_MS, || irq::taken(1, 6) > 0);
    gic::wait_until(QUIET_MS, || false);
    let own_pend = gic::read32(own_sgi_base() + GICR_ISPENDR0) & bit(6);
    check!(
        "smp: SGI 6 with ICC_SGI1R_EL1.IRM = 1 reaches vCPU 1 and not the sender",
        irq::taken(1, 6) == 1 && irq::taken(0, 6) == 0 && own_pend == 0,
        "vCPU 1 took it {} times, vCPU 0 {} times, vCPU 0 pending {own_pend:#x}",
        irq::taken(1, 6),
        irq::taken(0, 6)
    );

    // One write, two targets: TargetList names Aff0 0 and 1.
    let before = (irq::taken(0, 3), irq::taken(1, 3));
    let both = gic::sgi1r_to(3, gic::mpidr()) | gic::sgi1r_to(3, mpidr1);
    gic::icc_sgi1r(both);
    gic::wait_until(DELIVERY_MS, || {
        irq::taken(0, 3) > before.0 && irq::taken(1, 3) > before.1
    });
    gic::wait_until(QUIET_MS, || false);
    let got = (irq::taken(0, 3) - before.0, irq::taken(1, 3) - before.1);
    check!(
        "smp: one ICC_SGI1R_EL1 write with TargetList {0, 1} delivers SGI 3 to both vCPUs once",
        got == (1, 1),
        "ICC_SGI1R_EL1 = {both:#x}: vCPU 0 took it {} times, vCPU 1 {} times",
        got.0,
        got.1
    );

    // A TargetList naming no vCPU (Aff0 5) reaches nobody (IHI 0069,
    // ICC_SGI1R_EL1: only PEs that exist are targets).
    let totals = (irq::total(0), irq::total(1));
    let nobody = gic::sgi1r_to(4, 5);
    gic::icc_sgi1r(nobody);
    gic::wait_until(QUIET_MS, || false);
    check!(
        "smp: an SGI whose TargetList names no vCPU (Aff0 5) is taken by no vCPU",
        (irq::total(0), irq::total(1)) == totals,
        "interrupts taken before {totals:?}, after ({}, {})",
        irq::total(0),
        irq::total(1)
    );

    // An SGI to a vCPU that is running (spinning, not in WFI): the hypervisor
    // has to interrupt it to load the SGI.
    let done = secondary::COMMANDS_DONE.load(Ordering::SeqCst);
    secondary::command(secondary::CMD_SPIN, DELIVERY_MS, mpidr1);
    let spinning = gic::wait_until(DELIVERY_MS, || {
        secondary::SPINNING.load(Ordering::SeqCst) == 1
    });
    gic::wait_until(5, || false);
    gic::icc_sgi1r(gic::sgi1r_to(secondary::SPIN_SGI, mpidr1));
    let finished = gic::wait_until(2 * DELIVERY_MS, || {
        secondary::COMMANDS_DONE.load(Ordering::SeqCst) > done
    });
    let result = secondary::RESULT.load(Ordering::SeqCst);
    check!(
        "smp: SGI 1 to vCPU 1 while it runs (spinning with IRQs unmasked, no WFI) is taken during the spin",
        spinning && finished && result == 1 && irq::taken(1, secondary::SPIN_SGI) == 1,
        "spinning {spinning}, finished {finished}, result {result} (1 = taken), taken {} times",
        irq::taken(1, secondary::SPIN_SGI)
    );

    // vCPU 1's own virtual timer (each vCPU's PPI 27 is its own).
    let done = secondary::COMMANDS_DONE.load(Ordering::SeqCst);
    let timer0 = irq::taken(0, INTID_VTIMER);
    secondary::command(secondary::CMD_TIMER, TIMER_DELAY_MS, mpidr1);
    let finished = gic::wait_until(TIMER_DELAY_MS + 3 * DELIVERY_MS, || {
        secondary::COMMANDS_DONE.load(Ordering::SeqCst) > done
    });
    let late = secondary::RESULT.load(Ordering::SeqCst);
    if finished && late < u64::MAX - 1 {
        println!(
            "info: vCPU 1's timer interrupt {} us after its deadline",
            gic::ticks_to_us(late)
        );
    }
    check!(
        "smp: vCPU 1's virtual timer (its PPI 27) fires on vCPU 1, at or after its deadline and within 500 ms",
        finished
            && late <= gic::ms_to_ticks(TIMER_SLACK_MS)
            && irq::taken(1, INTID_VTIMER) == 1
            && irq::taken(0, INTID_VTIMER) == timer0,
        "finished {finished}, lateness {late:#x} ticks (u64::MAX: never, u64::MAX - 1: early), vCPU 1 took 27 {} times, vCPU 0 {} more times",
        irq::taken(1, INTID_VTIMER),
        irq::taken(0, INTID_VTIMER) - timer0
    );

    // The other way: vCPU 1 sends SGI 7 to vCPU 0.
    let done = secondary::COMMANDS_DONE.load(Ordering::SeqCst);
    secondary::command(
        secondary::CMD_SEND_SGI,
        gic::sgi1r_to(7, gic::mpidr()),
        mpidr1,
    );
    let ran = gic::wait_until(DELIVERY_MS, || {
        secondary::COMMANDS_DONE.load(Ordering::SeqCst) > done
    });
    gic::wait_until(DELIVERY_MS, || irq::taken(0, 7) > 0);
    gic::wait_until(QUIET_MS, || false);
    check!(
        "smp: SGI 7 sent by vCPU 1 to vCPU 0's MPIDR is taken by vCPU 0",
        ran && irq::taken(0, 7) == 1 && irq::taken(1, 7) == 0,
        "vCPU 1 ran the command: {ran}; vCPU 0 took it {} times, vCPU 1 {} times",
        irq::taken(0, 7),
        irq::taken(1, 7)
    );

    // Another vCPU's redistributor is reachable: vCPU 0 pends SGI 13 on vCPU 1
    // through GICR_ISPENDR0 of vCPU 1's SGI_base frame.
    gic::write32(gic::sgi_base(1) + GICR_ISPENDR0, bit(13));
    gic::wait_until(DELIVERY_MS, || irq::taken(1, 13) > 0);
    gic::wait_until(QUIET_MS, || false);
    check!(
        "smp: GICR_ISPENDR0 of vCPU 1's frame, written by vCPU 0, pends SGI 13 on vCPU 1 only",
        irq::taken(1, 13) == 1 && irq::taken(0, 13) == 0,
        "vCPU 1 took it {} times, vCPU 0 {} times",
        irq::taken(1, 13),
        irq::taken(0, 13)
    );

    // An SPI routed to vCPU 1.
    let before0 = irq::taken(0, TEST_SPI);
    spi_setup(mpidr1);
    gic::write32(spi_reg(GICD_ISPENDR, TEST_SPI), bit(TEST_SPI));
    gic::wait_until(DELIVERY_MS, || irq::taken(1, TEST_SPI) > 0);
    gic::wait_until(QUIET_MS, || false);
    check!(
        "smp: SPI 90 routed to vCPU 1 (GICD_IROUTER90) is taken by vCPU 1, not vCPU 0",
        irq::taken(1, TEST_SPI) == 1 && irq::taken(0, TEST_SPI) == before0,
        "vCPU 1 took it {} times, vCPU 0 {} more times",
        irq::taken(1, TEST_SPI),
        irq::taken(0, TEST_SPI) - before0
    );
    gic::write32(spi_reg(GICD_ICENABLER, TEST_SPI), bit(TEST_SPI));

    gic::mask_irqs();
    secondary::command(secondary::CMD_OFF, 0, mpidr1);
    gic::wait_until(DELIVERY_MS, || {
        secondary::STATE.load(Ordering::SeqCst) == secondary::STATE_OFF
    });
    let spurious = (
        irq::spurious(0),
        irq::spurious(1),
        irq::other(0),
        irq::other(1),
    );
    println!(
        "info: spurious acknowledges in handlers: vCPU 0 {}, vCPU 1 {}; unexpected INTIDs: {}, {}",
        spurious.0, spurious.1, spurious.2, spurious.3
    );
}
