//! The absolute send schedule. Message i is due at a fixed offset from the start, whatever happened to
//! message i−1, so a stall shows up as latency (measured from the schedule) instead of silently shifting the
//! rest of the run: this is what keeps the figures free of coordinated omission.

use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_distr::{Distribution, Exp};

use crate::clock::Now;
use crate::traffic::{Schedule, Traffic};

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

/// The next message of a [`SendPlan`]: send it now, wait until its time, or the plan is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Send `seq` now; `sched_ns` is its intended send time (wall clock ns), the origin of its latency.
    Now {
        seq: u64,
        sched_ns: i64,
    },
    /// Nothing is due before this instant.
    At(Instant),
    Over,
}

/// Hands out (seq, scheduled time) pairs as they fall due. Sequence numbers are consecutive over the messages
/// the kernel accepted: a message the kernel refused gives its number back (`give_back`), so the receiver's
/// 0..sent is exactly what entered the network, and refusals are counted apart as send errors.
///
/// Sans-IO: every call takes `now`; the caller sleeps, sends and checks for cancellation.
pub struct SendPlan {
    pacer: Pacer,
    start: Instant,
    start_ns: i64,
    count: u64,
    duration: Option<Duration>,
    next_seq: u64,
    session: u64,
    traffic: Traffic,
}

impl SendPlan {
    /// `session` seeds the Poisson schedule and picks mixed message sizes. The schedule starts at `now`.
    pub fn new(t: &Traffic, session: u64, now: Now) -> SendPlan {
        SendPlan {
            pacer: Pacer::new(t.rate, t.schedule, session),
            start: now.mono,
            start_ns: now.wall_ns,
            count: t.count,
            duration: t.duration,
            next_seq: 0,
            session,
            traffic: t.clone(),
        }
    }

    /// Restart the schedule at `now` (after set-up, so set-up never counts as latency).
    pub fn begin(&mut self, now: Now) {
        self.start = now.mono;
        self.start_ns = now.wall_ns;
    }

    fn over(&self, now: Now) -> bool {
        if self.next_seq >= self.count {
            return true;
        }
        match self.duration {
            Some(d) => {
                Duration::from_nanos(self.pacer.peek()) >= d
                    || now.mono.saturating_duration_since(self.start) >= d
            }
            None => false,
        }
    }

    /// What is due at `now`. A message handed out as `Due::Now` is taken: send it, or `give_back` its number.
    pub fn next(&mut self, now: Now) -> Due {
        if self.over(now) {
            return Due::Over;
        }
        let off = self.pacer.peek();
        let target = self.start + Duration::from_nanos(off);
        if now.mono < target {
            return Due::At(target);
        }
        self.pacer.advance();
        let seq = self.next_seq;
        self.next_seq += 1;
        // Unpaced, there is no schedule to fall behind: the intended send time is now, and latency equals
        // transit. (Measuring from the run's start would report the queue the sender itself builds.)
        let sched_ns = if self.pacer.unpaced() {
            now.wall_ns
        } else {
            self.start_ns
                .saturating_add(off.min(i64::MAX as u64) as i64)
        };
        Due::Now { seq, sched_ns }
    }

    /// The size of message `seq` (all the same unless the session mixes sizes).
    #[inline]
    pub fn size_of(&self, seq: u64) -> usize {
        self.traffic.size_of(self.session, seq)
    }

    /// The last `n` handed-out messages were not accepted by the kernel: their numbers are reused.
    pub fn give_back(&mut self, n: u64) {
        self.next_seq = self.next_seq.saturating_sub(n);
    }
}

/// Echo with a window (`--outstanding N`): at most N messages without a reply, so the next leaves when a
/// reply comes back (N = 1 is ping-pong). A message whose reply has not come within `give_up` no longer holds
/// the window: it counts as lost on the way back, as it will in the row.
///
/// Sans-IO: every call takes `now`; the driver reads replies and sends.
#[derive(Debug)]
pub struct EchoWindow {
    size: usize,
    give_up: Duration,
    /// Unanswered messages in send order, with their send time.
    out: std::collections::VecDeque<(u64, Instant)>,
    /// Messages given up on.
    pub given_up: u64,
}

impl EchoWindow {
    pub fn new(size: u32, give_up: Duration) -> EchoWindow {
        EchoWindow {
            size: size.max(1) as usize,
            give_up,
            out: std::collections::VecDeque::with_capacity(size.clamp(1, 1024) as usize),
            given_up: 0,
        }
    }

