//! One physical CPU: the vCPUs it runs, which one is loaded, and the loop
//! that handles an exit and chooses what runs next.
//!
//! # How an exit travels
//! The exception vector saves the guest's general registers into the loaded
//! vCPU's [`GuestRegs`] and calls [`Pcpu::on_exit`] on this CPU's stack. That
//! decodes ESR_EL2 into a [`trap::Exit`], hands it to the exit handler
//! ([`ExitContext`], with [`Env`] reaching the VM and the hardware), and then
//! [`Pcpu::next`] decides what runs: almost always the same vCPU, which costs
//! two relaxed loads (is the VM stopping, are its list registers stale) before
//! the vector restores its registers and `eret`s. Nothing of the vCPU's
//! EL1, timer, GIC or FP state is touched on that path: it stays in the
//! hardware until another vCPU needs the CPU.
//!
//! # Scheduling
//! Each vCPU is pinned to one physical CPU (the config's `cpus`). A CPU with
//! one vCPU runs it for the VM's whole life with no scheduler tick and lets
//! it execute WFI natively (HCR_EL2.TWI clear, as Xen's `vwfi=native`). A CPU
//! with several keeps a run state per vCPU ([`Run`]): the highest priority
//! ready vCPU runs; vCPUs of equal priority take turns of their VM's
//! timeslice, ended by the EL2 timer (CNTHP, which no guest can mask); WFI
//! and WFE trap while another vCPU is ready (a WFE yields the turn); WFI
//! blocks the vCPU until something is
//! pending for it — an interrupt in the vGIC, its own timer's deadline (kept
//! by the EL2 timer while the vCPU is away), a kick. A CPU with nothing to
//! run sleeps in WFI at EL2.
//!
//! Cross-CPU events — an SGI or SPI for a vCPU, a CPU_ON, a VM stop — reach
//! a CPU as a kick (a physical SGI) that makes it look at its vCPUs again
//! (`rescan`).

use alloc::vec::Vec;

use log::{debug, warn};

use crate::devices::console;
use crate::sysreg::pmu::{self, VcpuPmu};
use crate::sysreg::{self, HwAction, Outcome, VcpuSysRegs};
use crate::timer;
use crate::trap::{self, SysRegAccess};
use crate::vgic::host::{self, Completion, PhysIrq};
use crate::vgic::sgi::SgiRegister;
use crate::vgic::{self, Vgic};
use crate::vm::controls;
use crate::vm::exit::{ExitContext, ExitEnv, GuestHw, Next, SysRegResult};
use crate::vm::guest_fdt;
use crate::vm::hw::Hw;
use crate::vm::machine::{PowerOn, PsciView, Stop, Vm};
use crate::vm::vcpu::{GuestRegs, SveRegs, VcpuContext};

/// Why the guest stopped running (which vector took the exception).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCause {
    /// A synchronous exception: read ESR_EL2/FAR_EL2/HPFAR_EL2.
    Sync,
    /// A physical IRQ arrived while the guest ran.
    Irq,
    /// A physical FIQ arrived while the guest ran.
    Fiq,
    /// An SError arrived while the guest ran.
    SError,
}

impl ExitCause {
    /// The vector's code for the cause (the assembly passes it).
    pub fn from_code(code: u64) -> Self {
        match code {
            0 => ExitCause::Sync,
            1 => ExitCause::Irq,
            2 => ExitCause::Fiq,
            _ => ExitCause::SError,
        }
    }
}

/// What a vCPU is doing, as its CPU sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Run {
    /// Powered off (or not yet started): waits for CPU_ON or its VM's start.
    Off,
    /// Runs, or would if the CPU were free.
    Ready,
    /// In WFI (or PSCI CPU_SUSPEND): runs again when something is pending.
    Waiting,
}

/// HCR_EL2.TWI (bit 13): WFI traps.
const HCR_TWI: u64 = 1 << 13;
/// HCR_EL2.TWE (bit 14): WFE traps.
const HCR_TWE: u64 = 1 << 14;
/// HCR_EL2.TVM (bit 26): writes to the VM control registers trap.
const HCR_TVM: u64 = 1 << 26;
/// How much of a VM's mapped RAM one step of a set/way flush cleans and
/// invalidates before the CPU's interrupts are looked at: one 2 MiB chunk,
/// 32 Ki cache lines of 64 bytes.
const FLUSH_STEP: u64 = 2 << 20;
/// HCR_EL2.VSE (bit 8): a virtual SError is pending.
const HCR_VSE: u64 = 1 << 8;
/// CPTR_EL2.TFP (bit 10, E2H = 0): FP/SIMD accesses from EL0/EL1 trap to EL2
/// with EC 0x07 (Arm ARM, CPTR_EL2; the trap is taken only when CPACR_EL1.FPEN
/// does not already trap the access to the guest's own EL1).
const CPTR_TFP: u64 = 1 << 10;
/// CPTR_EL2.TZ (bit 8, E2H = 0): SVE instructions and ZCR_EL1 accesses from
/// EL0/EL1 (and EL2's own) trap with EC 0x19 (Arm ARM, CPTR_EL2). RES1 where
/// SVE is absent, so it is cleared only on a CPU with SVE.
const CPTR_TZ: u64 = 1 << 8;

/// One vCPU as its physical CPU keeps it.
pub struct Vcpu {
    /// The general registers: the vector saves and restores them here.
    pub regs: GuestRegs,
    pub vm: &'static Vm,
    /// Its index in its VM.
    pub id: usize,
    sys: VcpuSysRegs,
    /// Its PMU's emulated state (PMSELR_EL0), when its VM has a PMU.
    pmu: VcpuPmu,
    /// Its state while it is not in the hardware.
    ctx: VcpuContext,
    run: Run,
    /// HCR_EL2 for this vCPU: the VM's controls plus TVM (set/way tracking),
    /// VSE (a virtual SError) and TWI (only while another vCPU is ready here).
    hcr: u64,
    /// Its LRs hold one of its timer interrupts: watch the timer at exits.
    timer_in_lrs: bool,
    /// VSESR_EL2 of a pending virtual SError (FEAT_RAS).
    vsesr: Option<u64>,
    /// Its SVE state while it is not in the hardware, at its VM's cap (empty
    /// for a VM without SVE).
    sve: SveRegs,
    /// Its saved FP state is `sve` (native SVE format), not `ctx.fp`: set at
    /// its first SVE access, until it powers off or resets. A vCPU that only
    /// ever used FP/SIMD never has its SVE state saved or restored.
    sve_format: bool,
    /// A clean+invalidate of the VM's RAM that a set/way operation or a
    /// cache toggle of this vCPU asked for and that has not finished: the
    /// offset into the VM's RAM to go on from. The vCPU does not run until
    /// it is done (the operation completes before its next instruction), but
    /// it is done a step at a time with this CPU's interrupts taken between
    /// steps, so other vCPUs here are not held up ([`Pcpu::flush_step`]).
    flush: Option<u64>,
}

