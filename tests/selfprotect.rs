//! The hypervisor guards and measures its own stacks: a stack overflow at EL2 is
//! caught on the guard page below the stack and reported ("stack overflow on
//! cpuN" with the faulting PC), never written over the memory below; every
//! stack's high-water mark is logged when the machine powers off.
//!
//! Needs what `make test` builds: `build/ferrovisor.bin`, the test image
//! `build/ferrovisor-overflow-test.bin` with its ELF (`make hypervisor
//! PROFILE=overflow-test`: CPU 1 recurses as soon as it has reported itself up,
//! the boot CPU once every CPU is up) and `build/demo.cpio`.

mod common;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use common::{BOOT_TIMEOUT, Image, artifact, image_args, run_qemu, run_qemu_until};

/// The release build's stack size (src/arch/aarch64/boot.rs `STACK_SIZE`).
const RELEASE_STACK_SIZE: u64 = 64 * 1024;

/// `[start, end)` of `symbol` in the ELF `elf`, from the toolchain's llvm-nm
/// (the llvm-tools component rust-toolchain.toml installs).
fn symbol_range(elf: &str, symbol: &str) -> (u64, u64) {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .expect("run rustc --print sysroot");
    let sysroot = String::from_utf8(sysroot.stdout).unwrap();
    let nm = format!(
        "{}/lib/rustlib/x86_64-unknown-linux-gnu/bin/llvm-nm",
        sysroot.trim()
    );
    let out = Command::new(&nm)
        .args(["-S", elf])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {nm}: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() == 4 && f[3] == symbol {
            let start = u64::from_str_radix(f[0], 16).unwrap();
            let size = u64::from_str_radix(f[1], 16).unwrap();
            return (start, start + size);
        }
    }
    panic!("no symbol {symbol} in {elf}");
}

/// The hex value after `key` in `line` (`PC 0x4020...`).
fn hex_after(line: &str, key: &str) -> u64 {
    let rest = &line[line
        .find(key)
        .unwrap_or_else(|| panic!("no `{key}` in `{line}`"))
        + key.len()..];
    let hex = rest.trim_start_matches("0x");
    let end = hex
        .find(|c: char| !c.is_ascii_hexdigit())
        .unwrap_or(hex.len());
    u64::from_str_radix(&hex[..end], 16).unwrap_or_else(|_| panic!("bad hex in `{line}`"))
}

/// Both CPUs recurse into their guard page: each is reported, with a PC inside
/// the recursing function, from the CPU's own emergency stack. CPU 1 overflows
/// first (while the boot CPU is still booting); its stack lies right above the
/// boot CPU's, so without the guard page its recursion would run on into the
/// boot CPU's live frames — the boot CPU still finishes its own work and reports
/// its own overflow.
#[test]
fn stack_overflow_is_reported_with_its_cpu_and_pc() {
    // Both CPUs stop for good after their report: wait for the two reports.
    let seen = RefCell::new(BTreeSet::new());
    let run = run_qemu_until(
        &image_args(Image::OverflowTest, "max", 2, "demo.cpio"),
        Duration::from_secs(120),
        |l| {
            if l.starts_with("ferrovisor: stack overflow on cpu") {
                seen.borrow_mut().insert(l.to_string());
            }
            seen.borrow().len() == 2
        },
    );
    assert!(
        !run.timed_out,
        "two overflow reports expected\n{}",
        run.report()
    );
    let report = run.report();
    let (start, end) = symbol_range(
        &artifact("ferrovisor-overflow-test.elf"),
        "fv_stack_overflow_test",
    );
    for cpu in [0, 1] {
        let prefix = format!("ferrovisor: stack overflow on cpu{cpu}: ");
        let line = run
            .output
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no `{prefix}...` line\n{report}"));
        // The image is linked at 0: the report gives the PC's ELF address too.
        let pc = hex_after(line, "(ELF ");
        assert!(
            (start..end).contains(&pc),
            "cpu{cpu}'s PC {pc:#x} is not in fv_stack_overflow_test {start:#x}..{end:#x}\n{report}"
        );
    }
    // The boot CPU recurses only after its "N of N CPUs up" line (src/main.rs),
    // so its own report after CPU 1's says it got on with its boot. (The line
    // itself is not looked for: CPU 1's report goes straight to the UART and
    // may be interleaved with it character by character.)
    let at = |cpu: usize| {
        run.output
            .find(&format!("ferrovisor: stack overflow on cpu{cpu}: "))
            .unwrap()
    };
    assert!(
        at(1) < at(0),
        "the boot CPU did not get on with its boot after CPU 1 overflowed\n{report}"
    );
    assert!(!run.output.contains("PANIC"), "{report}");
}

/// When the machine powers off, each stack's high-water mark is logged: the
/// figures the stack size is chosen from (and `make bench` reports).
#[test]
fn stack_high_water_marks_are_logged_at_power_off() {
    let run = run_qemu(
        &image_args(Image::Release, "max", 2, "demo.cpio"),
        BOOT_TIMEOUT,
    );
    let report = run.report();
    assert_eq!(run.status, Some(0), "{report}");
    let line = run
        .output
        .lines()
        .find(|l| l.contains("EL2 stack use (high-water, bytes):"))
        .unwrap_or_else(|| panic!("no stack high-water line\n{report}"));
    let used = |cpu: u32| -> u64 {
        let key = format!("cpu{cpu} ");
        let at = line
            .rfind(&key)
            .unwrap_or_else(|| panic!("no {key}in `{line}`"));
        line[at + key.len()..]
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no figure for cpu{cpu} in `{line}`"))
    };
    assert!(
        line.ends_with(&format!("of {RELEASE_STACK_SIZE} each")),
        "{line}"
    );
    // The boot CPU parsed the device tree and config and built the VM; CPU 1
    // only started and went back to the firmware. Both used some of their
    // stack, neither all of it.
    for cpu in [0, 1] {
        let n = used(cpu);
        assert!(n > 0 && n < RELEASE_STACK_SIZE, "cpu{cpu}: {n}\n{line}");
    }
    assert!(used(0) > used(1), "{line}");
}
