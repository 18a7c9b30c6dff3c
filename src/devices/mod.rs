//! Virtual devices on a VM's MMIO bus. A guest access to an address its stage-2
//! tables do not map arrives as a data abort; the bus finds the device whose
//! window holds the IPA and emulates the access.
//!
//! The bus is built with the VM and never changes afterwards, so finding a
//! device takes no lock; each device has a lock of its own, held only for one
//! access. Two vCPUs reaching different devices never wait for each other.

pub mod console;
pub mod pl011;

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU8, Ordering};

/// One MMIO access, as the data-abort syndrome describes it (ISV = 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    /// Offset from the start of the device's window.
    pub offset: u64,
    /// Access size in bytes: 1, 2, 4 or 8.
    pub size: u8,
}

/// A device model. Reads return the value to put in the guest register
/// (zero-extended to the access size); writes get the register's low `size` bytes.
pub trait MmioDevice: Send {
    /// A short name for logs.
    fn name(&self) -> &str;
    fn read(&mut self, access: MmioAccess) -> u64;
    fn write(&mut self, access: MmioAccess, value: u64);
    /// The device's interrupt output, if it has one: its INTID and level.
    fn irq_line(&self) -> Option<(u32, bool)> {
        None
    }
}

/// A device placed at `[base, base + size)` of guest-physical space.
pub struct Slot {
    pub base: u64,
    pub size: u64,
    pub device: crate::sync::Mutex<Box<dyn MmioDevice>>,
    /// The level of the device's interrupt line last passed to the vGIC
    /// (`LINE_UNKNOWN` before the first): an access reports the line only
    /// when it changed, so polling a status register does not take the vGIC's
    /// lock. Written under `device`'s lock. The vGIC keeps line levels across a
    /// VM reset, so the two stay in step.
    level: AtomicU8,
}

const LINE_UNKNOWN: u8 = 2;

/// What one emulated access did: the value read (0 for a write) and the
/// device's interrupt output after it, if the device has one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Done {
    pub value: u64,
    pub irq_line: Option<(u32, bool)>,
}

/// The MMIO bus of one VM.
#[derive(Default)]
pub struct MmioBus {
    slots: Vec<Slot>,
}

/// Adding a device whose window overlaps another's.
#[derive(Debug, PartialEq, Eq)]
pub struct OverlapError {
    pub base: u64,
    pub size: u64,
}

impl MmioBus {
    pub fn new() -> Self {
        MmioBus { slots: Vec::new() }
    }

    /// Places `device` at `[base, base + size)`.
    pub fn add(
        &mut self,
        base: u64,
        size: u64,
        device: Box<dyn MmioDevice>,
    ) -> Result<(), OverlapError> {
        let end = base.checked_add(size).ok_or(OverlapError { base, size })?;
        if size == 0
            || self
                .slots
                .iter()
                .any(|s| base < s.base + s.size && s.base < end)
        {
            return Err(OverlapError { base, size });
        }
        self.slots.push(Slot {
            base,
            size,
            device: crate::sync::Mutex::new(device),
            level: AtomicU8::new(LINE_UNKNOWN),
        });
        Ok(())
    }

    /// The slot claiming `ipa` and the access offset within it, if any. An
    /// access that would run past the end of the window is not claimed.
    pub(crate) fn claim(&self, ipa: u64, size: u8) -> Option<(&Slot, MmioAccess)> {
        let slot = self.slots.iter().find(|s| {
            ipa >= s.base
                && (ipa - s.base)
                    .checked_add(size as u64)
                    .is_some_and(|end| end <= s.size)
        })?;
        let offset = ipa - slot.base;
        Some((slot, MmioAccess { offset, size }))
    }

    /// Emulates one access (`write`: the value stored, else a load); `None`
    /// when no device claims the address.
    pub fn access(&self, ipa: u64, size: u8, write: Option<u64>) -> Option<Done> {
        let (slot, acc) = self.claim(ipa, size)?;
        let mut dev = slot.device.lock();
        let value = match write {
            Some(v) => {
                dev.write(acc, v & size_mask(size));
                0
            }
            None => dev.read(acc) & size_mask(size),
        };
        let irq_line = dev
            .irq_line()
            .filter(|&(_, level)| slot.level.swap(level as u8, Ordering::Relaxed) != level as u8);
        Some(Done { value, irq_line })
    }

