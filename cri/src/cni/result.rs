//! CNI results (1.0.0, and 0.3.x/0.4.0 which have the same shape for what a
//! runtime reads): the pod's IP addresses, in order, IPv4 first.

use std::net::IpAddr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpConfig {
    pub address: IpAddr,
    pub prefix_len: u8,
    pub gateway: Option<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CniResult {
    pub ips: Vec<IpConfig>,
}

impl CniResult {
    pub fn parse(v: &serde_json::Value) -> Result<Self, String> {
        let mut ips = Vec::new();
        let list = match v.get("ips") {
            None | Some(serde_json::Value::Null) => &Vec::new(),
            Some(serde_json::Value::Array(a)) => a,
            Some(_) => return Err("ips: not an array".into()),
        };
        for (i, ip) in list.iter().enumerate() {
            let addr = ip
                .get("address")
                .and_then(|a| a.as_str())
                .ok_or_else(|| format!("ips[{i}].address: missing"))?;
            let (a, p) = addr
                .split_once('/')
                .ok_or_else(|| format!("ips[{i}].address: {addr:?} is not CIDR"))?;
            let address: IpAddr = a
                .parse()
                .map_err(|_| format!("ips[{i}].address: {addr:?} is not CIDR"))?;
            let prefix_len: u8 = p
                .parse()
                .map_err(|_| format!("ips[{i}].address: {addr:?} is not CIDR"))?;
            let max = if address.is_ipv4() { 32 } else { 128 };
            if prefix_len > max {
                return Err(format!("ips[{i}].address: {addr:?} prefix too long"));
            }
            let gateway = match ip.get("gateway").and_then(|g| g.as_str()) {
                Some(g) => Some(
                    g.parse()
                        .map_err(|_| format!("ips[{i}].gateway: {g:?} is not an IP"))?,
                ),
                None => None,
            };
            ips.push(IpConfig {
                address,
                prefix_len,
                gateway,
            });
        }
        ips.sort_by_key(|ip| !ip.address.is_ipv4());
        Ok(CniResult { ips })
    }

    /// The pod's primary IP (CRI `PodSandboxNetworkStatus.ip`).
    pub fn primary_ip(&self) -> Option<IpAddr> {
        self.ips.first().map(|ip| ip.address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_bridge_results_ipv4_first() {
        let r = CniResult::parse(&json!({
            "cniVersion": "1.0.0",
            "ips": [
                {"address": "fd00::5/64"},
                {"address": "10.89.0.5/24", "gateway": "10.89.0.1", "interface": 2}
            ]
        }))
        .unwrap();
        assert_eq!(r.primary_ip(), Some("10.89.0.5".parse().unwrap()));
        assert_eq!(r.ips[0].gateway, Some("10.89.0.1".parse().unwrap()));
        assert_eq!(r.ips[1].prefix_len, 64);
    }

    #[test]
    fn rejects_malformed_addresses() {
        for bad in [
            json!({"ips": [{"address": "10.0.0.1"}]}),
            json!({"ips": [{"address": "10.0.0.1/33"}]}),
            json!({"ips": 3}),
        ] {
            assert!(CniResult::parse(&bad).is_err(), "{bad}");
        }
        assert_eq!(
            CniResult::parse(&json!({"cniVersion": "1.0.0"})).unwrap(),
            CniResult::default()
        );
    }
}
