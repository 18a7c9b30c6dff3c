//! PMU guest (boards/qemu-virt/pmu.toml, tests/pmu.rs). Its role comes from
//! the bootargs: `role=a` and `role=b` are VMs with a PMU that share physical
//! CPU 0 (`counters=N`: the PMCR_EL0.N their config gives them), `role=none` a
//! VM with `pmu = false`.
//!
//! With a PMU:
//! 1. ID_AA64DFR0_EL1.PMUVer names a PMUv3 (printed: the test checks the
//!    version per CPU); PMCR_EL0.N is the configured count; the device tree has
//!    an `arm,armv8-pmuv3` node with PPI 7 (INTID 23), level-high.
//! 2. Counters the VM does not have: enable bits read as 0 (RAZ/WI),
//!    PMEVCNTR30_EL0 and PMXEVCNTR_EL0 with PMSELR_EL0.SEL = N are UNDEFINED.
//! 3. The EL2 filter bits (NSH) read as 0 (EL2 is not implemented as far as
//!    the guest can see), and a cycle counter and an event counter filtered to
//!    count only EL2 (P = U = 1, NSH asked for) count nothing across a thousand
//!    hypervisor calls: the hypervisor's work is never counted.
//! 4. The cycle counter advances at EL1; SW_INCR counts exactly; a disabled
//!    counter does not; PMUSERENR_EL0 keeps EN, SW, CR, ER only. At EL0, with
//!    PMUSERENR_EL0 = 0 a PMCCNTR_EL0 read traps to the guest's EL1 (EC 0x18);
//!    with CR it is read; with SW a PMSWINC_EL0 write counts for a counter
//!    whose filter counts EL0 (U = 0) and not for one that excludes it.
//! 5. A counter wrapping sets its overflow flag and raises PPI 23, taken
//!    through the GIC CPU interface; cleared and deactivated, it does not
//!    come back.
//! 6. Rounds of SW_INCRs while the CPU goes to the other VM (which counts on
//!    the same hardware counters): every count is exactly this VM's own, and
//!    the cycle counter does not advance while the other VM runs.
//!
//! Without a PMU: PMUVer = 0, no `pmu` node, and PMCR_EL0, PMCCNTR_EL0,
//! PMSWINC_EL0 and PMUSERENR_EL0 are UNDEFINED.
#![no_std]
#![no_main]
#![deny(clippy::undocumented_unsafe_blocks)]

#[allow(dead_code)]
#[path = "../../victim/src/fdt.rs"]
mod fdt;

use core::arch::{asm, global_asm};

use guest_rt::exception::{ExceptionInfo, expect_exception};
use guest_rt::{check, finish, println};

guest_rt::entry!(main);

/// Checks with a PMU and without (tests/pmu.rs expects exactly these).
pub const CHECKS_PMU: u32 = 22;
pub const CHECKS_NONE: u32 = 6;

/// Rounds of the sharing check, and how long each spins: three 4 ms turns.
const ROUNDS: u64 = 6;
const SPIN_MS: u64 = 12;
/// SW_INCRs per round.
const INCREMENTS: u64 = 5;

/// Reads a system register by name.
macro_rules! rd {
    ($name:literal) => {{
        let v: u64;
        // SAFETY: reading a PMU or ID register; a trap, if any, is what the
        // check is about and is caught where expected.
        unsafe { asm!(concat!("mrs {}, ", $name), out(reg) v, options(nomem, nostack)) };
        v
    }};
}

/// Writes a system register by name, then `isb`.
macro_rules! wr {
    ($name:literal, $v:expr) => {{
        let v: u64 = $v;
        // SAFETY: writing a PMU or GIC CPU-interface register of this guest.
        unsafe { asm!(concat!("msr ", $name, ", {}"), "isb", in(reg) v, options(nomem, nostack)) };
    }};
}

