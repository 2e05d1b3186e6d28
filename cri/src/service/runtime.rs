//! CRI RuntimeService.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_cri::v1 as cri;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::{convert, convert_container};
use crate::config::{CgroupDriver, Config};
use crate::container::ContainerManager;
use crate::sandbox::SandboxManager;

/// The CRI API version berthd speaks.
pub const CRI_API_VERSION: &str = "v1";
pub const RUNTIME_NAME: &str = "berth";

pub struct RuntimeService {
    config: Arc<Config>,
    sandboxes: Arc<SandboxManager>,
    containers: Arc<ContainerManager>,
    streams: Arc<crate::stream::StreamServer>,
    /// Pod CIDR from `UpdateRuntimeConfig`, handed to CNI's host-local IPAM.
    pod_cidr: Mutex<Option<String>>,
}

impl RuntimeService {
    /// The container an Exec or Attach streams to: one of its stdin,
    /// stdout, stderr asked for, and the container running.
    async fn running_for_stream(
        &self,
        verb: &str,
        id: &str,
        [stdin, stdout, stderr]: [bool; 3],
    ) -> Result<crate::container::model::Container, Status> {
        use crate::error::Error;
        if !stdin && !stdout && !stderr {
            return Err(Error::InvalidArgument(format!(
                "{verb} container {id}: one of stdin, stdout or stderr must be set"
            ))
            .into());
        }
        let (c, st) = self.containers.status(id).await?;
        if st.state != crate::container::model::State::Running {
            return Err(
                Error::FailedPrecondition(format!("container {} is not running", c.id)).into(),
            );
        }
        Ok(c)
    }

    pub fn new(
        config: Arc<Config>,
        sandboxes: Arc<SandboxManager>,
        containers: Arc<ContainerManager>,
        streams: Arc<crate::stream::StreamServer>,
    ) -> Self {
        Self {
            config,
            sandboxes,
            containers,
            streams,
            pod_cidr: Mutex::new(None),
        }
    }

    async fn sandbox_stats(&self, sb: &crate::sandbox::model::Sandbox) -> cri::PodSandboxStats {
        let filter = crate::container::ContainerFilter {
            sandbox_id: Some(sb.id.clone()),
            ..Default::default()
        };
        let containers = self.containers.stats(&filter).await;
        let timestamp = containers
            .first()
            .map_or_else(crate::sandbox::now_ns, |(_, u)| u.timestamp);
        let interfaces = Self::pod_interfaces(sb).await;
        convert_container::pod_sandbox_stats(sb, &containers, interfaces.as_deref(), timestamp)
    }

    /// The pod's network interfaces and their counters; `None` for a
    /// host-network pod (no network of its own) or an unreadable one.
    async fn pod_interfaces(
        sb: &crate::sandbox::model::Sandbox,
    ) -> Option<Vec<crate::container::stats::Interface>> {
        let ns = sb.netns.clone()?;
        tokio::task::spawn_blocking(move || crate::container::stats::netns_interfaces(&ns))
            .await
            .ok()
            .and_then(|r| {
                r.map_err(|e| tracing::debug!(sandbox_id = %sb.id, error = %e, "pod network stats"))
                    .ok()
            })
    }

