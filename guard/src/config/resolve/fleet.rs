//! The `fleet` keys: the servers, credentials, member and bucket names and
//! the ban rate, all or nothing (a fleet key without `--fleet` is an error).

use std::{fs, path::PathBuf};

use super::layers::{Layers, Origin, cidrs, invalid};
use crate::config::{
    error::ConfigError,
    raw::{RawConfig, defaults},
    settings::FleetSettings,
};

/// A fleet bucket's name (part of a NATS stream name), or with `dots`, a
/// member's (a NATS key: a node name like `ip-10-0-0-1.ec2.internal`).
fn nats_name(text: &str, dots: bool) -> bool {
    (1..=64).contains(&text.len())
        && !text.starts_with('.')
        && !text.ends_with('.')
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || (dots && c == '.'))
}

/// The host name, made a fleet member's name.
fn default_member(netns: Option<&str>) -> String {
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name = match netns {
        Some(ns) => format!("{}-{ns}", host.trim()),
        None => host.trim().to_owned(),
    };
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() {
        "guard".to_owned()
    } else {
        name
    }
}

/// Whether a layer sets a key.
type IsSet = fn(&RawConfig) -> bool;

/// The keys that need `fleet`.
const FLEET_KEYS: [(&str, IsSet); 8] = [
    ("fleet-creds", |r| r.fleet_creds.is_some()),
    ("fleet-tls-ca", |r| r.fleet_tls_ca.is_some()),
    ("fleet-tls-cert", |r| r.fleet_tls_cert.is_some()),
    ("fleet-tls-key", |r| r.fleet_tls_key.is_some()),
    ("fleet-name", |r| r.fleet_name.is_some()),
    ("fleet-bucket", |r| r.fleet_bucket.is_some()),
    ("fleet-allow", |r| r.fleet_allow.is_some()),
    ("fleet-rate", |r| r.fleet_rate.is_some()),
];

/// The client certificate and its key: both or neither.
fn tls_pair(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    origin: &Origin,
) -> Result<Option<(PathBuf, PathBuf)>, ConfigError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some((cert, key))),
        (None, None) => Ok(None),
        (Some(cert), None) => Err(invalid(
            "fleet-tls-cert",
            cert.display(),
            origin,
            "needs --fleet-tls-key, the certificate's private key",
        )),
        (None, Some(key)) => Err(invalid(
            "fleet-tls-key",
            key.display(),
            origin,
            "needs --fleet-tls-cert, the certificate it belongs to",
        )),
    }
}

pub(super) fn fleet(
    l: &Layers<'_>,
    netns: Option<&str>,
) -> Result<Option<FleetSettings>, ConfigError> {
    let file = |key: &'static str, field: fn(&RawConfig) -> Option<PathBuf>| {
        l.get(key, field)
            .map(|(path, origin)| {
                if path.is_file() {
                    Ok(path)
                } else {
                    Err(invalid(key, path.display(), &origin, "no such file"))
                }
            })
            .transpose()
    };
    let creds = file("fleet-creds", |r| r.fleet_creds.clone())?;
    let tls_ca = file("fleet-tls-ca", |r| r.fleet_tls_ca.clone())?;
    let cert = file("fleet-tls-cert", |r| r.fleet_tls_cert.clone())?;
    let key = file("fleet-tls-key", |r| r.fleet_tls_key.clone())?;
    let member = l.get("fleet-name", |r| r.fleet_name.clone());
    let bucket = l.get("fleet-bucket", |r| r.fleet_bucket.clone());
    let allow = cidrs(l, "fleet-allow", |r| r.fleet_allow.clone())?;
    let rate = l.get("fleet-rate", |r| r.fleet_rate);
    let Some((server, origin)) = l.get("fleet", |r| r.fleet.clone()) else {
        return match FLEET_KEYS.iter().find_map(|(key, set)| {
            let origin = if set(l.flags) {
                Origin::Flag(key)
            } else {
                let (file, path) = l.file?;
                set(file).then(|| Origin::File(path.to_path_buf()))?
            };
            Some((*key, origin))
        }) {
            Some((key, origin)) => Err(invalid(
                key,
                "(set)",
                &origin,
                "only means something with --fleet nats://HOST:PORT",
            )),
            None => Ok(None),
        };
    };
    for url in server.split(',') {
        let url = url.trim();
        if !(url.starts_with("nats://") || url.starts_with("tls://")) || url.len() <= "tls://".len()
        {
            return Err(invalid(
                "fleet",
                &server,
                &origin,
                "each server is nats://HOST:PORT or tls://HOST:PORT",
            ));
        }
    }
    let tls_client = tls_pair(cert, key, &origin)?;
    let name = |found: Option<(String, Origin)>, key: &str, default: String| match found {
        Some((name, origin)) if !nats_name(&name, key == "fleet-name") => Err(invalid(
            key,
            &name,
            &origin,
            if key == "fleet-name" {
                "1 to 64 letters, digits, `-`, `_` or inner `.` (it is a NATS key)"
            } else {
                "1 to 64 letters, digits, `-` or `_` (it names NATS streams)"
            },
        )),
        Some((name, _)) => Ok(name),
        None => Ok(default),
    };
    let (rate, rate_origin) = rate.unwrap_or((defaults::FLEET_RATE, Origin::Default));
    if rate == 0 {
        return Err(invalid(
            "fleet-rate",
            rate,
            &rate_origin,
            "0 would take no ban from peers: leave --fleet out to stay alone",
        ));
    }
    Ok(Some(FleetSettings {
        server,
        creds,
        tls_ca,
        tls_client,
        member: name(member, "fleet-name", default_member(netns))?,
        bucket: name(bucket, "fleet-bucket", defaults::FLEET_BUCKET.to_owned())?,
        allow,
        rate,
    }))
}
