//! A VM as its vCPUs share it: RAM, stage 2, devices, the vGIC, and its
//! lifecycle (running, stopping for a reset or a power-off, off).
//!
//! The state of each vCPU (its registers, saved context, run state) is not
//! here: it belongs to the physical CPU that runs it (`vm::pcpu`). What is
//! here is what several physical CPUs reach: the vGIC (its own lock, see
//! `vgic::shared`), the devices (a lock each), the lifecycle and the vCPUs'
//! power states (one lock, [`Vm::life`]), the RAM (a lock, taken to load
//! images and for whole-VM cache maintenance).
//!
//! # Lock order
//! A CPU holding one of these locks may take only those below it:
//! 1. `Vm::life` — lifecycle and vCPU power states;
//! 2. `Vm::ram` — images are loaded and caches flushed under it;
//! 3. the vGIC's state (`VmGic`);
//! 4. one device's lock (`MmioBus` slot);
//! 5. the console's lock (a device writes to it).
//!
//! The fault-log and unknown-register locks are leaves. No lock is held while a
//! guest runs or while a CPU waits for an interrupt. (The loop that used to
//! load a VM took RAM then vCPUs while an exit took vCPUs then RAM; now the
//! loader releases `life` before it takes `ram`, and takes `life` again only
//! after `ram` is released.)

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::sync::Mutex;
use log::{error, info, warn};

use crate::devices::{MmioBus, console, pl011};
use crate::mm::PAGE_SIZE;
use crate::mm::pagetable::{PageTable, S2Attrs, Stage2Geometry, TableMemory, vttbr_el2};
use crate::psci::{PsciVm, VcpuPower};
use crate::sysreg::{UnknownLog, VmCpuModel};
use crate::timer;
use crate::vgic::{self, Vgic, VgicConfig, VmGic};
use crate::vm::controls::{self, El2Controls, HostFeatures, SysRegTraps};
use crate::vm::exit::FaultLog;
use crate::vm::guest_fdt::{self, GuestMachine};
use crate::vm::hw::{El2State, Hw};
use crate::vm::image::{ImageKind, LoadPlan, plan_load};
use crate::vm::inject::PStateFeatures;
use crate::vm::layout::{self, BootLayout};
use crate::vm::ram::{self, VmRam};

/// SPIs of a VM's vGIC (INTIDs 32..96: the console's 33, passthrough devices).
const VGIC_SPIS: u32 = 64;
/// The emulated PL011's interrupt: SPI 1, as on QEMU virt.
pub const UART_INTID: u32 = 32 + guest_fdt::VIRT_UART_SPI;
/// The guest's GICv2 CPU interface: the GICV frame's two 4 KiB pages.
const GICV_SIZE: u64 = 0x2000;

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
    /// Scheduling: higher runs first on a shared CPU.
    pub priority: u8,
    /// Scheduling: how long a vCPU runs before another of the same priority
    /// on its CPU gets a turn, in microseconds.
    pub timeslice_us: u64,
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
    Vgic(String),
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
            VmError::Vgic(e) => write!(f, "vGIC: {e}"),
        }
    }
}

/// What the boot CPU found, shared by every VM.
#[derive(Clone, Copy, Debug)]
pub struct Host {
    pub features: HostFeatures,
    pub stage2: Stage2Geometry,
    /// List registers of the virtual CPU interface (ICH_VTR_EL2).
    pub nr_lrs: usize,
    /// Virtual priority bits (ICH_VTR_EL2.PRIbits + 1).
    pub priority_bits: u8,
    /// ICH_VMCR_EL2 of a vCPU at reset (`vgic::host::ich_vmcr_reset`).
    pub vmcr_reset: u64,
    /// The physical GICV frame (the virtual CPU interface) of a GICv2 host,
    /// as its two 4 KiB pages (`vgic::lr_v2::cpu_interface_second_page`): its
    /// guests see a GICv2 with them mapped at their GICC address. `None` on a
    /// GICv3 host.
    pub gicv: Option<[u64; 2]>,
    /// A millisecond clock, for rate-limiting logs of guest faults.
    pub now_ms: fn() -> u64,
}

