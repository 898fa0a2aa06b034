//! The rules, fed facts.

use super::*;
use crate::model::{
    conntrack::{STAT_6_18, parse_stats},
    firewall::AckState,
    sizing::ASSUMED_ENTRY_BYTES,
    xdp::{XdpAttachMode, XdpAttachment},
};

const GIB: u64 = 1024 * 1024 * 1024;

fn facts(sysctls: &[(&str, &str)]) -> Facts {
    Facts {
        sysctls: sysctls
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        entry_bytes: Some(248),
        ram_bytes: Some(16 * GIB),
        stats: parse_stats(STAT_6_18),
        table_full_lines: Ok(0),
        syncookies: Some(1),
        btf: true,
        netns: None,
        live: None,
    }
}

const HOST: Place = Place(None);

fn stats(pairs: &[(&str, u64)]) -> CpuStats {
    CpuStats {
        cpus: 1,
        counters: pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect(),
    }
}

fn find<'a>(findings: &'a [Finding], check: &str) -> &'a Finding {
    findings.iter().find(|f| f.check == check).unwrap()
}

#[test]
fn table_full_lines_are_counted_in_kmsg_records() {
    let log = "4,100,5,-;nf_conntrack: nf_conntrack: table full, dropping packet\n\
               6,101,6,-;eth0: link up\n\
               4,102,7,-;nf_conntrack: nf_conntrack: table full, dropping packet\n";
    assert_eq!(count_table_full(log), 2);
    assert_eq!(count_table_full(""), 0);
}

#[test]
fn sysctls_are_grouped() {
    assert_eq!(Group::of("max"), Group::Sizing);
    assert_eq!(Group::of("expect_max"), Group::Sizing);
    assert_eq!(Group::of("tcp_timeout_established"), Group::TcpTimeouts);
    assert_eq!(Group::of("udp_timeout_stream"), Group::OtherTimeouts);
    assert_eq!(Group::of("generic_timeout"), Group::OtherTimeouts);
    assert_eq!(Group::of("tcp_loose"), Group::Behaviour);
    assert_eq!(Group::of("acct"), Group::Behaviour);
}

#[test]
fn without_conntrack_the_fix_is_modprobe() {
    let findings = evaluate(&facts(&[]));
    let f = find(&findings, "conntrack");
    assert_eq!(f.level, Severity::Crit);
    assert_eq!(f.fix.as_deref(), Some("modprobe nf_conntrack"));
    assert!(findings.iter().all(|f| f.check != "fill"));
}

#[test]
fn drops_or_log_lines_mean_the_table_was_full() {
    let crit = table_full(&Ok(stats(&[("drop", 12_345)])), &Ok(0), HOST);
    assert_eq!(crit.level, Severity::Crit);
    assert!(crit.reason.starts_with("drop=12345 since boot"), "{crit}");
    assert_eq!(
        crit.fix.as_deref(),
        Some("run guard (guard run --iface IF) or raise nf_conntrack_max (guard tune --apply)")
    );
    assert_eq!(
        table_full(&Ok(stats(&[("drop", 0)])), &Ok(3), HOST).level,
        Severity::Crit
    );
    let unreadable = table_full(&Ok(stats(&[("drop", 0)])), &Err("EPERM".into()), HOST);
    assert_eq!(unreadable.level, Severity::Ok);
    assert!(
        unreadable
            .reason
            .contains("kernel log not readable (EPERM)")
    );
    assert_eq!(
        table_full(&Err("missing".into()), &Err("EPERM".into()), HOST).level,
        Severity::Skip
    );
}

