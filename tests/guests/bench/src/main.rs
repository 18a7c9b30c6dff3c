//! The benchmark guest: what one trapping operation costs an EL1 guest.
//!
//! Each row runs one operation `BATCH` times back to back (an unrolled `.rept`, so
//! no loop counter is in the way) between two reads of the virtual counter, takes
//! `ITERS` such samples after `WARMUP` discarded ones, and prints the distribution
//! of the per-operation cost. Under `-icount shift=0` QEMU's virtual clock advances
//! 1 ns per executed instruction (the guest's and the hypervisor's alike), so
//! `CNTVCT_EL0` ticks convert exactly to instructions: `1e9 / CNTFRQ_EL0` of them
//! per tick (`tests/bench/report.py` converts; this guest only reports ticks).
//! Batching keeps the figure exact when a tick spans many instructions (16 at
//! 62.5 MHz) and spreads the fixed cost of the two counter reads over the batch;
//! the `loop_floor` row (the same structure around a `nop`) shows what is left of
//! that fixed cost.
//!
//! Where the PMU is usable (bare QEMU at EL1; Ferrovisor traps it with
//! `MDCR_EL2.TPM` and the access is UNDEFINED to the guest) the same windows are
//! also read with `PMCCNTR_EL0`. The probe runs under the runtime's exception
//! capture, so a trapped PMU is reported as `n/a`, never a crash.
//!
//! The hypervisor-call rows follow kvm-unit-tests' arm/micro-bench.c: `hyp_call`
//! is `HVC #0` with function ID 0x4b000000, which no hypervisor implements, so it
//! measures the normal exit path to a NOT_SUPPORTED answer; `hyp_call_fast` is
//! SMCCC_VERSION (Ferrovisor answers it in its vector) and `psci_version`
//! PSCI_VERSION. `sysreg_id` reads ID_AA64PFR0_EL1 (HCR_EL2.TID3).
//! `mmio_first_access` is the first read of an emulated device register after
//! boot (one sample, taken before anything else touches a device), and
//! `setway_sweep` a whole-hierarchy DC CISW sweep ([`setway`]), one sweep per
//! sample.
//!
//! The interrupt rows use the GICv3 ([`gic`]: QEMU `virt`'s layout, which is also
//! what Ferrovisor's virtual GIC shows) and this guest's own IRQ handler ([`irq`]),
//! which reads CNTVCT_EL0 first thing. vCPU 1 ([`smp`]) is started at once with
//! PSCI CPU_ON and waits in WFI for the whole run. `eoi` times one ICC_EOIR1_EL1
//! per sample (batch 1); `ipi` is vCPU 1's handler entry minus vCPU 0's counter
//! read just before its ICC_SGI1R_EL1 write (CNTVCT_EL0 is one count for every
//! vCPU); `timer_10ms` and `timer_10ms_wfi` are the handler's entry minus the
//! virtual timer's deadline, programmed 10 ms ahead (KVM's "timer_10ms latency").
//! These latencies are single events (batch 1) and are not read with PMCCNTR_EL0
//! (a cycle counter per CPU).
//!
//! With `bench=shared` in its bootargs (tests/bench.sh: the same VM with both
//! vCPUs on one physical CPU) the guest runs only the shared-CPU rows
//! `vcpu_switch`, `wake_ipi` and `timer_10ms_shared` ([`shared`]).
//!
//! Output, one line per row (`tests/bench/report.py` parses it):
//!
//! ```text
//! BENCH-INFO cntfrq=<Hz> el=<n> midr=<hex> boot_cntpct=<ticks> ... pmu=<yes|n/a> vcpu1_mpidr=<hex>
//! BENCH name=<row> unit=cntvct median=<x> mean=<x> min=<x> max=<x> p10=<x> p90=<x> iters=<n> batch=<n>
//! BENCH name=<row> unit=pmccntr ...                       (only when the PMU counts)
//! BENCH name=<row> unit=n/a note="<why>"                  (rows that cannot run)
//! BENCH-DONE
//! ```
//!
//! Values are per operation with four decimals (sample / batch size). Then the
//! guest powers off with PSCI SYSTEM_OFF.
#![no_std]
#![no_main]
#![deny(clippy::undocumented_unsafe_blocks)]

use core::arch::asm;

use core::fmt::Write as _;

use guest_rt::smccc::{PSCI_VERSION, SMCCC_NOT_SUPPORTED};
use guest_rt::{catch_exception, current_el, hvc_call, print, println};

