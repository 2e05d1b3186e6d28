//! `ListMetricDescriptors` and `ListPodSandboxMetrics`: the cAdvisor metric
//! set (names, help, meaning and units as cAdvisor's `/metrics/cadvisor`)
//! that a kubelet with `PodAndContainerStatsFromCRI` serves from the
//! runtime instead of cAdvisor. Values are what `ContainerStats` reads from
//! the cgroups; pod-level metrics (the network) carry `container="POD"`.
//!
//! The CRI carries integers: second-valued counters are whole seconds, as
//! CRI-O reports them.

use k8s_cri::v1 as cri;

use crate::container::model::{Container, Status};
use crate::container::stats::{Interface, Stall, Usage};
use crate::sandbox::model::Sandbox;

/// Labels every metric has, sorted (the CRI asks for sorted keys).
const BASE: [&str; 5] = ["container", "id", "image", "namespace", "pod"];

struct Desc {
    name: &'static str,
    help: &'static str,
    /// Labels beyond [`BASE`].
    extra: &'static [&'static str],
    counter: bool,
}

const fn d(name: &'static str, help: &'static str, counter: bool) -> Desc {
    Desc {
        name,
        help,
        extra: &[],
        counter,
    }
}

const fn dx(
    name: &'static str,
    help: &'static str,
    extra: &'static [&'static str],
    counter: bool,
) -> Desc {
    Desc {
        name,
        help,
        extra,
        counter,
    }
}

const COUNTER: bool = true;
const GAUGE: bool = false;

