//! Checks that need the machine or the image files: CPUs and RAM enough, passthrough
//! ranges that are devices of the board, images present and small enough.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

use super::validate::human_size;
use super::{ConfigError, GUEST_PAGE, Position, SystemConfig, VmConfig};
use crate::vm::image::{LoadPlan, plan_load};

/// What the config is checked against: the machine as its device tree describes it.
/// Plain data so the host tool and the hypervisor can both fill it in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// Number of physical CPUs.
    pub cpus: usize,
    /// (base, size) of each device of the board a guest may be given. Leave out what the
    /// hypervisor keeps for itself (interrupt controller, its own UART).
    pub devices: Vec<(u64, u64)>,
    /// Bytes of RAM.
    pub ram_bytes: u64,
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

    /// The physical CPUs each VM's vCPUs run on (vCPU i of `vms[v]` on `result[v][i]`):
    /// the CPUs a VM lists in `cpus`, else the lowest CPUs no VM lists or was given before,
    /// in file order. Fails when a listed CPU does not exist or there are not enough CPUs.
    pub fn cpu_assignment(&self, host_cpus: usize) -> Result<Vec<Vec<usize>>, ConfigError> {
        let mut taken = alloc::vec![false; host_cpus];
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
                taken[cpu] = true;
            }
        }
        let total: usize = self.vms.iter().map(|vm| vm.vcpus).sum();
        let mut assignment = Vec::new();
        for vm in &self.vms {
            if let Some(cpus) = &vm.cpus {
                assignment.push(cpus.clone());
                continue;
            }
            let free: Vec<usize> = (0..host_cpus)
                .filter(|&c| !taken[c])
                .take(vm.vcpus)
                .collect();
            if free.len() < vm.vcpus {
                return Err(self.error(
                    vm.sites.vcpus.or(vm.sites.vm),
                    format!("vm.{}.vcpus", vm.name),
                    format!(
                        "not enough physical CPUs: the VMs have {total} vCPUs in all, each needing a \
                         physical CPU of its own, and the board has {host_cpus}"
                    ),
                ));
            }
            for &c in &free {
                taken[c] = true;
            }
            assignment.push(free);
        }
        Ok(assignment)
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
            for (i, pt) in vm.passthrough.iter().enumerate() {
                if let Some(gap) = uncovered(pt.base..pt.base + pt.size, &host.devices) {
                    return Err(self.error(
                        vm.sites.passthrough.get(i).copied().flatten(),
                        format!("vm.{}.passthrough[{i}]", vm.name),
                        format!(
                            "{:#x}..{:#x} is not a device of the board (nothing at {:#x}..{:#x}) \
                             or is one the hypervisor keeps",
                            pt.base,
                            pt.base + pt.size,
                            gap.start,
                            gap.end
                        ),
                    ));
                }
            }
            self.check_files(vm, file_size)?;
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

/// The first part of `range` that no device covers, with every device widened to whole
/// 4 KiB pages (several small devices, like QEMU virt's 512-byte virtio-mmio transports,
/// share a page, and a page is the least stage 2 can map).
fn uncovered(range: Range<u64>, devices: &[(u64, u64)]) -> Option<Range<u64>> {
    let mut pages: Vec<Range<u64>> = devices
        .iter()
        .filter(|(_, size)| *size > 0)
        .map(|&(base, size)| {
            let start = base - base % GUEST_PAGE;
            let end = base
                .saturating_add(size)
                .checked_next_multiple_of(GUEST_PAGE)
                .unwrap_or(u64::MAX);
            start..end
        })
        .collect();
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
