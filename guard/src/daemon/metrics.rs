//! `guard run --metrics ADDR`: a Prometheus endpoint at `/metrics`.
//!
//! Nothing is counted twice: at each scrape a collector reads the XDP
//! counters from the pins and the controller's published status, the same
//! sources `guard stats` reads, and encodes them (prometheus-client, the
//! Prometheus project's Rust client; OpenMetrics text). Counters end in
//! `_total`; units are in the names. Rates per second are measured between
//! two scrapes; `rate()` over the counters is the Prometheus way to get
//! them too.

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use anyhow::{Context as _, Result};
use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use guard_common::{Counter, CounterBlock, FlowClass, SourceState, fingerprint::SigTable};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric as _, text::encode},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use crate::{
    config::Enforcement,
    dataplane::{handle::Dataplane, pins::Layout},
    host::{
        clock::{monotonic_ns, unix_now},
        status_file,
    },
    model::{
        as_f64 as f,
        fingerprint::describe,
        fleet::{self, FleetView},
        status::{AttachedStatus, RunStatus, Status},
        xdp::XdpAttachMode,
    },
};

const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds `addr` (before anything is attached, so a taken port is a start-up
/// error) and serves `/metrics` until the task is dropped.
pub async fn bind(
    addr: SocketAddr,
    layout: Layout,
    runtime_dir: PathBuf,
) -> Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--metrics {addr}: cannot listen there"))?;
    if !addr.ip().is_loopback() {
        tracing::warn!(
            "--metrics {addr} is reachable from other hosts: bind to 127.0.0.1 unless you mean it"
        );
    }
    let mut registry = Registry::default();
    registry.register_collector(Box::new(GuardCollector {
        layout,
        runtime_dir,
    }));
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Arc::new(registry));
    tracing::info!("metrics at http://{addr}/metrics");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("metrics endpoint: {e}");
        }
    }))
}

async fn scrape(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    let mut body = String::new();
    match encode(&mut body, &registry) {
        Ok(()) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response(),
        Err(e) => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// One interface's reading at a scrape: its label (`iface` or
/// `netns/iface`), counters, and the sources banned and verified now.
struct Reading {
    iface: String,
    counters: CounterBlock,
    banned: u64,
    verified: u64,
    sigs: SigTable,
}

/// Reads the pins and the status files at each scrape. Counters are
/// exported as counters: rates are Prometheus's to compute.
#[derive(Debug)]
struct GuardCollector {
    layout: Layout,
    runtime_dir: PathBuf,
}

impl GuardCollector {
    /// Every guarded interface, one open of its pins each.
    fn read(&self) -> Vec<Reading> {
        let now = monotonic_ns();
        self.layout
            .list()
            .into_iter()
            .filter_map(|(netns, iface, dir)| {
                let dataplane = Dataplane::open_pinned(&dir).ok()?;
                let sources = dataplane.sources().ok()?;
                let count = |f: &dyn Fn(&SourceState) -> bool| {
                    u64::try_from(sources.iter().filter(|(_, st)| f(st)).count())
                        .unwrap_or(u64::MAX)
                };
                Some(Reading {
                    iface: netns.map_or_else(|| iface.clone(), |ns| format!("{ns}/{iface}")),
                    counters: dataplane.counters().ok()?,
                    banned: count(&|st| st.banned_until_ns > now),
                    verified: count(&|st| st.verified_until_ns > now),
                    sigs: dataplane.sigs().ok()?,
                })
            })
            .collect()
    }
}

impl Collector for GuardCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let now = self.read();
        let run = status_file::read_run(&self.runtime_dir);
        encode_xdp(&mut encoder, &now, run.as_ref().map(|r| r.mode))?;
        for (name, help, value) in [
            (
                "guard_banned_sources",
                "Sources banned now.",
                (|r: &Reading| r.banned) as fn(&Reading) -> u64,
            ),
            (
                "guard_verified_sources",
                "Sources verified now, by a SYN-cookie handshake or an ACK of a connection the host knows.",
                |r: &Reading| r.verified,
            ),
        ] {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for r in &now {
                ConstGauge::new(f(value(r)))
                    .encode(family.encode_family(&[("iface", r.iface.as_str())])?)?;
            }
        }
        encode_signatures(&mut encoder, &now)?;
        if let Some(status) = status_file::read(&self.runtime_dir) {
            encode_controller(&mut encoder, &status)?;
        }
        if let Some(run) = run {
            encode_info(&mut encoder, &run)?;
            encode_attached(&mut encoder, &run)?;
        }
        if let Some(view) = status_file::read_fleet(&self.runtime_dir) {
            encode_fleet(&mut encoder, &view)?;
        }
        Ok(())
    }
}

