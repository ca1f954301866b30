//! Just enough IPv4/IPv6 parsing for the link emulator: protocol, L4 bounds, UDP checksum.
//!
//! Every accessor works on untrusted bytes read from a TUN device and never panics:
//! lengths are checked first and anything malformed is classified as [`Proto::Other`]
//! with no L4 range.
//!
//! ```text
//! IPv4 (RFC 791)                         IPv6 (RFC 8200)
//! 0      version:4 ihl:4                 0      version:4 ...
//! 2..4   total length                    4..6   payload length
//! 9      protocol                        6      next header
//! 12..16 source, 16..20 destination      8..24 source, 24..40 destination
//! ihl*4  L4 header                       40     L4 header (no extension headers walked)
//! ```

use super::Proto;

/// IP protocol numbers used here.
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ICMPV6: u8 = 58;

/// What the emulator needs to know about one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketInfo {
    pub proto: Proto,
    /// Byte offset where the L4 header starts, if the IP header parsed and this packet has it (a fragment
    /// never counts as having one: its L4 checksum covers bytes in other packets).
    pub l4_start: Option<usize>,
    /// Byte offset where the L4 payload starts (after the UDP/TCP/ICMP header), if known.
    pub payload_start: Option<usize>,
    /// End of the IP packet (from its length field, bounded by the bytes we have).
    pub end: usize,
    pub is_ipv6: bool,
    /// One IP fragment of a larger datagram (IPv4 MF or offset, or an IPv6 fragment header): the link
    /// counts packets, and a datagram larger than the path MTU crosses it as several.
    pub fragment: bool,
    /// Where the IP payload starts (after the IPv6 fragment header, where there is one), if the header parsed.
    pub ip_payload: Option<usize>,
}

/// IPv6 fragment header (RFC 8200 section 4.5): next header, reserved, offset:13 res:2 M:1, identification.
const IPV6_FRAGMENT: u8 = 44;

/// Classify a raw IP packet (no link header, as read from an IFF_NO_PI TUN).
pub fn parse(pkt: &[u8]) -> PacketInfo {
    let other = PacketInfo {
        proto: Proto::Other,
        l4_start: None,
        payload_start: None,
        end: pkt.len(),
        is_ipv6: false,
        fragment: false,
        ip_payload: None,
    };
    let Some(&first) = pkt.first() else {
        return other;
    };
    // (protocol, IP payload start, end, IPv6, fragment offset, more fragments)
    let (ip_proto, l4, end, is_ipv6, offset, more) = match first >> 4 {
        4 => {
            if pkt.len() < 20 {
                return other;
            }
            let ihl = usize::from(first & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([pkt[2], pkt[3]]));
            if ihl < 20 || total < ihl || total > pkt.len() {
                return other;
            }
            let flags_off = u16::from_be_bytes([pkt[6], pkt[7]]);
            (
                pkt[9],
                ihl,
                total,
                false,
                flags_off & 0x1fff,
                flags_off & 0x2000 != 0,
            )
        }
        6 => {
            if pkt.len() < 40 {
                return other;
            }
            let total = 40 + usize::from(u16::from_be_bytes([pkt[4], pkt[5]]));
            if total > pkt.len() {
                return other;
            }
            if pkt[6] == IPV6_FRAGMENT {
                if total < 48 {
                    return other;
                }
                let off_m = u16::from_be_bytes([pkt[42], pkt[43]]);
                (pkt[40], 48, total, true, off_m >> 3, off_m & 1 != 0)
            } else {
                (pkt[6], 40, total, true, 0, false)
            }
        }
        _ => return other,
    };
    let proto = proto_of(ip_proto);
    if offset != 0 || more {
        return PacketInfo {
            proto,
            end,
            is_ipv6,
            fragment: true,
            ip_payload: Some(l4),
            ..other
        };
    }
    let l4_len = end - l4;
    let hdr = match proto {
        Proto::Udp | Proto::Icmp => (l4_len >= 8).then_some(8),
        Proto::Tcp => {
            if l4_len >= 20 {
                let doff = usize::from(pkt[l4 + 12] >> 4) * 4;
                (doff >= 20 && doff <= l4_len).then_some(doff)
            } else {
                None
            }
        }
        Proto::Other => Some(0),
    };
    PacketInfo {
        proto,
        l4_start: Some(l4),
        payload_start: hdr.map(|h| l4 + h),
        end,
        is_ipv6,
        fragment: false,
        ip_payload: Some(l4),
    }
}

