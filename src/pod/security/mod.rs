//! The pod's security profile as the kubelet applies it on a node: seccomp
//! profiles (`seccomp.rs`, the built-in default in `default-seccomp.json`),
//! sysctls (`sysctls.rs`), supplemental groups and fsGroup (`groups.rs`).
//!
//! Admission checks what the manifest alone decides; what depends on the
//! node (its seccomp folder, seccompDefault, allowedUnsafeSysctls) is
//! checked by [`check`] before a pod is launched, so a refused pod leaves
//! nothing behind, and applied when its specs are built.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::model::{Pod, SeccompProfile};

pub mod groups;
pub mod seccomp;
pub mod sysctls;
pub mod userns;

/// The node's security settings, recorded with each pod (settings.json).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SecuritySettings {
    /// Where `Localhost` seccomp profiles are (the kubelet's `<root-dir>/seccomp`).
    pub seccomp_profile_root: PathBuf,
    /// The kubelet's `seccompDefault`: RuntimeDefault for pods that set no profile.
    pub seccomp_default: bool,
    /// The kubelet's `allowedUnsafeSysctls`: names, or prefixes ending in `*`.
    pub allowed_unsafe_sysctls: Vec<String>,
}

impl Default for SecuritySettings {
    fn default() -> Self {
        Self {
            seccomp_profile_root: Self::seccomp_root_under(Path::new(crate::oci::DEFAULT_ROOT)),
            seccomp_default: false,
            allowed_unsafe_sysctls: Vec::new(),
        }
    }
}

/// The `security:` section of a config file: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SecurityConfigFile {
    pub seccomp_profile_root: Option<PathBuf>,
    pub seccomp_default: Option<bool>,
    pub allowed_unsafe_sysctls: Option<Vec<String>>,
}

impl SecuritySettings {
    /// The profile folder under a state root, as the kubelet's under its root.
    pub fn seccomp_root_under(root: &Path) -> PathBuf {
        root.join("seccomp")
    }

    /// Flags (`over`) over the file over defaults; errors name the key.
    pub fn resolve(file: SecurityConfigFile, over: SecurityConfigFile) -> Result<Self, String> {
        let defaults = Self::default();
        let seccomp_profile_root = over
            .seccomp_profile_root
            .or(file.seccomp_profile_root)
            .unwrap_or(defaults.seccomp_profile_root);
        if !seccomp_profile_root.is_absolute() {
            return Err(format!(
                "seccompProfileRoot: {}: must be an absolute path",
                seccomp_profile_root.display()
            ));
        }
        let allowed_unsafe_sysctls = over
            .allowed_unsafe_sysctls
            .or(file.allowed_unsafe_sysctls)
            .unwrap_or_default();
        for (i, pattern) in allowed_unsafe_sysctls.iter().enumerate() {
            sysctls::check_allowed_pattern(pattern)
                .map_err(|e| format!("allowedUnsafeSysctls[{i}]: {e}"))?;
        }
        Ok(Self {
            seccomp_profile_root,
            seccomp_default: over
                .seccomp_default
                .or(file.seccomp_default)
                .unwrap_or(false),
            allowed_unsafe_sysctls,
        })
    }
}

/// What the node refuses of an admitted pod, before anything of it is made:
/// sysctls it does not allow (the kubelet's SysctlForbidden) and Localhost
/// seccomp profiles that cannot be read. The message names the field.
pub fn check(pod: &Pod, settings: &SecuritySettings) -> Result<(), String> {
    sysctls::check(pod, &settings.allowed_unsafe_sysctls)?;
    let profiles = std::iter::once(&pod.security.seccomp).chain(
        pod.init_containers
            .iter()
            .chain(&pod.containers)
            .map(|c| &c.security.seccomp),
    );
    for profile in profiles {
        if let SeccompProfile::Localhost { profile, field } = profile {
            seccomp::load_localhost(&settings.seccomp_profile_root, profile)
                .map_err(|e| format!("{field}: {e}"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_resolve_flags_over_file_and_name_bad_keys() {
        let file = SecurityConfigFile {
            seccomp_profile_root: Some("/etc/peapod/seccomp".into()),
            seccomp_default: Some(true),
            allowed_unsafe_sysctls: Some(vec!["net.core.*".into()]),
        };
        let over = SecurityConfigFile {
            seccomp_default: Some(false),
            ..Default::default()
        };
        let s = SecuritySettings::resolve(file, over).unwrap();
        assert_eq!(s.seccomp_profile_root, Path::new("/etc/peapod/seccomp"));
        assert!(!s.seccomp_default);
        assert_eq!(s.allowed_unsafe_sysctls, ["net.core.*"]);
        let d = SecuritySettings::resolve(Default::default(), Default::default()).unwrap();
        assert_eq!(d, SecuritySettings::default());
        assert_eq!(d.seccomp_profile_root, Path::new("/run/peapod/seccomp"));
        let bad = |file: SecurityConfigFile| {
            SecuritySettings::resolve(file, Default::default()).unwrap_err()
        };
        let e = bad(SecurityConfigFile {
            seccomp_profile_root: Some("rel".into()),
            ..Default::default()
        });
        assert!(e.starts_with("seccompProfileRoot: rel"), "{e}");
        let e = bad(SecurityConfigFile {
            allowed_unsafe_sysctls: Some(vec!["kernel.ok*".into(), "vm.swappiness".into()]),
            ..Default::default()
        });
        assert!(e.starts_with("allowedUnsafeSysctls[0]"), "{e}");
    }
}
