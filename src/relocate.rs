//! The hypervisor image's self-relocation: the records and the rule.
//!
//! `ferrovisor.bin` runs wherever the boot loader puts it (the arm64 Image header
//! says "2 MiB-aligned base anywhere in physical memory", flags bit 3). It is linked
//! as a position-independent executable at address 0 (`linker.ld`): code reaches
//! code and data PC-relatively (ADRP/ADD, ADR, branches), so the instructions are the
//! same at every address; what is not position-independent is data that holds an
//! address — vtables, `&'static` references inside statics, function-pointer tables,
//! the GOT. For each such place the linker writes an ELF64 `Elf64_Rela` record into
//! `.rela.dyn` (ELF for the Arm 64-bit Architecture, "Dynamic relocations"), all of
//! type `R_AARCH64_RELATIVE`: the place at image offset `r_offset` must hold
//! `base + r_addend`, where `base` is the address the image runs at.
//!
//! The entry code (`arch::aarch64::boot`, `fv_relocate`) applies that rule in assembly
//! before any Rust runs. This module states the same rule in plain Rust: host tests
//! apply it to the built image at several bases, and the boot checks, record by
//! record, that the assembly left every place as the rule says.

use core::fmt;

/// `R_AARCH64_RELATIVE` (ELF for the Arm 64-bit Architecture, table "Dynamic
/// relocations"): `Delta(S) + A`; with the image linked at 0, `base + addend`.
pub const R_AARCH64_RELATIVE: u64 = 1027;

/// Bytes in one `Elf64_Rela` record: `r_offset`, `r_info`, `r_addend`, 8 bytes each.
pub const RELA_SIZE: usize = 24;

/// One `Elf64_Rela` record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rela {
    /// The place, as an offset from the image's first byte (the link address is 0).
    pub offset: u64,
    /// Symbol index (high 32 bits) and type (low 32 bits).
    pub info: u64,
    /// The value the place gets, less the base.
    pub addend: i64,
}

impl Rela {
    /// The value the place holds when the image runs at `base`.
    pub fn value(&self, base: u64) -> u64 {
        base.wrapping_add(self.addend as u64)
    }
}

/// Why a relocation table or a relocated image is not what the rule says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelocError {
    /// The table is not a whole number of records.
    TableLength(usize),
    /// A record the entry code does not apply: only `R_AARCH64_RELATIVE` with
    /// symbol 0 is (the entry code stops on any other).
    UnsupportedType { index: usize, info: u64 },
    /// A place that is not 8-byte aligned (the entry code stores a doubleword, with
    /// the MMU off on one path, where an unaligned access faults).
    Misaligned { index: usize, offset: u64 },
    /// A place outside the image's loaded bytes.
    OutsideImage { index: usize, offset: u64 },
    /// After relocation, a place does not hold `base + addend`.
    NotApplied {
        index: usize,
        offset: u64,
        found: u64,
        expected: u64,
    },
}

impl fmt::Display for RelocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            RelocError::TableLength(len) => write!(
                f,
                "relocation table of {len} bytes is not a whole number of {RELA_SIZE}-byte records"
            ),
            RelocError::UnsupportedType { index, info } => write!(
                f,
                "relocation record {index}: r_info {info:#x} is not R_AARCH64_RELATIVE"
            ),
            RelocError::Misaligned { index, offset } => write!(
                f,
                "relocation record {index}: place {offset:#x} is not 8-byte aligned"
            ),
            RelocError::OutsideImage { index, offset } => write!(
                f,
                "relocation record {index}: place {offset:#x} is outside the image"
            ),
            RelocError::NotApplied {
                index,
                offset,
                found,
                expected,
            } => write!(
                f,
                "relocation record {index}: place {offset:#x} holds {found:#x}, expected {expected:#x}"
            ),
        }
    }
}

/// The records of a `.rela.dyn` table, each checked against what the entry code
/// can apply to an image of `image_len` loaded bytes.
pub fn records(
    table: &[u8],
    image_len: usize,
) -> Result<impl Iterator<Item = (usize, Rela)> + '_, RelocError> {
    if !table.len().is_multiple_of(RELA_SIZE) {
        return Err(RelocError::TableLength(table.len()));
    }
    let word = |r: &[u8], i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&r[i * 8..i * 8 + 8]);
        u64::from_le_bytes(b)
    };
    let all = table.chunks_exact(RELA_SIZE).map(move |r| Rela {
        offset: word(r, 0),
        info: word(r, 1),
        addend: word(r, 2) as i64,
    });
    for (index, r) in all.clone().enumerate() {
        if r.info != R_AARCH64_RELATIVE {
            return Err(RelocError::UnsupportedType {
                index,
                info: r.info,
            });
        }
        if !r.offset.is_multiple_of(8) {
            return Err(RelocError::Misaligned {
                index,
                offset: r.offset,
            });
        }
        if r.offset
            .checked_add(8)
            .is_none_or(|end| end > image_len as u64)
        {
            return Err(RelocError::OutsideImage {
                index,
                offset: r.offset,
            });
        }
    }
    Ok(all.enumerate())
}

