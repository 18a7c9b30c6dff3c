//! A VM's RAM, mapped at stage 2 a 2 MiB chunk at a time on first touch.
//!
//! Zeroing all of a VM's RAM before it starts cost most of the hypervisor's
//! boot (a 1 GiB VM: about 50 M instructions of `DC ZVA` and cleaning, on top
//! of a fixed 7 M). Instead, each whole, aligned 2 MiB chunk of RAM starts
//! unmapped at stage 2 (its level-2 block descriptor written invalid when the
//! VM is built, the tables staying in place). The guest's first access to a
//! chunk takes a stage-2 Translation fault (Arm ARM D8.3, a fault on an
//! invalid descriptor); the exit path then zeroes the chunk to the point of
//! coherency and writes the block descriptor back, and the access is retried.
//! No TLB maintenance is needed for that: a descriptor that gives a
//! Translation fault is never cached in a TLB (Arm ARM D8.16.1, "the TLB
//! caches only valid translations"), so making it valid needs only a `DSB`
//! before the guest walks it.
//!
//! What the guest can see is the same as before: every byte it reads is zero
//! or written by itself or the loader, never an earlier run's or another VM's.
//! Chunks the images need are populated at load. A reload (the VM reset)
//! zeroes again every chunk that was populated and keeps it mapped, so the
//! stage 2 never loses a valid entry and the reset needs no TLB maintenance
//! either. RAM that is not a whole aligned chunk (the tail of a RAM size that
//! is not a multiple of 2 MiB, or RAM whose physical address is not aligned)
//! is mapped and zeroed eagerly, as all RAM was before.
//!
//! Set/way emulation cleans only what is mapped: an unmapped chunk has no
//! line of the guest's in any cache.

use alloc::boxed::Box;
use alloc::vec::Vec;
use core::ops::Range;

use super::hw::Hw;
use super::machine::GuestRam;

/// The granule of lazy mapping: a level-2 block with the 4 KiB granule.
pub const CHUNK: u64 = 2 << 20;

/// One chunk of RAM: where its stage-2 block descriptor is and what it holds
/// when mapped; `lazy: None` for RAM mapped from the start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Offset in the VM's RAM.
    pub offset: u64,
    pub len: u64,
    pub lazy: Option<LazyEntry>,
}

/// The stage-2 descriptor of a lazily mapped chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LazyEntry {
    /// Physical address of the descriptor.
    pub entry_pa: u64,
    /// The valid block descriptor that maps the chunk.
    pub desc: u64,
}

/// The RAM of one VM and which of its chunks are mapped. Kept under the VM's
/// RAM lock.
pub struct VmRam {
    frames: Box<dyn GuestRam>,
    chunks: Vec<Chunk>,
    /// Per chunk: mapped (always true for an eager one).
    present: Vec<bool>,
}

impl VmRam {
    pub fn new(frames: Box<dyn GuestRam>, chunks: Vec<Chunk>) -> Self {
        let present = chunks.iter().map(|c| c.lazy.is_none()).collect();
        VmRam {
            frames,
            chunks,
            present,
        }
    }

    pub fn frames(&mut self) -> &mut dyn GuestRam {
        &mut *self.frames
    }

    /// The chunk holding RAM offset `offset`.
    fn chunk_at(&self, offset: u64) -> Option<usize> {
        // Lazy chunks come first, CHUNK each, then at most one eager tail.
        let i = (offset / CHUNK) as usize;
        let c = self.chunks.get(i)?;
        (c.offset..c.offset + c.len).contains(&offset).then_some(i)
    }

    /// Maps chunk `i` if it is a lazy one not mapped yet: zeroed to the
    /// point of coherency first, then its descriptor made valid.
    fn populate(&mut self, i: usize, hw: &mut impl Hw) {
        let c = self.chunks[i];
        if let (Some(e), false) = (c.lazy, self.present[i]) {
            self.frames.zero_range_to_poc(c.offset, c.len);
            hw.write_stage2_entry(e.entry_pa, e.desc);
            self.present[i] = true;
        }
    }

    /// A stage-2 Translation fault at RAM offset `offset`: true if it is in a
    /// lazy chunk, now mapped (by this call or by another vCPU's a moment
    /// ago), so the access is retried; false if the fault is not the lazy
    /// mapping's (the caller treats it as before).
    pub fn on_fault(&mut self, offset: u64, hw: &mut impl Hw) -> bool {
        let Some(i) = self.chunk_at(offset) else {
            return false;
        };
        if self.chunks[i].lazy.is_none() {
            return false;
        }
        self.populate(i, hw);
        true
    }

    /// Before the VM starts (again): everything mapped is zeroed to the point
    /// of coherency; unmapped chunks stay unmapped.
    pub fn clear(&mut self) {
        for i in 0..self.chunks.len() {
            if self.present[i] {
                let c = self.chunks[i];
                self.frames.zero_range_to_poc(c.offset, c.len);
            }
        }
    }

