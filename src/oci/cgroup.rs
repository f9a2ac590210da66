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
