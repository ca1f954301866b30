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
    /// Round trips from echo replies, ns: application level, and kernel-stamped (see `EchoStats`).
    pub rtt: Option<Histogram<u64>>,
    pub rtt_kernel: Option<Histogram<u64>>,
    /// CPU time of the thread that read the echo replies, ns.
    pub echo_cpu_ns: Option<u64>,
    /// Echo: the messages whose reply came back (unique).
    pub echo_replies: Option<u64>,
    /// --load: the idle phase's round trips (echo), ns; `rtt` is then the loaded phase's.
    pub idle_rtt: Option<Histogram<u64>>,
    /// --load: what the bulk flows did.
    pub load: Option<crate::load::LoadStats>,
}

/// One row of `summary.csv`. Field order is column order; `None` is an empty cell (does not apply).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
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
    pub received: Option<u64>,
    pub lost: Option<u64>,
    pub loss_pct: Option<f64>,
    pub duplicates: Option<u64>,
    pub reordered: Option<u64>,
    pub reorder_extent_max: Option<u64>,
    pub loss_bursts: Option<u64>,
    pub loss_burst_max: Option<u64>,
    pub corrupt: Option<u64>,
    pub invalid: Option<u64>,
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
    pub recv_calls: Option<u64>,
    pub split_messages: Option<u64>,
    pub coalesced_reads: Option<u64>,
    pub tcp_connect_us: Option<f64>,
    pub tcp_retransmits: Option<u64>,
    pub send_errors: Option<u64>,
    pub udp_rcvbuf_drops: Option<u64>,
    pub path_lost: Option<u64>,
    pub reordered_3: Option<u64>,
    pub clock_offset_us: Option<f64>,
    pub clock_error_us: Option<f64>,
    pub complete: bool,
    /// Appended after `complete` (columns are only ever appended): receive calls that returned exactly one
    /// whole message, and those that returned part of one. With `coalesced_reads` they add up to `recv_calls`.
    pub reads_one_message: Option<u64>,
    pub reads_partial_message: Option<u64>,
    /// Appended: the impairment the run went through, as the flags that repeat it with its seed
    /// (`--loss 5% --delay 10ms --seed 7`); empty when none (loopback, a receiver's own copy, a plain send).
    pub impairment: String,
    /// Messages of the session that failed their MAC at the receiver (--key-file): forged, never counted.
    pub unauthenticated: Option<u64>,
    /// Echo: messages that never reached the receiver, and those it echoed whose reply never came back
    /// (`lost` is their sum: messages without a reply).
    pub echo_forward_lost: Option<u64>,
    pub echo_return_lost: Option<u64>,
    /// A session the receiver cut short: messages sent but still on their way at the cut (beyond the
    /// highest that had arrived); they are neither received nor lost, and not in `sent`.
    pub in_flight: Option<u64>,
    /// The receiver clock's rate against the sender's (a line fitted over the session's clock exchanges),
    /// parts per million; the fit's spread (part of clock_error_us), µs; clock steps detected.
    pub clock_drift_ppm: Option<f64>,
    pub clock_track_us: Option<f64>,
    pub clock_steps: Option<u32>,
    /// UDP datagrams of the session that the receiving host's kernel dropped for a bad checksum (damaged on
    /// the path): its checksum-error count during the session (host-wide), at most the socket's drops, which
    /// include them. `udp_rcvbuf_drops` is the rest.
    pub udp_checksum_drops: Option<u64>,
    /// Whether `udp_rcvbuf_drops` is exactly this session's: true when its datagrams came through its own
    /// socket (or the shared socket dropped nothing meanwhile).
    pub udp_rcvbuf_exact: Option<bool>,
    /// Echo, UDP: the round trip from the send call to the kernel's receive stamp on the reply, less the
    /// receiver's holding time (RFC 5357); `latency_*` are the application-level round trip. µs.
    pub rtt_kernel_p50_us: Option<f64>,
    pub rtt_kernel_p99_us: Option<f64>,
    pub rtt_kernel_p999_us: Option<f64>,
    /// Paced sessions: how late messages left against their schedule (send call − scheduled time), 99th
    /// percentile, µs. Large when the sender, not the network, was late.
    pub pacing_lag_p99_us: Option<f64>,
    /// CPU time per message, µs: the sender's data threads (send loop, echo reader) per message sent; the
    /// receiver's data thread per message received (UDP: its one receiving thread, which also serves any
    /// concurrent session).
    pub sender_cpu_us_per_msg: Option<f64>,
    pub receiver_cpu_us_per_msg: Option<f64>,
    /// UDP: datagrams handed to the kernel per send call with UDP GSO; 0 when not used.
    pub gso: Option<u32>,
    /// Messages per send call (sendmmsg batch, GSO buffer, or TCP write).
    pub msgs_per_write: Option<f64>,
    /// --load (issue 14): bulk TCP flows that shared the path during the loaded phase, what they delivered
    /// (Mbit/s over their active time) and retransmitted; the idle phase's latency (the first
    /// `idle_probes` messages; `latency_*`, transit, jitter and IPDV are then the loaded phase's); and the
    /// loaded phase's responsiveness in round trips per minute (`crate::load::rpm`). Empty without --load.
    pub load_flows: Option<u32>,
    pub load_goodput_mbps: Option<f64>,
    pub load_retransmits: Option<u64>,
    pub idle_latency_p50_us: Option<f64>,
    pub idle_latency_p99_us: Option<f64>,
    pub rpm: Option<f64>,
    /// --load: the congestion control the bulk flows ran.
    pub load_cc: Option<String>,
    /// --probe-on-load: round trips of probes interleaved with the bulk bytes of one load connection, from
    /// their scheduled time to their return, µs; --notsent-lowat: the TCP_NOTSENT_LOWAT the flows had, bytes.
    pub load_probe_rtt_p50_us: Option<f64>,
    pub load_probe_rtt_p99_us: Option<f64>,
    pub load_notsent_lowat: Option<u32>,
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
    /// Build the row. `sender` is None on a receiver keeping its own copy; `m` is None when the receiver sent
    /// no results (gone, silent): the row then holds what the sender knows, the receiver's columns empty.
    pub fn build(
        meta: &SessionMeta,
        sender: Option<&SenderSide>,
        m: Option<&Measured>,
        complete: bool,
    ) -> SessionReport {
        let mut r = SessionReport::identity(meta, complete);
        if let Some(x) = sender {
            r.sent = x.send.sent;
            r.send_errors = Some(x.send.send_errors);
            r.tcp_connect_us = x.tcp_connect_us.map(r3);
            r.tcp_retransmits = x.tcp_retransmits;
            r.clock_offset_us = Some(us(x.clock.offset_ns));
            r.clock_error_us = Some(us(x.clock.error_ns));
            r.clock_drift_ppm = Some(r3(x.clock.skew_ppb as f64 / 1000.0));
            r.clock_track_us = Some(us(x.clock.track_ns));
            r.clock_steps = Some(x.clock.steps);
            r.sending(x, meta.traffic.rate > 0.0);
        }
        if let Some(m) = m {
            r.delivery(sender, m, meta.protocol == Protocol::Udp);
            r.delays(sender, m);
        }
        r.under_load(sender, m);
        r
    }

    /// --load: the bulk flows, the idle phase's latency beside the loaded one, and the loaded phase's RPM.
    fn under_load(&mut self, sender: Option<&SenderSide>, m: Option<&Measured>) {
        if let Some(l) = sender.and_then(|x| x.load.as_ref()) {
            self.load_flows = Some(l.flows);
            self.load_cc = l.cc.clone();
            if let Some(h) = l.probe_rtt.as_ref().filter(|h| !h.is_empty()) {
                self.load_probe_rtt_p50_us = Some(r3(h.value_at_quantile(0.5) as f64 / 1000.0));
                self.load_probe_rtt_p99_us = Some(r3(h.value_at_quantile(0.99) as f64 / 1000.0));
            }
            self.load_goodput_mbps = l.goodput_mbps().map(r3);
            self.load_retransmits = Some(l.retransmits);
        }
        let echo = sender.and_then(|x| x.rtt.as_ref()).is_some();
        let idle = match echo {
            true => sender.and_then(|x| x.idle_rtt.as_ref()),
            false => m.and_then(|m| m.idle_latency.as_ref()),
        };
        let Some(idle) = idle else {
            return;
        };
        let q = |h: &Histogram<u64>, p: f64| r3(h.value_at_quantile(p) as f64 / 1000.0);
        if !idle.is_empty() {
            self.idle_latency_p50_us = Some(q(idle, 0.5));
            self.idle_latency_p99_us = Some(q(idle, 0.99));
        }
        // One way: the unloaded return path is taken to cost the idle phase's median.
        let return_ns = if echo { 0 } else { idle.value_at_quantile(0.5) };
        let loaded = m.map(|m| latency_histogram(sender, m));
        self.rpm = loaded
            .and_then(|h| crate::load::rpm(h, return_ns))
            .map(|x| x.round());
    }

    /// The columns every row has: who, what, when; every figure empty.
    fn identity(meta: &SessionMeta, complete: bool) -> SessionReport {
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
            // --load: the flows announced; the sender's row says how many ran (`under_load`).
            load_flows: (meta.traffic.idle_probes > 0).then_some(meta.traffic.load_flows),
            load_notsent_lowat: meta.traffic.notsent_lowat,
            complete,
            ..SessionReport::default()
        }
    }

    /// Counts: `sent` is the sender's own count whenever there is a sender, less what was still in flight when
    /// the receiver cut the session; lost follows from it and what arrived (or, with echo, what came back).
    fn delivery(&mut self, sender: Option<&SenderSide>, m: &Measured, udp: bool) {
        let s = &m.seq;
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
        self.sent = sent;
        self.in_flight = Some(in_flight);
        self.received = Some(received);
        self.lost = Some(lost);
        self.loss_pct = (sent > 0).then(|| (lost as f64 * 100.0 / sent as f64 * 1e4).round() / 1e4);
        self.echo_forward_lost = echo_replies.map(|_| sent.saturating_sub(s.received));
        self.echo_return_lost = echo_replies.map(|e| s.received.saturating_sub(e));
        self.duplicates = Some(s.duplicates);
        self.reordered = Some(s.reordered);
        self.reorder_extent_max = Some(s.reorder_extent_max);
        self.reordered_3 = Some(s.reordered_3);
        self.loss_bursts = Some(s.loss_bursts);
        self.loss_burst_max = Some(s.loss_burst_max);
        self.corrupt = Some(m.corrupt);
        self.invalid = Some(m.invalid);
        self.unauthenticated = Some(m.unauthenticated);
        self.recv_calls = Some(m.recv_calls);
        self.split_messages = Some(m.split_messages);
        self.coalesced_reads = Some(m.coalesced_reads);
        self.reads_one_message = Some(m.reads_one_message);
        self.reads_partial_message = Some(m.reads_partial);
        if udp {
            // The socket's drops include datagrams the kernel refused for a bad checksum; the host's count
            // of those during the session says how many (host-wide, so at most the socket's).
            let socket_drops = m.rcvbuf_drops.unwrap_or(0);
            let checksum = m.checksum_errors.unwrap_or(0).min(socket_drops);
            self.udp_rcvbuf_drops = Some(socket_drops - checksum);
            self.udp_checksum_drops = m.checksum_errors.map(|_| checksum);
            self.udp_rcvbuf_exact = m.rcvbuf_exact.or(Some(true));
            // Each lost message is attributed once: dropped by the socket, by the kernel's checksum check,
            // arrived damaged (counted corrupt), or lost on the path. Not when the socket's count is not this
            // session's in datagrams (a shared queue, or coalesced GRO buffers): then the rest is unknown,
            // and the cell stays empty rather than guess.
            let attributable = socket_drops == 0 || m.rcvbuf_exact != Some(false);
            self.path_lost =
                attributable.then(|| lost.saturating_sub(socket_drops).saturating_sub(m.corrupt));
        }
    }

    /// Delays and rates. duration_s, goodput and message rate are over the time the data took to get there,
    /// from the first send to the last unique arrival, on the sender's clock (arrivals are offset-corrected):
    /// the sender knows its first send; a receiver's own copy takes the earliest send time it saw.
    fn delays(&mut self, sender: Option<&SenderSide>, m: &Measured) {
        let lat = HistSummary::of(latency_histogram(sender, m));
        let transit = HistSummary::of(&m.transit);
        let ipdv = HistSummary::of(&m.ipdv);
        let first = sender
            .and_then(|x| x.send.first_send_ns)
            .or(m.first_send_ns);
        // The peer's numbers on a receiver's own copy: hence i128.
        let span_s = match (first, m.last_recv_ns) {
            (Some(a), Some(b)) if b > a => Some((i128::from(b) - i128::from(a)) as f64 / 1e9),
            _ => None,
        };
        let f = |g: fn(&HistSummary) -> f64, h: &Option<HistSummary>| h.as_ref().map(|h| r3(g(h)));
        self.duration_s = span_s.map(r6);
        self.latency_min_us = f(|h| h.min_us, &lat);
        self.latency_mean_us = f(|h| h.mean_us, &lat);
        self.latency_p50_us = f(|h| h.p50_us, &lat);
        self.latency_p90_us = f(|h| h.p90_us, &lat);
        self.latency_p99_us = f(|h| h.p99_us, &lat);
        self.latency_p999_us = f(|h| h.p999_us, &lat);
        self.latency_max_us = f(|h| h.max_us, &lat);
        self.latency_stddev_us = f(|h| h.stddev_us, &lat);
        self.transit_p50_us = f(|h| h.p50_us, &transit);
        self.transit_p99_us = f(|h| h.p99_us, &transit);
        self.transit_max_us = f(|h| h.max_us, &transit);
        self.jitter_us = m.jitter_ns.map(|j| r3(j / 1000.0));
        self.ipdv_p50_us = f(|h| h.p50_us, &ipdv);
        self.ipdv_p99_us = f(|h| h.p99_us, &ipdv);
        self.pdv_us = pdv_ns(&m.transit).map(|p| r3(p as f64 / 1000.0));
        self.goodput_mbps = span_s.map(|t| r3(m.bytes as f64 * 8.0 / t / 1e6));
        self.msgs_per_s = span_s.map(|t| r3(m.seq.received as f64 / t));
        self.receiver_cpu_us_per_msg = m
            .cpu_ns
            .map(|c| r3(c as f64 / 1000.0 / m.seq.received.max(1) as f64));
    }

    /// What the sender measured of its own sending: lateness, CPU, calls, and the kernel-stamped round trip.
    fn sending(&mut self, x: &SenderSide, paced: bool) {
        let s = &x.send;
        let q = |h: &Histogram<u64>, p: f64| r3(h.value_at_quantile(p) as f64 / 1000.0);
        if paced {
            self.pacing_lag_p99_us = s.lag.as_ref().filter(|h| !h.is_empty()).map(|h| q(h, 0.99));
        }
        let cpu = s.cpu_ns.map(|c| c + x.echo_cpu_ns.unwrap_or(0));
        self.sender_cpu_us_per_msg = cpu.map(|c| r3(c as f64 / 1000.0 / s.sent.max(1) as f64));
        self.gso = (self.protocol == "udp").then_some(s.gso);
        self.msgs_per_write = (s.calls > 0).then(|| r3(s.sent as f64 / s.calls as f64));
        if let Some(h) = x.rtt_kernel.as_ref().filter(|h| !h.is_empty()) {
            self.rtt_kernel_p50_us = Some(q(h, 0.5));
            self.rtt_kernel_p99_us = Some(q(h, 0.99));
            self.rtt_kernel_p999_us = Some(q(h, 0.999));
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
    SessionReport::build(&meta, None, Some(&Measured::default()), false)
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
            cpu_ns: Some(4_000),
            ..Default::default()
        };
        let mut send = SendStats::default();
        // Ten messages in four calls: one left 1.5 µs late, the others on time (the histogram is exact to the
        // ns below 2048 ns; a zero lag is recorded as 1 ns).
        send.stamp(1_000_000_000, 1_000_000_000);
        for i in 1..9 {
            send.stamp(1_000_000_000 + i, 1_000_000_000 + i);
        }
        send.stamp(1_900_001_500, 1_900_000_000);
        send.sent = 10;
        send.calls = 4;
        send.gso = 64;
        send.cpu_ns = Some(25_000);
        let side = SenderSide {
            send,
            clock: crate::clock::OffsetEstimate {
                offset_ns: 1_500,
                error_ns: 250,
                ..Default::default()
            },
            ..Default::default()
        };
        let r = SessionReport::build(&meta(false), Some(&side), Some(&results), true);
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
        // The sending figures: p99 of ten lags is the late one; the sender's 25 µs of CPU over 10 messages sent,
        // the receiver's 4 µs over 8 received; ten messages in four calls.
        assert_eq!(r.pacing_lag_p99_us, Some(1.5));
        assert_eq!(
            (r.sender_cpu_us_per_msg, r.receiver_cpu_us_per_msg),
            (Some(2.5), Some(0.5))
        );
        assert_eq!((r.msgs_per_write, r.gso), (Some(2.5), Some(64)));
        // A receiver's own copy has no sender side: sender-only columns stay empty, and its duration starts at
        // the earliest send time it saw (1.000001 s here, its first arrival's).
        let own = SessionReport::build(&meta(false), None, Some(&results), true);
        assert_eq!((own.send_errors, own.clock_offset_us), (None, None));
        assert_eq!(
            (own.pacing_lag_p99_us, own.sender_cpu_us_per_msg),
            (None, None)
        );
        assert_eq!(own.duration_s, Some(0.999999));
        // With --echo, latency_* are the sender's round trips.
        let mut rtt = new_ns_histogram();
        rtt.record(1_800).unwrap(); // below 2048 ns the histogram is exact to the ns
        let echo_side = SenderSide {
            rtt: Some(rtt),
            ..side.clone()
        };
        let e = SessionReport::build(&meta(true), Some(&echo_side), Some(&results), true);
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
        assert_eq!(cols.len(), 80);
        assert_eq!(cols.iter().position(|c| c == "complete"), Some(49));
        assert_eq!(
            cols.iter().position(|c| c == "reads_partial_message"),
            Some(51)
        );
        assert_eq!(cols[52], "impairment");
        assert_eq!(cols[53], "unauthenticated");
        assert_eq!(cols[56], "in_flight");
        assert_eq!(cols[59], "clock_steps");
        assert_eq!(cols[61], "udp_rcvbuf_exact");
        assert_eq!(cols[62], "rtt_kernel_p50_us");
        assert_eq!(cols[65], "pacing_lag_p99_us");
        assert_eq!(cols[69], "msgs_per_write");
        // Issue 14, latency under load: appended as one block.
        assert_eq!(
            cols[70..],
            [
                "load_flows",
                "load_goodput_mbps",
                "load_retransmits",
                "idle_latency_p50_us",
                "idle_latency_p99_us",
                "rpm",
                "load_cc",
                "load_probe_rtt_p50_us",
                "load_probe_rtt_p99_us",
                "load_notsent_lowat"
            ]
        );
    }
}
