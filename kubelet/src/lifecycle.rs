//! Container lifecycle hooks (postStart, preStop), converted once from the
//! API and run the way upstream's kubelet runs them: exec through CRI
//! ExecSync, httpGet to the pod IP (any HTTP answer is success: only not
//! getting one fails the hook), sleep. A failing postStart kills the
//! container; preStop runs before every stop of a running container and
//! takes its time out of the grace period.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1 as api;

use crate::cri::Cri;
use crate::pod::Pod;
use crate::probe::HttpGet;
use crate::prober::http;

/// Upstream's floor for what is left of the grace period after preStop.
pub const MIN_GRACE_AFTER_PRE_STOP: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    Exec {
        command: Vec<String>,
    },
    HttpGet(HttpGet),
    /// An httpGet hook whose named port is not one of the container's:
    /// it fails each time it runs, as upstream's.
    HttpGetUnresolved {
        path: String,
        error: String,
    },
    Sleep(Duration),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lifecycle {
    pub post_start: Option<Hook>,
    pub pre_stop: Option<Hook>,
}

impl Lifecycle {
    /// `at` names the container (`spec.containers[0]`).
    pub fn from_api(c: &api::Container, at: &str) -> Result<Lifecycle, String> {
        let Some(l) = &c.lifecycle else {
            return Ok(Lifecycle::default());
        };
        let conv = |h: &Option<api::LifecycleHandler>, field: &str| {
            h.as_ref()
                .map(|h| hook(h, c, &format!("{at}.lifecycle.{field}")))
                .transpose()
        };
        Ok(Lifecycle {
            post_start: conv(&l.post_start, "postStart")?,
            pre_stop: conv(&l.pre_stop, "preStop")?,
        })
    }
}

fn hook(h: &api::LifecycleHandler, c: &api::Container, at: &str) -> Result<Hook, String> {
    let set: Vec<&str> = [
        ("exec", h.exec.is_some()),
        ("httpGet", h.http_get.is_some()),
        ("sleep", h.sleep.is_some()),
        ("tcpSocket", h.tcp_socket.is_some()),
    ]
    .iter()
    .filter(|(_, s)| *s)
    .map(|(n, _)| *n)
    .collect();
    match set.as_slice() {
        [] => Err(format!(
            "{at}: must specify a handler type (exec, httpGet or sleep)"
        )),
        ["tcpSocket"] => Err(format!(
            "{at}.tcpSocket: not supported as a lifecycle handler (as upstream)"
        )),
        [_] => {
            if let Some(e) = &h.exec {
                let command = e.command.clone().unwrap_or_default();
                if command.is_empty() {
                    return Err(format!("{at}.exec.command: required"));
                }
                Ok(Hook::Exec { command })
            } else if let Some(g) = &h.http_get {
                Ok(
                    match crate::probe::http_get(g, c, &format!("{at}.httpGet"))? {
                        Ok(get) => Hook::HttpGet(get),
                        Err(error) => Hook::HttpGetUnresolved {
                            path: g.path.clone().unwrap_or_default(),
                            error,
                        },
                    },
                )
            } else {
                let s = h.sleep.as_ref().expect("one handler is set").seconds;
                if s < 0 {
                    return Err(format!(
                        "{at}.sleep.seconds: {s} must be greater than or equal to 0"
                    ));
                }
                Ok(Hook::Sleep(Duration::from_secs(s as u64)))
            }
        }
        more => Err(format!(
            "{at}: may not specify more than 1 handler type (has {})",
            more.join(", ")
        )),
    }
}

/// `name_namespace(uid)`, how upstream's hook messages name a pod.
fn pod_ref(pod: &Pod) -> String {
    format!("{}_{}({})", pod.name, pod.namespace, pod.uid)
}

