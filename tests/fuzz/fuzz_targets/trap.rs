//! Fuzzes the exception syndrome decoder, the emulated load and the MMIO bus claim:
//! `ferrovisor::fuzzing::trap`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ferrovisor::fuzzing::trap(data);
});
