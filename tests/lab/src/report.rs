//! The lab's report: a [`Summary`] of each [`Run`], a Markdown table per
//! scenario with its plots, the raw runs as JSON (so a report can be
//! rebuilt or re-plotted without re-running) and `summary.json`, the same
//! numbers as the tables for scripts and tests that should not parse
//! Markdown.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Serialize;
use serde_json::Value;

use crate::defence::Defence;
use crate::plot;
use crate::sample::{Run, Second, count_f64};
use crate::traffic::LEGIT_TIMEOUT;

/// Fill, in percent, at which the table counts as full: under a flood the
/// last few entries come and go as they are reaped, and a reading once a
/// second can miss the moment it was at 100 %.
pub const FULL_PCT: f64 = 99.0;

/// The numbers of one run that go into the report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    pub defence: String,
    /// Highest conntrack fill seen, percent.
    pub peak_fill: f64,
    /// Seconds from the attack's start until the table was full (fill at
    /// [`FULL_PCT`] or the kernel's `drop` counter rising); `None` if it
    /// never was.
    pub time_to_full: Option<f64>,
    /// New connections the kernel dropped because the table was full.
    pub table_full_drops: u64,
    pub early_drops: u64,
    /// The TCP users' connections, and the share that succeeded, percent
    /// (`None` without attempts).
    pub legit_attempts: u64,
    pub legit_success: Option<f64>,
    /// The DNS-like users' queries, and the share answered, percent.
    pub legit_udp_attempts: u64,
    pub legit_udp_success: Option<f64>,
    /// Connect latency of successful legitimate connections,
    /// nearest-rank percentiles, milliseconds.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub attack_sent: u64,
    /// guard's XDP drops (would-be drops in monitor mode); `None` without
    /// guard.
    pub xdp_dropped: Option<u64>,
    pub cookies_sent: Option<u64>,
    /// Softirq CPU seconds over the whole run, all CPUs.
    pub softirq_secs: f64,
    /// Softirq CPU milliseconds per million attack packets: the receive
    /// path's cost of the attack, comparable across runs of different
    /// lengths; `None` when nothing was sent.
    pub softirq_ms_per_mpkt: Option<f64>,
    /// guard's CPU seconds over the whole run; `None` without guard.
    pub guard_cpu_secs: Option<f64>,
    /// Packets guard's signatures dropped; `None` without guard.
    pub sig_dropped: Option<u64>,
    /// Seconds from the attack's start to the first reading with a learned
    /// signature installed; `None` if there was none.
    pub time_to_sig: Option<f64>,
    /// The users' failed requests a learned signature may have caused: an
    /// upper bound on its false positives ([`sig_legend`]); `None` without
    /// guard.
    pub failed_under_sig: Option<u64>,
}

/// One attack scenario and its runs against every defence.
#[derive(Clone, Debug, PartialEq)]
pub struct Section {
    /// File-name safe (`syn-flood`): names this section's JSON and plots.
    pub name: String,
    pub title: String,
    pub description: String,
    pub runs: Vec<Run>,
}

/// The whole report.
#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    /// Markdown paragraph(s) under the report's title: machine, kernel,
    /// generator, date, settings.
    pub header: String,
    pub sections: Vec<Section>,
}

/// Nearest-rank percentile `p` (0 to 100) of an ascending slice; `None`
/// when it is empty.
#[must_use]
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let n = count_f64(sorted.len() as u64);
    // The rank is the smallest k with k >= p·n/100; counting up to it
    // avoids casting a float back to an index. Rank 0 (p = 0) is rank 1.
    sorted
        .iter()
        .zip(1_u64..)
        .find(|&(_, k)| count_f64(k) >= p * n / 100.0)
        .map(|(&v, _)| v)
        .or_else(|| sorted.last().copied())
}

