//! AUFS-style whiteouts in layer tars (`.wh.<name>`, `.wh..wh..opq`) and
//! their overlayfs form: a 0/0 character device for a removed name, the
//! `trusted.overlay.opaque=y` xattr on a directory that hides lower ones.

pub const PREFIX: &[u8] = b".wh.";
pub const OPAQUE: &[u8] = b".wh..wh..opq";
/// Other `.wh..wh.` names (e.g. AUFS hardlink dirs) carry no meaning here.
const META_PREFIX: &[u8] = b".wh..wh.";
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

#[derive(Debug, PartialEq, Eq)]
pub enum Whiteout<'a> {
    /// Not a whiteout: an ordinary entry.
    None,
    /// The directory holding this entry is opaque.
    Opaque,
    /// `name` in the same directory is removed.
    Remove(&'a [u8]),
    /// AUFS metadata, skipped.
    Meta,
    /// `.wh.` + `.`/`..`/empty: refused.
    Invalid,
}

pub fn classify(name: &[u8]) -> Whiteout<'_> {
    if name == OPAQUE {
        return Whiteout::Opaque;
    }
    if name.starts_with(META_PREFIX) {
        return Whiteout::Meta;
    }
    match name.strip_prefix(PREFIX) {
        None => Whiteout::None,
        Some(b"" | b"." | b"..") => Whiteout::Invalid,
        Some(n) => Whiteout::Remove(n),
    }
}

/// Overlay's own xattrs must never come from a layer: a forged
/// `trusted.overlay.redirect`/`metacopy`/`opaque` would change what the
/// merged view shows. Only our whiteout conversion sets them.
pub fn forbidden_xattr(name: &str) -> bool {
    name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(classify(b"file"), Whiteout::None);
        assert_eq!(classify(b".wh.file"), Whiteout::Remove(b"file"));
        assert_eq!(classify(b".wh..wh..opq"), Whiteout::Opaque);
        assert_eq!(classify(b".wh..wh.plnk"), Whiteout::Meta);
        assert_eq!(classify(b".wh..."), Whiteout::Invalid);
        assert_eq!(classify(b".wh.."), Whiteout::Invalid);
        assert_eq!(classify(b".wh."), Whiteout::Invalid);
        assert_eq!(classify(b".whfile"), Whiteout::None);
        assert!(forbidden_xattr("trusted.overlay.redirect"));
        assert!(!forbidden_xattr("security.capability"));
    }
}
