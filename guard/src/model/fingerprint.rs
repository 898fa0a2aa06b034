//! Signatures learned from a flood: the traits (a field, or a masked
//! range of one) nearly every attack fingerprint shares and normal new
//! flows do not, as a [`Signature`] the XDP program drops on; the check a
//! learned signature must pass on a fresh sample before it is installed;
//! and the one line operators read and write
//! (`udp ip4 len 44 payload[0..4]=deadbeef`). Layout:
//! [`guard_common::fingerprint`].
//!
//! Learning is deliberately plain (the most common value of each field
//! under a few masks, then a greedy conjunction) so that what was learned
//! can be explained by the line that installs it, and so that the same
//! samples always give the same signature.

use std::{
    cmp::Reverse,
    collections::BTreeMap,
    fmt::{self, Write as _},
};

use guard_common::{
    dissect::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP},
    fingerprint::{
        FP_DPORT, FP_FAMILY, FP_IP_ID, FP_IP_LEN, FP_L4_HLEN, FP_LEN, FP_PAYLOAD, FP_PAYLOAD_LEN,
        FP_PROTO, FP_SPORT, FP_TCP_FLAGS, FP_TOS, FP_TTL, FP_WINDOW, Fingerprint, Signature,
    },
    key::{AF_INET, AF_INET6},
};

use super::as_f64;

/// A field of the fingerprint a predicate can fix: one of the layout's,
/// or a 4-byte chunk of its payload. Ordered as the layout (ties in
/// learning are broken in this order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    Family,
    Proto,
    Ttl,
    Tos,
    IpId,
    IpLen,
    Sport,
    Dport,
    /// TCP window, UDP length, ICMP sequence.
    Window,
    TcpFlags,
    /// Transport header length in bytes (UDP and ICMP: always 8).
    L4Hlen,
    /// Payload bytes `4k..4k + 4`, `k` < 4 (TCP: options first).
    Payload(u8),
}

impl Field {
    /// Every field, in layout order.
    pub const ALL: [Self; 15] = [
        Self::Family,
        Self::Proto,
        Self::Ttl,
        Self::Tos,
        Self::IpId,
        Self::IpLen,
        Self::Sport,
        Self::Dport,
        Self::Window,
        Self::TcpFlags,
        Self::L4Hlen,
        Self::Payload(0),
        Self::Payload(1),
        Self::Payload(2),
        Self::Payload(3),
    ];

    /// Where the field starts in the layout.
    #[must_use]
    pub const fn offset(self) -> usize {
        match self {
            Self::Family => FP_FAMILY,
            Self::Proto => FP_PROTO,
            Self::Ttl => FP_TTL,
            Self::Tos => FP_TOS,
            Self::IpId => FP_IP_ID,
            Self::IpLen => FP_IP_LEN,
            Self::Sport => FP_SPORT,
            Self::Dport => FP_DPORT,
            Self::Window => FP_WINDOW,
            Self::TcpFlags => FP_TCP_FLAGS,
            Self::L4Hlen => FP_L4_HLEN,
            Self::Payload(k) => FP_PAYLOAD + 4 * k as usize,
        }
    }

    /// Its width in bytes.
    #[must_use]
    pub const fn width(self) -> usize {
        match self {
            Self::Family | Self::Proto | Self::Ttl | Self::Tos | Self::TcpFlags | Self::L4Hlen => 1,
            Self::IpId | Self::IpLen | Self::Sport | Self::Dport | Self::Window => 2,
            Self::Payload(_) => 4,
        }
    }

    const fn bits(self) -> u32 {
        8 * self.width() as u32
    }

    /// The mask of every bit of the field.
    const fn full(self) -> u32 {
        prefix(self.bits(), self.bits())
    }

    /// How many bits learning takes off the mask at a time. Family and
    /// protocol are names, not quantities: a range of them means nothing.
    /// Payload is bytes: a whole byte or none.
    const fn step(self) -> u32 {
        match self {
            Self::Family | Self::Proto => self.bits(),
            Self::Payload(_) => 8,
            _ => 1,
        }
    }

