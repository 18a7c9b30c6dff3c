//! The device tree a guest boots with.
//!
//! A [`GuestMachine`] is the machine a VM is given, in plain data; [`build_guest_fdt`]
//! writes it as a flattened device tree (with rust-vmm's `vm-fdt` writer) that Linux
//! accepts, shaped like the tree QEMU's `virt` board generates so a kernel that boots
//! on `virt` boots here unchanged. [`GuestMachine::qemu_virt_like`] gives that board's
//! layout: GICv3 at 0x0800_0000, redistributors from 0x080A_0000, PL011 at
//! 0x0900_0000 on SPI 1, PSCI over HVC.
//!
//! The bindings followed are Linux's `Documentation/devicetree/bindings/`:
//! `arm/cpus.yaml`, `arm/psci.yaml`, `timer/arm,arch_timer.yaml`,
//! `interrupt-controller/arm,gic-v3.yaml` and `arm,gic.yaml`, `serial/pl011.yaml`,
//! and the Devicetree Specification's cache properties (cpu nodes: `i-cache-*`,
//! `d-cache-*`, `cache-*`, `next-level-cache`; cache nodes: `compatible = "cache"`,
//! `cache-level`, `cache-unified`).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use vm_fdt::FdtWriter;

use crate::platform::{Conduit, DeviceNode, MemRange};

/// QEMU `virt` (hw/arm/virt.c memmap): distributor.
pub const VIRT_GICD: MemRange = MemRange::new(0x0800_0000, 0x1_0000);
/// QEMU `virt`: first redistributor; the region runs up to the UART.
pub const VIRT_GICR_BASE: u64 = 0x080A_0000;
/// GICv3 12.10: a redistributor is two 64 KiB frames (RD_base, SGI_base).
pub const GICV3_REDISTRIBUTOR_STRIDE: u64 = 0x2_0000;
/// QEMU `virt`'s redistributor region (0x080A_0000..0x0900_0000) fits 123 of them.
pub const VIRT_GICR_MAX_VCPUS: usize = 0xF6_0000 / GICV3_REDISTRIBUTOR_STRIDE as usize;
/// QEMU `virt` (GICv2): CPU interface.
pub const VIRT_GICC: MemRange = MemRange::new(0x0801_0000, 0x1_0000);
/// QEMU `virt`: PL011 UART.
pub const VIRT_UART: MemRange = MemRange::new(0x0900_0000, 0x1000);
/// QEMU `virt`: the UART's SPI number (INTID 33).
pub const VIRT_UART_SPI: u32 = 1;
/// The GIC maintenance interrupt PPI on QEMU `virt` (INTID 25).
pub const VIRT_GIC_MAINTENANCE_PPI: u32 = 9;
/// QEMU `virt`'s fixed APB clock (24 MHz) the PL011 binding wants as `clocks`.
const APB_PCLK_HZ: u32 = 24_000_000;

/// GIC binding interrupt specifier types (first cell).
const GIC_SPI: u32 = 0;
const GIC_PPI: u32 = 1;
/// `IRQ_TYPE_LEVEL_HIGH` (include/dt-bindings/interrupt-controller/irq.h), in the
/// third cell; GICv2 PPIs also carry a CPU mask in bits [15:8].
const IRQ_TYPE_LEVEL_HIGH: u32 = 4;

const PHANDLE_GIC: u32 = 1;
const PHANDLE_APB_PCLK: u32 = 2;
/// The cache node of level n (2..=7) has phandle `PHANDLE_CACHE_BASE + n`.
const PHANDLE_CACHE_BASE: u32 = 0x10;

/// The guest's interrupt controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestGic {
    V3 {
        gicd: MemRange,
        /// One contiguous redistributor region, [`GICV3_REDISTRIBUTOR_STRIDE`] per vCPU.
        gicr: MemRange,
        /// INTID listed as the maintenance interrupt (`interrupts` of the GIC node).
        maintenance_intid: Option<u32>,
    },
    /// GICv2 (`arm,cortex-a15-gic`): at most 8 vCPUs (GICv2 2.2.1, 8-bit CPU targets).
    V2 { gicd: MemRange, gicc: MemRange },
}

/// The generic timer's PPIs as PPI numbers (INTID - 16), in binding order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestTimerPpis {
    pub secure_phys: u32,
    pub nonsecure_phys: u32,
    pub virt: u32,
    pub hyp_phys: u32,
}

impl GuestTimerPpis {
    /// QEMU `virt`: PPIs 13, 14, 11, 10 (INTIDs 29, 30, 27, 26).
    pub const QEMU_VIRT: GuestTimerPpis = GuestTimerPpis {
        secure_phys: 13,
        nonsecure_phys: 14,
        virt: 11,
        hyp_phys: 10,
    };

    fn in_order(&self) -> [u32; 4] {
        [
            self.secure_phys,
            self.nonsecure_phys,
            self.virt,
            self.hyp_phys,
        ]
    }
}

/// The machine a guest sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestMachine {
    /// Guest RAM, in IPA space.
    pub memory: MemRange,
    /// MPIDR_EL1 affinity (Aff3 in bits [39:32], Aff2..Aff0 in [23:0]) of each vCPU;
    /// the value VMPIDR_EL2 gets, less its RES1 bit 31.
    pub vcpu_mpidrs: Vec<u64>,
    pub gic: GuestGic,
    /// Console PL011: MMIO range and SPI number (INTID - 32).
    pub uart: Option<(MemRange, u32)>,
    pub timer_ppis: GuestTimerPpis,
    /// How the guest calls PSCI (the hypervisor traps it either way).
    pub psci_method: Conduit,
    pub bootargs: Option<String>,
    /// Initrd already placed in guest RAM.
    pub initrd: Option<MemRange>,
    /// Host devices given to the guest at the same addresses and INTIDs.
    pub passthrough: Vec<DeviceNode>,
    /// The caches every vCPU has, level 1 first: what CLIDR_EL1/CCSIDR_EL1 show
    /// the guest, described again in the tree (empty: not described).
    pub caches: Vec<GuestCacheLevel>,
    /// The PMU's overflow PPI as a PPI number (INTID - 16) when the guest has a
    /// PMUv3: an `arm,armv8-pmuv3` node (binding `arm/pmu.yaml`).
    pub pmu_ppi: Option<u32>,
}

