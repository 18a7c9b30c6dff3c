//! A VM on this machine: its RAM, stage-2 tables, devices and vCPUs, built from
//! its config and the boot bundle, and the loop that runs a vCPU.
//!
//! Each vCPU runs on its own physical CPU for its whole life (static
//! partitioning, as Bao and Jailhouse do): guest EL1 system registers stay live in
//! the hardware and a vCPU never waits for a CPU.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::sync::Mutex;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use log::{debug, error, info, warn};

use crate::arch::{self, GuestRegs, LiveEl1, firmware, memory, regs};
use crate::arch::{gic, hostgic};
use crate::devices::{MmioBus, console, pl011};
use crate::mm::PAGE_SIZE;
use crate::mm::pagetable::{PageTable, S2Attrs, Stage2Geometry, vttbr_el2};
use crate::platform::Conduit;
use crate::psci::VcpuPower;
use crate::sysreg::{self, HwAction, Outcome, UnknownLog, VcpuSysRegs, VmCpuModel};
use crate::timer;
use crate::trap;
use crate::vgic::host::{PassthroughSpi, PhysIrq, classify};
use crate::vgic::mmio as vgic_mmio;
use crate::vgic::{HwAction as VgicAction, SharedVgic, Vgic, VgicConfig};
use crate::vm::controls::{self, El2Controls, HostFeatures, SysRegTraps};
use crate::vm::exit::{ExitContext, FaultLog, Next, SysRegResult};
use crate::vm::guest_fdt::{self, GuestMachine};
use crate::vm::image::{ImageKind, LoadPlan, plan_load};
use crate::vm::layout::{self, BootLayout};
use crate::vm::stats;
use alloc::sync::Arc;

/// SPIs of a VM's vGIC (INTIDs 32..96: the console's 33, passthrough devices).
const VGIC_SPIS: u32 = 64;
/// The emulated PL011's interrupt: SPI 1, as on QEMU virt.
const UART_INTID: u32 = 32 + guest_fdt::VIRT_UART_SPI;

/// 2 MiB: guest RAM is allocated at this alignment so stage 2 uses block mappings.
const RAM_ALIGN: u64 = 2 << 20;

/// Everything needed to build (and rebuild, on reset) one VM.
pub struct VmSpec {
    pub name: String,
    pub index: usize,
    pub ram_base: u64,
    pub ram_size: u64,
    pub vcpus: usize,
    pub kernel: &'static [u8],
    pub kernel_kind: ImageKind,
    pub initrd: Option<&'static [u8]>,
    pub dtb: Option<&'static [u8]>,
    pub bootargs: Option<String>,
    pub console: bool,
    /// The CPU every vCPU sees.
    pub model: VmCpuModel,
    /// Devices of the board given to this VM.
    pub passthrough: Vec<PassthroughDevice>,
}

/// A device of the board given to one VM: its MMIO window, mapped at the same
/// guest-physical address, its interrupts (GIC INTIDs, forwarded hardware-linked),
/// and the host device-tree nodes that describe it (copied into the guest's).
#[derive(Clone, Debug)]
pub struct PassthroughDevice {
    pub base: u64,
    pub size: u64,
    pub irqs: Vec<u32>,
    pub nodes: Vec<crate::platform::DeviceNode>,
}

/// Why a VM could not be built.
#[derive(Debug)]
pub enum VmError {
    OutOfMemory { what: &'static str, bytes: u64 },
    Image(crate::vm::image::ImageError),
    Layout(layout::LayoutError),
    Fdt(String),
    Stage2(String),
}

impl fmt::Display for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmError::OutOfMemory { what, bytes } => {
                write!(f, "not enough free RAM for {what} ({bytes} bytes)")
            }
            VmError::Image(e) => write!(f, "kernel image: {e}"),
            VmError::Layout(e) => write!(f, "{e}"),
            VmError::Fdt(e) => write!(f, "guest device tree: {e}"),
            VmError::Stage2(e) => write!(f, "stage-2 tables: {e}"),
        }
    }
}

