//! What a hostile peer's bytes can do to the decoders it reaches, as properties on random and mutated input
//! (valid messages, frames and hellos with bytes flipped, inserted and deleted): never a panic, memory bounded,
//! and the figures consistent. The same decoders run much longer under libFuzzer in `fuzz/` (see its README);
//! these keep a fast guard in the normal suite. Regression tests for what fuzzing found close the file.

use std::time::Duration;

use proptest::prelude::*;
use sockbench::accounting::{Account, EchoStats};
use sockbench::clock::Now;
use sockbench::proto::{self, Ctl, FrameDecoder, Preamble, PreambleDecoder};
use sockbench::session::receiver::{self, Admission, ConnConfig, ReceiverConn};
use sockbench::session::sender::{self, SenderConfig, SenderSession, SetupError};
use sockbench::session::stream::StreamReceiver;
use sockbench::session::translate;
use sockbench::stats::MAX_TOTAL_COUNT;
use sockbench::traffic::{Caps, Protocol, SizeMix, Traffic};
use sockbench::wire::{self, Framer, Header};

const T0_NS: i64 = 1_700_000_000_000_000_000;

fn cases(n: u32) -> ProptestConfig {
    ProptestConfig {
        cases: n,
        // A failure is reported with its input; no files left behind in the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

// ---- mutations ----

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(i, m)| Mutation::Flip(i, m)),
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    proptest::collection::vec(mutation(), 0..4)
}

fn mutate(b: &mut Vec<u8>, ms: &[Mutation]) {
    for m in ms {
        match *m {
            Mutation::Flip(i, x) if !b.is_empty() => {
                let n = b.len();
                b[i % n] ^= x;
            }
            Mutation::Insert(i, x) => {
                let n = b.len() + 1;
                b.insert(i % n, x);
            }
            Mutation::Delete(i) if !b.is_empty() => {
                let n = b.len();
                b.remove(i % n);
            }
            Mutation::Truncate(i) => {
                let n = b.len() + 1;
                b.truncate(i % n);
            }
            _ => {}
        }
    }
}

/// Cut `len` bytes into reads of the given sizes (cycled, each at least one byte).
fn cut(len: usize, sizes: &[usize]) -> Vec<usize> {
    let mut out = vec![];
    let mut pos = 0;
    while pos < len {
        let n = sizes
            .get(out.len() % sizes.len().max(1))
            .map_or(len, |&s| s.max(1));
        let n = n.min(len - pos);
        out.push(n);
        pos += n;
    }
    out
}

fn text_ok(s: &str) -> bool {
    s.chars().count() <= 2_000 && !s.chars().any(char::is_control)
}

// ---- data messages ----

const SESSION: u64 = 0x5eed;

fn msg(seq: u64, size: usize) -> Vec<u8> {
    let mut m = wire::template(SESSION, size, false);
    wire::stamp(&mut m, seq, T0_NS + seq as i64, T0_NS + seq as i64 + 7);
    m
}

/// A valid message of the session (seq < 40, a size of the session's), maybe damaged.
fn damaged_msg(size: usize) -> impl Strategy<Value = Vec<u8>> {
    (0u64..40, mutations(), any::<bool>()).prop_map(move |(seq, ms, reseal)| {
        let mut m = msg(seq, size);
        mutate(&mut m, &ms);
        // Resealed damage passes the checksum: the decoders must hold without the CRC's help.
        if reseal && m.len() >= 16 {
            wire::seal(&mut m);
        }
        m
    })
}

fn datagram(size: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => damaged_msg(size),
        1 => proptest::collection::vec(any::<u8>(), 0..200),
    ]
}

/// Every message handed over is exactly one of received, duplicate, corrupt or invalid; nothing counts beyond
/// the announced count.
fn assert_account(a: &Account, limit: u64, size: usize, handed: u64) {
    let m = a.measured(Some(limit), true, None);
    let s = &m.seq;
    assert!(s.received <= limit);
    assert_eq!(m.invalid + m.corrupt + s.received + s.duplicates, handed);
    assert_eq!(s.lost + s.received, limit);
    assert!(m.bytes <= s.received * size as u64);
    assert_eq!(m.latency.len(), s.received);
    assert!(m.jitter_ns.is_none_or(|j| j.is_finite() && j >= 0.0));
}

