//! Power-cycle guest: whatever a vCPU leaves behind when it powers off or its VM
//! resets — its virtual timer armed and firing, an interrupt acknowledged and left
//! active — the vCPU starts again when PSCI CPU_ON asks for it, and its timer
//! still interrupts. A hypervisor that kept servicing the level-triggered timer
//! of a powered-off vCPU (acknowledge, deactivate, and again, as the line stays
//! high) would never get back to the pending CPU_ON: PSCI says SUCCESS, the vCPU
//! never runs.
//!
//! vCPU 0 drives; vCPU 1 is started once per scenario, each time with a fresh
//! stack ([`Secondary`]):
//! 1. vCPU 1 arms its virtual timer to fire a little later, and calls CPU_OFF at
//!    once: the timer fires while the vCPU is off;
//! 2. vCPU 1 arms its timer to fire at once, sees its interrupt pending, CPU_OFF;
//! 3. vCPU 1 sends itself an SGI, acknowledges it (active, never deactivated),
//!    CPU_OFF;
//! 4. vCPU 1 takes its timer interrupt and leaves it active (the physical timer
//!    interrupt is hardware-linked to it), timer still firing, CPU_OFF.
//!
//! After each, vCPU 0 waits until AFFINITY_INFO says OFF, lets the timer fire on
//! for a while, and starts vCPU 1 again: it must run, bring its GIC interface up
//! as an OS does after power-up (clearing what is active), and take a timer
//! interrupt at its deadline. 4 checks per scenario: [`CHECKS`].
//!
//! Then, if a byte `r` is waiting on the console (the test sends one before the
//! first boot, so only the first boot sees it), vCPU 1 is left running with an
//! SGI active and its timer armed to fire a little later, and vCPU 0 resets the
//! VM at once (PSCI SYSTEM_RESET): the timer fires after the reset, while the
//! new vCPU 1 waits to be started. The next boot runs the scenarios again,
//! vCPU 1 starting on the physical CPU its previous life left in that state. Nothing in RAM survives a reset, so the
//! guest cannot count its boots; the test counts the banners.
//!
//! Issue 13: src/fresh.rs (a reset or a CPU_ON starts from a clean state) and
//! src/race.rs (CPU_ON races, also against the reset).
#![no_std]
#![no_main]
#![deny(clippy::undocumented_unsafe_blocks)]

// The vGIC guest's register map and accessors; this guest uses part of them.
mod fresh;
#[allow(dead_code)]
#[path = "../../vgic/src/gic.rs"]
mod gic;
mod race;

use core::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use guest_rt::console::PL011_BASE;
use guest_rt::smp::{Secondary, Vectors, cpu_off};
use guest_rt::{check, finish, hvc_call, println, system_reset};

guest_rt::entry!(main);

/// Checks per boot (tests/powercycle.rs expects exactly these).
pub const CHECKS: u32 = 21;

/// vCPU 1's MPIDR affinity (PSCI target).
pub(crate) const VCPU1: u64 = 1;
/// PSCI AFFINITY_INFO (SMC64), DEN0022: 0 ON, 1 OFF, 2 ON_PENDING.
const PSCI_AFFINITY_INFO_64: u32 = 0xc400_0004;
pub(crate) const AFF_OFF: u64 = 1;
/// The SGI vCPU 1 leaves active.
const LEFT_SGI: u32 = 3;
/// Priority of the interrupts vCPU 1 enables.
const PRIORITY: u8 = 0xa0;
/// How long vCPU 1 may take to start, or to power off (virtual-counter ms): TCG
/// on a loaded machine.
pub(crate) const START_MS: u64 = 10_000;
/// How long the left-behind timer fires on at the physical CPU before CPU_ON.
const FIRING_MS: u64 = 50;
/// A timer armed to fire after its vCPU has gone: this far ahead.
const LATER_MS: u64 = 20;
/// The restarted vCPU's timer: its deadline from now, and how late it may be.
const TIMER_MS: u64 = 10;
const TIMER_SLACK_MS: u64 = 2_000;

