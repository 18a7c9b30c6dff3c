//! The physical GICv2 (GIC-400) at EL2: the distributor (GICD), this CPU's
//! interface (GICC, memory-mapped) and its virtual interface control frame
//! (GICH). `gic` and `hostgic` hand every call here when the host's GIC is a
//! GICv2 ([`active`]), so the run loop and `hw::ArchHw` are the same for both
//! versions.
//!
//! The rest of the hypervisor speaks the GICv3 layouts: list registers are
//! converted by `vgic::lr_v2` at this boundary (GICH_LR <-> ICH_LR<n>_EL2);
//! GICH_VTR, GICH_VMCR and GICH_MISR put the fields the vGIC reads at the same
//! bits as ICH_VTR_EL2, ICH_VMCR_EL2 and ICH_MISR_EL2 (IHI 0048B.b 5.3.3,
//! 5.3.4, 5.3.5), and GICH_APR is the one active-priority register a 5-bit
//! virtual priority has (the place of ICH_AP0R0_EL2).
//!
//! Register offsets and rules are IHI 0048B.b (GICv2), cited by section.

use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, Ordering};

use spin::Once;

use super::boot::MAX_CPUS;
use super::percpu;
use super::regs::{dsb_ishst, dsb_sy, isb};
use crate::vgic::host::{self, Completion};
use crate::vgic::lr_v2::{self, gich_lr};

// GICD (4.1.2, table 4-1).
const GICD_CTLR: usize = 0x000;
const GICD_TYPER: usize = 0x004;
const GICD_ISENABLER: usize = 0x100;
const GICD_ICENABLER: usize = 0x180;
const GICD_ICPENDR: usize = 0x280;
const GICD_ISACTIVER: usize = 0x300;
const GICD_ICACTIVER: usize = 0x380;
const GICD_IPRIORITYR: usize = 0x400;
const GICD_ITARGETSR: usize = 0x800;
const GICD_ICFGR: usize = 0xC00;
const GICD_SGIR: usize = 0xF00;

// GICC (4.1.3, table 4-2).
const GICC_CTLR: usize = 0x0000;
const GICC_PMR: usize = 0x0004;
const GICC_BPR: usize = 0x0008;
const GICC_IAR: usize = 0x000C;
const GICC_EOIR: usize = 0x0010;
/// GICC_DIR is at 0x1000, in the frame's second page (wherever that is).
const GICC_DIR: usize = 0x0000;

// GICH (5.3, table 5-1).
const GICH_HCR: usize = 0x000;
const GICH_VTR: usize = 0x004;
const GICH_VMCR: usize = 0x008;
const GICH_MISR: usize = 0x010;
const GICH_EISR0: usize = 0x020;
const GICH_ELRSR0: usize = 0x030;
const GICH_APR: usize = 0x0F0;
const GICH_LR0: usize = 0x100;

/// GICC_CTLR: Enable (bit 0: EnableGrp0 without the Security Extensions,
/// EnableGrp1 in the Non-secure view of a GIC with them) and EOImode (bit 9 in
/// both views: EOImodeNS / EOImode): priority drop and deactivation split
/// (4.4.1), as ICC_CTLR_EL1.EOImode on the GICv3 path.
const GICC_CTLR_ENABLE_EOIMODE: u32 = 1 | (1 << 9);
/// GICD_CTLR.Enable (bit 0 in both views, 4.3.1).
const GICD_CTLR_ENABLE: u32 = 1;

/// The priority the hypervisor gives every interrupt it enables (as on GICv3).
const HOST_PRIORITY: u32 = 0xA0;

struct Frames {
    gicd: usize,
    gicc: usize,
    /// GICC's second 4 KiB page (GICC_DIR), `vgic::lr_v2::cpu_interface_second_page`.
    gicc_page2: usize,
    gich: usize,
    uart_intid: Option<u32>,
}

static ACTIVE: AtomicBool = AtomicBool::new(false);
static FRAMES: Once<Frames> = Once::new();
/// Each CPU's GIC CPU interface number, as a GICD_ITARGETSR / GICD_SGIR
/// target-list bit (read from GICD_ITARGETSR0 on that CPU).
static CPU_IF_MASK: [AtomicU8; MAX_CPUS] = [const { AtomicU8::new(0) }; MAX_CPUS];
/// Per CPU and SGI, the source CPU of the SGI last acknowledged there: a
/// GICv2 EOI or DIR of an SGI names its source (GICC_EOIR.CPUID, 4.4.5).
static SGI_SOURCE: [[AtomicU8; 16]; MAX_CPUS] =
    [const { [const { AtomicU8::new(0) }; 16] }; MAX_CPUS];
