//! A small interactive guest that stays up: it answers each line typed on its console
//! and sleeps in WFI in between (its console's receive interrupt, INTID 33, wakes it).
//! `boards/qemu-virt/two-vm.toml` runs it beside Linux to show the shared console: the
//! switch key moves the keyboard between the two, and each answers on its own tagged
//! lines. It never powers its VM off.
#![no_std]
#![no_main]
#![deny(clippy::undocumented_unsafe_blocks)]

use guest_rt::console::PL011_BASE;
use guest_rt::{print, println};

guest_rt::entry!(main);

#[path = "../../conformance/src/gic.rs"]
#[allow(dead_code)]
mod gic;

/// QEMU virt's UART interrupt, SPI 1: where the hypervisor's emulated PL011 raises it.
const UART_INTID: u32 = 33;
/// PL011 registers (PL011 TRM 3.2): data, flags, interrupt mask.
const UARTDR: usize = 0x000;
const UARTFR: usize = 0x018;
const UARTIMSC: usize = 0x038;
/// UARTFR.RXFE: the receive FIFO is empty.
const UARTFR_RXFE: u32 = 1 << 4;
/// UARTIMSC.RXIM and RTIM: interrupt on received data and on receive timeout.
const UARTIMSC_RX: u32 = (1 << 4) | (1 << 6);

fn uart_read(offset: usize) -> u32 {
    // SAFETY: a PL011 register in the runtime's Device mapping; reading UARTDR takes
    // the received byte, which is what the caller asks for.
    unsafe { ((PL011_BASE + offset) as *const u32).read_volatile() }
}

fn uart_write(offset: usize, value: u32) {
    // SAFETY: a PL011 register in the Device mapping; the write sets its interrupt mask.
    unsafe { ((PL011_BASE + offset) as *mut u32).write_volatile(value) }
}

fn main(_dtb: u64) -> ! {
    println!("Ferrovisor echo guest: type a line and press Enter, and I answer it.");
    println!("Ctrl-a three times moves the keyboard to the other VM (and back).");
    gic::init_for_spi(UART_INTID);
    uart_write(UARTIMSC, UARTIMSC_RX);
    let mut line = [0u8; 120];
    let mut len = 0;
    let mut lines = 0u64;
    print!("echo> ");
    loop {
        let intid = gic::sleep_until_irq();
        while uart_read(UARTFR) & UARTFR_RXFE == 0 {
            match uart_read(UARTDR) as u8 {
                b'\r' | b'\n' => {
                    lines += 1;
                    let text = core::str::from_utf8(&line[..len]).unwrap_or("(not UTF-8)");
                    println!();
                    println!("echo: line {lines}: \"{text}\" ({len} bytes)");
                    len = 0;
                    print!("echo> ");
                }
                // Backspace and DEL: take the last character back, and show the line
                // again on a fresh prompt (no control characters: the console shows
                // a guest's control characters escaped).
                0x08 | 0x7f if len > 0 => {
                    len -= 1;
                    let text = core::str::from_utf8(&line[..len]).unwrap_or("");
                    println!();
                    print!("echo> {text}");
                }
                byte @ 0x20..=0x7e if len < line.len() => {
                    line[len] = byte;
                    len += 1;
                    print!("{}", byte as char);
                }
                _ => {}
            }
        }
        if let Some(intid) = intid {
            gic::eoi(intid);
        }
    }
}
