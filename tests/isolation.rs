//! Issue 4, items 4 and 5: VMs side by side stay isolated and have their own
//! lifecycle. Two configs, each booted on a 4-CPU QEMU under the hypervisor:
//!
//! - `boards/qemu-virt/isolation.toml`: the hostile guest (tests/guests/hostile)
//!   reaches for everything that is not its own and checks each attempt aborts, then
//!   crashes itself into an exception loop; meanwhile the victim guest
//!   (tests/guests/victim) re-verifies a memory pattern and prints heartbeats.
//! - `boards/qemu-virt/lifecycle.toml`: the resetter VM resets itself once with
//!   PSCI SYSTEM_RESET and then powers itself off with SYSTEM_OFF while the victim
//!   VM runs on; the machine powers off when the victim, the last VM, stops.
//!
//! # How a run ends
//! The hostile VM never powers off (it ends in an exception loop on purpose), so the
//! isolation machine never powers off either: the hypervisor turns the machine off
//! only when the last VM stops. The harness therefore drives the run: once the
//! hostile guest has printed its results and "crashing now", and the victim has
//! printed heartbeats after that, it types `q` on the console (the victim has the
//! keyboard); the victim reports and powers its VM off; the harness checks QEMU is
//! still running (the hostile VM keeps the machine on) and kills it.
//!
//! In the lifecycle run nothing in the resetting VM survives its reset, so the guest
//! cannot count its own boots. The harness decides instead, by typing on the
//! resetter's console: `r` at its first prompt (SYSTEM_RESET), `o` at its second
//! (SYSTEM_OFF). The keyboard moves to the victim when the resetter turns off;
//! the harness then presses the console's switch sequence (Ctrl-a three times),
//! which must say that only the victim runs and leave the keyboard with it, and
//! types `q`; the victim powers off, and QEMU must exit by itself with status 0.
//!
//! # Reading the console
//! VM output reaches the shared UART a byte at a time, and the console multiplexer
//! ends a VM's unfinished line when another source writes, continuing it later on a
//! new tagged line. A guest ends its lines with `\r\n` (tests/guests/rt), a forced
//! break is a bare `\n`, and the hypervisor's UART driver may turn every `\n` into
//! `\r\n` (its own log lines show whether it does), so a VM line is complete when it
//! ends with one `\r` more than the driver adds. [`Transcript`] joins the pieces of
//! each VM's lines back together from the raw bytes on that rule. The hypervisor's
//! own log lines are written whole.
//!
//! # The console
//! The hostile guest also sends what would act on a terminal — lines forged after
//! a carriage return, cursor movement and erasure, hidden text, terminal queries,
//! C1 controls, a right-to-left override — and the isolation run checks the raw
//! serial bytes: nothing of it may reach the terminal as such
//! ([`console_attacks_neutralized`]). After the lifecycle run's resetter is off,
//! the switch sequence must say that only the victim runs. A third config,
//! `boards/qemu-virt/console-flood.toml`, has a VM flood the console at a
//! throttled line while another measures what its heartbeat costs it
//! ([`console_flood`]).
//!
//! Needs what `make test` builds: `build/ferrovisor.bin`, `build/isolation.cpio`,
//! `build/lifecycle.cpio`, `build/console-flood.cpio` (tests/bundles.sh).

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{Run, hypervisor_args, qemu_binary};

/// The CPU models the runs use: everything QEMU has, and a plain Armv8.0.
const CPUS: [&str; 2] = ["max", "cortex-a57"];
/// Each config pins its VMs to physical CPUs 0 and 1; QEMU has four, like `make run`.
const HOST_CPUS: u32 = 4;
/// How long any one step may take (TCG on a loaded CI machine).
const STEP: Duration = Duration::from_secs(120);

/// The hostile guest's checks (tests/guests/hostile/src/main.rs): own memory 3,
/// beyond RAM 2, not emulable 6, devices 12, own devices 3, high IPAs 6, table
/// walks 2, wild jumps 4, EL2 from EL1 4, PSCI 4. Both CPU models have a PA range
/// above 40 bits, so every high-IPA check runs.
const HOSTILE_CHECKS: usize = 46;

const VICTIM_BANNER: &str = "Ferrovisor victim guest: guarding";
const HOSTILE_BANNER: &str = "Ferrovisor hostile guest: reaching for what is not mine";
const HOSTILE_CRASH: &str = "hostile: crashing now";
const RESETTER_BANNER: &str = "Ferrovisor lifecycle guest: role=resetter";
const RESETTER_PROMPT: &str = "lifecycle: command?";
const HEARTBEAT: &str = "victim: heartbeat";
/// The console's input switch: Ctrl-a three times (src/devices/console).
const SWITCH_INPUT: &[u8] = &[0x01, 0x01, 0x01];
/// The console's one terminal reset, before its first output
/// (`devices::console::TERMINAL_RESET`).
const TERMINAL_RESET: &[u8] = b"\x1b[0m";

/// One complete line of console output: from a VM (its name) or the hypervisor.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Line {
    vm: Option<String>,
    text: String,
}

/// The console output as complete lines, in the order they were completed.
#[derive(Debug, Default)]
struct Transcript {
    lines: Vec<Line>,
}

