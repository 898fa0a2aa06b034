//! The fleet, pure: the bans guards share (a deny with its scope, reason,
//! origin and expiry), the rules a guard applies a peer's ban by, the
//! ceiling on how many it takes a second, the members' reports and the
//! view `guard fleet status` renders. The NATS side is `daemon::fleet`.

use std::{collections::BTreeMap, fmt::Write as _};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::level::Level;
use crate::config::parse_cidr;

/// Bans are keys `deny.<CIDR>` in the decisions bucket (`:` written `_`,
/// which NATS keys allow where they do not allow `:`).
const DENY: &str = "deny.";
/// A member not heard from for this long is shown as stale, and its level
/// no longer counts.
pub const STALE_MS: u64 = 10_000;

/// One ban shared with the fleet: the value of its key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedBan {
    /// What is denied, as a CIDR.
    pub net: String,
    pub reason: String,
    /// The member that made it.
    pub origin: String,
    /// Unix milliseconds: when it was made, and when it ends.
    pub made_ms: u64,
    pub until_ms: u64,
}

impl SharedBan {
    /// The key the decision is stored under.
    #[must_use]
    pub fn key(&self) -> String {
        key(&self.net)
    }
}

/// The key of a ban on `net`.
#[must_use]
pub fn key(net: &str) -> String {
    format!("{DENY}{}", net.replace(':', "_"))
}

/// What a guard accepts from its peers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    /// This member's name: its own decisions come back from the bucket and
    /// are not applied twice.
    pub me: String,
    /// The fleet allowlist (this guard's config, not the bucket): a peer's
    /// ban that touches it is refused.
    pub allow: Vec<IpNet>,
    /// The widest ban taken from a peer: IPv4 /16, IPv6 /32.
    pub widest_v4: u8,
    pub widest_v6: u8,
    /// The longest ban taken from a peer, in milliseconds.
    pub longest_ms: u64,
}

/// Why a peer's decision is not applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BanRefusal {
    /// This guard made it.
    Own,
    /// Its time is up.
    Expired,
    /// Not a decision this guard understands, or its key does not match
    /// its value.
    Malformed(String),
    /// Broader than the widest ban taken from a peer.
    TooWide(IpNet),
    /// It overlaps the fleet allowlist.
    Allowed { net: IpNet, allow: IpNet },
    /// Over the ceiling of decisions taken a second.
    OverCeiling,
}

impl BanRefusal {
    /// For the counters: one word per kind.
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Own => "own",
            Self::Expired => "expired",
            Self::Malformed(_) => "malformed",
            Self::TooWide(_) => "too_wide",
            Self::Allowed { .. } => "allowlisted",
            Self::OverCeiling => "over_ceiling",
        }
    }
}

impl std::fmt::Display for BanRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Own => f.write_str("this guard's own"),
            Self::Expired => f.write_str("already expired"),
            Self::Malformed(why) => write!(f, "malformed: {why}"),
            Self::TooWide(net) => write!(
                f,
                "{net} is wider than a peer may ban (IPv4 /16, IPv6 /32 at most)"
            ),
            Self::Allowed { net, allow } => {
                write!(f, "{net} overlaps {allow} in the fleet allowlist")
            }
            Self::OverCeiling => f.write_str("over the ceiling of decisions a second"),
        }
    }
}

