//! SYN cookies as the controller keeps them: what `--syn-cookies` comes
//! to on this run, the listening ports that may get cookies, which are
//! armed, and the lines that say so.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use guard_common::ports::PORT_SLOTS;

use crate::{
    config::{DeclaredOpen, Settings, SynCookies},
    host::{conntrack::knobs::Knobs, netns::Scope, nft, restore::Record, xtables},
    model::{
        conntrack::TCP_LOOSE,
        firewall::{AckState, FIX, drops_before_synproxy},
        nat::{NatRewrites, rewrites},
        notrack::{Untracked, untracked},
        ports::{Listening, PortTable, cookie_mode, port_list},
        tcp::{SYNACK_RETRIES, SYNCOOKIES, SYNCOOKIES_OFF},
        xtables::Save,
    },
};

/// A warning for each chain of the scope's rules that drops the cookie
/// handshakes' ACKs in one of `states` before SYNPROXY sees them (none if
/// the nftables ruleset cannot be read: said at debug level), and one if
/// iptables-legacy's mangle table cannot be read.
pub(super) fn early_drops(scope: &Scope, states: &[AckState]) -> Vec<String> {
    let suffix = scope.suffix();
    let (legacy, unread) = legacy_tables(
        scope,
        "mangle",
        "a rule of it that drops cookie handshakes' ACKs before guard's SYNPROXY chain would go unnamed",
    );
    let mut warnings: Vec<String> = unread.into_iter().collect();
    match nft::ruleset(scope) {
        Ok((json, listing)) => warnings.extend(
            drops_before_synproxy(&json, &listing, &legacy, states)
                .into_iter()
                .map(|(chain, state)| format!("{chain}{suffix} {}; {FIX}", state.consequence())),
        ),
        Err(e) => tracing::debug!("reading the nftables ruleset: {e:#}"),
    }
    warnings
}

/// The scope's iptables-legacy `table`, if it has one; when it cannot be
/// read, none and a warning that says what is missed for it (`missed`).
fn legacy_tables(scope: &Scope, table: &str, missed: &str) -> (Vec<Save>, Option<String>) {
    match xtables::legacy(scope, &[table]) {
        Ok(saves) => (saves, None),
        Err(e) => (
            Vec::new(),
            Some(format!(
                "iptables-legacy's {table} table{} could not be read ({e:#}): {missed}",
                scope.suffix()
            )),
        ),
    }
}

/// What `--syn-cookies` comes to on this run ([`cookie_mode`]), said once
/// when it cannot be honoured. Cookies need a lone ACK to be invalid to
/// conntrack (so that SYNPROXY sees it): when they may come on,
/// `nf_conntrack_tcp_loose` is recorded to go back when they are off, and
/// so is `tcp_synack_retries` (`--synack-retries`; where it
/// cannot be read it is left alone).
pub(super) fn decide_cookies(
    knobs: &Knobs<'_>,
    settings: &Settings,
    xdp_can_reply: bool,
    record: &mut Record,
) -> SynCookies {
    let decided = cookie_mode(settings.cookies.mode, settings.mode, xdp_can_reply, || {
        recorded(knobs, record, SYNACK_RETRIES);
        recorded(knobs, record, TCP_LOOSE)
    });
    let decided = decided.unwrap_or_else(|off| {
        tracing::info!("SYN cookies stay off {off}");
        SynCookies::Never
    });
    if decided != SynCookies::Never && knobs.local(SYNCOOKIES).is_ok_and(|v| v == 0) {
        tracing::warn!(
            "{SYNCOOKIES} is 0{}: {SYNCOOKIES_OFF}; set it to 1",
            knobs.scope().suffix()
        );
    }
    decided
}

/// Whether the namespace's knob `key` has its value from before guard in
/// `record`: recorded now if it was not (recorded before, at start or by
/// an earlier reload, the live value may be guard's own); said if it
/// cannot be read.
fn recorded(knobs: &Knobs<'_>, record: &mut Record, key: &str) -> bool {
    if record.local.contains_key(key) {
        return true;
    }
    match knobs.local(key) {
        Ok(v) => {
            record.local.insert(key.to_owned(), v);
            true
        }
        Err(e) => {
            tracing::warn!("{e}");
            false
        }
    }
}

