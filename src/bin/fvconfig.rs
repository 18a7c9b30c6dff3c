//! fvconfig: check a Ferrovisor system config, pack its boot bundle and write its U-Boot
//! boot script (a host tool).
//!
//! ```text
//! fvconfig check CONFIG [-L DIR]... [HOST]
//! fvconfig pack  CONFIG -o BUNDLE.cpio [-L DIR]... [HOST]
//! fvconfig uboot CONFIG -o boot.scr [--text] [--bundle NAME] [--hypervisor NAME]
//!                [--device "IFACE DEV:PART"] [--fdt ADDR | --fdt-file NAME] [-L DIR]... [HOST]
//!
//! HOST:  --board qemu-virt   the devices of QEMU's virt board (the default)
//!        --dtb FILE          the host's device tree blob: CPUs, RAM and devices as the
//!                            hypervisor will read them at boot
//!        --cpus N            number of physical CPUs (default: from --dtb, else enough)
//!        --ram SIZE          bytes of RAM, e.g. 2G (default: from --dtb, else enough)
//!        --sve-vl-max BITS   the host implements every SVE vector length up to BITS
//!                            (QEMU -cpu max: 2048); `none`: no SVE. Checks each
//!                            VM's sve_vl against it (default: unknown, checked at boot)
//!        --pmu-counters N    the event counters of the host's PMU, PMCR_EL0.N (0: none;
//!                            default: QEMU's 6 for qemu-virt, else checked at boot)
//! ```
//!
//! The board's devices are read from its device tree with the hypervisor's own parser,
//! and checked with the hypervisor's own rules, so a passthrough device that can do DMA,
//! or an interrupt its node does not list, is refused here with the words the hypervisor
//! would stop with at boot.
//!
//! Both commands run the hypervisor's own config parser and checks
//! (`ferrovisor::config`), then read every image the config names and plan its load as
//! the hypervisor will. A path in the config is looked for relative to the config file's
//! directory first, then in each `-L` directory in order (like a linker search path).
//! `pack` then writes the boot bundle: a cpio newc archive whose first member is the
//! config as `ferrovisor.toml`, followed by each file under the path the config writes.
//!
//! `uboot` checks the config the same way, then writes the U-Boot script that loads the
//! hypervisor Image and the bundle from the boot medium and starts the hypervisor with
//! `booti` (see [`UBootScript`] and `boards/qemu-virt/uboot/README.md`). The output is
//! a script image as `mkimage -A arm64 -T script -C none` makes it, ready for `source`
//! and for distro boot's scan for `boot.scr`; `--text` writes the plain script instead.
//!
//! Errors print as `error: FILE:LINE:COL: FIELD: REASON` and the exit status is 1; a
//! usage error exits with 2.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ferrovisor::config::bundle::{CONFIG_NAME, write_bundle};
use ferrovisor::config::{HostFacts, SystemConfig};
use ferrovisor::platform::Platform;

