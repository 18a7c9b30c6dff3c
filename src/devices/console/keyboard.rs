//! Where keyboard input goes: the VM that has the focus.
//!
//! The switch key (Ctrl-a by default) pressed [`SWITCH_PRESSES`] times in a row
//! moves the focus to the next running VM (as on Xen's console); pressed fewer
//! times and followed by another key, it is passed on to the VM. When no other
//! VM runs, the switch says so instead of doing nothing.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

/// Ctrl-a: the default key that switches the input focus.
pub const SWITCH_KEY: u8 = 0x01;
/// How many presses in a row switch the input focus, by default.
pub const SWITCH_PRESSES: u8 = 3;
/// Keyboard bytes kept per VM before the oldest are dropped.
pub const INPUT_LIMIT: usize = 4096;

/// What a key did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Key {
    /// A byte for VM `vm`'s input queue (possibly several: an unfinished
    /// switch sequence is handed on first).
    Input { vm: usize, byte: u8, repeat: u8 },
    /// Counted towards the switch sequence.
    Pending,
    /// The focus moved to `vm`.
    Switched { vm: usize },
    /// The sequence was complete, but no other VM runs.
    Stays { vm: usize },
}

/// The keyboard's routing state.
pub struct Keyboard {
    names: Vec<String>,
    /// Whether each VM is running (the switch skips VMs that are off).
    alive: Vec<bool>,
    focus: usize,
    /// Presses of the switch key seen in a row.
    presses: u8,
    key: u8,
    needed: u8,
}

impl Default for Keyboard {
    fn default() -> Self {
        Self::new()
    }
}

impl Keyboard {
    pub const fn new() -> Self {
        Keyboard {
            names: Vec::new(),
            alive: Vec::new(),
            focus: 0,
            presses: 0,
            key: SWITCH_KEY,
            needed: SWITCH_PRESSES,
        }
    }

    /// Registers a VM; returns its index.
    pub fn add_vm(&mut self, name: &str) -> usize {
        self.names.push(String::from(name));
        self.alive.push(true);
        self.names.len() - 1
    }

    /// Sets the switch key, how many presses switch, and the VM that has the
    /// keyboard first.
    pub fn configure(&mut self, key: u8, presses: u8, focus: usize) {
        self.key = key;
        self.needed = presses.max(1);
        if focus < self.names.len() {
            self.focus = focus;
        }
    }

    /// The VM that gets keyboard input.
    pub fn focus(&self) -> usize {
        self.focus
    }

    pub fn name(&self, vm: usize) -> &str {
        self.names.get(vm).map(String::as_str).unwrap_or("?")
    }

    /// Marks a VM running or off. When the VM with the keyboard turns off, the
    /// keyboard moves to the next running VM: `Some(Switched)` says where.
    pub fn set_alive(&mut self, vm: usize, alive: bool) -> Option<Key> {
        if let Some(a) = self.alive.get_mut(vm) {
            *a = alive;
        }
        if vm == self.focus && !alive {
            return match self.move_focus() {
                k @ Key::Switched { .. } => Some(k),
                _ => None,
            };
        }
        None
    }

    /// Moves the focus to the next running VM, if another runs.
    fn move_focus(&mut self) -> Key {
        let n = self.names.len();
        match (1..n)
            .map(|k| (self.focus + k) % n)
            .find(|&i| self.alive[i])
        {
            Some(next) => {
                self.focus = next;
                Key::Switched { vm: next }
            }
            None => Key::Stays { vm: self.focus },
        }
    }

    /// Takes one keyboard byte.
    pub fn key(&mut self, byte: u8) -> Key {
        if byte == self.key && !self.names.is_empty() {
            self.presses += 1;
            if self.presses >= self.needed {
                self.presses = 0;
                return self.move_focus();
            }
            return Key::Pending;
        }
        // An unfinished switch sequence belongs to the VM after all.
        let held = core::mem::take(&mut self.presses);
        Key::Input {
            vm: self.focus,
            byte,
            repeat: held,
        }
    }

    /// The switch key (for handing an unfinished sequence on).
    pub fn switch_key(&self) -> u8 {
        self.key
    }

    /// The console's line about a switch (or a VM turning off), if any.
    pub fn message(&self, k: Key) -> Option<String> {
        let mut msg = String::from("[console] ");
        match k {
            Key::Switched { vm } => {
                msg.push_str("input now goes to VM '");
                msg.push_str(self.name(vm));
                msg.push_str("'\n");
            }
            Key::Stays { vm } if self.alive.get(vm) == Some(&true) => {
                msg.push_str("only VM '");
                msg.push_str(self.name(vm));
                msg.push_str("' is running; input stays with it\n");
            }
            Key::Stays { .. } => msg.push_str("no VM is running\n"),
            Key::Input { .. } | Key::Pending => return None,
        }
        Some(msg)
    }
}

