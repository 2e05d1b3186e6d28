//! A container's probes (liveness, readiness, startup) as the kubelet runs
//! them: converted once from the API's Probe with the API server's
//! defaults, validated, and named ports resolved against the container's
//! ports. A port that does not resolve does not refuse the pod: as
//! upstream's, such a probe errors each time it runs (an `Unhealthy` event,
//! no result). Running them is `prober.rs`'s business, not this module's.

use std::time::Duration;

use k8s_openapi::api::core::v1 as api;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// Which of a container's probes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    pub const ALL: [ProbeKind; 3] = [
        ProbeKind::Startup,
        ProbeKind::Liveness,
        ProbeKind::Readiness,
    ];

    /// The container field that holds it.
    pub fn field(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "livenessProbe",
            ProbeKind::Readiness => "readinessProbe",
            ProbeKind::Startup => "startupProbe",
        }
    }

    /// How upstream's events name it (`Liveness probe failed: ...`).
    pub fn title(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }

    /// How upstream's kill messages name it (`failed liveness probe`).
    pub fn lower(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "liveness",
            ProbeKind::Readiness => "readiness",
            ProbeKind::Startup => "startup",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpGet {
    pub scheme: Scheme,
    /// Connect here instead of the pod IP.
    pub host: Option<String>,
    pub port: u16,
    /// Starts with `/`; may carry a query.
    pub path: String,
    /// Sent as given, after (and overriding) the defaults of the same name.
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handler {
    /// Run in the container (CRI ExecSync); exit status 0 is success.
    Exec { command: Vec<String> },
    /// A GET; a status from 200 to 399 is success.
    HttpGet(HttpGet),
    /// A TCP connection that opens is success.
    TcpSocket { host: Option<String>, port: u16 },
    /// grpc.health.v1.Health/Check answering SERVING is success.
    Grpc { port: u16, service: String },
    /// An httpGet or tcpSocket probe whose port does not resolve (a name
    /// that is not one of the container's ports): every try errors with
    /// this message.
    Unresolved(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub handler: Handler,
    /// From the container's start to the first probe.
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    /// Consecutive successes that make a failed probe succeed again.
    pub success_threshold: u32,
    /// Consecutive failures that make a probe fail.
    pub failure_threshold: u32,
    /// The grace period of a kill after a liveness or startup failure
    /// (the pod's when None).
    pub termination_grace: Option<Duration>,
}

/// A container's probes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probes {
    pub liveness: Option<Probe>,
    pub readiness: Option<Probe>,
    pub startup: Option<Probe>,
}

impl Probes {
    pub fn get(&self, kind: ProbeKind) -> Option<&Probe> {
        match kind {
            ProbeKind::Liveness => self.liveness.as_ref(),
            ProbeKind::Readiness => self.readiness.as_ref(),
            ProbeKind::Startup => self.startup.as_ref(),
        }
    }

    /// The probes that are set, startup first.
    pub fn iter(&self) -> impl Iterator<Item = (ProbeKind, &Probe)> {
        ProbeKind::ALL
            .into_iter()
            .filter_map(|k| self.get(k).map(|p| (k, p)))
    }

    /// A container's probes; `at` names the container (`spec.containers[0]`).
    pub fn from_api(c: &api::Container, at: &str) -> Result<Probes, String> {
        let conv = |p: &Option<api::Probe>, kind: ProbeKind| {
            p.as_ref()
                .map(|p| Probe::from_api(p, kind, c, &format!("{at}.{}", kind.field())))
                .transpose()
        };
        Ok(Probes {
            liveness: conv(&c.liveness_probe, ProbeKind::Liveness)?,
            readiness: conv(&c.readiness_probe, ProbeKind::Readiness)?,
            startup: conv(&c.startup_probe, ProbeKind::Startup)?,
        })
    }
}

/// User-Agent of HTTP and gRPC probes: upstream's, with the Kubernetes
/// version berth-kubelet follows.
pub const USER_AGENT: &str = "kube-probe/1.37";

impl Probe {
    /// Convert and validate probe `kind` of container `c`; `at` is the
    /// probe's field path for errors.
    pub fn from_api(
        p: &api::Probe,
        kind: ProbeKind,
        c: &api::Container,
        at: &str,
    ) -> Result<Probe, String> {
        let set = [
            ("exec", p.exec.is_some()),
            ("httpGet", p.http_get.is_some()),
            ("tcpSocket", p.tcp_socket.is_some()),
            ("grpc", p.grpc.is_some()),
        ];
        let handlers: Vec<&str> = set.iter().filter(|(_, s)| *s).map(|(n, _)| *n).collect();
        match handlers.as_slice() {
            [] => {
                return Err(format!(
                    "{at}: must specify a handler type (exec, httpGet, tcpSocket or grpc)"
                ));
            }
            [_] => {}
            more => {
                return Err(format!(
                    "{at}: may not specify more than 1 handler type (has {})",
                    more.join(", ")
                ));
            }
        }
        let handler = if let Some(e) = &p.exec {
            let command = e.command.clone().unwrap_or_default();
            if command.is_empty() {
                return Err(format!("{at}.exec.command: required"));
            }
            Handler::Exec { command }
        } else if let Some(h) = &p.http_get {
            match http_get(h, c, &format!("{at}.httpGet"))? {
                Ok(get) => Handler::HttpGet(get),
                Err(e) => Handler::Unresolved(e),
            }
        } else if let Some(t) = &p.tcp_socket {
            let at = format!("{at}.tcpSocket");
            let host = host(t.host.as_deref(), &at)?;
            match probe_port(&t.port, c, &format!("{at}.port"))? {
                Ok(port) => Handler::TcpSocket { host, port },
                Err(e) => Handler::Unresolved(e),
            }
        } else if let Some(g) = &p.grpc {
            match g.mode.as_deref() {
                None | Some("Plaintext") => {}
                Some(m) => {
                    return Err(format!(
                        "{at}.grpc.mode: {m:?} is not supported by berth-kubelet yet (only Plaintext)"
                    ));
                }
            }
            Handler::Grpc {
                port: port(&IntOrString::Int(g.port), c, &format!("{at}.grpc.port"))?,
                service: g.service.clone().unwrap_or_default(),
            }
        } else {
            unreachable!("one handler is set")
        };
        // The API server's defaults: 0 (or unset) is the default.
        let secs = |v: Option<i32>, field: &str, default: u32| -> Result<u32, String> {
            match v {
                None | Some(0) => Ok(default),
                Some(n) if n < 0 => Err(format!(
                    "{at}.{field}: {n} must be greater than or equal to 0"
                )),
                Some(n) => Ok(n as u32),
            }
        };
        let initial_delay = secs(p.initial_delay_seconds, "initialDelaySeconds", 0)?;
        let period = secs(p.period_seconds, "periodSeconds", 10)?;
        let timeout = secs(p.timeout_seconds, "timeoutSeconds", 1)?;
        let success_threshold = secs(p.success_threshold, "successThreshold", 1)?;
        let failure_threshold = secs(p.failure_threshold, "failureThreshold", 3)?;
        if kind != ProbeKind::Readiness && success_threshold != 1 {
            return Err(format!(
                "{at}.successThreshold: {success_threshold} must be 1 for {} probes",
                kind.lower()
            ));
        }
        let termination_grace = match p.termination_grace_period_seconds {
            None => None,
            Some(_) if kind == ProbeKind::Readiness => {
                return Err(format!(
                    "{at}.terminationGracePeriodSeconds: must not be set for readiness probes"
                ));
            }
            Some(n) if n <= 0 => {
                return Err(format!(
                    "{at}.terminationGracePeriodSeconds: {n} must be greater than 0"
                ));
            }
            Some(n) => Some(Duration::from_secs(n as u64)),
        };
        Ok(Probe {
            handler,
            initial_delay: Duration::from_secs(initial_delay.into()),
            period: Duration::from_secs(period.into()),
            timeout: Duration::from_secs(timeout.into()),
            success_threshold,
            failure_threshold,
            termination_grace,
        })
    }
}

/// An httpGet action of container `c` (a probe's or a lifecycle hook's):
/// the outer error refuses the spec; the inner one is a named port that is
/// not one of the container's, for the caller to report each time the
/// action runs, as upstream's kubelet does.
pub(crate) fn http_get(
    h: &api::HTTPGetAction,
    c: &api::Container,
    at: &str,
) -> Result<Result<HttpGet, String>, String> {
    let get = http_get_at(h, 0, at)?;
    Ok(probe_port(&h.port, c, &format!("{at}.port"))?.map(|port| HttpGet { port, ..get }))
}

/// An httpGet action validated, to `port`.
fn http_get_at(h: &api::HTTPGetAction, port: u16, at: &str) -> Result<HttpGet, String> {
    let scheme = match h.scheme.as_deref() {
        None | Some("" | "HTTP") => Scheme::Http,
        Some("HTTPS") => Scheme::Https,
        Some(o) => return Err(format!("{at}.scheme: {o:?} is not HTTP or HTTPS")),
    };
    match h.protocol.as_deref() {
        None | Some("HTTP/1.1") => {}
        Some(o) => {
            return Err(format!(
                "{at}.protocol: {o:?} is not supported by berth-kubelet yet (only HTTP/1.1)"
            ));
        }
    }
    let mut path = h.path.clone().unwrap_or_default();
    if path.is_empty() {
        path = "/".into();
    } else if !path.starts_with('/') {
        path.insert(0, '/');
    }
    // It goes into the request line as it is.
    if path.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
        return Err(format!(
            "{at}.path: {path:?} has white space or control characters"
        ));
    }
    let mut headers = Vec::new();
    for (i, hd) in h.http_headers.iter().flatten().enumerate() {
        let token = |ch: char| ch.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(ch);
        if hd.name.is_empty() || !hd.name.chars().all(token) {
            return Err(format!(
                "{at}.httpHeaders[{i}].name: {:?} is not a valid header name",
                hd.name
            ));
        }
        if hd
            .value
            .chars()
            .any(|ch| ch == '\r' || ch == '\n' || ch == '\0')
        {
            return Err(format!(
                "{at}.httpHeaders[{i}].value: line breaks are not allowed"
            ));
        }
        headers.push((hd.name.clone(), hd.value.clone()));
    }
    Ok(HttpGet {
        scheme,
        host: host(h.host.as_deref(), at)?,
        port,
        path,
        headers,
    })
}

/// An optional host to connect to instead of the pod IP.
fn host(h: Option<&str>, at: &str) -> Result<Option<String>, String> {
    match h {
        None | Some("") => Ok(None),
        Some(h)
            if h.parse::<std::net::IpAddr>().is_ok()
                || crate::flags::is_dns_subdomain(&h.to_ascii_lowercase()) =>
        {
            Ok(Some(h.to_owned()))
        }
        Some(h) => Err(format!(
            "{at}.host: {h:?} is not an IP address or a DNS name"
        )),
    }
}

/// A probe's or hook's port: a number out of range refuses the spec (the
/// API server does too); a name that is not one of the container's ports is
/// left for the action to report each time it runs (the inner error), as
/// upstream's.
fn probe_port(
    p: &IntOrString,
    c: &api::Container,
    at: &str,
) -> Result<Result<u16, String>, String> {
    match (port(p, c, at), p) {
        (Err(e), IntOrString::Int(_)) => Err(e),
        (r, _) => Ok(r),
    }
}

/// A port by number, or by the name of one of the container's ports.
fn port(p: &IntOrString, c: &api::Container, at: &str) -> Result<u16, String> {
    match p {
        IntOrString::Int(n) => u16::try_from(*n)
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{at}: {n} is not a port (1-65535)")),
        IntOrString::String(name) => c
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .and_then(|p| u16::try_from(p.container_port).ok().filter(|n| *n > 0))
            .ok_or_else(|| format!("{at}: named port {name:?} is not a port of the container")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(yaml: &str) -> api::Container {
        let v: serde_json::Value = serde_saphyr::from_str(yaml).unwrap();
        serde_json::from_value(v).unwrap()
    }

    fn probes(yaml: &str) -> Result<Probes, String> {
        Probes::from_api(&container(yaml), "spec.containers[0]")
    }

    #[test]
    fn defaults_and_named_ports() {
        let p = probes(
            "{name: web, image: w, ports: [{name: web, containerPort: 8080}], livenessProbe: {httpGet: {port: web, path: healthz, httpHeaders: [{name: X-Probe, value: a}]}}, readinessProbe: {tcpSocket: {port: 81}, periodSeconds: 2, successThreshold: 2, timeoutSeconds: 0}}",
        )
        .unwrap();
        let l = p.liveness.as_ref().unwrap();
        assert_eq!(
            l.handler,
            Handler::HttpGet(HttpGet {
                scheme: Scheme::Http,
                host: None,
                port: 8080,
                path: "/healthz".into(),
                headers: vec![("X-Probe".into(), "a".into())],
            })
        );
        assert_eq!(
            (
                l.initial_delay,
                l.period,
                l.timeout,
                l.success_threshold,
                l.failure_threshold,
                l.termination_grace
            ),
            (
                Duration::ZERO,
                Duration::from_secs(10),
                Duration::from_secs(1),
                1,
                3,
                None
            )
        );
        let r = p.readiness.as_ref().unwrap();
        assert_eq!(
            r.handler,
            Handler::TcpSocket {
                host: None,
                port: 81
            }
        );
        assert_eq!(
            (r.period, r.timeout, r.success_threshold),
            (Duration::from_secs(2), Duration::from_secs(1), 2)
        );
        assert!(p.startup.is_none());
        assert_eq!(
            p.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            [ProbeKind::Liveness, ProbeKind::Readiness]
        );
        let p = probes(
            "{name: a, image: b, startupProbe: {exec: {command: [cat, /tmp/ok]}, failureThreshold: 30, terminationGracePeriodSeconds: 5}, livenessProbe: {grpc: {port: 9000, service: s}}}",
        )
        .unwrap();
        assert_eq!(
            p.startup.as_ref().unwrap().termination_grace,
            Some(Duration::from_secs(5))
        );
        assert_eq!(p.startup.as_ref().unwrap().failure_threshold, 30);
        assert_eq!(
            p.liveness.unwrap().handler,
            Handler::Grpc {
                port: 9000,
                service: "s".into()
            }
        );
    }

    #[test]
    fn a_port_that_does_not_resolve_makes_a_probe_that_errors() {
        let p = probes(
            "{name: a, image: b, ports: [{name: http, containerPort: 80}], livenessProbe: {httpGet: {port: web}}, readinessProbe: {tcpSocket: {port: db}}}",
        )
        .unwrap();
        assert_eq!(
            p.liveness.unwrap().handler,
            Handler::Unresolved(
                "spec.containers[0].livenessProbe.httpGet.port: named port \"web\" is not a port of the container".into()
            )
        );
        assert_eq!(
            p.readiness.unwrap().handler,
            Handler::Unresolved(
                "spec.containers[0].readinessProbe.tcpSocket.port: named port \"db\" is not a port of the container".into()
            )
        );
        // The rest of the action is still checked first.
        assert_eq!(
            probes("{name: a, image: b, livenessProbe: {httpGet: {port: web, scheme: FTP}}}")
                .unwrap_err(),
            "spec.containers[0].livenessProbe.httpGet.scheme: \"FTP\" is not HTTP or HTTPS"
        );
    }

    #[test]
    fn invalid_probes_name_the_field() {
        let e = |y: &str| probes(y).unwrap_err();
        assert_eq!(
            e("{name: a, image: b, readinessProbe: {periodSeconds: 3}}"),
            "spec.containers[0].readinessProbe: must specify a handler type (exec, httpGet, tcpSocket or grpc)"
        );
        assert_eq!(
            e("{name: a, image: b, readinessProbe: {tcpSocket: {port: 1}, exec: {command: [x]}}}"),
            "spec.containers[0].readinessProbe: may not specify more than 1 handler type (has exec, tcpSocket)"
        );
        assert_eq!(
            e("{name: a, image: b, startupProbe: {tcpSocket: {port: 70000}}}"),
            "spec.containers[0].startupProbe.tcpSocket.port: 70000 is not a port (1-65535)"
        );
        assert_eq!(
            e("{name: a, image: b, livenessProbe: {tcpSocket: {port: 80}, successThreshold: 2}}"),
            "spec.containers[0].livenessProbe.successThreshold: 2 must be 1 for liveness probes"
        );
        assert_eq!(
            e("{name: a, image: b, startupProbe: {tcpSocket: {port: 80}, successThreshold: 3}}"),
            "spec.containers[0].startupProbe.successThreshold: 3 must be 1 for startup probes"
        );
        assert!(
            e("{name: a, image: b, livenessProbe: {grpc: {port: 0}}}").contains("grpc.port: 0")
        );
        assert!(
            e("{name: a, image: b, livenessProbe: {exec: {command: []}}}")
                .contains("livenessProbe.exec.command: required")
        );
        assert!(
            e("{name: a, image: b, livenessProbe: {httpGet: {port: 80, scheme: FTP}}}")
                .contains("httpGet.scheme: \"FTP\"")
        );
        assert!(
            e("{name: a, image: b, readinessProbe: {tcpSocket: {port: 80}, terminationGracePeriodSeconds: 3}}")
                .contains("readinessProbe.terminationGracePeriodSeconds: must not be set")
        );
        assert!(
            e("{name: a, image: b, livenessProbe: {tcpSocket: {port: 80}, periodSeconds: -1}}")
                .contains("livenessProbe.periodSeconds: -1")
        );
        assert!(
            e("{name: a, image: b, livenessProbe: {httpGet: {port: 80, path: '/a b'}}}")
                .contains("httpGet.path")
        );
        assert!(
            e("{name: a, image: b, livenessProbe: {httpGet: {port: 80, httpHeaders: [{name: 'a b', value: c}]}}}")
                .contains("httpGet.httpHeaders[0].name")
        );
        assert!(
            e("{name: a, image: b, livenessProbe: {tcpSocket: {port: 80, host: 'not a host'}}}")
                .contains("tcpSocket.host")
        );
    }
}
