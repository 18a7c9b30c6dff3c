//! Exit statistics: how often each physical CPU's guest leaves, and why (the
//! exception class, which system register, which emulated device register, which
//! SMCCC function, which physical interrupt). Off unless the hypervisor's own
//! command line (`/chosen/bootargs`, QEMU `-append`) holds the word
//! `ferrovisor.exit_stats`; then each CPU counts its exits, and when a VM asks to
//! stop or reset (PSCI SYSTEM_OFF, SYSTEM_RESET, SYSTEM_RESET2) the counters of
//! every CPU that ran it are logged (`EXIT-STATS` lines, `make bench` reads them)
//! and start again from zero.
//!
//! Pure data: counters the run loop's hooks bump ([`run_guest`] around the world
//! switch, [`irq`] for each physical interrupt taken). Each CPU writes only its own
//! slot, so a counter is a plain load and store, no lock and no atomic
//! read-modify-write; a report read while another CPU is still counting may be a
//! few exits behind, which statistics can afford. Exits answered in the vector's
//! fast paths never reach the run loop and are not counted.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::sysreg::SysReg;
use crate::sysreg::table::SysRegDesc;
use crate::trap::{Exit, WfxKind};
use crate::vgic::host::PhysIrq;
use crate::vm::guest_fdt::{
    GICV3_REDISTRIBUTOR_STRIDE as GICR_STRIDE, VIRT_GICD, VIRT_GICR_BASE, VIRT_GICR_MAX_VCPUS,
    VIRT_UART,
};

/// Whether exits are counted (set once at boot).
static ENABLED: AtomicBool = AtomicBool::new(false);

/// The word on the hypervisor's command line that turns the statistics on.
pub const BOOTARG: &str = "ferrovisor.exit_stats";

/// Whether `bootargs` asks for exit statistics: the word [`BOOTARG`] alone or
/// as `ferrovisor.exit_stats=1`.
pub fn wanted(bootargs: &str) -> bool {
    bootargs
        .split_ascii_whitespace()
        .any(|w| w == BOOTARG || w.strip_prefix(BOOTARG) == Some("=1"))
}

/// Turns counting on (before any vCPU runs).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// A counter with one writer.
struct Counter(AtomicU64);

impl Counter {
    const fn new() -> Self {
        Counter(AtomicU64::new(0))
    }
    fn bump(&self) {
        self.0
            .store(self.0.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
    }
    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
    fn clear(&self) {
        self.0.store(0, Ordering::Relaxed);
    }
}

/// Counts by key, for up to `N` distinct keys (a key is stored plus one, so an
/// empty slot reads 0); further keys are only counted in `others`.
struct Tally<const N: usize> {
    keys: [AtomicU64; N],
    counts: [AtomicU64; N],
    others: Counter,
}

impl<const N: usize> Tally<N> {
    const fn new() -> Self {
        Tally {
            keys: [const { AtomicU64::new(0) }; N],
            counts: [const { AtomicU64::new(0) }; N],
            others: Counter::new(),
        }
    }

