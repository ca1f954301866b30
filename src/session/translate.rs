//! Between the wire's types (`proto`) and sockbench's own (`traffic`, `accounting`, `clock`, `trace`). Outgoing
//! conversions are plain; incoming ones validate every number the peer sent and say what was wrong, so nothing
//! past this file holds a value that can make arithmetic panic or memory grow without bound.

use std::time::Duration;

use crate::accounting::{Measured, Row, Status};
use crate::clock::{ClockModel, OffsetEstimate};
use crate::load::LoadDirection;
use crate::proto;
use crate::stats::{hist_from_buckets, hist_to_buckets, SeqSummary};
use crate::trace::Event;
use crate::traffic::Schedule;
use crate::traffic::{Protocol, SizeMix, Traffic};
use crate::wire;

/// The slowest paced rate accepted, messages per second: one message in 1000 s. Slower rates make schedule
/// arithmetic meaningless (and used to panic converting the gap to a Duration).
pub const MIN_RATE: f64 = 1e-3;
/// The fastest rate a hello may announce, messages per second.
pub const MAX_RATE: f64 = 1e9;
/// Most sizes in a `--size A,B,C` list.
pub const MAX_SIZE_LIST: usize = 1024;
/// The longest linger a hello may ask for.
pub const MAX_LINGER: Duration = Duration::from_secs(60);
/// Most trace events a receiver may send back.
pub const MAX_TRACE_EVENTS: usize = 10_000;

pub fn transport(p: Protocol) -> proto::Transport {
    match p {
        Protocol::Tcp => proto::Transport::Tcp,
        Protocol::Udp => proto::Transport::Udp,
    }
}

pub fn protocol(t: proto::Transport) -> Protocol {
    match t {
        proto::Transport::Tcp => Protocol::Tcp,
        proto::Transport::Udp => Protocol::Udp,
    }
}

fn ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// What the sender announces.
pub fn traffic_spec(t: &Traffic) -> proto::TrafficSpec {
    proto::TrafficSpec {
        count: t.count,
        duration_ns: t.duration.map(ns),
        rate: t.rate,
        size: t.size as u64,
        sizes: t.mix.as_ref().map(|m| match m {
            SizeMix::Range(lo, hi) => proto::Sizes::Range {
                min: *lo as u64,
                max: *hi as u64,
            },
            SizeMix::List(l) => proto::Sizes::List {
                sizes: l.iter().map(|&n| n as u64).collect(),
            },
        }),
        schedule: match t.schedule {
            Schedule::Periodic => proto::ScheduleKind::Periodic,
            Schedule::Poisson => proto::ScheduleKind::Poisson,
        },
        echo: t.echo,
        linger_ns: t.linger.map(ns),
        per_message: t.per_message,
        gso: t.gso,
        idle_probes: t.idle_probes,
        load_flows: if t.load_direction != LoadDirection::Down {
            u64::from(t.load_flows)
        } else {
            0
        },
        load_down_flows: if t.load_direction != LoadDirection::Up {
            u64::from(t.load_flows)
        } else {
            0
        },
    }
}

