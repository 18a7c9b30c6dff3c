//! Checks that need the machine or the image files: CPUs and RAM enough, passthrough
//! ranges that are devices of the board that do no DMA with interrupts of their own,
//! images present and small enough.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::ops::Range;

use super::validate::human_size;
use super::{ConfigError, GUEST_PAGE, Position, SystemConfig, VmConfig};
use crate::platform::{BusMaster, MemRange, Platform};
use crate::vm::image::{LoadPlan, plan_load};

/// What the config is checked against: the machine as its device tree describes it.
/// Plain data, made by [`HostFacts::from_platform`] from the parsed device tree both in
/// the hypervisor at boot and in `fvconfig`, so both refuse the same configs with the
/// same words.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// Number of physical CPUs.
    pub cpus: usize,
    /// The devices of the board a guest may be given, as the device tree describes them:
    /// every node with MMIO registers except those the hypervisor keeps (the interrupt
    /// controller, its own UART).
    pub devices: Vec<HostDevice>,
    /// Interrupts (GIC INTIDs) the hypervisor uses itself, with what uses each.
    pub kept_irqs: Vec<(u32, String)>,
    /// Bytes of RAM.
    pub ram_bytes: u64,
    /// The SVE vector lengths a guest may be given (`sysreg::virtualisable_sve_vqs`:
    /// bit vq - 1 for 128 * vq bits, 0 without SVE); `None` when not known (a
    /// device tree does not say), and then `sve_vl` is checked at boot only.
    pub sve_vqs: Option<u16>,
    /// The event counters of the host's PMUv3 (PMCR_EL0.N of the core with the
    /// fewest; `Some(0)`: no PMUv3), when known: the hypervisor reads it from the
    /// hardware, `fvconfig` knows QEMU virt's (6) or takes `--pmu-counters`; `None`
    /// leaves the check to the boot.
    pub pmu_counters: Option<u8>,
}

/// One device-tree node with MMIO registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostDevice {
    /// Its device-tree path, for errors.
    pub path: String,
    /// Its `reg` ranges as (base, size), in physical addresses.
    pub regs: Vec<(u64, u64)>,
    /// The GIC INTIDs its node lists.
    pub irqs: Vec<u32>,
    /// `status` is absent, "okay" or "ok".
    pub enabled: bool,
    /// Why it can master the bus, when its node says so.
    pub bus_master: Option<BusMaster>,
}

impl HostFacts {
    /// The facts of the machine `platform` describes, with `cpus` physical CPUs and
    /// `ram_bytes` of RAM for VMs (the hypervisor counts what its allocator has free;
    /// `fvconfig` what the device tree lists).
    pub fn from_platform(platform: &Platform, cpus: usize, ram_bytes: u64) -> HostFacts {
        let mut kept: Vec<MemRange> = Vec::new();
        let mut kept_irqs: Vec<(u32, String)> = Vec::new();
        if let Some(u) = &platform.uart {
            kept.push(MemRange::new(u.base, u.size));
            if let Some(irq) = u.irq {
                kept_irqs.push((
                    irq,
                    format!("the interrupt of the hypervisor's console UART {}", u.path),
                ));
            }
        }
        if let Some(g) = &platform.gic {
            kept.push(g.gicd);
            kept.extend(g.gicr.iter().copied());
            kept.extend([g.gicc, g.gich, g.gicv].into_iter().flatten());
            if let Some(m) = g.maintenance_intid {
                kept_irqs.push((
                    m,
                    "the GIC maintenance interrupt, which the hypervisor handles".to_string(),
                ));
            }
        }
        if let Some(t) = &platform.timer {
            for intid in [t.secure_phys, t.nonsecure_phys, t.virt, t.hyp_phys]
                .into_iter()
                .chain(t.hyp_virt)
            {
                kept_irqs.push((
                    intid,
                    "a generic timer interrupt, which the hypervisor handles".to_string(),
                ));
            }
        }
        let devices = platform
            .devices
            .iter()
            .filter(|d| !d.regs.iter().any(|r| kept.iter().any(|k| k.overlaps(r))))
            .map(|d| HostDevice {
                path: d.path.clone(),
                regs: d.regs.iter().map(|r| (r.base, r.size)).collect(),
                irqs: d.irqs.clone(),
                enabled: d.enabled,
                bus_master: d.bus_master,
            })
            .collect();
        HostFacts {
            cpus,
            devices,
            kept_irqs,
            ram_bytes,
            sve_vqs: None,
            pmu_counters: None,
        }
    }
}

