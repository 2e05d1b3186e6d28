//! Image references (`[domain/]path[:tag][@digest]`), parsed with the
//! Docker/OCI distribution grammar and normalised the way containerd and
//! Docker do (`busybox` -> `docker.io/library/busybox:latest`).
//!
//! This module owns the grammar only; it never touches the network.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// The registry every short name points at.
pub const DEFAULT_DOMAIN: &str = "docker.io";
const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
const OFFICIAL_REPO_PREFIX: &str = "library/";
pub const DEFAULT_TAG: &str = "latest";
const NAME_MAX: usize = 255;
const TAG_MAX: usize = 128;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReferenceError {
    #[error("reference is empty")]
    Empty,
    #[error("reference {0:?}: repository name must be lowercase")]
    Uppercase(String),
    #[error("reference {0:?}: name is longer than 255 characters")]
    NameTooLong(String),
    #[error("reference {0:?}: invalid domain {1:?}")]
    Domain(String, String),
    #[error("reference {0:?}: invalid path component {1:?}")]
    PathComponent(String, String),
    #[error("reference {0:?}: invalid tag {1:?}")]
    Tag(String, String),
    #[error("reference {0:?}: invalid digest")]
    Digest(String, #[source] crate::digest::DigestError),
    #[error(
        "reference {0:?}: a 64-character hex string is an image id, not a name; use sha256:<hex>"
    )]
    AmbiguousId(String),
}

/// A parsed, normalised image reference. The domain is never empty, the
/// path of a Docker Hub official image carries `library/`, and at least one
/// of tag and digest is set (`latest` is filled in when neither is given).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ImageRef {
    domain: String,
    path: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl ImageRef {
    /// Parses and normalises; a reference without tag or digest gets `latest`.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        let mut r = Self::parse_named(s)?;
        if r.tag.is_none() && r.digest.is_none() {
            r.tag = Some(DEFAULT_TAG.to_owned());
        }
        Ok(r)
    }

    /// Parses and normalises, leaving tag and digest as given (for `rm` of
    /// a whole repository or `list` filters).
    pub fn parse_named(s: &str) -> Result<Self, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, d)) => (
                rest,
                Some(
                    d.parse::<Digest>()
                        .map_err(|e| ReferenceError::Digest(s.to_owned(), e))?,
                ),
            ),
            None => (s, None),
        };
        // A tag is after the last ':' that comes after the last '/'
        // (a ':' before it belongs to a registry port).
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => {
                let i = last_slash + i;
                (&rest[..i], Some(&rest[i + 1..]))
            }
            None => (rest, None),
        };
        if let Some(t) = tag
            && !valid_tag(t)
        {
            return Err(ReferenceError::Tag(s.to_owned(), t.to_owned()));
        }
        if name.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if digest.is_none() && tag.is_none() && is_hex64(name) {
            return Err(ReferenceError::AmbiguousId(s.to_owned()));
        }
        let (domain, path) = split_domain(name);
        if path.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase(s.to_owned()));
        }
        if !valid_domain(&domain) {
            return Err(ReferenceError::Domain(s.to_owned(), domain));
        }
        for comp in path.split('/') {
            if !valid_path_component(comp) {
                return Err(ReferenceError::PathComponent(s.to_owned(), comp.to_owned()));
            }
        }
        if domain.len() + 1 + path.len() > NAME_MAX {
            return Err(ReferenceError::NameTooLong(s.to_owned()));
        }
        Ok(ImageRef {
            domain,
            path,
            tag: tag.map(str::to_owned),
            digest,
        })
    }

    /// Registry host, with port if any (`docker.io`, `127.0.0.1:5000`).
    pub fn domain(&self) -> &str {
        &self.domain
    }
    /// Repository path inside the registry (`library/busybox`).
    pub fn path(&self) -> &str {
        &self.path
    }
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }
    /// `domain/path`, the repository name.
    pub fn name(&self) -> String {
        format!("{}/{}", self.domain, self.path)
    }
    /// What to ask the registry for: the digest when pinned, else the tag.
    pub fn object(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => DEFAULT_TAG.to_owned(),
        }
    }
    /// `name@digest`, the form recorded as an image's repo digest.
    pub fn with_digest(&self, d: &Digest) -> ImageRef {
        ImageRef {
            domain: self.domain.clone(),
            path: self.path.clone(),
            tag: None,
            digest: Some(d.clone()),
        }
    }
    /// The shortest form a person would type (`busybox:latest`).
    pub fn familiar(&self) -> String {
        let full = self.to_string();
        let name = self.name();
        let short = if self.domain == DEFAULT_DOMAIN {
            self.path
                .strip_prefix(OFFICIAL_REPO_PREFIX)
                .filter(|p| !p.contains('/'))
                .unwrap_or(&self.path)
                .to_owned()
        } else {
            name.clone()
        };
        format!("{short}{}", &full[name.len()..])
    }
}

impl FromStr for ImageRef {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ImageRef::parse(s)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.domain, self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// Docker's rule: the first component is a registry when it has a '.' or a
/// ':', is `localhost`, or has an uppercase letter (paths never do).
fn split_domain(name: &str) -> (String, String) {
    let (domain, path) = match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first.to_owned(), rest.to_owned())
        }
        _ => (DEFAULT_DOMAIN.to_owned(), name.to_owned()),
    };
    let domain = if domain == LEGACY_DEFAULT_DOMAIN {
        DEFAULT_DOMAIN.to_owned()
    } else {
        domain
    };
    let path = if domain == DEFAULT_DOMAIN && !path.contains('/') {
        format!("{OFFICIAL_REPO_PREFIX}{path}")
    } else {
        path
    };
    (domain, path)
}

