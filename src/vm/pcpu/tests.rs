//! The run loop on fake hardware: exits, PSCI power management, VM reset and
//! power-off, time-sharing, interrupts between CPUs.

use super::*;
use crate::mm::pagetable::Stage2Geometry;
use crate::psci::VcpuPower;
use crate::sysreg::id::tests::qemu_max;
use crate::sysreg::{CachePolicy, SystemCpuInfo, VmCpuModel};
use crate::vm::fake::{Board, FakeHw, FakeMemory};
use crate::vm::image::ImageKind;
use crate::vm::machine::{Host, RunningCount, VmSpec, VmState};
use crate::vm::vcpu::FpRegs;
use std::boxed::Box;
use std::cell::RefCell;
use std::rc::Rc;
use std::vec;
use std::vec::Vec;

const RAM: u64 = 0x4000_0000;
const ENTRY: u64 = RAM + 0x8_0000;

// ESR_EL2 values, from the Arm ARM's ISS layouts.
const ESR_HVC0: u64 = 0x5a00_0000;
const ESR_WFI: u64 = (0x01 << 26) | (1 << 25);
/// A trapped WFE (ISS.TI = 0b01).
const ESR_WFE: u64 = ESR_WFI | 0b01;
/// EC 0x07: an FP/SIMD access trapped by CPTR_EL2.TFP (CV = 1, COND = 0xe).
const ESR_FP: u64 = 0x1fe0_0000;

/// MSR/MRS trap syndrome (EC 0x18) for (op0, op1, crn, crm, op2), Rt, direction.
fn esr_sysreg(r: (u64, u64, u64, u64, u64), rt: u64, read: bool) -> u64 {
    let (op0, op1, crn, crm, op2) = r;
    (0x18 << 26)
        | (1 << 25)
        | (op0 << 20)
        | (op2 << 17)
        | (op1 << 14)
        | (crn << 10)
        | (rt << 5)
        | (crm << 1)
        | read as u64
}

/// A data abort (EC 0x24) on a 32-bit access with ISV = 1, translation fault.
fn esr_mmio(write: bool, srt: u64) -> u64 {
    (0x24 << 26) | (1 << 25) | (1 << 24) | (2 << 22) | (srt << 16) | ((write as u64) << 6) | 0x07
}

fn model() -> VmCpuModel {
    let cpus = [qemu_max()];
    VmCpuModel::new(
        &SystemCpuInfo::new(&cpus).unwrap(),
        &cpus,
        &CachePolicy::Virtual,
        40,
    )
    .unwrap()
}

fn spec(index: usize, vcpus: usize, priority: u8) -> VmSpec {
    VmSpec {
        name: std::format!("vm{index}"),
        index,
        ram_base: RAM,
        ram_size: 4 << 20,
        vcpus,
        kernel: &[0x1f, 0x20, 0x03, 0xd5, 0, 0, 0, 0],
        kernel_kind: ImageKind::Raw {
            load: ENTRY,
            entry: ENTRY,
        },
        initrd: None,
        dtb: None,
        bootargs: None,
        console: true,
        model: model(),
        passthrough: Vec::new(),
        priority,
        timeslice_us: 1000,
    }
}

fn host() -> Host {
    Host {
        // A PMUv3p5 with 6 counters (QEMU's -cpu max), for the PMU tests.
        features: controls::HostFeatures {
            pmu_version: 6,
            pmu_counters: 6,
            ..Default::default()
        },
        stage2: Stage2Geometry::from_pa_range(2).unwrap(),
        nr_lrs: 4,
        priority_bits: 5,
        vmcr_reset: 0x1234,
        gicv: None,
        now_ms: || 0,
    }
}

/// A system: VMs built from `(spec, physical CPU of each vCPU)`, loaded, and
/// one `Pcpu` + fake CPU per physical CPU.
struct System {
    board: Rc<RefCell<Board>>,
    vms: &'static [Vm],
    cpus: Vec<(Pcpu, FakeHw)>,
}

fn system(ncpus: usize, vms: Vec<(VmSpec, Vec<usize>)>) -> System {
    system_on(host(), ncpus, vms)
}

/// [`system`] on a given host.
fn system_on(host: Host, ncpus: usize, vms: Vec<(VmSpec, Vec<usize>)>) -> System {
    let board = Board::new(ncpus);
    let running: &'static RunningCount = Box::leak(Box::new(RunningCount::new(0)));
    let mut mem = FakeMemory::new();
    let built: Vec<Vm> = vms
        .into_iter()
        .map(|(s, pcpus)| Vm::create(s, pcpus, host, &mut mem, running).unwrap())
        .collect();
    let vms: &'static [Vm] = Box::leak(built.into_boxed_slice());
    let mut boot = FakeHw::new(0, &board);
    for vm in vms {
        vm.load(&mut boot).unwrap();
    }
    let cpus = (0..ncpus)
        .map(|c| {
            let vcpus = vms
                .iter()
                .flat_map(|vm| {
                    vm.pcpus()
                        .iter()
                        .enumerate()
                        .filter(move |&(_, &p)| p == c)
                        .map(move |(i, _)| (vm, i))
                })
                .collect();
            let p = Pcpu::new(PcpuConfig {
                index: c,
                vcpus,
                vms,
                uart_intid: None,
                console_input: || {},
            });
            (p, FakeHw::new(c, &board))
        })
        .collect();
    board
        .borrow_mut()
        .pending
        .iter_mut()
        .for_each(|q| q.clear());
    System { board, vms, cpus }
}

/// Runs one step of a CPU's loop; `None` if the CPU went to sleep waiting
/// for a kick (see `fake::Asleep`).
fn step(f: impl FnOnce() -> *mut GuestRegs) -> Option<*mut GuestRegs> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => Some(r),
        Err(e) if e.is::<crate::vm::fake::Asleep>() => None,
        Err(e) => std::panic::resume_unwind(e),
    }
}

impl System {
    /// CPU `c`'s first entry (or its loop resumed after it slept).
    fn start(&mut self, c: usize) -> Option<*mut GuestRegs> {
        let (p, hw) = &mut self.cpus[c];
        step(|| p.start(hw))
    }

    /// The loaded vCPU's registers on CPU `c`.
    fn regs(&mut self, c: usize) -> &mut GuestRegs {
        let p = &mut self.cpus[c].0;
        let i = p.loaded.expect("a vCPU is loaded");
        &mut p.vcpus[i].regs
    }

    fn loaded(&self, c: usize) -> Option<(usize, usize)> {
        self.cpus[c].0.loaded().map(|(vm, id)| (vm.spec.index, id))
    }

    /// An exit on CPU `c` with syndrome `esr` (FAR, HPFAR as given).
    fn exit(&mut self, c: usize, esr: u64, far: u64, hpfar: u64) -> Option<*mut GuestRegs> {
        let (p, hw) = &mut self.cpus[c];
        hw.syndrome = (esr, far, hpfar);
        step(|| p.on_exit(hw, ExitCause::Sync))
    }

    /// An SMCCC call over HVC from CPU `c`'s vCPU; returns its x0 (or 0 if
    /// the call did not return to it: CPU_OFF, SYSTEM_OFF, ...).
    fn hvc(&mut self, c: usize, args: &[u64]) -> u64 {
        for (i, a) in args.iter().enumerate() {
            self.regs(c).x[i] = *a;
        }
        let caller = self.loaded(c);
        self.exit(c, ESR_HVC0, 0, 0);
        if self.loaded(c) == caller && caller.is_some() {
            self.regs(c).x[0]
        } else {
            0
        }
    }

