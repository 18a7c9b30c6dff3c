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

use log::{debug, info, warn};

use crate::arch::{self, GuestRegs, LiveEl1, memory, regs};
use crate::devices::{MmioBus, console, pl011};
use crate::mm::PAGE_SIZE;
use crate::mm::pagetable::{PageTable, S2Attrs, Stage2Geometry, vttbr_el2};
use crate::platform::Conduit;
use crate::trap;
use crate::vm::controls::{self, El2Controls, HostFeatures, SysRegTraps};
use crate::vm::exit::{ExitContext, Next, SysRegResult};
use crate::vm::guest_fdt::{self, GuestMachine};
use crate::vm::image::{ImageKind, LoadPlan, plan_load};
use crate::vm::layout::{self, BootLayout};

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

/// How a VM's run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmStop {
    PowerOff,
    Reset,
}

/// What the boot CPU found, shared by every VM.
#[derive(Clone, Copy, Debug)]
pub struct Host {
    pub features: HostFeatures,
    pub stage2: Stage2Geometry,
    pub firmware: Conduit,
}

/// One VM.
pub struct Vm {
    pub spec: VmSpec,
    vmid: u8,
    ram: memory::OwnedFrames,
    stage2: PageTable<Stage2Geometry>,
    vttbr: u64,
    vtcr: u64,
    controls: El2Controls,
    host: Host,
    pub bus: MmioBus,
    entry: u64,
    dtb_ipa: u64,
    cntvoff: u64,
    vcpu_on: Vec<bool>,
    /// Encodings already reported as unknown (logged once each).
    unknown_sysregs: Vec<crate::sysreg::SysReg>,
}