    /// The field's bytes as a big-endian number.
    fn read(self, b: &[u8; FP_LEN]) -> u32 {
        b[self.offset()..self.offset() + self.width()]
            .iter()
            .fold(0, |n, &byte| n << 8 | u32::from(byte))
    }

    fn write(self, b: &mut [u8; FP_LEN], n: u32) {
        let w = self.width();
        for (i, byte) in b[self.offset()..self.offset() + w].iter_mut().enumerate() {
            *byte = (n >> (8 * (w - 1 - i))) as u8;
        }
    }
}

/// The `n` high bits of a `bits`-wide field.
const fn prefix(bits: u32, n: u32) -> u32 {
    let all = (1u64 << bits) - 1;
    (all ^ (all >> n)) as u32
}

/// The field's bits under `mask` equal `value` (which has no bit outside
/// `mask`). Numbers are read big-endian from the field's bytes, so a mask
/// of high bits is a range: `len 40-47` is mask `0xfff8`, value 40.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Predicate {
    pub field: Field,
    pub mask: u32,
    pub value: u32,
}

impl Predicate {
    fn holds(&self, b: &[u8; FP_LEN]) -> bool {
        self.field.read(b) & self.mask == self.value
    }
}

/// The signature that matches when all the predicates hold.
#[must_use]
pub fn signature(predicates: &[Predicate]) -> Signature {
    let mut mask = [0u8; FP_LEN];
    let mut value = [0u8; FP_LEN];
    for p in predicates {
        let (m, v) = (p.field.read(&mask), p.field.read(&value));
        p.field.write(&mut mask, m | p.mask);
        p.field.write(&mut value, v | p.value);
    }
    Signature::from_bytes(&mask, &value)
}

/// What a signature must show before it is learned or installed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Thresholds {
    /// Share of the attack sample it must match: 0.90. Not 1: any attack
    /// sample holds some legitimate new flows, and a tool varies a little.
    pub coverage: f64,
    /// Share of the contrast sample (normal new flows, established flows)
    /// it may match: 0.001. A signature drops without asking; one that
    /// matches one normal flow in a thousand already costs real clients.
    pub max_contrast: f64,
    /// Attack samples needed before anything is learned or checked: 200.
    /// Fewer, and a trait that is chance looks like 90%.
    pub min_attack: usize,
    /// Contrast samples needed: 100. Without a picture of normal traffic
    /// there is nothing to tell a trait of the attack from one of the
    /// service.
    pub min_contrast: usize,
    /// Predicates in one signature: 6. More only fits the sample, and the
    /// line an operator reads gets long.
    pub max_predicates: usize,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            coverage: 0.90,
            max_contrast: 0.001,
            min_attack: 200,
            min_contrast: 100,
            max_predicates: 6,
        }
    }
}

/// What a signature matches of each sample, as shares (0 of an empty one).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Shares {
    pub attack: f64,
    pub contrast: f64,
}

impl Shares {
    fn of(sig: &Signature, attack: &[Fingerprint], contrast: &[Fingerprint]) -> Self {
        let share_of = |sample: &[Fingerprint]| {
            share(
                sample.iter().filter(|fp| sig.matches(fp)).count(),
                sample.len(),
            )
        };
        Self {
            attack: share_of(attack),
            contrast: share_of(contrast),
        }
    }
}

fn share(n: usize, of: usize) -> f64 {
    if of == 0 {
        0.0
    } else {
        as_f64(n as u64) / as_f64(of as u64)
    }
}

/// A learned signature, its predicates (in layout order) and what it
/// matched of the samples it was learned from.
#[derive(Clone, Debug, PartialEq)]
pub struct Learned {
    pub predicates: Vec<Predicate>,
    pub signature: Signature,
    pub shares: Shares,
}

/// One field's best predicate and what it matches.
struct Candidate {
    predicate: Predicate,
    /// Attack samples it matches.
    support: usize,
    /// Contrast samples it matches.
    contrast: usize,
}

