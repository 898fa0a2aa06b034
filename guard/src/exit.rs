//! Exit codes, and the error wrapper that carries one.

use std::fmt;

/// How `guard` ends. Scripts and the systemd unit rely on these values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Did what was asked.
    Success = 0,
    /// Failed while running, or found nothing to act on (`guard stats`
    /// with no guard running).
    Failure = 1,
    /// Could not start: bad input or a host that is not ready (missing
    /// interface, privileges, bpffs, a program already attached, a
    /// verifier rejection). Nothing was left changed on the host.
    Usage = 2,
}

impl Exit {
    #[must_use]
    pub const fn code(self) -> u8 {
        self as u8
    }
}

/// An error that decides the exit code. Anything else exits with
/// [`Exit::Failure`].
#[derive(Debug)]
pub struct ExitError {
    pub exit: Exit,
    pub error: anyhow::Error,
}

impl fmt::Display for ExitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}", self.error)
    }
}

impl std::error::Error for ExitError {}

/// Builds an [`Exit::Usage`] error: the command cannot start.
pub fn usage(error: impl Into<anyhow::Error>) -> anyhow::Error {
    ExitError {
        exit: Exit::Usage,
        error: error.into(),
    }
    .into()
}

/// The exit code an error chain asks for.
#[must_use]
pub fn exit_of(error: &anyhow::Error) -> Exit {
    error
        .chain()
        .find_map(|e| e.downcast_ref::<ExitError>())
        .map_or(Exit::Failure, |e| e.exit)
}

#[cfg(test)]
mod tests {
    use anyhow::Context as _;

    use super::*;

    #[test]
    fn usage_survives_added_context() {
        let err = Err::<(), _>(usage(anyhow::anyhow!("no such interface")))
            .context("attaching to eth9")
            .unwrap_err();
        assert_eq!(exit_of(&err), Exit::Usage);
        assert_eq!(Exit::Usage.code(), 2);
    }

    #[test]
    fn other_errors_are_failures() {
        assert_eq!(exit_of(&anyhow::anyhow!("boom")), Exit::Failure);
    }
}
