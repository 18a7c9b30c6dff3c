//! The boot bundle: the config and every image it names, in one cpio archive.
//!
//! The bundle is a cpio archive in the "newc" format (the one Linux initramfs uses;
//! GNU `cpio -o -H newc` writes it, and so does [`write_bundle`]). It reaches the
//! hypervisor as the initrd — QEMU `-initrd bundle.cpio`, or U-Boot
//! `booti $kernel_addr_r $ramdisk_addr_r:$filesize $fdt_addr_r` — and is found through
//! the host device tree's `/chosen` `linux,initrd-start`/`linux,initrd-end`. Its member
//! `ferrovisor.toml` is the config ([`CONFIG_NAME`]; [`write_bundle`] callers put it
//! first), and every file the config references is stored under the path exactly as the
//! config writes it. One blob thus boots the same way from QEMU and from U-Boot, a new
//! kernel needs no rebuild of the hypervisor, and the description travels with the
//! images it describes.
//!
//! newc layout: each member is a 110-byte ASCII header — the magic `070701` (or `070702`,
//! which adds a checksum) and thirteen 8-digit hexadecimal fields — then the NUL-terminated
//! name, padded so the data starts on a 4-byte boundary, then the data, padded to a 4-byte
//! boundary. A member named `TRAILER!!!` ends the archive. [`Bundle::parse`] checks all of
//! this and never panics on malformed input.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// The member holding the config.
pub const CONFIG_NAME: &str = "ferrovisor.toml";

const MAGIC_NEWC: &[u8; 6] = b"070701";
const MAGIC_NEWC_CRC: &[u8; 6] = b"070702";
const HEADER_LEN: usize = 110;
const TRAILER: &str = "TRAILER!!!";
/// st_mode file-type bits (POSIX `<sys/stat.h>`).
const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;

/// The thirteen header fields after the magic, in order.
const FIELDS: [&str; 13] = [
    "ino",
    "mode",
    "uid",
    "gid",
    "nlink",
    "mtime",
    "filesize",
    "devmajor",
    "devminor",
    "rdevmajor",
    "rdevminor",
    "namesize",
    "check",
];
const F_MODE: usize = 1;
const F_FILESIZE: usize = 6;
const F_NAMESIZE: usize = 11;
const F_CHECK: usize = 12;

/// What is wrong with a bundle. Offsets are from the start of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BundleError {
    /// The archive ends inside a header, a name or a member's data.
    Truncated { offset: usize },
    /// No `070701`/`070702` magic where a header must start.
    BadMagic { offset: usize },
    /// A header field is not eight hexadecimal digits.
    BadField { offset: usize, field: &'static str },
    /// A member name is empty, not NUL-terminated, or not UTF-8.
    BadName { offset: usize },
    /// A `070702` member whose data does not add up to its checksum.
    Checksum { name: String },
    /// Two members with the same name.
    Duplicate { name: String },
    /// The archive has no `TRAILER!!!` member.
    NoTrailer,
    /// The archive has no `ferrovisor.toml`.
    NoConfig,
    /// `ferrovisor.toml` is not UTF-8 text.
    ConfigNotUtf8,
}

impl fmt::Display for BundleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { offset } => {
                write!(f, "boot bundle truncated at byte {offset:#x}")
            }
            Self::BadMagic { offset } => write!(
                f,
                "boot bundle: no cpio newc header (\"070701\") at byte {offset:#x}; \
                 make it with `fvconfig pack` or `cpio -o -H newc`"
            ),
            Self::BadField { offset, field } => write!(
                f,
                "boot bundle: header field `{field}` at byte {offset:#x} is not 8 hex digits"
            ),
            Self::BadName { offset } => {
                write!(f, "boot bundle: malformed member name at byte {offset:#x}")
            }
            Self::Checksum { name } => {
                write!(
                    f,
                    "boot bundle: member `{name}` does not match its checksum"
                )
            }
            Self::Duplicate { name } => write!(f, "boot bundle: member `{name}` appears twice"),
            Self::NoTrailer => write!(f, "boot bundle: no TRAILER!!! member (archive cut short?)"),
            Self::NoConfig => write!(f, "boot bundle: no `{CONFIG_NAME}` member"),
            Self::ConfigNotUtf8 => write!(f, "boot bundle: `{CONFIG_NAME}` is not UTF-8 text"),
        }
    }
}

