//! The byte work of the XDP program's SYN-cookie reply, kept here where
//! its unit tests run on the host: reading a SYN's options, the timestamp
//! that carries them, the SYN-ACK's options, and Internet checksums. The
//! cookie itself comes from the kernel (`bpf_tcp_raw_gen_syncookie_*`),
//! with the kernel's secret, so the kernel's SYNPROXY can check the
//! handshake's last ACK.
//!
//! The timestamp encoding is the kernel's (`cookie_init_timestamp`): the
//! low six bits of our TSval hold the client's window scale (0xf: none),
//! SACK-permitted and ECN, since a cookie has no room for them; the client
//! echoes the TSval in its ACK and SYNPROXY decodes it from there. Without
//! the client's timestamps there is nowhere to keep them, so the SYN-ACK
//! then offers neither window scaling nor SACK, as the kernel does.

/// Longest TCP header (doff 15).
pub const TCP_MAX_HLEN: usize = 60;
/// Longest SYN-ACK option block this builds: MSS, SACK-permitted with the
/// timestamp, window scale.
pub const SYNACK_MAX_OPTIONS: usize = 20;

pub const TCPOPT_EOL: u8 = 0;
pub const TCPOPT_NOP: u8 = 1;
pub const TCPOPT_MSS: u8 = 2;
pub const TCPOPT_WINDOW: u8 = 3;
pub const TCPOPT_SACK_PERM: u8 = 4;
pub const TCPOPT_TIMESTAMP: u8 = 8;

/// Window scale values above this are read as this (RFC 7323).
pub const TCP_MAX_WSCALE: u8 = 14;
/// TSval bits that carry options.
pub const TS_OPT_WSCALE_MASK: u32 = 0xf;
pub const TS_OPT_SACK: u32 = 1 << 4;
pub const TS_OPT_ECN: u32 = 1 << 5;
pub const TS_OPT_BITS: u32 = 0x3f;

/// What a SYN asked for in its options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SynOptions {
    /// The client's TSval (it becomes our TSecr).
    pub tsval: Option<u32>,
    /// The client's window scale, capped at [`TCP_MAX_WSCALE`].
    pub wscale: Option<u8>,
    pub sack: bool,
}

/// A walk over a SYN's options, one option a step, so that the XDP program
/// can run the steps from `bpf_loop` (a plain loop with this many branches
/// is more than the verifier will explore) and the host from a loop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OptionWalk {
    /// Where the next option starts.
    pub off: usize,
    pub opts: SynOptions,
}

impl OptionWalk {
    /// Before the first option, right after the fixed header.
    pub const START: Self = Self {
        off: 20,
        opts: SynOptions {
            tsval: None,
            wscale: None,
            sack: false,
        },
    };

    /// Steps enough for any header: each consumes at least one byte.
    pub const MAX_STEPS: u32 = (TCP_MAX_HLEN - 20) as u32;

    /// Reads the option at `off` of `tcp` (the whole header, fixed part
    /// first); false when the walk is over. Malformed options end it; what
    /// was read before them stands, as in the kernel. No indexing that could
    /// panic: it runs in the XDP program, where a panic path is not allowed.
    #[inline(always)]
    pub fn step(&mut self, tcp: &[u8]) -> bool {
        let off = self.off;
        let Some(&kind) = tcp.get(off) else {
            return false;
        };
        if kind == TCPOPT_EOL {
            return false;
        }
        if kind == TCPOPT_NOP {
            self.off = off + 1;
            return true;
        }
        let Some(&size) = tcp.get(off + 1) else {
            return false;
        };
        let size = size as usize;
        if size < 2 || off + size > tcp.len() {
            return false;
        }
        match (kind, size) {
            (TCPOPT_WINDOW, 3) => {
                if let Some(&ws) = tcp.get(off + 2) {
                    self.opts.wscale = Some(if ws > TCP_MAX_WSCALE {
                        TCP_MAX_WSCALE
                    } else {
                        ws
                    });
                }
            }
            (TCPOPT_SACK_PERM, 2) => self.opts.sack = true,
            (TCPOPT_TIMESTAMP, 10) => {
                if let Some(&[a, b, c, d]) = tcp.get(off + 2..off + 6) {
                    self.opts.tsval = Some(u32::from_be_bytes([a, b, c, d]));
                }
            }
            _ => {}
        }
        self.off = off + size;
        true
    }
}

/// The options of a SYN laid out as Linux lays them out (MSS,
/// SACK-permitted, timestamps, NOP, window scale: a 40-byte header), read
/// at their fixed places; `None` for any other layout. Most SYNs come from
/// Linux: this spares them the general walk.
#[must_use]
#[inline(always)]
pub fn linux_syn_options(tcp: &[u8]) -> Option<SynOptions> {
    let &[
        TCPOPT_MSS,
        4,
        _,
        _,
        TCPOPT_SACK_PERM,
        2,
        TCPOPT_TIMESTAMP,
        10,
        t0,
        t1,
        t2,
        t3,
        _,
        _,
        _,
        _,
        TCPOPT_NOP,
        TCPOPT_WINDOW,
        3,
        ws,
    ] = tcp.get(20..40)?
    else {
        return None;
    };
    if tcp.len() != 40 {
        return None;
    }
    Some(SynOptions {
        tsval: Some(u32::from_be_bytes([t0, t1, t2, t3])),
        wscale: Some(if ws > TCP_MAX_WSCALE {
            TCP_MAX_WSCALE
        } else {
            ws
        }),
        sack: true,
    })
}

