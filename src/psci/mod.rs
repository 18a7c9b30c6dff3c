//! The guest-facing SMCCC and PSCI interface, as a pure function.
//!
//! A guest's HVC (or trapped SMC) arrives here as its x0..x7. [`handle`] decodes the
//! SMC Calling Convention function identifier (DEN0028), answers the Arm Architecture
//! calls and the PSCI 1.1 functions (DEN0022), and says what happens next as a
//! [`PsciOutcome`]: registers to return, or a power action for the run loop. What the
//! decision needs to know about the VM comes through the small [`PsciVm`] trait.
//!
//! PSCI call decoding (function IDs, argument fields and their must-be-zero bits,
//! error codes) comes from the `arm-psci` crate, written by Arm for exactly this side
//! of the interface; the policy — which functions exist, what a VM's CPU may do —
//! is here. Section numbers cite DEN0022F.b (PSCI 1.3), whose layout the crate also
//! follows; the functions used here are unchanged since PSCI 1.1.

pub mod smccc;

use arm_psci::{
    AffinityInfo, ArchitecturalResetType, EntryPoint, ErrorCode, FeatureFlagsCpuSuspend, Function,
    FunctionId as PsciFunctionId, MigrateInfoType, PowerState, PsciFeature, ResetType,
};
use smccc::{CallType, Convention, FunctionId, Owner};

/// The PSCI version offered to guests: 1.1 (DEN0022 §5.1.1 PSCI_VERSION).
pub const PSCI_VERSION_1_1: u32 = 0x0001_0001;
/// PSCI_VERSION's function identifier (DEN0022 Table 6).
const PSCI_VERSION_ID: u32 = 0x8400_0000;
/// MIGRATE_INFO_TYPE's function identifier (DEN0022 Table 6).
const MIGRATE_INFO_TYPE_ID: u32 = 0x8400_0006;

/// What a vCPU is doing, as PSCI's AFFINITY_INFO reports it (DEN0022 §5.1.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcpuPower {
    On,
    Off,
    /// CPU_ON accepted, the vCPU not yet running.
    OnPending,
}

/// What PSCI needs to know about the VM whose vCPU made the call.
///
/// `handle` only reads through this trait; it takes `&mut` so that the caller holds
/// the VM exclusively from the state it reads until it has applied the outcome (two
/// racing CPU_ONs for one target must not both see it Off).
pub trait PsciVm {
    /// The number of vCPUs in the VM.
    fn vcpu_count(&self) -> usize;
    /// The vCPU whose virtual MPIDR_EL1 affinity equals `mpidr`, given in PSCI's
    /// target_cpu layout: Aff3 in [39:32], Aff2..Aff0 in [23:0], all else zero.
    fn vcpu_by_mpidr(&self, mpidr: u64) -> Option<usize>;
    /// The power state of vCPU `vcpu` (an index below `vcpu_count`).
    fn vcpu_power(&self, vcpu: usize) -> VcpuPower;
    /// Whether `ipa` lies in the VM's RAM (an entry point must).
    fn is_guest_ram(&self, ipa: u64) -> bool;
    /// Whether the calling vCPU is in AArch32 state. SMC64/HVC64 calls exist only for
    /// AArch64 callers (DEN0028 §2.5; DEN0022 §5.2.1).
    fn caller_is_aarch32(&self) -> bool;
}