#[allow(dead_code)]
#[path = "../../victim/src/fdt.rs"]
mod fdt;
mod gic;
mod irq;
mod setway;
mod shared;
mod smp;

guest_rt::entry!(main);

/// Operations per sample (the `.rept` count).
const BATCH: usize = 16;
/// Samples discarded before measuring: caches, QEMU's translation blocks and the
/// hypervisor's first-exit paths settle.
const WARMUP: usize = 100;
/// Samples kept per row.
const ITERS: usize = 1000;
/// Samples of the first-touch row: each touches `BATCH` fresh pages.
const TOUCH_ITERS: usize = 256;
/// Guest-physical (= virtual) start of the pages the first-touch row reads: inside
/// the 128 MiB of RAM the bench VM has and away from the image at 0x4008_0000.
/// Nothing the guest does before that row touches them.
const TOUCH_BASE: u64 = 0x4200_0000;
const PAGE_SIZE: u64 = 4096;

/// SMCCC_VERSION (Arm DEN0028, "SMCCC_VERSION"): Fast SMC32 call, Arm
/// Architecture service, function 0. Ferrovisor answers it in its exception
/// vector: the `hyp_call_fast` row.
const SMCCC_VERSION: u32 = 0x8000_0000;

/// The function ID of `hyp_call`: kvm-unit-tests' arm/micro-bench.c `hvc_exec`
/// (`mov w0, #0x4b000000; hvc #0`), a call no hypervisor implements (Yielding,
/// SMC64, owning entity 11, which DEN0028 reserves), so it takes the normal
/// exit path and is answered NOT_SUPPORTED.
const UNKNOWN_FID: u32 = 0x4b00_0000;

/// The emulated PL011's flag register `UARTFR` (PL011 TRM 3.3.3): an emulated
/// device register whose read has no side effect.
const UARTFR: u64 = 0x0900_0018;

/// One sample: the window in virtual-counter ticks and, if the PMU counts, in
/// cycle-counter cycles.
#[derive(Clone, Copy, Default)]
struct Sample {
    ticks: u64,
    cycles: u64,
}

/// Runs `body` (assembly lines) `BATCH` times between two counter reads and
/// returns a [`Sample`]. `$pmu` selects the variant that also reads
/// `PMCCNTR_EL0`; extra operands for the body follow.
///
/// Window: `isb; mrs cntvct; <BATCH x body>; isb; mrs cntvct`. The ISBs keep the
/// counter reads from being reordered around the operations (Arm ARM, the Generic
/// Timer chapter: a read of CNTVCT_EL0 may be performed out of order with respect
/// to other instructions unless an ISB precedes it).
macro_rules! measure {
    ($batch:expr, $pmu:expr, [$($body:literal),+ $(,)?] $(, $($operands:tt)*)?) => {{
        let t0: u64;
        let t1: u64;
        let mut c0: u64 = 0;
        let mut c1: u64 = 0;
        if $pmu {
            // SAFETY: the counters are readable at EL1 (the probe checked the PMU);
            // the body's effects are declared by its operands.
            unsafe {
                asm!(
                    "isb",
                    "mrs {c0}, pmccntr_el0",
                    "mrs {t0}, cntvct_el0",
                    ".rept {batch}",
                    $($body,)+
                    ".endr",
                    "isb",
                    "mrs {t1}, cntvct_el0",
                    "mrs {c1}, pmccntr_el0",
                    batch = const $batch,
                    c0 = out(reg) c0,
                    t0 = out(reg) t0,
                    t1 = out(reg) t1,
                    c1 = out(reg) c1,
                    $($($operands)*)?
                );
            }
        } else {
            // SAFETY: CNTVCT_EL0 is readable at EL1 (CNTHCTL_EL2 does not trap it
            // for EL1); the body's effects are declared by its operands.
            unsafe {
                asm!(
                    "isb",
                    "mrs {t0}, cntvct_el0",
                    ".rept {batch}",
                    $($body,)+
                    ".endr",
                    "isb",
                    "mrs {t1}, cntvct_el0",
                    batch = const $batch,
                    t0 = out(reg) t0,
                    t1 = out(reg) t1,
                    $($($operands)*)?
                );
            }
        }
        Sample {
            ticks: t1.wrapping_sub(t0),
            cycles: c1.wrapping_sub(c0),
        }
    }};
}

