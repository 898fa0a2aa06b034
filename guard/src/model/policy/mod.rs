//! The controller's brain: a pure function from (configuration, state,
//! observation) to a pressure level and the actions to take. No I/O, no
//! clock: the simulation tests drive it with synthetic traces.
//!
//! Each tick it sees the table's fill, how fast it grows, the kernel's
//! distress counters (drop, early_drop, insert_failed, chaintoolong) and the
//! XDP program's new-flow counters, and decides:
//!
//! - a **level**: normal, elevated, high or critical. It rises at once and
//!   falls one step at a time, only after `calm` at a lower pressure, judged
//!   against thresholds 10 points lower than the ones that raise it
//!   (hysteresis, so it does not flap);
//! - **`nf_conntrack_max`**: raised in steps under pressure (or while the
//!   XDP budget turns most new flows away and memory is left: a larger table
//!   admits more, legitimate clients among them), up to the memory ceiling;
//!   lowered back towards the original when calm, never below the live
//!   count plus a margin. (Buckets are sized at start-up by
//!   the controller, never here: a resize rehashes the table under locks.)
//! - **timeouts**: the level's graded values (never longer than the
//!   original), back step by step as the level falls;
//! - **XDP limits**: a global new-flow budget such that the entries it
//!   admits fit in the headroom below the target. At normal it only stops a
//!   sudden flood from filling the table between two ticks (half the
//!   headroom at once, the rest over ten seconds); from elevated on it
//!   follows Little's law: admitted per second x entry lifetime <= headroom.
//!   Per-source and per-prefix limits are ten times the configured ones at
//!   normal (as configured with `--source-limits always`), so a busy NAT is
//!   not limited while the table has room but a flooding source still is;
//!   as configured from elevated on; per-source rates are halved at high
//!   and quartered at critical.

use std::{fmt::Write as _, time::Duration};

use super::{
    as_f64 as f,
    conntrack::{Stats, Timeouts, percent},
    level::Level,
};
use guard_common::config::FLOW_CLASSES;

use crate::config::{Rate, SynCookies};

/// Per-source and per-prefix limits at the normal level, in percent of the
/// configured ones, with `--source-limits pressure`. Ten times: a NAT with
/// many users (a flash crowd of a few hundred connections a second) passes,
/// while a source flooding at thousands a second is still cut down and
/// banned at once, before it can spend the global budget that legitimate
/// clients need.
pub const CALM_SCALE: u64 = 1000;

/// What the policy is given once, at start.
#[derive(Clone, Debug, PartialEq)]
pub struct PolicyConfig {
    /// Fill (percent) the table must stay below.
    pub target: f64,
    /// The highest `nf_conntrack_max` the memory budget allows.
    pub ceiling: u64,
    /// Values before guard started: where everything returns.
    pub original_max: u64,
    pub original_timeouts: Timeouts,
    /// Time at a lower pressure before the level steps down.
    pub calm: Duration,
    /// The operator's limits (the XDP side is scaled from these).
    pub source: [Rate; FLOW_CLASSES],
    pub prefix: [Rate; FLOW_CLASSES],
    /// Whether those apply at normal too, or only under pressure.
    pub limits_always: bool,
    /// The operator's global budget; `rate == 0` leaves it to the policy.
    pub global: Rate,
    /// `--syn-cookies` as the policy applies it: `Never` also when cookies
    /// cannot work (monitor mode, no conntrack knob to make SYNPROXY see
    /// lone ACKs, no attachment that can send them).
    pub cookies: SynCookies,
}

/// One tick's reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Observation {
    /// Time since the controller started.
    pub at: Duration,
    pub count: u64,
    pub max: u64,
    pub stats: Stats,
    pub xdp: XdpCounts,
    /// The highest level among the fleet's other members (normal without
    /// a fleet).
    pub neighbours: Level,
}

/// XDP counters the policy reads, cumulative and summed over interfaces.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpCounts {
    /// New-flow packets seen, and those that passed (each may create a
    /// conntrack entry).
    pub new_flows: u64,
    pub admitted: u64,
    /// New flows the global budget turned away, TCP SYNs seen, sources seen
    /// for the first time, and SYNs answered with a cookie.
    pub budget_drops: u64,
    pub syns: u64,
    pub new_sources: u64,
    pub cookies_sent: u64,
}

