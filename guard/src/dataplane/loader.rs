//! Loads guard's XDP object, attaches it to an interface (the XDP program
//! on ingress, the egress program beside it), pins its maps, and undoes
//! all of it when the [`Attached`] value is dropped. The maps are the
//! [`Dataplane`] handle's from the moment the object is loaded.

use std::{
    borrow::Cow,
    collections::BTreeMap,
    hash::{BuildHasher as _, RandomState},
    path::PathBuf,
};

use anyhow::{Context as _, Result, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    programs::{
        LinkOrder, ProgramError, SchedClassifier, TcAttachType, Xdp, XdpMode,
        tc::{SchedClassifierLinkId, TcAttachOptions},
        xdp::XdpLinkId,
    },
};
use guard_common::{
    PortCounts,
    config::{PORTS_ARMED, VERIFY_ACKS},
    flows::{flow_sets, flow_tag_lines},
    maps::{
        EVENTS, LISTS_V4, LISTS_V6, PREFIXES, PROGRAM, SAMPLES, SOURCE_TAGS, SOURCES,
        SYNACK_PROGRAM, UDP_FLOWS, UDP_FLOWS4, UDP_TAGS, UDP_TAGS4,
    },
    ports::{PORT_COOKIES, port_slot},
    slots::tag_lines,
};

use super::{
    handle::Dataplane,
    pins::{self, Layout},
};
use crate::{
    config::{Rate, Settings, SynCookies, XdpModeChoice},
    error::usage,
    host::{
        iface::{self, Interface},
        netns::Scope,
    },
    model::{
        lists::Lists,
        policy::XdpLimits,
        xdp::{self, XdpAttachMode},
    },
};

/// The XDP object built by `cargo xtask build`, embedded at compile time.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(env!("GUARD_EBPF_OBJECT"));

/// Names an XDP object file to load instead of the embedded one: for
/// working on the XDP program without rebuilding guard.
pub const OBJECT_ENV: &str = "GUARD_XDP_OBJECT";

/// The object to load: [`OBJECT`], unless [`OBJECT_ENV`] names another.
fn object() -> Result<Cow<'static, [u8]>> {
    let Some(path) = std::env::var_os(OBJECT_ENV) else {
        return Ok(Cow::Borrowed(OBJECT));
    };
    tracing::warn!(
        "loading the XDP object from {} ({OBJECT_ENV} is set)",
        PathBuf::from(&path).display()
    );
    std::fs::read(&path).map(Cow::Owned).map_err(|e| {
        usage(anyhow!(e).context(format!(
            "reading {OBJECT_ENV}={}",
            PathBuf::from(&path).display()
        )))
    })
}

/// Verifier log lines shown when the kernel rejects the program: the
/// reason is at the end.
const VERIFIER_TAIL_LINES: usize = 20;

/// How to load the object.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    pub max_sources: u32,
    pub max_prefixes: u32,
    pub max_udp_flows: u32,
    pub list_capacity: u32,
    /// Read time from the `GUARD_TEST_CLOCK` map instead of the kernel's
    /// clock: for the differential tests only.
    pub test_clock: bool,
}

impl LoadOptions {
    #[must_use]
    pub fn new(settings: &Settings) -> Self {
        Self {
            max_sources: settings.max_sources,
            max_prefixes: settings.max_prefixes,
            max_udp_flows: settings.max_udp_flows,
            list_capacity: settings.list_capacity,
            test_clock: false,
        }
    }
}

/// A loaded object: the program (with the maps only it and the tests use)
/// and the handle of the maps guard reads and writes.
pub struct Loaded {
    pub ebpf: Ebpf,
    pub dataplane: Dataplane,
}

