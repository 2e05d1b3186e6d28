//! A corpus of hostile layers, generated here, applied with the real
//! unpacker. Each must fail with a clear error or be contained in the
//! snapshot; the host side (a sibling folder, and the absolute paths the
//! layers aim at) is checked to be untouched. Runs as root (devices,
//! owners, trusted xattrs).

use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use berth_images::manifest::Compression;
use berth_images::unpack::{self, Limits, UnpackError};

/// One raw tar entry; names are written byte for byte (the tar crate's
/// builder would refuse `..`, which is the point here).
struct E {
    name: Vec<u8>,
    kind: u8,
    link: Vec<u8>,
    data: Vec<u8>,
    mode: u32,
    dev: (u32, u32),
}

fn e(name: &str, kind: u8) -> E {
    E {
        name: name.as_bytes().to_vec(),
        kind,
        link: vec![],
        data: vec![],
        mode: 0o644,
        dev: (0, 0),
    }
}
fn file(name: &str, data: &str) -> E {
    E {
        data: data.as_bytes().to_vec(),
        ..e(name, b'0')
    }
}
fn dir(name: &str) -> E {
    E {
        mode: 0o755,
        ..e(name, b'5')
    }
}
fn symlink(name: &str, target: &str) -> E {
    E {
        link: target.as_bytes().to_vec(),
        ..e(name, b'2')
    }
}
fn hardlink(name: &str, target: &str) -> E {
    E {
        link: target.as_bytes().to_vec(),
        ..e(name, b'1')
    }
}

fn header(x: &E) -> [u8; 512] {
    let mut h = tar::Header::new_ustar();
    {
        let raw = h.as_old_mut();
        assert!(x.name.len() <= 100 && x.link.len() <= 100);
        raw.name[..x.name.len()].copy_from_slice(&x.name);
        raw.linkname[..x.link.len()].copy_from_slice(&x.link);
    }
    h.set_mode(x.mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1_700_000_000);
    h.set_size(x.data.len() as u64);
    h.set_entry_type(tar::EntryType::new(x.kind));
    if x.kind == b'3' || x.kind == b'4' {
        h.set_device_major(x.dev.0).unwrap();
        h.set_device_minor(x.dev.1).unwrap();
    }
    h.set_cksum();
    *h.as_bytes()
}

