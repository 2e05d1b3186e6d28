//! Security contexts: the pod's and each container's, converted and checked
//! once with the pod, merged the way upstream's kubelet merges them (the
//! container's runAsUser, runAsGroup, runAsNonRoot, seLinuxOptions,
//! seccompProfile and appArmorProfile win over the pod's), and the
//! runAsNonRoot check against the image's user (the user inside the pod's
//! user namespace, where it has one, as upstream checks it).

use k8s_openapi::api::core::v1 as api;

/// A seccomp or AppArmor profile as the API names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Profile {
    RuntimeDefault,
    Unconfined,
    /// The profile's name (AppArmor) or path under the seccomp root.
    Localhost(String),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SeLinux {
    pub user: String,
    pub role: String,
    pub type_: String,
    pub level: String,
}

/// What the pod and a container can both set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Common {
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    pub run_as_non_root: Option<bool>,
    pub seccomp: Option<Profile>,
    pub apparmor: Option<Profile>,
    pub selinux: Option<SeLinux>,
}

impl Common {
    /// `self` (the container's) over `pod`.
    fn over(&self, pod: &Common) -> Common {
        Common {
            run_as_user: self.run_as_user.or(pod.run_as_user),
            run_as_group: self.run_as_group.or(pod.run_as_group),
            run_as_non_root: self.run_as_non_root.or(pod.run_as_non_root),
            seccomp: self.seccomp.clone().or_else(|| pod.seccomp.clone()),
            apparmor: self.apparmor.clone().or_else(|| pod.apparmor.clone()),
            selinux: self.selinux.clone().or_else(|| pod.selinux.clone()),
        }
    }
}

/// `fsGroupChangePolicy`: when the kubelet walks a volume to give it to
/// fsGroup.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FsGroupChangePolicy {
    /// Every time the volume is set up (upstream's default).
    #[default]
    Always,
    /// Only when the volume's root lacks fsGroup or its permission bits.
    OnRootMismatch,
}

/// `procMount`: what of /proc the runtime masks or makes read-only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProcMount {
    /// upstream's default masked and read-only paths.
    #[default]
    Default,
    /// Nothing masked, nothing read-only (meant for pods with their own
    /// user namespace, which the API server enforces).
    Unmasked,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSecurity {
    pub common: Common,
    pub supplemental_groups: Vec<i64>,
    /// `Strict`: only the listed groups, not the image's /etc/group ones.
    pub strict_groups: bool,
    /// Group of the volumes the kubelet makes, and a supplemental group.
    pub fs_group: Option<i64>,
    pub fs_group_change_policy: FsGroupChangePolicy,
    pub sysctls: Vec<(String, String)>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerSecurity {
    pub common: Common,
    pub privileged: bool,
    pub add_caps: Vec<String>,
    pub drop_caps: Vec<String>,
    pub readonly_rootfs: bool,
    pub allow_privilege_escalation: Option<bool>,
    pub proc_mount: ProcMount,
}

/// A container's effective context.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Effective {
    pub common: Common,
    pub container: ContainerSecurity,
    /// The pod's supplemental groups, then fsGroup.
    pub supplemental_groups: Vec<i64>,
    pub strict_groups: bool,
}

impl Effective {
    pub fn of(pod: &PodSecurity, c: &ContainerSecurity) -> Effective {
        let mut groups = pod.supplemental_groups.clone();
        if let Some(g) = pod.fs_group
            && !groups.contains(&g)
        {
            groups.push(g);
        }
        Effective {
            common: c.common.over(&pod.common),
            container: c.clone(),
            supplemental_groups: groups,
            strict_groups: pod.strict_groups,
        }
    }

    /// no_new_privs: only when allowPrivilegeEscalation is false (upstream).
    pub fn no_new_privs(&self) -> bool {
        self.container.allow_privilege_escalation == Some(false)
    }
}