/// One cache as the device tree describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestCache {
    pub size: u32,
    pub line_size: u32,
    pub sets: u32,
}

/// The caches at one level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestCacheLevel {
    Separate {
        instruction: GuestCache,
        data: GuestCache,
    },
    Instruction(GuestCache),
    Data(GuestCache),
    Unified(GuestCache),
}

impl GuestCacheLevel {
    /// The levels of a VM's cache topology (the one its CLIDR_EL1 and
    /// CCSIDR_EL1 show), in device-tree terms. Why Linux needs them: with no
    /// cache properties in the tree, Linux 6.1 counts two L1 leaves per CPU
    /// (`of_count_cache_leaves`: split caches are assumed) and none beyond L1
    /// (no `next-level-cache`), and newer kernels print "Unable to detect cache
    /// hierarchy" for the first CPU; what the tree says here matches CLIDR_EL1
    /// leaf for leaf, so every version agrees with the registers.
    pub fn from_topology(topo: &crate::sysreg::CacheTopology) -> Vec<GuestCacheLevel> {
        use crate::sysreg::cache::Ctype;
        let clidr = topo.clidr();
        let cache = |level: u8, instruction: bool| {
            let csselr = (u64::from(level) << 1) | u64::from(instruction);
            // Every listed cache has a geometry below 4 GiB: the CPU model
            // refuses anything else (`CacheError::TooLarge`).
            let g = topo
                .geometry(csselr)
                .unwrap_or(crate::sysreg::cache::CacheGeometry {
                    line_log2: 4,
                    ways: 1,
                    sets: 1,
                });
            GuestCache {
                size: g.size_bytes().min(u64::from(u32::MAX)) as u32,
                line_size: g.line_bytes() as u32,
                sets: g.sets,
            }
        };
        let mut out = Vec::new();
        for level in 0..clidr.levels() {
            out.push(match clidr.ctype[level as usize] {
                Ctype::Separate => GuestCacheLevel::Separate {
                    instruction: cache(level, true),
                    data: cache(level, false),
                },
                Ctype::Instruction => GuestCacheLevel::Instruction(cache(level, true)),
                Ctype::Data => GuestCacheLevel::Data(cache(level, false)),
                Ctype::Unified => GuestCacheLevel::Unified(cache(level, false)),
                Ctype::None => break,
            });
        }
        out
    }
}

impl GuestMachine {
    /// QEMU `virt`'s layout with `nr_vcpus` vCPUs and `memory` as RAM.
    ///
    /// MPIDRs follow QEMU's GICv3 numbering: 16 CPUs per cluster (Aff0 = i % 16,
    /// Aff1 = i / 16), since a GICv3 SGI targets at most 16 Aff0 values (ICC_SGI1R_EL1
    /// TargetList). More than [`VIRT_GICR_MAX_VCPUS`] vCPUs would run the
    /// redistributors into the UART; [`build_guest_fdt`] refuses that.
    pub fn qemu_virt_like(memory: MemRange, nr_vcpus: usize) -> GuestMachine {
        let vcpu_mpidrs = (0..nr_vcpus as u64)
            .map(|i| ((i / 16) << 8) | (i % 16))
            .collect();
        GuestMachine {
            memory,
            vcpu_mpidrs,
            gic: GuestGic::V3 {
                gicd: VIRT_GICD,
                gicr: MemRange::new(VIRT_GICR_BASE, GICV3_REDISTRIBUTOR_STRIDE * nr_vcpus as u64),
                maintenance_intid: Some(16 + VIRT_GIC_MAINTENANCE_PPI),
            },
            uart: Some((VIRT_UART, VIRT_UART_SPI)),
            timer_ppis: GuestTimerPpis::QEMU_VIRT,
            psci_method: Conduit::Hvc,
            bootargs: None,
            initrd: None,
            passthrough: Vec::new(),
            caches: Vec::new(),
            pmu_ppi: None,
        }
    }
}

/// Why a guest device tree could not be built.
#[derive(Debug, PartialEq, Eq)]
pub enum GuestFdtError {
    NoVcpus,
    DuplicateMpidr(u64),
    /// An MPIDR with bits outside Aff3..Aff0.
    BadMpidr(u64),
    /// A region of size zero, or one that wraps past 2^64.
    BadRange(String),
    /// Two regions of the guest's physical address space overlap.
    Overlap {
        first: String,
        second: String,
    },
    GicrTooSmall {
        needed: u64,
        have: u64,
    },
    TooManyVcpusForGicV2(usize),
    /// An interrupt that is neither an SPI nor a PPI the binding can express.
    BadInterrupt {
        node: String,
        intid: u32,
    },
    InitrdOutsideMemory(MemRange),
    Writer(vm_fdt::Error),
}

impl fmt::Display for GuestFdtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GuestFdtError::NoVcpus => write!(f, "guest has no vCPUs"),
            GuestFdtError::DuplicateMpidr(m) => write!(f, "two vCPUs have MPIDR {m:#x}"),
            GuestFdtError::BadMpidr(m) => {
                write!(f, "vCPU MPIDR {m:#x} has bits outside Aff3..Aff0")
            }
            GuestFdtError::BadRange(what) => write!(f, "{what}: empty or wrapping range"),
            GuestFdtError::Overlap { first, second } => write!(f, "{first} overlaps {second}"),
            GuestFdtError::GicrTooSmall { needed, have } => write!(
                f,
                "GICR region is {have:#x} bytes, the vCPUs need {needed:#x}"
            ),
            GuestFdtError::TooManyVcpusForGicV2(n) => {
                write!(f, "{n} vCPUs but a GICv2 serves at most 8")
            }
            GuestFdtError::BadInterrupt { node, intid } => {
                write!(f, "{node}: INTID {intid} is not an SPI or PPI")
            }
            GuestFdtError::InitrdOutsideMemory(r) => write!(f, "initrd {r} is not in guest RAM"),
            GuestFdtError::Writer(e) => write!(f, "FDT writer: {e}"),
        }
    }
}

