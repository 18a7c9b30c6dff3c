//! Cache topology as a guest sees it: CLIDR_EL1, CCSIDR_EL1 (both formats),
//! CCSIDR2_EL1, CSSELR_EL1 and CTR_EL0.
//!
//! Everything here is plain data: raw register values in, a [`CacheTopology`]
//! out, and register values encoded from it on every trapped read. The
//! policies (`Virtual`, `Host`, `Explicit`) and why they look the way they do
//! are described in the module documentation of [`crate::sysreg`].

use aarch64_cpu::registers::{CCSIDR_EL1, CLIDR_EL1, CSSELR_EL1};
use alloc::vec::Vec;
use core::fmt;
use tock_registers::register_bitfields;

register_bitfields! {u64,
    /// Cache Type Register (Arm ARM D23.2, CTR_EL0); not provided by aarch64-cpu.
    pub CTR_EL0 [
        /// Log2 of the number of words of the smallest allocation-tag cache line (FEAT_MTE2).
        TminLine OFFSET(32) NUMBITS(6) [],
        /// RES1.
        Res1 OFFSET(31) NUMBITS(1) [],
        /// Instruction cache invalidation to the PoU is not required for
        /// instruction-to-data coherence.
        DIC OFFSET(29) NUMBITS(1) [],
        /// Data cache clean to the PoU is not required for instruction-to-data coherence.
        IDC OFFSET(28) NUMBITS(1) [],
        /// Cache writeback granule, log2 words; 0 means "not provided, assume 2 KiB".
        CWG OFFSET(24) NUMBITS(4) [],
        /// Exclusives reservation granule, log2 words; 0 means "not provided, assume 2 KiB".
        ERG OFFSET(20) NUMBITS(4) [],
        /// Log2 of the number of words in the smallest data/unified cache line.
        DminLine OFFSET(16) NUMBITS(4) [],
        /// Level 1 instruction cache policy.
        L1Ip OFFSET(14) NUMBITS(2) [
            VPIPT = 0b00,
            AIVIVT = 0b01,
            VIPT = 0b10,
            PIPT = 0b11
        ],
        /// Log2 of the number of words in the smallest instruction cache line.
        IminLine OFFSET(0) NUMBITS(4) []
    ],
    /// Current Cache Size ID Register 2 (FEAT_CCIDX); not provided by aarch64-cpu.
    pub CCSIDR2_EL1 [
        /// Number of sets minus one.
        NumSets OFFSET(0) NUMBITS(24) []
    ]
}

/// The value a guest reads from CCSIDR_EL1 (and CCSIDR2_EL1) when CSSELR_EL1
/// selects a cache that does not exist. Arm ARM D23.2 (CCSIDR_EL1): "If
/// CSSELR_EL1.{Level, InD} selects a cache that is not implemented, the value
/// of CCSIDR_EL1 is UNKNOWN". We answer a fixed zero (16-byte line, one way,
/// one set) so the answer never depends on the physical CPU, the hardware or
/// another VM.
pub const CCSIDR_NONEXISTENT: u64 = 0;

/// The `Virtual` policy's caches ([`CacheTopology::virtual_view`]): L1
/// instruction and data caches of 32 KiB, 4-way; a unified L2 of 512 KiB, 8-way.
pub const VIRTUAL_L1_BYTES: u64 = 32 << 10;
pub const VIRTUAL_L1_WAYS: u32 = 4;
pub const VIRTUAL_L2_BYTES: u64 = 512 << 10;
pub const VIRTUAL_L2_WAYS: u32 = 8;

/// Number of CSSELR_EL1.{Level, InD} combinations: 7 levels x {data, instruction}.
pub const CSSELR_SLOTS: usize = 14;

/// Bits of CSSELR_EL1 that hold state for a guest without FEAT_MTE2 (Level, InD).
/// TnD is RES0 without FEAT_MTE2, which the CPU model always hides for now.
pub(crate) const CSSELR_WRITABLE: u64 = CSSELR_EL1::Level.mask << CSSELR_EL1::Level.shift
    | CSSELR_EL1::InD.mask << CSSELR_EL1::InD.shift;

/// CLIDR_EL1 `Ctype<n>`: what kind of cache exists at one level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ctype {
    None,
    Instruction,
    Data,
    Separate,
    Unified,
}

impl Ctype {
    fn from_bits(bits: u64) -> Option<Self> {
        Some(match bits {
            0b000 => Ctype::None,
            0b001 => Ctype::Instruction,
            0b010 => Ctype::Data,
            0b011 => Ctype::Separate,
            0b100 => Ctype::Unified,
            _ => return None,
        })
    }
    const fn bits(self) -> u64 {
        match self {
            Ctype::None => 0b000,
            Ctype::Instruction => 0b001,
            Ctype::Data => 0b010,
            Ctype::Separate => 0b011,
            Ctype::Unified => 0b100,
        }
    }
    /// Whether CSSELR.InD = `instruction` selects a cache at a level of this type.
    pub const fn has(self, instruction: bool) -> bool {
        match self {
            Ctype::None => false,
            Ctype::Instruction => instruction,
            Ctype::Data | Ctype::Unified => !instruction,
            Ctype::Separate => true,
        }
    }
}

/// A decoded CLIDR_EL1 (ICB and Ttype are not modelled: the guest view has them 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Clidr {
    /// Ctype1..Ctype7.
    pub ctype: [Ctype; 7],
    pub louu: u8,
    pub loc: u8,
    pub louis: u8,
}

/// CLIDR_EL1 bits that are RES0 in the guest view (Arm ARM D23.2: bits \[63:47\]),
/// plus ICB and `Ttype<n>`, which a guest without FEAT_MTE2 must see as 0.
const CLIDR_IGNORED: u64 = !((1u64 << 30) - 1);

impl Clidr {
    /// Decodes CLIDR_EL1. Reserved Ctype encodings are an error.
    pub fn decode(raw: u64) -> Result<Self, CacheError> {
        let fields = [
            CLIDR_EL1::Ctype1,
            CLIDR_EL1::Ctype2,
            CLIDR_EL1::Ctype3,
            CLIDR_EL1::Ctype4,
            CLIDR_EL1::Ctype5,
            CLIDR_EL1::Ctype6,
            CLIDR_EL1::Ctype7,
        ];
        let mut ctype = [Ctype::None; 7];
        for (level, field) in fields.iter().enumerate() {
            ctype[level] = Ctype::from_bits(field.read(raw)).ok_or(CacheError::ReservedCtype {
                level: level as u8 + 1,
            })?;
        }
        Ok(Clidr {
            ctype,
            louu: CLIDR_EL1::LoUU.read(raw) as u8,
            loc: CLIDR_EL1::LoC.read(raw) as u8,
            louis: CLIDR_EL1::LoUIS.read(raw) as u8,
        })
    }

