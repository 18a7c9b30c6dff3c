//! Time-sharing (issue 10): several vCPUs on one physical CPU.
//!
//! - The vGIC conformance guest with both vCPUs on one CPU
//!   (`boards/qemu-virt/vgic-shared.toml`, `-smp 1`): SGIs to a vCPU that is off
//!   the CPU, the virtual timer of a vCPU that is not loaded (kept by the EL2
//!   timer), WFI handing the CPU to the other vCPU. Every check must pass as it
//!   does with a CPU per vCPU.
//! - The isolation pair on one CPU (`isolation-shared.toml`): the hostile guest
//!   spins with every interrupt masked; the victim (`role=rate`) still gets its
//!   share, steadily, because the preemption tick is the EL2 timer's (CNTHP),
//!   which no guest can mask. Measured against the same victim alone on the CPU
//!   (`isolation-solo.toml`), under `-icount shift=0` so that the figures are
//!   instruction counts that repeat from run to run.
//! - The register-pattern guest (`regpattern.toml`, tests/guests/regpattern):
//!   two VMs, one with two vCPUs, all on one CPU with 100 µs turns; each vCPU
//!   fills every EL1 system register it can write, x9-x28, V0-V31, FPSR and
//!   FPCR with a pattern of its own, 2000 times, and checks all of it after
//!   every switch; a fresh vCPU (vCPU 1, started after the others' patterns
//!   were on the CPU) finds reset values. DISR_EL1 (VDISR_EL2) is in the
//!   pattern on `-cpu max` (FEAT_RAS) and UNDEFINED on cortex-a57.
//!
//! Artifacts: `build/ferrovisor.bin`, `build/<config>.cpio` (`tests/bundles.sh`).

mod common;

use std::time::Duration;

use common::{BOOT_TIMEOUT, Run, hypervisor_args, run_qemu, run_qemu_until, strip_vm_tag};

/// The vGIC guest's checks (tests/vgic.rs `CHECKS`).
const VGIC_CHECKS: u32 = 55;

fn vgic_shared(cpu: &str) {
    let run = run_qemu(&hypervisor_args(cpu, 1, "vgic-shared.cpio"), BOOT_TIMEOUT);
    assert!(
        run.output.contains("2 vCPU(s) on CPU(s) [0, 0]"),
        "-cpu {cpu}: the two vCPUs are not on one CPU\n{}",
        run.report()
    );
    run.assert_all_passed(VGIC_CHECKS);
}

#[test]
fn vgic_guest_with_two_vcpus_on_one_cpu_max() {
    vgic_shared("max");
}

#[test]
fn vgic_guest_with_two_vcpus_on_one_cortex_a57() {
    vgic_shared("cortex-a57");
}

/// The victim's rounds (tests/guests/victim `rate`): `period_ms` = 100 each.
const ROUNDS: usize = 8;
/// The victim's share of a CPU it shares with one spinning vCPU of the same
/// priority: half, within this much (the slices are 4 ms, the victim's
/// calibration spans about 25 ms, so a slice more or less is ±8 %; 0.10 leaves
/// room for the switches' own cost).
const SHARE_TOLERANCE: f64 = 0.10;
/// How far one shared round may stray from its 100 ms period: every round must
/// get the same share, none starved by the spinner.
const ROUND_TOLERANCE: f64 = 0.15;

/// The victim's calibrated steps per period and its quiet rounds' lengths in
/// counter ticks.
fn rate_run(cpu: &str, bundle: &str) -> (u64, Vec<u64>, Run) {
    let mut args = hypervisor_args(cpu, 1, bundle);
    args.extend(["-icount".into(), "shift=0,sleep=off".into()]);
    let run = run_qemu_until(&args, Duration::from_secs(300), |l| {
        strip_vm_tag(l).starts_with(&format!("victim: rate round {}:", ROUNDS - 1))
    });
    let steps = run
        .guest_lines()
        .find_map(|l| {
            let rest = strip_vm_tag(l).strip_prefix("victim: rate: ")?;
            let (_, rest) = rest.split_once(" rounds of ")?;
            rest.split_once(' ')?.0.parse().ok()
        })
        .unwrap_or_else(|| panic!("-cpu {cpu} {bundle}: no calibration line\n{}", run.report()));
    let quiet: Vec<u64> = run
        .guest_lines()
        .filter_map(|l| {
            let rest = strip_vm_tag(l).strip_prefix("victim: rate round ")?;
            let (_, rest) = rest.split_once(": quiet ")?;
            rest.split_once(" ticks")?.0.parse().ok()
        })
        .collect();
    assert_eq!(
        quiet.len(),
        ROUNDS,
        "-cpu {cpu} {bundle}: not all rounds reported\n{}",
        run.report()
    );
    (steps, quiet, run)
}

