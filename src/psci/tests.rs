//! Host tests: every PSCI function offered, and every error path.

use super::*;

/// Error codes as DEN0022 Table 5 numbers them, sign-extended into x0.
const NOT_SUPPORTED: u64 = -1i64 as u64;
const INVALID_PARAMETERS: u64 = -2i64 as u64;
const ALREADY_ON: u64 = -4i64 as u64;
const ON_PENDING: u64 = -5i64 as u64;
const INTERNAL_FAILURE: u64 = -6i64 as u64;
const INVALID_ADDRESS: u64 = -9i64 as u64;

// Function IDs, written out from DEN0022 Table 6 rather than taken from the crate.
const PSCI_VERSION: u64 = 0x8400_0000;
const CPU_SUSPEND_32: u64 = 0x8400_0001;
const CPU_SUSPEND_64: u64 = 0xc400_0001;
const CPU_OFF: u64 = 0x8400_0002;
const CPU_ON_32: u64 = 0x8400_0003;
const CPU_ON_64: u64 = 0xc400_0003;
const AFFINITY_INFO_32: u64 = 0x8400_0004;
const AFFINITY_INFO_64: u64 = 0xc400_0004;
const MIGRATE_32: u64 = 0x8400_0005;
const MIGRATE_64: u64 = 0xc400_0005;
const MIGRATE_INFO_TYPE: u64 = 0x8400_0006;
const MIGRATE_INFO_UP_CPU_64: u64 = 0xc400_0007;
const SYSTEM_OFF: u64 = 0x8400_0008;
const SYSTEM_RESET: u64 = 0x8400_0009;
const PSCI_FEATURES: u64 = 0x8400_000a;
const CPU_FREEZE: u64 = 0x8400_000b;
const SYSTEM_SUSPEND_64: u64 = 0xc400_000e;
const SYSTEM_RESET2_32: u64 = 0x8400_0012;
const SYSTEM_RESET2_64: u64 = 0xc400_0012;
const SMCCC_VERSION: u64 = 0x8000_0000;
const SMCCC_ARCH_FEATURES: u64 = 0x8000_0001;
const SMCCC_ARCH_WORKAROUND_1: u64 = 0x8000_8000;

const RAM_BASE: u64 = 0x4000_0000;
const RAM_END: u64 = 0x8000_0000;

/// A four-vCPU VM: MPIDRs 0x0, 0x1, 0x100 (Aff1 = 1) and 0x1_0000_0000 (Aff3 = 1),
/// RAM at [1 GiB, 2 GiB).
struct FakeVm {
    mpidrs: Vec<u64>,
    power: Vec<VcpuPower>,
    aarch32: bool,
    /// Makes `vcpu_by_mpidr` answer an index outside the VM.
    broken_lookup: bool,
}

impl FakeVm {
    fn new() -> Self {
        FakeVm {
            mpidrs: vec![0x0, 0x1, 0x100, 0x1_0000_0000],
            power: vec![
                VcpuPower::On,
                VcpuPower::Off,
                VcpuPower::OnPending,
                VcpuPower::Off,
            ],
            aarch32: false,
            broken_lookup: false,
        }
    }
}

impl PsciVm for FakeVm {
    fn vcpu_count(&self) -> usize {
        self.mpidrs.len()
    }
    fn vcpu_by_mpidr(&self, mpidr: u64) -> Option<usize> {
        if self.broken_lookup {
            return Some(self.mpidrs.len());
        }
        self.mpidrs.iter().position(|&m| m == mpidr)
    }
    fn vcpu_power(&self, vcpu: usize) -> VcpuPower {
        self.power[vcpu]
    }
    fn is_guest_ram(&self, ipa: u64) -> bool {
        (RAM_BASE..RAM_END).contains(&ipa)
    }
    fn caller_is_aarch32(&self) -> bool {
        self.aarch32
    }
}

fn call(regs: &[u64]) -> PsciOutcome {
    call_on(&mut FakeVm::new(), regs)
}

fn call_on(vm: &mut FakeVm, regs: &[u64]) -> PsciOutcome {
    let mut x = [0u64; 8];
    x[..regs.len()].copy_from_slice(regs);
    handle(&x, vm)
}

