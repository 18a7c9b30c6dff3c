//! The shared console: one physical UART for the hypervisor's log and every VM.
//!
//! Output: each VM's bytes go out as they come, and each line starts with the
//! VM's name in parentheses. A line one source leaves unfinished is ended before
//! another source writes, so lines never interleave (Xen's console works the same
//! way). The hypervisor's log lines come through here too.
//!
//! Input: keyboard bytes go to the VM that has the focus. Ctrl-a pressed three
//! times in a row moves the focus to the next VM (as on Xen's console); Ctrl-a
//! pressed fewer times and followed by another key is passed on to the VM.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use spin::Mutex;

/// Ctrl-a: the default key that switches the input focus.
pub const SWITCH_KEY: u8 = 0x01;
/// How many presses in a row switch the input focus, by default.
pub const SWITCH_PRESSES: u8 = 3;
/// Keyboard bytes kept per VM before the oldest are dropped.
const INPUT_LIMIT: usize = 4096;

/// Who writes: the hypervisor itself or a VM (by index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Hypervisor,
    Vm(usize),
}

/// The console multiplexer's state. Pure logic; the bytes it emits go to `out`.
pub struct Mux {
    names: Vec<String>,
    inputs: Vec<VecDeque<u8>>,
    focus: usize,
    last: Option<Source>,
    at_line_start: bool,
    /// Presses of the switch key seen in a row.
    switch_presses: u8,
    switch_key: u8,
    switch_needed: u8,
}

impl Default for Mux {
    fn default() -> Self {
        Self::new()
    }
}

impl Mux {
    pub const fn new() -> Self {
        Mux {
            names: Vec::new(),
            inputs: Vec::new(),
            focus: 0,
            last: None,
            at_line_start: true,
            switch_presses: 0,
            switch_key: SWITCH_KEY,
            switch_needed: SWITCH_PRESSES,
        }
    }

    /// Sets the switch key, how many presses switch, and the VM that has the
    /// keyboard first.
    pub fn configure(&mut self, key: u8, presses: u8, focus: usize) {
        self.switch_key = key;
        self.switch_needed = presses.max(1);
        if focus < self.names.len() {
            self.focus = focus;
        }
    }

    /// Registers a VM's console; returns its index.
    pub fn add_vm(&mut self, name: &str) -> usize {
        self.names.push(String::from(name));
        self.inputs.push(VecDeque::new());
        self.names.len() - 1
    }

    /// Removes a VM's queued input (on reset).
    pub fn clear_input(&mut self, vm: usize) {
        if let Some(q) = self.inputs.get_mut(vm) {
            q.clear();
        }
    }

    /// The VM that gets keyboard input.
    pub fn focus(&self) -> usize {
        self.focus
    }

    /// Emits `bytes` from `src`, starting new lines with the source's tag.
    pub fn output(&mut self, src: Source, bytes: &[u8], out: &mut dyn FnMut(&[u8])) {
        if bytes.is_empty() {
            return;
        }
        if self.last != Some(src) && !self.at_line_start {
            out(b"\n");
            self.at_line_start = true;
        }
        self.last = Some(src);
        let mut rest = bytes;
        while !rest.is_empty() {
            if self.at_line_start {
                if let Source::Vm(i) = src {
                    out(b"(");
                    out(self.names.get(i).map(|s| s.as_bytes()).unwrap_or(b"?"));
                    out(b") ");
                }
                self.at_line_start = false;
            }
            match rest.iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    out(&rest[..=nl]);
                    self.at_line_start = true;
                    rest = &rest[nl + 1..];
                }
                None => {
                    out(rest);
                    rest = &[];
                }
            }
        }
    }

    /// Takes one keyboard byte. Returns the index of the newly focused VM when
    /// the byte completed the switch sequence.
    pub fn keyboard(&mut self, byte: u8, out: &mut dyn FnMut(&[u8])) -> Option<usize> {
        if byte == self.switch_key && !self.names.is_empty() {
            self.switch_presses += 1;
            if self.switch_presses >= self.switch_needed {
                self.switch_presses = 0;
                self.focus = (self.focus + 1) % self.names.len();
                let mut msg = String::from("[console] input now goes to VM '");
                msg.push_str(&self.names[self.focus]);
                msg.push_str("'\n");
                self.output(Source::Hypervisor, msg.as_bytes(), out);
                return Some(self.focus);
            }
            return None;
        }
        // An unfinished switch sequence belongs to the VM after all.
        for _ in 0..core::mem::take(&mut self.switch_presses) {
            self.push_input(self.switch_key);
        }
        self.push_input(byte);
        None
    }

    fn push_input(&mut self, byte: u8) {
        if let Some(q) = self.inputs.get_mut(self.focus) {
            if q.len() >= INPUT_LIMIT {
                q.pop_front();
            }
            q.push_back(byte);
        }
    }

    /// The next keyboard byte for `vm`.
    pub fn take_input(&mut self, vm: usize) -> Option<u8> {
        self.inputs.get_mut(vm).and_then(|q| q.pop_front())
    }

    /// Whether keyboard input waits for `vm`.
    pub fn has_input(&self, vm: usize) -> bool {
        self.inputs.get(vm).is_some_and(|q| !q.is_empty())
    }
}

/// The physical side: where bytes go and where keyboard bytes come from.
#[derive(Clone, Copy)]
pub struct Physical {
    pub write: fn(&[u8]),
    pub read: fn() -> Option<u8>,
    /// The logical index of the CPU running the caller (for log lines).
    pub cpu_index: fn() -> usize,
}

