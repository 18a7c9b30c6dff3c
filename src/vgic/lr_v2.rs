//! The GICv2 list-register layer: GICH_LR<n>, GICH_HCR and GICH_VTR of a GIC-400's
//! virtual interface control frame, and their conversion to and from the GICv3
//! ICH_* layouts the rest of the vGIC speaks.
//!
//! Design: the distributor emulation, the per-interrupt state and the choice of
//! what goes into the list registers ([`super::lr`]) are one implementation for
//! both GIC versions; they produce and consume list-register values in the
//! ICH_LR<n>_EL2 layout. A GICv2 host's CPU-interface layer converts at the
//! hardware boundary: [`ich_to_gich`] before writing GICH_LR<n>, [`gich_to_ich`]
//! after reading it back, [`hcr_ich_to_gich`] for the control register. What the
//! GICv2 format cannot hold (an INTID above 1019, a physical INTID above 1019,
//! priority bits below the top five) is refused or dropped as the architecture
//! says, never silently aliased.
//!
//! What a GICv2 host still needs around this layer (not built yet):
//! - arch: a GIC-400 driver at EL2 — GICD (SPIs Group 1, targets by
//!   GICD_ITARGETSR byte masks instead of IROUTER), GICC (GICC_CTLR.EOImode = 1
//!   so a priority drop and a deactivation are separate, GICC_PMR = 0xff,
//!   acknowledge/EOI/DIR through GICC_IAR/EOIR/DIR), the GICH frame as a
//!   [`GichFrame`] (MMIO), GICH_VMCR and GICH_APR saved with the vCPU as the
//!   v2 flavour of `GicCpuRegs`, the maintenance interrupt (PPI 9, INTID 25),
//!   and the cross-CPU kick as a physical GICD_SGIR write (CPU interface
//!   numbers read from GICD_ITARGETSR0, not MPIDRs).
//! - stage 2: the GICV frame mapped at the guest's GICC address, 8 KiB
//!   (GICV_DIR sits at offset 0x1000, IHI 0048B.b 5.4), device memory, so the
//!   guest's CPU-interface accesses cause no exits. The host device tree gives
//!   the GICV base (`GicInfo::gicv`); some GIC-400 integrations alias each 4 KiB
//!   page at 64 KiB steps, so the second page is taken from where the tree says.
//! - vGICv2 distributor frame: one `Vgic` with a GICv2 model flag; SGIs and
//!   PPIs banked in GICD by the accessing vCPU (no redistributor), ITARGETSR
//!   (RO for private interrupts, SPI routing to the lowest set target),
//!   GICD_SGIR ([`super::sgi::gicd_sgir_targets`]), CPENDSGIR/SPENDSGIR with
//!   a pending bit per (SGI, source), the source carried into
//!   [`V2ListRegisters::sgi_source`].
//!
//! GICv2 (IHI 0048B.b) rules this follows:
//! - 5.3.11 GICH_LR<n>: [9:0] VirtualID, [19:10] PhysicalID when HW = 1; when
//!   HW = 0, bit 19 is EOI (maintenance interrupt on deactivation) and [12:10]
//!   CPUID, the source processor of a virtual SGI (which the guest reads back in
//!   GICC_IAR.CPUID); [27:23] Priority (the top five bits of an 8-bit priority);
//!   [29:28] State (0b00 invalid, 0b01 pending, 0b10 active, 0b11 pending and
//!   active); bit 30 Grp1; bit 31 HW.
//! - 5.3.11: with HW = 1, PhysicalID must not be an SGI (0..15) and the
//!   pending-and-active state must not be used (the same rule as ICH_LR<n>_EL2).
//! - 5.3.2 GICH_HCR: bit 0 En, bit 1 UIE, [31:27] EOICount.
//! - 5.3.3 GICH_VTR: [5:0] ListRegs (number of LRs - 1), [31:29] PRIbits
//!   (priority bits - 1).

