//! Tests of the config: the schema, every refusal with its position and field, and the
//! checks against the machine and the files.

use alloc::vec;
use alloc::vec::Vec;

use super::bundle::{Bundle, CONFIG_NAME, write_bundle};
use super::*;
use crate::vm::image::{ImageFormat, ImageKind};

const FILE: &str = "test.toml";

fn parse(text: &str) -> SystemConfig {
    match SystemConfig::parse(text, FILE) {
        Ok(config) => config,
        Err(e) => panic!("config refused: {e}"),
    }
}

fn refuse(text: &str) -> ConfigError {
    match SystemConfig::parse(text, FILE) {
        Ok(config) => panic!("config accepted: {config:?}"),
        Err(e) => e,
    }
}

/// Assert the error is at `line:column`, about `field`, and its reason mentions `words`.
#[track_caller]
fn assert_error(e: &ConfigError, line: u32, column: u32, field: &str, words: &str) {
    assert_eq!(e.file, FILE, "{e}");
    assert_eq!(e.position, Some(Position { line, column }), "{e}");
    assert_eq!(e.field, field, "{e}");
    assert!(e.reason.contains(words), "reason of `{e}` lacks `{words}`");
}

const MINIMAL: &str = r#"
[[vm]]
name = "demo"
memory = "128M"
kernel = "guests/demo.bin"
"#;

#[test]
fn minimal_vm_gets_defaults() {
    let config = parse(MINIMAL);
    assert_eq!(config.file(), FILE);
    assert_eq!(config.vms.len(), 1);
    let vm = &config.vms[0];
    assert_eq!(vm.name, "demo");
    assert_eq!(vm.vcpus, 1);
    assert_eq!(vm.cpus, None);
    assert_eq!(vm.memory, 128 << 20);
    assert_eq!(vm.base, DEFAULT_RAM_BASE);
    assert_eq!(
        vm.kernel,
        KernelConfig {
            path: "guests/demo.bin".into(),
            kind: ImageKind::Auto
        }
    );
    assert_eq!(
        (
            vm.initrd.as_deref(),
            vm.bootargs.as_deref(),
            vm.dtb.as_deref()
        ),
        (None, None, None)
    );
    assert_eq!(vm.console, VmConsole::Pl011);
    assert!(vm.passthrough.is_empty());
    assert_eq!(vm.cpu, CpuModel::default());
    assert_eq!(
        config.console,
        ConsoleConfig {
            switch_key: 0x01,
            switch_presses: 3,
            input: Some(0)
        }
    );
    assert_eq!(config.vm("demo"), Some(vm));
}

const FULL: &str = r#"
[console]
switch_key = "ctrl-b"
switch_presses = 2
input = "tests"

[[vm]]
name = "linux"
cpus = [0, 1]
memory = "512M"
base = 0x8000_0000
kernel = { path = "linux/Image", format = "image" }
initrd = "linux/initramfs.cpio.gz"
bootargs = "console=ttyAMA0 earlycon rdinit=/init"
dtb = "linux/virt.dtb"

[[vm.passthrough]]
base = 0x0a00_0000
size = 0x1000
irqs = [48, 49]

[vm.cpu]
cache = { clidr = 0x0a200023, ccsidr = [0x700fe01a, 0x201fe01a, 0x707fe03a] }
breakpoints = 6
watchpoints = 4
sve_vl = 384
sme_vl = 512
spe = true

[[vm]]
name = "tests"
vcpus = 2
memory = 268435456
kernel = { path = "tests.bin", load = "1G", entry = 0x4000_0100 }
console = "pl011"

[vm.cpu]
cache = "host"
"#;

#[test]
fn full_config_reads_every_key() {
    // The keys of features not implemented yet are refused ...
    let e = refuse(FULL);
    assert_error(
        &e,
        24,
        15,
        "vm.linux.cpu.breakpoints",
        "not implemented yet",
    );
    // ... after being read and checked like the others, so they read into the model
    // once their feature lands.
    let config = super::validate::parse_with(FULL, FILE, &[]).unwrap();
    assert_eq!(
        config.console,
        ConsoleConfig {
            switch_key: 0x02,
            switch_presses: 2,
            input: Some(1)
        }
    );
    let linux = config.vm("linux").unwrap();
    assert_eq!(linux.vcpus, 2);
    assert_eq!(linux.cpus, Some(vec![0, 1]));
    assert_eq!(linux.memory, 512 << 20);
    assert_eq!(linux.base, 0x8000_0000);
    assert_eq!(linux.kernel.kind, ImageKind::Arm64Image);
    assert_eq!(linux.initrd.as_deref(), Some("linux/initramfs.cpio.gz"));
    assert_eq!(
        linux.bootargs.as_deref(),
        Some("console=ttyAMA0 earlycon rdinit=/init")
    );
    assert_eq!(linux.dtb.as_deref(), Some("linux/virt.dtb"));
    assert_eq!(
        linux.passthrough,
        [Passthrough {
            base: 0x0a00_0000,
            size: 0x1000,
            irqs: vec![48, 49]
        }]
    );
    assert_eq!(
        linux.cpu,
        CpuModel {
            // Ctype1 = separate I+D, Ctype2 = unified: three CCSIDRs.
            cache: CachePolicy::Custom {
                clidr: 0x0a20_0023,
                ccsidr: vec![0x700f_e01a, 0x201f_e01a, 0x707f_e03a]
            },
            breakpoints: Some(6),
            watchpoints: Some(4),
            sve_vl: Some(384),
            sme_vl: Some(512),
            spe: true,
            pmu: None,
            pmu_counters: None,
            id: vec![],
        }
    );
    let tests = config.vm("tests").unwrap();
    assert_eq!((tests.vcpus, tests.cpus.as_ref()), (2, None));
    assert_eq!(tests.memory, 256 << 20);
    assert_eq!(
        tests.kernel.kind,
        ImageKind::Raw {
            load: 0x4000_0000,
            entry: 0x4000_0100
        }
    );
    assert_eq!(tests.cpu.cache, CachePolicy::Host);
}

#[test]
fn sizes_in_every_spelling() {
    for (text, bytes) in [
        ("\"2M\"", 2u64 << 20),
        ("\"2MiB\"", 2 << 20),
        ("\"2m\"", 2 << 20),
        ("\"2048K\"", 2 << 20),
        ("\"1G\"", 1 << 30),
        ("\"1 GiB\"", 1 << 30),
        ("\"4_194_304\"", 4 << 20),
        ("\"0x60_0000\"", 6 << 20),
        ("0x20_0000", 2 << 20),
        ("8388608", 8 << 20),
    ] {
        let config = parse(&MINIMAL.replace("\"128M\"", text));
        assert_eq!(config.vms[0].memory, bytes, "memory = {text}");
    }
}

// ---- refusals: each names the place, the field and the reason ----

#[test]
fn syntax_error_has_a_position() {
    let e = refuse("[[vm]]\nname = \"demo\nmemory = 1\n");
    assert_eq!(e.position.map(|p| p.line), Some(2), "{e}");
}

#[test]
fn unknown_key_is_refused_with_its_path() {
    let e = refuse(&MINIMAL.replace("memory", "memroy = \"1G\"\nmemory"));
    assert_error(&e, 4, 1, "vm.demo.memroy", "unknown field `memroy`");
    let e = refuse(&alloc::format!("{MINIMAL}[vm.cpu]\nsve = 128\n"));
    assert_error(&e, 7, 1, "vm.demo.cpu.sve", "unknown field `sve`");
    let e = refuse(&alloc::format!("[consle]\n{MINIMAL}"));
    assert_error(&e, 1, 2, "consle", "unknown field `consle`");
    let e = refuse(&MINIMAL.replace(
        "kernel = \"guests/demo.bin\"",
        "kernel = { path = \"a\", adress = 1 }",
    ));
    assert_eq!(e.field, "vm.demo.kernel.adress", "{e}");
    assert!(e.reason.contains("unknown field `adress`"), "{e}");
}

