//! A fake of the hardware the run loop drives ([`Hw`]), for host tests: one
//! [`FakeHw`] per physical CPU, all sharing one [`Board`] (the counter, each
//! CPU's pending physical interrupts, what was asked of the firmware), so
//! tests run several CPUs' loops in turn and see their kicks arrive.
//!
//! It models what the loop relies on: registers that keep what is written;
//! level-sensitive timer PPIs that assert while a loaded timer's condition
//! holds and are not active; acknowledged interrupts active until deactivated
//! (priority drop alone leaves them active); WFI that, with nothing pending,
//! moves time on to the next timer deadline (the EL2 timer's or a loaded
//! guest timer's). With no deadline either, the CPU would sleep until another
//! CPU kicks it: the fake then unwinds with [`Asleep`], which the test harness
//! catches as "this CPU now waits"; the loop is at a clean point there (no
//! lock held, nothing half done) and a later call resumes it.

use std::cell::RefCell;
use std::collections::{BTreeSet, VecDeque};
use std::rc::Rc;
use std::vec::Vec;

use crate::sysreg::SysReg;
use crate::vgic::ListRegisters;
use crate::vgic::host::{
    Completion, HYP_TIMER_INTID, KICK_SGI, PHYSICAL_TIMER_INTID, VIRTUAL_TIMER_INTID,
};
use crate::vm::exit::GuestHw;
use crate::vm::hw::{El2State, Hw};
use crate::vm::machine::{GuestRam, VmMemory};
use crate::vm::vcpu::{DebugRegs, El1Regs, FpRegs, GicCpuRegs, SveRegs, TimerRegs};

/// What all fake CPUs share.
#[derive(Debug)]
pub(crate) struct Board {
    pub counter: u64,
    pub frequency: u64,
    /// Pending physical interrupts per CPU, in arrival order.
    pub pending: Vec<VecDeque<u32>>,
    /// Kicks sent: (from, to).
    pub kicks: Vec<(usize, usize)>,
    /// SPIs deactivated at the distributor.
    pub spi_deactivated: Vec<u32>,
    /// PPIs deactivated on another CPU: (cpu, intid).
    pub ppi_deactivated: Vec<(usize, u32)>,
    pub system_off: bool,
    /// Bytes cleaned and invalidated.
    pub cleaned: u64,
    /// Stage-2 descriptors written: (descriptor address, value).
    pub stage2_writes: Vec<(u64, u64)>,
}

impl Board {
    pub fn new(cpus: usize) -> Rc<RefCell<Board>> {
        Rc::new(RefCell::new(Board {
            counter: 1_000_000,
            frequency: 62_500_000,
            pending: (0..cpus).map(|_| VecDeque::new()).collect(),
            kicks: Vec::new(),
            spi_deactivated: Vec::new(),
            ppi_deactivated: Vec::new(),
            system_off: false,
            stage2_writes: Vec::new(),
            cleaned: 0,
        }))
    }

    /// Makes physical interrupt `intid` pending on `cpu`.
    pub fn raise(&mut self, cpu: usize, intid: u32) {
        if !self.pending[cpu].contains(&intid) {
            self.pending[cpu].push_back(intid);
        }
    }
}

/// The payload a fake CPU unwinds with when it would sleep until kicked.
#[derive(Debug)]
pub(crate) struct Asleep;

/// The exception registers an injection wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Injected {
    pub esr: u64,
    pub far: Option<u64>,
    pub elr: u64,
    pub spsr: u64,
}