/// One member of the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Member<'a> {
    /// The name as stored, without a leading `./`.
    name: &'a str,
    data: &'a [u8],
    regular: bool,
}

/// A parsed boot bundle borrowing the archive's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle<'a> {
    members: Vec<Member<'a>>,
}

/// `cpio` stores paths as `find` prints them; `./x` and `x` name the same file.
fn normalise(name: &str) -> &str {
    let mut name = name;
    while let Some(rest) = name.strip_prefix("./") {
        name = rest;
    }
    name
}

fn hex_field(bytes: &[u8], offset: usize, index: usize) -> Result<u32, BundleError> {
    let at = offset + 6 + index * 8;
    let bad = BundleError::BadField {
        offset: at,
        field: FIELDS[index],
    };
    let digits = bytes
        .get(at..at + 8)
        .ok_or(BundleError::Truncated { offset: at })?;
    let mut value: u32 = 0;
    for &d in digits {
        let nibble = (d as char).to_digit(16).ok_or(bad.clone())?;
        value = (value << 4) | nibble;
    }
    Ok(value)
}

const fn align4(n: usize) -> Option<usize> {
    n.checked_next_multiple_of(4)
}

impl<'a> Bundle<'a> {
    /// Read a newc archive. Members after `TRAILER!!!` (GNU cpio's block padding) are ignored.
    pub fn parse(bytes: &'a [u8]) -> Result<Bundle<'a>, BundleError> {
        let mut members: Vec<Member<'a>> = Vec::new();
        let mut offset = 0usize;
        loop {
            let header = bytes
                .get(offset..offset + HEADER_LEN)
                .ok_or(BundleError::Truncated { offset })?;
            let with_crc = match &header[..6] {
                m if m == MAGIC_NEWC => false,
                m if m == MAGIC_NEWC_CRC => true,
                _ => return Err(BundleError::BadMagic { offset }),
            };
            let mode = hex_field(bytes, offset, F_MODE)?;
            let filesize = hex_field(bytes, offset, F_FILESIZE)? as usize;
            let namesize = hex_field(bytes, offset, F_NAMESIZE)? as usize;
            let check = hex_field(bytes, offset, F_CHECK)?;
            for index in 0..FIELDS.len() {
                hex_field(bytes, offset, index)?;
            }

            let name_at = offset + HEADER_LEN;
            let name_end = name_at
                .checked_add(namesize)
                .ok_or(BundleError::Truncated { offset: name_at })?;
            let raw_name = bytes
                .get(name_at..name_end)
                .ok_or(BundleError::Truncated { offset: name_at })?;
            let bad_name = BundleError::BadName { offset: name_at };
            let (nul, text) = raw_name.split_last().ok_or(bad_name.clone())?;
            if *nul != 0 || text.is_empty() || text.contains(&0) {
                return Err(bad_name);
            }
            let name = core::str::from_utf8(text).map_err(|_| bad_name)?;

            let data_at = align4(name_end).ok_or(BundleError::Truncated { offset: name_end })?;
            let data_end = data_at
                .checked_add(filesize)
                .ok_or(BundleError::Truncated { offset: data_at })?;
            let data = bytes
                .get(data_at..data_end)
                .ok_or(BundleError::Truncated { offset: data_at })?;

            if name == TRAILER {
                return Ok(Bundle { members });
            }
            if with_crc {
                // The "crc" of the 070702 format is the 32-bit sum of the data bytes.
                let sum = data
                    .iter()
                    .fold(0u32, |sum, &b| sum.wrapping_add(u32::from(b)));
                if sum != check {
                    return Err(BundleError::Checksum { name: name.into() });
                }
            }
            let name = normalise(name);
            if members.iter().any(|m| m.name == name) {
                return Err(BundleError::Duplicate { name: name.into() });
            }
            members.push(Member {
                name,
                data,
                regular: mode & S_IFMT == S_IFREG,
            });
            offset = align4(data_end).ok_or(BundleError::Truncated { offset: data_end })?;
            if offset >= bytes.len() {
                return Err(BundleError::NoTrailer);
            }
        }
    }

    /// The text of `ferrovisor.toml`.
    pub fn config_text(&self) -> Result<&'a str, BundleError> {
        let data = self.file(CONFIG_NAME).ok_or(BundleError::NoConfig)?;
        core::str::from_utf8(data).map_err(|_| BundleError::ConfigNotUtf8)
    }