/// The field's predicate with the longest mask whose most common value
/// (the smallest, on a tie) reaches `coverage` of the attack, trying masks
/// from the whole field down to half of it.
fn candidate(field: Field, attack: &[[u8; FP_LEN]], coverage: f64) -> Option<(Predicate, usize)> {
    let bits = field.bits();
    (bits / 2..=bits)
        .rev()
        .step_by(field.step() as usize)
        .find_map(|n| {
            let mask = prefix(bits, n);
            let mut counts = BTreeMap::new();
            for b in attack {
                *counts.entry(field.read(b) & mask).or_insert(0usize) += 1;
            }
            let (value, support) =
                counts.into_iter().fold(
                    (0, 0),
                    |best, (v, c)| if c > best.1 { (v, c) } else { best },
                );
            (share(support, attack.len()) >= coverage)
                .then_some((Predicate { field, mask, value }, support))
        })
}

/// Whether a predicate is a trait of the attack rather than of the
/// service it hits (a family, protocol or port tells the attack from
/// other services' traffic, not from the service's own clients). TCP's
/// flags and header length count only under TCP: UDP and ICMP hold the
/// same constant there.
fn is_trait(p: &Predicate, tcp: bool) -> bool {
    match p.field {
        Field::Family | Field::Proto | Field::Dport => false,
        Field::TcpFlags | Field::L4Hlen => tcp,
        _ => true,
    }
}

/// Learns a signature that tells `attack` (new flows during a flood) from
/// `contrast` (normal traffic), or `None` when there is no such trait or
/// too few samples to tell.
///
/// Each field's candidate is its longest-mask predicate that matches
/// `coverage` of the attack. They are added to the conjunction one at a
/// time, as long as it still matches `coverage` of the attack: family and
/// protocol first (they are context rather than traits, and make the line
/// readable), then the rest by how few contrast samples each matches, how
/// many attack samples, and layout order. The result must match at most
/// `max_contrast` of the contrast, and so must its traits ([`is_trait`])
/// alone: a signature that only the port or protocol keeps off normal
/// traffic would drop the service's own clients.
#[must_use]
pub fn learn(attack: &[Fingerprint], contrast: &[Fingerprint], t: &Thresholds) -> Option<Learned> {
    if attack.len() < t.min_attack || contrast.len() < t.min_contrast {
        return None;
    }
    let attack_bytes: Vec<_> = attack.iter().map(Fingerprint::bytes).collect();
    let contrast_bytes: Vec<_> = contrast.iter().map(Fingerprint::bytes).collect();
    let mut candidates: Vec<Candidate> = Field::ALL
        .iter()
        .filter_map(|&f| candidate(f, &attack_bytes, t.coverage))
        .map(|(predicate, support)| Candidate {
            predicate,
            support,
            contrast: contrast_bytes.iter().filter(|b| predicate.holds(b)).count(),
        })
        .collect();
    candidates.sort_by_key(|c| {
        (
            !matches!(c.predicate.field, Field::Family | Field::Proto),
            c.contrast,
            Reverse(c.support),
            c.predicate.field,
        )
    });
    let mut predicates = Vec::new();
    // The attack samples the conjunction so far matches.
    let mut matched: Vec<&[u8; FP_LEN]> = attack_bytes.iter().collect();
    for c in &candidates {
        if predicates.len() == t.max_predicates {
            break;
        }
        let kept: Vec<_> = matched
            .iter()
            .copied()
            .filter(|b| c.predicate.holds(b))
            .collect();
        if share(kept.len(), attack.len()) >= t.coverage {
            matched = kept;
            predicates.push(c.predicate);
        }
    }
    predicates.sort_by_key(|p| p.field);
    let tcp = predicates.contains(&Predicate {
        field: Field::Proto,
        mask: 0xff,
        value: u32::from(IPPROTO_TCP),
    });
    let traits: Vec<_> = predicates
        .iter()
        .filter(|p| is_trait(p, tcp))
        .copied()
        .collect();
    let by_traits = signature(&traits);
    let contrast_by_traits = contrast.iter().filter(|fp| by_traits.matches(fp)).count();
    if traits.is_empty() || share(contrast_by_traits, contrast.len()) > t.max_contrast {
        return None;
    }
    let signature = signature(&predicates);
    let shares = Shares::of(&signature, attack, contrast);
    (shares.contrast <= t.max_contrast).then_some(Learned {
        predicates,
        signature,
        shares,
    })
}

