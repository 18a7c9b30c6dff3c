//! A real Linux guest (Debian's arm64 kernel and a busybox initramfs, fetched by
//! `make linux`) with two vCPUs under Ferrovisor, in its scripted self-test
//! mode (tests/linux/init): it must reach userspace, see two CPUs, run a pinned
//! busy loop on each, sleep one second, count timer and IPI interrupts rising
//! on both CPUs, report one cache topology for every CPU — the default
//! `virtual` one, with its sizes, read from sysfs — find its PMU (the
//! `armv8_pmuv3` driver with 7 counters, in sysfs with its events) — and power off so QEMU exits
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
    // The guest's PMU (on by default): Linux's arm_pmu driver finds its 6
    // event counters (QEMU's PMCR_EL0.N) and the cycle counter.
    let pmu = run
        .guest_lines()
        .find(|l| l.starts_with("LINUX-CHECK pmu "))
        .unwrap_or_else(|| panic!("{cpu}: no `LINUX-CHECK pmu` line\n{report}"));
    assert!(pmu.contains(" counters=7 ok"), "{cpu}: {pmu}\n{report}");
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

/// The fair share of 4 vCPUs on 2 physical CPUs, every task busy: the fewest
/// rounds any task did over the most, at least this. (Measured 0.98 on `-cpu
/// max`: 228..232 rounds in 3 s.)
const FAIR_SHARE_MIN: f64 = 0.8;
/// With two vCPUs busy and the other two idle, each busy task's rounds over the
/// mean of the all-busy phase: 2 when the idle vCPUs cost nothing, at least this
/// (measured 1.98 on `-cpu max`),
/// and at most [`FULL_SPEED_MAX`]: more means the all-busy phase lost time to
/// the switching itself rather than sharing the CPUs.
const FULL_SPEED_MIN: f64 = 1.6;
const FULL_SPEED_MAX: f64 = 2.5;

/// Rounds per task of a `LINUX-SHARE <label> cpu0=N cpu1=N ...` line.
fn share(run: &common::Run, label: &str) -> Vec<u64> {
    let prefix = format!("LINUX-SHARE {label} ");
    let line = run
        .guest_lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .unwrap_or_else(|| panic!("no `{prefix}...` line\n{}", run.report()));
    line.split_whitespace()
        .map(|f| f.split_once('=').and_then(|(_, n)| n.parse().ok()).unwrap())
        .collect()
}

/// Linux with four vCPUs on two physical CPUs (`boards/qemu-virt/linux-4on2.toml`
/// with the guest's fair-share test, `linux-4on2-fairshare.toml`, `-smp 2`):
/// `nproc` says 4; one CPU-bound task pinned to each vCPU, all for 3 s of guest
/// time: each gets its share ([`FAIR_SHARE_MIN`]); then two of them with the
/// other two vCPUs idle: those run at about full speed ([`FULL_SPEED_MIN`]).
/// Under `-icount shift=0`, so that both physical CPUs run at the same speed
/// whatever else the host runs.
fn linux_four_vcpus_on_two_cpus(cpu: &str) {
    let mut args = hypervisor_args(cpu, 2, "linux-4on2-fairshare.cpio");
    args.extend(["-icount".into(), "shift=0,sleep=off".into()]);
    let run = run_qemu_until(&args, TIMEOUT, |l| {
        l.contains("Kernel panic")
            || l.contains("PANIC")
            || l.contains("Ferrovisor stopped")
            || l.contains("LINUX-CHECK-DONE")
    });
    let report = run.report();
    assert!(
        run.output.contains("4 vCPU(s) on CPU(s) [0, 1, 0, 1]"),
        "{cpu}: the vCPUs are not shared as configured\n{report}"
    );
    assert!(
        run.has_line("LINUX-CHECK nproc=4"),
        "{cpu}: nproc\n{report}"
    );
    let all = share(&run, "all");
    let two = share(&run, "two");
    assert_eq!((all.len(), two.len()), (4, 2), "{cpu}\n{report}");
    let (min, max) = (*all.iter().min().unwrap(), *all.iter().max().unwrap());
    let fair = min as f64 / max.max(1) as f64;
    let mean = all.iter().sum::<u64>() as f64 / 4.0;
    let full = *two.iter().min().unwrap() as f64 / mean;
    eprintln!("{cpu}: all busy {all:?} (fewest/most {fair:.2}), two busy {two:?} ({full:.2}x)");
    assert!(
        fair >= FAIR_SHARE_MIN,
        "{cpu}: unfair shares {all:?}: {fair:.2} < {FAIR_SHARE_MIN}\n{report}"
    );
    assert!(
        (FULL_SPEED_MIN..=FULL_SPEED_MAX).contains(&full),
        "{cpu}: two busy vCPUs of four did {two:?} rounds against {mean:.0} each with four busy: \
         {full:.2}x, expected {FULL_SPEED_MIN}x..={FULL_SPEED_MAX}x\n{report}"
    );
}

#[test]
fn linux_four_vcpus_on_two_cpus_on_cpu_max() {
    linux_four_vcpus_on_two_cpus("max");
}

/// Known failure: on `-cpu cortex-a57` the all-busy phase makes about 1/27 of
/// the two-busy phase's progress per task (8 rounds against 400), with few
/// exits (no exit storm); not yet explained. Every QEMU CPU without FEAT_DIC
/// behaves the same, with and without -icount; the guest spends ~90% of the
/// all-busy phase in its kernel (README, "What does not work yet").
#[test]
#[ignore = "time-sharing on cortex-a57: all-busy tasks make ~1/27 of the expected progress (unexplained)"]
fn linux_four_vcpus_on_two_cpus_on_cortex_a57() {
    linux_four_vcpus_on_two_cpus("cortex-a57");
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
