//! A whole receiver connection (`ReceiverConn`, sans-IO) driven by arbitrary bytes, frames and driver events on
//! a virtual clock, with the data path simulated by feeding its `Account`. The driver model calls
//! `on_timeout` whenever a deadline has passed, as the real one does.
//!
//! Invariants: no `Admit` for a hello the validator or the caps refuse, and at most one; every deadline lies
//! ahead of the time of the last input (or there is none, exactly when closed); a closed connection stays
//! closed and asks for nothing more; everything written is whole frames our sender can read; every log line
//! is bounded and free of control characters; the account's figures agree; the receiver's own report row
//! builds from what it measured.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sockbench::accounting::Account;
use sockbench::clock::Now;
use sockbench::proto::{self, Ctl};
use sockbench::report::{SessionMeta, SessionReport};
use sockbench::session::receiver::{Action, Admission, ConnConfig, ReceiverConn};
use sockbench::session::translate;
use sockbench::traffic::{Caps, Protocol, Traffic};
use sockbench::wire::{self, Header};
use sockbench_fuzz::{check_account, check_text, decode_writes, secret, ArbCtl, Piece};

#[derive(Arbitrary, Debug)]
enum Ev {
    Bytes(Vec<u8>),
    Frame(Box<ArbCtl>),
    /// A frame of text: near-messages built from the dictionary's JSON tokens.
    Text(String),
    Preamble,
    DataPreamble(u64),
    GoodHello {
        session: u64,
        count: u16,
        size: u16,
        rate: u16,
        echo: bool,
        per_message: bool,
        /// The sender's nonce, for a receiver with a key (any text: the receiver parses the peer's hex).
        nonce: Option<String>,
    },
    GoodStart {
        offset_ns: i64,
        linger_ms: u16,
    },
    GoodDone {
        sent: u16,
    },
    WaitMs(u32),
    WaitSecs(u16),
    DataReady,
    Data(Vec<Piece>),
    DataFinished(bool),
    Closed,
    Cancel,
}

#[derive(Arbitrary, Debug)]
struct Input {
    udp: bool,
    /// The receiver has a key (--key-file): hellos must prove the sender holds it too.
    secret: bool,
    /// The driver's answers to successive Admits (room or not).
    answers: Vec<bool>,
    events: Vec<Ev>,
}

#[derive(Default)]
struct World {
    admission: Option<Admission>,
    admits: usize,
    answers_used: usize,
    account: Option<Box<Account>>,
    handed: u64,
    written: Vec<&'static str>,
    reports: usize,
    closed: bool,
}

fn check_admission(a: &Admission, protocol: Protocol, caps: &Caps, mac: bool) {
    let t: &Traffic = &a.traffic;
    assert!(t.size >= wire::HEADER_LEN && t.size <= protocol.max_size() && t.size <= caps.max_size);
    assert!(t.count > 0 && t.count <= caps.max_messages);
    assert!(t.rate.is_finite() && t.rate <= caps.max_rate);
    assert!(t.rate == 0.0 || (translate::MIN_RATE..=translate::MAX_RATE).contains(&t.rate));
    if let Some(m) = &t.mix {
        assert!(m.min() >= wire::HEADER_LEN && m.max() == t.size);
        if let sockbench::traffic::SizeMix::List(l) = m {
            assert!(!l.is_empty() && l.len() <= translate::MAX_SIZE_LIST);
        }
    }
    if t.echo {
        assert!(t.min_size() >= wire::MIN_ECHO_LEN);
    }
    assert_ne!(t.duration, Some(Duration::ZERO));
    assert!(t.linger.is_none_or(|l| l <= translate::MAX_LINGER));
    assert!(t.expected_duration().is_none_or(|d| d <= caps.max_duration));
    for seq in 0..16 {
        let s = t.size_of(a.session, seq);
        assert!(s >= t.min_size() && s <= t.size);
    }
    for s in [&a.run_id, &a.started_utc, &a.label] {
        check_text(s, "a hello's string");
        assert!(s.chars().count() <= 200);
    }
    // Validating what was admitted changes nothing.
    assert_eq!(
        translate::traffic(&translate::traffic_spec(t), protocol, mac).as_ref(),
        Ok(t)
    );
}