/// Why a signature is not installed.
#[derive(Clone, Debug, PartialEq)]
pub enum Refusal {
    TooFewAttack {
        have: usize,
        need: usize,
    },
    TooFewContrast {
        have: usize,
        need: usize,
    },
    /// It matches this many new flows from verified sources.
    Verified(usize),
    /// It matches too little of the attack.
    Coverage {
        share: f64,
        need: f64,
    },
    /// It matches too much normal traffic.
    Contrast {
        share: f64,
        max: f64,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooFewAttack { have, need } => {
                write!(f, "only {have} attack samples, {need} needed to judge")
            }
            Self::TooFewContrast { have, need } => write!(
                f,
                "only {have} samples of normal traffic, {need} needed to judge"
            ),
            Self::Verified(n) => write!(
                f,
                "it matches {n} new flows from verified sources, which must never be dropped"
            ),
            Self::Coverage { share, need } => write!(
                f,
                "it matches only {:.1}% of the attack, {:.1}% needed",
                share * 100.0,
                need * 100.0
            ),
            Self::Contrast { share, max } => write!(
                f,
                "it matches {:.2}% of normal traffic, at most {:.2}% allowed",
                share * 100.0,
                max * 100.0
            ),
        }
    }
}

impl std::error::Error for Refusal {}

/// Checks a signature on samples it was not learned from before it is
/// installed: what it matches of them, or why it must not be installed
/// (too few samples, any match among the `verified` sources' new flows,
/// too little of the attack, too much of the contrast).
pub fn check(
    sig: &Signature,
    attack: &[Fingerprint],
    contrast: &[Fingerprint],
    verified: &[Fingerprint],
    t: &Thresholds,
) -> Result<Shares, Refusal> {
    if attack.len() < t.min_attack {
        return Err(Refusal::TooFewAttack {
            have: attack.len(),
            need: t.min_attack,
        });
    }
    if contrast.len() < t.min_contrast {
        return Err(Refusal::TooFewContrast {
            have: contrast.len(),
            need: t.min_contrast,
        });
    }
    let verified_hits = verified.iter().filter(|fp| sig.matches(fp)).count();
    if verified_hits > 0 {
        return Err(Refusal::Verified(verified_hits));
    }
    let shares = Shares::of(sig, attack, contrast);
    if shares.attack < t.coverage {
        return Err(Refusal::Coverage {
            share: shares.attack,
            need: t.coverage,
        });
    }
    if shares.contrast > t.max_contrast {
        return Err(Refusal::Contrast {
            share: shares.contrast,
            max: t.max_contrast,
        });
    }
    Ok(shares)
}

/// The fields [`describe`] writes by name, in the order it writes them
/// (family and protocol come first, as words where they can).
const NAMED: [Field; 9] = [
    Field::Ttl,
    Field::Tos,
    Field::IpId,
    Field::IpLen,
    Field::Sport,
    Field::Dport,
    Field::Window,
    Field::TcpFlags,
    Field::L4Hlen,
];

/// A field's name in the line; the window's depends on the protocol.
fn label(field: Field, proto: Option<u8>) -> &'static str {
    match field {
        Field::Family => "family",
        Field::Proto => "proto",
        Field::Ttl => "ttl",
        Field::Tos => "tos",
        Field::IpId => "id",
        Field::IpLen => "len",
        Field::Sport => "sport",
        Field::Dport => "dport",
        Field::Window => match proto {
            Some(IPPROTO_UDP) => "ulen",
            Some(IPPROTO_ICMP | IPPROTO_ICMPV6) => "seq",
            _ => "win",
        },
        Field::TcpFlags => "flags",
        Field::L4Hlen => "hlen",
        Field::Payload(_) => "payload",
    }
}

/// The field by the name [`label`] gives it (any of the window's).
fn named(name: &str) -> Option<Field> {
    Some(match name {
        "family" => Field::Family,
        "proto" => Field::Proto,
        "ttl" => Field::Ttl,
        "tos" => Field::Tos,
        "id" => Field::IpId,
        "len" => Field::IpLen,
        "sport" => Field::Sport,
        "dport" => Field::Dport,
        "win" | "ulen" | "seq" => Field::Window,
        "flags" => Field::TcpFlags,
        "hlen" => Field::L4Hlen,
        _ => return None,
    })
}

