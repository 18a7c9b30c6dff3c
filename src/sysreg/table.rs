//! The trapped system-register table: one sorted `const` array of
//! descriptors (encoding, name, read handler, write handler, reset value),
//! and [`access`], which dispatches one trapped access (ESR_EL2.EC = 0x18)
//! through it. Adding a register is one line in [`SYSREGS`].

use alloc::vec::Vec;

use super::SysReg;
use super::cache::CSSELR_WRITABLE;
use super::id::VmCpuModel;
use super::setway::{Actions, SetWay};
use crate::vm::ratelimit::RateLimit;

pub const SCTLR_EL1: SysReg = SysReg::new(3, 0, 1, 0, 0);
pub const CPACR_EL1: SysReg = SysReg::new(3, 0, 1, 0, 2);
pub const TTBR0_EL1: SysReg = SysReg::new(3, 0, 2, 0, 0);
pub const TTBR1_EL1: SysReg = SysReg::new(3, 0, 2, 0, 1);
pub const TCR_EL1: SysReg = SysReg::new(3, 0, 2, 0, 2);
pub const AFSR0_EL1: SysReg = SysReg::new(3, 0, 5, 1, 0);
pub const AFSR1_EL1: SysReg = SysReg::new(3, 0, 5, 1, 1);
pub const ESR_EL1: SysReg = SysReg::new(3, 0, 5, 2, 0);
pub const FAR_EL1: SysReg = SysReg::new(3, 0, 6, 0, 0);
pub const MAIR_EL1: SysReg = SysReg::new(3, 0, 10, 2, 0);
pub const AMAIR_EL1: SysReg = SysReg::new(3, 0, 10, 3, 0);
pub const CONTEXTIDR_EL1: SysReg = SysReg::new(3, 0, 13, 0, 1);
pub const MIDR_EL1: SysReg = SysReg::new(3, 0, 0, 0, 0);
pub const MPIDR_EL1: SysReg = SysReg::new(3, 0, 0, 0, 5);
pub const REVIDR_EL1: SysReg = SysReg::new(3, 0, 0, 0, 6);
pub const CCSIDR_EL1: SysReg = SysReg::new(3, 1, 0, 0, 0);
pub const CLIDR_EL1: SysReg = SysReg::new(3, 1, 0, 0, 1);
pub const CCSIDR2_EL1: SysReg = SysReg::new(3, 1, 0, 0, 2);
pub const AIDR_EL1: SysReg = SysReg::new(3, 1, 0, 0, 7);
pub const CSSELR_EL1: SysReg = SysReg::new(3, 2, 0, 0, 0);
pub const CTR_EL0: SysReg = SysReg::new(3, 3, 0, 0, 1);
/// DC ISW, DC CSW, DC CISW (system instructions, Op0 = 1), trapped by HCR_EL2.TSW.
pub const DC_ISW: SysReg = SysReg::new(1, 0, 7, 6, 2);
pub const DC_CSW: SysReg = SysReg::new(1, 0, 7, 10, 2);
pub const DC_CISW: SysReg = SysReg::new(1, 0, 7, 14, 2);

/// One trapped access: the encoding, the value written (`None` for a read;
/// Rt = 31 is XZR, so 0), and the guest's SCTLR_EL1 as it is in hardware at
/// the time of the trap (one `mrs`; only the set/way and VM-register
/// handlers read it, because under HCR_EL2.TVM the value before the write
/// is only in hardware; other accesses may pass 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    pub reg: SysReg,
    pub write: Option<u64>,
    pub sctlr_el1: u64,
}

impl Access {
    pub const fn read(reg: SysReg, sctlr_el1: u64) -> Self {
        Access {
            reg,
            write: None,
            sctlr_el1,
        }
    }
    pub const fn write(reg: SysReg, value: u64, sctlr_el1: u64) -> Self {
        Access {
            reg,
            write: Some(value),
            sctlr_el1,
        }
    }
}

/// Why an access becomes an UNDEFINED exception in the guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UndefReason {
    /// The table has no descriptor for the encoding.
    Unknown,
    /// A write (MSR) to a read-only register: UNDEFINED (Arm ARM, the register's
    /// accessibility pseudocode: MSR of a read-only register is UNDEFINED).
    ReadOnly,
    /// A read (MRS) of a write-only register or a system instruction, or a
    /// read of a VM control register, which HCR_EL2.TVM never traps.
    WriteOnly,
    /// The register does not exist in this VM's CPU model (e.g. CCSIDR2_EL1
    /// without FEAT_CCIDX).
    Absent,
}

