//! The pod engine's error: one enum over its modules' errors, each of which
//! names the file, field or pod it is about.

use super::admission::ManifestError;
use super::folder::FolderError;
use super::lifecycle::RestoreError;
use super::network::NetworkError;
use super::spec::SpecError;
use super::status::StatusError;
use super::store::StoreError;
use super::volumes::VolumeError;
use crate::error::{IoError, SysError};
use crate::image::ImageError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Folder(#[from] FolderError),
    #[error(transparent)]
    Volume(#[from] VolumeError),
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Network(#[from] NetworkError),
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error(transparent)]
    Restore(#[from] RestoreError),
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Oci(#[from] crate::oci::Error),
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Sys(#[from] SysError),
    /// A container's image: `spec.containers[0].image: ...`.
    #[error("{field}: {source}")]
    ImageRef {
        field: String,
        #[source]
        source: ImageError,
    },
    /// Something about one pod: `pod web is running: stop it first, or use --force`.
    #[error("pod {pod}: {message}")]
    Pod { pod: String, message: String },
    /// What a pod's supervisor, another process, reported.
    #[error("{0}")]
    Supervisor(String),
}

impl Error {
    pub fn pod(pod: &str, message: impl Into<String>) -> Self {
        Self::Pod {
            pod: pod.to_string(),
            message: message.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