    fn bump(&self, key: u64) {
        let stored = key.wrapping_add(1);
        for (k, c) in self.keys.iter().zip(&self.counts) {
            match k.load(Ordering::Relaxed) {
                0 => {
                    k.store(stored, Ordering::Relaxed);
                    c.store(1, Ordering::Relaxed);
                    return;
                }
                s if s == stored => {
                    c.store(c.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                    return;
                }
                _ => {}
            }
        }
        self.others.bump();
    }

    /// `(key, count)`, most frequent first (ties by key).
    fn entries(&self) -> Vec<(u64, u64)> {
        let mut v: Vec<(u64, u64)> = self
            .keys
            .iter()
            .zip(&self.counts)
            .map(|(k, c)| (k.load(Ordering::Relaxed), c.load(Ordering::Relaxed)))
            .filter(|&(k, _)| k != 0)
            .map(|(k, c)| (k - 1, c))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }

    fn clear(&self) {
        for (k, c) in self.keys.iter().zip(&self.counts) {
            k.store(0, Ordering::Relaxed);
            c.store(0, Ordering::Relaxed);
        }
        self.others.clear();
    }
}

/// Why the guest stopped running (the world switch's [`crate::arch::ExitCause`],
/// kept here so the counters build on the host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    Sync,
    Irq,
    Fiq,
    SError,
}

const CAUSES: [&str; 4] = ["sync", "irq", "fiq", "serror"];

/// Synchronous exits by exception class (ESR_EL2.EC), as [`Exit`] names them.
const CLASSES: [&str; 13] = [
    "hvc", "smc", "sysreg", "dabt", "iabt", "wfi", "wfe", "fp", "sve", "sme", "debug", "illegal",
    "other",
];

fn class_of(exit: &Exit) -> usize {
    match exit {
        Exit::Hvc { .. } => 0,
        Exit::Smc { .. } => 1,
        Exit::SysReg(_) => 2,
        Exit::DataAbort(_) => 3,
        Exit::InstAbort(_) => 4,
        Exit::Wfx {
            kind: WfxKind::Wfi | WfxKind::Wfit,
            ..
        } => 5,
        Exit::Wfx { .. } => 6,
        Exit::FpAccess => 7,
        Exit::Sve => 8,
        Exit::Sme { .. } => 9,
        Exit::Debug(_) => 10,
        Exit::IllegalState => 11,
        Exit::Unknown { .. } => 12,
    }
}

/// Physical interrupts taken, by kind.
const IRQS: [&str; 8] = [
    "vtimer",
    "hyptimer",
    "maintenance",
    "kick",
    "host",
    "passthrough",
    "spurious",
    "pmu",
];

fn irq_index(kind: &PhysIrq) -> usize {
    match kind {
        PhysIrq::GuestTimer(_) => 0,
        PhysIrq::HypTimer => 1,
        PhysIrq::Maintenance => 2,
        PhysIrq::Kick => 3,
        PhysIrq::Host(_) => 4,
        PhysIrq::Passthrough { .. } => 5,
        PhysIrq::Spurious => 6,
        PhysIrq::GuestPmu => 7,
    }
}

/// Bit 63 of an MMIO key: a write (IPAs stop at 52 bits).
const MMIO_WRITE: u64 = 1 << 63;
/// Bit 16 of a system-register key: a write (MSR or a system instruction).
const SYSREG_WRITE: u64 = 1 << 16;

/// One physical CPU's counters (so one vCPU's: a CPU runs one vCPU at a time).
pub struct ExitCounters {
    /// The VMID of the guest last counted here.
    vmid: AtomicU64,
    causes: [Counter; 4],
    classes: [Counter; 13],
    sysregs: Tally<48>,
    mmio: Tally<48>,
    smccc: Tally<16>,
    irqs: [Counter; 8],
}

impl Default for ExitCounters {
    fn default() -> Self {
        Self::new()
    }
}

impl ExitCounters {
    pub const fn new() -> Self {
        ExitCounters {
            vmid: AtomicU64::new(0),
            causes: [const { Counter::new() }; 4],
            classes: [const { Counter::new() }; 13],
            sysregs: Tally::new(),
            mmio: Tally::new(),
            smccc: Tally::new(),
            irqs: [const { Counter::new() }; 8],
        }
    }

    /// Counts one exit of the guest with VMID `vmid`; `exit` and `x0` (the
    /// guest's, for an SMCCC call) for a synchronous one.
    pub fn record(&self, vmid: u64, cause: Cause, sync: Option<(&Exit, u64)>) {
        self.vmid.store(vmid, Ordering::Relaxed);
        self.causes[cause as usize].bump();
        let Some((exit, x0)) = sync else { return };
        self.classes[class_of(exit)].bump();
        match exit {
            Exit::SysReg(acc) => self
                .sysregs
                .bump(u64::from(acc.reg.packed()) | if acc.write { SYSREG_WRITE } else { 0 }),
            Exit::DataAbort(da) => self.mmio.bump(da.ipa | if da.wnr { MMIO_WRITE } else { 0 }),
            Exit::Hvc { .. } | Exit::Smc { .. } => self.smccc.bump(x0 & 0xffff_ffff),
            _ => {}
        }
    }

    /// Counts one physical interrupt taken on this CPU.
    pub fn record_irq(&self, kind: &PhysIrq) {
        self.irqs[irq_index(kind)].bump();
    }

    pub fn vmid(&self) -> u64 {
        self.vmid.load(Ordering::Relaxed)
    }

    /// Exits counted since the last [`ExitCounters::clear`].
    pub fn exits(&self) -> u64 {
        self.causes.iter().map(Counter::get).sum()
    }

