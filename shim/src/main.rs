//! berth-shim, the lean build (see Cargo.toml): the same main as berth-cri's
//! `berth-shim` binary.

fn main() {
    berth_shim::cli::main()
}