/// [`STATE`]: what vCPU 1 last reached.
const STATE_IDLE: u64 = 0;
/// It left what its scenario leaves, and is about to call CPU_OFF (or, before
/// a reset, to stay in WFI).
const STATE_LEFT: u64 = 1;
/// Restarted: it ran, and [`TIMER_OK`] says whether its timer interrupted.
const STATE_RESTARTED: u64 = 2;
static STATE: AtomicU64 = AtomicU64::new(STATE_IDLE);
/// The INTID vCPU 1 acknowledged before leaving (a sanity check of the setup).
static LEFT_INTID: AtomicU32 = AtomicU32::new(gic::INTID_SPURIOUS);
/// 1 if the restarted vCPU 1 took its timer interrupt at (after) its deadline, 2
/// if before it, 3 if never.
static TIMER_OK: AtomicU64 = AtomicU64::new(0);
/// What the restarted vCPU 1 found of its previous life's registers: 0 not yet
/// looked, 1 nothing, else 2 + the index in [`LEFTOVERS`].
static CPU_CLEAN: AtomicUsize = AtomicUsize::new(0);
const LEFTOVERS: [&str; 5] = [
    "V registers hold the pattern",
    "FPCR",
    "EL1/EL0 thread or fault registers",
    "debug registers",
    "timer controls",
];

/// One boot parameter block and stack per start of vCPU 1 (a started
/// [`Secondary`] is never reused: its stack may still be in use).
/// Two starts per scenario, one for the CPU_ON races and one before the reset.
static STARTS: [Secondary; 10] = [const { Secondary::new() }; 10];
static NEXT_START: AtomicUsize = AtomicUsize::new(0);

/// What vCPU 1 leaves behind in a scenario.
#[derive(Clone, Copy)]
enum Leave {
    TimerArmed,
    TimerFiring,
    SgiActive,
    TimerActive,
}

fn main(_dtb: u64) -> ! {
    println!("Ferrovisor power-cycle guest");
    gic::mask_irqs();
    gic::set_icc_sre(gic::icc_sre() | gic::ICC_SRE_SRE);
    // Before this boot touches anything: the state it was given (the test
    // compares the line of the boot after the reset with the first boot's).
    let state = fresh::fingerprint();
    println!("powercycle: boot state {state:x?}");
    let clean = fresh::fingerprint_is_clean(&state);
    check!(
        "powercycle: the boot state holds nothing written before a reset (FP/SIMD, EL1, debug, timer, vGIC)",
        clean.is_ok(),
        "{clean:?} survived"
    );
    race::nothing_running_at_boot();
    gic::write32(
        gic::GICD_BASE + gic::GICD_CTLR,
        gic::GICD_CTLR_ARE | gic::GICD_CTLR_ENABLE_GRP1,
    );
    gic::gicd_wait_rwp(1_000_000);

    scenario(
        "CPU_OFF with the virtual timer armed to fire while off",
        Leave::TimerArmed,
        leave_timer_armed,
    );
    scenario(
        "CPU_OFF with the virtual timer's interrupt pending",
        Leave::TimerFiring,
        leave_timer_firing,
    );
    scenario(
        "CPU_OFF with an SGI left active",
        Leave::SgiActive,
        leave_sgi_active,
    );
    scenario(
        "CPU_OFF with the timer interrupt left active",
        Leave::TimerActive,
        leave_timer_active,
    );

    if start_vcpu1(race::racer) {
        race::run();
    } else {
        check!(
            "powercycle: psci race: vCPU 1 started to race",
            false,
            "CPU_ON failed"
        );
    }

    if reset_requested() {
        STATE.store(STATE_IDLE, Ordering::SeqCst);
        if start_vcpu1(stay_on_armed_with_sgi_active)
            && gic::wait_until(START_MS, || STATE.load(Ordering::SeqCst) == STATE_LEFT)
        {
            println!(
                "powercycle: resetting, vCPU 1 on with SGI {LEFT_SGI} active and its timer firing in {LATER_MS} ms, \
                 vCPU 0's registers and the vGIC dirty"
            );
            fresh::dirty_gic();
            fresh::dirty_cpu();
            // What the reset must undo (the test checks it differs from the
            // boot state); printing uses V registers, so they are filled again.
            let dirty = fresh::fingerprint();
            println!("powercycle: dirty state {dirty:x?}");
            fresh::dirty_cpu();
            system_reset();
        }
        check!(
            "powercycle: vCPU 1 ready for the reset",
            false,
            "it never reached its WFI loop"
        );
    }
    finish()
}