const USAGE: &str = "usage: fvconfig check CONFIG [-L DIR]... [--board qemu-virt | --dtb FILE] [--cpus N] [--ram SIZE] [--pmu-counters N] [--sve-vl-max BITS|none]
       fvconfig pack CONFIG -o BUNDLE [-L DIR]... [--board qemu-virt | --dtb FILE] [--cpus N] [--ram SIZE] [--sve-vl-max BITS|none]
       fvconfig uboot CONFIG -o boot.scr [--text] [--bundle NAME] [--hypervisor NAME]
                [--device \"IFACE DEV:PART\"] [--fdt ADDR | --fdt-file NAME] [-L DIR]... [HOST]";

/// QEMU's virt board as QEMU 10 describes it to the hypervisor (`-M
/// virt,virtualization=on,gic-version=3 -cpu max -smp 4 -m 1G`, dumped with
/// `dumpdtb`): its devices, read by the hypervisor's own device-tree parser. Its CPU
/// count and RAM are QEMU's `-smp` and `-m`, so those are not taken from it.
const QEMU_VIRT_DTB: &[u8] = include_bytes!("../../tests/fixtures/virt-gicv3-max-4cpu.dtb");

#[derive(Debug, Clone, PartialEq, Eq)]
enum Command {
    Check,
    Pack {
        output: PathBuf,
    },
    UBoot {
        output: PathBuf,
        script: UBootScript,
        /// Write the plain script, not the `mkimage` script image.
        text: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Board {
    QemuVirt,
    Dtb(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Args {
    command: Command,
    config: PathBuf,
    search: Vec<PathBuf>,
    board: Board,
    cpus: Option<usize>,
    ram: Option<u64>,
    /// `--sve-vl-max`: the SVE lengths the host implements (mask, 0: none).
    sve_vqs: Option<u16>,
    pmu_counters: Option<u8>,
}

fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let (digits, shift) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (t, 0),
        Some((i, _)) => (
            &t[..i],
            match t[i..].to_ascii_uppercase().as_str() {
                "K" | "KIB" => 10,
                "M" | "MIB" => 20,
                "G" | "GIB" => 30,
                "T" | "TIB" => 40,
                _ => return None,
            },
        ),
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut it = args.iter();
    let command = it.next().ok_or("no command")?;
    let mut config = None;
    let mut output = None;
    let mut search = Vec::new();
    let mut board = Board::QemuVirt;
    let mut cpus = None;
    let mut ram = None;
    let mut sve_vqs = None;
    let mut pmu_counters = None;
    // `uboot` only.
    let mut text = false;
    let mut bundle = None;
    let mut hypervisor = None;
    let mut device = None;
    let mut fdt = None;
    while let Some(arg) = it.next() {
        let mut value = |what: &str| {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{arg} needs {what}"))
        };
        match arg.as_str() {
            "-o" | "--output" => output = Some(PathBuf::from(value("a file")?)),
            "-L" => search.push(PathBuf::from(value("a directory")?)),
            "--dtb" => board = Board::Dtb(PathBuf::from(value("a file")?)),
            "--board" => match value("a board name")?.as_str() {
                "qemu-virt" => board = Board::QemuVirt,
                other => return Err(format!("unknown board `{other}` (known: qemu-virt)")),
            },
            "--cpus" => {
                let n = value("a number")?;
                cpus = Some(
                    n.parse()
                        .map_err(|_| format!("--cpus: `{n}` is not a number"))?,
                );
            }
            "--ram" => {
                let n = value("a size")?;
                ram = Some(parse_size(&n).ok_or_else(|| format!("--ram: `{n}` is not a size"))?);
            }
            "--sve-vl-max" => {
                let n = value("a vector length in bits or `none`")?;
                sve_vqs = Some(match n.as_str() {
                    "none" => 0,
                    _ => match n.parse::<u32>() {
                        Ok(bits) if bits % 128 == 0 && (128..=2048).contains(&bits) => {
                            ((1u32 << (bits / 128)) - 1) as u16
                        }
                        _ => {
                            return Err(format!(
                                "--sve-vl-max: `{n}` is not a multiple of 128 in 128..=2048, nor `none`"
                            ));
                        }
                    },
                });
            }
            "--pmu-counters" => {
                let n = value("a number")?;
                pmu_counters = Some(
                    n.parse::<u8>()
                        .ok()
                        .filter(|&n| n <= 31)
                        .ok_or_else(|| format!("--pmu-counters: `{n}` is not a number 0..=31"))?,
                );
            }
            "--text" => text = true,
            "--bundle" => bundle = Some(file_name("--bundle", value("a file name")?)?),
            "--hypervisor" => hypervisor = Some(file_name("--hypervisor", value("a file name")?)?),
            "--device" => device = Some(medium(value("\"IFACE DEV:PART\"")?)?),
            "--fdt" => fdt = Some(Fdt::Address(fdt_address(value("an address")?)?)),
            "--fdt-file" => fdt = Some(Fdt::File(file_name("--fdt-file", value("a file name")?)?)),
            s if s.starts_with("-L") && s.len() > 2 => search.push(PathBuf::from(&s[2..])),
            s if s.starts_with('-') => return Err(format!("unknown option `{s}`")),
            s if config.is_none() => config = Some(PathBuf::from(s)),
            s => return Err(format!("unexpected argument `{s}`")),
        }
    }
    let config = config.ok_or("no CONFIG file given")?;
    let uboot_only = [
        (text, "--text"),
        (bundle.is_some(), "--bundle"),
        (hypervisor.is_some(), "--hypervisor"),
        (device.is_some(), "--device"),
        (fdt.is_some(), "--fdt/--fdt-file"),
    ];
    if command != "uboot"
        && let Some((_, option)) = uboot_only.iter().find(|(given, _)| *given)
    {
        return Err(format!("{option} is for `uboot`"));
    }
    let command = match command.as_str() {
        "check" => {
            if output.is_some() {
                return Err("-o is for `pack`".into());
            }
            Command::Check
        }
        "pack" => Command::Pack {
            output: output.ok_or("pack needs -o BUNDLE")?,
        },
        "uboot" => Command::UBoot {
            output: output.ok_or("uboot needs -o SCRIPT")?,
            script: UBootScript {
                hypervisor: hypervisor.unwrap_or_else(|| DEFAULT_HYPERVISOR.into()),
                // As the Makefile names a config's bundle: build/<config stem>.cpio.
                bundle: match bundle {
                    Some(name) => name,
                    None => file_name(
                        "--bundle",
                        format!(
                            "{}.cpio",
                            config.file_stem().unwrap_or_default().to_string_lossy()
                        ),
                    )?,
                },
                device,
                fdt: fdt.unwrap_or_else(|| Fdt::Address(DEFAULT_FDT.into())),
            },
            text,
        },
        other => return Err(format!("unknown command `{other}`")),
    };
    Ok(Args {
        command,
        config,
        search,
        board,
        cpus,
        ram,
        sve_vqs,
        pmu_counters,
    })
}

/// The hypervisor Image's file name on the boot medium unless `--hypervisor` says.
const DEFAULT_HYPERVISOR: &str = "ferrovisor.bin";
/// The device tree handed on unless `--fdt`/`--fdt-file` says: `fdt_addr` is where the
/// board's firmware (on QEMU: QEMU itself, at the DRAM base) left the device tree U-Boot
/// was given.
const DEFAULT_FDT: &str = "${fdt_addr}";

/// The device tree `booti` hands to the hypervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fdt {
    /// Already in memory at this address: a hex number or a `${variable}`.
    Address(String),
    /// A file on the boot medium, loaded to `${fdt_addr_r}` first.
    File(String),
}

/// What the U-Boot boot script loads, and from where.
///
/// The script loads the hypervisor Image to `${kernel_addr_r}` and the boot bundle to
/// `${ramdisk_addr_r}`, then runs `booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize}
/// FDT`. The Image's header says its base may be anywhere (flags bit 3, Linux
/// booting.rst), so `booti` runs it where it was loaded when `${kernel_addr_r}` is 2 MiB
/// (text_offset) above a 2 MiB-aligned address, and the hypervisor relocates itself
/// there; the bundle reaches the hypervisor as the initrd, through the device tree's
/// `/chosen` `linux,initrd-start`/`-end` that `booti` writes.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UBootScript {
    /// The hypervisor Image's file name on the boot medium.
    hypervisor: String,
    /// The boot bundle's file name on the boot medium.
    bundle: String,
    /// `Some("mmc 0:1")`: load from there. `None`: from where distro boot found the
    /// script (`${devtype} ${devnum}:${distro_bootpart}`, under `${prefix}`), or from
    /// `virtio 0:1` when it is run by hand.
    device: Option<String>,
    /// The device tree handed on.
    fdt: Fdt,
}

/// A file name that can stand unquoted in a U-Boot command: no blanks, quotes, `$`, `;`
/// or `#`, which U-Boot's shell would read as syntax.
fn file_name(option: &str, name: String) -> Result<String, String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || "._-+/".contains(c);
    if name.is_empty() || !name.chars().all(plain) {
        return Err(format!(
            "{option}: `{name}` is not a plain file name (letters, digits, `._-+/`)"
        ));
    }
    Ok(name)
}

/// `IFACE DEV[:PART]` as U-Boot's `load` takes it: `mmc 0:1`, `virtio 0:1`, `usb 0`.
fn medium(text: String) -> Result<String, String> {
    let bad = || format!("--device: `{text}` is not \"IFACE DEV:PART\" (e.g. \"mmc 0:1\")");
    let (iface, dev_part) = text.split_once(' ').ok_or_else(bad)?;
    let hex = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_hexdigit());
    let (dev, part) = dev_part.split_once(':').unwrap_or((dev_part, "0"));
    let iface_ok = !iface.is_empty()
        && iface
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !iface_ok || !hex(dev) || !hex(part) {
        return Err(bad());
    }
    Ok(text)
}

