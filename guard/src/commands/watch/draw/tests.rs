use std::collections::VecDeque;

use ratatui::{Terminal, backend::TestBackend, buffer::Buffer};

use super::*;
use crate::{
    config::Rate,
    model::{
        conntrack::Stats,
        ports::OpenRanges,
        stats::{InterfaceStats, SigRow, SourceRow},
        status::{AttachedStatus, LoggedDecision, Status},
    },
};

fn source(addr: &str, dropped: u64, new_per_sec: f64, banned_secs: Option<f64>) -> SourceRow {
    SourceRow {
        source: addr.to_owned(),
        new_flows: 0,
        passed: 0,
        dropped,
        new_flows_per_sec: Some(new_per_sec),
        last_seen_secs_ago: 0.0,
        banned_secs,
        verified_secs: None,
    }
}

fn sig(id: u32, action: &'static str, hits: u64, per_sec: f64, text: &str) -> SigRow {
    let operator = action == "monitor";
    SigRow {
        id,
        origin: if operator { "operator" } else { "learned" },
        action,
        pinned: operator,
        hits,
        hits_per_sec: Some(per_sec),
        signature: text.to_owned(),
    }
}

/// A learned signature dropping a flood, and an operator's that counts.
fn signatures() -> Vec<SigRow> {
    vec![
        sig(3, "monitor", 12, 2.0, "tcp syn win 1024"),
        sig(
            1,
            "drop",
            1_234_567,
            4200.0,
            "udp ip4 ttl 64 len 44 dport 5353 payload[0..4]=deadbeef",
        ),
    ]
}

fn interface(iface: &str, rates: &[(Counter, f64)], top_sources: Vec<SourceRow>) -> InterfaceStats {
    InterfaceStats {
        iface: iface.to_owned(),
        netns: None,
        pin_dir: format!("/sys/fs/bpf/guard/host/{iface}"),
        counters: BTreeMap::new(),
        rates: rates.iter().map(|(c, r)| (c.name(), *r)).collect(),
        top_sources,
        top_new_flow_sources: Vec::new(),
        top_prefixes: Vec::new(),
        bans: Vec::new(),
        verified_sources: 0,
        signatures: Vec::new(),
    }
}

fn status() -> Status {
    Status {
        pid: 42,
        updated: 1000.0,
        netns: None,
        count: 52_000,
        max: 65_536,
        fill: 79.3,
        target: 80.0,
        level: Level::High,
        dry_run: true,
        global: Some(Rate {
            rate: 5000,
            burst: 10_000,
        }),
        source: [Rate {
            rate: 50,
            burst: 100,
        }; 4],
        cookie_ports: Vec::new(),
        open_ports: OpenRanges::default(),
        nft_reinstalled: 0,
        stats: Stats::default(),
        recent: VecDeque::from([LoggedDecision {
            at: 990.0,
            line: "level high: fill 79.3%, lowering the source limits".into(),
        }]),
    }
}

fn view(conntrack: Option<Status>) -> WatchView {
    let rates = [
        (Counter::Packets, 12_000.0),
        (Counter::NewFlows, 900.0),
        (Counter::PassLimits, 650.0),
        (Counter::DropSourceLimit, 200.0),
        (Counter::DropBanned, 50.0),
    ];
    let snapshot = Snapshot {
        interval_secs: 1.0,
        interfaces: vec![interface(
            "eth0",
            &rates,
            vec![
                source("198.18.0.7", 1234, 310.0, Some(28.0)),
                source("198.18.0.9", 55, 12.0, None),
            ],
        )],
        conntrack,
    };
    let mut history = History::default();
    for _ in 0..30 {
        history.record(&snapshot);
    }
    WatchView {
        snapshot,
        history,
        now: 1000.0,
        run: Some(RunStatus {
            pid: 7,
            version: "0.1.0".into(),
            started: 0.0,
            config: None,
            mode: Enforcement::Monitor,
            interfaces: vec![AttachedStatus {
                iface: "eth0".into(),
                netns: None,
                xdp_mode: XdpAttachMode::Skb,
                prog_id: 9,
                egress_prog_id: Some(10),
                cookies_possible: true,
                gone: false,
            }],
        }),
    }
}

/// A view drawing the fixture's signatures, whose drops the rates
/// count too.
fn with_signatures() -> WatchView {
    let mut v = view(Some(status()));
    let eth0 = &mut v.snapshot.interfaces[0];
    eth0.signatures = signatures();
    eth0.rates.insert(Counter::DropSignature.name(), 4200.0);
    v
}

