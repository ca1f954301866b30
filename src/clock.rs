//! The only code that reads clocks, and the estimate of the offset between sender and receiver clocks.
//!
//! Timestamps on the wire are CLOCK_REALTIME nanoseconds since the Unix epoch: the kernel's receive timestamps
//! (SO_TIMESTAMPNS) use the same clock, and two hosts can only be compared on a clock they both keep. Intervals
//! that only one side measures (pacing, timeouts) use the monotonic `Instant`.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// Wall-clock time in ns since the Unix epoch (CLOCK_REALTIME).
#[inline]
pub fn now_ns() -> i64 {
    crate::sys::time::realtime_ns()
}

/// One reading of both clocks: the monotonic one for intervals and deadlines, the wall clock (ns since the
/// Unix epoch) for times that go on the wire. Sessions take one as `now` and never read a clock themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub mono: Instant,
    pub wall_ns: i64,
}

impl Now {
    /// A fixed starting point for tests on a virtual clock: add durations to it, never sleep.
    pub fn fixed() -> Now {
        static BASE: OnceLock<Instant> = OnceLock::new();
        Now {
            mono: *BASE.get_or_init(Instant::now),
            wall_ns: 1_700_000_000_000_000_000,
        }
    }

    /// This reading moved forward by `d` on both clocks (virtual clocks in tests).
    pub fn after(self, d: Duration) -> Now {
        Now {
            mono: self.mono + d,
            wall_ns: self
                .wall_ns
                .saturating_add(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)),
        }
    }
}

/// Read both clocks.
#[inline]
pub fn now() -> Now {
    Now {
        mono: Instant::now(),
        wall_ns: now_ns(),
    }
}

/// The monotonic clock, for deadlines and intervals.
#[inline]
pub fn mono() -> Instant {
    Instant::now()
}

/// Time since `t` on the monotonic clock.
#[inline]
pub fn since(t: Instant) -> Duration {
    t.elapsed()
}

/// The wall clock as a `SystemTime` (run ids, file stamps).
pub fn system() -> std::time::SystemTime {
    std::time::SystemTime::now()
}

/// How a send loop waits for the next send time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TimerMode {
    /// Sleep until shortly before the time (by how late this thread's sleeps wake), then spin.
    #[default]
    Hybrid,
    /// Only sleep: least CPU, late by the kernel's wake-up latency.
    Sleep,
    /// Only spin: on time, one core busy.
    Spin,
}

/// Waits for send times as its [`TimerMode`] says. The hybrid timer (irtt's name for it) learns how late
/// this thread's sleeps wake: it sleeps until that much before the time and spins the rest, so a send is on
/// time without a core spinning between sends.
#[derive(Debug, Clone)]
pub struct Waiter {
    mode: TimerMode,
    /// How late recent sleeps woke, ns (a ring).
    late: Vec<u64>,
    next: usize,
    /// Sleep this much short of the time: the `MARGIN_PERCENTILE`th percentile of `late`.
    margin: Duration,
}

/// The margin covers this share of recent sleeps' lateness: the rest leave late (pacing_lag_p99_us shows it),
/// and a higher share spins longer before every message.
const MARGIN_PERCENTILE: usize = 95;
/// Sleeps remembered for the margin.
const LATE_SAMPLES: usize = 128;
/// The margin before anything is learnt, and its bounds.
const MARGIN_START: Duration = Duration::from_micros(50);
const MARGIN_MIN: Duration = Duration::from_micros(2);
const MARGIN_MAX: Duration = Duration::from_millis(1);
/// Longest single sleep: how late a stop request is noticed.
const SLEEP_MAX: Duration = Duration::from_millis(50);

impl Waiter {
    /// Also asks the kernel for exact sleeps on the calling thread: call it on the thread that will wait.
    pub fn new(mode: TimerMode) -> Waiter {
        crate::sys::time::tight_timer_slack();
        Waiter {
            mode,
            late: Vec::with_capacity(LATE_SAMPLES),
            next: 0,
            margin: MARGIN_START,
        }
    }

    pub fn mode(&self) -> TimerMode {
        self.mode
    }

