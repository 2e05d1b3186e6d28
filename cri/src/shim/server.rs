//! The per-pod monitor's logic (runs inside `berth-shim`).
//!
//! The shim is a child subreaper: a container's init, forked by the OCI
//! runtime's `create`, is re-parented to it when the runtime exits, so the
//! shim reaps it and records its exit status durably. It owns the read ends
//! of the containers' stdout/stderr and writes the CRI log files itself,
//! so containers run and logs flow while berthd is down.
//!
//! Every child is reaped in one place (`reap`): the runtime CLI calls too,
//! whose statuses are handed to the waiting request. It runs on a
//! single-threaded tokio runtime, so registering a new child's pid cannot
//! race the reaper.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::rc::Rc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{oneshot, watch};

use super::logger::{LogFile, spawn_copy};
use super::proto::{ContainerState, ErrorKind, Request, Response, RuntimeCmd, Status};
use crate::logfmt::Stream;
use crate::store::JsonStore;

fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or_default()
}

fn err(kind: ErrorKind, message: impl Into<String>) -> Response {
    Response::Error {
        kind,
        message: message.into(),
    }
}

struct Entry {
    state: ContainerState,
    log: Option<LogFile>,
    exited: watch::Sender<bool>,
}

#[derive(Default)]
struct Reaper {
    /// Runtime CLI calls waiting for their exit status.
    commands: HashMap<i32, oneshot::Sender<i32>>,
    /// Container init pids.
    inits: HashMap<i32, String>,
    /// Exits of pids nobody had claimed yet, with when they were seen.
    unclaimed: HashMap<i32, (i32, Instant)>,
}

pub struct Shim {
    dir: PathBuf,
    store: JsonStore<ContainerState>,
    entries: Mutex<HashMap<String, Entry>>,
    reaper: Mutex<Reaper>,
}

fn exit_code(ws: WaitStatus) -> Option<(i32, i32)> {
    match ws {
        WaitStatus::Exited(pid, code) => Some((pid.as_raw(), code)),
        WaitStatus::Signaled(pid, sig, _) => Some((pid.as_raw(), 128 + sig as i32)),
        _ => None,
    }
}

impl Shim {
    pub fn open(dir: &Path) -> Result<Rc<Self>, crate::store::StoreError> {
        let store: JsonStore<ContainerState> = JsonStore::open(dir.join("containers"))?;
        let (records, bad) = store.load_all();
        for e in bad {
            tracing::warn!(error = %e, "skipping unreadable container record");
        }
        let mut entries = HashMap::new();
        for (id, mut state) in records {
            // A shim that starts again cannot reap what an earlier one ran:
            // a container it did not see exit is reported as exited, unknown.
            if state.status != Status::Exited {
                state.status = Status::Exited;
                state.exit_code = Some(255);
                state.finished_at = Some(now_ns());
            }
            let (exited, _) = watch::channel(true);
            entries.insert(
                id,
                Entry {
                    state,
                    log: None,
                    exited,
                },
            );
        }
        Ok(Rc::new(Shim {
            dir: dir.to_owned(),
            store,
            entries: Mutex::new(entries),
            reaper: Mutex::new(Reaper::default()),
        }))
    }

