//! Real boards: the host facts read from their own device trees, and the hypervisor
//! booted by QEMU's models of them.
//!
//! The device trees are Debian's Linux builds of the boards' (the kernel package
//! `make linux` fetches; `tests/linux/fetch.sh` puts them in `build/linux/dtbs`):
//! Raspberry Pi 4 Model B (DRAM at 0 with a hole below 1 GiB, a `/memreserve/`, the
//! mini UART as console, spin-table CPUs, no PSCI, GIC-400), ZynqMP ZCU102 (DRAM at 0
//! and at 32 GiB, Cadence UART, GIC-400) and i.MX 8M Plus EVK (a `no-map` reserved
//! region, i.MX UART, GICv3, Cortex-A53).
//!
//! QEMU's i.MX 8M Plus EVK starts the hypervisor at EL2 with a GICv3: the demo guest
//! runs there end to end. Its `raspi4b` and `xlnx-zcu102` models start it at EL2 too,
//! with a GIC-400 (GICv2): the demo guest runs on both (the console on the board's
//! own UART, the image relocated to 0x20_0000, RAM found at 0), and the vGICv2
//! guest with two vCPUs on the ZCU102 (PSCI; the Pi's model has none).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{Run, artifact, run_qemu_until};
use ferrovisor::mm::PhysRange;
use ferrovisor::platform::{
    BootRanges, Conduit, CpuMap, GicVersion, MemRange, PlacementError, Platform, UartCompatible,
};

const TIMEOUT: Duration = Duration::from_secs(120);
const STOP_LINE: &str = "Ferrovisor stopped";
/// What the hypervisor logs when it drives a GIC-400.
const GICV2_HOST: &str = "GICv2: GICD ";

