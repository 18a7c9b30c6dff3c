//! Running QEMU from host integration tests: artifacts, command lines, timeouts and
//! the guests' output protocol (see `tests/guests/README.md`).
//!
//! Shared by the integration tests (`mod common;`); not every test file uses every item.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// How long a boot that should end by itself may take. Generous: TCG on a loaded
/// two-core CI machine, several QEMUs at once.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// Guest RAM is given to QEMU as this much memory.
pub const QEMU_MEMORY: &str = "1G";

/// What one QEMU run produced.
#[derive(Debug)]
pub struct Run {
    /// The serial console (QEMU's stdout with `-nographic`), `\r` removed.
    pub output: String,
    /// QEMU's own diagnostics.
    pub stderr: String,
    /// QEMU's exit status; `None` if it was killed.
    pub status: Option<i32>,
    /// QEMU was killed because the time ran out (not because `until` matched).
    pub timed_out: bool,
}

impl Run {
    /// Lines of serial output with the hypervisor console's VM tag (`(name) `)
    /// removed, so a guest's lines read the same with or without the hypervisor.
    pub fn guest_lines(&self) -> impl Iterator<Item = &str> {
        self.output.lines().map(strip_vm_tag)
    }

    /// Whether some line (VM tag removed) is exactly `line`.
    pub fn has_line(&self, line: &str) -> bool {
        self.guest_lines().any(|l| l == line)
    }

    /// The `FAIL:` lines the guests printed.
    pub fn failures(&self) -> Vec<&str> {
        self.guest_lines()
            .filter(|l| l.starts_with("FAIL:"))
            .collect()
    }

    /// The last `N passed, M failed` line, as (N, M).
    pub fn summary(&self) -> Option<(u32, u32)> {
        self.guest_lines().filter_map(parse_summary).last()
    }

    /// The lines VM `vm` printed, its console tag (`(vm) `) removed.
    pub fn vm_lines(&self, vm: &str) -> Vec<&str> {
        let tag = format!("({vm}) ");
        self.output
            .lines()
            .filter_map(|l| l.strip_prefix(tag.as_str()))
            .collect()
    }

    /// Asserts that VM `vm` (one of several sharing the console) ran its
    /// checks to the end: exactly `checks` `PASS:` lines, no `FAIL` line and
    /// its `N passed, 0 failed` summary. `what` names the run in the message.
    pub fn assert_vm_passed(&self, what: &str, vm: &str, checks: usize) {
        let lines = self.vm_lines(vm);
        let passes = lines.iter().filter(|l| l.starts_with("PASS: ")).count();
        let fails: Vec<_> = lines.iter().filter(|l| l.starts_with("FAIL")).collect();
        let summary = format!("{checks} passed, 0 failed");
        assert!(
            passes == checks && fails.is_empty() && lines.contains(&summary.as_str()),
            "{what}: VM '{vm}' should pass all {checks} checks: {passes} PASS, \
             failures {fails:?}\n{}",
            self.report()
        );
    }

    /// Everything needed to understand a failed assertion.
    pub fn report(&self) -> String {
        format!(
            "QEMU status: {:?}{}\n--- serial output ---\n{}\n--- QEMU stderr ---\n{}",
            self.status,
            if self.timed_out {
                " (killed: timed out)"
            } else {
                ""
            },
            self.output,
            self.stderr
        )
    }

    /// Asserts that the guest ran its checks to the end: exactly `expected_passes`
    /// passed, none failed, no `FAIL:` line, and QEMU exited by itself with status 0
    /// (the guest's SYSTEM_OFF, passed on by the hypervisor).
    pub fn assert_all_passed(&self, expected_passes: u32) {
        assert!(
            !self.timed_out,
            "the guest never powered off\n{}",
            self.report()
        );
        assert_eq!(
            self.failures(),
            Vec::<&str>::new(),
            "the guest reported failures\n{}",
            self.report()
        );
        assert_eq!(
            self.summary(),
            Some((expected_passes, 0)),
            "expected the line `{expected_passes} passed, 0 failed`\n{}",
            self.report()
        );
        assert_eq!(
            self.status,
            Some(0),
            "QEMU's exit status\n{}",
            self.report()
        );
    }
}

/// `(vm) text` -> `text`; other lines unchanged.
pub fn strip_vm_tag(line: &str) -> &str {
    match line.find(") ") {
        Some(end) if line.starts_with('(') => &line[end + 2..],
        _ => line,
    }
}

/// `N passed, M failed` -> (N, M).
pub fn parse_summary(line: &str) -> Option<(u32, u32)> {
    let (passed, rest) = line.trim().split_once(" passed, ")?;
    let failed = rest.strip_suffix(" failed")?;
    Some((passed.parse().ok()?, failed.parse().ok()?))
}

