//! The victim namespace's conntrack table, observed with conntrack-tools
//! and plain /proc reads: independent of guard's own code.

use std::{collections::BTreeMap, fs, process::Command};

use guard::host::netns::Scope;

use crate::net::run_tool;

fn conntrack(ns: &str, args: &[&str]) -> String {
    let mut all = vec!["netns", "exec", ns, "conntrack"];
    all.extend_from_slice(args);
    run_tool("ip", &all)
}

/// The table's statistics summed over CPUs (`conntrack -S`).
#[must_use]
pub fn stats(ns: &str) -> BTreeMap<String, u64> {
    let mut total = BTreeMap::new();
    for line in conntrack(ns, &["-S"]).lines() {
        for field in line.split_whitespace() {
            if let Some((k, v)) = field.split_once('=')
                && let Ok(v) = v.parse::<u64>()
                && k != "cpu"
            {
                *total.entry(k.to_owned()).or_default() += v;
            }
        }
    }
    total
}

/// Empties the table.
pub fn flush(ns: &str) {
    let _ = conntrack(ns, &["-F"]);
}

/// Entries whose original source is `src`.
#[must_use]
pub fn entries_from(ns: &str, src: &str) -> usize {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "conntrack", "-L", "-s", src])
        .output()
        .expect("conntrack (conntrack-tools)");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// A reader of the namespace's entry count, cheap enough to poll (a file
/// opened once inside the namespace).
pub struct Count {
    file: fs::File,
}

impl Count {
    #[must_use]
    pub fn open(ns: &str) -> Self {
        let file = Scope::open(Some(ns))
            .expect("netns")
            .run(|| fs::File::open("/proc/sys/net/netfilter/nf_conntrack_count"))
            .expect("entering netns")
            .expect("nf_conntrack_count");
        Self { file }
    }

    #[must_use]
    pub fn get(&self) -> u64 {
        use std::os::unix::fs::FileExt as _;
        let mut buf = [0u8; 32];
        let n = self.file.read_at(&mut buf, 0).expect("reading the count");
        String::from_utf8_lossy(&buf[..n])
            .trim()
            .parse()
            .expect("a number")
    }
}

/// A per-namespace sysctl of `ns` (a timeout), read inside it.
#[must_use]
pub fn local_sysctl(ns: &str, key: &str) -> u64 {
    let path = format!("/proc/sys/{}", key.replace('.', "/"));
    let text = Scope::open(Some(ns))
        .expect("netns")
        .run(|| fs::read_to_string(&path))
        .expect("entering netns")
        .unwrap_or_else(|e| panic!("{key} in {ns}: {e}"));
    text.trim().parse().expect("a number")
}
