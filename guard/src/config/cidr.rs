//! CIDR text, as every list and the fleet write it.

use std::net::IpAddr;

use ipnet::IpNet;

/// `198.18.0.0/24`, `2001:db8::/48`, or a bare address (a /32 or /128).
pub fn parse_cidr(text: &str) -> Result<IpNet, String> {
    let (addr, len) = match text.split_once('/') {
        Some((addr, len)) => (addr, Some(len)),
        None => (text, None),
    };
    let addr: IpAddr = addr
        .parse()
        .map_err(|_| format!("`{addr}` is not an IPv4 or IPv6 address"))?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => max,
        Some(len) => len
            .parse::<u8>()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| format!("prefix length `{len}` is not between 0 and {max}"))?,
    };
    let net = IpNet::new(addr, len).map_err(|e| e.to_string())?;
    if net.network() != addr {
        return Err(format!(
            "host bits are set after /{len}: did you mean {}?",
            net.trunc()
        ));
    }
    Ok(net)
}
