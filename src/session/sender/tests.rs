//! The sender's control logic on a virtual clock.

use super::*;
use crate::proto::{encode, FrameDecoder, PreambleDecoder};

fn cfg(protocol: Protocol) -> SenderConfig {
    let mut c = SenderConfig::new(protocol, 7, Traffic::default());
    c.boot_id = "host-a".into();
    c
}

#[derive(Debug, Default)]
struct Seen {
    sent: Vec<Ctl>,
    open: usize,
    connects: Vec<u32>,
    begin: usize,
    stops: usize,
    rows: Vec<Row>,
    failed: Option<SetupError>,
    finished: Option<Outcome>,
}

/// Decodes what the session wrote (the first write carries the preamble).
struct Peer {
    pre: Option<PreambleDecoder>,
    dec: FrameDecoder,
}

impl Peer {
    fn new() -> Peer {
        Peer {
            pre: Some(PreambleDecoder::default()),
            dec: FrameDecoder::new(proto::MAX_FRAME),
        }
    }
    fn drain(&mut self, s: &mut SenderSession) -> Seen {
        let mut seen = Seen::default();
        while let Some(a) = s.poll_action() {
            match a {
                Action::Write(mut b) => {
                    if let Some(mut p) = self.pre.take() {
                        let (_, used) = p.push(&b).unwrap().unwrap();
                        b.drain(..used);
                    }
                    self.dec.push(&b).unwrap();
                    while let Some(m) = self.dec.next_message().unwrap() {
                        seen.sent.push(m);
                    }
                }
                Action::OpenData => seen.open += 1,
                Action::ConnectData { attempt } => seen.connects.push(attempt),
                Action::BeginSending => seen.begin += 1,
                Action::StopSending => seen.stops += 1,
                Action::Rows(r) => seen.rows.extend(r),
                Action::Failed(e) => seen.failed = Some(e),
                Action::Finished(o) => seen.finished = Some(*o),
            }
        }
        seen
    }
}

fn accept() -> Vec<u8> {
    encode(&Ctl::Accept(proto::Accept {
        version: proto::VERSION,
        boot_id: "host-b".into(),
        software: "x".into(),
        nonce: None,
        proof: None,
    }))
}

/// Brings a session through the clock exchanges (receiver clock 1 ms ahead, 100 µs each way).
fn to_open_data(s: &mut SenderSession, p: &mut Peer, t0: Now) {
    let seen = p.drain(s);
    assert!(matches!(&seen.sent[..], [Ctl::Hello(h)] if h.session == 7));
    s.on_bytes(&accept(), t0);
    for i in 0..CLOCK_EXCHANGES {
        let seen = p.drain(s);
        let [Ctl::TimeReq { t1 }] = seen.sent[..] else {
            panic!("{seen:?}")
        };
        let back = Now {
            mono: t0.mono,
            wall_ns: t1 + 200_000,
        };
        let rtt_extra = if i == 3 { 0 } else { 50_000 };
        s.on_bytes(
            &encode(&Ctl::TimeResp {
                t1,
                t2: t1 + 1_100_000,
                t3: t1 + 1_100_000,
            }),
            Now {
                wall_ns: back.wall_ns + rtt_extra,
                ..back
            },
        );
    }
}