impl Transcript {
    /// Parses raw console bytes (with `\r`). A trailing piece without `\n` is still
    /// being written and is left out.
    fn parse(raw: &str) -> Transcript {
        let raw = raw.strip_prefix("\x1b[0m").unwrap_or(raw);
        let mut partial: Vec<(String, String)> = Vec::new();
        let mut lines = Vec::new();
        let mut pieces: Vec<&str> = raw.split('\n').collect();
        pieces.pop();
        // Whether the UART driver adds a `\r` before each `\n`: its log lines say.
        let driver_cr = usize::from(
            pieces
                .iter()
                .find(|p| p.starts_with('['))
                .is_some_and(|p| p.ends_with('\r')),
        );
        for piece in pieces {
            let tagged = piece
                .strip_prefix('(')
                .and_then(|rest| rest.split_once(") "))
                .filter(|(name, _)| {
                    !name.is_empty()
                        && name
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
                });
            match tagged {
                Some((name, text)) => {
                    let slot = match partial.iter().position(|(n, _)| n == name) {
                        Some(i) => i,
                        None => {
                            partial.push((name.to_string(), String::new()));
                            partial.len() - 1
                        }
                    };
                    let crs = text.len() - text.trim_end_matches('\r').len();
                    partial[slot].1.push_str(text.trim_end_matches('\r'));
                    if crs > driver_cr {
                        lines.push(Line {
                            vm: Some(name.to_string()),
                            text: core::mem::take(&mut partial[slot].1),
                        });
                    }
                }
                None => lines.push(Line {
                    vm: None,
                    text: piece.trim_end_matches('\r').to_string(),
                }),
            }
        }
        Transcript { lines }
    }

    /// Positions and texts of `vm`'s lines (`None`: the hypervisor's).
    fn of<'a>(&'a self, vm: Option<&str>) -> impl Iterator<Item = (usize, &'a str)> {
        self.lines
            .iter()
            .enumerate()
            .filter(move |(_, l)| l.vm.as_deref() == vm)
            .map(|(i, l)| (i, l.text.as_str()))
    }

    /// Position of the first line of `vm` satisfying `pred`.
    fn find(&self, vm: Option<&str>, pred: impl Fn(&str) -> bool) -> Option<usize> {
        self.of(vm).find(|(_, t)| pred(t)).map(|(i, _)| i)
    }

    fn count(&self, vm: Option<&str>, pred: impl Fn(&str) -> bool) -> usize {
        self.of(vm).filter(|(_, t)| pred(t)).count()
    }

    /// `vm`'s lines that are `FAIL:` lines.
    fn failures(&self, vm: &str) -> Vec<&str> {
        self.of(Some(vm))
            .map(|(_, t)| t)
            .filter(|t| t.starts_with("FAIL:"))
            .collect()
    }

    /// `vm`'s last `N passed, M failed` line.
    fn summary(&self, vm: &str) -> Option<(u32, u32)> {
        self.of(Some(vm))
            .filter_map(|(_, t)| common::parse_summary(t))
            .last()
    }
}

/// A hypervisor log line about VM `name` containing `what`.
fn hyp_says(name: &str, what: &str) -> impl Fn(&str) -> bool {
    let vm = format!("VM '{name}'");
    let what = what.to_string();
    move |t: &str| t.contains(&vm) && t.contains(&what)
}

/// A QEMU run the test talks to: console output collected, keyboard input sent.
struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<thread::JoinHandle<()>>,
    label: String,
}

/// Reads `line` at `bytes_per_second`, a few bytes each millisecond (as a UART
/// at that rate would take them), into `sink`.
fn drain_slowly(
    mut line: UnixStream,
    sink: Arc<Mutex<Vec<u8>>>,
    bytes_per_second: u32,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let rate = f64::from(bytes_per_second);
        // At most 4 ms worth at once: a line does not catch up after a stall.
        let burst = (rate * 0.004).max(1.0);
        let mut allowance = 0.0f64;
        let mut last = Instant::now();
        let mut chunk = vec![0u8; burst as usize + 1];
        loop {
            let now = Instant::now();
            allowance = (allowance + rate * (now - last).as_secs_f64()).min(burst);
            last = now;
            let want = allowance as usize;
            if want > 0 {
                match line.read(&mut chunk[..want]) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        allowance -= n as f64;
                        sink.lock().unwrap().extend_from_slice(&chunk[..n]);
                    }
                }
            }
            thread::sleep(Duration::from_millis(1));
        }
    })
}

fn drain(
    mut pipe: impl Read + Send + 'static,
    sink: Arc<Mutex<Vec<u8>>>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    })
}

impl Session {
    /// Boots the hypervisor with `build/<bundle>` on CPU model `cpu`, its serial
    /// line on QEMU's stdio.
    fn start(cpu: &str, bundle: &str) -> Session {
        let mut s = Session::spawn(cpu, bundle, &[]);
        let stdout = s.child.stdout.take().expect("piped");
        s.readers.push(drain(stdout, Arc::clone(&s.stdout)));
        s
    }

