//! UDP data: the batched send loop (sendmmsg), the sender's echo reader, and the receiver's one receiving
//! thread, which owns the socket and a [`UdpDemux`] and serves every UDP session of the receiver.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::accounting::{Account, EchoStats, SendStats};
use crate::cancel::Cancel;
use crate::clock::{self, now_ns, Waiter};
use crate::driver::{EchoStep, SendJob, Slots};
use crate::pacing::EchoWindow;
use crate::session::udp_demux::{Datagram, UdpDemux};
use crate::socket::{RecvBatch, SendBatch};
use crate::sys::mmsg::GsoBatch;
use crate::sys::socket::SockOpt;
use crate::sys::time::thread_cpu_ns;
use crate::wire;

/// Datagrams per sendmmsg/recvmmsg call.
pub const BATCH: usize = 64;
const SLOT: usize = 65_536;

/// Messages per send call with GSO: several buffers of up to 64 datagrams each.
const GSO_BATCH: usize = 512;

/// The send loop's buffers: one datagram per slot (sendmmsg), or GSO buffers of equal-size messages.
enum Out {
    Plain(SendBatch),
    Gso(GsoBatch),
}

impl Slots for Out {
    /// Slot `k`, `len` bytes long, already holding the template (GSO slots are all the template's size: the
    /// job has one size then).
    fn slot(&mut self, k: usize, len: usize, _template: &[u8]) -> &mut [u8] {
        match self {
            Out::Plain(b) => b.set_len(k, len),
            Out::Gso(b) => b.slot_mut(k),
        }
    }
}

impl Out {
    /// GSO where the job allows it (one message size) and the kernel accepts UDP_SEGMENT on this socket.
    fn for_job(sock: &UdpSocket, job: &SendJob) -> Out {
        let size = job.template.len();
        let gso =
            job.gso && u16::try_from(size).is_ok_and(|s| SockOpt::UdpSegment(s).set(sock).is_ok());
        if gso {
            Out::Gso(GsoBatch::new(GSO_BATCH, &job.template))
        } else {
            Out::Plain(SendBatch::new(BATCH, &job.template))
        }
    }

    fn capacity(&self) -> usize {
        match self {
            Out::Plain(b) => b.capacity(),
            Out::Gso(b) => b.capacity(),
        }
    }

    fn send(&mut self, fd: std::os::fd::RawFd, from: usize, to: usize) -> std::io::Result<usize> {
        match self {
            Out::Plain(b) => b.send(fd, from, to),
            Out::Gso(b) => b.send(fd, from, to),
        }
    }

    /// Datagrams per GSO buffer; 0 for plain.
    fn gso(&self) -> u32 {
        match self {
            Out::Plain(_) => 0,
            Out::Gso(b) => b.group() as u32,
        }
    }
}

/// A send error that says the path refuses GSO (no checksum offload, an old driver, segments that would not
/// fit the route's MTU unfragmented) rather than a full queue or an ICMP error: the loop goes on without it.
fn gso_refused(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EIO | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOPROTOOPT | libc::EMSGSIZE)
    )
}

/// A send error that no retry will cure (the datagram is larger than the socket or route allows): the
/// session ends and says so instead of handing the same number out forever.
fn send_impossible(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMSGSIZE | libc::EINVAL))
}

