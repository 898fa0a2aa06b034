//! The policy engine driven by synthetic pressure traces through a model of
//! the kernel's table and guard's XDP global budget.
//!
//! The model is deliberately adversarial where the kernel is: an entry keeps
//! the timeout it was created with (a spoofed SYN's entry never sees another
//! packet, so a lowered timeout never reaches it), a full table drops, and
//! the controller only sees the table once per tick. For every trace: the
//! table never crosses the target, the kernel never drops, the policy makes
//! a bounded number of changes, and after a calm tail everything is back to
//! its original value.

use std::{collections::BTreeMap, time::Duration};

use guard::{
    config::{Rate, SynCookies},
    model::{
        conntrack::{Stats, Timeouts},
        level::Level,
        policy::{self, Action, Observation, PolicyConfig, State, XdpCounts},
    },
};

const STEP_MS: u64 = 50;
const TARGET: f64 = 90.0;
const ORIGINAL_MAX: u64 = 262_144;
const CEILING: u64 = 786_432;

/// Traffic offered in one step: new flows per second of each kind.
#[derive(Clone, Copy, Default)]
struct Offered {
    /// Spoofed SYNs: entries that live the new-flow timeout they were
    /// created with.
    attack: f64,
    /// Legitimate connections: held `legit_hold_s`, then TIME_WAIT.
    legit: f64,
    /// Connections that never close and go idle: ESTABLISHED forever.
    leak: f64,
}

struct Sim {
    now_ms: u64,
    max: u64,
    timeouts: Timeouts,
    /// Expiry time (ms) -> entries.
    entries: BTreeMap<u64, u64>,
    count: u64,
    stats: Stats,
    /// XDP global budget as a fluid token bucket (no limit before the
    /// controller sets one).
    tokens: f64,
    budget: Option<Rate>,
    new_flows: u64,
    admitted: u64,
    legit_hold_s: u64,
    /// Fractional arrivals carried between steps.
    carry: [f64; 3],
}

impl Sim {
    fn new() -> Self {
        Self {
            now_ms: 0,
            max: ORIGINAL_MAX,
            timeouts: Timeouts::defaults(),
            entries: BTreeMap::new(),
            count: 0,
            stats: Stats::default(),
            tokens: 0.0,
            budget: None,
            new_flows: 0,
            admitted: 0,
            legit_hold_s: 5,
            carry: [0.0; 3],
        }
    }

    fn insert(&mut self, n: u64, life_s: u64) {
        let room = self.max.saturating_sub(self.count);
        let ok = n.min(room);
        self.stats.drop += n - ok;
        self.stats.insert += ok;
        if ok > 0 {
            *self.entries.entry(self.now_ms + life_s * 1000).or_default() += ok;
            self.count += ok;
        }
    }

    fn arrivals(&mut self, i: usize, rate: f64) -> u64 {
        #[expect(clippy::cast_precision_loss, reason = "simulation")]
        let x = rate * STEP_MS as f64 / 1000.0 + self.carry[i];
        let whole = x.floor();
        self.carry[i] = x - whole;
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "simulation"
        )]
        let n = whole as u64;
        n
    }

    fn step(&mut self, offered: Offered) {
        self.now_ms += STEP_MS;
        let expired: Vec<u64> = self
            .entries
            .range(..=self.now_ms)
            .map(|(k, _)| *k)
            .collect();
        for k in expired {
            self.count -= self.entries.remove(&k).unwrap_or(0);
        }
        let attack = self.arrivals(0, offered.attack);
        let legit = self.arrivals(1, offered.legit);
        let leak = self.arrivals(2, offered.leak);
        let offered_total = attack + legit + leak;
        self.new_flows += offered_total;
        // The global budget admits new flows in arrival order; the kinds
        // share it in proportion.
        let admitted_total = match self.budget {
            None => offered_total,
            Some(b) => {
                #[expect(clippy::cast_precision_loss, reason = "simulation")]
                let refill = b.rate as f64 * STEP_MS as f64 / 1000.0;
                self.tokens = (self.tokens + refill).min(f64::from(b.burst));
                #[expect(
                    clippy::cast_possible_truncation,
                    clippy::cast_sign_loss,
                    reason = "simulation"
                )]
                let n = (self.tokens.floor() as u64).min(offered_total);
                #[expect(clippy::cast_precision_loss, reason = "simulation")]
                let used = n as f64;
                self.tokens -= used;
                n
            }
        };
        self.admitted += admitted_total;
        let share = |k: u64| (k * admitted_total).checked_div(offered_total).unwrap_or(0);
        let new_flow = u64::from(self.timeouts.new_flow_lifetime());
        self.insert(share(attack), new_flow);
        let legit_life = self.legit_hold_s
            + u64::from(
                self.timeouts
                    .get(guard::model::conntrack::Timeout::TcpTimeWait),
            );
        self.insert(share(legit), legit_life);
        self.insert(
            share(leak),
            u64::from(
                self.timeouts
                    .get(guard::model::conntrack::Timeout::TcpEstablished),
            ),
        );
    }

    fn observe(&self) -> Observation {
        Observation {
            at: Duration::from_millis(self.now_ms),
            count: self.count,
            max: self.max,
            stats: self.stats,
            // The simulated floods are per-source: cookies stay out of it.
            xdp: XdpCounts {
                new_flows: self.new_flows,
                admitted: self.admitted,
                ..XdpCounts::default()
            },
            neighbours: Level::Normal,
        }
    }

    fn apply(&mut self, action: &Action) {
        match action {
            Action::SetMax { to, .. } => self.max = *to,
            Action::SetTimeouts { to, .. } => self.timeouts = *to,
            Action::SetXdpLimits(limits) => {
                let global = limits.global;
                self.budget = Some(global);
                self.tokens = self.tokens.min(f64::from(global.burst));
            }
            Action::SetCookies { .. } => {}
        }
    }
}

