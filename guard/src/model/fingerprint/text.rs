//! The one line operators read and write for a signature
//! (`udp ip4 len 44 payload[0..4]=deadbeef`): [`describe`] writes it,
//! [`parse`] reads it back, and the two round-trip.

use std::fmt::{self, Write as _};

use guard_common::{
    dissect::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP},
    fingerprint::{FP_LEN, FP_PAYLOAD, FP_PAYLOAD_LEN, Signature},
    key::{AF_INET, AF_INET6},
};

use super::field::{Field, prefix};

/// The fields [`describe`] writes by name, in the order it writes them
/// (family and protocol come first, as words where they can).
const NAMED: [Field; 9] = [
    Field::Ttl,
    Field::Tos,
    Field::IpId,
    Field::IpLen,
    Field::Sport,
    Field::Dport,
    Field::Window,
    Field::TcpFlags,
    Field::L4Hlen,
];

/// A field's name in the line; the window's depends on the protocol.
fn label(field: Field, proto: Option<u8>) -> &'static str {
    match field {
        Field::Family => "family",
        Field::Proto => "proto",
        Field::Ttl => "ttl",
        Field::Tos => "tos",
        Field::IpId => "id",
        Field::IpLen => "len",
        Field::Sport => "sport",
        Field::Dport => "dport",
        Field::Window => match proto {
            Some(IPPROTO_UDP) => "ulen",
            Some(IPPROTO_ICMP | IPPROTO_ICMPV6) => "seq",
            _ => "win",
        },
        Field::TcpFlags => "flags",
        Field::L4Hlen => "hlen",
        Field::Payload(_) => "payload",
    }
}

/// The field by the name [`label`] gives it (any of the window's).
fn named(name: &str) -> Option<Field> {
    Some(match name {
        "family" => Field::Family,
        "proto" => Field::Proto,
        "ttl" => Field::Ttl,
        "tos" => Field::Tos,
        "id" => Field::IpId,
        "len" => Field::IpLen,
        "sport" => Field::Sport,
        "dport" => Field::Dport,
        "win" | "ulen" | "seq" => Field::Window,
        "flags" => Field::TcpFlags,
        "hlen" => Field::L4Hlen,
        _ => return None,
    })
}

fn number(field: Field, n: u32) -> String {
    if field == Field::TcpFlags {
        format!("0x{n:02x}")
    } else {
        n.to_string()
    }
}

/// `name N`, or `name A-B` for a partial mask, or nothing if no high bit
/// of the field is masked (the bits below the mask's leading ones are not
/// shown: only a prefix mask is a range).
fn numeric(
    field: Field,
    mask: &[u8; FP_LEN],
    value: &[u8; FP_LEN],
    proto: Option<u8>,
) -> Option<String> {
    let bits = field.bits();
    let n = (field.read(mask) << (32 - bits)).leading_ones();
    if n == 0 {
        return None;
    }
    let m = prefix(bits, n);
    let lo = field.read(value) & m;
    let hi = lo | (field.full() ^ m);
    let name = label(field, proto);
    Some(if lo == hi {
        format!("{name} {}", number(field, lo))
    } else {
        format!("{name} {}-{}", number(field, lo), number(field, hi))
    })
}

