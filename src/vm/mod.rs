//! vm
pub mod image;
