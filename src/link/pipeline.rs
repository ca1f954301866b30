//! One direction of the link, without I/O: buffer pool, impairment, delay line, reorder hold,
//! and the exact output accounting (RFC 4737 reordering). Time is passed in by the caller.
//!
//! Packets live in a fixed pool of buffers (allocated on first use, then reused), so the
//! steady state allocates nothing per packet. The delay line is a min-heap keyed by
//! (release time, entry order): equal release times keep entry order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use super::counters::{Field, SharedCounters};
use super::impair::{Fate, Impairer, Impairment, REORDER_HOLD_MAX};
use super::packet;
use super::{Direction, Proto};

/// Size of each packet buffer: MTU 1500 plus slack.
pub(crate) const BUF_SIZE: usize = 2048;
/// Most packets in flight (delay line + reorder hold) per direction; beyond that, tail drop.
pub(crate) const MAX_IN_FLIGHT: usize = 32 * 1024;

#[derive(Debug, Clone, Copy)]
struct Meta {
    len: usize,
    proto: Proto,
    seq: u64,
    duplicate: bool,
    corrupted: bool,
    /// Will the receiving kernel accept it (intact, or corrupted with a fixed UDP checksum)?
    accepted: bool,
    hold: bool,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    slot: u32,
    remaining: u32,
    deadline: Duration,
}

pub(crate) struct Pipeline {
    dir: Direction,
    imp: Impairer,
    fix_checksum: bool,
    gap: u32,
    counters: Arc<SharedCounters>,
    bufs: Vec<Box<[u8]>>,
    meta: Vec<Meta>,
    free: Vec<u32>,
    heap: BinaryHeap<Reverse<(Duration, u64, u32)>>,
    order: u64,
    entry_seq: [u64; 4],
    next_exp: [u64; 4],
    held: Vec<Held>,
    ready: Vec<u32>,
    warned_queue: bool,
    warned_pool: bool,
}

impl Pipeline {
    pub(crate) fn new(
        dir: Direction,
        cfg: &Impairment,
        seed: u64,
        counters: Arc<SharedCounters>,
    ) -> Pipeline {
        Pipeline {
            dir,
            imp: Impairer::new(cfg, seed),
            fix_checksum: cfg.corrupt_fix_checksum,
            gap: cfg.reorder_gap(),
            counters,
            bufs: Vec::new(),
            meta: Vec::new(),
            free: Vec::new(),
            heap: BinaryHeap::with_capacity(1024),
            order: 0,
            entry_seq: [0; 4],
            next_exp: [0; 4],
            held: Vec::with_capacity(64),
            ready: Vec::with_capacity(64),
            warned_queue: false,
            warned_pool: false,
        }
    }

    /// A free buffer to read the next packet into, or `None` when [`MAX_IN_FLIGHT`] are in use.
    pub(crate) fn alloc(&mut self) -> Option<u32> {
        if let Some(s) = self.free.pop() {
            return Some(s);
        }
        if self.bufs.len() >= MAX_IN_FLIGHT {
            return None;
        }
        self.bufs.push(vec![0u8; BUF_SIZE].into_boxed_slice());
        self.meta.push(Meta {
            len: 0,
            proto: Proto::Other,
            seq: 0,
            duplicate: false,
            corrupted: false,
            accepted: true,
            hold: false,
        });
        Some((self.bufs.len() - 1) as u32)
    }

    /// Return a buffer taken with [`Pipeline::alloc`] but not used.
    pub(crate) fn unalloc(&mut self, slot: u32) {
        self.free.push(slot);
    }

    pub(crate) fn buf_mut(&mut self, slot: u32) -> &mut [u8] {
        &mut self.bufs[slot as usize]
    }

    fn add(&self, proto: Proto, f: Field) {
        self.counters.add(self.dir, proto, f, 1);
    }

    /// A packet that arrived while every buffer was in flight: counted as a queue drop.
    pub(crate) fn overflow(&mut self, pkt: &[u8]) {
        let info = packet::parse(pkt);
        let proto = info.proto;
        self.add(proto, Field::Entered);
        if info.fragment {
            self.add(proto, Field::Fragments);
        }
        self.entry_seq[proto as usize] += 1;
        self.add(proto, Field::QueueDrops);
        if !self.warned_pool {
            self.warned_pool = true;
            eprintln!(
                "sockbench link: {}: {MAX_IN_FLIGHT} packets in flight, dropping new ones (counted as queue_drops)",
                self.dir.name()
            );
        }
    }