    /// May another message leave at `now`? (Gives up on the overdue first.)
    pub fn has_room(&mut self, now: Instant) -> bool {
        while let Some(&(_, at)) = self.out.front() {
            if now.saturating_duration_since(at) < self.give_up {
                break;
            }
            self.out.pop_front();
            self.given_up += 1;
        }
        self.out.len() < self.size
    }

    pub fn sent(&mut self, seq: u64, now: Instant) {
        self.out.push_back((seq, now));
    }

    /// The reply of `seq` came back. Replies come mostly in order, so the search ends at the front.
    pub fn replied(&mut self, seq: u64) {
        if let Some(i) = self.out.iter().position(|&(s, _)| s == seq) {
            self.out.remove(i);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.out.is_empty()
    }

    /// When the oldest unanswered message will be given up, if any is out.
    pub fn deadline(&self) -> Option<Instant> {
        self.out.front().map(|&(_, at)| at + self.give_up)
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

    fn traffic(count: u64, rate: f64, duration: Option<Duration>) -> Traffic {
        Traffic {
            count,
            duration,
            rate,
            ..Traffic::default()
        }
    }

    fn at(base: Now, ms: u64) -> Now {
        Now {
            mono: base.mono + Duration::from_millis(ms),
            wall_ns: base.wall_ns + ms as i64 * 1_000_000,
        }
    }

    #[test]
    fn plan_hands_out_consecutive_numbers_and_takes_back_refusals() {
        let t0 = Now::fixed();
        let mut p = SendPlan::new(&traffic(5, 0.0, None), 1, t0);
        let seq = |d: Due| match d {
            Due::Now { seq, .. } => Some(seq),
            _ => None,
        };
        assert_eq!(seq(p.next(t0)), Some(0));
        assert_eq!(seq(p.next(t0)), Some(1));
        p.give_back(1);
        assert_eq!(seq(p.next(t0)), Some(1));
        let rest: Vec<u64> = std::iter::from_fn(|| seq(p.next(t0))).collect();
        assert_eq!(rest, vec![2, 3, 4]);
        assert_eq!(p.next(t0), Due::Over);
    }

    /// On a virtual clock: nothing is due early, the schedule is absolute, and the duration ends it.
    #[test]
    fn paced_plan_is_not_due_early_and_duration_bounds_it() {
        let t0 = Now::fixed();
        let mut p = SendPlan::new(
            &traffic(1000, 10.0, Some(Duration::from_millis(250))),
            1,
            t0,
        );
        assert_eq!(
            p.next(t0),
            Due::Now {
                seq: 0,
                sched_ns: t0.wall_ns
            }
        );
        assert_eq!(
            p.next(at(t0, 50)),
            Due::At(t0.mono + Duration::from_millis(100))
        );
        // Late by 30 ms: still due, with its own scheduled time (latency counts from the schedule).
        assert_eq!(
            p.next(at(t0, 130)),
            Due::Now {
                seq: 1,
                sched_ns: t0.wall_ns + 100_000_000
            }
        );
        assert!(matches!(p.next(at(t0, 200)), Due::Now { seq: 2, .. }));
        // 300 ms is past the 250 ms duration.
        assert_eq!(p.next(at(t0, 300)), Due::Over);
    }

    #[test]
    fn unpaced_messages_are_scheduled_when_handed_out() {
        let t0 = Now::fixed();
        let mut p = SendPlan::new(&traffic(3, 0.0, None), 1, t0);
        assert_eq!(
            p.next(at(t0, 7)),
            Due::Now {
                seq: 0,
                sched_ns: t0.wall_ns + 7_000_000
            }
        );
    }

    /// A window of two on a virtual clock: full after two sends, a reply makes room, an unanswered message
    /// stops holding it after the give-up time and is counted.
    #[test]
    fn the_echo_window_holds_n_and_gives_up_on_the_overdue() {
        let t0 = Now::fixed().mono;
        let ms = |n| t0 + Duration::from_millis(n);
        let mut w = EchoWindow::new(2, Duration::from_millis(100));
        assert!(w.has_room(t0) && w.is_empty() && w.deadline().is_none());
        w.sent(0, ms(0));
        w.sent(1, ms(10));
        assert!(!w.has_room(ms(20)));
        w.replied(1);
        assert!(w.has_room(ms(20)));
        w.sent(2, ms(20));
        assert_eq!(w.deadline(), Some(ms(100)));
        // A reply to something not out (a duplicate, a forgery) changes nothing.
        w.replied(7);
        assert!(!w.has_room(ms(99)));
        assert!(w.has_room(ms(100)));
        assert_eq!((w.given_up, w.deadline()), (1, Some(ms(120))));
        assert!(w.has_room(ms(500)));
        assert!(w.is_empty());
        assert_eq!(w.given_up, 2);
    }
}