    /// Encodes the guest's CLIDR_EL1 (ICB = 0, no tag caches).
    pub fn encode(&self) -> u64 {
        let mut v = (CLIDR_EL1::LoUU.val(self.louu as u64)
            + CLIDR_EL1::LoC.val(self.loc as u64)
            + CLIDR_EL1::LoUIS.val(self.louis as u64))
        .value;
        for (level, t) in self.ctype.iter().enumerate() {
            v |= t.bits() << (3 * level);
        }
        v
    }

    /// Number of cache levels: the levels before the first Ctype of "no cache"
    /// (Arm ARM D23.2 `CLIDR_EL1.Ctype<n>`: once a 0b000 is seen, further-out
    /// levels are to be ignored).
    pub fn levels(&self) -> u8 {
        self.ctype.iter().take_while(|t| **t != Ctype::None).count() as u8
    }
}

/// A decoded CSSELR_EL1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheSelect {
    /// Cache level, 1-based (CSSELR_EL1.Level + 1); 8 means the reserved 0b111.
    pub level: u8,
    /// InD: the instruction cache rather than the data/unified cache.
    pub instruction: bool,
    /// TnD: the separate allocation-tag cache (FEAT_MTE2).
    pub tag: bool,
}

impl CacheSelect {
    pub fn decode(csselr: u64) -> Self {
        CacheSelect {
            level: CSSELR_EL1::Level.read(csselr) as u8 + 1,
            instruction: CSSELR_EL1::InD.read(csselr) != 0,
            tag: CSSELR_EL1::TnD.read(csselr) != 0,
        }
    }
    pub fn encode(&self) -> u64 {
        (CSSELR_EL1::Level.val(self.level.saturating_sub(1) as u64)
            + CSSELR_EL1::InD.val(self.instruction as u64)
            + CSSELR_EL1::TnD.val(self.tag as u64))
        .value
    }
    /// Index into a 14-entry table ordered like CSSELR values (Level << 1 | InD),
    /// or `None` for the reserved level 8 and for tag caches.
    pub fn slot(&self) -> Option<usize> {
        if self.level == 0 || self.level > 7 || self.tag {
            return None;
        }
        Some((self.level as usize - 1) * 2 + self.instruction as usize)
    }
}

/// The geometry of one cache as CCSIDR_EL1 (and CCSIDR2_EL1) describe it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CacheGeometry {
    /// log2 of the line size in bytes (CCSIDR_EL1.LineSize + 4).
    pub line_log2: u8,
    /// Associativity (CCSIDR_EL1.Associativity + 1).
    pub ways: u32,
    /// Number of sets (CCSIDR_EL1.NumSets + 1).
    pub sets: u32,
}

impl CacheGeometry {
    pub const fn line_bytes(&self) -> u64 {
        1 << self.line_log2
    }
    pub const fn size_bytes(&self) -> u64 {
        self.line_bytes() * self.ways as u64 * self.sets as u64
    }

    /// Decodes CCSIDR_EL1 in the format the CPU uses: 64-bit with FEAT_CCIDX
    /// (ID_AA64MMFR2_EL1.CCIDX = 1), else the 32-bit format. Arm ARM D23.2.
    /// In the 32-bit format, bits \[31:28\] (Armv8.0 WT/WB/RA/WA) are ignored.
    pub fn from_ccsidr(raw: u64, ccidx: bool) -> Self {
        let (ways, sets) = if ccidx {
            (
                CCSIDR_EL1::AssociativityWithCCIDX.read(raw),
                CCSIDR_EL1::NumSetsWithCCIDX.read(raw),
            )
        } else {
            (
                CCSIDR_EL1::AssociativityWithoutCCIDX.read(raw),
                CCSIDR_EL1::NumSetsWithoutCCIDX.read(raw),
            )
        };
        CacheGeometry {
            line_log2: CCSIDR_EL1::LineSize.read(raw) as u8 + 4,
            ways: ways as u32 + 1,
            sets: sets as u32 + 1,
        }
    }

    /// Encodes CCSIDR_EL1 for a guest whose ID_AA64MMFR2_EL1.CCIDX is `ccidx`.
    /// Values that do not fit the format (only possible when a CCIDX host's
    /// geometry is shown to a guest whose CCIDX was lowered to 0) saturate:
    /// the geometry only has to be plausible and stable, because set/way
    /// operations are trapped (see `setway`).
    pub fn to_ccsidr(&self, ccidx: bool) -> u64 {
        let line = self.line_log2.clamp(4, 11) as u64 - 4;
        let (assoc_f, sets_f) = if ccidx {
            (
                CCSIDR_EL1::AssociativityWithCCIDX,
                CCSIDR_EL1::NumSetsWithCCIDX,
            )
        } else {
            (
                CCSIDR_EL1::AssociativityWithoutCCIDX,
                CCSIDR_EL1::NumSetsWithoutCCIDX,
            )
        };
        let ways = (self.ways.max(1) as u64 - 1).min(assoc_f.mask);
        let sets = (self.sets.max(1) as u64 - 1).min(sets_f.mask);
        (CCSIDR_EL1::LineSize.val(line) + assoc_f.val(ways) + sets_f.val(sets)).value
    }

    /// Encodes CCSIDR2_EL1 (FEAT_CCIDX only).
    pub fn to_ccsidr2(&self) -> u64 {
        let sets = (self.sets.max(1) as u64 - 1).min(CCSIDR2_EL1::NumSets.mask);
        CCSIDR2_EL1::NumSets.val(sets).value
    }
}

/// The raw cache identification registers of one physical core, as the
/// platform code reads them at boot (CCSIDR_EL1 per CSSELR value 0..13).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreCaches {
    pub clidr_el1: u64,
    /// CCSIDR_EL1 for CSSELR_EL1 = 0..13 (Level << 1 | InD); entries for
    /// caches CLIDR does not list are ignored.
    pub ccsidr_el1: [u64; CSSELR_SLOTS],
    /// ID_AA64MMFR2_EL1.CCIDX != 0 on this core: the CCSIDR format.
    pub ccidx: bool,
}

/// One VM's cache topology: CLIDR plus the geometry of every cache it lists.
/// Identical for every vCPU of the VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheTopology {
    clidr: Clidr,
    /// Indexed by CSSELR slot (Level << 1 | InD).
    geometry: [Option<CacheGeometry>; CSSELR_SLOTS],
}

/// The per-VM cache topology policy from the config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CachePolicy {
    /// One fixed topology from CTR_EL0 alone: split L1, unified L2 (`virtual_view`).
    Virtual,
    /// The common topology of the cores the VM may run on.
    Host,
    /// Values given in the config, validated.
    Explicit(ExplicitCaches),
}

/// An explicit topology: CLIDR_EL1 and one CCSIDR_EL1 per cache it lists.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExplicitCaches {
    pub clidr_el1: u64,
    /// (CSSELR_EL1 value, CCSIDR_EL1 value) pairs.
    pub ccsidr_el1: Vec<(u64, u64)>,
    /// The CCSIDR values are in the 64-bit FEAT_CCIDX format.
    pub ccidx: bool,
}

