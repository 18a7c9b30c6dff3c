//! The flattened-devicetree container, checked before the `fdt` crate reads it.
//!
//! The `fdt` crate (0.1.5) trusts its input: it indexes slices with lengths taken from
//! the blob and `unwrap`s/`assert`s on the structure block (`NodeProperty::parse`,
//! `skip_current_node`, `FdtNode::children`, `cell_sizes`, `str_at_offset`), so a
//! truncated property, an unbalanced node, a string offset past the strings block or
//! an `FDT_NOP` between two properties panics inside it. This module walks the whole
//! blob once with checked arithmetic and refuses anything the crate could trip on, so
//! that after [`check`] succeeds the crate's traversal code runs on well-formed data.
//! `FDT_NOP` tokens are legal (libfdt leaves them behind when it deletes a property or
//! node in place), so instead of refusing them [`check`] returns a copy without them.
//!
//! Layout (Devicetree Specification v0.4, chapter 5): a 40-byte header, the memory
//! reservation block, the structure block and the strings block.

use alloc::borrow::Cow;
use alloc::vec::Vec;

use super::PlatformError;

/// Devicetree Specification 5.2: `magic` is 0xd00dfeed, big-endian.
pub(crate) const FDT_MAGIC: u32 = 0xd00d_feed;
/// Devicetree Specification 5.2: the version 17 header is ten 32-bit fields.
pub(crate) const FDT_HEADER_LEN: usize = 40;
/// Linux `Documentation/arch/arm64/booting.rst`: the device tree blob must not exceed
/// 2 MiB. Anything larger that arrives in x0 is garbage, not a device tree.
pub(crate) const FDT_MAX_TOTAL_SIZE: usize = 2 << 20;
/// `size_dt_struct` (which the `fdt` crate relies on) first appears in version 17.
const FDT_MIN_VERSION: u32 = 17;
/// Deeper trees are refused: real ones are a handful of levels deep, and the `fdt`
/// crate keeps parents in a fixed 64-entry array.
pub(crate) const FDT_MAX_DEPTH: usize = 32;

// Devicetree Specification 5.4.1: structure block tokens.
const FDT_BEGIN_NODE: u32 = 0x1;
const FDT_END_NODE: u32 = 0x2;
const FDT_PROP: u32 = 0x3;
const FDT_NOP: u32 = 0x4;
const FDT_END: u32 = 0x9;

/// The fields of the header this module needs, as host integers.
#[derive(Debug, Clone, Copy)]
struct Header {
    totalsize: usize,
    off_dt_struct: usize,
    off_dt_strings: usize,
    off_mem_rsvmap: usize,
    size_dt_strings: usize,
    size_dt_struct: usize,
}