/// Summarises one run for the report.
#[must_use]
pub fn summarize(run: &Run) -> Summary {
    let samples = &run.samples;
    let last = samples.last();

    let peak_fill = samples.iter().map(Second::fill).fold(0.0, f64::max);

    // Full is the first second at which the table reached FULL_PCT or the
    // kernel started refusing new entries, whichever shows first: with
    // fast reaping the count can hover just below the maximum while
    // connections are already being dropped.
    let mut prev_drop = 0;
    let time_to_full = samples.iter().find_map(|s| {
        let dropping = s.drop > prev_drop;
        prev_drop = s.drop;
        (s.t >= run.attack_start && (s.fill() >= FULL_PCT || dropping))
            .then_some(s.t - run.attack_start)
    });

    let (legit_attempts, legit_success) =
        attempts_and_success(samples, |s| (s.legit_ok, s.legit_failed));
    let (legit_udp_attempts, legit_udp_success) =
        attempts_and_success(samples, |s| (s.legit_udp_ok, s.legit_udp_failed));

    let mut connect_ms: Vec<f64> = samples
        .iter()
        .flat_map(|s| s.legit_connect_ms.iter().copied())
        .collect();
    connect_ms.sort_by(f64::total_cmp);

    let attack_sent = last.map_or(0, |s| s.attack_sent);
    // Folded from +0.0: `sum` of no floats is -0.0, which prints as
    // "-0.00".
    let softirq_secs = samples.iter().fold(0.0, |total, s| total + s.softirq_secs);
    let guard_cpu_secs = samples
        .iter()
        .filter_map(|s| s.guard_cpu_secs)
        .reduce(|a, b| a + b);

    Summary {
        defence: run.defence.clone(),
        peak_fill,
        time_to_full,
        table_full_drops: last.map_or(0, |s| s.drop),
        early_drops: last.map_or(0, |s| s.early_drop),
        legit_attempts,
        legit_success,
        legit_udp_attempts,
        legit_udp_success,
        p50_ms: percentile(&connect_ms, 50.0),
        p99_ms: percentile(&connect_ms, 99.0),
        attack_sent,
        xdp_dropped: last.and_then(|s| s.xdp_dropped),
        cookies_sent: last.and_then(|s| s.xdp_cookies),
        softirq_secs,
        softirq_ms_per_mpkt: (attack_sent > 0)
            .then(|| softirq_secs * 1000.0 / (count_f64(attack_sent) / 1e6)),
        guard_cpu_secs,
        sig_dropped: last.and_then(|s| s.xdp_sig_dropped),
        time_to_sig: samples
            .iter()
            .find(|s| s.t >= run.attack_start && s.sigs.is_some_and(|n| n > 0))
            .map(|s| s.t - run.attack_start),
        failed_under_sig: failed_under_sig(samples),
    }
}

/// Attempts over all `samples`, and the share that succeeded in percent
/// (`None` without attempts); `outcomes` gives a second's (ok, failed).
fn attempts_and_success(
    samples: &[Second],
    outcomes: impl Fn(&Second) -> (u32, u32),
) -> (u64, Option<f64>) {
    let (ok, failed) = samples
        .iter()
        .map(outcomes)
        .fold((0, 0), |(ok, failed), (o, f)| {
            (ok + u64::from(o), failed + u64::from(f))
        });
    let attempts = ok + failed;
    (
        attempts,
        (attempts > 0).then(|| count_f64(ok) * 100.0 / count_f64(attempts)),
    )
}

/// The users' failed requests, TCP and DNS-like, in the seconds
/// [`sig_legend`] says; `None` without guard.
fn failed_under_sig(samples: &[Second]) -> Option<u64> {
    if samples.iter().all(|s| s.sigs.is_none()) {
        return None;
    }
    let installed: Vec<bool> = samples
        .iter()
        .map(|s| s.sigs.is_some_and(|n| n > 0))
        .collect();
    // The readings at a second's start and end, and those of the
    // LEGIT_TIMEOUT seconds before.
    let reach = usize::try_from(LEGIT_TIMEOUT.as_secs()).unwrap_or(usize::MAX) + 1;
    Some(
        samples
            .iter()
            .enumerate()
            .filter(|(i, _)| installed[i.saturating_sub(reach)..=*i].contains(&true))
            .map(|(_, s)| u64::from(s.legit_failed) + u64::from(s.legit_udp_failed))
            .sum(),
    )
}

