//! The shim's one error type, and how each kind reaches containerd.

use containerd_shim_protos::ttrpc;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
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
            Error::AlreadyExists(_) => ttrpc::Code::ALREADY_EXISTS,
            Error::Precondition(_) => ttrpc::Code::FAILED_PRECONDITION,
            Error::InvalidArgument(_) => ttrpc::Code::INVALID_ARGUMENT,
            _ => ttrpc::Code::UNKNOWN,
        };
        log::warn!("{e}");
        ttrpc::Error::RpcStatus(ttrpc::get_status(code, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(e: Error) -> ttrpc::Code {
        match ttrpc::Error::from(e) {
            ttrpc::Error::RpcStatus(s) => s.code(),
            other => panic!("not a status: {other:?}"),
        }
    }

    #[test]
    fn errors_reach_containerd_with_their_kind() {
        assert_eq!(code(Error::NotFound("x".into())), ttrpc::Code::NOT_FOUND);
        let missing = Error::Runtime {
            verb: "kill".into(),
            msg: "container does not exist: x".into(),
            not_found: true,
        };
        assert_eq!(code(missing), ttrpc::Code::NOT_FOUND);
        assert_eq!(
            code(Error::Precondition("x".into())),
            ttrpc::Code::FAILED_PRECONDITION
        );
        assert_eq!(
            code(Error::AlreadyExists("x".into())),
            ttrpc::Code::ALREADY_EXISTS
        );
        assert_eq!(code(Error::Other("x".into())), ttrpc::Code::UNKNOWN);
    }
}