    /// CPU `c` takes whatever physical interrupts are pending there: an IRQ
    /// exit if a vCPU is loaded, else its sleeping loop resumed.
    fn irq(&mut self, c: usize) -> Option<*mut GuestRegs> {
        let (p, hw) = &mut self.cpus[c];
        if p.loaded.is_some() {
            step(|| p.on_exit(hw, ExitCause::Irq))
        } else {
            step(|| p.start(hw))
        }
    }

    fn hw(&mut self, c: usize) -> &mut FakeHw {
        &mut self.cpus[c].1
    }
}

const PSCI_VERSION: u64 = 0x8400_0000;
const CPU_OFF: u64 = 0x8400_0002;
const CPU_ON: u64 = 0xc400_0003;
const AFFINITY_INFO: u64 = 0xc400_0004;
const SYSTEM_OFF: u64 = 0x8400_0008;
const SYSTEM_RESET: u64 = 0x8400_0009;
const NOT_SUPPORTED: u64 = -1i64 as u64;
const ALREADY_ON: u64 = -4i64 as u64;
const ON_PENDING: u64 = -5i64 as u64;

#[test]
fn a_vcpu_starts_at_its_entry_with_the_device_tree_in_x0() {
    let mut s = system(1, vec![(spec(0, 1, 0), vec![0])]);
    s.start(0);
    assert_eq!(s.loaded(0), Some((0, 0)));
    let r = s.regs(0).clone();
    assert_eq!(r.pc, ENTRY);
    assert_eq!(r.pstate, controls::PSTATE_EL1H_MASKED);
    assert!(
        r.x[0] > RAM && r.x[0] < RAM + (4 << 20),
        "x0 is the DTB's IPA"
    );
    let hw = s.hw(0);
    let el2 = hw.el2.expect("EL2 state loaded");
    assert_eq!(el2.vmpidr, 0x8000_0000);
    assert_eq!(hw.el1.sctlr, controls::SCTLR_EL1_RESET);
    // The fake RAM starts as 0xa5 everywhere: loading zeroes what the images
    // do not cover, and puts the kernel at its load address.
    let vm = &s.vms[0];
    assert_eq!(vm.ram_byte(RAM), 0, "RAM zeroed before the images");
    assert_eq!(vm.ram_byte(RAM + (1 << 20)), 0);
    assert_eq!(
        vm.ram_byte(RAM + (2 << 20)),
        0xd0,
        "the device tree's magic"
    );
    assert_eq!(vm.ram_byte(ENTRY), 0x1f, "the kernel's first byte");
}

#[test]
fn a_trap_that_returns_to_the_same_vcpu_switches_nothing() {
    let mut s = system(1, vec![(spec(0, 1, 0), vec![0])]);
    let first = s.start(0);
    let (loads, saves) = (s.hw(0).loads, s.hw(0).saves);
    assert_eq!(s.hvc(0, &[PSCI_VERSION]), 0x1_0001);
    assert_eq!(
        s.hvc(0, &[0x8600_ff00]),
        NOT_SUPPORTED,
        "unknown SMCCC call"
    );
    // MRS x3, ID_AA64PFR0_EL1 (TID3).
    s.exit(0, esr_sysreg((3, 0, 0, 4, 0), 3, true), 0, 0);
    assert_eq!(
        s.regs(0).x[3],
        model()
            .id_reg(crate::sysreg::SysReg::new(3, 0, 0, 4, 0))
            .unwrap()
    );
    let again = s.exit(0, ESR_HVC0, 0, 0);
    assert_eq!(first, again, "the same vCPU's registers");
    assert_eq!(
        (s.hw(0).loads, s.hw(0).saves),
        (loads, saves),
        "no EL1 switch"
    );
}

#[test]
fn unknown_system_registers_and_unclaimed_addresses_are_the_guests_problem() {
    let mut s = system(1, vec![(spec(0, 1, 0), vec![0])]);
    s.start(0);
    s.hw(0).el1.vbar = 0x4010_0000;
    s.regs(0).pc = ENTRY + 0x40;
    // MRS x1, PMCR_EL0: the PMU is hidden.
    s.exit(0, esr_sysreg((3, 3, 9, 12, 0), 1, true), 0, 0);
    let inj = s.hw(0).injected.take().expect("an UNDEF injected");
    assert_eq!(inj.esr >> 26, 0, "EC 0x00: unknown reason");
    assert_eq!(inj.elr, ENTRY + 0x40);
    assert_eq!(s.regs(0).pc, 0x4010_0200, "current EL, SP_ELx, synchronous");
    // A load from an IPA nothing claims: an external data abort.
    s.regs(0).pc = ENTRY + 0x80;
    s.exit(0, esr_mmio(false, 2), 0x3000_0000, 0x3000_0000 >> 8);
    let inj = s.hw(0).injected.take().expect("an abort injected");
    assert_eq!(inj.esr >> 26, 0x25);
    assert_eq!(s.loaded(0), Some((0, 0)), "the vCPU runs on");
}

#[test]
fn cpu_on_starts_the_target_once_and_affinity_info_follows() {
    let mut s = system(2, vec![(spec(0, 2, 0), vec![0, 1])]);
    s.start(0);
    assert_eq!(s.hvc(0, &[AFFINITY_INFO, 1, 0]), 1, "vCPU 1 OFF");
    assert_eq!(s.hvc(0, &[CPU_ON, 1, ENTRY + 0x100, 0x77]), 0);
    assert!(s.board.borrow().kicks.contains(&(0, 1)), "CPU 1 kicked");
    // A second CPU_ON before the target ran: ON_PENDING, entry unchanged.
    assert_eq!(s.hvc(0, &[CPU_ON, 1, ENTRY + 0x200, 0x88]), ON_PENDING);
    assert_eq!(s.hvc(0, &[AFFINITY_INFO, 1, 0]), 2, "ON_PENDING");
    s.start(1);
    assert_eq!(s.loaded(1), Some((0, 1)));
    assert_eq!(s.regs(1).pc, ENTRY + 0x100, "the first caller's entry");
    assert_eq!(s.regs(1).x[0], 0x77);
    assert_eq!(s.hvc(0, &[CPU_ON, 1, ENTRY, 0]), ALREADY_ON);
    assert_eq!(s.hvc(0, &[AFFINITY_INFO, 1, 0]), 0, "ON");
    assert_eq!(s.hw(1).el2.unwrap().vmpidr, 0x8000_0001);
}

#[test]
fn racing_cpu_on_calls_start_the_target_exactly_once() {
    let mut s = system(3, vec![(spec(0, 3, 0), vec![0, 1, 2])]);
    s.start(0);
    assert_eq!(s.hvc(0, &[CPU_ON, 1, ENTRY, 0]), 0);
    s.start(1);
    // vCPUs 0 and 1 both ask for vCPU 2: one SUCCESS, then ON_PENDING.
    let a = s.hvc(0, &[CPU_ON, 2, ENTRY + 0x10, 1]);
    let b = s.hvc(1, &[CPU_ON, 2, ENTRY + 0x20, 2]);
    assert_eq!((a, b), (0, ON_PENDING));
    s.start(2);
    assert_eq!(s.regs(2).x[0], 1);
    assert_eq!(s.hvc(1, &[CPU_ON, 2, ENTRY, 0]), ALREADY_ON);
}

