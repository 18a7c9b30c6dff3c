//! aarch64 at EL2: entry and Image header, vectors and world switch, EL2 MMU,
//! TLB/cache maintenance, bulk zeroing of RAM, system-register accessors,
//! firmware PSCI calls, the physical GIC and UART, and the run loop's hardware
//! ([`hw::ArchHw`]). All `unsafe` and assembly of Ferrovisor live here.

pub mod boot;
pub mod console;
pub mod cpuinfo;
pub mod exception;
pub mod firmware;
pub mod gic;
pub mod gicv2;
pub mod hostgic;
pub mod hw;
pub mod memory;
pub mod percpu;
pub mod ram;
pub mod regs;
pub mod uart;

use crate::vm::pcpu::Pcpu;

/// Runs this CPU's vCPUs for ever: installs its run loop, waits (at EL2) for
/// a vCPU to run, and enters it. Every later exit goes through the vector.
pub fn run(pcpu: Pcpu) -> ! {
    let pcpu = alloc::boxed::Box::leak(alloc::boxed::Box::new(pcpu));
    let index = pcpu.index();
    let regs = pcpu.start(&mut hw::ArchHw);
    percpu::install_pcpu(pcpu);
    // SAFETY: `regs` belongs to a vCPU of the leaked run loop (it lives for
    // the whole run, and only this CPU uses it); the stack is this CPU's.
    unsafe { exception::enter_first(regs, boot::stacks().top(index)) }
}
