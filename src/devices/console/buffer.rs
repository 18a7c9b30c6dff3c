//! One source's output waiting for the UART: a bounded queue that never waits.
//!
//! A source that writes faster than the line can carry fills its queue; from
//! then on its output is dropped — counted, not stored — until the queue has
//! drained to half, and a `[N bytes dropped]` marker then takes the place of what
//! was lost. Dropping until half rather than until the next free byte keeps what
//! does get through in long runs, with one marker per gap, instead of a marker
//! every few bytes. Room for the marker is always kept, so it is never dropped
//! itself.
//!
//! A guest that honours UARTFR.TXFF never loses anything: the emulated PL011
//! reports the FIFO full while a whole escaped unit might not fit ([`full`]).
//!
//! [`full`]: OutBuf::full

use alloc::collections::VecDeque;
use core::fmt::Write;

use super::escape::MAX_UNIT;

/// Room kept for the marker: `[18446744073709551615 bytes dropped]\n` is 38 bytes.
const MARKER_ROOM: usize = 40;

/// A bounded output queue.
pub struct OutBuf {
    data: VecDeque<u8>,
    cap: usize,
    /// Guest bytes dropped since the last marker.
    dropped: u64,
    /// Dropping until the queue is back at half.
    dropping: bool,
    /// The marker is a line of its own (the hypervisor's source, whose lines
    /// are whole) rather than a note inside the line.
    marker_line: bool,
    /// Bytes ever queued, markers included: a position in the source's stream.
    queued: u64,
}

impl OutBuf {
    /// A queue of `cap` bytes (at least room for one unit and the marker).
    pub fn new(cap: usize, marker_line: bool) -> Self {
        let cap = cap.max(2 * (MAX_UNIT + MARKER_ROOM));
        OutBuf {
            data: VecDeque::with_capacity(cap),
            cap,
            dropped: 0,
            dropping: false,
            marker_line,
            queued: 0,
        }
    }

    /// Queues `bytes`, which stand for `guest_bytes` bytes the source wrote.
    /// Returns whether they were queued (false: dropped and counted).
    pub fn push(&mut self, bytes: &[u8], guest_bytes: usize) -> bool {
        self.settle();
        if self.dropping || self.data.len() + bytes.len() + MARKER_ROOM > self.cap {
            self.dropping = true;
            self.dropped += guest_bytes as u64;
            return false;
        }
        self.data.extend(bytes);
        self.queued += bytes.len() as u64;
        true
    }

    /// Bytes ever queued (markers included): once that many of this source's
    /// bytes have been sent, everything queued so far is out.
    pub fn queued(&self) -> u64 {
        self.queued
    }

    /// Whether a unit might not fit: what UARTFR.TXFF shows the guest.
    pub fn full(&self) -> bool {
        self.dropping || self.data.len() + MAX_UNIT + MARKER_ROOM > self.cap
    }

