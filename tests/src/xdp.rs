//! The real XDP program, loaded but not attached, driven frame by frame
//! through BPF_PROG_TEST_RUN with a controlled clock, and its maps read
//! back: what the differential, robustness and benchmark runs work on.

use std::{
    collections::{BTreeMap, HashMap},
    os::fd::{AsFd as _, BorrowedFd},
};

use aya::{
    Ebpf,
    maps::{Array, Map, MapData, RingBuf},
    programs::{SchedClassifier, Xdp},
};
use clap::Parser as _;
use guard::{
    cli::{Cli, Command},
    config::Settings,
    dataplane::events::record,
    dataplane::{
        handle::Dataplane,
        loader::{self, LoadOptions, Loaded},
    },
};
use guard_common::{
    CounterBlock, DataplaneConfig, Event, FlowKey, PortCounts, SourceKey, SourceState, SynAckKey,
    config::PORTS_ARMED,
    fingerprint::{Sample, SigMeta, SigTable, Signature},
    flows::{FLOW_WAYS, FlowSet, FlowSet6, NEWER, SetTags, flow_place, flow_place6, tag_position},
    key::{AF_INET, AF_INET6, LIST_ALLOW, LIST_DENY},
    maps::{
        EVENTS, PROGRAM, SAMPLES, SYNACK_PROGRAM, SYNACKS, TEST_CLOCK, UDP_FLOWS, UDP_FLOWS4,
        UDP_TAGS, UDP_TAGS4,
    },
    ports::port_entry,
    slots::TagLine,
    state::GLOBAL_SLOTS,
};
use ipnet::IpNet;

use crate::{model::ListEntry, testrun};

/// The test clock of a [`Program`], apart from it ([`Program::clock`]).
pub struct Clock(Array<MapData, u64>);

impl Clock {
    /// Sets the time every packet from now on reads.
    pub fn set(&mut self, now: u64) {
        self.0.set(0, now, 0).expect("setting the test clock");
    }
}

pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;
pub const XDP_TX: u32 = 3;

/// `guard run` settings from flags (space-separated), as an operator would
/// give them (an interface is required by the parser; it is not used here).
#[must_use]
pub fn settings(flags: &str) -> Settings {
    let mut argv = vec!["guard", "run", "--iface", "unused0"];
    argv.extend(flags.split_whitespace());
    let Command::Run(run) = Cli::try_parse_from(argv)
        .unwrap_or_else(|e| panic!("{e}"))
        .command
    else {
        panic!("not a run command");
    };
    Settings::resolve(&run.settings, None).unwrap_or_else(|e| panic!("{e}"))
}

/// The allow/deny entries of `settings` as the model takes them.
#[must_use]
pub fn list_entries(settings: &Settings) -> Vec<ListEntry> {
    let entry = |net: &IpNet, action| {
        let mut addr = [0u8; 16];
        let family = match net {
            IpNet::V4(n) => {
                addr[..4].copy_from_slice(&n.network().octets());
                AF_INET
            }
            IpNet::V6(n) => {
                addr = n.network().octets();
                AF_INET6
            }
        };
        ListEntry {
            family,
            prefix_len: net.prefix_len(),
            addr,
            action,
        }
    };
    settings
        .allow
        .iter()
        .map(|n| entry(n, LIST_ALLOW))
        .chain(settings.deny.iter().map(|n| entry(n, LIST_DENY)))
        .collect()
}

/// guard's program, configured from `settings`, on the test clock.
pub struct Program {
    ebpf: Ebpf,
    /// The maps guard reads and writes, through guard's own handle.
    dataplane: Dataplane,
    events: RingBuf<MapData>,
    samples: RingBuf<MapData>,
    /// Events drained so far, in order.
    pub events_seen: Vec<Event>,
}

impl Program {
    /// Loads with the test clock (the program reads time from a map).
    #[must_use]
    pub fn new(settings: &Settings) -> Self {
        Self::load(settings, true)
    }

    /// Loads exactly as `guard run` does: the kernel's clock.
    #[must_use]
    pub fn with_kernel_clock(settings: &Settings) -> Self {
        Self::load(settings, false)
    }

    fn load(settings: &Settings, test_clock: bool) -> Self {
        let opts = LoadOptions {
            test_clock,
            ..LoadOptions::new(settings)
        };
        let Loaded {
            mut ebpf,
            mut dataplane,
        } = loader::load(&opts).unwrap_or_else(|e| panic!("loading: {e:#}"));
        loader::configure(&mut dataplane, settings)
            .unwrap_or_else(|e| panic!("configuring: {e:#}"));
        let events =
            RingBuf::try_from(ebpf.take_map(EVENTS).expect("events map")).expect("ring buffer");
        let samples =
            RingBuf::try_from(ebpf.take_map(SAMPLES).expect("samples map")).expect("ring buffer");
        Self {
            ebpf,
            dataplane,
            events,
            samples,
            events_seen: Vec::new(),
        }
    }

