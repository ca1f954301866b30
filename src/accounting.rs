//! One receiving session's account: every message that arrives for the session goes through here once.
//! Validation order: size, checksum, sequence range; only then does a message count as received.

use crate::control::{MessageRow, RecvResults, Status};
use crate::stats::{hist_to_bytes, Arrival, DelayStats, SeqTracker};
use crate::trace::Tracer;
use crate::traffic::Traffic;
use crate::wire::{self, Header};

/// Per-message rows kept for --per-message at most; beyond it rows are counted, not kept, so memory stays
/// bounded whatever the session announced.
pub const MAX_ROWS: usize = 2_000_000;

pub struct Account {
    pub session: u64,
    size: usize,
    /// Mixed sizes: each message's expected length follows from (session, seq).
    traffic: Option<Traffic>,
    seq: SeqTracker,
    delay: DelayStats,
    /// Receiver clock minus sender clock.
    offset_ns: i64,
    pub corrupt: u64,
    pub invalid: u64,
    bytes: u64,
    pub recv_calls: u64,
    pub split_messages: u64,
    pub coalesced_reads: u64,
    pub reads_one_message: u64,
    pub reads_partial: u64,
    pub rcvbuf_drops: Option<u64>,
    first_recv_ns: Option<i64>,
    last_recv_ns: Option<i64>,
    rows: Option<Vec<MessageRow>>,
    pub rows_not_kept: u64,
    pub echoed: u64,
    /// The receiver's socket calls for this session (`--trace`), on the receiver's clock.
    pub trace: Tracer,
}

impl Account {
    /// `limit`: the message count the sender announced; higher sequence numbers are invalid.
    pub fn new(session: u64, limit: u64, size: usize, per_message: bool) -> Account {
        Account {
            session,
            size,
            traffic: None,
            seq: SeqTracker::new(limit),
            delay: DelayStats::new(),
            offset_ns: 0,
            corrupt: 0,
            invalid: 0,
            bytes: 0,
            recv_calls: 0,
            split_messages: 0,
            coalesced_reads: 0,
            reads_one_message: 0,
            reads_partial: 0,
            rcvbuf_drops: None,
            first_recv_ns: None,
            last_recv_ns: None,
            rows: per_message.then(Vec::new),
            rows_not_kept: 0,
            echoed: 0,
            trace: Tracer::off(),
        }
    }

    /// The session mixes message sizes: check each message's length against its own expected size.
    pub fn set_mixed_sizes(&mut self, t: &Traffic) {
        if t.mix.is_some() {
            self.traffic = Some(t.clone());
        }
    }

    fn expected_size(&self, seq: u64) -> usize {
        match &self.traffic {
            Some(t) => t.size_of(self.session, seq),
            None => self.size,
        }
    }

    pub fn set_offset(&mut self, offset_ns: i64) {
        self.offset_ns = offset_ns;
    }

    fn row(&mut self, hdr: &Header, recv_ns: i64, status: Status) {
        if let Some(rows) = &mut self.rows {
            if rows.len() < MAX_ROWS {
                rows.push(MessageRow(
                    hdr.seq,
                    hdr.sched_ns,
                    hdr.send_ns,
                    recv_ns,
                    status,
                ));
            } else {
                self.rows_not_kept += 1;
            }
        }
    }

    /// A whole message carrying this session's id, received at `recv_local_ns` (receiver clock). Returns its
    /// status, or None when it is invalid (counted, not trusted).
    pub fn on_message(&mut self, msg: &[u8], hdr: &Header, recv_local_ns: i64) -> Option<Status> {
        if msg.len() > self.size || msg.len() < wire::HEADER_LEN {
            self.invalid += 1;
            return None;
        }
        let recv_ns = recv_local_ns - self.offset_ns;
        if !wire::verify(msg, hdr) {
            // The header may be what was corrupted: its seq is shown in the per-message row, never recorded.
            self.corrupt += 1;
            self.row(hdr, recv_ns, Status::Corrupt);
            return Some(Status::Corrupt);
        }
        // Checked after the CRC, so the seq that picks the expected size is one the sender wrote.
        if msg.len() != self.expected_size(hdr.seq) {
            self.invalid += 1;
            return None;
        }
        let status = match self.seq.record(hdr.seq) {
            Arrival::OutOfRange => {
                self.invalid += 1;
                return None;
            }
            Arrival::Duplicate => Status::Duplicate,
            Arrival::InOrder => Status::Ok,
            Arrival::Reordered => Status::Reordered,
        };
        if status != Status::Duplicate {
            self.delay
                .record(hdr.seq, hdr.sched_ns, hdr.send_ns, recv_ns);
            self.bytes += msg.len() as u64;
            self.first_recv_ns.get_or_insert(recv_ns);
            self.last_recv_ns = Some(recv_ns);
        }
        self.row(hdr, recv_ns, status);
        Some(status)
    }

    /// Bytes that are not a message of this session but came from its peer.
    pub fn on_invalid(&mut self) {
        self.invalid += 1;
    }

