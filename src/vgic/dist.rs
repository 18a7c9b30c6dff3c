//! The emulated distributor (GICD) of IHI 0069, and the per-INTID register
//! families it shares with the redistributors' SGI_base frame.
//!
//! Access sizes (IHI 0069, "GIC memory-mapped register access"): 32-bit
//! registers take word accesses; IPRIORITYR also bytes; IROUTER and GICR_TYPER
//! 64-bit or either 32-bit half. Other sizes read as zero and are ignored (the
//! architecture leaves them UNPREDICTABLE).

use tock_registers::{LocalRegisterCopy, register_bitfields};

use super::irq::{FIRST_SPI, NR_PRIVATE};
use super::{HwAction, Vgic};

register_bitfields! [u32,
    /// GICD_CTLR with GICD_CTLR.DS = 1 (IHI 0069, the single-Security-state
    /// layout).
    pub GICD_CTLR [
        RWP OFFSET(31) NUMBITS(1) [],
        E1NWF OFFSET(7) NUMBITS(1) [],
        DS OFFSET(6) NUMBITS(1) [],
        ARE OFFSET(4) NUMBITS(1) [],
        EnableGrp1 OFFSET(1) NUMBITS(1) [],
        EnableGrp0 OFFSET(0) NUMBITS(1) [],
    ],
    /// GICD_TYPER (IHI 0069).
    pub GICD_TYPER [
        ESPI_range OFFSET(27) NUMBITS(5) [],
        RSS OFFSET(26) NUMBITS(1) [],
        No1N OFFSET(25) NUMBITS(1) [],
        A3V OFFSET(24) NUMBITS(1) [],
        IDbits OFFSET(19) NUMBITS(5) [],
        DVIS OFFSET(18) NUMBITS(1) [],
        LPIS OFFSET(17) NUMBITS(1) [],
        MBIS OFFSET(16) NUMBITS(1) [],
        num_LPIs OFFSET(11) NUMBITS(5) [],
        SecurityExtn OFFSET(10) NUMBITS(1) [],
        NMI OFFSET(9) NUMBITS(1) [],
        ESPI OFFSET(8) NUMBITS(1) [],
        CPUNumber OFFSET(5) NUMBITS(3) [],
        ITLinesNumber OFFSET(0) NUMBITS(5) [],
    ],
    /// GICD_IIDR / GICR_IIDR (IHI 0069).
    pub GIC_IIDR [
        ProductID OFFSET(24) NUMBITS(8) [],
        Variant OFFSET(16) NUMBITS(4) [],
        Revision OFFSET(12) NUMBITS(4) [],
        Implementer OFFSET(0) NUMBITS(12) [],
    ],
    /// GICD_PIDR2 / GICR_PIDR2 (IHI 0069).
    pub GIC_PIDR2 [
        ArchRev OFFSET(4) NUMBITS(4) [],
        JEDEC OFFSET(3) NUMBITS(1) [],
        DES_1 OFFSET(0) NUMBITS(3) [],
    ],
];

pub const GICD_CTLR_OFF: u64 = 0x0000;
pub const GICD_TYPER_OFF: u64 = 0x0004;
pub const GICD_IIDR_OFF: u64 = 0x0008;
pub const GICD_IGROUPR: u64 = 0x0080;
pub const GICD_ISENABLER: u64 = 0x0100;
pub const GICD_ICENABLER: u64 = 0x0180;
pub const GICD_ISPENDR: u64 = 0x0200;
pub const GICD_ICPENDR: u64 = 0x0280;
pub const GICD_ISACTIVER: u64 = 0x0300;
pub const GICD_ICACTIVER: u64 = 0x0380;
pub const GICD_IPRIORITYR: u64 = 0x0400;
pub const GICD_ICFGR: u64 = 0x0C00;
pub const GICD_IROUTER: u64 = 0x6000;
/// Peripheral ID2, in both the GICD and the GICR RD_base frame.
pub const GIC_PIDR2_OFF: u64 = 0xFFE8;

/// GICD_IIDR / GICR_IIDR: Implementer 0x43B (JEP106 code of Arm, as the
/// architecture's own examples and KVM use), ProductID 0x46 ('F', Ferrovisor),
/// revision 0. Linux applies no erratum to this value.
pub fn iidr() -> u32 {
    let mut r = LocalRegisterCopy::<u32, GIC_IIDR::Register>::new(0);
    r.modify(GIC_IIDR::Implementer.val(0x43B) + GIC_IIDR::ProductID.val(0x46));
    r.get()
}

