//! vgic
