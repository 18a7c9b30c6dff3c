//! psci
