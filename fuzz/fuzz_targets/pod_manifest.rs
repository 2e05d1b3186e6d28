//! Static pod manifests (with their volumes, probes and env sources),
//! resolv.conf files and resource quantities: any text gives a pod (or DNS
//! settings, or a quantity) or an error naming the file and field, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let path = std::path::Path::new("/m/fuzz.yaml");
        if let Ok((pod, _)) = berth_kubelet::manifest::parse_manifest(path, text, "node") {
            let ctx = berth_kubelet::cri_config::Context {
                pod_logs_dir: std::path::Path::new("/var/log/pods"),
                dns: Default::default(),
                pod_ip: None,
                host_ip: None,
                memory_capacity: 1 << 30,
                objects: Default::default(),
                service_env: Vec::new(),
                seccomp_root: std::path::PathBuf::from("/var/lib/kubelet/seccomp"),
                cgroup_parent: Some("/kubepods/podx".into()),
                userns: None,
            };
            let _ = berth_kubelet::pod_cgroups::PodLimits::of(&pod);
            let _ = berth_kubelet::cri_config::sandbox_config(&pod, 0, &ctx);
            for c in pod.all_containers() {
                let _ = berth_kubelet::cri_config::container_config(&pod, c, 0, &ctx, Vec::new());
            }
        }
        let _ = berth_kubelet::dns::parse_resolv_conf(text);
        let _ = berth_kubelet::quantity::Quantity::parse(text);
    }
});
