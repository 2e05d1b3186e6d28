//! berthd: the CRI runtime daemon (CLI edge only).

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("--version") | Some("version") => println!("berthd {}", env!("CARGO_PKG_VERSION")),
        _ => {
            eprintln!("berthd: the CRI server is not implemented yet (issue 5)");
            std::process::exit(1);
        }
    }
}