    pub fn clear(&self) {
        for c in self.causes.iter().chain(&self.classes).chain(&self.irqs) {
            c.clear();
        }
        self.sysregs.clear();
        self.mmio.clear();
        self.smccc.clear();
    }

    /// The report, one line per aspect, each starting `EXIT-STATS cpu=<cpu>`:
    /// `exits` (by cause), `class` (synchronous exits by exception class),
    /// `sysreg`, `mmio`, `smccc` (by register, device register and function ID,
    /// most frequent first) and `irq` (physical interrupts by kind).
    pub fn report(&self, cpu: usize) -> Vec<String> {
        let head = format!("EXIT-STATS cpu={cpu} vmid={}", self.vmid());
        let named = |names: &[&str], counters: &[Counter]| -> String {
            names
                .iter()
                .zip(counters)
                .map(|(n, c)| format!(" {n}={}", c.get()))
                .collect()
        };
        let tally = |t: &[(u64, u64)], others: u64, name: &dyn Fn(u64) -> String| -> String {
            let mut s: String = t
                .iter()
                .map(|&(k, n)| format!(" {}={n}", name(k)))
                .collect();
            if others > 0 {
                s.push_str(&format!(" others={others}"));
            }
            s
        };
        alloc::vec![
            format!(
                "{head} exits={}{}",
                self.exits(),
                named(&CAUSES, &self.causes)
            ),
            format!("{head} class{}", named(&CLASSES, &self.classes)),
            format!(
                "{head} sysreg{}",
                tally(
                    &self.sysregs.entries(),
                    self.sysregs.others.get(),
                    &sysreg_name
                )
            ),
            format!(
                "{head} mmio{}",
                tally(&self.mmio.entries(), self.mmio.others.get(), &mmio_name)
            ),
            format!(
                "{head} smccc{}",
                tally(
                    &self.smccc.entries(),
                    self.smccc.others.get(),
                    &|k| format!("{k:#x}")
                )
            ),
            format!("{head} irq{}", named(&IRQS, &self.irqs)),
        ]
    }
}

/// `NAME:r` / `NAME:w` for a system-register key: the descriptor table's name,
/// the vGIC's SGI registers by name, anything else as `S<op0>_<op1>_C<n>_C<m>_<op2>`.
fn sysreg_name(key: u64) -> String {
    // The packed encoding (SysReg::packed): Op0 [15:14], Op1 [13:11], CRn [10:7],
    // CRm [6:3], Op2 [2:0].
    let reg = SysReg::new(
        (key >> 14) as u8 & 0x3,
        (key >> 11) as u8 & 0x7,
        (key >> 7) as u8 & 0xf,
        (key >> 3) as u8 & 0xf,
        key as u8 & 0x7,
    );
    let dir = if key & SYSREG_WRITE != 0 { "w" } else { "r" };
    let name = match SysRegDesc::find(reg) {
        Some(d) => String::from(d.name),
        None if reg == crate::vgic::sgi::ICC_SGI1R_EL1 => String::from("ICC_SGI1R_EL1"),
        None if reg == crate::vgic::sgi::ICC_ASGI1R_EL1 => String::from("ICC_ASGI1R_EL1"),
        None if reg == crate::vgic::sgi::ICC_SGI0R_EL1 => String::from("ICC_SGI0R_EL1"),
        None => format!("{reg}"),
    };
    format!("{name}:{dir}")
}

/// `DEVICE+offset:r|w` for an MMIO key, with QEMU virt's devices named (the
/// layout every VM sees): `GICD`, `GICR<n>` (redistributor `n`), `UART`; any other
/// address as itself.
fn mmio_name(key: u64) -> String {
    let ipa = key & !MMIO_WRITE;
    let dir = if key & MMIO_WRITE != 0 { "w" } else { "r" };
    let place = if (VIRT_GICD.base..VIRT_GICD.base + VIRT_GICD.size).contains(&ipa) {
        format!("GICD+{:#x}", ipa - VIRT_GICD.base)
    } else if (VIRT_UART.base..VIRT_UART.base + VIRT_UART.size).contains(&ipa) {
        format!("UART+{:#x}", ipa - VIRT_UART.base)
    } else if (VIRT_GICR_BASE..VIRT_GICR_BASE + VIRT_GICR_MAX_VCPUS as u64 * GICR_STRIDE)
        .contains(&ipa)
    {
        let off = ipa - VIRT_GICR_BASE;
        format!("GICR{}+{:#x}", off / GICR_STRIDE, off % GICR_STRIDE)
    } else {
        format!("{ipa:#x}")
    };
    format!("{place}:{dir}")
}

/// PSCI function IDs that stop or restart the whole VM (Arm DEN0022: SYSTEM_OFF,
/// SYSTEM_RESET, SYSTEM_RESET2 in its SMC32 and SMC64 forms): the report is
/// written when the guest makes one of these calls.
const VM_STOPS: [u64; 4] = [0x8400_0008, 0x8400_0009, 0x8400_0012, 0xc400_0012];

/// Whether `exit` (with the guest's `x0`) asks for the whole VM to stop or reset.
pub fn stops_vm(exit: &Exit, x0: u64) -> bool {
    matches!(exit, Exit::Hvc { .. } | Exit::Smc { .. }) && VM_STOPS.contains(&(x0 & 0xffff_ffff))
}

#[cfg(target_os = "none")]
mod hw {
    //! The hooks, on the target: per-CPU slots, the world switch wrapped.

