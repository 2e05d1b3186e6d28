//! Handing the notify fd of an SCMP_ACT_NOTIFY profile to the seccomp agent
//! (`linux.seccomp.listenerPath`), as the runtime spec describes: one
//! connection per process, one message holding the container process state
//! as JSON with the fd attached (SCM_RIGHTS), then the connection is closed.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;

use super::Listener;

#[derive(Debug, thiserror::Error)]
#[error("seccomp: hand the notify fd to the agent at {path}")]
pub struct NotifyError {
    path: String,
    #[source]
    source: std::io::Error,
}

/// What the agent learns about the process whose syscalls it will handle.
pub struct ProcessState<'a> {
    /// The process that loaded the filter (the init, or an exec'd process).
    pub pid: i32,
    pub id: &'a str,
    /// `creating` for the init, `running` for an exec'd process.
    pub status: &'a str,
    /// The container's init.
    pub init_pid: i32,
    pub bundle: &'a std::path::Path,
    pub annotations: &'a std::collections::BTreeMap<String, String>,
}

/// The container process state message (runtime spec, "Container process
/// state").
pub fn message(l: &Listener, st: &ProcessState<'_>) -> String {
    let mut m = serde_json::json!({
        "ociVersion": crate::OCI_VERSION,
        "fds": ["seccompFd"],
        "pid": st.pid,
        "state": {
            "ociVersion": crate::OCI_VERSION,
            "id": st.id,
            "status": st.status,
            "pid": st.init_pid,
            "bundle": st.bundle,
            "annotations": st.annotations,
        }
    });
    if let Some(md) = &l.metadata {
        m["metadata"] = md.as_str().into();
    }
    m.to_string()
}

/// Connect to the agent and send it `fd` with the state.
pub fn send(l: &Listener, st: &ProcessState<'_>, fd: BorrowedFd<'_>) -> Result<(), NotifyError> {
    let err = |source| NotifyError {
        path: l.path.clone(),
        source,
    };
    let conn = UnixStream::connect(&l.path).map_err(err)?;
    crate::sys::send_fd_with(conn.as_fd(), message(l, st).as_bytes(), fd.as_raw_fd()).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_follows_the_spec_shape() {
        let ann = [("a".to_owned(), "b".to_owned())].into_iter().collect();
        let st = ProcessState {
            pid: 42,
            id: "c1",
            status: "creating",
            init_pid: 42,
            bundle: std::path::Path::new("/b"),
            annotations: &ann,
        };
        let with = Listener {
            path: "/run/agent.sock".into(),
            metadata: Some("md".into()),
        };
        let v: serde_json::Value = serde_json::from_str(&message(&with, &st)).unwrap();
        assert_eq!(v["fds"], serde_json::json!(["seccompFd"]));
        assert_eq!(v["pid"], 42);
        assert_eq!(v["metadata"], "md");
        assert_eq!(v["state"]["id"], "c1");
        assert_eq!(v["state"]["status"], "creating");
        assert_eq!(v["state"]["bundle"], "/b");
        assert_eq!(v["state"]["annotations"]["a"], "b");
        let without = Listener {
            path: "/run/agent.sock".into(),
            metadata: None,
        };
        let v: serde_json::Value = serde_json::from_str(&message(&without, &st)).unwrap();
        assert!(v.get("metadata").is_none());
    }
}