/// A hello's traffic, checked as a whole against itself and against `protocol`'s limits (the receiver's own
/// caps are checked apart, by `Caps::refuse`); `mac`: the messages carry a MAC trailer (--key-file). Err says
/// what is wrong, for the Reject.
pub fn traffic(s: &proto::TrafficSpec, protocol: Protocol, mac: bool) -> Result<Traffic, String> {
    let size =
        usize::try_from(s.size).map_err(|_| format!("message size {} is not a size", s.size))?;
    let trailer = if mac { wire::MAC_TRAILER_LEN } else { 0 };
    let least = wire::HEADER_LEN + trailer;
    if size < least || size > protocol.max_size() {
        return Err(format!(
            "message size {size} is outside {least}..{} bytes for {protocol}",
            protocol.max_size()
        ));
    }
    if s.count == 0 {
        return Err("a session of 0 messages".into());
    }
    if !s.rate.is_finite()
        || s.rate < 0.0
        || (s.rate > 0.0 && s.rate < MIN_RATE)
        || s.rate > MAX_RATE
    {
        return Err(format!(
            "rate {} msg/s is not 0 (unpaced) or within {MIN_RATE}..{MAX_RATE}",
            s.rate
        ));
    }
    let in_range = |n: u64| n >= least as u64 && n <= s.size;
    let mix = match &s.sizes {
        None => None,
        Some(proto::Sizes::Range { min, max }) => {
            if !(in_range(*min) && *max == s.size && min <= max) {
                return Err(format!(
                    "size range {min}..{max} must run upwards from {least} bytes to the message size {}",
                    s.size
                ));
            }
            Some(SizeMix::Range(*min as usize, *max as usize))
        }
        Some(proto::Sizes::List { sizes }) => {
            if sizes.is_empty() || sizes.len() > MAX_SIZE_LIST {
                return Err(format!(
                    "a size list must hold 1 to {MAX_SIZE_LIST} sizes, not {}",
                    sizes.len()
                ));
            }
            if !sizes.iter().all(|&n| in_range(n)) || sizes.iter().max() != Some(&s.size) {
                return Err(format!(
                    "every listed size must be {least}..{} bytes, the largest equal to the message size",
                    s.size
                ));
            }
            Some(SizeMix::List(sizes.iter().map(|&n| n as usize).collect()))
        }
    };
    let min_size = mix.as_ref().map_or(size, |m| m.min());
    if s.echo && min_size < wire::MIN_ECHO_LEN + trailer {
        return Err(format!(
            "echo needs messages of {} bytes or more",
            wire::MIN_ECHO_LEN + trailer
        ));
    }
    if s.duration_ns == Some(0) {
        return Err("a duration of 0".into());
    }
    let linger = s.linger_ns.map(Duration::from_nanos);
    if linger.is_some_and(|l| l > MAX_LINGER) {
        return Err(format!(
            "a linger longer than {}",
            humantime::format_duration(MAX_LINGER)
        ));
    }
    let (load_flows, load_direction) = load(s)?;
    Ok(Traffic {
        count: s.count,
        duration: s.duration_ns.map(Duration::from_nanos),
        rate: s.rate,
        size,
        mix,
        schedule: match s.schedule {
            proto::ScheduleKind::Periodic => Schedule::Periodic,
            proto::ScheduleKind::Poisson => Schedule::Poisson,
        },
        echo: s.echo,
        linger,
        per_message: s.per_message,
        gso: s.gso,
        // Any number: it only splits the sequence numbers in two.
        idle_probes: s.idle_probes,
        load_flows,
        load_direction,
        // How the sender paces and waits is its own business.
        ..Traffic::default()
    })
}

/// A hello's --load: flows each way (at most `MAX_LOAD_FLOWS`, as many each way when both), as the sender's
/// count and direction.
fn load(s: &proto::TrafficSpec) -> Result<(u32, LoadDirection), String> {
    let (up, down) = (s.load_flows, s.load_down_flows);
    if up.max(down) > u64::from(crate::load::MAX_LOAD_FLOWS) {
        return Err(format!(
            "{} load flows, more than {} each way",
            up.max(down),
            crate::load::MAX_LOAD_FLOWS
        ));
    }
    let dir = match (up, down) {
        (0, 0) | (_, 0) => LoadDirection::Up,
        (0, _) => LoadDirection::Down,
        _ if up == down => LoadDirection::Both,
        _ => {
            return Err(format!(
                "{up} load flows one way and {down} the other: both ways means as many each way"
            ))
        }
    };
    Ok((up.max(down) as u32, dir))
}

