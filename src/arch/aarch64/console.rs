//! The physical console UART. What goes out on it (VM tags, log lines, input
//! focus) is decided by `devices::console`; this is only the hardware side.

use core::fmt::Write;
use core::sync::atomic::{AtomicUsize, Ordering};

use super::uart::Pl011;

/// The UART used before the device tree is read, and to report a wrong exception
/// level (QEMU virt's PL011; a board whose UART lives elsewhere changes this).
pub const EARLY_UART: usize = 0x0900_0000;

/// The console UART's base address (0: none yet). Transmit and receive are
/// used from different CPUs at once without a lock: they are separate FIFOs
/// behind separate registers, and `devices::console` lets one CPU at a time
/// transmit. So receiving never waits for transmission.
static BASE: AtomicUsize = AtomicUsize::new(0);

fn uart() -> Option<Pl011> {
    match BASE.load(Ordering::Acquire) {
        0 => None,
        // SAFETY: a non-zero BASE was set by `init` from the host device tree (or
        // EARLY_UART), mapped as Device memory in the EL2 identity map.
        base => Some(unsafe { Pl011::new(base) }),
    }
}

/// Points the console at the PL011 at `base` (identity-mapped as Device).
pub fn init(base: u64) {
    BASE.store(base as usize, Ordering::Release);
}

/// Puts one byte into the transmit FIFO if it has room; never waits.
pub fn try_put_byte(b: u8) -> bool {
    uart().is_none_or(|u| u.try_put(b))
}

/// One byte of keyboard input, if any.
pub fn read_byte() -> Option<u8> {
    uart().and_then(|u| u.get())
}

/// Lets keyboard input raise the UART's interrupt.
pub fn enable_rx_interrupt() {
    if let Some(u) = uart() {
        u.enable_rx_interrupt();
    }
}

/// Waits until all output has left the UART (before powering off).
pub fn flush() {
    if let Some(u) = uart() {
        u.flush();
    }
}

/// Writes formatted text directly, bypassing the console (the panic handler).
pub fn write_fmt(args: core::fmt::Arguments<'_>) {
    if let Some(mut u) = uart() {
        let _ = u.write_fmt(args);
    }
}

/// Writes a fatal report (a panic, a stack overflow) whatever state the
/// console is in: no lock is taken (the faulting CPU may hold the console's),
/// and before `init` (a fault in the first steps of the boot) the early UART
/// is used. Lines may interleave with another CPU's; losing the report would
/// be worse.
pub fn write_fatal(args: core::fmt::Arguments<'_>) {
    let base = match BASE.load(Ordering::Acquire) {
        0 => EARLY_UART,
        base => base,
    };
    // SAFETY: `base` is the console PL011 that `init` was given, or the board's
    // early UART, both mapped as Device (the early map makes everything outside
    // the image's GiB Device); a second handle only adds bytes to its FIFO.
    let mut u = unsafe { Pl011::new(base) };
    let _ = u.write_fmt(args);
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
