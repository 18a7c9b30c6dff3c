//! The shared console: one physical UART for the hypervisor's log and every VM.
//!
//! Output: each line starts with the VM's name in parentheses; the hypervisor's
//! log lines come through here too. Lines never interleave: a complete line goes
//! out in one piece, and a source's unfinished line (a shell prompt, a line
//! printed byte by byte) is shown at once only while no other source is in the
//! middle of a line. Otherwise it waits, and the unfinished line of the other
//! source is ended only once it has stood for [`HOLD_MS`] — so a prompt that
//! waits for typing never holds the others back for long, and nothing is lost.
//!
//! Input: keyboard bytes go to the VM that has the focus. Ctrl-a pressed three
//! times in a row moves the focus to the next VM (as on Xen's console); Ctrl-a
//! pressed fewer times and followed by another key is passed on to the VM.

use crate::sync::Mutex;
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, Ordering};

/// Ctrl-a: the default key that switches the input focus.
pub const SWITCH_KEY: u8 = 0x01;
/// How many presses in a row switch the input focus, by default.
pub const SWITCH_PRESSES: u8 = 3;
/// Keyboard bytes kept per VM before the oldest are dropped.
const INPUT_LIMIT: usize = 4096;
/// How long (ms) one source's unfinished line may keep others waiting.
pub const HOLD_MS: u64 = 200;
/// Bytes a source may have waiting before its line is forced out.
const PENDING_LIMIT: usize = 4096;

/// Who writes: the hypervisor itself or a VM (by index).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Hypervisor,
    Vm(usize),
}

