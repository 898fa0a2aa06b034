//! `--fleet` in the run loop: this guard's bans go out to the fleet, and
//! the peers' come in, judged (`model::fleet::judge`: origin, expiry,
//! width, the fleet allowlist), paced by the ceiling, and handed to the
//! kept lists as deny entries, which put them in the maps. Everything is
//! timed here by the decisions' own clock, so expiry needs no network:
//! cut off, a guard keeps what it has, drops what expires, and keeps its
//! own bans in the link's outbox until it is back.

mod link;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
};

use bytes::Bytes;
use guard_common::SourceKey;
use ipnet::IpNet;
use tokio::sync::mpsc;

pub use self::link::In;
use self::link::Out;
use crate::{
    config::FleetSettings,
    host::{clock::unix_now_ms, status_file},
    model::{
        fleet::{
            BanRefusal, Ceiling, DELAYS, FleetSource, FleetView, Member, Report, Rules, SharedBan,
            judge, neighbours, outlasts, overlap, takes_back, written_last_by_me,
        },
        level::Level,
    },
};

/// A peer's ban is never taken for longer than a day.
const LONGEST_MS: u64 = 24 * 3600 * 1000;
/// How long a lift is remembered against the ban's event arriving after
/// it: events are read within milliseconds.
const LIFTS_KEPT_NS: u64 = 600 * 1_000_000_000;
/// Members report every two seconds.
const REPORT_EVERY_MS: u64 = 2000;
/// Bans waiting for the ceiling, at most; beyond, they are refused.
const WAITING_MAX: usize = 65_536;
/// A ban of this guard's with less time left is left to expire: its end
/// in the data plane and in the bucket differ by the event's way here.
const ENDING_MS: u64 = 2000;

/// What changed in the peers' bans in force here.
#[derive(Debug, Default)]
pub struct Change {
    /// Newly in force: drop them, and delete their conntrack entries.
    pub added: Vec<IpNet>,
    /// Something left (expired, deleted, or replaced).
    pub removed: bool,
}

impl Change {
    #[must_use]
    pub fn any(&self) -> bool {
        self.removed || !self.added.is_empty()
    }
}

/// The run loop's side of the fleet.
pub struct Fleet {
    settings: FleetSettings,
    /// This guard's own allow list, as last given.
    local_allow: Vec<IpNet>,
    out: mpsc::UnboundedSender<Out>,
    input: mpsc::Receiver<In>,
    rules: Rules,
    ceiling: Ceiling,
    /// Peers' bans in force here, by key.
    in_force: BTreeMap<String, (SharedBan, IpNet)>,
    /// Peers' bans waiting for the ceiling, by key.
    waiting: BTreeMap<String, Bytes>,
    /// The origin of every ban in the bucket, by key.
    origins: BTreeMap<String, String>,
    /// This guard's bans, by key: until when (unix ms), and the value
    /// published.
    own: BTreeMap<String, (u64, Bytes)>,
    /// The sources of those its data plane made, by key.
    own_sources: BTreeMap<String, SourceKey>,
    /// This guard's data-plane bans a signature lifted, by key: when
    /// (CLOCK_MONOTONIC ns). A ban's event still on its way is not
    /// published after it.
    lifted_at: BTreeMap<String, u64>,
    /// Timed deny entries of the kept lists, as published.
    kept: BTreeMap<IpNet, u64>,
    members: BTreeMap<String, Report>,
    /// Limited events by source since the last report.
    limited: BTreeMap<String, u64>,
    view: FleetView,
    runtime_dir: PathBuf,
    next_report_ms: u64,
    /// Refusal kinds already logged: one line each, then counters.
    said: BTreeSet<&'static str>,
    /// The cut off from NATS has been said.
    cut_off: bool,
}

/// Its view goes with it: a guard that stopped shows none.
impl Drop for Fleet {
    fn drop(&mut self) {
        status_file::remove_fleet(&self.runtime_dir);
    }
}

