//! The control connection (TCP, sender to receiver): versioned hello with the session parameters, clock
//! exchanges, ready, the sender's final counts, and the receiver's results back.
//!
//! Every TCP connection to a receiver opens with an 8-byte preamble, so one port serves control and TCP data
//! and a stranger is told apart at once:
//! ```text
//! control: "SKBC" | version u16 | 0 u16
//! data:    "SKBD" | version u16 | 0 u16 | session id u64      (TCP data connections only)
//! ```
//! Control messages follow as frames: a u32 big-endian length, then that many bytes of JSON (`Ctl`). The
//! control channel carries a handful of messages per session, so readability beats compactness here.
//!
//! Sequence: Hello → Accept | Reject; TimeReq/TimeResp × n; Start → Ready; (data); Done → Results,
//! Messages × k (with --per-message), End. Either side may send Abort with a reason at any time.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde::{Deserialize, Serialize};

use crate::clock::OffsetEstimate;
use crate::stats::SeqSummary;
use crate::traffic::{Protocol, Traffic};

pub const CONTROL_VERSION: u16 = 1;
pub const CTL_MAGIC: [u8; 4] = *b"SKBC";
pub const DATA_MAGIC: [u8; 4] = *b"SKBD";
/// No control message is larger; a peer announcing more is not trusted.
pub const MAX_FRAME: usize = 64 << 20;
/// The largest frame a receiver accepts from a sender (hello, clock exchanges, start, done, abort: all small).
/// Only the receiver's results and per-message rows need `MAX_FRAME`; a stranger announcing more before it has
/// even said hello is dropped without buffering it.
pub const MAX_SENDER_FRAME: usize = 1 << 20;
/// How long a peer has to say hello or answer a request before we give up on it.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    pub version: u16,
    pub protocol: Protocol,
    pub session: u64,
    /// The sender's run id, start time and label, so a receiver's own CSV copy matches the sender's rows.
    pub run_id: String,
    pub started_utc: String,
    pub label: String,
    pub traffic: Traffic,
    pub boot_id: String,
    pub software: String,
    /// The sender wants the receiver's socket calls (--trace) back with the results.
    #[serde(default)]
    pub trace: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Accept {
    pub version: u16,
    pub boot_id: String,
    pub software: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Done {
    /// Messages the kernel accepted: seqs 0..sent.
    pub sent: u64,
    pub send_errors: u64,
    pub complete: bool,
}

/// Status of one arrival (or of a sequence number that never arrived), for the per-message CSV.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
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

/// One arrival as the receiver saw it: seq, scheduled and actual send time (sender clock), arrival time
/// (corrected to the sender clock).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRow(pub u64, pub i64, pub i64, pub i64, pub Status);

/// What the receiver measured, sent back so that the sender writes the complete report.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RecvResults {
    pub complete: bool,
    /// Why it is incomplete, when it is.
    pub note: Option<String>,
    pub seq: SeqSummary,
    /// hdrhistogram V2 serialisations, ns.
    pub latency: Vec<u8>,
    pub transit: Vec<u8>,
    pub ipdv: Vec<u8>,
    pub jitter_us: Option<f64>,
    pub pdv_us: Option<f64>,
    pub negative_delays: u64,
    pub corrupt: u64,
    pub invalid: u64,
    /// Bytes of unique, valid messages.
    pub bytes: u64,
    pub recv_calls: u64,
    pub split_messages: u64,
    pub coalesced_reads: u64,
    /// Receive calls that returned exactly one whole message, and those that returned part of one.
    #[serde(default)]
    pub reads_one_message: u64,
    #[serde(default)]
    pub reads_partial: u64,
    /// Datagrams the receiving socket's queue dropped during the session (SO_RXQ_OVFL), UDP only.
    pub rcvbuf_drops: Option<u64>,
    /// First and last unique arrival, sender clock.
    pub first_recv_ns: Option<i64>,
    pub last_recv_ns: Option<i64>,
    /// Runs of lost seqs (first, length), sent with --per-message so the sender can write the lost rows.
    pub lost_runs: Vec<(u64, u64)>,
    /// Echo replies the receiver sent.
    pub echoed: u64,
    /// Per-message rows counted beyond the receiver's cap (accounting::MAX_ROWS) and not sent.
    #[serde(default)]
    pub rows_not_kept: u64,
    /// The receiver's socket calls, when the sender asked for --trace.
    #[serde(default)]
    pub trace: Vec<crate::trace::Event>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Ctl {
    Hello(Hello),
    Accept(Accept),
    Reject {
        reason: String,
    },
    TimeReq {
        t1: i64,
    },
    TimeResp {
        t1: i64,
        t2: i64,
        t3: i64,
    },
    /// Clock offset for the receiver's delay accounting; where the UDP data comes from; effective linger.
    Start {
        offset: OffsetEstimate,
        udp_source_port: Option<u16>,
        linger_ns: u64,
    },
    Ready,
    Done(Done),
    Results(Box<RecvResults>),
    Messages {
        rows: Vec<MessageRow>,
    },
    End,
    Abort {
        reason: String,
    },
}

impl Ctl {
    pub fn kind(&self) -> &'static str {
        match self {
            Ctl::Hello(_) => "hello",
            Ctl::Accept(_) => "accept",
            Ctl::Reject { .. } => "reject",
            Ctl::TimeReq { .. } => "time_req",
            Ctl::TimeResp { .. } => "time_resp",
            Ctl::Start { .. } => "start",
            Ctl::Ready => "ready",
            Ctl::Done(_) => "done",
            Ctl::Results(_) => "results",
            Ctl::Messages { .. } => "messages",
            Ctl::End => "end",
            Ctl::Abort { .. } => "abort",
        }
    }
}

