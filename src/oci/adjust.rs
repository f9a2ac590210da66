//! Bundles libcontainer cannot take as they are: a mount with runc's `tmpcopyup`
//! option (podman's `--tmpfs`, `--read-only`), no `linux.cgroupsPath` (where
//! libcontainer would invent a cgroup name of its own), device rules that do
//! not begin by denying every device (runc's starting point), a recursive
//! `rootfsPropagation` (`rshared`, as containerd's CRI sets it), or
//! `noNewPrivileges: false` with a seccomp profile. For those, peapod hands
//! libcontainer an adjusted copy of the config in its state folder (and does
//! the copy-up itself, see copy_up.rs); `state` still reports the user's
//! bundle, and so do the hooks (hooks.rs).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, Spec};

use super::bundle::{self, Bundle};
use super::error::Result;
use super::hooks;
use super::spec::{empty_linux, every_device};
use crate::error::Context;

/// The cgroup parent for containers whose bundle names none.
pub const DEFAULT_CGROUP_PARENT: &str = "peapod";

/// An adjusted bundle: where its config lives and which mount points need copy-up.
pub struct Adjusted {
    pub dir: PathBuf,
    pub copy_up: Vec<String>,
}

/// Where the adjusted copy for container `id` lives under the state folder.
pub fn adjusted_dir(root: &Path, id: &str) -> PathBuf {
    root.join(".bundles").join(id)
}

/// Returns the adjusted copy's folder, or None when the bundle can be used as is.
pub fn adjust(root: &Path, id: &str, bundle: &Bundle) -> Result<Option<Adjusted>> {
    let mut spec = bundle.spec.clone();
    let Some(copy_up) = edit(&mut spec, id) else {
        return Ok(None);
    };
    // The copy lives elsewhere: its root must not be relative to it.
    if let Some(root) = spec.root_mut() {
        let path = bundle.dir.join(root.path());
        root.set_path(path);
    }
    let exe = std::env::current_exe().context(|| "the runtime's own path".into())?;
    let start_hooks = hooks::wrap(&mut spec, &exe, &bundle.dir);
    let dir = adjusted_dir(root, id);
    fs::create_dir_all(&dir).context(|| format!("create {}", dir.display()))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
        .context(|| format!("chmod {}", dir.display()))?;
    bundle::write_config(&dir.join("config.json"), &spec)?;
    hooks::save_start_hooks(&dir, &start_hooks)?;
    Ok(Some(Adjusted { dir, copy_up }))
}

/// Makes `spec` one libcontainer runs as runc would. Returns the mount points
/// whose `tmpcopyup` it took out, or None when nothing needed a change.
fn edit(spec: &mut Spec, id: &str) -> Option<Vec<String>> {
    let mut changed = false;
    let linux = spec.linux_mut().get_or_insert_with(empty_linux);
    if linux
        .cgroups_path()
        .as_ref()
        .is_none_or(|p| p.as_os_str().is_empty())
    {
        linux.set_cgroups_path(Some(format!("/{DEFAULT_CGROUP_PARENT}/{id}").into()));
        changed = true;
    }
    if let Some(flat) = linux
        .rootfs_propagation()
        .as_deref()
        .and_then(flat_propagation)
    {
        // libcontainer knows only the flat names, and makes them recursive.
        linux.set_rootfs_propagation(Some(flat.into()));
        changed = true;
    }
    let resources = linux.resources_mut().get_or_insert_with(Default::default);
    if !denies_all_devices_first(resources.devices().as_deref()) {
        // runc's devices cgroup starts from deny-all whatever the spec says;
        // libcontainer's v1 controller only adds the spec's and the default
        // rules to what the cgroup allows (everything, when new).
        resources
            .devices_mut()
            .get_or_insert_with(Vec::new)
            .insert(0, every_device(false));
        changed = true;
    }
    let has_seccomp = linux.seccomp().is_some();
    if let Some(process) = spec.process_mut() {
        if process.no_new_privileges() == Some(false) && has_seccomp {
            // libcontainer loads the filter before the capability drop only when
            // the field is absent; an explicit false would make it load the filter
            // after, without CAP_SYS_ADMIN or no_new_privs, which fails.
            process.set_no_new_privileges(None);
            changed = true;
        }
    }
    // The hooks of an adjusted copy are rewritten (see hooks.rs).
    changed |= hooks::needs_adjusting(spec);
    let mut copy_up = vec![];
    for m in spec.mounts_mut().iter_mut().flatten() {
        let destination = m.destination().to_string_lossy().into_owned();
        if let Some(options) = m.options_mut() {
            let before = options.len();
            options.retain(|o| o != "tmpcopyup");
            if options.len() != before {
                copy_up.push(destination);
                changed = true;
            }
        }
    }
    changed.then_some(copy_up)
}

/// runc's recursive `rootfsPropagation` values as libcontainer names them
/// (it applies every one recursively).
fn flat_propagation(value: &str) -> Option<&'static str> {
    Some(match value {
        "rshared" => "shared",
        "rslave" => "slave",
        "rprivate" => "private",
        "runbindable" => "unbindable",
        _ => return None,
    })
}

