//! The configuration layer as `guard run` sees it: flags over a file over
//! the defaults.

use clap::{CommandFactory as _, Parser as _};

use super::*;
use std::path::Path;

use guard_common::{
    FlowClass, Limit,
    bucket::NANOS_PER_SEC,
    config::{BUDGET_SHARE_PERCENT, DENY_V6, HAS_LISTS_V4, HAS_LISTS_V6, MODE_MONITOR},
    maps::{DEFAULT_MAX_PREFIXES, DEFAULT_MAX_SOURCES, DEFAULT_MAX_UDP_FLOWS},
};
use ipnet::IpNet;

/// The keys as `guard run` parses them (the CLI flattens the same struct).
#[derive(Debug, clap::Parser)]
#[command(name = "guard-run")]
struct Run {
    #[command(flatten)]
    raw: RawConfig,
}

fn flags(extra: &[&str]) -> RawConfig {
    let mut argv = vec!["guard-run"];
    argv.extend_from_slice(extra);
    Run::try_parse_from(argv)
        .unwrap_or_else(|e| panic!("{e}"))
        .raw
}

fn resolve(args: &[&str]) -> Result<Settings, ConfigError> {
    Settings::resolve(&flags(args), None)
}

fn resolve_toml(toml: &str, args: &[&str]) -> Result<Settings, ConfigError> {
    let file: RawConfig = toml::from_str(toml).unwrap_or_else(|e| panic!("{e}"));
    Settings::resolve(&flags(args), Some((&file, Path::new("/etc/guard.toml"))))
}

fn error(args: &[&str]) -> String {
    resolve(args).unwrap_err().to_string()
}

/// Unset, the cookies' window scale is the server's, which `guard run`
/// reads at start (Linux's default until then); set, it is the
/// operator's, and a reload keeps the host's readings.
#[test]
fn the_cookie_window_scale_follows_the_server_unless_set() {
    let mut s = resolve(&["-i", "eth0"]).unwrap();
    assert_eq!((s.cookies.wscale, s.cookies.wscale()), (None, 7));
    s.cookies.host_wscale = 9;
    s.cookies.tsecr_checked = true;
    assert_eq!(s.cookies.wscale(), 9);
    let reload = s.reload(resolve(&["-i", "eth0"]).unwrap());
    assert!(reload.kept.is_empty(), "{:?}", reload.kept);
    assert_eq!(reload.applied.cookies.wscale(), 9);
    assert!(reload.applied.cookies.tsecr_checked, "a fact of the host");
    assert_eq!(reload.applied.dataplane().cookie_wscale, 9);

    let set = resolve(&["-i", "eth0", "--cookie-wscale", "5"]).unwrap();
    assert_eq!(set.cookies.wscale(), 5);
    let err = error(&["-i", "eth0", "--cookie-wscale", "15"]);
    assert!(
        err.contains("cookie-wscale") && err.contains("15") && err.contains("at most 14"),
        "{err}"
    );
}

/// `--synack-retries`: 1 unless set, from a flag or the file; 0 is
/// refused with the flag, the value and why; a reload keeps the running
/// value and says so.
#[test]
fn synack_retries_default_to_one_and_zero_is_refused() {
    assert_eq!(resolve(&["-i", "eth0"]).unwrap().cookies.synack_retries, 1);
    let set = resolve(&["-i", "eth0", "--synack-retries", "3"]).unwrap();
    assert_eq!(set.cookies.synack_retries, 3);
    let file = resolve_toml("synack-retries = 5", &["-i", "eth0"]).unwrap();
    assert_eq!(file.cookies.synack_retries, 5);
    let err = error(&["-i", "eth0", "--synack-retries", "0"]);
    assert!(
        err.contains("synack-retries") && err.contains('0') && err.contains("one retransmission"),
        "{err}"
    );
    let reload = set.reload(resolve(&["-i", "eth0", "--synack-retries", "2"]).unwrap());
    assert_eq!(reload.applied.cookies.synack_retries, 3);
    assert!(
        reload.kept.iter().any(|k| k.contains("synack-retries")),
        "{:?}",
        reload.kept
    );
}

