//! The host as its device tree describes it.
//!
//! The boot loader hands the hypervisor a flattened device tree in x0 (Linux
//! `booting.rst` convention, which U-Boot and QEMU follow for an arm64 Image). The arch
//! layer measures it with [`fdt_total_size`], makes a slice, and [`Platform::parse`]
//! turns it into plain data: RAM, reserved ranges, CPUs (MPIDRs), the GIC, the console
//! UART, the generic timer's interrupts, the PSCI conduit, the initrd and bootargs, and
//! every memory-mapped device with its `reg` translated to physical addresses.
//!
//! Malformed input is an error, never a panic: [`blob`] checks the container before the
//! `fdt` crate (which panics on some malformed input) reads it.

mod blob;
mod bus_master;
mod cpus;
pub mod early;
mod placement;
mod tree;

#[cfg(test)]
mod tests;

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

use fdt::Fdt;

pub use blob::fdt_total_size;
pub use bus_master::{BUS_MASTER_COMPATIBLES, BUS_MASTER_NAMES, BusMaster, DMA_PROPERTIES};
pub use cpus::{CpuMap, CpuMapError};
pub use placement::{BootRanges, PlacementError};
use tree::{Reg, Tree, cell_value, sized_value};

/// A range of physical addresses `[base, base + size)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemRange {
    pub base: u64,
    pub size: u64,
}

impl MemRange {
    pub const fn new(base: u64, size: u64) -> Self {
        Self { base, size }
    }

    /// One past the last byte. Saturates at `u64::MAX`; [`Platform::parse`] refuses
    /// ranges that wrap, so for parsed ranges this is exact.
    pub const fn end(&self) -> u64 {
        self.base.saturating_add(self.size)
    }

    /// Whether `addr` lies in the range.
    pub const fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr < self.end()
    }

    /// Whether all of `other` lies in the range (an empty `other` at `end()` counts).
    pub const fn contains_range(&self, other: &MemRange) -> bool {
        other.base >= self.base && other.end() <= self.end()
    }

    /// Whether the two ranges share at least one byte. Empty ranges overlap nothing.
    pub const fn overlaps(&self, other: &MemRange) -> bool {
        self.size != 0 && other.size != 0 && self.base < other.end() && other.base < self.end()
    }
}

impl fmt::Display for MemRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}..{:#x})", self.base, self.end())
    }
}

/// One `/cpus/cpu@*` node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuNode {
    /// The `reg` value: MPIDR_EL1 affinity fields, Aff3 in bits [39:32] and Aff2..Aff0
    /// in bits [23:0] (Linux `Documentation/devicetree/bindings/arm/cpus.yaml`).
    pub mpidr: u64,
    /// `"psci"` or `"spin-table"` on arm64.
    pub enable_method: Option<String>,
    /// Where a spin-table CPU polls for its entry point.
    pub cpu_release_addr: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GicVersion {
    V2,
    V3,
}

/// The GIC's register frames, as physical ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GicInfo {
    pub version: GicVersion,
    /// Distributor.
    pub gicd: MemRange,
    /// GICv3 redistributor regions (`#redistributor-regions` of them); empty on GICv2.
    pub gicr: Vec<MemRange>,
    /// CPU interface (GICv2; optional legacy interface on GICv3).
    pub gicc: Option<MemRange>,
    /// Virtual interface control (GICH): present when the GIC has virtualization.
    pub gich: Option<MemRange>,
    /// Virtual CPU interface (GICV).
    pub gicv: Option<MemRange>,
    /// INTID of the virtual-interface maintenance interrupt (a PPI), e.g. 25 for PPI 9.
    pub maintenance_intid: Option<u32>,
    /// The GIC node's phandle, when it has one.
    pub phandle: Option<u32>,
}

impl GicInfo {
    /// The maintenance interrupt as a PPI number (INTID - 16), as bindings write it.
    pub fn maintenance_ppi(&self) -> Option<u32> {
        self.maintenance_intid
            .and_then(|i| i.checked_sub(16))
            .filter(|&p| p < 16)
    }
}