/// An address for `--fdt`: a hex number (`0x4000_0000` without the underscores, or
/// U-Boot's bare hex) or one `${variable}`.
fn fdt_address(text: String) -> Result<String, String> {
    let digits = text.strip_prefix("0x").unwrap_or(&text);
    let number = !digits.is_empty() && digits.chars().all(|c| c.is_ascii_hexdigit());
    let variable = text
        .strip_prefix("${")
        .and_then(|t| t.strip_suffix('}'))
        .is_some_and(|v| !v.is_empty() && v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
    if number || variable {
        Ok(text)
    } else {
        Err(format!(
            "--fdt: `{text}` is neither a hex address nor a ${{variable}}"
        ))
    }
}

impl UBootScript {
    /// The plain script for the config named `config_name` whose VMs `summary` lists.
    fn text(&self, config_name: &str, summary: &str) -> String {
        let (dev, prefix, from) = match &self.device {
            Some(device) => (device.clone(), "", device.clone()),
            None => (
                "${devtype} ${devnum}:${distro_bootpart}".to_string(),
                "${prefix}",
                "where distro boot found this script (run by hand: virtio 0:1)".to_string(),
            ),
        };
        let mut s = format!(
            "# Ferrovisor boot script for {config_name}, written by `fvconfig uboot`:\n\
             # change the config and run it again rather than editing this file.\n\
             #   VMs: {summary}\n\
             #\n\
             # Loads from {from}:\n\
             #   {hyp}: the hypervisor, an arm64 Image, to ${{kernel_addr_r}}; it runs\n\
             #     there (any 2 MiB-aligned address + 2 MiB) and relocates itself;\n\
             #   {bundle}: the boot bundle (the config and every image it names), to\n\
             #     ${{ramdisk_addr_r}}; booti hands it on as the initrd.\n\
             # Then starts the hypervisor at EL2 with booti.\n",
            hyp = self.hypervisor,
            bundle = self.bundle,
        );
        if self.device.is_none() {
            // Distro boot sets these (as shell variables) before it sources a script.
            s.push_str(
                "if test -z \"${devtype}\"; then setenv devtype virtio; setenv devnum 0; \
                 setenv distro_bootpart 1; fi\n",
            );
        }
        let mut loads = Vec::new();
        let fdt = match &self.fdt {
            Fdt::Address(address) => address.clone(),
            Fdt::File(file) => {
                loads.push(format!("load {dev} ${{fdt_addr_r}} {prefix}{file}"));
                "${fdt_addr_r}".to_string()
            }
        };
        loads.push(format!(
            "load {dev} ${{kernel_addr_r}} {prefix}{}",
            self.hypervisor
        ));
        // Last, so that ${filesize} is the bundle's.
        loads.push(format!(
            "load {dev} ${{ramdisk_addr_r}} {prefix}{}",
            self.bundle
        ));
        s.push_str(&format!(
            "echo \"Ferrovisor: loading {} and {} from {dev}\"\n",
            self.hypervisor, self.bundle
        ));
        // Each step only if the one before worked: a failed bundle load would
        // otherwise leave ${filesize} at the Image's size.
        for (depth, load) in loads.iter().enumerate() {
            s.push_str(&format!("{}if {load}; then\n", "  ".repeat(depth)));
        }
        s.push_str(&format!(
            "{}booti ${{kernel_addr_r}} ${{ramdisk_addr_r}}:${{filesize}} {fdt}\n",
            "  ".repeat(loads.len())
        ));
        for depth in (0..loads.len()).rev() {
            s.push_str(&format!("{}fi\n", "  ".repeat(depth)));
        }
        // booti returns only when it could not start the Image.
        s.push_str("echo \"Ferrovisor: not started (see the messages above)\"\n");
        s
    }
}

/// U-Boot's legacy image header (U-Boot include/image.h, `struct legacy_img_hdr`): 64
/// bytes, big-endian fields.
const IH_MAGIC: u32 = 0x2705_1956;
const IH_OS_LINUX: u8 = 5;
const IH_ARCH_ARM64: u8 = 22;
const IH_TYPE_SCRIPT: u8 = 6;
const IH_COMP_NONE: u8 = 0;
const IH_NMLEN: usize = 32;
const IH_HEADER_SIZE: usize = 64;

/// CRC-32 as zlib's `crc32()`, which mkimage uses: IEEE 802.3, reflected, polynomial
/// 0xEDB8_8320, initial and final value all ones.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The script image `mkimage -A arm64 -O linux -T script -C none -n NAME -d SCRIPT`
/// writes, made at `time` (seconds since 1970): the legacy header, then the data of a
/// multi-file image with one file, the script: its length as a big-endian u32, a zero
/// u32 ending the length table, and the script's bytes.
fn script_image(script: &[u8], name: &str, time: u32) -> Vec<u8> {
    let mut data = Vec::with_capacity(8 + script.len());
    data.extend_from_slice(&(script.len() as u32).to_be_bytes());
    data.extend_from_slice(&0u32.to_be_bytes());
    data.extend_from_slice(script);

    let mut header = [0u8; IH_HEADER_SIZE];
    header[0..4].copy_from_slice(&IH_MAGIC.to_be_bytes());
    // [4..8] ih_hcrc: the header's CRC with this field zero, filled in below.
    header[8..12].copy_from_slice(&time.to_be_bytes());
    header[12..16].copy_from_slice(&(data.len() as u32).to_be_bytes());
    // [16..20] ih_load and [20..24] ih_ep: 0, unused for scripts.
    header[24..28].copy_from_slice(&crc32(&data).to_be_bytes());
    header[28] = IH_OS_LINUX;
    header[29] = IH_ARCH_ARM64;
    header[30] = IH_TYPE_SCRIPT;
    header[31] = IH_COMP_NONE;
    let name = &name.as_bytes()[..name.len().min(IH_NMLEN)];
    header[32..32 + name.len()].copy_from_slice(name);
    let hcrc = crc32(&header);
    header[4..8].copy_from_slice(&hcrc.to_be_bytes());

    let mut image = header.to_vec();
    image.extend_from_slice(&data);
    image
}

/// The script image's time stamp: `SOURCE_DATE_EPOCH` when set (reproducible builds, as
/// mkimage does), else now.
fn image_time() -> u32 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as u32)
        })
}