/// What the boot CPU found, shared by every VM.
#[derive(Clone, Copy, Debug)]
pub struct Host {
    pub features: HostFeatures,
    pub stage2: Stage2Geometry,
    pub firmware: Conduit,
    /// Interrupts physical CPU `index` so it notices a change (a VM stopping, a
    /// vCPU to start, an interrupt for it).
    pub kick: fn(usize),
    /// Keyboard input arrived: wake the VM that has the console's focus.
    pub console_input: fn(),
}

/// A VM's lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum VmState {
    Running,
    /// Every vCPU is leaving; the last one out completes the stop.
    Stopping(Stop),
    Off,
}

/// Why a VM stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    PowerOff,
    Reset,
}

/// One vCPU's power state and where it starts.
#[derive(Clone, Copy, Debug)]
struct VcpuSlot {
    power: VcpuPower,
    entry: u64,
    context_id: u64,
}

/// VMs still running; the machine powers off when this reaches zero.
static RUNNING_VMS: AtomicUsize = AtomicUsize::new(0);

/// One VM, shared by the physical CPUs its vCPUs run on.
pub struct Vm {
    pub spec: VmSpec,
    host: Host,
    vmid: u8,
    vttbr: u64,
    vtcr: u64,
    controls: El2Controls,
    /// The physical CPU (logical index) each vCPU runs on.
    pcpus: Vec<usize>,
    ram: Mutex<memory::OwnedFrames>,
    stage2: PageTable<Stage2Geometry>,
    bus: Mutex<MmioBus>,
    vgic: SharedVgic,
    /// The physical interrupts forwarded to this VM.
    passthrough_spis: Vec<PassthroughSpi>,
    vcpus: Mutex<Vec<VcpuSlot>>,
    state: Mutex<VmState>,
    cntvoff: AtomicU64,
    /// How many of the guest's faults have been logged.
    fault_log: Mutex<FaultLog>,
    /// Encodings already reported as UNDEFINED (logged once each).
    unknown_sysregs: Mutex<UnknownLog>,
}

