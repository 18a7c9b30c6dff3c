//! Physical address ranges and the arithmetic the boot path needs on them: merge the
//! RAM banks the device tree lists, take out what is reserved (the hypervisor image,
//! the DTB, `/reserved-memory`, `/memreserve/`), and keep only whole pages.
//!
//! Kept independent of `platform::MemRange` on purpose: `platform` describes what the
//! device tree says (base + size, possibly unaligned and overlapping), `mm` works on
//! half-open `[start, end)` ranges that are easy to intersect and subtract.

use alloc::vec::Vec;

/// Size of a translation granule and of an allocation unit: 4 KiB.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;

/// A half-open physical address range `[start, end)`.
///
/// `end` is exclusive, so a range reaching the very top of the 64-bit space cannot
/// be expressed; physical addresses stop at 52 bits, so this never matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PhysRange {
    /// First byte of the range.
    pub start: u64,
    /// One past the last byte of the range.
    pub end: u64,
}

impl PhysRange {
    /// `[start, end)`. An `end` below `start` gives an empty range at `start`.
    pub const fn new(start: u64, end: u64) -> Self {
        Self {
            start,
            end: if end < start { start } else { end },
        }
    }

    /// `[base, base + size)`, or `None` if that wraps past the end of the address space.
    pub const fn from_base_size(base: u64, size: u64) -> Option<Self> {
        match base.checked_add(size) {
            Some(end) => Some(Self { start: base, end }),
            None => None,
        }
    }

    /// Number of bytes in the range.
    pub const fn size(&self) -> u64 {
        self.end - self.start
    }

    /// True if the range holds no byte.
    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    /// True if `addr` lies inside the range.
    pub const fn contains(&self, addr: u64) -> bool {
        self.start <= addr && addr < self.end
    }

    /// True if the two ranges share at least one byte.
    pub const fn overlaps(&self, other: &PhysRange) -> bool {
        self.start < other.end && other.start < self.end
    }

    /// The bytes both ranges share, if any.
    pub fn intersect(&self, other: &PhysRange) -> Option<PhysRange> {
        let r = PhysRange::new(self.start.max(other.start), self.end.min(other.end));
        (!r.is_empty()).then_some(r)
    }

    /// The largest sub-range whose ends are multiples of `align` (a power of two):
    /// the start rounds up, the end rounds down. `None` if nothing is left.
    pub fn align_inward(&self, align: u64) -> Option<PhysRange> {
        let start = align_up(self.start, align)?;
        let end = align_down(self.end, align);
        (start < end).then_some(PhysRange { start, end })
    }

    /// The smallest super-range whose ends are multiples of `align` (a power of two).
    /// `None` if rounding the end up wraps.
    pub fn align_outward(&self, align: u64) -> Option<PhysRange> {
        Some(PhysRange {
            start: align_down(self.start, align),
            end: align_up(self.end, align)?,
        })
    }
}

/// `x` rounded down to a multiple of `align`, which must be a power of two.
pub const fn align_down(x: u64, align: u64) -> u64 {
    debug_assert!(align.is_power_of_two());
    x & !(align - 1)
}

/// `x` rounded up to a multiple of `align` (a power of two), or `None` on overflow.
pub const fn align_up(x: u64, align: u64) -> Option<u64> {
    debug_assert!(align.is_power_of_two());
    match x.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// True if `x` is a multiple of `align` (a power of two).
pub const fn is_aligned(x: u64, align: u64) -> bool {
    debug_assert!(align.is_power_of_two());
    x & (align - 1) == 0
}

/// Sorts `ranges` by start, drops empty ones and merges those that overlap or touch.
pub fn sort_and_merge(ranges: &mut Vec<PhysRange>) {
    ranges.retain(|r| !r.is_empty());
    ranges.sort_unstable();
    let mut merged: Vec<PhysRange> = Vec::with_capacity(ranges.len());
    for r in ranges.drain(..) {
        match merged.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => merged.push(r),
        }
    }
    *ranges = merged;
}

/// `ram` minus every range in `reserved`, as sorted, disjoint, page-aligned ranges.
///
/// Both inputs may be unsorted, overlapping or unaligned. A page that is only partly
/// RAM, or partly reserved, is left out: the allocator must never hand out a byte that
/// is not RAM or that someone else owns.
pub fn subtract(ram: &[PhysRange], reserved: &[PhysRange]) -> Vec<PhysRange> {
    let mut ram: Vec<PhysRange> = ram.to_vec();
    sort_and_merge(&mut ram);
    let mut reserved: Vec<PhysRange> = reserved.to_vec();
    sort_and_merge(&mut reserved);

    let mut out = Vec::new();
    for bank in &ram {
        let mut cursor = bank.start;
        for hole in reserved.iter().filter(|h| h.overlaps(bank)) {
            push_aligned(&mut out, PhysRange::new(cursor, hole.start));
            cursor = cursor.max(hole.end);
        }
        push_aligned(&mut out, PhysRange::new(cursor, bank.end));
    }
    out
}

