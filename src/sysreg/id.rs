//! The CPU model: the ID registers a VM reads (trapped by HCR_EL2.TID3), made
//! identical on every physical CPU and stripped of what Ferrovisor does not
//! virtualize yet.
//!
//! Three steps, each a plain function of plain data:
//! 1. [`SystemCpuInfo::new`]: the system-wide safe value of every field
//!    across all physical CPUs, field by field, with the rule each field
//!    needs (lower-safe, higher-safe, higher-or-zero-safe, exact), signed
//!    fields compared as signed: the method of Linux's
//!    arch/arm64/kernel/cpufeature.c (`arm64_ftr_safe_value`, `ftr_id_aa64*`).
//!    Fields this file does not describe are 0 in the result, so a feature
//!    nobody has reviewed never reaches a guest.
//! 2. The guest limits in [`ID_FIELDS`] (`Guest::AtMost`): hide PMU, SPE,
//!    TRBE/trace, AMU, MTE, nested virtualization (EL2), RAS, MPAM, SME,
//!    pointer authentication, and features that need EL2 state we do not
//!    switch yet; EL0/EL1 are AArch64-only.
//! 3. [`VmCpuModel::lower`]: per-VM lowering from the config; raising a field
//!    above step 2 is an error naming the field. SVE (ID_AA64PFR0_EL1.SVE,
//!    ID_AA64ZFR0_EL1) shows only in a VM given a vector-length cap
//!    ([`VmCpuModel::set_sve`], [`sve_cap`]).

use super::SysReg;
use super::cache::{
    CSSELR_SLOTS, CachePolicy, CacheTopology, CoreCaches, effective_ctr, sanitize_ctr,
};
use super::cache::{CacheTrap, cache_trap};
use super::pmu::PmuModel;
use aarch64_cpu::registers::ID_AA64MMFR2_EL1 as MMFR2_FIELDS;
use core::fmt;

/// Number of encodings in the feature ID space Op0=3, Op1=0, CRn=0, CRm=1..7,
/// Op2=0..7: all of them are trapped by HCR_EL2.TID3 (Arm ARM D19.2, "ID
/// group 3"), including the unallocated ones, which are RAZ.
pub const ID_SPACE_LEN: usize = 56;

/// Index of an encoding in the TID3 ID space, if it is in it.
pub const fn id_index(reg: SysReg) -> Option<usize> {
    if reg.op0() == 3 && reg.op1() == 0 && reg.crn() == 0 && reg.crm() >= 1 && reg.crm() <= 7 {
        Some((reg.crm() as usize - 1) * 8 + reg.op2() as usize)
    } else {
        None
    }
}

pub const ID_AA64PFR0_EL1: SysReg = SysReg::new(3, 0, 0, 4, 0);
pub const ID_AA64PFR1_EL1: SysReg = SysReg::new(3, 0, 0, 4, 1);
pub const ID_AA64ZFR0_EL1: SysReg = SysReg::new(3, 0, 0, 4, 4);
pub const ID_AA64SMFR0_EL1: SysReg = SysReg::new(3, 0, 0, 4, 5);
pub const ID_AA64DFR0_EL1: SysReg = SysReg::new(3, 0, 0, 5, 0);
pub const ID_AA64DFR1_EL1: SysReg = SysReg::new(3, 0, 0, 5, 1);
pub const ID_AA64AFR0_EL1: SysReg = SysReg::new(3, 0, 0, 5, 4);
pub const ID_AA64AFR1_EL1: SysReg = SysReg::new(3, 0, 0, 5, 5);
pub const ID_AA64ISAR0_EL1: SysReg = SysReg::new(3, 0, 0, 6, 0);
pub const ID_AA64ISAR1_EL1: SysReg = SysReg::new(3, 0, 0, 6, 1);
pub const ID_AA64ISAR2_EL1: SysReg = SysReg::new(3, 0, 0, 6, 2);
pub const ID_AA64MMFR0_EL1: SysReg = SysReg::new(3, 0, 0, 7, 0);
pub const ID_AA64MMFR1_EL1: SysReg = SysReg::new(3, 0, 0, 7, 1);
pub const ID_AA64MMFR2_EL1: SysReg = SysReg::new(3, 0, 0, 7, 2);
pub const ID_AA64MMFR3_EL1: SysReg = SysReg::new(3, 0, 0, 7, 3);

/// The 56 values of the TID3 ID space of one CPU (or of one VM's view).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct IdRegs([u64; ID_SPACE_LEN]);

impl IdRegs {
    pub const ZERO: IdRegs = IdRegs([0; ID_SPACE_LEN]);

    /// The value of `reg`, or `None` outside the TID3 ID space.
    pub fn get(&self, reg: SysReg) -> Option<u64> {
        id_index(reg).map(|i| self.0[i])
    }

    /// Sets `reg`; encodings outside the ID space are ignored.
    pub fn set(&mut self, reg: SysReg, value: u64) {
        if let Some(i) = id_index(reg) {
            self.0[i] = value;
        }
    }

    /// Builder form of [`IdRegs::set`], handy for fixtures.
    pub fn with(mut self, reg: SysReg, value: u64) -> Self {
        self.set(reg, value);
        self
    }

    fn field(&self, f: &IdField) -> u8 {
        ((self.get(f.reg).unwrap_or(0) >> f.shift) & 0xf) as u8
    }

    fn set_field(&mut self, f: &IdField, v: u8) {
        let old = self.get(f.reg).unwrap_or(0);
        let mask = 0xfu64 << f.shift;
        self.set(f.reg, (old & !mask) | ((v as u64 & 0xf) << f.shift));
    }
}

impl fmt::Debug for IdRegs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (i, v) in self.0.iter().enumerate().filter(|(_, v)| **v != 0) {
            m.entry(
                &SysReg::new(3, 0, 0, (i / 8 + 1) as u8, (i % 8) as u8),
                &format_args!("{v:#018x}"),
            );
        }
        m.finish()
    }
}

/// How a field combines across CPUs (Linux's `enum ftr_type`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Safe {
    /// The smaller value is safe (features are cumulative).
    Lower,
    /// The larger value is safe.
    Higher,
    /// The larger value is safe, but 0 is the largest.
    HigherOrZero,
    /// Values must match; if they do not, this value is safe.
    Exact(u8),
}

/// What the guest may see of a field, on top of the system-wide value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guest {
    /// The system-wide value.
    Hardware,
    /// At most this value (in the field's order): `AtMost(0)` hides a feature.
    AtMost(u8),
}

/// One 4-bit field of an ID register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdField {
    pub reg: SysReg,
    pub reg_name: &'static str,
    pub name: &'static str,
    pub shift: u8,
    /// Signed field: 0xF is -1 ("not implemented" for FP, AdvSIMD, TGran4/64, DoubleLock).
    pub signed: bool,
    pub safe: Safe,
    pub guest: Guest,
}

impl IdField {
    /// Looks a field up by "REGISTER.FIELD", e.g. "ID_AA64PFR0_EL1.SVE".
    pub fn by_name(name: &str) -> Option<&'static IdField> {
        let (reg, field) = name.split_once('.')?;
        ID_FIELDS
            .iter()
            .find(|f| f.reg_name == reg && f.name == field)
    }

    /// The value as an integer in the field's order.
    const fn ord(&self, v: u8) -> i8 {
        if self.signed && v >= 8 {
            v as i8 - 16
        } else {
            v as i8
        }
    }

    /// The safe value when one CPU has `new` and the others `cur` (Linux
    /// `arm64_ftr_safe_value`).
    pub fn safe_value(&self, new: u8, cur: u8) -> u8 {
        let (n, c) = (self.ord(new), self.ord(cur));
        match self.safe {
            Safe::Exact(v) if new != cur => v,
            Safe::Exact(_) => cur,
            Safe::Lower => {
                if n < c {
                    new
                } else {
                    cur
                }
            }
            Safe::HigherOrZero if new == 0 || cur == 0 => 0,
            Safe::Higher | Safe::HigherOrZero => {
                if n > c {
                    new
                } else {
                    cur
                }
            }
        }
    }

    fn limit(&self, v: u8) -> u8 {
        match self.guest {
            Guest::AtMost(max) if self.ord(v) > self.ord(max) => max,
            _ => v,
        }
    }
}

impl fmt::Display for IdField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.reg_name, self.name)
    }
}

