//! `berthd images ...`: a person's way into the image store berthd uses.
//! Parses flags, builds the store, runs one command, prints the result.
//! The binary that exposes it only calls [`cli_main`].

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};

use crate::registry::auth::{AuthConfig, Credentials};
use crate::registry::hosts::HostsDir;
use crate::{Digest, ImageRef, ImageStore, Platform, Progress, StoreOptions};

#[derive(Parser, Debug)]
#[command(
    name = "images",
    about = "Pull, list, inspect and remove images in berth's store"
)]
struct Cli {
    /// The image store (shared with berthd).
    #[arg(
        long,
        env = "BERTH_IMAGES_ROOT",
        default_value = "/var/lib/berth/images"
    )]
    root: PathBuf,
    /// containerd-style certs.d folder with <host>/hosts.toml mirrors and CAs.
    #[arg(
        long,
        env = "BERTH_HOSTS_DIR",
        default_value = "/etc/containerd/certs.d"
    )]
    hosts_dir: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Pull an image for this host's platform (or --platform).
    Pull {
        reference: String,
        #[arg(long)]
        platform: Option<String>,
        /// Registry host to reach over plain http (repeatable).
        #[arg(long = "plain-http")]
        plain_http: Vec<String>,
        /// user:password for the image's registry.
        #[arg(long)]
        creds: Option<String>,
        /// docker-style config.json with credentials and credential
        /// helpers (default: $DOCKER_CONFIG/config.json, else
        /// ~/.docker/config.json).
        #[arg(long, env = "REGISTRY_AUTH_FILE")]
        authfile: Option<PathBuf>,
        /// Layers fetched at once.
        #[arg(long, default_value_t = 4)]
        parallel: usize,
        /// Skip syncfs before committing snapshots (faster, less crash-safe).
        #[arg(long)]
        no_sync: bool,
        #[arg(long, short)]
        quiet: bool,
    },
    /// List images.
    #[command(alias = "ls")]
    List,
    /// Show one image's record as JSON.
    Inspect { reference: String },
    /// Remove images (names, ids or id prefixes); space returns with prune.
    Rm { references: Vec<String> },
    /// Delete blobs and snapshots no image uses.
    Prune,
    /// Import an OCI archive (oci-archive tar) or a `docker save` tarball
    /// (any Docker version); NAME names entries that carry no name.
    Import {
        archive: PathBuf,
        name: Option<String>,
    },
    /// Export an image as an OCI archive.
    Export { reference: String, archive: PathBuf },
    /// Disk usage of blobs and snapshots.
    Df,
}

