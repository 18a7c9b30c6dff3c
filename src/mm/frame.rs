//! The physical page-frame allocator: contiguous, aligned runs of 4 KiB frames out of
//! the free RAM that [`super::region::subtract`] left.
//!
//! The buddy bookkeeping is `buddy_system_allocator::FrameAllocator`; this wrapper
//! speaks physical addresses and page counts, adds alignment, and gives back the
//! power-of-two round-up the buddy system would otherwise waste (a 3-page request
//! takes 3 pages, not 4). Its free lists are `BTreeSet`s, so the global heap must be
//! up before the first frame is added.

use super::region::{PAGE_SHIFT, PAGE_SIZE, PhysRange, is_aligned, sort_and_merge};
use core::alloc::Layout;

/// Largest buddy order kept: blocks of up to 2^(ORDER-1) frames (16 TiB), far above
/// any RAM bank; frame numbers themselves may go up to 2^40 (52-bit PAs).
const ORDER: usize = 33;

/// Allocator of physical page frames.
pub struct FrameAllocator {
    buddy: buddy_system_allocator::FrameAllocator<ORDER>,
    free_pages: u64,
}

impl FrameAllocator {
    /// An allocator owning every whole page inside `free` (normally the output of
    /// [`super::region::subtract`]; overlapping ranges are merged first, partial
    /// pages ignored).
    pub fn new(free: &[PhysRange]) -> Self {
        let mut this = Self {
            buddy: buddy_system_allocator::FrameAllocator::new(),
            free_pages: 0,
        };
        let mut ranges = free.to_vec();
        sort_and_merge(&mut ranges);
        for range in ranges.iter().filter_map(|r| r.align_inward(PAGE_SIZE)) {
            let (first, end) = (frame_number(range.start), frame_number(range.end));
            this.buddy.add_frame(first, end);
            this.free_pages += (end - first) as u64;
        }
        this
    }

    /// `pages` contiguous frames whose first address is a multiple of
    /// `align_pages` * 4 KiB; `align_pages` must be a power of two (1 = page aligned;
    /// 512 = 2 MiB, what guest RAM wants so stage 2 can map it with blocks).
    ///
    /// Returns the physical address of the first frame, or `None` if `pages` is 0,
    /// `align_pages` is not a power of two, or no free run is large enough.
    /// The frames are not zeroed.
    pub fn alloc(&mut self, pages: usize, align_pages: usize) -> Option<u64> {
        if pages == 0 || !align_pages.is_power_of_two() {
            return None;
        }
        // The buddy system hands out naturally aligned power-of-two blocks of
        // max(next_power_of_two(pages), align) frames; the tail beyond `pages`
        // goes straight back.
        let layout = Layout::from_size_align(pages, align_pages).ok()?;
        let block = pages.checked_next_power_of_two()?.max(align_pages);
        let first = self.buddy.alloc_aligned(layout)?;
        self.release(first + pages, first + block);
        self.free_pages -= pages as u64;
        Some(frame_address(first))
    }

    /// Gives back `pages` frames starting at `pa`, which must be a run (or part of a
    /// run) this allocator handed out and that is not free already: the buddy
    /// system cannot detect a double free.
    ///
    /// # Panics
    /// If `pa` is not page aligned: that is a broken invariant of the caller.
    pub fn free(&mut self, pa: u64, pages: usize) {
        assert!(is_aligned(pa, PAGE_SIZE), "freeing unaligned frame {pa:#x}");
        let first = frame_number(pa);
        self.release(first, first + pages);
        self.free_pages += pages as u64;
    }

    /// Bytes that are free now (not necessarily contiguous).
    pub fn free_bytes(&self) -> u64 {
        self.free_pages * PAGE_SIZE
    }

    /// Returns frames `[first, end)` to the buddy free lists as naturally aligned
    /// power-of-two blocks, the only shape the buddy system can take back.
    fn release(&mut self, mut first: usize, end: usize) {
        while first < end {
            let natural = if first == 0 {
                usize::MAX
            } else {
                1 << first.trailing_zeros()
            };
            let fits = 1 << (usize::BITS - 1 - (end - first).leading_zeros());
            let count = natural.min(fits).min(1 << (ORDER - 1));
            self.buddy.dealloc(first, count);
            first += count;
        }
    }
}

fn frame_number(pa: u64) -> usize {
    (pa >> PAGE_SHIFT) as usize
}

