//! Issue 13, item 5: PSCI CPU_ON races (DEN0022, 5.6 "CPU_ON" and 5.7
//! "AFFINITY_INFO").
//!
//! - vCPUs 0 and 1 call CPU_ON for vCPU 2 at the same moment, each with its own
//!   entry context, [`ROUNDS`] times: exactly one gets SUCCESS, the other
//!   ALREADY_ON or ON_PENDING (the target was being turned on by the winner),
//!   and vCPU 2 runs with the winner's context — the loser's call did not
//!   overwrite the winner's entry point.
//! - While vCPU 2 runs, CPU_ON of it returns ALREADY_ON and AFFINITY_INFO says
//!   ON; after its CPU_OFF, AFFINITY_INFO says OFF.
//! - Around the reset (main.rs): vCPU 1 keeps turning vCPU 2 on ([`churn`],
//!   vCPU 2 powering itself off at once) while vCPU 0 calls SYSTEM_RESET; the
//!   next boot must find vCPUs 1 and 2 OFF — a CPU_ON racing the reset left
//!   nothing running in the reloaded VM.

use core::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

use guest_rt::smccc::{PSCI_CPU_ON_64, PSCI_RET_ALREADY_ON};
use guest_rt::smp::{Secondary, Vectors, cpu_off};
use guest_rt::{check, hvc_call, println};

use crate::{AFF_OFF, START_MS, affinity_info, gic};

/// The target of the races: vCPU 2's MPIDR affinity.
pub const VCPU2: u64 = 2;
/// DEN0022 table 5.2: ON_PENDING; AFFINITY_INFO's ON.
const PSCI_RET_ON_PENDING: i64 = -5;
const AFF_ON: u64 = 0;
/// Races run per boot.
pub const ROUNDS: usize = 6;

/// Two starts of vCPU 2 per round, one per racer (a `Secondary` starts once).
static STARTS: [[Secondary; 2]; ROUNDS] = [const { [const { Secondary::new() }; 2] }; ROUNDS];
/// The round vCPU 1 is to race in (1-based; 0: not yet), and what its CPU_ON
/// returned (`i64::MIN` until it did).
static GO: AtomicUsize = AtomicUsize::new(0);
static RACER_RESULT: AtomicI64 = AtomicI64::new(i64::MIN);
/// The racers' arrival count, so both call CPU_ON together.
static ARRIVED: AtomicUsize = AtomicUsize::new(0);
/// vCPU 2: 1 + the racer whose context it started with, once it ran.
static TARGET_RAN: AtomicU64 = AtomicU64::new(0);
/// vCPU 2 powers off when this reaches its round.
static RELEASE: AtomicUsize = AtomicUsize::new(0);

fn start_target(round: usize, racer: usize) -> i64 {
    match STARTS[round][racer].start(VCPU2, Vectors::Runtime, target, racer) {
        Ok(()) => 0,
        Err(e) => e,
    }
}

/// vCPU 2: says whose context it got, waits for the release, powers off.
fn target(racer: usize) -> ! {
    TARGET_RAN.store(1 + racer as u64, Ordering::SeqCst);
    let round = GO.load(Ordering::SeqCst);
    gic::wait_until(START_MS, || RELEASE.load(Ordering::SeqCst) >= round);
    cpu_off()
}

/// vCPU 1, the second racer: each round, meets vCPU 0 and calls CPU_ON.
pub fn racer(_: usize) -> ! {
    for round in 1..=ROUNDS {
        gic::wait_until(START_MS, || GO.load(Ordering::SeqCst) >= round);
        ARRIVED.fetch_add(1, Ordering::SeqCst);
        while ARRIVED.load(Ordering::SeqCst) < 2 * round {
            core::hint::spin_loop();
        }
        RACER_RESULT.store(start_target(round - 1, 1), Ordering::SeqCst);
    }
    cpu_off()
}