/// GICD_PIDR2 / GICR_PIDR2: ArchRev 3 = GICv3 (IHI 0069); the JEP106
/// bits give Arm's identity code bits [6:4] (0b011) with JEDEC = 1, as 0x3B.
pub fn pidr2() -> u32 {
    let mut r = LocalRegisterCopy::<u32, GIC_PIDR2::Register>::new(0);
    r.modify(GIC_PIDR2::ArchRev.val(3) + GIC_PIDR2::JEDEC::SET + GIC_PIDR2::DES_1.val(0b011));
    r.get()
}

/// The register families with one bit per INTID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BitReg {
    Group,
    SetEnable,
    ClearEnable,
    SetPending,
    ClearPending,
    SetActive,
    ClearActive,
}

impl BitReg {
    /// The family at a GICD or GICR SGI_base offset (the same offsets in both).
    pub(crate) fn at(offset: u64) -> Option<(BitReg, u64)> {
        let (base, reg) = match offset {
            0x0080..=0x00FC => (GICD_IGROUPR, BitReg::Group),
            0x0100..=0x017C => (GICD_ISENABLER, BitReg::SetEnable),
            0x0180..=0x01FC => (GICD_ICENABLER, BitReg::ClearEnable),
            0x0200..=0x027C => (GICD_ISPENDR, BitReg::SetPending),
            0x0280..=0x02FC => (GICD_ICPENDR, BitReg::ClearPending),
            0x0300..=0x037C => (GICD_ISACTIVER, BitReg::SetActive),
            0x0380..=0x03FC => (GICD_ICACTIVER, BitReg::ClearActive),
            _ => return None,
        };
        Some((reg, (offset - base) / 4))
    }
}

/// Which frame an access came through: the distributor (SPIs), or vCPU `n`'s
/// redistributor SGI_base frame (its SGIs and PPIs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    Dist,
    Redist(usize),
}

impl Frame {
    fn vcpu(self) -> Option<usize> {
        match self {
            Frame::Dist => None,
            Frame::Redist(v) => Some(v),
        }
    }
    /// Whether `intid` is reached through this frame: with affinity routing
    /// (ARE = 1), INTIDs 0-31 only through the redistributor, and the GICD's
    /// registers for them are RAZ/WI (IHI 0069, e.g. GICD_ISENABLER<n>: "When
    /// affinity routing is enabled, GICD_ISENABLER0 is RAZ/WI").
    fn serves(self, intid: u32) -> bool {
        match self {
            Frame::Dist => intid >= FIRST_SPI,
            Frame::Redist(_) => (intid as usize) < NR_PRIVATE,
        }
    }
}

impl Vgic {
    pub(crate) fn bitreg_read(&self, frame: Frame, reg: BitReg, word: u64) -> u32 {
        let mut out = 0u32;
        for b in 0..32u32 {
            let intid = word as u32 * 32 + b;
            if !frame.serves(intid) {
                continue;
            }
            let Some(irq) = self.irq(frame.vcpu(), intid) else {
                continue;
            };
            let bit = match reg {
                // Every implemented interrupt is Group 1 (RAO/WI).
                BitReg::Group => true,
                BitReg::SetEnable | BitReg::ClearEnable => irq.enabled,
                BitReg::SetPending | BitReg::ClearPending => irq.pending(),
                BitReg::SetActive | BitReg::ClearActive => irq.active,
            };
            out |= (bit as u32) << b;
        }
        out
    }

    pub(crate) fn bitreg_write(&mut self, frame: Frame, reg: BitReg, word: u64, value: u32) {
        for b in 0..32u32 {
            if value & (1 << b) == 0 {
                continue;
            }
            let intid = word as u32 * 32 + b;
            if !frame.serves(intid) {
                continue;
            }
            let vcpu = frame.vcpu();
            let owner_vcpu = self.owner(vcpu, intid).unwrap_or(0);
            let Some(irq) = self.irq_mut(vcpu, intid) else {
                continue;
            };
            let mut action = None;
            match reg {
                BitReg::Group => {}
                BitReg::SetEnable => irq.enabled = true,
                BitReg::ClearEnable => irq.enabled = false,
                BitReg::SetPending => irq.pending_latch = true,
                BitReg::ClearPending => {
                    // IHI 0069, GICD_ISPENDR<n>/GICD_ICPENDR<n>: clears a software-set pending state; a level
                    // interrupt whose line is asserted stays pending.
                    irq.pending_latch = false;
                    if irq.hw_pending {
                        // The physical interrupt was acknowledged at EL2 and is
                        // active there: give it back so it can be signalled again.
                        irq.hw_pending = false;
                        action = irq.hw_intid;
                    }
                }
                BitReg::SetActive => irq.active = true,
                BitReg::ClearActive => {
                    if irq.active_hw {
                        irq.active_hw = false;
                        action = irq.hw_intid;
                    }
                    irq.active = false;
                    irq.active_vcpu = None;
                }
            }
            if let Some(p) = action {
                self.actions.push(HwAction::DeactivatePhysical {
                    vcpu: owner_vcpu,
                    intid: p,
                });
            }
            self.touch(vcpu, intid);
        }
    }