#[test]
fn wrong_type_and_missing_key() {
    let e = refuse(&MINIMAL.replace("name = \"demo\"", "name = \"demo\"\nvcpus = \"two\""));
    assert_error(&e, 4, 9, "vm.demo.vcpus", "invalid type");
    let e = refuse(&MINIMAL.replace("kernel = \"guests/demo.bin\"\n", ""));
    assert!(e.reason.contains("missing field `kernel`"), "{e}");
    assert!(e.field.starts_with("vm"), "{e}");
}

#[test]
fn no_vm_is_refused() {
    let e = refuse("[console]\nswitch_presses = 3\n");
    assert_eq!((e.field.as_str(), e.position), ("vm", None), "{e}");
    assert_eq!(
        alloc::format!("{e}"),
        "test.toml: vm: no [[vm]] table: the config must describe at least one VM"
    );
}

#[test]
fn display_is_file_line_column_field_reason() {
    let e = refuse(&MINIMAL.replace("\"128M\"", "\"3M\""));
    assert_eq!(
        alloc::format!("{e}"),
        "test.toml:4:10: vm.demo.memory: 3M is not a non-zero multiple of 2M: \
         guest RAM is mapped in 2 MiB stage-2 blocks"
    );
}

#[test]
fn bad_sizes_and_alignment() {
    let e = refuse(&MINIMAL.replace("\"128M\"", "\"lots\""));
    assert_error(&e, 4, 10, "vm.demo.memory", "not a size");
    let e = refuse(&MINIMAL.replace("\"128M\"", "-2097152"));
    assert_error(&e, 4, 10, "vm.demo.memory", "negative");
    let e = refuse(&MINIMAL.replace("\"128M\"", "0"));
    assert_error(&e, 4, 10, "vm.demo.memory", "multiple of 2M");
    let e = refuse(&MINIMAL.replace("\"128M\"", "\"99999999999T\""));
    assert_error(&e, 4, 10, "vm.demo.memory", "too large");
    let e = refuse(&MINIMAL.replace("memory", "base = 0x4010_0000\nmemory"));
    assert_error(&e, 4, 8, "vm.demo.base", "not a multiple of 2M");
    let e = refuse(&MINIMAL.replace("memory", "base = 0x7f_ffe0_0000\nmemory"));
    assert_error(&e, 4, 8, "vm.demo.base", "guest-physical limit");
}

#[test]
fn bad_names() {
    let e = refuse(&MINIMAL.replace("\"demo\"", "\"my vm\""));
    assert_error(&e, 3, 8, "vm[0].name", "1 to 32 letters");
    let e = refuse(&MINIMAL.replace("\"demo\"", "\"\""));
    assert_error(&e, 3, 8, "vm[0].name", "1 to 32 letters");
    let e = refuse(&alloc::format!(
        "{MINIMAL}{}",
        MINIMAL.replace("128M", "64M")
    ));
    assert_error(&e, 8, 8, "vm.demo.name", "already used by the VM at line 3");
}

#[test]
fn vcpus_and_cpus_must_agree() {
    let e = refuse(&MINIMAL.replace("memory", "vcpus = 2\ncpus = [1]\nmemory"));
    assert_error(&e, 4, 9, "vm.demo.vcpus", "vcpus = 2 but cpus lists 1");
    let config = parse(&MINIMAL.replace("memory", "cpus = [3, 1]\nmemory"));
    assert_eq!(
        (config.vms[0].vcpus, config.vms[0].cpus.clone()),
        (2, Some(vec![3, 1]))
    );
    // A CPU listed twice: two vCPUs sharing it (time-sharing) ...
    let config = parse(&MINIMAL.replace("memory", "cpus = [1, 1]\nmemory"));
    assert_eq!(config.vms[0].cpus, Some(vec![1, 1]));
    // ... unless the VM is exclusive.
    let e = refuse(&MINIMAL.replace("memory", "exclusive = true\ncpus = [1, 1]\nmemory"));
    assert_error(&e, 5, 12, "vm.demo.cpus", "listed twice in an exclusive VM");
    let e = refuse(&MINIMAL.replace("memory", "cpus = []\nmemory"));
    assert_error(&e, 4, 8, "vm.demo.cpus", "lists no CPU");
    let e = refuse(&MINIMAL.replace("memory", "vcpus = 0\nmemory"));
    assert_error(&e, 4, 9, "vm.demo.vcpus", "out of range");
    let e = refuse(&MINIMAL.replace("memory", "cpus = [-1]\nmemory"));
    assert_error(&e, 4, 9, "vm.demo.cpus", "out of range");
}

#[test]
fn physical_cpu_given_to_two_vms() {
    let two = |first: &str, second: &str| {
        alloc::format!(
            "{}{}",
            MINIMAL.replace("memory", &alloc::format!("{first}cpus = [0, 1]\nmemory")),
            MINIMAL
                .replace("\"demo\"", "\"other\"")
                .replace("memory", &alloc::format!("{second}cpus = [2, 1]\nmemory"))
        )
    };
    // Shared: both VMs run a vCPU on CPU 1.
    let config = parse(&two("", ""));
    assert_eq!(config.cpu_assignment(3).unwrap(), [vec![0, 1], vec![2, 1]]);
    // Not when either is exclusive, whichever comes first in the file.
    let e = refuse(&two("exclusive = true\n", ""));
    assert_error(
        &e,
        11,
        12,
        "vm.other.cpus",
        "physical CPU 1 is already given to VM `demo`, which is exclusive",
    );
    let e = refuse(&two("", "exclusive = true\n"));
    assert_error(&e, 11, 12, "vm.other.cpus", "and this VM is exclusive");
}

#[test]
fn scheduling_fields() {
    let vm = &parse(MINIMAL).vms[0];
    assert_eq!(
        (vm.exclusive, vm.priority, vm.timeslice_us),
        (false, 0, DEFAULT_TIMESLICE_US)
    );
    let config = parse(&MINIMAL.replace("memory", "priority = 7\ntimeslice = \"500us\"\nmemory"));
    assert_eq!(
        (config.vms[0].priority, config.vms[0].timeslice_us),
        (7, 500)
    );
    for (text, us) in [
        ("\"4ms\"", 4_000),
        ("\"1s\"", 1_000_000),
        ("\"1_000us\"", 1_000),
    ] {
        let config =
            parse(&MINIMAL.replace("memory", &alloc::format!("timeslice = {text}\nmemory")));
        assert_eq!(config.vms[0].timeslice_us, us, "{text}");
    }
    let e = refuse(&MINIMAL.replace("memory", "priority = 256\nmemory"));
    assert_error(&e, 4, 12, "vm.demo.priority", "out of range");
    let e = refuse(&MINIMAL.replace("memory", "timeslice = 4\nmemory"));
    assert_error(&e, 4, 13, "vm.demo.timeslice", "give a unit");
    let e = refuse(&MINIMAL.replace("memory", "timeslice = \"4 days\"\nmemory"));
    assert_error(&e, 4, 13, "vm.demo.timeslice", "not a duration");
    let e = refuse(&MINIMAL.replace("memory", "timeslice = \"50us\"\nmemory"));
    assert_error(&e, 4, 13, "vm.demo.timeslice", "out of range");
    let e = refuse(&MINIMAL.replace("memory", "timeslice = \"2s\"\nmemory"));
    assert_error(&e, 4, 13, "vm.demo.timeslice", "out of range");
    let e = refuse(&MINIMAL.replace("memory", "timeslice = \"99999999999999999999s\"\nmemory"));
    assert_error(&e, 4, 13, "vm.demo.timeslice", "too long");
    // An exclusive VM shares nothing, so these mean nothing for it.
    let e = refuse(&MINIMAL.replace("memory", "exclusive = true\npriority = 1\nmemory"));
    assert_error(&e, 5, 12, "vm.demo.priority", "exclusive VM");
    let e = refuse(&MINIMAL.replace("memory", "exclusive = true\ntimeslice = \"1ms\"\nmemory"));
    assert_error(&e, 5, 13, "vm.demo.timeslice", "exclusive VM");
    let e = refuse(&MINIMAL.replace("memory", "exclusive = 1\nmemory"));
    assert_error(&e, 4, 13, "vm.demo.exclusive", "expected a boolean");
}

