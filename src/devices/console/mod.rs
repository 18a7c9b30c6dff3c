//! The shared console: one physical UART for the hypervisor's log and every VM.
//!
//! # Output
//! Every source — each VM's emulated PL011, and the hypervisor's log — has its
//! own bounded queue ([`buffer`]). A VM's byte is escaped ([`escape`]: nothing it
//! sends can act on the terminal) and queued under that VM's own lock; the
//! guest's UARTDR write never waits for the UART or for another VM. A full queue
//! drops with a `[N bytes dropped]` marker; the emulated PL011 shows UARTFR.TXFF
//! meanwhile, so a guest that honours it loses nothing.
//!
//! The queues are drained by [`service`], which the run loop calls after every
//! exit and at every wake-up, and which never waits. The CPU that sends
//! (holding the drain lock, which is only ever tried) assembles whole tagged
//! lines ([`lines`]) and puts bytes into the UART's transmit FIFO only while it
//! has room: about as many as its own CPU queued since its last call, at most
//! [`SERVICE_MAX`] — or [`HELP_BYTES`] when it sends others' output only.
//!
//! Who sends: once a CPU is sending output of its own, it goes on — asking the
//! run loop to call again until everything is out — and the other CPUs leave
//! it to it: their lines go out in their turn, and their calls cost no more
//! than a few loads while bytes keep going out. A CPU takes over when the
//! sender is only helping and it has output of its own, or when nothing has
//! gone out for [`STALE_MS`] (a sender that stopped running leaves nothing
//! stranded). Under a flood, the flooding VM's CPU does the sending and a quiet
//! VM's CPU does none; that matters where writing to the UART blocks the writer
//! (QEMU's PL011 writes each byte synchronously, under a lock every CPU needs).
//!
//! Until the run loop first calls [`service`], log lines are written out where
//! they are logged (boot is single-threaded, and a fatal boot error must be seen
//! before the CPU stops); [`drain_all`] writes everything out before the machine
//! powers off.
//!
//! # Input
//! The physical UART's receive side is read only by [`poll_keyboard`] (on the
//! UART's interrupt) and never waits for transmission; each byte goes to the
//! queue of the VM that has the focus ([`keyboard`]). A VM's UARTFR and UARTDR
//! reads look only at its own queue.
//!
//! # Locks
//! Where CPUs contend — a source's queue (its producer and the drainer), the
//! keyboard state, an input queue — the locks are ticket locks, taken in turn.
//! The drain lock is only ever tried, except by [`drain_all`].

mod buffer;
mod escape;
mod keyboard;
mod lines;

use crate::sync::TicketMutex;
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use spin::Once;
use spin::RwLock;

use buffer::OutBuf;
use escape::Escaper;
use keyboard::{InputQueue, Key, Keyboard};
use lines::{Lines, Pumped};

pub use keyboard::{SWITCH_KEY, SWITCH_PRESSES};
pub use lines::{HOLD_MS, TERMINAL_RESET};

/// Bytes a VM's output queue holds (escaped text).
const VM_QUEUE: usize = 8192;
/// Bytes the hypervisor's queue holds (its boot log fits several times).
const HYP_QUEUE: usize = 16384;
/// The most bytes one [`service`] call sends.
pub const SERVICE_MAX: usize = 64;
/// After this long (ms) without a byte sent, any CPU sends.
pub const STALE_MS: u64 = 50;
/// What a CPU with no output of its own waiting sends in one call.
pub const HELP_BYTES: usize = 16;
/// Per-CPU records, by CPU index modulo this.
const CREDIT_SLOTS: usize = 64;
/// The most keyboard bytes one [`poll_keyboard`] call takes.
const KEYS_PER_POLL: usize = 64;

/// The physical side: where bytes go and where keyboard bytes come from.
#[derive(Clone, Copy)]
pub struct Physical {
    /// Puts one byte into the UART's transmit FIFO if it has room; never waits.
    pub put: fn(u8) -> bool,
    /// Takes one received byte, if any; never waits.
    pub read: fn() -> Option<u8>,
    /// Waits until every byte put has left the UART.
    pub flush: fn(),
    /// The logical index of the CPU running the caller.
    pub cpu_index: fn() -> usize,
    /// A monotonic clock in milliseconds.
    pub now_ms: fn() -> u64,
}

