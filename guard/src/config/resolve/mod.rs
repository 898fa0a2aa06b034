//! From [`RawConfig`] to [`Settings`]: the flags over the file over the
//! defaults, every value checked, an error naming the key, the value, where
//! it came from and why it is wrong.

use std::{collections::HashSet, fs, path::Path, time::Duration};

use guard_common::{
    bucket::{MAX_BURST, MAX_RATE},
    config::FLOW_CLASSES,
    maps::{
        DEFAULT_LIST_CAPACITY, DEFAULT_MAX_PREFIXES, DEFAULT_MAX_SOURCES, DEFAULT_MAX_UDP_FLOWS,
    },
    ports::PORT_SLOTS,
};
use ipnet::IpNet;

use super::{
    error::ConfigError,
    netns::netns_name_error,
    raw::{
        BucketPolicy, Enforcement, Fingerprints, RawConfig, Reject, SourceLimits, SynCookies,
        XdpModeChoice, defaults,
    },
    settings::{ConntrackSettings, CookieSettings, DeclaredOpen, Rate, Settings, list_overflow},
};

mod fleet;
mod layers;
use fleet::fleet;
use layers::{Layers, Origin, cidrs, invalid};

/// Reads and parses a config file.
pub fn read_file(path: &Path) -> Result<RawConfig, ConfigError> {
    let text = fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_path_buf(),
        message: e.to_string().trim_end().to_owned(),
    })
}

/// The limit keys: per source, per prefix, global, events.
struct Limits {
    source: [Rate; FLOW_CLASSES],
    prefix: [Rate; FLOW_CLASSES],
    global: Rate,
    events: Rate,
}

/// The grouping keys: prefix lengths.
struct Grouping {
    source_prefix_v4: u8,
    source_prefix_v6: u8,
    prefix_v4: u8,
    prefix_v6: u8,
}

impl Settings {
    /// Flags over the file over the defaults, validated.
    pub fn resolve(
        flags: &RawConfig,
        file: Option<(&RawConfig, &Path)>,
    ) -> Result<Self, ConfigError> {
        let l = Layers { flags, file };
        let ifaces = interfaces(&l)?;
        let limits = limits(&l)?;
        let grouping = grouping(&l)?;
        let list_capacity = capacity(
            &l,
            "list-capacity",
            |r| r.list_capacity,
            DEFAULT_LIST_CAPACITY,
        )?;
        let (allow, deny) = lists(&l, list_capacity)?;
        let netns = match l.get("netns", |r| r.netns.clone()) {
            Some((name, origin)) => match netns_name_error(&name) {
                Some(why) => return Err(invalid("netns", &name, &origin, why)),
                None => Some(name),
            },
            None => None,
        };
        Ok(Self {
            ifaces,
            xdp_mode: l.or("xdp-mode", |r| r.xdp_mode, XdpModeChoice::Auto).0,
            fleet: fleet(&l, netns.as_deref())?,
            netns,
            force: flags.force || file.is_some_and(|(f, _)| f.force),
            mode: l.or("mode", |r| r.mode, Enforcement::Monitor).0,
            source_limits: l
                .or("source-limits", |r| r.source_limits, SourceLimits::Pressure)
                .0,
            source: limits.source,
            prefix: limits.prefix,
            global: limits.global,
            open_ports: open_ports(&l)?,
            events: limits.events,
            source_prefix_v4: grouping.source_prefix_v4,
            source_prefix_v6: grouping.source_prefix_v6,
            prefix_v4: grouping.prefix_v4,
            prefix_v6: grouping.prefix_v6,
            udp_flow_idle: seconds(
                &l,
                "udp-flow-idle",
                |r| r.udp_flow_idle,
                defaults::UDP_FLOW_IDLE_SECS,
                1..=86_400,
            )?,
            allow,
            deny,
            ban_threshold: l
                .or(
                    "ban-threshold",
                    |r| r.ban_threshold,
                    defaults::BAN_THRESHOLD,
                )
                .0,
            ban_window: seconds(
                &l,
                "ban-window",
                |r| r.ban_window,
                defaults::BAN_WINDOW_SECS,
                1..=86_400,
            )?,
            ban_duration: seconds(
                &l,
                "ban-duration",
                |r| r.ban_duration,
                defaults::BAN_DURATION_SECS,
                1..=7 * 86_400,
            )?,
            max_sources: capacity(&l, "max-sources", |r| r.max_sources, DEFAULT_MAX_SOURCES)?,
            max_prefixes: capacity(&l, "max-prefixes", |r| r.max_prefixes, DEFAULT_MAX_PREFIXES)?,
            max_udp_flows: capacity(
                &l,
                "max-udp-flows",
                |r| r.max_udp_flows,
                DEFAULT_MAX_UDP_FLOWS,
            )?,
            list_capacity,
            summary_interval: seconds(
                &l,
                "summary-interval",
                |r| r.summary_interval,
                defaults::SUMMARY_INTERVAL_SECS,
                0..=3600,
            )?,
            metrics: l.get("metrics", |r| r.metrics).map(|(addr, _)| addr),
            conntrack: conntrack(&l, flags.dry_run || file.is_some_and(|(f, _)| f.dry_run))?,
            cookies: cookies(&l)?,
            reject: l.or("reject", |r| r.reject, Reject::Drop).0,
            fingerprints: l
                .or("fingerprints", |r| r.fingerprints, Fingerprints::Enforce)
                .0,
        })
    }
}

