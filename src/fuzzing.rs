//! Checks of every parser and decoder that reads input from outside the hypervisor,
//! each a function of raw bytes that panics when the code under test panics or breaks
//! an invariant it promises. Two drivers share them:
//!
//! - `cargo test` (so `make test`): the randomized tests beside each module feed them
//!   inputs from [`crate::testing::Rng`] with a fixed seed, a few thousand each, in a
//!   few seconds in all;
//! - `cargo fuzz` (tests/fuzz, nightly): one fuzz target per function, for long runs.
//!
//! Host input: the config ([`config`]), the boot bundle ([`bundle`]), the device tree
//! ([`device_tree`]), the kernel image headers ([`kernel_image`]). Guest input: the
//! exception syndrome and MMIO access decode ([`trap`]), and PSCI/SMCCC calls
//! ([`psci`]).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::config::bundle::{Bundle, write_bundle};
use crate::config::{HostFacts, SystemConfig};
use crate::platform::Platform;
use crate::psci::{self, PsciOutcome, PsciVm, VcpuPower};
use crate::trap::{self, Exit};
use crate::vm::image::{ImageKind, plan_load};

/// The fuzzer's bytes, read front to back; reads past the end give zeros.
pub struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Input(data)
    }

    pub fn u8(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }

    pub fn u64(&mut self) -> u64 {
        let mut v = [0u8; 8];
        for b in &mut v {
            *b = self.u8();
        }
        u64::from_le_bytes(v)
    }

    /// Whatever is left.
    pub fn rest(&mut self) -> &'a [u8] {
        core::mem::take(&mut self.0)
    }
}

/// QEMU virt (QEMU 10, `-cpu max -smp 4 -m 1G`) as the config checks see it.
pub fn qemu_virt_facts() -> HostFacts {
    let dtb = include_bytes!("../tests/fixtures/virt-gicv3-max-4cpu.dtb");
    match Platform::parse(dtb) {
        Ok(p) => HostFacts::from_platform(&p, 4, 1 << 30),
        Err(e) => panic!("the QEMU virt fixture does not parse: {e}"),
    }
}

/// A config file: parsed, and when it parses, checked against QEMU virt and with its
/// kernels planned. An error names the file and a position inside the text; a config
/// that parses keeps the promises `SystemConfig` documents. Returns whether it parsed.
pub fn config(data: &[u8], host: &HostFacts) -> bool {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count() as u32 + 1;
    let config = match SystemConfig::parse(&text, "fuzz.toml") {
        Ok(c) => c,
        Err(e) => {
            assert_eq!(e.file, "fuzz.toml");
            if let Some(p) = e.position {
                assert!(p.line >= 1 && p.line <= lines && p.column >= 1, "{e}");
            }
            assert!(format!("{e}").starts_with("fuzz.toml"), "{e}");
            return false;
        }
    };
    assert!(!config.vms.is_empty());
    let mut cpus_taken = Vec::new();
    let mut irqs_taken = Vec::new();
    for (i, vm) in config.vms.iter().enumerate() {
        assert!(config.vms[..i].iter().all(|other| other.name != vm.name));
        assert!(vm.memory > 0 && vm.memory % crate::config::GUEST_BLOCK == 0);
        assert!(vm.base % crate::config::GUEST_BLOCK == 0);
        assert!(vm.base + vm.memory <= crate::config::GUEST_IPA_LIMIT);
        assert!(vm.vcpus >= 1 && vm.vcpus <= crate::config::MAX_VCPUS);
        if let Some(cpus) = &vm.cpus {
            assert_eq!(cpus.len(), vm.vcpus);
            for c in cpus {
                assert!(!cpus_taken.contains(c), "CPU {c} given twice");
                cpus_taken.push(*c);
            }
        }
        for pt in &vm.passthrough {
            assert!(
                pt.base % crate::config::GUEST_PAGE == 0
                    && pt.size % crate::config::GUEST_PAGE == 0
            );
            assert!(pt.size > 0 && pt.base + pt.size <= crate::config::GUEST_IPA_LIMIT);
            let ram = vm.base..vm.base + vm.memory;
            assert!(pt.base >= ram.end || pt.base + pt.size <= ram.start);
            for &irq in &pt.irqs {
                assert!((32..=1019).contains(&irq), "INTID {irq} accepted");
                assert!(!(vm.console == crate::config::VmConsole::Pl011 && irq == 33));
                assert!(!irqs_taken.contains(&irq), "INTID {irq} given twice");
                irqs_taken.push(irq);
            }
        }
        // Not implemented yet: never accepted.
        assert!(vm.cpu.breakpoints.is_none() && vm.cpu.watchpoints.is_none());
        assert!(vm.cpu.sme_vl.is_none() && !vm.cpu.spe);
        // An accepted SVE vector length is a multiple of 128 bits, at most 2048.
        assert!(
            vm.cpu
                .sve_vl
                .is_none_or(|vl| vl % 128 == 0 && (128..=2048).contains(&vl))
        );
    }
    if let Some(input) = config.console.input {
        assert_eq!(config.vms[input].console, crate::config::VmConsole::Pl011);
    }
    let checked = config.check_against(host, &|_| Some(4096));
    if checked.is_ok() {
        // Every passthrough window passed: no bus master, only its devices' interrupts.
        for pt in config.vms.iter().flat_map(|vm| &vm.passthrough) {
            let window = pt.base..pt.base + pt.size;
            let inside = host.devices.iter().filter(|d| {
                d.regs
                    .iter()
                    .any(|&(b, s)| b < window.end && window.start < b.saturating_add(s))
            });
            let mut irqs = Vec::new();
            for d in inside {
                assert!(d.bus_master.is_none(), "{} passed through", d.path);
                irqs.extend(d.irqs.iter().copied());
            }
            assert!(pt.irqs.iter().all(|i| irqs.contains(i)));
        }
        let assignment = config.cpu_assignment(host.cpus).unwrap();
        assert_eq!(assignment.len(), config.vms.len());
    }
    if let Err(e) = checked {
        assert!(format!("{e}").starts_with("fuzz.toml"), "{e}");
    }
    for vm in &config.vms {
        let _ = config.plan_kernel(vm, data);
    }
    true
}

