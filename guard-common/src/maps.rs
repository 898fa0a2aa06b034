//! Names of the maps in the XDP object, as the loader, the pinned directory
//! and `guard stats` see them. The eBPF side spells the same names in its
//! `#[map(name = ...)]` attributes (which take only literals); a loader test
//! checks that the object defines every name listed here.

/// Per-CPU [`crate::CounterBlock`], one entry.
pub const COUNTERS: &str = "GUARD_COUNTERS";

/// Every map the loader pins, in the order `guard stats` reads them.
pub const PINNED: &[&str] = &[COUNTERS];
