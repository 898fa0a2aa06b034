//! Sizing the conntrack table, once for everyone: `guard run`'s memory
//! ceiling, `guard tune`'s recommendations and `guard doctor`'s memory
//! findings all come from here.

use std::fmt::Write as _;

use super::conntrack::{BUCKETS, MAX, Timeout, timeout_key};

/// Field guides' rule of thumb for nf_conntrack_max: RAM / 16384 / (64/32)
/// on a 64-bit kernel, one entry per 32 KiB of RAM.
pub const RAM_PER_ENTRY: u64 = 32 * 1024;
/// Bytes per hash bucket (a pointer).
pub const BUCKET_BYTES: u64 = 8;
/// One entry's size when the slab allocator does not say (a 6.x kernel
/// with every extension: 320 bytes at most).
pub const ASSUMED_ENTRY_BYTES: u64 = 320;
pub const MIB: u64 = 1024 * 1024;

/// The size of one entry: the slab allocator's, or [`ASSUMED_ENTRY_BYTES`].
#[must_use]
pub fn entry_bytes(from_slab: Option<u64>) -> u64 {
    from_slab.unwrap_or(ASSUMED_ENTRY_BYTES)
}

/// What a table of `max` entries and `buckets` buckets takes when full.
#[must_use]
pub const fn table_bytes(max: u64, buckets: u64, entry_bytes: u64) -> u64 {
    max * entry_bytes + buckets * BUCKET_BYTES
}

/// The buckets for `max` entries: a quarter, hash chains of four when full.
#[must_use]
pub const fn quarter(max: u64) -> u64 {
    max.div_ceil(4)
}

/// The ceiling on `nf_conntrack_max` from a memory budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub bytes: u64,
    pub entry_bytes: u64,
    pub ceiling: u64,
}

impl Budget {
    /// `memory_mib`, or the field guides' default for `ram_bytes`, at the
    /// real entry size; the hash table's buckets come off the top.
    #[must_use]
    pub fn new(memory_mib: Option<u64>, ram_bytes: u64, entry_bytes: u64, buckets: u64) -> Self {
        let bucket_bytes = buckets * BUCKET_BYTES;
        let bytes = memory_mib.map_or_else(
            || (ram_bytes / RAM_PER_ENTRY) * entry_bytes + bucket_bytes,
            |mib| mib * MIB,
        );
        Self {
            bytes,
            entry_bytes,
            ceiling: bytes.saturating_sub(bucket_bytes) / entry_bytes.max(1),
        }
    }

    #[must_use]
    pub const fn mib(&self) -> u64 {
        self.bytes.div_ceil(MIB)
    }
}

/// The [`Budget`] of `memory_mib` (`conntrack-memory`; `None`: unset),
/// or why a table of `max` entries (the host's `nf_conntrack_max`) is
/// over its ceiling.
pub fn budget_for(
    memory_mib: Option<u64>,
    ram_bytes: u64,
    entry_bytes: u64,
    buckets: u64,
    max: u64,
) -> Result<Budget, String> {
    let budget = Budget::new(memory_mib, ram_bytes, entry_bytes, buckets);
    if budget.ceiling >= max {
        return Ok(budget);
    }
    let needed = table_bytes(max, buckets, entry_bytes).div_ceil(MIB);
    let ceiling = budget.ceiling;
    let unset = Budget::new(None, ram_bytes, entry_bytes, buckets);
    Err(match memory_mib {
        Some(mib) => format!(
            "`conntrack-memory = {mib}` allows {ceiling} entries of {entry_bytes} bytes, fewer than \
             the table's nf_conntrack_max {max}: give at least {needed} MiB{}",
            if unset.ceiling >= max {
                format!(
                    ", or leave it unset for the field guides' {} MiB",
                    unset.mib()
                )
            } else {
                String::new()
            }
        ),
        // Unset, the ceiling is guard's own rule, not a value the operator
        // gave: the host's table is what is over it.
        None => format!(
            "`nf_conntrack_max = {max}` (the host's): above the {ceiling} entries guard allows when \
             conntrack-memory is unset, one per {} KiB of RAM ({} MiB here): set conntrack-memory \
             to at least {needed} MiB ({entry_bytes} bytes an entry) to allow it, or lower \
             nf_conntrack_max to {ceiling} or less",
            RAM_PER_ENTRY / 1024,
            ram_bytes / MIB
        ),
    })
}

/// An established entry lives a day, as kube-proxy sets it: five days keeps
/// the entries of peers that vanished without a FIN.
pub const ESTABLISHED_SECS: u64 = 86_400;

/// One recommended value.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Recommendation {
    pub key: String,
    /// Of the initial namespace (max, buckets) or the protected one.
    pub global: bool,
    pub current: u64,
    pub recommended: u64,
    pub why: String,
}

impl Recommendation {
    #[must_use]
    pub fn changes(&self) -> bool {
        self.current != self.recommended
    }
}

