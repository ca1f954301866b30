//! TCP data: the send loop (messages framed by their length field, written as the schedule says), the
//! receiver's reading thread (the stream cut back into messages by a [`StreamReceiver`]), and the sender's
//! echo reader.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::accounting::{Account, EchoStats, SendStats};
use crate::cancel::Cancel;
use crate::clock::{self, now_ns, Waiter};
use crate::driver::{EchoStep, SendJob, Slots};
use crate::pacing::EchoWindow;
use crate::session::stream::StreamReceiver;
use crate::sys::time::thread_cpu_ns;
use crate::trace::Timer;
use crate::wire::{self, Framer};

/// Bytes handed to one write() when several messages are due at once.
const WRITE_BATCH: usize = 64 * 1024;
/// How long an echo write may block: a sender that stops reading its replies ends the session instead of
/// holding the receiver for ever.
pub const ECHO_WRITE_TIMEOUT: Duration = Duration::from_secs(2);

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Send the session's messages on `stream` following the job's plan, until it is over or cancelled. Each
/// message is stamped just before the write that carries it, so time spent waiting for the send buffer shows as
/// latency, as TCP's cost should.
pub fn send(stream: &mut TcpStream, job: &mut SendJob) -> SendStats {
    let size = job.template.len();
    let per_write = if job.write_per_message {
        1
    } else {
        (WRITE_BATCH / size).clamp(1, 64)
    };
    let mut buf = WriteBuf::new(&job.template, per_write, job.fixed_size);
    let stamper = wire::Stamper::new(&job.template);
    let mut st = SendStats::default();
    let mut waiter = Waiter::new(job.wait);
    let cpu0 = thread_cpu_ns();
    job.plan.begin(clock::now());
    while let Some(k) = job.next_batch(&mut buf, per_write, &stamper, &mut waiter, &mut st) {
        let k = k as u64;
        let t = job.timer.start();
        let wrote = stream.write_all(buf.filled());
        st.calls += 1;
        job.timer.done(t, wrote.is_ok());
        match wrote {
            Ok(()) => {
                st.sent += k;
                job.sent.store(st.sent, Ordering::Relaxed);
            }
            Err(e) => {
                job.plan.give_back(k);
                st.send_errors += k;
                st.cut_short = Some(format!("the receiver's data connection failed: {e}"));
                break;
            }
        }
        if job.cancel.is_cancelled() {
            break;
        }
    }
    if st.cut_short.is_none() && job.cancel.is_cancelled() {
        st.cut_short = Some("interrupted".into());
    }
    st.cpu_ns = cpu0.zip(thread_cpu_ns()).map(|(a, b)| b.saturating_sub(a));
    st
}

/// The bytes of one write: messages one after another. Equal sizes: the buffer holds template copies once,
/// and each message is stamped where it lies (a 128 KiB message is not copied again per write). Mixed sizes
/// are appended as prefixes of the template.
struct WriteBuf {
    buf: Vec<u8>,
    end: usize,
    fixed: bool,
}

impl WriteBuf {
    fn new(template: &[u8], per_write: usize, fixed: bool) -> WriteBuf {
        let buf = if fixed {
            template.repeat(per_write)
        } else {
            Vec::with_capacity(per_write * template.len())
        };
        WriteBuf { buf, end: 0, fixed }
    }

    fn filled(&self) -> &[u8] {
        &self.buf[..self.end]
    }
}

impl Slots for WriteBuf {
    fn slot(&mut self, k: usize, len: usize, template: &[u8]) -> &mut [u8] {
        let at = if k == 0 { 0 } else { self.end };
        if !self.fixed {
            self.buf.truncate(at);
            self.buf.extend_from_slice(&template[..len]);
        }
        self.end = at + len;
        &mut self.buf[at..self.end]
    }
}