/// vCPU 0's side: runs the rounds with vCPU 1 (already started at [`racer`]).
pub fn run() {
    let (mut one_success, mut loser_ok, mut winner_ran, mut already_on) = (true, true, true, true);
    let mut detail = (0, 0, 0, 0u64, 0u64);
    let (mut already, mut pending) = (0, 0);
    for round in 1..=ROUNDS {
        TARGET_RAN.store(0, Ordering::SeqCst);
        RACER_RESULT.store(i64::MIN, Ordering::SeqCst);
        GO.store(round, Ordering::SeqCst);
        ARRIVED.fetch_add(1, Ordering::SeqCst);
        while ARRIVED.load(Ordering::SeqCst) < 2 * round {
            core::hint::spin_loop();
        }
        let mine = start_target(round - 1, 0);
        gic::wait_until(START_MS, || RACER_RESULT.load(Ordering::SeqCst) != i64::MIN);
        let theirs = RACER_RESULT.load(Ordering::SeqCst);
        let winner = match (mine, theirs) {
            (0, r) if r != 0 => Some(0),
            (r, 0) if r != 0 => Some(1),
            _ => None,
        };
        one_success &= winner.is_some();
        let loser = if winner == Some(0) { theirs } else { mine };
        loser_ok &= loser == PSCI_RET_ALREADY_ON || loser == PSCI_RET_ON_PENDING;
        already += usize::from(loser == PSCI_RET_ALREADY_ON);
        pending += usize::from(loser == PSCI_RET_ON_PENDING);
        let ran = gic::wait_until(START_MS, || TARGET_RAN.load(Ordering::SeqCst) != 0);
        let got = TARGET_RAN.load(Ordering::SeqCst);
        winner_ran &= ran && winner.map(|w| w + 1) == Some(got);
        // vCPU 2 is running (it waits for the release): CPU_ON, with a valid
        // entry point, says ALREADY_ON.
        let entry = powercycle_off_at_once as *const () as u64;
        let again = hvc_call(PSCI_CPU_ON_64, VCPU2, entry, 0) as i64;
        let info = affinity_info(VCPU2);
        already_on &= again == PSCI_RET_ALREADY_ON && info == AFF_ON;
        RELEASE.store(round, Ordering::SeqCst);
        let off = gic::wait_until(START_MS, || affinity_info(VCPU2) == AFF_OFF);
        already_on &= off;
        if detail.0 == 0 && !(one_success && loser_ok && winner_ran && already_on) {
            detail = (mine, theirs, again, got, info);
        }
    }
    let (mine, theirs, again, got, info) = detail;
    println!(
        "powercycle: psci race: {ROUNDS} rounds, the loser got ALREADY_ON {already} times, ON_PENDING {pending} times"
    );
    check!(
        "powercycle: psci race: two vCPUs' concurrent CPU_ON of one target: one SUCCESS, the other ALREADY_ON or ON_PENDING",
        one_success && loser_ok,
        "vCPU 0 got {mine}, vCPU 1 got {theirs}"
    );
    check!(
        "powercycle: psci race: the target starts with the winner's entry point and context",
        winner_ran,
        "vCPU 0 got {mine}, vCPU 1 got {theirs}, the target ran with racer {got} (0: never)"
    );
    check!(
        "powercycle: psci race: CPU_ON of the running target is ALREADY_ON, AFFINITY_INFO ON, then OFF after its CPU_OFF",
        already_on,
        "CPU_ON returned {again}, AFFINITY_INFO {info}"
    );
    // vCPU 1 powers itself off after its last round.
    gic::wait_until(START_MS, || affinity_info(crate::VCPU1) == AFF_OFF);
}

core::arch::global_asm!(
    // vCPU 2's entry around the reset: CPU_OFF at once (x0 = PSCI_CPU_OFF, HVC
    // #0); if that returns, wait.
    ".global powercycle_off_at_once",
    "powercycle_off_at_once:",
    "movz x0, #0x0002",
    "movk x0, #0x8400, lsl #16",
    "hvc #0",
    "1: wfi",
    "b 1b",
);

unsafe extern "C" {
    fn powercycle_off_at_once();
}

/// vCPU 1 around the reset: turns vCPU 2 on again and again (it powers off at
/// once), so that CPU_ONs race vCPU 0's SYSTEM_RESET.
pub fn churn() -> ! {
    let entry = powercycle_off_at_once as *const () as u64;
    loop {
        hvc_call(PSCI_CPU_ON_64, VCPU2, entry, 0);
    }
}

/// At boot: vCPUs 1 and 2 are OFF (nothing of a CPU_ON racing the reset runs).
pub fn nothing_running_at_boot() {
    let (one, two) = (affinity_info(crate::VCPU1), affinity_info(VCPU2));
    check!(
        "powercycle: psci race: at boot vCPUs 1 and 2 are OFF (a CPU_ON racing the reset left nothing running)",
        one == AFF_OFF && two == AFF_OFF,
        "AFFINITY_INFO: vCPU 1 {one}, vCPU 2 {two}"
    );
}
