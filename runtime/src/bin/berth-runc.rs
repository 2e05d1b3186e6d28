//! berth-runc: a runc-compatible OCI runtime. This file only parses flags
//! and calls `berth_runtime::ops`.

use std::io::Write;
use std::path::PathBuf;

use berth_runtime::ops::{CreateOpts, ListFormat, RunOpts, Runtime, UpdateFlags};
use berth_runtime::{ContainerId, Error, log, process, signal};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "berth-runc", version, about = "A runc-compatible OCI runtime")]
struct Cli {
    /// Root directory for container state.
    #[arg(long, global = true, default_value = "/run/berth-runc")]
    root: PathBuf,
    /// Log file (default: stderr).
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long, global = true, default_value = "text")]
    log_format: String,
    #[arg(long, global = true)]
    debug: bool,
    /// Accepted for compatibility; cgroups are managed through cgroupfs.
    #[arg(long, global = true)]
    systemd_cgroup: bool,
    /// auto|true|false; for `spec`, a rootless config.
    #[arg(long, global = true, num_args = 0..=1, default_missing_value = "true")]
    rootless: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args)]
struct CreateArgs {
    #[arg(long, short = 'b', default_value = ".")]
    bundle: PathBuf,
    #[arg(long)]
    console_socket: Option<PathBuf>,
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Send a pidfd of the container's init over this unix socket.
    #[arg(long)]
    pidfd_socket: Option<PathBuf>,
    #[arg(long)]
    no_pivot: bool,
    #[arg(long)]
    no_new_keyring: bool,
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
    id: String,
}

impl CreateArgs {
    fn opts(&self) -> CreateOpts {
        CreateOpts {
            bundle: self.bundle.clone(),
            pid_file: self.pid_file.clone(),
            console_socket: self.console_socket.clone(),
            pidfd_socket: self.pidfd_socket.clone(),
            no_pivot: self.no_pivot,
            no_new_keyring: self.no_new_keyring,
            preserve_fds: self.preserve_fds,
        }
    }
}

#[derive(clap::Args)]
struct CheckpointArgs {
    /// Where CRIU writes the images.
    #[arg(long, default_value = "checkpoint")]
    image_path: PathBuf,
    /// CRIU's log and work files (default: the image path).
    #[arg(long)]
    work_path: Option<PathBuf>,
    #[arg(long)]
    leave_running: bool,
    #[arg(long)]
    tcp_established: bool,
    #[arg(long)]
    ext_unix_sk: bool,
    #[arg(long)]
    shell_job: bool,
    #[arg(long)]
    file_locks: bool,
    #[arg(long)]
    manage_cgroups_mode: Option<String>,
    id: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a container (its init waits for `start`).
    Create(CreateArgs),
    /// Start a created container.
    Start { id: String },
    /// Create and start a container.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        #[arg(long, short = 'd')]
        detach: bool,
        #[arg(long)]
        keep: bool,
    },
    /// Run a process in a created or running container.
    Exec(Box<ExecArgs>),
    /// Print a container's state as JSON.
    State { id: String },
    /// Send a signal to the container's init (or all its processes).
    Kill {
        #[arg(long, short = 'a')]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container's resources.
    Delete {
        #[arg(long, short = 'f')]
        force: bool,
        id: String,
    },
    /// List containers.
    List {
        #[arg(long, short = 'f', default_value = "table")]
        format: String,
        #[arg(long, short = 'q')]
        quiet: bool,
    },
    /// Show the processes of a container.
    Ps {
        #[arg(long, short = 'f', default_value = "table")]
        format: String,
        id: String,
        /// Arguments for ps(1) in table format.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Freeze all processes of a container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Change a running container's resources.
    Update(Box<UpdateArgs>),
    /// Container stats (`--stats` once, else every `--interval`).
    Events {
        #[arg(long)]
        stats: bool,
        #[arg(long, default_value = "5s")]
        interval: String,
        id: String,
    },
    /// Dump a running container with CRIU (`criu` from PATH).
    Checkpoint(CheckpointArgs),
    /// Write a default config.json.
    Spec {
        #[arg(long, short = 'b', default_value = ".")]
        bundle: PathBuf,
    },
    /// Print the runtime's features as JSON.
    Features,
}

#[derive(clap::Args)]
struct ExecArgs {
    #[arg(long)]
    console_socket: Option<PathBuf>,
    #[arg(long)]
    cwd: Option<String>,
    #[arg(long, short = 'e')]
    env: Vec<String>,
    #[arg(long, short = 't')]
    tty: bool,
    /// uid[:gid] (numeric)
    #[arg(long, short = 'u')]
    user: Option<String>,
    #[arg(long, short = 'g')]
    additional_gids: Vec<u32>,
    /// A process JSON (the `process` object of config.json).
    #[arg(long, short = 'p')]
    process: Option<PathBuf>,
    #[arg(long, short = 'd')]
    detach: bool,
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Send a pidfd of the new process over this unix socket.
    #[arg(long)]
    pidfd_socket: Option<PathBuf>,
    #[arg(long)]
    no_new_privs: bool,
    #[arg(long, short = 'c')]
    cap: Vec<String>,
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
    /// SELinux label for the process (the container's by default).
    #[arg(long)]
    process_label: Option<String>,
    /// AppArmor profile for the process (the container's by default).
    #[arg(long)]
    apparmor: Option<String>,
    id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(clap::Args)]
struct UpdateArgs {
    /// Resources JSON file ("-" for stdin).
    #[arg(long, short = 'r')]
    resources: Option<PathBuf>,
    #[arg(long)]
    memory: Option<String>,
    #[arg(long)]
    memory_swap: Option<String>,
    #[arg(long)]
    memory_reservation: Option<String>,
    #[arg(long = "cpu-share")]
    cpu_share: Option<u64>,
    #[arg(long)]
    cpu_quota: Option<i64>,
    #[arg(long)]
    cpu_period: Option<u64>,
    #[arg(long)]
    cpu_burst: Option<u64>,
    #[arg(long)]
    cpu_idle: Option<i64>,
    #[arg(long)]
    cpuset_cpus: Option<String>,
    #[arg(long)]
    cpuset_mems: Option<String>,
    #[arg(long)]
    pids_limit: Option<i64>,
    #[arg(long)]
    blkio_weight: Option<u16>,
    id: String,
}

fn main() {
    let cli = Cli::parse();
    log::init(cli.log.as_deref(), cli.log_format == "json", cli.debug);
    // Commands whose processes enter a container run from a sealed copy of
    // this binary (CVE-2019-5736). Off only for measuring its cost.
    let enters = matches!(cli.cmd, Cmd::Create(_) | Cmd::Run { .. } | Cmd::Exec(_));
    if enters
        && std::env::var_os("BERTH_RUNC_UNSEALED_FOR_BENCHMARK").is_none()
        && let Err(e) = berth_runtime::sys::exe::ensure_sealed(&cli.root.join(".exe-lower"))
    {
        log::error(&format!(
            "re-exec from a sealed copy of the runtime binary: {e}"
        ));
        std::process::exit(1);
    }

    match run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            log::error(&process::chain(&e));
            std::process::exit(1);
        }
    }
}