/// Every datagram to the account as a receiver would: this session's by its header, the rest unrecognised.
fn feed(a: &mut Account, ds: &[Vec<u8>]) {
    for d in ds {
        match Header::parse(d) {
            Ok(h) if h.session == SESSION => {
                a.on_message(d, &h, T0_NS);
            }
            _ => a.on_unrecognised(d),
        }
    }
}

proptest! {
    // Each case builds an account (three ns histograms): 100 cases keep the group well under a second.
    #![proptest_config(cases(100))]

    #[test]
    fn header_parse_agrees_with_the_bytes(b in datagram(100)) {
        if let Ok(h) = Header::parse(&b) {
            prop_assert_eq!(h.len as usize, b.len());
            prop_assert_eq!(&b[..4], &wire::MAGIC.to_be_bytes()[..]);
            prop_assert_eq!(wire::verify(&b, &h), wire::checksum(&b) == h.checksum);
            let mut back = [0u8; wire::HEADER_LEN];
            h.write(&mut back);
            prop_assert_eq!(&back[16..], &b[16..wire::HEADER_LEN]);
        }
        // A MAC trailer (flag bit 1) is not part of the echo fields.
        prop_assert!(wire::crc_covered(&b) <= b.len());
        prop_assert_eq!(wire::echo_times(&b).is_some(), wire::crc_covered(&b) >= wire::MIN_ECHO_LEN);
        let mut e = EchoStats::new(SESSION, 40, false);
        e.on_reply(&b, T0_NS, Some(T0_NS));
        prop_assert!(e.rtt.len() + e.invalid + e.corrupt <= 1);
    }

    #[test]
    fn the_account_counts_every_datagram_once(
        ds in proptest::collection::vec(datagram(100), 0..30),
        offset_ns in any::<i64>(),
        per_message in any::<bool>(),
    ) {
        let mut a = Account::new(SESSION, 40, 100, per_message);
        a.set_offset(offset_ns);
        feed(&mut a, &ds);
        assert_account(&a, 40, 100, ds.len() as u64);
    }

    #[test]
    fn mixed_sizes_count_every_datagram_once(ds in proptest::collection::vec(datagram(90), 0..30)) {
        let t = Traffic {
            count: 40,
            size: 100,
            mix: Some(SizeMix::Range(60, 100)),
            ..Traffic::default()
        };
        let mut a = Account::new(SESSION, 40, 100, false);
        a.set_mixed_sizes(&t);
        feed(&mut a, &ds);
        assert_account(&a, 40, 100, ds.len() as u64);
    }

    /// However a stream (of messages, some damaged) is cut into reads, the framer hands out exactly the
    /// stream's bytes, never a frame beyond its limit, and holds less than one frame between reads.
    #[test]
    fn the_framer_yields_the_streams_own_bytes(
        parts in proptest::collection::vec(damaged_msg(100), 0..12),
        sizes in proptest::collection::vec(1usize..300, 1..8),
    ) {
        let stream: Vec<u8> = parts.concat();
        let max_len = 100;
        let mut f = Framer::new(max_len);
        let (mut pos, mut framed) = (0, 0);
        'reads: for n in cut(stream.len(), &sizes) {
            let spare = f.spare();
            prop_assert!(!spare.is_empty());
            let n = n.min(spare.len());
            spare[..n].copy_from_slice(&stream[pos..pos + n]);
            pos += n;
            f.filled(n);
            while let Some(fr) = f.next_frame() {
                match fr {
                    Ok(m) => {
                        prop_assert!(m.len() >= wire::HEADER_LEN && m.len() <= max_len);
                        prop_assert_eq!(&m[..], &stream[framed..framed + m.len()]);
                        framed += m.len();
                    }
                    Err(_) => break 'reads,
                }
            }
            f.end_read();
            prop_assert_eq!(framed + f.pending(), pos);
            prop_assert!(f.pending() < max_len);
            prop_assert!(f.reads_one_message + f.reads_partial + f.coalesced_reads <= f.recv_calls);
        }
    }

    /// The TCP data path: counts consistent, and echo never sends back more than came in.
    #[test]
    fn the_stream_receiver_never_amplifies(
        parts in proptest::collection::vec(damaged_msg(100), 0..12),
        sizes in proptest::collection::vec(1usize..300, 1..8),
        offset_ns in any::<i64>(),
    ) {
        let stream: Vec<u8> = parts.concat();
        let mut a = Account::new(SESSION, 40, 100, false);
        a.set_offset(offset_ns);
        let mut r = StreamReceiver::new(&a, true);
        let mut pos = 0;
        let mut ok = true;
        for n in cut(stream.len(), &sizes) {
            let spare = r.spare();
            let n = n.min(spare.len());
            spare[..n].copy_from_slice(&stream[pos..pos + n]);
            pos += n;
            if r.on_read(n, &mut a, T0_NS, T0_NS + 1).is_err() {
                ok = false;
                break;
            }
            prop_assert!(r.echo_bytes().len() <= pos);
        }
        r.finish(&mut a, ok);
        let m = a.measured(Some(40), true, None);
        prop_assert!(m.seq.received <= 40);
        prop_assert!(a.echoed <= m.seq.received + m.seq.duplicates);
        prop_assert_eq!(r.echo_bytes().len() as u64, a.echoed * 100);
    }
}

