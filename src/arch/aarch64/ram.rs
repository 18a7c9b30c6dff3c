//! Bulk work on RAM by physical address: zeroing with `DC ZVA`, copying images,
//! and cleaning to the point of coherency by VA. Every address passed here is identity-mapped Normal
//! memory in the EL2 map (guest RAM frames, translation tables): `DC ZVA` on
//! Device memory would be an alignment fault.
//!
//! The split of a range into blocks and lines is planned by [`crate::mm::bulk`]
//! (host-tested); this module runs it. Each loop handles eight blocks per
//! iteration: two instructions per block (the operation and the address step)
//! plus a quarter for the loop.

use core::arch::asm;
use core::ops::Range;

use super::regs;
use crate::mm::bulk::{self, BlockSplit};

/// Bytes handled per pass when zeroing and cleaning cannot share one loop (the
/// `DC ZVA` block differs from the cache line): small enough that the zeroed
/// lines are still in the cache when they are cleaned.
const CHUNK: u64 = 64 << 10;

fn read_dczid_el0() -> u64 {
    let v: u64;
    // SAFETY: DCZID_EL0 is readable at every Exception level; no side effects.
    unsafe { asm!("mrs {}, dczid_el0", out(reg) v, options(nomem, nostack, preserves_flags)) };
    v
}

/// Zeroes `[pa, pa + len)` through the caches: `DC ZVA` for the whole blocks
/// (DCZID_EL0.BS) unless DCZID_EL0.DZP prohibits it, 16-byte stores for the rest.
/// The zeroes may sit dirty in the data cache afterwards: an observer that reads
/// memory with its caches off needs [`zero_range_to_poc`] instead.
pub fn zero_range(pa: u64, len: u64) {
    match bulk::dc_zva_block(read_dczid_el0()) {
        Some(block) => {
            let BlockSplit { head, blocks, tail } = bulk::split_blocks(pa, len, block);
            store_zeros(head);
            dc_zva(blocks, block);
            store_zeros(tail);
        }
        None => store_zeros(pa..pa.saturating_add(len)),
    }
    regs::dsb_ish();
}

/// Zeroes `[pa, pa + len)` and cleans it to the point of coherency, so an
/// observer that bypasses the caches (a guest with its MMU off) reads zeroes and
/// no dirty line of the range is left to be written back over what it writes.
/// Where the `DC ZVA` block is the cache line (QEMU's CPUs, most cores) one pass
/// does both, `DC ZVA` then `DC CVAC` on each line; otherwise the range is zeroed
/// and cleaned chunk by chunk.
pub fn zero_range_to_poc(pa: u64, len: u64) {
    let line = bulk::dcache_min_line(regs::read_ctr_el0());
    match bulk::dc_zva_block(read_dczid_el0()) {
        Some(block) if block == line => {
            let BlockSplit { head, blocks, tail } = bulk::split_blocks(pa, len, block);
            store_zeros(head.clone());
            store_zeros(tail.clone());
            dc_zva_cvac(blocks, block);
            clean_lines(
                bulk::lines_covering(head.start, head.end - head.start, line),
                line,
            );
            clean_lines(
                bulk::lines_covering(tail.start, tail.end - tail.start, line),
                line,
            );
        }
        _ => {
            let end = pa.saturating_add(len);
            let mut at = pa;
            while at < end {
                let next = at.saturating_add(CHUNK).min(end);
                zero_range(at, next - at);
                clean_lines(bulk::lines_covering(at, next - at, line), line);
                at = next;
            }
        }
    }
    regs::dsb_sy();
}

/// Cleans `[pa, pa + len)` to the point of coherency by VA (`DC CVAC` on every
/// line it touches), then waits for completion (`DSB SY`).
pub fn clean_range_to_poc(pa: u64, len: u64) {
    let line = bulk::dcache_min_line(regs::read_ctr_el0());
    clean_lines(bulk::lines_covering(pa, len, line), line);
    regs::dsb_sy();
}

