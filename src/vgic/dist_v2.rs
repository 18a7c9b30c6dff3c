//! The distributor of a virtual GICv2 (IHI 0048B.b, chapter 4), for VMs on a
//! GICv2 (GIC-400) host: the same interrupt state as the GICv3 view
//! ([`super::dist`]), seen through the GICv2 register map. There is no
//! redistributor: the registers of INTIDs 0-31 (ISENABLER0, IPRIORITYR0-7,
//! ICFGR0-1, ...) are banked, each vCPU reaching its own SGIs and PPIs through
//! them (IHI 0048B.b 4.3, "banked registers"); SPIs are routed by
//! GICD_ITARGETSR byte masks; SGIs are sent by writing GICD_SGIR.
//!
//! The guest sees a GIC without the Security Extensions (GICD_TYPER.SecurityExtn
//! = 0), every interrupt in Group 0 (GICD_IGROUPR RAZ/WI), which a GICv2 CPU
//! interface signals as IRQ while GICC_CTLR.FIQEn = 0; GICD_CTLR.Enable (bit 0)
//! forwards them. The list registers are written with GICH_LR.Grp1 = 0 to match.
//!
//! Simplifications, each allowed by the architecture or invisible to a guest
//! that follows it:
//! - An SPI targets one vCPU: a GICD_ITARGETSR write naming several keeps the
//!   lowest (IHI 0048B.b 4.3.12 lets the interrupt go to any one of the listed
//!   processors in 1-N fashion; the read returns that one).
//! - SGI sources are not tracked: GICD_SPENDSGIR/CPENDSGIR show a pending SGI
//!   as coming from CPU interface 0, and the virtual GICC_IAR.CPUID of an SGI
//!   reads 0. A guest that EOIs what it acknowledged (as IHI 0048B.b 4.4.5
//!   requires) is unaffected.

use super::dist::{BitReg, Frame, iidr};
use super::irq::{FIRST_SPI, NR_PRIVATE};
use super::{HwAction, Vgic};

pub const GICD_CTLR: u64 = 0x000;
pub const GICD_TYPER: u64 = 0x004;
pub const GICD_IIDR: u64 = 0x008;
pub const GICD_IPRIORITYR: u64 = 0x400;
pub const GICD_ITARGETSR: u64 = 0x800;
pub const GICD_ICFGR: u64 = 0xC00;
pub const GICD_SGIR: u64 = 0xF00;
pub const GICD_CPENDSGIR: u64 = 0xF10;
pub const GICD_SPENDSGIR: u64 = 0xF20;
/// ICPIDR2 (IHI 0048B.b 4.3.16, table 4-2 and the ID registers): ArchRev [7:4].
pub const GICD_ICPIDR2: u64 = 0xFE8;

/// A route no vCPU has (Aff0 = 0xff: vCPU affinities keep Aff0 below 16), for
/// an SPI whose GICD_ITARGETSR names no CPU: it is then not forwarded (IHI
/// 0048B.b 4.3.12, "a CPU targets field of 0 means the interrupt is not sent").
const NO_TARGET: u64 = 0xff;

/// ICPIDR2 of a GICv2: ArchRev = 2, JEDEC = 1, JEP106 identity bits [6:4] of
/// Arm (0b011), as the GICv3 view's GICD_PIDR2 but for architecture version 2.
pub fn icpidr2() -> u32 {
    (2 << 4) | (1 << 3) | 0b011
}

/// The frame that serves `intid` for vCPU `vcpu`: its banked private
/// interrupts, or the shared SPIs.
fn frame_for(vcpu: usize, intid: u32) -> Frame {
    if (intid as usize) < NR_PRIVATE {
        Frame::Redist(vcpu)
    } else {
        Frame::Dist
    }
}

impl Vgic {
    /// GICD_TYPER of a GICv2 (IHI 0048B.b 4.3.2): ITLinesNumber [4:0],
    /// CPUNumber [7:5] (CPU interfaces - 1), SecurityExtn [10] = 0, LSPI = 0.
    pub fn gicd_v2_typer(&self) -> u32 {
        let lines = (FIRST_SPI + self.cfg.nr_spis) / 32 - 1;
        let cpus = (self.nr_vcpus().min(8) - 1) as u32;
        lines | (cpus << 5)
    }