fn number(field: Field, n: u32) -> String {
    if field == Field::TcpFlags {
        format!("0x{n:02x}")
    } else {
        n.to_string()
    }
}

/// `name N`, or `name A-B` for a partial mask, or nothing if no high bit
/// of the field is masked (the bits below the mask's leading ones are not
/// shown: only a prefix mask is a range).
fn numeric(
    field: Field,
    mask: &[u8; FP_LEN],
    value: &[u8; FP_LEN],
    proto: Option<u8>,
) -> Option<String> {
    let bits = field.bits();
    let n = (field.read(mask) << (32 - bits)).leading_ones();
    if n == 0 {
        return None;
    }
    let m = prefix(bits, n);
    let lo = field.read(value) & m;
    let hi = lo | (field.full() ^ m);
    let name = label(field, proto);
    Some(if lo == hi {
        format!("{name} {}", number(field, lo))
    } else {
        format!("{name} {}-{}", number(field, lo), number(field, hi))
    })
}

/// The signature as one line an operator reads (and [`parse`] reads
/// back): the protocol as a word (`tcp`, `udp`, `icmp` for ICMP over IPv4,
/// `icmp6` for ICMPv6 over IPv6), the family (`ip4`, `ip6`) unless the word
/// said it, the fixed fields by name in layout order (a range where only
/// high bits are fixed: `len 40-47`), then the fixed payload bytes as hex
/// runs (`opts[a..b]` under TCP, whose first bytes there are options;
/// `payload[a..b]` otherwise). `any` if nothing is fixed.
///
/// Exact for every signature [`learn`] and [`parse`] make; of other masks
/// it shows only what it can say (the leading bits of a number, the whole
/// bytes of payload), so such a line reads wider than the signature.
#[must_use]
pub fn describe(sig: &Signature) -> String {
    let (mask, value) = sig.to_bytes();
    let whole = |f: Field| (f.read(&mask) == f.full()).then(|| f.read(&value) as u8);
    let proto = whole(Field::Proto);
    let family = whole(Field::Family);
    let mut words = Vec::new();
    let (word, family_said) = match (proto, family) {
        (Some(IPPROTO_ICMP), Some(AF_INET)) => (Some("icmp"), true),
        (Some(IPPROTO_ICMPV6), Some(AF_INET6)) => (Some("icmp6"), true),
        (Some(IPPROTO_TCP), _) => (Some("tcp"), false),
        (Some(IPPROTO_UDP), _) => (Some("udp"), false),
        _ => (None, false),
    };
    match word {
        Some(w) => words.push(w.to_owned()),
        None => words.extend(numeric(Field::Proto, &mask, &value, proto)),
    }
    if !family_said {
        match family {
            Some(AF_INET) => words.push("ip4".to_owned()),
            Some(AF_INET6) => words.push("ip6".to_owned()),
            _ => words.extend(numeric(Field::Family, &mask, &value, proto)),
        }
    }
    words.extend(
        NAMED
            .iter()
            .filter_map(|&f| numeric(f, &mask, &value, proto)),
    );
    let name = if proto == Some(IPPROTO_TCP) {
        "opts"
    } else {
        "payload"
    };
    let fixed = |i: usize| mask[FP_PAYLOAD + i] == 0xff;
    let mut i = 0;
    while i < FP_PAYLOAD_LEN {
        if !fixed(i) {
            i += 1;
            continue;
        }
        let start = i;
        while i < FP_PAYLOAD_LEN && fixed(i) {
            i += 1;
        }
        let mut run = format!("{name}[{start}..{i}]=");
        for b in &value[FP_PAYLOAD + start..FP_PAYLOAD + i] {
            let _ = write!(run, "{b:02x}");
        }
        words.push(run);
    }
    if words.is_empty() {
        "any".to_owned()
    } else {
        words.join(" ")
    }
}

