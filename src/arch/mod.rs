//! The one hardware layer. All `unsafe` and inline assembly of Ferrovisor live below
//! this module; everything else is plain Rust tested on the host.
pub mod aarch64;
pub use aarch64::*;
