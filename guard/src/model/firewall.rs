//! What the host's own rules do to guard's SYN cookies, read from `nft -j
//! list ruleset` and `nft -a list ruleset`: a rule that drops the packets
//! conntrack calls invalid (or leaves untracked), in a chain that runs
//! before guard's SYNPROXY chain (or a chain that one reaches by a jump, a
//! goto or a verdict map), drops the cookie handshakes' ACKs that are
//! invalid (or untracked) until SYNPROXY takes them ([`AckState`]), so
//! those cookie connections never complete. The rule may be a match (`ct
//! state invalid drop`; iptables-nft's `-m conntrack --ctstate INVALID`
//! and `-m state`, read from the listing) or a verdict map's element (`ct
//! state vmap { invalid : drop, ... }`). iptables-legacy's rules, which
//! nftables does not show, are read from its save (`xtables`): its mangle
//! table's prerouting and input chains run at priority mangle (-150),
//! after conntrack and before guard's.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{
    nft::{SYNPROXY_PRIORITY, SYNPROXY_TABLE},
    ruleset::{
        CONNTRACK_PRIORITY, MAX_JUMPS, Rule, Ruleset, Transport, chain_names, drops, items, targets,
    },
    xtables::{Save, SavedRule, Tables},
};

/// What a cookie handshake's ACK is to conntrack until SYNPROXY takes it:
/// untracked for a port whose listeners are bound to the wildcard address,
/// invalid for one with a listener bound to one address (why:
/// `model::nft::synproxy_script`). A rule dropping that state before
/// guard's SYNPROXY chain fails those handshakes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckState {
    Invalid,
    Untracked,
}

impl AckState {
    /// The state as nftables names it.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Invalid => "invalid",
            Self::Untracked => "untracked",
        }
    }

    /// What a chain dropping it does, after the chain's name, for the log
    /// and for doctor.
    #[must_use]
    pub fn consequence(self) -> &'static str {
        match self {
            Self::Invalid => {
                "drops what conntrack calls invalid before guard's SYNPROXY chain (input, priority filter - 1): a SYN-cookie handshake's ACK to a port with a listener bound to one address is invalid until SYNPROXY takes it, so cookie connections to such a port fail"
            }
            Self::Untracked => {
                "drops what conntrack leaves untracked before guard's SYNPROXY chain (input, priority filter - 1): a SYN-cookie handshake's ACK to a port whose listeners are bound to the wildcard address is untracked until SYNPROXY takes it, so cookie connections to such a port fail"
            }
        }
    }
}
/// What to do about it.
pub const FIX: &str =
    "move that rule to priority filter or later (for iptables, to the filter table)";

/// The priority of iptables' mangle chains.
const MANGLE_PRIORITY: i64 = -150;

