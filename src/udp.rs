//! UDP data: the batched send loop (sendmmsg), the receiver's demultiplexing thread (recvmmsg, sessions told
//! apart by their id and checked against the peer that completed the control handshake), and echoes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::accounting::Account;
use crate::clock::now_ns;
use crate::control::Status;
use crate::signal::Stop;
use crate::socket::{RecvBatch, SendBatch};
use crate::trace::Timer;
use crate::transport::{EchoStats, SendPlan, SendStats};
use crate::wire::{self, Header};

/// Datagrams per sendmmsg/recvmmsg call.
pub const BATCH: usize = 64;
const SLOT: usize = 65_536;

/// Send the session's datagrams on a connected socket, batching whatever is due at once.
/// `timer` times each sendmmsg when tracing.
pub fn send(
    sock: &UdpSocket,
    template: &[u8],
    plan: &mut SendPlan,
    timer: &mut Timer,
) -> SendStats {
    let fd = sock.as_raw_fd();
    let mut batch = SendBatch::new(BATCH, template);
    let mut st = SendStats::default();
    plan.begin();
    while let Some(first) = plan.next_due(true) {
        let mut k = 0;
        let mut due = Some(first);
        while let Some((seq, sched_ns)) = due {
            let send_ns = now_ns();
            let len = plan.size_of(seq);
            wire::stamp(batch.set_len(k, len), seq, sched_ns, send_ns);
            st.stamp(send_ns);
            k += 1;
            due = if k < batch.capacity() {
                plan.next_due(false)
            } else {
                None
            };
        }
        let mut done = 0;
        while done < k {
            let t = timer.start();
            let sent = batch.send(fd, done, k);
            timer.done(t, sent.is_ok());
            match sent {
                Ok(m) => done += m,
                Err(_) => {
                    // The kernel refused the rest (ENOBUFS, EAGAIN, or ECONNREFUSED from an ICMP error):
                    // those messages never left, so their numbers are handed out again.
                    let refused = (k - done) as u64;
                    plan.give_back(refused);
                    st.send_errors += refused;
                    break;
                }
            }
        }
        st.sent += done as u64;
        plan.accepted(st.sent);
    }
    if plan.stop.is_set() {
        st.cut_short = Some("interrupted".into());
    }
    st
}