fn ret(x0: u64) -> PsciOutcome {
    PsciOutcome::Return([x0, 0, 0, 0])
}

#[test]
fn error_codes_match_den0022_table_5() {
    // The crate's codes are the spec's numbers, sign-extended into a 64-bit x0.
    let codes = [
        (ErrorCode::NotSupported, -1),
        (ErrorCode::InvalidParameters, -2),
        (ErrorCode::Denied, -3),
        (ErrorCode::AlreadyOn, -4),
        (ErrorCode::OnPending, -5),
        (ErrorCode::InternalFailure, -6),
        (ErrorCode::NotPresent, -7),
        (ErrorCode::Disabled, -8),
        (ErrorCode::InvalidAddress, -9),
    ];
    for (code, n) in codes {
        assert_eq!(u64::from(code), n as i64 as u64, "{code:?}");
    }
}

#[test]
fn psci_version_is_1_1() {
    assert_eq!(call(&[PSCI_VERSION]), ret(0x0001_0001));
    assert_eq!(
        PSCI_VERSION_1_1,
        u32::from(arm_psci::Version { major: 1, minor: 1 })
    );
    // There is no SMC64 PSCI_VERSION.
    assert_eq!(call(&[0xc400_0000]), ret(NOT_SUPPORTED));
    // The identifiers answered before the decoder are the decoder's own.
    assert_eq!(
        super::PSCI_VERSION_ID,
        u32::from(arm_psci::FunctionId::PsciVersion)
    );
    assert_eq!(
        super::MIGRATE_INFO_TYPE_ID,
        u32::from(arm_psci::FunctionId::MigrateInfoType)
    );
}

#[test]
fn smccc_version_and_arch_features() {
    assert_eq!(call(&[SMCCC_VERSION]), ret(0x0001_0001));
    assert_eq!(call(&[SMCCC_ARCH_FEATURES, SMCCC_VERSION]), ret(0));
    assert_eq!(call(&[SMCCC_ARCH_FEATURES, SMCCC_ARCH_FEATURES]), ret(0));
    assert_eq!(
        call(&[SMCCC_ARCH_FEATURES, SMCCC_ARCH_WORKAROUND_1]),
        ret(NOT_SUPPORTED)
    );
    // ARCH_FEATURES answers for Arm Architecture calls only, not PSCI.
    assert_eq!(
        call(&[SMCCC_ARCH_FEATURES, PSCI_VERSION]),
        ret(NOT_SUPPORTED)
    );
    // SMCCC_ARCH_SOC_ID and the workaround calls themselves are not implemented.
    assert_eq!(call(&[0x8000_0002]), ret(NOT_SUPPORTED));
    assert_eq!(call(&[SMCCC_ARCH_WORKAROUND_1]), ret(NOT_SUPPORTED));
}

#[test]
fn unknown_functions_are_not_supported() {
    // Services not offered: SiP, OEM, Standard and Vendor hypervisor (e.g. KVM's UID
    // query 0x8600ff01, which Linux makes at boot), Trusted OS.
    for fid in [
        0x8200_0000,
        0x8300_0000,
        0x8500_0000,
        0x8600_ff01,
        0xb200_0000,
    ] {
        assert_eq!(call(&[fid]), ret(NOT_SUPPORTED), "{fid:#x}");
    }
    // A Yielding Call, and a Fast Call with must-be-zero bits [23:17] set.
    assert_eq!(call(&[0x0400_0000]), ret(NOT_SUPPORTED));
    assert_eq!(call(&[0x8402_0000]), ret(NOT_SUPPORTED));
    // A PSCI-range number PSCI does not define, and optional functions not offered.
    for fid in [
        0x8400_001f,
        MIGRATE_INFO_UP_CPU_64,
        CPU_FREEZE,
        SYSTEM_SUSPEND_64,
    ] {
        assert_eq!(
            call(&[fid, RAM_BASE, RAM_BASE]),
            ret(NOT_SUPPORTED),
            "{fid:#x}"
        );
    }
}