/// PPIs to deactivate on a CPU, asked for from another one (GICD_ICACTIVER0
/// is banked: only the CPU itself reaches its PPIs, 4.3.6). That CPU is kicked
/// and does it at its next acknowledge.
static PPI_DEACTIVATE: [AtomicU32; MAX_CPUS] = [const { AtomicU32::new(0) }; MAX_CPUS];

/// Whether the host's GIC is a GICv2 (set once by [`init_boot`]).
#[inline]
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

fn frames() -> &'static Frames {
    FRAMES.get().expect("GICv2 used before init_boot")
}

fn rd(addr: usize) -> u32 {
    // SAFETY: `addr` is inside the GICD, GICC or GICH frame the host device
    // tree gives, identity-mapped as Device memory (`map_el2`); 32-bit
    // accesses are what these registers take (IHI 0048B.b 4.1.4, 5.3).
    unsafe { read_volatile(addr as *const u32) }
}

fn wr(addr: usize, v: u32) {
    // SAFETY: as `rd`.
    unsafe { write_volatile(addr as *mut u32, v) }
}

fn wr8(addr: usize, v: u8) {
    // SAFETY: as `rd`; GICD_ITARGETSR and GICD_IPRIORITYR are byte-accessible
    // (4.1.4).
    unsafe { write_volatile(addr as *mut u8, v) }
}

fn rd8(addr: usize) -> u8 {
    // SAFETY: as `wr8`.
    unsafe { read_volatile(addr as *const u8) }
}

fn gicd(off: usize) -> usize {
    frames().gicd + off
}
fn gicc(off: usize) -> usize {
    frames().gicc + off
}
fn gich(off: usize) -> usize {
    frames().gich + off
}

/// This CPU's interface mask from GICD_ITARGETSR0 (4.3.12: the fields of
/// INTIDs 0-31 read as the reading CPU's own bit). A uniprocessor GIC has
/// them RAZ; CPU interface 0 is then the only one.
fn read_own_mask() -> u8 {
    match rd8(gicd(GICD_ITARGETSR)) {
        0 => 1,
        m => m,
    }
}

/// Brings the distributor up (boot CPU, before the others start): every SPI
/// disabled, inactive, not pending, level, one priority, targeted at the boot
/// CPU; then forwarding on (4.3.1).
pub fn init_boot(gicd: u64, gicc: [u64; 2], gich: u64, uart_intid: Option<u32>) {
    FRAMES.call_once(|| Frames {
        gicd: gicd as usize,
        gicc: gicc[0] as usize,
        gicc_page2: gicc[1] as usize,
        gich: gich as usize,
        uart_intid,
    });
    ACTIVE.store(true, Ordering::Relaxed);
    wr(self::gicd(GICD_CTLR), 0);
    let lines = host::gicd_interrupt_lines(rd(self::gicd(GICD_TYPER)));
    let boot = read_own_mask();
    let prio = HOST_PRIORITY * 0x0101_0101;
    for w in 1..(lines / 32) as usize {
        wr(self::gicd(GICD_ICENABLER + 4 * w), u32::MAX);
        wr(self::gicd(GICD_ICPENDR + 4 * w), u32::MAX);
        wr(self::gicd(GICD_ICACTIVER + 4 * w), u32::MAX);
    }
    for w in 8..(lines / 4) as usize {
        wr(self::gicd(GICD_IPRIORITYR + 4 * w), prio);
        wr(
            self::gicd(GICD_ITARGETSR + 4 * w),
            u32::from(boot) * 0x0101_0101,
        );
    }
    for w in 2..(lines / 16) as usize {
        wr(self::gicd(GICD_ICFGR + 4 * w), 0);
    }
    if let Some(intid) = uart_intid {
        enable_spi(intid);
    }
    wr(self::gicd(GICD_CTLR), GICD_CTLR_ENABLE);
}

