//! The kernel's conntrack table, read and changed: [`knobs`] reads and
//! writes the sysctls, [`ctnetlink`] reads the per-CPU statistics and
//! deletes entries. The values are `model::conntrack`'s types.
//!
//! Kernel facts this is built around (nf_conntrack_core.c,
//! nf_conntrack_standalone.c, Linux 6.x):
//! - `nf_conntrack_max` and `nf_conntrack_buckets` are global and read-only
//!   outside the initial network namespace; the timeouts are per namespace.
//! - Since 5.15 `nf_conntrack_max` defaults to the bucket count. Writing
//!   `nf_conntrack_buckets` takes every bucket lock and rehashes the whole
//!   table, so guard sizes it only at start-up, never under pressure.
//! - A lowered timeout does not shorten entries that exist; each takes the
//!   new value on its next packet. A spoofed SYN's entry never sees another.
//! - When the table is full, early_drop evicts only non-ASSURED entries from
//!   a few buckets before giving up with "table full, dropping packet".

pub mod ctnetlink;
pub mod knobs;
