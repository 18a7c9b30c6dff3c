//! Features the CPU model hides must be unusable, not only unannounced: every
//! System register of a hidden feature is UNDEFINED (EC 0, ELR at the access) in
//! both directions, whatever the hardware has and whatever the firmware left in
//! the EL2 trap registers (HCRX_EL2, the fine-grained traps, MDCR_EL2). And what
//! the model does offer keeps working: self-hosted debug is the guest's own, so a
//! BRK is taken at EL1 and the debug registers answer.
//!
//! One check per feature, listing the first access that was not UNDEFINED. On a
//! CPU without the feature the accesses are UNDEFINED in hardware; on one with it
//! (QEMU `-cpu max` has SME, SVE, RAS, LOR, PAuth, CSV2_3, NMI, MOPS and a PMU)
//! only the hypervisor's traps make them so. Read-only registers are only read.

use core::arch::asm;

use guest_rt::exception::EC_UNKNOWN;
use guest_rt::{ExceptionInfo, check, expect_exception};

/// Checks in this module.
pub const CHECKS: u32 = 23;

/// One access and what it did.
#[derive(Clone, Copy)]
struct Probe {
    /// "MRS", "MSR" or an instruction's name.
    op: &'static str,
    reg: &'static str,
    /// Address of the accessing instruction.
    pc: u64,
    info: Option<ExceptionInfo>,
}

impl Probe {
    fn undefined(&self) -> bool {
        matches!(self.info, Some(i) if i.ec() == EC_UNKNOWN && i.elr == self.pc)
    }
}

/// MRS of the register with encoding `$enc` (`s<op0>_<op1>_c<n>_c<m>_<op2>`).
macro_rules! rd {
    ($name:literal, $enc:literal) => {{
        let mut pc = 0u64;
        let info = expect_exception(|| {
            // SAFETY: an MRS into a scratch register: it either reads the register
            // or takes an exception, which the armed vector records and skips.
            unsafe {
                asm!("adr {pc}, 1f", concat!("1: mrs {tmp}, ", $enc),
                    pc = out(reg) pc, tmp = out(reg) _, options(nomem, nostack))
            }
        });
        Probe { op: "MRS", reg: $name, pc, info }
    }};
}

/// MSR of zero to the register with encoding `$enc`. Zero is each register's
/// "off" value (no key, no partition, no trace, no tags), so a write that is
/// wrongly allowed changes nothing this program relies on.
macro_rules! wr {
    ($name:literal, $enc:literal) => {{
        let mut pc = 0u64;
        let info = expect_exception(|| {
            // SAFETY: an MSR of zero: it either writes the register's off value or
            // takes an exception, which the armed vector records and skips.
            unsafe {
                asm!("adr {pc}, 1f", concat!("1: msr ", $enc, ", xzr"),
                    pc = out(reg) pc, options(nomem, nostack))
            }
        });
        Probe { op: "MSR", reg: $name, pc, info }
    }};
}

/// Read and write of a read/write register.
macro_rules! rw {
    ($name:literal, $enc:literal) => {
        [rd!($name, $enc), wr!($name, $enc)]
    };
}

/// One check: every access in `probes` was UNDEFINED.
fn hidden(name: &str, probes: &[&[Probe]]) {
    let mut all = probes.iter().flat_map(|g| g.iter());
    let bad = all.clone().find(|p| !p.undefined());
    check!(
        name,
        bad.is_none(),
        "{}",
        Detail(*bad.or(all.next()).expect("at least one access"))
    );
}

struct Detail(Probe);

impl core::fmt::Display for Detail {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let p = &self.0;
        match p.info {
            None => write!(
                f,
                "{} {} completed (expected EC 0 at {:#x})",
                p.op, p.reg, p.pc
            ),
            Some(i) => write!(
                f,
                "{} {}: expected EC 0 at {:#x}, got {i}",
                p.op, p.reg, p.pc
            ),
        }
    }
}

