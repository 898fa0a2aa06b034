//! The allow and deny lists have one writer path: a SIGHUP makes the
//! running tries exactly the reloaded lists (an entry taken out of the file
//! stops matching at once), and list commands racing from several shells,
//! while the controller writes the configuration every tick, lose nothing.

use std::{
    fs,
    net::IpAddr,
    path::{Path, PathBuf},
    thread,
};

use guard::{
    host::lock::FileLock,
    model::paths::{MAPS_LOCK, RUNTIME_DIR},
};
use guard_tests::{
    flood::Flood,
    guard_proc::{self, Guard},
    host::{KeptLists, LISTS_FILE, RUNTIME_LISTS_FILE},
    kernel_test,
    net::TestNet,
    nft::Counters,
};

const PORT: u16 = 8080;
const SYN: &str = "tcp flags & (syn | ack) == syn";
/// Entries each racing shell adds.
const EACH: u8 = 15;

/// Sends one SYN from `from` and waits until guard has counted it; returns
/// whether it reached the victim's stack.
fn passes(flood: &mut Flood, net: &TestNet, nft: &Counters, from: IpAddr) -> bool {
    let before = nft.packets("in");
    flood.counted_syn(net, from, PORT);
    nft.packets("in") > before
}

fn addr(text: &str) -> IpAddr {
    text.parse().expect("address")
}

/// A config file for `net`, removed when dropped.
struct Config(PathBuf);

impl Config {
    fn new(name: &str) -> Self {
        Self(std::env::temp_dir().join(format!("guardt-{}-{name}.toml", std::process::id())))
    }