/// The result of one access, for the arch layer to carry out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Put the value in Rt and step over the instruction.
    Read(u64),
    /// Perform the actions in order and step over the instruction.
    Written(Actions),
    /// Inject an UNDEFINED exception; log it once per encoding ([`UnknownLog`]).
    Undef(UndefReason),
}

/// Registers whose state lives in [`VcpuSysRegs`], one slot each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum VcpuReg {
    CsselrEl1,
    CpacrEl1,
}
const VCPU_REGS: usize = 2;

/// One vCPU's emulated system-register state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VcpuSysRegs {
    regs: [u64; VCPU_REGS],
    mpidr_el1: u64,
    setway: SetWay,
}

impl VcpuSysRegs {
    /// A vCPU at reset. `mpidr_el1` is the value the VM layer also programs
    /// into VMPIDR_EL2; `stage2_fwb` says whether the VM's stage 2 forces
    /// write-back with FEAT_S2FWB (set/way operations are then ignored).
    pub fn new(mpidr_el1: u64, stage2_fwb: bool) -> Self {
        let mut v = VcpuSysRegs {
            regs: [0; VCPU_REGS],
            mpidr_el1,
            setway: SetWay::new(stage2_fwb),
        };
        v.reset();
        v
    }

    /// Architectural reset: every table register with state gets its reset
    /// value, and HCR_EL2.TVM is no longer wanted.
    pub fn reset(&mut self) {
        for d in SYSREGS {
            if let Some((slot, value)) = d.reset {
                self.regs[slot as usize] = value;
            }
        }
        self.setway.reset();
    }

    /// CSSELR_EL1 as the guest last wrote it (Level and InD).
    pub fn csselr_el1(&self) -> u64 {
        self.regs[VcpuReg::CsselrEl1 as usize]
    }

    pub fn mpidr_el1(&self) -> u64 {
        self.mpidr_el1
    }

    /// Whether HCR_EL2.TVM must be set for this vCPU (kept in step with the
    /// `SetTrapVm` actions already returned).
    pub fn trap_vm(&self) -> bool {
        self.setway.trap_vm()
    }
}

type ReadFn = fn(&VcpuSysRegs, &VmCpuModel, SysReg) -> Option<u64>;
type WriteFn = fn(&mut VcpuSysRegs, &VmCpuModel, &Access, u64) -> Actions;

/// One system register (or system instruction) the hypervisor traps.
#[derive(Clone, Copy)]
pub struct SysRegDesc {
    pub reg: SysReg,
    pub name: &'static str,
    read: Option<ReadFn>,
    write: Option<WriteFn>,
    /// Where the register's state lives in [`VcpuSysRegs`] and its reset value.
    reset: Option<(VcpuReg, u64)>,
}

impl SysRegDesc {
    /// Looks a descriptor up by encoding.
    pub fn find(reg: SysReg) -> Option<&'static SysRegDesc> {
        SYSREGS
            .binary_search_by_key(&reg, |d| d.reg)
            .ok()
            .map(|i| &SYSREGS[i])
    }
}

const fn ro(reg: SysReg, name: &'static str, read: ReadFn) -> SysRegDesc {
    SysRegDesc {
        reg,
        name,
        read: Some(read),
        write: None,
        reset: None,
    }
}
const fn id(crm: u8, op2: u8, name: &'static str) -> SysRegDesc {
    ro(SysReg::new(3, 0, 0, crm, op2), name, read_id)
}
const fn wo(reg: SysReg, name: &'static str, write: WriteFn) -> SysRegDesc {
    SysRegDesc {
        reg,
        name,
        read: None,
        write: Some(write),
        reset: None,
    }
}
/// A VM control register: only its writes trap (HCR_EL2.TVM).
const fn vm(reg: SysReg, name: &'static str) -> SysRegDesc {
    wo(reg, name, write_vm_reg)
}

