//! CPU-model conformance guest (issue 5): what a VM sees of its CPU.
//!
//! - Cache topology: CLIDR_EL1, CCSIDR_EL1 of every cache CLIDR describes, CTR_EL0,
//!   CCSIDR2_EL1, under the VM's cache policy (`virtual`, `host` or an explicit list,
//!   src/sysreg/mod.rs), which the config announces in its bootargs:
//!   `cpumodel.cache=virtual|host|explicit`, and for `explicit` the configured values
//!   `cpumodel.clidr=0x... cpumodel.ccsidr=0x...,0x...` (CSSELR order). Without a
//!   marker the default policy, `virtual`, is assumed.
//! - CSSELR_EL1 write-then-read; a selection of no cache reads the documented 0.
//! - ID registers hide what Ferrovisor does not virtualize (PMU, SPE, TRBE, AMU, RAS,
//!   EL2, SVE, MTE, SME, VHE).
//! - ID_AA64PFR0_EL1.CSV2 and ID_AA64PFR1_EL1.CSV2_frac promise no SCXTNUM_ELx,
//!   and ID_AA64MMFR0_EL1.PARange no more than the 48-bit IPA space Ferrovisor's
//!   stage 2 gives at most (tests/cpumodel.rs also compares it with the size the
//!   hypervisor logs).
//! - An unknown system register (PMCR_EL0) is UNDEFINED.
//! - Every System register of a hidden feature is UNDEFINED, and self-hosted debug
//!   is the guest's (`hidden`).
//! - With two or more vCPUs (`/cpus` in the device tree): vCPU 1, started with PSCI
//!   CPU_ON, reads its own view; it must equal vCPU 0's (except MPIDR_EL1), and
//!   CSSELR_EL1 is per vCPU.
//! - Set/way: caches off and on with DC CISW/ISW around SCTLR_EL1.{M,C} keeps the
//!   data written on either side visible on the other.
//!
//! The number of checks is fixed: [`CHECKS_UP`] with one vCPU, [`CHECKS_SMP`] with
//! more (tests/cpumodel.rs expects exactly these). On bare QEMU (EL1, no hypervisor)
//! the guest runs to the end; the hiding and UNDEF checks fail there, by design.
#![no_std]
#![no_main]
#![deny(clippy::undocumented_unsafe_blocks)]

mod cache;
mod fdt;
mod hidden;
mod regs;
mod secondary;
mod setway;

use core::arch::asm;

use cache::{
    CCSIDR_NONEXISTENT, CSSELR_LEVEL_IND, Clidr, Expected, Geometry, Policy, ctr_min_line_log2,
    has_ccidx, known_cpu,
};
use guest_rt::exception::{EC_SYSREG, EC_UNKNOWN};
use guest_rt::{ExceptionInfo, check, expect_exception, finish, println};
use regs::{
    CSSELR_SLOTS, ID_AA64DFR0_EL1, ID_AA64MMFR0_EL1, ID_AA64MMFR1_EL1, ID_AA64MMFR2_EL1,
    ID_AA64PFR0_EL1, ID_AA64PFR1_EL1, ID_SPACE_LEN, View, field, id_name,
};

guest_rt::entry!(main);

/// Checks with one vCPU: config 1, cache topology 5, CSSELR 3, ID registers 12,
/// UNDEF 2, hidden features and debug ([`hidden::CHECKS`]), set/way 4.
pub const CHECKS_UP: u32 = 27 + hidden::CHECKS;
/// Checks with two or more vCPUs: [`CHECKS_UP`] and 5 about vCPU 1.
pub const CHECKS_SMP: u32 = CHECKS_UP + 5;

/// How long vCPU 0 waits for vCPU 1 (virtual counter seconds; TCG is slow).
const SECONDARY_TIMEOUT_S: u64 = 20;