/// What the first bytes of a TCP connection to a receiver said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preamble {
    Control { version: u16 },
    Data { version: u16, session: u64 },
}

pub fn control_preamble() -> [u8; 8] {
    let mut p = [0u8; 8];
    p[..4].copy_from_slice(&CTL_MAGIC);
    p[4..6].copy_from_slice(&CONTROL_VERSION.to_be_bytes());
    p
}

pub fn data_preamble(session: u64) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[..4].copy_from_slice(&DATA_MAGIC);
    p[4..6].copy_from_slice(&CONTROL_VERSION.to_be_bytes());
    p[8..].copy_from_slice(&session.to_be_bytes());
    p
}

/// Read and classify the preamble; an error means the peer is not a sockbench sender.
pub fn read_preamble(s: &mut TcpStream) -> anyhow::Result<Preamble> {
    s.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let mut p = [0u8; 8];
    s.read_exact(&mut p)
        .context("no sockbench preamble within 10 s")?;
    let version = u16::from_be_bytes([p[4], p[5]]);
    if p[..4] == CTL_MAGIC {
        Ok(Preamble::Control { version })
    } else if p[..4] == DATA_MAGIC {
        let mut id = [0u8; 8];
        s.read_exact(&mut id).context("truncated data preamble")?;
        Ok(Preamble::Data {
            version,
            session: u64::from_be_bytes(id),
        })
    } else {
        bail!("not a sockbench peer (its first bytes are {:02x?})", &p[..])
    }
}

/// One end of a control connection: framed JSON with a buffer that survives read timeouts, so a caller can
/// wait in short slices (to notice Ctrl-C) without ever losing a half-read frame.
pub struct CtlConn {
    stream: TcpStream,
    buf: Vec<u8>,
    max_frame: usize,
}

impl CtlConn {
    pub fn new(stream: TcpStream) -> io::Result<CtlConn> {
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
        Ok(CtlConn {
            stream,
            buf: Vec::with_capacity(4096),
            max_frame: MAX_FRAME,
        })
    }

    /// Accept frames of at most `n` bytes from the peer (a receiver reading a sender: `MAX_SENDER_FRAME`).
    pub fn with_max_frame(mut self, n: usize) -> CtlConn {
        self.max_frame = n.min(MAX_FRAME);
        self
    }

    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// A second handle for a writer on another thread.
    pub fn try_clone_writer(&self) -> io::Result<CtlWriter> {
        Ok(CtlWriter {
            stream: self.stream.try_clone()?,
        })
    }