/// What the run loop does with a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PsciOutcome {
    /// Write these values to x0..x3 and resume the caller. The functions here return
    /// one value; x1..x3 are zeroed rather than left holding arguments (as KVM does).
    Return([u64; 4]),
    /// Start vCPU `target` at `entry` with `context_id` in its x0 (DEN0022 §5.1.4
    /// CPU_ON). The caller gets SUCCESS (x0 = 0); the run loop marks the target
    /// ON_PENDING until it runs.
    CpuOn {
        target: usize,
        entry: u64,
        context_id: u64,
    },
    /// The calling vCPU powers itself off; CPU_OFF does not return on success.
    CpuOff,
    /// CPU_SUSPEND (DEN0022 §5.1.2). The run loop may treat every state as standby:
    /// idle the vCPU until an interrupt is pending (as for WFI), then return SUCCESS
    /// (x0 = 0). That is what KVM does; a power-down request that returns SUCCESS
    /// reads to the guest as a state that was entered more shallowly than asked, or
    /// left at once by a wake-up event. For a real power-down the run loop would
    /// instead restart the vCPU at `entry` with `context_id` in x0 (both checked here).
    CpuSuspend {
        power_down: bool,
        entry: u64,
        context_id: u64,
    },
    /// SYSTEM_OFF: the whole VM stops.
    SystemOff,
    /// SYSTEM_RESET, or SYSTEM_RESET2 with SYSTEM_WARM_RESET: the whole VM resets.
    SystemReset,
}

/// The SMCCC answer to an unknown function identifier: NOT_SUPPORTED (-1) in x0
/// (DEN0028, "Unknown Function Identifier"; PSCI's NOT_SUPPORTED has the same value).
fn not_supported() -> PsciOutcome {
    error(ErrorCode::NotSupported)
}

/// A PSCI error code, sign-extended to 64 bits (DEN0022 §5.2.2, Table 5).
fn error(code: ErrorCode) -> PsciOutcome {
    PsciOutcome::Return([u64::from(code), 0, 0, 0])
}

fn value(v: u64) -> PsciOutcome {
    PsciOutcome::Return([v, 0, 0, 0])
}

fn success() -> PsciOutcome {
    value(0)
}

/// Handles one SMCCC call from the guest; `call` is its x0..x7.
pub fn handle(call: &[u64; 8], vm: &mut impl PsciVm) -> PsciOutcome {
    let id = FunctionId::decode(call[0]);
    // DEN0028 §2.5: a malformed identifier and any Yielding Call (none are offered) are
    // unknown functions.
    if id.call_type == CallType::Yielding || id.mbz_violated {
        return not_supported();
    }
    // DEN0028 §2.5: SMC64/HVC64 is the AArch64 convention; an AArch32 caller cannot
    // use it (KVM rejects these the same way).
    if id.convention == Convention::Smc64 && vm.caller_is_aarch32() {
        return not_supported();
    }
    let fid = FunctionId::without_hint(call[0]);
    match id.owner {
        Owner::Arch => arch_call(fid, call),
        Owner::StandardSecure => psci_call(fid, call, vm),
        _ => not_supported(),
    }
}

/// DEN0028 §7, Arm Architecture Calls.
fn arch_call(fid: u32, call: &[u64; 8]) -> PsciOutcome {
    match fid {
        smccc::SMCCC_VERSION => value(smccc::SMCCC_VERSION_1_1.into()),
        smccc::SMCCC_ARCH_FEATURES => {
            // Only the two discovery calls themselves are implemented. In particular
            // SMCCC_ARCH_WORKAROUND_1/2/3 answer NOT_SUPPORTED: this hypervisor does
            // not forward Spectre-class firmware mitigations.
            match call[1] as u32 {
                smccc::SMCCC_VERSION | smccc::SMCCC_ARCH_FEATURES => success(),
                _ => not_supported(),
            }
        }
        _ => not_supported(),
    }
}

/// Whether this implementation offers PSCI function `fid` (the answer of
/// PSCI_FEATURES, DEN0022 §5.1.15, and the gate in front of every call).
fn implemented(fid: PsciFunctionId) -> bool {
    use PsciFunctionId as F;
    matches!(
        fid,
        F::PsciVersion
            | F::CpuSuspend32
            | F::CpuSuspend64
            | F::CpuOff
            | F::CpuOn32
            | F::CpuOn64
            | F::AffinityInfo32
            | F::AffinityInfo64
            | F::MigrateInfoType
            | F::SystemOff
            | F::SystemReset
            | F::SystemReset232
            | F::SystemReset264
            | F::PsciFeatures
    )
}

