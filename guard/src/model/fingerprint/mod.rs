//! Signatures learned from a flood: the traits (a field, or a masked
//! range of one) nearly every attack fingerprint shares and normal new
//! flows do not, as a [`Signature`] the XDP program drops on; the check a
//! learned signature must pass on a fresh sample before it is installed;
//! and the one line operators read and write
//! (`udp ip4 len 44 payload[0..4]=deadbeef`), in [`text`]. Layout:
//! [`guard_common::fingerprint`].
//!
//! Learning is deliberately plain (the most common value of each field
//! under a few masks, then a greedy conjunction) so that what was learned
//! can be explained by the line that installs it, and so that the same
//! samples always give the same signature.

use std::{cmp::Reverse, collections::BTreeMap, fmt};

use guard_common::{
    dissect::IPPROTO_TCP,
    fingerprint::{FP_LEN, Fingerprint, Signature},
};

use super::as_f64;

mod field;
mod text;
pub use field::Field;
use field::prefix;
pub use text::{describe, parse};

#[cfg(test)]
mod tests;

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
pub enum SigRefusal {
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

impl fmt::Display for SigRefusal {
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

impl std::error::Error for SigRefusal {}

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
) -> Result<Shares, SigRefusal> {
    if attack.len() < t.min_attack {
        return Err(SigRefusal::TooFewAttack {
            have: attack.len(),
            need: t.min_attack,
        });
    }
    if contrast.len() < t.min_contrast {
        return Err(SigRefusal::TooFewContrast {
            have: contrast.len(),
            need: t.min_contrast,
        });
    }
    let verified_hits = verified.iter().filter(|fp| sig.matches(fp)).count();
    if verified_hits > 0 {
        return Err(SigRefusal::Verified(verified_hits));
    }
    let shares = Shares::of(sig, attack, contrast);
    if shares.attack < t.coverage {
        return Err(SigRefusal::Coverage {
            share: shares.attack,
            need: t.coverage,
        });
    }
    if shares.contrast > t.max_contrast {
        return Err(SigRefusal::Contrast {
            share: shares.contrast,
            max: t.max_contrast,
        });
    }
    Ok(shares)
}
