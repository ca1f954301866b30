//! The session report: one row of figures, built once from what both ends measured, then written by one
//! exporter per format (summary CSV, latency distribution CSV, per-message CSV, the terminal table).

pub mod export;
pub mod latency;
pub mod messages;
pub mod out;
pub mod summary;
pub mod table;
pub mod trace;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::accounting::{Measured, SendStats};
use crate::clock::OffsetEstimate;
use crate::stats::{pdv_ns, HistSummary};
use crate::traffic::{Protocol, Traffic};

/// Bumped whenever a column changes meaning or position; columns are only ever appended.
pub const SCHEMA_VERSION: u32 = 1;

/// Who measured what about a session, besides the receiver's results.
#[derive(Debug, Clone)]
pub struct SessionMeta {
    pub run_id: String,
    pub started_utc: String,
    pub label: String,
    pub protocol: Protocol,
    pub peer: String,
    pub traffic: Traffic,
}

/// What only the sender knows.
#[derive(Debug, Clone, Default)]
pub struct SenderSide {
    pub send: SendStats,
    pub tcp_connect_us: Option<f64>,
    pub tcp_retransmits: Option<u64>,
    pub clock: OffsetEstimate,
    /// Round trips from echo replies, ns.
    pub rtt: Option<Histogram<u64>>,
    /// Echo: the messages whose reply came back (unique).
    pub echo_replies: Option<u64>,
}

/// One row of `summary.csv`. Field order is column order; `None` is an empty cell (does not apply).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct SessionReport {
    pub schema_version: u32,
    pub run_id: String,
    pub started_utc: String,
    pub label: String,
    pub protocol: &'static str,
    pub mode: &'static str,
    pub peer: String,
    pub msg_size: usize,
    pub rate_target: f64,
    pub duration_s: Option<f64>,
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub loss_pct: Option<f64>,
    pub duplicates: u64,
    pub reordered: u64,
    pub reorder_extent_max: u64,
    pub loss_bursts: u64,
    pub loss_burst_max: u64,
    pub corrupt: u64,
    pub invalid: u64,
    pub latency_min_us: Option<f64>,
    pub latency_mean_us: Option<f64>,
    pub latency_p50_us: Option<f64>,
    pub latency_p90_us: Option<f64>,
    pub latency_p99_us: Option<f64>,
    pub latency_p999_us: Option<f64>,
    pub latency_max_us: Option<f64>,
    pub latency_stddev_us: Option<f64>,
    pub transit_p50_us: Option<f64>,
    pub transit_p99_us: Option<f64>,
    pub transit_max_us: Option<f64>,
    pub jitter_us: Option<f64>,
    pub ipdv_p50_us: Option<f64>,
    pub ipdv_p99_us: Option<f64>,
    pub pdv_us: Option<f64>,
    pub goodput_mbps: Option<f64>,
    pub msgs_per_s: Option<f64>,
    pub recv_calls: u64,
    pub split_messages: u64,
    pub coalesced_reads: u64,
    pub tcp_connect_us: Option<f64>,
    pub tcp_retransmits: Option<u64>,
    pub send_errors: Option<u64>,
    pub udp_rcvbuf_drops: Option<u64>,
    pub path_lost: Option<u64>,
    pub reordered_3: u64,
    pub clock_offset_us: Option<f64>,
    pub clock_error_us: Option<f64>,
    pub complete: bool,
    /// Appended after `complete` (columns are only ever appended): receive calls that returned exactly one
    /// whole message, and those that returned part of one. With `coalesced_reads` they add up to `recv_calls`.
    pub reads_one_message: u64,
    pub reads_partial_message: u64,
    /// Appended: the impairment the run went through, as the flags that repeat it with its seed
    /// (`--loss 5% --delay 10ms --seed 7`); empty when none (loopback, a receiver's own copy, a plain send).
    pub impairment: String,
    /// Messages of the session that failed their MAC at the receiver (--key-file): forged, never counted.
    pub unauthenticated: u64,
    /// Echo: messages that never reached the receiver, and those it echoed whose reply never came back
    /// (`lost` is their sum: messages without a reply).
    pub echo_forward_lost: Option<u64>,
    pub echo_return_lost: Option<u64>,
    /// A session the receiver cut short: messages sent but still on their way at the cut (beyond the
    /// highest that had arrived); they are neither received nor lost, and not in `sent`.
    pub in_flight: u64,
}