/// One fake physical CPU.
pub(crate) struct FakeHw {
    pub cpu: usize,
    pub board: Rc<RefCell<Board>>,
    /// ESR_EL2, FAR_EL2, HPFAR_EL2 of the next exit.
    pub syndrome: (u64, u64, u64),
    pub el2: Option<El2State>,
    pub hcr: u64,
    /// This CPU has FEAT_RAS: VDISR_EL2 and VSESR_EL2 exist (without it,
    /// touching them panics, as the instruction would be UNDEFINED at EL2).
    pub ras: bool,
    /// VDISR_EL2: the loaded guest's DISR_EL1 (HCR_EL2.AMO set).
    pub vdisr: u64,
    pub vsesr: u64,
    /// CPTR_EL2 as last written (whole by `load_el2`, or alone).
    pub cptr: u64,
    pub el1: El1Regs,
    pub fp: FpRegs,
    /// The SVE register file at its largest (2048 bits): Z0-Z31, P0-P15, FFR
    /// in `SveRegs` layout with 16 quadwords; Zn's low 128 bits are `fp.v[n]`
    /// (kept there, not here). `sys[2]` is ZCR_EL1.
    pub sve: SveRegs,
    /// ZCR_EL2 as last written.
    pub zcr_el2: u64,
    pub sve_saves: usize,
    pub sve_restores: usize,
    pub debug: DebugRegs,
    pub timer: TimerRegs,
    pub gic: GicCpuRegs,
    pub lrs: [u64; 16],
    pub ich_hcr: u64,
    pub hyp_timer: Option<u64>,
    pub injected: Option<Injected>,
    /// Physical interrupts acknowledged and not yet deactivated.
    pub active: BTreeSet<u32>,
    /// How many times each kind of state was loaded and saved.
    pub loads: usize,
    pub saves: usize,
    /// How many times the FP/SIMD registers were saved and restored.
    pub fp_saves: usize,
    pub fp_restores: usize,
    /// VM control registers written through HCR_EL2.TVM traps.
    pub vm_controls: Vec<(SysReg, u64)>,
    /// The PMU's registers (PMCR_EL0.N = 6, as QEMU's).
    pub pmu: crate::sysreg::pmu::FakePmu,
}

impl FakeHw {
    pub fn new(cpu: usize, board: &Rc<RefCell<Board>>) -> Self {
        FakeHw {
            cpu,
            board: board.clone(),
            syndrome: (0, 0, 0),
            el2: None,
            hcr: 0,
            ras: false,
            vdisr: 0,
            vsesr: 0,
            cptr: 0,
            el1: El1Regs::default(),
            fp: FpRegs::default(),
            sve: SveRegs::new(16),
            zcr_el2: 0,
            sve_saves: 0,
            sve_restores: 0,
            debug: DebugRegs::default(),
            timer: TimerRegs::default(),
            gic: GicCpuRegs::default(),
            lrs: [0; 16],
            ich_hcr: 0,
            hyp_timer: None,
            injected: None,
            active: BTreeSet::new(),
            loads: 0,
            saves: 0,
            fp_saves: 0,
            fp_restores: 0,
            vm_controls: Vec::new(),
            pmu: crate::sysreg::pmu::FakePmu {
                n: 6,
                ..Default::default()
            },
        }
    }

    /// What the SVE save and restore need: FP/SIMD and SVE untrapped at EL2
    /// (CPTR_EL2.TFP, TZ) and EL2's vector length the buffer's.
    fn check_sve(&self, s: &SveRegs) {
        assert_eq!(
            self.cptr & (1 << 10),
            0,
            "SVE used at EL2 with CPTR_EL2.TFP set"
        );
        assert_eq!(
            self.cptr & (1 << 8),
            0,
            "SVE used at EL2 with CPTR_EL2.TZ set"
        );
        assert!(s.vq != 0 && s.buf.len() == SveRegs::bytes(s.vq));
        assert_eq!(
            (self.zcr_el2 & 0xf) as usize + 1,
            s.vq,
            "ZCR_EL2.LEN is not the layout's vector length"
        );
    }

    fn now(&self) -> u64 {
        self.board.borrow().counter
    }

    /// A timer CTL as the hardware shows it: ISTATUS from the condition.
    fn ctl_with_status(ctl: u64, cval: u64, count: u64) -> u64 {
        let met = ctl & 1 != 0 && count >= cval;
        (ctl & 0b11) | ((met as u64) << 2)
    }

    fn cntvct(&self) -> u64 {
        let off = self.el2.map(|s| s.cntvoff).unwrap_or(0);
        self.now().wrapping_sub(off)
    }

    /// Raises the timer PPIs whose condition holds (level-sensitive: while
    /// asserted and not active).
    fn sample_timers(&mut self) {
        let v = Self::ctl_with_status(self.timer.cntv_ctl, self.timer.cntv_cval, self.cntvct());
        let p = Self::ctl_with_status(self.timer.cntp_ctl, self.timer.cntp_cval, self.now());
        for (ctl, intid) in [(v, VIRTUAL_TIMER_INTID), (p, PHYSICAL_TIMER_INTID)] {
            if crate::timer::asserted(ctl) && !self.active.contains(&intid) {
                self.board.borrow_mut().raise(self.cpu, intid);
            }
        }
        if let Some(d) = self.hyp_timer.filter(|&d| self.now() >= d) {
            let _ = d;
            if !self.active.contains(&HYP_TIMER_INTID) {
                self.board.borrow_mut().raise(self.cpu, HYP_TIMER_INTID);
            }
        }
    }