/// Every metric berthd reports, in the order it reports them.
const DESCS: &[Desc] = &[
    dx(
        "container_cpu_usage_seconds_total",
        "Cumulative cpu time consumed in seconds.",
        &["cpu"],
        COUNTER,
    ),
    d(
        "container_cpu_user_seconds_total",
        "Cumulative user cpu time consumed in seconds.",
        COUNTER,
    ),
    d(
        "container_cpu_system_seconds_total",
        "Cumulative system cpu time consumed in seconds.",
        COUNTER,
    ),
    d(
        "container_cpu_cfs_periods_total",
        "Number of elapsed enforcement period intervals.",
        COUNTER,
    ),
    d(
        "container_cpu_cfs_throttled_periods_total",
        "Number of throttled period intervals.",
        COUNTER,
    ),
    d(
        "container_cpu_cfs_throttled_seconds_total",
        "Total time duration the container has been throttled.",
        COUNTER,
    ),
    d(
        "container_memory_usage_bytes",
        "Current memory usage in bytes, including all memory regardless of when it was accessed",
        GAUGE,
    ),
    d(
        "container_memory_working_set_bytes",
        "Current working set in bytes.",
        GAUGE,
    ),
    d("container_memory_rss", "Size of RSS in bytes.", GAUGE),
    d(
        "container_memory_cache",
        "Number of bytes of page cache memory.",
        GAUGE,
    ),
    d(
        "container_memory_swap",
        "Container swap usage in bytes.",
        GAUGE,
    ),
    d(
        "container_memory_mapped_file",
        "Size of memory mapped files in bytes.",
        GAUGE,
    ),
    d(
        "container_memory_max_usage_bytes",
        "Maximum memory usage recorded in bytes",
        GAUGE,
    ),
    d(
        "container_memory_failcnt",
        "Number of memory usage hits limits",
        COUNTER,
    ),
    dx(
        "container_memory_failures_total",
        "Cumulative count of memory allocation failures.",
        &["failure_type", "scope"],
        COUNTER,
    ),
    d(
        "container_oom_events_total",
        "Count of out of memory events observed for the container",
        COUNTER,
    ),
    d(
        "container_processes",
        "Number of processes running inside the container.",
        GAUGE,
    ),
    d(
        "container_threads",
        "Number of threads running inside the container",
        GAUGE,
    ),
    d(
        "container_fs_usage_bytes",
        "Number of bytes that are consumed by the container on this filesystem.",
        GAUGE,
    ),
    d(
        "container_fs_inodes_used",
        "Number of inodes the container's writable layer uses.",
        GAUGE,
    ),
    d(
        "container_spec_cpu_shares",
        "CPU share of the container.",
        GAUGE,
    ),
    d(
        "container_spec_cpu_quota",
        "CPU quota of the container.",
        GAUGE,
    ),
    d(
        "container_spec_cpu_period",
        "CPU period of the container.",
        GAUGE,
    ),
    d(
        "container_spec_memory_limit_bytes",
        "Memory limit for the container.",
        GAUGE,
    ),
    d(
        "container_spec_memory_swap_limit_bytes",
        "Memory swap limit for the container.",
        GAUGE,
    ),
    d(
        "container_start_time_seconds",
        "Start time of the container since unix epoch in seconds.",
        GAUGE,
    ),
    d(
        "container_last_seen",
        "Last time a container was seen by the exporter",
        GAUGE,
    ),
    d(
        "container_pressure_cpu_waiting_seconds_total",
        "Total time duration tasks in the container have waited due to CPU congestion.",
        COUNTER,
    ),
    d(
        "container_pressure_cpu_stalled_seconds_total",
        "Total time duration no tasks in the container could make progress due to CPU congestion.",
        COUNTER,
    ),
    d(
        "container_pressure_memory_waiting_seconds_total",
        "Total time duration tasks in the container have waited due to memory congestion.",
        COUNTER,
    ),
    d(
        "container_pressure_memory_stalled_seconds_total",
        "Total time duration no tasks in the container could make progress due to memory congestion.",
        COUNTER,
    ),
    d(
        "container_pressure_io_waiting_seconds_total",
        "Total time duration tasks in the container have waited due to IO congestion.",
        COUNTER,
    ),
    d(
        "container_pressure_io_stalled_seconds_total",
        "Total time duration no tasks in the container could make progress due to IO congestion.",
        COUNTER,
    ),
    dx(
        "container_network_receive_bytes_total",
        "Cumulative count of bytes received",
        &["interface"],
        COUNTER,
    ),
    dx(
        "container_network_receive_packets_total",
        "Cumulative count of packets received",
        &["interface"],
        COUNTER,
    ),
    dx(
        "container_network_receive_packets_dropped_total",
        "Cumulative count of packets dropped while receiving",
        &["interface"],
        COUNTER,
    ),
    dx(
        "container_network_receive_errors_total",
        "Cumulative count of errors encountered while receiving",
        &["interface"],
        COUNTER,
    ),
    dx(
        "container_network_transmit_bytes_total",
        "Cumulative count of bytes transmitted",
        &["interface"],
        COUNTER,
    ),
    dx(
        "container_network_transmit_packets_total",
        "Cumulative count of packets transmitted",
        &["interface"],
        COUNTER,
    ),
    dx(
        "container_network_transmit_packets_dropped_total",
        "Cumulative count of packets dropped while transmitting",
        &["interface"],
        COUNTER,
    ),
    dx(
        "container_network_transmit_errors_total",
        "Cumulative count of errors encountered while transmitting",
        &["interface"],
        COUNTER,
    ),
];

/// A descriptor's label keys: [`BASE`] and its own, sorted.
fn keys(d: &Desc) -> Vec<&'static str> {
    let mut k: Vec<&str> = BASE.iter().chain(d.extra).copied().collect();
    k.sort_unstable();
    k
}

/// `ListMetricDescriptors`: fixed for berthd's lifetime.
pub fn descriptors() -> Vec<cri::MetricDescriptor> {
    DESCS
        .iter()
        .map(|d| cri::MetricDescriptor {
            name: d.name.to_owned(),
            help: d.help.to_owned(),
            label_keys: keys(d).into_iter().map(str::to_owned).collect(),
        })
        .collect()
}

/// Collects one pod's or container's metrics, labelled alike.
struct Out<'a> {
    base: [(&'static str, &'a str); 5],
    metrics: Vec<cri::Metric>,
}