fn screen(view: &WatchView, width: u16, height: u16) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    terminal.draw(|frame| draw(frame, view)).unwrap();
    terminal.backend().buffer().clone()
}

/// The screen's text, one line per row.
fn render(view: &WatchView, width: u16, height: u16) -> String {
    let buffer = screen(view, width, height);
    buffer
        .content()
        .chunks(usize::from(buffer.area.width.max(1)))
        .map(|row| {
            row.iter()
                .map(ratatui::buffer::Cell::symbol)
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn shows_the_gauge_rates_sources_and_history_in_80x24() {
    let text = render(&view(Some(status())), 80, 24);
    assert!(text.contains("guard — eth0"), "{text}");
    assert!(text.contains("monitor: drops nothing · skb XDP"), "{text}");
    assert!(text.contains("level high · dry run"), "{text}");
    assert!(
        text.contains("52000 / 65536 (79.3%) · target 80%"),
        "{text}"
    );
    assert!(text.contains("drops/s 250.0"), "{text}");
    assert!(text.contains("conntrack fill 79.3%"), "{text}");
    assert!(text.contains("packets            12.0k"), "{text}");
    assert!(text.contains("dropped            250.0"), "{text}");
    assert!(text.contains("  source_limit     200.0"), "{text}");
    assert!(
        !text.contains("denylist"),
        "zero rates are left out: {text}"
    );
    assert!(text.contains("198.18.0.7"), "{text}");
    assert!(text.contains("1234"), "{text}");
    assert!(text.contains("28s"), "{text}");
    assert!(text.contains("10s ago: level high: fill 79.3%"), "{text}");
}

#[test]
fn says_when_no_controller_runs() {
    let text = render(&view(None), 80, 24);
    assert!(text.contains("conntrack controller not running"), "{text}");
    assert!(text.contains("conntrack fill —"), "{text}");
    assert!(text.contains("198.18.0.7"), "{text}");
}

#[test]
fn flags_a_stale_status() {
    let mut v = view(Some(status()));
    v.now += 60.0;
    assert!(render(&v, 80, 24).contains("status 60s old"));
}

#[test]
fn small_terminals_do_not_panic() {
    let full = view(Some(status()));
    let empty = WatchView {
        snapshot: Snapshot {
            interval_secs: 0.0,
            interfaces: Vec::new(),
            conntrack: None,
        },
        history: History::default(),
        now: 0.0,
        run: None,
    };
    for v in [&full, &empty] {
        render(v, 20, 5);
        for width in 1..=40 {
            for height in 1..=12 {
                render(v, width, height);
            }
        }
    }
}

#[test]
fn sources_merge_across_interfaces_by_drops() {
    let mut v = view(None);
    v.snapshot.interfaces.push(interface(
        "eth1",
        &[],
        vec![
            source("198.18.0.9", 2000, 1.0, Some(5.0)),
            source("198.18.0.7", 10, 1.0, None),
        ],
    ));
    let tops = top_sources(&v.snapshot);
    let got: Vec<_> = tops
        .iter()
        .map(|t| (t.source, t.dropped, t.banned_secs))
        .collect();
    assert_eq!(
        got,
        [
            ("198.18.0.9", 2055, Some(5.0)),
            ("198.18.0.7", 1244, Some(28.0))
        ]
    );
    assert_eq!(tops[1].new_per_sec, Some(311.0));
}

/// A banned source's row is red, a verified one's green, any other's
/// left plain.
#[test]
fn banned_sources_are_red_and_verified_ones_green() {
    let mut v = view(None);
    let mut verified = source("198.18.0.5", 0, 40.0, None);
    verified.verified_secs = Some(290.0);
    v.snapshot.interfaces[0].top_sources.push(verified);
    let text = render(&v, 80, 24);
    let buffer = screen(&v, 80, 24);
    let fg = |addr: &str| {
        let row = text
            .lines()
            .position(|l| l.contains(addr))
            .unwrap_or_else(|| panic!("no {addr} in\n{text}"));
        let col = text.lines().nth(row).unwrap().find(addr).unwrap();
        let col = text.lines().nth(row).unwrap()[..col].chars().count();
        buffer[(u16::try_from(col).unwrap(), u16::try_from(row).unwrap())].fg
    };
    assert_eq!(fg("198.18.0.7"), Color::Red, "banned");
    assert_eq!(fg("198.18.0.5"), Color::Green, "verified");
    assert_eq!(fg("198.18.0.9"), Color::Reset, "neither");
}

#[test]
fn history_is_bounded_and_skips_snapshots_without_rates() {
    let mut v = view(Some(status()));
    for _ in 0..HISTORY {
        v.history.record(&v.snapshot);
    }
    assert_eq!(v.history.drops.len(), HISTORY);
    assert_eq!(v.history.fill.back(), Some(&Some(793)));
    v.snapshot.interval_secs = 0.0;
    v.history = History::default();
    v.history.record(&v.snapshot);
    assert!(v.history.drops.is_empty());
}

#[test]
fn signatures_show_their_rate_total_action_and_origin() {
    let v = with_signatures();
    let text = render(&v, 80, 24);
    let lines: Vec<&str> = text.lines().collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no {needle:?} in\n{text}"))
    };
    let header = at("│ id  action  hits/s     hits   origin pinned signature");
    assert_eq!(
        lines[header - 1],
        format!("┌signatures{}┐", "─".repeat(68)),
        "{text}"
    );
    // By number; the drop's text is cut at the border, as the screen
    // cuts a long field.
    assert_eq!(
        lines[header + 1],
        "│  1    drop    4.2k     1.2M  learned     no udp ip4 ttl 64 len 44 dport 5353 │",
        "{text}"
    );
    assert_eq!(
        lines[header + 2],
        "│  3 monitor     2.0       12 operator    yes tcp syn win 1024                 │",
        "{text}"
    );
    assert!(text.contains("  signature         4.2k"), "{text}");
    let buffer = screen(&v, 80, 24);
    let fg = |row: usize| buffer[(40, u16::try_from(row).unwrap())].fg;
    assert_eq!(fg(header + 1), Color::Red, "dropping now");
    assert_eq!(fg(header + 2), Color::Yellow, "counting now");
}

#[test]
fn quiet_signatures_are_not_coloured_and_the_first_frame_has_no_rate() {
    let mut v = with_signatures();
    for s in &mut v.snapshot.interfaces[0].signatures {
        s.hits_per_sec = Some(0.0);
    }
    let buffer = screen(&v, 80, 24);
    let text = render(&v, 80, 24);
    let row = text.lines().position(|l| l.contains("│  1 ")).unwrap();
    assert_eq!(buffer[(40, u16::try_from(row).unwrap())].fg, Color::Reset);
    for s in &mut v.snapshot.interfaces[0].signatures {
        s.hits_per_sec = None;
    }
    let text = render(&v, 80, 24);
    assert!(
        text.contains("│  1    drop             1.2M  learned"),
        "{text}"
    );
}

#[test]
fn says_when_no_signatures_are_installed() {
    let text = render(&view(Some(status())), 80, 24);
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[9].starts_with("no signatures installed "),
        "one line under the history: {text}"
    );
    assert!(!text.contains("┌signatures"), "{text}");
}

#[test]
fn narrow_signatures_keep_the_action_and_rate_and_name_interfaces() {
    let mut v = with_signatures();
    let text = render(&v, 50, 24);
    assert!(
        text.contains("│ id  action  hits/s signature"),
        "columns are given up from the right: {text}"
    );
    let mut eth1 = interface("eth1", &[], Vec::new());
    eth1.netns = Some("edge".into());
    eth1.signatures = vec![sig(1, "drop", 7, 1.0, "udp dport 53")];
    v.snapshot.interfaces.push(eth1);
    let text = render(&v, 100, 30);
    assert!(text.contains("│ id     iface  action"), "{text}");
    assert!(text.contains("│  1      eth0    drop"), "{text}");
    assert!(text.contains("│  1 edge/eth1    drop"), "{text}");
}

#[test]
fn signatures_that_do_not_fit_are_counted() {
    let mut v = with_signatures();
    v.snapshot.interfaces[0].signatures =
        (1..=8).map(|id| sig(id, "drop", 1, 1.0, "udp")).collect();
    let text = render(&v, 80, 24);
    assert!(text.contains("3 more┐"), "{text}");
    assert!(text.contains("│  5 "), "{text}");
    assert!(!text.contains("│  6 "), "{text}");
    assert!(
        text.contains("packets            12.0k"),
        "the rates keep room: {text}"
    );
}