    /// Return at `target` (or just after it), or as soon as `stop` says so.
    pub fn wait_until(&mut self, target: Instant, stop: &dyn Fn() -> bool) {
        // The hybrid timer spins at most half of any wait: on a busy machine sleeps wake late, the learnt
        // margin grows, and spinning through whole gaps would only take the CPU from whatever delays them
        // (and, never sleeping, it would never learn that the machine got quiet again).
        let margin = self
            .margin
            .min(target.saturating_duration_since(Instant::now()) / 2);
        loop {
            let now = Instant::now();
            if now >= target || stop() {
                return;
            }
            let left = target - now;
            let short = match self.mode {
                TimerMode::Spin => Duration::ZERO,
                TimerMode::Sleep => left,
                TimerMode::Hybrid => left.saturating_sub(margin),
            };
            if short.is_zero() {
                std::hint::spin_loop();
                continue;
            }
            let asked = short.min(SLEEP_MAX);
            std::thread::sleep(asked);
            if asked < SLEEP_MAX {
                self.learn(now.elapsed().saturating_sub(asked));
            }
        }
    }

    /// One sleep woke `late`: the margin follows a high percentile of recent ones.
    fn learn(&mut self, late: Duration) {
        let ns = u64::try_from(late.as_nanos()).unwrap_or(u64::MAX);
        if self.late.len() < LATE_SAMPLES {
            self.late.push(ns);
        } else {
            self.late[self.next] = ns;
        }
        self.next = (self.next + 1) % LATE_SAMPLES;
        if self.next % 16 == 0 {
            let mut v = self.late.clone();
            v.sort_unstable();
            let q = v[(v.len() * MARGIN_PERCENTILE / 100).min(v.len() - 1)];
            self.margin = Duration::from_nanos(q).clamp(MARGIN_MIN, MARGIN_MAX);
        }
    }

    /// What the hybrid timer currently sleeps short of a send time.
    pub fn margin(&self) -> Duration {
        self.margin
    }
}

/// This kernel's boot id. Two processes with the same boot id read the same CLOCK_REALTIME, so their offset is
/// exactly zero and needs no estimate.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// One NTP-style exchange: t1 sender sends, t2 receiver receives, t3 receiver replies, t4 sender receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    pub t1: i64,
    pub t2: i64,
    pub t3: i64,
    pub t4: i64,
}

impl Sample {
    /// Round trip with the receiver's holding time removed (RFC 5357): (t4 − t1) − (t3 − t2).
    pub fn rtt_ns(&self) -> i64 {
        let [t1, t2, t3, t4] = self.wide();
        saturate((t4 - t1) - (t3 - t2))
    }
    /// θ = ((t2 − t1) + (t3 − t4)) / 2: receiver clock minus sender clock.
    pub fn offset_ns(&self) -> i64 {
        let [t1, t2, t3, t4] = self.wide();
        saturate(((t2 - t1) + (t3 - t4)) / 2)
    }
    /// In i128: t2 and t3 are the receiver's numbers, and no pair of i64 can overflow there.
    fn wide(&self) -> [i128; 4] {
        [self.t1, self.t2, self.t3, self.t4].map(i128::from)
    }
}

fn saturate(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

/// Receiver clock minus sender clock, with its error bound.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetEstimate {
    pub offset_ns: i64,
    /// The true offset lies within offset ± error: half the round trip of the exchange used.
    pub error_ns: i64,
    /// The smallest round trip seen over the control connection.
    pub min_rtt_ns: i64,
    /// The largest round trip seen, a hint for how long stragglers may take.
    pub max_rtt_ns: i64,
    /// Both ends run on one kernel: the offset is exactly zero.
    pub same_host: bool,
    /// The receiver clock's rate against the sender's, parts per billion (a session-long fit).
    pub skew_ppb: i64,
    /// The fit's own spread (part of `error_ns`): how far the least-queued exchanges lay from the line.
    pub track_ns: i64,
    /// Clock steps detected during the session.
    pub steps: u32,
}

