//! Operator tools end to end: metrics scraped over loopback, live
//! allow/deny/unban changing the verdict of the next packet (and kept across
//! a restart), SIGHUP with a valid and an invalid config, and the
//! controller's status in `guard stats --json`.

use std::{
    collections::BTreeMap,
    fs,
    path::Path,
    thread,
    time::{Duration, Instant},
};

use guard_tests::{
    flood::Flood,
    guard_proc::{self, Guard, counters, scrape, start_on, stats_after},
    host::{KeptLists, LISTS_FILE},
    kernel_test,
    net::{TestNet, loopback_port, run_tool},
    nft::Counters,
    packet::TCP_SYN,
};

const PORT: u16 = 8080;
const SYN: &str = "tcp flags & (syn | ack) == syn";

fn src(net: u8, host: u8) -> std::net::IpAddr {
    std::net::IpAddr::from([198, 19, net, host])
}

/// Sends one SYN and waits until guard has counted it.
fn syn(flood: &mut Flood, net: &TestNet, from: std::net::IpAddr) {
    flood.counted_syn(net, from, PORT);
}

/// `guard bans` lists `source`, with time left and why, text and JSON.
fn assert_banned_now(source: &str) {
    let bans = guard_cmd(&["bans", "--json"]);
    let bans: serde_json::Value = serde_json::from_str(&bans.stdout).expect("bans --json");
    assert_eq!(bans[0]["source"], source, "{bans}");
    assert!(
        bans[0]["seconds_left"].as_f64().expect("secs") > 0.0,
        "{bans}"
    );
    assert!(
        bans[0]["reason"]
            .as_str()
            .expect("reason")
            .contains("limits"),
        "{bans}"
    );
    assert!(guard_cmd(&["bans"]).stdout.contains(source));
}

fn guard_cmd(args: &[&str]) -> guard_proc::Finished {
    let out = guard_proc::run(args);
    out.assert_code(0);
    out
}

#[test]
fn allow_deny_and_unban_decide_the_next_packet_and_survive_a_restart() {
    let _kernel = kernel_test!();
    let _kept = KeptLists::save();
    let net = TestNet::addressed();
    let nft = Counters::install(&net.victim, &[("in", SYN)]);
    let flags = [
        "--mode",
        "enforce",
        // Limited whatever the table's pressure.
        "--source-limits",
        "always",
        // One a second: no token comes back while a test step runs.
        "--syn-rate",
        "1",
        "--syn-burst",
        "2",
        "--ban-threshold",
        "3",
        "--summary-interval",
        "0",
    ];
    let guard = start_on(&net, &flags);
    let mut flood = Flood::new(&net);

    // Deny: the next SYN is dropped; deleted, the next one passes.
    let (denied, limited, banned) = (src(5, 5), src(6, 6), src(7, 7));
    syn(&mut flood, &net, denied);
    assert_eq!(nft.packets("in"), 1);
    let out = guard_cmd(&["deny", "add", "198.19.5.0/24"]);
    assert!(
        out.stdout.contains("in effect now") && out.stdout.contains(LISTS_FILE),
        "{out}"
    );
    syn(&mut flood, &net, denied);
    assert_eq!(nft.packets("in"), 1, "a denied SYN got in");
    let listed = guard_cmd(&["deny", "list"]);
    assert!(listed.stdout.contains("198.19.5.0/24"), "{listed}");

    // Allow: a source over its limit gets in once allowlisted.
    for _ in 0..2 {
        syn(&mut flood, &net, limited);
    }
    let before = nft.packets("in");
    syn(&mut flood, &net, limited);
    assert_eq!(
        nft.packets("in"),
        before,
        "over its burst, the SYN should drop"
    );
    guard_cmd(&["allow", "add", "198.19.6.6"]);
    syn(&mut flood, &net, limited);
    assert_eq!(
        nft.packets("in"),
        before + 1,
        "an allowlisted SYN was dropped"
    );

    // Unban: a banned source gets in again at once.
    for _ in 0..5 {
        syn(&mut flood, &net, banned);
    }
    thread::sleep(Duration::from_millis(1100)); // its bucket refills; the ban stays
    let before = nft.packets("in");
    syn(&mut flood, &net, banned);
    assert_eq!(nft.packets("in"), before, "a banned source's SYN got in");
    assert_banned_now("198.19.7.7");
    let out = guard_cmd(&["unban", "198.19.7.7"]);
    assert!(out.stdout.contains("unbanned 198.19.7.7"), "{out}");
    assert!(
        guard_cmd(&["bans"]).stdout.contains("no source is banned"),
        "unbanned, still listed"
    );
    syn(&mut flood, &net, banned);
    assert_eq!(
        nft.packets("in"),
        before + 1,
        "the unbanned source's SYN was dropped"
    );

    // A restart keeps the live lists.
    guard.stop(libc::SIGTERM).assert_code(0);
    let kept = fs::read_to_string(LISTS_FILE).expect("lists file");
    assert!(
        kept.contains("198.19.5.0/24") && kept.contains("198.19.6.6/32"),
        "{kept}"
    );
    let guard = start_on(&net, &flags);
    let mut flood = Flood::new(&net);
    let before = nft.packets("in");
    syn(&mut flood, &net, denied);
    assert_eq!(
        nft.packets("in"),
        before,
        "the deny was lost in the restart"
    );
    guard_cmd(&["deny", "del", "198.19.5.0/24"]);
    syn(&mut flood, &net, denied);
    assert_eq!(nft.packets("in"), before + 1, "a deleted deny still drops");
    assert!(
        !fs::read_to_string(LISTS_FILE)
            .expect("lists file")
            .contains("198.19.5.0/24")
    );
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// Samples of the exposition text: `name{labels}` -> value. Every
/// non-comment line must parse.
fn parse_metrics(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("not a sample: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("not a number in: {line}"));
        let name = series.split('{').next().unwrap_or_default();
        assert!(
            name.starts_with("guard_")
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "bad metric name in: {line}"
        );
        samples.insert(series.to_owned(), value);
    }
    assert!(text.trim_end().ends_with("# EOF"), "no # EOF at the end");
    samples
}

/// A counter or gauge sample that must be a whole number.
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "checked to be a whole number below 2^53 first"
)]
fn whole(v: f64) -> u64 {
    assert!(
        (0.0..9_007_199_254_740_992.0).contains(&v) && v.fract() == 0.0,
        "{v} is not a count"
    );
    v as u64
}