#[test]
fn function_id_is_w0_and_the_sve_hint_is_ignored() {
    assert_eq!(
        call(&[0xffff_ffff_0000_0000 | PSCI_VERSION]),
        ret(0x0001_0001)
    );
    assert_eq!(call(&[PSCI_VERSION | 1 << 16]), ret(0x0001_0001));
}

#[test]
fn cpu_on_starts_an_off_vcpu() {
    assert_eq!(
        call(&[CPU_ON_64, 0x1, RAM_BASE + 0x8_0000, 0xc0ffee]),
        PsciOutcome::CpuOn {
            target: 1,
            entry: RAM_BASE + 0x8_0000,
            context_id: 0xc0ffee,
        }
    );
    // Aff3 is only reachable through the SMC64 form.
    assert_eq!(
        call(&[CPU_ON_64, 0x1_0000_0000, RAM_BASE, 0]),
        PsciOutcome::CpuOn {
            target: 3,
            entry: RAM_BASE,
            context_id: 0,
        }
    );
}

#[test]
fn cpu_on_32_uses_w_registers() {
    // DEN0022 §5.2.1: SMC32 arguments are W1..W3; the upper halves are ignored.
    assert_eq!(
        call(&[
            CPU_ON_32,
            0xffff_ffff_0000_0001,
            0xffff_ffff_0000_0000 | (RAM_BASE + 0x1000),
            0x1234_5678_9abc_def0,
        ]),
        PsciOutcome::CpuOn {
            target: 1,
            entry: RAM_BASE + 0x1000,
            context_id: 0x9abc_def0,
        }
    );
}

#[test]
fn cpu_on_bad_mpidr_is_invalid_parameters() {
    // No vCPU has MPIDR 0x2.
    assert_eq!(
        call(&[CPU_ON_64, 0x2, RAM_BASE, 0]),
        ret(INVALID_PARAMETERS)
    );
    // Must-be-zero bits [31:24] (here bit 31, MPIDR_EL1.RES1/U bits) set.
    assert_eq!(
        call(&[CPU_ON_64, 0x8000_0001, RAM_BASE, 0]),
        ret(INVALID_PARAMETERS)
    );
    // Bits [63:40] set.
    assert_eq!(
        call(&[CPU_ON_64, 1 << 40 | 0x1, RAM_BASE, 0]),
        ret(INVALID_PARAMETERS)
    );
    // The target is checked before the entry point (TF-A's order).
    assert_eq!(call(&[CPU_ON_64, 0x2, 0x10, 0]), ret(INVALID_PARAMETERS));
}

#[test]
fn cpu_on_already_on_and_pending() {
    assert_eq!(call(&[CPU_ON_64, 0x0, RAM_BASE, 0]), ret(ALREADY_ON));
    assert_eq!(call(&[CPU_ON_64, 0x100, RAM_BASE, 0]), ret(ON_PENDING));
}

#[test]
fn cpu_on_entry_outside_guest_ram_is_invalid_address() {
    assert_eq!(call(&[CPU_ON_64, 0x1, RAM_END, 0]), ret(INVALID_ADDRESS));
    assert_eq!(
        call(&[CPU_ON_64, 0x1, 0x0900_0000, 0]),
        ret(INVALID_ADDRESS)
    );
    // A misaligned AArch64 entry point.
    assert_eq!(
        call(&[CPU_ON_64, 0x1, RAM_BASE + 2, 0]),
        ret(INVALID_ADDRESS)
    );
    // The entry point is checked before the target's state.
    assert_eq!(call(&[CPU_ON_64, 0x0, RAM_END, 0]), ret(INVALID_ADDRESS));
    // An SMC32 entry narrowed to 32 bits is checked as narrowed: 0x1_4000_0000 would
    // be outside RAM, its low word 0x4000_0000 is inside.
    assert_eq!(
        call(&[CPU_ON_32, 0x1, 0x1_4000_0000, 0]),
        PsciOutcome::CpuOn {
            target: 1,
            entry: RAM_BASE,
            context_id: 0,
        }
    );
}

#[test]
fn cpu_on_broken_lookup_is_internal_failure() {
    let mut vm = FakeVm::new();
    vm.broken_lookup = true;
    assert_eq!(
        call_on(&mut vm, &[CPU_ON_64, 0x1, RAM_BASE, 0]),
        ret(INTERNAL_FAILURE)
    );
}