#[test]
fn a_powered_off_vcpu_leaves_nothing_armed_and_restarts_clean() {
    let mut s = system(2, vec![(spec(0, 2, 0), vec![0, 1])]);
    s.start(0);
    s.hvc(0, &[CPU_ON, 1, ENTRY, 0]);
    s.start(1);
    // The guest enables Group 1 and vCPU 1's timer PPI.
    s.vms[0].gic.update(|g| {
        g.gicd_write(0, 4, 0b10);
        g.gicr_write(0x2_0000 + 0x1_0100, 4, 1 << 27);
    });
    // vCPU 1 arms its virtual timer to fire at once, leaves state behind,
    // takes the timer interrupt (acknowledges it: active in its LR), and
    // powers off while it is active.
    {
        let hw = s.hw(1);
        hw.timer.cntv_ctl = 1;
        hw.timer.cntv_cval = 0;
        hw.el1.tpidr_el1 = 0xdead;
    }
    // Its first FP/SIMD instruction traps and makes the registers its own.
    s.exit(1, ESR_FP, 0, 0);
    s.hw(1).fp.v[3] = 0xfeed;
    s.irq(1);
    assert!(
        s.hw(1).active.contains(&27),
        "the timer PPI is active (handed to the guest)"
    );
    let n = (0..4)
        .find(|&n| crate::vgic::lr::decode(s.hw(1).lrs[n]).vintid == 27)
        .expect("the timer interrupt is in an LR");
    let mut l = crate::vgic::lr::decode(s.hw(1).lrs[n]);
    l.pending = false;
    l.active = true;
    s.hw(1).lrs[n] = crate::vgic::lr::encode(&l);
    assert_eq!(s.hvc(1, &[CPU_OFF]), 0);
    assert_eq!(s.loaded(1), None);
    let hw = s.hw(1);
    assert_eq!(hw.timer.cntv_ctl, 0, "the timer is off on the CPU");
    assert!(!hw.active.contains(&27), "no physical PPI left active");
    assert_eq!(hw.el1.tpidr_el1, 0, "nothing of the vCPU readable");
    assert_eq!(hw.fp, FpRegs::default());
    assert_eq!(s.hvc(0, &[AFFINITY_INFO, 1, 0]), 1, "OFF");
    // CPU_ON again: it starts, from reset.
    assert_eq!(s.hvc(0, &[CPU_ON, 1, ENTRY + 0x40, 9]), 0);
    s.irq(1);
    assert_eq!(s.loaded(1), Some((0, 1)));
    assert_eq!(s.regs(1).pc, ENTRY + 0x40);
    assert_eq!(s.hw(1).el1.tpidr_el1, 0);
    // Its virtual timer interrupt is not stuck active in the vGIC: the next
    // expiry is delivered again.
    s.hw(1).timer.cntv_ctl = 1;
    s.irq(1);
    let lrs: Vec<_> = s
        .hw(1)
        .lrs
        .iter()
        .map(|&l| crate::vgic::lr::decode(l))
        .collect();
    assert!(
        lrs.iter()
            .any(|l| l.vintid == 27 && l.pending && l.hw == Some(27)),
        "the timer fires again: {lrs:?}"
    );
}

#[test]
fn system_reset_reloads_the_vm_and_starts_it_from_reset() {
    let mut s = system(2, vec![(spec(0, 2, 0), vec![0, 1])]);
    s.start(0);
    s.hvc(0, &[CPU_ON, 1, ENTRY, 0]);
    s.start(1);
    s.hw(0).el1.vbar = 0x1234_5000;
    s.exit(1, ESR_FP, 0, 0);
    s.hw(1).fp.v[0] = 7;
    // vCPU 1 resets the VM; vCPU 0 is kicked and leaves at its next exit.
    s.hvc(1, &[SYSTEM_RESET]);
    assert_eq!(s.loaded(1), None);
    assert!(s.board.borrow().kicks.contains(&(1, 0)));
    assert_eq!(s.vms[0].state(), VmState::Stopping(Stop::Reset));
    s.irq(0);
    assert_eq!(
        s.vms[0].state(),
        VmState::Running,
        "reloaded by the last one out"
    );
    assert_eq!(s.loaded(0), Some((0, 0)), "vCPU 0 started again");
    assert_eq!(s.regs(0).pc, ENTRY);
    assert_eq!(s.hw(0).el1.vbar, 0, "EL1 state from reset");
    assert_eq!(s.hw(1).fp, FpRegs::default(), "vCPU 1's FP state is gone");
    assert_eq!(s.vms[0].slot(1).power, VcpuPower::Off);
}

#[test]
fn system_off_of_the_last_vm_powers_the_machine_off() {
    let mut s = system(2, vec![(spec(0, 1, 0), vec![0]), (spec(1, 1, 0), vec![1])]);
    s.start(0);
    s.start(1);
    s.hvc(0, &[SYSTEM_OFF]);
    assert_eq!(s.vms[0].state(), VmState::Off);
    assert!(!s.board.borrow().system_off, "VM 1 still runs");
    assert_eq!(s.loaded(1), Some((1, 0)));
    s.hvc(1, &[SYSTEM_OFF]);
    assert!(s.board.borrow().system_off);
}

#[test]
fn an_sgi_to_a_vcpu_on_another_cpu_kicks_it_and_lands_in_its_lrs() {
    let mut s = system(2, vec![(spec(0, 2, 0), vec![0, 1])]);
    s.start(0);
    s.hvc(0, &[CPU_ON, 1, ENTRY, 0]);
    s.start(1);
    // The guest enables Group 1 and SGI 3 on vCPU 1 (GICD_CTLR, GICR_ISENABLER0).
    let gicd = guest_fdt::VIRT_GICD.base;
    let gicr1 = guest_fdt::VIRT_GICR_BASE + 0x2_0000;
    s.regs(0).x[1] = 0b10;
    s.exit(0, esr_mmio(true, 1), gicd, gicd >> 8);
    s.regs(1).x[1] = 1 << 3;
    s.exit(
        1,
        esr_mmio(true, 1),
        gicr1 + 0x1_0100,
        (gicr1 + 0x1_0100) >> 8,
    );
    s.hw(1).gic.vmcr = 0xff << 24 | 0b10;
    s.board.borrow_mut().kicks.clear();
    // vCPU 0: MSR ICC_SGI1R_EL1, x2 with SGI 3 to Aff0 = 1.
    s.regs(0).x[2] = (3 << 24) | 0b10;
    s.exit(0, esr_sysreg((3, 0, 12, 11, 5), 2, false), 0, 0);
    assert_eq!(s.board.borrow().kicks, vec![(0, 1)]);
    s.irq(1);
    let lrs: Vec<_> = s
        .hw(1)
        .lrs
        .iter()
        .map(|&l| crate::vgic::lr::decode(l))
        .collect();
    assert!(lrs.iter().any(|l| l.vintid == 3 && l.pending), "{lrs:?}");
    // An MRS of the write-only SGI register is UNDEFINED.
    s.exit(0, esr_sysreg((3, 0, 12, 11, 5), 2, true), 0, 0);
    assert!(s.hw(0).injected.is_some());
}

