//! `guard run`: the run loop and its signals ([`run`]), SIGHUP
//! ([`reload`]), the conntrack controller ([`controller`]), the kept
//! lists and their expiry ([`kept`]) and the Prometheus endpoint
//! ([`metrics`]).

pub mod controller;
pub mod fingerprints;
pub mod fleet;
pub mod kept;
pub mod metrics;
pub mod reload;
pub mod run;
