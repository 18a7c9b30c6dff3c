//! Fuzzes the host device-tree parser: `ferrovisor::fuzzing::device_tree`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ferrovisor::fuzzing::device_tree(data);
});