type Reg = (SysReg, &'static str);
const PFR0: Reg = (ID_AA64PFR0_EL1, "ID_AA64PFR0_EL1");
const PFR1: Reg = (ID_AA64PFR1_EL1, "ID_AA64PFR1_EL1");
const ZFR0: Reg = (ID_AA64ZFR0_EL1, "ID_AA64ZFR0_EL1");
const DFR0: Reg = (ID_AA64DFR0_EL1, "ID_AA64DFR0_EL1");
const ISAR0: Reg = (ID_AA64ISAR0_EL1, "ID_AA64ISAR0_EL1");
const ISAR1: Reg = (ID_AA64ISAR1_EL1, "ID_AA64ISAR1_EL1");
const ISAR2: Reg = (ID_AA64ISAR2_EL1, "ID_AA64ISAR2_EL1");
const MMFR0: Reg = (ID_AA64MMFR0_EL1, "ID_AA64MMFR0_EL1");
const MMFR1: Reg = (ID_AA64MMFR1_EL1, "ID_AA64MMFR1_EL1");
const MMFR2: Reg = (ID_AA64MMFR2_EL1, "ID_AA64MMFR2_EL1");

const fn u(r: Reg, name: &'static str, shift: u8, safe: Safe, guest: Guest) -> IdField {
    IdField {
        reg: r.0,
        reg_name: r.1,
        name,
        shift,
        signed: false,
        safe,
        guest,
    }
}
const fn s(r: Reg, name: &'static str, shift: u8, safe: Safe, guest: Guest) -> IdField {
    IdField {
        signed: true,
        ..u(r, name, shift, safe, guest)
    }
}

use Guest::{AtMost, Hardware as HW};
use Safe::{Exact, Higher, Lower};
/// Not virtualized (yet): the guest reads 0.
const HIDE: Guest = AtMost(0);

/// Every ID register field a guest can see. Field positions: Arm ARM D23.2
/// (ID_AA64*_EL1 register descriptions); combine rules follow Linux's
/// cpufeature.c tables. Registers of the ID space with no field here
/// (SMFR0, DFR1, AFR0/1, ISAR3, MMFR3/4, PFR2, FPFR0, the AArch32 ID
/// registers and the unallocated encodings) read as zero.
pub static ID_FIELDS: &[IdField] = &[
    // ID_AA64PFR0_EL1
    u(PFR0, "EL0", 0, Lower, AtMost(1)), // AArch64-only guest
    u(PFR0, "EL1", 4, Lower, AtMost(1)),
    u(PFR0, "EL2", 8, Lower, HIDE), // no nested virtualization
    // EL3 is not hidden: KVM passes the system-wide value through for non-NV
    // guests (and reports EL3 = IMP for NV guests, limit_nv_id_reg).
    u(PFR0, "EL3", 12, Lower, HW),
    s(PFR0, "FP", 16, Lower, HW),
    s(PFR0, "AdvSIMD", 20, Lower, HW),
    u(PFR0, "GIC", 24, Lower, HW),
    u(PFR0, "RAS", 28, Lower, HIDE),
    // SVE: shown to a VM with a vector-length cap (`VmCpuModel::set_sve`).
    u(PFR0, "SVE", 32, Lower, AtMost(1)),
    u(PFR0, "SEL2", 36, Lower, HIDE),
    u(PFR0, "MPAM", 40, Lower, HIDE),
    u(PFR0, "AMU", 44, Lower, HIDE),
    u(PFR0, "DIT", 48, Lower, HW),
    u(PFR0, "RME", 52, Lower, HIDE),
    // CSV2 >= 2 (FEAT_CSV2_2) adds SCXTNUM_EL0/EL1, which are not switched per
    // VM and trap (HCR_EL2.EnSCXT = 0): shown as FEAT_CSV2, as KVM does.
    u(PFR0, "CSV2", 56, Lower, AtMost(1)),
    u(PFR0, "CSV3", 60, Lower, HW),
    // ID_AA64PFR1_EL1
    u(PFR1, "BT", 0, Lower, HW),
    u(PFR1, "SSBS", 4, Lower, HW),
    u(PFR1, "MTE", 8, Lower, HIDE),
    u(PFR1, "RAS_frac", 12, Lower, HIDE),
    u(PFR1, "MPAM_frac", 16, Lower, HIDE),
    u(PFR1, "SME", 24, Lower, HIDE),
    u(PFR1, "RNDR_trap", 28, Lower, HIDE),
    u(PFR1, "CSV2_frac", 32, Lower, AtMost(1)), // 2 (CSV2_1p2) adds SCXTNUM too
    u(PFR1, "NMI", 36, Lower, HIDE),
    u(PFR1, "MTE_frac", 40, Lower, HIDE),
    u(PFR1, "GCS", 44, Lower, HIDE),
    u(PFR1, "THE", 48, Lower, HIDE),
    u(PFR1, "MTEX", 52, Lower, HIDE),
    u(PFR1, "DF2", 56, Lower, HIDE),
    u(PFR1, "PFAR", 60, Lower, HIDE),
    // ID_AA64ZFR0_EL1 (the SVE instruction groups): zero for a VM without SVE
    // (`VmCpuModel::set_sve`).
    u(ZFR0, "SVEver", 0, Lower, HW),
    u(ZFR0, "AES", 4, Lower, HW),
    u(ZFR0, "BitPerm", 16, Lower, HW),
    u(ZFR0, "BF16", 20, Lower, HW),
    u(ZFR0, "B16B16", 24, Lower, HW),
    u(ZFR0, "SHA3", 32, Lower, HW),
    u(ZFR0, "SM4", 40, Lower, HW),
    u(ZFR0, "I8MM", 44, Lower, HW),
    u(ZFR0, "F32MM", 52, Lower, HW),
    u(ZFR0, "F64MM", 56, Lower, HW),
    // ID_AA64DFR0_EL1: the self-hosted debug fields are kept; PMU, SPE,
    // trace, TRBE, BRBE are hidden.
    u(DFR0, "DebugVer", 0, Exact(6), HW),
    u(DFR0, "TraceVer", 4, Lower, HIDE),
    u(DFR0, "PMUVer", 8, Lower, HIDE),
    u(DFR0, "BRPs", 12, Lower, HW),
    u(DFR0, "PMSS", 16, Lower, HIDE),
    u(DFR0, "WRPs", 20, Lower, HW),
    u(DFR0, "SEBEP", 24, Lower, HIDE),
    u(DFR0, "CTX_CMPs", 28, Lower, HW),
    u(DFR0, "PMSVer", 32, Lower, HIDE),
    s(DFR0, "DoubleLock", 36, Lower, HW),
    u(DFR0, "TraceFilt", 40, Lower, HIDE),
    u(DFR0, "TraceBuffer", 44, Lower, HIDE),
    s(DFR0, "MTPMU", 48, Lower, HIDE),
    u(DFR0, "BRBE", 52, Lower, HIDE),
    u(DFR0, "ExtTrcBuff", 56, Lower, HIDE),
    u(DFR0, "HPMN0", 60, Lower, HIDE),
    // ID_AA64ISAR0_EL1
    u(ISAR0, "AES", 4, Lower, HW),
    u(ISAR0, "SHA1", 8, Lower, HW),
    u(ISAR0, "SHA2", 12, Lower, HW),
    u(ISAR0, "CRC32", 16, Lower, HW),
    u(ISAR0, "Atomic", 20, Lower, HW),
    u(ISAR0, "TME", 24, Lower, HIDE),
    u(ISAR0, "RDM", 28, Lower, HW),
    u(ISAR0, "SHA3", 32, Lower, HW),
    u(ISAR0, "SM3", 36, Lower, HW),
    u(ISAR0, "SM4", 40, Lower, HW),
    u(ISAR0, "DP", 44, Lower, HW),
    u(ISAR0, "FHM", 48, Lower, HW),
    u(ISAR0, "TS", 52, Lower, HW),
    u(ISAR0, "TLB", 56, Lower, HW),
    u(ISAR0, "RNDR", 60, Lower, HW),
    // ID_AA64ISAR1_EL1: pointer authentication needs the keys switched and
    // HCR_EL2.{API,APK}; hidden until then.
    u(ISAR1, "DPB", 0, Lower, HW),
    u(ISAR1, "APA", 4, Exact(0), HIDE),
    u(ISAR1, "API", 8, Exact(0), HIDE),
    u(ISAR1, "JSCVT", 12, Lower, HW),
    u(ISAR1, "FCMA", 16, Lower, HW),
    u(ISAR1, "LRCPC", 20, Lower, HW),
    u(ISAR1, "GPA", 24, Lower, HIDE),
    u(ISAR1, "GPI", 28, Lower, HIDE),
    u(ISAR1, "FRINTTS", 32, Lower, HW),
    u(ISAR1, "SB", 36, Lower, HW),
    u(ISAR1, "SPECRES", 40, Lower, HW),
    u(ISAR1, "BF16", 44, Lower, HW),
    u(ISAR1, "DGH", 48, Lower, HW),
    u(ISAR1, "I8MM", 52, Lower, HW),
    u(ISAR1, "XS", 56, Lower, HW),
    u(ISAR1, "LS64", 60, Lower, HIDE),
    // ID_AA64ISAR2_EL1
    u(ISAR2, "WFxT", 0, Lower, HIDE), // the WFx trap path does not decode WFIT/WFET yet
    u(ISAR2, "RPRES", 4, Lower, HW),
    u(ISAR2, "GPA3", 8, Lower, HIDE),
    u(ISAR2, "APA3", 12, Exact(0), HIDE),
    u(ISAR2, "MOPS", 16, Lower, HIDE), // needs HCRX_EL2.MSCEn
    u(ISAR2, "BC", 20, Higher, HW),
    u(ISAR2, "PAC_frac", 24, Lower, HIDE),
    u(ISAR2, "CLRBHB", 28, Lower, HW),
    u(ISAR2, "CSSC", 52, Lower, HW),
    u(ISAR2, "RPRFM", 48, Lower, HW),
    // ID_AA64MMFR0_EL1: stage-2 granule fields and FGT describe EL2.
    PARANGE,
    u(MMFR0, "ASIDBits", 4, Lower, HW),
    u(MMFR0, "BigEnd", 8, Lower, HW),
    u(MMFR0, "SNSMem", 12, Lower, HW),
    u(MMFR0, "BigEndEL0", 16, Lower, HW),
    u(MMFR0, "TGran16", 20, Lower, HW),
    s(MMFR0, "TGran64", 24, Lower, HW),
    s(MMFR0, "TGran4", 28, Lower, HW),
    u(MMFR0, "TGran16_2", 32, Exact(1), HIDE),
    u(MMFR0, "TGran64_2", 36, Exact(1), HIDE),
    u(MMFR0, "TGran4_2", 40, Exact(1), HIDE),
    u(MMFR0, "ExS", 44, Lower, HW),
    u(MMFR0, "FGT", 56, Lower, HIDE),
    u(MMFR0, "ECV", 60, Lower, AtMost(1)), // 2 adds CNTPOFF_EL2 (EL2)
    // ID_AA64MMFR1_EL1
    u(MMFR1, "HAFDBS", 0, Lower, HW),
    u(MMFR1, "VMIDBits", 4, Lower, HIDE),
    u(MMFR1, "VH", 8, Lower, HIDE),
    u(MMFR1, "HPDS", 12, Lower, HW),
    u(MMFR1, "LO", 16, Lower, HIDE), // LOR registers are not context-switched
    u(MMFR1, "PAN", 20, Lower, HW),
    u(MMFR1, "SpecSEI", 24, Higher, HW),
    u(MMFR1, "XNX", 28, Lower, HIDE),
    u(MMFR1, "TWED", 32, Lower, HIDE),
    u(MMFR1, "ETS", 36, Lower, HW),
    u(MMFR1, "HCX", 40, Lower, HIDE),
    u(MMFR1, "AFP", 44, Lower, HW),
    u(MMFR1, "nTLBPA", 48, Lower, HW),
    u(MMFR1, "TIDCP1", 52, Lower, HW),
    u(MMFR1, "CMOW", 56, Lower, HW),
    u(MMFR1, "ECBHB", 60, Lower, HW),
    // ID_AA64MMFR2_EL1: CCIDX is kept; the cache module encodes CCSIDR_EL1
    // in whichever format the guest's CCIDX announces.
    u(MMFR2, "CnP", 0, Lower, HW),
    u(MMFR2, "UAO", 4, Lower, HW),
    u(MMFR2, "LSM", 8, Lower, HW),
    u(MMFR2, "IESB", 12, Lower, HW),
    u(MMFR2, "VARange", 16, Lower, HW),
    u(MMFR2, "CCIDX", 20, Lower, HW),
    u(MMFR2, "NV", 24, Lower, HIDE),
    u(MMFR2, "ST", 28, Lower, HW),
    u(MMFR2, "AT", 32, Lower, HW),
    u(MMFR2, "IDS", 36, Lower, HW),
    u(MMFR2, "FWB", 40, Lower, HIDE),
    u(MMFR2, "TTL", 48, Lower, HW),
    u(MMFR2, "BBM", 52, Lower, HW),
    u(MMFR2, "EVT", 56, Lower, HIDE),
    u(MMFR2, "E0PD", 60, Lower, HW),
];

/// What the platform code reads from one physical CPU at boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostCpu {
    pub midr_el1: u64,
    pub id: IdRegs,
    pub ctr_el0: u64,
    pub clidr_el1: u64,
    /// CCSIDR_EL1 for CSSELR_EL1 = 0..13.
    pub ccsidr_el1: [u64; CSSELR_SLOTS],
    /// PMCR_EL0.N, the PMUv3's event counters (0 without a PMUv3): decides
    /// MDCR_EL2.HPMN.
    pub pmu_counters: u8,
    /// MPAMIDR_EL1 (0 without FEAT_MPAM): whether MPAMHCR_EL2 exists.
    pub mpamidr_el1: u64,
    /// The SVE vector lengths the core implements: bit vq - 1 for 128 * vq
    /// bits (probed through ZCR_EL2.LEN at boot); 0 without SVE.
    pub sve_vqs: u16,
}