#[test]
fn fill_is_crit_at_90_and_warn_at_70_percent() {
    assert_eq!(fill(Some(95), 100, HOST).level, Severity::Crit);
    assert_eq!(fill(Some(90), 100, HOST).level, Severity::Crit);
    assert_eq!(fill(Some(70), 100, HOST).level, Severity::Warn);
    let ok = fill(Some(69), 100, HOST);
    assert_eq!(ok.level, Severity::Ok);
    assert_eq!(ok.reason, "count=69 of max=100 (69%)");
    assert_eq!(fill(Some(5), 0, HOST).level, Severity::Warn);
    assert_eq!(fill(None, 100, HOST).level, Severity::Skip);
}

#[test]
fn counters_that_should_stay_zero_warn() {
    let s = Ok(stats(&[("early_drop", 7), ("insert_failed", 0)]));
    let early = counter(&s, "early-drop", "early_drop", "evicted", "fix");
    assert_eq!(early.level, Severity::Warn);
    assert_eq!(early.reason, "early_drop=7 since boot: evicted");
    assert_eq!(
        counter(&s, "insert-failed", "insert_failed", "", "").level,
        Severity::Ok
    );
    assert_eq!(
        counter(&s, "chains", "chainlength", "", "").level,
        Severity::Skip
    );
    let from_6_18 = evaluate(&facts(&[("max", "1000")]));
    assert_eq!(find(&from_6_18, "chains").level, Severity::Warn);
    assert_eq!(find(&from_6_18, "insert-failed").level, Severity::Warn);
}

#[test]
fn max_below_the_field_guides_warns() {
    let f = facts(&[("max", "65536"), ("buckets", "16384")]);
    let low = max_for_ram(65_536, f.memory());
    assert_eq!(low.level, Severity::Warn);
    assert!(
        low.reason
            .contains("below the field guides' 524288 for 16384 MiB"),
        "{low}"
    );
    assert_eq!(low.fix.as_deref(), Some("guard tune --apply"));
    let f = facts(&[("max", "524288"), ("buckets", "131072")]);
    assert_eq!(max_for_ram(524_288, f.memory()).level, Severity::Ok);
    let mut no_ram = f.clone();
    no_ram.ram_bytes = None;
    assert_eq!(max_for_ram(524_288, no_ram.memory()).level, Severity::Skip);
}

#[test]
fn memory_is_entries_plus_buckets_at_the_slab_size() {
    let mut f = facts(&[("max", "262144"), ("buckets", "65536")]);
    let m = f.memory().unwrap();
    assert_eq!(m.table_bytes, 262_144 * 248 + 65_536 * 8);
    assert_eq!(m.field_guides_max, Some(524_288));
    f.entry_bytes = None;
    let m = f.memory().unwrap();
    assert!(!m.entry_from_slab);
    assert_eq!(m.entry_bytes, ASSUMED_ENTRY_BYTES);
}

#[test]
fn fewer_buckets_than_a_quarter_of_max_warn() {
    let few = buckets(65_536, Some(8_192));
    assert_eq!(few.level, Severity::Warn);
    assert!(few.reason.contains("chains of 8 entries"), "{few}");
    assert_eq!(buckets(65_536, Some(16_384)).level, Severity::Ok);
    assert_eq!(buckets(65_536, None).level, Severity::Skip);
}

#[test]
fn established_over_a_day_warns() {
    let five_days = established(Some(432_000), HOST);
    assert_eq!(five_days.level, Severity::Warn);
    assert!(
        five_days
            .reason
            .starts_with("tcp_timeout_established=432000s (5d)")
    );
    assert_eq!(established(Some(86_400), HOST).level, Severity::Ok);
    assert_eq!(established(None, HOST).level, Severity::Skip);
}

#[test]
fn tcp_loose_warns_and_names_the_trade_off() {
    let loose = tcp_loose(Some(1), HOST);
    assert_eq!(loose.level, Severity::Warn);
    let fix = loose.fix.unwrap();
    assert!(fix.starts_with("sysctl -w net.netfilter.nf_conntrack_tcp_loose=0"));
    assert!(fix.contains("trade-off"));
    assert_eq!(tcp_loose(Some(0), HOST).level, Severity::Ok);
}

