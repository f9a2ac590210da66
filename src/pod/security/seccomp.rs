//! Which seccomp filter a container (or the sandbox) gets, as the kubelet
//! and containerd decide it: the container's profile over the pod's, the
//! node's seccompDefault for neither, no filter for a privileged container;
//! `RuntimeDefault` is built from `default-seccomp.json` for the container's
//! capabilities, `Localhost` is read from the node's profile folder. The
//! runtime (oci/seccomp.rs) compiles and loads `linux.seccomp`.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{
    Arch, Capabilities, Capability, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompArg,
    LinuxSyscall, Spec,
};
use serde::Deserialize;

use super::SecuritySettings;
use crate::pod::model::SeccompProfile;

/// The built-in profile, as data (see the file's own comment).
const DEFAULT_PROFILE: &str = include_str!("default-seccomp.json");

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct DefaultProfile {
    #[allow(dead_code)]
    comment: String,
    default_errno_ret: u32,
    /// By `std::env::consts::ARCH`: the architectures the filter covers.
    architectures: BTreeMap<String, Vec<Arch>>,
    groups: Vec<Group>,
}

/// Syscalls with one action, added when its conditions hold.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Group {
    #[serde(default)]
    #[allow(dead_code)]
    comment: String,
    names: Vec<String>,
    #[serde(default = "allow")]
    action: LinuxSeccompAction,
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<LinuxSeccompArg>,
    /// Only with this capability in the bounding set.
    if_cap: Option<String>,
    /// Only without this capability in the bounding set.
    unless_cap: Option<String>,
    /// Only on this architecture (`std::env::consts::ARCH`).
    arch: Option<String>,
    not_arch: Option<String>,
}

fn allow() -> LinuxSeccompAction {
    LinuxSeccompAction::ScmpActAllow
}

/// The effective choice for a container: its profile (already the pod's when
/// it sets none), then the node's default. Privileged containers run
/// unconfined, as containerd's CRI runs them.
pub fn effective(
    profile: &SeccompProfile,
    privileged: bool,
    node: &SecuritySettings,
) -> SeccompProfile {
    if privileged {
        return SeccompProfile::Unconfined;
    }
    match profile {
        SeccompProfile::Unset if node.seccomp_default => SeccompProfile::RuntimeDefault,
        SeccompProfile::Unset => SeccompProfile::Unconfined,
        other => other.clone(),
    }
}

/// Sets `linux.seccomp` of a built spec for `profile` (the sandbox's or a
/// container's, before `effective`); the capabilities are the spec's own.
pub fn apply(
    spec: &mut Spec,
    profile: &SeccompProfile,
    privileged: bool,
    node: &SecuritySettings,
) -> Result<(), String> {
    let seccomp = match effective(profile, privileged, node) {
        SeccompProfile::Unset | SeccompProfile::Unconfined => return Ok(()),
        SeccompProfile::RuntimeDefault => {
            let bounding = spec
                .process()
                .as_ref()
                .and_then(|p| p.capabilities().as_ref())
                .and_then(|c| c.bounding().clone())
                .unwrap_or_default();
            runtime_default(&bounding, std::env::consts::ARCH)
        }
        SeccompProfile::Localhost { profile, field } => {
            load_localhost(&node.seccomp_profile_root, &profile)
                .map_err(|e| format!("{field}: {e}"))?
        }
    };
    if let Some(linux) = spec.linux_mut() {
        linux.set_seccomp(Some(seccomp));
    }
    Ok(())
}