/// The chains holding a rule that drops (or rejects) packets in one of
/// `states` before guard's SYNPROXY chain sees them, with the state, each
/// as `table FAMILY NAME chain NAME (hook H, priority P)`, and `, through
/// chain J` when the rule is in a chain it reaches; iptables-legacy's
/// begin with its tool's name. `json` is `nft -j list ruleset`, `listing`
/// `nft -a list ruleset` (for iptables-nft's rules), `legacy`
/// iptables-legacy's mangle tables; each is read once. Nothing from
/// nftables if the JSON cannot be read.
#[must_use]
pub fn drops_before_synproxy(
    json: &str,
    listing: &str,
    legacy: &[Save],
    states: &[AckState],
) -> Vec<(String, AckState)> {
    let items = items(json);
    let set = Ruleset::new(&items, listing);
    let early: Vec<(&str, &str, &str, &str, i64)> = set
        .chains()
        .filter_map(|chain| {
            let (family, table, name) = chain_names(chain)?;
            let (Some(hook), Some(prio)) = (chain["hook"].as_str(), chain["prio"].as_i64()) else {
                return None;
            };
            let before = match hook {
                "prerouting" => prio > CONNTRACK_PRIORITY,
                // Of one priority the newest chain runs first: a chain at
                // guard's own may run before it.
                "input" => prio <= SYNPROXY_PRIORITY,
                _ => false,
            };
            (before
                && matches!(family, "ip" | "ip6" | "inet")
                && !(family == "inet" && table == SYNPROXY_TABLE))
                .then_some((family, table, name, hook, prio))
        })
        .collect();
    let saves: Vec<(&Save, Tables)> = legacy
        .iter()
        .map(|save| (save, Tables::parse(&save.text)))
        .collect();
    let mut out = Vec::new();
    for &state in states {
        for &(family, table, name, hook, prio) in &early {
            if let Some(found) = dropping_chain(&set, family, table, name, state) {
                out.push((
                    format!(
                        "table {family} {table} chain {name} (hook {hook}, priority {prio}){}",
                        found.via()
                    ),
                    state,
                ));
            }
        }
        for (save, tables) in &saves {
            for (chain, hook) in [("PREROUTING", "prerouting"), ("INPUT", "input")] {
                if let Some(found) = legacy_dropping_chain(tables, chain, state) {
                    out.push((
                        format!(
                            "{} table mangle chain {chain} (hook {hook}, priority {MANGLE_PRIORITY}){}",
                            save.tool(),
                            found.via()
                        ),
                        state,
                    ));
                }
            }
        }
    }
    out
}

/// Where a chain's invalid drop is.
enum Found<'a> {
    Here,
    /// In this chain, reached by a jump or a goto.
    Through(&'a str),
}

impl<'a> Found<'a> {
    /// The words that say where, after the chain's name.
    fn via(&self) -> String {
        match self {
            Found::Here => String::new(),
            Found::Through(c) => format!(", through chain {c}"),
        }
    }

    /// Found in `target`, which a chain reached.
    fn through(self, target: &'a str) -> Self {
        match self {
            Found::Here => Found::Through(target),
            through @ Found::Through(_) => through,
        }
    }
}

/// How a walk from a chain goes on: the chain's rules in order, whether
/// a rule drops what is looked for, and the chains a rule leads to.
struct Graph<'g, 'a, R> {
    rules: &'g dyn Fn(&'a str) -> Vec<R>,
    drops: &'g dyn Fn(&R) -> bool,
    next: &'g dyn Fn(&R) -> Vec<&'a str>,
}

impl<'a, R> Graph<'_, 'a, R> {
    /// Whether `chain`, or a chain it leads to (each once, at most
    /// [`MAX_JUMPS`] deep), holds a dropping rule, and where.
    fn find(
        &self,
        chain: &'a str,
        seen: &mut BTreeSet<&'a str>,
        depth: usize,
    ) -> Option<Found<'a>> {
        if depth > MAX_JUMPS || !seen.insert(chain) {
            return None;
        }
        let own = (self.rules)(chain);
        if own.iter().any(|r| (self.drops)(r)) {
            return Some(Found::Here);
        }
        for rule in &own {
            for target in (self.next)(rule) {
                if let Some(found) = self.find(target, seen, depth + 1) {
                    return Some(found.through(target));
                }
            }
        }
        None
    }
}

/// Whether `chain` of `family`'s `table`, or a chain it reaches by a jump,
/// a goto or a verdict map's element, drops packets in `state`, and where.
fn dropping_chain<'a>(
    set: &'a Ruleset<'a>,
    family: &'a str,
    table: &'a str,
    chain: &'a str,
    state: AckState,
) -> Option<Found<'a>> {
    let rules = |c: &'a str| set.rules_of(family, table, c).collect::<Vec<_>>();
    let drops = |r: &&Rule<'a>| drops_state(set, r, state);
    let next = |r: &&Rule<'a>| {
        // A verdict map's branch for UDP alone never sees a cookie ACK.
        let branches = set
            .elements(r)
            .into_iter()
            .filter(|e| !e.alone(Transport::Udp))
            .filter_map(|e| e.target());
        targets(r).chain(branches).collect()
    };
    Graph {
        rules: &rules,
        drops: &drops,
        next: &next,
    }
    .find(chain, &mut BTreeSet::new(), 0)
}

