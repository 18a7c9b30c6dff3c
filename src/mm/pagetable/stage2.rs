//! Stage 2 of the EL1&0 translation regime: geometry from the CPU's physical address
//! size, the VTCR_EL2 and VTTBR_EL2 values, and the stage 2 leaf attributes.

use super::descriptor::S2_LEAF;
use super::{
    BITS_PER_LEVEL, GeometryError, LAST_LEVEL, MAX_ROOT_TABLES, PA_RANGE_48, Regime, level_shift,
    pa_range_bits,
};
use crate::mm::region::{PAGE_SHIFT, PAGE_SIZE, is_aligned};
use aarch64_cpu::registers::{VTCR_EL2, VTTBR_EL2};
use tock_registers::LocalRegisterCopy;

/// Smallest IPA size offered, as KVM does: smaller guests gain nothing.
const MIN_IPA_BITS: u32 = 32;

/// How stage 2 translates for a given IPA size: initial lookup level and number of
/// concatenated initial-level tables.
///
/// The choice follows KVM (`stage2_pgtable_levels`): use as few levels as possible,
/// letting the initial level resolve up to 4 extra bits by concatenating up to 16
/// tables. With the 4 KiB granule that gives
///
/// | IPA bits | start level | root tables |
/// |----------|-------------|-------------|
/// | 32       | 2           | 4           |
/// | 36       | 1           | 1 (64 entries used) |
/// | 39       | 1           | 1           |
/// | 40       | 1           | 2           |
/// | 42       | 1           | 8           |
/// | 44       | 0           | 1 (32 entries used) |
/// | 48       | 0           | 1           |
///
/// Each choice passes the Arm ARM pseudocode checks the walker applies to
/// VTCR_EL2.{T0SZ, SL0} (`AArch64.S2InvalidSL`, `AArch64.S2InconsistentSL`; see
/// `s2_invalid_sl` and `s2_inconsistent_sl` in this module), which a test checks for every
/// size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage2Geometry {
    /// VTCR_EL2.PS encoding of the output size.
    ps: u8,
    /// Output (physical) address bits, at most 48.
    pa_bits: u32,
    ipa_bits: u32,
    start_level: usize,
    root_tables: usize,
}

impl Stage2Geometry {
    /// The largest IPA space the CPU supports: `pa_range` is
    /// ID_AA64MMFR0_EL1.PARange (the 4-bit field value), and the IPA size is the
    /// PA size capped at 48 bits.
    pub fn from_pa_range(pa_range: u8) -> Result<Self, GeometryError> {
        let pa_bits = pa_range_bits(pa_range).ok_or(GeometryError::UnsupportedPaRange(pa_range))?;
        Self::with_ipa_bits(pa_range, pa_bits.min(48))
    }

    /// An IPA space of `ipa_bits` (32 up to the PA size, at most 48) on a CPU whose
    /// ID_AA64MMFR0_EL1.PARange is `pa_range`.
    pub fn with_ipa_bits(pa_range: u8, ipa_bits: u32) -> Result<Self, GeometryError> {
        let pa_max = pa_range_bits(pa_range).ok_or(GeometryError::UnsupportedPaRange(pa_range))?;
        let ps = pa_range.min(PA_RANGE_48);
        let pa_bits = pa_max.min(48);
        if !(MIN_IPA_BITS..=pa_bits).contains(&ipa_bits) {
            return Err(GeometryError::UnsupportedInputBits(ipa_bits));
        }
        // Levels below the initial one each resolve 9 bits; the initial one
        // resolves up to 9 + 4 (16 concatenated tables). KVM additionally never
        // uses fewer than 2 levels.
        let levels = ((ipa_bits - 4 - PAGE_SHIFT).div_ceil(BITS_PER_LEVEL) as usize).max(2);
        let start_level = LAST_LEVEL + 1 - levels;
        let root_bits = ipa_bits - level_shift(start_level);
        let root_tables = 1 << root_bits.saturating_sub(BITS_PER_LEVEL);
        if s2_invalid_sl(start_level, pa_max)
            || s2_inconsistent_sl(ipa_bits, start_level)
            || root_tables > MAX_ROOT_TABLES
        {
            return Err(GeometryError::UnsupportedInputBits(ipa_bits));
        }
        Ok(Self {
            ps,
            pa_bits,
            ipa_bits,
            start_level,
            root_tables,
        })
    }