    fn write(&self, net: &TestNet, deny: &[&str]) {
        let deny: Vec<String> = deny.iter().map(|d| format!("\"{d}\"")).collect();
        fs::write(
            &self.0,
            format!(
                "iface = [\"{}\"]\nnetns = \"{}\"\nmode = \"enforce\"\nsummary-interval = 0\ndeny = [{}]\n",
                net.victim_if,
                net.victim,
                deny.join(", ")
            ),
        )
        .expect("writing the config");
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Config {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// The entries `guard deny list` shows as running.
fn running_denies() -> Vec<String> {
    let out = guard_proc::run(&["deny", "list"]);
    out.assert_code(0);
    out.stdout
        .lines()
        .skip_while(|l| !l.starts_with("deny (running"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .map(|l| l.trim().to_owned())
        .collect()
}

#[test]
fn sighup_takes_entries_removed_from_the_file_out_of_the_running_lists() {
    let _kernel = kernel_test!();
    let _kept = KeptLists::save();
    let net = TestNet::addressed();
    let nft = Counters::install(&net.victim, &[("in", SYN)]);
    let config = Config::new("hup-lists");
    config.write(
        &net,
        &["198.19.1.1/32", "198.19.5.0/24", "2001:db8:ff00:7::/64"],
    );
    let config_arg = config.path().display().to_string();
    let mut guard = Guard::start(&["run", "--config", &config_arg]);
    guard.wait_for(&guard_proc::pin_dir(&net).join("GUARD_COUNTERS"));
    let mut flood = Flood::new(&net);
    let (customer, blocked, customer6) = (
        addr("198.19.1.1"),
        addr("198.19.5.9"),
        addr("2001:db8:ff00:7::7"),
    );
    assert!(!passes(&mut flood, &net, &nft, customer));
    assert!(!passes(&mut flood, &net, &nft, blocked));
    assert!(!passes(&mut flood, &net, &nft, customer6));
    // Added live: kept in the lists file, so a reload keeps it.
    guard_proc::run(&["deny", "add", "198.19.8.0/24"]).assert_code(0);

    config.write(&net, &["198.19.5.0/24"]);
    guard.signal(libc::SIGHUP);
    guard.wait_for_log("SIGHUP: reloaded");
    assert_eq!(
        running_denies(),
        ["198.19.5.0/24", "198.19.8.0/24"],
        "the running lists after the reload"
    );
    assert!(
        passes(&mut flood, &net, &nft, customer),
        "a deny taken out of the file still drops after SIGHUP"
    );
    assert!(
        passes(&mut flood, &net, &nft, customer6),
        "an IPv6 deny taken out of the file still drops after SIGHUP"
    );
    assert!(!passes(&mut flood, &net, &nft, blocked));
    assert!(
        !passes(&mut flood, &net, &nft, addr("198.19.8.1")),
        "the reload lost a deny kept by `guard deny add`"
    );
    guard.stop(libc::SIGTERM).assert_code(0);
}

#[test]
fn list_commands_racing_from_three_shells_lose_nothing() {
    let _kernel = kernel_test!();
    let _kept = KeptLists::save();
    let net = TestNet::addressed();
    let nft = Counters::install(&net.victim, &[("in", SYN)]);
    let config = Config::new("race-lists");
    config.write(&net, &[]);
    let config_arg = config.path().display().to_string();
    let mut guard = Guard::start(&["run", "--config", &config_arg]);
    guard.wait_for(&guard_proc::pin_dir(&net).join("GUARD_COUNTERS"));

    // Three shells, one per list and family, each adding its entries one
    // command at a time while the others do; the controller writes the
    // configuration map every tick meanwhile.
    let v4: Vec<String> = (0..EACH)
        .map(|i| format!("198.19.{}.0/24", 100 + i))
        .collect();
    let v6: Vec<String> = (0..EACH)
        .map(|i| format!("2001:db8:ff00:{:x}::/64", 100 + u16::from(i)))
        .collect();
    let allow: Vec<String> = (0..EACH)
        .map(|i| format!("198.19.200.{}/32", i + 1))
        .collect();
    thread::scope(|s| {
        for (list, entries) in [("deny", &v4), ("deny", &v6), ("allow", &allow)] {
            s.spawn(move || {
                for cidr in entries {
                    guard_proc::run(&[list, "add", cidr]).assert_code(0);
                }
            });
        }
    });

    let mut want: Vec<String> = v4.iter().chain(&v6).cloned().collect();
    want.sort_by_key(|c| c.parse::<ipnet::IpNet>().expect("cidr"));
    assert_eq!(running_denies(), want, "deny entries lost in the race");
    let kept = fs::read_to_string(LISTS_FILE).expect("the lists file");
    for cidr in v4.iter().chain(&v6).chain(&allow) {
        assert!(
            kept.contains(&format!("\"{cidr}\"")),
            "{cidr} lost from {LISTS_FILE}:\n{kept}"
        );
    }
    let mut flood = Flood::new(&net);
    assert!(!passes(&mut flood, &net, &nft, addr("198.19.114.1")));
    assert!(!passes(&mut flood, &net, &nft, addr("2001:db8:ff00:72::7")));
    assert!(passes(&mut flood, &net, &nft, addr("198.19.200.15")));
    assert!(passes(&mut flood, &net, &nft, addr("198.19.99.1")));
    guard.stop(libc::SIGTERM).assert_code(0);
}

#[test]
fn a_stopped_list_command_holding_the_map_lock_does_not_stop_guard() {
    let _kernel = kernel_test!();
    let _kept = KeptLists::save();
    let net = TestNet::addressed();
    let nft = Counters::install(&net.victim, &[("in", SYN)]);
    let config = Config::new("stuck-lock");
    config.write(&net, &["198.19.1.1/32"]);
    let config_arg = config.path().display().to_string();
    let mut guard = Guard::start(&["run", "--config", &config_arg]);
    guard.wait_for(&guard_proc::pin_dir(&net).join("GUARD_COUNTERS"));
    let mut flood = Flood::new(&net);
    let customer = addr("198.19.1.1");
    assert!(!passes(&mut flood, &net, &nft, customer));

    // As a `guard deny add` suspended with Ctrl-Z would: the map-write
    // lock held, and never let go while the test looks.
    let held = FileLock::exclusive(&Path::new(RUNTIME_DIR).join(MAPS_LOCK)).expect("the lock");
    config.write(&net, &[]);
    guard.signal(libc::SIGHUP);
    guard.wait_for_log("writing the maps without it");
    guard.wait_for_log("SIGHUP: reloaded");
    assert!(
        passes(&mut flood, &net, &nft, customer),
        "the reload did not reach the maps while the lock was held"
    );
    let stopped = guard.stop(libc::SIGTERM);
    drop(held);
    stopped.assert_code(0);
}

#[test]
fn a_half_written_kept_lists_file_does_not_stop_guard() {
    let _kernel = kernel_test!();
    let _kept = KeptLists::save();
    let net = TestNet::addressed();
    let nft = Counters::install(&net.victim, &[("in", SYN)]);
    fs::create_dir_all(Path::new(LISTS_FILE).parent().expect("a directory")).expect("mkdir");
    fs::write(LISTS_FILE, "deny = [\"198.19.1.1/32\", \"198.19.").expect("a torn file");
    let config = Config::new("torn-lists");
    config.write(&net, &["198.19.5.0/24"]);
    let config_arg = config.path().display().to_string();
    let checked = guard_proc::run(&["check-config", "--config", &config_arg]);
    checked.assert_code(0);
    assert!(
        checked.stderr.contains("the kept lists are left out"),
        "{checked}"
    );
    let mut guard = Guard::start(&["run", "--config", &config_arg]);
    guard.wait_for(&guard_proc::pin_dir(&net).join("GUARD_COUNTERS"));
    guard.wait_for_log("the kept lists are left out");
    let mut flood = Flood::new(&net);
    assert!(
        !passes(&mut flood, &net, &nft, addr("198.19.5.9")),
        "the config's deny"
    );
    assert!(passes(&mut flood, &net, &nft, addr("198.19.1.1")));
    // The torn file is not overwritten by a list command: it says why.
    let add = guard_proc::run(&["deny", "add", "198.19.8.0/24"]);
    add.assert_code(2);
    assert!(add.stderr.contains("not a valid lists file"), "{add}");
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// Runs a shell command line as fail2ban or CrowdSec would, with guard
/// first on the PATH.
fn shell(line: &str) -> guard_proc::Finished {
    let bin_dir = guard_proc::guard_bin()
        .parent()
        .expect("a directory")
        .to_path_buf();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = std::process::Command::new("sh")
        .args(["-c", line])
        .env("PATH", path)
        .output()
        .expect("sh");
    out.into()
}

/// The `key = value` of deploy/fail2ban/action.d/guard.conf.
fn fail2ban_action(key: &str) -> String {
    let conf = include_str!("../../deploy/fail2ban/action.d/guard.conf");
    conf.lines()
        .find_map(|l| l.strip_prefix(key)?.trim_start().strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key} in the action file"))
        .trim()
        .to_owned()
}

#[test]
fn fail2ban_and_crowdsec_drive_the_deny_list_with_their_own_command_shapes() {
    let _kernel = kernel_test!();
    let _kept = KeptLists::save();
    let net = TestNet::addressed();
    let nft = Counters::install(&net.victim, &[("in", SYN)]);
    let config = Config::new("adapters");
    config.write(&net, &[]);
    let config_arg = config.path().display().to_string();
    let mut guard = Guard::start(&["run", "--config", &config_arg]);
    guard.wait_for(&guard_proc::pin_dir(&net).join("GUARD_COUNTERS"));
    let mut flood = Flood::new(&net);

    // fail2ban: its action's lines, <ip> filled in, run by a shell.
    let (jailed, decided) = (addr("198.19.4.4"), addr("198.19.6.6"));
    let fill = |line: String| line.replace("<ip>", "198.19.4.4").replace("<name>", "sshd");
    shell(&fill(fail2ban_action("actionban"))).assert_code(0);
    assert!(!passes(&mut flood, &net, &nft, jailed), "fail2ban's ban");
    let bans = bans_json();
    let ban = deny_ban(&bans, "198.19.4.4/32");
    assert_eq!(ban["reason"], "fail2ban sshd", "{bans}");
    assert!(
        ban["seconds_left"].is_null(),
        "fail2ban times its bans: {bans}"
    );
    shell(&fill(fail2ban_action("actionunban"))).assert_code(0);
    assert!(passes(&mut flood, &net, &nft, jailed), "fail2ban's unban");

    // CrowdSec's custom bouncer: `add|del <ip> <duration> <reason> <json>`
    // through the wrapper deploy/ installs.
    let wrapper = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/crowdsec/guard-crowdsec"
    );
    // The duration as CrowdSec passes it: Go's format, a moment after the
    // decision was made.
    let decision = r#"{"duration":"3h59m58.5s","origin":"crowdsec","scenario":"crowdsecurity/ssh-bf","scope":"Ip","type":"ban","value":"198.19.6.6"}"#;
    let add = shell(&format!(
        "sh {wrapper} add 198.19.6.6 3h59m58.5s crowdsecurity/ssh-bf '{decision}'"
    ));
    add.assert_code(0);
    assert!(add.stdout.contains("crowdsecurity/ssh-bf"), "{add}");
    assert!(
        !passes(&mut flood, &net, &nft, decided),
        "CrowdSec's decision"
    );
    assert!(
        fs::read_to_string(LISTS_FILE)
            .expect("kept")
            .contains("198.19.6.6/32"),
        "a decision is kept across a guard restart"
    );
    // guard times it too, in case CrowdSec's `del` never comes.
    let bans = bans_json();
    let ban = deny_ban(&bans, "198.19.6.6/32");
    assert_eq!(ban["reason"], "crowdsec: crowdsecurity/ssh-bf", "{bans}");
    let left = ban["seconds_left"].as_f64().expect("a time left");
    assert!((14_390.0..=14_399.0).contains(&left), "{bans}");
    shell(&format!(
        "sh {wrapper} del 198.19.6.6 3h59m58.5s crowdsecurity/ssh-bf '{decision}'"
    ))
    .assert_code(0);
    assert!(
        passes(&mut flood, &net, &nft, decided),
        "CrowdSec's deletion"
    );
    guard.stop(libc::SIGTERM).assert_code(0);
}

fn bans_json() -> serde_json::Value {
    let out = guard_proc::run(&["bans", "--json"]);
    out.assert_code(0);
    serde_json::from_str(&out.stdout).expect("bans --json")
}

/// The row of `guard bans --json` for the deny entry `cidr`.
fn deny_ban<'a>(bans: &'a serde_json::Value, cidr: &str) -> &'a serde_json::Value {
    bans.as_array()
        .expect("an array")
        .iter()
        .find(|b| b["by"] == "deny" && b["source"] == cidr)
        .unwrap_or_else(|| panic!("no deny row for {cidr}: {bans}"))
}

/// Polls `f` every 100 ms for up to `secs` seconds; whether it came true.
fn within(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if f() {
            return true;
        }
        if std::time::Instant::now() > deadline {
            return false;
        }
        thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn guard_takes_out_a_timed_entry_when_its_time_is_up_and_a_restart_keeps_the_time() {
    let _kernel = kernel_test!();
    let _kept = KeptLists::save();
    // Expired while no guard ran: not loaded at the next start.
    fs::create_dir_all("/run/guard").expect("/run/guard");
    fs::write(
        RUNTIME_LISTS_FILE,
        "deny = [\"198.19.3.3/32\"]\n[notes.\"198.19.3.3/32\"]\nexpires = \"2020-01-01T00:00:00Z\"\n",
    )
    .expect("the runtime lists");
    let net = TestNet::addressed();
    let nft = Counters::install(&net.victim, &[("in", SYN)]);
    let config = Config::new("timed");
    config.write(&net, &[]);
    let config_arg = config.path().display().to_string();
    let mut guard = Guard::start(&["run", "--config", &config_arg]);
    guard.wait_for(&guard_proc::pin_dir(&net).join("GUARD_COUNTERS"));
    let mut flood = Flood::new(&net);
    assert!(
        passes(&mut flood, &net, &nft, addr("198.19.3.3")),
        "an entry that expired while guard was stopped was loaded"
    );

    let (brief, long, unsaved) = (addr("198.19.9.9"), addr("198.19.9.10"), addr("198.19.9.11"));
    let add = guard_proc::run(&[
        "deny",
        "add",
        "198.19.9.9",
        "--for",
        "2s",
        "--reason",
        "probe",
    ]);
    add.assert_code(0);
    assert!(add.stdout.contains("guard takes it out at"), "{add}");
    guard_proc::run(&["deny", "add", "198.19.9.10", "--for", "1h"]).assert_code(0);
    let no_save = guard_proc::run(&[
        "deny",
        "add",
        "198.19.9.11",
        "--no-save",
        "--reason",
        "just now",
    ]);
    no_save.assert_code(0);
    assert!(no_save.stdout.contains("--no-save"), "{no_save}");
    for from in [brief, long, unsaved] {
        assert!(!passes(&mut flood, &net, &nft, from), "{from} passed");
    }
    let saved = fs::read_to_string(LISTS_FILE).expect("the saved lists");
    let runtime = fs::read_to_string(RUNTIME_LISTS_FILE).expect("the runtime lists");
    assert!(
        !saved.contains("198.19.9.11") && runtime.contains("198.19.9.11/32"),
        "--no-save kept it in the wrong file:\n{saved}\n{runtime}"
    );
    let bans = bans_json();
    assert_eq!(deny_ban(&bans, "198.19.9.9/32")["reason"], "probe");
    assert_eq!(deny_ban(&bans, "198.19.9.11/32")["reason"], "just now");

    // Its time up, guard takes it out of the tries and the file by itself.
    guard.wait_for_log("198.19.9.9/32 (probe): its time is up, taken out");
    assert!(
        within(2, || passes(&mut flood, &net, &nft, brief)),
        "an expired entry still drops"
    );
    assert!(
        !fs::read_to_string(LISTS_FILE)
            .expect("the saved lists")
            .contains("198.19.9.9/32")
    );
    assert!(!passes(&mut flood, &net, &nft, long));

    // A restart keeps the hour and the unsaved entry (the runtime
    // directory stays while the host runs).
    guard.stop(libc::SIGTERM).assert_code(0);
    let mut guard = Guard::start(&["run", "--config", &config_arg]);
    guard.wait_for(&guard_proc::pin_dir(&net).join("GUARD_COUNTERS"));
    let mut flood = Flood::new(&net);
    assert!(!passes(&mut flood, &net, &nft, long));
    assert!(!passes(&mut flood, &net, &nft, unsaved));
    let left = deny_ban(&bans_json(), "198.19.9.10/32")["seconds_left"]
        .as_f64()
        .expect("a time left");
    assert!((3_500.0..=3_600.0).contains(&left), "{left}");

    // A bad duration names the flag; a delete takes no --for.
    let bad = guard_proc::run(&["deny", "add", "198.19.9.12", "--for", "4x"]);
    bad.assert_code(2);
    assert!(
        bad.stderr.contains("--for `4x`: `4x`: unknown unit `x`"),
        "{bad}"
    );
    let bad = guard_proc::run(&["deny", "del", "198.19.9.10", "--for", "1h"]);
    bad.assert_code(2);
    assert!(bad.stderr.contains("--for goes with `deny add`"), "{bad}");
    let bad = guard_proc::run(&["deny", "list", "--for", "1h"]);
    bad.assert_code(2);
    assert!(bad.stderr.contains("`deny list` takes no --for"), "{bad}");
    guard.stop(libc::SIGTERM).assert_code(0);
}

/// Runs `guard ARGS` with `input` on its standard input.
fn run_with_stdin(args: &[&str], input: &str) -> guard_proc::Finished {
    use std::io::Write as _;
    let mut child = std::process::Command::new(guard_proc::guard_bin())
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("guard");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("writing the entries");
    let out = child.wait_with_output().expect("guard");
    out.into()
}

#[test]
fn a_20000_entry_blocklist_loads_from_stdin_and_the_ceiling_is_the_configured_one() {
    let _kernel = kernel_test!();
    let _kept = KeptLists::save();
    let net = TestNet::addressed();
    let nft = Counters::install(&net.victim, &[("in", SYN)]);
    let config = Config::new("bulk");
    config.write(&net, &[]);
    let config_arg = config.path().display().to_string();
    let mut guard = Guard::start(&["run", "--config", &config_arg]);
    guard.wait_for(&guard_proc::pin_dir(&net).join("GUARD_COUNTERS"));

    // 20,000 addresses from 198.19.128.0 up, in a blocklist's shape.
    let entry = |i: u32| format!("198.19.{}.{}", 128 + i / 256, i % 256);
    let mut list = String::from("# a blocklist\n");
    for i in 0..20_000 {
        list.push_str(&entry(i));
        list.push_str(" ; listed\n");
    }
    let started = std::time::Instant::now();
    let add = run_with_stdin(
        &["deny", "add", "--file", "-", "--reason", "blocklist"],
        &list,
    );
    let took = started.elapsed();
    add.assert_code(0);
    println!("20,000 entries from stdin: {took:?}");
    assert!(
        add.stdout.contains("20000 deny entries (20000 new)"),
        "{add}"
    );
    assert_eq!(running_denies().len(), 20_000);
    let mut flood = Flood::new(&net);
    assert!(!passes(&mut flood, &net, &nft, addr(&entry(19_999))));
    assert!(passes(&mut flood, &net, &nft, addr("198.19.127.1")));

    let del = run_with_stdin(&["deny", "del", "--file", "-"], &list);
    del.assert_code(0);
    assert!(
        del.stdout.contains("deleted 20000 of 20000 deny entries"),
        "{del}"
    );
    assert!(running_denies().is_empty());
    assert!(passes(&mut flood, &net, &nft, addr(&entry(19_999))));
    guard.stop(libc::SIGTERM).assert_code(0);

    // A guard started with a smaller ceiling refuses what does not fit,
    // before it writes anything.
    let mut guard = Guard::start(&["run", "--config", &config_arg, "--list-capacity", "1024"]);
    guard.wait_for(&guard_proc::pin_dir(&net).join("GUARD_COUNTERS"));
    let kept_before = fs::read(LISTS_FILE).ok();
    let big: String = (0..1_025).map(|i| entry(i) + "\n").collect();
    let over = run_with_stdin(&["deny", "add", "--file", "-"], &big);
    over.assert_code(2);
    assert!(
        over.stderr
            .contains("1025 IPv4 allow and deny entries: a trie holds 1024 (list-capacity)"),
        "{over}"
    );
    assert_eq!(fs::read(LISTS_FILE).ok(), kept_before, "the file changed");
    assert!(running_denies().is_empty());
    guard.stop(libc::SIGTERM).assert_code(0);
}
