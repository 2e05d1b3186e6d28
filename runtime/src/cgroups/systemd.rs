//! The systemd cgroup driver (`--systemd-cgroup`): the container's cgroup is
//! a transient scope unit that systemd creates and owns, asked for over
//! D-Bus, so systemd's view of the machine (and its limits, on a
//! `daemon-reload`) agrees with the container's.
//!
//! `cgroupsPath` is "slice:prefix:name": the scope `<prefix>-<name>.scope`
//! in `slice` (systemd creates missing slices; "" means system.slice). The
//! scope is started with the init's pid after the clone and with the spec's
//! resources as unit properties; then the cgroupfs writes follow, as with
//! the cgroupfs driver, for what systemd has no property for (and the exact
//! values where systemd rounds). On v1 the hierarchies systemd does not
//! manage get their directory from the cgroupfs code.
//!
//! The connection is systemd's private socket when root (no bus daemon
//! needed, one hop), else the system bus.

use std::path::Path;
use std::time::Duration;

use super::CgroupError;
use super::dbus::{Arg, Call, Conn, DbusError, SIGNAL, Value};
use crate::config::spec::Resources;

const PRIVATE: &str = "/run/systemd/private";
const SYSTEM_BUS: &str = "/run/dbus/system_bus_socket";
const DEST: &str = "org.freedesktop.systemd1";
const PATH: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
/// How long a job (start or stop of a scope) may take.
const JOB_TIMEOUT: Duration = Duration::from_secs(30);

/// Where a container's scope goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    pub slice: String,
    pub unit: String,
}

impl Scope {
    /// The scope of `cgroupsPath` (default "system.slice:berth:<id>").
    pub fn parse(cgroups_path: Option<&str>, id: &str) -> Result<Scope, CgroupError> {
        let p = cgroups_path.filter(|p| !p.is_empty());
        let bad = |why: &str| {
            CgroupError::Unsupported(format!(
                "linux.cgroupsPath {:?}: {why} (the systemd driver wants \"slice:prefix:name\")",
                p.unwrap_or_default()
            ))
        };
        let (slice, prefix, name) = match p {
            None => ("system.slice", "berth", id),
            Some(p) => {
                let mut it = p.split(':');
                match (it.next(), it.next(), it.next(), it.next()) {
                    (Some(s), Some(pre), Some(n), None) => (s, pre, n),
                    _ => return Err(bad("not three fields separated by ':'")),
                }
            }
        };
        let slice = if slice.is_empty() {
            "system.slice"
        } else {
            slice
        };
        if !slice.ends_with(".slice") || !unit_chars(slice) {
            return Err(bad("the slice is not a slice unit name"));
        }
        if name.is_empty() || !unit_chars(name) || !unit_chars(prefix) {
            return Err(bad("the name holds characters a unit name cannot"));
        }
        if name.ends_with(".slice") {
            return Err(bad("a container in a slice of its own is not supported"));
        }
        let unit = super::scope_unit(prefix, name);
        if unit.len() > 255 {
            return Err(bad("the unit name is longer than 255 bytes"));
        }
        Ok(Scope {
            slice: slice.to_owned(),
            unit,
        })
    }

    /// The scope's cgroup, from the hierarchy's root, where systemd puts it.
    pub fn cgroup_path(&self) -> String {
        format!("{}/{}", super::slice_path(&self.slice), self.unit)
    }
}

fn unit_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.:\\@".contains(&b))
}

/// Whether systemd is the init (sd_booted's test).
pub fn booted() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn err(what: &str, unit: &str, e: DbusError) -> CgroupError {
    CgroupError::Systemd(Box::new(super::SystemdFailure {
        what: what.into(),
        unit: unit.into(),
        source: e,
    }))
}

const NO_SUCH_UNIT: &str = "org.freedesktop.systemd1.NoSuchUnit";
const UNIT_EXISTS: &str = "org.freedesktop.systemd1.UnitExists";

/// A connection to systemd's manager.
pub struct Systemd {
    conn: Conn,
}

