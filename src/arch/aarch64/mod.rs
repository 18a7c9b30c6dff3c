//! aarch64 EL2
