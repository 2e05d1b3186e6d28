#!/usr/bin/env python3
"""berth test-image builder: OCI image layouts, offline and deterministic.

Python 3 standard library only. Every layer is a tar written in a fixed order
(parents first, hard links last), with a fixed mtime, uid/gid from the recipe,
no user/group names, then gzip'd with mtime 0 and no file name; every JSON
document is written with sorted keys and no spaces. The same inputs (recipes
here, the host files they copy, the pause and nnp binaries) give the same
digests on every run.

Output, under --out (hack/testbed/images.sh passes _output/images):
  <repository>/            one OCI image layout per repository: oci-layout,
                           index.json (one entry per tag, annotated with
                           org.opencontainers.image.ref.name), blobs/sha256/
  images.json              what was built: repository, tag, layout, digest,
                           media type, size, platforms, the critest specs that
                           need it (read by images.sh for push and status)

The recipes and which critest spec needs which image: see IMAGES.md next to
this file.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile

EPOCH = 1767225600                      # 2026-01-01T00:00:00Z, every mtime
CREATED = "2026-01-01T00:00:00Z"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
LIBDIR = "/lib/x86_64-linux-gnu"

MT_INDEX = "application/vnd.oci.image.index.v1+json"
MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"


def canon(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- layers -------------------------------------------------------------------

class Layer:
    """A filesystem change set. Paths are absolute in the recipe, relative in the tar."""

    def __init__(self, comment):
        self.comment = comment
        self.entries = {}   # path -> dict(kind, mode, uid, gid, data|target)

    def _put(self, path, **e):
        path = "/" + path.strip("/")
        parent = os.path.dirname(path)
        while parent != "/" and parent not in self.entries:
            self.entries[parent] = dict(kind="dir", mode=0o755, uid=0, gid=0)
            parent = os.path.dirname(parent)
        self.entries[path] = e
        return self

    def dir(self, path, mode=0o755, uid=0, gid=0):
        return self._put(path, kind="dir", mode=mode, uid=uid, gid=gid)

    def file(self, path, data, mode=0o644, uid=0, gid=0):
        if isinstance(data, str):
            data = data.encode()
        return self._put(path, kind="file", mode=mode, uid=uid, gid=gid, data=data)

    def host_file(self, path, host_path, mode=None):
        """Copy a host file's content (symlinks followed); mode from the host unless given."""
        with open(host_path, "rb") as f:
            data = f.read()
        if mode is None:
            mode = os.stat(host_path).st_mode & 0o7777
        return self.file(path, data, mode=mode)

    def symlink(self, path, target):
        return self._put(path, kind="symlink", mode=0o777, uid=0, gid=0, target=target)

    def hardlink(self, path, target):
        return self._put(path, kind="hardlink", mode=0o755, uid=0, gid=0, target=target)

    def whiteout(self, path):
        d, b = os.path.split("/" + path.strip("/"))
        return self.file(os.path.join(d, ".wh." + b), b"", mode=0o644)

    def tar(self):
        buf = io.BytesIO()
        key = lambda p: p.strip("/").split("/")
        paths = sorted(self.entries, key=key)
        # Hard links after everything else: their targets must come first.
        order = [p for p in paths if self.entries[p]["kind"] != "hardlink"] + \
                [p for p in paths if self.entries[p]["kind"] == "hardlink"]
        with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
            for p in order:
                e = self.entries[p]
                ti = tarfile.TarInfo(p.lstrip("/"))
                ti.mtime, ti.mode, ti.uid, ti.gid = EPOCH, e["mode"], e["uid"], e["gid"]
                ti.uname = ti.gname = ""
                data = None
                if e["kind"] == "dir":
                    ti.type = tarfile.DIRTYPE
                elif e["kind"] == "file":
                    ti.type, ti.size, data = tarfile.REGTYPE, len(e["data"]), io.BytesIO(e["data"])
                elif e["kind"] == "symlink":
                    ti.type, ti.linkname = tarfile.SYMTYPE, e["target"]
                elif e["kind"] == "hardlink":
                    ti.type, ti.linkname = tarfile.LNKTYPE, e["target"].lstrip("/")
                tf.addfile(ti, data)
        return buf.getvalue()


