//! A sender session and a receiver connection wired back to back on a virtual clock: the whole control
//! protocol, with and without --key-file, without a socket or a sleep.

use std::time::Duration;

use crate::accounting::{Account, SendStats};
use crate::auth::{Dir, Secret, SessionKeys};
use crate::clock::Now;
use crate::session::receiver::{self, ConnConfig, ReceiverConn};
use crate::session::sender::{self, Outcome, SenderConfig, SenderSession, SetupError};
use crate::traffic::{Caps, Protocol, Traffic};
use crate::wire;

/// What the data path does between Ready and Done: the test's own messages, as (seq, forged?).
type Feed<'a> = &'a dyn Fn(&mut Account, Option<&SessionKeys>);

fn run(send_key: Option<&str>, recv_key: Option<&str>, feed: Feed) -> Result<Outcome, SetupError> {
    let traffic = Traffic {
        count: 4,
        size: 96,
        ..Traffic::default()
    };
    run_with(traffic, send_key, recv_key, feed).map(|(o, _)| o)
}

/// The whole pair for `traffic`; also the per-message rows the sender had passed on before its send loop
/// finished (streamed during the run) and after.
fn run_with(
    traffic: Traffic,
    send_key: Option<&str>,
    recv_key: Option<&str>,
    feed: Feed,
) -> Result<(Outcome, [usize; 2]), SetupError> {
    let t0 = Now::fixed();
    let secret = |k: Option<&str>| k.map(|k| Secret::from_bytes(k.as_bytes()).unwrap());
    let sent = traffic.count;
    let mut rows = [0usize; 2];
    let mut scfg = SenderConfig::new(Protocol::Udp, 9, traffic);
    scfg.secret = secret(send_key);
    let mut rcfg = ConnConfig::new(Protocol::Udp, Caps::default());
    rcfg.secret = secret(recv_key);
    let mut s = SenderSession::new(scfg, t0);
    let mut r = ReceiverConn::new(rcfg, t0);
    let mut account: Option<Box<Account>> = None;
    for _ in 0..200 {
        let mut progressed = false;
        while let Some(a) = s.poll_action() {
            progressed = true;
            match a {
                sender::Action::Write(b) => r.on_bytes(&b, t0),
                sender::Action::OpenData => s.on_data_opened(Some(4000)),
                sender::Action::ConnectData { .. } => unreachable!("UDP"),
                sender::Action::BeginSending => {
                    let a = account.as_mut().expect("data started before Ready");
                    feed(a, s.keys());
                    // Mid-run: what the receiver's data path handed over goes to the sender now.
                    while r.flush_rows() {}
                    while let Some(receiver::Action::Write(b)) = r.poll_action() {
                        s.on_bytes(&b, t0);
                    }
                    while let Some(a) = s.poll_action() {
                        if let sender::Action::Rows(rs) = a {
                            rows[0] += rs.len();
                        }
                    }
                    s.on_send_finished(
                        SendStats {
                            sent,
                            ..Default::default()
                        },
                        t0,
                    );
                }
                sender::Action::Rows(rs) => rows[1] += rs.len(),
                sender::Action::StopSending => {}
                sender::Action::Failed(e) => return Err(e),
                sender::Action::Finished(o) => return Ok((*o, rows)),
            }
        }
        while let Some(a) = r.poll_action() {
            progressed = true;
            match a {
                receiver::Action::Write(b) => s.on_bytes(&b, t0),
                receiver::Action::Admit(_) => r.on_admitted(Ok(()), t0),
                receiver::Action::StartData { account: a, .. } => {
                    account = Some(a);
                    r.on_data_ready(t0);
                }
                receiver::Action::StopData { .. } => {
                    r.on_data_finished(account.take().expect("an account to hand back"), None)
                }
                receiver::Action::Close => s.on_closed("closed", t0),
                _ => {}
            }
        }
        if !progressed {
            s.on_timeout(t0.after(Duration::from_secs(60)));
        }
    }
    panic!("the pair never finished");
}

