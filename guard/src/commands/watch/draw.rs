//! The `--watch` view, drawn: a pure function of a [`WatchView`].

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

/// Width of the rates panel: the longest label ("  cookie_invalid", 16
/// characters, one past the others' column of 15) and a value (9), inside
/// the borders.
const RATES_WIDTH: u16 = 28;

/// Rows the rates and sources keep however many signatures there are:
/// the rates panel's first four lines.
const BODY_MIN: u16 = 6;

/// Everything one frame shows.
pub(super) struct WatchView {
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
pub(super) fn draw(frame: &mut Frame, view: &WatchView) {
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
fn draw_title(frame: &mut Frame, area: Rect, view: &WatchView) {
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
fn draw_conntrack(frame: &mut Frame, area: Rect, view: &WatchView) {
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
fn draw_history(frame: &mut Frame, area: Rect, view: &WatchView) {
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
    /// Verified on some interface: it skips the global budget there.
    verified: bool,
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
                verified: false,
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
            top.verified |= row.verified_secs.is_some();
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
        } else if t.verified {
            row.green()
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
fn draw_decision(frame: &mut Frame, area: Rect, view: &WatchView) {
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
mod tests;
