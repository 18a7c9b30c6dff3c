//! The virtual GICv3 a VM sees: an emulated distributor (GICD) and one emulated
//! redistributor (GICR: RD_base + SGI_base frames) per vCPU on the MMIO bus, no
//! LPIs and no ITS (GICD_TYPER.LPIS = 0, MBIS = 0), one Security state as a
//! Non-secure guest sees it (GICD_CTLR.DS = 1, ARE RAO/WI), every interrupt
//! Group 1 (IGROUPR RAO/WI). Interrupts reach the guest through the GICv3
//! virtualization hardware: the list registers (ICH_LR<n>_EL2) of the virtual CPU
//! interface, which the guest then drives with its own ICC_* system registers
//! (really the ICV_* ones) without exits.
//!
//! Everything here is plain data and runs under `cargo test`; the hardware side
//! (ICH_* accessors, physical GIC bring-up) is `crate::arch::aarch64::gic`, which
//! implements [`ListRegisters`].
//!
//! Files: [`irq`] per-interrupt state, [`dist`] GICD registers, [`redist`] GICR
//! registers, [`lr`] list-register encoding and the load/read-back logic, [`lr_v2`]
//! the GICv2 list-register layout (GICH_LR) and its conversion, [`sgi`]
//! SGI decoding, [`host`] pure values and decisions for the physical GIC,
//! [`mmio`] the bus devices.
//!
//! # Integration (what the run loop does)
//!
//! Build: one [`Vgic`] per VM, shared by its vCPUs as a [`SharedVgic`]
//! (`Arc<spin::Mutex<Vgic>>`), from [`VgicConfig::new`]`(nr_vcpus, nr_spis)` with
//! `nr_lrs = gic::nr_list_registers()` and `priority_bits =
//! gic::virtual_priority_bits()` (both from ICH_VTR_EL2; take the smallest over
//! the CPUs if they differ). [`mmio::attach`] puts the GICD and GICR windows on
//! the VM's [`MmioBus`](crate::devices::MmioBus) at the guest's layout
//! (`guest_fdt::VIRT_GICD.base`, `VIRT_GICR_BASE`). Link the hardware interrupts:
//! [`crate::timer::link_virtual_timer`] (virtual PPI 27 to physical PPI 27 on
//! every vCPU), `link_hw(None, vintid, pintid)` for each passthrough SPI (and
//! route the physical SPI to the CPU of the vCPU the guest routes it to:
//! [`HwAction::RoutePhysicalSpi`]). The guest's device tree must offer at least
//! `nr_spis` SPIs' worth of INTIDs for its devices (the UART is SPI 1 = INTID 33).
//!
//! Physical GIC bring-up (`crate::arch::aarch64::gic`): on the boot CPU,
//! `Distributor::new(gicd).init(boot_mpidr)` (every SPI Group 1, disabled, routed
//! to the boot CPU; ARE and Group 1 on). On every CPU: `Redistributor::find(
//! regions, mpidr)` then `.init()` (wakes it: GICR_WAKER.ProcessorSleep = 0, waits
//! for ChildrenAsleep = 0; SGIs/PPIs Group 1, disabled), `.enable_private(..)` for
//! 25 (maintenance), 27 (virtual timer), [`host::KICK_SGI`], and 26 (EL2 timer) if
//! the emulated CNTP is used; `gic::init_cpu_interface()` (ICC_SRE_EL2 = SRE |
//! Enable | DIB | DFB, ICC_PMR_EL1 = 0xff, ICC_BPR1_EL1 = 0, ICC_CTLR_EL1.EOImode =
//! 1, ICC_IGRPEN1_EL1 = 1). When a vCPU (re)starts on its CPU:
//! `gic::reset_virtual_cpu_interface()` (LRs and ICH_AP0R/AP1R<n> zero,
//! ICH_VMCR_EL2 = [`host::ich_vmcr_reset`], ICC_SRE_EL1 = SRE, ICH_HCR_EL2 = En),
//! and on VM reset `Vgic::reset()` plus its [`HwAction`]s.
//!
//! On every exit, before handling it: `vgic.lock().save(vcpu, &mut gic::IchRegs)`.
//! That reads back the LRs this vCPU used, folds them into software state
//! (`lr::sync`), clears them and writes ICH_HCR_EL2 = En, so no maintenance
//! condition stays asserted while EL2 runs (EL2 idles in WFI with IRQs masked; a
//! level maintenance interrupt left asserted would wake it for ever). Then
//! `timer::resample_virtual_timer(&mut vgic, vcpu, read_cntv_ctl_el0())` and, if
//! the CNTP emulation is used, `ptimer.sync(&mut vgic, vcpu, cntpct)`.
//!
//! Before every entry: `vgic.lock().restore(vcpu, &mut gic::IchRegs)`: chooses and
//! writes the LRs and ICH_HCR_EL2 (UIE set when interrupts wait). Then drain
//! `take_kicks()`: for each vCPU index other than this one, send the physical SGI
//! [`host::KICK_SGI`] to the CPU it runs on (`gic::send_sgi(host::sgi1r_for(
//! KICK_SGI, that_cpu_mpidr))`), so it exits and reloads its LRs (or leaves WFI);
//! and drain `take_actions()`: `DeactivatePhysical` of a PPI is
//! `Redistributor::deactivate_private` on that vCPU's CPU's redistributor (any CPU
//! may write it), of an SPI `Distributor::deactivate_spi`; `RoutePhysicalSpi` is
//! `Distributor::route_spi`. Every exit handler that changes interrupt state
//! (MMIO to GICD/GICR, SGI traps, device models) runs under the same lock and
//! leaves its kicks in the same place.
//!
//! Idle (trapped WFI, PSCI CPU_SUSPEND): `wfi` at EL2 while
//! `!vgic.wake_pending(vcpu, gic::read_ich_vmcr())` and the virtual timer is not
//! asserted, taking physical IRQs as below after each wake-up.
//!
//! A physical IRQ (exit cause IRQ, or woken from the idle WFI): loop
//! `gic::acknowledge()` (ICC_IAR1_EL1) until 1023; for each,
//! `let k = host::classify(intid, &passthrough)`, act on it, then
//! `gic::complete(intid, k.completion())`:
//! - 27, the virtual timer ([`host::PhysIrq::VirtualTimer`]): priority drop only
//!   (ICC_EOIR1_EL1); it stays active at the physical GIC. Then
//!   `timer::on_virtual_timer_irq(&mut vgic, vcpu)`, which makes virtual PPI 27
//!   pending, hardware-linked: the guest's deactivation deactivates the physical
//!   interrupt (ICH_LR.HW = 1, pINTID 27).
//! - a passthrough SPI ([`host::PhysIrq::Passthrough`]): likewise priority drop only,
//!   then `vgic.inject_hw(None, vintid)` on that VM's vGIC.
//! - 25, maintenance: drop and deactivate (ICC_DIR_EL1), nothing else: the `save`
//!   at this exit already read the LRs back, the next `restore` refills them
//!   (underflow), and a level interrupt whose EOI maintenance fired is loaded
//!   again if its device still asserts it. `gic::read_ich_misr()` says why, for
//!   logs ([`host::misr_reasons`]); read it before `save` clears the cause.
//! - 26, the EL2 physical timer (CNTHP): the run loop's own (a turn's end, a
//!   waiting vCPU's timer deadline, the console's wake-up): drop and deactivate,
//!   then the run loop looks at its vCPUs again. The guest's EL1 physical timer
//!   (CNTP, PPI 30) is its own, hardware-linked like the virtual one.
//! - the kick SGI: drop and deactivate; nothing else (the exit was the point).
//! - the hypervisor's own (its UART, SPI 33 on `virt`) and anything else: drop,
//!   deactivate, and hand it to its driver.
//!
//! Because ICC_CTLR_EL1.EOImode = 1 at EL2, priority drop and deactivation are
//! separate (IHI 0069, ICC_CTLR_EL1.EOImode), which is what allows a
//! hardware-linked interrupt to be dropped at EL2 but deactivated by the guest.
//!
//! Emulated device interrupts: the device model (e.g. the PL011 on SPI 33) calls
//! `vgic.set_level(None, 33, level)` (an SPI; a PPI names its vCPU) whenever its
//! output changes: at the end of the MMIO access that changed it, or when input
//! arrives for it (then kick the SPI's target). Level interrupts are loaded with
//! ICH_LR.EOI = 1, so the guest's deactivation exits and the line is looked at
//! again.
//!
//! # Which guest system-register accesses trap
//!
//! With HCR_EL2.IMO = FMO = 1 (vm::controls), a guest's EL1 accesses to the
//! ICC_* registers that have an ICV_* counterpart go to the virtual CPU interface
//! in hardware and do not trap (IAR, EOIR, DIR, HPPIR, BPR, AP0R/AP1R, RPR, CTLR,
//! PMR, IGRPEN0/1). They trap to EL2 only under ICH_HCR_EL2.TC (common
//! registers: CTLR, DIR, PMR, RPR and the SGI registers), TALL0, TALL1, TDIR, or
//! the fine-grained HFGRTR/HFGWTR_EL2 ICC_IGRPENn bits; this vGIC sets none of them.
//!
//! The SGI generation registers have no ICV_* counterpart: per their accessibility
//! pseudocode in the Arm ARM (ICC_SGI1R_EL1, ICC_ASGI1R_EL1, ICC_SGI0R_EL1), an EL1
//! write traps to EL2 (EC 0x18) when ICH_HCR_EL2.TC = 1, or HCR_EL2.IMO = 1
//! (SGI1R, ASGI1R), or HCR_EL2.FMO = 1 (SGI0R). So with IMO = FMO = 1 all three
//! always trap, and the integration must route EC 0x18 accesses to
//! S3_0_C12_C11_5/6/7 to [`Vgic::trap_sysreg`] (which also answers an MRS of them,
//! they are write-only: UNDEFINED). ICC_SRE_EL1 traps only if ICC_SRE_EL2.Enable
//! = 0; `gic::init_cpu_interface` sets Enable = 1 so it does not. No other ICC
//! access needs handling.
//!
//! The timers' registers (CNTV_*, CNTP_*) do not trap: CNTHCTL_EL2.EL1PCEN =
//! EL1PCTEN = 1 (vm::controls), and src/timer saves them with the vCPU.

