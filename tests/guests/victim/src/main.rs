//! The well-behaved guest of the isolation and lifecycle tests (issue 4, items 4
//! and 5). Its role comes from the generated device tree's `/chosen/bootargs`, so one
//! image serves both configs (`boards/qemu-virt/isolation.toml`, `lifecycle.toml`):
//!
//! - `role=victim` (the default): fills [`BUFFER_BYTES`] of its RAM with a known
//!   pattern, then re-verifies it pass after pass, printing a heartbeat line every
//!   [`HEARTBEAT_MS`], while another VM misbehaves. It stops after at least
//!   [`MIN_MS`], [`AFTER_QUIT_MS`] after a `q` typed on its console (the test
//!   harness types it once the other VM has done its worst), or after
//!   `max_seconds` (bootargs, default [`DEFAULT_MAX_SECONDS`]) at the latest. Then it
//!   reports `PASS: victim memory intact` (or `FAIL: ...`) and powers its VM off
//!   with PSCI SYSTEM_OFF.
//! - `role=resetter`: checks it starts from the original image (a `.data` word it
//!   changes before a reset is back at its initial value, the device tree whose magic
//!   it clobbers is whole again, RAM it fills with a pattern reads zero), then waits for a command on its console: `r`
//!   resets its VM (PSCI SYSTEM_RESET), `o` powers it off (PSCI SYSTEM_OFF). Nothing
//!   in a VM survives its reset, so the guest cannot count its boots itself: the
//!   harness counts the banners and decides, by what it types, how many resets happen.
//!   Without a command it powers off after `max_seconds`.
//! - `role=rate`: measures what printing a heartbeat costs it while another VM
//!   floods the console (`boards/qemu-virt/console-flood.toml`). From `start_ms`
//!   (bootargs) it runs `rounds` rounds of two periods of the same computation
//!   (sized at boot to take about `period_ms`): a quiet one, in which it touches
//!   nothing but the counter (read at the two ends), and one that begins with a
//!   heartbeat line. Then it prints each round's lengths in counter ticks and
//!   powers its VM off; the harness compares the periods.
//! - `role=storm` (`make soak`, `boards/qemu-virt/soak.toml`): the hostile side
//!   of the soak. Each life floods its console (lines written as fast as the
//!   UART takes them), storms its own GIC with SGIs (sent, acknowledged and
//!   completed as fast as it can), and after `reset_seconds` (bootargs) resets
//!   its VM with PSCI SYSTEM_RESET; forever.
#![no_std]
#![no_main]
#![deny(clippy::undocumented_unsafe_blocks)]

mod board;
mod fdt;
#[allow(dead_code)]
#[path = "../../vgic/src/gic.rs"]
mod gic;

use core::sync::atomic::{AtomicU64, Ordering};

use guest_rt::{check, finish, println, system_reset};

guest_rt::entry!(main);

/// How much RAM the victim guards: a BSS array, so the image's `image_size` covers
/// it and the loader gives the VM room for it.
const BUFFER_BYTES: usize = 8 << 20;
const BUFFER_WORDS: usize = BUFFER_BYTES / 8;
/// A heartbeat line this often (virtual-counter time).
const HEARTBEAT_MS: u64 = 500;
/// The victim runs at least this long.
const MIN_MS: u64 = 2_000;
/// After `q`, it keeps verifying this long (so the harness sees it alive after
/// whatever happened before it typed `q`).
const AFTER_QUIT_MS: u64 = 1_000;
/// Without `max_seconds=` in bootargs: the longest any role waits.
const DEFAULT_MAX_SECONDS: u64 = 30;

/// The pattern's seed: word `i` holds `splitmix64(SEED + i)`.
const SEED: u64 = 0x5eed_f00d_dead_beef;

static mut BUFFER: [u64; BUFFER_WORDS] = [0; BUFFER_WORDS];

/// A word in `.data`, changed before a reset: after the reset it must read its
/// initial value again, because the hypervisor reloads the image.
static DATA_MARKER: AtomicU64 = AtomicU64::new(DATA_MARKER_INITIAL);
const DATA_MARKER_INITIAL: u64 = 0x1d47_a000_0000_0001;
const DATA_MARKER_CHANGED: u64 = 0xbad0_bad0_bad0_bad0;

