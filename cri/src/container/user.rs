//! Who a container's process runs as: the CRI security context or the
//! image's `USER`, resolved through the rootfs' /etc/passwd and /etc/group.
//!
//! The files are read inside the rootfs with `openat2(RESOLVE_IN_ROOT)`: a
//! symlinked /etc/passwd in an image cannot make berthd read a host file.

use std::io::Read;
use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags, ResolveFlags};

use super::model::RunAs;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("user {0:?} not found in the image's /etc/passwd")]
    NoSuchUser(String),
    #[error("group {0:?} not found in the image's /etc/group")]
    NoSuchGroup(String),
    #[error("reading {file} in the rootfs")]
    Read {
        file: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// The process's user and groups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// The user's name, when /etc/passwd has one.
    pub name: Option<String>,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(PasswdEntry {
                name: (*f.first()?).to_owned(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
            })
        })
        .collect()
}

fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(GroupEntry {
                name: (*f.first()?).to_owned(),
                gid: f.get(2)?.parse().ok()?,
                members: f
                    .get(3)
                    .map(|m| {
                        m.split(',')
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// Read `file` (an absolute path inside the rootfs) with the rootfs as `/`;
/// a missing file reads as empty.
fn read_in_root(rootfs: &Path, file: &'static str) -> Result<String, UserError> {
    let err = |source| UserError::Read { file, source };
    let root: OwnedFd = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| err(e.into()))?;
    let fd = match rustix::fs::openat2(
        &root,
        file,
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    ) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::NOENT) => return Ok(String::new()),
        Err(e) => return Err(err(e.into())),
    };
    let mut text = String::new();
    // A passwd file is small; a huge one is not read past 4 MiB.
    std::fs::File::from(fd)
        .take(4 << 20)
        .read_to_string(&mut text)
        .map_err(err)?;
    Ok(text)
}

/// Resolve the user: `run_as` (the security context, or the image's
/// `image_user` = `user[:group]`), then `run_as_group`, then the groups
/// /etc/group lists the user in (unless `strict`) and `supplemental`.
pub fn resolve(
    rootfs: &Path,
    image_user: &str,
    run_as: &RunAs,
    run_as_group: Option<u32>,
    supplemental: &[u32],
    strict: bool,
) -> Result<Resolved, UserError> {
    let (user, group) = match run_as {
        RunAs::Image => match image_user.split_once(':') {
            Some((u, g)) => (u.to_owned(), Some(g.to_owned())),
            None => (image_user.to_owned(), None),
        },
        RunAs::Uid(u) => (u.to_string(), None),
        RunAs::Name(n) => (n.clone(), None),
    };
    let user = if user.is_empty() { "0".into() } else { user };
    let passwd = parse_passwd(&read_in_root(rootfs, "/etc/passwd")?);
    let (uid, mut gid, name) = match user.parse::<u32>() {
        Ok(uid) => match passwd.iter().find(|p| p.uid == uid) {
            Some(p) => (uid, p.gid, Some(p.name.clone())),
            None => (uid, 0, None),
        },
        Err(_) => match passwd.iter().find(|p| p.name == user) {
            Some(p) => (p.uid, p.gid, Some(p.name.clone())),
            None => return Err(UserError::NoSuchUser(user)),
        },
    };
    let groups = parse_group(&read_in_root(rootfs, "/etc/group")?);
    if let Some(g) = group.filter(|g| !g.is_empty()) {
        gid = match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                groups
                    .iter()
                    .find(|e| e.name == g)
                    .ok_or(UserError::NoSuchGroup(g))?
                    .gid
            }
        };
    }
    if let Some(g) = run_as_group {
        gid = g;
    }
    let mut additional_gids = Vec::new();
    if !strict && let Some(n) = &name {
        additional_gids.extend(
            groups
                .iter()
                .filter(|e| e.members.iter().any(|m| m == n))
                .map(|e| e.gid),
        );
    }
    additional_gids.extend_from_slice(supplemental);
    let mut seen = std::collections::HashSet::new();
    additional_gids.retain(|g| *g != gid && seen.insert(*g));
    Ok(Resolved {
        uid,
        gid,
        additional_gids,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("etc")).unwrap();
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nweb:x:1000:1001::/home/web:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nweb:x:1001:\nwheel:x:10:root,web\naudio:x:29:web\n",
        )
        .unwrap();
        d
    }

    #[test]
    fn image_user_by_name_gets_its_groups() {
        let d = rootfs();
        let r = resolve(d.path(), "web", &RunAs::Image, None, &[], false).unwrap();
        assert_eq!((r.uid, r.gid), (1000, 1001));
        assert_eq!(r.additional_gids, vec![10, 29]);
        let r = resolve(d.path(), "web:wheel", &RunAs::Image, None, &[5], true).unwrap();
        assert_eq!((r.uid, r.gid, r.additional_gids), (1000, 10, vec![5]));
    }

    #[test]
    fn security_context_overrides_the_image() {
        let d = rootfs();
        let r = resolve(d.path(), "web", &RunAs::Uid(0), Some(7), &[], false).unwrap();
        assert_eq!((r.uid, r.gid), (0, 7));
        assert_eq!(r.additional_gids, vec![10]);
        let r = resolve(d.path(), "", &RunAs::Uid(4242), None, &[], false).unwrap();
        assert_eq!((r.uid, r.gid, r.name), (4242, 0, None));
        let r = resolve(d.path(), "", &RunAs::Name("web".into()), None, &[], false).unwrap();
        assert_eq!(r.uid, 1000);
    }

    #[test]
    fn unknown_names_are_errors_naming_them() {
        let d = rootfs();
        let e = resolve(d.path(), "nobody", &RunAs::Image, None, &[], false).unwrap_err();
        assert!(e.to_string().contains("\"nobody\" not found"), "{e}");
        let e = resolve(d.path(), "web:nogroup", &RunAs::Image, None, &[], false).unwrap_err();
        assert!(e.to_string().contains("\"nogroup\""), "{e}");
    }

    #[test]
    fn a_symlinked_passwd_stays_inside_the_rootfs() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir(d.path().join("outside")).unwrap();
        std::fs::write(
            d.path().join("outside/passwd"),
            "intruder:x:0:0::/:/bin/sh\n",
        )
        .unwrap();
        // Followed on the host this reaches outside/passwd; in the rootfs it
        // names /outside/passwd, which does not exist.
        std::os::unix::fs::symlink("../../outside/passwd", root.join("etc/passwd")).unwrap();
        let e = resolve(&root, "intruder", &RunAs::Image, None, &[], false).unwrap_err();
        assert!(matches!(e, UserError::NoSuchUser(_)), "{e}");
    }
}
