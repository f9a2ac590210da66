use libcontainer::container::ContainerStatus;
use nix::sys::signal::Signal;

use super::error::{Error, Result};
use super::{status_name, Runtime};
use crate::error::Context;

impl Runtime {
    /// `kill`: signals the container's init, or with `all` every process in its cgroup.
    pub fn kill(&self, id: &str, signal: Signal, all: bool) -> Result<()> {
        let mut container = self.load(id)?;
        let status = container.status();
        if status == ContainerStatus::Stopped && !all {
            return Err(Error::Status {
                id: id.to_string(),
                status: status_name(status).into(),
                action: "signal it",
            });
        }
        container
            .kill(libcontainer::signal::Signal::from(signal), all)
            .context(|| format!("kill container {id}"))?;
        // libcontainer marks the container stopped after any signal; the next load
        // recomputes the status from the process, so restore what it really is.
        if status != ContainerStatus::Stopped {
            let mut fresh = self.load(id)?;
            if fresh.status() != status && fresh.status() != ContainerStatus::Stopped {
                fresh.set_status(status);
                fresh
                    .save()
                    .context(|| format!("save state of container {id}"))?;
            }
        }
        Ok(())
    }

    /// `kill ID 0`: whether the container's init (with `all`, every process in
    /// its cgroup) is alive; an error names what is not. Nothing is signalled.
    pub fn probe(&self, id: &str, all: bool) -> Result<()> {
        let container = self.load(id)?;
        let status = container.status();
        let not_running = || Error::Status {
            id: id.to_string(),
            status: status_name(status).into(),
            action: "signal it",
        };
        if status == ContainerStatus::Stopped {
            return Err(not_running());
        }
        let pids = if all {
            self.pids(id)?
        } else {
            container.pid().map(|p| p.as_raw()).into_iter().collect()
        };
        if pids.is_empty() {
            return Err(not_running());
        }
        for pid in pids {
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None)
                .context(|| format!("kill container {id}: process {pid}"))?;
        }
        Ok(())
    }
}
