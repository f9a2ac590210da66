use libcontainer::container::ContainerStatus;

use super::cgroup::cgroup_of;
use super::error::{Error, Result};
use super::{status_name, Runtime};
use crate::error::Context;

impl Runtime {
    /// `pause`: freezes every process of the container (cgroup freezer), and
    /// waits until they are frozen.
    pub fn pause(&self, id: &str) -> Result<()> {
        let mut container = self.load(id)?;
        if !container.can_pause() {
            return Err(Error::Status {
                id: id.to_string(),
                status: status_name(container.status()).into(),
                action: "pause it",
            });
        }
        cgroup_of(&container)?
            .freeze()
            .map_err(|e| Error::Cgroup(format!("pause container {id}: {e}")))?;
        container
            .set_status(ContainerStatus::Paused)
            .save()
            .context(|| format!("pause container {id}"))?;
        Ok(())
    }

    /// `resume`: thaws a paused container.
    pub fn resume(&self, id: &str) -> Result<()> {
        let mut container = self.load(id)?;
        if !container.can_resume() {
            return Err(Error::Status {
                id: id.to_string(),
                status: status_name(container.status()).into(),
                action: "resume it",
            });
        }
        cgroup_of(&container)?
            .thaw()
            .map_err(|e| Error::Cgroup(format!("resume container {id}: {e}")))?;
        container
            .set_status(ContainerStatus::Running)
            .save()
            .context(|| format!("resume container {id}"))?;
        Ok(())
    }
}
