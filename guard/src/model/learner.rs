//! The fingerprint learner's session on one interface, pure: samples in,
//! once a second what to install and what to expire out. The daemon does
//! the I/O (`daemon::fingerprints`); `model::fingerprint` finds and checks
//! the signatures.
//!
//! - Contrast: samples of verified sources' new flows and of known UDP
//!   flows, always; and the new flows of a second without a flood (the
//!   picture of normal new flows), once the second after it was calm too
//!   (a flood's first packets may fall in a second that looked calm). Verified sources' samples are also kept
//!   apart: a signature that matches one is never installed.
//! - Attack: the new flows of a second with a flood, one second's window
//!   at a time. Which a second was is known at its end, so its new flows
//!   wait in the window till then. Each CPU samples under a budget of its
//!   own, so a CPU the flood fills sends no more samples than one that sees
//!   a few clients: the window is cut to the proportions in which the CPUs
//!   saw new flows ([`proportionate`]) before anything is learned from it.
//! - A signature learned from one window is checked on the next (a fresh
//!   sample) before it is installed.
//! - A learned signature expires after [`QUIET_SECS`] seconds in a row in
//!   which it matched fewer than [`QUIET_HITS`] packets: the flood ended,
//!   or changed.

use std::{
    collections::{BTreeMap, VecDeque},
    fmt::Write as _,
};

#[cfg(test)]
use guard_common::fingerprint::FP_PAYLOAD;
use guard_common::fingerprint::{
    Fingerprint, SAMPLE_ESTABLISHED, SAMPLE_NEW, SAMPLE_VERIFIED, Signature,
};

use super::{
    as_f64,
    fingerprint::{Learned, SigRefusal, Thresholds, check, learn},
};

/// Contrast samples kept (the newest).
pub const CONTRAST_KEPT: usize = 4096;
/// Verified sources' samples kept (the newest).
pub const VERIFIED_KEPT: usize = 1024;
/// Attack samples kept of one second's window.
pub const WINDOW_KEPT: usize = 4096;
/// A learned signature matching fewer packets than this a second...
pub const QUIET_HITS: u64 = 10;
/// ...for this many seconds in a row is taken out.
pub const QUIET_SECS: u32 = 5;
/// Flood seconds in a row too thin to check a learned signature on (a
/// pulsed flood's pause, a sender restarting) that it waits through for
/// one that is not.
pub const THIN_WAITED: u32 = 2;

/// An installed signature as the session sees it each second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Installed {
    pub id: u32,
    /// Whether it may expire: learned, and not pinned.
    pub expires: bool,
    /// Packets it matched in the last second.
    pub hits: u64,
}

/// What the session asks for.
#[derive(Clone, Debug, PartialEq)]
pub enum SigChange {
    /// Install this signature, learned and checked; `share` is what it
    /// matched of the fresh attack sample.
    Install { sig: Signature, share: f64 },
    /// Take out signature `id`: it has stopped matching.
    Expire { id: u32 },
}

/// One interface's learner.
#[derive(Debug, Default)]
pub struct Session {
    thresholds: Thresholds,
    contrast: VecDeque<Fingerprint>,
    verified: VecDeque<Fingerprint>,
    /// This second's new flows, with the CPU that sampled each.
    window: Vec<(u32, Fingerprint)>,
    /// The new flows each CPU sampled this second, by CPU number: those
    /// past [`WINDOW_KEPT`] too.
    sent: BTreeMap<u32, u64>,
    /// The last calm second's new flows, which join the contrast only once
    /// the next second is calm too: a flood's first packets arrive in a
    /// second that may end before the flood is seen, and in the contrast
    /// they would veto the flood's own signature.
    probation: Vec<Fingerprint>,
    /// Learned from the last window, to be checked on this one.
    pending: Option<Learned>,
    /// Seconds too thin to check it on that `pending` has waited through.
    thin: u32,
    /// Quiet seconds in a row, by signature id.
    quiet: Vec<(u32, u32)>,
    /// What the last flood second came to, when it installed nothing.
    note: Option<String>,
}

