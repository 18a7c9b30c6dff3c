//! The physical GIC as the rest of the hypervisor uses it: brought up once on
//! the boot CPU and on each CPU, kicks between CPUs, and the deactivations and
//! routings a vGIC asks for. Built on `gic` (the GICv3 register-level driver)
//! or, on a GICv2 (GIC-400) host, `gicv2`: every function hands over to it
//! when `gicv2::active()`.

use spin::Once;

use super::boot::MAX_CPUS;
use super::gic::{self, Distributor, Redistributor};
use super::gicv2;
use super::percpu;
use crate::vgic::host::{
    HYP_TIMER_INTID, KICK_SGI, MAINTENANCE_INTID, PHYSICAL_TIMER_INTID, PMU_INTID,
    VIRTUAL_TIMER_INTID,
};
use crate::vgic::sgi::sgi1r_for;

struct HostGic {
    dist: Distributor,
    redist_regions: alloc::vec::Vec<(usize, usize)>,
    /// The hypervisor's console UART interrupt, if the device tree gives one.
    uart_intid: Option<u32>,
}

// SAFETY: the distributor is a register block every CPU may program; its
// registers are designed for concurrent use (set/clear-enable, IROUTER per
// interrupt), which is all this module does after bring-up.
unsafe impl Sync for HostGic {}
// SAFETY: as above; the value only holds addresses.
unsafe impl Send for HostGic {}

static GIC: Once<HostGic> = Once::new();

struct RedistSlot(Redistributor);
// SAFETY: a redistributor's registers may be written from any CPU (the
// deactivation a vGIC asks for comes from the CPU handling the guest's EOI).
unsafe impl Sync for RedistSlot {}
// SAFETY: as above; only an address is held.
unsafe impl Send for RedistSlot {}

static REDIST: [Once<RedistSlot>; MAX_CPUS] = [const { Once::new() }; MAX_CPUS];

/// Brings the distributor up (boot CPU, before any other CPU starts). `gicd` and
/// `gicr` come from the host device tree and are identity-mapped as Device.
pub fn init_boot(gicd: u64, gicr: &[(u64, u64)], uart_intid: Option<u32>) {
    GIC.call_once(|| {
        // SAFETY: `gicd` is the device tree's GICD frame, mapped as Device; only
        // the hypervisor programs the Non-secure distributor.
        let dist = unsafe { Distributor::new(gicd as usize) };
        dist.init(crate::sysreg::Mpidr::new(super::regs::read_mpidr_el1()).affinity());
        if let Some(intid) = uart_intid {
            dist.enable_spi(intid);
        }
        HostGic {
            dist,
            redist_regions: gicr
                .iter()
                .map(|&(b, s)| (b as usize, s as usize))
                .collect(),
            uart_intid,
        }
    });
    if uart_intid.is_some() {
        super::console::enable_rx_interrupt();
    }
}

/// Brings a GICv2 (GIC-400) distributor up (boot CPU, before any other CPU
/// starts): the host's GIC is then driven by `gicv2` from here on.
pub fn init_boot_v2(gicd: u64, gicc: [u64; 2], gich: u64, uart_intid: Option<u32>) {
    gicv2::init_boot(gicd, gicc, gich, uart_intid);
    if uart_intid.is_some() {
        super::console::enable_rx_interrupt();
    }
}

/// The interrupts the hypervisor takes on every CPU: maintenance, virtual
/// and physical timers, the EL2 timer (its own wake-ups), kick.
const PER_CPU_INTIDS: [u32; 6] = [
    MAINTENANCE_INTID,
    VIRTUAL_TIMER_INTID,
    PHYSICAL_TIMER_INTID,
    HYP_TIMER_INTID,
    PMU_INTID,
    KICK_SGI,
];