// ---- control frames ----

fn some_ctl() -> impl Strategy<Value = Ctl> {
    prop_oneof![
        Just(Ctl::Ready),
        Just(Ctl::End),
        any::<i64>().prop_map(|t1| Ctl::TimeReq { t1 }),
        (any::<i64>(), any::<i64>(), any::<i64>()).prop_map(|(t1, t2, t3)| Ctl::TimeResp {
            t1,
            t2,
            t3
        }),
        ".{0,40}".prop_map(|reason| Ctl::Abort { reason }),
        (any::<u64>(), any::<bool>()).prop_map(|(sent, complete)| Ctl::Done(proto::Done {
            sent,
            send_errors: 0,
            complete
        })),
        hello_spec().prop_map(|s| hello(Protocol::Udp, s)),
    ]
}

/// A frame: a message, or one of a type this version does not know (its name any text, escaped as JSON).
fn some_frame() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => some_ctl().prop_map(|m| proto::encode(&m)),
        1 => "[a-z\\x00-\\x1f]{0,8}".prop_map(|name| {
            let body = format!("{{\"type\":{}}}", serde_json::to_string(&name).unwrap());
            [&(body.len() as u32).to_be_bytes()[..], body.as_bytes()].concat()
        }),
    ]
}

/// A stream a peer could send: a preamble, then frames, then bytes flipped, inserted or deleted.
fn control_stream() -> impl Strategy<Value = Vec<u8>> {
    (
        any::<bool>(),
        proptest::collection::vec(some_frame(), 0..5),
        mutations(),
    )
        .prop_map(|(data, frames, ms)| {
            let mut b = if data {
                proto::data_preamble(7, None)
            } else {
                proto::control_preamble().to_vec()
            };
            for f in &frames {
                b.extend_from_slice(f);
            }
            mutate(&mut b, &ms);
            b
        })
}

#[derive(Debug, PartialEq)]
enum Seen {
    Preamble(Preamble, usize),
    Msg(Box<Ctl>),
    Err(String),
}

/// Feed `bytes` in the given pieces through the preamble and frame decoders.
fn decode(bytes: &[u8], sizes: &[usize], limit: usize) -> Vec<Seen> {
    let mut pre = PreambleDecoder::default();
    let mut frames = FrameDecoder::new(limit);
    let mut seen = vec![];
    let mut have_preamble = false;
    let mut pos = 0;
    for &n in sizes {
        let chunk = &bytes[pos..pos + n];
        let start = pos;
        pos += n;
        let rest = if have_preamble {
            chunk
        } else {
            match pre.push(chunk) {
                Ok(None) => continue,
                Ok(Some((p, used))) => {
                    assert!(used <= chunk.len());
                    seen.push(Seen::Preamble(p, start + used));
                    have_preamble = true;
                    &chunk[used..]
                }
                Err(e) => {
                    seen.push(Seen::Err(e.to_string()));
                    return seen;
                }
            }
        };
        let before = frames.pending();
        if let Err(e) = frames.push(rest) {
            seen.push(Seen::Err(e.to_string()));
            return seen;
        }
        assert!(frames.pending() <= before + rest.len());
        loop {
            match frames.next_message() {
                Ok(Some(m)) => seen.push(Seen::Msg(Box::new(m))),
                Ok(None) => break,
                Err(e) => {
                    seen.push(Seen::Err(e.to_string()));
                    return seen;
                }
            }
        }
        assert!(
            frames.pending() < 4 + limit,
            "{} bytes held",
            frames.pending()
        );
    }
    seen
}

