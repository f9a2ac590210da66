use std::path::{Path, PathBuf};

use libcgroups::common::{create_cgroup_manager, AnyCgroupManager, CgroupConfig};
use libcontainer::container::Container;

use super::error::{Error, Result};

/// The cgroup manager for a container's own cgroup, as libcontainer recorded it.
pub fn manager_of(container: &Container) -> Result<AnyCgroupManager> {
    let config = container
        .spec()
        .map_err(|e| Error::Cgroup(format!("read config of container {}: {e}", container.id())))?;
    create_cgroup_manager(CgroupConfig {
        cgroup_path: config.cgroup_path,
        systemd_cgroup: container.systemd(),
        container_name: container.id().to_string(),
    })
    .map_err(|e| Error::Cgroup(format!("container {}: {e}", container.id())))
}

/// Mount points of the cgroup hierarchies really mounted here (v1 controllers
/// and/or the v2 unified tree), from one read of mountinfo.
pub fn cgroup_mounts() -> Vec<PathBuf> {
    crate::sys::mountinfo::mounts()
        .into_iter()
        .filter(|m| matches!(m.fs_type.as_str(), "cgroup" | "cgroup2"))
        .map(|m| m.mount_point)
        .collect()
}

/// Removes an empty cgroup from every hierarchy. False if one could not be
/// removed (it still has processes, or an error).
pub fn remove_empty(cgroup_path: &Path) -> bool {
    let rel = cgroup_path.strip_prefix("/").unwrap_or(cgroup_path);
    cgroup_mounts().into_iter().all(|mount| {
        let dir = mount.join(rel);
        match std::fs::remove_dir(&dir) {
            Ok(()) => true,
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        }
    })
}

/// How many processes the OOM killer has killed in this cgroup: `oom_kill` of
/// memory.events (v2) or memory.oom_control (v1). 0 if neither is readable.
pub fn oom_kills(cgroup_path: &Path) -> u64 {
    let rel = cgroup_path.strip_prefix("/").unwrap_or(cgroup_path);
    cgroup_mounts()
        .into_iter()
        .flat_map(|mount| {
            let dir = mount.join(rel);
            [dir.join("memory.events"), dir.join("memory.oom_control")]
        })
        .filter_map(|file| std::fs::read_to_string(file).ok())
        .filter_map(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("oom_kill "))
                .and_then(|n| n.trim().parse::<u64>().ok())
        })
        .max()
        .unwrap_or(0)
}
