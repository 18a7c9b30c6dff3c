//! A GICv2 (GIC-400) host: QEMU `virt` with `gic-version=2` and the
//! virtualization extensions (GICH at 0x0803_0000, GICV at 0x0804_0000). The
//! hypervisor drives the GICv2 distributor, its memory-mapped CPU interface and
//! the GICH list registers; its guests see a GICv2 (the distributor emulated,
//! the GICV frame mapped at their GICC address).
//!
//! - The demo guest boots.
//! - The vgic2 guest (tests/guests/vgic2) checks the vGICv2 with two vCPUs on
//!   two CPUs: identification, banked GICD_ITARGETSR0, GICD_SGIR SGIs to self
//!   and between the vCPUs (one waiting in WFI), an SPI routed by
//!   GICD_ITARGETSR, the hardware-linked virtual timer twice; again with both
//!   vCPUs time-sharing one CPU. The same guest on QEMU's own GICv2 (no
//!   hypervisor) is the reference.
//! - The conformance guest (its GIC code detects the GICv2): the passed-through
//!   PL061 and its interrupt (the power button, hardware-linked SPI 39), the EL1
//!   physical timer's PPI.
//! - Debian's Linux with two vCPUs in its self-test mode (tests/linux/init):
//!   timer and IPI interrupts counted on both CPUs.
//!
//! Each runs on `-cpu max` and `-cpu cortex-a57`. Artifacts (see the Makefile,
//! `make test`): `build/ferrovisor.bin`, `build/{demo,vgic2,vgic2-shared,
//! conformance,linux-selftest}.cpio` (`tests/bundles.sh`),
//! `build/guests/vgic2.bin`.

mod common;

use std::time::Duration;

use common::{
    BOOT_TIMEOUT, artifact, machine_args, run_qemu, run_qemu_until, run_qemu_with_monitor,
    strip_vm_tag,
};

const CPUS: [&str; 2] = ["max", "cortex-a57"];
const MACHINE: &str = "virt,virtualization=on,gic-version=2";

/// tests/guests/vgic2/src/main.rs `CHECKS`.
const VGIC2_CHECKS: u32 = 15;
/// tests/qemu.rs `CONFORMANCE_CHECKS`: the conformance guest's checks.
const CONFORMANCE_CHECKS: u32 = 30;
const POWER_BUTTON_PROMPT: &str = "conformance: press the power button";

fn gicv2_args(cpu: &str, smp: u32, bundle: &str) -> Vec<String> {
    let mut args = machine_args(MACHINE, cpu, smp);
    args.extend([
        "-kernel".into(),
        artifact("ferrovisor.bin"),
        "-initrd".into(),
        artifact(bundle),
    ]);
    args
}

fn assert_gicv2_host(run: &common::Run, cpu: &str) {
    assert!(
        run.output
            .contains("GICv2: GICD 0x8000000, GICC 0x8010000, GICH 0x8030000, GICV 0x8040000"),
        "-cpu {cpu}: the hypervisor did not drive a GICv2\n{}",
        run.report()
    );
}

#[test]
fn demo_guest_on_a_gicv2_host() {
    for cpu in CPUS {
        let run = run_qemu(&gicv2_args(cpu, 2, "demo.cpio"), BOOT_TIMEOUT);
        assert_gicv2_host(&run, cpu);
        assert!(
            run.has_line("Ferrovisor demo guest: hello from EL1"),
            "-cpu {cpu}: no banner\n{}",
            run.report()
        );
        run.assert_all_passed(2);
    }
}

fn vgic2_under_hypervisor(cpu: &str) {
    let run = run_qemu(&gicv2_args(cpu, 2, "vgic2.cpio"), BOOT_TIMEOUT);
    assert_gicv2_host(&run, cpu);
    run.assert_all_passed(VGIC2_CHECKS);
    for check in [
        "virtual timer PPI 27 taken again after the guest's EOI",
        "SGI 3 to vCPU 1 by CPU target list, taken in its WFI loop",
        "SPI 90 targeted at vCPU 1 taken there",
    ] {
        assert!(
            run.has_line(&format!("PASS: {check}")),
            "-cpu {cpu}: no `PASS: {check}`\n{}",
            run.report()
        );
    }
}