/// Brings this CPU's redistributor and CPU interface up, with the interrupts
/// the hypervisor takes here enabled: maintenance, the guest's timers and PMU
/// overflow, the EL2 timer (its own wake-ups), kick.
/// Returns false when the device tree has no redistributor for this CPU.
pub fn init_this_cpu(logical: usize) -> bool {
    if gicv2::active() {
        super::regs::disarm_hyp_timer();
        gicv2::init_this_cpu(logical, &PER_CPU_INTIDS);
        return true;
    }
    let Some(g) = GIC.get() else { return false };
    let mpidr = crate::sysreg::Mpidr::new(super::regs::read_mpidr_el1()).affinity();
    // SAFETY: the regions are the device tree's GICR regions, mapped as Device.
    let Some(r) = (unsafe { Redistributor::find(&g.redist_regions, mpidr) }) else {
        return false;
    };
    r.init();
    super::regs::disarm_hyp_timer();
    for intid in PER_CPU_INTIDS {
        r.enable_private(intid);
    }
    gic::init_cpu_interface();
    gic::reset_virtual_cpu_interface();
    if logical < MAX_CPUS {
        REDIST[logical].call_once(|| RedistSlot(r));
    }
    true
}

/// Makes CPU `logical` take an exception (an SGI), so a guest it runs exits or
/// its idle loop wakes.
pub fn kick(logical: usize) {
    if logical == percpu::current_index() {
        return;
    }
    if gicv2::active() {
        return gicv2::send_sgi(KICK_SGI, logical);
    }
    let mpidr = percpu::mpidr_of(logical);
    if let Some(v) = sgi1r_for(KICK_SGI, mpidr) {
        gic::send_sgi(v);
    }
}

/// Deactivates a PPI on CPU `logical` (its hardware-linked virtual interrupt
/// was given back).
pub fn deactivate_ppi_on(logical: usize, intid: u32) {
    if gicv2::active() {
        return gicv2::deactivate_ppi_on(logical, intid);
    }
    if let Some(r) = REDIST.get(logical).and_then(|s| s.get()) {
        r.0.deactivate_private(intid);
    }
}

/// This CPU's redistributor.
fn here() -> Option<&'static Redistributor> {
    REDIST
        .get(percpu::current_index())
        .and_then(|s| s.get())
        .map(|s| &s.0)
}

/// The active state of this CPU's SGIs and PPIs (bit n: INTID n).
pub fn private_active_here() -> u32 {
    if gicv2::active() {
        return gicv2::private_active_here();
    }
    here().map(|r| r.active_private()).unwrap_or(0)
}

/// Sets (`true`) or clears this CPU's PPI `intid` active state.
pub fn set_private_active_here(intid: u32, active: bool) {
    if gicv2::active() {
        return gicv2::set_private_active_here(intid, active);
    }
    if let Some(r) = here() {
        if active {
            r.activate_private(intid);
        } else {
            r.deactivate_private(intid);
        }
    }
}

/// Deactivates an SPI.
pub fn deactivate_spi(intid: u32) {
    if gicv2::active() {
        return gicv2::deactivate_spi(intid);
    }
    if let Some(g) = GIC.get() {
        g.dist.deactivate_spi(intid);
    }
}

/// Enables SPI `intid` at the distributor.
pub fn enable_spi(intid: u32) {
    if gicv2::active() {
        return gicv2::enable_spi(intid);
    }
    if let Some(g) = GIC.get() {
        g.dist.enable_spi(intid);
    }
}

/// Routes SPI `intid` to CPU `logical`.
pub fn route_spi(intid: u32, logical: usize) {
    if gicv2::active() {
        return gicv2::route_spi(intid, logical);
    }
    if let Some(g) = GIC.get() {
        g.dist.route_spi(intid, percpu::mpidr_of(logical));
    }
}

/// The console UART's interrupt, if it is used.
pub fn uart_intid() -> Option<u32> {
    if gicv2::active() {
        return gicv2::uart_intid();
    }
    GIC.get().and_then(|g| g.uart_intid)
}