/// Round to the nanosecond when shown in µs (and to the µs in seconds): finer digits would be noise from
/// float arithmetic.
fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn r6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

fn us(ns: i64) -> f64 {
    r3(ns as f64 / 1000.0)
}

/// The histogram a report's `latency_*` columns come from: round trips with --echo, else one-way latency.
pub fn latency_histogram<'a>(
    sender: Option<&'a SenderSide>,
    m: &'a Measured,
) -> &'a Histogram<u64> {
    match sender.and_then(|s| s.rtt.as_ref()) {
        Some(h) => h,
        None => &m.latency,
    }
}

impl SessionReport {
    /// Build the row. `sender` is None on a receiver keeping its own copy.
    pub fn build(
        meta: &SessionMeta,
        sender: Option<&SenderSide>,
        m: &Measured,
        complete: bool,
    ) -> SessionReport {
        let s = &m.seq;
        let udp = meta.protocol == Protocol::Udp;
        // `sent` is the sender's own count whenever there is a sender, less what was still in flight when the
        // receiver cut the session; lost follows from it and what arrived (or, with echo, what came back).
        let sent_total = sender.map_or(s.sent, |x| x.send.sent);
        let in_flight = if m.complete || sender.is_none() {
            0
        } else {
            sent_total.saturating_sub(s.next_expected.max(s.received))
        };
        let sent = sent_total - in_flight;
        let echo_replies = sender.and_then(|x| x.echo_replies);
        let received = echo_replies.unwrap_or(s.received);
        let lost = sent.saturating_sub(received);
        let lat = HistSummary::of(latency_histogram(sender, m));
        let transit = HistSummary::of(&m.transit);
        let ipdv = HistSummary::of(&m.ipdv);
        // duration_s, goodput and message rate: over the time the data took to get there, from the first send
        // to the last unique arrival, on the sender's clock (arrivals are offset-corrected). The sender knows
        // its first send; a receiver's own copy the earliest it saw (the peer's numbers then: hence i128).
        let first = sender
            .and_then(|x| x.send.first_send_ns)
            .or(m.first_send_ns);
        let span_s = match (first, m.last_recv_ns) {
            (Some(a), Some(b)) if b > a => Some((i128::from(b) - i128::from(a)) as f64 / 1e9),
            _ => None,
        };
        let f = |g: fn(&HistSummary) -> f64, h: &Option<HistSummary>| h.as_ref().map(|h| r3(g(h)));
        SessionReport {
            schema_version: SCHEMA_VERSION,
            run_id: meta.run_id.clone(),
            started_utc: meta.started_utc.clone(),
            label: meta.label.clone(),
            protocol: meta.protocol.name(),
            mode: if meta.traffic.echo { "echo" } else { "oneway" },
            peer: meta.peer.clone(),
            msg_size: meta.traffic.size,
            rate_target: meta.traffic.rate,
            duration_s: span_s.map(r6),
            sent,
            received,
            lost,
            loss_pct: (sent > 0).then(|| (lost as f64 * 100.0 / sent as f64 * 1e4).round() / 1e4),
            duplicates: s.duplicates,
            reordered: s.reordered,
            reorder_extent_max: s.reorder_extent_max,
            loss_bursts: s.loss_bursts,
            loss_burst_max: s.loss_burst_max,
            corrupt: m.corrupt,
            invalid: m.invalid,
            latency_min_us: f(|h| h.min_us, &lat),
            latency_mean_us: f(|h| h.mean_us, &lat),
            latency_p50_us: f(|h| h.p50_us, &lat),
            latency_p90_us: f(|h| h.p90_us, &lat),
            latency_p99_us: f(|h| h.p99_us, &lat),
            latency_p999_us: f(|h| h.p999_us, &lat),
            latency_max_us: f(|h| h.max_us, &lat),
            latency_stddev_us: f(|h| h.stddev_us, &lat),
            transit_p50_us: f(|h| h.p50_us, &transit),
            transit_p99_us: f(|h| h.p99_us, &transit),
            transit_max_us: f(|h| h.max_us, &transit),
            jitter_us: m.jitter_ns.map(|j| r3(j / 1000.0)),
            ipdv_p50_us: f(|h| h.p50_us, &ipdv),
            ipdv_p99_us: f(|h| h.p99_us, &ipdv),
            pdv_us: pdv_ns(&m.transit).map(|p| r3(p as f64 / 1000.0)),
            goodput_mbps: span_s.map(|t| r3(m.bytes as f64 * 8.0 / t / 1e6)),
            msgs_per_s: span_s.map(|t| r3(s.received as f64 / t)),
            recv_calls: m.recv_calls,
            split_messages: m.split_messages,
            coalesced_reads: m.coalesced_reads,
            tcp_connect_us: sender.and_then(|x| x.tcp_connect_us).map(r3),
            tcp_retransmits: sender.and_then(|x| x.tcp_retransmits),
            send_errors: sender.map(|x| x.send.send_errors),
            udp_rcvbuf_drops: if udp {
                Some(m.rcvbuf_drops.unwrap_or(0))
            } else {
                None
            },
            path_lost: if udp {
                Some(lost.saturating_sub(m.rcvbuf_drops.unwrap_or(0)))
            } else {
                None
            },
            reordered_3: s.reordered_3,
            clock_offset_us: sender.map(|x| us(x.clock.offset_ns)),
            clock_error_us: sender.map(|x| us(x.clock.error_ns)),
            complete,
            reads_one_message: m.reads_one_message,
            reads_partial_message: m.reads_partial,
            impairment: String::new(),
            unauthenticated: m.unauthenticated,
            echo_forward_lost: echo_replies.map(|_| sent.saturating_sub(s.received)),
            echo_return_lost: echo_replies.map(|e| s.received.saturating_sub(e)),
            in_flight,
        }
    }
}