/// Why an operator's signature does not parse: the token, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub token: String,
    pub why: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.token.is_empty() {
            f.write_str(&self.why)
        } else {
            write!(f, "`{}`: {}", self.token, self.why)
        }
    }
}

impl std::error::Error for ParseError {}

fn error(token: &str, why: impl Into<String>) -> ParseError {
    ParseError {
        token: token.to_owned(),
        why: why.into(),
    }
}

const WORDS: &str = "a signature is made of tcp, udp, icmp, icmp6, ip4, ip6, \
     a field and its value (family, proto, ttl, tos, id, len, sport, dport, \
     win, ulen, seq, flags, hlen: `len 44`, `len 40-47`), \
     payload[a..b]=hex or opts[a..b]=hex; or `any` alone";

/// The masks and values the tokens have fixed so far.
struct Builder {
    mask: [u8; FP_LEN],
    value: [u8; FP_LEN],
}

impl Builder {
    /// Adds `mask`, `value` (a conjunction: where they overlap what is
    /// fixed already, they must agree).
    fn add(
        &mut self,
        mask: &[u8; FP_LEN],
        value: &[u8; FP_LEN],
        token: &str,
    ) -> Result<(), ParseError> {
        for i in 0..FP_LEN {
            if self.mask[i] & mask[i] & (self.value[i] ^ value[i]) != 0 {
                return Err(error(
                    token,
                    "contradicts an earlier token: nothing would match",
                ));
            }
        }
        for i in 0..FP_LEN {
            self.mask[i] |= mask[i];
            self.value[i] |= value[i] & mask[i];
        }
        Ok(())
    }

    fn set(&mut self, field: Field, mask: u32, value: u32, token: &str) -> Result<(), ParseError> {
        let mut m = [0u8; FP_LEN];
        let mut v = [0u8; FP_LEN];
        field.write(&mut m, mask);
        field.write(&mut v, value);
        self.add(&m, &v, token)
    }

    fn whole(&mut self, field: Field, value: u8, token: &str) -> Result<(), ParseError> {
        self.set(field, field.full(), u32::from(value), token)
    }
}

/// A number, decimal or `0x` hex.
fn parse_number(s: &str) -> Option<u32> {
    let (digits, radix) = s.strip_prefix("0x").map_or((s, 10), |hex| (hex, 16));
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

/// `N` or `A-B` for `field`, as a mask and value; `A-B` must be an
/// aligned power-of-two block (`40-47`), the only ranges a mask holds.
fn parse_range(field: Field, name: &str, arg: &str) -> Result<(u32, u32), String> {
    let full = field.full();
    let num = |s: &str| match parse_number(s) {
        Some(n) if n <= full => Ok(n),
        Some(n) => Err(format!("{n} is more than {name} holds ({full})")),
        None => Err(format!("`{s}` is not a number")),
    };
    let Some((a, b)) = arg.split_once('-') else {
        return Ok((full, num(arg)?));
    };
    let (lo, hi) = (num(a)?, num(b)?);
    if lo > hi {
        return Err(format!("{lo} is above {hi}"));
    }
    let size = u64::from(hi - lo) + 1;
    if size.is_power_of_two() && u64::from(lo) % size == 0 {
        return Ok((full ^ (size - 1) as u32, lo));
    }
    // The smallest block that holds both ends, for the message.
    let k = 32 - (lo ^ hi).leading_zeros();
    let block = (1u64 << k) - 1;
    let start = (u64::from(lo) & !block) as u32;
    let end = start | block as u32;
    Err(format!(
        "a mask can only hold a range whose size is a power of two and that starts at a \
         multiple of it; {lo}-{hi} is not one (the nearest is {}-{})",
        number(field, start),
        number(field, end)
    ))
}

/// A mask and a value over the layout.
type MaskValue = ([u8; FP_LEN], [u8; FP_LEN]);

/// `payload[a..b]=hex` or `opts[a..b]=hex` as a mask and value, or `None`
/// if the token is not of that form.
fn parse_payload(token: &str) -> Option<Result<MaskValue, String>> {
    let (name, rest) = token.split_once('[')?;
    if name != "payload" && name != "opts" {
        return None;
    }
    Some((|| {
        let form = || format!("write it as {name}[a..b]=hex");
        let (range, hex) = rest.split_once("]=").ok_or_else(form)?;
        let (a, b) = range.split_once("..").ok_or_else(form)?;
        let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) else {
            return Err(form());
        };
        if a >= b || b > FP_PAYLOAD_LEN {
            return Err(format!(
                "bytes {a}..{b}: a signature holds payload bytes 0..{FP_PAYLOAD_LEN}, \
                 and a range needs a < b"
            ));
        }
        if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("`{hex}` is not hex"));
        }
        if hex.len() != 2 * (b - a) {
            return Err(format!(
                "bytes {a}..{b} need {} hex digits, `{hex}` has {}",
                2 * (b - a),
                hex.len()
            ));
        }
        let mut mask = [0u8; FP_LEN];
        let mut value = [0u8; FP_LEN];
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            let digits = std::str::from_utf8(pair).map_err(|_| form())?;
            mask[FP_PAYLOAD + a + i] = 0xff;
            value[FP_PAYLOAD + a + i] = u8::from_str_radix(digits, 16).map_err(|_| form())?;
        }
        Ok((mask, value))
    })())
}