/// One source's queues.
struct Channel {
    out: TicketMutex<Output>,
    input: TicketMutex<InputQueue>,
    /// Bytes of the queue sent so far (compared with [`OutBuf::queued`]).
    sent: AtomicU64,
    /// What a guest's UARTFR and interrupt lines show, kept up to date under
    /// the queues' locks so that reading them takes none: `out`'s queue full
    /// ([`OUT_FULL`]) or over half full ([`OUT_OVER_HALF`]); input waiting.
    out_state: AtomicU8,
    in_waiting: AtomicBool,
}

const OUT_FULL: u8 = 1;
const OUT_OVER_HALF: u8 = 2;

impl Channel {
    /// After a change to the output queue, under its lock.
    fn note_out(&self, q: &OutBuf) {
        let mut state = 0;
        if q.full() {
            state |= OUT_FULL;
        }
        if !q.below_half() {
            state |= OUT_OVER_HALF;
        }
        self.out_state.store(state, Ordering::Relaxed);
    }

    /// After a change to the input queue, under its lock.
    fn note_in(&self, q: &InputQueue) {
        self.in_waiting.store(!q.is_empty(), Ordering::Relaxed);
    }
}

struct Output {
    esc: Escaper,
    queue: OutBuf,
}

static PHYSICAL: Once<Physical> = Once::new();
/// Slot 0: the hypervisor; slot `i + 1`: VM `i`. Written only while VMs are
/// registered at boot.
static CHANNELS: RwLock<Vec<&'static Channel>> = RwLock::new(Vec::new());
/// The first slots of `CHANNELS` again, each set once when its channel is
/// added, for lookups that take no lock.
static FAST_CHANNELS: [Once<&'static Channel>; 16] = [const { Once::new() }; 16];
/// The line assembler and its staged bytes: whoever holds it sends.
static DRAIN: TicketMutex<Lines> = TicketMutex::new(Lines::new());
static KEYBOARD: TicketMutex<Keyboard> = TicketMutex::new(Keyboard::new());
/// Where each CPU's last output went: the VM's slot (0: none) and the queue
/// position after it, and the position after its last log line. The CPU's own
/// output is out once both sources have sent that far.
static MARK_SLOT: [AtomicUsize; CREDIT_SLOTS] = [const { AtomicUsize::new(0) }; CREDIT_SLOTS];
static MARK_VM: [AtomicU64; CREDIT_SLOTS] = [const { AtomicU64::new(0) }; CREDIT_SLOTS];
static MARK_HYP: [AtomicU64; CREDIT_SLOTS] = [const { AtomicU64::new(0) }; CREDIT_SLOTS];
/// Bytes each CPU wrote (queued or dropped) since its output was last all
/// out, less what it has sent since: how much one call on that CPU may send.
static QUEUED_BY: [AtomicUsize; CREDIT_SLOTS] = [const { AtomicUsize::new(0) }; CREDIT_SLOTS];
/// Pushes so far, and how many of them a drainer had seen when it last found
/// nothing left to send: output may be waiting while the two differ.
static PUSHED: AtomicU64 = AtomicU64::new(0);
static IDLE_AT: AtomicU64 = AtomicU64::new(0);
/// When a byte last went out (ms); bytes sent so far; the CPU that sent last
/// (shifted left by one) and whether it was sending output of its own (bit 0).
static LAST_SENT_MS: AtomicU64 = AtomicU64::new(0);
static SENT_TOTAL: AtomicU64 = AtomicU64::new(0);
static SENDER: AtomicUsize = AtomicUsize::new(0);
/// The bytes-sent count each CPU saw at its last [`service`] call.
static SEEN_TOTAL: [AtomicU64; CREDIT_SLOTS] = [const { AtomicU64::new(0) }; CREDIT_SLOTS];
/// The run loop services the console; log lines no longer go out where logged.
static STARTED: AtomicBool = AtomicBool::new(false);

/// Connects the console to the physical UART.
pub fn init(physical: Physical) {
    PHYSICAL.call_once(|| physical);
    channels_with_hypervisor();
}

/// The channel table, with the hypervisor's slot created on first use.
fn channels_with_hypervisor() -> spin::RwLockReadGuard<'static, Vec<&'static Channel>> {
    if CHANNELS.read().is_empty() {
        let mut lines = DRAIN.lock();
        let mut ch = CHANNELS.write();
        if ch.is_empty() {
            lines.add_source(b"");
            ch.push(new_channel(HYP_QUEUE, true));
        }
    }
    CHANNELS.read()
}

fn new_channel(queue: usize, marker_line: bool) -> &'static Channel {
    Box::leak(Box::new(Channel {
        out: TicketMutex::new(Output {
            esc: Escaper::new(),
            queue: OutBuf::new(queue, marker_line),
        }),
        input: TicketMutex::new(InputQueue::default()),
        sent: AtomicU64::new(0),
        out_state: AtomicU8::new(0),
        in_waiting: AtomicBool::new(false),
    }))
}

