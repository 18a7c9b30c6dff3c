//! Just enough of a flattened device tree reader for this guest: `/chosen/bootargs`
//! (where the config tells the guest which cache policy it runs under) and the number
//! of `/cpus/cpu@N` nodes (how many vCPUs the VM has).
//!
//! Format: Devicetree Specification v0.4, chapter 5 (all fields big-endian): a 40-byte
//! header, then a structure block of 32-bit tokens (`FDT_BEGIN_NODE` + NUL-terminated
//! name padded to 4 bytes, `FDT_PROP` + len + nameoff + value padded to 4 bytes,
//! `FDT_END_NODE`, `FDT_NOP`, `FDT_END`) and a strings block holding property names.

const FDT_MAGIC: u32 = 0xd00d_feed;
const FDT_BEGIN_NODE: u32 = 1;
const FDT_END_NODE: u32 = 2;
const FDT_PROP: u32 = 3;
const FDT_NOP: u32 = 4;
const FDT_END: u32 = 9;

/// A device tree refused as malformed, with the reason.
#[derive(Debug)]
pub struct FdtError(pub &'static str);

/// What this guest needs from its device tree.
#[derive(Debug, Default)]
pub struct MachineInfo {
    /// `/chosen/bootargs` without its terminating NUL, if present.
    pub bootargs: Option<&'static str>,
    /// How many `cpu@...` nodes `/cpus` has.
    pub cpus: usize,
}

/// Reads the device tree at `addr` (guest RAM, identity-mapped by the runtime).
pub fn read(addr: u64) -> Result<MachineInfo, FdtError> {
    if !guest_rt::boot::MAPPED_RAM.contains(&addr) || !addr.is_multiple_of(8) {
        return Err(FdtError("x0 is not an 8-byte aligned address in guest RAM"));
    }
    // SAFETY: addr is aligned and inside guest RAM, mapped Normal by the boot map;
    // the header is 40 bytes and the loader put a whole device tree there.
    let header = unsafe { core::slice::from_raw_parts(addr as *const u8, 40) };
    if be32(header, 0) != Some(FDT_MAGIC) {
        return Err(FdtError("no FDT magic at x0"));
    }
    let total = be32(header, 4).unwrap_or(0) as usize;
    if total < 40 || addr + total as u64 > guest_rt::boot::MAPPED_RAM.end {
        return Err(FdtError("FDT totalsize out of range"));
    }
    // SAFETY: as above, for the `totalsize` bytes the header announces, checked to
    // stay inside mapped guest RAM. Nothing writes the device tree while we read it.
    let blob: &'static [u8] = unsafe { core::slice::from_raw_parts(addr as *const u8, total) };
    let off_struct = be32(blob, 8).unwrap_or(0) as usize;
    let off_strings = be32(blob, 12).unwrap_or(0) as usize;
    let size_struct = be32(blob, 36).unwrap_or(0) as usize;
    let structure = blob
        .get(off_struct..off_struct.saturating_add(size_struct))
        .ok_or(FdtError("structure block outside the blob"))?;
    let strings = blob
        .get(off_strings..)
        .ok_or(FdtError("strings block outside the blob"))?;

    let mut info = MachineInfo::default();
    // Names of the nodes on the path to the current one; depth 0 is the root.
    let mut path: [&[u8]; 4] = [b""; 4];
    let mut depth = 0usize;
    let mut at = 0usize;
    loop {
        let token = be32(structure, at).ok_or(FdtError("structure block ends early"))?;
        at += 4;
        match token {
            FDT_BEGIN_NODE => {
                let name = cstr(structure, at).ok_or(FdtError("unterminated node name"))?;
                at = align4(at + name.len() + 1);
                if depth < path.len() {
                    path[depth] = name;
                }
                if depth == 2 && path[1] == b"cpus" && name.starts_with(b"cpu@") {
                    info.cpus += 1;
                }
                depth += 1;
            }
            FDT_END_NODE => {
                depth = depth
                    .checked_sub(1)
                    .ok_or(FdtError("unbalanced FDT_END_NODE"))?;
            }
            FDT_PROP => {
                let len = be32(structure, at).ok_or(FdtError("truncated property"))? as usize;
                let nameoff =
                    be32(structure, at + 4).ok_or(FdtError("truncated property"))? as usize;
                let value = structure
                    .get(at + 8..at + 8 + len)
                    .ok_or(FdtError("property value outside the block"))?;
                at = align4(at + 8 + len);
                let name = cstr(strings, nameoff).ok_or(FdtError("bad property name"))?;
                if depth == 2 && path[1] == b"chosen" && name == b"bootargs" {
                    let text = value.strip_suffix(&[0]).unwrap_or(value);
                    info.bootargs = core::str::from_utf8(text).ok();
                }
            }
            FDT_NOP => {}
            FDT_END => return Ok(info),
            _ => return Err(FdtError("unknown structure token")),
        }
    }
}

/// The `key=value` word of `bootargs` for `key`.
pub fn bootarg<'a>(bootargs: &'a str, key: &str) -> Option<&'a str> {
    bootargs
        .split_ascii_whitespace()
        .filter_map(|word| word.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Parses `0x...` (hex) or a decimal number; `_` separators are allowed.
pub fn parse_u64(text: &str) -> Option<u64> {
    let (digits, radix) = match text.strip_prefix("0x") {
        Some(hex) => (hex, 16),
        None => (text, 10),
    };
    let mut value: u64 = 0;
    let mut any = false;
    for c in digits.chars().filter(|c| *c != '_') {
        let d = c.to_digit(radix)?;
        value = value
            .checked_mul(u64::from(radix))?
            .checked_add(u64::from(d))?;
        any = true;
    }
    any.then_some(value)
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

fn cstr(bytes: &[u8], at: usize) -> Option<&[u8]> {
    let rest = bytes.get(at..)?;
    let end = rest.iter().position(|b| *b == 0)?;
    Some(&rest[..end])
}

fn align4(at: usize) -> usize {
    (at + 3) & !3
}
