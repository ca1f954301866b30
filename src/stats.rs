//! Pure accounting for one measurement session: sequence numbers (loss, duplicates, reordering) and
//! delays (latency, transit, jitter, IPDV, PDV) into hdrhistograms; fed values, never reads a clock.
//!
//! Every figure follows `shared/METRICS.md`, which cites the RFC each one comes from. Nothing here
//! does I/O or looks at the time: the caller passes sequence numbers and nanosecond timestamps, so
//! tests can feed exact sequences and check exact answers.
//!
//! Histogram resolution: 3 significant digits over 1 ns .. 1 hour ([`new_ns_histogram`]), so values
//! below 2048 ns are exact and larger ones are within 0.1 %.

use std::collections::VecDeque;

use hdrhistogram::Histogram;

/// Highest value (ns) a [`new_ns_histogram`] tracks: one hour. Larger values saturate to it.
pub const NS_HIST_MAX: u64 = 3_600_000_000_000;
/// Significant decimal digits kept by [`new_ns_histogram`].
pub const NS_HIST_DIGITS: u8 = 3;
/// A unique arrival may be at most this many sequence numbers above the next expected one
/// (highest seen + 1); beyond it the arrival is refused (see [`SeqTracker`]). 2^30 bits is 128 MiB
/// of bitset, the most one message can make the tracker allocate; it is also a loss gap of over a
/// billion messages, longer than any real outage at any rate we send.
pub const MAX_SEQ_JUMP: u64 = 1 << 30;
/// Most run-compressed record points a [`SeqTracker`] keeps for reorder-extent lookups (6 MiB).
pub const MAX_RECORD_RUNS: usize = 1 << 18;
/// Slots in the IPDV pairing ring of [`DelayStats`].
pub const IPDV_RING: usize = 4096;

/// What one arrival was, so the caller can label a per-message CSV row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// First copy, `s >= NextExp` (RFC 4737 §3): a gap before it, if any, is loss so far.
    InOrder,
    /// First copy, `s < NextExp` (RFC 4737 §3).
    Reordered,
    /// A further copy of a sequence number already received (RFC 5560). Not reordered.
    Duplicate,
    /// At or above the session's limit, or too far ahead to track ([`MAX_SEQ_JUMP`]). Not stored.
    OutOfRange,
}

/// Totals of a [`SeqTracker`] once the sender has said how many messages it sent.
///
/// `received` counts every unique in-range arrival; `lost` counts the sequence numbers in
/// `0..sent` that never arrived, so `received + lost == sent` unless some arrival was `>= sent`
/// (which cannot happen with an honest sender, and never makes `lost` wrong).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SeqSummary {
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
    /// RFC 4737 NextExp at the end: one above the highest sequence number received (0 if none). What a
    /// session cut short had not yet reached was still in flight.
    pub next_expected: u64,
}

/// Combining sessions: counts add, maxima take the larger.
impl std::ops::AddAssign for SeqSummary {
    fn add_assign(&mut self, o: SeqSummary) {
        self.sent += o.sent;
        self.received += o.received;
        self.lost += o.lost;
        self.duplicates += o.duplicates;
        self.reordered += o.reordered;
        self.reorder_extent_max = self.reorder_extent_max.max(o.reorder_extent_max);
        self.reordered_3 += o.reordered_3;
        self.loss_bursts += o.loss_bursts;
        self.loss_burst_max = self.loss_burst_max.max(o.loss_burst_max);
        self.out_of_range += o.out_of_range;
        self.next_expected = self.next_expected.max(o.next_expected);
    }
}

/// A run of "record" arrivals (each a new highest sequence number): the arrivals at positions
/// `pos .. pos + len` carried sequence numbers `seq .. seq + len`.
#[derive(Debug, Clone, Copy)]
struct RecordRun {
    pos: u64,
    seq: u64,
    len: u64,
}

/// Sequence accounting for one session. Sequence numbers start at 0, are u64, never wrap.
///
/// * Received set: a bitset (one bit per sequence number) that grows lazily up to the highest
///   sequence number actually seen, so memory follows traffic, not the announced count.
/// * Hostile or corrupt numbers cannot make it allocate: numbers `>= limit` are refused, and so are
///   numbers `>= NextExp + MAX_SEQ_JUMP` (NextExp = highest seen + 1, 0 at the start). Both are
///   reported as [`Arrival::OutOfRange`] and counted in `out_of_range`; the second kind is also
///   counted by [`SeqTracker::too_far_ahead`]. A refused number that was real counts as lost.
/// * Positions: RFC 4737 numbers arrivals 1, 2, 3, ...; here only unique in-range arrivals
///   occupy a position. Duplicates and refused arrivals do not, because they carry no ordering
///   information of their own and would otherwise inflate the reorder extent of a later packet
///   by however many copies the network happened to make.
/// * Reorder extent (RFC 4737 §4.2): the earliest earlier arrival with a higher number is always a
///   "record" (an arrival that raised the running maximum), so records are kept as (position,
///   seq) runs and binary-searched. In-order traffic compresses to one run; each loss gap or
///   reordering starts a new one. At most `MAX_RECORD_RUNS` runs are kept; beyond that the oldest
///   is dropped, and an extent that would have needed it is reported as the lower bound found in
///   what remains, counted by [`SeqTracker::extent_lower_bounds`].
#[derive(Debug, Clone)]
pub struct SeqTracker {
    limit: u64,
    max_jump: u64,
    max_runs: usize,
    bits: Vec<u64>,
    /// Unique in-range arrivals so far; also the position of the latest one.
    received: u64,
    /// RFC 4737 NextExp: highest unique sequence number seen + 1 (0 before any).
    next_exp: u64,
    duplicates: u64,
    reordered: u64,
    extent_max: u64,
    reordered_3: u64,
    out_of_range: u64,
    too_far_ahead: u64,
    runs: VecDeque<RecordRun>,
    runs_dropped: u64,
    extent_lower_bounds: u64,
    /// Sequence numbers of the last three unique arrivals, slot = position % 3.
    recent: [u64; 3],
}

impl SeqTracker {
    /// `limit`: sequence numbers >= limit are out of range (the session announced it sends fewer);
    /// they are reported as OutOfRange, never stored, and do not grow memory. limit may be u64::MAX.
    pub fn new(limit: u64) -> Self {
        Self::with_caps(limit, MAX_SEQ_JUMP, MAX_RECORD_RUNS)
    }

