//! A trap is a value: ESR_EL2 (with FAR_EL2 and HPFAR_EL2) decoded into a typed [`Exit`].
//!
//! The vector saves the guest's registers and reads ESR_EL2, FAR_EL2 and HPFAR_EL2;
//! [`decode`] turns those three numbers into an [`Exit`], and the module that owns the
//! concern handles it. Nothing here reads hardware or decides policy.
//!
//! Source: Arm ARM (DDI 0487) D24.2 "ESR_EL2, Exception Syndrome Register (EL2)": the
//! EC table and the "ISS encoding for an exception from ..." sections named at each
//! variant; HPFAR_EL2 and FAR_EL2 in the same chapter.
//!
//! Where the guest resumes: for HVC, ELR_EL2 already points past the instruction. For
//! a trapped SMC (HCR_EL2.TSC), MSR/MRS, WF*, and for an emulated data abort, ELR_EL2
//! points at the trapping instruction itself, so the handler advances the guest PC by
//! [`instruction_length`] once it has emulated the instruction.

mod fault;
mod syndrome;

pub use fault::FaultStatus;

use crate::sysreg::SysReg;
use aarch64_cpu::registers::{ESR_EL2, HPFAR_EL2};
use syndrome::{
    ISS_BRK, ISS_DABT, ISS_IABT, ISS_IMM16, ISS_SME, ISS_SOFTSTEP, ISS_SYSREG, ISS_WATCHPOINT,
    ISS_WFX,
};
use tock_registers::LocalRegisterCopy;

/// Why the guest left, decoded from ESR_EL2.EC and its ISS.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// EC 0x18: a trapped MSR, MRS or System instruction (ISS encoding for an exception
    /// from MSR, MRS, or System instruction execution in AArch64 state).
    SysReg(SysRegAccess),
    /// EC 0x16: HVC from AArch64. ELR_EL2 already points past the HVC.
    Hvc { imm: u16 },
    /// EC 0x17: SMC from AArch64, trapped by HCR_EL2.TSC. ELR_EL2 points at the SMC:
    /// the handler must advance the PC (Arm ARM D1, "Preferred exception return
    /// address" for a trapped SMC).
    Smc { imm: u16 },
    /// EC 0x24: Data Abort from a lower Exception level (a stage-2 fault, or an
    /// External abort routed to EL2).
    DataAbort(DataAbort),
    /// EC 0x20: Instruction Abort from a lower Exception level.
    InstAbort(InstAbort),
    /// EC 0x01: a trapped WFI, WFE, WFIT or WFET (HCR_EL2.TWI / TWE).
    Wfx {
        kind: WfxKind,
        /// The timeout register of WFIT/WFET (FEAT_WFxT), when ISS.RV says it is valid.
        rt: Option<u8>,
    },
    /// EC 0x07: Advanced SIMD or floating-point access trapped by CPTR_EL2.
    FpAccess,
    /// EC 0x19: SVE access trapped by CPTR_EL2.
    Sve,
    /// EC 0x1D: SME access trapped. `smtc` 0 is the CPTR/CPACR trap a lazy switch
    /// relies on; other values report a streaming-mode misuse.
    Sme { smtc: u8 },
    /// EC 0x30, 0x32, 0x34, 0x3C: a debug exception from the guest.
    Debug(DebugExit),
    /// EC 0x0E: Illegal Execution state (PSTATE.IL was set by an illegal return).
    IllegalState,
    /// Any class this decoder does not name (AArch32 traps, exceptions taken from EL2
    /// itself, SError, PC/SP alignment, ...), kept raw.
    Unknown { ec: u8, iss: u32, il: bool },
}

/// A trapped system-register access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SysRegAccess {
    pub reg: SysReg,
    /// The general-purpose register transferred; 31 is XZR (reads as 0, writes ignored).
    pub rt: u8,
    /// MSR (or a System instruction such as DC/TLBI/AT) rather than MRS.
    pub write: bool,
}

