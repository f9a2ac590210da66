use std::path::PathBuf;

use libcontainer::error::LibcontainerError;

use crate::error::{IoError, SysError, WithContext};

/// Errors of the runtime layer. Each message names the thing that is wrong, so the
/// CLI can print it as one line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("container does not exist: {0}")]
    NotExist(String),
    #[error("container with id exists: {0}")]
    Exists(String),
    #[error("invalid container id {id:?}: {reason}")]
    InvalidId { id: String, reason: &'static str },
    #[error("bundle {0}: no such directory")]
    NoBundle(PathBuf),
    #[error("{}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },
    #[error("invalid signal: {0}")]
    InvalidSignal(String),
    #[error("container {id} is {status}: cannot {action}")]
    Status {
        id: String,
        status: String,
        action: &'static str,
    },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Io(#[from] IoError),
    #[error(transparent)]
    Sys(#[from] SysError),
    // Boxed: libcontainer's error is large and would bloat every Result.
    #[error(transparent)]
    Container(Box<WithContext<LibcontainerError>>),
    #[error("cgroup: {0}")]
    Cgroup(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl From<WithContext<LibcontainerError>> for Error {
    fn from(e: WithContext<LibcontainerError>) -> Self {
        Error::Container(Box::new(e))
    }
}
