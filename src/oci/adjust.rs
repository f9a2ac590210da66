//! Bundles libcontainer cannot take as they are: a mount with runc's `tmpcopyup`
//! option (podman's `--tmpfs`, `--read-only`), no `linux.cgroupsPath` (where
//! libcontainer would invent a cgroup name of its own), device rules that do
//! not begin by denying every device (runc's starting point), a recursive
//! `rootfsPropagation` (`rshared`, as containerd's CRI sets it), hooks
//! (hooks.rs), or a seccomp profile (peapod loads the filter, seccomp.rs). For those, peapod hands
//! libcontainer an adjusted copy of the config in its state folder (and does
//! the copy-up itself, see copy_up.rs); `state` still reports the user's
//! bundle, and so do the hooks (hooks.rs).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capabilities, Capability, LinuxCapabilities, LinuxDeviceCgroup, LinuxDeviceType, LinuxSeccomp,
    Process, Spec,
};

use super::bundle::{self, Bundle};
use super::error::Result;
use super::hooks;
use super::spec::{empty_linux, every_device};
use crate::error::Context;

/// The cgroup parent for containers whose bundle names none.
pub const DEFAULT_CGROUP_PARENT: &str = "peapod";

/// An adjusted bundle: where its config lives, which mount points need
/// copy-up, and the seccomp profile peapod loads itself (see seccomp.rs) with
/// the capabilities added for loading it, to be dropped once it is loaded.
pub struct Adjusted {
    pub dir: PathBuf,
    pub copy_up: Vec<String>,
    pub seccomp: Option<LinuxSeccomp>,
    pub added_caps: Vec<(caps::Capability, caps::CapSet)>,
}

/// What `edit` changed that the caller acts on.
#[derive(Debug, Default)]
struct Edits {
    copy_up: Vec<String>,
    seccomp: Option<LinuxSeccomp>,
    added_caps: Vec<(caps::Capability, caps::CapSet)>,
}

/// The container's seccomp profile, kept beside the adjusted copy.
const SECCOMP_FILE: &str = "seccomp.json";
/// The user's process, kept where the copy's has capabilities added.
const PROCESS_FILE: &str = "process.json";

/// Where the adjusted copy for container `id` lives under the state folder.
pub fn adjusted_dir(root: &Path, id: &str) -> PathBuf {
    root.join(".bundles").join(id)
}

/// Returns the adjusted copy's folder, or None when the bundle can be used as is.
pub fn adjust(root: &Path, id: &str, bundle: &Bundle) -> Result<Option<Adjusted>> {
    let mut spec = bundle.spec.clone();
    let Some(edits) = edit(&mut spec, id) else {
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
    if let Some(seccomp) = &edits.seccomp {
        bundle::write_json(&dir.join(SECCOMP_FILE), seccomp)?;
    }
    if let (false, Some(process)) = (edits.added_caps.is_empty(), bundle.spec.process()) {
        bundle::write_json(&dir.join(PROCESS_FILE), process)?;
    }
    Ok(Some(Adjusted {
        dir,
        copy_up: edits.copy_up,
        seccomp: edits.seccomp,
        added_caps: edits.added_caps,
    }))
}

/// The spec as the user gave it, for `exec` and startContainer hooks: the
/// adjusted copy `spec` with what libcontainer was not given (the seccomp
/// profile) or was given changed (the capabilities added for loading it) put
/// back from beside it.
pub fn user_spec(root: &Path, id: &str, mut spec: Spec) -> Result<Spec> {
    let dir = adjusted_dir(root, id);
    if let Some(seccomp) = read_kept::<LinuxSeccomp>(&dir.join(SECCOMP_FILE))? {
        spec.linux_mut()
            .get_or_insert_with(empty_linux)
            .set_seccomp(Some(seccomp));
    }
    if let Some(process) = read_kept::<Process>(&dir.join(PROCESS_FILE))? {
        spec.set_process(Some(process));
    }
    Ok(spec)
}

fn read_kept<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    match fs::read(path) {
        Ok(text) => {
            serde_json::from_slice(&text)
                .map(Some)
                .map_err(|e| crate::oci::Error::Config {
                    path: path.to_path_buf(),
                    reason: format!("invalid: {e}"),
                })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).context(|| format!("read {}", path.display()))?,
    }
}