/// A guest's RAM: physically contiguous, owned by the VM alone.
pub trait GuestRam: Send {
    /// Its physical address.
    fn pa(&self) -> u64;
    /// Its size in bytes.
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn bytes_mut(&mut self) -> &mut [u8];
    /// Zeroes all of it and leaves it clean to the point of coherency (the
    /// arch layer does this a cache block at a time, `DC ZVA` then `DC CVAC`).
    fn zero_to_poc(&mut self) {
        self.bytes_mut().fill(0);
    }
    /// Zeroes `[offset, offset + len)` (inside the RAM) and leaves it clean to
    /// the point of coherency.
    fn zero_range_to_poc(&mut self, offset: u64, len: u64) {
        let off = offset as usize;
        self.bytes_mut()[off..off + len as usize].fill(0);
    }
    /// Copies `bytes` to `offset` and cleans them to the point of coherency.
    /// The caller keeps the range inside the RAM.
    fn copy_to_poc(&mut self, offset: u64, bytes: &[u8]) {
        let off = offset as usize;
        self.bytes_mut()[off..off + bytes.len()].copy_from_slice(bytes);
    }
}

/// Where a VM's RAM and stage-2 tables come from.
pub trait VmMemory {
    type Tables: TableMemory;
    /// `bytes` of RAM aligned to `align` bytes, or `None`.
    fn alloc_ram(&mut self, bytes: u64, align: u64) -> Option<Box<dyn GuestRam>>;
    fn tables(&mut self) -> &mut Self::Tables;
}

/// A VM's lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmState {
    Running,
    /// Every vCPU is leaving; the last one out completes the stop.
    Stopping(Stop),
    Off,
}

/// Why a VM stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    PowerOff,
    Reset,
}

/// One vCPU's power state and where it starts, as every CPU sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuSlot {
    pub power: VcpuPower,
    pub entry: u64,
    pub context_id: u64,
}

/// The lifecycle and the vCPUs' power states, changed together under one lock
/// so that a CPU_ON, a CPU_OFF and a VM stop never see each other half done.
#[derive(Debug)]
pub struct Life {
    pub state: VmState,
    pub slots: Vec<VcpuSlot>,
}

/// The answer of [`Vm::power_on`] (PSCI CPU_ON, DEN0022 CPU_ON return values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PowerOn {
    Started,
    AlreadyOn,
    OnPending,
    /// The VM is stopping: nothing new starts.
    Denied,
}

/// The number of VMs still running, shared by every VM of one system.
pub type RunningCount = AtomicUsize;

/// One VM, shared by the physical CPUs its vCPUs run on.
pub struct Vm {
    pub spec: VmSpec,
    host: Host,
    /// The PSTATE features an injected exception sets (from `host`), kept
    /// ready for the exit path.
    pstate: PStateFeatures,
    vmid: u8,
    vttbr: u64,
    vtcr: u64,
    controls: El2Controls,
    /// The physical CPU (logical index) each vCPU runs on.
    pcpus: Vec<usize>,
    ram: Mutex<VmRam>,
    ram_pa: u64,
    stage2_pages: usize,
    bus: MmioBus,
    pub gic: VmGic,
    /// The physical interrupts forwarded to this VM.
    passthrough_irqs: Vec<u32>,
    life: Mutex<Life>,
    /// Set from a stop until the VM runs again or is off: checked on every
    /// exit without the lock.
    stopping: AtomicBool,
    /// Keyboard input arrived for this VM: its devices' interrupt lines must
    /// be looked at again.
    input: AtomicBool,
    cntvoff: AtomicU64,
    /// How many of the guest's faults have been logged.
    fault_log: Mutex<FaultLog>,
    /// Encodings already reported as UNDEFINED (logged once each).
    unknown_sysregs: Mutex<UnknownLog>,
    running: &'static RunningCount,
}

