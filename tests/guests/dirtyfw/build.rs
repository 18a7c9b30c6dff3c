//! This program runs at EL2 before the hypervisor and does not use the guest
//! runtime: it brings its own link script under the name the workspace's
//! `-Tguest.ld` asks for.
use std::{env, fs, path::PathBuf};

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::copy("dirtyfw.ld", out.join("guest.ld")).expect("copy dirtyfw.ld to OUT_DIR");
    println!("cargo:rustc-link-search={}", out.display());
    println!("cargo:rerun-if-changed=dirtyfw.ld");
    println!("cargo:rerun-if-changed=build.rs");
}