    /// The loaded program's descriptor.
    #[must_use]
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.program().fd().expect("program fd").as_fd()
    }

    /// The kernel's ids of the XDP program and the egress program, by
    /// name (for `bpftool prog dump xlated id`).
    #[must_use]
    pub fn ids(&self) -> [(&'static str, u32); 2] {
        [
            (PROGRAM, self.program().info().expect("program info").id()),
            (
                SYNACK_PROGRAM,
                self.egress().info().expect("program info").id(),
            ),
        ]
    }

    fn program(&self) -> &Xdp {
        self.ebpf
            .program(PROGRAM)
            .expect("program")
            .try_into()
            .expect("an XDP program")
    }

    /// Runs one frame at time `now` and returns the XDP action.
    pub fn run(&mut self, frame: &[u8], now: u64) -> u32 {
        self.run_frame(frame, now).0
    }

    /// Runs one frame at time `now` and returns the XDP action and the
    /// frame as the program left it (a reply, for `XDP_TX`).
    pub fn run_frame(&mut self, frame: &[u8], now: u64) -> (u32, Vec<u8>) {
        self.set_clock(now);
        let fd = self.program().fd().expect("program fd");
        let outcome = testrun::run(fd.as_fd(), frame, 1)
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN on a {}-byte frame: {e}", frame.len()));
        self.drain_events();
        (outcome.action, outcome.data_out)
    }

    /// A handle on the test clock that another thread can set while runs
    /// go on (the program reads the clock at each packet).
    #[must_use]
    pub fn clock(&self) -> Clock {
        let Map::Array(data) = self.map(TEST_CLOCK) else {
            panic!("{TEST_CLOCK} is not an array");
        };
        let fd = data
            .fd()
            .as_fd()
            .try_clone_to_owned()
            .expect("duplicating the clock's descriptor");
        let data = MapData::from_fd(fd).expect("the clock map");
        Clock(Array::try_from(Map::Array(data)).expect("an array"))
    }

    fn set_clock(&mut self, now: u64) {
        let mut clock =
            Array::<_, u64>::try_from(self.ebpf.map_mut(TEST_CLOCK).expect("clock map"))
                .expect("array");
        clock.set(0, now, 0).expect("setting the test clock");
    }

    /// Runs one frame through the egress program (`guard_synack`) at time
    /// `now`, as the interface sending it would; returns its tc action.
    pub fn run_egress(&mut self, frame: &[u8], now: u64) -> i32 {
        self.set_clock(now);
        let outcome = testrun::run(self.egress_fd(), frame, 1)
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN (egress): {e}"));
        outcome.action.cast_signed()
    }

    /// Runs one frame `repeat` times through the egress program; returns
    /// the kernel's average ns per run (for benchmarks).
    #[must_use]
    pub fn time_egress(&self, frame: &[u8], repeat: u32) -> u32 {
        testrun::run(self.egress_fd(), frame, repeat)
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN (egress): {e}"))
            .duration_ns
    }

    fn egress_fd(&self) -> BorrowedFd<'_> {
        self.egress().fd().expect("program fd").as_fd()
    }

    fn egress(&self) -> &SchedClassifier {
        self.ebpf
            .program(SYNACK_PROGRAM)
            .expect("egress program")
            .try_into()
            .expect("a classifier")
    }

    /// The SYN-ACKs the egress program remembers, with the acknowledgement
    /// each one's ACK must carry.
    #[must_use]
    pub fn synacks(&self) -> BTreeMap<(u8, [u8; 16], u16, u16), u32> {
        let map =
            aya::maps::HashMap::<_, SynAckKey, u32>::try_from(self.map(SYNACKS)).expect("hash map");
        map.iter()
            .map(|e| {
                let (k, v) = e.expect("reading GUARD_SYNACKS");
                ((k.family, k.client, k.client_port, k.server_port), v)
            })
            .collect()
    }

    /// Runs one frame `repeat` times on the kernel's clock; returns the
    /// kernel's average ns per run (for benchmarks).
    #[must_use]
    pub fn time(&self, frame: &[u8], repeat: u32) -> u32 {
        let fd = self.program().fd().expect("program fd");
        testrun::run(fd.as_fd(), frame, repeat)
            .unwrap_or_else(|e| panic!("BPF_PROG_TEST_RUN: {e}"))
            .duration_ns
    }

    fn drain_events(&mut self) {
        while let Some(item) = self.events.next() {
            let event = record::<Event>(&item).expect("event of the wrong size");
            self.events_seen.push(event);
        }
    }

    fn map(&self, name: &str) -> &Map {
        self.ebpf
            .map(name)
            .unwrap_or_else(|| panic!("no map {name}"))
    }

    /// The configuration the program reads now.
    #[must_use]
    pub fn config(&self) -> DataplaneConfig {
        self.dataplane.config().expect("reading the config")
    }

    /// Replaces the configuration, as the controller does at run time (to
    /// switch SYN cookies on, say).
    pub fn set_config(&mut self, config: &DataplaneConfig) {
        self.dataplane
            .update_config(|c| *c = *config)
            .expect("writing the config");
    }

    /// Writes one port's `GUARD_PORTS` entry, as the controller does.
    pub fn set_port(&mut self, port: u16, entry: u32) {
        self.dataplane
            .write_port(port, entry)
            .expect("writing a port");
    }

    /// Arms SYN cookies for `port` (counter slot 0) as the controller does:
    /// the port's entry, then the configuration's bit.
    pub fn arm_cookies(&mut self, port: u16) {
        self.set_port(port, port_entry(0, true, false));
        let mut cfg = self.config();
        cfg.ports = PORTS_ARMED;
        self.set_config(&cfg);
    }

    /// Disarms `port` again (it keeps its listener entry), as the
    /// controller does: the configuration's bit, then the port's entry.
    pub fn disarm_cookies(&mut self, port: u16) {
        let mut cfg = self.config();
        cfg.ports = 0;
        self.set_config(&cfg);
        self.set_port(port, port_entry(0, false, false));
    }

    /// The samples the program sent since the last call.
    pub fn take_samples(&mut self) -> Vec<Sample> {
        let mut out = Vec::new();
        while let Some(item) = self.samples.next() {
            out.push(record::<Sample>(&item).expect("a sample's size"));
        }
        out
    }

    /// Installs attack signature `sig` (monitor: count only), as `guard
    /// sigs add` does; its slot.
    pub fn add_signature(&mut self, sig: Signature, monitor: bool) -> usize {
        self.dataplane
            .edit_sigs(|t| {
                let meta = SigMeta {
                    id: t.next_id(),
                    ..SigMeta::default()
                };
                t.install(sig, meta, monitor)
            })
            .expect("writing the signatures")
            .expect("a free slot")
    }

    /// Takes every signature out.
    pub fn clear_signatures(&mut self) {
        self.set_signatures(&SigTable::EMPTY);
    }

    /// Replaces the whole signature table (monitor bits included).
    pub fn set_signatures(&mut self, table: &SigTable) {
        self.dataplane
            .edit_sigs(|t| *t = *table)
            .expect("writing the signatures");
    }

    /// The counters of port slot `slot`, summed over CPUs.
    #[must_use]
    pub fn port_counts(&self, slot: u32) -> PortCounts {
        self.dataplane.port_counts(slot).expect("port counts")
    }

    /// Counters summed over CPUs.
    #[must_use]
    pub fn counters(&self) -> CounterBlock {
        self.dataplane.counters().expect("reading counters")
    }

    /// Each CPU's counters, by CPU number.
    #[must_use]
    pub fn counters_per_cpu(&self) -> Vec<CounterBlock> {
        self.dataplane.counters_per_cpu().expect("reading counters")
    }

    #[must_use]
    pub fn sources(&self) -> HashMap<SourceKey, SourceState> {
        self.dataplane
            .sources()
            .expect("sources")
            .into_iter()
            .collect()
    }

    #[must_use]
    pub fn prefixes(&self) -> HashMap<SourceKey, SourceState> {
        self.dataplane
            .prefixes()
            .expect("prefixes")
            .into_iter()
            .collect()
    }

    /// The slot of `key` in `GUARD_SOURCES`: the keys that take it over.
    #[must_use]
    pub fn source_slot(&self, key: &SourceKey) -> u32 {
        self.dataplane.source_slot(key).expect("reading the config")
    }

    /// Whether `key`'s bit in `GUARD_MARKED` is set, in the half the
    /// program reads.
    #[must_use]
    pub fn marked(&self, key: &SourceKey) -> bool {
        self.dataplane.marked(key).expect("reading GUARD_MARKED")
    }

    /// Sets or clears `key`'s bit in the half of `GUARD_MARKED` the
    /// program reads, as no run of it does: a test's way to show what the
    /// bit decides.
    pub fn set_marked(&mut self, key: &SourceKey, on: bool) {
        self.dataplane
            .set_marked(key, on)
            .expect("writing GUARD_MARKED");
    }

    /// Sets every bit of `GUARD_MARKED`: every source is looked up in
    /// `GUARD_MARKS`, as before the filter (the bench's same-run contrast).
    pub fn mark_all(&mut self) {
        self.dataplane.mark_all().expect("writing GUARD_MARKED");
    }

    /// `guard run`'s refresh of `GUARD_MARKED` at the test clock's `now`
    /// (`Dataplane::refresh_marked`).
    pub fn refresh_marked(&mut self, now: u64) -> Option<(u64, u64)> {
        self.dataplane
            .refresh_marked(now)
            .expect("refreshing GUARD_MARKED")
    }

    /// The datagram flows of both flow tables, IPv4's widened to the
    /// reference model's one key. Each set's tags must be as the program
    /// reads them first (`guard_common::flows`): each flow's tag beside
    /// its way (a flow whose tag is not there is one the program no longer
    /// finds), and the way marked newer one seen no earlier than the other
    /// (else a new flow would take the wrong way).
    #[must_use]
    pub fn udp_flows(&self) -> HashMap<FlowKey, u64> {
        let seed = self.config().slot_seed;
        let v6 = Array::<_, FlowSet6>::try_from(self.map(UDP_FLOWS)).expect("flows");
        let v4 = Array::<_, FlowSet>::try_from(self.map(UDP_FLOWS4)).expect("IPv4 flows");
        let sets = v4.len();
        let lines = |name| -> Vec<TagLine> {
            Array::<_, TagLine>::try_from(self.map(name))
                .expect("flow tags")
                .iter()
                .map(|line| line.expect("reading flow tags"))
                .collect()
        };
        let (lines4, lines6) = (lines(UDP_TAGS4), lines(UDP_TAGS));
        // The tags of set `set`, where the program keeps them.
        let tags = |lines: &[TagLine], set: usize| {
            let (line, first) = tag_position(u32::try_from(set).expect("set"));
            let tags = &lines[line as usize].tags;
            SetTags([tags[first], tags[first + 1]])
        };
        let mut flows = HashMap::new();
        for (set, ways) in v4.iter().enumerate() {
            let ways = ways.expect("reading IPv4 flows").ways;
            let placed = ways.map(|w| (w.last, flow_place(&w.key, seed, sets).1));
            check_set_tags(tags(&lines4, set), placed, set);
            for way in ways.iter().filter(|w| w.last != 0) {
                flows.insert(way.flow().widened(), way.last);
            }
        }
        for (set, ways) in v6.iter().enumerate() {
            let ways = ways.expect("reading flows").ways;
            let placed = ways.map(|w| (w.last, flow_place6(&w.key, seed, sets).1));
            check_set_tags(tags(&lines6, set), placed, set);
            for way in ways.iter().filter(|w| w.last != 0) {
                flows.insert(way.flow(), way.last);
            }
        }
        flows
    }

    #[must_use]
    pub fn global(&self) -> [u64; GLOBAL_SLOTS as usize] {
        let slots = self.dataplane.global().expect("reading global");
        let mut out = [0; GLOBAL_SLOTS as usize];
        out.copy_from_slice(&slots);
        out
    }
}

/// Asserts a flow set's tags against its ways (each way's time and its
/// key's tag; time 0: never written): a written way's tag is its flow's,
/// and exactly one written way is marked newer, one seen no earlier than
/// the other; a set never written has no tags.
fn check_set_tags(tags: SetTags, ways: [(u64, u16); FLOW_WAYS], set: usize) {
    let written: Vec<usize> = (0..FLOW_WAYS).filter(|&i| ways[i].0 != 0).collect();
    for &i in &written {
        assert_eq!(
            tags.0[i] & !NEWER,
            ways[i].1,
            "set {set}, way {i}: its flow's tag"
        );
    }
    let newer: Vec<usize> = (0..FLOW_WAYS).filter(|&i| tags.0[i] & NEWER != 0).collect();
    if written.is_empty() {
        assert_eq!(tags, SetTags::default(), "set {set}: never written");
        return;
    }
    assert_eq!(newer.len(), 1, "set {set}: one way newer, {tags:?}");
    let n = newer[0];
    assert!(
        written.contains(&n) && written.iter().all(|&i| ways[i].0 <= ways[n].0),
        "set {set}: way {n} marked newer, times {ways:?}"
    );
}
