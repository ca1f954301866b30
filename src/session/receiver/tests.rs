//! The receiver's control logic on a virtual clock: every deadline is reached by moving `now`, never by
//! sleeping.

use super::*;
use crate::proto::{control_preamble, data_preamble, encode};
use crate::wire;

fn cfg(protocol: Protocol) -> ConnConfig {
    ConnConfig::new(protocol, Caps::default())
}

fn hello(transport: proto::Transport, traffic: &Traffic) -> Ctl {
    Ctl::Hello(proto::Hello {
        version: proto::VERSION,
        transport,
        session: 42,
        run_id: "run".into(),
        started_utc: "t".into(),
        label: "lab\nel".into(),
        traffic: translate::traffic_spec(traffic),
        boot_id: "b".into(),
        software: "test".into(),
        trace: false,
        nonce: None,
    })
}

/// Everything the connection asked for, with written frames decoded.
#[derive(Default)]
struct Seen {
    sent: Vec<Ctl>,
    admits: Vec<Admission>,
    starts: Vec<(Box<Account>, Option<u16>)>,
    stops: Vec<(Option<u64>, Duration)>,
    reports: Vec<Report>,
    data: Vec<(u64, Vec<u8>)>,
    load: Vec<(u64, bool)>,
    logs: Vec<String>,
    closed: bool,
}

fn drain(c: &mut ReceiverConn) -> Seen {
    let mut s = Seen::default();
    let mut dec = FrameDecoder::new(proto::MAX_FRAME);
    while let Some(a) = c.poll_action() {
        match a {
            Action::Write(b) => {
                dec.push(&b).unwrap();
                while let Some(m) = dec.next_message().unwrap() {
                    s.sent.push(m);
                }
            }
            Action::Admit(a) => s.admits.push(*a),
            Action::StartData {
                account,
                udp_source_port,
            } => s.starts.push((account, udp_source_port)),
            Action::StopData { sent, linger } => s.stops.push((sent, linger)),
            Action::Report(r) => s.reports.push(*r),
            Action::DataConnection {
                session, leftover, ..
            } => s.data.push((session, leftover)),
            Action::LoadConnection { session, down, .. } => s.load.push((session, down)),
            Action::Log(l) => s.logs.push(l),
            Action::Close => s.closed = true,
        }
    }
    s
}

fn start_msg(linger_ms: u64) -> Ctl {
    Ctl::Start(proto::Start {
        clock: proto::ClockEstimate {
            offset_ns: 0,
            ref_ns: 0,
            skew_ppb: 0,
            error_ns: 0,
            min_rtt_ns: 0,
            max_rtt_ns: 0,
            same_host: true,
        },
        udp_source_port: Some(4000),
        linger_ns: linger_ms * 1_000_000,
    })
}

/// A UDP session brought to the measured phase at `t0`; returns the connection and its account.
fn running(t0: Now, traffic: &Traffic) -> (ReceiverConn, Box<Account>) {
    let mut c = ReceiverConn::new(cfg(Protocol::Udp), t0);
    let bytes = [
        control_preamble().to_vec(),
        encode(&hello(proto::Transport::Udp, traffic)),
    ]
    .concat();
    c.on_bytes(&bytes, t0);
    let s = drain(&mut c);
    assert_eq!(s.admits.len(), 1);
    assert_eq!(
        s.admits[0].label, "lab el",
        "a peer's control characters never reach a CSV cell"
    );
    c.on_admitted(Ok(()), t0);
    assert!(matches!(drain(&mut c).sent[..], [Ctl::Accept(_)]));
    c.on_bytes(&encode(&Ctl::TimeReq { t1: 5 }), t0);
    match &drain(&mut c).sent[..] {
        [Ctl::TimeResp { t1: 5, t2, t3 }] => assert_eq!((*t2, *t3), (t0.wall_ns, t0.wall_ns)),
        other => panic!("{other:?}"),
    }
    c.on_bytes(&encode(&start_msg(500)), t0);
    let mut s = drain(&mut c);
    let (account, port) = s.starts.pop().expect("data started");
    assert_eq!(port, Some(4000));
    c.on_data_ready(t0);
    assert!(matches!(drain(&mut c).sent[..], [Ctl::Ready]));
    (c, account)
}

fn feed(account: &mut Account, seqs: &[u64]) {
    for &seq in seqs {
        let mut m = wire::template(42, 64, false);
        wire::stamp(&mut m, seq, 1_000, 1_000);
        let h = wire::Header::parse(&m).unwrap();
        account.on_message(&m, &h, 2_000);
    }
}