/// [`dropping_chain`] for a chain of iptables-legacy's mangle table.
fn legacy_dropping_chain<'a>(
    tables: &'a Tables,
    chain: &'a str,
    state: AckState,
) -> Option<Found<'a>> {
    let upper = state.name().to_ascii_uppercase();
    let rules = |c: &'a str| tables.rules_of("mangle", c).collect::<Vec<_>>();
    let drops =
        |r: &&SavedRule| matches!(r.target(), Some("DROP" | "REJECT")) && r.matches_state(&upper);
    let next = |r: &&'a SavedRule| tables.jump(r).into_iter().collect();
    Graph {
        rules: &rules,
        drops: &drops,
        next: &next,
    }
    .find(chain, &mut BTreeSet::new(), 0)
}

/// Whether a rule drops (or rejects) packets in `state`: it matches `ct
/// state` for it (alone or in a set, not negated) and ends in a drop, or
/// an element of its `ct state` verdict map for it drops. A rule with an
/// iptables `xt` match is read in its text from the listing.
fn drops_state(set: &Ruleset<'_>, rule: &Rule<'_>, state: AckState) -> bool {
    let name = state.name();
    let by_map = set.elements(rule).iter().any(|e| {
        e.drops()
            && e.key
                .iter()
                .any(|(left, value)| ct_state(left) && names(value, name))
    });
    if by_map {
        return true;
    }
    let expr = rule.expr;
    if !expr.iter().any(drops) {
        return false;
    }
    let native = expr.iter().any(|e| {
        let m = &e["match"];
        ct_state(&m["left"])
            && matches!(m["op"].as_str(), Some("==" | "in"))
            && names(&m["right"], name)
    });
    let xt = expr.iter().any(|e| e.get("xt").is_some());
    native || (xt && set.text(rule).is_some_and(|t| text_matches(t, name)))
}

/// Whether an expression is `ct state`.
fn ct_state(v: &Value) -> bool {
    v["ct"]["key"].as_str() == Some("state")
}

/// Whether a state, or a set or list of them, holds `state`.
fn names(v: &Value, state: &str) -> bool {
    let one = |x: &Value| x.as_str() == Some(state);
    match v {
        Value::String(_) => one(v),
        Value::Object(o) => o
            .get("set")
            .and_then(Value::as_array)
            .is_some_and(|s| s.iter().any(one)),
        Value::Array(a) => a.iter().any(one),
        _ => false,
    }
}

