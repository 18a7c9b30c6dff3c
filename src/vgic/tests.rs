use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use super::host::{self, Completion, PassthroughSpi, PhysIrq};
use super::lr::{self, LrState};
use super::sgi::{self, SgiRegister};
use super::*;
use crate::devices::MmioBus;

const SGI_BASE: u64 = 0x1_0000;
const STRIDE: u64 = 0x2_0000;

fn vgic(n: usize) -> Vgic {
    Vgic::new(VgicConfig::new(n, 64)).unwrap()
}

/// A vGIC as a guest leaves it after its GIC driver ran: Group 1 enabled.
fn enabled(n: usize) -> Vgic {
    let mut v = vgic(n);
    v.gicd_write(0x0, 4, 0b10);
    v
}

fn enable_spi(v: &mut Vgic, intid: u32) {
    v.gicd_write(0x100 + 4 * (intid as u64 / 32), 4, 1 << (intid % 32));
}

fn enable_private(v: &mut Vgic, vcpu: usize, intid: u32) {
    v.gicr_write(STRIDE * vcpu as u64 + SGI_BASE + 0x100, 4, 1 << intid);
}

fn lr_of(e: &EntryState) -> Vec<LrState> {
    e.lrs.iter().map(|&v| lr::decode(v)).collect()
}

/// What the guest's CPU interface does to an LR: acknowledge (pending -> active)
/// and deactivate (active -> invalid; for HW = 1 that also deactivates pINTID).
fn ack(value: u64) -> u64 {
    let mut s = lr::decode(value);
    assert!(s.pending, "acknowledging a pending LR");
    s.pending = false;
    s.active = true;
    lr::encode(&s)
}
fn deactivate(value: u64) -> u64 {
    let mut s = lr::decode(value);
    s.active = false;
    lr::encode(&s)
}

#[test]
fn config_is_validated() {
    assert!(Vgic::new(VgicConfig::new(0, 64)).is_err());
    assert_eq!(
        Vgic::new(VgicConfig::new(1, 40)).err(),
        Some(VgicError::BadSpiCount(40))
    );
    assert!(
        Vgic::new(VgicConfig::new(1, 992)).is_err(),
        "INTID 1023 is not an SPI"
    );
    assert!(Vgic::new(VgicConfig::new(1, 960)).is_ok());
    let mut c = VgicConfig::new(1, 32);
    c.nr_lrs = 17;
    assert_eq!(Vgic::new(c).err(), Some(VgicError::BadLrCount(17)));
}

#[test]
fn gicd_typer_reports_spis_and_no_lpis() {
    let t = vgic(2).gicd_read(0x4, 4);
    assert_eq!(t & 0x1f, 2, "64 SPIs: INTIDs 0-95, ITLinesNumber 2");
    assert_eq!(t & (1 << 17), 0, "LPIS");
    assert_eq!(t & (1 << 16), 0, "MBIS");
    assert_eq!((t >> 19) & 0x1f, 9, "IDbits: 10 bits of INTID");
    assert_ne!(t & (1 << 25), 0, "No1N");
    assert_eq!(t & (1 << 10), 0, "SecurityExtn: one Security state");
    let t96 = Vgic::new(VgicConfig::new(1, 96)).unwrap().gicd_read(0x4, 4);
    assert_eq!(t96 & 0x1f, 3);
}

#[test]
fn gicd_ctlr_are_and_ds_are_rao_wi() {
    let mut v = vgic(1);
    assert_eq!(v.gicd_read(0, 4), (1 << 4) | (1 << 6));
    v.gicd_write(0, 4, 0b11);
    assert_eq!(v.gicd_read(0, 4), (1 << 4) | (1 << 6) | 0b11);
    v.gicd_write(0, 4, 0);
    assert_eq!(
        v.gicd_read(0, 4),
        (1 << 4) | (1 << 6),
        "ARE and DS stay set"
    );
}

