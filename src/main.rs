//! The EL2 kernel binary. On the host this file builds to a stub so `cargo test` works.
//!
//! The boot, in plain words: start the log on the board's UART; read the host's
//! device tree; map memory and devices at EL2; hand the free RAM to the frame
//! allocator; read the boot bundle (config and images) the loader placed as the
//! initrd; build each VM; run them; power the machine off when the last one stops.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("ferrovisor runs at EL2 on arm64: build it with `make`, run it with `make run`");
}

#[cfg(target_os = "none")]
mod hyp {
    extern crate alloc;

    use alloc::string::String;
    use alloc::vec::Vec;
    use ferrovisor::arch::boot::MAX_CPUS;
    use ferrovisor::arch::hw::{self, ArchHw};
    use ferrovisor::arch::{
        console as uart, cpuinfo, firmware, gic, hostgic, memory, percpu, regs,
    };
    use ferrovisor::config::bundle::Bundle;
    use ferrovisor::config::{HostFacts, SystemConfig};
    use ferrovisor::devices::console;
    use ferrovisor::mm::pagetable::{El2Attrs, El2Geometry, PageTable, Stage2Geometry};
    use ferrovisor::mm::{self, PAGE_SIZE, PhysRange};
    use ferrovisor::platform::{
        self, BootRanges, Conduit, CpuMap, MemRange, Platform, UartCompatible,
    };
    use ferrovisor::sysreg::{
        CachePolicy, ExplicitCaches, HostCpu, IdField, SystemCpuInfo, VmCpuModel, sve_cap,
        virtualisable_sve_vqs,
    };
    use ferrovisor::vgic::lr_v2::cpu_interface_second_page;
    use ferrovisor::vm::controls::HostFeatures;
    use ferrovisor::vm::machine::{Host, PassthroughDevice, RunningCount, Vm, VmSpec};
    use ferrovisor::vm::pcpu::{Pcpu, PcpuConfig};
    use ferrovisor::vm::stats;
    use log::{error, info, warn};

    /// Stops here after a fatal error: the message is out, nothing else runs.
    fn halt(msg: core::fmt::Arguments<'_>) -> ! {
        error!("{msg}");
        error!("Ferrovisor stopped. (QEMU: Ctrl-] then x leaves.)");
        loop {
            regs::wfe();
        }
    }

    /// The boot, phase by phase; each phase stops the machine with a clear
    /// message if it cannot go on.
    #[unsafe(no_mangle)]
    extern "C" fn fv_main(dtb_pa: u64) -> ! {
        // First, before anything writes data that holds an address.
        let entry = ferrovisor::arch::boot::check_entry(dtb_pa);
        start_log(dtb_pa);
        let (image_start, image_end) = memory::image_range();
        match entry {
            Ok(n) => info!(
                "image at {image_start:#x}..{image_end:#x}: relocated itself, {n} places checked"
            ),
            Err(e) => halt(format_args!("image at {image_start:#x}: {e}")),
        }
        let (platform, dtb) = read_device_tree(dtb_pa);
        platform.log_summary();
        if platform.bootargs.as_deref().is_some_and(stats::wanted) {
            stats::enable();
            info!("exit statistics on: written when a VM stops or resets");
        }
        // Where the loader put things must be RAM the map covers, and the image
        // must not sit on firmware-reserved memory.
        let boot_ranges = BootRanges {
            image: MemRange::new(image_start, image_end - image_start),
            dtb: MemRange::new(dtb.start, dtb.size()),
            bundle: platform.initrd,
        };
        platform
            .check_boot_ranges(&boot_ranges)
            .unwrap_or_else(|e| halt(format_args!("{e}")));
        let features = read_features();
        map_el2(&platform, features.parange);
        init_frames(&platform, &boot_ranges);
        let firmware = platform
            .psci
            .as_ref()
            .map(|p| p.method)
            .unwrap_or(Conduit::Smc);
        FIRMWARE.call_once(|| firmware);
        hw::init(firmware);
        if platform.psci.is_none() {
            firmware::set_absent();
            warn!(
                "no PSCI firmware (/psci): the other CPUs stay off, and power-off leaves the machine idle"
            );
        }
        let stage2 = Stage2Geometry::from_pa_range(features.parange)
            .unwrap_or_else(|e| halt(format_args!("stage 2: {e:?}")));
        info!(
            "stage 2: {}-bit IPA, start level {}, {} root table(s); frame allocator: {} MiB free",
            stage2.ipa_bits(),
            stage2.start_level(),
            stage2.root_tables(),
            memory::free_bytes() >> 20
        );
        let cpus = bring_up_cpus(&platform, firmware);
        let (bundle, config) = read_bundle(&platform);
        check_config(
            &platform,
            &config,
            &bundle,
            cpus.count,
            HostFeatures::system(&cpus.host).unwrap_or(features),
        );
        // The EL2 controls of every VM follow the features of all CPUs.
        let host = Host {
            features: HostFeatures::system(&cpus.host).unwrap_or(features),
            stage2,
            nr_lrs: gic::nr_list_registers(),
            priority_bits: gic::virtual_priority_bits(),
            vmcr_reset: ferrovisor::vgic::host::ich_vmcr_reset(gic::read_ich_vtr()),
            gicv: host_gicv(&platform),
            now_ms: regs::now_ms,
        };
        let vms = build_vms(&platform, &config, &bundle, &cpus, host);
        start_console(&config, &vms);
        let vms: &'static [Vm] = alloc::boxed::Box::leak(vms.into_boxed_slice());
        PLAN.call_once(|| Plan {
            vms,
            uart_intid: hostgic::uart_intid(),
        });
        regs::dsb_ish();
        regs::sev();
        run_this_cpu(0)
    }

