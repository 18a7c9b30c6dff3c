//! vCPU 1: started by vCPU 0 with PSCI CPU_ON, it brings up its own GIC CPU
//! interface and redistributor, then waits for interrupts in a WFI loop and runs
//! the commands vCPU 0 leaves in shared memory (each announced by the doorbell SGI
//! [`DOORBELL_SGI`]).
//!
//! [`guest_rt::smp`] starts it (PSCI CPU_ON) with the runtime's vector table, so
//! IRQs reach the same handler, on this vCPU's stack.
//!
//! The loop keeps IRQs masked except for a window after each WFI: WFI wakes on a
//! pending interrupt whatever PSTATE.I says (Arm ARM D1.6.2), the handler runs in
//! the window, and a command written before its doorbell is never missed.

use core::sync::atomic::{AtomicU64, Ordering};

use guest_rt::smp::{Secondary, Vectors};

use crate::gic;

/// The SGI that tells vCPU 1 to look at [`COMMAND`].
pub const DOORBELL_SGI: u32 = 2;
/// Priority vCPU 1 gives its SGIs.
pub const SGI_PRIORITY: u8 = 0xa0;
/// Redistributor frames looked at when searching for one's own (GICR_TYPER.Last
/// should end the walk before).
pub const MAX_FRAMES: usize = 8;

/// [`STATE`] values.
pub const STATE_NOT_STARTED: u64 = 0;
pub const STATE_READY: u64 = 1;
pub const STATE_OFF: u64 = 2;

/// [`COMMAND`] values.
pub const CMD_NONE: u64 = 0;
/// Write [`COMMAND_ARG`] to ICC_SGI1R_EL1.
pub const CMD_SEND_SGI: u64 = 1;
/// PSCI CPU_OFF.
pub const CMD_OFF: u64 = 2;
/// Spin (no WFI) with IRQs unmasked for at most [`COMMAND_ARG`] ms until
/// [`SPIN_SGI`] is taken; [`RESULT`] = 1 if it was, 2 if not.
pub const CMD_SPIN: u64 = 3;
/// Arm the virtual timer [`COMMAND_ARG`] ms ahead with PPI 27 enabled and wait
/// (polling, IRQs unmasked) for its interrupt; [`RESULT`] = how late it came in
/// counter ticks, `u64::MAX` if it never did, `u64::MAX - 1` if it came early.
pub const CMD_TIMER: u64 = 4;

/// The SGI vCPU 0 sends while vCPU 1 spins.
pub const SPIN_SGI: u32 = 1;

/// Where vCPU 1 is.
pub static STATE: AtomicU64 = AtomicU64::new(STATE_NOT_STARTED);
/// Its MPIDR_EL1.
pub static MPIDR: AtomicU64 = AtomicU64::new(0);
/// The index of the redistributor frame whose GICR_TYPER affinity is its own
/// (`u64::MAX`: none).
pub static FRAME: AtomicU64 = AtomicU64::new(u64::MAX);
/// Whether GICR_WAKER.ChildrenAsleep cleared after ProcessorSleep was cleared.
pub static WOKEN: AtomicU64 = AtomicU64::new(0);
/// The pending command, its argument, and how many commands it has run.
pub static COMMAND: AtomicU64 = AtomicU64::new(CMD_NONE);
pub static COMMAND_ARG: AtomicU64 = AtomicU64::new(0);
pub static COMMANDS_DONE: AtomicU64 = AtomicU64::new(0);
/// What the last command found (see each command).
pub static RESULT: AtomicU64 = AtomicU64::new(0);
/// 1 while vCPU 1 runs [`CMD_SPIN`]'s loop.
pub static SPINNING: AtomicU64 = AtomicU64::new(0);

/// vCPU 1's boot parameters and stack.
static VCPU1: Secondary = Secondary::new();

/// Starts vCPU 1 (MPIDR affinity `target`); `Err` holds PSCI CPU_ON's error. The
/// caller waits for [`STATE_READY`].
pub fn start(target: u64) -> Result<(), i64> {
    VCPU1.start(target, Vectors::Runtime, secondary_main, 0)
}

/// Asks vCPU 1 to run `cmd` (with `arg`) and rings its doorbell.
pub fn command(cmd: u64, arg: u64, vcpu1_mpidr: u64) {
    COMMAND_ARG.store(arg, Ordering::SeqCst);
    COMMAND.store(cmd, Ordering::SeqCst);
    gic::icc_sgi1r(gic::sgi1r_to(DOORBELL_SGI, vcpu1_mpidr));
}