fn be32(bytes: &[u8], offset: usize) -> Option<u32> {
    let end = offset.checked_add(4)?;
    let b = bytes.get(offset..end)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn be64(bytes: &[u8], offset: usize) -> Option<u64> {
    let hi = be32(bytes, offset)?;
    let lo = be32(bytes, offset.checked_add(4)?)?;
    Some((u64::from(hi) << 32) | u64::from(lo))
}

fn align4(n: usize) -> Option<usize> {
    n.checked_add(3).map(|n| n & !3)
}

fn malformed(offset: usize, reason: &'static str) -> PlatformError {
    PlatformError::Malformed { offset, reason }
}

impl Header {
    /// Reads and sanity-checks the header from the first [`FDT_HEADER_LEN`] bytes.
    fn read(bytes: &[u8]) -> Result<Self, PlatformError> {
        if bytes.len() < FDT_HEADER_LEN {
            return Err(PlatformError::Truncated {
                needed: FDT_HEADER_LEN,
                available: bytes.len(),
            });
        }
        // The length check above makes every field read below succeed.
        let field = |i: usize| be32(bytes, i * 4).unwrap_or(0);
        let magic = field(0);
        if magic != FDT_MAGIC {
            return Err(PlatformError::BadMagic(magic));
        }
        let totalsize = field(1);
        if (totalsize as usize) < FDT_HEADER_LEN || totalsize as usize > FDT_MAX_TOTAL_SIZE {
            return Err(PlatformError::BadTotalSize(totalsize));
        }
        let (version, last_compatible) = (field(5), field(6));
        if version < FDT_MIN_VERSION || last_compatible > FDT_MIN_VERSION {
            return Err(PlatformError::UnsupportedVersion {
                version,
                last_compatible,
            });
        }
        let h = Header {
            totalsize: totalsize as usize,
            off_dt_struct: field(2) as usize,
            off_dt_strings: field(3) as usize,
            off_mem_rsvmap: field(4) as usize,
            size_dt_strings: field(8) as usize,
            size_dt_struct: field(9) as usize,
        };
        // Devicetree Specification 5.1: the reservation block is 8-byte aligned and the
        // structure block 4-byte aligned; every block lies inside `totalsize`.
        if h.off_mem_rsvmap < FDT_HEADER_LEN || !h.off_mem_rsvmap.is_multiple_of(8) {
            return Err(malformed(16, "memory reservation block misplaced"));
        }
        if h.off_dt_struct < FDT_HEADER_LEN || !h.off_dt_struct.is_multiple_of(4) {
            return Err(malformed(8, "structure block misplaced"));
        }
        let within =
            |off: usize, len: usize| off.checked_add(len).is_some_and(|end| end <= h.totalsize);
        if !within(h.off_dt_struct, h.size_dt_struct) {
            return Err(malformed(8, "structure block runs past totalsize"));
        }
        if h.off_dt_strings < FDT_HEADER_LEN || !within(h.off_dt_strings, h.size_dt_strings) {
            return Err(malformed(12, "strings block runs past totalsize"));
        }
        if h.off_mem_rsvmap >= h.totalsize {
            return Err(malformed(16, "memory reservation block past totalsize"));
        }
        Ok(h)
    }
}

/// The size in bytes of the devicetree blob whose header starts at `header[0]`, after
/// checking the magic, the version and that every block lies within that size.
///
/// Only the first [`FDT_HEADER_LEN`] (40) bytes are read: the arch layer calls this on
/// the bytes at the x0 pointer before it knows how long a slice to make.
pub fn fdt_total_size(header: &[u8]) -> Result<usize, PlatformError> {
    Header::read(header).map(|h| h.totalsize)
}

/// Checks `dtb` completely and returns the blob trimmed to `totalsize`, without
/// `FDT_NOP` tokens (a copy is made only when it had some).
pub(crate) fn check(dtb: &[u8]) -> Result<Cow<'_, [u8]>, PlatformError> {
    let h = Header::read(dtb)?;
    if dtb.len() < h.totalsize {
        return Err(PlatformError::Truncated {
            needed: h.totalsize,
            available: dtb.len(),
        });
    }
    let dtb = &dtb[..h.totalsize];
    let rsvmap_len = check_rsvmap(dtb, &h)?;
    let structs = &dtb[h.off_dt_struct..h.off_dt_struct + h.size_dt_struct];
    let strings = &dtb[h.off_dt_strings..h.off_dt_strings + h.size_dt_strings];
    let had_nop = walk_structure(structs, strings, h.off_dt_struct, None)?;
    if !had_nop {
        return Ok(Cow::Borrowed(dtb));
    }
    let mut compact = Vec::with_capacity(structs.len());
    walk_structure(structs, strings, h.off_dt_struct, Some(&mut compact))?;
    Ok(Cow::Owned(rebuild(dtb, &h, rsvmap_len, &compact, strings)))
}

/// Devicetree Specification 5.3: (address, size) pairs of 64-bit values ending with a
/// (0, 0) entry. Returns the length of the block including the terminator.
fn check_rsvmap(dtb: &[u8], h: &Header) -> Result<usize, PlatformError> {
    let mut off = h.off_mem_rsvmap;
    loop {
        let (Some(address), Some(size)) = (be64(dtb, off), be64(dtb, off + 8)) else {
            return Err(malformed(
                off,
                "memory reservation block has no terminating entry",
            ));
        };
        off += 16;
        if address == 0 && size == 0 {
            return Ok(off - h.off_mem_rsvmap);
        }
        if address.checked_add(size).is_none() {
            return Err(malformed(off - 16, "memory reservation wraps past 2^64"));
        }
    }
}