    /// Take the packet of `len` bytes just read into `slot`, arriving at `now`.
    pub(crate) fn admit(&mut self, now: Duration, slot: u32, len: usize) {
        let len = len.min(BUF_SIZE);
        let info = packet::parse(&self.bufs[slot as usize][..len]);
        let proto = info.proto;
        self.add(proto, Field::Entered);
        if info.fragment {
            self.add(proto, Field::Fragments);
        }
        let seq = self.entry_seq[proto as usize];
        self.entry_seq[proto as usize] += 1;
        let span = packet::corruptible_range(&info);
        let span_len = span.as_ref().map_or(0, |r| r.len());
        match self.imp.decide(now, len, span_len) {
            Fate::Drop => {
                self.add(proto, Field::Dropped);
                self.free.push(slot);
            }
            Fate::QueueDrop => {
                self.add(proto, Field::QueueDrops);
                self.free.push(slot);
                if !self.warned_queue {
                    self.warned_queue = true;
                    eprintln!(
                        "sockbench link: {}: rate-limit queue full ({} packets), tail-dropping (counted as queue_drops)",
                        self.dir.name(),
                        self.imp.config().queue_limit()
                    );
                }
            }
            Fate::Deliver {
                release,
                duplicate,
                corrupt,
                hold,
            } => {
                let buf = &mut self.bufs[slot as usize][..len];
                let mut accepted = true;
                if let (Some(flip), Some(range)) = (corrupt, span) {
                    buf[range.start + flip.offset] ^= flip.mask;
                    accepted =
                        self.fix_checksum && proto == Proto::Udp && packet::fix_udp_checksum(buf);
                }
                self.meta[slot as usize] = Meta {
                    len,
                    proto,
                    seq,
                    duplicate,
                    corrupted: corrupt.is_some(),
                    accepted,
                    hold,
                };
                self.heap.push(Reverse((release, self.order, slot)));
                self.order += 1;
            }
        }
    }

