//! The check reporter: one line per check and a final count.
//!
//! Output format (what `tests/qemu.rs` parses):
//! - `PASS: <name>`
//! - `FAIL: <name> (<detail>)`
//! - last line: `<N> passed, <M> failed`, followed by PSCI SYSTEM_OFF.

use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

static PASSED: AtomicU32 = AtomicU32::new(0);
static FAILED: AtomicU32 = AtomicU32::new(0);
static FINISHING: AtomicU32 = AtomicU32::new(0);

/// Records and prints one check; returns `ok`. Use through [`crate::check!`].
pub fn report(name: &str, ok: bool, detail: fmt::Arguments<'_>) -> bool {
    if ok {
        PASSED.fetch_add(1, Ordering::SeqCst);
        crate::println!("PASS: {name}");
    } else {
        FAILED.fetch_add(1, Ordering::SeqCst);
        crate::println!("FAIL: {name} ({detail})");
    }
    ok
}

/// Checks a condition and prints `PASS: name` or `FAIL: name (detail)`; evaluates to
/// the condition. Without a detail the failing condition's source text is printed.
///
/// `check!("PSCI 1.x", v >> 16 == 1)` or
/// `check!("PSCI 1.x", v >> 16 == 1, "PSCI_VERSION returned {v:#x}")`.
#[macro_export]
macro_rules! check {
    ($name:expr, $cond:expr $(,)?) => {
        $crate::check::report($name, $cond, format_args!("{}", stringify!($cond)))
    };
    ($name:expr, $cond:expr, $($detail:tt)+) => {
        $crate::check::report($name, $cond, format_args!($($detail)+))
    };
}

/// Prints `N passed, M failed` and powers the (virtual) machine off with PSCI
/// SYSTEM_OFF.
pub fn finish() -> ! {
    FINISHING.store(1, Ordering::SeqCst);
    let passed = PASSED.load(Ordering::SeqCst);
    let failed = FAILED.load(Ordering::SeqCst);
    crate::println!("{passed} passed, {failed} failed");
    crate::system_off()
}

/// Reports a failure that ends the test (a panic, an unexpected exception) and
/// finishes. If it happens while finishing, only prints and powers off.
pub fn fail_and_finish(detail: fmt::Arguments<'_>) -> ! {
    crate::println!("FAIL: {detail}");
    if FINISHING.load(Ordering::SeqCst) != 0 {
        crate::system_off()
    }
    FAILED.fetch_add(1, Ordering::SeqCst);
    finish()
}
