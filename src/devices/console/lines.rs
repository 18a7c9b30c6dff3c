//! Whole lines from every source onto one terminal.
//!
//! The sources' queues ([`OutBuf`]) hold escaped text; this decides which bytes
//! go to the UART next, and stages them (with each line's tag and the UART's
//! `\r` before every `\n`) for the transmitter:
//!
//! - A line goes out under its source's tag, `(name) ` for a VM (the hypervisor's
//!   own lines carry their `[LEVEL cpuN]` prefix already).
//! - The source whose line is open on the terminal continues it while it has
//!   bytes; a line left unfinished (a prompt waiting for typing, a line printed
//!   byte by byte) keeps the others waiting for at most [`HOLD_MS`] from its
//!   start. Then it is ended with a bare line end and continues later on a new
//!   tagged line, so nothing is lost and no line is interleaved with another.
//! - When a line ends, the next source in turn goes first: every source gets a
//!   line in each round, whatever the others write.
//! - The console's very first output resets the terminal's graphic rendition
//!   (`ESC[0m`), clearing whatever the firmware left. Nothing a VM sends can
//!   change it again (see [`super::escape`]), so every tagged line starts from
//!   that clean state.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use super::buffer::OutBuf;

/// How long (ms) one source's open line may keep others waiting.
pub const HOLD_MS: u64 = 200;
/// The stage is refilled below this many bytes.
const STAGE_LOW: usize = 64;
/// Select Graphic Rendition 0 (ECMA-48): default colours and attributes.
pub const TERMINAL_RESET: &[u8] = b"\x1b[0m";
/// The "source" of the bytes the console adds itself.
const FRAMING: u16 = u16::MAX;

/// Access to the sources' queues: `src(slot, f)` runs `f` on source `slot`'s
/// queue (each under its own lock).
pub type Sources<'a> = dyn FnMut(usize, &mut dyn FnMut(&mut OutBuf)) + 'a;

/// What [`Lines::pump`] stopped on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pumped {
    /// Every source's output is staged.
    Idle,
    /// The rest waits for an open line until this time (ms), unless its
    /// source continues first.
    Hold(u64),
    /// The stage is full or the byte budget is spent; more remains.
    More,
}

/// The line assembler.
pub struct Lines {
    /// Each source's tag; slot 0 is the hypervisor (no tag).
    tags: Vec<Vec<u8>>,
    /// The source whose line is open on the terminal, and since when (ms).
    open: Option<(usize, u64)>,
    /// Where the search for the next line starts.
    next: usize,
    /// Bytes decided and not yet sent, exactly as they go on the wire, each
    /// with the source slot it came from ([`FRAMING`] for tags and line ends).
    stage: VecDeque<(u8, u16)>,
    /// Nothing has been output yet: the terminal reset goes first.
    fresh: bool,
}

impl Default for Lines {
    fn default() -> Self {
        Self::new()
    }
}

impl Lines {
    pub const fn new() -> Self {
        Lines {
            tags: Vec::new(),
            open: None,
            next: 0,
            stage: VecDeque::new(),
            fresh: true,
        }
    }

    /// Adds a source shown under `tag` (empty for the hypervisor); its slot is
    /// the number of sources added before it.
    pub fn add_source(&mut self, tag: &[u8]) {
        self.tags.push(tag.to_vec());
    }

    /// Bytes staged and not yet sent.
    pub fn staged(&self) -> usize {
        self.stage.len()
    }

