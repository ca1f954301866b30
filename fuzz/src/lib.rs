//! What the fuzz targets share: structured inputs (`arbitrary` mirrors of the wire's types, so libFuzzer's
//! mutations land on meaningful fields instead of dying in the JSON or the CRC), the session fixture the data
//! decoders run against, and the invariants every target asserts beyond "no panic".

use arbitrary::Arbitrary;
use sockbench::accounting::Account;
use sockbench::auth::{Dir, Secret, SessionKeys};
use sockbench::proto::{self, Ctl};
use sockbench::session::translate;
use sockbench::traffic::{Protocol, Schedule, SizeMix, Traffic};
use sockbench::wire;

/// Longest text a peer may get into a log line or an error the user reads. The session clips peers' strings
/// to 200 (receiver) or 500 (sender) characters; the rest of each line is our own words.
pub const MAX_TEXT: usize = 2_000;

/// A peer's text as it reaches a terminal: bounded, and no control characters (a terminal escape from a
/// stranger must not reach the receiver's log).
pub fn check_text(s: &str, what: &str) {
    assert!(
        s.chars().count() <= MAX_TEXT,
        "{what} is {} characters long",
        s.chars().count()
    );
    assert!(
        !s.chars().any(char::is_control),
        "{what} carries control characters: {s:?}"
    );
}

/// A number as the fuzzer picks it: mostly small (where the interesting boundaries are), sometimes anything.
#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Num {
    Small(u16),
    Any(u64),
}

