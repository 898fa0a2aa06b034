//! `guard run`: the run loop and its signals ([`run`]), SIGHUP
//! ([`reload`]), the conntrack controller ([`controller`]) and the
//! Prometheus endpoint ([`metrics`]).

pub mod controller;
pub mod metrics;
pub mod reload;
pub mod run;