    /// The next time something here fires by itself.
    fn next_event(&self) -> Option<u64> {
        let off = self.el2.map(|s| s.cntvoff).unwrap_or(0);
        let v = crate::timer::deadline(self.timer.cntv_ctl, self.timer.cntv_cval, off)
            .filter(|_| !self.active.contains(&VIRTUAL_TIMER_INTID));
        let p = crate::timer::deadline(self.timer.cntp_ctl, self.timer.cntp_cval, 0)
            .filter(|_| !self.active.contains(&PHYSICAL_TIMER_INTID));
        [v, p, self.hyp_timer].into_iter().flatten().min()
    }
}

impl GuestHw for FakeHw {
    fn vbar_el1(&self) -> u64 {
        self.el1.vbar
    }
    fn sctlr_el1(&self) -> u64 {
        self.el1.sctlr
    }
    fn write_exception_regs(&mut self, esr: u64, far: Option<u64>, elr: u64, spsr: u64) {
        self.el1.esr = esr;
        if let Some(f) = far {
            self.el1.far = f;
        }
        self.el1.elr = elr;
        self.el1.spsr = spsr;
        self.injected = Some(Injected {
            esr,
            far,
            elr,
            spsr,
        });
    }
}

impl crate::sysreg::pmu::PmuAccess for FakeHw {
    fn pmu_read(&mut self, reg: crate::sysreg::pmu::PmuHw) -> u64 {
        crate::sysreg::pmu::PmuAccess::pmu_read(&mut self.pmu, reg)
    }
    fn pmu_write(&mut self, reg: crate::sysreg::pmu::PmuHw, value: u64) {
        crate::sysreg::pmu::PmuAccess::pmu_write(&mut self.pmu, reg, value)
    }
}

impl ListRegisters for FakeHw {
    fn read_lr(&self, n: usize) -> u64 {
        self.lrs[n]
    }
    fn write_lr(&mut self, n: usize, value: u64) {
        self.lrs[n] = value;
    }
    fn write_hcr(&mut self, value: u64) {
        self.ich_hcr = value;
    }
}