class Blobs:
    """Content-addressed blob writer for one OCI layout."""

    def __init__(self, root):
        self.root = root
        os.makedirs(os.path.join(root, "blobs", "sha256"), exist_ok=True)
        self.total = {}

    def put(self, data, media_type, **extra):
        d = sha256(data)
        p = os.path.join(self.root, "blobs", "sha256", d.split(":")[1])
        if not os.path.exists(p):
            with open(p + ".tmp", "wb") as f:
                f.write(data)
            os.rename(p + ".tmp", p)
        desc = {"mediaType": media_type, "digest": d, "size": len(data)}
        desc.update(extra)
        return desc


_layer_cache = {}


def write_layer(blobs, layer):
    raw = layer.tar()
    diff_id = sha256(raw)
    gz = _layer_cache.get(diff_id)
    if gz is None:
        out = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=out, mtime=0, compresslevel=6) as g:
            g.write(raw)
        gz = _layer_cache[diff_id] = out.getvalue()
    return blobs.put(gz, MT_LAYER), diff_id


def write_image(blobs, layers, config, arch="amd64", variant=None):
    """Write layers, config and manifest; return (manifest descriptor, content size)."""
    descs, diff_ids, history = [], [], []
    for layer in layers:
        d, diff_id = write_layer(blobs, layer)
        descs.append(d)
        diff_ids.append(diff_id)
        history.append({"created": CREATED, "created_by": "berth hack/images/build.py: " + layer.comment})
    cfg = {
        "architecture": arch,
        "os": "linux",
        "created": CREATED,
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": history,
    }
    if variant:
        cfg["variant"] = variant
    cdesc = blobs.put(canon(cfg), MT_CONFIG)
    manifest = {"schemaVersion": 2, "mediaType": MT_MANIFEST, "config": cdesc, "layers": descs}
    platform = {"architecture": arch, "os": "linux"}
    if variant:
        platform["variant"] = variant
    mdesc = blobs.put(canon(manifest), MT_MANIFEST, platform=platform)
    size = cdesc["size"] + mdesc["size"] + sum(d["size"] for d in descs)
    return mdesc, size


def write_index(blobs, manifests):
    index = {"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": manifests}
    return blobs.put(canon(index), MT_INDEX)


# --- rootfs pieces ----------------------------------------------------------

PASSWD = """root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
sync:x:4:100:sync:/bin:/bin/sync
mail:x:8:8:mail:/var/spool/mail:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
operator:x:37:37:Operator:/var:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
"""

GROUP = """root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
lp:x:7:
mail:x:8:
kmem:x:9:
wheel:x:10:root
cdrom:x:11:
dialout:x:18:
floppy:x:19:
video:x:28:
audio:x:29:
tape:x:32:
www-data:x:33:
operator:x:37:
utmp:x:43:
plugdev:x:46:
staff:x:50:
lock:x:54:
netdev:x:82:
users:x:100:
nogroup:x:65534:
"""


def skeleton(comment="base filesystem: directories, /etc/passwd, /etc/group"):
    l = Layer(comment)
    for d in ("/bin", "/dev", "/etc", "/home", "/proc", "/sys", "/usr", "/usr/bin",
              "/usr/sbin", "/usr/local", "/usr/local/bin", "/var", "/var/spool",
              "/var/spool/mail", "/var/www"):
        l.dir(d)
    l.dir("/root", 0o700)
    l.dir("/tmp", 0o1777)
    l.file("/etc/passwd", PASSWD)
    l.file("/etc/group", GROUP)
    l.file("/etc/shadow", "".join(u.split(":")[0] + ":*:10933:0:99999:7:::\n" for u in PASSWD.splitlines()), 0o640)
    l.file("/etc/nsswitch.conf", "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n")
    return l


