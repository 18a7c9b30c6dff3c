//! The physical console UARTs, polled: the byte-level interface the console drives
//! ([`Uart`]) and one small driver per register interface a board's device tree may
//! name in `/chosen/stdout-path` (`platform::UartCompatible`).
//!
//! None of them sets a baud rate or line format: the firmware or U-Boot left the
//! UART configured (as Linux's `earlycon` assumes). Each only makes sure its
//! transmitter and receiver are enabled.

use tock_registers::interfaces::{Readable, Writeable};
use tock_registers::register_bitfields;
use tock_registers::register_structs;
use tock_registers::registers::{ReadOnly, ReadWrite};

use crate::platform::UartCompatible;

/// What the console needs of a UART: one byte at a time, polled.
pub trait Uart {
    /// Whether the transmitter takes another byte now.
    fn tx_ready(&self) -> bool;
    /// Hands one byte to the transmitter (after [`Uart::tx_ready`]).
    fn write_byte(&self, b: u8);
    /// One received byte, if one is waiting.
    fn read_byte(&self) -> Option<u8>;
    /// Whether every byte written has left the UART.
    fn tx_idle(&self) -> bool;
    /// Raises the UART's interrupt while received bytes wait.
    fn enable_rx_interrupt(&self);

    /// Writes one byte, waiting for room.
    fn put(&self, b: u8) {
        while !self.tx_ready() {
            core::hint::spin_loop();
        }
        self.write_byte(b);
    }

    /// Waits until all output has left the UART.
    fn flush(&self) {
        while !self.tx_idle() {
            core::hint::spin_loop();
        }
    }
}

/// A 32-bit device register at `base + offset`.
///
/// Every driver below holds a `base` its constructor's caller vouched for: the
/// address of that UART's register block, mapped as Device memory (or accessed
/// with the MMU off, where every access is Device-nGnRnE).
fn read32(base: usize, offset: usize) -> u32 {
    // SAFETY: `base` is a mapped register block of this UART (the constructors'
    // contract) and `offset` one of its 32-bit registers.
    unsafe { ((base + offset) as *const u32).read_volatile() }
}

fn write32(base: usize, offset: usize, value: u32) {
    // SAFETY: as in `read32`.
    unsafe { ((base + offset) as *mut u32).write_volatile(value) }
}

fn read8(base: usize, offset: usize) -> u8 {
    // SAFETY: as in `read32`, for a byte-wide register.
    unsafe { ((base + offset) as *const u8).read_volatile() }
}

fn write8(base: usize, offset: usize, value: u8) {
    // SAFETY: as in `read32`, for a byte-wide register.
    unsafe { ((base + offset) as *mut u8).write_volatile(value) }
}

// ---- Arm PL011 (Arm PrimeCell UART (PL011) TRM, DDI 0183) ----------------------

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

/// A PL011 (QEMU virt, the Raspberry Pi 4's UART0).
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
}

impl Uart for Pl011 {
    fn tx_ready(&self) -> bool {
        !self.regs().fr.is_set(FR::TXFF)
    }
    fn write_byte(&self, b: u8) {
        self.regs().dr.set(b as u32);
    }
    fn read_byte(&self) -> Option<u8> {
        (!self.regs().fr.is_set(FR::RXFE)).then(|| self.regs().dr.get() as u8)
    }
    fn tx_idle(&self) -> bool {
        !self.regs().fr.is_set(FR::BUSY)
    }
    /// UARTIMSC.RXIM and RTIM: receive and receive-timeout (TRM 3.3.10).
    fn enable_rx_interrupt(&self) {
        self.regs()
            .imsc
            .set(self.regs().imsc.get() | (1 << 4) | (1 << 6));
    }
}

// ---- 8250/16550 family, and the BCM2835 mini UART -----------------------------

/// 16550 register numbers (before the `reg-shift` stride): receive/transmit
/// holding (RBR/THR), interrupt enable (IER), line status (LSR).
const NS16550_RBR_THR: usize = 0;
const NS16550_IER: usize = 1;
const NS16550_LSR: usize = 5;
/// LSR: data ready (DR), transmit holding register empty (THRE), transmitter empty
/// (TEMT). IER: received data available (ERBFI). The Raspberry Pi's mini UART has
/// the same bits (BCM2835 ARM Peripherals, AUX_MU_LSR_REG, AUX_MU_IER_REG).
const NS16550_LSR_DR: u32 = 1 << 0;
const NS16550_LSR_THRE: u32 = 1 << 5;
const NS16550_LSR_TEMT: u32 = 1 << 6;
const NS16550_IER_ERBFI: u32 = 1 << 0;

/// A 16550-style UART whose registers are `1 << reg_shift` bytes apart and
/// `io_width` (1 or 4) bytes wide.
pub struct Ns16550 {
    base: usize,
    reg_shift: u32,
    io_width: u32,
}

