//! The rows of a CPU shared by two vCPUs (`bench=shared` in bootargs: the bench
//! VM with `cpus = [0, 0]` on one physical CPU, tests/bench.sh), measured with a
//! ping-pong of SGIs between the two vCPUs of the VM:
//!
//! - vCPU 0 reads the counter (t0), sends SGI [`gic::IPI_SGI`] to vCPU 1 (which
//!   waits in WFI, off the CPU: blocked), reads the counter again (t1) and
//!   executes WFI with IRQs masked. With vCPU 1 now ready, WFI traps
//!   (HCR_EL2.TWI) and the hypervisor switches to vCPU 1, whose IRQ handler
//!   stamps its entry ([`crate::irq`]). vCPU 1 then sends [`gic::EOI_SGI`] back
//!   and waits in WFI again, which hands the CPU back to vCPU 0.
//! - `vcpu_switch` = vCPU 1's handler entry - t1: vCPU 0's WFI trap, the switch
//!   (vCPU 0's state out, vCPU 1's in, its list registers filled) and the
//!   virtual IRQ's entry; the issue's "a vCPU's WFI to the other vCPU on the
//!   same CPU running".
//! - `wake_ipi` = vCPU 1's handler entry - t0: the SGI to a vCPU off its CPU,
//!   sent to handler entry (the send's trap and the wake-up included).
//! - `timer_10ms_shared`: vCPU 1 spins (a busy neighbour, woken by one more
//!   SGI while [`SPIN`] is set), vCPU 0 arms its virtual timer 10 ms ahead and
//!   waits in WFI; deadline to handler entry. While vCPU 0 waits, the EL2 timer
//!   keeps its deadline; then it must get the CPU back from the spinner.

use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

use guest_rt::smp::{Secondary, Vectors};

use crate::{ITERS, WARMUP, gic, irq, not_available, print_stats, read_cntfrq, read_cntvct};

/// vCPU 1 spins (IRQs unmasked) instead of answering pings while nonzero.
static SPIN: AtomicU64 = AtomicU64::new(0);
static READY: AtomicU64 = AtomicU64::new(0);
static VCPU0_MPIDR: AtomicU64 = AtomicU64::new(0);
static VCPU1_MPIDR: AtomicU64 = AtomicU64::new(0);
static VCPU1: Secondary = Secondary::new();

/// Samples of `timer_10ms_shared` (each waits 10 ms of guest time).
const TIMER_ITERS: usize = 50;
const TIMER_WARMUP: usize = 5;

fn wfi() {
    // SAFETY: WFI only waits.
    unsafe { asm!("wfi", options(nomem, nostack, preserves_flags)) };
}

/// vCPU 1: answers each ping with a pong, or spins while [`SPIN`] is set.
fn secondary_main(_: usize) -> ! {
    VCPU1_MPIDR.store(gic::mpidr(), Ordering::Release);
    if gic::init_this_cpu().is_err() {
        READY.store(2, Ordering::Release);
        loop {
            wfi();
        }
    }
    READY.store(1, Ordering::Release);
    irq::unmask();
    let mut seen = irq::count(gic::IPI_SGI);
    loop {
        wfi();
        let c = irq::count(gic::IPI_SGI);
        if c == seen {
            continue;
        }
        seen = c;
        if SPIN.load(Ordering::Acquire) != 0 {
            while SPIN.load(Ordering::Acquire) != 0 {
                core::hint::spin_loop();
            }
            continue;
        }
        let pong = gic::sgi1r_to(gic::EOI_SGI, VCPU0_MPIDR.load(Ordering::Acquire));
        gic::send_sgi(pong);
    }
}

/// Sends vCPU 1 a ping and waits (WFI, IRQs masked but for a window after
/// each wake) until its pong has been taken. Returns (t0, t1): the counter
/// before the send and just before the first WFI.
fn ping(sgi1r: u64) -> Result<(u64, u64), &'static str> {
    let pongs = irq::count(gic::EOI_SGI);
    let (t0, t1): (u64, u64);
    // SAFETY: sends the SGI to vCPU 1, whose handler records it, then waits
    // for an interrupt (IRQs are masked: the wake leaves it pending).
    unsafe {
        asm!("isb", "mrs {t0}, cntvct_el0", "msr icc_sgi1r_el1, {v}", "isb",
            "mrs {t1}, cntvct_el0", "wfi",
            t0 = out(reg) t0, t1 = out(reg) t1, v = in(reg) sgi1r, options(nomem, nostack))
    };
    let give_up = t0 + read_cntfrq();
    loop {
        irq::unmask();
        irq::mask();
        if irq::count(gic::EOI_SGI) != pongs {
            return Ok((t0, t1));
        }
        if read_cntvct() > give_up {
            return Err("vCPU 1 never answered the ping");
        }
        wfi();
    }
}

