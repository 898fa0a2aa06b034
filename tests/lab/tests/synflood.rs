//! A random-source SYN flood is answered with SYN cookies while the table
//! stays nearly empty, over IPv4 and IPv6. It runs through the lab's
//! runner on the lab's topology, which is why it is here and not with the
//! other SYN-cookie tests in guard-tests' `kernel/syncookies.rs`.

use std::time::Duration;

use guard_lab::{
    defence::{BUCKETS, Defence, MAX},
    report::summarize,
    runner::{self, Options},
    scenario::Scenario,
};
use guard_tests::{host, kernel_test};

/// A random-source SYN flood, as fast as one trafgen core sends it,
/// against a 16,384-entry table, with guard started as a new user would
/// (`--mode enforce` and nothing else) on a veth whose far end has no XDP
/// program. The table stays under 10%, the kernel drops nothing, and
/// legitimate clients, on the same link and behind the same XDP program as
/// the flood, get in.
fn random_source_syn_flood_is_answered_with_cookies(scenario: Scenario) {
    let before = (host::sysctl(MAX), host::sysctl(BUCKETS));
    let out = std::env::temp_dir().join(format!(
        "guardt-{}-cookies-{}",
        std::process::id(),
        scenario.name()
    ));
    let report = runner::run(&Options {
        scenarios: vec![scenario],
        defences: vec![Defence::GuardDefaults],
        lead: Duration::from_secs(2),
        attack: Duration::from_secs(8),
        tail: Duration::from_secs(2),
        table: 16_384,
        legit_rate: 25,
        out: out.clone(),
        helper: env!("CARGO_BIN_EXE_guard-lab").into(),
    })
    .expect("the lab runs");
    assert_eq!((host::sysctl(MAX), host::sysctl(BUCKETS)), before);
    let run = &report.sections[0].runs[0];
    let s = summarize(run);
    let _ = std::fs::remove_dir_all(&out);
    assert!(
        s.attack_sent > 1_000_000,
        "the flood sent only {}",
        s.attack_sent
    );
    // The fill is of the table guard started from: it may raise max.
    let peak = run.samples.iter().map(|x| x.count).max().unwrap_or(0);
    assert!(
        peak * 10 < run.table,
        "peak {peak} entries of {} (10% is the bound): {s:?}",
        run.table
    );
    assert_eq!(s.table_full_drops, 0, "{s:?}");
    let success = s.legit_success.unwrap_or(0.0);
    assert!(success >= 99.0, "legitimate success {success:.1}%: {s:?}");
    let cookies: u64 = run
        .samples
        .iter()
        .filter_map(|x| x.xdp_cookies)
        .max()
        .unwrap_or(0);
    assert!(
        cookies > 100_000,
        "cookies answered only {cookies} SYNs: {s:?}"
    );
}

#[test]
fn a_random_source_ipv4_syn_flood_is_answered_with_cookies_by_default() {
    let _kernel = kernel_test!();
    random_source_syn_flood_is_answered_with_cookies(Scenario::SynFlood);
}

#[test]
fn a_random_source_ipv6_syn_flood_is_answered_with_cookies_by_default() {
    let _kernel = kernel_test!();
    random_source_syn_flood_is_answered_with_cookies(Scenario::SynFlood6);
}
