//! Bundles libcontainer cannot take as they are: a mount with runc's `tmpcopyup`
//! option (podman's `--tmpfs`, `--read-only`), no `linux.cgroupsPath` (where
//! libcontainer would invent a cgroup name of its own), or device rules that
//! do not begin by denying every device (runc's starting point). For those, peapod hands
//! libcontainer an adjusted copy of config.json in its state folder and does the
//! copy-up itself; `state` still reports the user's bundle.

use std::fs;
use std::os::unix::fs::{lchown, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::bundle::Bundle;
use super::error::{Context, Error, Result};

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
    let mut config: Value = serde_json::from_slice(
        &fs::read(bundle.config_path())
            .context(|| format!("read {}", bundle.config_path().display()))?,
    )
    .map_err(|e| Error::Config {
        path: bundle.config_path(),
        reason: format!("invalid config: {e}"),
    })?;
    let mut changed = false;
    if config["linux"]["cgroupsPath"]
        .as_str()
        .is_none_or(str::is_empty)
    {
        config["linux"]["cgroupsPath"] = json!(format!("/{DEFAULT_CGROUP_PARENT}/{id}"));
        changed = true;
    }
    if !denies_all_devices_first(&config) {
        // runc's devices cgroup starts from deny-all whatever the spec says;
        // libcontainer's v1 controller only adds the spec's and the default
        // rules to what the cgroup allows (everything, when new).
        let rule = json!({ "allow": false, "access": "rwm" });
        if !config["linux"]["resources"].is_object() {
            config["linux"]["resources"] = json!({});
        }
        let resources = &mut config["linux"]["resources"];
        let mut devices = resources["devices"].as_array().cloned().unwrap_or_default();
        devices.insert(0, rule);
        resources["devices"] = json!(devices);
        changed = true;
    }
    let mut copy_up = vec![];
    if let Some(mounts) = config["mounts"].as_array_mut() {
        for m in mounts {
            if let Some(options) = m["options"].as_array_mut() {
                let before = options.len();
                options.retain(|o| o != "tmpcopyup");
                if options.len() != before {
                    copy_up.push(m["destination"].as_str().unwrap_or_default().to_string());
                    changed = true;
                }
            }
        }
    }
    if !changed {
        return Ok(None);
    }
    let root_path = bundle.dir.join(
        bundle
            .spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .unwrap_or_default(),
    );
    config["root"]["path"] = json!(root_path);
    let dir = adjusted_dir(root, id);
    fs::create_dir_all(&dir).context(|| format!("create {}", dir.display()))?;
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
        .context(|| format!("chmod {}", dir.display()))?;
    let path = dir.join("config.json");
    fs::write(&path, config.to_string()).context(|| format!("write {}", path.display()))?;
    Ok(Some(Adjusted { dir, copy_up }))
}

/// The spec's first device rule denies every device (`{"allow": false,
/// "access": "rwm"}`, of type `a` or none).
fn denies_all_devices_first(config: &Value) -> bool {
    let Some(first) = config["linux"]["resources"]["devices"]
        .as_array()
        .and_then(|d| d.first())
    else {
        return false;
    };
    let access = first["access"].as_str().unwrap_or("rwm");
    first["allow"] == json!(false)
        && first["type"].as_str().is_none_or(|t| t == "a")
        && first["major"].as_i64().is_none_or(|m| m < 0)
        && first["minor"].as_i64().is_none_or(|m| m < 0)
        && ['r', 'w', 'm'].iter().all(|c| access.contains(*c))
}

/// runc's tmpcopyup: the image's content at each mount point is copied into the
/// fresh tmpfs. The container's view is reached through /proc/<pid>/root, the
/// image's original content through the rootfs on the host.
pub fn copy_up(rootfs: &Path, pid: i32, destinations: &[String]) -> Result<()> {
    for dest in destinations {
        let rel = dest.trim_start_matches('/');
        let from = rootfs.join(rel);
        if !from.is_dir() {
            continue;
        }
        let to = PathBuf::from(format!("/proc/{pid}/root")).join(rel);
        copy_tree(&from, &to).context(|| format!("tmpcopyup {dest}"))?;
    }
    Ok(())
}

fn copy_tree(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in fs::read_dir(from)? {
        let entry = entry?;
        let src = entry.path();
        let dst = to.join(entry.file_name());
        let meta = fs::symlink_metadata(&src)?;
        let kind = meta.file_type();
        if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src)?, &dst)?;
        } else if kind.is_dir() {
            fs::create_dir(&dst)?;
            copy_tree(&src, &dst)?;
        } else if kind.is_file() {
            fs::copy(&src, &dst)?;
        } else {
            // Device nodes, fifos and sockets are not copied, as with runc.
            continue;
        }
        lchown(&dst, Some(meta.uid()), Some(meta.gid()))?;
        if !kind.is_symlink() {
            fs::set_permissions(&dst, fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        }
    }
    // The mount point itself takes the original directory's mode and owner.
    let meta = fs::metadata(from)?;
    lchown(to, Some(meta.uid()), Some(meta.gid()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777))
}

#[cfg(test)]
mod device_rule_tests {
    use super::*;

    #[test]
    fn only_a_leading_rule_denying_every_device_counts() {
        let with = |devices: Value| json!({ "linux": { "resources": { "devices": devices } } });
        assert!(denies_all_devices_first(&with(
            json!([{ "allow": false, "access": "rwm" }])
        )));
        assert!(denies_all_devices_first(&with(
            json!([{ "allow": false, "type": "a", "major": -1, "access": "rwm" }, { "allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm" }])
        )));
        assert!(!denies_all_devices_first(&json!({ "linux": {} })));
        assert!(!denies_all_devices_first(&with(json!([]))));
        assert!(!denies_all_devices_first(&with(
            json!([{ "allow": true, "access": "rwm" }])
        )));
        assert!(!denies_all_devices_first(&with(
            json!([{ "allow": false, "access": "rw" }])
        )));
        assert!(!denies_all_devices_first(&with(
            json!([{ "allow": false, "type": "b", "access": "rwm" }])
        )));
        assert!(!denies_all_devices_first(&with(
            json!([{ "allow": false, "type": "c", "major": 7, "access": "rwm" }])
        )));
        assert!(!denies_all_devices_first(&with(
            json!([{ "allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm" }, { "allow": false, "access": "rwm" }])
        )));
    }
}