fn message(seq: u64, keys: Option<&SessionKeys>) -> Vec<u8> {
    let mut m = wire::template(9, 96, keys.is_some());
    wire::stamp(&mut m, seq, 1_000, 1_000);
    if let Some(k) = keys {
        k.seal_message(Dir::SenderToReceiver, &mut m);
    }
    m
}

fn deliver(a: &mut Account, m: &[u8]) {
    let h = wire::Header::parse(m).unwrap();
    a.on_message(m, &h, 2_000);
}

fn all_four(a: &mut Account, keys: Option<&SessionKeys>) {
    for seq in 0..4 {
        deliver(a, &message(seq, keys));
    }
}

#[test]
fn a_whole_session_without_a_key() {
    let o = run(None, None, &all_four).unwrap();
    let m = o.results.expect("results");
    assert_eq!((m.seq.sent, m.seq.received, m.unauthenticated), (4, 4, 0));
    assert!(m.complete);
}

/// With the same key at both ends every frame and message is MAC'd; a message forged by someone without the
/// key (right session, valid CRC, no MAC) is counted as unauthenticated and never accounted.
#[test]
fn with_a_key_forgeries_are_counted_and_never_accounted() {
    let key = Some("the same key on both ends");
    let feed: Feed = &|a, keys| {
        assert!(
            keys.is_some(),
            "the sender has session keys once both proofs held"
        );
        all_four(a, keys);
        for seq in [1, 5, 6] {
            // A forger knows the format and the session id, not the key: its MAC is garbage.
            let mut m = message(seq, None);
            m[5] |= wire::FLAG_MAC;
            wire::seal(&mut m);
            deliver(a, &m);
        }
    };
    let o = run(key, key, feed).unwrap();
    let m = o.results.expect("results");
    assert_eq!(
        (m.seq.received, m.seq.duplicates, m.unauthenticated),
        (4, 0, 3)
    );
    assert!(m.complete);
}

/// --per-message rows leave the receiver in chunks during the run, not all at the end: the receiver holds a
/// bounded queue, never the session's rows. An echo session's rows come after its results.
#[test]
fn per_message_rows_stream_to_the_sender_during_the_run() {
    let n = 3 * crate::accounting::ROW_CHUNK as u64 + 100;
    let traffic = Traffic {
        count: n,
        size: 96,
        per_message: true,
        ..Traffic::default()
    };
    let feed: Feed = &|a, keys| {
        for seq in 0..3 * crate::accounting::ROW_CHUNK as u64 + 100 {
            deliver(a, &message(seq, keys));
        }
    };
    let (o, rows) = run_with(traffic.clone(), None, None, feed).unwrap();
    let m = o.results.expect("results");
    assert_eq!((m.seq.received, m.rows_not_kept), (n, 0));
    let chunk = crate::accounting::ROW_CHUNK;
    assert_eq!(
        rows,
        [3 * chunk, 100],
        "whole chunks during the run, the rest at the end"
    );
    let echo = Traffic {
        echo: true,
        ..traffic
    };
    let (_, rows) = run_with(echo, None, None, feed).unwrap();
    assert_eq!(rows, [0, n as usize]);
}