fn push_aligned(out: &mut Vec<PhysRange>, r: PhysRange) {
    if let Some(r) = r.align_inward(PAGE_SIZE) {
        out.push(r);
    }
}

/// Total number of bytes in `ranges` (which should be disjoint).
pub fn total_size(ranges: &[PhysRange]) -> u64 {
    ranges.iter().map(PhysRange::size).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const MIB: u64 = 1 << 20;

    fn r(start: u64, end: u64) -> PhysRange {
        PhysRange::new(start, end)
    }

    #[test]
    fn alignment_helpers() {
        assert_eq!(align_down(0x1fff, PAGE_SIZE), 0x1000);
        assert_eq!(align_up(0x1001, PAGE_SIZE), Some(0x2000));
        assert_eq!(align_up(0x2000, PAGE_SIZE), Some(0x2000));
        assert_eq!(align_up(u64::MAX, PAGE_SIZE), None);
        assert!(is_aligned(0x20_0000, 2 * MIB));
        assert!(!is_aligned(0x20_1000, 2 * MIB));
    }

    #[test]
    fn range_basics() {
        let a = r(0x1000, 0x3000);
        assert_eq!(a.size(), 0x2000);
        assert!(a.contains(0x1000) && a.contains(0x2fff) && !a.contains(0x3000));
        assert!(a.overlaps(&r(0x2fff, 0x4000)));
        assert!(!a.overlaps(&r(0x3000, 0x4000)));
        assert_eq!(a.intersect(&r(0x2000, 0x5000)), Some(r(0x2000, 0x3000)));
        assert_eq!(a.intersect(&r(0x3000, 0x5000)), None);
        assert!(r(5, 3).is_empty());
        assert_eq!(PhysRange::from_base_size(u64::MAX, 2), None);
        assert_eq!(
            PhysRange::from_base_size(0x4000_0000, 0x1000),
            Some(r(0x4000_0000, 0x4000_1000))
        );
        assert_eq!(r(0x1001, 0x2fff).align_inward(PAGE_SIZE), None);
        assert_eq!(
            r(0x1001, 0x3fff).align_inward(PAGE_SIZE),
            Some(r(0x2000, 0x3000))
        );
        assert_eq!(
            r(0x1001, 0x2fff).align_outward(PAGE_SIZE),
            Some(r(0x1000, 0x3000))
        );
    }

    #[test]
    fn merge_sorts_and_joins_touching_and_overlapping() {
        let mut v = vec![
            r(0x9000, 0xa000),
            r(0x1000, 0x2000),
            r(0x2000, 0x3000), // touches the previous one
            r(0x2800, 0x4000), // overlaps
            r(0x7000, 0x7000), // empty
        ];
        sort_and_merge(&mut v);
        assert_eq!(v, vec![r(0x1000, 0x4000), r(0x9000, 0xa000)]);
    }

    #[test]
    fn subtract_reserved_from_ram() {
        // QEMU virt-like: 1 GiB of RAM at 1 GiB, the DTB at the start, the
        // hypervisor image a little above, and an unaligned firmware hole.
        let ram = [r(0x4000_0000, 0x8000_0000)];
        let reserved = [
            r(0x4000_0000, 0x4010_0000), // DTB
            r(0x4020_0000, 0x4040_0800), // image, end not page aligned
            r(0x7ffe_f100, 0x7ffe_f200), // tiny unaligned reservation
            r(0x9000_0000, 0x9100_0000), // outside RAM: no effect
        ];
        let free = subtract(&ram, &reserved);
        assert_eq!(
            free,
            vec![
                r(0x4010_0000, 0x4020_0000),
                // The partial pages on both sides of each hole are left out.
                r(0x4040_1000, 0x7ffe_f000),
                r(0x7fff_0000, 0x8000_0000),
            ]
        );
        assert!(free.iter().all(|f| is_aligned(f.start, PAGE_SIZE)
            && is_aligned(f.end, PAGE_SIZE)
            && !reserved.iter().any(|h| h.overlaps(f))));
    }

    #[test]
    fn subtract_handles_unaligned_banks_and_overlapping_holes() {
        let ram = [r(0x10_0800, 0x20_0000), r(0x30_0000, 0x40_0100)];
        let reserved = [
            r(0x18_0000, 0x19_0000),
            r(0x18_8000, 0x1a_0000),
            r(0x30_0000, 0x40_0100),
        ];
        assert_eq!(
            subtract(&ram, &reserved),
            vec![r(0x10_1000, 0x18_0000), r(0x1a_0000, 0x20_0000)]
        );
        assert_eq!(total_size(&subtract(&ram, &[])), 0xff000 + 0x10_0000);
    }

    #[test]
    fn subtract_everything_leaves_nothing() {
        let ram = [r(0x1000, 0x5000)];
        assert!(subtract(&ram, &[r(0, 0x10_0000)]).is_empty());
    }
}