/// The signature as one line an operator reads (and [`parse`] reads
/// back): the protocol as a word (`tcp`, `udp`, `icmp` for ICMP over IPv4,
/// `icmp6` for ICMPv6 over IPv6), the family (`ip4`, `ip6`) unless the word
/// said it, the fixed fields by name in layout order (a range where only
/// high bits are fixed: `len 40-47`), then the fixed payload bytes as hex
/// runs (`opts[a..b]` under TCP, whose first bytes there are options;
/// `payload[a..b]` otherwise). `any` if nothing is fixed.
///
/// Exact for every signature [`learn`](super::learn) and [`parse`] make; of other masks
/// it shows only what it can say (the leading bits of a number, the whole
/// bytes of payload), so such a line reads wider than the signature.
#[must_use]
pub fn describe(sig: &Signature) -> String {
    let (mask, value) = sig.to_bytes();
    let whole = |f: Field| (f.read(&mask) == f.full()).then(|| f.read(&value) as u8);
    let proto = whole(Field::Proto);
    let family = whole(Field::Family);
    let mut words = Vec::new();
    let (word, family_said) = match (proto, family) {
        (Some(IPPROTO_ICMP), Some(AF_INET)) => (Some("icmp"), true),
        (Some(IPPROTO_ICMPV6), Some(AF_INET6)) => (Some("icmp6"), true),
        (Some(IPPROTO_TCP), _) => (Some("tcp"), false),
        (Some(IPPROTO_UDP), _) => (Some("udp"), false),
        _ => (None, false),
    };
    match word {
        Some(w) => words.push(w.to_owned()),
        None => words.extend(numeric(Field::Proto, &mask, &value, proto)),
    }
    if !family_said {
        match family {
            Some(AF_INET) => words.push("ip4".to_owned()),
            Some(AF_INET6) => words.push("ip6".to_owned()),
            _ => words.extend(numeric(Field::Family, &mask, &value, proto)),
        }
    }
    words.extend(
        NAMED
            .iter()
            .filter_map(|&f| numeric(f, &mask, &value, proto)),
    );
    let name = if proto == Some(IPPROTO_TCP) {
        "opts"
    } else {
        "payload"
    };
    let fixed = |i: usize| mask[FP_PAYLOAD + i] == 0xff;
    let mut i = 0;
    while i < FP_PAYLOAD_LEN {
        if !fixed(i) {
            i += 1;
            continue;
        }
        let start = i;
        while i < FP_PAYLOAD_LEN && fixed(i) {
            i += 1;
        }
        let mut run = format!("{name}[{start}..{i}]=");
        for b in &value[FP_PAYLOAD + start..FP_PAYLOAD + i] {
            let _ = write!(run, "{b:02x}");
        }
        words.push(run);
    }
    if words.is_empty() {
        "any".to_owned()
    } else {
        words.join(" ")
    }
}

/// Why an operator's signature does not parse: the token, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub token: String,
    pub why: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.token.is_empty() {
            f.write_str(&self.why)
        } else {
            write!(f, "`{}`: {}", self.token, self.why)
        }
    }
}

impl std::error::Error for ParseError {}

fn error(token: &str, why: impl Into<String>) -> ParseError {
    ParseError {
        token: token.to_owned(),
        why: why.into(),
    }
}

pub(super) const WORDS: &str = "a signature is made of tcp, udp, icmp, icmp6, ip4, ip6, \
     a field and its value (family, proto, ttl, tos, id, len, sport, dport, \
     win, ulen, seq, flags, hlen: `len 44`, `len 40-47`), \
     payload[a..b]=hex or opts[a..b]=hex; or `any` alone";

/// The masks and values the tokens have fixed so far.
struct Builder {
    mask: [u8; FP_LEN],
    value: [u8; FP_LEN],
}

impl Builder {
    /// Adds `mask`, `value` (a conjunction: where they overlap what is
    /// fixed already, they must agree).
    fn add(
        &mut self,
        mask: &[u8; FP_LEN],
        value: &[u8; FP_LEN],
        token: &str,
    ) -> Result<(), ParseError> {
        for i in 0..FP_LEN {
            if self.mask[i] & mask[i] & (self.value[i] ^ value[i]) != 0 {
                return Err(error(
                    token,
                    "contradicts an earlier token: nothing would match",
                ));
            }
        }
        for i in 0..FP_LEN {
            self.mask[i] |= mask[i];
            self.value[i] |= value[i] & mask[i];
        }
        Ok(())
    }

    fn set(&mut self, field: Field, mask: u32, value: u32, token: &str) -> Result<(), ParseError> {
        let mut m = [0u8; FP_LEN];
        let mut v = [0u8; FP_LEN];
        field.write(&mut m, mask);
        field.write(&mut v, value);
        self.add(&m, &v, token)
    }

    fn whole(&mut self, field: Field, value: u8, token: &str) -> Result<(), ParseError> {
        self.set(field, field.full(), u32::from(value), token)
    }
}

/// A number, decimal or `0x` hex.
fn parse_number(s: &str) -> Option<u32> {
    let (digits, radix) = s.strip_prefix("0x").map_or((s, 10), |hex| (hex, 16));
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u32::from_str_radix(digits, radix).ok()
}

/// `N` or `A-B` for `field`, as a mask and value; `A-B` must be an
/// aligned power-of-two block (`40-47`), the only ranges a mask holds.
fn parse_range(field: Field, name: &str, arg: &str) -> Result<(u32, u32), String> {
    let full = field.full();
    let num = |s: &str| match parse_number(s) {
        Some(n) if n <= full => Ok(n),
        Some(n) => Err(format!("{n} is more than {name} holds ({full})")),
        None => Err(format!("`{s}` is not a number")),
    };
    let Some((a, b)) = arg.split_once('-') else {
        return Ok((full, num(arg)?));
    };
    let (lo, hi) = (num(a)?, num(b)?);
    if lo > hi {
        return Err(format!("{lo} is above {hi}"));
    }
    let size = u64::from(hi - lo) + 1;
    if size.is_power_of_two() && u64::from(lo) % size == 0 {
        return Ok((full ^ (size - 1) as u32, lo));
    }
    // The smallest block that holds both ends, for the message.
    let k = 32 - (lo ^ hi).leading_zeros();
    let block = (1u64 << k) - 1;
    let start = (u64::from(lo) & !block) as u32;
    let end = start | block as u32;
    Err(format!(
        "a mask can only hold a range whose size is a power of two and that starts at a \
         multiple of it; {lo}-{hi} is not one (the nearest is {}-{})",
        number(field, start),
        number(field, end)
    ))
}