impl Hw for FakeHw {
    fn this_cpu(&self) -> usize {
        self.cpu
    }
    fn syndrome(&self) -> (u64, u64, u64) {
        self.syndrome
    }
    fn load_el2(&mut self, s: &El2State) {
        self.el2 = Some(*s);
        self.hcr = s.hcr;
        self.cptr = s.controls.cptr_el2;
    }
    fn write_hcr_el2(&mut self, hcr: u64) {
        self.hcr = hcr;
    }
    fn read_hcr_el2(&self) -> u64 {
        self.hcr
    }
    fn write_vsesr_el2(&mut self, value: u64) {
        assert!(self.ras, "VSESR_EL2 written on a CPU without FEAT_RAS");
        self.vsesr = value;
    }
    fn has_ras(&self) -> bool {
        self.ras
    }
    fn read_vdisr_el2(&self) -> u64 {
        assert!(self.ras, "VDISR_EL2 read on a CPU without FEAT_RAS");
        self.vdisr
    }
    fn write_vdisr_el2(&mut self, value: u64) {
        assert!(self.ras, "VDISR_EL2 written on a CPU without FEAT_RAS");
        self.vdisr = value;
    }
    fn tlbi_vmid(&mut self) {}
    fn save_el1(&mut self, r: &mut El1Regs) {
        *r = self.el1.clone();
        self.saves += 1;
    }
    fn restore_el1(&mut self, r: &El1Regs) {
        self.el1 = r.clone();
        self.loads += 1;
    }
    fn write_vm_control(&mut self, reg: SysReg, value: u64) -> bool {
        self.vm_controls.push((reg, value));
        true
    }
    fn write_cptr_el2(&mut self, value: u64) {
        self.cptr = value;
    }
    fn save_fp(&mut self, f: &mut FpRegs) {
        // CPTR_EL2.TFP traps EL2's own FP/SIMD instructions as well.
        assert_eq!(
            self.cptr & (1 << 10),
            0,
            "FP/SIMD used at EL2 with CPTR_EL2.TFP set"
        );
        *f = self.fp.clone();
        self.fp_saves += 1;
    }
    fn restore_fp(&mut self, f: &FpRegs) {
        // CPTR_EL2.TFP traps EL2's own FP/SIMD instructions as well.
        assert_eq!(
            self.cptr & (1 << 10),
            0,
            "FP/SIMD used at EL2 with CPTR_EL2.TFP set"
        );
        self.fp = f.clone();
        self.fp_restores += 1;
    }
    fn write_zcr_el2(&mut self, value: u64) {
        // CPTR_EL2.TZ traps EL2's own ZCR_EL2 accesses (Arm ARM, ZCR_EL2).
        assert_eq!(
            self.cptr & (1 << 8),
            0,
            "ZCR_EL2 written with CPTR_EL2.TZ set"
        );
        self.zcr_el2 = value;
    }
    fn save_sve(&mut self, s: &mut SveRegs) {
        self.check_sve(s);
        let vl = 16 * s.vq;
        for n in 0..32 {
            s.buf[n * vl..(n + 1) * vl].copy_from_slice(&self.sve.buf[n * 256..n * 256 + vl]);
            s.buf[n * vl..n * vl + 16].copy_from_slice(&self.fp.v[n].to_le_bytes());
        }
        let pl = vl / 8;
        for n in 0..17 {
            let at = 32 * 256 + n * 32;
            s.buf[32 * vl + n * pl..32 * vl + (n + 1) * pl]
                .copy_from_slice(&self.sve.buf[at..at + pl]);
        }
        s.sys = [self.fp.fpsr, self.fp.fpcr, self.sve.sys[2]];
        self.sve_saves += 1;
    }
    fn restore_sve(&mut self, s: &SveRegs) {
        self.check_sve(s);
        let vl = 16 * s.vq;
        for n in 0..32 {
            self.sve.buf[n * 256..n * 256 + vl].copy_from_slice(&s.buf[n * vl..(n + 1) * vl]);
        }
        let pl = vl / 8;
        for n in 0..17 {
            let at = 32 * 256 + n * 32;
            self.sve.buf[at..at + pl]
                .copy_from_slice(&s.buf[32 * vl + n * pl..32 * vl + (n + 1) * pl]);
        }
        self.fp = s.to_fp();
        self.sve.sys[2] = s.sys[2];
        self.sve_restores += 1;
    }
    fn save_debug(&mut self, d: &mut DebugRegs) {
        *d = self.debug;
    }
    fn restore_debug(&mut self, d: &DebugRegs) {
        self.debug = *d;
    }
    fn counter(&self) -> u64 {
        self.now()
    }
    fn counter_frequency(&self) -> u64 {
        self.board.borrow().frequency
    }
    fn save_timers(&mut self, t: &mut TimerRegs) {
        *t = self.timer;
        t.vtimer_active = self.active.remove(&VIRTUAL_TIMER_INTID);
        t.ptimer_active = self.active.remove(&PHYSICAL_TIMER_INTID);
        self.timer = TimerRegs::default();
        let mut b = self.board.borrow_mut();
        b.pending[self.cpu].retain(|&i| i != VIRTUAL_TIMER_INTID && i != PHYSICAL_TIMER_INTID);
    }
    fn restore_timers(&mut self, t: &TimerRegs) {
        self.timer = *t;
        self.timer.vtimer_active = false;
        self.timer.ptimer_active = false;
        if t.vtimer_active {
            self.active.insert(VIRTUAL_TIMER_INTID);
        }
        if t.ptimer_active {
            self.active.insert(PHYSICAL_TIMER_INTID);
        }
    }
    fn read_cntv_ctl(&self) -> u64 {
        Self::ctl_with_status(self.timer.cntv_ctl, self.timer.cntv_cval, self.cntvct())
    }
    fn read_cntp_ctl(&self) -> u64 {
        Self::ctl_with_status(self.timer.cntp_ctl, self.timer.cntp_cval, self.now())
    }
    fn set_hyp_timer(&mut self, deadline: Option<u64>) {
        self.hyp_timer = deadline;
        if deadline.is_none() {
            self.board.borrow_mut().pending[self.cpu].retain(|&i| i != HYP_TIMER_INTID);
        }
    }
    fn save_gic_cpu(&mut self, g: &mut GicCpuRegs) {
        *g = self.gic;
    }
    fn restore_gic_cpu(&mut self, g: &GicCpuRegs) {
        self.gic = *g;
    }
    fn read_ich_vmcr(&self) -> u64 {
        self.gic.vmcr
    }
    fn acknowledge(&mut self) -> u32 {
        self.sample_timers();
        let mut b = self.board.borrow_mut();
        let q = &mut b.pending[self.cpu];
        match q.iter().position(|i| !self.active.contains(i)) {
            Some(n) => {
                let intid = q.remove(n).unwrap_or(1023);
                self.active.insert(intid);
                intid
            }
            None => 1023,
        }
    }
    fn complete(&mut self, intid: u32, how: Completion) {
        if how == Completion::DropAndDeactivate {
            self.active.remove(&intid);
        }
    }
    fn kick(&mut self, cpu: usize) {
        let mut b = self.board.borrow_mut();
        b.kicks.push((self.cpu, cpu));
        b.raise(cpu, KICK_SGI);
    }
    fn deactivate_ppi_on(&mut self, cpu: usize, intid: u32) {
        if cpu == self.cpu {
            self.active.remove(&intid);
        }
        self.board.borrow_mut().ppi_deactivated.push((cpu, intid));
    }
    fn deactivate_spi(&mut self, intid: u32) {
        self.active.remove(&intid);
        self.board.borrow_mut().spi_deactivated.push(intid);
    }
    fn route_spi(&mut self, _intid: u32, _cpu: usize) {}
    fn take_ppi_active(&mut self, intid: u32) -> bool {
        self.active.remove(&intid)
    }
    fn set_ppi_active(&mut self, intid: u32) {
        self.active.insert(intid);
    }
    fn clean_invalidate(&mut self, _pa: u64, len: u64) {
        self.board.borrow_mut().cleaned += len;
    }
    fn write_stage2_entry(&mut self, entry_pa: u64, desc: u64) {
        self.board.borrow_mut().stage2_writes.push((entry_pa, desc));
    }
    fn wait_for_interrupt(&mut self) {
        self.sample_timers();
        if !self.board.borrow().pending[self.cpu].is_empty() {
            return;
        }
        let Some(next) = self.next_event() else {
            std::panic::resume_unwind(std::boxed::Box::new(Asleep));
        };
        {
            let mut b = self.board.borrow_mut();
            b.counter = b.counter.max(next);
        }
        self.sample_timers();
    }
    fn system_off(&mut self) {
        self.board.borrow_mut().system_off = true;
    }
}