    fn conditions(&self) -> Vec<cri::RuntimeCondition> {
        let network_ready = self.config.cni_config_present();
        vec![
            cri::RuntimeCondition {
                r#type: "RuntimeReady".into(),
                status: true,
                reason: String::new(),
                message: String::new(),
            },
            cri::RuntimeCondition {
                r#type: "NetworkReady".into(),
                status: network_ready,
                reason: if network_ready {
                    String::new()
                } else {
                    "NetworkPluginNotReady".into()
                },
                message: if network_ready {
                    String::new()
                } else {
                    format!(
                        "no CNI network config in {}",
                        self.config.cni_conf_dir.display()
                    )
                },
            },
        ]
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send>>;

/// An event with its pod's status and the statuses of the pod's containers
/// as they are when it is sent (what containerd attaches).
async fn event_response(
    sandboxes: &SandboxManager,
    containers: &ContainerManager,
    e: crate::container::Event,
) -> cri::ContainerEventResponse {
    use crate::container::EventKind;
    let kind = match e.kind {
        EventKind::Created => cri::ContainerEventType::ContainerCreatedEvent,
        EventKind::Started => cri::ContainerEventType::ContainerStartedEvent,
        EventKind::Stopped => cri::ContainerEventType::ContainerStoppedEvent,
        EventKind::Deleted => cri::ContainerEventType::ContainerDeletedEvent,
    };
    let filter = crate::container::ContainerFilter {
        sandbox_id: Some(e.sandbox_id.clone()),
        ..Default::default()
    };
    cri::ContainerEventResponse {
        container_id: e.container_id,
        container_event_type: kind as i32,
        created_at: e.at,
        pod_sandbox_status: sandboxes
            .get(&e.sandbox_id)
            .map(|sb| convert::sandbox_status(&sb)),
        containers_statuses: containers
            .list(&filter)
            .await
            .iter()
            .map(|(c, st)| convert_container::container_status(c, st))
            .collect(),
    }
}

#[tonic::async_trait]
impl cri::runtime_service_server::RuntimeService for RuntimeService {
    async fn version(
        &self,
        _request: Request<cri::VersionRequest>,
    ) -> Result<Response<cri::VersionResponse>, Status> {
        Ok(Response::new(cri::VersionResponse {
            version: "0.1.0".into(),
            runtime_name: RUNTIME_NAME.into(),
            runtime_version: env!("CARGO_PKG_VERSION").into(),
            runtime_api_version: CRI_API_VERSION.into(),
        }))
    }

    async fn status(
        &self,
        request: Request<cri::StatusRequest>,
    ) -> Result<Response<cri::StatusResponse>, Status> {
        let mut info = std::collections::HashMap::new();
        if request.get_ref().verbose {
            let cfg = &self.config;
            let pod_cidr = self
                .pod_cidr
                .lock()
                .expect("pod_cidr lock")
                .clone()
                .unwrap_or_default();
            info.insert(
                "config".to_owned(),
                format!(
                    "{{\"socket\":{:?},\"rootDir\":{:?},\"stateDir\":{:?},\"cniConfDir\":{:?},\"defaultRuntime\":{:?},\"podCIDR\":{:?}}}",
                    cfg.socket.display().to_string(),
                    cfg.root_dir.display().to_string(),
                    cfg.state_dir.display().to_string(),
                    cfg.cni_conf_dir.display().to_string(),
                    cfg.default_runtime,
                    pod_cidr,
                ),
            );
        }
        let handlers = self
            .config
            .runtimes
            .keys()
            .map(|name| cri::RuntimeHandler {
                name: if *name == self.config.default_runtime {
                    String::new()
                } else {
                    name.clone()
                },
                // rro is mount_setattr(2): berth-runc, runc 1.1+ and crun
                // all do it on the kernels berthd runs on (5.12+).
                features: Some(cri::RuntimeHandlerFeatures {
                    recursive_read_only_mounts: true,
                    user_namespaces: true,
                }),
            })
            .collect();
        Ok(Response::new(cri::StatusResponse {
            status: Some(cri::RuntimeStatus {
                conditions: self.conditions(),
            }),
            info,
            runtime_handlers: handlers,
            // Strict groups are `user::resolve`'s; ContainerStatus has the
            // process's user.
            features: Some(cri::RuntimeFeatures {
                supplemental_groups_policy: true,
            }),
        }))
    }

    async fn runtime_config(
        &self,
        _request: Request<cri::RuntimeConfigRequest>,
    ) -> Result<Response<cri::RuntimeConfigResponse>, Status> {
        let driver = match self.config.cgroup_driver {
            CgroupDriver::Cgroupfs => cri::CgroupDriver::Cgroupfs,
            CgroupDriver::Systemd => cri::CgroupDriver::Systemd,
        };
        Ok(Response::new(cri::RuntimeConfigResponse {
            linux: Some(cri::LinuxRuntimeConfiguration {
                cgroup_driver: driver as i32,
            }),
        }))
    }

    async fn update_runtime_config(
        &self,
        request: Request<cri::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<cri::UpdateRuntimeConfigResponse>, Status> {
        let cidr = request
            .into_inner()
            .runtime_config
            .and_then(|c| c.network_config)
            .map(|n| n.pod_cidr)
            .unwrap_or_default();
        if !cidr.is_empty() {
            tracing::info!(pod_cidr = %cidr, "pod CIDR updated");
            *self.pod_cidr.lock().expect("pod_cidr lock") = Some(cidr);
        }
        Ok(Response::new(cri::UpdateRuntimeConfigResponse {}))
    }

    async fn run_pod_sandbox(
        &self,
        request: Request<cri::RunPodSandboxRequest>,
    ) -> Result<Response<cri::RunPodSandboxResponse>, Status> {
        let spec = convert::sandbox_spec(request.into_inner(), &self.config)?;
        let pod_sandbox_id = self.sandboxes.run(spec).await?;
        Ok(Response::new(cri::RunPodSandboxResponse { pod_sandbox_id }))
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<cri::StopPodSandboxRequest>,
    ) -> Result<Response<cri::StopPodSandboxResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        if let Ok(sb) = self.sandboxes.status(&id) {
            for c in self.containers.of_sandbox(&sb.id) {
                self.containers.stop(&c.id, Duration::ZERO).await?;
            }
        }
        self.sandboxes.stop(&id).await?;
        Ok(Response::new(cri::StopPodSandboxResponse {}))
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<cri::RemovePodSandboxRequest>,
    ) -> Result<Response<cri::RemovePodSandboxResponse>, Status> {
        let id = request.into_inner().pod_sandbox_id;
        if let Ok(sb) = self.sandboxes.status(&id) {
            for c in self.containers.of_sandbox(&sb.id) {
                self.containers.remove(&c.id).await?;
            }
        }
        self.sandboxes.remove(&id).await?;
        Ok(Response::new(cri::RemovePodSandboxResponse {}))
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<cri::PodSandboxStatusRequest>,
    ) -> Result<Response<cri::PodSandboxStatusResponse>, Status> {
        let req = request.into_inner();
        let sb = self.sandboxes.status(&req.pod_sandbox_id)?;
        Ok(Response::new(cri::PodSandboxStatusResponse {
            status: Some(convert::sandbox_status(&sb)),
            info: if req.verbose {
                convert::sandbox_info(&sb)
            } else {
                Default::default()
            },
            containers_statuses: Vec::new(),
            timestamp: 0,
        }))
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<cri::ListPodSandboxRequest>,
    ) -> Result<Response<cri::ListPodSandboxResponse>, Status> {
        let filter = convert::sandbox_filter(request.into_inner().filter);
        let items = self
            .sandboxes
            .list(&filter)
            .iter()
            .map(convert::sandbox_item)
            .collect();
        Ok(Response::new(cri::ListPodSandboxResponse { items }))
    }

    type GetContainerEventsStream = EventStream;

    async fn get_container_events(
        &self,
        _request: Request<cri::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        let mut events = self.containers.subscribe();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let (sandboxes, containers) = (Arc::clone(&self.sandboxes), Arc::clone(&self.containers));
        // Ends when the subscriber goes away (the send fails) or berthd stops.
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                let e = match events.recv().await {
                    Ok(e) => e,
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "a GetContainerEvents subscriber fell behind");
                        continue;
                    }
                    Err(RecvError::Closed) => return,
                };
                let resp = event_response(&sandboxes, &containers, e).await;
                if tx.send(Ok(resp)).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn create_container(
        &self,
        request: Request<cri::CreateContainerRequest>,
    ) -> Result<Response<cri::CreateContainerResponse>, Status> {
        let req = request.into_inner();
        let spec = convert_container::container_spec(req.config)?;
        let container_id = self.containers.create(&req.pod_sandbox_id, spec).await?;
        Ok(Response::new(cri::CreateContainerResponse { container_id }))
    }

    async fn start_container(
        &self,
        request: Request<cri::StartContainerRequest>,
    ) -> Result<Response<cri::StartContainerResponse>, Status> {
        self.containers
            .start(&request.into_inner().container_id)
            .await?;
        Ok(Response::new(cri::StartContainerResponse {}))
    }

    async fn stop_container(
        &self,
        request: Request<cri::StopContainerRequest>,
    ) -> Result<Response<cri::StopContainerResponse>, Status> {
        let req = request.into_inner();
        let timeout = Duration::from_secs(req.timeout.max(0) as u64);
        self.containers.stop(&req.container_id, timeout).await?;
        Ok(Response::new(cri::StopContainerResponse {}))
    }

    async fn remove_container(
        &self,
        request: Request<cri::RemoveContainerRequest>,
    ) -> Result<Response<cri::RemoveContainerResponse>, Status> {
        self.containers
            .remove(&request.into_inner().container_id)
            .await?;
        Ok(Response::new(cri::RemoveContainerResponse {}))
    }

    async fn list_containers(
        &self,
        request: Request<cri::ListContainersRequest>,
    ) -> Result<Response<cri::ListContainersResponse>, Status> {
        let filter = convert_container::container_filter(request.into_inner().filter);
        let containers = self
            .containers
            .list(&filter)
            .await
            .iter()
            .map(|(c, st)| convert_container::container_item(c, st))
            .collect();
        Ok(Response::new(cri::ListContainersResponse { containers }))
    }

    async fn container_status(
        &self,
        request: Request<cri::ContainerStatusRequest>,
    ) -> Result<Response<cri::ContainerStatusResponse>, Status> {
        let req = request.into_inner();
        let (c, st) = self.containers.status(&req.container_id).await?;
        Ok(Response::new(cri::ContainerStatusResponse {
            status: Some(convert_container::container_status(&c, &st)),
            info: if req.verbose {
                convert_container::container_info(&c, &st)
            } else {
                Default::default()
            },
        }))
    }

    async fn reopen_container_log(
        &self,
        request: Request<cri::ReopenContainerLogRequest>,
    ) -> Result<Response<cri::ReopenContainerLogResponse>, Status> {
        self.containers
            .reopen_log(&request.into_inner().container_id)
            .await?;
        Ok(Response::new(cri::ReopenContainerLogResponse {}))
    }

    async fn exec_sync(
        &self,
        request: Request<cri::ExecSyncRequest>,
    ) -> Result<Response<cri::ExecSyncResponse>, Status> {
        let req = request.into_inner();
        let (c, st) = self.containers.status(&req.container_id).await?;
        if st.state != crate::container::model::State::Running {
            return Err(crate::error::Error::FailedPrecondition(format!(
                "container {} is not running",
                c.id
            ))
            .into());
        }
        let runtime = self.containers.runtime_for(&c)?;
        let out = crate::container::exec::exec_sync(
            &runtime,
            &self.config.state_dir,
            &c.id,
            &req.cmd,
            Duration::from_secs(req.timeout.max(0) as u64),
        )
        .await?;
        Ok(Response::new(cri::ExecSyncResponse {
            stdout: out.stdout,
            stderr: out.stderr,
            exit_code: out.exit_code,
        }))
    }

    async fn exec(
        &self,
        request: Request<cri::ExecRequest>,
    ) -> Result<Response<cri::ExecResponse>, Status> {
        use crate::error::Error;
        let req = request.into_inner();
        if req.cmd.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "exec in container {}: empty command",
                req.container_id
            ))
            .into());
        }
        if req.tty && req.stderr {
            return Err(Error::InvalidArgument(format!(
                "exec in container {}: tty and stderr cannot both be true",
                req.container_id
            ))
            .into());
        }
        let c = self
            .running_for_stream(
                "exec in",
                &req.container_id,
                [req.stdin, req.stdout, req.stderr],
            )
            .await?;
        let runtime = self.containers.runtime_for(&c)?;
        let url = self
            .streams
            .register(crate::stream::Request::Exec(crate::stream::ExecRequest {
                container_id: c.id,
                runtime,
                cmd: req.cmd,
                stdin: req.stdin,
                stdout: req.stdout,
                stderr: req.stderr,
                tty: req.tty,
            }));
        Ok(Response::new(cri::ExecResponse { url }))
    }

    async fn port_forward(
        &self,
        request: Request<cri::PortForwardRequest>,
    ) -> Result<Response<cri::PortForwardResponse>, Status> {
        use crate::error::Error;
        let req = request.into_inner();
        let sb = self.sandboxes.status(&req.pod_sandbox_id)?;
        if sb.state != crate::sandbox::model::SandboxState::Ready {
            return Err(
                Error::FailedPrecondition(format!("pod sandbox {} is not ready", sb.id)).into(),
            );
        }
        if let Some(p) = req.port.iter().find(|p| !(1..=65535).contains(*p)) {
            return Err(Error::InvalidArgument(format!(
                "port forward to pod sandbox {}: invalid port {p}",
                sb.id
            ))
            .into());
        }
        let url = self.streams.register(crate::stream::Request::PortForward(
            crate::stream::PortForwardRequest {
                sandbox_id: sb.id,
                netns: sb.netns,
            },
        ));
        Ok(Response::new(cri::PortForwardResponse { url }))
    }

    async fn container_stats(
        &self,
        request: Request<cri::ContainerStatsRequest>,
    ) -> Result<Response<cri::ContainerStatsResponse>, Status> {
        let c = self.containers.get(&request.into_inner().container_id)?;
        let filter = crate::container::ContainerFilter {
            id: Some(c.id.clone()),
            ..Default::default()
        };
        let stats = self
            .containers
            .stats(&filter)
            .await
            .iter()
            .find(|(x, _)| x.id == c.id)
            .map(|(c, u)| convert_container::container_stats(c, u));
        Ok(Response::new(cri::ContainerStatsResponse { stats }))
    }

    async fn list_container_stats(
        &self,
        request: Request<cri::ListContainerStatsRequest>,
    ) -> Result<Response<cri::ListContainerStatsResponse>, Status> {
        let filter = convert_container::stats_filter(request.into_inner().filter);
        let stats = self
            .containers
            .stats(&filter)
            .await
            .iter()
            .map(|(c, u)| convert_container::container_stats(c, u))
            .collect();
        Ok(Response::new(cri::ListContainerStatsResponse { stats }))
    }

    async fn update_container_resources(
        &self,
        request: Request<cri::UpdateContainerResourcesRequest>,
    ) -> Result<Response<cri::UpdateContainerResourcesResponse>, Status> {
        let req = request.into_inner();
        let resources = convert_container::resources(req.linux);
        self.containers.update(&req.container_id, resources).await?;
        Ok(Response::new(cri::UpdateContainerResourcesResponse {}))
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<cri::PodSandboxStatsRequest>,
    ) -> Result<Response<cri::PodSandboxStatsResponse>, Status> {
        let sb = self
            .sandboxes
            .status(&request.into_inner().pod_sandbox_id)?;
        Ok(Response::new(cri::PodSandboxStatsResponse {
            stats: Some(self.sandbox_stats(&sb).await),
        }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<cri::ListPodSandboxStatsRequest>,
    ) -> Result<Response<cri::ListPodSandboxStatsResponse>, Status> {
        let f = request.into_inner().filter.unwrap_or_default();
        let filter = crate::sandbox::SandboxFilter {
            id: (!f.id.is_empty()).then_some(f.id),
            state: None,
            labels: f.label_selector.into_iter().collect(),
        };
        let mut stats = Vec::new();
        for sb in self.sandboxes.list(&filter) {
            stats.push(self.sandbox_stats(&sb).await);
        }
        Ok(Response::new(cri::ListPodSandboxStatsResponse { stats }))
    }

    async fn attach(
        &self,
        request: Request<cri::AttachRequest>,
    ) -> Result<Response<cri::AttachResponse>, Status> {
        let req = request.into_inner();
        let c = self
            .running_for_stream(
                "attach to",
                &req.container_id,
                [req.stdin, req.stdout, req.stderr],
            )
            .await?;
        let socket = self.containers.monitor_socket(&c)?;
        let url = self.streams.register(crate::stream::Request::Attach(
            crate::stream::AttachRequest {
                // Input only reaches a container that was created with stdin.
                stdin: req.stdin && c.spec.stdin,
                stdout: req.stdout,
                // A terminal has one output stream (as containerd).
                stderr: req.stderr && !c.spec.tty,
                // Which streams the client opens (resize, no stderr).
                tty: req.tty,
                container_id: c.id,
                socket,
            },
        ));
        Ok(Response::new(cri::AttachResponse { url }))
    }

    async fn list_metric_descriptors(
        &self,
        _request: Request<cri::ListMetricDescriptorsRequest>,
    ) -> Result<Response<cri::ListMetricDescriptorsResponse>, Status> {
        Ok(Response::new(cri::ListMetricDescriptorsResponse {
            descriptors: super::pod_metrics::descriptors(),
        }))
    }

    /// Every ready pod with its running containers (what cAdvisor shows).
    async fn list_pod_sandbox_metrics(
        &self,
        _request: Request<cri::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<cri::ListPodSandboxMetricsResponse>, Status> {
        use crate::container::ContainerFilter;
        use crate::container::model::State;
        use crate::sandbox::model::SandboxState;
        let pods = self.sandboxes.list(&crate::sandbox::SandboxFilter {
            state: Some(SandboxState::Ready),
            ..Default::default()
        });
        let mut pod_metrics = Vec::with_capacity(pods.len());
        for sb in pods {
            let running = self
                .containers
                .list(&ContainerFilter {
                    sandbox_id: Some(sb.id.clone()),
                    state: Some(State::Running),
                    ..Default::default()
                })
                .await;
            let (records, statuses): (Vec<_>, Vec<_>) = running.into_iter().unzip();
            let used = self.containers.usage(records).await;
            let containers: Vec<_> = used
                .into_iter()
                .zip(statuses)
                .map(|((c, u), st)| (c, st, u))
                .collect();
            let interfaces = Self::pod_interfaces(&sb).await.unwrap_or_default();
            pod_metrics.push(super::pod_metrics::pod_metrics(
                &sb,
                &containers,
                &interfaces,
                crate::sandbox::now_ns(),
            ));
        }
        Ok(Response::new(cri::ListPodSandboxMetricsResponse {
            pod_metrics,
        }))
    }

    async fn checkpoint_container(
        &self,
        request: Request<cri::CheckpointContainerRequest>,
    ) -> Result<Response<cri::CheckpointContainerResponse>, Status> {
        use crate::container::checkpoint::DEFAULT_TIMEOUT;
        let req = request.into_inner();
        let timeout = u64::try_from(req.timeout)
            .ok()
            .filter(|t| *t > 0)
            .map_or(DEFAULT_TIMEOUT, std::time::Duration::from_secs);
        self.containers
            .checkpoint(&req.container_id, &req.location, timeout)
            .await?;
        Ok(Response::new(cri::CheckpointContainerResponse {}))
    }
}
