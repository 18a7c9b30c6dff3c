//! The physical console UART. What goes out on it (VM tags, log lines, input
//! focus) is decided by `devices::console`; this is only the hardware side: the
//! board's UART behind the byte-level [`Uart`] interface.

use core::fmt::Write;
use spin::Mutex;

use super::uart::{HostUart, Pl011, Uart};
use crate::platform::UartCompatible;

/// The UART used when there is no device tree to name one, and to report a wrong
/// exception level (both before anything is known of the board): QEMU virt's
/// PL011. On any other board these messages are not seen.
pub const EARLY_UART: usize = 0x0900_0000;

static UART: Mutex<Option<HostUart>> = Mutex::new(None);

/// Points the console at the UART of kind `kind` at `base` (identity-mapped as
/// Device memory). Returns false, leaving the console as it was, when there is
/// no driver for that kind.
pub fn init(kind: &UartCompatible, base: u64) -> bool {
    // SAFETY: `base` comes from the host device tree's console UART (or is
    // EARLY_UART) and is mapped as Device memory in the EL2 identity map (the early
    // map makes everything but the image and device tree Device); the console is
    // its only user.
    match unsafe { HostUart::new(kind, base) } {
        Some(u) => {
            *UART.lock() = Some(u);
            true
        }
        None => false,
    }
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
    UART.lock().as_ref().and_then(|u| u.read_byte())
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

/// Formats into the UART, `\n` as `\r\n`.
struct Writer<'u>(&'u HostUart);

impl Write for Writer<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.0.put(b'\r');
            }
            self.0.put(b);
        }
        Ok(())
    }
}

/// Writes formatted text as one unit.
pub fn write_fmt(args: core::fmt::Arguments<'_>) {
    if let Some(u) = UART.lock().as_ref() {
        let _ = Writer(u).write_fmt(args);
    }
}

/// Entered from the boot code when the CPU is not at EL2 (MMU off, the image
/// relocated, no device tree read): one line on QEMU virt's PL011 when the device
/// tree in `dtb` says the machine is QEMU virt, nothing elsewhere (where that
/// address may be RAM or another device); then the caller parks the CPU.
#[unsafe(no_mangle)]
extern "C" fn fv_wrong_exception_level(el: u64, dtb: u64) {
    let virt = dtb != 0
        && crate::platform::early::root_is_compatible(
            &mut |i| {
                // SAFETY: a byte of the device tree the boot loader passed in x0,
                // within its totalsize (root_is_compatible's contract); with the MMU
                // off a byte load is never misaligned.
                unsafe { ((dtb as usize + i) as *const u8).read_volatile() }
            },
            "linux,dummy-virt",
        );
    if !virt {
        return;
    }
    // SAFETY: the device tree says QEMU virt, whose PL011 is at EARLY_UART; with
    // the MMU off every access is Device-nGnRnE, as the PL011 requires.
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
