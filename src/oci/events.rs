//! `events`: container statistics from its cgroup, as runc's `{"type":"stats",...}` lines.

use std::io::Write;
use std::time::Duration;

use libcgroups::common::CgroupManager;
use libcontainer::container::ContainerStatus;

use super::cgroup::manager_of;
use super::error::{Error, Result};
use super::{status_name, Runtime};
use crate::error::Context;

impl Runtime {
    /// One stats event for a running container.
    pub fn stats_event(&self, id: &str) -> Result<serde_json::Value> {
        let container = self.load(id)?;
        if !matches!(
            container.status(),
            ContainerStatus::Running | ContainerStatus::Paused | ContainerStatus::Created
        ) {
            return Err(Error::Status {
                id: id.to_string(),
                status: status_name(container.status()).into(),
                action: "read its stats",
            });
        }
        let stats = manager_of(&container)?
            .stats()
            .map_err(|e| Error::Cgroup(format!("stats of {id}: {e}")))?;
        let data = serde_json::to_value(&stats)
            .map_err(|e| Error::Invalid(format!("encode stats: {e}")))?;
        Ok(serde_json::json!({ "type": "stats", "id": id, "data": data }))
    }

    /// Prints stats events every `interval` until the container stops.
    pub fn events(
        &self,
        id: &str,
        interval: Duration,
        once: bool,
        out: &mut dyn Write,
    ) -> Result<()> {
        loop {
            let event = match self.stats_event(id) {
                Ok(e) => e,
                // The container went away between two samples: the stream ends.
                Err(Error::Status { .. } | Error::NotExist(_)) if !once => return Ok(()),
                Err(e) => return Err(e),
            };
            writeln!(out, "{event}").context(|| "write event".into())?;
            out.flush().context(|| "write event".into())?;
            if once {
                return Ok(());
            }
            std::thread::sleep(interval);
        }
    }
}

/// Parses runc's `--interval` (`5s`, `500ms`, `1m`, or plain seconds).
pub fn parse_interval(text: &str) -> std::result::Result<Duration, String> {
    let t = text.trim();
    let (num, unit) = t
        .find(|c: char| !c.is_ascii_digit())
        .map(|i| t.split_at(i))
        .unwrap_or((t, "s"));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid interval {text:?}"))?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        _ => return Err(format!("invalid interval {text:?}")),
    };
    if d.is_zero() {
        return Err(format!("invalid interval {text:?}: must be positive"));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_interval("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_interval("3"), Ok(Duration::from_secs(3)));
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("soon").is_err());
        assert!(parse_interval("5h").is_err());
    }
}