    /// The next time something is due (delay line or reorder hold).
    pub(crate) fn next_deadline(&self) -> Option<Duration> {
        let h = self.heap.peek().map(|Reverse((t, _, _))| *t);
        let d = self.held.iter().map(|h| h.deadline).min();
        match (h, d) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Write out everything due at `now`, in order, through `write`.
    pub(crate) fn release_due(
        &mut self,
        now: Duration,
        write: &mut impl FnMut(&[u8]) -> std::io::Result<()>,
    ) {
        while let Some(&Reverse((t, _, slot))) = self.heap.peek() {
            if t > now {
                break;
            }
            self.heap.pop();
            let m = &mut self.meta[slot as usize];
            if m.hold {
                m.hold = false;
                self.held.push(Held {
                    slot,
                    remaining: self.gap,
                    deadline: now + REORDER_HOLD_MAX,
                });
                continue;
            }
            self.deliver(slot, write);
            // Held packets of the same protocol count this one as overtaking them.
            let proto = self.meta[slot as usize].proto;
            let mut i = 0;
            while i < self.held.len() {
                let h = &mut self.held[i];
                if self.meta[h.slot as usize].proto == proto {
                    h.remaining -= 1;
                    if h.remaining == 0 {
                        self.ready.push(h.slot);
                        self.held.remove(i);
                        continue;
                    }
                }
                i += 1;
            }
            while !self.ready.is_empty() {
                let s = self.ready.remove(0);
                self.deliver(s, write);
            }
        }
        // Held too long: nothing came to overtake it.
        let mut i = 0;
        while i < self.held.len() {
            if self.held[i].deadline <= now {
                let h = self.held.remove(i);
                self.deliver(h.slot, write);
            } else {
                i += 1;
            }
        }
    }

    fn deliver(&mut self, slot: u32, write: &mut impl FnMut(&[u8]) -> std::io::Result<()>) {
        let m = self.meta[slot as usize];
        let buf = &self.bufs[slot as usize][..m.len];
        if write(buf).is_err() {
            self.add(m.proto, Field::WriteErrors);
            self.free.push(slot);
            return;
        }
        self.add(m.proto, Field::Forwarded);
        if m.corrupted {
            self.add(m.proto, Field::Corrupted);
        }
        if m.accepted {
            // RFC 4737 §3.3: reordered if its sequence number is below NextExp.
            let ne = &mut self.next_exp[m.proto as usize];
            if m.seq < *ne {
                self.add(m.proto, Field::Reordered);
            } else {
                *ne = m.seq + 1;
            }
        }
        if m.duplicate && write(buf).is_ok() {
            self.add(m.proto, Field::Duplicated);
        }
        self.free.push(slot);
    }

    /// At stop: count what is still inside the link as `unsent_at_stop`.
    pub(crate) fn finish(&mut self) {
        while let Some(Reverse((_, _, slot))) = self.heap.pop() {
            let p = self.meta[slot as usize].proto;
            self.add(p, Field::UnsentAtStop);
            self.free.push(slot);
        }
        for h in std::mem::take(&mut self.held) {
            let p = self.meta[h.slot as usize].proto;
            self.add(p, Field::UnsentAtStop);
            self.free.push(h.slot);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::impair::GilbertElliott;
    use super::super::packet::tests::ipv4_udp;
    use super::super::packet::udp_checksum_ok;
    use super::*;

    /// Feed `n` UDP datagrams carrying their index, one every `step`, then drain; return the
    /// counters and what came out (index, checksum ok).
    fn simulate(
        cfg: &Impairment,
        seed: u64,
        n: u32,
        step: Duration,
    ) -> (super::super::Counts, Vec<(u32, bool)>) {
        let counters = Arc::new(SharedCounters::default());
        let mut p = Pipeline::new(Direction::AtoB, cfg, seed, counters.clone());
        let mut out: Vec<(u32, bool)> = Vec::new();
        let mut write = |b: &[u8]| -> std::io::Result<()> {
            let idx = u32::from_be_bytes([b[28], b[29], b[30], b[31]]);
            out.push((idx, udp_checksum_ok(b)));
            Ok(())
        };
        let mut now = Duration::ZERO;
        for i in 0..n {
            let mut payload = [0u8; 64];
            payload[..4].copy_from_slice(&i.to_be_bytes());
            let pkt = ipv4_udp(&payload);
            let slot = p.alloc().unwrap();
            p.buf_mut(slot)[..pkt.len()].copy_from_slice(&pkt);
            p.admit(now, slot, pkt.len());
            p.release_due(now, &mut write);
            now += step;
        }
        while let Some(t) = p.next_deadline() {
            now = now.max(t);
            p.release_due(now, &mut write);
        }
        p.finish();
        (counters.snapshot().get(Direction::AtoB, Proto::Udp), out)
    }

    /// What a UDP receiver would count: RFC 4737 reordered, unique, duplicates (checksum-valid only).
    fn receiver_view(out: &[(u32, bool)], n: u32) -> (u64, u64, u64) {
        let mut seen = vec![false; n as usize];
        let (mut next_exp, mut reordered, mut unique, mut dups) = (0u32, 0, 0, 0);
        for &(i, ok) in out {
            if !ok {
                continue;
            }
            if seen[i as usize] {
                dups += 1;
                continue;
            }
            seen[i as usize] = true;
            unique += 1;
            if i < next_exp {
                reordered += 1;
            } else {
                next_exp = i + 1;
            }
        }
        (reordered, unique, dups)
    }

    #[test]
    fn exact_accounting_matches_receiver_everything_on() {
        let cfg = Impairment {
            loss: 0.03,
            delay: Duration::from_millis(5),
            jitter: Duration::from_millis(2),
            reorder: 0.05,
            reorder_gap: 2,
            duplicate: 0.02,
            corrupt: 0.02,
            rate_bps: Some(20_000_000),
            queue_limit: 20,
            ..Default::default()
        };
        let n = 20_000;
        let (c, out) = simulate(&cfg, 5, n, Duration::from_micros(30));
        let (reordered, unique, dups) = receiver_view(&out, n);
        assert_eq!(c.entered, n as u64);
        assert_eq!(
            c.entered,
            c.forwarded + c.dropped + c.queue_drops + c.unsent_at_stop + c.write_errors
        );
        assert_eq!(c.unsent_at_stop, 0);
        assert!(
            c.dropped > 0
                && c.queue_drops > 0
                && c.duplicated > 0
                && c.corrupted > 0
                && c.reordered > 0,
            "{c:?}"
        );
        assert_eq!(unique, c.forwarded - c.corrupted);
        assert_eq!(dups, c.duplicated);
        assert_eq!(reordered, c.reordered);
        assert_eq!(n as u64 - unique, c.dropped + c.queue_drops + c.corrupted);
        // Same seed, same input: same result.
        let (c2, out2) = simulate(&cfg, 5, n, Duration::from_micros(30));
        assert_eq!((c, &out), (c2, &out2));
    }

    #[test]
    fn fix_checksum_corrupted_reach_receiver() {
        let cfg = Impairment {
            corrupt: 0.1,
            corrupt_fix_checksum: true,
            jitter: Duration::from_millis(1),
            delay: Duration::from_millis(2),
            ..Default::default()
        };
        let n = 5000;
        let (c, out) = simulate(&cfg, 11, n, Duration::from_micros(100));
        assert!(c.corrupted > 300);
        assert!(out.iter().all(|&(_, ok)| ok));
        // Corruption may hit the 4-byte index itself; count only by arrivals.
        assert_eq!(out.len() as u64, c.forwarded);
    }

    #[test]
    fn reorder_gap_holds_back_exactly() {
        // Every packet picked is released right after the next `gap` packets.
        let cfg = Impairment {
            reorder: 0.1,
            reorder_gap: 3,
            ..Default::default()
        };
        let n = 10_000;
        let (c, out) = simulate(&cfg, 3, n, Duration::from_micros(10));
        let (reordered, unique, _) = receiver_view(&out, n);
        assert_eq!(unique, n as u64);
        assert_eq!(reordered, c.reordered);
        assert!((800..1200).contains(&c.reordered), "{c:?}");
        // Each held packet comes out exactly 3 positions late (unless it overlaps another hold).
        let late3 = out
            .iter()
            .enumerate()
            .filter(|(pos, (i, _))| *pos as u32 == i + 3)
            .count();
        assert!(
            late3 as f64 > 0.7 * c.reordered as f64,
            "{late3} of {}",
            c.reordered
        );
    }

    #[test]
    fn lone_held_packet_leaves_after_hold_max() {
        let cfg = Impairment {
            reorder: 1.0,
            ..Default::default()
        };
        let counters = Arc::new(SharedCounters::default());
        let mut p = Pipeline::new(Direction::BtoA, &cfg, 1, counters.clone());
        let pkt = ipv4_udp(b"x");
        let s = p.alloc().unwrap();
        p.buf_mut(s)[..pkt.len()].copy_from_slice(&pkt);
        p.admit(Duration::ZERO, s, pkt.len());
        let mut n = 0;
        let mut w = |_: &[u8]| {
            n += 1;
            Ok(())
        };
        p.release_due(Duration::ZERO, &mut w);
        assert_eq!(p.next_deadline(), Some(REORDER_HOLD_MAX));
        p.release_due(REORDER_HOLD_MAX, &mut w);
        assert_eq!(n, 1);
        assert_eq!(
            counters
                .snapshot()
                .get(Direction::BtoA, Proto::Udp)
                .reordered,
            0
        );
    }

    #[test]
    fn corrupt_flips_exactly_one_bit_and_fix_checksum_is_valid() {
        let cfg = Impairment {
            corrupt: 1.0,
            ..Default::default()
        };
        for fix in [false, true] {
            let cfg = Impairment {
                corrupt_fix_checksum: fix,
                ..cfg.clone()
            };
            let counters = Arc::new(SharedCounters::default());
            let mut p = Pipeline::new(Direction::AtoB, &cfg, 99, counters.clone());
            let orig = ipv4_udp(b"hello, corrupted world");
            let s = p.alloc().unwrap();
            p.buf_mut(s)[..orig.len()].copy_from_slice(&orig);
            p.admit(Duration::ZERO, s, orig.len());
            let mut got = Vec::new();
            p.release_due(Duration::ZERO, &mut |b: &[u8]| {
                got = b.to_vec();
                Ok(())
            });
            assert_eq!(got.len(), orig.len());
            let payload_bits: u32 = orig[28..]
                .iter()
                .zip(&got[28..])
                .map(|(a, b)| (a ^ b).count_ones())
                .sum();
            assert_eq!(payload_bits, 1, "exactly one payload bit flipped");
            assert_eq!(
                orig[..26],
                got[..26],
                "IP and UDP header (but checksum) untouched"
            );
            assert_eq!(udp_checksum_ok(&got), fix);
            if !fix {
                assert_eq!(orig[26..28], got[26..28], "checksum left stale");
            }
            assert_eq!(
                counters
                    .snapshot()
                    .get(Direction::AtoB, Proto::Udp)
                    .corrupted,
                1
            );
        }
    }

    #[test]
    fn ge_losses_counted_as_dropped() {
        let cfg = Impairment {
            gemodel: Some(GilbertElliott {
                p: 0.02,
                r: 0.25,
                bad_loss: 1.0,
                good_loss: 0.0,
            }),
            ..Default::default()
        };
        let (c, out) = simulate(&cfg, 8, 10_000, Duration::from_micros(10));
        assert_eq!(out.len() as u64, c.forwarded);
        assert_eq!(c.forwarded + c.dropped, 10_000);
        assert_eq!(c.reordered, 0);
    }
}