impl Session {
    #[must_use]
    pub fn new(thresholds: Thresholds) -> Self {
        Self {
            thresholds,
            ..Self::default()
        }
    }

    /// One sample from the program, taken on `cpu`. A new flow waits in
    /// the second's window until the tick says whether the second was a
    /// flood's.
    pub fn sample(&mut self, kind: u32, cpu: u32, fp: Fingerprint) {
        if kind == SAMPLE_NEW {
            *self.sent.entry(cpu).or_default() += 1;
        }
        match kind {
            SAMPLE_NEW if self.window.len() < WINDOW_KEPT => self.window.push((cpu, fp)),
            SAMPLE_VERIFIED => {
                keep(&mut self.verified, fp, VERIFIED_KEPT);
                keep(&mut self.contrast, fp, CONTRAST_KEPT);
            }
            SAMPLE_ESTABLISHED => keep(&mut self.contrast, fp, CONTRAST_KEPT),
            _ => {}
        }
    }

    /// The second is over (`seen` is what the CPUs saw of it): what to
    /// install (a signature learned from the previous window that holds on
    /// this one) and what to expire.
    pub fn tick(
        &mut self,
        flood: bool,
        seen: &Seen<'_>,
        installed: &[Installed],
    ) -> Vec<SigChange> {
        let mut actions = self.expiries(installed);
        let taken = std::mem::take(&mut self.window);
        let sent = std::mem::take(&mut self.sent);
        self.note = None;
        if !flood {
            // Calm seconds' new flows are the picture of normal ones: the
            // one before this, now that this was calm too.
            let window = taken.into_iter().map(|(_, fp)| fp).collect();
            for fp in std::mem::replace(&mut self.probation, window) {
                keep(&mut self.contrast, fp, CONTRAST_KEPT);
            }
            self.pending = None;
            return actions;
        }
        self.probation.clear();
        let taken_len = taken.len();
        let window = proportionate(taken, &sent, seen);
        let contrast: Vec<Fingerprint> = self.contrast.iter().copied().collect();
        let verified: Vec<Fingerprint> = self.verified.iter().copied().collect();
        let mut note = format!(
            "{} attack samples ({taken_len} taken, cut to the CPUs' shares of new flows), {} contrast, {} verified",
            window.len(),
            contrast.len(),
            verified.len()
        );
        if let Some(pending) = self.pending.take() {
            match check(
                &pending.signature,
                &window,
                &contrast,
                &verified,
                &self.thresholds,
            ) {
                Ok(shares) => {
                    actions.push(SigChange::Install {
                        sig: pending.signature,
                        share: shares.attack,
                    });
                    return actions;
                }
                // Neither for it nor against it: it waits for a second
                // with samples enough (the thin one would teach nothing).
                Err(refusal @ SigRefusal::TooFewAttack { .. }) if self.thin < THIN_WAITED => {
                    self.thin += 1;
                    let _ = write!(note, "; the last one learned waits: {refusal}");
                    self.pending = Some(pending);
                    self.note = Some(note);
                    return actions;
                }
                Err(refusal) => {
                    let _ = write!(note, "; the last one learned: {refusal}");
                }
            }
        }
        self.pending = learn(&window, &contrast, &self.thresholds);
        self.thin = 0;
        match &self.pending {
            Some(l) if verified.iter().any(|fp| l.signature.matches(fp)) => {
                note.push_str("; learned one that a verified source's flow matches");
                self.pending = None;
            }
            Some(_) => note.push_str("; learned one, to check on the next second"),
            None => note.push_str("; learned nothing"),
        }
        self.note = Some(note);
        actions
    }

    /// What the last flood second came to when it installed nothing (the
    /// samples it had, why a signature was refused), for the debug log.
    #[must_use]
    pub fn note(&self) -> Option<&str> {
        self.note.as_deref()
    }