pub mod dist;
pub mod dist_v2;
pub mod host;
pub mod irq;
pub mod lr;
pub mod lr_v2;
pub mod redist;
pub mod sgi;
pub mod shared;

#[cfg(test)]
mod tests;

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use tock_registers::{LocalRegisterCopy, register_bitfields};

use crate::sysreg::{Mpidr, SysReg};
use crate::vm::exit::SysRegResult;
use irq::{FIRST_SPI, Irq, MAX_SPI_INTID, NR_PRIVATE, Trigger};
use lr::{Candidate, LrShadow};
use sgi::SgiRegister;

pub use shared::VmGic;

/// vCPUs a vGIC serves at most (its kick masks are 64-bit).
pub const MAX_VCPUS: usize = 64;

/// The shape of a VM's vGIC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VgicConfig {
    /// MPIDR of each vCPU, by index (`vm::controls::vmpidr`).
    pub vcpu_mpidrs: Vec<u64>,
    /// SPIs (a multiple of 32: INTIDs 32 .. 32 + nr_spis).
    pub nr_spis: u32,
    /// List registers of the virtual CPU interface (ICH_VTR_EL2.ListRegs + 1).
    pub nr_lrs: usize,
    /// Priority bits the virtual CPU interface implements (ICH_VTR_EL2.PRIbits + 1);
    /// the emulated IPRIORITYR keep as many (IHI 0069, "Interrupt prioritization": unimplemented low-order
    /// priority bits are RAZ/WI).
    pub priority_bits: u8,
    /// The guest sees a GICv2 ([`dist_v2`]): a GICv2 host's virtual CPU
    /// interface, every interrupt Group 0.
    pub v2: bool,
}

