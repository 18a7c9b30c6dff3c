//! fvconfig: check a Ferrovisor system config and pack its boot bundle (a host tool).
//!
//! ```text
//! fvconfig check CONFIG [-L DIR]... [HOST]
//! fvconfig pack  CONFIG -o BUNDLE.cpio [-L DIR]... [HOST]
//!
//! HOST:  --board qemu-virt   the devices of QEMU's virt board (the default)
//!        --dtb FILE          CPUs, RAM and devices read from a device tree blob
//!        --cpus N            number of physical CPUs (default: from --dtb, else enough)
//!        --ram SIZE          bytes of RAM, e.g. 2G (default: from --dtb, else enough)
//! ```
//!
//! Both commands run the hypervisor's own config parser and checks
//! (`ferrovisor::config`), then read every image the config names and plan its load as
//! the hypervisor will. A path in the config is looked for relative to the config file's
//! directory first, then in each `-L` directory in order (like a linker search path).
//! `pack` then writes the boot bundle: a cpio newc archive whose first member is the
//! config as `ferrovisor.toml`, followed by each file under the path the config writes.
//!
//! Errors print as `error: FILE:LINE:COL: FIELD: REASON` and the exit status is 1; a
//! usage error exits with 2.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use ferrovisor::config::bundle::{CONFIG_NAME, write_bundle};
use ferrovisor::config::{HostFacts, SystemConfig};

const USAGE: &str = "usage: fvconfig check CONFIG [-L DIR]... [--board qemu-virt | --dtb FILE] [--cpus N] [--ram SIZE]
       fvconfig pack CONFIG -o BUNDLE [-L DIR]... [--board qemu-virt | --dtb FILE] [--cpus N] [--ram SIZE]";