    /// Reap every exited child; called on SIGCHLD.
    pub fn reap(&self) {
        let mut r = self.reaper.lock().expect("reaper lock");
        loop {
            let ws = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(ws) => ws,
            };
            let Some((pid, code)) = exit_code(ws) else {
                continue;
            };
            if let Some(tx) = r.commands.remove(&pid) {
                let _ = tx.send(code);
            } else if let Some(id) = r.inits.remove(&pid) {
                self.mark_exited(&id, code);
            } else {
                r.unclaimed.insert(pid, (code, Instant::now()));
            }
        }
        r.unclaimed
            .retain(|_, (_, at)| at.elapsed() < Duration::from_secs(300));
    }

    fn mark_exited(&self, id: &str, code: i32) {
        let mut entries = self.entries.lock().expect("entries lock");
        let Some(e) = entries.get_mut(id) else { return };
        e.state.status = Status::Exited;
        e.state.exit_code = Some(code);
        e.state.finished_at = Some(now_ns());
        if let Err(err) = self.store.put(id, &e.state) {
            tracing::error!(container_id = id, error = %err, "recording exit status");
        }
        e.exited.send_replace(true);
        tracing::info!(container_id = id, exit_code = code, "container exited");
    }

    /// Run the OCI runtime with `args`; errors carry what it logged.
    async fn runtime(
        &self,
        rt: &RuntimeCmd,
        id: &str,
        args: &[&str],
        stdio: Option<(Stdio, Stdio)>,
    ) -> Result<(), Response> {
        let log = self.dir.join(format!("{id}.runtime.log"));
        let _ = std::fs::remove_file(&log);
        let mut cmd = Command::new(&rt.binary);
        cmd.arg("--root")
            .arg(&rt.root)
            .arg("--log")
            .arg(&log)
            .args(["--log-format", "json"])
            .args(args);
        cmd.stdin(Stdio::null());
        match stdio {
            Some((out, errs)) => cmd.stdout(out).stderr(errs),
            None => cmd.stdout(Stdio::null()).stderr(Stdio::null()),
        };
        let (tx, rx) = oneshot::channel();
        {
            // Spawn and register under the lock: the reaper cannot see this
            // pid before it is registered.
            let mut r = self.reaper.lock().expect("reaper lock");
            let child = cmd.spawn().map_err(|e| {
                err(
                    ErrorKind::Runtime,
                    format!("{}: start: {e}", rt.binary.display()),
                )
            })?;
            let pid = child.id() as i32;
            match r.unclaimed.remove(&pid) {
                Some((code, _)) => {
                    let _ = tx.send(code);
                }
                None => {
                    r.commands.insert(pid, tx);
                }
            }
            // The Child handle is dropped unwaited: the reaper owns the pid.
        }
        let code = rx.await.unwrap_or(255);
        if code == 0 {
            return Ok(());
        }
        let msg = runtime_error(&log).unwrap_or_else(|| format!("exit status {code}"));
        Err(err(
            ErrorKind::Runtime,
            format!(
                "{} {}: {msg}",
                rt.binary.display(),
                args.first().unwrap_or(&"")
            ),
        ))
    }

    pub async fn handle(&self, req: Request) -> Response {
        match req {
            Request::Create {
                id,
                bundle,
                runtime,
                log_path,
            } => self.create(id, bundle, runtime, log_path).await,
            Request::Start { id } => self.start(&id).await,
            Request::Kill { id, signal, all } => self.kill(&id, signal, all).await,
            Request::Delete { id } => self.delete(&id).await,
            Request::State { id } => match self.state(&id) {
                Some(state) => Response::State { state },
                None => err(ErrorKind::NotFound, format!("container {id} not found")),
            },
            Request::Wait { id } => self.wait(&id).await,
            Request::List => {
                let entries = self.entries.lock().expect("entries lock");
                let mut containers: Vec<_> = entries.values().map(|e| e.state.clone()).collect();
                containers.sort_by(|a, b| a.id.cmp(&b.id));
                Response::List { containers }
            }
            Request::ReopenLog { id } => {
                let log = self
                    .entries
                    .lock()
                    .expect("entries lock")
                    .get(&id)
                    .map(|e| e.log.clone());
                match log {
                    None => err(ErrorKind::NotFound, format!("container {id} not found")),
                    Some(None) => err(
                        ErrorKind::FailedPrecondition,
                        format!("container {id} has no open log"),
                    ),
                    Some(Some(l)) => match l.reopen() {
                        Ok(()) => Response::Ok,
                        Err(e) => err(
                            ErrorKind::Runtime,
                            format!("container {id}: reopen log: {e}"),
                        ),
                    },
                }
            }
            Request::Shutdown => Response::Ok,
        }
    }

    fn state(&self, id: &str) -> Option<ContainerState> {
        self.entries
            .lock()
            .expect("entries lock")
            .get(id)
            .map(|e| e.state.clone())
    }

    async fn create(
        &self,
        id: String,
        bundle: PathBuf,
        runtime: RuntimeCmd,
        log_path: Option<PathBuf>,
    ) -> Response {
        if berth_runtime::ContainerId::parse(&id).is_err() {
            return err(
                ErrorKind::BadRequest,
                format!("container id {id:?} is not valid"),
            );
        }
        if self.entries.lock().expect("entries lock").contains_key(&id) {
            return err(
                ErrorKind::AlreadyExists,
                format!("container {id} already exists"),
            );
        }
        let log = match log_path.as_deref().map(LogFile::open).transpose() {
            Ok(l) => l,
            Err(e) => {
                return err(
                    ErrorKind::BadRequest,
                    format!("container {id}: log file: {e}"),
                );
            }
        };
        let pipes = (|| -> std::io::Result<_> { Ok((std::io::pipe()?, std::io::pipe()?)) })();
        let ((out_r, out_w), (err_r, err_w)) = match pipes {
            Ok(p) => p,
            Err(e) => return err(ErrorKind::Runtime, format!("container {id}: pipes: {e}")),
        };
        let pid_file = self.dir.join(format!("{id}.pid"));
        let bundle_s = bundle.to_string_lossy().into_owned();
        let pid_s = pid_file.to_string_lossy().into_owned();
        let args = ["create", "--bundle", &bundle_s, "--pid-file", &pid_s, &id];
        let created = self
            .runtime(
                &runtime,
                &id,
                &args,
                // Without a log file the output goes nowhere, but it must
                // go somewhere: a closed pipe would kill the container with
                // SIGPIPE on its first write.
                Some(match log {
                    Some(_) => (Stdio::from(out_w), Stdio::from(err_w)),
                    None => (Stdio::null(), Stdio::null()),
                }),
            )
            .await;
        if let Err(e) = created {
            return e;
        }
        let pid: i32 = match std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
        {
            Some(p) => p,
            None => {
                return err(
                    ErrorKind::Runtime,
                    format!("container {id}: runtime wrote no pid file"),
                );
            }
        };
        if let Some(l) = &log {
            spawn_copy(out_r, Stream::Stdout, l.clone());
            spawn_copy(err_r, Stream::Stderr, l.clone());
        }
        let state = ContainerState {
            id: id.clone(),
            status: Status::Created,
            pid,
            exit_code: None,
            created_at: now_ns(),
            started_at: None,
            finished_at: None,
            bundle,
            runtime,
            log_path,
        };
        if let Err(e) = self.store.put(&id, &state) {
            return err(ErrorKind::Runtime, format!("container {id}: {e}"));
        }
        let (exited, _) = watch::channel(false);
        self.entries
            .lock()
            .expect("entries lock")
            .insert(id.clone(), Entry { state, log, exited });
        // Register the init; it may already have exited (and been reaped).
        let unclaimed = {
            let mut r = self.reaper.lock().expect("reaper lock");
            match r.unclaimed.remove(&pid) {
                Some((code, _)) => Some(code),
                None => {
                    r.inits.insert(pid, id.clone());
                    None
                }
            }
        };
        if let Some(code) = unclaimed {
            self.mark_exited(&id, code);
        }
        tracing::info!(container_id = %id, pid, "container created");
        Response::Ok
    }

    async fn start(&self, id: &str) -> Response {
        let Some(st) = self.state(id) else {
            return err(ErrorKind::NotFound, format!("container {id} not found"));
        };
        if st.status != Status::Created {
            return err(
                ErrorKind::FailedPrecondition,
                format!("container {id} is {:?}, not created", st.status),
            );
        }
        // The container may run and exit before `start` returns: take the
        // start time first, so started_at never comes after finished_at.
        let started_at = now_ns();
        if let Err(e) = self.runtime(&st.runtime, id, &["start", id], None).await {
            return e;
        }
        let mut entries = self.entries.lock().expect("entries lock");
        if let Some(e) = entries.get_mut(id) {
            e.state.started_at = Some(started_at);
            if e.state.status == Status::Created {
                e.state.status = Status::Running;
            }
            let _ = self.store.put(id, &e.state);
        }
        Response::Ok
    }

    async fn kill(&self, id: &str, signal: i32, all: bool) -> Response {
        let Some(st) = self.state(id) else {
            return err(ErrorKind::NotFound, format!("container {id} not found"));
        };
        if st.status == Status::Exited {
            return Response::Ok;
        }
        let sig = signal.to_string();
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, sig.as_str()]);
        match self.runtime(&st.runtime, id, &args, None).await {
            Ok(()) => Response::Ok,
            // It may have exited between the check and the kill.
            Err(_) if self.state(id).is_some_and(|s| s.status == Status::Exited) => Response::Ok,
            Err(e) => e,
        }
    }

    async fn delete(&self, id: &str) -> Response {
        let Some(st) = self.state(id) else {
            return Response::Ok;
        };
        if st.status == Status::Running {
            return err(
                ErrorKind::FailedPrecondition,
                format!("container {id} is running: stop it first"),
            );
        }
        if let Err(e) = self
            .runtime(&st.runtime, id, &["delete", "--force", id], None)
            .await
        {
            tracing::warn!(container_id = id, "runtime delete: {e:?}");
        }
        let _ = self.store.remove(id);
        let _ = std::fs::remove_file(self.dir.join(format!("{id}.pid")));
        let _ = std::fs::remove_file(self.dir.join(format!("{id}.runtime.log")));
        self.entries.lock().expect("entries lock").remove(id);
        self.reaper
            .lock()
            .expect("reaper lock")
            .inits
            .retain(|_, v| v != id);
        Response::Ok
    }

    async fn wait(&self, id: &str) -> Response {
        let rx = self
            .entries
            .lock()
            .expect("entries lock")
            .get(id)
            .map(|e| e.exited.subscribe());
        let Some(mut rx) = rx else {
            return err(ErrorKind::NotFound, format!("container {id} not found"));
        };
        let _ = rx.wait_for(|x| *x).await;
        match self.state(id) {
            Some(state) => Response::State { state },
            None => err(ErrorKind::NotFound, format!("container {id} was deleted")),
        }
    }

    pub fn has_live_containers(&self) -> bool {
        self.entries
            .lock()
            .expect("entries lock")
            .values()
            .any(|e| e.state.status != Status::Exited)
    }
}

