//! The TCP ports that the host's nat rules rewrite (DNAT, REDIRECT:
//! Docker's published ports, kube-proxy's NodePorts, a transparent proxy),
//! on the prerouting hook and on the output hook, read from `nft -j list
//! ruleset` and `nft -a list ruleset`. netfilter translates a connection
//! at its first packet, and a cookie handshake's first packet the kernel
//! sees is its ACK, which is not translated: SYNPROXY completes it with a
//! connection of its own, made from this host, to the address the client
//! named. So a port the prerouting rules rewrite gets SYN cookies only if
//! the output rules rewrite it too (Docker's and kube-proxy's do, for
//! this host's own connections to its published ports): SYNPROXY's
//! connection then goes where the client's would have ([`NatRewrites::forwarded`]).
//! Otherwise it would reach a local listener instead (docker-proxy), or
//! none, even when something listens on the port here too.
//!
//! The UDP ports the prerouting rules rewrite are read too, by a walk of
//! their own ([`NatRewrites::udp`]): a published UDP port is open though
//! no socket here is bound to it (`model::ports::OpenPorts`).
//!
//! A chain is followed through jumps and gotos with the ports of the rules
//! that led there, and through verdict maps (kube-proxy's nftables mode
//! dispatches services by `ip daddr . meta l4proto . th dport vmap`) with
//! the port each element's key names; a translating rule with no port of
//! its own, reached without one, may rewrite any port of the walk's
//! transport. A rule or a map element for the other transport alone is
//! skipped. Matches on anything
//! but the port (addresses, interfaces) are not read: a rule is taken to
//! rewrite its ports for every address.

use std::collections::{BTreeSet, HashMap, hash_map::Entry};

use serde_json::Value;

use super::{
    ruleset::{Element, MAX_JUMPS, Ruleset, Transport, alone, chain_names, items, targets},
    xtables::{Save, Tables},
};

/// Inclusive ranges of ports; `None`: every port.
type Ports = Option<Vec<(u16, u16)>>;

/// Where the nat rules rewrite TCP ports: each rule as `table FAMILY NAME
/// chain NAME`, with its ports or every port.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rewrites {
    /// A rule that may rewrite any TCP port, if one does.
    pub all: Option<String>,
    /// Ranges of ports a rule rewrites, and the rule's place.
    pub ranges: Vec<(u16, u16, String)>,
}

/// The nat hook a walk starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hook {
    /// Connections that arrive: where a port's clients go.
    Prerouting,
    /// Connections this host makes, SYNPROXY's among them.
    Output,
}

impl Hook {
    /// The hook's name in nftables.
    const fn nft(self) -> &'static str {
        match self {
            Self::Prerouting => "prerouting",
            Self::Output => "output",
        }
    }

    /// The built-in chain of iptables' nat table on the hook.
    const fn legacy(self) -> &'static str {
        match self {
            Self::Prerouting => "PREROUTING",
            Self::Output => "OUTPUT",
        }
    }
}

impl Rewrites {
    /// Records a rule at `at` that rewrites `ports`.
    fn record(&mut self, ports: &Ports, at: String) {
        match ports {
            None => {
                self.all.get_or_insert(at);
            }
            Some(ranges) => self
                .ranges
                .extend(ranges.iter().map(|&(lo, hi)| (lo, hi, at.clone()))),
        }
    }

    /// The place of a rule that rewrites `port`, if one does.
    #[must_use]
    pub fn rewriting(&self, port: u16) -> Option<&str> {
        self.all.as_deref().or_else(|| {
            self.ranges
                .iter()
                .find(|(lo, hi, _)| (*lo..=*hi).contains(&port))
                .map(|(_, _, at)| at.as_str())
        })
    }
}

/// How many rules the walks look at, at most (a chain reached with other
/// ports is looked at again, [`Visits`]): kube-proxy's iptables rules for
/// 10,000 services of three endpoints and their NodePorts, 110,000 rules,
/// are 203,000 looks; Kubernetes' limit of 150,000 pods, each an
/// endpoint, would be about 1,000,000 at worst. Past it the walk
/// gives up, and every port is taken as rewritten: a port the rules send
/// elsewhere that got cookies would lose every connection while armed,
/// where a port without them keeps the limits and the budget.
const MAX_VISITS: usize = 1_000_000;

/// What the walks have looked at: how many rules, and each chain reached
/// with its ports, at the least depth. A chain reached again with the
/// same ports, no deeper, adds nothing: kube-proxy's rules jump to one
/// masquerade-marking chain from every service and endpoint, and a chain
/// reached by many paths would otherwise be walked once for each.
#[derive(Default)]
struct Visits {
    rules: usize,
    walked: HashMap<(String, Ports), usize>,
}