/// Linux booting.rst: the device tree blob must not exceed 2 megabytes.
const MAX_DTB: usize = 2 << 20;

impl SystemConfig {
    fn error(&self, position: Option<Position>, field: String, reason: String) -> ConfigError {
        ConfigError {
            file: self.file.clone(),
            position,
            field,
            reason,
        }
    }

    /// The physical CPUs each VM's vCPUs run on (vCPU i of `vms[v]` on `result[v][i]`),
    /// a CPU appearing more than once where vCPUs share it:
    /// - a VM's `cpus` as listed;
    /// - an exclusive VM without `cpus`: the lowest CPUs no VM lists and no exclusive VM
    ///   got before, one per vCPU, in file order;
    /// - any other VM without `cpus`: each vCPU in turn on the CPU no exclusive VM has
    ///   with the fewest vCPUs so far (the lowest such CPU on a tie), so a board with
    ///   CPUs enough gives every vCPU its own, and fewer CPUs are shared evenly.
    ///
    /// Fails when a listed CPU does not exist, when the exclusive VMs need more CPUs
    /// than are free, or when they leave none for the others.
    pub fn cpu_assignment(&self, host_cpus: usize) -> Result<Vec<Vec<usize>>, ConfigError> {
        let mut listed = alloc::vec![false; host_cpus];
        let mut exclusive = alloc::vec![false; host_cpus];
        let mut load = alloc::vec![0usize; host_cpus];
        for vm in &self.vms {
            for &cpu in vm.cpus.iter().flatten() {
                if cpu >= host_cpus {
                    return Err(self.error(
                        vm.sites.cpus,
                        format!("vm.{}.cpus", vm.name),
                        format!(
                            "physical CPU {cpu} does not exist: the board has {host_cpus} CPU(s), numbered from 0"
                        ),
                    ));
                }
                listed[cpu] = true;
                exclusive[cpu] |= vm.exclusive;
                load[cpu] += 1;
            }
        }
        let mut assignment: Vec<Option<Vec<usize>>> =
            self.vms.iter().map(|vm| vm.cpus.clone()).collect();
        // Exclusive VMs first: they claim whole CPUs.
        for (v, vm) in self.vms.iter().enumerate() {
            if !vm.exclusive || vm.cpus.is_some() {
                continue;
            }
            let free: Vec<usize> = (0..host_cpus)
                .filter(|&c| !listed[c] && !exclusive[c])
                .take(vm.vcpus)
                .collect();
            if free.len() < vm.vcpus {
                return Err(self.error(
                    vm.sites.exclusive.or(vm.sites.vm),
                    format!("vm.{}.exclusive", vm.name),
                    format!(
                        "not enough physical CPUs: this exclusive VM needs {} CPU(s) no other vCPU uses, and only {} of the board's {host_cpus} are left",
                        vm.vcpus,
                        free.len()
                    ),
                ));
            }
            for &c in &free {
                exclusive[c] = true;
                load[c] += 1;
            }
            assignment[v] = Some(free);
        }
        // The others spread over what the exclusive VMs left.
        for (v, vm) in self.vms.iter().enumerate() {
            if assignment[v].is_some() {
                continue;
            }
            let mut cpus = Vec::with_capacity(vm.vcpus);
            for _ in 0..vm.vcpus {
                let Some(c) = (0..host_cpus)
                    .filter(|&c| !exclusive[c])
                    .min_by_key(|&c| (load[c], c))
                else {
                    return Err(self.error(
                        vm.sites.vcpus.or(vm.sites.vm),
                        format!("vm.{}.vcpus", vm.name),
                        format!(
                            "no physical CPU to run on: the exclusive VMs have all {host_cpus} of the board's CPUs"
                        ),
                    ));
                };
                load[c] += 1;
                cpus.push(c);
            }
            assignment[v] = Some(cpus);
        }
        Ok(assignment.into_iter().flatten().collect())
    }

