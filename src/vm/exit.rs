//! Handling one guest exit: a function from (vCPU state, exit) to (new state,
//! what the run loop does next). What the exit reaches — system registers,
//! devices, the guest's EL1 exception registers — goes through [`ExitEnv`],
//! which the run loop implements over the VM and the hardware and host tests
//! fake.

use crate::psci::{self, PsciOutcome, PsciVm};
use crate::trap::{DataAbort, Exit, FaultStatus, SysRegAccess};

use super::inject::{self, GuestEl1, PStateFeatures, SyncException};

/// The guest's general registers and PC/PSTATE, as the world switch saves them.
pub trait GuestGprs {
    fn x(&self, n: u8) -> u64;
    fn set_x(&mut self, n: u8, v: u64);
    fn pc(&self) -> u64;
    fn set_pc(&mut self, v: u64);
    fn pstate(&self) -> u64;
    fn set_pstate(&mut self, v: u64);
}

/// The guest's EL1 system registers that exit handling touches. They are live in
/// the hardware while the vCPU owns its physical CPU.
pub trait GuestHw {
    fn vbar_el1(&self) -> u64;
    fn sctlr_el1(&self) -> u64;
    /// Delivers an exception: ESR_EL1, FAR_EL1 (if given), ELR_EL1, SPSR_EL1.
    fn write_exception_regs(&mut self, esr: u64, far: Option<u64>, elr: u64, spsr: u64);
}

/// The VM and hardware side of an exit: trapped system registers, emulated
/// devices, and the guest's EL1 registers an injected exception writes.
pub trait ExitEnv: GuestHw {
    /// A trapped system-register access; `value` is Rt for a write.
    fn sysreg(&mut self, acc: SysRegAccess, value: u64) -> SysRegResult;
    /// An emulated load; `None` when no device claims the address.
    fn mmio_read(&mut self, ipa: u64, size: u8) -> Option<u64>;
    /// An emulated store; `false` when no device claims the address.
    fn mmio_write(&mut self, ipa: u64, size: u8, value: u64) -> bool;
    /// A stage-2 Translation fault at `ipa`: true if it was RAM not mapped
    /// yet and now is (the access is retried), false otherwise.
    fn populate(&mut self, ipa: u64) -> bool;
    /// Counts one guest fault against the VM's log budget ([`FaultLog`]);
    /// says whether to log it and how many came before.
    fn note_fault(&mut self) -> Option<u64>;
}

/// What the run loop does after an exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Re-enter the guest.
    Resume,
    /// The guest waits for an interrupt (WFI): idle until one may be pending.
    Idle,
    /// The guest waits for an event (a trapped WFE, HCR_EL2.TWE, set only while
    /// another vCPU is ready on its CPU): it is likely spinning on a lock whose
    /// holder is off the CPU, so its turn ends and the others run.
    Yield,
    /// The VM asked to be powered off (PSCI SYSTEM_OFF).
    SystemOff,
    /// The VM asked to be reset (PSCI SYSTEM_RESET / RESET2).
    SystemReset,
    /// This vCPU turned itself off (PSCI CPU_OFF).
    CpuOff,
    /// Start vCPU `target` at `entry` with `context_id` in x0.
    CpuOn {
        target: usize,
        entry: u64,
        context_id: u64,
    },
}

/// What a system-register trap resolves to (filled in by the sysreg core).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SysRegResult {
    /// An MRS: put the value in Rt.
    Read(u64),
    /// An MSR or system instruction done.
    Done,
    /// Not an access the guest may make: UNDEFINED.
    Undefined,
}

/// The per-VM budget for fault log lines (rate-limited: see [`super::ratelimit`]).
pub use super::ratelimit::FaultLog;

/// Everything one exit may need, borrowed from the VM and vCPU.
pub struct ExitContext<'a, G: GuestGprs, E: ExitEnv, P: PsciVm> {
    pub gprs: &'a mut G,
    pub env: &'a mut E,
    pub psci: &'a mut P,
    pub features: &'a PStateFeatures,
    /// The length of the trapped instruction (from ESR_EL2.IL).
    pub instr_len: u64,
}