const PMCR_E: u64 = 1;
const PMCR_P: u64 = 1 << 1;
const PMCR_C: u64 = 1 << 2;
const PMCR_LC: u64 = 1 << 6;
const CYCLE: u64 = 1 << 31;
const FILTER_P: u64 = 1 << 31;
const FILTER_U: u64 = 1 << 30;
const FILTER_NSH: u64 = 1 << 27;
const EVT_SW_INCR: u64 = 0x00;
const EVT_CPU_CYCLES: u64 = 0x11;
const PMU_INTID: u64 = 23;

global_asm!(
    r#"
.section .text
// (x0, ESR) pmu_el0_run(code x0, arg x1): runs `code` at EL0 (EL0t,
// interrupts masked) with x0 = arg until it takes an exception to EL1 (its
// closing SVC, or a trap), and returns its x0 and ESR_EL1. The EL0 code uses
// no memory. The vectors are this guest's only while it runs.
.global pmu_el0_run
pmu_el0_run:
    adrp    x9, pmu_el0_save
    add     x9, x9, :lo12:pmu_el0_save
    stp     x19, x20, [x9, #0]
    stp     x21, x22, [x9, #16]
    stp     x23, x24, [x9, #32]
    stp     x25, x26, [x9, #48]
    stp     x27, x28, [x9, #64]
    stp     x29, x30, [x9, #80]
    mov     x10, sp
    mrs     x11, vbar_el1
    stp     x10, x11, [x9, #96]
    adrp    x10, pmu_el0_vectors
    add     x10, x10, :lo12:pmu_el0_vectors
    msr     vbar_el1, x10
    msr     elr_el1, x0
    mov     x10, #0x3c0
    msr     spsr_el1, x10
    mov     x0, x1
    isb
    eret

    .balign 0x800
pmu_el0_vectors:
    .rept 8
    .balign 0x80
    b       .
    .endr
    .balign 0x80
    b       pmu_el0_back                // synchronous, lower EL, AArch64
    .rept 7
    .balign 0x80
    b       .
    .endr

pmu_el0_back:
    adrp    x9, pmu_el0_save
    add     x9, x9, :lo12:pmu_el0_save
    ldp     x10, x11, [x9, #96]
    msr     vbar_el1, x11
    isb
    mov     sp, x10
    ldp     x19, x20, [x9, #0]
    ldp     x21, x22, [x9, #16]
    ldp     x23, x24, [x9, #32]
    ldp     x25, x26, [x9, #48]
    ldp     x27, x28, [x9, #64]
    ldp     x29, x30, [x9, #80]
    mrs     x1, esr_el1
    ret

// EL0 routines.
.global pmu_el0_read_pmccntr
pmu_el0_read_pmccntr:
    mrs     x0, pmccntr_el0
    svc     #0
.global pmu_el0_swinc
pmu_el0_swinc:
    msr     pmswinc_el0, x0
    svc     #0

.section .bss
.balign 16
pmu_el0_save:
    .space 112
"#
);

/// What EL0 code left: its x0, and the ESR_EL1 of the exception that ended it.
#[repr(C)]
struct El0Exit {
    x0: u64,
    esr: u64,
}

unsafe extern "C" {
    fn pmu_el0_run(code: unsafe extern "C" fn(), arg: u64) -> El0Exit;
    fn pmu_el0_read_pmccntr();
    fn pmu_el0_swinc();
}

/// Runs an EL0 routine; its x0 and the exception class that ended it.
fn el0(code: unsafe extern "C" fn(), arg: u64) -> (u64, u64) {
    // SAFETY: the routines above use no memory and end in an exception to
    // EL1, which the temporary vectors turn into a return from here with
    // every callee-saved register, SP and VBAR_EL1 restored.
    let r = unsafe { pmu_el0_run(code, arg) };
    (r.x0, r.esr >> 26)
}

fn undef(e: Option<ExceptionInfo>) -> bool {
    e.is_some_and(|e| e.ec() == 0)
}

fn cntvct() -> u64 {
    rd!("cntvct_el0")
}

/// Selects counter `n` and writes its type and value (PMSELR/PMXEV*).
fn set_counter(n: u64, evtype: u64, value: u64) {
    wr!("pmselr_el0", n);
    wr!("pmxevtyper_el0", evtype);
    wr!("pmxevcntr_el0", value);
}

fn counter(n: u64) -> u64 {
    wr!("pmselr_el0", n);
    rd!("pmxevcntr_el0")
}

fn main(dtb: u64) -> ! {
    // SAFETY: the boot protocol puts the device tree in guest RAM at x0.
    let tree = unsafe { fdt::Fdt::at(dtb) };
    let args = tree.as_ref().and_then(|t| t.bootargs()).unwrap_or("");
    let role = fdt::bootarg(args, "role").unwrap_or("none");
    let node = tree
        .as_ref()
        .and_then(|t| t.property(b"pmu", b"compatible"));
    let irq = tree
        .as_ref()
        .and_then(|t| t.property(b"pmu", b"interrupts"));
    // SAFETY: masks IRQs (the overflow interrupt is polled); no memory effects.
    unsafe { asm!("msr daifset, #2", options(nomem, nostack)) };
    let pmuver = (rd!("id_aa64dfr0_el1") >> 8) & 0xf;
    println!("Ferrovisor PMU guest: role={role}, PMUVer={pmuver}");
    if role == "none" {
        no_pmu(pmuver, node.is_some());
    } else {
        let n: u64 = fdt::bootarg(args, "counters")
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        with_pmu(pmuver, n, node, irq);
    }
    finish()
}

fn no_pmu(pmuver: u64, node: bool) {
    check!(
        "pmu off: ID_AA64DFR0_EL1.PMUVer = 0",
        pmuver == 0,
        "{pmuver}"
    );
    check!("pmu off: no pmu node in the device tree", !node);
    let e = expect_exception(|| {
        let _ = rd!("pmcr_el0");
    });
    check!("pmu off: PMCR_EL0 is UNDEFINED", undef(e), "{e:?}");
    let e = expect_exception(|| {
        let _ = rd!("pmccntr_el0");
    });
    check!("pmu off: PMCCNTR_EL0 is UNDEFINED", undef(e), "{e:?}");
    let e = expect_exception(|| wr!("pmswinc_el0", 1));
    check!("pmu off: PMSWINC_EL0 is UNDEFINED", undef(e), "{e:?}");
    let e = expect_exception(|| wr!("pmuserenr_el0", 1));
    check!("pmu off: PMUSERENR_EL0 is UNDEFINED", undef(e), "{e:?}");
}

fn with_pmu(pmuver: u64, n: u64, node: Option<&[u8]>, irq: Option<&[u8]>) {
    check!(
        "pmu: ID_AA64DFR0_EL1.PMUVer names a PMUv3 up to PMUv3p5",
        matches!(pmuver, 1 | 4 | 5 | 6),
        "{pmuver}"
    );
    let pmcr = rd!("pmcr_el0");
    check!(
        "pmu: PMCR_EL0.N is the configured count",
        (pmcr >> 11) & 0x1f == n && n >= 1,
        "PMCR_EL0 {pmcr:#x}, expected N = {n}"
    );
    check!(
        "pmu: the device tree's pmu node is arm,armv8-pmuv3",
        node == Some(b"arm,armv8-pmuv3\0".as_slice()),
        "{node:?}"
    );
    check!(
        "pmu: its interrupt is PPI 7 (INTID 23), level-high",
        irq == Some([0, 0, 0, 1, 0, 0, 0, 7, 0, 0, 0, 4].as_slice()),
        "{irq:?}"
    );

    // 2. Counters beyond N.
    wr!("pmcntenset_el0", !0);
    let en = rd!("pmcntenset_el0");
    wr!("pmcntenclr_el0", !0);
    check!(
        "pmu: enable bits of counters beyond N read as 0",
        en == ((1 << n) - 1) | CYCLE,
        "PMCNTENSET_EL0 {en:#x}"
    );
    let e = expect_exception(|| {
        let _ = rd!("pmevcntr30_el0");
    });
    check!("pmu: PMEVCNTR30_EL0 is UNDEFINED", undef(e), "{e:?}");
    wr!("pmselr_el0", n);
    let e = expect_exception(|| {
        let _ = rd!("pmxevcntr_el0");
    });
    check!(
        "pmu: PMXEVCNTR_EL0 with PMSELR_EL0.SEL = N is UNDEFINED",
        undef(e),
        "{e:?}"
    );

    // 3. EL2 filtering: NSH reads 0, and EL2 is never counted.
    set_counter(0, FILTER_P | FILTER_U | FILTER_NSH | EVT_CPU_CYCLES, 0);
    wr!("pmselr_el0", 0);
    let t = rd!("pmxevtyper_el0");
    wr!("pmccfiltr_el0", FILTER_P | FILTER_U | FILTER_NSH);
    let cf = rd!("pmccfiltr_el0");
    check!(
        "pmu: the NSH (count EL2) filter bits read as 0",
        t == FILTER_P | FILTER_U | EVT_CPU_CYCLES && cf == FILTER_P | FILTER_U,
        "PMEVTYPER0_EL0 {t:#x}, PMCCFILTR_EL0 {cf:#x}"
    );
    wr!("pmcr_el0", PMCR_P | PMCR_C | PMCR_LC);
    wr!("pmcntenset_el0", 1 | CYCLE);
    wr!("pmcr_el0", PMCR_E | PMCR_LC);
    for _ in 0..1000 {
        guest_rt::smccc::psci_version();
    }
    wr!("pmcr_el0", PMCR_LC);
    let (ev, cyc) = (counter(0), rd!("pmccntr_el0"));
    check!(
        "pmu: counters that count only EL2 count nothing across 1000 hypervisor calls",
        ev == 0 && cyc == 0,
        "CPU_CYCLES at EL2 {ev}, PMCCNTR {cyc}"
    );
    wr!("pmcntenclr_el0", !0);

    // 4. The cycle counter, SW_INCR, PMUSERENR.
    wr!("pmccfiltr_el0", 0);
    wr!("pmcr_el0", PMCR_C | PMCR_LC);
    wr!("pmcntenset_el0", CYCLE);
    wr!("pmcr_el0", PMCR_E | PMCR_LC);
    let c0 = rd!("pmccntr_el0");
    let start = cntvct();
    while cntvct() - start < 10_000 {}
    let c1 = rd!("pmccntr_el0");
    check!(
        "pmu: the cycle counter advances at EL1",
        c1 > c0,
        "{c0} then {c1}"
    );
    set_counter(1, EVT_SW_INCR, 0);
    set_counter(2, EVT_SW_INCR, 0);
    wr!("pmcntenset_el0", 1 << 1);
    for _ in 0..1000 {
        wr!("pmswinc_el0", 0b110);
    }
    let (c1, c2) = (counter(1), counter(2));
    check!(
        "pmu: SW_INCR counts exactly 1000 writes",
        c1 == 1000,
        "{c1}"
    );
    check!("pmu: a disabled counter counts nothing", c2 == 0, "{c2}");
    wr!("pmuserenr_el0", 0xff);
    let u = rd!("pmuserenr_el0");
    wr!("pmuserenr_el0", 0);
    check!(
        "pmu: PMUSERENR_EL0 keeps EN, SW, CR, ER",
        u == 0xf,
        "{u:#x}"
    );

    // PMUSERENR_EL0 at EL0.
    let (_, ec) = el0(pmu_el0_read_pmccntr, 0);
    check!(
        "pmu: EL0 PMCCNTR_EL0 read traps to EL1 with PMUSERENR_EL0 = 0",
        ec == 0x18,
        "EC {ec:#x}"
    );
    wr!("pmuserenr_el0", 1 << 2);
    let (_, ec) = el0(pmu_el0_read_pmccntr, 0);
    check!(
        "pmu: EL0 reads PMCCNTR_EL0 with PMUSERENR_EL0.CR",
        ec == 0x15,
        "EC {ec:#x}"
    );
    wr!("pmuserenr_el0", 1 << 1);
    set_counter(1, EVT_SW_INCR, 0);
    set_counter(2, FILTER_U | EVT_SW_INCR, 0);
    wr!("pmcntenset_el0", 0b110);
    let (_, ec) = el0(pmu_el0_swinc, 0b110);
    wr!("pmuserenr_el0", 0);
    let (c1, c2) = (counter(1), counter(2));
    check!(
        "pmu: EL0 SW_INCR with PMUSERENR_EL0.SW counts where U = 0 only",
        ec == 0x15 && c1 == 1 && c2 == 0,
        "EC {ec:#x}, counts {c1} and {c2}"
    );
    wr!("pmcntenclr_el0", !0);

    // 5. Overflow: PPI 23.
    overflow_interrupt();

    // 6. Sharing the CPU.
    sharing();
}

/// GICv3 bring-up for PPI 23 on this (only) vCPU, QEMU virt's layout.
fn gic_init() {
    const GICD: u64 = 0x0800_0000;
    const SGI_BASE: u64 = 0x080A_0000 + 0x1_0000;
    let w32 = |addr: u64, v: u32| {
        // SAFETY: a GIC register of this VM's virtual GIC (Device memory).
        unsafe { asm!("str {v:w}, [{a}]", a = in(reg) addr, v = in(reg) v, options(nostack)) };
    };
    let r32 = |addr: u64| -> u32 {
        let v: u32;
        // SAFETY: as above, a register read with no side effect.
        unsafe { asm!("ldr {v:w}, [{a}]", a = in(reg) addr, v = out(reg) v, options(nostack)) };
        v
    };
    // SAFETY: selects the system-register CPU interface; no memory effects.
    unsafe {
        asm!("mrs {t}, icc_sre_el1", "orr {t}, {t}, #1", "msr icc_sre_el1, {t}", "isb",
            t = out(reg) _, options(nomem, nostack))
    };
    w32(GICD, r32(GICD) | 1 << 4 | 1 << 1);
    let waker = 0x080A_0000 + 0x14;
    w32(waker, r32(waker) & !(1 << 1));
    w32(SGI_BASE + 0x80, r32(SGI_BASE + 0x80) | 1 << PMU_INTID);
    // SAFETY: GICR_IPRIORITYR byte of INTID 23 (byte-accessible).
    unsafe {
        asm!("strb {v:w}, [{a}]", a = in(reg) SGI_BASE + 0x400 + PMU_INTID, v = in(reg) 0x80u32, options(nostack))
    };
    w32(SGI_BASE + 0x100, 1 << PMU_INTID);
    wr!("icc_pmr_el1", 0xff);
    wr!("icc_igrpen1_el1", 1);
}

/// Polls the CPU interface (IRQs masked) for a pending interrupt.
fn poll_intid(tries: u32) -> u64 {
    for _ in 0..tries {
        let i = rd!("icc_hppir1_el1") & 0xff_ffff;
        if i != 1023 {
            return i;
        }
    }
    1023
}

fn overflow_interrupt() {
    gic_init();
    wr!("pmcntenclr_el0", !0);
    set_counter(1, EVT_SW_INCR, 0xffff_ffff);
    wr!("pmovsclr_el0", !0);
    wr!("pmintenset_el1", 1 << 1);
    wr!("pmcntenset_el0", 1 << 1);
    wr!("pmcr_el0", PMCR_E | PMCR_LC);
    wr!("pmswinc_el0", 1 << 1);
    let ovs = rd!("pmovsset_el0");
    let pending = poll_intid(100_000);
    let ack = rd!("icc_iar1_el1") & 0xff_ffff;
    check!(
        "pmu: a wrapping counter sets its overflow flag",
        ovs == 1 << 1 && counter(1) & 0xffff_ffff == 0,
        "PMOVSSET_EL0 {ovs:#x}"
    );
    check!(
        "pmu: the overflow raises PPI 23",
        pending == PMU_INTID && ack == PMU_INTID,
        "pending {pending}, acknowledged {ack}"
    );
    wr!("pmovsclr_el0", 1 << 1);
    wr!("icc_eoir1_el1", ack);
    let again = poll_intid(10_000);
    check!(
        "pmu: cleared and deactivated, it does not come back",
        again == 1023,
        "INTID {again} pending"
    );
    wr!("pmintenclr_el1", !0);
    wr!("pmcntenclr_el0", !0);
}

/// Counts SW_INCRs on counter 2 (which the other VM, on the same physical CPU,
/// counts on too) while the CPU goes back and forth; reads the cycle counter
/// around every step to see whether it moved while the other VM ran.
fn sharing() {
    set_counter(2, EVT_SW_INCR, 0);
    wr!("pmccfiltr_el0", 0);
    wr!("pmcr_el0", PMCR_C | PMCR_LC);
    wr!("pmcntenset_el0", 1 << 2 | CYCLE);
    wr!("pmcr_el0", PMCR_E | PMCR_LC);
    let freq = rd!("cntfrq_el0");
    let gap = freq / 2000; // 0.5 ms: the CPU was elsewhere
    let spin = freq / 1000 * SPIN_MS;
    let (mut switches, mut wrong, mut first_wrong) = (0u64, 0u64, (0, 0));
    // Cycles and ticks over steps without a gap (the rate while running), and
    // each gap's (cycles, ticks).
    let (mut run_cyc, mut run_ticks) = (0u64, 0u64);
    let mut gaps = [(0u64, 0u64); 64];
    for round in 0..ROUNDS {
        for _ in 0..INCREMENTS {
            wr!("pmswinc_el0", 1 << 2);
        }
        let start = cntvct();
        let (mut t0, mut c0) = (start, rd!("pmccntr_el0"));
        while t0 - start < spin {
            let (t1, c1) = (cntvct(), rd!("pmccntr_el0"));
            if t1 - t0 > gap {
                if let Some(g) = gaps.get_mut(switches as usize) {
                    *g = (c1 - c0, t1 - t0);
                }
                switches += 1;
            } else {
                run_cyc += c1 - c0;
                run_ticks += t1 - t0;
            }
            (t0, c0) = (t1, c1);
        }
        let c = counter(2);
        if c != INCREMENTS * (round + 1) {
            if wrong == 0 {
                first_wrong = (round, c);
            }
            wrong += 1;
        }
    }
    wr!("pmcr_el0", PMCR_LC);
    // A gap in which the counter stopped: it advanced by less than a quarter
    // of what it does running. (A gap can also be the host descheduling QEMU,
    // when the counter rightly runs on: some gaps of each kind are possible, so
    // at least three must show it stopped; were the other VM's time counted,
    // none would.)
    let stopped = gaps
        .iter()
        .take(switches as usize)
        .filter(|&&(c, t)| {
            u128::from(c) * 4 * u128::from(run_ticks) < u128::from(t) * u128::from(run_cyc)
        })
        .count();
    println!(
        "pmu: {switches} switches, the cycle counter stopped in {stopped}; {} cycles per 1000 counter ticks running",
        run_cyc * 1000 / run_ticks.max(1)
    );
    check!(
        "pmu: the CPU went to the other VM while counting",
        switches >= 4,
        "{switches} switches"
    );
    check!(
        "pmu: every count is this VM's own",
        wrong == 0,
        "{wrong} rounds wrong; first: round {}, count {}",
        first_wrong.0,
        first_wrong.1
    );
    check!(
        "pmu: the cycle counter stops while the other VM runs",
        stopped >= 3,
        "stopped in {stopped} of {switches} gaps"
    );
}