/// What has been applied (or, in a dry run, would have been).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    pub max: u64,
    pub timeouts: Timeouts,
    pub limits: XdpLimits,
    /// When `max` last changed.
    pub max_changed_at: Duration,
}

/// The policy's memory between ticks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct State {
    pub level: Level,
    /// Since when the pressure has been below the current level.
    pub calm_since: Option<Duration>,
    /// Escalations since the last long quiet spell: each one makes the
    /// level wait longer before stepping down, so a flood that comes back
    /// in waves holds the level instead of flapping it.
    pub escalations: u32,
    pub last_escalation: Duration,
    pub last: Option<Observation>,
    pub applied: Applied,
    /// Since when cookies, while on, have had little to answer.
    pub cookies_quiet_since: Option<Duration>,
    /// When the global budget last dropped new flows.
    pub budget_dropped_at: Option<Duration>,
}

impl State {
    /// Before the first tick: nothing changed yet.
    #[must_use]
    pub fn initial(cfg: &PolicyConfig) -> Self {
        Self {
            level: Level::Normal,
            calm_since: None,
            escalations: 0,
            last_escalation: Duration::ZERO,
            last: None,
            cookies_quiet_since: None,
            budget_dropped_at: None,
            applied: Applied {
                max: cfg.original_max,
                timeouts: cfg.original_timeouts,
                limits: XdpLimits {
                    global: Rate::OFF,
                    source: cfg.source,
                    prefix: cfg.prefix,
                    cookies: false,
                    verify: false,
                },
                max_changed_at: Duration::ZERO,
            },
        }
    }
}

/// The limits the XDP program applies; a rate of 0 is no limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpLimits {
    pub global: Rate,
    /// By flow class: SYN, UDP, ICMP queries, other protocols.
    pub source: [Rate; FLOW_CLASSES],
    pub prefix: [Rate; FLOW_CLASSES],
    /// A random-source SYN flood is on: SYN cookies may answer the ports
    /// it is aimed at (which ones is [`super::ports`]'s decision).
    pub cookies: bool,
    /// The budget has been dropping lately: ACKs verify returning clients.
    pub verify: bool,
}

/// A change to make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    SetMax {
        from: u64,
        to: u64,
    },
    SetTimeouts {
        from: Timeouts,
        to: Timeouts,
    },
    SetXdpLimits(XdpLimits),
    /// SYN cookies on or off, and why. On: the SYNPROXY rules first, then
    /// the XDP flag (in the same tick's limits); off: the flag first, the
    /// rules after.
    SetCookies {
        on: bool,
        why: String,
    },
}

/// What the policy saw, for the log line.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Seen {
    pub fill: f64,
    pub growth_per_sec: f64,
    pub distress: Stats,
    pub new_flows_per_sec: f64,
    pub admitted_per_sec: f64,
    pub budget_drops_per_sec: f64,
    pub syns_per_sec: f64,
    pub new_sources_per_sec: f64,
    pub cookies_per_sec: f64,
}

/// The outcome of one tick.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub level: Level,
    pub seen: Seen,
    pub actions: Vec<Action>,
    /// Why the level is what it is.
    pub why: String,
    /// When to look again: sooner under pressure.
    pub next_tick: Duration,
    pub next: State,
}

/// Fill (percent) after a raise of `nf_conntrack_max` should be about this.
const FILL_AFTER_RAISE: f64 = 60.0;
/// Lowering `nf_conntrack_max` never leaves the fill above this.
const FILL_AFTER_LOWER: f64 = 50.0;
/// The growth is projected this far ahead.
const HORIZON_SECS: f64 = 5.0;
/// Hysteresis: a level is left only below thresholds this much lower.
const HYSTERESIS: f64 = 10.0;
/// An XDP budget is tightened as soon as it is this much too generous, and
/// relaxed only when this much too strict: prompt to protect, slow to give.
const TIGHTEN_SLACK: f64 = 0.2;
const RELAX_SLACK: f64 = 0.5;
/// The calm needed before a step down doubles with each escalation, up to
/// this many times `calm`; a quiet spell this many times `calm` resets it.
const MAX_CALM_FACTOR: u32 = 16;
const QUIET_RESET_FACTOR: u32 = 20;
/// New-flow attempts per second, and their ratio to admissions, that mean
/// an attack is being held back at XDP: worth being elevated for.
const ATTACK_RATE: f64 = 1000.0;
const ATTACK_RATIO: f64 = 4.0;
/// With an attack held back, the table grows from this fill on.
const HELD_BACK_FILL: f64 = 25.0;
/// SYNs per second that, when most of them get past the per-source limits
/// and are stopped only by the global budget (or come from sources never
/// seen before), make a random-source SYN flood: per-source limits cannot
/// stop it, each source sends a few. Cookies answer it. Off again after
/// `calm` with fewer than half this many SYNs a second to answer.
const COOKIE_SYN_RATE: f64 = 1000.0;
const COOKIE_BUDGET_SHARE: f64 = 0.5;
const COOKIE_NEW_SOURCE_SHARE: f64 = 0.25;
/// While cookies may switch on, the global budget's burst is at most this
/// share of `nf_conntrack_max`: what a flood can put in the table at once,
/// before the next tick switches cookies on.
const ARMED_BURST_SHARE: f64 = 0.025;

