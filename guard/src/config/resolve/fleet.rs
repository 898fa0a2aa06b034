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

/// A layer's value for a key, as text for an error, if it sets the key.
type ValueOf = fn(&RawConfig) -> Option<String>;

/// The keys that need `fleet`.
const FLEET_KEYS: [(&str, ValueOf); 8] = [
    ("fleet-creds", |r| {
        r.fleet_creds.as_ref().map(|p| p.display().to_string())
    }),
    ("fleet-tls-ca", |r| {
        r.fleet_tls_ca.as_ref().map(|p| p.display().to_string())
    }),
    ("fleet-tls-cert", |r| {
        r.fleet_tls_cert.as_ref().map(|p| p.display().to_string())
    }),
    ("fleet-tls-key", |r| {
        r.fleet_tls_key.as_ref().map(|p| p.display().to_string())
    }),
    ("fleet-name", |r| r.fleet_name.clone()),
    ("fleet-bucket", |r| r.fleet_bucket.clone()),
    ("fleet-allow", |r| {
        r.fleet_allow.as_ref().map(|l| l.join(", "))
    }),
    ("fleet-rate", |r| r.fleet_rate.map(|n| n.to_string())),
];

/// Why one server of `fleet` is not `nats://HOST[:PORT]` or
/// `tls://HOST[:PORT]`, if it is not.
fn bad_server(url: &str) -> Option<&'static str> {
    let Some(rest) = url
        .strip_prefix("nats://")
        .or_else(|| url.strip_prefix("tls://"))
    else {
        return Some("each server is nats://HOST:PORT or tls://HOST:PORT");
    };
    // The host sits after any `user:password@` and before the port (an
    // IPv6 address is bracketed, so its colons are not the port's).
    let authority = rest.split('/').next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if host_port.starts_with('[') {
        host_port
            .split(']')
            .next()
            .unwrap_or_default()
            .trim_start_matches('[')
    } else {
        host_port.split(':').next().unwrap_or_default()
    };
    host.is_empty()
        .then_some("no host: each server is nats://HOST:PORT or tls://HOST:PORT")
}

/// The client certificate and its key: both or neither, each reported from
/// where it was set.
fn tls_pair(
    cert: Option<(PathBuf, Origin)>,
    key: Option<(PathBuf, Origin)>,
) -> Result<Option<(PathBuf, PathBuf)>, ConfigError> {
    match (cert, key) {
        (Some((cert, _)), Some((key, _))) => Ok(Some((cert, key))),
        (None, None) => Ok(None),
        (Some((cert, origin)), None) => Err(invalid(
            "fleet-tls-cert",
            cert.display(),
            &origin,
            "needs --fleet-tls-key, the certificate's private key",
        )),
        (None, Some((key, origin))) => Err(invalid(
            "fleet-tls-key",
            key.display(),
            &origin,
            "needs --fleet-tls-cert, the certificate it belongs to",
        )),
    }
}

pub(super) fn fleet(
    l: &Layers<'_>,
    netns: Option<&str>,
) -> Result<Option<FleetSettings>, ConfigError> {
    // Before any fleet key's value is checked: without `--fleet` the key
    // itself is the mistake, whatever its value.
    let Some((server, origin)) = l.get("fleet", |r| r.fleet.clone()) else {
        return match FLEET_KEYS
            .iter()
            .find_map(|(key, value)| l.get(key, value).map(|(v, origin)| (*key, v, origin)))
        {
            Some((key, value, origin)) => Err(invalid(
                key,
                value,
                &origin,
                "only means something with --fleet nats://HOST:PORT",
            )),
            None => Ok(None),
        };
    };
    for url in server.split(',') {
        let url = url.trim();
        if let Some(why) = bad_server(url) {
            let shown = if url.is_empty() { "\"\"" } else { url };
            return Err(invalid("fleet", shown, &origin, why));
        }
    }
    let file = |key: &'static str, field: fn(&RawConfig) -> Option<PathBuf>| {
        l.get(key, field)
            .map(|(path, origin)| {
                if path.is_file() {
                    Ok((path, origin))
                } else {
                    Err(invalid(key, path.display(), &origin, "no such file"))
                }
            })
            .transpose()
    };
    let creds = file("fleet-creds", |r| r.fleet_creds.clone())?.map(|(path, _)| path);
    let tls_ca = file("fleet-tls-ca", |r| r.fleet_tls_ca.clone())?.map(|(path, _)| path);
    let cert = file("fleet-tls-cert", |r| r.fleet_tls_cert.clone())?;
    let key = file("fleet-tls-key", |r| r.fleet_tls_key.clone())?;
    let member = l.get("fleet-name", |r| r.fleet_name.clone());
    let bucket = l.get("fleet-bucket", |r| r.fleet_bucket.clone());
    let allow = cidrs(l, "fleet-allow", |r| r.fleet_allow.clone())?;
    let rate = l.get("fleet-rate", |r| r.fleet_rate);
    let tls_client = tls_pair(cert, key)?;
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