impl HostCpu {
    /// The core's cache registers, with the CCSIDR format its own
    /// ID_AA64MMFR2_EL1.CCIDX announces.
    pub fn caches(&self) -> CoreCaches {
        let ccidx = has_ccidx(&self.id);
        CoreCaches {
            clidr_el1: self.clidr_el1,
            ccsidr_el1: self.ccsidr_el1,
            ccidx,
        }
    }
}

/// FEAT_CCIDX: ID_AA64MMFR2_EL1.CCIDX != 0 (64-bit CCSIDR_EL1, CCSIDR2_EL1).
fn has_ccidx(id: &IdRegs) -> bool {
    MMFR2_FIELDS::CCIDX.read(id.get(ID_AA64MMFR2_EL1).unwrap_or(0)) != 0
}

/// The system-wide values, computed once at boot over every physical CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SystemCpuInfo {
    /// Safe common value of every described field (undescribed bits are 0).
    pub id: IdRegs,
    /// Safe common CTR_EL0 (from each core's effective CTR_EL0).
    pub ctr_el0: u64,
    /// The boot CPU's MIDR_EL1, shown to every vCPU (KVM does the same).
    pub midr_el1: u64,
}

impl SystemCpuInfo {
    /// Sanitizes `cpus` (the boot CPU first). `None` if there are none.
    pub fn new(cpus: &[HostCpu]) -> Option<Self> {
        let (boot, rest) = cpus.split_first()?;
        let mut id = IdRegs::ZERO;
        for f in ID_FIELDS {
            let v = rest
                .iter()
                .fold(boot.id.field(f), |cur, c| f.safe_value(c.id.field(f), cur));
            id.set_field(f, v);
        }
        let ctrs: alloc::vec::Vec<u64> = cpus
            .iter()
            .map(|c| effective_ctr(c.ctr_el0, c.clidr_el1))
            .collect();
        Some(SystemCpuInfo {
            id,
            ctr_el0: sanitize_ctr(&ctrs),
            midr_el1: boot.midr_el1,
        })
    }

    /// FEAT_EVT on every core (ID_AA64MMFR2_EL1.EVT >= 1): HCR_EL2.TID4 exists.
    pub fn evt(&self) -> bool {
        MMFR2_FIELDS::EVT.read(self.id.get(ID_AA64MMFR2_EL1).unwrap_or(0)) != 0
    }

    /// The guest view before per-VM lowering: every field limited by its
    /// [`Guest`] rule.
    pub fn guest_id(&self) -> IdRegs {
        let mut id = IdRegs::ZERO;
        for f in ID_FIELDS {
            id.set_field(f, f.limit(self.id.field(f)));
        }
        id
    }
}

/// ID_AA64PFR0_EL1.SVE.
const SVE: IdField = u(PFR0, "SVE", 32, Lower, AtMost(1));

/// Why a VM's `sve_vl` was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SveError {
    /// A core the VM runs on has no SVE.
    NoSve,
    /// Longer than the longest length the VM's cores implement alike (bits).
    AboveMax { requested: u16, max: u16 },
    /// Not a length the VM's cores implement (bits; the longest they do).
    Unsupported { requested: u16, max: u16 },
}

impl fmt::Display for SveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SveError::NoSve => write!(f, "this machine has no SVE"),
            SveError::AboveMax { requested, max } => write!(
                f,
                "{requested} bits is above the longest SVE vector length this machine offers ({max} bits)"
            ),
            SveError::Unsupported { requested, max } => write!(
                f,
                "{requested} bits is not an SVE vector length every CPU of the VM implements (they implement up to {max} bits)"
            ),
        }
    }
}