#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "non-negative table sizes far below 2^53"
)]
fn u(x: f64) -> u64 {
    x.max(0.0).ceil() as u64
}

/// One tick.
#[must_use]
pub fn decide(cfg: &PolicyConfig, state: &State, obs: &Observation) -> Decision {
    let seen = rates(state, obs);
    let projected = percent(
        obs.count + u(seen.growth_per_sec.max(0.0) * HORIZON_SECS),
        obs.max,
    );
    let (mut next, why) = step_level(cfg, state, obs, &seen, projected);
    let level = next.level;

    let mut actions = Vec::new();
    let max = next_max(cfg, state, obs, level, projected, held_back(&seen));
    if max != state.applied.max {
        actions.push(Action::SetMax {
            from: state.applied.max,
            to: max,
        });
        next.applied.max = max;
        next.applied.max_changed_at = obs.at;
    }
    let timeouts = level.timeouts(&cfg.original_timeouts);
    if timeouts != state.applied.timeouts {
        actions.push(Action::SetTimeouts {
            from: state.applied.timeouts,
            to: timeouts,
        });
        next.applied.timeouts = timeouts;
    }
    let (cookies_on, cookies_why) = cookies(cfg, state, &mut next, obs, &seen);
    if let Some(why) = cookies_why {
        actions.push(Action::SetCookies {
            on: cookies_on,
            why,
        });
    }
    if seen.budget_drops_per_sec > 0.0 {
        next.budget_dropped_at = Some(obs.at);
    }
    // The per-source and per-prefix limits follow this table. An attack
    // XDP holds back while the table has room (below the elevated level's
    // thresholds, less the hysteresis), or a neighbour's, raises the level
    // for the timeouts, the budget and cookies, but leaves those limits
    // calm: they do nothing against a random-source flood, and tightened
    // they cut a busy NAT, served until then, down to a tenth and banned
    // it (fleet-wide, once published).
    let limits_level =
        if level == Level::Elevated && table_pressure(&seen, projected, HYSTERESIS).is_none() {
            Level::Normal
        } else {
            level
        };
    let limits = XdpLimits {
        cookies: cookies_on,
        // Returning clients are verified from the first tick that sees the
        // budget drop until it has been quiet for `calm`.
        verify: next
            .budget_dropped_at
            .is_some_and(|at| obs.at.saturating_sub(at) < cfg.calm),
        ..xdp_limits(cfg, level, limits_level, max, obs.count, &timeouts)
    };
    let applied = state.applied.limits;
    let first = applied.global.rate == 0;
    if first
        || limits.source != applied.source
        || limits.prefix != applied.prefix
        || limits.cookies != applied.cookies
        || limits.verify != applied.verify
        || needs_update(applied.global, limits.global)
    {
        actions.push(Action::SetXdpLimits(limits));
        next.applied.limits = limits;
    }

    Decision {
        level,
        seen,
        actions,
        why,
        // Armed cookies tick fast too: what the budget admits before they
        // answer a flood stays in the table, and grows with the tick.
        next_tick: if level == Level::Normal && cfg.cookies != SynCookies::Auto {
            Duration::from_secs(1)
        } else {
            Duration::from_millis(250)
        },
        next,
    }
}

