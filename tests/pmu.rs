//! The guest PMU (`sysreg::pmu`): boards/qemu-virt/pmu.toml runs VMs a and b,
//! each with a PMU (4 counters and the host's 6), sharing physical CPU 0, and
//! VM c without one (`pmu = false`) on CPU 1 (tests/guests/pmu). With a PMU a
//! guest sees PMCR_EL0.N as configured, the counters beyond it UNDEFINED or
//! RAZ/WI, a cycle counter that advances, SW_INCR counting exactly (from EL1,
//! and from EL0 as PMUSERENR_EL0 allows), its
//! overflow as PPI 23, EL2 filter bits that read 0 and never count the
//! hypervisor, and counts of its own while the other VM runs on the same
//! counters; without one, PMUVer 0 and every PMU register UNDEFINED.
//!
//! Runs on `-cpu max` (PMUv3p5: MDCR_EL2.HPMD and HCCD exist too) and `-cpu
//! cortex-a57` (PMUv3: only the trapped filter writes keep EL2 uncounted).
//! Artifacts (`make test`): `build/ferrovisor.bin`, `build/pmu.cpio`
//! (tests/bundles.sh).

mod common;

use common::{BOOT_TIMEOUT, hypervisor_args, run_qemu};

/// The guest's checks (tests/guests/pmu/src/main.rs `CHECKS_PMU`, `CHECKS_NONE`).
const CHECKS_PMU: usize = 22;
const CHECKS_NONE: usize = 6;

fn pmu_guests(cpu: &str, pmuver: u32) {
    let run = run_qemu(&hypervisor_args(cpu, 2, "pmu.cpio"), BOOT_TIMEOUT);
    let report = run.report();
    assert!(
        !run.timed_out,
        "-cpu {cpu}: the VMs never powered off\n{report}"
    );
    for (vm, checks) in [("a", CHECKS_PMU), ("b", CHECKS_PMU), ("c", CHECKS_NONE)] {
        run.assert_vm_passed(&format!("-cpu {cpu}"), vm, checks);
        let lines = run.vm_lines(vm);
        let banner = if vm == "c" {
            "PMUVer=0".to_string()
        } else {
            format!("PMUVer={pmuver}")
        };
        assert!(
            lines.iter().any(|l| l.contains(&banner)),
            "-cpu {cpu}: VM '{vm}' should see {banner}\n{report}"
        );
    }
    assert_eq!(
        run.status,
        Some(0),
        "-cpu {cpu}: QEMU's exit status\n{report}"
    );
}

#[test]
fn guest_pmu_on_cpu_max() {
    // QEMU's max CPU has PMUv3p5 (PMUVer 6), shown as it is.
    pmu_guests("max", 6);
}

#[test]
fn guest_pmu_on_cortex_a57() {
    // A Cortex-A57's PMU is a PMUv3 (PMUVer 1).
    pmu_guests("cortex-a57", 1);
}