fn handle(
    c: &mut ReceiverConn,
    w: &mut World,
    inp: &Input,
    now: Now,
    input_len: usize,
    cfg: &ConnConfig,
) {
    let was_closed = w.closed;
    while let Some(a) = c.poll_action() {
        assert!(!was_closed, "a closed connection asked for more");
        match a {
            Action::Write(b) => {
                for m in decode_writes(&b) {
                    w.written.push(m.kind());
                }
            }
            Action::DataConnection { leftover, .. } => {
                assert!(leftover.len() <= input_len);
                assert!(c.is_closed());
                w.closed = true;
            }
            Action::LoadConnection { .. } => {
                assert!(c.is_closed());
                w.closed = true;
            }
            Action::Admit(a) => {
                w.admits += 1;
                assert_eq!(w.admits, 1, "a second Admit on one connection");
                check_admission(&a, cfg.protocol, &cfg.caps, cfg.secret.is_some());
                w.admission = Some((*a).clone());
                let yes = inp.answers.get(w.answers_used).copied().unwrap_or(true);
                w.answers_used += 1;
                c.on_admitted(if yes { Ok(()) } else { Err("no room".into()) }, now);
            }
            Action::StartData { account, .. } => {
                let a = w.admission.as_ref().expect("StartData before an admission");
                assert_eq!(account.session, a.session);
                assert_eq!(account.size(), a.traffic.size);
                assert!(w.account.is_none());
                w.account = Some(account);
            }
            Action::StopData { linger, .. } => {
                assert!(linger <= translate::MAX_LINGER);
            }
            Action::Report(r) => {
                w.reports += 1;
                assert_eq!(w.reports, 1);
                assert!(w.written.contains(&"results") && w.written.last() == Some(&"end"));
                let a = w.admission.as_ref().unwrap();
                assert!(r.measured.seq.received <= a.traffic.count);
                if let Some(n) = &r.measured.note {
                    check_text(n, "a results note");
                }
                // The receiver's own copy of the report row, built from the peer's numbers.
                let meta = SessionMeta {
                    run_id: a.run_id.clone(),
                    started_utc: a.started_utc.clone(),
                    label: a.label.clone(),
                    protocol: cfg.protocol,
                    peer: "198.18.0.1".into(),
                    traffic: a.traffic.clone(),
                };
                let row = SessionReport::build(&meta, None, Some(&r.measured), r.measured.complete);
                assert!(row.duration_s.is_none_or(|d| d.is_finite() && d > 0.0));
            }
            Action::Log(l) => check_text(&l, "a log line"),
            Action::Close => {
                assert!(c.is_closed());
                w.closed = true;
            }
        }
    }
    // Closed means no deadline; open means one, after now.
    match c.next_deadline() {
        None => assert!(c.is_closed()),
        Some(d) => {
            assert!(!c.is_closed());
            assert!(d > now.mono, "a deadline {:?} before now", now.mono - d);
        }
    }
    if c.is_closed() {
        w.closed = true;
    }
}

fn good_hello(
    udp: bool,
    session: u64,
    count: u16,
    size: u16,
    rate: u16,
    echo: bool,
    per_message: bool,
) -> Ctl {
    Ctl::Hello(proto::Hello {
        version: proto::VERSION,
        transport: if udp {
            proto::Transport::Udp
        } else {
            proto::Transport::Tcp
        },
        session,
        run_id: "r".into(),
        started_utc: "t".into(),
        label: "l".into(),
        traffic: proto::TrafficSpec {
            count: u64::from(count),
            duration_ns: None,
            rate: f64::from(rate),
            size: u64::from(size),
            sizes: None,
            schedule: proto::ScheduleKind::Periodic,
            echo,
            linger_ns: None,
            per_message,
            gso: echo,
            idle_probes: 0,
            load_flows: 0,
            load_down_flows: 0,
        },
        boot_id: String::new(),
        software: "fuzz".into(),
        trace: false,
        nonce: None,
    })
}

