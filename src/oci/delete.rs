use std::path::Path;

use libcontainer::container::{Container, ContainerStatus};

use super::error::{Error, Result};
use super::{adjust, status_name, Runtime};
use crate::error::Context;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::sys::cgroup::{FreezerState, Layout};

/// Alive and not a zombie.
fn is_running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rfind(')').is_some_and(|i| !s[i..].starts_with(") Z")))
}

impl Runtime {
    /// `delete`: removes a stopped (or, like runc, a created) container; `force`
    /// kills a running one first. Deleting a missing container with `force` is not
    /// an error, so that cleanup can be repeated.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let mut container = match self.load(id) {
            Ok(c) => c,
            Err(Error::NotExist(_)) if force => return Ok(()),
            Err(e) => return Err(e),
        };
        let status = container.status();
        let kill_first = match status {
            ContainerStatus::Stopped => false,
            ContainerStatus::Created | ContainerStatus::Creating => true,
            ContainerStatus::Running | ContainerStatus::Paused if force => true,
            _ => {
                return Err(Error::Status {
                    id: id.to_string(),
                    status: status_name(status).into(),
                    action: "delete it without --force",
                })
            }
        };
        self.destroy(&mut container, kill_first)
    }

    /// Removes everything of a container: libcontainer's part (process, cgroup,
    /// state) and ours (the adjusted bundle copy).
    pub(super) fn destroy(&self, container: &mut Container, kill: bool) -> Result<()> {
        let id = container.id().to_string();
        let cgroup_path = container.spec().ok().map(|c| c.cgroup_path);
        if kill {
            if let Some(path) = &cgroup_path {
                empty_sub_cgroups(&id, path)?;
            }
        }
        let result = if !kill && self.remove_stopped(container) {
            Ok(())
        } else {
            let _ = container.refresh_status();
            let kill = kill || container.status() != ContainerStatus::Stopped;
            container
                .delete(kill)
                .context(|| format!("delete container {id}"))
                .map_err(Error::from)
        };
        // The parent peapod gave a bundle without a cgroupsPath goes with its
        // last container (a failed rmdir means another one is left).
        let default_parent = Path::new("/").join(adjust::DEFAULT_CGROUP_PARENT);
        if let Some(parent) = cgroup_path.as_deref().and_then(Path::parent) {
            if result.is_ok() && parent == default_parent {
                Layout::host().cgroup(parent).remove_if_empty();
            }
        }
        let adjusted = adjust::adjusted_dir(&self.root, &id);
        if adjusted.exists() {
            std::fs::remove_dir_all(&adjusted)
                .context(|| format!("remove {}", adjusted.display()))?;
            if let Some(parent) = adjusted.parent() {
                // Only succeeds once no other container has an adjusted copy.
                let _ = std::fs::remove_dir(parent);
            }
        }
        result
    }

    /// The common case of a stopped container without poststop hooks: remove its
    /// cgroup and state directly. libcontainer's delete builds a cgroup manager
    /// first, which costs more than the whole removal. False: not done, use the
    /// full delete.
    fn remove_stopped(&self, container: &Container) -> bool {
        if container.systemd()
            || container.state.intel_rdt_dir.is_some()
            || container
                .pid()
                .is_some_and(|p| self.init_is_ours(container) && is_running(p.as_raw()))
        {
            return false;
        }
        let Ok(config) = container.spec() else {
            return false;
        };
        if config
            .hooks
            .as_ref()
            .is_some_and(|h| h.poststop().is_some())
        {
            return false;
        }
        // Sub-cgroups the container made go too, leaves first.
        Layout::host().cgroup(&config.cgroup_path).remove().is_ok()
            && std::fs::remove_dir_all(&container.root).is_ok()
    }
}

/// Kills every process in the container's cgroup tree and removes the cgroups
/// the container made below its own (libcontainer removes only its own
/// folder, and fails on one with children). Nothing to do without children.
fn empty_sub_cgroups(id: &str, path: &Path) -> Result<()> {
    let cgroup = Layout::host().cgroup(path);
    let children: std::collections::BTreeSet<std::ffi::OsString> = cgroup
        .dirs()
        .iter()
        .filter(|d| !d.is_root())
        .filter_map(|d| std::fs::read_dir(&d.path).ok())
        .flat_map(|entries| entries.filter_map(|e| e.ok()))
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name())
        .collect();
    if children.is_empty() {
        return Ok(());
    }
    // A frozen process takes no signal: thaw first, as runc's kill does.
    if cgroup
        .freezer_state()
        .is_ok_and(|s| s != FreezerState::Thawed)
    {
        let _ = cgroup.thaw();
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pids = cgroup
            .pids()
            .map_err(|e| Error::Cgroup(format!("container {id}: {e}")))?;
        if pids.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            return Err(Error::Cgroup(format!(
                "container {id}: processes {pids:?} still alive after SIGKILL"
            )));
        }
        for pid in pids {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for child in children {
        Layout::host()
            .cgroup(path.join(&child))
            .remove()
            .map_err(|e| Error::Cgroup(format!("container {id}: {e}")))?;
    }
    Ok(())
}