#[test]
fn vgicv2_conforms_on_cpu_max() {
    vgic2_under_hypervisor("max");
}

#[test]
fn vgicv2_conforms_on_cortex_a57() {
    vgic2_under_hypervisor("cortex-a57");
}

/// Both vCPUs of the vgic2 guest time-sharing one CPU
/// (boards/qemu-virt/vgic2-shared.toml, `-smp 1`): every switch saves one
/// vCPU's GICH state (list registers, GICH_VMCR, GICH_APR) and loads the
/// other's; the SGIs and the SPI still reach the vCPU they name.
#[test]
fn vgic2_guest_with_two_vcpus_on_one_cpu() {
    for cpu in CPUS {
        let run = run_qemu(&gicv2_args(cpu, 1, "vgic2-shared.cpio"), BOOT_TIMEOUT);
        assert!(
            run.output.contains("2 vCPU(s) on CPU(s) [0, 0]"),
            "-cpu {cpu}: the vCPUs do not share a CPU\n{}",
            run.report()
        );
        run.assert_all_passed(VGIC2_CHECKS);
    }
}

/// The vgic2 guest on QEMU's own GICv2 at EL1: its expectations are the
/// architecture's, not the hypervisor's.
#[test]
fn vgic2_checks_hold_on_qemus_own_gicv2() {
    let mut args = machine_args("virt,gic-version=2", "cortex-a57", 2);
    args.extend(["-kernel".into(), artifact("guests/vgic2.bin")]);
    let run = run_qemu(&args, BOOT_TIMEOUT);
    run.assert_all_passed(VGIC2_CHECKS);
}

fn conformance_on_gicv2(cpu: &str) {
    let mut presses = 0;
    let run = run_qemu_with_monitor(
        &gicv2_args(cpu, 4, "conformance.cpio"),
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
    assert_gicv2_host(&run, cpu);
    assert_eq!(
        presses,
        2,
        "-cpu {cpu}: the guest asked for the power button {presses} times\n{}",
        run.report()
    );
    run.assert_all_passed(CONFORMANCE_CHECKS);
}

#[test]
fn conformance_guest_on_a_gicv2_host_on_cpu_max() {
    conformance_on_gicv2("max");
}

#[test]
fn conformance_guest_on_a_gicv2_host_on_cortex_a57() {
    conformance_on_gicv2("cortex-a57");
}

fn linux_on_gicv2(cpu: &str) {
    let run = run_qemu_until(
        &gicv2_args(cpu, 4, "linux-selftest.cpio"),
        Duration::from_secs(900),
        |l| l.contains("Kernel panic") || l.contains("PANIC") || l.contains("Ferrovisor stopped"),
    );
    let report = run.report();
    assert!(!run.timed_out, "{cpu}: Linux did not finish\n{report}");
    assert_eq!(run.status, Some(0), "{cpu}: QEMU exit status\n{report}");
    assert_gicv2_host(&run, cpu);
    for line in [
        "FERROVISOR-LINUX-USERSPACE-UP",
        "LINUX-CHECK nproc=2",
        "LINUX-CHECK taskset cpu=0 ok",
        "LINUX-CHECK taskset cpu=1 ok",
        "LINUX-CHECK result=pass",
        "LINUX-CHECK-DONE",
    ] {
        assert!(run.has_line(line), "{cpu}: no `{line}`\n{report}");
    }
    for prefix in ["LINUX-CHECK irq timer ", "LINUX-CHECK irq ipi "] {
        let line = run
            .guest_lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{cpu}: no `{prefix}...` line\n{report}"));
        assert!(line.ends_with(" ok"), "{cpu}: {line}\n{report}");
    }
    // Linux found the GICv2 the device tree describes.
    assert!(
        run.output.contains("Root IRQ handler: gic_handle_irq"),
        "{cpu}: Linux did not take the GICv2 driver\n{report}"
    );
}

#[test]
fn linux_two_vcpus_on_a_gicv2_host_on_cortex_a57() {
    linux_on_gicv2("cortex-a57");
}

#[test]
fn linux_two_vcpus_on_a_gicv2_host_on_cpu_max() {
    linux_on_gicv2("max");
}
