//! The absolute send schedule. Message i is due at a fixed offset from the start, whatever happened to
//! message i−1, so a stall shows up as latency (measured from the schedule) instead of silently shifting the
//! rest of the run: this is what keeps the figures free of coordinated omission.

use rand::SeedableRng;
use rand_distr::{Distribution, Exp};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    /// Equal gaps of 1/rate.
    #[default]
    Periodic,
    /// Exponential gaps with mean 1/rate (RFC 2330 §11.1.1, RFC 3432): sampling cannot phase-lock with
    /// periodic behaviour of the path.
    Poisson,
}

impl Schedule {
    pub fn name(self) -> &'static str {
        match self {
            Schedule::Periodic => "periodic",
            Schedule::Poisson => "poisson",
        }
    }
}

/// Yields the scheduled offset (ns from the start) of each message in turn.
pub struct Pacer {
    mean_gap_ns: f64,
    schedule: Schedule,
    next_ns: f64,
    index: u64,
    exp: Option<Exp<f64>>,
    rng: rand::rngs::SmallRng,
}

impl Pacer {
    /// `rate` in messages per second; 0 means unpaced: every message is due at once.
    pub fn new(rate: f64, schedule: Schedule, seed: u64) -> Pacer {
        let mean_gap_ns = if rate > 0.0 { 1e9 / rate } else { 0.0 };
        let exp = (rate > 0.0 && schedule == Schedule::Poisson)
            .then(|| Exp::new(1.0 / mean_gap_ns).expect("positive rate"));
        Pacer {
            mean_gap_ns,
            schedule,
            next_ns: 0.0,
            index: 0,
            exp,
            rng: rand::rngs::SmallRng::seed_from_u64(seed),
        }
    }

    pub fn unpaced(&self) -> bool {
        self.mean_gap_ns == 0.0
    }

    /// Offset of the next message, without consuming it.
    pub fn peek(&self) -> u64 {
        self.next_ns as u64
    }

    /// Consume the next slot and return its offset.
    pub fn advance(&mut self) -> u64 {
        let now = self.next_ns as u64;
        self.index += 1;
        self.next_ns = match (self.schedule, &self.exp) {
            // Multiply rather than accumulate, so rounding never drifts over millions of messages.
            (Schedule::Periodic, _) | (_, None) => (self.index as f64 * self.mean_gap_ns).round(),
            (Schedule::Poisson, Some(exp)) => self.next_ns + exp.sample(&mut self.rng),
        };
        now
    }
}

/// Sleep, then spin the last stretch, until `target`: the kernel's sleep overshoots by tens of µs, spinning
/// 100 µs per message is cheap at the rates where that matters.
pub fn wait_until(target: std::time::Instant) {
    use std::time::{Duration, Instant};
    loop {
        let now = Instant::now();
        if now >= target {
            return;
        }
        let left = target - now;
        if left > Duration::from_micros(200) {
            std::thread::sleep(left - Duration::from_micros(100));
        } else {
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periodic_offsets_are_exact() {
        let mut p = Pacer::new(1000.0, Schedule::Periodic, 1);
        let offs: Vec<u64> = (0..4).map(|_| p.advance()).collect();
        assert_eq!(offs, vec![0, 1_000_000, 2_000_000, 3_000_000]);
        let mut p = Pacer::new(3.0, Schedule::Periodic, 1);
        for _ in 0..3_000_000 {
            p.advance();
        }
        assert_eq!(p.peek(), 1_000_000_000_000_000); // 3e6 messages at 3/s: exactly 1e6 s = 1e15 ns, no drift
    }

    #[test]
    fn unpaced_is_always_due() {
        let mut p = Pacer::new(0.0, Schedule::Poisson, 1);
        assert!(p.unpaced());
        assert_eq!((p.advance(), p.advance()), (0, 0));
    }

    #[test]
    fn poisson_gaps_have_the_right_mean_and_are_seeded() {
        let mut p = Pacer::new(1000.0, Schedule::Poisson, 7);
        let n = 100_000;
        for _ in 0..n {
            p.advance();
        }
        let mean_gap = p.peek() as f64 / n as f64;
        assert!((mean_gap - 1e6).abs() < 1e6 * 0.02, "mean gap {mean_gap}");
        let mut a = Pacer::new(1000.0, Schedule::Poisson, 7);
        let mut b = Pacer::new(1000.0, Schedule::Poisson, 7);
        assert_eq!(
            (0..10).map(|_| a.advance()).collect::<Vec<_>>(),
            (0..10).map(|_| b.advance()).collect::<Vec<_>>()
        );
    }
}
