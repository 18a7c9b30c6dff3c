//! One vCPU's state: the general registers the exception vector saves on every
//! exit, and everything else a guest can observe, which lives in the hardware
//! while the vCPU runs and here while it does not.
//!
//! # What is switched, and why (Arm ARM, the registers' own descriptions)
//!
//! A guest at EL1 observes: its general registers, PC and PSTATE (saved by the
//! vector on every exit, [`GuestRegs`]); the EL1 and EL0 system registers it
//! may read or write without trapping ([`El1Regs`]); its timers (CNTV_* and
//! CNTP_*, with CNTKCTL_EL1, [`TimerRegs`]); its virtual CPU interface
//! (ICH_VMCR_EL2 and the active-priority registers, [`GicCpuRegs`]; the list
//! registers are folded into the vGIC's software state when the vCPU leaves,
//! `Vgic::save`); FP/SIMD (V0-V31, FPSR, FPCR, [`FpRegs`]; switched lazily:
//! they stay in the hardware, behind CPTR_EL2.TFP, until another vCPU on the
//! CPU uses FP/SIMD); the self-hosted debug registers it owns
//! ([`DebugRegs`]); with FEAT_RAS, VDISR_EL2, which its DISR_EL1 accesses
//! reach while HCR_EL2.AMO is set ([`VcpuContext::vdisr`]); and, when its VM
//! has a PMU, the PMU registers of its counters (every access traps and is
//! carried out on the hardware's, `sysreg::pmu`).
//!
//! Not switched, because no guest can observe them or they are the VM's, not
//! the vCPU's: the EL2 controls and stage 2 (VTTBR_EL2 carries the VMID, so
//! TLB entries of different VMs never mix and switching VMs needs no TLB
//! flush; two vCPUs of one VM on one CPU share translations by design, and
//! HCR_EL2.FB makes a guest's local TLB maintenance broadcast, so a local
//! invalidation by one reaches the entries the other could hit), CNTVOFF_EL2
//! (per VM), VPIDR_EL2 (per VM), VMPIDR_EL2 (written from the vCPU index).
//! Registers of features the CPU model hides (SVE, SME, pointer
//! authentication, the PMU, SPE, trace, TCR2, ...) trap to EL2 and are
//! UNDEFINED to the guest, so they hold nothing of any guest. ACTLR_EL1 traps
//! (HCR_EL2.TACR). PAR_EL1 is written by the guest's AT instructions and read
//! back by it: switched. SP_EL0/SP_EL1, ELR_EL1 and SPSR_EL1 belong to the
//! guest's exception state: switched.

use crate::vm::exit::GuestGprs;

/// The guest's general-purpose state, saved and restored by the vectors.
/// The layout is fixed: the assembly uses these offsets.
#[repr(C)]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GuestRegs {
    /// x0..x30.
    pub x: [u64; 31],
    /// The guest PC (ELR_EL2 on exit).
    pub pc: u64,
    /// The guest PSTATE (SPSR_EL2 on exit).
    pub pstate: u64,
}

/// Offset of [`GuestRegs::pc`], for the assembly.
pub const GUEST_REGS_PC: usize = core::mem::offset_of!(GuestRegs, pc);
const _: () = assert!(GUEST_REGS_PC == 248);
const _: () = assert!(core::mem::offset_of!(GuestRegs, pstate) == 256);

impl GuestGprs for GuestRegs {
    fn x(&self, n: u8) -> u64 {
        // Register 31 is XZR for the transfers that reach here.
        self.x.get(n as usize).copied().unwrap_or(0)
    }
    fn set_x(&mut self, n: u8, v: u64) {
        if let Some(r) = self.x.get_mut(n as usize) {
            *r = v;
        }
    }
    fn pc(&self) -> u64 {
        self.pc
    }
    fn set_pc(&mut self, v: u64) {
        self.pc = v;
    }
    fn pstate(&self) -> u64 {
        self.pstate
    }
    fn set_pstate(&mut self, v: u64) {
        self.pstate = v;
    }
}

/// The EL1/EL0 system registers of a vCPU that is not on its CPU.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct El1Regs {
    pub sctlr: u64,
    pub ttbr0: u64,
    pub ttbr1: u64,
    pub tcr: u64,
    pub mair: u64,
    pub amair: u64,
    pub vbar: u64,
    pub contextidr: u64,
    pub tpidr_el0: u64,
    pub tpidr_el1: u64,
    pub tpidrro_el0: u64,
    pub esr: u64,
    pub far: u64,
    pub afsr0: u64,
    pub afsr1: u64,
    pub par: u64,
    pub cpacr: u64,
    pub elr: u64,
    pub spsr: u64,
    pub sp_el0: u64,
    pub sp_el1: u64,
    pub cntkctl: u64,
    pub csselr: u64,
    pub mdscr: u64,
}

impl El1Regs {
    /// A PE's EL1 state as a kernel entered at reset finds it: SCTLR_EL1 with
    /// the MMU and caches off and its RES1 bits, everything else zero. (Most of
    /// these reset to UNKNOWN values in the Arm ARM; zero is the value that
    /// tells nothing about whoever ran before.)
    pub fn reset() -> Self {
        El1Regs {
            sctlr: crate::vm::controls::SCTLR_EL1_RESET,
            ..Default::default()
        }
    }
}

