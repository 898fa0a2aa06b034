//! The lab's `oracle` (drops what comes from the spoofed ranges), attached
//! to the victim's interface in place of a defence while this lives.
//!
//! Nothing is attached to the far end of a test veth: guard must make its
//! replies arrive there by itself, as on a container's link.

use std::path::PathBuf;

use aya::{
    Ebpf,
    programs::{Xdp, XdpMode},
};
use guard::host::netns::Scope;

/// The oracle attached to an interface; detached when dropped.
pub struct PassThrough {
    _ebpf: Ebpf,
}

/// An object `cargo xtask build` leaves next to guard's, in the target
/// directory (`CARGO_TARGET_DIR` where set, as xtask builds there).
fn object(name: &str) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(
            || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
            PathBuf::from,
        )
        .join("bpfel-unknown-none/release")
        .join(name)
}

impl PassThrough {
    /// Attaches the lab's oracle: frames from spoofed sources are dropped,
    /// the rest passes.
    #[must_use]
    pub fn oracle(ns: &str, iface: &str) -> Self {
        Self::program(ns, iface, "oracle", "oracle")
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