/// Whether the console has a byte `r` for this boot (the test sends one, which a
/// VM reset discards, so only the first boot sees it).
fn reset_requested() -> bool {
    let mut got = false;
    gic::wait_until(1_000, || {
        got = getb() == Some(b'r');
        got
    });
    got
}

/// One scenario: vCPU 1 leaves `what` behind and powers off; started again it
/// must run and take a timer interrupt.
fn scenario(name: &str, what: Leave, leave: fn(usize) -> !) {
    STATE.store(STATE_IDLE, Ordering::SeqCst);
    LEFT_INTID.store(gic::INTID_SPURIOUS, Ordering::SeqCst);
    let started = start_vcpu1(leave);
    let left = started && gic::wait_until(START_MS, || STATE.load(Ordering::SeqCst) == STATE_LEFT);
    let intid = LEFT_INTID.load(Ordering::SeqCst);
    let expected = match what {
        Leave::TimerArmed | Leave::TimerFiring => gic::INTID_SPURIOUS,
        Leave::SgiActive => LEFT_SGI,
        Leave::TimerActive => gic::INTID_VTIMER,
    };
    check!(
        &format_name(name, "vCPU 1 left it behind"),
        left && intid == expected,
        "started {started}, reached CPU_OFF {left}, acknowledged INTID {intid} (expected {expected})"
    );
    let off = gic::wait_until(START_MS, || affinity_info(VCPU1) == AFF_OFF);
    check!(
        &format_name(name, "AFFINITY_INFO says OFF"),
        off,
        "AFFINITY_INFO = {}",
        affinity_info(VCPU1)
    );
    // The timer keeps firing at the physical CPU while the vCPU is off.
    gic::wait_until(FIRING_MS, || false);

    TIMER_OK.store(0, Ordering::SeqCst);
    CPU_CLEAN.store(0, Ordering::SeqCst);
    let restarted = start_vcpu1(restart)
        && gic::wait_until(START_MS, || STATE.load(Ordering::SeqCst) == STATE_RESTARTED);
    let clean = CPU_CLEAN.load(Ordering::SeqCst);
    check!(
        &format_name(
            name,
            "CPU_ON starts vCPU 1 again, from the reset state (no register of its previous life)"
        ),
        restarted && clean == 1,
        "ran {restarted}, AFFINITY_INFO = {}, left over: {}",
        affinity_info(VCPU1),
        clean
            .checked_sub(2)
            .and_then(|i| LEFTOVERS.get(i))
            .unwrap_or(&"nothing")
    );
    let timer = TIMER_OK.load(Ordering::SeqCst);
    check!(
        &format_name(
            name,
            "the restarted vCPU 1's virtual timer interrupts at its deadline"
        ),
        timer == 1,
        "{}",
        match timer {
            0 => "vCPU 1 did not run",
            2 => "before its deadline",
            _ => "no interrupt",
        }
    );
    // vCPU 1 powers itself off after reporting; wait for it, so the next
    // scenario's CPU_ON does not find it still on.
    gic::wait_until(START_MS, || affinity_info(VCPU1) == AFF_OFF);
}

/// `powercycle: <scenario>: <what>`, without an allocator.
fn format_name(scenario: &str, what: &str) -> NameBuf {
    let mut b = NameBuf {
        buf: [0; 192],
        len: 0,
    };
    for part in ["powercycle: ", scenario, ": ", what] {
        for &c in part.as_bytes() {
            if b.len < b.buf.len() {
                b.buf[b.len] = c;
                b.len += 1;
            }
        }
    }
    b
}

struct NameBuf {
    buf: [u8; 192],
    len: usize,
}

impl core::ops::Deref for NameBuf {
    type Target = str;
    fn deref(&self) -> &str {
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("powercycle: ?")
    }
}

