//! The CPU-model conformance guest (tests/guests/cpumodel, issue 5) under the
//! hypervisor: cache topology under each cache policy, CSSELR, hidden ID register
//! fields, PARange within the IPA space, UNDEF for an unknown system register and
//! for every register of a hidden feature, self-hosted debug left to the guest, the
//! same view on two vCPUs, and set/way maintenance around turning caches off and
//! on — also after a boot stage that left the EL2 trap registers permissive
//! (tests/guests/dirtyfw).
//!
//! Every config runs on `-cpu max` (FEAT_EVT: the cache ID registers are trapped with
//! HCR_EL2.TID4 and CTR_EL0 is not) and on `-cpu cortex-a57` (no FEAT_EVT: TID2,
//! which traps CTR_EL0 too). Artifacts (see the Makefile, `make test`):
//! - `build/ferrovisor.bin`;
//! - `build/cpumodel-<name>.cpio` from `boards/qemu-virt/cpumodel-<name>.toml`
//!   (`tests/bundles.sh`): `virtual`, `host`, `explicit`, `smp` (two vCPUs) and
//!   `twovm` (two VMs with different topologies at once);
//! - `build/guests/cpumodel.bin` (bare-QEMU runs).

mod common;

use common::{BOOT_TIMEOUT, Run, artifact, hypervisor_args, machine_args, run_qemu};

/// The guest's checks with one vCPU (tests/guests/cpumodel/src/main.rs `CHECKS_UP`):
/// config 1, cache topology 5, CSSELR 3, ID registers 12, UNDEF 2, hidden
/// features 21, debug 2, set/way 4.
const CHECKS_UP: u32 = 50;
/// With two vCPUs (`CHECKS_SMP`): 5 more about vCPU 1.
const CHECKS_SMP: u32 = CHECKS_UP + 5;

/// Physical CPUs QEMU gives the hypervisor: enough for the two-vCPU config.
const HOST_CPUS: u32 = 2;

/// A CPU model and the trap the hypervisor must pick for the cache ID registers
/// (src/sysreg/mod.rs, "Wiring"): its boot log names it.
struct Cpu {
    qemu: &'static str,
    trap: &'static str,
}

const MAX: Cpu = Cpu {
    qemu: "max",
    trap: "cache ID trap TID4",
};
const CORTEX_A57: Cpu = Cpu {
    qemu: "cortex-a57",
    trap: "cache ID trap TID2",
};

/// Boots `build/cpumodel-<config>.cpio` on `cpu` and asserts every check passed.
fn cpumodel(cpu: &Cpu, config: &str, policy: &str, checks: u32) -> Run {
    let run = run_qemu(
        &hypervisor_args(cpu.qemu, HOST_CPUS, &format!("cpumodel-{config}.cpio")),
        BOOT_TIMEOUT,
    );
    run.assert_all_passed(checks);
    assert!(
        run.output.contains(cpu.trap),
        "-cpu {}: the hypervisor's log does not say `{}`\n{}",
        cpu.qemu,
        cpu.trap,
        run.report()
    );
    // The guest checked the policy the config names, not the default.
    let policy_line = format!("info: policy {policy},");
    assert!(
        run.guest_lines().any(|l| l.starts_with(&policy_line)),
        "no `{policy_line}` line\n{}",
        run.report()
    );
    run
}

#[test]
fn virtual_cache_policy_on_cpu_max() {
    let run = cpumodel(&MAX, "virtual", "virtual", CHECKS_UP);
    pa_range_is_the_ipa_size(&run);
}

/// The guest's ID_AA64MMFR0_EL1.PARange is the IPA size the hypervisor's stage 2
/// gives it (its boot log: `stage 2: N-bit IPA`), not the host's PA size (52 bits
/// on `-cpu max`, 44 on cortex-a57).
fn pa_range_is_the_ipa_size(run: &Run) {
    let ipa = run
        .output
        .lines()
        .find_map(|l| l.split("stage 2: ").nth(1)?.split("-bit IPA").next())
        .unwrap_or_else(|| panic!("no `stage 2: N-bit IPA` line\n{}", run.report()));
    let guest = run
        .guest_lines()
        .find_map(|l| l.strip_prefix("info: ID_AA64MMFR0_EL1.PARange "))
        .and_then(|l| l.split('(').nth(1)?.split("-bit").next())
        .unwrap_or_else(|| panic!("no PARange info line\n{}", run.report()));
    assert_eq!(
        guest,
        ipa,
        "guest PARange vs stage-2 IPA size\n{}",
        run.report()
    );
}