/// The estimate and the line the receiver corrects arrivals with.
pub fn clock_estimate(c: &OffsetEstimate, m: &ClockModel) -> proto::ClockEstimate {
    proto::ClockEstimate {
        offset_ns: m.offset_ns,
        ref_ns: m.ref_ns,
        skew_ppb: m.skew_ppb,
        error_ns: c.error_ns,
        min_rtt_ns: c.min_rtt_ns,
        max_rtt_ns: c.max_rtt_ns,
        same_host: c.same_host,
    }
}

/// The line the receiver corrects arrivals with, from the sender's estimate (a peer's numbers: the skew is
/// bounded to ±10 %, far beyond any clock that keeps time).
pub fn clock_model(c: &proto::ClockEstimate) -> ClockModel {
    ClockModel {
        ref_ns: c.ref_ns,
        offset_ns: c.offset_ns,
        skew_ppb: c.skew_ppb.clamp(-100_000_000, 100_000_000),
    }
}

fn status(s: Status) -> proto::Status {
    match s {
        Status::Ok => proto::Status::Ok,
        Status::Reordered => proto::Status::Reordered,
        Status::Duplicate => proto::Status::Duplicate,
        Status::Corrupt => proto::Status::Corrupt,
        Status::Lost => proto::Status::Lost,
    }
}

/// A row for the wire, its times as offsets from `base_ns`.
pub fn message_row(r: &Row, base_ns: i64) -> proto::MessageRow {
    let rel = |t: i64| t.saturating_sub(base_ns);
    proto::MessageRow(
        r.seq,
        rel(r.sched_ns),
        rel(r.send_ns),
        rel(r.recv_ns),
        status(r.status),
    )
}

/// A row from the wire: offsets from the frame's `base_ns` back to times (saturating: both are the peer's
/// numbers).
pub fn row(r: &proto::MessageRow, base_ns: i64) -> Row {
    let proto::MessageRow(seq, sched_ns, send_ns, recv_ns, st) = *r;
    Row {
        seq,
        sched_ns: base_ns.saturating_add(sched_ns),
        send_ns: base_ns.saturating_add(send_ns),
        recv_ns: base_ns.saturating_add(recv_ns),
        status: match st {
            proto::Status::Ok => Status::Ok,
            proto::Status::Reordered => Status::Reordered,
            proto::Status::Duplicate => Status::Duplicate,
            proto::Status::Corrupt => Status::Corrupt,
            proto::Status::Lost => Status::Lost,
        },
    }
}

fn trace_event(e: &Event) -> proto::TraceEvent {
    proto::TraceEvent {
        t_ns: e.t_ns,
        side: e.side.clone(),
        call: e.call.clone(),
        fd: e.fd,
        detail: e.detail.clone(),
        result: e.result.clone(),
        duration_ns: e.duration_ns,
        count: e.count,
        total_ns: e.total_ns,
        p50_ns: e.p50_ns,
        p99_ns: e.p99_ns,
    }
}

fn event(e: &proto::TraceEvent) -> Event {
    Event {
        t_ns: e.t_ns,
        side: e.side.clone(),
        call: e.call.clone(),
        fd: e.fd,
        detail: e.detail.clone(),
        result: e.result.clone(),
        duration_ns: e.duration_ns,
        count: e.count,
        total_ns: e.total_ns,
        p50_ns: e.p50_ns,
        p99_ns: e.p99_ns,
    }
}

fn seq_counts(s: &SeqSummary) -> proto::SeqCounts {
    proto::SeqCounts {
        sent: s.sent,
        received: s.received,
        lost: s.lost,
        duplicates: s.duplicates,
        reordered: s.reordered,
        reorder_extent_max: s.reorder_extent_max,
        reordered_3: s.reordered_3,
        loss_bursts: s.loss_bursts,
        loss_burst_max: s.loss_burst_max,
        out_of_range: s.out_of_range,
        next_expected: s.next_expected,
    }
}

