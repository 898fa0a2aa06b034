//! The host's nftables ruleset as `nft -j list ruleset` and `nft -a list
//! ruleset` print it, read for the walks that follow its chains (`nat`,
//! `firewall`) and for its NOTRACK rules (`notrack`): the rules of a chain, a rule's text, its jumps and the
//! elements of its verdict maps.
//!
//! iptables-nft writes its matches (`-m conntrack`, `-m multiport`) as
//! `xt` expressions, which the JSON shows without their arguments; the
//! text listing translates them, so a walk reads such a rule there, by its
//! handle.

use std::collections::HashMap;

use serde_json::Value;

/// How deep jumps are followed (nftables itself allows 16).
pub(super) const MAX_JUMPS: usize = 16;

/// Conntrack's priority on the prerouting hook: a chain below it runs
/// before conntrack (where `ct state` says nothing about the connection,
/// and where a `notrack` takes effect); one above, after.
pub(super) const CONNTRACK_PRIORITY: i64 = -200;

/// A chain's family, table and name, as its rules name it.
pub(super) fn chain_names(chain: &Value) -> Option<(&str, &str, &str)> {
    Some((
        chain["family"].as_str()?,
        chain["table"].as_str()?,
        chain["name"].as_str()?,
    ))
}

/// A rule of the JSON, with where it is.
pub(super) struct Rule<'a> {
    pub(super) family: &'a str,
    pub(super) table: &'a str,
    pub(super) chain: &'a str,
    pub(super) handle: Option<i64>,
    pub(super) expr: &'a [Value],
}

/// An element of a verdict map: the map's key expressions paired with the
/// element's values (a concatenation in its parts), and its verdict.
pub(super) struct Element<'a> {
    pub(super) key: Vec<(&'a Value, &'a Value)>,
    pub(super) verdict: &'a Value,
}

impl<'a> Element<'a> {
    /// The chain the element jumps or goes to.
    pub(super) fn target(&self) -> Option<&'a str> {
        jump_target(self.verdict)
    }

    /// Whether the element drops or rejects.
    pub(super) fn drops(&self) -> bool {
        drops(self.verdict)
    }

    /// Whether the element is for `proto`'s packets alone (its key names a
    /// field of its header, or `meta l4proto`).
    pub(super) fn alone(&self, proto: Transport) -> bool {
        self.key
            .iter()
            .any(|(left, right)| alone(left, right, proto))
    }
}

/// The ruleset's items and rules, and the listing's rule texts.
pub(super) struct Ruleset<'a> {
    items: &'a [Value],
    rules: Vec<Rule<'a>>,
    /// Each chain's rules, in order, by index: the walks look chains up by
    /// name, once for each jump, and kube-proxy's rules have thousands.
    by_chain: HashMap<(&'a str, &'a str, &'a str), Vec<usize>>,
    texts: HashMap<(String, String, i64), String>,
}

impl<'a> Ruleset<'a> {
    /// `items` from [`items`]; `listing` is `nft -a list ruleset`.
    pub(super) fn new(items: &'a [Value], listing: &str) -> Self {
        let rules: Vec<Rule<'a>> = items
            .iter()
            .filter_map(|i| {
                let r = i.get("rule")?;
                Some(Rule {
                    family: r["family"].as_str()?,
                    table: r["table"].as_str()?,
                    chain: r["chain"].as_str()?,
                    handle: r["handle"].as_i64(),
                    expr: r["expr"].as_array()?,
                })
            })
            .collect();
        let mut by_chain: HashMap<_, Vec<usize>> = HashMap::new();
        for (i, r) in rules.iter().enumerate() {
            by_chain
                .entry((r.family, r.table, r.chain))
                .or_default()
                .push(i);
        }
        Self {
            items,
            rules,
            by_chain,
            texts: rule_texts(listing),
        }
    }