#[test]
fn identification_registers() {
    let v = vgic(3);
    assert_eq!(
        (v.gicd_read(0xFFE8, 4) >> 4) & 0xf,
        3,
        "GICD_PIDR2.ArchRev = GICv3"
    );
    for i in 0..3 {
        assert_eq!(
            (v.gicr_read(STRIDE * i + 0xFFE8, 4) >> 4) & 0xf,
            3,
            "GICR_PIDR2"
        );
        assert_eq!(
            v.gicr_read(STRIDE * i + 0x4, 4),
            v.gicd_read(0x8, 4),
            "IIDR"
        );
    }
    assert_eq!(v.gicd_read(0x8, 4) & 0xfff, 0x43B);
}

#[test]
fn gicr_typer_affinity_number_and_last() {
    let v = vgic(18);
    for i in 0..18u64 {
        let t = v.gicr_read(STRIDE * i + 0x8, 8);
        assert_eq!((t >> 8) & 0xffff, i, "Processor_Number");
        let mpidr = crate::vm::controls::vmpidr(i as usize);
        assert_eq!(
            t >> 32,
            ((mpidr >> 8) & 0xff) << 8 | (mpidr & 0xff),
            "Affinity_Value"
        );
        assert_eq!(t & (1 << 4) != 0, i == 17, "Last only on the final frame");
        assert_eq!(t & 0b11, 0, "PLPIS, VLPIS");
        // 32-bit halves give the same value.
        let lo = v.gicr_read(STRIDE * i + 0x8, 4);
        let hi = v.gicr_read(STRIDE * i + 0xC, 4);
        assert_eq!(hi << 32 | lo, t);
    }
    assert_eq!(
        vgic(18).gicr_typer(16) >> 32,
        0x100,
        "vCPU 16: Aff1 = 1, Aff0 = 0"
    );
    assert_eq!(v.gicr_read(STRIDE * 18 + 0x8, 8), 0, "past the last vCPU");
}

#[test]
fn gicr_waker_sleep_and_wake() {
    let mut v = vgic(2);
    assert_eq!(
        v.gicr_read(0x14, 4),
        0b110,
        "ProcessorSleep and ChildrenAsleep at reset"
    );
    v.gicr_write(0x14, 4, 0);
    assert_eq!(v.gicr_read(0x14, 4), 0, "awake: ChildrenAsleep clear");
    assert_eq!(v.gicr_read(STRIDE + 0x14, 4), 0b110, "vCPU 1's is its own");
}

#[test]
fn enable_registers_set_and_clear() {
    let mut v = vgic(2);
    v.gicd_write(0x104, 4, 0x8000_0003); // SPIs 32, 33, 63
    assert_eq!(v.gicd_read(0x104, 4), 0x8000_0003);
    assert_eq!(
        v.gicd_read(0x184, 4),
        0x8000_0003,
        "ICENABLER reads the same state"
    );
    v.gicd_write(0x184, 4, 0x1);
    assert_eq!(
        v.gicd_read(0x104, 4),
        0x8000_0002,
        "only the written 1 bits clear"
    );
    v.gicd_write(0x104, 4, 0);
    assert_eq!(v.gicd_read(0x104, 4), 0x8000_0002, "0 bits have no effect");
    // INTIDs 0-31 through the GICD are RAZ/WI with ARE = 1.
    v.gicd_write(0x100, 4, u32::MAX as u64);
    assert_eq!(v.gicd_read(0x100, 4), 0);
    assert_eq!(v.gicr_read(SGI_BASE + 0x100, 4), 0);
    // Private ones through each redistributor, banked.
    v.gicr_write(STRIDE + SGI_BASE + 0x100, 4, 1 << 27);
    assert_eq!(v.gicr_read(STRIDE + SGI_BASE + 0x100, 4), 1 << 27);
    assert_eq!(v.gicr_read(SGI_BASE + 0x100, 4), 0);
    // Beyond the implemented SPIs.
    assert_eq!(v.gicd_read(0x10C, 4), 0);
    assert_eq!(v.gicd_read(0x104, 2), 0, "halfword access: RAZ");
}

#[test]
fn igroupr_is_rao_for_implemented_interrupts() {
    let mut v = vgic(1);
    v.gicd_write(0x84, 4, 0);
    assert_eq!(v.gicd_read(0x84, 4), u32::MAX as u64);
    assert_eq!(v.gicd_read(0x80, 4), 0, "GICD_IGROUPR0: RAZ with ARE");
    assert_eq!(v.gicd_read(0x8C, 4), 0, "unimplemented SPIs");
    assert_eq!(v.gicr_read(SGI_BASE + 0x80, 4), u32::MAX as u64);
}