/// Fill, growth and counter rates since the last tick.
fn rates(state: &State, obs: &Observation) -> Seen {
    let fill = percent(obs.count, obs.max);
    let Some(last) = state.last else {
        return Seen {
            fill,
            growth_per_sec: 0.0,
            distress: Stats::default(),
            new_flows_per_sec: 0.0,
            admitted_per_sec: 0.0,
            budget_drops_per_sec: 0.0,
            syns_per_sec: 0.0,
            new_sources_per_sec: 0.0,
            cookies_per_sec: 0.0,
        };
    };
    let dt = obs.at.saturating_sub(last.at).as_secs_f64();
    let per_sec = |delta: f64| if dt > 0.0 { delta / dt } else { 0.0 };
    let (now, then) = (&obs.xdp, &last.xdp);
    Seen {
        fill,
        growth_per_sec: per_sec(f(obs.count) - f(last.count)),
        distress: obs.stats.since(&last.stats),
        new_flows_per_sec: per_sec(f(now.new_flows.saturating_sub(then.new_flows))),
        admitted_per_sec: per_sec(f(now.admitted.saturating_sub(then.admitted))),
        budget_drops_per_sec: per_sec(f(now.budget_drops.saturating_sub(then.budget_drops))),
        syns_per_sec: per_sec(f(now.syns.saturating_sub(then.syns))),
        new_sources_per_sec: per_sec(f(now.new_sources.saturating_sub(then.new_sources))),
        cookies_per_sec: per_sec(f(now.cookies_sent.saturating_sub(then.cookies_sent))),
    }
}

/// Whether cookies should be on after this tick, with the reason for a
/// change; updates the quiet clock in `next`.
fn cookies(
    cfg: &PolicyConfig,
    state: &State,
    next: &mut State,
    obs: &Observation,
    seen: &Seen,
) -> (bool, Option<String>) {
    let on = state.applied.limits.cookies;
    match cfg.cookies {
        SynCookies::Never => (
            false,
            on.then(|| "SYN cookies are off by configuration".to_owned()),
        ),
        SynCookies::Always => (true, (!on).then(|| "SYN cookies always on".to_owned())),
        SynCookies::Auto if !on => {
            let spread = seen.budget_drops_per_sec >= seen.syns_per_sec * COOKIE_BUDGET_SHARE
                || seen.new_sources_per_sec >= seen.syns_per_sec * COOKIE_NEW_SOURCE_SHARE;
            let flood =
                next.level >= Level::Elevated && seen.syns_per_sec >= COOKIE_SYN_RATE && spread;
            next.cookies_quiet_since = None;
            if flood {
                (
                    true,
                    Some(format!(
                        "SYN cookies on: a random-source SYN flood ({:.0} SYNs/s, {:.0} over the budget, {:.0} new sources/s) at level {}",
                        seen.syns_per_sec,
                        seen.budget_drops_per_sec,
                        seen.new_sources_per_sec,
                        next.level.name()
                    )),
                )
            } else {
                (false, None)
            }
        }
        SynCookies::Auto => {
            if seen.cookies_per_sec >= COOKIE_SYN_RATE / 2.0 {
                next.cookies_quiet_since = None;
                return (true, None);
            }
            let since = *next.cookies_quiet_since.get_or_insert(obs.at);
            if obs.at.saturating_sub(since) >= cfg.calm {
                next.cookies_quiet_since = None;
                (
                    false,
                    Some(format!(
                        "SYN cookies off: {:.0} SYNs/s to answer for {}s",
                        seen.cookies_per_sec,
                        cfg.calm.as_secs()
                    )),
                )
            } else {
                (true, None)
            }
        }
    }
}

/// The next state's level: up at once, down one step after enough calm.
fn step_level(
    cfg: &PolicyConfig,
    state: &State,
    obs: &Observation,
    seen: &Seen,
    projected: f64,
) -> (State, String) {
    let (raw, why) = match pressure(seen, projected, 0.0) {
        (raw, _) if raw < neighbour_floor(obs.neighbours) => (
            neighbour_floor(obs.neighbours),
            format!("a neighbour in the fleet is at {}", obs.neighbours),
        ),
        pressure => pressure,
    };
    let mut next = *state;
    next.last = Some(*obs);
    if obs.at.saturating_sub(state.last_escalation) >= cfg.calm * QUIET_RESET_FACTOR {
        next.escalations = 0;
    }
    if raw > state.level {
        next.level = raw;
        next.calm_since = None;
        next.escalations = next.escalations.saturating_add(1);
        next.last_escalation = obs.at;
        return (next, why);
    }
    let (below, _) = pressure(seen, projected, HYSTERESIS);
    if below >= state.level {
        next.calm_since = None;
        return (next, why);
    }
    let since = state.calm_since.unwrap_or(obs.at);
    let factor = 1u32
        << next
            .escalations
            .saturating_sub(1)
            .min(MAX_CALM_FACTOR.ilog2());
    if obs.at.saturating_sub(since) >= cfg.calm * factor {
        next.level = state.level.below();
        next.calm_since = None;
    } else {
        next.calm_since = Some(since);
    }
    (next, why)
}