/// The devices of QEMU's virt board (hw/arm/virt.c memory map) a guest may be given: all
/// but the GIC and UART0, which the hypervisor keeps.
const QEMU_VIRT_DEVICES: &[(&str, u64, u64)] = &[
    ("flash", 0x0000_0000, 0x0800_0000),
    ("pl031 rtc", 0x0901_0000, 0x1000),
    ("fw-cfg", 0x0902_0000, 0x18),
    ("pl061 gpio", 0x0903_0000, 0x1000),
    ("uart1", 0x0904_0000, 0x1000),
    ("smmuv3", 0x0905_0000, 0x2_0000),
    ("virtio-mmio x32", 0x0a00_0000, 32 * 0x200),
    ("platform bus", 0x0c00_0000, 0x0200_0000),
    ("pcie mmio", 0x1000_0000, 0x2eff_0000),
    ("pcie pio", 0x3eff_0000, 0x1_0000),
    ("pcie ecam", 0x3f00_0000, 0x0100_0000),
    ("pcie ecam (high)", 0x40_1000_0000, 0x1000_0000),
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Command {
    Check,
    Pack { output: PathBuf },
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
            s if s.starts_with("-L") && s.len() > 2 => search.push(PathBuf::from(&s[2..])),
            s if s.starts_with('-') => return Err(format!("unknown option `{s}`")),
            s if config.is_none() => config = Some(PathBuf::from(s)),
            s => return Err(format!("unexpected argument `{s}`")),
        }
    }
    let config = config.ok_or("no CONFIG file given")?;
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
        other => return Err(format!("unknown command `{other}`")),
    };
    Ok(Args {
        command,
        config,
        search,
        board,
        cpus,
        ram,
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

/// Big-endian cells from a property value.
fn cells(bytes: &[u8], count: usize, at: &mut usize) -> Option<u64> {
    let mut value: u64 = 0;
    for _ in 0..count {
        let cell = bytes.get(*at..*at + 4)?;
        value = (value << 32) | u64::from(u32::from_be_bytes(cell.try_into().ok()?));
        *at += 4;
    }
    Some(value)
}

/// CPUs, RAM and the devices a guest may be given, from a device tree: the `reg` and the
/// `ranges` windows of every top-level node except memory, CPUs, interrupt controllers
/// and the console UART (`/chosen/stdout-path`), which the hypervisor keeps.
fn host_from_dtb(blob: &[u8]) -> Result<HostFacts, String> {
    let fdt = fdt::Fdt::new(blob).map_err(|e| format!("not a device tree blob: {e:?}"))?;
    let root = fdt.find_node("/").ok_or("device tree has no root node")?;
    let root_cells = root.cell_sizes();
    let stdout = fdt.chosen().stdout().map(|n| n.name);
    let device_type = |node: &fdt::node::FdtNode| {
        node.property("device_type")
            .and_then(|p| p.as_str())
            .map(str::to_owned)
    };
    let mut facts = HostFacts::default();
    if let Some(cpus) = fdt.find_node("/cpus") {
        facts.cpus = cpus
            .children()
            .filter(|c| device_type(c).as_deref() == Some("cpu"))
            .count();
    }
    for node in root.children() {
        let kind = device_type(&node);
        if kind.as_deref() == Some("memory") {
            for region in node.reg().into_iter().flatten() {
                facts.ram_bytes += region.size.unwrap_or(0) as u64;
            }
            continue;
        }
        if node.name == "cpus"
            || node.property("interrupt-controller").is_some()
            || Some(node.name) == stdout
        {
            continue;
        }
        for region in node.reg().into_iter().flatten() {
            facts.devices.push((
                region.starting_address as u64,
                region.size.unwrap_or(0) as u64,
            ));
        }
        if let Some(ranges) = node.property("ranges") {
            let own = node.cell_sizes();
            let entry = (own.address_cells + root_cells.address_cells + own.size_cells) * 4;
            let mut at = 0;
            while entry > 0 && at + entry <= ranges.value.len() {
                cells(ranges.value, own.address_cells, &mut at);
                let base = cells(ranges.value, root_cells.address_cells, &mut at);
                let size = cells(ranges.value, own.size_cells, &mut at);
                if let (Some(base), Some(size)) = (base, size) {
                    facts.devices.push((base, size));
                }
            }
        }
    }
    Ok(facts)
}

fn host_facts(args: &Args, config: &SystemConfig) -> Result<HostFacts, String> {
    let mut facts = match &args.board {
        Board::QemuVirt => HostFacts {
            cpus: 0,
            devices: QEMU_VIRT_DEVICES.iter().map(|&(_, b, s)| (b, s)).collect(),
            ram_bytes: 0,
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
        // Host facts: too few CPUs.
        write(
            &config,
            DEMO.replace("memory", "vcpus = 2\nmemory").as_bytes(),
        );
        write(&build.join("guests/demo.bin"), &arm64_image(4096, 8192));
        let mut a = args(Command::Check, &config, &[&build]);
        a.cpus = Some(1);
        let e = run(&a).unwrap_err();
        assert!(e.contains("vm.demo.vcpus: not enough physical CPUs"), "{e}");
        a.cpus = None;
        run(&a).unwrap();
    }

    #[test]
    fn passthrough_checked_against_the_virt_board() {
        let dir = scratch("passthrough");
        let config = dir.join("pt.toml");
        write(&dir.join("guests/demo.bin"), &arm64_image(4096, 8192));
        let with = |vm: &str, base: &str| {
            format!("{vm}[[vm.passthrough]]\nbase = {base}\nsize = 0x1000\nirqs = [48]\n")
        };
        write(&config, with(DEMO, "0x0a00_0000").as_bytes());
        run(&args(Command::Check, &config, &[])).unwrap();
        // 0x0b00_0000 is nothing on virt; UART0 is the hypervisor's own console (the VM
        // has no emulated PL011 there, so only the board check can refuse it).
        let quiet = format!("{DEMO}console = \"none\"\n");
        for (vm, base) in [(DEMO, "0x0b00_0000"), (quiet.as_str(), "0x0900_0000")] {
            write(&config, with(vm, base).as_bytes());
            let e = run(&args(Command::Check, &config, &[])).unwrap_err();
            assert!(
                e.contains("vm.demo.passthrough[0]: ") && e.contains("not a device of the board"),
                "{e}"
            );
        }
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
        let has = |base: u64| facts.devices.iter().any(|&(b, _)| b == base);
        assert!(
            has(0x0a00_0000) && has(0x0a00_3e00),
            "virtio-mmio: {:x?}",
            facts.devices
        );
        assert!(has(0x0903_0000), "pl061");
        assert!(has(0x40_1000_0000), "pcie ecam");
        assert!(has(0x1000_0000), "pcie mmio window from `ranges`");
        assert!(has(0x0c00_0000), "platform bus window from `ranges`");
        assert!(!has(0x0900_0000), "the console UART is the hypervisor's");
        assert!(
            !has(0x0800_0000) && !has(0x0808_0000),
            "the GIC is the hypervisor's"
        );
        assert!(!has(0x4000_0000), "RAM is not a device");
        assert!(host_from_dtb(b"not a dtb").is_err());
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
}
