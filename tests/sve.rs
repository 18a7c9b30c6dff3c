//! SVE for guests, switched lazily: two VMs with different vector-length caps
//! (`sve_vl` 512 and 256) share physical CPU 0 (boards/qemu-virt/sve.toml). Each
//! sees RDVL = its cap and its ZCR_EL1 as it wrote it, finds nothing of the other
//! at its first SVE use, and fills Z0-Z31, P0-P15 and FFR with its own patterns,
//! losing the CPU to the other while they are live and checking every byte after
//! (tests/guests/sve).
//!
//! Runs on `-cpu max` (SVE, every length to 2048 bits). On `-cpu cortex-a57`
//! (no SVE) the same config is refused at boot, naming file, line and `sve_vl`; SVE
//! staying hidden and UNDEFINED there (and in a VM that lowers
//! ID_AA64PFR0_EL1.SVE) is tests/fpsimd.rs's. Artifacts (`make test`):
//! `build/ferrovisor.bin`, `build/sve.cpio` (tests/bundles.sh).

mod common;

use common::{BOOT_TIMEOUT, hypervisor_args, run_qemu, run_qemu_until};

/// The guest's checks (tests/guests/sve/src/main.rs `CHECKS`).
const CHECKS: usize = 9;

#[test]
fn two_vms_with_different_vector_lengths_keep_their_sve_state_on_cpu_max() {
    let run = run_qemu(&hypervisor_args("max", 1, "sve.cpio"), BOOT_TIMEOUT);
    let report = run.report();
    assert!(!run.timed_out, "the VMs never powered off\n{report}");
    for vm in ["a", "b"] {
        run.assert_vm_passed("-cpu max", vm, CHECKS);
    }
    assert_eq!(run.status, Some(0), "QEMU's exit status\n{report}");
}

#[test]
fn sve_vl_is_refused_on_a_cpu_without_sve() {
    let run = run_qemu_until(
        &hypervisor_args("cortex-a57", 1, "sve.cpio"),
        BOOT_TIMEOUT,
        |l| l.contains("Ferrovisor stopped"),
    );
    let report = run.report();
    // The config check at boot, with `fvconfig check --sve-vl-max none`'s words.
    assert!(
        run.output.lines().any(|l| l.contains("ERROR")
            && l.contains("ferrovisor.toml:19:10: vm.a.cpu.sve_vl: this machine has no SVE")),
        "the config is refused for VM a's sve_vl\n{report}"
    );
    assert!(run.output.contains("Ferrovisor stopped"), "{report}");
    assert!(!run.output.contains("PANIC"), "{report}");
    assert!(!run.output.contains("(a) "), "no VM ran\n{report}");
}