    /// The contents of the regular file stored as `path` (a leading `./` is ignored).
    pub fn file(&self, path: &str) -> Option<&'a [u8]> {
        let path = normalise(path);
        self.members
            .iter()
            .find(|m| m.regular && m.name == path)
            .map(|m| m.data)
    }

    /// Every regular file, in archive order, as (path, contents).
    pub fn files(&self) -> impl Iterator<Item = (&'a str, &'a [u8])> + '_ {
        self.members
            .iter()
            .filter(|m| m.regular)
            .map(|m| (m.name, m.data))
    }
}

fn push_header(out: &mut Vec<u8>, ino: u32, mode: u32, filesize: u32, name: &str) {
    let namesize = u32::try_from(name.len() + 1).expect("cpio member name longer than 4 GiB");
    // ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
    // rdevminor, namesize, check. Owner and time are zero so a bundle is reproducible.
    let fields = [ino, mode, 0, 0, 1, 0, filesize, 0, 0, 0, 0, namesize, 0];
    out.extend_from_slice(MAGIC_NEWC);
    for field in fields {
        for shift in (0..8).rev() {
            let nibble = (field >> (shift * 4)) & 0xf;
            out.push(b"0123456789abcdef"[nibble as usize]);
        }
    }
    out.extend_from_slice(name.as_bytes());
    out.push(0);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// Write a newc archive holding `files` (path, contents) in the given order, then the
/// trailer. Members are regular files, mode 0644, owner 0, time 0.
///
/// # Panics
/// If a path is empty or contains a NUL byte, or a file is 4 GiB or larger: the format
/// cannot express these, and the config validation refuses such paths beforehand.
pub fn write_bundle(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (ino, (name, data)) in (1u32..).zip(files) {
        assert!(
            !name.is_empty() && !name.contains('\0'),
            "a cpio member name must be non-empty and free of NUL bytes"
        );
        let size = u32::try_from(data.len()).expect("cpio newc members are smaller than 4 GiB");
        push_header(&mut out, ino, S_IFREG | 0o644, size, name);
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    push_header(&mut out, 0, 0, 0, TRAILER);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &[u8] = b"[[vm]]\nname = \"demo\"\n";

    fn sample() -> Vec<u8> {
        write_bundle(&[
            (CONFIG_NAME, CONFIG),
            ("guests/demo.bin", &[1, 2, 3, 4, 5]),
            ("empty", &[]),
            ("linux/Image", &[0xaa; 4099]),
        ])
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        assert_eq!(bytes.len() % 4, 0);
        let bundle = Bundle::parse(&bytes).unwrap();
        assert_eq!(bundle.config_text().unwrap().as_bytes(), CONFIG);
        assert_eq!(bundle.file("guests/demo.bin"), Some(&[1u8, 2, 3, 4, 5][..]));
        assert_eq!(
            bundle.file("./guests/demo.bin"),
            Some(&[1u8, 2, 3, 4, 5][..])
        );
        assert_eq!(bundle.file("empty"), Some(&[][..]));
        assert_eq!(bundle.file("linux/Image").map(<[u8]>::len), Some(4099));
        assert_eq!(bundle.file("guests"), None);
        assert_eq!(bundle.file("missing"), None);
        let names: Vec<&str> = bundle.files().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [CONFIG_NAME, "guests/demo.bin", "empty", "linux/Image"]
        );
    }

    #[test]
    fn header_layout_is_newc() {
        let bytes = write_bundle(&[("ab", b"xyz")]);
        // header (110) + "ab\0" = 113, padded to 116; data 3 bytes padded to 4.
        assert_eq!(&bytes[..6], b"070701");
        assert_eq!(&bytes[6..14], b"00000001"); // ino
        assert_eq!(&bytes[14..22], b"000081a4"); // mode: regular file, 0644
        assert_eq!(&bytes[54..62], b"00000003"); // filesize
        assert_eq!(&bytes[94..102], b"00000003"); // namesize, NUL included
        assert_eq!(&bytes[110..113], b"ab\0");
        assert_eq!(&bytes[116..119], b"xyz");
        assert_eq!(&bytes[120..126], b"070701");
        assert_eq!(&bytes[230..241], b"TRAILER!!!\0");
    }

    /// A newc archive laid out by hand as GNU `cpio -o -H newc` writes `find .` output:
    /// a `.` directory, `./` prefixes, upper-case hex, and zero padding after the trailer.
    #[test]
    fn reads_gnu_style_archive() {
        fn member(out: &mut Vec<u8>, mode: u32, name: &str, data: &[u8]) {
            out.extend_from_slice(b"070701");
            let fields = [
                7,
                mode,
                1000,
                1000,
                1,
                0x6543_2100,
                data.len() as u32,
                8,
                1,
                0,
                0,
            ];
            for f in fields {
                out.extend_from_slice(alloc::format!("{f:08X}").as_bytes());
            }
            out.extend_from_slice(alloc::format!("{:08X}", name.len() + 1).as_bytes());
            out.extend_from_slice(b"00000000");
            out.extend_from_slice(name.as_bytes());
            out.push(0);
            out.resize(out.len().next_multiple_of(4), 0);
            out.extend_from_slice(data);
            out.resize(out.len().next_multiple_of(4), 0);
        }
        let mut a = Vec::new();
        member(&mut a, 0o040_755, ".", &[]);
        member(&mut a, 0o100_644, "./ferrovisor.toml", CONFIG);
        member(&mut a, 0o040_755, "./guests", &[]);
        member(&mut a, 0o100_644, "./guests/demo.bin", b"\x01\x02");
        member(&mut a, 0, TRAILER, &[]);
        a.resize(a.len().next_multiple_of(512), 0);
        let bundle = Bundle::parse(&a).unwrap();
        assert_eq!(bundle.config_text().unwrap().as_bytes(), CONFIG);
        assert_eq!(bundle.file("guests/demo.bin"), Some(&b"\x01\x02"[..]));
        assert_eq!(bundle.file("guests"), None, "directories are not files");
        assert_eq!(bundle.files().count(), 2);
    }

    #[test]
    fn crc_format_is_checked() {
        let mut bytes = write_bundle(&[("f", b"\x01\x02\x03")]);
        bytes[5] = b'2';
        // check field: sum of data = 6
        bytes[102..110].copy_from_slice(b"00000006");
        assert_eq!(
            Bundle::parse(&bytes).unwrap().file("f"),
            Some(&b"\x01\x02\x03"[..])
        );
        bytes[102..110].copy_from_slice(b"00000007");
        assert_eq!(
            Bundle::parse(&bytes).unwrap_err(),
            BundleError::Checksum { name: "f".into() }
        );
    }

    #[test]
    fn missing_or_bad_config() {
        let bytes = write_bundle(&[("other", b"x")]);
        assert_eq!(
            Bundle::parse(&bytes).unwrap().config_text(),
            Err(BundleError::NoConfig)
        );
        let bytes = write_bundle(&[(CONFIG_NAME, b"\xff\xfe")]);
        assert_eq!(
            Bundle::parse(&bytes).unwrap().config_text(),
            Err(BundleError::ConfigNotUtf8)
        );
    }

    #[test]
    fn structural_errors() {
        assert_eq!(
            Bundle::parse(&[]),
            Err(BundleError::Truncated { offset: 0 })
        );
        let good = sample();
        let mut bad = good.clone();
        bad[0] = b'1';
        assert_eq!(
            Bundle::parse(&bad),
            Err(BundleError::BadMagic { offset: 0 })
        );
        let mut bad = good.clone();
        bad[20] = b'g';
        assert_eq!(
            Bundle::parse(&bad),
            Err(BundleError::BadField {
                offset: 14,
                field: "mode"
            })
        );
        let dup = write_bundle(&[("a", b"1"), ("./a", b"2")]);
        assert_eq!(
            Bundle::parse(&dup),
            Err(BundleError::Duplicate { name: "a".into() })
        );
        // Everything but the trailer.
        let trailer_at = good.len() - 124;
        assert_eq!(&good[trailer_at + 110..trailer_at + 120], b"TRAILER!!!");
        assert_eq!(
            Bundle::parse(&good[..trailer_at]),
            Err(BundleError::NoTrailer)
        );
        // A name with no NUL terminator.
        let mut bad = write_bundle(&[("abc", b"")]);
        bad[113] = b'x';
        assert_eq!(
            Bundle::parse(&bad),
            Err(BundleError::BadName { offset: 110 })
        );
    }

    #[test]
    fn never_panics_on_truncation_or_corruption() {
        let good = sample();
        for len in 0..good.len() {
            assert!(
                Bundle::parse(&good[..len]).is_err(),
                "prefix of {len} bytes accepted"
            );
        }
        // Corrupt each byte in turn with a few values; any outcome but a panic is fine,
        // and a result that parses must still answer lookups without panicking.
        for at in 0..good.len() {
            for v in [0u8, b'0', b'f', b'F', b'7', 0xff, b'!'] {
                let mut bad = good.clone();
                bad[at] = v;
                if let Ok(b) = Bundle::parse(&bad) {
                    let _ = b.config_text();
                    let _ = b.file("linux/Image");
                }
            }
        }
        // Huge sizes must not overflow offsets.
        let mut bad = good.clone();
        bad[54..62].copy_from_slice(b"ffffffff");
        assert!(matches!(
            Bundle::parse(&bad),
            Err(BundleError::Truncated { .. })
        ));
        let mut bad = good;
        bad[94..102].copy_from_slice(b"ffffffff");
        assert!(matches!(
            Bundle::parse(&bad),
            Err(BundleError::Truncated { .. })
        ));
    }

    /// Random bundles (mutated archives, and archives of random members with hex
    /// fields rewritten to interesting values) through [`crate::fuzzing::bundle`]: no
    /// panic, files inside the input, a rewritten bundle reads the same.
    #[test]
    fn random_bundles_never_panic() {
        let mut rng = crate::testing::Rng::new(7);
        let mut parsed = 0;
        for _ in 0..8000 {
            let names = ["ferrovisor.toml", "a", "./b/c", "linux/Image", "TRAILER!!!"];
            let members: Vec<(&str, Vec<u8>)> = (0..rng.below(4))
                .map(|_| {
                    let len = rng.below(40);
                    (*rng.pick(&names), rng.bytes(len))
                })
                .filter(|(n, _)| *n != "TRAILER!!!")
                .collect();
            let refs: Vec<(&str, &[u8])> = members.iter().map(|(n, d)| (*n, &d[..])).collect();
            let mut bytes = write_bundle(&refs);
            if rng.one_in(3) {
                // A header field (8 hex digits at 6 + 8 * i) of some member.
                let header = rng.below(bytes.len() / HEADER_LEN + 1) * HEADER_LEN;
                let field = 6 + 8 * rng.below(13);
                let digits = alloc::format!("{:08x}", rng.interesting() as u32);
                if let Some(slot) = bytes.get_mut(header + field..header + field + 8) {
                    slot.copy_from_slice(digits.as_bytes());
                }
            }
            if rng.one_in(2) {
                rng.mutate(&mut bytes);
            }
            parsed += usize::from(crate::fuzzing::bundle(&bytes));
        }
        assert!(parsed > 2500, "only {parsed} random bundles parsed");
    }

    #[test]
    #[should_panic(expected = "NUL")]
    fn writer_refuses_nul_in_names() {
        write_bundle(&[("a\0b", b"")]);
    }
}
