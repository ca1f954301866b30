//! The data message decoder on arbitrary datagrams: `Header::parse`, `verify`, `echo_times`, the echo reply,
//! and whatever parses fed to a session's `Account` (and to the sender's `EchoStats`), as the UDP receive path
//! does; then the same datagrams, from the peer or from strangers, through the receiver's `UdpDemux`.
#![no_main]

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sockbench::accounting::EchoStats;
use sockbench::session::udp_demux::{Datagram, UdpDemux};
use sockbench::wire::{self, Header};
use sockbench_fuzz::{check_account, Piece, SessionShape};

#[derive(Arbitrary, Debug)]
struct Input {
    shape: SessionShape,
    datagrams: Vec<Piece>,
    /// Receiver-clock arrival times, ns from a realistic base.
    recv_jitter: Vec<i32>,
    /// Per datagram for the demux: who sent it (0: the peer, 1: the peer's host from another port, 2: a
    /// stranger, 3: no address), whether it was truncated, the socket's drop counter.
    senders: Vec<(u8, bool, Option<u32>)>,
    source_port: Option<u16>,
}

const PEER_PORT: u16 = 4000;

fn demux(inp: &Input, t: &sockbench::traffic::Traffic) {
    let peer: IpAddr = "198.18.0.1".parse().unwrap();
    let mut d = UdpDemux::new();
    d.add(
        Box::new(inp.shape.account(t)),
        peer,
        inp.source_port.map(|_| PEER_PORT),
        t.echo,
    );
    d.begin_batch(Duration::ZERO);
    let size_of = |seq| t.size_of(inp.shape.session, seq);
    let keys = inp.shape.keys();
    for (i, p) in inp.datagrams.iter().enumerate() {
        let mut b = p.bytes(inp.shape.session, &size_of, keys.as_ref());
        let (who, truncated, drops) = inp.senders.get(i).copied().unwrap_or((0, false, None));
        let from = match who % 4 {
            0 => Some(SocketAddr::new(peer, PEER_PORT)),
            1 => Some(SocketAddr::new(peer, PEER_PORT + 1)),
            2 => Some("198.18.0.2:4000".parse().unwrap()),
            _ => None,
        };
        let before = b.len();
        let echo = d.on_datagram(
            Datagram {
                data: &mut b,
                from,
                kernel_ns: Some(1_700_000_000_000_000_000),
                // A drop count delta from the socket, and whether it came through a session's own socket.
                drops: drops.unwrap_or(0),
                via: drops.map(|_| inp.shape.session),
                truncated,
            },
            1_700_000_000_000_000_100,
        );
        if let Some(e) = echo {
            // Echo only to the session's own peer, never more bytes than came in.
            assert!(t.echo);
            assert_eq!(Some(e.to), from);
            assert_eq!(e.to.ip(), peer);
            if inp.source_port.is_some() {
                assert_eq!(e.to.port(), PEER_PORT);
            }
            assert_eq!(b.len(), before);
            d.echoed(e.session, true, None);
        }
    }
    d.close_all(Instant::now());
    let stray = d.stray();
    let accts = d.take_finished(Instant::now(), 3);
    assert_eq!(accts.len(), 1);
    assert!(d.is_empty());
    let m = accts[0].measured(Some(t.count), true, None);
    // Every datagram is charged to the session or counted stray, once.
    let charged = m.seq.received + m.seq.duplicates + m.corrupt + m.invalid + m.unauthenticated;
    assert_eq!(charged + stray, inp.datagrams.len() as u64);
    assert!(m.echoed <= m.seq.received + m.seq.duplicates);
}

fuzz_target!(|inp: Input| {
    let t = inp.shape.traffic();
    let mut acct = inp.shape.account(&t);
    let keys = inp.shape.keys();
    let mut echo = EchoStats::new(inp.shape.session, t.count, false);
    if let Some(k) = &keys {
        echo.set_keys(k.clone());
    }
    let size_of = |seq| t.size_of(inp.shape.session, seq);
    let mut handed = 0u64;
    let (mut replies, mut echo_counted) = (0u64, 0u64);
    for (i, p) in inp.datagrams.iter().enumerate() {
        let mut b = p.bytes(inp.shape.session, &size_of, keys.as_ref());
        let jitter = inp.recv_jitter.get(i).copied().unwrap_or(0);
        let recv_ns = 1_700_000_000_000_000_000 + i64::from(jitter);
        let parsed = Header::parse(&b);
        if let Ok(h) = &parsed {
            assert_eq!(h.len as usize, b.len());
            assert!(b.len() >= wire::HEADER_LEN);
            assert_eq!(b[..4], wire::MAGIC.to_be_bytes());
            assert_eq!(b[4], wire::VERSION);
            assert_eq!(wire::verify(&b, h), wire::checksum(&b) == h.checksum);
            // Writing the parsed header back gives the same bytes, except the reserved and checksum fields.
            let mut back = [0u8; wire::HEADER_LEN];
            h.write(&mut back);
            assert_eq!(back[..6], b[..6]);
            assert_eq!(back[8..12], b[8..12]);
            assert_eq!(back[16..], b[16..wire::HEADER_LEN]);
        }
        // A MAC trailer is not part of the echo fields.
        assert_eq!(
            wire::echo_times(&b).is_some(),
            wire::crc_covered(&b) >= wire::MIN_ECHO_LEN
        );
        assert!(wire::crc_covered(&b) <= b.len());
        // The UDP receive path: ours if it parses and names the session, else charged as unrecognised.
        match parsed {
            Ok(h) if h.session == acct.session => {
                acct.on_message(&b, &h, recv_ns);
            }
            _ => acct.on_unrecognised(&b),
        }
        handed += 1;
        // The echo reply of a valid message is valid, no longer than it, and carries the receiver's times.
        let before = b.len();
        let flagged = b.len() > 5 && b[5] & wire::FLAG_MAC != 0;
        if wire::make_echo_reply(&mut b, recv_ns, recv_ns + 5) {
            // The receiver signs its reply in an authenticated session, in the trailer outside the CRC. (It
            // echoes only messages whose MAC held, which the sender flagged; unflagged, the trailer would
            // overlap the echo fields.)
            if flagged {
                acct.seal_reply(&mut b);
            }
            assert_eq!(b.len(), before);
            assert_eq!(wire::echo_times(&b), Some((recv_ns, recv_ns + 5)));
            if let Ok(h) = Header::parse(&b) {
                assert!(wire::verify(&b, &h));
                assert_ne!(h.flags & wire::FLAG_ECHO_REPLY, 0);
            }
        }
        let (inv, cor) = (echo.invalid, echo.corrupt);
        let rtts = echo.rtt.len();
        echo.on_reply(&b, recv_ns + 2_000, Some(recv_ns + 1_000));
        replies += 1;
        echo_counted += (echo.invalid - inv) + (echo.corrupt - cor) + (echo.rtt.len() - rtts);
    }
    check_account(&acct, &t, handed);
    // Each reply is invalid, corrupt, a round trip, or a duplicate of one.
    assert!(echo_counted <= replies);
    assert_eq!(echo.rtt.len(), echo.seq.received());
    assert!(echo.seq.received() <= t.count);
    demux(&inp, &t);
});