/// The listening ports as the controller keeps them.
pub(super) struct Ports {
    /// `--cookie-port`: only these listening ports may get cookies (empty:
    /// all of them).
    pub(super) narrow: Vec<u16>,
    /// Listening ports, their slots and which are armed.
    pub(super) table: PortTable,
    /// The port table last handed out, and its `OPEN_MARKED_*` bits.
    pub(super) written: (BTreeMap<u16, u32>, u8),
    /// Ports armed after the last tick, and the ports the SYNPROXY rules
    /// cover: the armed ones and, for one tick more, those just disarmed;
    /// `wild`, those of the rules' ports whose cookie ACKs the rules
    /// untrack by socket lookup (`model::nft::synproxy_script`).
    pub(super) armed: BTreeSet<u16>,
    pub(super) rules: BTreeSet<u16>,
    pub(super) wild: BTreeSet<u16>,
    /// Listening ports bound to one address (`Listening::bound`).
    pub(super) bound: BTreeSet<u16>,
    /// The ports whose established connections conntrack was told of in
    /// this run (`Controller::conntrack_was_off`), the first time it was
    /// to be strict about them.
    pub(super) told: BTreeSet<u16>,
    /// Whether nftables' socket expression works here (nft_socket); if
    /// not, no port is `wild`.
    pub(super) socket_lookup: bool,
    /// Whether some attachment can send SYN cookies (see
    /// [`Controller::xdp_can_reply`]).
    pub(super) xdp_can_reply: bool,
    /// The ports the namespace's nat rules rewrite, on the prerouting
    /// hook and on the output hook: a port rewritten on the first gets
    /// cookies only if it is on the second too (`model::nat` says why);
    /// and when and for which listening ports they were last read.
    pub(super) nat: NatRewrites,
    nat_read: Option<(BTreeSet<u16>, Instant)>,
    /// Whether the nat rules have been read whole (the nftables ruleset
    /// and, where in use, iptables-legacy's nat table) once: until then a
    /// port they may publish is not known, and no port counts as closed.
    pub(super) nat_known: bool,
    /// Why the last reading was not whole, if it was not.
    pub(super) nat_unread: Option<String>,
    /// The ports the notrack rules read with the nat rules skip
    /// (`model::notrack`), and `--notrack-port`'s own, which the table
    /// guard installed holds (kept apart in case the rules cannot be
    /// read).
    untracked_read: Untracked,
    untracked_own: BTreeSet<u16>,
    /// `--open-port`'s ports.
    pub(super) declared: DeclaredOpen,
}

/// How long the nat rules read stay current while the listening ports do
/// not change (a port published anew brings its listener, docker-proxy,
/// and is read at once).
const NAT_REREAD: Duration = Duration::from_secs(30);

impl Ports {
    pub(super) fn new(narrow: Vec<u16>, declared: DeclaredOpen) -> Self {
        Self {
            narrow,
            table: PortTable::default(),
            written: (BTreeMap::new(), 0),
            armed: BTreeSet::new(),
            rules: BTreeSet::new(),
            wild: BTreeSet::new(),
            bound: BTreeSet::new(),
            told: BTreeSet::new(),
            socket_lookup: true,
            xdp_can_reply: true,
            nat: NatRewrites::default(),
            nat_read: None,
            nat_known: false,
            nat_unread: None,
            untracked_read: Untracked::default(),
            untracked_own: BTreeSet::new(),
            declared,
        }
    }

    /// Reads the scope's nat rules again if the listening ports changed
    /// since the last reading, or it is [`NAT_REREAD`] old. A ruleset that
    /// cannot be read keeps the last reading (said at debug level);
    /// iptables-legacy's nat table that cannot be read is a problem to
    /// report.
    pub(super) fn read_nat(
        &mut self,
        scope: &Scope,
        listening: &BTreeSet<u16>,
        now: Instant,
    ) -> Option<String> {
        // The listening TCP ports alone: a resolver's UDP sockets come and
        // go every tick, and a UDP port published anew is found within
        // NAT_REREAD.
        let fresh = self
            .nat_read
            .as_ref()
            .is_some_and(|(ports, at)| ports == listening && now.duration_since(*at) < NAT_REREAD);
        if fresh {
            return None;
        }
        self.nat_read = Some((listening.clone(), now));
        let (legacy, unread) = legacy_tables(
            scope,
            "nat",
            "a port its rules rewrite may get SYN cookies, and then its connections fail",
        );
        self.nat_unread = match nft::ruleset(scope) {
            Ok((json, listing)) => {
                self.nat = rewrites(&json, &listing, &legacy);
                self.untracked_read = untracked(&json);
                self.set_untracked();
                unread
                    .as_ref()
                    .map(|_| "iptables-legacy's nat table".to_owned())
            }
            Err(e) => {
                tracing::debug!("reading the nftables ruleset for nat rules: {e:#}");
                Some(format!("the nftables ruleset ({e:#})"))
            }
        };
        self.nat_known |= self.nat_unread.is_none();
        unread
    }

