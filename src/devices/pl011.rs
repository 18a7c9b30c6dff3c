//! An emulated PL011 UART (Arm PrimeCell UART (PL011) Technical Reference
//! Manual, DDI 0183G), the console every guest finds at QEMU virt's 0x0900_0000.
//!
//! Transmit goes into this VM's queue on the shared console, which never waits
//! for the physical UART. The queue stands for the transmit FIFO: UARTFR.TXFF is
//! set while it might not take another byte (a guest that honours it loses
//! nothing; one that does not has its excess dropped and counted), otherwise the
//! FIFO reads as empty (TXFE = 1, BUSY = 0, so a driver that waits for the FIFO
//! to empty after each byte, as Linux's earlycon does, is not held up by other
//! VMs' output). The transmit interrupt (UARTRIS.TXRIS) is raised while the queue
//! is at most half full, like a FIFO trigger level. Receive takes bytes from the
//! console's input queue for this VM and never touches the physical UART.

use alloc::boxed::Box;

use super::{MmioAccess, MmioDevice};

/// Where the UART's bytes go and come from.
pub trait ConsolePort: Send {
    fn put(&mut self, byte: u8);
    fn get(&mut self) -> Option<u8>;
    fn has_input(&self) -> bool;
    /// The transmit side might not take another byte.
    fn tx_full(&self) -> bool;
    /// The transmit side is at most half full (the transmit interrupt level).
    fn tx_below_half(&self) -> bool;
    /// All three at once (one look at the console for a status read).
    fn status(&self) -> PortStatus {
        PortStatus {
            input: self.has_input(),
            tx_full: self.tx_full(),
            tx_below_half: self.tx_below_half(),
        }
    }
}

/// What [`ConsolePort::status`] reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PortStatus {
    pub input: bool,
    pub tx_full: bool,
    pub tx_below_half: bool,
}

// Register offsets (TRM 3.2, Summary of registers).
const UARTDR: u64 = 0x000;
const UARTRSR: u64 = 0x004;
const UARTFR: u64 = 0x018;
const UARTILPR: u64 = 0x020;
const UARTIBRD: u64 = 0x024;
const UARTFBRD: u64 = 0x028;
const UARTLCR_H: u64 = 0x02c;
const UARTCR: u64 = 0x030;
const UARTIFLS: u64 = 0x034;
const UARTIMSC: u64 = 0x038;
const UARTRIS: u64 = 0x03c;
const UARTMIS: u64 = 0x040;
const UARTICR: u64 = 0x044;
const UARTDMACR: u64 = 0x048;
const PERIPH_ID_BASE: u64 = 0xfe0;

// UARTFR bits (TRM 3.3.3).
const FR_RXFE: u64 = 1 << 4;
const FR_TXFF: u64 = 1 << 5;
const FR_TXFE: u64 = 1 << 7;
// Interrupt bits, the same in RIS/MIS/IMSC/ICR (TRM 3.3.12-16).
const INT_RX: u32 = 1 << 4;
const INT_TX: u32 = 1 << 5;
const INT_RT: u32 = 1 << 6;

