//! Everything guard's kernel side and user side must agree on.
//!
//! This crate is `no_std` so the XDP program can use it; with the `user`
//! feature the map value types also implement `aya::Pod`. A change to a type
//! here changes the layout of a pinned map: both sides are rebuilt together
//! (`cargo xtask build`), and an old pinned map is never reused by a new guard.
#![cfg_attr(not(test), no_std)]
#![allow(
    clippy::inline_always,
    reason = "shared with the XDP program, where the verifier and the cost of bpf-to-bpf calls want every call inlined"
)]

pub mod bucket;
pub mod config;
pub mod cookie;
pub mod counters;
pub mod dissect;
pub mod fingerprint;
pub mod floor;
pub mod flows;
pub mod key;
pub mod maps;
pub mod marked;
pub mod ports;
pub mod slots;
pub mod state;

pub use bucket::Limit;
pub use config::{DataplaneConfig, FlowClass};
pub use counters::{COUNTER_SLOTS, Counter, CounterBlock};
pub use key::{FlowKey, FlowKey4, SourceKey, SynAckKey};
pub use ports::PortCounts;
pub use state::{Event, Marks, SourceState};