/// Registers a VM's console; returns its index.
pub fn add_vm(name: &str) -> usize {
    drop(channels_with_hypervisor());
    let tag = alloc::format!("({name}) ");
    let mut lines = DRAIN.lock();
    let mut ch = CHANNELS.write();
    lines.add_source(tag.as_bytes());
    let channel = new_channel(VM_QUEUE, false);
    if let Some(fast) = FAST_CHANNELS.get(ch.len()) {
        fast.call_once(|| channel);
    }
    ch.push(channel);
    KEYBOARD.lock().add_vm(name)
}

/// Applies the config's console settings (after every VM is registered).
pub fn configure(key: u8, presses: u8, focus: usize) {
    KEYBOARD.lock().configure(key, presses, focus)
}

fn vm_channel(vm: usize) -> Option<&'static Channel> {
    // The exit path's lookup (a guest polling its UARTFR): no lock.
    if let Some(ch) = FAST_CHANNELS.get(vm + 1).and_then(|c| c.get()) {
        return Some(ch);
    }
    CHANNELS.read().get(vm + 1).copied()
}

/// The caller's slot in the per-CPU tables.
fn this_cpu() -> usize {
    PHYSICAL.get().map_or(0, |p| (p.cpu_index)()) % CREDIT_SLOTS
}

/// Counts a push of `bytes` by CPU `cpu` (after the bytes are queued, so a
/// drainer that has not seen the count has not finished).
fn pushed(cpu: usize, bytes: usize) {
    QUEUED_BY[cpu].fetch_add(bytes, Ordering::Relaxed);
    PUSHED.fetch_add(1, Ordering::SeqCst);
}

