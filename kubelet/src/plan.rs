//! What a pod needs next, from its spec and what the runtime has: the pure
//! heart of a pod worker's sync (the worker only carries the plan out).
//! Containers are judged in the current (newest) sandbox; older sandboxes'
//! containers only count for restart counts and history.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::backoff::{BackOff, RESET_AFTER_RUNNING};
use crate::pod::{Pod, RestartPolicy};
use crate::runtime_pod::{ContainerState, RuntimePod};

/// A pod's phase, as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Running,
    Succeeded,
    Failed,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Running => "Running",
            Phase::Succeeded => "Succeeded",
            Phase::Failed => "Failed",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Phase::Succeeded | Phase::Failed)
    }
}

/// How a start changes the container's back-off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackOffUpdate {
    /// A first start, or a restart the spec asked for (no back-off).
    None,
    /// A restart after a crash: the next wait doubles.
    Next,
    /// A restart after a long run: the back-off starts over.
    ResetThenNext,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Start {
    pub init: bool,
    /// Index in the pod's init or regular containers.
    pub index: usize,
    pub restart_count: u32,
    pub backoff: BackOffUpdate,
}

/// A container waits, and why (the status's `waiting` state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Create a sandbox with this attempt number.
    pub create_sandbox: Option<u32>,
    /// Stop these sandboxes (older ones still ready; the pod's own once it
    /// has finished).
    pub stop_sandboxes: Vec<String>,
    /// Stop (and, for `remove`, remove) these containers first.
    pub kill: Vec<Kill>,
    pub start: Vec<Start>,
    pub waiting: BTreeMap<String, Waiting>,
    /// Sync again after this long (a back-off ends).
    pub wake_in: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kill {
    pub id: String,
    pub name: String,
    pub reason: &'static str,
    /// Remove it as well (it was created but never started).
    pub remove: bool,
}

/// The back-off key of a pod's container (a new spec starts over).
pub fn backoff_key(pod: &Pod, name: &str, hash: &str) -> String {
    format!("{}/{name}/{hash}", pod.uid)
}

/// Whether the init containers are done in sandbox `sb`: each exited 0, or
/// a regular container was already started there.
/// Whether the init sequence is over in sandbox `sb`: a regular container
/// exists there, or every init container has completed (a sidecar: is
/// running and past its startup probe).
fn init_done(pod: &Pod, rt: &RuntimePod, sb: &str) -> bool {
    pod.containers
        .iter()
        .any(|c| rt.latest_in(&c.name, sb).is_some())
        || pod.init_containers.iter().all(|c| {
            let latest = rt.latest_in(&c.name, sb);
            if c.sidecar {
                latest.is_some_and(|x| {
                    matches!(x.state, ContainerState::Running { .. })
                        && !rt.startup_pending.contains(&x.id)
                })
            } else {
                matches!(
                    latest.map(|x| &x.state),
                    Some(ContainerState::Exited { exit_code: 0, .. })
                )
            }
        })
}

/// The pod's phase from what the runtime has.
pub fn phase(pod: &Pod, rt: &RuntimePod) -> Phase {
    let Some(sb) = rt.current_sandbox() else {
        return Phase::Pending;
    };
    if !init_done(pod, rt, &sb.id) {
        let failed = pod.init_containers.iter().filter(|c| !c.sidecar).any(|c| {
            matches!(rt.latest(&c.name).map(|x| &x.state), Some(ContainerState::Exited { exit_code, .. }) if *exit_code != 0)
        });
        return if failed && pod.restart_policy == RestartPolicy::Never {
            Phase::Failed
        } else {
            Phase::Pending
        };
    }
    let (mut running, mut never, mut ok, mut failed) = (0, 0, 0, 0);
    for c in &pod.containers {
        let latest = rt.latest(&c.name);
        let probe_killed = latest.is_some_and(|x| rt.probe_killed.contains(&x.id));
        match latest.map(|x| &x.state) {
            Some(ContainerState::Running { .. }) => running += 1,
            // Killed for a failed probe: OnFailure restarts it.
            Some(ContainerState::Exited { exit_code: 0, .. })
                if probe_killed && pod.restart_policy == RestartPolicy::OnFailure =>
            {
                failed += 1
            }
            Some(ContainerState::Exited { exit_code: 0, .. }) => ok += 1,
            Some(ContainerState::Exited { .. }) | Some(ContainerState::Unknown) => failed += 1,
            None | Some(ContainerState::Created) => never += 1,
        }
    }
    if never > 0 && running == 0 && ok + failed == 0 {
        return Phase::Pending;
    }
    if running > 0 || never > 0 {
        return Phase::Running;
    }
    match pod.restart_policy {
        RestartPolicy::Always => Phase::Running,
        RestartPolicy::OnFailure if failed == 0 => Phase::Succeeded,
        RestartPolicy::OnFailure => Phase::Running,
        RestartPolicy::Never if failed == 0 => Phase::Succeeded,
        RestartPolicy::Never => Phase::Failed,
    }
}