/// PSCI AFFINITY_INFO of `mpidr` at affinity level 0.
pub(crate) fn affinity_info(mpidr: u64) -> u64 {
    hvc_call(PSCI_AFFINITY_INFO_64, mpidr, 0, 0)
}

/// Starts vCPU 1 at `entry` with a fresh stack; false if CPU_ON failed.
fn start_vcpu1(entry: fn(usize) -> !) -> bool {
    let n = NEXT_START.fetch_add(1, Ordering::SeqCst);
    let Some(slot) = STARTS.get(n) else {
        check!(
            "powercycle: a stack for every start of vCPU 1",
            false,
            "start {n} of {}",
            STARTS.len()
        );
        return false;
    };
    match slot.start(VCPU1, Vectors::Runtime, entry, 0) {
        Ok(()) => true,
        Err(e) => {
            println!("powercycle: CPU_ON of vCPU 1 returned {e}");
            false
        }
    }
}

/// One received console byte, if any.
fn getb() -> Option<u8> {
    const UARTDR: usize = 0x000;
    const UARTFR: usize = 0x018;
    const UARTFR_RXFE: u32 = 1 << 4;
    let fr = (PL011_BASE + UARTFR) as *const u32;
    let dr = (PL011_BASE + UARTDR) as *const u32;
    // SAFETY: the PL011's registers are mapped as Device memory by the runtime's
    // identity map; a 32-bit read of UARTDR takes the one byte this guest asked for.
    unsafe {
        if fr.read_volatile() & UARTFR_RXFE != 0 {
            None
        } else {
            Some(dr.read_volatile() as u8)
        }
    }
}

// ---- vCPU 1 ----

/// vCPU 1's redistributor SGI frame, found by affinity (`None`: not found).
fn own_sgi_base() -> Option<usize> {
    let own = gic::mpidr_to_typer_affinity(gic::mpidr());
    for n in 0..8 {
        let typer = gic::read64(gic::rd_base(n) + gic::GICR_TYPER);
        if gic::gicr_typer_affinity(typer) == own {
            return Some(gic::sgi_base(n));
        }
        if typer & gic::GICR_TYPER_LAST != 0 {
            break;
        }
    }
    None
}

/// The GIC bring-up an OS does on a CPU that just powered up (Linux's
/// gic_cpu_init does the same): wake the redistributor, deactivate and disable
/// every SGI and PPI (an earlier life may have left some active), then enable
/// the given ones, Group 1, at [`PRIORITY`]; the CPU interface on, all
/// priorities unmasked.
fn bring_up(enable: u32) -> Option<usize> {
    gic::set_icc_sre(gic::icc_sre() | gic::ICC_SRE_SRE);
    let sgi = own_sgi_base()?;
    let rd = sgi - gic::GICR_SGI_BASE;
    let waker = gic::read32(rd + gic::GICR_WAKER);
    gic::write32(
        rd + gic::GICR_WAKER,
        waker & !gic::GICR_WAKER_PROCESSOR_SLEEP,
    );
    gic::write32(sgi + gic::GICR_ICACTIVER0, !0);
    gic::write32(sgi + gic::GICR_ICENABLER0, !0);
    gic::write32(sgi + gic::GICR_ICPENDR0, !0);
    gic::write32(sgi + gic::GICR_IGROUPR0, !0);
    for intid in 0..32 {
        gic::write8(sgi + gic::GICR_IPRIORITYR + intid, PRIORITY);
    }
    gic::write32(sgi + gic::GICR_ISENABLER0, enable);
    gic::set_icc_pmr(0xff);
    gic::set_icc_bpr1(0);
    gic::set_icc_igrpen1(1);
    Some(sgi)
}

/// Waits (IRQs masked) until an interrupt is pending at this vCPU.
fn wait_pending() -> bool {
    gic::wait_until(TIMER_SLACK_MS, gic::isr_irq_pending)
}

/// Arms the virtual timer to fire now; its interrupt stays asserted (the
/// level-sensitive PPI 27) until the timer is disabled or masked.
fn fire_timer_now() {
    gic::set_cntv_cval(gic::cntvct());
    gic::set_cntv_ctl(gic::CNTV_CTL_ENABLE);
}