    /// `--notrack-port`'s ports, which conntrack skips for TCP and UDP.
    pub(super) fn untracked_own(&mut self, ports: &[u16]) {
        self.untracked_own = ports.iter().copied().collect();
        self.set_untracked();
    }

    fn set_untracked(&mut self) {
        let own = &self.untracked_own;
        self.table.set_untracked(&Untracked {
            tcp: self.untracked_read.tcp.union(own).copied().collect(),
            udp: self.untracked_read.udp.union(own).copied().collect(),
        });
    }

    /// Takes the protected namespace's listening ports, less those the
    /// nat rules rewrite for arriving clients alone, and the ports they
    /// forward (rewrite on both hooks, `NatRewrites::forwarded`), narrowed by
    /// `--cookie-port`, less the ports conntrack skips, into the port
    /// table; the problems to report (each port rewritten for arriving
    /// clients alone, each port conntrack skips, and the ports that did
    /// not fit).
    pub(super) fn listening(&mut self, listening: Listening) -> Vec<String> {
        let mut problems = Vec::new();
        let narrow = &self.narrow;
        let untracked = &self.table.untracked().tcp;
        for p in listening.ports.intersection(untracked) {
            problems.push(format!(
                "port {p} gets no SYN cookies: conntrack skips it (a NOTRACK rule), and SYNPROXY needs conntrack; its SYNs open no entry, so no limit applies to them (pass_untracked)"
            ));
        }
        let wanted = |p: &u16| (narrow.is_empty() || narrow.contains(p)) && !untracked.contains(p);
        let forwarded: BTreeSet<u16> = self.nat.forwarded().into_iter().filter(wanted).collect();
        let mut eligible: BTreeSet<u16> = listening
            .ports
            .into_iter()
            .filter(wanted)
            .filter(|&p| match self.nat.prerouting.rewriting(p) {
                Some(_) if forwarded.contains(&p) => true,
                Some(at) => {
                    problems.push(format!(
                        "port {p} gets no SYN cookies: {at} rewrites it (DNAT or REDIRECT) for the clients that arrive, and no nat output rule does for this host's own connections, so SYNPROXY would complete their handshakes to a listener here; it keeps the per-source limits and the global budget"
                    ));
                    false
                }
                None => true,
            })
            .collect();
        eligible.extend(&forwarded);
        self.bound = listening.bound;
        let left_out = self.table.set_eligible(&eligible, &forwarded);
        if !left_out.is_empty() {
            problems.push(format!(
                "{} listening or forwarded ports get no SYN cookies: the port table has {} slots (name the ports to protect with --cookie-port)",
                left_out.len(),
                PORT_SLOTS
            ));
        }
        problems
    }

    /// The ports of `rules` whose cookie ACKs the rules may untrack by
    /// socket lookup: all of them but those bound to one address and the
    /// forwarded ones, which no local socket holds.
    pub(super) fn wild(&self, rules: &BTreeSet<u16>) -> BTreeSet<u16> {
        if !self.socket_lookup {
            return BTreeSet::new();
        }
        let forwarded = self.table.forwarded();
        rules
            .difference(&self.bound)
            .filter(|p| !forwarded.contains(p))
            .copied()
            .collect()
    }

    /// The lines that say which ports were armed and disarmed since the
    /// last tick: against the last tick's, so that a port whose listener
    /// went away is reported too.
    pub(super) fn changes(&self, armed: &BTreeSet<u16>, mode: SynCookies) -> Vec<String> {
        let on: Vec<u16> = armed.difference(&self.armed).copied().collect();
        let off: Vec<u16> = self.armed.difference(armed).copied().collect();
        let mut lines = Vec::new();
        if !on.is_empty() {
            let why = if mode == SynCookies::Always {
                "always on".to_owned()
            } else {
                format!(
                    "a random-source SYN flood aimed at {}",
                    if on.len() == 1 { "it" } else { "them" }
                )
            };
            lines.push(format!(
                "SYN cookies on for port{} {}: {why}",
                plural(on.len()),
                port_list(on.iter().copied()),
            ));
        }
        if !off.is_empty() {
            lines.push(format!(
                "SYN cookies off for port{} {}",
                plural(off.len()),
                port_list(off.iter().copied())
            ));
        }
        lines
    }
}

pub(super) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