    /// IPRIORITYR: one byte per INTID, byte or word access.
    pub(crate) fn priority_read(&self, frame: Frame, byte: u64, size: u8) -> u64 {
        if size != 1 && size != 4 {
            return 0;
        }
        let mut out = 0u64;
        for i in 0..size as u64 {
            let intid = (byte + i) as u32;
            if let Some(irq) = self
                .irq(frame.vcpu(), intid)
                .filter(|_| frame.serves(intid))
            {
                out |= (irq.priority as u64) << (8 * i);
            }
        }
        out
    }

    pub(crate) fn priority_write(&mut self, frame: Frame, byte: u64, size: u8, value: u64) {
        if size != 1 && size != 4 {
            return;
        }
        let mask = self.priority_mask();
        for i in 0..size as u64 {
            let intid = (byte + i) as u32;
            if !frame.serves(intid) {
                continue;
            }
            if let Some(irq) = self.irq_mut(frame.vcpu(), intid) {
                irq.priority = (value >> (8 * i)) as u8 & mask;
                self.touch(frame.vcpu(), intid);
            }
        }
    }

    /// ICFGR: two bits per INTID, Int_config[1] = 1 for edge (IHI 0069,
    /// GICD_ICFGR<n>); Int_config[0] is RES0. SGIs are edge and PPIs level, both
    /// read-only here (configurable PPIs are IMPLEMENTATION DEFINED).
    pub(crate) fn icfgr_read(&self, frame: Frame, word: u64) -> u32 {
        let mut out = 0u32;
        for f in 0..16u32 {
            let intid = word as u32 * 16 + f;
            if !frame.serves(intid) {
                continue;
            }
            if self
                .irq(frame.vcpu(), intid)
                .is_some_and(|irq| irq.trigger == super::irq::Trigger::Edge)
            {
                out |= 0b10 << (2 * f);
            }
        }
        out
    }

    pub(crate) fn icfgr_write(&mut self, frame: Frame, word: u64, value: u32) {
        if frame != Frame::Dist {
            return;
        }
        for f in 0..16u32 {
            let intid = word as u32 * 16 + f;
            if !frame.serves(intid) {
                continue;
            }
            let edge = value & (0b10 << (2 * f)) != 0;
            if let Some(irq) = self.irq_mut(None, intid) {
                let before = irq.pending();
                irq.trigger = if edge {
                    super::irq::Trigger::Edge
                } else {
                    super::irq::Trigger::Level
                };
                if irq.pending() != before {
                    self.touch(None, intid);
                }
            }
        }
    }

    fn gicd_ctlr(&self) -> u32 {
        let mut r = LocalRegisterCopy::<u32, GICD_CTLR::Register>::new(0);
        // ARE and DS are RAO/WI: affinity routing always on, one Security state
        // (IHI 0069: with DS = 1, ARE is the single ARE bit at [4]).
        r.modify(GICD_CTLR::ARE::SET + GICD_CTLR::DS::SET);
        if self.enable_grp0 {
            r.modify(GICD_CTLR::EnableGrp0::SET);
        }
        if self.enable_grp1 {
            r.modify(GICD_CTLR::EnableGrp1::SET);
        }
        // RWP = 0: every write has taken effect when it completes.
        r.get()
    }

    /// GICD_TYPER for this configuration.
    pub fn gicd_typer(&self) -> u32 {
        let mut r = LocalRegisterCopy::<u32, GICD_TYPER::Register>::new(0);
        r.modify(
            // (ITLinesNumber + 1) * 32 INTIDs, SGIs and PPIs included.
            GICD_TYPER::ITLinesNumber.val((FIRST_SPI + self.cfg.nr_spis) / 32 - 1)
                // INTIDs below 1024 only (no LPIs): 10 bits, IDbits = bits - 1.
                + GICD_TYPER::IDbits.val(9)
                // 1-of-N routing (GICD_IROUTER.IRM) is not supported: IRM RAZ/WI.
                + GICD_TYPER::No1N::SET,
        );
        // LPIS, MBIS, DVIS, ESPI, NMI = 0; SecurityExtn = 0 (DS = 1); A3V = 0 and
        // RSS = 0: vCPU affinities have Aff3 = 0 and Aff0 < 16 (vm::controls::vmpidr).
        // CPUNumber is only meaningful without affinity routing: 0.
        r.get()
    }