    /// IPA size in bits.
    pub fn ipa_bits(&self) -> u32 {
        self.ipa_bits
    }

    /// Output (physical) address size in bits.
    pub fn pa_bits(&self) -> u32 {
        self.pa_bits
    }

    /// Level of the initial lookup.
    pub fn start_level(&self) -> usize {
        self.start_level
    }

    /// Number of concatenated initial-level tables (1 if not concatenated).
    pub fn root_tables(&self) -> usize {
        self.root_tables
    }

    /// The VTCR_EL2 value for this geometry (Arm ARM D23.2, VTCR_EL2):
    /// T0SZ = 64 - IPA bits; SL0 = initial level; table walks Inner Shareable,
    /// Inner and Outer Write-Back Read/Write-Allocate (the tables are in normal
    /// cacheable RAM); TG0 = 4 KiB; PS = the PA size (at most 48 bits); VS = 8-bit
    /// VMID; HA/HD = 0 (no hardware access/dirty flag updates); bit 31 RES1.
    pub fn vtcr_el2(&self) -> u64 {
        let sl0 = match self.start_level {
            0 => VTCR_EL2::SL0::Granule4KBLevel0,
            1 => VTCR_EL2::SL0::Granule4KBLevel1,
            _ => VTCR_EL2::SL0::Granule4KBLevel2,
        };
        (VTCR_EL2::RES1::SET
            + VTCR_EL2::VS::Bits8
            + VTCR_EL2::PS.val(u64::from(self.ps))
            + VTCR_EL2::TG0::Granule4KB
            + VTCR_EL2::SH0::Inner
            + VTCR_EL2::ORGN0::NormalWBRAWA
            + VTCR_EL2::IRGN0::NormalWBRAWA
            + sl0
            + VTCR_EL2::T0SZ.val(u64::from(64 - self.ipa_bits)))
        .value
    }
}

/// The VTTBR_EL2 value for a stage 2 rooted at `root_pa` and 8-bit VMID `vmid`
/// (VTCR_EL2.VS == 0, so VMID bits `[63:56]` are RES0). CnP is 0.
///
/// `root_pa` must be aligned to the size of the (concatenated) root: Arm ARM,
/// VTTBR_EL2.BADDR, the low bits below that size are RES0.
pub fn vttbr_el2(root_pa: u64, vmid: u8) -> u64 {
    debug_assert!(is_aligned(root_pa, PAGE_SIZE));
    // BADDR is bits [47:1] of the register and holds bits [47:1] of the address.
    (VTTBR_EL2::VMID.val(u64::from(vmid)) + VTTBR_EL2::BADDR.val(root_pa >> 1)).value
}

/// Arm ARM pseudocode `AArch64.S2InvalidSL` for the 4 KiB granule without FEAT_LPA2:
/// SL0 = 0b10 (start at level 0) is invalid unless the implemented PA size is at
/// least 44 bits; SL0 = 0b11 (level 3) needs FEAT_TTST, which this builder does not
/// use, so it is treated as invalid.
pub(crate) fn s2_invalid_sl(start_level: usize, pa_max_bits: u32) -> bool {
    match start_level {
        0 => pa_max_bits < 44,
        1 | 2 => false,
        _ => true,
    }
}

/// Arm ARM pseudocode `AArch64.S2InconsistentSL` for the 4 KiB granule and 64-bit
/// descriptors: the IPA size must need at least one bit from the initial level, and
/// at most one full level (9 bits) plus 4 bits of concatenation (16 tables).
pub(crate) fn s2_inconsistent_sl(ipa_bits: u32, start_level: usize) -> bool {
    let levels_after_start = (LAST_LEVEL - start_level) as u32;
    let min_ipa_bits = levels_after_start * BITS_PER_LEVEL + PAGE_SHIFT + 1;
    let max_ipa_bits = min_ipa_bits + (BITS_PER_LEVEL - 1) + 4;
    ipa_bits < min_ipa_bits || ipa_bits > max_ipa_bits
}

