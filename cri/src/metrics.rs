//! berthd's own Prometheus metrics, served on `metrics_address` (off unless
//! set): every CRI call by method (count, errors, a latency histogram,
//! recorded by [`MetricsLayer`] around the gRPC server), and the pods and
//! containers berthd holds by state, read at scrape time.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use berth_images::Digest;
use berth_images::Progress;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tonic::codegen::http;

use crate::container::ContainerManager;
use crate::container::model::State;
use crate::sandbox::SandboxManager;
use crate::sandbox::model::SandboxState;

/// Histogram bucket bounds, seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

#[derive(Default)]
struct Method {
    count: u64,
    errors: u64,
    /// Per bucket, not cumulative; summed when rendered.
    buckets: [u64; BUCKETS.len()],
    sum: f64,
}

/// CRI call counters, shared by the layer and the endpoint.
#[derive(Default)]
pub struct Metrics {
    calls: Mutex<BTreeMap<String, Method>>,
    /// Compressed layer bytes fetched from registries by `PullImage`.
    pull_bytes: AtomicU64,
    /// Layers a pull fetched, and layers it found in the store.
    layers_fetched: AtomicU64,
    layers_cached: AtomicU64,
}

/// A pull's [`Progress`]: counts the layer bytes it fetches into
/// [`Metrics`] as they arrive (a failed pull's bytes count too: they were
/// transferred).
pub struct PullCounter {
    metrics: Arc<Metrics>,
    /// Per layer, the offset already counted (a resumed download reports
    /// from where it left off).
    seen: Mutex<HashMap<String, u64>>,
}

impl PullCounter {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            metrics,
            seen: Mutex::default(),
        }
    }
}

impl Progress for PullCounter {
    fn layer(&self, digest: &Digest, done: u64, _total: u64) {
        let mut seen = self.seen.lock().expect("pull counter lock");
        let last = seen.entry(digest.to_string()).or_default();
        let delta = done.saturating_sub(*last);
        *last = (*last).max(done);
        self.metrics.pull_bytes.fetch_add(delta, Ordering::Relaxed);
    }

    fn layer_done(&self, _digest: &Digest, cached: bool) {
        let n = if cached {
            &self.metrics.layers_cached
        } else {
            &self.metrics.layers_fetched
        };
        n.fetch_add(1, Ordering::Relaxed);
    }
}

impl Metrics {
    pub fn observe(&self, method: &str, secs: f64, ok: bool) {
        let mut calls = self.calls.lock().expect("metrics lock");
        let m = calls.entry(method.to_owned()).or_default();
        m.count += 1;
        m.errors += u64::from(!ok);
        m.sum += secs;
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            m.buckets[i] += 1;
        }
    }

    /// The pull metrics in the Prometheus text format.
    pub fn render_pulls(&self, out: &mut String) {
        out.push_str(
            "# HELP berth_image_pull_bytes_total Compressed layer bytes fetched from registries.\n",
        );
        out.push_str("# TYPE berth_image_pull_bytes_total counter\n");
        let _ = writeln!(
            out,
            "berth_image_pull_bytes_total {}",
            self.pull_bytes.load(Ordering::Relaxed)
        );
        out.push_str("# HELP berth_image_pull_layers_total Layers pulls needed, by whether they were fetched or already stored.\n");
        out.push_str("# TYPE berth_image_pull_layers_total counter\n");
        for (source, n) in [
            ("fetched", &self.layers_fetched),
            ("cached", &self.layers_cached),
        ] {
            let _ = writeln!(
                out,
                "berth_image_pull_layers_total{{source=\"{source}\"}} {}",
                n.load(Ordering::Relaxed)
            );
        }
    }

    /// The call metrics in the Prometheus text format.
    pub fn render_calls(&self, out: &mut String) {
        let calls = self.calls.lock().expect("metrics lock");
        out.push_str("# HELP berth_cri_requests_total CRI calls served, by method.\n");
        out.push_str("# TYPE berth_cri_requests_total counter\n");
        for (name, m) in calls.iter() {
            let _ = writeln!(
                out,
                "berth_cri_requests_total{{method=\"{name}\"}} {}",
                m.count
            );
        }
        out.push_str("# HELP berth_cri_request_errors_total CRI calls answered with an error status, by method.\n");
        out.push_str("# TYPE berth_cri_request_errors_total counter\n");
        for (name, m) in calls.iter() {
            let _ = writeln!(
                out,
                "berth_cri_request_errors_total{{method=\"{name}\"}} {}",
                m.errors
            );
        }
        out.push_str(
            "# HELP berth_cri_request_duration_seconds Time to answer a CRI call, by method.\n",
        );
        out.push_str("# TYPE berth_cri_request_duration_seconds histogram\n");
        for (name, m) in calls.iter() {
            let mut acc = 0;
            for (b, n) in BUCKETS.iter().zip(m.buckets) {
                acc += n;
                let _ = writeln!(
                    out,
                    "berth_cri_request_duration_seconds_bucket{{method=\"{name}\",le=\"{b}\"}} {acc}"
                );
            }
            let _ = writeln!(
                out,
                "berth_cri_request_duration_seconds_bucket{{method=\"{name}\",le=\"+Inf\"}} {}",
                m.count
            );
            let _ = writeln!(
                out,
                "berth_cri_request_duration_seconds_sum{{method=\"{name}\"}} {}",
                m.sum
            );
            let _ = writeln!(
                out,
                "berth_cri_request_duration_seconds_count{{method=\"{name}\"}} {}",
                m.count
            );
        }
    }
}