impl Vm {
    /// Builds the VM: RAM, stage 2, devices and vGIC; [`Vm::load`] then puts
    /// the images and device tree in place. vCPU `i` runs on physical CPU
    /// `pcpus[i]`.
    pub fn create<M: VmMemory>(
        spec: VmSpec,
        pcpus: Vec<usize>,
        host: Host,
        mem: &mut M,
        running: &'static RunningCount,
    ) -> Result<Vm, VmError> {
        let ram = mem
            .alloc_ram(spec.ram_size, RAM_ALIGN)
            .ok_or(VmError::OutOfMemory {
                what: "guest RAM",
                bytes: spec.ram_size,
            })?;
        let mut stage2 = PageTable::new(host.stage2, mem.tables())
            .map_err(|e| VmError::Stage2(alloc::format!("{e:?}")))?;
        // RAM: whole aligned 2 MiB chunks are mapped on first touch (see
        // `vm::ram`): each is mapped here as a block so its tables exist, its
        // descriptor recorded, then made invalid (the VM has not run: no TLB
        // holds it). The rest is mapped for good.
        let mut chunks = Vec::new();
        for (offset, len, may_be_lazy) in ram::plan_chunks(spec.ram_base, ram.pa(), spec.ram_size) {
            let ipa = spec.ram_base + offset;
            stage2
                .map(mem.tables(), ipa, ram.pa() + offset, len, S2Attrs::RAM)
                .map_err(|e| VmError::Stage2(alloc::format!("{e:?}")))?;
            let lazy = stage2
                .leaf(mem.tables(), ipa)
                .filter(|l| may_be_lazy && l.size == len)
                .map(|l| {
                    let table = mem.tables().table(l.entry_pa & !(PAGE_SIZE - 1));
                    table[((l.entry_pa % PAGE_SIZE) / 8) as usize] = 0;
                    ram::LazyEntry {
                        entry_pa: l.entry_pa,
                        desc: l.desc,
                    }
                });
            chunks.push(ram::Chunk { offset, len, lazy });
        }
        for dev in &spec.passthrough {
            stage2
                .map(mem.tables(), dev.base, dev.base, dev.size, S2Attrs::DEVICE)
                .map_err(|e| {
                    VmError::Stage2(alloc::format!(
                        "passthrough {:#x}..{:#x}: {e:?}",
                        dev.base,
                        dev.base + dev.size
                    ))
                })?;
        }
        // The page tables stay in place for the VM's life (a VM lives as long
        // as the machine); `PageTable` frees nothing when it goes out of scope.
        let stage2_pages = stage2.table_pages(mem.tables());
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
        let top_irq = spec
            .passthrough
            .iter()
            .flat_map(|d| d.irqs.iter().copied())
            .max()
            .unwrap_or(0);
        let nr_spis = VGIC_SPIS.max((top_irq + 1).saturating_sub(32).next_multiple_of(32));
        let mut cfg = VgicConfig::new(spec.vcpus, nr_spis);
        cfg.nr_lrs = host.nr_lrs;
        cfg.priority_bits = host.priority_bits;
        cfg.v2 = host.gicv.is_some();
        if let Some(pages) = host.gicv {
            // The guest's CPU interface is the hardware's virtual one: its
            // accesses go to the GICV frame without an exit (IHI 0048B.b 5.1).
            // 8 KiB: GICV_DIR is at offset 0x1000 (5.5, table 5-10).
            for (i, pa) in pages.into_iter().enumerate() {
                stage2
                    .map(
                        mem.tables(),
                        guest_fdt::VIRT_GICC.base + i as u64 * PAGE_SIZE,
                        pa,
                        PAGE_SIZE,
                        S2Attrs::DEVICE,
                    )
                    .map_err(|e| VmError::Stage2(alloc::format!("GICV at {pa:#x}: {e:?}")))?;
            }
        }
        let mut vgic = Vgic::new(cfg).map_err(|e| VmError::Vgic(alloc::format!("{e}")))?;
        // The guest's timers are hardware-linked to the physical PPIs of the
        // CPU its vCPU runs on (see `timer`).
        timer::link_timers(&mut vgic).map_err(|e| VmError::Vgic(alloc::format!("{e}")))?;
        // The PMU's overflow interrupt likewise, when the guest has a PMU
        // (`sysreg::pmu`): each vCPU's PPI 23 is its CPU's.
        if spec.model.pmu().is_some() {
            for v in 0..spec.vcpus {
                vgic.link_hw(
                    Some(v),
                    crate::sysreg::pmu::PMU_INTID,
                    crate::sysreg::pmu::PMU_INTID,
                )
                .map_err(|e| VmError::Vgic(alloc::format!("PMU interrupt: {e}")))?;
            }
        }
        // A passthrough device's interrupts go to this VM only, hardware-linked:
        // the guest's deactivation deactivates the physical interrupt.
        let mut passthrough_irqs = Vec::new();
        for &intid in spec.passthrough.iter().flat_map(|d| d.irqs.iter()) {
            vgic.link_hw(None, intid, intid)
                .map_err(|e| VmError::Vgic(alloc::format!("passthrough INTID {intid}: {e}")))?;
            passthrough_irqs.push(intid);
        }
        let idle = VcpuSlot {
            power: VcpuPower::Off,
            entry: 0,
            context_id: 0,
        };
        let ram_pa = ram.pa();
        let mut el2 = controls::el2_controls(
            &host.features,
            SysRegTraps::CpuModel {
                cache: crate::sysreg::cache_trap(host.features.evt, spec.model.hw_ctr_matches()),
            },
        );
        // MDCR_EL2.HPMN: the guest's counters, when it has a PMU.
        el2.mdcr_el2 = controls::mdcr_el2_for(&host.features, spec.model.pmu().map(|p| p.counters));
        let vm = Vm {
            vttbr: vttbr_el2(stage2.root_pa(), vmid),
            vtcr: host.stage2.vtcr_el2(),
            controls: el2,
            pstate: host.features.pstate(),
            host,
            vmid,
            ram: Mutex::new(VmRam::new(ram, chunks)),
            ram_pa,
            stage2_pages,
            bus,
            gic: VmGic::new(vgic),
            passthrough_irqs,
            life: Mutex::new(Life {
                state: VmState::Off,
                slots: alloc::vec![idle; spec.vcpus],
            }),
            stopping: AtomicBool::new(false),
            input: AtomicBool::new(false),
            cntvoff: AtomicU64::new(0),
            unknown_sysregs: Mutex::new(UnknownLog::new(host.now_ms)),
            fault_log: Mutex::new(FaultLog::new(host.now_ms)),
            pcpus,
            spec,
            running,
        };
        Ok(vm)
    }