impl Num {
    pub fn get(self) -> u64 {
        match self {
            Num::Small(n) => u64::from(n),
            Num::Any(n) => n,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
pub enum Rate {
    Unpaced,
    Small(u16),
    Tiny(u16),
    Any(f64),
}

impl Rate {
    pub fn get(self) -> f64 {
        match self {
            Rate::Unpaced => 0.0,
            Rate::Small(n) => f64::from(n),
            Rate::Tiny(n) => f64::from(n) * 1e-6,
            Rate::Any(x) => x,
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
pub enum ArbSizes {
    Range { min: Num, max: Num },
    List(Vec<Num>),
}

#[derive(Arbitrary, Debug, Clone)]
pub struct ArbTrafficSpec {
    pub count: Num,
    pub duration_ns: Option<Num>,
    pub rate: Rate,
    pub size: Num,
    pub sizes: Option<ArbSizes>,
    pub poisson: bool,
    pub echo: bool,
    pub linger_ns: Option<Num>,
    pub per_message: bool,
    pub gso: bool,
}

impl ArbTrafficSpec {
    pub fn get(&self) -> proto::TrafficSpec {
        proto::TrafficSpec {
            count: self.count.get(),
            duration_ns: self.duration_ns.map(Num::get),
            rate: self.rate.get(),
            size: self.size.get(),
            sizes: self.sizes.as_ref().map(|s| match s {
                ArbSizes::Range { min, max } => proto::Sizes::Range {
                    min: min.get(),
                    max: max.get(),
                },
                ArbSizes::List(l) => proto::Sizes::List {
                    sizes: l.iter().map(|n| n.get()).collect(),
                },
            }),
            schedule: if self.poisson {
                proto::ScheduleKind::Poisson
            } else {
                proto::ScheduleKind::Periodic
            },
            echo: self.echo,
            linger_ns: self.linger_ns.map(Num::get),
            per_message: self.per_message,
            gso: self.gso,
            idle_probes: if self.gso { self.count.get() / 2 } else { 0 },
            load_flows: 0,
            load_down_flows: 0,
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
pub struct ArbHello {
    /// None: this build's version.
    pub version: Option<u16>,
    pub udp: bool,
    pub session: u64,
    pub run_id: String,
    pub label: String,
    pub traffic: ArbTrafficSpec,
    pub boot_id: String,
    pub trace: bool,
    pub nonce: Option<String>,
}

#[derive(Arbitrary, Debug, Clone)]
pub struct ArbTraceEvent {
    pub t_ns: i64,
    pub call: String,
    pub fd: i32,
    pub detail: String,
    pub nums: [u64; 5],
}

#[derive(Arbitrary, Debug, Clone)]
pub struct ArbResults {
    pub complete: bool,
    pub note: Option<String>,
    pub seq: [u64; 11],
    pub latency: Vec<(u64, u64)>,
    pub transit: Vec<(u64, u64)>,
    pub ipdv: Vec<(u64, u64)>,
    pub jitter_ns: Option<f64>,
    pub counts: [u64; 10],
    pub rcvbuf_drops: Option<u64>,
    pub first_recv_ns: Option<i64>,
    pub last_recv_ns: Option<i64>,
    pub lost_runs: Vec<(u64, u64)>,
    pub trace: Vec<ArbTraceEvent>,
}

impl ArbResults {
    pub fn get(&self) -> proto::Results {
        let s = self.seq;
        let c = self.counts;
        proto::Results {
            complete: self.complete,
            note: self.note.clone(),
            seq: proto::SeqCounts {
                sent: s[0],
                received: s[1],
                lost: s[2],
                duplicates: s[3],
                reordered: s[4],
                reorder_extent_max: s[5],
                reordered_3: s[6],
                loss_bursts: s[7],
                loss_burst_max: s[8],
                out_of_range: s[9],
                next_expected: s[10],
            },
            latency: self.latency.clone(),
            // The same hostile buckets again, as an idle phase's.
            idle_latency: if self.complete {
                self.latency.clone()
            } else {
                Vec::new()
            },
            transit: self.transit.clone(),
            ipdv: self.ipdv.clone(),
            jitter_ns: self.jitter_ns,
            negative_delays: c[0],
            corrupt: c[1],
            invalid: c[2],
            unauthenticated: c[9],
            bytes: c[3],
            recv_calls: c[4],
            split_messages: c[5],
            coalesced_reads: c[6],
            reads_one_message: c[7],
            reads_partial: c[8],
            rcvbuf_drops: self.rcvbuf_drops,
            rcvbuf_exact: self.rcvbuf_drops.map(|d| d % 2 == 0),
            checksum_errors: self.rcvbuf_drops.map(|d| d / 3),
            cpu_ns: self.first_recv_ns.map(i64::unsigned_abs),
            first_recv_ns: self.first_recv_ns,
            last_recv_ns: self.last_recv_ns,
            lost_runs: self.lost_runs.clone(),
            echoed: c[0] ^ c[1],
            rows_not_kept: c[2] ^ c[3],
            trace: self
                .trace
                .iter()
                .map(|e| proto::TraceEvent {
                    t_ns: e.t_ns,
                    side: "receiver".into(),
                    call: e.call.clone(),
                    fd: e.fd,
                    detail: e.detail.clone(),
                    result: String::new(),
                    duration_ns: e.nums[0],
                    count: e.nums[1],
                    total_ns: e.nums[2],
                    p50_ns: e.nums[3],
                    p99_ns: e.nums[4],
                })
                .collect(),
        }
    }
}

/// Every control message, with fields the fuzzer can reach.
#[derive(Arbitrary, Debug, Clone)]
pub enum ArbCtl {
    Hello(ArbHello),
    Accept {
        version: Option<u16>,
        boot_id: String,
        nonce: Option<String>,
        proof: Option<String>,
    },
    Proof(String),
    Reject(String),
    TimeReq(i64),
    TimeResp(i64, i64, i64),
    Start {
        clock: [i64; 4],
        same_host: bool,
        udp_source_port: Option<u16>,
        linger_ns: Num,
    },
    Ready,
    Done {
        sent: Num,
        send_errors: u64,
        complete: bool,
    },
    Results(Box<ArbResults>),
    Messages(Vec<(u64, i64, i64, i64, u8)>),
    End,
    Abort(String),
}

impl ArbCtl {
    pub fn get(&self) -> Ctl {
        match self {
            ArbCtl::Hello(h) => Ctl::Hello(proto::Hello {
                version: h.version.unwrap_or(proto::VERSION),
                transport: if h.udp {
                    proto::Transport::Udp
                } else {
                    proto::Transport::Tcp
                },
                session: h.session,
                run_id: h.run_id.clone(),
                started_utc: String::new(),
                label: h.label.clone(),
                traffic: h.traffic.get(),
                boot_id: h.boot_id.clone(),
                software: "fuzz".into(),
                trace: h.trace,
                nonce: h.nonce.clone(),
            }),
            ArbCtl::Accept {
                version,
                boot_id,
                nonce,
                proof,
            } => Ctl::Accept(proto::Accept {
                version: version.unwrap_or(proto::VERSION),
                boot_id: boot_id.clone(),
                software: "fuzz".into(),
                nonce: nonce.clone(),
                proof: proof.clone(),
            }),
            ArbCtl::Proof(p) => Ctl::Proof { proof: p.clone() },
            ArbCtl::Reject(r) => Ctl::Reject { reason: r.clone() },
            ArbCtl::TimeReq(t1) => Ctl::TimeReq { t1: *t1 },
            ArbCtl::TimeResp(t1, t2, t3) => Ctl::TimeResp {
                t1: *t1,
                t2: *t2,
                t3: *t3,
            },
            ArbCtl::Start {
                clock,
                same_host,
                udp_source_port,
                linger_ns,
            } => Ctl::Start(proto::Start {
                clock: proto::ClockEstimate {
                    offset_ns: clock[0],
                    // The line's reference and skew: hostile numbers like the rest.
                    ref_ns: clock[2],
                    skew_ppb: clock[3],
                    error_ns: clock[1],
                    min_rtt_ns: clock[2],
                    max_rtt_ns: clock[3],
                    same_host: *same_host,
                },
                udp_source_port: *udp_source_port,
                linger_ns: linger_ns.get(),
            }),
            ArbCtl::Ready => Ctl::Ready,
            ArbCtl::Done {
                sent,
                send_errors,
                complete,
            } => Ctl::Done(proto::Done {
                sent: sent.get(),
                send_errors: *send_errors,
                complete: *complete,
            }),
            ArbCtl::Results(r) => Ctl::Results(Box::new(r.get())),
            ArbCtl::Messages(rows) => Ctl::Messages {
                base_ns: 0,
                rows: rows
                    .iter()
                    .map(|&(seq, a, b, c, st)| {
                        let status = match st % 5 {
                            0 => proto::Status::Ok,
                            1 => proto::Status::Reordered,
                            2 => proto::Status::Duplicate,
                            3 => proto::Status::Corrupt,
                            _ => proto::Status::Lost,
                        };
                        proto::MessageRow(seq, a, b, c, status)
                    })
                    .collect(),
            },
            ArbCtl::End => Ctl::End,
            ArbCtl::Abort(r) => Ctl::Abort { reason: r.clone() },
        }
    }
}

/// How a well-formed message gets damaged on its way.
#[derive(Arbitrary, Debug, Clone)]
pub enum Damage {
    Flip {
        at: u16,
        mask: u8,
    },
    Truncate(u16),
    Insert {
        at: u16,
        byte: u8,
    },
    /// Overwrite the length field (the TCP frame length).
    SetLen(u32),
    SetSeq(u64),
    SetTimes(i64, i64),
    /// Recompute the CRC (and the MAC, in an authenticated session), so the damage so far passes both.
    Reseal,
}

/// Bytes on a data path: raw, or a message of the session (or of another one) with optional damage.
#[derive(Arbitrary, Debug, Clone)]
pub enum Piece {
    Raw(Vec<u8>),
    Msg {
        seq: u16,
        /// None: the size the session expects for this seq.
        size: Option<u16>,
        other_session: bool,
        damage: Vec<Damage>,
    },
}

impl Piece {
    /// `keys`: an authenticated session's, whose messages carry the sender's MAC.
    pub fn bytes(
        &self,
        session: u64,
        size_of: &dyn Fn(u64) -> usize,
        keys: Option<&SessionKeys>,
    ) -> Vec<u8> {
        match self {
            Piece::Raw(b) => b.clone(),
            Piece::Msg {
                seq,
                size,
                other_session,
                damage,
            } => {
                let seq = u64::from(*seq);
                let size = size
                    .map(usize::from)
                    .unwrap_or_else(|| size_of(seq))
                    .max(wire::HEADER_LEN);
                let session = if *other_session { !session } else { session };
                let mut m = wire::template(session, size, keys.is_some());
                let t = 1_700_000_000_000_000_000 + seq as i64 * 1000;
                wire::stamp(&mut m, seq, t, t + 10);
                if let Some(k) = keys {
                    k.seal_message(Dir::SenderToReceiver, &mut m);
                }
                for d in damage {
                    apply(&mut m, d, keys);
                }
                m
            }
        }
    }
}

fn apply(m: &mut Vec<u8>, d: &Damage, keys: Option<&SessionKeys>) {
    match *d {
        Damage::Flip { at, mask } if !m.is_empty() => {
            let i = usize::from(at) % m.len();
            m[i] ^= mask;
        }
        Damage::Truncate(n) => m.truncate(usize::from(n)),
        Damage::Insert { at, byte } => {
            let i = usize::from(at) % (m.len() + 1);
            m.insert(i, byte);
        }
        Damage::SetLen(l) if m.len() >= 12 => m[8..12].copy_from_slice(&l.to_be_bytes()),
        Damage::SetSeq(s) if m.len() >= 32 => m[24..32].copy_from_slice(&s.to_be_bytes()),
        Damage::SetTimes(a, b) if m.len() >= 48 => {
            m[32..40].copy_from_slice(&a.to_be_bytes());
            m[40..48].copy_from_slice(&b.to_be_bytes());
        }
        Damage::Reseal if m.len() >= 16 => {
            wire::seal(m);
            if let Some(k) = keys {
                k.seal_message(Dir::SenderToReceiver, m);
            }
        }
        _ => {}
    }
}

#[derive(Arbitrary, Debug, Clone)]
pub enum ArbMix {
    Range(u16),
    List(Vec<u16>),
}

/// A session as a receiver would hold it after a valid hello: the data decoders run against this.
#[derive(Arbitrary, Debug, Clone)]
pub struct SessionShape {
    pub session: u64,
    pub size: u16,
    pub limit: u16,
    pub mix: Option<ArbMix>,
    pub per_message: bool,
    pub echo: bool,
    /// The clock offset the sender's Start announced: a peer's number, anything.
    pub offset_ns: i64,
    /// Authenticated (--key-file): messages carry a MAC trailer the account checks.
    pub mac: bool,
}

/// The key both ends of the fixtures' authenticated sessions hold.
pub fn secret() -> Secret {
    Secret::from_bytes(b"sockbench fuzz key, not a secret").expect("long enough")
}

/// The largest message the fixtures use: big enough for every code path, small enough to stay fast.
pub const FIXTURE_MAX_SIZE: usize = 4096;

impl SessionShape {
    pub fn traffic(&self) -> Traffic {
        let trailer = if self.mac { wire::MAC_TRAILER_LEN } else { 0 };
        let min = trailer
            + if self.echo {
                wire::MIN_ECHO_LEN
            } else {
                wire::HEADER_LEN
            };
        let size = usize::from(self.size).clamp(min, FIXTURE_MAX_SIZE);
        let mix = self.mix.as_ref().map(|m| match m {
            ArbMix::Range(lo) => SizeMix::Range(usize::from(*lo).clamp(min, size), size),
            ArbMix::List(l) => {
                let mut v: Vec<usize> = l
                    .iter()
                    .take(translate::MAX_SIZE_LIST - 1)
                    .map(|&n| usize::from(n).clamp(min, size))
                    .collect();
                v.push(size);
                SizeMix::List(v)
            }
        });
        let t = Traffic {
            count: u64::from(self.limit).max(1),
            duration: None,
            rate: 0.0,
            size,
            mix,
            schedule: Schedule::Periodic,
            echo: self.echo,
            linger: None,
            per_message: self.per_message,
            ..Traffic::default()
        };
        // The fixture is a session a receiver could admit: the hello validator agrees.
        assert_eq!(
            translate::traffic(&translate::traffic_spec(&t), Protocol::Udp, self.mac).as_ref(),
            Ok(&t)
        );
        t
    }

    /// The session's keys, when it is authenticated (fixed nonces: the fuzzer must be deterministic).
    pub fn keys(&self) -> Option<SessionKeys> {
        self.mac
            .then(|| secret().session_keys(self.session, &[1; 16], &[2; 16]))
    }

    pub fn account(&self, t: &Traffic) -> Account {
        let mut a = Account::new(self.session, t.count, t.size, t.per_message);
        a.set_mixed_sizes(t);
        a.set_offset(self.offset_ns);
        if let Some(k) = self.keys() {
            a.set_keys(k);
        }
        a
    }
}

/// An account's figures agree with each other: every message handed to it is exactly one of received,
/// duplicate, corrupt or invalid, and nothing counts beyond what the session announced.
pub fn check_account(a: &Account, t: &Traffic, handed: u64) {
    let m = a.measured(Some(t.count), true, None);
    let s = &m.seq;
    assert!(
        s.received <= t.count,
        "{} received of {}",
        s.received,
        t.count
    );
    assert_eq!(
        m.invalid + m.corrupt + m.unauthenticated + s.received + s.duplicates,
        handed,
        "received {}, duplicates {}, corrupt {}, invalid {}, unauthenticated {}",
        s.received,
        s.duplicates,
        m.corrupt,
        m.invalid,
        m.unauthenticated
    );
    assert_eq!(s.lost + s.received, t.count);
    assert!(s.reordered <= s.received);
    assert!(m.bytes <= s.received * t.size as u64);
    assert!(m.bytes >= s.received * t.min_size() as u64);
    assert_eq!(m.latency.len(), s.received);
    assert_eq!(m.transit.len(), s.received);
    assert!(m.jitter_ns.is_none_or(|j| j.is_finite() && j >= 0.0));
    if t.per_message {
        assert_eq!(m.lost_runs.iter().map(|r| r.1).sum::<u64>(), s.lost);
    }
}

/// Decode every frame a state machine wrote: what we send must always be readable by our own peer.
pub fn decode_writes(bytes: &[u8]) -> Vec<Ctl> {
    let mut d = proto::FrameDecoder::new(proto::MAX_FRAME);
    d.push(bytes).expect("our own frame is within MAX_FRAME");
    let mut out = vec![];
    while let Some(m) = d.next_message().expect("our own frame decodes") {
        out.push(m);
    }
    assert_eq!(d.pending(), 0, "a write is whole frames");
    out
}
