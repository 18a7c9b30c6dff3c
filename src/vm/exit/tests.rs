use super::*;
use crate::devices::{MmioAccess, MmioBus, MmioDevice};
use crate::psci::VcpuPower;
use crate::sysreg::SysReg;
use crate::trap::{self, SysRegAccess};
use alloc::boxed::Box;

#[derive(Default)]
struct Regs {
    x: [u64; 31],
    pc: u64,
    pstate: u64,
}

impl GuestGprs for Regs {
    fn x(&self, n: u8) -> u64 {
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

#[derive(Default)]
struct El1 {
    esr: u64,
    far: Option<u64>,
    elr: u64,
    spsr: u64,
}

impl GuestHw for El1 {
    fn vbar_el1(&self) -> u64 {
        0x4010_0000
    }
    fn sctlr_el1(&self) -> u64 {
        0
    }
    fn write_exception_regs(&mut self, esr: u64, far: Option<u64>, elr: u64, spsr: u64) {
        self.esr = esr;
        self.far = far;
        self.elr = elr;
        self.spsr = spsr;
    }
}

struct OneCpu;
impl PsciVm for OneCpu {
    fn vcpu_count(&self) -> usize {
        1
    }
    fn vcpu_by_mpidr(&self, mpidr: u64) -> Option<usize> {
        (mpidr == 0).then_some(0)
    }
    fn vcpu_power(&self, _: usize) -> VcpuPower {
        VcpuPower::On
    }
    fn is_guest_ram(&self, ipa: u64) -> bool {
        (0x4000_0000..0x4800_0000).contains(&ipa)
    }
    fn caller_is_aarch32(&self) -> bool {
        false
    }
}

struct Latch(u64);
impl MmioDevice for Latch {
    fn name(&self) -> &str {
        "latch"
    }
    fn read(&mut self, _: MmioAccess) -> u64 {
        self.0
    }
    fn write(&mut self, _: MmioAccess, v: u64) {
        self.0 = v;
    }
}

/// The test's exit environment: EL1 registers, a bus, the sysreg answer.
struct Env<'a> {
    el1: El1,
    faults: FaultLog,
    bus: MmioBus,
    sysreg: &'a mut dyn FnMut(SysRegAccess, u64) -> SysRegResult,
    /// RAM mapped on first touch: the IPAs populated.
    populated: Vec<u64>,
}

impl GuestHw for Env<'_> {
    fn vbar_el1(&self) -> u64 {
        self.el1.vbar_el1()
    }
    fn sctlr_el1(&self) -> u64 {
        self.el1.sctlr_el1()
    }
    fn write_exception_regs(&mut self, esr: u64, far: Option<u64>, elr: u64, spsr: u64) {
        self.el1.write_exception_regs(esr, far, elr, spsr)
    }
}

impl ExitEnv for Env<'_> {
    fn sysreg(&mut self, acc: SysRegAccess, value: u64) -> SysRegResult {
        (self.sysreg)(acc, value)
    }
    fn mmio_read(&mut self, ipa: u64, size: u8) -> Option<u64> {
        self.bus.read(ipa, size)
    }
    fn mmio_write(&mut self, ipa: u64, size: u8, value: u64) -> bool {
        self.bus.write(ipa, size, value)
    }
    fn populate(&mut self, ipa: u64) -> bool {
        let ram = (0x4000_0000..0x4800_0000).contains(&ipa);
        if ram {
            self.populated.push(ipa);
        }
        ram
    }
    fn note_fault(&mut self) -> Option<u64> {
        self.faults.note()
    }
}

/// Runs one exit with a bus holding a latch at 0x0900_0000 and returns
/// (next, registers, EL1 state, latch value read back).
fn run(
    exit: Exit,
    regs: Regs,
    sysreg: &mut dyn FnMut(SysRegAccess, u64) -> SysRegResult,
) -> (Next, Regs, El1, Option<u64>) {
    let mut regs = regs;
    let mut bus = MmioBus::new();
    bus.add(0x0900_0000, 0x1000, Box::new(Latch(0xffff_ff80)))
        .unwrap();
    let mut env = Env {
        el1: El1::default(),
        faults: FaultLog::default(),
        bus,
        sysreg,
        populated: Vec::new(),
    };
    let mut psci = OneCpu;
    let next = ExitContext {
        gprs: &mut regs,
        env: &mut env,
        psci: &mut psci,
        features: &PStateFeatures::default(),
        instr_len: 4,
    }
    .handle(exit);
    let latch = env.bus.read(0x0900_0000, 8);
    (next, regs, env.el1, latch)
}