/// The kind of trapped wait instruction (ISS.TI).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WfxKind {
    Wfi,
    Wfe,
    Wfit,
    Wfet,
}

/// A Data Abort from the guest (ISS encoding for an exception from a Data Abort).
///
/// The access fields (`sas`, `sse`, `srt`, `sf`, `ar`) mean something only when `isv`
/// is set; when it is clear (e.g. LDP/STP, post-index writeback) the instruction must
/// be decoded from guest memory or the access refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DataAbort {
    /// The faulting IPA: HPFAR_EL2.FIPA << 12 | FAR_EL2[11:0].
    pub ipa: u64,
    /// Whether `ipa` is architecturally valid: HPFAR_EL2 is written for stage-2
    /// Translation, Access flag and Address size faults and for any fault on a stage-1
    /// walk (`s1ptw`), and FAR_EL2 is valid (`!fnv`). Otherwise `ipa` is UNKNOWN.
    pub ipa_valid: bool,
    /// FAR_EL2: the faulting virtual address, UNKNOWN when `fnv`.
    pub far: u64,
    pub isv: bool,
    /// Access size in bytes: 1, 2, 4 or 8 (from ISS.SAS).
    pub sas: u8,
    /// The load sign-extends.
    pub sse: bool,
    /// The transfer register (31 is XZR/WZR for a store).
    pub srt: u8,
    /// The transfer register is 64-bit (Xt) rather than Wt.
    pub sf: bool,
    /// Acquire/Release semantics.
    pub ar: bool,
    /// Write, not read.
    pub wnr: bool,
    /// Stage-2 fault on the guest's own stage-1 table walk.
    pub s1ptw: bool,
    /// From a cache maintenance or address translation instruction.
    pub cm: bool,
    /// External abort type (IMPLEMENTATION DEFINED classification).
    pub ea: bool,
    pub dfsc: FaultStatus,
    /// FAR not valid.
    pub fnv: bool,
}

/// An Instruction Abort from the guest (ISS encoding for an exception from an
/// Instruction Abort).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstAbort {
    /// HPFAR_EL2.FIPA << 12 | FAR_EL2[11:0]; see [`DataAbort::ipa_valid`].
    pub ipa: u64,
    pub ipa_valid: bool,
    pub far: u64,
    pub ifsc: FaultStatus,
    pub s1ptw: bool,
    pub ea: bool,
    pub fnv: bool,
}

/// A debug exception taken from the guest to EL2 (MDCR_EL2.TDE routes them here).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebugExit {
    /// EC 0x30: hardware Breakpoint from a lower EL (ISS IFSC 0b100010).
    Breakpoint,
    /// EC 0x32: Software Step from a lower EL. `ex` is meaningful only when `isv`.
    SoftwareStep { isv: bool, ex: bool },
    /// EC 0x34: Watchpoint from a lower EL; FAR_EL2 holds the data address.
    Watchpoint { far: u64, wnr: bool, cm: bool },
    /// EC 0x3C: BRK #comment from AArch64.
    Brk { comment: u16 },
}

/// The length of the trapped instruction from ESR_EL2.IL: 4, or 2 for a 16-bit T32
/// instruction. This is what the guest PC advances by after emulation.
pub fn instruction_length(esr: u64) -> u64 {
    let syndrome = LocalRegisterCopy::<u64, ESR_EL2::Register>::new(esr);
    if syndrome.is_set(ESR_EL2::IL) { 4 } else { 2 }
}