    use super::*;
    use crate::arch::{boot::MAX_CPUS, percpu, regs};
    use crate::vm::pcpu::ExitCause;
    use crate::vm::vcpu::GuestRegs;

    static CPUS: [ExitCounters; MAX_CPUS] = [const { ExitCounters::new() }; MAX_CPUS];

    /// When counting, counts an exit the vector just took, by what ESR_EL2,
    /// FAR_EL2 and HPFAR_EL2 say (decoded as the run loop decodes them). A VM
    /// that asks to stop or reset gets its report written here, before the run
    /// loop handles the call.
    #[inline(always)]
    pub fn exit(cause: ExitCause, gprs: &GuestRegs) {
        if enabled() {
            observe(cause, gprs);
        }
    }

    #[inline(never)]
    fn observe(cause: ExitCause, gprs: &GuestRegs) {
        let Some(counters) = CPUS.get(percpu::current_index()) else {
            return;
        };
        // VTTBR_EL2.VMID, bits [63:48] (16-bit VMIDs; [55:48] otherwise).
        let vmid = regs::read_vttbr_el2() >> 48;
        let cause = match cause {
            ExitCause::Sync => Cause::Sync,
            ExitCause::Irq => Cause::Irq,
            ExitCause::Fiq => Cause::Fiq,
            ExitCause::SError => Cause::SError,
        };
        if cause != Cause::Sync {
            counters.record(vmid, cause, None);
            return;
        }
        let exit = crate::trap::decode(
            regs::read_esr_el2(),
            regs::read_far_el2(),
            regs::read_hpfar_el2(),
        );
        counters.record(vmid, cause, Some((&exit, gprs.x[0])));
        if stops_vm(&exit, gprs.x[0]) {
            report_vm(vmid);
        }
    }

    /// Counts a physical interrupt taken on this CPU (in the guest or idle).
    #[inline(always)]
    pub fn irq(kind: &PhysIrq) {
        if enabled()
            && let Some(c) = CPUS.get(percpu::current_index())
        {
            c.record_irq(kind);
        }
    }

