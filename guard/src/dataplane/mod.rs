//! The XDP program and its maps: loading, configuring, attaching and
//! pinning ([`loader`]), the pin layout ([`pins`]), the event ring buffer
//! ([`events`]), and [`handle::Dataplane`], the one reader and writer of
//! the maps.

pub mod events;
pub mod handle;
pub mod loader;
pub mod pins;
