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
