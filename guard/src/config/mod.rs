//! `guard run`'s configuration: flags and a TOML file with the same keys.
//!
//! [`RawConfig`] is parsed twice, once by clap from the command line and
//! once by serde from `--config FILE`; every field is optional there. A
//! flag overrides the file's value for the same key (a list replaces the
//! file's list). [`Settings::resolve`] then fills in defaults and validates
//! everything into typed [`Settings`]; an error names the key, the value,
//! where it came from, and why it is wrong, before anything on the host is
//! touched.
//!
//! - [`raw`]: the keys as written (clap and serde);
//! - [`cidr`]: CIDR text, for every list;
//! - [`netns`]: namespace names, for `netns` and every `--netns`;
//! - [`resolve`]: defaults and validation, into [`Settings`];
//! - [`settings`]: the validated values, what the XDP program gets from
//!   them, and the one table of keys a reload cannot change.

pub mod cidr;
pub mod error;
pub mod netns;
pub mod raw;
pub mod resolve;
pub mod settings;

pub use cidr::parse_cidr;
pub use error::ConfigError;
pub use netns::parse_netns;
pub use raw::{
    BucketPolicy, Enforcement, Fingerprints, RawConfig, SourceLimits, SynCookies, XdpModeChoice,
    defaults,
};
pub use resolve::read_file;
pub use settings::{DeclaredOpen, FleetSettings, Rate, Settings, list_bits, list_overflow};

#[cfg(test)]
mod tests;
