//! The receiver: one TCP port for control connections (and TCP data), one UDP port of the same number for
//! UDP data. It serves any number of sessions, one after another and at the same time: each connection gets
//! a thread that drives a [`ReceiverConn`] (the session's logic and deadlines) and its data path, until the
//! receiver is cancelled (Ctrl-C) or, with --once, after one session.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::bail;

use crate::accounting::Account;
use crate::auth::{self, SessionKeys, MAC_LEN};
use crate::cancel::Cancel;
use crate::clock::{self, boot_id, now_ns};
use crate::config::RecvConfig;
use crate::driver::ctl::{CtlStream, Got};
use crate::driver::load::{LoadConn, LoadSlots, SessionLoad};
use crate::driver::tcp;
use crate::driver::udp::{self, Cmd, UdpServer};
use crate::report::export;
use crate::report::out::OutDir;
use crate::report::{summary::SummaryCsv, SessionMeta, SessionReport};
use crate::session::receiver::{Action, Admission, ConnConfig, ReceiverConn, Report};
use crate::socket;
use crate::trace::{self, Event, Tracer};
use crate::traffic::Protocol;

/// Connections that have not yet said a valid hello, at most: in total, and from one address.
pub const MAX_PENDING: usize = 256;
pub const MAX_PENDING_PER_ADDR: usize = 16;

/// How often a connection's thread looks at cancellation and its data path while waiting for bytes.
const TICK: Duration = Duration::from_millis(20);
/// The same in a session's quiet measured phase (nothing to stream, nothing to set up): fewer wake-ups beside
/// the data path; Ctrl-C and the data path's end are still noticed within it.
const QUIET_TICK: Duration = Duration::from_millis(100);
/// Frames of streamed per-message rows written between two reads of the control connection.
const ROW_FRAMES_PER_TURN: u32 = 8;
/// TCP: after the sender's Done, the stream gets at least this long to drain to EOF.
const TCP_DRAIN_MIN: Duration = Duration::from_secs(2);

/// A TCP data connection handed to its session: the stream, the trace event of its accept(), bytes that
/// followed its preamble, and the preamble's MAC (authenticated sessions).
type DataConn = (TcpStream, Event, Vec<u8>, Option<[u8; MAC_LEN]>);

struct TcpSlot {
    peer: IpAddr,
    tx: mpsc::Sender<DataConn>,
}

struct Shared {
    cfg: RecvConfig,
    conn: ConnConfig,
    active: AtomicUsize,
    finished: AtomicU64,
    /// Sessions waiting for their TCP data connection.
    tcp_slots: Mutex<HashMap<u64, TcpSlot>>,
    /// Sessions taking --load connections.
    load: LoadSlots,
    udp_tx: Option<udp::Handle>,
    /// The data-path socket calls made at start-up (socket, bind, listen...), replayed into each traced
    /// session's timeline.
    startup: Vec<Event>,
    /// Data connections taken for a session of this receiver, and those closed because the session is not
    /// here (with --reuse-port the kernel may hand a data connection to another receiver of the port).
    data_accepts: AtomicU64,
    data_refused: AtomicU64,
    summary: Option<Mutex<SummaryCsv>>,
    cancel: Cancel,
    quiet: bool,
    /// Bytes reserved for the worst case of the sessions running (against `--max-memory`).
    reserved: AtomicU64,
    /// Connections that have not yet said a valid hello, in total and per source address.
    pending: Mutex<HashMap<IpAddr, usize>>,
    pending_total: AtomicUsize,
    /// Connections refused because too many were pending, since the last log line about it.
    refused_pending: AtomicU64,
}

impl Shared {
    fn log(&self, msg: std::fmt::Arguments) {
        if !self.quiet {
            eprintln!("sockbench {} recv: {msg}", self.cfg.protocol);
        }
    }

    /// A connection refused for too many pending: logged once a second at most, with how many.
    fn refused(&self, peer: SocketAddr) {
        static LAST: Mutex<Option<Instant>> = Mutex::new(None);
        let n = self.refused_pending.fetch_add(1, Ordering::Relaxed) + 1;
        let now = clock::mono();
        let Ok(mut last) = LAST.lock() else {
            return;
        };
        if last.is_none_or(|t| clock::since(t) >= Duration::from_secs(1)) {
            *last = Some(now);
            self.refused_pending.store(0, Ordering::Relaxed);
            self.log(format_args!(
                "refused {n} connection(s) (latest from {peer}): too many connections have not said hello yet \
                 (at most {MAX_PENDING}, {MAX_PENDING_PER_ADDR} per address)"
            ));
        }
    }