/// Whether output this CPU queued is still waiting to be sent.
fn mine_waiting(channels: &[&'static Channel], cpu: usize) -> bool {
    let behind = |slot: usize, mark: u64| {
        channels
            .get(slot)
            .is_some_and(|ch| ch.sent.load(Ordering::Acquire) < mark)
    };
    let vm = MARK_SLOT[cpu].load(Ordering::Relaxed);
    (vm != 0 && behind(vm, MARK_VM[cpu].load(Ordering::Relaxed)))
        || behind(0, MARK_HYP[cpu].load(Ordering::Relaxed))
}

/// Whether output may be waiting.
#[inline]
fn pending() -> bool {
    PUSHED.load(Ordering::SeqCst) != IDLE_AT.load(Ordering::SeqCst)
}

/// One byte VM `vm` wrote to its UART: escaped and queued, never waiting for
/// the UART.
pub fn put(vm: usize, byte: u8) {
    let Some(ch) = vm_channel(vm) else { return };
    let cpu = this_cpu();
    let bytes = {
        let mut out = ch.out.lock();
        let unit = out.esc.push(byte);
        if unit.guest_bytes == 0 {
            return; // held for the next byte
        }
        // A dropped unit is counted for the marker, which comes with the
        // bytes that wait.
        if out.queue.push(unit.bytes(), unit.guest_bytes.into()) {
            MARK_SLOT[cpu].store(vm + 1, Ordering::Relaxed);
            MARK_VM[cpu].store(out.queue.queued(), Ordering::Relaxed);
        }
        ch.note_out(&out.queue);
        unit.bytes().len()
    };
    pushed(cpu, bytes);
}

/// Whether VM `vm`'s output queue might not take another byte whole (what
/// its UARTFR.TXFF shows).
pub fn output_full(vm: usize) -> bool {
    vm_channel(vm).is_some_and(|ch| ch.out_state.load(Ordering::Relaxed) & OUT_FULL != 0)
}

/// For VM `vm`'s UART in one lookup: (input waits, output full, output at
/// most half full).
pub fn status(vm: usize) -> (bool, bool, bool) {
    match vm_channel(vm) {
        Some(ch) => {
            let out = ch.out_state.load(Ordering::Relaxed);
            (
                ch.in_waiting.load(Ordering::Relaxed),
                out & OUT_FULL != 0,
                out & OUT_OVER_HALF == 0,
            )
        }
        None => (false, false, true),
    }
}

/// Whether VM `vm`'s output queue is at most half full (its transmit
/// interrupt's level).
pub fn output_below_half(vm: usize) -> bool {
    vm_channel(vm).is_none_or(|ch| ch.out_state.load(Ordering::Relaxed) & OUT_OVER_HALF == 0)
}

/// Queues one of the hypervisor's own lines (whole, ending in `\n`).
fn hypervisor_line(line: &[u8]) {
    let cpu = this_cpu();
    {
        let channels = channels_with_hypervisor();
        let mut out = channels[0].out.lock();
        out.queue.push(line, line.len());
        MARK_HYP[cpu].store(out.queue.queued(), Ordering::Relaxed);
    }
    pushed(cpu, line.len());
    if !STARTED.load(Ordering::Acquire) {
        drain_all();
    }
}

/// Nothing waits to go out and the run loop already drives the console: an
/// exit may skip [`service`] (which would find nothing to do).
#[inline]
pub fn quiet() -> bool {
    STARTED.load(Ordering::Relaxed) && !pending()
}

/// Sends some waiting output, without ever waiting: the run loop calls it after
/// every exit, at every idle wake-up and in every wait for a vCPU to start.
///
/// Returns `Some(ms)` while output this CPU queued is still waiting: the caller
/// arms its timer to call again within `ms` (before entering the guest or
/// waiting), so the output goes out even if nothing else happens on this CPU.
pub fn service() -> Option<u64> {
    let p = PHYSICAL.get()?;
    STARTED.store(true, Ordering::Release);
    let cpu = this_cpu();
    let queued_by = &QUEUED_BY[cpu];
    if !pending() {
        queued_by.store(0, Ordering::Relaxed);
        return None;
    }
    let channels = CHANNELS.read();
    let mine = mine_waiting(&channels, cpu);
    if !mine {
        queued_by.store(0, Ordering::Relaxed);
    }
    let total = SENT_TOTAL.load(Ordering::Relaxed);
    let progressed = SEEN_TOTAL[cpu].swap(total, Ordering::Relaxed) != total;
    let sender = SENDER.load(Ordering::Relaxed);
    let (sender_cpu, sender_owns) = (sender >> 1, sender & 1 != 0);
    // Another CPU is sending its own output: it goes on until everything is
    // out, this CPU's lines in their turn. Checked without the clock or the
    // timer, which make an exit slow where they are slow to reach (QEMU).
    let leave_it = sender_cpu != cpu && (sender_owns || !mine);
    if leave_it && progressed {
        return None;
    }
    let now = (p.now_ms)();
    if leave_it && now.saturating_sub(LAST_SENT_MS.load(Ordering::Relaxed)) < STALE_MS {
        return None;
    }
    // This CPU sends: about as much as it wrote since its last call (a CPU that
    // writes a byte per exit sends a byte or so per exit, in short bursts:
    // QEMU holds its global lock through each byte, and a long burst would
    // shut the other CPUs out), or a little when it has written nothing since.
    let budget = match queued_by.load(Ordering::Relaxed) {
        q if mine && q > 0 => q.min(SERVICE_MAX),
        _ => HELP_BYTES,
    };
    let Some(mut lines) = DRAIN.try_lock() else {
        return mine.then_some(STALE_MS);
    };
    let (sent, pumped) = drain(&mut lines, &channels, p, now, budget);
    let staged = lines.staged();
    drop(lines);
    if sent > 0 {
        LAST_SENT_MS.store(now, Ordering::Relaxed);
        SENDER.store(cpu << 1 | usize::from(mine), Ordering::Relaxed);
        let left = queued_by.load(Ordering::Relaxed).saturating_sub(sent);
        queued_by.store(left, Ordering::Relaxed);
    }
    if !pending() {
        return None;
    }
    // The sender comes back until everything is out.
    Some(match (pumped, staged) {
        (Pumped::Hold(until), 0) => until.saturating_sub(now).max(1),
        _ if sent > 0 => 1,
        _ => STALE_MS,
    })
}

/// Stages and sends up to `budget` bytes; returns how many went and where the
/// line assembler stopped.
fn drain(
    lines: &mut Lines,
    channels: &[&'static Channel],
    p: &Physical,
    now: u64,
    budget: usize,
) -> (usize, Pumped) {
    // Read before looking: a push counted after this keeps output pending.
    let seen = PUSHED.load(Ordering::SeqCst);
    let mut sent = 0;
    let pumped = loop {
        let pumped = lines.pump(now, budget - sent, &mut |slot, f| {
            let ch = channels[slot];
            let mut out = ch.out.lock();
            f(&mut out.queue);
            ch.note_out(&out.queue);
        });
        sent += lines.transmit(budget - sent, &mut |b| (p.put)(b), &mut |slot| {
            channels[slot].sent.fetch_add(1, Ordering::Release);
        });
        if lines.staged() > 0 || pumped != Pumped::More || sent >= budget {
            break pumped;
        }
    };
    SENT_TOTAL.fetch_add(sent as u64, Ordering::Relaxed);
    if pumped == Pumped::Idle && lines.staged() == 0 {
        IDLE_AT.store(seen, Ordering::SeqCst);
    }
    (sent, pumped)
}

/// Writes out everything waiting, waiting for the UART as long as it takes:
/// before the machine powers off, and for log lines before [`service`] runs.
pub fn drain_all() {
    let Some(p) = PHYSICAL.get() else { return };
    // The drain lock first, then the table (the order `add_vm` takes them in).
    let mut lines = DRAIN.lock();
    let channels = CHANNELS.read();
    let mut now = (p.now_ms)();
    // Bounded even if a VM keeps writing meanwhile: every queue once over.
    let mut left = HYP_QUEUE + channels.len() * VM_QUEUE + 1024;
    loop {
        let (_, pumped) = drain(&mut lines, &channels, p, now, SERVICE_MAX);
        while lines.staged() > 0 {
            lines.transmit(usize::MAX, &mut |b| (p.put)(b), &mut |slot| {
                channels[slot].sent.fetch_add(1, Ordering::Release);
            });
        }
        left = left.saturating_sub(SERVICE_MAX);
        match pumped {
            Pumped::Idle => break,
            // Another source's open line holds the rest: end it now.
            Pumped::Hold(until) => now = now.max(until),
            Pumped::More => {}
        }
        if left == 0 {
            break;
        }
    }
    drop(channels);
    drop(lines);
    LAST_SENT_MS.store((p.now_ms)(), Ordering::Relaxed);
    (p.flush)();
}

/// Reads whatever the keyboard has and routes it. Returns whether anything came.
pub fn poll_keyboard() -> bool {
    let Some(p) = PHYSICAL.get() else {
        return false;
    };
    let mut any = false;
    for _ in 0..KEYS_PER_POLL {
        let Some(b) = (p.read)() else { break };
        any = true;
        let (key, switch_key, msg) = {
            let mut kb = KEYBOARD.lock();
            let k = kb.key(b);
            (k, kb.switch_key(), kb.message(k))
        };
        if let Key::Input { vm, byte, repeat } = key
            && let Some(ch) = vm_channel(vm)
        {
            let mut q = ch.input.lock();
            for _ in 0..repeat {
                q.push(switch_key);
            }
            q.push(byte);
            ch.note_in(&q);
        }
        if let Some(m) = msg {
            hypervisor_line(m.as_bytes());
        }
    }
    any
}

/// The next keyboard byte for `vm`.
pub fn take_input(vm: usize) -> Option<u8> {
    vm_channel(vm).and_then(|ch| {
        let mut q = ch.input.lock();
        let b = q.pop();
        ch.note_in(&q);
        b
    })
}

/// Whether keyboard input waits for `vm`.
pub fn has_input(vm: usize) -> bool {
    vm_channel(vm).is_some_and(|ch| ch.in_waiting.load(Ordering::Relaxed))
}

/// Marks a VM as running or off (the keyboard skips VMs that are off).
pub fn set_alive(vm: usize, alive: bool) {
    let msg = {
        let mut kb = KEYBOARD.lock();
        kb.set_alive(vm, alive).and_then(|k| kb.message(k))
    };
    if let Some(m) = msg {
        hypervisor_line(m.as_bytes());
    }
}

/// The VM that has the keyboard.
pub fn focus() -> usize {
    KEYBOARD.lock().focus()
}

/// Drops `vm`'s queued input (on reset).
pub fn clear_input(vm: usize) {
    if let Some(ch) = vm_channel(vm) {
        let mut q = ch.input.lock();
        q.clear();
        ch.note_in(&q);
    }
}

/// The `log` backend: `[LEVEL cpuN] message` lines through the console.
struct Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let cpu = PHYSICAL.get().map(|p| (p.cpu_index)()).unwrap_or(0);
        let line = alloc::format!("[{:5} cpu{}] {}\n", record.level(), cpu, record.args());
        hypervisor_line(line.as_bytes());
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// Installs the logger at `level`.
pub fn init_log(level: log::LevelFilter) {
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(level);
}
