//! The CRI client: RuntimeService and ImageService over a unix socket.
//! The only module that knows the CRI's tonic clients (the other tonic user
//! is `prober/grpc.rs`, which asks pods' gRPC health services); it hands
//! out the CRI's prost types, and every error names the call and the
//! object it was about.

use std::path::PathBuf;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1 as cri;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::{Channel, Endpoint};

use crate::error::{Error, Result};

/// Largest CRI message accepted (a ListContainers of a full node).
const MAX_MESSAGE: usize = 16 << 20;

/// `unix:///run/x.sock` (or a bare absolute path) to the socket path.
pub fn socket_path(endpoint: &str) -> Result<PathBuf> {
    let err = |message: &str| Error::Endpoint {
        endpoint: endpoint.to_owned(),
        message: message.to_owned(),
    };
    let path = if let Some(p) = endpoint.strip_prefix("unix://") {
        p
    } else if endpoint.starts_with('/') {
        endpoint
    } else if endpoint.contains("://") {
        return Err(err("only unix:// endpoints are supported"));
    } else {
        return Err(err("want unix:///path/to/socket"));
    };
    if !path.starts_with('/') {
        return Err(err("the socket path must be absolute"));
    }
    Ok(PathBuf::from(path))
}

fn channel(endpoint: &str) -> Result<Channel> {
    let socket = socket_path(endpoint)?;
    // The URI is required by tonic and unused: the connector dials the socket.
    let ep = Endpoint::from_static("http://[::1]:50051").connect_timeout(Duration::from_secs(5));
    Ok(
        ep.connect_with_connector_lazy(tower::service_fn(move |_: tonic::transport::Uri| {
            let socket = socket.clone();
            async move {
                tokio::net::UnixStream::connect(socket)
                    .await
                    .map(TokioIo::new)
            }
        })),
    )
}

/// A CRI runtime and image service. Cheap to clone; connections are made
/// lazily and again after the runtime restarts.
#[derive(Clone)]
pub struct Cri {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    timeout: Duration,
    pub endpoint: String,
}

fn failed(call: &'static str, object: impl Into<String>) -> impl FnOnce(tonic::Status) -> Error {
    let object = object.into();
    move |status| Error::Cri {
        call,
        object,
        code: status.code(),
        message: status.message().to_owned(),
    }
}

impl Cri {
    /// Clients for the runtime and image endpoints; `timeout` bounds each
    /// call but image pulls (upstream's runtimeRequestTimeout).
    pub fn new(runtime_endpoint: &str, image_endpoint: &str, timeout: Duration) -> Result<Self> {
        Ok(Cri {
            runtime: RuntimeServiceClient::new(channel(runtime_endpoint)?)
                .max_decoding_message_size(MAX_MESSAGE),
            images: ImageServiceClient::new(channel(image_endpoint)?)
                .max_decoding_message_size(MAX_MESSAGE),
            timeout,
            endpoint: runtime_endpoint.to_owned(),
        })
    }

    fn req<T>(&self, msg: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(msg);
        r.set_timeout(self.timeout);
        r
    }

    pub async fn version(&self) -> Result<cri::VersionResponse> {
        let r = self.req(cri::VersionRequest {
            version: "v1".into(),
        });
        Ok(self
            .runtime
            .clone()
            .version(r)
            .await
            .map_err(failed("Version", self.endpoint.clone()))?
            .into_inner())
    }

    pub async fn status(&self) -> Result<cri::StatusResponse> {
        let r = self.req(cri::StatusRequest { verbose: false });
        Ok(self
            .runtime
            .clone()
            .status(r)
            .await
            .map_err(failed("Status", self.endpoint.clone()))?
            .into_inner())
    }