impl Visits {
    /// Whether `chain` (named with its table), reached with `ports` at
    /// `depth`, is to be walked: not if it was with these ports, at this
    /// depth or less (which left its jumps as much room).
    fn first(&mut self, chain: String, ports: &Ports, depth: usize) -> bool {
        match self.walked.entry((chain, ports.clone())) {
            Entry::Occupied(e) if *e.get() <= depth => false,
            Entry::Occupied(mut e) => {
                e.insert(depth);
                true
            }
            Entry::Vacant(e) => {
                e.insert(depth);
                true
            }
        }
    }

    /// Counts a rule looked at: `false` past [`MAX_VISITS`], when every
    /// port is recorded as rewritten and the walk stops.
    fn rule(&mut self, out: &mut Rewrites) -> bool {
        self.rules += 1;
        if self.rules <= MAX_VISITS {
            return true;
        }
        out.all.get_or_insert_with(|| {
            format!("a nat rule past the first {MAX_VISITS} (more than guard follows)")
        });
        false
    }
}

/// What the nat rules rewrite: for TCP on each hook a cookie handshake
/// meets, for UDP where datagrams arrive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NatRewrites {
    /// For the clients that arrive.
    pub prerouting: Rewrites,
    /// For this host's own connections, SYNPROXY's among them.
    pub output: Rewrites,
    /// UDP ports, for the clients that arrive (a port published for UDP
    /// serves though nothing here listens on it).
    pub udp: Rewrites,
}

impl NatRewrites {
    /// The ports the prerouting rules name that the output rules rewrite
    /// too: forwarded ports, whose cookie handshakes SYNPROXY completes
    /// where the rules send the port's clients. None where a prerouting
    /// rule may rewrite every port (where it sends them is not known).
    #[must_use]
    pub fn forwarded(&self) -> BTreeSet<u16> {
        if self.prerouting.all.is_some() {
            return BTreeSet::new();
        }
        self.prerouting
            .ranges
            .iter()
            .flat_map(|&(lo, hi, _)| lo..=hi)
            .filter(|&p| self.output.rewriting(p).is_some())
            .collect()
    }
}

/// The rewrites of `json` (`nft -j list ruleset`) and of iptables-legacy's
/// `legacy` nat tables, on each hook; `listing` (`nft -a list ruleset`)
/// gives the ports of rules whose match JSON leaves opaque (iptables-nft's
/// `-m multiport`). Nothing from nftables if the JSON cannot be read. The
/// ruleset is parsed and indexed once for both walks.
#[must_use]
pub fn rewrites(json: &str, listing: &str, legacy: &[Save]) -> NatRewrites {
    let items = items(json);
    let walk = Walk(Ruleset::new(&items, listing));
    let tables: Vec<Tables> = legacy
        .iter()
        .map(|save| Tables::parse(&save.text))
        .collect();
    NatRewrites {
        prerouting: walk.hook(legacy, &tables, Hook::Prerouting, Transport::Tcp),
        output: walk.hook(legacy, &tables, Hook::Output, Transport::Tcp),
        udp: walk.hook(legacy, &tables, Hook::Prerouting, Transport::Udp),
    }
}

/// [`Walk::chain`] for a chain of iptables-legacy's nat table.
fn legacy_chain<'a>(
    (save, tables): (&Save, &'a Tables),
    chain: &'a str,
    ports: &Ports,
    proto: Transport,
    path: &mut Vec<&'a str>,
    visits: &mut Visits,
    out: &mut Rewrites,
) {
    if path.len() > MAX_JUMPS
        || path.contains(&chain)
        || !visits.first(format!("{} {chain}", save.tool()), ports, path.len())
    {
        return;
    }
    path.push(chain);
    for rule in tables.rules_of("nat", chain) {
        if !visits.rule(out) {
            break;
        }
        if !rule.may_be(proto) {
            continue;
        }
        let ports = intersect(ports, &rule.dports());
        if ports.as_ref().is_some_and(Vec::is_empty) {
            continue;
        }
        if matches!(rule.target(), Some("DNAT" | "REDIRECT")) {
            out.record(&ports, format!("{} table nat chain {chain}", save.tool()));
        }
        if let Some(next) = tables.jump(rule) {
            legacy_chain((save, tables), next, &ports, proto, path, visits, out);
        }
    }
    path.pop();
}

struct Walk<'a>(Ruleset<'a>);

