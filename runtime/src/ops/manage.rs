//! state, list, kill, pause, resume, ps, update, events.

use std::io::Write;
use std::os::fd::AsFd;

use super::Runtime;
use crate::config::spec::{Cpu, Memory, Pids, Resources};
use crate::error::Error;
use crate::id::ContainerId;
use crate::state::{self, Container, Status};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListFormat {
    Table,
    Json,
}

/// `update`'s flags (runc's names), merged over a `-r` JSON.
#[derive(Debug, Clone, Default)]
pub struct UpdateFlags {
    pub memory: Option<i64>,
    pub memory_swap: Option<i64>,
    pub memory_reservation: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
    pub cpu_burst: Option<u64>,
    pub cpu_idle: Option<i64>,
    pub cpuset_cpus: Option<String>,
    pub cpuset_mems: Option<String>,
    pub pids_limit: Option<i64>,
    pub blkio_weight: Option<u16>,
}

impl UpdateFlags {
    pub fn merge_into(&self, r: &mut Resources) {
        if self.memory.is_some() || self.memory_swap.is_some() || self.memory_reservation.is_some()
        {
            let m = r.memory.get_or_insert_with(Memory::default);
            m.limit = self.memory.or(m.limit);
            m.swap = self.memory_swap.or(m.swap);
            m.reservation = self.memory_reservation.or(m.reservation);
        }
        let any_cpu = self.cpu_shares.is_some()
            || self.cpu_quota.is_some()
            || self.cpu_period.is_some()
            || self.cpu_burst.is_some()
            || self.cpu_idle.is_some()
            || self.cpuset_cpus.is_some()
            || self.cpuset_mems.is_some();
        if any_cpu {
            let c = r.cpu.get_or_insert_with(Cpu::default);
            c.shares = self.cpu_shares.or(c.shares);
            c.quota = self.cpu_quota.or(c.quota);
            c.period = self.cpu_period.or(c.period);
            c.burst = self.cpu_burst.or(c.burst);
            c.idle = self.cpu_idle.or(c.idle);
            c.cpus = self.cpuset_cpus.clone().or(c.cpus.take());
            c.mems = self.cpuset_mems.clone().or(c.mems.take());
        }
        if let Some(l) = self.pids_limit {
            r.pids = Some(Pids { limit: l });
        }
        if let Some(w) = self.blkio_weight {
            r.block_io.get_or_insert_with(Default::default).weight = Some(w);
        }
    }
}

impl Runtime {
    pub fn state(&self, id: &ContainerId) -> Result<serde_json::Value, Error> {
        Ok(Container::load(&self.root, id)?.oci_state())
    }

    pub fn list(&self, format: ListFormat, quiet: bool, out: &mut dyn Write) -> Result<(), Error> {
        let ids = state::list_ids(&self.root)
            .map_err(Error::io(&"-", format!("list {}", self.root.display())))?;
        let mut states = Vec::with_capacity(ids.len());
        for id in &ids {
            if let Ok(c) = Container::load(&self.root, id) {
                states.push(c.oci_state());
            }
        }
        let w = |e: std::io::Error| Error::io(&"-", "write")(e);
        if quiet {
            for s in &states {
                writeln!(out, "{}", s["id"].as_str().unwrap_or("")).map_err(w)?;
            }
            return Ok(());
        }
        match format {
            ListFormat::Json => {
                writeln!(out, "{}", serde_json::Value::Array(states)).map_err(w)?;
            }
            ListFormat::Table => {
                let rows: Vec<[String; 6]> = states
                    .iter()
                    .map(|s| {
                        let f = |k: &str| match &s[k] {
                            serde_json::Value::String(v) => v.clone(),
                            v => v.to_string(),
                        };
                        [
                            f("id"),
                            f("pid"),
                            f("status"),
                            f("bundle"),
                            f("created"),
                            f("owner"),
                        ]
                    })
                    .collect();
                let head = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(str::to_owned);
                let mut widths = [0usize; 6];
                for r in std::iter::once(&head).chain(rows.iter()) {
                    for (i, c) in r.iter().enumerate() {
                        widths[i] = widths[i].max(c.len());
                    }
                }
                for r in std::iter::once(&head).chain(rows.iter()) {
                    let line: Vec<String> = r
                        .iter()
                        .enumerate()
                        .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
                        .collect();
                    writeln!(out, "{}", line.join("   ").trim_end()).map_err(w)?;
                }
            }
        }
        Ok(())
    }