fn floor(pmu: bool) -> Sample {
    measure!(BATCH, pmu, ["nop"])
}

fn hyp_call(pmu: bool, fid: u32) -> Sample {
    // x0..x17 are clobbered as SMCCC v1.0 callees may (v1.1 keeps x4..x17, but a
    // benchmark must not depend on it).
    measure!(
        BATCH,
        pmu,
        ["mov x0, {fid}", "hvc #0"],
        fid = in(reg) u64::from(fid),
        out("x0") _, out("x1") _, out("x2") _, out("x3") _,
        out("x4") _, out("x5") _, out("x6") _, out("x7") _,
        out("x8") _, out("x9") _, out("x10") _, out("x11") _,
        out("x12") _, out("x13") _, out("x14") _, out("x15") _,
        out("x16") _, out("x17") _,
    )
}

fn sysreg_ccsidr(pmu: bool) -> Sample {
    measure!(BATCH, pmu, ["mrs {tmp}, ccsidr_el1"], tmp = out(reg) _)
}

fn sysreg_ctr_el0(pmu: bool) -> Sample {
    measure!(BATCH, pmu, ["mrs {tmp}, ctr_el0"], tmp = out(reg) _)
}

/// An ID register (HCR_EL2.TID3 traps the whole ID space under a hypervisor with a
/// CPU model).
fn sysreg_id(pmu: bool) -> Sample {
    measure!(BATCH, pmu, ["mrs {tmp}, id_aa64pfr0_el1"], tmp = out(reg) _)
}

/// A 32-bit read of the device register at `addr`.
fn mmio_read(pmu: bool, addr: u64) -> Sample {
    measure!(
        BATCH,
        pmu,
        ["ldr {tmp:w}, [{addr}]"],
        addr = in(reg) addr,
        tmp = out(reg) _,
    )
}

/// Reads one word of each of `BATCH` consecutive pages from `base`.
fn touch_pages(pmu: bool, base: u64) -> Sample {
    measure!(
        BATCH,
        pmu,
        ["ldr {tmp}, [{p}]", "add {p}, {p}, #4096"],
        p = inout(reg) base => _,
        tmp = out(reg) _,
    )
}

/// Takes `WARMUP` + `ITERS` samples of `f` and prints the row.
fn row(name: &str, pmu: bool, note: &str, mut f: impl FnMut() -> Sample) {
    for _ in 0..WARMUP {
        f();
    }
    let mut samples = [Sample::default(); ITERS];
    for s in samples.iter_mut() {
        *s = f();
    }
    report(name, pmu, note, &mut samples, BATCH);
}

/// Prints the `unit=cntvct` line (and `unit=pmccntr` when the PMU counts) of
/// samples that each cover `batch` operations.
fn report(name: &str, pmu: bool, note: &str, samples: &mut [Sample], batch: usize) {
    let mut values = [0u64; ITERS];
    let values = &mut values[..samples.len()];
    for (v, s) in values.iter_mut().zip(samples.iter()) {
        *v = s.ticks;
    }
    print_stats(name, "cntvct", note, values, batch);
    if pmu {
        for (v, s) in values.iter_mut().zip(samples.iter()) {
            *v = s.cycles;
        }
        print_stats(name, "pmccntr", note, values, batch);
    }
}

/// `total / ops` in ten-thousandths, rounded: a per-operation value with four
/// decimals (exact for a batch of 16: 1/16 = 0.0625).
fn fixed(total: u64, ops: u64) -> u64 {
    (total * SCALE + ops / 2) / ops
}

/// Fixed-point decimals of the printed values.
const SCALE: u64 = 10_000;

/// `12345` ten-thousandths -> `1.2345`.
struct Fixed(u64);

impl core::fmt::Display for Fixed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}.{:04}", self.0 / SCALE, self.0 % SCALE)
    }
}

/// Prints one row's distribution: `values` are sample totals over `batch`
/// operations each; the printed figures are per operation.
fn print_stats(name: &str, unit: &str, note: &str, values: &mut [u64], batch: usize) {
    values.sort_unstable();
    let n = values.len();
    let b = batch as u64;
    let at = |per_cent: usize| Fixed(fixed(values[(n - 1) * per_cent / 100], b));
    let median = if n % 2 == 1 {
        fixed(values[n / 2], b)
    } else {
        fixed(values[n / 2 - 1] + values[n / 2], 2 * b)
    };
    // The mean stays exact when one tick spans several instructions (CNTFRQ below
    // 1 GHz): the quantization error of the samples averages out.
    let mean = fixed(values.iter().sum(), n as u64 * b);
    print!(
        "BENCH name={name} unit={unit} median={} mean={} min={} max={} p10={} p90={} iters={n} batch={batch}",
        Fixed(median),
        Fixed(mean),
        at(0),
        at(100),
        at(10),
        at(90),
    );
    if note.is_empty() {
        println!();
    } else {
        println!(" note=\"{note}\"");
    }
}