/// The kind of a UART, from its `compatible`: the register interface a driver
/// speaks. Each has a polled driver in the arch layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UartCompatible {
    /// `arm,pl011`.
    Pl011,
    /// 8250/16550-style registers, one every `1 << reg_shift` bytes, accessed
    /// `io_width` bytes wide (1 or 4): `ns16550a` and relatives (`reg-shift` and
    /// `reg-io-width` properties, Linux bindings serial/8250.yaml), and the
    /// Raspberry Pi's mini UART, `brcm,bcm2835-aux-uart` (its registers are 32 bits
    /// apart, BCM2835 ARM Peripherals, "Mini UART").
    Ns16550 { reg_shift: u32, io_width: u32 },
    /// Cadence UART: ZynqMP's, `cdns,uart-r1p12`, `xlnx,xuartps`.
    Cadence,
    /// The i.MX UART of i.MX 6 and later (`fsl,imx6q-uart`, `fsl,imx21-uart`,
    /// `fsl,imx8mp-uart`, ...).
    Imx,
    /// Anything else, with its first `compatible` string: no driver.
    Other(String),
}

impl UartCompatible {
    /// Whether the arch layer has a driver for it (a 16550 only with a stride of
    /// at most 8 bytes and 8- or 32-bit accesses).
    pub fn has_driver(&self) -> bool {
        match *self {
            UartCompatible::Ns16550 {
                reg_shift,
                io_width,
            } => reg_shift <= 3 && matches!(io_width, 1 | 4),
            UartCompatible::Other(_) => false,
            _ => true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UartInfo {
    pub path: String,
    pub base: u64,
    pub size: u64,
    /// INTID of its first interrupt.
    pub irq: Option<u32>,
    pub compatible: UartCompatible,
}

/// The generic timer's interrupts (`arm,armv8-timer` binding), as INTIDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerInfo {
    /// Secure EL1 physical timer.
    pub secure_phys: u32,
    /// Non-secure EL1 physical timer (CNTP).
    pub nonsecure_phys: u32,
    /// Virtual timer (CNTV).
    pub virt: u32,
    /// EL2 physical timer (CNTHP).
    pub hyp_phys: u32,
    /// EL2 virtual timer (CNTHV, FEAT_VHE), when listed.
    pub hyp_virt: Option<u32>,
    /// `always-on`: the timer keeps counting in every power state.
    pub always_on: bool,
}

/// How PSCI (and other SMCCC) calls reach the firmware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conduit {
    Smc,
    Hvc,
}

impl Conduit {
    pub const fn as_str(self) -> &'static str {
        match self {
            Conduit::Smc => "smc",
            Conduit::Hvc => "hvc",
        }
    }
}

/// PSCI 0.1 has no fixed function IDs; the node lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Psci01FunctionIds {
    pub cpu_suspend: Option<u32>,
    pub cpu_off: Option<u32>,
    pub cpu_on: Option<u32>,
    pub migrate: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PsciInfo {
    pub method: Conduit,
    /// The `compatible` strings, e.g. `["arm,psci-1.0", "arm,psci-0.2", "arm,psci"]`.
    pub compatible: Vec<String>,
    pub v0_1_ids: Psci01FunctionIds,
}

impl PsciInfo {
    /// Whether the firmware speaks PSCI 0.2 or later (standard function IDs,
    /// PSCI_VERSION available).
    pub fn is_v0_2_or_later(&self) -> bool {
        self.compatible.iter().any(|c| c.starts_with("arm,psci-"))
    }
}

/// A memory-mapped device node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    pub path: String,
    /// First `compatible` string.
    pub compatible: Option<String>,
    /// `reg`, translated through the parents' `ranges` to physical addresses.
    pub regs: Vec<MemRange>,
    /// INTIDs of its GIC interrupts (SPI n is n + 32, PPI n is n + 16).
    pub irqs: Vec<u32>,
    /// `status` is absent, "okay" or "ok".
    pub enabled: bool,
    /// Why the device can master the bus (do DMA), when its node says so
    /// ([`bus_master`]): such a device is never given to a VM.
    pub bus_master: Option<BusMaster>,
}

/// The host machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    pub model: Option<String>,
    pub memory: Vec<MemRange>,
    /// `/memreserve/` entries, then enabled `/reserved-memory` children with a
    /// `reg`: never handed out.
    pub reserved: Vec<MemRange>,
    /// The `reserved` ranges of `/reserved-memory` children marked `no-map`
    /// (Devicetree Specification, "/reserved-memory"): not even mapped, so nothing
    /// (not even a speculative access) touches them.
    pub no_map: Vec<MemRange>,
    pub cpus: Vec<CpuNode>,
    pub gic: Option<GicInfo>,
    pub uart: Option<UartInfo>,
    pub timer: Option<TimerInfo>,
    pub psci: Option<PsciInfo>,
    pub initrd: Option<MemRange>,
    pub bootargs: Option<String>,
    pub devices: Vec<DeviceNode>,
}