impl Ns16550 {
    /// # Safety
    /// `base` must be the address of such a UART the caller owns, mapped as Device.
    pub const unsafe fn new(base: usize, reg_shift: u32, io_width: u32) -> Self {
        Ns16550 {
            base,
            reg_shift,
            io_width,
        }
    }

    fn read(&self, reg: usize) -> u32 {
        let offset = reg << self.reg_shift;
        if self.io_width == 4 {
            read32(self.base, offset)
        } else {
            read8(self.base, offset) as u32
        }
    }

    fn write(&self, reg: usize, value: u32) {
        let offset = reg << self.reg_shift;
        if self.io_width == 4 {
            write32(self.base, offset, value);
        } else {
            write8(self.base, offset, value as u8);
        }
    }
}

impl Uart for Ns16550 {
    fn tx_ready(&self) -> bool {
        self.read(NS16550_LSR) & NS16550_LSR_THRE != 0
    }
    fn write_byte(&self, b: u8) {
        self.write(NS16550_RBR_THR, b as u32);
    }
    fn read_byte(&self) -> Option<u8> {
        (self.read(NS16550_LSR) & NS16550_LSR_DR != 0).then(|| self.read(NS16550_RBR_THR) as u8)
    }
    fn tx_idle(&self) -> bool {
        self.read(NS16550_LSR) & NS16550_LSR_TEMT != 0
    }
    fn enable_rx_interrupt(&self) {
        self.write(NS16550_IER, self.read(NS16550_IER) | NS16550_IER_ERBFI);
    }
}

// ---- Cadence UART (Zynq UltraScale+ TRM UG1085, "UART Controller") -------------

const CDNS_CR: usize = 0x00;
const CDNS_IER: usize = 0x08;
const CDNS_CISR: usize = 0x14;
const CDNS_RXWM: usize = 0x20;
const CDNS_SR: usize = 0x2c;
const CDNS_FIFO: usize = 0x30;
/// Control: receiver enable/disable, transmitter enable/disable.
const CDNS_CR_RXEN: u32 = 1 << 2;
const CDNS_CR_RXDIS: u32 = 1 << 3;
const CDNS_CR_TXEN: u32 = 1 << 4;
const CDNS_CR_TXDIS: u32 = 1 << 5;
/// Channel status: receive FIFO empty, transmit FIFO empty / full, transmitter active.
const CDNS_SR_RXEMPTY: u32 = 1 << 1;
const CDNS_SR_TXEMPTY: u32 = 1 << 3;
const CDNS_SR_TXFULL: u32 = 1 << 4;
const CDNS_SR_TACTIVE: u32 = 1 << 11;
/// Interrupt bits (IER, CISR): receive FIFO reached RXWM, receive timeout.
const CDNS_INT_RTRIG: u32 = 1 << 0;
const CDNS_INT_TOUT: u32 = 1 << 8;

/// The Cadence UART of ZynqMP (ZCU102's console).
pub struct Cadence {
    base: usize,
}

impl Cadence {
    /// # Safety
    /// `base` must be the address of a Cadence UART the caller owns, mapped as Device.
    pub unsafe fn new(base: usize) -> Self {
        let u = Cadence { base };
        // Transmitter and receiver on (a reset UART has both disabled).
        let cr = read32(base, CDNS_CR);
        write32(
            base,
            CDNS_CR,
            (cr & !(CDNS_CR_TXDIS | CDNS_CR_RXDIS)) | CDNS_CR_TXEN | CDNS_CR_RXEN,
        );
        u
    }
}

impl Uart for Cadence {
    fn tx_ready(&self) -> bool {
        read32(self.base, CDNS_SR) & CDNS_SR_TXFULL == 0
    }
    fn write_byte(&self, b: u8) {
        write32(self.base, CDNS_FIFO, b as u32);
    }
    fn read_byte(&self) -> Option<u8> {
        if read32(self.base, CDNS_SR) & CDNS_SR_RXEMPTY != 0 {
            // Drained: clear the sticky receive interrupt status (write 1 to
            // clear), then look again for a byte that arrived meanwhile.
            write32(self.base, CDNS_CISR, CDNS_INT_RTRIG | CDNS_INT_TOUT);
            if read32(self.base, CDNS_SR) & CDNS_SR_RXEMPTY != 0 {
                return None;
            }
        }
        Some(read32(self.base, CDNS_FIFO) as u8)
    }
    fn tx_idle(&self) -> bool {
        read32(self.base, CDNS_SR) & (CDNS_SR_TXEMPTY | CDNS_SR_TACTIVE) == CDNS_SR_TXEMPTY
    }
    /// An interrupt for every byte: watermark 1, RTRIG enabled.
    fn enable_rx_interrupt(&self) {
        write32(self.base, CDNS_RXWM, 1);
        write32(self.base, CDNS_IER, CDNS_INT_RTRIG);
    }
}

// ---- i.MX UART (i.MX 8M Plus Reference Manual, "UART") ------------------------

