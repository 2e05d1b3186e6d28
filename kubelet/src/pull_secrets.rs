//! `imagePullSecrets`: Docker config Secrets (`kubernetes.io/dockerconfigjson`
//! with `.dockerconfigjson`, or the older `kubernetes.io/dockercfg` with
//! `.dockercfg`) turned into the CRI `AuthConfig` for an image, matching the
//! registry host the way upstream's credential keyring does for plain
//! host keys (`host[:port]`, with or without scheme and path).

use base64::Engine;
use k8s_cri::v1 as cri;
use serde_json::Value;

/// The registry host of an image reference (`docker.io` when it has none).
pub fn registry_host(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

/// The host part of a Docker config key (`https://h:5443/v1/` -> `h:5443`).
fn key_host(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let k = k.split('/').next().unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        o => o,
    }
}

/// The entries (`auths` map, or the map itself in the old format) of a
/// Secret's Docker config; an unparsable one is an error naming the key.
pub fn parse(data: &[u8]) -> Result<Vec<(String, cri::AuthConfig)>, String> {
    let v: Value = serde_json::from_slice(data).map_err(|e| format!("not a Docker config: {e}"))?;
    let map = v.get("auths").unwrap_or(&v);
    let Some(map) = map.as_object() else {
        return Err("not a Docker config: want an object of registries".into());
    };
    let mut out = Vec::new();
    for (key, e) in map {
        let s = |f: &str| e.get(f).and_then(Value::as_str).unwrap_or("").to_owned();
        let (mut username, mut password) = (s("username"), s("password"));
        let auth = s("auth");
        if username.is_empty() && !auth.is_empty() {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| format!("registry {key:?}: auth is not base64: {e}"))?;
            let text = String::from_utf8_lossy(&raw).into_owned();
            let (u, p) = text
                .split_once(':')
                .ok_or_else(|| format!("registry {key:?}: auth is not user:password"))?;
            username = u.to_owned();
            password = p.to_owned();
        }
        out.push((
            key.clone(),
            cri::AuthConfig {
                username,
                password,
                auth,
                server_address: key_host(key).to_owned(),
                ..Default::default()
            },
        ));
    }
    Ok(out)
}

/// The credentials for `image` among the secrets' entries, first match wins
/// (the pod's imagePullSecrets order).
pub fn auth_for(image: &str, entries: &[(String, cri::AuthConfig)]) -> Option<cri::AuthConfig> {
    let host = registry_host(image);
    entries
        .iter()
        .find(|(k, _)| key_host(k) == host)
        .map(|(_, a)| a.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_of_images_and_keys() {
        assert_eq!(
            registry_host("127.0.0.1:5443/library/busybox:latest"),
            "127.0.0.1:5443"
        );
        assert_eq!(registry_host("busybox"), "docker.io");
        assert_eq!(registry_host("library/busybox"), "docker.io");
        assert_eq!(registry_host("localhost/x"), "localhost");
        assert_eq!(key_host("https://index.docker.io/v1/"), "docker.io");
        assert_eq!(key_host("127.0.0.1:5443"), "127.0.0.1:5443");
    }

    #[test]
    fn parses_both_formats_and_matches() {
        let new = br#"{"auths":{"127.0.0.1:5443":{"username":"berth","password":"pw","auth":"YmVydGg6cHc="}}}"#;
        let e = parse(new).unwrap();
        let a = auth_for("127.0.0.1:5443/library/busybox:latest", &e).unwrap();
        assert_eq!((a.username.as_str(), a.password.as_str()), ("berth", "pw"));
        assert!(auth_for("127.0.0.1:5000/library/busybox", &e).is_none());
        // Old format, auth only.
        let old = br#"{"https://index.docker.io/v1/":{"auth":"dTpw"}}"#;
        let e = parse(old).unwrap();
        let a = auth_for("busybox", &e).unwrap();
        assert_eq!((a.username.as_str(), a.password.as_str()), ("u", "p"));
        assert!(parse(b"[]").unwrap_err().contains("object"));
        assert!(
            parse(br#"{"auths":{"h":{"auth":"!!"}}}"#)
                .unwrap_err()
                .contains("registry \"h\"")
        );
    }
}