#[test]
fn priorities_bytes_words_and_mask() {
    let mut v = vgic(1);
    v.gicd_write(0x400 + 33, 1, 0xA7);
    assert_eq!(
        v.gicd_read(0x400 + 33, 1),
        0xA0,
        "5 priority bits: low 3 RAZ/WI"
    );
    v.gicd_write(0x400 + 32, 4, 0x1020_3040);
    assert_eq!(v.gicd_read(0x400 + 32, 4), 0x1020_3040);
    assert_eq!(v.gicd_read(0x400 + 35, 1), 0x10);
    v.gicd_write(0x400, 4, 0xffff_ffff);
    assert_eq!(v.gicd_read(0x400, 4), 0, "SGIs via GICD: RAZ/WI");
    v.gicr_write(SGI_BASE + 0x400 + 27, 1, 0x80);
    assert_eq!(v.gicr_read(SGI_BASE + 0x400 + 24, 4), 0x8000_0000);
}

#[test]
fn icfgr_sgis_edge_ppis_level_spis_writable() {
    let mut v = vgic(1);
    assert_eq!(v.gicr_read(SGI_BASE + 0xC00, 4), 0xAAAA_AAAA, "SGIs edge");
    assert_eq!(v.gicr_read(SGI_BASE + 0xC04, 4), 0, "PPIs level");
    v.gicr_write(SGI_BASE + 0xC04, 4, 0xAAAA_AAAA);
    assert_eq!(
        v.gicr_read(SGI_BASE + 0xC04, 4),
        0,
        "PPI trigger is read-only"
    );
    assert_eq!(v.gicd_read(0xC08, 4), 0, "SPIs reset level");
    v.gicd_write(0xC08, 4, 0b10 << 2 | 0b01);
    assert_eq!(
        v.gicd_read(0xC08, 4),
        0b10 << 2,
        "SPI 33 edge; Int_config[0] RES0"
    );
}

#[test]
fn irouter_halves_and_irm() {
    let mut v = vgic(2);
    let off = 0x6000 + 8 * 40;
    v.gicd_write(off, 8, 0xff_8000_0001 | (1 << 31));
    assert_eq!(
        v.gicd_read(off, 8),
        0xff_0000_0001,
        "IRM RAZ/WI, RES0 bits dropped"
    );
    v.gicd_write(off + 4, 4, 0);
    assert_eq!(v.gicd_read(off, 8), 0x1);
    assert_eq!(v.gicd_read(off, 4), 0x1);
    assert_eq!(
        v.gicd_read(0x6000 + 8 * 10, 8),
        0,
        "no IROUTER for INTIDs < 32"
    );
}

#[test]
fn spi_goes_to_the_routed_vcpu() {
    let mut v = enabled(2);
    enable_spi(&mut v, 33);
    v.gicd_write(0x6000 + 8 * 33, 8, 1); // vCPU 1
    v.set_level(None, 33, true).unwrap();
    assert_eq!(
        v.take_kicks(),
        vec![0, 1],
        "reset kicks everyone; then vCPU 1 for SPI 33"
    );
    assert!(v.flush_lrs(0).lrs.is_empty());
    let e = v.flush_lrs(1);
    assert_eq!(lr_of(&e)[0].vintid, 33);
    // Routed to an affinity no vCPU has: not forwarded.
    let mut v = enabled(2);
    enable_spi(&mut v, 33);
    v.gicd_write(0x6000 + 8 * 33, 8, 5);
    v.set_level(None, 33, true).unwrap();
    assert!(v.flush_lrs(0).lrs.is_empty() && v.flush_lrs(1).lrs.is_empty());
}

#[test]
fn nothing_forwarded_while_group1_disabled() {
    let mut v = vgic(1);
    enable_spi(&mut v, 40);
    v.gicd_write(0x200 + 4, 4, 1 << 8); // ISPENDR SPI 40
    assert!(v.flush_lrs(0).lrs.is_empty());
    v.gicd_write(0, 4, 0b10);
    assert_eq!(lr_of(&v.flush_lrs(0))[0].vintid, 40);
}