impl From<vm_fdt::Error> for GuestFdtError {
    fn from(e: vm_fdt::Error) -> Self {
        GuestFdtError::Writer(e)
    }
}

/// A GIC binding interrupt specifier for `intid` (SPI or PPI), with `flags`.
fn gic_specifier(node: &str, intid: u32, flags: u32) -> Result<[u32; 3], GuestFdtError> {
    match intid {
        16..=31 => Ok([GIC_PPI, intid - 16, flags]),
        32..=1019 => Ok([GIC_SPI, intid - 32, flags]),
        _ => Err(GuestFdtError::BadInterrupt {
            node: node.to_string(),
            intid,
        }),
    }
}

/// The guest-physical regions the tree describes, by name, for the overlap check.
fn regions(m: &GuestMachine) -> Vec<(String, MemRange)> {
    let mut out = vec![(String::from("memory"), m.memory)];
    match &m.gic {
        GuestGic::V3 { gicd, gicr, .. } => {
            out.push((String::from("GICD"), *gicd));
            out.push((String::from("GICR"), *gicr));
        }
        GuestGic::V2 { gicd, gicc } => {
            out.push((String::from("GICD"), *gicd));
            out.push((String::from("GICC"), *gicc));
        }
    }
    if let Some((r, _)) = m.uart {
        out.push((String::from("UART"), r));
    }
    for d in &m.passthrough {
        out.extend(d.regs.iter().map(|r| (d.path.clone(), *r)));
    }
    out
}

fn validate(m: &GuestMachine) -> Result<(), GuestFdtError> {
    let n = m.vcpu_mpidrs.len();
    if n == 0 {
        return Err(GuestFdtError::NoVcpus);
    }
    for (i, &mpidr) in m.vcpu_mpidrs.iter().enumerate() {
        if crate::sysreg::Mpidr::has_other_bits(mpidr) {
            return Err(GuestFdtError::BadMpidr(mpidr));
        }
        if m.vcpu_mpidrs[..i].contains(&mpidr) {
            return Err(GuestFdtError::DuplicateMpidr(mpidr));
        }
    }
    let regions = regions(m);
    if let Some(d) = m.passthrough.iter().find(|d| d.regs.is_empty()) {
        return Err(GuestFdtError::BadRange(d.path.clone()));
    }
    for (name, r) in &regions {
        if r.size == 0 || r.base.checked_add(r.size).is_none() {
            return Err(GuestFdtError::BadRange(name.clone()));
        }
    }
    for (i, (a, ra)) in regions.iter().enumerate() {
        if let Some((b, _)) = regions[i + 1..].iter().find(|(_, rb)| ra.overlaps(rb)) {
            return Err(GuestFdtError::Overlap {
                first: a.clone(),
                second: b.clone(),
            });
        }
    }
    match &m.gic {
        GuestGic::V3 { gicr, .. } => {
            let needed = GICV3_REDISTRIBUTOR_STRIDE * n as u64;
            if gicr.size < needed {
                return Err(GuestFdtError::GicrTooSmall {
                    needed,
                    have: gicr.size,
                });
            }
        }
        GuestGic::V2 { .. } if n > 8 => return Err(GuestFdtError::TooManyVcpusForGicV2(n)),
        GuestGic::V2 { .. } => {}
    }
    if let Some(initrd) = m.initrd.filter(|r| !m.memory.contains_range(r)) {
        return Err(GuestFdtError::InitrdOutsideMemory(initrd));
    }
    Ok(())
}

/// A node name `<base>@<unit address>` for a passthrough device: the host node's name
/// with the unit address of its first (identity-mapped) `reg`.
fn passthrough_node_name(d: &DeviceNode) -> String {
    let last = d.path.rsplit('/').next().unwrap_or(&d.path);
    let base = last.split('@').next().unwrap_or(last);
    match d.regs.first() {
        Some(r) => format!("{base}@{:x}", r.base),
        None => base.to_string(),
    }
}