impl Vm {
    /// Builds the VM: RAM, stage 2, devices, images and device tree in place.
    /// vCPU `i` will run on physical CPU `pcpus[i]`.
    pub fn create(spec: VmSpec, pcpus: Vec<usize>, host: Host) -> Result<Vm, VmError> {
        let pages = spec.ram_size.div_ceil(PAGE_SIZE) as usize;
        // Not zeroed here: `load` zeroes it to the point of coherency.
        let ram = memory::alloc_frames_unzeroed(pages, (RAM_ALIGN / PAGE_SIZE) as usize).ok_or(
            VmError::OutOfMemory {
                what: "guest RAM",
                bytes: spec.ram_size,
            },
        )?;
        let mut tables = memory::HwTableMemory;
        let mut stage2 = PageTable::new(host.stage2, &mut tables)
            .map_err(|e| VmError::Stage2(alloc::format!("{e:?}")))?;
        stage2
            .map(
                &mut tables,
                spec.ram_base,
                ram.pa(),
                spec.ram_size,
                S2Attrs::RAM,
            )
            .map_err(|e| VmError::Stage2(alloc::format!("{e:?}")))?;
        for dev in &spec.passthrough {
            stage2
                .map(&mut tables, dev.base, dev.base, dev.size, S2Attrs::DEVICE)
                .map_err(|e| {
                    VmError::Stage2(alloc::format!(
                        "passthrough {:#x}..{:#x}: {e:?}",
                        dev.base,
                        dev.base + dev.size
                    ))
                })?;
        }
        let vmid = (spec.index + 1) as u8;
        let mut bus = MmioBus::new();
        if spec.console {
            let port = pl011::SharedConsolePort { vm: spec.index };
            let _ = bus.add(
                guest_fdt::VIRT_UART.base,
                guest_fdt::VIRT_UART.size,
                Box::new(pl011::Pl011::new(Box::new(port), UART_INTID)),
            );
        }
        // The virtual GICv3 on the bus at QEMU virt's addresses, its virtual
        // timer PPI hardware-linked to the physical one.
        let top_irq = spec
            .passthrough
            .iter()
            .flat_map(|d| d.irqs.iter().copied())
            .max()
            .unwrap_or(0);
        let nr_spis = VGIC_SPIS.max((top_irq + 1).saturating_sub(32).next_multiple_of(32));
        let mut cfg = VgicConfig::new(spec.vcpus, nr_spis);
        cfg.nr_lrs = gic::nr_list_registers();
        cfg.priority_bits = gic::virtual_priority_bits();
        let vgic: SharedVgic = Arc::new(Mutex::new(
            Vgic::new(cfg).map_err(|e| VmError::Stage2(alloc::format!("vGIC: {e:?}")))?,
        ));
        timer::link_virtual_timer(&mut vgic.lock())
            .map_err(|e| VmError::Stage2(alloc::format!("vGIC: {e:?}")))?;
        vgic_mmio::attach(
            &mut bus,
            &vgic,
            guest_fdt::VIRT_GICD.base,
            guest_fdt::VIRT_GICR_BASE,
        )
        .map_err(|e| VmError::Stage2(alloc::format!("vGIC window: {e:?}")))?;
        // A passthrough device's interrupts go to this VM only, hardware-linked:
        // the guest's deactivation deactivates the physical interrupt.
        let mut passthrough_spis = Vec::new();
        for &intid in spec.passthrough.iter().flat_map(|d| d.irqs.iter()) {
            vgic.lock()
                .link_hw(None, intid, intid)
                .map_err(|e| VmError::Stage2(alloc::format!("passthrough INTID {intid}: {e:?}")))?;
            hostgic::route_spi(intid, pcpus[0]);
            hostgic::enable_spi(intid);
            passthrough_spis.push(PassthroughSpi {
                pintid: intid,
                vm: spec.index,
                vintid: intid,
            });
        }
        let idle = VcpuSlot {
            power: VcpuPower::Off,
            entry: 0,
            context_id: 0,
        };
        let vm = Vm {
            vttbr: vttbr_el2(stage2.root_pa(), vmid),
            vtcr: host.stage2.vtcr_el2(),
            controls: controls::el2_controls(
                &host.features,
                SysRegTraps::CpuModel {
                    cache: sysreg::cache_trap(host.features.evt, spec.model.hw_ctr_matches()),
                },
            ),
            host,
            vmid,
            ram: Mutex::new(ram),
            stage2,
            bus: Mutex::new(bus),
            vgic,
            passthrough_spis,
            vcpus: Mutex::new(alloc::vec![idle; spec.vcpus]),
            state: Mutex::new(VmState::Running),
            cntvoff: AtomicU64::new(0),
            unknown_sysregs: Mutex::new(UnknownLog::new()),
            fault_log: Mutex::new(FaultLog::default()),
            pcpus,
            spec,
        };
        vm.load()?;
        RUNNING_VMS.fetch_add(1, Ordering::SeqCst);
        Ok(vm)
    }

