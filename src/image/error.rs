use std::path::PathBuf;

use crate::error::{IoError, JsonError, SysError};

/// Errors of the image store. Each message names the file, reference or digest at fault.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error(transparent)]
    Json(#[from] JsonError),
    #[error("invalid digest {digest:?}: {reason}")]
    InvalidDigest {
        digest: String,
        reason: &'static str,
    },
    #[error("blob {digest}: digest mismatch, its content hashes to {actual}")]
    DigestMismatch { digest: String, actual: String },
    #[error(
        "blob {digest}: size mismatch, the descriptor says {expected} bytes, the blob has {actual}"
    )]
    SizeMismatch {
        digest: String,
        expected: u64,
        actual: u64,
    },
    #[error("{}: not an OCI image layout: {reason}", path.display())]
    InvalidLayout { path: PathBuf, reason: String },
    #[error("{}: blob {digest} is missing", archive.display())]
    MissingBlob { archive: PathBuf, digest: String },
    #[error("{what} {digest}: unsupported media type {media_type:?}")]
    UnsupportedMediaType {
        what: &'static str,
        digest: String,
        media_type: String,
    },
    #[error("{what} {digest}: {reason}")]
    InvalidDocument {
        what: &'static str,
        digest: String,
        reason: String,
    },
    #[error("{what} {digest}: no manifest for {wanted} (it has: {available})")]
    NoPlatform {
        what: &'static str,
        digest: String,
        wanted: String,
        available: String,
    },
    #[error("{}: manifest {digest} has no name: give one, or annotate it with io.containerd.image.name or org.opencontainers.image.ref.name", archive.display())]
    NoName { archive: PathBuf, digest: String },
    #[error("{}: {reason}", archive.display())]
    Naming { archive: PathBuf, reason: String },
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("image {reference:?} not found")]
    NotFound { reference: String },
    #[error("image reference {reference:?} is ambiguous: it matches {}", candidates.join(", "))]
    Ambiguous {
        reference: String,
        candidates: Vec<String>,
    },
    #[error("layer {layer}: entry {path:?}: {reason}")]
    UnsafeEntry {
        layer: String,
        path: String,
        reason: String,
    },
    #[error("layer {layer}: its uncompressed content hashes to {actual}, but the image config lists {diff_id}")]
    DiffIdMismatch {
        layer: String,
        diff_id: String,
        actual: String,
    },
    #[error("image {image}: layer {diff_id} is missing from the store ({})", path.display())]
    LayerMissing {
        image: String,
        diff_id: String,
        path: PathBuf,
    },
    #[error("{}: already mounted", path.display())]
    AlreadyMounted { path: PathBuf },
    #[error("image {image}: {count} layers are too many for one overlay mount")]
    TooManyLayers { image: String, count: usize },
    #[error(transparent)]
    Registry(#[from] super::registry::RegistryError),
}

pub type Result<T> = std::result::Result<T, ImageError>;
