//! aarch64 at EL2: entry and Image header, vectors and world switch, EL2 MMU,
//! TLB/cache maintenance, bulk zeroing of RAM, system-register accessors,
//! firmware PSCI calls, the physical UART. All `unsafe` and assembly of
//! Ferrovisor live here.

pub mod boot;
pub mod console;
pub mod cpuinfo;
pub mod exception;
pub mod firmware;
pub mod gic;
pub mod hostgic;
pub mod memory;
pub mod percpu;
pub mod ram;
pub mod regs;
pub mod uart;

pub use exception::{ExitCause, GuestRegs, LiveEl1, enter_guest};
pub use regs::reset_el1_state;