/// Writes `m` as a device tree blob.
pub fn build_guest_fdt(m: &GuestMachine) -> Result<Vec<u8>, GuestFdtError> {
    validate(m)?;
    let nr_vcpus = m.vcpu_mpidrs.len();
    // arm,gic binding: GICv2 PPI specifiers carry a mask of the CPUs they reach.
    let ppi_flags = match m.gic {
        GuestGic::V3 { .. } => IRQ_TYPE_LEVEL_HIGH,
        GuestGic::V2 { .. } => (((1u32 << nr_vcpus) - 1) << 8) | IRQ_TYPE_LEVEL_HIGH,
    };

    let mut w = FdtWriter::new()?;
    let root = w.begin_node("")?;
    w.property_string("compatible", "linux,dummy-virt")?;
    w.property_string("model", "linux,dummy-virt")?;
    w.property_u32("#address-cells", 2)?;
    w.property_u32("#size-cells", 2)?;
    w.property_u32("interrupt-parent", PHANDLE_GIC)?;

    let memory = w.begin_node(&format!("memory@{:x}", m.memory.base))?;
    w.property_string("device_type", "memory")?;
    w.property_array_u64("reg", &[m.memory.base, m.memory.size])?;
    w.end_node(memory)?;

    write_cpus(&mut w, &m.vcpu_mpidrs, &m.caches)?;

    let psci = w.begin_node("psci")?;
    w.property_string_list(
        "compatible",
        vec!["arm,psci-1.0".into(), "arm,psci-0.2".into()],
    )?;
    w.property_string("method", m.psci_method.as_str())?;
    w.end_node(psci)?;

    // arm,arch_timer binding: secure phys, non-secure phys, virt, hyp phys. No
    // `always-on`: the guest may use idle states in which the hypervisor's timer
    // emulation is the only thing keeping time.
    let timer = w.begin_node("timer")?;
    w.property_string_list(
        "compatible",
        vec!["arm,armv8-timer".into(), "arm,armv7-timer".into()],
    )?;
    let mut cells = Vec::with_capacity(12);
    for ppi in m.timer_ppis.in_order() {
        if ppi >= 16 {
            return Err(GuestFdtError::BadInterrupt {
                node: String::from("timer"),
                intid: ppi.saturating_add(16),
            });
        }
        cells.extend(gic_specifier("timer", ppi + 16, ppi_flags)?);
    }
    w.property_array_u32("interrupts", &cells)?;
    w.end_node(timer)?;

    // arm/pmu.yaml: one PPI for every CPU (level-high, all CPUs on a GICv2).
    if let Some(ppi) = m.pmu_ppi {
        if ppi >= 16 {
            return Err(GuestFdtError::BadInterrupt {
                node: String::from("pmu"),
                intid: ppi.saturating_add(16),
            });
        }
        let pmu = w.begin_node("pmu")?;
        w.property_string("compatible", "arm,armv8-pmuv3")?;
        w.property_array_u32("interrupts", &gic_specifier("pmu", ppi + 16, ppi_flags)?)?;
        w.end_node(pmu)?;
    }

    write_gic(&mut w, &m.gic)?;

    let clk = w.begin_node("apb-pclk")?;
    w.property_string("compatible", "fixed-clock")?;
    w.property_u32("#clock-cells", 0)?;
    w.property_u32("clock-frequency", APB_PCLK_HZ)?;
    w.property_string("clock-output-names", "clk24mhz")?;
    w.property_phandle(PHANDLE_APB_PCLK)?;
    w.end_node(clk)?;

    let uart_name = match m.uart {
        Some((range, spi)) => {
            let name = format!("pl011@{:x}", range.base);
            let spec = gic_specifier(&name, spi.saturating_add(32), IRQ_TYPE_LEVEL_HIGH)?;
            let uart = w.begin_node(&name)?;
            w.property_string_list(
                "compatible",
                vec!["arm,pl011".into(), "arm,primecell".into()],
            )?;
            w.property_array_u64("reg", &[range.base, range.size])?;
            w.property_array_u32("interrupts", &spec)?;
            w.property_array_u32("clocks", &[PHANDLE_APB_PCLK, PHANDLE_APB_PCLK])?;
            w.property_string_list("clock-names", vec!["uartclk".into(), "apb_pclk".into()])?;
            w.end_node(uart)?;
            Some(name)
        }
        None => None,
    };

    write_passthrough(&mut w, m)?;

    let chosen = w.begin_node("chosen")?;
    if let Some(args) = &m.bootargs {
        w.property_string("bootargs", args)?;
    }
    if let Some(name) = &uart_name {
        w.property_string("stdout-path", &format!("/{name}"))?;
    }
    if let Some(initrd) = m.initrd {
        // Linux chosen binding: end is exclusive.
        w.property_u64("linux,initrd-start", initrd.base)?;
        w.property_u64("linux,initrd-end", initrd.end())?;
    }
    w.end_node(chosen)?;

    w.end_node(root)?;
    Ok(w.finish()?)
}

/// arm/cpus.yaml: `reg` is the MPIDR affinity; one cell while Aff3 is zero, else two.
/// Each cpu node carries its L1 cache properties and points at the level-2 cache
/// node, which every vCPU shares; each cache node points at the next level.
fn write_cpus(
    w: &mut FdtWriter,
    mpidrs: &[u64],
    caches: &[GuestCacheLevel],
) -> Result<(), GuestFdtError> {
    let two_cells = mpidrs.iter().any(|&m| m > u64::from(u32::MAX));
    let cpus = w.begin_node("cpus")?;
    w.property_u32("#address-cells", if two_cells { 2 } else { 1 })?;
    w.property_u32("#size-cells", 0)?;
    for &mpidr in mpidrs {
        let cpu = w.begin_node(&format!("cpu@{mpidr:x}"))?;
        w.property_string("device_type", "cpu")?;
        w.property_string("compatible", "arm,armv8")?;
        if two_cells {
            w.property_u64("reg", mpidr)?;
        } else {
            w.property_u32("reg", mpidr as u32)?;
        }
        w.property_string("enable-method", "psci")?;
        if let Some(l1) = caches.first() {
            write_cache_properties(w, l1)?;
        }
        if caches.len() > 1 {
            w.property_u32("next-level-cache", PHANDLE_CACHE_BASE + 2)?;
        }
        w.end_node(cpu)?;
    }
    for (index, cache) in caches.iter().enumerate().skip(1) {
        let level = index as u32 + 1;
        let node = w.begin_node(&format!("l{level}-cache"))?;
        w.property_string("compatible", "cache")?;
        w.property_u32("cache-level", level)?;
        write_cache_properties(w, cache)?;
        if index + 1 < caches.len() {
            w.property_u32("next-level-cache", PHANDLE_CACHE_BASE + level + 1)?;
        }
        w.property_phandle(PHANDLE_CACHE_BASE + level)?;
        w.end_node(node)?;
    }
    w.end_node(cpus)?;
    Ok(())
}

