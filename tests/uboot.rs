//! The U-Boot boot path under QEMU, end to end: Debian's `u-boot-qemu` build for
//! qemu_arm64 runs as the firmware (`-bios`) at EL2, finds `boot.scr` on a virtio disk
//! with distro boot, and the script (`fvconfig uboot`) loads the hypervisor and the
//! demo system's boot bundle and starts the hypervisor with `booti`.
//!
//! The disk is made by `boards/uboot/build.sh` (the `make uboot-image` recipe)
//! from what `make test` builds first: `build/ferrovisor.bin`, `build/demo.cpio` and
//! `target/release/fvconfig` (`FVCONFIG` or `CARGO_TARGET_DIR` point elsewhere). It needs
//! mtools (installed by `.ci/setup.sh`). Anything missing fails the test with a message.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{BOOT_TIMEOUT, artifact, build_dir, machine_args, run_qemu};

/// Debian's U-Boot for QEMU's arm64 virt board; `FERROVISOR_UBOOT` names another.
const UBOOT: &str = "/usr/lib/u-boot/qemu_arm64/u-boot.bin";

/// Where Debian's qemu_arm64 U-Boot loads a kernel (its environment's `kernel_addr_r`).
const KERNEL_ADDR_R: u64 = 0x4040_0000;

/// `make run` boots with four CPUs; the demo VM uses one of them.
const HOST_CPUS: u32 = 4;

/// The demo guest's banner and number of checks (tests/guests/demo).
const DEMO_BANNER: &str = "Ferrovisor demo guest: hello from EL1";
const DEMO_CHECKS: u32 = 2;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The fvconfig host tool: `$FVCONFIG`, else `<target dir>/release/fvconfig` as
/// `make fvconfig` builds it.
fn fvconfig() -> PathBuf {
    let path = std::env::var_os("FVCONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| crate_dir().join("target"))
                .join("release/fvconfig")
        });
    assert!(
        path.is_file(),
        "missing {}: run `make test` (it builds fvconfig with `make fvconfig`), or set FVCONFIG",
        path.display()
    );
    path
}

