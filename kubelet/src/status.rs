//! A pod's status (the API's PodStatus) from its spec, what the runtime has
//! and why containers wait. Pure: the worker passes the previous status so
//! conditions keep their transition times.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1 as api;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

use crate::plan::{Phase, Waiting, phase};
use crate::pod::{Container, Pod};
use crate::prober::Results;
use crate::runtime_pod::{ContainerState, RuntimeContainer, RuntimePod};

/// What the status needs besides spec and runtime.
pub struct StatusInput<'a> {
    /// Why containers wait (back-off, image pull errors), by name.
    pub waiting: &'a BTreeMap<String, Waiting>,
    /// The runtime's name, for container IDs (`containerd://<id>`).
    pub runtime_name: &'a str,
    pub host_ip: Option<&'a str>,
    pub now_ns: i64,
    pub previous: Option<&'a api::PodStatus>,
    /// The probes' verdicts: `started` and `ready` follow them.
    pub probes: &'a Results,
}

pub fn time(ns: i64) -> Option<Time> {
    (ns > 0)
        .then(|| Time(Timestamp::from_second(ns / 1_000_000_000).unwrap_or(Timestamp::UNIX_EPOCH)))
}

fn terminated(c: &RuntimeContainer, runtime: &str) -> Option<api::ContainerStateTerminated> {
    match &c.state {
        ContainerState::Exited {
            started_at,
            finished_at,
            exit_code,
            reason,
            message,
        } => Some(api::ContainerStateTerminated {
            container_id: Some(format!("{runtime}://{}", c.id)),
            exit_code: *exit_code,
            reason: Some(reason.clone()).filter(|r| !r.is_empty()),
            message: Some(message.clone()).filter(|m| !m.is_empty()),
            started_at: time(*started_at),
            finished_at: time(*finished_at),
            signal: None,
        }),
        _ => None,
    }
}

fn waiting(reason: &str, message: Option<String>) -> api::ContainerState {
    api::ContainerState {
        waiting: Some(api::ContainerStateWaiting {
            reason: Some(reason.into()),
            message,
        }),
        ..Default::default()
    }
}

fn container_status(
    spec: &Container,
    rt: &RuntimePod,
    input: &StatusInput,
    default_wait: &str,
) -> api::ContainerStatus {
    let mut history = rt.history(&spec.name);
    let latest = history.next();
    let previous_exit = history.find_map(|c| terminated(c, input.runtime_name));
    let (state, last_state) = match (input.waiting.get(&spec.name), latest) {
        // Waiting to restart: the latest run is the last state.
        (Some(w), Some(l)) if terminated(l, input.runtime_name).is_some() => (
            waiting(&w.reason, Some(w.message.clone())),
            terminated(l, input.runtime_name),
        ),
        (Some(w), _) => (waiting(&w.reason, Some(w.message.clone())), previous_exit),
        (None, None) => (waiting(default_wait, None), None),
        (None, Some(l)) => {
            let state = match &l.state {
                ContainerState::Running { started_at } => api::ContainerState {
                    running: Some(api::ContainerStateRunning {
                        started_at: time(*started_at),
                    }),
                    ..Default::default()
                },
                ContainerState::Exited { .. } => api::ContainerState {
                    terminated: terminated(l, input.runtime_name),
                    ..Default::default()
                },
                ContainerState::Created => waiting("ContainerCreating", None),
                ContainerState::Unknown => waiting("ContainerStatusUnknown", None),
            };
            (state, previous_exit)
        }
    };
    // Started: running and past its startup probe; ready: started and
    // past its readiness probe (a container without probes is both while
    // it runs).
    let running_id = latest
        .filter(|_| state.running.is_some())
        .map(|l| l.id.as_str());
    let started = running_id.is_some_and(|id| input.probes.started(spec, id));
    let ready = running_id.is_some_and(|id| input.probes.ready(spec, id));
    api::ContainerStatus {
        name: spec.name.clone(),
        image: spec.image.clone(),
        image_id: latest.map(|l| l.image_ref.clone()).unwrap_or_default(),
        container_id: latest.map(|l| format!("{}://{}", input.runtime_name, l.id)),
        restart_count: latest.map(|l| l.restart_count as i32).unwrap_or(0),
        ready,
        started: Some(started),
        state: Some(state),
        last_state: Some(
            last_state
                .map(|t| api::ContainerState {
                    terminated: Some(t),
                    ..Default::default()
                })
                .unwrap_or_default(),
        ),
        ..Default::default()
    }
}

