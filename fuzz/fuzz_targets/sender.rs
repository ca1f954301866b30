//! A whole sender session (`SenderSession`, sans-IO) driven by arbitrary bytes, frames and driver events on a
//! virtual clock, with a well-behaved receiver's answers available so the fuzzer gets past the handshake.
//!
//! Invariants: the session fails or finishes once at most, and asks for nothing after; every deadline lies
//! ahead of the last input's time, or there is none; everything written is whole frames a receiver can
//! read; every string for the user is bounded and free of control characters; the results it keeps passed
//! the validator (bounded trace and note).
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sockbench::accounting::{Account, SendStats};
use sockbench::clock::Now;
use sockbench::proto::{self, Ctl};
use sockbench::session::sender::{
    Action, SenderConfig, SenderSession, SetupError, CLOCK_EXCHANGES, DATA_CONNECT_TRIES,
};
use sockbench::session::translate;
use sockbench::traffic::Protocol;
use sockbench_fuzz::{check_text, decode_writes, secret, ArbCtl, SessionShape};

#[derive(Arbitrary, Debug)]
enum Ev {
    Bytes(Vec<u8>),
    Frame(Box<ArbCtl>),
    /// A frame of text: near-messages built from the dictionary's JSON tokens.
    Text(String),
    GoodAccept {
        same_boot: bool,
    },
    /// A TimeResp to the last TimeReq: the receiver's clock `offset_ns` away, holding it `hold_ns`.
    EchoTime {
        offset_ns: i64,
        hold_ns: i64,
    },
    /// Every clock exchange answered so: the estimate runs on the receiver's numbers. (A coverage-guided
    /// fuzzer gets no reward for the 2nd to 7th reply alone, so it rarely strings eight together.)
    GoodClock {
        offset_ns: i64,
        hold_ns: i64,
    },
    GoodReady,
    /// Results as a receiver builds them, of `received` unique messages.
    GoodResults {
        received: u16,
        complete: bool,
    },
    GoodEnd,
    WaitMs(u32),
    WaitSecs(u16),
    DataOpened(Option<u16>),
    DataRefused,
    SendFinished {
        sent: u64,
        errors: u64,
        cut: bool,
    },
    Closed,
    Cancel,
}

#[derive(Arbitrary, Debug)]
struct Input {
    shape: SessionShape,
    udp: bool,
    events: Vec<Ev>,
}

#[derive(Default)]
struct World {
    over: bool,
    ends: usize,
    begins: usize,
    stops: usize,
    last_t1: i64,
}

fn handle(s: &mut SenderSession, w: &mut World, now: Now) {
    let was_over = w.over;
    while let Some(a) = s.poll_action() {
        assert!(!was_over, "a finished session asked for more: {a:?}");
        match a {
            Action::Write(b) => {
                for m in decode_writes(&b) {
                    if let Ctl::TimeReq { t1 } = m {
                        w.last_t1 = t1;
                    }
                }
            }
            Action::ConnectData { attempt } => assert!((1..=DATA_CONNECT_TRIES).contains(&attempt)),
            Action::BeginSending => {
                w.begins += 1;
                assert_eq!(w.begins, 1);
            }
            Action::StopSending => {
                w.stops += 1;
                assert_eq!(w.stops, 1);
            }
            Action::Rows(_) | Action::OpenData => {}
            Action::Failed(e) => {
                w.ends += 1;
                let (SetupError::Refused(m)
                | SetupError::NotAReceiver(m)
                | SetupError::WrongKey(m)
                | SetupError::Failed(m)) = &e;
                check_text(m, "a set-up error");
                w.over = true;
            }
            Action::Finished(o) => {
                w.ends += 1;
                assert!(o.linger <= translate::MAX_LINGER);
                if let Some(n) = &o.note {
                    check_text(n, "a session note");
                }
                if let Some(n) = &o.suspect {
                    check_text(n, "why the results are suspect");
                }
                if let Some(r) = &o.results {
                    assert!(r.trace.len() <= translate::MAX_TRACE_EVENTS);
                    assert!(r.note.as_ref().is_none_or(|n| n.chars().count() <= 500));
                    assert!(r.jitter_ns.is_none_or(|j| j.is_finite() && j >= 0.0));
                }
                w.over = true;
            }
        }
        assert!(w.ends <= 1, "failed or finished twice");
    }
    assert_eq!(s.is_over(), w.over);
    if let Some(d) = s.next_deadline() {
        assert!(!s.is_over());
        assert!(d > now.mono, "a deadline {:?} before now", now.mono - d);
    }
}