fn main(dtb: u64) -> ! {
    println!("Ferrovisor CPU-model guest");
    let machine = fdt::read(dtb);
    let (policy, cpus, policy_found) = match &machine {
        Ok(m) => {
            let p = m.bootargs.and_then(policy_from_bootargs);
            (p.unwrap_or(Policy::Virtual), m.cpus, p.is_some())
        }
        Err(_) => (Policy::Virtual, 1, false),
    };
    check!(
        "config: bootargs name the cache policy (cpumodel.cache=...)",
        policy_found,
        "{}",
        match &machine {
            Ok(m) => Detail::Bootargs(m.bootargs),
            Err(e) => Detail::Str(e.0),
        }
    );

    let view = View::read(0);
    let known = known_cpu(view.midr_el1);
    println!(
        "info: policy {}, {} vCPU(s), MIDR_EL1 {:#x} ({}), CTR_EL0 {:#x}, CLIDR_EL1 {:#x}, FEAT_CCIDX {}",
        policy.name(),
        cpus,
        view.midr_el1,
        known.map_or("unknown CPU", |c| c.name),
        view.ctr_el0,
        view.clidr_el1,
        has_ccidx(view.id[ID_AA64MMFR2_EL1]),
    );
    for s in Clidr(view.clidr_el1).selections() {
        println!(
            "info: CSSELR {s:#x}: CCSIDR_EL1 {:#x} ({})",
            view.ccsidr_el1[s as usize],
            geometry(&view, s)
        );
    }

    cache_topology(&view, &policy);
    cache_selection(&view);
    id_registers(&view);
    unknown_register();
    hidden::run();
    if cpus >= 2 {
        second_vcpu(&view);
    }
    set_way();
    finish()
}

/// The policy the bootargs announce.
fn policy_from_bootargs(bootargs: &str) -> Option<Policy> {
    match fdt::bootarg(bootargs, "cpumodel.cache")? {
        "virtual" => Some(Policy::Virtual),
        "host" => Some(Policy::Host),
        "explicit" => {
            let clidr = fdt::parse_u64(fdt::bootarg(bootargs, "cpumodel.clidr")?)?;
            let mut ccsidr = [0; CSSELR_SLOTS];
            let mut count = 0;
            for v in fdt::bootarg(bootargs, "cpumodel.ccsidr")?.split(',') {
                *ccsidr.get_mut(count)? = fdt::parse_u64(v)?;
                count += 1;
            }
            Some(Policy::Explicit {
                clidr,
                ccsidr,
                count,
            })
        }
        _ => None,
    }
}

fn geometry(view: &View, csselr: u64) -> Geometry {
    Geometry::from_ccsidr(
        view.ccsidr_el1[csselr as usize],
        has_ccidx(view.id[ID_AA64MMFR2_EL1]),
    )
}