fn profile(type_: &str, localhost: Option<&str>, at: &str, kind: &str) -> Result<Profile, String> {
    match type_ {
        "RuntimeDefault" => Ok(Profile::RuntimeDefault),
        "Unconfined" => Ok(Profile::Unconfined),
        "Localhost" => match localhost.filter(|l| !l.is_empty()) {
            Some(l) => {
                if kind == "seccomp" {
                    crate::volume::check_relative(l, "localhostProfile")
                        .map_err(|e| format!("{at}.localhostProfile: {e}"))?;
                }
                Ok(Profile::Localhost(l.to_owned()))
            }
            None => Err(format!(
                "{at}.localhostProfile: required when type is Localhost"
            )),
        },
        other => Err(format!("{at}.type: unknown {kind} profile type {other:?}")),
    }
}

fn selinux(o: &api::SELinuxOptions) -> SeLinux {
    SeLinux {
        user: o.user.clone().unwrap_or_default(),
        role: o.role.clone().unwrap_or_default(),
        type_: o.type_.clone().unwrap_or_default(),
        level: o.level.clone().unwrap_or_default(),
    }
}

fn common(
    run_as_user: Option<i64>,
    run_as_group: Option<i64>,
    run_as_non_root: Option<bool>,
    seccomp: Option<&api::SeccompProfile>,
    apparmor: Option<&api::AppArmorProfile>,
    se: Option<&api::SELinuxOptions>,
    at: &str,
) -> Result<Common, String> {
    for (f, v) in [("runAsUser", run_as_user), ("runAsGroup", run_as_group)] {
        if let Some(v) = v
            && !(0..=i64::from(u32::MAX - 1)).contains(&v)
        {
            return Err(format!("{at}.{f}: {v} is not a valid id"));
        }
    }
    Ok(Common {
        run_as_user,
        run_as_group,
        run_as_non_root,
        seccomp: seccomp
            .map(|s| {
                profile(
                    &s.type_,
                    s.localhost_profile.as_deref(),
                    &format!("{at}.seccompProfile"),
                    "seccomp",
                )
            })
            .transpose()?,
        apparmor: apparmor
            .map(|s| {
                profile(
                    &s.type_,
                    s.localhost_profile.as_deref(),
                    &format!("{at}.appArmorProfile"),
                    "AppArmor",
                )
            })
            .transpose()?,
        selinux: se.map(selinux),
    })
}

impl PodSecurity {
    /// `spec.securityContext`; warnings for what is accepted but ignored.
    pub fn from_api(
        sc: Option<&api::PodSecurityContext>,
        warn: &mut dyn FnMut(String),
    ) -> Result<PodSecurity, String> {
        let Some(sc) = sc else {
            return Ok(PodSecurity::default());
        };
        let at = "spec.securityContext";
        let strict_groups = match sc.supplemental_groups_policy.as_deref() {
            None | Some("Merge") => false,
            Some("Strict") => true,
            Some(p) => {
                return Err(format!(
                    "{at}.supplementalGroupsPolicy: {p:?} is not Merge or Strict"
                ));
            }
        };
        let mut sysctls = Vec::new();
        for (i, s) in sc.sysctls.iter().flatten().enumerate() {
            if s.name.is_empty() || s.name.contains(['\0', ' ', '\n']) || s.name.contains("..") {
                return Err(format!(
                    "{at}.sysctls[{i}].name: {:?} is not a sysctl",
                    s.name
                ));
            }
            sysctls.push((s.name.clone(), s.value.clone()));
        }
        let fs_group_change_policy = match sc.fs_group_change_policy.as_deref() {
            None | Some("Always") => FsGroupChangePolicy::Always,
            Some("OnRootMismatch") => FsGroupChangePolicy::OnRootMismatch,
            Some(p) => {
                return Err(format!(
                    "{at}.fsGroupChangePolicy: {p:?} is not Always or OnRootMismatch"
                ));
            }
        };
        for (field, set) in [
            ("seLinuxChangePolicy", sc.se_linux_change_policy.is_some()),
            ("windowsOptions", sc.windows_options.is_some()),
        ] {
            if set {
                warn(format!("{at}.{field}"));
            }
        }
        Ok(PodSecurity {
            common: common(
                sc.run_as_user,
                sc.run_as_group,
                sc.run_as_non_root,
                sc.seccomp_profile.as_ref(),
                sc.app_armor_profile.as_ref(),
                sc.se_linux_options.as_ref(),
                at,
            )?,
            supplemental_groups: sc.supplemental_groups.clone().unwrap_or_default(),
            strict_groups,
            fs_group: sc.fs_group,
            fs_group_change_policy,
            sysctls,
        })
    }
}