/// Decide the next steps for `pod`. `now_ns` is the wall clock in ns.
pub fn plan(pod: &Pod, rt: &RuntimePod, backoff: &BackOff, now_ns: i64) -> Plan {
    let mut p = Plan::default();
    let current = rt.current_sandbox();
    if phase(pod, rt).is_terminal() {
        p.stop_sandboxes = rt
            .sandboxes
            .iter()
            .filter(|s| s.ready)
            .map(|s| s.id.clone())
            .collect();
        return p;
    }
    // Older sandboxes still up are stopped (and their containers with them).
    for s in rt.sandboxes.iter().skip(1).filter(|s| s.ready) {
        p.stop_sandboxes.push(s.id.clone());
    }
    let sb_id = match current {
        Some(s) if s.ready => s.id.clone(),
        _ => {
            // No usable sandbox: a new one, and every container starts over in it.
            p.create_sandbox = Some(current.map(|s| s.attempt + 1).unwrap_or(0));
            for c in rt.containers.iter().filter(|c| c.is_running()) {
                p.kill.push(Kill {
                    id: c.id.clone(),
                    name: c.name.clone(),
                    reason: "sandbox changed",
                    remove: false,
                });
            }
            String::new()
        }
    };
    for c in rt
        .containers
        .iter()
        .filter(|c| c.sandbox_id != sb_id && c.is_running() && !sb_id.is_empty())
    {
        p.kill.push(Kill {
            id: c.id.clone(),
            name: c.name.clone(),
            reason: "in an old sandbox",
            remove: false,
        });
    }
    let next_count = |name: &str| rt.latest(name).map(|c| c.restart_count + 1).unwrap_or(0);

    // One container's decision; returns true when it is done (or running).
    let decide = |init: bool, index: usize, p: &mut Plan| -> bool {
        let spec = if init {
            &pod.init_containers[index]
        } else {
            &pod.containers[index]
        };
        let key = backoff_key(pod, &spec.name, &spec.hash);
        let Some(inst) = rt.latest_in(&spec.name, &sb_id) else {
            p.start.push(Start {
                init,
                index,
                restart_count: next_count(&spec.name),
                backoff: BackOffUpdate::None,
            });
            return false;
        };
        match &inst.state {
            ContainerState::Running { .. } if inst.hash != spec.hash => {
                p.kill.push(Kill {
                    id: inst.id.clone(),
                    name: spec.name.clone(),
                    reason: "its spec changed",
                    remove: false,
                });
                p.start.push(Start {
                    init,
                    index,
                    restart_count: inst.restart_count + 1,
                    backoff: BackOffUpdate::None,
                });
                false
            }
            // A sidecar lets the next init container go once started.
            ContainerState::Running { .. } if spec.sidecar => {
                !rt.startup_pending.contains(&inst.id)
            }
            ContainerState::Running { .. } => !init,
            ContainerState::Created | ContainerState::Unknown => {
                p.kill.push(Kill {
                    id: inst.id.clone(),
                    name: spec.name.clone(),
                    reason: "it never started",
                    remove: true,
                });
                p.start.push(Start {
                    init,
                    index,
                    restart_count: inst.restart_count + 1,
                    backoff: BackOffUpdate::None,
                });
                false
            }
            ContainerState::Exited { exit_code: 0, .. } if init && !spec.sidecar => true,
            ContainerState::Exited {
                started_at,
                finished_at,
                exit_code,
                ..
            } => {
                let restart = match pod.restart_policy {
                    // Sidecars restart whatever the pod's policy.
                    _ if spec.sidecar => true,
                    RestartPolicy::Always => true,
                    RestartPolicy::OnFailure => {
                        *exit_code != 0 || rt.probe_killed.contains(&inst.id)
                    }
                    RestartPolicy::Never => false,
                };
                if !restart {
                    return true;
                }
                let ran_long =
                    Duration::from_nanos(finished_at.saturating_sub(*started_at).max(0) as u64)
                        >= RESET_AFTER_RUNNING;
                if !ran_long && let Some(left) = backoff.remaining(&key, *finished_at, now_ns) {
                    p.waiting.insert(
                        spec.name.clone(),
                        Waiting {
                            reason: "CrashLoopBackOff".into(),
                            message: format!(
                                "back-off {}s restarting failed container={} pod={}_{}({})",
                                backoff.delay(&key).as_secs(),
                                spec.name,
                                pod.name,
                                pod.namespace,
                                pod.uid
                            ),
                        },
                    );
                    p.wake_in = Some(p.wake_in.map_or(left, |w| w.min(left)));
                    return false;
                }
                let backoff = if ran_long {
                    BackOffUpdate::ResetThenNext
                } else {
                    BackOffUpdate::Next
                };
                p.start.push(Start {
                    init,
                    index,
                    restart_count: inst.restart_count + 1,
                    backoff,
                });
                false
            }
        }
    };

    if sb_id.is_empty() || !init_done(pod, rt, &sb_id) {
        for i in 0..pod.init_containers.len() {
            if !decide(true, i, &mut p) {
                return p;
            }
        }
    } else {
        // Initialized: the sidecars are kept running beside the containers.
        for (i, c) in pod.init_containers.iter().enumerate() {
            if c.sidecar {
                decide(true, i, &mut p);
            }
        }
    }
    for i in 0..pod.containers.len() {
        decide(false, i, &mut p);
    }
    p
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::runtime_pod::{RuntimeContainer, RuntimeSandbox};

    pub const S: i64 = 1_000_000_000;

    pub fn pod(extra_spec: &str, containers: &str) -> Pod {
        let y = format!(
            "metadata: {{name: p, uid: u1}}\nspec: {{{extra_spec} containers: [{containers}]}}\n"
        );
        let v: serde_json::Value = serde_saphyr::from_str(&y).unwrap();
        Pod::from_api(serde_json::from_value(v).unwrap()).unwrap().0
    }

    pub fn sandbox(id: &str, attempt: u32, ready: bool, t: i64) -> RuntimeSandbox {
        RuntimeSandbox {
            id: id.into(),
            attempt,
            ready,
            created_at: t,
            ip: Some("10.0.0.2".into()),
        }
    }

    pub fn ctr(
        pod: &Pod,
        name: &str,
        sb: &str,
        rc: u32,
        t: i64,
        state: ContainerState,
    ) -> RuntimeContainer {
        let hash = pod
            .all_containers()
            .find(|c| c.name == name)
            .unwrap()
            .hash
            .clone();
        RuntimeContainer {
            id: format!("{name}-{rc}"),
            sandbox_id: sb.into(),
            name: name.into(),
            restart_count: rc,
            hash,
            created_at: t,
            state,
            image_ref: "sha256:img".into(),
            grace_period: Some(30),
        }
    }

    pub fn exited(code: i32, start: i64, end: i64) -> ContainerState {
        ContainerState::Exited {
            started_at: start,
            finished_at: end,
            exit_code: code,
            reason: "Error".into(),
            message: String::new(),
        }
    }

    #[test]
    fn a_new_pod_gets_a_sandbox_and_its_first_init_container() {
        let p = pod(
            "initContainers: [{name: i1, image: b}, {name: i2, image: b}],",
            "{name: a, image: b}",
        );
        let plan = plan(&p, &RuntimePod::default(), &BackOff::default(), 0);
        assert_eq!(plan.create_sandbox, Some(0));
        assert_eq!(
            plan.start,
            [Start {
                init: true,
                index: 0,
                restart_count: 0,
                backoff: BackOffUpdate::None
            }]
        );
        assert_eq!(phase(&p, &RuntimePod::default()), Phase::Pending);
    }

    #[test]
    fn sidecars_start_in_order_keep_running_and_restart_whatever_the_policy() {
        let p = pod(
            "restartPolicy: Never, initContainers: [{name: side, image: b, restartPolicy: Always, startupProbe: {exec: {command: [x]}}}, {name: i2, image: b}],",
            "{name: a, image: b}",
        );
        assert!(p.init_containers[0].sidecar && !p.init_containers[1].sidecar);
        let sb = vec![sandbox("sb", 0, true, S)];
        let b = BackOff::default();
        let running = |t| ContainerState::Running { started_at: t };
        // The sidecar runs but has not passed its startup probe: wait.
        let mut rt = RuntimePod::new(
            sb.clone(),
            vec![ctr(&p, "side", "sb", 0, 2 * S, running(2 * S))],
        );
        rt.startup_pending.insert("side-0".into());
        assert_eq!(plan(&p, &rt, &b, 3 * S), Plan::default());
        assert_eq!(phase(&p, &rt), Phase::Pending);
        // Started: the next init container goes, the sidecar stays.
        rt.startup_pending.clear();
        let pl = plan(&p, &rt, &b, 3 * S);
        assert_eq!(
            pl.start
                .iter()
                .map(|s| (s.init, s.index))
                .collect::<Vec<_>>(),
            [(true, 1)]
        );
        assert!(pl.kill.is_empty());
        // Initialized and the container runs: the sidecar's exit restarts
        // it (the pod's Never is not the sidecar's) and nothing else moves.
        let rt = RuntimePod::new(
            sb.clone(),
            vec![
                ctr(&p, "side", "sb", 0, 2 * S, exited(1, 2 * S, 9 * S)),
                ctr(&p, "i2", "sb", 0, 4 * S, exited(0, 4 * S, 5 * S)),
                ctr(&p, "a", "sb", 0, 6 * S, running(6 * S)),
            ],
        );
        let pl = plan(&p, &rt, &b, 10 * S);
        assert_eq!(
            pl.start
                .iter()
                .map(|s| (s.init, s.index))
                .collect::<Vec<_>>(),
            [(true, 0)]
        );
        assert_eq!(phase(&p, &rt), Phase::Running);
        // The container is done: the pod is, whatever the sidecar does.
        let rt = RuntimePod::new(
            sb.clone(),
            vec![
                ctr(&p, "side", "sb", 0, 2 * S, running(2 * S)),
                ctr(&p, "i2", "sb", 0, 4 * S, exited(0, 4 * S, 5 * S)),
                ctr(&p, "a", "sb", 0, 6 * S, exited(0, 6 * S, 8 * S)),
            ],
        );
        assert_eq!(phase(&p, &rt), Phase::Succeeded);
        assert_eq!(plan(&p, &rt, &b, 9 * S).stop_sandboxes, ["sb"]);
    }

    #[test]
    fn init_containers_run_in_order_then_the_containers() {
        let p = pod(
            "initContainers: [{name: i1, image: b}, {name: i2, image: b}],",
            "{name: a, image: b}, {name: c, image: b}",
        );
        let sb = vec![sandbox("sb", 0, true, S)];
        let b = BackOff::default();
        // i1 running: wait.
        let rt = RuntimePod::new(
            sb.clone(),
            vec![ctr(
                &p,
                "i1",
                "sb",
                0,
                2 * S,
                ContainerState::Running { started_at: 2 * S },
            )],
        );
        assert_eq!(plan(&p, &rt, &b, 3 * S), Plan::default());
        // i1 done: i2.
        let rt = RuntimePod::new(
            sb.clone(),
            vec![ctr(&p, "i1", "sb", 0, 2 * S, exited(0, 2 * S, 3 * S))],
        );
        assert_eq!(
            plan(&p, &rt, &b, 4 * S).start,
            [Start {
                init: true,
                index: 1,
                restart_count: 0,
                backoff: BackOffUpdate::None
            }]
        );
        // Both done: all containers at once.
        let rt = RuntimePod::new(
            sb.clone(),
            vec![
                ctr(&p, "i1", "sb", 0, 2 * S, exited(0, 2 * S, 3 * S)),
                ctr(&p, "i2", "sb", 0, 4 * S, exited(0, 4 * S, 5 * S)),
            ],
        );
        let pl = plan(&p, &rt, &b, 6 * S);
        assert_eq!(
            pl.start
                .iter()
                .map(|s| (s.init, s.index))
                .collect::<Vec<_>>(),
            [(false, 0), (false, 1)]
        );
        assert_eq!(phase(&p, &rt), Phase::Pending);
    }

    #[test]
    fn crash_loop_back_off() {
        let p = pod("", "{name: a, image: b}");
        let sb = vec![sandbox("sb", 0, true, S)];
        let mut b = BackOff::default();
        // First crash: restart at once, back-off starts.
        let rt = RuntimePod::new(
            sb.clone(),
            vec![ctr(&p, "a", "sb", 0, 2 * S, exited(1, 2 * S, 3 * S))],
        );
        let pl = plan(&p, &rt, &b, 3 * S);
        assert_eq!(
            pl.start,
            [Start {
                init: false,
                index: 0,
                restart_count: 1,
                backoff: BackOffUpdate::Next
            }]
        );
        b.next(&backoff_key(&p, "a", &p.containers[0].hash), 3 * S);
        // Second crash 1 s later: wait 10 s from the exit.
        let rt = RuntimePod::new(
            sb.clone(),
            vec![
                ctr(&p, "a", "sb", 1, 3 * S, exited(1, 3 * S, 4 * S)),
                ctr(&p, "a", "sb", 0, 2 * S, exited(1, 2 * S, 3 * S)),
            ],
        );
        let pl = plan(&p, &rt, &b, 5 * S);
        assert!(pl.start.is_empty());
        assert_eq!(pl.waiting["a"].reason, "CrashLoopBackOff");
        assert!(
            pl.waiting["a"]
                .message
                .starts_with("back-off 10s restarting failed container=a"),
            "{}",
            pl.waiting["a"].message
        );
        assert_eq!(pl.wake_in, Some(Duration::from_secs(9)));
        assert_eq!(phase(&p, &rt), Phase::Running);
        // After it: restart with count 2.
        assert_eq!(plan(&p, &rt, &b, 14 * S).start[0].restart_count, 2);
        // A container that ran 10 minutes starts its back-off over.
        let rt = RuntimePod::new(
            sb,
            vec![ctr(&p, "a", "sb", 1, 3 * S, exited(1, 3 * S, 700 * S))],
        );
        assert_eq!(
            plan(&p, &rt, &b, 701 * S).start[0].backoff,
            BackOffUpdate::ResetThenNext
        );
    }

    #[test]
    fn restart_policies() {
        let sb = vec![sandbox("sb", 0, true, S)];
        let b = BackOff::default();
        for (policy, code, restarts, ph) in [
            ("Always", 0, true, Phase::Running),
            ("OnFailure", 0, false, Phase::Succeeded),
            ("OnFailure", 3, true, Phase::Running),
            ("Never", 0, false, Phase::Succeeded),
            ("Never", 3, false, Phase::Failed),
        ] {
            let p = pod(&format!("restartPolicy: {policy},"), "{name: a, image: b}");
            let rt = RuntimePod::new(
                sb.clone(),
                vec![ctr(&p, "a", "sb", 0, 2 * S, exited(code, 2 * S, 3 * S))],
            );
            let pl = plan(&p, &rt, &b, 4 * S);
            assert_eq!(!pl.start.is_empty(), restarts, "{policy} exit {code}");
            assert_eq!(phase(&p, &rt), ph, "{policy} exit {code}");
            // A finished pod's sandbox is stopped.
            assert_eq!(pl.stop_sandboxes.is_empty(), !ph.is_terminal());
        }
        // A failed init container fails a Never pod.
        let p = pod(
            "restartPolicy: Never, initContainers: [{name: i, image: b}],",
            "{name: a, image: b}",
        );
        let rt = RuntimePod::new(
            sb,
            vec![ctr(&p, "i", "sb", 0, 2 * S, exited(1, 2 * S, 3 * S))],
        );
        assert_eq!(phase(&p, &rt), Phase::Failed);
    }

    #[test]
    fn a_container_killed_for_a_failed_probe_counts_as_failed() {
        let sb = vec![sandbox("sb", 0, true, S)];
        let b = BackOff::default();
        for (policy, restarts, ph) in [
            ("OnFailure", true, Phase::Running),
            ("Never", false, Phase::Succeeded),
            ("Always", true, Phase::Running),
        ] {
            let p = pod(&format!("restartPolicy: {policy},"), "{name: a, image: b}");
            let mut rt = RuntimePod::new(
                sb.clone(),
                vec![ctr(&p, "a", "sb", 0, 2 * S, exited(0, 2 * S, 3 * S))],
            );
            rt.probe_killed.insert("a-0".into());
            assert_eq!(
                !plan(&p, &rt, &b, 4 * S).start.is_empty(),
                restarts,
                "{policy}"
            );
            assert_eq!(phase(&p, &rt), ph, "{policy}");
        }
    }

    #[test]
    fn a_running_pod_is_left_alone() {
        let p = pod("", "{name: a, image: b}, {name: c, image: b}");
        let rt = RuntimePod::new(
            vec![sandbox("sb", 0, true, S)],
            vec![
                ctr(
                    &p,
                    "a",
                    "sb",
                    0,
                    2 * S,
                    ContainerState::Running { started_at: 2 * S },
                ),
                ctr(
                    &p,
                    "c",
                    "sb",
                    3,
                    2 * S,
                    ContainerState::Running { started_at: 2 * S },
                ),
            ],
        );
        assert_eq!(plan(&p, &rt, &BackOff::default(), 9 * S), Plan::default());
        assert_eq!(phase(&p, &rt), Phase::Running);
    }

    #[test]
    fn a_dead_sandbox_is_replaced_and_counts_go_on() {
        let p = pod("", "{name: a, image: b}");
        let rt = RuntimePod::new(
            vec![sandbox("sb", 0, false, S)],
            vec![ctr(&p, "a", "sb", 4, 2 * S, exited(137, 2 * S, 3 * S))],
        );
        let pl = plan(&p, &rt, &BackOff::default(), 4 * S);
        assert_eq!(pl.create_sandbox, Some(1));
        assert_eq!(
            pl.start,
            [Start {
                init: false,
                index: 0,
                restart_count: 5,
                backoff: BackOffUpdate::None
            }]
        );
    }

    #[test]
    fn changed_and_stuck_containers_are_replaced() {
        let p = pod("", "{name: a, image: b}");
        let mut old = ctr(
            &p,
            "a",
            "sb",
            0,
            2 * S,
            ContainerState::Running { started_at: 2 * S },
        );
        old.hash = "old".into();
        let rt = RuntimePod::new(vec![sandbox("sb", 0, true, S)], vec![old]);
        let pl = plan(&p, &rt, &BackOff::default(), 3 * S);
        assert_eq!(pl.kill[0].reason, "its spec changed");
        assert_eq!(pl.start[0].restart_count, 1);
        let rt = RuntimePod::new(
            vec![sandbox("sb", 0, true, S)],
            vec![ctr(&p, "a", "sb", 0, 2 * S, ContainerState::Created)],
        );
        let pl = plan(&p, &rt, &BackOff::default(), 3 * S);
        assert!(pl.kill[0].remove);
        assert_eq!(pl.start.len(), 1);
    }
}
