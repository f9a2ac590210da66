use libcontainer::container::ContainerStatus;

use super::error::{Context, Error, Result};
use super::{status_name, Runtime};

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
        container
            .delete(kill_first)
            .context(|| format!("delete container {id}"))
    }
}