fn dtb(board: &str) -> PathBuf {
    PathBuf::from(artifact(&format!("linux/dtbs/{board}.dtb")))
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrovisor-boards-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// A copy of `board`'s device tree with `fdtput` edits (each one fdtput's arguments
/// after the file), as a board's firmware edits it before handing it on.
fn edited(board: &str, name: &str, edits: &[&[&str]]) -> PathBuf {
    let path = scratch(&format!("{board}-{name}.dtb"));
    std::fs::copy(dtb(board), &path).unwrap();
    for args in edits {
        let status = Command::new("fdtput")
            .arg(&path)
            .args(*args)
            .status()
            .expect("fdtput (device-tree-compiler, installed by .ci/setup.sh)");
        assert!(status.success(), "fdtput {args:?}");
    }
    path
}

fn parse(path: &Path) -> Platform {
    let blob = std::fs::read(path).unwrap();
    Platform::parse(&blob).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn r(base: u64, size: u64) -> MemRange {
    MemRange::new(base, size)
}

/// The Raspberry Pi 4's tree as its firmware hands it on (4 GiB model): the
/// firmware fills in /memory — below 1 GiB minus the GPU's share, and from 1 GiB up
/// to the peripherals.
fn raspi4b_from_firmware(name: &str, extra: &[&[&str]]) -> PathBuf {
    let mut edits: Vec<&[&str]> = vec![&[
        "-t",
        "x",
        "/memory@0",
        "reg",
        "0",
        "0",
        "3b400000",
        "0",
        "40000000",
        "bc000000",
    ]];
    edits.extend_from_slice(extra);
    edited("raspi4b", name, &edits)
}

#[test]
fn raspi4b_ram_from_zero_with_a_hole_and_the_firmware_reservation() {
    let p = parse(&raspi4b_from_firmware("memory", &[]));
    assert_eq!(p.model.as_deref(), Some("Raspberry Pi 4 Model B"));
    assert_eq!(
        p.memory,
        vec![r(0, 0x3b40_0000), r(0x4000_0000, 0xbc00_0000)]
    );
    // The spin table's page (/memreserve/); the disabled nvram@0 and the
    // size-only linux,cma pool are not reservations.
    assert_eq!(p.reserved, vec![r(0, 0x1000)]);
    assert!(p.no_map.is_empty());
    assert_eq!(
        p.mapped_ram(),
        vec![
            PhysRange::new(0, 0x3b40_0000),
            PhysRange::new(0x4000_0000, 0xfc00_0000)
        ]
    );
    // The image where booti runs it on a Pi (0x20_0000), a device tree and a bundle
    // where U-Boot's rpi_arm64 environment puts them.
    let boot = BootRanges {
        image: r(0x20_0000, 0x99_0000),
        dtb: r(0x260_0000, 0x8000),
        bundle: Some(r(0x270_0000, 0x10_0000)),
    };
    assert_eq!(p.check_boot_ranges(&boot), Ok(()));
    let free = p.free_ram(&boot);
    assert_eq!(
        free,
        vec![
            PhysRange::new(0x1000, 0x20_0000),
            PhysRange::new(0xb9_0000, 0x260_0000),
            PhysRange::new(0x260_8000, 0x270_0000),
            PhysRange::new(0x280_0000, 0x3b40_0000),
            PhysRange::new(0x4000_0000, 0xfc00_0000),
        ]
    );
    // Nothing in the hole, nothing at page 0.
    assert!(
        free.iter()
            .all(|f| !f.overlaps(&PhysRange::new(0x3b40_0000, 0x4000_0000)))
    );
    assert!(free.iter().all(|f| f.start >= 0x1000));
    // An image loaded over the spin table's page is refused, one in the hole too.
    let over = BootRanges {
        image: r(0, 0x99_0000),
        ..boot
    };
    assert_eq!(
        p.check_boot_ranges(&over),
        Err(PlacementError::ImageOverlapsReserved {
            image: r(0, 0x99_0000),
            reserved: r(0, 0x1000)
        })
    );
    let in_hole = BootRanges {
        image: r(0x3b40_0000, 0x99_0000),
        ..boot
    };
    assert!(matches!(
        p.check_boot_ranges(&in_hole),
        Err(PlacementError::NotInRam {
            what: "the hypervisor image",
            ..
        })
    ));
}

#[test]
fn raspi4b_console_follows_stdout_path() {
    // serial1: the mini UART (16550-like registers 4 bytes apart).
    let p = parse(&raspi4b_from_firmware("console", &[]));
    let u = p.uart.expect("uart");
    assert_eq!(u.path, "/soc/serial@7e215040");
    assert_eq!((u.base, u.irq), (0xfe21_5040, Some(32 + 93)));
    assert_eq!(
        u.compatible,
        UartCompatible::Ns16550 {
            reg_shift: 2,
            io_width: 4
        }
    );
    // stdout-path serial0: the PL011.
    let p = parse(&raspi4b_from_firmware(
        "pl011",
        &[&["/chosen", "stdout-path", "serial0:115200n8"]],
    ));
    let u = p.uart.expect("uart");
    assert_eq!(
        (u.path.as_str(), u.base),
        ("/soc/serial@7e201000", 0xfe20_1000)
    );
    assert_eq!(u.compatible, UartCompatible::Pl011);
    // The lenient lookup the boot does first finds the same.
    let blob = std::fs::read(raspi4b_from_firmware("console2", &[])).unwrap();
    assert_eq!(
        ferrovisor::platform::find_console(&blob).map(|u| u.base),
        Some(0xfe21_5040)
    );
}

#[test]
fn raspi4b_cpus_gic_and_no_psci() {
    let p = parse(&raspi4b_from_firmware("cpus", &[]));
    assert_eq!(p.cpus.len(), 4);
    assert!(
        p.cpus
            .iter()
            .all(|c| c.enable_method.as_deref() == Some("spin-table"))
    );
    assert_eq!(p.psci, None);
    let gic = p.gic.expect("gic");
    assert_eq!(gic.version, GicVersion::V2);
    assert_eq!(gic.gicd, r(0xff84_1000, 0x1000));
    assert_eq!(gic.gich, Some(r(0xff84_4000, 0x2000)));
    // Booted on the third core: it is logical 0, config numbers stay tree order.
    let m = CpuMap::new(&p.cpus, 0x8000_0002, 8).unwrap();
    assert_eq!(m.node(0), Some(2));
    assert_eq!(m.logical_of(2), Some(0));
    assert_eq!(m.logical_of(0), Some(1));
}

#[test]
fn raspi4b_tree_without_the_firmware_memory_is_refused() {
    // Linux's tree says `reg = <0 0 0>` for /memory: the firmware fills it in.
    let blob = std::fs::read(dtb("raspi4b")).unwrap();
    let e = Platform::parse(&blob).unwrap_err();
    assert_eq!(
        e.to_string(),
        "device tree has no /memory node with a usable reg"
    );
}

#[test]
fn zcu102_two_banks_cadence_uart_psci_over_smc() {
    let p = parse(&dtb("zcu102"));
    assert_eq!(
        p.memory,
        vec![r(0, 0x8000_0000), r(0x8_0000_0000, 0x8000_0000)]
    );
    assert!(p.reserved.is_empty());
    let u = p.uart.clone().expect("uart");
    assert_eq!(u.path, "/axi/serial@ff000000");
    assert_eq!(
        (u.base, u.size, u.irq),
        (0xff00_0000, 0x1000, Some(32 + 21))
    );
    assert_eq!(u.compatible, UartCompatible::Cadence);
    let psci = p.psci.clone().expect("psci");
    assert_eq!(psci.method, Conduit::Smc);
    assert!(psci.is_v0_2_or_later());
    let gic = p.gic.clone().expect("gic");
    assert_eq!(gic.version, GicVersion::V2);
    assert_eq!(gic.gicv, Some(r(0xf906_0000, 0x2_0000)));
    assert_eq!(p.cpus.len(), 4);
    let boot = BootRanges {
        image: r(0x20_0000, 0x99_0000),
        dtb: r(0x10_0000, 0x9000),
        bundle: None,
    };
    assert_eq!(p.check_boot_ranges(&boot), Ok(()));
    let free = p.free_ram(&boot);
    assert_eq!(free.first(), Some(&PhysRange::new(0x1000, 0x10_0000)));
    assert_eq!(
        free.last(),
        Some(&PhysRange::new(0x8_0000_0000, 0x8_8000_0000))
    );
}

#[test]
fn imx8mp_evk_no_map_region_is_neither_mapped_nor_handed_out() {
    let p = parse(&dtb("imx8mp-evk"));
    assert_eq!(
        p.memory,
        vec![r(0x4000_0000, 0xc000_0000), r(0x1_0000_0000, 0xc000_0000)]
    );
    let dsp = r(0x9240_0000, 0x200_0000);
    assert_eq!(p.reserved, vec![dsp]);
    assert_eq!(p.no_map, vec![dsp]);
    let dsp_pages = PhysRange::new(dsp.base, dsp.end());
    assert!(p.mapped_ram().iter().all(|m| !m.overlaps(&dsp_pages)));
    assert_eq!(
        p.mapped_ram(),
        vec![
            PhysRange::new(0x4000_0000, 0x9240_0000),
            PhysRange::new(0x9440_0000, 0x1_c000_0000)
        ]
    );
    let boot = BootRanges {
        image: r(0x4040_0000, 0x99_0000),
        dtb: r(0x4300_0000, 0x9000),
        bundle: Some(r(0x4400_0000, 0x10_0000)),
    };
    assert_eq!(p.check_boot_ranges(&boot), Ok(()));
    assert!(p.free_ram(&boot).iter().all(|f| !f.overlaps(&dsp_pages)));
    // A bundle the loader put in the no-map region cannot be read: refused.
    let bad = BootRanges {
        bundle: Some(r(0x9300_0000, 0x1000)),
        ..boot
    };
    assert_eq!(
        p.check_boot_ranges(&bad),
        Err(PlacementError::NotInRam {
            what: "the boot bundle",
            range: r(0x9300_0000, 0x1000)
        })
    );
}

#[test]
fn imx8mp_evk_console_gic_psci() {
    let p = parse(&dtb("imx8mp-evk"));
    let u = p.uart.expect("uart");
    assert_eq!(u.path, "/soc@0/bus@30800000/serial@30890000");
    assert_eq!((u.base, u.irq), (0x3089_0000, Some(32 + 27)));
    assert_eq!(u.compatible, UartCompatible::Imx);
    assert_eq!(p.gic.expect("gic").version, GicVersion::V3);
    assert_eq!(p.psci.expect("psci").method, Conduit::Smc);
    assert!(
        p.cpus
            .iter()
            .all(|c| c.enable_method.as_deref() == Some("psci"))
    );
}

// ---- Under QEMU's board models ------------------------------------------------

/// Boots the hypervisor with the demo bundle on QEMU machine `machine` with the
/// board's device tree `dtb`; `serial` selects which of the board's UARTs is
/// QEMU's stdio (the others go nowhere).
fn boot_board(machine: &[&str], dtb: &Path, stdio_serial: usize) -> Run {
    boot_board_with(machine, dtb, stdio_serial, "demo.cpio", false)
}

/// As [`boot_board`], with the boot bundle `build/<bundle>`; with `at_summary`
/// the run ends at the guest's summary line (a board without PSCI cannot power
/// off: the machine stays on, idle).
fn boot_board_with(
    machine: &[&str],
    dtb: &Path,
    stdio_serial: usize,
    bundle: &str,
    at_summary: bool,
) -> Run {
    let mut args: Vec<String> = machine.iter().map(|s| s.to_string()).collect();
    args.extend(["-nographic", "-no-reboot", "-audio", "none"].map(String::from));
    for i in 0..=stdio_serial {
        args.push("-serial".into());
        args.push(
            if i == stdio_serial {
                "mon:stdio"
            } else {
                "null"
            }
            .into(),
        );
    }
    args.extend([
        "-dtb".into(),
        dtb.display().to_string(),
        "-kernel".into(),
        artifact("ferrovisor.bin"),
        "-initrd".into(),
        artifact(bundle),
    ]);
    run_qemu_until(&args, TIMEOUT, |l| {
        l.contains(STOP_LINE)
            || (at_summary && l.contains(" passed, ") && l.trim_end().ends_with(" failed"))
    })
}

/// The demo guest's two checks passed (on a board that cannot power off).
fn assert_demo_passed(run: &Run) {
    assert!(run.failures().is_empty(), "{}", run.report());
    assert_eq!(run.summary(), Some((2, 0)), "{}", run.report());
    assert!(!run.output.contains("PANIC"), "{}", run.report());
}

fn assert_line(run: &Run, parts: &[&str]) {
    assert!(
        run.output
            .lines()
            .any(|l| parts.iter().all(|p| l.contains(p))),
        "no line with {parts:?}\n{}",
        run.report()
    );
}

/// The first board QEMU models that runs a guest end to end: GICv3, Cortex-A53,
/// i.MX UART, RAM at 0x4000_0000 with a no-map hole.
#[test]
fn imx8mp_evk_runs_the_demo_guest() {
    let run = boot_board(
        &["-M", "imx8mp-evk", "-smp", "4", "-m", "2G"],
        &dtb("imx8mp-evk"),
        1,
    );
    assert_line(&run, &["image at 0x40200000..", "relocated itself"]);
    assert_line(&run, &["uart: /soc@0/bus@30800000/serial@30890000", "Imx"]);
    assert_line(&run, &["reserved: [0x92400000..0x94400000) no-map"]);
    assert_line(&run, &["4 of 4 CPUs up"]);
    assert!(
        run.has_line("Ferrovisor demo guest: hello from EL1"),
        "{}",
        run.report()
    );
    run.assert_all_passed(2);
}

/// Debian's Linux with one vCPU reaches its userspace on the i.MX 8M Plus EVK
/// (boards/imx8mp-evk/linux.toml; with two vCPUs it does not yet, see its README).
#[test]
fn imx8mp_evk_runs_linux() {
    let image = std::fs::read(artifact("linux/Image")).unwrap();
    let initramfs = std::fs::read(artifact("linux/initramfs.cpio.gz")).unwrap();
    let config = "[[vm]]\nname = \"linux\"\nvcpus = 1\nmemory = \"512M\"\n\
                  kernel = \"Image\"\ninitrd = \"initramfs.cpio.gz\"\n\
                  bootargs = \"console=ttyAMA0\"\nconsole = \"pl011\"\n";
    let bundle = ferrovisor::config::bundle::write_bundle(&[
        ("ferrovisor.toml", config.as_bytes()),
        ("Image", &image),
        ("initramfs.cpio.gz", &initramfs),
    ]);
    let path = scratch("imx8mp-linux.cpio");
    std::fs::write(&path, bundle).unwrap();
    let mut args: Vec<String> = [
        "-M",
        "imx8mp-evk",
        "-smp",
        "2",
        "-m",
        "2G",
        "-nographic",
        "-no-reboot",
        "-serial",
        "null",
        "-serial",
        "mon:stdio",
    ]
    .map(String::from)
    .to_vec();
    args.extend([
        "-dtb".into(),
        dtb("imx8mp-evk").display().to_string(),
        "-kernel".into(),
        artifact("ferrovisor.bin"),
        "-initrd".into(),
        path.display().to_string(),
    ]);
    let run = run_qemu_until(&args, Duration::from_secs(600), |l| {
        l.contains("FERROVISOR-LINUX-USERSPACE-UP")
            || l.contains("Kernel panic")
            || l.contains(STOP_LINE)
    });
    assert!(
        run.has_line("FERROVISOR-LINUX-USERSPACE-UP"),
        "Linux did not reach its userspace\n{}",
        run.report()
    );
    let _ = std::fs::remove_file(path);
}

/// ZCU102: RAM at 0, the Cadence UART, the GIC-400 driven: the demo guest runs,
/// and the vGICv2 guest with two vCPUs (its GICC and GICV pages 64 KiB apart).
#[test]
fn zcu102_runs_the_demo_and_vgic2_guests_on_its_gic_400() {
    let run = boot_board(
        &["-M", "xlnx-zcu102,virtualization=on", "-m", "2G"],
        &dtb("zcu102"),
        0,
    );
    assert_line(&run, &["] Ferrovisor ", " at EL2"]);
    assert_line(&run, &["image at 0x200000..", "relocated itself"]);
    assert_line(&run, &["memory: [0x0..0x80000000)"]);
    assert_line(&run, &["uart: /axi/serial@ff000000", "Cadence"]);
    assert_line(&run, &[GICV2_HOST, "GICV 0xf9060000"]);
    run.assert_all_passed(2);
    let vgic2 = boot_board_with(
        &["-M", "xlnx-zcu102,virtualization=on", "-m", "2G"],
        &dtb("zcu102"),
        0,
        "vgic2.cpio",
        false,
    );
    vgic2.assert_all_passed(15);
}

/// Raspberry Pi 4: the console is the UART stdout-path names — the mini UART as
/// the board's tree says, or the PL011 when the firmware says serial0. No PSCI:
/// nothing is asked of a firmware that is not there. The demo guest runs on the
/// GIC-400.
#[test]
fn raspi4b_runs_the_demo_guest_on_the_uart_stdout_path_names() {
    let mini = boot_board_with(&["-M", "raspi4b"], &dtb("raspi4b"), 1, "demo.cpio", true);
    assert_line(&mini, &["image at 0x200000..", "relocated itself"]);
    assert_line(&mini, &["uart: /soc/serial@7e215040", "Ns16550"]);
    assert_line(&mini, &["psci: none found"]);
    assert_line(&mini, &["no PSCI firmware"]);
    assert_line(&mini, &[GICV2_HOST]);
    assert_demo_passed(&mini);

    let pl011_dtb = edited(
        "raspi4b",
        "serial0",
        &[&["/chosen", "stdout-path", "serial0:115200n8"]],
    );
    let pl011 = boot_board_with(&["-M", "raspi4b"], &pl011_dtb, 0, "demo.cpio", true);
    assert_line(&pl011, &["uart: /soc/serial@7e201000", "Pl011"]);
    assert_demo_passed(&pl011);
}