    /// Stages output from the sources at time `now` (ms): at most `budget` of
    /// their bytes, and only while fewer than [`STAGE_LOW`] bytes are staged.
    pub fn pump(&mut self, now: u64, mut budget: usize, src: &mut Sources<'_>) -> Pumped {
        let n = self.tags.len();
        if self.fresh && n > 0 {
            self.fresh = false;
            self.frame(TERMINAL_RESET);
        }
        loop {
            if self.stage.len() >= STAGE_LOW || budget == 0 {
                return Pumped::More;
            }
            match self.open {
                Some((s, since)) => {
                    let others = (0..n).any(|o| o != s && has_output(src, o));
                    if others && now.saturating_sub(since) >= HOLD_MS {
                        // Held long enough: end it here, the others go first.
                        self.frame(b"\r\n");
                        self.close(s);
                        continue;
                    }
                    let room = budget.min(STAGE_LOW);
                    let stage = &mut self.stage;
                    let mut took = (0, false);
                    src(s, &mut |q| {
                        took = q.take_line(room, &mut |b| {
                            if b == b'\n' {
                                stage.push_back((b'\r', FRAMING));
                            }
                            stage.push_back((b, s as u16));
                        })
                    });
                    budget -= took.0;
                    if took.1 {
                        self.close(s);
                    } else if took.0 == 0 {
                        return if others {
                            Pumped::Hold(since + HOLD_MS)
                        } else {
                            Pumped::Idle
                        };
                    }
                }
                None => {
                    let Some(s) = (0..n)
                        .map(|k| (self.next + k) % n)
                        .find(|&s| has_output(src, s))
                    else {
                        return Pumped::Idle;
                    };
                    let tag = core::mem::take(&mut self.tags[s]);
                    self.frame(&tag);
                    self.tags[s] = tag;
                    self.open = Some((s, now));
                }
            }
        }
    }

    fn frame(&mut self, bytes: &[u8]) {
        self.stage.extend(bytes.iter().map(|&b| (b, FRAMING)));
    }

    fn close(&mut self, s: usize) {
        self.open = None;
        self.next = s + 1;
    }

    /// Hands staged bytes to `put` in order until it refuses one (a full FIFO)
    /// or `max` have gone; `sent(slot)` hears of each byte that came from a
    /// source's queue. Returns how many bytes went.
    pub fn transmit(
        &mut self,
        max: usize,
        put: &mut dyn FnMut(u8) -> bool,
        sent: &mut dyn FnMut(usize),
    ) -> usize {
        let mut n = 0;
        while n < max {
            let Some(&(b, slot)) = self.stage.front() else {
                break;
            };
            if !put(b) {
                break;
            }
            self.stage.pop_front();
            if slot != FRAMING {
                sent(slot.into());
            }
            n += 1;
        }
        n
    }
}

