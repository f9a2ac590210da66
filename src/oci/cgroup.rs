//! A container's cgroup: read through `sys::cgroup` (stats, processes, the
//! freezer, removal); written through libcgroups' manager (`update`), the code
//! that set its resources at create.

use libcgroups::common::{create_cgroup_manager, AnyCgroupManager, CgroupConfig};
use libcontainer::container::Container;

use super::error::{Error, Result};
use crate::sys::cgroup::{Cgroup, Layout};

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

/// The container's cgroup in every hierarchy mounted here: its recorded
/// cgroupsPath, or under systemd (a `slice:prefix:name`, not a path) the
/// cgroups its init is in.
pub fn cgroup_of(container: &Container) -> Result<Cgroup> {
    let id = container.id();
    let layout = Layout::host();
    if container.systemd() {
        let pid = container
            .pid()
            .ok_or_else(|| Error::Cgroup(format!("container {id} has no process")))?;
        return layout
            .cgroup_of_pid(pid.as_raw())
            .map_err(|e| Error::Cgroup(format!("container {id}: {e}")));
    }
    let config = container
        .spec()
        .map_err(|e| Error::Cgroup(format!("read config of container {id}: {e}")))?;
    Ok(layout.cgroup(&config.cgroup_path))
}