/// The rows that need the interrupt controller: an emulated GICD register read,
/// the EOI of an acknowledged interrupt, the virtual timer's latency, and an SGI
/// from this vCPU to vCPU 1.
fn interrupt_rows(pmu: bool, vcpu1: Result<u64, &'static str>) {
    const ROWS: [&str; 5] = [
        "mmio_read_vgic",
        "eoi",
        "timer_10ms",
        "timer_10ms_wfi",
        "ipi",
    ];
    if let Err(why) = gic::init_distributor().and_then(|()| gic::init_this_cpu()) {
        for name in ROWS {
            not_available(name, why);
        }
        return;
    }
    row("mmio_read_vgic", pmu, "GICD_IIDR", || {
        mmio_read(pmu, gic::GICD_BASE + gic::GICD_IIDR)
    });
    if let Err(why) = eoi_row(pmu) {
        not_available("eoi", why);
    }
    // KVM's timer_10ms: the guest spins until the interrupt arrives, so the
    // interrupt finds it running. Each sample spins 10 ms of guest time (10M
    // instructions under icount): fewer samples.
    if let Err(why) = timer_row(
        "timer_10ms",
        "deadline 10 ms ahead, guest spinning; deadline to handler entry",
        TimerWait::Spin,
        TIMER_SPIN_ITERS,
    ) {
        not_available("timer_10ms", why);
    }
    // The same deadline with the guest waiting in WFI, as an idle OS does: the
    // hypervisor's idle path is in it too. QEMU's clock jumps to the deadline
    // while every CPU waits (icount sleep=off), so these samples are cheap.
    if let Err(why) = timer_row(
        "timer_10ms_wfi",
        "deadline 10 ms ahead, guest in WFI; deadline to handler entry",
        TimerWait::Wfi,
        ITERS,
    ) {
        not_available("timer_10ms_wfi", why);
    }
    if let Err(why) = ipi_rows(vcpu1) {
        not_available("ipi", why);
    }
}

/// ICC_EOIR1_EL1 of an acknowledged SGI, one per sample: the SGI is sent to this
/// vCPU (trapped under Ferrovisor, outside the window) and acknowledged with
/// ICC_IAR1_EL1 with IRQs masked, then the window holds the EOI alone. Under
/// Ferrovisor both IAR and EOIR go to the virtual CPU interface (ICV_*), not
/// trapped; an EOI that needed a maintenance exit would show here.
fn eoi_row(pmu: bool) -> Result<(), &'static str> {
    let to_self = gic::sgi1r_to(gic::EOI_SGI, gic::mpidr());
    let mut samples = [Sample::default(); ITERS];
    for i in 0..WARMUP + ITERS {
        gic::send_sgi(to_self);
        let mut intid = gic::INTID_SPURIOUS;
        for _ in 0..1000 {
            intid = gic::acknowledge();
            if intid != gic::INTID_SPURIOUS {
                break;
            }
        }
        if intid == gic::INTID_SPURIOUS {
            return Err("the SGI sent to self never became pending");
        }
        let s = measure!(
            1,
            pmu,
            ["msr icc_eoir1_el1, {id}"],
            id = in(reg) u64::from(intid),
        );
        if intid != gic::EOI_SGI {
            return Err("acknowledged another interrupt than the SGI sent to self");
        }
        if i >= WARMUP {
            samples[i - WARMUP] = s;
        }
    }
    report(
        "eoi",
        pmu,
        "one EOI per sample: includes the window's 2 instructions",
        &mut samples,
        1,
    );
    Ok(())
}

/// How the timer rows wait for the interrupt.
#[derive(Clone, Copy, PartialEq, Eq)]
enum TimerWait {
    /// A loop of loads: the interrupt arrives while the guest runs.
    Spin,
    /// WFI: the interrupt wakes the guest.
    Wfi,
}

/// Samples of `timer_10ms` (each spins 10 ms of guest time).
const TIMER_SPIN_ITERS: usize = 50;
/// Discarded samples before a timer row.
const TIMER_WARMUP: usize = 5;