/// The level a neighbour's holds this guard at: elevated while one is at
/// high or critical. One level early: the budget tightens and the
/// timeouts shorten a step, which costs users nothing (the per-source
/// limits follow this guard's own table, see `decide`). SYN cookies are
/// not armed on a neighbour's word: they change how every handshake
/// completes, and need this host's own evidence (a few seconds of it, as
/// before).
#[must_use]
pub fn neighbour_floor(neighbours: Level) -> Level {
    if neighbours >= Level::High {
        Level::Elevated
    } else {
        Level::Normal
    }
}

/// The level the readings call for, with thresholds lowered by `lower`
/// points, and why.
fn pressure(seen: &Seen, projected: f64, lower: f64) -> (Level, String) {
    if let Some(table) = table_pressure(seen, projected, lower) {
        return table;
    }
    if held_back(seen) {
        return (
            Level::Elevated,
            format!(
                "{:.0} new flows/s at XDP, {:.0}/s admitted: an attack held back",
                seen.new_flows_per_sec, seen.admitted_per_sec
            ),
        );
    }
    (Level::Normal, format!("fill {:.0}%", seen.fill))
}

/// The level the table's own readings call for (the kernel's drops, the
/// fill, its growth), with thresholds lowered by `lower` points, and why;
/// `None` when they call for none above normal.
fn table_pressure(seen: &Seen, projected: f64, lower: f64) -> Option<(Level, String)> {
    let distress = seen.distress.distress();
    if distress > 0 {
        return Some((
            Level::Critical,
            format!("the kernel dropped or failed {distress} entries"),
        ));
    }
    Level::ALL.into_iter().rev().find_map(|level| {
        if level == Level::Normal {
            None
        } else if seen.fill >= level.enter_fill() - lower {
            Some((level, format!("fill {:.0}%", seen.fill)))
        } else if projected >= level.enter_projected() - lower {
            Some((
                level,
                format!(
                    "fill {:.0}% heading for {projected:.0}% in {HORIZON_SECS}s",
                    seen.fill
                ),
            ))
        } else {
            None
        }
    })
}

/// Whether XDP is turning away most new flows: an attack held back.
fn held_back(seen: &Seen) -> bool {
    seen.new_flows_per_sec >= ATTACK_RATE
        && seen.new_flows_per_sec >= ATTACK_RATIO * seen.admitted_per_sec.max(1.0)
}

/// `nf_conntrack_max` for this tick.
fn next_max(
    cfg: &PolicyConfig,
    state: &State,
    obs: &Observation,
    level: Level,
    projected: f64,
    held_back: bool,
) -> u64 {
    let current = state.applied.max;
    let fill = percent(obs.count, obs.max);
    // Under pressure, with the table half full or heading past the target,
    // or with the XDP budget turning new flows away while memory is left
    // (a larger table means a larger budget, so more legitimate clients
    // get through): room for the projected count at FILL_AFTER_RAISE, at
    // least a 1.5x step.
    let grow = fill >= Level::Elevated.enter_fill()
        || projected >= cfg.target
        || (held_back && fill >= HELD_BACK_FILL);
    if level > Level::Normal && grow {
        let projected_count = f(obs.max) * projected / 100.0;
        let wanted = u(f(current) * 1.5).max(u(projected_count * 100.0 / FILL_AFTER_RAISE));
        return wanted.min(cfg.ceiling).max(current);
    }
    // Calm since the last change: a step back towards the original, never
    // below the live count plus room for a tick of new entries.
    let calm_for = obs.at.saturating_sub(state.applied.max_changed_at);
    if level == Level::Normal && current > cfg.original_max && calm_for >= cfg.calm {
        let floor = obs.count + (obs.count / 10).max(1024);
        let lower = u(f(current) / 1.5)
            .max(cfg.original_max)
            .max(u(f(obs.count) * 100.0 / FILL_AFTER_LOWER))
            .max(floor);
        return lower.min(current);
    }
    current
}