/// vCPU 1's bring-up, as a GICv3 driver does it on a secondary CPU (IHI 0069,
/// "Redistributor power management" and "CPU interface" initialisation).
fn bring_up() {
    gic::set_icc_sre(gic::icc_sre() | gic::ICC_SRE_SRE);
    let mpidr = gic::mpidr();
    MPIDR.store(mpidr, Ordering::SeqCst);
    let own = gic::mpidr_to_typer_affinity(mpidr);
    let mut frame = None;
    for n in 0..MAX_FRAMES {
        let typer = gic::read64(gic::rd_base(n) + gic::GICR_TYPER);
        if gic::gicr_typer_affinity(typer) == own {
            frame = Some(n);
            break;
        }
        if typer & gic::GICR_TYPER_LAST != 0 {
            break;
        }
    }
    let Some(n) = frame else {
        return;
    };
    FRAME.store(n as u64, Ordering::SeqCst);
    let rd = gic::rd_base(n);
    let waker = gic::read32(rd + gic::GICR_WAKER);
    gic::write32(
        rd + gic::GICR_WAKER,
        waker & !gic::GICR_WAKER_PROCESSOR_SLEEP,
    );
    let woken = (0..100_000)
        .any(|_| gic::read32(rd + gic::GICR_WAKER) & gic::GICR_WAKER_CHILDREN_ASLEEP == 0);
    WOKEN.store(woken as u64, Ordering::SeqCst);
    let sgi = gic::sgi_base(n);
    gic::write32(sgi + gic::GICR_IGROUPR0, !0);
    for intid in 0..16 {
        gic::write8(sgi + gic::GICR_IPRIORITYR + intid, SGI_PRIORITY);
    }
    gic::write32(sgi + gic::GICR_ISENABLER0, 0xffff);
    gic::set_icc_pmr(0xff);
    gic::set_icc_bpr1(0);
    gic::set_icc_igrpen1(1);
}

/// [`CMD_SPIN`]: runs (no WFI, no trap) with IRQs unmasked until [`SPIN_SGI`]
/// arrives, so a hypervisor must interrupt the running vCPU to deliver it.
fn spin(ms: u64) -> u64 {
    let cpu = crate::irq::this_cpu();
    let before = crate::irq::taken(cpu, SPIN_SGI);
    gic::unmask_irqs();
    SPINNING.store(1, Ordering::SeqCst);
    let got = gic::wait_until(ms, || crate::irq::taken(cpu, SPIN_SGI) > before);
    SPINNING.store(0, Ordering::SeqCst);
    gic::mask_irqs();
    if got { 1 } else { 2 }
}

/// [`CMD_TIMER`]: this vCPU's own virtual timer and PPI 27.
fn timer(ms: u64) -> u64 {
    let cpu = crate::irq::this_cpu();
    let Some(frame) = usize::try_from(FRAME.load(Ordering::SeqCst))
        .ok()
        .filter(|&f| f < MAX_FRAMES)
    else {
        return u64::MAX;
    };
    let sgi = gic::sgi_base(frame);
    gic::write8(
        sgi + gic::GICR_IPRIORITYR + gic::INTID_VTIMER as usize,
        SGI_PRIORITY,
    );
    gic::write32(sgi + gic::GICR_ISENABLER0, 1 << gic::INTID_VTIMER);
    let before = crate::irq::taken(cpu, gic::INTID_VTIMER);
    let deadline = gic::cntvct() + gic::ms_to_ticks(ms);
    gic::set_cntv_cval(deadline);
    gic::set_cntv_ctl(gic::CNTV_CTL_ENABLE);
    gic::unmask_irqs();
    let got = gic::wait_until(ms + 2_000, || {
        crate::irq::taken(cpu, gic::INTID_VTIMER) > before
    });
    gic::mask_irqs();
    gic::set_cntv_ctl(0);
    gic::write32(sgi + gic::GICR_ICENABLER0, 1 << gic::INTID_VTIMER);
    let at = crate::irq::timer_at(cpu);
    match (got, at >= deadline) {
        (false, _) => u64::MAX,
        (true, false) => u64::MAX - 1,
        (true, true) => at - deadline,
    }
}

/// vCPU 1's Rust entry, on its own stack with the MMU on.
fn secondary_main(_: usize) -> ! {
    bring_up();
    STATE.store(STATE_READY, Ordering::SeqCst);
    loop {
        match COMMAND.swap(CMD_NONE, Ordering::SeqCst) {
            CMD_SEND_SGI => {
                gic::icc_sgi1r(COMMAND_ARG.load(Ordering::SeqCst));
                COMMANDS_DONE.fetch_add(1, Ordering::SeqCst);
            }
            CMD_SPIN => {
                RESULT.store(spin(COMMAND_ARG.load(Ordering::SeqCst)), Ordering::SeqCst);
                COMMANDS_DONE.fetch_add(1, Ordering::SeqCst);
            }
            CMD_TIMER => {
                RESULT.store(timer(COMMAND_ARG.load(Ordering::SeqCst)), Ordering::SeqCst);
                COMMANDS_DONE.fetch_add(1, Ordering::SeqCst);
            }
            CMD_OFF => {
                STATE.store(STATE_OFF, Ordering::SeqCst);
                guest_rt::smp::cpu_off();
            }
            _ => {}
        }
        gic::wfi();
        gic::unmask_irqs();
        gic::mask_irqs();
    }
}