    /// Check the config against the machine and the files. `file_size(path)` gives the size
    /// of the file a config path names, or `None` when it is missing or unreadable.
    pub fn check_against(
        &self,
        host: &HostFacts,
        file_size: &dyn Fn(&str) -> Option<usize>,
    ) -> Result<(), ConfigError> {
        self.cpu_assignment(host.cpus)?;

        let mut ram_total: u64 = 0;
        for vm in &self.vms {
            ram_total = ram_total.saturating_add(vm.memory);
            if ram_total > host.ram_bytes {
                return Err(self.error(
                    vm.sites.memory,
                    format!("vm.{}.memory", vm.name),
                    format!(
                        "not enough RAM: the VMs up to this one need {} and the board has {}",
                        human_size(ram_total),
                        human_size(host.ram_bytes)
                    ),
                ));
            }
        }

        for vm in &self.vms {
            if let (Some(bits), Some(vqs)) = (vm.cpu.sve_vl, host.sve_vqs)
                && let Err(e) = crate::sysreg::sve_cap_in(vqs, Some(bits))
            {
                return Err(self.error(
                    vm.sites.sve_vl,
                    format!("vm.{}.cpu.sve_vl", vm.name),
                    e.to_string(),
                ));
            }
        }

        for vm in &self.vms {
            self.check_pmu(vm, host)?;
            for i in 0..vm.passthrough.len() {
                self.check_passthrough(vm, i, host)?;
            }
            self.check_files(vm, file_size)?;
        }
        Ok(())
    }