impl Vm {
    /// Builds the VM: RAM, stage 2, devices, images and device tree in place.
    pub fn create(spec: VmSpec, host: Host) -> Result<Vm, VmError> {
        let pages = spec.ram_size.div_ceil(PAGE_SIZE) as usize;
        let ram = memory::alloc_frames(pages, (RAM_ALIGN / PAGE_SIZE) as usize).ok_or(
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
        let vmid = (spec.index + 1) as u8;
        let mut bus = MmioBus::new();
        if spec.console {
            let port = pl011::SharedConsolePort { vm: spec.index };
            let _ = bus.add(
                0x0900_0000,
                0x1000,
                Box::new(pl011::Pl011::new(Box::new(port))),
            );
        }
        let vcpus = spec.vcpus;
        let mut vm = Vm {
            vttbr: vttbr_el2(stage2.root_pa(), vmid),
            vtcr: host.stage2.vtcr_el2(),
            controls: controls::el2_controls(&host.features, SysRegTraps::Minimal),
            host,
            vmid,
            ram,
            stage2,
            bus,
            entry: 0,
            dtb_ipa: 0,
            cntvoff: 0,
            vcpu_on: alloc::vec![false; vcpus],
            unknown_sysregs: Vec::new(),
            spec,
        };
        vm.load()?;
        Ok(vm)
    }

    /// (Re)loads the images and device tree into RAM: the state a VM starts in.
    fn load(&mut self) -> Result<(), VmError> {
        let s = &self.spec;
        let plan: LoadPlan =
            plan_load(&s.kernel_kind, s.kernel, s.ram_base, s.ram_size).map_err(VmError::Image)?;
        let machine = self.machine(None);
        let probe = guest_fdt::build_guest_fdt(&machine)
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
        let kernel = s.kernel;
        let initrd = s.initrd;
        let ram = self.ram.bytes_mut();
        ram.fill(0);
        for seg in &plan.segments {
            let off = (seg.guest_pa - base) as usize;
            ram[off..off + seg.file.len()].copy_from_slice(&kernel[seg.file.clone()]);
        }
        if let (Some(r), Some(bytes)) = (lay.initrd.clone(), initrd) {
            let off = (r.start - base) as usize;
            ram[off..off + bytes.len()].copy_from_slice(bytes);
        }
        let off = (lay.dtb.start - base) as usize;
        ram[off..off + dtb.len()].copy_from_slice(&dtb);
        // The guest starts with its MMU and caches off: its accesses bypass the
        // caches, so what was just written through them must reach memory.
        regs::dcache_clean_invalidate(self.ram.pa(), self.ram.len() as u64);
        regs::icache_invalidate_all();
        self.entry = plan.entry;
        self.dtb_ipa = lay.dtb.start;
        self.cntvoff = regs::read_cntpct_el0();
        for (i, on) in self.vcpu_on.iter_mut().enumerate() {
            *on = i == 0;
        }
        info!(
            "VM '{}': {} MiB RAM at IPA {:#x} (PA {:#x}), {} vCPU(s), kernel {:?} entry {:#x}, device tree at {:#x}{}",
            self.spec.name,
            self.spec.ram_size >> 20,
            self.spec.ram_base,
            self.ram.pa(),
            self.spec.vcpus,
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
        regs::write_cntvoff_el2(self.cntvoff);
        regs::write_hstr_el2(0);
        regs::write_vpidr_el2(regs::read_midr_el1());
        regs::write_vmpidr_el2(controls::vmpidr(vcpu));
        arch::reset_el1_state(controls::SCTLR_EL1_RESET);
        regs::isb();
        regs::tlbi_vmid_all();
    }

    /// Runs vCPU `vcpu` on this CPU until the VM stops.
    pub fn run_vcpu(&mut self, vcpu: usize) -> VmStop {
        self.load_cpu(vcpu);
        let mut gprs = GuestRegs::default();
        gprs.x[0] = self.dtb_ipa;
        gprs.pc = self.entry;
        gprs.pstate = controls::PSTATE_EL1H_MASKED;
        let features = self.host.features.pstate();
        loop {
            match arch::enter_guest(&mut gprs) {
                arch::ExitCause::Sync => {}
                cause => {
                    debug!("VM '{}': {:?} exit", self.spec.name, cause);
                    continue;
                }
            }
            let esr = regs::read_esr_el2();
            let exit = trap::decode(esr, regs::read_far_el2(), regs::read_hpfar_el2());
            let mut hw = LiveEl1;
            let mut psci = PsciView {
                vcpu_on: &mut self.vcpu_on,
                ram: self.spec.ram_base..self.spec.ram_base + self.spec.ram_size,
            };
            let name = &self.spec.name;
            let unknown = &mut self.unknown_sysregs;
            let mut sysreg = |acc: trap::SysRegAccess, _v: u64| {
                if !unknown.contains(&acc.reg) {
                    unknown.push(acc.reg);
                    warn!(
                        "VM '{name}': {} of unknown system register {}: UNDEFINED to the guest",
                        if acc.write { "write" } else { "read" },
                        acc.reg
                    );
                }
                SysRegResult::Undefined
            };
            let mut ctx = ExitContext {
                gprs: &mut gprs,
                hw: &mut hw,
                bus: &mut self.bus,
                psci: &mut psci,
                features,
                instr_len: trap::instruction_length(esr),
                sysreg: &mut sysreg,
            };
            match ctx.handle(exit) {
                Next::Resume | Next::Idle => {}
                Next::SystemOff => {
                    info!("VM '{}' powered off (PSCI SYSTEM_OFF)", self.spec.name);
                    return VmStop::PowerOff;
                }
                Next::SystemReset => {
                    info!(
                        "VM '{}' asked for a reset (PSCI SYSTEM_RESET)",
                        self.spec.name
                    );
                    return VmStop::Reset;
                }
                Next::CpuOff => {
                    if self.vcpu_on.iter().filter(|o| **o).count() <= 1 {
                        info!("VM '{}': last vCPU turned off", self.spec.name);
                        return VmStop::PowerOff;
                    }
                }
                Next::CpuOn { target, .. } => {
                    warn!(
                        "VM '{}': CPU_ON for vCPU {target}: secondary vCPUs are not started yet",
                        self.spec.name
                    );
                }
            }
        }
    }

    /// Puts the VM back to its initial state (for PSCI SYSTEM_RESET).
    pub fn reset(&mut self) -> Result<(), VmError> {
        console::clear_input(self.spec.index);
        self.load()
    }

    pub fn vmid(&self) -> u8 {
        self.vmid
    }

    /// Stage-2 table memory in bytes.
    pub fn stage2_bytes(&self) -> u64 {
        let mut t = memory::HwTableMemory;
        self.stage2.table_pages(&mut t) as u64 * PAGE_SIZE
    }
}

/// The PSCI view of a VM: which vCPUs are on and where its RAM is.
struct PsciView<'a> {
    vcpu_on: &'a mut Vec<bool>,
    ram: core::ops::Range<u64>,
}

impl crate::psci::PsciVm for PsciView<'_> {
    fn vcpu_count(&self) -> usize {
        self.vcpu_on.len()
    }
    fn vcpu_by_mpidr(&self, mpidr: u64) -> Option<usize> {
        (0..self.vcpu_on.len())
            .find(|&i| controls::vmpidr(i) & 0xff_00ff_ffff == mpidr & 0xff_00ff_ffff)
    }
    fn caller_is_aarch32(&self) -> bool {
        // HCR_EL2.RW = 1: EL1 is AArch64, and HVC/SMC are not available at EL0.
        false
    }
    fn vcpu_power(&self, index: usize) -> crate::psci::VcpuPower {
        if self.vcpu_on.get(index).copied().unwrap_or(false) {
            crate::psci::VcpuPower::On
        } else {
            crate::psci::VcpuPower::Off
        }
    }
    fn is_guest_ram(&self, addr: u64) -> bool {
        self.ram.contains(&addr)
    }
}