/// Why a device tree could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformError {
    /// The buffer is shorter than the header or than the header's `totalsize`.
    Truncated {
        needed: usize,
        available: usize,
    },
    BadMagic(u32),
    /// `totalsize` is smaller than the header or larger than 2 MiB.
    BadTotalSize(u32),
    UnsupportedVersion {
        version: u32,
        last_compatible: u32,
    },
    /// The blob's structure is broken at byte `offset`.
    Malformed {
        offset: usize,
        reason: &'static str,
    },
    NoMemory,
    NoCpus,
    BadProperty {
        path: String,
        property: &'static str,
        reason: &'static str,
    },
}

impl fmt::Display for PlatformError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlatformError::Truncated { needed, available } => {
                write!(
                    f,
                    "device tree truncated: needs {needed} bytes, {available} available"
                )
            }
            PlatformError::BadMagic(m) => {
                write!(
                    f,
                    "not a device tree: magic {m:#010x}, expected {:#010x}",
                    blob::FDT_MAGIC
                )
            }
            PlatformError::BadTotalSize(s) => write!(
                f,
                "device tree totalsize {s:#x} is not between the header size ({}) and 2 MiB",
                blob::FDT_HEADER_LEN
            ),
            PlatformError::UnsupportedVersion {
                version,
                last_compatible,
            } => write!(
                f,
                "device tree version {version} (last compatible {last_compatible}) unsupported: need 17"
            ),
            PlatformError::Malformed { offset, reason } => {
                write!(f, "malformed device tree at byte {offset:#x}: {reason}")
            }
            PlatformError::NoMemory => {
                write!(f, "device tree has no /memory node with a usable reg")
            }
            PlatformError::NoCpus => write!(f, "device tree has no /cpus/cpu node"),
            PlatformError::BadProperty {
                path,
                property,
                reason,
            } => {
                write!(f, "device tree node {path}: property {property}: {reason}")
            }
        }
    }
}

// Bindings: Linux Documentation/devicetree/bindings/interrupt-controller/arm,gic*.yaml.
const GIC_V2_COMPATIBLE: &[&str] = &["arm,gic-400", "arm,cortex-a15-gic", "arm,cortex-a7-gic"];
const GIC_V3_COMPATIBLE: &[&str] = &["arm,gic-v3"];
const TIMER_COMPATIBLE: &[&str] = &["arm,armv8-timer", "arm,armv7-timer"];
const PL011_COMPATIBLE: &[&str] = &["arm,pl011"];
// Linux bindings serial/8250.yaml (the 16550 family), serial/brcm,bcm2835-aux-uart,
// serial/cdns,uart.yaml, serial/fsl-imx-uart.yaml (i.MX 6 and later list
// fsl,imx6q-uart or fsl,imx21-uart after their own string).
const NS16550_COMPATIBLE: &[&str] = &[
    "ns16550a",
    "ns16550",
    "ns16450",
    "ns8250",
    "ns16750",
    "snps,dw-apb-uart",
];
const BCM2835_AUX_UART_COMPATIBLE: &[&str] = &["brcm,bcm2835-aux-uart"];
const CADENCE_UART_COMPATIBLE: &[&str] = &[
    "cdns,uart-r1p12",
    "cdns,uart-r1p8",
    "xlnx,xuartps",
    "xlnx,zynqmp-uart",
];
const IMX_UART_COMPATIBLE: &[&str] = &[
    "fsl,imx21-uart",
    "fsl,imx53-uart",
    "fsl,imx6q-uart",
    "fsl,imx8mp-uart",
];

/// The GIC as an interrupt parent: its phandle and `#interrupt-cells`.
#[derive(Clone, Copy)]
struct GicParent {
    phandle: Option<u32>,
    cells: u32,
}

fn bad(path: &str, property: &'static str, reason: &'static str) -> PlatformError {
    PlatformError::BadProperty {
        path: path.to_string(),
        property,
        reason,
    }
}