/// An operator's signature, in the words [`describe`] writes (the field
/// names of the window, `win`, `ulen` and `seq`, are one field, and so are
/// `payload` and `opts`): `udp dport 5353 len 44 payload[0..4]=deadbeef`.
/// The tokens are a conjunction, in any order.
pub fn parse(text: &str) -> Result<Signature, ParseError> {
    let mut b = Builder {
        mask: [0; FP_LEN],
        value: [0; FP_LEN],
    };
    let mut tokens = text.split_whitespace().peekable();
    if tokens.peek().is_none() {
        return Err(error("", format!("empty: {WORDS}")));
    }
    if text.split_whitespace().eq(["any"]) {
        return Ok(Signature::EMPTY);
    }
    while let Some(token) = tokens.next() {
        match token {
            "tcp" => b.whole(Field::Proto, IPPROTO_TCP, token)?,
            "udp" => b.whole(Field::Proto, IPPROTO_UDP, token)?,
            "icmp" => {
                b.whole(Field::Family, AF_INET, token)?;
                b.whole(Field::Proto, IPPROTO_ICMP, token)?;
            }
            "icmp6" => {
                b.whole(Field::Family, AF_INET6, token)?;
                b.whole(Field::Proto, IPPROTO_ICMPV6, token)?;
            }
            "ip4" => b.whole(Field::Family, AF_INET, token)?,
            "ip6" => b.whole(Field::Family, AF_INET6, token)?,
            "any" => return Err(error(token, "`any` stands alone")),
            _ => {
                if let Some(payload) = parse_payload(token) {
                    let (mask, value) = payload.map_err(|why| error(token, why))?;
                    b.add(&mask, &value, token)?;
                    continue;
                }
                let field = named(token).ok_or_else(|| error(token, WORDS))?;
                let arg = tokens.next().ok_or_else(|| {
                    error(
                        token,
                        format!("needs a value: `{token} N` or `{token} A-B`"),
                    )
                })?;
                let whole = format!("{token} {arg}");
                let (mask, value) =
                    parse_range(field, token, arg).map_err(|why| error(&whole, why))?;
                b.set(field, mask, value, &whole)?;
            }
        }
    }
    Ok(Signature::from_bytes(&b.mask, &b.value))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(refusal, Refusal::Verified(1));
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
            matches!(refusal, Refusal::Coverage { share, .. } if share < 0.6),
            "{refusal}"
        );
        assert!(
            refusal.to_string().contains("of the attack, 90.0% needed"),
            "{refusal}"
        );

        let any = parse("udp").unwrap();
        let refusal = check(&any, &attack, &contrast, &[], &t).unwrap_err();
        assert!(matches!(refusal, Refusal::Contrast { .. }), "{refusal}");

        let refusal = check(&sig, &attack[..150], &contrast, &[], &t).unwrap_err();
        assert_eq!(
            refusal,
            Refusal::TooFewAttack {
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
            Refusal::TooFewContrast {
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
}
