//! The conntrack sysctls, read and written through the `sysctl` crate in
//! the right namespace: `nf_conntrack_max` and `nf_conntrack_buckets` in the
//! initial namespace (the only one where they are writable, and where guard
//! runs); the count and the timeouts in the protected namespace.

use std::io;

use sysctl::{Ctl, Sysctl as _, SysctlError};
use thiserror::Error;

use super::ctnetlink;
use crate::{
    host::netns::{NetnsError, Scope},
    model::conntrack::{BUCKETS, COUNT, MAX, Table, Timeout, Timeouts, timeout_key},
};

#[derive(Debug, Error)]
pub enum KnobError {
    #[error(
        "nf_conntrack is not loaded{scope} ({MAX} does not exist): load it with `modprobe nf_conntrack`"
    )]
    NotLoaded { scope: String },
    /// A write the host does not allow (a child namespace's global knob, a
    /// read-only /proc/sys): the controller reports it once and goes on.
    #[error("{key} is read-only{scope} ({source})")]
    ReadOnly {
        key: String,
        scope: String,
        #[source]
        source: io::Error,
    },
    #[error("{key}{scope}: {source}")]
    Io {
        key: String,
        scope: String,
        #[source]
        source: io::Error,
    },
    #[error("{key}{scope} holds `{value}`, which is not a number")]
    NotANumber {
        key: String,
        scope: String,
        value: String,
    },
    #[error("reading conntrack statistics over ctnetlink{scope}")]
    Stats {
        scope: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Netns(#[from] NetnsError),
}

/// A numeric sysctl of the calling thread's namespace; `scope` names that
/// namespace in errors.
pub(crate) fn read(key: &str, scope: &str) -> Result<u64, KnobError> {
    let value = Ctl::new(key)
        .and_then(|ctl| ctl.value_string())
        .map_err(|e| classify(key, scope, e))?;
    value.trim().parse().map_err(|_| KnobError::NotANumber {
        key: key.to_owned(),
        scope: scope.to_owned(),
        value,
    })
}

fn write(key: &str, scope: &str, value: u64) -> Result<(), KnobError> {
    Ctl::new(key)
        .and_then(|ctl| ctl.set_value_string(&value.to_string()))
        .map(drop)
        .map_err(|e| classify(key, scope, e))
}

fn classify(key: &str, scope: &str, err: SysctlError) -> KnobError {
    let (key, scope) = (key.to_owned(), scope.to_owned());
    match err {
        SysctlError::NotFound(_) if key == MAX || key == COUNT => KnobError::NotLoaded { scope },
        SysctlError::NotFound(_) => KnobError::Io {
            key,
            scope,
            source: io::Error::from(io::ErrorKind::NotFound),
        },
        SysctlError::IoError(source)
            if source.kind() == io::ErrorKind::PermissionDenied
                || source.raw_os_error() == Some(libc::EROFS)
                || source.raw_os_error() == Some(libc::EPERM) =>
        {
            KnobError::ReadOnly { key, scope, source }
        }
        SysctlError::IoError(source) => KnobError::Io { key, scope, source },
        other => KnobError::Io {
            key,
            scope,
            source: io::Error::other(other.to_string()),
        },
    }
}

/// The conntrack knobs of the host and of the protected namespace.
pub struct Knobs<'a> {
    scope: &'a Scope,
}

impl<'a> Knobs<'a> {
    /// Checks that conntrack is there, in the host and in the namespace.
    pub fn open(scope: &'a Scope) -> Result<Self, KnobError> {
        read(MAX, "")?;
        let suffix = scope.suffix();
        scope.run(|| read(COUNT, &suffix))??;
        Ok(Self { scope })
    }

    #[must_use]
    pub const fn scope(&self) -> &Scope {
        self.scope
    }

    /// A global knob (max, buckets), in the initial namespace.
    pub fn global(&self, key: &str) -> Result<u64, KnobError> {
        read(key, "")
    }

    pub fn set_global(&self, key: &str, value: u64) -> Result<(), KnobError> {
        write(key, "", value)
    }

    /// A knob of the protected namespace.
    pub fn local(&self, key: &str) -> Result<u64, KnobError> {
        let suffix = self.scope.suffix();
        self.scope.run(|| read(key, &suffix))?
    }

    pub fn set_local(&self, key: &str, value: u64) -> Result<(), KnobError> {
        let suffix = self.scope.suffix();
        self.scope.run(|| write(key, &suffix, value))?
    }

    /// Every timeout of the protected namespace.
    pub fn timeouts(&self) -> Result<Timeouts, KnobError> {
        let suffix = self.scope.suffix();
        self.scope.run(|| {
            let mut t = Timeouts::defaults();
            for kind in Timeout::ALL {
                let secs = read(&timeout_key(kind), &suffix)?;
                t.set(kind, u32::try_from(secs).unwrap_or(u32::MAX));
            }
            Ok(t)
        })?
    }

    /// One reading of the whole table.
    pub fn table(&self) -> Result<Table, KnobError> {
        let suffix = self.scope.suffix();
        let (count, stats) = self.scope.run(|| {
            let count = read(COUNT, &suffix)?;
            let stats = ctnetlink::stats().map_err(|source| KnobError::Stats {
                scope: suffix.clone(),
                source,
            })?;
            Ok::<_, KnobError>((count, stats))
        })??;
        Ok(Table {
            count,
            max: self.global(MAX)?,
            buckets: self.global(BUCKETS)?,
            timeouts: self.timeouts()?,
            stats,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeout_keys_are_the_kernels() {
        assert_eq!(
            timeout_key(Timeout::TcpEstablished),
            "net.netfilter.nf_conntrack_tcp_timeout_established"
        );
        assert_eq!(
            timeout_key(Timeout::Udp),
            "net.netfilter.nf_conntrack_udp_timeout"
        );
        assert_eq!(
            timeout_key(Timeout::Icmpv6),
            "net.netfilter.nf_conntrack_icmpv6_timeout"
        );
    }

    #[test]
    fn a_permission_error_is_read_only() {
        let err = classify(
            MAX,
            " in netns x",
            SysctlError::IoError(io::Error::from_raw_os_error(libc::EROFS)),
        );
        assert!(matches!(err, KnobError::ReadOnly { .. }));
        assert_eq!(
            err.to_string(),
            "net.netfilter.nf_conntrack_max is read-only in netns x (Read-only file system (os error 30))"
        );
        assert!(matches!(
            classify(MAX, "", SysctlError::NotFound(MAX.into())),
            KnobError::NotLoaded { .. }
        ));
    }
}