impl Systemd {
    pub fn connect() -> Result<Systemd, CgroupError> {
        if !booted() {
            return Err(CgroupError::Unsupported(
                "the systemd cgroup driver needs systemd as the init (no /run/systemd/system); \
                 use the cgroupfs driver"
                    .into(),
            ));
        }
        let mut tried = Vec::new();
        if nix::unistd::geteuid().is_root() {
            match Conn::open(PRIVATE, false, JOB_TIMEOUT) {
                Ok(conn) => return Ok(Systemd { conn }),
                Err(e) => tried.push(format!("{PRIVATE}: {e}")),
            }
        }
        let bus = std::env::var("DBUS_SYSTEM_BUS_ADDRESS")
            .ok()
            .and_then(|a| {
                a.split(';')
                    .find_map(|one| one.strip_prefix("unix:path=").map(str::to_owned))
            })
            .unwrap_or_else(|| SYSTEM_BUS.into());
        let open = || -> Result<Conn, DbusError> {
            let mut conn = Conn::open(&bus, true, JOB_TIMEOUT)?;
            // On a bus, systemd sends its job signals to subscribers only.
            conn.call(&Call {
                dest: Some("org.freedesktop.DBus"),
                path: "/org/freedesktop/DBus",
                interface: "org.freedesktop.DBus",
                member: "AddMatch",
                args: &[Value::Str(format!(
                    "type='signal',sender='{DEST}',path='{PATH}',interface='{MANAGER}',member='JobRemoved'"
                ))],
            })?;
            conn.call(&manager("Subscribe", &[], true))?;
            Ok(conn)
        };
        match open() {
            Ok(conn) => Ok(Systemd { conn }),
            Err(e) => {
                tried.push(format!("{bus}: {e}"));
                Err(CgroupError::Unsupported(format!(
                    "the systemd cgroup driver cannot reach systemd ({})",
                    tried.join("; ")
                )))
            }
        }
    }

    /// Start the scope with `pid` in it and wait until it runs.
    pub fn start_scope(
        &mut self,
        scope: &Scope,
        pid: i32,
        r: &Resources,
        v2: bool,
    ) -> Result<(), CgroupError> {
        let mut props = vec![
            ("Slice".to_owned(), Value::Str(scope.slice.clone())),
            ("Delegate".into(), Value::Bool(true)),
            ("PIDs".into(), Value::U32s(vec![pid as u32])),
        ];
        props.extend(properties(r, v2));
        self.start_transient(&scope.unit, props, v2)
    }

    /// StartTransientUnit of `unit` (no default dependencies, accounting on,
    /// then `props`), waiting for its job.
    fn start_transient(
        &mut self,
        unit: &str,
        props: Vec<(String, Value)>,
        v2: bool,
    ) -> Result<(), CgroupError> {
        let io = if v2 {
            "IOAccounting"
        } else {
            "BlockIOAccounting"
        };
        let mut all = vec![
            (
                "Description".to_owned(),
                Value::Str(format!("berth {unit}")),
            ),
            ("DefaultDependencies".into(), Value::Bool(false)),
            ("MemoryAccounting".into(), Value::Bool(true)),
            ("CPUAccounting".into(), Value::Bool(true)),
            ("TasksAccounting".into(), Value::Bool(true)),
            (io.into(), Value::Bool(true)),
        ];
        all.extend(props);
        let args = [
            Value::Str(unit.into()),
            Value::Str("replace".into()),
            Value::Props(all),
            Value::NoAux,
        ];
        self.job(
            "start",
            unit,
            &manager("StartTransientUnit", &args, self.conn.broker),
        )
    }

    /// Stop the unit and wait; a unit already gone is fine.
    pub fn stop(&mut self, unit: &str) -> Result<(), CgroupError> {
        let args = [Value::Str(unit.into()), Value::Str("replace".into())];
        match self.job("stop", unit, &manager("StopUnit", &args, self.conn.broker)) {
            Err(e) if e.is_systemd_error(NO_SUCH_UNIT) => {}
            r => r?,
        }
        // A scope whose processes were killed ends "failed"; forget it.
        let _ = self.conn.call(&manager(
            "ResetFailedUnit",
            &[Value::Str(unit.into())],
            self.conn.broker,
        ));
        Ok(())
    }

    /// Start slice `slice` (systemd makes its parents) with `props`, or,
    /// when it runs already, set them on it.
    pub fn ensure_slice(
        &mut self,
        slice: &str,
        props: Vec<(String, Value)>,
        v2: bool,
    ) -> Result<(), CgroupError> {
        match self.start_transient(slice, props.clone(), v2) {
            Err(e) if e.is_systemd_error(UNIT_EXISTS) => self.set_raw(slice, props),
            r => r,
        }
    }

    /// Set resource properties on a running unit (`update`).
    pub fn set_properties(
        &mut self,
        unit: &str,
        r: &Resources,
        v2: bool,
    ) -> Result<(), CgroupError> {
        self.set_raw(unit, properties(r, v2))
    }

    /// Set properties on a running unit, for this boot.
    pub fn set_raw(&mut self, unit: &str, props: Vec<(String, Value)>) -> Result<(), CgroupError> {
        if props.is_empty() {
            return Ok(());
        }
        let args = [
            Value::Str(unit.into()),
            Value::Bool(true),
            Value::Props(props),
        ];
        self.conn
            .call(&manager("SetUnitProperties", &args, self.conn.broker))
            .map(drop)
            .map_err(|e| err("set properties of", unit, e))
    }

