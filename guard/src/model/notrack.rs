//! The ports conntrack skips, read from `nft -j list ruleset`: rules such
//! as `udp dport 53 notrack` in a chain on the prerouting hook before
//! conntrack (`guard notrack`'s table, `guard run --notrack-port`'s, an
//! operator's own). A SYN or UDP datagram to such a port opens no
//! conntrack entry, so the XDP program takes it for no new flow
//! (`PORT_UNTRACKED_TCP`, `PORT_UNTRACKED_UDP`).
//!
//! Read narrowly, since a port taken for untracked while conntrack still
//! tracks some of its packets would let those fill the table unlimited: a
//! rule counts only if it matches the destination port (one, a range or a
//! set; `tcp`, `udp`, or `th` after a `meta l4proto` match or alone) and
//! nothing else (a counter may count it), in a base chain on the prerouting hook at a priority
//! before conntrack's, with no rule before it that could end the chain
//! for some packets (a verdict). An `inet` table's rule counts; an `ip`
//! or `ip6` table's only where the other family's says the same.
//! iptables' NOTRACK target is not read (iptables-nft writes it as an
//! `xt` expression).

use std::collections::BTreeSet;

use serde_json::Value;

use super::ruleset::{CONNTRACK_PRIORITY, Ruleset, chain_names, items};

/// The ports conntrack skips, by protocol.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Untracked {
    pub tcp: BTreeSet<u16>,
    pub udp: BTreeSet<u16>,
}

impl Untracked {
    /// Whether no port is untracked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.tcp.is_empty() && self.udp.is_empty()
    }
}

/// The untracked ports the ruleset's JSON names (nothing if it cannot be
/// read).
#[must_use]
pub fn untracked(json: &str) -> Untracked {
    let items = items(json);
    // No rule's text is read: the listing is not needed.
    let set = Ruleset::new(&items, "");
    let mut by_family: [Untracked; 3] = Default::default();
    for chain in set.chains() {
        let before_conntrack = chain["prio"]
            .as_i64()
            .is_some_and(|p| p < CONNTRACK_PRIORITY);
        if chain["hook"].as_str() != Some("prerouting") || !before_conntrack {
            continue;
        }
        let Some((family, table, name)) = chain_names(chain) else {
            continue;
        };
        let slot = match family {
            "inet" => 0,
            "ip" => 1,
            "ip6" => 2,
            _ => continue,
        };
        for rule in set.rules_of(family, table, name) {
            let expr = rule.expr;
            if let Some((tcp, udp, ports)) = notrack_rule(expr) {
                let out = &mut by_family[slot];
                if tcp {
                    out.tcp.extend(&ports);
                }
                if udp {
                    out.udp.extend(&ports);
                }
            } else if expr.iter().any(ends_chain) {
                // Past a verdict, a later rule may not see every packet.
                break;
            }
        }
    }
    let [inet, ip, ip6] = by_family;
    Untracked {
        tcp: inet.tcp.union(&(&ip.tcp & &ip6.tcp)).copied().collect(),
        udp: inet.udp.union(&(&ip.udp & &ip6.udp)).copied().collect(),
    }
}

/// A rule that matches a destination port and nothing else, then
/// `notrack`: whether it covers TCP and UDP, and its ports.
fn notrack_rule(expr: &[Value]) -> Option<(bool, bool, Vec<u16>)> {
    let (last, matches) = expr.split_last()?;
    last.get("notrack")?;
    // Protocols a `meta l4proto` match narrows to (both when absent).
    let (mut tcp, mut udp) = (true, true);
    let mut ports = None;
    for m in matches {
        // A counter counts what it sees, and matches everything.
        if m.get("counter").is_some() {
            continue;
        }
        let m = m.get("match")?;
        if !matches!(m["op"].as_str(), Some("==" | "in")) {
            return None;
        }
        let (left, right) = (&m["left"], &m["right"]);
        if left["meta"]["key"].as_str() == Some("l4proto") {
            let named = names(right)?;
            tcp &= named.contains(&"tcp");
            udp &= named.contains(&"udp");
            continue;
        }
        let payload = &left["payload"];
        if payload["field"].as_str() != Some("dport") || ports.is_some() {
            return None;
        }
        match payload["protocol"].as_str()? {
            "tcp" => udp = false,
            "udp" => tcp = false,
            "th" => {}
            _ => return None,
        }
        ports = Some(port_list(right)?);
    }
    let ports = ports?;
    (tcp || udp).then_some((tcp, udp, ports))
}

/// A protocol name or a set of them.
fn names(v: &Value) -> Option<Vec<&str>> {
    match v.get("set").and_then(Value::as_array) {
        Some(set) => set.iter().map(Value::as_str).collect(),
        None => v.as_str().map(|n| vec![n]),
    }
}

/// The ports a match names: one, a range or a set of either.
fn port_list(v: &Value) -> Option<Vec<u16>> {
    let port = |v: &Value| v.as_u64().and_then(|p| u16::try_from(p).ok());
    let one = |v: &Value| -> Option<Vec<u16>> {
        if let Some(p) = port(v) {
            return Some(vec![p]);
        }
        let r = v["range"].as_array()?;
        Some((port(r.first()?)?..=port(r.get(1)?)?).collect())
    };
    match v.get("set").and_then(Value::as_array) {
        Some(set) => Some(set.iter().map(one).collect::<Option<Vec<_>>>()?.concat()),
        None => one(v),
    }
}

