//! TCP data: the send loop (messages framed by their length field, written as the schedule says), the receive
//! loop (a byte stream cut back into messages, counting how reads and messages lined up), and echoes.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use crate::accounting::Account;
use crate::clock::now_ns;
use crate::control::Status;
use crate::signal::Stop;
use crate::trace::Timer;
use crate::transport::{EchoStats, SendPlan, SendStats};
use crate::wire::{self, Framer, Header};

/// Bytes handed to one write() when several messages are due at once.
const WRITE_BATCH: usize = 64 * 1024;

/// Send the session's messages on `stream` following `plan`. Each message is stamped just before the write
/// that carries it, so time spent waiting for the send buffer shows as latency, as TCP's cost should.
/// `timer` times each write when tracing.
pub fn send(
    stream: &mut TcpStream,
    template: &[u8],
    plan: &mut SendPlan,
    timer: &mut Timer,
) -> SendStats {
    let size = template.len();
    let per_write = (WRITE_BATCH / size).clamp(1, 64);
    let mut buf = Vec::with_capacity(per_write * size);
    let mut st = SendStats::default();
    plan.begin();
    while let Some(first) = plan.next_due(true) {
        buf.clear();
        let mut due = Some(first);
        let mut k = 0u64;
        while let Some((seq, sched_ns)) = due {
            let at = buf.len();
            let len = plan.size_of(seq);
            buf.extend_from_slice(&template[..len]);
            let send_ns = now_ns();
            wire::stamp(&mut buf[at..at + len], seq, sched_ns, send_ns);
            st.stamp(send_ns);
            k += 1;
            due = if (k as usize) < per_write {
                plan.next_due(false)
            } else {
                None
            };
        }
        let t = timer.start();
        let wrote = stream.write_all(&buf);
        timer.done(t, wrote.is_ok());
        match wrote {
            Ok(()) => {
                st.sent += k;
                plan.accepted(st.sent);
            }
            Err(e) => {
                plan.give_back(k);
                st.send_errors += k;
                st.cut_short = Some(format!("the receiver's data connection failed: {e}"));
                break;
            }
        }
    }
    if st.cut_short.is_none() && plan.stop.is_set() {
        st.cut_short = Some("interrupted".into());
    }
    st
}

/// Receive one session's stream until EOF, `stop`, or `deadline`. Returns why it ended, if not at EOF.
/// With `echo`, every valid message goes back on the same stream, never longer than it came.
pub fn receive(
    stream: &mut TcpStream,
    acct: &mut Account,
    echo: bool,
    stop: &Stop,
    deadline: Instant,
) -> Option<String> {
    let mut framer = Framer::new(acct_size(acct));
    let mut out = Vec::new();
    let fd = stream.as_raw_fd();
    let mut timer = Timer::new(acct.trace.enabled());
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    let end = loop {
        if stop.is_set() {
            break Some("stopped before the sender was done".to_string());
        }
        if Instant::now() >= deadline {
            break Some("the session reached the receiver's --max-duration".to_string());
        }
        let t = timer.start();
        let t_ns = now_ns();
        let n = match stream.read(framer.spare()) {
            Ok(0) => {
                let d = t.map_or(0, |t| t.elapsed().as_nanos() as u64);
                let why = "0 (EOF: the sender shut down its side)".to_string();
                acct.trace
                    .record("recv", fd, "the last read".into(), why, t_ns, d);
                break None;
            }
            Ok(n) => {
                timer.done(t, true);
                n
            }
            // The read timeout only lets us notice a stop; it is not a call the transport made us repeat.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                continue
            }
            Err(e) => break Some(format!("the data connection failed: {e}")),
        };
        let recv_ns = now_ns();
        framer.filled(n);
        let mut desync = None;
        while let Some(frame) = framer.next_frame() {
            let msg = match frame {
                Ok(m) => m,
                Err(e) => {
                    desync = Some(e);
                    break;
                }
            };
            let status = match Header::parse(msg) {
                Ok(h) if h.session == acct.session => acct.on_message(msg, &h, recv_ns),
                _ => {
                    acct.on_invalid();
                    None
                }
            };
            if echo
                && matches!(
                    status,
                    Some(Status::Ok | Status::Reordered | Status::Duplicate)
                )
            {
                wire::make_echo_reply(msg, recv_ns, now_ns());
                out.extend_from_slice(msg);
                acct.echoed += 1;
            }
        }
        framer.end_read();
        if !out.is_empty() {
            if let Err(e) = stream.write_all(&out) {
                break Some(format!("cannot send echoes back: {e}"));
            }
            out.clear();
        }
        if let Some(e) = desync {
            // No way to find the next boundary in a stream: count it and drop the connection.
            acct.on_invalid();
            break Some(format!("the stream stopped being sockbench messages ({e})"));
        }
    };
    if end.is_none() && framer.pending() > 0 {
        // A truncated last frame.
        acct.on_invalid();
    }
    acct.recv_calls = framer.recv_calls;
    acct.split_messages = framer.split_messages;
    acct.coalesced_reads = framer.coalesced_reads;
    acct.reads_one_message = framer.reads_one_message;
    acct.reads_partial = framer.reads_partial;
    if let Some(s) = timer.stats() {
        let detail = format!(
            "{} reads: {} one message, {} part of one, {} several",
            framer.recv_calls,
            framer.reads_one_message,
            framer.reads_partial,
            framer.coalesced_reads
        );
        acct.trace.aggregate("recv", fd, detail, s);
    }
    let _ = stream.shutdown(Shutdown::Both);
    acct.trace.record(
        "close",
        fd,
        "the accepted data socket".into(),
        "0".into(),
        now_ns(),
        0,
    );
    end
}

fn acct_size(acct: &Account) -> usize {
    // The framer rejects lengths above the session's message size: a hostile length cannot grow memory.
    acct.size().max(wire::HEADER_LEN)
}

/// Read echo replies from the data stream until EOF or `stop`.
pub fn read_echoes(mut stream: TcpStream, size: usize, echo: &mut EchoStats, stop: &Stop) {
    let mut framer = Framer::new(size);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
    loop {
        let t = echo.timer.start();
        let n = match stream.read(framer.spare()) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                ) =>
            {
                if stop.is_set() {
                    return;
                }
                continue;
            }
            Err(_) => return,
        };
        echo.timer.done(t, true);
        let t4 = now_ns();
        framer.filled(n);
        while let Some(frame) = framer.next_frame() {
            match frame {
                Ok(m) => echo.on_reply(m, t4),
                Err(_) => {
                    echo.invalid += 1;
                    return;
                }
            }
        }
        framer.end_read();
    }
}
