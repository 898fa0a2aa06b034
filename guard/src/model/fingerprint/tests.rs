use guard_common::{
    dissect::IPPROTO_UDP,
    fingerprint::{FP_PAYLOAD, FP_TTL},
};

use super::{text::WORDS, *};

/// xorshift64: deterministic samples without a crate.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// In `lo..=hi`.
    fn within(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    fn u8(&mut self) -> u8 {
        self.next() as u8
    }

    fn u16(&mut self) -> u16 {
        self.next() as u16
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.u8()).collect()
    }

    fn percent(&mut self, p: u64) -> bool {
        self.within(0, 99) < p
    }
}

/// The IPv4 header fields the tests vary.
struct Ip {
    ttl: u8,
    tos: u8,
    id: u16,
}

impl Ip {
    fn random(r: &mut Rng, ttl: u8) -> Self {
        Self {
            ttl,
            tos: 0,
            id: r.u16(),
        }
    }
}

fn ip4(ip: &Ip, proto: u8, l4: &[u8]) -> Fingerprint {
    let len = (20 + l4.len()) as u16;
    let mut p = vec![0x45, ip.tos];
    p.extend_from_slice(&len.to_be_bytes());
    p.extend_from_slice(&ip.id.to_be_bytes());
    p.extend_from_slice(&[0x40, 0, ip.ttl, proto, 0, 0, 192, 0, 2, 1, 198, 51, 100, 7]);
    p.extend_from_slice(l4);
    Fingerprint::of(&p, 20, proto).unwrap()
}

fn udp(ip: &Ip, sport: u16, dport: u16, payload: &[u8]) -> Fingerprint {
    let mut l4 = Vec::new();
    l4.extend_from_slice(&sport.to_be_bytes());
    l4.extend_from_slice(&dport.to_be_bytes());
    l4.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    l4.extend_from_slice(&[0, 0]);
    l4.extend_from_slice(payload);
    ip4(ip, IPPROTO_UDP, &l4)
}

fn syn(ip: &Ip, sport: u16, dport: u16, window: u16, options: &[u8]) -> Fingerprint {
    let mut l4 = Vec::new();
    l4.extend_from_slice(&sport.to_be_bytes());
    l4.extend_from_slice(&dport.to_be_bytes());
    l4.extend_from_slice(&[0x11, 0x22, 0x33, 0x44, 0, 0, 0, 0]);
    l4.push((((20 + options.len()) / 4) << 4) as u8);
    l4.push(0x02);
    l4.extend_from_slice(&window.to_be_bytes());
    l4.extend_from_slice(&[0, 0, 0, 0]);
    l4.extend_from_slice(options);
    ip4(ip, IPPROTO_TCP, &l4)
}

fn sample(n: usize, seed: u64, mut f: impl FnMut(&mut Rng) -> Fingerprint) -> Vec<Fingerprint> {
    let mut r = Rng(seed);
    (0..n).map(|_| f(&mut r)).collect()
}

/// A flood's packet: payload `magic` then random bytes (`len` in all),
/// random source port, IP ID and TTL (40..=128).
fn crafted(r: &mut Rng, magic: [u8; 4], len: usize) -> Fingerprint {
    let ttl = r.within(40, 128) as u8;
    let mut payload = magic.to_vec();
    payload.extend(r.bytes(len - 20 - 8 - 4));
    udp(&Ip::random(r, ttl), r.u16(), 53, &payload)
}

/// A DNS query with a random id and name, TTL 64.
fn dns(r: &mut Rng, dport: u16) -> Fingerprint {
    let mut payload = r.bytes(2);
    payload.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    let name = r.within(4, 40) as usize;
    payload.extend(r.bytes(name));
    udp(
        &Ip::random(r, 64),
        r.within(1024, 65535) as u16,
        dport,
        &payload,
    )
}

const PORTS: [u16; 4] = [53, 123, 443, 5353];

/// Nothing shared: random TTL, TOS, ID, ports from [`PORTS`], length
/// and payload.
fn noise(r: &mut Rng) -> Fingerprint {
    let ip = Ip {
        ttl: r.u8(),
        tos: r.u8(),
        id: r.u16(),
    };
    let dport = PORTS[r.within(0, 3) as usize];
    let len = r.within(0, 1400) as usize;
    udp(&ip, r.u16(), dport, &r.bytes(len))
}