fn proto_of(p: u8) -> Proto {
    match p {
        IPPROTO_TCP => Proto::Tcp,
        IPPROTO_UDP => Proto::Udp,
        IPPROTO_ICMP | IPPROTO_ICMPV6 => Proto::Icmp,
        _ => Proto::Other,
    }
}

/// The byte range a corruption may hit: the L4 payload, or the whole L4 segment when the
/// payload is empty (a bare TCP ACK), or the IP payload for unparsed protocols and for fragments
/// (whose checksum cannot be made valid again: the link never reassembles). `None` when the packet is too malformed to say (then it is never corrupted).
pub fn corruptible_range(info: &PacketInfo) -> Option<std::ops::Range<usize>> {
    if info.fragment {
        // Every fragment carries part of the datagram, so any of them may be hit.
        let p = info.ip_payload?;
        return (p < info.end).then_some(p..info.end);
    }
    let l4 = info.l4_start?;
    match info.payload_start {
        Some(p) if p < info.end => Some(p..info.end),
        _ if l4 < info.end => Some(l4..info.end),
        _ => None,
    }
}

/// Ones'-complement sum of 16-bit big-endian words (RFC 1071), not yet folded.
fn sum16(data: &[u8], mut acc: u64) -> u64 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        acc += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        acc += u64::from(u16::from_be_bytes([*last, 0]));
    }
    acc
}

fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The UDP checksum the datagram in `pkt` should carry (RFC 768 / RFC 8200 §8.1),
/// computed with the checksum field taken as zero. `None` if `pkt` is not a whole UDP packet.
pub fn udp_checksum(pkt: &[u8]) -> Option<u16> {
    let info = parse(pkt);
    if info.proto != Proto::Udp {
        return None;
    }
    let l4 = info.l4_start?;
    info.payload_start?;
    let seg = &pkt[l4..info.end];
    let mut acc = if info.is_ipv6 {
        let mut a = sum16(&pkt[8..40], 0);
        a += seg.len() as u64;
        a + u64::from(IPPROTO_UDP)
    } else {
        let mut a = sum16(&pkt[12..20], 0);
        a += u64::from(IPPROTO_UDP);
        a + seg.len() as u64
    };
    acc = sum16(&seg[..6], acc);
    acc = sum16(&seg[8..], acc);
    let c = !fold(acc);
    // A computed zero is sent as all ones (RFC 768).
    Some(if c == 0 { 0xffff } else { c })
}

/// Rewrite the UDP checksum of `pkt` in place. Returns false if `pkt` is not UDP or
/// (IPv4 only) carries checksum 0, meaning "no checksum", which is left alone.
pub fn fix_udp_checksum(pkt: &mut [u8]) -> bool {
    let info = parse(pkt);
    let (Some(l4), Some(c)) = (info.l4_start, udp_checksum(pkt)) else {
        return false;
    };
    if !info.is_ipv6 && pkt[l4 + 6] == 0 && pkt[l4 + 7] == 0 {
        return false;
    }
    pkt[l4 + 6..l4 + 8].copy_from_slice(&c.to_be_bytes());
    true
}