/// Whether `fid` is an SMC64 identifier (bit 30).
fn is_smc64(fid: PsciFunctionId) -> bool {
    FunctionId::decode(u32::from(fid).into()).convention == Convention::Smc64
}

/// DEN0022 §5: the PSCI functions.
fn psci_call(fid: u32, call: &[u64; 8], vm: &mut impl PsciVm) -> PsciOutcome {
    // The calls that take no argument are answered before the decoder, which
    // costs more than the answer: PSCI_VERSION is the one a guest's PSCI probe
    // makes (DEN0022 §5.1.1; Table 6 gives the identifiers).
    match fid {
        PSCI_VERSION_ID => return value(PSCI_VERSION_1_1.into()),
        MIGRATE_INFO_TYPE_ID => {
            return value(u32::from(MigrateInfoType::MigrationNotRequired).into());
        }
        _ => {}
    }
    // Unknown numbers and the optional functions not offered (MIGRATE — there is no
    // Trusted OS to migrate — MIGRATE_INFO_UP_CPU, CPU_FREEZE, SYSTEM_SUSPEND,
    // MEM_PROTECT, ...) are NOT_SUPPORTED before their arguments are looked at.
    match PsciFunctionId::try_from(fid) {
        Ok(f) if implemented(f) => {}
        _ => return not_supported(),
    }
    // DEN0022 §5.2.1: SMC32 functions take W1..W3; the decoder narrows them.
    let regs = [u64::from(fid), call[1], call[2], call[3]];
    let function = match Function::try_from(&regs) {
        Ok(function) => function,
        // Must-be-zero bits set in an MPIDR or power_state, an affinity level or reset
        // type out of range: INVALID_PARAMETERS.
        Err(e) => return error(e.into()),
    };
    match function {
        Function::Version => value(PSCI_VERSION_1_1.into()),
        Function::CpuSuspend { state, entry } => cpu_suspend(state, entry, vm),
        Function::CpuOff => PsciOutcome::CpuOff,
        Function::CpuOn { target_cpu, entry } => cpu_on(target_cpu.into(), entry, vm),
        Function::AffinityInfo {
            mpidr,
            lowest_affinity_level,
        } => affinity_info(mpidr.into(), lowest_affinity_level, vm),
        // DEN0022 §5.1.7: 2 = Trusted OS not present or does not require migration.
        Function::MigrateInfoType => value(u32::from(MigrateInfoType::MigrationNotRequired).into()),
        Function::SystemOff => PsciOutcome::SystemOff,
        Function::SystemReset => PsciOutcome::SystemReset,
        Function::SystemReset2 { reset_type, .. } => match reset_type {
            // DEN0022 §5.1.12: the one architectural type; for a VM a warm reset is a
            // reset (the cookie carries nothing a VM acts on).
            ResetType::Architectural(ArchitecturalResetType::SystemWarmReset) => {
                PsciOutcome::SystemReset
            }
            // No vendor-specific reset types are offered.
            ResetType::VendorSpecific(_) => not_supported(),
        },
        Function::Features { psci_func_id } => features(psci_func_id, vm),
        // `implemented` let nothing else through.
        _ => not_supported(),
    }
}

/// DEN0022 §5.1.15 PSCI_FEATURES.
fn features(feature: PsciFeature, vm: &impl PsciVm) -> PsciOutcome {
    match feature {
        // SMCCC_VERSION is implemented (DEN0022 §5.1.15 lets PSCI_FEATURES report it).
        PsciFeature::SmcccVersion => success(),
        PsciFeature::PsciFunction(f) if !implemented(f) => not_supported(),
        PsciFeature::PsciFunction(f) if is_smc64(f) && vm.caller_is_aarch32() => not_supported(),
        PsciFeature::PsciFunction(PsciFunctionId::CpuSuspend32 | PsciFunctionId::CpuSuspend64) => {
            // DEN0022 Table 11: bit 1 = power_state uses the extended StateID format
            // (the format `arm-psci` decodes); bit 0 = OS-initiated mode, not offered.
            value(u32::from(FeatureFlagsCpuSuspend::EXTENDED_POWER_STATE).into())
        }
        PsciFeature::PsciFunction(_) => success(),
    }
}