proptest! {
    #![proptest_config(cases(300))]

    /// Cuts change nothing: the same preamble, messages and first error as all at once; buffered bytes stay
    /// under one frame of the limit; error text is bounded and free of control characters.
    #[test]
    fn control_decoding_does_not_depend_on_cuts(
        bytes in control_stream(),
        sizes in proptest::collection::vec(1usize..64, 1..6),
        small in any::<bool>(),
    ) {
        let limit = if small { 256 } else { proto::MAX_SENDER_FRAME };
        let whole = decode(&bytes, &[bytes.len()], limit);
        let cuts = decode(&bytes, &cut(bytes.len(), &sizes), limit);
        for s in &whole {
            if let Seen::Err(e) = s {
                prop_assert!(text_ok(e), "{:?}", e);
            }
        }
        prop_assert_eq!(whole, cuts);
    }

    #[test]
    fn random_bytes_never_panic_the_control_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode(&bytes, &[bytes.len()], 1024);
        let mut d = FrameDecoder::new(1024);
        if d.push(&bytes).is_ok() {
            while let Ok(Some(_)) = d.next_message() {}
        }
    }
}

// ---- the hello validator ----

fn size_num() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        40u64..70,
        Just(wire::MAX_UDP_PAYLOAD as u64),
        Just(wire::MAX_UDP_PAYLOAD as u64 + 1),
        Just(16u64 << 20),
        Just((16u64 << 20) + 1),
        0u64..2000,
        any::<u64>(),
    ]
}

fn rate() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(translate::MIN_RATE),
        Just(translate::MAX_RATE),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(-0.0),
        Just(f64::MIN_POSITIVE),
        1e-6f64..1e12,
        any::<f64>(),
    ]
}

fn hello_spec() -> impl Strategy<Value = proto::TrafficSpec> {
    let sizes = prop_oneof![
        Just(None),
        (size_num(), size_num()).prop_map(|(min, max)| Some(proto::Sizes::Range { min, max })),
        proptest::collection::vec(size_num(), 0..5)
            .prop_map(|sizes| Some(proto::Sizes::List { sizes })),
    ];
    let opt = || prop_oneof![Just(None), Just(Some(0u64)), any::<u64>().prop_map(Some)];
    (
        prop_oneof![Just(0u64), 1u64..100_000, any::<u64>()],
        opt(),
        rate(),
        size_num(),
        sizes,
        any::<bool>(),
        opt(),
        any::<bool>(),
    )
        .prop_map(
            |(count, duration_ns, rate, size, sizes, echo, linger_ns, per_message)| {
                proto::TrafficSpec {
                    count,
                    duration_ns,
                    rate,
                    size,
                    sizes,
                    schedule: proto::ScheduleKind::Periodic,
                    echo,
                    linger_ns,
                    per_message,
                    gso: per_message ^ echo,
                    // An idle phase splits the latencies in two; any number must be safe.
                    idle_probes: if per_message { count / 2 } else { 0 },
                    load_flows: 0,
                    load_down_flows: 0,
                }
            },
        )
}

fn hello(p: Protocol, traffic: proto::TrafficSpec) -> Ctl {
    Ctl::Hello(proto::Hello {
        version: proto::VERSION,
        transport: translate::transport(p),
        session: SESSION,
        run_id: "run".into(),
        started_utc: "t".into(),
        label: "l".into(),
        traffic,
        boot_id: String::new(),
        software: "test".into(),
        trace: false,
        nonce: None,
    })
}

