//! The one error kind the layers below the CLI need to tell apart: "this
//! command cannot start" (bad input, a host that is not ready), which the
//! CLI turns into exit code 2. Anything else is a failure while running.
//! It sits below every layer so that each can say it without importing the
//! CLI.

use std::{fmt, io, path::PathBuf};

use thiserror::Error;

/// A command that cannot start; nothing was left changed on the host.
#[derive(Debug)]
pub struct Usage(pub anyhow::Error);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for Usage {}

/// Marks an error as [`Usage`].
pub fn usage(error: impl Into<anyhow::Error>) -> anyhow::Error {
    Usage(error.into()).into()
}

/// Whether anything in the error's chain is a [`Usage`] error.
#[must_use]
pub fn is_usage(error: &anyhow::Error) -> bool {
    error.chain().any(|e| e.downcast_ref::<Usage>().is_some())
}

/// A file-system call that failed on a path: what was being done, where.
#[derive(Debug, Error)]
#[error("cannot {what} {}", path.display())]
pub struct PathError {
    pub what: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

/// Makes an [`io::Error`] a [`PathError`] for `what` on `path`, for
/// `map_err`.
pub fn path_err(what: &'static str, path: &std::path::Path) -> impl FnOnce(io::Error) -> PathError {
    let path = path.to_path_buf();
    move |source| PathError { what, path, source }
}