impl Platform {
    /// Parses a device tree blob (`dtb` may be longer than the blob's `totalsize`).
    pub fn parse(dtb: &[u8]) -> Result<Platform, PlatformError> {
        let blob = blob::check(dtb)?;
        let fdt = Fdt::new(&blob).map_err(|_| PlatformError::Malformed {
            offset: 0,
            reason: "refused by the fdt parser",
        })?;
        let tree = Tree::index(&fdt)?;

        let memory = parse_memory(&tree)?;
        let cpus = parse_cpus(&tree)?;
        let mut reserved: Vec<MemRange> = fdt
            .memory_reservations()
            .map(|r| MemRange::new(r.address() as usize as u64, r.size() as u64))
            .filter(|r| r.size != 0)
            .collect();
        let reserved_memory = parse_reserved_memory(&tree);
        reserved.extend(reserved_memory.iter().map(|&(r, _)| r));
        let no_map = reserved_memory
            .iter()
            .filter(|&&(_, no_map)| no_map)
            .map(|&(r, _)| r)
            .collect();

        let (gic, gic_parent) = match parse_gic(&tree)? {
            Some((info, parent)) => (Some(info), Some(parent)),
            None => (None, None),
        };
        let devices = parse_devices(&tree, gic_parent);
        let timer = parse_timer(&tree, gic_parent)?;
        let psci = parse_psci(&tree)?;
        let (initrd, bootargs) = parse_chosen(&tree, &memory)?;
        let uart = parse_uart(&tree, &devices);

        Ok(Platform {
            model: tree.root().prop_str("model").map(String::from),
            memory,
            reserved,
            no_map,
            cpus,
            gic,
            uart,
            timer,
            psci,
            initrd,
            bootargs,
            devices,
        })
    }

    /// Whether `range` lies entirely within one `/memory` range.
    pub fn is_ram(&self, range: &MemRange) -> bool {
        self.memory.iter().any(|m| m.contains_range(range))
    }

    /// The device whose `reg` contains `addr`, if any.
    pub fn device_at(&self, addr: u64) -> Option<&DeviceNode> {
        self.devices
            .iter()
            .find(|d| d.regs.iter().any(|r| r.contains(addr)))
    }

    /// Logs what was found (via `log::info!`), one fact per line.
    pub fn log_summary(&self) {
        for line in self.summary() {
            log::info!("{line}");
        }
    }

    /// What [`Platform::log_summary`] logs, as lines.
    pub fn summary(&self) -> Vec<String> {
        use alloc::format;
        let mut out = Vec::new();
        if let Some(model) = &self.model {
            out.push(format!("platform: {model}"));
        }
        for (i, cpu) in self.cpus.iter().enumerate() {
            out.push(format!(
                "cpu{i}: mpidr {:#x} enable-method {}",
                cpu.mpidr,
                cpu.enable_method.as_deref().unwrap_or("none")
            ));
        }
        for m in &self.memory {
            out.push(format!("memory: {m} ({} MiB)", m.size >> 20));
        }
        for r in &self.reserved {
            let no_map = if self.no_map.contains(r) {
                " no-map"
            } else {
                ""
            };
            out.push(format!("reserved: {r}{no_map}"));
        }
        match &self.gic {
            Some(g) => {
                out.push(format!("gic: {:?} gicd {}", g.version, g.gicd));
                for r in &g.gicr {
                    out.push(format!("gic: gicr {r}"));
                }
                for (name, r) in [("gicc", g.gicc), ("gich", g.gich), ("gicv", g.gicv)] {
                    if let Some(r) = r {
                        out.push(format!("gic: {name} {r}"));
                    }
                }
                out.push(match g.maintenance_intid {
                    Some(i) => format!("gic: maintenance interrupt INTID {i}"),
                    None => String::from("gic: no maintenance interrupt listed"),
                });
            }
            None => out.push(String::from("gic: none found")),
        }
        out.push(match &self.uart {
            Some(u) => format!(
                "uart: {} at {} {:?} irq {:?}",
                u.path,
                MemRange::new(u.base, u.size),
                u.compatible,
                u.irq
            ),
            None => String::from("uart: none found"),
        });
        out.push(match &self.timer {
            Some(t) => format!(
                "timer: INTIDs secure-phys {} phys {} virt {} hyp-phys {} hyp-virt {:?}",
                t.secure_phys, t.nonsecure_phys, t.virt, t.hyp_phys, t.hyp_virt
            ),
            None => String::from("timer: none found"),
        });
        out.push(match &self.psci {
            Some(p) => format!(
                "psci: method {} compatible {:?}",
                p.method.as_str(),
                p.compatible
            ),
            None => String::from("psci: none found"),
        });
        if let Some(i) = &self.initrd {
            out.push(format!("initrd: {i}"));
        }
        if let Some(b) = &self.bootargs {
            out.push(format!("bootargs: {b}"));
        }
        out.push(format!("devices: {} with MMIO ranges", self.devices.len()));
        out
    }
}

