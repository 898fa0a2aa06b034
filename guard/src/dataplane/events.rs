//! Events from the XDP program (a source started being limited, a source
//! was banned), read from its ring buffer and logged one line each; bans
//! also go to the controller. The
//! program rate-limits them (`event-rate`), so a flood of distinct sources
//! cannot flood the log.

use anyhow::{Context as _, Result};
use aya::maps::{MapData, RingBuf};
use guard_common::{
    Event, FlowClass,
    bucket::NANOS_PER_SEC,
    state::{EVENT_BANNED, EVENT_LIMITED},
};
use tokio::{
    io::{Interest, unix::AsyncFd},
    sync::mpsc::Sender,
};

/// An event and the interface it came from.
pub type Tagged = (String, Event);

/// Hands every event from `ring` to the run loop (which logs them and
/// gives bans to the controller) until the task is dropped.
pub async fn forward(iface: String, ring: RingBuf<MapData>, events: Sender<Tagged>) -> Result<()> {
    let mut fd = watch(ring, "event")?;
    loop {
        let mut ready = fd.readable_mut().await.context("waiting for events")?;
        let ring = ready.get_inner_mut();
        while let Some(item) = ring.next() {
            if let Some(event) = record::<Event>(&item) {
                // Full only if the run loop is far behind; it would rather
                // miss a line or a cleanup than stall the ring's reader.
                if events.try_send((iface.clone(), event)).is_err() && event.kind == EVENT_BANNED {
                    tracing::warn!(
                        "{iface}: {}; too many events at once: its conntrack entries expire by themselves",
                        describe(&event)
                    );
                }
            } else {
                tracing::error!(
                    "{iface}: an event of {} bytes, expected {}",
                    item.len(),
                    size_of::<Event>()
                );
            }
        }
        ready.clear_ready();
    }
}

/// A ring buffer registered with tokio, for a reader task; `what` names
/// its records in errors.
pub fn watch(ring: RingBuf<MapData>, what: &str) -> Result<AsyncFd<RingBuf<MapData>>> {
    // SAFETY: the ring buffer owns its map fd, and AsyncFd owns the ring
    // buffer: the fd stays open and the same until the AsyncFd is dropped.
    unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
        .with_context(|| format!("watching the {what} ring buffer"))
}

/// One ring-buffer record as `T`, if it is `T`'s size.
#[must_use]
pub fn record<T: aya::Pod>(bytes: &[u8]) -> Option<T> {
    (bytes.len() == size_of::<T>())
        // SAFETY: the length matches and T is plain data (aya::Pod).
        .then(|| unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// The log line for an event.
#[must_use]
pub fn describe(event: &Event) -> String {
    let class = FlowClass::ALL
        .iter()
        .find(|c| c.index() as u64 == u64::from(event.class))
        .map_or("unknown", |c| c.name());
    match event.kind {
        EVENT_LIMITED => format!(
            "{} is over its {class} limit: dropping its excess new flows (said once per summary interval; the summary line counts them)",
            event.source
        ),
        EVENT_BANNED => format!(
            "{} banned for {}s: it kept exceeding its {class} limit",
            event.source,
            event
                .banned_until_ns
                .saturating_sub(event.time_ns)
                .div_ceil(NANOS_PER_SEC)
        ),
        other => format!("{}: unknown event kind {other}", event.source),
    }
}

#[cfg(test)]
mod tests {
    use guard_common::SourceKey;

    use super::*;

    #[test]
    fn describes_limits_and_bans() {
        let mut e = Event {
            kind: EVENT_LIMITED,
            class: FlowClass::Syn as u32,
            source: SourceKey::v4([198, 18, 0, 7], 32),
            pad: 0,
            time_ns: 5 * NANOS_PER_SEC,
            banned_until_ns: 0,
        };
        assert_eq!(
            describe(&e),
            "198.18.0.7 is over its syn limit: dropping its excess new flows (said once per summary interval; the summary line counts them)"
        );
        e.kind = EVENT_BANNED;
        e.class = FlowClass::Udp as u32;
        e.banned_until_ns = 65 * NANOS_PER_SEC;
        assert_eq!(
            describe(&e),
            "198.18.0.7 banned for 60s: it kept exceeding its udp limit"
        );
    }

    #[test]
    fn parse_checks_the_size() {
        assert!(record::<Event>(&[0; 3]).is_none());
        assert!(record::<Event>(&[0; size_of::<Event>()]).is_some());
    }
}