/// Walks the structure block token by token. Returns whether it holds `FDT_NOP`
/// tokens; with `sink`, appends every other token (with its payload) to it.
fn walk_structure(
    structs: &[u8],
    strings: &[u8],
    base: usize,
    mut sink: Option<&mut Vec<u8>>,
) -> Result<bool, PlatformError> {
    let mut pos = 0usize;
    let mut depth = 0usize;
    let mut seen_root = false;
    let mut had_nop = false;
    // children_started[d]: the node at depth d has had a child, so no more properties
    // (the `fdt` crate reads all properties before the first child).
    let mut children_started = [false; FDT_MAX_DEPTH + 1];
    loop {
        let start = pos;
        let at = base + start;
        let token =
            be32(structs, pos).ok_or(malformed(at, "structure block ends without FDT_END"))?;
        pos += 4;
        match token {
            FDT_BEGIN_NODE => {
                if depth == 0 && seen_root {
                    return Err(malformed(at, "more than one root node"));
                }
                let rest = structs.get(pos..).unwrap_or(&[]);
                let len = rest
                    .iter()
                    .position(|&b| b == 0)
                    .ok_or(malformed(at, "node name is not NUL-terminated"))?;
                let name = &rest[..len];
                if core::str::from_utf8(name).is_err() {
                    return Err(malformed(at, "node name is not UTF-8"));
                }
                if depth == 0 && !name.is_empty() {
                    return Err(malformed(at, "root node has a name"));
                }
                pos = align4(pos + len + 1).ok_or(malformed(at, "node name too long"))?;
                if depth > 0 {
                    children_started[depth] = true;
                }
                depth += 1;
                if depth > FDT_MAX_DEPTH {
                    return Err(malformed(at, "nodes nested more than 32 deep"));
                }
                children_started[depth] = false;
                seen_root = true;
            }
            FDT_PROP => {
                if depth == 0 {
                    return Err(malformed(at, "property outside any node"));
                }
                if children_started[depth] {
                    return Err(malformed(at, "property after a child node"));
                }
                let (Some(len), Some(nameoff)) = (be32(structs, pos), be32(structs, pos + 4))
                else {
                    return Err(malformed(at, "property header truncated"));
                };
                pos += 8;
                let end = pos
                    .checked_add(len as usize)
                    .filter(|&end| end <= structs.len())
                    .ok_or(malformed(
                        at,
                        "property value runs past the structure block",
                    ))?;
                let name = strings
                    .get(nameoff as usize..)
                    .filter(|s| !s.is_empty())
                    .and_then(|s| s.iter().position(|&b| b == 0).map(|n| &s[..n]))
                    .ok_or(malformed(
                        at,
                        "property name offset outside the strings block",
                    ))?;
                if core::str::from_utf8(name).is_err() {
                    return Err(malformed(at, "property name is not UTF-8"));
                }
                // The `fdt` crate `expect`s these to hold at least one cell.
                let is_cells = matches!(
                    name,
                    b"#address-cells" | b"#size-cells" | b"#interrupt-cells"
                );
                if is_cells && len != 4 {
                    return Err(malformed(
                        at,
                        "a #...-cells property is not exactly one cell",
                    ));
                }
                pos = align4(end).ok_or(malformed(at, "property value too long"))?;
            }
            FDT_NOP => had_nop = true,
            FDT_END_NODE => {
                if depth == 0 {
                    return Err(malformed(at, "FDT_END_NODE without a node to end"));
                }
                depth -= 1;
            }
            FDT_END => {
                if !seen_root {
                    return Err(malformed(at, "no root node"));
                }
                if depth != 0 {
                    return Err(malformed(at, "FDT_END inside an unfinished node"));
                }
                if let Some(out) = sink {
                    out.extend_from_slice(&FDT_END.to_be_bytes());
                }
                return Ok(had_nop);
            }
            _ => return Err(malformed(at, "unknown structure block token")),
        }
        if let (true, Some(out)) = (token != FDT_NOP, sink.as_deref_mut()) {
            // Every token but the last is followed by another, so the aligned end is
            // inside the block; `get` keeps that an error rather than a panic.
            let bytes = structs
                .get(start..pos)
                .ok_or(malformed(at, "token runs past the structure block"))?;
            out.extend_from_slice(bytes);
        }
    }
}

/// A new blob: header, reservation block, the compacted structure block, strings.
fn rebuild(dtb: &[u8], h: &Header, rsvmap_len: usize, structs: &[u8], strings: &[u8]) -> Vec<u8> {
    let off_mem_rsvmap = FDT_HEADER_LEN; // 40 is a multiple of 8
    let off_dt_struct = off_mem_rsvmap + rsvmap_len; // rsvmap is whole 16-byte entries
    let off_dt_strings = off_dt_struct + structs.len();
    let totalsize = off_dt_strings + strings.len();
    let mut out = Vec::with_capacity(totalsize);
    out.extend_from_slice(&dtb[..FDT_HEADER_LEN]);
    out.extend_from_slice(&dtb[h.off_mem_rsvmap..h.off_mem_rsvmap + rsvmap_len]);
    out.extend_from_slice(structs);
    out.extend_from_slice(strings);
    let mut put = |field: usize, value: usize| {
        out[field * 4..field * 4 + 4].copy_from_slice(&(value as u32).to_be_bytes());
    };
    put(1, totalsize);
    put(2, off_dt_struct);
    put(3, off_dt_strings);
    put(4, off_mem_rsvmap);
    put(8, strings.len());
    put(9, structs.len());
    out
}
