//! The validators between the wire and sockbench's own types, on arbitrary `proto` values: the hello's traffic
//! (`translate::traffic`) and the receiver's results (`translate::measured`, which rebuilds histograms).
//!
//! Anything accepted is within the protocol's limits and consistent with itself, and converting it back to
//! the wire and validating again gives the same value; the receiver's caps and the report never panic on it.
#![no_main]

use std::time::Duration;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use sockbench::report::{SessionMeta, SessionReport};
use sockbench::session::translate;
use sockbench::stats::MAX_TOTAL_COUNT;
use sockbench::traffic::{Caps, Protocol, SizeMix};
use sockbench::wire;
use sockbench_fuzz::{ArbResults, ArbTrafficSpec};

#[derive(Arbitrary, Debug)]
struct Input {
    spec: ArbTrafficSpec,
    udp: bool,
    session: u64,
    /// The messages carry a MAC trailer (--key-file).
    mac: bool,
    results: ArbResults,
    /// What the sender knows it sent, for `check_results`.
    sent: u64,
    size: u16,
}

fuzz_target!(|inp: Input| {
    let protocol = if inp.udp {
        Protocol::Udp
    } else {
        Protocol::Tcp
    };
    let spec = inp.spec.get();
    let least = wire::HEADER_LEN + if inp.mac { wire::MAC_TRAILER_LEN } else { 0 };
    if let Ok(t) = translate::traffic(&spec, protocol, inp.mac) {
        assert!(t.size >= least && t.size <= protocol.max_size());
        assert!(t.count > 0);
        assert!(t.rate.is_finite() && t.rate >= 0.0);
        assert!(t.rate == 0.0 || (translate::MIN_RATE..=translate::MAX_RATE).contains(&t.rate));
        assert_ne!(t.duration, Some(Duration::ZERO));
        assert!(t.linger.is_none_or(|l| l <= translate::MAX_LINGER));
        if let Some(m) = &t.mix {
            assert!(m.min() >= least && m.min() <= m.max() && m.max() == t.size);
            if let SizeMix::List(l) = m {
                assert!(!l.is_empty() && l.len() <= translate::MAX_SIZE_LIST);
            }
        }
        if t.echo {
            assert!(t.min_size() >= wire::MIN_ECHO_LEN);
        }
        for seq in [0, 1, 2, 1000, u64::MAX] {
            let s = t.size_of(inp.session, seq);
            assert!(s >= t.min_size() && s <= t.size);
        }
        let _ = t.expected_duration();
        let _ = Caps::default().refuse(protocol, &t);
        assert_eq!(
            translate::traffic(&translate::traffic_spec(&t), protocol, inp.mac).as_ref(),
            Ok(&t)
        );
    }

    let r = inp.results.get();
    if let Ok(m) = translate::measured(&r) {
        assert!(m.trace.len() <= translate::MAX_TRACE_EVENTS);
        assert!(m.note.as_ref().is_none_or(|n| n.chars().count() <= 500));
        assert!(m.jitter_ns.is_none_or(|j| j.is_finite() && j >= 0.0));
        for h in [&m.latency, &m.transit, &m.ipdv] {
            assert!(h.len() <= MAX_TOTAL_COUNT);
        }
        // Back to the wire and in again: the same figures.
        let again = translate::measured(&translate::results(&m)).expect("our own results validate");
        assert_eq!(again.seq, m.seq);
        assert_eq!(again.latency, m.latency);
        assert_eq!(again.ipdv, m.ipdv);
        // Results the sender believes hold against what it sent.
        if translate::check_results(&m, inp.sent, usize::from(inp.size)).is_ok() {
            let s = &m.seq;
            assert!(s.received <= inp.sent && s.sent <= inp.sent && s.next_expected <= inp.sent);
            assert_eq!(s.lost, s.sent.saturating_sub(s.received));
            assert!(s.reordered <= s.received && s.loss_bursts <= s.lost);
        }
        // The sender writes its report row from these figures.
        let meta = SessionMeta {
            run_id: String::new(),
            started_utc: String::new(),
            label: String::new(),
            protocol,
            peer: String::new(),
            traffic: sockbench::traffic::Traffic::default(),
        };
        let _ = SessionReport::build(&meta, None, Some(&m), m.complete);
    }
});
