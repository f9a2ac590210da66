use libcontainer::container::ContainerStatus;

use super::error::{Error, Result};
use super::{status_name, Runtime};
use crate::error::Context;

impl Runtime {
    /// `start`: runs the user's process in a created container.
    pub fn start(&self, id: &str) -> Result<()> {
        let mut container = self.load(id)?;
        if container.status() != ContainerStatus::Created {
            return Err(Error::Status {
                id: id.to_string(),
                status: status_name(container.status()).into(),
                action: "start it",
            });
        }
        container
            .start()
            .context(|| format!("start container {id}"))?;
        Ok(())
    }
}