#[test]
fn cookies_protect_every_listener_unless_narrowed() {
    let s = resolve(&["-i", "eth0", "--syn-cookies", "always"]).unwrap();
    assert!(s.cookies.ports.is_empty(), "always needs no port list");
    let s = resolve(&["-i", "eth0", "--cookie-port", "443", "--cookie-port", "80"]).unwrap();
    assert_eq!(s.cookies.ports, vec![80, 443]);
    let mut args = vec!["-i", "eth0"];
    let ports: Vec<String> = (1..=300).map(|p: u16| p.to_string()).collect();
    for p in &ports {
        args.extend(["--cookie-port", p.as_str()]);
    }
    let err = error(&args);
    assert!(
        err.contains("cookie-port") && err.contains("300 ports"),
        "{err}"
    );
    assert!(error(&["-i", "eth0", "--cookie-port", "0"]).contains("port 0"));
}

#[test]
fn the_global_budget_is_split_among_the_classes() {
    let per = Rate {
        rate: 1000,
        burst: 200,
    }
    .per_class();
    assert_eq!(per[FlowClass::Syn.index()], Limit::new(450, 90));
    assert_eq!(per[FlowClass::Udp.index()], Limit::new(300, 60));
    assert_eq!(per[FlowClass::Icmp.index()], Limit::new(100, 20));
    assert_eq!(per[FlowClass::Other.index()], Limit::new(50, 10));
    // Closed ports' SYNs and datagrams have buckets of their own, out of
    // the same budget: the shares add up to it.
    let closed = |c: FlowClass| per[c.closed_budget().expect("a closed bucket")];
    assert_eq!(closed(FlowClass::Syn), Limit::new(50, 10));
    assert_eq!(closed(FlowClass::Udp), Limit::new(50, 10));
    assert_eq!(BUDGET_SHARE_PERCENT.iter().sum::<u32>(), 100);
    assert_eq!(FlowClass::Icmp.closed_budget(), None);
    assert_eq!(FlowClass::Other.closed_budget(), None);
    // Never a zero rate (which would mean "no limit") from a small budget.
    let tiny = Rate { rate: 1, burst: 1 }.per_class();
    assert!(tiny.iter().all(|l| *l == Limit::new(1, 1)));
    assert!(Rate::OFF.per_class().iter().all(Limit::is_unlimited));
}

#[test]
fn open_ports_are_ports_or_ranges_for_one_protocol_or_both() {
    let s = resolve(&[
        "-i",
        "eth0",
        "--open-port",
        "30000-32767",
        "--open-port",
        "4789/udp",
        "--open-port",
        "8443/tcp",
    ])
    .unwrap();
    assert_eq!(s.open_ports.tcp, [(30000, 32767), (8443, 8443)]);
    assert_eq!(s.open_ports.udp, [(30000, 32767), (4789, 4789)]);
    assert_eq!(
        resolve(&["-i", "eth0"]).unwrap().open_ports,
        DeclaredOpen::default()
    );
    for (bad, why) in [
        ("0", "1 to 65535"),
        ("70000", "1 to 65535"),
        ("http", "1 to 65535"),
        ("90-80", "backwards"),
        ("53/sctp", "tcp or udp"),
    ] {
        let err = error(&["-i", "eth0", "--open-port", bad]);
        assert!(
            err.contains("open-port") && err.contains(bad) && err.contains(why),
            "{bad}: {err}"
        );
    }
}

#[test]
fn defaults_are_monitor_mode_with_the_documented_limits() {
    let s = resolve(&["-i", "eth0"]).unwrap();
    assert_eq!(s.mode, Enforcement::Monitor);
    assert_eq!(
        s.source[FlowClass::Syn.index()],
        Rate {
            rate: 50,
            burst: 100
        }
    );
    assert_eq!(
        s.prefix[FlowClass::Icmp.index()],
        Rate {
            rate: 50,
            burst: 100
        }
    );
    assert_eq!(
        (
            s.source[FlowClass::Other.index()],
            s.prefix[FlowClass::Other.index()]
        ),
        (
            Rate { rate: 5, burst: 10 },
            Rate {
                rate: 50,
                burst: 100
            }
        )
    );
    assert_eq!(s.global.rate, 0);
    let dp = s.dataplane();
    assert_eq!(dp.mode, MODE_MONITOR);
    assert_eq!(dp.source[0], Limit::new(50, 100));
    assert!(!dp.budget_binds());
    assert_eq!(dp.lists, 0);
    assert_eq!(
        (
            dp.source_prefix_v4,
            dp.source_prefix_v6,
            dp.prefix_v4,
            dp.prefix_v6
        ),
        (32, 64, 24, 48)
    );
    assert_eq!(dp.udp_flow_idle_ns, 30 * NANOS_PER_SEC);
}