fn tar_of(entries: &[E]) -> Vec<u8> {
    let mut out = Vec::new();
    for x in entries {
        out.extend_from_slice(&header(x));
        out.extend_from_slice(&x.data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

struct Case {
    _tmp: tempfile::TempDir,
    snap: PathBuf,
    host: PathBuf,
}

/// `<tmp>/snap` is the snapshot, `<tmp>/host` a host folder with a
/// `secret` file that layers try to reach.
fn case() -> Case {
    let tmp = tempfile::tempdir().unwrap();
    let snap = tmp.path().join("snap");
    let host = tmp.path().join("host");
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("secret"), "host secret").unwrap();
    Case {
        _tmp: tmp,
        snap,
        host,
    }
}

impl Case {
    /// Applies `tar` as a base layer: links to files it lacks are looked
    /// for in no lower layer, as the pull does for a first layer.
    fn apply(&self, tar: &[u8]) -> Result<unpack::Applied, UnpackError> {
        let a = unpack::apply_tar(&self.snap, tar, Limits::default())?;
        unpack::lower::complete_from_lowers(&self.snap, &[], &a.pending_links, &[])?;
        Ok(a)
    }
    /// The host folder holds exactly its secret, unchanged.
    fn host_untouched(&self) {
        let names: Vec<_> = std::fs::read_dir(&self.host)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["secret"], "host folder changed");
        let md = std::fs::metadata(self.host.join("secret")).unwrap();
        assert_eq!(md.nlink(), 1, "host file got a hard link");
        assert_eq!(
            std::fs::read_to_string(self.host.join("secret")).unwrap(),
            "host secret"
        );
        assert_eq!(md.mode() & 0o7777, 0o644);
    }
    fn host_abs(&self) -> String {
        self.host.display().to_string()
    }
}

fn expect_err(r: Result<unpack::Applied, UnpackError>, what: &str, want: &str) {
    let e = r.expect_err(what);
    let msg = berth_images::registry::chain(&e);
    assert!(msg.contains(want), "{what}: {msg}");
}

#[test]
fn dotdot_paths_are_refused() {
    let c = case();
    for name in [
        "../host/pwned",
        "a/../../host/pwned",
        "./../host/pwned",
        "../../../../../../tmp/pwned-berth",
    ] {
        let r = c.apply(&tar_of(&[file(name, "x")]));
        expect_err(r, name, "'..'");
    }
    c.host_untouched();
    assert!(!Path::new("/tmp/pwned-berth").exists());
}

#[test]
fn absolute_paths_land_inside() {
    let c = case();
    let target = format!("{}/pwned", c.host_abs());
    c.apply(&tar_of(&[
        file(&target, "x"),
        file("/etc/berth-abs-test", "y"),
    ]))
    .unwrap();
    c.host_untouched();
    assert!(!Path::new("/etc/berth-abs-test").exists());
    assert!(c.snap.join(target.trim_start_matches('/')).exists());
    assert!(c.snap.join("etc/berth-abs-test").exists());
}

#[test]
fn symlink_then_file_through_it_stays_inside() {
    let c = case();
    // Absolute and relative links to the host folder, then writes through them.
    let layer = tar_of(&[
        symlink("abs", &c.host_abs()),
        symlink("rel", "../host"),
        symlink("up", "../../../../../../../"),
        file("up/upfile", "u"),
    ]);
    c.apply(&layer).unwrap();
    assert!(
        c.snap.join("upfile").exists(),
        "'up' resolves to the snapshot root"
    );
    for through in ["abs/pwned", "rel/pwned"] {
        let r = c.apply(&tar_of(&[file(through, "x")]));
        // The link's target does not exist inside the root: refused.
        assert!(r.is_err(), "{through} accepted");
    }
    // A link to a directory that exists inside: followed inside.
    std::fs::create_dir_all(c.snap.join(c.host_abs().trim_start_matches('/'))).unwrap();
    c.apply(&tar_of(&[file("abs/inside", "z")])).unwrap();
    assert!(
        c.snap
            .join(c.host_abs().trim_start_matches('/'))
            .join("inside")
            .exists()
    );
    // Replace a directory with a symlink, then write below it.
    c.apply(&tar_of(&[
        dir("d"),
        symlink("d", &c.host_abs()),
        file("d/again", "x"),
    ]))
    .unwrap();
    c.host_untouched();
    // The symlink itself still points where the layer said (harmless text).
    assert_eq!(std::fs::read_link(c.snap.join("abs")).unwrap(), c.host);
}

#[test]
fn hardlinks_to_outside_are_refused() {
    let c = case();
    let abs = format!("{}/secret", c.host_abs());
    for (name, target, want) in [
        ("h1", "../host/secret", "'..'"),
        ("h2", abs.as_str(), "hard link target"),
        ("h3", "rel/secret", "hard link target"),
    ] {
        let layer = tar_of(&[symlink("rel", "../host"), hardlink(name, target)]);
        expect_err(c.apply(&layer), name, want);
    }
    // A hard link to a symlink that points outside links the symlink, not the file.
    let layer = tar_of(&[symlink("s", &abs), hardlink("h4", "s")]);
    c.apply(&layer).unwrap();
    assert!(
        c.snap
            .join("h4")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // A hard link inside the layer works and shares the inode.
    c.apply(&tar_of(&[file("f", "data"), hardlink("g", "f")]))
        .unwrap();
    assert_eq!(
        c.snap.join("f").metadata().unwrap().ino(),
        c.snap.join("g").metadata().unwrap().ino()
    );
    c.host_untouched();
}

#[test]
fn whiteouts_of_dot_and_dotdot_are_refused_and_real_ones_convert() {
    let c = case();
    for name in [".wh...", "sub/.wh...", ".wh..", "a/.wh."] {
        expect_err(
            c.apply(&tar_of(&[file(name, "")])),
            name,
            "invalid whiteout",
        );
    }
    c.apply(&tar_of(&[
        dir("etc"),
        file("etc/.wh.motd", ""),
        dir("opq"),
        file("opq/.wh..wh..opq", ""),
    ]))
    .unwrap();
    let md = c.snap.join("etc/motd").symlink_metadata().unwrap();
    assert!(md.file_type().is_char_device() && md.rdev() == 0);
    let v = xattr_get(&c.snap.join("opq"), "trusted.overlay.opaque");
    assert_eq!(v.as_deref(), Some(&b"y"[..]));
    assert!(!c.snap.join("opq/.wh..wh..opq").exists());
    c.host_untouched();
}

fn xattr_get(p: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    let n = rustix::fs::lgetxattr(p, name, &mut buf[..]).ok()?;
    buf.truncate(n);
    Some(buf)
}

#[test]
fn device_nodes_are_created_inside_only() {
    let c = case();
    let mut mem = e("dev/mem", b'3');
    mem.dev = (1, 1);
    mem.mode = 0o640;
    let mut sda = e("/dev/berth-sda", b'4');
    sda.dev = (8, 0);
    let mut out = e("../host/null", b'3');
    out.dev = (1, 3);
    c.apply(&tar_of(&[mem, sda])).unwrap();
    let md = c.snap.join("dev/mem").symlink_metadata().unwrap();
    assert!(md.file_type().is_char_device());
    assert_eq!(md.rdev(), 0x101);
    assert_eq!(md.mode() & 0o7777, 0o640);
    assert!(
        c.snap
            .join("dev/berth-sda")
            .symlink_metadata()
            .unwrap()
            .file_type()
            .is_block_device()
    );
    assert!(!Path::new("/dev/berth-sda").exists());
    expect_err(c.apply(&tar_of(&[out])), "device via ..", "'..'");
    c.host_untouched();
}

#[test]
fn overlay_xattrs_from_a_layer_are_dropped() {
    let c = case();
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions([
        ("SCHILY.xattr.trusted.overlay.redirect", &b"/etc"[..]),
        ("SCHILY.xattr.user.ok", &b"1"[..]),
    ])
    .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_size(1);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    b.append_data(&mut h, "f", &b"x"[..]).unwrap();
    c.apply(&b.into_inner().unwrap()).unwrap();
    assert!(xattr_get(&c.snap.join("f"), "trusted.overlay.redirect").is_none());
    assert_eq!(
        xattr_get(&c.snap.join("f"), "user.ok").as_deref(),
        Some(&b"1"[..])
    );
}

/// Zeros, as many gzip members of 1 MiB each as asked: tiny to make,
/// huge to inflate.
fn gzip_bomb(mib: usize) -> Vec<u8> {
    // A tar header claiming a 1 TiB file, then zeros.
    let mut h = tar::Header::new_ustar();
    h.set_path("bomb").unwrap();
    h.set_size(1 << 40);
    h.set_mode(0o644);
    h.set_cksum();
    let mut first = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    first.write_all(h.as_bytes()).unwrap();
    let mut out = first.finish().unwrap();
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    z.write_all(&vec![0u8; 1 << 20]).unwrap();
    let member = z.finish().unwrap();
    for _ in 0..mib {
        out.extend_from_slice(&member);
    }
    out
}

#[test]
fn gzip_bomb_stops_at_the_size_limit() {
    let c = case();
    let bomb = gzip_bomb(2048); // 2 GiB of zeros in ~2 MiB
    assert!(bomb.len() < 8 << 20);
    let limits = Limits {
        max_bytes: 64 << 20,
        ..Limits::default()
    };
    let t = std::time::Instant::now();
    let r = unpack::apply_layer(&c.snap, &bomb[..], Compression::Gzip, limits);
    expect_err(r, "gzip bomb", "larger than");
    assert!(t.elapsed().as_secs() < 30);
    let written = c.snap.join("bomb").metadata().map(|m| m.len()).unwrap_or(0);
    assert!(written <= 64 << 20, "wrote {written} bytes");
    c.host_untouched();
}

/// A tar of `n` empty files, generated as it is read (never in memory).
struct ManyEntries {
    n: u64,
    i: u64,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ManyEntries {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            if self.i < self.n {
                let name = format!("d{}/f{}", self.i / 1000, self.i % 1000);
                self.buf.extend_from_slice(&header(&file(&name, "")));
                self.i += 1;
            } else if self.i == self.n {
                self.buf.extend_from_slice(&[0u8; 1024]);
                self.i += 1;
            } else {
                return Ok(0);
            }
        }
        let k = out.len().min(self.buf.len() - self.pos);
        out[..k].copy_from_slice(&self.buf[self.pos..self.pos + k]);
        self.pos += k;
        Ok(k)
    }
}

#[test]
fn million_entry_tar_is_cut_at_the_entry_limit() {
    let c = case();
    let limits = Limits {
        max_entries: 50_000,
        ..Limits::default()
    };
    let t = std::time::Instant::now();
    let tar = ManyEntries {
        n: 1_000_000,
        i: 0,
        buf: vec![],
        pos: 0,
    };
    let r = unpack::apply_tar(&c.snap, tar, limits);
    expect_err(r, "1e6 entries", "more than 50000 entries");
    assert!(t.elapsed().as_secs() < 60, "took {:?}", t.elapsed());
    c.host_untouched();
}

#[test]
fn zstd_and_plain_layers_apply_with_metadata() {
    let c = case();
    let mut setuid = file("bin/su", "#!");
    setuid.mode = 0o4755;
    let mut sticky = dir("tmp");
    sticky.mode = 0o1777;
    let tar = tar_of(&[
        sticky,
        setuid,
        symlink("bin/sh", "su"),
        file("a/b/c/deep", "d"),
    ]);
    let z = zstd::encode_all(&tar[..], 3).unwrap();
    let applied =
        unpack::apply_layer(&c.snap, &z[..], Compression::Zstd, Limits::default()).unwrap();
    assert_eq!(applied.entries, 4);
    assert_eq!(applied.diff_id, berth_images::Digest::sha256_of(&tar));
    assert_eq!(
        c.snap.join("bin/su").metadata().unwrap().mode() & 0o7777,
        0o4755
    );
    assert_eq!(
        c.snap.join("tmp").metadata().unwrap().mode() & 0o7777,
        0o1777
    );
    assert_eq!(
        c.snap.join("tmp").metadata().unwrap().mtime(),
        1_700_000_000
    );
    assert_eq!(
        std::fs::read_link(c.snap.join("bin/sh")).unwrap(),
        Path::new("su")
    );
    assert_eq!(
        std::fs::read_to_string(c.snap.join("a/b/c/deep")).unwrap(),
        "d"
    );
    let other = case();
    unpack::apply_layer(&other.snap, &tar[..], Compression::None, Limits::default()).unwrap();
    assert!(other.snap.join("bin/su").exists());
}

/// Applies `tar` as the layer above `lowers` (topmost first) into a new
/// folder in `tmp`, linking into the lowers as the pull does.
fn layer_above(
    tmp: &Path,
    name: &str,
    tar: &[u8],
    lowers: &[PathBuf],
) -> (PathBuf, Result<(), UnpackError>) {
    let d = tmp.join(name);
    std::fs::create_dir(&d).unwrap();
    let r = unpack::apply_tar(&d, tar, Limits::default()).and_then(|a| {
        unpack::lower::complete_from_lowers(&d, lowers, &a.pending_links, &a.implicit_dirs)
    });
    (d, r)
}

#[test]
fn hardlinks_into_lower_layers_copy_up_inside_the_layer() {
    let c = case();
    let tmp = c.snap.parent().unwrap().to_path_buf();
    // l0: /etc (0750, owner 7:7) with a setuid file owned by 5:5, an xattr
    // on it; /a/f and /o/g for the whiteout and opaque cases; a symlink
    // to the host folder.
    let mut etc = dir("etc");
    etc.mode = 0o750;
    let mut tool = file("etc/tool", "lower bytes");
    tool.mode = 0o4755;
    let host = c.host_abs();
    let (l0, r) = layer_above(
        &tmp,
        "l0",
        &tar_of(&[
            etc,
            tool,
            dir("a"),
            file("a/f", "f"),
            dir("o"),
            file("o/g", "g"),
            symlink("s", &host),
        ]),
        &[],
    );
    r.unwrap();
    std::os::unix::fs::chown(l0.join("etc"), Some(7), Some(7)).unwrap();
    std::os::unix::fs::chown(l0.join("etc/tool"), Some(5), Some(5)).unwrap();
    std::fs::set_permissions(
        l0.join("etc/tool"),
        std::os::unix::fs::PermissionsExt::from_mode(0o4755),
    )
    .unwrap();
    rustix::fs::setxattr(
        l0.join("etc/tool"),
        "user.berth",
        b"kept",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    // l1: removes /a/f (whiteout), makes /o opaque.
    let (l1, r) = layer_above(
        &tmp,
        "l1",
        &tar_of(&[
            dir("a"),
            file("a/.wh.f", ""),
            dir("o"),
            file("o/.wh..wh..opq", ""),
        ]),
        std::slice::from_ref(&l0),
    );
    r.unwrap();
    let lowers = [l1.clone(), l0.clone()];

    // l2 links the lower file twice, then replaces one of its own links.
    let (l2, r) = layer_above(
        &tmp,
        "l2",
        &tar_of(&[
            hardlink("bin/tool", "etc/tool"),
            hardlink("etc/tool2", "etc/tool"),
            hardlink("x", "etc/tool"),
            file("x", "mine"),
        ]),
        &lowers,
    );
    r.unwrap();
    let up = l2.join("etc/tool");
    let md = up.symlink_metadata().unwrap();
    assert_eq!(std::fs::read_to_string(&up).unwrap(), "lower bytes");
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (5, 5, 0o4755));
    assert_eq!(
        md.nlink(),
        3,
        "etc/tool, etc/tool2, bin/tool share the copied inode"
    );
    assert_eq!(l2.join("bin/tool").metadata().unwrap().ino(), md.ino());
    assert_eq!(std::fs::read_to_string(l2.join("x")).unwrap(), "mine");
    let etc = l2.join("etc").metadata().unwrap();
    assert_eq!((etc.uid(), etc.gid(), etc.mode() & 0o7777), (7, 7, 0o750));
    assert_eq!(xattr_get(&up, "user.berth").as_deref(), Some(&b"kept"[..]));
    let lower_md = l0.join("etc/tool").metadata().unwrap();
    assert_eq!(
        lower_md.nlink(),
        1,
        "the lower snapshot is never linked into"
    );

    // Hidden targets: whited out, under an opaque dir, through a symlink
    // (which would leave the layer), missing everywhere.
    for (i, target) in ["a/f", "o/g", "s/secret", "nowhere"].iter().enumerate() {
        let (_, r) = layer_above(
            &tmp,
            &format!("bad{i}"),
            &tar_of(&[hardlink("h", target)]),
            &lowers,
        );
        let e = r.expect_err(target);
        let msg = berth_images::registry::chain(&e);
        assert!(
            msg.contains("hard link target") && msg.contains(target),
            "{target}: {msg}"
        );
    }
    c.host_untouched();
}