    fn expiries(&mut self, installed: &[Installed]) -> Vec<SigChange> {
        self.quiet
            .retain(|(id, _)| installed.iter().any(|i| i.id == *id));
        let mut out = Vec::new();
        for sig in installed.iter().filter(|i| i.expires) {
            let at = self
                .quiet
                .iter()
                .position(|(id, _)| *id == sig.id)
                .unwrap_or_else(|| {
                    self.quiet.push((sig.id, 0));
                    self.quiet.len() - 1
                });
            let quiet = &mut self.quiet[at].1;
            *quiet = if sig.hits < QUIET_HITS { *quiet + 1 } else { 0 };
            if *quiet >= QUIET_SECS {
                out.push(SigChange::Expire { id: sig.id });
            }
        }
        out
    }
}

/// What the CPUs saw of a second, to weigh their samples by.
#[derive(Clone, Copy, Debug)]
pub struct Seen<'a> {
    /// The new flows each CPU saw (its `NewFlows` counter's rise), by CPU
    /// number.
    pub new_flows: &'a [u64],
    /// One packet in this many was considered for a sample: the sample
    /// mask plus one.
    pub every: u64,
    /// The new-flow samples one CPU may send a second.
    pub budget: u32,
}

/// The window's samples cut to the proportions in which the CPUs saw new
/// flows, so that the learner's shares are the flood's, not the budget's.
/// `sent` is the samples each CPU sent, of which the window holds those
/// that came before it was full.
///
/// A CPU whose budget never ran out sent every new flow the mask let it
/// consider: one in `every`. One whose budget ran out sent its samples of
/// the new flows it saw. The CPU whose samples in the window are the
/// smallest share of what it saw keeps them all; every other keeps, evenly
/// spread, as many as that share of what it saw. With one CPU, or every
/// CPU alike, the window stays as it was. (The CPUs' new flows count
/// verified sources' too, which are sampled apart: that overstates a CPU's
/// share only while its budget binds, where the flood's flows are most of
/// them.)
#[must_use]
pub fn proportionate(
    window: Vec<(u32, Fingerprint)>,
    sent: &BTreeMap<u32, u64>,
    seen: &Seen<'_>,
) -> Vec<Fingerprint> {
    let mut held: BTreeMap<u32, u64> = BTreeMap::new();
    for (cpu, _) in &window {
        *held.entry(*cpu).or_default() += 1;
    }
    let considered = 1.0 / as_f64(seen.every.max(1));
    // The share of the new flows it saw that each CPU has in the window.
    let share = |cpu: u32, held: u64| {
        let sent = sent.get(&cpu).copied().unwrap_or(0).max(held);
        let of_sent = as_f64(held) / as_f64(sent);
        if sent < u64::from(seen.budget) {
            of_sent * considered
        } else {
            let saw = seen.new_flows.get(cpu as usize).copied().unwrap_or(0);
            of_sent * considered.min(as_f64(sent) / as_f64(saw.max(sent)))
        }
    };
    let least = held
        .iter()
        .map(|(&cpu, &n)| share(cpu, n))
        .fold(f64::INFINITY, f64::min);
    let keep: BTreeMap<u32, f64> = held
        .iter()
        .map(|(&cpu, &n)| (cpu, least / share(cpu, n)))
        .collect();
    let mut seen_of: BTreeMap<u32, u64> = BTreeMap::new();
    window
        .into_iter()
        .filter(|(cpu, _)| {
            let i = seen_of.entry(*cpu).or_default();
            let share = keep[cpu];
            // Sample i is kept when the count kept so far steps up at it:
            // evenly spread, the same samples on the same input.
            #[expect(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                reason = "non-negative counts below the window's length"
            )]
            let step = |i: u64| (as_f64(i) * share + 1e-9).floor() as u64;
            let kept = step(*i + 1) > step(*i);
            *i += 1;
            kept
        })
        .map(|(_, fp)| fp)
        .collect()
}