    /// The log on the board's console UART, and the first line.
    fn start_log(dtb_pa: u64) {
        percpu::init_this_cpu(0);
        memory::init_heap();
        init_console(dtb_pa);
        console::init(console::Physical {
            put: uart::try_put_byte,
            read: uart::read_byte,
            flush: uart::flush,
            cpu_index: percpu::current_index,
            now_ms: regs::now_ms,
        });
        console::init_log(log::LevelFilter::Info);
        info!(
            "Ferrovisor {} at EL2 (MPIDR {:#x}), device tree at {:#x}",
            env!("CARGO_PKG_VERSION"),
            regs::read_mpidr_el1(),
            dtb_pa
        );
    }

    /// The physical CPUs that came up: how many, what they are, and which
    /// logical index each device-tree CPU has (the boot CPU is 0, wherever it is
    /// in the tree; config CPU numbers are tree order: platform::CpuMap).
    struct Cpus {
        count: usize,
        map: CpuMap,
        system: SystemCpuInfo,
        /// What each CPU that came up reported.
        host: Vec<HostCpu>,
    }

    impl Cpus {
        fn logical_of(&self, dt: usize) -> usize {
            self.map
                .logical_of(dt)
                .unwrap_or_else(|| halt(format_args!("CPU {dt} is not driven")))
        }
    }

