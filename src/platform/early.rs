//! A look at the device tree before anything else can run: whether its root node is
//! `compatible` with a given string, read one byte at a time.
//!
//! The boot uses it when it was entered at the wrong exception level, with the MMU
//! off, to decide whether QEMU virt's PL011 is there to report on: with the MMU off
//! every access is Device memory, where a wider load that is not aligned faults,
//! so only single bytes are read, and the blob is not trusted (every read is
//! bounds-checked against its `totalsize`, capped at 2 MiB).

/// Devicetree Specification 5.4.1: structure block tokens.
const FDT_BEGIN_NODE: u32 = 0x1;
const FDT_PROP: u32 = 0x3;
const FDT_NOP: u32 = 0x4;
const FDT_MAGIC: u32 = 0xd00d_feed;
const HEADER_LEN: usize = 40;
const MAX_TOTAL_SIZE: usize = 2 << 20;

/// Whether the root node of the blob whose byte at offset `i` is `byte(i)` lists
/// `want` in its `compatible` property. `byte` is only called for offsets in the
/// 40-byte header and below the blob's `totalsize` (at most 2 MiB). Anything
/// malformed answers false.
pub fn root_is_compatible(byte: &mut dyn FnMut(usize) -> u8, want: &str) -> bool {
    let mut total = HEADER_LEN;
    let be32 = |byte: &mut dyn FnMut(usize) -> u8, at: usize, total: usize| -> Option<u32> {
        let end = at.checked_add(4)?;
        (end <= total).then(|| (0..4).fold(0u32, |v, i| (v << 8) | u32::from(byte(at + i))))
    };
    if be32(byte, 0, total) != Some(FDT_MAGIC) {
        return false;
    }
    let Some(size) = be32(byte, 4, total) else {
        return false;
    };
    total = size as usize;
    if !(HEADER_LEN..=MAX_TOTAL_SIZE).contains(&total) {
        return false;
    }
    let (Some(structs), Some(strings)) = (be32(byte, 8, total), be32(byte, 12, total)) else {
        return false;
    };
    let (mut at, strings) = (structs as usize, strings as usize);
    // The root node: FDT_BEGIN_NODE and an empty name, padded to 4 bytes.
    if be32(byte, at, total) != Some(FDT_BEGIN_NODE) || at + 4 >= total || byte(at + 4) != 0 {
        return false;
    }
    at += 8;
    // Its properties come before its first child; each token is at least 4 bytes,
    // so this ends within `total / 4` steps.
    for _ in 0..total / 4 {
        match be32(byte, at, total) {
            Some(FDT_NOP) => at += 4,
            Some(FDT_PROP) => {
                let (Some(len), Some(name)) =
                    (be32(byte, at + 4, total), be32(byte, at + 8, total))
                else {
                    return false;
                };
                let (len, value) = (len as usize, at + 12);
                if value.saturating_add(len) > total {
                    return false;
                }
                let name_at = strings.saturating_add(name as usize);
                if names_match(byte, name_at, total, "compatible") {
                    return list_contains(byte, value, len, want);
                }
                at = (value + len + 3) & !3;
            }
            _ => return false,
        }
    }
    false
}

/// Whether the NUL-terminated string at `at` (below `total`) is `want`.
fn names_match(byte: &mut dyn FnMut(usize) -> u8, at: usize, total: usize, want: &str) -> bool {
    let want = want.as_bytes();
    at.checked_add(want.len()).is_some_and(|end| end < total)
        && want.iter().enumerate().all(|(i, &w)| byte(at + i) == w)
        && byte(at + want.len()) == 0
}

/// Whether the string list of `len` bytes at `at` has `want` as one entry.
fn list_contains(byte: &mut dyn FnMut(usize) -> u8, at: usize, len: usize, want: &str) -> bool {
    let want = want.as_bytes();
    let mut start = 0;
    while start < len {
        let mut end = start;
        while end < len && byte(at + end) != 0 {
            end += 1;
        }
        if end - start == want.len() && (0..want.len()).all(|i| byte(at + start + i) == want[i]) {
            return true;
        }
        start = end + 1;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIRT: &[u8] = include_bytes!("../../tests/fixtures/virt-gicv3-max-4cpu.dtb");
    const BOARD: &[u8] = include_bytes!("../../tests/fixtures/board-gic400-spintable.dtb");

    fn check(blob: &[u8], want: &str) -> bool {
        root_is_compatible(&mut |i| blob[i], want)
    }

    #[test]
    fn finds_the_root_compatible_of_real_trees() {
        assert!(check(VIRT, "linux,dummy-virt"));
        assert!(!check(VIRT, "linux,dummy"));
        assert!(!check(BOARD, "linux,dummy-virt"));
        assert!(check(BOARD, "ferrovisor,test-board"));
    }

    #[test]
    fn malformed_blobs_answer_false_without_reading_past_them() {
        assert!(!check(&[0u8; 64], "linux,dummy-virt"));
        // Every truncation and every single corrupted byte of the header and the
        // start of the structure block: no read past the buffer (the closure would
        // panic on one).
        for len in HEADER_LEN..VIRT.len().min(4096) {
            let mut blob = VIRT[..len].to_vec();
            blob[4..8].copy_from_slice(&(len as u32).to_be_bytes());
            root_is_compatible(&mut |i| blob[i], "linux,dummy-virt");
        }
        for at in 0..512 {
            for v in [0u8, 0xff, 0x7f] {
                let mut blob = VIRT.to_vec();
                blob[at] = v;
                let len = blob.len();
                root_is_compatible(
                    &mut |i| {
                        assert!(i < len);
                        blob[i]
                    },
                    "linux,dummy-virt",
                );
            }
        }
    }
}