static MUX: Mutex<Mux> = Mutex::new(Mux::new());
static PHYSICAL: Mutex<Option<Physical>> = Mutex::new(None);

/// Connects the console to the physical UART.
pub fn init(physical: Physical) {
    *PHYSICAL.lock() = Some(physical);
}

/// Registers a VM's console.
pub fn add_vm(name: &str) -> usize {
    MUX.lock().add_vm(name)
}

/// Applies the config's console settings (after every VM is registered).
pub fn configure(key: u8, presses: u8, focus: usize) {
    MUX.lock().configure(key, presses, focus)
}

/// Emits bytes from `src` on the physical console.
pub fn write(src: Source, bytes: &[u8]) {
    let Some(p) = *PHYSICAL.lock() else { return };
    MUX.lock().output(src, bytes, &mut |b| (p.write)(b));
}

/// Reads whatever the keyboard has and routes it. Returns whether anything came.
pub fn poll_keyboard() -> bool {
    let Some(p) = *PHYSICAL.lock() else {
        return false;
    };
    let mut any = false;
    while let Some(b) = (p.read)() {
        any = true;
        MUX.lock().keyboard(b, &mut |s| (p.write)(s));
    }
    any
}

/// The next keyboard byte for `vm`.
pub fn take_input(vm: usize) -> Option<u8> {
    MUX.lock().take_input(vm)
}

/// Whether keyboard input waits for `vm`.
pub fn has_input(vm: usize) -> bool {
    MUX.lock().has_input(vm)
}

/// The VM that has the keyboard.
pub fn focus() -> usize {
    MUX.lock().focus()
}

/// Drops `vm`'s queued input.
pub fn clear_input(vm: usize) {
    MUX.lock().clear_input(vm)
}

/// The `log` backend: `[LEVEL cpuN] message` lines through the multiplexer.
struct Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let cpu = PHYSICAL.lock().map(|p| (p.cpu_index)()).unwrap_or(0);
        let line = alloc::format!("[{:5} cpu{}] {}\n", record.level(), cpu, record.args());
        write(Source::Hypervisor, line.as_bytes());
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// Installs the logger at `level`.
pub fn init_log(level: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(m: &mut Mux, steps: &[(Source, &str)]) -> String {
        let mut out = Vec::new();
        for (src, s) in steps {
            m.output(*src, s.as_bytes(), &mut |b| out.extend_from_slice(b));
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn lines_are_tagged_and_never_interleave() {
        let mut m = Mux::new();
        let a = m.add_vm("linux");
        let b = m.add_vm("test");
        let s = run(
            &mut m,
            &[
                (Source::Vm(a), "hel"),
                (Source::Vm(a), "lo\nwor"),
                (Source::Vm(b), "x\n"),
                (Source::Vm(a), "ld\n"),
                (Source::Hypervisor, "[INFO cpu0] hi\n"),
            ],
        );
        assert_eq!(
            s,
            "(linux) hello\n(linux) wor\n(test) x\n(linux) ld\n[INFO cpu0] hi\n"
        );
    }

    #[test]
    fn three_ctrl_a_switch_focus_and_fewer_pass_through() {
        let mut m = Mux::new();
        m.add_vm("a");
        m.add_vm("b");
        let mut out = Vec::new();
        let mut sink = |b: &[u8]| out.extend_from_slice(b);
        assert_eq!(m.keyboard(b'x', &mut sink), None);
        assert_eq!(m.keyboard(SWITCH_KEY, &mut sink), None);
        assert_eq!(m.keyboard(SWITCH_KEY, &mut sink), None);
        assert_eq!(m.keyboard(b'y', &mut sink), None);
        assert_eq!(m.take_input(0), Some(b'x'));
        assert_eq!(m.take_input(0), Some(SWITCH_KEY));
        assert_eq!(m.take_input(0), Some(SWITCH_KEY));
        assert_eq!(m.take_input(0), Some(b'y'));
        assert_eq!(m.take_input(0), None);
        for _ in 0..3 {
            m.keyboard(SWITCH_KEY, &mut sink);
        }
        assert_eq!(m.focus(), 1);
        m.keyboard(b'z', &mut sink);
        assert!(!m.has_input(0));
        assert_eq!(m.take_input(1), Some(b'z'));
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("input now goes to VM 'b'"), "{text}");
    }

    #[test]
    fn configured_key_and_first_focus() {
        let mut m = Mux::new();
        m.add_vm("a");
        m.add_vm("b");
        m.configure(0x02, 2, 1);
        let mut sink = |_: &[u8]| {};
        m.keyboard(b'q', &mut sink);
        assert_eq!(
            m.take_input(1),
            Some(b'q'),
            "input starts at the configured VM"
        );
        m.keyboard(SWITCH_KEY, &mut sink);
        assert_eq!(
            m.take_input(1),
            Some(SWITCH_KEY),
            "Ctrl-a is an ordinary key now"
        );
        assert_eq!(m.keyboard(0x02, &mut sink), None);
        assert_eq!(m.keyboard(0x02, &mut sink), Some(0), "two presses switch");
    }

    #[test]
    fn input_queue_is_bounded() {
        let mut m = Mux::new();
        m.add_vm("a");
        let mut sink = |_: &[u8]| {};
        for i in 0..(INPUT_LIMIT + 10) {
            m.keyboard(b'a' + (i % 20) as u8, &mut sink);
        }
        let mut n = 0;
        while m.take_input(0).is_some() {
            n += 1;
        }
        assert_eq!(n, INPUT_LIMIT);
    }
}
