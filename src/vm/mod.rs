//! vm
pub mod image;
pub mod guest_fdt;