#[test]
fn vcpus_spread_over_cpus_not_exclusive() {
    let vm = |name: &str, keys: &str| {
        MINIMAL
            .replace("\"demo\"", &alloc::format!("\"{name}\""))
            .replace("memory", &alloc::format!("{keys}\nmemory"))
    };
    // Four vCPUs on two CPUs: two each.
    let config = parse(&vm("a", "vcpus = 4"));
    assert_eq!(config.cpu_assignment(2).unwrap(), [vec![0, 1, 0, 1]]);
    // An exclusive VM takes the lowest CPUs no VM lists; the rest is shared by
    // the others, fewest vCPUs first, what a VM lists counting too.
    let config = parse(&alloc::format!(
        "{}{}{}",
        vm("shared", "vcpus = 3"),
        vm("rt", "exclusive = true\nvcpus = 1"),
        vm("pinned", "cpus = [0, 0]")
    ));
    assert_eq!(
        config.cpu_assignment(4).unwrap(),
        [vec![2, 3, 2], vec![1], vec![0, 0]]
    );
    // An exclusive VM's listed CPUs are out of the spread.
    let config = parse(&alloc::format!(
        "{}{}",
        vm("a", "vcpus = 3"),
        vm("rt", "exclusive = true\ncpus = [0]")
    ));
    assert_eq!(config.cpu_assignment(2).unwrap(), [vec![1, 1, 1], vec![0]]);
    // Exclusive VMs wanting more CPUs than are free.
    let config = parse(&alloc::format!(
        "{}{}",
        vm("a", "cpus = [0]"),
        vm("rt", "exclusive = true\nvcpus = 2")
    ));
    let e = config.cpu_assignment(2).unwrap_err();
    assert_error(
        &e,
        10,
        13,
        "vm.rt.exclusive",
        "only 1 of the board's 2 are left",
    );
    // Exclusive VMs leaving no CPU for the others.
    let config = parse(&alloc::format!(
        "{}{}",
        vm("a", "vcpus = 2"),
        vm("rt", "exclusive = true\nvcpus = 2")
    ));
    let e = config.cpu_assignment(2).unwrap_err();
    assert_error(&e, 4, 9, "vm.a.vcpus", "the exclusive VMs have all 2");
}

#[test]
fn overlapping_guest_memory_within_a_vm() {
    // RAM over the emulated GIC.
    let e = refuse(&MINIMAL.replace("memory", "base = 0x0800_0000\nmemory"));
    assert_error(
        &e,
        4,
        8,
        "vm.demo.base",
        "overlaps the emulated virtual GIC",
    );
    // RAM over the emulated PL011 (but fine without a console).
    let low = MINIMAL
        .replace("memory", "base = 0x0900_0000\nmemory")
        .replace("128M", "2M");
    let e = refuse(&low);
    assert_error(
        &e,
        4,
        8,
        "vm.demo.base",
        "overlaps the emulated PL011 console",
    );
    parse(&alloc::format!("{low}console = \"none\"\n"));
    // A passthrough range over the VM's RAM, over an emulated device, over another one.
    let pt = |base: &str, size: &str| {
        alloc::format!("{MINIMAL}[[vm.passthrough]]\nbase = {base}\nsize = {size}\n")
    };
    let e = refuse(&pt("0x4400_0000", "0x1000"));
    assert_error(
        &e,
        7,
        8,
        "vm.demo.passthrough[0].base",
        "overlaps guest RAM",
    );
    let e = refuse(&pt("0x0900_0000", "0x1000"));
    assert_error(
        &e,
        7,
        8,
        "vm.demo.passthrough[0].base",
        "overlaps the emulated PL011",
    );
    let e = refuse(&alloc::format!(
        "{}[[vm.passthrough]]\nbase = 0x0a00_1000\nsize = 0x1000\n",
        pt("0x0a00_0000", "0x2000")
    ));
    assert_error(
        &e,
        10,
        8,
        "vm.demo.passthrough[1].base",
        "overlaps passthrough[0]",
    );
}

#[test]
fn passthrough_fields() {
    let pt = |body: &str| alloc::format!("{MINIMAL}[[vm.passthrough]]\n{body}\n");
    let e = refuse(&pt("base = 0x0a00_0200\nsize = 0x1000"));
    assert_error(&e, 7, 8, "vm.demo.passthrough[0].base", "multiple of 4K");
    let e = refuse(&pt("base = 0x0a00_0000\nsize = 0x200"));
    assert_error(&e, 8, 8, "vm.demo.passthrough[0].size", "multiple of 4K");
    let e = refuse(&pt("base = 0x0a00_0000\nsize = 0x1000\nirqs = [16]"));
    assert_error(&e, 9, 9, "vm.demo.passthrough[0].irqs", "32..=1019");
    let e = refuse(&pt("base = 0x0a00_0000\nsize = 0x1000\nirqs = [1024]"));
    assert_error(&e, 9, 9, "vm.demo.passthrough[0].irqs", "32..=1019");
    let e = refuse(&pt("base = 0x0a00_0000\nsize = 0x1000\nirqs = [-1]"));
    assert_error(&e, 9, 9, "vm.demo.passthrough[0].irqs", "out of range");
    let e = refuse(&pt("base = 0x0a00_0000\nsize = 0x1000\nirqs = [48, 48]"));
    assert_error(
        &e,
        9,
        13,
        "vm.demo.passthrough[0].irqs",
        "interrupt 48 is listed twice",
    );
    let e = refuse(&pt("base = 0x0a00_0000\nsize = 0x1000\nirq = [48]"));
    assert_error(&e, 9, 1, "vm.demo.passthrough[0].irq", "unknown field");
}

#[test]
fn a_device_or_interrupt_given_to_two_vms() {
    let vm = |name: &str, base: &str, irq: u32| {
        alloc::format!(
            "{}[[vm.passthrough]]\nbase = {base}\nsize = 0x1000\nirqs = [{irq}]\n",
            MINIMAL.replace("\"demo\"", &alloc::format!("\"{name}\""))
        )
    };
    let e = refuse(&alloc::format!(
        "{}{}",
        vm("a", "0x0a00_0000", 48),
        vm("b", "0x0a00_0000", 49)
    ));
    assert_error(
        &e,
        16,
        8,
        "vm.b.passthrough[0].base",
        "already given to VM `a`",
    );
    let e = refuse(&alloc::format!(
        "{}{}",
        vm("a", "0x0a00_0000", 48),
        vm("b", "0x0a00_1000", 48)
    ));
    assert_error(
        &e,
        18,
        9,
        "vm.b.passthrough[0].irqs",
        "interrupt 48 is already given to VM `a`",
    );
}