/// PeriphID0-3 then PCellID0-3: a PL011 r1p5 as QEMU models it, so the AMBA bus
/// code in guests recognises the part.
const ID_BYTES: [u8; 8] = [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

/// The register file of one emulated PL011.
pub struct Pl011 {
    port: Box<dyn ConsolePort>,
    /// The interrupt the UART drives (INTID; QEMU virt's is SPI 1 = 33).
    intid: u32,
    ilpr: u32,
    ibrd: u32,
    fbrd: u32,
    lcr_h: u32,
    cr: u32,
    ifls: u32,
    imsc: u32,
    /// Raw interrupt status bits other than TX and RX, which follow the FIFOs.
    ris_sticky: u32,
    dmacr: u32,
}

impl Pl011 {
    pub fn new(port: Box<dyn ConsolePort>, intid: u32) -> Self {
        Pl011 {
            port,
            intid,
            ilpr: 0,
            ibrd: 0,
            fbrd: 0,
            lcr_h: 0,
            // Reset value: TXE and RXE set, UARTEN clear (TRM 3.3.8).
            cr: 0x300,
            ifls: 0x12,
            imsc: 0,
            ris_sticky: 0,
            dmacr: 0,
        }
    }

    fn ris(&self) -> u32 {
        Self::ris_of(self.ris_sticky, self.port.status())
    }

    fn ris_of(sticky: u32, st: PortStatus) -> u32 {
        let mut ris = sticky;
        if st.tx_below_half {
            ris |= INT_TX;
        }
        if st.input {
            ris |= INT_RX | INT_RT;
        }
        ris
    }

    /// The level of the UART's interrupt line (UARTINTR = any masked status).
    pub fn irq_level(&self) -> bool {
        self.imsc != 0 && self.ris() & self.imsc != 0
    }
}

impl MmioDevice for Pl011 {
    fn name(&self) -> &str {
        "pl011"
    }

    fn irq_line(&self) -> Option<(u32, bool)> {
        Some((self.intid, self.irq_level()))
    }

    fn read(&mut self, a: MmioAccess) -> u64 {
        match a.offset {
            UARTDR => self.port.get().map(u64::from).unwrap_or(0),
            UARTRSR => 0,
            UARTFR => {
                let st = self.port.status();
                let mut fr = if st.tx_full { FR_TXFF } else { FR_TXFE };
                if !st.input {
                    fr |= FR_RXFE;
                }
                fr
            }
            UARTILPR => self.ilpr.into(),
            UARTIBRD => self.ibrd.into(),
            UARTFBRD => self.fbrd.into(),
            UARTLCR_H => self.lcr_h.into(),
            UARTCR => self.cr.into(),
            UARTIFLS => self.ifls.into(),
            UARTIMSC => self.imsc.into(),
            UARTRIS => self.ris().into(),
            UARTMIS => (self.ris() & self.imsc).into(),
            UARTDMACR => self.dmacr.into(),
            o if (PERIPH_ID_BASE..PERIPH_ID_BASE + 0x20).contains(&o) && o % 4 == 0 => {
                ID_BYTES[((o - PERIPH_ID_BASE) / 4) as usize].into()
            }
            // Reserved offsets read as zero (TRM: "reserved ... do not modify").
            _ => 0,
        }
    }

    fn write(&mut self, a: MmioAccess, v: u64) {
        let v32 = v as u32;
        match a.offset {
            UARTDR => self.port.put(v as u8),
            UARTRSR => {}
            UARTILPR => self.ilpr = v32 & 0xff,
            UARTIBRD => self.ibrd = v32 & 0xffff,
            UARTFBRD => self.fbrd = v32 & 0x3f,
            UARTLCR_H => self.lcr_h = v32 & 0xff,
            UARTCR => self.cr = v32 & 0xff87,
            UARTIFLS => self.ifls = v32 & 0x3f,
            UARTIMSC => self.imsc = v32 & 0x7ff,
            UARTICR => self.ris_sticky &= !v32,
            UARTDMACR => self.dmacr = v32 & 0x7,
            _ => {}
        }
    }
}

/// A port to the shared console for VM `index`.
pub struct SharedConsolePort {
    pub vm: usize,
}

impl ConsolePort for SharedConsolePort {
    fn put(&mut self, byte: u8) {
        super::console::put(self.vm, byte);
    }
    fn get(&mut self) -> Option<u8> {
        super::console::take_input(self.vm)
    }
    fn has_input(&self) -> bool {
        super::console::has_input(self.vm)
    }
    fn tx_full(&self) -> bool {
        super::console::output_full(self.vm)
    }
    fn tx_below_half(&self) -> bool {
        super::console::output_below_half(self.vm)
    }
    fn status(&self) -> PortStatus {
        let (input, tx_full, tx_below_half) = super::console::status(self.vm);
        PortStatus {
            input,
            tx_full,
            tx_below_half,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::VecDeque;
    use alloc::sync::Arc;
    use alloc::vec::Vec;
    use spin::Mutex;

    #[derive(Default)]
    struct Wire {
        out: Vec<u8>,
        input: VecDeque<u8>,
        full: bool,
    }
    struct TestPort(Arc<Mutex<Wire>>);
    impl ConsolePort for TestPort {
        fn put(&mut self, b: u8) {
            self.0.lock().out.push(b);
        }
        fn get(&mut self) -> Option<u8> {
            self.0.lock().input.pop_front()
        }
        fn has_input(&self) -> bool {
            !self.0.lock().input.is_empty()
        }
        fn tx_full(&self) -> bool {
            self.0.lock().full
        }
        fn tx_below_half(&self) -> bool {
            !self.0.lock().full
        }
    }

    fn uart() -> (Pl011, Arc<Mutex<Wire>>) {
        let w = Arc::new(Mutex::new(Wire::default()));
        (Pl011::new(Box::new(TestPort(w.clone())), 33), w)
    }
    fn acc(offset: u64) -> MmioAccess {
        MmioAccess { offset, size: 4 }
    }

    #[test]
    fn transmit_and_flags() {
        let (mut u, w) = uart();
        assert_eq!(u.read(acc(UARTFR)), FR_TXFE | FR_RXFE);
        for b in b"hi\n" {
            u.write(acc(UARTDR), *b as u64);
        }
        assert_eq!(w.lock().out, b"hi\n");
    }

    #[test]
    fn receive_and_interrupt_level() {
        let (mut u, w) = uart();
        assert!(!u.irq_level(), "all interrupts masked at reset");
        assert_eq!(u.irq_line(), Some((33, false)));
        u.write(acc(UARTIMSC), (INT_RX | INT_RT) as u64);
        assert!(!u.irq_level());
        w.lock().input.push_back(b'k');
        assert!(u.irq_level());
        assert_eq!(u.irq_line(), Some((33, true)));
        assert_eq!(u.read(acc(UARTFR)) & FR_RXFE, 0);
        assert_eq!(u.read(acc(UARTMIS)) as u32 & INT_RX, INT_RX);
        assert_eq!(u.read(acc(UARTDR)), b'k' as u64);
        assert!(!u.irq_level());
        u.write(acc(UARTIMSC), INT_TX as u64);
        assert!(
            u.irq_level(),
            "TX interrupt is raised while the FIFO is empty"
        );
    }

    #[test]
    fn a_full_queue_shows_as_a_full_fifo() {
        let (mut u, w) = uart();
        u.write(acc(UARTIMSC), INT_TX as u64);
        w.lock().full = true;
        let fr = u.read(acc(UARTFR));
        assert_eq!(fr & (FR_TXFF | FR_TXFE), FR_TXFF, "TXFF set, TXFE clear");
        assert!(!u.irq_level(), "no TX interrupt while full");
        assert_eq!(u.read(acc(UARTRIS)) as u32 & INT_TX, 0);
        w.lock().full = false;
        assert_eq!(u.read(acc(UARTFR)) & (FR_TXFF | FR_TXFE), FR_TXFE);
        assert!(
            u.irq_level(),
            "the TX interrupt comes back once there is room"
        );
    }

    #[test]
    fn identifies_as_pl011() {
        let (mut u, _) = uart();
        let id: Vec<u64> = (0..8).map(|i| u.read(acc(0xfe0 + 4 * i))).collect();
        assert_eq!(id, [0x11, 0x10, 0x14, 0x00, 0x0d, 0xf0, 0x05, 0xb1]);
        assert_eq!(u.read(acc(UARTCR)), 0x300);
    }
}