    pub fn send(&mut self, msg: &Ctl) -> anyhow::Result<()> {
        write_frame(&mut self.stream, msg)
    }

    fn take_frame(&mut self) -> anyhow::Result<Option<Ctl>> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as usize;
        if len > self.max_frame {
            bail!("control frame of {len} bytes is larger than any sockbench sends: peer is not a sockbench of this version");
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let msg = serde_json::from_slice(&self.buf[4..4 + len]).map_err(|e| {
            anyhow!("unreadable control message ({e}): peer speaks another sockbench version")
        })?;
        self.buf.drain(..4 + len);
        Ok(Some(msg))
    }

    /// Wait up to `timeout` for the next message; Ok(None) on timeout (any partial frame is kept).
    pub fn recv(&mut self, timeout: Duration) -> anyhow::Result<Option<Ctl>> {
        if let Some(m) = self.take_frame()? {
            return Ok(Some(m));
        }
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            self.stream
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
            match self.stream.read(&mut chunk) {
                Ok(0) => bail!("the peer closed the control connection"),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    if let Some(m) = self.take_frame()? {
                        return Ok(Some(m));
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(anyhow!(e).context("control connection failed")),
            }
        }
    }

    /// Wait for a message until `deadline`, in slices, giving up early when `stop()` says so.
    pub fn recv_until(
        &mut self,
        deadline: Instant,
        what: &str,
        stop: &dyn Fn() -> bool,
    ) -> anyhow::Result<Ctl> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                bail!("timed out waiting for the peer's {what}");
            }
            if stop() {
                bail!("interrupted while waiting for the peer's {what}");
            }
            if let Some(m) = self.recv(left.min(Duration::from_millis(100)))? {
                return Ok(m);
            }
        }
    }
}

/// The write half of a control connection, for a second thread.
pub struct CtlWriter {
    stream: TcpStream,
}

impl CtlWriter {
    pub fn send(&mut self, msg: &Ctl) -> anyhow::Result<()> {
        write_frame(&mut self.stream, msg)
    }
}

fn write_frame(w: &mut TcpStream, msg: &Ctl) -> anyhow::Result<()> {
    let body = serde_json::to_vec(msg)?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    w.write_all(&frame)
        .with_context(|| format!("cannot send {} on the control connection", msg.kind()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn frames_survive_timeouts_and_arrive_whole() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut raw = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let mut conn = CtlConn::new(l.accept().unwrap().0).unwrap();
        let body = serde_json::to_vec(&Ctl::TimeReq { t1: 42 }).unwrap();
        let mut frame = (body.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&body);
        // Half a frame, a timeout, then the rest: nothing may be lost.
        raw.write_all(&frame[..5]).unwrap();
        assert!(conn.recv(Duration::from_millis(50)).unwrap().is_none());
        raw.write_all(&frame[5..]).unwrap();
        assert!(matches!(
            conn.recv(Duration::from_secs(2)).unwrap(),
            Some(Ctl::TimeReq { t1: 42 })
        ));
    }

    #[test]
    fn oversized_or_garbage_frames_are_errors() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut raw = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let mut conn = CtlConn::new(l.accept().unwrap().0).unwrap();
        raw.write_all(&u32::MAX.to_be_bytes()).unwrap();
        assert!(conn.recv(Duration::from_secs(2)).is_err());
        let mut raw2 = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let mut conn2 = CtlConn::new(l.accept().unwrap().0).unwrap();
        raw2.write_all(&[0, 0, 0, 3, b'x', b'y', b'z']).unwrap();
        assert!(conn2
            .recv(Duration::from_secs(2))
            .unwrap_err()
            .to_string()
            .contains("another sockbench version"));
    }

    #[test]
    fn preambles() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        c.write_all(&data_preamble(77)).unwrap();
        let mut s = l.accept().unwrap().0;
        assert_eq!(
            read_preamble(&mut s).unwrap(),
            Preamble::Data {
                version: CONTROL_VERSION,
                session: 77
            }
        );
        let mut c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        c.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
        let mut s = l.accept().unwrap().0;
        assert!(read_preamble(&mut s)
            .unwrap_err()
            .to_string()
            .contains("not a sockbench peer"));
    }
}