fn has_output(src: &mut Sources<'_>, slot: usize) -> bool {
    let mut any = false;
    src(slot, &mut |q| any = q.has_output());
    any
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec;

    /// Sources and a line assembler, fed and run to the end at given times.
    struct Rig {
        lines: Lines,
        queues: Vec<OutBuf>,
        wire: Vec<u8>,
    }

    impl Rig {
        fn new(names: &[&str]) -> Rig {
            let mut lines = Lines::new();
            let mut queues = vec![OutBuf::new(4096, true)];
            lines.add_source(b"");
            for name in names {
                lines.add_source(alloc::format!("({name}) ").as_bytes());
                queues.push(OutBuf::new(4096, false));
            }
            Rig {
                lines,
                queues,
                wire: Vec::new(),
            }
        }

        fn write(&mut self, slot: usize, text: &str) {
            assert!(self.queues[slot].push(text.as_bytes(), text.len()));
        }

        /// Pumps and sends everything that may go at `now`.
        fn run(&mut self, now: u64) -> Pumped {
            let queues = &mut self.queues;
            loop {
                let p = self.lines.pump(now, 1000, &mut |s, f| f(&mut queues[s]));
                let wire = &mut self.wire;
                self.lines.transmit(
                    usize::MAX,
                    &mut |b| {
                        wire.push(b);
                        true
                    },
                    &mut |_| {},
                );
                if p != Pumped::More {
                    return p;
                }
            }
        }

        fn text(&mut self) -> String {
            let s = String::from_utf8(core::mem::take(&mut self.wire)).unwrap();
            s.strip_prefix("\x1b[0m").map(String::from).unwrap_or(s)
        }
    }

    #[test]
    fn the_first_output_resets_the_terminal_once() {
        let mut r = Rig::new(&["a"]);
        r.write(1, "x\r\n");
        r.run(0);
        r.write(1, "y\r\n");
        r.run(1);
        assert_eq!(
            String::from_utf8(r.wire).unwrap(),
            "\x1b[0m(a) x\r\r\n(a) y\r\r\n"
        );
    }

    #[test]
    fn lines_are_tagged_and_never_interleave() {
        let mut r = Rig::new(&["linux", "test"]);
        r.write(1, "hel");
        r.run(0);
        r.write(2, "x\r\n");
        r.run(1);
        r.write(1, "lo\r\nwor");
        r.run(2);
        r.write(2, "y");
        r.run(3);
        r.write(1, "ld\r\n");
        r.run(4);
        r.write(0, "[INFO cpu0] hi\n");
        r.run(5);
        r.write(2, "\r\n");
        r.run(6);
        assert_eq!(
            r.text(),
            "(linux) hello\r\r\n(test) x\r\r\n(linux) world\r\r\n(test) y\r\r\n[INFO cpu0] hi\r\n"
        );
    }

    #[test]
    fn a_waiting_prompt_is_ended_after_the_hold_time() {
        let mut r = Rig::new(&["linux", "demo"]);
        r.write(1, "~ # ");
        assert_eq!(r.run(0), Pumped::Idle);
        r.write(2, "PASS\r\n");
        assert_eq!(
            r.run(10),
            Pumped::Hold(HOLD_MS),
            "demo waits for the prompt"
        );
        assert_eq!(r.text(), "(linux) ~ # ");
        assert_eq!(r.run(HOLD_MS), Pumped::Idle);
        assert_eq!(
            r.text(),
            "\r\n(demo) PASS\r\r\n",
            "ended by a bare line end"
        );
        // Typing at the prompt continues on a new tagged line.
        r.write(1, "ls");
        r.run(HOLD_MS + 2);
        assert_eq!(r.text(), "(linux) ls");
    }

    #[test]
    fn a_source_that_never_ends_its_line_holds_the_others_only_briefly() {
        let mut r = Rig::new(&["flood", "quiet"]);
        r.write(1, &"z".repeat(100));
        r.run(0);
        r.write(2, "beat\r\n");
        r.write(1, &"z".repeat(100));
        r.run(50);
        assert!(
            !r.text().contains("beat"),
            "within the hold, the flood's line goes on"
        );
        r.write(1, &"z".repeat(100));
        r.run(HOLD_MS);
        let t = r.text();
        assert!(t.starts_with("\r\n(quiet) beat\r\r\n(flood) zzz"), "{t}");
    }

    #[test]
    fn every_source_gets_a_line_per_round() {
        let mut r = Rig::new(&["a", "b"]);
        r.write(1, "a1\r\na2\r\na3\r\n");
        r.write(2, "b1\r\nb2\r\n");
        r.write(0, "h1\n");
        r.run(0);
        assert_eq!(
            r.text(),
            "h1\r\n(a) a1\r\r\n(b) b1\r\r\n(a) a2\r\r\n(b) b2\r\r\n(a) a3\r\r\n"
        );
    }

    #[test]
    fn the_budget_and_a_full_fifo_bound_the_work() {
        let mut r = Rig::new(&["a"]);
        r.write(1, &"x".repeat(1000));
        let queues = &mut r.queues;
        assert_eq!(
            r.lines.pump(0, 5, &mut |s, f| f(&mut queues[s])),
            Pumped::More
        );
        // The reset, the tag, five bytes.
        assert_eq!(r.lines.staged(), 4 + 4 + 5);
        let mut room = 3;
        let mut from_source = 0;
        let sent = r.lines.transmit(
            100,
            &mut |_| {
                room -= 1;
                room >= 0
            },
            &mut |_| from_source += 1,
        );
        assert_eq!(sent, 3, "a full FIFO stops the transmitter");
        assert_eq!(from_source, 0, "the reset is the console's own");
        let sent = r.lines.transmit(7, &mut |_| true, &mut |s| {
            assert_eq!(s, 1);
            from_source += 1
        });
        assert_eq!(
            (sent, from_source),
            (7, 2),
            "the rest of reset and tag, two bytes"
        );
        assert_eq!(r.lines.staged(), 3);
        // The stage is never filled far beyond its low mark.
        let queues = &mut r.queues;
        assert_eq!(
            r.lines.pump(0, usize::MAX, &mut |s, f| f(&mut queues[s])),
            Pumped::More
        );
        assert!(r.lines.staged() <= 2 * STAGE_LOW);
    }
}
