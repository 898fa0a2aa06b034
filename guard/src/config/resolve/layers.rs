//! What every key's resolution shares: the layers (flags over the file),
//! where a value came from, the error that names both, and lists of CIDRs.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use ipnet::IpNet;

use crate::config::{cidr::parse_cidr, error::ConfigError, raw::RawConfig};

/// Where a value came from, for error messages.
#[derive(Clone, Debug)]
pub(super) enum Origin {
    Default,
    Flag(&'static str),
    File(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("the default"),
            Self::Flag(key) => write!(f, "from --{key}"),
            Self::File(path) => write!(f, "from {}", path.display()),
        }
    }
}

/// The flags over the file: one value per key, with its origin.
pub(super) struct Layers<'a> {
    pub(super) flags: &'a RawConfig,
    pub(super) file: Option<(&'a RawConfig, &'a Path)>,
}

impl Layers<'_> {
    pub(super) fn get<T>(
        &self,
        key: &'static str,
        field: impl Fn(&RawConfig) -> Option<T>,
    ) -> Option<(T, Origin)> {
        if let Some(v) = field(self.flags) {
            return Some((v, Origin::Flag(key)));
        }
        let (file, path) = self.file?;
        field(file).map(|v| (v, Origin::File(path.to_path_buf())))
    }

    pub(super) fn or<T>(
        &self,
        key: &'static str,
        field: impl Fn(&RawConfig) -> Option<T>,
        default: T,
    ) -> (T, Origin) {
        self.get(key, field).unwrap_or((default, Origin::Default))
    }
}

pub(super) fn invalid(
    key: &str,
    value: impl fmt::Display,
    origin: &Origin,
    reason: impl Into<String>,
) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_owned(),
        value: value.to_string(),
        origin: origin.to_string(),
        reason: reason.into(),
    }
}

pub(super) fn cidrs(
    l: &Layers<'_>,
    key: &'static str,
    field: impl Fn(&RawConfig) -> Option<Vec<String>>,
) -> Result<Vec<IpNet>, ConfigError> {
    let Some((texts, origin)) = l.get(key, field) else {
        return Ok(Vec::new());
    };
    let mut nets = Vec::with_capacity(texts.len());
    for text in &texts {
        let net = parse_cidr(text).map_err(|reason| invalid(key, text, &origin, reason))?;
        if nets.contains(&net) {
            return Err(invalid(key, text, &origin, "listed twice"));
        }
        nets.push(net);
    }
    Ok(nets)
}
