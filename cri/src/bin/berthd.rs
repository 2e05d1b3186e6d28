//! berthd: the CRI runtime daemon. Parses flags, loads the config, serves.
//! `berthd images ...` is the node's image CLI (pull, list, inspect, rm,
//! prune, df, import, export) on the same store.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use berth_cri::config::{Config, DEFAULT_CONFIG_PATH};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "berthd", version, about = "berth CRI runtime daemon")]
struct Flags {
    /// TOML configuration file.
    #[arg(long, env = "BERTHD_CONFIG")]
    config: Option<PathBuf>,
    /// CRI socket (overrides `socket`).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Durable state folder (overrides `root_dir`).
    #[arg(long)]
    root: Option<PathBuf>,
    /// Runtime state folder (overrides `state_dir`).
    #[arg(long)]
    state: Option<PathBuf>,
    /// CNI network config folder (overrides `cni_conf_dir`).
    #[arg(long)]
    cni_conf_dir: Option<PathBuf>,
    /// Log filter, e.g. `info` or `berth_cri=debug`.
    #[arg(long, default_value = "info", env = "BERTHD_LOG")]
    log_level: String,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
}

fn load(flags: &Flags) -> anyhow::Result<Config> {
    let (path, explicit) = match &flags.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
    };
    let mut cfg = Config::load(&path, explicit)?;
    if let Some(p) = &flags.socket {
        cfg.socket = p.clone();
    }
    if let Some(p) = &flags.root {
        cfg.root_dir = p.clone();
    }
    if let Some(p) = &flags.state {
        cfg.state_dir = p.clone();
    }
    if let Some(p) = &flags.cni_conf_dir {
        cfg.cni_conf_dir = p.clone();
    }
    cfg.validate().map_err(|m| anyhow::anyhow!("config: {m}"))?;
    Ok(cfg)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("shutting down");
}

fn main() -> std::process::ExitCode {
    let mut args = std::env::args_os();
    if args.nth(1).is_some_and(|a| a == "images") {
        // The images CLI runs its own runtime.
        return berth_images::cli_main(args);
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berthd: tokio runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berthd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve() -> anyhow::Result<()> {
    let flags = Flags::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&flags.log_level).context("--log-level")?;
    let fmt = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if flags.log_json {
        fmt.json().init();
    } else {
        fmt.init();
    }
    let cfg = Arc::new(load(&flags)?);
    let listener = berth_cri::server::bind(&cfg.socket)?;
    tracing::info!(socket = %cfg.socket.display(), "berthd serving CRI");
    berth_cri::server::serve(cfg, listener, shutdown_signal())
        .await
        .context("serving CRI")?;
    Ok(())
}
