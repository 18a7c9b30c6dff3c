//! The EL2 translation regime with HCR_EL2.E2H == 0 (no VHE): one stage, one
//! Exception level, TTBR0_EL2 only. The hypervisor maps itself with it, normally as
//! an identity map. Geometry, TCR_EL2, MAIR_EL2, TTBR0_EL2 and the leaf attributes.

use super::descriptor::EL2_LEAF;
use super::{BITS_PER_LEVEL, GeometryError, LAST_LEVEL, PA_RANGE_48, Regime, pa_range_bits};
use crate::mm::region::{PAGE_SHIFT, PAGE_SIZE, is_aligned};
use aarch64_cpu::registers::{MAIR_EL2, TCR_EL2, TTBR0_EL2};
use tock_registers::{LocalRegisterCopy, register_bitfields};

register_bitfields! {u64,
    /// TCR_EL2 bits that aarch64-cpu's definition lacks: with HCR_EL2.E2H == 0,
    /// bits 31 and 23 are RES1 (Arm ARM D23.2, TCR_EL2).
    TCR_EL2_NVHE [
        RES1_31 OFFSET(31) NUMBITS(1) [],
        RES1_23 OFFSET(23) NUMBITS(1) [],
    ]
}

/// MAIR_EL2 as the EL2 regime uses it (Arm ARM D23.2, MAIR_EL2; the AttrIndx of
/// [`El2MemType`] selects the byte):
/// - Attr0 = 0x04: Device-nGnRE, for device registers (the UART, the GIC).
/// - Attr1 = 0xff: Normal, Inner and Outer Write-Back Non-transient, Read- and
///   Write-Allocate, for RAM.
/// - Attr2 = 0x44: Normal, Inner and Outer Non-cacheable.
///
/// Attr3..Attr7 are 0 (Device-nGnRnE) and unused.
pub const MAIR_EL2_VALUE: u64 = MAIR_EL2::Attr0_Device::nonGathering_nonReordering_EarlyWriteAck
    .value
    | MAIR_EL2::Attr1_Normal_Outer::WriteBack_NonTransient_ReadWriteAlloc.value
    | MAIR_EL2::Attr1_Normal_Inner::WriteBack_NonTransient_ReadWriteAlloc.value
    | MAIR_EL2::Attr2_Normal_Outer::NonCacheable.value
    | MAIR_EL2::Attr2_Normal_Inner::NonCacheable.value;

/// Smallest VA size: T0SZ at most 39 (without FEAT_TTST), Arm ARM D8.1.
const MIN_VA_BITS: u32 = 25;
/// Largest VA size with the 4 KiB granule and no FEAT_LVA / FEAT_LPA2.
const MAX_VA_BITS: u32 = 48;

/// Geometry of the EL2 stage 1 tables: VA size (typically 39 or 48 bits for an
/// identity map that covers all RAM and devices) and output size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct El2Geometry {
    va_bits: u32,
    /// TCR_EL2.PS encoding.
    ps: u8,
    pa_bits: u32,
    start_level: usize,
}

impl El2Geometry {
    /// `va_bits` of VA space (25..=48) on a CPU whose ID_AA64MMFR0_EL1.PARange is
    /// `pa_range`. Stage 1 has no concatenated tables, so the walk starts at the
    /// level whose one table resolves the top bits: level 1 for 39 bits (512 x
    /// 1 GiB), level 0 for 48 bits.
    pub fn new(va_bits: u32, pa_range: u8) -> Result<Self, GeometryError> {
        let pa_max = pa_range_bits(pa_range).ok_or(GeometryError::UnsupportedPaRange(pa_range))?;
        if !(MIN_VA_BITS..=MAX_VA_BITS).contains(&va_bits) {
            return Err(GeometryError::UnsupportedInputBits(va_bits));
        }
        let levels = (va_bits - PAGE_SHIFT).div_ceil(BITS_PER_LEVEL) as usize;
        Ok(Self {
            va_bits,
            ps: pa_range.min(PA_RANGE_48),
            pa_bits: pa_max.min(48),
            start_level: LAST_LEVEL + 1 - levels,
        })
    }

    /// VA size in bits.
    pub fn va_bits(&self) -> u32 {
        self.va_bits
    }

    /// Level of the initial lookup.
    pub fn start_level(&self) -> usize {
        self.start_level
    }

