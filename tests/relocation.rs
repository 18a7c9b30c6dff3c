//! One image for every board: `ferrovisor.bin` relocates itself to wherever the boot
//! loader put it.
//!
//! On the host, the shipped image (`build/ferrovisor.bin`, and the ELF it was copied
//! from, `build/ferrovisor.elf`) is relocated in a buffer at several bases with the
//! rule of `ferrovisor::relocate` — the rule the entry code applies in assembly, and
//! against which the boot checks every place (`image at ...: relocated itself, N
//! places checked`). The code must come out byte-identical at every base, every
//! listed place must hold base + addend, and nothing else may change.
//!
//! Under QEMU, the same image is loaded at a base other than the one QEMU's
//! `-kernel` uses, by QEMU's generic loader (as in `bad_input.rs`: a three-instruction
//! shim sets x0 to a device tree and branches to the image), and boots the demo
//! guest. The base is chosen so the image straddles a 1 GiB boundary, which the
//! early identity map must cover on both sides.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{BOOT_TIMEOUT, artifact, run_qemu_until};
use ferrovisor::relocate::{self, R_AARCH64_RELATIVE, RELA_SIZE};

/// A 64-bit little-endian ELF file, read as far as these tests need.
struct Elf {
    bytes: Vec<u8>,
}

struct Section {
    name: String,
    kind: u32,
    flags: u64,
    addr: u64,
    offset: usize,
    size: usize,
    link: u32,
}

const SHT_SYMTAB: u32 = 2;
const SHT_NOBITS: u32 = 8;
const SHF_ALLOC: u64 = 2;

impl Elf {
    fn read(path: &str) -> Elf {
        let bytes = std::fs::read(path).unwrap();
        assert_eq!(&bytes[..4], b"\x7fELF", "{path} is not an ELF file");
        assert_eq!(
            (bytes[4], bytes[5]),
            (2, 1),
            "{path}: not ELF64 little-endian"
        );
        assert_eq!(
            u16::from_le_bytes([bytes[18], bytes[19]]),
            183,
            "not AArch64"
        );
        Elf { bytes }
    }

    fn u16(&self, at: usize) -> u16 {
        u16::from_le_bytes(self.bytes[at..at + 2].try_into().unwrap())
    }
    fn u32(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.bytes[at..at + 4].try_into().unwrap())
    }
    fn u64(&self, at: usize) -> u64 {
        u64::from_le_bytes(self.bytes[at..at + 8].try_into().unwrap())
    }

    fn cstr(&self, at: usize) -> String {
        let end = self.bytes[at..].iter().position(|&b| b == 0).unwrap();
        String::from_utf8_lossy(&self.bytes[at..at + end]).into_owned()
    }

    /// The section headers (ELF64: e_shoff at 0x28, e_shnum at 0x3c, e_shstrndx at
    /// 0x3e; each header 64 bytes).
    fn sections(&self) -> Vec<Section> {
        let shoff = self.u64(0x28) as usize;
        let shnum = self.u16(0x3c) as usize;
        let shstrndx = self.u16(0x3e) as usize;
        let raw = |i: usize| shoff + i * 64;
        let names = self.u64(raw(shstrndx) + 24) as usize;
        (0..shnum)
            .map(|i| {
                let h = raw(i);
                Section {
                    name: self.cstr(names + self.u32(h) as usize),
                    kind: self.u32(h + 4),
                    flags: self.u64(h + 8),
                    addr: self.u64(h + 16),
                    offset: self.u64(h + 24) as usize,
                    size: self.u64(h + 32) as usize,
                    link: self.u32(h + 40),
                }
            })
            .collect()
    }

    fn section(&self, name: &str) -> Section {
        self.sections()
            .into_iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("the ELF has no section {name}"))
    }

    /// The value of symbol `name` in the symbol table (24-byte Elf64_Sym records:
    /// st_name at 0, st_value at 8).
    fn symbol(&self, name: &str) -> u64 {
        let sections = self.sections();
        let symtab = sections
            .iter()
            .find(|s| s.kind == SHT_SYMTAB)
            .expect("the ELF has no symbol table");
        let strtab = &sections[symtab.link as usize];
        (0..symtab.size / 24)
            .map(|i| symtab.offset + i * 24)
            .find(|&e| self.cstr(strtab.offset + self.u32(e) as usize) == name)
            .map(|e| self.u64(e + 8))
            .unwrap_or_else(|| panic!("the ELF has no symbol {name}"))
    }
}