fn interfaces(l: &Layers<'_>) -> Result<Vec<String>, ConfigError> {
    let (ifaces, origin) = l
        .get("iface", |r| r.iface.clone())
        .ok_or(ConfigError::NoInterface)?;
    if ifaces.is_empty() {
        return Err(ConfigError::NoInterface);
    }
    let mut seen = HashSet::new();
    for iface in &ifaces {
        if !seen.insert(iface) {
            return Err(invalid(
                "iface",
                iface,
                &origin,
                "listed twice: list each interface once",
            ));
        }
    }
    Ok(ifaces)
}

fn limits(l: &Layers<'_>) -> Result<Limits, ConfigError> {
    Ok(Limits {
        source: [
            rate_pair(l, "syn-rate", "syn-burst", defaults::SOURCE[0], |r| {
                (r.syn_rate, r.syn_burst)
            })?,
            rate_pair(l, "udp-rate", "udp-burst", defaults::SOURCE[1], |r| {
                (r.udp_rate, r.udp_burst)
            })?,
            rate_pair(l, "icmp-rate", "icmp-burst", defaults::SOURCE[2], |r| {
                (r.icmp_rate, r.icmp_burst)
            })?,
            rate_pair(l, "other-rate", "other-burst", defaults::SOURCE[3], |r| {
                (r.other_rate, r.other_burst)
            })?,
        ],
        prefix: [
            rate_pair(
                l,
                "prefix-syn-rate",
                "prefix-syn-burst",
                defaults::PREFIX[0],
                |r| (r.prefix_syn_rate, r.prefix_syn_burst),
            )?,
            rate_pair(
                l,
                "prefix-udp-rate",
                "prefix-udp-burst",
                defaults::PREFIX[1],
                |r| (r.prefix_udp_rate, r.prefix_udp_burst),
            )?,
            rate_pair(
                l,
                "prefix-icmp-rate",
                "prefix-icmp-burst",
                defaults::PREFIX[2],
                |r| (r.prefix_icmp_rate, r.prefix_icmp_burst),
            )?,
            rate_pair(
                l,
                "prefix-other-rate",
                "prefix-other-burst",
                defaults::PREFIX[3],
                |r| (r.prefix_other_rate, r.prefix_other_burst),
            )?,
        ],
        global: rate_pair(l, "global-rate", "global-burst", defaults::GLOBAL, |r| {
            (r.global_rate, r.global_burst)
        })?,
        events: rate_pair(l, "event-rate", "event-burst", defaults::EVENTS, |r| {
            (r.event_rate, r.event_burst)
        })?,
    })
}

