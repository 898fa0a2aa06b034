//! Peers measured in the same run as guard, against the same baseline.
//! A benchmark only: where a peer is missing the bench says so and goes
//! on, and nothing in CI installs one (`cargo xtask bench` installs the
//! packages named in `xtask/src/bench.rs`, `PEER_PACKAGES`).
//!
//! xdp-filter's programs as Debian's libxdp1 package ships them
//! (`/usr/lib/x86_64-linux-gnu/bpf/xdpfilt_*.o`).
//! `alw` programs drop what a rule matches and pass the rest (the
//! `../shared/notes/peers.md` facts): with no rule they pass, with a rule
//! on the destination port (`tcp`, `all`) or the source address (`ip`)
//! they drop. `tcp` looks up the port, `ip` the addresses, `all` the MACs,
//! the addresses and the ports. Their maps are pinned by name (libbpf's
//! `pinning` attribute, which aya honours): each load pins them in a
//! directory of its own, removed with it, so no rule outlives a case.
//!
//! The kernel's xdp_synproxy selftest program, built at bench time from
//! Debian's linux-source package (its source is never in this repository)
//! and loaded by bpftool: it calls conntrack kfuncs, which aya 0.14 cannot
//! relocate.

use std::{
    net::IpAddr,
    os::fd::AsFd as _,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, Map, MapData, PerCpuArray, PerCpuHashMap, PerCpuValues},
    programs::{ProgramFd, ProgramInfo, Xdp},
    util::nr_cpus,
};
use guard_tests::testrun;

/// Where the peers' packages come from.
const PEERS_INSTALLED: &str = "`cargo xtask bench` installs the peers' packages";

const DIR: &str = "/usr/lib/x86_64-linux-gnu/bpf";
/// xdp-filter's rule bits.
const SRC: u64 = 1;
const DST: u64 = 2;
const TCP: u64 = 4;

/// What an xdp-filter rule matches.
#[derive(Clone, Copy, Debug)]
pub enum Rule {
    /// TCP to a destination port.
    Port,
    /// A source address.
    Source,
}

/// The variants measured, cheapest first.
pub const VARIANTS: [&str; 3] = ["tcp", "ip", "all"];

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A bpffs directory of this process's own, removed with everything pinned
/// in it when dropped.
struct PinDir(PathBuf);