/// The shipped image, its ELF and the symbols linker.ld defines.
struct Image {
    file: Vec<u8>,
    elf: Elf,
    text_end: usize,
    rela: std::ops::Range<usize>,
    image_end: u64,
}

impl Image {
    fn load() -> Image {
        let file = std::fs::read(artifact("ferrovisor.bin")).unwrap();
        let elf = Elf::read(&artifact("ferrovisor.elf"));
        let text_end = elf.symbol("__fv_text_end") as usize;
        let rela = elf.symbol("__fv_rela_start") as usize..elf.symbol("__fv_rela_end") as usize;
        let image_end = elf.symbol("__fv_image_end");
        Image {
            file,
            elf,
            text_end,
            rela,
            image_end,
        }
    }

    fn table(&self) -> &[u8] {
        &self.file[self.rela.clone()]
    }

    fn relocated_at(&self, base: u64) -> Vec<u8> {
        let mut image = self.file.clone();
        let n = relocate::apply(&mut image, self.table(), base)
            .unwrap_or_else(|e| panic!("relocating at {base:#x}: {e}"));
        assert_eq!(n, self.table().len() / RELA_SIZE);
        image
    }
}

/// The image is linked at 0 and the file is exactly the ELF's loaded bytes, so an
/// ELF address is an offset in the file; the relocation records the entry code
/// reads are in the file, and they are the linker's whole `.rela.dyn`.
#[test]
fn the_image_file_holds_its_relocation_records() {
    let image = Image::load();
    assert_eq!(image.elf.symbol("__fv_image_start"), 0, "linked at 0");
    assert_eq!(
        image.file.len() as u64,
        image.elf.symbol("__fv_load_end"),
        "ferrovisor.bin ends where linker.ld's loaded sections end"
    );
    for s in image.elf.sections() {
        if s.flags & SHF_ALLOC == 0 || s.kind == SHT_NOBITS || s.size == 0 {
            continue;
        }
        assert_eq!(
            &image.file[s.addr as usize..s.addr as usize + s.size],
            &image.elf.bytes[s.offset..s.offset + s.size],
            "section {} differs between the ELF and ferrovisor.bin",
            s.name
        );
    }
    let rela = image.elf.section(".rela.dyn");
    assert_eq!(
        rela.addr as usize..rela.addr as usize + rela.size,
        image.rela,
        "__fv_rela_start/end bound the linker's .rela.dyn"
    );
    assert!(
        image.table().len() >= RELA_SIZE,
        "an image with no address in its data is not plausible"
    );
    // The Image header (booting.rst): flags bit 3, base anywhere; image_size covers
    // BSS and stacks.
    let flags = u64::from_le_bytes(image.file[24..32].try_into().unwrap());
    assert_eq!(
        flags & 0b1111,
        0b1010,
        "flags: LE, 4 KiB pages, base anywhere"
    );
    let image_size = u64::from_le_bytes(image.file[16..24].try_into().unwrap());
    assert_eq!(image_size, image.image_end);
}