#[test]
fn different_keys_or_only_one_key_are_refused_with_the_fix() {
    match run(
        Some("the sender's own key"),
        Some("the receiver's own key"),
        &all_four,
    ) {
        Err(SetupError::WrongKey(why)) => {
            assert!(why.contains("different --key-file keys"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    match run(None, Some("only the receiver has one"), &all_four) {
        Err(SetupError::Refused(why)) => assert!(why.contains("requires authentication"), "{why}"),
        other => panic!("{other:?}"),
    }
    match run(Some("only the sender has one!"), None, &all_four) {
        Err(SetupError::Refused(why)) => assert!(why.contains("this receiver has no key"), "{why}"),
        other => panic!("{other:?}"),
    }
}

/// After the proofs, a control frame altered on the way (an on-path attacker rewriting a Done, say) fails its
/// MAC and ends the session instead of being believed.
#[test]
fn an_altered_control_frame_is_not_believed() {
    let t0 = Now::fixed();
    let secret = Secret::from_bytes(b"a key of sixteen bytes or more").unwrap();
    let mut rcfg = ConnConfig::new(Protocol::Udp, Caps::default());
    rcfg.secret = Some(secret.clone());
    let mut scfg = SenderConfig::new(Protocol::Udp, 9, Traffic::default());
    scfg.secret = Some(secret);
    let mut s = SenderSession::new(scfg, t0);
    let mut r = ReceiverConn::new(rcfg, t0);
    let mut tampered = false;
    for _ in 0..50 {
        while let Some(a) = s.poll_action() {
            if let sender::Action::Write(mut b) = a {
                // The first frame after the proof (a clock request): flip a byte of its body.
                if s.keys().is_some()
                    && !tampered
                    && b.len() > 20
                    && b[..4] != crate::proto::CTL_MAGIC
                {
                    b[10] ^= 1;
                    tampered = true;
                }
                r.on_bytes(&b, t0);
            }
        }
        while let Some(a) = r.poll_action() {
            match a {
                receiver::Action::Write(b) => s.on_bytes(&b, t0),
                receiver::Action::Admit(_) => r.on_admitted(Ok(()), t0),
                _ => {}
            }
        }
    }
    assert!(tampered);
    assert!(
        r.is_closed(),
        "the receiver does not believe an altered frame"
    );
}

/// A session on a simulated timeline: every message, control and data, travels `PATH` ns; the sender's clock
/// reads true time, the receiver's `receiver_clock(t)`.
struct Sim {
    base: Now,
    s: SenderSession,
    r: ReceiverConn,
    /// (arrival true time, order, to the receiver?, bytes), earliest first.
    wire: std::collections::BinaryHeap<std::cmp::Reverse<Flight>>,
    order: u64,
    account: Option<Box<Account>>,
    sending_from: Option<i64>,
    rows: Vec<crate::accounting::Row>,
    outcome: Option<Outcome>,
}

type Flight = (i64, u64, bool, Vec<u8>);

const PATH: i64 = 10_000_000;
const COUNT: u64 = 1000;
const GAP: i64 = 10_000_000;

fn receiver_clock(t: i64) -> i64 {
    // 3 ms ahead and 1000 ppm fast: 6 ms further off by the end of the 10 s session.
    t + 3_000_000 + t / 1000
}

impl Sim {
    fn now_s(&self, t: i64) -> Now {
        Now {
            mono: self.base.mono + Duration::from_nanos(t as u64),
            wall_ns: self.base.wall_ns + t,
        }
    }

    fn now_r(&self, t: i64) -> Now {
        Now {
            mono: self.base.mono + Duration::from_nanos(t as u64),
            wall_ns: self.base.wall_ns + receiver_clock(t),
        }
    }

    fn send(&mut self, t: i64, to_receiver: bool, b: Vec<u8>) {
        self.order += 1;
        self.wire
            .push(std::cmp::Reverse((t + PATH, self.order, to_receiver, b)));
    }

    /// Carry out both sides' actions at true time t.
    fn act(&mut self, t: i64) {
        while let Some(a) = self.s.poll_action() {
            match a {
                sender::Action::Write(b) => self.send(t, true, b),
                sender::Action::OpenData => self.s.on_data_opened(Some(4000)),
                sender::Action::BeginSending => self.sending_from = Some(t),
                sender::Action::Rows(rs) => self.rows.extend(rs),
                sender::Action::Finished(o) => self.outcome = Some(*o),
                sender::Action::Failed(e) => panic!("{e:?}"),
                _ => {}
            }
        }
        while let Some(a) = self.r.poll_action() {
            match a {
                receiver::Action::Write(b) => self.send(t, false, b),
                receiver::Action::Admit(_) => self.r.on_admitted(Ok(()), self.now_r(t)),
                receiver::Action::StartData { account, .. } => {
                    self.account = Some(account);
                    self.r.on_data_ready(self.now_r(t));
                }
                receiver::Action::StopData { .. } => {
                    let a = self.account.take().unwrap();
                    self.r.on_data_finished(a, None);
                }
                _ => {}
            }
        }
    }

    /// Data message `seq`, sent at true time t on the sender's clock, read one path later on the receiver's.
    fn data(&mut self, t: i64, seq: u64) {
        let mut m = wire::template(9, 64, false);
        let sent_at = self.now_s(t).wall_ns;
        wire::stamp(&mut m, seq, sent_at, sent_at);
        let h = wire::Header::parse(&m).unwrap();
        let at = self.now_r(t + PATH).wall_ns;
        self.account.as_mut().unwrap().on_message(&m, &h, at);
        if seq + 1 == COUNT {
            let stats = SendStats {
                sent: COUNT,
                ..Default::default()
            };
            self.s.on_send_finished(stats, self.now_s(t));
        }
    }

    /// Run to the end: always the earliest event next (a delivery, a data message due, a deadline).
    fn run(mut self) -> (Outcome, Vec<crate::accounting::Row>) {
        let (mut t, mut next_seq) = (0i64, 0u64);
        loop {
            self.act(t);
            if let Some(o) = self.outcome.take() {
                return (o, self.rows);
            }
            assert!(t < 120_000_000_000, "the simulated session never ended");
            let data_due = self
                .sending_from
                .filter(|_| next_seq < COUNT)
                .map(|from| from + next_seq as i64 * GAP);
            let at = |d: Option<std::time::Instant>| {
                d.map(|i| i.saturating_duration_since(self.base.mono).as_nanos() as i64)
            };
            let next = [
                self.wire.peek().map(|f| f.0 .0),
                data_due,
                at(self.s.next_deadline()),
                at(self.r.next_deadline()),
            ];
            t = next.iter().flatten().copied().min().unwrap().max(t);
            if self.wire.peek().is_some_and(|f| f.0 .0 <= t) {
                let std::cmp::Reverse((_, _, to_receiver, b)) = self.wire.pop().unwrap();
                if to_receiver {
                    self.r.on_bytes(&b, self.now_r(t));
                } else {
                    self.s.on_bytes(&b, self.now_s(t));
                }
            } else if data_due == Some(t) {
                self.data(t, next_seq);
                next_seq += 1;
            } else {
                self.s.on_timeout(self.now_s(t));
                self.r.on_timeout(self.now_r(t));
            }
        }
    }
}

/// A whole session between two clocks that disagree: the receiver's runs 3 ms ahead and 1000 ppm fast (6 ms
/// over the 10 s), on a path of 10 ms each way. The sender refits the clock line as it goes and the receiver
/// corrects each arrival at its own time: at least 99 % of the one-way figures land within 1 ms of the true
/// 10 ms, and within the reported bound, which covers what no method can see (the path's asymmetry, here none).
#[test]
fn drifting_clocks_are_tracked_message_by_message() {
    let base = Now::fixed();
    let traffic = Traffic {
        count: COUNT,
        rate: 1e9 / GAP as f64,
        per_message: true,
        ..Traffic::default()
    };
    let mut scfg = SenderConfig::new(Protocol::Udp, 9, traffic);
    scfg.boot_id = "a".into();
    let sim = Sim {
        base,
        s: SenderSession::new(scfg, base),
        r: ReceiverConn::new(
            ConnConfig::new(Protocol::Udp, Caps::default()),
            Now {
                wall_ns: base.wall_ns + receiver_clock(0),
                ..base
            },
        ),
        wire: Default::default(),
        order: 0,
        account: None,
        sending_from: None,
        rows: vec![],
        outcome: None,
    };
    let (o, rows) = sim.run();
    assert_eq!(o.results.as_ref().unwrap().seq.received, COUNT);
    assert!(
        (o.clock.skew_ppb - 1_000_000).abs() < 5_000,
        "skew {} ppb",
        o.clock.skew_ppb
    );
    let transits: Vec<i64> = rows.iter().map(|r| r.recv_ns - r.send_ns).collect();
    assert_eq!(transits.len() as u64, COUNT);
    let within = |b: i64| transits.iter().filter(|&&d| (d - PATH).abs() <= b).count();
    assert!(
        within(1_000_000) >= 990,
        "{} of 1000 within 1 ms of the true delay",
        within(1_000_000)
    );
    assert!(
        within(o.clock.error_ns) >= 990,
        "{} of 1000 within the ±{} ns bound",
        within(o.clock.error_ns),
        o.clock.error_ns
    );
}