/// The counter frequency the hypervisor logged for the host (the guest's
/// CNTFRQ_EL0 is the same).
fn counter_hz(cpu: &str) -> f64 {
    match cpu {
        "max" => 1e9,
        _ => 62.5e6,
    }
}

fn hostile_spinner_shares_cpu(cpu: &str) {
    let (solo, _, _) = rate_run(cpu, "isolation-solo.cpio");
    let (shared, quiet, run) = rate_run(cpu, "isolation-shared.cpio");
    assert!(
        run.has_line("hostile: spinning with interrupts masked"),
        "-cpu {cpu}: the hostile guest never spun\n{}",
        run.report()
    );
    let share = shared as f64 / solo as f64;
    eprintln!(
        "-cpu {cpu}: victim share {share:.3} ({shared} steps per period, {solo} alone); rounds {quiet:?}"
    );
    assert!(
        (share - 0.5).abs() <= SHARE_TOLERANCE,
        "-cpu {cpu}: the victim got {share:.3} of the CPU beside a spinner with interrupts \
         masked ({shared} steps per period against {solo} alone); expected 0.5 ± {SHARE_TOLERANCE}\n{}",
        run.report()
    );
    let period = 0.1 * counter_hz(cpu);
    for (r, &ticks) in quiet.iter().enumerate() {
        let ratio = ticks as f64 / period;
        assert!(
            (ratio - 1.0).abs() <= ROUND_TOLERANCE,
            "-cpu {cpu}: round {r} took {ratio:.3} periods (tolerance {ROUND_TOLERANCE})\n{}",
            run.report()
        );
    }
}

#[test]
fn victim_keeps_its_share_beside_a_masked_spinner_on_cpu_max() {
    hostile_spinner_shares_cpu("max");
}

#[test]
fn victim_keeps_its_share_beside_a_masked_spinner_on_cortex_a57() {
    hostile_spinner_shares_cpu("cortex-a57");
}

/// The register-pattern guest's checks: VM a reports for its two vCPUs and
/// that vCPU 1 started, VM b for its one (tests/guests/regpattern).
const REGPATTERN_CHECKS: [(&str, usize); 2] = [("a", 9), ("b", 4)];

fn register_patterns_survive_switches(cpu: &str) {
    let run = run_qemu(&hypervisor_args(cpu, 1, "regpattern.cpio"), BOOT_TIMEOUT);
    let report = run.report();
    assert!(
        !run.timed_out,
        "-cpu {cpu}: the VMs never powered off\n{report}"
    );
    for (vm, checks) in REGPATTERN_CHECKS {
        run.assert_vm_passed(&format!("-cpu {cpu}"), vm, checks);
        let lines = run.vm_lines(vm);
        // DISR_EL1 is part of the pattern exactly where FEAT_RAS exists.
        let disr = if cpu == "max" {
            "regpattern: DISR_EL1 switched (FEAT_RAS)"
        } else {
            "regpattern: DISR_EL1 UNDEFINED (no FEAT_RAS)"
        };
        assert!(
            lines.contains(&disr),
            "-cpu {cpu}: VM '{vm}' should say '{disr}'\n{report}"
        );
    }
    assert_eq!(
        run.status,
        Some(0),
        "-cpu {cpu}: QEMU's exit status\n{report}"
    );
}

#[test]
fn every_register_survives_thousands_of_switches_on_cpu_max() {
    register_patterns_survive_switches("max");
}

#[test]
fn every_register_survives_thousands_of_switches_on_cortex_a57() {
    register_patterns_survive_switches("cortex-a57");
}
