//! The API server side of the kubelet (kube-rs): the Node and its Lease
//! (`node_agent`), the pods bound to the node (`pods`), their status and
//! deletion (`status`), and the mirror pods of static pods (`mirror`).
//! Every loop here survives API server restarts: a failed call is logged
//! and retried with back-off, never fatal once the kubelet has started.

pub mod events;
pub mod mirror;
pub mod node_agent;
pub mod pods;
pub mod services;
pub mod status;

use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};

/// A client for the cluster a kubeconfig names (its current context).
pub async fn client(kubeconfig: &Path) -> Result<kube::Client> {
    let err = |message: String| Error::Api {
        what: format!("kubeconfig {}", kubeconfig.display()),
        message,
    };
    let kc = kube::config::Kubeconfig::read_from(kubeconfig).map_err(|e| err(e.to_string()))?;
    let mut config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| err(e.to_string()))?;
    // A connection attempt to a dead API server must end so the loops
    // retry; single calls are bounded by the callers.
    config.connect_timeout = Some(Duration::from_secs(10));
    kube::Client::try_from(config).map_err(|e| err(e.to_string()))
}

/// An API error as the crate's error, naming what was being done.
pub fn api_err(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |e| Error::Api {
        what,
        message: e.to_string(),
    }
}

/// Whether a kube error is the API's 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_not_found())
}

/// Whether a kube error is the API's 409 AlreadyExists.
pub fn is_already_exists(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.is_already_exists())
}

/// Retry delays for API calls: 0.5 s doubling to 8 s.
pub struct Retry(Duration);

impl Default for Retry {
    fn default() -> Self {
        Retry(Duration::from_millis(500))
    }
}

impl Retry {
    /// Sleep for the current delay, then double it.
    pub async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Duration::from_secs(8));
    }

    pub fn reset(&mut self) {
        self.0 = Duration::from_millis(500);
    }
}