#[test]
fn udp_session_from_hello_to_results() {
    let t0 = Now::fixed();
    let mut s = SenderSession::new(cfg(Protocol::Udp), t0);
    let mut p = Peer::new();
    to_open_data(&mut s, &mut p, t0);
    assert_eq!(p.drain(&mut s).open, 1);
    // The exchange with the smallest round trip (200 µs) gives the offset: 1.1 ms − 0.1 ms. The bound is half
    // that round trip plus the spread of the exchanges used (those within 50 µs of the best: 25 µs off).
    assert_eq!(
        (s.clock().offset_ns, s.clock().error_ns),
        (1_000_000, 125_000)
    );
    s.on_data_opened(Some(4000));
    let seen = p.drain(&mut s);
    let [Ctl::Start(st)] = &seen.sent[..] else {
        panic!("{seen:?}")
    };
    assert_eq!(st.udp_source_port, Some(4000));
    assert_eq!(
        st.linger_ns, 500_000_000,
        "4 × the largest round trip, at least 500 ms"
    );
    assert!(seen.connects.is_empty());
    s.on_bytes(&encode(&Ctl::Ready), t0);
    assert_eq!(p.drain(&mut s).begin, 1);
    // The send loop bounds itself; the session's only deadline now is the next clock exchange, four a
    // second while the clock line spans under 4 s (the first a tick after Ready: set-up just made eight).
    let tick = t0.mono + CLOCK_INTERVAL / 4;
    assert_eq!(s.next_deadline(), Some(tick));
    s.on_timeout(t0);
    assert!(p.drain(&mut s).sent.is_empty(), "nothing due yet");
    let t_tick = t0.after(CLOCK_INTERVAL / 4);
    s.on_timeout(t_tick);
    assert!(matches!(&p.drain(&mut s).sent[..], [Ctl::TimeReq { .. }]));
    assert_eq!(s.next_deadline(), Some(tick + CLOCK_INTERVAL / 4));
    let t1 = t0.after(Duration::from_secs(10));
    s.on_send_finished(
        SendStats {
            sent: 10,
            ..Default::default()
        },
        t1,
    );
    let seen = p.drain(&mut s);
    assert!(matches!(&seen.sent[..], [Ctl::Done(d)] if d.sent == 10 && d.complete));
    s.on_timeout(t1);
    assert!(
        p.drain(&mut s).sent.is_empty(),
        "no clock exchange after Done"
    );
    assert_eq!(
        s.next_deadline(),
        Some(t1.mono + Duration::from_millis(500) + Duration::from_secs(30))
    );
    let results = proto::Results {
        complete: true,
        seq: proto::SeqCounts {
            sent: 10,
            received: 10,
            ..Default::default()
        },
        ..Default::default()
    };
    s.on_bytes(
        &[
            encode(&Ctl::Results(Box::new(results))),
            encode(&Ctl::Messages {
                base_ns: 0,
                rows: vec![proto::MessageRow(0, 1, 2, 3, proto::Status::Ok)],
            }),
            encode(&Ctl::End),
        ]
        .concat(),
        t1,
    );
    let seen = p.drain(&mut s);
    assert_eq!(seen.rows.len(), 1);
    let o = seen.finished.expect("finished");
    assert_eq!(o.send.sent, 10);
    assert_eq!(o.results.unwrap().seq.received, 10);
    assert_eq!(o.note, None);
    assert!(s.is_over());
}

#[test]
fn refusals_and_strangers_say_why() {
    let t0 = Now::fixed();
    let mut s = SenderSession::new(cfg(Protocol::Udp), t0);
    let mut p = Peer::new();
    p.drain(&mut s);
    s.on_bytes(
        &encode(&Ctl::Reject {
            reason: "busy".into(),
        }),
        t0,
    );
    assert_eq!(
        p.drain(&mut s).failed,
        Some(SetupError::Refused("busy".into()))
    );
    let mut s = SenderSession::new(cfg(Protocol::Udp), t0);
    s.on_bytes(b"HTTP/1.1 400 Bad Request\r\n", t0);
    assert!(matches!(
        Peer::new().drain(&mut s).failed,
        Some(SetupError::NotAReceiver(_))
    ));
    // Silence: the hello gets 10 s.
    let mut s = SenderSession::new(cfg(Protocol::Udp), t0);
    s.on_timeout(t0.after(Duration::from_millis(9_999)));
    assert!(!s.is_over());
    s.on_timeout(t0.after(Duration::from_secs(10)));
    let mut p = Peer::new();
    assert!(
        matches!(p.drain(&mut s).failed, Some(SetupError::NotAReceiver(w)) if w.contains("within 10s"))
    );
}

