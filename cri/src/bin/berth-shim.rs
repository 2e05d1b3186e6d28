//! berth-shim: the per-pod monitor (the `berth-shim` crate's logic). Built
//! here so berthd's tests find it next to berthd; `hack/build.sh` installs
//! the same code built from the `berth-shim` package instead: statically
//! linked against musl and optimized for size (see shim/Cargo.toml).

fn main() {
    berth_shim::cli::main()
}