/// Runs every check of this module.
pub fn run() {
    hidden(
        "hidden: SCXTNUM_EL0, SCXTNUM_EL1 (FEAT_CSV2_2) are UNDEFINED",
        &[
            &rw!("SCXTNUM_EL0", "s3_3_c13_c0_7"),
            &rw!("SCXTNUM_EL1", "s3_0_c13_c0_7"),
        ],
    );
    hidden(
        "hidden: TCR2_EL1 (FEAT_TCR2) is UNDEFINED",
        &[&rw!("TCR2_EL1", "s3_0_c2_c0_3")],
    );
    hidden(
        "hidden: SCTLR2_EL1 (FEAT_SCTLR2) is UNDEFINED",
        &[&rw!("SCTLR2_EL1", "s3_0_c1_c0_3")],
    );
    hidden(
        "hidden: PIR_EL1, PIRE0_EL1 (FEAT_S1PIE) are UNDEFINED",
        &[
            &rw!("PIR_EL1", "s3_0_c10_c2_3"),
            &rw!("PIRE0_EL1", "s3_0_c10_c2_2"),
        ],
    );
    hidden(
        "hidden: POR_EL0, POR_EL1 (FEAT_S1POE) are UNDEFINED",
        &[
            &rw!("POR_EL0", "s3_3_c10_c2_4"),
            &rw!("POR_EL1", "s3_0_c10_c2_4"),
        ],
    );
    hidden(
        "hidden: TPIDR2_EL0, SMPRI_EL1, SMCR_EL1, SVCR (FEAT_SME) are UNDEFINED",
        &[
            &rw!("TPIDR2_EL0", "s3_3_c13_c0_5"),
            &rw!("SMPRI_EL1", "s3_0_c1_c2_4"),
            &rw!("SMCR_EL1", "s3_0_c1_c2_6"),
            &rw!("SVCR", "s3_3_c4_c2_2"),
        ],
    );
    hidden(
        "hidden: ZCR_EL1 (FEAT_SVE) is UNDEFINED",
        &[&rw!("ZCR_EL1", "s3_0_c1_c2_0")],
    );
    hidden(
        "hidden: GCSCR_EL1, GCSPR_EL1, GCSCRE0_EL1, GCSPR_EL0 (FEAT_GCS) are UNDEFINED",
        &[
            &rw!("GCSCR_EL1", "s3_0_c2_c5_0"),
            &rw!("GCSPR_EL1", "s3_0_c2_c5_1"),
            &rw!("GCSCRE0_EL1", "s3_0_c2_c5_2"),
            &rw!("GCSPR_EL0", "s3_3_c2_c5_1"),
        ],
    );
    hidden(
        "hidden: AMCR_EL0, AMCFGR_EL0, AMUSERENR_EL0 (FEAT_AMUv1) are UNDEFINED",
        &[
            &rw!("AMCR_EL0", "s3_3_c13_c2_0"),
            &[rd!("AMCFGR_EL0", "s3_3_c13_c2_1")],
            &rw!("AMUSERENR_EL0", "s3_3_c13_c2_3"),
        ],
    );
    hidden(
        "hidden: LORSA/LOREA/LORN/LORC/LORID_EL1 (FEAT_LOR) are UNDEFINED",
        &[
            &rw!("LORSA_EL1", "s3_0_c10_c4_0"),
            &rw!("LOREA_EL1", "s3_0_c10_c4_1"),
            &rw!("LORN_EL1", "s3_0_c10_c4_2"),
            &rw!("LORC_EL1", "s3_0_c10_c4_3"),
            &[rd!("LORID_EL1", "s3_0_c10_c4_7")],
        ],
    );
    hidden(
        "hidden: ERRIDR/ERRSELR/ERXFR/ERXSTATUS_EL1 (FEAT_RAS error records) are UNDEFINED",
        &[
            &[rd!("ERRIDR_EL1", "s3_0_c5_c3_0")],
            &rw!("ERRSELR_EL1", "s3_0_c5_c3_1"),
            &[rd!("ERXFR_EL1", "s3_0_c5_c4_0")],
            &rw!("ERXSTATUS_EL1", "s3_0_c5_c4_2"),
        ],
    );
    hidden(
        "hidden: APIAKeyLo/APIBKeyLo/APDAKeyLo/APDBKeyLo/APGAKeyLo_EL1 (FEAT_PAuth) are UNDEFINED",
        &[
            &rw!("APIAKeyLo_EL1", "s3_0_c2_c1_0"),
            &rw!("APIBKeyLo_EL1", "s3_0_c2_c1_2"),
            &rw!("APDAKeyLo_EL1", "s3_0_c2_c2_0"),
            &rw!("APDBKeyLo_EL1", "s3_0_c2_c2_2"),
            &rw!("APGAKeyLo_EL1", "s3_0_c2_c3_0"),
        ],
    );
    hidden(
        "hidden: ACCDATA_EL1 (FEAT_LS64_ACCDATA) is UNDEFINED",
        &[&rw!("ACCDATA_EL1", "s3_0_c13_c0_5")],
    );
    hidden(
        "hidden: MPAM0_EL1, MPAM1_EL1, MPAMIDR_EL1 (FEAT_MPAM) are UNDEFINED",
        &[
            &rw!("MPAM0_EL1", "s3_0_c10_c5_1"),
            &rw!("MPAM1_EL1", "s3_0_c10_c5_0"),
            &[rd!("MPAMIDR_EL1", "s3_0_c10_c4_4")],
        ],
    );
    hidden(
        "hidden: PMSCR/PMSIDR/PMBLIMITR/PMBIDR_EL1 (FEAT_SPE) are UNDEFINED",
        &[
            &rw!("PMSCR_EL1", "s3_0_c9_c9_0"),
            &[rd!("PMSIDR_EL1", "s3_0_c9_c9_7")],
            &rw!("PMBLIMITR_EL1", "s3_0_c9_c10_0"),
            &[rd!("PMBIDR_EL1", "s3_0_c9_c10_7")],
        ],
    );
    hidden(
        "hidden: TRFCR_EL1, TRBLIMITR_EL1, TRBIDR_EL1, TRCPRGCTLR, TRCIDR0 (trace) are UNDEFINED",
        &[
            &rw!("TRFCR_EL1", "s3_0_c1_c2_1"),
            &rw!("TRBLIMITR_EL1", "s3_0_c9_c11_0"),
            &[rd!("TRBIDR_EL1", "s3_0_c9_c11_7")],
            &rw!("TRCPRGCTLR", "s2_1_c0_c1_0"),
            &[rd!("TRCIDR0", "s2_1_c0_c8_7")],
        ],
    );
    hidden(
        "hidden: BRBCR_EL1, BRBIDR0_EL1 (FEAT_BRBE) are UNDEFINED",
        &[
            &rw!("BRBCR_EL1", "s2_1_c9_c0_0"),
            &[rd!("BRBIDR0_EL1", "s2_1_c9_c2_0")],
        ],
    );
    hidden(
        "hidden: RCWMASK_EL1 (FEAT_THE), FPMR (FEAT_FPMR) are UNDEFINED",
        &[
            &rw!("RCWMASK_EL1", "s3_0_c13_c0_6"),
            &rw!("FPMR", "s3_3_c4_c4_2"),
        ],
    );
    hidden(
        "hidden: GCR_EL1, RGSR_EL1, TFSR_EL1, TFSRE0_EL1 (FEAT_MTE2) are UNDEFINED",
        &[
            &rw!("GCR_EL1", "s3_0_c1_c0_6"),
            &rw!("RGSR_EL1", "s3_0_c1_c0_5"),
            &rw!("TFSR_EL1", "s3_0_c5_c6_0"),
            &rw!("TFSRE0_EL1", "s3_0_c5_c6_1"),
        ],
    );
    // FEAT_NMI: reads of ALLINT cannot be trapped (they only show PSTATE.ALLINT);
    // writes can (HCRX_EL2.TALLINT).
    hidden(
        "hidden: MSR ALLINT (FEAT_NMI) is UNDEFINED",
        &[&[wr!("ALLINT", "s3_0_c4_c3_0")]],
    );
    mops();
    debug();
}