/// What a receiver may admit: within the protocol's limits and consistent with itself.
fn assert_sane(t: &Traffic, p: Protocol) {
    assert!(
        t.size >= wire::HEADER_LEN && t.size <= p.max_size(),
        "size {}",
        t.size
    );
    assert!(t.count > 0);
    assert!(t.rate.is_finite() && t.rate >= 0.0);
    assert!(t.rate == 0.0 || (translate::MIN_RATE..=translate::MAX_RATE).contains(&t.rate));
    assert_ne!(t.duration, Some(Duration::ZERO));
    assert!(t.linger.is_none_or(|l| l <= translate::MAX_LINGER));
    if let Some(m) = &t.mix {
        assert!(m.min() >= wire::HEADER_LEN && m.min() <= m.max() && m.max() == t.size);
        if let SizeMix::List(l) = m {
            assert!(!l.is_empty() && l.len() <= translate::MAX_SIZE_LIST);
        }
    }
    if t.echo {
        assert!(t.min_size() >= wire::MIN_ECHO_LEN);
    }
    for seq in [0, 1, 99, u64::MAX] {
        let s = t.size_of(SESSION, seq);
        assert!(s >= t.min_size() && s <= t.size);
    }
    let _ = t.expected_duration();
    let _ = Caps::default().refuse(p, t);
    assert_eq!(
        translate::traffic(&translate::traffic_spec(t), p, false).as_ref(),
        Ok(t)
    );
}

proptest! {
    #![proptest_config(cases(500))]

    #[test]
    fn the_hello_validator_accepts_only_sane_traffic(s in hello_spec(), udp in any::<bool>()) {
        let p = if udp { Protocol::Udp } else { Protocol::Tcp };
        if let Ok(t) = translate::traffic(&s, p, false) {
            assert_sane(&t, p);
        }
    }
}

// ---- the receiver's results, as the sender takes them ----

fn buckets() -> impl Strategy<Value = Vec<(u64, u64)>> {
    prop_oneof![
        // A real histogram's buckets, maybe with one changed.
        (
            proptest::collection::vec(0u64..10_000_000, 0..20),
            any::<usize>(),
            any::<u64>()
        )
            .prop_map(|(vals, i, x)| {
                let mut h = sockbench::stats::new_ns_histogram();
                for v in vals {
                    h.saturating_record(v);
                }
                let mut b = sockbench::stats::hist_to_buckets(&h);
                if !b.is_empty() && x % 3 == 0 {
                    let n = b.len();
                    b[i % n].1 = x;
                }
                b
            }),
        proptest::collection::vec((any::<u64>(), any::<u64>()), 0..6),
    ]
}

fn results() -> impl Strategy<Value = proto::Results> {
    (
        buckets(),
        buckets(),
        prop_oneof![
            Just(None),
            any::<f64>().prop_map(Some),
            (0.0f64..1e9).prop_map(Some)
        ],
        proptest::option::of(".{0,600}"),
        proptest::collection::vec(any::<u64>(), 10),
        proptest::collection::vec((any::<u64>(), any::<u64>()), 0..4),
    )
        .prop_map(
            |(latency, ipdv, jitter_ns, note, n, lost_runs)| proto::Results {
                complete: n[0] % 2 == 0,
                note,
                seq: proto::SeqCounts {
                    sent: n[0],
                    received: n[1],
                    lost: n[2],
                    duplicates: n[3],
                    ..Default::default()
                },
                latency: latency.clone(),
                transit: latency,
                ipdv,
                jitter_ns,
                bytes: n[4],
                first_recv_ns: Some(n[5] as i64),
                last_recv_ns: Some(n[6] as i64),
                lost_runs,
                ..Default::default()
            },
        )
}

proptest! {
    #![proptest_config(cases(100))]

    #[test]
    fn results_that_validate_are_bounded_and_round_trip(r in results()) {
        if let Ok(m) = translate::measured(&r) {
            prop_assert!(m.note.as_ref().is_none_or(|n| n.chars().count() <= 500));
            prop_assert!(m.jitter_ns.is_none_or(|j| j.is_finite() && j >= 0.0));
            prop_assert!(m.latency.len() <= MAX_TOTAL_COUNT);
            let again = translate::measured(&translate::results(&m)).unwrap();
            prop_assert_eq!(again.seq, m.seq);
            prop_assert_eq!(&again.latency, &m.latency);
            prop_assert_eq!(&again.ipdv, &m.ipdv);
        }
    }
}

// ---- whole sessions ----

/// One step of a driver: the next bytes (how many of the stream), how long before them, and what else the
/// driver reports at that time.
type Step = (usize, u64, u8);