    /// A datagram from this session's own source address that does not parse as one of its messages. If it has
    /// the session's message size and its CRC fails, it is one of ours damaged in its header (magic, length or
    /// session id flipped): corrupt. Anything else is invalid.
    pub fn on_unrecognised(&mut self, datagram: &[u8]) {
        // With one message size, only that size can be ours; with mixed sizes, any size up to the largest.
        let size_fits = match &self.traffic {
            None => datagram.len() == self.size,
            Some(_) => datagram.len() <= self.size && datagram.len() >= wire::HEADER_LEN,
        };
        let ours_damaged = size_fits
            && wire::checksum(datagram)
                != u32::from_be_bytes([datagram[12], datagram[13], datagram[14], datagram[15]]);
        if ours_damaged {
            self.corrupt += 1;
        } else {
            self.invalid += 1;
        }
    }

    /// The message size the session announced.
    pub fn size(&self) -> usize {
        self.size
    }

    pub fn received(&self) -> u64 {
        self.seq.received()
    }

    /// What the receiver reports. `sent` comes from the sender's Done; without it (sender vanished or
    /// Ctrl-C before Done) the received count is the only honest lower bound and the result is incomplete.
    pub fn results(&self, sent: Option<u64>, complete: bool, note: Option<String>) -> RecvResults {
        let sent_n = sent.unwrap_or_else(|| self.seq.received());
        RecvResults {
            complete: complete && sent.is_some(),
            note,
            seq: self.seq.summary(sent_n),
            latency: hist_to_bytes(self.delay.latency()),
            transit: hist_to_bytes(self.delay.transit()),
            ipdv: hist_to_bytes(self.delay.ipdv()),
            jitter_us: self.delay.jitter_us(),
            pdv_us: self.delay.pdv_us(),
            negative_delays: self.delay.negative_delays(),
            corrupt: self.corrupt,
            invalid: self.invalid,
            bytes: self.bytes,
            recv_calls: self.recv_calls,
            split_messages: self.split_messages,
            coalesced_reads: self.coalesced_reads,
            reads_one_message: self.reads_one_message,
            reads_partial: self.reads_partial,
            rcvbuf_drops: self.rcvbuf_drops,
            first_recv_ns: self.first_recv_ns,
            last_recv_ns: self.last_recv_ns,
            lost_runs: if self.rows.is_some() {
                self.seq.lost_runs(sent_n)
            } else {
                Vec::new()
            },
            echoed: self.echoed,
            rows_not_kept: self.rows_not_kept,
            // On the sender's clock, like every other time the receiver reports.
            trace: self
                .trace
                .events()
                .into_iter()
                .map(|mut e| {
                    e.t_ns -= self.offset_ns;
                    e
                })
                .collect(),
        }
    }

    /// The per-message rows, in arrival order (empty without --per-message).
    pub fn take_rows(&mut self) -> Vec<MessageRow> {
        self.rows.take().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64) -> Vec<u8> {
        let mut m = wire::template(9, 64);
        wire::stamp(&mut m, seq, 1_000, 2_000);
        m
    }

    #[test]
    fn validation_order_and_statuses() {
        let mut a = Account::new(9, 4, 64, true);
        a.set_offset(500); // receiver clock 500 ns ahead
        let feed = |a: &mut Account, m: &[u8], t| a.on_message(m, &Header::parse(m).unwrap(), t);
        assert_eq!(feed(&mut a, &msg(0), 10_500), Some(Status::Ok));
        assert_eq!(feed(&mut a, &msg(2), 10_500), Some(Status::Ok));
        assert_eq!(feed(&mut a, &msg(1), 10_500), Some(Status::Reordered));
        assert_eq!(feed(&mut a, &msg(1), 10_500), Some(Status::Duplicate));
        assert_eq!(feed(&mut a, &msg(4), 10_500), None); // beyond the announced count
        let mut bad = msg(3);
        bad[60] ^= 1;
        assert_eq!(feed(&mut a, &bad, 10_500), Some(Status::Corrupt));
        let r = a.results(Some(4), true, None);
        assert_eq!(
            (
                r.seq.received,
                r.seq.lost,
                r.seq.duplicates,
                r.seq.reordered
            ),
            (3, 1, 1, 1)
        );
        assert_eq!((r.corrupt, r.invalid, r.bytes), (1, 1, 192));
        assert_eq!(r.lost_runs, vec![(3, 1)]);
        // Offset-corrected arrival: 10_500 − 500 = 10_000 on the sender clock.
        assert_eq!(r.first_recv_ns, Some(10_000));
        let rows = a.take_rows();
        assert_eq!(rows.len(), 5);
        assert_eq!(rows[0], MessageRow(0, 1_000, 2_000, 10_000, Status::Ok));
        let lat = crate::stats::hist_from_bytes(&r.latency).unwrap();
        assert_eq!(lat.len(), 3);
    }

    #[test]
    fn damaged_header_from_the_peer_is_corrupt_other_bytes_invalid() {
        let mut a = Account::new(9, 4, 64, false);
        let mut m = msg(1);
        m[2] ^= 0x40; // the magic
        a.on_unrecognised(&m);
        let mut m = msg(1);
        m[17] ^= 1; // the session id
        a.on_unrecognised(&m);
        a.on_unrecognised(&[0u8; 64]); // right size, checksum field 0 ... and CRC of zeros is not 0
        a.on_unrecognised(b"hello");
        assert_eq!((a.corrupt, a.invalid), (3, 1));
    }

    #[test]
    fn no_done_means_incomplete() {
        let a = Account::new(1, 10, 64, false);
        assert!(!a.results(None, true, None).complete);
    }
}