impl VgicConfig {
    /// `nr_vcpus` vCPUs with `vmpidr` MPIDRs, 4 LRs and 5 priority bits (the GICv3
    /// minimum QEMU also has) until the hardware is asked.
    pub fn new(nr_vcpus: usize, nr_spis: u32) -> Self {
        VgicConfig {
            vcpu_mpidrs: (0..nr_vcpus).map(crate::vm::controls::vmpidr).collect(),
            nr_spis,
            nr_lrs: 4,
            priority_bits: 5,
            v2: false,
        }
    }
}

/// A vGIC that cannot be built, or a link that cannot be made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VgicError {
    NoVcpus,
    /// More vCPUs than [`MAX_VCPUS`].
    TooManyVcpus(usize),
    /// More than 8 vCPUs on a vGICv2 (8-bit CPU target lists, IHI 0048B.b 1.4.1).
    TooManyVcpusForGicV2(usize),
    /// SPIs not a multiple of 32 or beyond INTID 1019.
    BadSpiCount(u32),
    /// Not 1..=16 list registers.
    BadLrCount(usize),
    /// Not 4..=8 priority bits (GICv3 requires at least 16 levels; 5 bits for a
    /// Non-secure view, 4 is allowed by ICH_VTR_EL2.PRIbits).
    BadPriorityBits(u8),
    /// No such interrupt (or a private one named without its vCPU).
    NoSuchInterrupt(u32),
}

impl fmt::Display for VgicError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VgicError::NoVcpus => write!(f, "a vGIC needs at least one vCPU"),
            VgicError::TooManyVcpus(n) => write!(f, "{n} vCPUs: at most {MAX_VCPUS}"),
            VgicError::TooManyVcpusForGicV2(n) => write!(
                f,
                "{n} vCPUs: the host's GIC is a GICv2, whose guests get a GICv2 with at most 8 CPU interfaces"
            ),
            VgicError::BadSpiCount(n) => {
                write!(f, "{n} SPIs: must be a multiple of 32, at most 960")
            }
            VgicError::BadLrCount(n) => write!(f, "{n} list registers: must be 1 to 16"),
            VgicError::BadPriorityBits(n) => write!(f, "{n} priority bits: must be 4 to 8"),
            VgicError::NoSuchInterrupt(i) => write!(f, "no interrupt with INTID {i}"),
        }
    }
}

/// A hardware effect a vGIC state change asks for (drained by the run loop).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HwAction {
    /// Deactivate physical interrupt `intid`, which the hypervisor acknowledged
    /// for a hardware-linked virtual interrupt whose guest-side state was cleared
    /// without a guest deactivation (ICPENDR/ICACTIVER writes, VM reset). For a
    /// PPI, on vCPU `vcpu`'s CPU (GICR_ICACTIVER0 of its redistributor, or
    /// ICC_DIR_EL1 there); for an SPI at the distributor (GICD_ICACTIVER).
    DeactivatePhysical { vcpu: usize, intid: u32 },
    /// The guest routed hardware-linked SPI `intid` (physical INTID) to `vcpu`:
    /// route the physical SPI to that vCPU's CPU (GICD_IROUTER).
    RoutePhysicalSpi { intid: u32, vcpu: usize },
}

/// The hardware side of the virtual CPU interface, as the arch layer gives it.
pub trait ListRegisters {
    fn read_lr(&self, n: usize) -> u64;
    fn write_lr(&mut self, n: usize, value: u64);
    fn write_hcr(&mut self, value: u64);
}

/// What one entry loads: LR values in order (LRs past them are left zero by
/// `save`) and ICH_HCR_EL2.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryState {
    pub lrs: Vec<u64>,
    pub hcr: u64,
}