/// A boot bundle: parsed; every file it yields is a slice of the input, found again by
/// its name; a bundle written from those files parses to the same files. Returns
/// whether it parsed.
pub fn bundle(data: &[u8]) -> bool {
    let Ok(bundle) = Bundle::parse(data) else {
        return false;
    };
    let range = data.as_ptr_range();
    let files: Vec<(&str, &[u8])> = bundle.files().collect();
    for &(name, contents) in &files {
        assert!(!name.is_empty() && !name.contains('\0'));
        let r = contents.as_ptr_range();
        assert!(r.start >= range.start && r.end <= range.end);
        assert!(bundle.file(name).is_some());
    }
    let _ = bundle.config_text();
    let rewritten = write_bundle(&files);
    let again = Bundle::parse(&rewritten).expect("a bundle written from a parsed one parses");
    let names = |b: &Bundle<'_>| b.files().map(|(n, _)| String::from(n)).collect::<Vec<_>>();
    assert_eq!(names(&again).len(), files.len());
    for (name, contents) in &files {
        assert_eq!(
            again.file(name),
            bundle.file(name),
            "{name}: {} bytes",
            contents.len()
        );
    }
    true
}

/// A host device tree: parsed with no panic; what parses keeps its promises (ranges
/// that do not wrap, an initrd inside RAM, INTIDs in the GIC's ranges), and the
/// config's facts and the boot log can be made from it. Returns whether it parsed.
pub fn device_tree(data: &[u8]) -> bool {
    let _ = crate::platform::fdt_total_size(data);
    let p = match Platform::parse(data) {
        Ok(p) => p,
        Err(e) => {
            assert!(!format!("{e}").is_empty());
            return false;
        }
    };
    assert!(!p.memory.is_empty() && !p.cpus.is_empty());
    for m in p.memory.iter().chain(&p.reserved) {
        assert!(m.base.checked_add(m.size).is_some(), "{m}");
    }
    if let Some(initrd) = p.initrd {
        assert!(p.is_ram(&initrd), "initrd {initrd} outside RAM");
    }
    for d in &p.devices {
        for r in &d.regs {
            assert!(r.base.checked_add(r.size).is_some(), "{}: {r}", d.path);
        }
        // SPIs, PPIs and the extended ranges (GIC architecture, INTID ranges).
        assert!(d.irqs.iter().all(|&i| (16..1020).contains(&i)
            || (1056..1120).contains(&i)
            || (4096..5120).contains(&i)));
    }
    if let Some(g) = &p.gic {
        let _ = g.maintenance_ppi();
    }
    let _ = p.summary();
    let facts = HostFacts::from_platform(&p, p.cpus.len(), 1 << 30);
    assert!(facts.devices.len() <= p.devices.len());
    true
}

