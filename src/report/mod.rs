//! The session report: one row of figures, built once from what both ends measured, then written by one
//! exporter per format (summary CSV, latency distribution CSV, per-message CSV, the terminal table).

pub mod latency;
pub mod messages;
pub mod summary;
pub mod table;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::clock::OffsetEstimate;
use crate::config::{Protocol, Traffic};
use crate::control::RecvResults;
use crate::stats::{hist_from_bytes, new_ns_histogram, HistSummary};
use crate::transport::SendStats;

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
}

/// Round to the nanosecond when shown in µs: finer digits would be noise from float arithmetic.
fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn us(ns: i64) -> f64 {
    r3(ns as f64 / 1000.0)
}

/// The histogram a report's `latency_*` columns come from: round trips with --echo, else one-way latency.
pub fn latency_histogram(sender: Option<&SenderSide>, results: &RecvResults) -> Histogram<u64> {
    match sender.and_then(|s| s.rtt.as_ref()) {
        Some(h) => h.clone(),
        None => hist_from_bytes(&results.latency).unwrap_or_else(|_| new_ns_histogram()),
    }
}

impl SessionReport {
    /// Build the row. `sender` is None on a receiver keeping its own copy.
    pub fn build(
        meta: &SessionMeta,
        sender: Option<&SenderSide>,
        results: &RecvResults,
        complete: bool,
    ) -> SessionReport {
        let s = &results.seq;
        let udp = meta.protocol == Protocol::Udp;
        let lat = HistSummary::of(&latency_histogram(sender, results));
        let transit = hist_from_bytes(&results.transit)
            .ok()
            .and_then(|h| HistSummary::of(&h));
        let ipdv = hist_from_bytes(&results.ipdv)
            .ok()
            .and_then(|h| HistSummary::of(&h));
        // Goodput and message rate over the time the data took to get there: first send to last arrival on the
        // sender's clock (the receiver's arrival times are already offset-corrected).
        let first = sender
            .and_then(|x| x.send.first_send_ns)
            .or(results.first_recv_ns);
        let span_s = match (first, results.last_recv_ns) {
            (Some(a), Some(b)) if b > a => Some((b - a) as f64 / 1e9),
            _ => None,
        };
        let duration_s = match sender {
            Some(x) => match (x.send.first_send_ns, x.send.last_send_ns) {
                (Some(a), Some(b)) => Some(r3((b - a) as f64 / 1e9)),
                _ => None,
            },
            None => span_s.map(r3),
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
            duration_s,
            sent: s.sent,
            received: s.received,
            lost: s.lost,
            loss_pct: (s.sent > 0)
                .then(|| (s.lost as f64 * 100.0 / s.sent as f64 * 1e4).round() / 1e4),
            duplicates: s.duplicates,
            reordered: s.reordered,
            reorder_extent_max: s.reorder_extent_max,
            loss_bursts: s.loss_bursts,
            loss_burst_max: s.loss_burst_max,
            corrupt: results.corrupt,
            invalid: results.invalid,
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
            jitter_us: results.jitter_us.map(r3),
            ipdv_p50_us: f(|h| h.p50_us, &ipdv),
            ipdv_p99_us: f(|h| h.p99_us, &ipdv),
            pdv_us: results.pdv_us.map(r3),
            goodput_mbps: span_s.map(|t| r3(results.bytes as f64 * 8.0 / t / 1e6)),
            msgs_per_s: span_s.map(|t| r3(s.received as f64 / t)),
            recv_calls: results.recv_calls,
            split_messages: results.split_messages,
            coalesced_reads: results.coalesced_reads,
            tcp_connect_us: sender.and_then(|x| x.tcp_connect_us).map(r3),
            tcp_retransmits: sender.and_then(|x| x.tcp_retransmits),
            send_errors: sender.map(|x| x.send.send_errors),
            udp_rcvbuf_drops: if udp {
                Some(results.rcvbuf_drops.unwrap_or(0))
            } else {
                None
            },
            path_lost: if udp {
                Some(s.lost.saturating_sub(results.rcvbuf_drops.unwrap_or(0)))
            } else {
                None
            },
            reordered_3: s.reordered_3,
            clock_offset_us: sender.map(|x| us(x.clock.offset_ns)),
            clock_error_us: sender.map(|x| us(x.clock.error_ns)),
            complete,
            reads_one_message: results.reads_one_message,
            reads_partial_message: results.reads_partial,
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
        traffic: Traffic {
            count: 1,
            duration: None,
            rate: 1.0,
            size: 64,
            mix: None,
            schedule: Default::default(),
            echo: false,
            linger: None,
            per_message: false,
        },
    };
    SessionReport::build(&meta, None, &RecvResults::default(), false)
}
