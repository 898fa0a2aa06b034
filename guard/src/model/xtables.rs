//! iptables-legacy's rules, as `iptables-legacy-save` and
//! `ip6tables-legacy-save` print them. They live in the kernel's xtables,
//! not in nftables, so `nft list ruleset` never shows them, yet their
//! hooks run beside nftables' on the same packets: hosts on older
//! distributions (and Docker or kube-proxy on them) still write their nat
//! rules and anti-DDoS guides' mangle rules there. The walks that read
//! nftables (`nat`, `firewall`) read these too.

use std::collections::HashMap;

use super::ruleset::Transport;

/// One tool's output: `family` is `ip` (iptables) or `ip6` (ip6tables).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Save {
    pub family: &'static str,
    pub text: String,
}

impl Save {
    /// The tool that printed it, for the places named in messages.
    #[must_use]
    pub fn tool(&self) -> &'static str {
        if self.family == "ip6" {
            "ip6tables-legacy"
        } else {
            "iptables-legacy"
        }
    }
}

/// A rule: its table and its arguments after `-A CHAIN` (its chain is
/// where [`Tables`] keeps it).
pub(super) struct SavedRule {
    pub(super) table: String,
    args: Vec<String>,
}

/// The rules of a save, and each table's chains (declared, or holding
/// rules) with their rules, in order, by index: the walks look chains up
/// by name, once for each jump, and kube-proxy's rules have thousands.
pub(super) struct Tables {
    rules: Vec<SavedRule>,
    chains: HashMap<String, HashMap<String, Vec<usize>>>,
}

impl Tables {
    pub(super) fn parse(text: &str) -> Self {
        let mut rules = Vec::new();
        let mut chains: HashMap<String, HashMap<String, Vec<usize>>> = HashMap::new();
        let mut table = String::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(name) = line.strip_prefix('*') {
                name.clone_into(&mut table);
            } else if let Some(decl) = line.strip_prefix(':') {
                if let Some(name) = decl.split_whitespace().next() {
                    chains
                        .entry(table.clone())
                        .or_default()
                        .entry(name.to_owned())
                        .or_default();
                }
            } else if let Some(rest) = line.strip_prefix("-A ") {
                let mut args = words(rest);
                if args.is_empty() {
                    continue;
                }
                let chain = args.remove(0);
                chains
                    .entry(table.clone())
                    .or_default()
                    .entry(chain)
                    .or_default()
                    .push(rules.len());
                rules.push(SavedRule {
                    table: table.clone(),
                    args,
                });
            }
        }
        Self { rules, chains }
    }

    /// The rules of `table`'s `chain`, in order.
    pub(super) fn rules_of<'s>(
        &'s self,
        table: &str,
        chain: &str,
    ) -> impl Iterator<Item = &'s SavedRule> + Clone {
        self.chains
            .get(table)
            .and_then(|t| t.get(chain))
            .into_iter()
            .flatten()
            .filter_map(|&i| self.rules.get(i))
    }

    /// The chain of `table` the rule jumps or goes to (`-j`, `-g`), if it
    /// names one of the table's (not a target such as DROP).
    pub(super) fn jump<'s>(&'s self, rule: &'s SavedRule) -> Option<&'s str> {
        let (target, _) = rule
            .value(&["-j", "--jump"])
            .or(rule.value(&["-g", "--goto"]))?;
        self.chains
            .get(&rule.table)
            .is_some_and(|t| t.contains_key(target))
            .then_some(target)
    }
}

impl SavedRule {
    /// The value after the first of `flags`, and whether a `!` comes
    /// before the flag (iptables-save writes `! --dport 80`).
    pub(super) fn value(&self, flags: &[&str]) -> Option<(&str, bool)> {
        let at = self.args.iter().position(|a| flags.contains(&a.as_str()))?;
        let negated = at > 0 && self.args[at - 1] == "!";
        Some((self.args.get(at + 1)?.as_str(), negated))
    }