fn read_cntvct() -> u64 {
    let v: u64;
    // SAFETY: CNTVCT_EL0 is readable at EL1; the ISB keeps the read in order.
    unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack)) };
    v
}

/// The virtual timer's latency: CNTV_CVAL_EL0 = now + 10 ms, CNTV_CTL_EL0.ENABLE,
/// wait; the row is handler entry minus the deadline (KVM's "timer_10ms latency",
/// which subtracts the 10 ms from the round trip it measures).
fn timer_row(name: &str, note: &str, wait: TimerWait, iters: usize) -> Result<(), &'static str> {
    let ahead = read_cntfrq() / 100;
    let mut values = [0u64; ITERS];
    // Spinning: IRQs unmasked throughout. WFI: IRQs masked except for a window
    // after each WFI (which wakes on a pending interrupt whatever PSTATE.I says,
    // Arm ARM "Wait for Interrupt"), so an interrupt can never be taken between
    // the check and the WFI and leave it waiting for ever.
    if wait == TimerWait::Spin {
        irq::unmask();
    }
    let mut result = Ok(());
    for i in 0..TIMER_WARMUP + iters {
        let before = irq::count(gic::VTIMER_PPI);
        let deadline = read_cntvct() + ahead;
        // SAFETY: programs the EL1 virtual timer (CNTV_CVAL_EL0, then ENABLE = 1,
        // IMASK = 0); its interrupt goes to the installed handler.
        unsafe {
            asm!("msr cntv_cval_el0, {d}", "msr cntv_ctl_el0, {one}", "isb",
                d = in(reg) deadline, one = in(reg) 1u64, options(nomem, nostack))
        };
        let give_up = deadline + 10 * ahead;
        while irq::count(gic::VTIMER_PPI) == before {
            if wait == TimerWait::Wfi {
                // SAFETY: WFI only waits; the timer interrupt ends it.
                unsafe { asm!("wfi", options(nomem, nostack)) };
                irq::unmask();
                irq::mask();
            }
            if read_cntvct() > give_up {
                result = Err("the virtual timer interrupt never arrived");
                break;
            }
        }
        if result.is_err() {
            break;
        }
        if i >= TIMER_WARMUP {
            values[i - TIMER_WARMUP] = irq::stamp(gic::VTIMER_PPI).wrapping_sub(deadline);
        }
    }
    irq::mask();
    // SAFETY: the timer off (the handler turned it off already on success).
    unsafe { asm!("msr cntv_ctl_el0, xzr", "isb", options(nomem, nostack)) };
    result?;
    print_stats(name, "cntvct", note, &mut values[..iters], 1);
    Ok(())
}

