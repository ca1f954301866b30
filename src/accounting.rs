//! What each side counts: the receiver's per-session [`Account`] (every message that arrives for the session
//! goes through it once) and the [`Measured`] figures it yields, and the sender's own [`SendStats`] and
//! [`EchoStats`]. Pure: fed bytes and timestamps, never reads a clock.
//!
//! The receiver's validation order: size, checksum, sequence range; only then does a message count as received.

use hdrhistogram::Histogram;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use crate::auth::{Dir, SessionKeys};
use crate::clock::ClockModel;
use crate::stats::{new_ns_histogram, Arrival, DelayStats, SeqSummary, SeqTracker};
use crate::trace::{Event, Tracer};
use crate::traffic::Traffic;
use crate::wire::{self, Header};

/// The clock line a session's arrivals are corrected with, shared by the session (which the sender's refits
/// update every second) and its data path (which reads it per message).
#[derive(Debug, Default)]
pub struct ClockCell {
    version: AtomicU64,
    model: Mutex<ClockModel>,
}

impl ClockCell {
    pub fn new(m: ClockModel) -> ClockCell {
        ClockCell {
            version: AtomicU64::new(1),
            model: Mutex::new(m),
        }
    }

    pub fn set(&self, m: ClockModel) {
        if let Ok(mut g) = self.model.lock() {
            *g = m;
        }
        self.version.fetch_add(1, Ordering::Release);
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn get(&self) -> (u64, ClockModel) {
        let v = self.version();
        (v, self.model.lock().map(|g| *g).unwrap_or_default())
    }
}

/// What one arrival was (or that a sequence number never arrived), for the per-message CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    Reordered,
    Duplicate,
    Corrupt,
    Lost,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Reordered => "reordered",
            Status::Duplicate => "duplicate",
            Status::Corrupt => "corrupt",
            Status::Lost => "lost",
        }
    }
}

/// One arrival as the receiver saw it; times are ns on the sender's clock (the arrival offset-corrected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub seq: u64,
    pub sched_ns: i64,
    pub send_ns: i64,
    pub recv_ns: i64,
    pub status: Status,
}

/// What a receiver measured of one session, whole: the figures of its report row.
#[derive(Debug, Clone)]
pub struct Measured {
    pub complete: bool,
    /// Why it is incomplete, when it is.
    pub note: Option<String>,
    pub seq: SeqSummary,
    /// ns histograms: latency (from the schedule), transit (from the actual send), |IPDV|.
    pub latency: Histogram<u64>,
    /// With an idle phase (--load): the idle phase's latencies, ns; the other delay figures are then the
    /// loaded phase's.
    pub idle_latency: Option<Histogram<u64>>,
    pub transit: Histogram<u64>,
    pub ipdv: Histogram<u64>,
    /// RFC 3550 interarrival jitter, ns.
    pub jitter_ns: Option<f64>,
    pub negative_delays: u64,
    pub corrupt: u64,
    pub invalid: u64,
    /// Messages that failed their MAC (--key-file): forged, never accounted.
    pub unauthenticated: u64,
    /// Bytes of unique, valid messages.
    pub bytes: u64,
    pub recv_calls: u64,
    pub split_messages: u64,
    pub coalesced_reads: u64,
    pub reads_one_message: u64,
    pub reads_partial: u64,
    /// Datagrams the receiving socket's queue dropped during the session (SO_RXQ_OVFL), UDP only; whether that
    /// count is exactly this session's; datagrams the host dropped for a bad UDP checksum (host-wide).
    pub rcvbuf_drops: Option<u64>,
    pub rcvbuf_exact: Option<bool>,
    pub checksum_errors: Option<u64>,
    /// CPU time of the receiver's data thread during the session, ns (UDP: the receiving thread, which serves
    /// concurrent sessions too).
    pub cpu_ns: Option<u64>,
    /// The earliest send time among the unique arrivals (the sender's clock, from the messages themselves).
    pub first_send_ns: Option<i64>,
    /// First and last unique arrival, sender clock.
    pub first_recv_ns: Option<i64>,
    pub last_recv_ns: Option<i64>,
    /// Runs of lost seqs (first, length), with --per-message.
    pub lost_runs: Vec<(u64, u64)>,
    pub echoed: u64,
    /// Per-message rows counted beyond [`MAX_ROWS`] and not kept.
    pub rows_not_kept: u64,
    /// The receiver's socket calls (--trace), on the sender's clock.
    pub trace: Vec<Event>,
}