fn is_memory_node(n: &tree::Node<'_, '_>) -> bool {
    n.parent == Some(0)
        && (n.prop_str("device_type") == Some("memory") || n.base_name() == "memory")
}

/// Devicetree Specification 3.4: every `/memory*` node's `reg`.
fn parse_memory(tree: &Tree<'_, '_>) -> Result<Vec<MemRange>, PlatformError> {
    let mut memory = Vec::new();
    for n in tree
        .nodes
        .iter()
        .filter(|n| is_memory_node(n) && n.is_enabled())
    {
        match &n.reg {
            Reg::Cpu(ranges) => memory.extend(ranges.iter().filter(|r| r.size != 0)),
            Reg::Absent => {}
            Reg::Malformed(reason) => return Err(bad(&n.path, "reg", reason)),
            Reg::NotCpuAddressable => {
                return Err(bad(
                    &n.path,
                    "reg",
                    "root #address-cells/#size-cells not 1 or 2",
                ));
            }
        }
    }
    if memory.is_empty() {
        return Err(PlatformError::NoMemory);
    }
    memory.sort();
    Ok(memory)
}

fn parse_cpus(tree: &Tree<'_, '_>) -> Result<Vec<CpuNode>, PlatformError> {
    let Some((cpus_idx, cpus_node)) = tree.root_children("cpus").next() else {
        return Err(PlatformError::NoCpus);
    };
    let address_cells = cpus_node.child_cells.address;
    let mut cpus = Vec::new();
    for (_, n) in tree.children_of(cpus_idx) {
        let is_cpu =
            n.base_name() == "cpu" && matches!(n.prop_str("device_type"), None | Some("cpu"));
        if !is_cpu {
            continue;
        }
        if !matches!(address_cells, 1 | 2) {
            return Err(bad(&cpus_node.path, "#address-cells", "must be 1 or 2"));
        }
        let reg = n
            .prop("reg")
            .ok_or_else(|| bad(&n.path, "reg", "missing"))?;
        let entry = address_cells as usize * 4;
        if reg.is_empty() || reg.len() % entry != 0 {
            return Err(bad(
                &n.path,
                "reg",
                "not a whole number of #address-cells entries",
            ));
        }
        // More than one entry would be SMT threads (Devicetree Specification 3.8.1).
        for id in reg.chunks_exact(entry) {
            cpus.push(CpuNode {
                mpidr: cell_value(id, address_cells).unwrap_or(0),
                enable_method: n.prop_str("enable-method").map(String::from),
                cpu_release_addr: n.prop("cpu-release-addr").and_then(sized_value),
            });
        }
    }
    if cpus.is_empty() {
        return Err(PlatformError::NoCpus);
    }
    Ok(cpus)
}

/// Devicetree Specification 3.5: enabled `/reserved-memory` children with a static
/// `reg` (a child with only `size` is a pool its OS allocates — here, nothing),
/// each with whether it is `no-map`.
fn parse_reserved_memory(tree: &Tree<'_, '_>) -> Vec<(MemRange, bool)> {
    let Some((idx, _)) = tree.root_children("reserved-memory").next() else {
        return Vec::new();
    };
    tree.children_of(idx)
        .filter(|(_, n)| n.is_enabled())
        .filter_map(|(_, n)| match &n.reg {
            Reg::Cpu(r) => Some((r.clone(), n.prop("no-map").is_some())),
            _ => None,
        })
        .flat_map(|(ranges, no_map)| {
            ranges
                .into_iter()
                .filter(|r| r.size != 0)
                .map(move |r| (r, no_map))
        })
        .collect()
}

/// Arm GIC binding interrupt specifier: (type, number, flags[, ...]). Type 0 is an SPI
/// (INTID 32 + n), 1 a PPI (16 + n), 2 an extended SPI (4096 + n), 3 an extended PPI
/// (1056 + n); Arm GIC architecture specification, table 2-1 (INTID ranges).
fn gic_intid(spec: &[u64]) -> Option<u32> {
    let (kind, n) = (*spec.first()?, *spec.get(1)?);
    let (base, count) = match kind {
        0 => (32, 988),
        1 => (16, 16),
        2 => (4096, 1024),
        3 => (1056, 64),
        _ => return None,
    };
    (n < count).then(|| (base + n) as u32)
}

