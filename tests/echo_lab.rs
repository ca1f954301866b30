//! Round trips through the private lab, checked against the link emulator: echo measures the path's round
//! trip (no Nagle on either end's data socket), and loss on the way back is counted as such, equal to what the
//! link dropped in that direction. Root only (the lab needs CAP_NET_ADMIN); skips loudly elsewhere, fails
//! under CI=true.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use sockbench::cancel::Cancel;
use sockbench::config::{Output, RecvConfig, SendConfig};
use sockbench::driver::receiver::Receiver;
use sockbench::driver::sender::{self, SessionOutput};
use sockbench::lab::{Host, Lab, LabConfig};
use sockbench::link::{Direction, Impairment, LinkCounters, Proto};
use sockbench::report::out::{OutDir, RunInfo};
use sockbench::traffic::{Protocol, Traffic};

use common::lab_possible;

/// One echo session from host A to a receiver on host B; returns it and the link's counts.
fn echo_session(
    proto: Protocol,
    a_to_b: Impairment,
    b_to_a: Impairment,
    traffic: Traffic,
) -> (SessionOutput, LinkCounters) {
    let lab = Lab::up(LabConfig {
        a_to_b,
        b_to_a,
        seed: 7,
        ..LabConfig::default()
    })
    .expect("lab up");
    let listen = SocketAddr::new(lab.addr(Host::B), 0);
    let stop = Cancel::new();
    let s2 = stop.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    let recv = lab.spawn_in(Host::B, move || -> anyhow::Result<()> {
        let r = Receiver::bind(RecvConfig::in_process(proto, listen), s2, true)?;
        let _ = tx.send(r.local_addr());
        r.serve()?;
        Ok(())
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("receiver address");
    let dir = tempfile::tempdir().unwrap();
    let out = OutDir::new(dir.path());
    let cfg = SendConfig {
        protocol: proto,
        peer_name: addr.to_string(),
        target: addr,
        alternatives: vec![addr],
        traffic,
        output: Output {
            dir: dir.path().to_path_buf(),
            label: String::new(),
            trace: false,
        },
        secret: None,
    };
    let send = lab.spawn_in(Host::A, move || {
        sender::run_session(&cfg, &RunInfo::new(), &out, &Cancel::new())
    });
    let o = send.join().unwrap().unwrap().expect("session");
    stop.cancel();
    let _ = recv.join();
    (o, lab.down())
}

fn delay(ms: u64) -> Impairment {
    Impairment {
        delay: Duration::from_millis(ms),
        ..Impairment::default()
    }
}

/// 10 ms each way: the TCP echo round trip is 20 ms (within 5 %), not 35 ms as when the receiver's data
/// socket held each reply back for Nagle's algorithm.
#[test]
fn tcp_echo_round_trip_is_the_paths() {
    if !lab_possible() {
        return;
    }
    let t = Traffic {
        count: 400,
        rate: 200.0,
        echo: true,
        ..Traffic::default()
    };
    let (o, _) = echo_session(Protocol::Tcp, delay(10), delay(10), t);
    let p50 = o.report.latency_p50_us.unwrap();
    assert!(
        (19_000.0..=21_000.0).contains(&p50),
        "TCP echo p50 {p50} µs for a 20 ms round trip"
    );
    assert_eq!(o.report.received, Some(400));
}

/// Replies dropped on the way back are return loss, equal to what the link dropped from B to A; messages
/// dropped on the way there are forward loss; `lost` is both: messages without a reply.
#[test]
fn echo_loss_is_split_by_direction_and_equals_the_links() {
    if !lab_possible() {
        return;
    }
    let lossy = |p: f64| Impairment {
        loss: p,
        ..Impairment::default()
    };
    let t = Traffic {
        count: 2000,
        rate: 2000.0,
        echo: true,
        ..Traffic::default()
    };
    let (o, link) = echo_session(Protocol::Udp, lossy(0.02), lossy(0.04), t);
    let r = &o.report;
    let fwd = link.get(Direction::AtoB, Proto::Udp);
    let back = link.get(Direction::BtoA, Proto::Udp);
    assert!(fwd.dropped > 0 && back.dropped > 0, "{fwd:?} {back:?}");
    assert_eq!(r.echo_forward_lost, Some(fwd.dropped), "forward");
    assert_eq!(r.echo_return_lost, Some(back.dropped), "return");
    assert_eq!(r.lost, Some(fwd.dropped + back.dropped));
    assert_eq!(r.received.unwrap() + r.lost.unwrap(), r.sent);
}