/// RAM the loader leaves alone in the resetter's VM (16 MiB into its 32 MiB at the
/// default base 0x4000_0000: past the image and its BSS, below the device tree
/// at the top): it must read zero at every boot, so nothing the earlier run wrote
/// there survives a reset.
const SCRATCH: u64 = 0x4100_0000;
const SCRATCH_WORDS: usize = (1 << 20) / 8;
/// What the resetter writes there before it resets.
const SCRATCH_PATTERN: u64 = 0x5c7a_7c40_0000_0000;

fn main(dtb: u64) -> ! {
    // SAFETY: the boot protocol puts the device tree in guest RAM at x0; the runtime
    // maps RAM, and nothing else writes the tree while it is read.
    let tree = unsafe { fdt::Fdt::at(dtb) };
    let args = tree.and_then(|t| t.bootargs()).unwrap_or("");
    let max_seconds = fdt::bootarg(args, "max_seconds")
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_MAX_SECONDS);
    match fdt::bootarg(args, "role").unwrap_or("victim") {
        "resetter" => resetter(dtb, tree.is_some(), max_seconds),
        "victim" => victim(tree.and_then(|t| t.memory()), max_seconds),
        "rate" => rate(args),
        "storm" => storm(args),
        other => {
            check!("victim: known role", false, "bootargs role={other}");
            finish()
        }
    }
}