#[test]
fn tcp_data_connections_are_retried_then_given_up() {
    let t0 = Now::fixed();
    let mut s = SenderSession::new(cfg(Protocol::Tcp), t0);
    let mut p = Peer::new();
    to_open_data(&mut s, &mut p, t0);
    p.drain(&mut s);
    s.on_data_opened(None);
    assert_eq!(p.drain(&mut s).connects, vec![1]);
    s.on_data_refused();
    assert_eq!(p.drain(&mut s).connects, vec![2]);
    for _ in 2..DATA_CONNECT_TRIES {
        s.on_data_refused();
    }
    p.drain(&mut s);
    s.on_data_refused();
    assert!(
        matches!(p.drain(&mut s).failed, Some(SetupError::Failed(w)) if w.contains("32 data connections"))
    );
}

#[test]
fn a_receiver_that_cuts_or_vanishes_stops_the_send_loop() {
    let t0 = Now::fixed();
    let mut s = SenderSession::new(cfg(Protocol::Udp), t0);
    let mut p = Peer::new();
    to_open_data(&mut s, &mut p, t0);
    s.on_data_opened(Some(1));
    s.on_bytes(&encode(&Ctl::Ready), t0);
    p.drain(&mut s);
    s.on_bytes(
        &encode(&Ctl::Abort {
            reason: "max\nduration".into(),
        }),
        t0,
    );
    assert_eq!(p.drain(&mut s).stops, 1);
    s.on_closed("reset", t0);
    assert_eq!(p.drain(&mut s).stops, 0, "asked once");
    s.on_send_finished(
        SendStats {
            sent: 3,
            cut_short: Some("interrupted".into()),
            ..Default::default()
        },
        t0,
    );
    p.drain(&mut s);
    s.on_closed("reset", t0);
    let o = p.drain(&mut s).finished.expect("finished");
    assert!(o.results.is_none());
    assert_eq!(
        o.note.as_deref(),
        Some("the receiver aborted: max duration")
    );
    assert_eq!(o.send.sent, 3);
}

#[test]
fn silent_results_end_at_the_linger_plus_grace() {
    let t0 = Now::fixed();
    let mut s = SenderSession::new(cfg(Protocol::Udp), t0);
    let mut p = Peer::new();
    to_open_data(&mut s, &mut p, t0);
    s.on_data_opened(Some(1));
    s.on_bytes(&encode(&Ctl::Ready), t0);
    s.on_send_finished(SendStats::default(), t0);
    p.drain(&mut s);
    s.on_timeout(t0.after(Duration::from_millis(30_499)));
    assert!(!s.is_over());
    s.on_timeout(t0.after(Duration::from_millis(30_500)));
    let o = p.drain(&mut s).finished.expect("finished");
    assert_eq!(
        o.note.as_deref(),
        Some("the receiver did not send its results in time")
    );
}

/// A receiver that cuts the session sends its results and End while the send loop still runs: the session
/// ends as soon as the loop does, without waiting out the linger for an End already received.
#[test]
fn an_end_before_the_send_loop_finished_is_remembered() {
    let t0 = Now::fixed();
    let mut s = SenderSession::new(cfg(Protocol::Udp), t0);
    let mut p = Peer::new();
    to_open_data(&mut s, &mut p, t0);
    s.on_data_opened(Some(1));
    s.on_bytes(&encode(&Ctl::Ready), t0);
    p.drain(&mut s);
    let cut = proto::Results {
        note: Some("the session reached the receiver's --max-duration".into()),
        seq: proto::SeqCounts {
            sent: 3,
            received: 3,
            next_expected: 3,
            ..Default::default()
        },
        ..Default::default()
    };
    s.on_bytes(
        &[encode(&Ctl::Results(Box::new(cut))), encode(&Ctl::End)].concat(),
        t0,
    );
    assert_eq!(p.drain(&mut s).stops, 1);
    s.on_send_finished(
        SendStats {
            sent: 5,
            ..Default::default()
        },
        t0,
    );
    let o = p.drain(&mut s).finished.expect("finished at once");
    assert_eq!(
        o.note.as_deref(),
        Some("the session reached the receiver's --max-duration")
    );
    assert_eq!(
        o.suspect, None,
        "a cut receiver's figures still hold: {:?}",
        o.suspect
    );
}