impl Vcpu {
    fn new(vm: &'static Vm, id: usize) -> Self {
        Vcpu {
            regs: GuestRegs::default(),
            vm,
            id,
            sys: VcpuSysRegs::new(controls::vmpidr(id), false),
            pmu: VcpuPmu::default(),
            ctx: VcpuContext::reset(vm.host().vmcr_reset),
            run: Run::Off,
            hcr: vm.hcr_el2(),
            timer_in_lrs: false,
            vsesr: None,
            sve: SveRegs::new(vm.model().sve_vq()),
            sve_format: false,
            flush: None,
        }
        .with_hw_cpacr()
    }

    /// CPACR_EL1 as the hardware holds it for this VM at reset: the CPU model
    /// keeps the enables of features it hides set (`VmCpuModel::cpacr_el1_hw`).
    fn with_hw_cpacr(mut self) -> Self {
        self.ctx.el1.cpacr = self.vm.model().cpacr_el1_hw(0);
        self
    }

    /// The architectural reset state (PSCI CPU_ON, a VM start): x0 =
    /// `context_id`, PC = `entry`, EL1h with D, A, I, F masked; every system
    /// register at its reset value; no trace of an earlier run.
    fn reset(&mut self, entry: u64, context_id: u64) {
        self.regs = GuestRegs::default();
        self.regs.x[0] = context_id;
        self.regs.pc = entry;
        self.regs.pstate = controls::PSTATE_EL1H_MASKED;
        self.sys.reset();
        self.pmu = VcpuPmu::default();
        self.ctx = VcpuContext::reset(self.vm.host().vmcr_reset);
        self.hcr = self.vm.hcr_el2();
        self.timer_in_lrs = false;
        self.vsesr = None;
        self.flush = None;
        self.ctx.el1.cpacr = self.vm.model().cpacr_el1_hw(0);
    }

    /// Whether the guest's timers (saved) fire by physical count `now`.
    fn timer_fires_by(&self, now: u64) -> bool {
        let t = &self.ctx.timer;
        timer::fires_by(t.cntv_ctl, t.cntv_cval, self.vm.cntvoff(), now)
            || timer::fires_by(t.cntp_ctl, t.cntp_cval, 0, now)
    }