/// Memory type of a stage 2 mapping (MemAttr with HCR_EL2.FWB == 0; the result is
/// combined with the guest's stage 1 type, the stronger one wins).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum S2MemType {
    /// Normal, Inner and Outer Write-Back: guest RAM.
    NormalWriteBack,
    /// Normal, Non-cacheable.
    NormalNonCacheable,
    /// Device-nGnRE: passed-through device registers.
    DeviceNGnRE,
}

/// Attributes of a stage 2 mapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct S2Attrs {
    /// Memory type.
    pub mem: S2MemType,
    /// Guest may read (`S2AP[0]`).
    pub read: bool,
    /// Guest may write (`S2AP[1]`).
    pub write: bool,
    /// Guest may execute (XN clear).
    pub exec: bool,
}

impl S2Attrs {
    /// Guest RAM: Normal Write-Back, read, write, execute.
    pub const RAM: S2Attrs = S2Attrs {
        mem: S2MemType::NormalWriteBack,
        read: true,
        write: true,
        exec: true,
    };
    /// A passed-through device: Device-nGnRE, read and write, never executable
    /// (instruction fetches from Device memory are never wanted).
    pub const DEVICE: S2Attrs = S2Attrs {
        mem: S2MemType::DeviceNGnRE,
        read: true,
        write: true,
        exec: false,
    };
}

impl Regime for Stage2Geometry {
    type Attrs = S2Attrs;

    fn input_bits(&self) -> u32 {
        self.ipa_bits
    }

    fn output_bits(&self) -> u32 {
        self.pa_bits
    }

    fn start_level(&self) -> usize {
        self.start_level
    }

    fn root_tables(&self) -> usize {
        self.root_tables
    }

    fn leaf_attrs(attrs: S2Attrs) -> u64 {
        let mem = match attrs.mem {
            S2MemType::NormalWriteBack => S2_LEAF::MEMATTR::NormalWriteBack,
            S2MemType::NormalNonCacheable => S2_LEAF::MEMATTR::NormalNonCacheable,
            S2MemType::DeviceNGnRE => S2_LEAF::MEMATTR::DeviceNGnRE,
        };
        let access = match (attrs.read, attrs.write) {
            (false, false) => S2_LEAF::S2AP::NoAccess,
            (true, false) => S2_LEAF::S2AP::ReadOnly,
            (false, true) => S2_LEAF::S2AP::WriteOnly,
            (true, true) => S2_LEAF::S2AP::ReadWrite,
        };
        let xn = if attrs.exec {
            S2_LEAF::XN::CLEAR
        } else {
            S2_LEAF::XN::SET
        };
        (mem + access + S2_LEAF::SH::InnerShareable + S2_LEAF::AF::SET + xn).value
    }

    fn decode_leaf_attrs(desc: u64) -> Option<S2Attrs> {
        let d = LocalRegisterCopy::<u64, S2_LEAF::Register>::new(desc);
        let mem = match d.read_as_enum(S2_LEAF::MEMATTR)? {
            S2_LEAF::MEMATTR::Value::NormalWriteBack => S2MemType::NormalWriteBack,
            S2_LEAF::MEMATTR::Value::NormalNonCacheable => S2MemType::NormalNonCacheable,
            S2_LEAF::MEMATTR::Value::DeviceNGnRE => S2MemType::DeviceNGnRE,
        };
        let (read, write) = match d.read_as_enum(S2_LEAF::S2AP)? {
            S2_LEAF::S2AP::Value::NoAccess => (false, false),
            S2_LEAF::S2AP::Value::ReadOnly => (true, false),
            S2_LEAF::S2AP::Value::WriteOnly => (false, true),
            S2_LEAF::S2AP::Value::ReadWrite => (true, true),
        };
        Some(S2Attrs {
            mem,
            read,
            write,
            exec: !d.is_set(S2_LEAF::XN),
        })
    }
}
