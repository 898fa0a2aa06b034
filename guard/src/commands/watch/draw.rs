//! The `--watch` view, drawn: a pure function of a [`View`].

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use guard_common::Counter;
use ratatui::{
    Frame,
    layout::{self, Constraint, Rect},
    style::{Color, Style, Stylize as _},
    text::{Line, Span},
    widgets::{
        Block, Cell, Gauge, Paragraph, RenderDirection, Row, Sparkline, SparklineBar, Table,
    },
};

use crate::{
    config::Enforcement,
    model::{
        as_f64,
        level::Level,
        stats::{SigRow, Snapshot},
        status::RunStatus,
        xdp::XdpAttachMode,
    },
};

/// Points of history the sparklines keep: two minutes at one a second,
/// wider than an 80-column terminal's half.
const HISTORY: usize = 120;

/// A controller status older than this is flagged: the controller ticks at
/// least every second, so an older one means it stopped publishing.
const STALE_SECS: f64 = 5.0;

/// Width of the rates panel: the longest label ("  global_budget") and a
/// value, inside the borders.
const RATES_WIDTH: u16 = 28;

/// Rows the rates and sources keep however many signatures there are:
/// the rates panel's first four lines.
const BODY_MIN: u16 = 6;

/// Everything one frame shows.
pub(super) struct View {
    pub(super) snapshot: Snapshot,
    pub(super) history: History,
    /// Seconds since the Unix epoch when the snapshot was taken: how old
    /// the controller's status and decisions are.
    pub(super) now: f64,
    /// What the running guard is: whether it drops, how it is attached.
    pub(super) run: Option<RunStatus>,
}

/// The sparklines' data, oldest first, at most [`HISTORY`] points.
#[derive(Default)]
pub(super) struct History {
    /// Drops per second, all reasons and interfaces.
    drops: VecDeque<u64>,
    /// Conntrack fill in tenths of a percent; `None` while no controller
    /// publishes a status.
    fill: VecDeque<Option<u64>>,
}

impl History {
    /// Adds a snapshot's point; one without rates (the first) has none.
    pub(super) fn record(&mut self, snap: &Snapshot) {
        if !has_rates(snap) {
            return;
        }
        if self.drops.len() == HISTORY {
            self.drops.pop_front();
            self.fill.pop_front();
        }
        self.drops.push_back(whole(drop_rate(snap)));
        self.fill.push_back(
            snap.conntrack
                .as_ref()
                .map(|ct| whole(ct.fill.clamp(0.0, 100.0) * 10.0)),
        );
    }
}

fn has_rates(snap: &Snapshot) -> bool {
    snap.interval_secs > 0.0
}

/// A counter's rate summed over the interfaces.
fn rate(snap: &Snapshot, counter: Counter) -> f64 {
    snap.interfaces
        .iter()
        .filter_map(|i| i.rates.get(counter.name()))
        .sum()
}

fn rate_of(snap: &Snapshot, counters: &[Counter]) -> f64 {
    counters.iter().map(|c| rate(snap, *c)).sum()
}

fn drop_rate(snap: &Snapshot) -> f64 {
    rate_of(snap, &Counter::DROP_REASONS)
}

#[expect(
    clippy::cast_sign_loss,
    reason = "clamped to zero first; the cast saturates above"
)]
fn whole(x: f64) -> u64 {
    x.max(0.0).round() as u64
}

/// A rate in at most about six characters: `999.5`, `12.3k`, `4.5M`.
fn compact(x: f64) -> String {
    let (value, unit) = if x >= 1e9 {
        (x / 1e9, "G")
    } else if x >= 1e6 {
        (x / 1e6, "M")
    } else if x >= 1e3 {
        (x / 1e3, "k")
    } else {
        (x, "")
    };
    format!("{value:.1}{unit}")
}

/// A count, exact below a million.
fn count(n: u64) -> String {
    if n < 1_000_000 {
        n.to_string()
    } else {
        compact(as_f64(n))
    }
}

const fn level_color(level: Level) -> Color {
    match level {
        Level::Normal => Color::Green,
        Level::Elevated => Color::Yellow,
        Level::High => Color::LightRed,
        Level::Critical => Color::Red,
    }
}