fn id(s: &str) -> Result<ContainerId, Error> {
    Ok(ContainerId::parse(s)?)
}

/// "512", "64k", "100m", "1g" (runc's RAMInBytes); "-1" for unlimited.
fn size(s: &str) -> Result<i64, Error> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    num.parse::<i64>()
        .map(|n| if n < 0 { n } else { n * mult })
        .map_err(|_| Error::Usage(format!("invalid size {s:?}")))
}

fn duration(s: &str) -> Result<std::time::Duration, Error> {
    let bad = || Error::Usage(format!("invalid duration {s:?}"));
    let (n, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| (&s[..i], &s[i..]));
    let n: u64 = n.parse().map_err(|_| bad())?;
    Ok(match unit {
        "ms" => std::time::Duration::from_millis(n),
        "s" => std::time::Duration::from_secs(n),
        "m" => std::time::Duration::from_secs(n * 60),
        _ => return Err(bad()),
    })
}

fn run(cli: Cli) -> Result<i32, Error> {
    let rt = Runtime::new(cli.root.clone(), cli.systemd_cgroup);
    let mut out = std::io::stdout().lock();
    let w = |e: std::io::Error| Error::Usage(format!("write stdout: {e}"));
    match cli.cmd {
        Cmd::Create(a) => rt.create(&id(&a.id)?, &a.opts())?,
        Cmd::Start { id: i } => rt.start(&id(&i)?)?,
        Cmd::Run {
            create,
            detach,
            keep,
        } => {
            let o = RunOpts {
                create: create.opts(),
                detach,
                keep,
            };
            return rt.run(&id(&create.id)?, &o);
        }
        Cmd::Exec(a) => {
            let o = berth_runtime::ops::ExecOpts {
                process_json: a.process.clone(),
                args: a.command.clone(),
                env: a.env.clone(),
                cwd: a.cwd.clone(),
                user: a.user.clone(),
                additional_gids: a.additional_gids.clone(),
                caps: a.cap.clone(),
                tty: a.tty,
                no_new_privs: a.no_new_privs,
                detach: a.detach,
                pid_file: a.pid_file.clone(),
                pidfd_socket: a.pidfd_socket.clone(),
                console_socket: a.console_socket.clone(),
                preserve_fds: a.preserve_fds,
                apparmor: a.apparmor.clone(),
                process_label: a.process_label.clone(),
            };
            return rt.exec(&id(&a.id)?, &o);
        }
        Cmd::State { id: i } => {
            let s = rt.state(&id(&i)?)?;
            writeln!(out, "{}", serde_json::to_string_pretty(&s).expect("json")).map_err(w)?;
        }
        Cmd::Kill {
            all,
            id: i,
            signal: s,
        } => {
            let sig = signal::parse(&s).map_err(|e| Error::Usage(e.to_string()))?;
            rt.kill(&id(&i)?, sig, all)?;
        }
        Cmd::Delete { force, id: i } => rt.delete(&id(&i)?, force)?,
        Cmd::List { format, quiet } => {
            let f = match format.as_str() {
                "table" => ListFormat::Table,
                "json" => ListFormat::Json,
                o => {
                    return Err(Error::Usage(format!(
                        "invalid format {o:?} (table or json)"
                    )));
                }
            };
            rt.list(f, quiet, &mut out)?;
        }
        Cmd::Ps {
            format,
            id: i,
            ps_args,
        } => {
            let pids = rt.pids(&id(&i)?)?;
            match format.as_str() {
                "json" => {
                    writeln!(out, "{}", serde_json::to_string(&pids).expect("json")).map_err(w)?
                }
                "table" => ps_table(&pids, &ps_args, &mut out)?,
                o => {
                    return Err(Error::Usage(format!(
                        "invalid format {o:?} (table or json)"
                    )));
                }
            }
        }
        Cmd::Checkpoint(a) => rt.checkpoint(
            &id(&a.id)?,
            &berth_runtime::ops::CheckpointOpts {
                image_path: a.image_path,
                work_path: a.work_path,
                leave_running: a.leave_running,
                tcp_established: a.tcp_established,
                ext_unix_sk: a.ext_unix_sk,
                shell_job: a.shell_job,
                file_locks: a.file_locks,
                manage_cgroups_mode: a.manage_cgroups_mode,
                criu: None,
            },
        )?,
        Cmd::Pause { id: i } => rt.pause(&id(&i)?)?,
        Cmd::Resume { id: i } => rt.resume(&id(&i)?)?,
        Cmd::Update(a) => {
            let r = match &a.resources {
                None => Default::default(),
                Some(p) => {
                    let bytes = if p.as_os_str() == "-" {
                        let mut b = Vec::new();
                        std::io::Read::read_to_end(&mut std::io::stdin(), &mut b).map(|_| b)
                    } else {
                        std::fs::read(p)
                    }
                    .map_err(|e| Error::Usage(format!("read {}: {e}", p.display())))?;
                    berth_runtime::config::parse_json("resources", &bytes)?
                }
            };
            let flags = UpdateFlags {
                memory: a.memory.as_deref().map(size).transpose()?,
                memory_swap: a.memory_swap.as_deref().map(size).transpose()?,
                memory_reservation: a.memory_reservation.as_deref().map(size).transpose()?,
                cpu_shares: a.cpu_share,
                cpu_quota: a.cpu_quota,
                cpu_period: a.cpu_period,
                cpu_burst: a.cpu_burst,
                cpu_idle: a.cpu_idle,
                cpuset_cpus: a.cpuset_cpus.clone(),
                cpuset_mems: a.cpuset_mems.clone(),
                pids_limit: a.pids_limit,
                blkio_weight: a.blkio_weight,
            };
            rt.update(&id(&a.id)?, r, &flags)?;
        }
        Cmd::Events {
            stats,
            interval,
            id: i,
        } => {
            let cid = id(&i)?;
            let every = duration(&interval)?;
            loop {
                let s = rt.stats(&cid)?;
                writeln!(out, "{s}").map_err(w)?;
                out.flush().map_err(w)?;
                if stats {
                    break;
                }
                std::thread::sleep(every);
            }
        }
        Cmd::Spec { bundle } => {
            let rootless = cli.rootless.as_deref() == Some("true");
            let p = bundle.join("config.json");
            if p.exists() {
                return Err(Error::Usage(format!(
                    "File {} exists. Remove it first",
                    p.display()
                )));
            }
            let v = berth_runtime::config::default::spec(rootless);
            std::fs::write(&p, serde_json::to_string_pretty(&v).expect("json") + "\n")
                .map_err(|e| Error::Usage(format!("write {}: {e}", p.display())))?;
        }
        Cmd::Features => {
            let v = berth_runtime::features::features();
            writeln!(out, "{}", serde_json::to_string_pretty(&v).expect("json")).map_err(w)?;
        }
    }
    Ok(0)
}

/// `ps` output (with the caller's ps arguments) filtered to the container's pids.
fn ps_table(pids: &[i32], args: &[String], out: &mut dyn Write) -> Result<(), Error> {
    let args: Vec<String> = if args.is_empty() {
        vec!["-ef".into()]
    } else {
        args.to_vec()
    };
    let o = std::process::Command::new("ps")
        .args(&args)
        .output()
        .map_err(|e| Error::Usage(format!("run ps: {e}")))?;
    let text = String::from_utf8_lossy(&o.stdout);
    let mut lines = text.lines();
    let Some(head) = lines.next() else {
        return Ok(());
    };
    let col = head
        .split_whitespace()
        .position(|c| c == "PID")
        .ok_or_else(|| Error::Usage("ps output has no PID column".into()))?;
    let w = |e: std::io::Error| Error::Usage(format!("write stdout: {e}"));
    writeln!(out, "{head}").map_err(w)?;
    for l in lines {
        if l.split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok())
            .is_some_and(|p| pids.contains(&p))
        {
            writeln!(out, "{l}").map_err(w)?;
        }
    }
    Ok(())
}
