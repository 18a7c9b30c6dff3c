//! Planning bulk work on RAM: how a range splits into the naturally aligned blocks
//! `DC ZVA` zeroes and the cache lines `DC CVAC` cleans, and what `DCZID_EL0` says
//! about the block. The arch layer (`arch::aarch64::ram`) executes the plan; the
//! arithmetic lives here so the host tests it.
//!
//! Source: Arm ARM, DCZID_EL0 (BS: log2 of the block size in 4-byte words; DZP:
//! DC ZVA prohibited) and the DC ZVA description (it zeroes the naturally aligned
//! block that contains the address, whatever its low bits), CTR_EL0.DminLine.

use core::ops::Range;

/// DCZID_EL0.DZP (bit 4): DC ZVA is prohibited at this Exception level.
const DCZID_DZP: u64 = 1 << 4;
/// DCZID_EL0.BS (bits [3:0]).
const DCZID_BS: u64 = 0xf;

/// The block `DC ZVA` zeroes, in bytes, or `None` when it may not be used
/// (DCZID_EL0.DZP set). BS is log2 of the block in 4-byte words; the
/// architecture caps it at 9 (2 KiB), larger values are reserved and treated as
/// "do not use".
pub fn dc_zva_block(dczid_el0: u64) -> Option<u64> {
    if dczid_el0 & DCZID_DZP != 0 {
        return None;
    }
    let bs = dczid_el0 & DCZID_BS;
    (bs <= 9).then(|| 4u64 << bs)
}

/// The smallest data-cache line, in bytes, from CTR_EL0.DminLine (bits [19:16],
/// log2 of the line in 4-byte words).
pub fn dcache_min_line(ctr_el0: u64) -> u64 {
    4 << ((ctr_el0 >> 16) & 0xf)
}

/// `[start, start + len)` split for an operation on naturally aligned blocks of
/// `block` bytes (a power of two): the bytes before the first whole block, the
/// whole blocks, and the bytes after them. The three ranges are adjacent and
/// cover the input exactly; `head` and `tail` are each shorter than a block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockSplit {
    pub head: Range<u64>,
    pub blocks: Range<u64>,
    pub tail: Range<u64>,
}

/// Splits `[start, start + len)` into [`BlockSplit`]. `block` must be a power of
/// two; a range with no whole block is all `head` (`blocks` and `tail` empty at
/// its end).
pub fn split_blocks(start: u64, len: u64, block: u64) -> BlockSplit {
    debug_assert!(block.is_power_of_two());
    let end = start.saturating_add(len);
    let first = start.next_multiple_of(block).min(end);
    let last = (end & !(block - 1)).max(first);
    BlockSplit {
        head: start..first,
        blocks: first..last,
        tail: last..end,
    }
}

/// The cache lines (of `line` bytes, a power of two) that `[start, start + len)`
/// touches: the start of the first, and one past the last. Cleaning every line
/// in between covers every byte of the range.
pub fn lines_covering(start: u64, len: u64, line: u64) -> Range<u64> {
    debug_assert!(line.is_power_of_two());
    if len == 0 {
        return start..start;
    }
    let end = start.saturating_add(len);
    (start & !(line - 1))..end.next_multiple_of(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dczid_block_and_prohibited() {
        // QEMU's cortex-a57 and -cpu max (system mode): BS = 4, 64 bytes.
        assert_eq!(dc_zva_block(4), Some(64));
        assert_eq!(dc_zva_block(0), Some(4));
        assert_eq!(dc_zva_block(9), Some(2048));
        assert_eq!(dc_zva_block(DCZID_DZP | 4), None, "DZP: prohibited");
        assert_eq!(dc_zva_block(0xa), None, "reserved block size");
    }

    #[test]
    fn ctr_min_line() {
        // CTR_EL0 0x8444c004 (cortex-a57): DminLine 4, 64-byte lines.
        assert_eq!(dcache_min_line(0x8444_c004), 64);
        assert_eq!(dcache_min_line(0x8003_8003), 32);
    }

    #[test]
    fn split_aligned_range_is_all_blocks() {
        let s = split_blocks(0x4000_0000, 1 << 30, 64);
        assert_eq!(s.head, 0x4000_0000..0x4000_0000);
        assert_eq!(s.blocks, 0x4000_0000..0x8000_0000);
        assert_eq!(s.tail, 0x8000_0000..0x8000_0000);
    }

    #[test]
    fn split_unaligned_ends() {
        let s = split_blocks(0x1010, 0x100, 64);
        assert_eq!(s.head, 0x1010..0x1040);
        assert_eq!(s.blocks, 0x1040..0x1100);
        assert_eq!(s.tail, 0x1100..0x1110);
    }

    #[test]
    fn split_inside_one_block_is_all_head() {
        let s = split_blocks(0x1008, 0x10, 64);
        assert_eq!(s.head, 0x1008..0x1018);
        assert!(s.blocks.is_empty() && s.tail.is_empty());
        assert_eq!(s.blocks.start, 0x1018);
        assert_eq!(s.tail, 0x1018..0x1018);
    }

    #[test]
    fn split_covers_every_byte_once() {
        for start in 0..130u64 {
            for len in 0..200u64 {
                let s = split_blocks(start, len, 32);
                assert_eq!(s.head.start, start);
                assert_eq!(s.head.end, s.blocks.start);
                assert_eq!(s.blocks.end, s.tail.start);
                assert_eq!(s.tail.end, start + len);
                assert!(s.head.end - s.head.start < 32);
                assert!(s.tail.end - s.tail.start < 32);
                if !s.blocks.is_empty() {
                    assert_eq!(s.blocks.start % 32, 0, "{start} {len}");
                    assert_eq!(s.blocks.end % 32, 0, "{start} {len}");
                }
            }
        }
    }

    #[test]
    fn lines_cover_range() {
        assert_eq!(lines_covering(0x1010, 0x40, 64), 0x1000..0x1080);
        assert_eq!(lines_covering(0x1000, 0x40, 64), 0x1000..0x1040);
        assert_eq!(lines_covering(0x1000, 0, 64), 0x1000..0x1000);
        assert_eq!(lines_covering(0x103f, 1, 64), 0x1000..0x1040);
    }
}