/// A fresh, empty directory for one test's disk.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrovisor-uboot-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Builds `out/boot.scr` and the disk `out/demo.img` for `boards/qemu-virt/demo.toml`.
fn demo_disk(out: &Path) -> PathBuf {
    // Checked here too, so a missing artifact names the file and `make test`.
    artifact("ferrovisor.bin");
    artifact("demo.cpio");
    let result = Command::new("bash")
        .arg(crate_dir().join("boards/uboot/build.sh"))
        .arg("boards/qemu-virt/demo.toml")
        .arg(build_dir())
        .arg(out)
        .env("FVCONFIG", fvconfig())
        .current_dir(crate_dir())
        .output()
        .expect("run bash boards/uboot/build.sh");
    assert!(
        result.status.success(),
        "building the U-Boot disk failed (mtools is installed by `make setup`)\n{}{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    let disk = out.join("demo.img");
    assert!(disk.is_file(), "build.sh made no {}", disk.display());
    disk
}

fn uboot() -> String {
    let path = std::env::var("FERROVISOR_UBOOT").unwrap_or_else(|_| UBOOT.into());
    assert!(
        Path::new(&path).is_file(),
        "missing {path}: install Debian's u-boot-qemu (`make setup` does), or set FERROVISOR_UBOOT"
    );
    path
}

fn boot_from_uboot(cpu: &str) {
    let out = scratch(cpu);
    let disk = demo_disk(&out);
    // EL2 for U-Boot (virtualization=on) and no EL3 (secure=off): U-Boot stays at EL2
    // and booti enters the hypervisor there; QEMU answers PSCI.
    let mut args = machine_args(
        "virt,virtualization=on,secure=off,gic-version=3",
        cpu,
        HOST_CPUS,
    );
    args.extend([
        "-bios".into(),
        uboot(),
        "-drive".into(),
        format!("if=none,file={},format=raw,id=d0", disk.display()),
        "-device".into(),
        "virtio-blk-device,drive=d0".into(),
    ]);
    let run = run_qemu(&args, BOOT_TIMEOUT);

    // U-Boot's distro boot found our script on the disk and ran it.
    for expected in [
        "Found U-Boot script /boot.scr",
        "Ferrovisor: loading ferrovisor.bin and demo.cpio from virtio 0:1",
        "Starting kernel ...",
    ] {
        assert!(
            run.output.lines().any(|l| l.contains(expected)),
            "no `{expected}` from U-Boot\n{}",
            run.report()
        );
    }
    // The Image header says its base may be anywhere (flags bit 3): booti runs it
    // where the script loaded it, `kernel_addr_r` (2 MiB above a 2 MiB-aligned
    // base), without moving it, and the hypervisor relocates itself there.
    assert!(
        !run.output.contains("Moving Image"),
        "booti moved the Image: its header does not say `anywhere`\n{}",
        run.report()
    );
    assert!(
        run.output
            .lines()
            .any(|l| l.contains(&format!("image at {KERNEL_ADDR_R:#x}.."))
                && l.contains("relocated itself")),
        "the hypervisor does not say it runs at kernel_addr_r {KERNEL_ADDR_R:#x}\n{}",
        run.report()
    );
    assert!(
        !run.output.contains("Ferrovisor: not started"),
        "the boot script could not start the hypervisor\n{}",
        run.report()
    );
    // The hypervisor started at EL2 (it stops with an error when entered at EL1) and
    // found the bundle booti passed as the initrd.
    assert!(
        run.output
            .lines()
            .any(|l| l.contains("] Ferrovisor ") && l.contains(" at EL2")),
        "no `Ferrovisor ... at EL2` boot line\n{}",
        run.report()
    );
    assert!(
        run.has_line(DEMO_BANNER),
        "no banner `{DEMO_BANNER}`\n{}",
        run.report()
    );
    run.assert_all_passed(DEMO_CHECKS);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn demo_system_boots_from_uboot_on_cpu_max() {
    boot_from_uboot("max");
}

#[test]
fn demo_system_boots_from_uboot_on_cortex_a57() {
    boot_from_uboot("cortex-a57");
}

/// The script on the disk is the one `fvconfig uboot` writes for the demo config: a
/// U-Boot script image (legacy header magic, type script, arm64) holding the loads and
/// the booti command, and the disk has an MBR whose partition 1 is a bootable FAT.
#[test]
fn disk_holds_the_generated_script_in_a_fat_partition() {
    let out = scratch("layout");
    let disk = demo_disk(&out);
    let scr = std::fs::read(out.join("boot.scr")).unwrap();
    assert_eq!(
        &scr[0..4],
        &0x2705_1956u32.to_be_bytes(),
        "legacy image magic"
    );
    assert_eq!((scr[29], scr[30]), (22, 6), "arm64, script");
    let text = String::from_utf8_lossy(&scr[72..]);
    assert!(
        text.contains("booti ${kernel_addr_r} ${ramdisk_addr_r}:${filesize} ${fdt_addr}"),
        "{text}"
    );

    let image = std::fs::read(&disk).unwrap();
    assert_eq!(&image[510..512], &[0x55, 0xaa], "MBR signature");
    let entry = &image[446..462];
    assert_eq!(entry[0], 0x80, "partition 1 is bootable");
    assert!(
        [0x01, 0x0e, 0x0c].contains(&entry[4]),
        "FAT type {:#x}",
        entry[4]
    );
    let first = u32::from_le_bytes(entry[8..12].try_into().unwrap()) as usize;
    assert_eq!(first, 2048);
    let boot_sector = &image[first * 512..first * 512 + 512];
    assert_eq!(&boot_sector[510..512], &[0x55, 0xaa], "FAT boot sector");
    assert_eq!(&boot_sector[0x36..0x39], b"FAT");
    // The script file sits in the partition as written.
    assert!(
        image.windows(scr.len()).any(|w| w == scr.as_slice()),
        "boot.scr's bytes are not on the disk"
    );
    let _ = std::fs::remove_dir_all(&out);
}