#[test]
fn smc64_from_an_aarch32_caller_is_not_supported() {
    let mut vm = FakeVm::new();
    vm.aarch32 = true;
    assert_eq!(
        call_on(&mut vm, &[CPU_ON_64, 0x1, RAM_BASE, 0]),
        ret(NOT_SUPPORTED)
    );
    assert_eq!(
        call_on(&mut vm, &[AFFINITY_INFO_64, 0x1, 0]),
        ret(NOT_SUPPORTED)
    );
    // The SMC32 form works, and a T32 entry point (bit 0 set) is accepted.
    assert_eq!(
        call_on(&mut vm, &[CPU_ON_32, 0x1, RAM_BASE + 1, 7]),
        PsciOutcome::CpuOn {
            target: 1,
            entry: RAM_BASE + 1,
            context_id: 7,
        }
    );
}

#[test]
fn cpu_off() {
    assert_eq!(call(&[CPU_OFF]), PsciOutcome::CpuOff);
}

#[test]
fn cpu_suspend_standby_and_power_down() {
    // Extended StateID format: bit 30 = power-down, StateID in [27:0].
    // A standby state ignores the entry point, even an invalid one.
    assert_eq!(
        call(&[CPU_SUSPEND_64, 0x0000_0001, 0, 0]),
        PsciOutcome::CpuSuspend {
            power_down: false,
            entry: 0,
            context_id: 0,
        }
    );
    assert_eq!(
        call(&[CPU_SUSPEND_64, 0x4000_0002, RAM_BASE + 0x100, 42]),
        PsciOutcome::CpuSuspend {
            power_down: true,
            entry: RAM_BASE + 0x100,
            context_id: 42,
        }
    );
    assert_eq!(
        call(&[CPU_SUSPEND_32, 0x4000_0002, RAM_BASE, 1]),
        PsciOutcome::CpuSuspend {
            power_down: true,
            entry: RAM_BASE,
            context_id: 1,
        }
    );
}

#[test]
fn cpu_suspend_errors() {
    // Power-down with an entry point outside RAM.
    assert_eq!(
        call(&[CPU_SUSPEND_64, 0x4000_0000, RAM_END + 0x1000, 0]),
        ret(INVALID_ADDRESS)
    );
    // Must-be-zero bits (31, 29:28) of power_state.
    assert_eq!(
        call(&[CPU_SUSPEND_64, 0x8000_0000, RAM_BASE, 0]),
        ret(INVALID_PARAMETERS)
    );
    assert_eq!(
        call(&[CPU_SUSPEND_64, 0x1000_0000, RAM_BASE, 0]),
        ret(INVALID_PARAMETERS)
    );
}

#[test]
fn affinity_info_reports_power_state() {
    assert_eq!(call(&[AFFINITY_INFO_64, 0x0, 0]), ret(0)); // ON
    assert_eq!(call(&[AFFINITY_INFO_64, 0x1, 0]), ret(1)); // OFF
    assert_eq!(call(&[AFFINITY_INFO_64, 0x100, 0]), ret(2)); // ON_PENDING
    assert_eq!(call(&[AFFINITY_INFO_32, 0x1, 0]), ret(1));
    assert_eq!(call(&[AFFINITY_INFO_64, 0x1_0000_0000, 0]), ret(1));
}

#[test]
fn affinity_info_errors() {
    // Unknown target.
    assert_eq!(call(&[AFFINITY_INFO_64, 0x3, 0]), ret(INVALID_PARAMETERS));
    // Levels above 0 are optional since PSCI 1.0 and not offered.
    assert_eq!(call(&[AFFINITY_INFO_64, 0x1, 1]), ret(INVALID_PARAMETERS));
    assert_eq!(call(&[AFFINITY_INFO_64, 0x1, 4]), ret(INVALID_PARAMETERS));
}

#[test]
fn migrate_and_migrate_info_type() {
    // MIGRATE_INFO_TYPE 2: no Trusted OS / no migration needed, so MIGRATE is
    // NOT_SUPPORTED.
    assert_eq!(call(&[MIGRATE_INFO_TYPE]), ret(2));
    assert_eq!(call(&[MIGRATE_32, 0x1]), ret(NOT_SUPPORTED));
    assert_eq!(call(&[MIGRATE_64, 0x1]), ret(NOT_SUPPORTED));
}

