//! The far end of a test veth, made able to receive what XDP sends back.
//!
//! A veth delivers the frames an XDP program sends back out (`XDP_TX`, as
//! the SYN-cookie path does) only to a peer whose receive side runs in NAPI
//! mode, which it does when the peer has an XDP program of its own. A real
//! NIC needs nothing of the sort; on the test wire the far end gets one of
//! two trivial programs from guard-ebpf, attached while this lives:
//! `baseline` (`XDP_PASS`) for clients, `sink` (drops what goes to the
//! spoofed range, as the Internet would absorb it) for an attacker. The
//! lab's `oracle` (drops what comes from the spoofed range) is attached the
//! same way, to the victim.

use std::path::PathBuf;

use aya::{
    Ebpf,
    programs::{Xdp, XdpMode},
};
use guard::netns::Scope;

/// One of the far-end programs attached to an interface; detached when
/// dropped.
pub struct PassThrough {
    _ebpf: Ebpf,
}

/// An object `cargo xtask build` leaves next to guard's.
fn object(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/bpfel-unknown-none/release")
        .join(name)
}

impl PassThrough {
    /// Attaches `XDP_PASS` (the baseline), native mode, to `iface` in `ns`.
    #[must_use]
    pub fn attach(ns: &str, iface: &str) -> Self {
        Self::program(ns, iface, "baseline", "baseline")
    }

    /// Attaches the sink: replies to spoofed sources are dropped on
    /// arrival, the rest passes.
    #[must_use]
    pub fn sink(ns: &str, iface: &str) -> Self {
        Self::program(ns, iface, "sink", "sink")
    }

    /// Attaches the lab's oracle: frames from spoofed sources are dropped,
    /// the rest passes.
    #[must_use]
    pub fn oracle(ns: &str, iface: &str) -> Self {
        Self::program(ns, iface, "sink", "oracle")
    }

    fn program(ns: &str, iface: &str, file: &str, name: &str) -> Self {
        let path = object(file);
        let mut ebpf = Ebpf::load_file(&path).unwrap_or_else(|e| {
            panic!("loading {}: {e} (run `cargo xtask build`)", path.display())
        });
        let prog: &mut Xdp = ebpf
            .program_mut(name)
            .unwrap_or_else(|| panic!("no program {name} in {}", path.display()))
            .try_into()
            .expect("an XDP program");
        prog.load()
            .unwrap_or_else(|e| panic!("verifying {name}: {e}"));
        Scope::open(Some(ns))
            .unwrap_or_else(|e| panic!("netns {ns}: {e}"))
            .run(|| prog.attach(iface, XdpMode::Driver))
            .unwrap_or_else(|e| panic!("entering {ns}: {e}"))
            .unwrap_or_else(|e| panic!("attaching {name} to {iface} in {ns}: {e}"));
        Self { _ebpf: ebpf }
    }
}