/// Copies `src` to `[pa, pa + src.len())` and cleans the destination to the
/// point of coherency, for an observer that reads memory with its caches off
/// (a guest's images). 64 bytes per loop iteration with LDP/STP, whatever the
/// source's alignment: the boot bundle keeps files only 4-byte aligned, and
/// unaligned LDP from Normal memory is permitted (SCTLR_EL2.A is clear), where a
/// byte-assembling copy costs an instruction per byte or more.
pub fn copy_to_poc(pa: u64, src: &[u8]) {
    let len = src.len() as u64;
    let BlockSplit { head, blocks, tail } = bulk::split_blocks(pa, len, 64);
    let from = src.as_ptr() as u64;
    copy_bytes(head.clone(), from);
    let count = (blocks.end - blocks.start) / 64;
    // SAFETY: the destination `blocks` lies in `[pa, pa + len)`, RAM the caller
    // owns (identity-mapped Normal memory); the source is the matching part of
    // `src`, which is readable for its length. LDP/STP of unaligned addresses is
    // permitted on Normal memory with SCTLR_EL2.A clear (the hypervisor's setting).
    unsafe {
        asm!(
            "cbz    {n}, 2f",
            "1:",
            "ldp    {a}, {b}, [{s}], #16",
            "ldp    {c}, {d}, [{s}], #16",
            "stp    {a}, {b}, [{p}], #16",
            "stp    {c}, {d}, [{p}], #16",
            "ldp    {a}, {b}, [{s}], #16",
            "ldp    {c}, {d}, [{s}], #16",
            "stp    {a}, {b}, [{p}], #16",
            "stp    {c}, {d}, [{p}], #16",
            "subs   {n}, {n}, #1",
            "b.ne   1b",
            "2:",
            p = inout(reg) blocks.start => _,
            s = inout(reg) from + (blocks.start - pa) => _,
            n = inout(reg) count => _,
            a = out(reg) _,
            b = out(reg) _,
            c = out(reg) _,
            d = out(reg) _,
            options(nostack),
        )
    };
    copy_bytes(tail.clone(), from + (tail.start - pa));
    let line = bulk::dcache_min_line(regs::read_ctr_el0());
    clean_lines(bulk::lines_covering(pa, len, line), line);
    regs::dsb_sy();
}

/// Copies bytes to the destination range `r` from `from` on.
fn copy_bytes(r: Range<u64>, from: u64) {
    for (i, a) in r.enumerate() {
        // SAFETY: `a` is inside a destination range the caller owns, `from + i` inside
        // its source slice (see `copy_to_poc`).
        unsafe { (a as *mut u8).write_volatile(((from + i as u64) as *const u8).read()) };
    }
}

/// `count` operations of `step` bytes from `start`, as eight per loop iteration
/// and the remainder one at a time.
fn groups(r: &Range<u64>, step: u64) -> (u64, u64) {
    let count = (r.end - r.start) / step;
    (count / 8, count % 8)
}

/// `DC ZVA` on each `block`-aligned block of `r` (both ends block-aligned).
fn dc_zva(r: Range<u64>, block: u64) {
    let (eights, rest) = groups(&r, block);
    // SAFETY: `r` is identity-mapped Normal RAM owned by the caller (the
    // functions above are only given such ranges); DC ZVA writes zeroes to the
    // blocks inside it and nothing else.
    unsafe {
        asm!(
            "cbz    {eights}, 2f",
            "1:",
            ".rept 8",
            "dc     zva, {p}",
            "add    {p}, {p}, {step}",
            ".endr",
            "subs   {eights}, {eights}, #1",
            "b.ne   1b",
            "2:",
            "cbz    {rest}, 4f",
            "3:",
            "dc     zva, {p}",
            "add    {p}, {p}, {step}",
            "subs   {rest}, {rest}, #1",
            "b.ne   3b",
            "4:",
            p = inout(reg) r.start => _,
            eights = inout(reg) eights => _,
            rest = inout(reg) rest => _,
            step = in(reg) block,
            options(nostack),
        )
    };
}