#[test]
fn lr_layout_matches_ich_lr() {
    // IHI 0069 ICH_LR<n>_EL2: State [63:62], HW [61], Group [60], Priority
    // [55:48], pINTID [44:32], vINTID [31:0]; EOI [41] when HW = 0.
    let s = LrState {
        vintid: 27,
        pending: true,
        active: false,
        hw: Some(27),
        eoi_maintenance: false,
        priority: 0xA0,
    };
    let v = lr::encode(&s);
    assert_eq!(
        v,
        (0b01 << 62) | (1 << 61) | (1 << 60) | (0xA0 << 48) | (27 << 32) | 27
    );
    assert_eq!(lr::decode(v), s);
    let sw = LrState {
        vintid: 33,
        pending: true,
        active: true,
        hw: None,
        eoi_maintenance: true,
        priority: 0x80,
    };
    let v = lr::encode(&sw);
    assert_eq!(v, (0b11 << 62) | (1 << 60) | (0x80 << 48) | (1 << 41) | 33);
    assert_eq!(lr::decode(v), sw);
}

#[test]
fn edge_interrupt_lifecycle() {
    let mut v = enabled(1);
    enable_spi(&mut v, 40);
    v.gicd_write(0xC08, 4, 0b10 << 16); // SPI 40 edge
    v.set_level(None, 40, true).unwrap();
    v.set_level(None, 40, false).unwrap();
    let e = v.flush_lrs(0);
    assert_eq!(e.hcr, 1, "En only");
    let l = lr_of(&e)[0];
    assert!(l.pending && !l.active && !l.eoi_maintenance && l.hw.is_none());
    assert_eq!(
        v.gicd_read(0x204, 4) & (1 << 8),
        0,
        "the pending state moved into the LR"
    );
    // The guest acknowledges; it exits while handling.
    v.sync_lrs(0, &[ack(e.lrs[0])]);
    assert_eq!(v.gicd_read(0x304, 4) & (1 << 8), 1 << 8, "active");
    assert_eq!(
        v.gicd_read(0x204, 4) & (1 << 8),
        0,
        "acknowledging consumed the edge"
    );
    let e = v.flush_lrs(0);
    let l = lr_of(&e)[0];
    assert!(l.active && !l.pending, "an active interrupt keeps its LR");
    v.sync_lrs(0, &[deactivate(e.lrs[0])]);
    assert_eq!(v.gicd_read(0x304, 4), 0);
    assert!(v.flush_lrs(0).lrs.is_empty());
}

#[test]
fn unacknowledged_latch_comes_back() {
    let mut v = enabled(1);
    enable_private(&mut v, 0, 3);
    v.gicr_write(SGI_BASE + 0x200, 4, 1 << 3); // ISPENDR0: SGI 3
    let e = v.flush_lrs(0);
    v.sync_lrs(0, &e.lrs); // exit before the guest took it
    assert_eq!(v.gicr_read(SGI_BASE + 0x200, 4), 1 << 3);
    // Disabled now: not loaded, still pending.
    v.gicr_write(SGI_BASE + 0x180, 4, 1 << 3);
    assert!(v.flush_lrs(0).lrs.is_empty());
    assert_eq!(v.gicr_read(SGI_BASE + 0x200, 4), 1 << 3);
}

#[test]
fn level_interrupt_is_resampled_after_eoi() {
    let mut v = enabled(1);
    enable_spi(&mut v, 33);
    v.set_level(None, 33, true).unwrap();
    let e = v.flush_lrs(0);
    let l = lr_of(&e)[0];
    assert!(
        l.pending && l.eoi_maintenance,
        "level: EOI maintenance requested"
    );
    // Guest takes and deactivates it; the line is still high.
    v.sync_lrs(0, &[deactivate(ack(e.lrs[0]))]);
    let e = v.flush_lrs(0);
    assert!(lr_of(&e)[0].pending, "still asserted: pending again");
    // Guest services the device (line low) before deactivating.
    let acked = ack(e.lrs[0]);
    v.set_level(None, 33, false).unwrap();
    v.sync_lrs(0, &[deactivate(acked)]);
    assert!(v.flush_lrs(0).lrs.is_empty());
    // ICPENDR does not clear a level interrupt whose line is asserted.
    v.set_level(None, 33, true).unwrap();
    v.gicd_write(0x284, 4, 1 << 1);
    assert_eq!(v.gicd_read(0x204, 4) & 2, 2);
}

