//! QEMU integration tests: boot the hypervisor (and the test guests) under QEMU and
//! assert on the serial output and QEMU's exit status.
//!
//! They run on what `make test` builds first (see the Makefile):
//! - `build/ferrovisor.bin`: the hypervisor Image;
//! - `build/ferrovisor-debug.bin`: the same built unoptimized (`make hypervisor
//!   PROFILE=debug`), booted on the demo too;
//! - `build/<config>.cpio`: the boot bundle of a config (`demo`, `conformance`);
//! - `build/guests/<guest>.bin`: the test guests as raw Images (`tests/guests/build.sh`).
//!
//! `FERROVISOR_BUILD` points elsewhere than `<crate>/build`. A missing artifact fails
//! the test with a message saying to run `make test`; nothing passes silently.
//! Every run has a timeout: a guest that never powers off fails.

mod common;

use std::time::Duration;

use common::{
    BOOT_TIMEOUT, Image, Run, artifact, hypervisor_args, image_args, machine_args, parse_summary,
    run_qemu, run_qemu_until, run_qemu_with_monitor, strip_vm_tag,
};

/// The CPU models every boot test runs on: everything QEMU has, and a plain Armv8.0.
const CPUS: [&str; 2] = ["max", "cortex-a57"];

/// `make run` boots with four CPUs; the demo VM uses one of them.
const HOST_CPUS: u32 = 4;

/// The demo guest's banner (tests/guests/demo).
const DEMO_BANNER: &str = "Ferrovisor demo guest: hello from EL1";
/// The demo guest's checks: CurrentEL, PSCI_VERSION.
const DEMO_CHECKS: u32 = 2;
/// The conformance guest's checks (tests/guests/conformance/src/main.rs): boot 2,
/// system registers 3, unclaimed-address aborts 4, PSCI 6, SMCCC 2, SMC 1, CTR_EL0 2,
/// passthrough 1 + the power button's interrupt 2, the lowered ID field 1, the EL1
/// physical timer (CNTP_*) 6.
const CONFORMANCE_CHECKS: u32 = 30;
/// Of those, the checks that need the power button pressed (bootargs
/// `power_button=SECONDS`, which bare QEMU does not pass).
const POWER_BUTTON_CHECKS: u32 = 2;
/// What the conformance guest prints when it waits for the power button.
const POWER_BUTTON_PROMPT: &str = "conformance: press the power button";

fn boot_demo(cpu: &str) {
    boot_demo_image(Image::Release, cpu);
}

fn boot_demo_image(image: Image, cpu: &str) {
    let run = run_qemu(
        &image_args(image, cpu, HOST_CPUS, "demo.cpio"),
        BOOT_TIMEOUT,
    );
    assert!(
        run.has_line(DEMO_BANNER),
        "no banner `{DEMO_BANNER}`\n{}",
        run.report()
    );
    for check in ["CurrentEL is EL1", "PSCI_VERSION over HVC is 1.x"] {
        assert!(
            run.has_line(&format!("PASS: {check}")),
            "no `PASS: {check}`\n{}",
            run.report()
        );
    }
    run.assert_all_passed(DEMO_CHECKS);
    assert!(
        !run.output.contains("EXIT-STATS"),
        "exit statistics without `ferrovisor.exit_stats`\n{}",
        run.report()
    );
}

