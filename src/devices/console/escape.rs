//! What a VM's console bytes become on the shared terminal.
//!
//! A terminal acts on some of the bytes it is sent: control characters and escape
//! sequences move the cursor, erase lines, change colours (or hide text), and
//! query the terminal, whose answer the terminal then types as keyboard input —
//! into whichever VM has the keyboard. A VM's bytes therefore reach the terminal
//! only as text that cannot act on it:
//!
//! - printable ASCII, `\t`, and well-formed printable UTF-8 pass unchanged;
//! - a line end — `\n`, `\r\n`, or a `\r` on its own — becomes `\r\n`. A lone `\r`
//!   (a progress bar redrawing its line) ends the line, so what follows starts on
//!   a new line with its own tag and can never overwrite the VM's tag or another
//!   source's line. A `\r` at the start of a line (the second half of `\n\r`, a
//!   `\r\r\n`) is a no-op on a terminal and is left out;
//! - every other C0 control and DEL show in caret notation (`ESC` is `^[`, `BEL`
//!   is `^G`, DEL is `^?`), as `cat -v` shows them;
//! - bytes that are not well-formed UTF-8 show as `\xHH`: among them the C1
//!   controls sent as single bytes (0x9b is CSI, 0x9d is OSC on terminals that
//!   take 8-bit controls), overlong encodings (`0xc0 0x9b` would decode to ESC
//!   on a lenient decoder), surrogates and code points above U+10FFFF;
//! - well-formed characters that act on a terminal or on how a line is laid out
//!   show as `\u{HHHH}`: the C1 controls U+0080..U+009F encoded in UTF-8 (some
//!   terminals honour them), the bidirectional controls (U+061C, U+200E, U+200F,
//!   U+202A..U+202E, U+2066..U+2069: they can reorder the rest of a line) and the
//!   line and paragraph separators U+2028, U+2029.
//!
//! Guests write one byte per UARTDR access, so the escaper is a small state
//! machine over single bytes: it holds an unfinished UTF-8 sequence, and a `\r`
//! until the next byte says whether it is a line end of its own.

/// The most bytes one guest byte can turn into: three held bytes of a broken
/// UTF-8 sequence as `\xHH` and an escaped character (20), with room to spare.
pub const MAX_UNIT: usize = 32;

/// What one guest byte turned into: display bytes (possibly none, while a
/// sequence is held) and how many guest bytes they account for.
#[derive(Clone, Copy)]
pub struct Unit {
    bytes: [u8; MAX_UNIT],
    len: u8,
    /// Guest bytes whose display is now decided by this unit (held bytes are
    /// counted by the unit that releases them).
    pub guest_bytes: u8,
    /// The unit ends a line.
    pub ends_line: bool,
}

impl Unit {
    const fn new() -> Self {
        Unit {
            bytes: [0; MAX_UNIT],
            len: 0,
            guest_bytes: 0,
            ends_line: false,
        }
    }