/// Sorted by encoding (Op0, Op1, CRn, CRm, Op2); a test checks it.
pub static SYSREGS: &[SysRegDesc] = &[
    wo(DC_ISW, "DC ISW", write_dc_sw),
    wo(DC_CSW, "DC CSW", write_dc_sw),
    wo(DC_CISW, "DC CISW", write_dc_sw),
    // HCR_EL2.TID3 does not trap MIDR/MPIDR (EL1 reads VPIDR_EL2/VMPIDR_EL2);
    // listed so every way of trapping them gives the same answer.
    ro(MIDR_EL1, "MIDR_EL1", |_, m, _| Some(m.midr_el1())),
    ro(MPIDR_EL1, "MPIDR_EL1", |v, _, _| Some(v.mpidr_el1)),
    // HCR_EL2.TID1. Per-core revision data would differ between cores; 0 is
    // "no information".
    ro(REVIDR_EL1, "REVIDR_EL1", |_, _, _| Some(0)),
    // The TID3 ID space: every encoding, allocated or not.
    id(1, 0, "ID_PFR0_EL1"),
    id(1, 1, "ID_PFR1_EL1"),
    id(1, 2, "ID_DFR0_EL1"),
    id(1, 3, "ID_AFR0_EL1"),
    id(1, 4, "ID_MMFR0_EL1"),
    id(1, 5, "ID_MMFR1_EL1"),
    id(1, 6, "ID_MMFR2_EL1"),
    id(1, 7, "ID_MMFR3_EL1"),
    id(2, 0, "ID_ISAR0_EL1"),
    id(2, 1, "ID_ISAR1_EL1"),
    id(2, 2, "ID_ISAR2_EL1"),
    id(2, 3, "ID_ISAR3_EL1"),
    id(2, 4, "ID_ISAR4_EL1"),
    id(2, 5, "ID_ISAR5_EL1"),
    id(2, 6, "ID_MMFR4_EL1"),
    id(2, 7, "ID_ISAR6_EL1"),
    id(3, 0, "MVFR0_EL1"),
    id(3, 1, "MVFR1_EL1"),
    id(3, 2, "MVFR2_EL1"),
    id(3, 3, "S3_0_C0_C3_3"),
    id(3, 4, "ID_PFR2_EL1"),
    id(3, 5, "ID_DFR1_EL1"),
    id(3, 6, "ID_MMFR5_EL1"),
    id(3, 7, "S3_0_C0_C3_7"),
    id(4, 0, "ID_AA64PFR0_EL1"),
    id(4, 1, "ID_AA64PFR1_EL1"),
    id(4, 2, "ID_AA64PFR2_EL1"),
    id(4, 3, "S3_0_C0_C4_3"),
    id(4, 4, "ID_AA64ZFR0_EL1"),
    id(4, 5, "ID_AA64SMFR0_EL1"),
    id(4, 6, "S3_0_C0_C4_6"),
    id(4, 7, "ID_AA64FPFR0_EL1"),
    id(5, 0, "ID_AA64DFR0_EL1"),
    id(5, 1, "ID_AA64DFR1_EL1"),
    id(5, 2, "ID_AA64DFR2_EL1"),
    id(5, 3, "S3_0_C0_C5_3"),
    id(5, 4, "ID_AA64AFR0_EL1"),
    id(5, 5, "ID_AA64AFR1_EL1"),
    id(5, 6, "S3_0_C0_C5_6"),
    id(5, 7, "S3_0_C0_C5_7"),
    id(6, 0, "ID_AA64ISAR0_EL1"),
    id(6, 1, "ID_AA64ISAR1_EL1"),
    id(6, 2, "ID_AA64ISAR2_EL1"),
    id(6, 3, "ID_AA64ISAR3_EL1"),
    id(6, 4, "S3_0_C0_C6_4"),
    id(6, 5, "S3_0_C0_C6_5"),
    id(6, 6, "S3_0_C0_C6_6"),
    id(6, 7, "S3_0_C0_C6_7"),
    id(7, 0, "ID_AA64MMFR0_EL1"),
    id(7, 1, "ID_AA64MMFR1_EL1"),
    id(7, 2, "ID_AA64MMFR2_EL1"),
    id(7, 3, "ID_AA64MMFR3_EL1"),
    id(7, 4, "ID_AA64MMFR4_EL1"),
    id(7, 5, "S3_0_C0_C7_5"),
    id(7, 6, "S3_0_C0_C7_6"),
    id(7, 7, "S3_0_C0_C7_7"),
    // VM control registers (HCR_EL2.TVM, while set/way tracking needs it).
    vm(SCTLR_EL1, "SCTLR_EL1"),
    // Trapped by CPTR_EL2.TCPAC on cores with SVE or SME (`VmCpuModel::cpacr_el1_hw`).
    SysRegDesc {
        reg: CPACR_EL1,
        name: "CPACR_EL1",
        read: Some(|v, _, _| Some(v.regs[VcpuReg::CpacrEl1 as usize])),
        write: Some(write_cpacr),
        // Arm ARM: FPEN resets to an UNKNOWN value; 0 (FP/SIMD trapped) is what
        // the Linux boot protocol expects a kernel to set up itself.
        reset: Some((VcpuReg::CpacrEl1, 0)),
    },
    vm(TTBR0_EL1, "TTBR0_EL1"),
    vm(TTBR1_EL1, "TTBR1_EL1"),
    vm(TCR_EL1, "TCR_EL1"),
    vm(AFSR0_EL1, "AFSR0_EL1"),
    vm(AFSR1_EL1, "AFSR1_EL1"),
    vm(ESR_EL1, "ESR_EL1"),
    vm(FAR_EL1, "FAR_EL1"),
    vm(MAIR_EL1, "MAIR_EL1"),
    vm(AMAIR_EL1, "AMAIR_EL1"),
    vm(CONTEXTIDR_EL1, "CONTEXTIDR_EL1"),
    // Cache identification (HCR_EL2.TID4, or TID2 which adds CTR_EL0).
    ro(CCSIDR_EL1, "CCSIDR_EL1", |v, m, _| {
        Some(m.cache().ccsidr_el1(v.csselr_el1(), m.ccidx()))
    }),
    ro(CLIDR_EL1, "CLIDR_EL1", |_, m, _| {
        Some(m.cache().clidr_el1())
    }),
    // Arm ARM: CCSIDR2_EL1 exists only with FEAT_CCIDX.
    ro(CCSIDR2_EL1, "CCSIDR2_EL1", |v, m, _| {
        m.ccidx().then(|| m.cache().ccsidr2_el1(v.csselr_el1()))
    }),
    // HCR_EL2.TID1: IMPLEMENTATION DEFINED; 0 is "no information".
    ro(AIDR_EL1, "AIDR_EL1", |_, _, _| Some(0)),
    SysRegDesc {
        reg: CSSELR_EL1,
        name: "CSSELR_EL1",
        read: Some(|v, _, _| Some(v.csselr_el1())),
        write: Some(write_csselr),
        // Arm ARM: CSSELR_EL1 resets to an UNKNOWN value; we pick L1 data.
        reset: Some((VcpuReg::CsselrEl1, 0)),
    },
    ro(CTR_EL0, "CTR_EL0", |_, m, _| Some(m.ctr_el0())),
];