/// A kernel image: the first bytes choose how it is read and the VM's RAM, the rest is
/// the file. A plan keeps every segment and the entry point inside RAM, segments
/// inside the file and apart from each other. Returns whether it could be placed.
pub fn kernel_image(data: &[u8]) -> bool {
    let mut input = Input::new(data);
    let kind = match input.u8() % 4 {
        0 => ImageKind::Auto,
        1 => ImageKind::Arm64Image,
        2 => ImageKind::Elf,
        _ => ImageKind::Raw {
            load: input.u64(),
            entry: input.u64(),
        },
    };
    let base = (input.u64() % (1 << 40)) & !((2 << 20) - 1);
    let size = ((u64::from(input.u8()) % 64) + 1) << 21;
    let bytes = input.rest();
    let Ok(plan) = plan_load(&kind, bytes, base, size) else {
        return false;
    };
    let ram = base..base + size;
    assert!(
        ram.contains(&plan.entry),
        "entry {:#x} outside {ram:x?}",
        plan.entry
    );
    for (i, s) in plan.segments.iter().enumerate() {
        let end = s.guest_pa.checked_add(s.mem_size).expect("segment wraps");
        assert!(
            s.guest_pa >= ram.start && end <= ram.end,
            "{s:x?} outside {ram:x?}"
        );
        assert!(s.file.start <= s.file.end && s.file.end <= bytes.len());
        assert!(s.file.len() as u64 <= s.mem_size);
        for t in &plan.segments[..i] {
            assert!(
                end <= t.guest_pa || t.guest_pa + t.mem_size <= s.guest_pa,
                "segments overlap"
            );
        }
    }
    let f = plan.footprint();
    assert!(f.start >= ram.start && f.end <= ram.end);
    true
}

/// What a guest can put in the exception syndrome (ESR_EL2 with FAR_EL2, HPFAR_EL2):
/// decoded with no panic into fields in their ranges, and for a data abort the
/// emulated load's register value (sign and zero extension) and the MMIO bus claim.
/// Returns the decoded exit.
pub fn trap(data: &[u8]) -> Exit {
    let mut input = Input::new(data);
    let mut esr = input.u64();
    // Half the time one of the classes the decoder names, so their ISS is reached.
    const CLASSES: [u64; 14] = [
        0x01, 0x07, 0x0e, 0x16, 0x17, 0x18, 0x19, 0x1d, 0x20, 0x24, 0x30, 0x32, 0x34, 0x3c,
    ];
    let pick = input.u8();
    if pick & 1 == 0 {
        esr = (esr & !(0x3f << 26)) | (CLASSES[(pick as usize >> 1) % CLASSES.len()] << 26);
    }
    let (far, hpfar, value) = (input.u64(), input.u64(), input.u64());
    assert!(matches!(trap::instruction_length(esr), 2 | 4));
    let exit = trap::decode(esr, far, hpfar);
    match exit {
        Exit::SysReg(a) => assert!(a.rt < 32),
        Exit::Wfx { rt, .. } => assert!(rt.is_none_or(|r| r < 32)),
        Exit::DataAbort(da) => {
            assert!(matches!(da.sas, 1 | 2 | 4 | 8) && da.srt < 32);
            assert_eq!(da.ipa & 0xfff, far & 0xfff);
            // What the MMIO bus hands back is masked to the access size.
            let read = value & crate::devices::size_mask(da.sas);
            let v = crate::vm::exit::extend_load(read, da.sas, da.sse, da.sf);
            let bits = u32::from(da.sas) * 8;
            if !da.sf {
                assert_eq!(v >> 32, 0);
            }
            // The low `bits` are the value read; above them, zeros or copies of its
            // sign bit, up to the register's width.
            let width = if da.sf { 64 } else { 32 };
            if bits < width {
                let low = v & crate::devices::size_mask(da.sas);
                assert_eq!(low, read);
                let sign = da.sse && (read >> (bits - 1)) & 1 == 1;
                let high = v >> bits;
                let ones = if width == 64 {
                    u64::MAX >> bits
                } else {
                    (1u64 << (32 - bits)) - 1
                };
                assert_eq!(
                    high,
                    if sign { ones } else { 0 },
                    "{da:?} read {read:#x} -> {v:#x}"
                );
            }
            mmio_claim(da.ipa, da.sas);
        }
        Exit::InstAbort(ia) => assert_eq!(ia.ipa & 0xfff, far & 0xfff),
        _ => {}
    }
    exit
}