/// CLIDR_EL1, CCSIDR_EL1, CTR_EL0 and CCSIDR2_EL1 under the VM's policy.
fn cache_topology(view: &View, policy: &Policy) {
    let known = known_cpu(view.midr_el1);
    let ccidx = has_ccidx(view.id[ID_AA64MMFR2_EL1]);
    let clidr = Clidr(view.clidr_el1);

    // CTR_EL0 is the hardware's on every policy: on one CPU model the system-wide
    // safe value is that CPU's (src/sysreg/mod.rs, "CTR_EL0 is the same on every
    // core"). For a CPU this guest does not know: RES1 bit 31 and sane line sizes.
    let ctr = view.ctr_el0;
    match known {
        Some(cpu) => check!(
            "cache: CTR_EL0 is the host CPU's",
            ctr == cpu.ctr,
            "CTR_EL0 = {ctr:#x}, {} has {:#x}",
            cpu.name,
            cpu.ctr
        ),
        None => check!(
            "cache: CTR_EL0 is the host CPU's",
            ctr & (1 << 31) != 0 && ctr_min_line_log2(ctr, false) >= 4,
            "CTR_EL0 = {ctr:#x} (unknown CPU: RES1 bit 31 and a line of at least 16 B expected)"
        ),
    };

    let expected: Option<Expected> = match policy {
        Policy::Virtual => Some(cache::virtual_view(ctr)),
        Policy::Host => known.map(cache::host_view),
        Policy::Explicit {
            clidr,
            ccsidr,
            count,
        } => Some(cache::explicit_view(*clidr, &ccsidr[..*count])),
    };
    let name = policy.name();

    match &expected {
        Some(e) => check!(
            "cache: CLIDR_EL1 is the policy's",
            view.clidr_el1 == e.clidr,
            "{name}: CLIDR_EL1 = {:#x}, expected {:#x}",
            view.clidr_el1,
            e.clidr
        ),
        // host on an unknown CPU: at least a consistent description.
        None => check!(
            "cache: CLIDR_EL1 is the policy's",
            clidr.levels() >= 1
                && clidr.loc() as usize <= clidr.levels()
                && clidr.louu() <= clidr.loc()
                && clidr.louis() <= clidr.loc(),
            "{name} on an unknown CPU: CLIDR_EL1 = {:#x} is not a consistent topology",
            view.clidr_el1
        ),
    };

    // CCSIDR_EL1 of every described cache.
    let mut bad: Option<(u64, u64, Option<u64>)> = None;
    for s in clidr.selections() {
        let got = view.ccsidr_el1[s as usize];
        let ok = match &expected {
            Some(e) => match e.ccsidr[s as usize] {
                Some(want) if e.exact => got == want,
                Some(want) => {
                    Geometry::from_ccsidr(got, ccidx) == Geometry::from_ccsidr(want, false)
                }
                None => false,
            },
            // Unknown CPU under host: something real, not the no-cache value.
            None => got != CCSIDR_NONEXISTENT,
        };
        if !ok && bad.is_none() {
            bad = Some((s, got, expected.as_ref().and_then(|e| e.ccsidr[s as usize])));
        }
    }
    check!(
        "cache: CCSIDR_EL1 of every cache CLIDR_EL1 describes is the policy's",
        bad.is_none() && clidr.levels() >= 1,
        "{name}: CSSELR/got/expected {bad:x?} (CLIDR_EL1 {:#x})",
        view.clidr_el1
    );

    // CTR_EL0 promises the smallest line of each kind; no cache may have a smaller one
    // (the virtual policy uses exactly that minimum).
    let small = clidr
        .selections()
        .find(|&s| geometry(view, s).line_log2 < ctr_min_line_log2(ctr, s & 1 != 0));
    check!(
        "cache: no cache line is smaller than CTR_EL0's minimum",
        small.is_none(),
        "CSSELR {small:x?}: {:?} with CTR_EL0 {ctr:#x}",
        small.map(|s| geometry(view, s))
    );

    // CCSIDR2_EL1: with FEAT_CCIDX it holds NumSets again; without it, UNDEFINED.
    let first = clidr.selections().next().unwrap_or(0);
    let mut ccsidr2 = 0;
    let info = expect_exception(|| ccsidr2 = regs::ccsidr2_el1(first));
    if ccidx {
        let sets = (view.ccsidr_el1[first as usize] >> 32) & 0xff_ffff;
        check!(
            "cache: CCSIDR2_EL1 follows FEAT_CCIDX",
            info.is_none() && ccsidr2 & 0xff_ffff == sets,
            "FEAT_CCIDX: CCSIDR2_EL1 = {ccsidr2:#x}, CCSIDR_EL1.NumSets = {sets:#x}, exception {info:x?}"
        );
    } else {
        // Without FEAT_CCIDX, CCSIDR2_EL1 is UNDEFINED. Its encoding (Op0 3, Op1 1,
        // CRn 0, CRm 0, Op2 2) is in the feature ID space, so with FEAT_IDST
        // (ID_AA64MMFR2_EL1.IDS != 0, as the guest's view says) the exception is
        // reported with EC 0x18 and the access in the ISS instead of EC 0 (Arm ARM
        // D19.2, FEAT_IDST).
        let idst = field(view.id[ID_AA64MMFR2_EL1], 36) != 0;
        let ok = match info {
            Some(i) if idst => i.ec() == EC_SYSREG && sysreg_iss_is(i.iss(), 3, 1, 0, 0, 2, true),
            Some(i) => i.ec() == EC_UNKNOWN,
            None => false,
        };
        check!(
            "cache: CCSIDR2_EL1 follows FEAT_CCIDX",
            ok,
            "no FEAT_CCIDX: MRS CCSIDR2_EL1 must be UNDEFINED (EC {:#x}{}), got {info:x?} (value {ccsidr2:#x})",
            if idst { EC_SYSREG } else { EC_UNKNOWN },
            if idst { ", FEAT_IDST" } else { "" }
        );
    }
}

/// Whether an EC 0x18 ISS describes this access (Arm ARM D23.2 ESR_EL1, ISS encoding
/// for an exception from MSR, MRS or System instruction execution): Op0 [21:20],
/// Op2 [19:17], Op1 [16:14], CRn [13:10], CRm [4:1], Direction [0] (1 = read).
fn sysreg_iss_is(iss: u32, op0: u32, op1: u32, crn: u32, crm: u32, op2: u32, read: bool) -> bool {
    (iss >> 20) & 3 == op0
        && (iss >> 17) & 7 == op2
        && (iss >> 14) & 7 == op1
        && (iss >> 10) & 0xf == crn
        && (iss >> 1) & 0xf == crm
        && (iss & 1 == 1) == read
}