/// GICH_LR<n> field positions (IHI 0048B.b 5.3.11).
pub mod gich_lr {
    pub const VIRTUAL_ID_MASK: u32 = 0x3ff;
    pub const PHYSICAL_ID_SHIFT: u32 = 10;
    pub const PHYSICAL_ID_MASK: u32 = 0x3ff;
    pub const CPUID_SHIFT: u32 = 10;
    pub const CPUID_MASK: u32 = 0x7;
    pub const EOI: u32 = 1 << 19;
    pub const PRIORITY_SHIFT: u32 = 23;
    pub const PRIORITY_MASK: u32 = 0x1f;
    pub const STATE_SHIFT: u32 = 28;
    pub const STATE_MASK: u32 = 0x3;
    pub const GRP1: u32 = 1 << 30;
    pub const HW: u32 = 1 << 31;
}

/// ICH_LR<n>_EL2 field positions (IHI 0069, 12.4.x ICH_LR<n>_EL2), as far as the
/// conversion needs them.
mod ich_lr {
    pub const VINTID_MASK: u64 = 0xffff_ffff;
    pub const PINTID_SHIFT: u32 = 32;
    pub const PINTID_MASK: u64 = 0x1fff;
    pub const EOI: u64 = 1 << 41;
    pub const PRIORITY_SHIFT: u32 = 48;
    pub const PRIORITY_MASK: u64 = 0xff;
    pub const GROUP: u64 = 1 << 60;
    pub const HW: u64 = 1 << 61;
    pub const STATE_SHIFT: u32 = 62;
}

/// The largest INTID a GICv2 list register holds (1020..1023 are special,
/// IHI 0048B.b 3.2.5).
pub const MAX_V2_INTID: u32 = 1019;

/// Why an ICH_LR value has no GICH_LR equivalent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LrConvError {
    /// The virtual INTID does not fit GICH_LR.VirtualID (or is a special INTID).
    VirtualIdOutOfRange(u32),
    /// The physical INTID of a hardware-linked LR does not fit, or is an SGI.
    PhysicalIdInvalid(u32),
    /// An SGI source CPU above 7 (GICv2 has at most 8 CPU interfaces).
    SgiSourceOutOfRange(u8),
}

/// Converts an ICH_LR<n>_EL2 value to GICH_LR<n>. `sgi_source` is the source
/// vCPU of a software (HW = 0) SGI, which the GICv2 format carries in CPUID and
/// the GICv3 one does not (a GICv3 guest's ICC_IAR1_EL1 has no source field);
/// it is ignored for other INTIDs. Priority keeps its top five bits
/// (GICH_LR.Priority is bits [7:3] of the virtual priority).
pub fn ich_to_gich(ich: u64, sgi_source: Option<u8>) -> Result<u32, LrConvError> {
    let vintid = (ich & ich_lr::VINTID_MASK) as u32;
    if vintid > MAX_V2_INTID {
        return Err(LrConvError::VirtualIdOutOfRange(vintid));
    }
    let state = (ich >> ich_lr::STATE_SHIFT) as u32 & gich_lr::STATE_MASK;
    let priority = ((ich >> ich_lr::PRIORITY_SHIFT) & ich_lr::PRIORITY_MASK) as u32 >> 3;
    let mut v = vintid | (priority << gich_lr::PRIORITY_SHIFT) | (state << gich_lr::STATE_SHIFT);
    if ich & ich_lr::GROUP != 0 {
        v |= gich_lr::GRP1;
    }
    if ich & ich_lr::HW != 0 {
        let pintid = ((ich >> ich_lr::PINTID_SHIFT) & ich_lr::PINTID_MASK) as u32;
        if !(16..=MAX_V2_INTID).contains(&pintid) {
            return Err(LrConvError::PhysicalIdInvalid(pintid));
        }
        v |= gich_lr::HW | (pintid << gich_lr::PHYSICAL_ID_SHIFT);
    } else {
        if ich & ich_lr::EOI != 0 {
            v |= gich_lr::EOI;
        }
        if vintid < 16 {
            let src = sgi_source.unwrap_or(0);
            if u32::from(src) > gich_lr::CPUID_MASK {
                return Err(LrConvError::SgiSourceOutOfRange(src));
            }
            v |= u32::from(src) << gich_lr::CPUID_SHIFT;
        }
    }
    Ok(v)
}