/// The RuntimeDefault profile for a container with `bounding` capabilities
/// on architecture `arch`.
pub fn runtime_default(bounding: &Capabilities, arch: &str) -> LinuxSeccomp {
    let profile: DefaultProfile =
        serde_json::from_str(DEFAULT_PROFILE).expect("default-seccomp.json is valid (tested)");
    let has = |cap: &str| {
        let name = cap.strip_prefix("CAP_").unwrap_or(cap);
        name.parse::<Capability>()
            .is_ok_and(|cap| bounding.contains(&cap))
    };
    let syscalls: Vec<LinuxSyscall> = profile
        .groups
        .into_iter()
        .filter(|g| g.if_cap.as_deref().is_none_or(has))
        .filter(|g| !g.unless_cap.as_deref().is_some_and(has))
        .filter(|g| g.arch.as_deref().is_none_or(|a| a == arch))
        .filter(|g| g.not_arch.as_deref() != Some(arch))
        .map(|g| {
            let mut rule = LinuxSyscall::default();
            rule.set_names(g.names);
            rule.set_action(g.action);
            rule.set_errno_ret(g.errno_ret);
            rule.set_args((!g.args.is_empty()).then_some(g.args));
            rule
        })
        .collect();
    let mut seccomp = LinuxSeccomp::default();
    seccomp.set_default_action(LinuxSeccompAction::ScmpActErrno);
    seccomp.set_default_errno_ret(Some(profile.default_errno_ret));
    seccomp.set_architectures(profile.architectures.get(arch).cloned());
    seccomp.set_syscalls(Some(syscalls));
    seccomp
}