/// Receive one session's stream until EOF or `cancel` (the session's driver cancels at its deadlines).
/// `leftover`: bytes that came with the connection's preamble. `activity` counts the bytes read, the
/// session's sign of life. Returns why it ended, if not at EOF. With `echo`, every valid message goes back on
/// the same stream, never longer than it came.
pub fn receive(
    stream: &mut TcpStream,
    acct: &mut Account,
    echo: bool,
    cancel: &Cancel,
    leftover: &[u8],
    activity: &AtomicU64,
) -> Option<String> {
    let cpu0 = thread_cpu_ns();
    let mut rx = StreamReceiver::new(acct, echo);
    let mut pending = leftover.len();
    rx.spare()[..pending].copy_from_slice(leftover);
    let fd = stream.as_raw_fd();
    let mut timer = Timer::new(acct.trace.enabled());
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let _ = stream.set_write_timeout(Some(ECHO_WRITE_TIMEOUT));
    let mut at_eof = false;
    let end = loop {
        if cancel.is_cancelled() {
            break Some("stopped before the sender was done".to_string());
        }
        let t = timer.start();
        let t_ns = now_ns();
        let read = if pending > 0 {
            Ok(std::mem::take(&mut pending))
        } else {
            stream.read(rx.spare())
        };
        let n = match read {
            Ok(0) => {
                let d = t.map_or(0, |t| clock::since(t).as_nanos() as u64);
                let why = "0 (EOF: the sender shut down its side)".to_string();
                acct.trace
                    .record("recv", fd, "the last read".into(), why, t_ns, d);
                at_eof = true;
                break None;
            }
            Ok(n) => {
                timer.done(t, true);
                n
            }
            // The read timeout only lets us notice a stop; it is not a call the transport made us repeat.
            Err(e) if is_timeout(&e) => continue,
            Err(e) => break Some(format!("the data connection failed: {e}")),
        };
        activity.fetch_add(n as u64, Ordering::Relaxed);
        let desync = rx.on_read(n, acct, now_ns(), now_ns());
        if !rx.echo_bytes().is_empty() {
            match stream.write_all(rx.echo_bytes()) {
                Ok(()) => {
                    let k = rx.echo_bytes().len();
                    rx.echo_written(k);
                }
                Err(e) if is_timeout(&e) => {
                    break Some(format!(
                        "the sender stopped reading its echo replies for {}",
                        humantime::format_duration(ECHO_WRITE_TIMEOUT)
                    ))
                }
                Err(e) => break Some(format!("cannot send echoes back: {e}")),
            }
        }
        if let Err(e) = desync {
            // No way to find the next boundary in a stream: count it and drop the connection.
            break Some(e);
        }
    };
    rx.finish(acct, at_eof);
    acct.cpu_ns = cpu0.zip(thread_cpu_ns()).map(|(a, b)| b.saturating_sub(a));
    if let Some(s) = timer.stats() {
        acct.trace.aggregate("recv", fd, rx.describe(), s);
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

/// Echo with a window over TCP (`--outstanding`): one thread writes each message and reads the replies, like
/// [`super::udp::echo_windowed`]; one write per message, so nothing waits behind a later one.
pub fn echo_windowed(
    stream: &mut TcpStream,
    job: &mut SendJob,
    echo: &mut EchoStats,
    window: &mut EchoWindow,
) -> SendStats {
    let size = job.template.len();
    let mut msg = job.template.clone();
    let mut framer = Framer::new(size);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut st = SendStats::default();
    let mut waiter = Waiter::new(job.wait);
    let cpu0 = thread_cpu_ns();
    job.plan.begin(clock::now());
    while !job.cancel.is_cancelled() {
        let until = match job.echo_step(window) {
            EchoStep::Send { seq, sched_ns } => {
                let len = job.plan.size_of(seq);
                msg[..len].copy_from_slice(&job.template[..len]);
                let send_ns = now_ns();
                wire::stamp(&mut msg[..len], seq, sched_ns, send_ns);
                job.seal(&mut msg[..len]);
                job.issue(seq + 1);
                let t = job.timer.start();
                let wrote = stream.write_all(&msg[..len]);
                st.calls += 1;
                job.timer.done(t, wrote.is_ok());
                if let Err(e) = wrote {
                    job.plan.give_back(1);
                    st.send_errors += 1;
                    st.cut_short = Some(format!("the receiver's data connection failed: {e}"));
                    break;
                }
                st.stamp(send_ns, sched_ns);
                st.sent += 1;
                job.sent.store(st.sent, Ordering::Relaxed);
                window.sent(seq, clock::mono());
                continue;
            }
            EchoStep::WaitUntil(t) => t,
            EchoStep::Over => break,
        };
        if !super::wait_replies(&*stream, until, &mut waiter, &job.cancel) {
            continue;
        }
        let t = echo.timer.start();
        let n = match stream.read(framer.spare()) {
            Ok(0) => {
                st.cut_short = Some("the receiver closed the data connection".into());
                break;
            }
            Ok(n) => n,
            Err(e) if is_timeout(&e) => continue,
            Err(e) => {
                st.cut_short = Some(format!("the receiver's data connection failed: {e}"));
                break;
            }
        };
        echo.timer.done(t, true);
        let t_app = now_ns();
        framer.filled(n);
        let mut broken = false;
        while let Some(frame) = framer.next_frame() {
            match frame {
                Ok(m) => {
                    if let Some(seq) = echo.on_reply(m, t_app, None) {
                        window.replied(seq);
                    }
                }
                Err(_) => {
                    // A stream has no next boundary to find: the replies cannot be read any further.
                    echo.invalid += 1;
                    broken = true;
                    break;
                }
            }
        }
        if broken {
            st.cut_short = Some("the receiver's replies lost their framing".into());
            break;
        }
        framer.end_read();
    }
    if st.cut_short.is_none() && job.cancel.is_cancelled() {
        st.cut_short = Some("interrupted".into());
    }
    st.cpu_ns = cpu0.zip(thread_cpu_ns()).map(|(a, b)| b.saturating_sub(a));
    st
}

/// Read echo replies from the data stream until EOF or `cancel`.
pub fn read_echoes(stream: TcpStream, size: usize, echo: &mut EchoStats, cancel: &Cancel) {
    let cpu0 = thread_cpu_ns();
    read_echo_stream(stream, size, echo, cancel);
    echo.cpu_ns = cpu0.zip(thread_cpu_ns()).map(|(a, b)| b.saturating_sub(a));
}

fn read_echo_stream(mut stream: TcpStream, size: usize, echo: &mut EchoStats, cancel: &Cancel) {
    let mut framer = Framer::new(size);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    loop {
        let t = echo.timer.start();
        let n = match stream.read(framer.spare()) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if is_timeout(&e) => {
                if cancel.is_cancelled() {
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
                Ok(m) => {
                    echo.on_reply(m, t4, None);
                }
                Err(_) => {
                    echo.invalid += 1;
                    return;
                }
            }
        }
        framer.end_read();
    }
}
