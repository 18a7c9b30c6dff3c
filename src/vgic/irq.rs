//! The software state of one virtual interrupt (IHI 0069, "Interrupt states":
//! inactive, pending, active, active and pending) plus the configuration the
//! distributor and redistributors hold for it.

/// An interrupt's trigger mode (GICD_ICFGR<n>.Int_config<x>[1]: 0 level, 1 edge).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    Level,
    Edge,
}

/// The first SPI (IHI 0069, "INTIDs": 0-15 SGI, 16-31 PPI, 32-1019 SPI).
pub const FIRST_SPI: u32 = 32;
/// SGIs and PPIs: banked per vCPU.
pub const NR_PRIVATE: usize = 32;
/// The last INTID the architecture gives SPIs (1020-1023 are special).
pub const MAX_SPI_INTID: u32 = 1019;

#[derive(Clone, Copy, Debug)]
pub(crate) struct Irq {
    pub enabled: bool,
    /// Pending set by an edge, an SGI, or a write to ISPENDR (IHI 0069, GICD_ISPENDR<n>/GICD_ICPENDR<n>: for a
    /// level-sensitive interrupt a software-set pending state stays until the
    /// interrupt is acknowledged or ICPENDR is written, whatever the line does).
    pub pending_latch: bool,
    /// The input line of an emulated level-sensitive interrupt (a device model's
    /// output). Ignored for edge-triggered ones except to detect a rising edge.
    pub line_level: bool,
    /// A hardware-linked interrupt asserted at the physical GIC, acknowledged by
    /// the hypervisor and left active there; the guest's deactivation of the
    /// virtual interrupt deactivates the physical one (ICH_LR<n>_EL2.HW).
    pub hw_pending: bool,
    pub active: bool,
    /// The active state belongs to a hardware-linked LR (the physical interrupt is
    /// active too).
    pub active_hw: bool,
    pub priority: u8,
    pub trigger: Trigger,
    /// The physical INTID this interrupt is linked to, if any.
    pub hw_intid: Option<u32>,
    /// A hardware-linked interrupt fired again while its previous instance
    /// was still in a vCPU's LRs (which the vCPU has since deactivated: the
    /// physical interrupt could not fire otherwise). The read-back of those
    /// LRs must not lose it.
    pub hw_refired: bool,
    /// GICD_IROUTER<n> (SPIs only): Aff3.Aff2.Aff1.Aff0, IRM always 0.
    pub route: u64,
    /// The vCPU whose list registers held this interrupt at its last entry, until
    /// that vCPU's next exit reads them back.
    pub lr_vcpu: Option<usize>,
    /// The vCPU that acknowledged this (SPI) interrupt while it is active: its
    /// deactivation must come from that vCPU's CPU interface.
    pub active_vcpu: Option<usize>,
}

impl Irq {
    pub const fn new(trigger: Trigger) -> Self {
        Irq {
            enabled: false,
            pending_latch: false,
            line_level: false,
            hw_pending: false,
            active: false,
            active_hw: false,
            priority: 0,
            trigger,
            hw_intid: None,
            hw_refired: false,
            route: 0,
            lr_vcpu: None,
            active_vcpu: None,
        }
    }

    /// IHI 0069: the pending state as the distributor sees it.
    pub fn pending(&self) -> bool {
        self.pending_latch || self.hw_pending || (self.trigger == Trigger::Level && self.line_level)
    }

    /// Whether the interrupt may want an LR or wake a vCPU: pending, active, or
    /// in some vCPU's LRs.
    pub fn is_hot(&self) -> bool {
        self.pending() || self.active || self.lr_vcpu.is_some()
    }

    /// A device drives the interrupt's input line.
    pub fn set_line(&mut self, level: bool) {
        if self.trigger == Trigger::Edge && level && !self.line_level {
            self.pending_latch = true;
        }
        self.line_level = level;
    }

    /// Back to the reset state, keeping what the hypervisor (not the guest)
    /// configured: the trigger of read-only-configured INTIDs, the hardware link
    /// and the emulated line level.
    pub fn reset(&mut self, trigger: Trigger) {
        let hw = self.hw_intid;
        let line = self.line_level;
        *self = Irq::new(trigger);
        self.hw_intid = hw;
        self.line_level = line;
    }
}