    /// [`SeqTracker::new`] with the memory caps chosen by the caller (tests use small ones).
    /// `max_jump` and `max_runs` are raised to at least 1.
    pub fn with_caps(limit: u64, max_jump: u64, max_runs: usize) -> Self {
        SeqTracker {
            limit,
            max_jump: max_jump.max(1),
            max_runs: max_runs.max(1),
            bits: Vec::new(),
            received: 0,
            next_exp: 0,
            duplicates: 0,
            reordered: 0,
            extent_max: 0,
            reordered_3: 0,
            out_of_range: 0,
            too_far_ahead: 0,
            runs: VecDeque::new(),
            runs_dropped: 0,
            extent_lower_bounds: 0,
            recent: [0; 3],
        }
    }

    /// Account one arrival. O(1) amortised; O(log runs) for a reordered arrival's extent lookup.
    /// Feed only checksum-valid messages.
    pub fn record(&mut self, seq: u64) -> Arrival {
        if seq >= self.limit {
            self.out_of_range += 1;
            return Arrival::OutOfRange;
        }
        // Why a window: with limit = u64::MAX one forged number near the top would otherwise ask
        // for 2^58 words of bitset.
        if seq >= self.next_exp.saturating_add(self.max_jump) {
            self.out_of_range += 1;
            self.too_far_ahead += 1;
            return Arrival::OutOfRange;
        }
        let Ok(word) = usize::try_from(seq / 64) else {
            // Only reachable where usize is narrower than 58 bits.
            self.out_of_range += 1;
            self.too_far_ahead += 1;
            return Arrival::OutOfRange;
        };
        let mask = 1u64 << (seq % 64);
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        if self.bits[word] & mask != 0 {
            // RFC 5560: a duplicate is never reordering and never stands in for a lost packet.
            self.duplicates += 1;
            return Arrival::Duplicate;
        }
        self.bits[word] |= mask;
        let had = self.received;
        self.received += 1;
        let pos = self.received;

        let kind = if seq >= self.next_exp {
            // RFC 4737 §3: s >= NextExp is in order (a gap before it is loss so far, not disorder).
            self.next_exp = seq + 1; // seq < limit <= u64::MAX, cannot overflow
            self.push_record(pos, seq);
            Arrival::InOrder
        } else {
            self.reordered += 1;
            if let Some(j) = self.earliest_higher(seq) {
                // RFC 4737 §4.2: extent e = i - j.
                self.extent_max = self.extent_max.max(pos - j);
            }
            // RFC 4737 §5: n-reordered when the n previous arrivals all carry higher numbers;
            // n = 3 is what fires TCP fast retransmit.
            if had >= 3 && self.recent.iter().all(|&r| r > seq) {
                self.reordered_3 += 1;
            }
            Arrival::Reordered
        };
        self.recent[(pos % 3) as usize] = seq;
        kind
    }

    fn push_record(&mut self, pos: u64, seq: u64) {
        if let Some(last) = self.runs.back_mut() {
            if last.pos + last.len == pos && last.seq + last.len == seq {
                last.len += 1;
                return;
            }
        }
        if self.runs.len() >= self.max_runs {
            self.runs.pop_front();
            self.runs_dropped += 1;
        }
        self.runs.push_back(RecordRun { pos, seq, len: 1 });
    }

    /// Position of the earliest arrival with a sequence number above `s` (which is the first record
    /// above `s`, since records are exactly where the running maximum rises).
    fn earliest_higher(&mut self, s: u64) -> Option<u64> {
        // Runs are increasing in seq; skip those whose last seq is <= s.
        let k = self.runs.partition_point(|r| r.seq + r.len - 1 <= s);
        let r = *self.runs.get(k)?;
        if r.seq > s {
            if k == 0 && self.runs_dropped > 0 {
                // The true earliest may have been in a dropped run: what we report is a lower bound.
                self.extent_lower_bounds += 1;
            }
            Some(r.pos)
        } else {
            // Inside the run: the record carrying s + 1.
            Some(r.pos + (s - r.seq) + 1)
        }
    }

    /// Summary once the sender says it sent `sent` messages (seqs 0..sent). O(bitset words).
    pub fn summary(&self, sent: u64) -> SeqSummary {
        let (mut lost, mut bursts, mut burst_max) = (0u64, 0u64, 0u64);
        self.for_each_lost_run(sent, |_, len| {
            lost += len;
            bursts += 1;
            burst_max = burst_max.max(len);
        });
        SeqSummary {
            sent,
            received: self.received,
            lost,
            duplicates: self.duplicates,
            reordered: self.reordered,
            reorder_extent_max: self.extent_max,
            reordered_3: self.reordered_3,
            loss_bursts: bursts,
            loss_burst_max: burst_max,
            out_of_range: self.out_of_range,
            next_expected: self.next_exp,
        }
    }

    /// Maximal runs of lost sequence numbers below `sent`, as (first_seq, length), ascending, the first
    /// `max` of them (tail losses included); and how many lost numbers the runs left out hold. There can be up to `sent / 2`
    /// runs; [`SeqTracker::for_each_lost_run`] visits them all without allocating.
    pub fn lost_runs(&self, sent: u64, max: usize) -> (Vec<(u64, u64)>, u64) {
        let mut v = Vec::new();
        let mut left_out = 0u64;
        self.for_each_lost_run(sent, |s, l| {
            if v.len() < max {
                v.push((s, l));
            } else {
                left_out += l;
            }
        });
        (v, left_out)
    }