fn steps(max_read: usize) -> impl Strategy<Value = Vec<Step>> {
    proptest::collection::vec(
        (
            1usize..max_read,
            // Mostly no wait, so mutated sessions get deep before a deadline cuts them.
            prop_oneof![6 => Just(0u64), 1 => 0u64..2_000, 1 => 0u64..120_000],
            any::<u8>(),
        ),
        1..12,
    )
}

fn check_admission(a: &Admission, p: Protocol) {
    assert_sane(&a.traffic, p);
    assert!(Caps::default().refuse(p, &a.traffic).is_none());
    for s in [&a.run_id, &a.label, &a.started_utc] {
        assert!(s.chars().count() <= 200 && text_ok(s));
    }
}

/// The bytes of a valid session from the sender's side, to be mutated.
fn sender_stream(spec: proto::TrafficSpec, offset_ns: i64) -> Vec<u8> {
    let mut b = proto::control_preamble().to_vec();
    for m in [
        hello(Protocol::Udp, spec),
        Ctl::TimeReq { t1: T0_NS },
        Ctl::Start(proto::Start {
            clock: proto::ClockEstimate {
                offset_ns,
                ref_ns: T0_NS,
                skew_ppb: 0,
                error_ns: 0,
                min_rtt_ns: 0,
                max_rtt_ns: 0,
                same_host: false,
            },
            udp_source_port: Some(4000),
            linger_ns: 500_000_000,
        }),
        Ctl::Done(proto::Done {
            sent: 10,
            send_errors: 0,
            complete: true,
        }),
    ] {
        b.extend(proto::encode(&m));
    }
    b
}

proptest! {
    #![proptest_config(cases(200))]

    /// A receiver connection fed a mutated session at arbitrary times: no panic; no Admit but for a hello the
    /// validator and the caps accept; a deadline ahead of now, or none exactly when closed; closed stays
    /// closed; whole frames written; log lines bounded and free of control characters.
    #[test]
    fn the_receiver_holds_against_mutated_sessions(
        spec in prop_oneof![
            3 => Just(translate::traffic_spec(&Traffic { count: 10, ..Traffic::default() })),
            1 => hello_spec(),
        ],
        offset_ns in any::<i64>(),
        ms in mutations(),
        steps in steps(200),
    ) {
        let mut stream = sender_stream(spec, offset_ns);
        mutate(&mut stream, &ms);
        let mut now = Now::fixed();
        let mut c = ReceiverConn::new(ConnConfig::new(Protocol::Udp, Caps::default()), now);
        let mut account: Option<Box<Account>> = None;
        let (mut admits, mut closed) = (0, false);
        let mut pos = 0;
        for (n, wait_ms, ev) in steps {
            now = now.after(Duration::from_millis(wait_ms));
            if c.next_deadline().is_some_and(|d| d <= now.mono) {
                c.on_timeout(now);
            }
            let n = n.min(stream.len() - pos);
            c.on_bytes(&stream[pos..pos + n], now);
            pos += n;
            match ev % 8 {
                0 => c.on_data_ready(now),
                1 => {
                    if let Some(a) = account.as_mut() {
                        // The data path: a message of the session, on the receiver's clock.
                        let m = msg(u64::from(ev) % 12, 64);
                        a.on_message(&m, &Header::parse(&m).unwrap(), now.wall_ns);
                    }
                }
                2 => {
                    if let Some(a) = account.take() {
                        c.on_data_finished(a, None);
                    }
                }
                3 if ev > 250 => c.on_closed("eof", now),
                4 if ev > 250 => c.on_cancel(now),
                _ => {}
            }
            let was_closed = closed;
            while let Some(a) = c.poll_action() {
                prop_assert!(!was_closed, "a closed connection asked for more");
                match a {
                    receiver::Action::Admit(a) => {
                        admits += 1;
                        prop_assert_eq!(admits, 1);
                        check_admission(&a, Protocol::Udp);
                        c.on_admitted(Ok(()), now);
                    }
                    receiver::Action::StartData { account: a, .. } => account = Some(a),
                    receiver::Action::Write(b) => {
                        let mut d = FrameDecoder::new(proto::MAX_FRAME);
                        d.push(&b).unwrap();
                        while d.next_message().unwrap().is_some() {}
                        prop_assert_eq!(d.pending(), 0);
                    }
                    receiver::Action::Log(l) => prop_assert!(text_ok(&l), "{:?}", l),
                    _ => {}
                }
            }
            closed = c.is_closed();
            match c.next_deadline() {
                None => prop_assert!(closed),
                Some(d) => prop_assert!(!closed && d > now.mono),
            }
        }
    }
}

