//! Harness for guard's end-to-end tests against the real kernel.
//!
//! The tests in `kernel/` build two network namespaces joined by veth
//! ([`net::TestNet`]), run the real `guard` binary on the victim side
//! ([`guard_proc::Guard`]), send crafted frames from the other side
//! ([`raw::RawSender`], [`packet::Packet`]) and check what guard reports.
//! They run serially (`cargo xtask test` passes `--test-threads=1`) because
//! one guard runs per host and some tests change global kernel state. Each
//! starts with `let _kernel = kernel_test!();` ([`require`]): skipped
//! where it cannot run, failed instead under CI, serialised while it runs.

pub mod cpu;
pub mod ct;
pub mod flood;
pub mod fuzz;
pub mod guard_proc;
pub mod host;
pub mod model;
pub mod nats;
pub mod net;
pub mod nft;
pub mod packet;
pub mod raw;
pub mod require;
pub mod server;
pub mod testrun;
pub mod wire;
pub mod xdp;

pub use guard_proc::guard_bin;
