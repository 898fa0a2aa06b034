//! Exit codes: what scripts and the systemd unit see.

use crate::error;

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
    /// `guard doctor` only, as Nagios reads it: it could not check (or its
    /// command line was wrong).
    Unknown = 3,
}

impl Exit {
    #[must_use]
    pub const fn code(self) -> u8 {
        self as u8
    }
}

/// The exit code an error chain asks for.
#[must_use]
pub fn exit_of(error: &anyhow::Error) -> Exit {
    if error::is_usage(error) {
        Exit::Usage
    } else {
        Exit::Failure
    }
}

#[cfg(test)]
mod tests {
    use anyhow::Context as _;

    use super::*;
    use crate::error::usage;

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