fn valid_domain(d: &str) -> bool {
    let (host, port) = if let Some(rest) = d.strip_prefix('[') {
        // [IPv6]:port
        let Some((ip, after)) = rest.split_once(']') else {
            return false;
        };
        if ip.is_empty() || !ip.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return false;
        }
        match after {
            "" => return true,
            p => match p.strip_prefix(':') {
                Some(port) => ("x", Some(port)),
                None => return false,
            },
        }
    } else {
        match d.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (d, None),
        }
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()))
    {
        return false;
    }
    !host.is_empty()
        && host.split('.').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !c.starts_with('-')
                && !c.ends_with('-')
        })
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn valid_path_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

/// `[\w][\w.-]{0,127}`
fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    let word = |x: u8| x.is_ascii_alphanumeric() || x == b'_';
    !b.is_empty()
        && b.len() <= TAG_MAX
        && word(b[0])
        && b.iter().all(|&x| word(x) || x == b'.' || x == b'-')
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn norm(s: &str) -> String {
        ImageRef::parse(s).unwrap().to_string()
    }

    #[test]
    fn normalises_like_containerd() {
        assert_eq!(norm("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("busybox:1.36"), "docker.io/library/busybox:1.36");
        assert_eq!(norm("library/busybox"), "docker.io/library/busybox:latest");
        assert_eq!(norm("foo/bar"), "docker.io/foo/bar:latest");
        assert_eq!(
            norm("docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            norm("index.docker.io/busybox"),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            norm("registry.k8s.io/pause:3.9"),
            "registry.k8s.io/pause:3.9"
        );
        assert_eq!(
            norm("gcr.io/k8s-staging-cri-tools/test-image-tags:1"),
            "gcr.io/k8s-staging-cri-tools/test-image-tags:1"
        );
    }

    #[test]
    fn ports_localhost_and_ips() {
        let r = ImageRef::parse("127.0.0.1:5000/busybox:1.36").unwrap();
        assert_eq!(r.domain(), "127.0.0.1:5000");
        assert_eq!(r.path(), "busybox");
        assert_eq!(r.tag(), Some("1.36"));
        let r = ImageRef::parse("localhost/foo").unwrap();
        assert_eq!((r.domain(), r.path()), ("localhost", "foo"));
        let r = ImageRef::parse("localhost:5000/a/b/c").unwrap();
        assert_eq!((r.domain(), r.path()), ("localhost:5000", "a/b/c"));
        let r = ImageRef::parse("[::1]:5000/foo:bar").unwrap();
        assert_eq!(
            (r.domain(), r.path(), r.tag()),
            ("[::1]:5000", "foo", Some("bar"))
        );
        // A port with no tag: the ':' before the last '/' is not a tag.
        let r = ImageRef::parse("myhost:5000/foo").unwrap();
        assert_eq!(r.tag(), Some("latest"));
        // Uppercase first component is a domain (Docker's rule).
        let r = ImageRef::parse("Registry.Example/foo").unwrap();
        assert_eq!(r.domain(), "Registry.Example");
    }

    #[test]
    fn digests_and_tag_plus_digest() {
        let r = ImageRef::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(r.tag(), None);
        assert_eq!(r.digest().unwrap().to_string(), D);
        assert_eq!(r.object(), D);
        let r = ImageRef::parse(&format!("busybox:1.36@{D}")).unwrap();
        assert_eq!(r.tag(), Some("1.36"));
        assert_eq!(r.object(), D, "digest wins over tag");
        assert_eq!(r.to_string(), format!("docker.io/library/busybox:1.36@{D}"));
        let r = ImageRef::parse(&format!("127.0.0.1:5000/a/b@{D}")).unwrap();
        assert_eq!((r.domain(), r.path()), ("127.0.0.1:5000", "a/b"));
    }

    #[test]
    fn familiar_names() {
        assert_eq!(
            ImageRef::parse("busybox").unwrap().familiar(),
            "busybox:latest"
        );
        assert_eq!(
            ImageRef::parse("foo/bar:1").unwrap().familiar(),
            "foo/bar:1"
        );
        assert_eq!(
            ImageRef::parse("quay.io/a/b:1").unwrap().familiar(),
            "quay.io/a/b:1"
        );
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "",
            "Busybox",
            "docker.io/Library/busybox",
            "busybox:",
            "busybox:-tag",
            "busybox:a/b",
            "busybox@sha256:abc",
            "busybox@md5:d41d8cd98f00b204e9800998ecf8427e",
            "foo//bar",
            "foo/bar/",
            "/foo",
            "-foo",
            "foo-",
            "foo..bar",
            "foo___bar",
            "a.b:port/foo",
            "host:123456/foo",
            "-host.io/foo",
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "busybox::tag",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(ImageRef::parse(&format!("a/{}", "b".repeat(300))).is_err());
        assert!(ImageRef::parse(&format!("busybox:{}", "t".repeat(129))).is_err());
        assert!(matches!(
            ImageRef::parse("Foo"),
            Err(ReferenceError::Uppercase(_))
        ));
    }

    #[test]
    fn accepts_separators() {
        for ok in [
            "a_b",
            "a__b",
            "a.b/c",
            "a---b",
            "a-b_c.d",
            "0/1",
            "a:Tag_1.0-rc",
        ] {
            assert!(ImageRef::parse(ok).is_ok(), "{ok:?} rejected");
        }
    }
}
