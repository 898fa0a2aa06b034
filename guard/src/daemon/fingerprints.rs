//! Attack fingerprints on one interface, the I/O around the learner
//! (`model::learner`): the program's samples in, once a second the
//! learner's decisions into `GUARD_SIGS` (through the data plane's handle)
//! and one log line each; and the sample mask kept so the program
//! considers about [`CONSIDERED_PER_SAMPLE`] packets for each sample it
//! may send.

use std::{path::PathBuf, time::Duration};

use anyhow::Result;
use guard_common::{
    Counter, CounterBlock,
    fingerprint::{SIG_LEARNED, Sample, SigMeta},
};
use tokio::{
    sync::watch,
    time::{MissedTickBehavior, interval},
};

use crate::{
    config::{Fingerprints, settings::SAMPLE_RATE},
    dataplane::{events::Records, handle::Dataplane},
    host::clock::unix_now_ms,
    model::{
        fingerprint::{Thresholds, describe},
        learner::{Installed, Session, SigChange, calm_rate, flood},
        level::Level,
    },
};

/// Packets the program considers (fingerprints) for each sample it may
/// send a second, under a flood: enough to fill the budget, few enough
/// that most flood packets skip the fingerprint.
const CONSIDERED_PER_SAMPLE: u64 = 8;

/// Runs the learner of the interface whose maps are pinned in `pin_dir`
/// until the task is dropped. `level` is the controller's pressure level.
pub async fn learn(
    iface: String,
    mut samples: Records<Sample>,
    pin_dir: PathBuf,
    mode: Fingerprints,
    level: watch::Receiver<Level>,
) -> Result<()> {
    let mut dataplane = Dataplane::open_pinned_daemon(&pin_dir)?;
    let mut session = Session::new(Thresholds::default());
    let mut ticker = interval(Duration::from_secs(1));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last = dataplane.counters()?;
    let mut calm = 0.0;
    // The packets of the second before the last, for the sample mask.
    let mut before = 0;
    loop {
        tokio::select! {
            batch = samples.next() => {
                for s in batch? {
                    session.sample(s.kind, s.fp);
                }
            }
            _ = ticker.tick() => {
                let pressure = *level.borrow() != Level::Normal;
                match second(&iface, &mut dataplane, &mut session, (&last, &mut calm, &mut before), pressure, mode) {
                    Ok(now) => last = now,
                    Err(e) => tracing::error!("{iface}: fingerprints: {e:#}"),
                }
            }
        }
    }
}

/// Tells the learner whether the second was a flood's, installs and
/// expires what it says; returns the counters read.
fn second(
    iface: &str,
    dataplane: &mut Dataplane,
    session: &mut Session,
    (last, calm, before): (&CounterBlock, &mut f64, &mut u64),
    pressure: bool,
    mode: Fingerprints,
) -> Result<CounterBlock> {
    let now = dataplane.counters()?;
    let delta = |c: Counter| now.get(c).wrapping_sub(last.get(c));
    let drops = [
        Counter::DropSourceLimit,
        Counter::DropPrefixLimit,
        Counter::DropGlobalBudget,
        Counter::DropBanned,
    ]
    .into_iter()
    .map(delta)
    .sum();
    let new_flows = delta(Counter::NewFlows);
    let flooding = flood(pressure, drops, new_flows, *calm);
    *calm = calm_rate(*calm, new_flows, flooding);
    let table = dataplane.sigs()?;
    let installed: Vec<Installed> = table
        .slots()
        .map(|slot| Installed {
            id: table.meta[slot].id,
            expires: table.meta[slot].origin == SIG_LEARNED && table.meta[slot].pinned == 0,
            hits: now.sig_hits(slot).wrapping_sub(last.sig_hits(slot)),
        })
        .collect();
    for action in session.tick(flooding, &installed) {
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
                    } else if !dataplane.config()?.enforcing() {
                        " (guard is in monitor mode: counting, not dropping)"
                    } else {
                        ""
                    };
                    tracing::info!(
                        "{iface}: sig {id}: {}: {:.1}% of new flows{counting}",
                        describe(&sig),
                        share * 100.0,
                    );
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
    let mask = sample_mask(packets, *before);
    *before = packets;
    if dataplane.config()?.sample_mask != mask {
        dataplane.update_config(|c| c.sample_mask = mask)?;
    }
    Ok(now)
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