register_bitfields! [u64,
    /// ICH_VMCR_EL2 (IHI 0069); aarch64-cpu names no fields for it.
    pub ICH_VMCR_EL2 [
        VPMR OFFSET(24) NUMBITS(8) [],
        VBPR0 OFFSET(21) NUMBITS(3) [],
        VBPR1 OFFSET(18) NUMBITS(3) [],
        VEOIM OFFSET(9) NUMBITS(1) [],
        VCBPR OFFSET(4) NUMBITS(1) [],
        VFIQEn OFFSET(3) NUMBITS(1) [],
        VAckCtl OFFSET(2) NUMBITS(1) [],
        VENG1 OFFSET(1) NUMBITS(1) [],
        VENG0 OFFSET(0) NUMBITS(1) [],
    ],
];

/// A VM's virtual GICv3: distributor, redistributors, and per-vCPU interrupt
/// state.
pub struct Vgic {
    cfg: VgicConfig,
    /// GICD_CTLR.EnableGrp0 (DS = 1 view): stored, but no interrupt is Group 0.
    enable_grp0: bool,
    /// GICD_CTLR.EnableGrp1.
    enable_grp1: bool,
    /// SGIs and PPIs, per vCPU.
    private: Vec<[Irq; NR_PRIVATE]>,
    spis: Vec<Irq>,
    /// GICR_WAKER.ProcessorSleep per vCPU.
    processor_sleep: Vec<bool>,
    /// What each vCPU's LRs were loaded with at its last entry.
    lr_shadow: Vec<Vec<LrShadow>>,
    /// vCPUs whose LRs are out of date since their last refill.
    kicks: Vec<bool>,
    /// Per vCPU, the private INTIDs that may want an LR (bit n: INTID n); and
    /// the SPIs that may (bit n: INTID 32 + n). A superset: every change to an
    /// interrupt sets its bit ([`Vgic::touch`]), a scan clears the bits of
    /// interrupts found idle. Entry and idle checks look only at these bits, so
    /// their cost follows what is pending or active, not the number of INTIDs.
    hot_private: Vec<u32>,
    hot_spi: Vec<u64>,
    /// The words of `hot_spi` that may be non-zero (bit w: word w; a VM has
    /// at most 988 SPIs, 16 words), so an entry skips the idle ones.
    hot_spi_words: u64,
    actions: Vec<HwAction>,
    /// Scratch space for choosing LRs, kept so an entry does not allocate.
    candidates: Vec<lr::Candidate>,
}

/// PPIs the hypervisor configures as level-sensitive: all of them (the generic
/// timer PPIs 26, 27, 30, the PMU 23, maintenance 25 are level; IHI 0069 says PPI
/// trigger configuration may be read-only, and it is here).
const PPI_TRIGGER: Trigger = Trigger::Level;

impl Vgic {
    pub fn new(cfg: VgicConfig) -> Result<Vgic, VgicError> {
        let n = cfg.vcpu_mpidrs.len();
        if n == 0 {
            return Err(VgicError::NoVcpus);
        }
        if n > MAX_VCPUS {
            return Err(VgicError::TooManyVcpus(n));
        }
        // A GICv2 has at most 8 CPU interfaces (IHI 0048B.b 1.4.1).
        if cfg.v2 && n > 8 {
            return Err(VgicError::TooManyVcpusForGicV2(n));
        }
        if !cfg.nr_spis.is_multiple_of(32) || FIRST_SPI + cfg.nr_spis > MAX_SPI_INTID + 1 {
            return Err(VgicError::BadSpiCount(cfg.nr_spis));
        }
        if !(1..=16).contains(&cfg.nr_lrs) {
            return Err(VgicError::BadLrCount(cfg.nr_lrs));
        }
        if !(4..=8).contains(&cfg.priority_bits) {
            return Err(VgicError::BadPriorityBits(cfg.priority_bits));
        }
        let mut v = Vgic {
            enable_grp0: false,
            enable_grp1: false,
            private: vec![[Irq::new(Trigger::Edge); NR_PRIVATE]; n],
            spis: vec![Irq::new(Trigger::Level); cfg.nr_spis as usize],
            processor_sleep: vec![true; n],
            lr_shadow: vec![Vec::new(); n],
            kicks: vec![false; n],
            hot_private: vec![0; n],
            hot_spi: vec![0; (cfg.nr_spis as usize).div_ceil(64)],
            hot_spi_words: 0,
            actions: Vec::new(),
            candidates: Vec::new(),
            cfg,
        };
        v.reset();
        Ok(v)
    }

    pub fn config(&self) -> &VgicConfig {
        &self.cfg
    }

    pub fn nr_vcpus(&self) -> usize {
        self.cfg.vcpu_mpidrs.len()
    }