    /// (Re)loads the images and device tree into RAM and makes vCPU 0 ready to
    /// start: the state a VM starts in.
    fn load(&self) -> Result<(), VmError> {
        let s = &self.spec;
        let plan: LoadPlan =
            plan_load(&s.kernel_kind, s.kernel, s.ram_base, s.ram_size).map_err(VmError::Image)?;
        let probe = guest_fdt::build_guest_fdt(&self.machine(None))
            .map_err(|e| VmError::Fdt(alloc::format!("{e}")))?;
        let dtb_len = s.dtb.map(|d| d.len()).unwrap_or(probe.len() + 0x1000) as u64;
        let lay: BootLayout = layout::plan(
            s.ram_base..s.ram_base + s.ram_size,
            plan.footprint(),
            s.initrd.map(|i| i.len() as u64),
            dtb_len,
        )
        .map_err(VmError::Layout)?;
        let dtb: Vec<u8> = match s.dtb {
            Some(d) => d.to_vec(),
            None => guest_fdt::build_guest_fdt(&self.machine(lay.initrd.clone()))
                .map_err(|e| VmError::Fdt(alloc::format!("{e}")))?,
        };
        let base = s.ram_base;
        let frames = self.ram.lock();
        let pa = frames.pa();
        // The guest starts with its MMU off, so its data accesses bypass the caches
        // (Device, combined with stage 2's Normal) and read memory: the zeroes and
        // the images must be at the point of coherency, and no dirty line of this
        // RAM may stay in a cache (written back later, it would overwrite what the
        // guest stored). Zeroing every byte (DC ZVA) also replaces whatever an
        // earlier run of this VM left, cached or not (DC ZVA is a store, so the
        // coherent caches of every CPU give up their copies); cleaning each line
        // (DC CVAC) then leaves only clean lines equal to memory, which a guest that
        // later turns its caches on may hit without harm. Invalidating is not
        // needed on top. The per-line clean of all RAM is what FEAT_S2FWB (a
        // stage 2 that forces write-back) would make unnecessary.
        arch::ram::zero_range_to_poc(pa, frames.len() as u64);
        let ram_len = frames.len() as u64;
        let put = |ipa: u64, bytes: &[u8]| {
            let off = ipa - base;
            // layout::plan keeps every image inside the VM's RAM.
            assert!(
                off + bytes.len() as u64 <= ram_len,
                "image outside the VM's RAM"
            );
            arch::ram::copy_to_poc(pa + off, bytes);
        };
        for seg in &plan.segments {
            put(seg.guest_pa, &s.kernel[seg.file.clone()]);
        }
        if let (Some(r), Some(bytes)) = (lay.initrd.clone(), s.initrd) {
            put(r.start, bytes);
        }
        put(lay.dtb.start, &dtb);
        regs::icache_invalidate_all();
        // The guest's virtual counter starts near zero (CNTVCT = CNTPCT - CNTVOFF).
        self.cntvoff
            .store(regs::read_cntpct_el0(), Ordering::SeqCst);
        {
            let mut v = self.vcpus.lock();
            for (i, slot) in v.iter_mut().enumerate() {
                slot.power = if i == 0 {
                    VcpuPower::OnPending
                } else {
                    VcpuPower::Off
                };
                slot.entry = plan.entry;
                slot.context_id = lay.dtb.start;
            }
        }
        info!(
            "VM '{}': {} MiB RAM at IPA {:#x} (PA {:#x}), {} vCPU(s) on CPU(s) {:?}, VMID {}, kernel {:?} entry {:#x}, device tree at {:#x}{}",
            s.name,
            s.ram_size >> 20,
            s.ram_base,
            frames.pa(),
            s.vcpus,
            self.pcpus,
            self.vmid,
            plan.format,
            plan.entry,
            lay.dtb.start,
            match &lay.initrd {
                Some(r) => alloc::format!(", initrd at {:#x}", r.start),
                None => String::new(),
            }
        );
        Ok(())
    }

    fn machine(&self, initrd: Option<core::ops::Range<u64>>) -> GuestMachine {
        let mut m = GuestMachine::qemu_virt_like(
            crate::platform::MemRange {
                base: self.spec.ram_base,
                size: self.spec.ram_size,
            },
            self.spec.vcpus,
        );
        m.bootargs = self.spec.bootargs.clone();
        m.initrd = initrd.map(|r| crate::platform::MemRange {
            base: r.start,
            size: r.end - r.start,
        });
        if !self.spec.console {
            m.uart = None;
        }
        m.passthrough = self
            .spec
            .passthrough
            .iter()
            .flat_map(|d| d.nodes.iter().cloned())
            .collect();
        m
    }