/// The first device rule denies every device (`{"allow": false, "access":
/// "rwm"}`, of type `a` or none).
fn denies_all_devices_first(devices: Option<&[LinuxDeviceCgroup]>) -> bool {
    let Some(first) = devices.and_then(|d| d.first()) else {
        return false;
    };
    let access = first.access().as_deref().unwrap_or("rwm");
    !first.allow()
        && first.typ().is_none_or(|t| t == LinuxDeviceType::A)
        && first.major().is_none_or(|m| m < 0)
        && first.minor().is_none_or(|m| m < 0)
        && ['r', 'w', 'm'].iter().all(|c| access.contains(*c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devices(json: &str) -> Vec<LinuxDeviceCgroup> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn only_a_leading_rule_denying_every_device_counts() {
        let denies = |json: &str| denies_all_devices_first(Some(&devices(json)));
        assert!(denies(r#"[{ "allow": false, "access": "rwm" }]"#));
        assert!(denies(
            r#"[{ "allow": false, "type": "a", "major": -1, "access": "rwm" }, { "allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm" }]"#
        ));
        assert!(!denies_all_devices_first(None));
        assert!(!denies("[]"));
        assert!(!denies(r#"[{ "allow": true, "access": "rwm" }]"#));
        assert!(!denies(r#"[{ "allow": false, "access": "rw" }]"#));
        assert!(!denies(
            r#"[{ "allow": false, "type": "b", "access": "rwm" }]"#
        ));
        assert!(!denies(
            r#"[{ "allow": false, "type": "c", "major": 7, "access": "rwm" }]"#
        ));
        assert!(!denies(
            r#"[{ "allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm" }, { "allow": false, "access": "rwm" }]"#
        ));
    }

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    const RUNNABLE: &str = r#"{"ociVersion": "1.0.2",
        "process": {"cwd": "/", "user": {"uid": 0, "gid": 0}, "args": ["true"]},
        "mounts": [{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]}],
        "linux": {"cgroupsPath": "/x/c", "resources": {"devices": [{"allow": false, "access": "rwm"}]}}}"#;

    #[test]
    fn a_spec_runc_would_run_as_is_is_left_alone() {
        let mut s = spec(RUNNABLE);
        assert_eq!(edit(&mut s, "c"), None);
        assert_eq!(s, spec(RUNNABLE));
    }

    #[test]
    fn cgroup_device_rule_tmpcopyup_and_no_new_privs_are_adjusted() {
        let mut s = spec(
            r#"{"ociVersion": "1.0.2",
            "process": {"cwd": "/", "user": {"uid": 0, "gid": 0}, "args": ["true"], "noNewPrivileges": false},
            "mounts": [{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "tmpcopyup"]},
                       {"destination": "/run", "type": "tmpfs", "source": "tmpfs"}],
            "linux": {"resources": {"devices": [{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]},
                      "seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}}}"#,
        );
        assert_eq!(edit(&mut s, "web"), Some(vec!["/tmp".to_string()]));
        let linux = s.linux().as_ref().unwrap();
        assert_eq!(
            linux.cgroups_path().as_deref(),
            Some(Path::new("/peapod/web"))
        );
        let rules = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .clone()
            .unwrap();
        assert_eq!(rules.len(), 2);
        assert!(denies_all_devices_first(Some(&rules)));
        assert!(rules[1].allow());
        let mounts = s.mounts().as_ref().unwrap();
        assert_eq!(
            mounts[0].options().as_deref(),
            Some(&["nosuid".to_string()][..])
        );
        assert_eq!(mounts[1].options(), &None);
        assert_eq!(s.process().as_ref().unwrap().no_new_privileges(), None);

        // Without a seccomp profile an explicit false stays; a spec without
        // linux.resources gets the deny-all rule alone.
        let mut s = spec(RUNNABLE);
        s.process_mut()
            .as_mut()
            .unwrap()
            .set_no_new_privileges(Some(false));
        s.linux_mut().as_mut().unwrap().set_resources(None);
        assert_eq!(edit(&mut s, "c"), Some(vec![]));
        assert_eq!(
            s.process().as_ref().unwrap().no_new_privileges(),
            Some(false)
        );
        let resources = s.linux().as_ref().unwrap().resources().clone().unwrap();
        assert_eq!(resources.devices().as_ref().map(Vec::len), Some(1));
        assert!(denies_all_devices_first(resources.devices().as_deref()));
    }

    #[test]
    fn recursive_rootfs_propagation_takes_libcontainers_name() {
        for (given, flat) in [
            ("rshared", "shared"),
            ("rslave", "slave"),
            ("rprivate", "private"),
        ] {
            let mut s = spec(RUNNABLE);
            s.linux_mut()
                .as_mut()
                .unwrap()
                .set_rootfs_propagation(Some(given.into()));
            assert_eq!(edit(&mut s, "c"), Some(vec![]));
            let linux = s.linux().as_ref().unwrap();
            assert_eq!(linux.rootfs_propagation().as_deref(), Some(flat));
        }
        let mut s = spec(RUNNABLE);
        s.linux_mut()
            .as_mut()
            .unwrap()
            .set_rootfs_propagation(Some("slave".into()));
        assert_eq!(edit(&mut s, "c"), None);
    }
}