#[test]
fn virtual_cache_policy_on_cortex_a57() {
    let run = cpumodel(&CORTEX_A57, "virtual", "virtual", CHECKS_UP);
    pa_range_is_the_ipa_size(&run);
}

/// A boot stage before the hypervisor (tests/guests/dirtyfw) leaves HCRX_EL2 and
/// the fine-grained traps enabling everything, MDCR_EL2 routing debug to EL2 and
/// reserving counters for EL2, the event stream on. The guest still finds every
/// hidden feature UNDEFINED and its debug its own: the hypervisor writes the EL2
/// controls whole. The hypervisor is loaded where its Image header says (RAM base
/// + text_offset), which is where dirtyfw jumps.
fn after_permissive_firmware(cpu: &Cpu) {
    let hyp = artifact("ferrovisor.bin");
    let header = std::fs::read(&hyp).expect("read ferrovisor.bin");
    let text_offset = u64::from_le_bytes(header[8..16].try_into().unwrap());
    assert_eq!(
        text_offset, 0x20_0000,
        "dirtyfw enters the hypervisor at RAM base + 2 MiB; its text_offset changed"
    );
    let mut args = machine_args("virt,virtualization=on,gic-version=3", cpu.qemu, HOST_CPUS);
    args.extend([
        "-kernel".into(),
        artifact("guests/dirtyfw.bin"),
        "-device".into(),
        format!("loader,file={hyp},addr=0x40200000,force-raw=on"),
        "-initrd".into(),
        artifact("cpumodel-virtual.cpio"),
    ]);
    let run = run_qemu(&args, BOOT_TIMEOUT);
    assert!(
        run.has_line("dirtyfw: EL2 trap registers left permissive; entering the hypervisor"),
        "dirtyfw did not run\n{}",
        run.report()
    );
    run.assert_all_passed(CHECKS_UP);
}

#[test]
fn permissive_firmware_leaves_nothing_to_the_guest_on_cpu_max() {
    after_permissive_firmware(&MAX);
}

#[test]
fn permissive_firmware_leaves_nothing_to_the_guest_on_cortex_a57() {
    after_permissive_firmware(&CORTEX_A57);
}

#[test]
fn host_cache_policy_on_cpu_max() {
    cpumodel(&MAX, "host", "host", CHECKS_UP);
}

#[test]
fn host_cache_policy_on_cortex_a57() {
    cpumodel(&CORTEX_A57, "host", "host", CHECKS_UP);
}

#[test]
fn explicit_cache_topology_on_cpu_max() {
    cpumodel(&MAX, "explicit", "explicit", CHECKS_UP);
}

#[test]
fn explicit_cache_topology_on_cortex_a57() {
    cpumodel(&CORTEX_A57, "explicit", "explicit", CHECKS_UP);
}

/// Two vCPUs: vCPU 1 (started with PSCI CPU_ON) sees what vCPU 0 sees.
fn two_vcpus(cpu: &Cpu) {
    let run = cpumodel(cpu, "smp", "host", CHECKS_SMP);
    assert!(
        run.has_line(
            "PASS: smp: vCPU 1 sees the same MIDR_EL1 and ID registers (all 56 of the ID space)"
        ),
        "{}",
        run.report()
    );
}

#[test]
fn two_vcpus_agree_on_cpu_max() {
    two_vcpus(&MAX);
}

#[test]
fn two_vcpus_agree_on_cortex_a57() {
    two_vcpus(&CORTEX_A57);
}

/// One VM's console output with every line break removed. The shared console ends a
/// VM's unfinished line whenever another source writes (src/devices/console.rs), so
/// with two VMs printing at once a guest line may arrive in pieces, each tagged
/// `(vm) `. Joining a VM's pieces without separators gives back exactly its bytes
/// less its own newlines, in which `PASS: `, `FAIL:` and the summary can be counted.
fn vm_text(run: &Run, vm: &str) -> String {
    let tag = format!("({vm}) ");
    run.output
        .lines()
        .filter_map(|l| l.strip_prefix(tag.as_str()))
        .collect()
}