    /// Bytes this tracker holds now (bitset and record runs), for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.bits.capacity() * 8 + self.runs.capacity() * std::mem::size_of::<RecordRun>()
    }

    /// The most bytes a tracker for sequence numbers below `limit` can ever hold.
    pub fn max_heap_bytes(limit: u64) -> u64 {
        // The bitset grows by doubling (Vec::resize), so its capacity may reach twice what it needs.
        let words = limit.div_ceil(64);
        words.saturating_mul(16)
            + (MAX_RECORD_RUNS as u64).saturating_mul(2 * std::mem::size_of::<RecordRun>() as u64)
    }

    /// Calls `f(first_seq, length)` for each maximal run of lost sequence numbers in `0..sent`,
    /// ascending. O(bitset words + runs): whole words are skipped at once and the part of
    /// `0..sent` above the bitset is one run.
    pub fn for_each_lost_run(&self, sent: u64, mut f: impl FnMut(u64, u64)) {
        let stored_bits = (self.bits.len() as u64).saturating_mul(64);
        let nbits = sent.min(stored_bits);
        let mut start: Option<u64> = None;
        for (wi, &word) in self.bits.iter().enumerate() {
            let base = wi as u64 * 64;
            if base >= nbits {
                break;
            }
            let valid = (nbits - base).min(64);
            let mut x = word;
            if valid < 64 {
                // Only the last word when sent ends inside the bitset: bits >= sent are not ours.
                x |= !0u64 << valid;
            }
            if x == !0 {
                if let Some(s) = start.take() {
                    f(s, base - s);
                }
                continue;
            }
            if x == 0 {
                start.get_or_insert(base);
                continue;
            }
            let mut i = 0u32;
            while i < 64 {
                let y = x >> i;
                if y & 1 == 1 {
                    if let Some(s) = start.take() {
                        f(s, base + u64::from(i) - s);
                    }
                    i += y.trailing_ones();
                } else {
                    start.get_or_insert(base + u64::from(i));
                    i += y.trailing_zeros().min(64 - i);
                }
            }
        }
        if sent > nbits {
            start.get_or_insert(nbits);
        }
        if let Some(s) = start {
            f(s, sent - s);
        }
    }

    /// Unique in-range arrivals so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// RFC 4737 NextExp: highest unique sequence number seen + 1, or 0 before any arrival.
    pub fn next_expected(&self) -> u64 {
        self.next_exp
    }

    /// Arrivals refused because they were `MAX_SEQ_JUMP` or more above NextExp (included in
    /// `out_of_range`).
    pub fn too_far_ahead(&self) -> u64 {
        self.too_far_ahead
    }

    /// Reordered arrivals whose extent could only be bounded from below because the record run it
    /// needed had been dropped at the `MAX_RECORD_RUNS` cap. 0 means `reorder_extent_max` is exact.
    pub fn extent_lower_bounds(&self) -> u64 {
        self.extent_lower_bounds
    }

    /// Words (u64) in the received bitset: memory diagnostics and tests.
    pub fn bitset_words(&self) -> usize {
        self.bits.len()
    }

    /// Record runs currently kept for extent lookups: memory diagnostics and tests.
    pub fn record_runs(&self) -> usize {
        self.runs.len()
    }
}