#[test]
fn overflow_sets_underflow_interrupt_and_keeps_priority_order() {
    let mut v = enabled(1);
    for i in 0..6u32 {
        let intid = 40 + i;
        enable_spi(&mut v, intid);
        v.gicd_write(0x400 + intid as u64, 1, 0x80 - 0x10 * i as u64);
        v.gicd_write(0x200 + 4, 4, 1 << (intid - 32));
    }
    let e = v.flush_lrs(0);
    assert_eq!(e.lrs.len(), 4);
    assert_eq!(e.hcr, 0b11, "En + UIE");
    let ids: Vec<u32> = lr_of(&e).iter().map(|l| l.vintid).collect();
    assert_eq!(
        ids,
        vec![45, 44, 43, 42],
        "highest priority (lowest value) first"
    );
    // Guest takes 45 and keeps it active; the two left out wait in software.
    let mut lrs = e.lrs.clone();
    lrs[0] = ack(lrs[0]);
    v.sync_lrs(0, &lrs);
    // A new, higher-priority one does not evict the active LR.
    enable_spi(&mut v, 50);
    v.gicd_write(0x400 + 50, 1, 0x00);
    v.gicd_write(0x200 + 4, 4, 1 << 18);
    let e = v.flush_lrs(0);
    let ls = lr_of(&e);
    assert_eq!((ls[0].vintid, ls[0].active), (45, true), "active first");
    assert_eq!(ls[1].vintid, 50);
    assert_eq!(e.hcr, 0b11);
    // Drained: no UIE.
    let mut v = enabled(1);
    enable_spi(&mut v, 40);
    v.gicd_write(0x204, 4, 1 << 8);
    assert_eq!(v.flush_lrs(0).hcr, 1);
}

#[test]
fn hardware_linked_interrupt() {
    let mut v = enabled(2);
    v.link_hw(Some(1), 27, 27).unwrap();
    assert!(v.link_hw(Some(1), 3, 3).is_err(), "no SGI links");
    assert!(
        v.inject_hw(Some(0), 27).is_err(),
        "vCPU 0's PPI 27 is not linked"
    );
    enable_private(&mut v, 1, 27);
    v.inject_hw(Some(1), 27).unwrap();
    let e = v.flush_lrs(1);
    let l = lr_of(&e)[0];
    assert_eq!(
        (l.pending, l.active, l.hw, l.eoi_maintenance),
        (true, false, Some(27), false)
    );
    // The guest acknowledges; a second physical assertion cannot happen (the
    // physical interrupt is active), so the LR is active only, never P+A.
    let acked = ack(e.lrs[0]);
    v.sync_lrs(1, &[acked]);
    v.gicr_write(STRIDE + SGI_BASE + 0x200, 4, 1 << 27); // guest ISPENDR too
    let e = v.flush_lrs(1);
    let l = lr_of(&e)[0];
    assert_eq!((l.pending, l.active, l.hw), (false, true, Some(27)));
    // Deactivated by the guest (and so the physical one): the software latch is
    // then delivered as a plain software LR.
    v.sync_lrs(1, &[deactivate(e.lrs[0])]);
    let e = v.flush_lrs(1);
    let l = lr_of(&e)[0];
    assert_eq!((l.pending, l.hw), (true, None));
    assert!(v.take_actions().is_empty());
}

#[test]
fn clearing_a_hardware_linked_interrupt_deactivates_the_physical_one() {
    let mut v = enabled(2);
    v.link_hw(Some(1), 27, 27).unwrap();
    v.inject_hw(Some(1), 27).unwrap();
    v.gicr_write(STRIDE + SGI_BASE + 0x280, 4, 1 << 27); // ICPENDR0
    assert_eq!(
        v.take_actions(),
        vec![HwAction::DeactivatePhysical { vcpu: 1, intid: 27 }]
    );
    assert_eq!(v.gicr_read(STRIDE + SGI_BASE + 0x200, 4), 0);
    // Active at reset: given back too.
    let mut v = enabled(1);
    v.link_hw(None, 48, 80).unwrap();
    enable_spi(&mut v, 48);
    v.inject_hw(None, 48).unwrap();
    let e = v.flush_lrs(0);
    v.sync_lrs(0, &[ack(e.lrs[0])]);
    v.reset();
    assert_eq!(
        v.take_actions(),
        vec![HwAction::DeactivatePhysical { vcpu: 0, intid: 80 }]
    );
    assert_eq!(v.gicd_read(0x0, 4) & 0b11, 0, "groups disabled again");
}