/// The sizing the field guides arrive at, computed from the real entry size
/// and RAM, never smaller than what is set.
#[must_use]
pub fn recommend(
    max: u64,
    buckets: u64,
    established: u64,
    ram_bytes: u64,
    entry_bytes: u64,
) -> Vec<Recommendation> {
    let budget = Budget::new(None, ram_bytes, entry_bytes, buckets);
    let new_max = max.max(budget.ceiling);
    let new_buckets = buckets.max(quarter(new_max));
    vec![
        Recommendation {
            key: MAX.to_owned(),
            global: true,
            current: max,
            recommended: new_max,
            why: if new_max == max {
                "already at or above one entry per 32 KiB of RAM".to_owned()
            } else {
                format!(
                    "one entry per 32 KiB of RAM (the field guides' RAM/16384/2 on 64-bit): {} MiB at {entry_bytes} bytes an entry",
                    (new_max * entry_bytes).div_ceil(MIB)
                )
            },
        },
        Recommendation {
            key: BUCKETS.to_owned(),
            global: true,
            current: buckets,
            recommended: new_buckets,
            why: if new_buckets == buckets {
                "already at least a quarter of nf_conntrack_max".to_owned()
            } else {
                "a quarter of nf_conntrack_max: hash chains of four at most when full".to_owned()
            },
        },
        Recommendation {
            key: timeout_key(Timeout::TcpEstablished),
            global: false,
            current: established,
            recommended: established.min(ESTABLISHED_SECS),
            why: if established <= ESTABLISHED_SECS {
                "already a day or less".to_owned()
            } else {
                "a day, as kube-proxy sets it: five days keeps the entries of peers that left without a FIN".to_owned()
            },
        },
    ]
}

/// The table printed by `guard tune`.
#[must_use]
pub fn render(recs: &[Recommendation]) -> String {
    let mut out = format!(
        "{:<52} {:>12} {:>12}  why\n",
        "sysctl", "current", "recommended"
    );
    for r in recs {
        let mark = if r.changes() { "*" } else { " " };
        let _ = writeln!(
            out,
            "{:<52} {:>12} {:>11}{mark}  {}",
            r.key, r.current, r.recommended, r.why
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * MIB;

    #[test]
    fn the_default_budget_is_the_field_guides_at_the_real_entry_size() {
        let b = Budget::new(None, 24 * GIB, 248, 262_144);
        assert_eq!(b.ceiling, 24 * GIB / RAM_PER_ENTRY);
        assert_eq!(b.ceiling, 786_432);
        assert_eq!(b.mib(), table_bytes(786_432, 262_144, 248).div_ceil(MIB));
    }

    #[test]
    fn a_given_budget_pays_for_the_buckets_first() {
        let b = Budget::new(Some(64), 0, 256, 1024 * 1024);
        assert_eq!(b.ceiling, (64 * MIB - 8 * MIB) / 256);
    }

    #[test]
    fn a_table_over_a_given_budget_is_refused_with_the_budget_needed() {
        // Unset would not fit either (32,768 entries on 1 GiB): no such advice.
        assert_eq!(
            budget_for(Some(8), GIB, 320, 65_536, 40_000)
                .err()
                .as_deref(),
            Some(
                "`conntrack-memory = 8` allows 24576 entries of 320 bytes, fewer than the \
                 table's nf_conntrack_max 40000: give at least 13 MiB"
            )
        );
        assert_eq!(budget_for(Some(10), GIB, 320, 65_536, 30_000).err(), None);
        assert_eq!(
            budget_for(Some(8), GIB, 320, 65_536, 30_000)
                .err()
                .as_deref(),
            Some(
                "`conntrack-memory = 8` allows 24576 entries of 320 bytes, fewer than the \
                 table's nf_conntrack_max 30000: give at least 10 MiB, or leave it unset for the \
                 field guides' 11 MiB"
            )
        );
    }

    /// Unset, the ceiling is guard's own, from RAM: the host's table is
    /// what is over it, and either may change.
    #[test]
    fn a_host_table_over_the_default_ceiling_says_so_and_how_to_allow_it() {
        assert_eq!(budget_for(None, GIB, 320, 65_536, 32_768).err(), None);
        assert_eq!(
            budget_for(None, GIB, 320, 65_536, 262_144).err().as_deref(),
            Some(
                "`nf_conntrack_max = 262144` (the host's): above the 32768 entries guard allows \
                 when conntrack-memory is unset, one per 32 KiB of RAM (1024 MiB here): set \
                 conntrack-memory to at least 81 MiB (320 bytes an entry) to allow it, or lower \
                 nf_conntrack_max to 32768 or less"
            )
        );
    }

    #[test]
    fn a_small_table_on_a_big_machine_is_raised_with_buckets_and_timeout() {
        let recs = recommend(65_536, 16_384, 432_000, 24 * GIB, 248);
        assert_eq!(recs[0].recommended, 786_432);
        assert!(
            recs[0].why.contains("186 MiB at 248 bytes"),
            "{}",
            recs[0].why
        );
        assert_eq!(recs[1].recommended, 196_608);
        assert_eq!(recs[2].recommended, 86_400);
        assert!(recs.iter().all(Recommendation::changes));
    }

    #[test]
    fn a_table_already_larger_is_left_alone() {
        let recs = recommend(2_000_000, 1_000_000, 3_600, 24 * GIB, 248);
        assert!(recs.iter().all(|r| !r.changes()), "{recs:?}");
        assert!(render(&recs).contains("already at or above"));
    }
}