/// Every record is one the entry code applies (R_AARCH64_RELATIVE, an 8-byte
/// aligned place inside the file, outside the code), and every address it writes
/// points into the image (or one past its end: `__fv_image_end`).
#[test]
fn every_record_is_one_the_entry_code_applies() {
    let image = Image::load();
    let records: Vec<_> = relocate::records(image.table(), image.file.len())
        .unwrap_or_else(|e| panic!("{e}"))
        .collect();
    for (i, r) in &records {
        assert_eq!(r.info, R_AARCH64_RELATIVE, "record {i}");
        assert!(
            r.offset as usize >= image.text_end,
            "record {i} writes code at {:#x}: the code would differ by base",
            r.offset
        );
        assert!(
            (0..=image.image_end as i64).contains(&r.addend),
            "record {i}: address {:#x} outside the image",
            r.addend
        );
    }
}

/// Relocated at three bases — QEMU virt's `-kernel` address, the Raspberry Pi 4's
/// (DRAM at 0) and one above 4 GiB — the code is byte-identical, every listed place
/// holds base + addend, and every other byte is the file's.
#[test]
fn relocated_at_three_bases_the_code_is_identical_and_every_place_is_written() {
    let image = Image::load();
    let bases = [0x4020_0000u64, 0x20_0000, 0x8_0020_0000];
    let relocated: Vec<Vec<u8>> = bases.iter().map(|&b| image.relocated_at(b)).collect();
    let places: Vec<usize> = relocate::records(image.table(), image.file.len())
        .unwrap()
        .map(|(_, r)| r.offset as usize)
        .collect();
    let mut is_place = vec![false; image.file.len()];
    for &p in &places {
        is_place[p..p + 8].fill(true);
    }
    for (base, bytes) in bases.iter().zip(&relocated) {
        assert_eq!(
            &bytes[..image.text_end],
            &image.file[..image.text_end],
            "code changed by relocating at {base:#x}"
        );
        for (at, (&b, &f)) in bytes.iter().zip(&image.file).enumerate() {
            assert!(
                is_place[at] || b == f,
                "byte {at:#x} changed at base {base:#x} but is no relocation's place"
            );
        }
        let read =
            |o: u64| u64::from_le_bytes(bytes[o as usize..o as usize + 8].try_into().unwrap());
        assert_eq!(
            relocate::verify(image.table(), image.file.len(), *base, read),
            Ok(places.len())
        );
    }
    // Between two bases, each place differs by exactly the difference of the bases.
    for &p in &places {
        let at = |i: usize| u64::from_le_bytes(relocated[i][p..p + 8].try_into().unwrap());
        assert_eq!(
            at(0).wrapping_sub(at(1)),
            bases[0] - bases[1],
            "place {p:#x}"
        );
        assert_eq!(
            at(2).wrapping_sub(at(0)),
            bases[2] - bases[0],
            "place {p:#x}"
        );
    }
}

/// Where the generic loader puts the image: 2 MiB below QEMU virt's second GiB of
/// RAM, so the image (about 10 MiB with BSS and stacks) straddles 0x8000_0000.
const LOAD_ADDRESS: u64 = 0x7fe0_0000;
const DTB_ADDRESS: u64 = 0x4f00_0000;
const SHIM_ADDRESS: u64 = 0x4f10_0000;
const BUNDLE_ADDRESS: u64 = 0x6000_0000;
const MACHINE: &str = "virt,virtualization=on,gic-version=3";
/// 2 GiB: RAM 0x4000_0000..0xc000_0000, so the image fits above the boundary.
const MEMORY: &str = "2G";
const HOST_CPUS: u32 = 2;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrovisor-relocation-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// `MOVZ Xd, #imm16, LSL #16` (A64 MOVZ, 64-bit variant, hw = 1).
fn movz_lsl16(rd: u32, imm16: u64) -> u32 {
    assert!(imm16 <= 0xffff);
    0xd2a0_0000 | ((imm16 as u32) << 5) | rd
}