impl Fleet {
    /// Starts the link. `allow` is this guard's own allow list: a peer's
    /// ban that overlaps it is refused like one in the fleet allowlist.
    pub fn start(settings: &FleetSettings, allow: &[IpNet], runtime_dir: PathBuf) -> Self {
        let (tx, input) = mpsc::channel(4096);
        let out = link::spawn(settings.clone(), tx);
        let now = unix_now_ms();
        tracing::info!(
            "fleet: member {} of bucket {} through {}; peers' bans at most {}/s, never over the fleet allowlist ({} entries)",
            settings.member,
            settings.bucket,
            settings.server,
            settings.rate,
            settings.allow.len()
        );
        Self {
            local_allow: allow.to_vec(),
            rules: Rules {
                me: settings.member.clone(),
                allow: settings.allow.iter().chain(allow).copied().collect(),
                widest_v4: 16,
                widest_v6: 32,
                longest_ms: LONGEST_MS,
            },
            ceiling: Ceiling::new(settings.rate, settings.rate.saturating_mul(2), now),
            settings: settings.clone(),
            out,
            input,
            in_force: BTreeMap::new(),
            waiting: BTreeMap::new(),
            origins: BTreeMap::new(),
            own: BTreeMap::new(),
            own_sources: BTreeMap::new(),
            lifted_at: BTreeMap::new(),
            kept: BTreeMap::new(),
            members: BTreeMap::new(),
            limited: BTreeMap::new(),
            view: FleetView {
                member: settings.member.clone(),
                server: settings.server.clone(),
                bucket: settings.bucket.clone(),
                since_ms: now,
                ..FleetView::default()
            },
            runtime_dir,
            next_report_ms: now,
            said: BTreeSet::new(),
            cut_off: false,
        }
    }

    /// This guard's allow list changed (a reload, `guard allow add`): peers'
    /// bans in force that now overlap it are lifted, like those refused.
    fn set_local_allow(&mut self, allow: &[IpNet]) -> Change {
        let mut change = Change::default();
        if allow == self.local_allow.as_slice() {
            return change;
        }
        self.local_allow = allow.to_vec();
        self.rules.allow = self.settings.allow.iter().chain(allow).copied().collect();
        let rules = &self.rules;
        self.in_force.retain(|_, (d, net)| {
            let allowed = overlap(&rules.allow, net).is_some();
            if allowed {
                tracing::info!(
                    "fleet: deny {net} from {} lifted: it overlaps the allow list now",
                    d.origin
                );
                change.removed = true;
            }
            !allowed
        });
        change
    }

    /// The next message from the link (for the run loop's `select!`).
    pub async fn recv(&mut self) -> Option<In> {
        self.input.recv().await
    }

    /// Every peer ban in force here.
    #[must_use]
    pub fn nets(&self) -> Vec<IpNet> {
        self.in_force.values().map(|(_, net)| *net).collect()
    }

    /// The highest level among the other members heard from lately.
    #[must_use]
    pub fn neighbours(&self) -> Option<(Level, String)> {
        let reports: Vec<Report> = self.members.values().cloned().collect();
        neighbours(&reports, &self.settings.member, unix_now_ms())
    }

    /// A message from the link and every one queued behind it: one
    /// change for the batch, so a burst of bans costs one write of the
    /// lists and one conntrack dump, not one each.
    pub fn handle_all(&mut self, first: In) -> Change {
        let mut change = self.handle(first);
        while let Ok(msg) = self.input.try_recv() {
            let more = self.handle(msg);
            change.removed |= more.removed;
            change.added.extend(more.added);
        }
        change
    }

    /// A message from the link.
    fn handle(&mut self, msg: In) -> Change {
        let mut change = Change::default();
        let now = unix_now_ms();
        match msg {
            In::Link(state) => self.link(&state, now),
            In::Current(keys) => {
                // Bans deleted while this guard was away.
                let keys: BTreeSet<String> = keys.into_iter().collect();
                let before = self.in_force.len();
                self.in_force.retain(|k, _| keys.contains(k));
                self.waiting.retain(|k, _| keys.contains(k));
                self.origins.retain(|k, _| keys.contains(k));
                change.removed = self.in_force.len() != before;
            }
            In::Decision { key, value: None } => {
                self.origins.remove(&key);
                self.waiting.remove(&key);
                if let Some((d, net)) = self.in_force.remove(&key) {
                    // Its origin (or anyone) deletes a ban whose time is up.
                    if d.until_ms <= now + 1000 {
                        tracing::info!("fleet: deny {net} from {}: its time is up", d.origin);
                    } else {
                        tracing::info!("fleet: deny {net} from {} taken back", d.origin);
                    }
                    change.removed = true;
                }
            }
            In::Decision {
                key,
                value: Some(value),
            } => self.decision(key, &value, now, &mut change),
            In::Member(value) => match serde_json::from_slice::<Report>(&value) {
                Ok(report) => {
                    self.members.insert(report.member.clone(), report);
                }
                Err(e) => self.refused(&BanRefusal::Malformed(format!("a member's report: {e}"))),
            },
            In::Flushed { published, pending } => {
                self.view.published += published;
                self.view.pending = pending;
            }
        }
        change
    }