    /// Make a call that returns a job, then wait for the job's JobRemoved.
    fn job(&mut self, what: &str, unit: &str, call: &Call<'_>) -> Result<(), CgroupError> {
        let mut signals = Vec::new();
        let reply = self
            .conn
            .call_keeping(call, &mut signals)
            .map_err(|e| err(what, unit, e))?;
        let job = reply
            .first_str()
            .ok_or_else(|| err(what, unit, DbusError::Malformed("the reply names no job")))?
            .to_owned();
        let mut pending = signals.into_iter();
        loop {
            let m = match pending.next() {
                Some(m) => m,
                None => self
                    .conn
                    .read()
                    .map_err(|e| err(&format!("wait for the {what} job of"), unit, e))?,
            };
            if m.kind != SIGNAL || m.member.as_deref() != Some("JobRemoved") {
                continue;
            }
            if let [_, Arg::Str(path), _, Arg::Str(result)] = m.args.as_slice()
                && *path == job
            {
                return match result.as_str() {
                    "done" => Ok(()),
                    r => Err(err(
                        what,
                        unit,
                        DbusError::Remote {
                            name: "job".into(),
                            message: format!("ended {r:?}"),
                        },
                    )),
                };
            }
        }
    }
}

fn manager<'a>(member: &'a str, args: &'a [Value], broker: bool) -> Call<'a> {
    Call {
        dest: broker.then_some(DEST),
        path: PATH,
        interface: MANAGER,
        member,
        args,
    }
}

/// Unit properties for the spec's resources, where systemd has one; the
/// cgroupfs writes that follow set the exact values.
pub fn properties(r: &Resources, v2: bool) -> Vec<(String, Value)> {
    let mut p: Vec<(String, Value)> = Vec::new();
    let mut put = |k: &str, v: Value| p.push((k.to_owned(), v));
    let limit = |v: i64| if v < 0 { u64::MAX } else { v as u64 };
    if let Some(m) = &r.memory {
        if let Some(l) = m.limit.filter(|l| *l != 0) {
            put(
                if v2 { "MemoryMax" } else { "MemoryLimit" },
                Value::U64(limit(l)),
            );
        }
        if v2 {
            if let Some(res) = m.reservation.filter(|r| *r > 0) {
                put("MemoryLow", Value::U64(res as u64));
            }
            match (m.swap, m.limit) {
                (Some(s), _) if s < 0 => put("MemorySwapMax", Value::U64(u64::MAX)),
                (Some(s), Some(l)) if s > 0 && l > 0 => {
                    put("MemorySwapMax", Value::U64((s - l).max(0) as u64))
                }
                _ => {}
            }
        }
    }
    if let Some(c) = &r.cpu {
        if let Some(s) = c.shares.filter(|s| *s > 0) {
            if v2 {
                put("CPUWeight", Value::U64(super::v2::shares_to_weight(s)));
            } else {
                put("CPUShares", Value::U64(s));
            }
        }
        let period = c.period.filter(|p| *p > 0);
        if let Some(p) = period {
            put("CPUQuotaPeriodUSec", Value::U64(p));
        }
        match c.quota {
            Some(q) if q > 0 => {
                // systemd keeps quota per second at 10 ms granularity: round
                // up so the unit never allows less than the spec.
                let per_sec = (q as u64 * 1_000_000) / period.unwrap_or(100_000);
                put(
                    "CPUQuotaPerSecUSec",
                    Value::U64(per_sec.next_multiple_of(10_000)),
                );
            }
            Some(q) if q < 0 => put("CPUQuotaPerSecUSec", Value::U64(u64::MAX)),
            _ => {}
        }
        if v2 {
            if let Some(m) = c.cpus.as_deref().and_then(cpu_mask) {
                put("AllowedCPUs", Value::Bytes(m));
            }
            if let Some(m) = c.mems.as_deref().and_then(cpu_mask) {
                put("AllowedMemoryNodes", Value::Bytes(m));
            }
        }
    }
    if let Some(pids) = &r.pids {
        put(
            "TasksMax",
            Value::U64(if pids.limit > 0 {
                pids.limit as u64
            } else {
                u64::MAX
            }),
        );
    }
    if let Some(w) = r.block_io.as_ref().and_then(|b| b.weight) {
        if v2 {
            put("IOWeight", Value::U64(super::v2::blkio_to_io_weight(w)));
        } else {
            put("BlockIOWeight", Value::U64(u64::from(w)));
        }
    }
    p
}