#[test]
fn help_states_every_default() {
    let help = Run::command().render_long_help().to_string();
    let mut expected: Vec<String> = Vec::new();
    for (rate, burst) in defaults::SOURCE.iter().chain(&defaults::PREFIX) {
        expected.push(format!("[default: {rate}]"));
        expected.push(format!("[default: {burst}]"));
    }
    for n in [
        u64::from(defaults::SOURCE_PREFIX_V4),
        u64::from(defaults::SOURCE_PREFIX_V6),
        u64::from(defaults::PREFIX_V4),
        u64::from(defaults::PREFIX_V6),
        defaults::UDP_FLOW_IDLE_SECS,
        u64::from(defaults::BAN_THRESHOLD),
        defaults::BAN_WINDOW_SECS,
        defaults::BAN_DURATION_SECS,
        defaults::SUMMARY_INTERVAL_SECS,
        u64::from(DEFAULT_MAX_SOURCES),
        u64::from(DEFAULT_MAX_PREFIXES),
        u64::from(DEFAULT_MAX_UDP_FLOWS),
        defaults::EVENTS.0,
    ] {
        expected.push(format!("[default: {n}]"));
    }
    for e in expected {
        assert!(help.contains(&e), "help lacks {e}:\n{help}");
    }
}

#[test]
fn flags_override_the_file_and_lists_replace() {
    let toml = r#"
        iface = ["eth0", "eth1"]
        mode = "enforce"
        syn-rate = 10
        syn-burst = 20
        allow = ["198.18.0.0/24"]
        deny = ["2001:db8:bad::/48"]
    "#;
    let s = resolve_toml(toml, &["--syn-rate", "30", "--allow", "198.19.0.1"]).unwrap();
    assert_eq!(s.ifaces, ["eth0", "eth1"]);
    assert_eq!(s.mode, Enforcement::Enforce);
    assert_eq!(
        s.source[0],
        Rate {
            rate: 30,
            burst: 20
        }
    );
    assert_eq!(s.allow, ["198.19.0.1/32".parse::<IpNet>().unwrap()]);
    let dp = s.dataplane();
    assert_eq!(dp.lists, HAS_LISTS_V4 | HAS_LISTS_V6 | DENY_V6);
}

#[test]
fn rate_zero_with_burst_zero_is_refused_with_both_keys() {
    let msg = error(&["-i", "eth0", "--syn-rate", "0", "--syn-burst", "0"]);
    assert_eq!(
        msg,
        "`syn-rate = 0, syn-burst = 0` (from --syn-burst): a rate of 0 means no limit but a burst \
         of 0 admits nothing; to not limit, set syn-rate = 0 alone; to drop a source, use deny"
    );
    // Rate 0 alone turns the limit off.
    let s = resolve(&["-i", "eth0", "--syn-rate", "0"]).unwrap();
    assert!(s.dataplane().source[0].is_unlimited());
}

#[test]
fn burst_zero_is_refused() {
    assert_eq!(
        error(&["-i", "eth0", "--prefix-udp-burst", "0"]),
        "`prefix-udp-burst = 0` (from --prefix-udp-burst): a burst of 0 admits nothing; it must \
         be between 1 and 4294967295"
    );
    assert!(
        error(&["-i", "eth0", "--global-rate", "1000"])
            .starts_with("`global-burst = 0` (the default)")
    );
}

