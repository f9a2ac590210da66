//! The OCI state document (`state`, `list --format json`), in runc's shape.

use std::collections::HashMap;
use std::path::PathBuf;

use libcontainer::container::{Container, ContainerStatus};
use serde::Serialize;

use super::error::Result;
use super::{status_name, Runtime};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState {
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: &'static str,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub annotations: Option<HashMap<String, String>>,
    pub owner: String,
}

impl OciState {
    pub fn of(container: &Container) -> Self {
        let status = container.status();
        // Like runc: a stopped container has no process to report.
        let pid = match status {
            ContainerStatus::Stopped => 0,
            _ => container.pid().map(|p| p.as_raw()).unwrap_or(0),
        };
        let rootfs = root_path(container).unwrap_or_default();
        Self {
            oci_version: oci_spec::runtime::VERSION.to_string(),
            id: container.id().to_string(),
            pid,
            status: status_name(status),
            bundle: Runtime::user_bundle(container),
            rootfs,
            created: container
                .created()
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
                .unwrap_or_default(),
            annotations: container.state.annotations.clone(),
            owner: container
                .creator()
                .map(|c| c.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

fn root_path(container: &Container) -> Option<PathBuf> {
    let text = std::fs::read(container.bundle().join("config.json")).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&text).ok()?;
    let root = PathBuf::from(value["root"]["path"].as_str()?);
    Some(if root.is_absolute() {
        root
    } else {
        container.bundle().join(root)
    })
}

impl Runtime {
    pub fn state(&self, id: &str) -> Result<OciState> {
        Ok(OciState::of(&self.load(id)?))
    }

    /// The state of every container; ones whose state cannot be read are skipped
    /// (they may be half-deleted by a concurrent `delete`).
    pub fn list(&self) -> Result<Vec<OciState>> {
        Ok(self
            .ids()?
            .iter()
            .filter_map(|id| self.load(id).ok())
            .map(|c| OciState::of(&c))
            .collect())
    }
}