const IMX_URXD: usize = 0x00;
const IMX_UTXD: usize = 0x40;
const IMX_UCR1: usize = 0x80;
const IMX_UCR2: usize = 0x84;
const IMX_UCR4: usize = 0x8c;
const IMX_USR2: usize = 0x98;
const IMX_UTS: usize = 0xb4;
/// URXD: the character is valid.
const IMX_URXD_CHARRDY: u32 = 1 << 15;
/// UCR1: UART enable. UCR2: software reset (active low: write 1 to stay out of
/// reset), receiver enable, transmitter enable. UCR4: receive data ready
/// interrupt enable.
const IMX_UCR1_UARTEN: u32 = 1 << 0;
const IMX_UCR2_SRST: u32 = 1 << 0;
const IMX_UCR2_RXEN: u32 = 1 << 1;
const IMX_UCR2_TXEN: u32 = 1 << 2;
const IMX_UCR4_DREN: u32 = 1 << 0;
/// USR2: receive data ready, transmitter complete. UTS: transmit FIFO full.
const IMX_USR2_RDR: u32 = 1 << 0;
const IMX_USR2_TXDC: u32 = 1 << 3;
const IMX_UTS_TXFULL: u32 = 1 << 4;

/// The i.MX UART (i.MX 8M Plus EVK's console).
pub struct Imx {
    base: usize,
}

impl Imx {
    /// # Safety
    /// `base` must be the address of an i.MX UART the caller owns, mapped as Device.
    pub unsafe fn new(base: usize) -> Self {
        let u = Imx { base };
        write32(base, IMX_UCR1, read32(base, IMX_UCR1) | IMX_UCR1_UARTEN);
        write32(
            base,
            IMX_UCR2,
            read32(base, IMX_UCR2) | IMX_UCR2_SRST | IMX_UCR2_RXEN | IMX_UCR2_TXEN,
        );
        u
    }
}

impl Uart for Imx {
    fn tx_ready(&self) -> bool {
        read32(self.base, IMX_UTS) & IMX_UTS_TXFULL == 0
    }
    fn write_byte(&self, b: u8) {
        write32(self.base, IMX_UTXD, b as u32);
    }
    fn read_byte(&self) -> Option<u8> {
        if read32(self.base, IMX_USR2) & IMX_USR2_RDR == 0 {
            return None;
        }
        let v = read32(self.base, IMX_URXD);
        (v & IMX_URXD_CHARRDY != 0).then_some(v as u8)
    }
    fn tx_idle(&self) -> bool {
        read32(self.base, IMX_USR2) & IMX_USR2_TXDC != 0
    }
    fn enable_rx_interrupt(&self) {
        write32(
            self.base,
            IMX_UCR4,
            read32(self.base, IMX_UCR4) | IMX_UCR4_DREN,
        );
    }
}

// ---- The console's UART: whichever of the above the board has -----------------

/// The host's console UART.
pub enum HostUart {
    Pl011(Pl011),
    Ns16550(Ns16550),
    Cadence(Cadence),
    Imx(Imx),
}

impl HostUart {
    /// The driver for a UART of kind `kind` at `base`; `None` for a kind without
    /// one (or a 16550 with a register layout these drivers do not speak).
    ///
    /// # Safety
    /// `base` must be the address of that UART, which the caller owns (the
    /// console), mapped as Device memory.
    pub unsafe fn new(kind: &UartCompatible, base: u64) -> Option<HostUart> {
        if !kind.has_driver() {
            return None;
        }
        let base = base as usize;
        Some(match *kind {
            // SAFETY: the caller's contract, passed on.
            UartCompatible::Pl011 => HostUart::Pl011(unsafe { Pl011::new(base) }),
            UartCompatible::Ns16550 {
                reg_shift,
                io_width,
                // SAFETY: the caller's contract, passed on.
            } => HostUart::Ns16550(unsafe { Ns16550::new(base, reg_shift, io_width) }),
            // SAFETY: the caller's contract, passed on.
            UartCompatible::Cadence => HostUart::Cadence(unsafe { Cadence::new(base) }),
            // SAFETY: the caller's contract, passed on.
            UartCompatible::Imx => HostUart::Imx(unsafe { Imx::new(base) }),
            UartCompatible::Other(_) => return None,
        })
    }

    fn driver(&self) -> &dyn Uart {
        match self {
            HostUart::Pl011(u) => u,
            HostUart::Ns16550(u) => u,
            HostUart::Cadence(u) => u,
            HostUart::Imx(u) => u,
        }
    }
}

impl Uart for HostUart {
    fn tx_ready(&self) -> bool {
        self.driver().tx_ready()
    }
    fn write_byte(&self, b: u8) {
        self.driver().write_byte(b)
    }
    fn read_byte(&self) -> Option<u8> {
        self.driver().read_byte()
    }
    fn tx_idle(&self) -> bool {
        self.driver().tx_idle()
    }
    fn enable_rx_interrupt(&self) {
        self.driver().enable_rx_interrupt()
    }
}