/// A VM's SVE vector-length cap in quadwords, from the cores it runs on and
/// its config's `sve_vl` (bits; `None`: the longest the cores offer).
///
/// A guest may pick any length up to the cap (ZCR_EL1.LEN), and the effective
/// length is the largest implemented one not above its choice (Arm ARM,
/// ZCR_ELx.LEN), so the cores must implement the same lengths up to the cap or
/// the guest would see its length change with the core (KVM's "virtualisable"
/// lengths). The longest offered is therefore the longest length every core
/// implements below which they all agree. 0 when a core has no SVE and none
/// was asked for.
pub fn sve_cap(vm_cpus: &[HostCpu], requested_bits: Option<u16>) -> Result<usize, SveError> {
    sve_cap_in(virtualisable_sve_vqs(vm_cpus), requested_bits)
}

/// The SVE vector lengths a guest running on `cpus` may be given (bit vq - 1
/// for 128 * vq bits): those every core implements, up to the longest below
/// which the cores implement the same set (see [`sve_cap`]). 0: no SVE.
pub fn virtualisable_sve_vqs(cpus: &[HostCpu]) -> u16 {
    let Some(first) = cpus.first() else {
        return 0;
    };
    let common = cpus.iter().fold(0xffffu16, |m, c| m & c.sve_vqs);
    let agree = |vq: usize| {
        let below: u16 = ((1u32 << vq) - 1) as u16;
        cpus.iter()
            .all(|c| c.sve_vqs & below == first.sve_vqs & below)
    };
    let max = (1..=16)
        .rev()
        .find(|&vq| common & (1 << (vq - 1)) != 0 && agree(vq))
        .unwrap_or(0);
    common & ((1u32 << max) - 1) as u16
}

/// [`sve_cap`] from the lengths [`virtualisable_sve_vqs`] gives (what
/// `config::HostFacts::sve_vqs` holds, so `fvconfig check` refuses with the
/// hypervisor's words).
pub fn sve_cap_in(vqs: u16, requested_bits: Option<u16>) -> Result<usize, SveError> {
    let common = vqs;
    let max = 16 - vqs.leading_zeros() as usize;
    if max == 0 {
        return match requested_bits {
            Some(_) => Err(SveError::NoSve),
            None => Ok(0),
        };
    }
    let Some(bits) = requested_bits else {
        return Ok(max);
    };
    let vq = usize::from(bits) / 128;
    if vq > max {
        return Err(SveError::AboveMax {
            requested: bits,
            max: (max * 128) as u16,
        });
    }
    if vq == 0 || common & (1 << (vq - 1)) == 0 || usize::from(bits) % 128 != 0 {
        return Err(SveError::Unsupported {
            requested: bits,
            max: (max * 128) as u16,
        });
    }
    Ok(vq)
}

/// ID_AA64MMFR0_EL1.PARange: the hardware's, further limited to the VM's IPA
/// size by [`VmCpuModel::new`].
const PARANGE: IdField = u(MMFR0, "PARange", 0, Lower, HW);

/// The ID_AA64MMFR0_EL1.PARange encoding of the largest physical address size
/// that fits in `bits` (Arm ARM, ID_AA64MMFR0_EL1.PARange: 32, 36, 40, 42, 44,
/// 48, 52 or 56 bits).
pub fn pa_range_for_bits(bits: u32) -> u8 {
    const SIZES: [u32; 8] = [32, 36, 40, 42, 44, 48, 52, 56];
    SIZES.iter().rposition(|&s| s <= bits).unwrap_or(0) as u8
}

/// Why a VM's CPU model was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelError {
    /// The config asked for more than the hardware (or the hypervisor) offers.
    AboveLimit {
        field: &'static IdField,
        limit: u8,
        requested: u8,
    },
    /// A field value does not fit in 4 bits.
    OutOfRange {
        field: &'static IdField,
        requested: u8,
    },
    /// The cache topology policy could not be applied.
    Cache(super::cache::CacheError),
    /// No physical CPU was given.
    NoCpus,
    /// A PMU was asked for on cores without a PMUv3.
    NoPmu,
    /// More PMU event counters were asked for than the cores have.
    PmuCounters { requested: u8, limit: u8 },
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::AboveLimit {
                field,
                limit,
                requested,
            } => write!(
                f,
                "{field} = {requested:#x} is above what this machine offers a guest ({limit:#x})"
            ),
            ModelError::OutOfRange { field, requested } => {
                write!(f, "{field} = {requested:#x} does not fit in 4 bits")
            }
            ModelError::Cache(e) => write!(f, "cache topology: {e}"),
            ModelError::NoCpus => write!(f, "no physical CPU to build a CPU model from"),
            ModelError::NoPmu => write!(f, "pmu: the cores this VM runs on have no PMUv3"),
            ModelError::PmuCounters { requested, limit } => write!(
                f,
                "pmu_counters: {requested} counters asked for, but the cores this VM runs on have {limit} (PMCR_EL0.N)"
            ),
        }
    }
}

/// One VM's CPU as all of its vCPUs see it, on whichever physical CPU.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmCpuModel {
    id: IdRegs,
    midr_el1: u64,
    ctr_el0: u64,
    cache: CacheTopology,
    hw_ctr_matches: bool,
    /// Cached FEAT_CCIDX of the guest view (read on every CCSIDR trap).
    ccidx: bool,
    /// The SVE vector-length cap in quadwords; 0: no SVE ([`VmCpuModel::set_sve`]).
    sve_vq: usize,
    /// What the guest view offers of SVE (ID_AA64PFR0_EL1.SVE, ID_AA64ZFR0_EL1)
    /// before a cap is set; `None` once the config lowered the SVE field to 0.
    sve_offer: Option<(u8, u64)>,
    /// CPACR_EL1 bits kept set in hardware whatever the guest writes (see
    /// [`VmCpuModel::cpacr_el1_hw`]).
    cpacr_el1_forced: u64,
    /// The PMUv3 the cores could give this VM (the common PMUVer capped at
    /// [`super::pmu::MAX_VERSION`], the fewest event counters), if any.
    host_pmu: Option<PmuModel>,
    /// The guest's PMU ([`VmCpuModel::enable_pmu`]); `None`: hidden.
    pmu: Option<PmuModel>,
}

/// ID_AA64DFR0_EL1.PMUVer (11:8).
const PMUVER: IdField = u(DFR0, "PMUVer", 8, Lower, HIDE);

/// CPACR_EL1.FPEN (21:20): a CPACR_EL1 control every guest of this CPU model has
/// (with ZEN for a VM with SVE; SMEN is RES0 while SME is hidden, TTA while trace is).
pub const CPACR_EL1_FPEN: u64 = 0b11 << 20;
/// CPACR_EL1.ZEN (17:16) and SMEN (25:24).
const CPACR_EL1_ZEN: u64 = 0b11 << 16;
const CPACR_EL1_SMEN: u64 = 0b11 << 24;

impl VmCpuModel {
    /// Builds a VM's model from the system-wide values, the cores the VM may
    /// run on (for the `Host` cache policy and the TID2/TID4 choice), the cache
    /// policy from its config and the size of its IPA space in bits (the
    /// stage-2 input size): ID_AA64MMFR0_EL1.PARange shows no more than that,
    /// since the guest's "physical" addresses are IPAs and an access beyond the
    /// stage-2 input range faults (Arm ARM, ID_AA64MMFR0_EL1.PARange; KVM does
    /// the same for its VM's IPA size).
    pub fn new(
        system: &SystemCpuInfo,
        vm_cpus: &[HostCpu],
        policy: &CachePolicy,
        ipa_bits: u32,
    ) -> Result<Self, ModelError> {
        if vm_cpus.is_empty() {
            return Err(ModelError::NoCpus);
        }
        let ctr_el0 = system.ctr_el0;
        let cores: alloc::vec::Vec<CoreCaches> = vm_cpus.iter().map(HostCpu::caches).collect();
        let cache =
            CacheTopology::for_policy(policy, ctr_el0, &cores).map_err(ModelError::Cache)?;
        let mut id = system.guest_id();
        let limit = pa_range_for_bits(ipa_bits);
        if id.field(&PARANGE) > limit {
            id.set_field(&PARANGE, limit);
        }
        let pmu_version = system.id.field(&PMUVER);
        let pmu_counters = vm_cpus.iter().map(|c| c.pmu_counters).min().unwrap_or(0);
        let host_pmu = ((1..0xf).contains(&pmu_version) && pmu_counters > 0).then(|| PmuModel {
            counters: pmu_counters.min(31),
            version: pmu_version.min(super::pmu::MAX_VERSION),
        });
        let sve_offer = Some((id.field(&SVE), id.get(ID_AA64ZFR0_EL1).unwrap_or(0)));
        let mut model = VmCpuModel {
            sve_vq: 0,
            sve_offer,
            ccidx: has_ccidx(&id),
            host_pmu,
            pmu: None,
            id,
            midr_el1: system.midr_el1,
            ctr_el0,
            cache,
            hw_ctr_matches: vm_cpus.iter().all(|c| c.ctr_el0 == ctr_el0),
            cpacr_el1_forced: vm_cpus.iter().fold(0, |acc, c| {
                let field = |reg, shift: u32| (c.id.get(reg).unwrap_or(0) >> shift) & 0xf;
                acc | if field(ID_AA64PFR0_EL1, 32) != 0 {
                    CPACR_EL1_ZEN
                } else {
                    0
                } | if field(ID_AA64PFR1_EL1, 24) != 0 {
                    CPACR_EL1_SMEN
                } else {
                    0
                }
            }),
        };
        // SVE is shown only once a vector-length cap is set.
        model.set_sve(0);
        Ok(model)
    }