/// This CPU's banked distributor registers (its SGIs and PPIs: disabled,
/// inactive, not pending, one priority, then `enable` enabled), its CPU
/// interface (every priority unmasked, EOImode = 1) and its virtual interface
/// in the reset state.
pub fn init_this_cpu(logical: usize, enable: &[u32]) {
    let mask = read_own_mask();
    if let Some(m) = CPU_IF_MASK.get(logical) {
        m.store(mask, Ordering::Relaxed);
    }
    wr(gicd(GICD_ICENABLER), u32::MAX);
    wr(gicd(GICD_ICPENDR), u32::MAX);
    wr(gicd(GICD_ICACTIVER), u32::MAX);
    for w in 0..8 {
        wr(gicd(GICD_IPRIORITYR + 4 * w), HOST_PRIORITY * 0x0101_0101);
    }
    for &intid in enable {
        wr(gicd(GICD_ISENABLER), 1 << intid);
    }
    // GICC_PMR: 0xff lets every implemented priority through (4.4.2: the
    // unimplemented low bits read as zero).
    wr(gicc(GICC_PMR), 0xff);
    wr(gicc(GICC_BPR), 0);
    wr(gicc(GICC_CTLR), GICC_CTLR_ENABLE_EOIMODE);
    reset_virtual_cpu_interface();
}

// ---- the physical CPU interface ----

fn apply_remote_ppi_deactivations() {
    let cpu = percpu::current_index();
    if let Some(p) = PPI_DEACTIVATE.get(cpu)
        && p.load(Ordering::Relaxed) != 0
    {
        let bits = p.swap(0, Ordering::Acquire);
        wr(gicd(GICD_ICACTIVER), bits);
    }
}

/// The SGI source bits to put back into an EOIR/DIR write (4.4.5).
fn with_source(intid: u32) -> u32 {
    if intid < 16 {
        let cpu = percpu::current_index();
        let src = SGI_SOURCE
            .get(cpu)
            .map_or(0, |s| s[intid as usize].load(Ordering::Relaxed));
        intid | (u32::from(src) << 10)
    } else {
        intid
    }
}

/// Acknowledges the highest-priority pending interrupt (GICC_IAR): its INTID,
/// 1020-1023 when there is none.
pub fn acknowledge() -> u32 {
    apply_remote_ppi_deactivations();
    let iar = rd(gicc(GICC_IAR));
    dsb_sy();
    let intid = iar & 0x3ff;
    if intid < 16
        && let Some(s) = SGI_SOURCE.get(percpu::current_index())
    {
        s[intid as usize].store(((iar >> 10) & 7) as u8, Ordering::Relaxed);
    }
    intid
}

/// Completes an acknowledged interrupt as `vgic::host::classify` decided:
/// GICC_EOIR is the priority drop (EOImode = 1), GICC_DIR the deactivation.
pub fn complete(intid: u32, how: Completion) {
    let v = with_source(intid);
    match how {
        Completion::None => {}
        Completion::PriorityDropOnly => wr(gicc(GICC_EOIR), v),
        Completion::DropAndDeactivate => {
            wr(gicc(GICC_EOIR), v);
            wr(frames().gicc_page2 + GICC_DIR, v);
        }
    }
    isb();
}

// ---- the distributor ----

pub fn enable_spi(intid: u32) {
    wr(
        gicd(GICD_ISENABLER + 4 * (intid / 32) as usize),
        1 << (intid % 32),
    );
}

pub fn deactivate_spi(intid: u32) {
    wr(
        gicd(GICD_ICACTIVER + 4 * (intid / 32) as usize),
        1 << (intid % 32),
    );
}

/// Targets SPI `intid` at CPU `logical` (GICD_ITARGETSR, 4.3.12).
pub fn route_spi(intid: u32, logical: usize) {
    if intid < 32 {
        return;
    }
    if let Some(m) = CPU_IF_MASK.get(logical) {
        wr8(
            gicd(GICD_ITARGETSR + intid as usize),
            m.load(Ordering::Relaxed),
        );
    }
}

/// Sends SGI `sgi` to CPU `logical` (GICD_SGIR, TargetListFilter = 0, 4.3.15).
/// Memory writes before it are made visible first.
pub fn send_sgi(sgi: u32, logical: usize) {
    let Some(mask) = CPU_IF_MASK.get(logical).map(|m| m.load(Ordering::Relaxed)) else {
        return;
    };
    if mask == 0 {
        return;
    }
    dsb_ishst();
    wr(gicd(GICD_SGIR), (u32::from(mask) << 16) | (sgi & 0xf));
}

