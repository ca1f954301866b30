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

/// Sleep, then spin the last stretch, until `target` or until `stop()` says so (checked at least every 50 ms):
/// the kernel's sleep overshoots by tens of µs, and spinning 100 µs per message is cheap at the rates where
/// that matters.
pub fn sleep_until(target: Instant, stop: &dyn Fn() -> bool) {
    loop {
        let now = Instant::now();
        if now >= target || stop() {
            return;
        }
        let left = target - now;
        if left > Duration::from_micros(200) {
            std::thread::sleep((left - Duration::from_micros(100)).min(Duration::from_millis(50)));
        } else {
            std::hint::spin_loop();
        }
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
        }
    } else {
        OffsetEstimate {
            offset_ns: best.offset_ns(),
            error_ns: min_rtt / 2,
            min_rtt_ns: min_rtt,
            max_rtt_ns: max_rtt,
            same_host,
        }
    })
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
}