/// The last error the runtime wrote to its `--log` (JSON lines, runc style).
fn runtime_error(log: &Path) -> Option<String> {
    let f = std::fs::File::open(log).ok()?;
    let mut last = None;
    for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|_| serde_json::json!({"msg": line}));
        if v.get("level")
            .and_then(|l| l.as_str())
            .is_none_or(|l| l == "error" || l == "fatal")
        {
            last = v.get("msg").and_then(|m| m.as_str()).map(str::to_owned);
        }
    }
    last
}

/// Serve the shim's socket until a `Shutdown` arrives with no container
/// left. Reaps children on SIGCHLD.
pub async fn serve(shim: Rc<Shim>, listener: tokio::net::UnixListener) -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut sigchld = signal(SignalKind::child())?;
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let reaper = {
        let shim = Rc::clone(&shim);
        tokio::task::spawn_local(async move {
            loop {
                shim.reap();
                if sigchld.recv().await.is_none() {
                    break;
                }
            }
        })
    };
    loop {
        tokio::select! {
            conn = listener.accept() => {
                let (stream, _) = conn?;
                let shim = Rc::clone(&shim);
                let stop_tx = stop_tx.clone();
                tokio::task::spawn_local(async move {
                    let (r, mut w) = stream.into_split();
                    let mut lines = BufReader::new(r).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        let (resp, shutdown) = match serde_json::from_str::<Request>(&line) {
                            Ok(Request::Shutdown) if shim.has_live_containers() => {
                                (err(ErrorKind::FailedPrecondition, "containers are still running"), false)
                            }
                            Ok(Request::Shutdown) => (Response::Ok, true),
                            Ok(req) => (shim.handle(req).await, false),
                            Err(e) => (err(ErrorKind::BadRequest, format!("bad request: {e}")), false),
                        };
                        let mut out = serde_json::to_vec(&resp).expect("responses serialize");
                        out.push(b'\n');
                        if w.write_all(&out).await.is_err() {
                            break;
                        }
                        if shutdown {
                            let _ = stop_tx.send(true);
                        }
                    }
                });
            }
            _ = stop_rx.changed() => break,
        }
    }
    reaper.abort();
    Ok(())
}