    pub fn kill(&self, id: &ContainerId, sig: i32, all: bool) -> Result<(), Error> {
        let c = Container::load(&self.root, id)?;
        if !c.status().can_kill() {
            return Err(Error::status(id, "container not running"));
        }
        if all || !c.state.own_pid_ns {
            for pid in c.state.cgroup.pids().map_err(Error::cgroup(id))? {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::try_from(sig).ok(),
                );
            }
            if c.status() == Status::Paused && sig == libc::SIGKILL {
                let _ = c.state.cgroup.freeze(false);
            }
            return Ok(());
        }
        // A pidfd pins the process: no signal to a recycled pid.
        let pidfd =
            crate::sys::pidfd_open(c.state.pid).map_err(Error::io(id, "open init pidfd"))?;
        if !c.init_alive() {
            return Err(Error::status(id, "container not running"));
        }
        crate::sys::pidfd_send_signal(pidfd.as_fd(), sig)
            .map_err(Error::io(id, format!("send signal {sig}")))
    }

    pub fn pause(&self, id: &ContainerId) -> Result<(), Error> {
        let c = Container::load(&self.root, id)?;
        if !c.status().can_pause() {
            return Err(Error::status(id, "container not running"));
        }
        c.state.cgroup.freeze(true).map_err(Error::cgroup(id))
    }

    pub fn resume(&self, id: &ContainerId) -> Result<(), Error> {
        let c = Container::load(&self.root, id)?;
        if c.status() != Status::Paused {
            return Err(Error::status(id, "container not paused"));
        }
        c.state.cgroup.freeze(false).map_err(Error::cgroup(id))
    }

    pub fn pids(&self, id: &ContainerId) -> Result<Vec<i32>, Error> {
        let c = Container::load(&self.root, id)?;
        c.state.cgroup.pids().map_err(Error::cgroup(id))
    }

    pub fn update(
        &self,
        id: &ContainerId,
        mut r: Resources,
        flags: &UpdateFlags,
    ) -> Result<(), Error> {
        let c = Container::load(&self.root, id)?;
        if c.status() == Status::Stopped {
            return Err(Error::status(id, "container not running"));
        }
        flags.merge_into(&mut r);
        // Device rules are fixed at create (runc does not update them).
        r.devices.clear();
        if let Some(unit) = &c.state.systemd_unit {
            let v2 = matches!(c.state.cgroup, crate::cgroups::CgroupPaths::V2 { .. });
            crate::cgroups::systemd::Systemd::connect()
                .and_then(|mut sd| sd.set_properties(unit, &r, v2))
                .map_err(Error::cgroup(id))?;
        }
        match &c.state.cgroup {
            crate::cgroups::CgroupPaths::V1 { dirs } => {
                crate::cgroups::v1::apply_writes(dirs, &r, &[], false)
            }
            cg => cg.apply(&r),
        }
        .map_err(Error::cgroup(id))
    }

    /// runc's `events --stats` object.
    pub fn stats(&self, id: &ContainerId) -> Result<serde_json::Value, Error> {
        let c = Container::load(&self.root, id)?;
        if c.status() == Status::Stopped {
            return Err(Error::status(id, "container not running"));
        }
        Ok(serde_json::json!({"type": "stats", "id": id.as_str(), "data": c.state.cgroup.stats()}))
    }
}
