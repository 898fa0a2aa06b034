//! Names of the maps in the XDP object, as the loader, the pinned directory
//! and `guard stats` see them. The eBPF side spells the same names in its
//! `#[map(name = ...)]` attributes (which take only literals); the loader
//! takes each map by its name here, so a name the object does not define
//! fails the load, and every kernel test with it.

/// The XDP program's name in the object (its function's name on the eBPF
/// side), as `bpftool prog show` prints it.
pub const PROGRAM: &str = "guard";

/// The egress program's name: it records the SYN-ACKs the host sends
/// ([`SYNACKS`]) while the global budget binds.
pub const SYNACK_PROGRAM: &str = "guard_synack";

/// Per-CPU [`crate::CounterBlock`], one entry.
pub const COUNTERS: &str = "GUARD_COUNTERS";
/// [`crate::config::DataplaneConfig`], one entry.
pub const CONFIG: &str = "GUARD_CONFIG";
/// Direct-mapped array of [`crate::slots::Slot`] (a
/// [`crate::key::SourceKey`] and its [`crate::state::SourceState`]), per
/// source ([`crate::slots`]).
pub const SOURCES: &str = "GUARD_SOURCES";
/// The same for the second tier, per prefix.
pub const PREFIXES: &str = "GUARD_PREFIXES";
/// Array of [`crate::slots::TagLine`]: the tags of the keys in
/// [`SOURCES`], which the program reads before a slot. Only the program
/// uses it.
pub const SOURCE_TAGS: &str = "GUARD_SOURCE_TAGS";
/// LRU hash [`crate::key::SourceKey`] -> [`crate::state::Marks`]: the
/// verified and banned sources, apart from [`SOURCES`], where a flood of
/// new sources cannot evict them (only a verification or a ban inserts).
pub const MARKS: &str = "GUARD_MARKS";
/// Array of [`crate::marked::MARKED_ENTRIES`] u64, two halves: a bit per
/// source written into [`MARKS`] ([`crate::marked`]), so that most
/// sources with no marks are known to have none without a lookup.
pub const MARKED: &str = "GUARD_MARKED";
/// LPM tries, address -> [`crate::key::LIST_ALLOW`] / [`crate::key::LIST_DENY`].
pub const LISTS_V4: &str = "GUARD_LISTS_V4";
pub const LISTS_V6: &str = "GUARD_LISTS_V6";
/// LPM tries, destination -> [`crate::key::ROUTE_LOCAL`] /
/// [`crate::key::ROUTE_ELSEWHERE`]: the namespace's `local` routes, which
/// tell the cookie path this host's destinations where the FIB will not
/// (a host that does not forward). Empty until `guard run` fills them.
pub const LOCAL_V4: &str = "GUARD_LOCAL_V4";
pub const LOCAL_V6: &str = "GUARD_LOCAL_V6";
/// Array of GCRA states shared by all CPUs ([`crate::state::GLOBAL_BUDGET`], ...).
pub const GLOBAL: &str = "GUARD_GLOBAL";
/// Array of [`crate::flows::FlowSet6`]s: the datagram flows seen lately,
/// for new-flow detection: IPv6 UDP flows, and other protocols' flows of
/// both families.
pub const UDP_FLOWS: &str = "GUARD_UDP_FLOWS";
/// The same for IPv4 UDP flows: an array of [`crate::flows::FlowSet`]s
/// (a name the kernel keeps whole: 15 characters at most).
pub const UDP_FLOWS4: &str = "GUARD_UDP_FLOW4";
/// Arrays of [`crate::slots::TagLine`]: the tags of the flows in
/// [`UDP_FLOWS4`]'s and [`UDP_FLOWS`]' ways ([`crate::flows`]), which the
/// program reads before a set. Only the programs use them.
pub const UDP_TAGS4: &str = "GUARD_UDP4_TAGS";
pub const UDP_TAGS: &str = "GUARD_UDP_TAGS";
/// LRU hash [`crate::key::SynAckKey`] -> the acknowledgement number the
/// client's ACK must carry: the SYN-ACKs the host sent while the global
/// budget binds, written by [`SYNACK_PROGRAM`], read by the XDP program.
pub const SYNACKS: &str = "GUARD_SYNACKS";
/// Array indexed by port -> a [`crate::ports`] entry (a TCP listener's
/// slot and cookie bits, the protocols conntrack skips it for, the
/// protocols it is open for).
pub const PORTS: &str = "GUARD_PORTS";
/// Per-CPU array of [`crate::ports::PortCounts`], by port slot.
pub const PORT_COUNTS: &str = "GUARD_PORT_COUNTS";
/// Ring buffer of [`crate::state::Event`].
pub const EVENTS: &str = "GUARD_EVENTS";
/// The attack signatures, one [`crate::fingerprint::SigTable`] entry.
pub const SIGS: &str = "GUARD_SIGS";
/// Ring buffer of [`crate::fingerprint::Sample`].
pub const SAMPLES: &str = "GUARD_SAMPLES";
/// The test clock (see `TEST_CLOCK` in the XDP program).
pub const TEST_CLOCK: &str = "GUARD_TEST_CLOCK";

/// Default capacities; `guard run` can change them (`max-sources`, ...).
/// The source and prefix tables are arrays of this many slots (a key takes
/// its slot over from the key there), the flow tables arrays of sets of
/// two flows (a new flow takes the way seen least lately,
/// [`crate::flows`]): an attacker with more sources than this costs a
/// fixed amount of memory.
pub const DEFAULT_MAX_SOURCES: u32 = 131_072;
pub const DEFAULT_MAX_PREFIXES: u32 = 32_768;
pub const DEFAULT_MAX_UDP_FLOWS: u32 = 131_072;
/// Verified and banned sources kept apart ([`MARKS`]): 65,536 entries of
/// 20 + 16 bytes, 6.5 MiB preallocated with the LRU's own overhead.
pub const MAX_MARKS: u32 = 65_536;
/// SYN-ACKs remembered ([`SYNACKS`]): a client answers within its round
/// trip, so this is seconds of SYN-ACKs even at the budget's and the
/// verified sources' rate. 65,536 entries of 24 + 4 bytes, 6 MiB
/// preallocated with the LRU's overhead.
pub const MAX_SYNACKS: u32 = 65_536;
/// Entries per allow/deny trie (`list-capacity`). The tries allocate a
/// node per entry as it comes, so a large ceiling costs nothing unused.
pub const DEFAULT_LIST_CAPACITY: u32 = 65_536;
/// Entries per local-route trie ([`LOCAL_V4`], [`LOCAL_V6`]): a host's
/// addresses and AnyIP ranges, and the catch-all. Allocated as they come.
pub const MAX_LOCAL_ROUTES: u32 = 4_096;
/// Ring buffer size in bytes (a power of two, a multiple of the page size).
pub const EVENTS_BYTES: u32 = 256 * 1024;
/// The sample ring: 64 KiB holds about 1,360 samples (40 bytes and the
/// ring's 8-byte header each), more than a second of one CPU's budgets at
/// the rate the daemon sets (500 new flows and 500 contrast samples), which
/// the daemon reads as they come.
pub const SAMPLES_BYTES: u32 = 64 * 1024;