    /// The chains declared.
    pub(super) fn chains(&self) -> impl Iterator<Item = &'a Value> {
        self.items.iter().filter_map(|i| i.get("chain"))
    }

    /// The rules of `family`'s `table`'s `chain`, in order.
    pub(super) fn rules_of<'s>(
        &'s self,
        family: &'s str,
        table: &'s str,
        chain: &'s str,
    ) -> impl Iterator<Item = &'s Rule<'a>> + Clone {
        // The map's keys read as the shorter-lived names asked for.
        let by_chain: &HashMap<(&str, &str, &str), Vec<usize>> = &self.by_chain;
        by_chain
            .get(&(family, table, chain))
            .into_iter()
            .flatten()
            .filter_map(|&i| self.rules.get(i))
    }

    /// The rule's line in the listing, without its handle.
    pub(super) fn text(&self, rule: &Rule<'_>) -> Option<&str> {
        let handle = rule.handle?;
        self.texts
            .get(&(rule.family.to_owned(), rule.table.to_owned(), handle))
            .map(String::as_str)
    }

    /// The elements of the rule's verdict maps, inline or named (`@name`,
    /// in the rule's table).
    pub(super) fn elements(&self, rule: &Rule<'a>) -> Vec<Element<'a>> {
        let mut out = Vec::new();
        for vmap in rule.expr.iter().filter_map(|e| e.get("vmap")) {
            let elems = match &vmap["data"] {
                Value::String(name) => name
                    .strip_prefix('@')
                    .and_then(|name| self.map_elems(rule.family, rule.table, name)),
                data => data["set"].as_array(),
            };
            let keys = parts(&vmap["key"]);
            for elem in elems.into_iter().flatten() {
                let (Some(value), Some(verdict)) = (elem.get(0), elem.get(1)) else {
                    continue;
                };
                // An element with a comment or a timeout wraps its value.
                let value = value.get("elem").map_or(value, |e| &e["val"]);
                out.push(Element {
                    key: keys.iter().copied().zip(parts(value)).collect(),
                    verdict,
                });
            }
        }
        out
    }

    /// The elements of the named map `name` of `family`'s `table`.
    fn map_elems(&self, family: &str, table: &str, name: &str) -> Option<&'a Vec<Value>> {
        self.items.iter().find_map(|i| {
            let m = i.get("map")?;
            (m["family"] == family && m["table"] == table && m["name"] == name)
                .then(|| m["elem"].as_array())
                .flatten()
        })
    }
}

/// The items of `nft -j list ruleset` (none if it cannot be read).
pub(super) fn items(json: &str) -> Vec<Value> {
    serde_json::from_str::<Value>(json)
        .ok()
        .and_then(|mut v| v.get_mut("nftables").map(Value::take))
        .and_then(|v| match v {
            Value::Array(items) => Some(items),
            _ => None,
        })
        .unwrap_or_default()
}

/// The chains `rule` jumps or goes to.
pub(super) fn targets<'a>(rule: &Rule<'a>) -> impl Iterator<Item = &'a str> {
    rule.expr.iter().filter_map(jump_target)
}

/// The chain of a `jump` or `goto` verdict.
fn jump_target(verdict: &Value) -> Option<&str> {
    verdict
        .get("jump")
        .or_else(|| verdict.get("goto"))
        .and_then(|j| j["target"].as_str())
}

/// Whether a verdict drops or rejects.
pub(super) fn drops(verdict: &Value) -> bool {
    verdict.get("drop").is_some() || verdict.get("reject").is_some()
}

/// A transport protocol with ports, as the walks follow the rules for it
/// (`nft::Proto` is `--proto`'s choice, which may be both).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

impl Transport {
    /// Its name in the rules (`tcp dport`, `meta l4proto udp`, `-p tcp`).
    pub(super) const fn name(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }

    /// Its IP protocol number.
    pub(super) const fn number(self) -> u64 {
        match self {
            Self::Tcp => 6,
            Self::Udp => 17,
        }
    }

    /// The other one.
    pub(super) const fn other(self) -> Self {
        match self {
            Self::Tcp => Self::Udp,
            Self::Udp => Self::Tcp,
        }
    }
}

/// Whether `left` equal to `right` (a rule's match, or a verdict map's
/// key and an element's value) holds for `proto`'s packets alone: a field
/// of its header, or `meta l4proto`.
pub(super) fn alone(left: &Value, right: &Value, proto: Transport) -> bool {
    left["payload"]["protocol"].as_str() == Some(proto.name())
        || (left["meta"]["key"].as_str() == Some("l4proto")
            && (right.as_str() == Some(proto.name()) || right.as_u64() == Some(proto.number())))
}

/// A key or a value in its parts: a concatenation's, or itself alone.
fn parts(v: &Value) -> Vec<&Value> {
    match v.get("concat").and_then(Value::as_array) {
        Some(parts) => parts.iter().collect(),
        None => vec![v],
    }
}

/// The listing's rules by family, table and handle: `nft -a list ruleset`
/// ends each rule's line with `# handle N`, and a table's handles are its
/// own.
fn rule_texts(listing: &str) -> HashMap<(String, String, i64), String> {
    let mut texts = HashMap::new();
    let mut table: Option<(String, String)> = None;
    for line in listing.lines() {
        let line = line.trim();
        let words: Vec<&str> = line.split_whitespace().collect();
        if let ["table", family, name, ..] = words.as_slice() {
            table = Some(((*family).to_owned(), (*name).to_owned()));
            continue;
        }
        if words
            .first()
            .is_some_and(|w| matches!(*w, "chain" | "set" | "map" | "}"))
        {
            continue;
        }
        let (Some((family, name)), Some((rule, handle))) = (&table, line.rsplit_once("# handle "))
        else {
            continue;
        };
        if let Ok(handle) = handle.trim().parse() {
            texts.insert(
                (family.clone(), name.clone(), handle),
                rule.trim().to_owned(),
            );
        }
    }
    texts
}