fn normal(r: &mut Rng) -> Fingerprint {
    let dport = PORTS[r.within(0, 3) as usize];
    dns(r, dport)
}

fn flood(r: &mut Rng) -> Fingerprint {
    if r.percent(97) {
        crafted(r, [0xde, 0xad, 0xbe, 0xef], 44)
    } else {
        dns(r, 53)
    }
}

fn syn_flood(r: &mut Rng) -> Fingerprint {
    let ttl = r.within(30, 250) as u8;
    syn(&Ip::random(r, ttl), r.u16(), 443, 512, &[])
}

/// A Linux client's SYN: MSS, SACK permitted, timestamps, window scale.
fn linux_syn(r: &mut Rng) -> Fingerprint {
    let mut options = vec![0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a];
    options.extend(r.bytes(4));
    options.extend_from_slice(&[0, 0, 0, 0, 0x01, 0x03, 0x03, 0x07]);
    syn(
        &Ip::random(r, 64),
        r.within(32768, 60999) as u16,
        443,
        64240,
        &options,
    )
}

fn matched(sig: &Signature, sample: &[Fingerprint]) -> usize {
    sample.iter().filter(|fp| sig.matches(fp)).count()
}

fn round_trips(sig: &Signature) {
    let line = describe(sig);
    assert_eq!(parse(&line).as_ref(), Ok(sig), "{line}");
}

#[test]
fn a_crafted_udp_flood_is_learned() {
    let t = Thresholds::default();
    let learned = learn(&sample(1000, 1, flood), &sample(1000, 2, normal), &t).unwrap();
    let sig = learned.signature;
    let line = describe(&sig);
    assert!(line.contains("payload[0..4]=deadbeef"), "{line}");
    assert!(line.contains("len 44"), "{line}");
    assert!(line.starts_with("udp ip4 "), "{line}");
    assert!(learned.shares.attack >= 0.9 && learned.shares.contrast <= t.max_contrast);
    assert!(learned.predicates.len() <= t.max_predicates);

    let (attack, contrast) = (sample(1000, 3, flood), sample(1000, 4, normal));
    assert!(matched(&sig, &attack) >= 900);
    assert_eq!(matched(&sig, &contrast), 0);
    let verified = sample(500, 5, |r| dns(r, 53));
    assert!(check(&sig, &attack, &contrast, &verified, &t).is_ok());
    round_trips(&sig);
}

#[test]
fn learning_is_deterministic() {
    let t = Thresholds::default();
    let (attack, contrast) = (sample(600, 1, flood), sample(300, 2, normal));
    assert_eq!(learn(&attack, &contrast, &t), learn(&attack, &contrast, &t));
}

#[test]
fn a_flood_without_a_shared_trait_gives_nothing() {
    let t = Thresholds::default();
    assert_eq!(
        learn(&sample(1000, 6, noise), &sample(1000, 7, normal), &t),
        None
    );
}

#[test]
fn a_mixed_flood_gives_nothing_that_matches_normal_traffic() {
    let t = Thresholds::default();
    let mixed = |r: &mut Rng| {
        if r.percent(50) {
            crafted(r, [0xde, 0xad, 0xbe, 0xef], 44)
        } else {
            crafted(r, [0xca, 0xfe, 0xba, 0xbe], 60)
        }
    };
    let contrast = sample(1000, 9, normal);
    if let Some(learned) = learn(&sample(1000, 8, mixed), &contrast, &t) {
        assert_eq!(matched(&learned.signature, &contrast), 0);
        assert_eq!(matched(&learned.signature, &sample(1000, 10, normal)), 0);
    }
}

#[test]
fn a_syn_flood_without_options_is_learned() {
    let t = Thresholds::default();
    let learned = learn(
        &sample(1000, 11, syn_flood),
        &sample(1000, 12, linux_syn),
        &t,
    )
    .unwrap();
    let sig = learned.signature;
    let line = describe(&sig);
    assert!(line.starts_with("tcp "), "{line}");
    assert!(line.contains("win 512"), "{line}");
    assert!(line.contains("hlen 20"), "{line}");
    assert!(matched(&sig, &sample(1000, 13, syn_flood)) >= 900);
    assert_eq!(matched(&sig, &sample(1000, 14, linux_syn)), 0);
    round_trips(&sig);
}

