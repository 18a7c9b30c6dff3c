//! Just enough of a flattened device tree reader (Devicetree Specification v0.4,
//! chapter 5) for a test guest to learn its RAM (`/memory@*` `reg`) and its
//! `/chosen` `bootargs` from the tree the hypervisor generated. Shared by the
//! victim and hostile guests (`#[path]`-included by the hostile one).
//!
//! Only depth-1 nodes are looked at and only the root's `#address-cells` /
//! `#size-cells`, which is all a generated tree for these guests has.

/// `FDT_MAGIC`, big-endian in the header.
pub const FDT_MAGIC: u32 = 0xd00d_feed;

const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// A device tree blob in memory.
#[derive(Clone, Copy)]
pub struct Fdt {
    blob: &'static [u8],
}

impl Fdt {
    /// The tree at `addr`, if its header's magic is right and its size is sane
    /// (at most 2 MiB, as Linux booting.rst allows).
    ///
    /// # Safety
    /// `addr` must be readable, identity-mapped guest RAM for the size the header
    /// states (the boot protocol hands the guest such an address in `x0`).
    pub unsafe fn at(addr: u64) -> Option<Fdt> {
        if addr == 0 || !addr.is_multiple_of(8) {
            return None;
        }
        let header = addr as *const u32;
        // SAFETY: the caller guarantees the header is readable.
        let (magic, size) = unsafe {
            (
                u32::from_be(header.read_volatile()),
                u32::from_be(header.add(1).read_volatile()),
            )
        };
        if magic != FDT_MAGIC || !(40..=(2 << 20)).contains(&size) {
            return None;
        }
        // SAFETY: the caller guarantees `size` bytes at `addr` are readable, and
        // nothing writes them while the guest reads its tree.
        let blob = unsafe { core::slice::from_raw_parts(addr as *const u8, size as usize) };
        Some(Fdt { blob })
    }

    fn be32(&self, off: usize) -> Option<u32> {
        let b = self.blob.get(off..off + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn cstr(&self, off: usize) -> Option<&'static [u8]> {
        let rest = self.blob.get(off..)?;
        let end = rest.iter().position(|&b| b == 0)?;
        Some(&rest[..end])
    }

    /// Calls `f(node_name, property_name, value)` for every property of the root
    /// (node name `""`) and of its direct children.
    fn for_each_property(&self, mut f: impl FnMut(&[u8], &[u8], &'static [u8])) -> Option<()> {
        let structs = self.be32(8)? as usize;
        let strings = self.be32(12)? as usize;
        let mut off = structs;
        let mut depth = 0usize;
        let mut node: &[u8] = b"";
        loop {
            let token = self.be32(off)?;
            off += 4;
            match token {
                FDT_BEGIN_NODE => {
                    let name = self.cstr(off)?;
                    off += (name.len() + 1).next_multiple_of(4);
                    depth += 1;
                    if depth <= 2 {
                        node = name;
                    }
                }
                FDT_END_NODE => {
                    depth = depth.checked_sub(1)?;
                    if depth <= 1 {
                        node = b"";
                    }
                }
                FDT_PROP => {
                    let len = self.be32(off)? as usize;
                    let name_off = self.be32(off + 4)? as usize;
                    let value = self.blob.get(off + 8..off + 8 + len)?;
                    off += (8 + len).next_multiple_of(4);
                    if depth <= 2 {
                        f(node, self.cstr(strings + name_off)?, value);
                    }
                }
                FDT_NOP => {}
                FDT_END => return Some(()),
                _ => return None,
            }
        }
    }

    /// The first RAM range of `/memory@*` as (base, size).
    pub fn memory(&self) -> Option<(u64, u64)> {
        let (mut address_cells, mut size_cells) = (2usize, 1usize);
        let mut reg: Option<&[u8]> = None;
        self.for_each_property(|node, prop, value| {
            let cells = || {
                value
                    .get(..4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            };
            match (node, prop) {
                (b"", b"#address-cells") => address_cells = cells().unwrap_or(2) as usize,
                (b"", b"#size-cells") => size_cells = cells().unwrap_or(1) as usize,
                (n, b"reg") if n.starts_with(b"memory") && reg.is_none() => reg = Some(value),
                _ => {}
            }
        })?;
        let reg = reg?;
        let read = |cells: &[u8]| {
            cells.chunks_exact(4).fold(0u64, |acc, c| {
                (acc << 32) | u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            })
        };
        let a = address_cells * 4;
        let s = size_cells * 4;
        let entry = reg.get(..a + s)?;
        Some((read(&entry[..a]), read(&entry[a..])))
    }

    /// The value of property `prop` of the root's child `node` (`b""`: the root).
    #[allow(dead_code)]
    pub fn property(&self, node: &[u8], prop: &[u8]) -> Option<&'static [u8]> {
        let mut found = None;
        self.for_each_property(|n, p, v| {
            if n == node && p == prop {
                found = Some(v);
            }
        })?;
        found
    }

    /// `/chosen/bootargs` without its terminating NUL, if present and UTF-8.
    pub fn bootargs(&self) -> Option<&'static str> {
        let mut args: Option<&'static [u8]> = None;
        self.for_each_property(|node, prop, value| {
            if node == b"chosen" && prop == b"bootargs" {
                args = Some(value);
            }
        })?;
        let args = args?;
        let args = args.strip_suffix(&[0]).unwrap_or(args);
        core::str::from_utf8(args).ok()
    }
}

/// The value of `key=value` among whitespace-separated bootargs.
pub fn bootarg<'a>(args: &'a str, key: &str) -> Option<&'a str> {
    args.split_ascii_whitespace()
        .filter_map(|w| w.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}
