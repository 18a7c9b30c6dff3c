//! A VM's vGIC as its vCPUs share it: the interrupt state behind one lock,
//! and per vCPU a flag that its list registers are out of date, readable
//! without the lock.
//!
//! The list registers of a running vCPU stay loaded across its exits: the
//! hypervisor reads them back only when something changed (a new interrupt, a
//! guest access to the distributor or redistributor, a maintenance
//! interrupt) or when the vCPU leaves its CPU. A trap that touches no
//! interrupt state — an HVC, an ID register read, most MMIO — therefore costs
//! nothing here: one relaxed load of the vCPU's flag before entry.
//!
//! Whoever changes interrupt state does it through [`VmGic::update`], which
//! marks the vCPUs whose LRs are affected (their flags set, still under the
//! lock) and returns them as a mask, so the caller can kick their physical
//! CPUs. Before entering a vCPU, its CPU calls [`VmGic::take_stale`]; if the
//! flag was set, it refills the LRs under the lock ([`Vgic::refill`]). A
//! change made after the refill sets the flag again and kicks the CPU, which
//! exits the guest and refills once more: no change is ever lost.

use core::sync::atomic::{AtomicBool, Ordering};

use alloc::boxed::Box;

use super::Vgic;

pub struct VmGic {
    state: crate::sync::Mutex<Vgic>,
    stale: Box<[AtomicBool]>,
}

impl VmGic {
    pub fn new(vgic: Vgic) -> Self {
        let n = vgic.nr_vcpus();
        VmGic {
            state: crate::sync::Mutex::new(vgic),
            stale: (0..n).map(|_| AtomicBool::new(true)).collect(),
        }
    }

    pub fn nr_vcpus(&self) -> usize {
        self.stale.len()
    }

    /// Runs `f` on the interrupt state. Returns its result and the vCPUs
    /// (bit n: vCPU n) whose list registers it made out of date; their flags
    /// are already set.
    pub fn update<R>(&self, f: impl FnOnce(&mut Vgic) -> R) -> (R, u64) {
        let mut v = self.state.lock();
        let r = f(&mut v);
        let mask = v.take_kicks_mask();
        self.publish(mask);
        (r, mask)
    }

    /// Sets the flags of the vCPUs in `mask`.
    fn publish(&self, mut mask: u64) {
        while mask != 0 {
            let i = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            if let Some(f) = self.stale.get(i) {
                f.store(true, Ordering::Release);
            }
        }
    }

    /// Whether vCPU `vcpu`'s list registers are out of date; clears the flag.
    /// The caller then refills them under [`VmGic::update`].
    pub fn take_stale(&self, vcpu: usize) -> bool {
        match self.stale.get(vcpu) {
            // Cheap test first: the flag is almost always clear.
            Some(f) => f.load(Ordering::Relaxed) && f.swap(false, Ordering::Acquire),
            None => false,
        }
    }

    /// Whether vCPU `vcpu`'s list registers are out of date (without clearing
    /// the flag: the exit path's test for "nothing to refill").
    #[inline]
    pub fn is_stale(&self, vcpu: usize) -> bool {
        self.stale
            .get(vcpu)
            .is_none_or(|f| f.load(Ordering::Relaxed))
    }

    /// Marks vCPU `vcpu`'s list registers out of date (a maintenance
    /// interrupt, a reset).
    pub fn mark_stale(&self, vcpu: usize) {
        self.publish(1 << vcpu);
    }

    /// Reads the state without changing it (tests, logs).
    pub fn inspect<R>(&self, f: impl FnOnce(&Vgic) -> R) -> R {
        f(&self.state.lock())
    }
}