/// Runs the shared-CPU rows (vCPU 0, IRQs masked on entry).
pub fn rows() {
    const ROWS: [&str; 3] = ["vcpu_switch", "wake_ipi", "timer_10ms_shared"];
    VCPU0_MPIDR.store(gic::mpidr(), Ordering::Release);
    let up = gic::init_distributor()
        .and_then(|()| gic::init_this_cpu())
        .and_then(|()| {
            VCPU1
                .start(1, Vectors::Own(irq::bench_vectors), secondary_main, 0)
                .map_err(|_| "PSCI CPU_ON failed")?;
            // vCPU 1 gets the CPU when this one's turn ends.
            let give_up = read_cntvct() + read_cntfrq();
            loop {
                match READY.load(Ordering::Acquire) {
                    1 => return Ok(()),
                    2 => return Err("vCPU 1 could not bring up its GIC interface"),
                    _ if read_cntvct() > give_up => return Err("vCPU 1 did not come up"),
                    _ => core::hint::spin_loop(),
                }
            }
        });
    if let Err(why) = up {
        for name in ROWS {
            not_available(name, why);
        }
        return;
    }
    let sgi1r = gic::sgi1r_to(gic::IPI_SGI, VCPU1_MPIDR.load(Ordering::Acquire));
    let mut switch = [0u64; ITERS];
    let mut wake = [0u64; ITERS];
    let mut failed = None;
    for i in 0..WARMUP + ITERS {
        let before = irq::count(gic::IPI_SGI);
        match ping(sgi1r) {
            Ok((t0, t1)) => {
                if irq::count(gic::IPI_SGI) == before {
                    failed = Some("vCPU 1's handler did not count the ping");
                    break;
                }
                let entry = irq::stamp(gic::IPI_SGI);
                if i >= WARMUP {
                    switch[i - WARMUP] = entry.wrapping_sub(t1);
                    wake[i - WARMUP] = entry.wrapping_sub(t0);
                }
            }
            Err(why) => {
                failed = Some(why);
                break;
            }
        }
    }
    match failed {
        None => {
            print_stats(
                "vcpu_switch",
                "cntvct",
                "vCPU 0's WFI (vCPU 1 ready on the same CPU) to vCPU 1's handler entry",
                &mut switch,
                1,
            );
            print_stats(
                "wake_ipi",
                "cntvct",
                "SGI to vCPU 1 blocked in WFI on the sender's CPU, sender then WFI: send to handler entry",
                &mut wake,
                1,
            );
        }
        Some(why) => {
            not_available("vcpu_switch", why);
            not_available("wake_ipi", why);
        }
    }
    if let Err(why) = timer_shared(sgi1r) {
        not_available("timer_10ms_shared", why);
    }
}

/// `timer_10ms_shared`: vCPU 1 spinning beside, vCPU 0's virtual timer 10 ms
/// ahead and vCPU 0 in WFI.
fn timer_shared(sgi1r: u64) -> Result<(), &'static str> {
    SPIN.store(1, Ordering::Release);
    gic::send_sgi(sgi1r);
    let ahead = read_cntfrq() / 100;
    let mut values = [0u64; TIMER_ITERS];
    let mut result = Ok(());
    for i in 0..TIMER_WARMUP + TIMER_ITERS {
        let before = irq::count(gic::VTIMER_PPI);
        let deadline = read_cntvct() + ahead;
        // SAFETY: programs the EL1 virtual timer (CNTV_CVAL_EL0, then ENABLE =
        // 1, IMASK = 0); its interrupt goes to the installed handler.
        unsafe {
            asm!("msr cntv_cval_el0, {d}", "msr cntv_ctl_el0, {one}", "isb",
                d = in(reg) deadline, one = in(reg) 1u64, options(nomem, nostack))
        };
        let give_up = deadline + 10 * ahead;
        while irq::count(gic::VTIMER_PPI) == before {
            wfi();
            irq::unmask();
            irq::mask();
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
    SPIN.store(0, Ordering::Release);
    // SAFETY: the timer off (the handler turned it off already on success).
    unsafe { asm!("msr cntv_ctl_el0, xzr", "isb", options(nomem, nostack)) };
    result?;
    print_stats(
        "timer_10ms_shared",
        "cntvct",
        "deadline 10 ms ahead, guest in WFI, the other vCPU of its CPU spinning; deadline to handler entry",
        &mut values,
        1,
    );
    Ok(())
}