#[test]
fn kernel_forms() {
    let k = |kernel: &str| MINIMAL.replace("\"guests/demo.bin\"", kernel);
    assert_eq!(
        parse(&k("{ path = \"x\", format = \"elf\" }")).vms[0]
            .kernel
            .kind,
        ImageKind::Elf
    );
    assert_eq!(
        parse(&k("{ path = \"x\", format = \"auto\" }")).vms[0]
            .kernel
            .kind,
        ImageKind::Auto
    );
    assert_eq!(
        parse(&k("{ path = \"x\" }")).vms[0].kernel.kind,
        ImageKind::Auto
    );
    assert_eq!(
        parse(&k("{ path = \"x\", format = \"raw\", load = 0x4008_0000 }")).vms[0]
            .kernel
            .kind,
        ImageKind::Raw {
            load: 0x4008_0000,
            entry: 0x4008_0000
        }
    );
    let e = refuse(&k("{ path = \"x\", format = \"raw\" }"));
    assert_error(&e, 5, 33, "vm.demo.kernel.format", "needs `load`");
    let e = refuse(&k("{ path = \"x\", format = \"zimage\" }"));
    assert_error(
        &e,
        5,
        33,
        "vm.demo.kernel.format",
        "unknown format `zimage`",
    );
    let e = refuse(&k(
        "{ path = \"x\", format = \"image\", load = 0x4000_0000 }",
    ));
    assert_error(&e, 5, 49, "vm.demo.kernel.load", "are for format = \"raw\"");
    let e = refuse(&k("{ path = \"x\", entry = 0x4000_0000 }"));
    assert_error(&e, 5, 32, "vm.demo.kernel.entry", "needs `load`");
    let e = refuse(&k("{ path = \"x\", load = 0x1000 }"));
    assert_error(&e, 5, 31, "vm.demo.kernel.load", "outside the VM's RAM");
    let e = refuse(&k(
        "{ path = \"x\", load = 0x4000_0000, entry = 0x5000_0000 }",
    ));
    assert_error(&e, 5, 52, "vm.demo.kernel.entry", "outside the VM's RAM");
    let e = refuse(&k("\"\""));
    assert_error(&e, 5, 10, "vm.demo.kernel", "empty");
    let e = refuse(&k("{ path = \"\" }"));
    assert_error(&e, 5, 19, "vm.demo.kernel.path", "empty");
    let e = refuse(&k("42"));
    assert_error(&e, 5, 10, "vm.demo.kernel", "a path string or a table");
}

#[test]
fn console_settings() {
    let c = |body: &str| alloc::format!("[console]\n{body}\n{MINIMAL}");
    assert_eq!(parse(&c("switch_key = \"Ctrl-Z\"")).console.switch_key, 26);
    let e = refuse(&c("switch_key = \"alt-a\""));
    assert_error(&e, 2, 14, "console.switch_key", "ctrl-a");
    let e = refuse(&c("switch_key = \"ctrl-m\""));
    assert_error(&e, 2, 14, "console.switch_key", "line ending");
    let e = refuse(&c("switch_presses = 0"));
    assert_error(&e, 2, 18, "console.switch_presses", "1..=5");
    let e = refuse(&c("input = \"nobody\""));
    assert_error(&e, 2, 9, "console.input", "no VM named `nobody`");
    let e = refuse(&alloc::format!(
        "[console]\ninput = \"demo\"\n{MINIMAL}console = \"none\"\n"
    ));
    assert_error(&e, 2, 9, "console.input", "console = \"none\"");
    let e = refuse(&alloc::format!("{MINIMAL}console = \"uart\"\n"));
    assert_error(&e, 6, 11, "vm.demo.console", "unknown console");
    let quiet = parse(&alloc::format!("{MINIMAL}console = \"none\"\n"));
    assert_eq!(quiet.console.input, None);
}

#[test]
fn bootargs_length() {
    let long = "x".repeat(MAX_BOOTARGS);
    let e = refuse(&alloc::format!("{MINIMAL}bootargs = \"{long}\"\n"));
    assert_error(&e, 6, 12, "vm.demo.bootargs", "shorter than 2048");
}

#[test]
fn id_field_lowering() {
    let id = |body: &str| alloc::format!("{MINIMAL}[vm.cpu.id]\n{body}\n");
    let c = parse(&id(
        "\"ID_AA64ISAR0_EL1.AES\" = 0\n\"ID_AA64PFR0_EL1.SVE\" = 0",
    ));
    assert_eq!(
        c.vms[0].cpu.id,
        vec![
            ("ID_AA64ISAR0_EL1.AES".into(), 0),
            ("ID_AA64PFR0_EL1.SVE".into(), 0)
        ]
    );
    let e = refuse(&id("\"ID_AA64ISAR0_EL1.NOPE\" = 0"));
    assert_error(
        &e,
        7,
        27,
        "vm.demo.cpu.id.ID_AA64ISAR0_EL1.NOPE",
        "unknown ID register field",
    );
    let e = refuse(&id("\"ID_AA64ISAR0_EL1.AES\" = 16"));
    assert_error(&e, 7, 26, "vm.demo.cpu.id.ID_AA64ISAR0_EL1.AES", "0..=15");
}

#[test]
fn cpu_model_knobs() {
    let cpu = |body: &str| alloc::format!("{MINIMAL}[vm.cpu]\n{body}\n");
    let e = refuse(&cpu("breakpoints = 1"));
    assert_error(&e, 7, 15, "vm.demo.cpu.breakpoints", "2..=16");
    let e = refuse(&cpu("breakpoints = 17"));
    assert_error(&e, 7, 15, "vm.demo.cpu.breakpoints", "2..=16");
    let e = refuse(&cpu("watchpoints = 1"));
    assert_error(&e, 7, 15, "vm.demo.cpu.watchpoints", "2..=16");
    // Valid values of knobs whose feature is not implemented yet: refused as such.
    for (body, column, key) in [
        ("breakpoints = 16", 15, "breakpoints"),
        ("watchpoints = 2", 15, "watchpoints"),
        ("sme_vl = 512", 10, "sme_vl"),
        ("spe = true", 7, "spe"),
    ] {
        let e = refuse(&cpu(body));
        let field = alloc::format!("vm.demo.cpu.{key}");
        assert_error(&e, 7, column, &field, "not implemented yet");
        assert!(e.reason.contains("remove the key"), "{e}");
    }
    // What every guest gets today is accepted.
    parse(&cpu("spe = false"));
    // SVE vector lengths are implemented: a valid one is accepted here (the
    // hardware check is the CPU model's, `sysreg::sve_cap`).
    assert_eq!(parse(&cpu("sve_vl = 256")).vms[0].cpu.sve_vl, Some(256));
    let e = refuse(&cpu("sve_vl = 200"));
    assert_error(&e, 7, 10, "vm.demo.cpu.sve_vl", "multiple of 128");
    let e = refuse(&cpu("sve_vl = 2176"));
    assert_error(&e, 7, 10, "vm.demo.cpu.sve_vl", "128..=2048");
    let e = refuse(&cpu("sme_vl = 384"));
    assert_error(&e, 7, 10, "vm.demo.cpu.sme_vl", "power of two");
    let e = refuse(&cpu("sme_vl = 64"));
    assert_error(&e, 7, 10, "vm.demo.cpu.sme_vl", "128..=2048");
    let e = refuse(&cpu("spe = 1"));
    assert_error(&e, 7, 7, "vm.demo.cpu.spe", "invalid type");
    let e = refuse(&cpu("cache = \"fast\""));
    assert_error(&e, 7, 9, "vm.demo.cpu.cache", "unknown cache policy");
    // Ctype1 = 0b101 is reserved.
    let e = refuse(&cpu("cache = { clidr = 5, ccsidr = [1] }"));
    assert_error(&e, 7, 19, "vm.demo.cpu.cache.clidr", "reserved");
    // Level 1 none, level 2 unified: a gap.
    let e = refuse(&cpu("cache = { clidr = 0x20, ccsidr = [1] }"));
    assert_error(
        &e,
        7,
        19,
        "vm.demo.cpu.cache.clidr",
        "beyond a level with none",
    );
    let e = refuse(&cpu("cache = { clidr = 0, ccsidr = [] }"));
    assert_error(&e, 7, 19, "vm.demo.cpu.cache.clidr", "no cache");
    // Separate L1 I+D needs two values.
    let e = refuse(&cpu("cache = { clidr = 3, ccsidr = [1] }"));
    assert_error(
        &e,
        7,
        31,
        "vm.demo.cpu.cache.ccsidr",
        "describes 2 cache(s) but 1",
    );
    let e = refuse(&cpu("cache = { clidr = 3, ccsidr = [1, 2], extra = 1 }"));
    assert_eq!(e.field, "vm.demo.cpu.cache.extra", "{e}");
}