fn no_sysreg(_: SysRegAccess, _: u64) -> SysRegResult {
    panic!("no system register access expected")
}

fn el1h_at(pc: u64) -> Regs {
    Regs {
        pc,
        pstate: 0x3c5,
        ..Regs::default()
    }
}

// ESR values built from the Arm ARM ISS layouts (the trap module's tests check
// the decoder on the same kind of values).
const ESR_HVC0: u64 = 0x5a00_0000;
const ESR_SMC0: u64 = 0x5e00_0000;

#[test]
fn psci_version_over_hvc_and_smc() {
    let mut r = el1h_at(0x4008_0004);
    r.x[0] = 0x8400_0000;
    let (next, r2, _, _) = run(trap::decode(ESR_HVC0, 0, 0), r, &mut no_sysreg);
    assert_eq!(next, Next::Resume);
    assert_eq!(r2.x[0], 0x1_0001);
    assert_eq!(
        r2.pc, 0x4008_0004,
        "HVC's return address is already past it"
    );

    let mut r = el1h_at(0x4008_0000);
    r.x[0] = 0x8400_0000;
    let (_, r2, _, _) = run(trap::decode(ESR_SMC0, 0, 0), r, &mut no_sysreg);
    assert_eq!(r2.x[0], 0x1_0001);
    assert_eq!(r2.pc, 0x4008_0004, "a trapped SMC is stepped over");
}

#[test]
fn system_off_and_reset() {
    let mut r = el1h_at(0);
    r.x[0] = 0x8400_0008;
    assert_eq!(
        run(trap::decode(ESR_HVC0, 0, 0), r, &mut no_sysreg).0,
        Next::SystemOff
    );
    let mut r = el1h_at(0);
    r.x[0] = 0x8400_0009;
    assert_eq!(
        run(trap::decode(ESR_HVC0, 0, 0), r, &mut no_sysreg).0,
        Next::SystemReset
    );
}

/// A stage-2 translation fault (level 3) on a 32-bit access with ISV = 1.
fn mmio_esr(write: bool, srt: u64, sas: u64, sse: bool, sf: bool) -> u64 {
    (0x24 << 26)
        | (1 << 25)
        | (1 << 24)
        | (sas << 22)
        | ((sse as u64) << 21)
        | (srt << 16)
        | ((sf as u64) << 15)
        | ((write as u64) << 6)
        | 0x07
}

#[test]
fn mmio_store_and_sign_extending_load() {
    let hpfar = 0x0900_0000 >> 8; // FIPA = IPA[47:12] in HPFAR[43:4]
    let mut r = el1h_at(0x4008_0100);
    r.x[3] = 0x1234_5678_9abc_def0;
    let esr = mmio_esr(true, 3, 2, false, false);
    let (next, r2, _, latch) = run(trap::decode(esr, 0x0900_0000, hpfar), r, &mut no_sysreg);
    assert_eq!(next, Next::Resume);
    assert_eq!(
        latch,
        Some(0x9abc_def0),
        "a 32-bit store writes the low word"
    );
    assert_eq!(r2.pc, 0x4008_0104);

    // LDRSB x5: one byte 0x80 sign-extended to 64 bits.
    let esr = mmio_esr(false, 5, 0, true, true);
    let (_, r2, _, _) = run(
        trap::decode(esr, 0x0900_0000, hpfar),
        el1h_at(0x100),
        &mut no_sysreg,
    );
    assert_eq!(r2.x[5], 0xffff_ffff_ffff_ff80);
    // LDR w6 of 4 bytes: zero-extended.
    let esr = mmio_esr(false, 6, 2, false, false);
    let (_, r2, _, _) = run(
        trap::decode(esr, 0x0900_0000, hpfar),
        el1h_at(0x100),
        &mut no_sysreg,
    );
    assert_eq!(r2.x[6], 0xffff_ff80);
}