    /// Logs the counters of every CPU whose last guest was VM `vmid`, then clears
    /// them.
    fn report_vm(vmid: u64) {
        for (cpu, c) in CPUS.iter().enumerate() {
            if c.vmid() == vmid && c.exits() > 0 {
                for line in c.report(cpu) {
                    log::info!("{line}");
                }
                c.clear();
            }
        }
    }
}

#[cfg(target_os = "none")]
pub use hw::{exit, irq};

/// Host builds count nothing (the run loop's tests run without the hooks).
#[cfg(not(target_os = "none"))]
pub fn irq(_kind: &PhysIrq) {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trap::{DataAbort, FaultStatus, SysRegAccess};

    fn sysreg(reg: SysReg, write: bool) -> Exit {
        Exit::SysReg(SysRegAccess { reg, rt: 0, write })
    }

    fn mmio(ipa: u64, wnr: bool) -> Exit {
        Exit::DataAbort(DataAbort {
            ipa,
            ipa_valid: true,
            far: ipa,
            isv: true,
            sas: 4,
            sse: false,
            srt: 1,
            sf: false,
            ar: false,
            wnr,
            s1ptw: false,
            cm: false,
            ea: false,
            dfsc: FaultStatus::Translation { level: 3 },
            fnv: false,
        })
    }

    #[test]
    fn bootarg_word() {
        assert!(wanted("console=ttyAMA0 ferrovisor.exit_stats"));
        assert!(wanted("ferrovisor.exit_stats=1 quiet"));
        assert!(!wanted("ferrovisor.exit_stats=0"));
        assert!(!wanted("xferrovisor.exit_stats"));
        assert!(!wanted(""));
    }

    #[test]
    fn counts_by_cause_class_and_key() {
        let c = ExitCounters::new();
        let icc_sgi1r = crate::vgic::sgi::ICC_SGI1R_EL1;
        let pfr0 = SysReg::new(3, 0, 0, 4, 0);
        for _ in 0..3 {
            c.record(1, Cause::Sync, Some((&sysreg(icc_sgi1r, true), 0)));
        }
        c.record(1, Cause::Sync, Some((&sysreg(pfr0, false), 0)));
        c.record(1, Cause::Sync, Some((&mmio(0x0900_0018, false), 0)));
        c.record(
            1,
            Cause::Sync,
            Some((&mmio(0x080a_0000 + 0x2_0000 + 0x80, true), 0)),
        );
        c.record(1, Cause::Sync, Some((&Exit::Hvc { imm: 0 }, 0x8400_0000)));
        c.record(
            1,
            Cause::Sync,
            Some((
                &Exit::Wfx {
                    kind: WfxKind::Wfi,
                    rt: None,
                },
                0,
            )),
        );
        c.record(1, Cause::Irq, None);
        c.record_irq(&PhysIrq::GuestTimer(27));
        c.record_irq(&PhysIrq::Kick);
        c.record_irq(&PhysIrq::Kick);
        assert_eq!(c.exits(), 9);
        let r = c.report(3);
        assert_eq!(r.len(), 6);
        assert_eq!(
            r[0],
            "EXIT-STATS cpu=3 vmid=1 exits=9 sync=8 irq=1 fiq=0 serror=0"
        );
        assert!(
            r[1].contains(" hvc=1 ") && r[1].contains(" sysreg=4 "),
            "{}",
            r[1]
        );
        assert!(
            r[1].contains(" dabt=2 ") && r[1].contains(" wfi=1 "),
            "{}",
            r[1]
        );
        assert_eq!(
            r[2],
            "EXIT-STATS cpu=3 vmid=1 sysreg ICC_SGI1R_EL1:w=3 ID_AA64PFR0_EL1:r=1"
        );
        assert_eq!(
            r[3],
            "EXIT-STATS cpu=3 vmid=1 mmio UART+0x18:r=1 GICR1+0x80:w=1"
        );
        assert_eq!(r[4], "EXIT-STATS cpu=3 vmid=1 smccc 0x84000000=1");
        assert!(
            r[5].contains(" vtimer=1 ") && r[5].contains(" kick=2 "),
            "{}",
            r[5]
        );
        c.clear();
        assert_eq!(c.exits(), 0);
        assert_eq!(c.report(3)[2], "EXIT-STATS cpu=3 vmid=1 sysreg");
    }

    #[test]
    fn tally_overflow_goes_to_others() {
        let c = ExitCounters::new();
        for i in 0..50u64 {
            c.record(1, Cause::Sync, Some((&mmio(0x1000_0000 + i * 4, false), 0)));
        }
        c.record(1, Cause::Sync, Some((&mmio(0x1000_0000, false), 0)));
        let r = c.report(0);
        assert!(r[3].ends_with(" others=2"), "{}", r[3]);
        assert!(r[3].contains(" 0x10000000:r=2 "), "{}", r[3]);
    }

    #[test]
    fn vm_stops_are_psci_system_calls() {
        let hvc = Exit::Hvc { imm: 0 };
        assert!(stops_vm(&hvc, 0x8400_0008));
        assert!(stops_vm(&hvc, 0xffff_ffff_8400_0009));
        assert!(stops_vm(&Exit::Smc { imm: 0 }, 0xc400_0012));
        assert!(!stops_vm(&hvc, 0x8400_0002), "CPU_OFF stops one vCPU only");
        assert!(!stops_vm(
            &sysreg(SysReg::new(3, 0, 0, 4, 0), false),
            0x8400_0008
        ));
    }
}