/// A property as a list of 32-bit cells.
fn cells_u32(v: &[u8]) -> Vec<u64> {
    v.chunks_exact(4).filter_map(|c| cell_value(c, 1)).collect()
}

/// The GIC INTIDs of `n`'s `interrupts-extended`, or of its `interrupts` when its
/// interrupt parent is the GIC. Specifiers for other controllers are skipped.
fn node_intids(
    tree: &Tree<'_, '_>,
    n: &tree::Node<'_, '_>,
    gic: GicParent,
    gic_is_parent: bool,
) -> Vec<u32> {
    let extended = n.prop("interrupts-extended");
    let words = cells_u32(extended.or(n.prop("interrupts")).unwrap_or(&[]));
    let mut out = Vec::new();
    if extended.is_some() {
        let mut i = 0;
        while i < words.len() {
            let ph = words[i] as u32;
            let Some(cells) = tree
                .by_phandle(ph)
                .and_then(|p| p.prop_u32("#interrupt-cells"))
            else {
                break;
            };
            let spec = words.get(i + 1..i + 1 + cells as usize).unwrap_or(&[]);
            if Some(ph) == gic.phandle && cells >= 3 {
                out.extend(gic_intid(spec));
            }
            i += 1 + cells as usize;
        }
    } else if gic_is_parent && gic.cells >= 3 {
        out.extend(words.chunks_exact(gic.cells as usize).filter_map(gic_intid));
    }
    out
}

fn gic_is_parent_of(n: &tree::Node<'_, '_>, gic: Option<GicParent>) -> bool {
    matches!((gic, n.interrupt_parent), (Some(g), Some(p)) if g.phandle == Some(p))
}

fn parse_gic(tree: &Tree<'_, '_>) -> Result<Option<(GicInfo, GicParent)>, PlatformError> {
    let found = tree.nodes.iter().find_map(|n| {
        if !n.is_enabled() {
            return None;
        }
        if n.is_compatible(GIC_V3_COMPATIBLE) {
            Some((n, GicVersion::V3))
        } else if n.is_compatible(GIC_V2_COMPATIBLE) {
            Some((n, GicVersion::V2))
        } else {
            None
        }
    });
    let Some((n, version)) = found else {
        return Ok(None);
    };
    let regs = match &n.reg {
        Reg::Cpu(r) => r.clone(),
        Reg::Malformed(reason) => return Err(bad(&n.path, "reg", reason)),
        _ => {
            return Err(bad(
                &n.path,
                "reg",
                "missing or not in the CPU's address space",
            ));
        }
    };
    let parent = GicParent {
        phandle: n.phandle,
        cells: n.prop_u32("#interrupt-cells").unwrap_or(0),
    };
    let (gicd, gicr, rest) = match version {
        // arm,gic-v3 binding: GICD, GICR x #redistributor-regions, then GICC, GICH, GICV.
        GicVersion::V3 => {
            let nr_redist = n.prop_u32("#redistributor-regions").unwrap_or(1).max(1) as usize;
            if regs.len() < 1 + nr_redist {
                return Err(bad(
                    &n.path,
                    "reg",
                    "fewer regions than GICD + #redistributor-regions",
                ));
            }
            (
                regs[0],
                regs[1..1 + nr_redist].to_vec(),
                &regs[1 + nr_redist..],
            )
        }
        // arm,gic binding: GICD, GICC, then GICH and GICV with virtualization extensions.
        GicVersion::V2 => {
            if regs.len() < 2 {
                return Err(bad(&n.path, "reg", "fewer regions than GICD + GICC"));
            }
            (regs[0], Vec::new(), &regs[1..])
        }
    };
    // The GIC's own `interrupts` is the maintenance interrupt; it is written in the
    // GIC's own specifier format whatever its `interrupt-parent` says.
    let words = cells_u32(n.prop("interrupts").unwrap_or(&[]));
    let maintenance_intid = match parent.cells {
        c if c >= 3 => words.chunks_exact(c as usize).next().and_then(gic_intid),
        _ => None,
    };
    let info = GicInfo {
        version,
        gicd,
        gicr,
        gicc: rest.first().copied(),
        gich: rest.get(1).copied(),
        gicv: rest.get(2).copied(),
        maintenance_intid,
        phandle: n.phandle,
    };
    Ok(Some((info, parent)))
}

