//! The EL2 kernel binary. On the host this file builds to a stub so `cargo test` works.
#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("ferrovisor runs at EL2 on arm64: build it with `make`, run it with `make run`");
}
