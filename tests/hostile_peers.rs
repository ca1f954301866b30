//! Issue 9: a receiver you can leave running on a shared network, and a sender that does not trust it. Each
//! test reproduces one way a hostile peer broke sockbench, on loopback, and checks it holds now.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use sockbench::auth::Secret;
use sockbench::proto::{self, Ctl};
use sockbench::traffic::Protocol;

use common::*;

/// A hello whose own numbers are impossible (a backwards size range) is refused with the reason, and the
/// receiver's one UDP thread, which serves every UDP session, keeps serving.
#[test]
fn a_backwards_size_range_is_refused_and_service_goes_on() {
    for proto in ["udp", "tcp"] {
        let recv = Recv::start(proto, "127.0.0.1", &[]);
        let p = if proto == "udp" {
            Protocol::Udp
        } else {
            Protocol::Tcp
        };
        let mut t = traffic(100, 100, false);
        t.sizes = Some(proto::Sizes::Range { min: 100, max: 99 });
        let mut c = open_control(recv.addr);
        c.send(&hello(p, rand::random(), t)).unwrap();
        match c.recv(Duration::from_secs(5)) {
            Ok(Ctl::Reject { reason }) => assert!(reason.contains("upwards"), "{reason}"),
            other => panic!("{proto}: {other:?}"),
        }
        exact_session(proto, &recv.target(), 500, &["--rate", "0"]);
    }
}