fn seq_summary(s: &proto::SeqCounts) -> SeqSummary {
    SeqSummary {
        sent: s.sent,
        received: s.received,
        lost: s.lost,
        duplicates: s.duplicates,
        reordered: s.reordered,
        reorder_extent_max: s.reorder_extent_max,
        reordered_3: s.reordered_3,
        loss_bursts: s.loss_bursts,
        loss_burst_max: s.loss_burst_max,
        out_of_range: s.out_of_range,
        next_expected: s.next_expected,
    }
}

/// What the receiver sends back.
pub fn results(m: &Measured) -> proto::Results {
    proto::Results {
        complete: m.complete,
        note: m.note.clone(),
        seq: seq_counts(&m.seq),
        latency: hist_to_buckets(&m.latency),
        idle_latency: m
            .idle_latency
            .as_ref()
            .map(hist_to_buckets)
            .unwrap_or_default(),
        transit: hist_to_buckets(&m.transit),
        ipdv: hist_to_buckets(&m.ipdv),
        jitter_ns: m.jitter_ns,
        negative_delays: m.negative_delays,
        corrupt: m.corrupt,
        invalid: m.invalid,
        unauthenticated: m.unauthenticated,
        bytes: m.bytes,
        recv_calls: m.recv_calls,
        split_messages: m.split_messages,
        coalesced_reads: m.coalesced_reads,
        reads_one_message: m.reads_one_message,
        reads_partial: m.reads_partial,
        rcvbuf_drops: m.rcvbuf_drops,
        rcvbuf_exact: m.rcvbuf_exact,
        checksum_errors: m.checksum_errors,
        cpu_ns: m.cpu_ns,
        first_recv_ns: m.first_recv_ns,
        last_recv_ns: m.last_recv_ns,
        lost_runs: m.lost_runs.clone(),
        echoed: m.echoed,
        rows_not_kept: m.rows_not_kept,
        trace: m.trace.iter().map(trace_event).collect(),
    }
}

/// The receiver's results as the sender takes them: histograms rebuilt and checked, the note and trace
/// bounded. Err names what could not be a sockbench receiver's answer.
pub fn measured(r: &proto::Results) -> Result<Measured, String> {
    if r.trace.len() > MAX_TRACE_EVENTS {
        return Err(format!("{} trace events", r.trace.len()));
    }
    if r.jitter_ns.is_some_and(|j| !j.is_finite() || j < 0.0) {
        return Err("a jitter that is not a finite, non-negative number".into());
    }
    Ok(Measured {
        complete: r.complete,
        note: r.note.as_ref().map(|n| n.chars().take(500).collect()),
        seq: seq_summary(&r.seq),
        latency: hist_from_buckets(&r.latency)?,
        idle_latency: match r.idle_latency.is_empty() {
            true => None,
            false => Some(hist_from_buckets(&r.idle_latency)?),
        },
        transit: hist_from_buckets(&r.transit)?,
        ipdv: hist_from_buckets(&r.ipdv)?,
        jitter_ns: r.jitter_ns,
        negative_delays: r.negative_delays,
        corrupt: r.corrupt,
        invalid: r.invalid,
        unauthenticated: r.unauthenticated,
        bytes: r.bytes,
        recv_calls: r.recv_calls,
        split_messages: r.split_messages,
        coalesced_reads: r.coalesced_reads,
        reads_one_message: r.reads_one_message,
        reads_partial: r.reads_partial,
        rcvbuf_drops: r.rcvbuf_drops,
        rcvbuf_exact: r.rcvbuf_exact,
        checksum_errors: r.checksum_errors,
        cpu_ns: r.cpu_ns,
        // The sender knows its own first send; the receiver's guess is not needed.
        first_send_ns: None,
        first_recv_ns: r.first_recv_ns,
        last_recv_ns: r.last_recv_ns,
        lost_runs: r.lost_runs.clone(),
        echoed: r.echoed,
        rows_not_kept: r.rows_not_kept,
        trace: r.trace.iter().map(event).collect(),
    })
}