/// The bytes of a valid receiver's answers: accept, clock replies, ready, results, end.
fn receiver_stream(t1s: i64, t2_offset: i64) -> Vec<u8> {
    let mut b = vec![];
    let mut msgs = vec![Ctl::Accept(proto::Accept {
        version: proto::VERSION,
        boot_id: "other".into(),
        software: "test".into(),
        nonce: None,
        proof: None,
    })];
    for _ in 0..sender::CLOCK_EXCHANGES {
        let t2 = t1s.wrapping_add(t2_offset);
        msgs.push(Ctl::TimeResp {
            t1: t1s,
            t2,
            t3: t2,
        });
    }
    msgs.push(Ctl::Ready);
    let a = Account::new(SESSION, 10, 64, false);
    msgs.push(Ctl::Results(Box::new(translate::results(&a.measured(
        Some(10),
        true,
        None,
    )))));
    msgs.push(Ctl::End);
    for m in &msgs {
        b.extend(proto::encode(m));
    }
    b
}

proptest! {
    #![proptest_config(cases(100))]

    /// A sender session fed a mutated receiver's answers at arbitrary times: no panic; it fails or finishes
    /// once at most and asks for nothing after; a deadline ahead of now or none; errors and notes for the
    /// user bounded and free of control characters.
    #[test]
    fn the_sender_holds_against_mutated_answers(
        t2_offset in prop_oneof![
            Just(0i64),
            -1_000_000i64..1_000_000,
            any::<i64>(),
            Just(i64::MIN),
            Just(i64::MAX),
        ],
        // Often unmutated, so the clock estimate runs on the receiver's extreme numbers.
        ms in prop_oneof![Just(vec![]), mutations()],
        steps in steps(600),
    ) {
        let t = Traffic { count: 10, ..Traffic::default() };
        let mut now = Now::fixed();
        let mut s = SenderSession::new(SenderConfig::new(Protocol::Udp, SESSION, t), now);
        // Every TimeReq carries now's wall clock; the time only moves between steps, so answer for t0 and
        // let the mutations and waits do the rest.
        let mut stream = receiver_stream(now.wall_ns, t2_offset);
        mutate(&mut stream, &ms);
        let mut ends = 0;
        let mut pos = 0;
        for (n, wait_ms, ev) in steps {
            now = now.after(Duration::from_millis(wait_ms));
            if s.next_deadline().is_some_and(|d| d <= now.mono) {
                s.on_timeout(now);
            }
            let n = n.min(stream.len() - pos);
            s.on_bytes(&stream[pos..pos + n], now);
            pos += n;
            match ev % 8 {
                0 => s.on_data_opened(Some(4000)),
                1 => s.on_send_finished(
                    sockbench::accounting::SendStats {
                        sent: 10,
                        ..Default::default()
                    },
                    now,
                ),
                2 if ev > 250 => s.on_closed("eof", now),
                3 if ev > 250 => s.on_cancel(),
                _ => {}
            }
            let was_over = ends > 0;
            while let Some(a) = s.poll_action() {
                prop_assert!(!was_over, "a finished session asked for more: {:?}", a);
                match a {
                    sender::Action::Failed(e) => {
                        ends += 1;
                        let (SetupError::Refused(m)
                            | SetupError::NotAReceiver(m)
                            | SetupError::WrongKey(m)
                            | SetupError::Failed(m)) = &e;
                        prop_assert!(text_ok(m), "{:?}", m);
                    }
                    sender::Action::Finished(o) => {
                        ends += 1;
                        prop_assert!(o.note.as_ref().is_none_or(|n| text_ok(n)), "{:?}", o.note);
                        prop_assert!(o.linger <= translate::MAX_LINGER);
                    }
                    _ => {}
                }
            }
            prop_assert!(ends <= 1);
            prop_assert_eq!(s.is_over(), ends == 1);
            if let Some(d) = s.next_deadline() {
                prop_assert!(d > now.mono);
            }
        }
    }
}

// ---- regressions: what fuzzing found ----