    /// Brings up the GIC and every CPU; each reports its ID and cache registers,
    /// and the CPU model is computed from all of them.
    fn bring_up_cpus(platform: &Platform, firmware: Conduit) -> Cpus {
        let map = CpuMap::new(&platform.cpus, regs::read_mpidr_el1(), MAX_CPUS)
            .unwrap_or_else(|e| halt(format_args!("{e}")));
        let count = map.len();
        if map.left_out() > 0 {
            warn!(
                "{} CPUs in the device tree; this build drives {MAX_CPUS} of them",
                platform.cpus.len()
            );
        }
        init_gic(platform);
        if !hostgic::init_this_cpu(0) {
            halt(format_args!(
                "no GIC redistributor for the boot CPU in the device tree"
            ));
        }
        CPU_INFO[0].call_once(cpuinfo::read_host_cpu);
        for logical in 1..count {
            let Some(cpu) = map.node(logical).map(|n| &platform.cpus[n]) else {
                continue;
            };
            let mpidr = cpu.mpidr;
            if platform.psci.is_none() || cpu.enable_method.as_deref() != Some("psci") {
                warn!(
                    "CPU MPIDR {mpidr:#x} (enable-method {}) stays off: only PSCI CPU_ON starts CPUs, and needs a /psci node",
                    cpu.enable_method.as_deref().unwrap_or("none")
                );
                continue;
            }
            let status = firmware::cpu_on(firmware, mpidr, logical as u64);
            if status != 0 {
                error!("CPU MPIDR {mpidr:#x} did not start: PSCI CPU_ON returned {status}");
            }
        }
        let started = wait_for_cpus(count);
        let host_cpus: Vec<HostCpu> = (0..count)
            .filter_map(|l| CPU_INFO[l].get().copied())
            .collect();
        let system = SystemCpuInfo::new(&host_cpus)
            .unwrap_or_else(|| halt(format_args!("no CPU reported its ID registers")));
        let cpus = Cpus {
            count,
            map,
            system,
            host: host_cpus,
        };
        info!(
            "{started} of {count} CPUs up; CPU model: MIDR {:#x}, CTR_EL0 {:#x}, cache ID trap {}",
            cpus.system.midr_el1,
            cpus.system.ctr_el0,
            if cpus.system.evt() {
                "TID4 (FEAT_EVT)"
            } else {
                "TID2"
            }
        );
        #[cfg(feature = "stack-overflow-test")]
        ferrovisor::arch::boot::fv_stack_overflow_test(0);
        cpus
    }

    /// The boot bundle the loader passed as the initrd, and its config.
    fn read_bundle(platform: &Platform) -> (Bundle<'static>, SystemConfig) {
        let Some(range) = platform.initrd else {
            halt(format_args!(
                "no boot bundle: the device tree's /chosen has no linux,initrd-start/end. \
                 Pass the bundle as the initrd (QEMU: -initrd build/<config>.cpio; U-Boot: booti <kernel> <bundle>:<size> <fdt>)"
            ))
        };
        let blob = memory::boot_blob(range.base, range.size as usize);
        let bundle = Bundle::parse(blob)
            .unwrap_or_else(|e| halt(format_args!("boot bundle at {:#x}: {e}", range.base)));
        let text = bundle
            .config_text()
            .unwrap_or_else(|e| halt(format_args!("boot bundle: {e}")));
        let config = SystemConfig::parse(text, "ferrovisor.toml")
            .unwrap_or_else(|e| halt(format_args!("{e}")));
        (bundle, config)
    }

    /// What the config asks of the machine: CPUs, RAM, devices to pass through
    /// (not the UART or GIC, which the hypervisor keeps; none that can do DMA;
    /// only interrupts their nodes list), and the files it names (present in
    /// the bundle, each image fitting its VM).
    fn check_config(
        platform: &Platform,
        config: &SystemConfig,
        bundle: &Bundle,
        cpus: usize,
        features: HostFeatures,
    ) {
        let mut facts = HostFacts::from_platform(platform, cpus, memory::free_bytes());
        facts.pmu_counters = Some(if features.pmu_version != 0 {
            features.pmu_counters
        } else {
            0
        });
        let infos: Vec<HostCpu> = (0..cpus)
            .filter_map(|l| CPU_INFO[l].get().copied())
            .collect();
        facts.sve_vqs = Some(virtualisable_sve_vqs(&infos));
        config
            .check_against(&facts, &|path| bundle.file(path).map(|f| f.len()))
            .unwrap_or_else(|e| halt(format_args!("{e}")));
        for vmc in &config.vms {
            if let Some(Err(e)) = bundle
                .file(&vmc.kernel.path)
                .map(|kernel| config.plan_kernel(vmc, kernel))
            {
                halt(format_args!("{e}"));
            }
        }
    }

