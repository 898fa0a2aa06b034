//! What the tests check replies against, written independently of the
//! packet builder ([`crate::packet`]) and of the program: a reply is only
//! as right as the code that checks it is independent.

use std::net::IpAddr;

/// The TCP pseudo-header (RFC 9293 3.1, RFC 8200 8.1).
#[must_use]
pub fn tcp_pseudo_header(src: IpAddr, dst: IpAddr, tcp_len: usize) -> Vec<u8> {
    let mut p = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&[0, 6]);
            p.extend_from_slice(&u16::try_from(tcp_len).expect("short").to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&u32::try_from(tcp_len).expect("short").to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, 6]);
        }
        _ => panic!("mixed address families"),
    }
    p
}