def applets(busybox):
    out = subprocess.run([busybox, "--list"], check=True, capture_output=True, text=True).stdout
    return sorted(a for a in out.split() if a and a != "busybox")


def ldd_libs(binary):
    """Shared libraries of a host ELF (via ldd): list of host paths, the loader included."""
    r = subprocess.run(["ldd", binary], capture_output=True, text=True)
    if r.returncode != 0 or "not a dynamic executable" in r.stdout + r.stderr:
        return []
    libs = []
    for line in r.stdout.splitlines():
        line = line.strip()
        if "=>" in line:
            p = line.split("=>", 1)[1].split("(")[0].strip()
            if p and p != "not found":
                libs.append(p)
            elif p == "not found":
                sys.exit(f"build.py: {binary}: library {line} not found on this host")
        elif line.startswith("/"):
            libs.append(line.split("(")[0].strip())
    return libs


def add_elf(layer, host_binary, dest, have, mode=0o755):
    """Copy a dynamic ELF and every library it needs that `have` (paths in lower layers) lacks."""
    layer.host_file(dest, host_binary, mode=mode)
    for lib in ldd_libs(host_binary):
        name = os.path.basename(lib)
        path = LIBDIR + "/" + name
        if path in have:
            continue
        layer.host_file(path, os.path.realpath(lib), mode=0o755)
        have.add(path)
        if name.startswith("ld-linux"):
            layer.symlink("/lib64/" + name, path)
    return layer


def static_busybox_layer(busybox):
    l = Layer("busybox (static, Debian busybox-static) and its applet symlinks")
    l.host_file("/bin/busybox", busybox, mode=0o755)
    for a in applets(busybox):
        l.symlink("/bin/" + a, "busybox")
    return l


def dynamic_busybox_layer(busybox, have):
    # Hard links, as upstream's busybox image has: MaskedPaths bind-mounts
    # /dev/null over /bin/ls, which through a symlink would mask busybox itself.
    l = Layer("busybox (dynamic, Debian busybox) with glibc, applets as hard links")
    add_elf(l, busybox, "/bin/busybox", have)
    for a in applets(busybox):
        l.hardlink("/bin/" + a, "/bin/busybox")
    return l


def arm64_stub(blobs, repo):
    """The arm64 entry of a multi-arch index: its own config and one small layer; it does not run."""
    l = Layer("arm64 stub (platform selection test entry; not runnable)")
    l.file("/ARM64-STUB", f"arm64 entry of {repo}: a platform-selection stub built by berth; it does not run\n")
    return write_image(blobs, [l], {"Env": [PATH_ENV], "Cmd": ["/ARM64-STUB"]}, arch="arm64", variant="v8")


NGINX_CONF = """user nginx;
worker_processes 1;
error_log stderr notice;
pid /var/run/nginx.pid;

events {
    worker_connections 64;
}

http {
    types {
        text/html html htm;
        text/plain txt;
    }
    default_type application/octet-stream;
    access_log /dev/stdout;
    sendfile on;
    include /etc/nginx/conf.d/*.conf;
}
"""

NGINX_SITE = """server {
    listen %d;
    server_name localhost;
    location / {
        root /usr/share/nginx/html;
        index index.html index.htm;
    }
}
"""

NGINX_INDEX = """<!DOCTYPE html>
<html>
<head><title>Welcome to nginx!</title></head>
<body>
<h1>Welcome to nginx!</h1>
<p>berth test image: Debian's nginx serving a static page.</p>
</body>
</html>
"""


def nginx_layer(nginx, port, have):
    l = Layer(f"nginx (Debian) listening on :{port}")
    add_elf(l, nginx, "/usr/sbin/nginx", have)
    l.file("/etc/passwd", PASSWD + "nginx:x:101:101:nginx:/nonexistent:/bin/false\n")
    l.file("/etc/group", GROUP + "nginx:x:101:\n")
    l.file("/etc/nginx/nginx.conf", NGINX_CONF)
    l.file("/etc/nginx/conf.d/default.conf", NGINX_SITE % port)
    l.file("/usr/share/nginx/html/index.html", NGINX_INDEX)
    for d in ("/var/run", "/var/log/nginx", "/var/lib/nginx", "/var/cache/nginx", "/var/lock", "/run"):
        l.dir(d)
    return l


