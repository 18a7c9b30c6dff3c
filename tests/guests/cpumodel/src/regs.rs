//! The system registers this guest reads, and one vCPU's view of them.
//!
//! Every accessor is one `mrs`/`msr`; the hypervisor may trap any of them
//! (HCR_EL2.TID3 for the ID space, TID2 or TID4 for the cache registers), which is
//! the point: the values must be the CPU model's, whichever physical CPU runs us.

use core::arch::asm;

/// Number of CSSELR_EL1.{Level, InD} selections: levels 1..7, data and instruction
/// (Arm ARM D23.2 CSSELR_EL1; Level 0b111 is reserved).
pub const CSSELR_SLOTS: usize = 14;

/// Encodings in the ID space Op0=3, Op1=0, CRn=0, CRm=1..7, Op2=0..7 (Arm ARM
/// D23.3.1: allocated ID registers and reserved encodings that read as zero).
pub const ID_SPACE_LEN: usize = 56;

/// Index of `S3_0_C0_C<crm>_<op2>` in [`read_id_space`]'s array.
pub const fn id_index(crm: usize, op2: usize) -> usize {
    (crm - 1) * 8 + op2
}

pub const ID_AA64PFR0_EL1: usize = id_index(4, 0);
pub const ID_AA64PFR1_EL1: usize = id_index(4, 1);
pub const ID_AA64DFR0_EL1: usize = id_index(5, 0);
pub const ID_AA64MMFR0_EL1: usize = id_index(7, 0);
pub const ID_AA64MMFR1_EL1: usize = id_index(7, 1);
pub const ID_AA64MMFR2_EL1: usize = id_index(7, 2);

/// The name of an ID-space index, for messages.
pub fn id_name(index: usize) -> IdName {
    IdName(index)
}

pub struct IdName(usize);

impl core::fmt::Display for IdName {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        const NAMES: [(usize, &str); 16] = [
            (id_index(4, 0), "ID_AA64PFR0_EL1"),
            (id_index(4, 1), "ID_AA64PFR1_EL1"),
            (id_index(4, 4), "ID_AA64ZFR0_EL1"),
            (id_index(4, 5), "ID_AA64SMFR0_EL1"),
            (id_index(5, 0), "ID_AA64DFR0_EL1"),
            (id_index(5, 1), "ID_AA64DFR1_EL1"),
            (id_index(5, 4), "ID_AA64AFR0_EL1"),
            (id_index(5, 5), "ID_AA64AFR1_EL1"),
            (id_index(6, 0), "ID_AA64ISAR0_EL1"),
            (id_index(6, 1), "ID_AA64ISAR1_EL1"),
            (id_index(6, 2), "ID_AA64ISAR2_EL1"),
            (id_index(7, 0), "ID_AA64MMFR0_EL1"),
            (id_index(7, 1), "ID_AA64MMFR1_EL1"),
            (id_index(7, 2), "ID_AA64MMFR2_EL1"),
            (id_index(7, 3), "ID_AA64MMFR3_EL1"),
            (id_index(1, 0), "ID_PFR0_EL1"),
        ];
        match NAMES.iter().find(|(i, _)| *i == self.0) {
            Some((_, name)) => f.write_str(name),
            None => write!(f, "S3_0_C0_C{}_{}", self.0 / 8 + 1, self.0 % 8),
        }
    }
}

/// A 4-bit ID register field at `shift`.
pub const fn field(value: u64, shift: u32) -> u64 {
    (value >> shift) & 0xf
}

