//! The physical console UART. What goes out on it (VM tags, log lines, input
//! focus) is decided by `devices::console`; this is only the hardware side: the
//! board's UART behind the byte-level [`Uart`] interface.

use core::fmt::Write;
use core::sync::atomic::{AtomicUsize, Ordering};

use super::uart::{HostUart, Pl011, Uart};
use crate::platform::UartCompatible;

/// The UART used when there is no device tree to name one, and to report a wrong
/// exception level (both before anything is known of the board): QEMU virt's
/// PL011. On any other board these messages are not seen.
pub const EARLY_UART: usize = 0x0900_0000;

/// The drivers `init` was given, each at most once (the early UART, then the
/// board's console), and which one is in use (0: none yet). Transmit and
/// receive are used from different CPUs at once without a lock: they are
/// separate FIFOs behind separate registers, and `devices::console` lets one
/// CPU at a time transmit, so receiving never waits for transmission.
static SLOTS: [spin::Once<HostUart>; 2] = [spin::Once::new(), spin::Once::new()];
static CURRENT: AtomicUsize = AtomicUsize::new(0);

fn uart() -> Option<&'static HostUart> {
    match CURRENT.load(Ordering::Acquire) {
        0 => None,
        n => SLOTS.get(n - 1).and_then(|s| s.get()),
    }
}

/// Points the console at the UART of kind `kind` at `base` (identity-mapped as
/// Device memory). Returns false, leaving the console as it was, when there is
/// no driver for that kind (or the console was already moved twice).
pub fn init(kind: &UartCompatible, base: u64) -> bool {
    let next = CURRENT.load(Ordering::Acquire);
    let Some(slot) = SLOTS.get(next) else {
        return false;
    };
    // SAFETY: `base` comes from the host device tree's console UART (or is
    // EARLY_UART) and is mapped as Device memory in the EL2 identity map (the early
    // map makes everything but the image and device tree Device); the console is
    // its only user.
    let Some(u) = (unsafe { HostUart::new(kind, base) }) else {
        return false;
    };
    slot.call_once(|| u);
    CURRENT.store(next + 1, Ordering::Release);
    true
}

/// Puts one byte into the transmitter if it has room; never waits.
pub fn try_put_byte(b: u8) -> bool {
    match uart() {
        Some(u) if u.tx_ready() => {
            u.write_byte(b);
            true
        }
        Some(_) => false,
        None => true,
    }
}

/// One byte of keyboard input, if any.
pub fn read_byte() -> Option<u8> {
    uart().and_then(|u| u.read_byte())
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

/// Formats into a UART, `\n` as `\r\n`.
struct Writer<'u>(&'u dyn Uart);

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

/// Writes formatted text directly, bypassing the console (the panic handler).
pub fn write_fmt(args: core::fmt::Arguments<'_>) {
    if let Some(u) = uart() {
        let _ = Writer(u).write_fmt(args);
    }
}

/// Writes a fatal report (a panic, a stack overflow) whatever state the
/// console is in: no lock is taken (the faulting CPU may hold the console's).
/// Lines may interleave with another CPU's; losing the report would be worse.
/// Before the console is set up (the first instructions of the boot) nothing
/// is written: the board's UART is not known yet, and QEMU virt's address may
/// be RAM or another device elsewhere.
pub fn write_fatal(args: core::fmt::Arguments<'_>) {
    if let Some(u) = uart() {
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
