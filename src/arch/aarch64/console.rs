//! The physical console UART. What goes out on it (VM tags, log lines, input
//! focus) is decided by `devices::console`; this is only the hardware side.

use crate::sync::Mutex;
use core::fmt::Write;

use super::uart::Pl011;

/// The UART used before the device tree is read, and to report a wrong exception
/// level (QEMU virt's PL011; a board whose UART lives elsewhere changes this).
pub const EARLY_UART: usize = 0x0900_0000;

static UART: Mutex<Option<Pl011>> = Mutex::new(None);

/// Points the console at the PL011 at `base` (identity-mapped as Device).
pub fn init(base: u64) {
    // SAFETY: `base` comes from the host device tree (or EARLY_UART) and is mapped
    // as Device memory in the EL2 identity map; the console is its only user.
    *UART.lock() = Some(unsafe { Pl011::new(base as usize) });
}

/// Writes bytes as one unit (no other writer can interleave).
pub fn write_bytes(bytes: &[u8]) {
    if let Some(u) = UART.lock().as_ref() {
        for &b in bytes {
            if b == b'\n' {
                u.put(b'\r');
            }
            u.put(b);
        }
    }
}

/// One byte of keyboard input, if any.
pub fn read_byte() -> Option<u8> {
    UART.lock().as_ref().and_then(|u| u.get())
}

/// Lets keyboard input raise the UART's interrupt.
pub fn enable_rx_interrupt() {
    if let Some(u) = UART.lock().as_ref() {
        u.enable_rx_interrupt();
    }
}

/// Waits until all output has left the UART (before powering off).
pub fn flush() {
    if let Some(u) = UART.lock().as_ref() {
        u.flush();
    }
}

/// Writes formatted text as one unit.
pub fn write_fmt(args: core::fmt::Arguments<'_>) {
    if let Some(u) = UART.lock().as_mut() {
        let _ = u.write_fmt(args);
    }
}

/// Entered from the boot code when the CPU is not at EL2 (MMU off, no device
/// tree read): one line on the early UART, then the caller parks the CPU.
#[unsafe(no_mangle)]
extern "C" fn fv_wrong_exception_level(el: u64) {
    // SAFETY: EARLY_UART is the board's console; with the MMU off every access is
    // Device-nGnRnE, as the PL011 requires.
    let u = unsafe { Pl011::new(EARLY_UART) };
    let msg: &[u8] = b"ferrovisor: error: entered at EL";
    for &b in msg {
        u.put(b);
    }
    u.put(b'0' + (el as u8 & 3));
    let fix: &[u8] = b", but a hypervisor must be entered at EL2. QEMU: use -M virt,virtualization=on; boards: the firmware must enter the kernel at EL2. Stopping.\r\n";
    for &b in fix {
        u.put(b);
    }
}