    fn udp(&self, cmd: Cmd) {
        if let Some(h) = &self.udp_tx {
            h.send(cmd);
        }
    }
}

pub struct Receiver {
    listener: TcpListener,
    udp: Option<UdpServer>,
    local: SocketAddr,
    shared: Arc<Shared>,
}

/// Counts of a finished `serve`.
#[derive(Debug, Clone, Copy)]
pub struct ServeSummary {
    pub sessions: u64,
    /// TCP data connections taken for a session here, and closed because the session was not here.
    pub data_accepts: u64,
    pub data_refused: u64,
    pub stray_datagrams: u64,
}

impl Receiver {
    /// Bind the ports (port 0 picks one free for both TCP and UDP) and open the CSV copy, if asked. The
    /// receiver stops when `cancel` is.
    pub fn bind(cfg: RecvConfig, cancel: Cancel, quiet: bool) -> anyhow::Result<Receiver> {
        let summary = match &cfg.out {
            Some(dir) => Some(Mutex::new(SummaryCsv::open(dir)?)),
            None => None,
        };
        let (listener, udp_sock, startup) = bind_ports(&cfg)?;
        let local = listener.local_addr()?;
        listener.set_nonblocking(true)?;
        let udp = match udp_sock {
            Some(s) => Some(UdpServer::spawn(s, local, cancel.clone())?),
            None => None,
        };
        let mut conn = ConnConfig::new(cfg.protocol, cfg.caps.clone());
        conn.boot_id = boot_id();
        conn.secret = cfg.secret.clone();
        let shared = Arc::new(Shared {
            udp_tx: udp.as_ref().map(UdpServer::handle),
            cfg,
            conn,
            active: AtomicUsize::new(0),
            finished: AtomicU64::new(0),
            tcp_slots: Mutex::default(),
            load: LoadSlots::default(),
            startup,
            data_accepts: AtomicU64::new(0),
            data_refused: AtomicU64::new(0),
            summary,
            cancel,
            quiet,
            reserved: AtomicU64::new(0),
            pending: Mutex::default(),
            pending_total: AtomicUsize::new(0),
            refused_pending: AtomicU64::new(0),
        });
        Ok(Receiver {
            listener,
            udp,
            local,
            shared,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Accept connections until cancelled (or after the first session with --once), then wait for the
    /// sessions under way to write their results.
    pub fn serve(self) -> anyhow::Result<ServeSummary> {
        let sh = self.shared.clone();
        let mut threads: Vec<JoinHandle<()>> = vec![];
        while !(sh.cancel.is_cancelled() || sh.cfg.once && sh.finished.load(Ordering::SeqCst) > 0) {
            let t_ns = now_ns();
            let t0 = clock::mono();
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    // Kept for the trace: accept() returns a new descriptor; the listening one keeps listening.
                    let accepted = Event::once(
                        "receiver",
                        "accept",
                        self.listener.as_raw_fd(),
                        format!("on {}", self.local),
                        format!("fd {} (from {peer})", stream.as_raw_fd()),
                        t_ns,
                        clock::since(t0).as_nanos() as u64,
                    );
                    threads.retain(|t| !t.is_finished());
                    // A stranger holds a thread until it has said a valid hello (10 s at most). Too many of them
                    // at once, in total or from one address, and newcomers are refused at once: a flood of
                    // half-hellos cannot take the place of real sessions, and nothing here ever blocks on them.
                    // The thread count is a backstop over that (pending + sessions + their data connections).
                    let backstop = MAX_PENDING + 2 * sh.cfg.caps.max_sessions + 16;
                    let Some(pending) =
                        Pending::take(&sh, peer.ip()).filter(|_| threads.len() < backstop)
                    else {
                        sh.refused(peer);
                        continue;
                    };
                    let sh2 = sh.clone();
                    threads.push(std::thread::spawn(move || {
                        serve_conn(&sh2, stream, peer, accepted, pending)
                    }));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    // Wake as soon as a connection arrives (a data connection waiting here would add its wait
                    // to the first messages' latency), and every 50 ms to notice a stop.
                    socket::wait_readable(&self.listener, Duration::from_millis(50));
                }
                Err(e) => {
                    sh.log(format_args!("accept failed: {e}"));
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        drop(self.listener);
        for t in threads {
            let _ = t.join();
        }
        let sessions = sh.finished.load(Ordering::SeqCst);
        let data_accepts = sh.data_accepts.load(Ordering::SeqCst);
        let data_refused = sh.data_refused.load(Ordering::SeqCst);
        let quiet = sh.quiet;
        drop(self.shared);
        drop(sh);
        let stray = self.udp.map_or(0, |u| u.join());
        if stray > 0 && !quiet {
            eprintln!("sockbench udp recv: ignored {stray} datagrams that belonged to no session");
        }
        Ok(ServeSummary {
            sessions,
            data_accepts,
            data_refused,
            stray_datagrams: stray,
        })
    }
}

/// Bind the ports; also returns the data-path socket calls for traces. TCP data shares the listener; a UDP
/// receiver's data path is its UDP socket alone (its TCP listener carries only control connections).
fn bind_ports(cfg: &RecvConfig) -> anyhow::Result<(TcpListener, Option<UdpSocket>, Vec<Event>)> {
    let (off, reuse) = (Tracer::off(), cfg.reuse_port);
    if cfg.protocol == Protocol::Tcp {
        let tr = Tracer::on("receiver");
        let l = socket::tcp_listener(cfg.listen, 128, reuse, &tr)?;
        return Ok((l, None, tr.events()));
    }
    if cfg.listen.port() != 0 {
        let tr = Tracer::on("receiver");
        let (u, granted) = socket::udp_receiver(cfg.listen, &tr)?;
        warn_rcvbuf(granted);
        return Ok((
            socket::tcp_listener(cfg.listen, 128, reuse, &off)?,
            Some(u),
            tr.events(),
        ));
    }
    // Port 0: let the kernel pick a UDP port, then take the same number for TCP; retry if it is taken.
    for _ in 0..32 {
        let tr = Tracer::on("receiver");
        let (u, granted) = socket::udp_receiver(cfg.listen, &tr)?;
        let mut addr = cfg.listen;
        addr.set_port(u.local_addr()?.port());
        if let Ok(l) = socket::tcp_listener(addr, 128, reuse, &off) {
            warn_rcvbuf(granted);
            return Ok((l, Some(u), tr.events()));
        }
    }
    bail!(
        "could not find a port free for both TCP and UDP on {}",
        cfg.listen
    )
}

fn warn_rcvbuf(granted: usize) {
    // Linux reports double the requested size (bookkeeping overhead included).
    if granted < socket::UDP_RCVBUF {
        eprintln!(
            "sockbench: the kernel granted a {} KiB UDP receive buffer instead of {} KiB; bursts may be dropped by the \
             socket (counted as udp_rcvbuf_drops). Raise net.core.rmem_max or run as root.",
            granted / 1024,
            socket::UDP_RCVBUF / 1024
        );
    }
}

/// A connection counted as pending (no valid hello yet) until released.
struct Pending {
    sh: Arc<Shared>,
    ip: IpAddr,
    held: bool,
}

impl Pending {
    /// Count one more pending connection from `ip`, if the limits allow it.
    fn take(sh: &Arc<Shared>, ip: IpAddr) -> Option<Pending> {
        let ip = ip.to_canonical();
        let mut map = sh.pending.lock().ok()?;
        let mine = map.entry(ip).or_insert(0);
        if *mine >= MAX_PENDING_PER_ADDR || sh.pending_total.load(Ordering::SeqCst) >= MAX_PENDING {
            if *mine == 0 {
                map.remove(&ip);
            }
            return None;
        }
        *mine += 1;
        sh.pending_total.fetch_add(1, Ordering::SeqCst);
        Some(Pending {
            sh: sh.clone(),
            ip,
            held: true,
        })
    }

    /// The connection said a valid hello (or proved to be a data connection): no longer a stranger.
    fn release(&mut self) {
        if !std::mem::take(&mut self.held) {
            return;
        }
        self.sh.pending_total.fetch_sub(1, Ordering::SeqCst);
        if let Ok(mut map) = self.sh.pending.lock() {
            if let Some(n) = map.get_mut(&self.ip) {
                *n -= 1;
                if *n == 0 {
                    map.remove(&self.ip);
                }
            }
        }
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.release();
    }
}

/// The data path of one session, as the connection's thread holds it.
enum DataPath {
    None,
    /// UDP: the receiving thread holds the account; it comes back on `rx`.
    Udp {
        session: u64,
        rx: mpsc::Receiver<Box<Account>>,
    },
    /// TCP: waiting for the data connection.
    TcpWaiting {
        account: Box<Account>,
        rx: mpsc::Receiver<DataConn>,
        echo: bool,
    },
    /// TCP: the reading thread; cancelled at `stop_at`.
    TcpRunning {
        handle: JoinHandle<(Box<Account>, Option<String>)>,
        cancel: Cancel,
        stop_at: Option<Instant>,
    },
    Finished,
}

/// One connection's thread: the session's state machine, its control socket and its data path.
struct Conn<'a> {
    sh: &'a Shared,
    peer: SocketAddr,
    /// Holds one of the --max-sessions places.
    admitted: bool,
    /// TCP: the session's place for its data connection, and where the connection arrives.
    slot: Option<u64>,
    slot_rx: Option<mpsc::Receiver<DataConn>>,
    data: DataPath,
    /// Bytes of the memory budget this session holds.
    reserved: u64,
    /// What the data path has seen (datagrams or bytes), and the value last looked at.
    activity: Arc<AtomicU64>,
    seen: u64,
    /// --load: the session's bulk flows.
    load: Option<SessionLoad>,
}

fn serve_conn(
    sh: &Shared,
    stream: TcpStream,
    peer: SocketAddr,
    accepted: Event,
    mut pending: Pending,
) {
    let mut ctl = match CtlStream::new(stream) {
        Ok(c) => c,
        Err(_) => return,
    };
    let mut c = ReceiverConn::new(sh.conn.clone(), clock::now());
    let mut conn = Conn {
        sh,
        peer,
        admitted: false,
        slot: None,
        slot_rx: None,
        data: DataPath::None,
        reserved: 0,
        activity: Arc::new(AtomicU64::new(0)),
        seen: 0,
        load: None,
    };
    let mut accepted = Some(accepted);
    let (mut ctl_open, mut told_cancel) = (true, false);
    let mut rows_turn = 0;
    loop {
        while let Some(a) = c.poll_action() {
            match a {
                Action::Write(b) => {
                    if let Err(why) = ctl.write_all(&b) {
                        ctl_open = false;
                        c.on_closed(&why, clock::now());
                    }
                }
                Action::DataConnection {
                    session,
                    leftover,
                    mac,
                } => {
                    pending.release();
                    let ev = accepted.take().unwrap_or_else(|| accept_event(peer));
                    return conn.hand_over(ctl.into_stream(), session, (ev, leftover, mac));
                }
                Action::LoadConnection { session, down, mac } => {
                    pending.release();
                    let c = LoadConn {
                        stream: ctl.into_stream(),
                        down,
                        mac,
                    };
                    return hand_over_load(sh, peer, session, c);
                }
                Action::Admit(a) => {
                    pending.release();
                    let answer = conn.admit(&a);
                    c.on_admitted(answer, clock::now());
                }
                Action::StartData {
                    account,
                    udp_source_port,
                } => {
                    if conn.start_data(account, udp_source_port, c.admission()) {
                        c.on_data_ready(clock::now());
                    }
                }
                Action::StopData { sent, linger } => conn.stop_data(sent, linger),
                Action::Report(r) => conn.report(&r),
                Action::Log(l) => sh.log(format_args!("{peer}: {l}")),
                Action::Close => {
                    conn.release();
                    ctl.close_gently(Duration::from_secs(1));
                    return;
                }
            }
        }
        if conn.feed(&mut c, &mut told_cancel) {
            continue;
        }
        // Streamed per-message rows: a frame at a time, written at the loop's top before the next is made,
        // and a few per turn so the control connection is still read.
        if rows_turn < ROW_FRAMES_PER_TURN && c.flush_rows() {
            rows_turn += 1;
            continue;
        }
        rows_turn = 0;
        read_turn(&mut ctl, &mut c, &mut ctl_open);
    }
}

/// Wait for control bytes until the session's next deadline (a tick at most, for the data path's news), then
/// let the session see the time.
fn read_turn(ctl: &mut CtlStream, c: &mut ReceiverConn, ctl_open: &mut bool) {
    let tick = if c.quiet() { QUIET_TICK } else { TICK };
    let wait = c.next_deadline().map_or(tick, |t| {
        t.saturating_duration_since(clock::mono()).min(tick)
    });
    if *ctl_open {
        match ctl.read(wait) {
            Got::Bytes(n) => c.on_bytes(ctl.bytes(n), clock::now()),
            Got::Idle => {}
            Got::Closed(why) => {
                *ctl_open = false;
                c.on_closed(&why, clock::now());
            }
        }
    } else {
        std::thread::sleep(wait);
    }
    c.on_timeout(clock::now());
}

/// A --load connection: to the session it names, if that session takes it from this address.
fn hand_over_load(sh: &Shared, peer: SocketAddr, session: u64, c: LoadConn) {
    if !sh.load.hand_over(session, peer.ip(), c) {
        sh.log(format_args!(
            "closed a load connection from {peer}: no session {session:016x} of that address takes it"
        ));
    }
}

fn accept_event(peer: SocketAddr) -> Event {
    Event::once(
        "receiver",
        "accept",
        -1,
        String::new(),
        format!("from {peer}"),
        now_ns(),
        0,
    )
}

impl Conn<'_> {
    /// Tell the session what happened away from its control connection (Ctrl-C, its data path ended or
    /// arrived, data flowing). True when it was told something, so its actions come first.
    fn feed(&mut self, c: &mut ReceiverConn, told_cancel: &mut bool) -> bool {
        if self.sh.cancel.is_cancelled() && !*told_cancel {
            *told_cancel = true;
            c.on_cancel(clock::now());
            return true;
        }
        if let Some(why) = self.load.as_mut().and_then(|l| l.poll(c.keys())) {
            self.sh.log(format_args!("{}: {why}", self.peer));
        }
        if let Some((account, note)) = self.poll_data() {
            c.on_data_finished(account, note);
            return true;
        }
        if self.data_arrived(c.keys()) {
            c.on_data_ready(clock::now());
            return true;
        }
        let seen = self.activity.load(Ordering::Relaxed);
        if seen != self.seen {
            self.seen = seen;
            c.on_data_activity(clock::now());
        }
        false
    }

    /// This connection is a TCP data connection: give it to the session waiting for it (which keeps its slot
    /// until a connection passes its checks: one that fails cannot push the real one out).
    fn hand_over(
        &self,
        stream: TcpStream,
        session: u64,
        rest: (Event, Vec<u8>, Option<[u8; MAC_LEN]>),
    ) {
        let sh = self.sh;
        let (ev, leftover, mac) = rest;
        let tx = sh.tcp_slots.lock().ok().and_then(|s| {
            s.get(&session)
                .filter(|slot| slot.peer.to_canonical() == self.peer.ip().to_canonical())
                .map(|slot| slot.tx.clone())
        });
        match tx {
            Some(tx) => {
                sh.data_accepts.fetch_add(1, Ordering::SeqCst);
                let _ = tx.send((stream, ev, leftover, mac));
            }
            None => {
                // Closing tells the sender to try a new connection (a new hash, with --reuse-port).
                sh.data_refused.fetch_add(1, Ordering::SeqCst);
                if !sh.cfg.reuse_port {
                    sh.log(format_args!(
                        "closed a data connection from {}: no session {session:016x} awaits it",
                        self.peer
                    ));
                }
            }
        }
    }

    /// Room for one more session? TCP sessions also get a place for their data connection now: the sender
    /// opens it right after Start, and its own thread may read its preamble before this one reads Start.
    fn admit(&mut self, a: &Admission) -> Result<(), String> {
        let sh = self.sh;
        let max = sh.cfg.caps.max_sessions;
        let budget = sh.cfg.caps.max_memory;
        let need = Account::worst_case_bytes(&a.traffic);
        let mib = |b: u64| b.div_ceil(1 << 20);
        if need > budget {
            return Err(format!(
                "the session would need up to {} MiB here, more than this receiver's --max-memory of {} MiB: send \
                 fewer messages (--count), or start the receiver with a larger --max-memory",
                mib(need),
                mib(budget)
            ));
        }
        if sh.active.fetch_add(1, Ordering::SeqCst) >= max {
            sh.active.fetch_sub(1, Ordering::SeqCst);
            return Err(format!(
                "busy: {max} sessions already running (the receiver's --max-sessions); try again later"
            ));
        }
        let fits = sh
            .reserved
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |r| {
                r.checked_add(need).filter(|&t| t <= budget)
            });
        if fits.is_err() {
            sh.active.fetch_sub(1, Ordering::SeqCst);
            return Err(format!(
                "busy: the sessions running hold this receiver's memory budget (--max-memory {} MiB; this one \
                 needs up to {} MiB); try again later",
                mib(budget),
                mib(need)
            ));
        }
        self.reserved = need;
        self.admitted = true;
        if sh.cfg.protocol == Protocol::Tcp {
            let (tx, rx) = mpsc::channel();
            if let Ok(mut slots) = sh.tcp_slots.lock() {
                slots.insert(
                    a.session,
                    TcpSlot {
                        peer: self.peer.ip(),
                        tx,
                    },
                );
            }
            self.slot = Some(a.session);
            self.slot_rx = Some(rx);
        }
        Ok(())
    }

    /// Start the data path; true when it already runs (UDP), false when it waits for its connection (TCP).
    fn start_data(
        &mut self,
        mut account: Box<Account>,
        source_port: Option<u16>,
        admission: Option<&Admission>,
    ) -> bool {
        let sh = self.sh;
        let (echo, traced, gro) = admission.map_or((false, false, false), |a| {
            (a.traffic.echo, a.trace, a.traffic.gso)
        });
        self.load = admission.and_then(|a| {
            SessionLoad::open(
                &sh.load,
                a.session,
                self.peer.ip(),
                &a.traffic,
                sh.cancel.child(),
            )
        });
        // The session's trace starts with the receiver's own start-up calls, so it reads as one timeline.
        account.trace = Tracer::new(traced || sh.cfg.trace, "receiver");
        account.trace.extend(sh.startup.iter().cloned());
        match sh.cfg.protocol {
            Protocol::Udp => {
                let (reply, rx) = mpsc::channel();
                let (added, is_added) = mpsc::sync_channel(1);
                let session = account.session;
                sh.udp(Cmd::Add {
                    account,
                    peer: self.peer.ip(),
                    source_port,
                    echo,
                    gro,
                    reply,
                    activity: self.activity.clone(),
                    added,
                });
                // Bounded: a thread that is gone or stuck must not hold the session; its datagrams then
                // count as they come.
                let _ = is_added.recv_timeout(Duration::from_secs(1));
                self.data = DataPath::Udp { session, rx };
                true
            }
            Protocol::Tcp => {
                if let Some(rx) = self.slot_rx.take() {
                    self.data = DataPath::TcpWaiting { account, rx, echo };
                }
                false
            }
        }
    }

    /// TCP: has the data connection come (and, authenticated, with the preamble MAC of this session's keys)?
    /// Then its reading thread starts.
    fn data_arrived(&mut self, keys: Option<&SessionKeys>) -> bool {
        let DataPath::TcpWaiting { rx, account, .. } = &self.data else {
            return false;
        };
        let Ok((mut stream, ev, leftover, mac)) = rx.try_recv() else {
            return false;
        };
        if let Some(k) = keys {
            let want = k.preamble_mac(account.session);
            if !mac.is_some_and(|m| auth::same(&m, &want)) {
                self.sh.data_refused.fetch_add(1, Ordering::SeqCst);
                self.sh.log(format_args!(
                    "closed a data connection for session {:016x} from {}: its preamble's MAC failed (another key, \
                     or an attempt to take the session over)",
                    account.session, self.peer
                ));
                let _ = stream.shutdown(std::net::Shutdown::Both);
                return false;
            }
        }
        if let Some(id) = self.slot.take() {
            if let Ok(mut slots) = self.sh.tcp_slots.lock() {
                slots.remove(&id);
            }
        }
        let DataPath::TcpWaiting {
            mut account, echo, ..
        } = std::mem::replace(&mut self.data, DataPath::None)
        else {
            return false;
        };
        account.trace.extend([ev]);
        // Echo replies leave when written: Nagle would hold them for the next one and add its delay to the
        // round trip (the connection has it from accept already; set here again so the trace shows it).
        let fd = stream.as_raw_fd();
        let _ = account.trace.call(
            "setsockopt",
            fd,
            || "TCP_NODELAY=1".into(),
            || stream.set_nodelay(true),
            |_| "0".into(),
        );
        let cancel = self.sh.cancel.child();
        let c2 = cancel.clone();
        let activity = self.activity.clone();
        let handle = std::thread::spawn(move || {
            let end = tcp::receive(&mut stream, &mut account, echo, &c2, &leftover, &activity);
            (account, end)
        });
        self.data = DataPath::TcpRunning {
            handle,
            cancel,
            stop_at: None,
        };
        true
    }

    fn stop_data(&mut self, sent: Option<u64>, linger: Duration) {
        let now = clock::mono();
        // The sending is over, and the loaded phase with it.
        if let Some(l) = &self.load {
            l.stop();
        }
        match &mut self.data {
            DataPath::Udp { session, .. } => {
                let session = *session;
                self.sh.udp(Cmd::Finish {
                    session,
                    sent,
                    deadline: now + linger,
                });
            }
            DataPath::TcpRunning {
                cancel, stop_at, ..
            } => {
                if sent.is_some() {
                    // The sender shut its data connection before Done, so EOF is near: wait while it drains, as
                    // long as the linger (a slow path may still hold data), then cut.
                    *stop_at = Some(now + linger.max(TCP_DRAIN_MIN));
                } else {
                    cancel.cancel();
                }
            }
            _ => {}
        }
    }

    /// The data path's account, once it is over.
    fn poll_data(&mut self) -> Option<(Box<Account>, Option<String>)> {
        match &mut self.data {
            DataPath::Udp { rx, .. } => {
                let a = rx.try_recv().ok()?;
                self.data = DataPath::Finished;
                Some((a, None))
            }
            DataPath::TcpRunning {
                handle,
                cancel,
                stop_at,
            } => {
                if stop_at.is_some_and(|t| clock::mono() >= t) {
                    cancel.cancel();
                }
                if !handle.is_finished() {
                    return None;
                }
                let DataPath::TcpRunning { handle, .. } =
                    std::mem::replace(&mut self.data, DataPath::Finished)
                else {
                    return None;
                };
                handle.join().ok()
            }
            _ => None,
        }
    }

    /// The session is over (or never started): give back its place, its slot and its data path.
    fn release(&mut self) {
        let sh = self.sh;
        if let Some(l) = self.load.take() {
            l.close(&sh.load);
        }
        if let Some(id) = self.slot.take() {
            if let Ok(mut slots) = sh.tcp_slots.lock() {
                slots.remove(&id);
            }
        }
        match std::mem::replace(&mut self.data, DataPath::Finished) {
            DataPath::Udp { session, .. } => sh.udp(Cmd::Remove { session }),
            DataPath::TcpRunning { handle, cancel, .. } => {
                cancel.cancel();
                let _ = handle.join();
            }
            _ => {}
        }
        if std::mem::take(&mut self.admitted) {
            sh.active.fetch_sub(1, Ordering::SeqCst);
            sh.reserved
                .fetch_sub(std::mem::take(&mut self.reserved), Ordering::SeqCst);
        }
    }

    fn report(&self, r: &Report) {
        let sh = self.sh;
        let a = &r.admission;
        let m = &r.measured;
        let proto = sh.cfg.protocol;
        if sh.cfg.trace {
            let title = format!("{proto} session {:016x} from {}", a.session, self.peer);
            let _ = trace::print(&mut std::io::stderr().lock(), &title, &m.trace);
            if let Some(dir) = &sh.cfg.out {
                let path = OutDir::new(dir).file(&a.run_id, proto, "trace");
                if let Err(e) = export::write_file(&path, &crate::report::trace::TraceCsv(&m.trace))
                {
                    sh.log(format_args!("cannot write the trace: {e:#}"));
                }
            }
        }
        sh.finished.fetch_add(1, Ordering::SeqCst);
        let s = &m.seq;
        sh.log(format_args!(
            "session {:016x} from {} {}: received {} of {}, lost {}, duplicates {}, reordered {}, corrupt {}, invalid {}{}",
            a.session,
            self.peer,
            if m.complete { "done" } else { "incomplete" },
            s.received,
            s.sent,
            s.lost,
            s.duplicates,
            s.reordered,
            m.corrupt,
            m.invalid,
            m.note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default()
        ));
        if let Some(csv) = &sh.summary {
            let meta = SessionMeta {
                run_id: a.run_id.clone(),
                started_utc: a.started_utc.clone(),
                label: a.label.clone(),
                protocol: proto,
                peer: self.peer.ip().to_string(),
                traffic: a.traffic.clone(),
            };
            let row = SessionReport::build(&meta, None, Some(m), m.complete);
            if let Err(e) = csv
                .lock()
                .map_err(|_| anyhow::anyhow!("lock"))
                .and_then(|mut c| c.append(&[&row]))
            {
                sh.log(format_args!("cannot write the receiver's CSV copy: {e:#}"));
            }
        }
    }
}