/// Reads a decision stored under `key` and judges it: the decision and
/// its network to apply, or why not. The ceiling is the caller's, since a
/// refused decision must not spend it.
pub fn judge(
    key: &str,
    value: &[u8],
    rules: &Rules,
    now_ms: u64,
) -> Result<(SharedBan, IpNet), BanRefusal> {
    let decision: SharedBan = serde_json::from_slice(value)
        .map_err(|e| BanRefusal::Malformed(format!("`{key}`: {e}")))?;
    if decision.key() != key {
        return Err(BanRefusal::Malformed(format!(
            "`{key}` holds a decision about {}",
            decision.net
        )));
    }
    let net = parse_cidr(&decision.net)
        .map_err(|e| BanRefusal::Malformed(format!("`{key}`: {}: {e}", decision.net)))?;
    if decision.origin == rules.me {
        return Err(BanRefusal::Own);
    }
    if decision.until_ms <= now_ms {
        return Err(BanRefusal::Expired);
    }
    let widest = match net {
        IpNet::V4(_) => rules.widest_v4,
        IpNet::V6(_) => rules.widest_v6,
    };
    if net.prefix_len() < widest {
        return Err(BanRefusal::TooWide(net));
    }
    if let Some(allow) = overlap(&rules.allow, &net) {
        return Err(BanRefusal::Allowed { net, allow });
    }
    let decision = SharedBan {
        until_ms: decision
            .until_ms
            .min(now_ms.saturating_add(rules.longest_ms)),
        ..decision
    };
    Ok((decision, net))
}

/// The allow entry `net` overlaps (inside it, or around it), if any: a
/// peer's ban there is never applied.
#[must_use]
pub fn overlap(allow: &[IpNet], net: &IpNet) -> Option<IpNet> {
    allow
        .iter()
        .find(|a| a.contains(net) || net.contains(*a))
        .copied()
}

/// Whether this member takes back the decision under a key when its data
/// plane's ban there is lifted: only its own ban (`own_until_ms`, what it
/// published) still in force at `now_ms`, unless an operator's timed deny
/// of this member's holds the same network (`operators`: one key for
/// both) or a peer wrote the key last (`written_last` false:
/// [`written_last_by_me`]).
#[must_use]
pub fn takes_back(
    own_until_ms: Option<u64>,
    operators: bool,
    written_last: bool,
    now_ms: u64,
) -> bool {
    own_until_ms.is_some_and(|until| until > now_ms) && !operators && written_last
}

/// Whether the bucket's last writer of a key (`origin`; unknown counts as
/// this member) is this member, which may then delete it: members that
/// ban the same network write the same key, and a peer's later ban there
/// may outlast this member's own.
#[must_use]
pub fn written_last_by_me(origin: Option<&str>, me: &str) -> bool {
    origin.is_none_or(|origin| origin == me)
}

/// Whether this member writes its own decision under a key again when a
/// peer's lands there: its own (`own_until_ms`, what it published) ends
/// after the peer's at `theirs_until_ms` and is still in force at
/// `now_ms`. Members that ban the same network write the same key and the
/// last writer's stays, so without this a shorter ban written last would
/// cut the fleet's drop of the source short.
#[must_use]
pub fn outlasts(own_until_ms: Option<u64>, theirs_until_ms: u64, now_ms: u64) -> bool {
    own_until_ms.is_some_and(|until| until > theirs_until_ms && until > now_ms)
}

/// A token bucket over decisions taken from peers: `rate` a second, at
/// most `burst` at once.
#[derive(Clone, Debug)]
pub struct Ceiling {
    rate: u32,
    burst: u32,
    tokens: f64,
    at_ms: u64,
}

impl Ceiling {
    #[must_use]
    pub fn new(rate: u32, burst: u32, now_ms: u64) -> Self {
        Self {
            rate,
            burst,
            tokens: f64::from(burst),
            at_ms: now_ms,
        }
    }