/// Converts a GICH_LR<n> value read back at exit to the ICH_LR<n>_EL2 layout, so
/// [`super::lr::sync`] folds it into the software state. The SGI source CPU, if
/// any, is returned beside it (the caller kept it; it does not change while the
/// interrupt sits in the LR).
pub fn gich_to_ich(gich: u32) -> (u64, Option<u8>) {
    let vintid = u64::from(gich & gich_lr::VIRTUAL_ID_MASK);
    let state = u64::from((gich >> gich_lr::STATE_SHIFT) & gich_lr::STATE_MASK);
    let priority = u64::from((gich >> gich_lr::PRIORITY_SHIFT) & gich_lr::PRIORITY_MASK) << 3;
    let mut v = vintid | (priority << ich_lr::PRIORITY_SHIFT) | (state << ich_lr::STATE_SHIFT);
    if gich & gich_lr::GRP1 != 0 {
        v |= ich_lr::GROUP;
    }
    let mut source = None;
    if gich & gich_lr::HW != 0 {
        let p = u64::from((gich >> gich_lr::PHYSICAL_ID_SHIFT) & gich_lr::PHYSICAL_ID_MASK);
        v |= ich_lr::HW | (p << ich_lr::PINTID_SHIFT);
    } else {
        if gich & gich_lr::EOI != 0 {
            v |= ich_lr::EOI;
        }
        if vintid < 16 {
            source = Some(((gich >> gich_lr::CPUID_SHIFT) & gich_lr::CPUID_MASK) as u8);
        }
    }
    (v, source)
}

/// GICH_HCR bits (IHI 0048B.b 5.3.2).
pub mod gich_hcr {
    pub const EN: u32 = 1 << 0;
    pub const UIE: u32 = 1 << 1;
    pub const EOICOUNT_SHIFT: u32 = 27;
}

/// Converts the ICH_HCR_EL2 value the shared layer asks for (En, UIE: the only
/// bits it sets, see [`super::lr::hcr_for_entry`]) to GICH_HCR. Both registers
/// put En at bit 0 and UIE at bit 1 (IHI 0069 ICH_HCR_EL2; IHI 0048B.b 5.3.2).
pub fn hcr_ich_to_gich(ich_hcr: u64) -> u32 {
    (ich_hcr as u32) & (gich_hcr::EN | gich_hcr::UIE)
}

/// What GICH_VTR says about the virtual interface (IHI 0048B.b 5.3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VtrV2 {
    pub nr_lrs: usize,
    pub priority_bits: u8,
}

pub fn decode_vtr(vtr: u32) -> VtrV2 {
    VtrV2 {
        nr_lrs: (vtr & 0x3f) as usize + 1,
        priority_bits: ((vtr >> 29) & 0x7) as u8 + 1,
    }
}

/// Where the second 4 KiB page of a GICv2 CPU interface frame (GICC or GICV:
/// GICC_DIR / GICV_DIR at offset 0x1000, IHI 0048B.b 4.1.3 and 5.5) is, given
/// the frame's base and size from the device tree. A GIC-400 frame is 8 KiB;
/// SoCs that place each 4 KiB page on a 64 KiB boundary (the page repeated
/// over its 64 KiB, e.g. ZynqMP: 128 KiB regions) describe 128 KiB, and there
/// the second page starts 64 KiB in (the layout `arm,gic` bindings allow, and
/// what Linux also assumes for a 128 KiB CPU interface).
pub fn cpu_interface_second_page(base: u64, size: u64) -> u64 {
    if size >= 0x2_0000 {
        base + 0x1_0000
    } else {
        base + 0x1000
    }
}

/// A GICv2 virtual interface control frame (GICH) as the CPU-interface layer
/// sees it: 32-bit list registers and GICH_HCR. The arch layer implements it
/// with MMIO on the GIC-400's GICH frame; tests with an array.
pub trait GichFrame {
    fn read_lr(&self, n: usize) -> u32;
    fn write_lr(&mut self, n: usize, value: u32);
    fn write_hcr(&mut self, value: u32);
}

/// Presents a [`GichFrame`] as the [`ListRegisters`](super::ListRegisters) the
/// shared vGIC writes, converting every value. `sgi_source[n]` is the source
/// vCPU written into LR `n` when it holds a software SGI (the caller sets it
/// before [`super::Vgic::load_lrs`] for the SGIs it queued; 0 otherwise).
pub struct V2ListRegisters<'a, F: GichFrame> {
    pub frame: &'a mut F,
    pub sgi_source: [u8; 64],
}

