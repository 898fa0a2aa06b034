//! The far end of a test veth, made able to receive what XDP sends back.
//!
//! A veth delivers the frames an XDP program sends back out (`XDP_TX`, as
//! the SYN-cookie path does) only to a peer whose receive side runs in NAPI
//! mode, which it does when the peer has an XDP program of its own. A real
//! NIC needs nothing of the sort; on the test wire the clients' end gets
//! the trivial baseline program (`XDP_PASS`), attached while this lives.

use std::path::PathBuf;

use aya::{
    Ebpf,
    programs::{Xdp, XdpMode},
};
use guard::netns::Scope;

/// The baseline program attached to one interface; detached when dropped.
pub struct PassThrough {
    _ebpf: Ebpf,
}

/// The baseline object `cargo xtask build` leaves next to guard's.
fn object() -> PathBuf {
    std::env::var_os("GUARD_BASELINE_OBJECT").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../target/bpfel-unknown-none/release/baseline")
        },
        PathBuf::from,
    )
}

impl PassThrough {
    /// Attaches the baseline program, native mode, to `iface` in `ns`.
    #[must_use]
    pub fn attach(ns: &str, iface: &str) -> Self {
        let path = object();
        let mut ebpf = Ebpf::load_file(&path).unwrap_or_else(|e| {
            panic!("loading {}: {e} (run `cargo xtask build`)", path.display())
        });
        let prog: &mut Xdp = ebpf
            .program_mut("baseline")
            .expect("baseline program")
            .try_into()
            .expect("an XDP program");
        prog.load().expect("verifying the baseline");
        Scope::open(Some(ns))
            .unwrap_or_else(|e| panic!("netns {ns}: {e}"))
            .run(|| prog.attach(iface, XdpMode::Driver))
            .unwrap_or_else(|e| panic!("entering {ns}: {e}"))
            .unwrap_or_else(|e| panic!("attaching XDP_PASS to {iface} in {ns}: {e}"));
        Self { _ebpf: ebpf }
    }
}