    /// Takes one decision's token, if there is one.
    pub fn take(&mut self, now_ms: u64) -> bool {
        #[expect(
            clippy::cast_precision_loss,
            reason = "milliseconds since the last take"
        )]
        let elapsed = now_ms.saturating_sub(self.at_ms) as f64 / 1000.0;
        self.at_ms = self.at_ms.max(now_ms);
        self.tokens = (self.tokens + elapsed * f64::from(self.rate)).min(f64::from(self.burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// What a member publishes about itself every few seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub member: String,
    pub level: Level,
    /// conntrack fill, percent.
    pub fill: f64,
    pub count: u64,
    pub max: u64,
    /// The sources it limited most since its last report, busiest first.
    pub top: Vec<FleetSource>,
    /// Unix milliseconds.
    pub at_ms: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetSource {
    pub source: String,
    pub limited: u64,
}

/// The highest level among the other members heard from lately.
#[must_use]
pub fn neighbours(reports: &[Report], me: &str, now_ms: u64) -> Option<(Level, String)> {
    reports
        .iter()
        .filter(|r| r.member != me && now_ms.saturating_sub(r.at_ms) < STALE_MS)
        .max_by_key(|r| r.level)
        .map(|r| (r.level, r.member.clone()))
}

/// What this guard knows of its fleet, as `guard fleet status` shows it
/// (written by the running guard to its runtime directory).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FleetView {
    pub member: String,
    pub server: String,
    pub bucket: String,
    pub connected: bool,
    /// Unix milliseconds since when `connected` has been what it is.
    pub since_ms: u64,
    pub members: Vec<Member>,
    /// Peers' bans applied here now, and counts since start.
    pub active: usize,
    pub applied: u64,
    pub published: u64,
    /// Local bans not yet published (made while cut off).
    pub pending: usize,
    pub refused: BTreeMap<String, u64>,
    /// Milliseconds from a peer's ban to its entry in this guard's maps,
    /// the last ones seen (at most [`DELAYS`]).
    pub delays_ms: Vec<u64>,
    pub at_ms: u64,
}

/// How many propagation delays the view keeps.
pub const DELAYS: usize = 1000;

/// One member as this guard sees it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub report: Report,
    /// Bans of its origin in the bucket now.
    pub bans: usize,
}