/// Why a topology was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheError {
    /// `CLIDR_EL1.Ctype<level>` holds a reserved encoding.
    ReservedCtype { level: u8 },
    /// A cache is listed above a level that has none.
    CacheAboveGap { level: u8 },
    /// CLIDR_EL1 has bits set that the guest view must keep 0 (ICB, Ttype, RES0).
    ReservedClidrBits { bits: u64 },
    /// LoC, LoUU or LoUIS names a level beyond the last cache, or LoUU/LoUIS exceed LoC.
    BadLevelField {
        field: &'static str,
        value: u8,
        levels: u8,
    },
    /// CTR_EL0.IDC = 0 (clean to PoU required) but CLIDR says no level needs cleaning.
    IdcContradiction,
    /// A cache listed in CLIDR has no CCSIDR value.
    MissingCcsidr { csselr: u64 },
    /// A CCSIDR value is given for a cache that CLIDR does not list (or a
    /// reserved/tag CSSELR), or twice.
    UnexpectedCcsidr { csselr: u64 },
    /// A cache line is smaller than the minimum CTR_EL0 promises.
    LineBelowCtrMinimum {
        csselr: u64,
        line_bytes: u64,
        min_bytes: u64,
    },
    /// A cache of 4 GiB or more: the guest's device tree describes each cache
    /// in a 32-bit `cache-size` property.
    TooLarge { csselr: u64, bytes: u64 },
    /// `Host` policy over cores whose CLIDR differ in the kind of cache at a level.
    HostLevelsDiffer { level: u8 },
    /// `Host` policy over an empty set of cores.
    NoCores,
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CacheError::ReservedCtype { level } => {
                write!(f, "CLIDR_EL1.Ctype{level} uses a reserved encoding")
            }
            CacheError::CacheAboveGap { level } => write!(
                f,
                "CLIDR_EL1.Ctype{level} lists a cache above a level with no cache"
            ),
            CacheError::ReservedClidrBits { bits } => {
                write!(f, "CLIDR_EL1 bits {bits:#x} must be 0 (ICB, Ttype, RES0)")
            }
            CacheError::BadLevelField {
                field,
                value,
                levels,
            } => write!(
                f,
                "CLIDR_EL1.{field} = {value} is inconsistent with {levels} cache level(s)"
            ),
            CacheError::IdcContradiction => write!(
                f,
                "CLIDR_EL1 says no cleaning to the PoU is needed but CTR_EL0.IDC is 0"
            ),
            CacheError::MissingCcsidr { csselr } => {
                write!(f, "no CCSIDR_EL1 value for CSSELR_EL1 = {csselr:#x}")
            }
            CacheError::UnexpectedCcsidr { csselr } => write!(
                f,
                "CCSIDR_EL1 value for CSSELR_EL1 = {csselr:#x}, which selects no cache in CLIDR_EL1 (or is given twice)"
            ),
            CacheError::LineBelowCtrMinimum {
                csselr,
                line_bytes,
                min_bytes,
            } => write!(
                f,
                "cache CSSELR_EL1 = {csselr:#x} has {line_bytes}-byte lines, below the CTR_EL0 minimum of {min_bytes}"
            ),
            CacheError::TooLarge { csselr, bytes } => write!(
                f,
                "cache CSSELR_EL1 = {csselr:#x} has {bytes} bytes, more than a device tree can describe (4 GiB)"
            ),
            CacheError::HostLevelsDiffer { level } => write!(
                f,
                "cores differ in the kind of cache at level {level}; use the virtual or an explicit topology"
            ),
            CacheError::NoCores => write!(f, "no cores given for the host cache topology"),
        }
    }
}

/// log2 of the smallest line in bytes CTR_EL0 promises, for the I-cache or
/// the data/unified caches: CTR_EL0.{I,D}minLine is log2(words), so +2.
pub fn ctr_min_line_log2(ctr: u64, instruction: bool) -> u8 {
    let words_log2 = if instruction {
        CTR_EL0::IminLine.read(ctr)
    } else {
        CTR_EL0::DminLine.read(ctr)
    };
    words_log2 as u8 + 2
}

impl CacheTopology {
    /// The guest's CLIDR_EL1.
    pub fn clidr_el1(&self) -> u64 {
        self.clidr.encode()
    }

    pub fn clidr(&self) -> &Clidr {
        &self.clidr
    }

    /// The cache CSSELR_EL1 selects, if it exists.
    pub fn geometry(&self, csselr: u64) -> Option<CacheGeometry> {
        CacheSelect::decode(csselr)
            .slot()
            .and_then(|slot| self.geometry[slot])
    }

    /// The guest's CCSIDR_EL1 for this CSSELR_EL1 value, in the format the
    /// guest's ID_AA64MMFR2_EL1.CCIDX announces. [`CCSIDR_NONEXISTENT`] when
    /// the selection names no cache.
    pub fn ccsidr_el1(&self, csselr: u64, ccidx: bool) -> u64 {
        self.geometry(csselr)
            .map_or(CCSIDR_NONEXISTENT, |g| g.to_ccsidr(ccidx))
    }

    /// The guest's CCSIDR2_EL1 (only meaningful with FEAT_CCIDX).
    pub fn ccsidr2_el1(&self, csselr: u64) -> u64 {
        self.geometry(csselr)
            .map_or(CCSIDR_NONEXISTENT, |g| g.to_ccsidr2())
    }

    /// Builds the topology for `policy`. `ctr` is the VM's CTR_EL0; `cores`
    /// are the cores the VM may run on (used by `Host` only).
    pub fn for_policy(
        policy: &CachePolicy,
        ctr: u64,
        cores: &[CoreCaches],
    ) -> Result<Self, CacheError> {
        match policy {
            CachePolicy::Virtual => Ok(Self::virtual_view(ctr)),
            CachePolicy::Host => Self::host_view(cores, ctr),
            CachePolicy::Explicit(e) => Self::explicit(e, ctr),
        }
    }

