//! CRI wire types <-> berthd's domain types, once, at the boundary. Every
//! request is validated here; errors name the field.

use std::collections::{BTreeMap, HashMap};

use k8s_cri::v1 as cri;

use crate::cni::PortMapping;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::sandbox::SandboxFilter;
use crate::sandbox::model::{
    Dns, IdRange, NsMode, PodMeta, PodUserns, Sandbox, SandboxSpec, SandboxState,
};

pub(super) fn invalid(msg: String) -> Error {
    Error::InvalidArgument(msg)
}

pub(super) fn sorted(m: HashMap<String, String>) -> BTreeMap<String, String> {
    m.into_iter().collect()
}

/// A CRI namespace mode; `field` is the full field name for the error.
pub(super) fn ns_mode(v: i32, field: &str) -> Result<NsMode> {
    Ok(match cri::NamespaceMode::try_from(v) {
        Ok(cri::NamespaceMode::Pod) => NsMode::Pod,
        Ok(cri::NamespaceMode::Container) => NsMode::Container,
        Ok(cri::NamespaceMode::Node) => NsMode::Node,
        Ok(cri::NamespaceMode::Target) => NsMode::Target,
        Err(_) => {
            return Err(invalid(format!("{field}: unknown namespace mode {v}")));
        }
    })
}

fn ns_mode_wire(m: NsMode) -> i32 {
    (match m {
        NsMode::Pod => cri::NamespaceMode::Pod,
        NsMode::Container => cri::NamespaceMode::Container,
        NsMode::Node => cri::NamespaceMode::Node,
        NsMode::Target => cri::NamespaceMode::Target,
    }) as i32
}