    /// Gives the VM SVE with a vector-length cap of `vq` quadwords (from
    /// [`sve_cap`]), or none (`vq` = 0, or ID_AA64PFR0_EL1.SVE lowered to 0 by
    /// the config): without it ID_AA64PFR0_EL1.SVE and ID_AA64ZFR0_EL1 read 0
    /// and every SVE access is UNDEFINED (CPTR_EL2.TZ); with it the guest's own
    /// CPACR_EL1.ZEN takes effect.
    pub fn set_sve(&mut self, vq: usize) {
        let offer = self.sve_offer.filter(|(sve, _)| *sve != 0);
        let (sve, zfr0) = match offer {
            Some(o) if vq != 0 => o,
            _ => (0, 0),
        };
        self.sve_vq = if sve != 0 { vq } else { 0 };
        self.id.set_field(&SVE, sve);
        self.id.set(ID_AA64ZFR0_EL1, zfr0);
    }

    /// The SVE vector-length cap in quadwords (128 bits each); 0 without SVE.
    pub fn sve_vq(&self) -> usize {
        self.sve_vq
    }

    /// The CPACR_EL1 bits the guest controls: FPEN, and ZEN with SVE.
    pub fn cpacr_el1_guest_mask(&self) -> u64 {
        if self.sve_vq != 0 {
            CPACR_EL1_FPEN | CPACR_EL1_ZEN
        } else {
            CPACR_EL1_FPEN
        }
    }

    /// The CPACR_EL1 value to hold in hardware for a guest that wrote `guest`.
    /// On a core with SVE or SME (hidden by the model) the guest's own
    /// CPACR_EL1.ZEN/SMEN = 0 would trap SVE/SME accesses at its EL1 with EC
    /// 0x19/0x1D — a hidden feature showing through, since the CPACR_EL1 trap
    /// comes before EL2's. So CPACR_EL1 is trapped (CPTR_EL2.TCPAC) and emulated:
    /// the guest reads back its FPEN, and the hardware keeps ZEN/SMEN = 0b11, so
    /// every SVE/SME access reaches CPTR_EL2.TZ/TSM and is UNDEFINED to the guest.
    pub fn cpacr_el1_hw(&self, guest: u64) -> u64 {
        let mask = self.cpacr_el1_guest_mask();
        (guest & mask) | (self.cpacr_el1_forced & !mask)
    }

    /// The PMUv3 the cores could give this VM, if they have one.
    pub fn host_pmu(&self) -> Option<&PmuModel> {
        self.host_pmu.as_ref()
    }

    /// The guest's PMU, if it has one.
    pub fn pmu(&self) -> Option<&PmuModel> {
        self.pmu.as_ref()
    }

    /// Gives the guest a PMUv3 with `counters` event counters (`None`: as many as
    /// the cores have), shown in ID_AA64DFR0_EL1.PMUVer at the cores' version
    /// capped at what the emulation handles ([`super::pmu::MAX_VERSION`]).
    pub fn enable_pmu(&mut self, counters: Option<u8>) -> Result<(), ModelError> {
        let host = self.host_pmu.ok_or(ModelError::NoPmu)?;
        let n = counters.unwrap_or(host.counters);
        if n > host.counters || n == 0 {
            return Err(ModelError::PmuCounters {
                requested: n,
                limit: host.counters,
            });
        }
        self.id.set_field(&PMUVER, host.version);
        self.pmu = Some(PmuModel {
            counters: n,
            version: host.version,
        });
        Ok(())
    }

    /// Lowers one field for this VM (e.g. `ID_AA64PFR0_EL1.GIC = 0` for a
    /// GICv2 VM). Allowed when the requested value is what the field's
    /// combine rule would pick between it and the current value (the check
    /// of KVM's `arm64_check_features`): for lower-safe fields, not above it.
    pub fn lower(&mut self, field: &'static IdField, value: u8) -> Result<(), ModelError> {
        if value > 0xf {
            return Err(ModelError::OutOfRange {
                field,
                requested: value,
            });
        }
        let cur = self.id.field(field);
        if field.safe_value(value, cur) != value {
            return Err(ModelError::AboveLimit {
                field,
                limit: cur,
                requested: value,
            });
        }
        self.id.set_field(field, value);
        self.ccidx = has_ccidx(&self.id);
        if field.reg == SVE.reg && field.shift == SVE.shift && value == 0 {
            self.sve_offer = None;
        }
        // A lowered PMUVer is the PMU the guest gets (0: none).
        if field.reg == PMUVER.reg && field.shift == PMUVER.shift {
            self.pmu = match self.pmu {
                Some(p) if value != 0 => Some(PmuModel {
                    version: value,
                    ..p
                }),
                _ => None,
            };
        }
        Ok(())
    }

    /// A trapped ID-space read: the VM's value, or `None` outside the space.
    pub fn id_reg(&self, reg: SysReg) -> Option<u64> {
        self.id.get(reg)
    }

    pub fn id_regs(&self) -> &IdRegs {
        &self.id
    }

    /// The MIDR_EL1 to program into VPIDR_EL2 for every vCPU.
    pub fn midr_el1(&self) -> u64 {
        self.midr_el1
    }

    /// CTR_EL0 for every vCPU; also the answer of the TID2 fast path.
    pub fn ctr_el0(&self) -> u64 {
        self.ctr_el0
    }

    pub fn cache(&self) -> &CacheTopology {
        &self.cache
    }

    /// Whether the guest sees FEAT_CCIDX (64-bit CCSIDR_EL1, CCSIDR2_EL1).
    pub fn ccidx(&self) -> bool {
        self.ccidx
    }

    /// Whether every core the VM may run on has exactly the VM's CTR_EL0 in
    /// hardware: the condition for leaving CTR_EL0 untrapped (TID4).
    pub fn hw_ctr_matches(&self) -> bool {
        self.hw_ctr_matches
    }

    /// HCR_EL2.TID4 or TID2 for this VM, given [`SystemCpuInfo::evt`].
    pub fn cache_trap(&self, evt: bool) -> CacheTrap {
        cache_trap(evt, self.hw_ctr_matches)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::sysreg::cache::{CacheError, ExplicitCaches};

    /// Ferrovisor's usual stage 2 (4 KiB granule, no LPA2): a 48-bit IPA space.
    const IPA_48: u32 = 48;

    fn field(name: &str) -> &'static IdField {
        IdField::by_name(name).unwrap()
    }
    fn get(id: &IdRegs, name: &str) -> u8 {
        id.field(field(name))
    }

    /// QEMU 10.0.2 (the version TOOLCHAIN.md pins) `-M
    /// virt,virtualization=on,gic-version=3 -cpu max`, read at EL2 by a tiny
    /// bare-metal program. The values come from `aarch64_max_tcg_initfn`
    /// (target/arm/tcg/cpu64.c) with the virt board's changes (EL3 absent
    /// without secure=on, GIC = 1 with a GICv3).
    pub(crate) fn qemu_max() -> HostCpu {
        let mut ccsidr_el1 = [0; CSSELR_SLOTS];
        ccsidr_el1[..3].copy_from_slice(&[0x700f_e01a, 0x201f_e012, 0x70ff_e07a]);
        HostCpu {
            midr_el1: 0x000f_0510,
            id: IdRegs::ZERO
                .with(ID_AA64PFR0_EL1, 0x1301_0011_2111_0222)
                .with(ID_AA64PFR1_EL1, 0x0000_0010_0100_0121)
                .with(ID_AA64ZFR0_EL1, 0x0110_1101_0021_0021)
                .with(ID_AA64SMFR0_EL1, 0x80f1_00fd_0000_0000)
                .with(ID_AA64DFR0_EL1, 0x1000_0000_1030_560a)
                .with(ID_AA64ISAR0_EL1, 0x1221_1111_1021_2120)
                .with(ID_AA64ISAR1_EL1, 0x0111_2111_1021_1502)
                .with(ID_AA64ISAR2_EL1, 0x0000_0000_0011_0012)
                .with(ID_AA64MMFR0_EL1, 0x2100_0323_1020_1126)
                .with(ID_AA64MMFR1_EL1, 0x0110_1120_1031_2122)
                .with(ID_AA64MMFR2_EL1, 0x1221_0111_1201_1011)
                .with(ID_AA64MMFR3_EL1, 0x1000_0000_0000_0000)
                .with(SysReg::new(3, 0, 0, 1, 0), 0x1102_0131) // ID_PFR0_EL1
                .with(SysReg::new(3, 0, 0, 3, 0), 0x1011_0222), // MVFR0_EL1
            ctr_el0: 0xb444_c004,
            clidr_el1: 0x0200_0023,
            ccsidr_el1,
            pmu_counters: 6,
            mpamidr_el1: 0,
            // QEMU's max implements every length up to 2048 bits.
            sve_vqs: 0xffff,
        }
    }