impl ContainerSecurity {
    /// A container's `securityContext`; `at` names the container.
    pub fn from_api(
        sc: Option<&api::SecurityContext>,
        at: &str,
        warn: &mut dyn FnMut(String),
    ) -> Result<ContainerSecurity, String> {
        let Some(sc) = sc else {
            return Ok(ContainerSecurity::default());
        };
        let at = format!("{at}.securityContext");
        let privileged = sc.privileged == Some(true);
        if privileged && sc.allow_privilege_escalation == Some(false) {
            return Err(format!(
                "{at}: cannot set allowPrivilegeEscalation to false and privileged to true"
            ));
        }
        let proc_mount = match sc.proc_mount.as_deref() {
            None | Some("Default") => ProcMount::Default,
            Some("Unmasked") => ProcMount::Unmasked,
            Some(m) => {
                return Err(format!("{at}.procMount: {m:?} is not Default or Unmasked"));
            }
        };
        if sc.windows_options.is_some() {
            warn(format!("{at}.windowsOptions"));
        }
        let caps = sc.capabilities.as_ref();
        Ok(ContainerSecurity {
            common: common(
                sc.run_as_user,
                sc.run_as_group,
                sc.run_as_non_root,
                sc.seccomp_profile.as_ref(),
                sc.app_armor_profile.as_ref(),
                sc.se_linux_options.as_ref(),
                &at,
            )?,
            privileged,
            add_caps: caps.and_then(|c| c.add.clone()).unwrap_or_default(),
            drop_caps: caps.and_then(|c| c.drop.clone()).unwrap_or_default(),
            readonly_rootfs: sc.read_only_root_filesystem == Some(true),
            allow_privilege_escalation: sc.allow_privilege_escalation,
            proc_mount,
        })
    }
}

