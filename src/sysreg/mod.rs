//! The system-register emulation core.
mod encoding;
pub use encoding::SysReg;

pub mod cache;
pub mod id;
