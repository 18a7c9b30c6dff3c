//! The system config: which VMs to run, with what, on which CPUs.
//!
//! A person describes the whole system in one TOML file. The hypervisor reads it at boot
//! from the boot bundle ([`bundle`]); the host tool `fvconfig` runs the same parser and
//! the same checks before anything boots. Every error names the file, the line and column,
//! the field and the reason:
//!
//! ```text
//! error: boards/qemu-virt/demo.toml:9:10: vm.demo.memory: 3M is not a multiple of 2M ...
//! ```
//!
//! # Format
//!
//! ```toml
//! # ---- system-wide, optional ------------------------------------------------------
//! [console]
//! switch_key = "ctrl-a"     # the key that, pressed `switch_presses` times in a row,
//! switch_presses = 3        #   moves keyboard input to the next VM (as Xen's Ctrl-a x3)
//! input = "linux"           # the VM that gets the keyboard first (default: the first
//!                           #   VM with a console)
//!
//! # ---- one [[vm]] table per guest -------------------------------------------------
//! [[vm]]
//! name = "demo"             # required; letters, digits, '-', '_', '.'; at most 32;
//!                           #   unique. Tags this VM's console output.
//! vcpus = 1                 # number of vCPUs (default 1, or the length of `cpus`)
//! cpus = [0]                # optional: the physical CPU each vCPU runs on (vCPU i on
//!                           #   cpus[i]), numbered in device-tree /cpus order. A CPU may
//!                           #   appear more than once, and in several VMs: its vCPUs
//!                           #   then take turns on it (time-sharing). VMs without `cpus`
//!                           #   spread their vCPUs over the CPUs no exclusive VM has,
//!                           #   each on the CPU with the fewest vCPUs so far (lowest
//!                           #   number first).
//! exclusive = false         # true: each vCPU gets a physical CPU of its own that no
//!                           #   other vCPU shares (listed in `cpus` at most once, in no
//!                           #   other VM's `cpus`; without `cpus`, the lowest CPUs no VM
//!                           #   lists). No scheduler tick, state stays in the hardware.
//! priority = 0              # 0..=255: on a shared CPU a ready vCPU of a higher
//!                           #   priority runs first and preempts a lower one at once
//! timeslice = "4ms"         # how long a vCPU runs before one of the same priority on
//!                           #   its CPU gets a turn: "500us", "4ms", ... 100us..=1s
//! memory = "256M"           # required: RAM size, an integer (bytes) or a string with a
//!                           #   K, M, G or T suffix (binary: 1K = 1024; "256MiB" also
//!                           #   reads). A multiple of 2M.
//! base = 0x4000_0000        # optional guest-physical RAM base, a multiple of 2M
//!                           #   (default 0x4000_0000, where QEMU virt has its RAM)
//! kernel = "guests/demo.bin"          # an arm64 Linux Image or an ELF, recognised by
//!                                     #   its header; or a table:
//! # kernel = { path = "x.bin", format = "raw", load = 0x4008_0000, entry = 0x4008_0000 }
//! #   format = "auto" (default) | "image" | "raw" | "elf".
//! #   "raw" needs `load` (the guest-physical address of its first byte); `entry`
//! #   defaults to `load`. Giving `load` without `format` means "raw".
//! initrd = "initramfs.cpio.gz"        # optional initial ramdisk for Linux
//! bootargs = "console=ttyAMA0"        # optional kernel command line (< 2048 bytes)
//! dtb = "my.dtb"                      # optional device tree; else one is generated
//! console = "pl011"                   # "pl011" (default): an emulated PL011 at
//!                                     #   0x0900_0000 on the shared physical UART;
//!                                     #   "none": no console device
//!
//! [[vm.passthrough]]        # zero or more: a device of the board given to this VM
//! base = 0x0a00_0000        # its MMIO range, mapped at the same guest-physical address;
//! size = 0x1000             #   base and size multiples of 4K (the stage-2 page size)
//! irqs = [48]               # its interrupts as GIC INTIDs (SPIs, 32..=1019); a device
//!                           #   tree `interrupts = <0 N 4>` is INTID N + 32. Only
//!                           #   interrupts the device's own node lists, and none the
//!                           #   hypervisor or an emulated device uses.
//!                           # A device that can master the bus (DMA) is refused: see
//!                           #   `crate::platform::BusMaster` for the rule.
//!
//! [vm.cpu]                  # optional CPU-model knobs, all optional
//! cache = "virtual"         # cache topology shown to the guest: "virtual" (default),
//!                           #   "host", or { clidr = 0x..., ccsidr = [0x..., ...] } with
//!                           #   one CCSIDR per cache CLIDR describes (data before
//!                           #   instruction at a level with separate caches)
//! sve_vl = 256              # SVE vector-length cap in bits: a multiple of 128, <= 2048,
//!                           #   one the host implements (default: the longest every
//!                           #   core implements alike; a host without SVE: none)
//! pmu = true               # a PMUv3 for the guest (default: as the host; `true` on a
//!                           #   host without one is refused at boot)
//! pmu_counters = 4          # 1..=31: its event counters (PMCR_EL0.N; default: all of
//!                           #   the host's); more than the host has is refused
//! # Not implemented yet, so refused with an error saying so ([`NOT_IMPLEMENTED`]); the
//! # values are checked first:
//! # breakpoints = 4         # 2..=16 (default: as the host)
//! # watchpoints = 2         # 2..=16 (default: as the host)
//! # sme_vl = 256            # SME streaming vector length: a power of two, 128..=2048
//! # spe = true              # Statistical Profiling Extension (false, the default, is
//! #                         #   accepted: SPE is hidden from guests)
//!
//! [vm.cpu.id]               # optional: ID register fields this VM sees lower than the
//! "ID_AA64ISAR0_EL1.AES" = 0  # hardware, "REGISTER.FIELD" = value (0..=15); raising a
//!                           #   field above what the hardware has is an error at boot
//! ```
//!
//! Paths name files in the boot bundle, stored exactly as written here; `fvconfig pack`
//! finds them relative to the config file's directory, then along its `-L` directories.
//!
//! # What is checked
//! [`SystemConfig::parse`] checks everything the text alone decides: syntax, unknown keys,
//! types, sizes and alignment, unique names, `vcpus` against `cpus`, a physical CPU or an
//! interrupt or a device range given to two VMs, and each VM's own guest-physical map:
//! RAM, the emulated devices ([`EMULATED_DEVICES`]) and passthrough ranges must not
//! overlap and must lie below [`GUEST_IPA_LIMIT`].
//! [`SystemConfig::check_against`] checks what needs the machine and the files: CPUs and
//! RAM enough, passthrough ranges that are devices of the board which cannot do DMA
//! (`crate::platform::BusMaster`), given only the interrupts their own device-tree nodes
//! list and none the hypervisor uses, images present and small enough. Its
//! [`HostFacts`] come from the parsed host device tree in the hypervisor and in
//! `fvconfig` alike ([`HostFacts::from_platform`]), so both refuse with the same words. [`SystemConfig::plan_kernel`] reads a kernel's header to place it.

