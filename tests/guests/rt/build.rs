//! Puts the guest linker script where the final link of every guest finds it
//! (`-Tguest.ld` in .cargo/config.toml): the link search path of this crate's
//! OUT_DIR propagates to the binaries that depend on it.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::copy("guest.ld", out.join("guest.ld")).expect("copy guest.ld to OUT_DIR");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=guest.ld");
    println!("cargo:rerun-if-changed=build.rs");
}
