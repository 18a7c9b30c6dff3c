//! Cache identification registers decoded, and what each of Ferrovisor's cache
//! policies must show (src/sysreg/mod.rs, "Cache topology: three policies").
//!
//! Written from the Arm ARM and the documented policies, not from the hypervisor's
//! code, so the two can disagree and a check fail.

use crate::regs::{CSSELR_SLOTS, field};

/// CSSELR_EL1.Level (bits [3:1]) and InD (bit 0): what a write keeps (TnD, bit 4, is
/// RES0 without FEAT_MTE2, which the CPU model hides).
pub const CSSELR_LEVEL_IND: u64 = 0b1111;

/// The documented CCSIDR_EL1 value when CSSELR_EL1 selects no cache: the Arm ARM
/// makes it UNKNOWN, Ferrovisor fixes it at 0 (src/sysreg/cache.rs
/// `CCSIDR_NONEXISTENT`). QEMU happens to read 0 too.
pub const CCSIDR_NONEXISTENT: u64 = 0;

/// CLIDR_EL1 `Ctype<n>` encodings (Arm ARM D23.2 CLIDR_EL1).
pub const CTYPE_NONE: u64 = 0b000;
pub const CTYPE_INSTRUCTION: u64 = 0b001;
pub const CTYPE_DATA: u64 = 0b010;
pub const CTYPE_SEPARATE: u64 = 0b011;
pub const CTYPE_UNIFIED: u64 = 0b100;

/// FEAT_CCIDX: ID_AA64MMFR2_EL1.CCIDX (bits [23:20]) != 0, the 64-bit CCSIDR_EL1
/// format and CCSIDR2_EL1.
pub fn has_ccidx(mmfr2: u64) -> bool {
    field(mmfr2, 20) != 0
}

/// A CLIDR_EL1 value.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Clidr(pub u64);

impl Clidr {
    /// `Ctype<level>`, level 1..=7.
    pub fn ctype(self, level: usize) -> u64 {
        (self.0 >> (3 * (level - 1))) & 0b111
    }
    /// Levels up to the first "no cache" (Arm ARM: once a Ctype field reads 0b000,
    /// the fields of further-out levels are to be ignored).
    pub fn levels(self) -> usize {
        (1..=7).take_while(|&l| self.ctype(l) != CTYPE_NONE).count()
    }
    pub fn louis(self) -> u64 {
        (self.0 >> 21) & 0b111
    }
    pub fn loc(self) -> u64 {
        (self.0 >> 24) & 0b111
    }
    pub fn louu(self) -> u64 {
        (self.0 >> 27) & 0b111
    }
    /// Whether CSSELR_EL1 = `csselr` (Level << 1 | InD) selects a cache this CLIDR
    /// describes.
    pub fn describes(self, csselr: u64) -> bool {
        if csselr >= CSSELR_SLOTS as u64 {
            return false;
        }
        let level = (csselr >> 1) as usize + 1;
        let instruction = csselr & 1 != 0;
        if level > self.levels() {
            return false;
        }
        match self.ctype(level) {
            CTYPE_INSTRUCTION => instruction,
            CTYPE_DATA | CTYPE_UNIFIED => !instruction,
            CTYPE_SEPARATE => true,
            _ => false,
        }
    }
    /// The CSSELR_EL1 values of every described cache, in order.
    pub fn selections(self) -> impl Iterator<Item = u64> {
        (0..CSSELR_SLOTS as u64).filter(move |&s| self.describes(s))
    }
}

/// One cache's geometry from CCSIDR_EL1 (Arm ARM D23.2 CCSIDR_EL1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// log2(line size in bytes) = LineSize + 4.
    pub line_log2: u32,
    pub ways: u64,
    pub sets: u64,
}

impl Geometry {
    /// Decodes CCSIDR_EL1 in the 64-bit (FEAT_CCIDX: Associativity [23:3],
    /// NumSets [55:32]) or 32-bit (Associativity [12:3], NumSets [27:13]) format.
    pub fn from_ccsidr(raw: u64, ccidx: bool) -> Geometry {
        let (ways, sets) = if ccidx {
            ((raw >> 3) & 0x1f_ffff, (raw >> 32) & 0xff_ffff)
        } else {
            ((raw >> 3) & 0x3ff, (raw >> 13) & 0x7fff)
        };
        Geometry {
            line_log2: (raw & 0b111) as u32 + 4,
            ways: ways + 1,
            sets: sets + 1,
        }
    }
    pub fn size(self) -> u64 {
        (1 << self.line_log2) * self.ways * self.sets
    }
}

impl core::fmt::Display for Geometry {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "{} sets x {} ways x {} B = ",
            self.sets,
            self.ways,
            1u64 << self.line_log2
        )?;
        match self.size() {
            s if s >= 1024 => write!(f, "{} KiB", s / 1024),
            s => write!(f, "{s} B"),
        }
    }
}

/// log2 of the smallest line in bytes CTR_EL0 promises for instruction caches
/// (IminLine, bits [3:0]) or data/unified caches (DminLine, bits [19:16]); both
/// count log2 of 4-byte words.
pub fn ctr_min_line_log2(ctr: u64, instruction: bool) -> u32 {
    let words_log2 = if instruction {
        ctr & 0xf
    } else {
        (ctr >> 16) & 0xf
    };
    words_log2 as u32 + 2
}