/// The QEMU binary: `$FERROVISOR_QEMU`, default `qemu-system-aarch64`.
pub fn qemu_binary() -> String {
    std::env::var("FERROVISOR_QEMU").unwrap_or_else(|_| "qemu-system-aarch64".into())
}

/// Runs QEMU with `args` until it exits or `timeout` passes; then it is killed
/// (a guest that never powers off is a failure, not a hang).
pub fn run_qemu(args: &[String], timeout: Duration) -> Run {
    run(args, timeout, None, None, &mut |_| {})
}

/// As [`run_qemu`], with `input` typed on the serial console (QEMU's stdin) at
/// once: it waits in the UART until the guest reads it.
pub fn run_qemu_with_input(args: &[String], timeout: Duration, input: &[u8]) -> Run {
    run(args, timeout, None, Some(input), &mut |_| {})
}

/// As [`run_qemu`], but also stops QEMU as soon as some serial line satisfies `until`
/// (for a program that is expected to stop and wait forever).
pub fn run_qemu_until(args: &[String], timeout: Duration, until: impl Fn(&str) -> bool) -> Run {
    run(args, timeout, Some(&until), None, &mut |_| {})
}

/// As [`run_qemu`], with QEMU's monitor on a socket: `react` sees each complete serial
/// line once, as it arrives, and returns the monitor commands to send for it (e.g.
/// `system_powerdown` when a guest asks for the power button).
pub fn run_qemu_with_monitor(
    args: &[String],
    timeout: Duration,
    mut react: impl FnMut(&str) -> Vec<&'static str>,
) -> Run {
    use std::io::Write;
    let socket = std::env::temp_dir().join(format!(
        "ferrovisor-monitor-{}-{:?}.sock",
        std::process::id(),
        thread::current().id()
    ));
    let _ = std::fs::remove_file(&socket);
    let mut args = args.to_vec();
    args.extend([
        "-monitor".into(),
        format!("unix:{},server=on,wait=off", socket.display()),
    ]);
    let mut monitor: Option<std::os::unix::net::UnixStream> = None;
    let run = run(&args, timeout, None, None, &mut |line| {
        for command in react(line) {
            if monitor.is_none() {
                monitor = std::os::unix::net::UnixStream::connect(&socket).ok();
            }
            let sent = monitor
                .as_mut()
                .is_some_and(|m| m.write_all(format!("{command}\n").as_bytes()).is_ok());
            assert!(
                sent,
                "cannot send `{command}` to QEMU's monitor at {}",
                socket.display()
            );
        }
    });
    let _ = std::fs::remove_file(&socket);
    run
}

fn run(
    args: &[String],
    timeout: Duration,
    until: Option<&dyn Fn(&str) -> bool>,
    input: Option<&[u8]>,
    on_line: &mut dyn FnMut(&str),
) -> Run {
    let qemu = qemu_binary();
    let mut child = Command::new(&qemu)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start {qemu} ({e}): run `make test` (its set-up installs QEMU >= 8.2)")
        });

    // Kept open until QEMU ends: a closed stdin is an end of input to QEMU.
    let _stdin = input.map(|bytes| {
        let mut stdin = child.stdin.take().expect("stdin is piped");
        stdin.write_all(bytes).expect("write QEMU's stdin");
        stdin.flush().expect("flush QEMU's stdin");
        stdin
    });
    let stdout = collect(child.stdout.take().expect("stdout is piped"));
    let stderr = collect(child.stderr.take().expect("stderr is piped"));
    let start = Instant::now();
    let mut timed_out = false;
    let mut lines_seen = 0;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for QEMU") {
            break status.code();
        }
        {
            let text = String::from_utf8_lossy(&stdout.0.lock().unwrap()).replace('\r', "");
            let complete: Vec<&str> = text.lines().take(text.matches('\n').count()).collect();
            for line in &complete[lines_seen..] {
                on_line(line);
            }
            lines_seen = complete.len();
        }
        let matched = until.is_some_and(|until| {
            let text = String::from_utf8_lossy(&stdout.0.lock().unwrap()).replace('\r', "");
            text.lines().any(until)
        });
        if matched || start.elapsed() > timeout {
            timed_out = !matched;
            // The child may exit between try_wait and kill; both outcomes are fine.
            let _ = child.kill();
            child.wait().expect("wait for killed QEMU");
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    Run {
        output: stdout.finish(),
        stderr: stderr.finish(),
        status,
        timed_out,
    }
}

/// A pipe drained on its own thread, so QEMU never blocks on a full pipe.
struct Collected(Arc<Mutex<Vec<u8>>>, thread::JoinHandle<()>);

fn collect(mut pipe: impl Read + Send + 'static) -> Collected {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&buf);
    let reader = thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    Collected(buf, reader)
}

