use std::path::PathBuf;

use libcontainer::error::LibcontainerError;

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
    #[error("{context}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}")]
    Sys {
        context: String,
        #[source]
        source: nix::Error,
    },
    #[error("{context}")]
    Container {
        context: String,
        // Boxed: libcontainer's error is large and would bloat every Result.
        #[source]
        source: Box<LibcontainerError>,
    },
    #[error("cgroup: {0}")]
    Cgroup(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Attaches "what we were doing" to lower-level errors.
pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, std::io::Error> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: what(),
            source,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, nix::Error> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Sys {
            context: what(),
            source,
        })
    }
}

impl<T> Context<T> for std::result::Result<T, LibcontainerError> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Container {
            context: what(),
            source: Box::new(source),
        })
    }
}