#[test]
fn too_few_samples_learn_nothing() {
    let t = Thresholds::default();
    assert_eq!(
        learn(&sample(199, 1, flood), &sample(1000, 2, normal), &t),
        None
    );
    assert_eq!(
        learn(&sample(1000, 1, flood), &sample(99, 2, normal), &t),
        None
    );
}

#[test]
fn a_port_alone_is_not_a_trait() {
    // Contrast on another port: only `dport 53` tells them apart (the
    // rest, `ttl 64 tos 0 len 0-127`, is every Linux client's query),
    // and the port is the service, not the attack.
    let t = Thresholds::default();
    let attack = sample(1000, 15, |r| dns(r, 53));
    let contrast = sample(1000, 16, |r| dns(r, 123));
    assert_eq!(learn(&attack, &contrast, &t), None);
}

#[test]
fn check_refuses_what_it_must() {
    let t = Thresholds::default();
    let sig = learn(&sample(1000, 1, flood), &sample(1000, 2, normal), &t)
        .unwrap()
        .signature;
    let (attack, contrast) = (sample(1000, 17, flood), sample(1000, 18, normal));

    let mut verified = sample(500, 19, |r| dns(r, 53));
    verified.push(sample(1, 20, |r| crafted(r, [0xde, 0xad, 0xbe, 0xef], 44))[0]);
    let refusal = check(&sig, &attack, &contrast, &verified, &t).unwrap_err();
    assert_eq!(refusal, SigRefusal::Verified(1));
    assert!(
        refusal.to_string().contains("verified sources"),
        "{refusal}"
    );

    let half = sample(1000, 21, |r| {
        if r.percent(50) {
            crafted(r, [0xde, 0xad, 0xbe, 0xef], 44)
        } else {
            dns(r, 53)
        }
    });
    let refusal = check(&sig, &half, &contrast, &[], &t).unwrap_err();
    assert!(
        matches!(refusal, SigRefusal::Coverage { share, .. } if share < 0.6),
        "{refusal}"
    );
    assert!(
        refusal.to_string().contains("of the attack, 90.0% needed"),
        "{refusal}"
    );

    let any = parse("udp").unwrap();
    let refusal = check(&any, &attack, &contrast, &[], &t).unwrap_err();
    assert!(matches!(refusal, SigRefusal::Contrast { .. }), "{refusal}");

    let refusal = check(&sig, &attack[..150], &contrast, &[], &t).unwrap_err();
    assert_eq!(
        refusal,
        SigRefusal::TooFewAttack {
            have: 150,
            need: 200
        }
    );
    assert_eq!(
        refusal.to_string(),
        "only 150 attack samples, 200 needed to judge"
    );
    let refusal = check(&sig, &attack, &contrast[..50], &[], &t).unwrap_err();
    assert_eq!(
        refusal,
        SigRefusal::TooFewContrast {
            have: 50,
            need: 100
        }
    );
}

#[test]
fn describe_writes_what_operators_read() {
    let sig = parse("udp dport 5353 len 44 ttl 64 payload[0..4]=deadbeef").unwrap();
    assert_eq!(
        describe(&sig),
        "udp ttl 64 len 44 dport 5353 payload[0..4]=deadbeef"
    );
    let sig = parse("ip6 tcp flags 0x02 len 40-47 opts[0..3]=020405 win 512").unwrap();
    assert_eq!(
        describe(&sig),
        "tcp ip6 len 40-47 win 512 flags 0x02 opts[0..3]=020405"
    );
    assert_eq!(describe(&parse("icmp seq 7").unwrap()), "icmp seq 7");
    assert_eq!(
        describe(&parse("icmp6 sport 0x8000").unwrap()),
        "icmp6 sport 32768"
    );
    assert_eq!(describe(&parse("ip4 proto 1").unwrap()), "icmp");
    assert_eq!(
        describe(&parse("proto 1 ttl 0-127").unwrap()),
        "proto 1 ttl 0-127"
    );
    assert_eq!(describe(&parse("ip6 proto 47").unwrap()), "proto 47 ip6");
    assert_eq!(
        describe(&parse("payload[2..4]=0102 payload[4..6]=0304 payload[9..10]=ff").unwrap()),
        "payload[2..6]=01020304 payload[9..10]=ff"
    );
    assert_eq!(describe(&Signature::EMPTY), "any");
    assert_eq!(parse("any"), Ok(Signature::EMPTY));

    // Bits a prefix cannot show are left out, not misread.
    let mut mask = [0u8; FP_LEN];
    let mut value = [0u8; FP_LEN];
    mask[FP_TTL] = 0xf1;
    value[FP_TTL] = 0x41;
    mask[FP_PAYLOAD] = 0xff;
    mask[FP_PAYLOAD + 1] = 0x0f;
    value[FP_PAYLOAD] = 0xab;
    assert_eq!(
        describe(&Signature::from_bytes(&mask, &value)),
        "ttl 64-79 payload[0..1]=ab"
    );
}