    fn link(&mut self, state: &Result<(), String>, now: u64) {
        match state {
            Ok(()) => {
                if !self.view.connected {
                    tracing::info!(
                        "fleet: connected to {}; {} write(s) of this guard's to publish",
                        self.settings.server,
                        self.view.pending
                    );
                }
                self.cut_off = false;
            }
            // Once per cut: the link reports every failed try.
            Err(e) if !self.cut_off => {
                tracing::warn!(
                    "fleet: cut off from {} ({e}): protecting this host with what it has; its bans are published when it is back",
                    self.settings.server
                );
                self.cut_off = true;
            }
            Err(_) => {}
        }
        if state.is_ok() != self.view.connected {
            self.view.since_ms = now;
        }
        self.view.connected = state.is_ok();
    }

    fn decision(&mut self, key: String, value: &[u8], now: u64, change: &mut Change) {
        match judge(&key, value, &self.rules, now) {
            Ok((d, net)) => {
                let own = self.own.get(&key);
                if outlasts(own.map(|(until, _)| *until), d.until_ms, now)
                    && let Some((until_ms, value)) = own.cloned()
                {
                    // A peer's shorter ban of the same network: ours goes
                    // back in, and this member's data plane drops the
                    // source meanwhile anyway.
                    self.origins
                        .insert(key.clone(), self.settings.member.clone());
                    let _ = self.out.send(Out::Put {
                        key,
                        value,
                        until_ms,
                    });
                    return;
                }
                self.origins.insert(key.clone(), d.origin.clone());
                // The same ban again (a resync): nothing to do.
                if self
                    .in_force
                    .get(&key)
                    .is_some_and(|(old, _)| old.until_ms == d.until_ms)
                {
                    return;
                }
                if !self.ceiling.take(now) {
                    if self.waiting.len() < WAITING_MAX {
                        self.waiting.insert(key, Bytes::copy_from_slice(value));
                    } else {
                        self.refused(&BanRefusal::OverCeiling);
                    }
                    return;
                }
                self.apply(key, d, net, now, change);
            }
            Err(BanRefusal::Own) => {
                self.origins.insert(key, self.settings.member.clone());
            }
            Err(BanRefusal::Expired) => {
                // Anyone may clear a ban whose time is up.
                self.origins.remove(&key);
                let _ = self.out.send(Out::Delete { key });
            }
            Err(refusal) => {
                if let Ok(d) = serde_json::from_slice::<SharedBan>(value) {
                    self.origins.insert(key, d.origin);
                }
                self.refused(&refusal);
            }
        }
    }

    fn apply(&mut self, key: String, d: SharedBan, net: IpNet, now: u64, change: &mut Change) {
        let delay = now.saturating_sub(d.made_ms);
        tracing::info!(
            "fleet: deny {net} from {} ({}), {} s left; {delay} ms after it was made",
            d.origin,
            d.reason,
            d.until_ms.saturating_sub(now) / 1000
        );
        if self.view.delays_ms.len() == DELAYS {
            self.view.delays_ms.remove(0);
        }
        self.view.delays_ms.push(delay);
        self.view.applied += 1;
        if let Some((_, old)) = self.in_force.insert(key, (d, net)) {
            change.removed |= old != net;
        }
        change.added.push(net);
    }

    fn refused(&mut self, refusal: &BanRefusal) {
        let kind = refusal.kind();
        *self.view.refused.entry(kind.to_owned()).or_default() += 1;
        if self.said.insert(kind) {
            tracing::warn!(
                "fleet: a peer's decision refused: {refusal} (said once for this kind; `guard fleet status` counts them)"
            );
        }
    }