    /// At most half full (the emulated UART's transmit interrupt level).
    pub fn below_half(&self) -> bool {
        !self.dropping && self.data.len() <= self.cap / 2
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether some bytes are waiting, or a marker is due.
    pub fn has_output(&self) -> bool {
        !self.data.is_empty() || self.dropped > 0
    }

    /// Moves up to `max` bytes into `out`, stopping after a `\n`. Returns how
    /// many moved and whether the last was a `\n`.
    pub fn take_line(&mut self, max: usize, out: &mut dyn FnMut(u8)) -> (usize, bool) {
        self.settle();
        let mut n = 0;
        while n < max {
            let Some(b) = self.data.pop_front() else {
                break;
            };
            n += 1;
            out(b);
            if b == b'\n' {
                self.settle();
                return (n, true);
            }
        }
        self.settle();
        (n, false)
    }

    /// Once the queue is back at half, the marker goes in and queuing resumes.
    fn settle(&mut self) {
        if self.dropping && self.data.len() <= self.cap / 2 {
            let mut marker = Marker::default();
            let _ = write!(marker, "[{} bytes dropped]", self.dropped);
            if self.marker_line {
                let _ = marker.write_str("\n");
            }
            self.data.extend(marker.bytes());
            self.queued += marker.bytes().len() as u64;
            self.dropped = 0;
            self.dropping = false;
        }
    }
}

/// The marker's text, formatted without allocating.
struct Marker {
    buf: [u8; MARKER_ROOM],
    len: usize,
}

impl Default for Marker {
    fn default() -> Self {
        Marker {
            buf: [0; MARKER_ROOM],
            len: 0,
        }
    }
}

impl Marker {
    fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Write for Marker {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(core::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec::Vec;

    fn drain(b: &mut OutBuf, max: usize) -> String {
        let mut out = Vec::new();
        loop {
            let (n, _) = b.take_line(max, &mut |x| out.push(x));
            if n == 0 {
                return String::from_utf8(out).unwrap();
            }
        }
    }

    #[test]
    fn queues_until_full_then_drops_with_one_marker() {
        let cap = 256;
        let mut b = OutBuf::new(cap, false);
        let mut queued = 0;
        let mut lost = 0;
        for _ in 0..1000 {
            if b.push(b"a", 1) {
                queued += 1;
            } else {
                lost += 1;
            }
        }
        assert_eq!(queued, cap - MARKER_ROOM);
        assert_eq!(lost, 1000 - queued);
        assert!(b.full(), "TXFF while dropping");
        assert!(b.len() <= cap);
        // Draining to half puts the marker in; then queuing resumes.
        let first = {
            let mut out = Vec::new();
            b.take_line(cap / 2, &mut |x| out.push(x));
            out
        };
        assert_eq!(first.len(), cap / 2);
        assert!(b.push(b"b", 1), "queuing resumes once the queue is at half");
        let rest = drain(&mut b, 64);
        let expected_marker = alloc::format!("[{lost} bytes dropped]");
        assert!(
            rest.ends_with(&alloc::format!("{expected_marker}b")),
            "{rest}"
        );
        assert_eq!(rest.matches("dropped").count(), 1);
        assert!(!b.has_output());
    }

    #[test]
    fn the_marker_comes_even_if_the_source_falls_silent() {
        let mut b = OutBuf::new(256, true);
        while b.push(b"zz", 2) {}
        b.push(b"zz", 2);
        assert!(b.has_output());
        let all = drain(&mut b, 1000);
        assert!(all.ends_with("zz[4 bytes dropped]\n"), "{all}");
        assert!(!b.has_output());
    }

    #[test]
    fn drops_whole_units_and_counts_guest_bytes() {
        let mut b = OutBuf::new(2 * (MAX_UNIT + MARKER_ROOM), false);
        let unit = [b'x'; 20];
        let mut accepted = 0;
        while b.push(&unit, 3) {
            accepted += 1;
        }
        assert!(b.len() == accepted * 20, "no partial unit");
        b.push(&unit, 3);
        let all = drain(&mut b, 1000);
        assert!(all.ends_with("[6 bytes dropped]"), "{all}");
    }

    #[test]
    fn take_line_stops_after_a_line_end() {
        let mut b = OutBuf::new(1024, false);
        b.push(b"one\r\ntwo", 8);
        let mut out = Vec::new();
        assert_eq!(b.take_line(100, &mut |x| out.push(x)), (5, true));
        assert_eq!(out, b"one\r\n");
        assert_eq!(b.take_line(2, &mut |x| out.push(x)), (2, false));
        assert_eq!(b.take_line(100, &mut |x| out.push(x)), (1, false));
        assert_eq!(out, b"one\r\ntwo");
    }

    #[test]
    fn full_is_what_txff_shows() {
        let mut b = OutBuf::new(1024, false);
        assert!(!b.full());
        assert!(b.below_half());
        while !b.full() {
            assert!(
                b.push(&[b'x'; MAX_UNIT], MAX_UNIT),
                "TXFF clear: a unit fits"
            );
        }
        assert!(!b.below_half());
    }
}