/// Whether a statement may end the chain for the packets it sees.
fn ends_chain(statement: &Value) -> bool {
    [
        "accept", "drop", "reject", "queue", "return", "jump", "goto", "vmap",
    ]
    .iter()
    .any(|k| statement.get(k).is_some())
        || statement["match"]["right"].get("vmap").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `nft -j list ruleset` of one table, as nft 1.0.6 writes it.
    fn ruleset(family: &str, table: &str, prio: i64, rules: &[&str]) -> String {
        wrap(&table_items(family, table, prio, rules))
    }

    fn wrap(items: &[String]) -> String {
        format!(r#"{{"nftables": [{}]}}"#, items.join(", "))
    }

    /// The JSON items of one table: its prerouting chain and its rules.
    fn table_items(family: &str, table: &str, prio: i64, rules: &[&str]) -> Vec<String> {
        let mut items = vec![format!(
            r#"{{"chain": {{"family": "{family}", "table": "{table}", "name": "pre", "handle": 1, "type": "filter", "hook": "prerouting", "prio": {prio}, "policy": "accept"}}}}"#
        )];
        for r in rules {
            items.push(format!(
                r#"{{"rule": {{"family": "{family}", "table": "{table}", "chain": "pre", "handle": 2, "expr": {r}}}}}"#
            ));
        }
        items
    }

    const NOTRACK: &str = r#"{"notrack": null}"#;

    fn dport(proto: &str, right: &str) -> String {
        format!(
            r#"{{"match": {{"op": "==", "left": {{"payload": {{"protocol": "{proto}", "field": "dport"}}}}, "right": {right}}}}}"#
        )
    }

    fn rule(parts: &[&str]) -> String {
        format!("[{}]", parts.join(", "))
    }

    fn set(ports: &[u16]) -> BTreeSet<u16> {
        ports.iter().copied().collect()
    }

    #[test]
    fn ports_sets_and_ranges_by_protocol() {
        let udp = rule(&[&dport("udp", r#"{"set": [53, 123]}"#), NOTRACK]);
        let tcp = rule(&[&dport("tcp", "8080"), NOTRACK]);
        let range = rule(&[&dport("udp", r#"{"range": [6000, 6002]}"#), NOTRACK]);
        let th = rule(&[
            r#"{"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "udp"}}"#,
            &dport("th", "7000"),
            NOTRACK,
        ]);
        let both = rule(&[&dport("th", "9000"), NOTRACK]);
        let counted = rule(&[
            &dport("udp", "5353"),
            r#"{"counter": {"packets": 0, "bytes": 0}}"#,
            NOTRACK,
        ]);
        let json = ruleset(
            "inet",
            "raw",
            -300,
            &[&udp, &tcp, &range, &th, &both, &counted],
        );
        assert_eq!(
            untracked(&json),
            Untracked {
                tcp: set(&[8080, 9000]),
                udp: set(&[53, 123, 5353, 6000, 6001, 6002, 7000, 9000]),
            }
        );
    }

    /// A rule with another match (an address) covers only some packets to
    /// its port; one after a verdict may not see them all; a chain after
    /// conntrack untracks nothing.
    #[test]
    fn only_rules_that_untrack_every_packet_to_a_port_count() {
        let addr = rule(&[
            r#"{"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "198.18.0.9"}}"#,
            &dport("udp", "5353"),
            NOTRACK,
        ]);
        let before = rule(&[&dport("udp", "53"), NOTRACK]);
        let verdict = rule(&[&dport("tcp", "22"), r#"{"accept": null}"#]);
        let after = rule(&[&dport("udp", "123"), NOTRACK]);
        let json = ruleset("inet", "raw", -300, &[&addr, &before, &verdict, &after]);
        assert_eq!(
            untracked(&json),
            Untracked {
                tcp: set(&[]),
                udp: set(&[53]),
            }
        );
        let late = ruleset("inet", "filter", 0, &[&before]);
        assert!(untracked(&late).is_empty());
    }

    /// An `ip` table's rule covers IPv4 alone: only where an `ip6` table
    /// says the same does a port count.
    #[test]
    fn a_port_counts_for_one_family_only_where_the_other_agrees() {
        let udp53 = rule(&[&dport("udp", "53"), NOTRACK]);
        let udp123 = rule(&[&dport("udp", "123"), NOTRACK]);
        let v4 = table_items("ip", "raw", -300, &[&udp53, &udp123]);
        let v6 = table_items("ip6", "raw", -300, &[&udp53]);
        assert_eq!(untracked(&wrap(&v4)), Untracked::default());
        let both = untracked(&wrap(&[v4, v6].concat()));
        assert_eq!(both.udp, set(&[53]));
        assert_eq!(both.tcp, set(&[]));
    }

    #[test]
    fn unreadable_json_untracks_nothing() {
        assert!(untracked("not json").is_empty());
    }
}
