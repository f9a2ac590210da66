use super::error::{Error, Result};
use super::{status_name, Runtime};
use crate::error::Context;

impl Runtime {
    /// `pause`: freezes every process of the container (cgroup freezer).
    pub fn pause(&self, id: &str) -> Result<()> {
        let mut container = self.load(id)?;
        if !container.can_pause() {
            return Err(Error::Status {
                id: id.to_string(),
                status: status_name(container.status()).into(),
                action: "pause it",
            });
        }
        container
            .pause()
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
        container
            .resume()
            .context(|| format!("resume container {id}"))?;
        Ok(())
    }
}
