//! `spec`: the default config.json, the same starting point runc writes; and
//! the empty structures that specs built in code start from.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Linux, LinuxCapabilities, LinuxDeviceCgroup, LinuxResources, Process, Spec,
};

use super::error::{Error, Result};
use crate::error::Context;

/// The device cgroup rule allowing or denying every device (no type, major or
/// minor; access `rwm`).
pub fn every_device(allow: bool) -> LinuxDeviceCgroup {
    let mut rule = LinuxDeviceCgroup::default();
    rule.set_allow(allow);
    rule.set_access(Some("rwm".into()));
    rule
}

/// A spec that says nothing but its version. oci_spec's `Default` (from which
/// its builders also fill every field left unset) is a container of its own:
/// runc's mounts, `sh`, capabilities, namespaces, masked paths.
pub fn empty_spec(version: &str) -> Spec {
    let mut spec = Spec::default();
    spec.set_version(version.into());
    spec.set_root(None);
    spec.set_mounts(None);
    spec.set_process(None);
    spec.set_hostname(None);
    spec.set_annotations(None);
    spec.set_linux(None);
    spec
}

/// A process with nothing set (oci_spec's default runs `sh` with an env, three
/// capabilities, no_new_privs and an RLIMIT_NOFILE of 1024).
pub fn empty_process() -> Process {
    let mut process = Process::default();
    process.set_terminal(None);
    process.set_args(None);
    process.set_env(None);
    process.set_cwd(PathBuf::new());
    process.set_capabilities(None);
    process.set_rlimits(None);
    process.set_no_new_privileges(None);
    process
}

/// A `linux` section with nothing set (oci_spec's default has namespaces,
/// masked and read-only paths and an empty device list).
pub fn empty_linux() -> Linux {
    let mut linux = Linux::default();
    linux.set_resources(None);
    linux.set_namespaces(None);
    linux.set_masked_paths(None);
    linux.set_readonly_paths(None);
    linux
}

/// Capability sets with no set given (oci_spec's default gives all five sets
/// three capabilities).
pub fn empty_capabilities() -> LinuxCapabilities {
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(None);
    caps.set_effective(None);
    caps.set_inheritable(None);
    caps.set_permitted(None);
    caps.set_ambient(None);
    caps
}

/// runc's defaults: `sh` on a terminal, three capabilities, masked /proc paths.
pub fn default_spec(rootless: bool) -> Spec {
    let mut spec = if rootless {
        Spec::rootless(
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        )
    } else {
        Spec::default()
    };
    spec.set_hostname(Some("peapod".into()));
    if let Some(process) = spec.process_mut() {
        process.set_terminal(Some(true));
    }
    if !rootless {
        // runc's example denies every device; the runtime allows the defaults.
        let mut resources = LinuxResources::default();
        resources.set_devices(Some(vec![every_device(false)]));
        if let Some(linux) = spec.linux_mut() {
            linux.set_resources(Some(resources));
        }
    }
    spec
}

/// Writes `config.json` into `bundle`, refusing to overwrite one.
pub fn write_default_spec(bundle: &Path, rootless: bool) -> Result<()> {
    if !bundle.is_dir() {
        return Err(Error::NoBundle(bundle.to_path_buf()));
    }
    let path = bundle.join("config.json");
    if path.exists() {
        return Err(Error::Invalid(format!(
            "{}: file exists, remove it first",
            path.display()
        )));
    }
    let text = serde_json::to_string_pretty(&default_spec(rootless))
        .map_err(|e| Error::Invalid(format!("encode spec: {e}")))?;
    std::fs::write(&path, text + "\n").context(|| format!("write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_structures_serialize_to_nothing() {
        use serde_json::{json, to_value};
        assert_eq!(
            to_value(empty_spec("1.0.2")).unwrap(),
            json!({ "ociVersion": "1.0.2" })
        );
        assert_eq!(
            to_value(empty_process()).unwrap(),
            json!({ "user": { "uid": 0, "gid": 0 }, "cwd": "" })
        );
        assert_eq!(to_value(empty_linux()).unwrap(), json!({}));
        assert_eq!(to_value(empty_capabilities()).unwrap(), json!({}));
        assert_eq!(
            to_value(every_device(false)).unwrap(),
            json!({ "allow": false, "access": "rwm" })
        );
    }

    #[test]
    fn default_spec_round_trips_and_refuses_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        write_default_spec(dir.path(), false).unwrap();
        let spec: Spec =
            serde_json::from_slice(&std::fs::read(dir.path().join("config.json")).unwrap())
                .unwrap();
        let process = spec.process().as_ref().unwrap();
        assert_eq!(process.args().as_ref().unwrap(), &vec!["sh".to_string()]);
        assert!(spec.linux().as_ref().unwrap().masked_paths().is_some());
        assert_eq!(spec.hostname().as_deref(), Some("peapod"));
        assert_eq!(process.terminal(), Some(true));
        let devices = spec
            .linux()
            .as_ref()
            .unwrap()
            .resources()
            .as_ref()
            .unwrap()
            .devices();
        let first = &devices.as_ref().unwrap()[0];
        assert!(
            !first.allow() && first.typ().is_none() && first.access().as_deref() == Some("rwm")
        );
        let err = write_default_spec(dir.path(), false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("config.json: file exists"), "{err}");
    }
}
