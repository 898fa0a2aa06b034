//! Pure logic: no I/O, no clock, no kernel. The controller's policy and
//! level, the port table, conntrack sizing, doctor's rules, the statistics
//! shown to people, and the plain data the layers above exchange. Tested
//! without a kernel.

pub mod bans;
pub mod conntrack;
pub mod devices;
pub mod doctor;
pub mod duration;
pub mod fingerprint;
pub mod firewall;
pub mod fleet;
pub mod learner;
pub mod level;
pub mod lists;
pub mod nat;
pub mod nft;
pub mod notrack;
pub mod offenders;
pub mod paths;
pub mod policy;
pub mod ports;
mod ruleset;
pub mod sizing;
pub mod stats;
pub mod status;
pub mod tcp;
pub mod xdp;
pub mod xtables;

/// A counter as a float, for rates and percentages shown to people and for
/// the policy's arithmetic (counts stay far below 2^53).
#[expect(clippy::cast_precision_loss, reason = "rates and fills, not counts")]
#[must_use]
pub const fn as_f64(n: u64) -> f64 {
    n as f64
}