    pub async fn run_pod_sandbox(&self, config: cri::PodSandboxConfig) -> Result<String> {
        let pod = config
            .metadata
            .as_ref()
            .map(|m| format!("{}/{}", m.namespace, m.name))
            .unwrap_or_default();
        let r = self.req(cri::RunPodSandboxRequest {
            config: Some(config),
            runtime_handler: String::new(),
        });
        Ok(self
            .runtime
            .clone()
            .run_pod_sandbox(r)
            .await
            .map_err(failed("RunPodSandbox", format!("pod {pod}")))?
            .into_inner()
            .pod_sandbox_id)
    }

    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<()> {
        let r = self.req(cri::StopPodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        });
        self.runtime
            .clone()
            .stop_pod_sandbox(r)
            .await
            .map_err(failed("StopPodSandbox", format!("sandbox {id}")))?;
        Ok(())
    }

    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<()> {
        let r = self.req(cri::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        });
        self.runtime
            .clone()
            .remove_pod_sandbox(r)
            .await
            .map_err(failed("RemovePodSandbox", format!("sandbox {id}")))?;
        Ok(())
    }

    pub async fn pod_sandbox_status(&self, id: &str) -> Result<cri::PodSandboxStatus> {
        let r = self.req(cri::PodSandboxStatusRequest {
            pod_sandbox_id: id.to_owned(),
            verbose: false,
        });
        self.runtime
            .clone()
            .pod_sandbox_status(r)
            .await
            .map_err(failed("PodSandboxStatus", format!("sandbox {id}")))?
            .into_inner()
            .status
            .ok_or_else(|| {
                failed("PodSandboxStatus", format!("sandbox {id}"))(tonic::Status::internal(
                    "the runtime answered without a status",
                ))
            })
    }

    pub async fn list_pod_sandbox(
        &self,
        filter: Option<cri::PodSandboxFilter>,
    ) -> Result<Vec<cri::PodSandbox>> {
        let r = self.req(cri::ListPodSandboxRequest { filter });
        Ok(self
            .runtime
            .clone()
            .list_pod_sandbox(r)
            .await
            .map_err(failed("ListPodSandbox", self.endpoint.clone()))?
            .into_inner()
            .items)
    }

    pub async fn create_container(
        &self,
        sandbox_id: &str,
        config: cri::ContainerConfig,
        sandbox_config: cri::PodSandboxConfig,
    ) -> Result<String> {
        let name = config
            .metadata
            .as_ref()
            .map(|m| m.name.clone())
            .unwrap_or_default();
        let r = self.req(cri::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.to_owned(),
            config: Some(config),
            sandbox_config: Some(sandbox_config),
        });
        Ok(self
            .runtime
            .clone()
            .create_container(r)
            .await
            .map_err(failed(
                "CreateContainer",
                format!("container {name} in sandbox {sandbox_id}"),
            ))?
            .into_inner()
            .container_id)
    }

    pub async fn start_container(&self, id: &str) -> Result<()> {
        let r = self.req(cri::StartContainerRequest {
            container_id: id.to_owned(),
        });
        self.runtime
            .clone()
            .start_container(r)
            .await
            .map_err(failed("StartContainer", format!("container {id}")))?;
        Ok(())
    }

    /// Stop with a grace period: the stop signal, SIGKILL after `grace`.
    pub async fn stop_container(&self, id: &str, grace: Duration) -> Result<()> {
        let mut r = tonic::Request::new(cri::StopContainerRequest {
            container_id: id.to_owned(),
            timeout: grace.as_secs() as i64,
        });
        r.set_timeout(self.timeout + grace);
        self.runtime
            .clone()
            .stop_container(r)
            .await
            .map_err(failed("StopContainer", format!("container {id}")))?;
        Ok(())
    }

    pub async fn remove_container(&self, id: &str) -> Result<()> {
        let r = self.req(cri::RemoveContainerRequest {
            container_id: id.to_owned(),
        });
        self.runtime
            .clone()
            .remove_container(r)
            .await
            .map_err(failed("RemoveContainer", format!("container {id}")))?;
        Ok(())
    }

    /// Run `cmd` in container `id` and wait for it, at most `timeout`
    /// (the runtime enforces it; the call's own deadline adds the usual
    /// request timeout on top).
    pub async fn exec_sync(
        &self,
        id: &str,
        cmd: Vec<String>,
        timeout: Duration,
    ) -> Result<cri::ExecSyncResponse> {
        // Zero: no timeout (lifecycle hooks), neither in the runtime nor on
        // the call.
        let mut r = tonic::Request::new(cri::ExecSyncRequest {
            container_id: id.to_owned(),
            cmd,
            timeout: if timeout.is_zero() {
                0
            } else {
                timeout.as_secs().max(1) as i64
            },
        });
        if !timeout.is_zero() {
            r.set_timeout(self.timeout + timeout);
        }
        Ok(self
            .runtime
            .clone()
            .exec_sync(r)
            .await
            .map_err(failed("ExecSync", format!("container {id}")))?
            .into_inner())
    }

    pub async fn list_containers(
        &self,
        filter: Option<cri::ContainerFilter>,
    ) -> Result<Vec<cri::Container>> {
        let r = self.req(cri::ListContainersRequest { filter });
        Ok(self
            .runtime
            .clone()
            .list_containers(r)
            .await
            .map_err(failed("ListContainers", self.endpoint.clone()))?
            .into_inner()
            .containers)
    }

    /// The runtime's container event stream (no deadline: it lasts).
    pub async fn container_events(&self) -> Result<tonic::Streaming<cri::ContainerEventResponse>> {
        Ok(self
            .runtime
            .clone()
            .get_container_events(tonic::Request::new(cri::GetEventsRequest {}))
            .await
            .map_err(failed("GetContainerEvents", self.endpoint.clone()))?
            .into_inner())
    }

    pub async fn container_status(&self, id: &str) -> Result<cri::ContainerStatus> {
        let r = self.req(cri::ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: false,
        });
        self.runtime
            .clone()
            .container_status(r)
            .await
            .map_err(failed("ContainerStatus", format!("container {id}")))?
            .into_inner()
            .status
            .ok_or_else(|| {
                failed("ContainerStatus", format!("container {id}"))(tonic::Status::internal(
                    "the runtime answered without a status",
                ))
            })
    }

    /// The image as the runtime has it, or None when it is not present.
    pub async fn image_status(&self, image: &str) -> Result<Option<cri::Image>> {
        let r = self.req(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: image.to_owned(),
                ..Default::default()
            }),
            verbose: false,
        });
        Ok(self
            .images
            .clone()
            .image_status(r)
            .await
            .map_err(failed("ImageStatus", format!("image {image}")))?
            .into_inner()
            .image)
    }

    /// Pull `image` (no deadline: a large image takes what it takes).
    /// Returns the runtime's image reference.
    pub async fn pull_image(
        &self,
        image: &str,
        auth: Option<cri::AuthConfig>,
        sandbox_config: Option<cri::PodSandboxConfig>,
    ) -> Result<String> {
        let r = tonic::Request::new(cri::PullImageRequest {
            image: Some(cri::ImageSpec {
                image: image.to_owned(),
                ..Default::default()
            }),
            auth,
            sandbox_config,
        });
        Ok(self
            .images
            .clone()
            .pull_image(r)
            .await
            .map_err(failed("PullImage", format!("image {image}")))?
            .into_inner()
            .image_ref)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        assert_eq!(
            socket_path("unix:///run/berth/berthd.sock").unwrap(),
            PathBuf::from("/run/berth/berthd.sock")
        );
        assert_eq!(
            socket_path("/run/x.sock").unwrap(),
            PathBuf::from("/run/x.sock")
        );
        assert!(
            socket_path("tcp://127.0.0.1:1")
                .unwrap_err()
                .to_string()
                .contains("only unix://")
        );
        assert!(socket_path("unix://rel.sock").is_err());
        assert!(socket_path("berthd.sock").is_err());
    }
}
