//! Why a configuration was refused: every error names the key, the value,
//! where it came from and why, before anything on the host is touched.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("`{key} = {value}` ({origin}): {reason}")]
    Invalid {
        key: String,
        value: String,
        origin: String,
        reason: String,
    },
    #[error("no interface to protect: give --iface IF, or `iface = [\"IF\"]` in the config file")]
    NoInterface,
}