fn read_id(_: &VcpuSysRegs, m: &VmCpuModel, reg: SysReg) -> Option<u64> {
    m.id_reg(reg)
}

/// Keeps Level and InD; TnD is RES0 without FEAT_MTE2 and the other bits are
/// RES0. A Level naming a cache that does not exist reads back as written,
/// which the Arm ARM allows (the field is then UNKNOWN).
fn write_csselr(v: &mut VcpuSysRegs, _: &VmCpuModel, _: &Access, value: u64) -> Actions {
    v.regs[VcpuReg::CsselrEl1 as usize] = value & CSSELR_WRITABLE;
    Actions::NONE
}

/// Keeps the controls of the model's CPACR_EL1 (FPEN, and ZEN for a VM with SVE;
/// the rest is RES0), and writes the hardware value with the hidden features'
/// enables kept set.
fn write_cpacr(v: &mut VcpuSysRegs, m: &VmCpuModel, _: &Access, value: u64) -> Actions {
    let guest = value & m.cpacr_el1_guest_mask();
    v.regs[VcpuReg::CpacrEl1 as usize] = guest;
    let mut a = Actions::NONE;
    a.push(super::setway::HwAction::WriteHw {
        reg: CPACR_EL1,
        value: m.cpacr_el1_hw(guest),
    });
    a
}

fn write_dc_sw(v: &mut VcpuSysRegs, _: &VmCpuModel, _: &Access, _: u64) -> Actions {
    v.setway.on_set_way()
}