// ---- checks against the machine and the files ----

/// QEMU virt as QEMU 10 describes it (the platform tests' fixture), with `cpus` CPUs
/// and 1 GiB of RAM.
fn virt(cpus: usize) -> HostFacts {
    let dtb = include_bytes!("../../tests/fixtures/virt-gicv3-max-4cpu.dtb");
    let platform = crate::platform::Platform::parse(dtb).unwrap();
    HostFacts::from_platform(&platform, cpus, 1 << 30)
}

fn files<'a>(list: &'a [(&'a str, usize)]) -> impl Fn(&str) -> Option<usize> + 'a {
    move |path| list.iter().find(|(p, _)| *p == path).map(|(_, size)| *size)
}

#[test]
fn a_good_config_passes_the_machine_checks() {
    let config = parse(MINIMAL);
    config
        .check_against(&virt(1), &files(&[("guests/demo.bin", 4096)]))
        .unwrap();
}

#[test]
fn more_vcpus_than_physical_cpus() {
    let config = parse(&alloc::format!(
        "{}{}",
        MINIMAL.replace("memory", "vcpus = 2\nmemory"),
        MINIMAL
            .replace("\"demo\"", "\"other\"")
            .replace("memory", "vcpus = 2\nmemory")
    ));
    let sizes = [("guests/demo.bin", 4096)];
    config.check_against(&virt(4), &files(&sizes)).unwrap();
    // Fewer CPUs than vCPUs: they share (time-sharing), evenly.
    config.check_against(&virt(3), &files(&sizes)).unwrap();
    assert_eq!(config.cpu_assignment(3).unwrap(), [vec![0, 1], vec![2, 0]]);
    assert_eq!(config.cpu_assignment(1).unwrap(), [vec![0, 0], vec![0, 0]]);
}

#[test]
fn cpu_assignment_fills_free_cpus_in_order() {
    let config = parse(&alloc::format!(
        "{}{}{}",
        MINIMAL.replace("memory", "vcpus = 2\nmemory"),
        MINIMAL
            .replace("\"demo\"", "\"pinned\"")
            .replace("memory", "cpus = [0]\nmemory"),
        MINIMAL.replace("\"demo\"", "\"third\"")
    ));
    assert_eq!(
        config.cpu_assignment(4).unwrap(),
        [vec![1, 2], vec![0], vec![3]]
    );
    // With one CPU fewer, the third VM shares the least-loaded CPU.
    assert_eq!(
        config.cpu_assignment(3).unwrap(),
        [vec![1, 2], vec![0], vec![0]]
    );
    // A pinned CPU the board does not have.
    let e = parse(&MINIMAL.replace("memory", "cpus = [4]\nmemory"))
        .cpu_assignment(4)
        .unwrap_err();
    assert_error(&e, 4, 8, "vm.demo.cpus", "physical CPU 4 does not exist");
}

#[test]
fn missing_image_is_named() {
    let config = parse(&alloc::format!(
        "{MINIMAL}initrd = \"rd.gz\"\ndtb = \"x.dtb\"\n"
    ));
    let e = config.check_against(&virt(1), &files(&[])).unwrap_err();
    assert_error(&e, 5, 10, "vm.demo.kernel", "cannot read `guests/demo.bin`");
    let e = config
        .check_against(&virt(1), &files(&[("guests/demo.bin", 10)]))
        .unwrap_err();
    assert_error(&e, 6, 10, "vm.demo.initrd", "cannot read `rd.gz`");
    let e = config
        .check_against(&virt(1), &files(&[("guests/demo.bin", 10), ("rd.gz", 10)]))
        .unwrap_err();
    assert_error(&e, 7, 7, "vm.demo.dtb", "cannot read `x.dtb`");
}

#[test]
fn image_larger_than_memory() {
    let config = parse(&MINIMAL.replace("128M", "2M"));
    let e = config
        .check_against(&virt(1), &files(&[("guests/demo.bin", (2 << 20) + 1)]))
        .unwrap_err();
    assert_error(
        &e,
        5,
        10,
        "vm.demo.kernel",
        "larger than the VM's memory (2M)",
    );
    let config = parse(&alloc::format!(
        "{}initrd = \"rd\"\n",
        MINIMAL.replace("128M", "2M")
    ));
    let e = config
        .check_against(
            &virt(1),
            &files(&[("guests/demo.bin", (1 << 20) + 1), ("rd", 1 << 20)]),
        )
        .unwrap_err();
    assert_error(&e, 4, 10, "vm.demo.memory", "together are");
    let config = parse(&alloc::format!("{MINIMAL}dtb = \"big.dtb\"\n"));
    let e = config
        .check_against(
            &virt(1),
            &files(&[("guests/demo.bin", 1), ("big.dtb", 3 << 20)]),
        )
        .unwrap_err();
    assert_error(&e, 6, 7, "vm.demo.dtb", "at most 2M");
}

#[test]
fn not_enough_ram() {
    let config = parse(&MINIMAL.replace("128M", "2G"));
    let e = config
        .check_against(&virt(1), &files(&[("guests/demo.bin", 1)]))
        .unwrap_err();
    assert_error(&e, 4, 10, "vm.demo.memory", "not enough RAM");
}

#[test]
fn passthrough_must_be_a_device_of_the_board() {
    let config = parse(&alloc::format!(
        "{MINIMAL}[[vm.passthrough]]\nbase = 0x0903_0000\nsize = 0x1000\n\
         [[vm.passthrough]]\nbase = 0x0b00_0000\nsize = 0x1000\n"
    ));
    let e = config
        .check_against(&virt(1), &files(&[("guests/demo.bin", 1)]))
        .unwrap_err();
    assert_error(
        &e,
        9,
        1,
        "vm.demo.passthrough[1]",
        "0xb000000..0xb001000 is not a device of the board (no device-tree node describes",
    );
    // Part of the window is a device, the rest is not.
    let config = parse(&alloc::format!(
        "{MINIMAL}[[vm.passthrough]]\nbase = 0x0903_0000\nsize = 0x2000\n"
    ));
    let e = config
        .check_against(&virt(1), &files(&[("guests/demo.bin", 1)]))
        .unwrap_err();
    assert_error(&e, 6, 1, "vm.demo.passthrough[0]", "nothing is known");
    assert!(e.reason.contains("describes 0x9031000..0x9032000"), "{e}");
}

/// A passthrough window with `irqs` on QEMU virt, checked against the machine.
/// Its `irqs` are on line 9 after MINIMAL.
fn passthrough_on_virt(vm: &str, base: &str, irqs: &str) -> Result<(), ConfigError> {
    let text =
        alloc::format!("{vm}[[vm.passthrough]]\nbase = {base}\nsize = 0x1000\nirqs = {irqs}\n");
    parse(&text).check_against(&virt(1), &files(&[("guests/demo.bin", 1)]))
}

#[test]
fn devices_that_do_dma_are_never_passed_through() {
    // QEMU virt's PL061 GPIO and PL031 RTC do no DMA.
    passthrough_on_virt(MINIMAL, "0x0903_0000", "[39]").unwrap();
    passthrough_on_virt(MINIMAL, "0x0901_0000", "[34]").unwrap();
    passthrough_on_virt(MINIMAL, "0x0903_0000", "[]").unwrap();
    // A virtio-mmio transport, fw_cfg (with its DMA interface), the PCIe host bridge.
    for (base, irqs, path, why) in [
        (
            "0x0a00_0000",
            "[48]",
            "/virtio_mmio@a000000",
            "`dma-coherent`",
        ),
        (
            "0x0a00_3000",
            "[]",
            "/virtio_mmio@a003000",
            "`dma-coherent`",
        ),
        ("0x0902_0000", "[]", "/fw-cfg@9020000", "`dma-coherent`"),
        ("0x40_1000_0000", "[]", "/pcie@10000000", "`dma-coherent`"),
    ] {
        let e = passthrough_on_virt(MINIMAL, base, irqs).unwrap_err();
        assert_error(
            &e,
            6,
            1,
            "vm.demo.passthrough[0]",
            "can master the bus (do DMA)",
        );
        assert!(e.reason.contains(path) && e.reason.contains(why), "{e}");
        assert!(e.reason.contains("never passed through"), "{e}");
    }
    // Whatever else the node says, by each of the rules (see platform::bus_master).
    let mut host = virt(1);
    let gpio = host
        .devices
        .iter_mut()
        .find(|d| d.path == "/pl061@9030000")
        .unwrap();
    gpio.bus_master = Some(crate::platform::BusMaster::GenericName("usb"));
    let text = alloc::format!("{MINIMAL}[[vm.passthrough]]\nbase = 0x0903_0000\nsize = 0x1000\n");
    let e = parse(&text)
        .check_against(&host, &files(&[("guests/demo.bin", 1)]))
        .unwrap_err();
    assert!(e.reason.contains("node name `usb`"), "{e}");
    // A disabled node: the firmware keeps it.
    let gpio = host
        .devices
        .iter_mut()
        .find(|d| d.path == "/pl061@9030000")
        .unwrap();
    gpio.bus_master = None;
    gpio.enabled = false;
    let e = parse(&text)
        .check_against(&host, &files(&[("guests/demo.bin", 1)]))
        .unwrap_err();
    assert!(e.reason.contains("not available"), "{e}");
}

#[test]
fn only_the_devices_own_interrupts() {
    // INTID 40 is SPI 8, which no device of QEMU virt lists.
    let e = passthrough_on_virt(MINIMAL, "0x0903_0000", "[39, 40]").unwrap_err();
    assert_error(
        &e,
        9,
        13,
        "vm.demo.passthrough[0].irqs",
        "INTID 40 is not an interrupt of the device",
    );
    assert!(e.reason.contains("/pl061@9030000 lists 39"), "{e}");
    // The RTC's interrupt given with the GPIO's window.
    let e = passthrough_on_virt(MINIMAL, "0x0903_0000", "[34]").unwrap_err();
    assert_error(&e, 9, 9, "vm.demo.passthrough[0].irqs", "INTID 34 is not");
    // The host UART's interrupt (33): the emulated PL011's in a VM with a console ...
    let e = refuse(&alloc::format!(
        "{MINIMAL}[[vm.passthrough]]\nbase = 0x0903_0000\nsize = 0x1000\nirqs = [33]\n"
    ));
    assert_error(
        &e,
        9,
        9,
        "vm.demo.passthrough[0].irqs",
        "INTID 33 is the interrupt of this VM's emulated PL011 console",
    );
    // ... and the hypervisor's own UART's in one without.
    let quiet = alloc::format!("{MINIMAL}console = \"none\"\n");
    let e = passthrough_on_virt(&quiet, "0x0903_0000", "[33]").unwrap_err();
    assert_error(
        &e,
        10,
        9,
        "vm.demo.passthrough[0].irqs",
        "INTID 33 is the interrupt of the hypervisor's console UART /pl011@9000000",
    );
    // SGIs, PPIs (timers, GIC maintenance) and special INTIDs, whatever the device.
    for (irq, words) in [
        (1, "INTID 1 is an SGI"),
        (15, "INTID 15 is an SGI"),
        (25, "INTID 25 is a PPI"),
        (27, "INTID 27 is a PPI"),
        (1023, "INTID 1023 is one of the GIC's special INTIDs"),
    ] {
        let e = refuse(&alloc::format!(
            "{MINIMAL}[[vm.passthrough]]\nbase = 0x0903_0000\nsize = 0x1000\nirqs = [{irq}]\n"
        ));
        assert_error(&e, 9, 9, "vm.demo.passthrough[0].irqs", words);
    }
}

#[test]
fn kernel_plan_errors_point_at_the_kernel() {
    let config = parse(&MINIMAL.replace("128M", "2M"));
    let vm = &config.vms[0];
    // An arm64 Image whose image_size (bss included) exceeds the VM's 2M.
    let mut image = vec![0u8; 64];
    image[16..24].copy_from_slice(&(4u64 << 20).to_le_bytes());
    image[0x38..0x3c].copy_from_slice(b"ARM\x64");
    let e = config.plan_kernel(vm, &image).unwrap_err();
    assert_error(
        &e,
        5,
        10,
        "vm.demo.kernel",
        "`guests/demo.bin`: the image needs guest memory",
    );
    image[16..24].copy_from_slice(&(1u64 << 20).to_le_bytes());
    let plan = config.plan_kernel(vm, &image).unwrap();
    assert_eq!(
        (plan.format, plan.entry),
        (ImageFormat::Arm64Image, DEFAULT_RAM_BASE)
    );
    let e = config.plan_kernel(vm, b"just bytes").unwrap_err();
    assert!(e.reason.contains("not an arm64 Image or an ELF"), "{e}");
}

#[test]
fn bundle_carries_config_and_images_to_the_same_checks() {
    let kernel: Vec<u8> = {
        let mut k = vec![0u8; 4096];
        k[16..24].copy_from_slice(&8192u64.to_le_bytes());
        k[0x38..0x3c].copy_from_slice(b"ARM\x64");
        k
    };
    let bytes = write_bundle(&[
        (CONFIG_NAME, MINIMAL.as_bytes()),
        ("guests/demo.bin", &kernel),
    ]);
    let bundle = Bundle::parse(&bytes).unwrap();
    let config = SystemConfig::parse(bundle.config_text().unwrap(), CONFIG_NAME).unwrap();
    config
        .check_against(&virt(1), &|p: &str| bundle.file(p).map(<[u8]>::len))
        .unwrap();
    let vm = &config.vms[0];
    let plan = config
        .plan_kernel(vm, bundle.file(&vm.kernel.path).unwrap())
        .unwrap();
    assert_eq!(plan.segments[0].mem_size, 8192);
}

// ---- the example configs under boards/ ----

#[test]
fn board_examples_parse_and_fit_a_4_cpu_virt() {
    let examples = [
        (
            "demo.toml",
            include_str!("../../boards/qemu-virt/demo.toml"),
        ),
        (
            "linux.toml",
            include_str!("../../boards/qemu-virt/linux.toml"),
        ),
        (
            "two-vm.toml",
            include_str!("../../boards/qemu-virt/two-vm.toml"),
        ),
    ];
    let host = HostFacts {
        cpus: 4,
        ram_bytes: 2 << 30,
        ..virt(4)
    };
    let any_file = |_: &str| Some(4096);
    for (name, text) in examples {
        let config = SystemConfig::parse(text, name).unwrap_or_else(|e| panic!("{e}"));
        config
            .check_against(&host, &any_file)
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let demo = SystemConfig::parse(examples[0].1, "demo.toml").unwrap();
    assert_eq!(demo.vms.len(), 1);
    assert_eq!((demo.vms[0].vcpus, demo.vms[0].memory), (1, 128 << 20));
    assert_eq!(demo.vms[0].kernel.path, "guests/demo.bin");
    let linux = SystemConfig::parse(examples[1].1, "linux.toml").unwrap();
    let vm = &linux.vms[0];
    assert_eq!((vm.vcpus, vm.memory), (2, 512 << 20));
    assert_eq!(vm.kernel.path, "linux/Image");
    assert_eq!(vm.initrd.as_deref(), Some("linux/initramfs.cpio.gz"));
    assert_eq!(
        vm.bootargs.as_deref(),
        Some("console=ttyAMA0 earlycon rdinit=/init")
    );
    let two = SystemConfig::parse(examples[2].1, "two-vm.toml").unwrap();
    assert_eq!(two.vms.len(), 2);
    assert_eq!(two.console.input, Some(0));
    assert_eq!(two.cpu_assignment(4).unwrap(), [vec![0, 1], vec![2]]);
    // It lists CPU 2: a 2-CPU machine is refused.
    assert!(
        two.check_against(&HostFacts { cpus: 2, ..host }, &any_file)
            .is_err()
    );
}

#[test]
fn sve_vl_is_checked_against_the_hosts_vector_lengths() {
    let c = parse(&alloc::format!("{MINIMAL}[vm.cpu]\nsve_vl = 512\n"));
    let any_file = |_: &str| Some(4096);
    let with = |vqs| HostFacts {
        sve_vqs: vqs,
        ..virt(4)
    };
    // Unknown (a device tree does not say): left to the boot-time check.
    c.check_against(&with(None), &any_file).unwrap();
    // Every length to 2048 bits (QEMU -cpu max), or exactly up to 512.
    c.check_against(&with(Some(0xffff)), &any_file).unwrap();
    c.check_against(&with(Some(0b1111)), &any_file).unwrap();
    let e = c.check_against(&with(Some(0b11)), &any_file).unwrap_err();
    assert_error(
        &e,
        7,
        10,
        "vm.demo.cpu.sve_vl",
        "above the longest SVE vector length",
    );
    assert!(e.reason.contains("256 bits"), "{e}");
    let e = c.check_against(&with(Some(0)), &any_file).unwrap_err();
    assert_error(&e, 7, 10, "vm.demo.cpu.sve_vl", "no SVE");
    // Powers of two only: 384 is not one of them.
    let c = parse(&alloc::format!("{MINIMAL}[vm.cpu]\nsve_vl = 384\n"));
    let e = c.check_against(&with(Some(0b1011)), &any_file).unwrap_err();
    assert_error(&e, 7, 10, "vm.demo.cpu.sve_vl", "not an SVE vector length");
}

#[test]
fn duplicate_key_names_its_table() {
    let e = refuse(&MINIMAL.replace("memory", "name = \"again\"\nmemory"));
    assert_eq!(e.position, Some(Position { line: 4, column: 1 }), "{e}");
    assert_eq!(e.field, "vm.demo", "{e}");
    assert!(e.reason.contains("duplicate key"), "{e}");
}

// ---- randomized: the config parser and the kernel image headers ----

/// Lines a config may hold, right or wrong, for the mutator to insert.
const FRAGMENTS: &[&str] = &[
    "[[vm]]",
    "[[vm.passthrough]]",
    "[vm.cpu]",
    "[vm.cpu.id]",
    "[console]",
    "name = \"x\"",
    "name = \"demo\"",
    "memory = \"64M\"",
    "memory = 0",
    "memory = \"18446744073709551615T\"",
    "base = 0x7f_ffe0_0000",
    "base = -1",
    "vcpus = 64",
    "cpus = [0, 1, 255]",
    "cpus = []",
    "kernel = { path = \"k\", load = 0x4000_0000, entry = 0x4000_0000 }",
    "kernel = { path = \"k\", format = \"elf\" }",
    "initrd = \"\"",
    "dtb = \"d\"",
    "console = \"none\"",
    "base = 0x0903_0000",
    "base = 0x0a00_0000",
    "size = 0x1000",
    "size = 0xffff_ffff_ffff_f000",
    "irqs = [39]",
    "irqs = [33, 48, 1019, 1020, 16]",
    "cache = { clidr = 0x0a200023, ccsidr = [1, 2, 3] }",
    "cache = \"host\"",
    "sve_vl = 256",
    "spe = false",
    "\"ID_AA64ISAR0_EL1.AES\" = 0",
    "switch_key = \"ctrl-b\"",
    "input = \"x\"",
    "x = [[[[[[[[1]]]]]]]]",
    "a.b.c.d = { e = { f = 1 } }",
];

fn seed_configs() -> Vec<&'static str> {
    vec![
        MINIMAL,
        FULL,
        include_str!("../../boards/qemu-virt/demo.toml"),
        include_str!("../../boards/qemu-virt/two-vm.toml"),
        include_str!("../../boards/qemu-virt/conformance.toml"),
        include_str!("../../boards/qemu-virt/isolation.toml"),
        include_str!("../../boards/qemu-virt/cpumodel-explicit.toml"),
    ]
}

/// Mutated configs (bytes and whole lines) through the parser and the machine checks:
/// no panic, errors inside the file, accepted configs keep their promises.
#[test]
fn random_configs_never_panic() {
    let host = crate::fuzzing::qemu_virt_facts();
    let seeds = seed_configs();
    let mut rng = crate::testing::Rng::new(13);
    let mut accepted = 0;
    for _ in 0..2500 {
        let mut text: Vec<u8> = rng.pick(&seeds).as_bytes().to_vec();
        for _ in 0..1 + rng.below(2) {
            if rng.one_in(2) {
                rng.mutate(&mut text);
            } else {
                let starts: Vec<usize> = core::iter::once(0)
                    .chain(
                        text.iter()
                            .enumerate()
                            .filter(|(_, b)| **b == b'\n')
                            .map(|(i, _)| i + 1),
                    )
                    .collect();
                let at = *rng.pick(&starts);
                let line = alloc::format!("{}\n", rng.pick(FRAGMENTS));
                text.splice(at..at, line.bytes());
            }
        }
        accepted += usize::from(crate::fuzzing::config(&text, &host));
    }
    // The mutations are small enough that many configs still parse, so the checks
    // after parsing run too.
    assert!(accepted > 150, "only {accepted} mutated configs parsed");
}

/// An arm64 Image header or an ELF header with random fields, behind the bytes that
/// choose how [`crate::fuzzing::kernel_image`] reads it.
fn random_kernel(rng: &mut crate::testing::Rng) -> Vec<u8> {
    // How it is read; a raw binary's load and entry addresses; RAM base and size.
    let kind = rng.below(4) as u8;
    let mut out = vec![kind];
    if kind == 3 {
        for _ in 0..2 {
            let at = 0x4000_0000 + rng.below(1 << 24) as u64;
            out.extend_from_slice(
                &(if rng.one_in(4) { rng.interesting() } else { at }).to_le_bytes(),
            );
        }
    }
    out.extend_from_slice(&(0x4000_0000u64 + rng.below(4) as u64 * (2 << 20)).to_le_bytes());
    out.push(rng.below(64) as u8);
    let pick = |rng: &mut crate::testing::Rng, near: u64| {
        if rng.one_in(2) {
            near.wrapping_add(rng.below(1 << 22) as u64)
        } else {
            rng.interesting()
        }
    };
    let mut file = vec![0u8; 64 + rng.below(4096)];
    if rng.one_in(2) {
        // booting.rst header: text_offset @8, image_size @16, flags @24, magic @0x38.
        let text_offset = pick(rng, 0);
        let image_size = pick(rng, 0);
        file[8..16].copy_from_slice(&text_offset.to_le_bytes());
        file[16..24].copy_from_slice(&image_size.to_le_bytes());
        file[24..32].copy_from_slice(&rng.interesting().to_le_bytes());
        file[0x38..0x3c].copy_from_slice(b"ARM\x64");
    } else {
        // ELF64 header and up to four program headers right after it.
        file.resize(file.len().max(64 + 4 * 56), 0);
        file[0..4].copy_from_slice(b"\x7fELF");
        file[4] = 2;
        file[5] = 1;
        file[16..18].copy_from_slice(&2u16.to_le_bytes());
        file[18..20].copy_from_slice(&0xb7u16.to_le_bytes());
        file[24..32].copy_from_slice(&pick(rng, 0x4008_0000).to_le_bytes());
        file[32..40]
            .copy_from_slice(&(if rng.one_in(8) { rng.interesting() } else { 64 }).to_le_bytes());
        file[54..56].copy_from_slice(&56u16.to_le_bytes());
        let phnum = rng.below(5) as u16;
        file[56..58].copy_from_slice(&phnum.to_le_bytes());
        for i in 0..phnum as usize {
            let ph = 64 + i * 56;
            file[ph..ph + 4].copy_from_slice(&(if rng.one_in(6) { 2u32 } else { 1 }).to_le_bytes());
            let vaddr = pick(rng, 0x4008_0000);
            let fields = [
                pick(rng, 0),
                vaddr,
                if rng.one_in(2) {
                    vaddr
                } else {
                    pick(rng, 0x4000_0000)
                },
                pick(rng, 0),
                pick(rng, 0),
            ];
            for (k, v) in fields.iter().enumerate() {
                file[ph + 8 + 8 * k..ph + 16 + 8 * k].copy_from_slice(&v.to_le_bytes());
            }
        }
    }
    if rng.one_in(4) {
        rng.mutate(&mut file);
    }
    out.extend_from_slice(&file);
    out
}

/// Kernel image headers with random fields through the loader's planning: no panic,
/// and every plan inside the VM's RAM.
#[test]
fn random_kernel_images_never_panic() {
    let mut rng = crate::testing::Rng::new(6);
    let mut planned = 0;
    for _ in 0..4000 {
        planned += usize::from(crate::fuzzing::kernel_image(&random_kernel(&mut rng)));
    }
    assert!(
        planned > 400,
        "only {planned} random images could be placed"
    );
}

/// Issue 13: nesting deeper than the EL2 stack is known to survive is refused before
/// any parser recurses: arrays, inline tables, table headers and dotted keys.
#[test]
fn deep_nesting_is_a_clean_error() {
    let deep = super::nesting::MAX_NESTING + 1;
    let cases = [
        format!(
            "{MINIMAL}irqs = {}{}\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        ),
        format!(
            "{MINIMAL}x = {}{}\n",
            "{a = ".repeat(deep),
            "}".repeat(deep)
        ),
        format!("{MINIMAL}[{}]\n", vec!["a"; deep].join(".")),
        format!("{MINIMAL}{} = 1\n", vec!["a"; deep].join(".")),
        format!(
            "{MINIMAL}[[vm.cpu.id]]\n{} = 1\n",
            vec!["a"; deep - 3].join(".")
        ),
        format!(
            "{MINIMAL}x = [{{ {} = 1 }}]\n",
            vec!["a"; deep - 1].join(".")
        ),
    ];
    for text in &cases {
        let e = refuse(text);
        assert_eq!(e.file, FILE, "{e}");
        let last_line = text.lines().count() as u32;
        assert_eq!(e.position.map(|p| p.line), Some(last_line), "{e}");
        assert!(e.reason.contains("nested more than"), "{e}");
    }
    // At the limit, and brackets, braces and dots inside strings and comments, are
    // left to the parser (which names the unknown key, not the nesting).
    let fine = [
        format!(
            "{MINIMAL}x = {}{}\n",
            "[".repeat(deep - 1),
            "]".repeat(deep - 1)
        ),
        format!(
            "{MINIMAL}x = \"{}\" # {}\n",
            "[{.".repeat(1000),
            "[{.".repeat(1000)
        ),
        format!("{MINIMAL}x = '''\n{}'''\n", "[{.\n".repeat(1000)),
        format!("{MINIMAL}x = [1.5, 2.5, {}]\n", vec!["0.5"; 100].join(", ")),
    ];
    for text in &fine {
        let e = refuse(text);
        assert!(!e.reason.contains("nested more than"), "{e}");
    }
    // Every shipped config passes the check unchanged (their parse is tested elsewhere).
    parse(MINIMAL);
}

#[test]
fn pmu_knobs_are_checked_then_fit_the_hosts_pmu() {
    let cpu = |body: &str| alloc::format!("{MINIMAL}[vm.cpu]\n{body}\n");
    let c = parse(&cpu("pmu = true\npmu_counters = 4"));
    assert_eq!(c.vms[0].cpu.pmu, Some(true));
    assert_eq!(c.vms[0].cpu.pmu_counters, Some(4));
    assert_eq!(parse(MINIMAL).vms[0].cpu.pmu, None, "as the host");
    let e = refuse(&cpu("pmu_counters = 0"));
    assert_error(&e, 7, 16, "vm.demo.cpu.pmu_counters", "1..=31");
    let e = refuse(&cpu("pmu_counters = 32"));
    assert_error(&e, 7, 16, "vm.demo.cpu.pmu_counters", "1..=31");
    let e = refuse(&cpu("pmu = false\npmu_counters = 2"));
    assert_error(&e, 8, 16, "vm.demo.cpu.pmu_counters", "no PMU");
    let e = refuse(&cpu("pmu = 1"));
    assert_error(&e, 7, 7, "vm.demo.cpu.pmu", "invalid type");

    let sizes = [("guests/demo.bin", 1)];
    let host = |n| HostFacts {
        pmu_counters: n,
        ..virt(1)
    };
    // Unknown (fvconfig with a --dtb): left to the boot.
    parse(&cpu("pmu_counters = 31"))
        .check_against(&host(None), &files(&sizes))
        .unwrap();
    parse(&cpu("pmu_counters = 6"))
        .check_against(&host(Some(6)), &files(&sizes))
        .unwrap();
    let e = parse(&cpu("pmu_counters = 7"))
        .check_against(&host(Some(6)), &files(&sizes))
        .unwrap_err();
    assert_error(&e, 7, 16, "vm.demo.cpu.pmu_counters", "host's PMU has 6");
    let e = parse(&cpu("pmu = true"))
        .check_against(&host(Some(0)), &files(&sizes))
        .unwrap_err();
    assert_error(&e, 7, 7, "vm.demo.cpu.pmu", "no PMUv3");
    let e = parse(&cpu("pmu_counters = 2"))
        .check_against(&host(Some(0)), &files(&sizes))
        .unwrap_err();
    assert_error(&e, 7, 16, "vm.demo.cpu.pmu_counters", "no PMUv3");
    // As the host, on a host without a PMU: no PMU, no error.
    parse(MINIMAL)
        .check_against(&host(Some(0)), &files(&sizes))
        .unwrap();
    parse(&cpu("pmu = false"))
        .check_against(&host(Some(0)), &files(&sizes))
        .unwrap();
}