#[test]
fn unclaimed_address_gets_an_external_abort() {
    let hpfar = 0x3000_0000 >> 8;
    let esr = mmio_esr(false, 1, 2, false, false);
    let (next, r2, el1, _) = run(
        trap::decode(esr, 0x3000_0000, hpfar),
        el1h_at(0x4008_0200),
        &mut no_sysreg,
    );
    assert_eq!(next, Next::Resume);
    assert_eq!(el1.esr, 0x9600_0010, "EC 0x25, IL, DFSC 0x10");
    assert_eq!(el1.far, Some(0x3000_0000));
    assert_eq!(el1.elr, 0x4008_0200, "returns to the faulting load");
    assert_eq!(r2.pc, 0x4010_0200, "current EL with SP_ELx vector");
}

#[test]
fn sysreg_read_write_and_undef() {
    // MRS x7, CCSIDR_EL1: Op0=3 Op1=1 CRn=0 CRm=0 Op2=0, direction read.
    let esr = (0x18u64 << 26) | (1 << 25) | (3 << 20) | (1 << 14) | (7 << 5) | 1;
    let mut seen = None;
    let (_, r2, _, _) = run(trap::decode(esr, 0, 0), el1h_at(0x200), &mut |acc, _| {
        seen = Some(acc);
        SysRegResult::Read(0x7003_e01a)
    });
    let acc = seen.unwrap();
    assert_eq!(
        (acc.reg, acc.rt, acc.write),
        (SysReg::new(3, 1, 0, 0, 0), 7, false)
    );
    assert_eq!(r2.x[7], 0x7003_e01a);
    assert_eq!(r2.pc, 0x204);

    // The same access refused: UNDEFINED at the instruction, PC not advanced past it.
    let (_, r2, el1, _) = run(trap::decode(esr, 0, 0), el1h_at(0x200), &mut |_, _| {
        SysRegResult::Undefined
    });
    assert_eq!(el1.esr, 0x0200_0000);
    assert_eq!(el1.elr, 0x200);
    assert_eq!(r2.pc, 0x4010_0200);
    assert_eq!(r2.x[7], 0, "Rt untouched");
}

#[test]
fn wfi_idles_and_steps_over() {
    let esr = (0x01u64 << 26) | (1 << 25); // WFI
    let (next, r2, _, _) = run(trap::decode(esr, 0, 0), el1h_at(0x300), &mut no_sysreg);
    assert_eq!(next, Next::Idle);
    assert_eq!(r2.pc, 0x304);
}

#[test]
fn load_extension_rules() {
    assert_eq!(extend_load(0x80, 1, true, true), 0xffff_ffff_ffff_ff80);
    assert_eq!(extend_load(0x80, 1, true, false), 0xffff_ff80);
    assert_eq!(extend_load(0x80, 1, false, true), 0x80);
    assert_eq!(
        extend_load(0x8000_0000, 4, true, true),
        0xffff_ffff_8000_0000
    );
    assert_eq!(extend_load(u64::MAX, 8, true, true), u64::MAX);
}

#[test]
fn fault_log_is_bounded() {
    let mut f = FaultLog::default();
    let logged = (0..100_000).filter(|_| f.note().is_some()).count() as u32;
    // The default budget's clock stands still: the burst, then nothing.
    assert_eq!(logged, FaultLog::BURST);
}

#[test]
fn first_touch_of_ram_is_retried_not_emulated() {
    // A load from guest RAM not mapped yet: a stage-2 Translation fault
    // (DFSC level 3) at an IPA inside RAM. The RAM gets mapped and the load
    // runs again: PC unchanged, nothing injected, no register written.
    let hpfar = 0x4100_0000 >> 8;
    let esr = mmio_esr(false, 4, 3, false, true);
    let mut r = el1h_at(0x4008_0300);
    r.x[4] = 0x55;
    let (next, r2, el1, _) = run(trap::decode(esr, 0x4100_0008, hpfar), r, &mut no_sysreg);
    assert_eq!(next, Next::Resume);
    assert_eq!(r2.pc, 0x4008_0300, "the access is retried");
    assert_eq!(r2.x[4], 0x55);
    assert_eq!(el1.esr, 0, "no exception for the guest");
    // The same instruction fetch.
    let iesr = (0x20u64 << 26) | (1 << 25) | 0b000111; // IABT lower EL, translation L3
    let (next, r2, el1, _) = run(
        trap::decode(iesr, 0x4100_2000, 0x4100_2000 >> 8),
        el1h_at(0x4100_2000),
        &mut no_sysreg,
    );
    assert_eq!(next, Next::Resume);
    assert_eq!(r2.pc, 0x4100_2000);
    assert_eq!(el1.esr, 0);
}
