//! Which devices of the board can master the bus (do DMA), read off their device-tree
//! nodes.
//!
//! Stage 2 confines what a guest's CPUs reach, not what a device reaches: a device that
//! masters the bus writes wherever it is told to in physical memory, including another
//! VM's RAM and the hypervisor. Until DMA is confined by an IOMMU (Arm SMMU stage 2),
//! such a device must never be passed through. The rule is to refuse a device when
//! anything in its node says it can master the bus:
//!
//! 1. a property that only a bus master, a DMA client or a DMA provider has
//!    ([`DMA_PROPERTIES`]): `dma-coherent`, `iommus`, `msi-parent`, `dmas`, `#dma-cells`, ...;
//! 2. `device_type = "pci"` or `"pciex"`: a PCI host bridge, whose devices master the
//!    bus (Devicetree Specification, PCI bus binding);
//! 3. a `compatible` string of a device class that masters the bus by its nature
//!    ([`BUS_MASTER_COMPATIBLES`]): virtio transports, QEMU's fw_cfg with its DMA
//!    interface, PCI host bridges, IOMMUs, DMA engines, USB/SATA/ethernet controllers;
//! 4. a node name from the Devicetree Specification's generic names ("Generic Names
//!    Recommendation") for a device class that masters the bus ([`BUS_MASTER_NAMES`]):
//!    `ethernet`, `usb`, `sata`, `pcie`, `dma-controller`, `gpu`, `mmc`, ...
//!
//! A range of the board that no node describes is refused by the config check
//! (`config::HostFacts`): nothing can be known about what sits there.

use core::fmt;

use super::tree::Node;

/// Why a device-tree node describes a device that can master the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BusMaster {
    /// The node has this property; the text says what it means.
    Property {
        name: &'static str,
        meaning: &'static str,
    },
    /// `device_type = "pci"` (or `"pciex"`): a PCI host bridge.
    PciHostBridge,
    /// Its `compatible` names a device class that masters the bus.
    Compatible {
        compatible: &'static str,
        meaning: &'static str,
    },
    /// Its node name is the Devicetree Specification's generic name of such a class.
    GenericName(&'static str),
}

impl fmt::Display for BusMaster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BusMaster::Property { name, meaning } => {
                write!(f, "its node has `{name}` ({meaning})")
            }
            BusMaster::PciHostBridge => write!(
                f,
                "it is a PCI host bridge (device_type \"pci\"), and PCI devices master the bus"
            ),
            BusMaster::Compatible {
                compatible,
                meaning,
            } => write!(f, "it is compatible with \"{compatible}\" ({meaning})"),
            BusMaster::GenericName(name) => write!(
                f,
                "its node name `{name}` is the generic name of a device class that masters the bus"
            ),
        }
    }
}

/// Properties that say a node masters the bus, requests DMA, or provides DMA or
/// address translation for others (Devicetree Specification 2.3.9 `dma-ranges`,
/// 2.3.10 `dma-coherent`; Linux bindings `iommu/iommu.txt`, `dma/dma-common.yaml`,
/// `interrupt-controller/msi.txt`).
pub const DMA_PROPERTIES: &[(&str, &str)] = &[
    (
        "dma-coherent",
        "it does DMA, coherently with the CPUs' caches",
    ),
    ("dma-noncoherent", "it does DMA"),
    (
        "dma-ranges",
        "it describes DMA addressing for the devices under it",
    ),
    ("iommus", "its DMA goes through an IOMMU"),
    (
        "iommu-map",
        "the DMA of the devices under it goes through an IOMMU",
    ),
    (
        "msi-parent",
        "it signals interrupts by writing to memory (MSI)",
    ),
    (
        "msi-map",
        "the devices under it signal interrupts by writing to memory (MSI)",
    ),
    ("dmas", "it requests transfers from a DMA engine"),
    ("#dma-cells", "it is a DMA engine"),
    (
        "#iommu-cells",
        "it is an IOMMU, which reads its tables from memory",
    ),
    (
        "msi-controller",
        "it is an MSI controller, which reads its tables from memory",
    ),
];

/// `compatible` strings of device classes that master the bus by their nature (Linux
/// bindings under `Documentation/devicetree/bindings/`).
pub const BUS_MASTER_COMPATIBLES: &[(&str, &str)] = &[
    (
        "virtio,mmio",
        "a virtio transport: virtio devices DMA to and from the driver's memory",
    ),
    (
        "qemu,fw-cfg-mmio",
        "QEMU's fw_cfg, whose DMA interface writes anywhere in memory",
    ),
    ("pci-host-ecam-generic", "a PCI host bridge"),
    ("pci-host-cam-generic", "a PCI host bridge"),
    ("arm,smmu-v3", "an IOMMU"),
    ("arm,mmu-500", "an IOMMU"),
    ("arm,smmu-v2", "an IOMMU"),
    ("arm,smmu-v1", "an IOMMU"),
    ("arm,mmu-400", "an IOMMU"),
    ("arm,mmu-401", "an IOMMU"),
    (
        "arm,gic-v3-its",
        "an MSI controller, which reads its tables from memory",
    ),
    ("arm,pl330", "a DMA engine"),
    ("arm,pl080", "a DMA engine"),
    ("arm,pl081", "a DMA engine"),
    ("generic-xhci", "a USB host controller"),
    ("generic-ehci", "a USB host controller"),
    ("generic-ohci", "a USB host controller"),
    ("snps,dwc3", "a USB controller"),
    ("snps,dwc2", "a USB controller"),
    ("generic-ahci", "a SATA controller"),
    ("snps,dwmac", "an ethernet controller"),
    ("cdns,macb", "an ethernet controller"),
    ("cdns,gem", "an ethernet controller"),
];

/// Devicetree Specification, "Generic Names Recommendation": node names of device
/// classes that master the bus (they move data to and from memory themselves).
pub const BUS_MASTER_NAMES: &[&str] = &[
    "camera",
    "crypto",
    "display",
    "dma-controller",
    "dsp",
    "ethernet",
    "gpu",
    "iommu",
    "lcd-controller",
    "mmc",
    "nand-controller",
    "pci",
    "pcie",
    "sata",
    "scsi",
    "usb",
    "video-codec",
    "wifi",
];

/// Why the device `n` describes can master the bus, or `None` when nothing in its node
/// says so.
pub(crate) fn bus_master(n: &Node<'_, '_>) -> Option<BusMaster> {
    if let Some(&(name, meaning)) = DMA_PROPERTIES
        .iter()
        .find(|(name, _)| n.prop(name).is_some())
    {
        return Some(BusMaster::Property { name, meaning });
    }
    if matches!(n.prop_str("device_type"), Some("pci" | "pciex")) {
        return Some(BusMaster::PciHostBridge);
    }
    if let Some(&(compatible, meaning)) = BUS_MASTER_COMPATIBLES
        .iter()
        .find(|(c, _)| n.strings("compatible").any(|s| s == *c))
    {
        return Some(BusMaster::Compatible {
            compatible,
            meaning,
        });
    }
    BUS_MASTER_NAMES
        .iter()
        .find(|&&name| n.base_name() == name)
        .map(|&name| BusMaster::GenericName(name))
}
