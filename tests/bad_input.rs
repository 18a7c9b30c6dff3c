//! Bad input at boot gets a clear, one-line answer and a stop — never a fault:
//! a missing, malformed or memory-less device tree, an initrd (the boot bundle)
//! outside RAM, and a boot bundle whose kernel does not fit its VM.
//!
//! QEMU's `-kernel` always hands the hypervisor QEMU's own device tree (and
//! rewrites /memory in one given with `-dtb`), so the device-tree cases enter
//! the hypervisor the way a boot loader would: QEMU's generic loader places the
//! image where `-kernel` would, a chosen blob in RAM, and a three-instruction shim
//! that sets x0 and branches to the image.

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::{artifact, hypervisor_args, machine_args, run_qemu_until};

/// Where the image is loaded: where QEMU virt's `-kernel` puts it (RAM base +
/// text_offset); it relocates itself to any such address (tests/relocation.rs).
const LOAD_ADDRESS: u64 = 0x4020_0000;
/// Where the tests put the device tree they choose, and the shim.
const DTB_ADDRESS: u64 = 0x4f00_0000;
const SHIM_ADDRESS: u64 = 0x4f10_0000;
const STOP_LINE: &str = "Ferrovisor stopped";
const TIMEOUT: Duration = Duration::from_secs(60);

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrovisor-bad-input-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// `MOVZ Xd, #imm16, LSL #16` (Arm ARM, A64 instruction MOVZ, 64-bit variant, hw = 1).
fn movz_lsl16(rd: u32, imm16: u32) -> u32 {
    0xd2a0_0000 | (imm16 << 5) | rd
}