#[test]
fn parse_reads_back_what_describe_writes() {
    for text in [
        "udp ttl 64 len 44 dport 5353 payload[0..4]=deadbeef",
        "tcp ip4 tos 0-15 id 256-511 sport 1024-2047 win 512 flags 0x00-0x0f hlen 20",
        "icmp6 seq 1 payload[15..16]=00",
        "family 0-7 proto 0-15",
        "any",
    ] {
        round_trips(&parse(text).unwrap());
    }
    // Random prefix masks over every field, random whole payload bytes.
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    for _ in 0..2000 {
        let mut predicates = Vec::new();
        for field in &Field::ALL[..11] {
            if r.percent(40) {
                let mask = prefix(field.bits(), r.within(0, u64::from(field.bits())) as u32);
                predicates.push(Predicate {
                    field: *field,
                    mask,
                    value: r.next() as u32 & mask,
                });
            }
        }
        for byte in 0..4 {
            if r.percent(30) {
                let k = r.within(0, 3) as u8;
                let shift = 8 * byte;
                predicates.push(Predicate {
                    field: Field::Payload(k),
                    mask: 0xff << shift,
                    value: u32::from(r.u8()) << shift,
                });
            }
        }
        round_trips(&signature(&predicates));
    }
}

#[test]
fn parse_says_which_token_is_wrong_and_why() {
    let err = |text: &str| parse(text).unwrap_err();

    let e = err("udp payload[0..4]=deadbeeg");
    assert_eq!(e.token, "payload[0..4]=deadbeeg");
    assert!(e.why.contains("not hex"), "{e}");
    let e = err("payload[0..4]=dead");
    assert!(e.why.contains("need 8 hex digits"), "{e}");
    let e = err("opts[12..20]=00");
    assert!(e.why.contains("0..16"), "{e}");
    let e = err("payload[4..4]=");
    assert!(e.why.contains("a < b"), "{e}");
    let e = err("payload[0-4]=deadbeef");
    assert!(e.why.contains("payload[a..b]=hex"), "{e}");

    let e = err("udp len 40-46");
    assert_eq!(e.token, "len 40-46");
    assert!(
        e.why.contains("power of two") && e.why.contains("nearest is 40-47"),
        "{e}"
    );
    let e = err("len 44-45 ttl 300");
    assert_eq!(e.token, "ttl 300");
    assert!(e.why.contains("more than ttl holds (255)"), "{e}");
    let e = err("len 47-40");
    assert!(e.why.contains("above"), "{e}");
    let e = err("dport http");
    assert!(e.why.contains("not a number"), "{e}");
    let e = err("udp ttl");
    assert!(e.why.contains("needs a value"), "{e}");

    let e = err("udp sctp");
    assert_eq!(e.token, "sctp");
    assert!(e.why.contains("tcp, udp"), "{e}");
    assert_eq!(e.to_string(), format!("`sctp`: {WORDS}"));
    let e = err("tcp udp");
    assert!(e.why.contains("contradicts"), "{e}");
    assert!(err("icmp ip6").why.contains("contradicts"));
    assert!(err("udp any").why.contains("alone"));
    assert!(err("  ").to_string().starts_with("empty"));

    // Agreeing tokens are one conjunction.
    assert_eq!(parse("len 40-47 len 44"), parse("len 44"));
    assert_eq!(parse("icmp ip4"), parse("icmp"));
}