    /// QEMU 10.0.2 `-cpu cortex-a57` on the same board. The constants are
    /// `aarch64_a57_initfn` (target/arm/cpu64.c: id_aa64pfr0 = 0x00002222,
    /// id_aa64dfr0 = 0x10305106, id_aa64isar0 = 0x00011120, id_aa64mmfr0 =
    /// 0x00001124, ctr = 0x8444c004, clidr = 0x0a200023); the board clears
    /// EL3 and sets GIC, giving PFR0 = 0x01000222.
    pub(crate) fn qemu_a57() -> HostCpu {
        let mut ccsidr_el1 = [0; CSSELR_SLOTS];
        ccsidr_el1[..3].copy_from_slice(&[0x700f_e01a, 0x201f_e012, 0x70ff_e07a]);
        HostCpu {
            midr_el1: 0x411f_d070,
            id: IdRegs::ZERO
                .with(ID_AA64PFR0_EL1, 0x0100_0222)
                .with(ID_AA64DFR0_EL1, 0x1030_5106)
                .with(ID_AA64ISAR0_EL1, 0x0001_1120)
                .with(ID_AA64MMFR0_EL1, 0x0000_1124)
                .with(SysReg::new(3, 0, 0, 1, 0), 0x0131),
            ctr_el0: 0x8444_c004,
            clidr_el1: 0x0a20_0023,
            ccsidr_el1,
            pmu_counters: 6,
            mpamidr_el1: 0,
            sve_vqs: 0,
        }
    }

    /// QEMU 10.0.2 `-cpu cortex-a76` and `-cpu cortex-a55`, same board: a
    /// real big.LITTLE pairing (DynamIQ) whose cores differ in PFR0
    /// (EL1/EL2 AArch32 support, CSV2/CSV3), CTR_EL0.L1Ip and cache sizes.
    pub(crate) fn qemu_a76_a55() -> [HostCpu; 2] {
        let common = IdRegs::ZERO
            .with(ID_AA64PFR1_EL1, 0x10)
            .with(ID_AA64DFR0_EL1, 0x1030_5408)
            .with(ID_AA64ISAR0_EL1, 0x0000_1000_1021_1120)
            .with(ID_AA64ISAR1_EL1, 0x0010_0001)
            .with(ID_AA64MMFR0_EL1, 0x0010_1122)
            .with(ID_AA64MMFR1_EL1, 0x1021_2122)
            .with(ID_AA64MMFR2_EL1, 0x1011);
        let mut a76 = [0; CSSELR_SLOTS];
        a76[..3].copy_from_slice(&[0x701f_e01a, 0x201f_e01a, 0x707f_e03a]);
        let mut a55 = [0; CSSELR_SLOTS];
        a55[..3].copy_from_slice(&[0x700f_e01a, 0x200f_e01a, 0x703f_e07a]);
        [
            HostCpu {
                midr_el1: 0x414f_d0b1,
                id: common.with(ID_AA64PFR0_EL1, 0x1100_0000_1111_0112),
                ctr_el0: 0x8444_c004,
                clidr_el1: 0x8200_0023,
                ccsidr_el1: a76,
                pmu_counters: 6,
                mpamidr_el1: 0,
                sve_vqs: 0,
            },
            HostCpu {
                midr_el1: 0x412f_d050,
                id: common.with(ID_AA64PFR0_EL1, 0x1111_0222),
                ctr_el0: 0x8444_8004,
                clidr_el1: 0x8200_0023,
                ccsidr_el1: a55,
                pmu_counters: 6,
                mpamidr_el1: 0,
                sve_vqs: 0,
            },
        ]
    }

    #[test]
    fn field_table_has_no_overlaps_and_unique_names() {
        for (i, a) in ID_FIELDS.iter().enumerate() {
            assert!(a.shift <= 60 && a.shift % 4 == 0, "{a}");
            for b in &ID_FIELDS[i + 1..] {
                assert!(
                    !(a.reg == b.reg && a.shift == b.shift),
                    "{a} and {b} overlap"
                );
                assert!(!(a.reg == b.reg && a.name == b.name), "{a} twice");
            }
            assert_eq!(IdField::by_name(&alloc::format!("{a}")), Some(a));
        }
    }

    #[test]
    fn safe_values_follow_each_rule() {
        let fp = field("ID_AA64PFR0_EL1.FP");
        // Signed: 0xF (not implemented) is below 0 and 1.
        assert_eq!(fp.safe_value(0xf, 1), 0xf);
        assert_eq!(fp.safe_value(1, 0xf), 0xf);
        assert_eq!(fp.safe_value(0, 1), 0);
        let el3 = field("ID_AA64PFR0_EL1.EL3");
        assert_eq!(el3.safe_value(0, 1), 0);
        let debug = field("ID_AA64DFR0_EL1.DebugVer");
        assert_eq!(debug.safe_value(0xa, 0x8), 6);
        assert_eq!(debug.safe_value(0x8, 0x8), 8);
        let spec_sei = field("ID_AA64MMFR1_EL1.SpecSEI");
        assert_eq!(spec_sei.safe_value(0, 1), 1);
        let hz = IdField {
            safe: Safe::HigherOrZero,
            ..*spec_sei
        };
        assert_eq!(hz.safe_value(0, 3), 0);
        assert_eq!(hz.safe_value(4, 3), 4);
    }

    #[test]
    fn single_cpu_qemu_max_is_sanitized_and_hidden() {
        let sys = SystemCpuInfo::new(&[qemu_max()]).unwrap();
        // The system-wide value keeps hardware fields (undescribed ones are 0).
        assert_eq!(get(&sys.id, "ID_AA64PFR0_EL1.SVE"), 1);
        let g = sys.guest_id();
        for hidden in [
            "ID_AA64PFR0_EL1.EL2",
            "ID_AA64PFR0_EL1.RAS",
            "ID_AA64PFR0_EL1.MPAM",
            "ID_AA64PFR0_EL1.AMU",
            "ID_AA64PFR0_EL1.SEL2",
            "ID_AA64PFR1_EL1.MTE",
            "ID_AA64PFR1_EL1.SME",
            "ID_AA64PFR1_EL1.NMI",
            "ID_AA64DFR0_EL1.PMUVer",
            "ID_AA64DFR0_EL1.PMSVer",
            "ID_AA64DFR0_EL1.TraceBuffer",
            "ID_AA64DFR0_EL1.HPMN0",
            "ID_AA64ISAR1_EL1.APA",
            "ID_AA64ISAR1_EL1.GPA",
            "ID_AA64MMFR0_EL1.FGT",
            "ID_AA64MMFR0_EL1.TGran4_2",
            "ID_AA64MMFR1_EL1.VH",
            "ID_AA64MMFR2_EL1.NV",
            "ID_AA64MMFR2_EL1.EVT",
        ] {
            assert_eq!(get(&g, hidden), 0, "{hidden}");
        }
        // Kept: FP/AdvSIMD (FP16), debug, atomics, PAN, EL3 as the hardware says.
        assert_eq!(get(&g, "ID_AA64PFR0_EL1.FP"), 1);
        assert_eq!(get(&g, "ID_AA64PFR0_EL1.AdvSIMD"), 1);
        assert_eq!(get(&g, "ID_AA64PFR0_EL1.EL3"), 0);
        assert_eq!(get(&g, "ID_AA64PFR0_EL1.GIC"), 1);
        assert_eq!(get(&g, "ID_AA64DFR0_EL1.DebugVer"), 0xa);
        assert_eq!(get(&g, "ID_AA64DFR0_EL1.BRPs"), 5);
        assert_eq!(get(&g, "ID_AA64DFR0_EL1.WRPs"), 3);
        assert_eq!(get(&g, "ID_AA64ISAR0_EL1.Atomic"), 2);
        assert_eq!(get(&g, "ID_AA64MMFR1_EL1.PAN"), 3);
        assert_eq!(get(&g, "ID_AA64MMFR0_EL1.ECV"), 1); // limited from 2
        // AArch64-only: EL0 (2 = AArch32 too) limited to 1.
        assert_eq!(get(&g, "ID_AA64PFR0_EL1.EL0"), 1);
        // Whole registers that must read zero.
        for reg in [ID_AA64SMFR0_EL1, ID_AA64MMFR3_EL1] {
            assert_eq!(g.get(reg), Some(0), "{reg}");
        }
        // SVE and its instruction groups are offered (a VM shows them only
        // with a vector-length cap: `sve_is_shown_only_with_a_cap`).
        assert_eq!(get(&g, "ID_AA64PFR0_EL1.SVE"), 1);
        assert_eq!(g.get(ID_AA64ZFR0_EL1), Some(0x0110_1101_0021_0021));
        assert_eq!(g.get(SysReg::new(3, 0, 0, 1, 0)), Some(0)); // ID_PFR0_EL1
        assert_eq!(g.get(SysReg::new(3, 0, 0, 3, 0)), Some(0)); // MVFR0_EL1
        // The exact guest PFR0: EL0 = EL1 = 1, EL2 = EL3 = 0, FP = AdvSIMD =
        // 1, GIC = 1, DIT = 1, CSV2 = 1 (the hardware's CSV2_3 would promise
        // SCXTNUM_ELx), CSV3 = 1.
        assert_eq!(g.get(ID_AA64PFR0_EL1), Some(0x1101_0001_0111_0011));
        assert_eq!(get(&g, "ID_AA64PFR1_EL1.CSV2_frac"), 0);
    }