#[test]
fn metrics_parse_and_match_the_counters() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let port = loopback_port();
    let addr = format!("127.0.0.1:{port}");
    let guard = start_on(&net, &["--metrics", &addr, "--summary-interval", "0"]);
    let mut flood = Flood::new(&net);
    for i in 0..20u8 {
        flood.tcp(src(1, i), 2000, PORT, TCP_SYN);
    }
    let expected = counters(&stats_after(&net, 20));
    let samples = parse_metrics(&scrape(port));
    let iface = format!("{}/{}", net.victim, net.victim_if);
    for class in [
        "tcp_syn",
        "tcp_other",
        "udp",
        "icmp",
        "ip_other",
        "non_ip",
        "malformed",
    ] {
        let series = format!("guard_packets_total{{iface=\"{iface}\",class=\"{class}\"}}");
        let got = whole(
            *samples
                .get(&series)
                .unwrap_or_else(|| panic!("no {series}")),
        );
        // Non-IP (ARP) can arrive between the two readings; SYNs cannot.
        if class == "tcp_syn" {
            assert_eq!(got, 20);
        }
        assert!(
            got >= expected[class],
            "{series} = {got}, stats said {}",
            expected[class]
        );
    }
    let new_flows = format!("guard_new_flows_total{{iface=\"{iface}\",kind=\"all\"}}");
    assert_eq!(whole(samples[&new_flows]), 20);
    // What enforces there: guard started with its defaults (monitor), in
    // skb mode on this veth.
    let info = format!(
        "guard_info{{iface=\"{iface}\",mode=\"monitor\",xdp_mode=\"skb\",version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(samples.get(&info).copied(), Some(1.0), "no {info}");
    let attached = format!("guard_attached{{iface=\"{iface}\"}}");
    assert_eq!(samples.get(&attached).copied(), Some(1.0), "no {attached}");
    // The controller's gauges, once it has ticked.
    let deadline = Instant::now() + Duration::from_secs(5);
    let samples = loop {
        let s = parse_metrics(&scrape(port));
        if s.contains_key("guard_conntrack_max_entries") || Instant::now() > deadline {
            break s;
        }
        thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(
        whole(samples["guard_conntrack_max_entries"]),
        guard_tests::host::sysctl("net.netfilter.nf_conntrack_max")
    );
    assert_eq!(whole(samples["guard_conntrack_pressure_level"]), 0);
    assert!(samples.contains_key("guard_limit_source_new_flows_per_second{class=\"syn\"}"));
    // Counters, not rates: Prometheus computes those.
    assert!(
        !samples.keys().any(|k| k.contains("per_second{what")),
        "a computed rate"
    );
    assert!(
        samples
            .keys()
            .any(|k| k.starts_with("guard_dropped_packets_total{")
                && k.contains(&format!("iface=\"{iface}\""))
                && k.contains("mode=\"monitor\"")),
        "monitor mode's would-be drops are not labelled so"
    );
    let bans = format!("guard_banned_sources{{iface=\"{iface}\"}}");
    assert_eq!(samples.get(&bans).copied(), Some(0.0), "no {bans}");
    // One CPU, one packet at a time: no bucket was ever contended.
    let contention = format!("guard_bucket_contention_total{{iface=\"{iface}\",kind=\"all\"}}");
    assert_eq!(
        samples.get(&contention).copied(),
        Some(0.0),
        "no {contention}"
    );
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// A config file for the test network's victim: `body`, and no summary
/// lines unless `body` sets them.
fn write_config(path: &Path, net: &TestNet, body: &str) {
    let summary = if body.contains("summary-interval") {
        ""
    } else {
        "summary-interval = 0\n"
    };
    fs::write(
        path,
        format!(
            "iface = [\"{}\"]\nnetns = \"{}\"\nmode = \"enforce\"\nsource-limits = \"always\"\n{summary}{body}",
            net.victim_if, net.victim
        ),
    )
    .expect("write config");
}

/// `summary-interval` is reloaded like the rest: lines that were off
/// start a second after the SIGHUP that turns them on.
#[test]
fn sighup_applies_a_new_summary_interval() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let file = std::env::temp_dir().join(format!("guardt-{}-sum.toml", std::process::id()));
    write_config(&file, &net, "");
    let file_arg = file.display().to_string();
    let mut guard = Guard::start(&["run", "--config", &file_arg]);
    guard.wait_for(&guard_proc::pin_dir(&net).join("GUARD_COUNTERS"));
    let line = format!("{}: ", net.victim_if);
    let is_summary = |l: &str| l.contains(&line) && l.contains(" pkts (");
    write_config(&file, &net, "summary-interval = 1\n");
    guard.signal(libc::SIGHUP);
    guard.wait_for_log("SIGHUP: reloaded");
    assert!(
        !guard.stderr().lines().any(is_summary),
        "a summary line before the reload:\n{}",
        guard.stderr()
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while !guard.stderr().lines().any(is_summary) {
        assert!(
            Instant::now() < deadline,
            "no summary line within 5 s of the reload:\n{}",
            guard.stderr()
        );
        thread::sleep(Duration::from_millis(50));
    }
    guard.stop(libc::SIGTERM).assert_code(0);
    fs::remove_file(&file).expect("remove config");
}

#[test]
fn sighup_applies_a_valid_config_and_keeps_the_old_one_for_an_invalid_one() {
    let _kernel = kernel_test!();
    let _kept = KeptLists::save();
    let net = TestNet::addressed();
    let nft = Counters::install(&net.victim, &[("in", SYN)]);
    let file = std::env::temp_dir().join(format!("guardt-{}-hup.toml", std::process::id()));
    write_config(&file, &net, "syn-rate = 1\nsyn-burst = 1\n");
    let file_arg = file.display().to_string();
    let mut guard = Guard::start(&["run", "--config", &file_arg]);
    guard.wait_for(&guard_proc::pin_dir(&net).join("GUARD_COUNTERS"));
    let mut flood = Flood::new(&net);
    let burst = |flood: &mut Flood, from| {
        let before = nft.packets("in");
        for _ in 0..5 {
            syn(flood, &net, from);
        }
        nft.packets("in") - before
    };
    assert_eq!(
        burst(&mut flood, src(2, 1)),
        1,
        "burst 1 from the first config"
    );

    write_config(
        &file,
        &net,
        "syn-rate = 1\nsyn-burst = 4\ndeny = [\"198.19.9.0/24\"]\n",
    );
    guard.signal(libc::SIGHUP);
    guard.wait_for_log("SIGHUP: reloaded");
    assert_eq!(burst(&mut flood, src(2, 2)), 4, "burst 4 after the reload");
    assert_eq!(burst(&mut flood, src(9, 1)), 0, "the reloaded deny list");

    write_config(&file, &net, "syn-rate = 1\nsyn-burst = 0\n");
    guard.signal(libc::SIGHUP);
    guard.wait_for_log("not reloaded");
    assert_eq!(
        burst(&mut flood, src(2, 3)),
        4,
        "an invalid file changed the running config"
    );
    assert!(
        guard.stderr().contains("`syn-rate = 1, syn-burst = 0`")
            || guard.stderr().contains("syn-burst"),
        "{}",
        guard.stderr()
    );

    let finished = guard.stop(libc::SIGTERM);
    finished.assert_code(0);
    fs::remove_file(&file).expect("remove config");
}

#[test]
fn stats_json_carries_the_controller_status() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let guard = start_on(&net, &["--summary-interval", "0"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let out = loop {
        let out = guard_proc::run(&["stats", "--json", "--interval", "1", "--netns", &net.victim]);
        out.assert_code(0);
        if out.stdout.contains("\"level\"") || Instant::now() > deadline {
            break out;
        }
        thread::sleep(Duration::from_millis(200));
    };
    let json: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
    assert_eq!(json["conntrack"]["level"], "normal", "{out}");
    assert!(json["conntrack"]["max"].as_u64().is_some_and(|m| m > 0));
    assert!(json["interval_secs"].as_f64().is_some_and(|s| s >= 1.0));
    assert!(
        json["interfaces"][0]["rates"]["packets"].is_number(),
        "{out}"
    );
    let text = guard_proc::run(&["stats", "--interval", "0", "--netns", &net.victim]);
    text.assert_code(0);
    assert!(text.stdout.starts_with("conntrack (netns "), "{text}");
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// A guard installed under another name (`guard-1.2` beside the packaged
/// one, here a link to the binary under test) is the namespace's guard
/// to `guard status` and `guard stats`: a guard is the process that holds
/// its instance lock. Before, only a process named `guard` was, and both
/// said no guard was running, its pins a dead one's.
#[test]
fn a_guard_under_another_name_is_seen_running() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let dir = std::env::temp_dir().join(format!("guardt-{}-renamed", std::process::id()));
    fs::create_dir_all(&dir).expect("temp dir");
    let renamed = dir.join("guard-1.2");
    let _ = fs::remove_file(&renamed);
    std::os::unix::fs::symlink(guard_proc::guard_bin(), &renamed).expect("link");
    let args = ["run", "--netns", &net.victim, "--iface", &net.victim_if];
    let mut guard = Guard::start_command(std::process::Command::new(&renamed).args(args), &args);
    guard.wait_for(&guard_proc::pin_dir(&net).join("GUARD_COUNTERS"));
    guard.wait_ready();
    let pid = guard.pid().expect("running").to_string();
    let status = guard_cmd(&["status", "--netns", &net.victim]);
    assert!(status.stdout.contains(&pid), "{status}");
    assert!(guard_proc::stats(&net)["counters"].is_object());
    guard.stop(libc::SIGTERM).assert_code(0);
    fs::remove_dir_all(&dir).expect("remove temp dir");
}

fn status_json() -> serde_json::Value {
    let out = guard_proc::run(&["status", "--json"]);
    out.assert_code(0);
    serde_json::from_str(&out.stdout).expect("guard status --json")
}

/// `guard doctor --json FLAGS`, run through `runner` (`ip netns exec NS`)
/// or directly, parsed.
fn doctor_json(runner: &[&str], flags: &[&str]) -> (guard_proc::Finished, serde_json::Value) {
    let bin = guard_proc::guard_bin();
    let mut argv: Vec<&std::ffi::OsStr> = runner.iter().map(std::ffi::OsStr::new).collect();
    argv.push(bin.as_os_str());
    let out: guard_proc::Finished = std::process::Command::new(argv[0])
        .args(&argv[1..])
        .args(["doctor", "--json"])
        .args(flags)
        .output()
        .expect("guard doctor")
        .into();
    let report = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    (out, report)
}

/// The finding `check` of a doctor report.
fn finding_in(report: &serde_json::Value, check: &str) -> serde_json::Value {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["check"] == check)
        .cloned()
        .unwrap_or_else(|| panic!("no {check} finding: {report}"))
}

/// The finding `check` of `guard doctor --json` on this host.
fn doctor_finding(check: &str) -> serde_json::Value {
    finding_in(&doctor_json(&[], &[]).1, check)
}

#[test]
fn status_says_what_enforces_and_doctor_warns_in_monitor_mode() {
    let _kernel = kernel_test!();
    let _kept = KeptLists::save();
    let net = TestNet::addressed();
    let file = std::env::temp_dir().join(format!("guardt-{}-status.toml", std::process::id()));
    write_config(&file, &net, "");
    let file_arg = file.display().to_string();
    let guard = Guard::start(&["run", "--config", &file_arg]);
    // guard.json is written once guard is attached and its controller
    // runs (the pins come a little before).
    let pid = u64::from(guard.pid().expect("running"));
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        let out = guard_proc::run(&["status", "--json"]);
        if out.status.success() {
            let status: serde_json::Value = serde_json::from_str(&out.stdout).expect("json");
            if status["pid"] == pid {
                break status;
            }
        }
        assert!(
            Instant::now() < deadline,
            "guard status never showed pid {pid}: {out}"
        );
        thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status["mode"], "enforce", "{status}");
    assert_eq!(status["config"], file_arg.as_str(), "{status}");
    let attached = &status["interfaces"][0];
    assert_eq!(attached["iface"], net.victim_if.as_str(), "{status}");
    assert_eq!(attached["netns"], net.victim.as_str(), "{status}");
    // A veth: auto attaches in skb mode, so that cookies reach the peer.
    assert_eq!(attached["xdp_mode"], "skb", "{status}");
    let prog_id = attached["prog_id"].as_u64().expect("prog id");
    assert!(prog_id > 0, "{status}");
    // The egress program on the veth (tcx: this kernel has it).
    let egress = attached["egress_prog_id"].as_u64().expect("egress prog id");
    assert!(egress > 0 && egress != prog_id, "{status}");
    let text = guard_proc::run(&["status"]);
    text.assert_code(0);
    assert!(
        text.stdout.contains(&format!(
            "XDP (program {prog_id}) + tcx egress (program {egress})"
        )),
        "{text}"
    );
    assert!(
        text.stdout.contains(&format!(
            "{} (netns {}): enforce (drops), skb (generic) XDP",
            net.victim_if, net.victim
        )),
        "{text}"
    );
    let skb = doctor_finding("enforcing");
    assert_eq!(skb["level"], "WARN", "{skb}");
    assert!(
        skb["reason"]
            .as_str()
            .expect("reason")
            .contains("skb (generic)"),
        "{skb}"
    );

    fs::write(
        &file,
        fs::read_to_string(&file)
            .expect("config")
            .replace("mode = \"enforce\"", "mode = \"monitor\""),
    )
    .expect("rewrite config");
    guard.signal(libc::SIGHUP);
    guard.wait_for_log("SIGHUP: reloaded");
    assert_eq!(status_json()["mode"], "monitor");
    let monitor = doctor_finding("enforcing");
    assert_eq!(monitor["level"], "WARN", "{monitor}");
    assert!(
        monitor["reason"]
            .as_str()
            .expect("reason")
            .contains("monitor mode"),
        "{monitor}"
    );

    guard.stop(libc::SIGTERM).assert_code(0);
    let gone = guard_proc::run(&["status"]);
    gone.assert_code(1);
    assert!(gone.stderr.contains("no guard is running"), "{gone}");
    fs::remove_file(&file).expect("remove config");
}

/// systemd's side of `Type=notify`: a datagram socket guard writes to.
struct NotifySocket {
    socket: std::os::unix::net::UnixDatagram,
    path: std::path::PathBuf,
}

impl NotifySocket {
    fn bind() -> Self {
        let path = std::env::temp_dir().join(format!("guardt-{}-notify.sock", std::process::id()));
        let _ = fs::remove_file(&path);
        let socket = std::os::unix::net::UnixDatagram::bind(&path).expect("notify socket");
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Self { socket, path }
    }

    /// The next notification, or a panic after the timeout.
    fn next(&self) -> String {
        let mut buf = [0u8; 4096];
        let n = self
            .socket
            .recv(&mut buf)
            .expect("a notification from guard");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

impl Drop for NotifySocket {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// `guard doctor --netns NS`, and `ip netns exec NS guard doctor`, read
/// the namespace's own conntrack count, statistics, timeouts and
/// tcp_syncookies, its interfaces and its guard, and their fixes name it.
#[test]
fn doctor_diagnoses_a_named_namespace() {
    let _kernel = kernel_test!();
    let net = TestNet::silent();
    let ns = net.victim.as_str();
    // Namespace-local values the host does not have (the namespace and
    // they go together at the end).
    net.sysctl(ns, "net/ipv4/tcp_syncookies", "0");
    net.sysctl(
        ns,
        "net/netfilter/nf_conntrack_tcp_timeout_established",
        "7777",
    );
    for port in ["1", "2", "3"] {
        let _ = run_tool(
            "ip",
            &[
                "netns",
                "exec",
                ns,
                "conntrack",
                "-I",
                "-p",
                "udp",
                "-s",
                "198.18.0.1",
                "-d",
                "198.18.0.2",
                "--sport",
                port,
                "--dport",
                "53",
                "-t",
                "120",
            ],
        );
    }
    let guard = start_on(&net, &[]);
    let pid = guard.pid().expect("running");
    let fix = format!("ip netns exec {ns} sysctl -w net.ipv4.tcp_syncookies=1");
    for runner in [&[][..], &["ip", "netns", "exec", ns][..]] {
        let flags: &[&str] = if runner.is_empty() {
            &["--netns", ns]
        } else {
            &[]
        };
        let (out, report) = doctor_json(runner, flags);
        assert_eq!(report["netns"], ns, "{out}");
        assert_eq!(
            report["settings"]["tcp_timeouts"]["tcp_timeout_established"], 7777,
            "{out}"
        );
        assert_eq!(report["settings"]["sizing"]["count"], 3, "{out}");
        assert_eq!(report["stats"]["counters"]["insert"], 3, "{out}");
        let cookies = finding_in(&report, "syncookies");
        assert_eq!(cookies["level"], "WARN", "{cookies}");
        assert_eq!(cookies["fix"], fix.as_str(), "{cookies}");
        assert!(out.status.code().is_some_and(|c| c >= 1), "{out}");
        let running = finding_in(&report, "guard");
        assert_eq!(
            running["reason"],
            format!("guard runs (pid {pid}) on netns {ns}/{}", net.victim_if),
            "{running}"
        );
        let xdp = finding_in(&report, "xdp");
        assert!(
            xdp["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with(&format!("{}: guard's", net.victim_if))),
            "{xdp}"
        );
    }
    // The host's own view is not the namespace's.
    let (out, host) = doctor_json(&[], &[]);
    assert_eq!(host["netns"], serde_json::Value::Null, "{out}");
    assert_ne!(
        host["settings"]["tcp_timeouts"]["tcp_timeout_established"], 7777,
        "{out}"
    );
    guard.stop(libc::SIGTERM).assert_code(0);

    let missing = guard_proc::run(&["doctor", "--netns", "guardt-no-such-netns"]);
    missing.assert_code(3);
    assert!(
        missing
            .stdout
            .starts_with("GUARD UNKNOWN - network namespace `guardt-no-such-netns` does not exist"),
        "{missing}"
    );
    let both = guard_proc::run(&["doctor", "--netns", ns, "--root", "/"]);
    both.assert_code(3);
    assert!(
        both.stdout.starts_with("GUARD UNKNOWN - ") && both.stdout.contains("--root"),
        "{both}"
    );
}

#[test]
fn systemd_hears_ready_reloading_and_stopping() {
    let _kernel = kernel_test!();
    let _kept = KeptLists::save();
    let net = TestNet::addressed();
    let file = std::env::temp_dir().join(format!("guardt-{}-notify.toml", std::process::id()));
    write_config(&file, &net, "");
    let notify = NotifySocket::bind();
    let file_arg = file.display().to_string();
    let mut guard = Guard::start_with_env(
        &["run", "--config", &file_arg],
        &[("NOTIFY_SOCKET", notify.path.as_os_str())],
    );
    let ready = notify.next();
    // Ready only once attached: the pins are there when systemd hears it.
    assert!(guard_proc::pin_dir(&net).join("GUARD_COUNTERS").exists());
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    assert!(
        ready.contains(&format!(
            "STATUS=enforce on {} (skb (generic) XDP)",
            net.victim_if
        )),
        "{ready}"
    );
    guard.wait_for(&guard_proc::pin_dir(&net).join("GUARD_COUNTERS"));
    guard.signal(libc::SIGHUP);
    assert_eq!(notify.next().trim_end(), "RELOADING=1");
    let reloaded = notify.next();
    assert!(reloaded.lines().any(|l| l == "READY=1"), "{reloaded}");
    let stopped = guard.stop(libc::SIGTERM);
    assert_eq!(notify.next().trim_end(), "STOPPING=1");
    stopped.assert_code(0);
    fs::remove_file(&file).expect("remove config");
}

/// journald's side of its native protocol: the socket guard's log layer
/// writes to, bound where the test can read it.
struct Journal {
    socket: std::os::unix::net::UnixDatagram,
    dir: std::path::PathBuf,
}

impl Journal {
    fn bind() -> Self {
        let dir = std::env::temp_dir().join(format!("guardt-{}-journal", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("journal dir");
        let socket =
            std::os::unix::net::UnixDatagram::bind(dir.join("socket")).expect("journal socket");
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        Self { socket, dir }
    }

    /// The next entry whose MESSAGE contains `text`, as its fields; the
    /// panic says what `guard` wrote elsewhere.
    fn entry(&self, text: &str, guard: &Guard) -> BTreeMap<String, String> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut seen = Vec::new();
        loop {
            let n = self.socket.recv(&mut buf).unwrap_or_else(|e| {
                panic!(
                    "no journal entry with `{text}` ({e}) among {seen:?}; guard's stderr:\n{}",
                    guard.stderr()
                )
            });
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
            let fields = journal_fields(&buf[..n]);
            if fields.get("MESSAGE").is_some_and(|m| m.contains(text)) {
                return fields;
            }
        }
    }
}

/// The fields of one entry in journald's native protocol: `KEY=VALUE\n`,
/// or `KEY\n`, a 64-bit little-endian length, the value and `\n`.
fn journal_fields(mut data: &[u8]) -> BTreeMap<String, String> {
    let mut fields = BTreeMap::new();
    while let Some(end) = data.iter().position(|&b| b == b'\n' || b == b'=') {
        let key = String::from_utf8_lossy(&data[..end]).into_owned();
        let value;
        if data[end] == b'=' {
            let rest = &data[end + 1..];
            let stop = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            value = String::from_utf8_lossy(&rest[..stop]).into_owned();
            data = rest.get(stop + 1..).unwrap_or_default();
        } else {
            let rest = &data[end + 1..];
            let len = usize::try_from(u64::from_le_bytes(rest[..8].try_into().expect("a length")))
                .expect("a length");
            value = String::from_utf8_lossy(&rest[8..8 + len]).into_owned();
            data = rest.get(8 + len + 1..).unwrap_or_default();
        }
        fields.insert(key, value);
    }
    fields
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn under_systemd_bans_reach_the_journal_with_their_priority_and_fields() {
    let _kernel = kernel_test!();
    let _kept = KeptLists::save();
    let net = TestNet::addressed();
    let journal = Journal::bind();
    // A mount namespace of its own where /run/systemd/journal is the
    // test's directory: guard's journald layer finds its socket there.
    let script = format!(
        "mount -t tmpfs tmpfs /run/systemd && mkdir /run/systemd/journal && \
         mount --bind {} /run/systemd/journal && exec {} run --netns {} --iface {} \
         --mode enforce --source-limits always --syn-rate 1 --syn-burst 2 \
         --ban-threshold 3 --summary-interval 0",
        journal.dir.display(),
        guard_proc::guard_bin().display(),
        net.victim,
        net.victim_if
    );
    let mut command = std::process::Command::new("unshare");
    command
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env("JOURNAL_STREAM", "8:1");
    let guard = Guard::start_command(&mut command, &["run"]);
    let attached = journal.entry("attached to", &guard);
    assert_eq!(attached["PRIORITY"], "6", "{attached:?}");
    assert_eq!(attached["SYSLOG_IDENTIFIER"], "guard", "{attached:?}");
    let mut flood = Flood::new(&net);
    for _ in 0..6 {
        flood.counted_syn(&net, src(7, 7), PORT);
    }
    let ban = journal.entry("banned for", &guard);
    assert_eq!(ban["PRIORITY"], "4", "a ban is a warning: {ban:?}");
    assert_eq!(ban["IFACE"], net.victim_if, "{ban:?}");
    assert_eq!(ban["SRC"], "198.19.7.7", "{ban:?}");
    assert!(
        guard.stderr().is_empty(),
        "logs went to stderr: {}",
        guard.stderr()
    );
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// Every system call name that the unit's `SystemCallFilter=` allows:
/// its groups expanded by systemd itself.
fn unit_syscall_allowlist() -> std::collections::BTreeSet<String> {
    fn expand(group: &str, seen: &mut std::collections::BTreeSet<String>) {
        let out = std::process::Command::new("systemd-analyze")
            .args(["syscall-filter", group])
            .output()
            .expect("systemd-analyze");
        assert!(
            out.status.success(),
            "systemd-analyze syscall-filter {group}"
        );
        for word in String::from_utf8_lossy(&out.stdout).lines().map(str::trim) {
            if word.is_empty() || word.starts_with('#') || word == group {
                continue;
            }
            if word.starts_with('@') {
                if !seen.contains(word) {
                    seen.insert(word.to_owned());
                    expand(word, seen);
                }
            } else {
                seen.insert(word.to_owned());
            }
        }
    }
    let unit = include_str!("../../deploy/guard.service");
    let mut allowed = std::collections::BTreeSet::new();
    for line in unit.lines() {
        let Some(value) = line.strip_prefix("SystemCallFilter=") else {
            continue;
        };
        assert!(!value.starts_with('~'), "an allowlist is expected: {line}");
        for item in value.split_whitespace() {
            if item.starts_with('@') {
                expand(item, &mut allowed);
            } else {
                allowed.insert(item.to_owned());
            }
        }
    }
    allowed.retain(|s| !s.starts_with('@'));
    assert!(allowed.len() > 100, "the unit has no SystemCallFilter=");
    allowed
}

/// The system call names in an `strace -f` log.
fn traced_syscalls(path: &Path) -> std::collections::BTreeSet<String> {
    fs::read_to_string(path)
        .expect("the trace")
        .lines()
        .filter_map(|line| {
            let call = line.split_once(' ')?.1.trim_start();
            let name: String = call
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty() && call[name.len()..].starts_with('(')).then_some(name)
        })
        .collect()
}

/// The unit's `SystemCallFilter=` allows every system call that the
/// processes it runs make (guard run through a start, a ban with its
/// conntrack entries deleted, SYNPROXY and notrack rules, a scrape, a
/// SIGHUP, an expiry and a stop; check-config; restore), traced with
/// strace: a call it missed would fail with EPERM under systemd.
#[test]
fn the_units_syscall_filter_allows_every_call_guard_makes() {
    let _kernel = kernel_test!();
    let _kept = KeptLists::save();
    let allowed = unit_syscall_allowlist();
    let net = TestNet::addressed();
    let dir = std::env::temp_dir().join(format!("guardt-{}-strace", std::process::id()));
    fs::create_dir_all(&dir).expect("trace dir");
    let file = dir.join("guard.toml");
    let port = loopback_port();
    write_config(
        &file,
        &net,
        &format!(
            "syn-rate = 1\nsyn-burst = 1\nban-threshold = 3\nsyn-cookies = \"always\"\nnotrack-port = [53]\nmetrics = \"127.0.0.1:{port}\"\n"
        ),
    );
    let file_arg = file.display().to_string();
    // iptables-legacy's tables, which guard reads with its save tool.
    for rule in [
        "-t nat -A PREROUTING -p tcp --dport 9 -j REDIRECT --to-ports 10",
        "-t mangle -A INPUT -m conntrack --ctstate INVALID -j ACCEPT",
    ] {
        let mut args = vec!["netns", "exec", &net.victim, "iptables-legacy"];
        args.extend(rule.split(' '));
        let _ = run_tool("ip", &args);
    }
    let strace = |name: &str| {
        let mut command = std::process::Command::new("strace");
        command
            .args(["-f", "-qq", "-o"])
            .arg(dir.join(name))
            .arg(guard_proc::guard_bin());
        command
    };
    let run_traced = |name: &str, args: &[&str]| {
        let out = strace(name).args(args).output().expect("strace");
        assert!(out.status.success(), "guard {args:?} under strace: {out:?}");
    };
    run_traced("check-config", &["check-config", "--config", &file_arg]);

    let mut traced = strace("run");
    traced.args(["run", "--config", &file_arg]);
    let guard = Guard::start_command(&mut traced, &["run", "--config", &file_arg]);
    // Signals go to guard itself, not to strace, which would detach.
    let deadline = Instant::now() + Duration::from_secs(20);
    let pid = loop {
        if let Some(run) = guard::host::instances::all()
            .into_iter()
            .filter(|i| i.pid.is_some())
            .find_map(|i| guard::host::status_file::read_run(&i.dir))
        {
            break i32::try_from(run.pid).expect("pid");
        }
        assert!(Instant::now() < deadline, "{}", guard.stderr());
        thread::sleep(Duration::from_millis(50));
    };
    let signal = |sig: i32| {
        // SAFETY: the guard this test started, under strace.
        unsafe { libc::kill(pid, sig) };
    };
    // If the test fails, SIGTERM reaches strace, which detaches and
    // leaves guard running: stop guard itself first.
    let _stop = StopOnDrop(pid);
    let mut flood = Flood::new(&net);
    for _ in 0..10 {
        flood.tcp(src(7, 7), 2000, PORT, TCP_SYN);
    }
    guard.wait_for_log("banned");
    let _ = scrape(port);
    signal(libc::SIGHUP);
    guard.wait_for_log("SIGHUP: reloaded");
    guard_cmd(&["deny", "add", "198.19.8.8", "--for", "1s"]);
    guard.wait_for_log("its time is up");
    signal(libc::SIGTERM);
    // strace exits with guard; signal 0 only waits.
    guard.stop(0).assert_code(0);
    let restore = strace("restore").arg("restore").output().expect("strace");
    assert!(restore.status.success(), "{restore:?}");

    let run_trace = fs::read_to_string(dir.join("run")).unwrap_or_default();
    assert!(
        run_trace.contains("iptables-legacy-save"),
        "guard run never read iptables-legacy's tables"
    );
    let mut missing = std::collections::BTreeSet::new();
    for name in ["check-config", "run", "restore"] {
        let calls = traced_syscalls(&dir.join(name));
        assert!(calls.contains("exit_group"), "{name}: an empty trace");
        missing.extend(calls.difference(&allowed).cloned());
    }
    let _ = fs::remove_dir_all(&dir);
    assert!(
        missing.is_empty(),
        "deploy/guard.service's SystemCallFilter= lacks {missing:?}"
    );
}

/// Sends SIGTERM to a guard the test started under strace, when dropped
/// (a no-op once it has exited: its pid is then gone or not a guard).
struct StopOnDrop(i32);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        let comm = fs::read_to_string(format!("/proc/{}/comm", self.0)).unwrap_or_default();
        if comm.trim() == "guard" {
            // SAFETY: the guard this test started, still running.
            unsafe { libc::kill(self.0, libc::SIGTERM) };
        }
    }
}

/// In monitor mode (guard's default) an operator's `drop` signature
/// counts its matches and lets them in, and every view says so rather
/// than "dropping".
#[test]
fn an_operators_signature_in_monitor_mode_counts_and_says_so() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let nft = Counters::install(&net.victim, &[("in", SYN)]);
    let _guard = start_on(&net, &["--summary-interval", "0"]);
    let mut flood = Flood::new(&net);
    let added = guard_cmd(&["sigs", "add", "tcp dport 8081 win 64240 hlen 20"]);
    assert!(
        added.stdout.contains("sig 1: counting tcp") && added.stdout.contains("monitor mode"),
        "{added}"
    );
    flood.counted_syn(&net, src(1, 2), MARKED_PORT);
    assert_eq!(nft.packets("in"), 1, "monitor mode dropped the match");
    let list = guard_cmd(&["sigs", "list", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&list.stdout).expect("sigs list --json");
    assert_eq!(rows[0]["action"], "drop", "{rows}");
    assert_eq!(rows[0]["drops"], false, "{rows}");
    assert_eq!(rows[0]["hits"], 1, "{rows}");
    let text = guard_cmd(&["sigs", "list"]);
    assert!(
        text.stdout.contains("counting: guard is in monitor mode"),
        "{text}"
    );
    let stats = guard_proc::stats(&net);
    assert_eq!(counters(&stats)["drop_signature"], 1, "{stats}");
    assert_eq!(counters(&stats)["pass_monitor"], 1, "{stats}");
}

/// The port the operator's signature in the test below names.
const MARKED_PORT: u16 = 8081;

#[test]
fn an_operators_signature_drops_at_once_shows_everywhere_and_comes_out() {
    let _kernel = kernel_test!();
    let net = TestNet::addressed();
    let nft = Counters::install(&net.victim, &[("in", SYN)]);
    let _guard = start_on(&net, &["--mode", "enforce", "--summary-interval", "0"]);
    let mut flood = Flood::new(&net);

    let bad = guard_proc::run(&["sigs", "add", "tcp dport 70000"]);
    bad.assert_code(2);
    assert!(bad.stderr.contains("70000"), "{bad}");
    // The harness's SYNs carry a 64240 window and no options.
    let added = guard_cmd(&["sigs", "add", "tcp dport 8081 win 64240 hlen 20"]);
    assert!(
        added.stdout.contains("sig 1: dropping tcp") && added.stdout.contains("dport 8081"),
        "{added}"
    );
    syn(&mut flood, &net, src(1, 1));
    assert_eq!(nft.packets("in"), 1, "the unmarked port's SYN gets in");
    flood.counted_syn(&net, src(1, 2), MARKED_PORT);
    assert_eq!(nft.packets("in"), 1, "the signature's SYN got in");

    let list = guard_cmd(&["sigs", "list", "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&list.stdout).expect("sigs list --json");
    assert_eq!(rows[0]["id"], 1, "{rows}");
    assert_eq!(rows[0]["origin"], "operator", "{rows}");
    assert_eq!(rows[0]["action"], "drop", "{rows}");
    assert_eq!(rows[0]["drops"], true, "{rows}");
    assert_eq!(rows[0]["hits"], 1, "{rows}");
    let stats = guard_proc::stats(&net);
    assert_eq!(counters(&stats)["drop_signature"], 1, "{stats}");
    assert_eq!(stats["signatures"][0]["hits"], 1, "{stats}");
    let glance = guard_cmd(&["status", "--netns", &net.victim]);
    assert!(glance.stdout.contains("sig 1 on"), "{glance}");

    let pinned = guard_cmd(&["sigs", "pin", "1"]);
    assert!(pinned.stdout.contains("sig 1: pinned"), "{pinned}");
    guard_proc::run(&["sigs", "pin", "7"]).assert_code(1);
    guard_cmd(&["sigs", "rm", "1"]);
    guard_proc::run(&["sigs", "rm", "1"]).assert_code(1);
    flood.counted_syn(&net, src(1, 3), MARKED_PORT);
    assert_eq!(nft.packets("in"), 2, "taken out, it drops nothing");
    assert!(
        guard_cmd(&["sigs", "list"])
            .stdout
            .contains("no signatures")
    );
}