/// Draws one frame; whatever does not fit the area is cut off.
pub(super) fn draw(frame: &mut Frame, view: &View) {
    let sigs = sig_lines(&view.snapshot);
    let [title, conntrack, history, signatures, body, decision] = layout::Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(3),
        Constraint::Length(5),
        Constraint::Length(sigs_height(&sigs)),
        Constraint::Min(BODY_MIN),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let [rates, sources] =
        layout::Layout::horizontal([Constraint::Length(RATES_WIDTH), Constraint::Min(0)])
            .areas(body);
    draw_title(frame, title, view);
    draw_conntrack(frame, conntrack, view);
    draw_history(frame, history, view);
    draw_signatures(frame, signatures, &sigs, view.snapshot.interfaces.len() > 1);
    draw_rates(frame, rates, &view.snapshot);
    draw_sources(frame, sources, &view.snapshot);
    draw_decision(frame, decision, view);
}

/// "guard — <interfaces>" on the left; the level, dry run and how to quit
/// on the right, or after the interfaces where both do not fit.
fn draw_title(frame: &mut Frame, area: Rect, view: &View) {
    let snap = &view.snapshot;
    let ifaces = snap
        .interfaces
        .iter()
        .map(|i| match &i.netns {
            Some(ns) => format!("{} (netns {ns})", i.iface),
            None => i.iface.clone(),
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut left = Line::from(vec!["guard".bold(), Span::raw(" — "), Span::raw(ifaces)]);
    let mut right = Vec::new();
    if let Some(run) = &view.run {
        right.push(match run.mode {
            Enforcement::Enforce => "enforce".green().bold(),
            Enforcement::Monitor => "monitor: drops nothing".yellow().bold(),
        });
        let mut modes: Vec<String> = run
            .interfaces
            .iter()
            .map(|a| match a.xdp_mode {
                XdpAttachMode::Skb => "skb".to_owned(),
                other => other.to_string(),
            })
            .collect();
        modes.dedup();
        right.push(Span::raw(format!(" · {} XDP  ", modes.join("/"))));
    }
    if let Some(ct) = &snap.conntrack {
        right.push(Span::styled(
            format!("level {}", ct.level),
            Style::new().fg(level_color(ct.level)).bold(),
        ));
        if ct.dry_run {
            right.push(Span::raw(" · "));
            right.push("dry run".yellow().bold());
        }
        right.push(Span::raw("  "));
    }
    right.push("q quits".dim());
    let right = Line::from(right);
    if usize::from(area.width) >= left.width() + 2 + right.width() {
        frame.render_widget(left, area);
        frame.render_widget(right.right_aligned(), area);
    } else {
        left.spans.push(Span::raw("  "));
        left.spans.extend(right.spans);
        frame.render_widget(left, area);
    }
}

/// The fill gauge, labelled with the count, the fill and the target, in the
/// level's color; the kernel's cumulative distress counters underneath.
fn draw_conntrack(frame: &mut Frame, area: Rect, view: &View) {
    let Some(ct) = &view.snapshot.conntrack else {
        let block = Block::bordered().title("conntrack");
        frame.render_widget(
            Paragraph::new("conntrack controller not running")
                .dim()
                .block(block),
            area,
        );
        return;
    };
    let title = match &ct.netns {
        Some(ns) => format!("conntrack (netns {ns})"),
        None => "conntrack".to_owned(),
    };
    let kernel = format!(
        "kernel: drop {} early_drop {} insert_failed {} chaintoolong {}",
        ct.stats.drop, ct.stats.early_drop, ct.stats.insert_failed, ct.stats.chaintoolong
    );
    let mut block = Block::bordered().title(title);
    // Cut from its left, the line would start mid-word: all or nothing.
    if kernel.len() + 2 <= usize::from(area.width) {
        block = block.title_bottom(Line::from(kernel).right_aligned());
    }
    let age = view.now - ct.updated;
    if age > STALE_SECS {
        block = block.title(
            Line::from(format!("status {age:.0}s old"))
                .red()
                .right_aligned(),
        );
    }
    // The gauge asserts a ratio in 0..=1; a fill past 100% (the table
    // shrunk under its entries) or a garbled one must not panic it.
    let ratio = if ct.fill.is_finite() {
        (ct.fill / 100.0).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let label = format!(
        "{} / {} ({:.1}%) · target {:.0}%",
        ct.count, ct.max, ct.fill, ct.target
    );
    let gauge = Gauge::default()
        .block(block)
        .gauge_style(Style::new().fg(level_color(ct.level)))
        .use_unicode(true)
        .ratio(ratio)
        .label(label);
    frame.render_widget(gauge, area);
}

/// Drops per second and conntrack fill, newest on the right.
fn draw_history(frame: &mut Frame, area: Rect, view: &View) {
    let snap = &view.snapshot;
    let [drops, fill] = layout::Layout::horizontal([Constraint::Fill(1); 2]).areas(area);
    let drops_now = if has_rates(snap) {
        compact(drop_rate(snap))
    } else {
        "—".to_owned()
    };
    let fill_now = snap
        .conntrack
        .as_ref()
        .map_or_else(|| "—".to_owned(), |ct| format!("{:.1}%", ct.fill));
    frame.render_widget(
        sparkline(
            &view.history.drops,
            format!("drops/s {drops_now}"),
            Color::Red,
            drops,
        ),
        drops,
    );
    // On an absolute scale: 100% at the top, not the largest point seen.
    frame.render_widget(
        sparkline(
            &view.history.fill,
            format!("conntrack fill {fill_now}"),
            Color::Cyan,
            fill,
        )
        .max(1000),
        fill,
    );
}

/// A bordered sparkline of as many of the newest `points` as fit `area`;
/// only those set the scale.
fn sparkline<'a, T>(
    points: &'a VecDeque<T>,
    title: String,
    color: Color,
    area: Rect,
) -> Sparkline<'a>
where
    &'a T: Into<SparklineBar>,
{
    let fits = usize::from(area.width.saturating_sub(2));
    Sparkline::default()
        .block(Block::bordered().title(title))
        .style(color)
        .direction(RenderDirection::RightToLeft)
        .data(points.iter().rev().take(fits))
}

/// Packets, new flows, passed and dropped per second, the drops by reason.
fn draw_rates(frame: &mut Frame, area: Rect, snap: &Snapshot) {
    let block = Block::bordered().title("per second");
    if !has_rates(snap) {
        frame.render_widget(Paragraph::new("measuring…").dim().block(block), area);
        return;
    }
    let row = |label: &str, value: f64| Line::raw(format!("{label:<15}{:>9}", compact(value)));
    let dropped = drop_rate(snap);
    let mut lines = vec![
        row("packets", rate(snap, Counter::Packets)),
        row("new flows", rate(snap, Counter::NewFlows)),
        row("  passed", rate_of(snap, &Counter::PASS_REASONS)),
        if dropped > 0.0 {
            row("dropped", dropped).red().bold()
        } else {
            row("dropped", dropped)
        },
    ];
    for reason in Counter::DROP_REASONS {
        let value = rate(snap, reason);
        if value > 0.0 {
            let name = reason.name().trim_start_matches("drop_");
            lines.push(row(&format!("  {name}"), value).red());
        }
    }
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// One source over all interfaces.
struct TopSource<'a> {
    source: &'a str,
    new_per_sec: Option<f64>,
    dropped: u64,
    banned_secs: Option<f64>,
}

/// The sources with the most drops, then the most new flows, summed over
/// the interfaces they were seen on.
fn top_sources(snap: &Snapshot) -> Vec<TopSource<'_>> {
    let mut merged: BTreeMap<&str, TopSource<'_>> = BTreeMap::new();
    for i in &snap.interfaces {
        // An interface lists a source under both orders when it is high in
        // both; it counts once.
        let mut seen = BTreeSet::new();
        for row in i.top_sources.iter().chain(&i.top_new_flow_sources) {
            if !seen.insert(row.source.as_str()) {
                continue;
            }
            let top = merged.entry(&row.source).or_insert(TopSource {
                source: &row.source,
                new_per_sec: None,
                dropped: 0,
                banned_secs: None,
            });
            top.dropped += row.dropped;
            top.new_per_sec = match (top.new_per_sec, row.new_flows_per_sec) {
                (Some(a), Some(b)) => Some(a + b),
                (a, b) => a.or(b),
            };
            top.banned_secs = match (top.banned_secs, row.banned_secs) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
    }
    let mut tops: Vec<_> = merged.into_values().collect();
    tops.sort_by(|a, b| {
        b.dropped
            .cmp(&a.dropped)
            .then_with(|| {
                b.new_per_sec
                    .unwrap_or(0.0)
                    .total_cmp(&a.new_per_sec.unwrap_or(0.0))
            })
            .then_with(|| a.source.cmp(b.source))
    });
    tops
}

fn right(text: String) -> Cell<'static> {
    Cell::from(Line::from(text).right_aligned())
}

/// A table's column after the first: `F` fills a cell from a row.
struct Column<F> {
    header: &'static str,
    width: u16,
    cell: F,
}

/// The first columns that fit `room` beside the table's fixed ones: the
/// others are left out rather than squeezed into unreadable slivers, and
/// none is shown without those before it.
fn fitting<'c, F: 'c>(
    columns: impl IntoIterator<Item = &'c Column<F>>,
    mut room: u16,
) -> Vec<&'c Column<F>> {
    columns
        .into_iter()
        .take_while(|c| {
            let fits = room > c.width;
            if fits {
                room -= c.width + 1;
            }
            fits
        })
        .collect()
}