/// Where the file a config path names is: absolute as is; else next to the config, then
/// along the search directories.
fn resolve(path: &str, config_dir: &Path, search: &[PathBuf]) -> Option<PathBuf> {
    let p = Path::new(path);
    if p.is_absolute() {
        return p.is_file().then(|| p.to_path_buf());
    }
    std::iter::once(config_dir)
        .chain(search.iter().map(PathBuf::as_path))
        .map(|dir| dir.join(p))
        .find(|candidate| candidate.is_file())
}

/// The machine a device tree blob describes, as the hypervisor sees it at boot: the
/// same parser (`Platform::parse`) and the same facts (`HostFacts::from_platform`), so
/// a config `fvconfig` accepts is one the hypervisor accepts on that board. RAM is what
/// the `/memory` nodes list (the hypervisor has a little less: its image, the device
/// tree and the bundle take some).
fn host_from_dtb(blob: &[u8]) -> Result<HostFacts, String> {
    let platform = Platform::parse(blob).map_err(|e| e.to_string())?;
    let ram = platform.memory.iter().map(|m| m.size).sum();
    Ok(HostFacts::from_platform(
        &platform,
        platform.cpus.len(),
        ram,
    ))
}

fn host_facts(args: &Args, config: &SystemConfig) -> Result<HostFacts, String> {
    let mut facts = match &args.board {
        // QEMU's Arm CPUs all reset PMCR_EL0 to 0x41013000: N = 6.
        Board::QemuVirt => HostFacts {
            cpus: 0,
            ram_bytes: 0,
            pmu_counters: Some(6),
            ..host_from_dtb(QEMU_VIRT_DTB).map_err(|e| format!("the qemu-virt board: {e}"))?
        },
        Board::Dtb(path) => {
            let blob =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            host_from_dtb(&blob).map_err(|e| format!("{}: {e}", path.display()))?
        }
    };
    // What was neither given nor read is taken to be enough.
    let needed_cpus = config.vms.iter().map(|vm| vm.vcpus).sum::<usize>().max(
        config
            .vms
            .iter()
            .flat_map(|vm| vm.cpus.iter().flatten())
            .map(|c| c + 1)
            .max()
            .unwrap_or(0),
    );
    facts.cpus = args.cpus.unwrap_or(if facts.cpus == 0 {
        needed_cpus
    } else {
        facts.cpus
    });
    facts.sve_vqs = args.sve_vqs;
    if args.pmu_counters.is_some() {
        facts.pmu_counters = args.pmu_counters;
    }
    facts.ram_bytes = args.ram.unwrap_or(if facts.ram_bytes == 0 {
        u64::MAX
    } else {
        facts.ram_bytes
    });
    Ok(facts)
}

/// Every file the config names, once each, in config order: (config path, file on disk).
fn referenced_files(config: &SystemConfig) -> Vec<&str> {
    let mut paths: Vec<&str> = Vec::new();
    for vm in &config.vms {
        let names = [Some(&vm.kernel.path), vm.initrd.as_ref(), vm.dtb.as_ref()];
        for path in names.into_iter().flatten() {
            if !paths.contains(&path.as_str()) {
                paths.push(path);
            }
        }
    }
    paths
}

