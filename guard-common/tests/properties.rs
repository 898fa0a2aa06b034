//! Property tests: the token bucket, the key encoding and the XDP side's
//! fingerprint reads hold their promises at every rate, burst, time,
//! address and packet, extremes included.

use guard_common::{
    SourceKey,
    bucket::{Limit, MAX_BURST, MAX_RATE, NANOS_PER_SEC},
    dissect::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, TCP_MIN_HLEN, UDP_HLEN},
    fingerprint::{Fingerprint, reads},
};
use proptest::prelude::*;

fn rate() -> impl Strategy<Value = u64> {
    prop_oneof![Just(1), Just(MAX_RATE), 1..=MAX_RATE, 1u64..10_000]
}

fn burst() -> impl Strategy<Value = u32> {
    prop_oneof![Just(1), Just(MAX_BURST), 1..=MAX_BURST, 1u32..1000]
}

/// Gaps between arrivals: zero (a burst), small, large, and up to the
/// whole u64 time range.
fn gaps() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(
        prop_oneof![
            Just(0u64),
            0u64..1_000_000,
            0u64..10 * NANOS_PER_SEC,
            any::<u64>().prop_map(|g| g >> 4)
        ],
        1..200,
    )
}

proptest! {
    /// Tokens never exceed the burst, and an arrival is admitted exactly
    /// when at least one token is there. No arithmetic overflows (the test
    /// profile checks overflow).
    #[test]
    fn tokens_never_exceed_burst(rate in rate(), burst in burst(), start in any::<u64>().prop_map(|s| s >> 2), gaps in gaps()) {
        let limit = Limit::new(rate, burst);
        let mut tat = 0u64;
        let mut now = start;
        for gap in gaps {
            now = now.saturating_add(gap);
            let tokens = limit.tokens(tat, now);
            prop_assert!(tokens <= u64::from(burst), "{tokens} tokens > burst {burst}");
            if let Some(next) = limit.admit(tat, now) {
                prop_assert!(tokens >= 1);
                prop_assert!(next >= tat);
                tat = next;
            } else {
                prop_assert_eq!(tokens, 0);
            }
        }
    }

    /// Over any stretch of time the bucket admits at most
    /// burst + elapsed / interval arrivals.
    #[test]
    fn admits_no_more_than_burst_plus_refill(rate in 1u64..100_000, burst in 1u32..10_000, gaps in gaps()) {
        let limit = Limit::new(rate, burst);
        let start = 1_000 * NANOS_PER_SEC;
        let mut tat = 0u64;
        let mut now = start;
        let mut admitted = 0u64;
        for gap in gaps {
            now = now.saturating_add(gap % (2 * NANOS_PER_SEC));
            if let Some(next) = limit.admit(tat, now) {
                tat = next;
                admitted += 1;
            }
        }
        let bound = u64::from(burst) + (now - start) / limit.interval_ns;
        prop_assert!(admitted <= bound, "admitted {admitted} > bound {bound}");
    }

    /// Arrivals spaced one interval apart are all admitted, even with a
    /// burst of one.
    #[test]
    fn the_sustained_rate_always_passes(rate in 1u64..=MAX_RATE, burst in burst(), n in 1usize..500) {
        let limit = Limit::new(rate, burst);
        let mut tat = 0u64;
        let mut now = NANOS_PER_SEC;
        for _ in 0..n {
            tat = limit.admit(tat, now).expect("admitted at the sustained rate");
            now += limit.interval_ns;
        }
    }

    /// An IPv6 key keeps exactly the prefix and is idempotent; keys of
    /// addresses in one prefix are equal.
    #[test]
    fn masking_keeps_the_prefix(addr in any::<[u8; 16]>(), other in any::<[u8; 16]>(), len in 0u8..=128) {
        let masked = SourceKey::v6(addr, len).addr;
        prop_assert_eq!(SourceKey::v6(masked, len).addr, masked);
        let a = u128::from_be_bytes(addr);
        let keep = if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) };
        prop_assert_eq!(u128::from_be_bytes(masked), a & keep);
        // Another address with the same top bits gets the same key.
        let o = (u128::from_be_bytes(other) & !keep) | (a & keep);
        prop_assert_eq!(SourceKey::v6(o.to_be_bytes(), len), SourceKey::v6(addr, len));
    }

    #[test]
    fn v4_keys_are_the_masked_address(addr in any::<[u8; 4]>(), len in 0u8..=32) {
        let key = SourceKey::v4(addr, len);
        let keep = if len == 0 { 0 } else { u32::MAX << (32 - u32::from(len)) };
        prop_assert_eq!(&key.addr[..4], &(u32::from_be_bytes(addr) & keep).to_be_bytes()[..]);
        prop_assert!(key.addr[4..].iter().all(|b| *b == 0));
        prop_assert_eq!(key.prefix_len, len);
    }

    /// The fingerprint the XDP program assembles from its word reads is
    /// the reference's, for any header bytes, transport, payload length
    /// and bytes past the datagram (link padding, or the frame's end,
    /// where the program reads what it has and zeros the rest).
    #[test]
    fn word_reads_give_the_reference_fingerprint(
        v4 in any::<bool>(),
        transport in 0usize..3,
        header in any::<[u8; 60]>(),
        payload in prop::collection::vec(any::<u8>(), 0..40),
        past in prop::collection::vec(any::<u8>(), 0..24),
    ) {
        let proto = match (transport, v4) {
            (0, _) => IPPROTO_TCP,
            (1, _) => IPPROTO_UDP,
            (_, true) => IPPROTO_ICMP,
            (_, false) => IPPROTO_ICMPV6,
        };
        let (ip_hlen, fixed) = (if v4 { 20 } else { 40 }, if proto == IPPROTO_TCP { TCP_MIN_HLEN } else { UDP_HLEN });
        let mut ip = header[..ip_hlen + fixed].to_vec();
        ip.extend_from_slice(&payload);
        let ip_len = ip.len() as u16;
        if v4 {
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
        } else {
            ip[0] = 0x60 | (ip[0] & 0x0f);
            ip[4..6].copy_from_slice(&(ip_len - 40).to_be_bytes());
        }
        let mut frame = ip.clone();
        frame.extend_from_slice(&past);
        let word = |at: usize| {
            let mut b = [0xa5u8; 8];
            for (i, v) in b.iter_mut().enumerate() {
                if let Some(x) = frame.get(at + i) {
                    *v = *x;
                }
            }
            u64::from_le_bytes(b)
        };
        let l4 = ip_hlen;
        let start = l4 + fixed;
        let [p0, p1] = reads::payload([word(start), word(start + 8)], ip.len() - start);
        let l4_words = [word(l4), if reads::transport_len(proto) > 8 { word(l4 + 8) } else { 0 }];
        let read = Fingerprint {
            words: [
                reads::ip(v4, [word(0), word(8)], proto, ip_len),
                reads::transport(proto, l4_words),
                p0,
                p1,
            ],
        };
        prop_assert_eq!(Some(read), Fingerprint::of(&frame, l4, proto));
    }
}
