//! The control messages of protocol version 2, as the wire carries them (JSON, tagged by `type`).
//!
//! Field names here are the wire: renaming one is a protocol change, caught by the golden tests below, and
//! needs a new `VERSION`. Times are ns (i64 since the Unix epoch, or u64 durations); histograms travel as
//! (value, count) bucket lists, each value the highest value equivalent to its bucket.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    Periodic,
    Poisson,
}

/// Mixed message sizes: uniform over a range, or one of a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sizes {
    Range { min: u64, max: u64 },
    List { sizes: Vec<u64> },
}

/// What the sender will send, as announced in the hello. The receiver validates all of it before a session
/// exists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrafficSpec {
    pub count: u64,
    pub duration_ns: Option<u64>,
    /// Messages per second; 0 = unpaced.
    pub rate: f64,
    /// The largest message, bytes.
    pub size: u64,
    pub sizes: Option<Sizes>,
    pub schedule: ScheduleKind,
    pub echo: bool,
    pub linger_ns: Option<u64>,
    pub per_message: bool,
    /// UDP: the sender hands the kernel GSO buffers of equal-size messages, so the receiver may read them
    /// coalesced (GRO) and split them back.
    #[serde(default)]
    pub gso: bool,
    /// --load (issue 14): the first `idle_probes` messages are the idle phase, the rest the loaded phase; the
    /// sender runs `load_flows` bulk TCP flows beside them. Absent (0) without --load, so a session without load
    /// reads as before on the wire.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub idle_probes: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub load_flows: u64,
    /// --load-direction down or both: flows on which the receiver sends (`load_flows` are those on which the
    /// sender does).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub load_down_flows: u64,
}

fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub version: u16,
    pub transport: Transport,
    pub session: u64,
    /// The sender's run id, start time and label, so a receiver's own CSV copy matches the sender's rows.
    pub run_id: String,
    pub started_utc: String,
    pub label: String,
    pub traffic: TrafficSpec,
    pub boot_id: String,
    pub software: String,
    /// The sender wants the receiver's socket calls (--trace) back with the results.
    pub trace: bool,
    /// With --key-file: the sender's fresh nonce (hex); the receiver must prove it knows the key.
    pub nonce: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accept {
    pub version: u16,
    pub boot_id: String,
    pub software: String,
    /// With --key-file: the receiver's fresh nonce and its proof over the hello and both nonces (hex).
    pub nonce: Option<String>,
    pub proof: Option<String>,
}

/// The sender's clock-offset estimate, handed to the receiver for its delay accounting: receiver clock minus
/// sender clock at sender time `ref_ns` is `offset_ns`, and it changes by `skew_ppb` ns per second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockEstimate {
    pub offset_ns: i64,
    pub ref_ns: i64,
    pub skew_ppb: i64,
    pub error_ns: i64,
    pub min_rtt_ns: i64,
    pub max_rtt_ns: i64,
    pub same_host: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Start {
    pub clock: ClockEstimate,
    /// Where the UDP data comes from (UDP sessions).
    pub udp_source_port: Option<u16>,
    /// How long the receiver waits for stragglers after Done.
    pub linger_ns: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// Messages the kernel accepted: seqs 0..sent.
    pub sent: u64,
    pub send_errors: u64,
    pub complete: bool,
}

/// Sequence accounting (RFC 4737, 5560, 7680) as the receiver counted it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqCounts {
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub reorder_extent_max: u64,
    pub reordered_3: u64,
    pub loss_bursts: u64,
    pub loss_burst_max: u64,
    pub out_of_range: u64,
    /// One above the highest sequence number received.
    pub next_expected: u64,
}

/// A histogram as (value, count) pairs, ascending, ns.
pub type Buckets = Vec<(u64, u64)>;

/// One traced socket call (or an aggregate of many), on the sender's clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceEvent {
    pub t_ns: i64,
    pub side: String,
    pub call: String,
    pub fd: i32,
    pub detail: String,
    pub result: String,
    pub duration_ns: u64,
    pub count: u64,
    pub total_ns: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
}