/// Loads the object and verifies its program; nothing is attached yet.
///
/// A verifier rejection is a [`usage`] error ending with the verifier's
/// last lines.
pub fn load(opts: &LoadOptions) -> Result<Loaded> {
    let object = object()?;
    let flow_sets = flow_sets(opts.max_udp_flows);
    let mut loader = EbpfLoader::new();
    loader
        .map_max_entries(SOURCES, opts.max_sources)
        .map_max_entries(PREFIXES, opts.max_prefixes)
        .map_max_entries(SOURCE_TAGS, tag_lines(opts.max_sources))
        .map_max_entries(UDP_FLOWS, flow_sets)
        .map_max_entries(UDP_FLOWS4, flow_sets)
        .map_max_entries(UDP_TAGS, flow_tag_lines(flow_sets))
        .map_max_entries(UDP_TAGS4, flow_tag_lines(flow_sets))
        .map_max_entries(LISTS_V4, opts.list_capacity)
        .map_max_entries(LISTS_V6, opts.list_capacity);
    // The direct-mapped tables' sizes, which the program maps keys onto.
    loader
        .override_global("SOURCE_SLOTS", &opts.max_sources, true)
        .override_global("PREFIX_SLOTS", &opts.max_prefixes, true)
        .override_global("FLOW_SETS", &flow_sets, true);
    if opts.test_clock {
        loader.override_global("TEST_CLOCK", &1u8, true);
    }
    let mut ebpf = loader
        .load(&object)
        .map_err(|e| usage(anyhow!(e).context("loading guard's XDP object (creating its maps)")))?;
    let program = xdp_program(&mut ebpf)?;
    program.load().map_err(|e| usage(load_error(e)))?;
    synack_program(&mut ebpf)?
        .load()
        .map_err(|e| usage(load_error(e)))?;
    let mut dataplane = Dataplane::take(&mut ebpf)?;
    // A seed no sender can know, so none can choose which sources share a
    // slot (`guard_common::slots`).
    let seed = RandomState::new().hash_one(std::process::id());
    dataplane.update_config(|c| c.slot_seed = seed)?;
    Ok(Loaded { ebpf, dataplane })
}

/// Writes the settings into a program's maps: the configuration and the
/// lists. The run-time parts of the configuration (the controller's limits
/// and bits) are its to write again; SYN cookies stay as armed.
pub fn configure(dataplane: &mut Dataplane, settings: &Settings) -> Result<()> {
    dataplane.replace_lists(&Lists {
        allow: settings.allow.clone(),
        deny: settings.deny.clone(),
    })?;
    let wanted = settings.dataplane();
    dataplane.update_config(|c| {
        let kept = *c;
        *c = wanted;
        c.ports = kept.ports;
        c.slot_seed = kept.slot_seed;
        c.marked_half = kept.marked_half;
        c.host_macs_len = kept.host_macs_len;
        c.host_macs = kept.host_macs;
    })
}

/// What `attach` needs to know.
pub struct AttachRequest<'a> {
    pub scope: &'a Scope,
    pub iface: &'a str,
    pub settings: &'a Settings,
    pub layout: &'a Layout,
}

/// guard attached to one interface. Dropping it detaches the program and
/// removes the pinned maps.
pub struct Attached {
    pub iface: Interface,
    pub mode: XdpAttachMode,
    pub prog_id: u32,
    /// The egress program's id, when attached.
    pub egress_prog_id: Option<u32>,
    pub pin_dir: PathBuf,
    /// Whether a SYN-ACK sent with `XDP_TX` reaches the client here (not on
    /// a veth in native mode, whose peer may have no XDP program).
    pub cookies_ok: bool,
    /// The `GUARD_PORTS` entries written, by port.
    ports: BTreeMap<u16, u32>,
    pub dataplane: Dataplane,
    ebpf: Ebpf,
    link: Option<XdpLinkId>,
    /// The egress program's tcx link on the interface, if the
    /// kernel took it.
    egress: Option<SchedClassifierLinkId>,
}

/// What became of a guarded interface since the last look
/// ([`Attached::follow`]).
#[derive(Debug)]
pub enum Followed {
    /// Deleted (a container stopped, a link recreated): nothing is guarded
    /// under its name until it comes back.
    Gone,
    /// An interface of the same name again: the program is attached to it,
    /// with its maps (sources, bans, lists, counters) as they were.
    Back,
    /// An interface of the same name again, which the program could not
    /// take (why); it is tried again at every look, quietly.
    Refused(anyhow::Error),
}

impl Attached {
    /// Whether the interface was deleted ([`Attached::follow`]) and guard
    /// is attached to none of its name: the links are released, the maps
    /// kept for an interface of the same name.
    #[must_use]
    pub const fn gone(&self) -> bool {
        self.link.is_none()
    }

    /// Makes the allow and deny tries hold `lists`, and only them.
    pub fn set_lists(&mut self, lists: &Lists) -> Result<()> {
        self.dataplane
            .replace_lists(lists)
            .with_context(|| format!("updating the lists of {}", self.iface.name))
    }