/// `--fleet`: the link, the members, and the decisions.
fn encode_fleet(encoder: &mut DescriptorEncoder, v: &FleetView) -> Result<(), std::fmt::Error> {
    let fresh = |m: &&fleet::Member| v.at_ms.saturating_sub(m.report.at_ms) < fleet::STALE_MS;
    for (name, help, value) in [
        (
            "guard_fleet_connected",
            "1 while connected to the fleet's NATS server, 0 while cut off (protecting alone).",
            u64::from(v.connected),
        ),
        (
            "guard_fleet_members",
            "Members of the fleet heard from in the last 10 s, this one included.",
            u64::try_from(v.members.iter().filter(fresh).count()).unwrap_or(u64::MAX),
        ),
        (
            "guard_fleet_bans_active",
            "Peers' bans in force here.",
            u64::try_from(v.active).unwrap_or(u64::MAX),
        ),
        (
            "guard_fleet_pending_writes",
            "This guard's decisions not yet written to the fleet (cut off, or failing).",
            u64::try_from(v.pending).unwrap_or(u64::MAX),
        ),
    ] {
        gauge(encoder, name, help, f(value))?;
    }
    for (name, help, value) in [
        (
            "guard_fleet_decisions_applied",
            "Peers' bans applied here.",
            v.applied,
        ),
        (
            "guard_fleet_decisions_published",
            "This guard's bans written to the fleet.",
            v.published,
        ),
    ] {
        ConstCounter::new(value).encode(encoder.encode_descriptor(
            name,
            help,
            None,
            MetricType::Counter,
        )?)?;
    }
    let mut refused = encoder.encode_descriptor(
        "guard_fleet_decisions_refused",
        "Peers' decisions not applied, by why: malformed, too_wide, allowlisted, over_ceiling.",
        None,
        MetricType::Counter,
    )?;
    for (reason, n) in &v.refused {
        ConstCounter::new(*n).encode(refused.encode_family(&[("reason", reason.as_str())])?)?;
    }
    Ok(())
}