/// Placeholder for a value a run does not have.
const ABSENT: &str = "–";

/// `value` with `decimals` decimals, or [`ABSENT`].
fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| ABSENT.to_owned(), |v| format!("{v:.decimals$}"))
}

/// One scenario's part of `report.md`: title, description, a table with
/// one row per run, its two plots and the runs' notes.
#[must_use]
pub fn markdown(section: &Section) -> String {
    let mut out = format!(
        "### {}\n\n{}\n\n\
         | defence | peak fill % | time to full | table-full drops | early drops \
         | legit TCP % | legit UDP % | p50 / p99 connect ms | attack packets \
         | softirq s (ms per M pkts) | guard CPU s | SYN cookies \
         | sig drops | time to sig | user failures under a sig |\n\
         |---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
        section.title.trim(),
        section.description.trim(),
    );
    let summaries: Vec<Summary> = section.runs.iter().map(summarize).collect();
    for s in &summaries {
        let time_to_full = s
            .time_to_full
            .map_or_else(|| "never".to_owned(), |t| format!("{t:.1} s"));
        let latency = match (s.p50_ms, s.p99_ms) {
            (Some(p50), Some(p99)) => format!("{p50:.2} / {p99:.1}"),
            _ => ABSENT.to_owned(),
        };
        let count = |n: Option<u64>| n.map_or_else(|| ABSENT.to_owned(), |n| n.to_string());
        // Without guard there is no signature to wait for.
        let time_to_sig = match (s.sig_dropped, s.time_to_sig) {
            (None, _) => ABSENT.to_owned(),
            (Some(_), None) => "never".to_owned(),
            (Some(_), Some(t)) => format!("{t:.1} s"),
        };
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "| {} | {:.1} | {time_to_full} | {} | {} | {} | {} | {latency} | {} | {:.2} ({}) | {} | {} | {} | {time_to_sig} | {} |",
            s.defence,
            s.peak_fill,
            s.table_full_drops,
            s.early_drops,
            opt(s.legit_success, 1),
            opt(s.legit_udp_success, 1),
            s.attack_sent,
            s.softirq_secs,
            opt(s.softirq_ms_per_mpkt, 1),
            opt(s.guard_cpu_secs, 2),
            count(s.cookies_sent.filter(|n| *n > 0)),
            count(s.sig_dropped),
            count(s.failed_under_sig),
        );
    }
    if let Some(line) = above_floor(&summaries) {
        let _ = write!(out, "\n{line}\n");
    }
    let name = &section.name;
    let _ = write!(
        out,
        "\n![conntrack fill]({name}-fill.svg)\n\n![legitimate success]({name}-legit.svg)\n"
    );
    let notes: Vec<(&str, &str)> = section
        .runs
        .iter()
        .flat_map(|r| r.notes.iter().map(|n| (r.defence.as_str(), n.as_str())))
        .collect();
    if !notes.is_empty() {
        out.push('\n');
        for (defence, note) in notes {
            let _ = writeln!(out, "- {defence}: {note}");
        }
    }
    out
}

/// Each run's softirq per million attack frames above the oracle's, when
/// the section has an oracle run: what each defence itself costs a frame.
fn above_floor(summaries: &[Summary]) -> Option<String> {
    let floor = summaries
        .iter()
        .find(|s| s.defence == Defence::Oracle.name())?
        .softirq_ms_per_mpkt?;
    let rest: Vec<String> = summaries
        .iter()
        .filter(|s| s.defence != Defence::Oracle.name())
        .filter_map(|s| {
            let ms = s.softirq_ms_per_mpkt?;
            Some(format!("{} {:.1}", s.defence, ms - floor))
        })
        .collect();
    Some(format!(
        "Softirq ms per M attack packets above the oracle's floor of {floor:.1} (the generator, the link and the least XDP can do, in this run): {}.",
        rest.join(", ")
    ))
}