    /// Puts the GIC into its reset state (VM reset). Hardware-linked interrupts
    /// the hypervisor left active at the physical GIC are handed back as
    /// [`HwAction::DeactivatePhysical`]. Hardware links and emulated line levels
    /// stay (they belong to the hypervisor and the devices).
    pub fn reset(&mut self) {
        let n = self.nr_vcpus();
        for v in 0..n {
            for i in 0..NR_PRIVATE {
                let irq = &self.private[v][i];
                if let Some(p) = irq.hw_intid.filter(|_| irq.hw_pending || irq.active_hw) {
                    self.actions
                        .push(HwAction::DeactivatePhysical { vcpu: v, intid: p });
                }
                let trigger = if i < 16 { Trigger::Edge } else { PPI_TRIGGER };
                self.private[v][i].reset(trigger);
                // GICR_IPRIORITYR<n> and GICD_IPRIORITYR<n> reset to 0 (IHI 0069
                // 12.9/12.11: reset value 0 where architecturally defined).
            }
            self.processor_sleep[v] = true;
            self.lr_shadow[v].clear();
            self.kicks[v] = true;
            self.hot_private[v] = u32::MAX;
        }
        self.hot_spi.iter_mut().for_each(|w| *w = u64::MAX);
        self.hot_spi_words = u64::MAX;
        for i in 0..self.spis.len() {
            let irq = &self.spis[i];
            if let Some(p) = irq.hw_intid.filter(|_| irq.hw_pending || irq.active_hw) {
                let vcpu = irq.active_vcpu.or(irq.lr_vcpu).unwrap_or(0);
                self.actions
                    .push(HwAction::DeactivatePhysical { vcpu, intid: p });
            }
            self.spis[i].reset(Trigger::Level);
        }
        self.enable_grp0 = false;
        self.enable_grp1 = false;
    }

    // ---- interrupt lookup ----

    pub(crate) fn irq(&self, vcpu: Option<usize>, intid: u32) -> Option<&Irq> {
        if (intid as usize) < NR_PRIVATE {
            self.private.get(vcpu?)?.get(intid as usize)
        } else {
            self.spis.get((intid - FIRST_SPI) as usize)
        }
    }

    pub(crate) fn irq_mut(&mut self, vcpu: Option<usize>, intid: u32) -> Option<&mut Irq> {
        if (intid as usize) < NR_PRIVATE {
            self.private.get_mut(vcpu?)?.get_mut(intid as usize)
        } else {
            self.spis.get_mut((intid - FIRST_SPI) as usize)
        }
    }

    /// The vCPU an SPI's GICD_IROUTER names (IRM = 0: the PE whose affinity
    /// matches; IHI 0069, GICD_IROUTER: none if no PE matches, and the
    /// interrupt is then not forwarded).
    fn route_target(&self, route: u64) -> Option<usize> {
        let aff = route_to_mpidr(route);
        self.cfg
            .vcpu_mpidrs
            .iter()
            .position(|&m| Mpidr::new(m).affinity() == aff)
    }

    /// The vCPU whose CPU interface an interrupt belongs to now: a private one's
    /// own; an SPI's acknowledging vCPU while active, else its routing target.
    fn owner(&self, vcpu: Option<usize>, intid: u32) -> Option<usize> {
        if (intid as usize) < NR_PRIVATE {
            return vcpu;
        }
        let irq = self.irq(None, intid)?;
        if irq.active {
            irq.active_vcpu.or_else(|| self.route_target(irq.route))
        } else {
            self.route_target(irq.route)
        }
    }

    /// After a change to an interrupt: the vCPUs that must reload their LRs,
    /// and the interrupt's hot bit.
    fn touch(&mut self, vcpu: Option<usize>, intid: u32) {
        self.mark_hot(vcpu, intid);
        let lr_vcpu = self.irq(vcpu, intid).and_then(|i| i.lr_vcpu);
        for v in [lr_vcpu, self.owner(vcpu, intid)].into_iter().flatten() {
            if let Some(k) = self.kicks.get_mut(v) {
                *k = true;
            }
        }
    }

    /// Sets the hot bit of an interrupt (see `hot_private`).
    fn mark_hot(&mut self, vcpu: Option<usize>, intid: u32) {
        if (intid as usize) < NR_PRIVATE {
            if let Some(w) = vcpu.and_then(|v| self.hot_private.get_mut(v)) {
                *w |= 1 << intid;
            }
        } else if let Some(w) = self.hot_spi.get_mut(((intid - FIRST_SPI) / 64) as usize) {
            *w |= 1 << ((intid - FIRST_SPI) % 64);
            self.hot_spi_words |= 1 << ((intid - FIRST_SPI) / 64);
        }
    }

    // ---- interrupt sources ----

    /// Links virtual `intid` to physical `pintid`: its pending state then comes
    /// from the physical GIC via [`Vgic::inject_hw`], and its LR is hardware-linked.
    /// `vcpu` names the vCPU for a PPI; SPIs take `None`.
    pub fn link_hw(
        &mut self,
        vcpu: Option<usize>,
        intid: u32,
        pintid: u32,
    ) -> Result<(), VgicError> {
        if intid < 16 {
            // SGIs cannot be hardware-linked (ICH_LR<n>_EL2.pINTID: an SGI pINTID is
            // UNPREDICTABLE).
            return Err(VgicError::NoSuchInterrupt(intid));
        }
        let irq = self
            .irq_mut(vcpu, intid)
            .ok_or(VgicError::NoSuchInterrupt(intid))?;
        irq.hw_intid = Some(pintid);
        Ok(())
    }

    /// Drives the input line of an emulated interrupt (level: the device's output;
    /// edge: a rising edge makes it pending). `vcpu` names the vCPU for a PPI.
    pub fn set_level(
        &mut self,
        vcpu: Option<usize>,
        intid: u32,
        level: bool,
    ) -> Result<(), VgicError> {
        let irq = self
            .irq_mut(vcpu, intid)
            .ok_or(VgicError::NoSuchInterrupt(intid))?;
        let before = irq.pending();
        irq.set_line(level);
        if irq.pending() != before {
            self.touch(vcpu, intid);
        }
        Ok(())
    }

