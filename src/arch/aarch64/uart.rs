//! The physical PL011 UART (Arm PrimeCell UART (PL011) TRM, DDI 0183), polled.

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

register_bitfields! [u32,
    FR [
        TXFF OFFSET(5) NUMBITS(1) [],
        RXFE OFFSET(4) NUMBITS(1) [],
        BUSY OFFSET(3) NUMBITS(1) [],
    ],
];

register_structs! {
    Pl011Regs {
        (0x00 => dr: ReadWrite<u32>),
        (0x04 => _reserved0),
        (0x18 => fr: ReadOnly<u32, FR::Register>),
        (0x1c => _reserved1),
        (0x38 => imsc: ReadWrite<u32>),
        (0x3c => @END),
    }
}

/// A PL011 at a physical address that is identity-mapped as Device memory (or
/// accessed with the MMU off, where every access is Device-nGnRnE).
pub struct Pl011 {
    base: usize,
}

impl Pl011 {
    /// # Safety
    /// `base` must be the address of a PL011 the caller owns, mapped as Device.
    pub const unsafe fn new(base: usize) -> Self {
        Pl011 { base }
    }

    fn regs(&self) -> &Pl011Regs {
        // SAFETY: `new`'s contract: `base` is a mapped PL011 register block.
        unsafe { &*(self.base as *const Pl011Regs) }
    }

    /// Writes one byte, waiting for room in the FIFO.
    pub fn put(&self, b: u8) {
        while !self.try_put(b) {}
    }

    /// Writes one byte if the transmit FIFO has room (UARTFR.TXFF clear);
    /// returns whether it did. Never waits.
    pub fn try_put(&self, b: u8) -> bool {
        if self.regs().fr.is_set(FR::TXFF) {
            return false;
        }
        self.regs().dr.set(b as u32);
        true
    }

    /// Reads one byte if one is waiting.
    pub fn get(&self) -> Option<u8> {
        if self.regs().fr.is_set(FR::RXFE) {
            None
        } else {
            Some(self.regs().dr.get() as u8)
        }
    }

    /// Raises the UART's interrupt when input arrives (UARTIMSC.RXIM and RTIM:
    /// receive and receive-timeout, TRM 3.3.10).
    pub fn enable_rx_interrupt(&self) {
        self.regs()
            .imsc
            .set(self.regs().imsc.get() | (1 << 4) | (1 << 6));
    }

    /// Waits until every byte has left the UART.
    pub fn flush(&self) {
        while self.regs().fr.is_set(FR::BUSY) {}
    }
}

impl core::fmt::Write for Pl011 {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
        Ok(())
    }
}