/// The XDP limits at `level` for a table of `max` holding `count`, the
/// per-source and per-prefix ones at `limits_level`.
fn xdp_limits(
    cfg: &PolicyConfig,
    level: Level,
    limits_level: Level,
    max: u64,
    count: u64,
    timeouts: &Timeouts,
) -> XdpLimits {
    let headroom = f(max) * cfg.target / 100.0 - f(count);
    // At normal: let half the headroom in at once and the rest over ten
    // seconds, so a sudden flood cannot fill the table between two ticks.
    // Under pressure: Little's law with the new-flow timeout, and a smaller
    // share at once.
    let (lifetime, at_once) = if level == Level::Normal {
        (10.0, 2.0)
    } else {
        (f(u64::from(timeouts.new_flow_lifetime().max(1))), 8.0)
    };
    let mut global = Rate {
        rate: u((headroom / lifetime).floor()).max(1),
        burst: u32::try_from(u((headroom / at_once).floor()).max(1)).unwrap_or(u32::MAX),
    };
    if cfg.global.rate > 0 {
        global.rate = global.rate.min(cfg.global.rate);
        global.burst = global.burst.min(cfg.global.burst);
    }
    if cfg.cookies == SynCookies::Auto {
        let cap = u32::try_from(u((f(max) * ARMED_BURST_SHARE).floor()).max(1)).unwrap_or(u32::MAX);
        global.burst = global.burst.min(cap);
    }
    let calm = if cfg.limits_always { 100 } else { CALM_SCALE };
    let scaled = |scale: u64| {
        move |r: Rate| {
            if r.rate == 0 {
                r
            } else {
                Rate {
                    rate: (r.rate.saturating_mul(scale) / 100).max(1),
                    burst: u32::try_from(u64::from(r.burst) * scale / 100)
                        .unwrap_or(u32::MAX)
                        .max(1),
                }
            }
        }
    };
    // The prefix tier is relaxed when calm like the sources, but not
    // tightened further under pressure: a prefix holds legitimate users too.
    let prefix_scale = if limits_level == Level::Normal {
        calm
    } else {
        100
    };
    XdpLimits {
        global,
        source: cfg.source.map(scaled(limits_level.source_scale(calm))),
        prefix: cfg.prefix.map(scaled(prefix_scale)),
        cookies: false,
        verify: false,
    }
}

/// Whether the applied budget should become `wanted`: at once when it is
/// too generous, lazily when it is too strict.
fn needs_update(applied: Rate, wanted: Rate) -> bool {
    let change = |have: u64, want: u64| {
        let (have, want) = (f(have), f(want));
        want < have * (1.0 - TIGHTEN_SLACK) || want > have * (1.0 + RELAX_SLACK)
    };
    change(applied.rate, wanted.rate) || change(u64::from(applied.burst), u64::from(wanted.burst))
}

impl Decision {
    /// The log line: what it saw, what it changed, why.
    #[must_use]
    pub fn describe(&self, table_max: u64) -> String {
        let s = &self.seen;
        let mut line = format!(
            "level {} ({}): fill {:.0}% of {table_max}, {:+.0}/s; xdp {:.0} new flows/s, {:.0}/s admitted",
            self.level.name(),
            self.why,
            s.fill,
            s.growth_per_sec,
            s.new_flows_per_sec,
            s.admitted_per_sec
        );
        let d = &s.distress;
        if d.distress() > 0 {
            let _ = write!(
                line,
                "; kernel drop +{} early_drop +{} insert_failed +{} chaintoolong +{}",
                d.drop, d.early_drop, d.insert_failed, d.chaintoolong
            );
        }
        for action in &self.actions {
            line.push_str(" | ");
            match action {
                Action::SetMax { from, to } => {
                    let _ = write!(line, "nf_conntrack_max {from} -> {to}");
                }
                Action::SetTimeouts { from, to } => {
                    let _ = write!(line, "timeouts {}", from.diff(to).join(" "));
                }
                Action::SetCookies { why, .. } => line.push_str(why),
                Action::SetXdpLimits(XdpLimits {
                    global,
                    source,
                    prefix,
                    ..
                }) => {
                    let _ = write!(
                        line,
                        "xdp global {global}, per source syn {} udp {} icmp {}, per prefix syn {} udp {} icmp {}",
                        source[0], source[1], source[2], prefix[0], prefix[1], prefix[2]
                    );
                }
            }
        }
        line
    }
}

#[cfg(test)]
mod tests;
