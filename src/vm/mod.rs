//! VMs and vCPUs: what a VM is built from (images, layout, device tree), the EL2
//! controls it runs under, how a guest exit is handled and how exceptions are
//! injected, and (on the target) the run loop.

pub mod controls;
pub mod exit;
pub mod guest_fdt;
pub mod image;
pub mod inject;
pub mod layout;
pub mod ratelimit;
#[cfg(target_os = "none")]
pub mod run;