    /// Writes a reloaded configuration (mode, limits, lists) into the running
    /// program.
    pub fn reconfigure(&mut self, settings: &Settings) -> Result<()> {
        configure(&mut self.dataplane, settings)
            .with_context(|| format!("reconfiguring {}", self.iface.name))
    }

    /// Writes new global, per-source and per-prefix limits, and the
    /// `verify` bit, into the running program.
    pub fn set_limits(&mut self, limits: &XdpLimits) -> Result<()> {
        self.dataplane
            .update_config(|c| {
                c.global = limits.global.per_class();
                c.source = limits.source.map(Rate::limit);
                c.prefix = limits.prefix.map(Rate::limit);
                c.verify = if limits.verify { VERIFY_ACKS } else { 0 };
            })
            .with_context(|| format!("setting the limits of {}", self.iface.name))
    }

    /// Makes the port table `wanted` (port -> entry; a port missing has
    /// none), of which `marked` says the protocols whose open ports it
    /// marks (`OPEN_MARKED_*`): writes what changed, and the
    /// configuration's port bits when they change (`PORTS_ARMED`: some
    /// port is armed). Where cookies cannot reach the client, no port is
    /// armed.
    pub fn set_ports(&mut self, wanted: &BTreeMap<u16, u32>, marked: u8) -> Result<()> {
        let mask = if self.cookies_ok {
            u32::MAX
        } else {
            !PORT_COOKIES
        };
        let wanted: BTreeMap<u16, u32> = wanted.iter().map(|(&p, &e)| (p, e & mask)).collect();
        let armed = wanted.values().any(|e| e & PORT_COOKIES != 0);
        let bits = marked | if armed { PORTS_ARMED } else { 0 };
        let was = self.dataplane.config()?.ports;
        let name = self.iface.name.clone();
        let set = |dataplane: &mut Dataplane, bits: u8| {
            dataplane
                .update_config(|c| c.ports = bits)
                .with_context(|| format!("setting the port bits of {name}"))
        };
        // A bit never says more than the table holds: one going off goes
        // before the ports change, one coming on after (arming: the ports
        // first, then the bit that makes ACKs look them up).
        if was & !bits != 0 {
            set(&mut self.dataplane, was & bits)?;
        }
        self.write_ports(&wanted)?;
        if bits & !was != 0 {
            set(&mut self.dataplane, bits)?;
        }
        Ok(())
    }

    fn write_ports(&mut self, wanted: &BTreeMap<u16, u32>) -> Result<()> {
        for (&port, &entry) in wanted {
            if self.ports.get(&port) != Some(&entry) {
                self.dataplane.write_port(port, entry)?;
            }
        }
        for &port in self.ports.keys() {
            if !wanted.contains_key(&port) {
                self.dataplane.write_port(port, 0)?;
            }
        }
        self.ports.clone_from(wanted);
        Ok(())
    }

    /// Follows the interface by its name, as an operator names it: once it
    /// is deleted the links are released and it is [`Followed::Gone`]; when
    /// an interface of the name appears (a new index) the program attaches
    /// to it in the mode it had, and the egress recorder with it (or, if
    /// it cannot, tries again every call). `None` when nothing changed, or
    /// when the lookup itself failed.
    pub fn follow(&mut self, scope: &Scope) -> Option<Followed> {
        let found = match scope.run(|| iface::lookup(&self.iface.name, "")) {
            Ok(Ok(found)) => Some(found),
            Ok(Err(iface::IfaceError::NotFound { .. })) => None,
            _ => return None,
        };
        let gone = self.gone();
        match found {
            Some(found) if found.index == self.iface.index && !gone => None,
            // The one guard could not take when it came back (someone
            // else's program on it): tried again each second, said once
            // it takes.
            Some(found) if found.index == self.iface.index => {
                self.reattach(scope).ok().map(|()| Followed::Back)
            }
            None if gone => None,
            None => {
                self.release();
                Some(Followed::Gone)
            }
            Some(found) => {
                self.release();
                self.iface = found;
                Some(match self.reattach(scope) {
                    Ok(()) => Followed::Back,
                    Err(e) => Followed::Refused(e),
                })
            }
        }
    }

