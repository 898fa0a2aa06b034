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
    pub source: [Rate; 3],
    pub prefix: [Rate; 3],
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
    /// By flow class: SYN, UDP, ICMP echo.
    pub source: [Rate; 3],
    pub prefix: [Rate; 3],
    /// A random-source SYN flood is on: SYN cookies may answer the ports
    /// it is aimed at (which ones is [`crate::ports`]'s decision).
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
    let limits = XdpLimits {
        cookies: cookies_on,
        // Returning clients are verified from the first tick that sees the
        // budget drop until it has been quiet for `calm`.
        verify: next
            .budget_dropped_at
            .is_some_and(|at| obs.at.saturating_sub(at) < cfg.calm),
        ..xdp_limits(cfg, level, max, obs.count, &timeouts)
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
    let (raw, why) = pressure(seen, projected, 0.0);
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

/// The level the readings call for, with thresholds lowered by `lower`
/// points, and why.
fn pressure(seen: &Seen, projected: f64, lower: f64) -> (Level, String) {
    let distress = seen.distress.distress();
    if distress > 0 {
        return (
            Level::Critical,
            format!("the kernel dropped or failed {distress} entries"),
        );
    }
    for level in Level::ALL.into_iter().rev() {
        if level == Level::Normal {
            break;
        }
        if seen.fill >= level.enter_fill() - lower {
            return (level, format!("fill {:.0}%", seen.fill));
        }
        if projected >= level.enter_projected() - lower {
            return (
                level,
                format!(
                    "fill {:.0}% heading for {projected:.0}% in {HORIZON_SECS}s",
                    seen.fill
                ),
            );
        }
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

/// The XDP limits at `level` for a table of `max` holding `count`.
fn xdp_limits(
    cfg: &PolicyConfig,
    level: Level,
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
    let prefix_scale = if level == Level::Normal { calm } else { 100 };
    XdpLimits {
        global,
        source: cfg.source.map(scaled(level.source_scale(calm))),
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
mod tests {
    use super::*;
    use crate::model::conntrack::Timeout;

    fn cfg() -> PolicyConfig {
        PolicyConfig {
            target: 90.0,
            ceiling: 100_000,
            original_max: 10_000,
            original_timeouts: Timeouts::defaults(),
            calm: Duration::from_secs(30),
            source: [
                Rate {
                    rate: 40,
                    burst: 80,
                },
                Rate { rate: 0, burst: 0 },
                Rate { rate: 4, burst: 8 },
            ],
            prefix: [Rate {
                rate: 400,
                burst: 800,
            }; 3],
            limits_always: true,
            global: Rate { rate: 0, burst: 0 },
            cookies: SynCookies::Never,
        }
    }

    fn obs(at_secs: u64, count: u64, max: u64) -> Observation {
        Observation {
            at: Duration::from_secs(at_secs),
            count,
            max,
            stats: Stats::default(),
            xdp: XdpCounts::default(),
        }
    }

    fn run(cfg: &PolicyConfig, state: &State, o: &Observation) -> (Decision, State) {
        let d = decide(cfg, state, o);
        let next = d.next;
        (d, next)
    }

    #[test]
    fn a_kernel_drop_is_critical_at_once() {
        let cfg = cfg();
        let (_, s) = run(&cfg, &State::initial(&cfg), &obs(0, 100, 10_000));
        let mut o = obs(1, 100, 10_000);
        o.stats.early_drop = 3;
        let (d, _) = run(&cfg, &s, &o);
        assert_eq!(d.level, Level::Critical);
        assert_eq!(d.why, "the kernel dropped or failed 3 entries");
        assert_eq!(d.next_tick, Duration::from_millis(250));
    }

    #[test]
    fn timeouts_never_grow_past_the_original() {
        let mut original = Timeouts::defaults();
        original.set(Timeout::TcpEstablished, 300);
        for level in Level::ALL {
            let t = level.timeouts(&original);
            for kind in Timeout::ALL {
                assert!(t.get(kind) <= original.get(kind), "{level:?} {kind:?}");
            }
        }
        assert_eq!(
            Level::Elevated
                .timeouts(&original)
                .get(Timeout::TcpEstablished),
            300
        );
        assert_eq!(
            Level::Critical.timeouts(&original).get(Timeout::TcpSynRecv),
            5
        );
        assert_eq!(Level::Normal.timeouts(&original), original);
    }

    #[test]
    fn max_rises_within_the_ceiling_and_falls_only_when_calm_and_above_the_count() {
        let cfg = cfg();
        let (_, mut s) = run(&cfg, &State::initial(&cfg), &obs(0, 100, 10_000));
        let (d, next) = run(&cfg, &s, &obs(1, 8_000, 10_000));
        assert!(
            matches!(d.actions[0], Action::SetMax { from: 10_000, to } if to > 10_000 && to <= 100_000),
            "{:?}",
            d.actions
        );
        s = next;
        // Grows towards the ceiling, never past it.
        for t in 2..20 {
            let max = s.applied.max;
            (_, s) = run(&cfg, &s, &obs(t, max * 9 / 10, max));
        }
        assert_eq!(s.applied.max, 100_000);
        // The table stays full of live entries: calm or not, max does not
        // drop below them.
        for t in 20..2000 {
            (_, s) = run(&cfg, &s, &obs(t, 45_000, s.applied.max));
            assert!(
                s.applied.max >= 45_000 + 4_500,
                "max {} under the live count at {t}s",
                s.applied.max
            );
        }
        // Entries expire: back to the original, step by step.
        for t in 2000..4000 {
            (_, s) = run(&cfg, &s, &obs(t, 100, s.applied.max));
        }
        assert_eq!(s.applied.max, 10_000);
        assert_eq!(s.level, Level::Normal);
    }

    #[test]
    fn the_level_steps_down_one_at_a_time_after_calm() {
        let cfg = cfg();
        let (_, s) = run(&cfg, &State::initial(&cfg), &obs(0, 100, 10_000));
        let (d, mut s) = run(&cfg, &s, &obs(1, 8_700, 10_000));
        assert_eq!(d.level, Level::Critical);
        let mut levels = vec![];
        for t in 2..200 {
            let (d, next) = run(&cfg, &s, &obs(t, 100, s.applied.max));
            if levels.last() != Some(&d.level) {
                levels.push(d.level);
            }
            s = next;
        }
        assert_eq!(
            levels,
            [Level::Critical, Level::High, Level::Elevated, Level::Normal]
        );
    }

    #[test]
    fn the_operators_global_budget_caps_the_policys() {
        let mut cfg = cfg();
        cfg.global = Rate { rate: 7, burst: 9 };
        let (d, _) = run(&cfg, &State::initial(&cfg), &obs(0, 100, 10_000));
        assert_eq!(
            d.actions,
            [Action::SetXdpLimits(XdpLimits {
                global: Rate { rate: 7, burst: 9 },
                source: cfg.source,
                prefix: cfg.prefix,
                cookies: false,
                verify: false,
            })]
        );
    }

    #[test]
    fn acks_verify_returning_clients_while_the_budget_drops_and_a_calm_after() {
        let cfg = cfg();
        let mut s = State::initial(&cfg);
        let mut o = obs(0, 100, 10_000);
        let (d, next) = run(&cfg, &s, &o);
        assert!(!d.next.applied.limits.verify);
        s = next;
        // The budget drops: verified from this tick on.
        o = obs(1, 100, 10_000);
        o.xdp.budget_drops = 500;
        let (d, next) = run(&cfg, &s, &o);
        assert!(d.next.applied.limits.verify, "{:?}", d.actions);
        s = next;
        // No more drops: still on until `calm` has passed.
        let calm = cfg.calm.as_secs();
        for t in 2..=calm {
            o = obs(t, 100, 10_000);
            o.xdp.budget_drops = 500;
            let (d, next) = run(&cfg, &s, &o);
            assert!(d.next.applied.limits.verify, "at {t} s");
            s = next;
        }
        o = obs(1 + calm, 100, 10_000);
        o.xdp.budget_drops = 500;
        let (d, _) = run(&cfg, &s, &o);
        assert!(!d.next.applied.limits.verify);
    }

    /// Observations a second apart of a SYN flood: `syns` a second, of
    /// which `new` from sources never seen before, `answered` by cookies;
    /// the table holding `count` of 10,000.
    fn flood(at: u64, count: u64, syns: u64, new: u64, answered: u64) -> Observation {
        Observation {
            xdp: XdpCounts {
                budget_drops: 0,
                syns: syns * at,
                new_sources: new * at,
                cookies_sent: answered * at,
                new_flows: syns * at,
                admitted: 100 * at,
            },
            ..obs(at, count, 10_000)
        }
    }

    fn cookies_switched(d: &Decision) -> Option<bool> {
        d.actions.iter().find_map(|a| match a {
            Action::SetCookies { on, .. } => Some(*on),
            _ => None,
        })
    }

    #[test]
    fn cookies_answer_a_random_source_flood_and_stop_when_it_is_over() {
        let cfg = PolicyConfig {
            cookies: SynCookies::Auto,
            ..cfg()
        };
        let (_, s) = run(&cfg, &State::initial(&cfg), &flood(0, 100, 0, 0, 0));
        // 50,000 SYNs a second from 45,000 new sources, the table filling.
        let (d, s) = run(&cfg, &s, &flood(1, 6_000, 50_000, 45_000, 0));
        assert_eq!(cookies_switched(&d), Some(true), "{:?}", d.actions);
        assert!(d.next.applied.limits.cookies);
        assert!(
            d.describe(10_000)
                .contains("SYN cookies on: a random-source SYN flood")
        );
        // While SYNs keep coming, they stay on.
        let (d, mut s) = run(&cfg, &s, &flood(2, 3_000, 50_000, 0, 50_000));
        assert_eq!(cookies_switched(&d), None);
        assert!(s.applied.limits.cookies);
        // The flood stops: off only after `calm` with little to answer.
        let quiet = |at| {
            let mut o = flood(at, 100, 0, 0, 0);
            o.xdp.cookies_sent = 100_000 + at;
            o.xdp.syns = 100_000 + at;
            o
        };
        let mut off_at = None;
        for at in 3..=40 {
            let (d, next) = run(&cfg, &s, &quiet(at));
            s = next;
            if cookies_switched(&d) == Some(false) {
                off_at = Some(at);
                break;
            }
        }
        // Quiet from the tick at 3 s, `calm` is 30 s.
        assert_eq!(off_at, Some(33));
        assert!(!s.applied.limits.cookies);
    }

    #[test]
    fn sources_that_repeat_but_pass_their_limits_are_a_random_source_flood_too() {
        // 65,536 sources sending a few SYNs a second each: all seen after
        // the first second, each under its limit, only the budget stops them.
        let cfg = PolicyConfig {
            cookies: SynCookies::Auto,
            ..cfg()
        };
        let (_, s) = run(&cfg, &State::initial(&cfg), &flood(0, 100, 0, 0, 0));
        let mut o = flood(1, 6_000, 50_000, 0, 0);
        o.xdp.budget_drops = 40_000;
        let (d, _) = run(&cfg, &s, &o);
        assert_eq!(cookies_switched(&d), Some(true), "{}", d.describe(10_000));
    }

    #[test]
    fn armed_cookies_keep_the_budget_burst_small() {
        let auto = PolicyConfig {
            cookies: SynCookies::Auto,
            ..cfg()
        };
        let armed = xdp_limits(&auto, Level::Normal, 10_000, 0, &Timeouts::defaults());
        let plain = xdp_limits(&cfg(), Level::Normal, 10_000, 0, &Timeouts::defaults());
        assert_eq!(armed.global.burst, 250, "2.5% of 10,000");
        assert!(plain.global.burst > 4_000);
        assert_eq!(armed.global.rate, plain.global.rate);
    }

    #[test]
    fn armed_cookies_tick_fast_while_calm() {
        let auto = PolicyConfig {
            cookies: SynCookies::Auto,
            ..cfg()
        };
        for (cfg, tick) in [(cfg(), 1000), (auto, 250)] {
            let (_, s) = run(&cfg, &State::initial(&cfg), &obs(0, 100, 10_000));
            let (d, _) = run(&cfg, &s, &obs(1, 100, 10_000));
            assert_eq!(d.level, Level::Normal);
            assert_eq!(
                d.next_tick,
                Duration::from_millis(tick),
                "{:?}",
                cfg.cookies
            );
        }
    }

    #[test]
    fn a_flood_from_few_sources_is_left_to_the_per_source_limits() {
        let cfg = PolicyConfig {
            cookies: SynCookies::Auto,
            ..cfg()
        };
        let (_, s) = run(&cfg, &State::initial(&cfg), &flood(0, 100, 0, 0, 0));
        let (d, _) = run(&cfg, &s, &flood(1, 6_000, 50_000, 20, 0));
        assert!(d.level >= Level::Elevated);
        assert_eq!(cookies_switched(&d), None);
        // Nor a random-source trickle while the table is calm.
        let (d, _) = run(&cfg, &s, &flood(1, 200, 500, 500, 0));
        assert_eq!(cookies_switched(&d), None);
    }

    #[test]
    fn always_and_never_mean_it() {
        let always = PolicyConfig {
            cookies: SynCookies::Always,
            ..cfg()
        };
        let (d, s) = run(&always, &State::initial(&always), &obs(0, 100, 10_000));
        assert_eq!(cookies_switched(&d), Some(true));
        let (d, _) = run(&always, &s, &obs(60, 100, 10_000));
        assert_eq!(cookies_switched(&d), None);
        assert!(d.next.applied.limits.cookies);
        let never = cfg();
        let (_, s) = run(&never, &State::initial(&never), &flood(0, 100, 0, 0, 0));
        let (d, _) = run(&never, &s, &flood(1, 9_000, 50_000, 45_000, 0));
        assert_eq!(cookies_switched(&d), None);
        assert!(!d.next.applied.limits.cookies);
    }

    #[test]
    fn limits_relax_when_calm_and_return_with_pressure() {
        let mut cfg = cfg();
        cfg.limits_always = false;
        let calm = xdp_limits(&cfg, Level::Normal, 10_000, 0, &Timeouts::defaults());
        let ten = |r: Rate| Rate {
            rate: r.rate * 10,
            burst: r.burst * 10,
        };
        assert_eq!(
            calm.source,
            [ten(cfg.source[0]), Rate::OFF, ten(cfg.source[2])]
        );
        assert_eq!(calm.prefix, cfg.prefix.map(ten));
        assert!(calm.global.rate > 0, "the global budget stays");
        let pressed = xdp_limits(&cfg, Level::Elevated, 10_000, 0, &Timeouts::defaults());
        assert_eq!((pressed.source, pressed.prefix), (cfg.source, cfg.prefix));
        let critical = xdp_limits(&cfg, Level::Critical, 10_000, 0, &Timeouts::defaults());
        assert_eq!(critical.prefix, cfg.prefix, "prefixes are not tightened");
        // Through the policy: calm relaxes them, a filling table brings
        // them back in the same tick that raises the level.
        let (d, s) = run(&cfg, &State::initial(&cfg), &obs(0, 100, 10_000));
        assert!(
            matches!(d.actions.as_slice(), [Action::SetXdpLimits(l)] if l.source == calm.source),
            "{:?}",
            d.actions
        );
        assert!(
            d.describe(10_000)
                .contains("per source syn 400/s burst 800"),
            "{}",
            d.describe(10_000)
        );
        let (d, _) = run(&cfg, &s, &obs(1, 6_000, 10_000));
        assert!(d.level >= Level::Elevated);
        assert!(
            d.actions
                .iter()
                .any(|a| matches!(a, Action::SetXdpLimits(l) if l.prefix == cfg.prefix)),
            "{:?}",
            d.actions
        );
    }

    #[test]
    fn per_source_limits_shrink_at_high_and_critical_but_off_stays_off() {
        let cfg = cfg();
        let source = xdp_limits(&cfg, Level::Critical, 10_000, 0, &Timeouts::defaults()).source;
        assert_eq!(
            source[0],
            Rate {
                rate: 10,
                burst: 20
            }
        );
        assert_eq!(
            source[1],
            Rate { rate: 0, burst: 0 },
            "a class with no limit keeps none"
        );
        assert_eq!(source[2], Rate { rate: 1, burst: 2 });
        let high = xdp_limits(&cfg, Level::High, 10_000, 0, &Timeouts::defaults()).source;
        assert_eq!(
            high[0],
            Rate {
                rate: 20,
                burst: 40
            }
        );
    }

    #[test]
    fn the_budget_fits_the_headroom_by_littles_law_under_pressure() {
        let cfg = cfg();
        let timeouts = Level::High.timeouts(&Timeouts::defaults());
        // 90% of 10,000 is 9,000; 3,000 in the table: 6,000 headroom. The
        // longest new-flow timeout at high is 30 s.
        let global = xdp_limits(&cfg, Level::High, 10_000, 3_000, &timeouts).global;
        assert_eq!(timeouts.new_flow_lifetime(), 30);
        assert_eq!(
            global,
            Rate {
                rate: 200,
                burst: 750
            }
        );
        // No headroom left: next to nothing, but never 0 (which means
        // unlimited to the data plane).
        let global = xdp_limits(&cfg, Level::Critical, 10_000, 9_500, &timeouts).global;
        assert_eq!(global, Rate { rate: 1, burst: 1 });
    }

    #[test]
    fn the_log_line_says_what_it_saw_and_changed() {
        let cfg = cfg();
        let (_, s) = run(&cfg, &State::initial(&cfg), &obs(0, 100, 10_000));
        let (d, _) = run(&cfg, &s, &obs(1, 8_700, 10_000));
        let line = d.describe(10_000);
        assert!(
            line.starts_with("level critical (fill 87%): fill 87% of 10000, +8600/s"),
            "{line}"
        );
        assert!(line.contains("| nf_conntrack_max 10000 -> "), "{line}");
        assert!(
            line.contains("| timeouts syn_sent 120->10 syn_recv 60->5 established 432000->600"),
            "{line}"
        );
        assert!(line.contains("| xdp global "), "{line}");
    }
}