/// Makes `spec` one libcontainer runs as runc would. Returns what the caller
/// does itself (copy-up, the seccomp filter), or None when nothing needed a
/// change.
fn edit(spec: &mut Spec, id: &str) -> Option<Edits> {
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
    let mut edits = Edits {
        seccomp: linux.seccomp_mut().take(),
        ..Edits::default()
    };
    if edits.seccomp.is_some() {
        // peapod loads the filter itself (seccomp.rs), right before the user's
        // process, as runc does. Without no_new_privs that takes
        // CAP_SYS_ADMIN (and CAP_SETPCAP to take it out of the bounding set
        // again), which libcontainer would have dropped by then: they are
        // added here and dropped by peapod's executor once the filter is in.
        changed = true;
        if spec.process().as_ref().and_then(|p| p.no_new_privileges()) != Some(true) {
            edits.added_caps = add_caps(spec, &[Capability::SysAdmin, Capability::Setpcap]);
        }
    }
    // The hooks of an adjusted copy are rewritten (see hooks.rs).
    changed |= hooks::needs_adjusting(spec);
    for m in spec.mounts_mut().iter_mut().flatten() {
        let destination = m.destination().to_string_lossy().into_owned();
        if let Some(options) = m.options_mut() {
            let before = options.len();
            options.retain(|o| o != "tmpcopyup");
            if options.len() != before {
                edits.copy_up.push(destination);
                changed = true;
            }
        }
    }
    changed.then_some(edits)
}