    /// Loads this VM's EL2 controls and a clean EL1 state on this CPU.
    fn load_cpu(&self, vcpu: usize) {
        let c = &self.controls;
        regs::write_vtcr_el2(self.vtcr);
        regs::write_vttbr_el2(self.vttbr);
        regs::write_hcr_el2(c.hcr_el2);
        regs::write_cptr_el2(c.cptr_el2);
        regs::write_mdcr_el2(regs::read_mdcr_el2() | c.mdcr_el2_set);
        regs::write_cnthctl_el2(c.cnthctl_el2);
        regs::write_cntvoff_el2(self.cntvoff.load(Ordering::SeqCst));
        regs::write_hstr_el2(0);
        regs::write_vpidr_el2(self.spec.model.midr_el1());
        arch::percpu::set_guest_ctr_el0(self.spec.model.ctr_el0());
        regs::write_vmpidr_el2(controls::vmpidr(vcpu));
        arch::reset_el1_state(controls::SCTLR_EL1_RESET);
        gic::reset_virtual_cpu_interface();
        regs::isb();
        regs::tlbi_vmid_all();
    }

    fn state(&self) -> VmState {
        *self.state.lock()
    }

    /// Runs vCPU `vcpu` on this physical CPU for the VM's whole life: waits for
    /// it to be powered on (vCPU 0 at boot and reset, others by PSCI CPU_ON),
    /// runs it, and returns when the VM is off.
    pub fn run_vcpu(&self, vcpu: usize) {
        loop {
            let (entry, context_id) = loop {
                match self.state() {
                    VmState::Off => return,
                    VmState::Running => {
                        let mut v = self.vcpus.lock();
                        if v[vcpu].power == VcpuPower::OnPending {
                            v[vcpu].power = VcpuPower::On;
                            break (v[vcpu].entry, v[vcpu].context_id);
                        }
                    }
                    VmState::Stopping(_) => {}
                }
                // Sleep until kicked (CPU_ON, a stop, a reset): the kick is an
                // interrupt, which ends WFI even with interrupts masked at EL2.
                regs::wfi();
                service_interrupts(self.host.console_input);
            };
            self.load_cpu(vcpu);
            let mut gprs = GuestRegs::default();
            gprs.x[0] = context_id;
            gprs.pc = entry;
            gprs.pstate = controls::PSTATE_EL1H_MASKED;
            self.run_until_off(vcpu, &mut gprs);
        }
    }