    #[test]
    fn sve_is_shown_only_with_a_cap() {
        let sys = SystemCpuInfo::new(&[qemu_max()]).unwrap();
        let mut m = VmCpuModel::new(&sys, &[qemu_max()], &CachePolicy::Virtual, IPA_48).unwrap();
        // Built without SVE: hidden, ZEN kept set in hardware, the guest's
        // CPACR_EL1 holds FPEN alone.
        assert_eq!(m.sve_vq(), 0);
        assert_eq!(get(m.id_regs(), "ID_AA64PFR0_EL1.SVE"), 0);
        assert_eq!(m.id_reg(ID_AA64ZFR0_EL1), Some(0));
        assert_eq!(m.cpacr_el1_guest_mask(), CPACR_EL1_FPEN);
        assert_eq!(m.cpacr_el1_hw(0) & CPACR_EL1_ZEN, CPACR_EL1_ZEN);
        // With a cap, SVE shows and the guest's ZEN counts.
        let mut fresh = m.clone();
        fresh.set_sve(4);
        assert_eq!(fresh.sve_vq(), 4);
        assert_eq!(get(fresh.id_regs(), "ID_AA64PFR0_EL1.SVE"), 1);
        assert_eq!(fresh.id_reg(ID_AA64ZFR0_EL1), Some(0x0110_1101_0021_0021));
        assert_eq!(fresh.cpacr_el1_hw(0) & CPACR_EL1_ZEN, 0);
        assert_eq!(
            fresh.cpacr_el1_hw(CPACR_EL1_ZEN),
            CPACR_EL1_ZEN | (m.cpacr_el1_forced & CPACR_EL1_SMEN)
        );
        // The config lowering ID_AA64PFR0_EL1.SVE to 0 wins over a cap.
        m.lower(field("ID_AA64PFR0_EL1.SVE"), 0).unwrap();
        m.set_sve(4);
        assert_eq!(m.sve_vq(), 0);
    }

    #[test]
    fn sve_cap_is_the_longest_length_every_core_implements_alike() {
        let with = |vqs: u16| HostCpu {
            sve_vqs: vqs,
            ..qemu_max()
        };
        // Every length to 2048 bits: the default is 16 quadwords.
        assert_eq!(sve_cap(&[qemu_max()], None), Ok(16));
        assert_eq!(sve_cap(&[qemu_max()], Some(384)), Ok(3));
        assert_eq!(sve_cap(&[qemu_max(), qemu_max()], Some(2048)), Ok(16));
        // Powers of two only (a core like Neoverse V1: 128, 256).
        let pow2 = with(0b1011);
        assert_eq!(sve_cap(&[pow2], None), Ok(4));
        assert_eq!(
            sve_cap(&[pow2], Some(384)),
            Err(SveError::Unsupported {
                requested: 384,
                max: 512
            })
        );
        assert_eq!(
            sve_cap(&[pow2], Some(1024)),
            Err(SveError::AboveMax {
                requested: 1024,
                max: 512
            })
        );
        // Cores that disagree below a common length: the cap stops below.
        assert_eq!(sve_cap(&[with(0b1011), with(0b1111)], None), Ok(2));
        assert_eq!(
            sve_cap(&[with(0b1011), with(0b1111)], Some(512)),
            Err(SveError::AboveMax {
                requested: 512,
                max: 256
            })
        );
        // No SVE: none by default, refused when asked for.
        assert_eq!(sve_cap(&[qemu_a57()], None), Ok(0));
        assert_eq!(
            sve_cap(&[qemu_max(), qemu_a57()], Some(256)),
            Err(SveError::NoSve)
        );
        assert!(SveError::NoSve.to_string().contains("no SVE"));
    }

    #[test]
    fn pa_range_shows_the_ipa_space_the_vm_has() {
        assert_eq!(
            [32, 35, 36, 40, 42, 44, 47, 48, 52, 56, 64].map(pa_range_for_bits),
            [0, 0, 1, 2, 3, 4, 4, 5, 6, 7, 7]
        );
        let parange = |cpu: HostCpu, ipa| {
            let sys = SystemCpuInfo::new(&[cpu]).unwrap();
            let m = VmCpuModel::new(&sys, &[cpu], &CachePolicy::Virtual, ipa).unwrap();
            get(m.id_regs(), "ID_AA64MMFR0_EL1.PARange")
        };
        // -cpu max has 52-bit PAs (6), but stage 2 gives a VM 48 bits (5).
        assert_eq!(get(&qemu_max().id, "ID_AA64MMFR0_EL1.PARange"), 6);
        assert_eq!(parange(qemu_max(), IPA_48), 5);
        assert_eq!(parange(qemu_max(), 40), 2);
        // cortex-a57: 44 bits of both, and never raised by a larger IPA limit.
        assert_eq!(parange(qemu_a57(), 44), 4);
        assert_eq!(parange(qemu_a57(), IPA_48), 4);
        // The config may lower it further, not raise it past the IPA size.
        let sys = SystemCpuInfo::new(&[qemu_max()]).unwrap();
        let mut m = VmCpuModel::new(&sys, &[qemu_max()], &CachePolicy::Virtual, IPA_48).unwrap();
        assert!(m.lower(field("ID_AA64MMFR0_EL1.PARange"), 6).is_err());
        m.lower(field("ID_AA64MMFR0_EL1.PARange"), 2).unwrap();
    }

    #[test]
    fn qemu_max_and_a57_combine_field_by_field() {
        let sys = SystemCpuInfo::new(&[qemu_max(), qemu_a57()]).unwrap();
        let g = sys.guest_id();
        // a57 has no FP16 (FP = 0), no LSE atomics, 44-bit PA, DebugVer 6.
        assert_eq!(get(&g, "ID_AA64PFR0_EL1.FP"), 0);
        assert_eq!(get(&g, "ID_AA64ISAR0_EL1.Atomic"), 0);
        assert_eq!(get(&g, "ID_AA64ISAR0_EL1.AES"), 2);
        assert_eq!(get(&g, "ID_AA64MMFR0_EL1.PARange"), 4);
        assert_eq!(get(&g, "ID_AA64DFR0_EL1.DebugVer"), 6);
        assert_eq!(get(&g, "ID_AA64MMFR0_EL1.TGran4"), 0);
        assert_eq!(get(&g, "ID_AA64PFR0_EL1.CSV2"), 0);
        assert_eq!(g.get(ID_AA64ISAR1_EL1), Some(0));
        assert_eq!(sys.midr_el1, 0x000f_0510); // the boot CPU's
        assert_eq!(sys.ctr_el0, 0x8444_c004);
        // Order of CPUs does not change the ID view.
        let sys2 = SystemCpuInfo::new(&[qemu_a57(), qemu_max()]).unwrap();
        assert_eq!(sys2.guest_id(), g);
    }

    #[test]
    fn signed_fields_take_not_implemented_over_implemented() {
        let mut no_fp = qemu_a57();
        // An FP-less core: FP = AdvSIMD = 0xF, and no 64 KiB granule (TGran64 = 0xF).
        no_fp
            .id
            .set(ID_AA64PFR0_EL1, 0x0100_0000 | 0x00ff_0000 | 0x22);
        no_fp.id.set(ID_AA64MMFR0_EL1, 0x0f00_1124);
        let sys = SystemCpuInfo::new(&[qemu_max(), no_fp]).unwrap();
        assert_eq!(get(&sys.id, "ID_AA64PFR0_EL1.FP"), 0xf);
        assert_eq!(get(&sys.id, "ID_AA64PFR0_EL1.AdvSIMD"), 0xf);
        assert_eq!(get(&sys.id, "ID_AA64MMFR0_EL1.TGran64"), 0xf);
        // And the guest limits do not turn -1 into anything else.
        assert_eq!(get(&sys.guest_id(), "ID_AA64PFR0_EL1.FP"), 0xf);
    }

