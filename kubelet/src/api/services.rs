//! Every Service of the cluster, kept by a reflector (kube-runtime's
//! watcher with back-off): the source of the service variables.

use futures_util::{Future, StreamExt};
use k8s_openapi::api::core::v1 as api;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};

/// The store, and the task that fills it (run until aborted).
pub fn reflect(client: kube::Client) -> (Store<api::Service>, impl Future<Output = ()> + Send) {
    let (reader, writer) = reflector::store();
    let stream = watcher::watcher(Api::<api::Service>::all(client), watcher::Config::default())
        .default_backoff();
    let task = async move {
        reflector::reflector(writer, stream)
            .for_each(|ev| {
                if let Err(e) = ev {
                    tracing::warn!("watching services: {e}");
                }
                futures_util::future::ready(())
            })
            .await;
    };
    (reader, task)
}