fn frame_address(frame: usize) -> u64 {
    (frame as u64) << PAGE_SHIFT
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    const MIB: u64 = 1 << 20;
    const PAGES_2M: usize = 512;

    fn range(start: u64, end: u64) -> PhysRange {
        PhysRange::new(start, end)
    }

    #[test]
    fn alloc_is_aligned_contiguous_and_accounted() {
        let mut fa = FrameAllocator::new(&[range(0x4010_0000, 0x4800_0000)]);
        let total = 0x4800_0000 - 0x4010_0000;
        assert_eq!(fa.free_bytes(), total);

        let one = fa.alloc(1, 1).unwrap();
        assert_eq!(one % PAGE_SIZE, 0);
        let three = fa.alloc(3, 1).unwrap();
        // Exactly three pages are charged, not the buddy's round-up to four.
        assert_eq!(fa.free_bytes(), total - 4 * PAGE_SIZE);

        let guest = fa.alloc(3 * PAGES_2M, PAGES_2M).unwrap();
        assert_eq!(guest % (2 * MIB), 0, "guest RAM must be 2 MiB aligned");
        assert_eq!(fa.free_bytes(), total - 4 * PAGE_SIZE - 6 * MIB);

        // The runs do not overlap.
        let runs = [(one, 1u64), (three, 3), (guest, 3 * 512)];
        for (i, a) in runs.iter().enumerate() {
            for b in &runs[i + 1..] {
                let ra = range(a.0, a.0 + a.1 * PAGE_SIZE);
                let rb = range(b.0, b.0 + b.1 * PAGE_SIZE);
                assert!(!ra.overlaps(&rb), "{ra:x?} overlaps {rb:x?}");
            }
        }

        fa.free(three, 3);
        fa.free(one, 1);
        fa.free(guest, 3 * PAGES_2M);
        assert_eq!(fa.free_bytes(), total);
    }

    #[test]
    fn frees_merge_back_into_large_blocks() {
        // 8 MiB, 8 MiB aligned: after allocating and freeing everything in odd
        // pieces, one 8 MiB run must be available again.
        let mut fa = FrameAllocator::new(&[range(0x8000_0000, 0x8080_0000)]);
        let pieces: Vec<(u64, usize)> = [5usize, 1, 700, 3, 17]
            .iter()
            .map(|&n| (fa.alloc(n, 1).unwrap(), n))
            .collect();
        for (pa, n) in pieces {
            fa.free(pa, n);
        }
        assert_eq!(fa.alloc(2048, 2048), Some(0x8000_0000));
        assert_eq!(fa.free_bytes(), 0);
    }

    #[test]
    fn exhaustion_returns_none() {
        let mut fa = FrameAllocator::new(&[range(0x1000, 0x5000)]); // 4 pages
        let got: Vec<u64> = (0..4).map(|_| fa.alloc(1, 1).unwrap()).collect();
        assert_eq!(fa.free_bytes(), 0);
        assert_eq!(fa.alloc(1, 1), None);
        let mut sorted = got.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [0x1000, 0x2000, 0x3000, 0x4000]);
        fa.free(0x3000, 1);
        assert_eq!(fa.alloc(1, 1), Some(0x3000));
    }

    #[test]
    fn alignment_that_free_memory_cannot_meet_fails() {
        // 1 MiB of RAM starting 4 KiB past a 2 MiB boundary: no 2 MiB-aligned page.
        let mut fa = FrameAllocator::new(&[range(0x20_1000, 0x30_1000)]);
        assert_eq!(fa.alloc(1, PAGES_2M), None);
        assert_eq!(fa.free_bytes(), MIB);
        // A smaller alignment works and lands on it.
        let pa = fa.alloc(16, 16).unwrap();
        assert_eq!(pa % (16 * PAGE_SIZE), 0);
    }

    #[test]
    fn request_larger_than_any_run_fails_even_if_total_suffices() {
        let mut fa = FrameAllocator::new(&[range(0x0, 0x10_0000), range(0x20_0000, 0x30_0000)]);
        assert_eq!(fa.free_bytes(), 2 * MIB);
        assert_eq!(fa.alloc(512, 1), None);
        assert!(fa.alloc(256, 1).is_some());
    }

    #[test]
    fn bad_arguments_are_refused() {
        let mut fa = FrameAllocator::new(&[range(0x10_0000, 0x20_0000)]);
        assert_eq!(fa.alloc(0, 1), None);
        assert_eq!(fa.alloc(1, 3), None);
        assert_eq!(fa.alloc(1, 0), None);
        assert_eq!(fa.free_bytes(), MIB);
    }

    #[test]
    fn overlapping_input_ranges_are_counted_once() {
        let fa = FrameAllocator::new(&[range(0x10_0000, 0x30_0000), range(0x20_0000, 0x40_0000)]);
        assert_eq!(fa.free_bytes(), 3 * MIB);
    }

    #[test]
    fn frame_zero_is_usable() {
        let mut fa = FrameAllocator::new(&[range(0, 0x2000)]);
        let mut got = [fa.alloc(1, 1).unwrap(), fa.alloc(1, 1).unwrap()];
        got.sort_unstable();
        assert_eq!(got, [0, 0x1000]);
    }
}