/// A fresh ns histogram with the project's resolution: 3 significant digits, 1 ns .. 1 hour.
/// Record into it with `saturating_record` so out-of-range values clamp instead of failing.
pub fn new_ns_histogram() -> Histogram<u64> {
    // Constant, valid bounds: this cannot fail.
    Histogram::new_with_bounds(1, NS_HIST_MAX, NS_HIST_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// Delay accounting (nanoseconds in, microseconds out). Fed values; never reads a clock.
#[derive(Debug, Clone)]
pub struct DelayStats {
    latency: Histogram<u64>,
    transit: Histogram<u64>,
    ipdv: Histogram<u64>,
    negative: u64,
    repeats: u64,
    /// RFC 3550 A.8 estimator, in ns, kept in f64 as the RFC's reference code keeps it in a double.
    jitter_ns: f64,
    /// (recv, send) of the previous arrival, in arrival order.
    prev: Option<(i64, i64)>,
    jitter_valid: bool,
    /// IPDV pairing ring: slot seq % IPDV_RING holds (seq, raw transit ns) of the latest arrival
    /// with that residue.
    ring: Vec<Option<(u64, i128)>>,
}

impl Default for DelayStats {
    fn default() -> Self {
        Self::new()
    }
}

fn clamp_ns(v: i128) -> u64 {
    u64::try_from(v.max(0)).unwrap_or(u64::MAX)
}

impl DelayStats {
    pub fn new() -> Self {
        DelayStats {
            latency: new_ns_histogram(),
            transit: new_ns_histogram(),
            ipdv: new_ns_histogram(),
            negative: 0,
            repeats: 0,
            jitter_ns: 0.0,
            prev: None,
            jitter_valid: false,
            ring: vec![None; IPDV_RING],
        }
    }

    /// One unique, valid arrival. `sched_ns`/`send_ns` are the sender's scheduled and actual send
    /// times, `recv_ns` the arrival time already corrected to the sender's clock; all ns since the
    /// Unix epoch (i64 so corrections can go negative).
    ///
    /// * latency = recv − sched (from the schedule, so free of coordinated omission);
    ///   transit = recv − send (RFC 7679 one-way delay).
    /// * A negative latency or transit (residual clock error between the hosts) is recorded as 0;
    ///   [`DelayStats::negative_delays`] counts the arrivals where either was negative.
    /// * Jitter (RFC 3550 A.8) runs in arrival order over the raw times.
    /// * IPDV (RFC 3393, RFC 5481): when `seq` arrives it is paired with `seq − 1` and `seq + 1` if
    ///   those already arrived, so each pair is formed once, by whichever arrives second, whatever
    ///   the arrival order. Raw (unclamped) transits are used, since a constant clock offset cancels
    ///   in the difference. Partners are looked up in a ring of `IPDV_RING` slots indexed by
    ///   seq % IPDV_RING; a pair is skipped when, between its two arrivals, a sequence number
    ///   differing from the first by a multiple of `IPDV_RING` arrived and took the slot (i.e.
    ///   reordering or loss spanning 4096 numbers).
    /// * Calling twice for a seq still in the ring is a caller bug (feed unique arrivals only): the
    ///   second call is ignored and counted by [`DelayStats::ignored_repeats`].
    pub fn record(&mut self, seq: u64, sched_ns: i64, send_ns: i64, recv_ns: i64) {
        let slot = (seq % IPDV_RING as u64) as usize;
        if matches!(self.ring[slot], Some((s, _)) if s == seq) {
            self.repeats += 1;
            return;
        }
        // i128 so no pair of i64 timestamps can overflow.
        let latency = i128::from(recv_ns) - i128::from(sched_ns);
        let transit = i128::from(recv_ns) - i128::from(send_ns);
        if latency < 0 || transit < 0 {
            self.negative += 1;
        }
        self.latency.saturating_record(clamp_ns(latency));
        self.transit.saturating_record(clamp_ns(transit));

        // RFC 3550 A.8: D(i-1,i) = (R_i - R_{i-1}) - (S_i - S_{i-1}); J += (|D| - J) / 16.
        if let Some((r0, t0)) = self.prev {
            let d = (i128::from(recv_ns) - i128::from(r0)) - (i128::from(send_ns) - i128::from(t0));
            self.jitter_ns += ((d.unsigned_abs() as f64) - self.jitter_ns) / 16.0;
            self.jitter_valid = true;
        }
        self.prev = Some((recv_ns, send_ns));

        // RFC 3393 / RFC 5481 §4.2: IPDV(s) = D_s - D_{s-1} for consecutive sequence numbers.
        if let Some(p) = seq.checked_sub(1) {
            if let Some((s, d)) = self.ring[(p % IPDV_RING as u64) as usize] {
                if s == p {
                    self.ipdv.saturating_record(clamp_ns((transit - d).abs()));
                }
            }
        }
        if let Some(n) = seq.checked_add(1) {
            if let Some((s, d)) = self.ring[(n % IPDV_RING as u64) as usize] {
                if s == n {
                    self.ipdv.saturating_record(clamp_ns((d - transit).abs()));
                }
            }
        }
        self.ring[slot] = Some((seq, transit));
    }

    /// Latency (recv − scheduled send), ns.
    pub fn latency(&self) -> &Histogram<u64> {
        &self.latency
    }

    /// Transit (recv − actual send, RFC 7679), ns.
    pub fn transit(&self) -> &Histogram<u64> {
        &self.transit
    }

    /// |IPDV| (RFC 3393, RFC 5481), ns.
    pub fn ipdv(&self) -> &Histogram<u64> {
        &self.ipdv
    }

    /// RFC 3550 A.8 interarrival jitter in µs; None until two arrivals. For comparison with iperf.
    pub fn jitter_us(&self) -> Option<f64> {
        self.jitter_valid.then(|| self.jitter_ns / 1000.0)
    }

    /// PDV (RFC 5481 §4.2, RFC 8219 §7.3.1): p99.9(transit) − min(transit), µs; None when empty.
    pub fn pdv_us(&self) -> Option<f64> {
        pdv_ns(&self.transit).map(|p| p as f64 / 1000.0)
    }

    /// Arrivals whose latency or transit was negative (recorded as 0).
    pub fn negative_delays(&self) -> u64 {
        self.negative
    }

    /// Repeated calls for a seq already recorded (and still in the IPDV ring), ignored.
    pub fn ignored_repeats(&self) -> u64 {
        self.repeats
    }

    /// Arrivals recorded.
    pub fn count(&self) -> u64 {
        self.latency.len()
    }

    /// Combine another session into this one: histograms and counters add. Jitter and the IPDV
    /// ring stay self's: RFC 3550 jitter is a running estimate over one arrival stream and IPDV
    /// pairs consecutive numbers of one stream, neither is meaningful across sessions.
    pub fn merge(&mut self, other: &DelayStats) {
        add_hist(&mut self.latency, &other.latency);
        add_hist(&mut self.transit, &other.transit);
        add_hist(&mut self.ipdv, &other.ipdv);
        self.negative += other.negative;
        self.repeats += other.repeats;
    }
}

/// PDV (RFC 5481 §4.2, RFC 8219 §7.3.1) of a transit histogram: p99.9 − min, ns; None when empty.
pub fn pdv_ns(transit: &Histogram<u64>) -> Option<u64> {
    (!transit.is_empty()).then(|| {
        transit
            .value_at_quantile(0.999)
            .saturating_sub(transit.min())
    })
}

/// `a += b`, clamping b's values into a's range if the two were built with different bounds.
fn add_hist(a: &mut Histogram<u64>, b: &Histogram<u64>) {
    if a.add(b).is_err() {
        for v in b.iter_recorded() {
            a.saturating_record_n(v.value_iterated_to(), v.count_at_value());
        }
    }
}

/// Summary of any ns histogram, in microseconds. Percentiles, min and max are hdrhistogram values
/// (3 significant digits); mean and stddev are rounded to the nearest ns (3 decimals of µs).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct HistSummary {
    pub count: u64,
    pub min_us: f64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
    pub stddev_us: f64,
}

impl HistSummary {
    /// None when the histogram is empty.
    pub fn of(h: &Histogram<u64>) -> Option<HistSummary> {
        if h.is_empty() {
            return None;
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        let q = |x: f64| us(h.value_at_quantile(x));
        Some(HistSummary {
            count: h.len(),
            min_us: us(h.min()),
            mean_us: h.mean().round() / 1000.0,
            p50_us: q(0.5),
            p90_us: q(0.9),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: us(h.max()),
            stddev_us: h.stdev().round() / 1000.0,
        })
    }
}

/// Most buckets accepted from a peer: a histogram of [`new_ns_histogram`]'s range and resolution has fewer
/// than 2^16 distinct bucket values, so anything longer is not one of ours.
pub const MAX_BUCKETS: usize = 1 << 16;
/// Most total count accepted from a peer (2^48): above any real session, and far enough from u64::MAX that
/// summing and merging such histograms cannot overflow.
pub const MAX_TOTAL_COUNT: u64 = 1 << 48;

/// A histogram as (value, count) pairs, ascending, one per recorded bucket; each value is the highest value
/// equivalent to its bucket, so [`hist_from_buckets`] rebuilds exactly the same histogram.
pub fn hist_to_buckets(h: &Histogram<u64>) -> Vec<(u64, u64)> {
    h.iter_recorded()
        .map(|v| {
            (
                h.highest_equivalent(v.value_iterated_to()),
                v.count_at_value(),
            )
        })
        .collect()
}

/// Inverse of [`hist_to_buckets`], for a peer's numbers: never panics, and refuses (Err, naming what) more
/// than [`MAX_BUCKETS`] buckets, values that are not strictly ascending or lie beyond [`NS_HIST_MAX`], zero
/// counts, and a total above [`MAX_TOTAL_COUNT`].
pub fn hist_from_buckets(b: &[(u64, u64)]) -> Result<Histogram<u64>, String> {
    if b.len() > MAX_BUCKETS {
        return Err(format!(
            "histogram: {} buckets, at most {MAX_BUCKETS} accepted",
            b.len()
        ));
    }
    let mut h = new_ns_histogram();
    let mut total: u64 = 0;
    let mut prev: Option<u64> = None;
    for &(value, count) in b {
        if prev.is_some_and(|p| value <= p) {
            return Err("histogram: bucket values are not ascending".into());
        }
        prev = Some(value);
        if value > h.highest_equivalent(NS_HIST_MAX) {
            return Err(format!(
                "histogram: value {value} ns is beyond the {NS_HIST_MAX} ns range"
            ));
        }
        if count == 0 {
            return Err("histogram: a bucket with count 0".into());
        }
        total = total
            .checked_add(count)
            .filter(|&t| t <= MAX_TOTAL_COUNT)
            .ok_or("histogram: total count above 2^48")?;
        h.saturating_record_n(value, count);
    }
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn feed(t: &mut SeqTracker, seqs: &[u64]) -> Vec<Arrival> {
        seqs.iter().map(|&s| t.record(s)).collect()
    }

    fn summary_of(limit: u64, sent: u64, seqs: &[u64]) -> SeqSummary {
        let mut t = SeqTracker::new(limit);
        feed(&mut t, seqs);
        t.summary(sent)
    }

    /// METRICS.md worked example, shifted to start at 0: sent 0..6, arrivals `0 2 3 4 1 4`
    /// (METRICS' `1 3 4 5 2 5`): 1 late, 4 duplicated, 5 never arrives.
    #[test]
    fn metrics_worked_example() {
        use Arrival::*;
        let mut t = SeqTracker::new(6);
        let kinds = feed(&mut t, &[0, 2, 3, 4, 1, 4]);
        assert_eq!(
            kinds,
            [InOrder, InOrder, InOrder, InOrder, Reordered, Duplicate]
        );
        assert_eq!(
            t.summary(6),
            SeqSummary {
                sent: 6,
                received: 5,
                lost: 1,
                duplicates: 1,
                reordered: 1,
                reorder_extent_max: 3,
                reordered_3: 1,
                loss_bursts: 1,
                loss_burst_max: 1,
                out_of_range: 0,
                next_expected: 5,
            }
        );
        assert_eq!(t.lost_runs(6, usize::MAX).0, [(5, 1)]);
        assert_eq!(t.received(), 5);
    }

    /// The same arrivals with the METRICS numbering taken literally: seqs 0..7 sent, so seq 0 is
    /// lost too; ordering figures are unchanged.
    #[test]
    fn metrics_worked_example_literal_numbers() {
        let s = summary_of(7, 7, &[1, 3, 4, 5, 2, 5]);
        assert_eq!((s.received, s.lost, s.duplicates), (5, 2, 1));
        assert_eq!(
            (s.reordered, s.reorder_extent_max, s.reordered_3),
            (1, 3, 1)
        );
        assert_eq!((s.loss_bursts, s.loss_burst_max), (2, 1));
    }

    #[test]
    fn pure_in_order() {
        let mut t = SeqTracker::new(u64::MAX);
        let seqs: Vec<u64> = (0..1000).collect();
        assert!(feed(&mut t, &seqs).iter().all(|&k| k == Arrival::InOrder));
        let s = t.summary(1000);
        assert_eq!(
            s,
            SeqSummary {
                sent: 1000,
                received: 1000,
                next_expected: 1000,
                ..Default::default()
            }
        );
        assert!(t.lost_runs(1000, usize::MAX).0.is_empty());
        // In-order traffic compresses to one record run and 16 bitset words.
        assert_eq!(t.record_runs(), 1);
        assert_eq!(t.bitset_words(), 16);
    }

    #[test]
    fn tail_loss_only() {
        let mut t = SeqTracker::new(10);
        feed(&mut t, &[0, 1, 2, 3, 4, 5, 6]);
        let s = t.summary(10);
        assert_eq!(
            (s.received, s.lost, s.loss_bursts, s.loss_burst_max),
            (7, 3, 1, 3)
        );
        assert_eq!((s.reordered, s.duplicates), (0, 0));
        assert_eq!(t.lost_runs(10, usize::MAX).0, [(7, 3)]);
    }

    #[test]
    fn nothing_arrived_huge_sent_is_one_run() {
        let t = SeqTracker::new(u64::MAX);
        assert_eq!(
            t.lost_runs(10_000_000_000, usize::MAX).0,
            [(0, 10_000_000_000)]
        );
        let s = t.summary(10_000_000_000);
        assert_eq!(
            (s.lost, s.loss_bursts, s.loss_burst_max),
            (10_000_000_000, 1, 10_000_000_000)
        );
        assert_eq!(t.bitset_words(), 0);
        assert_eq!(t.summary(0), SeqSummary::default());
    }

    #[test]
    fn single_swap() {
        use Arrival::*;
        let mut t = SeqTracker::new(4);
        assert_eq!(
            feed(&mut t, &[0, 2, 1, 3]),
            [InOrder, InOrder, Reordered, InOrder]
        );
        let s = t.summary(4);
        assert_eq!((s.received, s.lost), (4, 0));
        assert_eq!(
            (s.reordered, s.reorder_extent_max, s.reordered_3),
            (1, 1, 0)
        );
    }

    #[test]
    fn late_after_three_higher_is_3_reordered() {
        let s = summary_of(5, 5, &[1, 2, 3, 0, 4]);
        assert_eq!(
            (s.reordered, s.reorder_extent_max, s.reordered_3),
            (1, 3, 1)
        );
        // Only two higher ones before it: reordered, not 3-reordered.
        let s = summary_of(5, 5, &[0, 2, 3, 1, 4]);
        assert_eq!(
            (s.reordered, s.reorder_extent_max, s.reordered_3),
            (1, 2, 0)
        );
        // Three before it but one of them lower: not 3-reordered; extent counts from seq 2.
        let s = summary_of(6, 6, &[0, 2, 4, 5, 3, 1]);
        // 3 at pos 5: earliest higher is 4 at pos 3 → 2, preceded by 2,4,5 (2 < 3) → not 3-r.
        // 1 at pos 6: earliest higher is 2 at pos 2 → 4, preceded by 4,5,3 all > 1 → 3-r.
        assert_eq!(
            (s.reordered, s.reorder_extent_max, s.reordered_3),
            (2, 4, 1)
        );
    }

    #[test]
    fn duplicates_of_in_order_and_reordered() {
        use Arrival::*;
        let mut t = SeqTracker::new(5);
        let kinds = feed(&mut t, &[0, 0, 2, 1, 1, 3, 2, 0, 4]);
        assert_eq!(
            kinds,
            [
                InOrder, Duplicate, InOrder, Reordered, Duplicate, InOrder, Duplicate, Duplicate,
                InOrder
            ]
        );
        let s = t.summary(5);
        assert_eq!((s.received, s.lost, s.duplicates), (5, 0, 4));
        // Duplicates hold no position: 1 is at position 3, seq 2 at position 2 → extent 1.
        assert_eq!(
            (s.reordered, s.reorder_extent_max, s.reordered_3),
            (1, 1, 0)
        );
        // A duplicate never hides a loss.
        let s = summary_of(3, 3, &[0, 0, 0]);
        assert_eq!((s.received, s.lost, s.duplicates), (1, 2, 2));
    }

    #[test]
    fn multiple_loss_bursts() {
        // Lost: 1 | 4 5 6 | 9 | 70..=129 (crosses a word boundary) | 140..150 tail.
        let mut seqs: Vec<u64> = vec![0, 2, 3, 7, 8];
        seqs.extend(10..70);
        seqs.extend(130..140);
        let mut t = SeqTracker::new(150);
        feed(&mut t, &seqs);
        assert_eq!(
            t.lost_runs(150, usize::MAX).0,
            [(1, 1), (4, 3), (9, 1), (70, 60), (140, 10)]
        );
        let s = t.summary(150);
        assert_eq!((s.lost, s.loss_bursts, s.loss_burst_max), (75, 5, 60));
        assert_eq!(s.received + s.lost, 150);
        // sent ending inside the bitset, mid-run and mid-word.
        assert_eq!(
            t.lost_runs(100, usize::MAX).0,
            [(1, 1), (4, 3), (9, 1), (70, 30)]
        );
        assert_eq!(t.lost_runs(5, usize::MAX).0, [(1, 1), (4, 1)]);
    }

    #[test]
    fn out_of_range_counted_not_stored() {
        use Arrival::*;
        let mut t = SeqTracker::new(10);
        assert_eq!(t.record(5), InOrder);
        assert_eq!(t.bitset_words(), 1);
        assert_eq!(
            feed(&mut t, &[10, 1000, u64::MAX, 1 << 40]),
            [OutOfRange; 4]
        );
        assert_eq!(t.bitset_words(), 1);
        assert_eq!(t.next_expected(), 6);
        let s = t.summary(10);
        assert_eq!((s.received, s.lost, s.out_of_range), (1, 9, 4));
        assert_eq!(t.too_far_ahead(), 0);
        // limit 0: nothing is in range.
        let mut t = SeqTracker::new(0);
        assert_eq!(t.record(0), OutOfRange);
        assert_eq!(t.bitset_words(), 0);
    }

    #[test]
    fn received_seq_at_or_above_sent_does_not_hide_loss() {
        // The sender announced 10 but reports 4 sent; seq 6 arrived anyway.
        let s = summary_of(10, 4, &[0, 6, 2]);
        assert_eq!((s.received, s.lost, s.loss_bursts), (3, 2, 2));
    }

    #[test]
    fn seq_zero() {
        use Arrival::*;
        let mut t = SeqTracker::new(3);
        assert_eq!(t.next_expected(), 0);
        assert_eq!(feed(&mut t, &[0, 0]), [InOrder, Duplicate]);
        assert_eq!(t.next_expected(), 1);
        let mut t = SeqTracker::new(3);
        assert_eq!(feed(&mut t, &[1, 0, 0]), [InOrder, Reordered, Duplicate]);
        let s = t.summary(3);
        assert_eq!(
            (s.received, s.lost, s.reordered, s.reorder_extent_max),
            (2, 1, 1, 1)
        );
        assert_eq!(s.duplicates, 1);
        assert_eq!(t.lost_runs(3, usize::MAX).0, [(2, 1)]);
    }

    #[test]
    fn huge_seq_does_not_allocate() {
        let mut t = SeqTracker::new(u64::MAX);
        assert_eq!(t.record(u64::MAX - 1), Arrival::OutOfRange);
        assert_eq!(t.record(MAX_SEQ_JUMP), Arrival::OutOfRange);
        assert_eq!(t.bitset_words(), 0);
        assert_eq!(t.too_far_ahead(), 2);
        assert_eq!(t.summary(3).out_of_range, 2);
        assert_eq!(t.record(0), Arrival::InOrder);
        assert_eq!(t.bitset_words(), 1);
    }

    #[test]
    fn jump_window_moves_with_next_expected() {
        use Arrival::*;
        let mut t = SeqTracker::with_caps(u64::MAX, 1000, MAX_RECORD_RUNS);
        assert_eq!(feed(&mut t, &[1000, 999]), [OutOfRange, InOrder]);
        // NextExp is now 1000: 1999 is accepted, 3000 is not.
        assert_eq!(feed(&mut t, &[3000, 1999]), [OutOfRange, InOrder]);
        assert_eq!(t.bitset_words(), 32);
        assert_eq!(t.too_far_ahead(), 2);
        let s = t.summary(2000);
        assert_eq!((s.received, s.lost, s.out_of_range), (2, 1998, 2));
    }

    #[test]
    fn record_run_cap_gives_lower_bound() {
        let mut t = SeqTracker::with_caps(100, MAX_SEQ_JUMP, 2);
        feed(&mut t, &[0, 5, 10, 15]);
        assert_eq!(t.record_runs(), 2);
        assert_eq!(t.record(1), Arrival::Reordered);
        // True extent: 1 at position 5, seq 5 at position 2 → 3. The run holding position 2 was
        // dropped, so the lower bound from seq 10 at position 3 is reported.
        assert_eq!(t.summary(16).reorder_extent_max, 2);
        assert_eq!(t.extent_lower_bounds(), 1);
        // A lookup that lands inside kept runs stays exact and is not flagged.
        assert_eq!(t.record(12), Arrival::Reordered);
        assert_eq!(t.extent_lower_bounds(), 1);
        // Uncapped, the same arrivals give the exact extent.
        let s = summary_of(100, 16, &[0, 5, 10, 15, 1]);
        assert_eq!(s.reorder_extent_max, 3);
    }

    #[test]
    fn seq_summary_adds() {
        let mut a = summary_of(6, 6, &[0, 2, 3, 4, 1, 4]);
        a += summary_of(5, 5, &[1, 2, 3, 0]);
        assert_eq!(
            a,
            SeqSummary {
                sent: 11,
                received: 9,
                lost: 2,
                duplicates: 1,
                reordered: 2,
                reorder_extent_max: 3,
                reordered_3: 2,
                loss_bursts: 2,
                loss_burst_max: 1,
                out_of_range: 0,
                next_expected: 5,
            }
        );
    }

    // ---- delays ----

    /// Arrivals (seq, send, recv) in arrival order, with sched = send − 100.
    fn delays(arrivals: &[(u64, i64, i64)]) -> DelayStats {
        let mut d = DelayStats::new();
        for &(seq, send, recv) in arrivals {
            d.record(seq, send - 100, send, recv);
        }
        d
    }

    #[test]
    fn jitter_rfc3550_hand_computed() {
        // Transits 500, 600, 400, 900 at 1 µs spacing.
        // D = 100, -200, 500; J = 100/16 = 6.25; 6.25 + (200 - 6.25)/16 = 18.359375;
        // 18.359375 + (500 - 18.359375)/16 = 48.4619140625 ns.
        let d0 = delays(&[(0, 0, 500)]);
        assert_eq!(d0.jitter_us(), None);
        assert_eq!(DelayStats::new().jitter_us(), None);
        let d = delays(&[
            (0, 0, 500),
            (1, 1000, 1600),
            (2, 2000, 2400),
            (3, 3000, 3900),
        ]);
        assert_eq!(d.jitter_us(), Some(48.4619140625 / 1000.0));
    }

    #[test]
    fn latency_and_transit_exact() {
        let d = delays(&[
            (0, 0, 500),
            (1, 1000, 1600),
            (2, 2000, 2400),
            (3, 3000, 3900),
        ]);
        assert_eq!(d.count(), 4);
        let t = HistSummary::of(d.transit()).unwrap();
        assert_eq!((t.count, t.min_us, t.max_us, t.p50_us), (4, 0.4, 0.9, 0.5));
        let l = HistSummary::of(d.latency()).unwrap();
        assert_eq!((l.count, l.min_us, l.max_us, l.p50_us), (4, 0.5, 1.0, 0.6));
        assert_eq!(d.negative_delays(), 0);
    }

    #[test]
    fn ipdv_pairs_with_reordering() {
        // Arrival order 0, 2, 1, 3 with transits 500, 400, 600, 900.
        // 2 arrives: no neighbour yet. 1 arrives: pairs (0,1) |600-500| = 100 and (1,2)
        // |400-600| = 200. 3 arrives: pair (2,3) |900-400| = 500. Three pairs, each once.
        let d = delays(&[
            (0, 0, 500),
            (2, 2000, 2400),
            (1, 1000, 1600),
            (3, 3000, 3900),
        ]);
        let h = d.ipdv();
        assert_eq!(h.len(), 3);
        assert_eq!(
            (h.count_at(100), h.count_at(200), h.count_at(500)),
            (1, 1, 1)
        );
        // Lost neighbours form no pair.
        let d = delays(&[(0, 0, 500), (2, 2000, 2400), (4, 4000, 4100)]);
        assert_eq!(d.ipdv().len(), 0);
    }

    #[test]
    fn ipdv_pair_beyond_ring_is_skipped() {
        let n = IPDV_RING as u64;
        // Transits: 1 → 100, n+1 → 120, 2 → 280, n → 130. n+1 takes seq 1's slot before 2
        // arrives, so pair (1,2) is skipped; pair (n, n+1) forms when n arrives: |130 − 120|.
        let d = delays(&[(1, 0, 100), (n + 1, 10, 130), (2, 20, 300), (n, 30, 160)]);
        assert_eq!(d.ipdv().len(), 1);
        assert_eq!(d.ipdv().count_at(10), 1);
    }

    #[test]
    fn pdv_exact() {
        let d = delays(&[
            (0, 0, 500),
            (1, 1000, 1600),
            (2, 2000, 2400),
            (3, 3000, 3900),
        ]);
        // p99.9 of 4 values is the 4th (ceil(3.996)), 900; min 400.
        assert_eq!(d.pdv_us(), Some(0.5));
        // 1000 transits 100..=1099 ns: p99.9 is the 999th, 1098; min 100 → 998 ns.
        let mut d = DelayStats::new();
        for i in 0..1000i64 {
            d.record(i as u64, 0, 0, 100 + i);
        }
        assert_eq!(d.pdv_us(), Some(0.998));
        assert_eq!(DelayStats::new().pdv_us(), None);
    }

    #[test]
    fn negative_delays_recorded_as_zero() {
        let mut d = DelayStats::new();
        d.record(0, 1000, 1000, 900); // both negative
        d.record(1, 1000, 2000, 1500); // transit negative, latency 500
        d.record(2, 3000, 3000, 3100);
        assert_eq!(d.negative_delays(), 2);
        assert_eq!(d.transit().count_at(0), 2);
        assert_eq!(d.latency().count_at(0), 1);
        assert_eq!(d.latency().count_at(500), 1);
        // IPDV uses raw transits: -100, -500, 100 → |−400| and |600|.
        assert_eq!((d.ipdv().count_at(400), d.ipdv().count_at(600)), (1, 1));
    }

    #[test]
    fn repeat_feed_ignored() {
        let mut d = DelayStats::new();
        d.record(7, 0, 0, 100);
        d.record(7, 0, 0, 900);
        assert_eq!((d.count(), d.ignored_repeats()), (1, 1));
        assert_eq!(d.jitter_us(), None);
    }

    #[test]
    fn merge_adds_histograms_keeps_jitter() {
        let mut a = delays(&[(0, 0, 500), (1, 1000, 1600)]);
        let b = delays(&[(0, 0, 2000), (1, 1000, 3100), (2, 2000, 2000 - 1)]);
        let ja = a.jitter_us();
        a.merge(&b);
        assert_eq!(a.count(), 5);
        assert_eq!(a.ipdv().len(), 3);
        assert_eq!(a.negative_delays(), 1);
        assert_eq!(a.jitter_us(), ja);
        // 2100 ns is above 2048, where buckets are 2 ns wide: max reports the bucket's top.
        assert_eq!(a.transit().max(), 2101);
        assert_eq!(a.transit().count_at(2100), 1);
    }

    #[test]
    fn hist_summary_exact() {
        let mut h = new_ns_histogram();
        for v in [100, 200, 500] {
            h.saturating_record(v);
        }
        // mean 266.67 ns → 267; stddev sqrt(780000/27) = 169.97 ns → 170.
        assert_eq!(
            HistSummary::of(&h),
            Some(HistSummary {
                count: 3,
                min_us: 0.1,
                mean_us: 0.267,
                p50_us: 0.2,
                p90_us: 0.5,
                p99_us: 0.5,
                p999_us: 0.5,
                max_us: 0.5,
                stddev_us: 0.17,
            })
        );
        assert_eq!(HistSummary::of(&new_ns_histogram()), None);
        // 1 ms lies in a bucket 512 ns wide: 999_936 ..= 1_000_447.
        let mut h = new_ns_histogram();
        h.saturating_record(1_000_000);
        let s = HistSummary::of(&h).unwrap();
        assert_eq!(
            (s.min_us, s.p50_us, s.max_us),
            (999.936, 1000.447, 1000.447)
        );
        // Beyond an hour saturates instead of failing.
        h.saturating_record(u64::MAX);
        assert_eq!(h.len(), 2);
    }

    // ---- buckets ----

    #[test]
    fn buckets_round_trip_exactly() {
        let mut h = new_ns_histogram();
        for v in [0, 1, 100, 2047, 1_000_000, 17_000_000_000, NS_HIST_MAX] {
            h.saturating_record(v);
        }
        h.saturating_record_n(5000, 1_000_000);
        let b = hist_to_buckets(&h);
        // 0 and 1 ns are separate buckets at the bottom of the range.
        assert_eq!(b.len(), 8);
        let back = hist_from_buckets(&b).unwrap();
        assert_eq!(back, h);
        assert_eq!(back.len(), 1_000_007);
        assert_eq!(HistSummary::of(&back), HistSummary::of(&h));
        assert!(hist_from_buckets(&[]).unwrap().is_empty());
    }

    #[test]
    fn buckets_from_a_peer_are_checked() {
        assert!(hist_from_buckets(&[(5, 1), (5, 1)]).is_err());
        assert!(hist_from_buckets(&[(6, 1), (5, 1)]).is_err());
        assert!(hist_from_buckets(&[(5, 0)]).is_err());
        assert!(hist_from_buckets(&[(u64::MAX, 1)]).is_err());
        assert!(hist_from_buckets(&[(10, 1 << 47), (20, 1 << 47)]).is_ok());
        assert!(hist_from_buckets(&[(10, 1 << 47), (20, 1 << 47), (30, 1)]).is_err());
        assert!(hist_from_buckets(&[(10, u64::MAX), (20, u64::MAX)]).is_err());
        let long: Vec<(u64, u64)> = (1..=MAX_BUCKETS as u64 + 1).map(|v| (v, 1)).collect();
        assert!(hist_from_buckets(&long).is_err());
    }

    // ---- property tests ----

    #[derive(Debug, Default, PartialEq)]
    struct Naive {
        received: u64,
        lost: u64,
        duplicates: u64,
        reordered: u64,
        extent_max: u64,
        reordered_3: u64,
        runs: Vec<(u64, u64)>,
    }

    /// RFC 4737 §3, §4.2, §5 literally, O(n²), over unique arrivals (positions 1-based).
    fn naive(sent: u64, arrivals: &[u64]) -> Naive {
        let mut seen = HashSet::new();
        let mut uniq = Vec::new();
        let mut r = Naive::default();
        for &s in arrivals {
            if seen.insert(s) {
                uniq.push(s);
            } else {
                r.duplicates += 1;
            }
        }
        r.received = uniq.len() as u64;
        for i in 0..uniq.len() {
            let s = uniq[i];
            let next_exp = uniq[..i].iter().max().map_or(0, |m| m + 1);
            if s < next_exp {
                r.reordered += 1;
                let j = (0..i).find(|&j| uniq[j] > s).unwrap();
                r.extent_max = r.extent_max.max((i - j) as u64);
                if i >= 3 && uniq[i - 3..i].iter().all(|&x| x > s) {
                    r.reordered_3 += 1;
                }
            }
        }
        let mut start = None;
        for s in 0..=sent {
            let lost = s < sent && !seen.contains(&s);
            match (lost, start) {
                (true, None) => start = Some(s),
                (false, Some(b)) => {
                    r.runs.push((b, s - b));
                    start = None;
                }
                _ => {}
            }
        }
        r.lost = r.runs.iter().map(|x| x.1).sum();
        r
    }

    /// A sent count, then per sequence number 0..=3 copies, shuffled.
    fn arrivals() -> impl Strategy<Value = (u64, Vec<u64>, u64)> {
        (0u64..300)
            .prop_flat_map(|sent| {
                (
                    Just(sent),
                    proptest::collection::vec(
                        prop_oneof![2 => Just(0u64), 6 => Just(1), 1 => 2u64..4],
                        sent as usize,
                    ),
                )
            })
            .prop_flat_map(|(sent, copies)| {
                let extra: u64 = copies.iter().map(|&c| c.saturating_sub(1)).sum();
                let v: Vec<u64> = copies
                    .iter()
                    .enumerate()
                    .flat_map(|(s, &c)| std::iter::repeat_n(s as u64, c as usize))
                    .collect();
                (Just(sent), Just(v).prop_shuffle(), Just(extra))
            })
    }

    /// Mostly in order with local swaps, where run compression and 3-reordering matter.
    fn nearly_in_order() -> impl Strategy<Value = (u64, Vec<u64>)> {
        (
            1u64..400,
            proptest::collection::vec((0usize..400, 1usize..6, any::<bool>()), 0..40),
        )
            .prop_map(|(sent, moves)| {
                let mut v: Vec<u64> = (0..sent).collect();
                for (at, dist, drop) in moves {
                    let i = at % v.len().max(1);
                    if v.is_empty() {
                        break;
                    }
                    if drop {
                        v.remove(i);
                    } else {
                        let j = (i + dist).min(v.len() - 1);
                        let x = v.remove(i);
                        v.insert(j, x);
                    }
                }
                (sent, v)
            })
    }

    fn check(sent: u64, seqs: &[u64], caps: Option<usize>) -> Result<(), TestCaseError> {
        let mut t = match caps {
            Some(runs) => SeqTracker::with_caps(sent, MAX_SEQ_JUMP, runs),
            None => SeqTracker::new(sent),
        };
        feed(&mut t, seqs);
        let s = t.summary(sent);
        let n = naive(sent, seqs);
        prop_assert_eq!(s.received + s.lost, sent);
        prop_assert_eq!(s.received, n.received);
        prop_assert_eq!(s.lost, n.lost);
        prop_assert_eq!(s.duplicates, n.duplicates);
        prop_assert_eq!(s.reordered, n.reordered);
        prop_assert_eq!(s.reordered_3, n.reordered_3);
        prop_assert_eq!(t.lost_runs(sent, usize::MAX).0, n.runs.clone());
        prop_assert_eq!(s.loss_bursts, n.runs.len() as u64);
        prop_assert_eq!(
            s.loss_burst_max,
            n.runs.iter().map(|x| x.1).max().unwrap_or(0)
        );
        if t.extent_lower_bounds() == 0 {
            prop_assert_eq!(s.reorder_extent_max, n.extent_max);
        } else {
            prop_assert!(s.reorder_extent_max <= n.extent_max);
        }
        Ok(())
    }

    proptest! {
        #[test]
        fn prop_seq_matches_naive((sent, seqs, extra) in arrivals()) {
            check(sent, &seqs, None)?;
            prop_assert_eq!(summary_of(sent, sent, &seqs).duplicates, extra);
        }

        #[test]
        fn prop_nearly_in_order_matches_naive((sent, seqs) in nearly_in_order()) {
            check(sent, &seqs, None)?;
            check(sent, &seqs, Some(3))?;
        }

        #[test]
        fn prop_random_buckets_never_panic(
            b in proptest::collection::vec((any::<u64>(), any::<u64>()), 0..50),
        ) {
            if let Ok(h) = hist_from_buckets(&b) {
                let _ = HistSummary::of(&h);
                let mut acc = new_ns_histogram();
                add_hist(&mut acc, &h);
                prop_assert_eq!(hist_from_buckets(&hist_to_buckets(&h)).unwrap(), h);
            }
        }
    }
}
