//! Everything guard's kernel side and user side must agree on.
//!
//! This crate is `no_std` so the XDP program can use it; with the `user`
//! feature the map value types also implement [`aya::Pod`]. A change to a type
//! here changes the layout of a pinned map: both sides are rebuilt together
//! (`cargo xtask build`), and an old pinned map is never reused by a new guard.
#![no_std]

pub mod counters;
pub mod dissect;
pub mod maps;

pub use counters::{COUNTER_SLOTS, Counter, CounterBlock};
