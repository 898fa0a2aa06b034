//! `guard run`: the run loop and its signals ([`run`]), SIGHUP
//! ([`reload`]), the conntrack controller ([`controller`]), the kept
//! lists and their expiry ([`kept`]), the Prometheus endpoint
//! ([`metrics`]), the fleet's NATS link ([`fleet`]) and the attack
//! fingerprints' learner's loop ([`fingerprints`]).

pub mod controller;
pub mod fingerprints;
pub mod fleet;
pub mod kept;
pub mod metrics;
pub mod reload;
pub mod run;