/// `ipi`: vCPU 0 writes ICC_SGI1R_EL1 for vCPU 1, which waits in WFI; the row is
/// vCPU 1's handler entry minus vCPU 0's counter read just before the write (both
/// read CNTVCT_EL0, the same count on every vCPU). vCPU 0 then spins with YIELD
/// until the handler has counted the SGI, which under QEMU's single-threaded TCG
/// hands the turn to vCPU 1 at once. `ipi_send`: the same samples' send alone, as
/// vCPU 0 sees it (the trapped write's round trip).
fn ipi_rows(vcpu1: Result<u64, &'static str>) -> Result<(), &'static str> {
    let target = vcpu1?;
    let sgi1r = gic::sgi1r_to(gic::IPI_SGI, target);
    let mut latency = [0u64; ITERS];
    let mut send = [0u64; ITERS];
    for i in 0..WARMUP + ITERS {
        let before = irq::count(gic::IPI_SGI);
        let (t0, t1): (u64, u64);
        // SAFETY: sends the SGI to vCPU 1, whose handler records it.
        unsafe {
            asm!("isb", "mrs {t0}, cntvct_el0", "msr icc_sgi1r_el1, {v}", "isb",
                "mrs {t1}, cntvct_el0",
                t0 = out(reg) t0, t1 = out(reg) t1, v = in(reg) sgi1r, options(nomem, nostack))
        };
        let mut spins = 0u64;
        while irq::count(gic::IPI_SGI) == before {
            smp::relax();
            spins += 1;
            if spins > 10_000_000 {
                return Err("vCPU 1 never took the SGI");
            }
        }
        let entry = irq::stamp(gic::IPI_SGI);
        // Let vCPU 1 get back into WFI before the next send.
        for _ in 0..4 {
            smp::relax();
        }
        if i >= WARMUP {
            latency[i - WARMUP] = entry.wrapping_sub(t0);
            send[i - WARMUP] = t1.wrapping_sub(t0);
        }
    }
    print_stats(
        "ipi",
        "cntvct",
        "vCPU 0 send to vCPU 1 handler entry, vCPU 1 in WFI",
        &mut latency,
        1,
    );
    print_stats(
        "ipi_send",
        "cntvct",
        "the ICC_SGI1R_EL1 write as the sender sees it (+2 window instructions)",
        &mut send,
        1,
    );
    Ok(())
}

fn not_available(name: &str, why: &str) {
    println!("BENCH name={name} unit=n/a note=\"{why}\"");
}

fn read_cntpct() -> u64 {
    let v: u64;
    // SAFETY: CNTPCT_EL0 is readable at EL1 (CNTHCTL_EL2.EL1PCTEN under Ferrovisor;
    // always without EL2); no side effects.
    unsafe { asm!("isb", "mrs {}, cntpct_el0", out(reg) v, options(nomem, nostack)) };
    v
}

fn read_cntfrq() -> u64 {
    let v: u64;
    // SAFETY: CNTFRQ_EL0 is readable at EL1; no side effects.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) v, options(nomem, nostack)) };
    v
}

fn read_midr() -> u64 {
    let v: u64;
    // SAFETY: MIDR_EL1 is readable at EL1 (VPIDR_EL2's value under a hypervisor).
    unsafe { asm!("mrs {}, midr_el1", out(reg) v, options(nomem, nostack)) };
    v
}

/// Enables the cycle counter at EL1 if the PMU is there and not trapped.
///
/// `ID_AA64DFR0_EL1.PMUVer` (bits [11:8], Arm ARM: ID_AA64DFR0_EL1) says whether PMUv3
/// exists; each access then runs under exception capture because a hypervisor may
/// trap it (MDCR_EL2.TPM/TPMCR) and make it UNDEFINED. Every access is a separate
/// capture: one capture must see at most one exception.
fn pmu_enable() -> Result<(), &'static str> {
    let dfr0 = catch_exception(|| {
        let v: u64;
        // SAFETY: an ID register read; no side effects.
        unsafe { asm!("mrs {}, id_aa64dfr0_el1", out(reg) v, options(nomem, nostack)) };
        v
    })
    .map_err(|_| "ID_AA64DFR0_EL1 read trapped")?;
    let pmuver = (dfr0 >> 8) & 0xf;
    if pmuver == 0 || pmuver == 0xf {
        return Err("no PMUv3 (ID_AA64DFR0_EL1.PMUVer)");
    }
    let pmcr = catch_exception(|| {
        let v: u64;
        // SAFETY: reads PMCR_EL0; no side effects.
        unsafe { asm!("mrs {}, pmcr_el0", out(reg) v, options(nomem, nostack)) };
        v
    })
    .map_err(|_| "PMCR_EL0 access is UNDEFINED (PMU trapped by the hypervisor)")?;
    // PMCCFILTR_EL0 = 0: count at EL1 and EL0 (Arm ARM: PMCCFILTR_EL0.P/U = 0;
    // NSH = 0 leaves EL2 uncounted, which only matters when there is an EL2).
    catch_exception(|| {
        // SAFETY: configures the cycle counter's filter; no memory effects.
        unsafe { asm!("msr pmccfiltr_el0, xzr", options(nomem, nostack)) };
        0
    })
    .map_err(|_| "PMCCFILTR_EL0 write is UNDEFINED")?;
    // PMCNTENSET_EL0.C (bit 31): enable the cycle counter.
    catch_exception(|| {
        // SAFETY: enables the cycle counter; no memory effects.
        unsafe { asm!("msr pmcntenset_el0, {}", in(reg) 1u64 << 31, options(nomem, nostack)) };
        0
    })
    .map_err(|_| "PMCNTENSET_EL0 write is UNDEFINED")?;
    // PMCR_EL0: E (bit 0) enables, C (bit 2) resets the cycle counter, LC (bit 6)
    // makes it 64 bits wide; D (bit 3, divide by 64) off.
    let pmcr = (pmcr | 1 | (1 << 2) | (1 << 6)) & !(1 << 3);
    catch_exception(|| {
        // SAFETY: starts the counters; no memory effects.
        unsafe { asm!("msr pmcr_el0, {}", "isb", in(reg) pmcr, options(nomem, nostack)) };
        0
    })
    .map_err(|_| "PMCR_EL0 write is UNDEFINED")?;
    let a = floor(true);
    if a.cycles == 0 {
        return Err("PMCCNTR_EL0 does not advance");
    }
    Ok(())
}