    /// Runs the loaded vCPU until it is turned off or the VM stops.
    fn run_until_off(&self, vcpu: usize, gprs: &mut GuestRegs) {
        let features = self.host.features.pstate();
        let mut vsys_state = VcpuSysRegs::new(controls::vmpidr(vcpu), false);
        let vsys = &mut vsys_state;
        loop {
            if let VmState::Stopping(_) = self.state() {
                self.vcpu_left(vcpu);
                return;
            }
            self.before_entry(vcpu);
            let cause = stats::run_guest(gprs);
            self.after_exit(vcpu);
            if cause == arch::ExitCause::Irq {
                self.physical_irqs(vcpu);
                continue;
            }
            if cause != arch::ExitCause::Sync {
                warn!("VM '{}' vCPU {vcpu}: {cause:?} exit", self.spec.name);
                continue;
            }
            let esr = regs::read_esr_el2();
            let exit = trap::decode(esr, regs::read_far_el2(), regs::read_hpfar_el2());
            let next = {
                let mut hw = LiveEl1;
                let mut vcpus = self.vcpus.lock();
                let mut psci = PsciView {
                    vcpus: &mut vcpus,
                    ram: self.spec.ram_base..self.spec.ram_base + self.spec.ram_size,
                };
                let mut bus = self.bus.lock();
                let mut sysreg = |acc: trap::SysRegAccess, v: u64| self.sysreg(vcpu, vsys, acc, v);
                ExitContext {
                    gprs,
                    hw: &mut hw,
                    bus: &mut bus,
                    psci: &mut psci,
                    features,
                    instr_len: trap::instruction_length(esr),
                    sysreg: &mut sysreg,
                    faults: &mut self.fault_log.lock(),
                }
                .handle(exit)
            };
            self.update_device_lines();
            console::flush_waiting();
            match next {
                Next::Resume => {}
                Next::Idle => self.idle(vcpu),
                Next::SystemOff => {
                    info!("VM '{}' powers off (PSCI SYSTEM_OFF)", self.spec.name);
                    self.stop(Stop::PowerOff);
                    self.vcpu_left(vcpu);
                    return;
                }
                Next::SystemReset => {
                    info!("VM '{}' resets (PSCI SYSTEM_RESET)", self.spec.name);
                    self.stop(Stop::Reset);
                    self.vcpu_left(vcpu);
                    return;
                }
                Next::CpuOff => {
                    let all_off = {
                        let mut v = self.vcpus.lock();
                        v[vcpu].power = VcpuPower::Off;
                        v.iter().all(|s| s.power == VcpuPower::Off)
                    };
                    if all_off {
                        // No vCPU is left to turn another on: the VM is over.
                        info!("VM '{}': its last vCPU called CPU_OFF", self.spec.name);
                        self.stop(Stop::PowerOff);
                        self.vcpu_left(vcpu);
                    }
                    return;
                }
                Next::CpuOn {
                    target,
                    entry,
                    context_id,
                } => {
                    {
                        let mut v = self.vcpus.lock();
                        v[target] = VcpuSlot {
                            power: VcpuPower::OnPending,
                            entry,
                            context_id,
                        };
                    }
                    regs::dsb_ish();
                    regs::sev();
                    (self.host.kick)(self.pcpus[target]);
                }
            }
        }
    }

    /// A trapped system-register access, through the CPU model.
    fn sysreg(
        &self,
        vcpu: usize,
        vsys: &mut VcpuSysRegs,
        acc: trap::SysRegAccess,
        v: u64,
    ) -> SysRegResult {
        if let Some(r) = self.vgic.lock().trap_sysreg(vcpu, acc.reg, acc.write, v) {
            return r;
        }
        let access = sysreg::Access {
            reg: acc.reg,
            write: acc.write.then_some(v),
            sctlr_el1: regs::read_sctlr_el1(),
        };
        match sysreg::access(vsys, &self.spec.model, access) {
            Outcome::Read(v) => SysRegResult::Read(v),
            Outcome::Written(actions) => {
                for action in actions.iter() {
                    match action {
                        HwAction::WriteHw { reg, value } => {
                            if !regs::write_vm_control_reg(reg, value) {
                                warn!("VM '{}': no hardware register for {reg}", self.spec.name);
                            }
                        }
                        HwAction::CleanInvalidateVmMemory => {
                            let ram = self.ram.lock();
                            debug!(
                                "VM '{}': set/way or cache toggle: flushing its RAM",
                                self.spec.name
                            );
                            regs::dcache_clean_invalidate(ram.pa(), ram.len() as u64);
                        }
                        HwAction::SetTrapVm(on) => regs::set_trap_vm(on),
                    }
                }
                SysRegResult::Done
            }
            Outcome::Undef(reason) => {
                if self.unknown_sysregs.lock().first_time(acc.reg) {
                    warn!(
                        "VM '{}': {} of system register {} is UNDEFINED to the guest ({reason:?})",
                        self.spec.name,
                        if acc.write { "write" } else { "read" },
                        acc.reg
                    );
                }
                SysRegResult::Undefined
            }
        }
    }