/// What the receiver measured, sent back so that the sender writes the complete report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Results {
    pub complete: bool,
    /// Why it is incomplete, when it is.
    pub note: Option<String>,
    pub seq: SeqCounts,
    pub latency: Buckets,
    /// With an idle phase (--load): the idle phase's latencies; `latency` then holds the loaded phase's.
    /// Absent without one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub idle_latency: Buckets,
    pub transit: Buckets,
    pub ipdv: Buckets,
    pub jitter_ns: Option<f64>,
    pub negative_delays: u64,
    pub corrupt: u64,
    pub invalid: u64,
    /// Messages of the session that failed their MAC (--key-file): never accounted.
    pub unauthenticated: u64,
    /// Bytes of unique, valid messages.
    pub bytes: u64,
    pub recv_calls: u64,
    pub split_messages: u64,
    pub coalesced_reads: u64,
    pub reads_one_message: u64,
    pub reads_partial: u64,
    /// Datagrams the receiving socket's queue dropped during the session (SO_RXQ_OVFL), UDP only; whether that
    /// is exactly this session's; datagrams the host dropped for a bad UDP checksum meanwhile (host-wide).
    pub rcvbuf_drops: Option<u64>,
    pub rcvbuf_exact: Option<bool>,
    pub checksum_errors: Option<u64>,
    /// CPU time of the receiver's data thread during the session, ns.
    pub cpu_ns: Option<u64>,
    /// First and last unique arrival, sender clock.
    pub first_recv_ns: Option<i64>,
    pub last_recv_ns: Option<i64>,
    /// Runs of lost seqs (first, length), sent with --per-message so the sender can write the lost rows.
    pub lost_runs: Vec<(u64, u64)>,
    /// Echo replies the receiver sent.
    pub echoed: u64,
    /// Per-message rows counted beyond the receiver's cap and not sent.
    pub rows_not_kept: u64,
    /// The receiver's socket calls, when the sender asked for --trace.
    pub trace: Vec<TraceEvent>,
}

/// Status of one arrival (or of a sequence number that never arrived), for the per-message CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Reordered,
    Duplicate,
    Corrupt,
    Lost,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Reordered => "reordered",
            Status::Duplicate => "duplicate",
            Status::Corrupt => "corrupt",
            Status::Lost => "lost",
        }
    }
}

/// One arrival as the receiver saw it: seq, scheduled and actual send time (sender clock), arrival time
/// (corrected to the sender clock), status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRow(pub u64, pub i64, pub i64, pub i64, pub Status);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Ctl {
    Hello(Hello),
    Accept(Accept),
    /// With --key-file: the sender's proof over the hello and both nonces (hex); every frame after it, both
    /// ways, carries a MAC.
    Proof {
        proof: String,
    },
    Reject {
        reason: String,
    },
    TimeReq {
        t1: i64,
    },
    TimeResp {
        t1: i64,
        t2: i64,
        t3: i64,
    },
    Start(Start),
    Ready,
    Done(Done),
    Results(Box<Results>),
    /// Per-message rows. With `base_ns`, each row's three times are offsets from it (ns): a row's numbers
    /// are then a few digits instead of nineteen, and rows stream in about half the bytes and CPU.
    Messages {
        #[serde(default, skip_serializing_if = "is_zero_i64")]
        base_ns: i64,
        rows: Vec<MessageRow>,
    },
    /// During the session: the sender's newer clock estimate (it refits every second).
    Clock(ClockEstimate),
    End,
    Abort {
        reason: String,
    },
}