    /// The TCR_EL2 value (HCR_EL2.E2H == 0 layout, Arm ARM D23.2, TCR_EL2):
    /// T0SZ = 64 - VA bits; table walks Inner Shareable, Inner and Outer
    /// Write-Back Read/Write-Allocate; TG0 = 4 KiB; PS = the PA size (at most 48
    /// bits); TBI = 0 (the top byte is part of the address); HA = HD = 0; HPD = 0;
    /// bits 31 and 23 RES1.
    pub fn tcr_el2(&self) -> u64 {
        let tcr = TCR_EL2::T0SZ.val(u64::from(64 - self.va_bits))
            + TCR_EL2::IRGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL2::ORGN0::WriteBack_ReadAlloc_WriteAlloc_Cacheable
            + TCR_EL2::SH0::Inner
            + TCR_EL2::TG0::KiB_4
            + TCR_EL2::PS.val(u64::from(self.ps))
            + TCR_EL2::TBI::Used
            + TCR_EL2::HA::Disable
            + TCR_EL2::HD::Disable;
        let res1 = TCR_EL2_NVHE::RES1_31::SET + TCR_EL2_NVHE::RES1_23::SET;
        tcr.value | res1.value
    }
}

/// The TTBR0_EL2 value for tables rooted at `root_pa` (CnP = 0).
pub fn ttbr0_el2(root_pa: u64) -> u64 {
    debug_assert!(is_aligned(root_pa, PAGE_SIZE));
    // BADDR is bits [47:1] of the register and holds bits [47:1] of the address.
    TTBR0_EL2::BADDR.val(root_pa >> 1).value
}

/// Memory type of an EL2 mapping, i.e. its AttrIndx into [`MAIR_EL2_VALUE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum El2MemType {
    /// Attr0, Device-nGnRE.
    Device,
    /// Attr1, Normal Write-Back.
    Normal,
    /// Attr2, Normal Non-cacheable.
    NormalNonCacheable,
}

/// Attributes of an EL2 mapping. Reads are always permitted (`AP[2:1]` cannot
/// forbid them in a one-Exception-level regime).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct El2Attrs {
    /// Memory type.
    pub mem: El2MemType,
    /// Writable (`AP[2]` clear).
    pub write: bool,
    /// Executable (XN clear).
    pub exec: bool,
}

impl El2Attrs {
    /// Hypervisor code: Normal, read-only, executable.
    pub const CODE: El2Attrs = El2Attrs {
        mem: El2MemType::Normal,
        write: false,
        exec: true,
    };
    /// Read-only data: Normal, read-only, execute-never.
    pub const RODATA: El2Attrs = El2Attrs {
        mem: El2MemType::Normal,
        write: false,
        exec: false,
    };
    /// Data, stacks, heap, frames: Normal, read/write, execute-never.
    pub const DATA: El2Attrs = El2Attrs {
        mem: El2MemType::Normal,
        write: true,
        exec: false,
    };
    /// Device registers: Device-nGnRE, read/write, execute-never.
    pub const DEVICE: El2Attrs = El2Attrs {
        mem: El2MemType::Device,
        write: true,
        exec: false,
    };
}

impl Regime for El2Geometry {
    type Attrs = El2Attrs;

    fn input_bits(&self) -> u32 {
        self.va_bits
    }

    fn output_bits(&self) -> u32 {
        self.pa_bits
    }

    fn start_level(&self) -> usize {
        self.start_level
    }

    fn root_tables(&self) -> usize {
        1
    }

    fn leaf_attrs(attrs: El2Attrs) -> u64 {
        let index = match attrs.mem {
            El2MemType::Device => EL2_LEAF::ATTR_INDX::Device,
            El2MemType::Normal => EL2_LEAF::ATTR_INDX::Normal,
            El2MemType::NormalNonCacheable => EL2_LEAF::ATTR_INDX::NormalNonCacheable,
        };
        let access = if attrs.write {
            EL2_LEAF::AP::ReadWrite
        } else {
            EL2_LEAF::AP::ReadOnly
        };
        let xn = if attrs.exec {
            EL2_LEAF::XN::CLEAR
        } else {
            EL2_LEAF::XN::SET
        };
        (index + access + EL2_LEAF::SH::InnerShareable + EL2_LEAF::AF::SET + xn).value
    }

    fn decode_leaf_attrs(desc: u64) -> Option<El2Attrs> {
        let d = LocalRegisterCopy::<u64, EL2_LEAF::Register>::new(desc);
        let mem = match d.read_as_enum(EL2_LEAF::ATTR_INDX)? {
            EL2_LEAF::ATTR_INDX::Value::Device => El2MemType::Device,
            EL2_LEAF::ATTR_INDX::Value::Normal => El2MemType::Normal,
            EL2_LEAF::ATTR_INDX::Value::NormalNonCacheable => El2MemType::NormalNonCacheable,
        };
        let write = match d.read_as_enum(EL2_LEAF::AP)? {
            EL2_LEAF::AP::Value::ReadWrite => true,
            EL2_LEAF::AP::Value::ReadOnly => false,
        };
        Some(El2Attrs {
            mem,
            write,
            exec: !d.is_set(EL2_LEAF::XN),
        })
    }
}