    /// The `Virtual` policy: one fixed topology, the same on every core,
    /// from nothing but CTR_EL0 — the shape almost every Arm core has (and
    /// QEMU's CPUs): separate L1 instruction and data caches of
    /// [`VIRTUAL_L1_BYTES`], a unified L2 of [`VIRTUAL_L2_BYTES`] that is the
    /// point of coherence (LoC = 2), and LoUU = LoUIS = 0 where CTR_EL0.IDC
    /// says no clean to the point of unification is needed (else 1: the L1
    /// data cache must be cleaned).
    ///
    /// Why this shape and not KVM/arm64's (Linux 6.3+, sys_regs.c
    /// `reset_clidr`: a single cache of one set and one way, unified at L1
    /// when IDC = DIC = 1): a Linux that finds no cache description in its
    /// device tree counts two L1 leaves for the CPU (Linux 6.1's
    /// `of_count_cache_leaves` assumes split L1 caches, and newer kernels give
    /// up on the device tree) while CLIDR_EL1 lists one, so it prints "cacheinfo:
    /// Unable to detect cache hierarchy" and shows no caches at all. Split L1
    /// caches plus an L2, described in the guest's device tree as well
    /// (`vm::guest_fdt`), are counted the same way by every kernel. The sizes
    /// are fixed and plausible (sysfs and `lscpu` show them in KiB; a one-line
    /// cache would read as "0K"), never the hardware's. Lines are CTR_EL0's
    /// minimum for each kind (the coherency line size Linux derives from them
    /// is then exact). A full set/way walk is sizes / line operations (about
    /// 9,000 with 64-byte lines); each traps, and only the first one flushes
    /// (see `setway`): guests rarely walk caches at all (Linux never does).
    pub fn virtual_view(ctr: u64) -> Self {
        let idc = CTR_EL0::IDC.read(ctr) != 0;
        let mut ctype = [Ctype::None; 7];
        ctype[0] = Ctype::Separate;
        ctype[1] = Ctype::Unified;
        let lou = if idc { 0 } else { 1 };
        let clidr = Clidr {
            ctype,
            louu: lou,
            loc: 2,
            louis: lou,
        };
        let cache = |bytes: u64, ways: u32, instruction: bool| {
            let line_log2 = ctr_min_line_log2(ctr, instruction).max(4);
            CacheGeometry {
                line_log2,
                ways,
                sets: (bytes >> line_log2) as u32 / ways,
            }
        };
        let mut geometry = [None; CSSELR_SLOTS];
        geometry[0] = Some(cache(VIRTUAL_L1_BYTES, VIRTUAL_L1_WAYS, false));
        geometry[1] = Some(cache(VIRTUAL_L1_BYTES, VIRTUAL_L1_WAYS, true));
        geometry[2] = Some(cache(VIRTUAL_L2_BYTES, VIRTUAL_L2_WAYS, false));
        CacheTopology { clidr, geometry }
    }

    /// Decodes one core's registers (no validation against CTR).
    pub fn from_core(core: &CoreCaches) -> Result<Self, CacheError> {
        let clidr = Clidr::decode(core.clidr_el1)?;
        let mut geometry = [None; CSSELR_SLOTS];
        for level in 0..clidr.levels() as usize {
            for instruction in [false, true] {
                if clidr.ctype[level].has(instruction) {
                    let slot = level * 2 + instruction as usize;
                    geometry[slot] = Some(CacheGeometry::from_ccsidr(
                        core.ccsidr_el1[slot],
                        core.ccidx,
                    ));
                }
            }
        }
        // Levels above a gap are ignored (Arm ARM D23.2), so drop them.
        let mut clidr = clidr;
        let levels = clidr.levels() as usize;
        for t in clidr.ctype.iter_mut().skip(levels) {
            *t = Ctype::None;
        }
        Ok(CacheTopology { clidr, geometry })
    }

    /// The `Host` policy: the common topology of `cores`.
    ///
    /// - The kind of cache at every level must agree (else there is no
    ///   honest common view and the config must pick `virtual` or `explicit`).
    /// - LoC, LoUU, LoUIS: the largest value of any core. Cleaning to a
    ///   further level is a superset of cleaning to a nearer one, so a guest
    ///   that walks levels by set/way does enough work for every core.
    /// - Per cache, one geometry for every vCPU: the smallest line size of any
    ///   core (a stride that skips no line on any core, and never below the
    ///   CTR_EL0 minimum), the largest associativity, and enough sets that
    ///   sets x ways x line equals the largest cache of any core (rounded
    ///   up). A set/way loop over that geometry covers every line of every
    ///   core's cache, and the size the guest sees (e.g. in Linux's
    ///   /sys/devices/system/cpu/cpu*/cache) is the largest real one. Since
    ///   set/way operations are trapped and turned into a clean+invalidate
    ///   by VA of all VM memory (see `setway`), the geometry only has to be
    ///   consistent and plausible, never exact.
    pub fn host_view(cores: &[CoreCaches], ctr: u64) -> Result<Self, CacheError> {
        let mut decoded = cores.iter().map(Self::from_core);
        let mut acc = decoded.next().ok_or(CacheError::NoCores)??;
        for other in decoded {
            let other = other?;
            for level in 0..7 {
                if acc.clidr.ctype[level] != other.clidr.ctype[level] {
                    return Err(CacheError::HostLevelsDiffer {
                        level: level as u8 + 1,
                    });
                }
            }
            acc.clidr.loc = acc.clidr.loc.max(other.clidr.loc);
            acc.clidr.louu = acc.clidr.louu.max(other.clidr.louu);
            acc.clidr.louis = acc.clidr.louis.max(other.clidr.louis);
            for slot in 0..CSSELR_SLOTS {
                if let (Some(a), Some(b)) = (acc.geometry[slot], other.geometry[slot]) {
                    acc.geometry[slot] = Some(merge_geometry(a, b));
                }
            }
        }
        acc.validate(ctr, false)?;
        Ok(acc)
    }

    /// The `Explicit` policy: the config's CLIDR/CCSIDR values, validated.
    pub fn explicit(e: &ExplicitCaches, ctr: u64) -> Result<Self, CacheError> {
        let reserved = e.clidr_el1 & CLIDR_IGNORED;
        if reserved != 0 {
            return Err(CacheError::ReservedClidrBits { bits: reserved });
        }
        let clidr = Clidr::decode(e.clidr_el1)?;
        let levels = clidr.levels();
        if let Some(level) = clidr.ctype[levels as usize..]
            .iter()
            .position(|t| *t != Ctype::None)
        {
            return Err(CacheError::CacheAboveGap {
                level: levels + level as u8 + 1,
            });
        }
        let mut geometry = [None; CSSELR_SLOTS];
        for &(csselr, ccsidr) in &e.ccsidr_el1 {
            let sel = CacheSelect::decode(csselr);
            let slot = sel
                .slot()
                .filter(|_| csselr & !CSSELR_WRITABLE == 0)
                .filter(|s| clidr.ctype[s / 2].has(sel.instruction))
                .filter(|s| geometry[*s].is_none())
                .ok_or(CacheError::UnexpectedCcsidr { csselr })?;
            geometry[slot] = Some(CacheGeometry::from_ccsidr(ccsidr, e.ccidx));
        }
        let topo = CacheTopology { clidr, geometry };
        topo.validate(ctr, true)?;
        Ok(topo)
    }