#[test]
fn two_vcpus_share_a_cpu_in_turns_and_keep_their_own_state() {
    let mut s = system(1, vec![(spec(0, 2, 0), vec![0, 0])]);
    s.start(0);
    assert_eq!(s.hvc(0, &[CPU_ON, 1, ENTRY + 0x300, 5]), 0);
    // vCPU 0 marks its state (FP/SIMD after the first-use trap); it keeps
    // the CPU until its turn ends.
    s.exit(0, ESR_FP, 0, 0);
    s.hw(0).el1.tpidr_el1 = 0xa0;
    s.hw(0).fp.v[31] = 0xa1;
    s.hw(0).debug.bvr[2] = 0xa2;
    s.exit(0, ESR_HVC0, 0, 0);
    assert_eq!(s.loaded(0), Some((0, 0)));
    let deadline = s.hw(0).hyp_timer.expect("a turn ends by the EL2 timer");
    assert!(
        s.hw(0).hcr & HCR_TWI != 0,
        "WFI traps while another vCPU waits for the CPU"
    );
    // The turn ends: vCPU 1 runs from its entry, with nothing of vCPU 0.
    s.board.borrow_mut().counter = deadline;
    s.board.borrow_mut().raise(0, 26);
    s.irq(0);
    assert_eq!(s.loaded(0), Some((0, 1)));
    assert_eq!(s.regs(0).pc, ENTRY + 0x300);
    assert_eq!(s.hw(0).el1.tpidr_el1, 0);
    assert!(
        s.hw(0).cptr & CPTR_TFP != 0,
        "vCPU 0's FP/SIMD is out of reach"
    );
    s.exit(0, ESR_FP, 0, 0);
    assert_eq!(s.hw(0).fp.v[31], 0);
    assert_eq!(s.hw(0).debug.bvr[2], 0);
    assert_eq!(s.hw(0).el2.unwrap().vmpidr, 0x8000_0001);
    s.hw(0).el1.tpidr_el1 = 0xb0;
    // vCPU 1 waits for an interrupt: vCPU 0 gets the CPU back, state intact.
    s.exit(0, ESR_WFI, 0, 0);
    assert_eq!(s.loaded(0), Some((0, 0)));
    assert_eq!(s.hw(0).el1.tpidr_el1, 0xa0);
    s.exit(0, ESR_FP, 0, 0);
    assert_eq!(s.hw(0).fp.v[31], 0xa1);
    assert_eq!(s.hw(0).debug.bvr[2], 0xa2);
    assert_eq!(s.hw(0).hcr & HCR_TWI, 0, "alone again: WFI runs natively");
}

#[test]
fn a_wfe_traps_only_while_another_vcpu_is_ready_and_yields_the_turn() {
    let mut s = system(1, vec![(spec(0, 2, 0), vec![0, 0])]);
    s.start(0);
    assert_eq!(s.hw(0).hcr & HCR_TWE, 0, "alone: WFE runs natively");
    s.hvc(0, &[CPU_ON, 1, ENTRY + 0x300, 0]);
    s.exit(0, ESR_HVC0, 0, 0);
    assert!(
        s.hw(0).hcr & HCR_TWE != 0,
        "WFE traps while vCPU 1 is ready"
    );
    // vCPU 0 waits for an event (a lock vCPU 1 may hold): vCPU 1 runs at
    // once, long before the turn's end, and vCPU 0 stays ready: it comes
    // back after the instruction when vCPU 1's turn ends.
    let pc = s.regs(0).pc;
    s.exit(0, ESR_WFE, 0, 0);
    assert_eq!(s.loaded(0), Some((0, 1)));
    assert_eq!(s.regs(0).pc, ENTRY + 0x300);
    let deadline = s.hw(0).hyp_timer.expect("vCPU 0 is ready: a turn ends");
    s.board.borrow_mut().counter = deadline;
    s.board.borrow_mut().raise(0, 26);
    s.irq(0);
    assert_eq!(s.loaded(0), Some((0, 0)));
    assert_eq!(s.regs(0).pc, pc + 4, "resumed after its WFE");
}

#[test]
fn a_waiting_vcpus_timer_wakes_it_while_another_runs() {
    let mut s = system(1, vec![(spec(0, 2, 0), vec![0, 0])]);
    s.start(0);
    s.hvc(0, &[CPU_ON, 1, ENTRY, 0]);
    // vCPU 0 arms its virtual timer 1000 ticks ahead and waits.
    let now = s.board.borrow().counter;
    let off = s.hw(0).el2.unwrap().cntvoff;
    s.hw(0).timer.cntv_ctl = 1;
    s.hw(0).timer.cntv_cval = now - off + 1000;
    s.exit(0, ESR_WFI, 0, 0);
    assert_eq!(s.loaded(0), Some((0, 1)), "vCPU 1 runs meanwhile");
    let d = s
        .hw(0)
        .hyp_timer
        .expect("the EL2 timer keeps vCPU 0's deadline");
    assert_eq!(d, now + 1000);
    // vCPU 1 waits too: the CPU idles until the deadline, then runs vCPU 0,
    // whose timer interrupt is then taken.
    s.exit(0, ESR_WFI, 0, 0);
    assert_eq!(s.loaded(0), Some((0, 0)));
    assert!(s.board.borrow().counter >= now + 1000);
}

#[test]
fn a_vcpu_that_wakes_beside_one_that_had_a_whole_turn_alone_runs_at_once() {
    let mut s = system(1, vec![(spec(0, 2, 0), vec![0, 0])]);
    s.start(0);
    s.hvc(0, &[CPU_ON, 1, ENTRY, 0]);
    // vCPU 0 waits on its virtual timer, ten turns (1 ms each) ahead; vCPU 1
    // has the CPU alone meanwhile, with no turn to end.
    let now = s.board.borrow().counter;
    let turn = s.board.borrow().frequency / 1000;
    let off = s.hw(0).el2.unwrap().cntvoff;
    s.hw(0).timer.cntv_ctl = 1;
    s.hw(0).timer.cntv_cval = now - off + 10 * turn;
    s.exit(0, ESR_WFI, 0, 0);
    assert_eq!(s.loaded(0), Some((0, 1)));
    assert_eq!(s.hw(0).hyp_timer, Some(now + 10 * turn));
    // The deadline: vCPU 1 has run ten turns' worth, so vCPU 0 gets the CPU
    // at once, not after one more turn of vCPU 1's.
    s.board.borrow_mut().counter = now + 10 * turn;
    s.board.borrow_mut().raise(0, 26);
    s.irq(0);
    assert_eq!(s.loaded(0), Some((0, 0)));
    // And a vCPU that got the CPU just now keeps its turn when another
    // wakes: vCPU 0 waits again (a short wait), vCPU 1 runs, vCPU 0 wakes
    // a tenth of a turn later and waits for the turn's end.
    let now = s.board.borrow().counter;
    s.hw(0).timer.cntv_cval = now - off + turn / 10;
    s.exit(0, ESR_WFI, 0, 0);
    assert_eq!(s.loaded(0), Some((0, 1)));
    s.board.borrow_mut().counter = now + turn / 10;
    s.board.borrow_mut().raise(0, 26);
    s.irq(0);
    assert_eq!(s.loaded(0), Some((0, 1)), "vCPU 1's turn is not over");
    assert_eq!(s.hw(0).hyp_timer, Some(now + turn));
}

#[test]
fn a_higher_priority_vcpu_that_wakes_preempts_at_once() {
    let mut s = system(1, vec![(spec(0, 1, 0), vec![0]), (spec(1, 1, 5), vec![0])]);
    s.start(0);
    assert_eq!(s.loaded(0), Some((1, 0)), "the real-time VM runs first");
    s.exit(0, ESR_WFI, 0, 0);
    assert_eq!(s.loaded(0), Some((0, 0)));
    // An interrupt for the real-time VM arrives: a kick; it runs at once.
    let rt = &s.vms[1];
    rt.gic.update(|g| {
        g.gicd_write(0, 4, 0b10);
        g.gicr_write(0x1_0100, 4, 1 << 2);
        g.send_sgi(0, SgiRegister::Sgi1r, (2 << 24) | 1);
    });
    s.cpus[0].0.vcpus[1].ctx.gic.vmcr = 0xff << 24 | 0b10;
    s.board.borrow_mut().raise(0, crate::vgic::host::KICK_SGI);
    s.irq(0);
    assert_eq!(s.loaded(0), Some((1, 0)));
}