#[test]
fn passthrough_spi_route_follows_irouter() {
    let mut v = enabled(2);
    v.link_hw(None, 48, 80).unwrap();
    v.gicd_write(0x6000 + 8 * 48, 8, 1);
    assert_eq!(
        v.take_actions(),
        vec![HwAction::RoutePhysicalSpi { intid: 80, vcpu: 1 }]
    );
}

#[test]
fn active_spi_stays_with_the_acknowledging_vcpu() {
    let mut v = enabled(2);
    enable_spi(&mut v, 40);
    v.gicd_write(0x204, 4, 1 << 8);
    let e = v.flush_lrs(0);
    // Retargeted while in vCPU 0's LR: vCPU 1 must not load it too.
    v.gicd_write(0x6000 + 8 * 40, 8, 1);
    assert!(v.flush_lrs(1).lrs.is_empty());
    v.sync_lrs(0, &[ack(e.lrs[0])]);
    assert!(v.flush_lrs(1).lrs.is_empty(), "active on vCPU 0");
    let e = v.flush_lrs(0);
    assert_eq!(lr_of(&e)[0].vintid, 40);
    v.sync_lrs(0, &[deactivate(e.lrs[0])]);
    // Pending again: now goes to vCPU 1.
    v.gicd_write(0x204, 4, 1 << 8);
    assert!(v.flush_lrs(0).lrs.is_empty());
    assert_eq!(lr_of(&v.flush_lrs(1))[0].vintid, 40);
}

#[test]
fn sgi_target_decoding() {
    let mpidrs: Vec<u64> = (0..20).map(crate::vm::controls::vmpidr).collect();
    // TargetList bits 0 and 2 in cluster Aff1 = 0, INTID 5.
    let v = (5 << 24) | 0b101;
    assert_eq!(
        sgi::sgi_targets(v, 0, &mpidrs),
        vec![0, 2],
        "the sender may name itself"
    );
    assert_eq!(sgi::sgi_intid(v), 5);
    // Aff1 = 1: vCPUs 16.. (Aff0 = index % 16).
    assert_eq!(
        sgi::sgi_targets((1 << 16) | 0b1001, 0, &mpidrs),
        vec![16, 19]
    );
    // IRM = 1: everyone but the sender.
    let all: Vec<usize> = (0..20).filter(|&i| i != 3).collect();
    assert_eq!(sgi::sgi_targets(1 << 40, 3, &mpidrs), all);
    // RS = 1 selects Aff0 16-31: none of these vCPUs.
    assert!(sgi::sgi_targets((1 << 44) | 1, 0, &mpidrs).is_empty());
    // Aff2 / Aff3 mismatches.
    assert!(sgi::sgi_targets((1 << 32) | 1, 0, &mpidrs).is_empty());
    assert!(sgi::sgi_targets((1 << 48) | 1, 0, &mpidrs).is_empty());
    // RS matches Aff0 >= 16 when PEs have it.
    let wide = [0x8000_0000u64, 0x8000_0011];
    assert_eq!(sgi::sgi_targets((1 << 44) | 0b10, 0, &wide), vec![1]);
}

#[test]
fn sgi1r_for_round_trips_through_the_decoder() {
    let mpidrs = [0x8000_0000u64, 0x8000_0001, 0x8000_0100, 0x1_0000_0203];
    for (i, &m) in mpidrs.iter().enumerate() {
        let v = host::sgi1r_for(host::KICK_SGI, m).unwrap();
        assert_eq!(sgi::sgi_targets(v, 99, &mpidrs), vec![i]);
        assert_eq!(sgi::sgi_intid(v), host::KICK_SGI);
    }
    assert_eq!(host::sgi1r_for(16, 0), None);
}