    /// (Re)loads the images and device tree into RAM, and makes vCPU 0 ready
    /// to start: the state a VM starts in. Called with no vCPU of the VM on any
    /// CPU. Returns the CPU to kick (vCPU 0's).
    pub fn load(&self, hw: &mut impl Hw) -> Result<usize, VmError> {
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
        {
            let mut frames = self.ram.lock();
            // The guest starts with its MMU off, so its data accesses bypass the
            // caches (Device, combined with stage 2's Normal) and read memory:
            // the zeroes and the images must be at the point of coherency, and
            // no dirty line of this RAM may stay in a cache (written back later,
            // it would overwrite what the guest stored). Zeroing every byte also
            // replaces whatever an earlier run of this VM (or anything before)
            // left, cached or not: DC ZVA is a store, so the coherent caches of
            // every CPU give up their copies; cleaning each line then leaves
            // only clean lines equal to memory, which a guest that later turns
            // its caches on may hit without harm. Invalidating is not needed on
            // top. (FEAT_S2FWB, a stage 2 that forces write-back, would make the
            // per-line clean unnecessary.)
            // Only what is mapped is zeroed here; the rest is zeroed when the
            // guest first touches it (`vm::ram`).
            frames.clear();
            let len = frames.frames().len();
            let mut put = |ipa: u64, bytes: &[u8]| {
                let off = ipa - base;
                // layout::plan keeps every image inside the VM's RAM.
                assert!(
                    off + bytes.len() as u64 <= len,
                    "image outside the VM's RAM"
                );
                frames.load(off, bytes, &mut *hw);
            };
            for seg in &plan.segments {
                put(seg.guest_pa, &s.kernel[seg.file.clone()]);
            }
            if let (Some(r), Some(bytes)) = (lay.initrd.clone(), s.initrd) {
                put(r.start, bytes);
            }
            put(lay.dtb.start, &dtb);
        }
        // The guest's virtual counter starts near zero (CNTVCT = CNTPCT - CNTVOFF).
        self.cntvoff.store(hw.counter(), Ordering::SeqCst);
        {
            let mut life = self.life.lock();
            for (i, slot) in life.slots.iter_mut().enumerate() {
                slot.power = if i == 0 {
                    VcpuPower::OnPending
                } else {
                    VcpuPower::Off
                };
                slot.entry = plan.entry;
                slot.context_id = lay.dtb.start;
            }
            if life.state == VmState::Off {
                self.running.fetch_add(1, Ordering::SeqCst);
            }
            life.state = VmState::Running;
            self.stopping.store(false, Ordering::SeqCst);
        }
        info!(
            "VM '{}': {} MiB RAM at IPA {:#x} (PA {:#x}), {} vCPU(s) on CPU(s) {:?}, VMID {}, kernel {:?} entry {:#x}, device tree at {:#x}{}",
            s.name,
            s.ram_size >> 20,
            s.ram_base,
            self.ram_pa,
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
        Ok(self.pcpus[0])
    }

    fn machine(&self, initrd: Option<core::ops::Range<u64>>) -> GuestMachine {
        let mut m = GuestMachine::qemu_virt_like(
            crate::platform::MemRange {
                base: self.spec.ram_base,
                size: self.spec.ram_size,
            },
            self.spec.vcpus,
        );
        if self.host.gicv.is_some() {
            m.gic = guest_fdt::GuestGic::V2 {
                gicd: guest_fdt::VIRT_GICD,
                gicc: crate::platform::MemRange {
                    base: guest_fdt::VIRT_GICC.base,
                    size: GICV_SIZE,
                },
            };
        }
        m.bootargs = self.spec.bootargs.clone();
        if self.spec.model.pmu().is_some() {
            m.pmu_ppi = Some(crate::sysreg::pmu::PMU_INTID - 16);
        }
        m.caches = guest_fdt::GuestCacheLevel::from_topology(self.spec.model.cache());
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

    // ---- what the run loop reads ----

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    pub fn vmid(&self) -> u8 {
        self.vmid
    }

    /// The physical CPU each vCPU runs on.
    pub fn pcpus(&self) -> &[usize] {
        &self.pcpus
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    /// Whether the guest sees a GICv2 (the host's GIC is one).
    #[inline]
    pub fn gic_v2(&self) -> bool {
        self.host.gicv.is_some()
    }

    #[inline]
    pub fn pstate(&self) -> &PStateFeatures {
        &self.pstate
    }

    pub fn model(&self) -> &VmCpuModel {
        &self.spec.model
    }

    /// Stage-2 table memory in bytes.
    pub fn stage2_bytes(&self) -> u64 {
        self.stage2_pages as u64 * PAGE_SIZE
    }

    /// The EL2 state vCPU `vcpu` runs under, with its own HCR_EL2 value.
    pub fn el2_state(&self, vcpu: usize, hcr: u64) -> El2State {
        let c = &self.controls;
        El2State {
            vttbr: self.vttbr,
            vtcr: self.vtcr,
            controls: *c,
            hcr,
            cntvoff: self.cntvoff.load(Ordering::Relaxed),
            vpidr: self.spec.model.midr_el1(),
            vmpidr: controls::vmpidr(vcpu),
            guest_ctr_el0: self.spec.model.ctr_el0(),
        }
    }

    /// HCR_EL2 as the VM's controls set it (before per-vCPU changes).
    pub fn hcr_el2(&self) -> u64 {
        self.controls.hcr_el2
    }

    /// CNTVOFF_EL2 of the VM.
    pub fn cntvoff(&self) -> u64 {
        self.cntvoff.load(Ordering::Relaxed)
    }

    /// Whether a stop is in progress (cheap: no lock).
    #[inline]
    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    pub fn state(&self) -> VmState {
        self.life.lock().state
    }

    /// vCPU `vcpu`'s slot, read under the lock.
    pub fn slot(&self, vcpu: usize) -> VcpuSlot {
        self.life.lock().slots[vcpu]
    }

    /// The passthrough interrupts of this VM.
    pub fn passthrough_irqs(&self) -> &[u32] {
        &self.passthrough_irqs
    }

    /// Counts a guest fault; says whether to log it.
    pub fn note_fault(&self) -> Option<u64> {
        self.fault_log.lock().note()
    }

    pub fn fault_log(&self) -> &Mutex<FaultLog> {
        &self.fault_log
    }

    /// True the first time an UNDEFINED encoding is seen (log it then).
    pub fn first_unknown(&self, reg: crate::sysreg::SysReg) -> bool {
        self.unknown_sysregs.lock().first_time(reg)
    }

    // ---- devices ----

    /// The device window of an emulated access, if any; `write` is the value
    /// stored, else a load. The device's interrupt line is passed on to the
    /// vGIC; returns the value read and the vCPUs to kick.
    pub fn device_access(&self, ipa: u64, size: u8, write: Option<u64>) -> Option<(u64, u64)> {
        let done = self.bus.access(ipa, size, write)?;
        let kick = match done.irq_line {
            Some((intid, level)) => self.set_line(intid, level),
            None => 0,
        };
        Some((done.value, kick))
    }

    /// Drives an emulated device's interrupt line; returns the vCPUs to kick.
    fn set_line(&self, intid: u32, level: bool) -> u64 {
        self.gic
            .update(|g| {
                let _ = g.set_level(None, intid, level);
            })
            .1
    }

    /// Keyboard input arrived for this VM (from the console's interrupt).
    pub fn note_input(&self) {
        self.input.store(true, Ordering::Release);
    }

    /// Whether keyboard input arrived that [`Vm::poll_input`] has not yet
    /// passed on.
    #[inline]
    pub fn input_pending(&self) -> bool {
        self.input.load(Ordering::Relaxed)
    }

    /// If input arrived since the last call, passes every device's interrupt
    /// line to the vGIC; returns the vCPUs to kick.
    pub fn poll_input(&self) -> u64 {
        if !self.input.load(Ordering::Relaxed) || !self.input.swap(false, Ordering::Acquire) {
            return 0;
        }
        let mut lines: [(u32, bool); 4] = [(0, false); 4];
        let mut n = 0;
        self.bus.for_each_irq_line(|intid, level| {
            if n < lines.len() {
                lines[n] = (intid, level);
                n += 1;
            }
        });
        lines[..n]
            .iter()
            .fold(0, |k, &(intid, level)| k | self.set_line(intid, level))
    }

    // ---- lifecycle ----

    /// PSCI CPU_ON, applied: the target's state is checked and changed under
    /// one lock hold, so of two racing calls for one target exactly one starts
    /// it (DEN0022 CPU_ON: ALREADY_ON for a running target, ON_PENDING while an
    /// earlier CPU_ON has not taken effect). Returns the CPU to kick on success.
    pub fn power_on(&self, target: usize, entry: u64, context_id: u64) -> (PowerOn, usize) {
        let mut life = self.life.lock();
        if life.state != VmState::Running {
            return (PowerOn::Denied, 0);
        }
        let Some(slot) = life.slots.get_mut(target) else {
            return (PowerOn::Denied, 0);
        };
        let r = match slot.power {
            VcpuPower::On => PowerOn::AlreadyOn,
            VcpuPower::OnPending => PowerOn::OnPending,
            VcpuPower::Off => {
                *slot = VcpuSlot {
                    power: VcpuPower::OnPending,
                    entry,
                    context_id,
                };
                PowerOn::Started
            }
        };
        (r, self.pcpus[target])
    }

    /// vCPU `vcpu` is about to be started by its CPU: if it is ON_PENDING in a
    /// running VM, it becomes ON and its entry point and context id are
    /// returned.
    pub fn claim_start(&self, vcpu: usize) -> Option<(u64, u64)> {
        let mut life = self.life.lock();
        if life.state != VmState::Running {
            return None;
        }
        let slot = &mut life.slots[vcpu];
        if slot.power != VcpuPower::OnPending {
            return None;
        }
        slot.power = VcpuPower::On;
        Some((slot.entry, slot.context_id))
    }

    /// vCPU `vcpu` turned itself off (PSCI CPU_OFF). When it was the last one
    /// on, nothing can start another: the VM powers off. Returns the stop that
    /// now must be completed, if any.
    pub fn cpu_off(&self, vcpu: usize) -> Option<Stop> {
        let mut life = self.life.lock();
        life.slots[vcpu].power = VcpuPower::Off;
        if life.state == VmState::Running && life.slots.iter().all(|s| s.power == VcpuPower::Off) {
            info!("VM '{}': its last vCPU called CPU_OFF", self.spec.name);
            life.state = VmState::Stopping(Stop::PowerOff);
            self.stopping.store(true, Ordering::SeqCst);
        }
        match life.state {
            VmState::Stopping(why) if !life.slots.iter().any(|s| s.power == VcpuPower::On) => {
                Some(why)
            }
            _ => None,
        }
    }

    /// Starts stopping the VM: vCPUs not yet started are dropped, running ones
    /// leave at their next exit. Returns the CPUs to kick (bit n: CPU n), and
    /// the stop to complete now if no vCPU is on.
    pub fn stop(&self, why: Stop) -> (u64, Option<Stop>) {
        let mut life = self.life.lock();
        if life.state != VmState::Running {
            return (0, None);
        }
        life.state = VmState::Stopping(why);
        self.stopping.store(true, Ordering::SeqCst);
        let mut kick = 0u64;
        for (i, slot) in life.slots.iter_mut().enumerate() {
            match slot.power {
                VcpuPower::OnPending => slot.power = VcpuPower::Off,
                VcpuPower::On => kick |= 1 << self.pcpus[i],
                VcpuPower::Off => {}
            }
        }
        let none_on = kick == 0;
        (kick, none_on.then_some(why))
    }

    /// vCPU `vcpu` has left its CPU because the VM stops. When it is the last
    /// one out, returns the stop to complete.
    pub fn vcpu_left(&self, vcpu: usize) -> Option<Stop> {
        let mut life = self.life.lock();
        life.slots[vcpu].power = VcpuPower::Off;
        match life.state {
            VmState::Stopping(why) if !life.slots.iter().any(|s| s.power == VcpuPower::On) => {
                Some(why)
            }
            _ => None,
        }
    }

    /// Completes a stop once every vCPU has left: a reset reloads the VM (its
    /// vGIC back to reset, physical interrupts it held deactivated, images
    /// reloaded, vCPU 0 pending), a power-off turns it off. Returns the CPUs
    /// to kick.
    pub fn complete_stop(&self, why: Stop, hw: &mut impl Hw) -> u64 {
        // The vGIC back to its reset state; what the hypervisor left active at
        // the physical GIC for this VM is deactivated.
        let (actions, _) = self.gic.update(|g| {
            g.reset();
            g.take_actions()
        });
        for a in actions {
            match a {
                vgic::HwAction::DeactivatePhysical { vcpu, intid } if intid < 32 => {
                    hw.deactivate_ppi_on(self.pcpus[vcpu], intid)
                }
                vgic::HwAction::DeactivatePhysical { intid, .. } => hw.deactivate_spi(intid),
                vgic::HwAction::RoutePhysicalSpi { .. } => {}
            }
        }
        for &intid in &self.passthrough_irqs {
            hw.route_spi(intid, self.pcpus[0]);
        }
        match why {
            Stop::Reset => {
                console::clear_input(self.spec.index);
                match self.load(hw) {
                    Ok(cpu) => {
                        // What `make soak` watches: a reset must give back what the
                        // VM's last life took.
                        #[cfg(target_os = "none")]
                        info!(
                            "VM '{}' reloaded; heap: {} bytes in use",
                            self.spec.name,
                            crate::arch::memory::heap_used()
                        );
                        1 << cpu
                    }
                    Err(e) => {
                        error!("VM '{}' could not be reset: {e}", self.spec.name);
                        self.turn_off(hw);
                        0
                    }
                }
            }
            Stop::PowerOff => {
                self.turn_off(hw);
                0
            }
        }
    }

    fn turn_off(&self, hw: &mut impl Hw) {
        {
            let mut life = self.life.lock();
            if life.state == VmState::Off {
                return;
            }
            life.state = VmState::Off;
        }
        self.stopping.store(false, Ordering::SeqCst);
        console::set_alive(self.spec.index, false);
        info!("VM '{}' is off", self.spec.name);
        if self.running.fetch_sub(1, Ordering::SeqCst) == 1 {
            info!("all VMs are off: powering the machine off");
            hw.system_off();
            warn!("the firmware did not power the machine off");
        }
    }

    /// A byte of the VM's RAM at guest-physical `ipa` (tests).
    #[cfg(test)]
    pub fn ram_byte(&self, ipa: u64) -> u8 {
        self.ram.lock().frames().bytes_mut()[(ipa - self.spec.ram_base) as usize]
    }

    /// Cleans and invalidates the VM's RAM to the point of coherency (set/way
    /// emulation, caches switched on or off), from offset `from` on, at most
    /// `budget` bytes of mapped RAM: returns where to go on from, or `None`
    /// when all of it is done.
    pub fn clean_invalidate_ram_step(
        &self,
        hw: &mut impl Hw,
        from: u64,
        budget: u64,
    ) -> Option<u64> {
        // RAM not mapped yet has no line of the guest's in any cache. A chunk
        // mapped while the flush goes on was zeroed to the point of coherency
        // when it was mapped: it holds nothing older to clean.
        let ram = self.ram.lock();
        let mut left = budget;
        for r in ram.mapped() {
            let start = r.start.max(from);
            if start >= r.end {
                continue;
            }
            if left == 0 {
                return Some(start);
            }
            let len = (r.end - start).min(left);
            hw.clean_invalidate(self.ram_pa + start, len);
            left -= len;
            if start + len < r.end {
                return Some(start + len);
            }
        }
        None
    }

    /// A stage-2 Translation fault at `ipa`: if it is RAM mapped on first
    /// touch, maps it (zeroed) and says so; the access is then retried.
    #[inline]
    pub fn populate(&self, ipa: u64, hw: &mut impl Hw) -> bool {
        // An emulated device's fault leaves here at once.
        let offset = ipa.wrapping_sub(self.spec.ram_base);
        offset < self.spec.ram_size && self.populate_at(offset, hw)
    }

    #[inline(never)]
    fn populate_at(&self, offset: u64, hw: &mut impl Hw) -> bool {
        self.ram.lock().on_fault(offset, hw)
    }

    /// Bytes of the VM's RAM mapped at stage 2 so far.
    pub fn ram_mapped_bytes(&self) -> u64 {
        self.ram.lock().mapped_bytes()
    }
}

/// The PSCI view of a VM: the vCPUs' power states (each query takes the
/// lifecycle lock; CPU_ON is applied by [`Vm::power_on`], which checks again).
pub struct PsciView<'a>(pub &'a Vm);

impl PsciVm for PsciView<'_> {
    fn vcpu_count(&self) -> usize {
        self.0.spec.vcpus
    }
    fn vcpu_by_mpidr(&self, mpidr: u64) -> Option<usize> {
        let want = crate::sysreg::Mpidr::new(mpidr);
        (0..self.0.spec.vcpus).find(|&i| crate::sysreg::Mpidr::of_vcpu(i) == want)
    }
    fn vcpu_power(&self, index: usize) -> VcpuPower {
        self.0.slot(index).power
    }
    fn is_guest_ram(&self, addr: u64) -> bool {
        let s = &self.0.spec;
        (s.ram_base..s.ram_base + s.ram_size).contains(&addr)
    }
    fn caller_is_aarch32(&self) -> bool {
        // HCR_EL2.RW = 1: EL1 is AArch64, and EL0 cannot make HVC/SMC calls.
        false
    }
}