/// Validate a `RunPodSandboxRequest`.
pub fn sandbox_spec(req: cri::RunPodSandboxRequest, config: &Config) -> Result<SandboxSpec> {
    let c = req
        .config
        .ok_or_else(|| invalid("sandbox config: missing".into()))?;
    let m = c
        .metadata
        .ok_or_else(|| invalid("sandbox config: metadata: missing".into()))?;
    for (field, v) in [
        ("name", &m.name),
        ("uid", &m.uid),
        ("namespace", &m.namespace),
    ] {
        if v.is_empty() {
            return Err(invalid(format!("sandbox config: metadata.{field}: empty")));
        }
    }
    if !req.runtime_handler.is_empty() && !config.runtimes.contains_key(&req.runtime_handler) {
        return Err(invalid(format!(
            "sandbox config: runtime handler {:?} is not configured (have: {})",
            req.runtime_handler,
            config
                .runtimes
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    if c.hostname.len() > 64 {
        return Err(invalid(format!(
            "sandbox config: hostname {:?}: longer than 64 bytes",
            c.hostname
        )));
    }
    if !c.log_directory.is_empty() && !c.log_directory.starts_with('/') {
        return Err(invalid(format!(
            "sandbox config: log_directory {:?}: not an absolute path",
            c.log_directory
        )));
    }
    let mut port_mappings = Vec::new();
    for (i, p) in c.port_mappings.iter().enumerate() {
        let protocol = match cri::Protocol::try_from(p.protocol) {
            Ok(cri::Protocol::Tcp) => "tcp",
            Ok(cri::Protocol::Udp) => "udp",
            Ok(cri::Protocol::Sctp) => "sctp",
            Err(_) => {
                return Err(invalid(format!(
                    "sandbox config: port_mappings[{i}].protocol: unknown {}",
                    p.protocol
                )));
            }
        };
        let port = |v: i32, field: &str, allow_zero: bool| -> Result<u16> {
            match u16::try_from(v) {
                Ok(0) if !allow_zero => Err(invalid(format!(
                    "sandbox config: port_mappings[{i}].{field}: 0"
                ))),
                Ok(x) => Ok(x),
                Err(_) => Err(invalid(format!(
                    "sandbox config: port_mappings[{i}].{field}: {v} is out of range"
                ))),
            }
        };
        let container_port = port(p.container_port, "container_port", false)?;
        let host_port = port(p.host_port, "host_port", true)?;
        if host_port != 0 {
            port_mappings.push(PortMapping {
                host_port,
                container_port,
                protocol: protocol.into(),
                host_ip: p.host_ip.clone(),
            });
        }
    }
    let linux = c.linux.unwrap_or_default();
    let opts = linux
        .security_context
        .and_then(|s| s.namespace_options)
        .unwrap_or_default();
    let field = "sandbox config: linux.security_context.namespace_options";
    let network = ns_mode(opts.network, &format!("{field}.network"))?;
    let pid = ns_mode(opts.pid, &format!("{field}.pid"))?;
    let ipc = ns_mode(opts.ipc, &format!("{field}.ipc"))?;
    let userns = match &opts.userns_options {
        None => None,
        Some(u) => pod_userns(u, &format!("{field}.userns_options"), [network, pid, ipc])?,
    };
    Ok(SandboxSpec {
        meta: PodMeta {
            name: m.name,
            uid: m.uid,
            namespace: m.namespace,
            attempt: m.attempt,
        },
        hostname: c.hostname,
        log_directory: c.log_directory,
        dns: c.dns_config.map(|d| Dns {
            servers: d.servers,
            searches: d.searches,
            options: d.options,
        }),
        port_mappings,
        labels: sorted(c.labels),
        annotations: sorted(c.annotations),
        cgroup_parent: linux.cgroup_parent,
        sysctls: sorted(linux.sysctls),
        network,
        pid,
        ipc,
        runtime_handler: req.runtime_handler,
        userns,
    })
}

/// The pod's user namespace: NODE is the host's (None); POD is one of its
/// own with exactly one uid and one gid range from container id 0 (as
/// containerd and CRI-O take them); CONTAINER and TARGET do not exist for
/// user namespaces.
fn pod_userns(
    u: &cri::UserNamespace,
    field: &str,
    [network, pid, ipc]: [NsMode; 3],
) -> Result<Option<PodUserns>> {
    match ns_mode(u.mode, &format!("{field}.mode"))? {
        NsMode::Node => return Ok(None),
        NsMode::Pod => {}
        m => {
            return Err(invalid(format!(
                "{field}.mode: {m:?} is not a user namespace mode (POD or NODE)"
            )));
        }
    }
    if [network, pid, ipc].contains(&NsMode::Node) {
        return Err(invalid(format!(
            "{field}: a pod user namespace cannot go with the host's network, pid or ipc namespace"
        )));
    }
    let one = |maps: &[cri::IdMapping], what: &str| -> Result<IdRange> {
        let [m] = maps else {
            return Err(invalid(format!(
                "{field}.{what}: exactly one mapping is supported, got {}",
                maps.len()
            )));
        };
        if m.container_id != 0 {
            return Err(invalid(format!(
                "{field}.{what}: the mapping must start at container id 0, not {}",
                m.container_id
            )));
        }
        if m.length == 0 || u64::from(m.host_id) + u64::from(m.length) > 1 << 32 {
            return Err(invalid(format!(
                "{field}.{what}: host id {} with length {} is not a range of ids",
                m.host_id, m.length
            )));
        }
        Ok(IdRange {
            container_id: 0,
            host_id: m.host_id,
            length: m.length,
        })
    };
    Ok(Some(PodUserns {
        uids: one(&u.uids, "uids")?,
        gids: one(&u.gids, "gids")?,
    }))
}

pub(super) fn meta_wire(m: &PodMeta) -> cri::PodSandboxMetadata {
    cri::PodSandboxMetadata {
        name: m.name.clone(),
        uid: m.uid.clone(),
        namespace: m.namespace.clone(),
        attempt: m.attempt,
    }
}

fn state_wire(s: SandboxState) -> i32 {
    (match s {
        SandboxState::Ready => cri::PodSandboxState::SandboxReady,
        SandboxState::NotReady => cri::PodSandboxState::SandboxNotready,
    }) as i32
}

pub fn sandbox_status(sb: &Sandbox) -> cri::PodSandboxStatus {
    let spec = &sb.spec;
    let network = sb
        .ips
        .split_first()
        .map(|(ip, rest)| cri::PodSandboxNetworkStatus {
            ip: ip.clone(),
            additional_ips: rest
                .iter()
                .map(|ip| cri::PodIp { ip: ip.clone() })
                .collect(),
        });
    cri::PodSandboxStatus {
        id: sb.id.clone(),
        metadata: Some(meta_wire(&spec.meta)),
        state: state_wire(sb.state),
        created_at: sb.created_at,
        network: Some(network.unwrap_or_default()),
        linux: Some(cri::LinuxPodSandboxStatus {
            namespaces: Some(cri::Namespace {
                options: Some(cri::NamespaceOption {
                    network: ns_mode_wire(spec.network),
                    pid: ns_mode_wire(spec.pid),
                    ipc: ns_mode_wire(spec.ipc),
                    userns_options: Some(match &spec.userns {
                        None => cri::UserNamespace {
                            mode: cri::NamespaceMode::Node as i32,
                            ..Default::default()
                        },
                        Some(u) => {
                            let wire = |r: &IdRange| {
                                vec![cri::IdMapping {
                                    host_id: r.host_id,
                                    container_id: r.container_id,
                                    length: r.length,
                                }]
                            };
                            cri::UserNamespace {
                                mode: cri::NamespaceMode::Pod as i32,
                                uids: wire(&u.uids),
                                gids: wire(&u.gids),
                            }
                        }
                    }),
                    ..Default::default()
                }),
            }),
        }),
        labels: spec.labels.clone().into_iter().collect(),
        annotations: spec.annotations.clone().into_iter().collect(),
        runtime_handler: spec.runtime_handler.clone(),
    }
}

pub fn sandbox_item(sb: &Sandbox) -> cri::PodSandbox {
    cri::PodSandbox {
        id: sb.id.clone(),
        metadata: Some(meta_wire(&sb.spec.meta)),
        state: state_wire(sb.state),
        created_at: sb.created_at,
        labels: sb.spec.labels.clone().into_iter().collect(),
        annotations: sb.spec.annotations.clone().into_iter().collect(),
        runtime_handler: sb.spec.runtime_handler.clone(),
    }
}

/// The `info` map of a verbose status: berthd's record as JSON.
pub fn sandbox_info(sb: &Sandbox) -> HashMap<String, String> {
    HashMap::from([(
        "info".to_owned(),
        serde_json::to_string(sb).unwrap_or_default(),
    )])
}

pub fn sandbox_filter(f: Option<cri::PodSandboxFilter>) -> SandboxFilter {
    let Some(f) = f else {
        return SandboxFilter::default();
    };
    SandboxFilter {
        id: (!f.id.is_empty()).then_some(f.id),
        state: f.state.map(|s| {
            if s.state == cri::PodSandboxState::SandboxReady as i32 {
                SandboxState::Ready
            } else {
                SandboxState::NotReady
            }
        }),
        labels: sorted(f.label_selector),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req() -> cri::RunPodSandboxRequest {
        cri::RunPodSandboxRequest {
            config: Some(cri::PodSandboxConfig {
                metadata: Some(cri::PodSandboxMetadata {
                    name: "web".into(),
                    uid: "u1".into(),
                    namespace: "default".into(),
                    attempt: 0,
                }),
                port_mappings: vec![
                    cri::PortMapping {
                        protocol: 0,
                        container_port: 80,
                        host_port: 8080,
                        host_ip: String::new(),
                    },
                    cri::PortMapping {
                        protocol: 1,
                        container_port: 53,
                        host_port: 0,
                        host_ip: String::new(),
                    },
                ],
                ..Default::default()
            }),
            runtime_handler: String::new(),
        }
    }

    #[test]
    fn valid_request_becomes_a_spec() {
        let s = sandbox_spec(req(), &Config::default()).unwrap();
        assert_eq!(s.meta.key(), "web_default_u1_0");
        assert_eq!(
            s.port_mappings.len(),
            1,
            "a mapping without host port needs no CNI rule"
        );
        assert_eq!(s.port_mappings[0].protocol, "tcp");
        assert_eq!(
            (s.network, s.pid, s.ipc),
            (NsMode::Pod, NsMode::Pod, NsMode::Pod)
        );
    }

    #[test]
    fn invalid_requests_name_the_field() {
        let cfg = Config::default();
        let mut r = req();
        r.config
            .as_mut()
            .unwrap()
            .metadata
            .as_mut()
            .unwrap()
            .uid
            .clear();
        assert!(
            sandbox_spec(r, &cfg)
                .unwrap_err()
                .to_string()
                .contains("metadata.uid: empty")
        );
        let mut r = req();
        r.config.as_mut().unwrap().port_mappings[0].container_port = 70000;
        assert!(
            sandbox_spec(r, &cfg)
                .unwrap_err()
                .to_string()
                .contains("port_mappings[0].container_port: 70000")
        );
        let mut r = req();
        r.runtime_handler = "kata".into();
        assert!(
            sandbox_spec(r, &cfg)
                .unwrap_err()
                .to_string()
                .contains("runtime handler \"kata\"")
        );
        let mut r = req();
        r.config.as_mut().unwrap().linux = Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: 9,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        });
        assert!(
            sandbox_spec(r, &cfg)
                .unwrap_err()
                .to_string()
                .contains("namespace_options.network: unknown namespace mode 9")
        );
        assert!(
            sandbox_spec(cri::RunPodSandboxRequest::default(), &cfg)
                .unwrap_err()
                .to_string()
                .contains("missing")
        );
    }
}