fn keep(q: &mut VecDeque<Fingerprint>, fp: Fingerprint, cap: usize) {
    if q.len() == cap {
        q.pop_front();
    }
    q.push_back(fp);
}

/// Whether there is a flood, for the learner: the pressure level is above
/// normal, the limits dropped at least [`FLOOD_DROPS`] new flows in the
/// last second, or the new flows came at least [`FLOOD_NEW_FLOWS`] a
/// second and [`FLOOD_JUMP`] times the calm rate (`calm`, per second).
/// The last sees a flood in its first second, before the table fills.
#[must_use]
pub fn flood(level_above_normal: bool, limit_drops: u64, new_flows: u64, calm: f64) -> bool {
    level_above_normal
        || limit_drops >= FLOOD_DROPS
        || (new_flows >= FLOOD_NEW_FLOWS && as_f64(new_flows) >= FLOOD_JUMP * calm)
}

/// The calm new-flow rate after a second of `new_flows`: a slow moving
/// average of calm seconds (a flood's seconds leave it as it was).
#[must_use]
pub fn calm_rate(calm: f64, new_flows: u64, flood: bool) -> f64 {
    if flood {
        calm
    } else {
        calm + (as_f64(new_flows) - calm) / 16.0
    }
}

/// New flows the limits drop in a second that make a flood for the
/// learner: a few clients over their limit are not one.
pub const FLOOD_DROPS: u64 = 200;
/// New flows a second, and times the calm rate, that make a flood.
pub const FLOOD_NEW_FLOWS: u64 = 5_000;
pub const FLOOD_JUMP: f64 = 10.0;

#[cfg(test)]
mod tests {
    use super::*;