#[test]
fn rate_above_one_per_nanosecond_is_refused() {
    assert!(
        error(&["-i", "x", "--udp-rate", "1000000001"])
            .starts_with("`udp-rate = 1000000001` (from --udp-rate): more than")
    );
}

#[test]
fn prefix_lengths_are_range_checked() {
    assert_eq!(
        error(&["-i", "x", "--source-prefix-v6", "129"]),
        "`source-prefix-v6 = 129` (from --source-prefix-v6): a prefix length must be between 1 and 128"
    );
    assert_eq!(
        error(&["-i", "x", "--prefix-v4", "0"]),
        "`prefix-v4 = 0` (from --prefix-v4): a prefix length must be between 1 and 32"
    );
    assert_eq!(
        error(&["-i", "x", "--source-prefix-v4", "16"]),
        "`source-prefix-v4 = 16` (from --source-prefix-v4): shorter than prefix-v4 = 24: a source \
         must be at least as specific as its prefix"
    );
}

#[test]
fn malformed_cidrs_are_refused_with_the_reason() {
    let cases = [
        (
            "198.18.0.0/33",
            "prefix length `33` is not between 0 and 32",
        ),
        (
            "2001:db8::/129",
            "prefix length `129` is not between 0 and 128",
        ),
        (
            "198.18.0.300",
            "`198.18.0.300` is not an IPv4 or IPv6 address",
        ),
        (
            "198.18.0.1/24",
            "host bits are set after /24: did you mean 198.18.0.0/24?",
        ),
        ("bogus/8", "`bogus` is not an IPv4 or IPv6 address"),
    ];
    for (cidr, reason) in cases {
        assert_eq!(
            error(&["-i", "x", "--deny", cidr]),
            format!("`deny = {cidr}` (from --deny): {reason}")
        );
    }
}

#[test]
fn the_same_range_in_allow_and_deny_is_refused() {
    let msg = error(&[
        "-i",
        "x",
        "--allow",
        "198.18.0.0/24",
        "--deny",
        "198.18.0.0/24",
    ]);
    assert!(msg.contains("also in allow"), "{msg}");
}

#[test]
fn an_interface_twice_or_none_is_refused() {
    assert_eq!(
        error(&["-i", "eth0", "-i", "eth1", "-i", "eth0"]),
        "`iface = eth0` (from --iface): listed twice: list each interface once"
    );
    assert!(matches!(resolve(&[]), Err(ConfigError::NoInterface)));
}

/// A namespace name becomes part of paths (`/run/guard/netns/NAME`, the
/// pins'): one that is not a single file name is refused.
#[test]
fn a_netns_that_is_not_a_name_is_refused() {
    assert_eq!(
        error(&["-i", "eth0", "--netns", "../.."]),
        "`netns = ../..` (from --netns): a namespace name is a file name in /run/netns: it cannot contain `/`"
    );
    let err = resolve_toml("iface = [\"eth0\"]\nnetns = \"..\"\n", &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`netns = ..` (from /etc/guard.toml): `.` and `..` name no namespace"
    );
    assert_eq!(
        resolve(&["-i", "eth0", "--netns", "edge"])
            .unwrap()
            .netns
            .as_deref(),
        Some("edge")
    );
}

#[test]
fn unknown_keys_in_the_file_are_refused_with_the_key() {
    let err = toml::from_str::<RawConfig>("iface = [\"eth0\"]\nsyn-rat = 5\n").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("unknown field `syn-rat`") && msg.contains("line 2"),
        "{msg}"
    );
}

#[test]
fn a_file_value_of_the_wrong_type_names_the_key() {
    let err = toml::from_str::<RawConfig>("syn-burst = -1\n").unwrap_err();
    assert!(err.to_string().contains("syn-burst"), "{err}");
}

#[test]
fn errors_from_the_file_name_the_file() {
    let err = resolve_toml("iface = [\"eth0\"]\nban-window = 0\n", &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`ban-window = 0` (from /etc/guard.toml): must be between 1 and 86400 seconds"
    );
}