#[test]
fn syncookies_off_warns() {
    let off = syncookies(Some(0), HOST);
    assert_eq!(off.level, Severity::Warn);
    assert!(off.reason.contains("SYNPROXY's own"), "{off}");
    assert_eq!(
        off.fix.as_deref(),
        Some("sysctl -w net.ipv4.tcp_syncookies=1")
    );
    assert_eq!(syncookies(Some(1), HOST).level, Severity::Ok);
    assert_eq!(syncookies(Some(2), HOST).level, Severity::Ok);
    assert_eq!(syncookies(None, HOST).level, Severity::Skip);
    let mut f = facts(&[("max", "524288")]);
    f.syncookies = Some(0);
    assert_eq!(find(&evaluate(&f), "syncookies").level, Severity::Warn);
}

/// A namespace's fixes act on it: guard's flag, or `ip netns exec`.
#[test]
fn a_namespaces_fixes_name_it() {
    let mut f = facts(&[
        ("max", "524288"),
        ("buckets", "131072"),
        ("count", "500000"),
        ("tcp_timeout_established", "432000"),
        ("tcp_loose", "1"),
    ]);
    f.netns = Some("edge".to_owned());
    f.syncookies = Some(0);
    f.live = Some(Live {
        xdp: Vec::new(),
        bpffs: Ok(()),
        privileges: Ok(()),
        guard_pid: None,
        pinned: vec!["netns edge/eth0".to_owned()],
        run: None,
        firewall: Ok(Vec::new()),
    });
    let findings = evaluate(&f);
    let fix = |check: &str| find(&findings, check).fix.clone().unwrap();
    assert_eq!(
        fix("fill"),
        "run guard (guard run --netns edge --iface IF) or raise nf_conntrack_max (guard tune --apply)"
    );
    assert_eq!(
        fix("established"),
        "guard tune --apply --netns edge (a day)"
    );
    assert!(
        fix("tcp-loose")
            .starts_with("ip netns exec edge sysctl -w net.netfilter.nf_conntrack_tcp_loose=0"),
        "{}",
        fix("tcp-loose")
    );
    assert_eq!(
        fix("syncookies"),
        "ip netns exec edge sysctl -w net.ipv4.tcp_syncookies=1"
    );
    assert_eq!(fix("guard"), "guard restore --netns edge");
    // The global knobs' fixes are the host's.
    assert_eq!(
        fix("chains"),
        "guard tune --apply (a quarter of nf_conntrack_max in buckets)"
    );
}

#[test]
fn btf_missing_warns() {
    assert_eq!(btf(false).level, Severity::Warn);
    assert_eq!(btf(true).level, Severity::Ok);
}

#[test]
fn live_checks_are_skipped_off_root_and_evaluated_on_it() {
    let f = facts(&[("max", "524288")]);
    let skipped = evaluate(&f);
    for check in LIVE_CHECKS {
        assert_eq!(find(&skipped, check).level, Severity::Skip);
    }
    let live = Live {
        xdp: vec![
            ("eth0".into(), Ok(None)),
            (
                "eth1".into(),
                Ok(Some(XdpAttachment {
                    mode: XdpAttachMode::Native,
                    prog_id: 7,
                    prog_name: Some("xdp_lb".into()),
                    link_id: None,
                })),
            ),
        ],
        bpffs: Err("not mounted".into()),
        privileges: Err("no caps".into()),
        guard_pid: None,
        pinned: vec!["eth1".into()],
        run: None,
        firewall: Ok(vec![(
            "table ip mangle chain prerouting (hook prerouting, priority -150)".into(),
            AckState::Invalid,
        )]),
    };
    let findings = evaluate(&Facts {
        live: Some(live),
        ..f
    });
    let x = find(&findings, "xdp");
    assert_eq!(x.level, Severity::Ok);
    assert!(x.reason.starts_with("eth1: program id 7 `xdp_lb`"), "{x}");
    assert!(x.reason.contains("needs --force"));
    assert_eq!(
        find(&findings, "bpffs").fix.as_deref(),
        Some("mount -t bpf bpf /sys/fs/bpf")
    );
    assert_eq!(find(&findings, "privileges").level, Severity::Warn);
    assert_eq!(
        find(&findings, "guard").fix.as_deref(),
        Some("guard restore")
    );
    let fw = find(&findings, "firewall");
    assert_eq!(fw.level, Severity::Warn);
    assert!(
        fw.reason.starts_with(
            "table ip mangle chain prerouting (hook prerouting, priority -150) drops what conntrack calls invalid"
        ),
        "{fw}"
    );
    assert_eq!(firewall(&Ok(Vec::new())).level, Severity::Ok);
    assert_eq!(firewall(&Err("no nft".into())).level, Severity::Skip);
    assert_eq!(running(Some(9), &["eth1".into()], HOST).level, Severity::Ok);
    assert_eq!(running(None, &[], HOST).level, Severity::Ok);
}

