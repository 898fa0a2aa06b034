//! The attack lab (`cargo xtask lab`): the same attacks against every
//! defence, measured once a second, written up as a report with plots.
//!
//! [`topology`] builds the namespaces, [`traffic`] the servers, clients and
//! floods, [`defence`] sets up what is measured, [`runner`] runs and samples
//! ([`sample`]), and [`report`] and [`plot`] write the results. [`peer`]
//! attaches the oracle. The harness under it is `guard-tests`.

pub mod defence;
pub mod peer;
pub mod plot;
pub mod report;
pub mod runner;
pub mod sample;
pub mod scenario;
pub mod topology;
pub mod traffic;