    /// Emulates a read; `None` when no device claims the address.
    pub fn read(&self, ipa: u64, size: u8) -> Option<u64> {
        self.access(ipa, size, None).map(|d| d.value)
    }

    /// Emulates a write; `false` when no device claims the address.
    pub fn write(&self, ipa: u64, size: u8, value: u64) -> bool {
        self.access(ipa, size, Some(value)).is_some()
    }

    /// Calls `f(intid, level)` for each device's interrupt output.
    pub fn for_each_irq_line(&self, mut f: impl FnMut(u32, bool)) {
        for s in &self.slots {
            let line = {
                let dev = s.device.lock();
                let line = dev.irq_line();
                if let Some((_, level)) = line {
                    s.level.store(level as u8, Ordering::Relaxed);
                }
                line
            };
            if let Some((intid, level)) = line {
                f(intid, level);
            }
        }
    }

    /// The devices, for the boot log.
    pub fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter()
    }
}

/// The mask of an access of `size` bytes.
pub fn size_mask(size: u8) -> u64 {
    match size {
        8 => u64::MAX,
        s => (1u64 << (s as u32 * 8)) - 1,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Reg(u64);
    impl MmioDevice for Reg {
        fn name(&self) -> &str {
            "reg"
        }
        fn read(&mut self, _a: MmioAccess) -> u64 {
            self.0
        }
        fn write(&mut self, _a: MmioAccess, v: u64) {
            self.0 = v;
        }
    }

    #[test]
    fn claims_inside_window_only() {
        let mut bus = MmioBus::new();
        bus.add(0x1000, 0x100, Box::new(Reg(0xdead_beef_1234_5678)))
            .unwrap();
        assert_eq!(bus.read(0x1000, 4), Some(0x1234_5678));
        assert_eq!(bus.read(0x10f8, 8), Some(0xdead_beef_1234_5678));
        assert_eq!(bus.read(0x10fc, 8), None, "runs past the window");
        assert_eq!(bus.read(0x0fff, 1), None);
        assert_eq!(bus.read(0x1100, 1), None);
        assert!(bus.write(0x1004, 2, 0xffff_abcd));
        assert_eq!(bus.read(0x1000, 8), Some(0xabcd));
    }

    /// A device with a line that follows its register's bit 0.
    struct Line(u64);
    impl MmioDevice for Line {
        fn name(&self) -> &str {
            "line"
        }
        fn read(&mut self, _a: MmioAccess) -> u64 {
            self.0
        }
        fn write(&mut self, _a: MmioAccess, v: u64) {
            self.0 = v;
        }
        fn irq_line(&self) -> Option<(u32, bool)> {
            Some((40, self.0 & 1 != 0))
        }
    }

    #[test]
    fn line_reported_when_it_changes() {
        let mut bus = MmioBus::new();
        bus.add(0x1000, 0x100, Box::new(Line(0))).unwrap();
        // The first access says where the line is; then only changes.
        assert_eq!(
            bus.access(0x1000, 4, None).unwrap().irq_line,
            Some((40, false))
        );
        assert_eq!(bus.access(0x1000, 4, None).unwrap().irq_line, None);
        assert_eq!(
            bus.access(0x1000, 4, Some(1)).unwrap().irq_line,
            Some((40, true))
        );
        assert_eq!(bus.access(0x1000, 4, Some(3)).unwrap().irq_line, None);
        assert_eq!(
            bus.access(0x1000, 4, Some(0)).unwrap().irq_line,
            Some((40, false))
        );
        // A poll of every line reports each, whatever it was.
        let mut seen = Vec::new();
        bus.for_each_irq_line(|i, l| seen.push((i, l)));
        assert_eq!(seen, [(40, false)]);
        assert_eq!(
            bus.access(0x1000, 4, Some(1)).unwrap().irq_line,
            Some((40, true))
        );
    }

    #[test]
    fn rejects_overlap() {
        let mut bus = MmioBus::new();
        bus.add(0x1000, 0x1000, Box::new(Reg(0))).unwrap();
        assert!(bus.add(0x1800, 0x1000, Box::new(Reg(0))).is_err());
        assert!(bus.add(0x0800, 0x0801, Box::new(Reg(0))).is_err());
        assert!(bus.add(0x2000, 0x1000, Box::new(Reg(0))).is_ok());
        assert!(bus.add(u64::MAX - 1, 4, Box::new(Reg(0))).is_err());
    }
}
