//! CNI against Debian's real plugins (bridge, host-local, loopback, portmap)
//! in a network namespace of the test's own. Needs root.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use berth_cri::cni::{Attachment, Cni, CniError, PortMapping};
use berth_cri::pinns::NetNs;

const CNI_BIN: &str = "/usr/lib/cni";

/// A unique small number per test process and name, for bridge names,
/// subnets and ports that do not collide with parallel tests.
fn slot(salt: u32) -> u32 {
    (std::process::id().wrapping_mul(31).wrapping_add(salt)) % 200 + 20
}

struct Net {
    dir: tempfile::TempDir,
    bridge: String,
    subnet_octet: u32,
    ns: Option<NetNs>,
    cni: Cni,
    /// Set once ADD was attempted: Drop runs DEL, so a failing test leaves no
    /// IP, veth or iptables rule behind.
    added: std::cell::RefCell<Option<Attachment>>,
}

impl Net {
    fn new(salt: u32, subnet: Option<&str>) -> Net {
        Self::with_portmap(salt, subnet, true)
    }

    fn with_portmap(salt: u32, subnet: Option<&str>, portmap: bool) -> Net {
        let dir = tempfile::tempdir().unwrap();
        let n = slot(salt);
        let bridge = format!("bt{}x{n}", std::process::id() % 100_000);
        let subnet = subnet
            .map(str::to_owned)
            .unwrap_or_else(|| format!("10.201.{n}.0/24"));
        let conf_dir = dir.path().join("net.d");
        std::fs::create_dir(&conf_dir).unwrap();
        let conf = serde_json::json!({
            "cniVersion": "1.0.0",
            "name": format!("berth-test-{n}"),
            "plugins": [
                {"type": "bridge", "bridge": bridge, "isGateway": true, "ipMasq": false,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]],
                          "dataDir": dir.path().join("ipam")}},
                {"type": "portmap", "capabilities": {"portMappings": true}},
                {"type": "loopback"}
            ]
        });
        let mut conf = conf;
        if !portmap {
            conf["plugins"].as_array_mut().unwrap().remove(1);
        }
        std::fs::write(conf_dir.join("10-test.conflist"), conf.to_string()).unwrap();
        let cni = Cni {
            conf_dir,
            bin_dirs: vec![PathBuf::from("/nonexistent"), PathBuf::from(CNI_BIN)],
            cache_dir: dir.path().join("cache"),
            timeout: Duration::from_secs(20),
        };
        let ns = NetNs::create(&dir.path().join("netns"), "pod").unwrap();
        Net {
            dir,
            bridge,
            subnet_octet: n,
            ns: Some(ns),
            cni,
            added: Default::default(),
        }
    }

    fn attachment(&self, host_port: u16) -> Attachment {
        let a = Attachment {
            container_id: format!("sandbox{}", std::process::id()),
            netns: self.ns.as_ref().unwrap().path().to_owned(),
            ifname: "eth0".into(),
            pod_namespace: "default".into(),
            pod_name: "web".into(),
            pod_uid: "uid-1".into(),
            port_mappings: vec![PortMapping {
                host_port,
                container_port: 80,
                protocol: "tcp".into(),
                host_ip: String::new(),
            }],
        };
        *self.added.borrow_mut() = Some(a.clone());
        a
    }

    fn ipam_files(&self) -> Vec<String> {
        walk(&self.dir.path().join("ipam"))
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        if let Some(a) = self.added.take() {
            // Drop may run inside the test's runtime: DEL on a thread of its own.
            let cni = self.cni.clone();
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(cni.del(&a))
            })
            .join();
        }
        if let Some(ns) = self.ns.take() {
            let _ = ns.remove();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .status();
        // The netns folder was bind-mounted onto itself.
        let _ = nix::mount::umount2(
            &self.dir.path().join("netns"),
            nix::mount::MntFlags::MNT_DETACH,
        );
    }
}

fn walk(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    out
}