    /// What a one-CPU host saw: any window is as taken.
    const ONE_CPU: Seen<'static> = Seen {
        new_flows: &[],
        every: 1,
        budget: 500,
    };

    /// A UDP fingerprint: `payload` first bytes, `len` IP length, `n`
    /// varies the source port.
    fn udp(payload: [u8; 4], len: u16, n: u16) -> Fingerprint {
        let mut ip = vec![0x45, 0, (len >> 8) as u8, len as u8, 0, 0, 0, 0, 64, 17];
        ip.extend_from_slice(&[0; 10]);
        ip.extend_from_slice(&n.to_be_bytes());
        ip.extend_from_slice(&5353u16.to_be_bytes());
        ip.extend_from_slice(&(len - 20).to_be_bytes());
        ip.extend_from_slice(&[0, 0]);
        ip.extend_from_slice(&payload);
        ip.extend_from_slice(&n.to_be_bytes());
        ip.resize(usize::from(len), 0x11);
        Fingerprint::of(&ip, 20, 17).unwrap()
    }

    fn user(n: u16) -> Fingerprint {
        let b = n.to_be_bytes();
        udp([b[1], b[0], 1, 0], 40 + n % 30, n)
    }

    #[test]
    fn learns_then_checks_on_a_fresh_window_then_installs_once() {
        let mut s = Session::new(Thresholds::default());
        for n in 0..500 {
            s.sample(SAMPLE_NEW, 0, user(n));
        }
        assert!(s.tick(false, &ONE_CPU, &[]).is_empty(), "a calm second");
        assert!(s.tick(false, &ONE_CPU, &[]).is_empty(), "and another");
        let flood_second = |s: &mut Session, seed: u16| {
            for n in 0..400 {
                s.sample(SAMPLE_NEW, 0, udp([0xde, 0xad, 0xbe, 0xef], 44, seed + n));
            }
            s.tick(true, &ONE_CPU, &[])
        };
        assert!(
            flood_second(&mut s, 0).is_empty(),
            "learned, not yet checked"
        );
        let actions = flood_second(&mut s, 1000);
        let [SigChange::Install { sig, share }] = actions.as_slice() else {
            panic!("{actions:?}");
        };
        assert!(*share >= 0.9);
        assert!(sig.matches(&udp([0xde, 0xad, 0xbe, 0xef], 44, 7)));
        assert!((0..500).all(|n| !sig.matches(&user(n))));
    }

    /// A flood that pauses for a second (or two) after the second its
    /// signature was learned in: the signature waits, and is installed on
    /// the next second with samples enough, not learned anew a second
    /// later. A third thin second in a row lets it go.
    #[test]
    fn a_learned_signature_waits_through_thin_seconds_for_its_check() {
        let flood_second = |s: &mut Session, seed: u32, n: u16| {
            let seed = u16::try_from(seed).expect("a seed");
            for i in 0..n {
                s.sample(
                    SAMPLE_NEW,
                    0,
                    udp([0xde, 0xad, 0xbe, 0xef], 44, seed.wrapping_add(i)),
                );
            }
            s.tick(true, &ONE_CPU, &[])
        };
        let calm = |s: &mut Session| {
            for n in 0..500 {
                s.sample(SAMPLE_NEW, 0, user(n));
            }
            assert!(s.tick(false, &ONE_CPU, &[]).is_empty(), "a calm second");
            assert!(s.tick(false, &ONE_CPU, &[]).is_empty(), "and another");
        };
        for thin in 1..=THIN_WAITED {
            let mut s = Session::new(Thresholds::default());
            calm(&mut s);
            assert!(flood_second(&mut s, 0, 400).is_empty(), "learned");
            for k in 0..thin {
                assert!(
                    flood_second(&mut s, 1000 + k, 3).is_empty(),
                    "a thin second"
                );
                assert!(
                    s.note().is_some_and(|n| n.contains("waits")),
                    "{:?}",
                    s.note()
                );
            }
            let actions = flood_second(&mut s, 2000, 400);
            assert!(
                matches!(actions.as_slice(), [SigChange::Install { .. }]),
                "after {thin} thin seconds: {actions:?} ({:?})",
                s.note()
            );
        }
        let mut s = Session::new(Thresholds::default());
        calm(&mut s);
        assert!(flood_second(&mut s, 0, 400).is_empty(), "learned");
        for k in 0..=THIN_WAITED {
            assert!(flood_second(&mut s, 1000 + k, 3).is_empty());
        }
        assert!(
            s.note()
                .is_some_and(|n| n.contains("the last one learned: only 3 attack samples")),
            "{:?}",
            s.note()
        );
        assert!(
            flood_second(&mut s, 2000, 400).is_empty(),
            "let go: learned anew, to check on the next second"
        );
    }

    #[test]
    fn a_signature_that_matches_a_verified_source_is_never_installed() {
        let mut s = Session::new(Thresholds::default());
        for n in 0..500 {
            s.sample(SAMPLE_NEW, 0, user(n));
        }
        assert!(s.tick(false, &ONE_CPU, &[]).is_empty(), "a calm second");
        assert!(s.tick(false, &ONE_CPU, &[]).is_empty(), "and another");
        s.sample(SAMPLE_VERIFIED, 0, udp([0xde, 0xad, 0xbe, 0xef], 44, 9));
        for second in 0..4 {
            for n in 0..400 {
                s.sample(
                    SAMPLE_NEW,
                    0,
                    udp([0xde, 0xad, 0xbe, 0xef], 44, second * 1000 + n),
                );
            }
            assert!(s.tick(true, &ONE_CPU, &[]).is_empty(), "second {second}");
        }
    }

    #[test]
    fn a_floods_first_packets_in_a_calm_looking_second_do_not_veto_it() {
        let mut s = Session::new(Thresholds::default());
        for n in 0..500 {
            s.sample(SAMPLE_NEW, 0, user(n));
        }
        assert!(s.tick(false, &ONE_CPU, &[]).is_empty());
        assert!(s.tick(false, &ONE_CPU, &[]).is_empty());
        let flood = |n: u16| udp([0xde, 0xad, 0xbe, 0xef], 44, n);
        // The flood starts late in a second that ends calm.
        for n in 0..300 {
            s.sample(SAMPLE_NEW, 0, flood(n));
        }
        assert!(s.tick(false, &ONE_CPU, &[]).is_empty());
        let mut installed = false;
        for second in 1..=2 {
            for n in 0..400 {
                s.sample(SAMPLE_NEW, 0, flood(second * 1000 + n));
            }
            installed |= s
                .tick(true, &ONE_CPU, &[])
                .iter()
                .any(|a| matches!(a, SigChange::Install { .. }));
        }
        assert!(
            installed,
            "learned in the first flood second, installed in the second"
        );
    }

    #[test]
    fn no_flood_no_learning_and_quiet_signatures_expire() {
        let mut s = Session::new(Thresholds::default());
        for n in 0..2000 {
            s.sample(SAMPLE_NEW, 0, udp([0xde, 0xad, 0xbe, 0xef], 44, n));
        }
        assert!(s.tick(false, &ONE_CPU, &[]).is_empty());
        let busy = Installed {
            id: 3,
            expires: true,
            hits: 1000,
        };
        let quiet = Installed { hits: 0, ..busy };
        let pinned = Installed {
            id: 4,
            expires: false,
            hits: 0,
        };
        for _ in 0..10 {
            assert!(s.tick(false, &ONE_CPU, &[busy, pinned]).is_empty());
        }
        for second in 1..QUIET_SECS {
            assert!(
                s.tick(false, &ONE_CPU, &[quiet, pinned]).is_empty(),
                "second {second}"
            );
        }
        assert_eq!(
            s.tick(false, &ONE_CPU, &[quiet, pinned]),
            vec![SigChange::Expire { id: 3 }]
        );
    }

    /// CPU 0 took `flood` samples of the flood, CPU 1 `users` of the
    /// users' new flows, in turn.
    fn two_cpus(flood: u16, users: u16, seed: u16) -> Vec<(u32, Fingerprint)> {
        let mut window: Vec<_> = (0..flood)
            .map(|n| (0, udp([0xde, 0xad, 0xbe, 0xef], 44, seed + n)))
            .collect();
        window.extend((0..users).map(|n| (1, user(seed + n))));
        window
    }

    /// [`proportionate`] of a window that holds every sample sent.
    fn cut(window: Vec<(u32, Fingerprint)>, seen: &Seen<'_>) -> Vec<Fingerprint> {
        let mut sent = BTreeMap::new();
        for (cpu, _) in &window {
            *sent.entry(*cpu).or_default() += 1;
        }
        proportionate(window, &sent, seen)
    }

    fn is_flood(fp: &Fingerprint) -> bool {
        fp.bytes()[FP_PAYLOAD..FP_PAYLOAD + 4] == [0xde, 0xad, 0xbe, 0xef]
    }

    /// The flood fills CPU 0's budget (500 of its 500,000 new flows); CPU
    /// 1's 100 clients are all sampled. The window holds what the CPUs
    /// saw: 500,000 flood flows to 100 clients' rounds to no client.
    #[test]
    fn a_cpu_whose_budget_binds_weighs_by_what_it_saw() {
        let seen = Seen {
            new_flows: &[500_000, 100],
            every: 1,
            budget: 500,
        };
        let window = cut(two_cpus(500, 100, 0), &seen);
        assert_eq!(window.len(), 500);
        assert!(window.iter().all(is_flood));
    }

    /// Under a mask of 16, CPU 1's budget did not bind: its 100 samples are
    /// one in 16 of its 1,600 new flows, CPU 0's 500 one in 160 of its
    /// 80,000. CPU 1 keeps a tenth, every tenth.
    #[test]
    fn a_cpu_whose_budget_did_not_bind_sent_one_in_every_considered() {
        let seen = Seen {
            new_flows: &[80_000, 1_600],
            every: 16,
            budget: 500,
        };
        let taken = two_cpus(500, 100, 0);
        let users: Vec<_> = taken[500..].iter().map(|(_, fp)| *fp).collect();
        let window = cut(taken, &seen);
        let kept: Vec<_> = window.iter().filter(|fp| !is_flood(fp)).collect();
        assert_eq!(window.len(), 510);
        assert_eq!(kept.len(), 10);
        assert!(
            kept.iter()
                .zip(users.iter().skip(9).step_by(10))
                .all(|(a, b)| *a == b)
        );
    }

    /// CPUs alike (both budgets bound on floods alike, or neither bound)
    /// keep every sample; and a second's CPU numbers past what the
    /// counters know count as having sent what they saw.
    #[test]
    fn cpus_alike_keep_every_sample() {
        for (new_flows, flood, users) in [
            (&[400_000, 400_000][..], 500, 500),
            (&[300, 120][..], 300, 120),
            (&[][..], 500, 120),
        ] {
            let seen = Seen {
                new_flows,
                every: 1,
                budget: 500,
            };
            let n = cut(two_cpus(flood, users, 0), &seen).len();
            assert_eq!(n, usize::from(flood + users), "{new_flows:?}");
        }
    }

    /// A full window holds what came first: CPU 1's 100 samples and 300 of
    /// the 500 CPU 0 sent of the same number of new flows. CPU 0 kept a
    /// smaller share of what it saw: CPU 1 keeps 60.
    #[test]
    fn samples_past_a_full_window_count_for_their_cpu() {
        let seen = Seen {
            new_flows: &[500, 100],
            every: 1,
            budget: 500,
        };
        let sent = BTreeMap::from([(0, 500), (1, 100)]);
        let window = proportionate(two_cpus(300, 100, 0), &sent, &seen);
        assert_eq!(window.iter().filter(|fp| is_flood(fp)).count(), 300);
        assert_eq!(window.iter().filter(|fp| !is_flood(fp)).count(), 60);
    }

    /// Before the cut, CPU 1's clients were a sixth of each window and no
    /// trait covered 90% of it: the flood on CPU 0 was never learned.
    #[test]
    fn a_flood_on_one_cpu_is_learned_beside_busy_clients_on_another() {
        let mut s = Session::new(Thresholds::default());
        for n in 0..500 {
            s.sample(SAMPLE_NEW, 1, user(n));
        }
        let calm = Seen {
            new_flows: &[0, 500],
            every: 1,
            budget: 500,
        };
        assert!(s.tick(false, &calm, &[]).is_empty());
        assert!(s.tick(false, &calm, &[]).is_empty());
        let seen = Seen {
            new_flows: &[500_000, 100],
            every: 1,
            budget: 500,
        };
        let mut installed = Vec::new();
        for second in 0..2 {
            for (cpu, fp) in two_cpus(500, 100, 1000 * (second + 1)) {
                s.sample(SAMPLE_NEW, cpu, fp);
            }
            installed.extend(s.tick(true, &seen, &[]));
        }
        let [SigChange::Install { share, .. }] = installed.as_slice() else {
            panic!("{installed:?}: {:?}", s.note());
        };
        assert!(*share > 0.99, "{share}");
    }

    #[test]
    fn a_flood_is_pressure_many_limit_drops_or_a_jump_in_new_flows() {
        assert!(flood(true, 0, 0, 0.0));
        assert!(flood(false, FLOOD_DROPS, 0, 0.0));
        assert!(!flood(false, FLOOD_DROPS - 1, 0, 0.0));
        assert!(flood(false, 0, FLOOD_NEW_FLOWS, 100.0));
        assert!(!flood(false, 0, FLOOD_NEW_FLOWS - 1, 0.0), "too few");
        assert!(!flood(false, 0, 20_000, 2_500.0), "a busy host's normal");
        let mut calm = 0.0;
        for _ in 0..100 {
            calm = calm_rate(calm, 1_000, false);
        }
        assert!((calm - 1_000.0).abs() < 10.0);
        assert!((calm_rate(calm, 1_000_000, true) - calm).abs() < f64::EPSILON);
    }
}