#[test]
fn a_guard_in_monitor_or_skb_mode_warns() {
    use crate::{
        config::Enforcement,
        model::status::{AttachedStatus, RunStatus},
    };
    let run = |mode, xdp_mode| RunStatus {
        pid: 7,
        version: "0.1.0".into(),
        started: 0.0,
        config: None,
        mode,
        interfaces: vec![AttachedStatus {
            iface: "eth0".into(),
            netns: None,
            xdp_mode,
            prog_id: 9,
            egress_prog_id: Some(10),
            cookies_possible: true,
            gone: false,
        }],
    };
    assert_eq!(enforcing(None).level, Severity::Ok);
    let native = enforcing(Some(&run(Enforcement::Enforce, XdpAttachMode::Native)));
    assert_eq!(native.level, Severity::Ok, "{native}");
    let monitor = enforcing(Some(&run(Enforcement::Monitor, XdpAttachMode::Native)));
    assert_eq!(monitor.level, Severity::Warn);
    assert!(monitor.reason.contains("drops nothing"), "{monitor}");
    let skb = enforcing(Some(&run(Enforcement::Enforce, XdpAttachMode::Skb)));
    assert_eq!(skb.level, Severity::Warn);
    assert!(
        skb.reason.contains("skb (generic) XDP mode on eth0"),
        "{skb}"
    );
    // An interface deleted under a running guard outranks the mode.
    let mut gone = run(Enforcement::Monitor, XdpAttachMode::Native);
    gone.interfaces[0].gone = true;
    let gone = enforcing(Some(&gone));
    assert_eq!(gone.level, Severity::Crit);
    assert!(
        gone.reason
            .contains("eth0 deleted while guard ran: nothing is guarded there"),
        "{gone}"
    );
}

#[test]
fn the_worst_level_is_the_nagios_exit_code() {
    assert_eq!(Severity::Skip.exit_code(), 0);
    assert_eq!(Severity::Ok.exit_code(), 0);
    assert_eq!(Severity::Warn.exit_code(), 1);
    assert_eq!(Severity::Crit.exit_code(), 2);
    assert!(Severity::Skip < Severity::Ok && Severity::Warn < Severity::Crit);
}

#[test]
fn a_finding_is_one_line_with_its_fix() {
    let f = Finding::crit("table-full", "drop=12345 since boot", HOST.fix_full());
    assert_eq!(
        f.to_string(),
        format!(
            "CRIT  table-full: drop=12345 since boot — {}",
            HOST.fix_full()
        )
    );
    assert_eq!(Finding::ok("btf", "there").to_string(), "OK    btf: there");
}

#[test]
fn human_durations() {
    assert_eq!(human_secs(432_000), "5d");
    assert_eq!(human_secs(3_600), "1h");
    assert_eq!(human_secs(90), "90s");
}