fuzz_target!(|inp: Input| {
    let protocol = if inp.udp {
        Protocol::Udp
    } else {
        Protocol::Tcp
    };
    let traffic = inp.shape.traffic();
    let mut cfg = SenderConfig::new(protocol, inp.shape.session, traffic.clone());
    cfg.boot_id = "boot".into();
    // An authenticated session: the receiver's Accept must prove it holds the key.
    cfg.secret = inp.shape.mac.then(secret);
    let mut now = Now::fixed();
    let mut s = SenderSession::new(cfg, now);
    // The first write is the preamble and the hello, which a receiver accepts.
    match s.poll_action() {
        Some(Action::Write(b)) => {
            assert_eq!(b[..8], proto::control_preamble());
            let hello = decode_writes(&b[8..]);
            let Some(Ctl::Hello(h)) = hello.first() else {
                panic!("no hello")
            };
            assert_eq!(
                translate::traffic(&h.traffic, protocol, inp.shape.mac).as_ref(),
                Ok(&traffic)
            );
        }
        other => panic!("first action {other:?}"),
    }
    let mut w = World::default();
    for ev in &inp.events {
        match ev {
            Ev::WaitMs(ms) => now = now.after(Duration::from_millis(u64::from(*ms))),
            Ev::WaitSecs(x) => now = now.after(Duration::from_secs(u64::from(*x))),
            _ => {}
        }
        for _ in 0..4 {
            match s.next_deadline() {
                Some(d) if d <= now.mono => {
                    s.on_timeout(now);
                    handle(&mut s, &mut w, now);
                }
                _ => break,
            }
        }
        let frame = match ev {
            Ev::Bytes(b) => {
                s.on_bytes(b, now);
                None
            }
            Ev::Frame(f) => Some(f.get()),
            Ev::Text(t) => {
                s.on_bytes(
                    &[&(t.len() as u32).to_be_bytes()[..], t.as_bytes()].concat(),
                    now,
                );
                None
            }
            Ev::GoodAccept { same_boot } => Some(Ctl::Accept(proto::Accept {
                version: proto::VERSION,
                boot_id: if *same_boot {
                    "boot".into()
                } else {
                    "other".into()
                },
                software: "fuzz".into(),
                nonce: None,
                proof: None,
            })),
            Ev::EchoTime { offset_ns, hold_ns } => {
                let t2 = w.last_t1.wrapping_add(*offset_ns);
                Some(Ctl::TimeResp {
                    t1: w.last_t1,
                    t2,
                    t3: t2.wrapping_add(*hold_ns),
                })
            }
            Ev::GoodClock { offset_ns, hold_ns } => {
                for _ in 0..CLOCK_EXCHANGES {
                    let t2 = w.last_t1.wrapping_add(*offset_ns);
                    let resp = Ctl::TimeResp {
                        t1: w.last_t1,
                        t2,
                        t3: t2.wrapping_add(*hold_ns),
                    };
                    s.on_bytes(&proto::encode(&resp), now);
                    handle(&mut s, &mut w, now);
                }
                None
            }
            Ev::GoodReady => Some(Ctl::Ready),
            Ev::GoodResults { received, complete } => {
                let t = &traffic;
                let mut a = Account::new(inp.shape.session, t.count, t.size, t.per_message);
                // At most 64 messages: enough for every figure, cheap enough to keep the fuzzer fast.
                for seq in 0..u64::from(*received).min(t.count).min(64) {
                    let mut m = sockbench::wire::template(
                        inp.shape.session,
                        t.size_of(inp.shape.session, seq),
                        false,
                    );
                    sockbench::wire::stamp(&mut m, seq, 1, 2);
                    let h = sockbench::wire::Header::parse(&m).unwrap();
                    a.on_message(&m, &h, 1_000);
                }
                let m = a.measured(Some(t.count), *complete, None);
                Some(Ctl::Results(Box::new(translate::results(&m))))
            }
            Ev::GoodEnd => Some(Ctl::End),
            _ => None,
        };
        if let Some(f) = frame {
            s.on_bytes(&proto::encode(&f), now);
        }
        match ev {
            Ev::DataOpened(port) => s.on_data_opened(*port),
            Ev::DataRefused => s.on_data_refused(),
            Ev::SendFinished { sent, errors, cut } => {
                let mut st = SendStats {
                    sent: *sent,
                    send_errors: *errors,
                    ..SendStats::default()
                };
                if *cut {
                    st.cut_short = Some("cut".into());
                }
                s.on_send_finished(st, now);
            }
            Ev::Closed => s.on_closed("eof", now),
            Ev::Cancel => s.on_cancel(),
            _ => {}
        }
        handle(&mut s, &mut w, now);
    }
});
