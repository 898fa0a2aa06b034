//! The bits of the benchmark's floor program's `PARTS` global
//! (`guard-ebpf/src/bin/floor.rs`), which `cargo xtask bench` sets: each
//! stops the program before, or changes, one step of a known source's SYN.
//! Without bits it looks up the source's entry only, with the clock read
//! once a jiffy as guard reads it.

/// The prefix's lookup too.
pub const PREFIX: u8 = 1;
/// The three compare-and-swaps (source, prefix, global).
pub const CAS: u8 = 2;
/// Hashes without LRU.
pub const PLAIN: u8 = 4;
/// No lookup: the address, the clock, the keys.
pub const NO_LOOKUP: u8 = 8;
/// No clock.
pub const NO_CLOCK: u8 = 16;
/// The coarse clock's helper every time, not once a jiffy.
pub const COARSE: u8 = 32;
/// Direct-mapped slots as guard's tables keep them ([`crate::slots`])
/// instead of hashes.
pub const ARRAY: u8 = 64;
