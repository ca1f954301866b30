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
    let t0 = Now::fixed();
    let secret = |k: Option<&str>| k.map(|k| Secret::from_bytes(k.as_bytes()).unwrap());
    let traffic = Traffic {
        count: 4,
        size: 96,
        ..Traffic::default()
    };
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
                    s.on_send_finished(
                        SendStats {
                            sent: 4,
                            ..Default::default()
                        },
                        t0,
                    );
                }
                sender::Action::StopSending | sender::Action::Rows(_) => {}
                sender::Action::Failed(e) => return Err(e),
                sender::Action::Finished(o) => return Ok(*o),
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