pub mod bundle;
mod error;
mod host;
mod nesting;
mod raw;
mod validate;

#[cfg(test)]
mod tests;

use alloc::string::String;
use alloc::vec::Vec;

use crate::vm::image::ImageKind;

pub use error::{ConfigError, Position};
pub use host::HostFacts;

/// 2 MiB: guest RAM base and size are multiples of this so that stage 2 can map RAM with
/// level-2 block descriptors and because an arm64 Image is placed at a 2 MiB-aligned base (Linux booting.rst).
/// Arm ARM VMSAv8-64 translation table formats: with the 4 KiB granule a level-2 block
/// descriptor maps 2 MiB.
pub const GUEST_BLOCK: u64 = 2 << 20;
/// 4 KiB: passthrough ranges are multiples of the stage-2 translation granule, the
/// smallest unit stage 2 can map (Arm ARM VMSAv8-64: the 4 KiB translation granule).
pub const GUEST_PAGE: u64 = 4 << 10;
/// Guest-physical addresses stay below 2^39 (512 GiB): the 39-bit IPA space that a
/// 3-level stage-2 walk from a single level-1 table covers with the 4 KiB granule.
pub const GUEST_IPA_LIMIT: u64 = 1 << 39;
/// Default guest RAM base: where QEMU's virt board has RAM, so guests built for it run.
pub const DEFAULT_RAM_BASE: u64 = 0x4000_0000;
/// `[vm.cpu]` keys that are parsed and checked but whose feature is not implemented
/// yet: a config that sets one is refused rather than silently run without it. Each
/// entry is (key, what the guest gets today). A feature's work removes its entry.
pub const NOT_IMPLEMENTED: &[(&str, &str)] = &[
    (
        "breakpoints",
        "debug registers are not virtualized yet; the guest sees the hardware's",
    ),
    (
        "watchpoints",
        "debug registers are not virtualized yet; the guest sees the hardware's",
    ),
    (
        "sme_vl",
        "per-VM SME vector lengths are not implemented yet; SME is hidden from guests",
    ),
    (
        "spe",
        "the Statistical Profiling Extension is not virtualized yet; it is hidden from guests (spe = false)",
    ),
];

