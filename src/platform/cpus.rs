//! Which of the device tree's CPUs the hypervisor drives, and their logical numbers.
//!
//! The boot CPU is logical CPU 0 (it runs on the first stack and per-CPU slot) —
//! whichever place it has in `/cpus`: a board's firmware may boot on any core. The
//! other driven CPUs follow in tree order. A config names CPUs by their place among
//! the driven CPUs in tree order, so that numbering does not depend on which core
//! the firmware booted on.

use alloc::vec::Vec;
use core::fmt;

use super::CpuNode;

/// The CPUs the hypervisor drives, by logical and by config number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuMap {
    /// Index into the tree's CPUs of each logical CPU.
    by_logical: Vec<usize>,
    /// Index into the tree's CPUs of each config CPU number (tree order).
    by_config: Vec<usize>,
    /// CPUs the tree lists that are not driven (beyond the build's limit).
    left_out: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuMapError {
    /// The CPU running the boot is not in `/cpus`.
    BootCpuNotListed { mpidr: u64 },
    /// Two `/cpus/cpu` nodes name the same CPU.
    DuplicateMpidr { mpidr: u64 },
}

impl fmt::Display for CpuMapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CpuMapError::BootCpuNotListed { mpidr } => write!(
                f,
                "device tree /cpus: the boot CPU (MPIDR {mpidr:#x}) is not among its CPUs"
            ),
            CpuMapError::DuplicateMpidr { mpidr } => {
                write!(f, "device tree /cpus: two CPU nodes have reg {mpidr:#x}")
            }
        }
    }
}

impl CpuMap {
    /// The CPUs to drive, at most `max`: the first `max` in tree order, except
    /// that the boot CPU (`boot_mpidr`, MPIDR_EL1 as read) is always one of them,
    /// in place of the last when it comes later in the tree.
    pub fn new(cpus: &[CpuNode], boot_mpidr: u64, max: usize) -> Result<CpuMap, CpuMapError> {
        let boot_mpidr = crate::sysreg::Mpidr::new(boot_mpidr).affinity();
        let mut sorted: Vec<u64> = cpus
            .iter()
            .map(|c| crate::sysreg::Mpidr::new(c.mpidr).affinity())
            .collect();
        sorted.sort_unstable();
        if let Some(w) = sorted.windows(2).find(|w| w[0] == w[1]) {
            return Err(CpuMapError::DuplicateMpidr { mpidr: w[0] });
        }
        let boot = cpus
            .iter()
            .position(|c| crate::sysreg::Mpidr::new(c.mpidr).affinity() == boot_mpidr)
            .ok_or(CpuMapError::BootCpuNotListed { mpidr: boot_mpidr })?;
        let mut by_config: Vec<usize> = (0..cpus.len()).take(max.max(1)).collect();
        if !by_config.contains(&boot) {
            by_config.pop();
            by_config.push(boot);
        }
        let by_logical = core::iter::once(boot)
            .chain(by_config.iter().copied().filter(|&i| i != boot))
            .collect();
        Ok(CpuMap {
            by_logical,
            left_out: cpus.len() - by_config.len(),
            by_config,
        })
    }

    /// How many CPUs are driven.
    pub fn len(&self) -> usize {
        self.by_logical.len()
    }

    /// Never: the boot CPU is always driven.
    pub fn is_empty(&self) -> bool {
        self.by_logical.is_empty()
    }

    /// How many CPUs of the tree are not driven.
    pub fn left_out(&self) -> usize {
        self.left_out
    }

    /// The index in the tree's CPUs of logical CPU `logical`.
    pub fn node(&self, logical: usize) -> Option<usize> {
        self.by_logical.get(logical).copied()
    }

    /// The logical CPU of config CPU number `config_cpu`.
    pub fn logical_of(&self, config_cpu: usize) -> Option<usize> {
        let node = *self.by_config.get(config_cpu)?;
        self.by_logical.iter().position(|&n| n == node)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn cpus(mpidrs: &[u64]) -> Vec<CpuNode> {
        mpidrs
            .iter()
            .map(|&mpidr| CpuNode {
                mpidr,
                enable_method: Some("psci".into()),
                cpu_release_addr: None,
            })
            .collect()
    }

    fn logicals(m: &CpuMap, n: usize) -> Vec<Option<usize>> {
        (0..n).map(|c| m.logical_of(c)).collect()
    }

    #[test]
    fn boot_cpu_first_in_the_tree() {
        let m = CpuMap::new(&cpus(&[0, 1, 2, 3]), 0x8000_0000, 8).unwrap();
        assert_eq!(m.len(), 4);
        assert_eq!(
            (0..4).map(|l| m.node(l)).collect::<Vec<_>>(),
            [0, 1, 2, 3].map(Some)
        );
        assert_eq!(
            logicals(&m, 5),
            vec![Some(0), Some(1), Some(2), Some(3), None]
        );
    }

    #[test]
    fn boot_cpu_in_the_middle_of_the_tree() {
        // Booted on the third CPU (e.g. a big.LITTLE board booting on a big core).
        let m = CpuMap::new(&cpus(&[0, 1, 0x100, 0x101]), 0x8100_0100, 8).unwrap();
        assert_eq!(m.node(0), Some(2));
        assert_eq!(
            (1..4).map(|l| m.node(l)).collect::<Vec<_>>(),
            [0, 1, 3].map(Some)
        );
        // Config CPU numbers stay tree order.
        assert_eq!(logicals(&m, 4), vec![Some(1), Some(2), Some(0), Some(3)]);
        assert_eq!(m.left_out(), 0);
    }

    #[test]
    fn boot_cpu_beyond_the_limit_replaces_the_last() {
        // Ten CPUs, the build drives eight, the firmware booted on the tenth.
        let tree: Vec<u64> = (0..10).collect();
        let m = CpuMap::new(&cpus(&tree), 9, 8).unwrap();
        assert_eq!(m.len(), 8);
        assert_eq!(m.left_out(), 2);
        assert_eq!(m.node(0), Some(9));
        // Config numbers 0..6 are tree CPUs 0..6, number 7 is the boot CPU.
        assert_eq!(m.logical_of(7), Some(0));
        assert_eq!(m.logical_of(0), Some(1));
        assert_eq!(m.logical_of(6), Some(7));
        assert_eq!(m.logical_of(8), None);
        // Every logical CPU is a distinct driven CPU.
        let mut nodes: Vec<usize> = (0..8).filter_map(|l| m.node(l)).collect();
        nodes.sort();
        assert_eq!(nodes, vec![0, 1, 2, 3, 4, 5, 6, 9]);
    }

    #[test]
    fn errors_name_the_cpu() {
        assert_eq!(
            CpuMap::new(&cpus(&[0, 1]), 7, 8),
            Err(CpuMapError::BootCpuNotListed { mpidr: 7 })
        );
        assert_eq!(
            CpuMap::new(&cpus(&[0, 1, 1]), 0, 8),
            Err(CpuMapError::DuplicateMpidr { mpidr: 1 })
        );
        // MPIDR_EL1's non-affinity bits (RES1 bit 31, U, MT) do not count.
        assert!(CpuMap::new(&cpus(&[0x1_0000_0001]), 0x1_8000_0001, 8).is_ok());
    }
}