impl Default for Measured {
    fn default() -> Measured {
        Measured {
            complete: false,
            note: None,
            seq: SeqSummary::default(),
            latency: new_ns_histogram(),
            idle_latency: None,
            transit: new_ns_histogram(),
            ipdv: new_ns_histogram(),
            jitter_ns: None,
            negative_delays: 0,
            corrupt: 0,
            invalid: 0,
            unauthenticated: 0,
            bytes: 0,
            recv_calls: 0,
            split_messages: 0,
            coalesced_reads: 0,
            reads_one_message: 0,
            reads_partial: 0,
            rcvbuf_drops: None,
            rcvbuf_exact: None,
            checksum_errors: None,
            cpu_ns: None,
            first_send_ns: None,
            first_recv_ns: None,
            last_recv_ns: None,
            lost_runs: Vec::new(),
            echoed: 0,
            rows_not_kept: 0,
            trace: Vec::new(),
        }
    }
}

/// Per-message rows an echo session keeps for --per-message at most (its rows go to the sender at the end,
/// after the replies they are joined with); beyond it rows are counted, not kept, so memory stays bounded
/// whatever the session announced. Other sessions stream their rows and have no such cap.
pub const MAX_ROWS: usize = 2_000_000;
/// Rows a streaming session's data path hands over at once.
pub const ROW_CHUNK: usize = 8192;
/// Rows on their way to the sender at most (2.5 MiB): when the control connection cannot carry them as
/// fast as they come, the data path waits (TCP, so the sender slows down) or counts them as not kept (UDP,
/// whose receiving thread must not stop).
pub const ROW_QUEUE_ROWS: usize = 1 << 16;

/// Does this session stream its per-message rows to the sender during the run? Echo sessions do not: the
/// sender joins each row with its reply's round trip, which it knows only once its reply reader is done.
pub fn streams_rows(t: &Traffic) -> bool {
    t.per_message && !t.echo
}

/// Per-message rows between a session's data path and its control connection: whole chunks in, the oldest
/// out at each flush. Bounded in rows whatever the session's length.
pub struct RowQueue {
    chunks: Mutex<VecDeque<Vec<Row>>>,
    room: Condvar,
    cap: usize,
}

impl RowQueue {
    pub fn new(cap_rows: usize) -> RowQueue {
        RowQueue {
            chunks: Mutex::new(VecDeque::new()),
            room: Condvar::new(),
            cap: cap_rows,
        }
    }

    /// Queue `chunk`, waiting up to `wait` for room. False: no room came, the chunk is not kept.
    pub fn push(&self, chunk: Vec<Row>, wait: Duration) -> bool {
        let Ok(mut g) = self.chunks.lock() else {
            return false;
        };
        let deadline = crate::clock::mono() + wait;
        // A few chunks at most: their rows are counted rather than kept in a second number.
        while g.iter().map(Vec::len).sum::<usize>() + chunk.len() > self.cap {
            let left = deadline.saturating_duration_since(crate::clock::mono());
            if left.is_zero() {
                return false;
            }
            g = match self.room.wait_timeout(g, left) {
                Ok((g, _)) => g,
                Err(_) => return false,
            };
        }
        g.push_back(chunk);
        true
    }

    /// The oldest chunk queued.
    pub fn take_one(&self) -> Option<Vec<Row>> {
        let chunk = self.chunks.lock().ok()?.pop_front()?;
        self.room.notify_all();
        Some(chunk)
    }
}

