//! What the well-behaved guests need beyond the runtime: the virtual counter as a
//! clock and keyboard input from the PL011 (the runtime's console only sends).
//! Shared by the victim and hostile guests (`#[path]`-included by the hostile one).

use core::arch::asm;

use guest_rt::console::PL011_BASE;

/// `UARTDR`: data register (PL011 TRM 3.3.1); a read takes one received byte.
const UARTDR: usize = 0x000;
/// `UARTFR`: flag register (PL011 TRM 3.3.3).
const UARTFR: usize = 0x018;
/// `UARTFR.RXFE`: the receive FIFO is empty.
const UARTFR_RXFE: u32 = 1 << 4;

/// One received byte, if any is waiting.
pub fn getb() -> Option<u8> {
    let fr = (PL011_BASE + UARTFR) as *const u32;
    let dr = (PL011_BASE + UARTDR) as *const u32;
    // SAFETY: the PL011's registers are mapped as Device memory by the runtime's
    // identity map; 32-bit volatile reads are what the device expects, and a read
    // of UARTDR only takes the byte this guest asked for.
    unsafe {
        if fr.read_volatile() & UARTFR_RXFE != 0 {
            None
        } else {
            Some(dr.read_volatile() as u8)
        }
    }
}

/// `CNTVCT_EL0`, the virtual count (Arm ARM D12.1.2: CNTPCT_EL0 - CNTVOFF_EL2). The
/// hypervisor starts it near zero when it loads the VM.
pub fn cntvct() -> u64 {
    let v: u64;
    // SAFETY: reading the virtual count is allowed at EL1 and has no side effects;
    // the ISB keeps it from being read early (Arm ARM D12.2.2).
    unsafe { asm!("isb", "mrs {}, cntvct_el0", out(reg) v, options(nomem, nostack)) };
    v
}

/// `CNTFRQ_EL0`: counter ticks per second.
pub fn cntfrq() -> u64 {
    let v: u64;
    // SAFETY: reading CNTFRQ_EL0 is allowed at EL1 and has no side effects.
    unsafe { asm!("mrs {}, cntfrq_el0", out(reg) v, options(nomem, nostack)) };
    v
}

/// Milliseconds of virtual count since the VM was loaded.
pub fn millis() -> u64 {
    let freq = cntfrq().max(1);
    ((cntvct() as u128) * 1000 / (freq as u128)) as u64
}
