//! FP/SIMD for guests, switched lazily: two VMs share physical CPU 0
//! (boards/qemu-virt/fpsimd.toml), each filling V0-V31, FPSR and FPCR with its
//! own patterns, losing the CPU to the other while they are live, and checking
//! every value after (tests/guests/fpsimd). Neither finds the other's values at
//! entry; SVE and SME stay hidden and UNDEFINED.
//!
//! Runs on `-cpu max` (a host with SVE and SME: CPTR_EL2 traps them, CPACR_EL1 is
//! emulated) and `-cpu cortex-a57` (FP/SIMD only). Artifacts (`make test`):
//! `build/ferrovisor.bin`, `build/fpsimd.cpio` (tests/bundles.sh).

mod common;

use common::{BOOT_TIMEOUT, hypervisor_args, run_qemu};

/// The guest's checks (tests/guests/fpsimd/src/main.rs `CHECKS`).
const CHECKS: usize = 8;

fn two_vms_share_fp(cpu: &str) {
    let run = run_qemu(&hypervisor_args(cpu, 1, "fpsimd.cpio"), BOOT_TIMEOUT);
    let report = run.report();
    assert!(
        !run.timed_out,
        "-cpu {cpu}: the VMs never powered off\n{report}"
    );
    for vm in ["a", "b"] {
        run.assert_vm_passed(&format!("-cpu {cpu}"), vm, CHECKS);
    }
    assert_eq!(
        run.status,
        Some(0),
        "-cpu {cpu}: QEMU's exit status\n{report}"
    );
}

#[test]
fn two_vms_on_one_cpu_keep_their_fp_simd_state_on_cpu_max() {
    two_vms_share_fp("max");
}

#[test]
fn two_vms_on_one_cpu_keep_their_fp_simd_state_on_cortex_a57() {
    two_vms_share_fp("cortex-a57");
}
