//! Fuzzes guest MMIO accesses to the vGIC and the PL011: `ferrovisor::fuzzing::mmio`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ferrovisor::fuzzing::mmio(data);
});