#[test]
fn a_whole_session_ends_with_results_rows_and_end() {
    let t0 = Now::fixed();
    let traffic = Traffic {
        count: 4,
        per_message: true,
        ..Traffic::default()
    };
    let (mut c, mut account) = running(t0, &traffic);
    feed(&mut account, &[0, 2, 1, 1]);
    let t1 = t0.after(Duration::from_secs(1));
    c.on_bytes(
        &encode(&Ctl::Done(proto::Done {
            sent: 4,
            send_errors: 0,
            complete: true,
        })),
        t1,
    );
    let s = drain(&mut c);
    assert_eq!(s.stops, vec![(Some(4), Duration::from_millis(500))]);
    assert_eq!(
        c.next_deadline(),
        Some(t1.mono + Duration::from_millis(500) + Duration::from_secs(30))
    );
    c.on_data_finished(account, None);
    let s = drain(&mut c);
    assert!(s.closed);
    let Ctl::Results(r) = &s.sent[0] else {
        panic!("{:?}", s.sent)
    };
    assert!(r.complete);
    assert_eq!(
        (
            r.seq.sent,
            r.seq.received,
            r.seq.lost,
            r.seq.duplicates,
            r.seq.reordered
        ),
        (4, 3, 1, 1, 1)
    );
    assert_eq!(r.lost_runs, vec![(3, 1)]);
    let Ctl::Messages { rows, .. } = &s.sent[1] else {
        panic!("{:?}", s.sent)
    };
    assert_eq!(rows.len(), 4);
    assert_eq!(s.sent[2], Ctl::End);
    assert_eq!(s.reports.len(), 1);
    assert_eq!(s.reports[0].measured.seq.received, 3);
}

/// One byte every 9.9 s never resets the clock: the hello deadline is 10 s from accept, in total.
#[test]
fn a_dribbled_hello_is_dropped_at_its_total_deadline() {
    let t0 = Now::fixed();
    let mut c = ReceiverConn::new(cfg(Protocol::Tcp), t0);
    let bytes = [
        control_preamble().to_vec(),
        encode(&hello(proto::Transport::Tcp, &Traffic::default())),
    ]
    .concat();
    for (i, b) in bytes.iter().enumerate().take(3) {
        let t = t0.after(Duration::from_millis(9_900) * i as u32 / 3);
        c.on_bytes(std::slice::from_ref(b), t);
        c.on_timeout(t);
        assert!(!c.is_closed());
    }
    assert_eq!(c.next_deadline(), Some(t0.mono + Duration::from_secs(10)));
    c.on_timeout(t0.after(Duration::from_millis(9_999)));
    assert!(!c.is_closed());
    c.on_timeout(t0.after(Duration::from_secs(10)));
    let s = drain(&mut c);
    assert!(s.closed && s.admits.is_empty());
    assert!(
        s.logs
            .iter()
            .any(|l| l.contains("no whole hello within 10s")),
        "{:?}",
        s.logs
    );
    // Fast dribbling that never completes a frame is dropped at the same moment.
    let mut c = ReceiverConn::new(cfg(Protocol::Tcp), t0);
    for i in 0..bytes.len() - 1 {
        c.on_bytes(&bytes[i..i + 1], t0.after(Duration::from_millis(i as u64)));
    }
    c.on_timeout(t0.after(Duration::from_secs(10)));
    assert!(drain(&mut c).closed);
}

#[test]
fn hostile_hellos_are_refused_with_a_reason() {
    let t0 = Now::fixed();
    let refused = |traffic: proto::TrafficSpec, transport: proto::Transport| {
        let mut c = ReceiverConn::new(cfg(Protocol::Udp), t0);
        let Ctl::Hello(mut h) = hello(transport, &Traffic::default()) else {
            unreachable!()
        };
        h.traffic = traffic;
        c.on_bytes(
            &[control_preamble().to_vec(), encode(&Ctl::Hello(h))].concat(),
            t0,
        );
        let s = drain(&mut c);
        assert!(s.closed && s.admits.is_empty());
        match &s.sent[..] {
            [Ctl::Reject { reason }] => reason.clone(),
            other => panic!("{other:?}"),
        }
    };
    let mut backwards = translate::traffic_spec(&Traffic::default());
    backwards.size = 100;
    backwards.sizes = Some(proto::Sizes::Range { min: 100, max: 99 });
    assert!(refused(backwards, proto::Transport::Udp).contains("upwards"));
    let mut slow = translate::traffic_spec(&Traffic::default());
    slow.rate = 1e-16;
    slow.count = 1_000_000;
    assert!(refused(slow, proto::Transport::Udp).contains("rate"));
    let ok = translate::traffic_spec(&Traffic::default());
    assert!(refused(ok, proto::Transport::Tcp).contains("this receiver serves udp"));
}