#[test]
fn a_vm_whose_last_vcpu_calls_cpu_off_is_off() {
    let mut s = system(1, vec![(spec(0, 1, 0), vec![0]), (spec(1, 1, 0), vec![0])]);
    s.start(0);
    let first = s.loaded(0).unwrap().0;
    s.hvc(0, &[CPU_OFF]);
    assert_eq!(s.vms[first].state(), VmState::Off);
    assert_eq!(
        s.loaded(0).map(|l| l.0),
        Some(1 - first),
        "the other VM runs"
    );
}

// ---- FP/SIMD ownership ----

/// Ends the running vCPU's turn on CPU `c` (its EL2 timer fires).
fn end_turn(s: &mut System, c: usize) {
    let deadline = s.hw(c).hyp_timer.expect("a turn ends by the EL2 timer");
    s.board.borrow_mut().counter = deadline;
    s.board.borrow_mut().raise(c, 26);
    s.irq(c);
}

#[test]
fn fp_simd_traps_until_first_use_then_stays_live_on_an_exclusive_cpu() {
    let mut s = system(1, vec![(spec(0, 1, 0), vec![0])]);
    s.start(0);
    assert!(
        s.hw(0).cptr & CPTR_TFP != 0,
        "FP/SIMD traps before first use"
    );
    assert_eq!((s.hw(0).fp_saves, s.hw(0).fp_restores), (0, 0));
    let pc = s.regs(0).pc;
    s.exit(0, ESR_FP, 0, 0);
    assert_eq!(s.regs(0).pc, pc, "the trapped instruction runs again");
    assert!(s.hw(0).injected.is_none(), "not UNDEFINED");
    assert_eq!(s.hw(0).cptr & CPTR_TFP, 0, "the trap is dropped");
    assert_eq!((s.hw(0).fp_saves, s.hw(0).fp_restores), (0, 1));
    s.hw(0).fp.v[0] = 0x1234;
    s.hw(0).fp.fpcr = 0x40_0000;
    for _ in 0..100 {
        s.exit(0, ESR_HVC0, 0, 0);
        s.exit(0, ESR_WFI, 0, 0);
        s.board.borrow_mut().raise(0, 26);
        s.irq(0);
    }
    assert_eq!(s.hw(0).cptr & CPTR_TFP, 0, "alone: never trapped again");
    assert_eq!(
        (s.hw(0).fp_saves, s.hw(0).fp_restores),
        (0, 1),
        "alone: never saved, restored once"
    );
    assert_eq!((s.hw(0).fp.v[0], s.hw(0).fp.fpcr), (0x1234, 0x40_0000));
}

#[test]
fn fp_simd_is_saved_only_when_another_vcpu_uses_it() {
    let mut s = system(1, vec![(spec(0, 2, 0), vec![0, 0])]);
    s.start(0);
    assert_eq!(s.hvc(0, &[CPU_ON, 1, ENTRY + 0x300, 5]), 0);
    s.exit(0, ESR_FP, 0, 0);
    s.hw(0).fp.v[7] = 0x77;
    s.hw(0).fp.fpsr = 0x8000_0000;
    // vCPU 1 runs without touching FP/SIMD: nothing is saved or restored,
    // vCPU 0's registers stay in the hardware behind the trap.
    end_turn(&mut s, 0);
    assert_eq!(s.loaded(0), Some((0, 1)));
    assert!(s.hw(0).cptr & CPTR_TFP != 0);
    assert_eq!((s.hw(0).fp_saves, s.hw(0).fp_restores), (0, 1));
    // Back to vCPU 0: its registers never left; no trap, no copy.
    end_turn(&mut s, 0);
    assert_eq!(s.loaded(0), Some((0, 0)));
    assert_eq!(s.hw(0).cptr & CPTR_TFP, 0, "the owner runs untrapped");
    assert_eq!((s.hw(0).fp_saves, s.hw(0).fp_restores), (0, 1));
    assert_eq!(s.hw(0).fp.v[7], 0x77);
    // vCPU 1 uses FP/SIMD: vCPU 0's state is saved then, and vCPU 1 finds
    // its own (zero at reset), never vCPU 0's.
    end_turn(&mut s, 0);
    assert_eq!(s.loaded(0), Some((0, 1)));
    s.exit(0, ESR_FP, 0, 0);
    assert_eq!((s.hw(0).fp_saves, s.hw(0).fp_restores), (1, 2));
    assert_eq!(s.hw(0).fp, FpRegs::default());
    s.hw(0).fp.v[7] = 0x11;
    // vCPU 0 again: traps, its own values come back exactly.
    end_turn(&mut s, 0);
    assert_eq!(s.loaded(0), Some((0, 0)));
    assert!(s.hw(0).cptr & CPTR_TFP != 0);
    s.exit(0, ESR_FP, 0, 0);
    assert_eq!((s.hw(0).fp.v[7], s.hw(0).fp.fpsr), (0x77, 0x8000_0000));
    // And vCPU 1's in turn.
    end_turn(&mut s, 0);
    s.exit(0, ESR_FP, 0, 0);
    assert_eq!(s.hw(0).fp.v[7], 0x11);
}

#[test]
fn fp_simd_of_a_vcpu_that_powers_off_while_not_loaded_is_scrubbed() {
    let mut s = system(1, vec![(spec(0, 1, 0), vec![0]), (spec(1, 1, 0), vec![0])]);
    s.start(0);
    let first = s.loaded(0).unwrap();
    s.exit(0, ESR_FP, 0, 0);
    s.hw(0).fp.v[1] = 0x5ec7e7;
    end_turn(&mut s, 0);
    let second = s.loaded(0).unwrap();
    assert_ne!(first, second);
    // The first VM is stopped while the second VM's vCPU runs: the first's
    // FP/SIMD registers, still in the hardware, are zeroed.
    s.vms[first.0].stop(Stop::PowerOff);
    s.board.borrow_mut().raise(0, 26);
    s.irq(0);
    assert_eq!(s.loaded(0), Some(second));
    assert_eq!(s.hw(0).fp, FpRegs::default(), "nothing of the stopped VM");
    s.exit(0, ESR_FP, 0, 0);
    assert_eq!(s.hw(0).fp, FpRegs::default());
}

#[test]
fn a_fp_trap_by_the_owner_is_undefined_not_a_loop() {
    let mut s = system(1, vec![(spec(0, 1, 0), vec![0])]);
    s.start(0);
    s.exit(0, ESR_FP, 0, 0);
    assert!(s.hw(0).injected.is_none());
    // Cannot happen with TFP clear; if it does, the guest gets UNDEFINED
    // rather than an endless trap.
    s.exit(0, ESR_FP, 0, 0);
    assert!(s.hw(0).injected.is_some());
}

// ---- RAS ----

