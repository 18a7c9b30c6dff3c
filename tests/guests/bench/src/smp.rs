//! vCPU 1, the receiver of the `ipi` row: started with PSCI CPU_ON through
//! [`guest_rt::smp`] with the benchmark vector table as its first and only one,
//! it brings up its redistributor and CPU interface, then only waits in WFI with
//! IRQs unmasked, so each SGI is taken by [`crate::irq`]'s handler right after the
//! WFI wakes.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use guest_rt::smp::{Secondary, Vectors};

use crate::{gic, irq};

/// [`STATE`]: not started, waiting for SGIs, bring-up failed.
const STATE_NOT_STARTED: u64 = 0;
const STATE_READY: u64 = 1;
const STATE_FAILED: u64 = 2;

static STATE: AtomicU64 = AtomicU64::new(STATE_NOT_STARTED);
/// vCPU 1's MPIDR_EL1, published once it runs.
static MPIDR: AtomicU64 = AtomicU64::new(0);

/// vCPU 1's boot parameters and stack.
static VCPU1: Secondary = Secondary::new();

/// Starts vCPU 1 (MPIDR affinity `target`) and waits until it waits for SGIs.
/// Returns its MPIDR_EL1.
pub fn start(target: u64) -> Result<u64, &'static str> {
    if VCPU1
        .start(target, Vectors::Own(irq::bench_vectors), secondary_main, 0)
        .is_err()
    {
        return Err("PSCI CPU_ON failed");
    }
    // Yield while waiting: under QEMU's single-threaded TCG a YIELD ends this
    // CPU's turn, so vCPU 1 runs.
    for _ in 0..10_000_000u64 {
        match STATE.load(Ordering::Acquire) {
            STATE_READY => return Ok(MPIDR.load(Ordering::Acquire)),
            STATE_FAILED => return Err("vCPU 1 could not bring up its GIC interface"),
            _ => relax(),
        }
    }
    Err("vCPU 1 did not come up")
}

/// YIELD: a hint that this CPU is spinning. QEMU's TCG without multi-threading
/// ends the CPU's turn at it, so the other vCPUs run (target/arm `HELPER(yield)`).
pub fn relax() {
    // SAFETY: a hint instruction.
    unsafe { asm!("yield", options(nomem, nostack, preserves_flags)) };
}

/// vCPU 1's Rust entry, on its own stack with the MMU on and the benchmark
/// vector table installed.
fn secondary_main(_: usize) -> ! {
    MPIDR.store(gic::mpidr(), Ordering::Release);
    if gic::init_this_cpu().is_err() {
        STATE.store(STATE_FAILED, Ordering::Release);
        loop {
            wfi();
        }
    }
    STATE.store(STATE_READY, Ordering::Release);
    irq::unmask();
    loop {
        wfi();
    }
}

fn wfi() {
    // SAFETY: WFI only waits (for an interrupt, taken by the installed handler).
    unsafe { asm!("wfi", options(nomem, nostack, preserves_flags)) };
}