    /// The GICD_ITARGETSR byte of `intid` as vCPU `vcpu` reads it: for INTIDs
    /// 0-31 its own CPU interface (IHI 0048B.b 4.3.12: "each field returns a
    /// value that corresponds only to the processor reading the register"),
    /// for an SPI the vCPU it is routed to.
    fn itargets_byte(&self, vcpu: usize, intid: u32) -> u8 {
        if (intid as usize) < NR_PRIVATE {
            return 1u8.checked_shl(vcpu as u32).unwrap_or(0);
        }
        match self.irq(None, intid) {
            Some(irq) => self
                .route_target(irq.route)
                .filter(|&t| t < 8)
                .map_or(0, |t| 1 << t),
            None => 0,
        }
    }

    fn itargets_write_byte(&mut self, intid: u32, mask: u8) {
        if intid < FIRST_SPI || self.irq(None, intid).is_none() {
            return;
        }
        let target = (mask != 0).then(|| mask.trailing_zeros() as usize);
        let route = match target.and_then(|t| self.cfg.vcpu_mpidrs.get(t)) {
            Some(&m) => super::route_to_mpidr(m),
            None => NO_TARGET,
        };
        // Kick both the old and the new owner.
        self.touch(None, intid);
        let irq = self.irq_mut(None, intid).expect("checked above");
        irq.route = route;
        let hw = irq.hw_intid;
        self.touch(None, intid);
        if let (Some(p), Some(v)) = (hw, self.route_target(route)) {
            self.actions
                .push(HwAction::RoutePhysicalSpi { intid: p, vcpu: v });
        }
    }

    /// A read by vCPU `vcpu` of the virtual GICv2 distributor.
    pub fn gicd_v2_read(&self, vcpu: usize, offset: u64, size: u8) -> u64 {
        if let Some((reg, word)) = BitReg::at(offset) {
            if size != 4 || reg == BitReg::Group {
                return 0;
            }
            return self.bitreg_read(frame_for(vcpu, word as u32 * 32), reg, word) as u64;
        }
        match offset {
            0x400..=0x7FF => {
                let byte = offset - GICD_IPRIORITYR;
                self.priority_read(frame_for(vcpu, byte as u32), byte, size)
            }
            0x800..=0xBFF if size == 1 || size == 4 => {
                let first = (offset - GICD_ITARGETSR) as u32;
                (0..size as u32).fold(0u64, |acc, i| {
                    acc | (self.itargets_byte(vcpu, first + i) as u64) << (8 * i)
                })
            }
            0xC00..=0xCFF if size == 4 => {
                let word = (offset - GICD_ICFGR) / 4;
                self.icfgr_read(frame_for(vcpu, word as u32 * 16), word) as u64
            }
            0xF10..=0xF2F if size == 1 || size == 4 => {
                // CPENDSGIR / SPENDSGIR: a byte per SGI, a bit per source.
                let first = ((offset - GICD_CPENDSGIR) % 16) as u32;
                (0..size as u32).fold(0u64, |acc, i| {
                    let pending = self
                        .irq(Some(vcpu), first + i)
                        .is_some_and(|irq| irq.pending_latch);
                    acc | (pending as u64) << (8 * i)
                })
            }
            GICD_CTLR if size == 4 => self.enable_grp1 as u64,
            GICD_TYPER if size == 4 => self.gicd_v2_typer() as u64,
            GICD_IIDR if size == 4 => iidr() as u64,
            GICD_ICPIDR2 if size == 4 => icpidr2() as u64,
            // GICD_SGIR is write-only; the rest is reserved or
            // IMPLEMENTATION DEFINED: RAZ/WI.
            _ => 0,
        }
    }

