//! Peers measured in the same run as guard, against the same baseline:
//! xdp-filter's programs as Debian's libxdp1 package ships them
//! (`/usr/lib/x86_64-linux-gnu/bpf/xdpfilt_*.o`; `apt-get install libxdp1`).
//! A benchmark only: where the objects are missing the bench says so and
//! goes on, and nothing in CI installs them.
//!
//! `alw` programs drop what a rule matches and pass the rest (the
//! `../shared/notes/peers.md` facts): with no rule they pass, with a rule
//! on the destination port (`tcp`, `all`) or the source address (`ip`)
//! they drop. `tcp` looks up the port, `ip` the addresses, `all` the MACs,
//! the addresses and the ports. Their maps are pinned by name (libbpf's
//! `pinning` attribute, which aya honours): each load pins them in a
//! directory of its own, removed with it, so no rule outlives a case.

use std::{
    net::IpAddr,
    os::fd::AsFd as _,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{PerCpuArray, PerCpuHashMap, PerCpuValues},
    programs::Xdp,
    util::nr_cpus,
};
use guard_tests::testrun;

const DIR: &str = "/usr/lib/x86_64-linux-gnu/bpf";
/// xdp-filter's rule bits.
const SRC: u64 = 1;
const DST: u64 = 2;
const TCP: u64 = 4;

/// The variants measured, cheapest first.
pub const VARIANTS: [&str; 3] = ["tcp", "ip", "all"];

static NEXT: AtomicU32 = AtomicU32::new(0);

/// One xdp-filter program, loaded, with its maps pinned in `pins`.
pub struct XdpFilter {
    ebpf: Ebpf,
    name: String,
    pins: PathBuf,
}

impl Drop for XdpFilter {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.pins);
    }
}

impl XdpFilter {
    /// `alw_VARIANT`, if libxdp1 is installed.
    pub fn load(variant: &str) -> Result<Self, String> {
        let name = format!("xdpfilt_alw_{variant}");
        let path = Path::new(DIR).join(format!("{name}.o"));
        if !path.exists() {
            return Err(format!(
                "{} is missing (apt-get install libxdp1)",
                path.display()
            ));
        }
        let pins = Path::new("/sys/fs/bpf").join(format!(
            "guard-bench-peer-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&pins).map_err(|e| format!("{}: {e}", pins.display()))?;
        let loaded = EbpfLoader::new()
            .default_map_pin_directory(&pins)
            .load_file(&path)
            .map_err(|e| format!("{}: {e}", path.display()));
        let mut filter = Self {
            ebpf: loaded.inspect_err(|_| {
                let _ = std::fs::remove_dir_all(&pins);
            })?,
            name,
            pins,
        };
        let ebpf = &mut filter.ebpf;
        let name = filter.name.clone();
        let prog: &mut Xdp = ebpf
            .program_mut(&name)
            .ok_or_else(|| format!("no program {name}"))?
            .try_into()
            .map_err(|e| format!("{name}: {e}"))?;
        prog.load().map_err(|e| format!("verifying {name}: {e}"))?;
        Ok(filter)
    }

    /// A drop rule for TCP to `port` (`tcp`, `all`) or for the source
    /// `src` (`ip`), whichever this variant looks up.
    pub fn drop_rule(&mut self, port: u16, src: IpAddr) -> Result<(), String> {
        let cpus = nr_cpus().map_err(|(what, e)| format!("{what}: {e}"))?;
        let per_cpu = |v: u64| PerCpuValues::try_from(vec![v; cpus]).map_err(|e| e.to_string());
        if let Some(map) = self.ebpf.map_mut("filter_ports") {
            let mut ports: PerCpuArray<_, u64> =
                PerCpuArray::try_from(map).map_err(|e| e.to_string())?;
            // The port in network order, as the u32 key's first two bytes.
            let [hi, lo] = port.to_be_bytes();
            let key = u32::from_le_bytes([hi, lo, 0, 0]);
            ports
                .set(key, per_cpu(DST | TCP)?, 0)
                .map_err(|e| e.to_string())?;
        } else if let (Some(map), IpAddr::V4(a)) = (self.ebpf.map_mut("filter_ipv4"), src) {
            let mut addrs: PerCpuHashMap<_, u32, u64> =
                PerCpuHashMap::try_from(map).map_err(|e| e.to_string())?;
            addrs
                .insert(u32::from_ne_bytes(a.octets()), per_cpu(SRC)?, 0)
                .map_err(|e| e.to_string())?;
        } else {
            return Err(format!("{} has no rule map for this case", self.name));
        }
        Ok(())
    }

    /// The kernel's average ns per run of `frame`, `repeat` times.
    pub fn time(&self, frame: &[u8], repeat: u32) -> u32 {
        self.run(frame, repeat).duration_ns
    }

    /// The XDP action for `frame` (1 drop, 2 pass).
    pub fn action(&self, frame: &[u8]) -> u32 {
        self.run(frame, 1).action
    }

    fn run(&self, frame: &[u8], repeat: u32) -> testrun::Outcome {
        let prog: &Xdp = self
            .ebpf
            .program(&self.name)
            .expect("loaded")
            .try_into()
            .expect("xdp");
        testrun::run(prog.fd().expect("fd").as_fd(), frame, repeat).expect("test run")
    }
}
