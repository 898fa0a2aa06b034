//! Test networks: two fresh namespaces joined by a veth pair.
//!
//! Rules (shared/notes/test-network.md): addresses only from 198.18.0.0/15
//! and 2001:db8::/32, no default routes, names unique per run, everything
//! deleted on every exit path (Drop, which also runs when a test panics).
//! Namespaces left by a killed run are swept when the next run starts.

use std::{
    fs,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use guard::host::netns::Scope;

/// Prefix of every namespace the tests create: `guardt-<pid>-<n>-{a,v}`.
const PREFIX: &str = "guardt-";

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Addresses of [`TestNet::addressed`].
pub const ATTACKER_ADDR: &str = "198.18.0.1";
pub const VICTIM_ADDR: &str = "198.18.0.2";
const ATTACKER_CIDR: &str = "198.18.0.1/24";
const VICTIM_CIDR: &str = "198.18.0.2/24";
pub const ATTACKER_ADDR6: &str = "2001:db8::1";
pub const VICTIM_ADDR6: &str = "2001:db8::2";
const ATTACKER_CIDR6: &str = "2001:db8::1/64";
const VICTIM_CIDR6: &str = "2001:db8::2/64";
/// Where spoofed flood sources come from.
pub const SPOOFED_RANGE: &str = "198.19.0.0/16";
/// Where spoofed IPv6 flood sources come from: 2^88 addresses, 2^24 /64s.
pub const SPOOFED_RANGE6: &str = "2001:db8:ff00::/40";

/// An attacker/client namespace and a victim namespace, joined by veth.
pub struct TestNet {
    /// Namespace that sends.
    pub attacker: String,
    /// Namespace guard protects.
    pub victim: String,
    /// The veth end in `attacker`.
    pub attacker_if: String,
    /// The veth end in `victim`, where guard attaches.
    pub victim_if: String,
}

impl TestNet {
    /// A pair of namespaces with a silent link: IPv6 on but no addresses
    /// (not even link-local ones), no router solicitations, so the kernel
    /// sends nothing of its own and every packet the victim sees is one the
    /// test sent.
    #[must_use]
    pub fn silent() -> Self {
        sweep_stale(PREFIX);
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let net = Self {
            attacker: format!("{PREFIX}{pid}-{n}-a"),
            victim: format!("{PREFIX}{pid}-{n}-v"),
            attacker_if: format!("gt{pid}{n}a"),
            victim_if: format!("gt{pid}{n}v"),
        };
        for ns in [&net.attacker, &net.victim] {
            ip(&["netns", "add", ns]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        net.link();
        net
    }

    /// Makes the silent veth pair between the namespaces (again, after a
    /// test deleted it).
    pub fn link(&self) {
        // Created directly inside the namespaces: nothing ever appears
        // among the host's own interfaces.
        ip(&[
            "link",
            "add",
            "name",
            &self.attacker_if,
            "netns",
            &self.attacker,
            "type",
            "veth",
            "peer",
            "name",
            &self.victim_if,
            "netns",
            &self.victim,
        ]);
        for (ns, dev) in [
            (&self.attacker, &self.attacker_if),
            (&self.victim, &self.victim_if),
        ] {
            quiet_ipv6(ns, dev);
            ip(&["-n", ns, "link", "set", dev, "up"]);
        }
    }

    /// A silent pair with addresses: the attacker side 198.18.0.1/24 and
    /// 2001:db8::1/64, the victim 198.18.0.2/24 and 2001:db8::2/64 (no
    /// DAD). The victim routes the spoofed ranges 198.19.0.0/16 and
    /// 2001:db8:ff00::/40 back over the veth, where the attacker's namespace
    /// drops them (it forwards nothing): the victim answers spoofed SYNs
    /// with SYN-ACKs as a real server would, and nothing leaves the pair.
    #[must_use]
    pub fn addressed() -> Self {
        let net = Self::silent();
        for (ns, dev, cidr) in [
            (&net.attacker, &net.attacker_if, ATTACKER_CIDR6),
            (&net.victim, &net.victim_if, VICTIM_CIDR6),
        ] {
            ip(&["-n", ns, "-6", "addr", "add", cidr, "dev", dev, "nodad"]);
        }
        ip(&[
            "-n",
            &net.victim,
            "-6",
            "route",
            "add",
            SPOOFED_RANGE6,
            "via",
            ATTACKER_ADDR6,
        ]);
        ip(&[
            "-n",
            &net.attacker,
            "addr",
            "add",
            ATTACKER_CIDR,
            "dev",
            &net.attacker_if,
        ]);
        ip(&[
            "-n",
            &net.victim,
            "addr",
            "add",
            VICTIM_CIDR,
            "dev",
            &net.victim_if,
        ]);
        ip(&[
            "-n",
            &net.victim,
            "route",
            "add",
            SPOOFED_RANGE,
            "via",
            ATTACKER_ADDR,
        ]);
        net
    }

    /// Writes a per-namespace sysctl (path below /proc/sys).
    pub fn sysctl(&self, ns: &str, key: &str, value: &str) {
        write_sysctl(ns, key, value);
    }

    /// The MAC address of `dev` in `ns`.
    #[must_use]
    pub fn mac(&self, ns: &str, dev: &str) -> [u8; 6] {
        mac(ns, dev)
    }

    /// `ip -d link show` of the victim's interface (shows `xdp` while a
    /// program is attached).
    #[must_use]
    pub fn victim_link(&self) -> String {
        ip_out(&[
            "-n",
            &self.victim,
            "-d",
            "link",
            "show",
            "dev",
            &self.victim_if,
        ])
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        // Deleting a namespace destroys the veth end in it, and with it
        // the peer.
        for ns in [&self.victim, &self.attacker] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Addresses of [`TestNet::behind`]: the victim's side of the second link
/// and the machine behind it.
const ROUTER_CIDR: &str = "198.18.1.1/24";
const ROUTER_ADDR6: &str = "2001:db8:1::1";
const ROUTER_CIDR6: &str = "2001:db8:1::1/64";
pub const BEHIND_ADDR: &str = "198.18.1.2";
const BEHIND_CIDR: &str = "198.18.1.2/24";
pub const BEHIND_ADDR6: &str = "2001:db8:1::2";
const BEHIND_CIDR6: &str = "2001:db8:1::2/64";

/// A third namespace that the victim routes to, as a host routes to a
/// container or pod with an address of its own (no NAT): linked to the
/// victim by a second veth pair, the victim forwarding (in its namespace
/// only), the attacker routing [`BEHIND_ADDR`]'s /24 and
/// [`BEHIND_ADDR6`]'s /64 through the victim. Deleted on drop.
pub struct Behind {
    pub ns: String,
}

impl TestNet {
    /// The namespace behind the victim (see [`Behind`]).
    #[must_use]
    pub fn behind(&self) -> Behind {
        let behind = Behind {
            ns: self.victim.replace("-v", "-b"),
        };
        ip(&["netns", "add", &behind.ns]);
        ip(&["-n", &behind.ns, "link", "set", "lo", "up"]);
        let (near, far) = (
            self.victim_if.replace('v', "r"),
            self.victim_if.replace('v', "b"),
        );
        ip(&[
            "link",
            "add",
            "name",
            &near,
            "netns",
            &self.victim,
            "type",
            "veth",
            "peer",
            "name",
            &far,
            "netns",
            &behind.ns,
        ]);
        for (ns, dev, cidr, cidr6) in [
            (&self.victim, &near, ROUTER_CIDR, ROUTER_CIDR6),
            (&behind.ns, &far, BEHIND_CIDR, BEHIND_CIDR6),
        ] {
            quiet_ipv6(ns, dev);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "addr", "add", cidr, "dev", dev]);
            ip(&["-n", ns, "-6", "addr", "add", cidr6, "dev", dev, "nodad"]);
        }
        // A router solicits a forwarded packet's next hop from its
        // link-local address, which these quiet links have none of: the
        // victim is told the machine's, and the attacker's for the
        // machine's replies (learned from the attacker's own
        // solicitation, that entry would lapse within a minute, and the
        // replies with it).
        for (addr, ns, dev, via) in [
            (BEHIND_ADDR6, &behind.ns, &far, &near),
            (
                ATTACKER_ADDR6,
                &self.attacker,
                &self.attacker_if,
                &self.victim_if,
            ),
        ] {
            let lladdr = mac(ns, dev).map(|b| format!("{b:02x}")).join(":");
            ip(&[
                "-n",
                &self.victim,
                "-6",
                "neigh",
                "replace",
                addr,
                "lladdr",
                &lladdr,
                "dev",
                via,
                "nud",
                "permanent",
            ]);
        }
        write_sysctl(&self.victim, "net/ipv4/ip_forward", "1");
        write_sysctl(&self.victim, "net/ipv6/conf/all/forwarding", "1");
        for (ns, to, via) in [
            (&self.attacker, "198.18.1.0/24", VICTIM_ADDR),
            (&self.attacker, "2001:db8:1::/64", VICTIM_ADDR6),
            (&behind.ns, "198.18.0.0/24", "198.18.1.1"),
            (&behind.ns, "2001:db8::/64", ROUTER_ADDR6),
        ] {
            ip(&["-n", ns, "route", "add", to, "via", via]);
        }
        behind
    }
}

impl Drop for Behind {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// Addresses of [`TestNet::macvlan`]: a container's, on the victim's link.
pub const MACVLAN_ADDR: &str = "198.18.0.50";
const MACVLAN_CIDR: &str = "198.18.0.50/24";
pub const MACVLAN_ADDR6: &str = "2001:db8::50";
const MACVLAN_CIDR6: &str = "2001:db8::50/64";

/// A namespace with a macvlan device on the victim's interface, as a
/// container on a macvlan network has (Docker's `macvlan` driver): a MAC
/// and addresses of its own on the victim's link ([`MACVLAN_ADDR`],
/// [`MACVLAN_ADDR6`]), its frames in through the victim's interface, and
/// nothing of the victim's routing. Deleted on drop.
pub struct Macvlan {
    pub ns: String,
    /// Its macvlan device, in `ns`.
    pub dev: String,
}

impl TestNet {
    /// The container on the victim's link (see [`Macvlan`]).
    #[must_use]
    pub fn macvlan(&self) -> Macvlan {
        let container = Macvlan {
            ns: self.victim.replace("-v", "-m"),
            dev: self.victim_if.replace('v', "m"),
        };
        ip(&["netns", "add", &container.ns]);
        ip(&["-n", &container.ns, "link", "set", "lo", "up"]);
        let dev = &container.dev;
        ip(&[
            "-n",
            &self.victim,
            "link",
            "add",
            dev,
            "link",
            &self.victim_if,
            "type",
            "macvlan",
            "mode",
            "bridge",
        ]);
        ip(&[
            "-n",
            &self.victim,
            "link",
            "set",
            dev,
            "netns",
            &container.ns,
        ]);
        quiet_ipv6(&container.ns, dev);
        ip(&["-n", &container.ns, "link", "set", dev, "up"]);
        ip(&["-n", &container.ns, "addr", "add", MACVLAN_CIDR, "dev", dev]);
        ip(&[
            "-n",
            &container.ns,
            "-6",
            "addr",
            "add",
            MACVLAN_CIDR6,
            "dev",
            dev,
            "nodad",
        ]);
        container
    }
}

impl Drop for Macvlan {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

/// A port of the host's loopback free now, below the ephemeral ports
/// (32768 up), for a server a test starts there (nats-server, guard's
/// metrics). One the kernel had handed out could be handed to another
/// connection before the server binds it: to a guard reconnecting to a
/// nats-server the test stopped, say, which then holds it as a connection
/// to itself, and the server's restart finds it taken.
#[must_use]
pub fn loopback_port() -> u16 {
    const LOW: u16 = 24_000;
    const PORTS: u16 = 32_768 - LOW;
    let start = u16::try_from(std::process::id() % u32::from(PORTS)).expect("below PORTS");
    (0..PORTS)
        .map(|i| LOW + (start + i) % PORTS)
        .find(|&port| std::net::TcpListener::bind(("127.0.0.1", port)).is_ok())
        .expect("a free loopback port below the ephemeral ones")
}

/// IPv6 on `dev` in `ns`, without the traffic the kernel would send by
/// itself: no link-local address (so no DAD and no MLD report for it), no
/// router solicitations, no router advertisements taken. Call before the
/// link is up.
pub fn quiet_ipv6(ns: &str, dev: &str) {
    for (key, value) in [
        ("disable_ipv6", "0"),
        ("addr_gen_mode", "1"),
        ("accept_ra", "0"),
        ("router_solicitations", "0"),
    ] {
        write_sysctl(ns, &format!("net/ipv6/conf/{dev}/{key}"), value);
    }
}

/// Writes a per-namespace sysctl (path below /proc/sys).
pub fn write_sysctl(ns: &str, key: &str, value: &str) {
    let path = format!("/proc/sys/{key}");
    Scope::open(Some(ns))
        .unwrap_or_else(|e| panic!("opening netns {ns}: {e}"))
        .run(|| fs::write(&path, value))
        .unwrap_or_else(|e| panic!("entering netns {ns}: {e}"))
        .unwrap_or_else(|e| panic!("writing {value} to {path} in {ns}: {e}"));
}

/// Deletes namespaces named `<prefix><pid>-...` whose process is gone:
/// what a killed earlier run left.
pub fn sweep_stale(prefix: &str) {
    let Ok(entries) = fs::read_dir(guard::host::netns::NETNS_RUN_DIR) else {
        return;
    };
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            eprintln!("removing namespace {name} left by an earlier run (pid {pid})");
            let _ = Command::new("ip").args(["netns", "del", &name]).status();
        }
    }
}

/// The MAC address of `dev` in `ns`.
#[must_use]
pub fn mac(ns: &str, dev: &str) -> [u8; 6] {
    let out = ip_out(&["-n", ns, "-j", "link", "show", "dev", dev]);
    let json: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("parsing `ip -j link` output {out}: {e}"));
    let text = json[0]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no address in {out}"));
    let mut mac = [0u8; 6];
    for (byte, part) in mac.iter_mut().zip(text.split(':')) {
        *byte = u8::from_str_radix(part, 16).unwrap_or_else(|e| panic!("MAC {text}: {e}"));
    }
    mac
}

/// Runs `ip` and panics with its output if it fails.
pub fn ip(args: &[&str]) {
    let _ = ip_out(args);
}

/// Runs `ip` and returns its stdout; panics with context if it fails.
#[must_use]
pub fn ip_out(args: &[&str]) -> String {
    run_tool("ip", args)
}

/// Runs `tc` and panics with its output if it fails.
pub fn tc(args: &[&str]) {
    let _ = run_tool("tc", args);
}

/// Runs `tool ARGS` and returns its stdout; panics with its stderr if it
/// fails.
#[must_use]
pub fn run_tool(tool: &str, args: &[&str]) -> String {
    let out = Command::new(tool)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {tool} {}: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "{tool} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