#[test]
fn source_limits_default_to_pressure_and_take_a_flag_or_a_key() {
    assert_eq!(
        resolve(&["-i", "eth0"]).unwrap().source_limits,
        SourceLimits::Pressure
    );
    let s = resolve_toml("iface = [\"eth0\"]\nsource-limits = \"always\"\n", &[]).unwrap();
    assert_eq!(s.source_limits, SourceLimits::Always);
    let s = resolve_toml(
        "iface = [\"eth0\"]\nsource-limits = \"always\"\n",
        &["--source-limits", "pressure"],
    )
    .unwrap();
    assert_eq!(s.source_limits, SourceLimits::Pressure, "the flag wins");
    assert!(s.describe().contains("applied x10 while conntrack is calm"));
}

#[test]
fn the_example_config_parses_and_validates() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guard.example.toml");
    let raw = read_file(&path).unwrap();
    let s = Settings::resolve(&RawConfig::default(), Some((&raw, &path))).unwrap();
    assert_eq!(
        s.mode,
        Enforcement::Monitor,
        "a fresh install must not drop"
    );
    assert_eq!(s.ifaces, ["eth0"]);
}

#[test]
fn a_reload_keeps_every_restart_key_and_says_which() {
    let old = resolve(&["-i", "eth0", "--syn-rate", "10", "--max-sources", "4096"]).unwrap();
    let new = resolve(&[
        "-i",
        "eth1",
        "--syn-rate",
        "20",
        "--max-sources",
        "8192",
        "--deny",
        "198.18.5.0/24",
    ])
    .unwrap();
    let reload = old.reload(new);
    assert_eq!(reload.applied.ifaces, ["eth0"]);
    assert_eq!(reload.applied.max_sources, 4096);
    assert_eq!(reload.applied.source[FlowClass::Syn.index()].rate, 20);
    assert_eq!(reload.applied.deny.len(), 1, "the lists are live");
    assert_eq!(
        reload.kept,
        ["iface (eth0 -> eth1)", "max-sources (4096 -> 8192)"]
    );
    let same = old.reload(old.clone());
    assert!(same.kept.is_empty() && same.applied == old);
}

#[test]
fn metrics_alone_serve_on_loopback_at_the_default_port() {
    let s = resolve(&["-i", "eth0", "--metrics"]).unwrap();
    assert_eq!(s.metrics, Some(defaults::METRICS.parse().unwrap()));
    let s = resolve(&["-i", "eth0", "--metrics", "127.0.0.1:9999"]).unwrap();
    assert_eq!(s.metrics, Some("127.0.0.1:9999".parse().unwrap()));
    assert_eq!(resolve(&["-i", "eth0"]).unwrap().metrics, None);
}

#[test]
fn reject_rst_is_off_by_default_and_reaches_the_program_when_asked() {
    let quiet = resolve(&["-i", "eth0"]).unwrap().dataplane();
    assert_eq!(quiet.reject, 0);
    let s = resolve(&["-i", "eth0", "--reject", "rst"]).unwrap();
    let cfg = s.dataplane();
    assert_eq!(cfg.reject, guard_common::config::REJECT_RST);
    assert_eq!(cfg.rst, Limit::new(100, 100));
    assert!(s.describe().contains("reject: RST to verified sources"));
    let err = Run::try_parse_from(["guard-run", "-i", "eth0", "--reject", "reset"]).unwrap_err();
    assert!(err.to_string().contains("--reject") && err.to_string().contains("drop, rst"));
}

#[test]
fn fingerprints_sample_by_default_and_off_samples_nothing() {
    use guard_common::config::SAMPLE_ON;
    let s = resolve(&["-i", "eth0"]).unwrap();
    assert_eq!(s.fingerprints, Fingerprints::Enforce);
    assert_eq!(s.dataplane().sample, SAMPLE_ON);
    assert!(s.dataplane().sample_rate > 0);
    assert!(
        s.describe()
            .contains("fingerprints: enforce (counting only: mode monitor)")
    );
    let enforcing = resolve(&["-i", "eth0", "--mode", "enforce"]).unwrap();
    assert!(enforcing.describe().contains("fingerprints: enforce;"));
    let monitor = resolve(&["-i", "eth0", "--fingerprints", "monitor"]).unwrap();
    assert_eq!(monitor.dataplane().sample, SAMPLE_ON);
    let off = resolve(&["-i", "eth0", "--fingerprints", "off"]).unwrap();
    assert_eq!(off.dataplane().sample, 0);
    let err = Run::try_parse_from(["guard-run", "-i", "eth0", "--fingerprints", "on"]).unwrap_err();
    assert!(
        err.to_string().contains("--fingerprints")
            && err.to_string().contains("off, monitor, enforce")
    );
}