    /// Loads the list registers for this vCPU's entry and sends the kicks and
    /// physical-GIC work the vGIC queued.
    fn before_entry(&self, vcpu: usize) {
        let (kicks, actions) = {
            let mut v = self.vgic.lock();
            v.restore(vcpu, &mut gic::IchRegs);
            (v.take_kicks(), v.take_actions())
        };
        for k in kicks {
            if k != vcpu {
                (self.host.kick)(self.pcpus[k]);
            }
        }
        for a in actions {
            match a {
                VgicAction::DeactivatePhysical { vcpu: owner, intid } if intid < 32 => {
                    hostgic::deactivate_ppi_on(self.pcpus[owner], intid)
                }
                VgicAction::DeactivatePhysical { intid, .. } => hostgic::deactivate_spi(intid),
                VgicAction::RoutePhysicalSpi { intid, vcpu } => {
                    hostgic::route_spi(intid, self.pcpus[vcpu])
                }
            }
        }
    }

    /// Reads the list registers back into the vGIC and looks at the virtual
    /// timer (the guest may have masked or re-armed it).
    fn after_exit(&self, vcpu: usize) {
        let mut v = self.vgic.lock();
        v.save(vcpu, &mut gic::IchRegs);
        let _ = timer::resample_virtual_timer(&mut v, vcpu, regs::read_cntv_ctl_el0());
    }

    /// Takes every pending physical interrupt on this CPU.
    fn physical_irqs(&self, vcpu: usize) {
        loop {
            let intid = gic::acknowledge();
            let kind = classify(intid, &self.passthrough_spis);
            stats::irq(&kind);
            match kind {
                PhysIrq::Spurious => break,
                PhysIrq::VirtualTimer => {
                    let _ = timer::on_virtual_timer_irq(&mut self.vgic.lock(), vcpu);
                }
                PhysIrq::HypTimer => regs::disarm_hyp_timer(),
                PhysIrq::Maintenance | PhysIrq::Kick => {}
                PhysIrq::Host(i) if Some(i) == hostgic::uart_intid() => {
                    if console::poll_keyboard() {
                        (self.host.console_input)();
                    }
                }
                PhysIrq::Host(i) => debug!("unexpected physical interrupt {i}"),
                PhysIrq::Passthrough { vintid, .. } => {
                    let _ = self.vgic.lock().inject_hw(None, vintid);
                }
            }
            gic::complete(intid, kind.completion());
        }
        self.update_device_lines();
    }

    /// Passes the emulated devices' interrupt outputs to the vGIC.
    fn update_device_lines(&self) {
        let bus = self.bus.lock();
        let mut v = self.vgic.lock();
        bus.for_each_irq_line(|intid, level| {
            let _ = v.set_level(None, intid, level);
        });
    }

    /// The vCPU waits for an interrupt (WFI, CPU_SUSPEND): this CPU sleeps until
    /// one may be pending for it, or the VM stops.
    fn idle(&self, vcpu: usize) {
        loop {
            if self.state() != VmState::Running {
                return;
            }
            self.update_device_lines();
            if self.vgic.lock().wake_pending(vcpu, gic::read_ich_vmcr())
                || timer::virtual_timer_asserted(regs::read_cntv_ctl_el0())
            {
                return;
            }
            // Console output waiting behind another VM's unfinished line must
            // come out even if nothing else wakes this CPU.
            console::flush_waiting();
            if console::output_waiting() {
                regs::arm_hyp_timer_ms(console::HOLD_MS);
            }
            // Interrupts are masked at EL2, but a pending one still ends WFI.
            regs::wfi();
            self.physical_irqs(vcpu);
        }
    }

    /// Starts stopping the VM: every running vCPU leaves at its next exit.
    fn stop(&self, why: Stop) {
        {
            let mut st = self.state.lock();
            if *st != VmState::Running {
                return;
            }
            *st = VmState::Stopping(why);
        }
        let v = self.vcpus.lock();
        for (i, slot) in v.iter().enumerate() {
            if slot.power == VcpuPower::On {
                (self.host.kick)(self.pcpus[i]);
            }
        }
    }