#[test]
fn another_version_is_refused_naming_both() {
    let t0 = Now::fixed();
    let mut c = ReceiverConn::new(cfg(Protocol::Udp), t0);
    let mut pre = control_preamble();
    pre[4..6].copy_from_slice(&1u16.to_be_bytes());
    c.on_bytes(&pre, t0);
    let s = drain(&mut c);
    match &s.sent[..] {
        [Ctl::Reject { reason }] => {
            assert!(
                reason.contains("version 1") && reason.contains("version 2"),
                "{reason}"
            )
        }
        other => panic!("{other:?}"),
    }
    assert!(s.closed);
}

#[test]
fn data_and_garbage_connections() {
    let t0 = Now::fixed();
    let mut c = ReceiverConn::new(cfg(Protocol::Tcp), t0);
    c.on_bytes(&[data_preamble(9, None), b"xy".to_vec()].concat(), t0);
    let s = drain(&mut c);
    assert_eq!(s.data, vec![(9, b"xy".to_vec())]);
    assert!(c.is_closed() && c.next_deadline().is_none());
    // A load connection goes to its session's load, not taken for the data.
    let mut c = ReceiverConn::new(cfg(Protocol::Udp), t0);
    c.on_bytes(&crate::proto::load_preamble(9, true, None), t0);
    let s = drain(&mut c);
    assert_eq!((s.load, s.data.len()), (vec![(9, true)], 0));
    assert!(c.is_closed());
    let mut c = ReceiverConn::new(cfg(Protocol::Tcp), t0);
    c.on_bytes(b"GET / HTTP/1.0\r\n\r\n", t0);
    let s = drain(&mut c);
    assert!(s.closed && s.sent.is_empty());
    assert!(s.logs[0].contains("not a sockbench peer"));
}

#[test]
fn no_room_is_a_reject_and_a_stalled_setup_an_abort() {
    let t0 = Now::fixed();
    let bytes = [
        control_preamble().to_vec(),
        encode(&hello(proto::Transport::Udp, &Traffic::default())),
    ]
    .concat();
    let mut c = ReceiverConn::new(cfg(Protocol::Udp), t0);
    c.on_bytes(&bytes, t0);
    drain(&mut c);
    c.on_admitted(Err("busy: 64 sessions already running".into()), t0);
    let s = drain(&mut c);
    assert!(matches!(&s.sent[..], [Ctl::Reject { reason }] if reason.starts_with("busy")));
    // Admitted, then the sender never sends Start: dropped 30 s after it connected.
    let mut c = ReceiverConn::new(cfg(Protocol::Udp), t0);
    c.on_bytes(&bytes, t0);
    c.on_admitted(Ok(()), t0);
    drain(&mut c);
    c.on_timeout(t0.after(Duration::from_secs(29)));
    assert!(!c.is_closed());
    c.on_timeout(t0.after(Duration::from_secs(30)));
    let s = drain(&mut c);
    assert!(s.closed);
    assert!(matches!(&s.sent[..], [Ctl::Abort { .. }]));
}

#[test]
fn max_duration_cuts_a_session_and_keeps_what_was_measured() {
    let t0 = Now::fixed();
    let caps = Caps {
        max_duration: Duration::from_secs(100),
        ..Caps::default()
    };
    let mut c = ReceiverConn::new(ConnConfig::new(Protocol::Udp, caps), t0);
    let bytes = [
        control_preamble().to_vec(),
        encode(&hello(proto::Transport::Udp, &Traffic::default())),
    ]
    .concat();
    c.on_bytes(&bytes, t0);
    c.on_admitted(Ok(()), t0);
    c.on_bytes(&encode(&start_msg(500)), t0);
    let mut account = drain(&mut c).starts.pop().unwrap().0;
    c.on_data_ready(t0);
    feed(&mut account, &[0, 1]);
    // Data keeps coming every 10 s: never idle, cut at the max duration.
    for s in (10..100).step_by(10) {
        let t = t0.after(Duration::from_secs(s));
        c.on_data_activity(t);
        c.on_timeout(t);
    }
    assert!(drain(&mut c).stops.is_empty());
    let max_end = t0.after(Duration::from_secs(100));
    assert_eq!(c.next_deadline(), Some(max_end.mono));
    c.on_timeout(max_end);
    let s = drain(&mut c);
    assert_eq!(s.stops, vec![(None, Duration::ZERO)]);
    c.on_data_finished(account, None);
    let s = drain(&mut c);
    let Ctl::Results(r) = &s.sent[0] else {
        panic!()
    };
    assert!(!r.complete);
    assert_eq!(
        r.note.as_deref(),
        Some("the session reached the receiver's --max-duration")
    );
    assert_eq!(r.seq.received, 2);
}

