//! Container state on disk: `<root>/<id>/state.json`, written atomically
//! (temp file + rename), and the status derived from it and the kernel.
//!
//! The status is never stored: it is read from the init process (alive, same
//! start time), the start socket (present until `start`) and the freezer.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cgroups::CgroupPaths;
use crate::config::spec::Hooks;
use crate::id::ContainerId;

pub const STATE_FILE: &str = "state.json";
/// The socket init waits on between `create` and `start`.
pub const START_SOCKET: &str = "start.sock";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("container {0} does not exist")]
    NotExist(String),
    #[error("container {0} already exists")]
    Exists(String),
    #[error("container {id}: {what} {path}")]
    Io {
        id: String,
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("container {id}: state file {path} is corrupt")]
    Corrupt {
        id: String,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// Lifecycle status as the OCI spec names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Created => "created",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Stopped => "stopped",
        }
    }
    pub fn can_start(self) -> bool {
        self == Self::Created
    }
    pub fn can_kill(self) -> bool {
        matches!(self, Self::Created | Self::Running | Self::Paused)
    }
    pub fn can_exec(self) -> bool {
        matches!(self, Self::Created | Self::Running)
    }
    pub fn can_pause(self) -> bool {
        matches!(self, Self::Created | Self::Running)
    }
}

/// What `create` records for the later commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StateFile {
    pub id: String,
    pub pid: i32,
    /// Start time of `pid` (field 22 of /proc/<pid>/stat), to detect reuse.
    pub pid_start: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(default)]
    pub owner: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    pub cgroup: CgroupPaths,
    /// The scope unit that owns `cgroup` (the systemd driver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd_unit: Option<String>,
    #[serde(default)]
    pub hooks: Hooks,
    /// The container has its own pid namespace: killing init kills all.
    pub own_pid_ns: bool,
    /// The cached seccomp program and its load flags, for `exec`.
    #[serde(default)]
    pub seccomp: Option<(PathBuf, u64)>,
    /// The seccomp agent of an SCMP_ACT_NOTIFY profile, for `exec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seccomp_listener: Option<crate::seccomp::Listener>,
}

/// A container known to the runtime: its state dir and recorded state.
#[derive(Debug)]
pub struct Container {
    pub id: ContainerId,
    pub dir: PathBuf,
    pub state: StateFile,
}

impl Container {
    pub fn load(root: &Path, id: &ContainerId) -> Result<Self, StateError> {
        let dir = root.join(id.as_str());
        let path = dir.join(STATE_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::NotExist(id.to_string()));
            }
            Err(source) => {
                return Err(StateError::Io {
                    id: id.to_string(),
                    what: "read",
                    path,
                    source,
                });
            }
        };
        let state = serde_json::from_slice(&bytes).map_err(|source| StateError::Corrupt {
            id: id.to_string(),
            path,
            source,
        })?;
        Ok(Self {
            id: id.clone(),
            dir,
            state,
        })
    }

    pub fn save(&self) -> Result<(), StateError> {
        write_atomic(
            &self.dir,
            STATE_FILE,
            &serde_json::to_vec(&self.state).expect("state serialises"),
        )
        .map_err(|source| StateError::Io {
            id: self.id.to_string(),
            what: "write",
            path: self.dir.join(STATE_FILE),
            source,
        })
    }

    /// Whether the recorded init process still runs (not a zombie, not reused).
    pub fn init_alive(&self) -> bool {
        self.state.pid > 0
            && proc_start_time(self.state.pid).is_some_and(|t| t == self.state.pid_start)
    }

    pub fn status(&self) -> Status {
        if !self.init_alive() {
            return Status::Stopped;
        }
        if self.dir.join(START_SOCKET).exists() {
            return Status::Created;
        }
        if crate::cgroups::is_frozen(&self.state.cgroup) {
            return Status::Paused;
        }
        Status::Running
    }

    /// runc's `state` JSON.
    pub fn oci_state(&self) -> serde_json::Value {
        let status = self.status();
        let mut v = serde_json::json!({
            "ociVersion": crate::OCI_VERSION,
            "id": self.state.id,
            "pid": if status == Status::Stopped { 0 } else { self.state.pid },
            "status": status.as_str(),
            "bundle": self.state.bundle,
            "rootfs": self.state.rootfs,
            "created": self.state.created,
            "owner": self.state.owner,
        });
        if !self.state.annotations.is_empty() {
            v["annotations"] = serde_json::to_value(&self.state.annotations).expect("map");
        }
        v
    }
}

/// Write `dir/name` so readers see the old or the new content, never a part.
///
/// No fsync: the rename gives atomicity, and runtime state lives in /run (a
/// tmpfs lost at reboot together with the containers it describes), so
/// durability buys nothing, while an fsync on a disk-backed `--root` costs
/// 10-50 ms, more than the rest of `create`.
pub fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    drop(f);
    std::fs::rename(&tmp, dir.join(name))
}

/// Start time (clock ticks since boot) of a live, non-zombie process.
pub fn proc_start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

fn parse_stat(stat: &str) -> Option<u64> {
    // comm may contain spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    // rest starts at field 3 (state); starttime is field 22.
    fields.nth(18)?.parse().ok()
}

/// RFC 3339 UTC time with nanoseconds, as runc's `created`.
pub fn rfc3339_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86400);
    let sod = secs.rem_euclid(86400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// IDs of the containers under `root` (directories holding a state file).
pub fn list_ids(root: &Path) -> std::io::Result<Vec<ContainerId>> {
    let mut ids = Vec::new();
    let rd = match std::fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ids),
        Err(e) => return Err(e),
    };
    for e in rd {
        let e = e?;
        if let Some(id) = e
            .file_name()
            .to_str()
            .and_then(|n| ContainerId::parse(n).ok())
            && e.path().join(STATE_FILE).exists()
        {
            ids.push(id);
        }
    }
    ids.sort();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(1_795_435_200, 5), "2026-11-23T12:00:00.000000005Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00.000000000Z");
    }

    #[test]
    fn stat_parsing_skips_odd_comm_and_zombies() {
        let s = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(parse_stat(s), Some(98765));
        let z = "42 (x) Z 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 1000 10";
        assert_eq!(parse_stat(z), None);
    }

    #[test]
    fn status_transitions() {
        assert!(Status::Created.can_start());
        assert!(!Status::Running.can_start());
        assert!(!Status::Stopped.can_kill());
        assert!(Status::Paused.can_kill());
    }
}