/// The default `timeslice`: 4 ms, a few ms as Xen's credit2 (its default
/// ratelimit is 1 ms, its credit slice 10 ms) and Linux CFS's minimum granularity.
pub const DEFAULT_TIMESLICE_US: u64 = 4_000;
/// `timeslice` bounds: below 100 us the tick would cost more than the work it
/// divides; above a second a vCPU's peers would look hung.
pub const TIMESLICE_US: core::ops::RangeInclusive<u64> = 100..=1_000_000;

/// At most this many vCPUs per VM.
pub const MAX_VCPUS: usize = 64;
/// Physical CPU numbers in `cpus` are below this.
pub const MAX_CPUS: usize = 256;
/// The longest kernel command line arm64 Linux accepts (COMMAND_LINE_SIZE).
pub const MAX_BOOTARGS: usize = 2048;

/// A device the hypervisor emulates in every VM's guest-physical map (laid out as on QEMU
/// virt, so guests built for virt run unchanged).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmulatedDevice {
    pub name: &'static str,
    pub base: u64,
    pub size: u64,
    /// Present only when the VM's `console = "pl011"`.
    pub console_only: bool,
    /// The interrupt (GIC INTID) it drives in the VM's virtual GIC: a passthrough
    /// device may not be given the same one.
    pub intid: Option<u32>,
}

/// The guest-physical windows of the emulated devices: RAM and passthrough ranges may not
/// overlap them. The GIC window is virt's whole GIC area (distributor, CPU interface, ITS,
/// redistributors), kept free whichever virtual GIC version a VM gets.
pub const EMULATED_DEVICES: &[EmulatedDevice] = &[
    EmulatedDevice {
        name: "virtual GIC",
        base: 0x0800_0000,
        size: 0x0100_0000,
        console_only: false,
        intid: None,
    },
    EmulatedDevice {
        name: "PL011 console",
        base: 0x0900_0000,
        size: 0x1000,
        console_only: true,
        // SPI 1, as QEMU virt wires its UART.
        intid: Some(33),
    },
];

/// The whole system: the console and the VMs, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemConfig {
    pub console: ConsoleConfig,
    pub vms: Vec<VmConfig>,
    /// The config file's name, for errors found after parsing.
    file: String,
}

/// `[console]`: how the shared physical UART is multiplexed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// The control character that switches input (0x01 for Ctrl-a).
    pub switch_key: u8,
    /// How many times in a row it must be pressed.
    pub switch_presses: u8,
    /// Index in [`SystemConfig::vms`] of the VM that gets input first; `None` when no VM
    /// has a console.
    pub input: Option<usize>,
}

