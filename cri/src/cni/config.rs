//! CNI network configuration: a `.conflist` (a chain of plugins) or a single
//! plugin `.conf`/`.json`, which is read as a chain of one.

use std::path::{Path, PathBuf};

use super::{CniError, PortMapping};

/// One plugin of the chain: its `type` and its whole JSON object.
#[derive(Debug, Clone, PartialEq)]
pub struct Plugin {
    pub kind: String,
    pub conf: serde_json::Map<String, serde_json::Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NetworkList {
    pub name: String,
    pub cni_version: String,
    pub plugins: Vec<Plugin>,
    /// `disableCheck`: the runtime must not call CHECK.
    pub disable_check: bool,
    /// The document as loaded, cached with each ADD result.
    pub raw: serde_json::Value,
}

impl NetworkList {
    /// Validate a parsed conflist (or single-plugin conf).
    pub fn from_value(raw: serde_json::Value) -> Result<Self, String> {
        let obj = raw.as_object().ok_or("not a JSON object")?;
        let name = obj
            .get("name")
            .and_then(|v| v.as_str())
            .ok_or("name: missing or not a string")?;
        let cni_version = obj
            .get("cniVersion")
            .and_then(|v| v.as_str())
            .unwrap_or("0.4.0");
        let plugin_values: Vec<serde_json::Value> = match obj.get("plugins") {
            Some(serde_json::Value::Array(list)) => list.clone(),
            Some(_) => return Err("plugins: not an array".into()),
            None => vec![raw.clone()],
        };
        if plugin_values.is_empty() {
            return Err("plugins: empty".into());
        }
        let mut plugins = Vec::with_capacity(plugin_values.len());
        for (i, v) in plugin_values.into_iter().enumerate() {
            let serde_json::Value::Object(conf) = v else {
                return Err(format!("plugins[{i}]: not an object"));
            };
            let kind = conf
                .get("type")
                .and_then(|t| t.as_str())
                .ok_or_else(|| format!("plugins[{i}].type: missing or not a string"))?;
            if kind.is_empty() || kind.contains('/') || kind.starts_with('.') {
                return Err(format!("plugins[{i}].type: {kind:?} is not a plugin name"));
            }
            plugins.push(Plugin {
                kind: kind.to_owned(),
                conf,
            });
        }
        let disable_check = obj
            .get("disableCheck")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        Ok(NetworkList {
            name: name.to_owned(),
            cni_version: cni_version.to_owned(),
            plugins,
            disable_check,
            raw,
        })
    }

    /// The JSON a plugin reads on stdin: its own object, the network's name
    /// and version, the previous result, and the runtime config for the
    /// capabilities it declares.
    pub fn plugin_input(
        &self,
        plugin: &Plugin,
        prev: Option<&serde_json::Value>,
        ports: &[PortMapping],
    ) -> serde_json::Value {
        let mut conf = plugin.conf.clone();
        conf.insert("name".into(), self.name.clone().into());
        conf.insert("cniVersion".into(), self.cni_version.clone().into());
        if let Some(prev) = prev {
            conf.insert("prevResult".into(), prev.clone());
        }
        let wants_ports = plugin
            .conf
            .get("capabilities")
            .and_then(|c| c.get("portMappings"))
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        if wants_ports && !ports.is_empty() {
            conf.insert(
                "runtimeConfig".into(),
                serde_json::json!({ "portMappings": ports }),
            );
        }
        serde_json::Value::Object(conf)
    }
}

/// Load the first network config in `dir`, in lexical order of file names,
/// as the CNI spec's runtimes do.
pub fn load_network(dir: &Path) -> Result<NetworkList, CniError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("conflist" | "conf" | "json")
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let path = files
        .into_iter()
        .next()
        .ok_or_else(|| CniError::NoConfig(dir.to_owned()))?;
    let bytes = std::fs::read(&path).map_err(|source| CniError::ReadConfig {
        path: path.clone(),
        source,
    })?;
    let raw: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| CniError::BadConfig {
            path: path.clone(),
            message: e.to_string(),
        })?;
    NetworkList::from_value(raw).map_err(|message| CniError::BadConfig { path, message })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn single_plugin_conf_is_a_chain_of_one() {
        let n = NetworkList::from_value(json!({"cniVersion":"0.4.0","name":"n","type":"bridge"}))
            .unwrap();
        assert_eq!(n.plugins.len(), 1);
        assert_eq!(n.plugins[0].kind, "bridge");
    }

    #[test]
    fn names_what_is_wrong() {
        let e = NetworkList::from_value(json!({"name":"n","plugins":[{"type":"bridge"},{"x":1}]}))
            .unwrap_err();
        assert_eq!(e, "plugins[1].type: missing or not a string");
        let e = NetworkList::from_value(json!({"name":"n","plugins":[{"type":"../../bin/sh"}]}))
            .unwrap_err();
        assert!(e.starts_with("plugins[0].type"), "{e}");
        assert_eq!(
            NetworkList::from_value(json!({"plugins":[]})).unwrap_err(),
            "name: missing or not a string"
        );
    }

    #[test]
    fn port_mappings_go_only_to_plugins_that_ask() {
        let n = NetworkList::from_value(json!({
            "cniVersion":"1.0.0","name":"n",
            "plugins":[{"type":"bridge"},{"type":"portmap","capabilities":{"portMappings":true}}]
        }))
        .unwrap();
        let ports = [PortMapping {
            host_port: 8080,
            container_port: 80,
            protocol: "tcp".into(),
            host_ip: String::new(),
        }];
        let prev = json!({"cniVersion":"1.0.0"});
        let bridge = n.plugin_input(&n.plugins[0], None, &ports);
        assert!(bridge.get("runtimeConfig").is_none());
        assert_eq!(bridge["name"], "n");
        let portmap = n.plugin_input(&n.plugins[1], Some(&prev), &ports);
        assert_eq!(
            portmap["runtimeConfig"]["portMappings"][0]["hostPort"],
            8080
        );
        assert_eq!(portmap["prevResult"], prev);
    }
}