impl<'a> Out<'a> {
    /// Labels as [`BASE`] orders them.
    fn new(base: [&'a str; 5]) -> Self {
        let [container, id, image, namespace, pod] = base;
        Self {
            base: [
                ("container", container),
                ("id", id),
                ("image", image),
                ("namespace", namespace),
                ("pod", pod),
            ],
            metrics: Vec::new(),
        }
    }

    /// One sample of metric `name` with its extra labels.
    fn put(&mut self, name: &str, extra: &[(&str, &str)], value: u64) {
        let d = DESCS
            .iter()
            .find(|d| d.name == name)
            .expect("every reported metric has a descriptor");
        debug_assert_eq!(d.extra.len(), extra.len(), "{name}: extra labels");
        let mut labels: Vec<(&str, &str)> = self.base.iter().chain(extra).copied().collect();
        labels.sort_unstable_by_key(|(k, _)| *k);
        self.metrics.push(cri::Metric {
            name: name.to_owned(),
            // Read for this call: the kubelet then exports no timestamp.
            timestamp: 0,
            metric_type: if d.counter {
                cri::MetricType::Counter
            } else {
                cri::MetricType::Gauge
            } as i32,
            label_values: labels.into_iter().map(|(_, v)| v.to_owned()).collect(),
            value: Some(cri::UInt64Value { value }),
        });
    }
}

const NS: u64 = 1_000_000_000;

fn pressure(o: &mut Out<'_>, what: &str, s: Stall) {
    o.put(
        &format!("container_pressure_{what}_waiting_seconds_total"),
        &[],
        s.some_us / 1_000_000,
    );
    o.put(
        &format!("container_pressure_{what}_stalled_seconds_total"),
        &[],
        s.full_us / 1_000_000,
    );
}

fn container_metrics(
    sb: &Sandbox,
    c: &Container,
    st: &Status,
    u: &Usage,
    now_ns: i64,
) -> cri::ContainerMetrics {
    let meta = &sb.spec.meta;
    let mut o = Out::new([
        &c.spec.meta.name,
        &c.id,
        &c.spec.image,
        &meta.namespace,
        &meta.name,
    ]);
    o.put(
        "container_cpu_usage_seconds_total",
        &[("cpu", "total")],
        u.cpu_ns / NS,
    );
    o.put("container_cpu_user_seconds_total", &[], u.cpu_user_ns / NS);
    o.put(
        "container_cpu_system_seconds_total",
        &[],
        u.cpu_system_ns / NS,
    );
    o.put("container_cpu_cfs_periods_total", &[], u.cfs_periods);
    o.put(
        "container_cpu_cfs_throttled_periods_total",
        &[],
        u.cfs_throttled_periods,
    );
    o.put(
        "container_cpu_cfs_throttled_seconds_total",
        &[],
        u.cfs_throttled_ns / NS,
    );
    o.put("container_memory_usage_bytes", &[], u.memory_usage);
    o.put("container_memory_working_set_bytes", &[], u.working_set);
    o.put("container_memory_rss", &[], u.rss);
    o.put("container_memory_cache", &[], u.cache);
    o.put("container_memory_swap", &[], u.swap);
    o.put("container_memory_mapped_file", &[], u.mapped_file);
    o.put("container_memory_max_usage_bytes", &[], u.max_usage);
    o.put("container_memory_failcnt", &[], u.failcnt);
    // Minor faults are all faults less the major ones (cAdvisor's split).
    let minor = u.page_faults.saturating_sub(u.major_page_faults);
    for (kind, n) in [("pgfault", minor), ("pgmajfault", u.major_page_faults)] {
        o.put(
            "container_memory_failures_total",
            &[("failure_type", kind), ("scope", "container")],
            n,
        );
    }
    o.put("container_oom_events_total", &[], u.oom_kills);
    o.put("container_processes", &[], u.processes);
    o.put("container_threads", &[], u.pids);
    o.put("container_fs_usage_bytes", &[], u.writable_bytes);
    o.put("container_fs_inodes_used", &[], u.writable_inodes);
    let r = &c.spec.resources;
    let pos = |v: i64| u64::try_from(v).unwrap_or(0);
    o.put("container_spec_cpu_shares", &[], pos(r.cpu_shares));
    o.put("container_spec_cpu_quota", &[], pos(r.cpu_quota));
    o.put("container_spec_cpu_period", &[], pos(r.cpu_period));
    o.put(
        "container_spec_memory_limit_bytes",
        &[],
        pos(r.memory_limit),
    );
    o.put(
        "container_spec_memory_swap_limit_bytes",
        &[],
        pos(r.memory_swap_limit),
    );
    o.put("container_start_time_seconds", &[], pos(st.started_at) / NS);
    o.put("container_last_seen", &[], pos(now_ns) / NS);
    if let Some(p) = u.pressure {
        pressure(&mut o, "cpu", p.cpu);
        pressure(&mut o, "memory", p.memory);
        pressure(&mut o, "io", p.io);
    }
    cri::ContainerMetrics {
        container_id: c.id.clone(),
        metrics: o.metrics,
    }
}

/// One pod's metrics: its network (pod level) and its running containers.
pub fn pod_metrics(
    sb: &Sandbox,
    containers: &[(Container, Status, Usage)],
    interfaces: &[Interface],
    now_ns: i64,
) -> cri::PodSandboxMetrics {
    let meta = &sb.spec.meta;
    let mut o = Out::new(["POD", &sb.id, "", &meta.namespace, &meta.name]);
    for i in interfaces {
        let n = |m: &str| format!("container_network_{m}_total");
        let ifc = [("interface", i.name.as_str())];
        o.put(&n("receive_bytes"), &ifc, i.rx_bytes);
        o.put(&n("receive_packets"), &ifc, i.rx_packets);
        o.put(&n("receive_packets_dropped"), &ifc, i.rx_dropped);
        o.put(&n("receive_errors"), &ifc, i.rx_errors);
        o.put(&n("transmit_bytes"), &ifc, i.tx_bytes);
        o.put(&n("transmit_packets"), &ifc, i.tx_packets);
        o.put(&n("transmit_packets_dropped"), &ifc, i.tx_dropped);
        o.put(&n("transmit_errors"), &ifc, i.tx_errors);
    }
    cri::PodSandboxMetrics {
        pod_sandbox_id: sb.id.clone(),
        metrics: o.metrics,
        container_metrics: containers
            .iter()
            .map(|(c, st, u)| container_metrics(sb, c, st, u, now_ns))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_are_unique_with_sorted_keys() {
        let ds = descriptors();
        let mut names: Vec<&str> = ds.iter().map(|d| d.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ds.len(), "a name is described twice");
        for d in &ds {
            assert!(d.label_keys.is_sorted(), "{}: {:?}", d.name, d.label_keys);
            assert!(
                d.name.starts_with("container_") && !d.help.is_empty(),
                "{}",
                d.name
            );
        }
    }

    #[test]
    fn values_follow_the_descriptor_keys() {
        let mut o = Out::new(["web", "c1", "img", "ns", "pod-a"]);
        o.put(
            "container_network_receive_bytes_total",
            &[("interface", "eth0")],
            42,
        );
        o.put("container_memory_rss", &[], 7);
        let ds = descriptors();
        for m in &o.metrics {
            let d = ds.iter().find(|d| d.name == m.name).unwrap();
            assert_eq!(m.label_values.len(), d.label_keys.len(), "{}", m.name);
        }
        let rx = &o.metrics[0];
        let pairs: Vec<(&str, &str)> = ds
            .iter()
            .find(|d| d.name == rx.name)
            .unwrap()
            .label_keys
            .iter()
            .map(String::as_str)
            .zip(rx.label_values.iter().map(String::as_str))
            .collect();
        assert_eq!(
            pairs,
            [
                ("container", "web"),
                ("id", "c1"),
                ("image", "img"),
                ("interface", "eth0"),
                ("namespace", "ns"),
                ("pod", "pod-a")
            ]
        );
        assert_eq!(rx.metric_type, cri::MetricType::Counter as i32);
        assert_eq!(o.metrics[1].metric_type, cri::MetricType::Gauge as i32);
        assert_eq!(o.metrics[1].value.as_ref().unwrap().value, 7);
        assert_eq!(o.metrics[1].timestamp, 0, "read live");
    }
}