/// One `[[vm]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    pub name: String,
    pub vcpus: usize,
    /// The physical CPUs the vCPUs run on (vCPU i on `cpus[i]`), when the config pins them.
    /// See [`SystemConfig::cpu_assignment`] for the CPUs every VM gets.
    pub cpus: Option<Vec<usize>>,
    /// Each vCPU has a physical CPU no other vCPU shares.
    pub exclusive: bool,
    /// Scheduling priority on a shared CPU: higher runs first.
    pub priority: u8,
    /// Round-robin slice on a shared CPU, in microseconds.
    pub timeslice_us: u64,
    /// Guest-physical RAM base.
    pub base: u64,
    /// RAM size in bytes.
    pub memory: u64,
    pub kernel: KernelConfig,
    pub initrd: Option<String>,
    pub bootargs: Option<String>,
    pub dtb: Option<String>,
    pub console: VmConsole,
    pub passthrough: Vec<Passthrough>,
    pub cpu: CpuModel,
    /// Where each field was written, for errors found after parsing.
    sites: VmSites,
}

/// Where a VM's fields are in the file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct VmSites {
    vm: Option<Position>,
    vcpus: Option<Position>,
    cpus: Option<Position>,
    exclusive: Option<Position>,
    memory: Option<Position>,
    kernel: Option<Position>,
    initrd: Option<Position>,
    dtb: Option<Position>,
    sve_vl: Option<Position>,
    pmu: Option<Position>,
    pmu_counters: Option<Position>,
    passthrough: Vec<PassthroughSites>,
}

/// Where a `[[vm.passthrough]]` table and its `irqs` elements are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct PassthroughSites {
    table: Option<Position>,
    irqs: Vec<Option<Position>>,
}

/// The kernel image: a path in the bundle and how to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelConfig {
    pub path: String,
    pub kind: ImageKind,
}

/// A VM's console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmConsole {
    /// An emulated PL011 at 0x0900_0000 multiplexed onto the physical UART.
    Pl011,
    /// No console device.
    None,
}

/// A device range of the board given to one VM, mapped at the same address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passthrough {
    pub base: u64,
    pub size: u64,
    /// GIC INTIDs routed to this VM.
    pub irqs: Vec<u32>,
}

/// CPU-model knobs (`[vm.cpu]`). `None` means "as the host".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuModel {
    pub cache: CachePolicy,
    pub breakpoints: Option<u8>,
    pub watchpoints: Option<u8>,
    /// SVE vector length in bits.
    pub sve_vl: Option<u16>,
    /// SME streaming vector length in bits.
    pub sme_vl: Option<u16>,
    pub spe: bool,
    /// A PMUv3 for the guest: `None` as the host (on where the host has one).
    pub pmu: Option<bool>,
    /// The guest's event counters (PMCR_EL0.N, MDCR_EL2.HPMN): `None` as the host.
    pub pmu_counters: Option<u8>,
    /// ID register fields lowered for this VM: ("REGISTER.FIELD", value).
    pub id: Vec<(String, u8)>,
}

impl Default for CpuModel {
    fn default() -> Self {
        Self {
            cache: CachePolicy::Virtual,
            breakpoints: None,
            watchpoints: None,
            sve_vl: None,
            sme_vl: None,
            spe: false,
            pmu: None,
            pmu_counters: None,
            id: Vec::new(),
        }
    }
}

/// The cache topology the guest sees through CLIDR_EL1/CCSIDR_EL1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CachePolicy {
    /// A topology chosen by the hypervisor, the same on every host.
    Virtual,
    /// The host's own registers.
    Host,
    /// Exactly these values: CLIDR_EL1, and one CCSIDR_EL1 per cache it describes, in
    /// CSSELR order (level 1 data or unified, level 1 instruction, level 2, ...).
    Custom { clidr: u64, ccsidr: Vec<u64> },
}

impl SystemConfig {
    /// Read and validate a config. `file` is the name errors use.
    pub fn parse(text: &str, file: &str) -> Result<SystemConfig, ConfigError> {
        validate::parse(text, file)
    }

    /// The config file's name as given to [`SystemConfig::parse`].
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The VM called `name`.
    pub fn vm(&self, name: &str) -> Option<&VmConfig> {
        self.vms.iter().find(|vm| vm.name == name)
    }
}