    /// vCPU `vcpu` has left the guest because the VM stops. The last one out
    /// completes the stop: the VM is reloaded (reset) or turned off.
    fn vcpu_left(&self, vcpu: usize) {
        let last = {
            let mut v = self.vcpus.lock();
            v[vcpu].power = VcpuPower::Off;
            v.iter().all(|s| s.power != VcpuPower::On)
        };
        if !last {
            return;
        }
        let why = match self.state() {
            VmState::Stopping(why) => why,
            _ => return,
        };
        match why {
            Stop::Reset => {
                console::clear_input(self.spec.index);
                match self.load() {
                    Ok(()) => *self.state.lock() = VmState::Running,
                    Err(e) => {
                        error!("VM '{}' could not be reset: {e}", self.spec.name);
                        self.turn_off();
                    }
                }
            }
            Stop::PowerOff => self.turn_off(),
        }
        regs::dsb_ish();
        regs::sev();
        (self.host.kick)(self.pcpus[0]);
    }

    fn turn_off(&self) {
        *self.state.lock() = VmState::Off;
        console::set_alive(self.spec.index, false);
        info!("VM '{}' is off", self.spec.name);
        // The VM's other CPUs wait in WFI for a vCPU to start: let them see
        // the VM is over.
        for &cpu in &self.pcpus {
            (self.host.kick)(cpu);
        }
        if RUNNING_VMS.fetch_sub(1, Ordering::SeqCst) == 1 {
            info!("all VMs are off: powering the machine off");
            arch::console::flush();
            firmware::system_off(self.host.firmware);
        }
    }

    pub fn vmid(&self) -> u8 {
        self.vmid
    }

    /// The physical CPU each vCPU runs on.
    pub fn pcpus(&self) -> &[usize] {
        &self.pcpus
    }

    /// Stage-2 table memory in bytes.
    pub fn stage2_bytes(&self) -> u64 {
        let mut t = memory::HwTableMemory;
        self.stage2.table_pages(&mut t) as u64 * PAGE_SIZE
    }
}

/// The PSCI view of a VM: its vCPUs' power states and where its RAM is.
struct PsciView<'a> {
    vcpus: &'a mut Vec<VcpuSlot>,
    ram: core::ops::Range<u64>,
}

impl crate::psci::PsciVm for PsciView<'_> {
    fn vcpu_count(&self) -> usize {
        self.vcpus.len()
    }
    fn vcpu_by_mpidr(&self, mpidr: u64) -> Option<usize> {
        // PSCI target_cpu: Aff3 in [39:32], Aff2..Aff0 in [23:0].
        const AFF: u64 = 0xff_00ff_ffff;
        (0..self.vcpus.len()).find(|&i| controls::vmpidr(i) & AFF == mpidr & AFF)
    }
    fn vcpu_power(&self, index: usize) -> VcpuPower {
        self.vcpus[index].power
    }
    fn is_guest_ram(&self, addr: u64) -> bool {
        self.ram.contains(&addr)
    }
    fn caller_is_aarch32(&self) -> bool {
        // HCR_EL2.RW = 1: EL1 is AArch64, and EL0 cannot make HVC/SMC calls.
        false
    }
}

/// Takes the interrupts pending on a CPU that runs no vCPU right now (waiting
/// for one to start, or parked): the console's keyboard input is passed on, the
/// rest (kicks, a stale timer) are completed and dropped.
pub fn service_interrupts(console_input: fn()) {
    loop {
        let intid = gic::acknowledge();
        let kind = classify(intid, &[]);
        match kind {
            PhysIrq::Spurious => break,
            PhysIrq::Host(i) if Some(i) == hostgic::uart_intid() && console::poll_keyboard() => {
                console_input()
            }
            PhysIrq::HypTimer => regs::disarm_hyp_timer(),
            _ => {}
        }
        // No vCPU takes it here: complete it fully, so nothing stays active.
        gic::complete(intid, crate::vgic::host::Completion::DropAndDeactivate);
    }
    console::flush_waiting();
}