/// Decodes one synchronous exception taken from a lower Exception level.
///
/// `far` and `hpfar` are the FAR_EL2 and HPFAR_EL2 values read on the same exit; they
/// are used only by the abort and watchpoint classes and may be 0 otherwise.
#[inline(always)]
pub fn decode(esr: u64, far: u64, hpfar: u64) -> Exit {
    // ESR_EL2.EC is bits [31:26]; matched as a number (the exit path's first
    // step: no conversion through the register crate's enum).
    match (esr >> 26) & 0x3f {
        ec::SYSREG => Exit::SysReg(sysreg_access(esr)),
        ec::HVC64 => Exit::Hvc { imm: imm16(esr) },
        ec::SMC64 => Exit::Smc { imm: imm16(esr) },
        ec::DABT_LOWER => Exit::DataAbort(data_abort(esr, far, hpfar)),
        ec::IABT_LOWER => Exit::InstAbort(inst_abort(esr, far, hpfar)),
        ec::WFX => wfx(esr),
        ec::FP => Exit::FpAccess,
        ec::SVE => Exit::Sve,
        ec::SME => Exit::Sme {
            smtc: LocalRegisterCopy::<u64, ISS_SME::Register>::new(esr).read(ISS_SME::SMTC) as u8,
        },
        ec::BREAKPOINT_LOWER => Exit::Debug(DebugExit::Breakpoint),
        ec::SOFTSTEP_LOWER => {
            let iss = LocalRegisterCopy::<u64, ISS_SOFTSTEP::Register>::new(esr);
            Exit::Debug(DebugExit::SoftwareStep {
                isv: iss.is_set(ISS_SOFTSTEP::ISV),
                ex: iss.is_set(ISS_SOFTSTEP::EX),
            })
        }
        ec::WATCHPOINT_LOWER => {
            let iss = LocalRegisterCopy::<u64, ISS_WATCHPOINT::Register>::new(esr);
            Exit::Debug(DebugExit::Watchpoint {
                far,
                wnr: iss.is_set(ISS_WATCHPOINT::WNR),
                cm: iss.is_set(ISS_WATCHPOINT::CM),
            })
        }
        ec::BRK64 => Exit::Debug(DebugExit::Brk {
            comment: LocalRegisterCopy::<u64, ISS_BRK::Register>::new(esr).read(ISS_BRK::COMMENT)
                as u16,
        }),
        ec::ILLEGAL_STATE => Exit::IllegalState,
        _ => unknown(esr),
    }
}

/// ESR_EL2.EC values (Arm ARM D24.2.40, the EC table) of the exceptions a
/// lower Exception level takes to EL2 that [`decode`] tells apart.
pub mod ec {
    pub const WFX: u64 = 0x01;
    pub const FP: u64 = 0x07;
    pub const ILLEGAL_STATE: u64 = 0x0e;
    pub const HVC64: u64 = 0x16;
    pub const SMC64: u64 = 0x17;
    pub const SYSREG: u64 = 0x18;
    pub const SVE: u64 = 0x19;
    pub const SME: u64 = 0x1d;
    pub const IABT_LOWER: u64 = 0x20;
    pub const DABT_LOWER: u64 = 0x24;
    pub const BREAKPOINT_LOWER: u64 = 0x30;
    pub const SOFTSTEP_LOWER: u64 = 0x32;
    pub const WATCHPOINT_LOWER: u64 = 0x34;
    pub const BRK64: u64 = 0x3c;
}

fn unknown(esr: u64) -> Exit {
    let syndrome = LocalRegisterCopy::<u64, ESR_EL2::Register>::new(esr);
    Exit::Unknown {
        ec: syndrome.read(ESR_EL2::EC) as u8,
        iss: syndrome.read(ESR_EL2::ISS) as u32,
        il: syndrome.is_set(ESR_EL2::IL),
    }
}

fn imm16(esr: u64) -> u16 {
    LocalRegisterCopy::<u64, ISS_IMM16::Register>::new(esr).read(ISS_IMM16::IMM16) as u16
}

pub fn sysreg_access(esr: u64) -> SysRegAccess {
    let iss = LocalRegisterCopy::<u64, ISS_SYSREG::Register>::new(esr);
    SysRegAccess {
        reg: SysReg::new(
            iss.read(ISS_SYSREG::OP0) as u8,
            iss.read(ISS_SYSREG::OP1) as u8,
            iss.read(ISS_SYSREG::CRN) as u8,
            iss.read(ISS_SYSREG::CRM) as u8,
            iss.read(ISS_SYSREG::OP2) as u8,
        ),
        rt: iss.read(ISS_SYSREG::RT) as u8,
        write: iss.matches_all(ISS_SYSREG::DIRECTION::Write),
    }
}

