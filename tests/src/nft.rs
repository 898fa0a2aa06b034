//! nftables counters in the victim namespace: what actually got past XDP
//! into the kernel, counted by the kernel itself.

use std::{
    fmt::Write as _,
    io::Write as _,
    process::{Command, Stdio},
};

/// A table `guardt` in namespace `ns` with named counters fed by rules at
/// the earliest prerouting priority, for packets from the wire: not over
/// loopback, which no XDP program sees (guard's own start-up probe of
/// conntrack goes over it).
pub struct Counters {
    ns: String,
}

impl Counters {
    /// Installs one rule per `(name, match)`; `match` is nft syntax, e.g.
    /// `ip saddr 198.19.1.0/24 tcp flags & (syn | ack) == syn`.
    #[must_use]
    pub fn install(ns: &str, rules: &[(&str, &str)]) -> Self {
        let mut script = String::from(
            "table inet guardt {\n  chain pre {\n    type filter hook prerouting priority -400;\n",
        );
        for (name, matcher) in rules {
            let _ = writeln!(
                script,
                "    iifname != \"lo\" {matcher} counter name \"{name}\""
            );
        }
        script.push_str("  }\n");
        for (name, _) in rules {
            let _ = writeln!(script, "  counter {name} {{ }}");
        }
        script.push_str("}\n");
        let _ = nft(ns, &["-f", "-"], Some(&script));
        Self { ns: ns.to_owned() }
    }

    /// Packets counted by `name`.
    #[must_use]
    pub fn packets(&self, name: &str) -> u64 {
        counter_packets(&self.ns, "inet", "guardt", name)
    }

    /// Zeroes every counter.
    pub fn reset(&self) {
        let _ = nft(
            &self.ns,
            &["reset", "counters", "table", "inet", "guardt"],
            None,
        );
    }
}

/// Packets counted by the named counter `name` of `family table` in `ns`.
#[must_use]
pub fn counter_packets(ns: &str, family: &str, table: &str, name: &str) -> u64 {
    let out = nft(ns, &["-j", "list", "counter", family, table, name], None);
    packets_in(&out).unwrap_or_else(|| panic!("no packet count in {out}"))
}

/// The packet count in `nft -j list counter` output.
fn packets_in(json: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v["nftables"]
        .as_array()?
        .iter()
        .find_map(|item| item["counter"]["packets"].as_u64())
}

/// Runs `nft ARGS` in namespace `ns`, `stdin` as its input (a script for
/// `-f -`); panics with nft's message if it fails.
#[must_use]
pub fn nft(ns: &str, args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft"])
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nft (nftables)");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("writing the nft script");
    }
    let out = child.wait_with_output().expect("nft");
    assert!(
        out.status.success(),
        "nft {} in {ns} failed: {}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr),
        stdin.unwrap_or_default()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[cfg(test)]
mod tests {
    use super::packets_in;

    #[test]
    fn reads_the_packets_of_a_named_counter() {
        let json = r#"{"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}, {"counter": {"family": "netdev", "name": "attack", "table": "guardlab_tx", "handle": 2, "packets": 1234, "bytes": 99000}}]}"#;
        assert_eq!(packets_in(json), Some(1234));
        assert_eq!(packets_in(r#"{"nftables": []}"#), None);
        assert_eq!(packets_in("nft: error"), None);
    }
}
