//! berth-shim: the per-pod monitor (CLI edge only).

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("--version") | Some("version") => println!("berth-shim {}", env!("CARGO_PKG_VERSION")),
        _ => {
            eprintln!("berth-shim: not implemented yet (issue 5)");
            std::process::exit(1);
        }
    }
}
