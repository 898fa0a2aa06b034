//! Attack fingerprints on one interface, the I/O around the learner
//! (`model::learner`): the program's samples in, once a second the
//! learner's decisions into `GUARD_SIGS` (through the data plane's handle)
//! and one log line each; a signature that drops its flood lifts the bans
//! made since the flood began (`model::bans` says why), which go to the
//! run loop for the fleet; and the sample mask kept so the program
//! considers about [`CONSIDERED_PER_SAMPLE`] packets for each sample it
//! may send.

use std::{path::PathBuf, time::Duration};

use anyhow::Result;
use guard_common::{
    Counter, CounterBlock, SourceKey,
    fingerprint::{SIG_LEARNED, Sample, SigMeta},
};
use tokio::{
    sync::{mpsc, watch},
    time::{MissedTickBehavior, interval},
};

use crate::{
    config::{Fingerprints, settings::SAMPLE_RATE},
    dataplane::{events::Records, handle::Dataplane},
    host::clock::{monotonic_ns, unix_now_ms},
    model::{
        bans::{FLOOD_LEAD_NS, made_since},
        fingerprint::{Thresholds, describe},
        learner::{Installed, Seen, Session, SigChange, calm_rate, flood},
        level::Level,
    },
};

/// Packets the program considers (fingerprints) for each sample it may
/// send a second, under a flood: enough to fill the budget, few enough
/// that most flood packets skip the fingerprint.
const CONSIDERED_PER_SAMPLE: u64 = 8;

/// The bans a signature lifted on an interface: its name, the sources.
pub type Lifted = (String, Vec<SourceKey>);

/// What the learner keeps from one second to the next.
struct Seconds {
    /// Each CPU's counters at the last tick.
    last: Vec<CounterBlock>,
    /// The calm average of new flows a second (`learner::calm_rate`).
    calm: f64,
    /// The packets of the second before the last, for the sample mask.
    before: u64,
    /// When the last second ended (CLOCK_MONOTONIC ns): ticks may come
    /// late.
    last_ns: u64,
    /// While a flood lasts, from when its bans are lifted by the next
    /// signature: when it may have begun, or the last lift (CLOCK_MONOTONIC
    /// ns).
    flood_since: Option<u64>,
}

