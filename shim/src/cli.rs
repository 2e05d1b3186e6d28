//! The `berth-shim` binary's main: parses flags, becomes a session leader
//! and a child subreaper, binds its socket, says "ready" on stdout, serves.
//!
//! One monitor runs per pod, so it stays small: no async runtime, no flag or
//! log framework (each would add code that is mapped, and counted, in every
//! pod's monitor), only std and the [`crate::server`] poll loop.

use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;

const USAGE: &str = "usage: berth-shim --dir <folder> --socket <path>";

/// Run the monitor; exits the process on error.
pub fn main() {
    if let Err(e) = run() {
        // One line: berthd quotes it.
        eprintln!("berth-shim: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let (mut dir, mut socket) = (None, None);
    let mut args = std::env::args_os().skip(1);
    while let Some(a) = args.next() {
        let a = a.to_string_lossy().into_owned();
        let (flag, inline) = match a.split_once('=') {
            Some((f, v)) => (f.to_owned(), Some(PathBuf::from(v))),
            None => (a.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| args.next().map(PathBuf::from))
                .ok_or_else(|| format!("{flag} needs a value; {USAGE}"))
        };
        match flag.as_str() {
            "--dir" => dir = Some(value()?),
            "--socket" => socket = Some(value()?),
            // Accepted for older callers; the shim logs lifecycle events only.
            "--log-level" => drop(value()?),
            "--version" | "-V" => {
                println!("berth-shim {}", env!("CARGO_PKG_VERSION"));
                return Ok(());
            }
            "--help" | "-h" => {
                println!("{USAGE}");
                return Ok(());
            }
            other => return Err(format!("unknown argument {other:?}; {USAGE}")),
        }
    }
    let (Some(dir), Some(socket)) = (dir, socket) else {
        return Err(USAGE.to_owned());
    };
    // Outlive berthd: a session of our own, and every orphan of ours (a
    // container's init, once its runtime exits) becomes our child.
    let _ = nix::unistd::setsid();
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| format!("PR_SET_CHILD_SUBREAPER: {e}"))?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("shim folder {}: {e}", dir.display()))?;
    let shim = crate::server::Shim::open(&dir, &socket).map_err(|e| e.to_string())?;
    if socket.exists() {
        let _ = std::fs::remove_file(&socket);
    }
    let listener = UnixListener::bind(&socket)
        .map_err(|e| format!("shim socket {}: {e}", socket.display()))?;
    let mut out = std::io::stdout();
    writeln!(out, "ready")
        .and_then(|()| out.flush())
        .map_err(|e| format!("ready: {e}"))?;
    shim.serve(listener).map_err(|e| format!("serve: {e}"))?;
    let _ = std::fs::remove_file(&socket);
    Ok(())
}