/// Do the receiver's figures hold against what this sender knows it sent (`sent` messages of at most `size`
/// bytes)? A receiver may only count what arrived: never more unique messages than were sent, every lost number
/// among those sent, ordering figures within what arrived. Err names the first figure that does not hold.
pub fn check_results(m: &Measured, sent: u64, size: usize) -> Result<(), String> {
    let s = &m.seq;
    let bad = |what: String| Err(what);
    // A complete session's receiver had the sender's Done; one it cut short counts only what arrived.
    if (m.complete && s.sent != sent) || s.sent > sent {
        return bad(format!(
            "it counts {} sent where this sender sent {sent}",
            s.sent
        ));
    }
    if s.next_expected > sent {
        return bad(format!(
            "it saw sequence number {} of {sent} sent",
            s.next_expected - 1
        ));
    }
    if s.received > sent {
        return bad(format!("it claims {} received of {sent} sent", s.received));
    }
    if s.lost != s.sent.saturating_sub(s.received) {
        return bad(format!(
            "it claims {} lost with {} of {} received",
            s.lost, s.received, s.sent
        ));
    }
    if s.duplicates > sent {
        return bad(format!(
            "it claims {} duplicates of {sent} sent",
            s.duplicates
        ));
    }
    if s.reordered > s.received || s.reorder_extent_max > s.received || s.reordered_3 > s.reordered
    {
        return bad(format!(
            "its reordering figures ({} reordered, extent {}, {} 3-reordered) exceed the {} received",
            s.reordered, s.reorder_extent_max, s.reordered_3, s.received
        ));
    }
    if s.loss_bursts > s.lost || s.loss_burst_max > s.lost {
        return bad(format!(
            "it claims {} loss bursts, the longest {}, with {} lost",
            s.loss_bursts, s.loss_burst_max, s.lost
        ));
    }
    let idle = m.idle_latency.as_ref().map_or(0, |h| h.len());
    for (name, n) in [
        ("latencies", m.latency.len().saturating_add(idle)),
        ("transit times", m.transit.len()),
    ] {
        if n > s.received {
            return bad(format!("it holds {n} {name} for {} received", s.received));
        }
    }
    if m.bytes > s.received.saturating_mul(size as u64) {
        return bad(format!(
            "it claims {} bytes in {} messages of at most {size}",
            m.bytes, s.received
        ));
    }
    if m.echoed > s.received.saturating_add(s.duplicates) {
        return bad(format!(
            "it claims {} echo replies for {} arrivals",
            m.echoed, s.received
        ));
    }
    let mut next = 0u64;
    let mut listed = 0u64;
    for &(first, len) in &m.lost_runs {
        let end = first
            .checked_add(len)
            .filter(|&e| len > 0 && first >= next && e <= sent);
        let Some(end) = end else {
            return bad(format!(
                "its lost runs are not ascending, disjoint runs among the {sent} sent"
            ));
        };
        next = end;
        listed += len;
    }
    if listed > s.lost {
        return bad(format!(
            "it lists {listed} lost numbers with {} lost",
            s.lost
        ));
    }
    Ok(())
}