/// Keep the exchange with the smallest round trip (the least queueing, so the tightest bound), as NTP does.
pub fn estimate_offset(samples: &[Sample], same_host: bool) -> Option<OffsetEstimate> {
    let best = samples.iter().min_by_key(|s| s.rtt_ns())?;
    let max_rtt = samples.iter().map(|s| s.rtt_ns()).max().unwrap_or(0);
    let min_rtt = best.rtt_ns().max(0);
    Some(if same_host {
        OffsetEstimate {
            offset_ns: 0,
            error_ns: 0,
            min_rtt_ns: min_rtt,
            max_rtt_ns: max_rtt,
            same_host,
            ..OffsetEstimate::default()
        }
    } else {
        OffsetEstimate {
            offset_ns: best.offset_ns(),
            error_ns: min_rtt / 2,
            min_rtt_ns: min_rtt,
            max_rtt_ns: max_rtt,
            same_host,
            ..OffsetEstimate::default()
        }
    })
}

/// Receiver clock minus sender clock as a line in the sender's time: `offset(t) = offset_ns + skew_ppb ·
/// (t − ref_ns) / 10^9`. A fixed offset is a line of slope 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClockModel {
    pub ref_ns: i64,
    pub offset_ns: i64,
    /// Parts per billion: how much faster the receiver's clock runs than the sender's.
    pub skew_ppb: i64,
}

impl ClockModel {
    /// The receiver − sender offset at sender time `t_ns`. Total for any value.
    #[inline]
    pub fn offset_at(&self, t_ns: i64) -> i64 {
        let dt = i128::from(t_ns) - i128::from(self.ref_ns);
        let drift = dt.saturating_mul(i128::from(self.skew_ppb)) / 1_000_000_000;
        i64::try_from(i128::from(self.offset_ns).saturating_add(drift)).unwrap_or(if drift > 0 {
            i64::MAX
        } else {
            i64::MIN
        })
    }
}

/// Clock exchanges over a whole session, fitted as a line: the offset drifts when two hosts' clocks run at
/// different rates (50 ppm is 3 ms a minute), so one estimate before the data is wrong by the end.
///
/// Method (Paxson 1998, "On calibrating measurements of packet transit times"): each exchange gives an offset
/// θ at its midpoint (t1 + t4)/2, exact only if the two directions took equally long; queueing on either side
/// makes it wrong by up to half its round trip. So only the exchanges with the least queueing are used (round
/// trip within the lowest quarter of the segment's, or within 50 µs of its minimum) and a least-squares line
/// through their θ gives offset and skew. A clock step (someone set the time) shows as a good exchange far off
/// the line, confirmed by the next one: the fit restarts from it and the step is counted.
///
/// What it cannot know is the path's asymmetry: a 15 ms / 5 ms path moves every θ by 5 ms alike. So the error
/// bound is half the smallest round trip (the most asymmetry can hide) plus the fit's own spread.
#[derive(Debug, Clone, Default)]
pub struct ClockFit {
    same_host: bool,
    /// The boot ids said one kernel, but an exchange broke one clock's order.
    disagreed: bool,
    /// The current segment's exchanges (since the start or the last step), the most recent `MAX_SAMPLES`.
    samples: Vec<Sample>,
    /// An exchange that left the line, waiting for the next to confirm a step.
    suspect: Option<Sample>,
    steps: u32,
    min_rtt_ns: i64,
    max_rtt_ns: i64,
    /// The first exchange's offset (before any drift), for the report.
    first: Option<ClockModel>,
}

/// Exchanges kept per segment: a session of hours at one a second stays bounded.
const MAX_SAMPLES: usize = 4096;

/// The neighbourhood of an exchange whose smallest round trip is its floor: a few exchanges either side.
const LOCAL_NS: i64 = 2_000_000_000;

/// The round trip under which an exchange counts as little queued, given its neighbourhood's floor.
fn rtt_cut(floor: i64) -> i64 {
    floor.saturating_add((floor / 16).max(50_000))
}