fuzz_target!(|inp: Input| {
    let protocol = if inp.udp {
        Protocol::Udp
    } else {
        Protocol::Tcp
    };
    let mut cfg = ConnConfig::new(protocol, Caps::default());
    cfg.secret = inp.secret.then(secret);
    let mut now = Now::fixed();
    let mut c = ReceiverConn::new(cfg.clone(), now);
    let mut w = World::default();
    handle(&mut c, &mut w, &inp, now, 0, &cfg);
    for ev in &inp.events {
        let mut input_len = 0;
        match ev {
            Ev::WaitMs(ms) => now = now.after(Duration::from_millis(u64::from(*ms))),
            Ev::WaitSecs(s) => now = now.after(Duration::from_secs(u64::from(*s))),
            _ => {}
        }
        // The driver: a passed deadline is handled before anything else at this time.
        for _ in 0..4 {
            match c.next_deadline() {
                Some(d) if d <= now.mono => {
                    c.on_timeout(now);
                    handle(&mut c, &mut w, &inp, now, 0, &cfg);
                }
                _ => break,
            }
        }
        let bytes = match ev {
            Ev::Bytes(b) => Some(b.clone()),
            Ev::Frame(f) => Some(proto::encode(&f.get())),
            Ev::Text(t) => Some([&(t.len() as u32).to_be_bytes()[..], t.as_bytes()].concat()),
            Ev::Preamble => Some(proto::control_preamble().to_vec()),
            Ev::DataPreamble(s) => Some(proto::data_preamble(*s, None)),
            Ev::GoodHello {
                session,
                count,
                size,
                rate,
                echo,
                per_message,
                nonce,
            } => {
                let mut h =
                    good_hello(inp.udp, *session, *count, *size, *rate, *echo, *per_message);
                if let Ctl::Hello(h) = &mut h {
                    h.nonce = nonce.clone();
                }
                Some(proto::encode(&h))
            }
            Ev::GoodStart {
                offset_ns,
                linger_ms,
            } => Some(proto::encode(&Ctl::Start(proto::Start {
                clock: proto::ClockEstimate {
                    offset_ns: *offset_ns,
                    ref_ns: 1_700_000_000_000_000_000,
                    skew_ppb: 0,
                    error_ns: 0,
                    min_rtt_ns: 0,
                    max_rtt_ns: 0,
                    same_host: false,
                },
                udp_source_port: Some(4000),
                linger_ns: u64::from(*linger_ms) * 1_000_000,
            }))),
            Ev::GoodDone { sent } => Some(proto::encode(&Ctl::Done(proto::Done {
                sent: u64::from(*sent),
                send_errors: 0,
                complete: true,
            }))),
            _ => None,
        };
        if let Some(b) = bytes {
            input_len = b.len();
            c.on_bytes(&b, now);
        }
        match ev {
            Ev::DataReady => c.on_data_ready(now),
            Ev::Data(pieces) => {
                if let (Some(acct), Some(a)) = (w.account.as_mut(), w.admission.as_ref()) {
                    for p in pieces {
                        let b = p.bytes(
                            a.session,
                            &|seq| a.traffic.size_of(a.session, seq).min(8192),
                            c.keys(),
                        );
                        match Header::parse(&b) {
                            Ok(h) if h.session == acct.session => {
                                acct.on_message(&b, &h, now.wall_ns);
                            }
                            _ => acct.on_unrecognised(&b),
                        }
                        w.handed += 1;
                    }
                    check_account(acct, &a.traffic, w.handed);
                    // The driver tells the connection its data path moved.
                    c.on_data_activity(now);
                }
            }
            Ev::DataFinished(note) => {
                if let Some(acct) = w.account.take() {
                    c.on_data_finished(acct, note.then(|| "the data path broke".to_string()));
                }
            }
            Ev::Closed => c.on_closed("eof", now),
            Ev::Cancel => c.on_cancel(now),
            _ => {}
        }
        handle(&mut c, &mut w, &inp, now, input_len, &cfg);
    }
});