    /// Builds and loads every VM of the config (a VM that cannot be built is
    /// reported and left out; the others still start).
    fn build_vms(
        platform: &Platform,
        config: &SystemConfig,
        bundle: &Bundle<'static>,
        cpus: &Cpus,
        host: Host,
    ) -> Vec<Vm> {
        let assignment = config
            .cpu_assignment(cpus.count)
            .unwrap_or_else(|e| halt(format_args!("{e}")));
        let mut vms: Vec<Vm> = Vec::new();
        let mut frames = memory::VmFrames::new();
        for (index, vmc) in config.vms.iter().enumerate() {
            let file = |path: &str, what: &str| -> &'static [u8] {
                bundle.file(path).unwrap_or_else(|| {
                    halt(format_args!(
                        "VM '{}': {what} '{path}' is not in the boot bundle",
                        vmc.name
                    ))
                })
            };
            let console_index = console::add_vm(&vmc.name);
            debug_assert_eq!(console_index, index);
            let pcpus: Vec<usize> = assignment[index]
                .iter()
                .map(|&dt| cpus.logical_of(dt))
                .collect();
            let vm_cpus: Vec<HostCpu> = pcpus
                .iter()
                .filter_map(|&l| CPU_INFO[l].get().copied())
                .collect();
            let model = match cpu_model(&cpus.system, &vm_cpus, vmc, host.stage2.ipa_bits()) {
                Ok(m) => m,
                Err(e) => {
                    error!("VM '{}' not started: {e}", vmc.name);
                    continue;
                }
            };
            let spec = VmSpec {
                name: vmc.name.clone(),
                index,
                ram_base: vmc.base,
                ram_size: vmc.memory,
                vcpus: vmc.vcpus,
                kernel: file(&vmc.kernel.path, "kernel"),
                kernel_kind: vmc.kernel.kind,
                initrd: vmc.initrd.as_deref().map(|p| file(p, "initrd")),
                dtb: vmc.dtb.as_deref().map(|p| file(p, "device tree")),
                bootargs: vmc.bootargs.clone(),
                console: vmc.console == ferrovisor::config::VmConsole::Pl011,
                model,
                passthrough: passthrough_devices(platform, vmc),
                priority: vmc.priority,
                timeslice_us: vmc.timeslice_us,
            };
            let created = Vm::create(spec, pcpus.clone(), host, &mut frames, &RUNNING_VMS)
                .and_then(|vm| vm.load(&mut ArchHw).map(|_| vm));
            match created {
                Ok(vm) => {
                    info!(
                        "VM '{}': stage-2 tables {} bytes",
                        vmc.name,
                        vm.stage2_bytes()
                    );
                    for &intid in vm.passthrough_irqs() {
                        hostgic::route_spi(intid, pcpus[0]);
                        hostgic::enable_spi(intid);
                    }
                    vms.push(vm);
                }
                Err(e) => error!("VM '{}' not started: {e}", vmc.name),
            }
        }
        if vms.is_empty() {
            halt(format_args!("no VM could be started"));
        }
        info!("heap: {} bytes in use", memory::heap_used());
        vms
    }

    /// The board's devices a VM is given: each window with its interrupts and
    /// the host device-tree nodes inside it (copied into the guest's).
    fn passthrough_devices(
        platform: &Platform,
        vmc: &ferrovisor::config::VmConfig,
    ) -> Vec<PassthroughDevice> {
        vmc.passthrough
            .iter()
            .map(|p| PassthroughDevice {
                base: p.base,
                size: p.size,
                irqs: p.irqs.clone(),
                nodes: platform
                    .devices
                    .iter()
                    .filter(|d| {
                        !d.regs.is_empty()
                            && d.regs
                                .iter()
                                .all(|r| r.base >= p.base && r.base + r.size <= p.base + p.size)
                    })
                    .cloned()
                    .collect(),
            })
            .collect()
    }

    /// The shared console's switch key and first focus, from the config.
    fn start_console(config: &SystemConfig, vms: &[Vm]) {
        console::configure(
            config.console.switch_key,
            config.console.switch_presses,
            config.console.input.unwrap_or(0),
        );
        if vms.len() > 1 {
            info!(
                "console: keyboard input goes to VM '{}'; press the switch key {} times to move it",
                config.vms[config.console.input.unwrap_or(0)].name,
                config.console.switch_presses
            );
        }
    }

    /// Every VM, and the hypervisor console's interrupt.
    struct Plan {
        vms: &'static [Vm],
        uart_intid: Option<u32>,
    }

    static PLAN: spin::Once<Plan> = spin::Once::new();

    /// VMs still running; the machine powers off when this reaches zero.
    static RUNNING_VMS: RunningCount = RunningCount::new(0);

    /// The GICV frame's two pages guests get as their CPU interface on a
    /// GICv2 host.
    fn host_gicv(p: &Platform) -> Option<[u64; 2]> {
        p.gic
            .as_ref()
            .filter(|g| g.version == platform::GicVersion::V2)
            .and_then(|g| g.gicv.as_ref())
            .map(|r| [r.base, cpu_interface_second_page(r.base, r.size)])
    }

    /// Brings the physical GIC up (boot CPU, before the others start): a
    /// GICv3, or a GICv2 with the virtualization extensions (GIC-400).
    fn init_gic(p: &Platform) {
        let Some(g) = &p.gic else {
            halt(format_args!(
                "the device tree describes no interrupt controller"
            ))
        };
        let uart_intid = p.uart.as_ref().and_then(|u| u.irq);
        if g.version == platform::GicVersion::V2 {
            let (Some(gicc), Some(gich), Some(gicv)) = (&g.gicc, &g.gich, &g.gicv) else {
                halt(format_args!(
                    "the host's GICv2 has no virtualization extensions in the device tree (GICH and GICV frames; QEMU: -M virt,virtualization=on)"
                ))
            };
            hostgic::init_boot_v2(
                g.gicd.base,
                [gicc.base, cpu_interface_second_page(gicc.base, gicc.size)],
                gich.base,
                uart_intid,
            );
            info!(
                "GICv2: GICD {:#x}, GICC {:#x}, GICH {:#x}, GICV {:#x}; {} list registers, {} virtual priority bits",
                g.gicd.base,
                gicc.base,
                gich.base,
                gicv.base,
                ferrovisor::arch::gic::nr_list_registers(),
                ferrovisor::arch::gic::virtual_priority_bits()
            );
            return;
        }
        let gicr: Vec<(u64, u64)> = g.gicr.iter().map(|r| (r.base, r.size)).collect();
        // The console UART's interrupt brings keyboard input in.
        hostgic::init_boot(g.gicd.base, &gicr, uart_intid);
        info!(
            "GICv3: {} list registers, {} virtual priority bits",
            ferrovisor::arch::gic::nr_list_registers(),
            ferrovisor::arch::gic::virtual_priority_bits()
        );
    }

    /// Keyboard input arrived: the VM that has the focus looks at its devices'
    /// interrupt lines again, and its CPUs are kicked so it does so soon.
    fn wake_console_focus() {
        if let Some(plan) = PLAN.get() {
            let focus = console::focus();
            if let Some(vm) = plan.vms.iter().find(|v| v.spec.index == focus) {
                vm.note_input();
                let me = percpu::current_index();
                for &cpu in vm.pcpus() {
                    if cpu != me {
                        hostgic::kick(cpu);
                    }
                }
            }
        }
    }

    /// What each CPU (by logical index) read of itself at boot.
    static CPU_INFO: [spin::Once<HostCpu>; MAX_CPUS] = [const { spin::Once::new() }; MAX_CPUS];

    /// Waits (a bounded time) until the started CPUs have reported; returns how
    /// many CPUs did, the boot CPU included.
    fn wait_for_cpus(cpus: usize) -> usize {
        let deadline = regs::read_cntpct_el0() + regs::read_cntfrq_el0();
        loop {
            let up = (0..cpus).filter(|&l| CPU_INFO[l].get().is_some()).count();
            if up == cpus || regs::read_cntpct_el0() > deadline {
                if up < cpus {
                    warn!("only {up} of {cpus} CPUs came up within a second");
                }
                return up;
            }
            core::hint::spin_loop();
        }
    }

    /// A VM's CPU model: the system-wide view, its cache policy, its IPA size
    /// (PARange), and the ID fields its config lowers (raising one above the
    /// hardware is refused).
    fn cpu_model(
        system: &SystemCpuInfo,
        vm_cpus: &[HostCpu],
        vmc: &ferrovisor::config::VmConfig,
        ipa_bits: u32,
    ) -> Result<VmCpuModel, String> {
        let mut model = VmCpuModel::new(system, vm_cpus, &cache_policy(&vmc.cpu.cache), ipa_bits)
            .map_err(|e| alloc::format!("vm.{}.cpu: {e}", vmc.name))?;
        // A PMU unless the config says no (or the cores have none, and the
        // config did not ask: `check_config` refused asking for one there).
        if vmc.cpu.pmu.unwrap_or_else(|| model.host_pmu().is_some()) {
            model
                .enable_pmu(vmc.cpu.pmu_counters)
                .map_err(|e| alloc::format!("vm.{}.cpu.{e}", vmc.name))?;
        }
        for (name, value) in &vmc.cpu.id {
            let field = IdField::by_name(name)
                .ok_or_else(|| alloc::format!("vm.{}.cpu.id.{name}: unknown field", vmc.name))?;
            model
                .lower(field, *value)
                .map_err(|e| alloc::format!("vm.{}.cpu.id.{name}: {e}", vmc.name))?;
        }
        // SVE: the config's cap, or the longest every core of the VM offers.
        let vq = sve_cap(vm_cpus, vmc.cpu.sve_vl)
            .map_err(|e| alloc::format!("vm.{}.cpu.sve_vl: {e}", vmc.name))?;
        model.set_sve(vq);
        if vmc.cpu.sve_vl.is_some() && model.sve_vq() == 0 {
            return Err(alloc::format!(
                "vm.{}.cpu.sve_vl: SVE is hidden by ID_AA64PFR0_EL1.SVE = 0",
                vmc.name
            ));
        }
        Ok(model)
    }

    /// The config's cache policy in the CPU model's terms. An explicit list
    /// gives CCSIDR values in CSSELR order of the caches CLIDR describes.
    fn cache_policy(p: &ferrovisor::config::CachePolicy) -> CachePolicy {
        use ferrovisor::config::CachePolicy as C;
        match p {
            C::Virtual => CachePolicy::Virtual,
            C::Host => CachePolicy::Host,
            C::Custom { clidr, ccsidr } => {
                let mut selects = Vec::new();
                for level in 0..7u64 {
                    match (clidr >> (3 * level)) & 0b111 {
                        0b001 => selects.push(level << 1 | 1),
                        0b010 | 0b100 => selects.push(level << 1),
                        0b011 => {
                            selects.push(level << 1);
                            selects.push(level << 1 | 1);
                        }
                        _ => break,
                    }
                }
                CachePolicy::Explicit(ExplicitCaches {
                    clidr_el1: *clidr,
                    ccsidr_el1: selects.into_iter().zip(ccsidr.iter().copied()).collect(),
                    ccidx: false,
                })
            }
        }
    }

    /// Runs this CPU's vCPUs. A CPU that has none goes back to the firmware
    /// (PSCI CPU_OFF), except the boot CPU, which stays to take the console's
    /// keyboard interrupt (routed to it).
    fn run_this_cpu(logical: usize) -> ! {
        let plan = PLAN.get().expect("the plan is published before CPUs run");
        let vcpus: Vec<(&'static Vm, usize)> = plan
            .vms
            .iter()
            .flat_map(|vm| {
                vm.pcpus()
                    .iter()
                    .enumerate()
                    .filter(move |&(_, &p)| p == logical)
                    .map(move |(i, _)| (vm, i))
            })
            .collect();
        if vcpus.is_empty() && logical != 0 {
            let status = firmware::cpu_off(firmware_conduit());
            warn!("CPU {logical}: PSCI CPU_OFF returned {status}; it stays parked");
            loop {
                regs::wfi();
            }
        }
        ferrovisor::arch::run(Pcpu::new(PcpuConfig {
            index: logical,
            vcpus,
            vms: plan.vms,
            uart_intid: plan.uart_intid,
            console_input: wake_console_focus,
        }))
    }

    /// How the firmware is reached (from the host device tree, read at boot).
    fn firmware_conduit() -> Conduit {
        *FIRMWARE.get().unwrap_or(&Conduit::Smc)
    }

    static FIRMWARE: spin::Once<Conduit> = spin::Once::new();

    /// Points the console at the UART the device tree's /chosen/stdout-path
    /// names (platform::find_console), before anything is logged, so that every
    /// message — one about a bad device tree too — is on the board's own console.
    /// Without a usable device tree: QEMU virt's PL011.
    fn init_console(dtb_pa: u64) {
        let found = (dtb_pa != 0 && dtb_pa.is_multiple_of(8))
            .then(|| platform::fdt_total_size(memory::boot_blob(dtb_pa, 40)).ok())
            .flatten()
            .and_then(|size| platform::find_console(memory::boot_blob(dtb_pa, size)));
        if !found.is_some_and(|u| uart::init(&u.compatible, u.base)) {
            uart::init(&UartCompatible::Pl011, uart::EARLY_UART as u64);
        }
    }

    /// Finds, checks and parses the host device tree.
    fn read_device_tree(dtb_pa: u64) -> (Platform, PhysRange) {
        if dtb_pa == 0 || !dtb_pa.is_multiple_of(8) {
            halt(format_args!(
                "no device tree: x0 = {dtb_pa:#x} at entry. Boot with QEMU -kernel or U-Boot booti <kernel> - <fdt>"
            ));
        }
        let header = memory::boot_blob(dtb_pa, 40);
        let size = platform::fdt_total_size(header)
            .unwrap_or_else(|e| halt(format_args!("device tree at {dtb_pa:#x}: {e}")));
        let blob = memory::boot_blob(dtb_pa, size);
        let p = Platform::parse(blob)
            .unwrap_or_else(|e| halt(format_args!("device tree at {dtb_pa:#x}: {e}")));
        (p, PhysRange::new(dtb_pa, dtb_pa + size as u64))
    }

    /// Resets this CPU's EL2 trap controls and reads its features.
    fn read_features() -> HostFeatures {
        let f = HostFeatures::from_cpu(&cpuinfo::init_this_cpu());
        let mut names: Vec<&str> = Vec::new();
        for (on, name) in [
            (f.sve, "SVE"),
            (f.sme, "SME"),
            (f.fgt, "FGT"),
            (f.fgt2, "FGT2"),
            (f.hcx, "HCX"),
            (f.evt, "EVT"),
            (f.pan, "PAN"),
            (f.bti, "BTI"),
            (f.mte, "MTE"),
            (f.vmid16, "VMID16"),
            (f.s2fwb, "S2FWB"),
            (f.ras, "RAS"),
            (f.mpam, "MPAM"),
            (f.nmi, "NMI"),
        ] {
            if on {
                names.push(name);
            }
        }
        info!(
            "CPU: MIDR {:#x}, PARange {}, PMU counters {}, features: {}",
            regs::read_midr_el1(),
            f.parange,
            f.pmu_counters,
            if names.is_empty() {
                String::from("(Armv8.0 base)")
            } else {
                names.join(" ")
            }
        );
        f
    }

    /// Builds the final EL2 identity map — RAM Normal (the image's code
    /// read-only and executable, the rest execute-never, the stacks' guard pages
    /// unmapped), devices Device-nGnRE — and switches to it.
    fn map_el2(p: &Platform, parange: u8) {
        const VA_BITS: u32 = 39;
        let geo = El2Geometry::new(VA_BITS, parange)
            .unwrap_or_else(|e| halt(format_args!("EL2 map geometry: {e:?}")));
        let mut mem = memory::El2TableMemory;
        let mut t =
            PageTable::new(geo, &mut mem).unwrap_or_else(|e| halt(format_args!("EL2 map: {e:?}")));
        let ((code_s, code_e), (ro_s, ro_e)) = memory::image_sections();
        let image = [
            (PhysRange::new(code_s, code_e), El2Attrs::CODE),
            (PhysRange::new(ro_s, ro_e), El2Attrs::RODATA),
        ];
        // RAM less what the firmware marked no-map.
        let ram = p.mapped_ram();
        // Not mapped as data: the image's code and read-only data (mapped above)
        // and the stacks' guard pages (not mapped at all: an overflow faults).
        let image_ranges: Vec<PhysRange> = image
            .iter()
            .map(|(r, _)| *r)
            .chain(memory::stack_guards())
            .collect();
        let mut map = |r: PhysRange, a: El2Attrs, what: &str| {
            if let Err(e) = t.map(&mut mem, r.start, r.start, r.end - r.start, a) {
                halt(format_args!(
                    "EL2 map of {what} {:#x}..{:#x}: {e:?}",
                    r.start, r.end
                ))
            }
        };
        for (r, a) in image {
            map(r, a, "the hypervisor image");
        }
        for r in mm::region::subtract(&ram, &image_ranges) {
            map(r, El2Attrs::DATA, "RAM");
        }
        let mut devices: Vec<PhysRange> = p
            .devices
            .iter()
            .flat_map(|d| d.regs.iter().map(|m| (m.base, m.size)))
            .chain(p.uart.iter().map(|u| (u.base, u.size)))
            .filter_map(|(base, size)| PhysRange::new(base, base + size).align_outward(PAGE_SIZE))
            .collect();
        mm::region::sort_and_merge(&mut devices);
        // A device beyond the map's reach (ZynqMP's PCIe windows at 512 GiB and up)
        // is one the hypervisor never touches: guests reach theirs through stage 2.
        let (devices, beyond): (Vec<PhysRange>, Vec<PhysRange>) =
            devices.into_iter().partition(|r| r.end <= 1 << VA_BITS);
        for r in mm::region::subtract(&devices, &ram) {
            map(r, El2Attrs::DEVICE, "device");
        }
        memory::switch_el2_table(t.root_pa());
        info!(
            "EL2 identity map: {} RAM range(s) Normal, {} device range(s) Device-nGnRE ({} above {VA_BITS} bits left out), code read-only, stack guard pages unmapped",
            ram.len(),
            devices.len(),
            beyond.len()
        );
    }

    /// Gives the frame allocator all RAM except the hypervisor, the device
    /// tree, the boot bundle and reserved memory (platform::Platform::free_ram).
    fn init_frames(p: &Platform, boot: &BootRanges) {
        memory::init_frames(&p.free_ram(boot));
        info!(
            "memory: {} MiB RAM, hypervisor image {:#x}..{:#x}, {} MiB free for VMs",
            mm::region::total_size(&p.mapped_ram()) >> 20,
            boot.image.base,
            boot.image.end(),
            memory::free_bytes() >> 20
        );
    }

    /// A secondary CPU, started by `firmware::cpu_on` with its logical index,
    /// arrives here with the EL2 MMU on and its vectors installed.
    #[unsafe(no_mangle)]
    extern "C" fn fv_secondary_main(logical: u64) -> ! {
        let logical = logical as usize;
        percpu::init_this_cpu(logical);
        if !hostgic::init_this_cpu(logical) {
            error!("CPU {logical}: no GIC redistributor in the device tree; it stays parked");
            loop {
                regs::wfe();
            }
        }
        CPU_INFO[logical].call_once(cpuinfo::init_this_cpu);
        #[cfg(feature = "stack-overflow-test")]
        if logical == 1 {
            ferrovisor::arch::boot::fv_stack_overflow_test(0);
        }
        // Wait until the boot CPU has built the VMs.
        while PLAN.get().is_none() {
            regs::wfe();
        }
        run_this_cpu(logical)
    }

    #[panic_handler]
    fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
        uart::write_fatal(format_args!("\nferrovisor: PANIC: {info}\n"));
        loop {
            regs::wfe();
        }
    }
}