    /// A hardware-linked interrupt arrived at EL2 (acknowledged there and left
    /// active at the physical GIC): make the virtual one pending.
    pub fn inject_hw(&mut self, vcpu: Option<usize>, intid: u32) -> Result<(), VgicError> {
        let irq = self
            .irq_mut(vcpu, intid)
            .ok_or(VgicError::NoSuchInterrupt(intid))?;
        if irq.hw_intid.is_none() {
            return Err(VgicError::NoSuchInterrupt(intid));
        }
        if irq.lr_vcpu.is_some() {
            irq.hw_refired = true;
        }
        irq.hw_pending = true;
        self.touch(vcpu, intid);
        Ok(())
    }

    /// Re-reads the line of a hardware-linked interrupt whose pending state is
    /// held in software but not yet in an LR: if the source is no longer asserted
    /// (e.g. the guest masked or re-armed its timer before taking the interrupt),
    /// the pending state is dropped and the physical interrupt handed back
    /// ([`HwAction::DeactivatePhysical`]) so it can be signalled again later. Call
    /// after [`Vgic::save`]. An asserted line needs nothing: the physical
    /// interrupt already carried it.
    pub fn resample_hw(
        &mut self,
        vcpu: usize,
        intid: u32,
        asserted: bool,
    ) -> Result<(), VgicError> {
        let private = (intid as usize) < NR_PRIVATE;
        let owner = if private {
            vcpu
        } else {
            self.owner(None, intid).unwrap_or(vcpu)
        };
        let irq = self
            .irq_mut(private.then_some(vcpu), intid)
            .ok_or(VgicError::NoSuchInterrupt(intid))?;
        let Some(p) = irq.hw_intid else {
            return Err(VgicError::NoSuchInterrupt(intid));
        };
        if !asserted && irq.hw_pending && !irq.active_hw && irq.lr_vcpu.is_none() {
            irq.hw_pending = false;
            self.actions.push(HwAction::DeactivatePhysical {
                vcpu: owner,
                intid: p,
            });
        }
        Ok(())
    }

    /// A trapped write to an SGI generation register by vCPU `sender`. Returns
    /// the vCPUs the SGI was made pending on (bit n: vCPU n).
    pub fn send_sgi(&mut self, sender: usize, reg: SgiRegister, value: u64) -> u64 {
        if !reg.reaches_group1() {
            return 0;
        }
        let intid = sgi::sgi_intid(value);
        let targets = sgi::sgi_target_mask(value, sender, &self.cfg.vcpu_mpidrs);
        let mut left = targets;
        while left != 0 {
            let t = left.trailing_zeros() as usize;
            left &= left - 1;
            self.private[t][intid as usize].pending_latch = true;
            self.touch(Some(t), intid);
        }
        targets
    }

    /// Handles a trapped guest system-register access if it is one of the vGIC's
    /// (the SGI generation registers); `None` otherwise.
    pub fn trap_sysreg(
        &mut self,
        vcpu: usize,
        reg: SysReg,
        write: bool,
        value: u64,
    ) -> Option<SysRegResult> {
        let kind = SgiRegister::from_sysreg(reg)?;
        if !write {
            // Write-only registers: MRS of them is UNDEFINED.
            return Some(SysRegResult::Undefined);
        }
        self.send_sgi(vcpu, kind, value);
        Some(SysRegResult::Done)
    }

    // ---- list registers ----

    /// Folds the LR values read at exit (the first `lrs_in_use(vcpu)` LRs, in
    /// order) into software state.
    pub fn sync_lrs(&mut self, vcpu: usize, lrs: &[u64]) {
        let mut shadow = core::mem::take(&mut self.lr_shadow[vcpu]);
        for (s, &value) in shadow.iter().zip(lrs) {
            if let Some(irq) = self.irq_mut(Some(vcpu), s.vintid) {
                lr::sync(irq, s, value, vcpu);
            }
        }
        // Emptied, its capacity kept for the next entry.
        shadow.clear();
        self.lr_shadow[vcpu] = shadow;
    }

    /// LRs loaded at this vCPU's last entry (the ones `sync_lrs` needs).
    pub fn lrs_in_use(&self, vcpu: usize) -> usize {
        self.lr_shadow[vcpu].len()
    }

    /// Whether a pending interrupt may be forwarded: its group (always Group 1)
    /// enabled at the distributor (IHI 0069 GICD_CTLR.EnableGrp1).
    fn forwarding(&self) -> bool {
        self.enable_grp1
    }

    /// Chooses and builds the LRs for vCPU `vcpu`'s next entry.
    pub fn flush_lrs(&mut self, vcpu: usize) -> EntryState {
        let mut lrs = Vec::new();
        let hcr = self.flush_into(vcpu, |_, v| lrs.push(v));
        EntryState { lrs, hcr }
    }

