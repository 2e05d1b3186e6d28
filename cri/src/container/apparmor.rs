//! AppArmor for CRI containers: which profile a container runs under, the
//! check that a named profile is loaded, and berth's own default profile,
//! loaded with `apparmor_parser` the first time a container needs it.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use super::model::AppArmorMode;

/// The profile `RuntimeDefault` (and an unset field) stands for.
pub const DEFAULT_PROFILE: &str = "berth-default";

const PROFILES: &str = "/sys/kernel/security/apparmor/profiles";

/// berth's default profile: the container may use files, network and the
/// capabilities it was given; it may not mount, may not write the kernel's
/// knobs in /proc and /sys, and only its own processes may trace it.
/// Seccomp and the masked and read-only paths already cover much of this;
/// the profile is a second wall on the host's side.
const DEFAULT_TEXT: &str = r"profile berth-default flags=(attach_disconnected,mediate_deleted) {
  file,
  network,
  capability,
  umount,
  signal (send,receive) peer=berth-default,
  signal (receive) peer=unconfined,
  ptrace (trace,read,tracedby,readby) peer=berth-default,
  deny mount,
  deny pivot_root,
  deny /proc/* w,
  deny /proc/sys/** w,
  deny /proc/sysrq-trigger rwklx,
  deny /proc/kcore rwklx,
  deny /sys/** wkl,
  deny /sys/firmware/** rwklx,
  deny /sys/kernel/security/** rwklx,
}
";

#[derive(Debug, thiserror::Error)]
pub enum AppArmorError {
    #[error("AppArmor profile {0:?} asked for, but AppArmor is not enabled on this host")]
    NotEnabled(String),
    #[error("AppArmor profile {0:?} is not loaded (see {PROFILES})")]
    NotLoaded(String),
    #[error("load the default AppArmor profile {DEFAULT_PROFILE:?}: {0}")]
    LoadDefault(String),
}

/// The host enforces AppArmor.
pub fn enabled() -> bool {
    berth_runtime::sys::apparmor::enabled()
}

/// The profile for a container with `mode`, or none. Errors leave nothing
/// changed but, at most, berth's default profile loaded.
pub fn resolve(mode: &AppArmorMode, privileged: bool) -> Result<Option<String>, AppArmorError> {
    match mode {
        AppArmorMode::Unconfined => Ok(None),
        AppArmorMode::Localhost(name) => {
            if !enabled() {
                return Err(AppArmorError::NotEnabled(name.clone()));
            }
            if !loaded(name) {
                return Err(AppArmorError::NotLoaded(name.clone()));
            }
            Ok(Some(name.clone()))
        }
        // The default of a host without AppArmor is no profile.
        AppArmorMode::RuntimeDefault if !enabled() => Ok(None),
        AppArmorMode::RuntimeDefault => ensure_default().map(|()| Some(DEFAULT_PROFILE.into())),
        // Nothing asked: containerd's rule, the default unless privileged.
        // A host that has AppArmor but cannot load our profile (no
        // apparmor_parser) runs such containers without one, and says so.
        AppArmorMode::Unset if privileged || !enabled() => Ok(None),
        AppArmorMode::Unset => match ensure_default() {
            Ok(()) => Ok(Some(DEFAULT_PROFILE.into())),
            Err(e) => {
                tracing::warn!(error = %e, "containers without an AppArmor profile run unconfined");
                Ok(None)
            }
        },
    }
}

/// Whether the kernel has a profile called `name` ("name (mode)" lines).
fn loaded(name: &str) -> bool {
    std::fs::read_to_string(PROFILES).is_ok_and(|s| {
        s.lines()
            .any(|l| l.rsplit_once(" (").is_some_and(|(n, _)| n == name))
    })
}

/// Load berth's default profile unless the kernel has it; one loader at a
/// time.
fn ensure_default() -> Result<(), AppArmorError> {
    static LOADING: Mutex<()> = Mutex::new(());
    let _g = LOADING.lock().unwrap_or_else(|e| e.into_inner());
    if loaded(DEFAULT_PROFILE) {
        return Ok(());
    }
    let err = |m: String| AppArmorError::LoadDefault(m);
    let mut child = Command::new("apparmor_parser")
        .args(["--replace", "--skip-cache"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| err(format!("run apparmor_parser: {e}")))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(DEFAULT_TEXT.as_bytes())
        .map_err(|e| err(format!("write to apparmor_parser: {e}")))?;
    let out = child
        .wait_with_output()
        .map_err(|e| err(format!("wait for apparmor_parser: {e}")))?;
    if !out.status.success() {
        return Err(err(format!(
            "apparmor_parser: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unconfined_and_privileged_get_no_profile() {
        assert_eq!(resolve(&AppArmorMode::Unconfined, false).unwrap(), None);
        assert_eq!(resolve(&AppArmorMode::Unset, true).unwrap(), None);
    }

    #[test]
    fn a_named_profile_must_be_loaded() {
        let e = resolve(
            &AppArmorMode::Localhost("berth-no-such-profile".into()),
            false,
        )
        .unwrap_err()
        .to_string();
        if enabled() {
            assert!(e.contains("is not loaded"), "{e}");
        } else {
            assert!(e.contains("AppArmor is not enabled"), "{e}");
        }
        assert!(e.contains("berth-no-such-profile"), "{e}");
    }
}
