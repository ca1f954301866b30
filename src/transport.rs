//! What the TCP and UDP send loops share: the send plan (absolute schedule, count and duration bounds, sequence
//! numbers) and the sender-side echo accounting.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::clock::now_ns;
use crate::pacing::{wait_until, Pacer};
use crate::signal::Stop;
use crate::stats::{new_ns_histogram, Arrival, SeqTracker};
use crate::traffic::Traffic;
use crate::wire::{self, Header};

/// Hands out (seq, scheduled time) pairs as they fall due. Sequence numbers are consecutive over the messages
/// the kernel accepted: a message the kernel refused gives its number back (`give_back`), so the receiver's
/// 0..sent is exactly what entered the network, and refusals are counted apart as send errors.
pub struct SendPlan {
    pacer: Pacer,
    start: Instant,
    start_ns: i64,
    count: u64,
    duration: Option<Duration>,
    next_seq: u64,
    session: u64,
    traffic: Traffic,
    pub stop: Stop,
    /// Messages accepted so far, for the progress display.
    pub progress: Arc<AtomicU64>,
}

impl SendPlan {
    /// `session` seeds the Poisson schedule and picks mixed message sizes.
    pub fn new(t: &Traffic, session: u64, stop: Stop) -> SendPlan {
        let seed = session;
        SendPlan {
            pacer: Pacer::new(t.rate, t.schedule, seed),
            start: Instant::now(),
            start_ns: now_ns(),
            count: t.count,
            duration: t.duration,
            next_seq: 0,
            session,
            traffic: t.clone(),
            stop,
            progress: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Restart the clock: the schedule begins now.
    pub fn begin(&mut self) {
        self.start = Instant::now();
        self.start_ns = now_ns();
    }

    fn done(&self) -> bool {
        if self.next_seq >= self.count || self.stop.is_set() {
            return true;
        }
        match self.duration {
            Some(d) => Duration::from_nanos(self.pacer.peek()) >= d || self.start.elapsed() >= d,
            None => false,
        }
    }

    /// The next message: with `block`, wait for its time (None only when the plan is over); without, None
    /// when it is not due yet.
    pub fn next_due(&mut self, block: bool) -> Option<(u64, i64)> {
        if self.done() {
            return None;
        }
        let off = self.pacer.peek();
        let target = self.start + Duration::from_nanos(off);
        if block {
            wait_until(target);
            if self.stop.is_set() {
                return None;
            }
        } else if Instant::now() < target {
            return None;
        }
        self.pacer.advance();
        let seq = self.next_seq;
        self.next_seq += 1;
        // Unpaced, there is no schedule to fall behind: the intended send time is now, and latency equals
        // transit. (Measuring from the run's start would report the queue the sender itself builds.)
        let sched = if self.pacer.unpaced() {
            now_ns()
        } else {
            self.start_ns + off as i64
        };
        Some((seq, sched))
    }

    /// The size of message `seq` (all the same unless the session mixes sizes).
    #[inline]
    pub fn size_of(&self, seq: u64) -> usize {
        self.traffic.size_of(self.session, seq)
    }

    /// The last `n` handed-out messages were not accepted by the kernel: their numbers are reused.
    pub fn give_back(&mut self, n: u64) {
        self.next_seq -= n;
    }

    pub fn accepted(&self, total: u64) {
        self.progress.store(total, Ordering::Relaxed);
    }
}

/// What the sending side measured of its own sending.
#[derive(Debug, Clone, Default)]
pub struct SendStats {
    pub sent: u64,
    pub send_errors: u64,
    pub first_send_ns: Option<i64>,
    pub last_send_ns: Option<i64>,
    /// Why sending ended early, when it did (peer gone, Ctrl-C).
    pub cut_short: Option<String>,
}

impl SendStats {
    pub fn stamp(&mut self, send_ns: i64) {
        self.first_send_ns.get_or_insert(send_ns);
        self.last_send_ns = Some(send_ns);
    }
}

/// Round trips measured from echo replies: (t4 − t1) − (t3 − t2), the receiver's holding time removed
/// (RFC 2681, RFC 5357). Both differences are taken on one clock each, so no offset is needed.
pub struct EchoStats {
    session: u64,
    pub rtt: Histogram<u64>,
    pub seq: SeqTracker,
    pub invalid: u64,
    pub corrupt: u64,
    /// --trace: the receive calls that brought replies.
    pub timer: crate::trace::Timer,
}

impl EchoStats {
    /// `traced`: time the receive calls for --trace.
    pub fn new(session: u64, limit: u64, traced: bool) -> EchoStats {
        EchoStats {
            session,
            rtt: new_ns_histogram(),
            seq: SeqTracker::new(limit),
            invalid: 0,
            corrupt: 0,
            timer: crate::trace::Timer::new(traced),
        }
    }

    /// One reply received at t4 (sender clock).
    pub fn on_reply(&mut self, msg: &[u8], t4: i64) {
        let Ok(h) = Header::parse(msg) else {
            self.invalid += 1;
            return;
        };
        if h.session != self.session || h.flags & wire::FLAG_ECHO_REPLY == 0 {
            self.invalid += 1;
            return;
        }
        if !wire::verify(msg, &h) {
            self.corrupt += 1;
            return;
        }
        let Some((t2, t3)) = wire::echo_times(msg) else {
            self.invalid += 1;
            return;
        };
        match self.seq.record(h.seq) {
            Arrival::OutOfRange => self.invalid += 1,
            Arrival::Duplicate => {}
            Arrival::InOrder | Arrival::Reordered => {
                let rtt = (t4 - h.send_ns) - (t3 - t2);
                self.rtt.saturating_record(rtt.max(0) as u64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pacing::Schedule;

    fn traffic(count: u64, rate: f64, duration: Option<Duration>) -> Traffic {
        Traffic {
            count,
            duration,
            rate,
            size: 64,
            mix: None,
            schedule: Schedule::Periodic,
            echo: false,
            linger: None,
            per_message: false,
        }
    }

    #[test]
    fn plan_hands_out_consecutive_numbers_and_takes_back_refusals() {
        let mut p = SendPlan::new(&traffic(5, 0.0, None), 1, Stop::new());
        assert_eq!(p.next_due(true).map(|x| x.0), Some(0));
        assert_eq!(p.next_due(false).map(|x| x.0), Some(1));
        p.give_back(1);
        assert_eq!(p.next_due(false).map(|x| x.0), Some(1));
        let rest: Vec<u64> = std::iter::from_fn(|| p.next_due(false).map(|x| x.0)).collect();
        assert_eq!(rest, vec![2, 3, 4]);
        assert_eq!(p.next_due(true), None);
    }

    #[test]
    fn paced_plan_is_not_due_early_and_duration_bounds_it() {
        let mut p = SendPlan::new(
            &traffic(1000, 10.0, Some(Duration::from_millis(250))),
            1,
            Stop::new(),
        );
        p.begin();
        let (_, s0) = p.next_due(true).unwrap();
        assert!(
            p.next_due(false).is_none(),
            "the next message is 100 ms away"
        );
        let (_, s1) = p.next_due(true).unwrap();
        assert_eq!(s1 - s0, 100_000_000);
        assert!(p.next_due(true).is_some()); // 200 ms
        assert!(p.next_due(true).is_none()); // 300 ms is past the 250 ms duration
    }

    #[test]
    fn echo_rtt_removes_holding_time() {
        let mut e = EchoStats::new(5, 10, false);
        let mut m = wire::template(5, 64);
        wire::stamp(&mut m, 0, 1_000, 1_000);
        // Receiver got it at 50_000 and replied at 80_000 (its clock); back at the sender at 101_000.
        wire::make_echo_reply(&mut m, 50_000, 80_000);
        e.on_reply(&m, 101_000);
        assert_eq!(e.rtt.len(), 1);
        // (101_000 − 1_000) − (80_000 − 50_000) = 70_000, within the histogram's 3 significant digits
        assert!(e.rtt.equivalent(e.rtt.max(), 70_000));
    }
}