/// Our TSval: the millisecond clock with its low bits replaced by the
/// options the cookie cannot hold.
#[must_use]
#[inline(always)]
pub fn cookie_tsval(now_ms: u32, opts: &SynOptions, ecn: bool) -> u32 {
    let mut ts = now_ms & !TS_OPT_BITS;
    ts |= match opts.wscale {
        Some(ws) => u32::from(ws) & TS_OPT_WSCALE_MASK,
        None => TS_OPT_WSCALE_MASK,
    };
    if opts.sack {
        ts |= TS_OPT_SACK;
    }
    if ecn {
        ts |= TS_OPT_ECN;
    }
    ts
}

/// Writes the SYN-ACK's options into `out` and returns their length (4, 16
/// or 20). `ts` is (our TSval, the client's TSval) when the client sent
/// timestamps; only then are SACK and window scaling offered.
#[inline(always)]
pub fn write_synack_options(
    out: &mut [u8; SYNACK_MAX_OPTIONS],
    mss: u16,
    ts: Option<(u32, u32)>,
    sack: bool,
    wscale: Option<u8>,
) -> usize {
    let m = mss.to_be_bytes();
    out[0] = TCPOPT_MSS;
    out[1] = 4;
    out[2] = m[0];
    out[3] = m[1];
    let Some((tsval, tsecr)) = ts else {
        return 4;
    };
    if sack {
        out[4] = TCPOPT_SACK_PERM;
        out[5] = 2;
    } else {
        out[4] = TCPOPT_NOP;
        out[5] = TCPOPT_NOP;
    }
    out[6] = TCPOPT_TIMESTAMP;
    out[7] = 10;
    let v = tsval.to_be_bytes();
    let e = tsecr.to_be_bytes();
    out[8] = v[0];
    out[9] = v[1];
    out[10] = v[2];
    out[11] = v[3];
    out[12] = e[0];
    out[13] = e[1];
    out[14] = e[2];
    out[15] = e[3];
    let Some(ws) = wscale else {
        return 16;
    };
    out[16] = TCPOPT_NOP;
    out[17] = TCPOPT_WINDOW;
    out[18] = 3;
    out[19] = ws;
    20
}

/// The one's-complement sum of `words`, each 32 bits read in memory
/// order, for [`csum_fold`] (whose result is then in memory order too):
/// what `bpf_csum_diff` gives for their bytes. An IPv4 header's five
/// words add in a few instructions, where the helper costs a call.
#[must_use]
#[inline(always)]
pub const fn csum_words(words: &[u32; 5]) -> u32 {
    let mut sum = 0u64;
    let mut i = 0;
    while i < words.len() {
        sum += words[i] as u64;
        i += 1;
    }
    // Five words carry at most 3 into the high half; folded twice, none.
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum = (sum & 0xffff_ffff) + (sum >> 32);
    sum as u32
}

