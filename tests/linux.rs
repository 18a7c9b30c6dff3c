//! A real Linux guest (Debian's arm64 kernel and a busybox initramfs, fetched by
//! `make linux`) with two vCPUs under Ferrovisor, in its scripted self-test
//! mode (tests/linux/init): it must reach userspace, see two CPUs, run a pinned
//! busy loop on each, sleep one second, count timer and IPI interrupts rising
//! on both CPUs, report one cache topology for every CPU — the default
//! `virtual` one, with its sizes, read from sysfs — and power off so QEMU exits
//! 0. Debian's Linux 6.1 on both CPU models, and Linux 6.12 (bookworm-backports,
//! `build/linux-6.12`) on `-cpu max`: the two read the cache hierarchy from the
//! device tree and CLIDR_EL1 in different ways, and both must find it.
//! Linux 6.1 also runs under the debug build (`build/ferrovisor-debug.bin`) on
//! `-cpu max`.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{Image, hypervisor_args, image_args, run_qemu_until};

const TIMEOUT: Duration = Duration::from_secs(900);

/// What Linux shows of the default `virtual` cache topology
/// (src/sysreg/cache.rs `virtual_view`) in /sys/devices/system/cpu/cpu0/cache:
/// split 32 KiB L1 caches and a unified 512 KiB L2, 64-byte lines on both CPU
/// models.
const VIRTUAL_CACHES: [&str; 18] = [
    "index0/level=1",
    "index0/type=Data",
    "index0/size=32K",
    "index0/ways_of_associativity=4",
    "index0/number_of_sets=128",
    "index0/coherency_line_size=64",
    "index1/level=1",
    "index1/type=Instruction",
    "index1/size=32K",
    "index1/ways_of_associativity=4",
    "index1/number_of_sets=128",
    "index1/coherency_line_size=64",
    "index2/level=2",
    "index2/type=Unified",
    "index2/size=512K",
    "index2/ways_of_associativity=8",
    "index2/number_of_sets=1024",
    "index2/coherency_line_size=64",
];

fn boot_linux(cpu: &str) {
    boot_linux_image(Image::Release, cpu, "linux-selftest.cpio");
}

fn boot_linux_image(image: Image, cpu: &str, bundle: &str) {
    let args = image_args(image, cpu, 4, bundle);
    // A kernel panic would also end with exit status 0 after a reset, so the
    // run is judged by the self-test's lines, not only by the exit status.
    let run = run_qemu_until(&args, TIMEOUT, |l| {
        l.contains("Kernel panic")
            || l.contains("PANIC")
            || l.contains("stack overflow on cpu")
            || l.contains("Ferrovisor stopped")
    });
    let report = run.report();
    assert!(!run.timed_out, "{cpu}: Linux did not finish\n{report}");
    assert_eq!(run.status, Some(0), "{cpu}: QEMU exit status\n{report}");
    for line in [
        "FERROVISOR-LINUX-USERSPACE-UP",
        "LINUX-CHECK nproc=2",
        "LINUX-CHECK taskset cpu=0 ok",
        "LINUX-CHECK taskset cpu=1 ok",
        "LINUX-CHECK result=pass",
        "LINUX-CHECK-DONE",
    ] {
        assert!(run.has_line(line), "{cpu}: no `{line}`\n{report}");
    }
    for prefix in [
        "LINUX-CHECK sleep1_ms=",
        "LINUX-CHECK irq timer ",
        "LINUX-CHECK irq ipi ",
    ] {
        let line = run
            .guest_lines()
            .find(|l| l.starts_with(prefix))
            .unwrap_or_else(|| panic!("{cpu}: no `{prefix}...` line\n{report}"));
        assert!(line.ends_with(" ok"), "{cpu}: {line}\n{report}");
    }
    // One cache topology for every CPU (the VM's CPU model is per VM).
    let mut per_cpu: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in run
        .guest_lines()
        .filter_map(|l| l.strip_prefix("LINUX-CACHE /sys/devices/system/cpu/"))
    {
        let (cpu_dir, rest) = l.split_once('/').unwrap();
        per_cpu
            .entry(cpu_dir.to_string())
            .or_default()
            .push(rest.to_string());
    }
    let views: Vec<&Vec<String>> = per_cpu.values().collect();
    assert!(
        views.windows(2).all(|w| w[0] == w[1]),
        "{cpu}: CPUs see different caches: {per_cpu:?}"
    );
    // The default cache topology, found whole (no "Unable to detect cache
    // hierarchy", which leaves /sys/devices/system/cpu/cpu*/cache empty or
    // without sizes).
    assert_eq!(
        per_cpu.get("cpu0").map(|v| {
            v.iter()
                .map(|l| l.strip_prefix("cache/").unwrap_or(l))
                .collect::<Vec<_>>()
        }),
        Some(VIRTUAL_CACHES.to_vec()),
        "{cpu}: cpu0's caches in sysfs\n{report}"
    );
    assert!(
        !run.output.contains("Unable to detect cache hierarchy"),
        "{cpu}: Linux could not read the cache hierarchy\n{report}"
    );
    assert!(
        !run.output.contains("UNDEFINED to the guest"),
        "{cpu}: the guest hit an UNDEFINED system register\n{report}"
    );
}

