//! The pause process: PID 1 of a pod-wide PID namespace (and only then).
//!
//! It runs as a container of the pod's monitor, through the pod's OCI
//! runtime, with the sandbox's id as its container id (as containerd names
//! its sandbox containers). Its rootfs is an empty read-only folder with the
//! berth-pause binary bound in; a dynamically linked build (a debug build)
//! gets the host's library folders bound read-only too.

use std::path::{Path, PathBuf};

use berth_runtime::config::spec::{
    Capabilities, Linux, Mount, Namespace, Process, Resources, Root, Spec, User,
};

use crate::error::{Error, Result};
use crate::shim::client::call;
use crate::shim::proto::{Request, Response, RuntimeCmd};

use super::model::Sandbox;

/// Whether an ELF binary asks for a dynamic loader.
fn is_dynamic(binary: &Path) -> bool {
    use std::io::Read;
    let mut head = vec![0u8; 4096];
    let n = std::fs::File::open(binary)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    head[..n]
        .windows(7)
        .any(|w| w == b"ld-linu" || w == b"ld-musl")
}

fn ns(kind: &str, path: Option<&Path>) -> Namespace {
    Namespace {
        kind: kind.into(),
        path: path.map(|p| p.display().to_string()),
    }
}

fn bind_ro(dest: &str, source: &Path) -> Mount {
    Mount {
        destination: dest.into(),
        kind: Some("bind".into()),
        source: Some(source.display().to_string()),
        options: vec!["rbind".into(), "ro".into(), "nosuid".into(), "nodev".into()],
        ..Default::default()
    }
}

/// The pause bundle's config.json.
pub fn spec(sb: &Sandbox, binary: &Path, rootfs: &Path, cgroup_path: &str) -> Spec {
    let mut mounts = vec![
        Mount {
            destination: "/dev".into(),
            kind: Some("tmpfs".into()),
            source: Some("tmpfs".into()),
            options: vec!["nosuid".into(), "mode=755".into(), "size=64k".into()],
            ..Default::default()
        },
        bind_ro("/pause", binary),
    ];
    if is_dynamic(binary) {
        for lib in ["/lib", "/lib64", "/usr/lib", "/usr/lib64"] {
            let p = Path::new(lib);
            if p.is_dir() && !p.is_symlink() {
                mounts.push(bind_ro(lib, p));
            }
        }
    }
    let mut namespaces = vec![ns("pid", None), ns("mount", None)];
    if let Some(p) = &sb.userns {
        namespaces.insert(0, ns("user", Some(p)));
    }
    if let Some(p) = &sb.netns {
        namespaces.push(ns("network", Some(p)));
    }
    if let Some(p) = &sb.ipcns {
        namespaces.push(ns("ipc", Some(p)));
    }
    if let Some(p) = &sb.utsns {
        namespaces.push(ns("uts", Some(p)));
    }
    Spec {
        oci_version: berth_runtime::OCI_VERSION.into(),
        process: Some(Process {
            user: User::default(),
            args: vec!["/pause".into()],
            env: vec!["PATH=/".into()],
            cwd: "/".into(),
            capabilities: Some(Capabilities::default()),
            no_new_privileges: true,
            ..Default::default()
        }),
        root: Some(Root {
            path: rootfs.display().to_string(),
            readonly: true,
        }),
        mounts,
        annotations: [
            (
                "io.kubernetes.cri.container-type".to_owned(),
                "sandbox".to_owned(),
            ),
            ("io.kubernetes.cri.sandbox-id".to_owned(), sb.id.clone()),
        ]
        .into(),
        linux: Some(Linux {
            namespaces,
            cgroups_path: Some(cgroup_path.to_owned()),
            resources: Some(Resources::default()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Create and start the pause container in the sandbox's monitor; its pid.
pub async fn start(
    sb: &Sandbox,
    socket: &Path,
    binary: &Path,
    runtime: RuntimeCmd,
    cgroup_path: &str,
) -> Result<i32> {
    let io = |what, path: PathBuf| move |source| Error::Io { what, path, source };
    let bundle = sb.files_dir.join("pause");
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(rootfs.join("dev")).map_err(io("pause rootfs", rootfs.clone()))?;
    // The library folders a dynamic build needs, as the host has them: a
    // merged-/usr host's /lib is a symlink, made the same in the rootfs.
    for dir in ["lib", "lib64", "usr/lib", "usr/lib64"] {
        let host = Path::new("/").join(dir);
        let inside = rootfs.join(dir);
        if inside.symlink_metadata().is_ok() {
            continue;
        }
        if let Ok(target) = std::fs::read_link(&host) {
            std::fs::create_dir_all(rootfs.join("usr"))
                .map_err(io("pause rootfs", rootfs.clone()))?;
            std::os::unix::fs::symlink(target, &inside)
                .map_err(io("pause rootfs", inside.clone()))?;
        } else if host.is_dir() {
            std::fs::create_dir_all(&inside).map_err(io("pause rootfs", inside.clone()))?;
        }
    }
    std::fs::write(rootfs.join("pause"), b"").map_err(io("pause rootfs", rootfs.clone()))?;
    let config = bundle.join("config.json");
    let json = serde_json::to_vec_pretty(&spec(sb, binary, &rootfs, cgroup_path))
        .expect("specs serialize");
    std::fs::write(&config, json).map_err(io("pause config.json", config.clone()))?;
    let fail =
        |what: &str, r: Response| Error::Runtime(format!("sandbox {}: pause {what}: {r:?}", sb.id));
    let r = call(
        socket,
        &Request::Create {
            id: sb.id.clone(),
            bundle,
            runtime,
            log_path: None,
            stdin: false,
            stdin_once: false,
            tty: false,
        },
    )
    .await?;
    if r != Response::Ok {
        return Err(fail("create", r));
    }
    let r = call(socket, &Request::Start { id: sb.id.clone() }).await?;
    if r != Response::Ok {
        return Err(fail("start", r));
    }
    match call(socket, &Request::State { id: sb.id.clone() }).await? {
        Response::State { state } => Ok(state.pid),
        r => Err(fail("state", r)),
    }
}

/// Kill the pause (and with it every process of the pod's PID namespace)
/// and wait for it; with `delete`, also remove it from the runtime.
pub async fn stop(sb: &Sandbox, socket: &Path, delete: bool) {
    let id = sb.id.clone();
    let _ = call(
        socket,
        &Request::Kill {
            id: id.clone(),
            signal: libc::SIGKILL,
            all: true,
        },
    )
    .await;
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        call(socket, &Request::Wait { id: id.clone() }),
    )
    .await;
    if delete {
        let _ = call(socket, &Request::Delete { id }).await;
    }
}