    /// Chooses the LRs for vCPU `vcpu`'s next entry and hands each to `emit(n,
    /// value)` in order; returns ICH_HCR_EL2 for the entry. Allocation-free once
    /// the scratch buffers have grown (this runs before every guest entry).
    fn flush_into(&mut self, vcpu: usize, mut emit: impl FnMut(usize, u64)) -> u64 {
        let fwd = self.forwarding();
        let mut candidates = core::mem::take(&mut self.candidates);
        candidates.clear();
        let mut hot = self.hot_private[vcpu];
        let mut bits = hot;
        while bits != 0 {
            let i = bits.trailing_zeros();
            bits &= bits - 1;
            let irq = &self.private[vcpu][i as usize];
            if !irq.is_hot() {
                hot &= !(1 << i);
            } else if lr::wants_lr(irq, fwd) {
                candidates.push(Candidate {
                    intid: i,
                    active: irq.active,
                    priority: irq.priority,
                });
            }
        }
        self.hot_private[vcpu] = hot;
        let mut words = self.hot_spi_words;
        while words != 0 {
            let w = words.trailing_zeros() as usize;
            words &= words - 1;
            let Some(&word) = self.hot_spi.get(w) else {
                self.hot_spi_words &= !(1 << w);
                continue;
            };
            let mut hot = word;
            let mut bits = hot;
            while bits != 0 {
                let b = bits.trailing_zeros();
                bits &= bits - 1;
                let n = w * 64 + b as usize;
                let intid = FIRST_SPI + n as u32;
                let irq = &self.spis[n];
                if !irq.is_hot() {
                    hot &= !(1 << b);
                    continue;
                }
                // Not in another vCPU's LRs (it reads them back at its next exit).
                if irq.lr_vcpu.is_some_and(|v| v != vcpu) || !lr::wants_lr(irq, fwd) {
                    continue;
                }
                if self.owner(None, intid) == Some(vcpu) {
                    candidates.push(Candidate {
                        intid,
                        active: irq.active,
                        priority: irq.priority,
                    });
                }
            }
            self.hot_spi[w] = hot;
            if hot == 0 {
                self.hot_spi_words &= !(1 << w);
            }
        }
        let (chosen, overflow) = lr::choose_in_place(&mut candidates, self.cfg.nr_lrs);
        let mut shadow = core::mem::take(&mut self.lr_shadow[vcpu]);
        shadow.clear();
        for (n, c) in candidates[..chosen].iter().enumerate() {
            let irq = self
                .irq_mut(Some(vcpu), c.intid)
                .expect("candidate INTIDs exist");
            let (value, s) = lr::load(irq, c.intid, fwd, vcpu);
            emit(n, value);
            shadow.push(s);
        }
        self.lr_shadow[vcpu] = shadow;
        self.candidates = candidates;
        self.kicks[vcpu] = false;
        lr::hcr_for_entry(overflow)
    }

    /// Reads back the LRs vCPU `vcpu` was loaded with into software state and
    /// clears them. Returns how many were in use.
    pub fn read_back<H: ListRegisters>(&mut self, vcpu: usize, hw: &mut H) -> usize {
        let n = self.lrs_in_use(vcpu);
        if n == 0 {
            return 0;
        }
        let mut shadow = core::mem::take(&mut self.lr_shadow[vcpu]);
        for (i, s) in shadow.iter().enumerate() {
            let value = hw.read_lr(i);
            if let Some(irq) = self.irq_mut(Some(vcpu), s.vintid) {
                lr::sync(irq, s, value, vcpu);
            }
        }
        // Emptied, its capacity kept for the next entry.
        shadow.clear();
        self.lr_shadow[vcpu] = shadow;
        n
    }

    /// The vCPU leaves its CPU (switched out, powered off, its VM stopping):
    /// read back the LRs, clear them, quiesce ICH_HCR_EL2, so no maintenance
    /// condition stays asserted and nothing of this vCPU stays in the hardware.
    pub fn save<H: ListRegisters>(&mut self, vcpu: usize, hw: &mut H) {
        let n = self.read_back(vcpu, hw);
        for i in 0..n {
            hw.write_lr(i, 0);
        }
        hw.write_hcr(lr::hcr_at_exit());
    }

    /// Before entry, when the vCPU's interrupt state changed: reads back what
    /// the guest left in the LRs, then chooses and writes them anew with
    /// ICH_HCR_EL2. LRs that held something and are not chosen again are cleared.
    pub fn refill<H: ListRegisters>(&mut self, vcpu: usize, hw: &mut H) {
        let before = self.read_back(vcpu, hw);
        self.load_lrs(vcpu, hw, before);
    }

    /// The second half of [`Vgic::refill`], after [`Vgic::read_back`]
    /// returned `before` (the caller may look at the state in between):
    /// chooses and writes the LRs, clears the ones left over, writes
    /// ICH_HCR_EL2.
    pub fn load_lrs<H: ListRegisters>(&mut self, vcpu: usize, hw: &mut H, before: usize) {
        let hcr = self.flush_into(vcpu, |n, v| hw.write_lr(n, v));
        for i in self.lrs_in_use(vcpu)..before {
            hw.write_lr(i, 0);
        }
        hw.write_hcr(hcr);
    }

    /// Marks vCPU `vcpu`'s LRs out of date (after [`Vgic::save`] emptied them
    /// while it stays on its CPU: its next entry refills them).
    pub fn mark_stale_for(&mut self, vcpu: usize) {
        if let Some(k) = self.kicks.get_mut(vcpu) {
            *k = true;
        }
    }