impl FleetView {
    /// The `q`-th quantile (0..=1) of the delays kept, if any.
    #[must_use]
    pub fn delay_quantile(&self, q: f64) -> Option<u64> {
        let mut d = self.delays_ms.clone();
        d.sort_unstable();
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "an index into a short list"
        )]
        let i = ((d.len().saturating_sub(1)) as f64 * q).round() as usize;
        d.get(i).copied()
    }

    /// The text `guard fleet status` prints.
    #[must_use]
    pub fn render(&self, now_ms: u64) -> String {
        let ago = |ms: u64| format_secs(now_ms.saturating_sub(ms));
        let mut out = format!(
            "fleet: member {} of bucket {} on {}: {} for {}\n",
            self.member,
            self.bucket,
            self.server,
            if self.connected {
                "connected"
            } else {
                "DISCONNECTED (protecting with what it has)"
            },
            ago(self.since_ms)
        );
        let _ = writeln!(
            out,
            "bans: {} from peers in force, {} applied, {} published, {} waiting to be published{}",
            self.active,
            self.applied,
            self.published,
            self.pending,
            if self.refused.is_empty() {
                String::new()
            } else {
                format!(
                    "; refused: {}",
                    self.refused
                        .iter()
                        .map(|(k, n)| format!("{n} {k}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        );
        if let (Some(p50), Some(p99)) = (self.delay_quantile(0.5), self.delay_quantile(0.99)) {
            let _ = writeln!(
                out,
                "propagation (a peer's ban to this guard's maps): p50 {p50} ms, p99 {p99} ms over {}",
                self.delays_ms.len()
            );
        }
        let _ = writeln!(
            out,
            "\n{:<24} {:>9} {:<9} {:>6} {:>6}  top limited",
            "MEMBER", "SEEN", "LEVEL", "FILL", "BANS"
        );
        for m in &self.members {
            let r = &m.report;
            let stale = now_ms.saturating_sub(r.at_ms) >= STALE_MS;
            let _ = writeln!(
                out,
                "{:<24} {:>9} {:<9} {:>5.1}% {:>6}  {}",
                if r.member == self.member {
                    format!("{} (this)", r.member)
                } else {
                    r.member.clone()
                },
                format!("{} ago{}", ago(r.at_ms), if stale { "!" } else { "" }),
                r.level.name(),
                r.fill,
                m.bans,
                r.top
                    .iter()
                    .map(|t| format!("{} ({})", t.source, t.limited))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        out
    }
}

fn format_secs(ms: u64) -> String {
    let s = ms / 1000;
    if s < 120 {
        format!("{s}s")
    } else if s < 7200 {
        format!("{}m", s / 60)
    } else {
        format!("{}h", s / 3600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ban_that_ends_later_is_written_again_over_a_shorter_one() {
        assert!(outlasts(Some(9_000), 5_000, 1_000));
        assert!(!outlasts(Some(5_000), 9_000, 1_000), "theirs ends later");
        assert!(!outlasts(Some(5_000), 5_000, 1_000), "the same end");
        assert!(!outlasts(Some(900), 500, 1_000), "ours is over");
        assert!(!outlasts(None, 5_000, 1_000), "none of ours");
    }

    /// A's ban of a network expires while B's later ban of it is in the
    /// bucket: A must not delete B's.
    #[test]
    fn only_the_last_writer_of_a_key_deletes_it() {
        assert!(written_last_by_me(None, "edge-a"));
        assert!(written_last_by_me(Some("edge-a"), "edge-a"));
        assert!(!written_last_by_me(Some("edge-b"), "edge-a"));
    }

    #[test]
    fn a_lifted_ban_is_taken_back_only_while_it_is_this_members_own() {
        let me = "edge-a";
        let mine = |origin| written_last_by_me(origin, me);
        assert!(takes_back(Some(2_000), false, mine(None), 1_000));
        assert!(takes_back(Some(2_000), false, mine(Some(me)), 1_000));
        // Expired (anyone clears it), or never published.
        assert!(!takes_back(Some(1_000), false, mine(None), 1_000));
        assert!(!takes_back(None, false, mine(None), 1_000));
        // An operator's timed deny holds the key, or a peer wrote it since.
        assert!(!takes_back(Some(2_000), true, mine(Some(me)), 1_000));
        assert!(!takes_back(Some(2_000), false, mine(Some("edge-b")), 1_000));
    }

    fn rules() -> Rules {
        Rules {
            me: "edge-a".into(),
            allow: vec!["198.18.7.0/24".parse().unwrap()],
            widest_v4: 16,
            widest_v6: 32,
            longest_ms: 3_600_000,
        }
    }

    fn ban(net: &str, origin: &str, until_ms: u64) -> (String, Vec<u8>) {
        let d = SharedBan {
            net: net.into(),
            reason: "flood".into(),
            origin: origin.into(),
            made_ms: 1_000,
            until_ms,
        };
        (d.key(), serde_json::to_vec(&d).unwrap())
    }

    #[test]
    fn keys_are_valid_nats_keys_and_ipv6_keeps_its_colons_out() {
        assert_eq!(key("198.18.0.7/32"), "deny.198.18.0.7/32");
        assert_eq!(key("2001:db8::/48"), "deny.2001_db8__/48");
        for k in [key("198.18.0.7/32"), key("2001:db8::/48")] {
            assert!(
                k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-/_=.".contains(c)),
                "{k}"
            );
        }
    }

    #[test]
    fn a_peers_ban_is_taken_and_capped_to_the_longest() {
        let (k, v) = ban("198.18.0.7/32", "edge-b", 99_000_000);
        let (d, net) = judge(&k, &v, &rules(), 2_000).unwrap();
        assert_eq!(net, "198.18.0.7/32".parse::<IpNet>().unwrap());
        assert_eq!(d.until_ms, 2_000 + 3_600_000);
        assert_eq!(d.origin, "edge-b");
    }

    #[test]
    fn own_expired_wide_allowlisted_and_forged_bans_are_refused() {
        let r = rules();
        let (k, v) = ban("198.18.0.7/32", "edge-a", 9_000);
        assert_eq!(judge(&k, &v, &r, 2_000), Err(BanRefusal::Own));
        let (k, v) = ban("198.18.0.7/32", "edge-b", 2_000);
        assert_eq!(judge(&k, &v, &r, 2_000), Err(BanRefusal::Expired));
        let (k, v) = ban("198.0.0.0/8", "edge-b", 9_000);
        assert!(matches!(
            judge(&k, &v, &r, 2_000),
            Err(BanRefusal::TooWide(_))
        ));
        let (k, v) = ban("2001::/16", "edge-b", 9_000);
        assert!(matches!(
            judge(&k, &v, &r, 2_000),
            Err(BanRefusal::TooWide(_))
        ));
        // Inside the allowlist, and around it: both refused.
        let (k, v) = ban("198.18.7.9/32", "edge-b", 9_000);
        assert!(matches!(
            judge(&k, &v, &r, 2_000),
            Err(BanRefusal::Allowed { .. })
        ));
        let (k, v) = ban("198.18.0.0/16", "edge-b", 9_000);
        assert!(matches!(
            judge(&k, &v, &r, 2_000),
            Err(BanRefusal::Allowed { .. })
        ));
        // A value under another ban's key.
        let (_, v) = ban("198.18.0.7/32", "edge-b", 9_000);
        assert!(matches!(
            judge("deny.198.18.0.8/32", &v, &r, 2_000),
            Err(BanRefusal::Malformed(_))
        ));
        assert!(matches!(
            judge("deny.x", b"{\"net\": 1}", &r, 2_000),
            Err(BanRefusal::Malformed(_))
        ));
        let (k, v) = ban("198.18.0.1/24", "edge-b", 9_000);
        assert!(matches!(
            judge(&k, &v, &r, 2_000),
            Err(BanRefusal::Malformed(_))
        ));
    }

    #[test]
    fn the_ceiling_lets_a_burst_through_then_its_rate() {
        let mut c = Ceiling::new(10, 20, 0);
        assert_eq!((0..50).filter(|_| c.take(0)).count(), 20);
        assert!(!c.take(50));
        assert!(c.take(100), "one token a tenth of a second");
        assert!(!c.take(100));
        assert_eq!(
            (0..50).filter(|_| c.take(10_000)).count(),
            20,
            "never above the burst"
        );
    }

    #[test]
    fn neighbours_are_the_highest_level_of_the_others_seen_lately() {
        let report = |member: &str, level, at_ms| Report {
            member: member.into(),
            level,
            fill: 0.0,
            count: 0,
            max: 0,
            top: Vec::new(),
            at_ms,
        };
        let reports = [
            report("edge-a", Level::Critical, 20_000),
            report("edge-b", Level::Elevated, 20_000),
            report("edge-c", Level::High, 19_000),
            report("edge-d", Level::Critical, 5_000),
        ];
        assert_eq!(
            neighbours(&reports, "edge-a", 20_000),
            Some((Level::High, "edge-c".into())),
            "not itself, not a stale member"
        );
        assert_eq!(neighbours(&reports[..1], "edge-a", 20_000), None);
    }

    #[test]
    fn the_view_gives_quantiles_and_renders_members() {
        let view = FleetView {
            member: "edge-a".into(),
            server: "nats://127.0.0.1:4222".into(),
            bucket: "guard".into(),
            connected: true,
            since_ms: 0,
            members: vec![Member {
                report: Report {
                    member: "edge-b".into(),
                    level: Level::High,
                    fill: 72.5,
                    count: 7,
                    max: 10,
                    top: vec![FleetSource {
                        source: "198.18.0.7".into(),
                        limited: 40,
                    }],
                    at_ms: 59_000,
                },
                bans: 3,
            }],
            delays_ms: (1..=100).collect(),
            ..FleetView::default()
        };
        assert_eq!(view.delay_quantile(0.5), Some(51));
        assert_eq!(view.delay_quantile(0.99), Some(99));
        let text = view.render(60_000);
        assert!(text.contains("connected for 60s"), "{text}");
        assert!(text.contains("p50 51 ms, p99 99 ms over 100"), "{text}");
        assert!(
            text.lines().any(|l| l.starts_with("edge-b")
                && l.contains("1s ago")
                && l.contains("high")
                && l.contains("72.5%")
                && l.contains("198.18.0.7 (40)")),
            "{text}"
        );
    }
}
