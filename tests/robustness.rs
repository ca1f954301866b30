//! A running receiver under abuse: garbage on both ports mid-session, truncated frames, peers that vanish,
//! senders killed with SIGKILL, many senders at once, hostile frame lengths, and echo that must never amplify.
//! After every abuse the same receiver must still give exact counts.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use rand::RngCore;
use sockbench::proto::{self as control, Ctl};
use sockbench::traffic::Protocol;
use sockbench::wire;

use common::*;

fn spawn_sender(proto: &str, target: &str, out: &std::path::Path, extra: &[&str]) -> Child {
    let mut cmd = sockbench();
    cmd.args([proto, "send", target, "--out"])
        .arg(out)
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd.spawn().unwrap()
}

/// Every kind of garbage datagram: random bytes, wrong magic, truncated headers, right magic and layout but
/// a session nobody announced, and a header whose length field lies.
fn udp_garbage(addr: SocketAddr) {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut rng = rand::rng();
    for i in 0..200usize {
        let mut b = vec![0u8; (i * 37) % 1500];
        rng.fill_bytes(&mut b);
        let _ = s.send_to(&b, addr);
    }
    let mut wrong_magic = wire::template(1, 64, false);
    wrong_magic[0] ^= 0xff;
    let _ = s.send_to(&wrong_magic, addr);
    let valid = wire::template(rand::random(), 64, false);
    for cut in [0, 1, 4, 12, 20, 47] {
        let _ = s.send_to(&valid[..cut], addr);
    }
    for _ in 0..50 {
        let _ = s.send_to(&wire::template(rand::random(), 64, false), addr);
        let _ = s.send_to(&wire::template(rand::random(), 9000, false), addr);
    }
    let mut liar = wire::template(rand::random(), 64, false);
    liar[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
    let _ = s.send_to(&liar, addr);
}

/// Garbage on the TCP port: random bytes, an HTTP request, a data preamble for no session, a control
/// preamble followed by junk JSON, a lying data frame.
fn tcp_garbage(addr: SocketAddr) {
    let mut rng = rand::rng();
    let mut conns = vec![];
    let mut junk = vec![0u8; 4096];
    rng.fill_bytes(&mut junk);
    let payloads: Vec<Vec<u8>> = vec![
        junk,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        [
            control::data_preamble(rand::random(), None),
            wire::template(7, 64, false),
        ]
        .concat(),
        [
            control::control_preamble().to_vec(),
            b"\0\0\0\x05{{{{{".to_vec(),
        ]
        .concat(),
        [control::control_preamble().to_vec(), b"\0\0\0\x02".to_vec()].concat(),
        b"SKBD".to_vec(),
    ];
    for p in payloads {
        let mut c = TcpStream::connect(addr).unwrap();
        let _ = c.write_all(&p);
        conns.push(c);
    }
    // Each must be closed by the receiver (the half-preamble ones within its 10 s preamble timeout, so
    // they are simply dropped here).
    for mut c in conns.drain(..4) {
        assert!(closed_within(&mut c, Duration::from_secs(5)));
    }
}

fn garbage_mid_session(proto: &'static str) {
    let recv = Recv::start(proto, "127.0.0.1", &[]);
    let out = tempfile::tempdir().unwrap();
    let mut sender = SenderGuard(Some(spawn_sender(
        proto,
        &recv.target(),
        out.path(),
        &["--count", "1500", "--rate", "1000"],
    )));
    std::thread::sleep(Duration::from_millis(300));
    udp_garbage(recv.addr);
    tcp_garbage(recv.addr);
    udp_garbage(recv.addr);
    sender.wait_ok();
    let rows = summary_rows(out.path());
    let r = &rows[0];
    assert_eq!(
        (num(r, "sent"), num(r, "received"), num(r, "lost")),
        (1500, 1500, 0)
    );
    // Strangers' bytes are never charged to (or trusted by) a session they do not belong to.
    assert_eq!(num(r, "invalid"), 0);
    assert_eq!(num(r, "corrupt"), 0);
    assert_eq!(r["complete"], "true");
    exact_session(proto, &recv.target(), 500, &["--rate", "0"]);
    assert!(recv.log_text().contains("closed a connection"));
}

#[test]
fn udp_receiver_survives_garbage_mid_session() {
    garbage_mid_session("udp");
}

#[test]
fn tcp_receiver_survives_garbage_mid_session() {
    garbage_mid_session("tcp");
}

#[test]
fn truncated_tcp_frame_is_counted_invalid() {
    let recv = Recv::start("tcp", "127.0.0.1", &[]);
    let raw = RawSession::open(recv.addr, Protocol::Tcp, traffic(20, 100, false));
    let mut data = raw.tcp.as_ref().unwrap().try_clone().unwrap();
    for seq in 0..10 {
        data.write_all(&raw.message(seq)).unwrap();
    }
    data.write_all(&raw.message(10)[..30]).unwrap();
    let res = raw.finish(10);
    assert_eq!(res.seq.received, 10);
    assert_eq!(res.seq.lost, 0);
    assert_eq!(res.invalid, 1, "the truncated last frame");
    assert!(res.complete);
    exact_session("tcp", &recv.target(), 300, &["--rate", "0"]);
}

#[test]
fn tcp_frame_with_a_lying_length_drops_only_that_session() {
    let recv = Recv::start("tcp", "127.0.0.1", &[]);
    let raw = RawSession::open(recv.addr, Protocol::Tcp, traffic(20, 100, false));
    let mut data = raw.tcp.as_ref().unwrap().try_clone().unwrap();
    data.write_all(&raw.message(0)).unwrap();
    let mut liar = raw.message(1);
    liar[8..12].copy_from_slice(&(1u32 << 30).to_be_bytes());
    data.write_all(&liar).unwrap();
    data.write_all(&vec![0u8; 64 * 1024]).unwrap();
    let res = raw.finish(2);
    assert_eq!(res.seq.received, 1);
    assert!(res.invalid >= 1);
    assert!(!res.complete);
    exact_session("tcp", &recv.target(), 300, &["--rate", "0"]);
}

#[test]
fn udp_session_counts_its_own_peers_bad_datagrams() {
    let recv = Recv::start("udp", "127.0.0.1", &[]);
    let raw = RawSession::open(recv.addr, Protocol::Udp, traffic(20, 100, false));
    let s = raw.udp.as_ref().unwrap();
    for seq in 0..10 {
        s.send(&raw.message(seq)).unwrap();
    }
    s.send(&raw.message(10)[..30]).unwrap(); // truncated
    s.send(&raw.message(11)[..80]).unwrap(); // shorter than announced: length field lies
    s.send(&raw.message(25)).unwrap(); // beyond the announced count
    let mut corrupt = raw.message(12);
    corrupt[70] ^= 1;
    s.send(&corrupt).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    let res = raw.finish(10);
    assert_eq!(res.seq.received, 10);
    assert_eq!(res.seq.lost, 0);
    assert_eq!(res.invalid, 3);
    assert_eq!(res.corrupt, 1);
    exact_session("udp", &recv.target(), 300, &["--rate", "0"]);
}

#[test]
fn control_peers_that_vanish() {
    for proto in [Protocol::Udp, Protocol::Tcp] {
        let name = proto.name();
        let recv = Recv::start(name, "127.0.0.1", &[]);
        // Preamble, then gone.
        let mut c = TcpStream::connect(recv.addr).unwrap();
        c.write_all(&control::control_preamble()).unwrap();
        drop(c);
        // Half a preamble, then gone.
        let mut c = TcpStream::connect(recv.addr).unwrap();
        c.write_all(b"SKB").unwrap();
        drop(c);
        // Hello, then gone.
        let mut conn = open_control(recv.addr);
        conn.send(&hello(proto, rand::random(), traffic(100, 64, false)))
            .unwrap();
        drop(conn);
        // A whole handshake and a few messages, then gone without Done.
        let raw = RawSession::open(recv.addr, proto, traffic(100, 64, false));
        for seq in 0..5 {
            let m = raw.message(seq);
            match (&raw.udp, &raw.tcp) {
                (Some(u), _) => {
                    u.send(&m).unwrap();
                }
                (_, Some(t)) => {
                    (&*t).write_all(&m).unwrap();
                }
                _ => unreachable!(),
            }
        }
        drop(raw);
        recv.wait_log("incomplete", 1, Duration::from_secs(10));
        exact_session(name, &recv.target(), 300, &["--rate", "0"]);
        exact_session(name, &recv.target(), 300, &["--rate", "0"]);
    }
}

fn sigkill_sender_mid_session(proto: &'static str) {
    let recv = Recv::start(proto, "127.0.0.1", &[]);
    let out = tempfile::tempdir().unwrap();
    let mut child = spawn_sender(
        proto,
        &recv.target(),
        out.path(),
        &["--count", "100000", "--rate", "1000"],
    );
    recv.wait_log("session ", 1, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    signal(child.id(), libc::SIGKILL);
    let _ = child.wait();
    let log = recv.wait_log("incomplete", 1, Duration::from_secs(10));
    assert!(log.contains("vanished"), "{log}");
    exact_session(proto, &recv.target(), 500, &["--rate", "0"]);
}

#[test]
fn udp_receiver_survives_a_killed_sender() {
    sigkill_sender_mid_session("udp");
}

#[test]
fn tcp_receiver_survives_a_killed_sender() {
    sigkill_sender_mid_session("tcp");
}

fn concurrent_senders(proto: &'static str) {
    let recv = Recv::start(proto, "127.0.0.1", &[]);
    let dirs: Vec<_> = (0..8).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut senders: Vec<SenderGuard> = dirs
        .iter()
        .map(|d| {
            SenderGuard(Some(spawn_sender(
                proto,
                &recv.target(),
                d.path(),
                &["--count", "800", "--rate", "1000"],
            )))
        })
        .collect();
    for s in &mut senders {
        s.wait_ok();
    }
    let mut run_ids = std::collections::HashSet::new();
    for d in &dirs {
        let rows = summary_rows(d.path());
        let r = &rows[0];
        assert_eq!(
            (num(r, "sent"), num(r, "received"), num(r, "lost")),
            (800, 800, 0)
        );
        assert_eq!(
            num(r, "duplicates") + num(r, "invalid") + num(r, "corrupt"),
            0
        );
        assert_eq!(r["complete"], "true");
        run_ids.insert(r["run_id"].clone());
    }
    assert_eq!(run_ids.len(), 8);
    recv.wait_log(" done: received 800 of 800", 8, Duration::from_secs(10));
}

#[test]
fn udp_many_concurrent_senders() {
    concurrent_senders("udp");
}

#[test]
fn tcp_many_concurrent_senders() {
    concurrent_senders("tcp");
}

#[test]
fn huge_control_frame_length_is_dropped() {
    for proto in ["udp", "tcp"] {
        let recv = Recv::start(proto, "127.0.0.1", &[]);
        let before = recv.rss_kib();
        for len in [u32::MAX, 0x7fff_ffff, (64 << 20) + 1] {
            let mut c = TcpStream::connect(recv.addr).unwrap();
            c.write_all(&control::control_preamble()).unwrap();
            c.write_all(&len.to_be_bytes()).unwrap();
            let _ = c.write_all(&[b'{'; 1024]);
            assert!(
                closed_within(&mut c, Duration::from_secs(5)),
                "{proto}: a {len}-byte frame was not dropped"
            );
        }
        let after = recv.rss_kib();
        assert!(
            after < before + 64 * 1024,
            "{proto}: receiver RSS grew from {before} KiB to {after} KiB"
        );
        exact_session(proto, &recv.target(), 300, &["--rate", "0"]);
    }
}

/// Read every datagram that arrives on `s` within `limit`.
fn replies(s: &UdpSocket, limit: Duration) -> Vec<usize> {
    let mut got = vec![];
    let end = Instant::now() + limit;
    s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut buf = vec![0u8; 65536];
    while Instant::now() < end {
        if let Ok(n) = s.recv(&mut buf) {
            got.push(n);
        }
    }
    got
}

#[test]
fn udp_echo_is_never_an_amplifier_or_reflector() {
    let recv = Recv::start("udp", "127.0.0.1", &[]);
    // No session: a well-formed message for an unknown session gets nothing back.
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    stranger.connect(recv.addr).unwrap();
    stranger
        .send(&wire::template(rand::random(), 64, false))
        .unwrap();
    stranger
        .send(&wire::template(rand::random(), 1400, false))
        .unwrap();
    assert!(replies(&stranger, Duration::from_millis(400)).is_empty());

    // A handshaked echo session: each valid message comes back once, exactly as long as it came.
    let raw = RawSession::open(recv.addr, Protocol::Udp, traffic(20, 200, true));
    let s = raw.udp.as_ref().unwrap();
    for seq in 0..5 {
        s.send(&raw.message(seq)).unwrap();
    }
    let got = replies(s, Duration::from_millis(400));
    assert_eq!(got, vec![200; 5]);
    // Its session id from another socket (a spoofer's stand-in): nothing back to anyone.
    stranger.send(&raw.message(5)).unwrap();
    // Its own socket, but truncated or too short: nothing back.
    s.send(&raw.message(6)[..60]).unwrap();
    s.send(&raw.message(7)[..47]).unwrap();
    assert!(replies(&stranger, Duration::from_millis(300)).is_empty());
    assert!(replies(s, Duration::from_millis(100)).is_empty());
    let res = raw.finish(5);
    assert_eq!(res.seq.received, 5);
    assert_eq!(res.echoed, 5);
}

#[test]
fn tcp_echo_sends_back_exactly_what_came() {
    let recv = Recv::start("tcp", "127.0.0.1", &[]);
    let raw = RawSession::open(recv.addr, Protocol::Tcp, traffic(20, 100, true));
    let mut data = raw.tcp.as_ref().unwrap().try_clone().unwrap();
    for seq in 0..5 {
        data.write_all(&raw.message(seq)).unwrap();
    }
    let mut back = vec![];
    let end = Instant::now() + Duration::from_secs(3);
    let mut buf = [0u8; 4096];
    data.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    while back.len() < 500 && Instant::now() < end {
        if let Ok(n) = data.read(&mut buf) {
            back.extend_from_slice(&buf[..n]);
        }
    }
    assert_eq!(back.len(), 500);
    for (i, m) in back.chunks(100).enumerate() {
        let h = wire::Header::parse(m).unwrap();
        assert_eq!(h.seq, i as u64);
        assert_eq!(h.flags & wire::FLAG_ECHO_REPLY, wire::FLAG_ECHO_REPLY);
    }
    let res = raw.finish(5);
    assert_eq!(res.echoed, 5);
    // After Done nothing more came back than the 5 replies.
    let mut extra = 0;
    while let Ok(n) = data.read(&mut buf) {
        if n == 0 {
            break;
        }
        extra += n;
    }
    assert_eq!(extra, 0);
}

#[test]
fn version_mismatch_reply_on_a_tcp_receiver() {
    let recv = Recv::start("tcp", "127.0.0.1", &[]);
    let mut s = TcpStream::connect(recv.addr).unwrap();
    s.write_all(b"SKBC\x00\x63\x00\x00").unwrap();
    let v = read_raw_frame(&mut s);
    assert_eq!(v["type"], "reject");
    assert!(v["reason"].as_str().unwrap().contains("version 99"), "{v}");
    assert!(closed_within(&mut s, Duration::from_secs(5)));
    let _ = Ctl::End; // the library's own type names the reply
    exact_session("tcp", &recv.target(), 100, &["--rate", "0"]);
}

#[test]
fn a_frame_announced_just_under_the_limit_is_not_buffered() {
    // Before any hello, a stranger announces a frame the size of the general control limit and starts
    // sending it: the receiver must not buffer tens of MiB for a peer that has not even said hello.
    let recv = Recv::start("udp", "127.0.0.1", &[]);
    let before = recv.rss_kib();
    let mut c = TcpStream::connect(recv.addr).unwrap();
    c.write_all(&control::control_preamble()).unwrap();
    c.write_all(&((64u32 << 20) - 1).to_be_bytes()).unwrap();
    c.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let chunk = vec![b' '; 1 << 20];
    let mut pushed = 0;
    for _ in 0..48 {
        if c.write_all(&chunk).is_err() {
            break;
        }
        pushed += 1;
    }
    std::thread::sleep(Duration::from_millis(300));
    let after = recv.rss_kib();
    assert!(
        after < before + 16 * 1024,
        "receiver RSS grew from {before} KiB to {after} KiB after {pushed} MiB of one unfinished frame"
    );
    drop(c);
    exact_session("udp", &recv.target(), 200, &["--rate", "0"]);
}