/// What the signature columns count, under the report's header.
fn sig_legend() -> String {
    format!(
        "Sig drops: packets guard's signatures dropped, the flood's but for false positives. \
         Time to sig: from the attack's start to the first reading (once a second) with a learned \
         signature installed. User failures under a sig: the users' failed TCP connections and \
         queries in the seconds a learned signature was read installed, at the second's start or \
         end, and the {} s after, when a request whose packets it dropped would have timed out; an \
         upper bound on the signatures' false positives, since the flood makes requests fail too.",
        LEGIT_TIMEOUT.as_secs()
    )
}

/// Every run's [`Summary`], by section name.
#[must_use]
pub fn summary_json(report: &Report) -> Value {
    let sections = report
        .sections
        .iter()
        .map(|section| {
            let summaries = section
                .runs
                .iter()
                .map(|run| {
                    serde_json::to_value(summarize(run))
                        .expect("a Summary has only strings, numbers and options")
                })
                .collect();
            (section.name.clone(), Value::Array(summaries))
        })
        .collect();
    Value::Object(sections)
}

/// Writes the report into `dir` (created if missing): `report.md`,
/// `summary.json`, and per section `NAME.json` (its runs), `NAME-fill.svg`
/// and `NAME-legit.svg`. Returns every path written.
pub fn write(dir: &Path, report: &Report) -> anyhow::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut written = Vec::new();
    let mut put = |name: &str, contents: &str| -> anyhow::Result<()> {
        let path = dir.join(name);
        fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
        Ok(())
    };

    let mut md = format!(
        "# guard attack lab\n\n{}\n\n{}\n",
        report.header.trim(),
        sig_legend()
    );
    for section in &report.sections {
        md.push('\n');
        md.push_str(&markdown(section));
    }
    put("report.md", &md)?;

    let summary =
        serde_json::to_string_pretty(&summary_json(report)).context("serialising summary.json")?;
    put("summary.json", &(summary + "\n"))?;

    for section in &report.sections {
        let name = format!("{}.json", section.name);
        let runs = serde_json::to_string_pretty(&section.runs)
            .with_context(|| format!("serialising {name}"))?;
        put(&name, &(runs + "\n"))?;
    }

    for section in &report.sections {
        let fill = dir.join(format!("{}-fill.svg", section.name));
        plot::fill(&fill, &section.title, &section.runs)?;
        written.push(fill);
        let legit = dir.join(format!("{}-legit.svg", section.name));
        plot::legit(&legit, &section.title, &section.runs)?;
        written.push(legit);
    }
    Ok(written)
}

#[cfg(test)]
#[expect(
    clippy::float_cmp,
    reason = "the expected values are small integers and binary fractions, computed exactly"
)]
mod tests {
    use super::*;

    /// A second with a table of 100 entries, so `count` is the fill.
    fn second(t: f64, count: u64, drop: u64) -> Second {
        Second {
            t,
            count,
            max: 100,
            drop,
            ..Second::default()
        }
    }

    fn run(defence: &str, samples: Vec<Second>) -> Run {
        Run {
            scenario: "syn-flood".to_owned(),
            defence: defence.to_owned(),
            attack_start: 2.0,
            attack_end: 4.0,
            table: 100,
            samples,
            notes: Vec::new(),
            decisions_by_minute: Vec::new(),
        }
    }

    #[test]
    fn time_to_full_from_fill() {
        let r = run(
            "defaults",
            vec![
                second(1.0, 0, 0),
                second(2.0, 10, 0),
                second(3.0, 60, 0),
                second(4.5, 99, 0),
                second(5.0, 100, 0),
            ],
        );
        let s = summarize(&r);
        assert_eq!(s.time_to_full, Some(2.5));
        assert_eq!(s.peak_fill, 100.0);
        assert_eq!(s.table_full_drops, 0);
    }

    #[test]
    fn time_to_full_from_drops_first() {
        let r = run(
            "static",
            vec![
                second(1.0, 0, 0),
                second(2.0, 50, 0),
                second(3.0, 90, 7),
                second(4.0, 99, 20),
            ],
        );
        let s = summarize(&r);
        assert_eq!(s.time_to_full, Some(1.0));
        assert_eq!(s.table_full_drops, 20);
    }