/// The MMIO bus of a VM with QEMU virt's emulated windows: a claim covers only bytes
/// inside the claimed window.
fn mmio_claim(ipa: u64, size: u8) {
    struct Nothing;
    impl crate::devices::MmioDevice for Nothing {
        fn name(&self) -> &str {
            "nothing"
        }
        fn read(&mut self, _: crate::devices::MmioAccess) -> u64 {
            u64::MAX
        }
        fn write(&mut self, _: crate::devices::MmioAccess, _: u64) {}
    }
    let mut bus = crate::devices::MmioBus::new();
    let windows = [
        (0, 0x1000),
        (0x0800_0000u64, 0x1_0000u64),
        (0x0900_0000, 0x1000),
        (u64::MAX - 0x1fff, 0x1000),
    ];
    for (base, size) in windows {
        bus.add(base, size, alloc::boxed::Box::new(Nothing))
            .unwrap();
    }
    for ipa in [
        ipa,
        0x0900_0000 | (ipa & 0xfff),
        0x0800_0000 | (ipa & 0xffff),
        u64::MAX - (ipa & 0xfff),
    ] {
        if let Some((_, access)) = bus.claim(ipa, size) {
            assert!(windows.iter().any(|&(b, s)| ipa >= b
                && access.offset == ipa - b
                && access.offset + u64::from(access.size) <= s));
        }
        if let Some(v) = bus.read(ipa, size) {
            assert_eq!(v & !crate::devices::size_mask(size), 0);
        }
    }
}

/// A sequence of guest MMIO accesses to the devices the hypervisor emulates in every VM
/// (the virtual GICv3's distributor and redistributors, the PL011), at any offset,
/// size and value: no panic, reads masked to the access size. Returns how many
/// accesses a device claimed.
pub fn mmio(data: &[u8]) -> usize {
    use crate::devices::{MmioBus, pl011};
    use crate::vm::guest_fdt::{VIRT_GICD, VIRT_GICR_BASE, VIRT_UART};

    struct NullPort;
    impl pl011::ConsolePort for NullPort {
        fn put(&mut self, _: u8) {}
        fn get(&mut self) -> Option<u8> {
            Some(b'x')
        }
        fn has_input(&self) -> bool {
            true
        }
        fn tx_full(&self) -> bool {
            false
        }
        fn tx_below_half(&self) -> bool {
            true
        }
    }
    let mut input = Input::new(data);
    let vcpus = 1 + (input.u8() % 4) as usize;
    let Ok(vgic) = crate::vgic::Vgic::new(crate::vgic::VgicConfig::new(vcpus, 64)) else {
        panic!("a vGIC of {vcpus} vCPUs");
    };
    let gic = crate::vgic::VmGic::new(vgic);
    let mut bus = MmioBus::new();
    bus.add(
        VIRT_UART.base,
        VIRT_UART.size,
        alloc::boxed::Box::new(pl011::Pl011::new(alloc::boxed::Box::new(NullPort), 33)),
    )
    .unwrap();
    let gicr_size = crate::vgic::redist::GICR_STRIDE * vcpus as u64;
    let windows = [
        (VIRT_GICD.base, VIRT_GICD.size),
        (VIRT_GICR_BASE, gicr_size),
        (VIRT_UART.base, VIRT_UART.size),
    ];
    let mut claimed = 0;
    while !input.0.is_empty() {
        let how = input.u8();
        let window = how as usize % 3;
        let (base, size) = windows[window];
        let offset = input.u64() % (size + 16);
        let width = [1u8, 2, 4, 8][(how as usize >> 2) % 4];
        let ipa = base + (offset & !(u64::from(width) - 1) | (offset & u64::from(how >> 7)));
        let write = (how & 0x40 != 0).then(|| input.u64());
        // The run loop's dispatch: the vGIC's windows first, then the bus.
        let value = if ipa >= VIRT_GICD.base && ipa - VIRT_GICD.base < VIRT_GICD.size {
            let off = ipa - VIRT_GICD.base;
            Some(
                gic.update(|g| match write {
                    Some(v) => {
                        g.gicd_write(off, width, v);
                        0
                    }
                    None => g.gicd_read(off, width),
                })
                .0,
            )
        } else if ipa >= VIRT_GICR_BASE && ipa - VIRT_GICR_BASE < gicr_size {
            let off = ipa - VIRT_GICR_BASE;
            Some(
                gic.update(|g| match write {
                    Some(v) => {
                        g.gicr_write(off, width, v);
                        0
                    }
                    None => g.gicr_read(off, width),
                })
                .0,
            )
        } else {
            bus.access(ipa, width, write).map(|d| d.value)
        };
        if let Some(v) = value {
            if write.is_none() {
                assert_eq!(v & !crate::devices::size_mask(width), 0);
            }
            claimed += 1;
        }
        bus.for_each_irq_line(|_, _| {});
    }
    claimed
}

