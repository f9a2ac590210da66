//! The static-pod daemon's error: each names the file, setting or pod.

use std::path::PathBuf;

use crate::error::{IoError, SysError};
use crate::pod::admission::ManifestError;

#[derive(Debug, thiserror::Error)]
pub enum StaticError {
    /// A file that cannot be read or used: `/etc/peapod/static.yaml: ...`.
    #[error("{}: {reason}", path.display())]
    File { path: PathBuf, reason: String },
    /// A setting of the config file or command line: `rescanSeconds: ...`.
    #[error("{field}: {reason}")]
    Setting { field: &'static str, reason: String },
    #[error("invalid node name {0:?}: must be a DNS-1123 subdomain (lowercase letters, digits, '-' and '.')")]
    NodeName(String),
    #[error("another peapod static daemon runs with --root {}", .0.display())]
    Running(PathBuf),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error(transparent)]
    Pod(#[from] crate::pod::Error),
}

pub type Result<T> = std::result::Result<T, StaticError>;