def nginx_config(port):
    return {"Env": [PATH_ENV], "Cmd": ["nginx", "-g", "daemon off;"],
            "ExposedPorts": {f"{port}/tcp": {}}, "StopSignal": "SIGQUIT"}


# --- the images -----------------------------------------------------------------

CRI = "k8s-staging-cri-tools"       # gcr.io/k8s-staging-cri-tools/...
E2E = "e2e-test-images"             # registry.k8s.io/e2e-test-images/...


def build_all(args):
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    results = []

    base = skeleton()
    static_bb = static_busybox_layer(args.busybox_static)
    dyn_have = set()
    dyn_bb = dynamic_busybox_layer(args.busybox_dynamic, dyn_have)
    sh_config = {"Env": [PATH_ENV], "Cmd": ["sh"]}

    def image(repo, tags, layers, config, multiarch, needed_by, arch="amd64"):
        """Build one repository layout whose tags all name the same image."""
        tmp = os.path.join(out, repo + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        blobs = Blobs(tmp)
        mdesc, size = write_image(blobs, layers, config, arch=arch)
        platforms = [f"linux/{arch}"]
        top = mdesc
        if multiarch:
            sdesc, ssize = arm64_stub(blobs, repo)
            top = write_index(blobs, [mdesc, sdesc])
            size += ssize + top["size"]
            platforms.append("linux/arm64/v8")
        entries = []
        for t in tags:
            e = {k: top[k] for k in ("mediaType", "digest", "size")}
            e["annotations"] = {REF_NAME: t}
            entries.append(e)
        with open(os.path.join(tmp, "oci-layout"), "wb") as f:
            f.write(canon({"imageLayoutVersion": "1.0.0"}))
        with open(os.path.join(tmp, "index.json"), "wb") as f:
            f.write(canon({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": entries}))
        final = os.path.join(out, repo)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
        for t in tags:
            results.append({"repo": repo, "tag": t, "layout": final, "digest": top["digest"],
                            "mediaType": top["mediaType"], "size": size, "platforms": platforms,
                            "neededBy": needed_by})

    def multi_tag_distinct(repo, variants, multiarch, needed_by):
        """One layout, several tags that name different images (test-image-tag:test/:all)."""
        tmp = os.path.join(out, repo + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        blobs = Blobs(tmp)
        entries = []
        for tag, layers, config in variants:
            mdesc, size = write_image(blobs, layers, config)
            top, platforms = mdesc, ["linux/amd64"]
            if multiarch:
                sdesc, ssize = arm64_stub(blobs, f"{repo}:{tag}")
                top = write_index(blobs, [mdesc, sdesc])
                size += ssize + top["size"]
                platforms.append("linux/arm64/v8")
            e = {k: top[k] for k in ("mediaType", "digest", "size")}
            e["annotations"] = {REF_NAME: tag}
            entries.append(e)
            results.append({"repo": repo, "tag": tag, "layout": os.path.join(out, repo),
                            "digest": top["digest"], "mediaType": top["mediaType"], "size": size,
                            "platforms": platforms, "neededBy": needed_by})
        with open(os.path.join(tmp, "oci-layout"), "wb") as f:
            f.write(canon({"imageLayoutVersion": "1.0.0"}))
        with open(os.path.join(tmp, "index.json"), "wb") as f:
            f.write(canon({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": entries}))
        final = os.path.join(out, repo)
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)

    def marker(name):
        """critest's image-test Dockerfile: busybox plus one empty file named after the test."""
        return Layer(f"ADD {name} /{name}").file("/" + name, b"")

    # -- berth's own images ------------------------------------------------------
    extra = Layer("berth release file; whiteout of /etc/motd from the first layer")
    extra.file("/etc/berth-release", "berth test busybox (Debian busybox-static)\n")
    extra.whiteout("/etc/motd")
    base_motd = skeleton()
    base_motd.file("/etc/motd", "removed by a whiteout in the third layer; must not be visible\n")
    image("library/busybox", ["latest", "1.35"], [base_motd, static_bb, extra], sh_config, True,
          "berth integration tests (BERTH_BUSYBOX_IMAGE); multi-arch index, whiteout")

    web = Layer("web root with a known body")
    web.file("/var/www/index.html", args.web_body + "\n")
    image("berth/web", ["latest"], [base, static_bb, web],
          {"Env": [PATH_ENV], "Cmd": ["httpd", "-f", "-v", "-p", "80", "-h", "/var/www"],
           "ExposedPorts": {"80/tcp": {}}}, False,
          "berth integration tests (BERTH_WEB_IMAGE): busybox httpd on :80")

    pause = Layer("berth-pause (static) as /pause")
    pause.host_file("/pause", args.pause, mode=0o755)
    # One layer, three configs: each tag is its own image (own image id), as
    # upstream's pause:3.9 and :3.10 are. critest expects registry.k8s.io/pause:3.9
    # and k8s.gcr.io/pause:3.9 to be one image with exactly those two tags, so it
    # must not share its id with the sandbox image (3.10) or berth/pause.
    def pause_cfg(version):
        return {"Env": [PATH_ENV], "Entrypoint": ["/pause"], "User": "65535:65535",
                "Labels": {"org.opencontainers.image.version": version,
                           "org.opencontainers.image.title": "berth-pause"}}
    image("berth/pause", ["latest"], [pause], pause_cfg("berth"), True, "berth sandboxes (BERTH_PAUSE_IMAGE)")
    multi_tag_distinct("pause", [("3.9", [pause], pause_cfg("3.9")), ("3.10", [pause], pause_cfg("3.10"))], True,
                       "3.10: containerd sandbox_image; 3.9: critest 'removing image from one registry should "
                       "remove all tags from other registries', 'Image Identifier Consistency ... different "
                       "registries' (registry.k8s.io/pause:3.9 + k8s.gcr.io/pause:3.9)")

    # -- registry.k8s.io/e2e-test-images ------------------------------------------
    tools_have = set(dyn_have)
    tools = Layer("procps pgrep and util-linux ipcs (busybox lacks them) with their libraries")
    add_elf(tools, args.pgrep, "/usr/bin/pgrep", tools_have)
    add_elf(tools, args.ipcs, "/usr/bin/ipcs", tools_have)
    image(f"{E2E}/busybox", ["1.29-2"], [base, dyn_bb, tools], sh_config, True,
          "critest default container image (nearly every spec); MaskedPaths needs the dynamic "
          "busybox + hard links; execSync timeout needs pgrep; HostIpc needs ipcs")

    image(f"{E2E}/nginx", ["1.14-2"], [base, dyn_bb, nginx_layer(args.nginx, 80, set(dyn_have))],
          nginx_config(80), True,
          "critest networking (port mapping, DNS), streaming (port-forward), HostPID/PodPID/"
          "ContainerPID ('master process' in /proc/1/cmdline, /var/run/nginx.pid)")

    httpd = Layer("busybox httpd as httpd-foreground, serving /usr/local/apache2/htdocs")
    httpd.file("/usr/local/apache2/htdocs/index.html", "<html><body><h1>It works!</h1></body></html>\n")
    httpd.file("/usr/local/bin/httpd-foreground",
               "#!/bin/sh\n# Stands in for Apache's httpd-foreground: busybox httpd on :80.\n"
               "echo 'httpd-foreground: busybox httpd serving /usr/local/apache2/htdocs on :80' >&2\n"
               "exec httpd -f -v -p 80 -h /usr/local/apache2/htdocs\n", mode=0o755)
    image(f"{E2E}/httpd", ["2.4.39-4"], [base, dyn_bb, httpd],
          {"Env": [PATH_ENV], "Cmd": ["httpd-foreground"], "ExposedPorts": {"80/tcp": {}},
           "StopSignal": "SIGWINCH"}, True,
          "critest multi-container pod (httpd on :80, 'httpd' in its log)")

    nnp = Layer("nnp, setuid root: prints its effective uid")
    nnp.host_file("/usr/local/bin/nnp", args.nnp, mode=0o4755)
    image(f"{E2E}/nonewprivs", ["1.3"], [base, dyn_bb, nnp],
          {"Env": [PATH_ENV], "Entrypoint": ["/usr/local/bin/nnp"], "User": "1000"}, True,
          "critest NoNewPrivs ('Effective uid: 1000' / 'Effective uid: 0')")

    # -- gcr.io/k8s-staging-cri-tools -----------------------------------------------
    for n in ("test-image-1", "test-image-2", "test-image-3"):
        image(f"{CRI}/{n}", ["latest"], [base, dyn_bb, marker(n)], sh_config, True,
              "critest 'listImage should get exactly 3 image in the result list'")
    image(f"{CRI}/test-image-latest", ["latest"], [base, dyn_bb, marker("test-image-latest")], sh_config, True,
          "critest 'public image without tag should be pulled and removed'")
    image(f"{CRI}/test-image-tags", ["1", "2", "3"], [base, dyn_bb, marker("same-image")], sh_config, True,
          "critest 'listImage should get exactly 3 repoTags', 'removing image by one tag should remove all tags'")
    multi_tag_distinct(f"{CRI}/test-image-tag", [
        ("test", [base, dyn_bb, marker("test")], sh_config),
        ("all", [base, dyn_bb, marker("all")], sh_config),
    ], True, "critest 'public image with tag' (:test), 'image status should support all kinds of "
             "references' (:all), image volume specs (:test)")
    for repo, user, desc in (
        ("test-image-user-uid", "1002", "UID only"),
        ("test-image-user-username", "www-data", "Username only"),
        ("test-image-user-uid-group", "1003:1004", "UID:group"),
        ("test-image-user-username-group", "www-data:1004", "Username:group"),
    ):
        image(f"{CRI}/{repo}", ["latest"], [base, dyn_bb], dict(sh_config, User=user), True,
              f"critest 'image status get image fields should not have Uid|Username empty' ({desc})")
    pg = Layer("default-user (1000) in group-defined-in-image (50000)")
    pg.file("/etc/passwd", PASSWD + "default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n")
    pg.file("/etc/group", GROUP + "default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n")
    pg.dir("/home/default-user", 0o755, uid=1000, gid=1000)
    image(f"{CRI}/test-image-predefined-group", ["latest"], [base, dyn_bb, pg], dict(sh_config, User="1000"), True,
          "critest SupplementalGroupsPolicy Merge/Strict")
    image(f"{CRI}/hostnet-nginx-amd64", ["latest"], [base, dyn_bb, nginx_layer(args.nginx, 12003, set(dyn_have))],
          nginx_config(12003), False,
          "critest streaming/networking with host network (nginx on :12003, port-forward 12002)")

    with open(os.path.join(out, "images.json.tmp"), "w") as f:
        json.dump(results, f, indent=1, sort_keys=True)
        f.write("\n")
    os.rename(os.path.join(out, "images.json.tmp"), os.path.join(out, "images.json"))
    for r in results:
        print(f"{r['repo']}:{r['tag']}\t{r['digest']}\t{r['size']}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--busybox-static", default="/bin/busybox")
    p.add_argument("--busybox-dynamic", required=True, help="Debian's dynamic busybox, extracted from its .deb")
    p.add_argument("--nginx", required=True, help="Debian's nginx binary, extracted from its .deb")
    p.add_argument("--pgrep", default="/usr/bin/pgrep")
    p.add_argument("--ipcs", default="/usr/bin/ipcs")
    p.add_argument("--pause", required=True, help="static berth-pause")
    p.add_argument("--nnp", required=True, help="static nnp (hack/images/nnp.c)")
    p.add_argument("--web-body", default="berth-web-ok")
    build_all(p.parse_args())


if __name__ == "__main__":
    main()
