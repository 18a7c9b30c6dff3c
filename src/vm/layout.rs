//! Where the boot blobs go in a VM's RAM (Linux `Documentation/arch/arm64/booting.rst`):
//! the kernel where its header or the config says, the device tree at the top of
//! RAM (8-byte aligned, at most 2 MiB), the initrd right below it.

use core::fmt;
use core::ops::Range;

/// The largest device tree booting.rst allows.
pub const MAX_DTB: u64 = 2 << 20;

/// Guest-physical placement of the boot blobs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootLayout {
    pub dtb: Range<u64>,
    pub initrd: Option<Range<u64>>,
}

/// The blobs do not fit beside the kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayoutError {
    DtbTooLarge(u64),
    NoRoom { needed: u64, available: u64 },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LayoutError::DtbTooLarge(n) => {
                write!(
                    f,
                    "device tree of {n} bytes is larger than the 2 MiB booting.rst allows"
                )
            }
            LayoutError::NoRoom { needed, available } => write!(
                f,
                "the initrd and device tree need {needed} bytes above the kernel but only {available} are free"
            ),
        }
    }
}

/// Places the device tree and initrd above `kernel` (its footprint, bss included).
pub fn plan(
    ram: Range<u64>,
    kernel: Range<u64>,
    initrd_len: Option<u64>,
    dtb_len: u64,
) -> Result<BootLayout, LayoutError> {
    if dtb_len > MAX_DTB {
        return Err(LayoutError::DtbTooLarge(dtb_len));
    }
    let page = 0x1000;
    let dtb_start = (ram.end - MAX_DTB) & !(page - 1);
    let dtb = dtb_start..dtb_start + dtb_len;
    let (initrd, lowest) = match initrd_len {
        Some(len) => {
            let start = dtb_start.saturating_sub(len) & !(page - 1);
            (Some(start..start + len), start)
        }
        None => (None, dtb_start),
    };
    let needed = MAX_DTB + initrd_len.unwrap_or(0);
    if lowest < kernel.end || lowest < ram.start || ram.end - ram.start < MAX_DTB {
        return Err(LayoutError::NoRoom {
            needed,
            available: ram.end.saturating_sub(kernel.end),
        });
    }
    Ok(BootLayout { dtb, initrd })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAM: Range<u64> = 0x4000_0000..0x4800_0000; // 128 MiB

    #[test]
    fn dtb_at_top_initrd_below() {
        let l = plan(RAM, 0x4008_0000..0x4100_0000, Some(0x12345), 0x2000).unwrap();
        assert_eq!(l.dtb, 0x47e0_0000..0x47e0_2000);
        let i = l.initrd.unwrap();
        assert_eq!(i.end - i.start, 0x12345);
        assert!(i.end <= l.dtb.start && i.start.is_multiple_of(0x1000));
    }

    #[test]
    fn no_room_is_an_error() {
        let e = plan(RAM, 0x4008_0000..0x47f0_0000, None, 0x2000).unwrap_err();
        assert!(matches!(e, LayoutError::NoRoom { .. }), "{e:?}");
        let e = plan(RAM, 0x4008_0000..0x4100_0000, Some(0x0800_0000), 0x2000).unwrap_err();
        assert!(matches!(e, LayoutError::NoRoom { .. }));
        assert_eq!(
            plan(RAM, 0x4008_0000..0x4010_0000, None, MAX_DTB + 1),
            Err(LayoutError::DtbTooLarge(MAX_DTB + 1))
        );
    }
}