fn in_netns(ns: &Path, args: &[&str]) -> String {
    let out = Command::new("nsenter")
        .arg(format!("--net={}", ns.display()))
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn nat_rules() -> String {
    String::from_utf8_lossy(
        &Command::new("iptables")
            .args(["-t", "nat", "-S"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned()
}

#[tokio::test]
async fn add_check_del_with_real_plugins() {
    let net = Net::new(1, None);
    let host_port = 20000 + net.subnet_octet as u16;
    let a = net.attachment(host_port);

    let result = net.cni.add(&a).await.expect("CNI ADD");
    let ip = result.primary_ip().expect("an IP").to_string();
    assert!(
        ip.starts_with(&format!("10.201.{}.", net.subnet_octet)),
        "{ip}"
    );

    // What a user would look at: the pod's eth0 has the IP, lo is up, the
    // host has the bridge and a DNAT rule for the host port.
    let ns = a.netns.clone();
    assert!(in_netns(&ns, &["ip", "-4", "-o", "addr", "show", "eth0"]).contains(&ip));
    assert!(in_netns(&ns, &["ip", "-o", "link", "show", "lo"]).contains("UP"));
    assert!(
        Command::new("ip")
            .args(["link", "show", &net.bridge])
            .status()
            .unwrap()
            .success()
    );
    assert!(
        nat_rules().contains(&format!("--dport {host_port}")),
        "no DNAT rule for {host_port}"
    );
    assert!(
        net.ipam_files().contains(&ip),
        "host-local has no record of {ip}"
    );

    net.cni.del(&a).await.expect("CNI DEL");
    assert!(!net.ipam_files().contains(&ip), "IP {ip} not released");
    assert!(
        !nat_rules().contains(&format!("--dport {host_port}")),
        "DNAT rule left behind"
    );
    assert!(
        in_netns(&ns, &["ip", "-o", "link"])
            .lines()
            .all(|l| !l.contains("eth0"))
    );

    // DEL again is fine (idempotent), and so is removing the namespace twice.
    net.cni.del(&a).await.expect("second CNI DEL");
    let ns = NetNs::at(ns);
    ns.remove().unwrap();
    ns.remove().unwrap();
    assert!(!ns.path().exists());
}

#[tokio::test]
async fn check_passes_when_healthy_and_catches_a_lost_interface() {
    // portmap 1.1 (Debian) fails CHECK on hosts without IPv6 NAT chains, so
    // this chain leaves it out; CHECK is not part of the CRI flow.
    let net = Net::with_portmap(3, None, false);
    let a = net.attachment(0);
    net.cni.add(&a).await.expect("CNI ADD");
    net.cni
        .check(&a)
        .await
        .expect("CNI CHECK of a healthy attachment");
    let deleted = Command::new("nsenter")
        .arg(format!("--net={}", a.netns.display()))
        .args(["ip", "link", "del", "eth0"])
        .status()
        .unwrap();
    assert!(deleted.success());
    let err = net.cni.check(&a).await.unwrap_err();
    assert!(
        matches!(
            err,
            CniError::Plugin {
                command: "CHECK",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("bridge"), "{err}");
    net.cni
        .del(&a)
        .await
        .expect("CNI DEL after a lost interface");
}

#[tokio::test]
async fn failed_add_names_the_plugin_and_leaves_nothing() {
    // A subnet host-local cannot use: the bridge plugin's IPAM fails.
    let net = Net::new(2, Some("10.201.0.0/33"));
    let a = net.attachment(20500);
    let err = net.cni.add(&a).await.unwrap_err();
    let text = format!(
        "{err}: {}",
        std::error::Error::source(&err)
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    assert!(
        matches!(err, CniError::Plugin { command: "ADD", .. }),
        "{text}"
    );
    assert!(text.contains("bridge"), "{text}");
    assert!(
        net.ipam_files().iter().all(|f| !f.starts_with("10.")),
        "an IP was left allocated"
    );
    assert!(
        walk(&net.dir.path().join("cache")).is_empty(),
        "a result was cached for a failed ADD"
    );
}

#[tokio::test]
async fn missing_config_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cni = Cni {
        conf_dir: dir.path().to_owned(),
        bin_dirs: vec![PathBuf::from(CNI_BIN)],
        cache_dir: dir.path().join("cache"),
        timeout: Duration::from_secs(5),
    };
    let a = Attachment {
        container_id: "x".into(),
        netns: dir.path().join("none"),
        ifname: "eth0".into(),
        pod_namespace: "d".into(),
        pod_name: "p".into(),
        pod_uid: "u".into(),
        port_mappings: vec![],
    };
    let err = cni.add(&a).await.unwrap_err();
    assert!(err.to_string().contains("no network config"), "{err}");
    // Nothing attached, nothing cached: DEL succeeds.
    cni.del(&a).await.unwrap();
}
