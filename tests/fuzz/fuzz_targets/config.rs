//! Fuzzes the config parser and its checks against QEMU virt:
//! `ferrovisor::fuzzing::config`.
#![no_main]

use std::sync::OnceLock;

use ferrovisor::config::HostFacts;

static HOST: OnceLock<HostFacts> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let host = HOST.get_or_init(ferrovisor::fuzzing::qemu_virt_facts);
    let _ = ferrovisor::fuzzing::config(data, host);
});