/// A mask and a value over the layout.
type MaskValue = ([u8; FP_LEN], [u8; FP_LEN]);

/// `payload[a..b]=hex` or `opts[a..b]=hex` as a mask and value, or `None`
/// if the token is not of that form.
fn parse_payload(token: &str) -> Option<Result<MaskValue, String>> {
    let (name, rest) = token.split_once('[')?;
    if name != "payload" && name != "opts" {
        return None;
    }
    Some((|| {
        let form = || format!("write it as {name}[a..b]=hex");
        let (range, hex) = rest.split_once("]=").ok_or_else(form)?;
        let (a, b) = range.split_once("..").ok_or_else(form)?;
        let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) else {
            return Err(form());
        };
        if a >= b || b > FP_PAYLOAD_LEN {
            return Err(format!(
                "bytes {a}..{b}: a signature holds payload bytes 0..{FP_PAYLOAD_LEN}, \
                 and a range needs a < b"
            ));
        }
        if !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!("`{hex}` is not hex"));
        }
        if hex.len() != 2 * (b - a) {
            return Err(format!(
                "bytes {a}..{b} need {} hex digits, `{hex}` has {}",
                2 * (b - a),
                hex.len()
            ));
        }
        let mut mask = [0u8; FP_LEN];
        let mut value = [0u8; FP_LEN];
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            let digits = std::str::from_utf8(pair).map_err(|_| form())?;
            mask[FP_PAYLOAD + a + i] = 0xff;
            value[FP_PAYLOAD + a + i] = u8::from_str_radix(digits, 16).map_err(|_| form())?;
        }
        Ok((mask, value))
    })())
}

/// An operator's signature, in the words [`describe`] writes (the field
/// names of the window, `win`, `ulen` and `seq`, are one field, and so are
/// `payload` and `opts`): `udp dport 5353 len 44 payload[0..4]=deadbeef`.
/// The tokens are a conjunction, in any order.
pub fn parse(text: &str) -> Result<Signature, ParseError> {
    let mut b = Builder {
        mask: [0; FP_LEN],
        value: [0; FP_LEN],
    };
    let mut tokens = text.split_whitespace().peekable();
    if tokens.peek().is_none() {
        return Err(error("", format!("empty: {WORDS}")));
    }
    if text.split_whitespace().eq(["any"]) {
        return Ok(Signature::EMPTY);
    }
    while let Some(token) = tokens.next() {
        match token {
            "tcp" => b.whole(Field::Proto, IPPROTO_TCP, token)?,
            "udp" => b.whole(Field::Proto, IPPROTO_UDP, token)?,
            "icmp" => {
                b.whole(Field::Family, AF_INET, token)?;
                b.whole(Field::Proto, IPPROTO_ICMP, token)?;
            }
            "icmp6" => {
                b.whole(Field::Family, AF_INET6, token)?;
                b.whole(Field::Proto, IPPROTO_ICMPV6, token)?;
            }
            "ip4" => b.whole(Field::Family, AF_INET, token)?,
            "ip6" => b.whole(Field::Family, AF_INET6, token)?,
            "any" => return Err(error(token, "`any` stands alone")),
            _ => {
                if let Some(payload) = parse_payload(token) {
                    let (mask, value) = payload.map_err(|why| error(token, why))?;
                    b.add(&mask, &value, token)?;
                    continue;
                }
                let field = named(token).ok_or_else(|| error(token, WORDS))?;
                let arg = tokens.next().ok_or_else(|| {
                    error(
                        token,
                        format!("needs a value: `{token} N` or `{token} A-B`"),
                    )
                })?;
                let whole = format!("{token} {arg}");
                let (mask, value) =
                    parse_range(field, token, arg).map_err(|why| error(&whole, why))?;
                b.set(field, mask, value, &whole)?;
            }
        }
    }
    Ok(Signature::from_bytes(&b.mask, &b.value))
}