    /// A guest read of the distributor window.
    pub fn gicd_read(&self, offset: u64, size: u8) -> u64 {
        if let Some((reg, word)) = BitReg::at(offset) {
            return if size == 4 {
                self.bitreg_read(Frame::Dist, reg, word) as u64
            } else {
                0
            };
        }
        match offset {
            0x0400..=0x07FF => {
                return self.priority_read(Frame::Dist, offset - GICD_IPRIORITYR, size);
            }
            0x0C00..=0x0CFF if size == 4 => {
                return self.icfgr_read(Frame::Dist, (offset - GICD_ICFGR) / 4) as u64;
            }
            0x6100..=0x7FDF => return self.irouter_read(offset, size),
            _ => {}
        }
        if size != 4 {
            return 0;
        }
        match offset {
            GICD_CTLR_OFF => self.gicd_ctlr() as u64,
            GICD_TYPER_OFF => self.gicd_typer() as u64,
            GICD_IIDR_OFF => iidr() as u64,
            GIC_PIDR2_OFF => pidr2() as u64,
            // GICD_TYPER2, STATUSR, the message-based SPI registers (MBIS = 0),
            // ITARGETSR (ARE = 1), IGRPMODR and NSACR (DS = 1), SGIR and
            // C/SPENDSGIR (ARE = 1), other ID registers: RAZ/WI.
            _ => 0,
        }
    }

    /// A guest write to the distributor window.
    pub fn gicd_write(&mut self, offset: u64, size: u8, value: u64) {
        if let Some((reg, word)) = BitReg::at(offset) {
            if size == 4 {
                self.bitreg_write(Frame::Dist, reg, word, value as u32);
            }
            return;
        }
        match offset {
            0x0400..=0x07FF => {
                self.priority_write(Frame::Dist, offset - GICD_IPRIORITYR, size, value)
            }
            0x0C00..=0x0CFF if size == 4 => {
                self.icfgr_write(Frame::Dist, (offset - GICD_ICFGR) / 4, value as u32)
            }
            0x6100..=0x7FDF => self.irouter_write(offset, size, value),
            GICD_CTLR_OFF if size == 4 => {
                let r = LocalRegisterCopy::<u32, GICD_CTLR::Register>::new(value as u32);
                let grp1 = r.is_set(GICD_CTLR::EnableGrp1);
                self.enable_grp0 = r.is_set(GICD_CTLR::EnableGrp0);
                if grp1 != self.enable_grp1 {
                    self.enable_grp1 = grp1;
                    self.kick_all();
                }
            }
            _ => {}
        }
    }

    /// GICD_IROUTER<n> for SPI n at 0x6000 + 8n: 64-bit, or a 32-bit half.
    fn irouter_read(&self, offset: u64, size: u8) -> u64 {
        let rel = offset - GICD_IROUTER;
        let intid = (rel / 8) as u32;
        let Some(irq) = self.irq(None, intid).filter(|_| intid >= FIRST_SPI) else {
            return 0;
        };
        match (size, rel % 8) {
            (8, 0) => irq.route,
            (4, 0) => irq.route & 0xffff_ffff,
            (4, 4) => irq.route >> 32,
            _ => 0,
        }
    }

    fn irouter_write(&mut self, offset: u64, size: u8, value: u64) {
        let rel = offset - GICD_IROUTER;
        let intid = (rel / 8) as u32;
        let Some(old) = self
            .irq(None, intid)
            .filter(|_| intid >= FIRST_SPI)
            .map(|i| i.route)
        else {
            return;
        };
        let new = match (size, rel % 8) {
            (8, 0) => value,
            (4, 0) => (old & !0xffff_ffff) | (value & 0xffff_ffff),
            (4, 4) => (old & 0xffff_ffff) | (value << 32),
            _ => return,
        };
        // Only the affinity fields are stored; IRM (bit 31) is RAZ/WI since
        // GICD_TYPER.No1N = 1.
        let new = super::route_to_mpidr(new);
        self.touch(None, intid);
        let irq = self.irq_mut(None, intid).expect("checked above");
        irq.route = new;
        let hw = irq.hw_intid;
        self.touch(None, intid);
        if let (Some(p), Some(v)) = (hw, self.route_target(new)) {
            self.actions
                .push(HwAction::RoutePhysicalSpi { intid: p, vcpu: v });
        }
    }
}