/// A VM's view for [`psci`]: vCPUs with MPIDRs and power states from the input.
struct FuzzVm {
    mpidrs: Vec<u64>,
    power: Vec<VcpuPower>,
    aarch32: bool,
}

impl PsciVm for FuzzVm {
    fn vcpu_count(&self) -> usize {
        self.mpidrs.len()
    }
    fn vcpu_by_mpidr(&self, mpidr: u64) -> Option<usize> {
        self.mpidrs.iter().position(|&m| m == mpidr)
    }
    fn vcpu_power(&self, vcpu: usize) -> VcpuPower {
        self.power[vcpu]
    }
    fn is_guest_ram(&self, ipa: u64) -> bool {
        (0x4000_0000..0x8000_0000).contains(&ipa)
    }
    fn caller_is_aarch32(&self) -> bool {
        self.aarch32
    }
}

/// A PSCI or SMCCC call (x0..x7) from a VM of 1 to 8 vCPUs: answered with no panic, a
/// CPU_ON only for a vCPU of the VM that is off, at an entry point in its RAM. Returns
/// the outcome.
pub fn psci(data: &[u8]) -> PsciOutcome {
    let mut input = Input::new(data);
    let n = 1 + (input.u8() % 8) as usize;
    let power = (0..n)
        .map(|_| match input.u8() % 3 {
            0 => VcpuPower::Off,
            1 => VcpuPower::On,
            _ => VcpuPower::OnPending,
        })
        .collect();
    let mut vm = FuzzVm {
        mpidrs: (0..n as u64).map(|i| (i & 3) | ((i >> 2) << 8)).collect(),
        power,
        aarch32: input.u8() & 1 == 1,
    };
    let mut call = [0u64; 8];
    for x in &mut call {
        *x = input.u64();
    }
    // Mostly the function IDs that exist (PSCI 0x8400_00xx/0xc400_00xx, SMCCC
    // 0x8000_xxxx), with small arguments and the VM's own MPIDRs.
    let pick = input.u8();
    if !pick.is_multiple_of(4) {
        let base = [0x8400_0000u64, 0xc400_0000, 0x8000_0000][pick as usize % 3];
        call[0] = base | (call[0] & 0x1f);
        call[1] = if pick & 8 != 0 {
            vm.mpidrs[call[1] as usize % n]
        } else {
            call[1] & 0xffff
        };
        if pick & 16 != 0 {
            call[2] = 0x4000_0000 + (call[2] & 0x3fff_ffff);
        }
    }
    let outcome = psci::handle(&call, &mut vm);
    if let PsciOutcome::CpuOn { target, entry, .. } = outcome {
        assert!(target < n && vm.power[target] == VcpuPower::Off);
        assert!(vm.is_guest_ram(entry));
    }
    outcome
}