    /// Lets go of the links of an interface that is gone (the kernel has
    /// detached them already): their descriptors, nothing more.
    fn release(&mut self) {
        if let Some(link) = self.egress.take()
            && let Ok(p) = synack_program(&mut self.ebpf)
        {
            let _ = p.detach(link);
        }
        if let Some(link) = self.link.take()
            && let Ok(p) = xdp_program(&mut self.ebpf)
        {
            let _ = p.detach(link);
        }
    }

    /// Attaches the loaded program to `self.iface` again, as [`attach`]
    /// did to the one of this name before.
    fn reattach(&mut self, scope: &Scope) -> Result<()> {
        let iface = self.iface.clone();
        let name = format!("{}{}", iface.name, scope.suffix());
        // Someone else's program first: while it stays, this is retried
        // every second, and the bridge's warning would repeat.
        if let Some(existing) = scope.run(|| iface::xdp_attachment(&iface))?? {
            return Err(anyhow!(
                "{name} already has an XDP program: {existing}; guard does not replace it"
            ));
        }
        ethernet(scope, &iface)?;
        warn_bridge(scope, &iface)?;
        let mode = match self.mode {
            XdpAttachMode::Native => XdpMode::Driver,
            _ => XdpMode::Skb,
        };
        let program = xdp_program(&mut self.ebpf)?;
        self.link = Some(scope.run(|| program_attach(program, &iface, mode))??);
        self.egress = scope
            .run(|| attach_egress(&mut self.ebpf, &iface))?
            .map_err(|e| tracing::warn!("{name}: {e:#}"))
            .ok();
        self.egress_prog_id = self
            .egress
            .as_ref()
            .and_then(|_| synack_program(&mut self.ebpf).ok()?.info().ok())
            .map(|i| i.id());
        Ok(())
    }

    /// The counters of every port in the table, by port.
    pub fn port_counts(&self) -> Result<BTreeMap<u16, PortCounts>> {
        self.ports
            .iter()
            .map(|(&port, &entry)| Ok((port, self.dataplane.port_counts(port_slot(entry))?)))
            .collect()
    }

    /// Takes the event ring buffer, for a reader task.
    pub fn take_events(&mut self) -> Result<aya::maps::RingBuf<aya::maps::MapData>> {
        self.take_ring(EVENTS)
    }

    /// Takes the fingerprint samples' ring buffer, for the learner.
    pub fn take_samples(&mut self) -> Result<aya::maps::RingBuf<aya::maps::MapData>> {
        self.take_ring(SAMPLES)
    }

    /// Takes ring buffer `name` out of the object (once).
    fn take_ring(&mut self, name: &str) -> Result<aya::maps::RingBuf<aya::maps::MapData>> {
        let map = self
            .ebpf
            .take_map(name)
            .ok_or_else(|| anyhow!("the XDP object has no map {name} (or it was taken)"))?;
        aya::maps::RingBuf::try_from(map).with_context(|| format!("{name} is not a ring buffer"))
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        if let Some(link) = self.egress.take()
            && let Some(Err(e)) = self
                .ebpf
                .program_mut(SYNACK_PROGRAM)
                .and_then(|p| <&mut SchedClassifier>::try_from(p).ok())
                .map(|p| p.detach(link))
        {
            tracing::error!("detaching the egress program from {}: {e}", self.iface.name);
        }
        if let Some(link) = self.link.take() {
            let detached = self
                .ebpf
                .program_mut(PROGRAM)
                .and_then(|p| <&mut Xdp>::try_from(p).ok())
                .map(|p| p.detach(link));
            match detached {
                Some(Ok(())) => tracing::info!("detached from {}", self.iface.name),
                Some(Err(e)) => tracing::error!("detaching from {}: {e}", self.iface.name),
                None => tracing::error!("detaching from {}: program missing", self.iface.name),
            }
        }
        if let Err(e) = pins::remove_dir(&self.pin_dir) {
            tracing::error!("{:#}", anyhow::Error::from(e));
        }
    }
}