/// Column names, in order, taken from the row type itself so the header can never drift from the rows.
pub fn columns() -> Vec<String> {
    let mut w = csv::Writer::from_writer(vec![]);
    w.serialize(sample_row()).expect("serialize sample row");
    let bytes = w.into_inner().expect("flush");
    let text = String::from_utf8(bytes).expect("utf8");
    text.lines()
        .next()
        .unwrap_or_default()
        .split(',')
        .map(str::to_string)
        .collect()
}

fn sample_row() -> SessionReport {
    let meta = SessionMeta {
        run_id: String::new(),
        started_utc: String::new(),
        label: String::new(),
        protocol: Protocol::Udp,
        peer: String::new(),
        traffic: Traffic::default(),
    };
    SessionReport::build(&meta, None, &Measured::default(), false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{new_ns_histogram, SeqSummary};

    fn meta(echo: bool) -> SessionMeta {
        SessionMeta {
            run_id: "r".into(),
            started_utc: "t".into(),
            label: "loss=20%".into(),
            protocol: Protocol::Udp,
            peer: "h".into(),
            traffic: Traffic {
                count: 10,
                rate: 10.0,
                size: 100,
                echo,
                ..Traffic::default()
            },
        }
    }

    fn hist(values: &[u64]) -> Histogram<u64> {
        let mut h = new_ns_histogram();
        for &v in values {
            h.record(v).unwrap();
        }
        h
    }

    /// Every derived column from a known cause: 10 sent, 8 arrived (800 B), one dropped by the socket.
    #[test]
    fn derived_columns_are_exact() {
        let results = Measured {
            complete: true,
            seq: SeqSummary {
                sent: 10,
                received: 8,
                lost: 2,
                loss_bursts: 1,
                loss_burst_max: 2,
                ..Default::default()
            },
            latency: hist(&[1_000, 2_000]),
            transit: hist(&[500, 1_500]),
            ipdv: hist(&[1_000]),
            bytes: 800,
            recv_calls: 8,
            reads_one_message: 8,
            rcvbuf_drops: Some(1),
            first_send_ns: Some(1_000_001_000),
            first_recv_ns: Some(1_000_001_000),
            last_recv_ns: Some(2_000_000_000),
            ..Default::default()
        };
        let mut send = SendStats::default();
        send.stamp(1_000_000_000);
        send.stamp(1_900_000_000);
        send.sent = 10;
        let side = SenderSide {
            send,
            clock: crate::clock::OffsetEstimate {
                offset_ns: 1_500,
                error_ns: 250,
                ..Default::default()
            },
            ..Default::default()
        };
        let r = SessionReport::build(&meta(false), Some(&side), &results, true);
        assert_eq!(r.loss_pct, Some(20.0));
        // First send (1.0 s) to last arrival (2.0 s): 1 s for 800 B and 8 messages.
        assert_eq!(r.goodput_mbps, Some(0.006));
        assert_eq!(r.msgs_per_s, Some(8.0));
        assert_eq!(r.duration_s, Some(1.0));
        assert_eq!((r.udp_rcvbuf_drops, r.path_lost), (Some(1), Some(1)));
        assert_eq!((r.tcp_connect_us, r.tcp_retransmits), (None, None));
        assert_eq!(
            (r.latency_min_us, r.latency_mean_us, r.latency_max_us),
            (Some(1.0), Some(1.5), Some(2.0))
        );
        assert_eq!((r.transit_p50_us, r.transit_max_us), (Some(0.5), Some(1.5)));
        assert_eq!(
            (r.clock_offset_us, r.clock_error_us),
            (Some(1.5), Some(0.25))
        );
        assert_eq!(
            (r.mode, r.send_errors, r.complete),
            ("oneway", Some(0), true)
        );
        // A receiver's own copy has no sender side: sender-only columns stay empty, and its duration starts at
        // the earliest send time it saw (1.000001 s here, its first arrival's).
        let own = SessionReport::build(&meta(false), None, &results, true);
        assert_eq!((own.send_errors, own.clock_offset_us), (None, None));
        assert_eq!(own.duration_s, Some(0.999999));
        // With --echo, latency_* are the sender's round trips.
        let mut rtt = new_ns_histogram();
        rtt.record(1_800).unwrap(); // below 2048 ns the histogram is exact to the ns
        let echo_side = SenderSide {
            rtt: Some(rtt),
            ..side.clone()
        };
        let e = SessionReport::build(&meta(true), Some(&echo_side), &results, true);
        assert_eq!(
            (e.mode, e.latency_p50_us, e.transit_p50_us),
            ("echo", Some(1.8), Some(0.5))
        );
    }

    #[test]
    fn header_is_the_documented_schema() {
        let cols = columns();
        assert_eq!(cols.first().map(String::as_str), Some("schema_version"));
        // The issue's 50 columns in order, `complete` the 50th; later columns are appended after it.
        assert_eq!(cols.len(), 57);
        assert_eq!(cols.iter().position(|c| c == "complete"), Some(49));
        assert_eq!(
            cols.iter().position(|c| c == "reads_partial_message"),
            Some(51)
        );
        assert_eq!(cols[52], "impairment");
        assert_eq!(cols[53], "unauthenticated");
        assert_eq!(cols.last().map(String::as_str), Some("in_flight"));
    }
}