/// How far an exchange may break one clock's order (t1 ≤ t2 ≤ t3 ≤ t4) before the ends are taken to read
/// different clocks: more than an NTP slew (at most 500 ppm) moves a clock between two reads.
const SAME_CLOCK_SLACK_NS: i64 = 1_000_000;

impl ClockFit {
    pub fn new(same_host: bool) -> ClockFit {
        ClockFit {
            same_host,
            ..ClockFit::default()
        }
    }

    /// One exchange, in arrival order.
    pub fn add(&mut self, s: Sample) {
        let rtt = s.rtt_ns();
        if rtt < 0 {
            return; // a reply that came back before it left: not a measurement
        }
        self.min_rtt_ns = if self.samples.is_empty() && self.first.is_none() {
            rtt
        } else {
            self.min_rtt_ns.min(rtt)
        };
        self.max_rtt_ns = self.max_rtt_ns.max(rtt);
        // Equal boot ids mean one kernel, and one kernel's clock orders every exchange. One that is out of
        // order proves the ends read different clocks after all (a process under libfaketime, a clock set
        // between reads): from here on the line is fitted as between two hosts, over every exchange so far.
        if self.same_host
            && (s.t2 < s.t1 - SAME_CLOCK_SLACK_NS || s.t3 > s.t4 + SAME_CLOCK_SLACK_NS)
        {
            self.same_host = false;
            self.disagreed = true;
            self.first = self.samples.first().map(|f| ClockModel {
                ref_ns: mid(f),
                ..ClockModel::default()
            });
        }
        if !self.same_host && self.is_off_the_line(&s) {
            match self.suspect.take() {
                // Two good exchanges in a row off the line, on the same side: the clock stepped.
                Some(prev)
                    if (prev.offset_ns() - self.model().offset_at(mid(&prev))).signum()
                        == (s.offset_ns() - self.model().offset_at(mid(&s))).signum() =>
                {
                    self.steps += 1;
                    self.samples = vec![prev, s];
                }
                _ => self.suspect = Some(s),
            }
            return;
        }
        self.suspect = None;
        if self.samples.len() >= MAX_SAMPLES {
            self.samples.remove(0);
        }
        self.samples.push(s);
        if self.first.is_none() {
            self.first = Some(self.model());
        }
    }

    /// A good (little queued) exchange whose offset lies beyond what queueing and the fit's spread explain.
    fn is_off_the_line(&self, s: &Sample) -> bool {
        let good = self.good();
        if good.len() < 3 {
            return false;
        }
        let rtt = s.rtt_ns();
        if rtt > rtt_cut(self.local_min_rtt(s.t1).min(rtt)) {
            return false;
        }
        let off = (s.offset_ns() - self.model().offset_at(mid(s))).abs();
        off > rtt / 2 + 4 * self.track_ns() + 1_000_000
    }

    /// The smallest round trip among the exchanges sent within `LOCAL_NS` of `t1` (the samples are in the
    /// order they were sent, one at a time).
    fn local_min_rtt(&self, t1: i64) -> i64 {
        let lo = self
            .samples
            .partition_point(|x| x.t1 < t1.saturating_sub(LOCAL_NS));
        let hi = self
            .samples
            .partition_point(|x| x.t1 <= t1.saturating_add(LOCAL_NS));
        self.samples[lo..hi.max(lo)]
            .iter()
            .map(Sample::rtt_ns)
            .min()
            .unwrap_or(i64::MAX)
    }