    /// The target (`-j`): DNAT, DROP, a chain.
    pub(super) fn target(&self) -> Option<&str> {
        self.value(&["-j", "--jump"]).map(|(t, _)| t)
    }

    /// Whether the rule may match `proto`: no `-p`, `-p tcp` (for TCP) or
    /// `-p all`, or a negated protocol other than it.
    pub(super) fn may_be(&self, proto: Transport) -> bool {
        match self.value(&["-p", "--protocol"]) {
            None => true,
            Some((p, negated)) => {
                let p = p.to_ascii_lowercase();
                let it = p == proto.name() || p == proto.number().to_string();
                let all = matches!(p.as_str(), "all" | "0");
                all || it != negated
            }
        }
    }

    /// The destination ports the rule matches (`None`: any): `--dport`
    /// of `-m tcp` (a port or `lo:hi`), `--dports` of `-m multiport` (a
    /// list of them). A negated match, or one it cannot read, is any port.
    pub(super) fn dports(&self) -> Option<Vec<(u16, u16)>> {
        let (list, negated) = self.value(&[
            "--dport",
            "--destination-port",
            "--dports",
            "--destination-ports",
        ])?;
        if negated {
            return None;
        }
        list.split(',')
            .map(|item| {
                let (lo, hi) = item.split_once(':').unwrap_or((item, item));
                let lo = if lo.is_empty() { 0 } else { lo.parse().ok()? };
                let hi = if hi.is_empty() {
                    u16::MAX
                } else {
                    hi.parse().ok()?
                };
                Some((lo, hi))
            })
            .collect()
    }

    /// Whether the rule matches the conntrack state `state` (`-m conntrack
    /// --ctstate` or `-m state --state`, a list holding it, not negated).
    pub(super) fn matches_state(&self, state: &str) -> bool {
        self.value(&["--ctstate", "--state"])
            .is_some_and(|(list, negated)| !negated && list.split(',').any(|s| s == state))
    }
}

/// A rule's arguments: words, or text in double quotes (iptables-save
/// quotes a comment with spaces, escaping `"` and `\` in it).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let Some(&first) = chars.peek() else {
            return out;
        };
        let mut word = String::new();
        if first == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => word.extend(chars.next()),
                    '"' => break,
                    c => word.push(c),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                word.push(c);
            }
        }
        out.push(word);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_comments_are_one_argument() {
        let t = Tables::parse(
            "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -m comment --comment \"say \\\"hi\\\" now\" -p tcp -j RETURN\nCOMMIT\n",
        );
        let rule = t.rules_of("nat", "PREROUTING").next().expect("a rule");
        assert_eq!(rule.value(&["--comment"]), Some(("say \"hi\" now", false)));
        assert_eq!(rule.target(), Some("RETURN"));
    }

    #[test]
    fn ports_and_protocols_are_read_with_their_negations() {
        let t = Tables::parse(
            "*nat\n\
             -A P -p tcp -m tcp --dport 8080 -j DNAT\n\
             -A P -p tcp -m multiport --dports 9000:9010,9443,:20 -j DNAT\n\
             -A P -p tcp -m tcp ! --dport 22 -j DNAT\n\
             -A P -p udp -m udp --dport 53 -j DNAT\n\
             -A P ! -p udp -j DNAT\n\
             -A P -j DNAT\n",
        );
        let rules: Vec<&SavedRule> = t.rules_of("nat", "P").collect();
        assert_eq!(rules[0].dports(), Some(vec![(8080, 8080)]));
        assert_eq!(
            rules[1].dports(),
            Some(vec![(9000, 9010), (9443, 9443), (0, 20)])
        );
        assert_eq!(rules[2].dports(), None);
        let tcp: Vec<bool> = rules.iter().map(|r| r.may_be(Transport::Tcp)).collect();
        assert_eq!(tcp, [true, true, true, false, true, true]);
        let udp: Vec<bool> = rules.iter().map(|r| r.may_be(Transport::Udp)).collect();
        assert_eq!(udp, [false, false, false, true, false, true]);
    }
}