impl<G: GuestGprs, E: ExitEnv, P: PsciVm> ExitContext<'_, G, E, P> {
    /// Handles `exit` and says what happens next.
    pub fn handle(&mut self, exit: Exit) -> Next {
        match exit {
            Exit::Hvc { .. } => self.smccc(),
            Exit::Smc { .. } => {
                // A trapped SMC returns to the SMC itself (its preferred return
                // address); step over it so the call completes once.
                self.skip();
                self.smccc()
            }
            Exit::DataAbort(da) => self.data_abort(&da),
            Exit::InstAbort(ia)
                if ia.ipa_valid
                    && matches!(ia.ifsc, FaultStatus::Translation { .. })
                    && self.env.populate(ia.ipa) =>
            {
                Next::Resume
            }
            Exit::InstAbort(ia) => {
                if let Some(n) = self.env.note_fault() {
                    log::warn!(
                        "guest instruction fetch from unmapped IPA {:#x} (VA {:#x}): injecting an external abort (fault #{n})",
                        ia.ipa,
                        ia.far
                    );
                }
                self.inject(SyncException::InstructionAbort { far: ia.far });
                Next::Resume
            }
            Exit::SysReg(acc) => self.sysreg(acc),
            Exit::Wfx { kind, .. } => {
                self.skip();
                match kind {
                    crate::trap::WfxKind::Wfi | crate::trap::WfxKind::Wfit => Next::Idle,
                    // Arm ARM D1.6.1 (Wait for Event): a WFE may complete at
                    // any time for an IMPLEMENTATION DEFINED reason, so giving
                    // the CPU away and resuming after the instruction is a WFE.
                    _ => Next::Yield,
                }
            }
            // FP/SIMD and SVE first-use traps are taken by the run loop
            // (`Pcpu::take_fp`) before they reach here; one that does (the owner
            // trapped), SVE in a VM without it and SME, not offered to guests yet
            // (hidden in the ID registers), are UNDEFINED to them.
            Exit::FpAccess | Exit::Sve | Exit::Sme { .. } => {
                self.inject(SyncException::Undefined);
                Next::Resume
            }
            Exit::Debug(_) | Exit::IllegalState | Exit::Unknown { .. } => {
                if let Some(n) = self.env.note_fault() {
                    log::debug!("guest exit {exit:?}: injecting UNDEFINED (fault #{n})");
                }
                self.inject(SyncException::Undefined);
                Next::Resume
            }
        }
    }

    /// A trapped MSR/MRS or system instruction (ESR_EL2.EC 0x18), answered by
    /// the system-register core. The run loop calls this directly for that
    /// class, without the rest of the decoder.
    pub fn sysreg(&mut self, acc: SysRegAccess) -> Next {
        let value = if acc.write { self.gprs.x(acc.rt) } else { 0 };
        match self.env.sysreg(acc, value) {
            SysRegResult::Read(v) => {
                self.gprs.set_x(acc.rt, v);
                self.skip();
            }
            SysRegResult::Done => self.skip(),
            SysRegResult::Undefined => self.inject(SyncException::Undefined),
        }
        Next::Resume
    }

    /// Steps the guest PC over the trapped instruction.
    fn skip(&mut self) {
        self.gprs
            .set_pc(self.gprs.pc().wrapping_add(self.instr_len));
    }

    /// An HVC (or a stepped-over SMC): an SMCCC call, answered by PSCI or the
    /// Arm architecture calls. The run loop calls this directly for an HVC, the
    /// hottest exit, without decoding the rest of the syndrome.
    pub fn smccc(&mut self) -> Next {
        let mut args = [0u64; 8];
        for (i, a) in args.iter_mut().enumerate() {
            *a = self.gprs.x(i as u8);
        }
        match psci::handle(&args, self.psci) {
            PsciOutcome::Return(r) => {
                for (i, v) in r.iter().enumerate() {
                    self.gprs.set_x(i as u8, *v);
                }
                Next::Resume
            }
            PsciOutcome::CpuOn {
                target,
                entry,
                context_id,
            } => {
                self.gprs.set_x(0, 0); // PSCI SUCCESS to the caller
                Next::CpuOn {
                    target,
                    entry,
                    context_id,
                }
            }
            PsciOutcome::CpuOff => Next::CpuOff,
            PsciOutcome::CpuSuspend { .. } => {
                // Every suspend state is treated as standby (as KVM does): idle
                // until an interrupt may be pending, then return SUCCESS.
                self.gprs.set_x(0, 0);
                Next::Idle
            }
            PsciOutcome::SystemOff => Next::SystemOff,
            PsciOutcome::SystemReset => Next::SystemReset,
        }
    }

    /// A data abort from the guest (ESR_EL2.EC 0x24): RAM mapped on first
    /// touch, an emulated device access, or an abort for the guest. The run
    /// loop calls this directly for that class.
    pub fn data_abort(&mut self, da: &DataAbort) -> Next {
        // RAM is mapped on first touch: retry the access once it is.
        if da.ipa_valid
            && matches!(da.dfsc, FaultStatus::Translation { .. })
            && self.env.populate(da.ipa)
        {
            return Next::Resume;
        }
        let emulated = da.isv
            && da.ipa_valid
            && matches!(da.dfsc, FaultStatus::Translation { .. })
            && if da.wnr {
                let v = if da.srt == 31 { 0 } else { self.gprs.x(da.srt) };
                self.env
                    .mmio_write(da.ipa, da.sas, v & crate::devices::size_mask(da.sas))
            } else {
                match self.env.mmio_read(da.ipa, da.sas) {
                    Some(v) => {
                        let v = extend_load(v, da.sas, da.sse, da.sf);
                        if da.srt != 31 {
                            self.gprs.set_x(da.srt, v);
                        }
                        true
                    }
                    None => false,
                }
            };
        if emulated {
            self.skip();
        } else {
            // No device claims the address (or the access cannot be emulated,
            // ISV = 0): the guest gets a synchronous external abort, as a bus with
            // nothing at that address would give it.
            if let Some(n) = self.env.note_fault() {
                log::warn!(
                    "guest {} at IPA {:#x} (VA {:#x}) claimed by no device{}: injecting an external abort (fault #{n})",
                    if da.wnr { "write" } else { "read" },
                    da.ipa,
                    da.far,
                    if da.isv {
                        ""
                    } else {
                        " or not emulable (ISV=0)"
                    }
                );
            }
            self.inject(SyncException::DataAbort {
                far: da.far,
                write: da.wnr,
            });
        }
        Next::Resume
    }

    fn inject(&mut self, e: SyncException) {
        let g = GuestEl1 {
            pc: self.gprs.pc(),
            pstate: self.gprs.pstate(),
            vbar_el1: self.env.vbar_el1(),
            sctlr_el1: self.env.sctlr_el1(),
        };
        let i = inject::inject(e, &g, self.features);
        self.env
            .write_exception_regs(i.esr_el1, i.far_el1, i.elr_el1, i.spsr_el1);
        self.gprs.set_pc(i.pc);
        self.gprs.set_pstate(i.pstate);
    }
}

/// The value a load puts in its register: sign-extended when ISS.SSE says so, to
/// 64 bits for Xt and to 32 bits (upper half zero) for Wt (Arm ARM, ESR_EL2, ISS
/// encoding for a Data Abort: SSE, SF).
pub fn extend_load(v: u64, size: u8, sse: bool, sf: bool) -> u64 {
    let bits = size as u32 * 8;
    let v = if sse && bits < 64 {
        (((v << (64 - bits)) as i64) >> (64 - bits)) as u64
    } else {
        v
    };
    if sf { v } else { v & 0xffff_ffff }
}

#[cfg(test)]
mod tests;