/// Whether a rule's text tests `ct state` for a list holding `state`,
/// not negated (`!=`, or iptables' translated `!`).
fn text_matches(text: &str, state: &str) -> bool {
    let words: Vec<&str> = text.split_whitespace().collect();
    words
        .windows(3)
        .any(|w| w[0] == "ct" && w[1] == "state" && w[2].split(',').any(|s| s == state))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the walk finds in nftables' ruleset alone, for invalid ACKs.
    fn found_in(json: &str, listing: &str) -> Vec<String> {
        chains(json, listing, &[], AckState::Invalid)
    }

    /// The chains the walk finds for `state` alone.
    fn chains(json: &str, listing: &str, legacy: &[Save], state: AckState) -> Vec<String> {
        drops_before_synproxy(json, listing, legacy, &[state])
            .into_iter()
            .map(|(chain, found)| {
                assert_eq!(found, state);
                chain
            })
            .collect()
    }

    /// iptables-legacy's mangle table: the anti-DDoS guides' drop at
    /// prerouting, and one behind a jump from input, both named with the
    /// tool; a negated state is no drop.
    #[test]
    fn iptables_legacys_invalid_drops_are_read_from_its_save() {
        let legacy = [Save {
            family: "ip",
            text: include_str!("../../tests/fixtures/iptables-legacy.save").to_owned(),
        }];
        assert_eq!(
            chains("", "", &legacy, AckState::Invalid),
            [
                "iptables-legacy table mangle chain PREROUTING (hook prerouting, priority -150)",
                "iptables-legacy table mangle chain INPUT (hook input, priority -150), through chain CHECKS"
            ]
        );
        let negated = "*mangle\n-A PREROUTING -m conntrack ! --ctstate INVALID -j DROP\n-A PREROUTING -m conntrack --ctstate INVALID -j ACCEPT\nCOMMIT\n";
        let six = [Save {
            family: "ip6",
            text: negated.to_owned(),
        }];
        assert!(chains("", "", &six, AckState::Invalid).is_empty());
        let dropping = [Save {
            family: "ip6",
            text: negated.replace("-j ACCEPT", "-j DROP"),
        }];
        assert_eq!(
            chains("", "", &dropping, AckState::Invalid),
            ["ip6tables-legacy table mangle chain PREROUTING (hook prerouting, priority -150)"]
        );
    }

    /// `nft -j list ruleset` of nft 1.0.6 for a chain and one rule.
    fn ruleset(family: &str, table: &str, hook: &str, prio: i64, rule: &str) -> String {
        format!(
            r#"{{"nftables": [{{"metainfo": {{"version": "1.0.6", "json_schema_version": 1}}}},
            {{"table": {{"family": "{family}", "name": "{table}", "handle": 1}}}},
            {{"chain": {{"family": "{family}", "table": "{table}", "name": "c", "handle": 1, "type": "filter", "hook": "{hook}", "prio": {prio}, "policy": "accept"}}}},
            {{"rule": {{"family": "{family}", "table": "{table}", "chain": "c", "handle": 2, "expr": {rule}}}}}]}}"#
        )
    }

    const INVALID_DROP: &str = r#"[{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "invalid"}}, {"drop": null}]"#;
    const SET_DROP: &str = r#"[{"match": {"op": "==", "left": {"ct": {"key": "state"}}, "right": {"set": ["invalid", "untracked"]}}}, {"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]"#;
    const INVALID_REJECT: &str = r#"[{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "invalid"}}, {"reject": null}]"#;
    const INVALID_ACCEPT: &str = r#"[{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "invalid"}}, {"accept": null}]"#;
    const ESTABLISHED_DROP: &str = r#"[{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "established"}}, {"drop": null}]"#;
    const NOT_INVALID_DROP: &str = r#"[{"match": {"op": "!=", "left": {"ct": {"key": "state"}}, "right": "invalid"}}, {"drop": null}]"#;

    /// What nft 1.0.6 prints for rules iptables-nft 1.8.9 made in a
    /// namespace: `iptables -t mangle -N MCHK`, `-A MCHK -m conntrack
    /// --ctstate INVALID,UNTRACKED -j DROP`, `-A PREROUTING -p tcp -j
    /// MCHK`, `-A PREROUTING -m conntrack ! --ctstate INVALID -j DROP`, and
    /// `-A PREROUTING -m state --state INVALID -j DROP` (handle 6): the
    /// JSON (`-j`) and the listing (`-a`).
    const IPTABLES_JSON: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "ip", "name": "mangle", "handle": 1}}, {"chain": {"family": "ip", "table": "mangle", "name": "MCHK", "handle": 1}}, {"chain": {"family": "ip", "table": "mangle", "name": "PREROUTING", "handle": 3, "type": "filter", "hook": "prerouting", "prio": -150, "policy": "accept"}}, {"rule": {"family": "ip", "table": "mangle", "chain": "MCHK", "handle": 2, "expr": [{"xt": {"type": "match", "name": "conntrack"}}, {"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]}}, {"rule": {"family": "ip", "table": "mangle", "chain": "PREROUTING", "handle": 4, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}}, {"counter": {"packets": 0, "bytes": 0}}, {"jump": {"target": "MCHK"}}]}}, {"rule": {"family": "ip", "table": "mangle", "chain": "PREROUTING", "handle": 5, "expr": [{"xt": {"type": "match", "name": "conntrack"}}, {"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]}}, {"rule": {"family": "ip", "table": "mangle", "chain": "PREROUTING", "handle": 6, "expr": [{"xt": {"type": "match", "name": "conntrack"}}, {"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]}}]}"#;
    const IPTABLES_LISTING: &str = "table ip mangle { # handle 1
	chain MCHK { # handle 1
		ct state invalid,untracked counter packets 0 bytes 0 drop # handle 2
	}

	chain PREROUTING { # handle 3
		type filter hook prerouting priority mangle; policy accept;
		meta l4proto tcp counter packets 0 bytes 0 jump MCHK # handle 4
		ct state ! invalid counter packets 0 bytes 0 drop # handle 5
		ct state invalid counter packets 0 bytes 0 drop # handle 6
	}
}
";

    /// The same ruleset with only some of its rules: `keep` holds the
    /// handles kept.
    fn iptables_with(keep: &[i64]) -> String {
        with_rules(IPTABLES_JSON, keep)
    }

    /// `json` with only the rules of `keep`'s handles.
    fn with_rules(json: &str, keep: &[i64]) -> String {
        let mut v: Value = serde_json::from_str(json).unwrap();
        v["nftables"].as_array_mut().unwrap().retain(|i| {
            i.get("rule")
                .is_none_or(|r| keep.contains(&r["handle"].as_i64().unwrap()))
        });
        v.to_string()
    }

    #[test]
    fn an_iptables_nft_invalid_drop_is_read_from_the_listing() {
        let found = found_in(&iptables_with(&[6]), IPTABLES_LISTING);
        assert_eq!(
            found,
            ["table ip mangle chain PREROUTING (hook prerouting, priority -150)"]
        );
        // Without the listing, an xt match says nothing.
        assert!(found_in(&iptables_with(&[6]), "").is_empty());
        // A negated state is no invalid drop.
        assert!(found_in(&iptables_with(&[5]), IPTABLES_LISTING).is_empty());
    }

    #[test]
    fn an_invalid_drop_in_a_chain_jumped_to_is_found() {
        let found = found_in(&iptables_with(&[2, 4]), IPTABLES_LISTING);
        assert_eq!(
            found,
            [
                "table ip mangle chain PREROUTING (hook prerouting, priority -150), through chain MCHK"
            ]
        );
        // The chain alone, jumped to by no early chain, is not reported.
        assert!(found_in(&iptables_with(&[2]), IPTABLES_LISTING).is_empty());
    }

    /// What nft 1.0.6 prints (`-j`) for a chain at priority mangle with
    /// `ct state vmap { invalid : drop, established : accept, related :
    /// accept }` (handle 6), `tcp dport vmap { 22 : jump ssh, 8080 : jump
    /// web }` (8) and `ip daddr . meta l4proto . th dport vmap @early`
    /// (9, the named map's element `198.18.0.1 . tcp . 80 : goto web`),
    /// where chain web holds `ct state invalid drop` (10).
    const VMAP_JSON: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "inet", "name": "fw", "handle": 1}}, {"map": {"family": "inet", "name": "early", "table": "fw", "type": ["ipv4_addr", "inet_proto", "inet_service"], "handle": 4, "map": "verdict", "elem": [[{"concat": ["198.18.0.1", "tcp", 80]}, {"goto": {"target": "web"}}]]}}, {"chain": {"family": "inet", "table": "fw", "name": "pre", "handle": 1, "type": "filter", "hook": "prerouting", "prio": -150, "policy": "accept"}}, {"chain": {"family": "inet", "table": "fw", "name": "web", "handle": 2}}, {"chain": {"family": "inet", "table": "fw", "name": "ssh", "handle": 3}}, {"rule": {"family": "inet", "table": "fw", "chain": "pre", "handle": 6, "expr": [{"vmap": {"key": {"ct": {"key": "state"}}, "data": {"set": [["invalid", {"drop": null}], ["established", {"accept": null}], ["related", {"accept": null}]]}}}]}}, {"rule": {"family": "inet", "table": "fw", "chain": "pre", "handle": 8, "expr": [{"vmap": {"key": {"payload": {"protocol": "tcp", "field": "dport"}}, "data": {"set": [[22, {"jump": {"target": "ssh"}}], [8080, {"jump": {"target": "web"}}]]}}}]}}, {"rule": {"family": "inet", "table": "fw", "chain": "pre", "handle": 9, "expr": [{"vmap": {"key": {"concat": [{"payload": {"protocol": "ip", "field": "daddr"}}, {"meta": {"key": "l4proto"}}, {"payload": {"protocol": "th", "field": "dport"}}]}, "data": "@early"}}]}}, {"rule": {"family": "inet", "table": "fw", "chain": "web", "handle": 10, "expr": [{"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": "invalid"}}, {"drop": null}]}}, {"rule": {"family": "inet", "table": "fw", "chain": "ssh", "handle": 11, "expr": [{"accept": null}]}}]}"#;

    /// [`VMAP_JSON`] with only the rules of `keep`'s handles.
    fn vmaps_with(keep: &[i64]) -> String {
        edited_vmaps_with(&[], keep)
    }

    /// [`VMAP_JSON`] with each `(from, to)` of `edits` replaced, and only
    /// the rules of `keep`'s handles.
    fn edited_vmaps_with(edits: &[(&str, &str)], keep: &[i64]) -> String {
        let json = edits
            .iter()
            .fold(VMAP_JSON.to_owned(), |j, (from, to)| j.replace(from, to));
        with_rules(&json, keep)
    }

    #[test]
    fn a_ct_state_verdict_map_that_drops_invalid_is_found() {
        let pre = "table inet fw chain pre (hook prerouting, priority -150)";
        assert_eq!(found_in(&vmaps_with(&[6]), ""), [pre]);
        let invalid_drop = r#"["invalid", {"drop": null}]"#;
        // Invalid packets accepted; only established ones dropped.
        for edits in [
            [(invalid_drop, r#"["invalid", {"accept": null}]"#)],
            [(
                r#""established", {"accept": null}"#,
                r#""invalid", {"accept": null}], ["established", {"drop": null}"#,
            )],
        ] {
            let json = edited_vmaps_with(
                &[edits[0], (invalid_drop, r#"["new", {"accept": null}]"#)],
                &[6],
            );
            assert!(found_in(&json, "").is_empty(), "{edits:?}");
        }
    }

    #[test]
    fn an_invalid_drop_reached_by_a_verdict_map_is_found() {
        let through =
            ["table inet fw chain pre (hook prerouting, priority -150), through chain web"];
        // An inline map's element, and a named map's.
        assert_eq!(found_in(&vmaps_with(&[8, 10]), ""), through);
        assert_eq!(found_in(&vmaps_with(&[9, 10]), ""), through);
        // The chain alone, or reached by a map for UDP only, is not.
        assert!(found_in(&vmaps_with(&[10]), "").is_empty());
        let udp = edited_vmaps_with(
            &[(r#""protocol": "tcp""#, r#""protocol": "udp""#)],
            &[8, 10],
        );
        assert!(found_in(&udp, "").is_empty());
        let by_proto = edited_vmaps_with(&[(r#""tcp", 80"#, r#""udp", 80"#)], &[9, 10]);
        assert!(found_in(&by_proto, "").is_empty());
    }

    #[test]
    fn jumps_in_a_loop_end() {
        let json = r#"{"nftables": [
            {"chain": {"family": "inet", "table": "t", "name": "base", "hook": "prerouting", "prio": -150}},
            {"chain": {"family": "inet", "table": "t", "name": "a"}},
            {"chain": {"family": "inet", "table": "t", "name": "b"}},
            {"rule": {"family": "inet", "table": "t", "chain": "base", "expr": [{"jump": {"target": "a"}}]}},
            {"rule": {"family": "inet", "table": "t", "chain": "a", "expr": [{"goto": {"target": "b"}}]}},
            {"rule": {"family": "inet", "table": "t", "chain": "b", "expr": [{"jump": {"target": "a"}}]}}]}"#;
        assert!(found_in(json, "").is_empty());
        let dropping = json.replace(
            r#""chain": "b", "expr": [{"jump": {"target": "a"}}]"#,
            &format!(r#""chain": "b", "expr": {INVALID_DROP}"#),
        );
        assert_eq!(
            found_in(&dropping, ""),
            ["table inet t chain base (hook prerouting, priority -150), through chain b"]
        );
    }

    #[test]
    fn an_invalid_drop_after_conntrack_on_prerouting_is_found() {
        for rule in [INVALID_DROP, SET_DROP, INVALID_REJECT] {
            let found = found_in(&ruleset("ip", "mangle", "prerouting", -150, rule), "");
            assert_eq!(
                found,
                ["table ip mangle chain c (hook prerouting, priority -150)"],
                "{rule}"
            );
        }
    }

    /// A wildcard port's cookie ACK is untracked, not invalid: only a rule
    /// that drops untracked packets fails it.
    #[test]
    fn an_untracked_drop_is_found_for_untracked_acks_alone() {
        let untracked = |json: &str, legacy: &[Save]| chains(json, "", legacy, AckState::Untracked);
        let set = ruleset("ip", "mangle", "prerouting", -150, SET_DROP);
        assert_eq!(
            untracked(&set, &[]),
            ["table ip mangle chain c (hook prerouting, priority -150)"]
        );
        let invalid_only = ruleset("ip", "mangle", "prerouting", -150, INVALID_DROP);
        assert!(untracked(&invalid_only, &[]).is_empty());
        assert_eq!(found_in(&invalid_only, "").len(), 1);
        // iptables-legacy: the INPUT chain's jump to `INVALID,UNTRACKED`,
        // not PREROUTING's `INVALID`.
        let legacy = [Save {
            family: "ip",
            text: include_str!("../../tests/fixtures/iptables-legacy.save").to_owned(),
        }];
        assert_eq!(
            untracked("", &legacy),
            [
                "iptables-legacy table mangle chain INPUT (hook input, priority -150), through chain CHECKS"
            ]
        );
    }

    #[test]
    fn an_invalid_drop_on_input_before_or_at_guards_priority_is_found() {
        for prio in [-150, -10, SYNPROXY_PRIORITY] {
            let found = found_in(&ruleset("inet", "fw", "input", prio, INVALID_DROP), "");
            assert_eq!(found.len(), 1, "priority {prio}");
        }
    }

    #[test]
    fn rules_that_run_after_guard_or_do_not_drop_invalid_are_left_alone() {
        for (hook, prio, rule) in [
            // The operator's firewall at filter: after guard's chain.
            ("input", 0, INVALID_DROP),
            ("input", 10, SET_DROP),
            // Before conntrack there is no state to test.
            ("prerouting", -300, INVALID_DROP),
            ("prerouting", -150, INVALID_ACCEPT),
            ("prerouting", -150, ESTABLISHED_DROP),
            ("prerouting", -150, NOT_INVALID_DROP),
            ("forward", -150, INVALID_DROP),
            ("output", -150, INVALID_DROP),
        ] {
            let found = found_in(&ruleset("inet", "fw", hook, prio, rule), "");
            assert!(found.is_empty(), "{hook} {prio} {rule}: {found:?}");
        }
    }

    #[test]
    fn guards_own_table_and_other_families_are_not_reported() {
        let own = ruleset(
            "inet",
            SYNPROXY_TABLE,
            "input",
            SYNPROXY_PRIORITY,
            INVALID_DROP,
        );
        assert!(found_in(&own, "").is_empty());
        let bridge = ruleset("bridge", "b", "prerouting", -150, INVALID_DROP);
        assert!(found_in(&bridge, "").is_empty());
    }

    #[test]
    fn an_unreadable_ruleset_reports_nothing() {
        assert!(found_in("", "").is_empty());
        assert!(found_in("{\"nftables\": 3}", "").is_empty());
    }
}