type SourceCell = fn(&TopSource<'_>) -> String;

/// The sources table's, in the order they are given up when it is narrow.
const COLUMNS: [Column<SourceCell>; 3] = [
    Column {
        header: "dropped",
        width: 8,
        cell: |t| count(t.dropped),
    },
    Column {
        header: "new/s",
        width: 7,
        cell: |t| t.new_per_sec.map_or_else(String::new, compact),
    },
    Column {
        header: "ban",
        width: 6,
        cell: |t| {
            t.banned_secs
                .map_or_else(String::new, |s| format!("{s:.0}s"))
        },
    },
];

/// Room an address gets before other columns are shown (an IPv4 one fits).
const SOURCE_WIDTH: u16 = 15;

/// The top sources, with the columns that fit.
fn draw_sources(frame: &mut Frame, area: Rect, snap: &Snapshot) {
    let columns = fitting(&COLUMNS, area.width.saturating_sub(2 + SOURCE_WIDTH));
    let rows = top_sources(snap).into_iter().map(|t| {
        let cells = std::iter::once(Cell::from(t.source.to_owned()))
            .chain(columns.iter().map(|c| right((c.cell)(&t))));
        let row = Row::new(cells);
        if t.banned_secs.is_some() {
            row.red()
        } else {
            row
        }
    });
    let header = Row::new(
        std::iter::once(Cell::from("source"))
            .chain(columns.iter().map(|c| right(c.header.to_owned()))),
    )
    .bold();
    let widths = std::iter::once(Constraint::Fill(1))
        .chain(columns.iter().map(|c| Constraint::Length(c.width)));
    let table = Table::new(rows, widths)
        .header(header)
        .block(Block::bordered().title("top sources"));
    frame.render_widget(table, area);
}

/// One installed signature on one interface.
struct SigLine<'a> {
    /// `iface` or `netns/iface`, as `guard sigs list` names it.
    at: String,
    row: &'a SigRow,
}

