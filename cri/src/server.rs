//! Serving CRI on a unix socket, with a clean shutdown.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::service::{image::ImageService, runtime::RuntimeService};

/// Bind the CRI socket: refuse if another server answers on it, replace it if
/// it is stale, and make it mode 0660 (root and the socket's group).
pub fn bind(path: &Path) -> Result<UnixListener> {
    let sock_err = |source| Error::Socket {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(sock_err)?;
    }
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(Error::SocketInUse {
                path: path.to_owned(),
            });
        }
        std::fs::remove_file(path).map_err(sock_err)?;
    }
    let listener = UnixListener::bind(path).map_err(sock_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(sock_err)?;
    Ok(listener)
}

/// How long in-flight requests may run on after a shutdown signal. Clients
/// such as the kubelet keep idle connections open, so the drain is bounded.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Serve both CRI services on `listener` until `shutdown` resolves, let
/// in-flight requests finish for up to [`SHUTDOWN_GRACE`], then remove the
/// socket.
pub async fn serve(
    config: Arc<Config>,
    listener: UnixListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let socket = config.socket.clone();
    let sandboxes = match crate::sandbox::SandboxManager::open(&config).await {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_file(&socket);
            return Err(e);
        }
    };
    let images = match crate::images::open(&config) {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&socket);
            return Err(e);
        }
    };
    let containers = match crate::container::ContainerManager::open(
        Arc::clone(&config),
        Arc::clone(&sandboxes),
        Arc::clone(&images),
    ) {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_file(&socket);
            return Err(e);
        }
    };
    {
        let containers = Arc::clone(&containers);
        tokio::spawn(async move { containers.watch_running().await });
    }
    let (streams, stream_listener) = match crate::stream::StreamServer::bind(
        &config.stream_address,
        config.state_dir.clone(),
        config.stream_idle().unwrap_or_default(),
        config
            .stream_tls_cert_file
            .clone()
            .zip(config.stream_tls_key_file.clone())
            .map(|(cert, key)| crate::stream::TlsFiles { cert, key })
            .as_ref(),
    )
    .await
    {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&socket);
            return Err(Error::Stream(e));
        }
    };
    tracing::info!(address = %streams.addr(), "streaming server listening");
    // Aborted when `serve` returns: it owns every streaming connection.
    let stream_task = tokio::spawn(Arc::clone(&streams).serve(stream_listener));
    let _stream_guard = AbortOnDrop(stream_task);
    let metrics = if config.metrics_address.is_empty() {
        None
    } else {
        let listener = match tokio::net::TcpListener::bind(&config.metrics_address).await {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_file(&socket);
                return Err(Error::Io {
                    what: "metrics listener",
                    path: config.metrics_address.clone().into(),
                    source: e,
                });
            }
        };
        if let Ok(a) = listener.local_addr() {
            tracing::info!(address = %a, "metrics endpoint listening");
        }
        let m = Arc::new(crate::metrics::Metrics::default());
        let task = tokio::spawn(crate::metrics::serve(
            listener,
            Arc::clone(&m),
            Arc::clone(&sandboxes),
            Arc::clone(&containers),
        ));
        Some((m, AbortOnDrop(task)))
    };
    let image_service = ImageService::new(Arc::clone(&config), Arc::clone(&images))
        .with_metrics(metrics.as_ref().map(|(m, _)| Arc::clone(m)));
    let runtime = RuntimeService::new(config, sandboxes, containers, streams);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tonic::transport::Server::builder()
        .layer(crate::metrics::MetricsLayer(
            metrics.as_ref().map(|(m, _)| Arc::clone(m)),
        ))
        .layer(crate::deadline::DeadlineLayer)
        .add_service(RuntimeServiceServer::new(runtime))
        .add_service(ImageServiceServer::new(image_service))
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), async {
            let _ = stop_rx.await;
        });
    tokio::pin!(server);
    let result = tokio::select! {
        r = &mut server => r,
        () = shutdown => {
            let _ = stop_tx.send(());
            match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                Ok(r) => r,
                Err(_) => {
                    tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
                    Ok(())
                }
            }
        }
    };
    let _ = std::fs::remove_file(&socket);
    result.map_err(|e| Error::Serve(e.to_string()))
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