#[test]
fn linux_two_vcpus_on_cpu_max() {
    boot_linux("max");
}

#[test]
fn linux_two_vcpus_on_cortex_a57() {
    boot_linux("cortex-a57");
}

#[test]
fn linux_6_12_two_vcpus_on_cpu_max() {
    boot_linux_image(Image::Release, "max", "linux-6.12-selftest.cpio");
}

/// Linux under the debug build of the hypervisor: its deeper stacks and debug
/// assertions on the whole exit path (vGIC, timer, PSCI, MMIO, IPIs).
#[test]
fn linux_two_vcpus_under_debug_hypervisor_on_cpu_max() {
    boot_linux_image(Image::Debug, "max", "linux-selftest.cpio");
}

/// The console example (`boards/qemu-virt/two-vm.toml`, what `make run
/// CONFIG=boards/qemu-virt/two-vm.toml` boots): Linux and the echo program both stay
/// up, Linux's shell answers at first, the switch key (Ctrl-a three times) moves the
/// keyboard to the echo VM, which answers the line typed there, and back to Linux.
#[test]
fn two_vm_example_stays_up_and_switches_input() {
    let mut qemu = common::Interactive::start(&hypervisor_args("max", 4, "two-vm.cpio"));
    let step = Duration::from_secs(300);
    let echo_prompt = |out: &str| out.contains("(echo) echo> ");
    // The busybox prompt (tests/linux/init), maybe followed by a terminal query.
    let shell = |out: &str| {
        out.lines()
            .any(|l| l.starts_with("(linux) ") && l.contains(":/# "))
    };
    let ok = qemu.wait_for(step, |o| echo_prompt(o) && shell(o));
    assert!(
        ok,
        "no echo prompt and Linux shell\n{}",
        qemu.finish().report()
    );
    qemu.send(b"echo to-linux-$((6*7))\r");
    assert!(
        qemu.wait_for(step, |o| o.contains("(linux) to-linux-42")),
        "Linux did not answer\n{}",
        qemu.finish().report()
    );
    qemu.send(&[0x01, 0x01, 0x01]);
    qemu.send(b"hello echo\r");
    assert!(
        qemu.wait_for(step, |o| o
            .contains("(echo) echo: line 1: \"hello echo\" (10 bytes)")),
        "the echo VM did not answer after the switch\n{}",
        qemu.finish().report()
    );
    qemu.send(&[0x01, 0x01, 0x01]);
    qemu.send(b"echo back-$((1+1))\r");
    assert!(
        qemu.wait_for(step, |o| o.contains("(linux) back-2")),
        "Linux did not get the keyboard back\n{}",
        qemu.finish().report()
    );
    let run = qemu.finish();
    // Both VMs were still up: nothing powered off.
    assert!(!run.output.contains("powers off"), "{}", run.report());
    assert!(!run.output.contains("PANIC"), "{}", run.report());
}