impl<'a, F: GichFrame> V2ListRegisters<'a, F> {
    pub fn new(frame: &'a mut F) -> Self {
        V2ListRegisters {
            frame,
            sgi_source: [0; 64],
        }
    }
}

impl<F: GichFrame> super::ListRegisters for V2ListRegisters<'_, F> {
    fn read_lr(&self, n: usize) -> u64 {
        gich_to_ich(self.frame.read_lr(n)).0
    }

    fn write_lr(&mut self, n: usize, value: u64) {
        let src = self.sgi_source.get(n).copied();
        match ich_to_gich(value, src) {
            Ok(v) => self.frame.write_lr(n, v),
            Err(e) => {
                // A vGICv2 is built with INTIDs below 1020 and hardware links to
                // SPIs/PPIs only, so this is a bug elsewhere: leave the LR
                // invalid rather than alias another interrupt.
                log::error!("vGICv2: list register {n} not written: {e:?}");
                self.frame.write_lr(n, 0);
            }
        }
    }

    fn write_hcr(&mut self, value: u64) {
        self.frame.write_hcr(hcr_ich_to_gich(value));
    }
}

#[cfg(test)]
mod tests {
    use super::super::lr::{self, LrState};
    use super::*;

    fn st(vintid: u32, pending: bool, active: bool, hw: Option<u32>, eoi: bool) -> LrState {
        LrState {
            vintid,
            pending,
            active,
            hw,
            eoi_maintenance: eoi,
            priority: 0xa0,
        }
    }

    #[test]
    fn second_page_of_a_cpu_interface() {
        // QEMU virt: 8 KiB frames (64 KiB regions, not aliased: only the
        // first 8 KiB decode).
        assert_eq!(cpu_interface_second_page(0x0804_0000, 0x2000), 0x0804_1000);
        assert_eq!(
            cpu_interface_second_page(0x0804_0000, 0x1_0000),
            0x0804_1000
        );
        // ZynqMP (xlnx,zynqmp.dtsi): GICV 0xf906_0000, 128 KiB, pages at 64 KiB.
        assert_eq!(
            cpu_interface_second_page(0xf906_0000, 0x2_0000),
            0xf907_0000
        );
    }

    #[test]
    fn software_spi_round_trips() {
        for (p, a) in [(true, false), (false, true), (true, true), (false, false)] {
            let s = st(40, p, a, None, true);
            let ich = lr::encode(&s);
            let g = ich_to_gich(ich, None).unwrap();
            assert_eq!(g & gich_lr::VIRTUAL_ID_MASK, 40);
            assert_eq!(
                (g >> gich_lr::STATE_SHIFT) & 3,
                u32::from(p) | u32::from(a) << 1
            );
            assert_ne!(g & gich_lr::EOI, 0);
            assert_ne!(g & gich_lr::GRP1, 0);
            assert_eq!(g & gich_lr::HW, 0);
            assert_eq!((g >> gich_lr::PRIORITY_SHIFT) & 0x1f, 0xa0 >> 3);
            let (back, src) = gich_to_ich(g);
            assert_eq!(src, None);
            assert_eq!(lr::decode(back), s);
        }
    }

    #[test]
    fn hardware_linked_timer_round_trips() {
        let s = st(27, true, false, Some(27), false);
        let g = ich_to_gich(lr::encode(&s), None).unwrap();
        assert_ne!(g & gich_lr::HW, 0);
        assert_eq!((g >> gich_lr::PHYSICAL_ID_SHIFT) & 0x3ff, 27);
        // Guest acknowledged it: active only, still hardware-linked.
        let acked = (g & !(3 << gich_lr::STATE_SHIFT)) | (0b10 << gich_lr::STATE_SHIFT);
        let (back, _) = gich_to_ich(acked);
        assert_eq!(lr::decode(back), st(27, false, true, Some(27), false));
    }