/// Read echo replies until `stop`.
pub fn read_echoes(sock: &UdpSocket, echo: &mut EchoStats, stop: &Stop) {
    let fd = sock.as_raw_fd();
    let mut batch = RecvBatch::new(BATCH, SLOT);
    while !stop.is_set() {
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

/// Orders from session control threads to the UDP receiving thread, which owns every UDP account.
pub enum Cmd {
    Register {
        acct: Box<Account>,
        peer: IpAddr,
        echo: bool,
    },
    Start {
        session: u64,
        offset_ns: i64,
        source_port: Option<u16>,
    },
    /// The sender is done (`sent`) or gone (None): close when everything arrived or at `linger` from now.
    Finish {
        session: u64,
        sent: Option<u64>,
        linger: Duration,
        reply: mpsc::Sender<Box<Account>>,
    },
}

struct Session {
    acct: Box<Account>,
    peer: IpAddr,
    source_port: Option<u16>,
    echo: bool,
    /// --trace: the recvmmsg calls that brought this session's datagrams, and the echo sendto calls.
    recv_timer: Timer,
    echo_timer: Timer,
    last_batch: u64,
    closing: Option<(Instant, Option<u64>, mpsc::Sender<Box<Account>>)>,
}

impl Session {
    fn is_peer(&self, from: Option<SocketAddr>) -> bool {
        match from {
            Some(a) => {
                a.ip().to_canonical() == self.peer.to_canonical()
                    && self.source_port.is_none_or(|p| p == a.port())
            }
            None => false,
        }
    }
}

/// The receiving thread of a UDP receiver.
pub struct UdpServer {
    pub tx: mpsc::Sender<Cmd>,
    handle: JoinHandle<()>,
    /// Datagrams that belonged to no session and came from no session's peer.
    pub stray: Arc<AtomicU64>,
}

impl UdpServer {
    pub fn spawn(sock: UdpSocket, stop: Stop) -> UdpServer {
        let (tx, rx) = mpsc::channel();
        let stray = Arc::new(AtomicU64::new(0));
        let stray2 = stray.clone();
        let handle = std::thread::Builder::new()
            .name("udp-recv".into())
            .spawn(move || serve(sock, rx, stop, &stray2))
            .expect("spawn udp receiver thread");
        UdpServer { tx, handle, stray }
    }

    /// Wait for the thread to end (after every sender of commands is gone).
    pub fn join(self) {
        drop(self.tx);
        let _ = self.handle.join();
    }
}

fn serve(sock: UdpSocket, rx: mpsc::Receiver<Cmd>, stop: Stop, stray: &AtomicU64) {
    let fd = sock.as_raw_fd();
    let mut batch = RecvBatch::new(BATCH, SLOT);
    let mut sessions: HashMap<u64, Session> = HashMap::new();
    // SO_RXQ_OVFL is cumulative per socket and only reported once non-zero.
    let mut last_drops: u32 = 0;
    let mut batch_no: u64 = 0;
    let mut disconnected = false;
    loop {
        let t0 = Instant::now();
        let n = batch.recv(fd).unwrap_or(0);
        let took = t0.elapsed();
        batch_no += 1;
        // Commands are read after the wait, not before: a session registered while recvmmsg was blocked must
        // own the datagram that woke it.
        loop {
            match rx.try_recv() {
                Ok(cmd) => apply(&mut sessions, cmd),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    disconnected = true;
                    break;
                }
            }
        }
        if disconnected && sessions.is_empty() {
            return;
        }
        let fallback = now_ns();
        for i in 0..n {
            let d = batch.get(i);
            let drops = d.drops.map(|c| {
                let delta = c.wrapping_sub(last_drops);
                last_drops = c;
                delta
            });
            let recv_ns = d.kernel_ns.unwrap_or(fallback);
            let parsed = if d.truncated {
                None
            } else {
                Header::parse(d.data).ok()
            };
            let owner = match parsed {
                Some(h) => sessions
                    .get_mut(&h.session)
                    .filter(|s| s.is_peer(d.from))
                    .map(|s| (s, Some(h))),
                None => None,
            };
            let (s, hdr) = match owner {
                Some(x) => x,
                None => {
                    // Not a message of a known session: charge the session whose peer sent it, if any.
                    match sessions
                        .values_mut()
                        .find(|s| s.source_port.is_some() && s.is_peer(d.from))
                    {
                        Some(s) => s.acct.on_unrecognised(d.data),
                        None => {
                            stray.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    continue;
                }
            };
            if let Some(delta) = drops.filter(|&x| x > 0) {
                // With several sessions at once the kernel's counter cannot be split exactly: the drops are
                // charged to the session of the next datagram that made it.
                *s.acct.rcvbuf_drops.get_or_insert(0) += delta as u64;
            }
            let hdr = hdr.expect("owner has a header");
            // A datagram socket hands over one message per receive: each datagram is one receive here.
            s.acct.recv_calls += 1;
            s.acct.reads_one_message += 1;
            if s.last_batch != batch_no {
                s.last_batch = batch_no;
                s.recv_timer.add(took);
            }
            let status = s.acct.on_message(d.data, &hdr, recv_ns);
            if s.echo
                && matches!(
                    status,
                    Some(Status::Ok | Status::Reordered | Status::Duplicate)
                )
            {
                // Only to the handshaked peer's own address, and never more bytes than came in.
                if let Some(to) = d.from {
                    wire::make_echo_reply(d.data, recv_ns, now_ns());
                    let t = s.echo_timer.start();
                    let ok = sock.send_to(d.data, to).is_ok();
                    s.echo_timer.done(t, ok);
                    if ok {
                        s.acct.echoed += 1;
                    }
                }
            }
        }
        if stop.is_set() {
            for s in sessions.values_mut() {
                if let Some((deadline, _, _)) = &mut s.closing {
                    *deadline = Instant::now();
                }
            }
        }
        let now = Instant::now();
        let ready: Vec<u64> = sessions
            .iter()
            .filter(|(_, s)| match &s.closing {
                Some((deadline, sent, _)) => {
                    now >= *deadline || sent.is_some_and(|n| s.acct.received() >= n)
                }
                None => false,
            })
            .map(|(id, _)| *id)
            .collect();
        for id in ready {
            if let Some(s) = sessions.remove(&id) {
                if let Some(st) = s.recv_timer.stats() {
                    let detail = format!(
                        "{} datagrams of this session, each one message, in batches of up to {BATCH}",
                        s.acct.recv_calls
                    );
                    s.acct.trace.aggregate("recvmmsg", fd, detail, st);
                }
                if let Some(st) = s.echo_timer.stats() {
                    s.acct.trace.aggregate(
                        "sendto",
                        fd,
                        "echo replies to the session's peer".into(),
                        st,
                    );
                }
                if let Some((_, _, reply)) = s.closing {
                    let _ = reply.send(s.acct);
                }
            }
        }
    }
}

fn apply(sessions: &mut HashMap<u64, Session>, cmd: Cmd) {
    match cmd {
        Cmd::Register {
            mut acct,
            peer,
            echo,
        } => {
            acct.rcvbuf_drops = Some(0);
            let traced = acct.trace.enabled();
            sessions.insert(
                acct.session,
                Session {
                    acct,
                    peer,
                    source_port: None,
                    echo,
                    recv_timer: Timer::new(traced),
                    echo_timer: Timer::new(traced),
                    last_batch: 0,
                    closing: None,
                },
            );
        }
        Cmd::Start {
            session,
            offset_ns,
            source_port,
        } => {
            if let Some(s) = sessions.get_mut(&session) {
                s.acct.set_offset(offset_ns);
                s.source_port = source_port;
            }
        }
        Cmd::Finish {
            session,
            sent,
            linger,
            reply,
        } => {
            if let Some(s) = sessions.get_mut(&session) {
                s.closing = Some((Instant::now() + linger, sent, reply));
            }
        }
    }
}