    /// The earliest physical count at which its (saved) timers fire.
    fn timer_deadline(&self) -> Option<u64> {
        let t = &self.ctx.timer;
        let v = timer::deadline(t.cntv_ctl, t.cntv_cval, self.vm.cntvoff());
        let p = timer::deadline(t.cntp_ctl, t.cntp_cval, 0);
        match (v, p) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// What a physical CPU is given to run.
pub struct PcpuConfig {
    /// Its logical index.
    pub index: usize,
    /// The vCPUs pinned to it: (VM, vCPU index).
    pub vcpus: Vec<(&'static Vm, usize)>,
    /// Every VM, to find the owner of a passthrough interrupt.
    pub vms: &'static [Vm],
    /// The hypervisor console's UART interrupt, if it is used.
    pub uart_intid: Option<u32>,
    /// Keyboard input arrived: tell the VM that has the focus.
    pub console_input: fn(),
}

/// One physical CPU.
pub struct Pcpu {
    index: usize,
    /// Never resized after `new`: the vector keeps each vCPU's registers at
    /// a fixed address, which the exception vector writes to.
    vcpus: Vec<Vcpu>,
    /// The vCPU whose state is in the hardware.
    loaded: Option<usize>,
    /// The vCPU whose FP/SIMD registers are in the hardware (lazy ownership:
    /// not necessarily the loaded one; see [`Pcpu::take_fp`]).
    fp_owner: Option<usize>,
    /// The owner's SVE state is in the hardware (Z, P, FFR, ZCR_EL1 at its
    /// cap) and CPTR_EL2.TZ is clear for it; otherwise only its FP/SIMD state.
    fp_sve: bool,
    /// Something may have changed for a vCPU here (a kick, a timer): look at
    /// all of them before the next entry.
    rescan: bool,
    /// When the running vCPU's turn ends (counter value), if another waits.
    slice_end: Option<u64>,
    /// When the running vCPU's turn began (counter value): it got the CPU, or
    /// the CPU woke from idle for it.
    turn_start: Option<u64>,
    /// What the EL2 timer is set to.
    hyp_deadline: Option<u64>,
    /// When the console wants this CPU back to send output it queued.
    console_due: Option<u64>,
    vms: &'static [Vm],
    uart_intid: Option<u32>,
    console_input: fn(),
}

impl Pcpu {
    pub fn new(cfg: PcpuConfig) -> Self {
        Pcpu {
            index: cfg.index,
            vcpus: cfg
                .vcpus
                .into_iter()
                .map(|(vm, id)| Vcpu::new(vm, id))
                .collect(),
            loaded: None,
            fp_owner: None,
            fp_sve: false,
            rescan: true,
            slice_end: None,
            turn_start: None,
            hyp_deadline: None,
            console_due: None,
            vms: cfg.vms,
            uart_intid: cfg.uart_intid,
            console_input: cfg.console_input,
        }
    }

    pub fn index(&self) -> usize {
        self.index
    }

    /// Whether this CPU has vCPUs at all.
    pub fn has_vcpus(&self) -> bool {
        !self.vcpus.is_empty()
    }

    /// The vCPUs, for tests and logs.
    pub fn vcpus(&self) -> impl Iterator<Item = (&'static Vm, usize, Run)> + '_ {
        self.vcpus.iter().map(|v| (v.vm, v.id, v.run))
    }

    /// Which vCPU (VM name, index) is in the hardware.
    pub fn loaded(&self) -> Option<(&'static Vm, usize)> {
        self.loaded.map(|i| (self.vcpus[i].vm, self.vcpus[i].id))
    }

    /// Handles the exit the loaded vCPU just took and returns the registers
    /// of the vCPU to enter next (waiting, at EL2, until there is one).
    pub fn on_exit<H: Hw>(&mut self, hw: &mut H, cause: ExitCause) -> *mut GuestRegs {
        if let Some(i) = self.loaded {
            let v = &mut self.vcpus[i];
            if v.hcr & HCR_VSE != 0 {
                // The PE clears HCR_EL2.VSE when the guest takes the virtual
                // SError; keep the copy in step so it is not raised again.
                v.hcr = (v.hcr & !HCR_VSE) | (hw.read_hcr_el2() & HCR_VSE);
            }
        }
        match (cause, self.loaded) {
            (ExitCause::Sync, Some(i)) => {
                self.sync_exit(hw, i);
                // The common case, a trap answered for the vCPU that goes on
                // running: when nothing else asks for this CPU's attention,
                // re-enter at once (what `next` would find, checked flag by
                // flag without taking a lock).
                if self.quiet(i) {
                    return &mut self.vcpus[i].regs;
                }
            }
            (ExitCause::SError, Some(i)) => self.serror(hw, i),
            _ => self.take_interrupts(hw),
        }
        if let Some(i) = self.loaded {
            self.watch_timer(hw, i);
        }
        self.service_console(hw);
        self.next(hw)
    }

    /// Whether vCPU `i`, just back from a trap, can be entered again with
    /// nothing else done: it is still ready and its VM is not stopping, no
    /// kick, timer or console wants this CPU, its list registers are current
    /// (no vGIC change, no timer interrupt in them to watch) and no keyboard
    /// input waits for its VM's devices, no cache flush of its is unfinished.
    /// Each test is a load: this is the path
    /// every `hyp_call`, trapped register and emulated device access takes.
    #[inline(always)]
    fn quiet(&self, i: usize) -> bool {
        let v = &self.vcpus[i];
        !self.rescan
            && v.run == Run::Ready
            && !v.timer_in_lrs
            && v.flush.is_none()
            && self.console_due.is_none()
            && !v.vm.is_stopping()
            && !v.vm.gic.is_stale(v.id)
            && !v.vm.input_pending()
            && console::quiet()
    }

    /// Lets the console send some output (bounded work, never waiting); while
    /// output this CPU queued still waits, the EL2 timer brings it back.
    fn service_console<H: Hw>(&mut self, hw: &mut H) {
        if self.console_due.is_none() && console::quiet() {
            return;
        }
        self.console_due =
            console::service().map(|ms| hw.counter() + hw.counter_frequency() / 1000 * ms.max(1));
        if let Some(d) = self.console_due
            && self.hyp_deadline.is_none_or(|x| x > d)
        {
            self.hyp_deadline = Some(d);
            hw.set_hyp_timer(Some(d));
        }
    }

    /// The first entry on this CPU, or after a CPU had nothing to run.
    pub fn start<H: Hw>(&mut self, hw: &mut H) -> *mut GuestRegs {
        self.rescan = true;
        self.next(hw)
    }

    /// Chooses the vCPU to enter and prepares its entry; waits at EL2 while
    /// there is none.
    fn next<H: Hw>(&mut self, hw: &mut H) -> *mut GuestRegs {
        loop {
            if let Some(i) = self.loaded {
                let v = &self.vcpus[i];
                if !self.rescan && v.run == Run::Ready && !v.vm.is_stopping() {
                    if v.flush.is_some() {
                        self.flush_step(hw, i);
                        continue;
                    }
                    self.prepare_entry(hw, i);
                    return &mut self.vcpus[i].regs;
                }
            }
            self.rescan = false;
            self.service_console(hw);
            self.review(hw);
            match self.pick(hw) {
                Some(n) => {
                    if self.loaded != Some(n) {
                        if let Some(cur) = self.loaded {
                            self.unload(hw, cur);
                        }
                        self.load(hw, n);
                    }
                    self.set_traps(hw, n);
                    self.set_hyp_timer(hw);
                }
                // Something changed while looking (a VM reloaded, say):
                // look again before sleeping.
                None if self.rescan => {}
                None => self.idle(hw),
            }
        }
    }

    // ---- the exit ----

    /// Runs `f` on the exit context of loaded vCPU `i` (its registers, the
    /// hardware and its VM) and returns what happens next and which of the
    /// VM's vCPUs must be kicked.
    #[inline(always)]
    fn handle_exit<H: Hw>(
        &mut self,
        hw: &mut H,
        i: usize,
        esr: u64,
        f: impl FnOnce(&mut ExitContext<'_, GuestRegs, Env<'_, H>, PsciView>) -> Next,
    ) -> (Next, u64) {
        let v = &mut self.vcpus[i];
        let vm = v.vm;
        let mut env = Env {
            hw,
            vm,
            id: v.id,
            sys: &mut v.sys,
            pmu: &mut v.pmu,
            // SPSR_EL2.M[3:2]: the trapped access came from EL0.
            el0: (v.regs.pstate >> 2) & 0b11 == 0,
            hcr: &mut v.hcr,
            flush: &mut v.flush,
            kick: 0,
        };
        let mut psci = PsciView(vm);
        let next = f(&mut ExitContext {
            gprs: &mut v.regs,
            env: &mut env,
            psci: &mut psci,
            features: vm.pstate(),
            instr_len: trap::instruction_length(esr),
        });
        (next, env.kick)
    }

    fn sync_exit<H: Hw>(&mut self, hw: &mut H, i: usize) {
        let esr = hw.esr();
        // The hottest classes go straight to their handler, without decoding
        // the whole syndrome into an `Exit` first: an HVC (its immediate is
        // not used: SMCCC passes everything in registers, DEN0028 §2.5), a
        // trapped system register (all it needs is in the ISS) and a data
        // abort (an emulated device or RAM touched the first time).
        let (next, kick) = match (esr >> 26) & 0x3f {
            trap::ec::HVC64 => self.handle_exit(hw, i, esr, |c| c.smccc()),
            trap::ec::SYSREG => {
                let acc = trap::sysreg_access(esr);
                self.handle_exit(hw, i, esr, |c| c.sysreg(acc))
            }
            trap::ec::DABT_LOWER => {
                let (_, far, hpfar) = hw.syndrome();
                let da = trap::data_abort(esr, far, hpfar);
                self.handle_exit(hw, i, esr, |c| c.data_abort(&da))
            }
            _ => {
                let (_, far, hpfar) = hw.syndrome();
                let exit = trap::decode(esr, far, hpfar);
                if exit == trap::Exit::FpAccess && self.fp_owner != Some(i) {
                    // The lazy switch's trap: the instruction runs again once
                    // the registers are its own (ELR_EL2 points at it).
                    self.take_fp(hw, i, false);
                    return;
                }
                if exit == trap::Exit::Sve
                    && self.sve_vq(i) != 0
                    && !(self.fp_owner == Some(i) && self.fp_sve)
                {
                    // Its first SVE access (or ZCR_EL1 access) since it took
                    // the registers, or since it was loaded: its SVE state
                    // comes in and the instruction runs again. A VM without
                    // SVE falls through: UNDEFINED.
                    self.take_fp(hw, i, true);
                    return;
                }
                self.handle_exit(hw, i, esr, |c| c.handle(exit))
            }
        };
        let vm = self.vcpus[i].vm;
        if kick != 0 {
            self.kick_vcpus(hw, vm, kick);
        }
        match next {
            Next::Resume => {}
            Next::Idle => self.vcpus[i].run = Run::Waiting,
            // Its turn ends now: `pick` hands the CPU to the next ready vCPU.
            Next::Yield => {
                self.slice_end = Some(0);
                self.rescan = true;
            }
            Next::SystemOff | Next::SystemReset => {
                let why = if next == Next::SystemOff {
                    log::info!("VM '{}' powers off (PSCI SYSTEM_OFF)", vm.name());
                    Stop::PowerOff
                } else {
                    log::info!("VM '{}' resets (PSCI SYSTEM_RESET)", vm.name());
                    Stop::Reset
                };
                let (cpus, _) = vm.stop(why);
                self.kick_cpus(hw, cpus);
                self.rescan = true;
            }
            Next::CpuOff => {
                let id = self.vcpus[i].id;
                self.power_off(hw, i);
                if let Some(why) = vm.cpu_off(id) {
                    let cpus = vm.complete_stop(why, hw);
                    self.kick_cpus(hw, cpus);
                }
                self.rescan = true;
            }
            Next::CpuOn {
                target,
                entry,
                context_id,
            } => {
                let (r, cpu) = vm.power_on(target, entry, context_id);
                // DEN0022 CPU_ON return values; SUCCESS was written already.
                let x0 = match r {
                    PowerOn::Started => 0,
                    PowerOn::AlreadyOn => -4i64 as u64,
                    PowerOn::OnPending => -5i64 as u64,
                    PowerOn::Denied => -3i64 as u64,
                };
                self.vcpus[i].regs.x[0] = x0;
                if r == PowerOn::Started {
                    self.kick_cpus(hw, 1 << cpu);
                }
            }
        }
    }

    /// An SError taken from the guest: it belongs to the guest (an external
    /// abort its own access caused), so it is delivered to it as a virtual
    /// SError (HCR_EL2.VSE, which the PE clears when the guest takes it).
    fn serror<H: Hw>(&mut self, hw: &mut H, i: usize) {
        let (esr, _, _) = hw.syndrome();
        let v = &mut self.vcpus[i];
        let vs = controls::virtual_serror(esr, v.vm.host().features.vsesr);
        if let Some(n) = v.vm.note_fault() {
            if vs.uncontainable {
                log::error!(
                    "VM '{}' vCPU {}: uncontainable SError (ESR_EL2 {esr:#x}) delivered to the guest (#{n})",
                    v.vm.name(),
                    v.id
                );
            } else {
                warn!(
                    "VM '{}' vCPU {}: SError (ESR_EL2 {esr:#x}) delivered to the guest (#{n})",
                    v.vm.name(),
                    v.id
                );
            }
        }
        v.vsesr = vs.vsesr_el2;
        if let Some(s) = v.vsesr {
            hw.write_vsesr_el2(s);
        }
        v.hcr |= HCR_VSE;
        hw.write_hcr_el2(v.hcr);
    }

    /// A timer interrupt in the LRs whose timer the guest has since masked or
    /// re-armed must be withdrawn: one `mrs` per exit while one is there.
    fn watch_timer<H: Hw>(&mut self, hw: &mut H, i: usize) {
        let v = &self.vcpus[i];
        if v.timer_in_lrs
            && !(timer::asserted(hw.read_cntv_ctl()) || timer::asserted(hw.read_cntp_ctl()))
        {
            v.vm.gic.mark_stale(v.id);
        }
    }

    // ---- physical interrupts ----

    /// Takes the pending physical interrupts on this CPU: a bounded number,
    /// so a line that stays asserted cannot keep this CPU from its vCPUs (what
    /// is left is taken at the next exit or wake-up).
    fn take_interrupts<H: Hw>(&mut self, hw: &mut H) {
        const MAX_PER_CALL: usize = 32;
        for _ in 0..MAX_PER_CALL {
            let intid = hw.acknowledge();
            let kind = self.classify(intid);
            crate::vm::stats::irq(&kind);
            let mut how = kind.completion();
            match kind {
                PhysIrq::Spurious => break,
                PhysIrq::GuestTimer(p) => match self.loaded {
                    Some(i) => {
                        let (vm, id) = (self.vcpus[i].vm, self.vcpus[i].id);
                        let (_, kick) = vm.gic.update(|g| {
                            let _ = timer::on_timer_irq(g, id, p);
                        });
                        self.kick_vcpus(hw, vm, kick);
                    }
                    // No guest's timers are loaded: a leftover; drop it.
                    None => how = Completion::DropAndDeactivate,
                },
                // The loaded vCPU's PMU overflowed (another vCPU's counters
                // are stopped and its overflow flags cleared when it leaves,
                // `pmu::save`): its virtual PPI 23, hardware-linked. With no
                // PMU guest loaded, a leftover: dropped and deactivated.
                PhysIrq::GuestPmu => {
                    let target = self
                        .loaded
                        .map(|i| (self.vcpus[i].vm, self.vcpus[i].id))
                        .filter(|(vm, _)| vm.model().pmu().is_some());
                    match target {
                        Some((vm, id)) => {
                            let (r, kick) =
                                vm.gic.update(|g| g.inject_hw(Some(id), pmu::PMU_INTID));
                            if r.is_err() {
                                how = Completion::DropAndDeactivate;
                            }
                            self.kick_vcpus(hw, vm, kick);
                        }
                        None => how = Completion::DropAndDeactivate,
                    }
                }
                PhysIrq::HypTimer => {
                    hw.set_hyp_timer(None);
                    self.hyp_deadline = None;
                    self.rescan = true;
                }
                PhysIrq::Maintenance => {
                    if let Some(i) = self.loaded {
                        let v = &self.vcpus[i];
                        v.vm.gic.mark_stale(v.id);
                    }
                }
                // Another CPU changed something for a vCPU here. With one
                // vCPU here, loaded and ready, there is nothing to review: its
                // vGIC changes show in its stale flag and a stop in its VM's
                // flag, both looked at before every entry.
                PhysIrq::Kick => {
                    let alone_and_ready = self.vcpus.len() == 1
                        && self.loaded.is_some_and(|i| self.vcpus[i].run == Run::Ready);
                    if !alone_and_ready {
                        self.rescan = true;
                    }
                }
                PhysIrq::Passthrough { vm, vintid } => {
                    let vm = &self.vms[vm];
                    let (_, kick) = vm.gic.update(|g| {
                        let _ = g.inject_hw(None, vintid);
                    });
                    self.kick_vcpus(hw, vm, kick);
                }
                PhysIrq::Host(i) if Some(i) == self.uart_intid => {
                    if console::poll_keyboard() {
                        (self.console_input)();
                    }
                }
                PhysIrq::Host(i) => debug!("CPU {}: unexpected physical interrupt {i}", self.index),
            }
            hw.complete(intid, how);
        }
    }

    fn classify(&self, intid: u32) -> PhysIrq {
        match intid {
            32..=1019 => {
                for (n, vm) in self.vms.iter().enumerate() {
                    if vm.passthrough_irqs().contains(&intid) {
                        return PhysIrq::Passthrough {
                            vm: n,
                            vintid: intid,
                        };
                    }
                }
                PhysIrq::Host(intid)
            }
            _ => host::classify(intid, &[]),
        }
    }

    /// Kicks the CPUs of the vCPUs in `mask` (bit n: vCPU n of `vm`); a vCPU
    /// of this CPU is looked at again before the next entry instead.
    fn kick_vcpus<H: Hw>(&mut self, hw: &mut H, vm: &Vm, mut mask: u64) {
        if let Some(i) = self.loaded {
            // The loaded vCPU's own changes show in its stale flag.
            if core::ptr::eq(self.vcpus[i].vm, vm) {
                mask &= !(1 << self.vcpus[i].id);
            }
        }
        let mut cpus = 0u64;
        while mask != 0 {
            let v = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            if let Some(&cpu) = vm.pcpus().get(v) {
                cpus |= 1 << cpu;
            }
        }
        self.kick_cpus(hw, cpus);
    }

    /// Kicks the CPUs in `cpus` (bit n: CPU n); for this CPU, its vCPUs are
    /// looked at again before the next entry.
    fn kick_cpus<H: Hw>(&mut self, hw: &mut H, mut cpus: u64) {
        while cpus != 0 {
            let cpu = cpus.trailing_zeros() as usize;
            cpus &= cpus - 1;
            if cpu == self.index {
                self.rescan = true;
            } else {
                hw.kick(cpu);
            }
        }
    }

    // ---- entry ----

    /// Before entering vCPU `i`: device lines after keyboard input, and the
    /// list registers if its interrupt state changed.
    fn prepare_entry<H: Hw>(&mut self, hw: &mut H, i: usize) {
        let (vm, id) = (self.vcpus[i].vm, self.vcpus[i].id);
        let kick = vm.poll_input();
        if kick != 0 {
            self.kick_vcpus(hw, vm, kick);
        }
        if vm.gic.take_stale(id) {
            let (timer_in_lrs, kick) = vm.gic.update(|g| {
                let before = g.read_back(id, &mut *hw);
                timer::resample(g, id, hw.read_cntv_ctl(), hw.read_cntp_ctl());
                g.load_lrs(id, &mut *hw, before);
                // Physical deactivations the refill asks for (rare), done
                // under the lock: they touch only this CPU's GIC.
                if g.has_actions() {
                    apply_gic_actions(&mut *hw, vm, g.take_actions());
                }
                g.timer_in_lrs(id)
            });
            self.vcpus[i].timer_in_lrs = timer_in_lrs;
            let others = kick & !(1 << id);
            if others != 0 {
                self.kick_vcpus(hw, vm, others);
            }
            if kick & (1 << id) != 0 {
                // Changed again while refilling (a resampled timer): the next
                // entry refills once more.
                vm.gic.mark_stale(id);
            }
        }
    }

    /// HCR_EL2 for vCPU `i` as it is chosen to run: WFI and WFE trap only
    /// while another vCPU here is ready for the CPU (a WFE then yields: a
    /// spin-lock waiter gives its turn to the vCPU that may hold the lock, as
    /// KVM's kvm_vcpu_on_spin; alone, it waits natively at no cost).
    fn set_traps<H: Hw>(&mut self, hw: &mut H, i: usize) {
        let others_ready = self
            .vcpus
            .iter()
            .enumerate()
            .any(|(n, v)| n != i && v.run == Run::Ready);
        let v = &mut self.vcpus[i];
        let mut hcr = v.hcr & !(HCR_TWI | HCR_TWE);
        if others_ready {
            hcr |= HCR_TWI | HCR_TWE;
        }
        if hcr != v.hcr {
            v.hcr = hcr;
            hw.write_hcr_el2(hcr);
        }
    }

    // ---- scheduling ----

    /// Looks at every vCPU here: starts the ones CPU_ON or a VM start asked
    /// for, lets the ones whose VM stops leave, wakes waiting ones with
    /// something pending.
    fn review<H: Hw>(&mut self, hw: &mut H) {
        for i in 0..self.vcpus.len() {
            let (vm, id, run) = (self.vcpus[i].vm, self.vcpus[i].id, self.vcpus[i].run);
            if vm.is_stopping() {
                if run != Run::Off {
                    self.power_off(hw, i);
                    if let Some(why) = vm.vcpu_left(id) {
                        let cpus = vm.complete_stop(why, hw);
                        self.kick_cpus(hw, cpus);
                        // The reload may have made a vCPU here pending.
                        self.rescan = true;
                    }
                }
                continue;
            }
            match run {
                Run::Off => {
                    if let Some((entry, context_id)) = vm.claim_start(id) {
                        self.drop_fp(hw, i);
                        self.vcpus[i].reset(entry, context_id);
                        self.vcpus[i].run = Run::Ready;
                    }
                }
                Run::Waiting => {
                    if self.wakes(hw, i) {
                        self.vcpus[i].run = Run::Ready;
                    }
                }
                Run::Ready => {}
            }
        }
    }

    /// Whether waiting vCPU `i` has something that ends its wait: an
    /// interrupt its virtual CPU interface would take (pending, enabled, above
    /// its priority mask, its group enabled), or its timer firing.
    fn wakes<H: Hw>(&mut self, hw: &mut H, i: usize) -> bool {
        let (vm, id) = (self.vcpus[i].vm, self.vcpus[i].id);
        if self.loaded == Some(i) {
            // What the guest left in its LRs counts: fold them back first;
            // the entry refills them.
            let ((w, actions), _) = vm.gic.update(|g| {
                g.save(id, &mut *hw);
                timer::resample(g, id, hw.read_cntv_ctl(), hw.read_cntp_ctl());
                (g.wake_pending(id, hw.read_ich_vmcr()), g.take_actions())
            });
            apply_gic_actions(hw, vm, actions);
            vm.gic.mark_stale(id);
            w || timer::asserted(hw.read_cntv_ctl()) || timer::asserted(hw.read_cntp_ctl())
        } else {
            let vmcr = self.vcpus[i].ctx.gic.vmcr;
            vm.gic.inspect(|g| g.wake_pending(id, vmcr))
                || self.vcpus[i].timer_fires_by(hw.counter())
        }
    }

    /// The vCPU to run: the highest priority among the ready ones; among
    /// equals, the loaded one until its turn ends, then the next in order.
    fn pick<H: Hw>(&mut self, hw: &mut H) -> Option<usize> {
        let best = self
            .vcpus
            .iter()
            .filter(|v| v.run == Run::Ready)
            .map(|v| v.vm.spec.priority)
            .max()?;
        let candidates = |v: &Vcpu| v.run == Run::Ready && v.vm.spec.priority == best;
        let n = self.vcpus.len();
        let now = hw.counter();
        if let Some(cur) = self.loaded.filter(|&c| candidates(&self.vcpus[c])) {
            let others = (1..n)
                .map(|k| (cur + k) % n)
                .find(|&k| candidates(&self.vcpus[k]));
            // A rival that appears while the vCPU runs alone (it woke, it was
            // started) finds the turn counted from when the vCPU got the CPU:
            // a vCPU that has had it for a timeslice already gives it up at
            // once, so a waking vCPU waits at most one turn, not one more.
            let start = *self.turn_start.get_or_insert(now);
            let end = match (others, self.slice_end) {
                (None, _) => {
                    self.slice_end = None;
                    return Some(cur);
                }
                (Some(_), Some(end)) => end,
                (Some(_), None) => start + self.slice_ticks(hw, cur),
            };
            match others {
                Some(next) if now >= end => {
                    self.slice_end = Some(now + self.slice_ticks(hw, next));
                    self.turn_start = Some(now);
                    return Some(next);
                }
                _ => {
                    self.slice_end = Some(end);
                    return Some(cur);
                }
            }
        }
        let start = self.loaded.map(|c| c + 1).unwrap_or(0);
        let next = (0..n)
            .map(|k| (start + k) % n)
            .find(|&k| candidates(&self.vcpus[k]))?;
        let competing = self
            .vcpus
            .iter()
            .enumerate()
            .any(|(k, v)| k != next && candidates(v));
        self.slice_end = competing.then(|| now + self.slice_ticks(hw, next));
        self.turn_start = Some(now);
        Some(next)
    }

    fn slice_ticks<H: Hw>(&self, hw: &H, i: usize) -> u64 {
        let us = self.vcpus[i].vm.spec.timeslice_us.max(100);
        hw.counter_frequency() / 1000 * us / 1000
    }

    /// Programs the EL2 timer for the earliest of: the end of the running
    /// vCPU's turn, the timers of waiting vCPUs that are not loaded, the
    /// console's hold on an unfinished line.
    fn set_hyp_timer<H: Hw>(&mut self, hw: &mut H) {
        let mut deadline = self.slice_end;
        for (k, v) in self.vcpus.iter().enumerate() {
            if v.run == Run::Waiting
                && self.loaded != Some(k)
                && let Some(d) = v.timer_deadline()
            {
                deadline = Some(deadline.map_or(d, |x| x.min(d)));
            }
        }
        if let Some(d) = self.console_due {
            deadline = Some(deadline.map_or(d, |x| x.min(d)));
        }
        if deadline != self.hyp_deadline {
            self.hyp_deadline = deadline;
            hw.set_hyp_timer(deadline);
        }
    }

    /// Nothing to run: sleep until an interrupt, then take it.
    fn idle<H: Hw>(&mut self, hw: &mut H) {
        self.service_console(hw);
        self.slice_end = None;
        self.turn_start = None;
        self.set_hyp_timer(hw);
        hw.wait_for_interrupt();
        self.take_interrupts(hw);
        self.rescan = true;
    }

    /// One step of vCPU `i`'s unfinished RAM flush ([`Vcpu::flush`]), then
    /// this CPU's pending interrupts: a turn that ended, a kick or a wake-up
    /// for another vCPU here is seen between steps, so a large VM's flush
    /// never holds up the other vCPUs of this CPU for longer than a step.
    fn flush_step<H: Hw>(&mut self, hw: &mut H, i: usize) {
        let v = &mut self.vcpus[i];
        if let Some(from) = v.flush {
            v.flush = v.vm.clean_invalidate_ram_step(hw, from, FLUSH_STEP);
        }
        self.take_interrupts(hw);
    }

    // ---- FP/SIMD ownership ----

    /// vCPU `i`'s SVE vector-length cap in quadwords (0: its VM has no SVE).
    fn sve_vq(&self, i: usize) -> usize {
        self.vcpus[i].vm.model().sve_vq()
    }

    /// CPTR_EL2 for vCPU `i` as ownership stands: FP/SIMD traps (TFP) unless
    /// the registers in the hardware are its own; SVE traps (TZ, set in the
    /// VM's controls) unless its SVE state is in them too.
    fn cptr_for(&self, i: usize) -> u64 {
        let v = &self.vcpus[i];
        let cptr = v.vm.el2_state(v.id, v.hcr).controls.cptr_el2 & !CPTR_TFP;
        match self.fp_owner {
            Some(o) if o == i && self.fp_sve => cptr & !CPTR_TZ,
            Some(o) if o == i => cptr,
            _ => cptr | CPTR_TFP,
        }
    }

    /// Saves owner `o`'s registers in the format they are in: its SVE state
    /// at its cap (ZCR_EL2.LEN set to it first, since STR Z/P use EL2's vector
    /// length), or its FP/SIMD state. EL2's FP and SVE traps are off.
    fn save_owner<H: Hw>(&mut self, hw: &mut H, o: usize) {
        let vq = self.sve_vq(o);
        let v = &mut self.vcpus[o];
        if self.fp_sve {
            hw.write_zcr_el2(vq as u64 - 1);
            hw.save_sve(&mut v.sve);
        } else {
            hw.save_fp(&mut v.ctx.fp);
        }
    }

    /// Loaded vCPU `i` used FP/SIMD (`sve` false: the CPTR_EL2.TFP trap) or SVE
    /// (`sve`: the CPTR_EL2.TZ trap, EC 0x19) for the first time since it was
    /// loaded or took the registers: the previous owner's registers are saved
    /// (the only time they are), `i`'s are restored and the trap dropped. A vCPU
    /// alone on its CPU pays this once; afterwards its registers stay live
    /// across every exit.
    ///
    /// Its SVE state is restored only once it has one: at its first SVE access
    /// it is built from its FP/SIMD state (Vn the low 128 bits of Zn, the rest
    /// of Z, P and FFR zero, Arm ARM "SVE registers"), and from then on it is
    /// saved and restored whole, in its native format at the VM's cap, with
    /// ZCR_EL2.LEN = the cap around every save and restore and while it owns
    /// the registers (Arm ARM, ZCR_EL2: the cap on EL1's and EL2's vector
    /// length). Every Z register is written up to the cap, so nothing of
    /// another vCPU is readable below the cap, and nothing above it is
    /// reachable by the guest.
    fn take_fp<H: Hw>(&mut self, hw: &mut H, i: usize, sve: bool) {
        let vq = self.sve_vq(i);
        let sve = vq != 0 && (sve || self.vcpus[i].sve_format);
        if self.fp_owner == Some(i) && (self.fp_sve || !sve) {
            // Already its own (a stale trap): just the controls.
            hw.write_cptr_el2(self.cptr_for(i));
            return;
        }
        // CPTR_EL2.TFP and TZ trap EL2's own FP/SIMD and SVE instructions too
        // (Arm ARM, CPTR_EL2): both are dropped for the moves.
        let moves_sve = sve || (self.fp_owner.is_some() && self.fp_sve);
        let base = self.cptr_for(i) & !CPTR_TFP;
        hw.write_cptr_el2(if moves_sve { base & !CPTR_TZ } else { base });
        if let Some(o) = self.fp_owner {
            // `o` may be `i` itself, holding only its FP/SIMD state: saved so
            // that its SVE state is built from it.
            self.save_owner(hw, o);
        }
        let v = &mut self.vcpus[i];
        if sve {
            // ZCR_EL2 is behind CPTR_EL2.TZ too: set while it is clear, and
            // only matters (to the guest) once TZ is dropped for it.
            hw.write_zcr_el2(vq as u64 - 1);
            if !v.sve_format {
                let zcr = v.sve.zcr_el1();
                v.sve.load_from_fp(&v.ctx.fp, zcr);
                v.sve_format = true;
            }
            hw.restore_sve(&v.sve);
        } else {
            // Every V register, FPSR and FPCR is overwritten: nothing of the
            // previous owner stays readable through FP/SIMD, and its SVE
            // registers are behind CPTR_EL2.TZ until `i`'s own replace them.
            hw.restore_fp(&v.ctx.fp);
        }
        self.fp_owner = Some(i);
        self.fp_sve = sve;
        hw.write_cptr_el2(self.cptr_for(i));
    }

    /// vCPU `i`'s FP/SIMD and SVE state is dropped (it powers off or resets):
    /// if the hardware holds it, it is overwritten with zeros (Z, P and FFR at
    /// its cap too when they are its) and nobody owns the registers, so the
    /// next user traps and loads its own. Its saved state is zeroed.
    fn drop_fp<H: Hw>(&mut self, hw: &mut H, i: usize) {
        let vq = self.sve_vq(i);
        let v = &mut self.vcpus[i];
        v.sve.buf.fill(0);
        v.sve.sys = [0; 3];
        v.sve_format = false;
        if self.fp_owner == Some(i) {
            // The zeroing runs at EL2 with FP/SIMD (and SVE) untrapped
            // (CPTR_EL2.TFP and TZ trap EL2 too), then the traps are back for
            // whoever is loaded.
            let untrapped = self.cptr_for(i);
            hw.write_cptr_el2(untrapped);
            if self.fp_sve {
                hw.write_zcr_el2(vq as u64 - 1);
                hw.restore_sve(&self.vcpus[i].sve);
            } else {
                hw.restore_fp(&crate::vm::vcpu::FpRegs::default());
            }
            self.fp_owner = None;
            self.fp_sve = false;
            if let Some(l) = self.loaded {
                let cptr = self.cptr_for(l);
                hw.write_cptr_el2(cptr);
            }
        }
    }

    // ---- loading and unloading ----

    /// Puts vCPU `i`'s state into the hardware. Its FP/SIMD registers come
    /// only at its first FP/SIMD instruction (CPTR_EL2.TFP, [`Pcpu::take_fp`]),
    /// unless they never left.
    fn load<H: Hw>(&mut self, hw: &mut H, i: usize) {
        let mut el2 = {
            let v = &self.vcpus[i];
            v.vm.el2_state(v.id, v.hcr)
        };
        el2.controls.cptr_el2 = self.cptr_for(i);
        let v = &mut self.vcpus[i];
        hw.load_el2(&el2);
        if hw.has_ras() {
            // VDISR_EL2 is the guest's DISR_EL1 (HCR_EL2.AMO is set) and
            // VSESR_EL2 the syndrome its pending virtual SError is taken or
            // deferred with (Arm ARM, VDISR_EL2, VSESR_EL2): both this
            // vCPU's, never the previous one's. A pending SError without a
            // syndrome of its own (a CPU model without RAS) gets the
            // IMPLEMENTATION DEFINED one.
            hw.write_vdisr_el2(v.ctx.vdisr);
            let vsesr = v.vsesr.filter(|_| v.hcr & HCR_VSE != 0);
            hw.write_vsesr_el2(vsesr.unwrap_or(controls::SERROR_IDS));
        }
        hw.restore_el1(&v.ctx.el1);
        hw.restore_debug(&v.ctx.debug);
        hw.restore_gic_cpu(&v.ctx.gic);
        hw.restore_timers(&v.ctx.timer);
        if let Some(m) = v.vm.model().pmu() {
            if v.ctx.pmu.irq_active {
                hw.set_ppi_active(pmu::PMU_INTID);
            }
            pmu::restore(hw, m, &v.ctx.pmu);
        }
        // Its LRs are empty: the entry fills them.
        v.vm.gic.mark_stale(v.id);
        self.loaded = Some(i);
    }

    /// Takes vCPU `i`'s state out of the hardware, leaving nothing of it
    /// there that another vCPU can read: LRs folded back and cleared, timers
    /// off (their PPIs no longer active), the rest saved (and overwritten by
    /// the next vCPU's load). Its FP/SIMD registers stay in the hardware,
    /// still its own: the next vCPU runs with CPTR_EL2.TFP set and they are
    /// saved only when it uses FP/SIMD ([`Pcpu::take_fp`]).
    fn unload<H: Hw>(&mut self, hw: &mut H, i: usize) {
        let v = &mut self.vcpus[i];
        let id = v.id;
        hw.save_timers(&mut v.ctx.timer);
        if let Some(m) = v.vm.model().pmu() {
            // Stopped and its overflow flags cleared first, so its interrupt
            // line drops; then the PPI's active state goes with the vCPU.
            pmu::save(hw, m, &mut v.ctx.pmu);
            v.ctx.pmu.irq_active = hw.take_ppi_active(pmu::PMU_INTID);
        }
        v.vm.gic.update(|g| g.save(id, &mut *hw));
        hw.save_gic_cpu(&mut v.ctx.gic);
        hw.save_el1(&mut v.ctx.el1);
        hw.save_debug(&mut v.ctx.debug);
        if hw.has_ras() {
            v.ctx.vdisr = hw.read_vdisr_el2();
        }
        v.timer_in_lrs = false;
        self.loaded = None;
    }

    /// vCPU `i` powers off (CPU_OFF, its VM stopping): out of the hardware,
    /// its context reset, its active interrupts dropped.
    fn power_off<H: Hw>(&mut self, hw: &mut H, i: usize) {
        if self.loaded == Some(i) {
            self.unload(hw, i);
            // The hardware holds the next vCPU's state only after a load;
            // until then nothing of this one may stay readable there.
            let blank = VcpuContext::reset(self.vcpus[i].vm.host().vmcr_reset);
            hw.restore_el1(&blank.el1);
            hw.restore_debug(&blank.debug);
            if hw.has_ras() {
                hw.write_vdisr_el2(blank.vdisr);
            }
        }
        // Its FP/SIMD registers, if the hardware still holds them (loaded or
        // not): zeroed. Another owner's stay as they are.
        self.drop_fp(hw, i);
        let v = &mut self.vcpus[i];
        let (vm, id) = (v.vm, v.id);
        v.run = Run::Off;
        v.ctx = VcpuContext::reset(vm.host().vmcr_reset);
        let (actions, _) = vm.gic.update(|g| {
            g.cpu_off(id);
            g.take_actions()
        });
        apply_gic_actions(hw, vm, actions);
    }
}

/// Carries out what a vGIC change asked of the physical GIC.
fn apply_gic_actions<H: Hw>(hw: &mut H, vm: &Vm, actions: Vec<vgic::HwAction>) {
    for a in actions {
        match a {
            vgic::HwAction::DeactivatePhysical { vcpu, intid } if intid < 32 => {
                hw.deactivate_ppi_on(vm.pcpus()[vcpu], intid)
            }
            vgic::HwAction::DeactivatePhysical { intid, .. } => hw.deactivate_spi(intid),
            vgic::HwAction::RoutePhysicalSpi { intid, vcpu } => {
                hw.route_spi(intid, vm.pcpus()[vcpu])
            }
        }
    }
}

/// The vGIC's windows in a guest's physical address space (QEMU virt's).
fn gic_window(vm: &Vm, ipa: u64) -> Option<GicWindow> {
    let d = guest_fdt::VIRT_GICD;
    if ipa >= d.base && ipa - d.base < d.size {
        return Some(GicWindow::Dist(ipa - d.base));
    }
    if vm.gic_v2() {
        // A GICv2 has no redistributors; its CPU interface is mapped at stage 2.
        return None;
    }
    let r = guest_fdt::VIRT_GICR_BASE;
    let len = vgic::redist::GICR_STRIDE * vm.spec.vcpus as u64;
    (ipa >= r && ipa - r < len).then(|| GicWindow::Redist(ipa - r))
}

enum GicWindow {
    Dist(u64),
    Redist(u64),
}

/// What one exit reaches: the VM, this vCPU's emulated registers, the hardware.
struct Env<'a, H: Hw> {
    hw: &'a mut H,
    vm: &'static Vm,
    id: usize,
    sys: &'a mut VcpuSysRegs,
    pmu: &'a mut VcpuPmu,
    /// The trapped access came from the guest's EL0.
    el0: bool,
    hcr: &'a mut u64,
    /// The vCPU's unfinished RAM flush ([`Vcpu::flush`]).
    flush: &'a mut Option<u64>,
    /// vCPUs of the VM (bit n: vCPU n) whose CPUs must look again.
    kick: u64,
}

impl<H: Hw> GuestHw for Env<'_, H> {
    fn vbar_el1(&self) -> u64 {
        self.hw.vbar_el1()
    }
    fn sctlr_el1(&self) -> u64 {
        self.hw.sctlr_el1()
    }
    fn write_exception_regs(&mut self, esr: u64, far: Option<u64>, elr: u64, spsr: u64) {
        self.hw.write_exception_regs(esr, far, elr, spsr)
    }
}

impl<H: Hw> Env<'_, H> {
    /// A guest access to the vGIC's registers. The vCPU's LRs are folded back
    /// first when they hold anything, so what it reads is current.
    fn gic_access(&mut self, w: GicWindow, size: u8, write: Option<u64>) -> u64 {
        let (id, hw) = (self.id, &mut *self.hw);
        let vm = self.vm;
        let (value, kick) = self.vm.gic.update(|g: &mut Vgic| {
            if g.lrs_in_use(id) > 0 {
                g.save(id, &mut *hw);
                timer::resample(g, id, hw.read_cntv_ctl(), hw.read_cntp_ctl());
                g.mark_stale_for(id);
            }
            let value = match (w, write) {
                (GicWindow::Dist(off), None) if g.config().v2 => g.gicd_v2_read(id, off, size),
                (GicWindow::Dist(off), Some(v)) if g.config().v2 => {
                    g.gicd_v2_write(id, off, size, v);
                    0
                }
                (GicWindow::Dist(off), None) => g.gicd_read(off, size),
                (GicWindow::Dist(off), Some(v)) => {
                    g.gicd_write(off, size, v);
                    0
                }
                (GicWindow::Redist(off), None) => g.gicr_read(off, size),
                (GicWindow::Redist(off), Some(v)) => {
                    g.gicr_write(off, size, v);
                    0
                }
            };
            if g.has_actions() {
                apply_gic_actions(&mut *hw, vm, g.take_actions());
            }
            value
        });
        self.kick |= kick & !(1 << id);
        value & crate::devices::size_mask(size)
    }

    fn log_undef(&self, acc: SysRegAccess, reason: impl core::fmt::Debug) {
        if self.vm.first_unknown(acc.reg) {
            warn!(
                "VM '{}': {} of system register {} is UNDEFINED to the guest ({reason:?})",
                self.vm.name(),
                if acc.write { "write" } else { "read" },
                acc.reg
            );
        }
    }
}

impl<H: Hw> ExitEnv for Env<'_, H> {
    fn sysreg(&mut self, acc: SysRegAccess, value: u64) -> SysRegResult {
        if let Some(kind) = SgiRegister::from_sysreg(acc.reg) {
            // ICC_SGI1R/ASGI1R/SGI0R_EL1: write-only, trapped by HCR_EL2.IMO/FMO.
            if !acc.write {
                self.log_undef(acc, "write-only");
                return SysRegResult::Undefined;
            }
            let id = self.id;
            let (_, kick) = self.vm.gic.update(|g| {
                g.send_sgi(id, kind, value);
            });
            self.kick |= kick & !(1 << id);
            return SysRegResult::Done;
        }
        if let Some(reg) = pmu::decode(acc.reg) {
            // MDCR_EL2.TPM/TPMCR trap every PMU access: emulated against the
            // hardware when the VM has a PMU, UNDEFINED when it has none.
            let model = self.vm.model().pmu();
            let op = pmu::access(model, self.pmu, reg, acc.write.then_some(value));
            return match pmu::perform(self.hw, model, op, self.el0) {
                pmu::Performed::Read(v) => SysRegResult::Read(v),
                pmu::Performed::Done => SysRegResult::Done,
                pmu::Performed::Undef => {
                    self.log_undef(acc, "PMU");
                    SysRegResult::Undefined
                }
            };
        }
        let access = sysreg::Access {
            reg: acc.reg,
            write: acc.write.then_some(value),
            sctlr_el1: self.hw.sctlr_el1(),
        };
        match sysreg::access(self.sys, self.vm.model(), access) {
            Outcome::Read(v) => SysRegResult::Read(v),
            Outcome::Written(actions) => {
                for action in actions.iter() {
                    match action {
                        HwAction::WriteHw { reg, value } => {
                            if !self.hw.write_vm_control(reg, value) {
                                warn!("VM '{}': no hardware register for {reg}", self.vm.name());
                            }
                        }
                        HwAction::CleanInvalidateVmMemory => {
                            debug!(
                                "VM '{}': set/way or cache toggle: flushing its RAM",
                                self.vm.name()
                            );
                            // Done by the run loop before the vCPU's next
                            // instruction, a step at a time (`Pcpu::flush_step`).
                            *self.flush = Some(0);
                        }
                        HwAction::SetTrapVm(on) => {
                            *self.hcr = if on {
                                *self.hcr | HCR_TVM
                            } else {
                                *self.hcr & !HCR_TVM
                            };
                            self.hw.write_hcr_el2(*self.hcr);
                        }
                    }
                }
                SysRegResult::Done
            }
            Outcome::Undef(reason) => {
                self.log_undef(acc, reason);
                SysRegResult::Undefined
            }
        }
    }

    fn mmio_read(&mut self, ipa: u64, size: u8) -> Option<u64> {
        if let Some(w) = gic_window(self.vm, ipa) {
            return Some(self.gic_access(w, size, None));
        }
        let (value, kick) = self.vm.device_access(ipa, size, None)?;
        self.kick |= kick;
        Some(value)
    }

    fn mmio_write(&mut self, ipa: u64, size: u8, value: u64) -> bool {
        if let Some(w) = gic_window(self.vm, ipa) {
            self.gic_access(w, size, Some(value));
            return true;
        }
        match self.vm.device_access(ipa, size, Some(value)) {
            Some((_, kick)) => {
                self.kick |= kick;
                true
            }
            None => false,
        }
    }

    #[inline]
    fn populate(&mut self, ipa: u64) -> bool {
        self.vm.populate(ipa, self.hw)
    }

    fn note_fault(&mut self) -> Option<u64> {
        self.vm.note_fault()
    }
}

#[cfg(test)]
mod tests;