fn config() -> PolicyConfig {
    PolicyConfig {
        target: TARGET,
        ceiling: CEILING,
        original_max: ORIGINAL_MAX,
        original_timeouts: Timeouts::defaults(),
        calm: Duration::from_secs(30),
        source: [
            Rate {
                rate: 50,
                burst: 100,
            },
            Rate {
                rate: 50,
                burst: 100,
            },
            Rate { rate: 5, burst: 10 },
            Rate { rate: 5, burst: 10 },
        ],
        prefix: [
            Rate {
                rate: 500,
                burst: 1000,
            },
            Rate {
                rate: 500,
                burst: 1000,
            },
            Rate {
                rate: 50,
                burst: 100,
            },
            Rate {
                rate: 50,
                burst: 100,
            },
        ],
        limits_always: false,
        global: Rate { rate: 0, burst: 0 },
        cookies: SynCookies::Never,
    }
}

struct Outcome {
    peak_fill: f64,
    /// Writes to kernel knobs (nf_conntrack_max, timeouts): the changes
    /// that must not flap.
    kernel_changes: usize,
    /// Updates of the XDP limits (map writes, cheap, follow the headroom).
    xdp_updates: usize,
    max_changes: usize,
    levels: BTreeMap<Level, usize>,
    sim: Sim,
    state: State,
}

/// Runs `trace(second)` for `secs` seconds, then `calm_secs` of light
/// legitimate traffic.
fn run(secs: u64, calm_secs: u64, trace: impl Fn(u64) -> Offered) -> Outcome {
    let cfg = config();
    let mut sim = Sim::new();
    let mut state = State::initial(&cfg);
    let mut next_tick_ms = 0;
    let mut out = Outcome {
        peak_fill: 0.0,
        kernel_changes: 0,
        xdp_updates: 0,
        max_changes: 0,
        levels: BTreeMap::new(),
        sim: Sim::new(),
        state,
    };
    let end = (secs + calm_secs) * 1000;
    while sim.now_ms < end {
        let second = sim.now_ms / 1000;
        let offered = if second < secs {
            trace(second)
        } else {
            Offered {
                legit: 20.0,
                ..Offered::default()
            }
        };
        sim.step(offered);
        out.peak_fill = out
            .peak_fill
            .max(guard::model::conntrack::percent(sim.count, sim.max));
        if sim.now_ms >= next_tick_ms {
            let d = policy::decide(&cfg, &state, &sim.observe());
            for action in &d.actions {
                sim.apply(action);
                match action {
                    Action::SetMax { .. } => {
                        out.kernel_changes += 1;
                        out.max_changes += 1;
                    }
                    Action::SetTimeouts { .. } => out.kernel_changes += 1,
                    Action::SetXdpLimits(_) => out.xdp_updates += 1,
                    Action::SetCookies { .. } => {}
                }
            }
            *out.levels.entry(d.level).or_default() += 1;
            next_tick_ms = sim.now_ms + u64::try_from(d.next_tick.as_millis()).expect("short tick");
            state = d.next;
        }
    }
    out.sim = sim;
    out.state = state;
    out
}