/// upstream's runAsNonRoot check: with runAsNonRoot, the effective user must
/// be known and not 0 (`image_uid`/`image_user`: what the runtime reports
/// of the image's USER).
pub fn verify_non_root(
    e: &Effective,
    image_uid: Option<i64>,
    image_user: &str,
    pod: &str,
    container: &str,
) -> Result<(), String> {
    if e.common.run_as_non_root != Some(true) {
        return Ok(());
    }
    if let Some(uid) = e.common.run_as_user {
        return if uid == 0 {
            Err(format!(
                "container's runAsUser breaks non-root policy (pod: {pod:?}, container: {container})"
            ))
        } else {
            Ok(())
        };
    }
    match (image_uid, image_user) {
        (Some(0), _) | (None, "") => Err(format!(
            "container has runAsNonRoot and image will run as root (pod: {pod:?}, container: {container})"
        )),
        (None, user) => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify user is non-root (pod: {pod:?}, container: {container})"
        )),
        (Some(_), _) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod_sc(y: &str) -> api::PodSecurityContext {
        let v: serde_json::Value = serde_saphyr::from_str(y).unwrap();
        serde_json::from_value(v).unwrap()
    }

    fn ctr_sc(y: &str) -> api::SecurityContext {
        let v: serde_json::Value = serde_saphyr::from_str(y).unwrap();
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn container_fields_win_and_groups_take_fs_group() {
        let p = PodSecurity::from_api(
            Some(&pod_sc(
                "{runAsUser: 1000, runAsGroup: 3000, supplementalGroups: [4000], fsGroup: 2000, seccompProfile: {type: RuntimeDefault}}",
            )),
            &mut |_| {},
        )
        .unwrap();
        let c = ContainerSecurity::from_api(
            Some(&ctr_sc(
                "{runAsUser: 1001, allowPrivilegeEscalation: false, capabilities: {add: [NET_ADMIN], drop: [ALL]}, readOnlyRootFilesystem: true}",
            )),
            "spec.containers[0]",
            &mut |_| {},
        )
        .unwrap();
        let e = Effective::of(&p, &c);
        assert_eq!(e.common.run_as_user, Some(1001));
        assert_eq!(e.common.run_as_group, Some(3000));
        assert_eq!(e.common.seccomp, Some(Profile::RuntimeDefault));
        assert_eq!(e.supplemental_groups, [4000, 2000]);
        assert!(e.no_new_privs());
        assert!(e.container.readonly_rootfs);
        assert_eq!(e.container.drop_caps, ["ALL"]);
    }

    #[test]
    fn bad_contexts_are_named() {
        let e = PodSecurity::from_api(
            Some(&pod_sc("{seccompProfile: {type: Localhost}}")),
            &mut |_| {},
        )
        .unwrap_err();
        assert_eq!(
            e,
            "spec.securityContext.seccompProfile.localhostProfile: required when type is Localhost"
        );
        let e = ContainerSecurity::from_api(
            Some(&ctr_sc(
                "{privileged: true, allowPrivilegeEscalation: false}",
            )),
            "spec.containers[0]",
            &mut |_| {},
        )
        .unwrap_err();
        assert!(
            e.starts_with("spec.containers[0].securityContext: cannot set"),
            "{e}"
        );
    }

    #[test]
    fn fs_group_change_policy_and_proc_mount() {
        let p = |y: &str| PodSecurity::from_api(Some(&pod_sc(y)), &mut |_| {});
        assert_eq!(
            p("{fsGroup: 1}").unwrap().fs_group_change_policy,
            FsGroupChangePolicy::Always
        );
        assert_eq!(
            p("{fsGroupChangePolicy: Always}")
                .unwrap()
                .fs_group_change_policy,
            FsGroupChangePolicy::Always
        );
        assert_eq!(
            p("{fsGroupChangePolicy: OnRootMismatch}")
                .unwrap()
                .fs_group_change_policy,
            FsGroupChangePolicy::OnRootMismatch
        );
        assert_eq!(
            p("{fsGroupChangePolicy: Sometimes}").unwrap_err(),
            "spec.securityContext.fsGroupChangePolicy: \"Sometimes\" is not Always or OnRootMismatch"
        );
        let c = |y: &str| {
            ContainerSecurity::from_api(Some(&ctr_sc(y)), "spec.containers[1]", &mut |_| {})
        };
        assert_eq!(c("{}").unwrap().proc_mount, ProcMount::Default);
        assert_eq!(
            c("{procMount: Default}").unwrap().proc_mount,
            ProcMount::Default
        );
        assert_eq!(
            c("{procMount: Unmasked}").unwrap().proc_mount,
            ProcMount::Unmasked
        );
        assert_eq!(
            c("{procMount: Masked}").unwrap_err(),
            "spec.containers[1].securityContext.procMount: \"Masked\" is not Default or Unmasked"
        );
        // seLinuxChangePolicy stays a warning (no SELinux here).
        let mut w = Vec::new();
        PodSecurity::from_api(
            Some(&pod_sc("{seLinuxChangePolicy: Recursive}")),
            &mut |f| w.push(f),
        )
        .unwrap();
        assert_eq!(w, ["spec.securityContext.seLinuxChangePolicy"]);
    }

    #[test]
    fn run_as_non_root_as_upstream_checks_it() {
        let mut e = Effective::default();
        assert!(verify_non_root(&e, Some(0), "", "p", "c").is_ok());
        e.common.run_as_non_root = Some(true);
        assert!(
            verify_non_root(&e, Some(0), "", "p", "c")
                .unwrap_err()
                .contains("will run as root")
        );
        assert!(
            verify_non_root(&e, None, "", "p", "c")
                .unwrap_err()
                .contains("will run as root")
        );
        assert!(
            verify_non_root(&e, None, "nginx", "p", "c")
                .unwrap_err()
                .contains("non-numeric user (nginx)")
        );
        assert!(verify_non_root(&e, Some(101), "", "p", "c").is_ok());
        e.common.run_as_user = Some(0);
        assert!(
            verify_non_root(&e, Some(101), "", "p", "c")
                .unwrap_err()
                .contains("breaks non-root policy")
        );
        e.common.run_as_user = Some(5);
        assert!(verify_non_root(&e, Some(0), "", "p", "c").is_ok());
    }
}