/// Send the session's datagrams on a connected socket, batching whatever is due at once, until the plan is
/// over or the job is cancelled.
pub fn send(sock: &UdpSocket, job: &mut SendJob) -> SendStats {
    let fd = sock.as_raw_fd();
    let mut batch = Out::for_job(sock, job);
    let mut st = SendStats {
        gso: batch.gso(),
        ..SendStats::default()
    };
    let mut waiter = Waiter::new(job.wait);
    let stamper = wire::Stamper::new(&job.template);
    let cpu0 = thread_cpu_ns();
    job.plan.begin(clock::now());
    'run: loop {
        let cap = batch.capacity();
        let Some(k) = job.next_batch(&mut batch, cap, &stamper, &mut waiter, &mut st) else {
            break;
        };
        let mut done = 0;
        while done < k {
            let t = job.timer.start();
            let sent = batch.send(fd, done, k);
            st.calls += 1;
            job.timer.done(t, sent.is_ok());
            match sent {
                Ok(m) => done += m,
                Err(e) if st.gso > 0 && gso_refused(&e) => {
                    // Not the network's refusal: the same numbers go out again, one datagram per buffer.
                    let _ = SockOpt::UdpSegment(0).set(sock);
                    batch = Out::Plain(SendBatch::new(BATCH, &job.template));
                    st.gso = 0;
                    job.plan.give_back((k - done) as u64);
                    break;
                }
                Err(e) if send_impossible(&e) => {
                    st.cut_short = Some(format!(
                        "the kernel refused to send a {}-byte datagram ({e}): use a smaller --size",
                        job.template.len()
                    ));
                    job.plan.give_back((k - done) as u64);
                    break 'run;
                }
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
    if job.cancel.is_cancelled() && st.cut_short.is_none() {
        st.cut_short = Some("interrupted".into());
    }
    st.cpu_ns = cpu0.zip(thread_cpu_ns()).map(|(a, b)| b.saturating_sub(a));
    st
}

/// Read echo replies until `cancel`.
pub fn read_echoes(sock: &UdpSocket, echo: &mut EchoStats, cancel: &Cancel) {
    let cpu0 = thread_cpu_ns();
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
        // The receive call has returned: the application-level end of every reply in the batch.
        let t_app = now_ns();
        for i in 0..n {
            let d = batch.get(i);
            echo.on_reply(d.data, t_app, d.kernel_ns);
        }
    }
    echo.cpu_ns = cpu0.zip(thread_cpu_ns()).map(|(a, b)| b.saturating_sub(a));
}

/// Echo with a window (`--outstanding`): this one thread sends and reads the replies, so a reply releases the
/// next message without a hand-off between threads (sockperf's ping-pong works the same way). Ends when the plan
/// is over and every message is answered or given up, or at cancel.
pub fn echo_windowed(
    sock: &UdpSocket,
    job: &mut SendJob,
    echo: &mut EchoStats,
    window: &mut EchoWindow,
) -> SendStats {
    let fd = sock.as_raw_fd();
    let mut one = SendBatch::new(1, &job.template);
    let mut replies = RecvBatch::new(BATCH, SLOT);
    let mut st = SendStats::default();
    let mut waiter = Waiter::new(job.wait);
    let cpu0 = thread_cpu_ns();
    job.plan.begin(clock::now());
    while !job.cancel.is_cancelled() {
        let until = match job.echo_step(window) {
            EchoStep::Send { seq, sched_ns } => {
                let send_ns = now_ns();
                let msg = one.set_len(0, job.plan.size_of(seq));
                wire::stamp(msg, seq, sched_ns, send_ns);
                job.seal(msg);
                job.issue(seq + 1);
                let t = job.timer.start();
                let sent = one.send(fd, 0, 1);
                st.calls += 1;
                job.timer.done(t, sent.is_ok());
                if matches!(sent, Ok(1)) {
                    st.stamp(send_ns, sched_ns);
                    st.sent += 1;
                    job.sent.store(st.sent, Ordering::Relaxed);
                    window.sent(seq, clock::mono());
                } else {
                    job.plan.give_back(1);
                    st.send_errors += 1;
                }
                continue;
            }
            EchoStep::WaitUntil(t) => t,
            EchoStep::Over => break,
        };
        if !super::wait_replies(sock, until, &mut waiter, &job.cancel) {
            continue;
        }
        let t = echo.timer.start();
        // Ok(0): the socket's timeout, a wait for the stop flag; errors are ICMP for our own sends.
        let n = replies.recv(fd).unwrap_or(0);
        if n == 0 {
            continue;
        }
        echo.timer.done(t, true);
        let t_app = now_ns();
        for i in 0..n {
            let d = replies.get(i);
            if let Some(seq) = echo.on_reply(d.data, t_app, d.kernel_ns) {
                window.replied(seq);
            }
        }
    }
    if job.cancel.is_cancelled() {
        st.cut_short = Some("interrupted".into());
    }
    st.cpu_ns = cpu0.zip(thread_cpu_ns()).map(|(a, b)| b.saturating_sub(a));
    st
}

/// Orders from session drivers to the UDP receiving thread, which owns every UDP account meanwhile.
pub enum Cmd {
    /// Start accounting a session from `peer` (and `source_port`, when known).
    Add {
        account: Box<Account>,
        peer: IpAddr,
        source_port: Option<u16>,
        echo: bool,
        /// The sender sends GSO buffers: its socket reads them coalesced (UDP GRO) and splits them.
        gro: bool,
        /// Where the account goes back when the session closes.
        reply: mpsc::Sender<Box<Account>>,
        /// Datagrams accounted so far, published for the session's idle timeout.
        activity: Arc<AtomicU64>,
        /// Told once the session owns its datagrams: the driver waits for it before it says Ready, so no
        /// datagram of the session reaches the thread before the session does.
        added: mpsc::SyncSender<()>,
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
    handle: Handle,
    thread: JoinHandle<u64>,
}

/// How session drivers give the receiving thread orders: the channel, and a socket that wakes its poll at
/// once (a command otherwise waits out the poll's 50 ms).
#[derive(Clone)]
pub struct Handle {
    tx: mpsc::Sender<Cmd>,
    wake: Arc<UnixDatagram>,
}

impl Handle {
    pub fn send(&self, cmd: Cmd) {
        if self.tx.send(cmd).is_ok() {
            // A full wake-up queue already holds a wake-up.
            let _ = self.wake.send(&[1]);
        }
    }
}

impl UdpServer {
    /// `sock` is the receiver's shared socket, bound to `local` with SO_REUSEPORT.
    pub fn spawn(sock: UdpSocket, local: SocketAddr, cancel: Cancel) -> std::io::Result<UdpServer> {
        let (tx, rx) = mpsc::channel();
        let (wake, woken) = UnixDatagram::pair()?;
        wake.set_nonblocking(true)?;
        woken.set_nonblocking(true)?;
        let thread = std::thread::Builder::new()
            .name("udp-recv".into())
            .spawn(move || Server::new(sock, local, woken).serve(rx, cancel))?;
        Ok(UdpServer {
            handle: Handle {
                tx,
                wake: Arc::new(wake),
            },
            thread,
        })
    }

    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Wait for the thread to end (after every other handle is gone); returns the stray datagrams.
    pub fn join(self) -> u64 {
        let thread = self.thread;
        drop(self.handle);
        thread.join().unwrap_or(0)
    }
}

/// One socket the thread reads: the shared one (`session` None) or a session's own, with the last drop
/// counter it reported (SO_RXQ_OVFL is cumulative per socket).
struct Sock {
    sock: UdpSocket,
    session: Option<u64>,
    last_drops: u32,
    /// UDP GRO is on: the kernel's drop counter counts coalesced buffers, each up to 64 datagrams.
    gro: bool,
    /// A read came coalesced: from then on a drop may have been a buffer of several datagrams.
    coalesced: bool,
}

/// What goes back to a session's driver, and what is measured at its start.
struct Reply {
    tx: mpsc::Sender<Box<Account>>,
    activity: Arc<AtomicU64>,
    checksum_errors_at_start: Option<u64>,
    cpu_at_start: Option<u64>,
}

/// The receiving thread: the shared socket and one socket per session (each session's datagrams land in its
/// own queue, so its drop count is its own), read by one loop through the demultiplexer.
struct Server {
    local: SocketAddr,
    woken: UnixDatagram,
    socks: Vec<Sock>,
    batch: RecvBatch,
    demux: UdpDemux,
    replies: HashMap<u64, Reply>,
}

/// UDP datagrams the host dropped for a bad checksum so far (host-wide).
fn checksum_errors() -> Option<u64> {
    crate::sys::snmp::snmp("Udp", "InCsumErrors")
}

impl Server {
    fn new(sock: UdpSocket, local: SocketAddr, woken: UnixDatagram) -> Server {
        let _ = sock.set_nonblocking(true);
        Server {
            local,
            woken,
            socks: vec![Sock {
                sock,
                session: None,
                last_drops: 0,
                gro: false,
                coalesced: false,
            }],
            batch: RecvBatch::new(BATCH, SLOT),
            demux: UdpDemux::new(),
            replies: HashMap::new(),
        }
    }

    fn serve(mut self, rx: mpsc::Receiver<Cmd>, cancel: Cancel) -> u64 {
        loop {
            let ready = self.wait();
            // Commands are read after the wait, not before: a session registered meanwhile must own the
            // datagrams that woke it.
            let disconnected = self.commands(&rx);
            if disconnected && self.demux.is_empty() {
                return self.demux.stray();
            }
            for i in ready {
                self.read(i);
            }
            let now = clock::mono();
            if cancel.is_cancelled() {
                self.demux.close_all(now);
            }
            self.hand_back(now);
        }
    }

    /// Wait up to 50 ms (how late a closing session or a cancel is noticed) for any socket to be readable,
    /// or for a command; returns which sockets are readable.
    fn wait(&mut self) -> Vec<usize> {
        use crate::sys::poll::{poll, PollFd, PollFlags};
        use std::os::fd::AsFd;
        let mut fds: Vec<PollFd> = self
            .socks
            .iter()
            .map(|s| PollFd::new(s.sock.as_fd(), PollFlags::POLLIN))
            .collect();
        fds.push(PollFd::new(self.woken.as_fd(), PollFlags::POLLIN));
        if poll(&mut fds, std::time::Duration::from_millis(50)).unwrap_or(0) == 0 {
            return vec![];
        }
        let ready: Vec<bool> = fds.iter().map(|p| p.any().unwrap_or(true)).collect();
        drop(fds);
        if ready.last() == Some(&true) {
            let mut buf = [0u8; 64];
            while self.woken.recv(&mut buf).is_ok() {}
        }
        ready[..self.socks.len()]
            .iter()
            .enumerate()
            .filter(|(_, r)| **r)
            .map(|(i, _)| i)
            .collect()
    }

    fn commands(&mut self, rx: &mpsc::Receiver<Cmd>) -> bool {
        loop {
            match rx.try_recv() {
                Ok(Cmd::Add {
                    account,
                    peer,
                    source_port,
                    echo,
                    gro,
                    reply,
                    activity,
                    added,
                }) => {
                    let id = account.session;
                    if let Some(port) = source_port {
                        // Where the kernel cannot give the session a socket, its datagrams come through the
                        // shared one, and its row says whether its drop count is exact.
                        let to = SocketAddr::new(peer, port);
                        if let Ok(sock) =
                            crate::socket::udp_session(self.local, to, gro, &account.trace)
                        {
                            self.socks.push(Sock {
                                sock,
                                session: Some(id),
                                last_drops: 0,
                                gro,
                                coalesced: false,
                            });
                        }
                    }
                    self.replies.insert(
                        id,
                        Reply {
                            tx: reply,
                            activity,
                            checksum_errors_at_start: checksum_errors(),
                            cpu_at_start: thread_cpu_ns(),
                        },
                    );
                    self.demux.add(account, peer, source_port, echo);
                    let _ = added.send(());
                }
                Ok(Cmd::Finish {
                    session,
                    sent,
                    deadline,
                }) => self.demux.finish(session, sent, deadline),
                Ok(Cmd::Remove { session }) => {
                    self.demux.remove(session);
                    self.replies.remove(&session);
                    self.socks.retain(|s| s.session != Some(session));
                }
                Err(mpsc::TryRecvError::Empty) => return false,
                Err(mpsc::TryRecvError::Disconnected) => return true,
            }
        }
    }

    /// Everything queued on socket `i`, through the demultiplexer; echoes go back through the same socket.
    fn read(&mut self, i: usize) {
        let Some(s) = self.socks.get_mut(i) else {
            return;
        };
        let fd = s.sock.as_raw_fd();
        let t0 = clock::mono();
        let n = self.batch.recv(fd).unwrap_or(0);
        self.demux.begin_batch(clock::since(t0));
        let now_wall = now_ns();
        for k in 0..n {
            let d = self.batch.get(k);
            let mut drops = d.drops.map_or(0, |c| {
                let delta = c.wrapping_sub(s.last_drops);
                s.last_drops = c;
                delta
            });
            // A GRO read holds several datagrams of `segment` bytes (the last may be shorter): each is its own
            // message again, with the read's one receive time.
            let segment = d.segment.unwrap_or(d.data.len()).max(1);
            s.coalesced |= d.data.len() > segment;
            let (from, kernel_ns, truncated) = (d.from, d.kernel_ns, d.truncated);
            for data in d.data.chunks_mut(segment) {
                let datagram = Datagram {
                    data: &mut *data,
                    from,
                    kernel_ns,
                    drops: std::mem::take(&mut drops),
                    via: s.session,
                    truncated,
                };
                if let Some(e) = self.demux.on_datagram(datagram, now_wall) {
                    let timed = self.demux.tracing(e.session).then(clock::mono);
                    let ok = s.sock.send_to(data, e.to).is_ok();
                    self.demux.echoed(e.session, ok, timed.map(clock::since));
                }
            }
        }
        if n > 0 {
            for (id, r) in &self.replies {
                r.activity.store(self.demux.seen(*id), Ordering::Relaxed);
            }
        }
    }

    /// Sessions that are over go back to their drivers, with the host's checksum drops during them.
    fn hand_back(&mut self, now: Instant) {
        let shared_fd = self.socks[0].sock.as_raw_fd();
        for mut account in self.demux.take_finished(now, shared_fd) {
            let id = account.session;
            let coalesced = self
                .socks
                .iter()
                .any(|s| s.session == Some(id) && s.gro && s.coalesced);
            if coalesced && account.rcvbuf_drops.is_some_and(|d| d > 0) {
                // Each drop was a coalesced buffer of unknown length: the datagram count is not known.
                account.rcvbuf_exact = false;
            }
            self.socks.retain(|s| s.session != Some(id));
            if let Some(r) = self.replies.remove(&id) {
                account.checksum_errors = r
                    .checksum_errors_at_start
                    .zip(checksum_errors())
                    .map(|(a, b)| b.saturating_sub(a));
                account.cpu_ns = r
                    .cpu_at_start
                    .zip(thread_cpu_ns())
                    .map(|(a, b)| b.saturating_sub(a));
                let _ = r.tx.send(account);
            }
        }
    }
}