/// The first CSSELR_EL1 value that selects no cache: a level without an instruction
/// cache (InD = 1), or the level above the last.
fn absent_selections(clidr: Clidr) -> (u64, u64) {
    let above = (clidr.levels().min(6) as u64) << 1;
    let no_icache = (0..CSSELR_SLOTS as u64)
        .filter(|s| s & 1 == 1)
        .find(|&s| !clidr.describes(s))
        .unwrap_or(above | 1);
    (above, no_icache)
}

/// CSSELR_EL1 write-then-read, and selections of no cache.
fn cache_selection(view: &View) {
    check!(
        "csselr: CSSELR_EL1 reads back each selection written (Level, InD)",
        view.csselr_mismatch == 0,
        "selections read back differently: bitmap {:#x}",
        view.csselr_mismatch
    );

    let clidr = Clidr(view.clidr_el1);
    let (above, no_icache) = absent_selections(clidr);
    // Select a real cache first, so a stale CCSIDR from it would show.
    for (name, absent) in [
        (
            "csselr: a level above the last cache reads CCSIDR_EL1 = 0",
            above,
        ),
        (
            "csselr: an absent instruction cache reads CCSIDR_EL1 = 0",
            no_icache,
        ),
    ] {
        let real = regs::ccsidr_el1(0);
        let got = regs::ccsidr_el1(absent);
        check!(
            name,
            got == CCSIDR_NONEXISTENT,
            "CSSELR {absent:#x}: CCSIDR_EL1 = {got:#x} (CSSELR 0 read {real:#x})"
        );
    }
    regs::write_csselr_el1(0);
}

/// What the CPU model must hide (src/sysreg/id.rs guest limits): ID register,
/// field shift, check name. Each field must read 0, "not implemented" (for PMUVer
/// that also excludes 0xF, an IMPLEMENTATION DEFINED PMU).
const HIDDEN: [(usize, u32, &str); 10] = [
    (
        ID_AA64DFR0_EL1,
        8,
        "id: ID_AA64DFR0_EL1.PMUVer = 0 (no PMU)",
    ),
    (
        ID_AA64DFR0_EL1,
        32,
        "id: ID_AA64DFR0_EL1.PMSVer = 0 (no SPE)",
    ),
    (
        ID_AA64DFR0_EL1,
        44,
        "id: ID_AA64DFR0_EL1.TraceBuffer = 0 (no TRBE)",
    ),
    (
        ID_AA64PFR0_EL1,
        44,
        "id: ID_AA64PFR0_EL1.AMU = 0 (no activity monitors)",
    ),
    (
        ID_AA64PFR0_EL1,
        28,
        "id: ID_AA64PFR0_EL1.RAS = 0 (no RAS extension)",
    ),
    (
        ID_AA64PFR0_EL1,
        8,
        "id: ID_AA64PFR0_EL1.EL2 = 0 (no nested virtualization)",
    ),
    (ID_AA64PFR0_EL1, 32, "id: ID_AA64PFR0_EL1.SVE = 0 (no SVE)"),
    (ID_AA64PFR1_EL1, 8, "id: ID_AA64PFR1_EL1.MTE = 0 (no MTE)"),
    (ID_AA64PFR1_EL1, 24, "id: ID_AA64PFR1_EL1.SME = 0 (no SME)"),
    (ID_AA64MMFR1_EL1, 8, "id: ID_AA64MMFR1_EL1.VH = 0 (no VHE)"),
];

/// ID_AA64MMFR0_EL1.PARange encodings and their sizes in bits (Arm ARM).
const PA_RANGE_BITS: [u32; 8] = [32, 36, 40, 42, 44, 48, 52, 56];

