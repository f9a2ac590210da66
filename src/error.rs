//! What every module's error carries from below: the lower-level error (io, nix,
//! serde_json, libcontainer) with what we were doing when it happened, and how an
//! error and its causes are printed on one line.
//!
//! Each module keeps its own `thiserror` enum and holds these with `#[from]`;
//! `.context(..)?` then turns an io or nix error into it:
//!
//! ```
//! use std::path::Path;
//!
//! use peapod::error::{one_line, Context, IoError, SysError};
//!
//! #[derive(Debug, thiserror::Error)]
//! pub enum VolumeError {
//!     #[error(transparent)]
//!     Io(#[from] IoError),
//!     #[error(transparent)]
//!     Sys(#[from] SysError),
//!     #[error("volume {0}: not a folder")]
//!     NotAFolder(String),
//! }
//!
//! fn make(path: &Path) -> Result<(), VolumeError> {
//!     std::fs::create_dir(path).context(|| format!("create {}", path.display()))?;
//!     Ok(())
//! }
//!
//! let err = make(Path::new("/nonexistent/v")).unwrap_err();
//! assert!(matches!(&err, VolumeError::Io(e) if e.source.kind() == std::io::ErrorKind::NotFound));
//! assert_eq!(one_line(&err), "create /nonexistent/v: No such file or directory (os error 2)");
//! ```
//!
//! In tail position the conversion needs `?` too: `Ok(fs::read(p).context(..)?)`.

use std::error::Error;
use std::fmt;

/// A lower-level error and what we were doing when it happened. It displays as
/// `<context>: <error>` (`read /var/lib/peapod/pods/x/pod.json: No such file or
/// directory (os error 2)`), so `to_string()` alone says everything.
#[derive(Debug)]
pub struct WithContext<E> {
    /// What we were doing: a verb and the file, container or call it was about.
    pub context: String,
    pub source: E,
}

/// An io error with what we were doing.
pub type IoError = WithContext<std::io::Error>;
/// A failed system call (nix) with what we were doing.
pub type SysError = WithContext<nix::Error>;
/// A JSON document that did not parse, with the file or blob it came from.
pub type JsonError = WithContext<serde_json::Error>;

impl<E: fmt::Display> fmt::Display for WithContext<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.source)
    }
}

impl<E: Error + 'static> Error for WithContext<E> {
    // The source's own text is part of our Display: the chain goes on below it
    // (as std's io::Error does for a wrapped error).
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.source.source()
    }
}

/// Attaches "what we were doing" to a lower-level error; `?` then turns the
/// [`WithContext`] into the module's error through its `#[from]` variant.
pub trait Context<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, WithContext<E>>;
}

impl<T, E: Error> Context<T, E> for Result<T, E> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T, WithContext<E>> {
        self.map_err(|source| WithContext {
            context: what(),
            source,
        })
    }
}

/// The error and its causes on one line, without the repeats that nested
/// libcontainer errors produce: what a command prints and a pod's status shows.
pub fn one_line(err: &(dyn Error + 'static)) -> String {
    let mut line = String::new();
    let mut cause = Some(err);
    while let Some(err) = cause {
        cause = err.source();
        let text = err
            .to_string()
            .replace(
                "exec process failed with error error in executing process : ",
                "",
            )
            .replace("failed to create container: ", "");
        let text = text.trim();
        if text.is_empty() || line.contains(text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    enum ModuleError {
        #[error(transparent)]
        Io(#[from] IoError),
        #[error(transparent)]
        Sys(#[from] SysError),
    }

    fn read(path: &str) -> Result<Vec<u8>, ModuleError> {
        Ok(std::fs::read(path).context(|| format!("read {path}"))?)
    }

    #[test]
    fn the_context_comes_first_and_the_cause_stays() {
        let err = read("/nonexistent/peapod").unwrap_err();
        assert_eq!(
            err.to_string(),
            "read /nonexistent/peapod: No such file or directory (os error 2)"
        );
        assert_eq!(one_line(&err), err.to_string());
        let ModuleError::Io(io) = err else {
            panic!("not an io error: {err:?}");
        };
        assert_eq!(io.source.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn nix_errors_keep_their_errno_name() {
        let err: ModuleError = Err::<(), _>(nix::Error::EPERM)
            .context(|| "mount /x".to_string())
            .unwrap_err()
            .into();
        assert_eq!(err.to_string(), "mount /x: EPERM: Operation not permitted");
    }

    #[test]
    fn causes_below_the_context_are_joined_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("failed to create container: {0}")]
        struct Outer(#[source] Inner);
        #[derive(Debug, thiserror::Error)]
        #[error(
            "exec process failed with error error in executing process : executable 'x' not found"
        )]
        struct Inner;
        let err = Err::<(), _>(Outer(Inner))
            .context(|| "create container c".to_string())
            .unwrap_err();
        assert_eq!(
            one_line(&err),
            "create container c: executable 'x' not found"
        );
    }
}
