//! The guest's IRQ handler (both vCPUs) and what it records.
//!
//! As a GICv3 driver does (IHI 0069, "Interrupt handling"): read ICC_IAR1_EL1
//! (acknowledge: the interrupt becomes active, the running priority rises), then
//! ICC_EOIR1_EL1 (priority drop, and with ICC_CTLR_EL1.EOImode = 0 deactivation
//! too), and with EOImode = 1 also ICC_DIR_EL1 (deactivation). For the virtual
//! timer it first sets CNTV_CTL_EL0.IMASK, so the level-sensitive PPI is no
//! longer asserted when it is deactivated (what Linux's arch timer driver does).

use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use crate::gic;

/// vCPUs the records have room for (the config has two).
pub const MAX_CPUS: usize = 2;
/// INTIDs counted per vCPU: SGIs, PPIs and the SPIs this guest uses.
pub const COUNTED: usize = 128;

struct CpuRecord {
    /// Interrupts taken, by INTID.
    taken: [AtomicU32; COUNTED],
    /// INTIDs at or above [`COUNTED`], and spurious acknowledges (1023).
    other: AtomicU32,
    spurious: AtomicU32,
    /// The last INTID acknowledged.
    last: AtomicU32,
    /// CNTVCT_EL0 when the last virtual timer interrupt was taken.
    timer_at: AtomicU64,
}

impl CpuRecord {
    const fn new() -> Self {
        CpuRecord {
            taken: [const { AtomicU32::new(0) }; COUNTED],
            other: AtomicU32::new(0),
            spurious: AtomicU32::new(0),
            last: AtomicU32::new(gic::INTID_SPURIOUS),
            timer_at: AtomicU64::new(0),
        }
    }
}

static RECORDS: [CpuRecord; MAX_CPUS] = [const { CpuRecord::new() }; MAX_CPUS];

/// With EOImode = 1, leave deactivation (ICC_DIR_EL1) to the interrupted code.
static DEFER_DIR: AtomicBool = AtomicBool::new(false);

/// Whether the handler leaves interrupts active after its EOIR when
/// ICC_CTLR_EL1.EOImode = 1 (the test deactivates them itself).
pub fn set_defer_dir(defer: bool) {
    DEFER_DIR.store(defer, Ordering::SeqCst);
}

/// The record slot of the running vCPU: MPIDR_EL1.Aff0 (vCPU n has Aff0 = n here
/// and on QEMU).
pub fn this_cpu() -> usize {
    ((gic::mpidr() & 0xff) as usize).min(MAX_CPUS - 1)
}

/// The handler installed with `guest_rt::set_irq_handler`.
pub fn handler() {
    let cpu = &RECORDS[this_cpu()];
    let intid = gic::icc_iar1();
    if intid == gic::INTID_SPURIOUS {
        cpu.spurious.fetch_add(1, Ordering::SeqCst);
        return;
    }
    if intid == gic::INTID_VTIMER {
        cpu.timer_at.store(gic::cntvct(), Ordering::SeqCst);
        gic::set_cntv_ctl(gic::cntv_ctl() | gic::CNTV_CTL_IMASK);
    }
    match cpu.taken.get(intid as usize) {
        Some(n) => {
            n.fetch_add(1, Ordering::SeqCst);
        }
        None => {
            cpu.other.fetch_add(1, Ordering::SeqCst);
        }
    }
    cpu.last.store(intid, Ordering::SeqCst);
    gic::icc_eoir1(intid);
    if gic::icc_ctlr() & gic::ICC_CTLR_EOIMODE != 0 && !DEFER_DIR.load(Ordering::SeqCst) {
        gic::icc_dir(intid);
    }
}

/// How often vCPU `cpu` took `intid`.
pub fn taken(cpu: usize, intid: u32) -> u32 {
    RECORDS[cpu].taken[intid as usize].load(Ordering::SeqCst)
}

/// The last INTID vCPU `cpu` acknowledged in its handler.
pub fn last(cpu: usize) -> u32 {
    RECORDS[cpu].last.load(Ordering::SeqCst)
}

/// Spurious acknowledges (IAR read 1023 in the handler) on vCPU `cpu`.
pub fn spurious(cpu: usize) -> u32 {
    RECORDS[cpu].spurious.load(Ordering::SeqCst)
}

/// Interrupts outside the counted INTIDs on vCPU `cpu`.
pub fn other(cpu: usize) -> u32 {
    RECORDS[cpu].other.load(Ordering::SeqCst)
}

/// CNTVCT_EL0 at vCPU `cpu`'s last virtual timer interrupt.
pub fn timer_at(cpu: usize) -> u64 {
    RECORDS[cpu].timer_at.load(Ordering::SeqCst)
}

/// Total interrupts vCPU `cpu` took (all INTIDs).
pub fn total(cpu: usize) -> u32 {
    RECORDS[cpu]
        .taken
        .iter()
        .map(|n| n.load(Ordering::SeqCst))
        .sum::<u32>()
        + other(cpu)
}