impl<'a> Walk<'a> {
    /// The rewrites on `hook`: from each nftables nat chain on it, and
    /// from the built-in chain of each of `legacy`'s nat tables (parsed,
    /// `tables`). Each hook counts its own visits: a chain the other
    /// hook's walk reached is walked again from this one.
    fn hook(&self, legacy: &[Save], tables: &[Tables], hook: Hook, proto: Transport) -> Rewrites {
        let mut out = Rewrites::default();
        let mut visits = Visits::default();
        for chain in self.0.chains() {
            let Some((family, table, name)) = chain_names(chain) else {
                continue;
            };
            if chain["type"].as_str() != Some("nat")
                || chain["hook"].as_str() != Some(hook.nft())
                || !matches!(family, "ip" | "ip6" | "inet")
            {
                continue;
            }
            let mut path = Vec::new();
            let at = (family, table, name);
            self.chain(at, &None, proto, &mut path, &mut visits, &mut out);
        }
        for (save, tables) in legacy.iter().zip(tables) {
            let mut path = Vec::new();
            legacy_chain(
                (save, tables),
                hook.legacy(),
                &None,
                proto,
                &mut path,
                &mut visits,
                &mut out,
            );
        }
        out
    }

    /// Records the rewriting rules of `chain`, reached with `ports`, and
    /// follows its jumps and its verdict maps' branches; `path` holds the
    /// chains on the way (a loop ends).
    fn chain(
        &self,
        (family, table, chain): (&str, &str, &'a str),
        ports: &Ports,
        proto: Transport,
        path: &mut Vec<&'a str>,
        visits: &mut Visits,
        out: &mut Rewrites,
    ) {
        if path.len() > MAX_JUMPS
            || path.contains(&chain)
            || !visits.first(format!("{family} {table} {chain}"), ports, path.len())
        {
            return;
        }
        path.push(chain);
        for rule in self.0.rules_of(family, table, chain) {
            if !visits.rule(out) {
                break;
            }
            if only(rule.expr, proto.other()) {
                continue;
            }
            let ports = intersect(ports, &own_ports(rule.expr, self.0.text(rule), proto));
            if ports.as_ref().is_some_and(Vec::is_empty) {
                continue;
            }
            if translates(rule.expr) {
                out.record(&ports, format!("table {family} {table} chain {chain}"));
            }
            for target in targets(rule) {
                self.chain((family, table, target), &ports, proto, path, visits, out);
            }
            for element in self.0.elements(rule) {
                let (Some(target), Some(own)) = (element.target(), key_ports(&element, proto))
                else {
                    continue;
                };
                let ports = intersect(&ports, &own);
                if ports.as_ref().is_none_or(|p| !p.is_empty()) {
                    self.chain((family, table, target), &ports, proto, path, visits, out);
                }
            }
        }
        path.pop();
    }
}

/// The destination ports of `proto` a verdict map's element names
/// (`Some(None)`: any port, its key has none), or `None` if the element is
/// for the other protocol only.
fn key_ports(element: &Element<'_>, proto: Transport) -> Option<Ports> {
    if element.alone(proto.other()) {
        return None;
    }
    let mut ports = None;
    for (expr, value) in &element.key {
        if dport(expr, proto) {
            // A value it cannot read (a prefix, a named set): any port.
            ports = intersect(&ports, &json_ports(value));
        }
    }
    Some(ports)
}

/// Whether the rule rewrites the destination: nft's `dnat` or `redirect`,
/// iptables' DNAT or REDIRECT target.
fn translates(expr: &[Value]) -> bool {
    expr.iter().any(|e| {
        e.get("dnat").is_some()
            || e.get("redirect").is_some()
            || (e["xt"]["type"].as_str() == Some("target")
                && matches!(e["xt"]["name"].as_str(), Some("DNAT" | "REDIRECT")))
    })
}

/// Whether the rule matches `proto`'s packets alone (`udp dport ...`,
/// `meta l4proto udp`).
fn only(expr: &[Value], proto: Transport) -> bool {
    expr.iter().any(|e| {
        let m = &e["match"];
        matches!(m["op"].as_str(), Some("==" | "in")) && alone(&m["left"], &m["right"], proto)
    })
}

/// Whether `left` is a destination port of `proto` (`tcp dport`, `udp
/// dport`, or either's `th dport`).
fn dport(left: &Value, proto: Transport) -> bool {
    let payload = &left["payload"];
    payload["field"].as_str() == Some("dport")
        && payload["protocol"]
            .as_str()
            .is_some_and(|p| p == proto.name() || p == "th")
}

/// The destination ports of `proto` the rule itself matches (`None`:
/// any): a native `tcp dport` (`udp dport`, or `th dport`) match, equal to
/// a port, a range or a set; else, for a rule with an iptables match, the
/// `dport` of its listing. A negated match is taken as any port.
fn own_ports(expr: &[Value], text: Option<&str>, proto: Transport) -> Ports {
    let mut found: Ports = None;
    for e in expr {
        let m = &e["match"];
        if !dport(&m["left"], proto) || !matches!(m["op"].as_str(), Some("==" | "in")) {
            continue;
        }
        // Ports it cannot read (a named set, `@ports`): any port.
        let ranges = json_ports(&m["right"])?;
        found = intersect(&found, &Some(ranges));
    }
    if found.is_none()
        && expr
            .iter()
            .any(|e| e["xt"]["type"].as_str() == Some("match"))
    {
        return text.and_then(text_ports);
    }
    found
}

/// A port, a range or a set of them in the JSON.
fn json_ports(v: &Value) -> Option<Vec<(u16, u16)>> {
    let port = |v: &Value| v.as_u64().and_then(|p| u16::try_from(p).ok());
    let one = |v: &Value| -> Option<(u16, u16)> {
        if let Some(p) = port(v) {
            return Some((p, p));
        }
        let r = v["range"].as_array()?;
        Some((port(r.first()?)?, port(r.get(1)?)?))
    };
    match v.get("set").and_then(Value::as_array) {
        Some(set) => set.iter().map(one).collect(),
        None => one(v).map(|r| vec![r]),
    }
}

/// The ports after `dport` in a rule's listing: `8080`, `9000-9010` or
/// `{ 80, 443-444 }`; any port for a negated match.
fn text_ports(text: &str) -> Ports {
    let words: Vec<&str> = text.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "dport")?;
    let mut rest = words.get(at + 1..)?.iter();
    let first = rest.next()?;
    let items: Vec<&str> = if *first == "{" {
        rest.take_while(|w| **w != "}")
            .map(|w| w.trim_end_matches(','))
            .collect()
    } else {
        vec![first]
    };
    items
        .into_iter()
        .map(|w| {
            let (lo, hi) = w.split_once('-').unwrap_or((w, w));
            Some((lo.parse().ok()?, hi.parse().ok()?))
        })
        .collect()
}

