//! UDP data: the batched send loop (sendmmsg), the sender's echo reader, and the receiver's one receiving
//! thread, which owns the socket and a [`UdpDemux`] and serves every UDP session of the receiver.

use std::collections::HashMap;
use std::net::{IpAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::accounting::{Account, EchoStats, SendStats};
use crate::cancel::Cancel;
use crate::clock::{self, now_ns};
use crate::driver::SendJob;
use crate::pacing::Due;
use crate::session::udp_demux::{Datagram, UdpDemux};
use crate::socket::{RecvBatch, SendBatch};
use crate::wire;

/// Datagrams per sendmmsg/recvmmsg call.
pub const BATCH: usize = 64;
const SLOT: usize = 65_536;

/// Send the session's datagrams on a connected socket, batching whatever is due at once, until the plan is
/// over or the job is cancelled.
pub fn send(sock: &UdpSocket, job: &mut SendJob) -> SendStats {
    let fd = sock.as_raw_fd();
    let mut batch = SendBatch::new(BATCH, &job.template);
    let mut st = SendStats::default();
    job.plan.begin(clock::now());
    'run: loop {
        let mut k = 0;
        let mut next_seq = 0;
        while k < batch.capacity() {
            match job.plan.next(clock::now()) {
                Due::Now { seq, sched_ns } => {
                    let send_ns = now_ns();
                    let msg = batch.set_len(k, job.plan.size_of(seq));
                    wire::stamp(msg, seq, sched_ns, send_ns);
                    job.seal(msg);
                    st.stamp(send_ns);
                    next_seq = seq + 1;
                    k += 1;
                }
                Due::At(t) if k == 0 => {
                    let cancel = &job.cancel;
                    clock::sleep_until(t, &|| cancel.is_cancelled());
                    if job.cancel.is_cancelled() {
                        break 'run;
                    }
                }
                Due::At(_) => break,
                Due::Over if k == 0 => break 'run,
                Due::Over => break,
            }
        }
        job.issue(next_seq);
        let mut done = 0;
        while done < k {
            let t = job.timer.start();
            let sent = batch.send(fd, done, k);
            job.timer.done(t, sent.is_ok());
            match sent {
                Ok(m) => done += m,
                Err(_) => {
                    // The kernel refused the rest (ENOBUFS, EAGAIN, or ECONNREFUSED from an ICMP error):
                    // those messages never left, so their numbers are handed out again.
                    let refused = (k - done) as u64;
                    job.plan.give_back(refused);
                    st.send_errors += refused;
                    break;
                }
            }
        }
        st.sent += done as u64;
        job.sent.store(st.sent, Ordering::Relaxed);
        if job.cancel.is_cancelled() {
            break;
        }
    }
    if job.cancel.is_cancelled() {
        st.cut_short = Some("interrupted".into());
    }
    st
}

/// Read echo replies until `cancel`.
pub fn read_echoes(sock: &UdpSocket, echo: &mut EchoStats, cancel: &Cancel) {
    let fd = sock.as_raw_fd();
    let mut batch = RecvBatch::new(BATCH, SLOT);
    while !cancel.is_cancelled() {
        let t = echo.timer.start();
        let n = match batch.recv(fd) {
            // A timed-out wait is our polling for the stop flag, not a call worth tracing.
            Ok(0) => continue,
            Ok(n) => n,
            // ECONNREFUSED and friends: ICMP errors for our own sends; the control channel reports the rest.
            Err(_) => continue,
        };
        echo.timer.done(t, true);
        let fallback = now_ns();
        for i in 0..n {
            let d = batch.get(i);
            echo.on_reply(d.data, d.kernel_ns.unwrap_or(fallback));
        }
    }
}

/// Orders from session drivers to the UDP receiving thread, which owns every UDP account meanwhile.
pub enum Cmd {
    /// Start accounting a session from `peer` (and `source_port`, when known).
    Add {
        account: Box<Account>,
        peer: IpAddr,
        source_port: Option<u16>,
        echo: bool,
        /// Where the account goes back when the session closes.
        reply: mpsc::Sender<Box<Account>>,
        /// Datagrams accounted so far, published for the session's idle timeout.
        activity: Arc<AtomicU64>,
    },
    /// The sender is done (`sent`) or gone: close at `deadline`, or once everything arrived.
    Finish {
        session: u64,
        sent: Option<u64>,
        deadline: Instant,
    },
    /// Forget the session at once.
    Remove { session: u64 },
}

/// The receiving thread of a UDP receiver.
pub struct UdpServer {
    pub tx: mpsc::Sender<Cmd>,
    handle: JoinHandle<u64>,
}

impl UdpServer {
    pub fn spawn(sock: UdpSocket, cancel: Cancel) -> UdpServer {
        let (tx, rx) = mpsc::channel();
        let handle = std::thread::Builder::new()
            .name("udp-recv".into())
            .spawn(move || serve(sock, rx, cancel))
            .expect("spawn udp receiver thread");
        UdpServer { tx, handle }
    }

    /// Wait for the thread to end (after every sender of commands is gone); returns the stray datagrams.
    pub fn join(self) -> u64 {
        drop(self.tx);
        self.handle.join().unwrap_or(0)
    }
}

fn serve(sock: UdpSocket, rx: mpsc::Receiver<Cmd>, cancel: Cancel) -> u64 {
    let fd = sock.as_raw_fd();
    let mut batch = RecvBatch::new(BATCH, SLOT);
    let mut demux = UdpDemux::new();
    let mut replies: HashMap<u64, (mpsc::Sender<Box<Account>>, Arc<AtomicU64>)> = HashMap::new();
    let mut disconnected = false;
    loop {
        let t0 = clock::mono();
        // The socket's read timeout (50 ms) bounds how late a closing session or a cancel is noticed.
        let n = batch.recv(fd).unwrap_or(0);
        demux.begin_batch(clock::since(t0));
        // Commands are read after the wait, not before: a session registered while recvmmsg was blocked must
        // own the datagram that woke it.
        loop {
            match rx.try_recv() {
                Ok(Cmd::Add {
                    account,
                    peer,
                    source_port,
                    echo,
                    reply,
                    activity,
                }) => {
                    replies.insert(account.session, (reply, activity));
                    demux.add(account, peer, source_port, echo);
                }
                Ok(Cmd::Finish {
                    session,
                    sent,
                    deadline,
                }) => demux.finish(session, sent, deadline),
                Ok(Cmd::Remove { session }) => {
                    demux.remove(session);
                    replies.remove(&session);
                }
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    disconnected = true;
                    break;
                }
            }
        }
        if disconnected && demux.is_empty() {
            return demux.stray();
        }
        let now_wall = now_ns();
        for i in 0..n {
            let d = batch.get(i);
            let datagram = Datagram {
                data: d.data,
                from: d.from,
                kernel_ns: d.kernel_ns,
                drops: d.drops,
                truncated: d.truncated,
            };
            if let Some(e) = demux.on_datagram(datagram, now_wall) {
                let timed = demux.tracing(e.session).then(clock::mono);
                let ok = sock.send_to(batch.get(i).data, e.to).is_ok();
                demux.echoed(e.session, ok, timed.map(clock::since));
            }
        }
        if n > 0 {
            for (id, (_, activity)) in &replies {
                activity.store(demux.seen(*id), Ordering::Relaxed);
            }
        }
        let now = clock::mono();
        if cancel.is_cancelled() {
            demux.close_all(now);
        }
        for account in demux.take_finished(now, fd) {
            if let Some((reply, _)) = replies.remove(&account.session) {
                let _ = reply.send(account);
            }
        }
    }
}