/// `kernel` bounds the knob changes, `xdp` the budget updates.
fn assert_held_and_restored(name: &str, out: &Outcome, kernel: usize, xdp: usize) {
    eprintln!(
        "{name}: peak fill {:.1}%, {} kernel changes ({} of max), {} xdp updates, ticks per level {:?}",
        out.peak_fill, out.kernel_changes, out.max_changes, out.xdp_updates, out.levels
    );
    assert!(
        out.peak_fill < TARGET,
        "{name}: fill peaked at {:.1}%",
        out.peak_fill
    );
    assert_eq!(out.sim.stats.drop, 0, "{name}: the kernel dropped entries");
    assert!(
        out.kernel_changes <= kernel,
        "{name}: {} kernel changes (flapping?), at most {kernel} expected",
        out.kernel_changes
    );
    assert!(
        out.xdp_updates <= xdp,
        "{name}: {} xdp updates, at most {xdp} expected",
        out.xdp_updates
    );
    assert_eq!(out.state.level, Level::Normal, "{name}: not back to normal");
    assert_eq!(
        out.sim.max, ORIGINAL_MAX,
        "{name}: nf_conntrack_max not restored"
    );
    assert_eq!(
        out.sim.timeouts,
        Timeouts::defaults(),
        "{name}: timeouts not restored"
    );
    // Back at normal, the limits are the relaxed calm ones again.
    let calm = |r: Rate| Rate {
        rate: r.rate * policy::CALM_SCALE / 100,
        burst: u32::try_from(u64::from(r.burst) * policy::CALM_SCALE / 100).expect("fits"),
    };
    assert_eq!(
        (
            out.state.applied.limits.source,
            out.state.applied.limits.prefix
        ),
        (config().source.map(calm), config().prefix.map(calm)),
        "{name}: per-source limits not relaxed"
    );
}

#[test]
fn calm_traffic_changes_nothing_in_the_kernel() {
    let out = run(600, 0, |_| Offered {
        legit: 50.0,
        ..Offered::default()
    });
    assert_held_and_restored("calm", &out, 0, 1);
    assert_eq!(out.max_changes, 0);
    assert_eq!(
        out.levels.keys().copied().collect::<Vec<_>>(),
        [Level::Normal]
    );
}

#[test]
fn a_ramping_syn_flood_is_held_below_the_target() {
    let out = run(150, 900, |s| Offered {
        attack: if s < 60 {
            500_000.0 * f64::from(u32::try_from(s).expect("seconds")) / 60.0
        } else if s < 120 {
            500_000.0
        } else {
            0.0
        },
        legit: 100.0,
        ..Offered::default()
    });
    assert!(
        out.levels.contains_key(&Level::Critical) || out.levels.contains_key(&Level::High),
        "{:?}",
        out.levels
    );
    assert_held_and_restored("ramp", &out, 12, 30);
}

#[test]
fn a_square_wave_flood_does_not_make_it_flap() {
    let out = run(360, 900, |s| Offered {
        attack: if s % 60 < 20 { 100_000.0 } else { 0.0 },
        legit: 100.0,
        ..Offered::default()
    });
    assert_held_and_restored("square wave", &out, 20, 50);
}

#[test]
fn a_slow_leak_of_established_entries_is_given_room() {
    // Idle connections that never close keep their five-day timeout: only
    // a larger table helps. 40/s for an hour is 144,000 entries.
    let out = run(3600, 0, |_| Offered {
        leak: 40.0,
        legit: 20.0,
        ..Offered::default()
    });
    eprintln!(
        "leak: peak fill {:.1}%, {} kernel changes, {} xdp updates, max {}",
        out.peak_fill, out.kernel_changes, out.xdp_updates, out.sim.max
    );
    assert!(
        out.peak_fill < TARGET,
        "leak: fill peaked at {:.1}%",
        out.peak_fill
    );
    assert_eq!(out.sim.stats.drop, 0);
    assert!(
        out.kernel_changes <= 20 && out.xdp_updates <= 30,
        "leak: flapping"
    );
}

#[test]
fn a_flash_crowd_is_served_within_the_memory_budget() {
    // 5,000 real connections a second for a minute, each held 5 s then in
    // TIME_WAIT: more than the original table can hold.
    let out = run(60, 1200, |_| Offered {
        legit: 5000.0,
        ..Offered::default()
    });
    assert!(out.sim.max <= CEILING);
    #[expect(clippy::cast_precision_loss, reason = "a ratio")]
    let served = out.sim.admitted as f64 / out.sim.new_flows as f64;
    eprintln!(
        "flash crowd: {:.1}% of new connections admitted",
        served * 100.0
    );
    // The memory budget has room for the crowd: guard must not turn it away.
    assert!(
        served > 0.99,
        "flash crowd: only {:.1}% admitted",
        served * 100.0
    );
    assert_held_and_restored("flash crowd", &out, 16, 30);
}