/// The most per-message rows a receiver may send for a session of `sent` messages (each arrival, duplicate or
/// damaged copy has one; lost numbers come apart): beyond it the rows are not written and the figures marked.
pub fn max_rows(sent: u64) -> u64 {
    sent.saturating_mul(2).saturating_add(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row crosses as offsets from its frame's base and comes back whole; a hostile base or offset
    /// saturates instead of wrapping.
    #[test]
    fn rows_cross_as_offsets_from_the_frame_base() {
        let r = Row {
            seq: 9,
            sched_ns: 1_764_460_000_000_000_000,
            send_ns: 1_764_460_000_000_000_100,
            recv_ns: 1_764_460_000_000_095_000,
            status: Status::Reordered,
        };
        let base = r.send_ns;
        let w = message_row(&r, base);
        assert_eq!((w.1, w.2, w.3), (-100, 0, 94_900));
        assert_eq!(row(&w, base), r);
        let hostile = proto::MessageRow(1, i64::MAX, i64::MIN, 5, proto::Status::Ok);
        let back = row(&hostile, i64::MAX);
        assert_eq!(
            (back.sched_ns, back.send_ns, back.recv_ns),
            (i64::MAX, -1, i64::MAX)
        );
    }

    fn spec() -> proto::TrafficSpec {
        traffic_spec(&Traffic::default())
    }

    #[test]
    fn traffic_round_trips() {
        let t = Traffic {
            mix: Some(SizeMix::List(vec![64, 512, 1400])),
            size: 1400,
            echo: true,
            linger: Some(Duration::from_millis(700)),
            duration: Some(Duration::from_secs(3)),
            // Mixed sizes never go through GSO (the configuration says so).
            gso: false,
            ..Traffic::default()
        };
        assert_eq!(traffic(&traffic_spec(&t), Protocol::Udp, false).unwrap(), t);
    }

    /// Every way a hello's traffic can be impossible is refused with a reason, never a panic later.
    #[test]
    fn impossible_traffic_is_refused() {
        let bad = |f: &dyn Fn(&mut proto::TrafficSpec)| {
            let mut s = spec();
            f(&mut s);
            traffic(&s, Protocol::Udp, false).unwrap_err()
        };
        assert!(bad(&|s| s.size = 10).contains("outside"));
        assert!(bad(&|s| s.size = 70_000).contains("outside"));
        assert!(
            bad(&|s| s.size = u64::MAX).contains("outside")
                || bad(&|s| s.size = u64::MAX).contains("size")
        );
        assert!(bad(&|s| s.count = 0).contains("0 messages"));
        assert!(bad(&|s| s.rate = 1e-16).contains("rate"));
        assert!(bad(&|s| s.rate = f64::NAN).contains("rate"));
        assert!(bad(&|s| s.rate = -1.0).contains("rate"));
        assert!(bad(&|s| s.rate = f64::INFINITY).contains("rate"));
        assert!(bad(&|s| {
            s.size = 100;
            s.sizes = Some(proto::Sizes::Range { min: 100, max: 99 })
        })
        .contains("upwards"));
        assert!(
            bad(&|s| s.sizes = Some(proto::Sizes::List { sizes: vec![] })).contains("size list")
        );
        assert!(
            bad(&|s| s.sizes = Some(proto::Sizes::List { sizes: vec![64, 9] })).contains("listed")
        );
        assert!(bad(&|s| {
            s.echo = true;
            s.size = 48
        })
        .contains("echo"));
        assert!(bad(&|s| s.duration_ns = Some(0)).contains("duration"));
        assert!(bad(&|s| s.linger_ns = Some(u64::MAX)).contains("linger"));
    }

    /// A lying receiver is caught on each figure it could inflate.
    #[test]
    fn results_that_do_not_add_up_are_caught() {
        let mut a = crate::accounting::Account::new(9, 10, 64, true);
        for seq in [0, 2, 1] {
            let mut m = wire::template(9, 64, false);
            wire::stamp(&mut m, seq, 1_000, 2_000);
            let h = wire::Header::parse(&m).unwrap();
            a.on_message(&m, &h, 10_000);
        }
        let honest = a.measured(Some(5), true, None);
        assert_eq!(check_results(&honest, 5, 64), Ok(()));
        assert_eq!(honest.lost_runs, vec![(3, 2)]);
        let lie = |f: &dyn Fn(&mut Measured)| {
            let mut m = honest.clone();
            f(&mut m);
            check_results(&m, 5, 64).unwrap_err()
        };
        assert!(lie(&|m| m.seq.sent = 1000).contains("1000 sent where this sender sent 5"));
        assert!(lie(&|m| m.seq.received = 5000).contains("5000 received of 5"));
        assert!(lie(&|m| m.seq.lost = u64::MAX).contains("lost"));
        assert!(lie(&|m| m.seq.reordered = 4).contains("reordering"));
        assert!(lie(&|m| m.bytes = 10_000).contains("bytes"));
        assert!(lie(&|m| m.lost_runs = vec![(3, 1_000_000_000_000)]).contains("lost runs"));
        assert!(lie(&|m| m.lost_runs = vec![(3, 1), (3, 1)]).contains("lost runs"));
        assert!(lie(&|m| m.seq.duplicates = 6).contains("duplicates"));
        assert_eq!(
            check_results(&honest, 6, 64).unwrap_err(),
            "it counts 5 sent where this sender sent 6"
        );
    }

    #[test]
    fn results_round_trip_and_hostile_ones_are_refused() {
        let mut a = crate::accounting::Account::new(9, 4, 64, true);
        let mut m = wire::template(9, 64, false);
        wire::stamp(&mut m, 0, 1_000, 2_000);
        let h = wire::Header::parse(&m).unwrap();
        a.on_message(&m, &h, 10_000);
        let measured_here = a.measured(Some(4), true, None);
        let back = measured(&results(&measured_here)).unwrap();
        assert_eq!(back.seq, measured_here.seq);
        assert_eq!(back.latency, measured_here.latency);
        let mut hostile = results(&measured_here);
        hostile.latency = vec![(5, 1), (4, 1)];
        assert!(measured(&hostile).is_err());
        let mut hostile = results(&measured_here);
        hostile.jitter_ns = Some(f64::NAN);
        assert!(measured(&hostile).is_err());
    }

    /// --load: the idle phase's latencies travel apart, and together with the loaded ones they cannot exceed
    /// what arrived; without an idle phase the field is absent.
    #[test]
    fn idle_latencies_round_trip_and_are_bounded_by_what_arrived() {
        let mut a = crate::accounting::Account::new(9, 4, 64, false);
        a.set_idle_probes(1);
        for seq in [0, 1] {
            let mut m = wire::template(9, 64, false);
            wire::stamp(&mut m, seq, 1_000, 2_000);
            a.on_message(&m, &wire::Header::parse(&m).unwrap(), 10_000);
        }
        let here = a.measured(Some(2), true, None);
        let r = results(&here);
        assert_eq!(r.idle_latency.len(), 1);
        let back = measured(&r).unwrap();
        assert_eq!(back.idle_latency, here.idle_latency);
        assert_eq!(check_results(&back, 2, 64), Ok(()));
        let mut hostile = r.clone();
        hostile.idle_latency = vec![(9_000, 2)];
        let m = measured(&hostile).unwrap();
        assert!(check_results(&m, 2, 64)
            .unwrap_err()
            .contains("3 latencies"));
        let plain = crate::accounting::Account::new(9, 4, 64, false).measured(Some(0), true, None);
        assert!(results(&plain).idle_latency.is_empty());
        assert!(measured(&results(&plain)).unwrap().idle_latency.is_none());
    }

    #[test]
    fn too_many_load_flows_are_refused() {
        let mut s = spec();
        s.load_flows = u64::from(crate::load::MAX_LOAD_FLOWS);
        assert!(traffic(&s, Protocol::Tcp, false).is_ok());
        s.load_flows += 1;
        assert!(traffic(&s, Protocol::Tcp, false)
            .unwrap_err()
            .contains("load flows"));
        // The direction follows from the two counts.
        for (up, down, dir) in [
            (3, 0, LoadDirection::Up),
            (0, 3, LoadDirection::Down),
            (3, 3, LoadDirection::Both),
        ] {
            (s.load_flows, s.load_down_flows) = (up, down);
            let t = traffic(&s, Protocol::Udp, false).unwrap();
            assert_eq!((t.load_flows, t.load_direction), (3, dir));
            assert_eq!(
                (
                    traffic_spec(&t).load_flows,
                    traffic_spec(&t).load_down_flows
                ),
                (up, down)
            );
        }
        (s.load_flows, s.load_down_flows) = (3, 2);
        assert!(traffic(&s, Protocol::Udp, false)
            .unwrap_err()
            .contains("as many each way"));
    }
}
