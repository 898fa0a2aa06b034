//! What the host's own nftables ruleset does to guard's SYN cookies, read
//! from `nft -j list ruleset`: a rule that drops the packets conntrack
//! calls invalid, in a chain that runs before guard's SYNPROXY chain,
//! drops every cookie handshake's ACK (invalid to conntrack until SYNPROXY
//! takes it), so no cookie connection completes.
//!
//! Only base chains and native nft rules are read: a rule reached by a
//! jump, or an iptables rule (legacy, or iptables-nft's `xt` matches,
//! whose conntrack state the JSON does not show), is not seen.

use serde_json::Value;

use super::nft::{SYNPROXY_PRIORITY, SYNPROXY_TABLE};

/// What such a chain does, after its name, for the log and for doctor.
pub const CONSEQUENCE: &str = "drops what conntrack calls invalid before guard's SYNPROXY chain (input, priority filter - 1): a SYN-cookie handshake's ACK is invalid until SYNPROXY takes it, so cookie connections fail";
/// What to do about it.
pub const FIX: &str = "move that rule to priority filter or later";

/// Conntrack's priority on the prerouting hook: a chain at or below it runs
/// before conntrack, where `ct state` says nothing about the connection.
const CONNTRACK_PRIORITY: i64 = -200;

/// The chains holding a rule that drops (or rejects) invalid packets
/// before guard's SYNPROXY chain sees them, each as `table FAMILY NAME
/// chain NAME (hook H, priority P)`. Empty if the JSON cannot be read.
#[must_use]
pub fn invalid_drops_before_synproxy(ruleset: &str) -> Vec<String> {
    let Ok(v) = serde_json::from_str::<Value>(ruleset) else {
        return Vec::new();
    };
    let Some(items) = v["nftables"].as_array() else {
        return Vec::new();
    };
    let mut early = Vec::new();
    for chain in items.iter().filter_map(|i| i.get("chain")) {
        let (Some(family), Some(table), Some(name), Some(hook), Some(prio)) = (
            chain["family"].as_str(),
            chain["table"].as_str(),
            chain["name"].as_str(),
            chain["hook"].as_str(),
            chain["prio"].as_i64(),
        ) else {
            continue;
        };
        let before = match hook {
            "prerouting" => prio > CONNTRACK_PRIORITY,
            // Of one priority the newest chain runs first: a chain at
            // guard's own may run before it.
            "input" => prio <= SYNPROXY_PRIORITY,
            _ => false,
        };
        if before
            && matches!(family, "ip" | "ip6" | "inet")
            && !(family == "inet" && table == SYNPROXY_TABLE)
        {
            early.push((family, table, name, hook, prio));
        }
    }
    let mut out = Vec::new();
    for (family, table, name, hook, prio) in early {
        let drops = items.iter().filter_map(|i| i.get("rule")).any(|r| {
            r["family"].as_str() == Some(family)
                && r["table"].as_str() == Some(table)
                && r["chain"].as_str() == Some(name)
                && drops_invalid(&r["expr"])
        });
        if drops {
            out.push(format!(
                "table {family} {table} chain {name} (hook {hook}, priority {prio})"
            ));
        }
    }
    out
}

/// Whether a rule's expressions match `ct state invalid` (alone or in a
/// set) and end in a drop or a reject.
fn drops_invalid(expr: &Value) -> bool {
    let Some(expr) = expr.as_array() else {
        return false;
    };
    let invalid = expr.iter().any(|e| {
        let m = &e["match"];
        m["left"]["ct"]["key"].as_str() == Some("state")
            && match &m["right"] {
                Value::String(s) => s == "invalid",
                Value::Object(o) => o
                    .get("set")
                    .and_then(Value::as_array)
                    .is_some_and(|s| s.iter().any(|x| x.as_str() == Some("invalid"))),
                Value::Array(a) => a.iter().any(|x| x.as_str() == Some("invalid")),
                _ => false,
            }
    });
    invalid
        && expr
            .iter()
            .any(|e| e.get("drop").is_some() || e.get("reject").is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn an_invalid_drop_after_conntrack_on_prerouting_is_found() {
        for rule in [INVALID_DROP, SET_DROP, INVALID_REJECT] {
            let found =
                invalid_drops_before_synproxy(&ruleset("ip", "mangle", "prerouting", -150, rule));
            assert_eq!(
                found,
                ["table ip mangle chain c (hook prerouting, priority -150)"],
                "{rule}"
            );
        }
    }

    #[test]
    fn an_invalid_drop_on_input_before_or_at_guards_priority_is_found() {
        for prio in [-150, -10, SYNPROXY_PRIORITY] {
            let found =
                invalid_drops_before_synproxy(&ruleset("inet", "fw", "input", prio, INVALID_DROP));
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
            ("forward", -150, INVALID_DROP),
            ("output", -150, INVALID_DROP),
        ] {
            let found = invalid_drops_before_synproxy(&ruleset("inet", "fw", hook, prio, rule));
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
        assert!(invalid_drops_before_synproxy(&own).is_empty());
        let bridge = ruleset("bridge", "b", "prerouting", -150, INVALID_DROP);
        assert!(invalid_drops_before_synproxy(&bridge).is_empty());
    }

    #[test]
    fn an_unreadable_ruleset_reports_nothing() {
        assert!(invalid_drops_before_synproxy("").is_empty());
        assert!(invalid_drops_before_synproxy("{\"nftables\": 3}").is_empty());
    }
}