/// Run `hook` for container `name` (runtime id `id`); the error is the
/// message of upstream's Failed*Hook event.
pub async fn run(
    cri: &Cri,
    pod: &Pod,
    name: &str,
    id: &str,
    hook: &Hook,
    pod_ip: Option<&str>,
) -> Result<(), String> {
    match hook {
        Hook::Exec { command } => {
            let failed = |e: String| {
                format!(
                    "Exec lifecycle hook ({command:?}) for Container {name:?} in Pod {:?} failed - error: {e}",
                    pod_ref(pod)
                )
            };
            // No timeout, as upstream: a preStop is bounded by its caller.
            match cri.exec_sync(id, command.clone(), Duration::ZERO).await {
                Ok(r) if r.exit_code == 0 => Ok(()),
                Ok(r) => {
                    let mut out = String::from_utf8_lossy(&r.stdout).into_owned();
                    out.push_str(&String::from_utf8_lossy(&r.stderr));
                    Err(failed(format!(
                        "command '{}' exited with {}: {}, message: {:?}",
                        command.join(" "),
                        r.exit_code,
                        out.trim(),
                        out.trim()
                    )))
                }
                Err(e) => Err(failed(e.to_string())),
            }
        }
        Hook::HttpGet(get) => {
            let host = match get.host.as_deref().or(pod_ip) {
                Some(h) => h.to_owned(),
                None => {
                    return Err(format!(
                        "HTTP lifecycle hook ({}) for Container {name:?} in Pod {:?} failed - error: the pod has no IP",
                        get.path,
                        pod_ref(pod)
                    ));
                }
            };
            let url = http::Url {
                scheme: get.scheme,
                host,
                port: get.port,
                path: get.path.clone(),
            };
            http::fetch(&url, &get.headers).await.map(drop).map_err(|e| {
                format!(
                    "HTTP lifecycle hook ({}) for Container {name:?} in Pod {:?} failed - error: Get \"{url}\": {e}",
                    get.path,
                    pod_ref(pod)
                )
            })
        }
        Hook::HttpGetUnresolved { path, error } => Err(format!(
            "HTTP lifecycle hook ({path}) for Container {name:?} in Pod {:?} failed - error: {error}",
            pod_ref(pod)
        )),
        Hook::Sleep(d) => {
            tokio::time::sleep(*d).await;
            Ok(())
        }
    }
}

/// Run the preStop `hook` (if any) within `grace`, then stop the container
/// with what is left (at least MIN_GRACE_AFTER_PRE_STOP). Returns the
/// stop's result and the hook's failure message, if it failed.
pub async fn stop(
    cri: &Cri,
    pod: &Pod,
    name: &str,
    id: &str,
    hook: Option<&Hook>,
    pod_ip: Option<&str>,
    grace: Duration,
) -> (crate::error::Result<()>, Option<String>) {
    let mut left = grace;
    let mut failure = None;
    if let Some(h) = hook {
        let started = Instant::now();
        match tokio::time::timeout(grace, run(cri, pod, name, id, h, pod_ip)).await {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => failure = Some(msg),
            Err(_) => {
                tracing::info!(pod = %pod.full_name(), container = %name, grace = ?grace,
                    "preStop hook did not finish within the grace period");
            }
        }
        left = grace
            .saturating_sub(started.elapsed())
            .max(MIN_GRACE_AFTER_PRE_STOP);
    }
    (cri.stop_container(id, left).await, failure)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(yaml: &str) -> api::Container {
        let v: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn hooks_convert_with_named_ports_and_errors_name_the_field() {
        let c = container(
            "{name: a, image: b, ports: [{name: web, containerPort: 8080}], lifecycle: {postStart: {httpGet: {path: /up, port: web}}, preStop: {sleep: {seconds: 3}}}}",
        );
        let l = Lifecycle::from_api(&c, "spec.containers[0]").unwrap();
        match l.post_start {
            Some(Hook::HttpGet(g)) => {
                assert_eq!(g.port, 8080);
                assert_eq!(g.path, "/up");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(l.pre_stop, Some(Hook::Sleep(Duration::from_secs(3))));

        let c = container("{name: a, image: b, lifecycle: {preStop: {exec: {command: []}}}}");
        assert_eq!(
            Lifecycle::from_api(&c, "spec.containers[0]").unwrap_err(),
            "spec.containers[0].lifecycle.preStop.exec.command: required"
        );
        let c = container("{name: a, image: b, lifecycle: {postStart: {tcpSocket: {port: 80}}}}");
        assert!(
            Lifecycle::from_api(&c, "spec.containers[0]")
                .unwrap_err()
                .starts_with("spec.containers[0].lifecycle.postStart.tcpSocket")
        );
        // A named port the container lacks fails the hook when it runs.
        let c = container(
            "{name: a, image: b, lifecycle: {preStop: {httpGet: {path: /down, port: admin}}}}",
        );
        assert_eq!(
            Lifecycle::from_api(&c, "spec.containers[0]")
                .unwrap()
                .pre_stop,
            Some(Hook::HttpGetUnresolved {
                path: "/down".into(),
                error: "spec.containers[0].lifecycle.preStop.httpGet.port: named port \"admin\" is not a port of the container".into()
            })
        );
        let c = container("{name: a, image: b, lifecycle: {postStart: {}}}");
        assert!(
            Lifecycle::from_api(&c, "x")
                .unwrap_err()
                .contains("must specify a handler type")
        );
    }
}