/// Found by fuzz/wire in its first seconds: a sender's Start may announce any clock offset; the receiver
/// subtracted it from each arrival time in i64 and overflowed (a panic in debug builds, a wrapped time in
/// release).
#[test]
fn hostile_clock_offset_does_not_overflow_the_account() {
    for offset in [i64::MIN, i64::MAX] {
        let mut a = Account::new(SESSION, 4, 64, true);
        a.set_offset(offset);
        let m = msg(0, 64);
        a.on_message(&m, &Header::parse(&m).unwrap(), T0_NS);
        a.on_message(&m, &Header::parse(&m).unwrap(), -T0_NS);
        let r = a.measured(Some(4), true, None);
        assert_eq!((r.seq.received, r.seq.duplicates), (1, 1));
    }
}

/// Found reading the path fuzz/sender drives: a receiver's clock replies are its own numbers; the offset
/// estimate took differences of them in i64 and overflowed on extreme ones.
#[test]
fn hostile_clock_replies_do_not_overflow_the_offset_estimate() {
    for (t2, t3) in [
        (i64::MIN, i64::MAX),
        (i64::MAX, i64::MIN),
        (i64::MAX, i64::MAX),
    ] {
        let now = Now::fixed();
        let t = Traffic {
            count: 10,
            ..Traffic::default()
        };
        let mut s = SenderSession::new(SenderConfig::new(Protocol::Udp, SESSION, t), now);
        s.on_bytes(
            &proto::encode(&Ctl::Accept(proto::Accept {
                version: proto::VERSION,
                boot_id: "other".into(),
                software: "test".into(),
                nonce: None,
                proof: None,
            })),
            now,
        );
        for _ in 0..sender::CLOCK_EXCHANGES {
            s.on_bytes(
                &proto::encode(&Ctl::TimeResp {
                    t1: now.wall_ns,
                    t2,
                    t3,
                }),
                now,
            );
        }
        let actions: Vec<_> = std::iter::from_fn(|| s.poll_action()).collect();
        // Replies one clock could produce (however absurd) give an estimate and the data opens; replies no
        // clock could produce end the session with the reason.
        let opened = actions
            .iter()
            .any(|a| matches!(a, sender::Action::OpenData));
        let refused = actions.iter().any(
            |a| matches!(a, sender::Action::Failed(sender::SetupError::Failed(e)) if e.contains("clock replies")),
        );
        assert!(opened != refused, "{actions:?}");
        assert!(s.clock().error_ns >= 0 && s.clock().min_rtt_ns >= 0);
    }
}

/// Found reading the path fuzz/control drives: serde's "unknown variant" error quotes the peer's string raw,
/// so a stranger's terminal escapes (and a megabyte of text) reached the receiver's log, and the sender's
/// error line, through `FrameError::Unreadable`.
#[test]
fn unreadable_frame_errors_carry_no_control_characters_and_are_bounded() {
    let body = format!("{{\"type\":\"\\u001b[2J{}\"}}", "x".repeat(100_000));
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body.as_bytes());
    let mut d = FrameDecoder::new(proto::MAX_FRAME);
    d.push(&frame).unwrap();
    let e = d.next_message().unwrap_err().to_string();
    assert!(text_ok(&e), "{e:?}");
}

/// Found following where a hostile offset goes: a receiver keeps its own copy of each session's report, and
/// the span from the earliest send time (the peer's numbers, under a CRC it computed itself) to the last
/// arrival (offset by the peer's Start) overflowed in i64.
#[test]
fn hostile_send_times_do_not_overflow_the_receivers_own_report() {
    let mut a = Account::new(SESSION, 4, 64, false);
    a.set_offset(i64::MIN + 1);
    let mut m = wire::template(SESSION, 64, false);
    wire::stamp(&mut m, 0, i64::MIN, i64::MIN);
    a.on_message(&m, &Header::parse(&m).unwrap(), T0_NS);
    let measured = a.measured(Some(4), true, None);
    let meta = sockbench::report::SessionMeta {
        run_id: String::new(),
        started_utc: String::new(),
        label: String::new(),
        protocol: Protocol::Udp,
        peer: String::new(),
        traffic: Traffic::default(),
    };
    let row = sockbench::report::SessionReport::build(&meta, None, Some(&measured), true);
    assert!(row.duration_s.is_none_or(|d| d.is_finite() && d > 0.0));
}
