//! What the protected server's TCP stack advertises, where SYN cookies
//! must say the same.
//!
//! SYNPROXY does not translate window scales: the client keeps the scale
//! of the cookie SYN-ACK, the server uses its own. A cookie scale above
//! the server's makes the client read every window larger than it is and
//! send past it (the server drops those segments, and uploads stall); a
//! scale below it makes the client read the windows smaller (a tuned
//! server runs slower than it would). So the cookie scale follows the
//! server's unless the operator sets one.

/// Whether a listener whose SYN queue is full answers with SYN cookies
/// (1, the default; 2 always) or drops new SYNs (0).
pub const SYNCOOKIES: &str = "net.ipv4.tcp_syncookies";

/// What `tcp_syncookies` = 0 costs behind guard: the spoofed SYNs its
/// budget admits before SYN cookies arm can fill a SYN queue, whose
/// requests live for their SYN-ACK retransmissions.
pub const SYNCOOKIES_OFF: &str = "a listener whose SYN queue a flood filled drops every new SYN, users' and SYNPROXY's own, until the spoofed requests time out (about a minute); guard's SYN cookies arm only once its controller has seen the flood";

/// How many times a listener retransmits a SYN-ACK before it gives a
/// request up.
pub const SYNACK_RETRIES: &str = "net.ipv4.tcp_synack_retries";

/// The largest window Linux lets a connection offer (`65535 << 14`, the
/// kernel's `window_clamp` when nothing sets one).
const MAX_WINDOW: u64 = 65_535 << 14;

/// The window scale Linux gives a listener's connections
/// (`tcp_select_initial_window`): from the largest receive buffer a
/// connection may grow to, the larger of `net.ipv4.tcp_rmem`'s maximum and
/// `net.core.rmem_max`, how far above 2^15 bytes it is as a power of two
/// (0 to 14). A listener that sets its own `SO_RCVBUF` may use less.
#[must_use]
pub fn server_wscale(tcp_rmem_max: u64, rmem_max: u64) -> u8 {
    let space = tcp_rmem_max.max(rmem_max).min(MAX_WINDOW);
    let log2 = space.checked_ilog2().unwrap_or(0);
    u8::try_from(log2.saturating_sub(15).min(14)).unwrap_or(14)
}

/// The maximum of `net.ipv4.tcp_rmem` ("min default max"), if it reads
/// as three numbers.
#[must_use]
pub fn tcp_rmem_max(text: &str) -> Option<u64> {
    let fields: Vec<u64> = text
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    match fields[..] {
        [_, _, max] => Some(max),
        _ => None,
    }
}

/// The `TcpExt` counter `name` of a `/proc/net/netstat` text (a header
/// line of names, then a line of values), if its kernel has one.
#[must_use]
pub fn tcp_ext(netstat: &str, name: &str) -> Option<u64> {
    let mut rows = netstat.lines().filter(|line| line.starts_with("TcpExt:"));
    let (names, values) = (rows.next()?, rows.next()?);
    let at = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// Whether the TCP of the namespace whose `/proc/net/netstat` this is
/// checks a handshake's last ACK against the timestamps of its own
/// SYN-ACKs: the check came with its counter, `TcpExt: TSEcrRejected`
/// (Linux commit 3ba075278c11, in 6.18 and in stable backports). Such a
/// TCP rejects the ACK with which SYNPROXY completes the server's side of
/// a handshake (SYNPROXY shifts that ACK's TSecr by the connection's
/// timestamp offset on its way out), and answers it with an ACK of its
/// own (`model::nft::synproxy_script` says what follows).
#[must_use]
pub fn checks_tsecr(netstat: &str) -> bool {
    tcp_ext(netstat, "TSEcrRejected").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tsecr_check_is_known_by_its_counter() {
        let newer = "TcpExt: SyncookiesSent BeyondWindow TSEcrRejected PAWSOldAck\nTcpExt: 0 0 7 0\nIpExt: InNoRoutes\nIpExt: 0\n";
        assert!(checks_tsecr(newer));
        assert_eq!(tcp_ext(newer, "TSEcrRejected"), Some(7));
        assert_eq!(tcp_ext(newer, "InNoRoutes"), None, "not a TcpExt counter");
        let older = "TcpExt: SyncookiesSent PAWSEstab DelayedACKs\nTcpExt: 0 0 0\n";
        assert!(!checks_tsecr(older));
        // Only the TcpExt header counts; an empty or foreign file is no.
        assert!(!checks_tsecr("IpExt: TSEcrRejected\nIpExt: 0\n"));
        assert!(!checks_tsecr(""));
    }

    /// The scales measured on Linux 6.18 (TCP_INFO of an accepted
    /// connection) for these buffers, rmem_max 4 MiB.
    #[test]
    fn follows_the_largest_receive_buffer_as_linux_does() {
        let mib = 1 << 20;
        assert_eq!(server_wscale(6 * mib, 4 * mib), 7);
        assert_eq!(server_wscale(16 * mib, 4 * mib), 9);
        assert_eq!(server_wscale(256 * 1024, 4 * mib), 7);
        assert_eq!(server_wscale(64 * mib, 4 * mib), 11);
        // Debian's defaults: rmem_max 208 KiB, tcp_rmem max 6 MiB.
        assert_eq!(server_wscale(6 * mib, 212_992), 7);
    }

    #[test]
    fn stays_within_what_tcp_allows() {
        assert_eq!(server_wscale(0, 0), 0);
        assert_eq!(server_wscale(4096, 4096), 0);
        assert_eq!(server_wscale(u64::MAX, 0), 14);
        assert_eq!(server_wscale(1 << 40, 1 << 40), 14);
    }

    #[test]
    fn reads_the_maximum_of_tcp_rmem() {
        assert_eq!(tcp_rmem_max("4096\t131072\t6291456\n"), Some(6_291_456));
        assert_eq!(tcp_rmem_max("4096 131072"), None);
        assert_eq!(tcp_rmem_max("4096 x 6291456"), None);
        assert_eq!(tcp_rmem_max(""), None);
    }
}