/// What an HVC with `fid` returns here (`None` if HVC is UNDEFINED), for the
/// row's note: the rows time the call whatever it answers.
fn hvc_answer(fid: u32) -> Option<u64> {
    catch_exception(|| hvc_call(fid, 0, 0, 0)).ok()
}

/// `w0` as the note shows it.
struct Answer(Option<u64>);

impl core::fmt::Display for Answer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self.0 {
            None => write!(f, "UNDEFINED"),
            Some(SMCCC_NOT_SUPPORTED) => write!(f, "NOT_SUPPORTED"),
            Some(v) => write!(f, "{:#x}", v as u32),
        }
    }
}

/// The HVC rows: the unknown function ID (`hyp_call`, kvm-unit-tests' definition),
/// SMCCC_VERSION (`hyp_call_fast`) and PSCI_VERSION (`psci_version`), each with
/// what it was answered in its note.
fn hvc_rows(pmu: bool) {
    for (name, fid, what) in [
        (
            "hyp_call",
            UNKNOWN_FID,
            "function 0x4b000000 (kvm-unit-tests' hyp_call)",
        ),
        ("hyp_call_fast", SMCCC_VERSION, "SMCCC_VERSION"),
        ("psci_version", PSCI_VERSION, "PSCI_VERSION"),
    ] {
        let answer = hvc_answer(fid);
        if answer.is_none() {
            not_available(name, "HVC is UNDEFINED here");
            continue;
        }
        let mut note = Note::new();
        let _ = write!(note, "{what} over HVC, answered {}", Answer(answer));
        row(name, pmu, note.as_str(), || hyp_call(pmu, fid));
    }
}

/// A short note built with `write!`, without a heap.
struct Note {
    buf: [u8; 120],
    len: usize,
}