impl Ctl {
    pub fn kind(&self) -> &'static str {
        match self {
            Ctl::Hello(_) => "hello",
            Ctl::Accept(_) => "accept",
            Ctl::Proof { .. } => "proof",
            Ctl::Reject { .. } => "reject",
            Ctl::TimeReq { .. } => "time_req",
            Ctl::TimeResp { .. } => "time_resp",
            Ctl::Start(_) => "start",
            Ctl::Ready => "ready",
            Ctl::Done(_) => "done",
            Ctl::Results(_) => "results",
            Ctl::Messages { .. } => "messages",
            Ctl::Clock(_) => "clock",
            Ctl::End => "end",
            Ctl::Abort { .. } => "abort",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(m: &Ctl) -> String {
        serde_json::to_string(m).unwrap()
    }

    /// Every message, pinned byte for byte: a change here is a protocol change and needs a new VERSION.
    #[test]
    fn golden_json() {
        let hello = Ctl::Hello(Hello {
            version: 2,
            transport: Transport::Udp,
            session: 7,
            run_id: "r".into(),
            started_utc: "t".into(),
            label: "l".into(),
            traffic: TrafficSpec {
                count: 10,
                duration_ns: Some(1_000),
                rate: 1000.0,
                size: 1400,
                sizes: Some(Sizes::Range { min: 64, max: 1400 }),
                schedule: ScheduleKind::Poisson,
                echo: true,
                linger_ns: None,
                per_message: false,
                gso: false,
                idle_probes: 0,
                load_flows: 0,
                load_down_flows: 0,
            },
            boot_id: "b".into(),
            software: "sockbench 0".into(),
            trace: false,
            nonce: Some("00ff".into()),
        });
        let cases: Vec<(Ctl, &str)> = vec![
            (
                hello,
                r#"{"type":"hello","version":2,"transport":"udp","session":7,"run_id":"r","started_utc":"t","label":"l","traffic":{"count":10,"duration_ns":1000,"rate":1000.0,"size":1400,"sizes":{"range":{"min":64,"max":1400}},"schedule":"poisson","echo":true,"linger_ns":null,"per_message":false,"gso":false},"boot_id":"b","software":"sockbench 0","trace":false,"nonce":"00ff"}"#,
            ),
            (
                Ctl::Accept(Accept {
                    version: 2,
                    boot_id: "b".into(),
                    software: "s".into(),
                    nonce: None,
                    proof: None,
                }),
                r#"{"type":"accept","version":2,"boot_id":"b","software":"s","nonce":null,"proof":null}"#,
            ),
            (
                Ctl::Proof { proof: "ab".into() },
                r#"{"type":"proof","proof":"ab"}"#,
            ),
            (
                Ctl::Reject {
                    reason: "no".into(),
                },
                r#"{"type":"reject","reason":"no"}"#,
            ),
            (Ctl::TimeReq { t1: 1 }, r#"{"type":"time_req","t1":1}"#),
            (
                Ctl::TimeResp {
                    t1: 1,
                    t2: 2,
                    t3: 3,
                },
                r#"{"type":"time_resp","t1":1,"t2":2,"t3":3}"#,
            ),
            (
                Ctl::Start(Start {
                    clock: ClockEstimate {
                        offset_ns: -5,
                        ref_ns: 7,
                        skew_ppb: 1_000,
                        error_ns: 2,
                        min_rtt_ns: 4,
                        max_rtt_ns: 9,
                        same_host: false,
                    },
                    udp_source_port: Some(4000),
                    linger_ns: 500,
                }),
                r#"{"type":"start","clock":{"offset_ns":-5,"ref_ns":7,"skew_ppb":1000,"error_ns":2,"min_rtt_ns":4,"max_rtt_ns":9,"same_host":false},"udp_source_port":4000,"linger_ns":500}"#,
            ),
            (Ctl::Ready, r#"{"type":"ready"}"#),
            (
                Ctl::Done(Done {
                    sent: 5,
                    send_errors: 1,
                    complete: true,
                }),
                r#"{"type":"done","sent":5,"send_errors":1,"complete":true}"#,
            ),
            (
                Ctl::Messages {
                    base_ns: 0,
                    rows: vec![MessageRow(3, 1, 2, 4, Status::Reordered)],
                },
                r#"{"type":"messages","rows":[[3,1,2,4,"reordered"]]}"#,
            ),
            (
                Ctl::Messages {
                    base_ns: 1_764_460_000_000_000_000,
                    rows: vec![MessageRow(3, -10, 0, 95_000, Status::Ok)],
                },
                r#"{"type":"messages","base_ns":1764460000000000000,"rows":[[3,-10,0,95000,"ok"]]}"#,
            ),
            (Ctl::End, r#"{"type":"end"}"#),
            (
                Ctl::Abort { reason: "x".into() },
                r#"{"type":"abort","reason":"x"}"#,
            ),
        ];
        for (m, want) in cases {
            assert_eq!(json(&m), want, "{}", m.kind());
            assert_eq!(serde_json::from_str::<Ctl>(want).unwrap(), m);
        }
    }

    #[test]
    fn golden_results() {
        let r = Ctl::Results(Box::new(Results {
            complete: true,
            seq: SeqCounts {
                sent: 6,
                received: 5,
                lost: 1,
                ..Default::default()
            },
            latency: vec![(1000, 2), (2047, 1)],
            lost_runs: vec![(5, 1)],
            rcvbuf_drops: Some(0),
            trace: vec![TraceEvent {
                t_ns: 1,
                side: "receiver".into(),
                call: "bind".into(),
                fd: 3,
                detail: "d".into(),
                result: "0".into(),
                duration_ns: 9,
                count: 0,
                total_ns: 0,
                p50_ns: 0,
                p99_ns: 0,
            }],
            ..Default::default()
        }));
        let want = r#"{"type":"results","complete":true,"note":null,"seq":{"sent":6,"received":5,"lost":1,"duplicates":0,"reordered":0,"reorder_extent_max":0,"reordered_3":0,"loss_bursts":0,"loss_burst_max":0,"out_of_range":0,"next_expected":0},"latency":[[1000,2],[2047,1]],"transit":[],"ipdv":[],"jitter_ns":null,"negative_delays":0,"corrupt":0,"invalid":0,"unauthenticated":0,"bytes":0,"recv_calls":0,"split_messages":0,"coalesced_reads":0,"reads_one_message":0,"reads_partial":0,"rcvbuf_drops":0,"rcvbuf_exact":null,"checksum_errors":null,"cpu_ns":null,"first_recv_ns":null,"last_recv_ns":null,"lost_runs":[[5,1]],"echoed":0,"rows_not_kept":0,"trace":[{"t_ns":1,"side":"receiver","call":"bind","fd":3,"detail":"d","result":"0","duration_ns":9,"count":0,"total_ns":0,"p50_ns":0,"p99_ns":0}]}"#;
        assert_eq!(json(&r), want);
        assert_eq!(serde_json::from_str::<Ctl>(want).unwrap(), r);
    }

    /// A version-1 sender's Reject parses the same: the shape both versions share, so each side can tell the
    /// other why it refused.
    #[test]
    fn reject_is_readable_across_versions() {
        let v1 = r#"{"type":"reject","reason":"control protocol version 2 is not this receiver's version 1"}"#;
        assert!(matches!(
            serde_json::from_str::<Ctl>(v1),
            Ok(Ctl::Reject { .. })
        ));
    }
}