#[test]
fn the_fleet_is_off_by_default_and_its_keys_name_their_problems() {
    assert_eq!(resolve(&["-i", "eth0"]).unwrap().fleet, None);
    let f = resolve(&["-i", "eth0", "--fleet", "nats://127.0.0.1:4222"])
        .unwrap()
        .fleet
        .unwrap();
    assert_eq!(
        (f.bucket.as_str(), f.rate, f.allow.len()),
        (defaults::FLEET_BUCKET, defaults::FLEET_RATE, 0)
    );
    assert!(!f.member.is_empty(), "the host name by default");
    let f = resolve_toml(
        "fleet = \"tls://a:4222,tls://b:4222\"\nfleet-name = \"ip-10-0-0-1.ec2.internal\"\nfleet-allow = [\"203.0.113.0/24\"]\n",
        &["-i", "eth0"],
    )
    .unwrap()
    .fleet
    .unwrap();
    assert_eq!(f.member, "ip-10-0-0-1.ec2.internal");
    assert_eq!(f.allow, vec!["203.0.113.0/24".parse::<IpNet>().unwrap()]);

    for (args, want) in [
        (
            vec!["--fleet", "127.0.0.1:4222"],
            "`fleet = 127.0.0.1:4222` (from --fleet): each server is nats://HOST:PORT",
        ),
        (
            vec![
                "--fleet",
                "nats://a:1",
                "--fleet-creds",
                "/nonexistent/x.creds",
            ],
            "`fleet-creds = /nonexistent/x.creds` (from --fleet-creds): no such file",
        ),
        (
            vec!["--fleet-name", "edge-a"],
            "`fleet-name = edge-a` (from --fleet-name): only means something with --fleet",
        ),
        (
            vec!["--fleet", "nats://a:1", "--fleet-name", "a b"],
            "`fleet-name = a b` (from --fleet-name): 1 to 64 letters",
        ),
        (
            vec!["--fleet", "nats://a:1", "--fleet-bucket", "a.b"],
            "`fleet-bucket = a.b` (from --fleet-bucket): 1 to 64 letters, digits, `-` or `_`",
        ),
        (
            vec!["--fleet", "nats://a:1", "--fleet-rate", "0"],
            "`fleet-rate = 0` (from --fleet-rate): 0 would take no ban",
        ),
        (
            vec!["--fleet", "nats://a:1", "--fleet-tls-cert", "/etc/hostname"],
            "needs --fleet-tls-key",
        ),
    ] {
        let mut argv = vec!["-i", "eth0"];
        argv.extend(args);
        let err = error(&argv);
        assert!(err.contains(want), "{argv:?}: {err}");
    }
    let err = resolve_toml("fleet-allow = [\"198.18.0.0/15\"]\n", &["-i", "eth0"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`fleet-allow = 198.18.0.0/15` (from /etc/guard.toml)"),
        "{err}"
    );
}

/// Without `--fleet`, a fleet key is refused for that first, whatever its
/// value: a missing credentials file is not the problem to fix.
#[test]
fn a_fleet_key_without_the_fleet_is_refused_before_its_value_is_checked() {
    assert_eq!(
        error(&["-i", "eth0", "--fleet-creds", "/nonexistent/x.creds"]),
        "`fleet-creds = /nonexistent/x.creds` (from --fleet-creds): only means something with \
         --fleet nats://HOST:PORT"
    );
    assert_eq!(
        error(&["-i", "eth0", "--fleet-allow", "bogus"]),
        "`fleet-allow = bogus` (from --fleet-allow): only means something with --fleet nats://HOST:PORT"
    );
    let err = resolve_toml(
        "fleet-rate = 50\nfleet-allow = [\"198.18.0.0/15\", \"203.0.113.0/24\"]\n",
        &["-i", "eth0"],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("`fleet-allow = 198.18.0.0/15, 203.0.113.0/24` (from /etc/guard.toml)"),
        "{err}"
    );
}

/// Each server of `--fleet` needs a scheme and a host; an error names the
/// bad one, not the whole list.
#[test]
fn each_fleet_server_needs_a_host_and_the_bad_one_is_named() {
    for (server, bad) in [
        ("nats://", "nats://"),
        ("tls://", "tls://"),
        ("nats://:4222", "nats://:4222"),
        ("nats://user:pw@:4222", "nats://user:pw@:4222"),
        ("nats://a:4222, tls://", "tls://"),
        ("nats://a:4222,b:4222", "b:4222"),
        ("nats://a:4222,", "\"\""),
    ] {
        let err = error(&["-i", "eth0", "--fleet", server]);
        assert!(
            err.starts_with(&format!("`fleet = {bad}` (from --fleet): ")),
            "{server}: {err}"
        );
    }
    let err = resolve_toml("fleet = \"nats://a:4222,nats://\"\n", &["-i", "eth0"])
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("`fleet = nats://` (from /etc/guard.toml): "),
        "{err}"
    );
    for server in [
        "nats://a:4222",
        "tls://a",
        "nats://user:pw@a:4222",
        "tls://[2001:db8::1]:4222",
        "nats://a:4222, tls://b:4222",
    ] {
        let f = resolve(&["-i", "eth0", "--fleet", server]);
        assert!(f.is_ok(), "{server}: {f:?}");
    }
}