    /// The display bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    fn push(&mut self, b: u8) {
        self.bytes[self.len as usize] = b;
        self.len += 1;
    }

    fn extend(&mut self, s: &[u8]) {
        for &b in s {
            self.push(b);
        }
    }

    fn line_end(&mut self) {
        self.extend(b"\r\n");
        self.ends_line = true;
    }

    fn hex_byte(&mut self, b: u8) {
        self.extend(b"\\x");
        self.push(HEX[(b >> 4) as usize]);
        self.push(HEX[(b & 0xf) as usize]);
    }

    fn caret(&mut self, b: u8) {
        self.push(b'^');
        self.push(if b == 0x7f { b'?' } else { b ^ 0x40 });
    }

    fn code_point(&mut self, cp: u32) {
        self.extend(b"\\u{");
        for shift in [12, 8, 4, 0] {
            self.push(HEX[((cp >> shift) & 0xf) as usize]);
        }
        self.push(b'}');
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The per-source escaping state.
#[derive(Clone, Copy, Debug)]
pub struct Escaper {
    /// An unfinished UTF-8 sequence: its bytes so far and its full length.
    seq: [u8; 4],
    have: u8,
    need: u8,
    /// A `\r` waiting for the next byte.
    cr: bool,
    /// Nothing has been shown since the last line end.
    at_line_start: bool,
}

impl Default for Escaper {
    fn default() -> Self {
        Self::new()
    }
}

impl Escaper {
    pub const fn new() -> Self {
        Escaper {
            seq: [0; 4],
            have: 0,
            need: 0,
            cr: false,
            at_line_start: true,
        }
    }

    fn held(&self) -> u8 {
        self.have + u8::from(self.cr)
    }

    /// Takes one guest byte; returns what it shows.
    pub fn push(&mut self, b: u8) -> Unit {
        let before = self.held();
        let mut u = Unit::new();
        self.step(b, &mut u);
        u.guest_bytes = before + 1 - self.held();
        if u.len > 0 {
            self.at_line_start = u.ends_line && u.bytes().ends_with(b"\n");
        }
        u
    }

    fn step(&mut self, b: u8, u: &mut Unit) {
        if self.cr {
            if b == b'\r' {
                return; // `\r\r...`: still one line end at most
            }
            self.cr = false;
            u.line_end();
            if b == b'\n' {
                return;
            }
            // A lone `\r` ended the line; `b` starts the next one.
            self.at_line_start = true;
        }
        if self.have > 0 {
            if continues(&self.seq[..self.have as usize], b) {
                self.seq[self.have as usize] = b;
                self.have += 1;
                if self.have == self.need {
                    let seq = self.seq;
                    let n = self.have as usize;
                    self.have = 0;
                    let cp = decode(&seq[..n]);
                    if acts_on_terminal(cp) {
                        u.code_point(cp);
                    } else {
                        u.extend(&seq[..n]);
                    }
                }
                return;
            }
            // Not a continuation: the held bytes were never a character.
            for i in 0..self.have as usize {
                u.hex_byte(self.seq[i]);
            }
            self.have = 0;
        }
        match b {
            b'\n' => u.line_end(),
            b'\r' => {
                // At the start of a line a `\r` moves nothing: leave it out.
                if u.len > 0 || !self.at_line_start {
                    self.cr = true;
                }
            }
            b'\t' | 0x20..=0x7e => u.push(b),
            0x00..=0x1f | 0x7f => u.caret(b),
            _ => match sequence_length(b) {
                Some(need) => {
                    self.seq[0] = b;
                    self.have = 1;
                    self.need = need;
                }
                None => u.hex_byte(b),
            },
        }
    }
}

/// The length of the UTF-8 sequence `lead` starts, if it can start one
/// (RFC 3629: C0, C1 and F5..FF never appear; 80..BF only continue).
fn sequence_length(lead: u8) -> Option<u8> {
    match lead {
        0xc2..=0xdf => Some(2),
        0xe0..=0xef => Some(3),
        0xf0..=0xf4 => Some(4),
        _ => None,
    }
}

/// Whether `b` may follow `seq` (RFC 3629's table of well-formed sequences:
/// the second byte's range excludes overlong forms, surrogates and code points
/// above U+10FFFF).
fn continues(seq: &[u8], b: u8) -> bool {
    let range = match (seq.len(), seq[0]) {
        (1, 0xe0) => 0xa0..=0xbf,
        (1, 0xed) => 0x80..=0x9f,
        (1, 0xf0) => 0x90..=0xbf,
        (1, 0xf4) => 0x80..=0x8f,
        _ => 0x80..=0xbf,
    };
    range.contains(&b)
}

fn decode(seq: &[u8]) -> u32 {
    let lead = match seq.len() {
        2 => u32::from(seq[0] & 0x1f),
        3 => u32::from(seq[0] & 0x0f),
        _ => u32::from(seq[0] & 0x07),
    };
    seq[1..]
        .iter()
        .fold(lead, |cp, &b| (cp << 6) | u32::from(b & 0x3f))
}

/// Well-formed characters a terminal acts on, or that change how the rest of a
/// line is laid out.
fn acts_on_terminal(cp: u32) -> bool {
    matches!(
        cp,
        0x80..=0x9f | 0x061c | 0x200e | 0x200f | 0x2028..=0x202e | 0x2066..=0x2069
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    fn show(input: &[u8]) -> (Vec<u8>, usize) {
        let mut e = Escaper::new();
        let mut out = Vec::new();
        let mut counted = 0;
        for &b in input {
            let u = e.push(b);
            assert!(u.bytes().len() <= 20, "{:?}", u.bytes());
            out.extend_from_slice(u.bytes());
            counted += u.guest_bytes as usize;
        }
        (out, counted + e.held() as usize)
    }

    fn shown(input: &[u8]) -> String {
        let (out, counted) = show(input);
        assert_eq!(counted, input.len(), "every guest byte is accounted for");
        String::from_utf8(out).expect("the console only ever shows UTF-8")
    }

    #[test]
    fn text_tabs_and_line_ends_pass() {
        assert_eq!(shown(b"ls -l\tx\r\n"), "ls -l\tx\r\n");
        assert_eq!(shown(b"a\nb\n"), "a\r\nb\r\n", "a bare \\n is a line end");
        assert_eq!(
            shown(b"a\n\rb\n\r"),
            "a\r\nb\r\n",
            "\\n\\r reads as one line end"
        );
        assert_eq!(shown(b"a\r\r\nb"), "a\r\nb");
        assert_eq!(shown(b"\r\n\r\n"), "\r\n\r\n", "empty lines stay");
    }

    #[test]
    fn a_lone_carriage_return_ends_the_line() {
        // A forged tag after `\r` lands on a line of its own, after a line end.
        assert_eq!(shown(b"x\r(victim) hi\r\n"), "x\r\n(victim) hi\r\n");
        assert_eq!(shown(b"10%\r20%\r"), "10%\r\n20%", "the last \\r is held");
        assert_eq!(
            shown(b"\r(victim)"),
            "(victim)",
            "at a line start it moves nothing"
        );
    }

    #[test]
    fn controls_show_in_caret_notation() {
        assert_eq!(shown(b"\x1b[1A\x1b[2K"), "^[[1A^[[2K");
        assert_eq!(shown(b"\x1b[8mhidden"), "^[[8mhidden");
        assert_eq!(shown(b"\x1b[6n\x1b[c"), "^[[6n^[[c");
        assert_eq!(shown(b"\x1b]0;title\x07"), "^[]0;title^G");
        assert_eq!(shown(b"\x00\x08\x0b\x0c\x0e\x05\x7f"), "^@^H^K^L^N^E^?");
    }

    #[test]
    fn printable_utf8_passes() {
        let text = "Grüße, 日本語, 🦀 ok";
        assert_eq!(shown(text.as_bytes()), text);
    }

    #[test]
    fn c1_controls_as_bytes_and_as_characters_are_escaped() {
        // 8-bit CSI and OSC as single bytes: not UTF-8.
        assert_eq!(shown(b"\x9b6n\x9d0;t\x9c"), "\\x9b6n\\x9d0;t\\x9c");
        // The same controls well-formed in UTF-8 (U+009B, U+009D).
        assert_eq!(shown("\u{9b}6n\u{9d}".as_bytes()), "\\u{009b}6n\\u{009d}");
        // U+0080 and U+009F, the ends of the C1 range; U+00A0 is printable.
        assert_eq!(
            shown("\u{80}\u{9f}\u{a0}".as_bytes()),
            "\\u{0080}\\u{009f}\u{a0}"
        );
    }

    #[test]
    fn bidi_and_separators_are_escaped() {
        assert_eq!(shown("a\u{202e}b".as_bytes()), "a\\u{202e}b");
        assert_eq!(
            shown("\u{2066}\u{2069}\u{200f}\u{61c}\u{2028}".as_bytes()),
            "\\u{2066}\\u{2069}\\u{200f}\\u{061c}\\u{2028}"
        );
    }

    #[test]
    fn malformed_utf8_is_escaped_byte_by_byte() {
        // Overlong ESC, a surrogate, beyond U+10FFFF, a cut sequence, stray
        // continuation bytes, bytes that never start a sequence.
        assert_eq!(shown(b"\xc0\x9b"), "\\xc0\\x9b");
        assert_eq!(shown(b"\xe0\x80\x9b"), "\\xe0\\x80\\x9b");
        assert_eq!(shown(b"\xed\xa0\x80"), "\\xed\\xa0\\x80");
        assert_eq!(shown(b"\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80");
        assert_eq!(shown(b"\xe6\x97x"), "\\xe6\\x97x");
        assert_eq!(shown(b"\xe6\x97\n"), "\\xe6\\x97\r\n");
        assert_eq!(shown(b"\xe6\x97\x1b"), "\\xe6\\x97^[");
        assert_eq!(shown(b"\xbf\xf8\xff"), "\\xbf\\xf8\\xff");
        // A lead byte held, then a new lead: the first is shown, the second held.
        assert_eq!(shown(b"\xc3\xc3\xa9"), "\\xc3\u{e9}");
    }

    #[test]
    fn nothing_shown_can_act_on_a_terminal() {
        // Every byte value after every byte value: the output is UTF-8 with no
        // control but \t, and \r only right before \n.
        let mut input = Vec::new();
        for a in 0..=255u8 {
            for b in 0..=255u8 {
                input.extend_from_slice(&[b'x', a, b]);
            }
        }
        let out = shown(&input);
        let chars: Vec<char> = out.chars().collect();
        for (i, &c) in chars.iter().enumerate() {
            match c {
                '\t' | '\n' => {}
                '\r' => assert_eq!(chars.get(i + 1), Some(&'\n'), "lone \\r at {i}"),
                c => assert!(
                    !c.is_control() && !acts_on_terminal(c as u32),
                    "{:?} at {i}",
                    c
                ),
            }
        }
    }
}