/// The size, line size and set count of one level's caches: `i-cache-*` and
/// `d-cache-*` for instruction and data caches, `cache-*` with `cache-unified`
/// for a unified one.
fn write_cache_properties(w: &mut FdtWriter, level: &GuestCacheLevel) -> Result<(), GuestFdtError> {
    fn one(w: &mut FdtWriter, prefix: &str, c: &GuestCache) -> Result<(), GuestFdtError> {
        w.property_u32(&format!("{prefix}cache-size"), c.size)?;
        w.property_u32(&format!("{prefix}cache-line-size"), c.line_size)?;
        w.property_u32(&format!("{prefix}cache-sets"), c.sets)?;
        Ok(())
    }
    match level {
        GuestCacheLevel::Separate { instruction, data } => {
            one(w, "i-", instruction)?;
            one(w, "d-", data)?;
        }
        GuestCacheLevel::Instruction(c) => one(w, "i-", c)?,
        GuestCacheLevel::Data(c) => one(w, "d-", c)?,
        GuestCacheLevel::Unified(c) => {
            w.property_null("cache-unified")?;
            one(w, "", c)?;
        }
    }
    Ok(())
}

fn write_gic(w: &mut FdtWriter, gic: &GuestGic) -> Result<(), GuestFdtError> {
    let (gicd, compatible) = match gic {
        GuestGic::V3 { gicd, .. } => (gicd, "arm,gic-v3"),
        GuestGic::V2 { gicd, .. } => (gicd, "arm,cortex-a15-gic"),
    };
    let name = format!("intc@{:x}", gicd.base);
    let intc = w.begin_node(&name)?;
    w.property_string("compatible", compatible)?;
    w.property_null("interrupt-controller")?;
    w.property_u32("#interrupt-cells", 3)?;
    // As QEMU writes it: lets an ITS or v2m frame child be added with an empty `ranges`.
    w.property_u32("#address-cells", 2)?;
    w.property_u32("#size-cells", 2)?;
    w.property_null("ranges")?;
    match gic {
        GuestGic::V3 {
            gicd,
            gicr,
            maintenance_intid,
        } => {
            w.property_array_u64("reg", &[gicd.base, gicd.size, gicr.base, gicr.size])?;
            w.property_u32("#redistributor-regions", 1)?;
            if let Some(intid) = maintenance_intid {
                let spec = gic_specifier(&name, *intid, IRQ_TYPE_LEVEL_HIGH)?;
                w.property_array_u32("interrupts", &spec)?;
            }
        }
        GuestGic::V2 { gicd, gicc } => {
            w.property_array_u64("reg", &[gicd.base, gicd.size, gicc.base, gicc.size])?;
        }
    }
    w.property_phandle(PHANDLE_GIC)?;
    w.end_node(intc)?;
    Ok(())
}

