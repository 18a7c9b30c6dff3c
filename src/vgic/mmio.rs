//! The vGIC's windows on a VM's MMIO bus: the distributor and the whole
//! redistributor region, each a thin [`MmioDevice`] over the shared [`Vgic`].

use alloc::boxed::Box;

use super::SharedVgic;
use super::redist::GICR_STRIDE;
use crate::devices::{MmioAccess, MmioBus, MmioDevice, OverlapError};

/// The distributor's 64 KiB window (IHI 0069: GICD is one 64 KiB frame).
pub const GICD_SIZE: u64 = 0x1_0000;

/// The GICD window of a VM.
pub struct GicdMmio(pub SharedVgic);

impl MmioDevice for GicdMmio {
    fn name(&self) -> &str {
        "gicv3-distributor"
    }
    fn read(&mut self, a: MmioAccess) -> u64 {
        self.0.lock().gicd_read(a.offset, a.size)
    }
    fn write(&mut self, a: MmioAccess, value: u64) {
        self.0.lock().gicd_write(a.offset, a.size, value)
    }
}

/// The GICR region of a VM: one RD_base + SGI_base pair per vCPU.
pub struct GicrMmio(pub SharedVgic);

impl MmioDevice for GicrMmio {
    fn name(&self) -> &str {
        "gicv3-redistributors"
    }
    fn read(&mut self, a: MmioAccess) -> u64 {
        self.0.lock().gicr_read(a.offset, a.size)
    }
    fn write(&mut self, a: MmioAccess, value: u64) {
        self.0.lock().gicr_write(a.offset, a.size, value)
    }
}

/// Places the distributor at `gicd_base` and the redistributors (one per vCPU)
/// from `gicr_base` on `bus`.
pub fn attach(
    bus: &mut MmioBus,
    vgic: &SharedVgic,
    gicd_base: u64,
    gicr_base: u64,
) -> Result<(), OverlapError> {
    let n = vgic.lock().nr_vcpus() as u64;
    bus.add(gicd_base, GICD_SIZE, Box::new(GicdMmio(vgic.clone())))?;
    bus.add(gicr_base, GICR_STRIDE * n, Box::new(GicrMmio(vgic.clone())))
}