/// Reads `<root>/<relative>` as an OCI `linux.seccomp` object (the format
/// containerd reads too), refusing a path that leaves `root`, by `..` or by
/// a symbolic link.
pub fn load_localhost(root: &Path, relative: &str) -> Result<LinuxSeccomp, String> {
    let rel = Path::new(relative);
    if rel.is_absolute() || rel.components().any(|c| !matches!(c, Component::Normal(_))) {
        return Err(format!(
            "{relative:?}: must be a relative path inside the node's profile folder {}",
            root.display()
        ));
    }
    let path: PathBuf = root.join(rel);
    let real_root = root
        .canonicalize()
        .map_err(|e| format!("the node's seccomp profile folder {}: {e}", root.display()))?;
    let real = path
        .canonicalize()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if !real.starts_with(&real_root) {
        return Err(format!(
            "{}: leaves the node's profile folder {} (it resolves to {})",
            path.display(),
            root.display(),
            real.display()
        ));
    }
    let text = std::fs::read_to_string(&real).map_err(|e| format!("{}: {e}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    // Docker's conditions would be dropped by the OCI format: refused, not ignored.
    for key in ["archMap", "includes", "excludes"] {
        let found = value.get(key).is_some()
            || (value["syscalls"].as_array().into_iter().flatten()).any(|s| s.get(key).is_some());
        if found {
            return Err(format!(
                "{}: {key:?} is Docker's profile format; write the OCI linux.seccomp form",
                path.display()
            ));
        }
    }
    serde_json::from_value(value)
        .map_err(|e| format!("{}: not a seccomp profile: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::spec::DEFAULT_CAPS;

    fn names(s: &LinuxSeccomp, action: LinuxSeccompAction) -> Vec<String> {
        let mut all: Vec<String> = (s.syscalls().iter().flatten())
            .filter(|r| r.action() == action)
            .flat_map(|r| r.names().clone())
            .collect();
        all.sort();
        all
    }

    fn caps(list: &[Capability]) -> Capabilities {
        list.iter().copied().collect()
    }

    /// containerd's and Docker's rules: what each capability adds, the
    /// clone flags without CAP_SYS_ADMIN, personality and socket values.
    #[test]
    fn runtime_default_follows_the_capabilities_and_architecture() {
        let plain = runtime_default(&caps(&DEFAULT_CAPS), "x86_64");
        assert_eq!(plain.default_action(), LinuxSeccompAction::ScmpActErrno);
        assert_eq!(plain.default_errno_ret(), Some(libc::EPERM as u32));
        assert_eq!(
            plain.architectures().as_deref(),
            Some(&[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32][..])
        );
        let allowed = names(&plain, LinuxSeccompAction::ScmpActAllow);
        for name in [
            "read",
            "execve",
            "arch_prctl",
            "chroot",
            "ptrace",
            "clone",
            "socket",
        ] {
            assert!(allowed.contains(&name.to_string()), "{name}");
        }
        for name in [
            "unshare",
            "mount",
            "keyctl",
            "add_key",
            "setns",
            "bpf",
            "reboot",
            "io_uring_setup",
            "open_by_handle_at",
            "kexec_load",
            "set_tls",
        ] {
            assert!(!allowed.contains(&name.to_string()), "{name}");
        }
        // clone only without namespace flags; clone3 answers ENOSYS.
        let clone = (plain.syscalls().iter().flatten())
            .find(|r| r.names() == &["clone"])
            .unwrap();
        let arg = &clone.args().as_ref().unwrap()[0];
        assert_eq!(
            (arg.index(), arg.value(), arg.value_two()),
            (0, 0x7E02_0000, Some(0))
        );
        let clone3 = (plain.syscalls().iter().flatten())
            .find(|r| r.names() == &["clone3"])
            .unwrap();
        assert_eq!(clone3.errno_ret(), Some(libc::ENOSYS as u32));
        let personas: Vec<u64> = (plain.syscalls().iter().flatten())
            .filter(|r| r.names() == &["personality"])
            .map(|r| r.args().as_ref().unwrap()[0].value())
            .collect();
        assert_eq!(personas, [0, 8, 0x20000, 0x20008, 0xffff_ffff]);
        let socket = (plain.syscalls().iter().flatten())
            .find(|r| r.names() == &["socket"])
            .unwrap();
        assert_eq!(socket.args().as_ref().unwrap()[0].value(), 40);

        let admin = runtime_default(
            &caps(&[Capability::SysAdmin, Capability::SysPtrace]),
            "x86_64",
        );
        let allowed = names(&admin, LinuxSeccompAction::ScmpActAllow);
        for name in [
            "unshare",
            "mount",
            "setns",
            "clone3",
            "kcmp",
            "process_vm_readv",
        ] {
            assert!(allowed.contains(&name.to_string()), "{name}");
        }
        assert!(!allowed.contains(&"chroot".to_string()));
        assert!(names(&admin, LinuxSeccompAction::ScmpActErrno).is_empty());
        assert!((admin.syscalls().iter().flatten())
            .all(|r| r.names() != &["clone"] || r.args().is_none()));

        let arm = runtime_default(&caps(&DEFAULT_CAPS), "aarch64");
        let allowed = names(&arm, LinuxSeccompAction::ScmpActAllow);
        assert!(
            allowed.contains(&"set_tls".to_string())
                && !allowed.contains(&"arch_prctl".to_string())
        );
        // Every name the profile gives compiles with the runtime's loader.
        crate::oci::seccomp::build(&plain).unwrap();
        crate::oci::seccomp::build(&admin).unwrap();
    }

    #[test]
    fn the_container_wins_then_the_node_default_and_privileged_is_unconfined() {
        let mut node = SecuritySettings::default();
        assert_eq!(
            effective(&SeccompProfile::Unset, false, &node),
            SeccompProfile::Unconfined
        );
        node.seccomp_default = true;
        assert_eq!(
            effective(&SeccompProfile::Unset, false, &node),
            SeccompProfile::RuntimeDefault
        );
        assert_eq!(
            effective(&SeccompProfile::Unconfined, false, &node),
            SeccompProfile::Unconfined
        );
        assert_eq!(
            effective(&SeccompProfile::RuntimeDefault, true, &node),
            SeccompProfile::Unconfined
        );
    }

    #[test]
    fn localhost_profiles_stay_in_the_folder() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("seccomp");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        let profile = r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#;
        std::fs::write(root.join("sub/deny.json"), profile).unwrap();
        std::fs::write(dir.path().join("outside.json"), profile).unwrap();
        std::os::unix::fs::symlink("../outside.json", root.join("link.json")).unwrap();
        std::fs::write(root.join("docker.json"), r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["x"],"action":"SCMP_ACT_ERRNO","includes":{"caps":["CAP_SYS_ADMIN"]}}]}"#).unwrap();
        std::fs::write(root.join("bad.json"), "{}").unwrap();
        let loaded = load_localhost(&root, "sub/deny.json").unwrap();
        assert_eq!(loaded.default_action(), LinuxSeccompAction::ScmpActAllow);
        for (path, want) in [
            ("../outside.json", "must be a relative path inside"),
            ("/etc/passwd", "must be a relative path inside"),
            ("link.json", "leaves the node's profile folder"),
            ("missing.json", "No such file"),
            ("docker.json", "Docker's profile format"),
            ("bad.json", "not a seccomp profile"),
        ] {
            let err = load_localhost(&root, path).unwrap_err();
            assert!(err.contains(want), "{path}: {err}");
        }
    }
}