/// Records every gRPC call into [`Metrics`]: the method is the last path
/// segment, an error is a `grpc-status` other than 0 in the response head
/// (tonic answers handler errors trailers-only, so the status is there).
#[derive(Clone)]
pub struct MetricsLayer(pub Option<Arc<Metrics>>);

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = Recorded<S>;
    fn layer(&self, inner: S) -> Recorded<S> {
        Recorded(inner, self.0.clone())
    }
}

#[derive(Clone)]
pub struct Recorded<S>(S, Option<Arc<Metrics>>);

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, B> tower::Service<http::Request<B>> for Recorded<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let metrics = self.1.clone();
        let method = req
            .uri()
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let fut = self.0.call(req);
        Box::pin(async move {
            let start = Instant::now();
            let r = fut.await;
            if let Some(m) = metrics {
                let ok = match &r {
                    Ok(resp) => resp
                        .headers()
                        .get("grpc-status")
                        .is_none_or(|v| v.as_bytes() == b"0"),
                    Err(_) => false,
                };
                m.observe(&method, start.elapsed().as_secs_f64(), ok);
            }
            r
        })
    }
}

/// The whole scrape: calls, then pods and containers by state.
pub async fn render(
    metrics: &Metrics,
    sandboxes: &SandboxManager,
    containers: &ContainerManager,
) -> String {
    let mut out = String::new();
    metrics.render_calls(&mut out);
    metrics.render_pulls(&mut out);
    let pods = sandboxes.list(&Default::default());
    let ready = pods
        .iter()
        .filter(|p| p.state == SandboxState::Ready)
        .count();
    out.push_str("# HELP berth_pod_sandboxes Pod sandboxes berthd holds, by state.\n");
    out.push_str("# TYPE berth_pod_sandboxes gauge\n");
    let _ = writeln!(out, "berth_pod_sandboxes{{state=\"ready\"}} {ready}");
    let _ = writeln!(
        out,
        "berth_pod_sandboxes{{state=\"notready\"}} {}",
        pods.len() - ready
    );
    let mut by_state = BTreeMap::from([
        ("created", 0usize),
        ("running", 0),
        ("exited", 0),
        ("unknown", 0),
    ]);
    for (_, st) in containers.list(&Default::default()).await {
        let k = match st.state {
            State::Created => "created",
            State::Running => "running",
            State::Exited => "exited",
            State::Unknown => "unknown",
        };
        *by_state.entry(k).or_default() += 1;
    }
    out.push_str("# HELP berth_containers Containers berthd holds, by state.\n");
    out.push_str("# TYPE berth_containers gauge\n");
    for (k, n) in by_state {
        let _ = writeln!(out, "berth_containers{{state=\"{k}\"}} {n}");
    }
    out
}

/// Answer `GET /metrics` on `listener` until the task is dropped; anything
/// else is a 404.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    sandboxes: Arc<SandboxManager>,
    containers: Arc<ContainerManager>,
) {
    let mut conns = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((sock, _)) = accepted else { continue };
                let (m, s, c) = (Arc::clone(&metrics), Arc::clone(&sandboxes), Arc::clone(&containers));
                conns.spawn(async move {
                    let (mut r, mut w) = sock.into_split();
                    let head = tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        crate::stream::http::read_head(&mut r),
                    )
                    .await;
                    let Ok(Ok(Some((head, _)))) = head else { return };
                    if head.method != "GET" || head.path.split('?').next() != Some("/metrics") {
                        crate::stream::http::respond_error(&mut w, 404, "Not Found", "only /metrics is served here").await;
                        return;
                    }
                    let body = render(&m, &s, &c).await;
                    let msg = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = w.write_all(msg.as_bytes()).await;
                    let _ = w.shutdown().await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_render_as_counters_and_a_cumulative_histogram() {
        let m = Metrics::default();
        m.observe("RunPodSandbox", 0.003, true);
        m.observe("RunPodSandbox", 0.2, false);
        let mut out = String::new();
        m.render_calls(&mut out);
        assert!(
            out.contains("berth_cri_requests_total{method=\"RunPodSandbox\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("berth_cri_request_errors_total{method=\"RunPodSandbox\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("_bucket{method=\"RunPodSandbox\",le=\"0.0025\"} 0\n"),
            "{out}"
        );
        assert!(
            out.contains("_bucket{method=\"RunPodSandbox\",le=\"0.005\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("_bucket{method=\"RunPodSandbox\",le=\"0.25\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("_bucket{method=\"RunPodSandbox\",le=\"+Inf\"} 2\n"),
            "{out}"
        );
        assert!(
            out.contains("_count{method=\"RunPodSandbox\"} 2\n"),
            "{out}"
        );
    }

    #[test]
    fn pull_bytes_count_each_byte_once() {
        let m = Arc::new(Metrics::default());
        let c = PullCounter::new(Arc::clone(&m));
        let d: Digest = format!("sha256:{}", "a".repeat(64)).parse().unwrap();
        c.layer(&d, 100, 300);
        c.layer(&d, 300, 300);
        // A resumed download reports offsets it had already passed.
        c.layer(&d, 250, 300);
        c.layer_done(&d, false);
        c.layer_done(&d, true);
        let mut out = String::new();
        m.render_pulls(&mut out);
        assert!(out.contains("berth_image_pull_bytes_total 300\n"), "{out}");
        assert!(out.contains("{source=\"fetched\"} 1\n"), "{out}");
        assert!(out.contains("{source=\"cached\"} 1\n"), "{out}");
    }
}