fn grouping(l: &Layers<'_>) -> Result<Grouping, ConfigError> {
    let (source_prefix_v4, s4) = prefix_len(
        l,
        "source-prefix-v4",
        |r| r.source_prefix_v4,
        defaults::SOURCE_PREFIX_V4,
        32,
    )?;
    let (source_prefix_v6, s6) = prefix_len(
        l,
        "source-prefix-v6",
        |r| r.source_prefix_v6,
        defaults::SOURCE_PREFIX_V6,
        128,
    )?;
    let (prefix_v4, _) = prefix_len(l, "prefix-v4", |r| r.prefix_v4, defaults::PREFIX_V4, 32)?;
    let (prefix_v6, _) = prefix_len(l, "prefix-v6", |r| r.prefix_v6, defaults::PREFIX_V6, 128)?;
    for (source, origin, prefix, skey, pkey) in [
        (
            source_prefix_v4,
            s4,
            prefix_v4,
            "source-prefix-v4",
            "prefix-v4",
        ),
        (
            source_prefix_v6,
            s6,
            prefix_v6,
            "source-prefix-v6",
            "prefix-v6",
        ),
    ] {
        if source < prefix {
            return Err(invalid(
                skey,
                source,
                &origin,
                format!(
                    "shorter than {pkey} = {prefix}: a source must be at least as specific as its prefix"
                ),
            ));
        }
    }
    Ok(Grouping {
        source_prefix_v4,
        source_prefix_v6,
        prefix_v4,
        prefix_v6,
    })
}

fn lists(l: &Layers<'_>, capacity: u32) -> Result<(Vec<IpNet>, Vec<IpNet>), ConfigError> {
    let allow = cidrs(l, "allow", |r| r.allow.clone())?;
    let deny = cidrs(l, "deny", |r| r.deny.clone())?;
    if let Some(both) = allow.iter().find(|net| deny.contains(net)) {
        let (_, origin) = l.or("deny", |r| r.deny.clone(), Vec::new());
        return Err(invalid(
            "deny",
            both,
            &origin,
            "also in allow: an address range is either allowed or denied",
        ));
    }
    if let Some((family, n, allowed)) = list_overflow(&allow, &deny, capacity) {
        // The lists share the capacity: counting allow first, the one named
        // is the one whose entries pass it, with its own origin.
        let origin = |key, list: fn(&RawConfig) -> &Option<Vec<String>>| {
            l.or(key, |r| list(r).as_ref().map(|_| ()), ()).1
        };
        let limit = format!(
            "more than the {capacity} entries allow and deny hold together per family (list-capacity)"
        );
        return Err(if allowed > capacity as usize {
            invalid(
                "allow",
                format!("{allowed} {family} entries"),
                &origin("allow", |r| &r.allow),
                limit,
            )
        } else {
            invalid(
                "deny",
                format!("{} {family} entries", n - allowed),
                &origin("deny", |r| &r.deny),
                if allowed == 0 {
                    limit
                } else {
                    let from = origin("allow", |r| &r.allow);
                    format!("with allow's {allowed} ({from}), {n}, {limit}")
                },
            )
        });
    }
    Ok((allow, deny))
}