/// True if the UDP checksum in `pkt` verifies (or is 0 on IPv4, meaning unchecked).
pub fn udp_checksum_ok(pkt: &[u8]) -> bool {
    let info = parse(pkt);
    let (Some(l4), Some(c)) = (info.l4_start, udp_checksum(pkt)) else {
        return false;
    };
    let stored = u16::from_be_bytes([pkt[l4 + 6], pkt[l4 + 7]]);
    (stored == 0 && !info.is_ipv6) || stored == c
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A hand-built IPv4/UDP packet 198.18.0.1:4000 -> 198.18.0.2:5000 with a correct checksum.
    pub(crate) fn ipv4_udp(payload: &[u8]) -> Vec<u8> {
        let total = 20 + 8 + payload.len();
        let mut p = vec![
            0x45,
            0,
            (total >> 8) as u8,
            total as u8,
            0,
            1,
            0x40,
            0, // DF
            64,
            17,
            0,
            0, // header checksum (not checked by the emulator)
            198,
            18,
            0,
            1,
            198,
            18,
            0,
            2,
        ];
        let ulen = 8 + payload.len();
        p.extend_from_slice(&[0x0f, 0xa0, 0x13, 0x88, (ulen >> 8) as u8, ulen as u8, 0, 0]);
        p.extend_from_slice(payload);
        assert!(fix_udp_checksum_force(&mut p));
        p
    }

    fn fix_udp_checksum_force(p: &mut [u8]) -> bool {
        let c = udp_checksum(p).unwrap();
        p[26..28].copy_from_slice(&c.to_be_bytes());
        true
    }

    #[test]
    fn golden_udp_checksum() {
        // Worked by hand: pseudo header 0xc612+0x0001+0xc612+0x0002+0x0011+0x000c,
        // UDP 0x0fa0+0x1388+0x000c, payload "abcd" = 0x6162+0x6364.
        let p = ipv4_udp(b"abcd");
        let sum: u32 = 0xc612
            + 0x0001
            + 0xc612
            + 0x0002
            + 0x0011
            + 0x000c
            + 0x0fa0
            + 0x1388
            + 0x000c
            + 0x6162
            + 0x6364;
        let folded = (sum & 0xffff) + (sum >> 16);
        let expect = !(folded as u16);
        assert_eq!(u16::from_be_bytes([p[26], p[27]]), expect);
        assert!(udp_checksum_ok(&p));
        let info = parse(&p);
        assert_eq!(info.proto, Proto::Udp);
        assert_eq!(info.l4_start, Some(20));
        assert_eq!(info.payload_start, Some(28));
        assert_eq!(corruptible_range(&info), Some(28..32));
    }

    #[test]
    fn fragments_are_known_and_never_get_a_checksum_fix() {
        // First fragment: MF set, offset 0. It has the UDP header, but its checksum covers the whole datagram.
        let mut first = ipv4_udp(&[7u8; 64]);
        first[6] = 0x20;
        let info = parse(&first);
        assert!(info.fragment);
        assert_eq!(info.proto, Proto::Udp);
        assert_eq!(info.l4_start, None);
        assert_eq!(corruptible_range(&info), Some(20..first.len()));
        let before = first.clone();
        assert!(!fix_udp_checksum(&mut first));
        assert_eq!(first, before);
        // Last fragment: MF clear, offset 185 (1480 bytes).
        let mut last = ipv4_udp(&[7u8; 64]);
        last[6] = 0x00;
        last[7] = 185;
        let info = parse(&last);
        assert!(info.fragment && info.proto == Proto::Udp && info.l4_start.is_none());
        // Not a fragment: DF only.
        assert!(!parse(&ipv4_udp(b"abcd")).fragment);
        // IPv6 with a fragment header (next header 44) around UDP: offset 0, M set.
        let mut v6 = vec![0x60, 0, 0, 0, 0, 8 + 8 + 16, 44, 64];
        v6.extend_from_slice(&[0x20, 0x01, 0, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        v6.extend_from_slice(&[0x20, 0x01, 0, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        v6.extend_from_slice(&[17, 0, 0x00, 0x01, 0, 0, 0, 9]);
        v6.extend_from_slice(&[0x0f, 0xa0, 0x13, 0x88, 0, 24, 0, 0]);
        v6.extend_from_slice(&[1u8; 16]);
        let info = parse(&v6);
        assert!(info.fragment && info.is_ipv6, "{info:?}");
        assert_eq!(info.proto, Proto::Udp);
        assert_eq!(info.ip_payload, Some(48));
        assert_eq!(corruptible_range(&info), Some(48..v6.len()));
    }

    #[test]
    fn hostile_input_never_panics() {
        for len in 0..64 {
            let mut p = vec![0x45u8; len];
            let _ = parse(&p);
            let _ = fix_udp_checksum(&mut p);
            p.fill(0x60);
            let _ = parse(&p);
            let _ = udp_checksum_ok(&p);
            p.fill(0xff);
            let _ = parse(&p);
        }
        // IPv4 claiming a longer total length than we have.
        let mut p = ipv4_udp(b"xyz");
        p[3] = 200;
        assert_eq!(parse(&p).proto, Proto::Other);
    }
}
