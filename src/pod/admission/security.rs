//! securityContext, the pod's and each container's (merged over it): users
//! and groups, capabilities, privilege, seccomp and AppArmor profiles,
//! sysctls, fsGroup. What depends on the node (the allowed sysctls, the
//! seccomp profile folder) is checked when the pod is launched
//! (`pod::security::check`).

use std::str::FromStr;

use k8s_openapi::api::core::v1 as k8s;

use super::{model, not_one_of, Admission, ManifestError};

/// Pod-level securityContext, validated, for merging under each container's.
#[derive(Default)]
pub(super) struct PodSecurity {
    run_as_user: Option<u32>,
    run_as_group: Option<u32>,
    run_as_non_root: Option<bool>,
    supplemental_groups: Vec<u32>,
    seccomp: model::SeccompProfile,
    /// hostUsers: false (procMount: Unmasked is allowed only then).
    pub(super) own_users: bool,
    /// The pod-wide part, as the model keeps it.
    pub(super) pod: model::PodSecurity,
}

impl Admission<'_> {
    pub(super) fn pod_security(
        &mut self,
        context: Option<k8s::PodSecurityContext>,
    ) -> Result<PodSecurity, ManifestError> {
        let Some(context) = context else {
            return Ok(PodSecurity::default());
        };
        let field = "spec.securityContext";
        let k8s::PodSecurityContext {
            app_armor_profile,
            fs_group,
            fs_group_change_policy,
            run_as_group,
            run_as_non_root,
            run_as_user,
            se_linux_change_policy,
            se_linux_options,
            seccomp_profile,
            supplemental_groups,
            supplemental_groups_policy,
            sysctls,
            windows_options,
        } = context;
        let run_as_user = self.id(&format!("{field}.runAsUser"), run_as_user)?;
        let run_as_group = self.id(&format!("{field}.runAsGroup"), run_as_group)?;
        if run_as_non_root == Some(true) && run_as_user == Some(0) {
            return Err(self.invalid(
                format!("{field}.runAsUser"),
                "is 0 (root) but runAsNonRoot is true",
            ));
        }
        let mut groups = Vec::new();
        for (i, group) in supplemental_groups
            .unwrap_or_default()
            .into_iter()
            .enumerate()
        {
            if let Some(group) =
                self.id(&format!("{field}.supplementalGroups[{i}]"), Some(group))?
            {
                groups.push(group);
            }
        }
        let fs_group = self.id(&format!("{field}.fsGroup"), fs_group)?;
        let fs_group_on_root_mismatch = match fs_group_change_policy.as_deref() {
            None | Some("Always") => false,
            Some("OnRootMismatch") => true,
            Some(other) => {
                return Err(self.invalid(
                    format!("{field}.fsGroupChangePolicy"),
                    not_one_of(other, &["OnRootMismatch", "Always"]),
                ))
            }
        };
        let supplemental_groups_strict = match supplemental_groups_policy.as_deref() {
            None | Some("Merge") => false,
            Some("Strict") => true,
            Some(other) => {
                return Err(self.invalid(
                    format!("{field}.supplementalGroupsPolicy"),
                    not_one_of(other, &["Merge", "Strict"]),
                ))
            }
        };
        let sysctls = self.sysctls(&format!("{field}.sysctls"), sysctls.unwrap_or_default())?;
        for (name, set) in [
            ("seLinuxChangePolicy", se_linux_change_policy.is_some()),
            ("seLinuxOptions", se_linux_options.is_some()),
            ("windowsOptions", windows_options.is_some()),
        ] {
            if set {
                self.warn(&format!("{field}.{name}"), "ignored");
            }
        }
        let seccomp = self.seccomp(&format!("{field}.seccompProfile"), seccomp_profile)?;
        self.app_armor(&format!("{field}.appArmorProfile"), app_armor_profile)?;
        Ok(PodSecurity {
            run_as_user,
            run_as_group,
            run_as_non_root,
            supplemental_groups: groups,
            seccomp: seccomp.clone(),
            own_users: false,
            pod: model::PodSecurity {
                seccomp,
                sysctls,
                fs_group,
                fs_group_on_root_mismatch,
                supplemental_groups_strict,
            },
        })
    }

    pub(super) fn security(
        &mut self,
        field: &str,
        context: Option<k8s::SecurityContext>,
        pod: &PodSecurity,
    ) -> Result<model::Security, ManifestError> {
        let field = format!("{field}.securityContext");
        let k8s::SecurityContext {
            allow_privilege_escalation,
            app_armor_profile,
            capabilities,
            privileged,
            proc_mount,
            read_only_root_filesystem,
            run_as_group,
            run_as_non_root,
            run_as_user,
            se_linux_options,
            seccomp_profile,
            windows_options,
        } = context.unwrap_or_default();
        let user_field = if run_as_user.is_some() {
            format!("{field}.runAsUser")
        } else {
            "spec.securityContext.runAsUser".to_owned()
        };
        let run_as_user = self.id(&format!("{field}.runAsUser"), run_as_user)?;
        let run_as_group = self.id(&format!("{field}.runAsGroup"), run_as_group)?;
        let seccomp = self.seccomp(&format!("{field}.seccompProfile"), seccomp_profile)?;
        self.app_armor(&format!("{field}.appArmorProfile"), app_armor_profile)?;
        for (name, set) in [
            ("seLinuxOptions", se_linux_options.is_some()),
            ("windowsOptions", windows_options.is_some()),
        ] {
            if set {
                self.warn(&format!("{field}.{name}"), "ignored");
            }
        }
        let mut proc_unmasked = false;
        match proc_mount.as_deref() {
            None | Some("Default") => {}
            // validateProcMountType: Unmasked needs the pod's own user namespace.
            Some("Unmasked") if !pod.own_users => {
                return Err(self.invalid(
                    format!("{field}.procMount"),
                    "`hostUsers` must be false to use `Unmasked`",
                ))
            }
            Some("Unmasked") => proc_unmasked = true,
            Some(other) => {
                return Err(self.invalid(
                    format!("{field}.procMount"),
                    not_one_of(other, &["Default", "Unmasked"]),
                ))
            }
        }
        let k8s::Capabilities { add, drop } = capabilities.unwrap_or_default();
        let caps_add = self.capabilities(&format!("{field}.capabilities.add"), add)?;
        let caps_drop = self.capabilities(&format!("{field}.capabilities.drop"), drop)?;
        let privileged = privileged.unwrap_or(false);
        if allow_privilege_escalation == Some(false) {
            if privileged {
                return Err(self.invalid(
                    format!("{field}.allowPrivilegeEscalation"),
                    "cannot be false when privileged is true",
                ));
            }
            if caps_add
                .iter()
                .any(|cap| cap == "CAP_SYS_ADMIN" || cap == "ALL")
            {
                return Err(self.invalid(
                    format!("{field}.allowPrivilegeEscalation"),
                    "cannot be false when capabilities.add has CAP_SYS_ADMIN",
                ));
            }
        }
        // The container's settings win over the pod's.
        let run_as_user = run_as_user.or(pod.run_as_user);
        let run_as_non_root = run_as_non_root.or(pod.run_as_non_root);
        if run_as_non_root == Some(true) && run_as_user == Some(0) {
            return Err(self.invalid(user_field, "is 0 (root) but runAsNonRoot is true"));
        }
        Ok(model::Security {
            run_as_user,
            run_as_group: run_as_group.or(pod.run_as_group),
            run_as_non_root,
            supplemental_groups: pod.supplemental_groups.clone(),
            caps_add,
            caps_drop,
            privileged,
            read_only_root_filesystem: read_only_root_filesystem.unwrap_or(false),
            allow_privilege_escalation,
            // Kubernetes: the container's profile wins over the pod's.
            seccomp: match seccomp {
                model::SeccompProfile::Unset => pod.seccomp.clone(),
                set => set,
            },
            proc_unmasked,
        })
    }

    /// Capability names as CAP_XXX (Kubernetes writes them without the prefix).
    fn capabilities(
        &self,
        field: &str,
        names: Option<Vec<String>>,
    ) -> Result<Vec<String>, ManifestError> {
        let mut out: Vec<String> = Vec::new();
        for (i, name) in names.unwrap_or_default().iter().enumerate() {
            let upper = name.trim().to_ascii_uppercase();
            let full = if upper == "ALL" {
                upper
            } else {
                let full = if upper.starts_with("CAP_") {
                    upper
                } else {
                    format!("CAP_{upper}")
                };
                if caps::Capability::from_str(&full).is_err() {
                    return Err(self.invalid(
                        format!("{field}[{i}]"),
                        format!("unknown capability {name:?}"),
                    ));
                }
                full
            };
            if !out.contains(&full) {
                out.push(full);
            }
        }
        Ok(out)
    }

    fn seccomp(
        &mut self,
        field: &str,
        profile: Option<k8s::SeccompProfile>,
    ) -> Result<model::SeccompProfile, ManifestError> {
        let Some(k8s::SeccompProfile {
            localhost_profile,
            type_,
        }) = profile
        else {
            return Ok(model::SeccompProfile::Unset);
        };
        let profile = match type_.as_str() {
            "RuntimeDefault" => model::SeccompProfile::RuntimeDefault,
            "Unconfined" => model::SeccompProfile::Unconfined,
            "Localhost" => {
                let local_field = format!("{field}.localhostProfile");
                let Some(path) = localhost_profile.filter(|p| !p.is_empty()) else {
                    return Err(self.invalid(local_field, "required when type is Localhost"));
                };
                // The API server's rule: a relative path with no `..` in it.
                if path.starts_with('/') {
                    return Err(self.invalid(local_field, "must be a relative path"));
                }
                if path.split('/').any(|part| part == "..") {
                    return Err(self.invalid(local_field, "must not contain '..'"));
                }
                return Ok(model::SeccompProfile::Localhost {
                    profile: path,
                    field: local_field,
                });
            }
            "" => return Err(self.invalid(format!("{field}.type"), "required")),
            other => {
                return Err(self.invalid(
                    format!("{field}.type"),
                    not_one_of(other, &["RuntimeDefault", "Unconfined", "Localhost"]),
                ))
            }
        };
        if localhost_profile.is_some() {
            return Err(self.invalid(
                format!("{field}.localhostProfile"),
                "may only be set when type is Localhost",
            ));
        }
        Ok(profile)
    }

    /// Names as the API server checks them (dots or slashes between
    /// segments of `[a-z0-9_-]`); which ones this node allows is decided at
    /// launch.
    fn sysctls(
        &self,
        field: &str,
        list: Vec<k8s::Sysctl>,
    ) -> Result<Vec<model::Sysctl>, ManifestError> {
        let mut out: Vec<model::Sysctl> = Vec::new();
        for (i, k8s::Sysctl { name, value }) in list.into_iter().enumerate() {
            let valid = !name.is_empty()
                && name.len() <= 253
                && name.split(['.', '/']).all(|part| {
                    !part.is_empty()
                        && part.bytes().all(|b| {
                            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
                        })
                        && part.as_bytes()[0].is_ascii_alphanumeric()
                        && part.as_bytes()[part.len() - 1].is_ascii_alphanumeric()
                });
            if !valid {
                return Err(self.invalid(
                    format!("{field}[{i}].name"),
                    format!(
                        "{name:?}: not a sysctl name (lower-case segments separated by '.' or '/')"
                    ),
                ));
            }
            // The kubelet writes net/ipv4/conf/eth0.100/x as net.ipv4.conf.eth0/100.x;
            // peapod keeps the dotted form and refuses the ambiguous slash one.
            if name.contains('/') && name.contains('.') {
                return Err(self.invalid(
                    format!("{field}[{i}].name"),
                    format!("{name:?}: use either dots or slashes, not both"),
                ));
            }
            let name = name.replace('/', ".");
            if out.iter().any(|s| s.name == name) {
                return Err(
                    self.invalid(format!("{field}[{i}].name"), format!("{name:?}: duplicate"))
                );
            }
            out.push(model::Sysctl { name, value });
        }
        Ok(out)
    }

    fn app_armor(
        &mut self,
        field: &str,
        profile: Option<k8s::AppArmorProfile>,
    ) -> Result<(), ManifestError> {
        let Some(k8s::AppArmorProfile {
            localhost_profile,
            type_,
        }) = profile
        else {
            return Ok(());
        };
        match type_.as_str() {
            "RuntimeDefault" | "Localhost" if self.node.apparmor => {
                self.warn(field, "ignored: peapod applies no AppArmor profile")
            }
            // Without AppArmor on the host the runtime's default is no
            // profile (accepted); a named profile cannot be had (refused).
            "RuntimeDefault" => {}
            "Localhost" => return Err(self.unsupported(
                format!("{field}.type"),
                "unsupported: AppArmor is not enabled on this host (Localhost profiles need it)",
            )),
            // Exactly what peapod does.
            "Unconfined" => {}
            "" => return Err(self.invalid(format!("{field}.type"), "required")),
            other => {
                return Err(self.invalid(
                    format!("{field}.type"),
                    not_one_of(other, &["RuntimeDefault", "Unconfined", "Localhost"]),
                ))
            }
        }
        if localhost_profile.is_some() && type_ != "Localhost" {
            return Err(self.invalid(
                format!("{field}.localhostProfile"),
                "may only be set when type is Localhost",
            ));
        }
        Ok(())
    }

    /// A uid or gid as Kubernetes allows them.
    fn id(&self, field: &str, value: Option<i64>) -> Result<Option<u32>, ManifestError> {
        let Some(value) = value else {
            return Ok(None);
        };
        match u32::try_from(value) {
            Ok(id) if value <= i64::from(i32::MAX) => Ok(Some(id)),
            _ => Err(self.invalid(
                field,
                format!("must be between 0 and 2147483647, not {value}"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::pod::admission::tests::*;

    #[test]
    fn security_merges_container_over_pod() {
        let text = pod(
            "{securityContext: {runAsUser: 1, runAsGroup: 2, runAsNonRoot: false, supplementalGroups: [3]}, \
             containers: [{name: a, image: i}, \
             {name: b, image: i, securityContext: {runAsUser: 0, runAsGroup: 0, privileged: true, \
             capabilities: {add: [CAP_SYS_ADMIN, ALL], drop: [KILL]}}}, \
             {name: c, image: i, securityContext: {runAsUser: 7, runAsNonRoot: true}}]}",
        );
        let pod = admit_ok(&text).pod;
        let [a, b, c] = pod.containers.as_slice() else {
            panic!()
        };
        assert_eq!(
            (
                a.security.run_as_user,
                a.security.run_as_group,
                a.security.run_as_non_root
            ),
            (Some(1), Some(2), Some(false))
        );
        assert_eq!(a.security.supplemental_groups, [3]);
        assert_eq!(
            (
                b.security.run_as_user,
                b.security.run_as_group,
                b.security.privileged
            ),
            (Some(0), Some(0), true)
        );
        assert_eq!(b.security.caps_add, ["CAP_SYS_ADMIN", "ALL"]);
        assert_eq!(b.security.caps_drop, ["CAP_KILL"]);
        assert_eq!(b.security.supplemental_groups, [3]);
        assert_eq!(
            (c.security.run_as_user, c.security.run_as_non_root),
            (Some(7), Some(true))
        );
    }

    #[test]
    fn refusals_name_the_file_and_field() {
        let cases: Vec<(String, &str)> = vec![
            (pod("{securityContext: {runAsUser: -1}, containers: [{name: a, image: i}]}"), "web.yaml: spec.securityContext.runAsUser: must be between 0 and 2147483647"),
            (pod("{securityContext: {supplementalGroups: [1, 4294967296]}, containers: [{name: a, image: i}]}"), "web.yaml: spec.securityContext.supplementalGroups[1]: must be between 0 and 2147483647"),
            (pod("{securityContext: {supplementalGroupsPolicy: Loose}, containers: [{name: a, image: i}]}"), "web.yaml: spec.securityContext.supplementalGroupsPolicy: unsupported value"),
            (app(", securityContext: {runAsGroup: 2147483648}"), "web.yaml: spec.containers[0].securityContext.runAsGroup: must be between 0 and 2147483647"),
            (app(", securityContext: {capabilities: {add: [NET_FOO]}}"), "web.yaml: spec.containers[0].securityContext.capabilities.add[0]: unknown capability \"NET_FOO\""),
            (app(", securityContext: {capabilities: {drop: [KILL, CAP_]}}"), "web.yaml: spec.containers[0].securityContext.capabilities.drop[1]: unknown capability \"CAP_\""),
            (app(", securityContext: {seccompProfile: {type: Localhost, localhostProfile: ../p.json}}"), "web.yaml: spec.containers[0].securityContext.seccompProfile.localhostProfile: must not contain '..'"),
            (app(", securityContext: {seccompProfile: {type: Localhost, localhostProfile: /p.json}}"), "web.yaml: spec.containers[0].securityContext.seccompProfile.localhostProfile: must be a relative path"),
            (pod("{securityContext: {seccompProfile: {type: Localhost}}, containers: [{name: a, image: i}]}"), "web.yaml: spec.securityContext.seccompProfile.localhostProfile: required"),
            (pod("{securityContext: {fsGroupChangePolicy: Sometimes}, containers: [{name: a, image: i}]}"), "web.yaml: spec.securityContext.fsGroupChangePolicy: unsupported value"),
            (pod("{securityContext: {fsGroup: -2}, containers: [{name: a, image: i}]}"), "web.yaml: spec.securityContext.fsGroup: must be between"),
            (pod("{securityContext: {sysctls: [{name: Net.Core, value: \"1\"}]}, containers: [{name: a, image: i}]}"), "web.yaml: spec.securityContext.sysctls[0].name: \"Net.Core\": not a sysctl name"),
            (pod("{securityContext: {sysctls: [{name: net.a, value: \"1\"}, {name: net/a, value: \"2\"}]}, containers: [{name: a, image: i}]}"), "web.yaml: spec.securityContext.sysctls[1].name: \"net.a\": duplicate"),
            (app(", securityContext: {seccompProfile: {type: Strict}}"), "web.yaml: spec.containers[0].securityContext.seccompProfile.type: unsupported value \"Strict\""),
            (app(", securityContext: {seccompProfile: {type: Unconfined, localhostProfile: p}}"), "web.yaml: spec.containers[0].securityContext.seccompProfile.localhostProfile: may only be set"),
            (app(", securityContext: {appArmorProfile: {type: Other}}"), "web.yaml: spec.containers[0].securityContext.appArmorProfile.type: unsupported value"),
            (app(", securityContext: {privileged: true, allowPrivilegeEscalation: false}"), "web.yaml: spec.containers[0].securityContext.allowPrivilegeEscalation: cannot be false when privileged is true"),
            (app(", securityContext: {capabilities: {add: [SYS_ADMIN]}, allowPrivilegeEscalation: false}"), "web.yaml: spec.containers[0].securityContext.allowPrivilegeEscalation: cannot be false"),
            (app(", securityContext: {runAsUser: 0, runAsNonRoot: true}"), "web.yaml: spec.containers[0].securityContext.runAsUser: is 0 (root) but runAsNonRoot is true"),
            (pod("{securityContext: {runAsUser: 0}, containers: [{name: a, image: i, securityContext: {runAsNonRoot: true}}]}"), "web.yaml: spec.securityContext.runAsUser: is 0 (root)"),
            (pod("{securityContext: {runAsUser: 0, runAsNonRoot: true}, containers: [{name: a, image: i}]}"), "web.yaml: spec.securityContext.runAsUser: is 0 (root)"),
            (app(", securityContext: {procMount: Unmasked}"), "web.yaml: spec.containers[0].securityContext.procMount: `hostUsers` must be false to use `Unmasked`"),
        ];
        assert_refusals(&cases);
    }

    #[test]
    fn warnings_name_the_field() {
        let cases = [(
            app(", securityContext: {seLinuxOptions: {level: \"s0:c1\"}}"),
            "web.yaml: spec.containers[0].securityContext.seLinuxOptions: ignored",
        )];
        assert_warnings(&cases);
    }

    /// The kubelet on a host without AppArmor (the test node): RuntimeDefault
    /// means no profile, a Localhost profile is refused.
    #[test]
    fn app_armor_without_apparmor_on_the_host() {
        let text = app(", securityContext: {appArmorProfile: {type: RuntimeDefault}}");
        let admitted = admit_ok(&text);
        assert!(admitted.warnings.is_empty(), "{:?}", admitted.warnings);
        assert_refusals(&[(
            app(", securityContext: {appArmorProfile: {type: Localhost, localhostProfile: k8s-nginx}}"),
            "web.yaml: spec.containers[0].securityContext.appArmorProfile.type: unsupported: AppArmor is not enabled",
        )]);
    }

    /// Kubernetes: a container's seccompProfile wins over the pod's; the
    /// pod-wide fields are kept for the sandbox and volumes.
    #[test]
    fn seccomp_sysctls_and_groups_are_kept() {
        use crate::pod::model::{SeccompProfile, Sysctl};
        let text = pod(
            "{securityContext: {seccompProfile: {type: RuntimeDefault}, fsGroup: 2000, \
             fsGroupChangePolicy: OnRootMismatch, supplementalGroupsPolicy: Strict, \
             sysctls: [{name: net/ipv4/tcp_syncookies, value: \"1\"}]}, \
             containers: [{name: a, image: i}, \
             {name: b, image: i, securityContext: {seccompProfile: {type: Localhost, localhostProfile: p/deny.json}}}, \
             {name: c, image: i, securityContext: {seccompProfile: {type: Unconfined}}}]}",
        );
        let admitted = admit_ok(&text);
        assert!(admitted.warnings.is_empty(), "{:?}", admitted.warnings);
        let pod = admitted.pod;
        assert_eq!(pod.security.seccomp, SeccompProfile::RuntimeDefault);
        assert_eq!(
            pod.security.sysctls,
            [Sysctl {
                name: "net.ipv4.tcp_syncookies".into(),
                value: "1".into()
            }]
        );
        assert_eq!(pod.security.fs_group, Some(2000));
        assert!(pod.security.fs_group_on_root_mismatch && pod.security.supplemental_groups_strict);
        let profiles: Vec<_> = pod
            .containers
            .iter()
            .map(|c| c.security.seccomp.clone())
            .collect();
        assert_eq!(
            profiles,
            [
                SeccompProfile::RuntimeDefault,
                SeccompProfile::Localhost {
                    profile: "p/deny.json".into(),
                    field: "spec.containers[1].securityContext.seccompProfile.localhostProfile"
                        .into()
                },
                SeccompProfile::Unconfined,
            ]
        );
    }
}