fn id_registers(view: &View) {
    for (reg, shift, name) in HIDDEN {
        let v = field(view.id[reg], shift);
        check!(
            name,
            v == 0,
            "field = {v:#x}, {} = {:#x}",
            id_name(reg),
            view.id[reg]
        );
    }
    // CSV2 = 2 or 3 (FEAT_CSV2_2/3), or CSV2_frac = 2 (FEAT_CSV2_1p2), would
    // promise SCXTNUM_EL0/EL1, which the hypervisor traps (HCR_EL2.EnSCXT = 0).
    let (csv2, frac) = (
        field(view.id[ID_AA64PFR0_EL1], 56),
        field(view.id[ID_AA64PFR1_EL1], 32),
    );
    check!(
        "id: ID_AA64PFR0_EL1.CSV2 <= 1 and ID_AA64PFR1_EL1.CSV2_frac <= 1 (no SCXTNUM_ELx)",
        csv2 <= 1 && frac <= 1,
        "CSV2 = {csv2}, CSV2_frac = {frac}"
    );
    // The guest's physical addresses are IPAs: PARange must not promise more
    // than the stage-2 input range (at most 48 bits with Ferrovisor's 4 KiB
    // granule stage 2 without FEAT_LPA2).
    let parange = field(view.id[ID_AA64MMFR0_EL1], 0);
    let bits = PA_RANGE_BITS.get(parange as usize).copied().unwrap_or(0);
    println!("info: ID_AA64MMFR0_EL1.PARange {parange} ({bits}-bit physical addresses)");
    check!(
        "id: ID_AA64MMFR0_EL1.PARange <= 48 bits (the stage-2 IPA space)",
        parange <= 5,
        "PARange = {parange} ({bits} bits)"
    );
}

/// PMCR_EL0 is not in Ferrovisor's register table and the PMU is trapped
/// (MDCR_EL2.TPM/TPMCR): both directions must be UNDEFINED (EC 0) at the instruction.
fn unknown_register() {
    let mut pc = 0;
    let info = expect_exception(|| {
        // SAFETY: the MRS UNDEFs (recorded and skipped) or reads PMCR_EL0 into a
        // scratch register; no memory is touched.
        unsafe {
            asm!("adr {pc}, 1f", "1: mrs {tmp}, pmcr_el0",
                pc = out(reg) pc, tmp = out(reg) _, options(nomem, nostack))
        }
    });
    check_undef("undef: MRS PMCR_EL0 is UNDEFINED", info, pc);

    let info = expect_exception(|| {
        // SAFETY: as above for an MSR of 0, which on a real PMU only disables it.
        unsafe {
            asm!("adr {pc}, 1f", "1: msr pmcr_el0, xzr",
                pc = out(reg) pc, options(nomem, nostack))
        }
    });
    check_undef("undef: MSR PMCR_EL0 is UNDEFINED", info, pc);
}

fn check_undef(name: &str, info: Option<ExceptionInfo>, pc: u64) {
    check!(
        name,
        matches!(info, Some(i) if i.ec() == EC_UNKNOWN && i.elr == pc),
        "expected EC {EC_UNKNOWN:#x} at {pc:#x}, got {info:x?}"
    );
}

