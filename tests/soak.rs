//! `make soak` (not part of `make test`): Linux and a hostile guest side by side
//! for `SOAK_MINUTES` (default 2) on `-cpu max` (boards/qemu-virt/soak.toml).
//!
//! The storm VM (tests/guests/victim, `role=storm`) floods its console, storms
//! its GIC with SGIs and resets its VM every few seconds, forever. Meanwhile the
//! harness has Linux do a fixed piece of shell work over and over and answer
//! with its uptime. At the end it reports Linux's progress (rounds answered, how
//! long each took in wall time, Linux's uptime) and the hypervisor's heap after
//! each of the storm VM's resets (the line the hypervisor logs on every reload),
//! and fails if Linux stopped answering, the hypervisor panicked, the storm VM
//! stopped resetting, or the heap grew from one reset to the last.

mod common;

use std::time::{Duration, Instant};

use common::hypervisor_args;

/// How long one round of Linux's work may take (wall time, loaded two-core host).
const ROUND_TIMEOUT: Duration = Duration::from_secs(300);
/// Linux's boot to its shell.
const BOOT_TIMEOUT: Duration = Duration::from_secs(600);
/// What the heap may differ by between the second reload and the last: none of
/// a reset's allocations may stay behind; a little slack for the allocator's
/// free-list layout.
const HEAP_SLACK: usize = 16 << 10;

fn minutes() -> u64 {
    std::env::var("SOAK_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(2)
}

/// The heap figures of "VM 'storm' reloaded; heap: N bytes in use" lines.
fn heap_after_resets(out: &str) -> Vec<usize> {
    out.lines()
        .filter(|l| l.contains("VM 'storm' reloaded; heap: "))
        .filter_map(|l| l.split("heap: ").nth(1)?.split(' ').next()?.parse().ok())
        .collect()
}

#[test]
#[ignore = "make soak runs it: minutes long"]
fn soak() {
    let minutes = minutes();
    let mut qemu = common::Interactive::start(&hypervisor_args("max", 4, "soak.cpio"));
    let shell = |out: &str| {
        out.lines()
            .any(|l| l.starts_with("(linux) ") && l.contains(":/# "))
    };
    let booted = qemu.wait_for(BOOT_TIMEOUT, shell);
    assert!(booted, "no Linux shell\n{}", qemu.finish().report());
    let start = Instant::now();
    let mut rounds: Vec<(Duration, String)> = Vec::new();
    while start.elapsed() < Duration::from_secs(60 * minutes) {
        let n = rounds.len() + 1;
        let sent = Instant::now();
        // A fixed piece of work (a shell loop), then the answer with Linux's uptime.
        qemu.send(
            format!(
                "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); done; \
                 echo soak-round-$(({n}*1)) up $(cut -d' ' -f1 /proc/uptime)\r"
            )
            .as_bytes(),
        );
        let tag = format!("(linux) soak-round-{n} up ");
        let answered = qemu.wait_for(ROUND_TIMEOUT, |o| o.contains(&tag));
        assert!(
            answered,
            "Linux stopped answering at round {n}\n{}",
            qemu.finish().report()
        );
        let out = qemu.output();
        let uptime = out
            .lines()
            .filter_map(|l| l.strip_prefix(&tag))
            .next()
            .unwrap_or("?")
            .to_string();
        rounds.push((sent.elapsed(), uptime));
    }
    let run = qemu.finish();
    let out = &run.output;
    let lives = out.matches("storm: a life begins").count();
    let heap = heap_after_resets(out);
    let sgis: u64 = out
        .lines()
        .filter_map(|l| {
            l.split("storm: ")
                .nth(1)?
                .split(" SGIs taken")
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    let flooded = out.lines().filter(|l| l.contains("storm: flood ")).count();
    let dropped = out.matches(" bytes dropped]").count();
    let times: Vec<f64> = rounds.iter().map(|(d, _)| d.as_secs_f64()).collect();
    let (min, max) = times
        .iter()
        .fold((f64::MAX, 0f64), |(a, b), &t| (a.min(t), b.max(t)));
    eprintln!("soak: {minutes} min on -cpu max");
    eprintln!(
        "soak: Linux (victim) answered {} rounds of shell work, {min:.1}..{max:.1} s each (wall), \
         its uptime at the last: {} s",
        rounds.len(),
        rounds.last().map_or("?", |(_, u)| u.as_str())
    );
    eprintln!(
        "soak: storm VM: {lives} lives ({} resets), {sgis} SGIs taken, {flooded} flood lines \
         shown, {dropped} drop markers",
        heap.len()
    );
    eprintln!("soak: hypervisor heap after each reset (bytes): {heap:?}");
    let report = run.report();
    assert!(!out.contains("PANIC"), "the hypervisor panicked\n{report}");
    assert!(
        !out.contains("(linux) Kernel panic") && !out.contains("(linux) Internal error"),
        "Linux crashed\n{report}"
    );
    assert!(rounds.len() >= 2, "Linux made no progress\n{report}");
    assert!(
        heap.len() >= 2,
        "the storm VM did not keep resetting: {} reloads\n{report}",
        heap.len()
    );
    let (second, last) = (heap[1], heap[heap.len() - 1]);
    assert!(
        last <= second + HEAP_SLACK,
        "the heap grew over the resets: {heap:?}\n{report}"
    );
}
