//! fvconfig: check a Ferrovisor config and pack its boot bundle (host tool; being written).
fn main() {
    eprintln!("fvconfig: not yet written");
    std::process::exit(2);
}
