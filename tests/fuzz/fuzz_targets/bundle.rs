//! Fuzzes the boot bundle (cpio newc) reader: `ferrovisor::fuzzing::bundle`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ferrovisor::fuzzing::bundle(data);
});