/// QEMU's device tree for the machine, with `/chosen` naming the bundle as the
/// initrd (what `-kernel -initrd` or U-Boot's `booti` would write).
fn device_tree(cpu: &str, bundle_len: u64) -> PathBuf {
    let path = scratch(&format!("virt-{cpu}.dtb"));
    let status = Command::new(common::qemu_binary())
        .arg("-M")
        .arg(format!("{MACHINE},dumpdtb={}", path.display()))
        .args(["-cpu", cpu, "-smp", &HOST_CPUS.to_string(), "-m", MEMORY])
        .arg("-nographic")
        .status()
        .expect("run QEMU to dump its device tree");
    assert!(status.success());
    for (name, value) in [
        ("linux,initrd-start", BUNDLE_ADDRESS),
        ("linux,initrd-end", BUNDLE_ADDRESS + bundle_len),
    ] {
        let status = Command::new("fdtput")
            .args(["-t", "x"])
            .arg(&path)
            .args(["/chosen", name, "0", &format!("{value:x}")])
            .status()
            .expect("fdtput (device-tree-compiler, installed by .ci/setup.sh)");
        assert!(status.success(), "fdtput {name}");
    }
    path
}

fn boot_elsewhere(cpu: &str) {
    let bundle = artifact("demo.cpio");
    let bundle_len = std::fs::metadata(&bundle).unwrap().len();
    let dtb = device_tree(cpu, bundle_len);
    let words = [
        movz_lsl16(0, DTB_ADDRESS >> 16),
        movz_lsl16(1, LOAD_ADDRESS >> 16),
        0xd61f_0020, // BR X1
    ];
    let shim = scratch(&format!("shim-{cpu}.bin"));
    std::fs::write(
        &shim,
        words
            .iter()
            .flat_map(|w| w.to_le_bytes())
            .collect::<Vec<u8>>(),
    )
    .unwrap();
    let mut args: Vec<String> = [
        "-M",
        MACHINE,
        "-cpu",
        cpu,
        "-m",
        MEMORY,
        "-nographic",
        "-no-reboot",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(["-smp".into(), HOST_CPUS.to_string()]);
    for (file, addr, extra) in [
        (artifact("ferrovisor.bin"), LOAD_ADDRESS, ""),
        (dtb.display().to_string(), DTB_ADDRESS, ""),
        (bundle.clone(), BUNDLE_ADDRESS, ""),
        (shim.display().to_string(), SHIM_ADDRESS, ",cpu-num=0"),
    ] {
        args.push("-device".into());
        args.push(format!(
            "loader,file={file},addr={addr:#x},force-raw=on{extra}"
        ));
    }
    // A boot that stops with an error ends the run at once.
    let run = run_qemu_until(&args, BOOT_TIMEOUT, |l| l.contains("Ferrovisor stopped"));

    let image = Image::load();
    let records = image.table().len() / RELA_SIZE;
    let expected = format!(
        "image at {LOAD_ADDRESS:#x}..{:#x}: relocated itself, {records} places checked",
        LOAD_ADDRESS + image.image_end
    );
    assert!(
        run.output.lines().any(|l| l.ends_with(&expected)),
        "no boot line `{expected}`\n{}",
        run.report()
    );
    assert!(
        LOAD_ADDRESS < 0x8000_0000 && LOAD_ADDRESS + image.image_end > 0x8000_0000,
        "the image no longer straddles the GiB boundary; move LOAD_ADDRESS"
    );
    assert!(
        run.output
            .contains(&format!("{HOST_CPUS} of {HOST_CPUS} CPUs up")),
        "the secondary CPUs did not start at this base\n{}",
        run.report()
    );
    assert!(
        run.has_line("Ferrovisor demo guest: hello from EL1"),
        "{}",
        run.report()
    );
    run.assert_all_passed(2);
    let _ = std::fs::remove_file(dtb);
    let _ = std::fs::remove_file(shim);
}

#[test]
fn demo_guest_with_the_image_across_a_gib_boundary_on_cpu_max() {
    boot_elsewhere("max");
}

#[test]
fn demo_guest_with_the_image_across_a_gib_boundary_on_cortex_a57() {
    boot_elsewhere("cortex-a57");
}