/// Two VMs at once, one with the explicit topology and one with the virtual view, on
/// their own physical CPUs: each reads its own values (a CSSELR of no cache reads 0
/// in both, never the other VM's geometry) and passes every check.
fn two_vms(cpu: &Cpu) {
    let run = run_qemu(
        &hypervisor_args(cpu.qemu, HOST_CPUS, "cpumodel-twovm.cpio"),
        BOOT_TIMEOUT,
    );
    assert!(
        !run.timed_out,
        "the VMs never powered off\n{}",
        run.report()
    );
    for (vm, policy) in [("explicit", "explicit"), ("virtual", "virtual")] {
        let text = vm_text(&run, vm);
        let passes = text.matches("PASS: ").count() as u32;
        let summary = format!("{CHECKS_UP} passed, 0 failed");
        let summary_ok = text
            .match_indices(summary.as_str())
            .any(|(at, _)| !text[..at].ends_with(|c: char| c.is_ascii_digit()));
        assert!(
            passes == CHECKS_UP && !text.contains("FAIL:") && summary_ok,
            "-cpu {}: VM '{vm}' should pass all {CHECKS_UP} checks: {passes} PASS, \
             FAIL present: {}, summary present: {summary_ok}\n{}",
            cpu.qemu,
            text.contains("FAIL:"),
            run.report()
        );
        assert!(
            text.contains(&format!("info: policy {policy},")),
            "-cpu {}: VM '{vm}' did not check the {policy} policy\n{}",
            cpu.qemu,
            run.report()
        );
    }
    assert_eq!(run.status, Some(0), "QEMU's exit status\n{}", run.report());
}

#[test]
fn two_vms_with_different_topologies_on_cpu_max() {
    two_vms(&MAX);
}

#[test]
fn two_vms_with_different_topologies_on_cortex_a57() {
    two_vms(&CORTEX_A57);
}

/// The guest without the hypervisor: QEMU enters it at EL1 with two CPUs and the
/// policy marker on the command line (`-append`, which QEMU puts in
/// /chosen/bootargs). QEMU's own CPU is then the `host` topology, so the cache,
/// CSSELR, two-vCPU and set/way checks pass; the hiding and UNDEF checks are the
/// hypervisor's to make pass. What matters here: the guest runs to its summary,
/// with every check counted, and powers off (nothing hangs or crashes).
#[test]
fn runs_to_the_end_on_bare_qemu() {
    for cpu in [MAX.qemu, CORTEX_A57.qemu] {
        let mut args = machine_args("virt,gic-version=3", cpu, 2);
        args.extend([
            "-kernel".into(),
            artifact("guests/cpumodel.bin"),
            "-append".into(),
            "cpumodel.cache=host".into(),
        ]);
        let run = run_qemu(&args, BOOT_TIMEOUT);
        for check in [
            "config: bootargs name the cache policy (cpumodel.cache=...)",
            "cache: CTR_EL0 is the host CPU's",
            "cache: CLIDR_EL1 is the policy's",
            "cache: CCSIDR_EL1 of every cache CLIDR_EL1 describes is the policy's",
            "cache: CCSIDR2_EL1 follows FEAT_CCIDX",
            "csselr: CSSELR_EL1 reads back each selection written (Level, InD)",
            "csselr: a level above the last cache reads CCSIDR_EL1 = 0",
            "smp: PSCI CPU_ON starts vCPU 1",
            "smp: vCPU 1 sees the same MIDR_EL1 and ID registers (all 56 of the ID space)",
            "smp: CSSELR_EL1 is per vCPU",
            "setway: SCTLR_EL1 write clearing M and C takes effect (MMU off)",
            "setway: data written with caches on is visible with caches off",
            "setway: data written with caches off is visible with caches on",
        ] {
            assert!(
                run.has_line(&format!("PASS: {check}")),
                "-cpu {cpu}: no `PASS: {check}`\n{}",
                run.report()
            );
        }
        // QEMU's PMU answers PMCR_EL0 and its ID registers show the PMU.
        assert!(
            run.failures()
                .iter()
                .any(|l| l.starts_with("FAIL: undef: MRS PMCR_EL0 is UNDEFINED")),
            "-cpu {cpu}: PMCR_EL0 should be readable without the hypervisor\n{}",
            run.report()
        );
        let summary = run.summary();
        assert!(
            matches!(summary, Some((p, f)) if p + f == CHECKS_SMP),
            "-cpu {cpu}: expected a summary of {CHECKS_SMP} checks, got {summary:?}\n{}",
            run.report()
        );
        assert!(!run.timed_out, "-cpu {cpu}: timed out\n{}", run.report());
        assert_eq!(
            run.status,
            Some(0),
            "-cpu {cpu}: QEMU's exit status\n{}",
            run.report()
        );
    }
}