macro_rules! read_sysreg {
    ($(#[$doc:meta])* $fn:ident, $reg:literal) => {
        $(#[$doc])*
        pub fn $fn() -> u64 {
            let v: u64;
            // SAFETY: reading this register at EL1 has no side effects; it is either
            // answered by hardware or by the hypervisor (trapped).
            unsafe { asm!(concat!("mrs {}, ", $reg), out(reg) v, options(nomem, nostack, preserves_flags)) };
            v
        }
    };
}

read_sysreg!(
    /// MIDR_EL1: under a hypervisor, what it put in VPIDR_EL2.
    midr_el1, "midr_el1");
read_sysreg!(
    /// MPIDR_EL1: under a hypervisor, what it put in VMPIDR_EL2.
    mpidr_el1, "mpidr_el1");
read_sysreg!(clidr_el1, "clidr_el1");
read_sysreg!(ctr_el0, "ctr_el0");
read_sysreg!(csselr_el1, "csselr_el1");
read_sysreg!(cntvct_el0, "cntvct_el0");
read_sysreg!(cntfrq_el0, "cntfrq_el0");

/// Writes CSSELR_EL1 and synchronizes, so a following CCSIDR_EL1 read uses it
/// (Arm ARM D23.2 CCSIDR_EL1: "an ISB is required between" the two).
pub fn write_csselr_el1(value: u64) {
    // SAFETY: CSSELR_EL1 only selects which cache CCSIDR_EL1 describes.
    unsafe {
        asm!("msr csselr_el1, {}", "isb", in(reg) value, options(nomem, nostack, preserves_flags))
    };
}

/// CCSIDR_EL1 of the cache `csselr` selects.
pub fn ccsidr_el1(csselr: u64) -> u64 {
    write_csselr_el1(csselr);
    let v: u64;
    // SAFETY: as read_sysreg.
    unsafe { asm!("mrs {}, ccsidr_el1", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// CCSIDR2_EL1 (S3_1_C0_C0_2) of the cache `csselr` selects. Only with FEAT_CCIDX;
/// without it the access is UNDEFINED, so call it inside `catch_exception` then.
pub fn ccsidr2_el1(csselr: u64) -> u64 {
    write_csselr_el1(csselr);
    let v: u64;
    // SAFETY: as read_sysreg (or UNDEFINED, caught by the caller's expect_exception).
    unsafe { asm!("mrs {}, s3_1_c0_c0_2", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Reads the whole ID space (Op0=3, Op1=0, CRn=0, CRm=1..7, Op2=0..7) in index order.
pub fn read_id_space() -> [u64; ID_SPACE_LEN] {
    let mut out = [0u64; ID_SPACE_LEN];
    // SAFETY: cpumodel_read_id_space stores exactly ID_SPACE_LEN u64s at x0 and
    // clobbers only x0 and x1 (see the assembly below); every encoding it reads is
    // readable at EL1 (allocated, or reserved and RAZ).
    unsafe {
        asm!(
            "bl cpumodel_read_id_space",
            inout("x0") out.as_mut_ptr() => _, out("x1") _, out("x30") _,
            options(nostack),
        )
    };
    out
}

// 56 MRS of S3_0_C0_C<crm>_<op2>, stored in (crm, op2) order. Generated with .irp
// because MRS names its register in the instruction.
core::arch::global_asm!(
    r#"
    .pushsection .text.cpumodel_read_id_space, "ax"
    .global cpumodel_read_id_space
cpumodel_read_id_space:
    .irp crm, 1, 2, 3, 4, 5, 6, 7
    .irp op2, 0, 1, 2, 3, 4, 5, 6, 7
    mrs     x1, S3_0_C0_C\crm\()_\op2
    str     x1, [x0], #8
    .endr
    .endr
    ret
    .popsection
"#
);

/// Everything one vCPU reads of the CPU model; vCPU 0 and vCPU 1 compare theirs.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct View {
    pub midr_el1: u64,
    pub mpidr_el1: u64,
    pub ctr_el0: u64,
    pub clidr_el1: u64,
    /// CCSIDR_EL1 for every CSSELR_EL1 = Level << 1 | InD, described caches or not.
    pub ccsidr_el1: [u64; CSSELR_SLOTS],
    /// CCSIDR2_EL1 likewise, when the view has FEAT_CCIDX; else zeros.
    pub ccsidr2_el1: [u64; CSSELR_SLOTS],
    /// Bit n set: writing CSSELR_EL1 = n (a described cache) read back differently.
    pub csselr_mismatch: u64,
    pub id: [u64; ID_SPACE_LEN],
}

impl View {
    pub const ZERO: View = View {
        midr_el1: 0,
        mpidr_el1: 0,
        ctr_el0: 0,
        clidr_el1: 0,
        ccsidr_el1: [0; CSSELR_SLOTS],
        ccsidr2_el1: [0; CSSELR_SLOTS],
        csselr_mismatch: 0,
        id: [0; ID_SPACE_LEN],
    };

    /// Reads this vCPU's view. Leaves CSSELR_EL1 = `final_csselr`. Takes no
    /// exception on a conforming CPU (CCSIDR2_EL1 is read only with FEAT_CCIDX), so
    /// it is safe on the secondary vCPU, which has no expect_exception.
    pub fn read(final_csselr: u64) -> View {
        let mut v = View::ZERO;
        v.midr_el1 = midr_el1();
        v.mpidr_el1 = mpidr_el1();
        v.ctr_el0 = ctr_el0();
        v.clidr_el1 = clidr_el1();
        v.id = read_id_space();
        let ccidx = crate::cache::has_ccidx(v.id[ID_AA64MMFR2_EL1]);
        for csselr in 0..CSSELR_SLOTS as u64 {
            v.ccsidr_el1[csselr as usize] = ccsidr_el1(csselr);
            if ccidx {
                v.ccsidr2_el1[csselr as usize] = ccsidr2_el1(csselr);
            }
        }
        let clidr = crate::cache::Clidr(v.clidr_el1);
        for csselr in 0..CSSELR_SLOTS as u64 {
            if clidr.describes(csselr) {
                write_csselr_el1(csselr);
                if csselr_el1() & crate::cache::CSSELR_LEVEL_IND != csselr {
                    v.csselr_mismatch |= 1 << csselr;
                }
            }
        }
        write_csselr_el1(final_csselr);
        v
    }
}
