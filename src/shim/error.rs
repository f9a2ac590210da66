//! The shim's one error type, and how each kind reaches containerd.

use containerd_shim_protos::ttrpc;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Precondition(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("peapod {verb} failed: {msg}")]
    Runtime {
        verb: String,
        msg: String,
        not_found: bool,
    },
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

impl From<Error> for ttrpc::Error {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::NotFound(_) => ttrpc::Code::NOT_FOUND,
            Error::Runtime {
                not_found: true, ..
            } => ttrpc::Code::NOT_FOUND,
            Error::Precondition(_) => ttrpc::Code::FAILED_PRECONDITION,
            Error::InvalidArgument(_) => ttrpc::Code::INVALID_ARGUMENT,
            _ => ttrpc::Code::UNKNOWN,
        };
        log::warn!("{e}");
        ttrpc::Error::RpcStatus(ttrpc::get_status(code, e.to_string()))
    }
}
