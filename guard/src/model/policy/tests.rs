//! The policy's rules, one by one, on synthetic observations.

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
            Rate { rate: 2, burst: 4 },
        ],
        prefix: [Rate {
            rate: 400,
            burst: 800,
        }; 4],
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
        neighbours: Level::Normal,
    }
}

/// The XDP limits at `level` for an empty table of 10,000.
fn limits_at(cfg: &PolicyConfig, level: Level) -> XdpLimits {
    xdp_limits(cfg, level, level, 10_000, 0, &Timeouts::defaults())
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
    let armed = limits_at(&auto, Level::Normal);
    let plain = limits_at(&cfg(), Level::Normal);
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
    let calm = limits_at(&cfg, Level::Normal);
    let ten = |r: Rate| Rate {
        rate: r.rate * 10,
        burst: r.burst * 10,
    };
    assert_eq!(
        calm.source,
        [
            ten(cfg.source[0]),
            Rate::OFF,
            ten(cfg.source[2]),
            ten(cfg.source[3])
        ]
    );
    assert_eq!(calm.prefix, cfg.prefix.map(ten));
    assert!(calm.global.rate > 0, "the global budget stays");
    let pressed = limits_at(&cfg, Level::Elevated);
    assert_eq!((pressed.source, pressed.prefix), (cfg.source, cfg.prefix));
    let critical = limits_at(&cfg, Level::Critical);
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
    let source = limits_at(&cfg, Level::Critical).source;
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
    let high = limits_at(&cfg, Level::High).source;
    assert_eq!(
        high[0],
        Rate {
            rate: 20,
            burst: 40
        }
    );
}

/// guard admits another protocol's datagrams as new flows under the
/// budget, so the budget's lifetime covers their generic entries; graded,
/// those live no longer than a half-open TCP entry, which keeps the budget
/// for SYNs where it was.
#[test]
fn generic_entries_count_in_the_budgets_lifetime_and_are_graded_down() {
    assert_eq!(Timeouts::defaults().new_flow_lifetime(), 600);
    for level in [Level::Elevated, Level::High, Level::Critical] {
        let t = level.timeouts(&Timeouts::defaults());
        assert!(
            t.get(Timeout::Generic) <= t.get(Timeout::TcpSynSent),
            "{level:?}"
        );
        assert_eq!(
            t.new_flow_lifetime(),
            t.get(Timeout::TcpSynSent),
            "{level:?}"
        );
        let mut long = t;
        long.set(Timeout::Generic, 900);
        assert_eq!(long.new_flow_lifetime(), 900, "{level:?}");
    }
}