/// CTR_EL0.IDC (bit 28): no data clean to the PoU needed for instruction coherence.
pub fn ctr_idc(ctr: u64) -> bool {
    ctr & (1 << 28) != 0
}

/// The cache policy of this VM, as its config's bootargs announce it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    Virtual,
    Host,
    /// The configured CLIDR_EL1 and the CCSIDR_EL1 of each cache it describes, in
    /// CSSELR order (`count` of them).
    Explicit {
        clidr: u64,
        ccsidr: [u64; CSSELR_SLOTS],
        count: usize,
    },
}

impl Policy {
    pub fn name(&self) -> &'static str {
        match self {
            Policy::Virtual => "virtual",
            Policy::Host => "host",
            Policy::Explicit { .. } => "explicit",
        }
    }
}

/// The values a guest must read under a policy.
pub struct Expected {
    pub clidr: u64,
    /// Per CSSELR slot: the CCSIDR_EL1 of a described cache.
    pub ccsidr: [Option<u64>; CSSELR_SLOTS],
    /// Compare CCSIDR as raw values (virtual, explicit) or as decoded geometry
    /// (host: the hypervisor re-encodes the hardware's geometry, dropping the
    /// Armv8.0 WT/WB/RA/WA bits [31:28], which later architecture versions made RES0).
    pub exact: bool,
}

/// A CPU whose cache registers we know: QEMU 10.0.2's models on `-M virt`, read at
/// EL2 (the fixtures of src/sysreg/id.rs, `qemu_max` and `qemu_a57`).
pub struct KnownCpu {
    pub name: &'static str,
    pub midr: u64,
    pub ctr: u64,
    pub clidr: u64,
    /// CCSIDR_EL1 for CSSELR 0 (L1D), 1 (L1I), 2 (L2), 32-bit format.
    pub ccsidr: [u64; 3],
}

pub const KNOWN_CPUS: [KnownCpu; 2] = [
    KnownCpu {
        name: "QEMU -cpu max",
        midr: 0x000f_0510,
        ctr: 0xb444_c004,
        clidr: 0x0200_0023,
        ccsidr: [0x700f_e01a, 0x201f_e012, 0x70ff_e07a],
    },
    KnownCpu {
        name: "QEMU -cpu cortex-a57",
        midr: 0x411f_d070,
        ctr: 0x8444_c004,
        clidr: 0x0a20_0023,
        ccsidr: [0x700f_e01a, 0x201f_e012, 0x70ff_e07a],
    },
];

pub fn known_cpu(midr: u64) -> Option<&'static KnownCpu> {
    KNOWN_CPUS.iter().find(|c| c.midr == midr)
}

/// The `virtual` policy for a CTR_EL0 (src/sysreg/cache.rs `virtual_view`): split
/// L1 instruction and data caches of 32 KiB (4 ways), a unified L2 of 512 KiB (8
/// ways) at the LoC, LoUU = LoUIS = 0 when CTR_EL0.IDC says no clean to the PoU is
/// needed (else 1); lines are CTR_EL0's minimum for each kind.
pub fn virtual_view(ctr: u64) -> Expected {
    // L1 separate, L2 unified, LoC = 2, LoUU = LoUIS = 0 with CTR_EL0.IDC, else 1.
    let lou = if ctr_idc(ctr) { 0 } else { 1 };
    let clidr = CTYPE_SEPARATE | CTYPE_UNIFIED << 3 | lou << 27 | 2 << 24 | lou << 21;
    // 32-bit CCSIDR_EL1: NumSets - 1 [27:13], Associativity - 1 [12:3],
    // LineSize = log2(bytes) - 4 [2:0].
    let ccsidr = |bytes: u64, ways: u64, instruction: bool| {
        let line_log2 = u64::from(ctr_min_line_log2(ctr, instruction).max(4));
        let sets = (bytes >> line_log2) / ways;
        ((sets - 1) << 13) | ((ways - 1) << 3) | (line_log2 - 4)
    };
    let mut expected = [None; CSSELR_SLOTS];
    expected[0] = Some(ccsidr(32 << 10, 4, false));
    expected[1] = Some(ccsidr(32 << 10, 4, true));
    expected[2] = Some(ccsidr(512 << 10, 8, false));
    Expected {
        clidr,
        ccsidr: expected,
        // Compared as geometries: a FEAT_CCIDX guest reads the 64-bit format.
        exact: false,
    }
}

/// The `host` policy on a CPU we know: its own topology (every vCPU of these VMs
/// runs on the same CPU model, so the common view is that CPU's), less the CLIDR
/// bits a guest without FEAT_MTE2 sees as 0 (ICB [32:30], Ttype [46:33]).
pub fn host_view(cpu: &KnownCpu) -> Expected {
    let clidr = cpu.clidr & ((1 << 30) - 1);
    let mut ccsidr = [None; CSSELR_SLOTS];
    for s in Clidr(clidr).selections() {
        ccsidr[s as usize] = cpu.ccsidr.get(s as usize).copied();
    }
    Expected {
        clidr,
        ccsidr,
        exact: false,
    }
}

/// The `explicit` policy: exactly the configured values.
pub fn explicit_view(clidr: u64, values: &[u64]) -> Expected {
    let mut ccsidr = [None; CSSELR_SLOTS];
    for (s, v) in Clidr(clidr).selections().zip(values.iter()) {
        ccsidr[s as usize] = Some(*v);
    }
    Expected {
        clidr,
        ccsidr,
        exact: true,
    }
}