impl Collected {
    fn finish(self) -> String {
        self.1.join().expect("pipe reader thread");
        let bytes = self.0.lock().unwrap();
        String::from_utf8_lossy(&bytes).replace('\r', "")
    }
}

/// Where `make` put its artifacts: `$FERROVISOR_BUILD`, default `<crate>/build`.
pub fn build_dir() -> PathBuf {
    std::env::var_os("FERROVISOR_BUILD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("build"))
}

/// An artifact under [`build_dir`]; fails the test if it is missing.
pub fn artifact(relative: &str) -> String {
    let path = build_dir().join(relative);
    assert!(
        path.is_file(),
        "missing {}: run `make test` (it builds the hypervisor, the guests and the boot \
         bundles before the tests), or set FERROVISOR_BUILD to the build directory",
        path.display()
    );
    path.to_string_lossy().into_owned()
}

/// QEMU arguments that boot the hypervisor at EL2 with the boot bundle
/// `build/<bundle>` (a config and its guests, see the Makefile).
pub fn hypervisor_args(cpu: &str, smp: u32, bundle: &str) -> Vec<String> {
    image_args(Image::Release, cpu, smp, bundle)
}

/// The hypervisor images `make test` builds (Makefile `PROFILE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Image {
    /// `build/ferrovisor.bin`, what `make run` boots.
    Release,
    /// `build/ferrovisor-debug.bin`: unoptimized, debug assertions and overflow
    /// checks on, its frames several times larger.
    Debug,
    /// `build/ferrovisor-overflow-test.bin`: a debug build whose CPUs recurse at
    /// boot until they hit their stack's guard page.
    OverflowTest,
}

impl Image {
    /// The image's name under the build directory, without extension.
    pub fn name(self) -> &'static str {
        match self {
            Image::Release => "ferrovisor",
            Image::Debug => "ferrovisor-debug",
            Image::OverflowTest => "ferrovisor-overflow-test",
        }
    }
}

/// As [`hypervisor_args`], with the hypervisor image `image`.
pub fn image_args(image: Image, cpu: &str, smp: u32, bundle: &str) -> Vec<String> {
    let mut args = machine_args("virt,virtualization=on,gic-version=3", cpu, smp);
    args.extend([
        "-kernel".into(),
        artifact(&format!("{}.bin", image.name())),
        "-initrd".into(),
        artifact(bundle),
    ]);
    args
}

/// QEMU arguments for a `virt` machine: `machine`, CPU model, CPU count, memory,
/// serial on stdio, exit instead of reboot.
pub fn machine_args(machine: &str, cpu: &str, smp: u32) -> Vec<String> {
    [
        "-M",
        machine,
        "-cpu",
        cpu,
        "-smp",
        &smp.to_string(),
        "-m",
        QEMU_MEMORY,
        "-nographic",
        "-no-reboot",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A QEMU run driven from the test: serial output collected as it comes, keyboard
/// input typed on QEMU's stdin (serial and, with `-echr 0x1d`, not QEMU's escape key).
pub struct Interactive {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: Collected,
    stderr: Collected,
}

impl Interactive {
    pub fn start(args: &[String]) -> Interactive {
        let qemu = qemu_binary();
        let mut child = Command::new(&qemu)
            .args(args)
            .args(["-echr", "0x1d"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {qemu} ({e}): run `make test`"));
        Interactive {
            stdin: child.stdin.take().expect("stdin is piped"),
            stdout: collect(child.stdout.take().expect("stdout is piped")),
            stderr: collect(child.stderr.take().expect("stderr is piped")),
            child,
        }
    }

    /// The serial output so far, `\r` removed.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.stdout.0.lock().unwrap()).replace('\r', "")
    }

    /// Waits until `done` holds for the output so far; false if `timeout` passes first
    /// or QEMU exits.
    pub fn wait_for(&mut self, timeout: Duration, done: impl Fn(&str) -> bool) -> bool {
        let start = Instant::now();
        loop {
            if done(&self.output()) {
                return true;
            }
            if start.elapsed() > timeout || self.child.try_wait().ok().flatten().is_some() {
                return done(&self.output());
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Types `bytes`, a byte at a time with a short pause (a serial line's pace).
    pub fn send(&mut self, bytes: &[u8]) {
        use std::io::Write;
        for b in bytes {
            self.stdin.write_all(&[*b]).expect("type to QEMU");
            self.stdin.flush().expect("type to QEMU");
            thread::sleep(Duration::from_millis(30));
        }
    }

    /// Stops QEMU; what it printed, as a [`Run`].
    pub fn finish(mut self) -> Run {
        let status = match self.child.try_wait().ok().flatten() {
            Some(s) => s.code(),
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                None
            }
        };
        drop(self.stdin);
        Run {
            output: self.stdout.finish(),
            stderr: self.stderr.finish(),
            status,
            timed_out: false,
        }
    }
}