/// `DC ZVA` then `DC CVAC` on each block of `r`, where the block is the cache line.
fn dc_zva_cvac(r: Range<u64>, block: u64) {
    let (eights, rest) = groups(&r, block);
    // SAFETY: as `dc_zva`; DC CVAC only writes the zeroed lines back to memory.
    unsafe {
        asm!(
            "cbz    {eights}, 2f",
            "1:",
            ".rept 8",
            "dc     zva, {p}",
            "dc     cvac, {p}",
            "add    {p}, {p}, {step}",
            ".endr",
            "subs   {eights}, {eights}, #1",
            "b.ne   1b",
            "2:",
            "cbz    {rest}, 4f",
            "3:",
            "dc     zva, {p}",
            "dc     cvac, {p}",
            "add    {p}, {p}, {step}",
            "subs   {rest}, {rest}, #1",
            "b.ne   3b",
            "4:",
            p = inout(reg) r.start => _,
            eights = inout(reg) eights => _,
            rest = inout(reg) rest => _,
            step = in(reg) block,
            options(nostack),
        )
    };
}

/// `DC CVAC` on each `line`-aligned line of `r` (both ends line-aligned).
fn clean_lines(r: Range<u64>, line: u64) {
    let (eights, rest) = groups(&r, line);
    // SAFETY: DC CVAC on mapped addresses writes dirty lines back to memory; what
    // the program reads does not change.
    unsafe {
        asm!(
            "cbz    {eights}, 2f",
            "1:",
            ".rept 8",
            "dc     cvac, {p}",
            "add    {p}, {p}, {step}",
            ".endr",
            "subs   {eights}, {eights}, #1",
            "b.ne   1b",
            "2:",
            "cbz    {rest}, 4f",
            "3:",
            "dc     cvac, {p}",
            "add    {p}, {p}, {step}",
            "subs   {rest}, {rest}, #1",
            "b.ne   3b",
            "4:",
            p = inout(reg) r.start => _,
            eights = inout(reg) eights => _,
            rest = inout(reg) rest => _,
            step = in(reg) line,
            options(nostack, preserves_flags),
        )
    };
}

/// Zeroes `r` with plain stores: 16 bytes at a time (`STP XZR, XZR`, four per
/// loop iteration) over its 16-byte-aligned middle, single bytes at its ends.
fn store_zeros(r: Range<u64>) {
    let BlockSplit { head, blocks, tail } = bulk::split_blocks(r.start, r.end - r.start, 16);
    zero_bytes(head);
    let count = (blocks.end - blocks.start) / 16;
    let (fours, rest) = (count / 4, count % 4);
    // SAFETY: `blocks` lies inside a range the caller owns (identity-mapped
    // Normal RAM) and is 16-byte aligned; the stores write zeroes there only.
    unsafe {
        asm!(
            "cbz    {fours}, 2f",
            "1:",
            "stp    xzr, xzr, [{p}], #16",
            "stp    xzr, xzr, [{p}], #16",
            "stp    xzr, xzr, [{p}], #16",
            "stp    xzr, xzr, [{p}], #16",
            "subs   {fours}, {fours}, #1",
            "b.ne   1b",
            "2:",
            "cbz    {rest}, 4f",
            "3:",
            "stp    xzr, xzr, [{p}], #16",
            "subs   {rest}, {rest}, #1",
            "b.ne   3b",
            "4:",
            p = inout(reg) blocks.start => _,
            fours = inout(reg) fours => _,
            rest = inout(reg) rest => _,
            options(nostack),
        )
    };
    zero_bytes(tail);
}

fn zero_bytes(r: Range<u64>) {
    for a in r {
        // SAFETY: inside a range the caller owns (identity-mapped Normal RAM).
        unsafe { (a as *mut u8).write_volatile(0) };
    }
}