/// Runs `images <args>` (args without the program name) and reports errors
/// with their whole chain.
pub fn cli_main<I, S>(args: I) -> ExitCode
where
    I: IntoIterator<Item = S>,
    S: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(
        std::iter::once("images".into()).chain(args.into_iter().map(Into::into)),
    ) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<(), String> {
    let chain = |e: &dyn std::error::Error| crate::registry::chain(e);
    let mut opts = StoreOptions::new(&cli.root);
    opts.registry.hosts = HostsDir {
        dir: cli.hosts_dir.is_dir().then(|| cli.hosts_dir.clone()),
        plain_http: vec![],
    };
    match cli.cmd {
        Cmd::Pull {
            reference,
            platform,
            plain_http,
            creds,
            authfile,
            parallel,
            no_sync,
            quiet,
        } => {
            let r = ImageRef::parse(&reference).map_err(|e| chain(&e))?;
            if let Some(p) = platform {
                opts.platform = Platform::parse(&p)
                    .ok_or(format!("invalid platform {p:?} (want os/arch[/variant])"))?;
            }
            opts.registry.hosts.plain_http = plain_http;
            let mut c = match authfile.or_else(default_docker_config) {
                Some(p) if p.exists() => {
                    Credentials::from_docker_config(&p).map_err(|e| chain(&e))?
                }
                _ => Credentials::default(),
            };
            c.fill_from_helper(r.domain()).map_err(|e| chain(&e))?;
            if let Some(up) = creds {
                let (u, p) = up.split_once(':').ok_or("--creds wants user:password")?;
                c.insert(r.domain(), AuthConfig::basic(u, p));
            }
            opts.registry.credentials = c;
            opts.parallel = parallel;
            opts.sync = !no_sync;
            let store = ImageStore::open(opts).map_err(|e| chain(&e))?;
            let display = Arc::new(Display::new(quiet));
            let ticker = display.clone();
            let tick = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    ticker.draw(false);
                }
            });
            let res = store.pull(&r, Some(display.clone())).await;
            tick.abort();
            display.draw(true);
            let rec = res.map_err(|e| chain(&e))?;
            let secs = display.start.elapsed().as_secs_f64();
            if !quiet {
                eprintln!(
                    "pulled {} ({} layers, {:.1} MB) in {secs:.2}s",
                    r,
                    rec.layers.len(),
                    rec.size as f64 / 1e6
                );
            }
            println!("{}", rec.id);
            Ok(())
        }
        Cmd::List => {
            let store = ImageStore::open(opts).map_err(|e| chain(&e))?;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{:<60} {:<14} {:>10}", "NAME", "ID", "SIZE");
            for i in store.list().map_err(|e| chain(&e))? {
                let names = if i.names.is_empty() {
                    vec!["<none>".to_owned()]
                } else {
                    i.names.clone()
                };
                for n in names {
                    let _ = writeln!(
                        out,
                        "{:<60} {:<14} {:>8.1}MB",
                        n,
                        &i.id.hex()[..12],
                        i.size as f64 / 1e6
                    );
                }
            }
            Ok(())
        }
        Cmd::Inspect { reference } => {
            let store = ImageStore::open(opts).map_err(|e| chain(&e))?;
            let rec = store
                .get(&reference)
                .map_err(|e| chain(&e))?
                .ok_or(format!("image {reference}: not found"))?;
            println!(
                "{}",
                serde_json::to_string_pretty(&rec).map_err(|e| e.to_string())?
            );
            Ok(())
        }
        Cmd::Rm { references } => {
            let store = ImageStore::open(opts).map_err(|e| chain(&e))?;
            let mut failed = vec![];
            for r in references {
                match store.remove(&r) {
                    Ok(rec) => println!("removed {} ({})", r, rec.id),
                    Err(e) => failed.push(chain(&e)),
                }
            }
            if failed.is_empty() {
                Ok(())
            } else {
                Err(failed.join("; "))
            }
        }
        Cmd::Prune => {
            let store = ImageStore::open(opts).map_err(|e| chain(&e))?;
            let freed = store.gc().await.map_err(|e| chain(&e))?;
            println!("freed {:.1} MB", freed as f64 / 1e6);
            Ok(())
        }
        Cmd::Import { archive, name } => {
            let name = name
                .map(|n| ImageRef::parse_named(&n))
                .transpose()
                .map_err(|e| chain(&e))?;
            let store = ImageStore::open(opts).map_err(|e| chain(&e))?;
            for rec in store
                .import_oci_archive(&archive, name.as_ref())
                .await
                .map_err(|e| chain(&e))?
            {
                println!("imported {} {}", rec.names.join(","), rec.id);
            }
            Ok(())
        }
        Cmd::Export { reference, archive } => {
            let store = ImageStore::open(opts).map_err(|e| chain(&e))?;
            let rec = store
                .get(&reference)
                .map_err(|e| chain(&e))?
                .ok_or(format!("image {reference}: not found"))?;
            let name = rec
                .names
                .first()
                .and_then(|n| ImageRef::parse(n).ok())
                .or_else(|| ImageRef::parse(&reference).ok())
                .ok_or(format!("image {reference}: no name to export it under"))?;
            store
                .export_oci_archive(&rec, &name, &archive)
                .await
                .map_err(|e| chain(&e))?;
            println!("exported {name} to {}", archive.display());
            Ok(())
        }
        Cmd::Df => {
            let store = ImageStore::open(opts).map_err(|e| chain(&e))?;
            let (blobs, snaps) = store.usage();
            println!("blobs      {:>10.1} MB", blobs as f64 / 1e6);
            println!("snapshots  {:>10.1} MB", snaps as f64 / 1e6);
            Ok(())
        }
    }
}