    /// Checks the rules a topology shown to a guest must satisfy.
    /// `check_levels` adds the sanity rules on LoC/LoUU/LoUIS for values from
    /// a config; hardware values are taken as the hardware reports them.
    fn validate(&self, ctr: u64, check_levels: bool) -> Result<(), CacheError> {
        let levels = self.clidr.levels();
        let level_fields = if check_levels { 3 } else { 0 };
        for (field, value) in [
            ("LoC", self.clidr.loc),
            ("LoUU", self.clidr.louu),
            ("LoUIS", self.clidr.louis),
        ]
        .into_iter()
        .take(level_fields)
        {
            // A level field names the first level that need not be maintained
            // (Arm ARM D23.2 CLIDR_EL1): it cannot exceed the number of levels,
            // and the points of unification lie no further out than the point
            // of coherence.
            let beyond_loc = field != "LoC" && value > self.clidr.loc;
            if value > levels || beyond_loc {
                return Err(CacheError::BadLevelField {
                    field,
                    value,
                    levels,
                });
            }
        }
        // Same rule as KVM's set_clidr: CTR_EL0.IDC = 0 promises a clean to the
        // PoU is needed, so CLIDR must name a level to clean.
        let no_clean_needed =
            self.clidr.loc == 0 || (self.clidr.louu == 0 && self.clidr.louis == 0);
        if CTR_EL0::IDC.read(ctr) == 0 && no_clean_needed {
            return Err(CacheError::IdcContradiction);
        }
        for (slot, geometry) in self.geometry.iter().enumerate() {
            let csselr = slot as u64;
            let instruction = slot % 2 == 1;
            let listed =
                (slot / 2) < levels as usize && self.clidr.ctype[slot / 2].has(instruction);
            match (listed, geometry) {
                (true, None) => return Err(CacheError::MissingCcsidr { csselr }),
                (false, Some(_)) => return Err(CacheError::UnexpectedCcsidr { csselr }),
                (true, Some(g)) => {
                    let min = ctr_min_line_log2(ctr, instruction);
                    if g.line_log2 < min {
                        return Err(CacheError::LineBelowCtrMinimum {
                            csselr,
                            line_bytes: g.line_bytes(),
                            min_bytes: 1 << min,
                        });
                    }
                    if g.size_bytes() > u64::from(u32::MAX) {
                        return Err(CacheError::TooLarge {
                            csselr,
                            bytes: g.size_bytes(),
                        });
                    }
                }
                (false, None) => {}
            }
        }
        Ok(())
    }
}

/// One geometry covering both caches (see [`CacheTopology::host_view`]).
fn merge_geometry(a: CacheGeometry, b: CacheGeometry) -> CacheGeometry {
    let line_log2 = a.line_log2.min(b.line_log2);
    let ways = a.ways.max(b.ways);
    let size = a.size_bytes().max(b.size_bytes());
    let per_set = ways as u64 * (1u64 << line_log2);
    let sets = size.div_ceil(per_set).min(u32::MAX as u64) as u32;
    CacheGeometry {
        line_log2,
        ways,
        sets,
    }
}

/// The CTR_EL0 a core effectively has: Arm ARM D23.2 CTR_EL0.IDC: with
/// IDC = 0, a clean to the PoU is still not required when CLIDR_EL1.LoC = 0 or
/// LoUIS = LoUU = 0, so such a core behaves as IDC = 1. Linux does the same
/// (`read_cpuid_effective_cachetype`) before sanitizing, which is why KVM's
/// CTR_EL0 (and so its virtual CLIDR) has IDC set on such parts.
pub fn effective_ctr(ctr: u64, clidr: u64) -> u64 {
    let loc = CLIDR_EL1::LoC.read(clidr);
    let lou = CLIDR_EL1::LoUU.read(clidr) | CLIDR_EL1::LoUIS.read(clidr);
    if CTR_EL0::IDC.read(ctr) == 0 && (loc == 0 || lou == 0) {
        ctr | CTR_EL0::IDC::SET.value
    } else {
        ctr
    }
}

/// The system-wide CTR_EL0, field by field, as Linux's cpufeature.c
/// (`ftr_ctr`) derives it: IminLine/DminLine the smallest (a stride valid on
/// every core), CWG/ERG the largest unless any core says 0 ("not provided",
/// which means the architectural maximum), IDC/DIC only if every core has
/// them, L1Ip the common value if all agree on VIPT or PIPT, else VIPT (a
/// guest treating a PIPT cache as VIPT only over-invalidates; the VPIPT and
/// AIVIVT encodings are reserved in current Arm ARM versions). RES1 bit 31 is
/// set; TminLine is 0 because the CPU model hides MTE.
pub fn sanitize_ctr(ctrs: &[u64]) -> u64 {
    let Some((&first, rest)) = ctrs.split_first() else {
        return 0;
    };
    let mut v = first;
    let field = |f: tock_registers::fields::Field<u64, CTR_EL0::Register>, x: u64| f.read(x);
    for &c in rest {
        let min = |f| field(f, v).min(field(f, c));
        let higher_or_zero = |f| {
            let (a, b) = (field(f, v), field(f, c));
            if a == 0 || b == 0 { 0 } else { a.max(b) }
        };
        let l1ip = if field(CTR_EL0::L1Ip, v) == field(CTR_EL0::L1Ip, c) {
            field(CTR_EL0::L1Ip, v)
        } else {
            L1IP_VIPT
        };
        v = (CTR_EL0::IminLine.val(min(CTR_EL0::IminLine))
            + CTR_EL0::DminLine.val(min(CTR_EL0::DminLine))
            + CTR_EL0::IDC.val(min(CTR_EL0::IDC))
            + CTR_EL0::DIC.val(min(CTR_EL0::DIC))
            + CTR_EL0::CWG.val(higher_or_zero(CTR_EL0::CWG))
            + CTR_EL0::ERG.val(higher_or_zero(CTR_EL0::ERG))
            + CTR_EL0::L1Ip.val(l1ip))
        .value;
    }
    let l1ip = match field(CTR_EL0::L1Ip, v) {
        L1IP_PIPT => L1IP_PIPT,
        _ => L1IP_VIPT,
    };
    (CTR_EL0::IminLine.val(field(CTR_EL0::IminLine, v))
        + CTR_EL0::DminLine.val(field(CTR_EL0::DminLine, v))
        + CTR_EL0::IDC.val(field(CTR_EL0::IDC, v))
        + CTR_EL0::DIC.val(field(CTR_EL0::DIC, v))
        + CTR_EL0::CWG.val(field(CTR_EL0::CWG, v))
        + CTR_EL0::ERG.val(field(CTR_EL0::ERG, v))
        + CTR_EL0::L1Ip.val(l1ip)
        + CTR_EL0::Res1::SET)
        .value
}

/// CTR_EL0.L1Ip encodings (unshifted field values).
const L1IP_VIPT: u64 = 0b10;
const L1IP_PIPT: u64 = 0b11;

/// Which HCR_EL2 bit traps the cache identification registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheTrap {
    /// HCR_EL2.TID4 (FEAT_EVT): traps CCSIDR_EL1, CCSIDR2_EL1, CLIDR_EL1 and
    /// CSSELR_EL1 but not CTR_EL0, which the guest then reads from hardware.
    Tid4,
    /// HCR_EL2.TID2: traps the same registers and CTR_EL0 too, so CTR_EL0
    /// reads must be answered (the fast path answers them from the model).
    Tid2,
}