    /// Whether vCPU `vcpu`'s LRs hold one of its timer interrupts (the run
    /// loop then watches the timer: if the guest masks it, the interrupt is
    /// withdrawn at the next refill).
    pub fn timer_in_lrs(&self, vcpu: usize) -> bool {
        self.lr_shadow[vcpu].iter().any(|s| {
            s.vintid == host::VIRTUAL_TIMER_INTID || s.vintid == host::PHYSICAL_TIMER_INTID
        })
    }

    /// vCPU `vcpu` is powered off (PSCI CPU_OFF): its CPU interface will start
    /// from reset, so nothing may stay active on it. Active interrupts of its
    /// own and SPIs it had acknowledged become inactive (a hardware-linked one
    /// is deactivated at the physical GIC: [`HwAction::DeactivatePhysical`]);
    /// pending ones stay pending, as the redistributor keeps them. Call with
    /// its LRs already saved.
    pub fn cpu_off(&mut self, vcpu: usize) {
        let Some(private) = self.private.get_mut(vcpu) else {
            return;
        };
        for irq in private.iter_mut() {
            // The only hardware-linked private interrupts are the timers, whose
            // physical PPIs were saved and cleared with the timers.
            irq.active = false;
            irq.active_hw = false;
            irq.active_vcpu = None;
            if irq.hw_intid.is_some() {
                irq.hw_pending = false;
            }
        }
        for irq in self.spis.iter_mut().filter(|i| i.active_vcpu == Some(vcpu)) {
            if let Some(p) = irq.hw_intid.filter(|_| irq.active_hw) {
                self.actions
                    .push(HwAction::DeactivatePhysical { vcpu, intid: p });
            }
            irq.active = false;
            irq.active_hw = false;
            irq.active_vcpu = None;
        }
        self.hot_private[vcpu] = u32::MAX;
        self.hot_spi.iter_mut().for_each(|w| *w = u64::MAX);
        self.hot_spi_words = u64::MAX;
        self.kicks[vcpu] = true;
    }

    /// Loads a vCPU whose LRs are empty (it was saved, or never ran).
    pub fn restore<H: ListRegisters>(&mut self, vcpu: usize, hw: &mut H) {
        let hcr = self.flush_into(vcpu, |n, v| hw.write_lr(n, v));
        hw.write_hcr(hcr);
    }

    /// vCPUs whose interrupt state changed since their last refill, as a bit
    /// mask (bit n: vCPU n); clears the marks.
    pub fn take_kicks_mask(&mut self) -> u64 {
        let mut out = 0;
        for (i, k) in self.kicks.iter_mut().enumerate() {
            if *k {
                *k = false;
                out |= 1 << i;
            }
        }
        out
    }

    /// As [`Vgic::take_kicks_mask`], as a list.
    pub fn take_kicks(&mut self) -> Vec<usize> {
        let m = self.take_kicks_mask();
        (0..64).filter(|i| m & (1 << i) != 0).collect()
    }

    /// Hardware effects asked for since the last call.
    /// Whether [`Vgic::take_actions`] has anything.
    #[inline]
    pub fn has_actions(&self) -> bool {
        !self.actions.is_empty()
    }

    pub fn take_actions(&mut self) -> Vec<HwAction> {
        core::mem::take(&mut self.actions)
    }

    /// Whether vCPU `vcpu`, idle in WFI, has an interrupt that would wake it: one
    /// pending, enabled and forwarded, with priority above the guest's priority
    /// mask, with Group 1 enabled at its virtual CPU interface (`vmcr` is its
    /// ICH_VMCR_EL2, read on its CPU), or one already in its LRs pending.
    pub fn wake_pending(&self, vcpu: usize, vmcr: u64) -> bool {
        let vmcr = LocalRegisterCopy::<u64, ICH_VMCR_EL2::Register>::new(vmcr);
        // A vGICv2's interrupts are Group 0: GICH_VMCR.VMGrp0En, at the bit
        // of ICH_VMCR_EL2.VENG0 (IHI 0048B.b 5.3.4).
        let group_enable = if self.cfg.v2 {
            ICH_VMCR_EL2::VENG0
        } else {
            ICH_VMCR_EL2::VENG1
        };
        if !vmcr.is_set(group_enable) || !self.forwarding() {
            return false;
        }
        let pmr = vmcr.read(ICH_VMCR_EL2::VPMR) as u8;
        let wakes = |irq: &Irq| irq.pending() && irq.enabled && !irq.active && irq.priority < pmr;
        let mut bits = self.hot_private[vcpu];
        while bits != 0 {
            let i = bits.trailing_zeros() as usize;
            bits &= bits - 1;
            if wakes(&self.private[vcpu][i]) {
                return true;
            }
        }
        for (w, &word) in self.hot_spi.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let n = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if wakes(&self.spis[n]) && self.owner(None, FIRST_SPI + n as u32) == Some(vcpu) {
                    return true;
                }
            }
        }
        false
    }

    /// The mask of implemented priority bits.
    fn priority_mask(&self) -> u8 {
        !(0xffu8 >> self.cfg.priority_bits)
    }

    fn kick_all(&mut self) {
        self.kicks.iter_mut().for_each(|k| *k = true);
    }
}

/// GICD_IROUTER<n> affinity (Aff3 [39:32], Aff2 [23:16], Aff1 [15:8], Aff0
/// [7:0]: the same positions as MPIDR_EL1's, IHI 0069).
pub(crate) fn route_to_mpidr(route: u64) -> u64 {
    Mpidr::new(route).affinity()
}