#[test]
fn guest_sgis_through_the_trap() {
    let mut v = enabled(3);
    for t in 0..3 {
        enable_private(&mut v, t, 2);
    }
    v.take_kicks();
    assert_eq!(
        v.trap_sysreg(0, sgi::ICC_SGI1R_EL1, true, (2 << 24) | 0b110),
        Some(SysRegResult::Done)
    );
    assert_eq!(v.take_kicks(), vec![1, 2]);
    assert!(v.flush_lrs(0).lrs.is_empty());
    assert_eq!(lr_of(&v.flush_lrs(1))[0].vintid, 2);
    assert_eq!(lr_of(&v.flush_lrs(2))[0].vintid, 2);
    // Group 0 / alternate-group SGIs do not reach Group 1 SGIs (DS = 1).
    assert_eq!(
        v.trap_sysreg(0, sgi::ICC_SGI0R_EL1, true, 1 << 40),
        Some(SysRegResult::Done)
    );
    assert_eq!(
        v.trap_sysreg(0, sgi::ICC_ASGI1R_EL1, true, 1 << 40),
        Some(SysRegResult::Done)
    );
    assert!(v.take_kicks().is_empty());
    assert_eq!(
        v.trap_sysreg(0, sgi::ICC_SGI1R_EL1, false, 0),
        Some(SysRegResult::Undefined)
    );
    assert_eq!(
        v.trap_sysreg(0, SysReg::new(3, 0, 12, 12, 0), false, 0),
        None,
        "ICC_IAR1_EL1 is not trapped"
    );
    assert_eq!(
        SgiRegister::from_sysreg(sgi::ICC_ASGI1R_EL1),
        Some(SgiRegister::Asgi1r)
    );
}

#[test]
fn wake_follows_priority_mask_and_group_enable() {
    let mut v = enabled(1);
    enable_spi(&mut v, 40);
    v.gicd_write(0x400 + 40, 1, 0xA0);
    let vmcr = |pmr: u64, eng1: bool| (pmr << 24) | ((eng1 as u64) << 1);
    assert!(!v.wake_pending(0, vmcr(0xF0, true)), "nothing pending");
    v.gicd_write(0x204, 4, 1 << 8);
    assert!(v.wake_pending(0, vmcr(0xF0, true)));
    assert!(
        !v.wake_pending(0, vmcr(0xA0, true)),
        "priority not above the mask"
    );
    assert!(
        !v.wake_pending(0, vmcr(0xF0, false)),
        "Group 1 disabled at the CPU interface"
    );
}

struct FakeIch {
    lrs: [u64; 16],
    hcr: u64,
}

impl ListRegisters for FakeIch {
    fn read_lr(&self, n: usize) -> u64 {
        self.lrs[n]
    }
    fn write_lr(&mut self, n: usize, value: u64) {
        self.lrs[n] = value;
    }
    fn write_hcr(&mut self, value: u64) {
        self.hcr = value;
    }
}

#[test]
fn save_and_restore_through_the_hardware_trait() {
    let mut v = enabled(1);
    enable_spi(&mut v, 40);
    v.gicd_write(0x204, 4, 1 << 8);
    let mut hw = FakeIch {
        lrs: [0; 16],
        hcr: 0,
    };
    v.restore(0, &mut hw);
    assert_eq!(lr::decode(hw.lrs[0]).vintid, 40);
    assert_eq!(hw.hcr, 1);
    hw.lrs[0] = ack(hw.lrs[0]);
    hw.hcr = 0b11;
    v.save(0, &mut hw);
    assert_eq!(hw.lrs[0], 0, "LRs cleared at exit");
    assert_eq!(hw.hcr, 1, "no maintenance condition while at EL2");
    assert_eq!(v.gicd_read(0x304, 4), 1 << 8, "active state read back");
}

#[test]
fn mmio_windows_on_the_bus() {
    let shared: SharedVgic = Arc::new(crate::sync::Mutex::new(vgic(2)));
    let mut bus = MmioBus::new();
    mmio::attach(&mut bus, &shared, 0x0800_0000, 0x080A_0000).unwrap();
    assert_eq!(bus.read(0x0800_FFE8, 4).map(|v| (v >> 4) & 0xf), Some(3));
    assert!(bus.write(0x0800_0000, 4, 0b10));
    assert_eq!(shared.lock().gicd_read(0, 4) & 0b10, 0b10);
    let t = bus.read(0x080A_0000 + STRIDE + 8, 8).unwrap();
    assert_ne!(t & (1 << 4), 0, "vCPU 1 is Last");
    assert_eq!(
        bus.read(0x080A_0000 + 2 * STRIDE, 4),
        None,
        "region ends after vCPU 1"
    );
}