    /// A write by vCPU `vcpu` to the virtual GICv2 distributor. Returns nothing;
    /// the vCPUs to kick are in the kick marks as for every change.
    pub fn gicd_v2_write(&mut self, vcpu: usize, offset: u64, size: u8, value: u64) {
        if let Some((reg, word)) = BitReg::at(offset) {
            if size == 4 && reg != BitReg::Group {
                let frame = frame_for(vcpu, word as u32 * 32);
                self.bitreg_write(frame, reg, word, value as u32);
            }
            return;
        }
        match offset {
            0x400..=0x7FF => {
                let byte = offset - GICD_IPRIORITYR;
                self.priority_write(frame_for(vcpu, byte as u32), byte, size, value)
            }
            0x800..=0xBFF if size == 1 || size == 4 => {
                let first = (offset - GICD_ITARGETSR) as u32;
                for i in 0..size as u32 {
                    self.itargets_write_byte(first + i, (value >> (8 * i)) as u8);
                }
            }
            // ICFGR0 (SGIs) is read-only, ICFGR1 (PPIs) too here (IHI 0048B.b
            // 4.3.13: PPI configuration is IMPLEMENTATION DEFINED).
            0xC00..=0xCFF if size == 4 => {
                let word = (offset - GICD_ICFGR) / 4;
                if word >= 2 {
                    self.icfgr_write(Frame::Dist, word, value as u32);
                }
            }
            GICD_SGIR if size == 4 => {
                let (intid, targets) =
                    super::sgi::gicd_sgir_targets(value as u32, vcpu, self.nr_vcpus());
                for t in targets {
                    self.private[t][intid as usize].pending_latch = true;
                    self.touch(Some(t), intid);
                }
            }
            0xF10..=0xF2F if size == 1 || size == 4 => {
                let set = offset >= GICD_SPENDSGIR;
                let first = ((offset - GICD_CPENDSGIR) % 16) as u32;
                for i in 0..size as u32 {
                    if (value >> (8 * i)) as u8 == 0 {
                        continue;
                    }
                    let intid = first + i;
                    if let Some(irq) = self.irq_mut(Some(vcpu), intid) {
                        irq.pending_latch = set;
                        self.touch(Some(vcpu), intid);
                    }
                }
            }
            GICD_CTLR if size == 4 => {
                let enable = value & 1 != 0;
                if enable != self.enable_grp1 {
                    self.enable_grp1 = enable;
                    self.kick_all();
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::lr;
    use super::super::{HwAction, Vgic, VgicConfig, VgicError};
    use super::*;

    fn v2(n: usize) -> Vgic {
        let mut c = VgicConfig::new(n, 64);
        c.v2 = true;
        Vgic::new(c).unwrap()
    }

    /// What a guest's GICv2 driver does first: forwarding on.
    fn enabled(n: usize) -> Vgic {
        let mut v = v2(n);
        v.gicd_v2_write(0, GICD_CTLR, 4, 1);
        v
    }

    fn vintids(v: &mut Vgic, vcpu: usize) -> alloc::vec::Vec<u32> {
        let e = v.flush_lrs(vcpu);
        e.lrs.iter().map(|&l| lr::decode(l).vintid).collect()
    }

    #[test]
    fn at_most_eight_vcpus() {
        let mut c = VgicConfig::new(9, 64);
        c.v2 = true;
        assert_eq!(Vgic::new(c).err(), Some(VgicError::TooManyVcpusForGicV2(9)));
        assert!(Vgic::new(VgicConfig::new(9, 64)).is_ok());
    }

    #[test]
    fn identification() {
        let v = v2(3);
        let typer = v.gicd_v2_read(0, GICD_TYPER, 4) as u32;
        // 96 INTIDs: ITLinesNumber 2; 3 CPU interfaces; SecurityExtn 0.
        assert_eq!(typer & 0x1f, 2);
        assert_eq!((typer >> 5) & 7, 2);
        assert_eq!(typer & (1 << 10), 0);
        assert_eq!((v.gicd_v2_read(0, GICD_ICPIDR2, 4) >> 4) & 0xf, 2);
        // Write-only, reserved and GICv3-only offsets read as zero.
        assert_eq!(v.gicd_v2_read(0, GICD_SGIR, 4), 0);
        assert_eq!(v.gicd_v2_read(0, 0x6100, 8), 0);
        assert_eq!(v.gicd_v2_read(0, 0xFFE8, 4), 0);
    }

    #[test]
    fn groups_are_raz_wi_and_ctlr_enable_is_bit_0() {
        let mut v = v2(1);
        v.gicd_v2_write(0, 0x80 + 4, 4, u64::from(u32::MAX));
        assert_eq!(v.gicd_v2_read(0, 0x80 + 4, 4), 0);
        assert_eq!(v.gicd_v2_read(0, GICD_CTLR, 4), 0);
        v.gicd_v2_write(0, GICD_CTLR, 4, 1);
        assert_eq!(v.gicd_v2_read(0, GICD_CTLR, 4), 1);
        assert!(v.forwarding());
    }

    #[test]
    fn private_registers_are_banked_per_vcpu() {
        let mut v = enabled(2);
        // vCPU 1 enables PPI 27 and gives it a priority; vCPU 0 sees neither.
        v.gicd_v2_write(1, 0x100, 4, 1 << 27);
        v.gicd_v2_write(1, GICD_IPRIORITYR + 27, 1, 0x80);
        assert_eq!(v.gicd_v2_read(1, 0x100, 4), 1 << 27);
        assert_eq!(v.gicd_v2_read(0, 0x100, 4), 0);
        assert_eq!(v.gicd_v2_read(1, GICD_IPRIORITYR + 24, 4), 0x80 << 24);
        assert_eq!(v.gicd_v2_read(0, GICD_IPRIORITYR + 24, 4), 0);
        // Each vCPU reads its own CPU interface in ITARGETSR0-7, and cannot
        // change them.
        assert_eq!(v.gicd_v2_read(0, GICD_ITARGETSR, 4), 0x0101_0101);
        assert_eq!(v.gicd_v2_read(1, GICD_ITARGETSR + 28, 4), 0x0202_0202);
        v.gicd_v2_write(1, GICD_ITARGETSR + 28, 1, 1);
        assert_eq!(v.gicd_v2_read(1, GICD_ITARGETSR + 28, 1), 2);
        // SGIs edge, PPIs level, read-only (ICFGR0/1).
        assert_eq!(v.gicd_v2_read(0, GICD_ICFGR, 4), 0xaaaa_aaaa);
        v.gicd_v2_write(0, GICD_ICFGR + 4, 4, u64::from(u32::MAX));
        assert_eq!(v.gicd_v2_read(0, GICD_ICFGR + 4, 4), 0);
    }

    #[test]
    fn sgir_target_list_filters() {
        let mut v = enabled(3);
        for vcpu in 0..3 {
            v.gicd_v2_write(vcpu, 0x100, 4, 0xffff);
        }
        v.take_kicks_mask();
        // SGI 3 to CPU interfaces 0 and 2 from vCPU 1.
        v.gicd_v2_write(1, GICD_SGIR, 4, (0b101 << 16) | 3);
        assert_eq!(v.take_kicks_mask(), 0b101);
        // Seen pending in SPENDSGIR (byte 3 of the first word) by its
        // targets only.
        assert_eq!(v.gicd_v2_read(2, GICD_SPENDSGIR, 4), 1 << 24);
        assert_eq!(v.gicd_v2_read(1, GICD_SPENDSGIR, 4), 0);
        assert_eq!(vintids(&mut v, 0), [3]);
        assert_eq!(vintids(&mut v, 1), [0u32; 0]);
        // Cleared by CPENDSGIR before vCPU 2 took it.
        v.gicd_v2_write(2, GICD_CPENDSGIR + 3, 1, 0xff);
        assert_eq!(v.gicd_v2_read(2, GICD_SPENDSGIR, 4), 0);
        assert_eq!(vintids(&mut v, 2), [0u32; 0]);
        // All but self (0b01) from vCPU 0: vCPUs 1 and 2.
        v.gicd_v2_write(0, GICD_SGIR, 4, (0b01 << 24) | 7);
        assert_eq!(v.take_kicks_mask(), 0b110);
        // Self only (0b10).
        v.gicd_v2_write(2, GICD_SGIR, 4, (0b10 << 24) | 9);
        assert_eq!(v.take_kicks_mask(), 0b100);
        // SPENDSGIR makes an SGI pending on the writer: SGI 4 beside the SGI
        // 7 vCPU 0 sent it.
        v.gicd_v2_write(1, GICD_SPENDSGIR + 4, 1, 1);
        assert_eq!(v.gicd_v2_read(1, GICD_SPENDSGIR + 4, 4), (1 << 24) | 1);
    }

    #[test]
    fn itargetsr_routes_spis() {
        let mut v = enabled(2);
        v.gicd_v2_write(0, 0x100 + 4, 4, 1 << 8); // enable SPI 40
        // Reset: vCPU 0.
        assert_eq!(v.gicd_v2_read(0, GICD_ITARGETSR + 40, 1), 1);
        // Two targets: the lowest takes it (1-of-N).
        v.gicd_v2_write(0, GICD_ITARGETSR + 40, 1, 0b110);
        assert_eq!(v.gicd_v2_read(1, GICD_ITARGETSR + 40, 1), 0b010);
        v.take_kicks_mask();
        v.gicd_v2_write(0, 0x200 + 4, 4, 1 << 8); // pending
        assert_eq!(v.take_kicks_mask(), 0b10);
        assert_eq!(vintids(&mut v, 0), [0u32; 0]);
        assert_eq!(vintids(&mut v, 1), [40]);
        // No target: not forwarded anywhere.
        let mut v = enabled(2);
        v.gicd_v2_write(0, 0x100 + 4, 4, 1 << 8);
        v.gicd_v2_write(0, GICD_ITARGETSR + 40, 1, 0);
        v.gicd_v2_write(0, 0x200 + 4, 4, 1 << 8);
        assert_eq!(v.gicd_v2_read(0, GICD_ITARGETSR + 40, 1), 0);
        assert_eq!(vintids(&mut v, 0), [0u32; 0]);
        assert_eq!(vintids(&mut v, 1), [0u32; 0]);
    }

    #[test]
    fn a_hardware_linked_spi_follows_its_target() {
        let mut v = enabled(2);
        v.link_hw(None, 39, 39).unwrap();
        v.take_actions();
        v.gicd_v2_write(0, GICD_ITARGETSR + 36, 4, 0x0200_0000);
        assert_eq!(
            v.take_actions(),
            [HwAction::RoutePhysicalSpi { intid: 39, vcpu: 1 }]
        );
    }

    #[test]
    fn wake_looks_at_group_0_enable() {
        let mut v = enabled(1);
        v.gicd_v2_write(0, 0x100, 4, 1 << 2);
        v.gicd_v2_write(0, GICD_SGIR, 4, (0b10 << 24) | 2);
        let pmr = 0xf0 << 24;
        // GICV_CTLR.EnableGrp0 (GICH_VMCR.VMGrp0En, bit 0) on: wakes.
        assert!(v.wake_pending(0, pmr | 1));
        // Only Group 1 enabled: a vGICv2's Group 0 interrupts do not wake.
        assert!(!v.wake_pending(0, pmr | (1 << 1)));
    }

    #[test]
    fn unaligned_and_odd_sizes_are_ignored() {
        let mut v = enabled(1);
        v.gicd_v2_write(0, 0x100, 2, 0xffff);
        assert_eq!(v.gicd_v2_read(0, 0x100, 4), 0);
        assert_eq!(v.gicd_v2_read(0, 0x100, 8), 0);
        v.gicd_v2_write(0, GICD_ITARGETSR + 40, 2, 0x0202);
        assert_eq!(v.gicd_v2_read(0, GICD_ITARGETSR + 40, 1), 1);
        v.take_kicks_mask();
        v.gicd_v2_write(0, GICD_SGIR, 1, 0x3);
        assert_eq!(v.take_kicks_mask(), 0);
    }
}