/// One counter family with an `iface` label, one more label per counter,
/// and `extra` labels on every member.
fn counters(
    encoder: &mut DescriptorEncoder,
    (name, help, label, members): &Family,
    extra: &[(&str, &str)],
    now: &[Reading],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for r in now {
        for (counter, value) in members {
            let mut labels = vec![("iface", r.iface.as_str()), (*label, *value)];
            labels.extend_from_slice(extra);
            ConstCounter::new(r.counters.get(*counter)).encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// A counter family: name, help, the label that tells its members apart,
/// and the members with their label values.
type Family = (
    &'static str,
    &'static str,
    &'static str,
    Vec<(Counter, &'static str)>,
);

/// Each installed attack signature's hits since it was installed, with
/// its number, origin, action and traits as labels.
fn encode_signatures(
    encoder: &mut DescriptorEncoder,
    now: &[Reading],
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        "guard_signature_hits",
        "Packets an attack signature matched since it was installed (dropped, unless its action is monitor).",
        None,
        MetricType::Counter,
    )?;
    for r in now {
        for slot in r.sigs.slots() {
            let meta = &r.sigs.meta[slot];
            let id = meta.id.to_string();
            let (origin, action) = (r.sigs.origin_name(slot), r.sigs.action_name(slot));
            let text = describe(&r.sigs.sigs[slot]);
            let labels = [
                ("iface", r.iface.as_str()),
                ("id", id.as_str()),
                ("origin", origin),
                ("action", action),
                ("signature", text.as_str()),
            ];
            ConstCounter::new(r.sigs.hits(slot, &r.counters))
                .encode(family.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

/// The XDP counters. Drops carry `mode`: in monitor mode they are the
/// packets that would have been dropped, and passed.
fn encode_xdp(
    encoder: &mut DescriptorEncoder,
    now: &[Reading],
    mode: Option<Enforcement>,
) -> Result<(), std::fmt::Error> {
    let mode = match mode {
        Some(Enforcement::Monitor) => "monitor",
        Some(Enforcement::Enforce) | None => "enforce",
    };
    for family in &xdp_families() {
        let extra: &[(&str, &str)] = if family.0 == "guard_dropped_packets" {
            &[("mode", mode)]
        } else {
            &[]
        };
        counters(encoder, family, extra, now)?;
    }
    Ok(())
}

/// The XDP counters' metric families: name, help, label, and the counter
/// behind each label value.
#[expect(
    clippy::too_many_lines,
    reason = "a table: one entry per metric family"
)]
fn xdp_families() -> [Family; 15] {
    let named = |list: &[Counter], strip: &str| -> Vec<(Counter, &'static str)> {
        list.iter()
            .map(|c| (*c, c.name().strip_prefix(strip).unwrap_or(c.name())))
            .collect()
    };
    [
        (
            "guard_packets",
            "Packets seen by the XDP program, by class.",
            "class",
            named(&Counter::CLASSES, ""),
        ),
        (
            "guard_packet_attributes",
            "Packets with an attribute (fragment, VLAN tag, IPv6).",
            "attribute",
            named(&Counter::ATTRIBUTES, ""),
        ),
        (
            "guard_new_flows",
            "Packets that open a flow: SYN, a new UDP 5-tuple, an ICMP query (echo request, ...).",
            "kind",
            vec![(Counter::NewFlows, "all")],
        ),
        (
            "guard_passed_new_flows",
            "New flows passed, by reason (monitor: passed only because of monitor mode).",
            "reason",
            named(&Counter::PASS_REASONS, "pass_"),
        ),
        (
            "guard_dropped_packets",
            "Packets dropped by reason; with mode=\"monitor\", packets that would have been dropped and were passed.",
            "reason",
            named(&Counter::DROP_REASONS, "drop_"),
        ),
        (
            "guard_syn_cookies",
            "SYNs answered from XDP with a SYN cookie, the ACKs that completed one, and SYNs to a cookie port it could not answer (their headers), which went on to the limits and the kernel's SYNPROXY.",
            "outcome",
            vec![
                (Counter::CookieSynAck, "synack"),
                (Counter::CookieAckValid, "valid_ack"),
                (Counter::CookieUnanswered, "unanswered"),
            ],
        ),
        (
            "guard_untracked_new_flows",
            "SYNs and new UDP flows to a port conntrack skips (a NOTRACK rule): they open no conntrack entry, so they pass without limits (a denylisted source's are dropped).",
            "kind",
            vec![(Counter::PassUntracked, "all")],
        ),
        (
            "guard_other_device_new_flows",
            "New flows in frames for another device's link-layer address (a macvlan container's, a macvtap VM's): they never reach this namespace's conntrack, so they pass without limits (a denylisted source's are dropped).",
            "kind",
            vec![(Counter::PassOtherDevice, "all")],
        ),
        (
            "guard_new_sources",
            "Sources seen for the first time.",
            "kind",
            vec![(Counter::NewSources, "all")],
        ),
        (
            "guard_verified_by_ack",
            "Sources verified by an ACK that answers a SYN-ACK the host sent or names a connection it knows, while the global budget dropped.",
            "kind",
            vec![(Counter::VerifiedAck, "all")],
        ),
        (
            "guard_verified_by_reply",
            "Sources verified because the host sent them data or a FIN of a TCP connection, budget binding or not.",
            "kind",
            vec![(Counter::VerifiedReply, "all")],
        ),
        (
            "guard_ack_lookups_skipped",
            "ACKs not looked up among the host's sockets for the returning-client check: the CPU had made its lookups for the second.",
            "kind",
            vec![(Counter::AckLookupsSkipped, "all")],
        ),
        (
            "guard_bucket_contention",
            "Compare-and-swaps on a shared bucket (global, prefix or source) lost to another CPU's update; each is retried or made an atomic add, and no arrival is dropped for it.",
            "kind",
            vec![(Counter::BucketContention, "all")],
        ),
        (
            "guard_rst_sent",
            "RSTs sent from XDP: over-limit SYNs from verified sources (reject = \"rst\") and cookie handshakes' ACKs over their source's limit.",
            "kind",
            vec![(Counter::RstSent, "all")],
        ),
        (
            "guard_events",
            "Ring-buffer events sent or suppressed by the event budget.",
            "outcome",
            vec![
                (Counter::EventsSent, "sent"),
                (Counter::EventsSuppressed, "suppressed"),
            ],
        ),
    ]
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

/// `guard_info`: 1 per interface, labelled with what enforces there, so a
/// dashboard or an alert can tell a guard that drops from one that only
/// counts.
fn encode_info(encoder: &mut DescriptorEncoder, run: &RunStatus) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        "guard_info",
        "1 per guarded interface: version, mode (enforce drops, monitor only counts) and XDP attach mode.",
        None,
        MetricType::Gauge,
    )?;
    let mode = match run.mode {
        Enforcement::Enforce => "enforce",
        Enforcement::Monitor => "monitor",
    };
    for a in &run.interfaces {
        let iface = iface_label(a);
        let xdp_mode = match a.xdp_mode {
            XdpAttachMode::Native => "native",
            XdpAttachMode::Skb => "skb",
            XdpAttachMode::Hardware => "hardware",
            XdpAttachMode::Multiple => "multiple",
        };
        let labels = [
            ("iface", iface.as_str()),
            ("mode", mode),
            ("xdp_mode", xdp_mode),
            ("version", run.version.as_str()),
        ];
        ConstGauge::new(1.0).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

/// `guard_attached`: 1 per interface guard's program is attached to, 0
/// for one deleted under it (until one of its name comes back).
fn encode_attached(
    encoder: &mut DescriptorEncoder,
    run: &RunStatus,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(
        "guard_attached",
        "1 while guard's program is attached to the interface, 0 once the interface was deleted (guard attaches again when one of its name comes back).",
        None,
        MetricType::Gauge,
    )?;
    for a in &run.interfaces {
        let iface = iface_label(a);
        let up = if a.gone { 0.0 } else { 1.0 };
        ConstGauge::new(up).encode(family.encode_family(&[("iface", iface.as_str())])?)?;
    }
    Ok(())
}

/// An interface's `iface` label: `eth0`, or `NETNS/eth0`.
fn iface_label(a: &AttachedStatus) -> String {
    a.netns
        .as_ref()
        .map_or_else(|| a.iface.clone(), |ns| format!("{ns}/{}", a.iface))
}

fn encode_controller(encoder: &mut DescriptorEncoder, s: &Status) -> Result<(), std::fmt::Error> {
    gauge(
        encoder,
        "guard_conntrack_entries",
        "Entries in the conntrack table.",
        f(s.count),
    )?;
    gauge(
        encoder,
        "guard_conntrack_max_entries",
        "nf_conntrack_max.",
        f(s.max),
    )?;
    gauge(
        encoder,
        "guard_conntrack_fill_ratio",
        "Entries / nf_conntrack_max.",
        s.fill / 100.0,
    )?;
    gauge(
        encoder,
        "guard_conntrack_target_fill_ratio",
        "The fill the controller keeps the table below.",
        s.target / 100.0,
    )?;
    let level = f64::from(s.level.rank());
    gauge(
        encoder,
        "guard_conntrack_pressure_level",
        "The controller's level: 0 normal, 1 elevated, 2 high, 3 critical.",
        level,
    )?;
    gauge(
        encoder,
        "guard_syn_cookies_active",
        "1 while XDP answers SYNs to some listening port with SYN cookies.",
        if s.cookie_ports.is_empty() { 0.0 } else { 1.0 },
    )?;
    gauge(
        encoder,
        "guard_status_age_seconds",
        "Seconds since the controller last published its status.",
        (unix_now() - s.updated).max(0.0),
    )?;
    {
        let mut kernel = encoder.encode_descriptor(
            "guard_conntrack_kernel_events",
            "The kernel's conntrack counters that mean trouble.",
            None,
            MetricType::Counter,
        )?;
        for (event, n) in [
            ("drop", s.stats.drop),
            ("early_drop", s.stats.early_drop),
            ("insert_failed", s.stats.insert_failed),
            ("chaintoolong", s.stats.chaintoolong),
        ] {
            ConstCounter::new(n).encode(kernel.encode_family(&[("event", event)])?)?;
        }
    }
    ConstCounter::new(s.nft_reinstalled).encode(encoder.encode_descriptor(
        "guard_nft_tables_reinstalled",
        "guard's nftables tables found gone (a `flush ruleset`) and installed again.",
        None,
        MetricType::Counter,
    )?)?;
    if let Some(global) = s.global {
        gauge(
            encoder,
            "guard_limit_global_new_flows_per_second",
            "The XDP global new-flow budget the controller set (per interface).",
            f(global.rate),
        )?;
        gauge(
            encoder,
            "guard_limit_global_burst_new_flows",
            "Its burst.",
            f(u64::from(global.burst)),
        )?;
    }
    let mut source = encoder.encode_descriptor(
        "guard_limit_source_new_flows_per_second",
        "Per-source rate limits in force, by class (0: none).",
        None,
        MetricType::Gauge,
    )?;
    for (class, rate) in FlowClass::ALL.iter().zip(s.source.iter()) {
        ConstGauge::new(f(rate.rate)).encode(source.encode_family(&[("class", class.name())])?)?;
    }
    Ok(())
}