    /// As [`Session::start`], but the serial line is a Unix socket the harness
    /// reads at `bytes_per_second`, in small steps as a real line drains: QEMU's
    /// PL011 then waits in its writes as it would for a slow terminal.
    fn start_throttled(cpu: &str, bundle: &str, bytes_per_second: u32) -> Session {
        let path = std::env::temp_dir().join(format!(
            "ferrovisor-{}-{cpu}-{bundle}.sock",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&path);
        let chardev = format!(
            "socket,id=serial0,path={},server=on,wait=on",
            path.display()
        );
        let mut s = Session::spawn(
            cpu,
            bundle,
            &["-chardev", &chardev, "-serial", "chardev:serial0"],
        );
        // The monitor stays on stdio: keep reading it so QEMU never blocks there.
        let stdout = s.child.stdout.take().expect("piped");
        s.readers
            .push(drain(stdout, Arc::new(Mutex::new(Vec::new()))));
        let line = s.connect(&path);
        s.readers
            .push(drain_slowly(line, Arc::clone(&s.stdout), bytes_per_second));
        s
    }

    fn spawn(cpu: &str, bundle: &str, extra: &[&str]) -> Session {
        let mut args = hypervisor_args(cpu, HOST_CPUS, bundle);
        // QEMU's own console escape key away from Ctrl-a, so the console switch
        // sequence reaches the hypervisor (as boards/qemu-virt/board.mk does).
        args.extend(["-echr".to_string(), "0x1d".to_string()]);
        args.extend(extra.iter().map(|a| a.to_string()));
        let qemu = qemu_binary();
        let mut child = Command::new(&qemu)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {qemu} ({e}): run `make test`"));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![drain(
            child.stderr.take().expect("piped"),
            Arc::clone(&stderr),
        )];
        Session {
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            readers,
            label: format!("{bundle} on -cpu {cpu}"),
        }
    }

    /// Connects to QEMU's serial socket once it is listening.
    fn connect(&mut self, path: &PathBuf) -> UnixStream {
        let start = Instant::now();
        loop {
            if let Ok(stream) = UnixStream::connect(path) {
                let _ = std::fs::remove_file(path);
                return stream;
            }
            if self.exited().is_some() || start.elapsed() > STEP {
                self.fail(&format!("QEMU never listened on {}", path.display()));
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn raw(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    fn bytes(&self) -> Vec<u8> {
        self.stdout.lock().unwrap().clone()
    }

    fn transcript(&self) -> Transcript {
        Transcript::parse(&self.raw())
    }

    fn exited(&mut self) -> Option<i32> {
        self.child
            .try_wait()
            .expect("wait for QEMU")
            .map(|s| s.code().unwrap_or(-1))
    }

    /// Waits until `done` holds for the transcript; panics with the console output
    /// if QEMU exits first, the hypervisor panics, or `STEP` passes.
    fn wait_for(&mut self, what: &str, done: impl Fn(&Transcript) -> bool) {
        let start = Instant::now();
        loop {
            let t = self.transcript();
            if done(&t) {
                return;
            }
            if self.raw().contains("PANIC") {
                self.fail(&format!("the hypervisor panicked while waiting for {what}"));
            }
            if let Some(code) = self.exited() {
                // Let the readers catch the last output before reporting.
                thread::sleep(Duration::from_millis(100));
                if done(&self.transcript()) {
                    return;
                }
                self.fail(&format!(
                    "QEMU exited (status {code}) while waiting for {what}"
                ));
            }
            if start.elapsed() > STEP {
                self.fail(&format!("timed out after {STEP:?} waiting for {what}"));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types `bytes` on the console.
    fn send(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        stdin.write_all(bytes).expect("write to QEMU's stdin");
        stdin.flush().expect("flush QEMU's stdin");
    }

    /// Waits for QEMU to exit by itself; its status.
    fn wait_exit(&mut self) -> i32 {
        let start = Instant::now();
        loop {
            if let Some(code) = self.exited() {
                return code;
            }
            if start.elapsed() > STEP {
                self.fail("timed out waiting for QEMU to exit (the machine never powered off)");
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops QEMU and collects everything it wrote: the run, the serial output as
    /// text and as the bytes that came.
    fn finish(mut self) -> (Run, String, Vec<u8>) {
        let status = self.exited();
        if status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        drop(self.stdin.take());
        for r in self.readers.drain(..) {
            r.join().expect("pipe reader");
        }
        let raw = self.raw();
        let run = Run {
            output: raw.replace('\r', ""),
            stderr: String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned(),
            status,
            timed_out: false,
        };
        (run, raw, self.bytes())
    }

    fn fail(&mut self, why: &str) -> ! {
        let _ = self.child.kill();
        let _ = self.child.wait();
        thread::sleep(Duration::from_millis(100));
        let raw = self.raw();
        let stderr = String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned();
        panic!("{}: {why}\n{}", self.label, excerpt(&raw, &stderr));
    }
}

/// The console output for a failure message: its start and end (a crashing guest
/// can make the hypervisor log a great deal in between).
fn excerpt(raw: &str, stderr: &str) -> String {
    const HEAD: usize = 150;
    const TAIL: usize = 150;
    let lines: Vec<&str> = raw.lines().map(|l| l.trim_end_matches('\r')).collect();
    let body = if lines.len() <= HEAD + TAIL {
        lines.join("\n")
    } else {
        format!(
            "{}\n[... {} lines left out ...]\n{}",
            lines[..HEAD].join("\n"),
            lines.len() - HEAD - TAIL,
            lines[lines.len() - TAIL..].join("\n")
        )
    };
    format!("--- serial output ---\n{body}\n--- QEMU stderr ---\n{stderr}")
}

/// Asserts `cond`, printing the console excerpt if it does not hold.
macro_rules! check {
    ($label:expr, $raw:expr, $stderr:expr, $cond:expr, $($msg:tt)+) => {
        assert!($cond, "{}: {}\n{}", $label, format!($($msg)+), excerpt($raw, $stderr))
    };
}

/// The victim's own verdict: no failure, its memory intact.
fn victim_ended_well(label: &str, raw: &str, err: &str, t: &Transcript) {
    check!(
        label,
        raw,
        err,
        t.failures("victim").is_empty(),
        "the victim reported failures: {:?}",
        t.failures("victim")
    );
    check!(
        label,
        raw,
        err,
        t.find(Some("victim"), |l| l == "PASS: victim memory intact")
            .is_some(),
        "no `PASS: victim memory intact`"
    );
}

/// The victim received the `q` typed on the console.
fn victim_got_q(label: &str, raw: &str, err: &str, t: &Transcript, why: &str) {
    check!(
        label,
        raw,
        err,
        t.find(Some("victim"), |l| l.starts_with("victim: q received"))
            .is_some(),
        "{why}"
    );
}

/// The isolation run: see the module documentation.
fn isolation(cpu: &str) {
    let mut s = Session::start(cpu, "isolation.cpio");
    s.wait_for("the hostile guest to crash itself", |t| {
        t.find(Some("hostile"), |l| l.starts_with(HOSTILE_CRASH))
            .is_some()
    });
    // The victim must keep running while the hostile VM spins in its exception loop.
    s.wait_for("two victim heartbeats after the hostile crash", |t| {
        let crash = t
            .find(Some("hostile"), |l| l.starts_with(HOSTILE_CRASH))
            .unwrap_or(usize::MAX);
        t.of(Some("victim"))
            .filter(|(i, l)| *i > crash && l.starts_with(HEARTBEAT))
            .count()
            >= 2
    });
    s.send(b"q");
    s.wait_for("the victim VM to power off", |t| {
        t.find(None, hyp_says("victim", "is off")).is_some()
    });
    // The hostile VM is still there, so the machine must stay on.
    thread::sleep(Duration::from_millis(500));
    let still_running = s.exited().is_none();
    let label = s.label.clone();
    let (run, raw, bytes) = s.finish();
    let t = Transcript::parse(&raw);
    let (raw, err) = (raw.as_str(), run.stderr.as_str());

    check!(
        label,
        raw,
        err,
        !raw.contains("PANIC"),
        "the hypervisor panicked"
    );
    check!(
        label,
        raw,
        err,
        still_running,
        "QEMU stopped after the victim powered off, though the hostile VM never stopped"
    );
    check!(
        label,
        raw,
        err,
        t.find(None, |l| l.contains("all VMs are off")).is_none(),
        "the hypervisor reported all VMs off while the hostile VM was still running"
    );

    // The victim: started once, never disturbed, reported intact memory.
    check!(
        label,
        raw,
        err,
        t.count(Some("victim"), |l| l.starts_with(VICTIM_BANNER)) == 1,
        "the victim's banner should appear exactly once (a restart would repeat it)"
    );
    victim_ended_well(&label, raw, err, &t);
    check!(
        label,
        raw,
        err,
        t.summary("victim") == Some((1, 0)),
        "the victim's summary: {:?}",
        t.summary("victim")
    );
    victim_got_q(
        &label,
        raw,
        err,
        &t,
        "the victim never got the `q` typed on the console (it stopped at its time limit)",
    );

    // The hostile guest: every attempt aborted, then it crashed itself.
    let hostile_passes = t.count(Some("hostile"), |l| l.starts_with("PASS: "));
    check!(
        label,
        raw,
        err,
        t.count(Some("hostile"), |l| l == HOSTILE_BANNER) == 1,
        "the hostile guest's banner should appear exactly once"
    );
    check!(
        label,
        raw,
        err,
        t.failures("hostile").is_empty(),
        "the hostile guest got through: {:?}",
        t.failures("hostile")
    );
    check!(
        label,
        raw,
        err,
        hostile_passes == HOSTILE_CHECKS
            && t.summary("hostile") == Some((HOSTILE_CHECKS as u32, 0)),
        "expected {HOSTILE_CHECKS} hostile PASS lines and `{HOSTILE_CHECKS} passed, 0 failed`, \
         got {hostile_passes} and {:?}",
        t.summary("hostile")
    );
    check!(
        label,
        raw,
        err,
        t.find(None, hyp_says("hostile", "off")).is_none(),
        "the hostile VM was stopped; it should have been left spinning"
    );
    for done in [
        "hostile: console attacks follow",
        "hostile: console attacks done",
    ] {
        check!(
            label,
            raw,
            err,
            t.find(Some("hostile"), |l| l == done).is_some(),
            "no `{done}` from the hostile guest"
        );
    }
    if let Err(why) = console_attacks_neutralized(&bytes) {
        check!(
            label,
            raw,
            err,
            false,
            "a console attack got through: {why}"
        );
    }
}

/// Lines of the hostile guest's console attacks that carry `FORGED`
/// (tests/guests/hostile: `CONSOLE_ATTACKS`).
const FORGED_LINES: usize = 7;

/// Checks the raw serial bytes of a run with the hostile guest: nothing a guest
/// sent may act on the terminal.
/// - The only ESC is the console's own terminal reset before its first output:
///   no CSI, OSC, DCS or other escape sequence from a guest.
/// - The rest is well-formed UTF-8 (no C1 control as a single byte), with no C0
///   control but `\t`, `\r`, `\n`, no DEL, no C1 control encoded in UTF-8, no
///   bidirectional control or line separator.
/// - Every `\r` is followed by `\r` or `\n`: nothing is written over the start
///   of a line.
/// - Every line as the terminal shows it (split at `\r` and `\n`) that holds a
///   forged text starts with the hostile VM's tag, and all of them are there.
fn console_attacks_neutralized(bytes: &[u8]) -> Result<(), String> {
    let rest = bytes.strip_prefix(TERMINAL_RESET).unwrap_or(bytes);
    if let Some(at) = rest.iter().position(|&b| b == 0x1b) {
        let from = at.saturating_sub(60);
        return Err(format!(
            "an ESC at byte {at}: {:?}",
            String::from_utf8_lossy(&rest[from..(at + 20).min(rest.len())])
        ));
    }
    let text = std::str::from_utf8(rest).map_err(|e| format!("not UTF-8: {e}"))?;
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let bad = match c {
            '\t' | '\n' => false,
            '\r' => !matches!(chars.get(i + 1), Some('\r' | '\n')),
            c => {
                c.is_control()
                    || matches!(
                        u32::from(c),
                        0x061c | 0x200e | 0x200f | 0x2028..=0x202e | 0x2066..=0x2069
                    )
            }
        };
        if bad {
            let around: String = chars[i.saturating_sub(60)..(i + 20).min(chars.len())]
                .iter()
                .collect();
            return Err(format!("{c:?} at character {i}: {around:?}"));
        }
    }
    let forged: Vec<&str> = text
        .split(['\r', '\n'])
        .filter(|l| l.contains("FORGED"))
        .collect();
    if let Some(l) = forged.iter().find(|l| !l.starts_with("(hostile) ")) {
        return Err(format!("a forged line shows as its own: {l:?}"));
    }
    if forged.len() < FORGED_LINES {
        return Err(format!(
            "{} of the {FORGED_LINES} forged lines came out: {forged:?}",
            forged.len()
        ));
    }
    Ok(())
}

#[test]
fn hostile_guest_cannot_touch_the_victim_on_cpu_max() {
    isolation(CPUS[0]);
}

#[test]
fn hostile_guest_cannot_touch_the_victim_on_cortex_a57() {
    isolation(CPUS[1]);
}

/// The lifecycle run: see the module documentation.
fn lifecycle(cpu: &str) {
    let prompts = |t: &Transcript| t.count(Some("resetter"), |l| l.starts_with(RESETTER_PROMPT));
    let mut s = Session::start(cpu, "lifecycle.cpio");
    s.wait_for("the resetter's first prompt and a victim heartbeat", |t| {
        prompts(t) >= 1
            && t.find(Some("victim"), |l| l.starts_with(HEARTBEAT))
                .is_some()
    });
    s.send(b"r");
    // The victim must run on through the resetter's reset.
    s.wait_for(
        "the resetter's second prompt and a victim heartbeat after the reset",
        |t| {
            let reset = t
                .find(None, hyp_says("resetter", "resets"))
                .unwrap_or(usize::MAX);
            prompts(t) >= 2
                && t.of(Some("victim"))
                    .any(|(i, l)| i > reset && l.starts_with(HEARTBEAT))
        },
    );
    s.send(b"o");
    s.wait_for("the resetter VM to power off", |t| {
        t.find(None, hyp_says("resetter", "is off")).is_some()
    });
    s.wait_for("two victim heartbeats after the resetter is off", |t| {
        let off = t
            .find(None, hyp_says("resetter", "is off"))
            .unwrap_or(usize::MAX);
        t.of(Some("victim"))
            .filter(|(i, l)| *i > off && l.starts_with(HEARTBEAT))
            .count()
            >= 2
    });
    s.send(SWITCH_INPUT);
    s.send(b"q");
    let status = s.wait_exit();
    let label = s.label.clone();
    let (run, raw, _) = s.finish();
    let t = Transcript::parse(&raw);
    let (raw, err) = (raw.as_str(), run.stderr.as_str());

    check!(
        label,
        raw,
        err,
        !raw.contains("PANIC"),
        "the hypervisor panicked"
    );
    check!(
        label,
        raw,
        err,
        status == 0,
        "QEMU's exit status {status}: the machine should power off when the last VM stops"
    );

    // The resetter: two boots, each from the original image, one reset, one power-off.
    let boots = t.count(Some("resetter"), |l| l == RESETTER_BANNER);
    check!(
        label,
        raw,
        err,
        boots == 2,
        "the resetter booted {boots} times, expected 2"
    );
    for check in [
        "PASS: lifecycle: .data holds its load-time value (image reloaded)",
        "PASS: lifecycle: the device tree is whole (magic 0xd00dfeed)",
        "PASS: lifecycle: RAM outside the images reads zero (nothing of an earlier run)",
    ] {
        let n = t.count(Some("resetter"), |l| l == check);
        check!(
            label,
            raw,
            err,
            n == 2,
            "`{check}` {n} times, expected once per boot"
        );
    }
    check!(
        label,
        raw,
        err,
        t.failures("resetter").is_empty(),
        "the resetter reported failures: {:?}",
        t.failures("resetter")
    );
    check!(
        label,
        raw,
        err,
        t.summary("resetter") == Some((3, 0)),
        "the resetter's summary before SYSTEM_OFF: {:?}",
        t.summary("resetter")
    );
    let resets = t.count(None, hyp_says("resetter", "resets"));
    check!(
        label,
        raw,
        err,
        resets == 1,
        "the hypervisor logged {resets} resets of 'resetter', expected 1"
    );

    // The victim: one boot, alive across the resetter's reset and after its
    // power-off, memory intact, and it stopped the machine as the last VM.
    check!(
        label,
        raw,
        err,
        t.count(Some("victim"), |l| l.starts_with(VICTIM_BANNER)) == 1,
        "the victim's banner should appear exactly once (the resetter's reset must not restart it)"
    );
    let reset_at = t
        .find(None, hyp_says("resetter", "resets"))
        .unwrap_or(usize::MAX);
    let off_at = t
        .find(None, hyp_says("resetter", "is off"))
        .unwrap_or(usize::MAX);
    let victim_off = t.find(None, hyp_says("victim", "is off"));
    let all_off = t.find(None, |l| l.contains("all VMs are off"));
    check!(
        label,
        raw,
        err,
        t.of(Some("victim"))
            .any(|(i, l)| i < reset_at && l.starts_with(HEARTBEAT))
            && t.of(Some("victim"))
                .any(|(i, l)| i > reset_at && i < off_at && l.starts_with(HEARTBEAT)),
        "the victim should beat before the resetter's reset and between the reset and the resetter's power-off"
    );
    victim_ended_well(&label, raw, err, &t);
    victim_got_q(
        &label,
        raw,
        err,
        &t,
        "the victim never got the `q` typed after Ctrl-a x3 (the console switch)",
    );
    check!(
        label,
        raw,
        err,
        t.find(None, |l| l
            == "[console] only VM 'victim' is running; input stays with it")
            .is_some_and(|i| i > off_at),
        "the switch key pressed with only the victim running should say so"
    );
    check!(
        label,
        raw,
        err,
        matches!((victim_off, all_off), (Some(v), Some(a)) if off_at < v && v < a),
        "expected the resetter off, then the victim off, then all VMs off: {off_at}, {victim_off:?}, {all_off:?}"
    );
}

#[test]
fn per_vm_reset_and_power_off_on_cpu_max() {
    lifecycle(CPUS[0]);
}

#[test]
fn per_vm_reset_and_power_off_on_cortex_a57() {
    lifecycle(CPUS[1]);
}

/// The rate of a real serial line: 115200 baud, 10 bits a byte (8N1).
const LINE_BYTES_PER_SECOND: u32 = 11_520;
/// Rounds the rate VM measures (`boards/qemu-virt/console-flood.toml`).
const RATE_ROUNDS: usize = 40;
/// How much longer a period with a heartbeat may take than one without.
const HEARTBEAT_TOLERANCE: f64 = 1.10;
/// Runs before the flood test gives up.
const FLOOD_ATTEMPTS: usize = 2;

/// One round of the rate VM: its quiet period, its period that began with a
/// heartbeat, and the heartbeat's print alone, in counter ticks.
#[derive(Debug)]
struct Round {
    quiet: u64,
    beat: u64,
    print: u64,
}

fn rounds(t: &Transcript) -> Vec<Round> {
    t.of(Some("rate"))
        .filter_map(|(_, l)| {
            let rest = l.strip_prefix("victim: rate round ")?;
            let (_, rest) = rest.split_once(": quiet ")?;
            let (quiet, rest) = rest.split_once(" ticks, with heartbeat ")?;
            let (beat, rest) = rest.split_once(" ticks, the heartbeat ")?;
            let print = rest.strip_suffix(" ticks")?;
            Some(Round {
                quiet: quiet.parse().ok()?,
                beat: beat.parse().ok()?,
                print: print.parse().ok()?,
            })
        })
        .collect()
}

/// The mean of `v` without its highest and lowest tenth.
fn trimmed_mean(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let cut = v.len() / 10;
    let kept = &v[cut..v.len() - cut];
    kept.iter().sum::<f64>() / kept.len() as f64
}

/// A flood at a throttled UART does not slow the victim's heartbeat by more
/// than 10 %.
///
/// `boards/qemu-virt/console-flood.toml`: the flood VM writes lines as fast as it
/// can, never looking at UARTFR.TXFF; QEMU's serial line is a socket the harness
/// reads at 115200 baud, so the physical UART is as slow as a real one. The rate
/// VM (tests/guests/victim, `role=rate`) runs [`RATE_ROUNDS`] rounds of two
/// periods of the same work (about 150 ms): a quiet one, in which its CPU touches
/// nothing but the counter, and one that begins with a heartbeat line (65
/// bytes, as a log line). Each period's length is read off the counter at its
/// two ends only.
///
/// Why this shape. QEMU's PL011 writes each byte with a blocking call under
/// QEMU's global lock, which every timer and GIC system-register access also
/// takes (TOOLCHAIN.md): with the line full, every exit of every vCPU waits for
/// it, whatever the hypervisor does. So the victim cannot be compared with a run
/// without the flood; its quiet periods are the calibration — the same flood,
/// the same host, a CPU that never touches the UART — and each heartbeat period
/// is compared with the quiet period just before it, so that a busy host (the
/// test machine has two cores shared with other work) slows both alike. The
/// statistic is the mean over the rounds of (heartbeat period / quiet period)
/// without the highest and the lowest tenth: the few periods the host happened
/// to stall do not count, heartbeats that are slow now and then do.
///
/// Tolerance: the slowdown must stay within 10 % ([`HEARTBEAT_TOLERANCE`], the
/// goal). With the console of this tree the statistic measured 1.00..1.04 on
/// this two-core machine at load averages of 3..14 (the heartbeat's print takes
/// about 0.6 ms, up to some 20 ms when the host or a blocked write holds it up);
/// with the console before it, which wrote to the UART under one lock that
/// every VM's console access waited for, it measured 1.15..5.0 in 13 runs and
/// single heartbeats took seconds. A run above the tolerance is repeated once
/// ([`FLOOD_ATTEMPTS`]) and the better run counts: one run in which the host
/// happens to stall the heartbeat periods more than the quiet ones is noise,
/// two are not.
fn console_flood(cpu: &str) {
    let mut slowdowns = Vec::new();
    for attempt in 1..=FLOOD_ATTEMPTS {
        let slowdown = flood_run(cpu, attempt);
        slowdowns.push(slowdown);
        if slowdown <= HEARTBEAT_TOLERANCE {
            return;
        }
    }
    panic!(
        "console flood on -cpu {cpu}: a heartbeat period took {slowdowns:.3?} times as long \
         as a quiet one ({RATE_ROUNDS} rounds, in each of {FLOOD_ATTEMPTS} runs); at most \
         {HEARTBEAT_TOLERANCE} is allowed"
    );
}

/// One flood run; how much longer heartbeat periods took than quiet ones.
fn flood_run(cpu: &str, attempt: usize) -> f64 {
    let mut s = Session::start_throttled(cpu, "console-flood.cpio", LINE_BYTES_PER_SECOND);
    s.label = format!("{} (run {attempt})", s.label);
    s.wait_for("the rate VM's results", |t| rounds(t).len() >= RATE_ROUNDS);
    let label = s.label.clone();
    let (run, raw, _) = s.finish();
    let t = Transcript::parse(&raw);
    let (raw, err) = (raw.as_str(), run.stderr.as_str());
    check!(
        label,
        raw,
        err,
        !raw.contains("PANIC"),
        "the hypervisor panicked"
    );
    check!(
        label,
        raw,
        err,
        t.count(Some("flood"), |l| l.starts_with("flood ")) > 0,
        "no flood lines: the flood VM did not flood"
    );
    check!(
        label,
        raw,
        err,
        t.count(Some("rate"), |l| l.starts_with("victim: heartbeat ")) == RATE_ROUNDS,
        "the rate VM's {RATE_ROUNDS} heartbeats should all come through the flood"
    );
    let rounds = rounds(&t);
    let ratios: Vec<f64> = rounds
        .iter()
        .map(|r| r.beat as f64 / r.quiet.max(1) as f64)
        .collect();
    let slowdown = trimmed_mean(ratios);
    eprintln!(
        "{label}: heartbeat / quiet period {slowdown:.3}; quiet {:?} ticks, \
         with heartbeat {:?}, the heartbeat alone {:?}",
        rounds.iter().map(|r| r.quiet).collect::<Vec<_>>(),
        rounds.iter().map(|r| r.beat).collect::<Vec<_>>(),
        rounds.iter().map(|r| r.print).collect::<Vec<_>>(),
    );
    slowdown
}

#[test]
fn a_console_flood_does_not_slow_another_vm_on_cpu_max() {
    console_flood(CPUS[0]);
}

#[test]
fn a_console_flood_does_not_slow_another_vm_on_cortex_a57() {
    console_flood(CPUS[1]);
}

/// What the hypervisor prints before it stops on a config it refuses.
const STOP_LINE: &str = "Ferrovisor stopped";

/// Boots the hypervisor on `cpu` with a victim VM and a hostile VM whose config ends
/// with `hostile` (a passthrough device, say), packed here rather than by `fvconfig`
/// (which refuses the same configs: the point is that the hypervisor does too, at
/// boot, with the same words). Returns the first error line.
fn refused_at_boot(cpu: &str, hostile: &str) -> (String, common::Run) {
    let config = format!(
        "[[vm]]\nname = \"victim\"\ncpus = [0]\nmemory = \"64M\"\nkernel = \"victim.bin\"\n\
         bootargs = \"role=victim max_seconds=30\"\n\n\
         [[vm]]\nname = \"hostile\"\ncpus = [1]\nmemory = \"64M\"\nkernel = \"hostile.bin\"\n{hostile}"
    );
    let read = |name: &str| std::fs::read(common::artifact(&format!("guests/{name}"))).unwrap();
    let bundle = ferrovisor::config::bundle::write_bundle(&[
        ("ferrovisor.toml", config.as_bytes()),
        ("victim.bin", &read("victim.bin")),
        ("hostile.bin", &read("hostile.bin")),
    ]);
    let path = std::env::temp_dir().join(format!(
        "ferrovisor-refused-{}-{cpu}-{:x}.cpio",
        std::process::id(),
        hostile
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
    ));
    std::fs::write(&path, bundle).unwrap();
    let mut args = hypervisor_args(cpu, HOST_CPUS, "demo.cpio");
    let initrd = args.iter().position(|a| a == "-initrd").unwrap() + 1;
    args[initrd] = path.display().to_string();
    let run = common::run_qemu_until(&args, STEP, |l| l.contains(STOP_LINE));
    let _ = std::fs::remove_file(&path);
    let report = run.report();
    assert!(!run.output.contains("PANIC"), "{report}");
    assert!(
        run.output.contains(STOP_LINE),
        "the hypervisor did not stop\n{report}"
    );
    assert!(
        !run.output.contains("VM 'victim'") && !run.output.contains("VM 'hostile'"),
        "no VM may start\n{report}"
    );
    let error = run
        .output
        .lines()
        .find(|l| l.contains("ERROR") && !l.contains(STOP_LINE))
        .unwrap_or_else(|| panic!("no error line\n{report}"))
        .to_string();
    (error, run)
}

#[track_caller]
fn assert_names(error: &str, run: &common::Run, words: &[&str]) {
    for w in words {
        assert!(
            error.contains(w),
            "the error line lacks `{w}`: {error}\n{}",
            run.report()
        );
    }
}

/// Issue 13, item 1: a guest given a device that can do DMA reaches all of memory
/// (QEMU's fw_cfg DMA'd over the other VM and the hypervisor's vectors). The
/// hypervisor refuses every such device at boot, naming the config field and why.
fn dma_capable_passthrough_refused(cpu: &str) {
    for (base, node) in [
        ("0x0902_0000", "/fw-cfg@9020000"),
        ("0x0a00_0000", "/virtio_mmio@a000000"),
        ("0x40_1000_0000", "/pcie@10000000"),
    ] {
        let (error, run) = refused_at_boot(
            cpu,
            &format!("[[vm.passthrough]]\nbase = {base}\nsize = 0x1000\n"),
        );
        assert_names(
            &error,
            &run,
            &[
                "ferrovisor.toml:13:1: vm.hostile.passthrough[0]: ",
                node,
                "can master the bus (do DMA)",
                "dma-coherent",
            ],
        );
    }
}

#[test]
fn dma_capable_passthrough_refused_on_cpu_max() {
    dma_capable_passthrough_refused(CPUS[0]);
}

#[test]
fn dma_capable_passthrough_refused_on_cortex_a57() {
    dma_capable_passthrough_refused(CPUS[1]);
}

/// Issue 13, item 2: a passthrough device gets only the interrupts its own
/// device-tree node lists, never one the hypervisor or an emulated device uses:
/// INTID 33 (the host UART's, and the VM's emulated PL011's) would show the attacker
/// every key typed to the other VM.
fn foreign_interrupt_refused(cpu: &str) {
    let gpio = |irq: u32, console: &str| {
        format!("{console}[[vm.passthrough]]\nbase = 0x0903_0000\nsize = 0x1000\nirqs = [{irq}]\n")
    };
    for (hostile, line, words) in [
        (
            gpio(33, ""),
            16,
            "INTID 33 is the interrupt of this VM's emulated PL011 console",
        ),
        (
            gpio(33, "console = \"none\"\n"),
            17,
            "INTID 33 is the interrupt of the hypervisor's console UART",
        ),
        (
            gpio(48, ""),
            16,
            "INTID 48 is not an interrupt of the device",
        ),
    ] {
        let (error, run) = refused_at_boot(cpu, &hostile);
        let field = format!("ferrovisor.toml:{line}:9: vm.hostile.passthrough[0].irqs: ");
        assert_names(&error, &run, &[&field, words]);
    }
}

#[test]
fn foreign_interrupt_refused_on_cpu_max() {
    foreign_interrupt_refused(CPUS[0]);
}

#[test]
fn foreign_interrupt_refused_on_cortex_a57() {
    foreign_interrupt_refused(CPUS[1]);
}

/// The transcript joins a VM line the console split around another source's output
/// and keeps lines in completion order.
#[test]
fn transcript_joins_split_vm_lines() {
    let raw = "[INFO  cpu0] boot\n(victim) Fe\n(hostile) PASS: a\r\n(victim) rrovisor\r\n\
               [WARN  cpu1] x\n(hostile) PA\n[INFO  cpu0] y\n(hostile) SS: b\r\n(victim) partial";
    let t = Transcript::parse(raw);
    let texts: Vec<(Option<&str>, &str)> = t
        .lines
        .iter()
        .map(|l| (l.vm.as_deref(), l.text.as_str()))
        .collect();
    assert_eq!(
        texts,
        vec![
            (None, "[INFO  cpu0] boot"),
            (Some("hostile"), "PASS: a"),
            (Some("victim"), "Ferrovisor"),
            (None, "[WARN  cpu1] x"),
            (None, "[INFO  cpu0] y"),
            (Some("hostile"), "PASS: b"),
        ]
    );
    assert_eq!(t.count(Some("hostile"), |l| l.starts_with("PASS: ")), 2);
    assert_eq!(t.find(None, |l| l.ends_with(" y")), Some(4));

    // The same with a UART driver that sends every `\n` as `\r\n`.
    let crlf = raw.replace('\n', "\r\n");
    let t2 = Transcript::parse(&crlf);
    assert_eq!(t2.lines, t.lines);
}
