//! OCI bundles for the berth-runc tests: a unique temp dir holding a busybox
//! rootfs (plus `berth-check` and the libraries it links), a config.json
//! from `berth-runc spec`, and a private state root. Dropping a `Bundle`
//! force-deletes its container and removes everything it made, also when
//! the test failed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `target/<profile>/`, where cargo put this test's binaries.
pub fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let deps = exe.parent().expect("deps dir");
    let dir = if deps.ends_with("deps") {
        deps.parent().expect("profile dir")
    } else {
        deps
    };
    dir.to_path_buf()
}

/// The berth-runc binary of this build profile. `cargo test --workspace`
/// builds it (berth-runtime has integration tests); for `-p berth-tests`
/// alone, build it first: `cargo build -p berth-runtime`.
pub fn runc_bin() -> PathBuf {
    let p = profile_dir().join("berth-runc");
    assert!(
        p.exists(),
        "{} missing: run `cargo build -p berth-runtime` (same profile) first",
        p.display()
    );
    p
}

pub fn check_bin() -> PathBuf {
    let p = profile_dir().join("berth-check");
    assert!(
        p.exists(),
        "{} missing: build berth-tests' bins first",
        p.display()
    );
    p
}

/// The container tests need root. Not being root fails the test with a
/// clear message: a test that quietly passes without running proves nothing.
/// Returns true so call sites read as a precondition.
pub fn require_root() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    assert!(
        root,
        "this test creates containers and needs root: sudo hack/test.sh"
    );
    true
}

/// Whether the host mounts cgroup v2 alone at /sys/fs/cgroup (else v1 or
/// hybrid, where the v1 controllers are what containers get).
pub fn cgroup_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

pub struct Bundle {
    pub dir: PathBuf,
    pub state_root: PathBuf,
    pub id: String,
    pub config: serde_json::Value,
    /// The runtime binary (berth-runc, or runc for parity checks).
    pub runtime: PathBuf,
    /// Every runtime command gets `--systemd-cgroup` (the systemd driver).
    pub systemd_cgroup: bool,
}

impl Bundle {
    /// A bundle with the default spec (terminal off, cgroupsPath
    /// `/berth-test/<id>`) and `berth-check` at `/berth-check`.
    pub fn new(prefix: &str) -> Self {
        let id = crate::unique_name(prefix);
        let dir = std::env::temp_dir().join(format!("berth-bundle-{id}"));
        let rootfs = dir.join("rootfs");
        for d in ["bin", "tmp", "etc", "proc", "sys", "dev", "work"] {
            std::fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
            .expect("busybox-static at /bin/busybox");
        for a in [
            "sh", "true", "false", "cat", "ls", "id", "echo", "sleep", "mkdir", "touch",
            "hostname", "ps", "grep", "mount", "ulimit",
        ] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).unwrap();
        }
        install_with_libs(&check_bin(), &rootfs, "berth-check");
        let runtime = runc_bin();
        let st = Command::new(&runtime)
            .arg("spec")
            .current_dir(&dir)
            .status()
            .unwrap();
        assert!(st.success(), "berth-runc spec failed");
        let mut config: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        config["process"]["terminal"] = false.into();
        config["linux"]["cgroupsPath"] = format!("/berth-test/{id}").into();
        let state_root = dir.join("state");
        let b = Self {
            dir,
            state_root,
            id,
            config,
            runtime,
            systemd_cgroup: false,
        };
        b.write_config();
        b
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    pub fn write_config(&self) {
        std::fs::write(
            self.dir.join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    pub fn set_args(&mut self, args: &[&str]) {
        self.config["process"]["args"] = args.iter().map(|a| serde_json::Value::from(*a)).collect();
        self.write_config();
    }

    fn global_flags(&self) -> Vec<std::ffi::OsString> {
        let mut f = vec!["--root".into(), self.state_root.clone().into_os_string()];
        if self.systemd_cgroup {
            f.push("--systemd-cgroup".into());
        }
        f
    }

    /// Run the runtime with `--root <state_root>` and `args`.
    pub fn runc(&self, args: &[&str]) -> Output {
        Command::new(&self.runtime)
            .args(self.global_flags())
            .args(args)
            .current_dir(&self.dir)
            .output()
            .unwrap()
    }

    /// Run the runtime for a command whose container outlives it (`create`,
    /// `run -d`): the container inherits stdio, so it gets files, not the
    /// pipes `output()` would wait on. Returns (success, the runtime's stderr).
    pub fn runc_bg(&self, args: &[&str]) -> (bool, String) {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let err = self.dir.join(format!("bg-{n}.err"));
        let out = self.dir.join(format!("bg-{n}.out"));
        let st = Command::new(&self.runtime)
            .args(self.global_flags())
            .args(args)
            .current_dir(&self.dir)
            .stdin(std::process::Stdio::null())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap())
            .status()
            .unwrap();
        (
            st.success(),
            std::fs::read_to_string(&err).unwrap_or_default(),
        )
    }

    /// `run` in the foreground with the bundle; returns (exit code, stdout, stderr).
    pub fn run(&self) -> (i32, String, String) {
        let o = self.runc(&["run", "--bundle", self.dir.to_str().unwrap(), &self.id]);
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    /// Run `/berth-check` as the container process and parse its report.
    pub fn check(&mut self) -> serde_json::Value {
        self.set_args(&["/berth-check"]);
        let (code, out, err) = self.run();
        assert_eq!(code, 0, "run failed: {err}");
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("checker output {out:?}: {e}; stderr {err}"))
    }

    /// `state` as JSON (None when the runtime says the container is gone).
    pub fn state(&self) -> Option<serde_json::Value> {
        let o = self.runc(&["state", &self.id]);
        o.status
            .success()
            .then(|| serde_json::from_slice(&o.stdout).unwrap())
    }

    pub fn status(&self) -> Option<String> {
        self.state()
            .map(|s| s["status"].as_str().unwrap().to_owned())
    }

    /// The container's cgroup directory for a v1 controller on this host.
    /// The container's cgroup folder for `controller` on v1; on v2 the one
    /// unified folder, whatever the controller.
    pub fn cgroup_dir(&self, controller: &str) -> PathBuf {
        let base = Path::new("/sys/fs/cgroup");
        let base = if cgroup_v2() {
            base.to_path_buf()
        } else {
            base.join(controller)
        };
        base.join("berth-test").join(&self.id)
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        let _ = self.runc(&["delete", "--force", &self.id]);
        for c in [
            "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids", "systemd",
            "unified",
        ] {
            let _ = std::fs::remove_dir(self.cgroup_dir(c));
            // The shared parent goes when the last test's container has.
            let _ = std::fs::remove_dir(self.cgroup_dir(c).parent().unwrap());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Copy `bin` into `rootfs/<name>` with the shared libraries `ldd` lists.
fn install_with_libs(bin: &Path, rootfs: &Path, name: &str) {
    std::fs::copy(bin, rootfs.join(name)).unwrap();
    let out = Command::new("ldd").arg(bin).output().unwrap();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let path = line
            .split_whitespace()
            .find(|w| w.starts_with('/'))
            .map(PathBuf::from);
        if let Some(p) = path {
            let dest = rootfs.join(p.strip_prefix("/").unwrap());
            std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}
