//! berth-shim: the per-pod monitor. Parses flags, becomes a session leader
//! and a child subreaper, binds its socket, says "ready" on stdout, serves.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "berth-shim", version, about = "berth per-pod monitor")]
struct Flags {
    /// The shim's folder: container records, pid files, runtime logs.
    #[arg(long)]
    dir: PathBuf,
    /// The socket berthd talks to.
    #[arg(long)]
    socket: PathBuf,
    /// Log filter.
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn main() {
    if let Err(e) = run() {
        // One line with the whole chain: berthd quotes it.
        eprintln!("berth-shim: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let flags = Flags::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&flags.log_level).context("--log-level")?,
        )
        .with_writer(std::io::stderr)
        .init();
    // Outlive berthd: a session of our own, and every orphan of ours (a
    // container's init, once its runtime exits) becomes our child.
    let _ = nix::unistd::setsid();
    nix::sys::prctl::set_child_subreaper(true).context("PR_SET_CHILD_SUBREAPER")?;
    std::fs::create_dir_all(&flags.dir)
        .with_context(|| format!("shim folder {}", flags.dir.display()))?;
    let shim = berth_cri::shim::server::Shim::open(&flags.dir)?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        if flags.socket.exists() {
            std::fs::remove_file(&flags.socket).ok();
        }
        let listener = tokio::net::UnixListener::bind(&flags.socket)
            .with_context(|| format!("shim socket {}", flags.socket.display()))?;
        {
            use std::io::Write;
            let mut out = std::io::stdout();
            writeln!(out, "ready")?;
            out.flush()?;
        }
        tracing::info!(socket = %flags.socket.display(), "berth-shim serving");
        berth_cri::shim::server::serve(shim, listener).await?;
        let _ = std::fs::remove_file(&flags.socket);
        Ok(())
    })
}