/// FEAT_MOPS is hidden (HCRX_EL2.MSCEn = 0): a CPYFP is UNDEFINED. The prologue
/// is followed by its main and epilogue only if it executed: it leaves
/// PSTATE.V = 0 (either algorithm option), while an UNDEF returns with the
/// NZCV = 0b1111 set before it.
fn mops() {
    let src = [0x5au8; 16];
    let mut dst = [0u8; 16];
    let mut pc = 0u64;
    let info = expect_exception(|| {
        // SAFETY: a 16-byte memory copy between two live stack buffers (the
        // pointers and size are inout registers, which the instructions advance),
        // or one UNDEF that the armed vector records and skips; NZCV is clobbered.
        unsafe {
            asm!(
                ".arch_extension mops",
                "mov {flags}, #0xf0000000",
                "msr nzcv, {flags}",
                "adr {pc}, 1f",
                "1: cpyfp [{d}]!, [{s}]!, {n}!",
                "b.vs 2f",
                "cpyfm [{d}]!, [{s}]!, {n}!",
                "cpyfe [{d}]!, [{s}]!, {n}!",
                "2:",
                pc = out(reg) pc,
                flags = out(reg) _,
                d = inout(reg) dst.as_mut_ptr() => _,
                s = inout(reg) src.as_ptr() => _,
                n = inout(reg) 16u64 => _,
                options(nostack),
            )
        }
    });
    let p = Probe {
        op: "CPYFP",
        reg: "(16-byte copy)",
        pc,
        info,
    };
    check!(
        "hidden: CPYFP (FEAT_MOPS) is UNDEFINED",
        p.undefined(),
        "{} (destination afterwards {:x?})",
        Detail(p),
        &dst[..4]
    );
}