/// The pod's status.
pub fn pod_status(pod: &Pod, rt: &RuntimePod, input: &StatusInput) -> api::PodStatus {
    let ph = phase(pod, rt);
    let sandbox_ready = rt.current_sandbox().is_some_and(|s| s.ready);
    let init_statuses: Vec<_> = pod
        .init_containers
        .iter()
        .map(|c| container_status(c, rt, input, "PodInitializing"))
        .collect();
    let initialized = pod.init_containers.is_empty()
        || ph.is_terminal() && ph == Phase::Succeeded
        || pod.containers.iter().any(|c| rt.latest(&c.name).is_some())
        || pod
            .init_containers
            .iter()
            .zip(&init_statuses)
            .all(|(c, s)| {
                if c.sidecar {
                    s.started == Some(true)
                } else {
                    s.state
                        .as_ref()
                        .and_then(|s| s.terminated.as_ref())
                        .is_some_and(|t| t.exit_code == 0)
                }
            });
    let wait = if initialized {
        "ContainerCreating"
    } else {
        "PodInitializing"
    };
    let statuses: Vec<_> = pod
        .containers
        .iter()
        .map(|c| container_status(c, rt, input, wait))
        .collect();
    // Sidecars count for readiness, as upstream.
    let all_ready = statuses.iter().all(|s| s.ready)
        && pod
            .init_containers
            .iter()
            .zip(&init_statuses)
            .all(|(c, s)| !c.sidecar || s.ready);

    let prev_conditions = input.previous.and_then(|p| p.conditions.as_ref());
    let condition = |type_: &str, ok: bool, reason: Option<&str>| {
        let status = if ok { "True" } else { "False" };
        let since = prev_conditions
            .and_then(|cs| cs.iter().find(|c| c.type_ == type_ && c.status == status))
            .and_then(|c| c.last_transition_time.clone())
            .or_else(|| time(input.now_ns));
        api::PodCondition {
            type_: type_.into(),
            status: status.into(),
            last_transition_time: since,
            reason: (!ok).then(|| reason.map(str::to_owned)).flatten(),
            ..Default::default()
        }
    };
    let not_ready = if ph.is_terminal() {
        "PodCompleted"
    } else {
        "ContainersNotReady"
    };
    let conditions = vec![
        condition("PodReadyToStartContainers", sandbox_ready, None),
        condition("Initialized", initialized, Some("ContainersNotInitialized")),
        condition("Ready", all_ready && !ph.is_terminal(), Some(not_ready)),
        condition(
            "ContainersReady",
            all_ready && !ph.is_terminal(),
            Some(not_ready),
        ),
        condition("PodScheduled", true, None),
    ];
    let pod_ip = if pod.host_network {
        input.host_ip.map(str::to_owned)
    } else {
        rt.current_sandbox()
            .filter(|s| s.ready)
            .and_then(|s| s.ip.clone())
    };
    let start_time = input
        .previous
        .and_then(|p| p.start_time.clone())
        .or_else(|| {
            rt.sandboxes
                .iter()
                .map(|s| s.created_at)
                .min()
                .and_then(time)
        })
        .or_else(|| time(input.now_ns));
    api::PodStatus {
        phase: Some(ph.as_str().into()),
        conditions: Some(conditions),
        host_ip: input.host_ip.map(str::to_owned),
        host_ips: input
            .host_ip
            .map(|ip| vec![api::HostIP { ip: ip.to_owned() }]),
        pod_ip: pod_ip.clone(),
        pod_ips: pod_ip.map(|ip| vec![api::PodIP { ip }]),
        start_time,
        qos_class: Some(pod.qos.as_str().into()),
        init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
        container_statuses: Some(statuses),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::tests::{S, ctr, exited, pod, sandbox};

    fn input<'a>(
        w: &'a BTreeMap<String, Waiting>,
        prev: Option<&'a api::PodStatus>,
    ) -> StatusInput<'a> {
        StatusInput {
            waiting: w,
            runtime_name: "berth",
            host_ip: Some("192.0.2.1"),
            now_ns: 100 * S,
            previous: prev,
            probes: &NO_PROBES,
        }
    }

    static NO_PROBES: Results = Results::new();

    #[test]
    fn running_pod() {
        let p = pod("", "{name: a, image: b}");
        let rt = RuntimePod::new(
            vec![sandbox("sb", 0, true, 5 * S)],
            vec![
                ctr(
                    &p,
                    "a",
                    "sb",
                    2,
                    20 * S,
                    ContainerState::Running { started_at: 21 * S },
                ),
                ctr(&p, "a", "sb", 1, 10 * S, exited(1, 11 * S, 12 * S)),
                ctr(&p, "a", "sb", 0, 6 * S, exited(2, 7 * S, 8 * S)),
            ],
        );
        let w = BTreeMap::new();
        let s = pod_status(&p, &rt, &input(&w, None));
        assert_eq!(s.phase.as_deref(), Some("Running"));
        assert_eq!(s.pod_ip.as_deref(), Some("10.0.0.2"));
        assert_eq!(s.qos_class.as_deref(), Some("BestEffort"));
        let c = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(c.restart_count, 2);
        assert!(c.ready);
        assert_eq!(c.container_id.as_deref(), Some("berth://a-2"));
        assert_eq!(
            c.state
                .as_ref()
                .unwrap()
                .running
                .as_ref()
                .unwrap()
                .started_at,
            time(21 * S)
        );
        // lastState: the run before this one.
        let last = c.last_state.as_ref().unwrap().terminated.as_ref().unwrap();
        assert_eq!(last.exit_code, 1);
        assert_eq!(last.finished_at, time(12 * S));
        assert_eq!(s.start_time, time(5 * S));
        let ready = s
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.status, "True");
    }

    #[test]
    fn probes_decide_started_and_ready() {
        use crate::probe::ProbeKind;
        use crate::prober::Verdict;
        let p = pod(
            "",
            "{name: a, image: b, startupProbe: {exec: {command: [x]}}, readinessProbe: {exec: {command: [x]}}}, {name: c, image: b}",
        );
        let rt = RuntimePod::new(
            vec![sandbox("sb", 0, true, 5 * S)],
            vec![
                ctr(
                    &p,
                    "a",
                    "sb",
                    0,
                    20 * S,
                    ContainerState::Running { started_at: 21 * S },
                ),
                ctr(
                    &p,
                    "c",
                    "sb",
                    0,
                    20 * S,
                    ContainerState::Running { started_at: 21 * S },
                ),
            ],
        );
        let w = BTreeMap::new();
        let mut probes = Results::new();
        let check = |probes: &Results, want: [(bool, bool); 2], pod_ready: &str| {
            let s = pod_status(
                &p,
                &rt,
                &StatusInput {
                    probes,
                    ..input(&w, None)
                },
            );
            let got: Vec<_> = s
                .container_statuses
                .as_ref()
                .unwrap()
                .iter()
                .map(|c| (c.started.unwrap(), c.ready))
                .collect();
            assert_eq!(got, want);
            let cond = |t: &str| {
                s.conditions
                    .as_ref()
                    .unwrap()
                    .iter()
                    .find(|c| c.type_ == t)
                    .unwrap()
                    .status
                    .clone()
            };
            assert_eq!(cond("Ready"), pod_ready);
            assert_eq!(cond("ContainersReady"), pod_ready);
        };
        check(&probes, [(false, false), (true, true)], "False");
        // Readiness alone does not make a container that has not started ready.
        probes.set("a-0", ProbeKind::Readiness, Verdict::Success);
        check(&probes, [(false, false), (true, true)], "False");
        probes.set("a-0", ProbeKind::Startup, Verdict::Success);
        check(&probes, [(true, true), (true, true)], "True");
        probes.set("a-0", ProbeKind::Readiness, Verdict::Failure);
        check(&probes, [(true, false), (true, true)], "False");
    }

    #[test]
    fn crash_looping_container() {
        let p = pod("", "{name: a, image: b}");
        let rt = RuntimePod::new(
            vec![sandbox("sb", 0, true, 5 * S)],
            vec![ctr(&p, "a", "sb", 3, 20 * S, exited(42, 21 * S, 22 * S))],
        );
        let w: BTreeMap<_, _> = [(
            "a".to_owned(),
            Waiting {
                reason: "CrashLoopBackOff".into(),
                message: "back-off 40s".into(),
            },
        )]
        .into();
        let s = pod_status(&p, &rt, &input(&w, None));
        let c = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            c.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("CrashLoopBackOff")
        );
        assert_eq!(
            c.last_state
                .as_ref()
                .unwrap()
                .terminated
                .as_ref()
                .unwrap()
                .exit_code,
            42
        );
        assert_eq!(c.restart_count, 3);
        assert!(!c.ready);
        assert_eq!(s.phase.as_deref(), Some("Running"));
    }

    #[test]
    fn pending_pod_and_condition_times_kept() {
        let p = pod(
            "initContainers: [{name: i, image: b}],",
            "{name: a, image: b}",
        );
        let w = BTreeMap::new();
        let s = pod_status(&p, &RuntimePod::default(), &input(&w, None));
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        let c = &s.container_statuses.as_ref().unwrap()[0];
        assert_eq!(
            c.state
                .as_ref()
                .unwrap()
                .waiting
                .as_ref()
                .unwrap()
                .reason
                .as_deref(),
            Some("PodInitializing")
        );
        let init = s
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Initialized")
            .unwrap();
        assert_eq!(init.status, "False");
        assert_eq!(init.reason.as_deref(), Some("ContainersNotInitialized"));
        // Later, unchanged: the transition time stays.
        let later = StatusInput {
            now_ns: 200 * S,
            ..input(&w, Some(&s))
        };
        let s2 = pod_status(&p, &RuntimePod::default(), &later);
        let init2 = s2
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Initialized")
            .unwrap();
        assert_eq!(init2.last_transition_time, time(100 * S));
    }

    #[test]
    fn succeeded_pod() {
        let p = pod("restartPolicy: OnFailure,", "{name: a, image: b}");
        let rt = RuntimePod::new(
            vec![sandbox("sb", 0, false, 5 * S)],
            vec![ctr(&p, "a", "sb", 0, 6 * S, exited(0, 7 * S, 8 * S))],
        );
        let w = BTreeMap::new();
        let s = pod_status(&p, &rt, &input(&w, None));
        assert_eq!(s.phase.as_deref(), Some("Succeeded"));
        assert_eq!(s.pod_ip, None);
        let ready = s
            .conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == "Ready")
            .unwrap();
        assert_eq!(ready.reason.as_deref(), Some("PodCompleted"));
    }
}