fn write_vm_reg(v: &mut VcpuSysRegs, _: &VmCpuModel, a: &Access, value: u64) -> Actions {
    v.setway.on_vm_reg_write(a.reg, value, a.sctlr_el1)
}

/// Handles one trapped access. Pure: the arch layer performs the returned
/// actions (and puts a read value in Rt) and steps over the instruction, or
/// injects an UNDEFINED exception.
pub fn access(vcpu: &mut VcpuSysRegs, model: &VmCpuModel, acc: Access) -> Outcome {
    // The ID space (Op0=3, Op1=0, CRn=0, CRm=1..7) is all read-only ID
    // registers of the model, the reserved encodings reading as zero (Arm ARM
    // D23.3.1, "Reserved encodings in the ID register space"): a read is
    // answered without the table search. `id_space_is_all_read_id` checks the
    // table says the same.
    if acc.write.is_none()
        && let Some(v) = model.id_reg(acc.reg)
    {
        return Outcome::Read(v);
    }
    let Some(d) = SysRegDesc::find(acc.reg) else {
        return Outcome::Undef(UndefReason::Unknown);
    };
    match acc.write {
        None => match d.read {
            None => Outcome::Undef(UndefReason::WriteOnly),
            Some(f) => {
                f(vcpu, model, acc.reg).map_or(Outcome::Undef(UndefReason::Absent), Outcome::Read)
            }
        },
        Some(value) => match d.write {
            None => Outcome::Undef(UndefReason::ReadOnly),
            Some(f) => Outcome::Written(f(vcpu, model, &acc, value)),
        },
    }
}

/// Decides which UNDEFINED accesses are logged: each encoding once, and those
/// first times within a rate limit (a burst, then one line a second), so a
/// guest probing the whole encoding space cannot flood the console. 64 Ki bits:
/// one per possible (Op0, Op1, CRn, CRm, Op2).
///
/// The 8 KiB bitmap lives on the heap, allocated at the first UNDEF: held by
/// value it made every `Vm` 9 KiB, and each move of a `Vm` while it is built
/// (a `Result`, a `match` binding, `Vec::push`) cost another 9 KiB of the boot
/// CPU's stack in an unoptimized build — enough, with the config parser's deep
/// frames, to run off the end of a 64 KiB stack.
pub struct UnknownLog {
    seen: Vec<u64>,
    clock: fn() -> u64,
    limit: RateLimit,
}

impl UnknownLog {
    const WORDS: usize = 1024;
    /// Lines at once, then one per [`UnknownLog::INTERVAL_MS`].
    pub const BURST: u32 = 16;
    pub const INTERVAL_MS: u64 = 1000;

    /// A log on the millisecond clock `clock`.
    pub const fn new(clock: fn() -> u64) -> Self {
        UnknownLog {
            seen: Vec::new(),
            clock,
            limit: RateLimit::new(Self::BURST, Self::INTERVAL_MS),
        }
    }

    /// True the first time `reg` is seen if the rate limit allows a line (then
    /// log it); false afterwards, and for first times beyond the limit.
    pub fn first_time(&mut self, reg: SysReg) -> bool {
        if self.seen.is_empty() {
            self.seen.resize(Self::WORDS, 0);
        }
        let bit = reg.packed() as usize & 0xffff;
        let (word, mask) = (bit / 64, 1u64 << (bit % 64));
        let first = self.seen[word] & mask == 0;
        self.seen[word] |= mask;
        first && self.limit.note((self.clock)()).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sysreg::cache::{CCSIDR_NONEXISTENT, CSSELR_SLOTS, CachePolicy};
    use crate::sysreg::id::tests::{qemu_a57, qemu_max};
    use crate::sysreg::id::{HostCpu, ID_AA64MMFR2_EL1, SystemCpuInfo, id_index};
    use crate::sysreg::setway::HwAction::*;

    fn model(cpus: &[HostCpu], policy: CachePolicy) -> VmCpuModel {
        VmCpuModel::new(&SystemCpuInfo::new(cpus).unwrap(), cpus, &policy, 48).unwrap()
    }

    fn read(v: &mut VcpuSysRegs, m: &VmCpuModel, reg: SysReg) -> Outcome {
        access(v, m, Access::read(reg, 0))
    }

    #[test]
    fn table_is_sorted_and_unique() {
        for w in SYSREGS.windows(2) {
            assert!(
                w[0].reg < w[1].reg,
                "{} ({}) must come before {} ({})",
                w[0].name,
                w[0].reg,
                w[1].name,
                w[1].reg
            );
        }
        let mut names: Vec<_> = SYSREGS.iter().map(|d| d.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), SYSREGS.len(), "duplicate names");
    }