fn is_device_subtree_excluded(tree: &Tree<'_, '_>, idx: usize) -> bool {
    let mut i = idx;
    // Walk up to the root's child that holds `idx`.
    while let Some(p) = tree.nodes[i].parent {
        if p == 0 {
            break;
        }
        i = p;
    }
    let top = &tree.nodes[i];
    is_memory_node(top)
        || matches!(
            top.base_name(),
            "cpus" | "reserved-memory" | "chosen" | "aliases"
        )
}

fn parse_devices(tree: &Tree<'_, '_>, gic: Option<GicParent>) -> Vec<DeviceNode> {
    tree.nodes
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(i, _)| !is_device_subtree_excluded(tree, *i))
        .filter_map(|(_, n)| {
            let Reg::Cpu(regs) = &n.reg else { return None };
            let irqs = match gic {
                Some(g) => node_intids(tree, n, g, gic_is_parent_of(n, Some(g))),
                None => Vec::new(),
            };
            Some(DeviceNode {
                path: n.path.clone(),
                compatible: n.strings("compatible").next().map(String::from),
                regs: regs.clone(),
                irqs,
                enabled: n.is_enabled(),
                bus_master: bus_master::bus_master(n),
            })
        })
        .collect()
}

fn parse_timer(
    tree: &Tree<'_, '_>,
    gic: Option<GicParent>,
) -> Result<Option<TimerInfo>, PlatformError> {
    let Some(n) = tree
        .nodes
        .iter()
        .find(|n| n.is_enabled() && n.is_compatible(TIMER_COMPATIBLE))
    else {
        return Ok(None);
    };
    let Some(g) = gic else {
        return Err(bad(&n.path, "interrupts", "no GIC to decode them against"));
    };
    let ids = node_intids(tree, n, g, gic_is_parent_of(n, gic));
    // arm,armv8-timer binding order: secure phys, non-secure phys, virt, hyp phys,
    // then hyp virt when the CPU has FEAT_VHE.
    if ids.len() < 4 {
        return Err(bad(&n.path, "interrupts", "fewer than four GIC interrupts"));
    }
    Ok(Some(TimerInfo {
        secure_phys: ids[0],
        nonsecure_phys: ids[1],
        virt: ids[2],
        hyp_phys: ids[3],
        hyp_virt: ids.get(4).copied(),
        always_on: n.prop("always-on").is_some(),
    }))
}

/// Linux `Documentation/devicetree/bindings/arm/psci.yaml`.
fn parse_psci(tree: &Tree<'_, '_>) -> Result<Option<PsciInfo>, PlatformError> {
    const PSCI: &[&str] = &["arm,psci", "arm,psci-0.2", "arm,psci-1.0"];
    let Some(n) = tree.nodes.iter().find(|n| {
        n.parent == Some(0) && n.is_enabled() && (n.is_compatible(PSCI) || n.base_name() == "psci")
    }) else {
        return Ok(None);
    };
    let method = match n.prop_str("method") {
        Some("smc") => Conduit::Smc,
        Some("hvc") => Conduit::Hvc,
        Some(_) => return Err(bad(&n.path, "method", "neither \"smc\" nor \"hvc\"")),
        None => return Err(bad(&n.path, "method", "missing")),
    };
    Ok(Some(PsciInfo {
        method,
        compatible: n.strings("compatible").map(String::from).collect(),
        v0_1_ids: Psci01FunctionIds {
            cpu_suspend: n.prop_u32("cpu_suspend"),
            cpu_off: n.prop_u32("cpu_off"),
            cpu_on: n.prop_u32("cpu_on"),
            migrate: n.prop_u32("migrate"),
        },
    }))
}

type Chosen = (Option<MemRange>, Option<String>);

