//! berth-runc: a runc-compatible OCI runtime (CLI edge only).

fn main() {
    let mut args = std::env::args().skip(1);
    match args.next().as_deref() {
        Some("--version") | Some("-v") | Some("version") => {
            println!("berth-runc version {}", env!("CARGO_PKG_VERSION"));
            println!("spec: 1.2.1");
        }
        _ => {
            eprintln!("berth-runc: no command implemented yet");
            std::process::exit(1);
        }
    }
}