    #[test]
    fn table_covers_the_whole_tid3_space_with_sane_names() {
        let ids: Vec<_> = SYSREGS
            .iter()
            .filter(|d| id_index(d.reg).is_some())
            .collect();
        assert_eq!(ids.len(), 56);
        for d in ids {
            if d.name.starts_with("S3_") {
                assert_eq!(alloc::format!("{}", d.reg), d.name);
            }
        }
        assert_eq!(SysRegDesc::find(CTR_EL0).unwrap().name, "CTR_EL0");
        assert!(SysRegDesc::find(SysReg::new(3, 0, 15, 15, 7)).is_none());
    }

    /// `access` answers ID-space reads before the table search: that is only
    /// right while every ID-space descriptor is a plain model read.
    #[test]
    fn id_space_is_all_read_id() {
        let m = model(&[qemu_max()], CachePolicy::Virtual);
        for d in SYSREGS.iter().filter(|d| id_index(d.reg).is_some()) {
            assert!(d.write.is_none(), "{} is writable", d.name);
            let read = d.read.expect("ID registers are readable");
            assert!(
                core::ptr::fn_addr_eq(read, read_id as ReadFn),
                "{} is not read from the model",
                d.name
            );
            let v = VcpuSysRegs::new(0x8000_0001, false);
            assert_eq!(read(&v, &m, d.reg), m.id_reg(d.reg), "{}", d.name);
        }
    }

    #[test]
    fn id_registers_read_the_model_and_reject_writes() {
        let m = model(&[qemu_max()], CachePolicy::Virtual);
        let mut v = VcpuSysRegs::new(0x8000_0001, false);
        for d in SYSREGS.iter().filter(|d| id_index(d.reg).is_some()) {
            assert_eq!(
                read(&mut v, &m, d.reg),
                Outcome::Read(m.id_reg(d.reg).unwrap())
            );
            assert_eq!(
                access(&mut v, &m, Access::write(d.reg, 1, 0)),
                Outcome::Undef(UndefReason::ReadOnly)
            );
        }
        // Reserved encodings read as zero.
        assert_eq!(
            read(&mut v, &m, SysReg::new(3, 0, 0, 7, 7)),
            Outcome::Read(0)
        );
        assert_eq!(read(&mut v, &m, MIDR_EL1), Outcome::Read(0x000f_0510));
        assert_eq!(read(&mut v, &m, MPIDR_EL1), Outcome::Read(0x8000_0001));
        assert_eq!(read(&mut v, &m, REVIDR_EL1), Outcome::Read(0));
    }

    #[test]
    fn unknown_registers_undef_and_log_once() {
        let m = model(&[qemu_max()], CachePolicy::Virtual);
        let mut v = VcpuSysRegs::new(0, false);
        let mut log = UnknownLog::new(|| 0);
        let pmcr = SysReg::new(3, 3, 9, 12, 0); // PMCR_EL0: the PMU is hidden
        let mut logged = 0;
        for _ in 0..3 {
            let o = read(&mut v, &m, pmcr);
            assert_eq!(o, Outcome::Undef(UndefReason::Unknown));
            logged += log.first_time(pmcr) as u32;
        }
        assert_eq!(logged, 1);
        assert!(log.first_time(SysReg::new(3, 3, 9, 12, 1)));
        assert!(log.first_time(SysReg::new(0, 0, 0, 0, 0)));
        assert!(log.first_time(SysReg::new(3, 7, 15, 15, 7)));
        assert!(!log.first_time(SysReg::new(3, 7, 15, 15, 7)));
    }

    #[test]
    fn probing_every_encoding_logs_a_burst_not_64k_lines() {
        // A guest walking the whole encoding space within one second (the clock
        // stands still): the burst is logged, then nothing.
        let mut log = UnknownLog::new(|| 0);
        let logged = (0..=0xffffu32)
            .filter(|&p| {
                let r = SysReg::new(
                    (p >> 14) as u8 & 3,
                    (p >> 11) as u8 & 7,
                    (p >> 7) as u8 & 15,
                    (p >> 3) as u8 & 15,
                    p as u8 & 7,
                );
                log.first_time(r)
            })
            .count();
        assert_eq!(logged, UnknownLog::BURST as usize);
    }

