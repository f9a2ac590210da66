//! `spec`: the default config.json, the same starting point runc writes.

use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxResources, Spec};

use super::error::{Error, Result};
use crate::error::Context;

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
        let deny_all = LinuxDeviceCgroupBuilder::default()
            .allow(false)
            .access("rwm")
            .build()
            .expect("a constant device rule");
        let mut resources = LinuxResources::default();
        resources.set_devices(Some(vec![deny_all]));
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