/// Adds `wanted` to the process's bounding, effective and permitted sets
/// where the spec gives them; returns each (capability, set) that was not there.
fn add_caps(spec: &mut Spec, wanted: &[Capability]) -> Vec<(caps::Capability, caps::CapSet)> {
    use libcontainer::capabilities::CapabilityExt;
    let Some(process) = spec.process_mut() else {
        return vec![];
    };
    // No capabilities given: libcontainer changes none, the process keeps root's.
    let Some(mut sets) = process.capabilities().clone() else {
        return vec![];
    };
    let mut added = vec![];
    for (set, get, put) in [
        (
            caps::CapSet::Bounding,
            LinuxCapabilities::bounding as fn(&LinuxCapabilities) -> &Option<Capabilities>,
            LinuxCapabilities::set_bounding
                as fn(&mut LinuxCapabilities, Option<Capabilities>) -> &mut LinuxCapabilities,
        ),
        (
            caps::CapSet::Effective,
            LinuxCapabilities::effective,
            LinuxCapabilities::set_effective,
        ),
        (
            caps::CapSet::Permitted,
            LinuxCapabilities::permitted,
            LinuxCapabilities::set_permitted,
        ),
    ] {
        // A set not given is left as it is (full, for root): nothing to add.
        let Some(mut have) = get(&sets).clone() else {
            continue;
        };
        for cap in wanted {
            if have.insert(*cap) {
                added.push((cap.to_cap(), set));
            }
        }
        put(&mut sets, Some(have));
    }
    process.set_capabilities(Some(sets));
    added
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

    fn copy_up(edits: Option<Edits>) -> Option<Vec<String>> {
        edits.map(|e| e.copy_up)
    }

    #[test]
    fn a_spec_runc_would_run_as_is_is_left_alone() {
        let mut s = spec(RUNNABLE);
        assert!(edit(&mut s, "c").is_none());
        assert_eq!(s, spec(RUNNABLE));
    }

    #[test]
    fn cgroup_device_rule_tmpcopyup_and_seccomp_are_adjusted() {
        let mut s = spec(
            r#"{"ociVersion": "1.0.2",
            "process": {"cwd": "/", "user": {"uid": 0, "gid": 0}, "args": ["true"], "noNewPrivileges": false,
                        "capabilities": {"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]}},
            "mounts": [{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "tmpcopyup"]},
                       {"destination": "/run", "type": "tmpfs", "source": "tmpfs"}],
            "linux": {"resources": {"devices": [{"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]},
                      "seccomp": {"defaultAction": "SCMP_ACT_ALLOW"}}}"#,
        );
        let edits = edit(&mut s, "web").unwrap();
        assert_eq!(edits.copy_up, vec!["/tmp".to_string()]);
        // The profile is peapod's to load: out of libcontainer's copy, with
        // the capabilities to load it without no_new_privs added.
        assert!(edits.seccomp.is_some());
        let added: Vec<String> = edits
            .added_caps
            .iter()
            .map(|(c, set)| format!("{c}/{set:?}"))
            .collect();
        assert_eq!(
            added,
            [
                "CAP_SYS_ADMIN/Bounding",
                "CAP_SETPCAP/Bounding",
                "CAP_SYS_ADMIN/Effective",
                "CAP_SETPCAP/Effective",
                "CAP_SYS_ADMIN/Permitted",
                "CAP_SETPCAP/Permitted"
            ]
        );
        let bounding = s
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .clone()
            .unwrap();
        assert!(bounding
            .bounding()
            .as_ref()
            .unwrap()
            .contains(&Capability::SysAdmin));
        let linux = s.linux().as_ref().unwrap();
        assert!(linux.seccomp().is_none());
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
        assert_eq!(
            s.process().as_ref().unwrap().no_new_privileges(),
            Some(false)
        );

        // With no_new_privs, nothing is added.
        let mut s = spec(RUNNABLE);
        s.process_mut()
            .as_mut()
            .unwrap()
            .set_no_new_privileges(Some(true));
        s.linux_mut().as_mut().unwrap().set_seccomp(Some(
            serde_json::from_str(r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#).unwrap(),
        ));
        let edits = edit(&mut s, "c").unwrap();
        assert!(edits.seccomp.is_some() && edits.added_caps.is_empty());
        // Without capability sets in the spec (root keeps all), none are added.
        s.process_mut()
            .as_mut()
            .unwrap()
            .set_no_new_privileges(Some(false));
        s.linux_mut().as_mut().unwrap().set_seccomp(Some(
            serde_json::from_str(r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#).unwrap(),
        ));
        let edits = edit(&mut s, "c").unwrap();
        assert!(edits.added_caps.is_empty());
        assert!(s.process().as_ref().unwrap().capabilities().is_none());

        // A spec without linux.resources gets the deny-all rule alone.
        let mut s = spec(RUNNABLE);
        s.process_mut()
            .as_mut()
            .unwrap()
            .set_no_new_privileges(Some(false));
        s.linux_mut().as_mut().unwrap().set_resources(None);
        assert_eq!(copy_up(edit(&mut s, "c")), Some(vec![]));
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
            assert_eq!(copy_up(edit(&mut s, "c")), Some(vec![]));
            let linux = s.linux().as_ref().unwrap();
            assert_eq!(linux.rootfs_propagation().as_deref(), Some(flat));
        }
        let mut s = spec(RUNNABLE);
        s.linux_mut()
            .as_mut()
            .unwrap()
            .set_rootfs_propagation(Some("slave".into()));
        assert!(edit(&mut s, "c").is_none());
    }

    #[test]
    fn exec_gets_the_users_spec_back() {
        let root = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut user = spec(RUNNABLE);
        user.process_mut().as_mut().unwrap().set_capabilities(Some(
            serde_json::from_str(r#"{"bounding": ["CAP_KILL"], "permitted": ["CAP_KILL"]}"#)
                .unwrap(),
        ));
        user.set_root(Some(serde_json::from_str(r#"{"path": "rootfs"}"#).unwrap()));
        user.linux_mut().as_mut().unwrap().set_seccomp(Some(
            serde_json::from_str(r#"{"defaultAction": "SCMP_ACT_ALLOW"}"#).unwrap(),
        ));
        let bundle = Bundle {
            dir: dir.path().to_path_buf(),
            spec: user.clone(),
        };
        let adjusted = adjust(root.path(), "c", &bundle).unwrap().unwrap();
        assert!(!adjusted.added_caps.is_empty());
        let copy = Spec::load(adjusted.dir.join("config.json")).unwrap();
        assert!(copy.linux().as_ref().unwrap().seccomp().is_none());
        assert_ne!(copy.process(), user.process());
        let back = user_spec(root.path(), "c", copy).unwrap();
        assert_eq!(back.process(), user.process());
        assert_eq!(
            back.linux().as_ref().unwrap().seccomp(),
            user.linux().as_ref().unwrap().seccomp()
        );
        // A container without kept parts keeps its config as it is.
        let plain = spec(RUNNABLE);
        assert_eq!(
            user_spec(root.path(), "other", plain.clone()).unwrap(),
            plain
        );
    }
}