    /// Copies `bytes` to RAM offset `offset` (inside the RAM), mapping the
    /// chunks it lands in first.
    pub fn load(&mut self, offset: u64, bytes: &[u8], hw: &mut impl Hw) {
        let end = offset + bytes.len() as u64;
        let mut at = offset;
        while at < end {
            match self.chunk_at(at) {
                Some(i) => {
                    self.populate(i, hw);
                    at = self.chunks[i].offset + self.chunks[i].len;
                }
                None => break,
            }
        }
        self.frames.copy_to_poc(offset, bytes);
    }

    /// The mapped ranges, as RAM offsets.
    pub fn mapped(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        self.chunks
            .iter()
            .zip(&self.present)
            .filter(|(_, p)| **p)
            .map(|(c, _)| c.offset..c.offset + c.len)
    }

    /// Bytes of RAM mapped.
    pub fn mapped_bytes(&self) -> u64 {
        self.mapped().map(|r| r.end - r.start).sum()
    }
}

/// Splits RAM of `len` bytes at IPA `ipa` and PA `pa` into chunks: whole,
/// aligned 2 MiB chunks can be lazy (`lazy_ok`), the rest is one eager tail.
/// Returns (offset, len, may be lazy) per chunk.
pub fn plan_chunks(ipa: u64, pa: u64, len: u64) -> Vec<(u64, u64, bool)> {
    let aligned = ipa.is_multiple_of(CHUNK) && pa.is_multiple_of(CHUNK);
    let whole = if aligned { len / CHUNK } else { 0 };
    let mut out: Vec<(u64, u64, bool)> = (0..whole).map(|k| (k * CHUNK, CHUNK, true)).collect();
    let rest = len - whole * CHUNK;
    if rest > 0 {
        out.push((whole * CHUNK, rest, false));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vm::fake::{Board, FakeHw, FakeRam};

    fn ram(len: u64, lazy_chunks: usize) -> VmRam {
        let chunks = plan_chunks(0x4000_0000, 0x8000_0000, len)
            .into_iter()
            .enumerate()
            .map(|(i, (offset, len, lazy))| Chunk {
                offset,
                len,
                lazy: (lazy && i < lazy_chunks).then_some(LazyEntry {
                    entry_pa: 0x1000 + i as u64 * 8,
                    desc: (0x8000_0000 + offset) | 0x4fd,
                }),
            })
            .collect();
        VmRam::new(Box::new(FakeRam::new(len as usize)), chunks)
    }

    #[test]
    fn chunks_of_aligned_and_unaligned_ram() {
        assert_eq!(
            plan_chunks(0x4000_0000, 0x8000_0000, 5 << 20),
            [
                (0, CHUNK, true),
                (CHUNK, CHUNK, true),
                (4 << 20, 1 << 20, false)
            ]
        );
        assert_eq!(
            plan_chunks(0x4000_0000, 0x8010_0000, 4 << 20),
            [(0, 4 << 20, false)]
        );
    }

    #[test]
    fn first_touch_zeroes_then_maps_once() {
        let board = Board::new(1);
        let mut hw = FakeHw::new(0, &board);
        let mut r = ram(5 << 20, 2);
        // Something an earlier user of these frames left.
        r.frames().bytes_mut()[(2 << 20) + 5] = 0xaa;
        assert_eq!(r.mapped_bytes(), 1 << 20, "only the eager tail");
        assert!(r.on_fault((2 << 20) + 0x1234, &mut hw));
        assert_eq!(
            r.frames().bytes_mut()[(2 << 20) + 5],
            0,
            "zeroed before mapping"
        );
        assert_eq!(
            board.borrow().stage2_writes,
            [(0x1008, 0x8020_0000 | 0x4fd)]
        );
        // A second fault on it (another vCPU raced) retries without work.
        assert!(r.on_fault((2 << 20) + 8, &mut hw));
        assert_eq!(board.borrow().stage2_writes.len(), 1);
        // The eager tail is not the lazy mapping's business; nor is outside.
        assert!(!r.on_fault((4 << 20) + 8, &mut hw));
        assert!(!r.on_fault(5 << 20, &mut hw));
        assert_eq!(r.mapped_bytes(), 3 << 20);
    }

    #[test]
    fn load_maps_what_it_writes_and_clear_rezeroes_what_is_mapped() {
        let board = Board::new(1);
        let mut hw = FakeHw::new(0, &board);
        let mut r = ram(6 << 20, 3);
        // An image across the first two chunks.
        r.load(CHUNK - 2, &[1, 2, 3, 4], &mut hw);
        assert_eq!(board.borrow().stage2_writes.len(), 2);
        assert_eq!(r.mapped().collect::<Vec<_>>(), [0..CHUNK, CHUNK..2 * CHUNK]);
        assert_eq!(
            &r.frames().bytes_mut()[CHUNK as usize - 2..][..4],
            [1, 2, 3, 4]
        );
        // The guest writes; a reset clears what is mapped and keeps it mapped.
        r.frames().bytes_mut()[7] = 9;
        r.clear();
        assert_eq!(r.frames().bytes_mut()[7], 0);
        assert_eq!(&r.frames().bytes_mut()[CHUNK as usize - 2..][..4], [0; 4]);
        assert_eq!(r.mapped_bytes(), 2 * CHUNK);
        assert_eq!(board.borrow().stage2_writes.len(), 2, "no remapping");
    }
}