/// Self-hosted debug belongs to the guest (MDCR_EL2.{TDE,TDA,TDOSA} clear, as
/// the CPU model shows the debug architecture): a BRK is taken at its own EL1 with
/// EC 0x3C, and its debug registers read without a trap.
fn debug() {
    const EC_BRK64: u8 = 0x3c;
    let mut pc = 0u64;
    let info = expect_exception(|| {
        // SAFETY: BRK takes a Breakpoint Instruction exception, which the armed
        // vector records and returns after.
        unsafe { asm!("adr {pc}, 1f", "1: brk #0x42", pc = out(reg) pc, options(nomem, nostack)) }
    });
    check!(
        "debug: BRK is taken at the guest's EL1 (EC 0x3C, comment 0x42)",
        matches!(info, Some(i) if i.ec() == EC_BRK64 && i.iss() & 0xffff == 0x42 && i.elr == pc),
        "expected EC {EC_BRK64:#x} at {pc:#x}, got {info:x?}"
    );
    let reads = [
        rd!("MDSCR_EL1", "s2_0_c0_c2_2"),
        rd!("DBGBCR0_EL1", "s2_0_c0_c0_5"),
        rd!("OSLSR_EL1", "s2_0_c1_c1_4"),
    ];
    let bad = reads.iter().find(|p| p.info.is_some());
    check!(
        "debug: MDSCR_EL1, DBGBCR0_EL1, OSLSR_EL1 are readable",
        bad.is_none(),
        "{}",
        match bad {
            Some(p) => Detail(*p),
            None => Detail(reads[0]),
        }
    );
}
