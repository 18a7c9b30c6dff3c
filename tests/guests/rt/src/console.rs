//! The guest console: a PL011 UART at guest PA `0x0900_0000` (QEMU virt's UART0, and
//! the address the hypervisor's emulated console answers at).
//!
//! Only two registers are used, so an emulated PL011 needs little to serve a guest:
//! `UARTFR` (polled until `TXFF` is clear) and `UARTDR` (one byte per write). The
//! UART is not programmed (QEMU and firmware leave it enabled). `\n` goes out as
//! `\r\n` for terminals; the test harness strips the `\r`.

use core::fmt::{self, Write};

/// Guest physical (= virtual, identity map) address of the PL011.
pub const PL011_BASE: usize = 0x0900_0000;
/// `UARTDR`: data register (PL011 TRM 3.3.1).
const UARTDR: usize = 0x000;
/// `UARTFR`: flag register (PL011 TRM 3.3.3).
const UARTFR: usize = 0x018;
/// `UARTFR.TXFF`: the transmit FIFO is full.
const UARTFR_TXFF: u32 = 1 << 5;

/// Sends one byte, waiting while the transmit FIFO is full.
pub fn putb(byte: u8) {
    let fr = (PL011_BASE + UARTFR) as *const u32;
    let dr = (PL011_BASE + UARTDR) as *mut u32;
    // SAFETY: the PL011's registers are mapped as Device memory by the boot identity
    // map; 32-bit volatile accesses to UARTFR/UARTDR are what the device expects.
    unsafe {
        while fr.read_volatile() & UARTFR_TXFF != 0 {}
        dr.write_volatile(u32::from(byte));
    }
}

/// A `fmt::Write` handle on the console.
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for byte in s.bytes() {
            if byte == b'\n' {
                putb(b'\r');
            }
            putb(byte);
        }
        Ok(())
    }
}

#[doc(hidden)]
pub fn _print(args: fmt::Arguments<'_>) {
    // Console::write_str never fails.
    let _ = Console.write_fmt(args);
}

/// Prints to the guest console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::_print(format_args!($($arg)*)) };
}

/// Prints a line to the guest console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::_print(format_args!("{}\n", format_args!($($arg)*))) };
}