/// vCPU 1 (MPIDR Aff0 = 1) reads its view; it must equal vCPU 0's.
fn second_vcpu(view0: &View) {
    let clidr = Clidr(view0.clidr_el1);
    // vCPU 0 selects a real cache; vCPU 1 leaves another selection behind.
    let mine = clidr.selections().next().unwrap_or(0);
    let (theirs, _) = absent_selections(clidr);
    regs::write_csselr_el1(mine);

    let outcome = secondary::run(1, theirs, SECONDARY_TIMEOUT_S);
    check!(
        "smp: PSCI CPU_ON starts vCPU 1",
        !matches!(outcome, secondary::Outcome::CpuOnFailed(_)),
        "CPU_ON returned {:#x}",
        match outcome {
            secondary::Outcome::CpuOnFailed(e) => e,
            _ => 0,
        }
    );
    let view1 = match outcome {
        secondary::Outcome::Done(v) => Some(v),
        _ => None,
    };
    check!(
        "smp: vCPU 1 reads its view and reports",
        view1.is_some(),
        "{}",
        match outcome {
            secondary::Outcome::CpuOnFailed(_) => Detail::Str("not started"),
            secondary::Outcome::TimedOut => Detail::Str("no report within the timeout"),
            secondary::Outcome::Exception { esr, elr } => Detail::Exception(esr, elr),
            secondary::Outcome::Done(_) => Detail::Str(""),
        }
    );
    let view1 = view1.unwrap_or(View::ZERO);

    let cache_diff = (0..CSSELR_SLOTS).find(|&s| {
        view1.ccsidr_el1[s] != view0.ccsidr_el1[s] || view1.ccsidr2_el1[s] != view0.ccsidr2_el1[s]
    });
    check!(
        "smp: vCPU 1 sees the same CTR_EL0, CLIDR_EL1 and CCSIDR_EL1 (all 14 selections)",
        view1.ctr_el0 == view0.ctr_el0
            && view1.clidr_el1 == view0.clidr_el1
            && cache_diff.is_none()
            && view1.csselr_mismatch == 0,
        "vCPU 0/1: CTR {:#x}/{:#x} CLIDR {:#x}/{:#x}, first CSSELR differing {cache_diff:?}, vCPU 1 CSSELR read-back bitmap {:#x}",
        view0.ctr_el0,
        view1.ctr_el0,
        view0.clidr_el1,
        view1.clidr_el1,
        view1.csselr_mismatch
    );

    let id_diff = (0..ID_SPACE_LEN).find(|&i| view1.id[i] != view0.id[i]);
    check!(
        "smp: vCPU 1 sees the same MIDR_EL1 and ID registers (all 56 of the ID space)",
        view1.midr_el1 == view0.midr_el1 && id_diff.is_none(),
        "MIDR {:#x}/{:#x}; first differing: {}",
        view0.midr_el1,
        view1.midr_el1,
        match id_diff {
            Some(i) => Detail::Id(i, view0.id[i], view1.id[i]),
            None => Detail::Str("none"),
        }
    );

    let now = regs::csselr_el1() & CSSELR_LEVEL_IND;
    check!(
        "smp: CSSELR_EL1 is per vCPU",
        now == mine && view1.mpidr_el1 & 0xff_00ff_ffff == 1,
        "vCPU 0 wrote {mine:#x}, vCPU 1 wrote {theirs:#x}, vCPU 0 reads {now:#x}; vCPU 1 MPIDR_EL1 {:#x}",
        view1.mpidr_el1
    );
    regs::write_csselr_el1(0);
}

/// A detail printed for a failed check, without an allocator.
enum Detail {
    Str(&'static str),
    Exception(u64, u64),
    Id(usize, u64, u64),
    Bootargs(Option<&'static str>),
}

impl core::fmt::Display for Detail {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Detail::Str(s) => f.write_str(s),
            Detail::Exception(esr, elr) => {
                write!(f, "vCPU 1 took an exception: ESR_EL1 {esr:#x} at {elr:#x}")
            }
            Detail::Id(i, a, b) => write!(f, "{} {a:#x}/{b:#x}", id_name(i)),
            Detail::Bootargs(args) => write!(f, "/chosen/bootargs = {args:?}"),
        }
    }
}

/// Caches off and on again around set/way maintenance (see `setway`).
fn set_way() {
    let obs = setway::caches_off_and_on();
    let m_c = setway::SCTLR_M | setway::SCTLR_C;
    // PAR_EL1.F (bit 0) = 0: the translation succeeded; ATTR (bits [63:56]) is the
    // memory type it found: Normal write-back (MAIR Attr1 = 0xff) with the MMU on;
    // with the MMU off, data accesses are Device-nGnRnE (0x00) (Arm ARM D8.2.11,
    // "The effects of disabling an address translation stage").
    let attr = |par: u64| (par & 1 == 0).then_some(par >> 56);
    check!(
        "setway: SCTLR_EL1 write clearing M and C takes effect (MMU off)",
        obs.sctlr_off & m_c == 0 && attr(obs.par_off) == Some(0) && attr(obs.par_on) == Some(0xff),
        "SCTLR_EL1 after the write {:#x}; PAR_EL1 caches on {:#x}, off {:#x}",
        obs.sctlr_off,
        obs.par_on,
        obs.par_off
    );
    check!(
        "setway: data written with caches on is visible with caches off",
        obs.mismatches_off == 0,
        "{} of {} words differ, first at index {}",
        obs.mismatches_off,
        setway::WORDS,
        obs.first_mismatch
    );
    check!(
        "setway: SCTLR_EL1 write setting M and C takes effect (caches on)",
        obs.sctlr_on & m_c == m_c,
        "SCTLR_EL1 after the write {:#x}",
        obs.sctlr_on
    );
    let (bad, first) = setway::check_pattern_off();
    check!(
        "setway: data written with caches off is visible with caches on",
        bad == 0,
        "{bad} of {} words differ, first (index, value) {first:x?}",
        setway::WORDS
    );
}