    #[test]
    fn csselr_write_then_read_and_ccsidr_follow_it() {
        let m = model(&[qemu_a57()], CachePolicy::Host);
        let mut v = VcpuSysRegs::new(0, false);
        assert_eq!(read(&mut v, &m, CSSELR_EL1), Outcome::Read(0)); // reset value
        let w = |v: &mut VcpuSysRegs, x| access(v, &m, Access::write(CSSELR_EL1, x, 0));
        assert_eq!(w(&mut v, 1), Outcome::Written(Actions::NONE));
        assert_eq!(read(&mut v, &m, CSSELR_EL1), Outcome::Read(1));
        assert_eq!(read(&mut v, &m, CCSIDR_EL1), Outcome::Read(0x001f_e012)); // a57 L1I
        w(&mut v, 2);
        assert_eq!(read(&mut v, &m, CCSIDR_EL1), Outcome::Read(0x00ff_e07a)); // a57 L2
        // TnD and RES0 bits are dropped.
        w(&mut v, 0xffff_0012);
        assert_eq!(read(&mut v, &m, CSSELR_EL1), Outcome::Read(0x2));
        // A cache that does not exist (L3) reads the fixed value; L4 too.
        w(&mut v, 0b0100);
        assert_eq!(read(&mut v, &m, CSSELR_EL1), Outcome::Read(0b0100));
        assert_eq!(
            read(&mut v, &m, CCSIDR_EL1),
            Outcome::Read(CCSIDR_NONEXISTENT)
        );
        // Reset forgets the selection.
        v.reset();
        assert_eq!(read(&mut v, &m, CSSELR_EL1), Outcome::Read(0));
    }

    #[test]
    fn cache_id_registers_are_read_only_and_ctr_answers() {
        let m = model(&[qemu_a57()], CachePolicy::Virtual);
        let mut v = VcpuSysRegs::new(0, false);
        assert_eq!(read(&mut v, &m, CTR_EL0), Outcome::Read(0x8444_c004));
        assert_eq!(read(&mut v, &m, CLIDR_EL1), Outcome::Read(0x0a20_0023));
        for reg in [CTR_EL0, CLIDR_EL1, CCSIDR_EL1, CCSIDR2_EL1] {
            assert_eq!(
                access(&mut v, &m, Access::write(reg, 0, 0)),
                Outcome::Undef(UndefReason::ReadOnly)
            );
        }
        // No FEAT_CCIDX in the model: CCSIDR2_EL1 does not exist.
        assert_eq!(
            read(&mut v, &m, CCSIDR2_EL1),
            Outcome::Undef(UndefReason::Absent)
        );
    }

    #[test]
    fn ccidx_hosts_get_the_64_bit_format_and_ccsidr2() {
        let mut cpu = qemu_max();
        let mmfr2 = cpu.id.get(ID_AA64MMFR2_EL1).unwrap() | 1 << 20;
        cpu.id.set(ID_AA64MMFR2_EL1, mmfr2);
        // 64 KiB L1D: 256 sets, 4 ways, 64-byte lines, in the CCIDX format.
        let mut ccsidr = [0u64; CSSELR_SLOTS];
        ccsidr[0] = (255 << 32) | (3 << 3) | 2;
        ccsidr[1] = (255 << 32) | (3 << 3) | 2;
        ccsidr[2] = (1023 << 32) | (15 << 3) | 2;
        cpu.ccsidr_el1 = ccsidr;
        let m = model(&[cpu], CachePolicy::Host);
        assert!(m.ccidx());
        let mut v = VcpuSysRegs::new(0, false);
        assert_eq!(read(&mut v, &m, CCSIDR_EL1), Outcome::Read(ccsidr[0]));
        assert_eq!(read(&mut v, &m, CCSIDR2_EL1), Outcome::Read(255));
        access(&mut v, &m, Access::write(CSSELR_EL1, 2, 0));
        assert_eq!(read(&mut v, &m, CCSIDR2_EL1), Outcome::Read(1023));
        // Lowering CCIDX switches the guest to the 32-bit format.
        let mut m32 = m.clone();
        m32.lower(
            crate::sysreg::id::IdField::by_name("ID_AA64MMFR2_EL1.CCIDX").unwrap(),
            0,
        )
        .unwrap();
        assert_eq!(
            read(&mut v, &m32, CCSIDR_EL1),
            Outcome::Read((1023 << 13) | (15 << 3) | 2)
        );
        assert_eq!(
            read(&mut v, &m32, CCSIDR2_EL1),
            Outcome::Undef(UndefReason::Absent)
        );
    }