/// A vCPU's generic timers while it is off its CPU. CNTVOFF_EL2 is the VM's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimerRegs {
    pub cntv_ctl: u64,
    pub cntv_cval: u64,
    pub cntp_ctl: u64,
    pub cntp_cval: u64,
    /// Whether the physical PPI of each timer was active at the GIC when the
    /// vCPU left (its hardware-linked virtual interrupt was being handled):
    /// restored with the vCPU, so the guest's deactivation finds it active.
    pub vtimer_active: bool,
    pub ptimer_active: bool,
}

/// The virtual CPU interface of a vCPU while it is off its CPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GicCpuRegs {
    pub vmcr: u64,
    pub ap0r: [u64; 4],
    pub ap1r: [u64; 4],
}

/// FP/SIMD state: V0-V31, FPSR, FPCR. The layout is fixed for the assembly.
#[repr(C, align(16))]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FpRegs {
    pub v: [u128; 32],
    pub fpsr: u64,
    pub fpcr: u64,
}

/// Offset of [`FpRegs::fpsr`], for the assembly.
pub const FP_REGS_FPSR: usize = core::mem::offset_of!(FpRegs, fpsr);
const _: () = assert!(FP_REGS_FPSR == 512);

/// A vCPU's SVE state in its native format, at its VM's vector-length cap
/// (`vq` quadwords, VL = 128 * vq bits): Z0-Z31 (VL/8 bytes each), then
/// P0-P15 and FFR (VL/64 bytes each), the layout `STR Zn/Pn, [x, #i, MUL VL]`
/// gives (Linux's `sve_state` layout); FPSR, FPCR and ZCR_EL1 beside it. The
/// low 128 bits of Zn are Vn (little-endian: the first 16 bytes of Zn).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SveRegs {
    /// The cap in quadwords (1..=16); 0 when the VM has no SVE.
    pub vq: usize,
    pub buf: alloc::vec::Vec<u8>,
    /// FPSR, FPCR, ZCR_EL1 (the layout the assembly writes).
    pub sys: [u64; 3],
}

impl SveRegs {
    /// Zeroed state for a VM whose cap is `vq` quadwords (0: no SVE, no buffer).
    pub fn new(vq: usize) -> Self {
        SveRegs {
            vq,
            buf: alloc::vec![0; Self::bytes(vq)],
            sys: [0; 3],
        }
    }

    /// Bytes of Z0-Z31, P0-P15 and FFR at `vq` quadwords.
    pub const fn bytes(vq: usize) -> usize {
        32 * 16 * vq + 17 * 2 * vq
    }

    /// Builds the SVE state from FP/SIMD state: Zn's low 128 bits are Vn, every
    /// other bit of Z, P and FFR zero, ZCR_EL1 as given (Arm ARM: the V
    /// registers are the low 128 bits of the Z registers).
    pub fn load_from_fp(&mut self, fp: &FpRegs, zcr_el1: u64) {
        self.buf.fill(0);
        let zlen = 16 * self.vq;
        for (n, v) in fp.v.iter().enumerate() {
            self.buf[n * zlen..n * zlen + 16].copy_from_slice(&v.to_le_bytes());
        }
        self.sys = [fp.fpsr, fp.fpcr, zcr_el1];
    }

    /// The FP/SIMD view of this state: Vn = the low 128 bits of Zn.
    pub fn to_fp(&self) -> FpRegs {
        let zlen = 16 * self.vq;
        let mut fp = FpRegs {
            fpsr: self.sys[0],
            fpcr: self.sys[1],
            ..Default::default()
        };
        for (n, v) in fp.v.iter_mut().enumerate() {
            let mut b = [0u8; 16];
            b.copy_from_slice(&self.buf[n * zlen..n * zlen + 16]);
            *v = u128::from_le_bytes(b);
        }
        fp
    }

    /// ZCR_EL1 as the guest last wrote it.
    pub fn zcr_el1(&self) -> u64 {
        self.sys[2]
    }
}

/// The self-hosted debug registers a guest owns: breakpoint and watchpoint
/// value/control pairs (as many as the hardware has; 16 at most,
/// ID_AA64DFR0_EL1.BRPs/WRPs). MDSCR_EL1 is in [`El1Regs`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DebugRegs {
    pub bvr: [u64; 16],
    pub bcr: [u64; 16],
    pub wvr: [u64; 16],
    pub wcr: [u64; 16],
}

/// Everything of a vCPU that is in the hardware while it runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VcpuContext {
    pub el1: El1Regs,
    pub timer: TimerRegs,
    pub gic: GicCpuRegs,
    pub fp: FpRegs,
    pub debug: DebugRegs,
    /// VDISR_EL2 (FEAT_RAS): the guest's DISR_EL1 while HCR_EL2.AMO is set,
    /// a virtual SError its ESB deferred. Switched only on a CPU with
    /// FEAT_RAS; zero at reset (no deferred SError).
    pub vdisr: u64,
    /// The guest's PMU registers (a VM with a PMU only; `sysreg::pmu::save`).
    pub pmu: crate::sysreg::pmu::PmuRegs,
}

impl VcpuContext {
    /// A PE at reset: see [`El1Regs::reset`]; timers disabled, virtual CPU
    /// interface at its reset value (`vmcr`), FP/SIMD, debug and PMU registers zero.
    pub fn reset(vmcr: u64) -> Self {
        VcpuContext {
            el1: El1Regs::reset(),
            gic: GicCpuRegs {
                vmcr,
                ..Default::default()
            },
            ..Default::default()
        }
    }
}