#[test]
fn vdisr_and_vsesr_are_each_vcpus_own_where_the_cpu_has_ras() {
    let mut h = host();
    h.features.ras = true;
    h.features.vsesr = true;
    let mut s = system_on(h, 1, vec![(spec(0, 2, 0), vec![0, 0])]);
    s.hw(0).ras = true;
    s.start(0);
    assert_eq!(s.hvc(0, &[CPU_ON, 1, ENTRY + 0x300, 0]), 0);
    assert_eq!(s.hw(0).vdisr, 0, "no deferred SError at reset");
    // vCPU 0 writes its DISR_EL1 (VDISR_EL2 in the hardware, HCR_EL2.AMO)
    // and takes an SError, which stays pending as a virtual SError (masked)
    // with its syndrome in VSESR_EL2.
    s.hw(0).vdisr = 0x8000_0123;
    let syndrome = 0b010 << 10 | 0x11;
    s.hw(0).syndrome = (0x2f << 26 | 1 << 25 | syndrome, 0, 0);
    {
        let (p, hw) = &mut s.cpus[0];
        step(|| p.on_exit(hw, ExitCause::SError));
    }
    assert_eq!(s.loaded(0), Some((0, 0)));
    assert_eq!(s.hw(0).vsesr, syndrome);
    assert!(s.hw(0).hcr & HCR_VSE != 0);
    // vCPU 1's turn: neither register shows anything of vCPU 0.
    end_turn(&mut s, 0);
    assert_eq!(s.loaded(0), Some((0, 1)));
    assert_eq!(s.hw(0).vdisr, 0);
    assert_eq!(s.hw(0).vsesr, controls::SERROR_IDS);
    assert_eq!(s.hw(0).hcr & HCR_VSE, 0);
    s.hw(0).vdisr = 0x55;
    // vCPU 0 again: its DISR_EL1 and its pending SError's syndrome are back.
    end_turn(&mut s, 0);
    assert_eq!(s.loaded(0), Some((0, 0)));
    assert_eq!(s.hw(0).vdisr, 0x8000_0123);
    assert_eq!(s.hw(0).vsesr, syndrome);
    assert!(s.hw(0).hcr & HCR_VSE != 0);
    // Its guest defers the SError with ESB (the PE moves it to VDISR_EL2 and
    // clears HCR_EL2.VSE): that survives the next switches too.
    s.hw(0).vdisr = 0x8000_0000 | syndrome;
    s.hw(0).hcr &= !HCR_VSE;
    end_turn(&mut s, 0);
    assert_eq!(s.hw(0).vdisr, 0x55);
    end_turn(&mut s, 0);
    assert_eq!(s.loaded(0), Some((0, 0)));
    assert_eq!(s.hw(0).vdisr, 0x8000_0000 | syndrome);
    assert_eq!(s.hw(0).hcr & HCR_VSE, 0, "taken once, not raised again");
    // vCPU 0 powers off: the hardware keeps nothing of its DISR_EL1.
    s.hvc(0, &[CPU_OFF]);
    assert_eq!(s.loaded(0), Some((0, 1)));
    assert_eq!(s.hw(0).vdisr, 0x55);
    s.hvc(0, &[CPU_ON, 0, ENTRY, 0]);
    end_turn(&mut s, 0);
    assert_eq!(s.loaded(0), Some((0, 0)));
    assert_eq!(s.hw(0).vdisr, 0, "restarted from reset");
}

#[test]
fn a_cpu_without_ras_never_touches_vdisr_or_vsesr() {
    // The fake panics on any VDISR_EL2/VSESR_EL2 access without FEAT_RAS
    // (UNDEFINED at EL2): switches, an SError and a power-off touch neither.
    let mut s = system(1, vec![(spec(0, 2, 0), vec![0, 0])]);
    s.start(0);
    s.hvc(0, &[CPU_ON, 1, ENTRY + 0x300, 0]);
    s.hw(0).syndrome = (0x2f << 26 | 1 << 25 | 0x11, 0, 0);
    {
        let (p, hw) = &mut s.cpus[0];
        step(|| p.on_exit(hw, ExitCause::SError));
    }
    for _ in 0..4 {
        end_turn(&mut s, 0);
    }
    s.hvc(0, &[CPU_OFF]);
    assert!(s.loaded(0).is_some());
}

// ---- set/way flushes ----

/// DC CISW (op0 1, op1 0, CRn 7, CRm 14, op2 2), trapped by HCR_EL2.TSW.
fn esr_dc_cisw() -> u64 {
    esr_sysreg((1, 0, 7, 14, 2), 0, false)
}

/// A first touch of guest RAM at `ipa` (a stage-2 translation fault).
fn touch(s: &mut System, c: usize, ipa: u64) {
    s.exit(c, esr_mmio(false, 0), ipa, (ipa >> 12) << 4);
}

#[test]
fn a_set_way_flush_cleans_all_mapped_ram_before_the_vcpu_goes_on() {
    let mut s = system(1, vec![(spec(0, 1, 0), vec![0])]);
    s.start(0);
    // The kernel's chunk is mapped at load; the guest touches the second.
    touch(&mut s, 0, RAM + (3 << 20));
    s.board.borrow_mut().cleaned = 0;
    let pc = s.regs(0).pc;
    s.exit(0, esr_dc_cisw(), 0, 0);
    assert_eq!(s.loaded(0), Some((0, 0)));
    assert_eq!(s.regs(0).pc, pc + 4, "the DC CISW completed");
    assert_eq!(s.board.borrow().cleaned, 4 << 20, "every mapped chunk");
}

#[test]
fn a_set_way_flush_lets_another_vcpu_in_between_steps() {
    let mut s = system(1, vec![(spec(0, 1, 0), vec![0]), (spec(1, 1, 0), vec![0])]);
    s.start(0);
    let first = s.loaded(0).unwrap().0;
    touch(&mut s, 0, RAM + (3 << 20));
    s.board.borrow_mut().cleaned = 0;
    let pc = s.regs(0).pc;
    // The turn's end is due while the flush runs: the other VM gets the CPU
    // after the first step, the flush goes on when this one is back.
    let deadline = s
        .hw(0)
        .hyp_timer
        .expect("two VMs share the CPU: a turn ends");
    s.board.borrow_mut().counter = deadline;
    s.board.borrow_mut().raise(0, 26);
    s.exit(0, esr_dc_cisw(), 0, 0);
    assert_eq!(s.loaded(0), Some((1 - first, 0)), "the other VM runs");
    assert_eq!(s.board.borrow().cleaned, 2 << 20, "one step done");
    end_turn(&mut s, 0);
    assert_eq!(s.loaded(0), Some((first, 0)));
    assert_eq!(s.board.borrow().cleaned, 4 << 20, "finished before it ran");
    assert_eq!(s.regs(0).pc, pc + 4);
}

// ---- PMU ----

/// A VM whose guest has a PMU with `counters` event counters.
fn pmu_spec(index: usize, vcpus: usize, counters: u8) -> VmSpec {
    let mut s = spec(index, vcpus, 0);
    s.model.enable_pmu(Some(counters)).unwrap();
    s
}

// PMU register encodings (op0, op1, crn, crm, op2).
const PMCR: (u64, u64, u64, u64, u64) = (3, 3, 9, 12, 0);
const PMCNTENSET: (u64, u64, u64, u64, u64) = (3, 3, 9, 12, 1);
const PMSWINC: (u64, u64, u64, u64, u64) = (3, 3, 9, 12, 4);
const PMEVCNTR0: (u64, u64, u64, u64, u64) = (3, 3, 14, 8, 0);
const PMEVTYPER0: (u64, u64, u64, u64, u64) = (3, 3, 14, 12, 0);
const PMEVCNTR5: (u64, u64, u64, u64, u64) = (3, 3, 14, 8, 5);
const PMINTENSET: (u64, u64, u64, u64, u64) = (3, 0, 9, 14, 1);

impl System {
    fn msr(&mut self, c: usize, r: (u64, u64, u64, u64, u64), v: u64) {
        self.regs(c).x[4] = v;
        self.exit(c, esr_sysreg(r, 4, false), 0, 0);
    }
    fn mrs(&mut self, c: usize, r: (u64, u64, u64, u64, u64)) -> u64 {
        self.exit(c, esr_sysreg(r, 5, true), 0, 0);
        self.regs(c).x[5]
    }
}

