//! Where a guest's kernel goes in its RAM: a load plan from the image's bytes.
//!
//! Three formats are understood:
//! - the arm64 Linux `Image` (Linux `Documentation/arch/arm64/booting.rst`): a 64-byte
//!   header whose `text_offset` says where, above a 2 MiB-aligned base, the image must be
//!   placed and whose `image_size` says how much memory it occupies including its bss;
//! - a raw binary, copied to a load address given in the config and entered at a given
//!   entry point;
//! - an ELF64 little-endian AArch64 executable, whose `PT_LOAD` segments are copied to
//!   their physical addresses (`p_paddr`: the guest starts with its MMU off).
//!
//! [`plan_load`] only decides; copying the bytes into guest memory is the VM builder's job.
//! Nothing here panics on malformed input: every offset read from a file is bounds-checked.

use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

/// How a kernel image file is to be read (from the config's `kernel.format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    /// Recognise the file by its contents: an arm64 `Image` header or an ELF header.
    /// A raw binary cannot be recognised and must be given as [`ImageKind::Raw`].
    Auto,
    /// An arm64 Linux `Image` (its header is required).
    Arm64Image,
    /// A raw binary copied to `load` and entered at `entry`, both guest-physical.
    Raw { load: u64, entry: u64 },
    /// An ELF64 little-endian AArch64 executable (`ET_EXEC`).
    Elf,
}

/// The format a load plan was made for, after [`ImageKind::Auto`] has been resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Arm64Image,
    Raw,
    Elf,
}

/// One piece of the image to place in guest memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Guest-physical address of the first byte.
    pub guest_pa: u64,
    /// The bytes of the file that go there.
    pub file: Range<usize>,
    /// Bytes the segment occupies in memory; the part beyond `file.len()` is zeroed (bss).
    pub mem_size: u64,
}

/// Where each part of an image goes, and where the guest starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadPlan {
    pub format: ImageFormat,
    /// Non-overlapping, each inside the VM's RAM, in file order.
    pub segments: Vec<Segment>,
    /// Guest-physical address of the first instruction.
    pub entry: u64,
}

impl LoadPlan {
    /// The guest-physical range the image occupies (lowest segment start to highest end).
    pub fn footprint(&self) -> Range<u64> {
        let start = self.segments.iter().map(|s| s.guest_pa).min().unwrap_or(0);
        let end = self
            .segments
            .iter()
            .map(|s| s.guest_pa + s.mem_size)
            .max()
            .unwrap_or(0);
        start..end
    }
}

/// Why an image cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageError {
    /// The format was `Auto` and the file is neither an arm64 `Image` nor an ELF.
    Unrecognised,
    /// A gzip stream: the hypervisor does not decompress (Debian's `vmlinuz` is one).
    Compressed,
    /// The arm64 `Image` header is missing or inconsistent.
    BadImageHeader(&'static str),
    /// The ELF file is malformed or not something we can run.
    BadElf(&'static str),
    /// The image needs guest memory `need`, which is not inside the VM's RAM `ram`.
    DoesNotFit { need: Range<u64>, ram: Range<u64> },
    /// A raw image's entry point is not inside the loaded bytes.
    EntryOutsideImage { entry: u64, image: Range<u64> },
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unrecognised => write!(
                f,
                "not an arm64 Image or an ELF file; for a raw binary write \
                 kernel = {{ path = ..., format = \"raw\", load = ..., entry = ... }}"
            ),
            Self::Compressed => write!(
                f,
                "the image is gzip-compressed; decompress it first (e.g. `gunzip -c vmlinuz > Image`)"
            ),
            Self::BadImageHeader(why) => write!(f, "bad arm64 Image header: {why}"),
            Self::BadElf(why) => write!(f, "unusable ELF file: {why}"),
            Self::DoesNotFit { need, ram } => write!(
                f,
                "the image needs guest memory {:#x}..{:#x} ({} bytes) but the VM's RAM is {:#x}..{:#x} ({} bytes)",
                need.start,
                need.end,
                need.end.wrapping_sub(need.start),
                ram.start,
                ram.end,
                ram.end - ram.start
            ),
            Self::EntryOutsideImage { entry, image } => write!(
                f,
                "entry point {entry:#x} is outside the loaded image {:#x}..{:#x}",
                image.start, image.end
            ),
        }
    }
}