    /// `[vm.cpu] pmu`/`pmu_counters` against the host's PMU: a PMU asked for needs
    /// one, and a guest cannot have more event counters than the hardware (its
    /// counters are the hardware's, partitioned by MDCR_EL2.HPMN).
    fn check_pmu(&self, vm: &VmConfig, host: &HostFacts) -> Result<(), ConfigError> {
        let Some(have) = host.pmu_counters else {
            return Ok(());
        };
        if have == 0 && vm.cpu.pmu == Some(true) {
            return Err(self.error(
                vm.sites.pmu,
                format!("vm.{}.cpu.pmu", vm.name),
                "the host has no PMUv3 (ID_AA64DFR0_EL1.PMUVer), so there is none to give: \
                 remove the key or set pmu = false"
                    .into(),
            ));
        }
        match vm.cpu.pmu_counters {
            Some(n) if have == 0 && vm.cpu.pmu != Some(false) => Err(self.error(
                vm.sites.pmu_counters,
                format!("vm.{}.cpu.pmu_counters", vm.name),
                format!("{n} counters asked for, but the host has no PMUv3"),
            )),
            Some(n) if n > have => Err(self.error(
                vm.sites.pmu_counters,
                format!("vm.{}.cpu.pmu_counters", vm.name),
                format!(
                    "{n} counters asked for, but the host's PMU has {have} (PMCR_EL0.N): a \
                     guest's counters are the hardware's own"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// `vm.passthrough[i]` against the board: every page of the window is a device the
    /// device tree describes, none of those devices can master the bus, and every
    /// interrupt is one those devices' nodes list and the hypervisor does not use.
    fn check_passthrough(
        &self,
        vm: &VmConfig,
        i: usize,
        host: &HostFacts,
    ) -> Result<(), ConfigError> {
        let pt = &vm.passthrough[i];
        let sites = vm.sites.passthrough.get(i).cloned().unwrap_or_default();
        let field = format!("vm.{}.passthrough[{i}]", vm.name);
        let window = pt.base..pt.base + pt.size;
        let all_regs: Vec<(u64, u64)> = host
            .devices
            .iter()
            .flat_map(|d| d.regs.iter().copied())
            .collect();
        if let Some(gap) = uncovered(window.clone(), &all_regs) {
            return Err(self.error(
                sites.table,
                field,
                format!(
                    "{:#x}..{:#x} is not a device of the board (no device-tree node describes \
                     {:#x}..{:#x}, so nothing is known about what is there) or is one the \
                     hypervisor keeps",
                    window.start, window.end, gap.start, gap.end
                ),
            ));
        }
        // The nodes the window maps, whole or in part (by whole pages, as stage 2 maps).
        let inside: Vec<&HostDevice> = host
            .devices
            .iter()
            .filter(|d| {
                d.regs
                    .iter()
                    .any(|&r| page_range(r).is_some_and(|p| overlaps(&p, &window)))
            })
            .collect();
        for d in &inside {
            if let Some(why) = &d.bus_master {
                return Err(self.error(
                    sites.table,
                    field,
                    format!(
                        "{} can master the bus (do DMA): {why}. A device doing DMA reaches all \
                         of memory, other VMs' and the hypervisor's, and Ferrovisor does not \
                         confine DMA (no IOMMU support yet), so it is never passed through",
                        d.path
                    ),
                ));
            }
            if !d.enabled {
                return Err(self.error(
                    sites.table,
                    field,
                    format!(
                        "{}: its device-tree status is not \"okay\": the firmware says the \
                         device is not available",
                        d.path
                    ),
                ));
            }
        }
        for (j, &irq) in pt.irqs.iter().enumerate() {
            let at = sites.irqs.get(j).copied().flatten().or(sites.table);
            if let Some((_, what)) = host.kept_irqs.iter().find(|(k, _)| *k == irq) {
                return Err(self.error(
                    at,
                    format!("{field}.irqs"),
                    format!("INTID {irq} is {what}; it cannot be given to a VM"),
                ));
            }
            if !inside.iter().any(|d| d.irqs.contains(&irq)) {
                let listed: Vec<String> = inside
                    .iter()
                    .map(|d| {
                        let ids: Vec<String> = d.irqs.iter().map(u32::to_string).collect();
                        if ids.is_empty() {
                            format!("{} lists none", d.path)
                        } else {
                            format!("{} lists {}", d.path, ids.join(", "))
                        }
                    })
                    .collect();
                return Err(self.error(
                    at,
                    format!("{field}.irqs"),
                    format!(
                        "INTID {irq} is not an interrupt of the device{}: only interrupts the \
                         device tree gives the devices in {:#x}..{:#x} can be passed through \
                         ({})",
                        if inside.len() == 1 { "" } else { "s" },
                        window.start,
                        window.end,
                        listed.join("; ")
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_files(
        &self,
        vm: &VmConfig,
        file_size: &dyn Fn(&str) -> Option<usize>,
    ) -> Result<(), ConfigError> {
        let images = [
            ("kernel", Some(&vm.kernel.path), vm.sites.kernel),
            ("initrd", vm.initrd.as_ref(), vm.sites.initrd),
            ("dtb", vm.dtb.as_ref(), vm.sites.dtb),
        ];
        let mut total: u64 = 0;
        for (key, path, position) in images {
            let Some(path) = path else { continue };
            let field = format!("vm.{}.{key}", vm.name);
            let size = file_size(path).ok_or_else(|| {
                self.error(
                    position,
                    field.clone(),
                    format!("cannot read `{path}`: no such file, or not readable"),
                )
            })?;
            if size as u64 > vm.memory {
                return Err(self.error(
                    position,
                    field,
                    format!(
                        "`{path}` is {size} bytes, larger than the VM's memory ({})",
                        human_size(vm.memory)
                    ),
                ));
            }
            if key == "dtb" && size > MAX_DTB {
                return Err(self.error(
                    position,
                    field,
                    format!("`{path}` is {size} bytes; a device tree may be at most 2M (Linux booting.rst)"),
                ));
            }
            total = total.saturating_add(size as u64);
        }
        if total > vm.memory {
            return Err(self.error(
                vm.sites.memory,
                format!("vm.{}.memory", vm.name),
                format!(
                    "kernel, initrd and dtb together are {total} bytes, more than the VM's memory ({})",
                    human_size(vm.memory)
                ),
            ));
        }
        Ok(())
    }

    /// Where `vm`'s kernel goes and where it starts, read from the kernel file's bytes;
    /// errors (bad header, image too large for the VM's RAM) point at the `kernel` field.
    pub fn plan_kernel(&self, vm: &VmConfig, kernel: &[u8]) -> Result<LoadPlan, ConfigError> {
        plan_load(&vm.kernel.kind, kernel, vm.base, vm.memory).map_err(|e| {
            self.error(
                vm.sites.kernel,
                format!("vm.{}.kernel", vm.name),
                format!("`{}`: {e}", vm.kernel.path),
            )
        })
    }
}

/// A device's registers widened to whole 4 KiB pages (several small devices, like QEMU
/// virt's 512-byte virtio-mmio transports, share a page, and a page is the least stage 2
/// can map); `None` for an empty range.
fn page_range((base, size): (u64, u64)) -> Option<Range<u64>> {
    if size == 0 {
        return None;
    }
    let start = base - base % GUEST_PAGE;
    let end = base
        .saturating_add(size)
        .checked_next_multiple_of(GUEST_PAGE)
        .unwrap_or(u64::MAX);
    Some(start..end)
}

fn overlaps(a: &Range<u64>, b: &Range<u64>) -> bool {
    a.start < b.end && b.start < a.end
}

/// The first part of `range` that no device covers, with every device widened to whole
/// pages ([`page_range`]).
fn uncovered(range: Range<u64>, devices: &[(u64, u64)]) -> Option<Range<u64>> {
    let mut pages: Vec<Range<u64>> = devices.iter().filter_map(|&d| page_range(d)).collect();
    pages.sort_by_key(|r| r.start);
    let mut at = range.start;
    for dev in pages {
        if at >= range.end {
            return None;
        }
        if dev.end <= at {
            continue;
        }
        if dev.start > at {
            return Some(at..dev.start.min(range.end));
        }
        at = dev.end;
    }
    (at < range.end).then_some(at..range.end)
}

#[cfg(test)]
mod tests {
    use super::uncovered;

    #[test]
    fn coverage_by_page_rounded_devices() {
        // Eight 512-byte virtio-mmio transports fill one page.
        let virtio: alloc::vec::Vec<(u64, u64)> =
            (0..8).map(|i| (0x0a00_0000 + i * 0x200, 0x200)).collect();
        assert_eq!(uncovered(0x0a00_0000..0x0a00_1000, &virtio), None);
        assert_eq!(
            uncovered(0x0a00_0000..0x0a00_2000, &virtio),
            Some(0x0a00_1000..0x0a00_2000)
        );
        // Adjacent devices cover a range together; a hole is found.
        let devs = [(0x1000, 0x1000), (0x2000, 0x1000), (0x5000, 0x1000)];
        assert_eq!(uncovered(0x1000..0x3000, &devs), None);
        assert_eq!(uncovered(0x1000..0x6000, &devs), Some(0x3000..0x5000));
        assert_eq!(uncovered(0x0..0x1000, &devs), Some(0x0..0x1000));
        assert_eq!(uncovered(0x1000..0x2000, &[]), Some(0x1000..0x2000));
    }
}