fn conntrack(l: &Layers<'_>, dry_run: bool) -> Result<ConntrackSettings, ConfigError> {
    let (target, origin) = l.or(
        "conntrack-target",
        |r| r.conntrack_target,
        defaults::CONNTRACK_TARGET,
    );
    if !(50..=95).contains(&target) {
        return Err(invalid(
            "conntrack-target",
            target,
            &origin,
            "must be between 50 and 95 percent: the controller needs room to act before the table is full",
        ));
    }
    let memory_mib = match l.get("conntrack-memory", |r| r.conntrack_memory) {
        Some((0, origin)) => {
            return Err(invalid(
                "conntrack-memory",
                0,
                &origin,
                "a table needs at least 1 MiB",
            ));
        }
        other => other.map(|(mib, _)| mib),
    };
    let notrack_ports = match l.get("notrack-port", |r| r.notrack_port.clone()) {
        Some((ports, origin)) => {
            if let Some(zero) = ports.iter().find(|p| **p == 0) {
                return Err(invalid(
                    "notrack-port",
                    zero,
                    &origin,
                    "port 0 is not a port",
                ));
            }
            ports
        }
        None => Vec::new(),
    };
    Ok(ConntrackSettings {
        notrack_ports,
        target: f64::from(target),
        memory_mib,
        buckets: l
            .or(
                "conntrack-buckets",
                |r| r.conntrack_buckets,
                BucketPolicy::Quarter,
            )
            .0,
        calm: seconds(l, "calm", |r| r.calm, defaults::CALM_SECS, 1..=3600)?,
        dry_run,
    })
}

/// `--open-port`: each `PORT` or `LOW-HIGH`, for both protocols or with
/// `/tcp` or `/udp`.
fn open_ports(l: &Layers<'_>) -> Result<DeclaredOpen, ConfigError> {
    let mut out = DeclaredOpen::default();
    let Some((specs, origin)) = l.get("open-port", |r| r.open_port.clone()) else {
        return Ok(out);
    };
    for spec in &specs {
        let bad = |why: &str| invalid("open-port", spec, &origin, why);
        let (range, proto) = match spec.split_once('/') {
            Some((range, proto)) => (range, Some(proto)),
            None => (spec.as_str(), None),
        };
        let port = |s: &str| s.trim().parse::<u16>().ok().filter(|&p| p != 0);
        let (lo, hi) = range.split_once('-').unwrap_or((range, range));
        let (Some(lo), Some(hi)) = (port(lo), port(hi)) else {
            return Err(bad(
                "a port is 1 to 65535: PORT or LOW-HIGH, then /tcp or /udp for one protocol",
            ));
        };
        if lo > hi {
            return Err(bad("the range runs backwards"));
        }
        let (tcp, udp) = match proto {
            None => (true, true),
            Some("tcp") => (true, false),
            Some("udp") => (false, true),
            Some(_) => return Err(bad("the protocol is tcp or udp")),
        };
        if tcp {
            out.tcp.push((lo, hi));
        }
        if udp {
            out.udp.push((lo, hi));
        }
    }
    Ok(out)
}

fn cookies(l: &Layers<'_>) -> Result<CookieSettings, ConfigError> {
    let (mode, _) = l.or("syn-cookies", |r| r.syn_cookies, SynCookies::Auto);
    let ports = match l.get("cookie-port", |r| r.cookie_port.clone()) {
        Some((ports, origin)) => {
            if let Some(zero) = ports.iter().find(|p| **p == 0) {
                return Err(invalid(
                    "cookie-port",
                    zero,
                    &origin,
                    "port 0 is not a port",
                ));
            }
            let mut ports = ports;
            ports.sort_unstable();
            ports.dedup();
            if ports.len() > PORT_SLOTS as usize {
                return Err(invalid(
                    "cookie-port",
                    format!("{} ports", ports.len()),
                    &origin,
                    format!(
                        "at most {PORT_SLOTS} ports: the XDP program counts SYNs per port in that many slots"
                    ),
                ));
            }
            ports
        }
        None => Vec::new(),
    };
    let (mss, origin) = l.or("cookie-mss", |r| r.cookie_mss, defaults::COOKIE_MSS);
    if !(1240..=9000).contains(&mss) {
        return Err(invalid(
            "cookie-mss",
            mss,
            &origin,
            "must be between 1240 (IPv6's minimum MTU, less headers) and 9000 (jumbo frames)",
        ));
    }
    let wscale = l.get("cookie-wscale", |r| r.cookie_wscale);
    if let Some((wscale, origin)) = &wscale
        && *wscale > 14
    {
        return Err(invalid(
            "cookie-wscale",
            wscale,
            origin,
            "TCP window scale is at most 14",
        ));
    }
    let (synack_retries, origin) = l.or(
        "synack-retries",
        |r| r.synack_retries,
        defaults::SYNACK_RETRIES,
    );
    if synack_retries == 0 {
        return Err(invalid(
            "synack-retries",
            synack_retries,
            &origin,
            "a client whose SYN-ACK is lost needs one retransmission at least",
        ));
    }
    Ok(CookieSettings {
        mode,
        ports,
        mss,
        synack_retries,
        wscale: wscale.map(|(w, _)| w),
        host_wscale: defaults::LINUX_WSCALE,
        tsecr_checked: false,
        verified: seconds(
            l,
            "verified-for",
            |r| r.verified_for,
            defaults::VERIFIED_SECS,
            1..=86_400,
        )?,
    })
}