/// A shim that enters the hypervisor with x0 = `x0` (which must be a multiple
/// of 64 KiB, to fit one MOVZ).
fn shim(x0: u64) -> PathBuf {
    assert_eq!(x0 & 0xffff, 0);
    assert_eq!(LOAD_ADDRESS & 0xffff, 0);
    let words = [
        movz_lsl16(0, (x0 >> 16) as u32),
        movz_lsl16(1, (LOAD_ADDRESS >> 16) as u32),
        0xd61f_0020, // BR X1
    ];
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
    let path = scratch(&format!("shim-{x0:x}.bin"));
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Boots the hypervisor through the shim with x0 = `x0` and, if given, the blob
/// at DTB_ADDRESS. One CPU: the generic loader starts only CPU 0.
fn boot_with(x0: u64, dtb: Option<&PathBuf>) -> common::Run {
    let mut args = machine_args("virt,virtualization=on,gic-version=3", "max", 1);
    args.push("-device".into());
    args.push(format!(
        "loader,file={},addr={LOAD_ADDRESS:#x},force-raw=on",
        artifact("ferrovisor.bin")
    ));
    if let Some(dtb) = dtb {
        args.push("-device".into());
        args.push(format!(
            "loader,file={},addr={DTB_ADDRESS:#x},force-raw=on",
            dtb.display()
        ));
    }
    args.push("-device".into());
    args.push(format!(
        "loader,file={},addr={SHIM_ADDRESS:#x},cpu-num=0,force-raw=on",
        shim(x0).display()
    ));
    run_qemu_until(&args, TIMEOUT, |l| l.contains(STOP_LINE))
}

fn assert_stopped_with(run: &common::Run, words: &[&str]) {
    let error = run
        .output
        .lines()
        .find(|l| l.contains("ERROR") && !l.contains(STOP_LINE))
        .unwrap_or_else(|| panic!("no error line\n{}", run.report()));
    for w in words {
        assert!(
            error.contains(w),
            "error line lacks `{w}`: {error}\n{}",
            run.report()
        );
    }
    assert!(run.output.contains(STOP_LINE), "{}", run.report());
    assert!(!run.output.contains("PANIC"), "{}", run.report());
    assert!(
        !run.output.contains("VM '"),
        "no VM may start\n{}",
        run.report()
    );
}

/// QEMU's own device tree for the board, as a file.
fn virt_dtb() -> PathBuf {
    let path = scratch("virt.dtb");
    let status = Command::new(common::qemu_binary())
        .args(["-M"])
        .arg(format!(
            "virt,virtualization=on,gic-version=3,dumpdtb={}",
            path.display()
        ))
        .args(["-cpu", "max", "-m", "1G", "-nographic"])
        .status()
        .expect("run QEMU to dump its device tree");
    assert!(status.success());
    path
}

#[test]
fn device_tree_pointer_missing() {
    let run = boot_with(0, None);
    assert_stopped_with(&run, &["no device tree", "x0 = 0x0"]);
}

#[test]
fn device_tree_malformed() {
    let junk = scratch("junk.dtb");
    std::fs::write(&junk, vec![0x5au8; 4096]).unwrap();
    let run = boot_with(DTB_ADDRESS, Some(&junk));
    assert_stopped_with(&run, &["device tree at 0x4f000000", "magic"]);
}

#[test]
fn device_tree_without_memory_node() {
    let dtb = virt_dtb();
    let status = Command::new("fdtput")
        .args(["-r"])
        .arg(&dtb)
        .arg("/memory@40000000")
        .status()
        .expect("fdtput (device-tree-compiler, installed by .ci/setup.sh)");
    assert!(status.success());
    let run = boot_with(DTB_ADDRESS, Some(&dtb));
    assert_stopped_with(&run, &["device tree at 0x4f000000", "memory"]);
}

/// Issue 13, item 6: a /chosen initrd (where the boot bundle is read from) outside
/// RAM is a clear error, not a read of whatever is there: wholly outside (QEMU's PCIe
/// window) and straddling the end of RAM.
#[test]
fn initrd_outside_ram() {
    for (start, end) in [
        (&["0x10000000"][..], &["0x10001000"][..]),
        (&["0x0", "0x7ffff000"], &["0x0", "0x80001000"]),
    ] {
        let dtb = virt_dtb();
        for (property, cells) in [("linux,initrd-start", start), ("linux,initrd-end", end)] {
            let status = Command::new("fdtput")
                .args(["-t", "x"])
                .arg(&dtb)
                .args(["/chosen", property])
                .args(cells)
                .status()
                .expect("fdtput (device-tree-compiler, installed by .ci/setup.sh)");
            assert!(status.success());
        }
        let run = boot_with(DTB_ADDRESS, Some(&dtb));
        assert_stopped_with(
            &run,
            &[
                "device tree at 0x4f000000",
                "/chosen",
                "linux,initrd-start",
                "does not lie within one /memory range",
            ],
        );
    }
}

/// A config that raises an ID register field above the hardware: cortex-a57
/// has no SVE (ID_AA64PFR0_EL1.SVE = 0), and a VM cannot be given it.
#[test]
fn id_field_above_the_hardware() {
    let demo = std::fs::read(artifact("guests/demo.bin")).unwrap();
    let config = "[[vm]]\nname = \"sve\"\nmemory = \"64M\"\nkernel = \"demo.bin\"\n\
                  [vm.cpu.id]\n\"ID_AA64PFR0_EL1.SVE\" = 1\n";
    let bundle = ferrovisor::config::bundle::write_bundle(&[
        ("ferrovisor.toml", config.as_bytes()),
        ("demo.bin", &demo),
    ]);
    let path = scratch("sve.cpio");
    std::fs::write(&path, bundle).unwrap();
    let mut args = hypervisor_args("cortex-a57", 2, "demo.cpio");
    let initrd = args.iter().position(|a| a == "-initrd").unwrap() + 1;
    args[initrd] = path.display().to_string();
    let run = run_qemu_until(&args, TIMEOUT, |l| l.contains(STOP_LINE));
    let report = run.report();
    assert!(
        run.output.lines().any(|l| l.contains("ERROR")
            && l.contains("VM 'sve' not started")
            && l.contains("vm.sve.cpu.id.ID_AA64PFR0_EL1.SVE")),
        "{report}"
    );
    assert!(run.output.contains("no VM could be started"), "{report}");
    assert!(!run.output.contains("PANIC"), "{report}");
}

/// An arm64 Image header claiming more memory (image_size) than the VM has.
#[test]
fn kernel_larger_than_vm_memory() {
    let mut demo = std::fs::read(artifact("guests/demo.bin")).unwrap();
    // booting.rst: image_size is the little-endian u64 at offset 16.
    demo[16..24].copy_from_slice(&(256u64 << 20).to_le_bytes());
    let config = "[[vm]]\nname = \"big\"\nvcpus = 1\nmemory = \"64M\"\nkernel = \"big.bin\"\n";
    let bundle = ferrovisor::config::bundle::write_bundle(&[
        ("ferrovisor.toml", config.as_bytes()),
        ("big.bin", &demo),
    ]);
    let path = scratch("big.cpio");
    std::fs::write(&path, bundle).unwrap();
    let mut args = hypervisor_args("max", 2, "demo.cpio");
    let initrd = args.iter().position(|a| a == "-initrd").unwrap() + 1;
    args[initrd] = path.display().to_string();
    let run = run_qemu_until(&args, TIMEOUT, |l| l.contains(STOP_LINE));
    assert_stopped_with(&run, &["ferrovisor.toml", "vm.big", "big.bin"]);
}

/// Issue 13: a config nested thousands of levels deep (arrays in arrays) is a clean
/// error naming the file and line, checked before the TOML parser recurses on the
/// hypervisor's small EL2 stack — not a stack overflow.
#[test]
fn deeply_nested_config() {
    let demo = std::fs::read(artifact("guests/demo.bin")).unwrap();
    let depth = 200_000;
    let config = format!(
        "[[vm]]\nname = \"deep\"\nmemory = \"64M\"\nkernel = \"demo.bin\"\nirqs = {}{}\n",
        "[".repeat(depth),
        "]".repeat(depth)
    );
    let bundle = ferrovisor::config::bundle::write_bundle(&[
        ("ferrovisor.toml", config.as_bytes()),
        ("demo.bin", &demo),
    ]);
    let path = scratch("deep.cpio");
    std::fs::write(&path, bundle).unwrap();
    let mut args = hypervisor_args("max", 2, "demo.cpio");
    let initrd = args.iter().position(|a| a == "-initrd").unwrap() + 1;
    args[initrd] = path.display().to_string();
    let run = run_qemu_until(&args, TIMEOUT, |l| l.contains(STOP_LINE));
    assert!(!run.output.contains("overflow"), "{}", run.report());
    assert_stopped_with(&run, &["ferrovisor.toml:5:", "nested more than"]);
}