/// Every interface's signatures, interface by interface, by number: an
/// order that holds still from one frame to the next.
fn sig_lines(snap: &Snapshot) -> Vec<SigLine<'_>> {
    snap.interfaces
        .iter()
        .flat_map(|i| {
            let at = i
                .netns
                .as_ref()
                .map_or_else(|| i.iface.clone(), |ns| format!("{ns}/{}", i.iface));
            let mut rows: Vec<_> = i.signatures.iter().collect();
            rows.sort_by_key(|r| r.id);
            rows.into_iter().map(move |row| SigLine {
                at: at.clone(),
                row,
            })
        })
        .collect()
}

/// Rows the signatures take: their table (borders and header around a row
/// each), or the one line saying there are none.
fn sigs_height(sigs: &[SigLine<'_>]) -> u16 {
    if sigs.is_empty() {
        1
    } else {
        u16::try_from(sigs.len()).map_or(u16::MAX, |n| n.saturating_add(3))
    }
}

type SigCell = fn(&SigLine<'_>) -> String;

/// The signatures table's after the number, in the order they are given up
/// when it is narrow.
const SIG_COLUMNS: [Column<SigCell>; 5] = [
    Column {
        header: "action",
        width: 7,
        cell: |s| s.row.action.to_owned(),
    },
    Column {
        header: "hits/s",
        width: 7,
        cell: |s| s.row.hits_per_sec.map_or_else(String::new, compact),
    },
    Column {
        header: "hits",
        width: 8,
        cell: |s| count(s.row.hits),
    },
    Column {
        header: "origin",
        width: 8,
        cell: |s| s.row.origin.to_owned(),
    },
    Column {
        header: "pinned",
        width: 6,
        cell: |s| if s.row.pinned { "yes" } else { "no" }.to_owned(),
    },
];

/// Room the signature's text gets before other columns are shown.
const SIG_TEXT_WIDTH: u16 = 20;

/// Width of the signature number's column.
const SIG_ID_WIDTH: u16 = 3;

/// The installed signatures, one row each on every interface (the
/// interface's name only when there are several), in red while one drops
/// packets and in yellow while a monitoring one matches.
fn draw_signatures(frame: &mut Frame, area: Rect, sigs: &[SigLine<'_>], several: bool) {
    if sigs.is_empty() {
        frame.render_widget(Paragraph::new("no signatures installed").dim(), area);
        return;
    }
    let iface = Column::<SigCell> {
        header: "iface",
        width: sigs
            .iter()
            .map(|s| u16::try_from(s.at.len()).unwrap_or(u16::MAX))
            .max()
            .unwrap_or(0),
        cell: |s| s.at.clone(),
    };
    let columns = fitting(
        several.then_some(&iface).into_iter().chain(&SIG_COLUMNS),
        area.width
            .saturating_sub(2 + SIG_ID_WIDTH + 1 + SIG_TEXT_WIDTH),
    );
    let rows = sigs.iter().map(|s| {
        let cells = std::iter::once(right(s.row.id.to_string()))
            .chain(columns.iter().map(|c| right((c.cell)(s))))
            .chain(std::iter::once(Cell::from(s.row.signature.clone())));
        let row = Row::new(cells);
        match s.row.hits_per_sec {
            Some(rate) if rate > 0.0 && s.row.action == "monitor" => row.yellow(),
            Some(rate) if rate > 0.0 => row.red(),
            _ => row,
        }
    });
    let header = Row::new(
        std::iter::once(right("id".to_owned()))
            .chain(columns.iter().map(|c| right(c.header.to_owned())))
            .chain(std::iter::once(Cell::from("signature"))),
    )
    .bold();
    let widths = std::iter::once(Constraint::Length(SIG_ID_WIDTH))
        .chain(columns.iter().map(|c| Constraint::Length(c.width)))
        .chain(std::iter::once(Constraint::Fill(1)));
    let mut block = Block::bordered().title("signatures");
    // Rows cut off at the bottom are counted, so none goes unseen.
    let hidden = sigs
        .len()
        .saturating_sub(usize::from(area.height.saturating_sub(3)));
    if hidden > 0 {
        block = block.title(Line::from(format!("{hidden} more")).right_aligned());
    }
    frame.render_widget(Table::new(rows, widths).header(header).block(block), area);
}

/// The controller's last decision, cut at the width.
fn draw_decision(frame: &mut Frame, area: Rect, view: &View) {
    let Some(ct) = &view.snapshot.conntrack else {
        return;
    };
    let text = ct.recent.back().map_or_else(
        || "no controller decisions yet".to_owned(),
        |d| format!("{:.0}s ago: {}", (view.now - d.at).max(0.0), d.line),
    );
    frame.render_widget(Paragraph::new(text).dim(), area);
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;

    use ratatui::{Terminal, backend::TestBackend, buffer::Buffer};

    use super::*;
    use crate::{
        config::Rate,
        model::{
            conntrack::Stats,
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

    fn interface(
        iface: &str,
        rates: &[(Counter, f64)],
        top_sources: Vec<SourceRow>,
    ) -> InterfaceStats {
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
            }; 3],
            cookie_ports: Vec::new(),
            nft_reinstalled: 0,
            stats: Stats::default(),
            recent: VecDeque::from([LoggedDecision {
                at: 990.0,
                line: "level high: fill 79.3%, lowering the source limits".into(),
            }]),
        }
    }

    fn view(conntrack: Option<Status>) -> View {
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
        View {
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
                    cookies_possible: true,
                }],
            }),
        }
    }

    /// A view drawing the fixture's signatures, whose drops the rates
    /// count too.
    fn with_signatures() -> View {
        let mut v = view(Some(status()));
        let eth0 = &mut v.snapshot.interfaces[0];
        eth0.signatures = signatures();
        eth0.rates.insert(Counter::DropSignature.name(), 4200.0);
        v
    }

    fn screen(view: &View, width: u16, height: u16) -> Buffer {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|frame| draw(frame, view)).unwrap();
        terminal.backend().buffer().clone()
    }

    /// The screen's text, one line per row.
    fn render(view: &View, width: u16, height: u16) -> String {
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
        let empty = View {
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
}