fn wfx(esr: u64) -> Exit {
    use ISS_WFX::TI::Value as Ti;

    let iss = LocalRegisterCopy::<u64, ISS_WFX::Register>::new(esr);
    // TI is two bits and all four values are named, so the enum read cannot fail.
    let kind = match iss.read_as_enum::<Ti>(ISS_WFX::TI) {
        Some(Ti::Wfi) | None => WfxKind::Wfi,
        Some(Ti::Wfe) => WfxKind::Wfe,
        Some(Ti::Wfit) => WfxKind::Wfit,
        Some(Ti::Wfet) => WfxKind::Wfet,
    };
    let rt = iss.is_set(ISS_WFX::RV).then(|| iss.read(ISS_WFX::RN) as u8);
    Exit::Wfx { kind, rt }
}

/// IPA of a stage-2 abort: HPFAR_EL2.FIPA holds IPA[..:12] and FAR_EL2 the page offset
/// (Arm ARM D24.2 HPFAR_EL2; the NS bit 63 is not part of the address).
fn fault_ipa(far: u64, hpfar: u64) -> u64 {
    let hpfar = LocalRegisterCopy::<u64, HPFAR_EL2::Register>::new(hpfar);
    (hpfar.read(HPFAR_EL2::FIPA) << 12) | (far & 0xfff)
}

pub fn data_abort(esr: u64, far: u64, hpfar: u64) -> DataAbort {
    use ISS_DABT::SAS::Value as Sas;

    let iss = LocalRegisterCopy::<u64, ISS_DABT::Register>::new(esr);
    let dfsc = FaultStatus::from_code(iss.read(ISS_DABT::DFSC) as u8);
    let s1ptw = iss.is_set(ISS_DABT::S1PTW);
    let fnv = iss.is_set(ISS_DABT::FNV);
    // SAS is two bits and all four values are named.
    let sas = match iss.read_as_enum::<Sas>(ISS_DABT::SAS) {
        Some(Sas::Byte) | None => 1,
        Some(Sas::Halfword) => 2,
        Some(Sas::Word) => 4,
        Some(Sas::Doubleword) => 8,
    };
    DataAbort {
        ipa: fault_ipa(far, hpfar),
        ipa_valid: (dfsc.hpfar_valid() || s1ptw) && !fnv,
        far,
        isv: iss.is_set(ISS_DABT::ISV),
        sas,
        sse: iss.is_set(ISS_DABT::SSE),
        srt: iss.read(ISS_DABT::SRT) as u8,
        sf: iss.is_set(ISS_DABT::SF),
        ar: iss.is_set(ISS_DABT::AR),
        wnr: iss.is_set(ISS_DABT::WNR),
        s1ptw,
        cm: iss.is_set(ISS_DABT::CM),
        ea: iss.is_set(ISS_DABT::EA),
        dfsc,
        fnv,
    }
}

fn inst_abort(esr: u64, far: u64, hpfar: u64) -> InstAbort {
    let iss = LocalRegisterCopy::<u64, ISS_IABT::Register>::new(esr);
    let ifsc = FaultStatus::from_code(iss.read(ISS_IABT::IFSC) as u8);
    let s1ptw = iss.is_set(ISS_IABT::S1PTW);
    let fnv = iss.is_set(ISS_IABT::FNV);
    InstAbort {
        ipa: fault_ipa(far, hpfar),
        ipa_valid: (ifsc.hpfar_valid() || s1ptw) && !fnv,
        far,
        ifsc,
        s1ptw,
        ea: iss.is_set(ISS_IABT::EA),
        fnv,
    }
}

#[cfg(test)]
mod tests;