#[test]
fn a_guest_pmu_is_emulated_on_the_hardwares_counters() {
    let mut s = system(1, vec![(pmu_spec(0, 1, 4), vec![0])]);
    s.start(0);
    // PMCR_EL0.N is the guest's 4, not the hardware's 6.
    assert_eq!((s.mrs(0, PMCR) >> 11) & 0x1f, 4);
    // Enables beyond its counters are ignored; the cycle counter's bit is its.
    s.msr(0, PMCNTENSET, !0);
    assert_eq!(s.hw(0).pmu.cnten, 0x8000_000f);
    // Its filter writes never set NSH (count at EL2).
    s.msr(0, PMEVTYPER0, !0xffff);
    assert_eq!(s.hw(0).pmu.ty[0] & 1 << 27, 0);
    // SW_INCR (event 0) counted at EL1 (P = 0) as the guest's write would.
    s.msr(0, PMEVTYPER0, 0);
    s.msr(0, PMCR, 1);
    s.msr(0, PMSWINC, 1);
    s.msr(0, PMSWINC, 1);
    assert_eq!(s.mrs(0, PMEVCNTR0), 2);
    assert_eq!(s.hw(0).pmu.swinc_writes, 0);
    // A counter it does not have: UNDEFINED.
    s.hw(0).injected = None;
    s.mrs(0, PMEVCNTR5);
    assert!(s.hw(0).injected.is_some(), "PMEVCNTR5_EL0 UNDEFINED");
    // MDCR_EL2.HPMN = 4 in the EL2 state it runs under.
    let mdcr = s.hw(0).el2.unwrap().controls.mdcr_el2;
    assert_eq!(mdcr & 0x1f, 4);
}

#[test]
fn pmu_counts_stay_with_their_vcpu_across_switches() {
    let mut s = system(1, vec![(pmu_spec(0, 2, 4), vec![0, 0])]);
    s.start(0);
    assert_eq!(s.hvc(0, &[CPU_ON, 1, ENTRY + 0x300, 5]), 0);
    // vCPU 0 counts: counter 0 at 100, enabled, its overflow interrupt on.
    s.msr(0, PMEVCNTR0, 100);
    s.msr(0, PMCNTENSET, 1);
    s.msr(0, PMINTENSET, 1);
    s.msr(0, PMCR, 1);
    s.hw(0).pmu.ovs = 1;
    // Its PMU interrupt is being handled (the physical PPI active).
    s.hw(0).active.insert(23);
    let deadline = s.hw(0).hyp_timer.expect("a turn ends by the EL2 timer");
    s.board.borrow_mut().counter = deadline;
    s.board.borrow_mut().raise(0, 26);
    s.irq(0);
    assert_eq!(s.loaded(0), Some((0, 1)));
    // vCPU 1 finds a PMU fresh from reset: nothing of vCPU 0 counts, fires,
    // or can be read.
    let hw = &s.hw(0).pmu;
    assert_eq!((hw.pmcr & 1, hw.cnten, hw.inten, hw.ovs), (0, 0, 0, 0));
    assert!(
        !s.hw(0).active.contains(&23),
        "PPI 23 not active for vCPU 1"
    );
    assert_eq!(s.mrs(0, PMEVCNTR0), 0);
    s.msr(0, PMEVCNTR0, 7);
    // vCPU 1 waits: vCPU 0 is back with its counts, enables and interrupt.
    s.exit(0, ESR_WFI, 0, 0);
    assert_eq!(s.loaded(0), Some((0, 0)));
    assert_eq!(s.mrs(0, PMEVCNTR0), 100);
    let hw = &s.hw(0).pmu;
    assert_eq!((hw.pmcr & 1, hw.cnten, hw.inten, hw.ovs), (1, 1, 1, 1));
    assert!(s.hw(0).active.contains(&23), "its PPI 23 active again");
}

#[test]
fn a_pmu_overflow_reaches_the_loaded_vcpu_as_ppi_23() {
    let mut s = system(1, vec![(pmu_spec(0, 1, 4), vec![0])]);
    s.start(0);
    // The guest enables Group 1 and PPI 23 (GICD_CTLR, GICR_ISENABLER0).
    let gicd = guest_fdt::VIRT_GICD.base;
    let isenabler0 = guest_fdt::VIRT_GICR_BASE + 0x1_0100;
    s.regs(0).x[1] = 0b10;
    s.exit(0, esr_mmio(true, 1), gicd, gicd >> 8);
    s.regs(0).x[1] = 1 << 23;
    s.exit(0, esr_mmio(true, 1), isenabler0, isenabler0 >> 8);
    s.hw(0).gic.vmcr = 0xff << 24 | 0b10;
    s.board.borrow_mut().raise(0, 23);
    s.irq(0);
    // Acknowledged, left active (priority drop only): hardware-linked.
    assert!(s.hw(0).active.contains(&23));
    let lrs: Vec<_> = s
        .hw(0)
        .lrs
        .iter()
        .map(|&l| crate::vgic::lr::decode(l))
        .collect();
    assert!(
        lrs.iter()
            .any(|l| l.vintid == 23 && l.pending && l.hw == Some(23)),
        "{lrs:?}"
    );
}

#[test]
fn a_vm_without_a_pmu_gets_undefined_and_never_its_interrupt() {
    let mut s = system(1, vec![(spec(0, 1, 0), vec![0])]);
    s.start(0);
    s.hw(0).injected = None;
    s.msr(0, PMCNTENSET, 1);
    assert!(s.hw(0).injected.is_some(), "PMCNTENSET_EL0 UNDEFINED");
    assert_eq!(s.hw(0).pmu.cnten, 0);
    // A stray overflow PPI is dropped and deactivated, not left active.
    s.board.borrow_mut().raise(0, 23);
    s.irq(0);
    assert!(!s.hw(0).active.contains(&23));
}

#[test]
fn a_vcpu_turned_off_and_on_again_finds_its_pmu_at_reset() {
    let mut s = system(2, vec![(pmu_spec(0, 2, 4), vec![0, 1])]);
    s.start(0);
    s.hvc(0, &[CPU_ON, 1, ENTRY, 0]);
    s.start(1);
    // vCPU 1 counts, with its interrupt enabled and an overflow flagged.
    s.msr(1, PMEVCNTR0, 1234);
    s.msr(1, PMCNTENSET, 1);
    s.msr(1, PMINTENSET, 1);
    s.msr(1, PMCR, 1);
    s.hw(1).pmu.ovs = 1;
    assert_eq!(s.hvc(1, &[CPU_OFF]), 0);
    assert_eq!(s.loaded(1), None);
    // Off: nothing of it counts or fires on its CPU.
    let hw = &s.hw(1).pmu;
    assert_eq!((hw.pmcr & 1, hw.cnten, hw.inten, hw.ovs), (0, 0, 0, 0));
    // On again: its PMU as at reset.
    assert_eq!(s.hvc(0, &[CPU_ON, 1, ENTRY, 0]), 0);
    s.start(1);
    assert_eq!(s.loaded(1), Some((0, 1)));
    assert_eq!(s.mrs(1, PMEVCNTR0), 0);
    let hw = &s.hw(1).pmu;
    assert_eq!((hw.pmcr & 1, hw.cnten, hw.inten, hw.ovs), (0, 0, 0, 0));
}

// ---- SVE ownership ----

/// EC 0x19: an SVE instruction or ZCR_EL1 access trapped by CPTR_EL2.TZ.
const ESR_SVE: u64 = (0x19 << 26) | (1 << 25);