/// Relocates `image` (the loaded bytes, from the image's first byte) to run at
/// `base`, as the entry code does. Returns the number of places written.
pub fn apply(image: &mut [u8], table: &[u8], base: u64) -> Result<usize, RelocError> {
    let mut n = 0;
    for (_, r) in records(table, image.len())? {
        let at = r.offset as usize;
        image[at..at + 8].copy_from_slice(&r.value(base).to_le_bytes());
        n += 1;
    }
    Ok(n)
}

/// Checks that every place of an image running at `base` holds what the rule says;
/// `read(offset)` reads the doubleword at that image offset. Returns the number
/// of places checked.
pub fn verify(
    table: &[u8],
    image_len: usize,
    base: u64,
    mut read: impl FnMut(u64) -> u64,
) -> Result<usize, RelocError> {
    let mut n = 0;
    for (index, r) in records(table, image_len)? {
        let found = read(r.offset);
        let expected = r.value(base);
        if found != expected {
            return Err(RelocError::NotApplied {
                index,
                offset: r.offset,
                found,
                expected,
            });
        }
        n += 1;
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn table(records: &[(u64, u64, i64)]) -> Vec<u8> {
        records
            .iter()
            .flat_map(|&(o, i, a)| {
                o.to_le_bytes()
                    .into_iter()
                    .chain(i.to_le_bytes())
                    .chain(a.to_le_bytes())
            })
            .collect()
    }

    #[test]
    fn applies_base_plus_addend_and_nothing_else() {
        let mut image = [0xaau8; 64];
        let t = table(&[(8, R_AARCH64_RELATIVE, 0x30), (40, R_AARCH64_RELATIVE, 0)]);
        assert_eq!(apply(&mut image, &t, 0x20_0000), Ok(2));
        assert_eq!(image[8..16], 0x20_0030u64.to_le_bytes());
        assert_eq!(image[40..48], 0x20_0000u64.to_le_bytes());
        assert!(image[..8].iter().all(|&b| b == 0xaa));
        assert!(image[16..40].iter().all(|&b| b == 0xaa));
        assert!(image[48..].iter().all(|&b| b == 0xaa));
        let read =
            |o: u64| u64::from_le_bytes(image[o as usize..o as usize + 8].try_into().unwrap());
        assert_eq!(verify(&t, 64, 0x20_0000, read), Ok(2));
        assert_eq!(
            verify(&t, 64, 0x40_0000, read),
            Err(RelocError::NotApplied {
                index: 0,
                offset: 8,
                found: 0x20_0030,
                expected: 0x40_0030
            })
        );
    }

    #[test]
    fn refuses_what_the_entry_code_cannot_apply() {
        let mut image = [0u8; 64];
        let bad_type = table(&[(8, 257, 0)]); // R_AARCH64_ABS64
        assert_eq!(
            apply(&mut image, &bad_type, 0),
            Err(RelocError::UnsupportedType {
                index: 0,
                info: 257
            })
        );
        let with_symbol = table(&[(8, (1 << 32) | R_AARCH64_RELATIVE, 0)]);
        assert!(matches!(
            apply(&mut image, &with_symbol, 0),
            Err(RelocError::UnsupportedType { .. })
        ));
        let odd = table(&[(12, R_AARCH64_RELATIVE, 0)]);
        assert_eq!(
            apply(&mut image, &odd, 0),
            Err(RelocError::Misaligned {
                index: 0,
                offset: 12
            })
        );
        let outside = table(&[(0, R_AARCH64_RELATIVE, 0), (64, R_AARCH64_RELATIVE, 0)]);
        assert_eq!(
            apply(&mut image, &outside, 0),
            Err(RelocError::OutsideImage {
                index: 1,
                offset: 64
            })
        );
        let wraps = table(&[(u64::MAX - 7, R_AARCH64_RELATIVE, 0)]);
        assert!(matches!(
            apply(&mut image, &wraps, 0),
            Err(RelocError::OutsideImage { .. })
        ));
        assert_eq!(
            apply(&mut image, &[0u8; 25], 0),
            Err(RelocError::TableLength(25))
        );
        // Nothing was written by a refused table.
        assert_eq!(image, [0u8; 64]);
    }

    #[test]
    fn a_negative_addend_wraps_like_the_hardware_add() {
        let r = Rela {
            offset: 0,
            info: R_AARCH64_RELATIVE,
            addend: -16,
        };
        assert_eq!(r.value(0x1000), 0xff0);
    }
}