/// The ports in both (`None`: any).
fn intersect(a: &Ports, b: &Ports) -> Ports {
    match (a, b) {
        (None, x) | (x, None) => x.clone(),
        (Some(a), Some(b)) => {
            let mut out = BTreeSet::new();
            for &(alo, ahi) in a {
                for &(blo, bhi) in b {
                    let (lo, hi) = (alo.max(blo), ahi.min(bhi));
                    if lo <= hi {
                        out.insert((lo, hi));
                    }
                }
            }
            Some(out.into_iter().collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use super::*;

    /// What nft 1.0.6 prints for Docker's rules as iptables-nft 1.8.9
    /// writes them (`-t nat -N DOCKER`, `-A PREROUTING -m addrtype
    /// --dst-type LOCAL -j DOCKER`, `-A DOCKER ! -i docker0 -p tcp -m tcp
    /// --dport 8080 -j DNAT --to-destination 172.17.0.2:80`, `-A DOCKER -p
    /// tcp --dport 9000:9010 -j REDIRECT --to-ports 80`).
    const DOCKER_JSON: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "ip", "name": "nat", "handle": 1}}, {"chain": {"family": "ip", "table": "nat", "name": "DOCKER", "handle": 1}}, {"chain": {"family": "ip", "table": "nat", "name": "PREROUTING", "handle": 2, "type": "nat", "hook": "prerouting", "prio": -100, "policy": "accept"}}, {"rule": {"family": "ip", "table": "nat", "chain": "DOCKER", "handle": 4, "expr": [{"match": {"op": "!=", "left": {"meta": {"key": "iifname"}}, "right": "docker0"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8080}}, {"counter": {"packets": 0, "bytes": 0}}, {"xt": {"type": "target", "name": "DNAT"}}]}}, {"rule": {"family": "ip", "table": "nat", "chain": "DOCKER", "handle": 5, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": {"range": [9000, 9010]}}}, {"counter": {"packets": 0, "bytes": 0}}, {"xt": {"type": "target", "name": "REDIRECT"}}]}}, {"rule": {"family": "ip", "table": "nat", "chain": "PREROUTING", "handle": 3, "expr": [{"xt": {"type": "match", "name": "addrtype"}}, {"counter": {"packets": 0, "bytes": 0}}, {"jump": {"target": "DOCKER"}}]}}]}"#;

    /// A native chain of one rule on `hook`, of `type`.
    fn native(kind: &str, hook: &str, rule: &str) -> String {
        format!(
            r#"{{"nftables": [
            {{"chain": {{"family": "inet", "table": "t", "name": "c", "type": "{kind}", "hook": "{hook}", "prio": -100}}}},
            {{"rule": {{"family": "inet", "table": "t", "chain": "c", "expr": {rule}}}}}]}}"#
        )
    }

    const DPORT_SET_DNAT: &str = r#"[{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": {"set": [80, {"range": [443, 444]}]}}}, {"dnat": {"addr": "198.18.5.2"}}]"#;

    #[test]
    fn dockers_published_ports_are_rewritten() {
        let r = rewrites(DOCKER_JSON, "", &[]).prerouting;
        assert_eq!(r.rewriting(8080), Some("table ip nat chain DOCKER"));
        assert_eq!(r.rewriting(9005), Some("table ip nat chain DOCKER"));
        assert_eq!(r.rewriting(9011), None);
        assert_eq!(r.rewriting(80), None);
        assert_eq!(r.all, None);
    }

    /// Docker 29's nftables backend (`"firewall-backend": "nftables"`)
    /// for a container publishing 8080 to its port 80: its published ports
    /// are native `dnat` rules in a regular chain that the prerouting chain
    /// jumps to, and its verdict maps dispatch only the filter and
    /// postrouting chains. `../../tests/fixtures/nat/docker-nftables.nft`,
    /// loaded in a scratch namespace by nft 1.0.6, printed these (`nft -j
    /// list ruleset`, `nft -a list ruleset`).
    #[test]
    fn dockers_nftables_backend_publishes_through_a_jump() {
        let both = rewrites(
            include_str!("../../tests/fixtures/nat/docker-nftables.json"),
            include_str!("../../tests/fixtures/nat/docker-nftables.txt"),
            &[],
        );
        let r = &both.prerouting;
        assert_eq!(
            r.rewriting(8080),
            Some("table ip docker-bridges chain nat-prerouting-and-output")
        );
        assert_eq!(r.all, None);
        assert_eq!(r.rewriting(80), None);
        // The output hook's chain jumps to the same one: SYNPROXY's own
        // connection to 8080 goes where a client's does.
        assert_eq!(
            both.output.rewriting(8080),
            Some("table ip docker-bridges chain nat-prerouting-and-output")
        );
        assert_eq!(both.forwarded(), BTreeSet::from([8080]));
    }

    /// iptables' Docker rules ([`DOCKER_JSON`]) have no output chain: no
    /// port is forwarded, however the prerouting rules rewrite it. With
    /// Docker's output rule (`-A OUTPUT ! -d 127.0.0.0/8 -m addrtype
    /// --dst-type LOCAL -j DOCKER`) both of its ports are, but a port the
    /// output rules leave alone is not, and a prerouting rule that may
    /// rewrite any port forwards none.
    #[test]
    fn a_port_is_forwarded_only_where_the_output_rules_rewrite_it_too() {
        let docker = rewrites(DOCKER_JSON, "", &[]);
        assert_eq!(docker.output, Rewrites::default());
        assert!(docker.forwarded().is_empty());

        let legacy = legacy_nat(
            &["DOCKER", "OUTPUT ACCEPT"],
            [
                "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
                "-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER",
                "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.18.12.2:80",
                "-A DOCKER -p tcp -m tcp --dport 9000:9002 -j DNAT --to-destination 198.18.12.3:80",
                "-A PREROUTING -p tcp -m tcp --dport 2222 -j DNAT --to-destination 198.18.12.4:22",
            ]
            .into_iter()
            .map(str::to_owned),
        );
        let mut both = rewrites("", "", &legacy);
        assert_eq!(
            both.output.rewriting(8080),
            Some("iptables-legacy table nat chain DOCKER")
        );
        assert_eq!(both.output.rewriting(2222), None);
        assert_eq!(both.forwarded(), BTreeSet::from([8080, 9000, 9001, 9002]));

        let any = r#"[{"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}}, {"dnat": {"addr": "198.18.5.2"}}]"#;
        both.prerouting = rewrites(&native("nat", "prerouting", any), "", &[]).prerouting;
        assert!(both.prerouting.all.is_some());
        assert!(both.forwarded().is_empty());
    }

    /// kube-proxy's nftables mode: every translation is reached through
    /// verdict maps, whose keys hold the ports.
    /// `../../tests/fixtures/nat/kube-proxy-nftables.nft`, loaded as the
    /// Docker fixture was.
    #[test]
    fn kube_proxys_services_are_found_through_its_verdict_maps() {
        let r = rewrites(
            include_str!("../../tests/fixtures/nat/kube-proxy-nftables.json"),
            include_str!("../../tests/fixtures/nat/kube-proxy-nftables.txt"),
            &[],
        )
        .prerouting;
        let endpoint = |name: &str| format!("table ip kube-proxy chain endpoint-{name}");
        // A ClusterIP's port, an external IP's, a NodePort.
        assert_eq!(
            r.rewriting(443),
            Some(endpoint("1111-default/kubernetes/tcp/https__198.18.11.1/6443").as_str())
        );
        assert_eq!(
            r.rewriting(8443),
            Some(endpoint("4444-web/front/tcp/https__198.18.11.4/8443").as_str())
        );
        assert_eq!(
            r.rewriting(30080),
            Some(endpoint("5555-web/app/tcp/http__198.18.11.5/80").as_str())
        );
        // UDP services, an endpoint's own port, and any other port: none.
        for port in [53, 30053, 80, 6443, 22] {
            assert_eq!(r.rewriting(port), None, "port {port}");
        }
        assert_eq!(r.all, None);
    }

    /// iptables-legacy's nat table, which nft does not show: Docker's
    /// published TCP ports and kube-proxy's ClusterIP and NodePort are
    /// found with the ports of the jumps on their way; the UDP ones are
    /// not. The ip6tables save has one of its own.
    #[test]
    fn iptables_legacys_nat_rules_are_read_from_its_save() {
        let legacy = [
            Save {
                family: "ip",
                text: include_str!("../../tests/fixtures/iptables-legacy.save").to_owned(),
            },
            Save {
                family: "ip6",
                text: "*nat\n:PREROUTING ACCEPT [0:0]\n-A PREROUTING -p tcp -m tcp --dport 8443 -j DNAT --to-destination [2001:db8::5]:443\nCOMMIT\n".to_owned(),
            },
        ];
        let r = rewrites("", "", &legacy).prerouting;
        let chain = |name: &str| format!("iptables-legacy table nat chain {name}");
        assert_eq!(r.rewriting(8080), Some(chain("DOCKER").as_str()));
        assert_eq!(r.rewriting(5432), Some(chain("DOCKER").as_str()));
        assert_eq!(r.rewriting(443), Some(chain("KUBE-SEP-AAAA").as_str()));
        assert_eq!(r.rewriting(30080), Some(chain("KUBE-SEP-DDDD").as_str()));
        assert_eq!(
            r.rewriting(8443),
            Some("ip6tables-legacy table nat chain PREROUTING")
        );
        for port in [53, 5353, 80, 6443, 22] {
            assert_eq!(r.rewriting(port), None, "port {port}");
        }
        assert_eq!(r.all, None);
        // Read beside nftables' rules, not instead of them.
        let both = rewrites(DOCKER_JSON, "", &legacy).prerouting;
        assert_eq!(both.rewriting(9005), Some("table ip nat chain DOCKER"));
        assert_eq!(both.rewriting(30080), Some(chain("KUBE-SEP-DDDD").as_str()));
    }

    #[test]
    fn a_native_dnat_rewrites_its_ports_only_on_its_own_nat_hook() {
        for name in ["prerouting", "output"] {
            let both = rewrites(&native("nat", name, DPORT_SET_DNAT), "", &[]);
            let (r, other) = if name == "output" {
                (both.output, both.prerouting)
            } else {
                (both.prerouting, both.output)
            };
            assert_eq!(r.rewriting(80), Some("table inet t chain c"));
            assert_eq!(r.rewriting(444), Some("table inet t chain c"));
            assert_eq!(r.rewriting(445), None);
            assert_eq!(other, Rewrites::default());
            assert_eq!(
                rewrites(&native("filter", name, DPORT_SET_DNAT), "", &[]),
                NatRewrites::default()
            );
        }
    }

    #[test]
    fn a_rewrite_without_a_port_takes_them_all_but_not_for_udp() {
        let any = r#"[{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth0"}}, {"redirect": {"port": 3128}}]"#;
        let r = rewrites(&native("nat", "prerouting", any), "", &[]).prerouting;
        assert_eq!(r.rewriting(22), Some("table inet t chain c"));
        let udp = r#"[{"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 53}}, {"dnat": {"addr": "198.18.5.2"}}]"#;
        assert_eq!(
            rewrites(&native("nat", "prerouting", udp), "", &[]).prerouting,
            Rewrites::default()
        );
        // A negated port is any port; so is a named set, whose ports the
        // rule does not hold.
        let not = DPORT_SET_DNAT.replace(r#""op": "==""#, r#""op": "!=""#);
        let named =
            DPORT_SET_DNAT.replace(r#"{"set": [80, {"range": [443, 444]}]}"#, r#""@published""#);
        for rule in [not, named] {
            assert!(
                rewrites(&native("nat", "prerouting", &rule), "", &[])
                    .prerouting
                    .all
                    .is_some(),
                "{rule}"
            );
        }
    }

    /// UDP's rewrites are walked apart: a UDP port published (native or
    /// iptables') is one, a TCP rule's port is not, and a portless
    /// rewrite for any protocol, or for UDP, takes every UDP port.
    #[test]
    fn udp_ports_the_rules_publish_are_read_apart_from_tcps() {
        let udp = r#"[{"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 53}}, {"dnat": {"addr": "198.18.5.2"}}]"#;
        let r = rewrites(&native("nat", "prerouting", udp), "", &[]);
        assert_eq!(r.udp.rewriting(53), Some("table inet t chain c"));
        assert_eq!(r.udp.rewriting(54), None);
        assert_eq!(r.prerouting, Rewrites::default());
        let tcp = rewrites(&native("nat", "prerouting", DPORT_SET_DNAT), "", &[]);
        assert_eq!(tcp.udp, Rewrites::default());
        assert!(tcp.prerouting.rewriting(443).is_some());
        let any = r#"[{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth0"}}, {"dnat": {"addr": "198.18.5.2"}}]"#;
        assert!(
            rewrites(&native("nat", "prerouting", any), "", &[])
                .udp
                .all
                .is_some()
        );
        let l4 = r#"[{"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}}, {"dnat": {"addr": "198.18.5.2"}}]"#;
        assert_eq!(
            rewrites(&native("nat", "prerouting", l4), "", &[]).udp,
            Rewrites::default()
        );
        let legacy = legacy_nat(
            &[],
            [
                "-A PREROUTING -p udp -m udp --dport 5353 -j DNAT --to-destination 198.18.12.4:53",
                "-A PREROUTING -p tcp -m tcp --dport 8080 -j DNAT --to-destination 198.18.12.4:80",
            ]
            .into_iter()
            .map(str::to_owned),
        );
        let r = rewrites("", "", &legacy);
        assert!(r.udp.rewriting(5353).is_some());
        assert_eq!(r.udp.rewriting(8080), None);
        assert_eq!(r.prerouting.rewriting(5353), None);
    }

    /// kube-proxy's way: the port is matched where the chain is jumped
    /// to, the DNAT at the end of the path has none of its own.
    #[test]
    fn the_ports_of_the_jumps_on_the_way_narrow_a_portless_rewrite() {
        let json = r#"{"nftables": [
            {"chain": {"family": "ip", "table": "nat", "name": "PREROUTING", "type": "nat", "hook": "prerouting", "prio": -100}},
            {"chain": {"family": "ip", "table": "nat", "name": "NODEPORTS"}},
            {"chain": {"family": "ip", "table": "nat", "name": "SEP"}},
            {"rule": {"family": "ip", "table": "nat", "chain": "PREROUTING", "expr": [{"jump": {"target": "NODEPORTS"}}]}},
            {"rule": {"family": "ip", "table": "nat", "chain": "NODEPORTS", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 30080}}, {"jump": {"target": "SEP"}}]}},
            {"rule": {"family": "ip", "table": "nat", "chain": "NODEPORTS", "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 30053}}, {"jump": {"target": "SEP"}}]}},
            {"rule": {"family": "ip", "table": "nat", "chain": "SEP", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}}, {"dnat": {"addr": "198.18.5.2"}}]}},
            {"rule": {"family": "ip", "table": "nat", "chain": "SEP", "expr": [{"jump": {"target": "PREROUTING"}}]}}]}"#;
        let r = rewrites(json, "", &[]).prerouting;
        assert_eq!(r.all, None);
        assert_eq!(r.rewriting(30080), Some("table ip nat chain SEP"));
        assert_eq!(r.rewriting(30053), None);
    }

    #[test]
    fn an_inline_verdict_map_narrows_by_each_elements_port() {
        // `tcp dport vmap { 80 : jump WEB, 8000-8010 : jump WEB }` and `udp
        // dport vmap { 53 : jump WEB }` before a portless dnat in WEB.
        let json = r#"{"nftables": [
            {"chain": {"family": "inet", "table": "t", "name": "pre", "type": "nat", "hook": "prerouting", "prio": -100}},
            {"chain": {"family": "inet", "table": "t", "name": "WEB"}},
            {"rule": {"family": "inet", "table": "t", "chain": "pre", "expr": [{"vmap": {"key": {"payload": {"protocol": "tcp", "field": "dport"}}, "data": {"set": [[80, {"jump": {"target": "WEB"}}], [{"range": [8000, 8010]}, {"jump": {"target": "WEB"}}]]}}}]}},
            {"rule": {"family": "inet", "table": "t", "chain": "pre", "expr": [{"vmap": {"key": {"payload": {"protocol": "udp", "field": "dport"}}, "data": {"set": [[53, {"jump": {"target": "WEB"}}]]}}}]}},
            {"rule": {"family": "inet", "table": "t", "chain": "WEB", "expr": [{"dnat": {"family": "ip", "addr": "198.18.5.2"}}]}}]}"#;
        let r = rewrites(json, "", &[]).prerouting;
        assert_eq!(r.all, None);
        assert_eq!(r.rewriting(80), Some("table inet t chain WEB"));
        assert_eq!(r.rewriting(8005), Some("table inet t chain WEB"));
        assert_eq!(r.rewriting(53), None);
        assert_eq!(r.rewriting(81), None);
    }

    #[test]
    fn an_iptables_multiport_match_is_read_from_the_listing() {
        let json = DOCKER_JSON.replace(
            r#"{"match": {"op": "==", "left": {"payload": {"protocol": "tcp", "field": "dport"}}, "right": 8080}}"#,
            r#"{"xt": {"type": "match", "name": "multiport"}}"#,
        );
        let listing = "table ip nat { # handle 1\n\tchain DOCKER { # handle 1\n\t\tiifname != \"docker0\" tcp dport { 8080, 8443-8444 } counter packets 0 bytes 0 dnat to 172.17.0.2:80 # handle 4\n\t}\n}\n";
        let r = rewrites(&json, listing, &[]).prerouting;
        assert_eq!(r.all, None);
        assert!([8080, 8443, 8444].iter().all(|&p| r.rewriting(p).is_some()));
        assert_eq!(r.rewriting(8081), None);
        // Without the listing the rule may rewrite any port.
        assert!(rewrites(&json, "", &[]).prerouting.all.is_some());
    }

    /// An iptables-legacy nat table declaring `chains` (and PREROUTING;
    /// a built-in one named with its policy), with `rules`.
    fn legacy_nat(chains: &[&str], rules: impl Iterator<Item = String>) -> [Save; 1] {
        let mut text = String::from("*nat\n:PREROUTING ACCEPT [0:0]\n");
        for c in chains {
            if c.contains(' ') {
                let _ = writeln!(text, ":{c} [0:0]");
            } else {
                let _ = writeln!(text, ":{c} - [0:0]");
            }
        }
        for r in rules {
            text.push_str(&r);
            text.push('\n');
        }
        text.push_str("COMMIT\n");
        [Save { family: "ip", text }]
    }

    /// Three layers of 300 chains' jumps to the next (300^3 paths to the
    /// last): each chain is walked once with its ports, and the last
    /// one's DNAT is found with the port of the first jumps.
    #[test]
    fn a_chain_reached_by_many_paths_is_walked_once() {
        let jumps = |from: &'static str, to: &'static str| {
            (0..300).map(move |_| format!("-A {from} -p tcp -j {to}"))
        };
        let first = (0..300).map(|_| "-A PREROUTING -p tcp -m tcp --dport 8080 -j A".to_owned());
        let legacy = legacy_nat(
            &["A", "B", "C"],
            first
                .chain(jumps("A", "B"))
                .chain(jumps("B", "C"))
                .chain(std::iter::once(
                    "-A C -p tcp -j DNAT --to-destination 198.18.5.2:80".to_owned(),
                )),
        );
        let r = rewrites("", "", &legacy).prerouting;
        assert_eq!(r.all, None);
        assert_eq!(r.rewriting(8080), Some("iptables-legacy table nat chain C"));
        assert_eq!(r.rewriting(80), None);
    }

    /// More rules than the walk follows: every port is taken as
    /// rewritten, so none gets cookies a rule past the limit could send
    /// elsewhere.
    #[test]
    fn past_the_rules_the_walk_follows_every_port_is_rewritten() {
        let legacy = legacy_nat(
            &[],
            (0..=MAX_VISITS)
                .map(|i| {
                    format!(
                        "-A PREROUTING -s 198.18.{}.{}/32 -j ACCEPT",
                        i / 250 % 250,
                        i % 250
                    )
                })
                .chain(std::iter::once(
                    "-A PREROUTING -p tcp -m tcp --dport 8080 -j REDIRECT --to-ports 80".to_owned(),
                )),
        );
        let r = rewrites("", "", &legacy).prerouting;
        assert!(
            r.all
                .as_deref()
                .is_some_and(|at| at.contains("more than guard follows")),
            "{r:?}"
        );
        assert!(r.rewriting(22).is_some());
    }

    #[test]
    fn unreadable_json_rewrites_nothing() {
        assert_eq!(
            rewrites("not json", "", &[]).prerouting,
            Rewrites::default()
        );
    }
}
