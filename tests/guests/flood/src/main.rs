//! The flooding guest of the console-flood test (`tests/isolation.rs`,
//! `boards/qemu-virt/console-flood.toml`): after its banner it writes console
//! lines as fast as it can, forever, without ever looking at UARTFR.TXFF — as a
//! runaway guest would. Whatever it writes beyond what the line carries must be
//! dropped (and counted) by the hypervisor, and another VM's work must not slow
//! down for it.
#![no_std]
#![no_main]
#![deny(clippy::undocumented_unsafe_blocks)]

use guest_rt::console::PL011_BASE;
use guest_rt::println;

guest_rt::entry!(main);

/// `UARTDR`: data register (PL011 TRM 3.3.1).
const UARTDR: usize = 0x000;

/// One byte straight into UARTDR, whatever UARTFR says.
fn push(b: u8) {
    let dr = (PL011_BASE + UARTDR) as *mut u32;
    // SAFETY: the PL011's registers are mapped as Device memory by the runtime's
    // identity map; a 32-bit write of UARTDR sends one byte.
    unsafe { dr.write_volatile(u32::from(b)) };
}

fn main(_dtb: u64) -> ! {
    println!("Ferrovisor flood guest: flooding the console without looking at TXFF");
    const TEXT: &[u8] = b": the quick brown fox jumps over the lazy dog 0123456789\r\n";
    let mut line = 0u64;
    loop {
        for &b in b"flood " {
            push(b);
        }
        // The line number in hex, so the dropped stretches can be told apart.
        for shift in (0..16).rev() {
            push(b"0123456789abcdef"[((line >> (4 * shift)) & 0xf) as usize]);
        }
        for &b in TEXT {
            push(b);
        }
        line += 1;
    }
}