/// A cpuset list ("0-3,8") as systemd's bitmask bytes (bit i of byte j is
/// cpu 8j+i); None when malformed or absurdly large.
pub fn cpu_mask(list: &str) -> Option<Vec<u8>> {
    let mut mask = Vec::new();
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (
                a.trim().parse::<usize>().ok()?,
                b.trim().parse::<usize>().ok()?,
            ),
            None => {
                let a = part.trim().parse::<usize>().ok()?;
                (a, a)
            }
        };
        if a > b || b >= 8192 {
            return None;
        }
        if mask.len() <= b / 8 {
            mask.resize(b / 8 + 1, 0u8);
        }
        for cpu in a..=b {
            mask[cpu / 8] |= 1 << (cpu % 8);
        }
    }
    (!mask.is_empty()).then_some(mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::spec::{Cpu, Memory, Pids};

    #[test]
    fn cgroups_paths_name_the_scope_as_runc_does() {
        let s = Scope::parse(Some("kubepods-besteffort-pod1.slice:cri-berth:abc"), "x").unwrap();
        assert_eq!(s.slice, "kubepods-besteffort-pod1.slice");
        assert_eq!(s.unit, "cri-berth-abc.scope");
        assert_eq!(
            s.cgroup_path(),
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-berth-abc.scope"
        );
        let d = Scope::parse(None, "c1").unwrap();
        assert_eq!(
            (d.slice.as_str(), d.unit.as_str()),
            ("system.slice", "berth-c1.scope")
        );
        let e = Scope::parse(Some(":p:n"), "x").unwrap();
        assert_eq!(e.slice, "system.slice");
    }

    #[test]
    fn paths_systemd_cannot_name_are_refused_naming_the_field() {
        for bad in [
            "/a/b",
            "a:b",
            "a.slice:p:n:x",
            "notaslice:p:n",
            "s.slice:p:a/b",
            "s.slice:p:",
        ] {
            let e = Scope::parse(Some(bad), "x").unwrap_err().to_string();
            assert!(
                e.contains("linux.cgroupsPath") && e.contains(bad),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn resources_become_the_properties_of_the_cgroup_version() {
        let r = Resources {
            memory: Some(Memory {
                limit: Some(64 << 20),
                swap: Some(96 << 20),
                ..Default::default()
            }),
            cpu: Some(Cpu {
                shares: Some(1024),
                quota: Some(25_000),
                period: Some(100_000),
                cpus: Some("0-1,3".into()),
                ..Default::default()
            }),
            pids: Some(Pids { limit: 32 }),
            ..Default::default()
        };
        let v2 = properties(&r, true);
        let get =
            |p: &[(String, Value)], k: &str| p.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get(&v2, "MemoryMax"), Some(Value::U64(64 << 20)));
        assert_eq!(get(&v2, "MemorySwapMax"), Some(Value::U64(32 << 20)));
        assert_eq!(get(&v2, "CPUWeight"), Some(Value::U64(39)));
        assert_eq!(get(&v2, "CPUQuotaPerSecUSec"), Some(Value::U64(250_000)));
        assert_eq!(get(&v2, "AllowedCPUs"), Some(Value::Bytes(vec![0b1011])));
        assert_eq!(get(&v2, "TasksMax"), Some(Value::U64(32)));
        let v1 = properties(&r, false);
        assert_eq!(get(&v1, "MemoryLimit"), Some(Value::U64(64 << 20)));
        assert_eq!(get(&v1, "CPUShares"), Some(Value::U64(1024)));
        assert_eq!(get(&v1, "AllowedCPUs"), None);
        // Quota rounds up to systemd's 10 ms; no limit is infinity.
        let r = Resources {
            cpu: Some(Cpu {
                quota: Some(12_345),
                ..Default::default()
            }),
            pids: Some(Pids { limit: 0 }),
            ..Default::default()
        };
        let p = properties(&r, true);
        assert_eq!(get(&p, "CPUQuotaPerSecUSec"), Some(Value::U64(130_000)));
        assert_eq!(get(&p, "TasksMax"), Some(Value::U64(u64::MAX)));
    }

    #[test]
    fn cpu_lists_become_bitmasks() {
        assert_eq!(cpu_mask("0"), Some(vec![1]));
        assert_eq!(cpu_mask("0-9"), Some(vec![0xff, 0x03]));
        assert_eq!(cpu_mask("8,10"), Some(vec![0, 0b101]));
        assert_eq!(cpu_mask("3-1"), None);
        assert_eq!(cpu_mask("x"), None);
        assert_eq!(cpu_mask("0-99999"), None);
    }
}
