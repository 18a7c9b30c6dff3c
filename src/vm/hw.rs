//! What the run loop needs from the hardware, as a trait: the arch layer
//! implements it with `msr`/`mrs` and GIC register accesses
//! (`crate::arch::aarch64::hw`), host tests with a fake register file
//! (`vm::fake`), so the loop that ties exits, vCPU switches, interrupts and
//! VM lifecycles together runs under `cargo test`.
//!
//! Every method acts on the physical CPU that calls it, except where it names
//! another CPU (`kick`, `deactivate_ppi_on`).

use crate::vgic::ListRegisters;
use crate::vgic::host::Completion;
use crate::vm::controls::El2Controls;
use crate::vm::exit::GuestHw;
use crate::vm::vcpu::{DebugRegs, El1Regs, FpRegs, GicCpuRegs, SveRegs, TimerRegs};

/// The EL2 state of the vCPU being loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct El2State {
    pub vttbr: u64,
    pub vtcr: u64,
    /// The VM's trap controls, written whole (HCR_EL2 from `hcr`).
    pub controls: El2Controls,
    /// HCR_EL2 for this vCPU.
    pub hcr: u64,
    pub cntvoff: u64,
    pub vpidr: u64,
    pub vmpidr: u64,
    /// CTR_EL0 as the VM sees it: the vector's fast path answers trapped
    /// CTR_EL0 reads (HCR_EL2.TID2) from it.
    pub guest_ctr_el0: u64,
}

pub trait Hw: GuestHw + ListRegisters + crate::sysreg::pmu::PmuAccess {
    /// This physical CPU's logical index.
    fn this_cpu(&self) -> usize;

    // ---- the exit ----

    /// ESR_EL2, FAR_EL2, HPFAR_EL2 of the exception just taken from the guest.
    fn syndrome(&self) -> (u64, u64, u64);
    /// ESR_EL2 alone: what the exit path reads first (a hypervisor call needs
    /// nothing else).
    fn esr(&self) -> u64 {
        self.syndrome().0
    }

    // ---- EL2 controls ----

    /// Loads a vCPU's EL2 state (stage 2, traps, identity, counter offset).
    fn load_el2(&mut self, s: &El2State);
    /// Rewrites HCR_EL2 alone (TVM, VSE, TWI change while a vCPU runs).
    fn write_hcr_el2(&mut self, hcr: u64);
    fn read_hcr_el2(&self) -> u64;
    /// VSESR_EL2 (FEAT_RAS): the syndrome of the virtual SError HCR_EL2.VSE
    /// raises.
    fn write_vsesr_el2(&mut self, value: u64);
    /// Whether this CPU has FEAT_RAS, and with it VDISR_EL2 and VSESR_EL2
    /// (Arm ARM, ID_AA64PFR0_EL1.RAS): per CPU, since the registers exist
    /// only where the feature does.
    fn has_ras(&self) -> bool;
    /// VDISR_EL2 (FEAT_RAS only): what the guest's DISR_EL1 reads and writes
    /// while HCR_EL2.AMO is set, and where its ESB records a deferred virtual
    /// SError.
    fn read_vdisr_el2(&self) -> u64;
    fn write_vdisr_el2(&mut self, value: u64);
    /// Invalidates the stage-1 and stage-2 TLB entries of the loaded VMID
    /// (inner shareable).
    fn tlbi_vmid(&mut self);

    // ---- guest EL1 state ----

    fn save_el1(&mut self, r: &mut El1Regs);
    fn restore_el1(&mut self, r: &El1Regs);
    /// A trapped write to a VM control register (HCR_EL2.TVM) still takes
    /// effect in the real register. False if `reg` is not one.
    fn write_vm_control(&mut self, reg: crate::sysreg::SysReg, value: u64) -> bool;
    /// Rewrites CPTR_EL2 alone (the FP/SIMD trap a lazy switch sets and drops).
    fn write_cptr_el2(&mut self, value: u64);
    fn save_fp(&mut self, f: &mut FpRegs);
    fn restore_fp(&mut self, f: &FpRegs);
    /// ZCR_EL2 (SVE): LEN (3:0) caps the vector length of EL2 and of the
    /// guest (Arm ARM, ZCR_EL2).
    fn write_zcr_el2(&mut self, value: u64);
    /// Saves Z0-Z31, P0-P15, FFR at EL2's vector length, which the caller has
    /// set to `s.vq` quadwords (ZCR_EL2.LEN = vq - 1), with CPTR_EL2.TFP and
    /// TZ clear; and FPSR, FPCR, ZCR_EL1.
    fn save_sve(&mut self, s: &mut SveRegs);
    /// The reverse of [`Hw::save_sve`], under the same conditions.
    fn restore_sve(&mut self, s: &SveRegs);
    fn save_debug(&mut self, d: &mut DebugRegs);
    fn restore_debug(&mut self, d: &DebugRegs);

    // ---- timers ----

    /// CNTPCT_EL0.
    fn counter(&self) -> u64;
    /// CNTFRQ_EL0.
    fn counter_frequency(&self) -> u64;
    /// Saves the guest's timers and turns them off, so nothing of them fires
    /// while the vCPU is away; also takes their physical PPIs' active state.
    fn save_timers(&mut self, t: &mut TimerRegs);
    fn restore_timers(&mut self, t: &TimerRegs);
    fn read_cntv_ctl(&self) -> u64;
    fn read_cntp_ctl(&self) -> u64;
    /// Programs the EL2 physical timer (CNTHP) to fire at counter value
    /// `deadline`, or turns it off.
    fn set_hyp_timer(&mut self, deadline: Option<u64>);

    // ---- the GIC ----

    fn save_gic_cpu(&mut self, g: &mut GicCpuRegs);
    fn restore_gic_cpu(&mut self, g: &GicCpuRegs);
    fn read_ich_vmcr(&self) -> u64;
    /// Acknowledges the highest-priority pending physical interrupt
    /// (ICC_IAR1_EL1); 1023 when none.
    fn acknowledge(&mut self) -> u32;
    fn complete(&mut self, intid: u32, how: Completion);
    /// Makes CPU `cpu` take an exception so it looks at its vCPUs again.
    fn kick(&mut self, cpu: usize);
    fn deactivate_ppi_on(&mut self, cpu: usize, intid: u32);
    fn deactivate_spi(&mut self, intid: u32);
    /// Whether this CPU's PPI `intid` is active at the physical GIC; clears it.
    fn take_ppi_active(&mut self, intid: u32) -> bool;
    /// Makes this CPU's PPI `intid` active again (a vCPU that left while its
    /// hardware-linked interrupt was being handled comes back).
    fn set_ppi_active(&mut self, intid: u32);
    fn route_spi(&mut self, intid: u32, cpu: usize);

    // ---- memory and the CPU ----

    /// Cleans and invalidates `[pa, pa + len)` to the point of coherency.
    fn clean_invalidate(&mut self, pa: u64, len: u64);
    /// Writes a stage-2 descriptor at physical address `entry_pa` that was
    /// invalid, and makes the write visible to the table walkers (`DSB ISHST`;
    /// an invalid descriptor is never in a TLB, so no invalidation).
    fn write_stage2_entry(&mut self, entry_pa: u64, desc: u64);
    /// Waits for an interrupt (with interrupts masked at EL2: a pending one
    /// ends the wait and is then acknowledged by the caller).
    fn wait_for_interrupt(&mut self);
    /// Asks the firmware to power the machine off (returns only if it fails).
    fn system_off(&mut self);
}