/// The client certificate and its key are reported from where each was
/// set, not from where `--fleet` was.
#[test]
fn a_tls_half_pair_names_its_own_origin() {
    let err = resolve_toml(
        "fleet-tls-cert = \"/etc/hostname\"\n",
        &["-i", "eth0", "--fleet", "nats://a:1"],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with(
            "`fleet-tls-cert = /etc/hostname` (from /etc/guard.toml): needs --fleet-tls-key"
        ),
        "{err}"
    );
    let err = resolve_toml(
        "fleet = \"nats://a:1\"\n",
        &["-i", "eth0", "--fleet-tls-key", "/etc/hostname"],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with(
            "`fleet-tls-key = /etc/hostname` (from --fleet-tls-key): needs --fleet-tls-cert"
        ),
        "{err}"
    );
}

/// `count` distinct IPv4 addresses, for lists.
fn addresses(count: usize, third: usize) -> String {
    let list: Vec<String> = (0..count)
        .map(|i| format!("\"10.{third}.{}.{}\"", i / 256, i % 256))
        .collect();
    format!("[{}]", list.join(", "))
}

/// allow and deny share list-capacity per family: counting allow first,
/// the list whose entries pass it is named, from where it was set, with
/// the other's share when it has one.
#[test]
fn an_overfull_list_names_the_list_that_overflows_and_its_origin() {
    let err = resolve_toml(
        &format!(
            "iface = [\"eth0\"]\nlist-capacity = 1024\ndeny = {}\n",
            addresses(1025, 1)
        ),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "`deny = 1025 IPv4 entries` (from /etc/guard.toml): more than the 1024 entries allow and \
         deny hold together per family (list-capacity)"
    );
    let err = resolve_toml(
        &format!(
            "iface = [\"eth0\"]\nlist-capacity = 1024\nallow = {}\n",
            addresses(1025, 1)
        ),
        &["--deny", "2001:db8::/32"],
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("`allow = 1025 IPv4 entries` (from /etc/guard.toml): more than the 1024"),
        "{err}"
    );
    let err = resolve_toml(
        &format!(
            "iface = [\"eth0\"]\nlist-capacity = 1024\nallow = {}\ndeny = {}\n",
            addresses(600, 1),
            addresses(600, 2)
        ),
        &[],
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        err,
        "`deny = 600 IPv4 entries` (from /etc/guard.toml): with allow's 600 (from \
         /etc/guard.toml), 1200, more than the 1024 entries allow and deny hold together per \
         family (list-capacity)"
    );
}