fn rate_pair(
    l: &Layers<'_>,
    rate_key: &'static str,
    burst_key: &'static str,
    (default_rate, default_burst): (u64, u32),
    field: impl Fn(&RawConfig) -> (Option<u64>, Option<u32>),
) -> Result<Rate, ConfigError> {
    let (rate, rate_origin) = l.or(rate_key, |r| field(r).0, default_rate);
    let (burst, burst_origin) = l.or(burst_key, |r| field(r).1, default_burst);
    if rate > MAX_RATE {
        return Err(invalid(
            rate_key,
            rate,
            &rate_origin,
            format!(
                "more than {MAX_RATE}/s (one per nanosecond) cannot be expressed; 0 means no limit"
            ),
        ));
    }
    if burst == 0 && !matches!(burst_origin, Origin::Default) && rate == 0 {
        return Err(invalid(
            &format!("{rate_key} = 0, {burst_key}"),
            burst,
            &burst_origin,
            format!(
                "a rate of 0 means no limit but a burst of 0 admits nothing; to not limit, set {rate_key} = 0 alone; to drop a source, use deny"
            ),
        ));
    }
    if burst == 0 && rate > 0 {
        return Err(invalid(
            burst_key,
            burst,
            &burst_origin,
            format!("a burst of 0 admits nothing; it must be between 1 and {MAX_BURST}"),
        ));
    }
    Ok(Rate { rate, burst })
}

fn prefix_len(
    l: &Layers<'_>,
    key: &'static str,
    field: impl Fn(&RawConfig) -> Option<u8>,
    default: u8,
    max: u8,
) -> Result<(u8, Origin), ConfigError> {
    let (len, origin) = l.or(key, field, default);
    if len == 0 || len > max {
        return Err(invalid(
            key,
            len,
            &origin,
            format!("a prefix length must be between 1 and {max}"),
        ));
    }
    Ok((len, origin))
}

fn seconds(
    l: &Layers<'_>,
    key: &'static str,
    field: impl Fn(&RawConfig) -> Option<u64>,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<Duration, ConfigError> {
    let (secs, origin) = l.or(key, field, default);
    if !range.contains(&secs) {
        return Err(invalid(
            key,
            secs,
            &origin,
            format!(
                "must be between {} and {} seconds",
                range.start(),
                range.end()
            ),
        ));
    }
    Ok(Duration::from_secs(secs))
}

fn capacity(
    l: &Layers<'_>,
    key: &'static str,
    field: impl Fn(&RawConfig) -> Option<u32>,
    default: u32,
) -> Result<u32, ConfigError> {
    const RANGE: std::ops::RangeInclusive<u32> = 1024..=16_777_216;
    let (n, origin) = l.or(key, field, default);
    if !RANGE.contains(&n) {
        return Err(invalid(
            key,
            n,
            &origin,
            format!(
                "must be between {} and {} entries",
                RANGE.start(),
                RANGE.end()
            ),
        ));
    }
    Ok(n)
}