    #[test]
    fn big_little_a76_a55_pair() {
        let [a76, a55] = qemu_a76_a55();
        let sys = SystemCpuInfo::new(&[a76, a55]).unwrap();
        // EL1: A76 is AArch64-only at EL1 (1), A55 also AArch32 (2) -> 1.
        assert_eq!(get(&sys.id, "ID_AA64PFR0_EL1.EL1"), 1);
        assert_eq!(get(&sys.id, "ID_AA64PFR0_EL1.EL2"), 1);
        // CSV2/CSV3: only the A76 is immune -> 0.
        assert_eq!(get(&sys.id, "ID_AA64PFR0_EL1.CSV2"), 0);
        assert_eq!(get(&sys.id, "ID_AA64PFR0_EL1.CSV3"), 0);
        // CTR_EL0: IDC from CLIDR (LoUU = LoUIS = 0), L1Ip VIPT from the A55.
        assert_eq!(sys.ctr_el0, 0x9444_8004);
        let m = VmCpuModel::new(&sys, &[a76, a55], &CachePolicy::Host, IPA_48).unwrap();
        // Neither core's hardware CTR_EL0 equals the VM's: TID2 is needed.
        assert!(!m.hw_ctr_matches());
        let big_only = VmCpuModel::new(&sys, &[a76], &CachePolicy::Virtual, IPA_48).unwrap();
        assert!(!big_only.hw_ctr_matches());
        // Same ID view whichever cores the VM runs on.
        assert_eq!(big_only.id_regs(), m.id_regs());
    }

    #[test]
    fn lower_accepts_lower_values_and_names_the_field_otherwise() {
        let sys = SystemCpuInfo::new(&[qemu_max()]).unwrap();
        let mut m = VmCpuModel::new(&sys, &[qemu_max()], &CachePolicy::Virtual, IPA_48).unwrap();
        m.lower(field("ID_AA64PFR0_EL1.GIC"), 0).unwrap();
        assert_eq!(get(m.id_regs(), "ID_AA64PFR0_EL1.GIC"), 0);
        m.lower(field("ID_AA64ISAR0_EL1.Atomic"), 0).unwrap();
        m.lower(field("ID_AA64PFR0_EL1.SVE"), 0).unwrap(); // "no SVE" is always fine
        // FP: signed, lowering 1 -> 0 -> 0xF (not implemented) is allowed.
        m.lower(field("ID_AA64PFR0_EL1.FP"), 0).unwrap();
        m.lower(field("ID_AA64PFR0_EL1.FP"), 0xf).unwrap();
        let err = m.lower(field("ID_AA64PFR0_EL1.FP"), 0).unwrap_err();
        assert_eq!(
            err,
            ModelError::AboveLimit {
                field: field("ID_AA64PFR0_EL1.FP"),
                limit: 0xf,
                requested: 0
            }
        );
        // Raising a hidden feature names the field.
        let err = m.lower(field("ID_AA64PFR0_EL1.SVE"), 1).unwrap_err();
        let msg = alloc::format!("{err}");
        assert!(msg.contains("ID_AA64PFR0_EL1.SVE"), "{msg}");
        // Raising above the hardware.
        assert!(m.lower(field("ID_AA64MMFR0_EL1.PARange"), 7).is_err());
        m.lower(field("ID_AA64MMFR0_EL1.PARange"), 2).unwrap();
        // Exact fields: only the current or the safe value.
        assert!(m.lower(field("ID_AA64DFR0_EL1.DebugVer"), 8).is_err());
        m.lower(field("ID_AA64DFR0_EL1.DebugVer"), 6).unwrap();
        assert!(matches!(
            m.lower(field("ID_AA64PFR0_EL1.EL0"), 16),
            Err(ModelError::OutOfRange { .. })
        ));
        assert_eq!(IdField::by_name("ID_AA64PFR0_EL1.NOPE"), None);
    }

    #[test]
    fn model_uses_the_policy_and_ccidx_format() {
        let sys = SystemCpuInfo::new(&[qemu_max()]).unwrap();
        let m = VmCpuModel::new(&sys, &[qemu_max()], &CachePolicy::Host, IPA_48).unwrap();
        assert!(!m.ccidx());
        assert_eq!(m.cache().clidr_el1(), 0x0200_0023);
        assert_eq!(m.cache().ccsidr_el1(0, m.ccidx()), 0x000f_e01a);
        assert_eq!(m.ctr_el0(), 0xb444_c004);
        assert!(m.hw_ctr_matches());
        assert_eq!(m.midr_el1(), 0x000f_0510);
        // -cpu max has FEAT_EVT (MMFR2.EVT = 2) and a uniform CTR: TID4.
        assert!(sys.evt());
        assert_eq!(m.cache_trap(sys.evt()), CacheTrap::Tid4);
        // cortex-a57 has no FEAT_EVT: TID2 (and CTR_EL0 must be answered).
        let a57 = SystemCpuInfo::new(&[qemu_a57()]).unwrap();
        assert!(!a57.evt());
        let m57 = VmCpuModel::new(&a57, &[qemu_a57()], &CachePolicy::Virtual, IPA_48).unwrap();
        assert_eq!(m57.cache_trap(a57.evt()), CacheTrap::Tid2);
        // A system with one EVT-less core has no usable TID4.
        assert!(!SystemCpuInfo::new(&[qemu_max(), qemu_a57()]).unwrap().evt());
        let bad = CachePolicy::Explicit(ExplicitCaches {
            clidr_el1: 0b101,
            ccsidr_el1: alloc::vec![],
            ccidx: false,
        });
        assert_eq!(
            VmCpuModel::new(&sys, &[qemu_max()], &bad, IPA_48),
            Err(ModelError::Cache(CacheError::ReservedCtype { level: 1 }))
        );
        assert_eq!(
            VmCpuModel::new(&sys, &[], &CachePolicy::Virtual, IPA_48),
            Err(ModelError::NoCpus)
        );
        assert_eq!(SystemCpuInfo::new(&[]), None);
    }

    #[test]
    fn pmu_shown_only_when_enabled_capped_and_sized() {
        let dfr0 = field("ID_AA64DFR0_EL1.PMUVer");
        let sys = SystemCpuInfo::new(&[qemu_max()]).unwrap();
        let mut m = VmCpuModel::new(&sys, &[qemu_max()], &CachePolicy::Virtual, IPA_48).unwrap();
        assert_eq!(m.id_regs().field(dfr0), 0, "hidden until enabled");
        assert_eq!(m.pmu(), None);
        assert_eq!(
            m.host_pmu(),
            Some(&PmuModel {
                counters: 6,
                version: 6
            })
        );
        assert_eq!(
            m.enable_pmu(Some(7)),
            Err(ModelError::PmuCounters {
                requested: 7,
                limit: 6
            })
        );
        m.enable_pmu(Some(4)).unwrap();
        assert_eq!(m.id_regs().field(dfr0), 6);
        assert_eq!(m.pmu().map(|p| p.counters), Some(4));
        // Lowered by the config: the guest's PMU follows; 0 hides it.
        m.lower(dfr0, 4).unwrap();
        assert_eq!(m.pmu().map(|p| p.version), Some(4));
        m.lower(dfr0, 0).unwrap();
        assert_eq!(m.pmu(), None);
        // Cortex-A57: PMUv3 (1), all 6 counters by default.
        let sys = SystemCpuInfo::new(&[qemu_a57()]).unwrap();
        let mut m = VmCpuModel::new(&sys, &[qemu_a57()], &CachePolicy::Virtual, IPA_48).unwrap();
        m.enable_pmu(None).unwrap();
        assert_eq!(
            m.pmu(),
            Some(&PmuModel {
                counters: 6,
                version: 1
            })
        );
        assert_eq!(m.id_regs().field(dfr0), 1);
        // No PMU on the cores: refused.
        let mut bare = qemu_a57();
        bare.id = bare.id.with(ID_AA64DFR0_EL1, 0x1030_5006);
        let sys = SystemCpuInfo::new(&[bare]).unwrap();
        let mut m = VmCpuModel::new(&sys, &[bare], &CachePolicy::Virtual, IPA_48).unwrap();
        assert_eq!(m.host_pmu(), None);
        assert_eq!(m.enable_pmu(None), Err(ModelError::NoPmu));
    }
}