/// A VM spec whose CPU model has SVE capped at `vq` quadwords.
fn spec_sve(index: usize, vcpus: usize, vq: usize) -> VmSpec {
    let mut s = spec(index, vcpus, 0);
    s.model.set_sve(vq);
    s
}

/// Byte `b` of Zn in the fake's register file (2048 bits per Z register).
fn z(hw: &FakeHw, n: usize, b: usize) -> u8 {
    hw.sve.buf[n * 256 + b]
}

/// Byte `b` of Pn (n = 16: FFR) in the fake's register file.
fn p(hw: &FakeHw, n: usize, b: usize) -> u8 {
    hw.sve.buf[32 * 256 + n * 32 + b]
}

#[test]
fn sve_state_is_loaded_at_first_sve_use_and_saved_natively_only_when_taken() {
    // VM 0 capped at 512 bits, VM 1 at 256, sharing CPU 0.
    let mut s = system(
        1,
        vec![(spec_sve(0, 1, 4), vec![0]), (spec_sve(1, 1, 2), vec![0])],
    );
    s.start(0);
    let a = s.loaded(0).unwrap();
    assert!(s.hw(0).cptr & CPTR_TFP != 0 && s.hw(0).cptr & CPTR_TZ != 0);
    // FP/SIMD first: only the FP/SIMD state comes in; SVE still traps.
    s.exit(0, ESR_FP, 0, 0);
    assert_eq!(s.hw(0).cptr & CPTR_TFP, 0);
    assert!(s.hw(0).cptr & CPTR_TZ != 0, "SVE traps until its first use");
    assert_eq!((s.hw(0).sve_saves, s.hw(0).sve_restores), (0, 0));
    s.hw(0).fp.v[0] = 0xa0a0;
    // Its first SVE instruction: its SVE state is built from its FP/SIMD
    // state (V0 = the low 128 bits of Z0, the rest zero) and loaded at its cap.
    let pc = s.regs(0).pc;
    s.exit(0, ESR_SVE, 0, 0);
    assert_eq!(s.regs(0).pc, pc, "the SVE instruction runs again");
    assert!(s.hw(0).injected.is_none(), "not UNDEFINED");
    assert_eq!(s.hw(0).cptr & (CPTR_TFP | CPTR_TZ), 0, "both traps dropped");
    assert_eq!(s.hw(0).zcr_el2, 3, "ZCR_EL2.LEN = the VM's cap");
    assert_eq!((s.hw(0).sve_saves, s.hw(0).sve_restores), (0, 1));
    assert_eq!(s.hw(0).fp.v[0], 0xa0a0, "V0 survives into Z0");
    assert!((16..64).all(|b| z(s.hw(0), 0, b) == 0));
    // The guest fills Z0 to its length, P15, FFR, and writes ZCR_EL1.
    for b in 16..64 {
        s.hw(0).sve.buf[b] = 0xa1;
    }
    s.hw(0).sve.buf[32 * 256 + 15 * 32] = 0xa2;
    s.hw(0).sve.buf[32 * 256 + 16 * 32 + 1] = 0xa3;
    s.hw(0).sve.sys[2] = 1;
    // VM 1 runs FP/SIMD only: VM 0's SVE state is saved (native, 512 bits),
    // VM 1 pays for no SVE state at all.
    end_turn(&mut s, 0);
    let b = s.loaded(0).unwrap();
    assert_ne!(a, b);
    s.exit(0, ESR_FP, 0, 0);
    assert_eq!((s.hw(0).sve_saves, s.hw(0).sve_restores), (1, 1));
    assert_eq!(s.hw(0).fp, FpRegs::default(), "VM 1 finds its own (zero) V");
    assert!(s.hw(0).cptr & CPTR_TZ != 0);
    // Its first SVE use: Z, P, FFR to its 256 bits are its own (zero), never
    // VM 0's; its ZCR_EL1 is its own.
    s.exit(0, ESR_SVE, 0, 0);
    assert_eq!(s.hw(0).zcr_el2, 1);
    assert!((0..32).all(|b| z(s.hw(0), 0, b) == 0));
    assert_eq!((p(s.hw(0), 15, 0), p(s.hw(0), 16, 1)), (0, 0));
    assert_eq!(s.hw(0).sve.sys[2], 0);
    s.hw(0).sve.buf[20] = 0xb1;
    // Back to VM 0: its first FP/SIMD access brings its whole SVE state back
    // (it has one), at its own cap.
    end_turn(&mut s, 0);
    assert_eq!(s.loaded(0), Some(a));
    assert!(s.hw(0).cptr & CPTR_TFP != 0);
    s.exit(0, ESR_FP, 0, 0);
    assert_eq!(s.hw(0).cptr & (CPTR_TFP | CPTR_TZ), 0);
    assert_eq!(s.hw(0).zcr_el2, 3);
    assert_eq!(s.hw(0).fp.v[0], 0xa0a0);
    assert!((16..64).all(|b| z(s.hw(0), 0, b) == 0xa1));
    assert_eq!((p(s.hw(0), 15, 0), p(s.hw(0), 16, 1)), (0xa2, 0xa3));
    assert_eq!(s.hw(0).sve.sys[2], 1, "ZCR_EL1 reads back what it wrote");
    // And VM 1's in turn, at 256 bits.
    end_turn(&mut s, 0);
    s.exit(0, ESR_SVE, 0, 0);
    assert_eq!(s.hw(0).zcr_el2, 1);
    assert_eq!(z(s.hw(0), 0, 20), 0xb1);
}

#[test]
fn vcpus_that_only_use_fp_simd_never_pay_for_sve_state() {
    let mut s = system(
        1,
        vec![(spec_sve(0, 1, 16), vec![0]), (spec_sve(1, 1, 16), vec![0])],
    );
    s.start(0);
    for _ in 0..10 {
        s.exit(0, ESR_FP, 0, 0);
        end_turn(&mut s, 0);
    }
    assert_eq!((s.hw(0).sve_saves, s.hw(0).sve_restores), (0, 0));
    assert!(s.hw(0).fp_saves >= 9);
}

#[test]
fn sve_of_a_vm_without_it_is_undefined() {
    let mut s = system(1, vec![(spec(0, 1, 0), vec![0])]);
    s.start(0);
    s.exit(0, ESR_FP, 0, 0);
    s.exit(0, ESR_SVE, 0, 0);
    assert!(s.hw(0).injected.is_some(), "UNDEFINED");
    assert!(s.hw(0).cptr & CPTR_TZ != 0);
    assert_eq!((s.hw(0).sve_saves, s.hw(0).sve_restores), (0, 0));
}

#[test]
fn sve_state_of_a_stopped_vm_is_scrubbed_to_its_cap() {
    let mut s = system(
        1,
        vec![(spec_sve(0, 1, 4), vec![0]), (spec_sve(1, 1, 2), vec![0])],
    );
    s.start(0);
    let first = s.loaded(0).unwrap();
    s.exit(0, ESR_SVE, 0, 0);
    for b in 0..64 {
        s.hw(0).sve.buf[b] = 0x5e;
    }
    s.hw(0).sve.buf[32 * 256 + 3] = 0x5e;
    end_turn(&mut s, 0);
    let second = s.loaded(0).unwrap();
    assert_ne!(first, second);
    s.vms[first.0].stop(Stop::PowerOff);
    s.board.borrow_mut().raise(0, 26);
    s.irq(0);
    assert_eq!(s.loaded(0), Some(second));
    assert!(
        (0..64).all(|b| z(s.hw(0), 0, b) == 0),
        "nothing of the stopped VM"
    );
    assert_eq!(p(s.hw(0), 0, 3), 0);
    assert_eq!(s.hw(0).fp, FpRegs::default());
}