    #[test]
    fn sgi_carries_its_source_cpu() {
        let s = st(3, true, false, None, false);
        let g = ich_to_gich(lr::encode(&s), Some(5)).unwrap();
        assert_eq!((g >> gich_lr::CPUID_SHIFT) & 7, 5);
        let (back, src) = gich_to_ich(g);
        assert_eq!(src, Some(5));
        assert_eq!(lr::decode(back), s);
        // Not an SGI: the source is not encoded.
        let g = ich_to_gich(lr::encode(&st(33, true, false, None, false)), Some(5)).unwrap();
        assert_eq!((g >> gich_lr::CPUID_SHIFT) & 7, 0);
        assert_eq!(
            ich_to_gich(lr::encode(&s), Some(8)),
            Err(LrConvError::SgiSourceOutOfRange(8))
        );
    }

    #[test]
    fn out_of_range_values_are_refused() {
        assert_eq!(
            ich_to_gich(lr::encode(&st(1020, true, false, None, false)), None),
            Err(LrConvError::VirtualIdOutOfRange(1020))
        );
        assert_eq!(
            ich_to_gich(lr::encode(&st(40, true, false, Some(1500), false)), None),
            Err(LrConvError::PhysicalIdInvalid(1500))
        );
        assert_eq!(
            ich_to_gich(lr::encode(&st(40, true, false, Some(7), false)), None),
            Err(LrConvError::PhysicalIdInvalid(7))
        );
    }

    #[test]
    fn priority_keeps_top_five_bits() {
        let mut s = st(40, true, false, None, false);
        s.priority = 0xa7;
        let (back, _) = gich_to_ich(ich_to_gich(lr::encode(&s), None).unwrap());
        assert_eq!(lr::decode(back).priority, 0xa0);
    }

    struct FakeGich {
        lrs: [u32; 4],
        hcr: u32,
    }

    impl GichFrame for FakeGich {
        fn read_lr(&self, n: usize) -> u32 {
            self.lrs[n]
        }
        fn write_lr(&mut self, n: usize, value: u32) {
            self.lrs[n] = value;
        }
        fn write_hcr(&mut self, value: u32) {
            self.hcr = value;
        }
    }

    /// The shared vGIC drives a GICH frame through the adapter: an SPI is
    /// loaded pending, the guest acknowledges and deactivates it in the GICv2
    /// format, and the read-back sees it gone.
    #[test]
    fn shared_vgic_through_gich_frame() {
        use super::super::{Vgic, VgicConfig};
        let mut v = Vgic::new(VgicConfig::new(1, 64)).unwrap();
        v.gicd_write(0x0, 4, 0b10); // Group 1 enabled
        v.gicd_write(0x100 + 4, 4, 1 << 8); // enable INTID 40
        v.gicd_write(0x200 + 4, 4, 1 << 8); // set pending INTID 40
        let mut f = FakeGich {
            lrs: [0; 4],
            hcr: 0,
        };
        {
            let mut hw = V2ListRegisters::new(&mut f);
            v.refill(0, &mut hw);
        }
        assert_eq!(f.hcr & gich_hcr::EN, gich_hcr::EN);
        assert_eq!(f.lrs[0] & gich_lr::VIRTUAL_ID_MASK, 40);
        assert_eq!((f.lrs[0] >> gich_lr::STATE_SHIFT) & 3, 0b01);
        // Guest: GICC_IAR then GICC_DIR (or EOI with EOImode 0): invalid.
        f.lrs[0] &= !(3 << gich_lr::STATE_SHIFT);
        {
            let mut hw = V2ListRegisters::new(&mut f);
            v.save(0, &mut hw);
        }
        assert_eq!(f.lrs, [0; 4]);
        assert_eq!(f.hcr, gich_hcr::EN);
        // Nothing is pending any more: the next entry loads nothing.
        {
            let mut hw = V2ListRegisters::new(&mut f);
            v.refill(0, &mut hw);
        }
        assert_eq!(f.lrs[0], 0);
    }

    #[test]
    fn hcr_and_vtr() {
        assert_eq!(
            hcr_ich_to_gich(lr::hcr_for_entry(true)),
            gich_hcr::EN | gich_hcr::UIE
        );
        assert_eq!(hcr_ich_to_gich(lr::hcr_at_exit()), gich_hcr::EN);
        // GIC-400: 4 LRs, 5 priority bits.
        let vtr = (4 << 29) | (4 << 26) | 3;
        assert_eq!(
            decode_vtr(vtr),
            VtrV2 {
                nr_lrs: 4,
                priority_bits: 5
            }
        );
    }
}
