//! sysreg