/// Per-layer bytes, speed and total, redrawn in place on a terminal and
/// as occasional plain lines otherwise.
struct Display {
    quiet: bool,
    tty: bool,
    start: Instant,
    state: Mutex<DisplayState>,
}

#[derive(Default)]
struct DisplayState {
    layers: Vec<(Digest, u64, u64, &'static str)>,
    drawn_lines: usize,
    last_plain: Option<Instant>,
}

impl Display {
    fn new(quiet: bool) -> Display {
        Display {
            quiet,
            tty: std::io::stderr().is_terminal(),
            start: Instant::now(),
            state: Mutex::default(),
        }
    }

    fn draw(&self, last: bool) {
        if self.quiet {
            return;
        }
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let secs = self.start.elapsed().as_secs_f64().max(0.001);
        let done: u64 = st.layers.iter().map(|l| l.1).sum();
        let total: u64 = st.layers.iter().map(|l| l.2).sum();
        let mut lines = Vec::new();
        for (d, got, size, status) in &st.layers {
            lines.push(format!(
                "{}  {:>8}  {:>7.1}/{:<7.1} MB",
                &d.hex()[..12],
                status,
                *got as f64 / 1e6,
                *size as f64 / 1e6
            ));
        }
        lines.push(format!(
            "total {:.1}/{:.1} MB  {:.1} MB/s  {:.1}s",
            done as f64 / 1e6,
            total as f64 / 1e6,
            done as f64 / 1e6 / secs,
            secs
        ));
        let mut err = std::io::stderr().lock();
        if self.tty {
            if st.drawn_lines > 0 {
                let _ = write!(err, "\x1b[{}A", st.drawn_lines);
            }
            for l in &lines {
                let _ = writeln!(err, "\x1b[2K{l}");
            }
            st.drawn_lines = lines.len();
        } else if last
            || st
                .last_plain
                .is_none_or(|t| t.elapsed() > Duration::from_secs(5))
        {
            if let Some(l) = lines.last() {
                let _ = writeln!(err, "{l}");
            }
            st.last_plain = Some(Instant::now());
        }
    }

    fn entry<'a>(st: &'a mut DisplayState, d: &Digest) -> &'a mut (Digest, u64, u64, &'static str) {
        let i = match st.layers.iter().position(|l| &l.0 == d) {
            Some(i) => i,
            None => {
                st.layers.push((d.clone(), 0, 0, "waiting"));
                st.layers.len() - 1
            }
        };
        &mut st.layers[i]
    }
}

impl Progress for Display {
    fn layer(&self, digest: &Digest, done: u64, total: u64) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let e = Display::entry(&mut st, digest);
        e.1 = done;
        e.2 = total;
        e.3 = "pulling";
    }
    fn layer_done(&self, digest: &Digest, cached: bool) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let e = Display::entry(&mut st, digest);
        e.3 = if cached { "exists" } else { "done" };
    }
}

/// Where docker keeps `config.json`: `$DOCKER_CONFIG`, else `~/.docker`.
fn default_docker_config() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(d).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_commands() {
        let c = Cli::try_parse_from([
            "images",
            "--root",
            "/x",
            "pull",
            "--platform",
            "linux/arm64",
            "busybox",
        ])
        .unwrap();
        assert!(matches!(c.cmd, Cmd::Pull { ref reference, .. } if reference == "busybox"));
        assert!(Cli::try_parse_from(["images", "bogus"]).is_err());
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_str().unwrap();
        assert_eq!(
            cli_main(["--root", root, "inspect", "nothing:here"]),
            ExitCode::FAILURE
        );
        assert_eq!(cli_main(["--root", root, "list"]), ExitCode::SUCCESS);
    }
}