/// 10^15 unpaced messages is beyond any receiver's table: refused at the hello. Within the announced count,
/// sequence numbers jumping ahead can only fill the announced table: the receiver's memory stays within the
/// session's stated worst case.
#[test]
fn a_huge_count_is_refused_and_sequence_jumps_cannot_grow_memory() {
    let recv = Recv::start("udp", "127.0.0.1", &[]);
    let mut huge = traffic(1_000_000_000_000_000, 64, false);
    huge.rate = 0.0;
    let mut c = open_control(recv.addr);
    c.send(&hello(Protocol::Udp, rand::random(), huge)).unwrap();
    match c.recv(Duration::from_secs(5)) {
        Ok(Ctl::Reject { reason }) => assert!(reason.contains("--max-messages"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // The largest session the defaults admit: 2^28 messages (a 32 MiB table at most).
    let count = 1u64 << 28;
    let mut t = traffic(count, 64, false);
    t.rate = 0.0;
    let before = recv.rss_kib();
    let s = RawSession::open(recv.addr, Protocol::Udp, t);
    let udp = s.udp.as_ref().unwrap();
    // Each datagram jumps far ahead (2^30 − 1, beyond the count, then within it).
    let mut seq = 0u64;
    for _ in 0..64 {
        seq = seq.wrapping_add((1 << 30) - 1);
        let _ = udp.send(&s.message(seq % (count * 4)));
    }
    let _ = udp.send(&s.message(count - 1));
    std::thread::sleep(Duration::from_millis(300));
    let grown_mib = recv.rss_kib().saturating_sub(before) / 1024;
    let bound_mib =
        sockbench::accounting::Account::worst_case_bytes(&sockbench::traffic::Traffic {
            count,
            ..Default::default()
        }) >> 20;
    assert!(
        grown_mib <= bound_mib,
        "the receiver grew {grown_mib} MiB; its stated worst case for the session is {bound_mib} MiB"
    );
    assert!(grown_mib <= 80, "grew {grown_mib} MiB");
    let r = s.finish(count);
    assert_eq!(r.seq.received, 1, "only the one in-range number counts");
}

/// A TCP echo sender that never reads its replies: the receiver's echo writes time out, the session ends
/// with the reason, and the receiver serves the next one.
#[test]
fn a_tcp_echo_peer_that_never_reads_is_cut_and_service_goes_on() {
    let recv = Recv::start("tcp", "127.0.0.1", &[]);
    let mut t = traffic(100_000, 65_536, true);
    t.rate = 0.0;
    let mut s = RawSession::open(recv.addr, Protocol::Tcp, t);
    let mut tcp = s.tcp.take().unwrap();
    tcp.set_write_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let started = Instant::now();
    // Write until the receiver stops taking (it is blocked echoing to us, and we never read).
    let mut seq = 0;
    while started.elapsed() < Duration::from_secs(10) {
        if tcp.write_all(&s.message(seq)).is_err() {
            break;
        }
        seq += 1;
    }
    recv.wait_log(
        "stopped reading its echo replies",
        1,
        Duration::from_secs(15),
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    drop(tcp);
    exact_session("tcp", &recv.target(), 300, &["--rate", "0"]);
}

/// Stalled half-hellos from one address take at most their share of the pending places, are refused beyond
/// it at once, and never stop a real session, running or new.
#[test]
fn stalled_half_hellos_do_not_stop_service() {
    let recv = Recv::start("udp", "127.0.0.1", &[]);
    // A real session already running (2 s at 1000 msg/s) while the flood comes.
    let out = tempfile::tempdir().unwrap();
    let mut running = SenderGuard(Some(
        sockbench()
            .args(["udp", "send", &recv.target(), "--count", "2000", "--out"])
            .arg(out.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let half = [proto::control_preamble().to_vec(), vec![0, 0, 0, 200, b'{']].concat();
    let mut stalled = vec![];
    for _ in 0..300 {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&"127.0.0.2:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        if s.connect_timeout(&recv.addr.into(), Duration::from_secs(2))
            .is_ok()
        {
            let mut t: TcpStream = s.into();
            let _ = t.write_all(&half);
            stalled.push(t);
        }
    }
    // A new session from another address is served at once, the flood still there.
    let t0 = Instant::now();
    exact_session("udp", &recv.target(), 200, &["--rate", "0"]);
    assert!(
        t0.elapsed() < Duration::from_secs(8),
        "took {:?}",
        t0.elapsed()
    );
    running.wait_ok();
    let rows = summary_rows(out.path());
    assert_eq!(
        (num(&rows[0], "sent"), num(&rows[0], "received")),
        (2000, 2000)
    );
    recv.wait_log(
        "too many connections have not said hello yet",
        1,
        Duration::from_secs(2),
    );
    drop(stalled);
}

/// One byte every 1.5 s never completes a hello; the receiver drops the connection 10 s after it connected,
/// whatever the byte rate (the deadline is total, not per read).
#[test]
fn a_dribbled_hello_is_dropped_at_the_handshake_deadline() {
    let recv = Recv::start("tcp", "127.0.0.1", &[]);
    let mut s = TcpStream::connect(recv.addr).unwrap();
    let bytes = [
        proto::control_preamble().to_vec(),
        proto::encode(&hello(Protocol::Tcp, 1, traffic(10, 64, false))),
    ]
    .concat();
    let t0 = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let mut closed_at = None;
    for b in &bytes[..bytes.len() - 1] {
        if s.write_all(std::slice::from_ref(b)).is_err() {
            closed_at = Some(t0.elapsed());
            break;
        }
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(0) => {
                closed_at = Some(t0.elapsed());
                break;
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            _ => {
                closed_at = Some(t0.elapsed());
                break;
            }
        }
        assert!(t0.elapsed() < Duration::from_secs(20));
    }
    let at = closed_at.expect("the receiver never dropped the dribbling connection");
    assert!(
        at >= Duration::from_secs(9) && at < Duration::from_secs(13),
        "dropped after {at:?}"
    );
    recv.wait_log("no whole hello within 10s", 1, Duration::from_secs(2));
}

/// A sender that goes silent after Ready (no data, no Done, no FIN) is cut at the idle timeout, with the
/// reason in its results, instead of holding a session place until --max-duration.
#[test]
fn a_silent_sender_is_dropped_at_the_idle_timeout() {
    let recv = Recv::start("udp", "127.0.0.1", &["--idle-timeout", "2s"]);
    let mut s = RawSession::open(recv.addr, Protocol::Udp, traffic(1000, 64, false));
    let t0 = Instant::now();
    match s.conn.recv(Duration::from_secs(10)) {
        Ok(Ctl::Results(r)) => {
            let note = r.note.unwrap_or_default();
            assert!(note.contains("went silent for 2s"), "{note}");
        }
        other => panic!("{other:?}"),
    }
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1800) && took < Duration::from_secs(6),
        "{took:?}"
    );
}

fn key_file(dir: &std::path::Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

/// With a key: datagrams from the session's own address and port but without a valid MAC (what an on-path
/// forger can send) are counted as unauthenticated and change no figure; a TCP data connection that names the
/// session without its MAC is refused and the real one takes the session.
#[test]
fn with_a_key_forgeries_are_counted_and_a_hijack_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path(), "k", "a shared secret of enough bytes\n");
    let secret = Secret::read(&key).unwrap();
    let k = key.to_str().unwrap();
    let recv = Recv::start("udp", "127.0.0.1", &["--key-file", k]);
    let s = RawSession::open_with(
        recv.addr,
        Protocol::Udp,
        traffic(100, 80, false),
        Some(&secret),
    );
    let udp = s.udp.as_ref().unwrap();
    for seq in 0..100 {
        udp.send(&s.message(seq)).unwrap();
        // The forger: same address and port, the session id and a valid CRC, but not the key.
        let mut forged = s.message(seq);
        let n = forged.len();
        forged[n - 16..].copy_from_slice(&[0x5a; 16]);
        udp.send(&forged).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    let r = s.finish(100);
    assert_eq!(
        (r.seq.received, r.seq.duplicates, r.unauthenticated),
        (100, 0, 100)
    );

    let trecv = Recv::start("tcp", "127.0.0.1", &["--key-file", k]);
    // The hijacker connects first, while the session waits for its data connection, naming the session (as
    // an on-path attacker reads it) but without the key.
    let hijacked = std::sync::Mutex::new(None);
    let mut s = RawSession::open_full(
        trecv.addr,
        Protocol::Tcp,
        traffic(50, 80, false),
        Some(&secret),
        &|session| {
            let mut h = TcpStream::connect(trecv.addr).unwrap();
            h.write_all(&proto::data_preamble(session, Some([0u8; 16])))
                .unwrap();
            *hijacked.lock().unwrap() = Some(h);
        },
    );
    let mut hijack = hijacked.lock().unwrap().take().unwrap();
    assert!(
        closed_within(&mut hijack, Duration::from_secs(5)),
        "the hijack was not closed"
    );
    let mut tcp = s.tcp.take().unwrap();
    for seq in 0..50 {
        tcp.write_all(&s.message(seq)).unwrap();
    }
    s.tcp = Some(tcp);
    let r = s.finish(50);
    assert_eq!((r.seq.received, r.seq.lost), (50, 0));
}

/// The sender does not take the receiver's word: a receiver that claims more than was sent gets its row
/// marked incomplete, and the run exits 1 saying so.
#[test]
fn a_lying_receiver_is_caught_by_the_sender() {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    // Takes the datagrams (so the sender's sends all succeed); nobody reads them.
    let _sink = std::net::UdpSocket::bind(addr).unwrap();
    let liar = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        let mut c = CtlConn::new(s);
        let mut pre = [0u8; 8];
        c.stream_mut().read_exact(&mut pre).unwrap();
        loop {
            match c.recv(Duration::from_secs(10)) {
                Ok(Ctl::Hello(_)) => c
                    .send(&Ctl::Accept(proto::Accept {
                        version: proto::VERSION,
                        boot_id: String::new(),
                        software: "liar".into(),
                        nonce: None,
                        proof: None,
                    }))
                    .unwrap(),
                Ok(Ctl::TimeReq { t1 }) => c.send(&Ctl::TimeResp { t1, t2: t1, t3: t1 }).unwrap(),
                Ok(Ctl::Start(_)) => c.send(&Ctl::Ready).unwrap(),
                Ok(Ctl::Done(d)) => {
                    let lie = proto::Results {
                        complete: true,
                        seq: proto::SeqCounts {
                            sent: d.sent,
                            received: d.sent * 5,
                            ..Default::default()
                        },
                        ..Default::default()
                    };
                    c.send(&Ctl::Results(Box::new(lie))).unwrap();
                    c.send(&Ctl::End).unwrap();
                    return;
                }
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        }
    });
    let out = tempfile::tempdir().unwrap();
    let o = send(
        "udp",
        &addr.to_string(),
        out.path(),
        &["--count", "100", "--rate", "0"],
    );
    liar.join().unwrap();
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("failed this sender's checks") && err.contains("500 received of 100"),
        "{err}"
    );
    let rows = summary_rows(out.path());
    assert_eq!(rows[0]["complete"], "false");
    assert_eq!(num(&rows[0], "sent"), 100, "sent is the sender's own count");
}

/// SIGKILL at any moment leaves only whole rows (and the header) in every CSV the sender writes.
#[test]
fn sigkill_at_random_moments_leaves_only_whole_csv_rows() {
    let recv = Recv::start("udp", "127.0.0.1", &[]);
    let out = tempfile::tempdir().unwrap();
    for (i, ms) in [150u64, 420, 700, 1100, 1500, 1900].into_iter().enumerate() {
        let mut child = sockbench()
            .args([
                "udp",
                "send",
                &recv.target(),
                "--count",
                "3000",
                "--rate",
                "2000",
                "--per-message",
            ])
            .args(["--label", &format!("kill{i}"), "--out"])
            .arg(out.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(ms));
        signal(child.id(), libc::SIGKILL);
        let _ = wait_bounded(&mut child, Duration::from_secs(5));
    }
    for entry in std::fs::read_dir(out.path()).unwrap() {
        let p = entry.unwrap().path();
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(
            text.is_empty() || text.ends_with('\n'),
            "{} ends inside a row",
            p.display()
        );
        let mut lines = text.lines();
        let Some(header) = lines.next() else { continue };
        let width = header.split(',').count();
        for l in lines {
            assert_eq!(
                l.split(',').count(),
                width,
                "{}: torn row {l:?}",
                p.display()
            );
        }
        assert!(
            !p.to_string_lossy().ends_with(".tmp"),
            "a temporary file was left: {}",
            p.display()
        );
    }
}