#[test]
fn physical_irq_classification() {
    let pt = [PassthroughSpi {
        pintid: 80,
        vm: 1,
        vintid: 48,
    }];
    assert_eq!(host::classify(1023, &pt), PhysIrq::Spurious);
    assert_eq!(host::classify(25, &pt), PhysIrq::Maintenance);
    assert_eq!(host::classify(27, &pt), PhysIrq::VirtualTimer);
    assert_eq!(host::classify(26, &pt), PhysIrq::HypTimer);
    assert_eq!(host::classify(host::KICK_SGI, &pt), PhysIrq::Kick);
    assert_eq!(
        host::classify(80, &pt),
        PhysIrq::Passthrough { vm: 1, vintid: 48 }
    );
    assert_eq!(host::classify(33, &pt), PhysIrq::Host(33));
    assert_eq!(
        PhysIrq::VirtualTimer.completion(),
        Completion::PriorityDropOnly
    );
    assert_eq!(
        PhysIrq::Passthrough { vm: 1, vintid: 48 }.completion(),
        Completion::PriorityDropOnly
    );
    assert_eq!(
        PhysIrq::Maintenance.completion(),
        Completion::DropAndDeactivate
    );
    assert_eq!(PhysIrq::Spurious.completion(), Completion::None);
}

#[test]
fn physical_register_values() {
    assert_eq!(host::icc_sre_el2(), 0b1111, "SRE, DFB, DIB, Enable");
    assert_eq!(host::icc_sre_el1(), 0b111);
    assert_eq!(
        host::icc_ctlr_el1(0x401),
        0x402,
        "EOImode set, CBPR cleared, PRIbits kept"
    );
    assert_eq!(host::gicd_ctlr_enable(), 0b1_0011);
    assert!(host::rwp(1 << 31) && !host::rwp(0x13));
    assert!(
        host::gicr_rwp(1 << 3) && !host::gicr_rwp(1 << 31),
        "GICR_CTLR.RWP is bit 3"
    );
    assert_eq!(host::irouter_for(0x8100_0203), 0x0203);
    assert_eq!(host::irouter_for(0x1_8000_0203), 0x1_0000_0203);
    // QEMU's ICH_VTR_EL2 for cortex-a57/max: PRIbits 4 (5 bits), PREbits 4, 4 LRs.
    let vtr = (4 << 29) | (4 << 26) | 3;
    assert_eq!(host::nr_list_registers(vtr), 4);
    assert_eq!(host::virtual_priority_bits(vtr), 5);
    let vmcr = host::ich_vmcr_reset(vtr);
    assert_eq!((vmcr >> 21) & 7, 2, "VBPR0 minimum 7 - 5");
    assert_eq!((vmcr >> 18) & 7, 3, "VBPR1 minimum + 1");
    assert_eq!(vmcr >> 24, 0, "VPMR 0");
    assert_eq!(vmcr & 0b11, 0, "groups disabled");
    // GICR_TYPER matching and stride.
    let typer = (0x0000_0102u64 << 32) | (1 << 4);
    assert!(host::redistributor_is(typer, 0x8000_0102));
    assert!(!host::redistributor_is(typer, 0x8000_0103));
    assert!(host::redistributor_is_last(typer));
    assert_eq!(host::redistributor_stride(typer), 0x2_0000);
    assert_eq!(host::redistributor_stride(typer | 2), 0x4_0000);
    assert_eq!(host::nr_active_priority_registers(vtr), 1);
    assert_eq!(
        host::nr_active_priority_registers((6 << 26) | 3),
        4,
        "7 preemption bits"
    );
    assert_eq!(
        host::gicd_interrupt_lines(0x0780_000a),
        352,
        "ITLinesNumber 10"
    );
    assert_eq!(host::gicd_interrupt_lines(31), 1020);
    assert_eq!(host::misr_reasons(0b1011), (true, true, true, false));
}