#[test]
fn the_budget_fits_the_headroom_by_littles_law_under_pressure() {
    let cfg = cfg();
    let timeouts = Level::High.timeouts(&Timeouts::defaults());
    // 90% of 10,000 is 9,000; 3,000 in the table: 6,000 headroom. The
    // longest new-flow timeout at high is 30 s.
    let global = xdp_limits(&cfg, Level::High, Level::High, 10_000, 3_000, &timeouts).global;
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
    let global = xdp_limits(
        &cfg,
        Level::Critical,
        Level::Critical,
        10_000,
        9_500,
        &timeouts,
    )
    .global;
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

/// A neighbour at high holds a calm guard at elevated (a tighter budget),
/// and it steps down after the calm once the neighbours do; a neighbour
/// only elevated changes nothing.
#[test]
fn a_neighbour_under_attack_holds_a_calm_guard_at_elevated() {
    let cfg = cfg();
    let mut state = State::initial(&cfg);
    let (d, next) = run(
        &cfg,
        &state,
        &Observation {
            neighbours: Level::Elevated,
            ..obs(1, 0, 10_000)
        },
    );
    assert_eq!(d.level, Level::Normal);
    state = next;
    let (d, next) = run(
        &cfg,
        &state,
        &Observation {
            neighbours: Level::High,
            ..obs(2, 0, 10_000)
        },
    );
    assert_eq!(d.level, Level::Elevated);
    let calm_limits = xdp_limits_of(&state);
    let held = next.applied.limits;
    assert!(
        held.global.rate < calm_limits.global.rate,
        "elevated applies a tighter budget: {held:?} vs {calm_limits:?}"
    );
    assert!(!held.cookies, "cookies are not armed on a neighbour's word");
    state = next;
    let (d, next) = run(
        &cfg,
        &state,
        &Observation {
            neighbours: Level::Critical,
            ..obs(3, 0, 10_000)
        },
    );
    assert_eq!(
        d.level,
        Level::Elevated,
        "one level early, not the neighbour's"
    );
    state = next;
    let calm = cfg.calm.as_secs();
    let (d, _) = run(&cfg, &state, &obs(4, 0, 10_000));
    assert_eq!(d.level, Level::Elevated, "not before the calm");
    let (_, next) = run(&cfg, &state, &obs(4, 0, 10_000));
    let (d, _) = run(&cfg, &next, &obs(5 + calm, 0, 10_000));
    assert_eq!(d.level, Level::Normal, "after the calm");
}

fn xdp_limits_of(state: &State) -> XdpLimits {
    state.applied.limits
}

/// A random-source flood XDP holds back while the table has room raises
/// the level (the timeouts, the budget), but the per-source and
/// per-prefix limits stay calm: a busy NAT served at ten times the
/// configured rate keeps it. Once the table itself fills, they tighten in
/// the same tick; and when the table empties while the level waits out its
/// calm, they relax again. A neighbour's pressure does not tighten them
/// either.
#[test]
fn an_attack_held_back_leaves_the_per_source_limits_calm_while_the_table_has_room() {
    let mut cfg = cfg();
    cfg.limits_always = false;
    let calm = limits_at(&cfg, Level::Normal);
    let (_, s) = run(&cfg, &State::initial(&cfg), &flood(0, 100, 0, 0, 0));
    assert_eq!(s.applied.limits.source, calm.source);

    // 50,000 SYNs a second, 100 admitted: held back, the table at 2%.
    let (d, s) = run(&cfg, &s, &flood(1, 200, 50_000, 45_000, 0));
    assert_eq!(d.level, Level::Elevated, "{}", d.describe(10_000));
    assert!(d.why.contains("an attack held back"), "{}", d.why);
    assert!(
        d.next.applied.timeouts != State::initial(&cfg).applied.timeouts,
        "the timeouts shorten"
    );
    assert_eq!(
        (s.applied.limits.source, s.applied.limits.prefix),
        (calm.source, calm.prefix),
        "{}",
        d.describe(10_000)
    );

    // Over half a minute the table fills past the elevated level's 50%:
    // the configured limits.
    let (d, s) = run(&cfg, &s, &flood(31, 5_400, 50_000, 45_000, 0));
    assert_eq!(d.level, Level::Elevated, "{}", d.describe(10_000));
    assert_eq!(
        (s.applied.limits.source, s.applied.limits.prefix),
        (cfg.source, cfg.prefix)
    );
    // Back to 45%, within the hysteresis: still tight.
    let (_, s) = run(&cfg, &s, &flood(61, 4_500, 50_000, 45_000, 0));
    assert_eq!(s.applied.limits.source, cfg.source);
    // Down to 10%, the flood still held back, the level still elevated:
    // calm again.
    let (d, s) = run(&cfg, &s, &flood(91, 1_000, 50_000, 45_000, 0));
    assert_eq!(d.level, Level::Elevated);
    assert_eq!(s.applied.limits.source, calm.source);

    // Nor does a neighbour at high tighten them, the table empty (the
    // flood over, this guard held at elevated by the neighbour alone).
    let held = Observation {
        neighbours: Level::High,
        ..obs(121, 100, 10_000)
    };
    let (d, s) = run(&cfg, &s, &held);
    assert_eq!(d.level, Level::Elevated);
    assert_eq!(s.applied.limits.source, calm.source);
}