/// Checks an entry point: it must be in guest RAM and, for an AArch64 caller,
/// 4-byte aligned (an AArch32 entry's bit 0 selects T32 and is not an address bit).
fn entry_point_valid(entry: u64, vm: &impl PsciVm) -> bool {
    if vm.caller_is_aarch32() {
        vm.is_guest_ram(entry & !1)
    } else {
        entry.is_multiple_of(4) && vm.is_guest_ram(entry)
    }
}

/// DEN0022 §5.1.2 CPU_SUSPEND, power_state in the extended StateID format.
fn cpu_suspend(state: PowerState, entry: EntryPoint, vm: &impl PsciVm) -> PsciOutcome {
    let power_down = matches!(state, PowerState::PowerDown(_));
    // The entry point is only used by power-down states; for standby it is ignored.
    if power_down && !entry_point_valid(entry.entry_point_address(), vm) {
        return error(ErrorCode::InvalidAddress);
    }
    PsciOutcome::CpuSuspend {
        power_down,
        entry: entry.entry_point_address(),
        context_id: entry.context_id(),
    }
}

/// Looks up the vCPU with affinity `mpidr`; a non-existent one is INVALID_PARAMETERS,
/// an index outside the VM (a broken `PsciVm`) INTERNAL_FAILURE.
fn target_vcpu(mpidr: u64, vm: &impl PsciVm) -> Result<usize, ErrorCode> {
    let target = vm
        .vcpu_by_mpidr(mpidr)
        .ok_or(ErrorCode::InvalidParameters)?;
    if target >= vm.vcpu_count() {
        return Err(ErrorCode::InternalFailure);
    }
    Ok(target)
}

/// DEN0022 §5.1.4 CPU_ON. Checked in TF-A's order: target, entry point, state.
fn cpu_on(mpidr: u64, entry: EntryPoint, vm: &impl PsciVm) -> PsciOutcome {
    let target = match target_vcpu(mpidr, vm) {
        Ok(target) => target,
        Err(code) => return error(code),
    };
    if !entry_point_valid(entry.entry_point_address(), vm) {
        return error(ErrorCode::InvalidAddress);
    }
    match vm.vcpu_power(target) {
        VcpuPower::On => error(ErrorCode::AlreadyOn),
        VcpuPower::OnPending => error(ErrorCode::OnPending),
        VcpuPower::Off => PsciOutcome::CpuOn {
            target,
            entry: entry.entry_point_address(),
            context_id: entry.context_id(),
        },
    }
}

/// DEN0022 §5.1.5 AFFINITY_INFO. Since PSCI 1.0 only lowest_affinity_level 0 must be
/// supported; higher levels (clusters) are INVALID_PARAMETERS here.
fn affinity_info(mpidr: u64, lowest_affinity_level: u32, vm: &impl PsciVm) -> PsciOutcome {
    if lowest_affinity_level != 0 {
        return error(ErrorCode::InvalidParameters);
    }
    let target = match target_vcpu(mpidr, vm) {
        Ok(target) => target,
        Err(code) => return error(code),
    };
    let info = match vm.vcpu_power(target) {
        VcpuPower::On => AffinityInfo::On,
        VcpuPower::Off => AffinityInfo::Off,
        VcpuPower::OnPending => AffinityInfo::OnPending,
    };
    value(u32::from(info).into())
}

#[cfg(test)]
mod tests;