/// Loads the program and attaches it to `req.iface`, with its maps pinned.
///
/// Errors that mean "cannot start" (no such interface, someone else's
/// program, verifier rejection, unsupported mode) are [`usage`] errors. On
/// any error nothing stays attached or pinned.
pub fn attach(req: &AttachRequest<'_>) -> Result<Attached> {
    let scope = req.scope;
    let iface = attachable(scope, req.iface)?;
    warn_bridge(scope, &iface).map_err(usage)?;
    let existing = scope
        .run(|| iface::xdp_attachment(&iface))
        .map_err(usage)??;
    if let Some(existing) = existing {
        if !req.settings.force {
            return Err(usage(anyhow!(
                "interface {}{} already has an XDP program: {existing}; guard does not replace it \
                 (stop its owner, or pass --force to replace it)",
                iface.name,
                scope.suffix()
            )));
        }
        tracing::warn!(
            "--force: detaching {existing} from {}{}",
            iface.name,
            scope.suffix()
        );
        scope
            .run(|| iface::detach(&iface, &existing))
            .map_err(usage)??;
    }

    let pin_dir = req.layout.iface_dir(scope.name(), &iface.name);
    if pin_dir.exists() {
        // The caller holds the host lock, so these are a dead run's.
        tracing::warn!(
            "removing stale pins from an earlier run: {}",
            pin_dir.display()
        );
        pins::remove_dir(&pin_dir)?;
    }

    let Loaded {
        mut ebpf,
        mut dataplane,
    } = load(&LoadOptions::new(req.settings))?;
    configure(&mut dataplane, req.settings)?;
    let program = xdp_program(&mut ebpf)?;
    let prog_id = program.info()?.id();

    let veth = scope.run(|| iface::is_veth(&iface)).map_err(usage)??;
    let (link, mode) = scope
        .run(|| attach_mode(program, &iface, req.settings.xdp_mode, veth, scope))
        .map_err(usage)?
        .map_err(usage)?;
    let cookies_ok = xdp::can_reply(mode, veth);
    if !cookies_ok && req.settings.cookies.mode != SynCookies::Never {
        tracing::warn!(
            "no SYN cookies on {}{}: it is a veth in native XDP mode, where a reply sent with \
             XDP_TX is dropped unless the peer runs an XDP program; guard protects it without \
             cookies (use --xdp-mode auto or skb for cookies)",
            iface.name,
            scope.suffix()
        );
    }
    let egress = scope
        .run(|| attach_egress(&mut ebpf, &iface))
        .map_err(usage)?
        .map_err(|e| {
            tracing::warn!(
                "{}{}: {e:#}; returning clients are verified by their sockets alone (not those of \
                 a port the nat rules send elsewhere, nor at a handshake's last ACK, nor \
                 by what the host sent them before a flood), and the replies to the host's own \
                 datagrams count as new flows (allowlist its resolvers)",
                iface.name,
                scope.suffix()
            );
        })
        .ok();
    let egress_prog_id = egress.as_ref().and_then(|_| {
        let p: &SchedClassifier = ebpf.program(SYNACK_PROGRAM)?.try_into().ok()?;
        p.info().ok().map(|i| i.id())
    });
    let attached = Attached {
        iface,
        mode,
        prog_id,
        egress_prog_id,
        pin_dir,
        cookies_ok,
        ports: BTreeMap::new(),
        dataplane,
        ebpf,
        link: Some(link),
        egress,
    };
    attached.dataplane.pin(&attached.pin_dir)?;
    Ok(attached)
}

/// The interface `name` of `scope`, if guard can attach to it: it exists,
/// and its frames have an Ethernet header. Its errors are [`usage`]
/// errors, and it changes nothing: `guard run` asks it of every interface
/// before anything on the host changes.
pub fn attachable(scope: &Scope, name: &str) -> Result<Interface> {
    let iface = scope
        .run(|| iface::lookup(name, &scope.suffix()))
        .map_err(usage)?
        .map_err(usage)?;
    ethernet(scope, &iface).map_err(usage)?;
    Ok(iface)
}

/// Refuses an interface whose frames have no Ethernet header.
fn ethernet(scope: &Scope, iface: &Interface) -> Result<()> {
    if let Some(link_type) = scope.run(|| iface::non_ethernet(iface))?? {
        return Err(anyhow!(
            "interface {}{} has no Ethernet header (link type {link_type}: a tun, WireGuard, GRE, \
             IPIP or PPP device hands XDP bare IP packets), and guard's XDP program parses \
             Ethernet frames; run guard on the Ethernet interface the packets arrive on",
            iface.name,
            scope.suffix()
        ));
    }
    Ok(())
}