/// An upper bound on one ns histogram's memory (3 significant digits over 1 ns .. 1 hour: 2048 sub-buckets
/// × 31 buckets of 8 bytes, about 256 KiB).
const HIST_BYTES: u64 = 300 << 10;
/// Runs of lost sequence numbers kept for --per-message at most (16 MiB); numbers in runs beyond it are counted
/// in `rows_not_kept`.
pub const MAX_LOST_RUNS: usize = 1 << 20;

pub struct Account {
    pub session: u64,
    size: usize,
    /// Mixed sizes: each message's expected length follows from (session, seq).
    traffic: Option<Traffic>,
    seq: SeqTracker,
    delay: DelayStats,
    /// --load: the first `idle_probes` messages' delays, apart from the loaded phase's in `delay`.
    idle_probes: u64,
    idle_delay: Option<Box<DelayStats>>,
    /// Receiver clock minus sender clock, as a line in the sender's time; refreshed from `clock_cell` when the
    /// sender's refits update it.
    clock: ClockModel,
    clock_cell: Option<Arc<ClockCell>>,
    clock_version: u64,
    pub corrupt: u64,
    pub invalid: u64,
    bytes: u64,
    pub recv_calls: u64,
    pub split_messages: u64,
    pub coalesced_reads: u64,
    pub reads_one_message: u64,
    pub reads_partial: u64,
    pub rcvbuf_drops: Option<u64>,
    /// The drops are exactly this session's (its datagrams came through its own socket, or the shared socket
    /// dropped nothing while they did).
    pub rcvbuf_exact: bool,
    /// UDP datagrams the host's kernel dropped for a bad checksum during the session (InCsumErrors; host-wide).
    pub checksum_errors: Option<u64>,
    /// CPU time of the data thread that read the session, ns.
    pub cpu_ns: Option<u64>,
    first_send_ns: Option<i64>,
    first_recv_ns: Option<i64>,
    last_recv_ns: Option<i64>,
    rows: Option<Vec<Row>>,
    /// Streaming (see [`streams_rows`]): where full chunks of `rows` go, and how long to wait for room.
    row_queue: Option<(Arc<RowQueue>, Duration)>,
    pub rows_not_kept: u64,
    pub echoed: u64,
    /// The receiver's socket calls for this session (`--trace`), on the receiver's clock.
    pub trace: Tracer,
    /// An authenticated session's keys: every message must carry its MAC.
    keys: Option<SessionKeys>,
    /// Messages that failed their MAC while their CRC held: forged, never accounted.
    pub unauthenticated: u64,
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
            idle_probes: 0,
            idle_delay: None,
            clock: ClockModel::default(),
            clock_cell: None,
            clock_version: 0,
            corrupt: 0,
            invalid: 0,
            bytes: 0,
            recv_calls: 0,
            split_messages: 0,
            coalesced_reads: 0,
            reads_one_message: 0,
            reads_partial: 0,
            rcvbuf_drops: None,
            rcvbuf_exact: true,
            checksum_errors: None,
            cpu_ns: None,
            first_send_ns: None,
            first_recv_ns: None,
            last_recv_ns: None,
            rows: per_message.then(Vec::new),
            row_queue: None,
            rows_not_kept: 0,
            echoed: 0,
            trace: Tracer::off(),
            keys: None,
            unauthenticated: 0,
        }
    }

    /// An authenticated session: messages must carry their MAC, and echo replies get one.
    pub fn set_keys(&mut self, keys: SessionKeys) {
        self.keys = Some(keys);
    }

    /// Turn a message already made into its echo reply (`wire::make_echo_reply`) into a MAC'd one, if the
    /// session is authenticated.
    pub fn seal_reply(&self, msg: &mut [u8]) {
        if let Some(k) = &self.keys {
            k.seal_message(Dir::ReceiverToSender, msg);
        }
    }

    /// The session's first `n` messages are its idle phase (--load): their delays are kept apart.
    pub fn set_idle_probes(&mut self, n: u64) {
        self.idle_probes = n;
        self.idle_delay = (n > 0).then(|| Box::new(DelayStats::new()));
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

    /// A fixed offset (receiver clock minus sender clock).
    pub fn set_offset(&mut self, offset_ns: i64) {
        self.clock = ClockModel {
            offset_ns,
            ..ClockModel::default()
        };
    }

    /// Correct arrivals with the line in `cell`, which the session updates as the sender refits it.
    pub fn share_clock(&mut self, cell: Arc<ClockCell>) {
        let (v, m) = cell.get();
        self.clock = m;
        self.clock_version = v;
        self.clock_cell = Some(cell);
    }

    /// Hand full chunks of rows to `queue` as they fill, waiting up to `wait` for room.
    pub fn stream_rows(&mut self, queue: Arc<RowQueue>, wait: Duration) {
        self.row_queue = Some((queue, wait));
    }

    fn row(&mut self, hdr: &Header, recv_ns: i64, status: Status) {
        let Some(rows) = &mut self.rows else {
            return;
        };
        let row = Row {
            seq: hdr.seq,
            sched_ns: hdr.sched_ns,
            send_ns: hdr.send_ns,
            recv_ns,
            status,
        };
        match &self.row_queue {
            Some((q, wait)) => {
                rows.push(row);
                if rows.len() >= ROW_CHUNK {
                    let chunk = std::mem::replace(rows, Vec::with_capacity(ROW_CHUNK));
                    let n = chunk.len() as u64;
                    if !q.push(chunk, *wait) {
                        self.rows_not_kept += n;
                    }
                }
            }
            None if rows.len() < MAX_ROWS => rows.push(row),
            None => self.rows_not_kept += 1,
        }
    }

    /// A whole message carrying this session's id, received at `recv_local_ns` (receiver clock). Returns its
    /// status, or None when it is invalid (counted, not trusted).
    pub fn on_message(&mut self, msg: &[u8], hdr: &Header, recv_local_ns: i64) -> Option<Status> {
        if msg.len() > self.size || msg.len() < wire::HEADER_LEN {
            self.invalid += 1;
            return None;
        }
        if let Some(cell) = &self.clock_cell {
            // One atomic load per message; the lock only when the sender sent a new line.
            if cell.version() != self.clock_version {
                (self.clock_version, self.clock) = cell.get();
            }
        }
        // The offset at this message's own time: with drifting clocks it changes over the session.
        let recv_ns = recv_local_ns.saturating_sub(self.clock.offset_at(hdr.send_ns));
        if let Some(k) = &self.keys {
            // Before anything is trusted. Intact but failing its MAC: forged. Damaged: corrupt, as below.
            if !k.verify_message(Dir::SenderToReceiver, msg) && wire::verify(msg, hdr) {
                self.unauthenticated += 1;
                return None;
            }
        }
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
            let delay = match &mut self.idle_delay {
                Some(idle) if crate::load::is_idle(self.idle_probes, hdr.seq) => idle,
                _ => &mut self.delay,
            };
            delay.record(hdr.seq, hdr.sched_ns, hdr.send_ns, recv_ns);
            self.bytes += msg.len() as u64;
            self.first_send_ns = Some(
                self.first_send_ns
                    .map_or(hdr.send_ns, |f| f.min(hdr.send_ns)),
            );
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

    /// The most memory an account for `t` can ever hold, whatever arrives: the sequence table (one bit per
    /// announced message), the reorder-extent runs, the delay statistics, the per-message rows and lost runs
    /// (with --per-message), and a TCP stream's buffers. A receiver admits sessions against its budget with it.
    pub fn worst_case_bytes(t: &Traffic) -> u64 {
        // Twice with an idle phase: it has delay statistics of its own.
        const ONE: u64 = 3 * HIST_BYTES + (crate::stats::IPDV_RING as u64) * 32;
        let delay_stats = if t.idle_probes > 0 { 2 * ONE } else { ONE };
        let held = if streams_rows(t) {
            // The queue, the chunk filling, and one chunk being encoded.
            (ROW_QUEUE_ROWS + 2 * ROW_CHUNK) as u64
        } else {
            (MAX_ROWS as u64).min(t.count.saturating_mul(2))
        };
        let rows = if t.per_message {
            held * std::mem::size_of::<Row>() as u64 * 2 + (MAX_LOST_RUNS as u64).min(t.count) * 16
        } else {
            0
        };
        let stream = (256u64 << 10).max(2 * t.size as u64) * 2;
        SeqTracker::max_heap_bytes(t.count)
            .saturating_add(delay_stats)
            .saturating_add(rows)
            .saturating_add(stream)
            .saturating_add(64 << 10)
    }

    /// Bytes this account holds now (tables, rows; not the fixed-size parts), for tests and diagnostics.
    pub fn heap_bytes(&self) -> usize {
        self.seq.heap_bytes()
            + self
                .rows
                .as_ref()
                .map_or(0, |r| r.capacity() * std::mem::size_of::<Row>())
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
    pub fn measured(&self, sent: Option<u64>, complete: bool, note: Option<String>) -> Measured {
        let sent_n = sent.unwrap_or_else(|| self.seq.received());
        let (lost_runs, lost_not_kept) = if self.rows.is_some() {
            self.seq.lost_runs(sent_n, MAX_LOST_RUNS)
        } else {
            (Vec::new(), 0)
        };
        Measured {
            complete: complete && sent.is_some(),
            note,
            seq: self.seq.summary(sent_n),
            latency: self.delay.latency().clone(),
            idle_latency: self.idle_delay.as_ref().map(|d| d.latency().clone()),
            transit: self.delay.transit().clone(),
            ipdv: self.delay.ipdv().clone(),
            jitter_ns: self.delay.jitter_us().map(|us| us * 1000.0),
            negative_delays: self.delay.negative_delays(),
            corrupt: self.corrupt,
            invalid: self.invalid,
            unauthenticated: self.unauthenticated,
            bytes: self.bytes,
            recv_calls: self.recv_calls,
            split_messages: self.split_messages,
            coalesced_reads: self.coalesced_reads,
            reads_one_message: self.reads_one_message,
            reads_partial: self.reads_partial,
            rcvbuf_drops: self.rcvbuf_drops,
            rcvbuf_exact: self.rcvbuf_drops.map(|_| self.rcvbuf_exact),
            checksum_errors: self.checksum_errors,
            cpu_ns: self.cpu_ns,
            first_send_ns: self.first_send_ns,
            first_recv_ns: self.first_recv_ns,
            last_recv_ns: self.last_recv_ns,
            lost_runs,
            echoed: self.echoed,
            rows_not_kept: self.rows_not_kept.saturating_add(lost_not_kept),
            // On the sender's clock, like every other time the receiver reports.
            trace: self
                .trace
                .events()
                .into_iter()
                .map(|mut e| {
                    e.t_ns = e.t_ns.saturating_sub(self.clock.offset_at(e.t_ns));
                    e
                })
                .collect(),
        }
    }

    /// The per-message rows, in arrival order (empty without --per-message).
    pub fn take_rows(&mut self) -> Vec<Row> {
        self.rows.take().unwrap_or_default()
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
    /// How late each message left against its schedule (send time − scheduled time), ns.
    pub lag: Option<Histogram<u64>>,
    /// CPU time of the send loop's thread, ns.
    pub cpu_ns: Option<u64>,
    /// Send calls that carried the messages (write, send, sendmmsg, or a GSO sendmsg).
    pub calls: u64,
    /// UDP GSO: datagrams handed to the kernel per send call (0: not used).
    pub gso: u32,
}

impl SendStats {
    /// One message stamped `send_ns`, scheduled for `sched_ns`.
    #[inline]
    pub fn stamp(&mut self, send_ns: i64, sched_ns: i64) {
        self.first_send_ns.get_or_insert(send_ns);
        self.last_send_ns = Some(send_ns);
        let lag = u64::try_from(send_ns.saturating_sub(sched_ns)).unwrap_or(0);
        self.lag
            .get_or_insert_with(new_ns_histogram)
            .saturating_record(lag.max(1));
    }
}

/// Round trips measured from echo replies, two ways (each difference on one clock, so no offset is needed):
/// - `rtt`, as an application sees it and as sockperf and ping measure it: from the send call (t1) to the
///   receive call returning the reply, everything on the way included (RFC 2681);
/// - `rtt_kernel`: from t1 to the kernel's receive stamp on the reply (t4), less the receiver's holding time
///   (t3 − t2), as TWAMP reports it (RFC 5357): the path's round trip without either end's scheduling. UDP
///   only: a TCP read has no per-message stamp.
pub struct EchoStats {
    session: u64,
    pub rtt: Histogram<u64>,
    pub rtt_kernel: Histogram<u64>,
    /// --load: the idle phase's round trips (the first `idle_probes` messages); `rtt` and `rtt_kernel` are
    /// then the loaded phase's.
    pub idle_rtt: Option<Histogram<u64>>,
    idle_probes: u64,
    pub seq: SeqTracker,
    pub invalid: u64,
    pub corrupt: u64,
    /// Replies that failed their MAC (--key-file): forged, not counted as round trips.
    pub unauthenticated: u64,
    /// --trace: the receive calls that brought replies.
    pub timer: crate::trace::Timer,
    keys: Option<SessionKeys>,
    /// Sequence numbers the sender has used so far: a reply above them is not a reply (bounds the table).
    sent: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
    /// --per-message: each message's round trip (ns; 0 = no reply), for the first `MAX_ROWS` numbers.
    rtts: Option<Vec<u64>>,
    /// CPU time of the thread that read the replies, ns.
    pub cpu_ns: Option<u64>,
}

impl EchoStats {
    /// `traced`: time the receive calls for --trace.
    pub fn new(session: u64, limit: u64, traced: bool) -> EchoStats {
        EchoStats {
            session,
            rtt: new_ns_histogram(),
            rtt_kernel: new_ns_histogram(),
            idle_rtt: None,
            idle_probes: 0,
            seq: SeqTracker::new(limit),
            invalid: 0,
            corrupt: 0,
            unauthenticated: 0,
            timer: crate::trace::Timer::new(traced),
            keys: None,
            sent: None,
            rtts: None,
            cpu_ns: None,
        }
    }

    /// Keep each message's round trip, for the per-message CSV (the first `MAX_ROWS` of `count`).
    pub fn keep_per_message(&mut self, count: u64) {
        self.rtts = Some(vec![0; count.min(MAX_ROWS as u64) as usize]);
    }

    /// Each message's round trip (ns; 0 = no reply), when kept.
    pub fn per_message(&self) -> Option<&[u64]> {
        self.rtts.as_deref()
    }

    /// The first `n` messages are the idle phase (--load): their round trips are kept apart.
    pub fn set_idle_probes(&mut self, n: u64) {
        self.idle_probes = n;
        self.idle_rtt = (n > 0).then(new_ns_histogram);
    }

    /// Replies must carry the receiver's MAC.
    pub fn set_keys(&mut self, keys: SessionKeys) {
        self.keys = Some(keys);
    }

    /// Replies must answer a message already sent: `sent` is the send loop's running count.
    pub fn bound_by(&mut self, sent: std::sync::Arc<std::sync::atomic::AtomicU64>) {
        self.sent = Some(sent);
    }

    /// One reply, whose receive call returned at `t_app` and which the kernel stamped `t_kernel` (sender
    /// clock). Returns its sequence number when it is the first valid reply of that message.
    pub fn on_reply(&mut self, msg: &[u8], t_app: i64, t_kernel: Option<i64>) -> Option<u64> {
        let Ok(h) = Header::parse(msg) else {
            self.invalid += 1;
            return None;
        };
        if h.session != self.session || h.flags & wire::FLAG_ECHO_REPLY == 0 {
            self.invalid += 1;
            return None;
        }
        if let Some(k) = &self.keys {
            if !k.verify_message(Dir::ReceiverToSender, msg) && wire::verify(msg, &h) {
                self.unauthenticated += 1;
                return None;
            }
        }
        if !wire::verify(msg, &h) {
            self.corrupt += 1;
            return None;
        }
        let sent = self
            .sent
            .as_ref()
            .map_or(u64::MAX, |s| s.load(std::sync::atomic::Ordering::Relaxed));
        if h.seq >= sent {
            self.invalid += 1;
            return None;
        }
        let Some((t2, t3)) = wire::echo_times(msg) else {
            self.invalid += 1;
            return None;
        };
        match self.seq.record(h.seq) {
            Arrival::OutOfRange => {
                self.invalid += 1;
                None
            }
            Arrival::Duplicate => None,
            Arrival::InOrder | Arrival::Reordered => {
                // i128: a reply's times are the peer's numbers and must not overflow.
                let ns = |x: i128| u64::try_from(x.max(1)).unwrap_or(u64::MAX);
                let rtt = ns(i128::from(t_app) - i128::from(h.send_ns));
                let idle = crate::load::is_idle(self.idle_probes, h.seq);
                match self.idle_rtt.as_mut().filter(|_| idle) {
                    Some(h) => h.saturating_record(rtt),
                    None => self.rtt.saturating_record(rtt),
                }
                if let Some(t4) = t_kernel.filter(|_| !idle) {
                    let held = i128::from(t3) - i128::from(t2);
                    self.rtt_kernel
                        .saturating_record(ns(i128::from(t4) - i128::from(h.send_ns) - held));
                }
                if let Some(slot) = self.rtts.as_mut().and_then(|v| v.get_mut(h.seq as usize)) {
                    *slot = rtt;
                }
                Some(h.seq)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64) -> Vec<u8> {
        let mut m = wire::template(9, 64, false);
        wire::stamp(&mut m, seq, 1_000, 2_000);
        m
    }

    /// A streaming account hands over whole chunks; when the queue has no room (the control connection is
    /// behind), the chunk is counted as not kept and the account's own memory stays one chunk.
    #[test]
    fn streamed_rows_go_by_chunk_and_a_full_queue_counts_them() {
        let n = 3 * ROW_CHUNK as u64;
        let q = Arc::new(RowQueue::new(2 * ROW_CHUNK));
        let mut a = Account::new(9, n, 64, true);
        a.stream_rows(q.clone(), Duration::ZERO);
        for seq in 0..n {
            let m = msg(seq);
            a.on_message(&m, &Header::parse(&m).unwrap(), 5_000);
        }
        assert_eq!(
            a.rows_not_kept, ROW_CHUNK as u64,
            "the third chunk found no room"
        );
        let got: Vec<Vec<Row>> = std::iter::from_fn(|| q.take_one()).collect();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0][0].seq, got[1][0].seq), (0, ROW_CHUNK as u64));
        assert!(a.heap_bytes() < 2 * ROW_CHUNK * std::mem::size_of::<Row>() + (1 << 16));
        // Room again after the flush.
        assert!(q.push(vec![got[0][0]; ROW_CHUNK], Duration::ZERO));
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
        let r = a.measured(Some(4), true, None);
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
        assert_eq!(
            rows[0],
            Row {
                seq: 0,
                sched_ns: 1_000,
                send_ns: 2_000,
                recv_ns: 10_000,
                status: Status::Ok
            }
        );
        assert_eq!(r.latency.len(), 3);
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
        assert!(!a.measured(None, true, None).complete);
    }

    #[test]
    fn echo_rtt_application_level_and_kernel_stamped() {
        let mut e = EchoStats::new(5, 10, false);
        let mut m = wire::template(5, 64, false);
        wire::stamp(&mut m, 0, 1_000, 1_000);
        // Receiver got it at 50_000 and replied at 80_000 (its clock); the kernel stamped the reply at 101_000
        // and the receive call returned at 104_000 (sender clock).
        wire::make_echo_reply(&mut m, 50_000, 80_000);
        e.on_reply(&m, 104_000, Some(101_000));
        assert_eq!((e.rtt.len(), e.rtt_kernel.len()), (1, 1));
        // Application level: 104_000 − 1_000, everything included.
        assert!(e.rtt.equivalent(e.rtt.max(), 103_000));
        // Kernel: (101_000 − 1_000) − (80_000 − 50_000) = 70_000 (3 significant digits).
        assert!(e.rtt_kernel.equivalent(e.rtt_kernel.max(), 70_000));
        // A reply without a kernel stamp (TCP) has only the application-level figure.
        let mut m = wire::template(5, 64, false);
        wire::stamp(&mut m, 1, 2_000, 2_000);
        wire::make_echo_reply(&mut m, 60_000, 61_000);
        e.on_reply(&m, 9_000, None);
        assert_eq!((e.rtt.len(), e.rtt_kernel.len()), (2, 1));
    }

    /// --load: the first `idle_probes` messages' delays go to the idle phase, the rest to the loaded one;
    /// transit and jitter are then the loaded phase's alone.
    #[test]
    fn the_idle_phase_is_kept_apart_by_sequence_number() {
        let mut a = Account::new(9, 4, 64, false);
        a.set_idle_probes(2);
        // Scheduled at 1_000 (see `msg`): latencies 1_000 and 1_100 idle, 1_500 and 1_900 loaded (exact: below
        // 2048 ns the histograms are exact to the ns).
        for (seq, t) in [(0, 2_000), (1, 2_100), (2, 2_500), (3, 2_900)] {
            let m = msg(seq);
            a.on_message(&m, &Header::parse(&m).unwrap(), t);
        }
        let r = a.measured(Some(4), true, None);
        let idle = r.idle_latency.as_ref().unwrap();
        assert_eq!((idle.len(), idle.min(), idle.max()), (2, 1_000, 1_100));
        assert_eq!(
            (r.latency.len(), r.latency.min(), r.latency.max()),
            (2, 1_500, 1_900)
        );
        // Transit (from send time 2_000): the loaded phase's 500 and 900 only.
        assert_eq!((r.transit.len(), r.transit.min()), (2, 500));
        assert_eq!(r.seq.received, 4, "the counts are the whole session's");
        // Without an idle phase there is no idle histogram.
        assert!(Account::new(9, 4, 64, false)
            .measured(Some(0), true, None)
            .idle_latency
            .is_none());
    }

    #[test]
    fn idle_round_trips_are_kept_apart_and_have_no_kernel_figure() {
        let mut e = EchoStats::new(5, 10, false);
        e.set_idle_probes(1);
        for (seq, t_app) in [(0u64, 1_500), (1, 1_800)] {
            let mut m = wire::template(5, 64, false);
            wire::stamp(&mut m, seq, 1_000, 1_000);
            wire::make_echo_reply(&mut m, 1_100, 1_200);
            assert_eq!(e.on_reply(&m, t_app, Some(t_app)), Some(seq));
        }
        let idle = e.idle_rtt.as_ref().unwrap();
        assert_eq!((idle.len(), idle.max()), (1, 500));
        assert_eq!((e.rtt.len(), e.rtt.max()), (1, 800));
        // The kernel-stamped figure is the loaded phase's: (1_800 − 1_000) − (1_200 − 1_100).
        assert_eq!((e.rtt_kernel.len(), e.rtt_kernel.max()), (1, 700));
    }
}