/// Deactivates PPI `intid` on CPU `logical`: here directly, elsewhere by that
/// CPU at its next acknowledge (it is kicked).
pub fn deactivate_ppi_on(logical: usize, intid: u32) {
    if logical == percpu::current_index() {
        wr(gicd(GICD_ICACTIVER), 1 << intid);
    } else if let Some(p) = PPI_DEACTIVATE.get(logical) {
        p.fetch_or(1 << intid, Ordering::Release);
        send_sgi(host::KICK_SGI, logical);
    }
}

/// The active state of this CPU's SGIs and PPIs (GICD_ISACTIVER0, banked).
pub fn private_active_here() -> u32 {
    rd(gicd(GICD_ISACTIVER))
}

pub fn set_private_active_here(intid: u32, active: bool) {
    let reg = if active {
        GICD_ISACTIVER
    } else {
        GICD_ICACTIVER
    };
    wr(gicd(reg), 1 << intid);
}

pub fn uart_intid() -> Option<u32> {
    FRAMES.get().and_then(|f| f.uart_intid)
}

// ---- the virtual interface control (GICH), this CPU's view ----

/// GICH_VTR: ListRegs [5:0], PREbits [28:26], PRIbits [31:29] (5.3.3), read
/// by `vgic::host` at the bits of ICH_VTR_EL2 (ListRegs [4:0]: a GIC-400 has
/// 4 LRs, and the vGIC uses at most 16).
pub fn read_vtr() -> u64 {
    let vtr = rd(gich(GICH_VTR));
    let lrs = lr_v2::decode_vtr(vtr).nr_lrs.min(16) as u32;
    u64::from((vtr & !0x3f) | (lrs - 1))
}

pub fn read_misr() -> u64 {
    u64::from(rd(gich(GICH_MISR)))
}

pub fn read_eisr() -> u64 {
    u64::from(rd(gich(GICH_EISR0))) | (u64::from(rd(gich(GICH_EISR0 + 4))) << 32)
}

pub fn read_elrsr() -> u64 {
    u64::from(rd(gich(GICH_ELRSR0))) | (u64::from(rd(gich(GICH_ELRSR0 + 4))) << 32)
}

pub fn read_vmcr() -> u64 {
    u64::from(rd(gich(GICH_VMCR)))
}

pub fn write_vmcr(v: u64) {
    wr(gich(GICH_VMCR), v as u32);
}

pub fn write_hcr(ich_hcr: u64) {
    wr(gich(GICH_HCR), lr_v2::hcr_ich_to_gich(ich_hcr));
}

pub fn read_hcr() -> u64 {
    u64::from(rd(gich(GICH_HCR)))
}

/// GICH_LR<n> in the ICH_LR<n>_EL2 layout.
pub fn read_lr(n: usize) -> u64 {
    lr_v2::gich_to_ich(rd(gich(GICH_LR0 + 4 * n))).0
}

/// Writes GICH_LR<n> from an ICH_LR<n>_EL2 value, in Group 0 (the vGICv2's
/// interrupts are all Group 0, `vgic::dist_v2`).
pub fn write_lr(n: usize, value: u64) {
    let v = match lr_v2::ich_to_gich(value, None) {
        Ok(v) => v & !gich_lr::GRP1,
        Err(e) => {
            log::error!("GICv2: list register {n} not written: {e:?}");
            0
        }
    };
    wr(gich(GICH_LR0 + 4 * n), v);
}

/// GICH_APR for n = 0 (the only active-priority register with 5 priority
/// bits); nothing else exists.
pub fn read_apr(n: usize) -> u64 {
    if n == 0 {
        u64::from(rd(gich(GICH_APR)))
    } else {
        0
    }
}

pub fn write_apr(n: usize, v: u64) {
    if n == 0 {
        wr(gich(GICH_APR), v as u32);
    }
}

/// The virtual interface as a vCPU starts with it: no LRs, no active
/// priorities, GICH_VMCR at reset, then GICH_HCR.En.
pub fn reset_virtual_cpu_interface() {
    let vtr = read_vtr();
    wr(gich(GICH_HCR), 0);
    for n in 0..host::nr_list_registers(vtr) {
        wr(gich(GICH_LR0 + 4 * n), 0);
    }
    wr(gich(GICH_APR), 0);
    write_vmcr(host::ich_vmcr_reset(vtr));
    write_hcr(crate::vgic::lr::hcr_at_exit());
}