impl PinDir {
    fn new() -> Result<Self, String> {
        let dir = Path::new("/sys/fs/bpf").join(format!(
            "guard-bench-peer-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Self(dir))
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One xdp-filter program, loaded, with its maps pinned in a directory
/// of their own.
pub struct XdpFilter {
    ebpf: Ebpf,
    name: String,
    _pins: PinDir,
}

impl XdpFilter {
    /// `alw_VARIANT`, if its object is installed.
    pub fn load(variant: &str) -> Result<Self, String> {
        let name = format!("xdpfilt_alw_{variant}");
        let path = Path::new(DIR).join(format!("{name}.o"));
        if !path.exists() {
            return Err(format!("{} is missing ({PEERS_INSTALLED})", path.display()));
        }
        let pins = PinDir::new()?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(&pins.0)
            .load_file(&path)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let prog: &mut Xdp = ebpf
            .program_mut(&name)
            .ok_or_else(|| format!("no program {name}"))?
            .try_into()
            .map_err(|e| format!("{name}: {e}"))?;
        prog.load().map_err(|e| format!("verifying {name}: {e}"))?;
        Ok(Self {
            ebpf,
            name,
            _pins: pins,
        })
    }

    /// A drop rule of `rule`'s kind: for TCP to `port` (`tcp`, `all`) or
    /// for the source `src` (`ip`, `all`); an error if this variant has no
    /// map for it.
    pub fn drop_rule(&mut self, rule: Rule, port: u16, src: IpAddr) -> Result<(), String> {
        let cpus = nr_cpus().map_err(|(what, e)| format!("{what}: {e}"))?;
        let per_cpu = |v: u64| PerCpuValues::try_from(vec![v; cpus]).map_err(|e| e.to_string());
        let missing = || format!("{} has no rule map for {rule:?}", self.name);
        match (rule, src) {
            (Rule::Port, _) => {
                let map = self.ebpf.map_mut("filter_ports").ok_or_else(missing)?;
                let mut ports: PerCpuArray<_, u64> =
                    PerCpuArray::try_from(map).map_err(|e| e.to_string())?;
                // The port in network order, as the u32 key's first two bytes.
                let [hi, lo] = port.to_be_bytes();
                let key = u32::from_le_bytes([hi, lo, 0, 0]);
                ports
                    .set(key, per_cpu(DST | TCP)?, 0)
                    .map_err(|e| e.to_string())?;
            }
            (Rule::Source, IpAddr::V4(a)) => {
                let map = self.ebpf.map_mut("filter_ipv4").ok_or_else(missing)?;
                let mut addrs: PerCpuHashMap<_, u32, u64> =
                    PerCpuHashMap::try_from(map).map_err(|e| e.to_string())?;
                addrs
                    .insert(u32::from_ne_bytes(a.octets()), per_cpu(SRC)?, 0)
                    .map_err(|e| e.to_string())?;
            }
            (Rule::Source, IpAddr::V6(_)) => return Err(missing()),
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

/// The selftest's source, inside the linux-source tarball's top directory.
const SYNPROXY_C: &str = "tools/testing/selftests/bpf/progs/xdp_synproxy_kern.c";
/// The selftest includes the kernel tree's `bpf_compiler.h`, which the
/// tarball lacks; its four loop pragmas are all the selftest takes from it.
const BPF_COMPILER_H: &str = r#"#define __bench_str(x) #x
#define __pragma_loop_unroll _Pragma("clang loop unroll(enable)")
#define __pragma_loop_unroll_count(N) _Pragma(__bench_str(clang loop unroll_count(N)))
#define __pragma_loop_unroll_full _Pragma("clang loop unroll(full)")
#define __pragma_loop_no_unroll _Pragma("clang loop unroll(disable)")
"#;

/// The kernel's xdp_synproxy program (its `syncookie_xdp`), loaded, with
/// `allowed_ports` = the one port and `values` left zero (MSS 1460, window
/// scale 7, TTL 64). Nothing stays pinned: the fd keeps it and its maps.
pub struct XdpSynproxy(ProgramFd);

impl XdpSynproxy {
    pub fn load(port: u16) -> Result<Self, String> {
        let object = build_synproxy().map_err(|e| format!("{e}; {PEERS_INSTALLED}"))?;
        let pins = PinDir::new()?;
        let (progs, maps) = (pins.0.join("progs"), pins.0.join("maps"));
        std::fs::create_dir_all(&maps).map_err(|e| format!("{}: {e}", maps.display()))?;
        output(
            Command::new("bpftool")
                .args(["prog", "loadall"])
                .arg(&object)
                .arg(&progs)
                .arg("pinmaps")
                .arg(&maps),
        )?;
        let prog = ProgramInfo::from_pin(progs.join("syncookie_xdp"))
            .and_then(|p| p.fd())
            .map_err(|e| format!("syncookie_xdp: {e}"))?;
        let mut ports: Array<_, u16> = MapData::from_pin(maps.join("allowed_ports"))
            .and_then(Map::from_map_data)
            .and_then(Array::try_from)
            .map_err(|e| format!("allowed_ports: {e}"))?;
        ports
            .set(0, port, 0)
            .map_err(|e| format!("allowed_ports: {e}"))?;
        // `pins` goes now: the fd keeps the program and its maps.
        Ok(Self(prog))
    }

    /// The kernel's ns for one run of `frame`. One run only: the program
    /// rewrites a SYN into its SYN-ACK and grows the frame's tail in place,
    /// so the kernel's repeat loop would feed it its own output.
    pub fn time(&self, frame: &[u8]) -> u32 {
        self.run(frame).duration_ns
    }

    /// The XDP action for `frame` (1 drop, 2 pass, 3 tx).
    pub fn action(&self, frame: &[u8]) -> u32 {
        self.run(frame).action
    }

    fn run(&self, frame: &[u8]) -> testrun::Outcome {
        testrun::run(self.0.as_fd(), frame, 1).expect("test run")
    }
}

/// Builds xdp_synproxy from `/usr/src/linux-source-*.tar.*` (the last by
/// name, if several) into the bench's scratch directory; returns the
/// object.
fn build_synproxy() -> Result<PathBuf, String> {
    let tarball = std::fs::read_dir("/usr/src")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("linux-source-") && n.contains(".tar."))
        .max()
        .ok_or("no /usr/src/linux-source-*.tar.*")?;
    let top = &tarball[..tarball.find(".tar.").expect("filtered")];
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("xdp_synproxy");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let write = |name: &str, text: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))
    };
    output(
        Command::new("tar")
            .arg("-xf")
            .arg(Path::new("/usr/src").join(&tarball))
            .arg("-C")
            .arg(&dir)
            .arg(format!("{top}/{SYNPROXY_C}")),
    )?;
    write("bpf_compiler.h", BPF_COMPILER_H.as_bytes())?;
    write(
        "vmlinux.h",
        &output(Command::new("bpftool").args([
            "btf",
            "dump",
            "file",
            "/sys/kernel/btf/vmlinux",
            "format",
            "c",
        ]))?,
    )?;
    let object = dir.join("xdp_synproxy_kern.o");
    // The selftests' own flags (peers.md): BPF v3, x86 for CO-RE.
    output(
        Command::new("clang-14")
            .args([
                "-O2",
                "-g",
                "-target",
                "bpf",
                "-mcpu=v3",
                "-D__TARGET_ARCH_x86",
            ])
            .arg("-I")
            .arg(&dir)
            .args(["-I", "/usr/include/x86_64-linux-gnu", "-c"])
            .arg(dir.join(top).join(SYNPROXY_C))
            .arg("-o")
            .arg(&object),
    )?;
    Ok(object)
}

/// Runs `cmd` and returns its stdout; on failure, its first line of stderr.
fn output(cmd: &mut Command) -> Result<Vec<u8>, String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().map_err(|e| format!("{program}: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(format!(
            "{program} failed: {}",
            stderr.lines().next().unwrap_or_default()
        ));
    }
    Ok(out.stdout)
}