/// The console multiplexer's state. Pure logic; the bytes it emits go to `out`.
pub struct Mux {
    names: Vec<String>,
    /// Whether each VM is running (the switch skips VMs that are off).
    alive: Vec<bool>,
    inputs: Vec<VecDeque<u8>>,
    /// Output waiting to be shown, per source (index 0: the hypervisor, then VMs).
    pending: Vec<Vec<u8>>,
    focus: usize,
    /// The source whose unfinished line is on the screen, and since when (ms).
    mid_line: Option<(Source, u64)>,
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
            alive: Vec::new(),
            inputs: Vec::new(),
            pending: Vec::new(),
            focus: 0,
            mid_line: None,
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
        self.alive.push(true);
        self.inputs.push(VecDeque::new());
        self.names.len() - 1
    }

    /// Removes a VM's queued input (on reset).
    pub fn clear_input(&mut self, vm: usize) {
        if let Some(q) = self.inputs.get_mut(vm) {
            q.clear();
        }
    }

    /// Marks a VM as running or off. When the VM with the keyboard turns off,
    /// the keyboard moves to the next running VM.
    pub fn set_alive(&mut self, vm: usize, alive: bool, now: u64, out: &mut dyn FnMut(&[u8])) {
        if let Some(a) = self.alive.get_mut(vm) {
            *a = alive;
        }
        if vm == self.focus && !alive {
            self.move_focus(now, out);
        }
    }

    /// Moves the keyboard to the next running VM (if any other runs) and says so.
    fn move_focus(&mut self, now: u64, out: &mut dyn FnMut(&[u8])) -> Option<usize> {
        let n = self.names.len();
        let next = (1..=n)
            .map(|k| (self.focus + k) % n)
            .find(|&i| self.alive[i])?;
        if next == self.focus {
            return None;
        }
        self.focus = next;
        let mut msg = String::from("[console] input now goes to VM '");
        msg.push_str(&self.names[next]);
        msg.push_str("'\n");
        self.output(Source::Hypervisor, msg.as_bytes(), now, out);
        Some(next)
    }

    /// The VM that gets keyboard input.
    pub fn focus(&self) -> usize {
        self.focus
    }

    fn slot(src: Source) -> usize {
        match src {
            Source::Hypervisor => 0,
            Source::Vm(i) => i + 1,
        }
    }

    fn source_of(slot: usize) -> Source {
        if slot == 0 {
            Source::Hypervisor
        } else {
            Source::Vm(slot - 1)
        }
    }

    /// Takes `bytes` from `src` at time `now` (ms) and shows what may be shown.
    pub fn output(&mut self, src: Source, bytes: &[u8], now: u64, out: &mut dyn FnMut(&[u8])) {
        let slot = Self::slot(src);
        if self.pending.len() <= slot {
            self.pending.resize(slot + 1, Vec::new());
        }
        self.pending[slot].extend_from_slice(bytes);
        self.flush(now, out);
    }

    /// Shows whatever waiting output may be shown at time `now` (ms).
    pub fn flush(&mut self, now: u64, out: &mut dyn FnMut(&[u8])) {
        // The source that is mid-line may finish its line first; then every
        // source in turn, starting after it, so none waits behind another twice.
        let n = self.pending.len();
        let first = match self.mid_line {
            Some((owner, _)) => {
                let slot = Self::slot(owner);
                self.flush_source(slot, now, true, out);
                slot + 1
            }
            None => 0,
        };
        for k in 0..n {
            self.flush_source((first + k) % n, now, false, out);
        }
    }

    /// Shows what source `slot` may show; with `one_line`, stops at its first
    /// line end.
    fn flush_source(&mut self, slot: usize, now: u64, one_line: bool, out: &mut dyn FnMut(&[u8])) {
        let src = Self::source_of(slot);
        while !self.pending[slot].is_empty() {
            match self.mid_line {
                Some((owner, _)) if owner == src => {}
                Some((_, since)) => {
                    // Another source's line is unfinished: wait, unless it has
                    // stood long enough or this source has too much waiting.
                    if now.saturating_sub(since) < HOLD_MS
                        && self.pending[slot].len() < PENDING_LIMIT
                    {
                        return;
                    }
                    out(b"\n");
                    self.mid_line = None;
                }
                None => {}
            }
            if self.mid_line.is_none() {
                self.tag(src, out);
            }
            let data = core::mem::take(&mut self.pending[slot]);
            match data.iter().position(|&b| b == b'\n') {
                Some(nl) => {
                    out(&data[..=nl]);
                    self.mid_line = None;
                    self.pending[slot] = data[nl + 1..].to_vec();
                    if one_line {
                        return;
                    }
                }
                None => {
                    out(&data);
                    if self.mid_line.is_none() {
                        self.mid_line = Some((src, now));
                    }
                }
            }
        }
    }

    /// Whether some output could not be shown yet.
    pub fn has_waiting(&self) -> bool {
        self.pending.iter().any(|p| !p.is_empty())
    }

    fn tag(&self, src: Source, out: &mut dyn FnMut(&[u8])) {
        if let Source::Vm(i) = src {
            out(b"(");
            out(self.names.get(i).map(|s| s.as_bytes()).unwrap_or(b"?"));
            out(b") ");
        }
    }

    /// Takes one keyboard byte. Returns the index of the newly focused VM when
    /// the byte completed the switch sequence.
    pub fn keyboard(&mut self, byte: u8, now: u64, out: &mut dyn FnMut(&[u8])) -> Option<usize> {
        if byte == self.switch_key && !self.names.is_empty() {
            self.switch_presses += 1;
            if self.switch_presses >= self.switch_needed {
                self.switch_presses = 0;
                return self.move_focus(now, out);
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
    /// A monotonic clock in milliseconds.
    pub now_ms: fn() -> u64,
}

static MUX: Mutex<Mux> = Mutex::new(Mux::new());
/// Some output waits for another source's line to end (checked without a lock
/// on every guest exit).
static WAITING: AtomicBool = AtomicBool::new(false);
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
    let mut m = MUX.lock();
    m.output(src, bytes, (p.now_ms)(), &mut |b| (p.write)(b));
    WAITING.store(m.has_waiting(), Ordering::Release);
}

/// Whether output waits for another source's line to end.
pub fn output_waiting() -> bool {
    WAITING.load(Ordering::Acquire)
}

/// Shows output that was waiting for another source's line to end, if its
/// time has come.
pub fn flush_waiting() {
    if !output_waiting() {
        return;
    }
    let Some(p) = *PHYSICAL.lock() else { return };
    let mut m = MUX.lock();
    m.flush((p.now_ms)(), &mut |b| (p.write)(b));
    WAITING.store(m.has_waiting(), Ordering::Release);
}

/// Reads whatever the keyboard has and routes it. Returns whether anything came.
pub fn poll_keyboard() -> bool {
    let Some(p) = *PHYSICAL.lock() else {
        return false;
    };
    let mut any = false;
    while let Some(b) = (p.read)() {
        any = true;
        MUX.lock().keyboard(b, (p.now_ms)(), &mut |s| (p.write)(s));
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

/// Marks a VM as running or off (the keyboard skips VMs that are off).
pub fn set_alive(vm: usize, alive: bool) {
    let Some(p) = *PHYSICAL.lock() else { return };
    MUX.lock()
        .set_alive(vm, alive, (p.now_ms)(), &mut |b| (p.write)(b));
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

    fn feed(m: &mut Mux, steps: &[(Source, &str, u64)]) -> String {
        let mut out = Vec::new();
        for (src, s, now) in steps {
            m.output(*src, s.as_bytes(), *now, &mut |b| out.extend_from_slice(b));
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn lines_are_tagged_and_never_interleave() {
        let mut m = Mux::new();
        let a = m.add_vm("linux");
        let b = m.add_vm("test");
        let s = feed(
            &mut m,
            &[
                (Source::Vm(a), "hel", 0),
                (Source::Vm(b), "x\n", 1),
                (Source::Vm(a), "lo\nwor", 2),
                (Source::Vm(b), "y", 3),
                (Source::Vm(a), "ld\n", 4),
                (Source::Hypervisor, "[INFO cpu0] hi\n", 5),
                (Source::Vm(b), "\n", 6),
            ],
        );
        assert_eq!(
            s,
            "(linux) hello\n(test) x\n(linux) world\n(test) y\n[INFO cpu0] hi\n"
        );
    }

    #[test]
    fn a_waiting_prompt_is_ended_after_the_hold_time() {
        let mut m = Mux::new();
        let a = m.add_vm("linux");
        let b = m.add_vm("demo");
        let mut s = feed(
            &mut m,
            &[(Source::Vm(a), "~ # ", 0), (Source::Vm(b), "PASS\n", 10)],
        );
        assert_eq!(s, "(linux) ~ # ", "the prompt shows at once, demo waits");
        assert!(m.has_waiting());
        let mut out = Vec::new();
        m.flush(HOLD_MS + 1, &mut |b| out.extend_from_slice(b));
        s.push_str(core::str::from_utf8(&out).unwrap());
        assert_eq!(s, "(linux) ~ # \n(demo) PASS\n");
        assert!(!m.has_waiting());
        // Typing at the prompt continues on a new tagged line.
        let t = feed(&mut m, &[(Source::Vm(a), "ls", HOLD_MS + 2)]);
        assert_eq!(t, "(linux) ls");
    }

    #[test]
    fn too_much_waiting_output_forces_the_line_out() {
        let mut m = Mux::new();
        let a = m.add_vm("a");
        let b = m.add_vm("b");
        let big = "z".repeat(PENDING_LIMIT);
        let s = feed(&mut m, &[(Source::Vm(a), "p", 0), (Source::Vm(b), &big, 1)]);
        assert!(s.starts_with("(a) p\n(b) zzz"), "{}", &s[..20]);
        assert_eq!(s.len(), "(a) p\n(b) ".len() + PENDING_LIMIT);
    }

    #[test]
    fn three_ctrl_a_switch_focus_and_fewer_pass_through() {
        let mut m = Mux::new();
        m.add_vm("a");
        m.add_vm("b");
        let mut out = Vec::new();
        let mut sink = |b: &[u8]| out.extend_from_slice(b);
        assert_eq!(m.keyboard(b'x', 0, &mut sink), None);
        assert_eq!(m.keyboard(SWITCH_KEY, 0, &mut sink), None);
        assert_eq!(m.keyboard(SWITCH_KEY, 0, &mut sink), None);
        assert_eq!(m.keyboard(b'y', 0, &mut sink), None);
        assert_eq!(m.take_input(0), Some(b'x'));
        assert_eq!(m.take_input(0), Some(SWITCH_KEY));
        assert_eq!(m.take_input(0), Some(SWITCH_KEY));
        assert_eq!(m.take_input(0), Some(b'y'));
        assert_eq!(m.take_input(0), None);
        for _ in 0..3 {
            m.keyboard(SWITCH_KEY, 0, &mut sink);
        }
        assert_eq!(m.focus(), 1);
        m.keyboard(b'z', 0, &mut sink);
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
        m.keyboard(b'q', 0, &mut sink);
        assert_eq!(
            m.take_input(1),
            Some(b'q'),
            "input starts at the configured VM"
        );
        m.keyboard(SWITCH_KEY, 0, &mut sink);
        assert_eq!(
            m.take_input(1),
            Some(SWITCH_KEY),
            "Ctrl-a is an ordinary key now"
        );
        assert_eq!(m.keyboard(0x02, 0, &mut sink), None);
        assert_eq!(
            m.keyboard(0x02, 0, &mut sink),
            Some(0),
            "two presses switch"
        );
    }

    #[test]
    fn the_keyboard_skips_vms_that_are_off() {
        let mut m = Mux::new();
        for name in ["a", "b", "c"] {
            m.add_vm(name);
        }
        let mut out = Vec::new();
        let mut sink = |b: &[u8]| out.extend_from_slice(b);
        m.set_alive(1, false, 0, &mut sink);
        for _ in 0..3 {
            m.keyboard(SWITCH_KEY, 0, &mut sink);
        }
        assert_eq!(m.focus(), 2, "b is off: the switch goes to c");
        m.set_alive(2, false, 0, &mut sink);
        assert_eq!(m.focus(), 0, "c turned off with the keyboard: back to a");
        for _ in 0..3 {
            m.keyboard(SWITCH_KEY, 0, &mut sink);
        }
        assert_eq!(m.focus(), 0, "only a runs: nowhere to switch to");
    }

    #[test]
    fn input_queue_is_bounded() {
        let mut m = Mux::new();
        m.add_vm("a");
        let mut sink = |_: &[u8]| {};
        for i in 0..(INPUT_LIMIT + 10) {
            m.keyboard(b'a' + (i % 20) as u8, 0, &mut sink);
        }
        let mut n = 0;
        while m.take_input(0).is_some() {
            n += 1;
        }
        assert_eq!(n, INPUT_LIMIT);
    }
}