    #[test]
    fn cpacr_el1_keeps_fpen_and_holds_sve_sme_enabled_in_hardware() {
        let m = model(&[qemu_max()], CachePolicy::Virtual);
        let mut v = VcpuSysRegs::new(0, false);
        assert_eq!(read(&mut v, &m, CPACR_EL1), Outcome::Read(0), "reset");
        // FPEN | ZEN | SMEN | TTA: only FPEN is the guest's.
        let all = 0b11 << 20 | 0b11 << 16 | 0b11 << 24 | 1 << 28;
        let zen_smen = 0b11 << 16 | 0b11 << 24;
        assert_eq!(
            access(&mut v, &m, Access::write(CPACR_EL1, all, 0)),
            Outcome::Written({
                let mut a = Actions::NONE;
                a.push(WriteHw {
                    reg: CPACR_EL1,
                    value: 0b11 << 20 | zen_smen,
                });
                a
            })
        );
        assert_eq!(read(&mut v, &m, CPACR_EL1), Outcome::Read(0b11 << 20));
        assert_eq!(
            m.cpacr_el1_hw(0),
            zen_smen,
            "at reset: FP trapped, SVE/SME not at EL1"
        );
        v.reset();
        assert_eq!(read(&mut v, &m, CPACR_EL1), Outcome::Read(0));
        // Without SVE and SME the hardware value is the guest's.
        let m57 = model(&[qemu_a57()], CachePolicy::Virtual);
        assert_eq!(m57.cpacr_el1_hw(all), 0b11 << 20);
    }

    #[test]
    fn set_way_and_vm_registers_through_the_table() {
        let m = model(&[qemu_a57()], CachePolicy::Virtual);
        let mut v = VcpuSysRegs::new(0, false);
        let on = 0x30d0_0805;
        let off = 0x30d0_0800;
        let acts = |o: Outcome| match o {
            Outcome::Written(a) => a.iter().collect::<Vec<_>>(),
            other => panic!("expected a write, got {other:?}"),
        };
        assert_eq!(
            acts(access(&mut v, &m, Access::write(DC_CISW, 0, on))),
            [CleanInvalidateVmMemory, SetTrapVm(true)]
        );
        assert!(v.trap_vm());
        assert_eq!(
            read(&mut v, &m, DC_CISW),
            Outcome::Undef(UndefReason::WriteOnly)
        );
        assert_eq!(
            acts(access(&mut v, &m, Access::write(SCTLR_EL1, off, on))),
            [
                WriteHw {
                    reg: SCTLR_EL1,
                    value: off
                },
                CleanInvalidateVmMemory
            ]
        );
        assert_eq!(
            acts(access(&mut v, &m, Access::write(MAIR_EL1, 0xff, off))),
            [WriteHw {
                reg: MAIR_EL1,
                value: 0xff
            }]
        );
        assert!(acts(access(&mut v, &m, Access::write(DC_ISW, 0, off))).is_empty());
        assert_eq!(
            acts(access(&mut v, &m, Access::write(SCTLR_EL1, on, off))),
            [
                WriteHw {
                    reg: SCTLR_EL1,
                    value: on
                },
                CleanInvalidateVmMemory,
                SetTrapVm(false)
            ]
        );
        assert!(!v.trap_vm());
        // Reset clears the tracking; FWB VMs ignore set/way altogether.
        access(&mut v, &m, Access::write(DC_CSW, 0, on));
        v.reset();
        assert!(!v.trap_vm());
        let mut fwb = VcpuSysRegs::new(0, true);
        fwb.reset();
        assert!(acts(access(&mut fwb, &m, Access::write(DC_CISW, 0, on))).is_empty());
        assert!(!fwb.trap_vm());
    }
}