/// `booting.rst`: the Image must be placed `text_offset` bytes from a 2 MiB-aligned base.
const IMAGE_BASE_ALIGN: u64 = 2 << 20;
/// `booting.rst`: before Linux 3.17 `image_size` is 0 and `text_offset` is to be taken as 0x80000.
const LEGACY_TEXT_OFFSET: u64 = 0x8_0000;
/// `booting.rst`: the little-endian magic "ARM\x64" at offset 0x38.
const IMAGE_MAGIC: u32 = 0x644d_5241;
const IMAGE_HEADER_LEN: usize = 64;

/// Decide where `bytes` (the image file) goes in a VM whose RAM is
/// `ram_base..ram_base + ram_size`, and where the guest starts.
pub fn plan_load(
    kind: &ImageKind,
    bytes: &[u8],
    ram_base: u64,
    ram_size: u64,
) -> Result<LoadPlan, ImageError> {
    let ram = ram_base..ram_base.saturating_add(ram_size);
    match kind {
        ImageKind::Auto => {
            if is_elf(bytes) {
                plan_elf(bytes, &ram)
            } else if is_arm64_image(bytes) {
                plan_arm64_image(bytes, &ram)
            } else if bytes.starts_with(&[0x1f, 0x8b]) {
                Err(ImageError::Compressed)
            } else {
                Err(ImageError::Unrecognised)
            }
        }
        ImageKind::Arm64Image => {
            if bytes.starts_with(&[0x1f, 0x8b]) {
                return Err(ImageError::Compressed);
            }
            plan_arm64_image(bytes, &ram)
        }
        ImageKind::Raw { load, entry } => plan_raw(bytes, *load, *entry, &ram),
        ImageKind::Elf => plan_elf(bytes, &ram),
    }
}

fn inside(need: &Range<u64>, ram: &Range<u64>) -> bool {
    need.start >= ram.start && need.end <= ram.end && need.start <= need.end
}

fn fits(start: u64, len: u64, ram: &Range<u64>) -> Result<Range<u64>, ImageError> {
    let need = start..start.saturating_add(len);
    if start.checked_add(len).is_some() && inside(&need, ram) {
        Ok(need)
    } else {
        Err(ImageError::DoesNotFit {
            need,
            ram: ram.clone(),
        })
    }
}

fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}
fn le_u64(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

fn is_arm64_image(bytes: &[u8]) -> bool {
    le_u32(bytes, 0x38) == Some(IMAGE_MAGIC)
}

fn plan_arm64_image(bytes: &[u8], ram: &Range<u64>) -> Result<LoadPlan, ImageError> {
    if bytes.len() < IMAGE_HEADER_LEN {
        return Err(ImageError::BadImageHeader(
            "file shorter than the 64-byte header",
        ));
    }
    if !is_arm64_image(bytes) {
        return Err(ImageError::BadImageHeader(
            "no \"ARM\\x64\" magic at offset 0x38",
        ));
    }
    // Header layout (booting.rst): code0 u32, code1 u32, text_offset u64 @8, image_size u64
    // @16, flags u64 @24, res2..res4, magic u32 @0x38, res5 u32 @0x3c. All little-endian.
    let header_u64 = |at| le_u64(bytes, at).ok_or(ImageError::BadImageHeader("truncated header"));
    let mut text_offset = header_u64(8)?;
    let image_size = header_u64(16)?;
    let file_len = bytes.len() as u64;
    let mem_size = if image_size == 0 {
        // A kernel older than 3.17: no size known beyond the file itself, and
        // text_offset is to be assumed 0x80000 whatever the field says.
        text_offset = LEGACY_TEXT_OFFSET;
        file_len
    } else {
        if file_len > image_size {
            return Err(ImageError::BadImageHeader(
                "the file is larger than the image_size its header declares",
            ));
        }
        image_size
    };
    // The image goes text_offset above the lowest 2 MiB-aligned address of RAM; booting.rst
    // asks for a base as close as possible to the start of RAM when flags bit 3 is clear,
    // and the lowest one satisfies both settings of that bit.
    let base = ram
        .start
        .checked_next_multiple_of(IMAGE_BASE_ALIGN)
        .unwrap_or(u64::MAX);
    let load = base.saturating_add(text_offset);
    fits(load, mem_size, ram)?;
    Ok(LoadPlan {
        format: ImageFormat::Arm64Image,
        segments: alloc::vec![Segment {
            guest_pa: load,
            file: 0..bytes.len(),
            mem_size,
        }],
        // booting.rst: the kernel is entered at its first byte (code0 branches to stext).
        entry: load,
    })
}

fn plan_raw(bytes: &[u8], load: u64, entry: u64, ram: &Range<u64>) -> Result<LoadPlan, ImageError> {
    let image = fits(load, bytes.len() as u64, ram)?;
    if !image.contains(&entry) {
        return Err(ImageError::EntryOutsideImage { entry, image });
    }
    Ok(LoadPlan {
        format: ImageFormat::Raw,
        segments: alloc::vec![Segment {
            guest_pa: load,
            file: 0..bytes.len(),
            mem_size: bytes.len() as u64,
        }],
        entry,
    })
}

// ELF-64 Object File Format (the System V gABI): identification and header fields used here.
const ELFMAG: &[u8; 4] = b"\x7fELF";
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const ET_EXEC: u16 = 2;
const EM_AARCH64: u16 = 183;
const PT_LOAD: u32 = 1;
const ELF64_EHDR_LEN: usize = 64;
const ELF64_PHDR_LEN: usize = 56;

fn is_elf(bytes: &[u8]) -> bool {
    bytes.starts_with(ELFMAG)
}

fn plan_elf(bytes: &[u8], ram: &Range<u64>) -> Result<LoadPlan, ImageError> {
    use ImageError::BadElf;
    if !is_elf(bytes) {
        return Err(BadElf("no ELF magic"));
    }
    if bytes.len() < ELF64_EHDR_LEN {
        return Err(BadElf("file shorter than the ELF header"));
    }
    if bytes[4] != ELFCLASS64 {
        return Err(BadElf("not a 64-bit ELF (EI_CLASS)"));
    }
    if bytes[5] != ELFDATA2LSB {
        return Err(BadElf("not little-endian (EI_DATA)"));
    }
    let truncated = BadElf("truncated ELF header");
    let e_type = le_u16(bytes, 16).ok_or(truncated.clone())?;
    let e_machine = le_u16(bytes, 18).ok_or(truncated.clone())?;
    let e_entry = le_u64(bytes, 24).ok_or(truncated.clone())?;
    let e_phoff = le_u64(bytes, 32).ok_or(truncated.clone())?;
    let e_phentsize = le_u16(bytes, 54).ok_or(truncated.clone())?;
    let e_phnum = le_u16(bytes, 56).ok_or(truncated)?;
    if e_machine != EM_AARCH64 {
        return Err(BadElf("not an AArch64 file (e_machine)"));
    }
    if e_type != ET_EXEC {
        return Err(BadElf(
            "not an executable (e_type is not ET_EXEC): link it at a fixed address",
        ));
    }
    if usize::from(e_phentsize) != ELF64_PHDR_LEN {
        return Err(BadElf("unexpected program header size (e_phentsize)"));
    }
    let table_len = usize::from(e_phnum) * ELF64_PHDR_LEN;
    let table_start =
        usize::try_from(e_phoff).map_err(|_| BadElf("program headers outside the file"))?;
    let table = table_start
        .checked_add(table_len)
        .and_then(|end| bytes.get(table_start..end))
        .ok_or(BadElf("program headers outside the file"))?;

    let mut segments: Vec<Segment> = Vec::new();
    let mut entry = None;
    for ph in table.chunks_exact(ELF64_PHDR_LEN) {
        let field = |at| le_u64(ph, at).ok_or(BadElf("truncated program header"));
        if le_u32(ph, 0) != Some(PT_LOAD) {
            continue;
        }
        let (p_offset, p_vaddr, p_paddr) = (field(8)?, field(16)?, field(24)?);
        let (p_filesz, p_memsz) = (field(32)?, field(40)?);
        if p_memsz == 0 {
            continue;
        }
        if p_filesz > p_memsz {
            return Err(BadElf("a segment's p_filesz exceeds its p_memsz"));
        }
        let file = usize::try_from(p_offset)
            .ok()
            .zip(usize::try_from(p_filesz).ok())
            .and_then(|(start, len)| Some(start..start.checked_add(len)?))
            .filter(|r| r.end <= bytes.len())
            .ok_or(BadElf("a segment's bytes lie outside the file"))?;
        let need = fits(p_paddr, p_memsz, ram)?;
        if segments
            .iter()
            .any(|s| need.start < s.guest_pa + s.mem_size && s.guest_pa < need.end)
        {
            return Err(BadElf("two PT_LOAD segments overlap"));
        }
        // The guest starts with its MMU off, so e_entry (a virtual address) is translated
        // through the segment that contains it.
        if entry.is_none() && (p_vaddr..p_vaddr.saturating_add(p_memsz)).contains(&e_entry) {
            entry = Some(e_entry - p_vaddr + p_paddr);
        }
        segments.push(Segment {
            guest_pa: p_paddr,
            file,
            mem_size: p_memsz,
        });
    }
    if segments.is_empty() {
        return Err(BadElf("no loadable (PT_LOAD) segment"));
    }
    let entry = entry.ok_or(BadElf("the entry point is in no loadable segment"))?;
    Ok(LoadPlan {
        format: ImageFormat::Elf,
        segments,
        entry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAM_BASE: u64 = 0x4000_0000;
    const MIB: u64 = 1 << 20;

    /// An arm64 Image of `file_len` bytes whose header declares `text_offset` and `image_size`.
    pub(crate) fn arm64_image(file_len: usize, text_offset: u64, image_size: u64) -> Vec<u8> {
        let mut b = alloc::vec![0u8; file_len.max(IMAGE_HEADER_LEN)];
        b[0..4].copy_from_slice(&0x1400_0010u32.to_le_bytes()); // b #0x40 (code0)
        b[8..16].copy_from_slice(&text_offset.to_le_bytes());
        b[16..24].copy_from_slice(&image_size.to_le_bytes());
        b[24..32].copy_from_slice(&0b1010u64.to_le_bytes()); // LE, 4K pages, anywhere
        b[0x38..0x3c].copy_from_slice(&IMAGE_MAGIC.to_le_bytes());
        b
    }

    /// A minimal ELF64 AArch64 executable with the given (vaddr, paddr, file bytes, memsz)
    /// segments, entry `entry`.
    fn elf(entry: u64, segs: &[(u64, u64, &[u8], u64)]) -> Vec<u8> {
        let phoff = ELF64_EHDR_LEN;
        let data_start = phoff + segs.len() * ELF64_PHDR_LEN;
        let mut b = alloc::vec![0u8; data_start];
        b[0..4].copy_from_slice(ELFMAG);
        b[4] = ELFCLASS64;
        b[5] = ELFDATA2LSB;
        b[6] = 1; // EV_CURRENT
        b[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        b[18..20].copy_from_slice(&EM_AARCH64.to_le_bytes());
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        b[24..32].copy_from_slice(&entry.to_le_bytes());
        b[32..40].copy_from_slice(&(phoff as u64).to_le_bytes());
        b[52..54].copy_from_slice(&(ELF64_EHDR_LEN as u16).to_le_bytes());
        b[54..56].copy_from_slice(&(ELF64_PHDR_LEN as u16).to_le_bytes());
        b[56..58].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        for (i, (vaddr, paddr, data, memsz)) in segs.iter().enumerate() {
            let offset = b.len() as u64;
            b.extend_from_slice(data);
            let ph = phoff + i * ELF64_PHDR_LEN;
            b[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
            b[ph + 4..ph + 8].copy_from_slice(&5u32.to_le_bytes()); // R+X
            b[ph + 8..ph + 16].copy_from_slice(&offset.to_le_bytes());
            b[ph + 16..ph + 24].copy_from_slice(&vaddr.to_le_bytes());
            b[ph + 24..ph + 32].copy_from_slice(&paddr.to_le_bytes());
            b[ph + 32..ph + 40].copy_from_slice(&(data.len() as u64).to_le_bytes());
            b[ph + 40..ph + 48].copy_from_slice(&memsz.to_le_bytes());
        }
        b
    }

    #[test]
    fn arm64_image_goes_at_text_offset_above_ram_base() {
        let img = arm64_image(4096, 0, 3 * MIB);
        let plan = plan_load(&ImageKind::Auto, &img, RAM_BASE, 128 * MIB).unwrap();
        assert_eq!(plan.format, ImageFormat::Arm64Image);
        assert_eq!(plan.entry, RAM_BASE);
        assert_eq!(
            plan.segments,
            [Segment {
                guest_pa: RAM_BASE,
                file: 0..4096,
                mem_size: 3 * MIB
            }]
        );
        let img = arm64_image(4096, 0x8_0000, 3 * MIB);
        let plan = plan_load(&ImageKind::Arm64Image, &img, RAM_BASE, 128 * MIB).unwrap();
        assert_eq!(plan.entry, RAM_BASE + 0x8_0000);
        assert_eq!(
            plan.footprint(),
            RAM_BASE + 0x8_0000..RAM_BASE + 0x8_0000 + 3 * MIB
        );
    }

    #[test]
    fn arm64_image_base_is_rounded_up_to_2mib() {
        let img = arm64_image(4096, 0x1000, MIB);
        let plan = plan_load(&ImageKind::Auto, &img, RAM_BASE + 0x1000, 128 * MIB).unwrap();
        assert_eq!(plan.entry, RAM_BASE + 2 * MIB + 0x1000);
    }

    #[test]
    fn old_arm64_image_without_size_uses_legacy_text_offset() {
        let img = arm64_image(8192, 0x1234, 0);
        let plan = plan_load(&ImageKind::Auto, &img, RAM_BASE, 16 * MIB).unwrap();
        assert_eq!(plan.entry, RAM_BASE + LEGACY_TEXT_OFFSET);
        assert_eq!(plan.segments[0].mem_size, 8192);
    }

    #[test]
    fn arm64_image_bss_must_fit_too() {
        // 1 MiB of file but 20 MiB of image_size: does not fit in 16 MiB of RAM.
        let img = arm64_image(MIB as usize, 0, 20 * MIB);
        let err = plan_load(&ImageKind::Auto, &img, RAM_BASE, 16 * MIB).unwrap_err();
        assert_eq!(
            err,
            ImageError::DoesNotFit {
                need: RAM_BASE..RAM_BASE + 20 * MIB,
                ram: RAM_BASE..RAM_BASE + 16 * MIB
            }
        );
    }

    #[test]
    fn image_larger_than_ram_is_refused() {
        let img = arm64_image(3 * MIB as usize, 0, 3 * MIB);
        assert!(matches!(
            plan_load(&ImageKind::Auto, &img, RAM_BASE, 2 * MIB),
            Err(ImageError::DoesNotFit { .. })
        ));
        let raw = alloc::vec![0u8; 3 * MIB as usize];
        let kind = ImageKind::Raw {
            load: RAM_BASE,
            entry: RAM_BASE,
        };
        assert!(matches!(
            plan_load(&kind, &raw, RAM_BASE, 2 * MIB),
            Err(ImageError::DoesNotFit { .. })
        ));
    }

    #[test]
    fn arm64_image_header_errors() {
        let mut img = arm64_image(4096, 0, 4096);
        assert_eq!(
            plan_load(&ImageKind::Arm64Image, &img[..32], RAM_BASE, 16 * MIB),
            Err(ImageError::BadImageHeader(
                "file shorter than the 64-byte header"
            ))
        );
        img[16..24].copy_from_slice(&100u64.to_le_bytes());
        assert!(matches!(
            plan_load(&ImageKind::Arm64Image, &img, RAM_BASE, 16 * MIB),
            Err(ImageError::BadImageHeader(_))
        ));
        img[0x38] = 0;
        assert!(matches!(
            plan_load(&ImageKind::Arm64Image, &img, RAM_BASE, 16 * MIB),
            Err(ImageError::BadImageHeader(_))
        ));
        assert_eq!(
            plan_load(&ImageKind::Auto, &img, RAM_BASE, 16 * MIB),
            Err(ImageError::Unrecognised)
        );
    }

    #[test]
    fn gzip_is_named_as_such() {
        let gz = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0];
        assert_eq!(
            plan_load(&ImageKind::Auto, &gz, RAM_BASE, MIB),
            Err(ImageError::Compressed)
        );
        assert_eq!(
            plan_load(&ImageKind::Arm64Image, &gz, RAM_BASE, MIB),
            Err(ImageError::Compressed)
        );
    }

    #[test]
    fn raw_binary_at_given_load_and_entry() {
        let raw = [0u8; 0x100];
        let kind = ImageKind::Raw {
            load: RAM_BASE + 0x8_0000,
            entry: RAM_BASE + 0x8_0040,
        };
        let plan = plan_load(&kind, &raw, RAM_BASE, 16 * MIB).unwrap();
        assert_eq!(plan.format, ImageFormat::Raw);
        assert_eq!(plan.entry, RAM_BASE + 0x8_0040);
        assert_eq!(
            plan.segments,
            [Segment {
                guest_pa: RAM_BASE + 0x8_0000,
                file: 0..0x100,
                mem_size: 0x100
            }]
        );
    }

    #[test]
    fn raw_binary_outside_ram_or_bad_entry() {
        let raw = [0u8; 0x100];
        let below = ImageKind::Raw {
            load: RAM_BASE - 0x100,
            entry: RAM_BASE - 0x100,
        };
        assert!(matches!(
            plan_load(&below, &raw, RAM_BASE, MIB),
            Err(ImageError::DoesNotFit { .. })
        ));
        let straddles = ImageKind::Raw {
            load: RAM_BASE + MIB - 0x80,
            entry: RAM_BASE + MIB - 0x80,
        };
        assert!(matches!(
            plan_load(&straddles, &raw, RAM_BASE, MIB),
            Err(ImageError::DoesNotFit { .. })
        ));
        let wild = ImageKind::Raw {
            load: RAM_BASE,
            entry: RAM_BASE + 0x100,
        };
        assert_eq!(
            plan_load(&wild, &raw, RAM_BASE, MIB),
            Err(ImageError::EntryOutsideImage {
                entry: RAM_BASE + 0x100,
                image: RAM_BASE..RAM_BASE + 0x100
            })
        );
        let overflow = ImageKind::Raw {
            load: u64::MAX - 4,
            entry: u64::MAX - 4,
        };
        assert!(plan_load(&overflow, &raw, 0, u64::MAX).is_err());
    }

    #[test]
    fn elf_segments_and_entry() {
        let text = [0xaau8; 0x40];
        let data = [0x55u8; 0x10];
        let f = elf(
            RAM_BASE + 0x8,
            &[
                (RAM_BASE, RAM_BASE, &text, 0x40),
                (RAM_BASE + 0x1000, RAM_BASE + 0x1000, &data, 0x2000),
            ],
        );
        let plan = plan_load(&ImageKind::Auto, &f, RAM_BASE, 16 * MIB).unwrap();
        assert_eq!(plan.format, ImageFormat::Elf);
        assert_eq!(plan.entry, RAM_BASE + 0x8);
        assert_eq!(plan.segments.len(), 2);
        assert_eq!(&f[plan.segments[0].file.clone()], &text);
        assert_eq!(&f[plan.segments[1].file.clone()], &data);
        assert_eq!(plan.segments[1].guest_pa, RAM_BASE + 0x1000);
        assert_eq!(plan.segments[1].mem_size, 0x2000);
        assert_eq!(plan.footprint(), RAM_BASE..RAM_BASE + 0x3000);
    }

    #[test]
    fn elf_entry_is_translated_from_virtual_to_physical() {
        let text = [0u8; 0x40];
        let f = elf(
            0xffff_0000_0000_0010,
            &[(0xffff_0000_0000_0000, RAM_BASE, &text, 0x40)],
        );
        let plan = plan_load(&ImageKind::Elf, &f, RAM_BASE, MIB).unwrap();
        assert_eq!(plan.entry, RAM_BASE + 0x10);
    }

    #[test]
    fn elf_errors() {
        let text = [0u8; 0x40];
        let outside = elf(0x1000, &[(0x1000, 0x1000, &text, 0x40)]);
        assert!(matches!(
            plan_load(&ImageKind::Elf, &outside, RAM_BASE, MIB),
            Err(ImageError::DoesNotFit { .. })
        ));
        let too_big = elf(RAM_BASE, &[(RAM_BASE, RAM_BASE, &text, 2 * MIB)]);
        assert!(matches!(
            plan_load(&ImageKind::Elf, &too_big, RAM_BASE, MIB),
            Err(ImageError::DoesNotFit { .. })
        ));
        let no_entry = elf(RAM_BASE + 0x100, &[(RAM_BASE, RAM_BASE, &text, 0x40)]);
        assert!(matches!(
            plan_load(&ImageKind::Elf, &no_entry, RAM_BASE, MIB),
            Err(ImageError::BadElf(_))
        ));
        let overlap = elf(
            RAM_BASE,
            &[
                (RAM_BASE, RAM_BASE, &text, 0x40),
                (RAM_BASE, RAM_BASE + 0x20, &text, 0x40),
            ],
        );
        assert_eq!(
            plan_load(&ImageKind::Elf, &overlap, RAM_BASE, MIB),
            Err(ImageError::BadElf("two PT_LOAD segments overlap"))
        );
        let mut x86 = elf(RAM_BASE, &[(RAM_BASE, RAM_BASE, &text, 0x40)]);
        x86[18..20].copy_from_slice(&62u16.to_le_bytes());
        assert!(matches!(
            plan_load(&ImageKind::Auto, &x86, RAM_BASE, MIB),
            Err(ImageError::BadElf(_))
        ));
        let mut dynamic = elf(RAM_BASE, &[(RAM_BASE, RAM_BASE, &text, 0x40)]);
        dynamic[16] = 3; // ET_DYN
        assert!(matches!(
            plan_load(&ImageKind::Elf, &dynamic, RAM_BASE, MIB),
            Err(ImageError::BadElf(_))
        ));
        let none = elf(RAM_BASE, &[]);
        assert_eq!(
            plan_load(&ImageKind::Elf, &none, RAM_BASE, MIB),
            Err(ImageError::BadElf("no loadable (PT_LOAD) segment"))
        );
    }

    #[test]
    fn malformed_elf_never_panics() {
        let text = [0x11u8; 0x40];
        let good = elf(
            RAM_BASE,
            &[
                (RAM_BASE, RAM_BASE, &text, 0x40),
                (RAM_BASE + 0x100, RAM_BASE + 0x100, &text, 0x80),
            ],
        );
        assert!(plan_load(&ImageKind::Elf, &good, RAM_BASE, MIB).is_ok());
        // Every truncation and every single-byte corruption must give a value, not a panic.
        for len in 0..good.len() {
            let _ = plan_load(&ImageKind::Auto, &good[..len], RAM_BASE, MIB);
        }
        for at in 0..good.len() {
            for v in [0x00, 0x7f, 0x80, 0xff] {
                let mut bad = good.clone();
                bad[at] = v;
                let _ = plan_load(&ImageKind::Elf, &bad, RAM_BASE, MIB);
            }
        }
        let image = arm64_image(128, 0xffff_ffff_ffff_0000, 0xffff_ffff);
        assert!(plan_load(&ImageKind::Auto, &image, RAM_BASE, MIB).is_err());
    }
}
