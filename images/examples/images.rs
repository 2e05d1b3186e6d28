//! Stand-alone entry to the images CLI until berthd exposes
//! `berthd images ...`: `cargo run -p berth-images --example images -- pull busybox`.
fn main() -> std::process::ExitCode {
    berth_images::cli_main(std::env::args_os().skip(1))
}
