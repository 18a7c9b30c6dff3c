//! The emulated redistributors (GICR) of IHI 0069: per vCPU an RD_base
//! frame (control, identification, power) and an SGI_base frame (its SGIs and
//! PPIs), 64 KiB each, 0x2_0000 per vCPU in one contiguous region. No LPIs:
//! GICR_TYPER.PLPIS = VLPIS = 0, so GICR_CTLR.EnableLPIs, PROPBASER and PENDBASER
//! are RAZ/WI.

use tock_registers::{LocalRegisterCopy, register_bitfields};

use super::Vgic;
use super::dist::{BitReg, Frame, GIC_PIDR2_OFF, iidr, pidr2};

register_bitfields! [u64,
    /// GICR_TYPER (IHI 0069).
    pub GICR_TYPER [
        Affinity_Value OFFSET(32) NUMBITS(32) [],
        PPInum OFFSET(27) NUMBITS(5) [],
        VSGI OFFSET(26) NUMBITS(1) [],
        CommonLPIAff OFFSET(24) NUMBITS(2) [],
        Processor_Number OFFSET(8) NUMBITS(16) [],
        RVPEID OFFSET(7) NUMBITS(1) [],
        MPAM OFFSET(6) NUMBITS(1) [],
        DPGS OFFSET(5) NUMBITS(1) [],
        Last OFFSET(4) NUMBITS(1) [],
        DirectLPI OFFSET(3) NUMBITS(1) [],
        Dirty OFFSET(2) NUMBITS(1) [],
        VLPIS OFFSET(1) NUMBITS(1) [],
        PLPIS OFFSET(0) NUMBITS(1) [],
    ],
];

register_bitfields! [u32,
    /// GICR_WAKER (IHI 0069).
    pub GICR_WAKER [
        ChildrenAsleep OFFSET(2) NUMBITS(1) [],
        ProcessorSleep OFFSET(1) NUMBITS(1) [],
    ],
];

/// One redistributor: RD_base then SGI_base (IHI 0069).
pub const GICR_STRIDE: u64 = 0x2_0000;
pub const GICR_SGI_BASE: u64 = 0x1_0000;

pub const GICR_CTLR: u64 = 0x0000;
pub const GICR_IIDR: u64 = 0x0004;
pub const GICR_TYPER_OFF: u64 = 0x0008;
pub const GICR_WAKER_OFF: u64 = 0x0014;
pub const GICR_IPRIORITYR: u64 = 0x0400;
pub const GICR_ICFGR0: u64 = 0x0C00;

impl Vgic {
    /// GICR_TYPER of vCPU `vcpu`'s redistributor: its affinity (MPIDR Aff3..Aff0
    /// as Affinity_Value [63:32]), Processor_Number = its index, Last on the final
    /// frame of the region (IHI 0069: Last marks the highest redistributor
    /// in a contiguous region, which is where Linux's scan stops).
    pub fn gicr_typer(&self, vcpu: usize) -> u64 {
        let m = self.cfg.vcpu_mpidrs[vcpu];
        let aff = ((m >> 32) & 0xff) << 24
            | ((m >> 16) & 0xff) << 16
            | ((m >> 8) & 0xff) << 8
            | (m & 0xff);
        let mut r = LocalRegisterCopy::<u64, GICR_TYPER::Register>::new(0);
        r.modify(
            GICR_TYPER::Affinity_Value.val(aff) + GICR_TYPER::Processor_Number.val(vcpu as u64),
        );
        if vcpu + 1 == self.nr_vcpus() {
            r.modify(GICR_TYPER::Last::SET);
        }
        r.get()
    }

    fn gicr_waker(&self, vcpu: usize) -> u32 {
        let mut r = LocalRegisterCopy::<u32, GICR_WAKER::Register>::new(0);
        if self.processor_sleep[vcpu] {
            // ChildrenAsleep follows ProcessorSleep at once: the emulated
            // redistributor has no interface to quiesce.
            r.modify(GICR_WAKER::ProcessorSleep::SET + GICR_WAKER::ChildrenAsleep::SET);
        }
        r.get()
    }

    /// A guest read of the redistributor region (offset from its base).
    pub fn gicr_read(&self, offset: u64, size: u8) -> u64 {
        let vcpu = (offset / GICR_STRIDE) as usize;
        if vcpu >= self.nr_vcpus() {
            return 0;
        }
        let off = offset % GICR_STRIDE;
        if off >= GICR_SGI_BASE {
            return self.sgi_frame_read(vcpu, off - GICR_SGI_BASE, size);
        }
        match (off, size) {
            (GICR_TYPER_OFF, 8) => self.gicr_typer(vcpu),
            (GICR_TYPER_OFF, 4) => self.gicr_typer(vcpu) & 0xffff_ffff,
            (0x000C, 4) => self.gicr_typer(vcpu) >> 32,
            (GICR_IIDR, 4) => iidr() as u64,
            (GICR_WAKER_OFF, 4) => self.gicr_waker(vcpu) as u64,
            (GIC_PIDR2_OFF, 4) => pidr2() as u64,
            // GICR_CTLR (no LPIs, RWP = 0), STATUSR, PROPBASER, PENDBASER, the
            // LPI invalidation registers, SYNCR (Busy = 0): RAZ/WI.
            _ => 0,
        }
    }

    /// A guest write to the redistributor region.
    pub fn gicr_write(&mut self, offset: u64, size: u8, value: u64) {
        let vcpu = (offset / GICR_STRIDE) as usize;
        if vcpu >= self.nr_vcpus() {
            return;
        }
        let off = offset % GICR_STRIDE;
        if off >= GICR_SGI_BASE {
            return self.sgi_frame_write(vcpu, off - GICR_SGI_BASE, size, value);
        }
        if (off, size) == (GICR_WAKER_OFF, 4) {
            let r = LocalRegisterCopy::<u32, GICR_WAKER::Register>::new(value as u32);
            self.processor_sleep[vcpu] = r.is_set(GICR_WAKER::ProcessorSleep);
        }
    }

    fn sgi_frame_read(&self, vcpu: usize, off: u64, size: u8) -> u64 {
        let frame = Frame::Redist(vcpu);
        if let Some((reg, word)) = BitReg::at(off) {
            return if size == 4 && word == 0 {
                self.bitreg_read(frame, reg, 0) as u64
            } else {
                0
            };
        }
        match off {
            0x0400..=0x041F => self.priority_read(frame, off - GICR_IPRIORITYR, size),
            0x0C00..=0x0C07 if size == 4 => self.icfgr_read(frame, (off - GICR_ICFGR0) / 4) as u64,
            // IGRPMODR0, NSACR: RAZ/WI (DS = 1, Group 1 only).
            _ => 0,
        }
    }

    fn sgi_frame_write(&mut self, vcpu: usize, off: u64, size: u8, value: u64) {
        let frame = Frame::Redist(vcpu);
        if let Some((reg, word)) = BitReg::at(off) {
            if size == 4 && word == 0 {
                self.bitreg_write(frame, reg, 0, value as u32);
            }
            return;
        }
        if let 0x0400..=0x041F = off {
            self.priority_write(frame, off - GICR_IPRIORITYR, size, value);
        }
        // GICR_ICFGR0/1: SGIs edge, PPIs level, read-only.
    }
}