    /// The little-queued exchanges: each within a margin of the smallest round trip of its own neighbourhood
    /// (a min filter, as Paxson and NTP's clock filter use). Local, because the round trip's floor moves: the
    /// exchanges before the data run on an idle path, those during it share the path and the receiver's CPU
    /// with the data, and a filter against the session's minimum would keep only the first few.
    fn good(&self) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| s.rtt_ns() <= rtt_cut(self.local_min_rtt(s.t1)))
            .collect()
    }

    /// The fitted line (offset 0, no skew, on one host).
    pub fn model(&self) -> ClockModel {
        if self.same_host {
            return ClockModel::default();
        }
        let good = self.good();
        let Some(best) = good.iter().min_by_key(|s| s.rtt_ns()) else {
            return ClockModel::default();
        };
        let t0 = mid(best);
        // A slope needs exchanges spread in time: closer than half a second, the skew is noise.
        let span = good.iter().map(|s| mid(s)).max().unwrap_or(t0)
            - good.iter().map(|s| mid(s)).min().unwrap_or(t0);
        if good.len() < 3 || span < 500_000_000 {
            return ClockModel {
                ref_ns: t0,
                offset_ns: best.offset_ns(),
                skew_ppb: 0,
            };
        }
        // Least squares in f64 around t0 (relative times keep the precision).
        let n = good.len() as f64;
        let xs: Vec<f64> = good.iter().map(|s| (mid(s) - t0) as f64).collect();
        let ys: Vec<f64> = good.iter().map(|s| s.offset_ns() as f64).collect();
        let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
        let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
        let sxy: f64 = xs.iter().zip(&ys).map(|(x, y)| (x - mx) * (y - my)).sum();
        let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
        let at_t0 = my - slope * mx;
        ClockModel {
            ref_ns: t0,
            offset_ns: at_t0.round() as i64,
            skew_ppb: (slope * 1e9).round().clamp(-1e8, 1e8) as i64,
        }
    }

    /// The fit's spread: the largest distance of a good exchange from the line, ns.
    pub fn track_ns(&self) -> i64 {
        if self.same_host {
            return 0;
        }
        let m = self.model();
        self.good()
            .iter()
            .map(|s| (s.offset_ns() - m.offset_at(mid(s))).abs())
            .max()
            .unwrap_or(0)
    }

    /// The estimate as reported: the offset at the first exchange, the error bound (half the smallest round
    /// trip, which asymmetry can hide, plus the fit's spread), and the round trips seen.
    pub fn estimate(&self) -> OffsetEstimate {
        let m = self.model();
        let offset_ns = self.first.map_or(m.offset_ns, |f| m.offset_at(f.ref_ns));
        OffsetEstimate {
            offset_ns: if self.same_host { 0 } else { offset_ns },
            error_ns: if self.same_host {
                0
            } else {
                self.min_rtt_ns / 2 + self.track_ns()
            },
            min_rtt_ns: self.min_rtt_ns,
            max_rtt_ns: self.max_rtt_ns,
            same_host: self.same_host,
            skew_ppb: m.skew_ppb,
            track_ns: self.track_ns(),
            steps: self.steps,
        }
    }

    /// The receiver's clock's rate against the sender's, parts per million.
    pub fn drift_ppm(&self) -> f64 {
        self.model().skew_ppb as f64 / 1000.0
    }

    /// The boot ids said one host, but the exchanges showed two clocks (the fit treats them as two hosts).
    pub fn clocks_disagreed(&self) -> bool {
        self.disagreed
    }

    /// Clock steps detected (and fitted around).
    pub fn steps(&self) -> u32 {
        self.steps
    }

    pub fn exchanges(&self) -> usize {
        self.samples.len()
    }

    /// Time between the current segment's first and last exchange, ns.
    pub fn span_ns(&self) -> i64 {
        match (self.samples.first(), self.samples.last()) {
            (Some(a), Some(b)) => mid(b) - mid(a),
            _ => 0,
        }
    }
}

