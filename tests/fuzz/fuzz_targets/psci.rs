//! Fuzzes guest PSCI/SMCCC calls: `ferrovisor::fuzzing::psci`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ferrovisor::fuzzing::psci(data);
});