/// Runs the learner of the interface whose maps are pinned in `pin_dir`
/// until the task is dropped. `level` is the controller's pressure level;
/// the bans a signature lifts go to `lifted`, with the interface's name.
pub async fn learn(
    iface: String,
    mut samples: Records<Sample>,
    pin_dir: PathBuf,
    mode: Fingerprints,
    (level, lifted): (watch::Receiver<Level>, mpsc::UnboundedSender<Lifted>),
) -> Result<()> {
    let mut dataplane = Dataplane::open_pinned_daemon(&pin_dir)?;
    let mut session = Session::new(Thresholds::default());
    let mut ticker = interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut kept = Seconds {
        last: dataplane.counters_per_cpu()?,
        calm: 0.0,
        before: 0,
        last_ns: monotonic_ns(),
        flood_since: None,
    };
    loop {
        tokio::select! {
            batch = samples.next() => {
                for s in batch? {
                    session.sample(s.kind, s.cpu, s.fp);
                }
            }
            _ = ticker.tick() => {
                let pressure = *level.borrow() != Level::Normal;
                match second(&iface, &mut dataplane, &mut session, &mut kept, pressure, mode) {
                    Ok(keys) if !keys.is_empty() => {
                        // No receiver: guard is stopping.
                        let _ = lifted.send((iface.clone(), keys));
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!("{iface}: fingerprints: {e:#}"),
                }
            }
        }
    }
}

/// Tells the learner whether the second was a flood's, installs and
/// expires what it says; returns the bans lifted.
fn second(
    iface: &str,
    dataplane: &mut Dataplane,
    session: &mut Session,
    kept: &mut Seconds,
    pressure: bool,
    mode: Fingerprints,
) -> Result<Vec<SourceKey>> {
    let per_cpu = dataplane.counters_per_cpu()?;
    // The configuration the program ran this second under: its sample
    // mask, its mode.
    let config = dataplane.config()?;
    let (now, last) = (
        CounterBlock::total(&per_cpu),
        CounterBlock::total(&kept.last),
    );
    let delta = |c: Counter| now.get(c).wrapping_sub(last.get(c));
    let drops = [
        Counter::DropSourceLimit,
        Counter::DropPrefixLimit,
        Counter::DropGlobalBudget,
        Counter::DropClosedPort,
        Counter::DropBanned,
    ]
    .into_iter()
    .map(delta)
    .sum();
    let new_flows = delta(Counter::NewFlows);
    let flooding = flood(pressure, drops, new_flows, kept.calm);
    kept.calm = calm_rate(kept.calm, new_flows, flooding);
    let now_ns = monotonic_ns();
    let began = kept.last_ns.saturating_sub(FLOOD_LEAD_NS);
    kept.flood_since = flooding.then(|| kept.flood_since.unwrap_or(began));
    kept.last_ns = now_ns;
    let mut lifted = Vec::new();
    let table = dataplane.sigs()?;
    let installed: Vec<Installed> = table
        .slots()
        .map(|slot| Installed {
            id: table.meta[slot].id,
            expires: table.meta[slot].origin == SIG_LEARNED && table.meta[slot].pinned == 0,
            hits: now.sig_hits(slot).wrapping_sub(last.sig_hits(slot)),
        })
        .collect();
    let new_flows = new_flows_by_cpu(&per_cpu, &kept.last);
    let seen = Seen {
        new_flows: &new_flows,
        every: u64::from(config.sample_mask) + 1,
        budget: SAMPLE_RATE,
    };
    for action in session.tick(flooding, &seen, &installed) {
        match action {
            SigChange::Install { sig, share } => {
                let id = dataplane.edit_sigs(|t| {
                    let id = t.next_id();
                    let slot = t.free_slot()?;
                    let meta = SigMeta {
                        id,
                        origin: SIG_LEARNED,
                        since_ms: unix_now_ms(),
                        hits_base: now.sig_hits(slot),
                        share_ppm: ppm(share),
                        ..SigMeta::default()
                    };
                    t.install(sig, meta, mode == Fingerprints::Monitor)
                        .map(|_| id)
                })?;
                if let Some(id) = id {
                    let counting = if mode == Fingerprints::Monitor {
                        " (monitor: counting, not dropping)"
                    } else if !config.enforcing() {
                        " (guard is in monitor mode: counting, not dropping)"
                    } else {
                        ""
                    };
                    tracing::info!(
                        "{iface}: sig {id}: {}: {:.1}% of new flows{counting}",
                        describe(&sig),
                        share * 100.0,
                    );
                    if counting.is_empty()
                        && let Some(since) = kept.flood_since
                    {
                        lifted.extend(lift_bans(iface, dataplane, id, since, now_ns)?);
                        // A later signature of this flood lifts only the
                        // bans made after this one: a real sender banned
                        // again on fresh evidence stays banned.
                        kept.flood_since = Some(now_ns);
                    }
                }
            }
            SigChange::Expire { id } => {
                if dataplane.edit_sigs(|t| t.remove(id))?.is_some() {
                    tracing::info!("{iface}: sig {id}: expired, it stopped matching");
                }
            }
        }
    }
    if let Some(note) = session.note() {
        tracing::debug!("{iface}: learner: {note}");
    }
    let packets = delta(Counter::Packets);
    let mask = sample_mask(packets, kept.before);
    kept.before = packets;
    if config.sample_mask != mask {
        dataplane.update_config(|c| c.sample_mask = mask)?;
    }
    kept.last = per_cpu;
    Ok(lifted)
}

/// The new flows each CPU saw between two readings of the counters.
fn new_flows_by_cpu(now: &[CounterBlock], last: &[CounterBlock]) -> Vec<u64> {
    now.iter()
        .zip(last)
        .map(|(n, l)| {
            n.get(Counter::NewFlows)
                .wrapping_sub(l.get(Counter::NewFlows))
        })
        .collect()
}

/// Signature `id` drops the flood that began at `since_ns`: lifts the bans
/// made since then, says so, and returns them. A ban that cannot be lifted
/// is said and left.
fn lift_bans(
    iface: &str,
    dataplane: &mut Dataplane,
    id: u32,
    since_ns: u64,
    now_ns: u64,
) -> Result<Vec<SourceKey>> {
    let ban_ns = dataplane.config()?.ban_duration_ns;
    let made = made_since(&dataplane.sources()?, since_ns, now_ns, ban_ns);
    let mut lifted = Vec::new();
    for result in dataplane.unban_keys(&made, now_ns)? {
        match result {
            Ok(Some((key, _))) => lifted.push(key),
            Ok(None) => {}
            Err(e) => tracing::error!("{iface}: sig {id}: a ban is not lifted: {e:#}"),
        }
    }
    if !lifted.is_empty() {
        let shown: Vec<String> = lifted.iter().take(5).map(ToString::to_string).collect();
        let more = lifted.len().saturating_sub(shown.len());
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        let n = lifted.len();
        let s = if n == 1 { "" } else { "s" };
        tracing::warn!(
            "{iface}: sig {id} drops what it matches of the flood before any per-source limit: lifted {n} ban{s} made during it ({}{more}); a spoofed flood's bans name addresses its sender does not own",
            shown.join(", "),
        );
    }
    Ok(lifted)
}

/// The sample mask for `packets` in the last second and `before` in the
/// one before it: a power of two less one, so that about
/// [`CONSIDERED_PER_SAMPLE`] packets are considered for each sample the
/// budget allows, at the smaller of the two rates. A flood's first second
/// may carry a burst (a generator's queue let go at once) several times
/// its rate, and a mask sized for it left the next second too few samples
/// to check a signature on, which then took two seconds more to learn.
fn sample_mask(packets: u64, before: u64) -> u32 {
    let packets = packets.min(before);
    let per = (packets / (CONSIDERED_PER_SAMPLE * u64::from(SAMPLE_RATE))).max(1);
    u32::try_from(per.next_power_of_two() - 1).unwrap_or(u32::MAX)
}

/// A share in parts per million (0 to 1,000,000).
fn ppm(share: f64) -> u32 {
    let ppm = (share.clamp(0.0, 1.0) * 1e6).round();
    #[expect(
        clippy::cast_sign_loss,
        clippy::cast_possible_truncation,
        reason = "clamped to 0..=1e6"
    )]
    let ppm = ppm as u32;
    ppm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mask_keeps_the_considered_packets_near_a_multiple_of_the_budget() {
        assert_eq!(sample_mask(0, 0), 0);
        assert_eq!(sample_mask(1000, 1000), 0);
        let rate = CONSIDERED_PER_SAMPLE * u64::from(SAMPLE_RATE);
        assert_eq!(sample_mask(rate * 3, rate * 3), 3);
        assert_eq!(sample_mask(rate * 1000, rate * 1000), 1023);
    }

    /// A flood's first second, a burst after calm, does not size the mask
    /// for the next: the smaller of the two seconds does.
    #[test]
    fn a_burst_does_not_size_the_mask_alone() {
        let rate = CONSIDERED_PER_SAMPLE * u64::from(SAMPLE_RATE);
        assert_eq!(sample_mask(rate * 1000, 1000), 0);
        assert_eq!(sample_mask(rate * 3, rate * 1000), 3);
        assert_eq!(sample_mask(rate * 1000, rate * 3), 3);
    }
}