/// With `ferrovisor.exit_stats` on the hypervisor's command line (QEMU `-append`,
/// the hypervisor's `/chosen/bootargs`), the demo VM's exits are counted and logged
/// when it powers off: its PSCI calls among them.
#[test]
fn exit_statistics_are_logged_when_the_vm_powers_off() {
    let mut args = hypervisor_args(CPUS[0], HOST_CPUS, "demo.cpio");
    args.extend(["-append".into(), "ferrovisor.exit_stats".into()]);
    let run = run_qemu(&args, BOOT_TIMEOUT);
    run.assert_all_passed(DEMO_CHECKS);
    let stats: Vec<&str> = run
        .output
        .lines()
        .filter_map(|l| l.split_once("EXIT-STATS ").map(|(_, s)| s))
        .collect();
    let exits = stats
        .iter()
        .find_map(|l| l.strip_prefix("cpu=0 vmid=1 exits="))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse::<u64>().ok());
    assert!(
        exits.is_some_and(|n| n > 0),
        "no `EXIT-STATS cpu=0 vmid=1 exits=N` line with N > 0\n{}",
        run.report()
    );
    let smccc = stats
        .iter()
        .find(|l| l.starts_with("cpu=0 vmid=1 smccc "))
        .unwrap_or_else(|| panic!("no smccc line\n{}", run.report()));
    for call in ["0x84000000=", "0x84000008=1"] {
        assert!(
            smccc.contains(call),
            "PSCI call `{call}` not counted in `{smccc}`\n{}",
            run.report()
        );
    }
    for aspect in ["class", "sysreg", "mmio", "irq"] {
        assert!(
            stats
                .iter()
                .any(|l| l.starts_with(&format!("cpu=0 vmid=1 {aspect}"))),
            "no `{aspect}` line\n{}",
            run.report()
        );
    }
}

#[test]
fn demo_guest_under_hypervisor_on_cpu_max() {
    boot_demo(CPUS[0]);
}

#[test]
fn demo_guest_under_hypervisor_on_cortex_a57() {
    boot_demo(CPUS[1]);
}

/// The debug build (unoptimized, its stack frames several times larger) boots
/// the demo too: a failure only it shows, such as a stack overflow, is caught here.
#[test]
fn demo_guest_under_debug_hypervisor_on_cpu_max() {
    boot_demo_image(Image::Debug, CPUS[0]);
}

#[test]
fn demo_guest_under_debug_hypervisor_on_cortex_a57() {
    boot_demo_image(Image::Debug, CPUS[1]);
}

/// The conformance guest under the hypervisor, with QEMU virt's PL061 GPIO passed
/// through: each time the guest asks, the harness presses QEMU's power button
/// (`system_powerdown` on the monitor), which raises the PL061's interrupt; the guest
/// checks it arrives as INTID 39, twice.
fn boot_conformance(cpu: &str) {
    let mut presses = 0;
    let run = run_qemu_with_monitor(
        &hypervisor_args(cpu, HOST_CPUS, "conformance.cpio"),
        BOOT_TIMEOUT,
        |line| {
            if strip_vm_tag(line).starts_with(POWER_BUTTON_PROMPT) {
                presses += 1;
                vec!["system_powerdown"]
            } else {
                vec![]
            }
        },
    );
    assert_eq!(
        presses,
        2,
        "the guest asked for the power button {presses} times\n{}",
        run.report()
    );
    run.assert_all_passed(CONFORMANCE_CHECKS);
}

#[test]
fn conformance_guest_under_hypervisor_on_cpu_max() {
    boot_conformance(CPUS[0]);
}

#[test]
fn conformance_guest_under_hypervisor_on_cortex_a57() {
    boot_conformance(CPUS[1]);
}

/// Issue 2: entered at EL1 the hypervisor says so, names the fix
/// (`virtualization=on`) and stops; the guest never runs.
fn hypervisor_entered_at_el1(cpu: &str) {
    let mut args = machine_args("virt,gic-version=3", cpu, 1);
    args.extend([
        "-kernel".into(),
        artifact("ferrovisor.bin"),
        "-initrd".into(),
        artifact("demo.cpio"),
    ]);
    let explains = |line: &str| line.contains("EL1") && line.contains("virtualization=on");
    let run = run_qemu_until(&args, Duration::from_secs(60), explains);
    assert!(
        run.output.lines().any(explains),
        "no line naming EL1 and `virtualization=on`\n{}",
        run.report()
    );
    assert!(
        !run.output.contains(DEMO_BANNER),
        "the guest ran although the hypervisor was entered at EL1\n{}",
        run.report()
    );
}

#[test]
fn hypervisor_entered_at_el1_explains_on_cpu_max() {
    hypervisor_entered_at_el1(CPUS[0]);
}

#[test]
fn hypervisor_entered_at_el1_explains_on_cortex_a57() {
    hypervisor_entered_at_el1(CPUS[1]);
}

