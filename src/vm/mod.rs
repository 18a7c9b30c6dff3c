//! VMs and vCPUs: what a VM is built from (images, layout, device tree), the EL2
//! controls it runs under, how a guest exit is handled and how exceptions are
//! injected, (on the target) the run loop, and exit statistics.

pub mod controls;
pub mod exit;
pub mod guest_fdt;
pub mod image;
pub mod inject;
pub mod layout;
#[cfg(target_os = "none")]
pub mod run;
pub mod stats;