/// An exchange's midpoint on the sender's clock: where its offset applies.
fn mid(s: &Sample) -> i64 {
    ((i128::from(s.t1) + i128::from(s.t4)) / 2) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_from_symmetric_exchange_is_exact() {
        // Receiver clock is 1000 ns ahead; 100 ns each way; receiver holds 50 ns.
        let s = Sample {
            t1: 0,
            t2: 1100,
            t3: 1150,
            t4: 250,
        };
        assert_eq!(s.rtt_ns(), 200);
        assert_eq!(s.offset_ns(), 1000);
    }

    #[test]
    fn smallest_round_trip_wins_and_bounds_the_error() {
        let queued = Sample {
            t1: 0,
            t2: 5100,
            t3: 5150,
            t4: 5250,
        }; // rtt 5200, skewed by queueing
        let clean = Sample {
            t1: 10_000,
            t2: 11_100,
            t3: 11_150,
            t4: 10_250,
        }; // rtt 200
        let est = estimate_offset(&[queued, clean], false).unwrap();
        assert_eq!(est.offset_ns, 1000);
        assert_eq!(est.error_ns, 100);
        assert_eq!(est.min_rtt_ns, 200);
        assert_eq!(est.max_rtt_ns, 5200);
    }

    #[test]
    fn same_host_offset_is_zero() {
        let s = Sample {
            t1: 0,
            t2: 130,
            t3: 140,
            t4: 200,
        };
        let est = estimate_offset(&[s], true).unwrap();
        assert_eq!((est.offset_ns, est.error_ns), (0, 0));
        assert_eq!(estimate_offset(&[], true), None);
    }

    /// An exchange between a sender and a receiver whose clock reads `truth(t)` at true time t, over a path
    /// of `up` and `down` ns, the request leaving at true time t (the sender's clock is true time).
    fn exchange(t: i64, up: i64, down: i64, truth: &dyn Fn(i64) -> i64) -> Sample {
        Sample {
            t1: t,
            t2: truth(t + up),
            t3: truth(t + up + 20_000),
            t4: t + up + 20_000 + down,
        }
    }

    /// 1000 ppm of skew over a minute on a symmetric 10 ms path, with every third exchange queued: the line
    /// follows the true offset to well under a microsecond per second, and says 1000 ppm.
    #[test]
    fn a_drifting_clock_is_followed() {
        let truth = |t: i64| t + 5_000_000 + t / 1000; // 5 ms off, running 1000 ppm fast
        let mut fit = ClockFit::new(false);
        for i in 0..60i64 {
            let queued = if i % 3 == 0 { 3_000_000 } else { 0 };
            fit.add(exchange(
                i * 1_000_000_000,
                10_000_000 + queued,
                10_000_000,
                &truth,
            ));
        }
        let m = fit.model();
        for t in (0..60).map(|s| s * 1_000_000_000i64) {
            let err = (m.offset_at(t) - (truth(t) - t)).abs();
            assert!(err < 20_000, "at {t}: {err} ns off");
        }
        assert!(
            (fit.drift_ppm() - 1000.0).abs() < 0.5,
            "{}",
            fit.drift_ppm()
        );
        assert_eq!(fit.steps(), 0);
        let e = fit.estimate();
        // The receiver's 20 µs of holding time reads 20 ns longer on its fast clock.
        assert!((e.min_rtt_ns - 20_000_000).abs() <= 100, "{}", e.min_rtt_ns);
        assert!(
            e.error_ns >= 9_999_000 && e.error_ns < 10_100_000,
            "{}",
            e.error_ns
        );
    }

    /// The hybrid timer's margin follows how late sleeps wake: mostly 10 µs with one in ten at 300 µs, it
    /// covers the 95th percentile (300 µs); all within 1 µs, it stays at its 2 µs floor.
    #[test]
    fn the_hybrid_margin_learns_how_late_sleeps_wake() {
        let mut w = Waiter::new(TimerMode::Hybrid);
        assert_eq!(w.margin(), MARGIN_START);
        for i in 0..LATE_SAMPLES {
            let late = if i % 10 == 0 { 300 } else { 10 };
            w.learn(Duration::from_micros(late));
        }
        assert_eq!(w.margin(), Duration::from_micros(300));
        for _ in 0..LATE_SAMPLES {
            w.learn(Duration::from_nanos(500));
        }
        assert_eq!(w.margin(), MARGIN_MIN);
        for _ in 0..LATE_SAMPLES {
            w.learn(Duration::from_secs(1));
        }
        assert_eq!(w.margin(), MARGIN_MAX);
    }

    /// Boot ids that say one host, with a clock that is not the host's (libfaketime, 1000 ppm fast): the
    /// first exchange out of one clock's order switches the fit to two hosts, and it follows the drift from
    /// the first exchange on.
    #[test]
    fn one_host_with_two_clocks_is_found_out_and_fitted() {
        let truth = |t: i64| t + t / 1000;
        let mut fit = ClockFit::new(true);
        fit.add(exchange(0, 20_000, 20_000, &truth));
        assert!(!fit.clocks_disagreed());
        assert_eq!(fit.estimate().offset_ns, 0);
        for i in 1..20i64 {
            fit.add(exchange(i * 500_000_000, 20_000, 20_000, &truth));
        }
        assert!(fit.clocks_disagreed());
        let e = fit.estimate();
        assert!(!e.same_host);
        assert!(
            (fit.drift_ppm() - 1000.0).abs() < 1.0,
            "{}",
            fit.drift_ppm()
        );
        assert!(
            e.offset_ns.abs() < 1_000,
            "offset at the first exchange: {}",
            e.offset_ns
        );
        let m = fit.model();
        let t = 9_000_000_000;
        assert!((m.offset_at(t) - t / 1000).abs() < 2_000);
    }

    /// Eight quick exchanges on an idle path, then one every 250 ms at four times the round trip (the data
    /// shares the path and the receiver's CPU): the later exchanges are the ones that see the drift, and the
    /// filter must not throw them away against the idle path's floor.
    #[test]
    fn a_round_trip_floor_that_rises_with_the_data_does_not_freeze_the_fit() {
        let truth = |t: i64| t - t / 1000; // the receiver 1000 ppm slow
        let mut fit = ClockFit::new(false);
        for i in 0..8i64 {
            fit.add(exchange(i * 100_000, 12_000, 12_000, &truth));
        }
        for i in 1..40i64 {
            let jitter = (i % 3) * 10_000;
            fit.add(exchange(i * 250_000_000, 40_000 + jitter, 40_000, &truth));
        }
        assert!(
            (fit.drift_ppm() + 1000.0).abs() < 5.0,
            "{}",
            fit.drift_ppm()
        );
        let m = fit.model();
        let t = 10_000_000_000;
        assert!((m.offset_at(t) + t / 1000).abs() < 30_000, "{:?}", m);
    }

    /// 15 ms one way, 5 ms back: every exchange is off by the same 5 ms, which no method can see; the bound
    /// (half the smallest round trip) covers it.
    #[test]
    fn the_bound_covers_what_asymmetry_hides() {
        let truth = |t: i64| t + 2_000_000;
        let mut fit = ClockFit::new(false);
        for i in 0..10i64 {
            fit.add(exchange(i * 1_000_000_000, 15_000_000, 5_000_000, &truth));
        }
        let e = fit.estimate();
        let off_by = (e.offset_ns - 2_000_000).abs();
        assert!((4_900_000..=5_100_000).contains(&off_by), "{off_by}");
        assert!(
            e.error_ns >= off_by,
            "bound {} < error {off_by}",
            e.error_ns
        );
    }

    /// Someone sets the receiver's clock 50 ms forward mid-session: counted as a step, and the line
    /// continues from the new offset.
    #[test]
    fn a_clock_step_is_detected_and_fitted_around() {
        let truth = |t: i64| {
            t + if t >= 30_000_000_000 {
                51_000_000
            } else {
                1_000_000
            }
        };
        let mut fit = ClockFit::new(false);
        for i in 0..60i64 {
            fit.add(exchange(i * 1_000_000_000, 2_000_000, 2_000_000, &truth));
        }
        assert_eq!(fit.steps(), 1);
        let m = fit.model();
        assert!(
            (m.offset_at(50_000_000_000) - 51_000_000).abs() < 100_000,
            "{m:?}"
        );
    }

    #[test]
    fn one_host_is_exactly_zero_and_the_model_is_total() {
        let mut fit = ClockFit::new(true);
        fit.add(exchange(0, 1000, 1000, &|t| t));
        assert_eq!(
            (fit.model(), fit.estimate().error_ns),
            (ClockModel::default(), 0)
        );
        let m = ClockModel {
            ref_ns: i64::MIN,
            offset_ns: i64::MAX,
            skew_ppb: 100_000_000,
        };
        assert_eq!(m.offset_at(i64::MAX), i64::MAX);
    }
}