/// One VM's queue of keyboard bytes, bounded: the oldest go first when full.
#[derive(Default)]
pub struct InputQueue(VecDeque<u8>);

impl InputQueue {
    pub fn push(&mut self, byte: u8) {
        if self.0.len() >= INPUT_LIMIT {
            self.0.pop_front();
        }
        self.0.push_back(byte);
    }

    pub fn pop(&mut self) -> Option<u8> {
        self.0.pop_front()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn clear(&mut self) {
        self.0.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> Keyboard {
        let mut k = Keyboard::new();
        k.add_vm("a");
        k.add_vm("b");
        k
    }

    #[test]
    fn three_presses_switch_and_fewer_pass_through() {
        let mut k = two();
        assert_eq!(
            k.key(b'x'),
            Key::Input {
                vm: 0,
                byte: b'x',
                repeat: 0
            }
        );
        assert_eq!(k.key(SWITCH_KEY), Key::Pending);
        assert_eq!(k.key(SWITCH_KEY), Key::Pending);
        assert_eq!(
            k.key(b'y'),
            Key::Input {
                vm: 0,
                byte: b'y',
                repeat: 2
            },
            "the two presses go to the VM before the y"
        );
        for _ in 0..2 {
            assert_eq!(k.key(SWITCH_KEY), Key::Pending);
        }
        let s = k.key(SWITCH_KEY);
        assert_eq!(s, Key::Switched { vm: 1 });
        assert_eq!(k.focus(), 1);
        assert_eq!(
            k.message(s).as_deref(),
            Some("[console] input now goes to VM 'b'\n")
        );
        assert_eq!(
            k.key(b'z'),
            Key::Input {
                vm: 1,
                byte: b'z',
                repeat: 0
            }
        );
    }

    #[test]
    fn configured_key_and_first_focus() {
        let mut k = two();
        k.configure(0x02, 2, 1);
        assert!(matches!(k.key(b'q'), Key::Input { vm: 1, .. }));
        assert!(
            matches!(
                k.key(SWITCH_KEY),
                Key::Input {
                    vm: 1,
                    byte: SWITCH_KEY,
                    ..
                }
            ),
            "Ctrl-a is an ordinary key now"
        );
        assert_eq!(k.key(0x02), Key::Pending);
        assert_eq!(k.key(0x02), Key::Switched { vm: 0 }, "two presses switch");
    }

    #[test]
    fn the_switch_skips_vms_that_are_off() {
        let mut k = Keyboard::new();
        for name in ["a", "b", "c"] {
            k.add_vm(name);
        }
        assert_eq!(k.set_alive(1, false), None, "b had no keyboard");
        for _ in 0..3 {
            k.key(SWITCH_KEY);
        }
        assert_eq!(k.focus(), 2, "b is off: the switch goes to c");
        assert_eq!(
            k.set_alive(2, false),
            Some(Key::Switched { vm: 0 }),
            "c turned off with the keyboard: back to a"
        );
    }

    #[test]
    fn with_one_vm_left_the_switch_says_so() {
        let mut k = two();
        k.set_alive(1, false);
        k.key(SWITCH_KEY);
        k.key(SWITCH_KEY);
        let s = k.key(SWITCH_KEY);
        assert_eq!(s, Key::Stays { vm: 0 });
        assert_eq!(k.focus(), 0);
        assert_eq!(
            k.message(s).as_deref(),
            Some("[console] only VM 'a' is running; input stays with it\n")
        );
        // The same with a single VM configured.
        let mut one = Keyboard::new();
        one.add_vm("solo");
        for _ in 0..2 {
            one.key(SWITCH_KEY);
        }
        let s = one.key(SWITCH_KEY);
        assert_eq!(
            one.message(s).as_deref(),
            Some("[console] only VM 'solo' is running; input stays with it\n")
        );
    }

    #[test]
    fn input_queue_is_bounded() {
        let mut q = InputQueue::default();
        for i in 0..(INPUT_LIMIT + 10) {
            q.push(b'a' + (i % 20) as u8);
        }
        let mut n = 0;
        while q.pop().is_some() {
            n += 1;
        }
        assert_eq!(n, INPUT_LIMIT);
    }
}