/// Says what guard does not see on a bridge (the README's caveats).
fn warn_bridge(scope: &Scope, iface: &Interface) -> Result<()> {
    let name = format!("{}{}", iface.name, scope.suffix());
    if scope.run(|| iface::is_bridge(iface))?? {
        tracing::warn!(
            "{name} is a bridge: guard sees the frames it hands to this host's own stack, not \
             those it forwards between its ports (containers', VMs'); to guard those, run guard \
             on the interface they arrive on"
        );
    }
    Ok(())
}

/// Attaches in the mode `choice` asks for. `auto` takes skb mode on a
/// veth: a veth hands a frame sent with `XDP_TX` to its peer only while
/// the peer runs an XDP program, which guard neither owns nor sees change
/// (a container's end has none), so native mode there would blackhole
/// every SYN cookie; skb mode sends it through the veth like any packet.
/// On a veth the frame is an skb already, so skb mode costs little more.
fn attach_mode(
    program: &mut Xdp,
    iface: &Interface,
    choice: XdpModeChoice,
    veth: bool,
    scope: &Scope,
) -> Result<(XdpLinkId, XdpAttachMode)> {
    if choice == XdpModeChoice::Auto && veth {
        return program_attach(program, iface, XdpMode::Skb).map(|link| (link, XdpAttachMode::Skb));
    }
    match choice {
        XdpModeChoice::Native => program_attach(program, iface, XdpMode::Driver)
            .map(|link| (link, XdpAttachMode::Native))
            .with_context(|| {
                format!(
                    "native XDP on {}{}: the driver may not support it; try --xdp-mode skb",
                    iface.name,
                    scope.suffix()
                )
            }),
        XdpModeChoice::Skb => {
            program_attach(program, iface, XdpMode::Skb).map(|link| (link, XdpAttachMode::Skb))
        }
        XdpModeChoice::Auto => match program_attach(program, iface, XdpMode::Driver) {
            Ok(link) => Ok((link, XdpAttachMode::Native)),
            Err(err) => {
                tracing::warn!(
                    "native XDP is not available on {}{} ({err:#}); falling back to skb mode",
                    iface.name,
                    scope.suffix()
                );
                program_attach(program, iface, XdpMode::Skb).map(|link| (link, XdpAttachMode::Skb))
            }
        },
    }
}

/// The object's XDP program.
fn xdp_program(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    Ok(ebpf
        .program_mut(PROGRAM)
        .ok_or_else(|| anyhow!("the XDP object has no program `{PROGRAM}`"))?
        .try_into()?)
}

/// The object's egress program (`guard-ebpf/src/egress.rs`: what the
/// host sends verifies its clients, and its SYN-ACKs and datagrams are
/// remembered).
fn synack_program(ebpf: &mut Ebpf) -> Result<&mut SchedClassifier> {
    Ok(ebpf
        .program_mut(SYNACK_PROGRAM)
        .ok_or_else(|| anyhow!("the XDP object has no program `{SYNACK_PROGRAM}`"))?
        .try_into()?)
}

/// Attaches the egress program to `iface` through tcx (Linux
/// 6.6 and later): a link of its own among any others' programs, which
/// closes with guard's process, so even a killed guard leaves no filter
/// behind, and no qdisc is added or removed.
fn attach_egress(ebpf: &mut Ebpf, iface: &Interface) -> Result<SchedClassifierLinkId> {
    synack_program(ebpf)?
        .attach_with_options(
            &iface.name,
            TcAttachType::Egress,
            TcAttachOptions::TcxOrder(LinkOrder::default()),
        )
        .map_err(|e| anyhow!(e).context("attaching the egress program (tcx)"))
}

fn program_attach(program: &mut Xdp, iface: &Interface, mode: XdpMode) -> Result<XdpLinkId> {
    program
        .attach_to_if_index(iface.index, mode)
        .map_err(|e| anyhow!(e).context(format!("attaching to {} in {mode:?} mode", iface.name)))
}

/// Turns a load failure into a message that ends with the verifier's
/// reason rather than a multi-kilobyte log.
fn load_error(err: ProgramError) -> anyhow::Error {
    match err {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(VERIFIER_TAIL_LINES)..].join("\n  ");
            anyhow!(
                "the kernel rejected guard's XDP program ({io_error}); last verifier lines:\n  {tail}"
            )
        }
        other => anyhow!(other).context("loading guard's XDP program"),
    }
}
