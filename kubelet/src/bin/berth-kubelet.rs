//! berth-kubelet: the node agent (CLI edge only).

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("--version") | Some("version") => {
            println!("berth-kubelet {}", env!("CARGO_PKG_VERSION"))
        }
        _ => {
            eprintln!("berth-kubelet: not implemented yet (issue 7)");
            std::process::exit(1);
        }
    }
}
