//! Which of the data plane's bans a learned signature lifts.
//!
//! A ban is earned by a source's own packets, and a spoofed flood's
//! packets carry an address someone else owns: a flood that names a real
//! client's address gets that client banned, and it can no longer
//! connect. Once a signature drops the flood, its packets are dropped
//! before any per-source state, so the bans they earned stop nothing of
//! the flood; they only lock out the owners of the addresses. The bans
//! made since the flood began are lifted. A real sender that keeps
//! sending packets the signature does not match goes over its limits
//! again and is banned again, on fresh evidence.

use guard_common::{SourceKey, SourceState};

/// How long before the start of the first second judged a flood's the
/// flood may have begun: its first packets may fall in the second before,
/// which did not look like one.
pub const FLOOD_LEAD_NS: u64 = 1_000_000_000;

/// The sources banned at `now_ns` whose ban was made at `since_ns` or
/// later. The data plane keeps a ban's end only; its start is taken as
/// the end less `ban_ns`, the ban's length now (a reload that shortened
/// it makes older bans look newer).
#[must_use]
pub fn made_since(
    sources: &[(SourceKey, SourceState)],
    since_ns: u64,
    now_ns: u64,
    ban_ns: u64,
) -> Vec<SourceKey> {
    sources
        .iter()
        .filter(|(_, st)| {
            st.banned_until_ns > now_ns && st.banned_until_ns.saturating_sub(ban_ns) >= since_ns
        })
        .map(|(key, _)| *key)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn banned(last: u8, until_ns: u64) -> (SourceKey, SourceState) {
        let st = SourceState {
            banned_until_ns: until_ns,
            ..SourceState::ZERO
        };
        (SourceKey::v4([198, 18, 0, last], 32), st)
    }

    #[test]
    fn only_the_bans_made_since_the_flood_began_are_lifted() {
        let ban = 60 * SEC;
        let (since, now) = (1000 * SEC, 1005 * SEC);
        let sources = [
            // Made a second before the flood began: kept.
            banned(1, since - SEC + ban),
            // Made as it began, and during it: lifted.
            banned(2, since + ban),
            banned(3, now - SEC + ban),
            // Never banned, and a ban that is over: nothing to lift.
            banned(4, 0),
            banned(5, now),
        ];
        let lifted = made_since(&sources, since, now, ban);
        assert_eq!(lifted, vec![sources[1].0, sources[2].0]);
    }
}