impl Note {
    fn new() -> Self {
        Note {
            buf: [0; 120],
            len: 0,
        }
    }
    fn as_str(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl core::fmt::Write for Note {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Sweeps timed by `setway_rows` after the first (which, under Ferrovisor, also
/// flushes the VM's memory and arms HCR_EL2.TVM): each is tens of millions of
/// instructions under a hypervisor that traps set/way.
const SWEEP_ITERS: usize = 5;

/// `setway_sweep_first` and `setway_sweep`: one whole-hierarchy DC CISW sweep per
/// sample ([`setway::sweep`]).
fn setway_rows() {
    let mmfr2 = catch_exception(|| {
        let v: u64;
        // SAFETY: an ID register read; no side effects.
        unsafe { asm!("mrs {}, id_aa64mmfr2_el1", out(reg) v, options(nomem, nostack)) };
        v
    })
    .unwrap_or(0);
    // ID_AA64MMFR2_EL1.CCIDX, bits [23:20]: the 64-bit CCSIDR_EL1 layout.
    let ccidx = (mmfr2 >> 20) & 0xf != 0;
    let mut ops = 0;
    let mut timed = || {
        let t0 = read_cntvct();
        ops = setway::sweep(ccidx);
        read_cntvct() - t0
    };
    let mut first = [timed()];
    let mut values = [0u64; SWEEP_ITERS];
    for v in values.iter_mut() {
        *v = timed();
    }
    let mut note = Note::new();
    let _ = write!(note, "{ops} DC CISW per sweep (CCIDX {ccidx})");
    print_stats("setway_sweep_first", "cntvct", note.as_str(), &mut first, 1);
    print_stats("setway_sweep", "cntvct", note.as_str(), &mut values, 1);
}

fn set_csselr_l1d() {
    // CSSELR_EL1 = 0: level 1, data/unified cache, so CCSIDR_EL1 describes a cache
    // that exists (Arm ARM: CCSIDR_EL1 is UNKNOWN when CSSELR_EL1 selects a cache
    // that is not implemented). May trap under a hypervisor (HCR_EL2.TID2/TID4); it must
    // still be accepted.
    let _ = catch_exception(|| {
        // SAFETY: selects the cache CCSIDR_EL1 describes; no memory effects.
        unsafe { asm!("msr csselr_el1, xzr", "isb", options(nomem, nostack)) };
        0
    });
}

fn main(dtb: u64) -> ! {
    // First thing: the physical count. Under icount it is the instructions every
    // CPU ran since QEMU started (hypervisor boot included), plus the guest
    // runtime's few hundred before main.
    let boot_cntpct = read_cntpct();
    // Next, before anything else touches a device: this vCPU's first access to an
    // emulated device register (the console's UARTFR; the runtime has not printed
    // yet). One sample: it happens once.
    let first_access = measure!(
        1,
        false,
        ["ldr {tmp:w}, [{addr}]"],
        addr = in(reg) UARTFR,
        tmp = out(reg) _,
    );
    irq::install();
    let cntfrq = read_cntfrq();
    let el = current_el();
    let midr = read_midr();

    // `bench=shared`: the VM's two vCPUs share one physical CPU; only the
    // shared-CPU rows run ([`shared`]).
    // SAFETY: the boot protocol puts the device tree in guest RAM at x0 (or
    // nothing there on bare QEMU, which `Fdt::at` rejects).
    let tree = unsafe { fdt::Fdt::at(dtb) };
    let args = tree.and_then(|t| t.bootargs()).unwrap_or("");
    if fdt::bootarg(args, "bench") == Some("shared") {
        println!(
            "BENCH-INFO cntfrq={cntfrq} el={el} midr={midr:#x} boot_cntpct={boot_cntpct} batch={BATCH} warmup={WARMUP} iters={ITERS} mode=shared"
        );
        irq::mask();
        shared::rows();
        println!("BENCH-DONE");
        guest_rt::system_off()
    }

    // vCPU 1 starts first and waits in WFI for the whole run, so every row sees
    // the same two-vCPU machine. (A physical CPU whose vCPU is still off may
    // wait in a WFE loop, which QEMU's TCG runs as a YIELD: it would keep
    // executing, and under icount its instructions would land in the rows.)
    let vcpu1 = smp::start(1);
    let pmu = pmu_enable();
    print!(
        "BENCH-INFO cntfrq={cntfrq} el={el} midr={midr:#x} boot_cntpct={boot_cntpct} batch={BATCH} warmup={WARMUP} iters={ITERS}"
    );
    match pmu {
        Ok(()) => print!(" pmu=yes"),
        Err(why) => print!(" pmu=n/a pmu_note=\"{why}\""),
    }
    match vcpu1 {
        Ok(mpidr) => println!(" vcpu1_mpidr={mpidr:#x}"),
        Err(why) => println!(" vcpu1=n/a vcpu1_note=\"{why}\""),
    }
    let pmu = pmu.is_ok();

    row("loop_floor", pmu, "", || floor(pmu));
    hvc_rows(pmu);
    row("sysreg_id", pmu, "ID_AA64PFR0_EL1", || sysreg_id(pmu));
    set_csselr_l1d();
    row("sysreg_ccsidr", pmu, "", || sysreg_ccsidr(pmu));
    row("sysreg_ctr_el0", pmu, "", || sysreg_ctr_el0(pmu));
    print_stats(
        "mmio_first_access",
        "cntvct",
        "PL011 UARTFR, the first device access after boot (one sample)",
        &mut [first_access.ticks],
        1,
    );
    row("mmio_read_user", pmu, "PL011 UARTFR", || {
        mmio_read(pmu, UARTFR)
    });

    // First touch of fresh pages, then the same pages again: a stage-2 fault on
    // first touch would show as the difference. No warm-up: the first pass is the
    // point.
    let mut samples = [Sample::default(); TOUCH_ITERS];
    let stride = BATCH as u64 * PAGE_SIZE;
    for pass in ["first_touch", "second_touch"] {
        for (i, s) in samples.iter_mut().enumerate() {
            *s = touch_pages(pmu, TOUCH_BASE + i as u64 * stride);
        }
        report(pass, pmu, "one load per 4 KiB page", &mut samples, BATCH);
    }

    interrupt_rows(pmu, vcpu1);
    not_available(
        "fp_first_use",
        "not measured here: each vCPU of this VM has a CPU of its own and owns the FP/SIMD registers from its first instruction on, so it never traps again",
    );
    // Last: under Ferrovisor the first set/way operation arms HCR_EL2.TVM, which
    // then traps this guest's writes to its translation controls.
    setway_rows();
    println!("BENCH-DONE");
    guest_rt::system_off()
}
