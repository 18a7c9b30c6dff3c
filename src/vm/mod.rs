//! VMs and vCPUs: what a VM is built from (images, layout, device tree), the EL2
//! controls it runs under, how a guest exit is handled and how exceptions are
//! injected, the per-CPU loop that runs vCPUs ([`pcpu`]), the hardware it
//! needs as a trait ([`hw`]) so all of it runs under `cargo test`, and exit
//! statistics ([`stats`]).

pub mod controls;
pub mod exit;
#[cfg(test)]
pub(crate) mod fake;
pub mod guest_fdt;
pub mod hw;
pub mod image;
pub mod inject;
pub mod layout;
pub mod machine;
pub mod pcpu;
pub mod ram;
pub mod ratelimit;
pub mod stats;
pub mod vcpu;