/// Chooses the trap: TID4 where FEAT_EVT exists (ID_AA64MMFR2_EL1.EVT >= 1)
/// and the hardware CTR_EL0 of every core the VM may run on already equals
/// the VM's CTR_EL0 (TID4 leaves CTR_EL0 untrapped, so a big.LITTLE part with
/// differing CTR_EL0 values needs TID2 even with FEAT_EVT); TID2 otherwise.
pub fn cache_trap(evt: bool, hw_ctr_matches_model: bool) -> CacheTrap {
    if evt && hw_ctr_matches_model {
        CacheTrap::Tid4
    } else {
        CacheTrap::Tid2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// Apple M2 values from ../shared/fixtures/cache-topology/README.md
    /// (32-bit CCSIDR format). CSSELR 0 = L1D, 1 = L1I, 2 = L2.
    const M2_A: [u64; 3] = [0x700F_E03A, 0x203F_E01A, 0x70FF_E07B];
    const M2_B: [u64; 3] = [0x701F_E03A, 0x203F_E02A, 0x73FF_E07B];
    /// CLIDR for that hierarchy (the fixture gives none): L1 separate, L2
    /// unified, LoC = 2, LoUU = LoUIS = 1.
    const M2_CLIDR: u64 = (0b011) | (0b100 << 3) | (2 << 24) | (1 << 27) | (1 << 21);
    /// A CTR with 64-byte minimum lines, IDC = DIC = 0, VIPT.
    const CTR_64B: u64 = 0x8444_c004;

    fn m2_core(v: [u64; 3]) -> CoreCaches {
        let mut ccsidr_el1 = [0; CSSELR_SLOTS];
        ccsidr_el1[..3].copy_from_slice(&v);
        CoreCaches {
            clidr_el1: M2_CLIDR,
            ccsidr_el1,
            ccidx: false,
        }
    }

    fn g(v: u64) -> (u32, u32, u64, u64) {
        let g = CacheGeometry::from_ccsidr(v, false);
        (g.sets, g.ways, g.line_bytes(), g.size_bytes())
    }

    #[test]
    fn decodes_the_m2_fixture_table() {
        // The "Decoded" table of the fixture README.
        assert_eq!(g(M2_A[0]), (128, 8, 64, 64 << 10));
        assert_eq!(g(M2_B[0]), (256, 8, 64, 128 << 10));
        assert_eq!(g(M2_A[1]), (512, 4, 64, 128 << 10));
        assert_eq!(g(M2_B[1]), (512, 6, 64, 192 << 10));
        assert_eq!(g(M2_A[2]), (2048, 16, 128, 4 << 20));
        assert_eq!(g(M2_B[2]), (8192, 16, 128, 16 << 20));
    }

    #[test]
    fn ccsidr_round_trips_in_both_formats() {
        for raw in M2_A.iter().chain(M2_B.iter()) {
            let geo = CacheGeometry::from_ccsidr(*raw, false);
            // Bits [31:28] (Armv8.0 WT/WB/RA/WA) are not reproduced.
            assert_eq!(geo.to_ccsidr(false), raw & 0x0FFF_FFFF);
            let wide = geo.to_ccsidr(true);
            assert_eq!(CacheGeometry::from_ccsidr(wide, true), geo);
            assert_eq!(geo.to_ccsidr2(), geo.sets as u64 - 1);
        }
        // A FEAT_CCIDX geometry too large for the 32-bit format saturates.
        let big = CacheGeometry {
            line_log2: 6,
            ways: 2048,
            sets: 1 << 20,
        };
        let wide = big.to_ccsidr(true);
        assert_eq!(CacheGeometry::from_ccsidr(wide, true), big);
        let narrow = CacheGeometry::from_ccsidr(big.to_ccsidr(false), false);
        assert_eq!((narrow.ways, narrow.sets), (1024, 32768));
    }

    #[test]
    fn clidr_and_csselr_round_trip() {
        let c = Clidr::decode(M2_CLIDR).unwrap();
        assert_eq!(c.ctype[0], Ctype::Separate);
        assert_eq!(c.ctype[1], Ctype::Unified);
        assert_eq!((c.loc, c.louu, c.louis, c.levels()), (2, 1, 1, 2));
        assert_eq!(c.encode(), M2_CLIDR);
        // QEMU 10.0.2 cortex-a57 CLIDR_EL1 (target/arm/cpu64.c), read back from the CPU.
        assert_eq!(Clidr::decode(0x0a20_0023).unwrap().encode(), 0x0a20_0023);
        assert_eq!(
            Clidr::decode(0b101),
            Err(CacheError::ReservedCtype { level: 1 })
        );
        let sel = CacheSelect::decode(0b0011);
        assert_eq!((sel.level, sel.instruction, sel.tag), (2, true, false));
        assert_eq!(sel.encode(), 0b0011);
        assert_eq!(sel.slot(), Some(3));
        assert_eq!(CacheSelect::decode(0b1110).slot(), None); // Level 0b111 reserved
        assert_eq!(CacheSelect::decode(0b1_0000).slot(), None); // TnD
    }

    #[test]
    fn host_policy_gives_one_view_spanning_both_m2_clusters() {
        let a = m2_core(M2_A);
        let b = m2_core(M2_B);
        let ab = CacheTopology::host_view(&[a, b], CTR_64B).unwrap();
        let ba = CacheTopology::host_view(&[b, a], CTR_64B).unwrap();
        assert_eq!(ab, ba, "the view must not depend on core order");
        assert_eq!(ab.clidr_el1(), M2_CLIDR);
        // Every cache covers the larger cluster: cluster B's geometry.
        for (csselr, raw) in M2_B.iter().enumerate() {
            assert_eq!(ab.ccsidr_el1(csselr as u64, false), raw & 0x0FFF_FFFF);
        }
        // A VM on one cluster only sees that cluster.
        let only_a = CacheTopology::host_view(&[a], CTR_64B).unwrap();
        assert_eq!(only_a.ccsidr_el1(0, false), M2_A[0] & 0x0FFF_FFFF);
    }

    #[test]
    fn host_policy_merges_differing_line_sizes_conservatively() {
        let small = CacheGeometry {
            line_log2: 6,
            ways: 8,
            sets: 256,
        }; // 128 KiB
        let big_line = CacheGeometry {
            line_log2: 7,
            ways: 4,
            sets: 128,
        }; // 64 KiB
        let m = merge_geometry(small, big_line);
        assert_eq!(m.line_log2, 6);
        assert_eq!(m.ways, 8);
        assert_eq!(m.size_bytes(), 128 << 10);
        let odd = CacheGeometry {
            line_log2: 6,
            ways: 6,
            sets: 100,
        };
        let m = merge_geometry(odd, small);
        assert!(m.size_bytes() >= odd.size_bytes().max(small.size_bytes()));
    }

    #[test]
    fn host_policy_takes_hardware_level_fields_as_they_are() {
        // LoC = 0 (no cleaning to the PoC needed) with LoUU = 1 is taken
        // from hardware as is; a config giving it is refused.
        let mut core = m2_core(M2_A);
        core.clidr_el1 &= !(7 << 24);
        let ctr = effective_ctr(CTR_64B, core.clidr_el1);
        let t = CacheTopology::host_view(&[core], ctr).unwrap();
        assert_eq!((t.clidr().loc, t.clidr().louu), (0, 1));
        let e = ExplicitCaches {
            clidr_el1: core.clidr_el1,
            ccsidr_el1: vec![(0, M2_A[0]), (1, M2_A[1]), (2, M2_A[2])],
            ccidx: false,
        };
        assert!(matches!(
            CacheTopology::explicit(&e, ctr),
            Err(CacheError::BadLevelField { field: "LoUU", .. })
        ));
    }

    #[test]
    fn host_policy_refuses_cores_with_different_levels() {
        let a = m2_core(M2_A);
        let mut c = m2_core(M2_A);
        c.clidr_el1 = 0b011 | (1 << 24) | (1 << 27) | (1 << 21); // L1 only
        assert_eq!(
            CacheTopology::host_view(&[a, c], CTR_64B),
            Err(CacheError::HostLevelsDiffer { level: 2 })
        );
        assert_eq!(
            CacheTopology::host_view(&[], CTR_64B),
            Err(CacheError::NoCores)
        );
    }

    #[test]
    fn virtual_policy_is_split_l1_and_a_unified_l2_whatever_the_ctr() {
        // QEMU 10.0.2 -cpu max CTR_EL0 = 0xb444c004: IDC = DIC = 1, 64-byte lines.
        let max = CacheTopology::virtual_view(0xb444_c004);
        assert_eq!(
            &max.clidr().ctype[..3],
            [Ctype::Separate, Ctype::Unified, Ctype::None]
        );
        assert_eq!(
            (max.clidr().loc, max.clidr().louu, max.clidr().louis),
            (2, 0, 0)
        );
        // CLIDR_EL1 as QEMU's -cpu max has it (0x0200_0023), sizes our own.
        assert_eq!(max.clidr_el1(), 0x0200_0023);
        // L1: 32 KiB = 4 ways x 128 sets x 64 B; L2: 512 KiB = 8 x 1024 x 64 B.
        let l1 = (127 << 13) | (3 << 3) | 2;
        assert_eq!(max.ccsidr_el1(0, false), l1);
        assert_eq!(max.ccsidr_el1(1, false), l1);
        assert_eq!(max.ccsidr_el1(2, false), (1023 << 13) | (7 << 3) | 2);
        assert_eq!(max.ccsidr_el1(3, false), CCSIDR_NONEXISTENT);
        assert_eq!(max.ccsidr_el1(4, false), CCSIDR_NONEXISTENT);
        for (csselr, bytes) in [
            (0, VIRTUAL_L1_BYTES),
            (1, VIRTUAL_L1_BYTES),
            (2, VIRTUAL_L2_BYTES),
        ] {
            assert_eq!(max.geometry(csselr).unwrap().size_bytes(), bytes);
        }
        // cortex-a57 CTR_EL0 = 0x8444c004: IDC = 0, so L1 data must be cleaned
        // to the PoU: LoUU = LoUIS = 1.
        let a57 = CacheTopology::virtual_view(CTR_64B);
        assert_eq!(
            a57.clidr_el1(),
            0b100_011 | (2 << 24) | (1 << 27) | (1 << 21)
        );
        // Smaller I-cache lines: more sets, the same size.
        let mixed = CacheTopology::virtual_view((CTR_64B & !0xf) | 3); // IminLine 32 B
        assert_eq!(mixed.ccsidr_el1(1, false), (255 << 13) | (3 << 3) | 1);
        assert_eq!(mixed.geometry(1).unwrap().size_bytes(), VIRTUAL_L1_BYTES);
        // The virtual view passes the same validation as explicit ones.
        for ctr in [0xb444_c004, CTR_64B, CTR_64B | 1 << 28, CTR_64B | 1 << 29] {
            CacheTopology::virtual_view(ctr)
                .validate(ctr, true)
                .unwrap();
        }
    }

    #[test]
    fn nonexistent_selection_reads_the_fixed_value() {
        let topo = CacheTopology::host_view(&[m2_core(M2_A)], CTR_64B).unwrap();
        // L2 instruction (unified L2), L3, reserved level, tag cache.
        for csselr in [0b0011, 0b0100, 0b1110, 0b1_0000] {
            assert_eq!(topo.ccsidr_el1(csselr, false), CCSIDR_NONEXISTENT);
            assert_eq!(topo.ccsidr_el1(csselr, true), CCSIDR_NONEXISTENT);
            assert_eq!(topo.ccsidr2_el1(csselr), CCSIDR_NONEXISTENT);
        }
    }

    fn explicit(clidr: u64, entries: &[(u64, u64)]) -> Result<CacheTopology, CacheError> {
        CacheTopology::explicit(
            &ExplicitCaches {
                clidr_el1: clidr,
                ccsidr_el1: entries.to_vec(),
                ccidx: false,
            },
            CTR_64B,
        )
    }

    #[test]
    fn explicit_policy_accepts_a_consistent_list() {
        let entries = [(0, M2_A[0]), (1, M2_A[1]), (2, M2_A[2])];
        let t = explicit(M2_CLIDR, &entries).unwrap();
        assert_eq!(t.clidr_el1(), M2_CLIDR);
        assert_eq!(t.ccsidr_el1(2, false), M2_A[2] & 0x0FFF_FFFF);
        let policy = CachePolicy::Explicit(ExplicitCaches {
            clidr_el1: M2_CLIDR,
            ccsidr_el1: vec![(0, M2_A[0]), (1, M2_A[1]), (2, M2_A[2])],
            ccidx: false,
        });
        assert_eq!(CacheTopology::for_policy(&policy, CTR_64B, &[]).unwrap(), t);
    }

    #[test]
    fn explicit_policy_rejects_inconsistent_lists() {
        let ok = [(0, M2_A[0]), (1, M2_A[1]), (2, M2_A[2])];
        // Missing L2.
        assert_eq!(
            explicit(M2_CLIDR, &ok[..2]),
            Err(CacheError::MissingCcsidr { csselr: 2 })
        );
        // L2 instruction cache does not exist (L2 is unified); duplicates.
        let extra = [ok[0], ok[1], ok[2], (3, M2_A[1])];
        assert_eq!(
            explicit(M2_CLIDR, &extra),
            Err(CacheError::UnexpectedCcsidr { csselr: 3 })
        );
        let dup = [ok[0], ok[0], ok[1], ok[2]];
        assert_eq!(
            explicit(M2_CLIDR, &dup),
            Err(CacheError::UnexpectedCcsidr { csselr: 0 })
        );
        // 32-byte L1D lines are below CTR_EL0.DminLine (64 bytes).
        let small = [(0, M2_A[0] & !0x7 | 1), ok[1], ok[2]];
        assert_eq!(
            explicit(M2_CLIDR, &small),
            Err(CacheError::LineBelowCtrMinimum {
                csselr: 0,
                line_bytes: 32,
                min_bytes: 64
            })
        );
        // A 64 GiB L2 (32768 sets x 1024 ways x 2 KiB, CCIDX-less format)
        // cannot be described in the guest's device tree.
        let huge = [ok[0], ok[1], (2, (32767 << 13) | (1023 << 3) | 7)];
        assert_eq!(
            explicit(M2_CLIDR, &huge),
            Err(CacheError::TooLarge {
                csselr: 2,
                bytes: 64 << 30
            })
        );
        // LoC beyond the last level; LoUU beyond LoC.
        let loc3 = (M2_CLIDR & !(7 << 24)) | (3 << 24);
        assert!(matches!(
            explicit(loc3, &ok),
            Err(CacheError::BadLevelField { field: "LoC", .. })
        ));
        let louu2_loc1 = (M2_CLIDR & !(7 << 24) & !(7 << 27)) | (1 << 24) | (2 << 27);
        assert!(matches!(
            explicit(louu2_loc1, &ok),
            Err(CacheError::BadLevelField { field: "LoUU", .. })
        ));
        // CTR_EL0.IDC = 0 but nothing to clean to the PoU.
        let no_lou = M2_CLIDR & !(7 << 27) & !(7 << 21);
        assert_eq!(explicit(no_lou, &ok), Err(CacheError::IdcContradiction));
        // A cache above a gap; ICB set.
        let gap = M2_CLIDR & !(7 << 3) | (0b100 << 6);
        assert_eq!(
            explicit(gap, &ok),
            Err(CacheError::CacheAboveGap { level: 3 })
        );
        assert!(matches!(
            explicit(M2_CLIDR | 1 << 30, &ok),
            Err(CacheError::ReservedClidrBits { .. })
        ));
        assert_eq!(
            explicit(M2_CLIDR | 0b110 << 6, &ok),
            Err(CacheError::ReservedCtype { level: 3 })
        );
    }

    #[test]
    fn ctr_takes_the_safe_value_of_every_field() {
        // QEMU -cpu max (IDC = DIC = 1) and cortex-a57 (neither).
        assert_eq!(sanitize_ctr(&[0xb444_c004, 0x8444_c004]), 0x8444_c004);
        assert_eq!(sanitize_ctr(&[0xb444_c004]), 0xb444_c004);
        // Smaller lines win; larger CWG/ERG win; a 0 CWG wins over any.
        let a = 0x8444_c004;
        let b = (0x8444_c004 & !0x000f_000f) | (3 << 16) | 3 | (5 << 24) | (5 << 20);
        let s = sanitize_ctr(&[a, b]);
        assert_eq!(CTR_EL0::DminLine.read(s), 3);
        assert_eq!(CTR_EL0::IminLine.read(s), 3);
        assert_eq!(CTR_EL0::CWG.read(s), 5);
        assert_eq!(CTR_EL0::ERG.read(s), 5);
        let z = a & !(0xf << 24);
        assert_eq!(CTR_EL0::CWG.read(sanitize_ctr(&[a, z])), 0);
        // L1Ip: PIPT everywhere stays PIPT; a mix (or VPIPT/AIVIVT) is VIPT.
        // (cortex-a57's CTR_EL0 has L1Ip = PIPT.)
        let pipt = a;
        let vipt = (a & !(3 << 14)) | (2 << 14);
        let vpipt = a & !(3 << 14);
        assert_eq!(CTR_EL0::L1Ip.read(sanitize_ctr(&[pipt, pipt])), 3);
        assert_eq!(CTR_EL0::L1Ip.read(sanitize_ctr(&[pipt, vipt])), 2);
        assert_eq!(CTR_EL0::L1Ip.read(sanitize_ctr(&[vpipt])), 2);
        assert_eq!(CTR_EL0::L1Ip.read(sanitize_ctr(&[vpipt, vpipt])), 2);
        // TminLine (MTE) is dropped, RES1 kept.
        assert_eq!(sanitize_ctr(&[a | (4 << 32)]), a);
    }

    #[test]
    fn effective_ctr_sets_idc_when_clidr_needs_no_clean() {
        // QEMU 10.0.2 cortex-a76 / cortex-a55: IDC = 0 but LoUU = LoUIS = 0.
        assert_eq!(effective_ctr(0x8444_c004, 0x8200_0023), 0x9444_c004);
        assert_eq!(effective_ctr(0x8444_8004, 0x8200_0023), 0x9444_8004);
        // cortex-a57: LoUU = LoUIS = 1, so IDC stays 0.
        assert_eq!(effective_ctr(0x8444_c004, 0x0a20_0023), 0x8444_c004);
        // LoC = 0.
        assert_eq!(effective_ctr(0x8444_c004, 0x2800_0023), 0x9444_c004);
    }

    /// QEMU 10.0.2 `-cpu cortex-a76` and `-cpu cortex-a55` (a DynamIQ
    /// big.LITTLE pair), values read from the emulated CPUs at EL2.
    fn a76_a55() -> [CoreCaches; 2] {
        let core = |l1d, l1i, l2| {
            let mut ccsidr_el1 = [0; CSSELR_SLOTS];
            ccsidr_el1[..3].copy_from_slice(&[l1d, l1i, l2]);
            CoreCaches {
                clidr_el1: 0x8200_0023,
                ccsidr_el1,
                ccidx: false,
            }
        };
        [
            core(0x701f_e01a, 0x201f_e01a, 0x707f_e03a),
            core(0x700f_e01a, 0x200f_e01a, 0x703f_e07a),
        ]
    }

    #[test]
    fn host_policy_over_a76_and_a55() {
        let cores = a76_a55();
        let ctr = sanitize_ctr(&[
            effective_ctr(0x8444_c004, 0x8200_0023),
            effective_ctr(0x8444_8004, 0x8200_0023),
        ]);
        assert_eq!(ctr, 0x9444_8004); // IDC from CLIDR, VIPT from the A55
        let t = CacheTopology::host_view(&cores, ctr).unwrap();
        // ICB is not shown to the guest.
        assert_eq!(t.clidr_el1(), 0x0200_0023);
        let geo = |csselr| {
            let g = t.geometry(csselr).unwrap();
            (g.sets, g.ways, g.line_bytes())
        };
        assert_eq!(geo(0), (256, 4, 64)); // A76's 64 KiB L1D
        assert_eq!(geo(1), (256, 4, 64)); // A76's 64 KiB L1I
        // Both L2s are 512 KiB; the A55's is 16-way, so the view is 512 x 16 x 64.
        assert_eq!(geo(2), (512, 16, 64));
    }

    #[test]
    fn trap_choice() {
        assert_eq!(cache_trap(true, true), CacheTrap::Tid4);
        assert_eq!(cache_trap(true, false), CacheTrap::Tid2);
        assert_eq!(cache_trap(false, true), CacheTrap::Tid2);
    }
}