/// Run a command; `Err` holds the message to print after `error: `.
fn run(args: &Args) -> Result<String, String> {
    let config_name = args.config.display().to_string();
    let text = std::fs::read_to_string(&args.config)
        .map_err(|e| format!("{config_name}: cannot read: {e}"))?;
    let config = SystemConfig::parse(&text, &config_name).map_err(|e| e.to_string())?;
    let config_dir = args.config.parent().unwrap_or(Path::new("."));
    let config_dir = if config_dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        config_dir
    };
    let locate = |path: &str| resolve(path, config_dir, &args.search);

    let host = host_facts(args, &config)?;
    config
        .check_against(&host, &|path| {
            // Opened, not just looked at, so an unreadable file is reported at its field.
            let file = std::fs::File::open(locate(path)?).ok()?;
            file.metadata().ok().map(|m| m.len() as usize)
        })
        .map_err(|e| e.to_string())?;

    let mut contents: Vec<(&str, Vec<u8>)> = Vec::new();
    for path in referenced_files(&config) {
        let file = locate(path).ok_or_else(|| format!("{config_name}: cannot find `{path}`"))?;
        let bytes = std::fs::read(&file)
            .map_err(|e| format!("{config_name}: cannot read {}: {e}", file.display()))?;
        contents.push((path, bytes));
    }
    for vm in &config.vms {
        let kernel = contents
            .iter()
            .find(|(p, _)| *p == vm.kernel.path)
            .map(|(_, b)| b.as_slice())
            .unwrap_or_default();
        config.plan_kernel(vm, kernel).map_err(|e| e.to_string())?;
    }

    let summary = config
        .vms
        .iter()
        .map(|vm| format!("{} ({} vCPU, {} MiB)", vm.name, vm.vcpus, vm.memory >> 20))
        .collect::<Vec<_>>()
        .join(", ");
    match &args.command {
        Command::Check => Ok(format!("{config_name}: ok: {summary}")),
        Command::Pack { output } => {
            let mut members: Vec<(&str, &[u8])> = vec![(CONFIG_NAME, text.as_bytes())];
            members.extend(contents.iter().map(|(p, b)| (*p, b.as_slice())));
            let bundle = write_bundle(&members);
            std::fs::write(output, &bundle)
                .map_err(|e| format!("cannot write {}: {e}", output.display()))?;
            Ok(format!(
                "{}: {} bytes, {} files: {summary}",
                output.display(),
                bundle.len(),
                members.len()
            ))
        }
        Command::UBoot {
            output,
            script,
            text: plain,
        } => {
            let script_text = script.text(&config_name, &summary);
            let stem = args
                .config
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy();
            let bytes = if *plain {
                script_text.into_bytes()
            } else {
                script_image(
                    script_text.as_bytes(),
                    &format!("ferrovisor {stem}"),
                    image_time(),
                )
            };
            std::fs::write(output, &bytes)
                .map_err(|e| format!("cannot write {}: {e}", output.display()))?;
            Ok(format!(
                "{}: U-Boot {}, loads {} and {}: {summary}",
                output.display(),
                if *plain { "script" } else { "script image" },
                script.hypervisor,
                script.bundle
            ))
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let args = match parse_args(&args) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("fvconfig: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferrovisor::config::bundle::Bundle;

    /// A fresh empty directory for one test.
    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("fvconfig-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write(path: &Path, bytes: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }

    /// An arm64 Image header declaring `image_size`, padded to `len` bytes.
    fn arm64_image(len: usize, image_size: u64) -> Vec<u8> {
        let mut b = vec![0u8; len.max(64)];
        b[16..24].copy_from_slice(&image_size.to_le_bytes());
        b[0x38..0x3c].copy_from_slice(b"ARM\x64");
        b
    }

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    fn args(command: Command, config: &Path, search: &[&Path]) -> Args {
        Args {
            command,
            config: config.to_path_buf(),
            search: search.iter().map(|p| p.to_path_buf()).collect(),
            board: Board::QemuVirt,
            cpus: None,
            ram: None,
            sve_vqs: None,
            pmu_counters: None,
        }
    }

    const DEMO: &str = "[[vm]]\nname = \"demo\"\nmemory = \"128M\"\nkernel = \"guests/demo.bin\"\n";

    #[test]
    fn command_line() {
        let a = parse_args(&strings(&[
            "pack",
            "boards/x.toml",
            "-o",
            "out.cpio",
            "-L",
            "build",
            "-Lother",
            "--cpus",
            "4",
            "--ram",
            "2G",
            "--dtb",
            "virt.dtb",
        ]))
        .unwrap();
        assert_eq!(
            a,
            Args {
                command: Command::Pack {
                    output: "out.cpio".into()
                },
                config: "boards/x.toml".into(),
                search: vec!["build".into(), "other".into()],
                board: Board::Dtb("virt.dtb".into()),
                cpus: Some(4),
                ram: Some(2 << 30),
                sve_vqs: None,
                pmu_counters: None,
            }
        );
        assert_eq!(
            parse_args(&strings(&["check", "c.toml"])).unwrap().command,
            Command::Check
        );
        for bad in [
            &["pack", "c.toml"][..],
            &["check"],
            &["check", "c.toml", "-o", "x"],
            &["check", "c.toml", "--board", "rpi"],
            &["check", "c.toml", "--cpus", "many"],
            &["check", "c.toml", "--frobnicate"],
            &["check", "a.toml", "b.toml"],
            &["lint", "c.toml"],
            &["check", "c.toml", "-L"],
        ] {
            assert!(parse_args(&strings(bad)).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn paths_resolve_next_to_the_config_then_along_search_dirs() {
        let dir = scratch("resolve");
        let (boards, build, extra) = (dir.join("boards"), dir.join("build"), dir.join("extra"));
        write(&build.join("guests/demo.bin"), b"build");
        write(&extra.join("guests/demo.bin"), b"extra");
        write(&extra.join("only-extra"), b"x");
        std::fs::create_dir_all(&boards).unwrap();
        let search = [build.clone(), extra.clone()];
        assert_eq!(
            resolve("guests/demo.bin", &boards, &search),
            Some(build.join("guests/demo.bin"))
        );
        assert_eq!(
            resolve("only-extra", &boards, &search),
            Some(extra.join("only-extra"))
        );
        write(&boards.join("guests/demo.bin"), b"local");
        assert_eq!(
            resolve("guests/demo.bin", &boards, &search),
            Some(boards.join("guests/demo.bin"))
        );
        assert_eq!(resolve("missing", &boards, &search), None);
        let absolute = extra.join("only-extra");
        assert_eq!(
            resolve(absolute.to_str().unwrap(), &boards, &[]),
            Some(absolute)
        );
        // A directory is not a file.
        assert_eq!(resolve("guests", &boards, &[]), None);
    }

    #[test]
    fn check_passes_and_fails_with_file_line_column() {
        let dir = scratch("check");
        let config = dir.join("demo.toml");
        write(&config, DEMO.as_bytes());
        let build = dir.join("build");
        let e = run(&args(Command::Check, &config, &[&build])).unwrap_err();
        assert_eq!(
            e,
            format!(
                "{}:4:10: vm.demo.kernel: cannot read `guests/demo.bin`: no such file, or not readable",
                config.display()
            )
        );
        write(&build.join("guests/demo.bin"), &arm64_image(4096, 8192));
        let ok = run(&args(Command::Check, &config, &[&build])).unwrap();
        assert!(ok.ends_with("ok: demo (1 vCPU, 128 MiB)"), "{ok}");
        // The kernel's header is read: an image_size beyond the VM's RAM is refused.
        write(
            &build.join("guests/demo.bin"),
            &arm64_image(4096, 256 << 20),
        );
        let e = run(&args(Command::Check, &config, &[&build])).unwrap_err();
        assert!(
            e.contains(":4:10: vm.demo.kernel: `guests/demo.bin`: the image needs guest memory"),
            "{e}"
        );
        // A config error.
        write(&config, DEMO.replace("128M", "127M").as_bytes());
        let e = run(&args(Command::Check, &config, &[&build])).unwrap_err();
        assert!(e.contains(":3:10: vm.demo.memory: 127M is not"), "{e}");
        // Host facts: too few CPUs (vCPUs may share a CPU, but not an
        // exclusive VM's).
        write(
            &config,
            DEMO.replace("memory", "vcpus = 2\nexclusive = true\nmemory")
                .as_bytes(),
        );
        write(&build.join("guests/demo.bin"), &arm64_image(4096, 8192));
        let mut a = args(Command::Check, &config, &[&build]);
        a.cpus = Some(1);
        let e = run(&a).unwrap_err();
        assert!(
            e.contains("vm.demo.exclusive: not enough physical CPUs"),
            "{e}"
        );
        // The host's PMU: more counters than QEMU's 6, or than --pmu-counters.
        write(
            &config,
            format!("{DEMO}[vm.cpu]\npmu_counters = 7\n").as_bytes(),
        );
        let mut p = args(Command::Check, &config, &[&build]);
        let e = run(&p).unwrap_err();
        assert!(
            e.contains(":6:16: vm.demo.cpu.pmu_counters: 7 counters asked for"),
            "{e}"
        );
        p.pmu_counters = Some(8);
        run(&p).unwrap();
        write(
            &config,
            DEMO.replace("memory", "vcpus = 2\nexclusive = true\nmemory")
                .as_bytes(),
        );
        a.cpus = None;
        run(&a).unwrap();
    }

    #[test]
    fn passthrough_checked_against_the_virt_board() {
        let dir = scratch("passthrough");
        let config = dir.join("pt.toml");
        write(&dir.join("guests/demo.bin"), &arm64_image(4096, 8192));
        let with = |vm: &str, base: &str, irq: u32| {
            format!("{vm}[[vm.passthrough]]\nbase = {base}\nsize = 0x1000\nirqs = [{irq}]\n")
        };
        // The PL061 GPIO (SPI 7) does no DMA.
        write(&config, with(DEMO, "0x0903_0000", 39).as_bytes());
        run(&args(Command::Check, &config, &[])).unwrap();
        // 0x0b00_0000 is nothing on virt; UART0 is the hypervisor's own console (the VM
        // has no emulated PL011 there, so only the board check can refuse it).
        let quiet = format!("{DEMO}console = \"none\"\n");
        for (vm, base) in [(DEMO, "0x0b00_0000"), (quiet.as_str(), "0x0900_0000")] {
            write(&config, with(vm, base, 39).as_bytes());
            let e = run(&args(Command::Check, &config, &[])).unwrap_err();
            assert!(
                e.contains("vm.demo.passthrough[0]: ") && e.contains("not a device of the board"),
                "{e}"
            );
        }
        // A virtio-mmio transport does DMA; the board check says so, as the hypervisor
        // does at boot.
        write(&config, with(DEMO, "0x0a00_0000", 48).as_bytes());
        let e = run(&args(Command::Check, &config, &[])).unwrap_err();
        assert!(
            e.contains(":5:1: vm.demo.passthrough[0]: /virtio_mmio@a000000 can master the bus"),
            "{e}"
        );
        // An interrupt the device's node does not list.
        write(&config, with(DEMO, "0x0903_0000", 40).as_bytes());
        let e = run(&args(Command::Check, &config, &[])).unwrap_err();
        assert!(
            e.contains(":8:9: vm.demo.passthrough[0].irqs: INTID 40 is not an interrupt"),
            "{e}"
        );
    }

    #[test]
    fn pack_writes_a_bundle_the_hypervisor_and_gnu_cpio_read() {
        let dir = scratch("pack");
        let config = dir.join("boards/linux.toml");
        let text = "[[vm]]\nname = \"linux\"\nmemory = \"64M\"\nkernel = \"linux/Image\"\n\
                    initrd = \"linux/rd.gz\"\n[[vm]]\nname = \"demo\"\nmemory = \"64M\"\n\
                    kernel = \"linux/Image\"\n";
        write(&config, text.as_bytes());
        let image = arm64_image(5000, 8192);
        write(&dir.join("build/linux/Image"), &image);
        write(&dir.join("build/linux/rd.gz"), b"initramfs");
        let out = dir.join("out.cpio");
        let summary = run(&args(
            Command::Pack {
                output: out.clone(),
            },
            &config,
            &[&dir.join("build")],
        ))
        .unwrap();
        assert!(summary.contains("3 files"), "{summary}");
        let bytes = std::fs::read(&out).unwrap();
        let bundle = Bundle::parse(&bytes).unwrap();
        let names: Vec<&str> = bundle.files().map(|(n, _)| n).collect();
        assert_eq!(names, [CONFIG_NAME, "linux/Image", "linux/rd.gz"]);
        assert_eq!(bundle.config_text().unwrap(), text);
        assert_eq!(bundle.file("linux/Image"), Some(&image[..]));
        // GNU cpio lists the same members.
        let listing = std::process::Command::new("cpio")
            .args(["-it", "--quiet", "-F"])
            .arg(&out)
            .output()
            .expect("GNU cpio (Debian package cpio) is needed for this test");
        assert!(listing.status.success(), "{listing:?}");
        assert_eq!(
            String::from_utf8(listing.stdout).unwrap(),
            "ferrovisor.toml\nlinux/Image\nlinux/rd.gz\n"
        );
        // And a bundle made by GNU cpio from a directory (with `./` names and
        // directory members) reads as well.
        let tree = dir.join("tree");
        write(&tree.join(CONFIG_NAME), text.as_bytes());
        write(&tree.join("linux/Image"), &image);
        let gnu = std::process::Command::new("sh")
            .arg("-c")
            .arg("find . | cpio -o -H newc --quiet")
            .current_dir(&tree)
            .output()
            .unwrap();
        assert!(gnu.status.success());
        let bundle = Bundle::parse(&gnu.stdout).unwrap();
        assert_eq!(bundle.config_text().unwrap(), text);
        assert_eq!(bundle.file("linux/Image"), Some(&image[..]));
    }

    #[test]
    fn host_facts_from_qemu_virt_dtb() {
        let fixture =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/virt-gicv3-max-4cpu.dtb");
        let facts = host_from_dtb(&std::fs::read(fixture).unwrap()).unwrap();
        assert_eq!(facts.cpus, 4);
        assert_eq!(facts.ram_bytes, 1 << 30);
        let at = |base: u64| {
            facts
                .devices
                .iter()
                .find(|d| d.regs.iter().any(|&(b, _)| b == base))
        };
        assert!(
            at(0x0a00_0000).is_some() && at(0x0a00_3e00).is_some(),
            "virtio-mmio: {:x?}",
            facts.devices
        );
        assert!(
            at(0x0a00_0000).unwrap().bus_master.is_some(),
            "virtio does DMA"
        );
        let gpio = at(0x0903_0000).expect("pl061");
        assert_eq!(
            (gpio.path.as_str(), gpio.irqs.as_slice()),
            ("/pl061@9030000", &[39][..])
        );
        assert_eq!(gpio.bus_master, None);
        assert!(at(0x40_1000_0000).is_some(), "pcie ecam");
        assert!(
            at(0x0900_0000).is_none(),
            "the console UART is the hypervisor's"
        );
        assert!(
            at(0x0800_0000).is_none() && at(0x080a_0000).is_none(),
            "the GIC is the hypervisor's"
        );
        assert!(at(0x4000_0000).is_none(), "RAM is not a device");
        assert!(
            facts.kept_irqs.iter().any(|(i, _)| *i == 33),
            "{:?}",
            facts.kept_irqs
        );
        assert!(host_from_dtb(b"not a dtb").is_err());
        // The default board is the same tree, CPUs and RAM left to the command line.
        let dir = scratch("board");
        let config = dir.join("c.toml");
        write(&config, DEMO.as_bytes());
        let parsed = SystemConfig::parse(DEMO, "c.toml").unwrap();
        let board = host_facts(&args(Command::Check, &config, &[]), &parsed).unwrap();
        assert_eq!(board.devices, facts.devices);
        assert_eq!((board.cpus, board.ram_bytes), (1, u64::MAX));
    }

    #[test]
    fn sizes_on_the_command_line() {
        assert_eq!(parse_size("2G"), Some(2 << 30));
        assert_eq!(parse_size("512m"), Some(512 << 20));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("1MiB"), Some(1 << 20));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("2X"), None);
    }

    fn uboot(args: &[&str]) -> Result<(PathBuf, UBootScript, bool), String> {
        match parse_args(&strings(args))?.command {
            Command::UBoot {
                output,
                script,
                text,
            } => Ok((output, script, text)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn uboot_command_line() {
        let (output, script, text) =
            uboot(&["uboot", "boards/qemu-virt/two-vm.toml", "-o", "boot.scr"]).unwrap();
        assert_eq!(output, PathBuf::from("boot.scr"));
        assert!(!text);
        assert_eq!(
            script,
            UBootScript {
                hypervisor: "ferrovisor.bin".into(),
                bundle: "two-vm.cpio".into(),
                device: None,
                fdt: Fdt::Address("${fdt_addr}".into()),
            }
        );
        let (_, script, text) = uboot(&[
            "uboot",
            "c.toml",
            "-o",
            "boot.txt",
            "--text",
            "--bundle",
            "boot/system.cpio",
            "--hypervisor",
            "fv.bin",
            "--device",
            "mmc 0:1",
            "--fdt-file",
            "board.dtb",
            "-L",
            "build",
        ])
        .unwrap();
        assert!(text);
        assert_eq!(
            script,
            UBootScript {
                hypervisor: "fv.bin".into(),
                bundle: "boot/system.cpio".into(),
                device: Some("mmc 0:1".into()),
                fdt: Fdt::File("board.dtb".into()),
            }
        );
        for fdt in ["0x48000000", "${fdtcontroladdr}"] {
            let (_, script, _) = uboot(&["uboot", "c.toml", "-o", "x", "--fdt", fdt]).unwrap();
            assert_eq!(script.fdt, Fdt::Address(fdt.into()));
        }
        for bad in [
            &["uboot", "c.toml"][..],
            &["uboot", "c.toml", "-o", "x", "--bundle", "a b.cpio"],
            &["uboot", "c.toml", "-o", "x", "--bundle", "x;reset"],
            &["uboot", "c.toml", "-o", "x", "--hypervisor", "${evil}"],
            &["uboot", "c.toml", "-o", "x", "--bundle", ""],
            &["uboot", "c.toml", "-o", "x", "--device", "mmc"],
            &["uboot", "c.toml", "-o", "x", "--device", "mmc x:1"],
            &["uboot", "c.toml", "-o", "x", "--device", "MMC 0:1"],
            &["uboot", "c.toml", "-o", "x", "--device", "mmc 0:1;reset"],
            &["uboot", "c.toml", "-o", "x", "--fdt", "fdt_addr"],
            &["uboot", "c.toml", "-o", "x", "--fdt", "${a b}"],
            &["uboot", "c.toml", "-o", "x", "--fdt-file", "a#b"],
            // The U-Boot options belong to `uboot` only.
            &["check", "c.toml", "--bundle", "x.cpio"],
            &["pack", "c.toml", "-o", "x", "--text"],
            &["check", "c.toml", "--device", "mmc 0:1"],
        ] {
            assert!(parse_args(&strings(bad)).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            uboot(&["uboot", "c.toml", "-o", "x", "--device", "usb 0"])
                .unwrap()
                .1
                .device
                .as_deref(),
            Some("usb 0")
        );
    }

    /// The script's non-comment lines, trimmed.
    fn commands(script: &str) -> Vec<&str> {
        script
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect()
    }

    #[test]
    fn uboot_script_loads_from_where_distro_boot_found_it() {
        let script = UBootScript {
            hypervisor: "ferrovisor.bin".into(),
            bundle: "demo.cpio".into(),
            device: None,
            fdt: Fdt::Address("${fdt_addr}".into()),
        };
        let text = script.text("boards/qemu-virt/demo.toml", "demo (1 vCPU, 128 MiB)");
        assert!(text.starts_with(
            "# Ferrovisor boot script for boards/qemu-virt/demo.toml, written by `fvconfig uboot`"
        ));
        assert!(text.contains("#   VMs: demo (1 vCPU, 128 MiB)\n"), "{text}");
        let dev = "${devtype} ${devnum}:${distro_bootpart}";
        assert_eq!(
            commands(&text),
            [
                "if test -z \"${devtype}\"; then setenv devtype virtio; setenv devnum 0; \
                 setenv distro_bootpart 1; fi",
                &format!("echo \"Ferrovisor: loading ferrovisor.bin and demo.cpio from {dev}\""),
                &format!("if load {dev} ${{kernel_addr_r}} ${{prefix}}ferrovisor.bin; then"),
                &format!("if load {dev} ${{ramdisk_addr_r}} ${{prefix}}demo.cpio; then"),
                "booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdt_addr}",
                "fi",
                "fi",
                "echo \"Ferrovisor: not started (see the messages above)\"",
            ]
        );
    }

    #[test]
    fn uboot_script_with_a_fixed_device_and_a_device_tree_file() {
        let script = UBootScript {
            hypervisor: "fv.bin".into(),
            bundle: "sys.cpio".into(),
            device: Some("mmc 1:2".into()),
            fdt: Fdt::File("board.dtb".into()),
        };
        let text = script.text("sys.toml", "a (1 vCPU, 64 MiB)");
        assert!(!text.contains("${devtype}") && !text.contains("${prefix}"));
        assert_eq!(
            commands(&text),
            [
                "echo \"Ferrovisor: loading fv.bin and sys.cpio from mmc 1:2\"",
                "if load mmc 1:2 ${fdt_addr_r} board.dtb; then",
                "if load mmc 1:2 ${kernel_addr_r} fv.bin; then",
                // The bundle last: booti's ramdisk size is ${filesize}.
                "if load mmc 1:2 ${ramdisk_addr_r} sys.cpio; then",
                "booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdt_addr_r}",
                "fi",
                "fi",
                "fi",
                "echo \"Ferrovisor: not started (see the messages above)\"",
            ]
        );
        // Indented by depth, so the nesting reads.
        assert!(text.contains("\n      booti "), "{text}");
    }

    #[test]
    fn crc32_is_zlibs() {
        // The CRC-32 check value (the CRC of "123456789"), and the empty input.
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
        assert_eq!(crc32(b"a"), 0xE8B7_BE43);
    }

    #[test]
    fn script_image_layout() {
        let image = script_image(b"echo hi\n", "ferrovisor demo", 1_700_000_000);
        assert_eq!(image.len(), 64 + 8 + 8);
        let be = |at: usize| u32::from_be_bytes(image[at..at + 4].try_into().unwrap());
        assert_eq!(be(0), IH_MAGIC);
        assert_eq!(be(8), 1_700_000_000);
        assert_eq!(be(12), 16, "data: length table (8) + script (8)");
        assert_eq!((be(16), be(20)), (0, 0), "load, entry");
        assert_eq!(be(24), crc32(&image[64..]));
        assert_eq!(&image[28..32], &[5, 22, 6, 0], "linux, arm64, script, none");
        assert_eq!(&image[32..47], b"ferrovisor demo");
        assert!(image[47..64].iter().all(|&b| b == 0));
        let mut header = image[..64].to_vec();
        header[4..8].fill(0);
        assert_eq!(be(4), crc32(&header));
        assert_eq!(
            (be(64), be(68)),
            (8, 0),
            "one file of 8 bytes, then the end"
        );
        assert_eq!(&image[72..], b"echo hi\n");
        // A name longer than 32 bytes is cut, as mkimage's strncpy does.
        let long = script_image(b"x", &"n".repeat(40), 0);
        assert_eq!(&long[32..64], "n".repeat(32).as_bytes());
    }

    /// fvconfig's script image is byte for byte what `mkimage -A arm64 -O linux -T
    /// script -C none -n NAME -d SCRIPT` writes (with its time stamp fixed by
    /// SOURCE_DATE_EPOCH), so U-Boot's `source` takes it as it takes mkimage's.
    #[test]
    fn script_image_equals_mkimage_output() {
        let dir = scratch("mkimage");
        let script = UBootScript {
            hypervisor: "ferrovisor.bin".into(),
            bundle: "demo.cpio".into(),
            device: None,
            fdt: Fdt::Address("${fdt_addr}".into()),
        }
        .text("demo.toml", "demo (1 vCPU, 128 MiB)");
        // Lengths that are no multiple of 4 too: mkimage pads nothing after the last
        // (only) file. (It refuses an empty script.)
        for (i, text) in [script.as_str(), "echo 1\n", "ab", "x"].iter().enumerate() {
            let txt = dir.join(format!("boot{i}.txt"));
            let scr = dir.join(format!("boot{i}.scr"));
            write(&txt, text.as_bytes());
            let made = std::process::Command::new("mkimage")
                .args(["-A", "arm64", "-O", "linux", "-T", "script", "-C", "none"])
                .args(["-n", "ferrovisor demo", "-d"])
                .arg(&txt)
                .arg(&scr)
                .env("SOURCE_DATE_EPOCH", "1700000000")
                .output()
                .expect("mkimage (Debian package u-boot-tools, installed by `make setup`) is needed for this test");
            assert!(made.status.success(), "{made:?}");
            assert_eq!(
                script_image(text.as_bytes(), "ferrovisor demo", 1_700_000_000),
                std::fs::read(&scr).unwrap(),
                "script {i}: {text:?}"
            );
        }
    }

    #[test]
    fn uboot_checks_the_config_then_writes_the_script() {
        let dir = scratch("uboot");
        let config = dir.join("demo.toml");
        write(&config, DEMO.as_bytes());
        let out = dir.join("boot.scr");
        let command = |text: bool| Command::UBoot {
            output: out.clone(),
            script: UBootScript {
                hypervisor: "ferrovisor.bin".into(),
                bundle: "demo.cpio".into(),
                device: None,
                fdt: Fdt::Address("${fdt_addr}".into()),
            },
            text,
        };
        // The config is checked first: its kernel is missing, nothing is written.
        let e = run(&args(command(false), &config, &[])).unwrap_err();
        assert!(
            e.contains("vm.demo.kernel: cannot read `guests/demo.bin`"),
            "{e}"
        );
        assert!(!out.exists());
        write(&dir.join("guests/demo.bin"), &arm64_image(4096, 8192));
        let summary = run(&args(command(false), &config, &[])).unwrap();
        assert!(
            summary.ends_with(
                "U-Boot script image, loads ferrovisor.bin and demo.cpio: demo (1 vCPU, 128 MiB)"
            ),
            "{summary}"
        );
        let image = std::fs::read(&out).unwrap();
        assert_eq!(&image[0..4], &IH_MAGIC.to_be_bytes());
        assert_eq!(&image[32..47], b"ferrovisor demo");
        let text = std::str::from_utf8(&image[72..]).unwrap();
        assert!(text.contains(&format!("script for {}", config.display())));
        assert!(text.contains("booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdt_addr}"));
        // --text: the same script, plain.
        run(&args(command(true), &config, &[])).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), text);
    }
}
