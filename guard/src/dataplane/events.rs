//! The program's ring buffers, read: events (a source started being
//! limited, a source was banned), logged one line each, bans also handed
//! to the controller; and fingerprint samples, for the learner
//! ([`Records`]). The program rate-limits events (`event-rate`), so a
//! flood of distinct sources cannot flood the log.

use std::marker::PhantomData;

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
    let mut records = Records::<Event>::new(ring, &iface, "event")?;
    loop {
        for event in records.next().await? {
            // Full only if the run loop is far behind; it would rather
            // miss a line or a cleanup than stall the ring's reader.
            if events.try_send((iface.clone(), event)).is_err() && event.kind == EVENT_BANNED {
                tracing::warn!(
                    "{iface}: {}; too many events at once: its conntrack entries expire by themselves",
                    describe(&event)
                );
            }
        }
    }
}

/// The records of one of the program's ring buffers, as `T`, for a reader
/// task: the events, or the fingerprint samples.
pub struct Records<T> {
    fd: AsyncFd<RingBuf<MapData>>,
    /// The interface and what a record is, for errors.
    iface: String,
    what: &'static str,
    record: PhantomData<T>,
}

impl<T: aya::Pod> Records<T> {
    /// `ring`, registered with tokio.
    pub fn new(ring: RingBuf<MapData>, iface: &str, what: &'static str) -> Result<Self> {
        // SAFETY: the ring buffer owns its map fd, and AsyncFd owns the
        // ring buffer: the fd stays open and the same until the AsyncFd is
        // dropped.
        let fd = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| e.into_parts().1)
            .with_context(|| format!("watching the {what} ring buffer"))?;
        Ok(Self {
            fd,
            iface: iface.to_owned(),
            what,
            record: PhantomData,
        })
    }

    /// Every record the ring holds, once it holds one. A record of another
    /// size is said and skipped. Cancel-safe: nothing is read before the
    /// ring is ready.
    pub async fn next(&mut self) -> Result<Vec<T>> {
        let mut ready = self
            .fd
            .readable_mut()
            .await
            .with_context(|| format!("waiting for the {} ring buffer", self.what))?;
        let ring = ready.get_inner_mut();
        let mut out = Vec::new();
        while let Some(item) = ring.next() {
            if let Some(r) = record::<T>(&item) {
                out.push(r);
            } else {
                tracing::error!(
                    "{}: a {} of {} bytes, expected {}",
                    self.iface,
                    self.what,
                    item.len(),
                    size_of::<T>()
                );
            }
        }
        ready.clear_ready();
        Ok(out)
    }
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
    let secs = event
        .banned_until_ns
        .saturating_sub(event.time_ns)
        .div_ceil(NANOS_PER_SEC);
    let source = event.source;
    match (event.kind, event.monitor != 0) {
        (EVENT_LIMITED, false) => format!(
            "{source} is over its {class} limit: dropping its excess new flows (said once per summary interval; the summary line counts them)"
        ),
        (EVENT_LIMITED, true) => format!(
            "{source} is over its {class} limit: enforce would drop its excess new flows; monitor mode passes them (said once per summary interval; the summary line counts them)"
        ),
        (EVENT_BANNED, false) => {
            format!("{source} banned for {secs}s: it kept exceeding its {class} limit")
        }
        (EVENT_BANNED, true) => format!(
            "{source} kept exceeding its {class} limit: enforce would ban it for {secs}s and delete its conntrack entries; monitor mode passes it and keeps them"
        ),
        (other, _) => format!("{source}: unknown event kind {other}"),
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
            monitor: 0,
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
        e.monitor = 1;
        assert_eq!(
            describe(&e),
            "198.18.0.7 kept exceeding its udp limit: enforce would ban it for 60s and delete its conntrack entries; monitor mode passes it and keeps them"
        );
        e.kind = EVENT_LIMITED;
        assert!(describe(&e).contains("monitor mode passes them"));
    }

    #[test]
    fn parse_checks_the_size() {
        assert!(record::<Event>(&[0; 3]).is_none());
        assert!(record::<Event>(&[0; size_of::<Event>()]).is_some());
    }
}
