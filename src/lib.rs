//! Ferrovisor: a Type-1, bare-metal arm64 hypervisor running at EL2.
//!
//! Everything that decides is plain Rust over plain data and is tested on the host
//! with `cargo test`; the one hardware layer is [`arch`], built only for the
//! bare-metal target. See `README.md` and `src/main.rs` for the boot sequence.
#![cfg_attr(not(test), no_std)]
#![deny(clippy::undocumented_unsafe_blocks)]

extern crate alloc;

#[cfg(target_os = "none")]
pub mod arch;
pub mod config;
pub mod devices;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod mm;
pub mod platform;
pub mod psci;
pub mod relocate;
pub mod sync;
pub mod sysreg;
#[cfg(test)]
mod testing;
pub mod timer;
pub mod trap;
pub mod vgic;
pub mod vm;
