//! Fuzzes the kernel image (arm64 Image, ELF, raw) loader's planning:
//! `ferrovisor::fuzzing::kernel_image`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = ferrovisor::fuzzing::kernel_image(data);
});