    /// Once a second, with the kept lists' timed denies and this guard's
    /// allow list as they are now: publish the new denies, lift bans the
    /// allow list now covers, expire, let waiting bans in under the
    /// ceiling, and report. The caller applies the change to the data
    /// plane and then publishes the view, so the view never shows a ban
    /// gone that the maps still drop.
    pub fn tick(
        &mut self,
        timed: &BTreeMap<IpNet, (u64, Option<String>)>,
        allow: &[IpNet],
    ) -> Change {
        self.kept_denies(timed);
        let mut change = self.set_local_allow(allow);
        let now = unix_now_ms();
        let before = self.in_force.len();
        self.in_force.retain(|_, (d, net)| {
            let live = d.until_ms > now;
            if !live {
                tracing::info!("fleet: deny {net} from {}: its time is up", d.origin);
            }
            live
        });
        change.removed |= self.in_force.len() != before;
        let expired: Vec<String> = self
            .own
            .iter()
            .filter(|(_, (until, _))| *until <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in expired {
            self.own.remove(&key);
            if self.wrote_last(&key) {
                let _ = self.out.send(Out::Delete { key });
            }
        }
        while let Some(entry) = self.waiting.first_entry() {
            if !self.ceiling.take(now) {
                break;
            }
            let (key, value) = entry.remove_entry();
            // Judged again: it may have expired while it waited.
            if let Ok((d, net)) = judge(&key, &value, &self.rules, now) {
                self.apply(key, d, net, now, &mut change);
            }
        }
        if now >= self.next_report_ms {
            self.next_report_ms = now + REPORT_EVERY_MS;
            self.report(now);
        }
        change
    }

    fn report(&mut self, now: u64) {
        let status = status_file::read(&self.runtime_dir);
        let mut top: Vec<FleetSource> = std::mem::take(&mut self.limited)
            .into_iter()
            .map(|(source, limited)| FleetSource { source, limited })
            .collect();
        top.sort_by(|a, b| b.limited.cmp(&a.limited).then(a.source.cmp(&b.source)));
        top.truncate(5);
        let report = Report {
            member: self.settings.member.clone(),
            level: status.as_ref().map_or(Level::Normal, |s| s.level),
            fill: status.as_ref().map_or(0.0, |s| s.fill),
            count: status.as_ref().map_or(0, |s| s.count),
            max: status.as_ref().map_or(0, |s| s.max),
            top,
            at_ms: now,
        };
        if let Ok(json) = serde_json::to_vec(&report) {
            let _ = self.out.send(Out::Report(json.into()));
        }
        self.members.insert(report.member.clone(), report);
    }

    /// Writes `guard fleet status`'s view: call it once the data plane
    /// holds what `tick` returned.
    pub fn publish_view(&mut self) {
        let now = unix_now_ms();
        let mut bans: BTreeMap<&str, usize> = BTreeMap::new();
        for origin in self.origins.values() {
            *bans.entry(origin).or_default() += 1;
        }
        self.members
            .retain(|_, r| now.saturating_sub(r.at_ms) < 60_000);
        self.view.members = self
            .members
            .values()
            .map(|r| Member {
                bans: bans.get(r.member.as_str()).copied().unwrap_or(0),
                report: r.clone(),
            })
            .collect();
        self.view.active = self.in_force.len();
        self.view.at_ms = now;
        status_file::publish_fleet(&self.runtime_dir, &self.view);
    }

    /// This guard's data plane banned `source` at `made_ns` (its clock,
    /// CLOCK_MONOTONIC) until `until_ms`: the fleet hears of it, unless a
    /// signature lifted the ban meanwhile.
    pub fn banned(&mut self, source: &SourceKey, made_ns: u64, until_ms: u64, reason: &str) {
        let net = net_of(source);
        let key = crate::model::fleet::key(&net);
        if self.lifted_at.get(&key).is_some_and(|&at| at >= made_ns) {
            return;
        }
        self.publish(&net, until_ms, reason);
        self.own_sources.insert(key, *source);
    }

    /// The sources of this guard's data-plane bans in the bucket that have
    /// more than a moment left: if no interface holds one any more, it was
    /// lifted here before its time (`guard unban`), and the caller hands
    /// it to [`Fleet::lifted`].
    pub fn own_bans(&mut self) -> Vec<SourceKey> {
        let own = &self.own;
        self.own_sources.retain(|key, _| own.contains_key(key));
        let ending = unix_now_ms().saturating_add(ENDING_MS);
        self.own_sources
            .iter()
            .filter(|(key, _)| own.get(*key).is_some_and(|(until, _)| *until > ending))
            .map(|(_, source)| *source)
            .collect()
    }

    /// This guard's data plane lifted its bans of `sources` at `now_ns`
    /// (CLOCK_MONOTONIC; a signature drops the flood that earned them,
    /// `model::bans`, or an operator's `guard unban`): the fleet's copies
    /// are taken back
    /// (`model::fleet::takes_back` says which). Returns whether each was.
    pub fn lifted(&mut self, sources: &[SourceKey], now_ns: u64) -> Vec<bool> {
        let now = unix_now_ms();
        self.lifted_at
            .retain(|_, &mut at| now_ns.saturating_sub(at) < LIFTS_KEPT_NS);
        let mut taken = Vec::with_capacity(sources.len());
        for source in sources {
            let net = net_of(source);
            let key = crate::model::fleet::key(&net);
            self.lifted_at.insert(key.clone(), now_ns);
            self.own_sources.remove(&key);
            let operators = net
                .parse::<IpNet>()
                .is_ok_and(|net| self.kept.contains_key(&net));
            let back = takes_back(
                self.own.get(&key).map(|(until, _)| *until),
                operators,
                self.wrote_last(&key),
                now,
            );
            if back {
                self.own.remove(&key);
                let _ = self.out.send(Out::Delete { key });
            }
            taken.push(back);
        }
        taken
    }

    /// A limited event of `source`, for the report's top sources.
    pub fn limited(&mut self, source: &SourceKey) {
        *self.limited.entry(source.to_string()).or_default() += 1;
    }

    /// The kept lists' timed deny entries (`guard deny add --for`, a
    /// CrowdSec decision): the new ones are published, the ones taken out
    /// early are taken back.
    fn kept_denies(&mut self, timed: &BTreeMap<IpNet, (u64, Option<String>)>) {
        let now = unix_now_ms();
        for (net, (until_s, reason)) in timed {
            let until_ms = until_s.saturating_mul(1000);
            if self.kept.get(net) != Some(&until_ms) && until_ms > now {
                self.publish(
                    &net.to_string(),
                    until_ms,
                    reason.as_deref().unwrap_or("operator"),
                );
            }
        }
        let gone: Vec<IpNet> = self
            .kept
            .keys()
            .filter(|net| !timed.contains_key(net))
            .copied()
            .collect();
        for net in gone {
            let key = crate::model::fleet::key(&net.to_string());
            let mine = self.wrote_last(&key);
            if self.own.remove(&key).is_some_and(|(until, _)| until > now) && mine {
                let _ = self.out.send(Out::Delete { key });
            }
        }
        self.kept = timed
            .iter()
            .map(|(net, (until, _))| (*net, until.saturating_mul(1000)))
            .collect();
    }

    /// Whether this member wrote `key` last in the bucket (or no writer is
    /// known), and so may delete it.
    fn wrote_last(&self, key: &str) -> bool {
        let origin = self.origins.get(key).map(String::as_str);
        written_last_by_me(origin, &self.settings.member)
    }

    fn publish(&mut self, net: &str, until_ms: u64, reason: &str) {
        let d = SharedBan {
            net: net.to_owned(),
            reason: reason.to_owned(),
            origin: self.settings.member.clone(),
            made_ms: unix_now_ms(),
            until_ms,
        };
        let key = d.key();
        let Ok(value) = serde_json::to_vec(&d) else {
            return;
        };
        let value = Bytes::from(value);
        self.own.insert(key.clone(), (until_ms, value.clone()));
        let _ = self.out.send(Out::Put {
            key,
            value,
            until_ms,
        });
    }
}

/// The network a ban of `source` names in the bucket.
fn net_of(source: &SourceKey) -> String {
    format!("{}/{}", source.ip(), source.prefix_len)
}