    #[test]
    fn drops_before_the_attack_do_not_count() {
        // The drop seen at t = 1 is before the attack; the first sample
        // inside it is compared with its own predecessor.
        let r = run("defaults", vec![second(1.0, 0, 3), second(2.0, 0, 3)]);
        assert_eq!(summarize(&r).time_to_full, None);
        // A first sample inside the attack compares with zero.
        let mut r = run("defaults", vec![second(2.0, 0, 1)]);
        r.attack_start = 0.0;
        assert_eq!(summarize(&r).time_to_full, Some(2.0));
    }

    #[test]
    fn never_full() {
        let r = run(
            "guard-enforce",
            vec![second(1.0, 1, 0), second(3.0, 5, 0), second(5.0, 2, 0)],
        );
        let s = summarize(&r);
        assert_eq!(s.time_to_full, None);
        assert_eq!(s.peak_fill, 5.0);
    }

    #[test]
    fn empty_run() {
        let s = summarize(&run("defaults", Vec::new()));
        assert_eq!(s.peak_fill, 0.0);
        assert_eq!(s.time_to_full, None);
        assert_eq!(s.legit_attempts, 0);
        assert_eq!(s.legit_success, None);
        assert_eq!(s.p50_ms, None);
        assert_eq!(s.xdp_dropped, None);
        assert_eq!(s.softirq_ms_per_mpkt, None);
        assert_eq!(s.guard_cpu_secs, None);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(5.0));
        assert_eq!(percentile(&v, 90.0), Some(9.0));
        assert_eq!(percentile(&v, 91.0), Some(10.0));
        assert_eq!(percentile(&v, 99.0), Some(10.0));
        assert_eq!(percentile(&v, 100.0), Some(10.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&hundred, 99.0), Some(99.0));
    }

    #[test]
    fn legit_and_latency() {
        let mut a = second(1.0, 0, 0);
        a.legit_ok = 3;
        a.legit_failed = 1;
        a.legit_connect_ms = vec![4.0, 1.0, 3.0];
        let mut b = second(2.0, 0, 0);
        b.legit_ok = 0;
        b.legit_failed = 4;
        let mut c = second(3.0, 0, 0);
        c.legit_ok = 1;
        c.legit_connect_ms = vec![2.0];
        let s = summarize(&run("defaults", vec![a, b, c]));
        assert_eq!(s.legit_attempts, 9);
        assert_eq!(s.legit_success, Some(4.0 * 100.0 / 9.0));
        assert_eq!(s.p50_ms, Some(2.0));
        assert_eq!(s.p99_ms, Some(4.0));
    }

    #[test]
    fn no_legit_attempts() {
        let s = summarize(&run("defaults", vec![second(1.0, 0, 0)]));
        assert_eq!(s.legit_attempts, 0);
        assert_eq!(s.legit_success, None);
        assert_eq!((s.p50_ms, s.p99_ms), (None, None));
    }

    #[test]
    fn guard_cpu_and_xdp() {
        let without = summarize(&run("static", vec![second(1.0, 0, 0)]));
        assert_eq!(without.guard_cpu_secs, None);
        assert_eq!(without.xdp_dropped, None);

        let mut a = second(1.0, 0, 0);
        a.guard_cpu_secs = Some(0.25);
        a.xdp_dropped = Some(10);
        // A second whose CPU reading is missing does not make it None.
        let mut b = second(2.0, 0, 0);
        b.xdp_dropped = Some(30);
        let mut c = second(3.0, 0, 0);
        c.guard_cpu_secs = Some(0.5);
        c.xdp_dropped = Some(50);
        let with = summarize(&run("guard-enforce", vec![a, b, c]));
        assert_eq!(with.guard_cpu_secs, Some(0.75));
        assert_eq!(with.xdp_dropped, Some(50));
    }

    #[test]
    fn udp_users_apart_from_tcp() {
        let mut a = second(1.0, 0, 0);
        a.legit_ok = 2;
        a.legit_udp_ok = 3;
        a.legit_udp_failed = 1;
        let s = summarize(&run("defaults", vec![a]));
        assert_eq!((s.legit_attempts, s.legit_success), (2, Some(100.0)));
        assert_eq!((s.legit_udp_attempts, s.legit_udp_success), (4, Some(75.0)));
    }

    #[test]
    fn signatures_their_time_and_the_failures_under_them() {
        let without = summarize(&run("static", vec![second(1.0, 0, 0)]));
        assert_eq!(
            (
                without.sig_dropped,
                without.time_to_sig,
                without.failed_under_sig
            ),
            (None, None, None)
        );
        // The attack starts at 2; a signature is read at 4 and 5, gone at
        // 6. Every second fails one TCP and one DNS-like request.
        let samples: Vec<Second> = (1..=12_u32)
            .map(|t| {
                let mut s = second(f64::from(t), 0, 0);
                s.legit_failed = 1;
                s.legit_udp_failed = 1;
                s.sigs = Some(u32::from((4..=5).contains(&t)));
                s.xdp_sig_dropped = Some(if t < 4 { 0 } else { 700 });
                s
            })
            .collect();
        let s = summarize(&run("guard-defaults", samples.clone()));
        assert_eq!(s.sig_dropped, Some(700));
        assert_eq!(s.time_to_sig, Some(2.0));
        // Seconds 4 to 9 count: read at 4 and 5, and the 3 s timeout
        // after the second that ended at 6, whose start had one.
        assert_eq!(s.failed_under_sig, Some(12));
        let none: Vec<Second> = samples
            .into_iter()
            .map(|mut s| {
                s.sigs = Some(0);
                s
            })
            .collect();
        let s = summarize(&run("guard-no-fingerprints", none));
        assert_eq!((s.time_to_sig, s.failed_under_sig), (None, Some(0)));
    }

    #[test]
    fn softirq_per_million_packets() {
        let mut a = second(1.0, 0, 0);
        a.softirq_secs = 0.5;
        a.attack_sent = 1_000_000;
        let mut b = second(2.0, 0, 0);
        b.softirq_secs = 1.5;
        b.attack_sent = 4_000_000;
        b.early_drop = 12;
        let s = summarize(&run("defaults", vec![a, b]));
        assert_eq!(s.softirq_secs, 2.0);
        assert_eq!(s.attack_sent, 4_000_000);
        assert_eq!(s.softirq_ms_per_mpkt, Some(500.0));
        assert_eq!(s.early_drops, 12);

        let mut idle = second(1.0, 0, 0);
        idle.softirq_secs = 0.5;
        let s = summarize(&run("defaults", vec![idle]));
        assert_eq!(s.softirq_ms_per_mpkt, None);
    }

    /// A section with a run that fills, one that does not and has guard,
    /// and one with notes and no samples.
    fn section() -> Section {
        let mut full = second(3.0, 100, 5);
        full.legit_ok = 1;
        full.legit_failed = 3;
        full.legit_udp_ok = 2;
        full.legit_udp_failed = 2;
        full.legit_connect_ms = vec![1.5];
        full.attack_sent = 2_000_000;
        full.early_drop = 9;
        full.softirq_secs = 1.0;
        let defaults = run(
            "defaults",
            vec![second(1.0, 0, 0), second(2.0, 40, 0), full],
        );

        let mut calm = second(3.0, 12, 0);
        calm.legit_ok = 4;
        calm.legit_connect_ms = vec![0.25, 0.5, 0.75, 2.0];
        calm.attack_sent = 2_000_000;
        calm.xdp_dropped = Some(1_999_000);
        calm.xdp_sig_dropped = Some(1_500_000);
        calm.sigs = Some(1);
        calm.legit_udp_failed = 1;
        calm.guard_cpu_secs = Some(0.25);
        let mut lead = second(1.0, 0, 0);
        lead.sigs = Some(0);
        let guard = run("guard-enforce", vec![lead, calm]);

        let mut broken = run("nftables", Vec::new());
        broken.notes = vec!["nft not installed".to_owned()];

        Section {
            name: "syn-flood".to_owned(),
            title: "SYN flood".to_owned(),
            description: "Spoofed SYNs at line rate.".to_owned(),
            runs: vec![defaults, guard, broken],
        }
    }

    #[test]
    fn markdown_table() {
        let md = markdown(&section());
        assert!(md.starts_with("### SYN flood\n\nSpoofed SYNs at line rate.\n\n"));
        assert!(md.contains(
            "| defence | peak fill % | time to full | table-full drops | early drops \
             | legit TCP % | legit UDP % | p50 / p99 connect ms | attack packets \
             | softirq s (ms per M pkts) | guard CPU s | SYN cookies \
             | sig drops | time to sig | user failures under a sig |"
        ));
        assert!(md.contains(
            "| defaults | 100.0 | 1.0 s | 5 | 9 | 25.0 | 50.0 | 1.50 / 1.5 | 2000000 | 1.00 (500.0) | – | – | – | – | – |"
        ));
        assert!(md.contains(
            "| guard-enforce | 12.0 | never | 0 | 0 | 100.0 | 0.0 | 0.50 / 2.0 | 2000000 | 0.00 (0.0) | 0.25 | – | 1500000 | 1.0 s | 1 |"
        ));
        assert!(md.contains(
            "| nftables | 0.0 | never | 0 | 0 | – | – | – | 0 | 0.00 (–) | – | – | – | – | – |"
        ));
        let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| ")).collect();
        assert_eq!(rows.len(), 4, "header and one row per run:\n{md}");
        assert!(md.contains("![conntrack fill](syn-flood-fill.svg)"));
        assert!(md.contains("![legitimate success](syn-flood-legit.svg)"));
        assert!(md.ends_with("\n- nftables: nft not installed\n"));
    }

    #[test]
    fn markdown_with_the_oracle_floor() {
        let mut s = section();
        assert!(!markdown(&s).contains("oracle"));
        let mut floor = second(3.0, 0, 0);
        floor.attack_sent = 4_000_000;
        floor.softirq_secs = 0.8;
        s.runs.push(run("oracle", vec![floor]));
        assert!(markdown(&s).contains(
            "\nSoftirq ms per M attack packets above the oracle's floor of 200.0 (the generator, the link and the least XDP can do, in this run): defaults 300.0, guard-enforce -200.0.\n"
        ));
    }

    #[test]
    fn markdown_without_notes() {
        let mut s = section();
        s.runs.truncate(2);
        assert!(!markdown(&s).contains("\n- "));
    }

    #[test]
    fn writes_everything() {
        let dir = std::env::temp_dir().join(format!(
            "guard-lab-report-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let section = section();
        let report = Report {
            header: "Machine: test.".to_owned(),
            sections: vec![section.clone()],
        };
        let written = write(&dir, &report).unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "report.md",
                "summary.json",
                "syn-flood.json",
                "syn-flood-fill.svg",
                "syn-flood-legit.svg"
            ]
        );

        let md = fs::read_to_string(dir.join("report.md")).unwrap();
        assert!(md.starts_with("# guard attack lab\n\nMachine: test.\n\nSig drops: "));
        assert!(md.contains("upper bound"));
        assert!(md.contains("too.\n\n### SYN flood\n"));
        assert!(md.contains(&markdown(&section)));

        let summary: Value =
            serde_json::from_str(&fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
        assert_eq!(summary["syn-flood"][0]["defence"], "defaults");
        assert_eq!(summary["syn-flood"][0]["table_full_drops"], 5);
        assert_eq!(summary["syn-flood"][1]["time_to_full"], Value::Null);
        assert_eq!(summary, summary_json(&report));

        let runs: Vec<Run> =
            serde_json::from_str(&fs::read_to_string(dir.join("syn-flood.json")).unwrap()).unwrap();
        assert_eq!(runs, section.runs);

        for svg in ["syn-flood-fill.svg", "syn-flood-legit.svg"] {
            let text = fs::read_to_string(dir.join(svg)).unwrap();
            assert!(text.starts_with("<svg"), "{svg}: {}", &text[..40]);
            for defence in ["defaults", "guard-enforce", "nftables"] {
                assert!(text.contains(defence), "{svg} lacks {defence}");
            }
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