/// Linux `Documentation/devicetree/bindings/chosen.txt`: initrd start/end may be one or
/// two cells each; end is exclusive. The initrd (the boot bundle) is read in place, so
/// it must lie in RAM: a range anywhere else is refused here, before anything reads it.
fn parse_chosen(tree: &Tree<'_, '_>, memory: &[MemRange]) -> Result<Chosen, PlatformError> {
    let Some((_, n)) = tree.root_children("chosen").next() else {
        return Ok((None, None));
    };
    let start = n.prop("linux,initrd-start").map(sized_value);
    let end = n.prop("linux,initrd-end").map(sized_value);
    let initrd = match (start, end) {
        (None, None) => None,
        (Some(Some(s)), Some(Some(e))) if e >= s => Some(MemRange::new(s, e - s)),
        (Some(Some(_)), Some(Some(_))) => {
            return Err(bad(&n.path, "linux,initrd-end", "below linux,initrd-start"));
        }
        (Some(None), _) => return Err(bad(&n.path, "linux,initrd-start", "not one or two cells")),
        (_, Some(None)) => return Err(bad(&n.path, "linux,initrd-end", "not one or two cells")),
        _ => {
            return Err(bad(
                &n.path,
                "linux,initrd-start",
                "start and end must both be present",
            ));
        }
    };
    if let Some(r) = initrd
        && !memory.iter().any(|m| m.contains_range(&r))
    {
        return Err(bad(
            &n.path,
            "linux,initrd-start",
            "the initrd does not lie within one /memory range",
        ));
    }
    let bootargs = n
        .prop_str("bootargs")
        .filter(|s| !s.is_empty())
        .map(String::from);
    Ok((initrd, bootargs))
}

/// What kind of UART `n` is.
fn uart_kind(n: &tree::Node<'_, '_>) -> UartCompatible {
    if n.is_compatible(PL011_COMPATIBLE) {
        UartCompatible::Pl011
    } else if n.is_compatible(BCM2835_AUX_UART_COMPATIBLE) {
        UartCompatible::Ns16550 {
            reg_shift: 2,
            io_width: 4,
        }
    } else if n.is_compatible(NS16550_COMPATIBLE) {
        UartCompatible::Ns16550 {
            reg_shift: n.prop_u32("reg-shift").unwrap_or(0),
            io_width: n.prop_u32("reg-io-width").unwrap_or(1),
        }
    } else if n.is_compatible(CADENCE_UART_COMPATIBLE) {
        UartCompatible::Cadence
    } else if n.is_compatible(IMX_UART_COMPATIBLE) {
        UartCompatible::Imx
    } else {
        UartCompatible::Other(n.strings("compatible").next().unwrap_or("").to_string())
    }
}

/// The console UART, from a device tree that need not describe a whole machine
/// (no memory or CPUs needed): what [`Platform::parse`] would put in `uart`. The
/// boot finds its console with it before anything else, so that even an error
/// about the rest of the tree is printed on the board's own UART.
pub fn find_console(dtb: &[u8]) -> Option<UartInfo> {
    let blob = blob::check(dtb).ok()?;
    let fdt = Fdt::new(&blob).ok()?;
    let tree = Tree::index(&fdt).ok()?;
    let gic_parent = parse_gic(&tree).ok().flatten().map(|(_, p)| p);
    let devices = parse_devices(&tree, gic_parent);
    parse_uart(&tree, &devices)
}

/// The UART `/chosen/stdout-path` names (a path or an alias, options after ':') when
/// there is a driver for it, else the first enabled `arm,pl011`, else the first
/// enabled UART of another kind with a driver.
fn parse_uart(tree: &Tree<'_, '_>, devices: &[DeviceNode]) -> Option<UartInfo> {
    let from_stdout = tree.root_children("chosen").next().and_then(|(_, chosen)| {
        let spec = chosen
            .prop_str("stdout-path")
            .or(chosen.prop_str("linux,stdout-path"))?;
        let name = spec.split(':').next().unwrap_or(spec);
        let path = if name.starts_with('/') {
            name
        } else {
            tree.root_children("aliases").next()?.1.prop_str(name)?
        };
        tree.by_path(path)
    });
    let usable = |n: &tree::Node<'_, '_>| matches!(n.reg, Reg::Cpu(_)) && uart_kind(n).has_driver();
    let first_enabled = |pl011: bool| {
        tree.nodes.iter().position(|n| {
            n.is_enabled() && usable(n) && (uart_kind(n) == UartCompatible::Pl011) == pl011
        })
    };
    let idx = from_stdout
        .filter(|&i| usable(&tree.nodes[i]))
        .or_else(|| first_enabled(true))
        .or_else(|| first_enabled(false))
        .or(from_stdout.filter(|&i| matches!(tree.nodes[i].reg, Reg::Cpu(_))))?;
    let n = &tree.nodes[idx];
    let dev = devices.iter().find(|d| d.path == n.path)?;
    let first = *dev.regs.first()?;
    Some(UartInfo {
        path: dev.path.clone(),
        base: first.base,
        size: first.size,
        irq: dev.irqs.first().copied(),
        compatible: uart_kind(n),
    })
}
