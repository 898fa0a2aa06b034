//! The host, changed and read: conntrack's sysctls and ctnetlink, nftables
//! scripts (notrack, SYNPROXY), network namespaces, interfaces and their
//! XDP programs, listening sockets, privileges, /proc and /sys, clocks,
//! locks, atomic file writes, the restore record, the kept lists and the
//! status file. Thin I/O; what the values mean is the model's.

pub mod atomic;
pub mod clock;
pub mod conntrack;
pub mod files;
pub mod iface;
pub mod instances;
pub mod kept_lists;
pub mod listeners;
pub mod local;
pub mod lock;
pub mod netlink;
pub mod netns;
pub mod nft;
pub mod notify;
pub mod notrack;
pub mod preflight;
pub mod restore;
pub mod status_file;
pub mod synproxy;
pub mod xtables;