fn write_passthrough(w: &mut FdtWriter, m: &GuestMachine) -> Result<(), GuestFdtError> {
    // Node names carry the unit address of the first `reg`, and `validate` refused
    // overlapping regions, so no two nodes written here share a name.
    for d in &m.passthrough {
        let name = passthrough_node_name(d);
        let mut interrupts = Vec::with_capacity(d.irqs.len() * 3);
        for &intid in &d.irqs {
            // The host tree's trigger type is not carried in DeviceNode; level-high
            // is what QEMU and most SoC peripherals use.
            interrupts.extend(gic_specifier(&d.path, intid, IRQ_TYPE_LEVEL_HIGH)?);
        }
        let node = w.begin_node(&name)?;
        if let Some(c) = &d.compatible {
            w.property_string("compatible", c)?;
        }
        let reg: Vec<u64> = d.regs.iter().flat_map(|r| [r.base, r.size]).collect();
        w.property_array_u64("reg", &reg)?;
        if !interrupts.is_empty() {
            w.property_array_u32("interrupts", &interrupts)?;
        }
        if !d.enabled {
            w.property_string("status", "disabled")?;
        }
        w.end_node(node)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::platform::{GicVersion, Platform, UartCompatible};
    use fdt::Fdt;

    const GIB: u64 = 1 << 30;

    fn virt(nr_vcpus: usize) -> GuestMachine {
        let mut m = GuestMachine::qemu_virt_like(MemRange::new(0x4000_0000, GIB), nr_vcpus);
        m.bootargs = Some("console=ttyAMA0 earlycon".into());
        m.initrd = Some(MemRange::new(0x4800_0000, 0x10_0000));
        m
    }

    fn build(m: &GuestMachine) -> Vec<u8> {
        match build_guest_fdt(m) {
            Ok(b) => b,
            Err(e) => panic!("build failed: {e}"),
        }
    }

    fn u32s(v: &[u8]) -> Vec<u32> {
        v.chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect()
    }

    fn strings(v: &[u8]) -> Vec<&str> {
        v.split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| core::str::from_utf8(s).unwrap())
            .collect()
    }

    fn prop<'a>(fdt: &Fdt<'a>, path: &str, name: &str) -> &'a [u8] {
        let node = fdt
            .find_node(path)
            .unwrap_or_else(|| panic!("no node {path}"));
        node.property(name)
            .unwrap_or_else(|| panic!("{path} has no {name}"))
            .value
    }

    #[test]
    fn caches_are_described_level_by_level() {
        use crate::sysreg::CacheTopology;
        // The virtual topology on QEMU's -cpu max CTR_EL0: split L1, unified L2.
        let topo = CacheTopology::virtual_view(0xb444_c004);
        let mut m = virt(2);
        m.caches = GuestCacheLevel::from_topology(&topo);
        let blob = build(&m);
        let fdt = Fdt::new(&blob).unwrap();
        for cpu in ["/cpus/cpu@0", "/cpus/cpu@1"] {
            for (name, value) in [
                ("i-cache-size", 32 << 10),
                ("i-cache-line-size", 64),
                ("i-cache-sets", 128),
                ("d-cache-size", 32 << 10),
                ("d-cache-line-size", 64),
                ("d-cache-sets", 128),
                ("next-level-cache", PHANDLE_CACHE_BASE + 2),
            ] {
                assert_eq!(u32s(prop(&fdt, cpu, name)), [value], "{cpu} {name}");
            }
            let node = fdt.find_node(cpu).unwrap();
            assert!(node.property("cache-unified").is_none());
        }
        let l2 = "/cpus/l2-cache";
        assert_eq!(strings(prop(&fdt, l2, "compatible")), ["cache"]);
        assert_eq!(u32s(prop(&fdt, l2, "cache-level")), [2]);
        assert!(prop(&fdt, l2, "cache-unified").is_empty());
        assert_eq!(u32s(prop(&fdt, l2, "cache-size")), [512 << 10]);
        assert_eq!(u32s(prop(&fdt, l2, "cache-line-size")), [64]);
        assert_eq!(u32s(prop(&fdt, l2, "cache-sets")), [1024]);
        assert_eq!(u32s(prop(&fdt, l2, "phandle")), [PHANDLE_CACHE_BASE + 2]);
        let l2node = fdt.find_node(l2).unwrap();
        assert!(l2node.property("next-level-cache").is_none(), "last level");
        // The host's own parser still finds every vCPU (cache nodes are not CPUs).
        assert_eq!(fdt.cpus().count(), 2);
        // Without a topology nothing is described.
        let plain = build(&virt(1));
        let fdt = Fdt::new(&plain).unwrap();
        assert!(fdt.find_node("/cpus/l2-cache").is_none());
        assert!(
            fdt.find_node("/cpus/cpu@0")
                .unwrap()
                .property("d-cache-size")
                .is_none()
        );
    }

    #[test]
    fn unified_l1_and_three_levels() {
        use crate::sysreg::cache::{CacheTopology, ExplicitCaches};
        // L1 unified, L2 unified, L3 unified (CLIDR Ctype 100,100,100; LoC 3).
        let e = ExplicitCaches {
            clidr_el1: 0b100_100_100 | 3 << 24 | 1 << 27 | 1 << 21,
            // 16 KiB (64 sets x 4 x 64), 256 KiB (512 x 8 x 64), 8 MiB (8192 x 16 x 64).
            ccsidr_el1: alloc::vec![
                (0, (63 << 13) | (3 << 3) | 2),
                (2, (511 << 13) | (7 << 3) | 2),
                (4, (8191 << 13) | (15 << 3) | 2),
            ],
            ccidx: false,
        };
        let topo = CacheTopology::explicit(&e, 0x8444_c004).unwrap();
        let mut m = virt(1);
        m.caches = GuestCacheLevel::from_topology(&topo);
        assert_eq!(m.caches.len(), 3);
        let blob = build(&m);
        let fdt = Fdt::new(&blob).unwrap();
        let cpu = "/cpus/cpu@0";
        assert!(prop(&fdt, cpu, "cache-unified").is_empty());
        assert_eq!(u32s(prop(&fdt, cpu, "cache-size")), [16 << 10]);
        assert_eq!(
            u32s(prop(&fdt, cpu, "next-level-cache")),
            [PHANDLE_CACHE_BASE + 2]
        );
        assert_eq!(
            u32s(prop(&fdt, "/cpus/l2-cache", "next-level-cache")),
            [PHANDLE_CACHE_BASE + 3]
        );
        assert_eq!(u32s(prop(&fdt, "/cpus/l3-cache", "cache-level")), [3]);
        assert_eq!(u32s(prop(&fdt, "/cpus/l3-cache", "cache-size")), [8 << 20]);
        assert_eq!(u32s(prop(&fdt, "/cpus/l3-cache", "cache-sets")), [8192]);
    }

    #[test]
    fn root_memory_cpus_psci() {
        let blob = build(&virt(4));
        let fdt = Fdt::new(&blob).unwrap();
        assert_eq!(strings(prop(&fdt, "/", "compatible")), ["linux,dummy-virt"]);
        assert_eq!(u32s(prop(&fdt, "/", "#address-cells")), [2]);
        assert_eq!(u32s(prop(&fdt, "/", "#size-cells")), [2]);
        assert_eq!(
            u32s(prop(&fdt, "/memory@40000000", "reg")),
            [0, 0x4000_0000, 0, 0x4000_0000]
        );
        assert_eq!(
            strings(prop(&fdt, "/memory@40000000", "device_type")),
            ["memory"]
        );
        assert_eq!(u32s(prop(&fdt, "/cpus", "#address-cells")), [1]);
        assert_eq!(u32s(prop(&fdt, "/cpus", "#size-cells")), [0]);
        for i in 0..4 {
            let path = format!("/cpus/cpu@{i}");
            assert_eq!(u32s(prop(&fdt, &path, "reg")), [i]);
            assert_eq!(strings(prop(&fdt, &path, "compatible")), ["arm,armv8"]);
            assert_eq!(strings(prop(&fdt, &path, "device_type")), ["cpu"]);
            assert_eq!(strings(prop(&fdt, &path, "enable-method")), ["psci"]);
        }
        assert_eq!(fdt.cpus().count(), 4);
        assert_eq!(
            strings(prop(&fdt, "/psci", "compatible")),
            ["arm,psci-1.0", "arm,psci-0.2"]
        );
        assert_eq!(strings(prop(&fdt, "/psci", "method")), ["hvc"]);
    }

    #[test]
    fn pmu_node_only_with_a_pmu() {
        let blob = build(&virt(2));
        assert!(Fdt::new(&blob).unwrap().find_node("/pmu").is_none());
        let mut m = virt(2);
        m.pmu_ppi = Some(7);
        let blob = build(&m);
        let fdt = Fdt::new(&blob).unwrap();
        assert_eq!(
            strings(prop(&fdt, "/pmu", "compatible")),
            ["arm,armv8-pmuv3"]
        );
        // GIC_PPI 7 (INTID 23), level-high.
        assert_eq!(u32s(prop(&fdt, "/pmu", "interrupts")), [1, 7, 4]);
        m.pmu_ppi = Some(16);
        assert!(build_guest_fdt(&m).is_err());
    }

    #[test]
    fn timer_gic_uart_chosen() {
        let blob = build(&virt(2));
        let fdt = Fdt::new(&blob).unwrap();
        assert_eq!(
            u32s(prop(&fdt, "/timer", "interrupts")),
            [1, 13, 4, 1, 14, 4, 1, 11, 4, 1, 10, 4]
        );
        assert!(
            fdt.find_node("/timer")
                .unwrap()
                .property("always-on")
                .is_none()
        );
        let gic_path = "/intc@8000000";
        assert_eq!(strings(prop(&fdt, gic_path, "compatible")), ["arm,gic-v3"]);
        assert_eq!(u32s(prop(&fdt, gic_path, "#interrupt-cells")), [3]);
        assert!(prop(&fdt, gic_path, "interrupt-controller").is_empty());
        assert_eq!(
            u32s(prop(&fdt, gic_path, "reg")),
            [0, 0x0800_0000, 0, 0x1_0000, 0, 0x080A_0000, 0, 0x4_0000]
        );
        assert_eq!(u32s(prop(&fdt, gic_path, "interrupts")), [1, 9, 4]);
        let gic_phandle = u32s(prop(&fdt, gic_path, "phandle"))[0];
        assert_eq!(u32s(prop(&fdt, "/", "interrupt-parent")), [gic_phandle]);

        let uart = "/pl011@9000000";
        assert_eq!(
            strings(prop(&fdt, uart, "compatible")),
            ["arm,pl011", "arm,primecell"]
        );
        assert_eq!(u32s(prop(&fdt, uart, "reg")), [0, 0x0900_0000, 0, 0x1000]);
        assert_eq!(u32s(prop(&fdt, uart, "interrupts")), [0, 1, 4]);
        assert_eq!(
            strings(prop(&fdt, uart, "clock-names")),
            ["uartclk", "apb_pclk"]
        );
        let clocks = u32s(prop(&fdt, uart, "clocks"));
        let clk = fdt.find_phandle(clocks[0]).expect("clock phandle");
        assert_eq!(clocks, [clocks[0], clocks[0]]);
        assert_eq!(clk.name, "apb-pclk");
        assert_eq!(
            strings(clk.property("compatible").unwrap().value),
            ["fixed-clock"]
        );
        assert_eq!(u32s(clk.property("#clock-cells").unwrap().value), [0]);
        assert_eq!(
            u32s(clk.property("clock-frequency").unwrap().value),
            [24_000_000]
        );

        let chosen = fdt.chosen();
        assert_eq!(chosen.bootargs(), Some("console=ttyAMA0 earlycon"));
        assert_eq!(chosen.stdout().map(|n| n.name), Some("pl011@9000000"));
        assert_eq!(
            u32s(prop(&fdt, "/chosen", "linux,initrd-start")),
            [0, 0x4800_0000]
        );
        assert_eq!(
            u32s(prop(&fdt, "/chosen", "linux,initrd-end")),
            [0, 0x4810_0000]
        );
    }

    /// The hypervisor's own parser reads the guest tree back to the same machine.
    #[test]
    fn platform_parser_reads_it_back() {
        let p = Platform::parse(&build(&virt(3))).expect("parse");
        assert_eq!(p.memory, [MemRange::new(0x4000_0000, GIB)]);
        assert_eq!(
            p.cpus.iter().map(|c| c.mpidr).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        let gic = p.gic.expect("gic");
        assert_eq!(gic.version, GicVersion::V3);
        assert_eq!(gic.gicd, VIRT_GICD);
        assert_eq!(gic.gicr, [MemRange::new(VIRT_GICR_BASE, 3 * 0x2_0000)]);
        assert_eq!(gic.maintenance_intid, Some(25));
        let uart = p.uart.expect("uart");
        assert_eq!(
            (uart.base, uart.size, uart.irq),
            (0x0900_0000, 0x1000, Some(33))
        );
        assert_eq!(uart.compatible, UartCompatible::Pl011);
        let t = p.timer.expect("timer");
        assert_eq!(
            (
                t.secure_phys,
                t.nonsecure_phys,
                t.virt,
                t.hyp_phys,
                t.hyp_virt,
                t.always_on
            ),
            (29, 30, 27, 26, None, false)
        );
        let psci = p.psci.expect("psci");
        assert_eq!(psci.method, Conduit::Hvc);
        assert!(psci.is_v0_2_or_later());
        assert_eq!(p.initrd, Some(MemRange::new(0x4800_0000, 0x10_0000)));
        assert_eq!(p.bootargs.as_deref(), Some("console=ttyAMA0 earlycon"));
    }

    #[test]
    fn more_than_sixteen_vcpus_use_aff1() {
        let m = virt(20);
        assert_eq!(m.vcpu_mpidrs[15], 0xf);
        assert_eq!(m.vcpu_mpidrs[16], 0x100);
        assert_eq!(m.vcpu_mpidrs[19], 0x103);
        let blob = build(&m);
        let fdt = Fdt::new(&blob).unwrap();
        assert_eq!(u32s(prop(&fdt, "/cpus/cpu@100", "reg")), [0x100]);
        let p = Platform::parse(&blob).unwrap();
        assert_eq!(p.gic.unwrap().gicr[0].size, 20 * GICV3_REDISTRIBUTOR_STRIDE);
    }

    #[test]
    fn aff3_needs_two_cells() {
        let mut m = virt(2);
        m.vcpu_mpidrs = vec![0, 0x1_0000_0000];
        let blob = build(&m);
        let fdt = Fdt::new(&blob).unwrap();
        assert_eq!(u32s(prop(&fdt, "/cpus", "#address-cells")), [2]);
        assert_eq!(u32s(prop(&fdt, "/cpus/cpu@100000000", "reg")), [1, 0]);
        let p = Platform::parse(&blob).unwrap();
        assert_eq!(p.cpus[1].mpidr, 0x1_0000_0000);
    }

    #[test]
    fn gicv2_guest() {
        let mut m = virt(2);
        m.gic = GuestGic::V2 {
            gicd: VIRT_GICD,
            gicc: VIRT_GICC,
        };
        let blob = build(&m);
        let fdt = Fdt::new(&blob).unwrap();
        // Two vCPUs: CPU mask 0b11 in bits [15:8] of the PPI flags.
        assert_eq!(
            u32s(prop(&fdt, "/timer", "interrupts")),
            [1, 13, 0x304, 1, 14, 0x304, 1, 11, 0x304, 1, 10, 0x304]
        );
        let gic = Platform::parse(&blob).unwrap().gic.unwrap();
        assert_eq!(gic.version, GicVersion::V2);
        assert_eq!((gic.gicd, gic.gicc), (VIRT_GICD, Some(VIRT_GICC)));
        m.vcpu_mpidrs = (0..9).collect();
        assert_eq!(
            build_guest_fdt(&m),
            Err(GuestFdtError::TooManyVcpusForGicV2(9))
        );
    }

    #[test]
    fn passthrough_device_keeps_address_and_interrupts() {
        let mut m = virt(1);
        m.uart = None;
        m.passthrough = vec![DeviceNode {
            path: "/soc/serial@7e201000".into(),
            compatible: Some("arm,pl011".into()),
            regs: vec![MemRange::new(0xfe20_1000, 0x200)],
            irqs: vec![153, 27],
            enabled: true,
            bus_master: None,
        }];
        let blob = build(&m);
        let fdt = Fdt::new(&blob).unwrap();
        assert_eq!(
            u32s(prop(&fdt, "/serial@fe201000", "reg")),
            [0, 0xfe20_1000, 0, 0x200]
        );
        assert_eq!(
            u32s(prop(&fdt, "/serial@fe201000", "interrupts")),
            [0, 121, 4, 1, 11, 4]
        );
        assert!(
            fdt.find_node("/chosen")
                .unwrap()
                .property("stdout-path")
                .is_none()
        );
        let p = Platform::parse(&blob).unwrap();
        assert!(
            p.uart
                .is_some_and(|u| u.base == 0xfe20_1000 && u.irq == Some(153))
        );
        let dev = p
            .devices
            .iter()
            .find(|d| d.path == "/serial@fe201000")
            .unwrap();
        assert_eq!(dev.irqs, [153, 27]);
    }

    #[test]
    fn inconsistent_machines_are_refused() {
        assert_eq!(build_guest_fdt(&virt(0)), Err(GuestFdtError::NoVcpus));

        let mut m = virt(2);
        m.vcpu_mpidrs = vec![1, 1];
        assert_eq!(build_guest_fdt(&m), Err(GuestFdtError::DuplicateMpidr(1)));
        m.vcpu_mpidrs = vec![0, 0x8000_0001];
        assert_eq!(
            build_guest_fdt(&m),
            Err(GuestFdtError::BadMpidr(0x8000_0001))
        );

        let mut m = virt(2);
        m.uart = Some((MemRange::new(0x4000_1000, 0x1000), 1));
        assert_eq!(
            build_guest_fdt(&m),
            Err(GuestFdtError::Overlap {
                first: "memory".into(),
                second: "UART".into()
            })
        );

        // 124 redistributors run into the UART at 0x0900_0000.
        let m = virt(VIRT_GICR_MAX_VCPUS + 1);
        assert_eq!(
            build_guest_fdt(&m),
            Err(GuestFdtError::Overlap {
                first: "GICR".into(),
                second: "UART".into()
            })
        );
        assert!(build_guest_fdt(&virt(VIRT_GICR_MAX_VCPUS)).is_ok());

        let mut m = virt(4);
        m.gic = GuestGic::V3 {
            gicd: VIRT_GICD,
            gicr: MemRange::new(VIRT_GICR_BASE, 0x2_0000),
            maintenance_intid: None,
        };
        assert_eq!(
            build_guest_fdt(&m),
            Err(GuestFdtError::GicrTooSmall {
                needed: 0x8_0000,
                have: 0x2_0000
            })
        );

        let mut m = virt(1);
        m.initrd = Some(MemRange::new(0x7fff_f000, 0x2000));
        assert!(matches!(
            build_guest_fdt(&m),
            Err(GuestFdtError::InitrdOutsideMemory(_))
        ));

        let mut m = virt(1);
        m.uart = Some((VIRT_UART, 988));
        assert!(matches!(
            build_guest_fdt(&m),
            Err(GuestFdtError::BadInterrupt { intid: 1020, .. })
        ));
        let mut m = virt(1);
        m.timer_ppis.virt = 16;
        assert!(matches!(
            build_guest_fdt(&m),
            Err(GuestFdtError::BadInterrupt { .. })
        ));

        let dev = |path: &str, base| DeviceNode {
            path: path.into(),
            compatible: None,
            regs: vec![MemRange::new(base, 0x1000)],
            irqs: vec![],
            enabled: true,
            bus_master: None,
        };
        let mut m = virt(1);
        m.passthrough = vec![
            dev("/a/gpio@1000", 0x1000_0000),
            dev("/b/gpio@1000", 0x1000_0000),
        ];
        assert!(matches!(
            build_guest_fdt(&m),
            Err(GuestFdtError::Overlap { .. })
        ));
        m.passthrough = vec![dev("/x", 0x0800_8000)];
        assert_eq!(
            build_guest_fdt(&m),
            Err(GuestFdtError::Overlap {
                first: "GICD".into(),
                second: "/x".into()
            })
        );
        let msg = format!("{}", build_guest_fdt(&m).unwrap_err());
        assert_eq!(msg, "GICD overlaps /x");
    }
}