/// Folds a sum to 16 bits and complements it: the checksum to store (or 0
/// when checking a block that includes its checksum).
#[must_use]
#[inline(always)]
pub const fn csum_fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads the options of a TCP header (`tcp` is the whole header, fixed
    /// part first).
    fn parse_syn_options(tcp: &[u8]) -> SynOptions {
        let mut walk = OptionWalk::START;
        let mut steps = 0;
        while steps < OptionWalk::MAX_STEPS && walk.step(tcp) {
            steps += 1;
        }
        walk.opts
    }

    /// Adds big-endian 16-bit words of `bytes` to a one's-complement sum (an
    /// odd last byte is padded with zero).
    fn csum_add(sum: u32, bytes: &[u8]) -> u32 {
        bytes.chunks(2).fold(sum, |sum, pair| {
            sum + u32::from(u16::from_be_bytes([
                pair[0],
                pair.get(1).copied().unwrap_or(0),
            ]))
        })
    }

    fn header(options: &[u8]) -> Vec<u8> {
        let mut tcp = vec![0u8; 20 + options.len().div_ceil(4) * 4];
        tcp[20..20 + options.len()].copy_from_slice(options);
        tcp
    }

    /// The word sum's checksum, stored in memory order, is the byte-wise
    /// sum's, for headers of random bytes and for the carriest one.
    #[test]
    fn word_sums_check_as_byte_sums_do() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut headers = vec![[0xff; 20], [0; 20]];
        for _ in 0..1000 {
            let mut h = [0u8; 20];
            for b in &mut h {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
            headers.push(h);
        }
        let words = |h: &[u8; 20]| -> [u32; 5] {
            core::array::from_fn(|i| u32::from_ne_bytes(h[4 * i..4 * i + 4].try_into().unwrap()))
        };
        for mut h in headers {
            h[10..12].fill(0);
            let c = csum_fold(csum_words(&words(&h))).to_ne_bytes();
            assert_eq!(
                u16::from_be_bytes(c),
                csum_fold(csum_add(0, &h)),
                "{h:02x?}"
            );
            h[10..12].copy_from_slice(&c);
            assert_eq!(csum_fold(csum_words(&words(&h))), 0, "{h:02x?}: checks");
        }
    }

    #[test]
    fn reads_a_linux_syn() {
        // MSS 1460, SACK-permitted, timestamps 0x01020304/0, NOP, wscale 7.
        let tcp = header(&[
            2, 4, 5, 180, 4, 2, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 7,
        ]);
        assert_eq!(
            parse_syn_options(&tcp),
            SynOptions {
                tsval: Some(0x0102_0304),
                wscale: Some(7),
                sack: true
            }
        );
    }

    #[test]
    fn the_linux_layout_reads_as_the_walk_does() {
        let linux = header(&[
            2, 4, 5, 180, 4, 2, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 7,
        ]);
        assert_eq!(linux_syn_options(&linux), Some(parse_syn_options(&linux)));
        let big_ws = header(&[
            2, 4, 5, 180, 4, 2, 8, 10, 1, 2, 3, 4, 0, 0, 0, 0, 1, 3, 3, 20,
        ]);
        assert_eq!(linux_syn_options(&big_ws), Some(parse_syn_options(&big_ws)));
        // Anything else is left to the walk.
        let windows = header(&[2, 4, 5, 180, 1, 3, 3, 8, 1, 1, 4, 2]);
        assert_eq!(linux_syn_options(&windows), None);
        assert_eq!(linux_syn_options(&header(&[])), None);
        assert_eq!(linux_syn_options(&linux[..36]), None);
    }

    #[test]
    fn caps_the_window_scale_and_stops_at_garbage() {
        let tcp = header(&[3, 3, 20, 1, 4, 2, 0, 0]);
        let o = parse_syn_options(&tcp);
        assert_eq!((o.wscale, o.sack), (Some(14), true));
        // A length of 1 is malformed: the walk ends, SACK after it unseen.
        assert_eq!(
            parse_syn_options(&header(&[8, 1, 4, 2])),
            SynOptions::default()
        );
        // An option running past the header is not read.
        let tcp = header(&[8, 10, 1, 2, 3, 4]);
        assert_eq!(parse_syn_options(&tcp[..24]).tsval, None);
    }

    #[test]
    fn no_options_and_short_headers_are_safe() {
        assert_eq!(parse_syn_options(&header(&[])), SynOptions::default());
        assert_eq!(parse_syn_options(&[]), SynOptions::default());
        assert_eq!(parse_syn_options(&[1; TCP_MAX_HLEN]), SynOptions::default());
    }

    #[test]
    fn the_tsval_carries_the_options_in_its_low_bits() {
        let opts = SynOptions {
            tsval: Some(1),
            wscale: Some(7),
            sack: true,
        };
        assert_eq!(
            cookie_tsval(0x1234_5678, &opts, false),
            0x1234_5640 | 7 | 16
        );
        assert_eq!(
            cookie_tsval(0, &SynOptions::default(), true),
            TS_OPT_WSCALE_MASK | TS_OPT_ECN
        );
    }

    #[test]
    fn synack_options_by_what_the_client_offered() {
        let mut out = [0u8; SYNACK_MAX_OPTIONS];
        assert_eq!(write_synack_options(&mut out, 1460, None, true, Some(7)), 4);
        assert_eq!(out[..4], [2, 4, 5, 180]);
        let n = write_synack_options(&mut out, 1440, Some((9, 1)), true, Some(7));
        assert_eq!(
            out[..n],
            [
                2, 4, 5, 160, 4, 2, 8, 10, 0, 0, 0, 9, 0, 0, 0, 1, 1, 3, 3, 7
            ]
        );
        let n = write_synack_options(&mut out, 1460, Some((9, 1)), false, None);
        assert_eq!(
            out[..n],
            [2, 4, 5, 180, 1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 1]
        );
    }

    #[test]
    fn checksums_match_rfc_1071() {
        // The example of RFC 1071 section 3: the sum of these words is
        // 0xddf2 after folding, so the checksum is its complement.
        let bytes = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(csum_fold(csum_add(0, &bytes)), !0xddf2);
        // A block holding its own checksum sums to zero.
        let mut block = [
            0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2,
        ];
        let c = csum_fold(csum_add(0, &block)).to_be_bytes();
        block[10] = c[0];
        block[11] = c[1];
        assert_eq!(csum_fold(csum_add(0, &block)), 0);
        // Odd length: the last byte is the high half of a word.
        assert_eq!(csum_add(0, &[1, 2, 3]), 0x0102 + 0x0300);
    }
}
