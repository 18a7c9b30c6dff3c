//! What of the host's RAM the hypervisor may map and hand out, given where the boot
//! loader put the image, the device tree and the boot bundle.
//!
//! Firmware keeps memory for itself in two ways (Devicetree Specification, "Memory
//! Reservation Block" and "/reserved-memory"): `/memreserve/` entries and
//! `/reserved-memory` children with a `reg`. Neither may be handed out; the `no-map`
//! ones (secure firmware, a DSP's code) may not even be mapped, since a mapping of
//! Normal memory allows speculative reads of them. A board's RAM need not start at
//! 0x4000_0000 and may have holes: everything here works on the ranges the tree lists.

use alloc::vec::Vec;
use core::fmt;

use super::{MemRange, Platform};
use crate::mm::PAGE_SIZE;
use crate::mm::region::{self, PhysRange};

/// Where the boot loader put what the hypervisor reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootRanges {
    /// The hypervisor's image, BSS and stacks included.
    pub image: MemRange,
    /// The device tree (its `totalsize`).
    pub dtb: MemRange,
    /// The boot bundle (`/chosen` `linux,initrd-start`/`-end`), when there is one.
    pub bundle: Option<MemRange>,
}

/// Why the boot loader's placement cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlacementError {
    /// `what` lies (partly) outside the RAM the EL2 map makes Normal memory: outside
    /// every `/memory` range, or in a `no-map` reserved range.
    NotInRam { what: &'static str, range: MemRange },
    /// The hypervisor's image overlaps memory the firmware reserved.
    ImageOverlapsReserved { image: MemRange, reserved: MemRange },
}

impl fmt::Display for PlacementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlacementError::NotInRam { what, range } => write!(
                f,
                "{what} at {range} is not in usable RAM (outside the device tree's /memory, \
                 or in a no-map /reserved-memory range): load it elsewhere"
            ),
            PlacementError::ImageOverlapsReserved { image, reserved } => write!(
                f,
                "the hypervisor image at {image} overlaps memory the firmware reserved \
                 ({reserved}, /memreserve/ or /reserved-memory): load it at another \
                 2 MiB-aligned address + 2 MiB"
            ),
        }
    }
}

fn phys(r: &MemRange) -> PhysRange {
    PhysRange::new(r.base, r.end())
}

impl Platform {
    /// The RAM the EL2 identity map makes Normal memory: every `/memory` range
    /// less the `no-map` reserved ranges, in whole pages, sorted.
    pub fn mapped_ram(&self) -> Vec<PhysRange> {
        let ram: Vec<PhysRange> = self.memory.iter().map(phys).collect();
        let no_map: Vec<PhysRange> = self.no_map.iter().map(phys).collect();
        region::subtract(&ram, &no_map)
    }

    /// The RAM the frame allocator may hand out: [`Platform::mapped_ram`] less
    /// every reserved range, the image, the device tree and the bundle, and the
    /// first page of the address space (a frame becomes a Rust slice, which
    /// cannot start at address 0; boards whose RAM starts at 0 lose one page).
    pub fn free_ram(&self, boot: &BootRanges) -> Vec<PhysRange> {
        let mut taken: Vec<PhysRange> = self.reserved.iter().map(phys).collect();
        taken.push(phys(&boot.image));
        taken.push(phys(&boot.dtb));
        taken.extend(boot.bundle.iter().map(phys));
        taken.push(PhysRange::new(0, PAGE_SIZE));
        region::subtract(&self.mapped_ram(), &taken)
    }

    /// Checks where the loader put things: the image, the device tree and the
    /// bundle each lie in mapped RAM, and the image overlaps no reserved range.
    /// (The device tree and the bundle may: boot loaders add `/memreserve/`
    /// entries for them, as U-Boot does for the initrd.)
    pub fn check_boot_ranges(&self, boot: &BootRanges) -> Result<(), PlacementError> {
        let mapped = self.mapped_ram();
        let in_ram = |r: &MemRange| {
            r.size == 0 || mapped.iter().any(|m| m.start <= r.base && r.end() <= m.end)
        };
        let items = [
            ("the hypervisor image", Some(boot.image)),
            ("the device tree", Some(boot.dtb)),
            ("the boot bundle", boot.bundle),
        ];
        for (what, range) in items {
            if let Some(range) = range.filter(|r| !in_ram(r)) {
                return Err(PlacementError::NotInRam { what, range });
            }
        }
        if let Some(&reserved) = self.reserved.iter().find(|r| r.overlaps(&boot.image)) {
            return Err(PlacementError::ImageOverlapsReserved {
                image: boot.image,
                reserved,
            });
        }
        Ok(())
    }
}