#[test]
fn system_off_and_resets() {
    assert_eq!(call(&[SYSTEM_OFF]), PsciOutcome::SystemOff);
    assert_eq!(call(&[SYSTEM_RESET]), PsciOutcome::SystemReset);
    // SYSTEM_RESET2 with SYSTEM_WARM_RESET (0) and any cookie.
    assert_eq!(
        call(&[SYSTEM_RESET2_64, 0, 0xdead_beef_0000_0000]),
        PsciOutcome::SystemReset
    );
    assert_eq!(call(&[SYSTEM_RESET2_32, 0, 5]), PsciOutcome::SystemReset);
}

#[test]
fn system_reset2_errors() {
    // A reserved architectural reset type.
    assert_eq!(call(&[SYSTEM_RESET2_64, 1, 0]), ret(INVALID_PARAMETERS));
    // Vendor-specific reset types (bit 31) are not offered.
    assert_eq!(
        call(&[SYSTEM_RESET2_64, 0x8000_0000, 0]),
        ret(NOT_SUPPORTED)
    );
}

#[test]
fn psci_features_lists_what_is_offered() {
    for fid in [
        PSCI_VERSION,
        CPU_OFF,
        CPU_ON_32,
        CPU_ON_64,
        AFFINITY_INFO_32,
        AFFINITY_INFO_64,
        MIGRATE_INFO_TYPE,
        SYSTEM_OFF,
        SYSTEM_RESET,
        SYSTEM_RESET2_32,
        SYSTEM_RESET2_64,
        PSCI_FEATURES,
        SMCCC_VERSION,
    ] {
        assert_eq!(call(&[PSCI_FEATURES, fid]), ret(0), "{fid:#x}");
    }
    // CPU_SUSPEND: extended StateID format (bit 1), no OS-initiated mode (bit 0).
    assert_eq!(call(&[PSCI_FEATURES, CPU_SUSPEND_32]), ret(0b10));
    assert_eq!(call(&[PSCI_FEATURES, CPU_SUSPEND_64]), ret(0b10));
}

#[test]
fn psci_features_not_supported() {
    for fid in [
        MIGRATE_32,
        MIGRATE_64,
        MIGRATE_INFO_UP_CPU_64,
        CPU_FREEZE,
        SYSTEM_SUSPEND_64,
        0x8400_001f,
        SMCCC_ARCH_FEATURES,
        0x8200_0000,
    ] {
        assert_eq!(call(&[PSCI_FEATURES, fid]), ret(NOT_SUPPORTED), "{fid:#x}");
    }
    // SMC64 functions are not offered to an AArch32 caller.
    let mut vm = FakeVm::new();
    vm.aarch32 = true;
    assert_eq!(
        call_on(&mut vm, &[PSCI_FEATURES, CPU_ON_64]),
        ret(NOT_SUPPORTED)
    );
    assert_eq!(call_on(&mut vm, &[PSCI_FEATURES, CPU_ON_32]), ret(0));
}

/// Random SMCCC calls (mostly PSCI and Arm architecture function IDs with plausible
/// arguments, sometimes anything) from VMs of 1 to 8 vCPUs in random power states,
/// with [`crate::fuzzing::psci`]'s invariants: no panic, CPU_ON only of a vCPU that is
/// off, at an entry point in RAM.
#[test]
fn random_calls_never_panic() {
    let mut rng = crate::testing::Rng::new(5);
    let (mut started, mut returned) = (0, 0);
    for _ in 0..50_000 {
        let data = rng.bytes(12 + 64 + 1);
        match crate::fuzzing::psci(&data) {
            PsciOutcome::CpuOn { .. } => started += 1,
            PsciOutcome::Return(_) => returned += 1,
            _ => {}
        }
    }
    // The calls reach CPU_ON's success path and the functions that return a value.
    assert!(
        started > 20 && returned > 10_000,
        "{started} CPU_ON, {returned} returns"
    );
}