/// SplitMix64 (Steele, Lea, Flood 2014): a cheap, well-mixed word per index.
fn pattern(i: usize) -> u64 {
    let mut z = SEED.wrapping_add((i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn buffer() -> *mut u64 {
    core::ptr::addr_of_mut!(BUFFER).cast::<u64>()
}

/// Writes the pattern; returns its checksum (wrapping sum of the words).
fn fill() -> u64 {
    let base = buffer();
    let mut sum = 0u64;
    for i in 0..BUFFER_WORDS {
        let w = pattern(i);
        // SAFETY: `i` is inside BUFFER, which only this (single-vCPU) guest uses.
        unsafe { base.add(i).write_volatile(w) };
        sum = sum.wrapping_add(w);
    }
    sum
}

/// The first word that differs from the pattern, and the checksum of what is there.
struct Verify {
    first_bad: Option<(usize, u64)>,
    bad_words: usize,
    checksum: u64,
}

fn verify() -> Verify {
    let base = buffer();
    let mut v = Verify {
        first_bad: None,
        bad_words: 0,
        checksum: 0,
    };
    for i in 0..BUFFER_WORDS {
        // SAFETY: as in `fill`; volatile so each pass really reads memory.
        let w = unsafe { base.add(i).read_volatile() };
        v.checksum = v.checksum.wrapping_add(w);
        if w != pattern(i) {
            v.bad_words += 1;
            v.first_bad.get_or_insert((i, w));
        }
    }
    v
}

fn victim(ram: Option<(u64, u64)>, max_seconds: u64) -> ! {
    println!(
        "Ferrovisor victim guest: guarding {} MiB of RAM at {:#x}",
        BUFFER_BYTES >> 20,
        buffer() as u64
    );
    if let Some((base, size)) = ram {
        println!("victim: my RAM is {base:#x}..{:#x}", base + size);
    }
    let checksum = fill();
    println!("victim: pattern written, checksum {checksum:#018x}");

    let max_ms = max_seconds * 1000;
    let mut passes = 0u64;
    let mut heartbeats = 0u64;
    let mut next_heartbeat = board::millis() + HEARTBEAT_MS;
    let mut quit_at: Option<u64> = None;
    let mut corrupted: Option<(usize, u64, usize)> = None;
    let mut checksum_ok = true;
    loop {
        let v = verify();
        passes += 1;
        if let (None, Some((i, w))) = (corrupted, v.first_bad) {
            println!(
                "victim: CORRUPTION in pass {passes}: {} word(s) differ, first word {i} at {:#x} holds {w:#018x}, expected {:#018x}",
                v.bad_words,
                buffer() as u64 + 8 * i as u64,
                pattern(i)
            );
            corrupted = Some((i, w, v.bad_words));
        }
        checksum_ok &= v.checksum == checksum;

        let now = board::millis();
        if quit_at.is_none() {
            while let Some(key) = board::getb() {
                if key == b'q' {
                    println!("victim: q received at {now} ms");
                    quit_at = Some(now);
                }
            }
        }
        if now >= next_heartbeat {
            heartbeats += 1;
            next_heartbeat = now + HEARTBEAT_MS;
            println!(
                "victim: heartbeat {heartbeats} at {now} ms: {passes} passes, {}",
                if corrupted.is_none() && checksum_ok {
                    "pattern intact"
                } else {
                    "PATTERN DAMAGED"
                }
            );
        }
        let quit_done = quit_at.is_some_and(|q| now >= q + AFTER_QUIT_MS);
        if (quit_done && now >= MIN_MS) || now >= max_ms {
            if !quit_done {
                println!("victim: no q within {max_seconds} s, stopping");
            }
            break;
        }
    }
    check!(
        "victim memory intact",
        corrupted.is_none() && checksum_ok,
        "after {passes} passes: first damage {corrupted:x?}, checksum still {checksum:#x}: {checksum_ok}"
    );
    finish()
}

/// The most rounds `role=rate` runs.
const MAX_ROUNDS: usize = 64;

/// A fixed amount of work touching nothing but registers: `n` SplitMix64 steps.
fn work(n: u64) -> u64 {
    let mut acc = 0u64;
    for i in 0..n {
        acc = acc.wrapping_add(pattern(core::hint::black_box(i) as usize));
    }
    core::hint::black_box(acc)
}

fn rate(args: &str) -> ! {
    let arg = |key: &str, default: u64| {
        fdt::bootarg(args, key)
            .and_then(|s| s.parse().ok())
            .unwrap_or(default)
    };
    let period_ms = arg("period_ms", 100);
    let rounds = (arg("rounds", 16) as usize).clamp(1, MAX_ROUNDS);
    let start_ms = arg("start_ms", 2000);
    println!("Ferrovisor victim guest: role=rate");
    // How much work makes a period: doubled until it takes a quarter period,
    // then scaled by the fastest of several tries (the host may be busy).
    let freq = board::cntfrq().max(1);
    let time = |n: u64| {
        let t0 = board::cntvct();
        work(n);
        board::cntvct() - t0
    };
    let mut n = 1u64 << 10;
    while time(n) * 4000 < period_ms * freq {
        n *= 2;
    }
    let best = (0..5).map(|_| time(n)).min().unwrap_or(1).max(1);
    let steps = (n * period_ms * freq / (best * 1000)).max(1);
    println!(
        "victim: rate: {rounds} rounds of {steps} steps (about {period_ms} ms) from {start_ms} ms"
    );
    while board::millis() < start_ms {}

    let mut quiet = [0u64; MAX_ROUNDS];
    let mut beat = [0u64; MAX_ROUNDS];
    let mut print = [0u64; MAX_ROUNDS];
    for r in 0..rounds {
        let t0 = board::cntvct();
        work(steps);
        let t1 = board::cntvct();
        println!("victim: heartbeat {r}: {steps} steps done since the last one, all well");
        let t2 = board::cntvct();
        work(steps);
        let t3 = board::cntvct();
        quiet[r] = t1 - t0;
        beat[r] = t3 - t1;
        print[r] = t2 - t1;
    }
    for r in 0..rounds {
        println!(
            "victim: rate round {r}: quiet {} ticks, with heartbeat {} ticks, the heartbeat {} ticks",
            quiet[r], beat[r], print[r]
        );
    }
    finish()
}

fn resetter(dtb: u64, tree_ok: bool, max_seconds: u64) -> ! {
    println!("Ferrovisor lifecycle guest: role=resetter");
    let marker = DATA_MARKER.load(Ordering::SeqCst);
    check!(
        "lifecycle: .data holds its load-time value (image reloaded)",
        marker == DATA_MARKER_INITIAL,
        "DATA_MARKER = {marker:#x}, initial {DATA_MARKER_INITIAL:#x}"
    );
    check!(
        "lifecycle: the device tree is whole (magic 0xd00dfeed)",
        tree_ok,
        "no device tree at {dtb:#x}"
    );
    let scratch = SCRATCH as *mut u64;
    // SAFETY: SCRATCH..+1 MiB is RAM of this VM that the runtime maps Normal and
    // nothing else in this guest uses.
    let dirty = (0..SCRATCH_WORDS).find(|&i| unsafe { scratch.add(i).read_volatile() } != 0);
    check!(
        "lifecycle: RAM outside the images reads zero (nothing of an earlier run)",
        dirty.is_none(),
        "word {dirty:?} of {SCRATCH:#x}..+1 MiB is not zero"
    );
    println!("lifecycle: command? r = PSCI SYSTEM_RESET, o = PSCI SYSTEM_OFF");
    let deadline = board::millis() + max_seconds * 1000;
    while board::millis() < deadline {
        match board::getb() {
            Some(b'r') => {
                // Leave traces a reload must undo.
                DATA_MARKER.store(DATA_MARKER_CHANGED, Ordering::SeqCst);
                for i in 0..SCRATCH_WORDS {
                    // SAFETY: as for the check above.
                    unsafe { scratch.add(i).write_volatile(SCRATCH_PATTERN | i as u64) };
                }
                if tree_ok {
                    // SAFETY: the tree's header is in this guest's RAM (checked by
                    // Fdt::at); the word is written only to be reset.
                    unsafe { (dtb as *mut u32).write_volatile(0) };
                }
                println!("lifecycle: PSCI SYSTEM_RESET");
                system_reset()
            }
            Some(b'o') => {
                println!("lifecycle: PSCI SYSTEM_OFF");
                finish()
            }
            _ => {}
        }
    }
    println!("lifecycle: no command within {max_seconds} s");
    finish()
}

/// SGIs sent per storm burst, and console lines per flood burst.
const STORM_SGIS: u32 = 2_000;
const FLOOD_LINES: u32 = 50;

/// `role=storm`: flood, SGI storm, reset, forever (see the module's doc).
fn storm(args: &str) -> ! {
    let reset_ms = fdt::bootarg(args, "reset_seconds")
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(10)
        * 1000;
    println!("storm: a life begins; SYSTEM_RESET in {} ms", reset_ms);
    gic::mask_irqs();
    gic::set_icc_sre(gic::icc_sre() | gic::ICC_SRE_SRE);
    gic::write32(
        gic::GICD_BASE + gic::GICD_CTLR,
        gic::GICD_CTLR_ARE | gic::GICD_CTLR_ENABLE_GRP1,
    );
    gic::gicd_wait_rwp(1_000_000);
    let sgi_base = gic::sgi_base(0);
    let rd = sgi_base - gic::GICR_SGI_BASE;
    gic::write32(
        rd + gic::GICR_WAKER,
        gic::read32(rd + gic::GICR_WAKER) & !gic::GICR_WAKER_PROCESSOR_SLEEP,
    );
    gic::write32(sgi_base + gic::GICR_IGROUPR0, 0xffff);
    gic::write32(sgi_base + gic::GICR_ISENABLER0, 0xffff);
    gic::set_icc_pmr(0xff);
    gic::set_icc_igrpen1(1);
    let start = board::millis();
    let (mut sgis, mut lines, mut burst) = (0u64, 0u64, 0u64);
    while board::millis() - start < reset_ms {
        burst += 1;
        for i in 0..FLOOD_LINES {
            println!("storm: flood {burst}.{i} ................................................");
        }
        lines += u64::from(FLOOD_LINES);
        for i in 0..STORM_SGIS {
            gic::icc_sgi1r(gic::sgi1r_to(i % 16, gic::mpidr()));
            if gic::isr_irq_pending() {
                let intid = gic::icc_iar1();
                if intid != gic::INTID_SPURIOUS {
                    gic::icc_eoir1(intid);
                    sgis += 1;
                }
            }
        }
    }
    println!(
        "storm: {sgis} SGIs taken, {lines} lines flooded in {burst} bursts; PSCI SYSTEM_RESET"
    );
    system_reset()
}