/// A sender that vanishes without a FIN (no data, no control message) is dropped at the idle timeout, not
/// held until --max-duration (an hour by default).
#[test]
fn a_silent_sender_is_dropped_at_the_idle_timeout() {
    let t0 = Now::fixed();
    let (mut c, account) = running(t0, &Traffic::default());
    c.on_data_activity(t0.after(Duration::from_secs(5)));
    assert_eq!(c.next_deadline(), Some(t0.mono + Duration::from_secs(35)));
    c.on_timeout(t0.after(Duration::from_millis(34_999)));
    assert!(drain(&mut c).stops.is_empty());
    c.on_timeout(t0.after(Duration::from_secs(35)));
    assert_eq!(drain(&mut c).stops, vec![(None, Duration::ZERO)]);
    c.on_data_finished(account, None);
    let s = drain(&mut c);
    assert!(matches!(&s.sent[0], Ctl::Results(r)
        if r.note.as_deref() == Some("the sender went silent for 30s (no data, no control message)")));
    // A slow sender (one message per 20 s) gets four gaps of silence, not 30 s.
    let slow = Traffic {
        rate: 0.05,
        count: 10,
        ..Traffic::default()
    };
    let (c, _) = running(t0, &slow);
    assert_eq!(c.next_deadline(), Some(t0.mono + Duration::from_secs(80)));
}

#[test]
fn a_vanished_sender_or_ctrl_c_ends_the_session_with_a_note() {
    let t0 = Now::fixed();
    let (mut c, account) = running(t0, &Traffic::default());
    c.on_closed("connection reset", t0);
    assert_eq!(drain(&mut c).stops, vec![(None, Duration::ZERO)]);
    c.on_data_finished(account, None);
    let s = drain(&mut c);
    let Ctl::Results(r) = &s.sent[0] else {
        panic!()
    };
    assert_eq!(
        r.note.as_deref(),
        Some("the sender vanished (connection reset)")
    );
    let (mut c, account) = running(t0, &Traffic::default());
    c.on_cancel(t0);
    drain(&mut c);
    c.on_data_finished(account, None);
    let s = drain(&mut c);
    assert!(
        matches!(&s.sent[0], Ctl::Results(r) if r.note.as_deref() == Some("the receiver was interrupted"))
    );
}

#[test]
fn a_data_path_that_never_hands_back_is_given_up() {
    let t0 = Now::fixed();
    let (mut c, _account) = running(t0, &Traffic::default());
    c.on_bytes(
        &encode(&Ctl::Done(proto::Done {
            sent: 1,
            send_errors: 0,
            complete: true,
        })),
        t0,
    );
    drain(&mut c);
    c.on_timeout(t0.after(Duration::from_millis(500) + Duration::from_secs(30)));
    let s = drain(&mut c);
    assert!(s.closed && s.reports.is_empty());
}

/// TCP: the data stream's EOF usually arrives before the sender's Done; the results wait for Done.
#[test]
fn an_early_end_of_data_waits_for_done() {
    let t0 = Now::fixed();
    let (mut c, mut account) = running(t0, &Traffic::default());
    feed(&mut account, &[0]);
    c.on_data_finished(account, None);
    assert!(drain(&mut c).sent.is_empty());
    c.on_bytes(
        &encode(&Ctl::Done(proto::Done {
            sent: 1,
            send_errors: 0,
            complete: true,
        })),
        t0,
    );
    let s = drain(&mut c);
    assert!(s.stops.is_empty());
    assert!(matches!(&s.sent[0], Ctl::Results(r) if r.complete && r.seq.received == 1));
}

/// A data path that breaks (echo replies nobody reads, a stream that stopped being ours) ends the session at
/// once with its reason, instead of waiting for a Done that may never come.
#[test]
fn a_broken_data_path_ends_the_session_at_once() {
    let t0 = Now::fixed();
    let (mut c, account) = running(t0, &Traffic::default());
    c.on_data_finished(
        account,
        Some("the sender stopped reading its echo replies for 2s".into()),
    );
    let s = drain(&mut c);
    assert!(s.closed);
    assert!(matches!(&s.sent[0], Ctl::Results(r)
        if !r.complete && r.note.as_deref() == Some("the sender stopped reading its echo replies for 2s")));
}