/// Guest RAM on the host heap, at a made-up physical address.
pub(crate) struct FakeRam {
    pa: u64,
    bytes: Vec<u8>,
}

impl FakeRam {
    /// `len` bytes of RAM at 0x8000_0000 holding a pattern (not zero).
    pub fn new(len: usize) -> Self {
        FakeRam {
            pa: 0x8000_0000,
            bytes: std::vec![0xa5; len],
        }
    }
}

impl GuestRam for FakeRam {
    fn pa(&self) -> u64 {
        self.pa
    }
    fn len(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
}

/// RAM and page tables for building test VMs.
pub(crate) struct FakeMemory {
    next_pa: u64,
    tables: crate::mm::pagetable::fake::FakeTableMemory,
}

impl FakeMemory {
    pub fn new() -> Self {
        FakeMemory {
            next_pa: 0x8000_0000,
            tables: crate::mm::pagetable::fake::FakeTableMemory::new(),
        }
    }
}

impl VmMemory for FakeMemory {
    type Tables = crate::mm::pagetable::fake::FakeTableMemory;
    fn alloc_ram(&mut self, bytes: u64, align: u64) -> Option<std::boxed::Box<dyn GuestRam>> {
        let pa = self.next_pa.next_multiple_of(align);
        self.next_pa = pa + bytes;
        Some(std::boxed::Box::new(FakeRam {
            pa,
            bytes: std::vec![0xa5; bytes as usize],
        }))
    }
    fn tables(&mut self) -> &mut Self::Tables {
        &mut self.tables
    }
}
