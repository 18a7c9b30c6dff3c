//! The hypervisor's spin lock: `spin`'s mutex, waiting with the YIELD hint.
//!
//! Why not `spin`'s default (`core::hint::spin_loop`, an ISB on aarch64): YIELD is
//! the architecture's hint that this PE is spinning on something another one must
//! change (Arm ARM, "The YIELD instruction"), which is what a lock waiter does,
//! and what Linux's `cpu_relax()` uses. It matters most where the PEs take turns:
//! QEMU's TCG under `-icount` runs all vCPUs round-robin in one thread and ends a
//! PE's turn at YIELD (or WFE), but not at ISB. With ISB, a PE waiting for a lock
//! whose holder's turn had just ended spun for its whole turn (milliseconds of
//! guest time) before the holder could run and release it; a two-vCPU Linux boot
//! then took 15-42 % longer than directly on QEMU, depending on the guest's random
//! numbers; with YIELD it takes 6.5 % longer whatever they are (as with one vCPU).
//! On cores without shared execution resources YIELD does nothing, like the ISB it
//! replaces.

/// Waits with YIELD (on the target; the host tests spin with `spin_loop`).
pub struct YieldRelax;

impl spin::relax::RelaxStrategy for YieldRelax {
    #[inline(always)]
    fn relax() {
        #[cfg(target_os = "none")]
        crate::arch::regs::yield_hint();
        #[cfg(not(target_os = "none"))]
        core::hint::spin_loop();
    }
}

/// A spin lock for state shared between physical CPUs.
pub type Mutex<T> = spin::mutex::Mutex<T, YieldRelax>;

/// A fair spin lock (first come, first served) for state that several
/// physical CPUs contend for, waiting with YIELD.
pub type TicketMutex<T> = spin::mutex::TicketMutex<T, YieldRelax>;