/// The guests without the hypervisor: QEMU enters them at EL1 and answers PSCI over
/// HVC itself. Checks the guest runtime on its own, and is the benchmarks' floor.
fn bare_qemu(cpu: &str, guest: &str) -> Run {
    let mut args = machine_args("virt,gic-version=3", cpu, 1);
    args.extend(["-kernel".into(), artifact(&format!("guests/{guest}.bin"))]);
    run_qemu(&args, BOOT_TIMEOUT)
}

#[test]
fn demo_guest_on_bare_qemu() {
    for cpu in CPUS {
        let run = bare_qemu(cpu, "demo");
        assert!(
            run.has_line(DEMO_BANNER),
            "{cpu}: no banner\n{}",
            run.report()
        );
        run.assert_all_passed(DEMO_CHECKS);
    }
}

/// On bare QEMU the conformance guest's runtime paths work: expected UNDEFs are
/// recorded and skipped, PSCI over HVC answers, and the run ends with a summary.
/// (The 0x3000_0000 aborts and SMC are the hypervisor's to provide; QEMU alone
/// answers them differently, see tests/guests/README.md.)
#[test]
fn conformance_guest_runtime_on_bare_qemu() {
    for cpu in CPUS {
        let run = bare_qemu(cpu, "conformance");
        for check in [
            "boot: entered at EL1",
            "boot: x0 points at a flattened device tree in RAM",
            "sysreg: MRS of IMPLEMENTATION DEFINED S3_0_C15_C0_0 is UNDEFINED",
            "sysreg: MSR of IMPLEMENTATION DEFINED S3_0_C15_C0_0 is UNDEFINED",
            "sysreg: MRS of HCR_EL2 from EL1 is UNDEFINED",
            "psci: PSCI_VERSION over HVC is 1.1 (0x10001)",
            "psci: PSCI_FEATURES(PSCI_VERSION) = 0",
        ] {
            assert!(
                run.has_line(&format!("PASS: {check}")),
                "{cpu}: no `PASS: {check}`\n{}",
                run.report()
            );
        }
        let summary = run.summary();
        let expected = CONFORMANCE_CHECKS - POWER_BUTTON_CHECKS;
        assert!(
            matches!(summary, Some((p, f)) if p + f == expected),
            "{cpu}: expected a summary of {expected} checks, got {summary:?}\n{}",
            run.report()
        );
        assert_eq!(
            run.status,
            Some(0),
            "{cpu}: QEMU's exit status\n{}",
            run.report()
        );
    }
}

#[test]
fn output_protocol_parsing() {
    assert_eq!(strip_vm_tag("(demo) PASS: x"), "PASS: x");
    assert_eq!(strip_vm_tag("PASS: x"), "PASS: x");
    assert_eq!(parse_summary("18 passed, 0 failed"), Some((18, 0)));
    assert_eq!(parse_summary("2 passed, 1 failed"), Some((2, 1)));
    assert_eq!(parse_summary("passed, failed"), None);
    let run = Run {
        output: "boot log\n(demo) PASS: a\n(demo) FAIL: b (why)\n(demo) 1 passed, 1 failed\n"
            .into(),
        stderr: String::new(),
        status: Some(0),
        timed_out: false,
    };
    assert_eq!(run.failures(), vec!["FAIL: b (why)"]);
    assert_eq!(run.summary(), Some((1, 1)));
    assert!(run.has_line("PASS: a"));
    assert!(!run.has_line("PASS: b"));
}

/// The harness itself: a QEMU that never ends is killed at the timeout and reported
/// as timed out, not waited for.
#[test]
fn run_qemu_kills_at_timeout() {
    // No -kernel: the CPU spins in QEMU's empty flash forever.
    let args = machine_args("virt", "cortex-a57", 1);
    let start = std::time::Instant::now();
    let run = run_qemu(&args, Duration::from_secs(2));
    assert!(run.timed_out, "{}", run.report());
    assert_eq!(run.status, None);
    assert!(start.elapsed() < Duration::from_secs(30));
}