fn leave_timer_armed(_: usize) -> ! {
    fresh::dirty_cpu();
    bring_up(1 << gic::INTID_VTIMER);
    gic::set_cntv_cval(gic::cntvct() + gic::ms_to_ticks(LATER_MS));
    gic::set_cntv_ctl(gic::CNTV_CTL_ENABLE);
    STATE.store(STATE_LEFT, Ordering::SeqCst);
    cpu_off()
}

fn leave_timer_firing(_: usize) -> ! {
    fresh::dirty_cpu();
    bring_up(1 << gic::INTID_VTIMER);
    fire_timer_now();
    wait_pending();
    STATE.store(STATE_LEFT, Ordering::SeqCst);
    cpu_off()
}

fn leave_sgi_active(_: usize) -> ! {
    fresh::dirty_cpu();
    bring_up(1 << LEFT_SGI);
    gic::icc_sgi1r(gic::sgi1r_to(LEFT_SGI, gic::mpidr()));
    wait_pending();
    LEFT_INTID.store(gic::icc_iar1(), Ordering::SeqCst);
    STATE.store(STATE_LEFT, Ordering::SeqCst);
    cpu_off()
}

fn leave_timer_active(_: usize) -> ! {
    fresh::dirty_cpu();
    bring_up(1 << gic::INTID_VTIMER);
    fire_timer_now();
    wait_pending();
    LEFT_INTID.store(gic::icc_iar1(), Ordering::SeqCst);
    STATE.store(STATE_LEFT, Ordering::SeqCst);
    cpu_off()
}

/// Before the reset: an SGI active, the timer about to fire, vCPU 1 still on.
fn stay_on_armed_with_sgi_active(_: usize) -> ! {
    bring_up(1 << gic::INTID_VTIMER | 1 << LEFT_SGI);
    gic::icc_sgi1r(gic::sgi1r_to(LEFT_SGI, gic::mpidr()));
    wait_pending();
    LEFT_INTID.store(gic::icc_iar1(), Ordering::SeqCst);
    gic::set_cntv_cval(gic::cntvct() + gic::ms_to_ticks(LATER_MS));
    gic::set_cntv_ctl(gic::CNTV_CTL_ENABLE);
    STATE.store(STATE_LEFT, Ordering::SeqCst);
    // CPU_ONs of vCPU 2 racing vCPU 0's SYSTEM_RESET.
    race::churn()
}

/// vCPU 1 started again: report it ran, then take one timer interrupt (IRQs
/// masked, by polling the CPU interface) and power off.
fn restart(_: usize) -> ! {
    // First, before anything here writes them: CPU_ON starts from the reset state.
    let clean = match fresh::cpu_is_clean() {
        Ok(()) => 1,
        Err(what) => 2 + LEFTOVERS.iter().position(|&l| l == what).unwrap_or(0),
    };
    CPU_CLEAN.store(clean, Ordering::SeqCst);
    let ok = match bring_up(1 << gic::INTID_VTIMER) {
        None => 3,
        Some(_) => {
            let deadline = gic::cntvct() + gic::ms_to_ticks(TIMER_MS);
            gic::set_cntv_cval(deadline);
            gic::set_cntv_ctl(gic::CNTV_CTL_ENABLE);
            let mut intid = gic::INTID_SPURIOUS;
            let got = gic::wait_until(TIMER_MS + TIMER_SLACK_MS, || {
                if gic::isr_irq_pending() {
                    intid = gic::icc_iar1();
                }
                intid == gic::INTID_VTIMER
            });
            let at = gic::cntvct();
            gic::set_cntv_ctl(0);
            if intid != gic::INTID_SPURIOUS {
                gic::icc_eoir1(intid);
            }
            match (got, at >= deadline) {
                (true, true) => 1,
                (true, false) => 2,
                (false, _) => 3,
            }
        }
    };
    TIMER_OK.store(ok, Ordering::SeqCst);
    STATE.store(STATE_RESTARTED, Ordering::SeqCst);
    cpu_off()
}
